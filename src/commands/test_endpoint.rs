//! `csm test-endpoint`: play the marketplace against an endpoint and judge every reply.

use super::callback_args::{
    confirm_remote, endpoint_from, parse_duration, parse_endpoint, read_ca, reply_budget,
    resolve_protocol, KeyFiles,
};
use crate::catalog::Protocol;
use crate::cli::GlobalArgs;
use crate::commands::sign::LicenseInnerArg;
use crate::config;
use crate::endpoint::report::Report;
use crate::endpoint::request::Keys;
use crate::endpoint::suites::{self, Suite, Target};
use crate::error::{CsmError, Exit, Result};
use crate::merchant::{Merchant, MerchantConfig};
use crate::secret::Secret;
use crate::server;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  csm test-endpoint --demo
  csm test-endpoint --demo --fault not-idempotent
  csm test-endpoint --endpoint https://isv.example.com/produce --key-file basic.key \\
      --kit-key-file kit.key --license-key-file license.key
  csm --json test-endpoint --endpoint URL --key-file basic.key --yes --junit report.xml

Exit codes: 0 all checks passed, 1 a check failed, 2 usage, 3 configuration, 4 unreachable")]
pub struct TestEndpointArgs {
    /// The production address under test, e.g. https://isv.example.com/produce.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Protocol of the basic interfaces (default: the profile's, else v2).
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    #[command(flatten)]
    pub keys: KeyFiles,
    /// Suites to run (repeatable or comma-separated; default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub suite: Vec<Suite>,
    /// Write a JUnit XML report to FILE (for CI).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Time budget per call, e.g. 5s or 1500ms (production: 5 s).
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Use the debugging page's 20 s budget instead of the production 5 s (decision 8).
    #[arg(long, conflicts_with = "timeout")]
    pub debug_page: bool,
    /// Append Kit paths to the full address instead of its origin (decision 7).
    #[arg(long)]
    pub kit_path_full: bool,
    /// Send calls without testFlag (as live orders). Only for endpoints you own.
    #[arg(long)]
    pub no_test_flag: bool,
    /// A license code your endpoint knows, carried by the License callbacks instead of
    /// made-up ones (needed with --no-test-flag, else the License callbacks are skipped).
    #[arg(long, value_name = "CODE", value_parser = parse_license_code)]
    pub license_code: Option<String>,
    /// Users per authSync call (at most 500).
    #[arg(long, default_value_t = 500, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=500))]
    pub users: u16,
    /// Require a valid Body-Sign on V2 replies too (V1 always requires it; decision 4).
    #[arg(long)]
    pub require_body_sign: bool,
    /// Inner step of the License 2.0 signature (decision 5).
    #[arg(long, value_enum, default_value_t = LicenseInnerArg::KeyedHmac)]
    pub license_inner: LicenseInnerArg,
    /// Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Do not ask before calling a non-loopback address.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Start the reference merchant on a free loopback port and test it (v2 with Kit and
    /// License, then v1 with Kit), with keys made for the run.
    #[arg(long, conflicts_with_all = ["endpoint", "key_file", "kit_key_file", "license_key_file", "license_code"])]
    pub demo: bool,
    /// With --demo: make the reference merchant wrong on purpose (see `csm serve merchant --help`).
    #[arg(long, value_name = "NAME", requires = "demo")]
    pub fault: Vec<String>,
}

/// A license code as the License callbacks carry it: 1 to 64 printable ASCII characters.
pub fn parse_license_code(s: &str) -> std::result::Result<String, String> {
    let n = s.chars().count();
    if n == 0 || n > 64 || !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{s:?}: a license code is 1 to 64 printable ASCII characters without spaces"
        ));
    }
    Ok(s.to_string())
}

fn keys_for_demo(with_license: bool) -> Keys {
    Keys {
        basic: Some(Secret::new(crate::clock::uuid())),
        kit: Some(Secret::new(crate::clock::uuid())),
        license: with_license.then(|| Secret::new(crate::clock::uuid())),
    }
}

/// The demo: a reference merchant per protocol on a free loopback port (v2 with Kit and
/// License keys, then v1 with a Kit key), keys made for the run. Keep the handles alive.
pub fn demo_targets(
    timeout: Duration,
    faults: &[crate::merchant::Fault],
    users: usize,
) -> Result<(Vec<Target>, Vec<server::ServerHandle>)> {
    let mut targets = Vec::new();
    let mut servers = Vec::new();
    for protocol in [Protocol::V2, Protocol::V1] {
        let keys = keys_for_demo(protocol == Protocol::V2);
        let merchant = Merchant::new(MerchantConfig {
            protocol,
            keys: keys.clone(),
            faults: faults.to_vec(),
            // Beyond the client's budget, so that `slow` shows without a long wait.
            fault_delay: timeout + Duration::from_millis(500),
            window_ms: 60_000,
            state: None,
            record: None,
            license_inner: crate::protocol::v2::LicenseInner::KeyedHmac,
        })?;
        let handle = server::serve("127.0.0.1:0", Arc::new(merchant), 16)?;
        let endpoint = parse_endpoint(&format!("http://{}/produce", handle.addr))?;
        servers.push(handle);
        targets.push(Target {
            endpoint,
            protocol,
            keys,
            timeout,
            kit_path_full: false,
            test_flag: true,
            users,
            license_inner: crate::protocol::v2::LicenseInner::KeyedHmac,
            // The reference merchant signs every reply: hold V2 to it as well.
            require_body_sign: true,
            ca_pem: None,
            license_code: None,
        });
    }
    Ok((targets, servers))
}

pub fn run(g: &GlobalArgs, a: TestEndpointArgs) -> Result<Exit> {
    let timeout = reply_budget(a.debug_page, a.timeout);
    // An unwritable report path is found before any call is made, not after the run.
    let junit_file = match &a.junit {
        Some(path) => Some(
            std::fs::File::create(path)
                .map_err(|e| CsmError::io(format!("--junit {}", path.display()), e))?,
        ),
        None => None,
    };
    let suites: Vec<Suite> = if a.suite.is_empty() {
        Suite::ALL.to_vec()
    } else {
        Suite::ALL
            .into_iter()
            .filter(|s| a.suite.contains(s))
            .collect()
    };
    let faults = super::serve_merchant::parse_faults(&a.fault)?;
    let mut targets: Vec<Target> = Vec::new();
    // Demo merchants live until the end of the run.
    let mut servers: Vec<server::ServerHandle> = Vec::new();
    let endpoint_label;
    if a.demo {
        let (t, s) = demo_targets(timeout, &faults, a.users as usize)?;
        targets = t;
        servers = s;
        endpoint_label = "demo (reference merchant on 127.0.0.1)".to_string();
    } else {
        let profile = config::active_profile(g)?;
        let endpoint = endpoint_from(a.endpoint.as_deref(), &profile, ", or try --demo")?;
        let protocol = resolve_protocol(a.protocol, &profile)?;
        let keys = a.keys.load(&profile)?;
        // Bad input is reported before any prompt.
        let ca_pem = read_ca(a.ca_file.as_deref())?;
        let what = if a.no_test_flag {
            "test callbacks WITHOUT testFlag (as live orders)"
        } else {
            "test callbacks (marked testFlag=1)"
        };
        confirm_remote("--endpoint", &endpoint, a.yes, g, what)?;
        endpoint_label = endpoint.to_string();
        targets.push(Target {
            endpoint,
            protocol,
            keys,
            timeout,
            kit_path_full: a.kit_path_full,
            test_flag: !a.no_test_flag,
            users: a.users as usize,
            license_inner: a.license_inner.into(),
            require_body_sign: a.require_body_sign,
            ca_pem,
            license_code: a.license_code.clone(),
        });
    }

    let mut report = Report {
        endpoint: endpoint_label,
        protocols: targets.iter().map(|t| t.protocol.name()).collect(),
        suites: suites.clone(),
        demo: a.demo,
        faults: a.fault.clone(),
        rows: Vec::new(),
        calls: 0,
        elapsed: Duration::ZERO,
    };
    if !g.json && !g.quiet {
        for t in &targets {
            let mut types = Vec::new();
            if t.keys.basic.is_some() {
                types.push("basic");
            }
            if t.keys.kit.is_some() {
                types.push("Kit");
            }
            if t.keys.license.is_some() {
                types.push("License");
            }
            crate::say!(
                "testing {} ({}: {}; {} ms budget per call)",
                t.endpoint,
                t.protocol.name(),
                types.join(", "),
                t.timeout.as_millis()
            );
        }
    }
    for t in &targets {
        let out = suites::run(t, &suites);
        if let Some(f) = out.unreachable {
            return Err(CsmError::Network(format!(
                "--endpoint {}: unreachable: {}",
                t.endpoint, f.message
            )));
        }
        report.rows.extend(out.rows);
        report.calls += out.calls;
        report.elapsed += out.elapsed;
    }
    for s in servers {
        s.shutdown();
    }
    let exit = if report.passed() {
        Exit::Ok
    } else {
        Exit::CheckFailed
    };
    if g.json {
        crate::output::print_json(&report.json(exit.code()));
    } else if g.quiet {
        crate::say!("{}", report.summary_line());
    } else {
        crate::say!("{}", report.table());
    }
    if let (Some(mut file), Some(path)) = (junit_file, &a.junit) {
        std::io::Write::write_all(&mut file, report.junit().as_bytes())
            .map_err(|e| CsmError::io(format!("--junit {}", path.display()), e))?;
    }
    Ok(exit)
}
