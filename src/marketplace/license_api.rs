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

use super::{FaultKind, Marketplace};
use crate::catalog::{self, Protocol};
use crate::clock;
use crate::endpoint::client::{Client, MAX_REPLY};
use crate::endpoint::request::{self, PrepOpts, Tamper};
use crate::license::openapi::{valid_time, CODE_MAX, TIME_FORMAT};
use crate::protocol::apig;
use crate::server::{Request, Response};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};
use std::time::Duration;

pub const PREFIX: &str = "/api/mkp-openapi-public/global/";
pub const ADMIN_PREFIX: &str = "/csm/license/";
/// API Gateway clock-skew limit (§5.1).
const SDK_DATE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// The marketplace's budget per callback (decision 8).
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_LIST: usize = 100;

pub use crate::license::openapi::SUCCESS;
pub const INTERNAL: &str = "92020001";
pub const INVALID_PARAM: &str = "92020002";
pub const ILLEGAL_STATE: &str = "92020003";
pub const NOT_CLAIMED: &str = "92020004";
pub const NOT_FOUND: &str = "92020005";
pub const NOT_ACTIVATED: &str = "92020011";
pub const ILLEGAL_IN_BATCH: &str = "92020020";

pub fn init_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS license_codes (
            code TEXT PRIMARY KEY,
            product_id TEXT NOT NULL,
            order_id TEXT NOT NULL,
            order_line_id TEXT NOT NULL,
            amount INTEGER NOT NULL,
            claimed INTEGER NOT NULL,
            -- CREATED (minted, not activated), ALIVE, FROZEN, EXPIRED, RELEASED
            status TEXT NOT NULL,
            expire_time TEXT NOT NULL,
            activate_time TEXT,
            created_ms INTEGER NOT NULL,
            heartbeats INTEGER NOT NULL DEFAULT 0,
            last_heartbeat_ms INTEGER
        );
        CREATE TABLE IF NOT EXISTS license_usage_info (
            id INTEGER PRIMARY KEY,
            code TEXT NOT NULL,
            client_id TEXT,
            active_num INTEGER,
            received_ms INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS license_callbacks (
            id INTEGER PRIMARY KEY,
            code TEXT NOT NULL,
            activity TEXT NOT NULL,
            body TEXT NOT NULL,
            http_status INTEGER,
            result_code TEXT,
            error TEXT,
            sent_ms INTEGER NOT NULL
        );",
    )
}

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
        Api::ActivateV1 => activate_v1(&conn, &body),
        Api::ActivateV2 => activate_v2(&conn, &body),
        Api::HeartbeatV1 => heartbeat_v1(&conn, &body),
        Api::HeartbeatV2 => heartbeat_v2(&conn, &body),
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

#[derive(Debug, Clone)]
struct Row {
    code: String,
    product_id: String,
    order_id: String,
    order_line_id: String,
    amount: i64,
    claimed: bool,
    status: String,
    expire_time: String,
    activate_time: Option<String>,
    heartbeats: i64,
}

impl Row {
    /// The status a heartbeat reports: an ALIVE code past its expiry reads EXPIRED.
    fn effective_status(&self) -> String {
        if self.status == "ALIVE" && self.expire_time.as_str() < now_text().as_str() {
            "EXPIRED".into()
        } else {
            self.status.clone()
        }
    }

    fn admin_json(&self) -> Value {
        json!({
            "license": self.code,
            "product_id": self.product_id,
            "order_id": self.order_id,
            "order_line_id": self.order_line_id,
            "amount": self.amount,
            "claimed": self.claimed,
            "status": self.status,
            "effective_status": self.effective_status(),
            "expire_time": self.expire_time,
            "activate_time": self.activate_time,
            "heartbeats": self.heartbeats,
        })
    }

    fn license_info(&self) -> Value {
        json!({
            "license_code": self.code,
            "status": self.effective_status(),
            "activate_time": self.activate_time,
            "expire_time": self.expire_time,
            "product_id": self.product_id,
            "order_id": self.order_id,
            "amount": self.amount,
        })
    }
}

fn load(conn: &Connection, code: &str) -> rusqlite::Result<Option<Row>> {
    conn.query_row(
        "SELECT code, product_id, order_id, order_line_id, amount, claimed, status, expire_time,
                activate_time, heartbeats FROM license_codes WHERE code = ?1",
        params![code],
        |r| {
            Ok(Row {
                code: r.get(0)?,
                product_id: r.get(1)?,
                order_id: r.get(2)?,
                order_line_id: r.get(3)?,
                amount: r.get(4)?,
                claimed: r.get::<_, i64>(5)? != 0,
                status: r.get(6)?,
                expire_time: r.get(7)?,
                activate_time: r.get(8)?,
                heartbeats: r.get(9)?,
            })
        },
    )
    .optional()
}

/// Why `row` cannot be activated now, as (error_code, message); None when it can.
fn activation_refusal(row: Option<&Row>, code: &str) -> Option<(&'static str, String)> {
    let Some(row) = row else {
        return Some((NOT_FOUND, format!("license code {code} does not exist")));
    };
    if row.status != "CREATED" {
        return Some((
            ILLEGAL_STATE,
            format!(
                "illegal state: license code {code} is {}",
                row.effective_status()
            ),
        ));
    }
    if !row.claimed {
        return Some((
            NOT_CLAIMED,
            format!("the buyer has not claimed license code {code} yet"),
        ));
    }
    None
}

fn real_effect_time(body: &Value) -> Result<Option<String>, Response> {
    match body.get("real_effect_time") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if valid_time(t) => Ok(Some(t.clone())),
        Some(v) => Err(answer(
            200,
            INVALID_PARAM,
            &format!("real_effect_time {v}: must be UTC yyyyMMddHHmmss"),
        )),
    }
}

fn mark_alive(conn: &Connection, code: &str, at: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE license_codes SET status = 'ALIVE', activate_time = ?2 WHERE code = ?1",
        params![code, at],
    )?;
    Ok(())
}

fn activate_v1(conn: &Connection, body: &Value) -> rusqlite::Result<Response> {
    let code = match required_str(body, "license", CODE_MAX) {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    let at = match real_effect_time(body) {
        Ok(t) => t.unwrap_or_else(now_text),
        Err(r) => return Ok(r),
    };
    let row = load(conn, code)?;
    if let Some((c, msg)) = activation_refusal(row.as_ref(), code) {
        return Ok(answer(200, c, &msg));
    }
    let row = row.expect("checked above");
    mark_alive(conn, code, &at)?;
    // license_code_info is a JSON document inside a string, as the marketplace sends it.
    let info = json!({
        "status": "ALIVE",
        "expire_time": row.expire_time,
        "product_id": row.product_id,
        "amount": row.amount,
        "order_id": row.order_id,
    });
    Ok(answer_data(json!({"license_code_info": info.to_string()})))
}

fn activate_v2(conn: &Connection, body: &Value) -> rusqlite::Result<Response> {
    let codes = match string_list(body, "license_list") {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    let at = match real_effect_time(body) {
        Ok(t) => t.unwrap_or_else(now_text),
        Err(r) => return Ok(r),
    };
    // All or nothing: one illegal code refuses the batch.
    let mut bad = Vec::new();
    for c in &codes {
        if let Some((code, msg)) = activation_refusal(load(conn, c)?.as_ref(), c) {
            bad.push(format!("{code} {msg}"));
        }
    }
    if !bad.is_empty() {
        return Ok(answer(
            200,
            ILLEGAL_IN_BATCH,
            &format!("an illegal license code exists: {}", bad.join("; ")),
        ));
    }
    for c in &codes {
        mark_alive(conn, c, &at)?;
    }
    Ok(answer(200, SUCCESS, "success"))
}

/// The row a heartbeat reports on, or the refusal; nothing is written.
fn heartbeat_row(conn: &Connection, code: &str) -> rusqlite::Result<Result<Row, Response>> {
    let Some(row) = load(conn, code)? else {
        return Ok(Err(answer(
            200,
            NOT_FOUND,
            &format!("license code {code} does not exist"),
        )));
    };
    if row.status == "CREATED" {
        return Ok(Err(answer(
            200,
            NOT_ACTIVATED,
            &format!("license code {code} is not activated"),
        )));
    }
    Ok(Ok(row))
}

/// Counts a heartbeat on `row`.
fn count_heartbeat(conn: &Connection, row: Row) -> rusqlite::Result<Row> {
    conn.execute(
        "UPDATE license_codes SET heartbeats = heartbeats + 1, last_heartbeat_ms = ?2 WHERE code = ?1",
        params![row.code, clock::now_ms()],
    )?;
    Ok(Row {
        heartbeats: row.heartbeats + 1,
        ..row
    })
}

fn heartbeat_v1(conn: &Connection, body: &Value) -> rusqlite::Result<Response> {
    let code = match required_str(body, "license", CODE_MAX) {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    Ok(match heartbeat_row(conn, code)? {
        Ok(row) => answer_data(count_heartbeat(conn, row)?.license_info()),
        Err(r) => r,
    })
}

/// The v2 field names were not captured by the sources; `license_list` follows activate v2.
fn heartbeat_v2(conn: &Connection, body: &Value) -> rusqlite::Result<Response> {
    let codes = match string_list(body, "license_list") {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    // All or nothing: every code is checked before any heartbeat is counted.
    let mut rows = Vec::new();
    for c in codes {
        match heartbeat_row(conn, c)? {
            Ok(row) => rows.push(row),
            Err(_) => {
                return Ok(answer(
                    200,
                    ILLEGAL_IN_BATCH,
                    &format!("an illegal license code exists: {c}"),
                ))
            }
        }
    }
    let mut infos = Vec::new();
    for row in rows {
        infos.push(count_heartbeat(conn, row)?.license_info());
    }
    Ok(answer_data(Value::Array(infos)))
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
        let ok =
            load(conn, &code)?.is_some_and(|r| r.status != "CREATED" && r.status != "RELEASED");
        if !ok {
            failed.push(code);
        }
    }
    let now = clock::now_ms();
    for (code, id, n) in rows {
        if !failed.contains(&code) {
            conn.execute(
                "INSERT INTO license_usage_info (code, client_id, active_num, received_ms) VALUES (?1, ?2, ?3, ?4)",
                params![code, id, n, now],
            )?;
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
        ("POST", "mint") => mint(m, &body),
        ("POST", "claim" | "renew" | "freeze" | "unfreeze" | "expire" | "release") => {
            lifecycle(m, rest, &body)
        }
        ("GET" | "POST", _) => Ok(admin_error(404, &format!("no such admin API: {rest}"))),
        _ => Ok(admin_error(405, "method not supported")),
    };
    r.unwrap_or_else(|e| admin_error(500, &format!("state database: {e}")))
}

fn list_codes(m: &Marketplace) -> rusqlite::Result<Response> {
    let conn = m.db.lock().unwrap_or_else(|p| p.into_inner());
    let mut st = conn.prepare("SELECT code FROM license_codes ORDER BY created_ms, code")?;
    let codes: Vec<String> = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for c in codes {
        if let Some(r) = load(&conn, &c)? {
            out.push(r.admin_json());
        }
    }
    Ok(Response::json(200, json!({ "licenses": out }).to_string()))
}

fn get_code(m: &Marketplace, code: &str) -> rusqlite::Result<Response> {
    let conn = m.db.lock().unwrap_or_else(|p| p.into_inner());
    Ok(match load(&conn, code)? {
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

fn mint(m: &Marketplace, body: &Value) -> rusqlite::Result<Response> {
    let count = match body.get("count") {
        None => 1,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=100) => n as usize,
            _ => return Ok(admin_error(400, "count: must be an integer 1 to 100")),
        },
    };
    let amount = match body.get("amount") {
        None => 1,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 1 => n,
            _ => return Ok(admin_error(400, "amount: must be a positive integer")),
        },
    };
    let claimed = match body.get("claimed") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Ok(admin_error(400, "claimed: must be true or false")),
    };
    let fields = (|| {
        Ok::<_, Response>((
            opt_str(body, "product_id")?,
            opt_str(body, "order_id")?,
            opt_str(body, "expire_time")?,
        ))
    })();
    let (product, order, expire) = match fields {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    let expire = match expire {
        Some(t) if valid_time(t) => t.to_string(),
        Some(t) => {
            return Ok(admin_error(
                400,
                &format!("expire_time {t:?}: must be UTC yyyyMMddHHmmss"),
            ))
        }
        None => (clock::now() + chrono::Days::new(365))
            .format(TIME_FORMAT)
            .to_string(),
    };
    let product = product.unwrap_or("OFFI000000000000001").to_string();
    let order = order.map(str::to_string).unwrap_or_else(new_order_id);
    let conn = m.db.lock().unwrap_or_else(|p| p.into_inner());
    let mut minted = Vec::new();
    while minted.len() < count {
        let mut r = [0u8; 19];
        if getrandom::getrandom(&mut r).is_err() {
            return Ok(admin_error(500, "no randomness for a code"));
        }
        let code = crate::license::marketplace_code(&r);
        let line = format!("{order}-{:06}", minted.len() + 1);
        let n = conn.execute(
            "INSERT OR IGNORE INTO license_codes (code, product_id, order_id, order_line_id, amount,
                claimed, status, expire_time, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'CREATED', ?7, ?8)",
            params![code, product, order, line, amount, claimed as i64, expire, clock::now_ms()],
        )?;
        if n == 1 {
            minted.push(load(&conn, &code)?.expect("just inserted").admin_json());
        }
    }
    let codes: Vec<Value> = minted.iter().map(|r| r["license"].clone()).collect();
    Ok(Response::json(
        200,
        json!({ "codes": codes, "licenses": minted }).to_string(),
    ))
}

/// One lifecycle step: check the transition, send the callback it implies (if a merchant
/// endpoint is configured), then store the new state.
fn lifecycle(m: &Marketplace, step: &str, body: &Value) -> rusqlite::Result<Response> {
    let code = match body.get("license").and_then(Value::as_str) {
        Some(c) => c.to_string(),
        None => return Ok(admin_error(400, "license: required")),
    };
    let test_flag = match opt_str(body, "test_flag") {
        Ok(Some(f @ ("0" | "1"))) => f.to_string(),
        // Debug ("1") unless asked: every callback csm sends is a test, and a merchant must
        // not treat one as a real renewal or release by default.
        Ok(None) => "1".into(),
        _ => return Ok(admin_error(400, "test_flag: \"0\" or \"1\"")),
    };
    let row = {
        let conn = m.db.lock().unwrap_or_else(|p| p.into_inner());
        load(&conn, &code)?
    };
    let Some(row) = row else {
        return Ok(admin_error(
            404,
            &format!("license code {code} does not exist"),
        ));
    };
    let conflict = |msg: String| Ok(admin_error(409, &msg));
    // (new status, new expire_time, callback body)
    let (status, expire, callback): (String, String, Option<Value>) = match step {
        "claim" => (row.status.clone(), row.expire_time.clone(), None),
        "expire" => {
            if !matches!(row.status.as_str(), "ALIVE" | "CREATED") {
                return conflict(format!(
                    "{code} is {}: only ALIVE or CREATED codes expire",
                    row.status
                ));
            }
            ("EXPIRED".into(), row.expire_time.clone(), None)
        }
        "renew" => {
            if row.status == "RELEASED" {
                return conflict(format!("{code} is RELEASED: it cannot be renewed"));
            }
            let t = match opt_str(body, "expire_time") {
                Ok(Some(t)) if valid_time(t) => t.to_string(),
                _ => {
                    return Ok(admin_error(
                        400,
                        "expire_time: required, UTC yyyyMMddHHmmss",
                    ))
                }
            };
            let scene = match opt_str(body, "scene") {
                Ok(None) => "RENEWAL",
                Ok(Some(s @ ("RENEWAL" | "UNSUBSCRIBE_RENEWAL_PERIOD"))) => s,
                _ => {
                    return Ok(admin_error(
                        400,
                        "scene: RENEWAL or UNSUBSCRIBE_RENEWAL_PERIOD",
                    ))
                }
            };
            let order = match opt_str(body, "order_id") {
                Ok(o) => o.map(str::to_string).unwrap_or_else(new_order_id),
                Err(r) => return Ok(r),
            };
            let mut cb = json!({
                "activity": "refreshLicenseCode",
                "scene": scene,
                "orderId": order,
                "orderLineId": format!("{order}-000001"),
                "license": code,
                "expireTime": t,
                "testFlag": test_flag,
            });
            match opt_str(body, "product_id") {
                Ok(Some(p)) => cb["productId"] = Value::String(p.into()),
                Ok(None) => {}
                Err(r) => return Ok(r),
            }
            // A renewal brings an expired code back; a frozen one waits for UNFREEZE.
            let st = if row.status == "EXPIRED" {
                "ALIVE"
            } else {
                row.status.as_str()
            };
            (st.to_string(), t, Some(cb))
        }
        "freeze" => {
            if !matches!(row.status.as_str(), "ALIVE" | "EXPIRED") {
                return conflict(format!(
                    "{code} is {}: only ALIVE or EXPIRED codes are frozen",
                    row.status
                ));
            }
            let cb = json!({"activity": "updateLicenseCodeStatus", "license": code, "status": "FREEZE", "testFlag": test_flag});
            ("FROZEN".into(), row.expire_time.clone(), Some(cb))
        }
        "unfreeze" => {
            if row.status != "FROZEN" {
                return conflict(format!(
                    "{code} is {}: only FROZEN codes are unfrozen",
                    row.status
                ));
            }
            let cb = json!({"activity": "updateLicenseCodeStatus", "license": code, "status": "UNFREEZE", "testFlag": test_flag});
            ("ALIVE".into(), row.expire_time.clone(), Some(cb))
        }
        "release" => {
            if row.status == "RELEASED" {
                return conflict(format!("{code} is already RELEASED"));
            }
            let mut cb =
                json!({"activity": "releaseLicenseCode", "license": code, "testFlag": test_flag});
            match opt_str(body, "order_id") {
                Ok(Some(o)) => {
                    cb["orderId"] = Value::String(o.into());
                    cb["orderLineId"] = Value::String(format!("{o}-000001"));
                }
                Ok(None) => {}
                Err(r) => return Ok(r),
            }
            ("RELEASED".into(), row.expire_time.clone(), Some(cb))
        }
        _ => unreachable!("routed steps only"),
    };
    let sent = match callback {
        Some(cb) => match send_callback(m, &code, cb) {
            Ok(v) => v,
            Err(r) => return Ok(r),
        },
        None => Value::Null,
    };
    let conn = m.db.lock().unwrap_or_else(|p| p.into_inner());
    if step == "claim" {
        conn.execute(
            "UPDATE license_codes SET claimed = 1 WHERE code = ?1",
            params![code],
        )?;
    } else {
        // The lock was released while the callback went out: store only over the state the
        // transition was checked against, so a concurrent step is never overwritten.
        let changed = conn.execute(
            "UPDATE license_codes SET status = ?2, expire_time = ?3
             WHERE code = ?1 AND status = ?4 AND expire_time = ?5",
            params![code, status, expire, row.status, row.expire_time],
        )?;
        if changed != 1 {
            let now = load(&conn, &code)?.map(|r| r.status).unwrap_or_default();
            return Ok(Response::json(
                409,
                json!({
                    "error": format!(
                        "{code} changed to {now} while the {step} callback was being sent; {status} was not stored"
                    ),
                    "callback": sent,
                })
                .to_string(),
            ));
        }
    }
    let row = load(&conn, &code)?.expect("exists");
    Ok(Response::json(
        200,
        json!({ "license": row.admin_json(), "callback": sent }).to_string(),
    ))
}

/// Sends one License callback signed with the License key, built and sent by the same
/// code as `csm send` (catalog entry, canonical body, signature in the query, capped reply);
/// returns what happened, or the admin answer when the stand-in cannot sign. Without
/// `--merchant-endpoint` nothing is sent.
fn send_callback(m: &Marketplace, code: &str, body: Value) -> Result<Value, Response> {
    let Some(url) = &m.cfg.merchant_endpoint else {
        return Ok(json!({"sent": false, "reason": "no --merchant-endpoint"}));
    };
    let Some(key) = &m.cfg.license_key else {
        return Err(admin_error(
            400,
            "cannot sign the callback: start the stand-in with --license-key-file or CSM_LICENSE_KEY",
        ));
    };
    let activity = body["activity"].as_str().unwrap_or("").to_string();
    let Some(cb) = catalog::find(&activity, Protocol::V2) else {
        return Err(admin_error(
            500,
            &format!("no catalog entry for {activity}"),
        ));
    };
    let fields = match body {
        Value::Object(f) => f,
        _ => return Err(admin_error(500, "callback body: not an object")),
    };
    let opts = PrepOpts {
        endpoint: url,
        now_ms: clock::now_ms(),
        nonce: clock::nonce_hex64(),
        tamper: Tamper::None,
        kit_path_full: false,
        license_inner: m.cfg.license_inner,
    };
    let prepared = request::prepare(cb, None, fields, key, &opts)
        .map_err(|e| admin_error(500, &format!("signing the callback: {e}")))?;
    let sent_body = String::from_utf8_lossy(&prepared.body).into_owned();
    let exchange = Client::new(CALLBACK_TIMEOUT).send(&prepared);
    let (status, result_code, error) = match exchange.outcome {
        Ok(reply) => {
            let rc = serde_json::from_slice::<Value>(&reply.body)
                .ok()
                .and_then(|v| {
                    v.get("resultCode")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
            let err = match &rc {
                _ if reply.truncated => Some(format!(
                    "HTTP {}, the answer is larger than {MAX_REPLY} bytes",
                    reply.status
                )),
                Some(c) if c == "000000" && reply.status == 200 => None,
                Some(c) => Some(format!("HTTP {}, resultCode {c}", reply.status)),
                None => Some(format!(
                    "HTTP {}, no resultCode in the answer",
                    reply.status
                )),
            };
            (Some(reply.status), rc, err)
        }
        Err(f) => (None, None, Some(f.message)),
    };
    let mut out = Map::new();
    out.insert("sent".into(), Value::Bool(true));
    out.insert("activity".into(), Value::String(activity.clone()));
    out.insert("url".into(), Value::String(url.to_string()));
    out.insert("body".into(), Value::String(sent_body.clone()));
    out.insert("http_status".into(), json!(status));
    out.insert("result_code".into(), json!(result_code));
    out.insert("error".into(), json!(error));
    if let Ok(conn) = m.db.lock() {
        let _ = conn.execute(
            "INSERT INTO license_callbacks (code, activity, body, http_status, result_code, error, sent_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![code, activity, sent_body, status, result_code, error, clock::now_ms()],
        );
    }
    Ok(Value::Object(out))
}
