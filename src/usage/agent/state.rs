//! The agent's own state: the events it took in (by `event_id`, so that a resent event
//! counts once) and one row per instance and clock hour. An hour goes `open` → `closed` (its
//! record fixed: value, record_time, metering_sn) → `journaled` (in the usage journal) →
//! `reported` (accepted) or `rejected`; an hour with nothing to bill is `zero`; one that
//! cannot be reported is `failed` with the reason. Each step is one transaction, so a crash
//! between two repeats the step, never a count.
//!
//! Two stores, one logic (the journal's SQL layer, `journal::db`): an SQLite file for one
//! agent (`--state FILE`, or beside an SQLite journal), or the PostgreSQL database of a
//! shared journal, where every agent sharing it sees every event and hour. There, several
//! agents work at once: an event_id is taken by an `INSERT … ON CONFLICT DO NOTHING` (the
//! second agent waits for the first's commit and then sees a duplicate), an hour's totals
//! grow only while it is `open` (a guarded upsert), and closing locks the due hours
//! (`FOR UPDATE`). Every transaction that locks hour rows locks them in (hour, instance_id)
//! order, and event rows before hour rows, so two agents never deadlock.

use super::event::{format_units, Event, MAX_UNITS};
use crate::error::{CsmError, Result};
use crate::usage::journal::db::{text_list, vals, Db, DbError, DbResult, Val};
use crate::usage::journal::pg;
use crate::usage::record::{self, derive_metering_sn, MAX_AGE_DAYS};
use chrono::{DateTime, Duration, Utc};
use std::cell::{RefCell, RefMut};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SCHEMA_VERSION: &str = "1";

/// SQLite's types; PostgreSQL's are made from it ([`pg_schema`]).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agent_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_events (
    event_id            TEXT PRIMARY KEY,
    instance_id         TEXT NOT NULL,
    time                TEXT NOT NULL,
    hour                TEXT NOT NULL,
    units               INTEGER NOT NULL,
    relate_pkg_instance TEXT,
    source              TEXT NOT NULL,
    received_at         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_events_hour ON agent_events (hour);
CREATE TABLE IF NOT EXISTS agent_hours (
    instance_id         TEXT NOT NULL,
    hour                TEXT NOT NULL,
    relate_pkg_instance TEXT,
    events              INTEGER NOT NULL DEFAULT 0,
    sum_units           INTEGER NOT NULL DEFAULT 0,
    max_units           INTEGER NOT NULL DEFAULT 0,
    last_units          INTEGER NOT NULL DEFAULT 0,
    last_time           TEXT NOT NULL DEFAULT '',
    state               TEXT NOT NULL DEFAULT 'open'
                        CHECK (state IN ('open', 'closed', 'journaled', 'reported', 'rejected', 'zero', 'failed')),
    usage_value         TEXT,
    record_time         TEXT,
    metering_sn         TEXT,
    closed_at           TEXT,
    error               TEXT,
    PRIMARY KEY (instance_id, hour)
);
CREATE INDEX IF NOT EXISTS agent_hours_state ON agent_hours (state, hour);
CREATE INDEX IF NOT EXISTS agent_hours_sn ON agent_hours (metering_sn);
";

/// The schema in PostgreSQL: sums of ten-thousandths need 64 bits.
fn pg_schema() -> String {
    // Hours sort byte by byte, as Rust sorts them: every transaction locks hour rows in the
    // same order whatever the database's collation (no deadlock between two agents).
    SCHEMA.replace("INTEGER", "BIGINT").replace(
        "instance_id         TEXT NOT NULL,\n    hour                TEXT NOT NULL,\n    relate",
        "instance_id         TEXT COLLATE \"C\" NOT NULL,\n    hour                TEXT COLLATE \"C\" NOT NULL,\n    relate",
    )
}

/// The hour states, in the order an hour goes through them (metrics list them all).
pub const HOUR_STATES: [&str; 7] = [
    "open",
    "closed",
    "journaled",
    "reported",
    "rejected",
    "zero",
    "failed",
];

/// States of a closed hour whose usage the marketplace has not accepted yet.
const UNREPORTED: &str = "('closed', 'journaled', 'rejected')";

/// How an hour's events become one value (`--aggregate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Aggregate {
    /// The total of the hour's values (a count, a volume).
    Sum,
    /// The highest value (a level: peak seats, peak storage).
    Max,
    /// The value of the event with the latest time (a level read at the end of the hour).
    Last,
}

impl Aggregate {
    /// The most an hour's events may add up to, in ten-thousandths: with `sum` what one
    /// record carries; the other aggregates take one event's value, which always fits.
    fn cap(self) -> i64 {
        match self {
            Aggregate::Sum => MAX_UNITS,
            Aggregate::Max | Aggregate::Last => i64::MAX,
        }
    }
}

/// The agent state file for an SQLite journal: `<journal>.agent.sqlite`.
pub fn default_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".agent.sqlite");
    PathBuf::from(name)
}

/// Why an event of a document is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// It breaks a field rule, or clashes with another event (its event_id, the hour's
    /// relate_pkg_instance): the line needs fixing.
    Invalid,
    /// Its hour is closed: its record is final.
    Late,
    /// It would take its hour's sum past what one usage record carries.
    OverLimit,
}

impl RefusalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Invalid => "invalid",
            RefusalKind::Late => "late",
            RefusalKind::OverLimit => "over_limit",
        }
    }
}

/// One bad event of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub line: u64,
    pub message: String,
    pub kind: RefusalKind,
}

impl Refusal {
    pub fn invalid(line: u64, message: String) -> Refusal {
        Refusal {
            line,
            message,
            kind: RefusalKind::Invalid,
        }
    }
}

/// An hour that can no longer be reported: its usage is not billed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedHour {
    pub instance_id: String,
    pub hour: String,
    /// None when it failed before it had a record (past the 21 days when it closed).
    pub metering_sn: Option<String>,
    pub error: String,
}

/// As logs and the text report say it.
impl std::fmt::Display for FailedHour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the hour {} of instance {} failed and is not billed: {}",
            self.hour,
            record::show(&self.instance_id),
            self.error
        )
    }
}

/// What one [`AgentState::close_due`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Hours this call closed (whatever became of them).
    pub hours: u64,
    /// Those that closed as `failed`.
    pub failed: Vec<FailedHour>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub new: u64,
    pub duplicate: u64,
}

/// A closed hour's usage record, as it goes into the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourRecord {
    pub instance_id: String,
    pub begin_time: String,
    pub end_time: String,
    pub usage_value: String,
    pub record_time: String,
    pub metering_sn: String,
    pub relate_pkg_instance: Option<String>,
}

/// The oldest closed hour not reported yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreported {
    pub instance_id: String,
    pub hour: String,
    pub state: String,
    /// Since the end of the hour.
    pub age: Duration,
}

pub struct AgentState {
    db: RefCell<Db>,
    /// Where the state is, as messages show it: the file, or the journal's URL without its
    /// password.
    pub place: String,
    /// PostgreSQL: the URL to connect again with when the server went away (never shown).
    url: Option<String>,
}

fn storage(place: &str, e: impl std::fmt::Display) -> CsmError {
    CsmError::Storage(format!("agent state {place}: {e}"))
}

fn api(t: DateTime<Utc>) -> String {
    record::format_api_time(t)
}

fn parse_api(t: &str) -> Option<DateTime<Utc>> {
    record::parse_api_time(t)
}

/// The new events of one document for one hour, summed as the hour row sums them.
struct HourDelta<'a> {
    relate: Option<String>,
    events: Vec<(u64, &'a Event)>,
    sum: i64,
    max: i64,
    last_units: i64,
    last_time: String,
}

impl AgentState {
    /// The state in an SQLite file (created if new; any other database is refused).
    pub fn open(path: &Path) -> Result<AgentState> {
        let place = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CsmError::io(dir, e))?;
        }
        let conn = rusqlite::Connection::open(path).map_err(|e| storage(&place, e))?;
        let init = |conn: &rusqlite::Connection| -> rusqlite::Result<i64> {
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT GLOB 'agent_*'",
                [],
                |r| r.get(0),
            )
        };
        // Never turn some other database into agent state.
        if init(&conn).map_err(|e| storage(&place, e))? > 0 {
            return Err(CsmError::Storage(format!(
                "--state {place}: not csm agent state (it holds other tables); name another file"
            )));
        }
        let sync = |conn: &rusqlite::Connection| -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // FULL: an event counted is on disk before its spool file moves or its POST is
            // answered.
            conn.pragma_update(None, "synchronous", "FULL")
        };
        sync(&conn).map_err(|e| storage(&place, e))?;
        let mut db = Db::Sqlite(conn);
        create_schema(&mut db, SCHEMA).map_err(|e| storage(&place, e))?;
        Self::checked(db, place, None)
    }

    /// The state in the PostgreSQL database of the journal at `url`, beside the journal's
    /// tables, shared by every agent of that journal. The journal must exist there (it is
    /// opened first).
    pub fn open_shared(url: &str) -> Result<AgentState> {
        let place = pg::redact(url);
        let mut db = pg::connect(url).map_err(|e| storage(&place, e))?;
        let journal = db
            .query_one(
                "SELECT count(*) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = 'meta'",
                &[],
            )
            .and_then(|r| r.int(0))
            .map_err(|e| storage(&place, e))?;
        if journal == 0 {
            return Err(CsmError::Storage(format!(
                "agent state {place}: no csm usage journal in this database (open it as --journal first)"
            )));
        }
        let ddl = pg_schema();
        db.in_tx(&|e| e, |db| -> DbResult<((), bool)> {
            db.batch(&format!(
                "SELECT pg_advisory_xact_lock({})",
                pg::AGENT_SCHEMA_LOCK
            ))?;
            create_schema(db, &ddl)?;
            Ok(((), true))
        })
        .map_err(|e| storage(&place, e))?;
        Self::checked(db, place, Some(url.to_string()))
    }

    fn checked(mut db: Db, place: String, url: Option<String>) -> Result<AgentState> {
        let v = db
            .query_one(
                "SELECT value FROM agent_meta WHERE key = 'schema_version'",
                &[],
            )
            .and_then(|r| r.text(0))
            .map_err(|e| storage(&place, e))?;
        if v != SCHEMA_VERSION {
            return Err(storage(
                &place,
                format!("schema version {v}, this csm reads version {SCHEMA_VERSION}"),
            ));
        }
        Ok(AgentState {
            db: RefCell::new(db),
            place,
            url,
        })
    }

    /// PostgreSQL: connects again when the connection was lost (a server restart), so that
    /// a long-running agent recovers on its next cycle.
    pub fn reconnect_if_lost(&mut self) -> Result<()> {
        let (Some(url), Db::Postgres(p)) = (&self.url, self.db.get_mut()) else {
            return Ok(());
        };
        // One empty query a cycle: a connection the server dropped is only known by using it.
        if !p.client.is_closed()
            && p.client
                .is_valid(std::time::Duration::from_secs(10))
                .is_ok()
        {
            return Ok(());
        }
        // Connected with synchronous_commit on: an event is durable before its POST is
        // answered or its spool file moves.
        *self.db.get_mut() = pg::connect(url).map_err(|e| storage(&self.place, e))?;
        Ok(())
    }

    fn db(&self) -> RefMut<'_, Db> {
        self.db.borrow_mut()
    }

    fn err(&self, e: impl std::fmt::Display) -> CsmError {
        storage(&self.place, e)
    }

    /// Runs `f` in one transaction of the state, committed when it returns `(_, true)`.
    fn tx<T>(&self, f: impl FnOnce(&mut Db) -> DbResult<(T, bool)>) -> Result<T> {
        self.db().in_tx(&|e| e, f).map_err(|e| self.err(e))
    }

    /// Takes in a parsed document (its events, and `bad`: the lines the parser refused)
    /// unless any line is refused; then nothing, and every refused line in line order (the
    /// events' own refusals too, so that one round trip fixes the whole document).
    pub fn admit(
        &mut self,
        events: &[(u64, Event)],
        bad: Vec<(u64, String)>,
        source: &str,
        now: DateTime<Utc>,
        agg: Aggregate,
    ) -> Result<std::result::Result<Ingested, Vec<Refusal>>> {
        let mut refused: Vec<Refusal> = if bad.is_empty() {
            match self.ingest(events, source, now, agg)? {
                Ok(n) => return Ok(Ok(n)),
                Err(r) => r,
            }
        } else {
            let own = self.refusals(events, now, agg)?;
            bad.into_iter()
                .map(|(line, m)| Refusal::invalid(line, m))
                .chain(own)
                .collect()
        };
        refused.sort_by_key(|r| r.line);
        Ok(Err(refused))
    }

    /// Takes in the events of one document in one transaction: all of them, or (when any is
    /// refused) none. An event_id already taken by the same event is a duplicate, counted once.
    /// With `agg` sum, an event that would take its hour past what a record carries is
    /// refused: usage taken in is always billable.
    pub fn ingest(
        &mut self,
        events: &[(u64, Event)],
        source: &str,
        now: DateTime<Utc>,
        agg: Aggregate,
    ) -> Result<std::result::Result<Ingested, Vec<Refusal>>> {
        self.take(events, source, now, agg, true)
    }

    /// What [`ingest`](Self::ingest) would refuse of these events, taking in nothing: for a
    /// document with bad lines too, so that its answer names every refused line at once.
    pub fn refusals(
        &mut self,
        events: &[(u64, Event)],
        now: DateTime<Utc>,
        agg: Aggregate,
    ) -> Result<Vec<Refusal>> {
        Ok(self
            .take(events, "check", now, agg, false)?
            .err()
            .unwrap_or_default())
    }

    fn take(
        &mut self,
        events: &[(u64, Event)],
        source: &str,
        now: DateTime<Utc>,
        agg: Aggregate,
        commit: bool,
    ) -> Result<std::result::Result<Ingested, Vec<Refusal>>> {
        let now_s = api(now);
        let cap = agg.cap();
        self.tx(|db| {
            let mut out = Ingested::default();
            let mut refused = Vec::new();
            // Event rows first, in event_id order (stable: of one id twice in the document,
            // the first line is taken and the second is its duplicate), many per statement.
            let mut order: Vec<usize> = (0..events.len()).collect();
            order.sort_by(|&a, &b| events[a].1.event_id.cmp(&events[b].1.event_id));
            let mut new: Vec<usize> = Vec::new();
            for chunk in order.chunks(EVENT_ROWS) {
                let (sql, params) = insert_events(events, chunk, source, &now_s);
                let mut taken = std::collections::HashSet::new();
                for r in db.query(&sql, &params)? {
                    taken.insert(r.text(0)?);
                }
                // Taken before (by this document, an earlier one, or another agent): the
                // same event again, or another one under its id.
                let mut again = Vec::new();
                for &i in chunk {
                    if taken.remove(&events[i].1.event_id) {
                        new.push(i);
                    } else {
                        again.push(i);
                    }
                }
                if again.is_empty() {
                    continue;
                }
                let ids: Vec<&str> = again.iter().map(|&i| events[i].1.event_id.as_str()).collect();
                let list = text_list(&ids);
                let mut known = std::collections::HashMap::new();
                for r in db.query(
                    &format!(
                        "SELECT event_id, instance_id, time, units, relate_pkg_instance, source FROM agent_events WHERE {}",
                        db.texts_in("event_id", 1)
                    ),
                    vals![list],
                )? {
                    known.insert(r.text(0)?, r);
                }
                for i in again {
                    let (line, e) = (events[i].0, &events[i].1);
                    let k = known
                        .get(&e.event_id)
                        .ok_or_else(|| DbError(format!("event {} not found", e.event_id)))?;
                    // `time` is the one cut to the second (the fraction is not stored): the
                    // same id at .1 and .2 is the same content, as the docs say.
                    if k.text(1)? == e.instance_id
                        && k.text(2)? == e.time
                        && k.int(3)? == e.units
                        && k.opt_text(4)? == e.relate_pkg_instance
                    {
                        out.duplicate += 1;
                    } else {
                        refused.push(Refusal::invalid(
                            line,
                            format!(
                                "event_id {}: already names another event (from {}); each event needs its own event_id",
                                record::show(&e.event_id),
                                k.text(5)?
                            ),
                        ));
                    }
                }
            }
            // Then the hours, in (hour, instance_id) order, each once with this document's
            // sums (its events taken in document order).
            new.sort_unstable();
            let mut hours: BTreeMap<(&str, &str), HourDelta> = BTreeMap::new();
            for (line, e) in new.into_iter().map(|i| (events[i].0, &events[i].1)) {
                let h = hours
                    .entry((e.hour.as_str(), e.instance_id.as_str()))
                    .or_insert_with(|| HourDelta {
                        relate: e.relate_pkg_instance.clone(),
                        events: Vec::new(),
                        sum: 0,
                        max: 0,
                        last_units: 0,
                        last_time: String::new(),
                    });
                if h.relate != e.relate_pkg_instance {
                    refused.push(relate_refusal(line, e, h.relate.as_deref()));
                    continue;
                }
                h.sum += e.units;
                h.max = h.max.max(e.units);
                // The latest event gives `last`; of two at the same second, the later arrival.
                if e.time >= h.last_time {
                    h.last_time = e.time.clone();
                    h.last_units = e.units;
                }
                h.events.push((line, e));
            }
            for ((hour, inst), h) in &hours {
                if h.events.is_empty() {
                    continue;
                }
                // Only while the hour is open (an agent that closed it first, its commit
                // waited for by this upsert, makes these events late) and its sum fits a
                // record. Already too much alone: the row is not even looked at.
                let added = if h.sum > cap {
                    0
                } else {
                    db.exec(
                    "INSERT INTO agent_hours (instance_id, hour, relate_pkg_instance, events, sum_units, max_units, last_units, last_time)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (instance_id, hour) DO UPDATE SET
                       events = agent_hours.events + excluded.events,
                       sum_units = agent_hours.sum_units + excluded.sum_units,
                       max_units = CASE WHEN excluded.max_units > agent_hours.max_units
                                   THEN excluded.max_units ELSE agent_hours.max_units END,
                       last_units = CASE WHEN excluded.last_time >= agent_hours.last_time
                                    THEN excluded.last_units ELSE agent_hours.last_units END,
                       last_time = CASE WHEN excluded.last_time >= agent_hours.last_time
                                   THEN excluded.last_time ELSE agent_hours.last_time END
                     WHERE agent_hours.state = 'open'
                       AND agent_hours.relate_pkg_instance IS NOT DISTINCT FROM excluded.relate_pkg_instance
                       AND agent_hours.sum_units <= ?9 - excluded.sum_units",
                        vals![*inst, *hour, h.relate.as_deref(), h.events.len() as i64, h.sum, h.max,
                              h.last_units, &h.last_time, cap],
                    )?
                };
                if added == 1 {
                    out.new += h.events.len() as u64;
                    continue;
                }
                let row = db.query_opt(
                    "SELECT state, relate_pkg_instance, closed_at, sum_units FROM agent_hours WHERE instance_id = ?1 AND hour = ?2",
                    vals![*inst, *hour],
                )?;
                let (state, relate, closed_at, had) = match &row {
                    Some(r) => (r.text(0)?, r.opt_text(1)?, r.opt_text(2)?, r.int(3)?),
                    None => ("open".to_string(), h.relate.clone(), None, 0),
                };
                if state != "open" {
                    for (line, e) in &h.events {
                        refused.push(Refusal {
                            line: *line,
                            message: format!(
                                "time {}: late, the hour {} of instance {} was closed at {} ({state}); events for a closed hour are refused (its record is final)",
                                e.time,
                                e.hour,
                                record::show(&e.instance_id),
                                closed_at.as_deref().unwrap_or("?")
                            ),
                            kind: RefusalKind::Late,
                        });
                    }
                } else if relate != h.relate {
                    for (line, e) in &h.events {
                        refused.push(relate_refusal(*line, e, relate.as_deref()));
                    }
                } else {
                    let over = over_limit(had, cap, &h.events);
                    // The upsert refused them for one of the reasons above: never drop an
                    // hour's events without saying why.
                    if over.is_empty() {
                        return Err(DbError(format!(
                            "the hour {hour} of instance {inst} did not take its events and no rule says why"
                        )));
                    }
                    refused.extend(over);
                }
            }
            if refused.is_empty() {
                Ok((Ok(out), commit))
            } else {
                refused.sort_by_key(|r| r.line);
                Ok((Err(refused), false))
            }
        })
    }

    /// Closes every open hour that is due (its end plus `grace` has passed), oldest first,
    /// and with `heartbeat_zero` marks the hours without events of every instance seen in the
    /// last 21 days as `zero`. Returns how many hours this call closed (with a shared state,
    /// an hour another agent closed first is not counted here) and which of them failed.
    pub fn close_due(
        &mut self,
        now: DateTime<Utc>,
        grace: Duration,
        agg: Aggregate,
        heartbeat_zero: bool,
    ) -> Result<Closed> {
        let now_s = api(now);
        // The last hour that is due: it ended at least `grace` ago.
        let cutoff = super::event::hour_start(now - grace) - Duration::hours(1);
        let oldest = now - Duration::days(MAX_AGE_DAYS);
        if heartbeat_zero {
            // Its own transaction: a `zero` row is closed as it is written, and the closing
            // below then locks hours from the oldest again.
            self.tx(|db| {
                // From the hour after the instance's latest closed one (every hour before it
                // was filled by an earlier cycle), or from its first hour.
                let starts = db.query(
                    "SELECT instance_id, min(hour), max(CASE WHEN state != 'open' THEN hour END)
                     FROM agent_hours WHERE hour >= ?1 GROUP BY instance_id",
                    vals![api(super::event::hour_start(oldest))],
                )?;
                let mut quiet = Vec::new();
                for r in starts {
                    let start = match r.opt_text(2)?.as_deref().and_then(parse_api) {
                        Some(h) => h + Duration::hours(1),
                        None => match parse_api(&r.text(1)?) {
                            Some(h) => h,
                            None => continue,
                        },
                    };
                    let mut h = start;
                    while h <= cutoff {
                        quiet.push((api(h), r.text(0)?));
                        h += Duration::hours(1);
                    }
                }
                quiet.sort();
                for (hour, inst) in quiet {
                    db.exec(
                        "INSERT INTO agent_hours (instance_id, hour, state, closed_at) VALUES (?1, ?2, 'zero', ?3)
                         ON CONFLICT (instance_id, hour) DO NOTHING",
                        vals![inst, hour, &now_s],
                    )?;
                }
                Ok(((), true))
            })?;
        }
        let lock = if self.db().is_postgres() {
            // Another agent closing at once waits here, then skips what this one closed.
            " FOR UPDATE"
        } else {
            ""
        };
        let closed = self.tx(|db| {
            let due = db.query(
                &format!(
                    "SELECT instance_id, hour, relate_pkg_instance, sum_units, max_units, last_units
                     FROM agent_hours WHERE state = 'open' AND hour <= ?1 ORDER BY hour, instance_id{lock}"
                ),
                vals![api(cutoff)],
            )?;
            let mut out = Closed {
                hours: due.len() as u64,
                failed: Vec::new(),
            };
            for r in &due {
                let (inst, hour, relate) = (r.text(0)?, r.text(1)?, r.opt_text(2)?);
                let units = match agg {
                    Aggregate::Sum => r.int(3)?,
                    Aggregate::Max => r.int(4)?,
                    Aggregate::Last => r.int(5)?,
                };
                let begin = parse_api(&hour).unwrap_or(now);
                let end_s = api(begin + Duration::hours(1));
                let (state, value, sn, error) = if begin < oldest {
                    (
                        "failed",
                        None,
                        None,
                        Some(format!("hour {hour}: more than {MAX_AGE_DAYS} days old when it closed; the marketplace refuses it (MKT.9004)")),
                    )
                } else if units == 0 {
                    ("zero", None, None, None)
                } else {
                    (
                        "closed",
                        Some(format_units(units)),
                        Some(derive_metering_sn(&inst, &hour, &end_s, relate.as_deref())),
                        None,
                    )
                };
                db.exec(
                    "UPDATE agent_hours SET state = ?3, usage_value = ?4, metering_sn = ?5, record_time = ?6,
                     closed_at = ?6, error = ?7 WHERE instance_id = ?1 AND hour = ?2",
                    vals![&inst, &hour, state, value, sn.as_deref(), &now_s, error.as_deref()],
                )?;
                if let Some(error) = error {
                    out.failed.push(FailedHour {
                        instance_id: inst,
                        hour,
                        metering_sn: sn,
                        error,
                    });
                }
            }
            Ok((out, true))
        })?;
        // Events are kept as long as their hour could still be reported, and a day more.
        self.db()
            .exec(
                "DELETE FROM agent_events WHERE hour < ?1",
                vals![api(oldest - Duration::days(1))],
            )
            .map_err(|e| self.err(e))?;
        Ok(closed)
    }

    /// The closed hours not yet in the journal, oldest first.
    pub fn to_journal(&self) -> Result<Vec<HourRecord>> {
        let rows = self
            .db()
            .query(
                "SELECT instance_id, hour, usage_value, record_time, metering_sn, relate_pkg_instance
                 FROM agent_hours WHERE state = 'closed' ORDER BY hour, instance_id",
                &[],
            )
            .map_err(|e| self.err(e))?;
        let rec = |r: &crate::usage::journal::db::Row| -> DbResult<HourRecord> {
            let hour = r.text(1)?;
            let end = parse_api(&hour)
                .map(|h| api(h + Duration::hours(1)))
                .unwrap_or_default();
            Ok(HourRecord {
                instance_id: r.text(0)?,
                begin_time: hour,
                end_time: end,
                usage_value: r.text(2)?,
                record_time: r.text(3)?,
                metering_sn: r.text(4)?,
                relate_pkg_instance: r.opt_text(5)?,
            })
        };
        rows.iter()
            .map(rec)
            .collect::<DbResult<_>>()
            .map_err(|e| self.err(e))
    }

    /// Moves hours on by their metering_sn: `from` states to `to`, with an error text or none.
    pub fn set_state(
        &mut self,
        sns: &[String],
        from: &[&str],
        to: &str,
        error: Option<&str>,
    ) -> Result<()> {
        if sns.is_empty() {
            return Ok(());
        }
        let from = from
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let list = text_list(sns);
        self.tx(|db| {
            let these = db.texts_in("metering_sn", 1);
            if db.is_postgres() {
                // The rows locked in (hour, instance_id) order, as everywhere else.
                db.query(
                    &format!(
                        "SELECT 1 FROM agent_hours WHERE {these} ORDER BY hour, instance_id FOR UPDATE"
                    ),
                    vals![&list],
                )?;
            }
            db.exec(
                &format!(
                    "UPDATE agent_hours SET state = ?2, error = ?3 WHERE {these} AND state IN ({from})"
                ),
                vals![&list, to, error],
            )?;
            Ok(((), true))
        })
    }

    /// The metering_sn of hours in the journal whose outcome is not known to be accepted.
    pub fn awaiting(&self) -> Result<Vec<String>> {
        let rows = self
            .db()
            .query(
                "SELECT metering_sn FROM agent_hours WHERE state IN ('journaled', 'rejected')",
                &[],
            )
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| r.text(0))
            .collect::<DbResult<_>>()
            .map_err(|e| self.err(e))
    }

    pub fn hour_counts(&self) -> Result<BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, u64> =
            HOUR_STATES.iter().map(|s| (s.to_string(), 0)).collect();
        let rows = self
            .db()
            .query(
                "SELECT state, count(*) FROM agent_hours GROUP BY state",
                &[],
            )
            .map_err(|e| self.err(e))?;
        for r in rows {
            let (s, n) =
                (|| Ok::<_, DbError>((r.text(0)?, r.int(1)?)))().map_err(|e| self.err(e))?;
            out.insert(s, n as u64);
        }
        Ok(out)
    }

    pub fn oldest_unreported(&self, now: DateTime<Utc>) -> Result<Option<Unreported>> {
        let row = self
            .db()
            .query_opt(
                &format!(
                    "SELECT instance_id, hour, state FROM agent_hours WHERE state IN {UNREPORTED}
                     ORDER BY hour LIMIT 1"
                ),
                &[],
            )
            .map_err(|e| self.err(e))?;
        let Some(r) = row else { return Ok(None) };
        let (instance_id, hour, state) =
            (|| Ok::<_, DbError>((r.text(0)?, r.text(1)?, r.text(2)?)))()
                .map_err(|e| self.err(e))?;
        let end = parse_api(&hour).unwrap_or(now) + Duration::hours(1);
        Ok(Some(Unreported {
            instance_id,
            hour,
            state,
            age: (now - end).max(Duration::zero()),
        }))
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        let row = self
            .db()
            .query_opt("SELECT value FROM agent_meta WHERE key = ?1", vals![key])
            .map_err(|e| self.err(e))?;
        row.map(|r| r.text(0)).transpose().map_err(|e| self.err(e))
    }

    pub fn set_meta(&self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => self.db().exec(
                "INSERT INTO agent_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                vals![key, v],
            ),
            None => self
                .db()
                .exec("DELETE FROM agent_meta WHERE key = ?1", vals![key]),
        }
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    /// Sets `key` unless it is set; true when this call set it (of several agents sharing
    /// the state, exactly one).
    pub fn claim_meta(&self, key: &str, value: &str) -> Result<bool> {
        self.db()
            .exec(
                "INSERT INTO agent_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                vals![key, value],
            )
            .map(|n| n == 1)
            .map_err(|e| self.err(e))
    }
}

fn relate_refusal(line: u64, e: &Event, has: Option<&str>) -> Refusal {
    Refusal::invalid(
        line,
        format!(
            "relate_pkg_instance {}: the hour {} of instance {} already has {} (one record per instance and hour)",
            record::show(e.relate_pkg_instance.as_deref().unwrap_or("")),
            e.hour,
            record::show(&e.instance_id),
            record::show(has.unwrap_or(""))
        ),
    )
}

/// The events of one hour (document order) that would take its sum, `had` so far, past
/// `cap`: each one that does not fit after those before it that do, so that the document
/// without them would be taken.
fn over_limit(had: i64, cap: i64, events: &[(u64, &Event)]) -> Vec<Refusal> {
    let mut sum = had;
    let mut out = Vec::new();
    for (line, e) in events {
        if sum + e.units <= cap {
            sum += e.units;
            continue;
        }
        out.push(Refusal {
            line: *line,
            message: format!(
                "value {}: the hour {} of instance {} would sum to {}, more than one usage record carries (usage_value at most {}); refused so that no usage taken in goes unbilled",
                record::show(&format_units(e.units)),
                e.hour,
                record::show(&e.instance_id),
                format_units(sum + e.units),
                format_units(cap)
            ),
            kind: RefusalKind::OverLimit,
        });
    }
    out
}

/// Events per INSERT: 6 parameters each (and 2 shared), under SQLite's 32,766 and
/// PostgreSQL's 65,535.
const EVENT_ROWS: usize = 1000;

/// One INSERT of the events `at` of `events`, returning the event_ids it took (an id already
/// there, or earlier in the same statement, is not taken).
fn insert_events(
    events: &[(u64, Event)],
    at: &[usize],
    source: &str,
    now: &str,
) -> (String, Vec<Val>) {
    use std::fmt::Write;
    let mut sql = String::from(
        "INSERT INTO agent_events (source, received_at, event_id, instance_id, time, hour, units, relate_pkg_instance) VALUES ",
    );
    let mut params = Vec::with_capacity(2 + 6 * at.len());
    params.extend([Val::from(source), Val::from(now)]);
    for (k, &i) in at.iter().enumerate() {
        let e = &events[i].1;
        let b = 3 + 6 * k;
        if k > 0 {
            sql.push_str(", ");
        }
        let _ = write!(
            sql,
            "(?1, ?2, ?{b}, ?{}, ?{}, ?{}, ?{}, ?{})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5
        );
        params.extend([
            Val::from(&e.event_id),
            Val::from(&e.instance_id),
            Val::from(&e.time),
            Val::from(&e.hour),
            Val::from(e.units),
            Val::from(e.relate_pkg_instance.as_deref()),
        ]);
    }
    sql.push_str(" ON CONFLICT (event_id) DO NOTHING RETURNING event_id");
    (sql, params)
}

/// The tables (if new) and the schema version (if not set), in the caller's transaction
/// on PostgreSQL.
fn create_schema(db: &mut Db, ddl: &str) -> DbResult<()> {
    db.batch(ddl)?;
    db.exec(
        "INSERT INTO agent_meta (key, value) VALUES ('schema_version', ?1)
         ON CONFLICT (key) DO NOTHING",
        vals![SCHEMA_VERSION],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_orders_hour_rows_byte_by_byte() {
        let ddl = pg_schema();
        assert_eq!(ddl.matches("COLLATE \"C\"").count(), 2, "{ddl}");
        assert!(!ddl.contains("INTEGER"), "{ddl}");
    }
    use crate::usage::agent::event::{validate, RawEvent};

    fn t(s: &str) -> DateTime<Utc> {
        record::parse_time("t", s).unwrap()
    }

    fn ev(id: &str, inst: &str, time: &str, v: &str) -> (u64, Event) {
        let raw = RawEvent {
            instance_id: Some(inst.into()),
            time: Some(time.into()),
            value: Some(v.into()),
            event_id: Some(id.into()),
            relate_pkg_instance: None,
        };
        (1, validate(&raw, t("20260110T120000Z")).unwrap())
    }

    /// The state in an SQLite file, and in a PostgreSQL journal's database when
    /// `CSM_TEST_POSTGRES` names a server.
    fn states() -> Vec<(tempfile::TempDir, AgentState)> {
        let dir = tempfile::tempdir().unwrap();
        let s = AgentState::open(&dir.path().join("a.sqlite")).unwrap();
        let mut all = vec![(dir, s)];
        if let Some(url) = pg::test_database("agent state unit tests") {
            drop(crate::usage::journal::Journal::open(Path::new(&url)).unwrap());
            all.push((
                tempfile::tempdir().unwrap(),
                AgentState::open_shared(&url).unwrap(),
            ));
        }
        all
    }

    #[test]
    fn aggregates_close_when_due_and_late_events_are_refused() {
        for (_d, mut s) in states() {
            let now = t("20260110T120000Z");
            let batch = [
                ev("a", "i-1", "20260110T100500Z", "2"),
                ev("b", "i-1", "20260110T105900Z", "1.5"),
                ev("c", "i-1", "20260110T103000Z", "7"),
                ev("d", "i-1", "20260110T113000Z", "4"),
            ];
            assert_eq!(
                s.ingest(&batch, "x", now, Aggregate::Sum)
                    .unwrap()
                    .unwrap()
                    .new,
                4
            );
            // Again: duplicates only.
            let again = s
                .ingest(&batch[..2], "x", now, Aggregate::Sum)
                .unwrap()
                .unwrap();
            assert_eq!((again.new, again.duplicate), (0, 2));
            // One new event twice in a document: counted once.
            let twice = [
                ev("f", "i-1", "20260110T110500Z", "0"),
                ev("f", "i-1", "20260110T110500Z", "0"),
            ];
            let again = s.ingest(&twice, "x", now, Aggregate::Sum).unwrap().unwrap();
            assert_eq!((again.new, again.duplicate), (1, 1));
            // Same id, other content: refused, nothing taken.
            let clash = s
                .ingest(
                    &[ev("a", "i-1", "20260110T100500Z", "3")],
                    "y",
                    now,
                    Aggregate::Sum,
                )
                .unwrap()
                .unwrap_err();
            assert!(clash[0].message.contains("another event"));
            // 11:00-12:00 is not due before 12:05 (grace 5 min).
            let n = s
                .close_due(now, Duration::minutes(5), Aggregate::Sum, false)
                .unwrap();
            assert_eq!((n.hours, n.failed.len()), (1, 0));
            let recs = s.to_journal().unwrap();
            assert_eq!(recs.len(), 1);
            assert_eq!(
                (
                    recs[0].begin_time.as_str(),
                    recs[0].end_time.as_str(),
                    recs[0].usage_value.as_str()
                ),
                ("20260110T100000Z", "20260110T110000Z", "10.5")
            );
            assert_eq!(
                recs[0].metering_sn,
                derive_metering_sn("i-1", "20260110T100000Z", "20260110T110000Z", None)
            );
            let late = s
                .ingest(
                    &[ev("e", "i-1", "20260110T104000Z", "1")],
                    "z",
                    now,
                    Aggregate::Sum,
                )
                .unwrap()
                .unwrap_err();
            assert_eq!(late[0].kind, RefusalKind::Late, "{late:?}");
            let later = t("20260110T120600Z");
            assert_eq!(
                s.close_due(later, Duration::minutes(5), Aggregate::Last, false)
                    .unwrap()
                    .hours,
                1
            );
            assert_eq!(s.to_journal().unwrap()[1].usage_value, "4");
        }
    }

    #[test]
    fn with_sum_intake_refuses_what_a_record_could_not_carry() {
        for (_d, mut s) in states() {
            let now = t("20260110T120000Z");
            let big = |id: &str| ev(id, "i-1", "20260110T101500Z", "99999999");
            s.ingest(&[big("a")], "x", now, Aggregate::Sum)
                .unwrap()
                .unwrap();
            // The second would make 199999998: refused, named with its hour and the limit.
            let r = s
                .ingest(&[big("b")], "x", now, Aggregate::Sum)
                .unwrap()
                .unwrap_err();
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].kind, RefusalKind::OverLimit);
            assert_eq!(
                r[0].message,
                "value \"99999999\": the hour 20260110T100000Z of instance \"i-1\" would sum to 199999998, more than one usage record carries (usage_value at most 99999999.9999); refused so that no usage taken in goes unbilled"
            );
            // What still fits is taken; in one document, each event that does not fit
            // after those before it is named (and, as always, nothing of it is taken).
            let doc = [
                ev("c", "i-1", "20260110T101600Z", "0.9999"),
                ev("d", "i-1", "20260110T101700Z", "0.0001"),
                ev("e", "i-1", "20260110T101800Z", "0"),
                ev("f", "i-2", "20260110T101800Z", "99999999.9999"),
                ev("g", "i-2", "20260110T101900Z", "1"),
            ];
            let r = s
                .ingest(&doc, "x", now, Aggregate::Sum)
                .unwrap()
                .unwrap_err();
            let named: Vec<_> = r
                .iter()
                .map(|r| (r.message.split(':').next().unwrap(), r.kind))
                .collect();
            assert_eq!(
                named,
                [
                    ("value \"0.0001\"", RefusalKind::OverLimit),
                    ("value \"1\"", RefusalKind::OverLimit)
                ]
            );
            let fits = [doc[0].clone(), doc[2].clone(), doc[3].clone()];
            s.ingest(&fits, "x", now, Aggregate::Sum).unwrap().unwrap();
            // `max` and `last` bill one event's value: no sum to watch.
            s.ingest(&[big("h"), big("i")], "x", now, Aggregate::Max)
                .unwrap()
                .unwrap();
            s.close_due(now, Duration::minutes(5), Aggregate::Sum, false)
                .unwrap();
            assert_eq!(s.to_journal().unwrap().len(), 2);
        }
    }

    #[test]
    fn refusals_name_every_refused_event_and_take_nothing() {
        for (_d, mut s) in states() {
            let now = t("20260110T120000Z");
            s.ingest(
                &[
                    ev("a", "i-1", "20260110T100500Z", "1"),
                    ev("b", "i-2", "20260110T110500Z", "99999999"),
                ],
                "x",
                now,
                Aggregate::Sum,
            )
            .unwrap()
            .unwrap();
            s.close_due(now, Duration::minutes(5), Aggregate::Sum, false)
                .unwrap();
            let doc = [
                (1, ev("c", "i-1", "20260110T101000Z", "1").1),
                (2, ev("d", "i-3", "20260110T111000Z", "1").1),
                (3, ev("a", "i-1", "20260110T100500Z", "2").1),
                (4, ev("e", "i-2", "20260110T111000Z", "1").1),
            ];
            let r = s.refusals(&doc, now, Aggregate::Sum).unwrap();
            let kinds: Vec<_> = r.iter().map(|r| (r.line, r.kind)).collect();
            assert_eq!(
                kinds,
                [
                    (1, RefusalKind::Late),
                    (3, RefusalKind::Invalid),
                    (4, RefusalKind::OverLimit)
                ]
            );
            // Nothing taken, even the event that would have been.
            assert!(s
                .refusals(&doc[1..2], now, Aggregate::Sum)
                .unwrap()
                .is_empty());
            assert_eq!(s.hour_counts().unwrap()["open"], 1);
            let fine = s
                .ingest(&doc[1..2], "x", now, Aggregate::Sum)
                .unwrap()
                .unwrap();
            assert_eq!((fine.new, fine.duplicate), (1, 0));
        }
    }

    #[test]
    fn max_last_and_heartbeat_zero() {
        for (_d, mut s) in states() {
            let now = t("20260110T120000Z");
            s.ingest(
                &[
                    ev("a", "i-1", "20260110T080500Z", "2"),
                    ev("b", "i-1", "20260110T085900Z", "1"),
                    ev("c", "i-1", "20260110T083000Z", "7"),
                ],
                "x",
                now,
                Aggregate::Max,
            )
            .unwrap()
            .unwrap();
            s.close_due(now, Duration::minutes(5), Aggregate::Max, true)
                .unwrap();
            assert_eq!(s.to_journal().unwrap()[0].usage_value, "7");
            // 09, 10 had no events: zero; 11 is not due yet.
            let c = s.hour_counts().unwrap();
            assert_eq!((c["closed"], c["zero"], c["open"]), (1, 2, 0));
            // Later cycles go on from the last closed hour: 11 has an event, 12 and 13 none.
            s.ingest(
                &[ev("d", "i-1", "20260110T113000Z", "1")],
                "x",
                now,
                Aggregate::Sum,
            )
            .unwrap()
            .unwrap();
            s.close_due(
                t("20260110T141000Z"),
                Duration::minutes(5),
                Aggregate::Max,
                true,
            )
            .unwrap();
            let c = s.hour_counts().unwrap();
            assert_eq!((c["closed"], c["zero"], c["open"]), (2, 4, 0));
        }
    }

    /// Two agents on one PostgreSQL state, at once: one takes in documents of overlapping
    /// events for one hour while the other takes in its own and closes the hour midway.
    /// Every event is counted once or refused as late with its whole document, and the
    /// closed record holds exactly the events kept.
    #[test]
    fn two_agents_ingesting_and_closing_at_once_lose_and_double_nothing() {
        let Some(url) = pg::test_database("agent state concurrency") else {
            return;
        };
        drop(crate::usage::journal::Journal::open(Path::new(&url)).unwrap());
        let now = t("20260110T120000Z");
        let doc = |agent: &str, n: usize| -> Vec<(u64, Event)> {
            // Each document: two events of its own, one every document of both agents has.
            vec![
                ev(&format!("{agent}-{n}-a"), "i-1", "20260110T100000Z", "1"),
                ev(&format!("{agent}-{n}-b"), "i-1", "20260110T101000Z", "2"),
                ev("shared", "i-1", "20260110T102000Z", "100"),
            ]
        };
        let run = |agent: &'static str, close_at: Option<usize>| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = AgentState::open_shared(&url).unwrap();
                let (mut kept, mut late, mut closed) = (0u64, 0u64, 0u64);
                for n in 0..40 {
                    if Some(n) == close_at {
                        closed += s
                            .close_due(now, Duration::minutes(5), Aggregate::Sum, false)
                            .unwrap()
                            .hours;
                    }
                    match s
                        .ingest(&doc(agent, n), agent, now, Aggregate::Sum)
                        .unwrap()
                    {
                        Ok(i) => kept += i.new,
                        Err(r) => {
                            assert!(r.iter().all(|r| r.kind == RefusalKind::Late), "{r:?}");
                            late += 1;
                        }
                    }
                }
                (kept, late, closed)
            })
        };
        let (a, b) = (run("a", None), run("b", Some(20)));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert_eq!(a.2 + b.2, 1, "closed once: {a:?} {b:?}");
        assert!(b.1 >= 20, "b's documents after the close are late: {b:?}");
        let mut s = AgentState::open_shared(&url).unwrap();
        // The later documents of `a` too, if any, once the hour is closed.
        s.close_due(now, Duration::minutes(5), Aggregate::Sum, false)
            .unwrap();
        let kept: i64 = s
            .db()
            .query_one("SELECT CAST(sum(units) AS BIGINT) FROM agent_events", &[])
            .and_then(|r| r.int(0))
            .unwrap();
        let recs = s.to_journal().unwrap();
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0].usage_value, format_units(kept), "{a:?} {b:?}");
        // Every new event counted is one row: `shared` once, 1 + 2 per document kept.
        assert_eq!(a.0 + b.0, {
            let n = s
                .db()
                .query_one("SELECT count(*) FROM agent_events", &[])
                .and_then(|r| r.int(0))
                .unwrap();
            n as u64
        });
        assert!(
            kept > 0 && (kept - 100 * 10_000) % (3 * 10_000) == 0,
            "{kept}"
        );
    }

    #[test]
    fn a_shared_state_connects_again_after_the_server_dropped_it() {
        let Some(url) = pg::test_database("agent state reconnect") else {
            return;
        };
        drop(crate::usage::journal::Journal::open(Path::new(&url)).unwrap());
        let mut s = AgentState::open_shared(&url).unwrap();
        let pid = s
            .db()
            .query_one("SELECT CAST(pg_backend_pid() AS BIGINT)", &[])
            .and_then(|r| r.int(0))
            .unwrap();
        let mut admin = pg::connect(&url).unwrap();
        admin
            .exec("SELECT pg_terminate_backend(CAST(?1 AS INT))", vals![pid])
            .unwrap();
        // The first use after the loss fails (a cycle that fails is tried again) …
        let mut lost = false;
        for _ in 0..50 {
            if s.hour_counts().is_err() {
                lost = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(lost);
        // … and the next cycle connects again.
        s.reconnect_if_lost().unwrap();
        assert_eq!(s.hour_counts().unwrap()["open"], 0);
    }

    #[test]
    fn refuses_a_database_of_something_else() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("other.sqlite");
        rusqlite::Connection::open(&p)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(AgentState::open(&p)
            .err()
            .unwrap()
            .to_string()
            .contains("not csm agent state"));
    }
}
