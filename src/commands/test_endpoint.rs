//! `csm test-endpoint`: play the marketplace against an endpoint and judge every reply.

use crate::catalog::Protocol;
use crate::cli::GlobalArgs;
use crate::commands::sign::LicenseInnerArg;
use crate::config::{self, KeyRole, Profile};
use crate::endpoint::report::Report;
use crate::endpoint::request::Keys;
use crate::endpoint::suites::{self, Suite, Target};
use crate::error::{CsmError, Exit, Result};
use crate::merchant::{Merchant, MerchantConfig};
use crate::secret::Secret;
use crate::server;
use clap::Args;
use reqwest::Url;
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

/// `5s`, `1500ms`, `1.5s`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 5s or 1500ms"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    if !(0.001..=600.0).contains(&secs) {
        return Err(format!("{s:?}: must be between 1ms and 10m"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses an endpoint URL; only http and https, without user name or password.
pub fn parse_endpoint(s: &str) -> Result<Url> {
    let url = Url::parse(s).map_err(|e| {
        // Echo the value unless it may hold credentials (`user:password@`).
        let shown = if s.contains('@') {
            String::new()
        } else {
            format!(" {s:?}")
        };
        CsmError::usage(format!(
            "--endpoint{shown}: not a URL ({e}); write it as https://host/path"
        ))
    })?;
    // Credentials in the URL would be printed with every request (and the marketplace
    // never sends any): refuse them, without echoing the URL that holds them.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CsmError::usage(
            "--endpoint: must not contain a user name or password (user:password@host); remove them from the URL",
        ));
    }
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(CsmError::usage(format!(
            "--endpoint {s:?}: must be an http:// or https:// URL with a host"
        )));
    }
    Ok(url)
}

/// A seller's endpoint may be production: calls to anything but loopback need a yes.
/// `flag` names the option that gave the URL in messages.
pub fn confirm_remote(flag: &str, url: &Url, yes: bool, g: &GlobalArgs, calls: &str) -> Result<()> {
    if yes || suites::is_loopback(url) {
        return Ok(());
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    if g.no_input || !terminal {
        return Err(CsmError::usage(format!(
            "{flag} {url}: not a loopback address and there is no terminal to confirm on; pass --yes to send {calls} to it"
        )));
    }
    let ok = dialoguer::Confirm::new()
        .with_prompt(format!(
            "Send {calls} to {url}? It may be a production endpoint"
        ))
        .default(false)
        .interact()
        .map_err(|e| CsmError::Config(format!("confirmation prompt: {e}")))?;
    if ok {
        Ok(())
    } else {
        Err(CsmError::usage(format!(
            "{flag} {url}: not confirmed; nothing was sent"
        )))
    }
}

/// The key files of the three interface types, shared by `send`, `test-endpoint` and
/// `serve merchant`. Each interface type is used when its key is given (a License-only
/// product has no basic key); at least one is needed.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyFiles {
    /// File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify
    /// is signed with this key too: pass the general (通用) interface key for it.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY).
    #[arg(long, value_name = "FILE")]
    pub kit_key_file: Option<PathBuf>,
    /// File holding the License delivery key (also CSM_LICENSE_KEY).
    #[arg(long, value_name = "FILE")]
    pub license_key_file: Option<PathBuf>,
}

impl KeyFiles {
    /// Reads the keys: flag > env > profile.
    pub fn load(&self, profile: &Profile) -> Result<Keys> {
        let keys = Keys {
            basic: config::find_key(KeyRole::Basic, self.key_file.as_deref(), profile)?,
            kit: config::find_key(KeyRole::Kit, self.kit_key_file.as_deref(), profile)?,
            license: config::find_key(KeyRole::License, self.license_key_file.as_deref(), profile)?,
        };
        if keys.basic.is_none() && keys.kit.is_none() && keys.license.is_none() {
            return Err(CsmError::usage(
                "--key-file: no key given (pass --key-file, --kit-key-file or --license-key-file FILE, set CSM_ACCESS_KEY, CSM_KIT_KEY or CSM_LICENSE_KEY, or name them in a profile with `csm init`)",
            ));
        }
        Ok(keys)
    }
}

/// The `--ca-file` certificate, checked to be PEM.
pub fn read_ca(path: Option<&std::path::Path>) -> Result<Option<Vec<u8>>> {
    let Some(path) = path else { return Ok(None) };
    let pem = std::fs::read(path).map_err(|e| CsmError::io(path, e))?;
    let is_pem = pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----");
    if !is_pem || reqwest::Certificate::from_pem(&pem).is_err() {
        return Err(CsmError::usage(format!(
            "--ca-file {}: not a PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(Some(pem))
}

pub fn resolve_protocol(flag: Option<Protocol>, profile: &Profile) -> Result<Protocol> {
    if let Some(p) = flag {
        return Ok(p);
    }
    match &profile.protocol {
        None => Ok(Protocol::V2),
        Some(s) => Protocol::parse(s).ok_or_else(|| {
            CsmError::Config(format!(
                "profile protocol {s:?}: must be v1 or v2 (edit it with `csm init`)"
            ))
        }),
    }
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
            log: false,
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
            require_body_sign: false,
            ca_pem: None,
            license_code: None,
        });
    }
    Ok((targets, servers))
}

pub fn run(g: &GlobalArgs, a: TestEndpointArgs) -> Result<Exit> {
    let timeout = if a.debug_page {
        Duration::from_secs(20)
    } else {
        a.timeout
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
        let raw = a
            .endpoint
            .clone()
            .or_else(|| profile.endpoint.clone())
            .ok_or_else(|| {
                CsmError::usage(
                    "--endpoint: no endpoint given (pass --endpoint URL, name one in a profile with `csm init`, or try --demo)",
                )
            })?;
        let endpoint = parse_endpoint(&raw)?;
        let protocol = resolve_protocol(a.protocol, &profile)?;
        let keys = a.keys.load(&profile)?;
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
            ca_pem: read_ca(a.ca_file.as_deref())?,
            license_code: a.license_code.clone(),
        });
    }

    if a.demo {
        // The reference merchant signs every reply: hold V2 to it as well.
        for t in &mut targets {
            t.require_body_sign = true;
        }
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
        let out = suites::run(t, &suites, &mut |_| {});
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
    if let Some(path) = &a.junit {
        std::fs::write(path, report.junit()).map_err(|e| CsmError::io(path, e))?;
    }
    if g.json {
        crate::output::print_json(&report.json(exit.code()));
    } else if g.quiet {
        crate::say!("{}", report.summary_line());
    } else {
        crate::say!("{}", report.table());
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn endpoints() {
        assert!(parse_endpoint("https://isv.example.com/produce").is_ok());
        let e = parse_endpoint("ftp://x/").unwrap_err().to_string();
        assert!(e.contains("http:// or https://"), "{e}");
        let e = parse_endpoint("not a url").unwrap_err().to_string();
        assert!(e.contains("\"not a url\""), "{e}");
        let e = parse_endpoint("http://u:s3cret@host:99999/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        for u in [
            "http://user:pw@127.0.0.1:1/",
            "https://user@isv.example.com/",
        ] {
            let e = parse_endpoint(u).unwrap_err();
            assert_eq!(e.exit().code(), 2, "{u}");
            let text = e.to_string();
            assert!(text.contains("--endpoint") && text.contains("user name or password"));
            assert!(!text.contains("pw@") && !text.contains("user@"), "{text}");
        }
    }
}
