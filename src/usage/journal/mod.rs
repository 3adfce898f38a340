//! The usage journal: every record is held here before it is sent, and its outcome after.
//! Every state change is one transaction, committed (and synced) before the network sees
//! the records, so a crash at any point loses nothing and a replay sends the same
//! metering_sn again. Schema: docs/usage.md.
//!
//! Two stores, one logic: an SQLite file (WAL; the embedded default; one sender at a time,
//! by a lock file) or a PostgreSQL database (`postgres://…`; several senders, by leases on
//! records: `pg`). `db` is the SQL both are reached through. This file is the store: schema
//! (and its migration), opening, locking, sync mode. `import` reads files in, `send` keeps
//! what happens to records on the wire, `resolve` lets the seller give up on a record,
//! `status` counts, `export` writes records back out.

pub(crate) mod db;
mod export;
mod import;
pub mod pg;
mod resolve;
mod send;
mod status;

pub use import::ImportReport;
pub use resolve::Abandoned;
pub use send::{Attempt, LocalRefusal};
pub use status::{AbandonedRecord, LastError, Status};

use super::record::UsageRecord;
use crate::error::{CsmError, Result};
use db::{vals, Db, DbError};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::cell::{RefCell, RefMut};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SCHEMA_VERSION: i64 = 2;

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

/// The records table (version 2) under `name`: the migration builds it beside the old one.
fn records_table(name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (
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
                        CHECK (state IN ('pending', 'sent', 'accepted', 'rejected', 'abandoned')),
    maybe_delivered     INTEGER NOT NULL DEFAULT 0,
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_batch          INTEGER,
    last_code           TEXT,
    last_message        TEXT,
    sent_at             TEXT,
    decided_at          TEXT,
    -- 0 while the record holds its period; its own id once abandoned, which frees the
    -- period for a corrected record (the metering_sn stays taken for good).
    retired_id          INTEGER NOT NULL DEFAULT 0,
    abandoned_at        TEXT,
    abandoned_by        TEXT,
    abandon_reason      TEXT,
    -- Window first: hourly files arrive in time order, so the index appends.
    UNIQUE (begin_time, end_time, instance_id, retired_id)
)"
    )
}

/// The columns version 1 had, which version 2 keeps as they were.
const V1_COLUMNS: &str = "id, metering_sn, sn_derived, instance_id, begin_time, end_time,
    record_time, usage_value, relate_pkg_instance, source_file, source_line, import_id, state,
    maybe_delivered, attempts, last_batch, last_code, last_message, sent_at, decided_at";

/// Version 1 to 2 (abandoned records): SQLite cannot change a CHECK or a UNIQUE in place,
/// so the records table is rebuilt, in the caller's transaction.
fn migrate_v1(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "{};
         INSERT INTO records_v2 ({V1_COLUMNS}) SELECT {V1_COLUMNS} FROM records;
         DROP TABLE records;
         ALTER TABLE records_v2 RENAME TO records;
         UPDATE meta SET value = '2' WHERE key = 'schema_version';",
        records_table("records_v2")
    ))
}

/// The states a record goes through. `Sent` means "a request carrying it may have reached
/// the marketplace and no definite answer came back yet"; `Abandoned` that the seller
/// found it not held by the marketplace and gave up on it (`usage resolve --abandon`): it
/// is never sent again and no longer holds its period. Stored as the text of
/// [`State::as_str`] (the schema's CHECK lists the same words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Sent,
    Accepted,
    Rejected,
    Abandoned,
}

impl State {
    /// In the order a record goes through them (the order summaries print them in).
    pub const ALL: [State; 5] = [
        State::Pending,
        State::Sent,
        State::Accepted,
        State::Rejected,
        State::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sent => "sent",
            State::Accepted => "accepted",
            State::Rejected => "rejected",
            State::Abandoned => "abandoned",
        }
    }

    fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

pub struct Journal {
    db: RefCell<Db>,
    /// The journal file, or for PostgreSQL its URL without the password (what messages show).
    pub path: PathBuf,
    /// The schema version: [`SCHEMA_VERSION`], or 1 for an older journal opened read-only
    /// (it has no abandoned records and no columns for them).
    version: i64,
    /// The current `PRAGMA synchronous` is FULL (SQLite).
    full_sync: bool,
    /// A scratch journal in memory with the real one attached read-only as `known`.
    known: bool,
    /// PostgreSQL: this process's name on the records it claims, and for how long.
    lease: Option<Lease>,
}

struct Lease {
    /// The URL as given (with its password): for a second connection of this process.
    url: crate::secret::Secret,
    owner: String,
    duration: Duration,
    /// The records this process claimed and has not given back yet (an ambiguous or
    /// refused batch keeps its lease for the retry). Giving back goes by these ids: there
    /// is no index on the owner (it changes with every claim), and a look at the whole
    /// table on every run would grow with the journal.
    held: std::collections::BTreeSet<i64>,
}

/// The journal file: `--journal`, else `CSM_JOURNAL` (clap reads it), else the data dir.
pub fn default_path() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("csm")
        .join("usage-journal.sqlite")
}

/// `--journal` is a PostgreSQL URL (`postgres://…`), not a file.
pub fn is_postgres(path: &Path) -> bool {
    path.to_str().is_some_and(pg::is_url)
}

/// Removes an SQLite journal this run created and holds no longer (with the files SQLite
/// and the send lock keep beside it): a refused first upload leaves nothing behind.
pub fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal", ".lock"] {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// How a journal is named in messages: the file, or the URL without its password.
pub fn display(path: &Path) -> String {
    match path.to_str() {
        Some(s) if pg::is_url(s) => pg::redact(s),
        _ => path.display().to_string(),
    }
}

fn storage(path: &Path, e: impl std::fmt::Display) -> CsmError {
    let e = e.to_string();
    let mut message = format!("journal {}: {e}", path.display());
    if e.contains("readonly database") {
        match blocking_side_files(path) {
            Some(files) => message.push_str(&format!(
                " ({files} cannot be written by the journal's owner, left by a read as another user: chown them to the owner while no csm uses the journal)"
            )),
            None if !side_file(path, "-shm").exists() => message.push_str(
                " (a read needs the journal's -shm file: write access to its directory, or the owner's csm running on it)",
            ),
            None => {}
        }
    }
    CsmError::Storage(message)
}

fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The SQLite journal's `-wal` and `-shm` files that the journal's owner cannot write. A
/// read as another user makes them, as that user, when no csm has the journal open; every
/// write of the journal then fails until they are the owner's again.
#[cfg(unix)]
fn blocking_side_files(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if is_postgres(path) {
        return None;
    }
    let journal = std::fs::metadata(path).ok()?;
    let (uid, gid) = (journal.uid(), journal.gid());
    if uid == 0 {
        return None;
    }
    // By the mode bits; another group the owner is in is not known here.
    let writable = |m: &std::fs::Metadata| {
        let mode = m.mode();
        (m.uid() == uid && mode & 0o200 != 0)
            || (m.gid() == gid && mode & 0o020 != 0)
            || mode & 0o002 != 0
    };
    let blocking: Vec<String> = ["-wal", "-shm"]
        .iter()
        .map(|s| side_file(path, s))
        .filter(|f| std::fs::metadata(f).is_ok_and(|m| !writable(&m)))
        .map(|f| f.display().to_string())
        .collect();
    (!blocking.is_empty()).then(|| blocking.join(" and "))
}

#[cfg(not(unix))]
fn blocking_side_files(_: &Path) -> Option<String> {
    None
}

fn not_a_journal(path: &Path, why: &str) -> CsmError {
    CsmError::Storage(format!(
        "--journal {}: not a csm usage journal ({why}); name another {}",
        path.display(),
        if is_postgres(path) {
            "database"
        } else {
            "file"
        }
    ))
}

/// The journal's schema version: None for an empty database (a new journal), an error for a
/// database of something else or of a version this csm does not read (1 is read, and
/// migrated when the journal is opened for writing).
fn schema_version(db: &mut Db, path: &Path) -> Result<Option<i64>> {
    let count_tables = if db.is_postgres() {
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
    } else {
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
    };
    let tables = db
        .query_one(count_tables, &[])
        .and_then(|r| r.int(0))
        .map_err(|e| storage(path, e))?;
    if tables == 0 {
        return Ok(None);
    }
    // No meta table is "not a journal" too (PostgreSQL: the failed query ends nothing,
    // there is no transaction open here).
    let v: Option<String> = db
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .ok()
        .flatten()
        .and_then(|r| r.text(0).ok());
    let Some(v) = v else {
        return Err(not_a_journal(
            path,
            "it holds tables but no meta.schema_version",
        ));
    };
    match v.parse::<i64>() {
        Ok(n @ 1..=SCHEMA_VERSION) => Ok(Some(n)),
        _ => Err(storage(
            path,
            format!("schema version {v}, this csm reads versions 1 to {SCHEMA_VERSION}"),
        )),
    }
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

/// Held while records are sent from an SQLite journal: two senders on one file could each
/// take the other's in-flight records for undelivered ones. Released when dropped or when
/// the process dies. A PostgreSQL journal needs none (its records are leased).
pub struct SendLock {
    _file: Option<std::fs::File>,
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
    /// The journal at `path`, created if new: an SQLite file, or with a `postgres://` URL a
    /// PostgreSQL database (its schema created in the URL's database if it has none).
    pub fn open(path: &Path) -> Result<Journal> {
        if is_postgres(path) {
            return Self::open_postgres(path, false);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The default place is under HOME, which a CI runner may not have.
            std::fs::create_dir_all(dir).map_err(|e| {
                CsmError::io(format!("journal {}", path.display()), e).with_hint(
                    "put the journal where this account can write: --journal FILE, or CSM_JOURNAL",
                )
            })?;
        }
        let conn = Connection::open(path).map_err(|e| storage(path, e))?;
        // Before anything is written: never turn some other database into a journal.
        schema_version(&mut Db::Sqlite(conn), path)?;
        let conn = Connection::open(path).map_err(|e| storage(path, e))?;
        Self::setup(conn, path)
    }

    /// The journal for reading only (`status`, `export`): nothing is created or changed.
    pub fn open_read_only(path: &Path) -> Result<Journal> {
        if is_postgres(path) {
            return Self::open_postgres(path, true);
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| storage(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| storage(path, e))?;
        let mut db = Db::Sqlite(conn);
        let version = schema_version(&mut db, path)?;
        // A read as another user than the owner makes the -wal and -shm files as that user:
        // said now, not at the owner's next write.
        if let Some(files) = blocking_side_files(path) {
            eprintln!(
                "csm: warning: journal {}: {files} cannot be written by the journal's owner (a read as another user makes them): the owner's writes fail until they are chowned to the owner; read the journal as its owner",
                path.display()
            );
        }
        match version {
            Some(version) => Ok(Journal::new(db, path, version, None)),
            None => Err(not_a_journal(path, "it is empty")),
        }
    }

    fn new(db: Db, path: &Path, version: i64, lease: Option<Lease>) -> Journal {
        Journal {
            db: RefCell::new(db),
            path: path.to_path_buf(),
            version,
            full_sync: true,
            known: false,
            lease,
        }
    }

    /// PostgreSQL: connects, and unless `read_only` creates the schema (once, however many
    /// processes start at the same time). Version 1 journals were never in PostgreSQL.
    fn open_postgres(url: &Path, read_only: bool) -> Result<Journal> {
        let raw = url.to_str().unwrap_or_default();
        let shown = PathBuf::from(pg::redact(raw));
        let mut db = pg::connect(raw).map_err(|e| storage(&shown, e))?;
        let found = schema_version(&mut db, &shown)?;
        if read_only {
            let Some(version) = found else {
                return Err(not_a_journal(&shown, "it is empty"));
            };
            db.batch("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                .map_err(|e| storage(&shown, e))?;
            return Ok(Journal::new(db, &shown, version, None));
        }
        let ddl = pg::schema(&records_table("records"), SCHEMA);
        db.in_tx(&|e| e, |db| -> std::result::Result<((), bool), DbError> {
            db.batch(&format!(
                "SELECT pg_advisory_xact_lock({})",
                pg::JOURNAL_SCHEMA_LOCK
            ))?;
            db.batch(&ddl)?;
            db.exec(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
                     ON CONFLICT DO NOTHING",
                vals![SCHEMA_VERSION.to_string()],
            )?;
            Ok(((), true))
        })
        .map_err(|e| storage(&shown, e))?;
        let version = schema_version(&mut db, &shown)?.unwrap_or(SCHEMA_VERSION);
        if version != SCHEMA_VERSION {
            return Err(storage(
                &shown,
                format!("schema version {version}, this csm writes version {SCHEMA_VERSION}"),
            ));
        }
        let lease = Lease {
            url: crate::secret::Secret::new(raw),
            owner: pg::lease_owner(),
            duration: pg::DEFAULT_LEASE,
            held: Default::default(),
        };
        Ok(Journal::new(db, &shown, version, Some(lease)))
    }

    /// PostgreSQL: a second connection to this journal that holds the records under this
    /// one's name (its outcomes apply to what this one claimed), so that a sender stores
    /// outcomes while it claims the next batches. None for SQLite: a second writer there only
    /// waits for the first.
    pub fn second_writer(&self) -> Result<Option<Journal>> {
        let Some(l) = &self.lease else {
            return Ok(None);
        };
        let db = pg::connect(l.url.expose()).map_err(|e| storage(&self.path, e))?;
        let lease = Lease {
            url: l.url.clone(),
            owner: l.owner.clone(),
            duration: l.duration,
            held: Default::default(),
        };
        Ok(Some(Journal::new(
            db,
            &self.path,
            self.version,
            Some(lease),
        )))
    }

    /// PostgreSQL: these records' leases are given back with their outcomes (here or on a
    /// [`Journal::second_writer`]): [`Journal::release_leases`] leaves them out.
    pub fn no_longer_held(&mut self, ids: &[i64]) {
        if let Some(l) = &mut self.lease {
            for id in ids {
                l.held.remove(id);
            }
        }
    }

    /// PostgreSQL: these records are under this process's lease, for
    /// [`Journal::release_leases`] to give back: claimed here, or handed with their outcomes
    /// to a [`Journal::second_writer`] that did not store them.
    pub fn hold(&mut self, ids: impl IntoIterator<Item = i64>) {
        if let Some(l) = &mut self.lease {
            l.held.extend(ids);
        }
    }

    /// How many records this process would give back now.
    #[cfg(test)]
    pub(crate) fn held_count(&self) -> usize {
        self.lease.as_ref().map_or(0, |l| l.held.len())
    }

    /// How long a batch claimed from a PostgreSQL journal stays this process's before another
    /// may take it over (`--lease`); it must outlast one batch with all its retries.
    pub fn set_lease(&mut self, d: Duration) {
        if let Some(l) = &mut self.lease {
            l.duration = d;
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
            j.db()
                .exec("ATTACH DATABASE ?1 AS known", vals![read_only_uri(real)])
                .map_err(|e| storage(real, e))?;
            j.known = true;
        }
        Ok(j)
    }

    /// Creates the schema of a new SQLite journal, or brings an older one up to date.
    fn setup(mut conn: Connection, path: &Path) -> Result<Journal> {
        let mut init = || -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // FULL: a commit is on disk before the request that depends on it leaves.
            conn.pragma_update(None, "synchronous", "FULL")?;
            // 8 MB of page cache (default 2 MB): keeps the insertion points of the unique
            // indexes in memory on large imports; memory stays bounded by it.
            conn.pragma_update(None, "cache_size", -8192)?;
            // IMMEDIATE: two processes opening an old journal at once migrate it once.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // `open` refused anything but a journal or an empty database before this.
            let has_meta: bool = tx.query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |r| r.get(0),
            )?;
            let version: Option<String> = if has_meta {
                tx.query_row(
                    "SELECT value FROM meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .optional()?
            } else {
                None
            };
            if version.as_deref() == Some("1") {
                migrate_v1(&tx)?;
            }
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch(&records_table("records"))?;
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
            tx.commit()
        };
        init().map_err(|e| storage(path, e))?;
        let mut db = Db::Sqlite(conn);
        let version = schema_version(&mut db, path)?.unwrap_or(SCHEMA_VERSION);
        Ok(Journal::new(db, path, version, None))
    }

    /// SQLite: the lock file beside the journal (`<journal>.lock`), taken without waiting.
    /// PostgreSQL: nothing to take (records are leased batch by batch).
    pub fn lock_for_sending(&self) -> Result<SendLock> {
        if self.lease.is_some() {
            return Ok(SendLock { _file: None });
        }
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
            Ok(()) => Ok(SendLock { _file: Some(file) }),
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
    /// disk before a request leaves (`take_batch`, `retake`, imports) use FULL; outcomes use NORMAL: if
    /// one is lost with the power, its records are still `sent` and a replay settles them.
    /// PostgreSQL: the same rule with `synchronous_commit` on and off (off: the server's WAL
    /// writer flushes within moments; a crash before that loses the last outcomes, never a
    /// `sent`, whose commit waits for the flush and covers the WAL before it).
    fn set_sync(&mut self, full: bool) -> Result<()> {
        if self.full_sync != full {
            let set = match self.db.get_mut() {
                Db::Sqlite(c) => c
                    .pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })
                    .map_err(DbError::from),
                db @ Db::Postgres(_) => db.batch(if full {
                    "SET synchronous_commit = on"
                } else {
                    "SET synchronous_commit = off"
                }),
            };
            set.map_err(|e| storage(&self.path, e))?;
            self.full_sync = full;
        }
        Ok(())
    }

    fn db(&self) -> RefMut<'_, Db> {
        self.db.borrow_mut()
    }

    fn err(&self, e: impl std::fmt::Display) -> CsmError {
        storage(&self.path, e)
    }
}

impl Drop for Journal {
    /// PostgreSQL: what this process still holds goes back at once rather than when the
    /// lease expires (a process that dies leaves it to expire).
    fn drop(&mut self) {
        let _ = self.release_leases();
    }
}

/// What the tests of every part share: a journal in a temporary directory and imports of
/// CSV text into it.
#[cfg(test)]
pub(crate) mod testing {
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

    /// The SQLite journal, and a PostgreSQL one when `CSM_TEST_POSTGRES` names a server.
    pub fn journals() -> Vec<(Option<tempfile::TempDir>, Journal)> {
        let (d, j) = journal();
        let mut all = vec![(Some(d), j)];
        if let Some(url) = super::pg::test_database("journal unit tests") {
            all.push((None, Journal::open(std::path::Path::new(&url)).unwrap()));
        }
        all
    }

    pub fn import(j: &mut Journal, text: &str, commit: bool) -> ImportReport {
        let mut r = RecordReader::new(std::io::BufReader::new(text.as_bytes()), Format::Csv);
        j.import(&mut r, "in.csv", now(), Billing::Hourly, commit)
            .unwrap()
    }

    /// Takes up to 1,000 records of `scope` as a first attempt (marked `sent`), refusing none.
    pub fn take(j: &mut Journal, scope: super::Scope) -> super::Attempt {
        match j
            .take_batch(scope, 0, 1000, "t", &super::LocalRefusal::NONE)
            .unwrap()
        {
            Some((_, a)) => a,
            None => super::Attempt {
                batch_id: None,
                sent: Vec::new(),
                refused: Vec::new(),
            },
        }
    }

    /// Journals two records (metering_sn "a" and "b", one period apart by instance) and
    /// takes them: the attempt and their ids.
    pub fn take_two(j: &mut Journal) -> (super::Attempt, Vec<i64>) {
        import(
            j,
            &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\ni2,20260110T100000Z,20260110T110000Z,1,b\n"),
            true,
        );
        let a = take(j, ALL);
        let ids = a.sent.iter().map(|s| s.id).collect();
        (a, ids)
    }

    /// Everything not accepted yet.
    pub const ALL: super::Scope = super::Scope::Unfinished {
        include_rejected: false,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_one_the_schema_allows() {
        for st in State::ALL {
            let check = records_table("records");
            assert!(check.contains(&format!("'{}'", st.as_str())), "{st:?}");
            assert_eq!(State::parse(st.as_str()), Some(st));
        }
    }

    /// The schema of version 1, as csm wrote it.
    const V1: &str = "
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE imports (id INTEGER PRIMARY KEY, file TEXT NOT NULL, file_sha256 TEXT,
            imported_at TEXT NOT NULL, new_records INTEGER NOT NULL);
        CREATE INDEX imports_sha ON imports (file_sha256);
        CREATE TABLE records (
            id INTEGER PRIMARY KEY, metering_sn TEXT NOT NULL UNIQUE,
            sn_derived INTEGER NOT NULL, instance_id TEXT NOT NULL, begin_time TEXT NOT NULL,
            end_time TEXT NOT NULL, record_time TEXT NOT NULL, usage_value TEXT NOT NULL,
            relate_pkg_instance TEXT, source_file TEXT NOT NULL, source_line INTEGER NOT NULL,
            import_id INTEGER NOT NULL REFERENCES imports(id),
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'sent', 'accepted', 'rejected')),
            maybe_delivered INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
            last_batch INTEGER, last_code TEXT, last_message TEXT, sent_at TEXT,
            decided_at TEXT, UNIQUE (begin_time, end_time, instance_id));
        CREATE TABLE batches (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL,
            records INTEGER NOT NULL, attempt INTEGER NOT NULL, finished_at TEXT,
            http_status INTEGER, error_code TEXT, verdict TEXT);
        INSERT INTO imports VALUES (1, 'old.csv', NULL, '20260110T100000Z', 2);
        INSERT INTO records (metering_sn, sn_derived, instance_id, begin_time, end_time,
            record_time, usage_value, source_file, source_line, import_id, state,
            maybe_delivered, last_code)
        VALUES ('a', 0, 'i1', '20260110T100000Z', '20260110T110000Z', '20260110T110000Z',
                '1', 'old.csv', 2, 1, 'rejected', 1, '012'),
               ('b', 0, 'i1', '20260110T090000Z', '20260110T100000Z', '20260110T110000Z',
                '2', 'old.csv', 3, 1, 'accepted', 0, '000');";

    #[test]
    fn a_version_1_journal_is_read_as_it_is_and_migrated_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.sqlite");
        Connection::open(&path).unwrap().execute_batch(V1).unwrap();
        // Read-only: read as version 1, left as it is.
        let j = Journal::open_read_only(&path).unwrap();
        assert_eq!(j.version, 1);
        let s = j
            .status(crate::usage::record::Billing::Hourly, testing::now())
            .unwrap();
        assert_eq!(
            (s.counts[&State::Rejected], s.counts[&State::Accepted]),
            (1, 1)
        );
        assert!(s.abandoned.is_empty());
        let mut out = Vec::new();
        assert_eq!(j.export(State::Abandoned, false, &mut out).unwrap(), 0);
        drop(j);
        // Written: migrated, rows kept, and the new state works.
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.version, SCHEMA_VERSION);
        let c = j.counts().unwrap();
        assert_eq!((c[&State::Rejected], c[&State::Accepted]), (1, 1));
        let a = j
            .abandon("a", "seller", "not in 话单管理", "20260110T120000Z")
            .unwrap();
        assert_eq!((a.was, a.maybe_delivered), (State::Rejected, true));
        let r = testing::import(
            &mut j,
            &format!(
                "{}i1,20260110T100000Z,20260110T110000Z,3,a2\n",
                testing::HEAD
            ),
            true,
        );
        assert_eq!((r.new, r.error_count), (1, 0), "{:?}", r.errors);
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.version, SCHEMA_VERSION);
        assert_eq!(j.counts().unwrap()[&State::Pending], 1);
    }
}
