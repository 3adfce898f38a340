//! The stand-in's license state in SQLite: the schema and every query. Callers hold the
//! database lock; nothing here decides whether a step is allowed.

use super::now_text;
use crate::clock;
use crate::license::openapi::TIME_FORMAT;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

/// Creates the license tables when they are missing.
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

#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) code: String,
    pub(super) product_id: String,
    pub(super) order_id: String,
    pub(super) order_line_id: String,
    pub(super) amount: i64,
    pub(super) claimed: bool,
    pub(super) status: String,
    pub(super) expire_time: String,
    pub(super) activate_time: Option<String>,
    pub(super) heartbeats: i64,
    /// When the code was minted: its order's time, before which it cannot take effect.
    pub(super) created_ms: i64,
}

impl Row {
    /// The order time in the open APIs' format (UTC yyyyMMddHHmmss, to the second).
    pub(super) fn ordered_at(&self) -> String {
        chrono::DateTime::from_timestamp_millis(self.created_ms)
            .unwrap_or_default()
            .format(TIME_FORMAT)
            .to_string()
    }

    /// The status a heartbeat reports: an ALIVE code past its expiry reads EXPIRED.
    pub(super) fn effective_status(&self) -> String {
        if self.status == "ALIVE" && self.expire_time.as_str() < now_text().as_str() {
            "EXPIRED".into()
        } else {
            self.status.clone()
        }
    }

    pub(super) fn admin_json(&self) -> Value {
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

    pub(super) fn license_info(&self) -> Value {
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

pub(super) fn load(conn: &Connection, code: &str) -> rusqlite::Result<Option<Row>> {
    conn.query_row(
        "SELECT code, product_id, order_id, order_line_id, amount, claimed, status, expire_time,
                activate_time, heartbeats, created_ms FROM license_codes WHERE code = ?1",
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
                created_ms: r.get(10)?,
            })
        },
    )
    .optional()
}

/// Every code, oldest first.
pub(super) fn load_all(conn: &Connection) -> rusqlite::Result<Vec<Row>> {
    let mut st = conn.prepare("SELECT code FROM license_codes ORDER BY created_ms, code")?;
    let codes: Vec<String> = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for c in codes {
        if let Some(r) = load(conn, &c)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// A minted code, not yet activated.
pub(super) struct NewCode<'a> {
    pub(super) code: &'a str,
    pub(super) product_id: &'a str,
    pub(super) order_id: &'a str,
    pub(super) order_line_id: &'a str,
    pub(super) amount: i64,
    pub(super) claimed: bool,
    pub(super) expire_time: &'a str,
}

/// Stores `c` as CREATED; false when the code exists already.
pub(super) fn insert_code(conn: &Connection, c: &NewCode) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO license_codes (code, product_id, order_id, order_line_id, amount,
            claimed, status, expire_time, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'CREATED', ?7, ?8)",
        params![
            c.code,
            c.product_id,
            c.order_id,
            c.order_line_id,
            c.amount,
            c.claimed as i64,
            c.expire_time,
            clock::now_ms()
        ],
    )?;
    Ok(n == 1)
}

pub(super) fn mark_alive(conn: &Connection, code: &str, at: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE license_codes SET status = 'ALIVE', activate_time = ?2 WHERE code = ?1",
        params![code, at],
    )?;
    Ok(())
}

/// Counts a heartbeat on `row`.
pub(super) fn count_heartbeat(conn: &Connection, row: Row) -> rusqlite::Result<Row> {
    conn.execute(
        "UPDATE license_codes SET heartbeats = heartbeats + 1, last_heartbeat_ms = ?2 WHERE code = ?1",
        params![row.code, clock::now_ms()],
    )?;
    Ok(Row {
        heartbeats: row.heartbeats + 1,
        ..row
    })
}

pub(super) fn set_claimed(conn: &Connection, code: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE license_codes SET claimed = 1 WHERE code = ?1",
        params![code],
    )?;
    Ok(())
}

/// Stores a new status and expiry only over the state `from` was read in, so that a step
/// that ran meanwhile is never overwritten; false when it had.
pub(super) fn store_transition(
    conn: &Connection,
    from: &Row,
    status: &str,
    expire_time: &str,
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE license_codes SET status = ?2, expire_time = ?3
         WHERE code = ?1 AND status = ?4 AND expire_time = ?5",
        params![
            from.code,
            status,
            expire_time,
            from.status,
            from.expire_time
        ],
    )?;
    Ok(changed == 1)
}

/// One software usage report (a client id or an active count) for `code`.
pub(super) fn insert_usage_info(
    conn: &Connection,
    code: &str,
    client_id: Option<&str>,
    active_num: Option<i64>,
    received_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO license_usage_info (code, client_id, active_num, received_ms) VALUES (?1, ?2, ?3, ?4)",
        params![code, client_id, active_num, received_ms],
    )?;
    Ok(())
}

/// What one callback attempt sent and got.
pub(super) struct CallbackLog<'a> {
    pub(super) code: &'a str,
    pub(super) activity: &'a str,
    pub(super) body: &'a str,
    pub(super) http_status: Option<u16>,
    pub(super) result_code: Option<&'a str>,
    pub(super) error: Option<&'a str>,
}

pub(super) fn log_callback(conn: &Connection, c: &CallbackLog) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO license_callbacks (code, activity, body, http_status, result_code, error, sent_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![c.code, c.activity, c.body, c.http_status, c.result_code, c.error, clock::now_ms()],
    )?;
    Ok(())
}
