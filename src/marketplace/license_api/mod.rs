//! License open APIs (activate, heartbeat, software usage info) of the stand-in marketplace,
//! and its admin endpoints that mint `PL…` codes and drive the License 2.0 lifecycle by
//! sending refreshLicenseCode / updateLicenseCodeStatus / releaseLicenseCode callbacks.
//!
//! Open APIs (AK/SK-signed, license-and-usage.md §2.6):
//! `POST /api/mkp-openapi-public/global/{v1,v2}/license/activate`,
//! `POST /api/mkp-openapi-public/global/{v1,v2}/license/heartbeat`,
//! `POST /api/mkp-openapi-public/global/v2/license/software-usage-info`.
//!
//! Admin endpoints (no auth; the stand-in listens on loopback), all JSON:
//! `POST /csm/license/mint`, `GET /csm/license/codes[/{code}]`, `POST /csm/license/{claim,
//! renew,freeze,unfreeze,expire,release}`. See docs/license.md.
//!
//! Here: the routes, the gateway and request checks, and the read-only answers. The state
//! changes and their callbacks are in `lifecycle`, the SQL in `store`.

mod lifecycle;
mod store;

pub use store::init_schema;

use super::{FaultKind, Marketplace};
use crate::clock;
use crate::license::openapi::{CODE_MAX, TIME_FORMAT};
use crate::protocol::apig;
use crate::server::{Request, Response};
use rusqlite::Connection;
use serde_json::{json, Value};

pub const PREFIX: &str = "/api/mkp-openapi-public/global/";
pub const ADMIN_PREFIX: &str = "/csm/license/";
/// API Gateway clock-skew limit (§5.1).
const SDK_DATE_WINDOW_MS: i64 = 15 * 60 * 1000;
const MAX_LIST: usize = 100;

pub use crate::license::openapi::{INTERNAL, SUCCESS};
pub const INVALID_PARAM: &str = "92020002";
pub const ILLEGAL_STATE: &str = "92020003";
pub const NOT_CLAIMED: &str = "92020004";
pub const NOT_FOUND: &str = "92020005";
pub const NOT_ACTIVATED: &str = "92020011";
pub const ILLEGAL_IN_BATCH: &str = "92020020";

/// Answers the requests this module owns; None for any other path.
pub fn route(m: &Marketplace, req: &Request) -> Option<Response> {
    let path = req.path();
    if let Some(rest) = path.strip_prefix(PREFIX) {
        let api = match rest.trim_end_matches('/') {
            "v1/license/activate" => Api::ActivateV1,
            "v2/license/activate" => Api::ActivateV2,
            "v1/license/heartbeat" => Api::HeartbeatV1,
            "v2/license/heartbeat" => Api::HeartbeatV2,
            "v2/license/software-usage-info" => Api::UsageInfo,
            _ => return None,
        };
        return Some(open_api(m, req, api));
    }
    if let Some(rest) = path.strip_prefix(ADMIN_PREFIX) {
        return Some(admin(m, req, rest.trim_end_matches('/')));
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    ActivateV1,
    ActivateV2,
    HeartbeatV1,
    HeartbeatV2,
    UsageInfo,
}

fn answer(status: u16, code: &str, msg: &str) -> Response {
    Response::json(
        status,
        json!({"error_code": code, "error_msg": msg}).to_string(),
    )
}

fn answer_data(data: Value) -> Response {
    Response::json(
        200,
        json!({"error_code": SUCCESS, "error_msg": "success", "data": data}).to_string(),
    )
}

fn now_text() -> String {
    clock::now().format(TIME_FORMAT).to_string()
}

/// A new order id as the marketplace writes them: `CS` and 15 upper-case alphanumerics.
fn new_order_id() -> String {
    format!("CS{}", clock::alphanumeric(15).to_uppercase())
}

/// API Gateway AK/SK check (§5): None when the request may pass.
fn check_aksk(m: &Marketplace, req: &Request) -> Option<Response> {
    let deny = |code: &str, msg: String| Some(answer(401, code, &msg));
    let Some(sk) = &m.cfg.sk else {
        return deny(
            "APIGW.0301",
            "Incorrect IAM authentication information: the stand-in has no SK (start it with --sk-file or CSM_SK)".into(),
        );
    };
    let Some(auth) = req.header("Authorization") else {
        return deny(
            "APIGW.0301",
            "Incorrect IAM authentication information: Authorization header missing".into(),
        );
    };
    let parsed = match apig::parse_authorization(auth) {
        Ok(a) => a,
        Err(e) => {
            return deny(
                "APIGW.0301",
                format!("Incorrect IAM authentication information: {e}"),
            )
        }
    };
    if let Some(ak) = &m.cfg.ak {
        if parsed.access != *ak {
            return deny(
                "APIGW.0301",
                format!(
                    "Incorrect IAM authentication information: unknown access key {:?}",
                    parsed.access
                ),
            );
        }
    }
    let date = req.header(apig::DATE_HEADER).unwrap_or("");
    match apig::parse_sdk_date(date) {
        Ok(ms) if (clock::now_ms() - ms).abs() <= SDK_DATE_WINDOW_MS => {}
        Ok(_) => {
            return deny(
                "APIGW.0303",
                format!("Incorrect app authentication information: signature expired (X-Sdk-Date {date} is more than 15 minutes from the gateway's clock)"),
            )
        }
        Err(e) => {
            return deny(
                "APIGW.0303",
                format!("Incorrect app authentication information: {e}"),
            )
        }
    }
    match apig::verify(sk.expose(), &req.method, &req.url, &req.headers, &req.body) {
        Ok(true) => None,
        Ok(false) => {
            // The gateway shows the canonical request it computed.
            let names = parsed.signed_header_names();
            let ours = apig::sign(
                parsed.access,
                sk.expose(),
                &req.method,
                &req.url,
                &req.headers,
                &names,
                &req.body,
            )
            .map(|s| s.canonical_request.replace('\n', "|"))
            .unwrap_or_default();
            deny(
                "APIGW.0301",
                format!(
                    "Incorrect IAM authentication information: verify aksk signature fail, canonicalRequest: {ours}"
                ),
            )
        }
        Err(e) => deny(
            "APIGW.0301",
            format!("Incorrect IAM authentication information: {e}"),
        ),
    }
}

fn open_api(m: &Marketplace, req: &Request, api: Api) -> Response {
    if req.method != "POST" {
        return answer(405, "95000002", "method not supported: use POST");
    }
    if let Some(denied) = check_aksk(m, req) {
        return denied;
    }
    let ct = req.header("Content-Type").unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return answer(
            415,
            "95000003",
            &format!("content type {ct:?} not supported: use application/json"),
        );
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return answer(400, "95000004", "request body is not a JSON object"),
    };
    if m.has_fault(FaultKind::LicenseInternalError) {
        return answer(500, INTERNAL, "internal error (fault injected)");
    }
    let conn = match m.db.lock() {
        Ok(c) => c,
        Err(_) => return answer(500, INTERNAL, "internal error: state lock poisoned"),
    };
    let r = match api {
        Api::ActivateV1 => lifecycle::activate_v1(&conn, &body),
        Api::ActivateV2 => lifecycle::activate_v2(&conn, &body),
        Api::HeartbeatV1 => lifecycle::heartbeat_v1(&conn, &body),
        Api::HeartbeatV2 => lifecycle::heartbeat_v2(&conn, &body),
        Api::UsageInfo => usage_info(&conn, &body),
    };
    r.unwrap_or_else(|e| answer(500, INTERNAL, &format!("internal error: {e}")))
}

/// A required string field of at most `max` characters, or the 95000001 answer.
fn required_str<'a>(body: &'a Value, name: &str, max: usize) -> Result<&'a str, Response> {
    match body.get(name) {
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max => Ok(s),
        Some(Value::String(s)) if s.is_empty() => Err(answer(
            400,
            "95000001",
            &format!("{name}: must not be empty"),
        )),
        Some(Value::String(_)) => Err(answer(
            400,
            "95000001",
            &format!("{name}: longer than {max} characters"),
        )),
        Some(_) => Err(answer(
            400,
            "95000001",
            &format!("{name}: must be a string"),
        )),
        None => Err(answer(400, "95000001", &format!("{name}: required"))),
    }
}

fn string_list<'a>(body: &'a Value, name: &str) -> Result<Vec<&'a str>, Response> {
    let Some(Value::Array(a)) = body.get(name) else {
        return Err(answer(
            400,
            "95000001",
            &format!("{name}: required, a list of license codes"),
        ));
    };
    if a.is_empty() || a.len() > MAX_LIST {
        return Err(answer(
            200,
            INVALID_PARAM,
            &format!("{name}: {} codes, must be 1 to {MAX_LIST}", a.len()),
        ));
    }
    a.iter()
        .map(|v| match v {
            Value::String(s) if !s.is_empty() && s.len() <= CODE_MAX => Ok(s.as_str()),
            _ => Err(answer(
                400,
                "95000001",
                &format!("{name}: every entry must be a code of 1 to {CODE_MAX} characters"),
            )),
        })
        .collect()
}

fn usage_info(conn: &Connection, body: &Value) -> rusqlite::Result<Response> {
    let bad = |msg: String| Ok(answer(400, "95000001", &msg));
    let Some(Value::Array(list)) = body.get("usage_info") else {
        return bad("usage_info: required, a list".into());
    };
    if list.is_empty() || list.len() > MAX_LIST {
        return bad(format!(
            "usage_info: {} entries, must be 1 to {MAX_LIST}",
            list.len()
        ));
    }
    let mut failed = Vec::new();
    let mut rows: Vec<(String, Option<String>, Option<i64>)> = Vec::new();
    for (i, u) in list.iter().enumerate() {
        let code = match required_str(u, "license", CODE_MAX) {
            Ok(c) => c.to_string(),
            Err(_) => {
                return bad(format!(
                    "usage_info[{i}].license: required, 1 to {CODE_MAX} characters"
                ))
            }
        };
        // Note the capital I in the documented field name.
        let Some(Value::Array(infos)) = u.get("software_usage_Info") else {
            return bad(format!(
                "usage_info[{i}].software_usage_Info: required, a list"
            ));
        };
        if infos.is_empty() || infos.len() > MAX_LIST {
            return bad(format!(
                "usage_info[{i}].software_usage_Info: {} entries, must be 1 to {MAX_LIST}",
                infos.len()
            ));
        }
        for (j, e) in infos.iter().enumerate() {
            let id = e.get("id");
            let n = e.get("active_num");
            match (id, n) {
                (Some(Value::String(s)), None) if !s.is_empty() && s.chars().count() <= 256 => {
                    rows.push((code.clone(), Some(s.clone()), None))
                }
                (None, Some(Value::Number(k)))
                    if k.as_i64().is_some_and(|k| (0..=999_999_999).contains(&k)) =>
                {
                    rows.push((code.clone(), None, k.as_i64()))
                }
                _ => {
                    return bad(format!(
                        "usage_info[{i}].software_usage_Info[{j}]: exactly one of id (string, at most 256) or active_num (integer, at most 9 digits)"
                    ))
                }
            }
        }
        let ok = store::load(conn, &code)?
            .is_some_and(|r| r.status != "CREATED" && r.status != "RELEASED");
        if !ok {
            failed.push(code);
        }
    }
    let now = clock::now_ms();
    for (code, id, n) in rows {
        if !failed.contains(&code) {
            store::insert_usage_info(conn, &code, id.as_deref(), n, now)?;
        }
    }
    Ok(answer_data(json!({ "check_fail_license_list": failed })))
}

// ---------------------------------------------------------------- admin

fn admin_error(status: u16, msg: &str) -> Response {
    Response::json(status, json!({ "error": msg }).to_string())
}

fn admin(m: &Marketplace, req: &Request, rest: &str) -> Response {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return admin_error(400, "body: must be a JSON object"),
        }
    };
    let r = match (req.method.as_str(), rest) {
        ("GET", "codes") => list_codes(m),
        ("GET", r) if r.starts_with("codes/") => get_code(m, &r["codes/".len()..]),
        ("POST", "mint") => lifecycle::mint(m, &body),
        ("POST", "claim" | "renew" | "freeze" | "unfreeze" | "expire" | "release") => {
            lifecycle::step(m, rest, &body)
        }
        ("GET" | "POST", _) => Ok(admin_error(404, &format!("no such admin API: {rest}"))),
        _ => Ok(admin_error(405, "method not supported")),
    };
    r.unwrap_or_else(|e| admin_error(500, &format!("state database: {e}")))
}

fn list_codes(m: &Marketplace) -> rusqlite::Result<Response> {
    let conn = m.db.lock().unwrap_or_else(|p| p.into_inner());
    let out: Vec<Value> = store::load_all(&conn)?
        .iter()
        .map(store::Row::admin_json)
        .collect();
    Ok(Response::json(200, json!({ "licenses": out }).to_string()))
}

fn get_code(m: &Marketplace, code: &str) -> rusqlite::Result<Response> {
    let conn = m.db.lock().unwrap_or_else(|p| p.into_inner());
    Ok(match store::load(&conn, code)? {
        Some(r) => Response::json(200, r.admin_json().to_string()),
        None => admin_error(404, &format!("license code {code} does not exist")),
    })
}

fn opt_str<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, Response> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        // The marketplace's ids have the same limit as its codes.
        Some(Value::String(s)) if s.len() <= CODE_MAX => Ok(Some(s)),
        Some(_) => Err(admin_error(
            400,
            &format!("{name}: must be a string of at most {CODE_MAX} characters"),
        )),
    }
}
