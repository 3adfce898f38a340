//! `csm usage agent`: raw usage events in (a spool directory, `POST /events`), one usage
//! record per instance and closed clock hour out, through the usage journal and the same
//! send path as `usage upload`. The rules are in docs/usage-agent.md.
//!
//! The agent keeps its own state (events seen, hours) in [`state::AgentState`]; the records
//! it produces go into the journal through its public import, so signing, batching, retries
//! and exactly-once sending are the journal's, not a second copy.

pub mod event;
pub mod http;
pub mod on_alarm;
pub mod spool;
pub mod state;

use crate::error::Result;
use crate::usage::journal::{Journal, State};
use crate::usage::reader::{Format, RecordReader};
use crate::usage::record::{self, Billing};
use chrono::{DateTime, Duration, Utc};
use state::{AgentState, Aggregate, FailedHour, HourRecord};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// What the agent counts while it runs (Prometheus counters: they start at 0 with the process).
#[derive(Debug, Default)]
pub struct Counters {
    pub spool_new: AtomicU64,
    pub spool_duplicate: AtomicU64,
    pub spool_refused: AtomicU64,
    pub http_new: AtomicU64,
    pub http_duplicate: AtomicU64,
    pub http_refused: AtomicU64,
    pub files_done: AtomicU64,
    pub files_failed: AtomicU64,
}

/// What the health endpoints read: the state, the counters, and what the last cycle learnt
/// from the journal.
pub struct Shared {
    pub state: Mutex<AgentState>,
    pub counters: Counters,
    /// Journal records by state, as of the last cycle.
    pub records: Mutex<BTreeMap<State, u64>>,
    /// The last cycle's trouble (unreachable, refused, journal busy), shown by `/healthz`.
    pub last_problem: Mutex<Option<String>>,
    pub alarm_after: Duration,
    /// `--aggregate`: with `sum`, intake refuses what would take an hour past one record.
    pub aggregate: Aggregate,
}

/// The state's key for the alarm of failed hours: `<until> <reason>`.
const FAILED_ALARM: &str = "failed_alarm";

/// The alarm: hours that failed within the last `alarm_after` (their usage is lost: nothing
/// to wait for), and the stall alarm, the oldest closed hour not reported yet when it is
/// older than `alarm_after` (counted from the end of the hour). Both, when both are on.
pub fn alarm(
    state: &AgentState,
    now: DateTime<Utc>,
    alarm_after: Duration,
) -> Result<Option<String>> {
    let failed = state.meta(FAILED_ALARM)?.and_then(|v| {
        let (until, reason) = v.split_once(' ')?;
        (record::parse_api_time(until)? > now).then(|| reason.to_string())
    });
    let stall = state
        .oldest_unreported(now)?
        .filter(|u| u.age > alarm_after)
        .map(|u| {
            format!(
                "the hour {} of instance {} ended {} min ago and is not reported ({}); alarm after {} min",
                u.hour,
                u.instance_id,
                u.age.num_minutes(),
                u.state,
                alarm_after.num_minutes()
            )
        });
    Ok(match (failed, stall) {
        (Some(f), Some(s)) => Some(format!("{f}; and {s}")),
        (f, s) => f.or(s),
    })
}

/// Raises the alarm for hours that just failed, held for `alarm_after` from `now` (in the
/// state, so that `/healthz`, `/metrics` and the other agents of a shared state see it).
/// Returns its reason.
pub fn raise_failed(
    state: &AgentState,
    failed: &[FailedHour],
    now: DateTime<Utc>,
    alarm_after: Duration,
) -> Result<Option<String>> {
    let Some(first) = failed.first() else {
        return Ok(None);
    };
    let more = match failed.len() {
        1 => String::new(),
        n => format!(" (and {} more hours)", n - 1),
    };
    let reason = format!(
        "the hour {} of instance {} failed at {} and is not billed{more}: {}",
        first.hour,
        record::show(&first.instance_id),
        api(now),
        first.error
    );
    // One line: the reason goes into a log line and an environment variable.
    let reason = reason.replace(['\n', '\r'], " ");
    state.set_meta(
        FAILED_ALARM,
        Some(&format!("{} {reason}", api(now + alarm_after))),
    )?;
    Ok(Some(reason))
}

/// Outcome of putting closed hours into the journal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Journaled {
    pub records: u64,
    /// Hours the journal refused, with why (they become `failed`).
    pub failed: Vec<FailedHour>,
}

fn jsonl(recs: &[HourRecord]) -> String {
    let mut out = String::new();
    for r in recs {
        let mut v = serde_json::json!({
            "instance_id": r.instance_id,
            "begin_time": r.begin_time,
            "end_time": r.end_time,
            "usage_value": r.usage_value,
            "metering_sn": r.metering_sn,
            "record_time": r.record_time,
        });
        if let Some(p) = &r.relate_pkg_instance {
            v["relate_pkg_instance"] = serde_json::json!(p);
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// Puts every closed hour into the journal (one import; a record the journal refuses is
/// taken out, its hour marked `failed`, and the rest imported again). A record already there
/// (a crash after the import, before the state said so) is counted by the journal as the
/// same record again, never twice.
pub fn journal_closed(
    state: &Mutex<AgentState>,
    journal: &mut Journal,
    now: DateTime<Utc>,
) -> Result<Journaled> {
    let mut recs = lock(state).to_journal()?;
    let mut out = Journaled::default();
    while !recs.is_empty() {
        let text = jsonl(&recs);
        let mut reader = RecordReader::new(std::io::BufReader::new(text.as_bytes()), Format::Jsonl);
        let rep = journal.import(&mut reader, "csm usage agent", now, Billing::Hourly, true)?;
        if rep.error_count == 0 {
            let sns: Vec<String> = recs.iter().map(|r| r.metering_sn.clone()).collect();
            lock(state).set_state(&sns, &["closed"], "journaled", None)?;
            out.records += recs.len() as u64;
            break;
        }
        let mut st = lock(state);
        let mut bad = HashSet::new();
        for e in &rep.errors {
            // Lines count from 1; an error of the whole file (line 0) names no record.
            let Some(i) = (e.line as usize).checked_sub(1) else {
                continue;
            };
            if let Some(r) = recs.get(i) {
                st.set_state(
                    std::slice::from_ref(&r.metering_sn),
                    &["closed"],
                    "failed",
                    Some(&e.message),
                )?;
                out.failed.push(FailedHour {
                    instance_id: r.instance_id.clone(),
                    hour: r.begin_time.clone(),
                    metering_sn: Some(r.metering_sn.clone()),
                    error: e.message.clone(),
                });
                bad.insert(i);
            }
        }
        if bad.is_empty() {
            // Nothing to take out: do not loop.
            break;
        }
        recs = recs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !bad.contains(i))
            .map(|(_, r)| r)
            .collect();
    }
    Ok(out)
}

/// Learns from the journal which journaled hours the marketplace accepted or rejected.
/// Returns the hours newly reported.
pub fn reconcile(state: &Mutex<AgentState>, journal: &Journal) -> Result<u64> {
    let awaiting = lock(state).awaiting()?;
    if awaiting.is_empty() {
        return Ok(0);
    }
    let states = journal.states_of(&awaiting)?;
    let (mut reported, mut rejected) = (Vec::new(), Vec::new());
    for sn in awaiting {
        match states.get(&sn) {
            // Not decided yet (this host or another is sending it).
            Some(State::Pending | State::Sent) => {}
            // Refused: the hour is not billed until someone fixes it.
            Some(State::Rejected) => rejected.push(sn),
            // Settled: accepted, or abandoned by a person with `usage resolve` (billed under
            // a fixed record, or decided not to be): the alarm has nothing left to ask for.
            Some(State::Accepted | State::Abandoned) | None => reported.push(sn),
        }
    }
    let mut st = lock(state);
    st.set_state(&rejected, &["journaled"], "rejected", None)?;
    st.set_state(&reported, &["journaled", "rejected"], "reported", None)?;
    Ok(reported.len() as u64)
}

/// The state's lock; a handler that panicked while holding it left nothing half-done (every
/// change is a transaction), so its poison is ignored.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The API form of a time, for logs and state.
pub fn api(t: DateTime<Utc>) -> String {
    record::format_api_time(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::agent::event::{validate, RawEvent};
    use crate::usage::agent::state::Aggregate;

    /// A journal and its agent state: SQLite files, and a PostgreSQL journal with the state
    /// in its database when `CSM_TEST_POSTGRES` names a server.
    fn stores() -> Vec<(tempfile::TempDir, Mutex<AgentState>, Journal)> {
        let dir = tempfile::tempdir().unwrap();
        let state = Mutex::new(AgentState::open(&dir.path().join("a.sqlite")).unwrap());
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let mut all = vec![(dir, state, j)];
        if let Some(url) = crate::usage::journal::pg::test_database("agent unit tests") {
            let j = Journal::open(std::path::Path::new(&url)).unwrap();
            let state = Mutex::new(AgentState::open_shared(&url).unwrap());
            all.push((tempfile::tempdir().unwrap(), state, j));
        }
        all
    }

    #[test]
    fn a_crash_between_the_import_and_the_state_journals_each_hour_once() {
        let now = record::parse_time("now", "20260110T123000Z").unwrap();
        for (_dir, state, mut j) in stores() {
            let raw = RawEvent {
                instance_id: Some("i-1".into()),
                time: Some("20260110T101500Z".into()),
                value: Some("2".into()),
                ..Default::default()
            };
            let e = validate(&raw, now).unwrap();
            lock(&state)
                .ingest(&[(1, e)], "t", now, Aggregate::Sum)
                .unwrap()
                .unwrap();
            lock(&state)
                .close_due(now, Duration::minutes(5), Aggregate::Sum, false)
                .unwrap();
            let first = journal_closed(&state, &mut j, now).unwrap();
            assert_eq!((first.records, first.failed.len()), (1, 0));
            // As if the process died after the journal's commit, before the state's.
            let sns = lock(&state).awaiting().unwrap();
            lock(&state)
                .set_state(&sns, &["journaled"], "closed", None)
                .unwrap();
            let later = now + Duration::minutes(1);
            let again = journal_closed(&state, &mut j, later).unwrap();
            assert_eq!((again.records, again.failed.len()), (1, 0));
            assert_eq!(j.counts().unwrap()[&State::Pending], 1);
            assert_eq!(lock(&state).hour_counts().unwrap()["journaled"], 1);
            // Nothing accepted yet: the hour still waits.
            assert_eq!(reconcile(&state, &j).unwrap(), 0);
        }
    }

    #[test]
    fn a_record_the_journal_refuses_fails_its_hour_only_and_raises_the_alarm() {
        let now = record::parse_time("now", "20260110T123000Z").unwrap();
        // The stall alarm of the hour journaled (10:00-11:00) goes on at 13:00.
        let alarm_after = Duration::hours(2);
        for (_dir, state, mut j) in stores() {
            let ev = |inst: &str, v: &str, id: &str| {
                let raw = RawEvent {
                    instance_id: Some(inst.into()),
                    time: Some("20260110T101500Z".into()),
                    value: Some(v.into()),
                    event_id: Some(id.into()),
                    ..Default::default()
                };
                (1, validate(&raw, now).unwrap())
            };
            // Two events at the largest value: their sum has 9 digits before the point.
            // Intake with `sum` refuses the second; taken in by an agent run with `max`
            // and closed by one with `sum`, the record is too large for the journal.
            let evs = [
                ev("big", "99999999", "a"),
                ev("big", "99999999", "b"),
                ev("ok", "1", "c"),
            ];
            let refused = lock(&state)
                .ingest(&evs, "t", now, Aggregate::Sum)
                .unwrap()
                .unwrap_err();
            assert_eq!(refused.len(), 1, "{refused:?}");
            lock(&state)
                .ingest(&evs, "t", now, Aggregate::Max)
                .unwrap()
                .unwrap();
            lock(&state)
                .close_due(now, Duration::minutes(5), Aggregate::Sum, false)
                .unwrap();
            assert_eq!(alarm(&lock(&state), now, alarm_after).unwrap(), None);
            let out = journal_closed(&state, &mut j, now).unwrap();
            assert_eq!(out.records, 1);
            assert_eq!(out.failed.len(), 1);
            let f = &out.failed[0];
            assert_eq!(
                (f.instance_id.as_str(), f.hour.as_str()),
                ("big", "20260110T100000Z")
            );
            assert!(f.error.contains("too large"), "{:?}", out.failed);
            let c = lock(&state).hour_counts().unwrap();
            assert_eq!((c["failed"], c["journaled"]), (1, 1));

            // The alarm is on at once, for --alarm-after, then off by itself.
            let st = lock(&state);
            let reason = raise_failed(&st, &out.failed, now, alarm_after)
                .unwrap()
                .unwrap();
            assert!(
                reason.starts_with("the hour 20260110T100000Z of instance \"big\" failed at 20260110T123000Z and is not billed: usage_value"),
                "{reason}"
            );
            assert_eq!(alarm(&st, now, alarm_after).unwrap(), Some(reason.clone()));
            let both = alarm(&st, now + Duration::minutes(40), alarm_after)
                .unwrap()
                .unwrap();
            assert!(
                both.starts_with(&format!(
                    "{reason}; and the hour 20260110T100000Z of instance ok ended 130 min ago"
                )),
                "{both}"
            );
            let stall = alarm(&st, now + alarm_after, alarm_after).unwrap().unwrap();
            assert!(
                stall.starts_with("the hour 20260110T100000Z of instance ok ended"),
                "{stall}"
            );
        }
    }

    /// (A failed hour told together with a stall: see
    /// `a_record_the_journal_refuses_fails_its_hour_only_and_raises_the_alarm`.)
    #[test]
    fn hours_failed_in_one_cycle_make_one_reason_and_the_alarm_ends_after_alarm_after() {
        let now = record::parse_time("now", "20260110T123000Z").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let st = AgentState::open(&dir.path().join("a.sqlite")).unwrap();
        let failed = [FailedHour {
            instance_id: "i-1".into(),
            hour: "20251201T100000Z".into(),
            metering_sn: None,
            error: "more than 21 days old".into(),
        }; 1];
        let two = [failed[0].clone(), failed[0].clone()];
        let r = raise_failed(&st, &two, now, Duration::minutes(5))
            .unwrap()
            .unwrap();
        assert!(
            r.contains("failed at 20260110T123000Z and is not billed (and 1 more hours): more"),
            "{r}"
        );
        assert_eq!(
            raise_failed(&st, &[], now, Duration::minutes(5)).unwrap(),
            None
        );
        assert_eq!(
            alarm(&st, now + Duration::minutes(5), Duration::minutes(5)).unwrap(),
            None
        );
    }
}
