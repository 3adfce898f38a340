//! The usage journal: an SQLite database (WAL) that holds every record before it is sent
//! and its outcome after. Every state change is one transaction, committed (and synced)
//! before the network sees the records, so a crash at any point loses nothing and a replay
//! sends the same metering_sn again. Schema: docs/usage.md.
//!
//! This file is the store: schema, opening, locking, sync mode. `import` reads files in,
//! `send` keeps what happens to records on the wire, `status` counts, `export` writes
//! records back out.

mod export;
mod import;
mod send;
mod status;

pub use import::ImportReport;
pub use status::{LastError, Status};

use super::record::UsageRecord;
use crate::error::{CsmError, Result};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
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

/// The states a record goes through. `Sent` means "a request carrying it may have reached
/// the marketplace and no definite answer came back yet". Stored as the text of
/// [`State::as_str`] (the schema's CHECK lists the same words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Sent,
    Accepted,
    Rejected,
}

impl State {
    /// In the order a record goes through them (the order summaries print them in).
    pub const ALL: [State; 4] = [
        State::Pending,
        State::Sent,
        State::Accepted,
        State::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sent => "sent",
            State::Accepted => "accepted",
            State::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for State {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = v.as_str()?;
        State::parse(s).ok_or_else(|| FromSqlError::Other(format!("record state {s:?}").into()))
    }
}

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
}

/// What the tests of every part share: a journal in a temporary directory and imports of
/// CSV text into it.
#[cfg(test)]
mod testing {
    use super::{ImportReport, Journal};
    use crate::usage::reader::{Format, RecordReader};
    use crate::usage::record::{self, Billing};
    use chrono::{DateTime, Utc};

    pub const HEAD: &str = "instance_id,begin_time,end_time,usage_value,metering_sn\n";

    pub fn now() -> DateTime<Utc> {
        record::parse_time("now", "20260110T120000Z").unwrap()
    }

    /// The directory goes when the first is dropped.
    pub fn journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        (dir, j)
    }

    pub fn import(j: &mut Journal, text: &str, commit: bool) -> ImportReport {
        let mut r = RecordReader::new(std::io::BufReader::new(text.as_bytes()), Format::Csv);
        j.import(&mut r, "in.csv", now(), Billing::Hourly, commit)
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_one_the_schema_allows() {
        for st in State::ALL {
            assert!(SCHEMA.contains(&format!("'{}'", st.as_str())), "{st:?}");
            assert_eq!(State::parse(st.as_str()), Some(st));
        }
    }
}
