//! The agent's own state (SQLite, a file beside the usage journal): the events it took in
//! (by `event_id`, so that a resent event counts once) and one row per instance and clock
//! hour. An hour goes `open` → `closed` (its record fixed: value, record_time, metering_sn)
//! → `journaled` (in the usage journal) → `reported` (accepted) or `rejected`; an hour with
//! nothing to bill is `zero`; one that cannot be reported is `failed` with the reason.
//! Each step is one transaction, so a crash between two repeats the step, never a count.

use super::event::{format_units, Event};
use crate::error::{CsmError, Result};
use crate::usage::record::{self, derive_metering_sn, MAX_AGE_DAYS};
use chrono::{DateTime, Duration, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SCHEMA_VERSION: &str = "1";

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
";

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

/// The agent state file for a journal: `<journal>.agent.sqlite`.
pub fn default_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".agent.sqlite");
    PathBuf::from(name)
}

/// One bad event of a document, and whether it is bad because its hour is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub line: u64,
    pub message: String,
    pub late: bool,
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
    conn: Connection,
    pub path: PathBuf,
}

fn storage(path: &Path, e: impl std::fmt::Display) -> CsmError {
    CsmError::Storage(format!("agent state {}: {e}", path.display()))
}

fn api(t: DateTime<Utc>) -> String {
    record::format_api_time(t)
}

fn parse_api(t: &str) -> Option<DateTime<Utc>> {
    record::parse_api_time(t)
}

impl AgentState {
    pub fn open(path: &Path) -> Result<AgentState> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CsmError::io(dir, e))?;
        }
        let conn = Connection::open(path).map_err(|e| storage(path, e))?;
        let err = |e| storage(path, e);
        // Never turn some other database into agent state.
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT GLOB 'agent_*'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if tables > 0 {
            return Err(CsmError::Storage(format!(
                "--state {}: not csm agent state (it holds other tables); name another file",
                path.display()
            )));
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        // FULL: an event counted is on disk before its spool file moves or its POST is answered.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute(
            "INSERT OR IGNORE INTO agent_meta (key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION],
        )
        .map_err(err)?;
        let v: String = conn
            .query_row(
                "SELECT value FROM agent_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if v != SCHEMA_VERSION {
            return Err(storage(
                path,
                format!("schema version {v}, this csm reads version {SCHEMA_VERSION}"),
            ));
        }
        Ok(AgentState {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> CsmError {
        storage(&self.path, e)
    }

    /// Takes in the events of one document in one transaction: all of them, or (when any is
    /// refused) none. An event_id already taken by the same event is a duplicate, counted once.
    pub fn ingest(
        &mut self,
        events: &[(u64, Event)],
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<Ingested, Vec<Refusal>>> {
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let tx = self.conn.transaction().map_err(serr)?;
        let mut out = Ingested::default();
        let mut refused = Vec::new();
        let now_s = api(now);
        // Prepared once: a file of 100,000 events runs each of them 100,000 times.
        {
            let mut find_event = tx
                .prepare("SELECT instance_id, time, units, relate_pkg_instance, source FROM agent_events WHERE event_id = ?1")
                .map_err(serr)?;
            let mut find_hour = tx
                .prepare("SELECT state, relate_pkg_instance, closed_at FROM agent_hours WHERE instance_id = ?1 AND hour = ?2")
                .map_err(serr)?;
            let mut add_event = tx
                .prepare("INSERT INTO agent_events (event_id, instance_id, time, hour, units, relate_pkg_instance, source, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .map_err(serr)?;
            let mut add_to_hour = tx
                .prepare("INSERT INTO agent_hours (instance_id, hour, relate_pkg_instance, events, sum_units, max_units, last_units, last_time)
                 VALUES (?1, ?2, ?3, 1, ?4, ?4, ?4, ?5)
                 ON CONFLICT (instance_id, hour) DO UPDATE SET
                   events = events + 1,
                   sum_units = sum_units + excluded.sum_units,
                   max_units = max(max_units, excluded.max_units),
                   last_units = CASE WHEN excluded.last_time >= last_time THEN excluded.last_units ELSE last_units END,
                   last_time = max(last_time, excluded.last_time)")
                .map_err(serr)?;
            for (line, e) in events {
                let known: Option<(String, String, i64, Option<String>, String)> = find_event
                    .query_row([&e.event_id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()
                    .map_err(serr)?;
                if let Some((inst, time, units, relate, from)) = known {
                    if inst == e.instance_id
                        && time == e.time
                        && units == e.units
                        && relate == e.relate_pkg_instance
                    {
                        out.duplicate += 1;
                    } else {
                        refused.push(Refusal {
                            line: *line,
                            message: format!(
                                "event_id {}: already names another event (from {from}); each event needs its own event_id",
                                record::show(&e.event_id)
                            ),
                            late: false,
                        });
                    }
                    continue;
                }
                let hour: Option<(String, Option<String>, Option<String>)> = find_hour
                    .query_row(params![e.instance_id, e.hour], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                    .map_err(serr)?;
                if let Some((state, relate, closed_at)) = &hour {
                    if state != "open" {
                        refused.push(Refusal {
                            line: *line,
                            message: format!(
                                "time {}: late, the hour {} of instance {} was closed at {} ({state}); events for a closed hour are refused (its record is final)",
                                e.time,
                                e.hour,
                                record::show(&e.instance_id),
                                closed_at.as_deref().unwrap_or("?")
                            ),
                            late: true,
                        });
                        continue;
                    }
                    if *relate != e.relate_pkg_instance {
                        refused.push(Refusal {
                            line: *line,
                            message: format!(
                                "relate_pkg_instance {}: the hour {} of instance {} already has {} (one record per instance and hour)",
                                record::show(e.relate_pkg_instance.as_deref().unwrap_or("")),
                                e.hour,
                                record::show(&e.instance_id),
                                record::show(relate.as_deref().unwrap_or(""))
                            ),
                            late: false,
                        });
                        continue;
                    }
                }
                add_event
                    .execute(params![
                        e.event_id,
                        e.instance_id,
                        e.time,
                        e.hour,
                        e.units,
                        e.relate_pkg_instance,
                        source,
                        now_s
                    ])
                    .map_err(serr)?;
                // The latest event gives `last`; of two at the same second, the later arrival.
                add_to_hour
                    .execute(params![
                        e.instance_id,
                        e.hour,
                        e.relate_pkg_instance,
                        e.units,
                        e.time
                    ])
                    .map_err(serr)?;
                out.new += 1;
            }
        }
        if refused.is_empty() {
            tx.commit().map_err(serr)?;
            Ok(Ok(out))
        } else {
            tx.rollback().map_err(serr)?;
            Ok(Err(refused))
        }
    }

    /// Closes every open hour that is due (its end plus `grace` has passed), oldest first,
    /// and with `heartbeat_zero` marks the hours without events of every instance seen in the
    /// last 21 days as `zero`. Returns how many hours were closed.
    pub fn close_due(
        &mut self,
        now: DateTime<Utc>,
        grace: Duration,
        agg: Aggregate,
        heartbeat_zero: bool,
    ) -> Result<u64> {
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let now_s = api(now);
        // The last hour that is due: it ended at least `grace` ago.
        let cutoff = super::event::hour_start(now - grace) - Duration::hours(1);
        let oldest = now - Duration::days(MAX_AGE_DAYS);
        let tx = self.conn.transaction().map_err(serr)?;
        if heartbeat_zero {
            // From the hour after the instance's latest closed one (every hour before it
            // was filled by an earlier cycle), or from its first hour.
            let starts: Vec<(String, String, Option<String>)> = {
                let mut st = tx
                    .prepare(
                        "SELECT instance_id, min(hour), max(CASE WHEN state != 'open' THEN hour END)
                         FROM agent_hours WHERE hour >= ?1 GROUP BY instance_id",
                    )
                    .map_err(serr)?;
                let rows = st
                    .query_map([api(super::event::hour_start(oldest))], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .map_err(serr)?;
                rows.collect::<rusqlite::Result<_>>().map_err(serr)?
            };
            for (inst, first, last_closed) in starts {
                let start = match last_closed.as_deref().and_then(parse_api) {
                    Some(h) => h + Duration::hours(1),
                    None => match parse_api(&first) {
                        Some(h) => h,
                        None => continue,
                    },
                };
                let mut h = start;
                while h <= cutoff {
                    tx.execute(
                        "INSERT OR IGNORE INTO agent_hours (instance_id, hour, state, closed_at) VALUES (?1, ?2, 'zero', ?3)",
                        params![inst, api(h), now_s],
                    )
                    .map_err(serr)?;
                    h += Duration::hours(1);
                }
            }
        }
        let due: Vec<(String, String, Option<String>, i64, i64, i64)> = {
            let mut st = tx
                .prepare(
                    "SELECT instance_id, hour, relate_pkg_instance, sum_units, max_units, last_units
                     FROM agent_hours WHERE state = 'open' AND hour <= ?1 ORDER BY hour, instance_id",
                )
                .map_err(serr)?;
            let rows = st
                .query_map([api(cutoff)], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .map_err(serr)?;
            rows.collect::<rusqlite::Result<_>>().map_err(serr)?
        };
        for (inst, hour, relate, sum, max, last) in &due {
            let units = match agg {
                Aggregate::Sum => *sum,
                Aggregate::Max => *max,
                Aggregate::Last => *last,
            };
            let begin = parse_api(hour).unwrap_or(now);
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
                    Some(derive_metering_sn(inst, hour, &end_s, relate.as_deref())),
                    None,
                )
            };
            tx.execute(
                "UPDATE agent_hours SET state = ?3, usage_value = ?4, metering_sn = ?5, record_time = ?6,
                 closed_at = ?6, error = ?7 WHERE instance_id = ?1 AND hour = ?2",
                params![inst, hour, state, value, sn, now_s, error],
            )
            .map_err(serr)?;
        }
        // Events are kept as long as their hour could still be reported, and a day more.
        tx.execute(
            "DELETE FROM agent_events WHERE hour < ?1",
            [api(oldest - Duration::days(1))],
        )
        .map_err(serr)?;
        tx.commit().map_err(serr)?;
        Ok(due.len() as u64)
    }

    /// The closed hours not yet in the journal, oldest first.
    pub fn to_journal(&self) -> Result<Vec<HourRecord>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT instance_id, hour, usage_value, record_time, metering_sn, relate_pkg_instance
                 FROM agent_hours WHERE state = 'closed' ORDER BY hour, instance_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                let hour: String = r.get(1)?;
                let end = parse_api(&hour)
                    .map(|h| api(h + Duration::hours(1)))
                    .unwrap_or_default();
                Ok(HourRecord {
                    instance_id: r.get(0)?,
                    begin_time: hour,
                    end_time: end,
                    usage_value: r.get(2)?,
                    record_time: r.get(3)?,
                    metering_sn: r.get(4)?,
                    relate_pkg_instance: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
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
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let tx = self.conn.transaction().map_err(serr)?;
        let from = from
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        {
            let mut st = tx
                .prepare(&format!(
                    "UPDATE agent_hours SET state = ?2, error = ?3 WHERE metering_sn = ?1 AND state IN ({from})"
                ))
                .map_err(serr)?;
            for sn in sns {
                st.execute(params![sn, to, error]).map_err(serr)?;
            }
        }
        tx.commit().map_err(serr)
    }

    /// The metering_sn of hours in the journal whose outcome is not known to be accepted.
    pub fn awaiting(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT metering_sn FROM agent_hours WHERE state IN ('journaled', 'rejected')")
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    pub fn hour_counts(&self) -> Result<BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, u64> =
            HOUR_STATES.iter().map(|s| (s.to_string(), 0)).collect();
        let mut st = self
            .conn
            .prepare("SELECT state, count(*) FROM agent_hours GROUP BY state")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (s, n) = row.map_err(|e| self.err(e))?;
            out.insert(s, n as u64);
        }
        Ok(out)
    }

    pub fn oldest_unreported(&self, now: DateTime<Utc>) -> Result<Option<Unreported>> {
        let row: Option<(String, String, String)> = self
            .conn
            .query_row(
                &format!(
                    "SELECT instance_id, hour, state FROM agent_hours WHERE state IN {UNREPORTED}
                     ORDER BY hour LIMIT 1"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(row.map(|(instance_id, hour, state)| {
            let end = parse_api(&hour).unwrap_or(now) + Duration::hours(1);
            Unreported {
                instance_id,
                hour,
                state,
                age: (now - end).max(Duration::zero()),
            }
        }))
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM agent_meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_meta(&self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => self.conn.execute(
                "INSERT INTO agent_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, v],
            ),
            None => self
                .conn
                .execute("DELETE FROM agent_meta WHERE key = ?1", [key]),
        }
        .map(|_| ())
        .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn state() -> (tempfile::TempDir, AgentState) {
        let dir = tempfile::tempdir().unwrap();
        let s = AgentState::open(&dir.path().join("a.sqlite")).unwrap();
        (dir, s)
    }

    #[test]
    fn aggregates_close_when_due_and_late_events_are_refused() {
        let (_d, mut s) = state();
        let now = t("20260110T120000Z");
        let batch = [
            ev("a", "i-1", "20260110T100500Z", "2"),
            ev("b", "i-1", "20260110T105900Z", "1.5"),
            ev("c", "i-1", "20260110T103000Z", "7"),
            ev("d", "i-1", "20260110T113000Z", "4"),
        ];
        assert_eq!(s.ingest(&batch, "x", now).unwrap().unwrap().new, 4);
        // Again: duplicates only.
        let again = s.ingest(&batch[..2], "x", now).unwrap().unwrap();
        assert_eq!((again.new, again.duplicate), (0, 2));
        // Same id, other content: refused, nothing taken.
        let clash = s
            .ingest(&[ev("a", "i-1", "20260110T100500Z", "3")], "y", now)
            .unwrap()
            .unwrap_err();
        assert!(clash[0].message.contains("another event"));
        // 11:00-12:00 is not due before 12:05 (grace 5 min).
        let n = s
            .close_due(now, Duration::minutes(5), Aggregate::Sum, false)
            .unwrap();
        assert_eq!(n, 1);
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
            .ingest(&[ev("e", "i-1", "20260110T104000Z", "1")], "z", now)
            .unwrap()
            .unwrap_err();
        assert!(late[0].late, "{late:?}");
        let later = t("20260110T120600Z");
        assert_eq!(
            s.close_due(later, Duration::minutes(5), Aggregate::Last, false)
                .unwrap(),
            1
        );
        assert_eq!(s.to_journal().unwrap()[1].usage_value, "4");
    }

    #[test]
    fn max_last_and_heartbeat_zero() {
        let (_d, mut s) = state();
        let now = t("20260110T120000Z");
        s.ingest(
            &[
                ev("a", "i-1", "20260110T080500Z", "2"),
                ev("b", "i-1", "20260110T085900Z", "1"),
                ev("c", "i-1", "20260110T083000Z", "7"),
            ],
            "x",
            now,
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
        s.ingest(&[ev("d", "i-1", "20260110T113000Z", "1")], "x", now)
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

    #[test]
    fn refuses_a_database_of_something_else() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("other.sqlite");
        Connection::open(&p)
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
