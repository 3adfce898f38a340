//! The reference merchant's state: instances, license codes and Kit records in SQLite
//! (a file with `--state`, shared with the usage journal's database; else in memory).

use crate::error::{CsmError, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

pub struct Store {
    conn: Connection,
    /// In memory (no `--state`): at most this many rows per table (instances, license codes,
    /// Kit records), the oldest written forgotten first, so a long load run does not grow
    /// without limit.
    cap: Option<i64>,
}

/// Rows per table an in-memory store keeps (see [`Store::cap`]).
pub const MEMORY_ROWS: i64 = 100_000;

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
            cap: path.is_none().then_some(MEMORY_ROWS),
        })
    }

    /// The same with another cap.
    #[cfg(test)]
    fn with_cap(mut self, cap: i64) -> Store {
        self.cap = Some(cap);
        self
    }

    /// After a row is added to `table`: with a cap, the rows beyond it go, oldest first (by
    /// rowid: a row replaced by INSERT OR REPLACE is new again, one updated in place keeps
    /// its age). At most the one row that fell out is deleted, through the rowid: no scan
    /// and no pause however long the run.
    fn evict(&self, table: &str) -> Result<()> {
        if let Some(cap) = self.cap {
            self.exec(
                &format!(
                    "DELETE FROM {table} WHERE rowid <= (SELECT max(rowid) FROM {table}) - ?1"
                ),
                params![cap],
            )?;
        }
        Ok(())
    }

    /// Runs one statement, prepared once per connection: the merchant runs the same few on
    /// every request, and parsing them each time cost a third of its time under load.
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }

    /// The first row of a query (prepared once, as [`Store::exec`]), if any.
    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        self.conn
            .prepare_cached(sql)?
            .query_row(params, f)
            .optional()
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
        Ok(self.one(
            "SELECT instance_id, order_key, status, expire_time FROM merchant_instances
                 WHERE order_key = ?1 ORDER BY rowid LIMIT 1",
            params![order_key],
            Self::row,
        )?)
    }

    pub fn instance(&self, id: &str) -> Result<Option<Instance>> {
        Ok(self.one(
            "SELECT instance_id, order_key, status, expire_time FROM merchant_instances
                 WHERE instance_id = ?1",
            params![id],
            Self::row,
        )?)
    }

    pub fn insert_instance(&mut self, id: &str, order_key: &str) -> Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO merchant_instances (instance_id, order_key, status, updated_ms)
             VALUES (?1, ?2, 'ACTIVE', ?3)",
            params![id, order_key, Self::now()],
        )?;
        self.evict("merchant_instances")
    }

    #[cfg(test)]
    fn count(&self, table: &str) -> i64 {
        self.one(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
            .unwrap()
    }

    pub fn set_status(&self, id: &str, status: &str) -> Result<()> {
        self.exec(
            "UPDATE merchant_instances SET status = ?2, updated_ms = ?3 WHERE instance_id = ?1",
            params![id, status, Self::now()],
        )?;
        Ok(())
    }

    pub fn set_expiry(&self, id: &str, expire_time: &str) -> Result<()> {
        self.exec(
            "UPDATE merchant_instances SET expire_time = ?2, updated_ms = ?3 WHERE instance_id = ?1",
            params![id, expire_time, Self::now()],
        )?;
        Ok(())
    }

    pub fn license(&self, code: &str) -> Result<Option<String>> {
        Ok(self.one(
            "SELECT status FROM merchant_licenses WHERE license = ?1",
            params![code],
            |r| r.get(0),
        )?)
    }

    pub fn put_license(&self, code: &str, status: &str, expire_time: Option<&str>) -> Result<()> {
        self.exec(
            "INSERT INTO merchant_licenses (license, status, expire_time, updated_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(license) DO UPDATE SET status = ?2,
                 expire_time = COALESCE(?3, expire_time), updated_ms = ?4",
            params![code, status, expire_time, Self::now()],
        )?;
        self.evict("merchant_licenses")
    }

    pub fn kit_exists(&self, kind: &str, id: &str) -> Result<bool> {
        Ok(self
            .one(
                "SELECT 1 FROM merchant_kit WHERE kind = ?1 AND id = ?2",
                params![kind, id],
                |_| Ok(()),
            )?
            .is_some())
    }

    pub fn kit_put(&self, kind: &str, id: &str, data: &str) -> Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO merchant_kit (kind, id, data, updated_ms) VALUES (?1, ?2, ?3, ?4)",
            params![kind, id, data, Self::now()],
        )?;
        self.evict("merchant_kit")
    }

    pub fn kit_delete(&self, kind: &str, id: &str) -> Result<()> {
        self.exec(
            "DELETE FROM merchant_kit WHERE kind = ?1 AND id = ?2",
            params![kind, id],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_memory_store_keeps_the_newest_rows_up_to_its_cap() {
        let mut s = Store::open(None).unwrap().with_cap(100);
        for i in 0..1_000 {
            s.insert_instance(&format!("i{i}"), &format!("o{i}"))
                .unwrap();
            s.put_license(&format!("L{i}"), "ACTIVE", None).unwrap();
            s.kit_put("user", &format!("u{i}"), "{}").unwrap();
        }
        for t in ["merchant_instances", "merchant_licenses", "merchant_kit"] {
            assert_eq!(s.count(t), 100, "{t}");
        }
        assert!(s.instance("i899").unwrap().is_none());
        assert_eq!(s.by_order("o999").unwrap().unwrap().instance_id, "i999");
        // A license code updated in place keeps its age: the oldest still goes first.
        s.put_license("L900", "FROZEN", None).unwrap();
        s.put_license("L2000", "ACTIVE", None).unwrap();
        assert!(s.license("L900").unwrap().is_none());
        assert_eq!(s.license("L901").unwrap().as_deref(), Some("ACTIVE"));
        assert_eq!(s.count("merchant_licenses"), 100);
    }

    #[test]
    fn a_state_file_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(Some(&dir.path().join("m.sqlite"))).unwrap();
        for i in 0..300 {
            s.insert_instance(&format!("i{i}"), &format!("o{i}"))
                .unwrap();
        }
        assert_eq!(s.count("merchant_instances"), 300);
    }
}
