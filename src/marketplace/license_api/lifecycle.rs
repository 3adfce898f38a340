//! The License 2.0 lifecycle of a code in the stand-in: minted (CREATED), claimed, activated
//! (ALIVE) and counted by heartbeats through the open APIs; renewed, frozen, unfrozen,
//! expired and released through the admin endpoints, each with the License callback the
//! marketplace sends for it.

use super::store::{self, load, Row};
use super::{
    admin_error, answer, answer_data, new_order_id, now_text, opt_str, required_str, string_list,
    Marketplace, ILLEGAL_IN_BATCH, ILLEGAL_STATE, INVALID_PARAM, NOT_ACTIVATED, NOT_CLAIMED,
    NOT_FOUND, SUCCESS,
};
use crate::catalog::{self, Protocol};
use crate::clock;
use crate::endpoint::client::{Client, MAX_REPLY};
use crate::endpoint::request::{self, PrepOpts, Tamper};
use crate::license::openapi::{valid_time, CODE_MAX, TIME_FORMAT};
use crate::server::Response;
use rusqlite::Connection;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The marketplace's budget per callback (decision 8).
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

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

/// §2.6.1: the real effect time "must not be earlier than the order time". The spec names no
/// error code for it; this is the parameter error the stand-in gives any bad real_effect_time.
fn too_early(row: &Row, at: &str) -> Option<(&'static str, String)> {
    let ordered = row.ordered_at();
    (at < ordered.as_str()).then(|| {
        (
            INVALID_PARAM,
            format!(
                "real_effect_time {at}: must not be earlier than the order time of license code {} ({ordered})",
                row.code
            ),
        )
    })
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

pub(super) fn activate_v1(conn: &Connection, body: &Value) -> rusqlite::Result<Response> {
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
    if let Some((c, msg)) = too_early(&row, &at) {
        return Ok(answer(200, c, &msg));
    }
    store::mark_alive(conn, code, &at)?;
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

pub(super) fn activate_v2(conn: &Connection, body: &Value) -> rusqlite::Result<Response> {
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
        let row = load(conn, c)?;
        if let Some((code, msg)) = activation_refusal(row.as_ref(), c) {
            bad.push(format!("{code} {msg}"));
        } else if let Some((code, msg)) = row.as_ref().and_then(|r| too_early(r, &at)) {
            // One time for the whole batch: too early for one code is a bad parameter.
            return Ok(answer(200, code, &msg));
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
        store::mark_alive(conn, c, &at)?;
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

pub(super) fn heartbeat_v1(conn: &Connection, body: &Value) -> rusqlite::Result<Response> {
    let code = match required_str(body, "license", CODE_MAX) {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    Ok(match heartbeat_row(conn, code)? {
        Ok(row) => answer_data(store::count_heartbeat(conn, row)?.license_info()),
        Err(r) => r,
    })
}

/// The v2 field names were not captured by the sources; `license_list` follows activate v2.
pub(super) fn heartbeat_v2(conn: &Connection, body: &Value) -> rusqlite::Result<Response> {
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
        infos.push(store::count_heartbeat(conn, row)?.license_info());
    }
    Ok(answer_data(Value::Array(infos)))
}

pub(super) fn mint(m: &Marketplace, body: &Value) -> rusqlite::Result<Response> {
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
        let new = store::NewCode {
            code: &code,
            product_id: &product,
            order_id: &order,
            order_line_id: &line,
            amount,
            claimed,
            expire_time: &expire,
        };
        if store::insert_code(&conn, &new)? {
            minted.push(load(&conn, &code)?.expect("just inserted").admin_json());
        }
    }
    let codes: Vec<Value> = minted.iter().map(|r| r["license"].clone()).collect();
    Ok(Response::json(
        200,
        json!({ "codes": codes, "licenses": minted }).to_string(),
    ))
}

/// One admin lifecycle step (claim, renew, freeze, unfreeze, expire, release): check the
/// transition, send the callback it implies (if a merchant endpoint is configured), then
/// store the new state.
pub(super) fn step(m: &Marketplace, step: &str, body: &Value) -> rusqlite::Result<Response> {
    let code = match body.get("license").and_then(Value::as_str) {
        Some(c) => c.to_string(),
        None => return Ok(admin_error(400, "license: required")),
    };
    let test_flag = match opt_str(body, "test_flag") {
        Ok(Some(f @ ("0" | "1"))) => f.to_string(),
        // Debug ("1") unless asked: every callback csm sends is a test, and a merchant must
        // not treat one as a real renewal or release by default.
        Ok(None) => "1".into(),
        Ok(Some(f)) => {
            return Ok(admin_error(
                400,
                &format!("test_flag {f:?}: must be \"0\" or \"1\""),
            ))
        }
        Err(r) => return Ok(r),
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
                Ok(Some(t)) => {
                    return Ok(admin_error(
                        400,
                        &format!("expire_time {t:?}: must be UTC yyyyMMddHHmmss"),
                    ))
                }
                Ok(None) => {
                    return Ok(admin_error(
                        400,
                        "expire_time: required, UTC yyyyMMddHHmmss",
                    ))
                }
                Err(r) => return Ok(r),
            };
            let scene = match opt_str(body, "scene") {
                Ok(None) => "RENEWAL",
                Ok(Some(s @ ("RENEWAL" | "UNSUBSCRIBE_RENEWAL_PERIOD"))) => s,
                Ok(Some(s)) => {
                    return Ok(admin_error(
                        400,
                        &format!("scene {s:?}: must be RENEWAL or UNSUBSCRIBE_RENEWAL_PERIOD"),
                    ))
                }
                Err(r) => return Ok(r),
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
        store::set_claimed(&conn, &code)?;
    } else {
        // The lock was released while the callback went out: store only over the state the
        // transition was checked against, so a concurrent step is never overwritten.
        if !store::store_transition(&conn, &row, &status, &expire)? {
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
    // No connection or no TLS session (also one that timed out): the request never left.
    // A failure after it was written (a timeout, a reset) may come after the merchant had
    // it, so it counts as sent.
    let reached = match &exchange.outcome {
        Ok(_) => true,
        Err(f) => !f.unsent,
    };
    let (status, result_code, error) = match exchange.outcome {
        Ok(reply) => {
            let rc = reply
                .json()
                .and_then(|v| v.get("resultCode")?.as_str())
                .map(str::to_string);
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
    out.insert("sent".into(), Value::Bool(reached));
    out.insert("activity".into(), Value::String(activity.clone()));
    out.insert("url".into(), Value::String(url.to_string()));
    out.insert("body".into(), Value::String(sent_body.clone()));
    out.insert("http_status".into(), json!(status));
    out.insert("result_code".into(), json!(result_code));
    out.insert("error".into(), json!(error));
    if let Ok(conn) = m.db.lock() {
        let log = store::CallbackLog {
            code,
            activity: &activity,
            body: &sent_body,
            http_status: status,
            result_code: result_code.as_deref(),
            error: error.as_deref(),
        };
        let _ = store::log_callback(&conn, &log);
    }
    Ok(Value::Object(out))
}
