//! `csm usage agent`: glue only. The rules live in `crate::usage::agent`; records are sent by
//! `crate::usage::upload::send`, configured as `usage upload` configures it.

use crate::cli::GlobalArgs;
use crate::commands::usage::{announce, send_config, ConnArgs, JournalArg};
use crate::duration::Bare;
use crate::error::{CsmError, Exit, Result};
use crate::interrupt::Interrupt;
use crate::secret::Secret;
use crate::usage::agent::on_alarm::AlarmRuns;
use crate::usage::agent::state::{self, AgentState, Aggregate, FailedHour};
use crate::usage::agent::{self, api, lock, spool, Counters, Shared};
use crate::usage::journal::{Journal, Scope};
use crate::usage::upload::{self, SendConfig, SendReport};
use crate::{clock, output, server};
use clap::Args;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bearer token for `POST /events` when no `--token-file` is given.
pub const TOKEN_ENV: &str = "CSM_AGENT_TOKEN";

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Directory the seller's services drop event files into (.csv with a header, or
    /// .jsonl); each is taken in whole and moved to done/, or to failed/ with NAME.error.
    /// It must exist (the agent makes only done/ and failed/ in it).
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Address of POST /events, /healthz and /metrics (not with --once: it has no
    /// listener). Another address than loopback needs a token.
    #[arg(
        long,
        default_value = "127.0.0.1:9760",
        value_name = "ADDR",
        conflicts_with = "once"
    )]
    pub listen: String,
    /// File holding the bearer token POST /events must carry (else CSM_AGENT_TOKEN; else
    /// none, on loopback only). Not with --once.
    #[arg(long, value_name = "FILE", conflicts_with = "once")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub journal: JournalArg,
    /// The agent's own state (events seen, hours) in this SQLite file, for a single agent.
    /// Default: <journal>.agent.sqlite; with a PostgreSQL journal, the journal's database,
    /// shared by every agent of that journal.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// How an hour's events become its usage_value: their sum, or for a product that bills
    /// a level, the highest (max) or the latest (last).
    #[arg(long, value_enum, default_value = "sum")]
    pub aggregate: Aggregate,
    /// How long after its end an hour stays open for events still on their way: 5m, 90s;
    /// a bare number is seconds, 0s to 2h. Above 15m records miss the 0-15 minute window.
    #[arg(long, default_value = "5m", value_name = "DURATION",
          value_parser = crate::duration::flag(Bare::Secs, Duration::ZERO, Duration::from_secs(7200)))]
    pub grace: Duration,
    /// Close the hours without events of every instance seen in the last 21 days as `zero`
    /// (nothing is sent: the marketplace takes usage_value > 0 only).
    #[arg(long)]
    pub heartbeat_zero: bool,
    /// Stall alarm: /healthz turns red when a closed hour is still unreported this long
    /// after its end (and stays red this long after an hour failed): 45m, 2h; a bare number
    /// is seconds, 1m to 24h.
    #[arg(long, default_value = "45m", value_name = "DURATION",
          value_parser = crate::duration::flag(Bare::Secs, Duration::from_secs(60), Duration::from_secs(86_400)))]
    pub alarm_after: Duration,
    /// Shell command run (sh -c) once each time the alarm goes on, and when hours fail;
    /// CSM_ALARM_REASON holds why (no other CSM_* variable is passed on: they may hold
    /// keys). When the agent stops, one still running gets 5 s, then it is stopped.
    #[arg(long, value_name = "CMD")]
    pub on_alarm: Option<String>,
    /// How often the agent takes in the spool, closes due hours and sends: 30s, 1m; a bare
    /// number is seconds, 1s to 1h. Not with --once.
    #[arg(long, default_value = "30s", value_name = "DURATION", conflicts_with = "once",
          value_parser = crate::duration::flag(Bare::Secs, Duration::from_secs(1), Duration::from_secs(3600)))]
    pub every: Duration,
    /// One cycle, then exit: take in the spool, close every hour that is due, send (cron).
    #[arg(long)]
    pub once: bool,
}

/// What one cycle did.
#[derive(Debug, Default)]
struct Cycle {
    spool: spool::SpoolReport,
    hours_closed: u64,
    journaled: agent::Journaled,
    /// Hours that failed in this cycle, when closing (past the 21 days) or journaling.
    failed: Vec<FailedHour>,
    to_send: u64,
    sent: Option<SendReport>,
    reported: u64,
    /// The journal was busy (an upload or replay runs): nothing journaled or sent this time.
    busy: Option<String>,
    /// What kept records from going out: the journal busy, the marketplace unreachable or
    /// refusing.
    problem: Option<String>,
    alarm: Option<String>,
    /// The alarm went on in this cycle (said once per episode).
    alarm_started: bool,
}

impl Cycle {
    fn idle(&self) -> bool {
        self.spool.done.is_empty()
            && self.spool.failed.is_empty()
            && self.hours_closed == 0
            && self.journaled.records == 0
            && self.failed.is_empty()
            && self.to_send == 0
            && self.reported == 0
            && self.busy.is_none()
    }

    fn line(&self) -> String {
        let mut parts = Vec::new();
        if !self.spool.done.is_empty() || !self.spool.failed.is_empty() {
            parts.push(format!(
                "spool {} done, {} failed ({} new events, {} duplicate)",
                self.spool.done.len(),
                self.spool.failed.len(),
                self.spool.new,
                self.spool.duplicate
            ));
        }
        parts.push(format!("{} hours closed", self.hours_closed));
        parts.push(format!("{} records journaled", self.journaled.records));
        if !self.failed.is_empty() {
            parts.push(format!("{} hours failed", self.failed.len()));
        }
        if let Some(s) = &self.sent {
            // What was due, and what came of it: the rest had no answer (never reached, or
            // reached without a definite one) and waits in the journal.
            let open = self
                .to_send
                .saturating_sub(s.accepted + s.rejected + s.retry_later);
            parts.push(format!(
                "{} to send: {} accepted, {} rejected, {} retry later, {open} left in the journal",
                self.to_send, s.accepted, s.rejected, s.retry_later
            ));
        }
        parts.push(format!("{} hours reported", self.reported));
        if let Some(p) = &self.problem {
            parts.push(p.clone());
        }
        parts.join("; ")
    }
}

fn read_token(a: &AgentArgs) -> Result<Option<Secret>> {
    if let Some(p) = &a.token_file {
        return crate::secret::read_key_file(p, "--token-file").map(Some);
    }
    match std::env::var(TOKEN_ENV) {
        Ok(v) => crate::secret::from_env_value(&v, TOKEN_ENV).map(Some),
        Err(_) => Ok(None),
    }
}

pub fn run(g: &GlobalArgs, a: AgentArgs) -> Result<Exit> {
    let token = read_token(&a)?;
    if !a.once && token.is_none() && !crate::server::is_loopback_listen(&a.listen) {
        return Err(CsmError::usage(format!(
            "--listen {}: not a loopback address, and POST /events has no token (give --token-file FILE or {TOKEN_ENV})",
            a.listen
        )));
    }
    if a.grace > Duration::from_secs(15 * 60) && !g.quiet {
        eprintln!(
            "csm: warning: --grace {}: hours close after minute 15 of the next hour, so their records miss the 0-15 minute reporting window",
            crate::duration::show(a.grace)
        );
    }
    if let Some(dir) = &a.spool {
        spool::check_dir(dir)?;
    }
    let journal_path = a.journal.path()?;
    // The key, the destination and production's confirmation, exactly as `usage upload`.
    let cfg = send_config(g, &a.conn)?;
    // Opened once and kept across cycles; opened again after a cycle that failed.
    let mut journal = None;
    let state = match &a.state {
        // A URL (and its password) is no file name.
        Some(p) if p.to_str().is_some_and(crate::usage::journal::pg::is_url) => {
            return Err(CsmError::usage(
                "--state: a PostgreSQL URL; --state names an SQLite file (without it, the state of a PostgreSQL journal is kept in the journal's database)",
            ))
        }
        Some(p) => AgentState::open(p)?,
        // Shared by every agent of the journal. The journal first: its tables make the
        // database one the state may join.
        None if crate::usage::journal::is_postgres(&journal_path) => {
            journal = Some(Journal::open(&journal_path)?);
            AgentState::open_shared(journal_path.to_str().unwrap_or_default())?
        }
        None => AgentState::open(&state::default_path(&journal_path))?,
    };
    let state_place = state.place.clone();
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        counters: Counters::default(),
        records: Mutex::new(BTreeMap::new()),
        last_problem: Mutex::new(None),
        alarm_after: chrono::Duration::from_std(a.alarm_after)
            .unwrap_or(chrono::Duration::minutes(45)),
        aggregate: a.aggregate,
    });
    let stop = Interrupt::install();
    let mut alarms = AlarmRuns::default();
    if a.once {
        announce(g, &cfg.url, false);
        let c = cycle(
            &a,
            &shared,
            &journal_path,
            &mut journal,
            &cfg,
            &stop,
            &mut alarms,
        );
        // The command the cycle started has run its course before the report's exit code.
        alarms.finish(&stop);
        return once_report(g, &a, &shared, &cfg, &c?, &stop);
    }
    let handler = Arc::new(agent::http::AgentHandler {
        shared: Arc::clone(&shared),
        token,
    });
    let handle = server::serve(&a.listen, handler, server::Config::default())?;
    // Scripts and tests read this line to learn the port when listening on port 0; with
    // --json, stdout is JSON lines: this one, then one per cycle that did something.
    let line =
        |v: serde_json::Value| crate::say!("{}", serde_json::to_string(&v).unwrap_or_default());
    if g.json {
        line(json!({"listening": format!("http://{}", handle.addr), "destination": cfg.url}));
    } else {
        crate::say!("csm usage agent listening on http://{}", handle.addr);
    }
    announce(g, &cfg.url, false);
    loop {
        let c = cycle(
            &a,
            &shared,
            &journal_path,
            &mut journal,
            &cfg,
            &stop,
            &mut alarms,
        );
        alarms.reap();
        match c {
            // Also an alarm that went on while nothing else happened: a log collector
            // reading stdout must see it.
            Ok(c) if (!c.idle() || c.alarm_started) && g.json => {
                let hours = lock(&shared.state).hour_counts().unwrap_or_default();
                let mut v = cycle_json(&a, &shared, &cfg, &c, &hours);
                v["at"] = json!(api(clock::now()));
                line(v);
            }
            Ok(c) if !c.idle() && !g.quiet => {
                eprintln!("csm agent: {} {}", api(clock::now()), c.line());
            }
            Ok(_) => {}
            // A cycle that fails (the disk, the journal) is tried again; /healthz says why.
            Err(e) => {
                if g.json {
                    line(json!({"at": api(clock::now()), "error": e.to_string()}));
                } else {
                    eprintln!("csm agent: {e}");
                }
                *lock(&shared.last_problem) = Some(e.to_string());
                journal = None;
            }
        }
        let until = Instant::now() + a.every;
        while Instant::now() < until && !stop.asked() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if stop.asked() {
            break;
        }
    }
    handle.shutdown();
    alarms.finish(&stop);
    if !g.quiet {
        eprintln!("csm agent: stopped; every event taken in is in {state_place}");
    }
    Ok(Exit::Ok)
}

fn cycle(
    a: &AgentArgs,
    shared: &Shared,
    journal_path: &std::path::Path,
    journal: &mut Option<Journal>,
    cfg: &SendConfig,
    stop: &Interrupt,
    alarms: &mut AlarmRuns,
) -> Result<Cycle> {
    let now = clock::now();
    let mut c = Cycle::default();
    lock(&shared.state).reconnect_if_lost()?;
    if let Some(dir) = &a.spool {
        c.spool = spool::take_in(dir, shared, now)?;
    }
    let grace = chrono::Duration::from_std(a.grace).unwrap_or(chrono::Duration::minutes(5));
    let closed = lock(&shared.state).close_due(now, grace, a.aggregate, a.heartbeat_zero)?;
    c.hours_closed = closed.hours;
    let mut failed = note_failed(a, shared, &mut c, closed.failed, now)?;
    let j = match journal {
        Some(j) => j,
        None => journal.insert(Journal::open(journal_path)?),
    };
    let mut problem = None;
    match j.lock_for_sending() {
        Err(e) => {
            c.busy = Some(e.to_string());
            problem = Some(e.to_string());
        }
        Ok(_lock) => {
            c.journaled = agent::journal_closed(&shared.state, j, now)?;
            let more = std::mem::take(&mut c.journaled.failed);
            failed = note_failed(a, shared, &mut c, more, now)?.or(failed);
            j.recover_in_flight()?;
            let scope = Scope::Unfinished {
                include_rejected: false,
            };
            c.to_send = j.count_scope(scope)?;
            if c.to_send > 0 && !stop.asked() {
                let rep = upload::send(j, scope, cfg, stop, &mut |_| {})?;
                if rep.accepted > 0 {
                    lock(&shared.state).set_meta("last_push", Some(&api(clock::now())))?;
                }
                if let Some((what, fix)) = &rep.refused {
                    problem = Some(format!("{} ({what}); {}", fix.lead(), fix.hint()));
                } else if let Some(u) = &rep.unreachable {
                    problem = Some(u.clone());
                }
                c.sent = Some(rep);
            }
            c.reported = agent::reconcile(&shared.state, j)?;
        }
    }
    *lock(&shared.records) = j.counts()?;
    *lock(&shared.last_problem) = problem.clone();
    c.problem = problem;
    let now = clock::now();
    let st = lock(&shared.state);
    c.alarm = agent::alarm(&st, now, shared.alarm_after)?;
    match &c.alarm {
        Some(reason) => {
            // Once per episode, also across `--once` runs and of all the agents sharing
            // the state: the state remembers it. Hours failing are told even within an
            // episode, by the one agent that failed them.
            let started = st.claim_meta("alarm_since", &api(now))?;
            if started || failed.is_some() {
                c.alarm_started = started;
                let reason = if started {
                    reason
                } else {
                    failed.as_ref().unwrap_or(reason)
                };
                eprintln!("csm agent: ALARM: {reason}");
                if let Some(cmd) = &a.on_alarm {
                    alarms.start(cmd, reason);
                }
            }
        }
        None => st.set_meta("alarm_since", None)?,
    }
    Ok(c)
}

/// Hours that just failed: usage that will never be billed. Logged at once, --quiet or not
/// (`--once` reports them), and the alarm raised in the state before anything else of the
/// cycle can fail, so that a cycle cut short loses neither. Returns the alarm's reason.
fn note_failed(
    a: &AgentArgs,
    shared: &Shared,
    c: &mut Cycle,
    failed: Vec<FailedHour>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>> {
    if failed.is_empty() {
        return Ok(None);
    }
    if !a.once {
        for f in &failed {
            eprintln!("csm agent: {} {f}", api(now));
        }
    }
    c.failed.extend(failed);
    agent::raise_failed(&lock(&shared.state), &c.failed, now, shared.alarm_after)
}

/// One cycle as `--json` reports it: the object of `--once`, and a line each cycle when
/// running.
fn cycle_json(
    a: &AgentArgs,
    shared: &Shared,
    cfg: &SendConfig,
    c: &Cycle,
    hours: &std::collections::BTreeMap<String, u64>,
) -> serde_json::Value {
    let records = lock(&shared.records).clone();
    let sent = c.sent.as_ref();
    json!({
        "destination": cfg.url,
        "spool": a.spool.as_ref().map(|_| json!({
            "done": c.spool.done,
            "failed": c.spool.failed.iter().map(|(f, e)| json!({"file": f, "error": e})).collect::<Vec<_>>(),
            "events_new": c.spool.new,
            "events_duplicate": c.spool.duplicate,
        })),
        "hours_closed": c.hours_closed,
        "records_journaled": c.journaled.records,
        "failed_hours": c.failed.iter().map(|f| json!({
            "instance_id": f.instance_id, "hour": f.hour, "metering_sn": f.metering_sn, "error": f.error,
        })).collect::<Vec<_>>(),
        "to_send": c.to_send,
        "accepted": sent.map_or(0, |s| s.accepted),
        "rejected": sent.map_or(0, |s| s.rejected),
        "retry_later": sent.map_or(0, |s| s.retry_later),
        "hours_reported": c.reported,
        "hours": hours,
        "records": records,
        "journal_busy": c.busy,
        "problem": c.problem,
        "alarm": c.alarm,
    })
}

fn once_report(
    g: &GlobalArgs,
    a: &AgentArgs,
    shared: &Shared,
    cfg: &SendConfig,
    c: &Cycle,
    stop: &Interrupt,
) -> Result<Exit> {
    let hours = lock(&shared.state).hour_counts()?;
    let sent = c.sent.as_ref();
    if g.json {
        output::print_json(&cycle_json(a, shared, cfg, c, &hours));
    } else if !g.quiet {
        for (f, e) in &c.spool.failed {
            crate::say!("spool: {f} moved to failed/: {e}");
        }
        for f in &c.failed {
            crate::say!("{f}");
        }
        crate::say!("{}", c.line());
        crate::say!(
            "hours: {}",
            state::HOUR_STATES
                .iter()
                .map(|s| format!("{s} {}", hours.get(*s).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(r) = &c.alarm {
            crate::say!("ALARM: {r}");
        }
    }
    if let Some(s) = sent {
        if let Some((what, fix)) = &s.refused {
            return Err(CsmError::Config(format!(
                "{} ({what}); records stay in the journal for the next run",
                fix.lead()
            ))
            .with_hint(fix.hint()));
        }
        if let Some(u) = &s.unreachable {
            return Err(CsmError::Network(format!(
                "{u}; records wait in the journal for the next run"
            )));
        }
    }
    if stop.asked() {
        return Ok(Exit::Interrupted);
    }
    let unfinished = sent.is_some_and(|s| s.rejected > 0 || s.retry_later > 0);
    // The stall alarm too: a cron job that checks the exit code must see it.
    if !c.spool.failed.is_empty()
        || !c.failed.is_empty()
        || unfinished
        || c.busy.is_some()
        || c.alarm.is_some()
    {
        return Ok(Exit::Partial);
    }
    Ok(Exit::Ok)
}
