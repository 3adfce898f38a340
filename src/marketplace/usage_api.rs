//! The usage push API of the stand-in marketplace:
//! `POST /api/mkp-openapi-public/global/v1/isv/usage-data`.
//!
//! Checks the `signature`/`ts`/`nonce` headers (MKT.0102 on a bad one), the batch (MKT.0101,
//! 9002, 9003, 9004), then each record, and keeps the accepted ones in `usage_records`
//! (first wins: a second record with the same metering_sn, or the same instance_id +
//! begin_time + end_time, is refused and not stored). The real API answers only for the
//! batch; the stand-in adds a `results` list with a per-record code for every record it did
//! not accept (its own convention, docs/usage.md). Faults (`--fault`): `5xx[=N]`, `slow[=MS]`, `drop-after-store[=N]`,
//! `partial-rejects[=N]`, `batch-limit[=N]`. The periodic ones (`5xx`, `drop-after-store`)
//! count batches, not requests: see [`Batches`].

use super::{FaultKind, Marketplace};
use crate::clock;
use crate::protocol::json::{self, write_string, Json};
use crate::protocol::usage_sig;
use crate::server::{Request, Response};
use crate::usage::batch::{record_code_meaning, MAX_BATCH, USAGE_PATH};
use crate::usage::record::{self, MAX_AGE_DAYS, MAX_ID_LEN};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

pub fn init_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS usage_records (
            id                  INTEGER PRIMARY KEY,
            metering_sn         TEXT NOT NULL UNIQUE,
            instance_id         TEXT NOT NULL,
            begin_time          TEXT NOT NULL,
            end_time            TEXT NOT NULL,
            record_time         TEXT NOT NULL,
            usage_value         TEXT NOT NULL,
            -- How usage_value arrived: 'number' or 'string' (JSON type).
            usage_value_type    TEXT NOT NULL,
            relate_pkg_instance TEXT,
            request_id          INTEGER NOT NULL,
            received_at         TEXT NOT NULL,
            UNIQUE (begin_time, end_time, instance_id)
        );
        CREATE TABLE IF NOT EXISTS usage_requests (
            id          INTEGER PRIMARY KEY,
            received_at TEXT NOT NULL,
            records     INTEGER NOT NULL,
            stored      INTEGER NOT NULL,
            error_code  TEXT NOT NULL,
            fault       TEXT
        );",
    )
}

const FIELDS: [&str; 7] = [
    "begin_time",
    "end_time",
    "instance_id",
    "metering_sn",
    "record_time",
    "relate_pkg_instance",
    "usage_value",
];

fn answer(status: u16, code: &str, msg: &str) -> Response {
    let mut body = String::from("{\"error_code\":");
    write_string(&mut body, code);
    body.push_str(",\"error_msg\":");
    write_string(&mut body, msg);
    body.push('}');
    Response::json(status, body)
}

/// Answers the requests this module owns; None for any other path.
pub fn route(m: &Marketplace, req: &Request) -> Option<Response> {
    if req.path() != USAGE_PATH {
        return None;
    }
    if req.method != "POST" {
        return Some(answer(405, "MKT.0199", "method not allowed: use POST"));
    }
    let seen = m.usage_batches.see(&req.body);
    let mut resp = handle(m, req, seen);
    if let Some(ms) = m.fault_param(FaultKind::Slow) {
        resp.delay = Some(Duration::from_millis(ms.unwrap_or(2000)));
    }
    Some(resp)
}

/// The usage push batches received, by the hash of their body. An uploader sends a batch
/// again with the same body (only `ts`, `nonce` and the signature change), so a periodic
/// fault counted by request would land on the retry of the batch it failed whenever the
/// sender keeps an even number of requests in flight, and the retries of a seller testing
/// them would never get through. One entry per distinct batch (a million records in
/// batches of 1000 are 1000 entries).
#[derive(Debug, Default)]
pub struct Batches(Mutex<HashMap<u64, u64>>);

/// Where a request stands among the batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The batch's number, from 1, in the order first received.
    pub batch: u64,
    /// This request is the batch's first attempt.
    pub first: bool,
}

impl Batches {
    /// Notes a request with this body.
    pub fn see(&self, body: &[u8]) -> Seen {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let next = seen.len() as u64 + 1;
        let batch = *seen.entry(h.finish()).or_insert(next);
        Seen {
            batch,
            first: batch == next,
        }
    }
}

/// A periodic fault (`--fault NAME[=N]`, N by default 2) hits the first attempt of every
/// N-th batch, counting from the first; a batch sent again gets through. `N = 1` is a
/// marketplace that keeps failing: every request, retries too.
fn hits(every: Option<u64>, seen: Seen) -> bool {
    let every = every.unwrap_or(2).max(1);
    every == 1 || (seen.first && (seen.batch - 1).is_multiple_of(every))
}

fn handle(m: &Marketplace, req: &Request, seen: Seen) -> Response {
    if let Some(every) = m.fault_param(FaultKind::ServerError) {
        if hits(every, seen) {
            log_request(m, 0, 0, "MKT.0999", Some("5xx"));
            return answer(500, "MKT.0999", "internal error (fault 5xx)");
        }
    }
    // API Gateway signing on top (decision 6): checked when the request carries an
    // Authorization header and the stand-in was given an SK (`--sk-file`).
    if let (Some(sk), Some(_)) = (&m.cfg.sk, req.header("Authorization")) {
        let ok = crate::protocol::apig::verify(
            sk.expose(),
            &req.method,
            &req.url,
            &req.headers,
            &req.body,
        )
        .unwrap_or(false);
        if !ok {
            log_request(m, 0, 0, "APIGW.0301", None);
            return answer(
                401,
                "APIGW.0301",
                "Incorrect IAM authentication information",
            );
        }
    }
    // A definite refusal, as for a wrong key: a 5xx would have the uploader retry in vain.
    let Some(key) = &m.cfg.usage_key else {
        log_request(m, 0, 0, "MKT.0102", None);
        return answer(
            400,
            "MKT.0102",
            "Invalid body sign: the stand-in marketplace was started without --key-file, so it holds no key to check it",
        );
    };
    let (Some(sig), Some(ts), Some(nonce)) = (
        req.header("signature"),
        req.header("ts"),
        req.header("nonce"),
    ) else {
        return answer(
            400,
            "MKT.0199",
            "headers signature, ts and nonce are mandatory",
        );
    };
    if sig.len() > 1000 || ts.len() > 20 || nonce.len() > 64 {
        return answer(
            400,
            "MKT.0199",
            "header too long (signature 1000, ts 20, nonce 64)",
        );
    }
    let Ok(text) = std::str::from_utf8(&req.body) else {
        return answer(400, "MKT.0101", "body is not UTF-8");
    };
    let parsed = json::parse(&req.body);
    // Decision 2: the raw bytes first, then the body re-serialised with sorted keys.
    let raw_ok = usage_sig::verify(key.expose(), text.as_bytes(), ts, nonce, sig);
    let ok = raw_ok
        || parsed.as_ref().is_ok_and(|b| {
            usage_sig::signature_matches(
                &usage_sig::sign(key.expose(), b, ts, nonce).signature,
                sig,
            )
        });
    if !ok {
        log_request(m, 0, 0, "MKT.0102", None);
        return answer(400, "MKT.0102", "Invalid body sign");
    }
    let body = match parsed {
        Ok(b) => b,
        Err(e) => return answer(400, "MKT.0101", &format!("body is not JSON: {e}")),
    };
    // The docs disagree on the limit (100 or 1000): `batch-limit=100` plays the other one.
    let limit = match m.fault_param(FaultKind::BatchLimit) {
        Some(v) => v.unwrap_or(100) as usize,
        None => MAX_BATCH,
    };
    let records = match check_batch(&body, limit) {
        Ok(r) => r,
        Err((status, code, msg)) => {
            log_request(m, 0, 0, code, None);
            return answer(status, code, &msg);
        }
    };
    let now = clock::now();
    for (i, r) in records.iter().enumerate() {
        if let Some(b) = r
            .get("begin_time")
            .and_then(Json::as_str)
            .and_then(api_time)
        {
            if now - b > chrono::Duration::days(MAX_AGE_DAYS) {
                log_request(m, records.len(), 0, "MKT.9004", None);
                return answer(
                    500,
                    "MKT.9004",
                    &format!("usage_records[{i}]: begin_time is more than {MAX_AGE_DAYS} days old"),
                );
            }
        }
    }
    let reject_every = m.fault_param(FaultKind::PartialRejects);
    let results = match store(m, &records, now, reject_every) {
        Ok(r) => r,
        Err(e) => return answer(500, "MKT.0999", &format!("state database: {e}")),
    };
    let mut out = String::with_capacity(records.len() * 70 + 64);
    out.push_str("{\"error_code\":\"MKT.0000\",\"error_msg\":\"success\",\"results\":[");
    // Only the records not accepted are listed (an absent record was accepted): the answer
    // stays small, like the real API's, when a batch goes through.
    let listed = results.iter().filter(|(_, code, _)| *code != "000");
    for (i, (sn, code, msg)) in listed.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"metering_sn\":");
        write_string(&mut out, sn);
        out.push_str(",\"result_code\":");
        write_string(&mut out, code);
        out.push_str(",\"result_msg\":");
        write_string(&mut out, msg);
        out.push('}');
    }
    out.push_str("]}");
    let mut resp = Response::json(200, out);
    if let Some(every) = m.fault_param(FaultKind::DropAfterStore) {
        // The batch is stored and committed; the sender never learns it (the ambiguous case).
        resp.drop_connection = hits(every, seen);
    }
    resp
}

fn api_time(s: &str) -> Option<DateTime<Utc>> {
    record::parse_api_time(s)
}

type BatchError = (u16, &'static str, String);

fn check_batch(body: &Json, limit: usize) -> Result<Vec<&Json>, BatchError> {
    let Json::Object(top) = body else {
        return Err((400, "MKT.0101", "body must be a JSON object".into()));
    };
    if let Some((k, _)) = top.iter().find(|(k, _)| k != "usage_records") {
        return Err((400, "MKT.0101", format!("undefined parameter {k:?}")));
    }
    let Some(Json::Array(list)) = body.get("usage_records") else {
        return Err((
            400,
            "MKT.0101",
            "usage_records: missing or not an array".into(),
        ));
    };
    if list.is_empty() {
        return Err((500, "MKT.9002", "usage_records is empty".into()));
    }
    if list.len() > limit {
        return Err((
            500,
            "MKT.9003",
            format!(
                "{} usage records in one request (at most {limit})",
                list.len()
            ),
        ));
    }
    for (i, r) in list.iter().enumerate() {
        let Json::Object(members) = r else {
            return Err((
                500,
                "MKT.9002",
                format!("usage_records[{i}]: not an object"),
            ));
        };
        for (k, v) in members {
            if !FIELDS.contains(&k.as_str()) {
                return Err((
                    500,
                    "MKT.9002",
                    format!("usage_records[{i}]: undefined field {k:?}"),
                ));
            }
            let ok = matches!(v, Json::String(_) | Json::Null)
                || (k == "usage_value" && matches!(v, Json::Number(_)));
            if !ok {
                return Err((
                    500,
                    "MKT.9002",
                    format!("usage_records[{i}].{k}: wrong type"),
                ));
            }
        }
    }
    Ok(list.iter().collect())
}

/// Per-record checks in the order of the code list; None when the record is acceptable.
fn record_problem(r: &Json, now: DateTime<Utc>) -> Option<(&'static str, String)> {
    let s = |k: &str| r.get(k).and_then(Json::scalar_text).unwrap_or_default();
    let sn = s("metering_sn");
    if sn.is_empty() || sn.chars().count() > MAX_ID_LEN {
        return Some(("004", "metering_sn missing or longer than 64".into()));
    }
    let inst = s("instance_id");
    if inst.is_empty() || inst.chars().count() > MAX_ID_LEN {
        return Some(("001", "instance_id missing or longer than 64".into()));
    }
    let mut times = [None, None, None];
    for (i, k) in ["begin_time", "end_time", "record_time"].iter().enumerate() {
        match api_time(&s(k)) {
            Some(t) => times[i] = Some(t),
            None => return Some(("002", format!("{k}: not yyyyMMddTHHmmssZ"))),
        }
    }
    if let Err(e) = record::normalize_value(&s("usage_value")) {
        return Some(("003", e.message));
    }
    let (b, e) = (times[0]?, times[1]?);
    if b > e || e > now {
        return Some((
            "011",
            "invalid time range (begin_time <= end_time <= now)".into(),
        ));
    }
    if s("relate_pkg_instance").chars().count() > MAX_ID_LEN {
        return Some(("001", "relate_pkg_instance longer than 64".into()));
    }
    None
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Checks and stores a batch in one transaction; returns (metering_sn, code, message) per record.
fn store(
    m: &Marketplace,
    records: &[&Json],
    now: DateTime<Utc>,
    reject_every: Option<Option<u64>>,
) -> rusqlite::Result<Vec<(String, &'static str, String)>> {
    let mut db = m.db.lock().unwrap_or_else(|p| p.into_inner());
    let tx = db.transaction()?;
    let now_s = record::format_api_time(now);
    tx.execute(
        "INSERT INTO usage_requests (received_at, records, stored, error_code, fault)
         VALUES (?1, ?2, 0, 'MKT.0000', NULL)",
        params![now_s, records.len() as i64],
    )?;
    let request_id = tx.last_insert_rowid();
    let mut out = Vec::with_capacity(records.len());
    let mut stored = 0i64;
    {
        let mut ins = tx.prepare_cached(
            "INSERT OR IGNORE INTO usage_records (metering_sn, instance_id, begin_time, end_time,
             record_time, usage_value, usage_value_type, relate_pkg_instance, request_id,
             received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut by_sn = tx.prepare_cached("SELECT 1 FROM usage_records WHERE metering_sn = ?1")?;
        for r in records {
            let s = |k: &str| r.get(k).and_then(Json::scalar_text).unwrap_or_default();
            let sn = s("metering_sn");
            if let Some((code, msg)) = record_problem(r, now) {
                out.push((sn, code, msg));
                continue;
            }
            let inst = s("instance_id");
            if let Some(every) = reject_every {
                if fnv(&inst).is_multiple_of(every.unwrap_or(10).max(1)) {
                    out.push((
                        sn,
                        "012",
                        "instance is not pay-per-use (fault partial-rejects)".into(),
                    ));
                    continue;
                }
            }
            let value = record::normalize_value(&s("usage_value")).unwrap_or_default();
            let value_type = match r.get("usage_value") {
                Some(Json::Number(_)) => "number",
                _ => "string",
            };
            let relate = Some(s("relate_pkg_instance")).filter(|p| !p.is_empty());
            let n = ins.execute(params![
                sn,
                inst,
                s("begin_time"),
                s("end_time"),
                s("record_time"),
                value,
                value_type,
                relate,
                request_id,
                now_s
            ])?;
            if n == 1 {
                stored += 1;
                out.push((sn, "000", "accepted".into()));
            } else if by_sn.exists([&sn])? {
                out.push((sn, "005", record_code_meaning("005").into()));
            } else {
                out.push((sn, "010", record_code_meaning("010").into()));
            }
        }
    }
    tx.execute(
        "UPDATE usage_requests SET stored = ?2 WHERE id = ?1",
        params![request_id, stored],
    )?;
    tx.commit()?;
    Ok(out)
}

fn log_request(m: &Marketplace, records: usize, stored: i64, code: &str, fault: Option<&str>) {
    let db = m.db.lock().unwrap_or_else(|p| p.into_inner());
    let _ = db.execute(
        "INSERT INTO usage_requests (received_at, records, stored, error_code, fault)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            record::format_api_time(clock::now()),
            records as i64,
            stored,
            code,
            fault
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch is known by its body: sent again (new headers, same records), it is the same
    /// batch, and no longer its first attempt.
    #[test]
    fn batches_are_numbered_by_body() {
        let b = Batches::default();
        let seen = |body: &str| b.see(body.as_bytes());
        let first = |batch| Seen { batch, first: true };
        let again = |batch| Seen {
            batch,
            first: false,
        };
        assert_eq!(seen("a"), first(1));
        assert_eq!(seen("b"), first(2));
        assert_eq!(seen("a"), again(1));
        assert_eq!(seen("c"), first(3));
        assert_eq!(seen("b"), again(2));
        assert_eq!(seen("a"), again(1));
    }

    /// Every N-th batch fails its first attempt only, whatever the requests between: with
    /// two batches in flight, a request count put the retry of every failed batch on the
    /// next failing number. N = 1 fails every request, retries too.
    #[test]
    fn a_periodic_fault_lets_the_retry_of_a_batch_through() {
        let b = Batches::default();
        // Two in flight: A, B; A again with C; B is answered; C again with D; ...
        let order = ["A", "B", "A", "C", "D", "C", "E", "F", "E"];
        let failed: Vec<&str> = order
            .iter()
            .filter(|x| hits(None, b.see(x.as_bytes())))
            .copied()
            .collect();
        assert_eq!(failed, ["A", "C", "E"]);
        let b = Batches::default();
        let every_third: Vec<bool> = ["A", "B", "C", "D", "A", "D"]
            .iter()
            .map(|x| hits(Some(3), b.see(x.as_bytes())))
            .collect();
        assert_eq!(every_third, [true, false, false, true, false, false]);
        let b = Batches::default();
        assert!(["A", "A", "A"]
            .iter()
            .all(|x| hits(Some(1), b.see(x.as_bytes()))));
    }
}
