//! The reference merchant's state: instances, license codes and Kit records, in a SQLite
//! file with `--state` (shared with the usage journal's database), else in bounded memory.

use super::instances::{Instances, View};
use crate::error::{CsmError, Result};
use ahash::AHashMap as HashMap;
use rusqlite::{params, Connection, OptionalExtension};
use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::hash::Hash;
use std::path::Path;

/// What the merchant keeps between callbacks. In a state file ([`FileStore`], with
/// `--state`) or in memory ([`MemoryStore`], bounded); both answer the same way, as the tests
/// below check on each.
pub trait Store: Send {
    /// The oldest instance created for an order (orderId + orderLineId).
    fn by_order(&self, order_key: &str) -> Result<Option<Instance>>;
    fn instance(&self, id: &str) -> Result<Option<Instance>>;
    /// A new ACTIVE instance; one with the same id is replaced.
    fn insert_instance(&mut self, id: &str, order_key: &str) -> Result<()>;
    fn set_status(&mut self, id: &str, status: &str) -> Result<()>;
    fn set_expiry(&mut self, id: &str, expire_time: &str) -> Result<()>;
    /// A license code's status.
    fn license(&self, code: &str) -> Result<Option<String>>;
    /// Adds a license code or updates it in place (an absent expiry keeps the one held).
    fn put_license(&mut self, code: &str, status: &str, expire_time: Option<&str>) -> Result<()>;
    fn kit_exists(&self, kind: &str, id: &str) -> Result<bool>;
    /// Adds a Kit record (user, organization, ...) or replaces it.
    fn kit_put(&mut self, kind: &str, id: &str, data: &str) -> Result<()>;
    fn kit_delete(&mut self, kind: &str, id: &str) -> Result<()>;
}

/// The state file given with `--state`, or a bounded store in memory.
pub fn open(path: Option<&Path>) -> Result<Box<dyn Store>> {
    Ok(match path {
        Some(p) => Box::new(FileStore::open(p)?),
        None => Box::new(MemoryStore::new(MEMORY_ROWS)),
    })
}

/// The merchant's tables in a SQLite file (shared with the usage journal's database when
/// that is the same file): everything is kept, across restarts.
pub struct FileStore {
    conn: Connection,
}

/// Rows per table a [`MemoryStore`] keeps (instances, license codes, Kit records): beyond
/// it the row written longest ago is forgotten first, so a long load run does not grow
/// without limit while an instance a lifecycle keeps changing stays.
pub const MEMORY_ROWS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub instance_id: String,
    pub order_key: String,
    /// ACTIVE, FROZEN, EXPIRED or RELEASED.
    pub status: String,
    pub expire_time: Option<String>,
}

impl FileStore {
    pub fn open(path: &Path) -> Result<FileStore> {
        let named = |e: rusqlite::Error| {
            CsmError::Storage(format!(
                "--state {}: not a usable SQLite state file ({e})",
                path.display()
            ))
        };
        let conn = Connection::open(path).map_err(named)?;
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
        Ok(FileStore { conn })
    }

    /// Runs one statement, prepared once per connection.
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }

    /// The first row of a query (prepared once, as [`FileStore::exec`]), if any.
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
}

impl Store for FileStore {
    fn by_order(&self, order_key: &str) -> Result<Option<Instance>> {
        Ok(self.one(
            "SELECT instance_id, order_key, status, expire_time FROM merchant_instances
                 WHERE order_key = ?1 ORDER BY rowid LIMIT 1",
            params![order_key],
            Self::row,
        )?)
    }

    fn instance(&self, id: &str) -> Result<Option<Instance>> {
        Ok(self.one(
            "SELECT instance_id, order_key, status, expire_time FROM merchant_instances
                 WHERE instance_id = ?1",
            params![id],
            Self::row,
        )?)
    }

    fn insert_instance(&mut self, id: &str, order_key: &str) -> Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO merchant_instances (instance_id, order_key, status, updated_ms)
             VALUES (?1, ?2, 'ACTIVE', ?3)",
            params![id, order_key, Self::now()],
        )?;
        Ok(())
    }

    fn set_status(&mut self, id: &str, status: &str) -> Result<()> {
        self.exec(
            "UPDATE merchant_instances SET status = ?2, updated_ms = ?3 WHERE instance_id = ?1",
            params![id, status, Self::now()],
        )?;
        Ok(())
    }

    fn set_expiry(&mut self, id: &str, expire_time: &str) -> Result<()> {
        self.exec(
            "UPDATE merchant_instances SET expire_time = ?2, updated_ms = ?3 WHERE instance_id = ?1",
            params![id, expire_time, Self::now()],
        )?;
        Ok(())
    }

    fn license(&self, code: &str) -> Result<Option<String>> {
        Ok(self.one(
            "SELECT status FROM merchant_licenses WHERE license = ?1",
            params![code],
            |r| r.get(0),
        )?)
    }

    fn put_license(&mut self, code: &str, status: &str, expire_time: Option<&str>) -> Result<()> {
        self.exec(
            "INSERT INTO merchant_licenses (license, status, expire_time, updated_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(license) DO UPDATE SET status = ?2,
                 expire_time = COALESCE(?3, expire_time), updated_ms = ?4",
            params![code, status, expire_time, Self::now()],
        )?;
        Ok(())
    }

    fn kit_exists(&self, kind: &str, id: &str) -> Result<bool> {
        Ok(self
            .one(
                "SELECT 1 FROM merchant_kit WHERE kind = ?1 AND id = ?2",
                params![kind, id],
                |_| Ok(()),
            )?
            .is_some())
    }

    fn kit_put(&mut self, kind: &str, id: &str, data: &str) -> Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO merchant_kit (kind, id, data, updated_ms) VALUES (?1, ?2, ?3, ?4)",
            params![kind, id, data, Self::now()],
        )?;
        Ok(())
    }

    fn kit_delete(&mut self, kind: &str, id: &str) -> Result<()> {
        self.exec(
            "DELETE FROM merchant_kit WHERE kind = ?1 AND id = ?2",
            params![kind, id],
        )?;
        Ok(())
    }
}

/// The merchant's tables in memory, at most `cap` rows each. Under load every accepted
/// newInstance writes a row: hash maps keep that to a hash insert, where an in-memory SQLite
/// database spent more on one insert than the whole rest of the reply.
pub struct MemoryStore {
    instances: Instances,
    /// Status and expiry per license code.
    licenses: Aged<String, (String, Option<String>)>,
    /// Kit records by (kind, id). Their data is written, never read back: only kept here.
    kit: Aged<(String, String), ()>,
}

impl MemoryStore {
    pub fn new(cap: usize) -> MemoryStore {
        MemoryStore {
            instances: Instances::new(cap),
            licenses: Aged::new(cap),
            kit: Aged::new(cap),
        }
    }
}

fn owned(v: View) -> Instance {
    Instance {
        instance_id: v.id.to_string(),
        order_key: v.order_key.to_string(),
        status: v.status.to_string(),
        expire_time: v.expire_time.map(str::to_string),
    }
}

impl Store for MemoryStore {
    fn by_order(&self, order_key: &str) -> Result<Option<Instance>> {
        Ok(self.instances.first_of_order(order_key).map(owned))
    }

    fn instance(&self, id: &str) -> Result<Option<Instance>> {
        Ok(self.instances.get(id).map(owned))
    }

    fn insert_instance(&mut self, id: &str, order_key: &str) -> Result<()> {
        self.instances.insert(id, order_key);
        Ok(())
    }

    fn set_status(&mut self, id: &str, status: &str) -> Result<()> {
        self.instances.set_status(id, status);
        Ok(())
    }

    fn set_expiry(&mut self, id: &str, expire_time: &str) -> Result<()> {
        self.instances.set_expiry(id, expire_time);
        Ok(())
    }

    fn license(&self, code: &str) -> Result<Option<String>> {
        Ok(self.licenses.get(code).map(|(status, _)| status.clone()))
    }

    fn put_license(&mut self, code: &str, status: &str, expire_time: Option<&str>) -> Result<()> {
        if let Some((s, e)) = self.licenses.write(code) {
            *s = status.to_string();
            if let Some(t) = expire_time {
                *e = Some(t.to_string());
            }
        } else {
            let row = (status.to_string(), expire_time.map(str::to_string));
            self.licenses.insert(code.to_string(), row);
        }
        Ok(())
    }

    fn kit_exists(&self, kind: &str, id: &str) -> Result<bool> {
        Ok(self.kit.get(&(kind.to_string(), id.to_string())).is_some())
    }

    fn kit_put(&mut self, kind: &str, id: &str, _data: &str) -> Result<()> {
        self.kit.insert((kind.to_string(), id.to_string()), ());
        Ok(())
    }

    fn kit_delete(&mut self, kind: &str, id: &str) -> Result<()> {
        self.kit.remove(&(kind.to_string(), id.to_string()));
        Ok(())
    }
}

/// Rows by key, at most `cap`, the one written longest ago forgotten first (inserted,
/// replaced or changed: each write makes a row new again).
struct Aged<K, V> {
    rows: HashMap<K, (u64, V)>,
    /// (age, key), oldest first. An entry whose age no longer matches its row's (written or
    /// removed since) is skipped, and dropped when such entries outnumber the rows.
    ages: VecDeque<(u64, K)>,
    next: u64,
    cap: usize,
}

impl<K: Eq + Hash + Clone, V> Aged<K, V> {
    fn new(cap: usize) -> Aged<K, V> {
        Aged {
            rows: HashMap::new(),
            ages: VecDeque::new(),
            next: 0,
            cap,
        }
    }

    fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.rows.get(k).map(|(_, v)| v)
    }

    /// The row at `k` to change in place; it becomes the newest.
    fn write<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let key = self.rows.get_key_value(k)?.0.clone();
        let age = self.next;
        self.next += 1;
        self.rows.get_mut(k)?.0 = age;
        self.ages.push_back((age, key));
        self.compact();
        self.rows.get_mut(k).map(|(_, v)| v)
    }

    /// Inserts `k` as the newest row. Returns the rows that went: the one it replaced and
    /// any beyond the cap.
    fn insert(&mut self, k: K, v: V) -> Vec<(K, V)> {
        let age = self.next;
        self.next += 1;
        let mut gone = Vec::new();
        if let Some((_, old)) = self.rows.insert(k.clone(), (age, v)) {
            gone.push((k.clone(), old));
        }
        self.ages.push_back((age, k));
        while self.rows.len() > self.cap {
            let Some((age, k)) = self.ages.pop_front() else {
                break;
            };
            if let Entry::Occupied(row) = self.rows.entry(k) {
                if row.get().0 == age {
                    let (k, (_, v)) = row.remove_entry();
                    gone.push((k, v));
                }
            }
        }
        self.compact();
        gone
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        let v = self.rows.remove(k).map(|(_, v)| v);
        self.compact();
        v
    }

    /// Drops the entries of rewritten and removed rows once they outnumber the rows, so the
    /// queue stays within twice the table however often rows are written: one pass over the
    /// queue per as many writes as the table has rows.
    fn compact(&mut self) {
        if self.ages.len() > 2 * self.rows.len() + 64 {
            let rows = &self.rows;
            self.ages
                .retain(|(age, k)| rows.get(k).is_some_and(|(a, _)| a == age));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Named = (&'static str, Box<dyn Store>);

    /// A store of each kind: in memory (bounded as given) and in a fresh state file.
    fn stores(cap: usize) -> (tempfile::TempDir, Vec<Named>) {
        let dir = tempfile::tempdir().unwrap();
        let file = FileStore::open(&dir.path().join("m.sqlite")).unwrap();
        let all: Vec<Named> = vec![
            ("memory", Box::new(MemoryStore::new(cap))),
            ("file", Box::new(file)),
        ];
        (dir, all)
    }

    #[test]
    fn both_stores_answer_alike() {
        let (_dir, stores) = stores(1_000);
        for (name, mut s) in stores {
            assert!(s.by_order("o1").unwrap().is_none(), "{name}");
            s.insert_instance("i1", "o1").unwrap();
            // A second instance for the same order (the not-idempotent fault): the first
            // stays the order's.
            s.insert_instance("i2", "o1").unwrap();
            assert_eq!(
                s.by_order("o1").unwrap().unwrap().instance_id,
                "i1",
                "{name}"
            );
            // Replacing i1 makes it the newest: the order's oldest is now i2.
            s.insert_instance("i1", "o1").unwrap();
            assert_eq!(
                s.by_order("o1").unwrap().unwrap().instance_id,
                "i2",
                "{name}"
            );
            // Replaced under another order, it leaves its old one.
            s.insert_instance("i2", "o2").unwrap();
            assert_eq!(
                s.by_order("o1").unwrap().unwrap().instance_id,
                "i1",
                "{name}"
            );
            assert_eq!(
                s.by_order("o2").unwrap().unwrap().instance_id,
                "i2",
                "{name}"
            );

            s.set_status("i1", "FROZEN").unwrap();
            s.set_expiry("i1", "20271203000000").unwrap();
            s.set_status("nobody", "FROZEN").unwrap();
            assert_eq!(
                s.instance("i1").unwrap(),
                Some(Instance {
                    instance_id: "i1".into(),
                    order_key: "o1".into(),
                    status: "FROZEN".into(),
                    expire_time: Some("20271203000000".into()),
                }),
                "{name}"
            );
            assert!(s.instance("nobody").unwrap().is_none(), "{name}");

            assert!(s.license("L1").unwrap().is_none(), "{name}");
            s.put_license("L1", "ACTIVE", Some("20270101000000"))
                .unwrap();
            s.put_license("L1", "FROZEN", None).unwrap();
            assert_eq!(
                s.license("L1").unwrap().as_deref(),
                Some("FROZEN"),
                "{name}"
            );

            assert!(!s.kit_exists("user", "u1").unwrap(), "{name}");
            s.kit_put("user", "u1", "{}").unwrap();
            s.kit_put("user", "u1", "{\"a\":1}").unwrap();
            assert!(s.kit_exists("user", "u1").unwrap(), "{name}");
            assert!(!s.kit_exists("org", "u1").unwrap(), "{name}");
            s.kit_delete("user", "u1").unwrap();
            s.kit_delete("user", "u1").unwrap();
            assert!(!s.kit_exists("user", "u1").unwrap(), "{name}");
        }
    }

    #[test]
    fn a_memory_store_keeps_the_newest_rows_up_to_its_cap() {
        let mut s = MemoryStore::new(100);
        for i in 0..1_000 {
            s.insert_instance(&format!("i{i}"), &format!("o{i}"))
                .unwrap();
            s.put_license(&format!("L{i}"), "ACTIVE", None).unwrap();
            s.kit_put("user", &format!("u{i}"), "{}").unwrap();
        }
        assert_eq!(s.instances.len(), 100);
        assert_eq!(s.licenses.len(), 100);
        assert_eq!(s.kit.len(), 100);
        // A forgotten instance leaves no order behind it.
        assert_eq!(s.instances.orders(), 100);
        assert!(s.instance("i899").unwrap().is_none());
        assert!(s.by_order("o899").unwrap().is_none());
        assert_eq!(s.by_order("o999").unwrap().unwrap().instance_id, "i999");
        // A license code updated in place is new again: L901 goes before it.
        s.put_license("L900", "FROZEN", None).unwrap();
        s.put_license("L2000", "ACTIVE", None).unwrap();
        assert_eq!(s.license("L900").unwrap().as_deref(), Some("FROZEN"));
        assert!(s.license("L901").unwrap().is_none());
        assert_eq!(s.licenses.len(), 100);
        // So is an instance whose status changes: a lifecycle keeps its instance.
        s.set_status("i900", "FROZEN").unwrap();
        s.insert_instance("i2000", "o2000").unwrap();
        assert_eq!(s.instance("i900").unwrap().unwrap().status, "FROZEN");
        assert!(s.instance("i901").unwrap().is_none());
        assert!(s.by_order("o901").unwrap().is_none());
        // A Kit record replaced is new again: the oldest, u900, outlives u901.
        s.kit_put("user", "u900", "{}").unwrap();
        s.kit_put("user", "u3000", "{}").unwrap();
        assert!(s.kit_exists("user", "u900").unwrap());
        assert!(!s.kit_exists("user", "u901").unwrap());
    }

    #[test]
    fn replacing_one_row_over_and_over_keeps_the_age_queue_small() {
        let mut s = MemoryStore::new(10);
        for _ in 0..10_000 {
            s.kit_put("user", "u1", "{}").unwrap();
        }
        assert_eq!(s.kit.len(), 1);
        assert!(s.kit.ages.len() <= 2 + 64, "{}", s.kit.ages.len());
        for i in 0..1_000 {
            s.kit_put("user", &format!("u{i}"), "{}").unwrap();
            s.kit_delete("user", &format!("u{i}")).unwrap();
        }
        assert!(s.kit.ages.len() <= 64 + 1, "{}", s.kit.ages.len());
    }

    #[test]
    fn a_state_file_keeps_everything_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let mut s = FileStore::open(&path).unwrap();
        for i in 0..300 {
            s.insert_instance(&format!("i{i}"), &format!("o{i}"))
                .unwrap();
        }
        drop(s);
        let s = FileStore::open(&path).unwrap();
        for i in [0, 150, 299] {
            assert_eq!(
                s.by_order(&format!("o{i}")).unwrap().unwrap().instance_id,
                format!("i{i}")
            );
        }
    }
}
