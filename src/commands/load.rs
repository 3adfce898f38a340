//! `csm load`: drive signed callbacks at an endpoint at a fixed arrival rate (glue only; the
//! engine is in `crate::load`).

use super::callback_args::{
    confirm_remote, endpoint_from, read_ca, resolve_protocol, InterfaceKeyFiles,
};
use crate::catalog::Protocol;
use crate::cli::GlobalArgs;
use crate::commands::sign::LicenseInnerArg;
use crate::config;
use crate::duration::Bare;
use crate::error::{CsmError, Exit, Result};
use crate::interrupt::Interrupt;
use crate::load::engine::{self, Plan};
use crate::load::mix::Mix;
use crate::load::report::Report;
use crate::load::stats::hgrm;
use crate::load::threshold::{self, Metric, Threshold};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  csm load --endpoint http://127.0.0.1:8088/produce --key-file basic.key --rate 200 --duration 30s
  csm load --endpoint URL --key-file basic.key --rate 500 --requests 10000 \\
      --threshold 'p99<800ms' --threshold 'errors<0.1%' --threshold 'rate>=0.98'
  csm load --endpoint URL --key-file basic.key --activity newInstance:3,queryInstance --rate max --duration 10s
  csm --json load --endpoint URL --key-file basic.key --rate 100 --duration 1m > load.json

A request fails when it gets no reply, an HTTP status other than 200, or a resultCode other
than 000000; `errors` in a threshold is the share of failed requests. Latency is measured from
each request's intended start (coordinated omission corrected); the service time beside it
from the moment a connection took the request.

Exit codes: 0 done and every threshold met, 1 a threshold missed, 2 usage, 3 configuration,
4 unreachable (no reply at all; the report is still printed), 130 interrupted (Ctrl-C)")]
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
    #[arg(long, value_name = "N|max", value_parser = parse_rate)]
    pub rate: Rate,
    /// How long to send, e.g. 30s or 10m (1 ms to 24 h).
    #[arg(long, value_name = "DURATION", required_unless_present = "requests",
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
    /// keys given). Calls on an instance use ids the endpoint created.
    #[arg(long, value_name = "NAME[:WEIGHT]", value_delimiter = ',',
          value_parser = super::callback_args::Offered(super::callback_args::activity_names))]
    pub activity: Vec<String>,
    /// Pass/fail gate (repeatable): p50|p90|p99|p999|max<DURATION, errors<PERCENT, rate>=FRACTION.
    #[arg(long, value_name = "EXPR", value_parser = threshold::flag)]
    pub threshold: Vec<Threshold>,
    /// Write the latency histogram (HdrHistogram percentile distribution, ms) to FILE.
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

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    Max,
}

pub fn parse_rate(s: &str) -> std::result::Result<Rate, String> {
    if s.trim() == "max" {
        return Ok(Rate::Max);
    }
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && (0.01..=1_000_000.0).contains(r))
        .map(Rate::PerSecond)
        .ok_or_else(|| format!("{s:?}: expected requests per second from 0.01 to 1000000, or max"))
}

pub fn run(g: &GlobalArgs, a: LoadArgs) -> Result<Exit> {
    let rate = match a.rate {
        Rate::PerSecond(r) => Some(r),
        Rate::Max => None,
    };
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
    let profile = config::active_profile(g.profile.as_deref())?;
    let endpoint = endpoint_from(a.endpoint.as_deref(), &profile, "")?;
    let protocol = resolve_protocol(a.protocol, &profile)?;
    let keys = a.keys.load(&profile)?;
    let mix = if a.activity.is_empty() {
        Mix::dial(protocol, &keys)
    } else {
        Mix::parse(&a.activity, protocol, &keys).map_err(CsmError::usage)?
    };
    if mix.items.is_empty() {
        return Err(CsmError::usage(
            "--activity: the dial-test mix needs --key-file, --kit-key-file or --license-key-file",
        ));
    }
    let ca_pem = read_ca(a.ca_file.as_deref())?;
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
            (Some(r), Some(n), _) => format!("{n} requests at {r}/s"),
            (Some(r), None, Some(d)) => format!("{r}/s for {}", crate::duration::show(d)),
            (None, Some(n), _) => format!("{n} requests, closed loop"),
            (None, None, Some(d)) => format!("closed loop for {}", crate::duration::show(d)),
            _ => String::new(),
        };
        eprintln!(
            "loading {endpoint} ({}; {how}; {} connections): {}",
            protocol.name(),
            a.connections,
            mix.describe()
        );
    }
    let mut report = Report {
        endpoint: endpoint.to_string(),
        protocol: protocol.name(),
        mix: mix.describe(),
        connections: a.connections as usize,
        rate_target: rate,
        started: 0,
        elapsed: Duration::ZERO,
        sending: Duration::ZERO,
        stats: Default::default(),
        thresholds: Vec::new(),
        interrupted: false,
        error: None,
    };
    let plan = Plan {
        endpoint: endpoint.clone(),
        protocol,
        keys,
        mix,
        rate,
        ramp: a.ramp,
        duration: a.duration,
        requests: a.requests,
        connections: a.connections as usize,
        timeout: a.timeout,
        ca_pem,
        kit_path_full: a.kit_path_full,
        license_inner: a.license_inner.into(),
        stop,
        progress,
        clock: std::sync::Arc::new(crate::clock::SystemClock),
        entropy: std::sync::Arc::new(crate::clock::SystemEntropy),
    };
    let out = engine::run(plan).map_err(CsmError::Config)?;
    report.started = out.started;
    report.elapsed = out.elapsed;
    report.sending = out.sending;
    report.stats = out.stats;
    report.interrupted = out.interrupted;
    report.judge(&a.threshold);
    let mut exit = if report.thresholds_pass() {
        Exit::Ok
    } else {
        Exit::CheckFailed
    };
    let mut failure = None;
    if let Some(kind) = out.unreachable {
        let e = CsmError::Network(format!(
            "--endpoint {endpoint}: unreachable: no reply to any request (first failure: {kind})"
        ))
        .with_hint("check the host and port, and that the endpoint is listening there");
        report.error = Some(e.to_string());
        exit = Exit::Network;
        failure = Some(e);
    } else if out.interrupted {
        let why = format!(
            "interrupted (Ctrl-C) after {} requests: the results so far are reported",
            report.stats.requests
        );
        eprintln!("csm: {why}");
        report.error = Some(why);
        exit = Exit::Interrupted;
    }
    // The report is printed first: a histogram file that cannot be written loses no result.
    let hdr = a.hdr_out.as_ref().map(|path| {
        crate::files::write_atomic(path, hgrm(&report.stats.latency).as_bytes(), false)
            .map_err(|e| CsmError::Config(format!("--hdr-out: {e}")))
    });
    if g.json {
        crate::output::print_json(&report.json(exit.code()));
    } else {
        crate::say!("{}", report.text().trim_end());
    }
    if let Some(Err(e)) = hdr {
        return Err(e);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(exit),
    }
}
