//! `csm test-endpoint`: play the marketplace against an endpoint and judge every reply.

use super::callback_args::{
    check_proxy, confirm_remote, endpoint_from, read_ca, reply_budget, resolve_protocol, KeyFiles,
};
use crate::catalog::Protocol;
use crate::cli::GlobalArgs;
use crate::clock::{SystemClock, SystemEntropy};
use crate::commands::sign::LicenseInnerArg;
use crate::config;
use crate::endpoint::judge::Status;
use crate::endpoint::report::{Report, Show};
use crate::endpoint::request::Keys;
use crate::endpoint::suites::{self, SealSecret, SsoSetup, Suite, Target};
use crate::endpoint::url::parse_endpoint;
use crate::error::{CsmError, Exit, Result};
use crate::interrupt::Interrupt;
use crate::marketplace::idp::{Idp, IdpConfig};
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
  csm test-endpoint --endpoint URL --kit-key-file kit.key --app-public-key app.pub \\
      --suite sso --login-url https://isv.example.com/sso/callback --idp-url https://TUNNEL

Exit codes: 0 all checks passed, 1 a check failed, 2 usage, 3 configuration, 4 unreachable")]
pub struct TestEndpointArgs {
    /// The production address under test, e.g. https://isv.example.com/produce.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Protocol of the basic interfaces (default: the profile's, else v2; with --demo: both,
    /// or the one named).
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    #[command(flatten)]
    pub keys: KeyFiles,
    /// Suites to run (repeatable or comma-separated; default all but sso, which runs when
    /// named or with --demo).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub suite: Vec<Suite>,
    /// Which rows the table shows: failures (failures and skips in full, passes folded per
    /// suite, a recap last) or all. Default: failures on a terminal, all otherwise.
    #[arg(long, value_enum, value_name = "ROWS")]
    pub show: Option<Show>,
    /// Write a JUnit XML report to FILE (for CI).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Time budget per call, e.g. 5s or 1500ms (production: 5 s).
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = crate::duration::timeout)]
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
    /// made-up ones (needed with --no-test-flag, else the License callbacks are skipped). The
    /// run releases it: give one made for testing.
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
    #[arg(long, conflicts_with_all = ["endpoint", "key_file", "kit_key_file", "license_key_file", "license_code",
        "no_test_flag", "kit_path_full", "ca_file"])]
    pub demo: bool,
    /// The sso suite: your redirect URI, where the login portal sends the browser with
    /// ?code=…&tenant=… (with --demo: the reference merchant's /sso/callback).
    #[arg(long, value_name = "URL")]
    pub login_url: Option<String>,
    /// The sso suite: your logout address, expected to 302 to the IdP's logout (with --demo:
    /// the reference merchant's /sso/logout).
    #[arg(long, value_name = "URL")]
    pub logout_url: Option<String>,
    /// The sso suite: where the stand-in identity provider listens (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub idp_listen: String,
    /// The sso suite: how your app reaches the stand-in identity provider, sent as tenantSync's
    /// domainName (default: its own http://ADDR; a remote endpoint needs an address it can
    /// reach, e.g. a tunnel to --idp-listen).
    #[arg(long, value_name = "URL")]
    pub idp_url: Option<String>,
    /// With --demo: make the reference merchant wrong on purpose (see `csm serve merchant --help`).
    #[arg(long, value_name = "NAME",
          value_parser = super::callback_args::Offered(super::callback_args::merchant_fault_names))]
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
    stop: &Interrupt,
    timeout: Duration,
    faults: &[crate::merchant::Fault],
    users: usize,
) -> Result<(Vec<Target>, Vec<server::ServerHandle>)> {
    demo_targets_with(
        stop,
        timeout,
        faults,
        users,
        None,
        &[Protocol::V2, Protocol::V1],
    )
}

/// A fault the demo's checks cannot catch would pass as if it had been tried: `stall` is for
/// `csm load`, and a fault of the other protocol's callbacks changes nothing.
fn check_demo_faults(faults: &[crate::merchant::Fault], protocols: &[Protocol]) -> Result<()> {
    use crate::merchant::Fault;
    if faults.contains(&Fault::Stall) {
        return Err(CsmError::usage(
            "--fault stall: holds every reply for 2 s once, for `csm load` (coordinated omission); no test-endpoint check is meant to catch it (drop it)",
        ));
    }
    Fault::check_served(faults, protocols)
}

/// [`demo_targets`], and with `login` the v2 merchant also plays the app side of the login
/// (a key pair made for the run) against that identity provider.
fn demo_targets_with(
    stop: &Interrupt,
    timeout: Duration,
    faults: &[crate::merchant::Fault],
    users: usize,
    login: Option<&IdpRun>,
    protocols: &[Protocol],
) -> Result<(Vec<Target>, Vec<server::ServerHandle>)> {
    let mut targets = Vec::new();
    let mut servers = Vec::new();
    for &protocol in protocols {
        let keys = keys_for_demo(protocol == Protocol::V2);
        let merchant = Merchant::new(MerchantConfig {
            faults: faults.to_vec(),
            // Beyond the client's budget, so that `slow` shows without a long wait.
            fault_delay: timeout + Duration::from_millis(500),
            ..MerchantConfig::new(protocol, keys.clone())
        })?;
        let (merchant, app_key) = match login {
            Some(_) if protocol == Protocol::V2 => {
                let (cfg, key) = crate::merchant::sso::demo_pair(
                    crate::protocol::rsa_oaep::Reading::Sha256Mgf1Sha1,
                )?;
                (merchant.with_sso(cfg), Some(key))
            }
            _ => (merchant, None),
        };
        let seal = app_key.clone().map(seal_with);
        let handle = server::serve(
            "127.0.0.1:0",
            Arc::new(merchant),
            server::Config {
                title_case_headers: !faults.contains(&crate::merchant::Fault::BodySignCase),
                ..server::Config::default()
            },
        )?;
        let endpoint = parse_endpoint(&format!("http://{}/produce", handle.addr))?;
        servers.push(handle);
        targets.push(Target {
            endpoint: endpoint.clone(),
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
            clock: Arc::new(SystemClock),
            entropy: Arc::new(SystemEntropy),
            stop: stop.clone(),
            app_key,
            sso: match login {
                Some(idp) if protocol == Protocol::V2 => Some(idp.setup(
                    endpoint.join(crate::merchant::sso::CALLBACK_PATH).ok(),
                    endpoint.join(crate::merchant::sso::LOGOUT_PATH).ok(),
                    seal,
                )),
                _ => None,
            },
        });
    }
    Ok((targets, servers))
}

pub fn run(g: &GlobalArgs, a: TestEndpointArgs) -> Result<Exit> {
    // The endpoint is set once the address is parsed: a raw flag value is never echoed.
    let mut report = Report {
        demo: a.demo,
        faults: a.fault.clone(),
        ..Report::default()
    };
    // An unwritable report path is found before any call is made, not after the run; the
    // --json report still says so.
    let checked = a
        .junit
        .as_deref()
        .map(|p| crate::files::check_writable(p, "--junit"));
    // Not tried again at the end when it cannot be written.
    let junit = a
        .junit
        .as_deref()
        .filter(|_| !matches!(checked, Some(Err(_))));
    let result = match checked {
        Some(Err(e)) => Err(e),
        _ => run_suites(g, &a, &mut report),
    };
    // The reports a CI reads are written whatever happened: a run that could not start or
    // lost its endpoint says so in them, with the exit code it ends with.
    let exit = match &result {
        Ok(exit) => *exit,
        Err(e) => {
            report.error = Some(e.to_string());
            e.exit()
        }
    };
    // Written before the JSON is printed, so that the JSON tells if it failed.
    let mut exit = exit;
    let mut result = result;
    if let Some(path) = junit {
        if let Err(e) = crate::files::write_atomic(path, report.junit().as_bytes(), false) {
            let e = match e {
                CsmError::Io { path: p, source } => {
                    CsmError::io(format!("--junit {}", p.display()), source)
                }
                e => e,
            };
            // A run that failed already ends with its own error; the report names both.
            report.error = Some(match report.error.take() {
                Some(first) => format!("{first}; {e}"),
                None => e.to_string(),
            });
            if result.is_ok() {
                exit = e.exit();
                result = Err(e);
            }
        }
    }
    if g.json {
        crate::output::print_json(&report.json(exit.code()));
    } else if g.quiet {
        if !report.rows.is_empty() {
            crate::say!("{}", report.summary_line());
        }
    } else if !report.rows.is_empty() {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        let show = a
            .show
            .unwrap_or(if terminal { Show::Failures } else { Show::All });
        crate::say!("{}", report.table(show, crate::output::colour()));
    }
    result
}

/// The JUnit report of a run whose command line was refused: one error, so that CI shows it
/// rather than a report an earlier run left at the path. Best effort: the refusal itself is
/// what the process exits with.
pub fn write_refused_junit(path: &std::path::Path, err: &CsmError) {
    let report = Report {
        error: Some(err.to_string()),
        ..Report::default()
    };
    let _ = crate::files::write_atomic(path, report.junit().as_bytes(), false);
}

/// A URL flag of the sso suite, parsed by the endpoint rules.
fn url_flag(flag: &str, raw: Option<&str>) -> Result<Option<reqwest::Url>> {
    raw.map(|r| crate::endpoint::url::parse_endpoint_for(flag, r))
        .transpose()
}

/// The stand-in identity provider of the sso suite, in this process on `--idp-listen`, and
/// the URL the app is told (`--idp-url`, else its own address). Lives as long as the run.
struct IdpRun {
    idp: Arc<Idp>,
    url: reqwest::Url,
    /// `--login-url` and `--logout-url`, checked before anything starts.
    login_url: Option<reqwest::Url>,
    logout_url: Option<reqwest::Url>,
    _server: server::ServerHandle,
}

impl IdpRun {
    fn start(a: &TestEndpointArgs) -> Result<IdpRun> {
        let url = url_flag("--idp-url", a.idp_url.as_deref())?;
        let login_url = url_flag("--login-url", a.login_url.as_deref())?;
        let logout_url = url_flag("--logout-url", a.logout_url.as_deref())?;
        let idp = Arc::new(Idp::new(
            IdpConfig::default(),
            Arc::new(SystemClock),
            Arc::new(SystemEntropy),
        ));
        let server =
            server::serve(&a.idp_listen, idp.clone(), server::Config::default()).map_err(|_| {
                let why = std::net::TcpListener::bind(&a.idp_listen)
                    .err()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                CsmError::Config(format!(
                    "--idp-listen {}: cannot listen there{why}",
                    a.idp_listen
                ))
                .with_hint("pick a free address on this machine, e.g. --idp-listen 127.0.0.1:0")
            })?;
        let url = match url {
            Some(u) => u,
            None => reqwest::Url::parse(&format!("http://{}", server.addr))
                .map_err(|e| CsmError::Config(format!("--idp-listen: {e}")))?,
        };
        Ok(IdpRun {
            idp,
            url,
            login_url,
            logout_url,
            _server: server,
        })
    }

    /// The sso suite's settings for one target: the flags' URLs, else `own_login` and
    /// `own_logout` (the demo merchant's).
    fn setup(
        &self,
        own_login: Option<reqwest::Url>,
        own_logout: Option<reqwest::Url>,
        seal: Option<SealSecret>,
    ) -> SsoSetup {
        SsoSetup {
            idp: Arc::clone(&self.idp),
            idp_url: self.url.clone(),
            login_url: self.login_url.clone().or(own_login),
            logout_url: self.logout_url.clone().or(own_logout),
            seal,
        }
    }
}

/// applicationSync's clientSecret encrypted with the app public key, as the marketplace does.
fn seal_with(key: crate::protocol::rsa_oaep::AppKey) -> SealSecret {
    SealSecret(Arc::new(move |plain: &str| {
        key.encrypt(plain.as_bytes()).map_err(|e| e.to_string())
    }))
}

fn run_suites(g: &GlobalArgs, a: &TestEndpointArgs, report: &mut Report) -> Result<Exit> {
    let timeout = reply_budget(a.debug_page, a.timeout);
    let suites: Vec<Suite> = if a.suite.is_empty() && a.demo {
        // The demo merchant plays the app side of the login with a key pair made for the run.
        Suite::ALL.to_vec()
    } else if a.suite.is_empty() {
        Suite::DEFAULT.to_vec()
    } else {
        Suite::ALL
            .into_iter()
            .filter(|s| a.suite.contains(s))
            .collect()
    };
    report.suites = suites.clone();
    // clap's `requires` takes a flag's default `false` for presence: checked here, where the
    // reports still get written.
    if !a.fault.is_empty() && !a.demo {
        return Err(CsmError::usage(
            "--fault: makes the built-in merchant of --demo wrong on purpose; it does nothing to --endpoint (add --demo, or drop --fault)",
        ));
    }
    let faults = super::serve_merchant::parse_faults(&a.fault)?;
    let protocols = match a.protocol {
        Some(p) => vec![p],
        None => vec![Protocol::V2, Protocol::V1],
    };
    if a.demo {
        check_demo_faults(&faults, &protocols)?;
    }
    let stop = Interrupt::install();
    let mut targets: Vec<Target> = Vec::new();
    // Demo merchants live until the end of the run.
    let mut servers: Vec<server::ServerHandle> = Vec::new();
    // The identity provider comes first: the targets point at it.
    let idp = if suites.contains(&Suite::Sso) {
        Some(IdpRun::start(a)?)
    } else {
        None
    };
    if a.demo {
        let (t, s) = demo_targets_with(
            &stop,
            timeout,
            &faults,
            a.users as usize,
            idp.as_ref(),
            &protocols,
        )?;
        targets = t;
        servers = s;
        report.endpoint = "demo (reference merchant on 127.0.0.1)".to_string();
    } else {
        let profile = config::active_profile(g.profile.as_deref())?;
        let endpoint = endpoint_from(a.endpoint.as_deref(), &profile, ", or try --demo")?;
        report.endpoint = endpoint.to_string();
        let protocol = resolve_protocol(a.protocol, &profile)?;
        let keys = a.keys.load(&profile)?;
        // Bad input is reported before any prompt.
        let ca_pem = read_ca(a.ca_file.as_deref())?;
        let what = if a.no_test_flag {
            "test callbacks WITHOUT testFlag (as live orders)"
        } else {
            "test callbacks (marked testFlag=1)"
        };
        let app_key = a.keys.app_key()?;
        check_proxy(&endpoint)?;
        confirm_remote("--endpoint", &endpoint, a.yes, g, what)?;
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
            clock: Arc::new(SystemClock),
            entropy: Arc::new(SystemEntropy),
            stop: stop.clone(),
            app_key: app_key.clone(),
            sso: match &idp {
                Some(idp) if protocol == Protocol::V2 => Some(idp.setup(
                    None,
                    None,
                    // Sealed with --app-public-key; without one the suite says it is missing.
                    app_key.map(seal_with),
                )),
                _ => None,
            },
        });
    }
    // The login checks call --login-url and --logout-url as a browser would: not a
    // production app unless chosen on purpose. Asked once every other input is checked, and
    // only when they will be called (an app elsewhere cannot reach an identity provider on
    // loopback: the suite is skipped then).
    if let Some(idp) = idp
        .as_ref()
        .filter(|i| !crate::net::proxy::is_loopback(&i.url))
    {
        for (flag, url) in [
            ("--login-url", &idp.login_url),
            ("--logout-url", &idp.logout_url),
        ] {
            if let Some(url) = url {
                check_proxy(url)?;
                confirm_remote(flag, url, a.yes, g, "the single sign-on checks")?;
            }
        }
    }
    report.protocols = targets.iter().map(|t| t.protocol.name()).collect();
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
    let mut unreachable = None;
    let mut interrupted = false;
    for t in &targets {
        if interrupted {
            break;
        }
        let out = suites::run(t, &suites);
        interrupted = out.interrupted;
        report.rows.extend(out.rows);
        report.calls += out.calls;
        report.elapsed += out.elapsed;
        if let Some(f) = out.unreachable {
            unreachable = Some(super::callback_args::unreachable(&t.endpoint, &f));
            break;
        }
    }
    for s in servers {
        s.shutdown();
    }
    if let Some(e) = unreachable {
        return Err(e);
    }
    if interrupted {
        let why = format!(
            "interrupted (Ctrl-C or SIGTERM) after {} calls: the checks made so far are reported",
            report.calls
        );
        eprintln!("csm: {why}");
        report.error = Some(why);
        return Ok(Exit::Interrupted);
    }
    // Suites asked for that checked nothing (each of their checks skipped for want of a
    // key or a flag) must not read as a pass in CI.
    if report.count(Status::Pass) + report.count(Status::Fail) == 0 {
        // The first reason here too: -q and --json show no table.
        let first = report
            .rows
            .iter()
            .find(|r| r.status == Status::Skip)
            .map(|r| format!(" (first: {}: {})", r.check, r.actual))
            .unwrap_or_default();
        let why = format!("nothing was checked: every check of the chosen suites was skipped{first}; give what they need, or choose other suites with --suite");
        eprintln!("csm: error: {why}");
        report.error = Some(why);
        return Ok(Exit::Io);
    }
    Ok(if report.passed() {
        Exit::Ok
    } else {
        Exit::CheckFailed
    })
}
