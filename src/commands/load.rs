//! `csm load`: drive signed callbacks at an endpoint at a fixed arrival rate (glue only; the
//! engine is in `crate::load`).

use super::callback_args::{
    check_proxy, confirm_remote, endpoint_from, read_ca, resolve_protocol, unreachable,
    InterfaceKeyFiles,
};
use super::send;
use crate::catalog::gen::{self, Ctx};
use crate::catalog::{Callback, Protocol};
use crate::cli::GlobalArgs;
use crate::commands::sign::LicenseInnerArg;
use crate::config;
use crate::duration::Bare;
use crate::endpoint::request;
use crate::error::{CsmError, Exit, Result};
use crate::interrupt::Interrupt;
use crate::load::engine::{self, Plan, Work};
use crate::load::mix::Mix;
use crate::load::overrides::Overrides;
use crate::load::report::Report;
use crate::load::stats::interval_log;
use crate::load::threshold::{self, Metric, Threshold};
use crate::net::Settings;
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
// How much to send: one or both, so that a missing amount names both flags.
#[command(group(clap::ArgGroup::new("amount").args(["duration", "requests"]).required(true).multiple(true)))]
#[command(after_help = "Examples:
  csm load --endpoint http://127.0.0.1:8088/produce --key-file basic.key --rate 200 --duration 30s
  csm load --endpoint URL --key-file basic.key --rate 500 --requests 10000 \\
      --threshold 'p99<800ms' --threshold 'errors<0.1%' --threshold 'rate>=0.98'
  csm load --endpoint URL --key-file basic.key --rate max --duration 10s \\
      --activity newInstance:3,queryInstance
  csm --json load --endpoint URL --key-file basic.key --rate 100 --duration 1m > load.json

A request fails when it gets no reply, an HTTP status other than 200, a resultCode other than
000000, or a reply the marketplace would refuse (see `rejected`); `errors` in a threshold is
the share of failed requests. Latency is measured from
each request's intended start (coordinated omission corrected); the service time beside it
from the moment a connection took the request. A request that failed before it went out
(refused connection, TLS) counts as failed, with no latency.

Exit codes: 0 done and every threshold met, 1 a threshold missed, 2 usage, 3 configuration
(also an --hdr-out file that cannot be written), 4 unreachable (no reply at all; the report is still printed), 130 interrupted (Ctrl-C or SIGTERM)")]
pub struct LoadArgs {
    /// The address under load, e.g. https://isv.example.com/produce.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Protocol of the basic interfaces (default: the profile's, else v2).
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    #[command(flatten)]
    pub keys: InterfaceKeyFiles,
    /// Requests per second, started on schedule whether or not earlier ones answered (open
    /// loop); `max` keeps every connection busy instead (closed loop, to find the ceiling).
    #[arg(long, value_name = "N|max", value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Rate,
    /// How long to send, e.g. 30s or 10m (1 ms to 24 h).
    #[arg(long, value_name = "DURATION",
          value_parser = crate::duration::flag(Bare::Secs, Duration::from_millis(1), Duration::from_secs(86_400)))]
    pub duration: Option<Duration>,
    /// How many requests to send (1 to 100,000,000); with --duration, whichever ends first.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub requests: Option<u64>,
    /// Requests in flight at most (connections kept open to the endpoint).
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub connections: u16,
    /// Rise linearly from 0 to --rate over this time first (counted in --duration).
    #[arg(long, value_name = "DURATION", default_value = "0s",
          value_parser = crate::duration::flag(Bare::Secs, Duration::ZERO, Duration::from_secs(3600)))]
    pub ramp: Duration,
    /// Time budget per request, e.g. 5s or 1500ms (the marketplace waits 5 s); also how long
    /// a request may wait for a free connection.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = crate::duration::timeout)]
    pub timeout: Duration,
    /// What to send: NAME[:WEIGHT],… from the catalog (default: the dial-test mix of the
    /// keys given); `NAME SCENE` picks a scene as the report names it, e.g.
    /// 'updateInstanceStatus FREEZE:3'. Calls on an instance use ids the endpoint created.
    #[arg(long, value_name = "NAME[:WEIGHT]", value_delimiter = ',',
          value_parser = super::callback_args::Offered(super::callback_args::activity_names))]
    pub activity: Vec<String>,
    /// Run whole orders instead: each virtual order sends newInstance, queryInstance,
    /// refreshInstance, updateInstanceStatus and releaseInstance (V1: new, refresh, expire,
    /// release) in order on its own instance, the next step once the previous one succeeded.
    #[arg(long, value_enum, conflicts_with = "activity")]
    pub scenario: Option<Scenario>,
    /// Override a field in every request of the activities that have it: `--set
    /// productId=P1`, nested `--set a.b=c` (checked as in `csm send`). Repeatable.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// Lay this JSON object's fields over every request of the activities that have them
    /// (the other fields, ids included, are still generated afresh).
    #[arg(long = "body-file", visible_alias = "body", value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// Accept `--set` / `--body-file` fields and values the catalog does not list (they go
    /// to every activity).
    #[arg(long)]
    pub allow_unknown: bool,
    /// Pass/fail gate (repeatable): p50|p90|p99|p999|max<DURATION, errors<PERCENT, rate>=FRACTION.
    #[arg(long, value_name = "EXPR", value_parser = threshold::flag)]
    pub threshold: Vec<Threshold>,
    /// Write the corrected latency as an HdrHistogram interval log (one histogram per
    /// second, microseconds) to FILE, for HdrHistogram's plotting tools.
    #[arg(long, value_name = "FILE")]
    pub hdr_out: Option<PathBuf>,
    /// Append Kit paths to the full address instead of its origin (decision 7).
    #[arg(long)]
    pub kit_path_full: bool,
    /// Inner step of the License 2.0 signature (decision 5).
    #[arg(long, value_enum, default_value_t = LicenseInnerArg::KeyedHmac)]
    pub license_inner: LicenseInnerArg,
    /// Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Do not ask before loading a non-loopback address.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// new → query → refresh → status → release, per virtual order.
    Lifecycle,
}

/// Requests per second; None for `--rate max`. A type alias, so that clap takes the flag as
/// one required value rather than an optional one.
pub type Rate = Option<f64>;

pub fn parse_rate(s: &str) -> std::result::Result<Rate, String> {
    if s.trim() == "max" {
        return Ok(None);
    }
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && (0.01..=1_000_000.0).contains(r))
        .map(Some)
        .ok_or_else(|| format!("{s:?}: expected requests per second from 0.01 to 1000000, or max"))
}

/// `--set` and `--body-file` for the callbacks of the run: each field goes to the callbacks
/// that have it (checked as `csm send` checks it); one that none has is a usage error.
fn overrides(a: &LoadArgs, callbacks: &[&'static Callback]) -> Result<Overrides> {
    enum Given<'a> {
        Json(Value),
        Text(&'a str),
    }
    let mut out = Overrides::default();
    let Some(&first) = callbacks.first() else {
        return Ok(out);
    };
    let mut wanted: Vec<(&str, String, Given)> = Vec::new();
    if let Some(path) = &a.body {
        // Read as a JSON object here; each field is checked against each callback below.
        for (k, v) in send::read_body(first, path, true)?.1 {
            wanted.push(("--body-file", k, Given::Json(v)));
        }
    }
    for s in &a.set {
        let (path, raw) = s
            .split_once('=')
            .ok_or_else(|| CsmError::usage(format!("--set {s:?}: must be FIELD=VALUE")))?;
        wanted.push(("--set", path.to_string(), Given::Text(raw)));
    }
    for (flag, path, given) in wanted {
        // Load goes to test orders only: a live order is billed and provisioned.
        if path == "testFlag" {
            let one = match &given {
                Given::Json(v) => gen::is_test_flag(v),
                Given::Text(raw) => gen::is_test_flag(&Value::from(raw.trim())),
            };
            if !one {
                return Err(CsmError::usage(format!(
                    "{flag} testFlag: csm load sends test callbacks only (testFlag=1); a live order is provisioned and billed"
                )));
            }
        }
        if path.is_empty() {
            return Err(CsmError::usage(format!(
                "{flag}: a field name is empty (FIELD=VALUE)"
            )));
        }
        let mut refusal = None;
        let mut applied = false;
        for &cb in callbacks {
            let value = match &given {
                Given::Json(v) => {
                    send::check_field(cb, &path, a.allow_unknown, flag).map(|_| v.clone())
                }
                Given::Text(raw) => send::set_value(cb, &path, raw, a.allow_unknown),
            };
            let value = match value {
                Ok(v) => v,
                Err(e) => {
                    // A callback that has the field refuses the value: that is the reason
                    // to give, not another callback's lack of the field.
                    let has = cb.field(path.split('.').next().unwrap_or("")).is_some();
                    if has || refusal.is_none() {
                        refusal = Some((has, e));
                    }
                    continue;
                }
            };
            // Tried once on a generated body now, so a value that cannot go where it is
            // aimed (a member of a text field) is a usage error, not a run of failures.
            let mut body = gen::generate(cb, None, &Ctx::default());
            request::set_path(&mut body, &path, value.clone())
                .map_err(|e| CsmError::usage(format!("{flag} {e}")))?;
            out.add(cb, &path, value);
            applied = true;
        }
        match refusal {
            Some((true, e)) if !applied => return Err(e),
            Some((false, e)) if !applied && callbacks.len() == 1 => return Err(e),
            Some((false, _)) if !applied => {
                return Err(CsmError::usage(format!(
                    "{flag} {path}: none of the activities sent has this field ({}); pass --allow-unknown to send it anyway",
                    callbacks.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
                )))
            }
            _ => {}
        }
    }
    Ok(out)
}

pub fn run(g: &GlobalArgs, a: LoadArgs) -> Result<Exit> {
    let rate = a.rate;
    if rate.is_none() {
        if let Some(t) = a.threshold.iter().find(|t| t.metric == Metric::Rate) {
            return Err(CsmError::usage(format!(
                "--threshold {:?}: rate compares with a target; give --rate N instead of max",
                t.expr
            )));
        }
        if a.ramp > Duration::ZERO {
            return Err(CsmError::usage(
                "--ramp: needs a target rate; give --rate N instead of max",
            ));
        }
    }
    if let Some(d) = a
        .duration
        .filter(|d| a.ramp > Duration::ZERO && a.ramp >= *d)
    {
        return Err(CsmError::usage(format!(
            "--ramp {}: must be shorter than --duration {} (the ramp is part of it)",
            crate::duration::show(a.ramp),
            crate::duration::show(d)
        )));
    }
    let profile = config::active_profile(g.profile.as_deref())?;
    let endpoint = endpoint_from(a.endpoint.as_deref(), &profile, "")?;
    let protocol = resolve_protocol(a.protocol, &profile)?;
    let keys = a.keys.load(&profile)?;
    let work = match a.scenario {
        Some(Scenario::Lifecycle) => {
            if keys.basic.is_none() {
                return Err(CsmError::usage(
                    "--scenario lifecycle: the basic callbacks need --key-file",
                ));
            }
            Work::Lifecycle(Mix::lifecycle(protocol))
        }
        None if a.activity.is_empty() => Work::Mix(Mix::dial(protocol, &keys)),
        None => Work::Mix(Mix::parse(&a.activity, protocol, &keys).map_err(CsmError::usage)?),
    };
    let (items, what) = match &work {
        Work::Mix(m) => (&m.items, m.describe()),
        Work::Lifecycle(steps) => (
            steps,
            format!(
                "lifecycle: {}",
                steps
                    .iter()
                    .map(|i| i.title())
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
        ),
    };
    if items.is_empty() {
        return Err(CsmError::usage(
            "--activity: the dial-test mix needs --key-file, --kit-key-file or --license-key-file",
        ));
    }
    let mut callbacks: Vec<&'static Callback> = Vec::new();
    for i in items {
        if !callbacks.iter().any(|c| std::ptr::eq(*c, i.callback)) {
            callbacks.push(i.callback);
        }
    }
    let overrides = overrides(&a, &callbacks)?;
    if let Some(path) = &a.hdr_out {
        crate::files::check_writable(path, "--hdr-out")?;
    }
    let net = Settings::new(a.timeout).with_ca(read_ca(a.ca_file.as_deref())?);
    check_proxy(&endpoint)?;
    confirm_remote(
        "--endpoint",
        &endpoint,
        a.yes,
        g,
        "a load of test callbacks (marked testFlag=1)",
    )?;
    let stop = Interrupt::install();
    let progress = !g.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !g.json && !g.quiet {
        let how = match (rate, a.requests, a.duration) {
            (Some(r), Some(n), Some(d)) => format!(
                "{n} requests at {r}/s, for {} at most",
                crate::duration::show(d)
            ),
            (Some(r), Some(n), None) => format!("{n} requests at {r}/s"),
            (Some(r), None, Some(d)) => format!("{r}/s for {}", crate::duration::show(d)),
            (None, Some(n), Some(d)) => format!(
                "{n} requests, closed loop, for {} at most",
                crate::duration::show(d)
            ),
            (None, Some(n), None) => format!("{n} requests, closed loop"),
            (None, None, Some(d)) => format!("closed loop for {}", crate::duration::show(d)),
            _ => String::new(),
        };
        let how = if a.ramp > Duration::ZERO {
            format!("{how}, rising over {}", crate::duration::show(a.ramp))
        } else {
            how
        };
        eprintln!(
            "loading {endpoint} ({}; {how}; {}): {what}",
            protocol.name(),
            crate::output::plural(a.connections.into(), "connection"),
        );
    }
    let plan = Plan {
        endpoint: endpoint.clone(),
        protocol,
        keys,
        work,
        overrides,
        rate,
        ramp: a.ramp,
        duration: a.duration,
        requests: a.requests,
        connections: a.connections as usize,
        net,
        kit_path_full: a.kit_path_full,
        license_inner: a.license_inner.into(),
        stop,
        progress,
        intervals: a.hdr_out.is_some(),
        clock: std::sync::Arc::new(crate::clock::SystemClock),
        entropy: std::sync::Arc::new(crate::clock::SystemEntropy),
    };
    let out = engine::run(plan).map_err(CsmError::Config)?;
    if let Some(e) = &out.prepare_error {
        let n = out
            .stats
            .errors
            .get(crate::load::stats::PREPARE)
            .copied()
            .unwrap_or(0);
        eprintln!("csm: {n} requests could not be built; the first: {e}");
    }
    let mut report = Report {
        endpoint: endpoint.to_string(),
        protocol: protocol.name(),
        mix: what,
        connections: a.connections as usize,
        rate_target: rate,
        ramp: a.ramp,
        started: out.started,
        elapsed: out.elapsed,
        sending: out.sending,
        orders: out.orders,
        reconnects: out.reconnects,
        stats: out.stats,
        thresholds: Vec::new(),
        interrupted: out.interrupted,
        error: None,
    };
    report.judge(&a.threshold);
    let mut exit = if report.thresholds_pass() {
        Exit::Ok
    } else {
        Exit::CheckFailed
    };
    let mut failure = None;
    // A run where everything failed exits 0 without a threshold: said, so that a CI log
    // does not read it as a pass.
    let s = &report.stats;
    let finished = out.unreachable.is_none() && !out.interrupted;
    if finished && a.threshold.is_empty() && s.failed > 0 && s.failed == s.requests {
        eprintln!(
            "csm: note: every request failed; without a --threshold that is still exit 0 (--threshold 'errors<1%' fails the run)"
        );
    }
    if let Some(f) = &out.unreachable {
        let e = unreachable(&endpoint, f);
        report.error = Some(e.to_string());
        exit = Exit::Network;
        failure = Some(e);
    } else if out.interrupted {
        let why = format!(
            "interrupted (Ctrl-C or SIGTERM) after {} requests: the results so far are reported",
            report.stats.requests
        );
        eprintln!("csm: {why}");
        report.error = Some(why);
        exit = Exit::Interrupted;
    }
    // Written before the report, so that the report says whether it was (checked before the
    // run too, so this fails only if the disk changed meanwhile).
    if let Some(path) = &a.hdr_out {
        let log = interval_log(out.started_at, &out.intervals);
        if let Err(e) = crate::files::write_atomic(path, &log, false) {
            let e = CsmError::Config(format!("--hdr-out: {e}"));
            match failure {
                // The endpoint's failure (or Ctrl-C) is the one to exit with; this is said too.
                Some(_) => eprintln!("csm: {e}"),
                None if out.interrupted => eprintln!("csm: {e}"),
                None => {
                    report.error = Some(e.to_string());
                    exit = Exit::Io;
                    failure = Some(e);
                }
            }
        }
    }
    if g.json {
        crate::output::print_json(&report.json(exit.code()));
    } else {
        crate::say!("{}", report.text().trim_end());
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(exit),
    }
}
