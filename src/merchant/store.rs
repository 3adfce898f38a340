//! The reference merchant's state: instances, license codes and Kit records in SQLite
//! (a file with `--state`, shared with the usage journal's database; else in memory).

use crate::error::{CsmError, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

pub struct Store {
    conn: Connection,
    /// In memory (no `--state`): at most this many instances, the least recently changed
    /// forgotten first, so a long load run does not grow without limit.
    cap: Option<u64>,
    inserted: u64,
}

/// Instances an in-memory store keeps (see [`Store::cap`]).
pub const MEMORY_INSTANCES: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub instance_id: String,
    pub order_key: String,
    /// ACTIVE, FROZEN, EXPIRED or RELEASED.
    pub status: String,
    pub expire_time: Option<String>,
}

impl Store {
    pub fn open(path: Option<&Path>) -> Result<Store> {
        let named = |e: rusqlite::Error| match path {
            Some(p) => CsmError::Storage(format!(
                "--state {}: not a usable SQLite state file ({e})",
                p.display()
            )),
            None => CsmError::from(e),
        };
        let conn = match path {
            Some(p) => Connection::open(p).map_err(named)?,
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(named)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS merchant_instances (
                 instance_id TEXT PRIMARY KEY,
                 order_key TEXT NOT NULL,
                 status TEXT NOT NULL,
                 expire_time TEXT,
                 updated_ms INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS merchant_instances_order ON merchant_instances(order_key);
             CREATE TABLE IF NOT EXISTS merchant_licenses (
                 license TEXT PRIMARY KEY,
                 status TEXT NOT NULL,
                 expire_time TEXT,
                 updated_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS merchant_kit (
                 kind TEXT NOT NULL,
                 id TEXT NOT NULL,
                 data TEXT NOT NULL,
                 updated_ms INTEGER NOT NULL,
                 PRIMARY KEY (kind, id));",
        )
        .map_err(named)?;
        Ok(Store {
            conn,
            cap: path.is_none().then_some(MEMORY_INSTANCES),
            inserted: 0,
        })
    }

    /// The same with another cap.
    #[cfg(test)]
    pub fn with_cap(mut self, cap: u64) -> Store {
        self.cap = Some(cap);
        self
    }

    fn now() -> i64 {
        crate::clock::now_ms()
    }

    fn row(r: &rusqlite::Row) -> rusqlite::Result<Instance> {
        Ok(Instance {
            instance_id: r.get(0)?,
            order_key: r.get(1)?,
            status: r.get(2)?,
            expire_time: r.get(3)?,
        })
    }

    pub fn by_order(&self, order_key: &str) -> Result<Option<Instance>> {
        Ok(self
            .conn
            .query_row(
                "SELECT instance_id, order_key, status, expire_time FROM merchant_instances
                 WHERE order_key = ?1 ORDER BY rowid LIMIT 1",
                params![order_key],
                Self::row,
            )
            .optional()?)
    }

    pub fn instance(&self, id: &str) -> Result<Option<Instance>> {
        Ok(self
            .conn
            .query_row(
                "SELECT instance_id, order_key, status, expire_time FROM merchant_instances
                 WHERE instance_id = ?1",
                params![id],
                Self::row,
            )
            .optional()?)
    }

    pub fn insert_instance(&mut self, id: &str, order_key: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO merchant_instances (instance_id, order_key, status, updated_ms)
             VALUES (?1, ?2, 'ACTIVE', ?3)",
            params![id, order_key, Self::now()],
        )?;
        self.inserted += 1;
        if let Some(cap) = self.cap {
            // Counted every so often, not on each insert: count(*) reads the whole table.
            if self.inserted.is_multiple_of((cap / 10).max(1)) {
                self.conn.execute(
                    "DELETE FROM merchant_instances WHERE instance_id IN (
                         SELECT instance_id FROM merchant_instances ORDER BY updated_ms DESC
                         LIMIT -1 OFFSET ?1)",
                    params![cap as i64],
                )?;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn instance_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM merchant_instances", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    pub fn set_status(&self, id: &str, status: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE merchant_instances SET status = ?2, updated_ms = ?3 WHERE instance_id = ?1",
            params![id, status, Self::now()],
        )?;
        Ok(())
    }

    pub fn set_expiry(&self, id: &str, expire_time: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE merchant_instances SET expire_time = ?2, updated_ms = ?3 WHERE instance_id = ?1",
            params![id, expire_time, Self::now()],
        )?;
        Ok(())
    }

    pub fn license(&self, code: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT status FROM merchant_licenses WHERE license = ?1",
                params![code],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn put_license(&self, code: &str, status: &str, expire_time: Option<&str>) -> Result<()> {
        self.conn.execute(
            "INSERT INTO merchant_licenses (license, status, expire_time, updated_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(license) DO UPDATE SET status = ?2,
                 expire_time = COALESCE(?3, expire_time), updated_ms = ?4",
            params![code, status, expire_time, Self::now()],
        )?;
        Ok(())
    }

    pub fn kit_exists(&self, kind: &str, id: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM merchant_kit WHERE kind = ?1 AND id = ?2",
                params![kind, id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn kit_put(&self, kind: &str, id: &str, data: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO merchant_kit (kind, id, data, updated_ms) VALUES (?1, ?2, ?3, ?4)",
            params![kind, id, data, Self::now()],
        )?;
        Ok(())
    }

    pub fn kit_delete(&self, kind: &str, id: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM merchant_kit WHERE kind = ?1 AND id = ?2",
            params![kind, id],
        )?;
        Ok(())
    }
}
