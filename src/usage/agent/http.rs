//! The agent's listener: `POST /events` (JSON lines), `GET /healthz`, `GET /metrics`
//! (Prometheus text format 0.0.4), served by `crate::server`.

use super::state::{Refusal, RefusalKind, HOUR_STATES};
use super::{alarm, event, lock, Shared};
use crate::clock;
use crate::secret::Secret;
use crate::server::{Handler, Request, Response};
use crate::usage::journal::State;
use serde_json::json;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct AgentHandler {
    pub shared: Arc<Shared>,
    /// `Authorization: Bearer <token>` required on `POST /events` when set.
    pub token: Option<Secret>,
}

/// Compares without stopping at the first difference (the time says nothing of the token).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: u16, message: &str) -> Response {
    Response::json(status, json!({ "error": message }).to_string())
}

/// A body with refused lines: 400 when any line needs fixing (it breaks a rule or clashes
/// with another event), 409 when the lines are fine but their hours take no more (closed,
/// or full). Every refused line is named; nothing is taken.
fn refused_answer(text: &str, refused: Vec<Refusal>) -> Response {
    let count = |k: RefusalKind| refused.iter().filter(|r| r.kind == k).count();
    let (invalid, late, over) = (
        count(RefusalKind::Invalid),
        count(RefusalKind::Late),
        count(RefusalKind::OverLimit),
    );
    let status = if invalid > 0 { 400 } else { 409 };
    let kinds: Vec<String> = [
        (invalid, "invalid"),
        (late, "late"),
        (over, "over the hour's limit"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, k)| format!("{n} {k}"))
    .collect();
    let mut message = format!(
        "{} event(s) refused ({}), none taken",
        refused.len(),
        kinds.join(", ")
    );
    // A CSV file posted here (its header is no JSON object): where CSV goes instead.
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if invalid > 0 && !first.trim_start().starts_with('{') {
        message.push_str(
            ": POST /events takes JSON lines (one event object per line); CSV files go in the --spool directory",
        );
    }
    let lines: Vec<_> = refused
        .into_iter()
        .map(|r| {
            json!({
                "line": r.line,
                "message": r.message,
                "kind": r.kind.as_str(),
                "late": r.kind == RefusalKind::Late,
            })
        })
        .collect();
    Response::json(
        status,
        json!({ "error": message, "lines": lines }).to_string(),
    )
}

impl AgentHandler {
    fn events(&self, req: &Request) -> Response {
        if let Some(token) = &self.token {
            let given = req
                .header("authorization")
                .and_then(|h| h.strip_prefix("Bearer "))
                .unwrap_or("");
            if !same(given.trim().as_bytes(), token.expose().as_bytes()) {
                return error(
                    401,
                    "Authorization: a bearer token is required (the agent's --token-file or CSM_AGENT_TOKEN)",
                )
                .with_header("WWW-Authenticate", "Bearer");
            }
        }
        let Ok(text) = std::str::from_utf8(&req.body) else {
            return error(
                400,
                "body: not UTF-8 (JSON lines, one event object per line)",
            );
        };
        let now = clock::now();
        let (events, bad) = event::parse_document(text, false, now);
        let c = &self.shared.counters;
        let agg = self.shared.aggregate;
        let outcome = lock(&self.shared.state).admit(&events, bad, "http", now, agg);
        match outcome {
            Ok(Ok(n)) => {
                c.http_new.fetch_add(n.new, Ordering::Relaxed);
                c.http_duplicate.fetch_add(n.duplicate, Ordering::Relaxed);
                Response::json(
                    200,
                    json!({ "accepted": n.new, "duplicate": n.duplicate }).to_string(),
                )
            }
            Ok(Err(refused)) => {
                c.http_refused
                    .fetch_add(refused.len() as u64, Ordering::Relaxed);
                refused_answer(text, refused)
            }
            Err(e) => error(503, &e.to_string()),
        }
    }
    fn healthz(&self) -> Response {
        let now = clock::now();
        let st = lock(&self.shared.state);
        let red = alarm(&st, now, self.shared.alarm_after);
        let oldest = st.oldest_unreported(now).ok().flatten();
        drop(st);
        let problem = lock(&self.shared.last_problem).clone();
        let (status, colour, reason) = match red {
            Ok(Some(reason)) => (503, "red", reason),
            Ok(None) => (
                200,
                "green",
                "every closed hour is reported or within --alarm-after".to_string(),
            ),
            Err(e) => (503, "red", e.to_string()),
        };
        Response::json(
            status,
            json!({
                "status": colour,
                "reason": reason,
                "oldest_unreported_hour": oldest.as_ref().map(|u| json!({
                    "instance_id": u.instance_id, "hour": u.hour, "state": u.state,
                    "age_seconds": u.age.num_seconds()})),
                "last_problem": problem,
            })
            .to_string(),
        )
    }

    fn metrics(&self) -> Response {
        let now = clock::now();
        let st = lock(&self.shared.state);
        let hours = st.hour_counts().unwrap_or_default();
        let oldest = st.oldest_unreported(now).ok().flatten();
        let last_push = st.meta("last_push").ok().flatten();
        let red = matches!(alarm(&st, now, self.shared.alarm_after), Ok(Some(_)));
        drop(st);
        let records = lock(&self.shared.records).clone();
        let c = &self.shared.counters;
        let load = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
        let mut out = String::new();
        family(
            &mut out,
            "csm_agent_events_total",
            "counter",
            "Events received since the agent started, by source and outcome.",
            &[
                (
                    "source=\"spool\",outcome=\"new\"".into(),
                    load(&c.spool_new),
                ),
                (
                    "source=\"spool\",outcome=\"duplicate\"".into(),
                    load(&c.spool_duplicate),
                ),
                (
                    "source=\"spool\",outcome=\"refused\"".into(),
                    load(&c.spool_refused),
                ),
                ("source=\"http\",outcome=\"new\"".into(), load(&c.http_new)),
                (
                    "source=\"http\",outcome=\"duplicate\"".into(),
                    load(&c.http_duplicate),
                ),
                (
                    "source=\"http\",outcome=\"refused\"".into(),
                    load(&c.http_refused),
                ),
            ],
        );
        family(
            &mut out,
            "csm_agent_spool_files_total",
            "counter",
            "Spool files taken in (done) or refused (failed) since the agent started.",
            &[
                ("outcome=\"done\"".into(), load(&c.files_done)),
                ("outcome=\"failed\"".into(), load(&c.files_failed)),
            ],
        );
        let by_state: Vec<(String, u64)> = HOUR_STATES
            .iter()
            .map(|s| {
                (
                    format!("state=\"{s}\""),
                    hours.get(*s).copied().unwrap_or(0),
                )
            })
            .collect();
        family(
            &mut out,
            "csm_agent_hours",
            "gauge",
            "Instance-hours in the agent state by state: open, closed, journaled, reported, rejected, zero, failed.",
            &by_state,
        );
        let recs: Vec<(String, u64)> = State::ALL
            .iter()
            .map(|s| {
                (
                    format!("state=\"{}\"", s.as_str()),
                    records.get(s).copied().unwrap_or(0),
                )
            })
            .collect();
        family(
            &mut out,
            "csm_agent_records",
            "gauge",
            "Usage records in the journal by state, as of the agent's last cycle.",
            &recs,
        );
        let age = oldest.map_or(0, |u| u.age.num_seconds().max(0) as u64);
        family(
            &mut out,
            "csm_agent_oldest_unreported_hour_age_seconds",
            "gauge",
            "Seconds since the end of the oldest closed hour not reported yet (0: none).",
            &[(String::new(), age)],
        );
        let ts = last_push
            .and_then(|t| crate::usage::record::parse_api_time(&t))
            .map_or(0, |t| t.timestamp().max(0) as u64);
        family(
            &mut out,
            "csm_agent_last_push_timestamp_seconds",
            "gauge",
            "Unix time of the last send in which the marketplace accepted records (0: never).",
            &[(String::new(), ts)],
        );
        family(
            &mut out,
            "csm_agent_alarm",
            "gauge",
            "1 while the alarm is on (a closed hour unreported for longer than --alarm-after, or hours failed within it).",
            &[(String::new(), u64::from(red))],
        );
        let mut r = Response::text(200, out);
        r.headers = vec![(
            "Content-Type".into(),
            "text/plain; version=0.0.4; charset=utf-8".into(),
        )];
        r
    }
}

/// One metric family: HELP, TYPE, then its samples (`labels` without braces; empty for none).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

impl Handler for AgentHandler {
    fn handle(&self, req: Request) -> Response {
        match (req.method.as_str(), req.path()) {
            ("POST", "/events") => self.events(&req),
            ("GET", "/healthz") => self.healthz(),
            ("GET", "/metrics") => self.metrics(),
            (_, "/events" | "/healthz" | "/metrics") => error(
                405,
                "method not allowed (POST /events, GET /healthz, GET /metrics)",
            ),
            _ => error(404, "not found (POST /events, GET /healthz, GET /metrics)"),
        }
    }
}
