//! The usage journal: an SQLite database (WAL) that holds every record before it is sent
//! and its outcome after. Every state change is one transaction, committed (and synced)
//! before the network sees the records, so a crash at any point loses nothing and a replay
//! sends the same metering_sn again. Schema: docs/usage.md.

use super::batch::Outcome;
use super::reader::{LineError, RecordReader};
use super::record::{self, Billing, Deadline, UsageRecord};
use crate::error::{CsmError, Result};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS imports (
    id          INTEGER PRIMARY KEY,
    file        TEXT NOT NULL,
    -- Unused (NULL): kept so that journals written by earlier versions still open.
    file_sha256 TEXT,
    imported_at TEXT NOT NULL,
    new_records INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS imports_sha ON imports (file_sha256);
CREATE TABLE IF NOT EXISTS records (
    id                  INTEGER PRIMARY KEY,
    metering_sn         TEXT NOT NULL UNIQUE,
    sn_derived          INTEGER NOT NULL,
    instance_id         TEXT NOT NULL,
    begin_time          TEXT NOT NULL,
    end_time            TEXT NOT NULL,
    record_time         TEXT NOT NULL,
    usage_value         TEXT NOT NULL,
    relate_pkg_instance TEXT,
    source_file         TEXT NOT NULL,
    source_line         INTEGER NOT NULL,
    import_id           INTEGER NOT NULL REFERENCES imports(id),
    state               TEXT NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'sent', 'accepted', 'rejected')),
    maybe_delivered     INTEGER NOT NULL DEFAULT 0,
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_batch          INTEGER,
    last_code           TEXT,
    last_message        TEXT,
    sent_at             TEXT,
    decided_at          TEXT,
    -- Window first: hourly files arrive in time order, so the index appends.
    UNIQUE (begin_time, end_time, instance_id)
);
-- No index on state: every state change would rewrite it, and the send loop walks the
-- table in rowid order anyway.
CREATE TABLE IF NOT EXISTS batches (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,
    records     INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    finished_at TEXT,
    http_status INTEGER,
    error_code  TEXT,
    verdict     TEXT
);
";

/// The states a record goes through. `sent` means "a request carrying it may have reached
/// the marketplace and no definite answer came back yet".
pub const STATES: [&str; 4] = ["pending", "sent", "accepted", "rejected"];

pub struct Journal {
    conn: Connection,
    pub path: PathBuf,
    /// The current `PRAGMA synchronous` is FULL.
    full_sync: bool,
    /// A scratch journal in memory with the real one attached read-only as `known`.
    known: bool,
}

/// The journal file: `--journal`, else `CSM_JOURNAL` (clap reads it), else the data dir.
pub fn default_path() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("csm")
        .join("usage-journal.sqlite")
}

fn storage(path: &Path, e: impl std::fmt::Display) -> CsmError {
    CsmError::Storage(format!("journal {}: {e}", path.display()))
}

fn not_a_journal(path: &Path, why: &str) -> CsmError {
    CsmError::Storage(format!(
        "--journal {}: not a csm usage journal ({why}); name another file",
        path.display()
    ))
}

/// The journal's schema version: None for an empty database (a new journal), an error for a
/// database of something else or of another version.
fn schema_version(conn: &Connection, path: &Path) -> Result<Option<i64>> {
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| storage(path, e))?;
    if tables == 0 {
        return Ok(None);
    }
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .unwrap_or(None);
    let Some(v) = v else {
        return Err(not_a_journal(
            path,
            "it holds tables but no meta.schema_version",
        ));
    };
    if v != SCHEMA_VERSION.to_string() {
        return Err(storage(
            path,
            format!("schema version {v}, this csm reads version {SCHEMA_VERSION}"),
        ));
    }
    Ok(Some(SCHEMA_VERSION))
}

/// `file:` URI opening `path` read-only (for ATTACH).
fn read_only_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            '%' => uri.push_str("%25"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=ro");
    uri
}

/// Held while records are sent: two senders on one journal could each take the other's
/// in-flight records for undelivered ones. Released when dropped or when the process dies.
pub struct SendLock {
    _file: std::fs::File,
}

/// A record read back from the journal for sending.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: i64,
    pub record: UsageRecord,
    pub maybe_delivered: bool,
}

/// Which records a send pass takes.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// The records of one import (`upload`).
    Import(i64),
    /// Everything not accepted yet (`replay`); `include_rejected` adds refused ones.
    Unfinished { include_rejected: bool },
}

#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    pub import_id: i64,
    pub read: u64,
    pub new: u64,
    /// Already in the journal with the same content, not yet accepted: sent again.
    pub again: u64,
    pub already_accepted: u64,
    pub already_rejected: u64,
    /// Rejected before, now fixed in the input: replaced and sent again.
    pub replaced: u64,
    pub errors: Vec<LineError>,
    pub error_count: u64,
    pub deadline: BTreeMap<&'static str, u64>,
    /// Records past the ideal window: (line, metering_sn, end_time, status).
    pub late: Vec<(u64, String, String, Deadline)>,
}

/// At most this many line errors are kept for printing; all are counted.
pub const MAX_ERRORS_KEPT: usize = 50;
const MAX_LATE_KEPT: usize = 10;

impl Journal {
    pub fn open(path: &Path) -> Result<Journal> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CsmError::io(dir, e))?;
        }
        let conn = Connection::open(path).map_err(|e| storage(path, e))?;
        // Before anything is written: never turn some other database into a journal.
        schema_version(&conn, path)?;
        Self::setup(conn, path)
    }

    /// The journal for reading only (`status`, `export`): nothing is created or changed.
    pub fn open_read_only(path: &Path) -> Result<Journal> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| storage(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| storage(path, e))?;
        match schema_version(&conn, path)? {
            Some(_) => Ok(Journal {
                conn,
                path: path.to_path_buf(),
                full_sync: true,
                known: false,
            }),
            None => Err(not_a_journal(path, "it is empty")),
        }
    }

    /// A journal in memory for checks that must leave the real one alone (`validate`,
    /// `upload --dry-run`). With `real`, that journal is attached read-only: records already
    /// in it are counted as an upload would count them.
    pub fn scratch(real: Option<&Path>) -> Result<Journal> {
        let label = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| storage(label, e))?;
        let mut j = Self::setup(conn, label)?;
        if let Some(real) = real {
            drop(Self::open_read_only(real)?);
            j.conn
                .execute("ATTACH DATABASE ?1 AS known", [read_only_uri(real)])
                .map_err(|e| storage(real, e))?;
            j.known = true;
        }
        Ok(j)
    }

    fn setup(conn: Connection, path: &Path) -> Result<Journal> {
        let init = || -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // FULL: a commit is on disk before the request that depends on it leaves.
            conn.pragma_update(None, "synchronous", "FULL")?;
            // 8 MB of page cache (default 2 MB): keeps the insertion points of the unique
            // indexes in memory on large imports; memory stays bounded by it.
            conn.pragma_update(None, "cache_size", -8192)?;
            conn.execute_batch(SCHEMA)?;
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
            Ok(())
        };
        init().map_err(|e| storage(path, e))?;
        schema_version(&conn, path)?;
        Ok(Journal {
            conn,
            path: path.to_path_buf(),
            full_sync: true,
            known: false,
        })
    }

    /// The lock file beside the journal (`<journal>.lock`), taken without waiting.
    pub fn lock_for_sending(&self) -> Result<SendLock> {
        let mut name = self.path.clone().into_os_string();
        name.push(".lock");
        let p = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| CsmError::io(&p, e))?;
        match file.try_lock() {
            Ok(()) => Ok(SendLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(storage(
                &self.path,
                format!(
                    "in use by another `csm usage upload` or `replay` (lock {}); wait for it to finish",
                    p.display()
                ),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(CsmError::io(&p, e)),
        }
    }

    /// FULL syncs the WAL at every commit; NORMAL leaves it to the next FULL commit (the WAL
    /// is append-only, so that sync covers everything before it). Commits that must be on
    /// disk before a request leaves (`mark_sent`, imports) use FULL; outcomes use NORMAL: if
    /// one is lost with the power, its records are still `sent` and a replay settles them.
    fn set_sync(&mut self, full: bool) -> Result<()> {
        if self.full_sync != full {
            let v = if full { "FULL" } else { "NORMAL" };
            self.conn
                .pragma_update(None, "synchronous", v)
                .map_err(|e| self.err(e))?;
            self.full_sync = full;
        }
        Ok(())
    }

    fn err(&self, e: impl std::fmt::Display) -> CsmError {
        storage(&self.path, e)
    }

    /// Reads the whole input into the journal in one transaction. With `commit` false (or
    /// when any line is bad) the transaction is rolled back: the journal is unchanged.
    pub fn import<R: BufRead>(
        &mut self,
        reader: &mut RecordReader<R>,
        file_label: &str,
        now: DateTime<Utc>,
        billing: Billing,
        commit: bool,
    ) -> Result<ImportReport> {
        self.set_sync(true)?;
        let known = self.known;
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let tx = self.conn.transaction().map_err(serr)?;
        let now_s = record::format_api_time(now);
        tx.execute(
            "INSERT INTO imports (file, imported_at, new_records) VALUES (?1, ?2, 0)",
            params![file_label, now_s],
        )
        .map_err(serr)?;
        let import_id = tx.last_insert_rowid();
        let mut rep = ImportReport {
            import_id,
            ..Default::default()
        };
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO records (metering_sn, sn_derived, instance_id, begin_time,
                     end_time, record_time, usage_value, relate_pkg_instance, source_file,
                     source_line, import_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(serr)?;
            loop {
                let item = reader
                    .next_record()
                    .map_err(|e| CsmError::io(file_label, e))?;
                let Some(item) = item else { break };
                let (line, raw) = match item {
                    Ok(x) => x,
                    Err(e) => {
                        rep.push_error(e);
                        continue;
                    }
                };
                rep.read += 1;
                let rec = match record::validate(&raw, now) {
                    Ok(r) => r,
                    Err(message) => {
                        rep.push_error(LineError { line, message });
                        continue;
                    }
                };
                let st = record::deadline_status(&rec.end_time, billing, now);
                *rep.deadline.entry(st.as_str()).or_default() += 1;
                if st != Deadline::OnTime && rep.late.len() < MAX_LATE_KEPT {
                    rep.late
                        .push((line, rec.metering_sn.clone(), rec.end_time.clone(), st));
                }
                let n = ins
                    .execute(params![
                        rec.metering_sn,
                        rec.sn_derived,
                        rec.instance_id,
                        rec.begin_time,
                        rec.end_time,
                        rec.record_time,
                        rec.usage_value,
                        rec.relate_pkg_instance,
                        file_label,
                        line as i64,
                        import_id
                    ])
                    .map_err(serr)?;
                let found = if n == 1 && known {
                    // New in this scratch journal: the real one may hold it.
                    resolve_conflict(&tx, &rec, -1, &mut rep, Db::Known)
                } else if n == 1 {
                    Ok(false)
                } else {
                    resolve_conflict(&tx, &rec, import_id, &mut rep, Db::Main).and_then(|f| {
                        f.then_some(true).ok_or_else(|| {
                            format!("metering_sn {:?}: could not be journaled", rec.metering_sn)
                        })
                    })
                };
                match found {
                    Ok(true) => {}
                    Ok(false) => rep.new += 1,
                    Err(message) => rep.push_error(LineError { line, message }),
                }
            }
        }
        tx.execute(
            "UPDATE imports SET new_records = ?1 WHERE id = ?2",
            params![rep.new as i64, import_id],
        )
        .map_err(serr)?;
        if commit && rep.error_count == 0 {
            tx.commit().map_err(serr)?;
        } else {
            tx.rollback().map_err(serr)?;
        }
        Ok(rep)
    }

    /// Records left `sent` by an interrupted run may have been delivered: say so, so that a
    /// "duplicate metering_sn" answer counts as their delivery.
    pub fn recover_in_flight(&mut self) -> Result<usize> {
        self.conn
            .execute(
                "UPDATE records SET maybe_delivered = 1 WHERE state = 'sent' AND maybe_delivered = 0",
                [],
            )
            .map_err(|e| self.err(e))
    }

    /// Counts the records a send pass will take.
    pub fn count_scope(&self, scope: Scope) -> Result<u64> {
        let (sql, arg) = scope_sql("SELECT count(*) FROM records", scope);
        self.conn
            .query_row(&sql, params![arg], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// The next records of the scope after `after_id`, in id order.
    pub fn next_batch(&self, scope: Scope, after_id: i64, limit: usize) -> Result<Vec<Stored>> {
        let (sql, arg) = scope_sql(
            "SELECT id, metering_sn, sn_derived, instance_id, begin_time, end_time, record_time,
             usage_value, relate_pkg_instance, maybe_delivered FROM records",
            scope,
        );
        // Walks the table in rowid order from `after_id` (there is no index on state or
        // import_id to prefer).
        let sql = format!("{sql} AND id > ?2 ORDER BY id LIMIT ?3");
        let mut st = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![arg, after_id, limit as i64], |r| {
                Ok(Stored {
                    id: r.get(0)?,
                    record: UsageRecord {
                        metering_sn: r.get(1)?,
                        sn_derived: r.get(2)?,
                        instance_id: r.get(3)?,
                        begin_time: r.get(4)?,
                        end_time: r.get(5)?,
                        record_time: r.get(6)?,
                        usage_value: r.get(7)?,
                        relate_pkg_instance: r.get(8)?,
                    },
                    maybe_delivered: r.get(9)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Before a request leaves: the batch is recorded and its records become `sent`.
    /// Committed (synced) first, so a crash after this point is seen as "maybe delivered".
    pub fn mark_sent(&mut self, ids: &[i64], attempt: u32, now: &str) -> Result<i64> {
        self.set_sync(true)?;
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let tx = self.conn.transaction().map_err(serr)?;
        tx.execute(
            "INSERT INTO batches (started_at, records, attempt) VALUES (?1, ?2, ?3)",
            params![now, ids.len() as i64, attempt],
        )
        .map_err(serr)?;
        let batch = tx.last_insert_rowid();
        {
            let mut st = tx
                .prepare_cached(
                    "UPDATE records SET state = 'sent', attempts = attempts + 1, sent_at = ?2,
                     last_batch = ?3 WHERE id IN (SELECT value FROM json_each(?1))",
                )
                .map_err(serr)?;
            st.execute(params![id_list(ids), now, batch])
                .map_err(serr)?;
        }
        tx.commit().map_err(serr)?;
        Ok(batch)
    }

    /// No definite answer: the records stay `sent` and are marked "maybe delivered".
    pub fn mark_ambiguous(
        &mut self,
        batch: i64,
        ids: &[i64],
        http_status: Option<u16>,
        code: &str,
        reason: &str,
        now: &str,
    ) -> Result<()> {
        let close = BatchClose {
            batch,
            http_status,
            code,
            reason,
            now,
        };
        self.close_batch(
            &close,
            ids,
            "ambiguous",
            "UPDATE records SET maybe_delivered = 1, last_code = ?2, last_message = ?3
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
    }

    /// The request was refused as a whole, nothing stored: the records go back to `pending`.
    /// A record that may have been delivered by an earlier attempt stays `sent`.
    pub fn mark_refused(
        &mut self,
        batch: i64,
        ids: &[i64],
        http_status: Option<u16>,
        code: &str,
        reason: &str,
        now: &str,
    ) -> Result<()> {
        let close = BatchClose {
            batch,
            http_status,
            code,
            reason,
            now,
        };
        self.close_batch(
            &close,
            ids,
            "refused",
            "UPDATE records SET state = CASE WHEN maybe_delivered = 1 THEN 'sent'
             ELSE 'pending' END, last_code = ?2, last_message = ?3
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
    }

    /// Closes a batch with `outcome` and applies `update` (parameters: the ids as JSON,
    /// the code, the reason) to its records, in one transaction.
    fn close_batch(
        &mut self,
        c: &BatchClose,
        ids: &[i64],
        outcome: &str,
        update: &str,
    ) -> Result<()> {
        self.set_sync(false)?;
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let tx = self.conn.transaction().map_err(serr)?;
        finish_batch(&tx, c.batch, c.http_status, c.code, outcome, c.now).map_err(serr)?;
        tx.prepare_cached(update)
            .and_then(|mut st| st.execute(params![id_list(ids), c.code, c.reason]))
            .map_err(serr)?;
        tx.commit().map_err(serr)
    }

    /// Records refused here without being sent (their begin_time left the marketplace's
    /// window while they waited): `rejected` with the code the marketplace would give. A
    /// record an earlier attempt may have delivered stays `sent` (as in `mark_refused`).
    pub fn reject_unsent(
        &mut self,
        ids: &[i64],
        code: &str,
        reason: &str,
        now: &str,
    ) -> Result<()> {
        self.set_sync(false)?;
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let tx = self.conn.transaction().map_err(serr)?;
        tx.execute(
            "UPDATE records SET state = CASE WHEN maybe_delivered = 1 THEN 'sent'
             ELSE 'rejected' END, last_code = ?2, last_message = ?3,
             decided_at = CASE WHEN maybe_delivered = 1 THEN decided_at ELSE ?4 END
             WHERE id IN (SELECT value FROM json_each(?1))",
            params![id_list(ids), code, reason, now],
        )
        .map_err(serr)?;
        tx.commit().map_err(serr)
    }

    /// Stores each record's outcome of a batch (one transaction).
    pub fn apply(
        &mut self,
        batch: i64,
        ids: &[i64],
        outcomes: &[Outcome],
        http_status: u16,
        now: &str,
    ) -> Result<()> {
        self.set_sync(false)?;
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let tx = self.conn.transaction().map_err(serr)?;
        finish_batch(&tx, batch, Some(http_status), "", "answered", now).map_err(serr)?;
        {
            let mut st = tx
                .prepare_cached(
                    "UPDATE records SET state = CASE WHEN ?2 = 'pending' AND maybe_delivered = 1
                     THEN 'sent' ELSE ?2 END, last_code = ?3, last_message = ?4,
                     decided_at = CASE WHEN ?2 = 'pending' THEN decided_at ELSE ?5 END
                     WHERE id IN (SELECT value FROM json_each(?1))",
                )
                .map_err(serr)?;
            // One statement per distinct outcome (a batch usually has one or two).
            let mut groups: BTreeMap<(&str, &str, &str), Vec<i64>> = BTreeMap::new();
            for (id, o) in ids.iter().zip(outcomes) {
                let key = match o {
                    Outcome::Accepted { code } => ("accepted", code.as_str(), ""),
                    Outcome::Rejected { code, reason } => {
                        ("rejected", code.as_str(), reason.as_str())
                    }
                    Outcome::Retry { code, reason } => ("pending", code.as_str(), reason.as_str()),
                };
                groups.entry(key).or_default().push(*id);
            }
            for ((state, code, msg), group) in groups {
                st.execute(params![id_list(&group), state, code, msg, now])
                    .map_err(serr)?;
            }
        }
        tx.commit().map_err(serr)
    }

    pub fn counts(&self) -> Result<BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, u64> = STATES.iter().map(|s| (s.to_string(), 0)).collect();
        let mut st = self
            .conn
            .prepare("SELECT state, count(*) FROM records GROUP BY state")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        for r in rows {
            let (s, n) = r.map_err(|e| self.err(e))?;
            out.insert(s, n as u64);
        }
        Ok(out)
    }

    /// Counts of not-accepted records per last code (for summaries and `status`).
    pub fn codes(&self, states: &[&str]) -> Result<Vec<(String, String, u64)>> {
        let list = states
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT state, coalesce(last_code, ''), count(*) FROM records
                 WHERE state IN ({list}) GROUP BY state, last_code ORDER BY 3 DESC"
            ))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// The status report: counts, the oldest unsent record, records past their deadline,
    /// the last errors. Streams over the unsent records (memory stays flat).
    pub fn status(&self, billing: Billing, now: DateTime<Utc>) -> Result<Status> {
        let counts = self.counts()?;
        let mut s = Status {
            counts,
            ..Default::default()
        };
        {
            let mut st = self
                .conn
                .prepare(
                    "SELECT metering_sn, instance_id, end_time FROM records
                     WHERE state IN ('pending', 'sent') ORDER BY end_time",
                )
                .map_err(|e| self.err(e))?;
            let mut rows = st.query([]).map_err(|e| self.err(e))?;
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let sn: String = r.get(0).map_err(|e| self.err(e))?;
                let inst: String = r.get(1).map_err(|e| self.err(e))?;
                let end: String = r.get(2).map_err(|e| self.err(e))?;
                let d = record::deadline_status(&end, billing, now);
                *s.unsent_by_deadline.entry(d.as_str()).or_default() += 1;
                if s.oldest_unsent.is_none() {
                    s.oldest_unsent = Some((sn, inst, end, d));
                }
            }
        }
        let mut st = self
            .conn
            .prepare(
                "SELECT metering_sn, state, last_code, coalesce(last_message, ''),
                 coalesce(decided_at, sent_at, '') FROM records
                 WHERE last_code IS NOT NULL AND state != 'accepted'
                 ORDER BY coalesce(decided_at, sent_at) DESC, id DESC LIMIT 10",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(LastError {
                    metering_sn: r.get(0)?,
                    state: r.get(1)?,
                    code: r.get(2)?,
                    message: r.get(3)?,
                    at: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        s.last_errors = rows
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        s.codes = self.codes(&["pending", "sent", "rejected"])?;
        Ok(s)
    }

    /// Writes the records in `state` as CSV (or JSONL) that `upload` reads back; the
    /// `state`, `result_code` and `result_msg` columns are for the reader and ignored on input.
    pub fn export(&self, state: &str, jsonl: bool, out: &mut dyn std::io::Write) -> Result<u64> {
        let mut st = self
            .conn
            .prepare(
                "SELECT instance_id, begin_time, end_time, usage_value, metering_sn,
                 coalesce(relate_pkg_instance, ''), record_time, state,
                 coalesce(last_code, ''), coalesce(last_message, '')
                 FROM records WHERE state = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([state]).map_err(|e| self.err(e))?;
        let mut n = 0u64;
        let werr = |e: std::io::Error| CsmError::Storage(format!("export: {e}"));
        // The SELECT above lists the input columns, then the informational ones, in this order.
        let names: Vec<&str> = record::FIELDS
            .iter()
            .chain(record::INFO_FIELDS.iter())
            .copied()
            .collect();
        if !jsonl {
            writeln!(out, "{}", names.join(",")).map_err(werr)?;
        }
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let vals: Vec<String> = (0..names.len())
                .map(|i| r.get::<_, String>(i))
                .collect::<rusqlite::Result<_>>()
                .map_err(|e| self.err(e))?;
            if jsonl {
                let mut m = serde_json::Map::new();
                for (k, v) in names.iter().zip(&vals) {
                    if !v.is_empty() {
                        m.insert(k.to_string(), serde_json::Value::String(v.clone()));
                    }
                }
                writeln!(out, "{}", serde_json::Value::Object(m)).map_err(werr)?;
            } else {
                let line = vals
                    .iter()
                    .map(|v| csv_field(v))
                    .collect::<Vec<_>>()
                    .join(",");
                writeln!(out, "{line}").map_err(werr)?;
            }
            n += 1;
        }
        Ok(n)
    }
}

impl ImportReport {
    fn push_error(&mut self, e: LineError) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(e);
        }
    }
}

#[derive(Debug, Default)]
pub struct Status {
    pub counts: BTreeMap<String, u64>,
    /// (metering_sn, instance_id, end_time, deadline status) of the unsent record that ends first.
    pub oldest_unsent: Option<(String, String, String, Deadline)>,
    pub unsent_by_deadline: BTreeMap<&'static str, u64>,
    pub last_errors: Vec<LastError>,
    /// (state, last code, count) of records not accepted.
    pub codes: Vec<(String, String, u64)>,
}

#[derive(Debug)]
pub struct LastError {
    pub metering_sn: String,
    pub state: String,
    pub code: String,
    pub message: String,
    pub at: String,
}

/// Record ids as a JSON array, for `id IN (SELECT value FROM json_each(?))`: one statement
/// per batch instead of one per record.
fn id_list(ids: &[i64]) -> String {
    let mut s = String::with_capacity(ids.len() * 8 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s.push(']');
    s
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn scope_sql(select: &str, scope: Scope) -> (String, i64) {
    match scope {
        Scope::Import(id) => (
            format!("{select} WHERE import_id = ?1 AND state IN ('pending', 'sent')"),
            id,
        ),
        Scope::Unfinished { include_rejected } => (
            format!(
                "{select} WHERE ?1 = ?1 AND state IN ('pending', 'sent'{})",
                if include_rejected { ", 'rejected'" } else { "" }
            ),
            0,
        ),
    }
}

/// How a batch ended, for [`Journal::close_batch`].
struct BatchClose<'a> {
    batch: i64,
    http_status: Option<u16>,
    code: &'a str,
    reason: &'a str,
    now: &'a str,
}

fn finish_batch(
    tx: &Transaction,
    batch: i64,
    http_status: Option<u16>,
    code: &str,
    verdict: &str,
    now: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE batches SET finished_at = ?2, http_status = ?3, error_code = ?4, verdict = ?5
         WHERE id = ?1",
        params![batch, now, http_status, code, verdict],
    )?;
    Ok(())
}

type Existing = (
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    bool,
);

/// Where [`resolve_conflict`] looks.
#[derive(Clone, Copy)]
enum Db {
    Main,
    Known,
}

/// A record whose metering_sn or period is already journaled: the same record again is
/// fine (it joins this upload unless it is decided), a fixed rejected record replaces the
/// old one, anything else is a duplicate and an error naming the earlier line.
///
/// `Db::Known` looks in the real journal attached read-only to a scratch one (`import_id`
/// -1): nothing is written, the outcome is counted as an import into it would count it.
/// Ok(false): the record is in neither place (a new record).
fn resolve_conflict(
    tx: &Transaction,
    rec: &UsageRecord,
    import_id: i64,
    rep: &mut ImportReport,
    db: Db,
) -> std::result::Result<bool, String> {
    let t = match db {
        Db::Main => "main.records",
        Db::Known => "known.records",
    };
    let write = matches!(db, Db::Main);
    let dberr = |e: rusqlite::Error| format!("journal: {e}");
    let by_sn: Option<Existing> = tx
        .query_row(
            &format!(
                "SELECT id, state, instance_id, begin_time, end_time, usage_value,
                 relate_pkg_instance, source_file, source_line, maybe_delivered FROM {t}
                 WHERE metering_sn = ?1"
            ),
            [&rec.metering_sn],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            },
        )
        .optional()
        .map_err(dberr)?;
    let where_ = |file: &str, line: i64, imp_same: bool| {
        if imp_same {
            format!("line {line} of this file")
        } else {
            format!("{file} line {line}")
        }
    };
    if let Some((id, state, inst, begin, end, value, relate, file, line, maybe)) = by_sn {
        let sn_state = format!("state {state}");
        let same = inst == rec.instance_id
            && begin == rec.begin_time
            && end == rec.end_time
            && value == rec.usage_value
            && relate == rec.relate_pkg_instance;
        let this_import: bool = tx
            .query_row(
                &format!("SELECT import_id = ?2 FROM {t} WHERE id = ?1"),
                params![id, import_id],
                |r| r.get(0),
            )
            .map_err(dberr)?;
        if this_import {
            if rec.sn_derived {
                return Err(period_duplicate(rec, &where_(&file, line, true), &sn_state));
            }
            return Err(format!(
                "metering_sn {:?} duplicates {} (each record needs its own metering_sn)",
                rec.metering_sn,
                where_(&file, line, true)
            ));
        }
        if same {
            match state.as_str() {
                "accepted" => rep.already_accepted += 1,
                "rejected" => rep.already_rejected += 1,
                _ => {
                    if write {
                        tx.execute(
                            "UPDATE records SET import_id = ?2 WHERE id = ?1",
                            params![id, import_id],
                        )
                        .map_err(dberr)?;
                    }
                    rep.again += 1;
                }
            }
            return Ok(true);
        }
        if state == "rejected" && maybe {
            // An earlier attempt got no definite answer: the marketplace may hold the first
            // version, and a later "duplicate metering_sn" would pass the fix off as accepted.
            return Err(format!(
                "metering_sn {:?} was rejected but may already be held by the marketplace \
                 ({}, an attempt got no definite answer); a fix needs a new metering_sn",
                rec.metering_sn,
                where_(&file, line, false)
            ));
        }
        if state == "rejected" {
            let n = if !write {
                // Replaceable unless another record holds the new period.
                tx.query_row(
                    &format!(
                        "SELECT count(*) = 0 FROM {t} WHERE instance_id = ?1
                         AND begin_time = ?2 AND end_time = ?3 AND id != ?4"
                    ),
                    params![rec.instance_id, rec.begin_time, rec.end_time, id],
                    |r| r.get::<_, bool>(0),
                )
                .map_err(dberr)? as usize
            } else {
                tx.execute(
                    "UPDATE OR IGNORE records SET instance_id = ?2, begin_time = ?3, end_time = ?4,
                     usage_value = ?5, relate_pkg_instance = ?6, record_time = ?7, import_id = ?8,
                     state = CASE WHEN maybe_delivered = 1 THEN 'sent' ELSE 'pending' END,
                     last_code = NULL, last_message = NULL, decided_at = NULL WHERE id = ?1",
                    params![
                        id,
                        rec.instance_id,
                        rec.begin_time,
                        rec.end_time,
                        rec.usage_value,
                        rec.relate_pkg_instance,
                        rec.record_time,
                        import_id
                    ],
                )
                .map_err(dberr)?
            };
            if n == 1 {
                rep.replaced += 1;
                return Ok(true);
            }
        } else if rec.sn_derived {
            // No metering_sn given: the one csm derived names the instance and period.
            return Err(period_duplicate(
                rec,
                &where_(&file, line, false),
                &sn_state,
            ));
        } else {
            return Err(format!(
                "metering_sn {:?} is already journaled with other content ({}, state {state}); \
                 a metering_sn names one record for good",
                rec.metering_sn,
                where_(&file, line, false)
            ));
        }
    }
    let by_period: Option<(String, String, String, i64, bool)> = tx
        .query_row(
            &format!(
                "SELECT metering_sn, state, source_file, source_line, import_id = ?4 FROM {t}
                 WHERE instance_id = ?1 AND begin_time = ?2 AND end_time = ?3"
            ),
            params![rec.instance_id, rec.begin_time, rec.end_time, import_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .map_err(dberr)?;
    match by_period {
        Some((sn, state, file, line, same_import)) => Err(period_duplicate(
            rec,
            &where_(&file, line, same_import),
            &format!("metering_sn {sn:?}, state {state}"),
        )),
        None => Ok(false),
    }
}

/// A second record for one instance and period; `earlier` says where the first is, `about`
/// what it is.
fn period_duplicate(rec: &UsageRecord, earlier: &str, about: &str) -> String {
    format!(
        "instance_id {} period {}..{} duplicates {earlier} ({about}); \
         the marketplace bills only the first record of a period",
        record::show(&rec.instance_id),
        rec.begin_time,
        rec.end_time,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::reader::Format;

    fn now() -> DateTime<Utc> {
        record::parse_time("now", "20260110T120000Z").unwrap()
    }

    fn import(j: &mut Journal, text: &str, commit: bool) -> ImportReport {
        let mut r = RecordReader::new(std::io::BufReader::new(text.as_bytes()), Format::Csv);
        j.import(&mut r, "in.csv", now(), Billing::Hourly, commit)
            .unwrap()
    }

    const HEAD: &str = "instance_id,begin_time,end_time,usage_value,metering_sn\n";

    #[test]
    fn import_is_all_or_nothing_and_idempotent() {
        let dir = std::env::temp_dir().join(format!("csm-j-{}", crate::clock::uuid()));
        let mut j = Journal::open(&dir.join("j.sqlite")).unwrap();
        let good = format!(
            "{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\ni1,20260110T090000Z,20260110T100000Z,2,\n"
        );
        let bad = format!("{good}i2,20260110T100000Z,20260110T110000Z,-1,c\n");
        let r = import(&mut j, &bad, true);
        assert_eq!(r.error_count, 1);
        assert_eq!(r.errors[0].line, 4);
        assert_eq!(j.counts().unwrap()["pending"], 0);
        let r = import(&mut j, &good, true);
        assert_eq!((r.new, r.error_count), (2, 0));
        let r = import(&mut j, &good, true);
        assert_eq!((r.new, r.again), (0, 2));
        assert_eq!(j.counts().unwrap()["pending"], 2);
        // Same sn, other content; same period, other sn; duplicate inside one file.
        let r = import(
            &mut j,
            &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,9,a\n"),
            true,
        );
        assert!(
            r.errors[0].message.contains("other content"),
            "{:?}",
            r.errors
        );
        let r = import(
            &mut j,
            &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,zz\n"),
            true,
        );
        assert!(r.errors[0].message.contains("period"), "{:?}", r.errors);
        let r = import(
            &mut j,
            &format!("{HEAD}i9,20260110T100000Z,20260110T110000Z,1,q\ni8,20260110T100000Z,20260110T110000Z,1,q\n"),
            true,
        );
        assert!(
            r.errors[0].message.contains("line 2 of this file"),
            "{:?}",
            r.errors
        );
        assert_eq!(j.counts().unwrap()["pending"], 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn outcomes_and_replacement() {
        let dir = std::env::temp_dir().join(format!("csm-j-{}", crate::clock::uuid()));
        let mut j = Journal::open(&dir.join("j.sqlite")).unwrap();
        let r = import(
            &mut j,
            &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\ni2,20260110T100000Z,20260110T110000Z,1,b\n"),
            true,
        );
        let batch = j.next_batch(Scope::Import(r.import_id), 0, 100).unwrap();
        assert_eq!(batch.len(), 2);
        let ids: Vec<i64> = batch.iter().map(|s| s.id).collect();
        let b = j.mark_sent(&ids, 1, "t").unwrap();
        assert_eq!(j.counts().unwrap()["sent"], 2);
        j.apply(
            b,
            &ids,
            &[
                Outcome::Accepted { code: "000".into() },
                Outcome::Rejected {
                    code: "003".into(),
                    reason: "bad".into(),
                },
            ],
            200,
            "t",
        )
        .unwrap();
        let c = j.counts().unwrap();
        assert_eq!((c["accepted"], c["rejected"]), (1, 1));
        let mut out = Vec::new();
        assert_eq!(j.export("rejected", false, &mut out).unwrap(), 1);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(",b,") && text.contains("003"), "{text}");
        // The exported file, fixed, goes back in and replaces the rejected record.
        let fixed = text.replace(",1,b,", ",2,b,");
        let r = import(&mut j, &fixed, true);
        assert_eq!((r.replaced, r.error_count), (1, 0), "{:?}", r.errors);
        assert_eq!(j.counts().unwrap()["pending"], 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
