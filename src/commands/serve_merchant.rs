//! `csm serve merchant`: the reference merchant endpoint as a real server on this machine.

use crate::catalog::Protocol;
use crate::cli::GlobalArgs;
use crate::commands::sign::LicenseInnerArg;
use crate::config;
use crate::duration::Bare;
use crate::error::{Exit, Result};
use crate::merchant::sso::SsoConfig;
use crate::merchant::{Fault, Merchant, MerchantConfig};
use crate::server;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:
  csm serve merchant --listen 127.0.0.1:8088 --key-file basic.key --kit-key-file kit.key
  csm serve merchant --listen 127.0.0.1:0 --protocol v1 --key-file basic.key --state merchant.db
  csm serve merchant --key-file basic.key --fault bad-body-sign --record requests.jsonl
  csm serve merchant --kit-key-file kit.key --app-private-key app.pem   (login at /sso/callback)")]
pub struct MerchantArgs {
    /// Address to listen on; port 0 picks a free port (printed on the first line).
    #[arg(long, default_value = "127.0.0.1:8088", value_name = "ADDR")]
    pub listen: String,
    #[command(flatten)]
    pub keys: super::callback_args::InterfaceKeyFiles,
    /// The joint-operation app's RSA private key (PKCS#8 PEM, at least 3072 bits): each
    /// applicationSync's clientSecret is decrypted with it, trying the OAEP readings
    /// sha256-mgf1sha1, sha256 and sha1 (the one that matched is logged), and refused with
    /// 000101 when none does. The login at /sso/callback needs it.
    #[arg(long, value_name = "FILE")]
    pub app_private_key: Option<PathBuf>,
    /// How long a login at /sso/callback waits for the identity provider (token, userinfo).
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = crate::duration::timeout)]
    pub idp_timeout: Duration,
    /// Which basic protocol to answer: v2 (POST JSON) or v1 (GET with authToken).
    #[arg(long, value_enum, default_value = "v2")]
    pub protocol: Protocol,
    /// Be wrong on purpose (repeatable): bad-body-sign, body-sign-case (header names in lower
    /// case), wrong-code, slow, not-idempotent, accept-bad-signatures, drop-fields,
    /// wrong-encryption, stall (stops answering for 2 s, 1 s after the first request);
    /// login: sso-secret-encrypted (sends clientSecret still encrypted), sso-code-reuse (a
    /// replayed code logs in without the identity provider), sso-skip-userinfo (logs in
    /// without asking userinfo).
    #[arg(long, value_name = "NAME",
          value_parser = super::callback_args::Offered(super::callback_args::merchant_fault_names))]
    pub fault: Vec<String>,
    /// How long the `slow` fault waits before answering (beyond the 5 s budget by default).
    #[arg(long, default_value = "6s", value_name = "DURATION", value_parser = crate::duration::timeout)]
    pub fault_delay: Duration,
    /// Replay window for V2 timestamps: 60s, 5m; a bare number is seconds (1s to 24h).
    #[arg(long, default_value = "60s", value_name = "DURATION",
          value_parser = crate::duration::flag(Bare::Secs, Duration::from_secs(1), Duration::from_secs(86_400)))]
    pub window: Duration,
    /// SQLite file for instances, license codes and Kit records. Without it they live in
    /// memory, bounded for long load runs: the 100,000 of each written last are kept; nonces are
    /// remembered for the replay window (--window) only, so their number is bounded by the
    /// requests of one window.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Append every received request, raw, to FILE as JSON lines (for auditing signatures;
    /// cookies, Authorization and the login pages' codes are recorded as <redacted>).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Inner step expected in License 2.0 signatures (decision 5).
    #[arg(long, value_enum, default_value_t = LicenseInnerArg::KeyedHmac)]
    pub license_inner: LicenseInnerArg,
    #[command(flatten)]
    pub server: super::serve::ServerArgs,
}

pub fn parse_faults(names: &[String]) -> Result<Vec<Fault>> {
    names
        .iter()
        .flat_map(|n| n.split(','))
        .filter(|n| !n.is_empty())
        .map(Fault::parse)
        .collect()
}

pub fn run(g: &GlobalArgs, a: MerchantArgs) -> Result<Exit> {
    let profile = config::active_profile(g.profile.as_deref())?;
    // Each interface type is served when its key is given (a License-only product has no
    // basic key); at least one is needed.
    let keys = a.keys.load(&profile)?;
    let faults = parse_faults(&a.fault)?;
    Fault::check_served(&faults, &[a.protocol])?;
    let cfg = MerchantConfig {
        protocol: a.protocol,
        keys,
        faults,
        fault_delay: a.fault_delay,
        window_ms: a.window.as_millis() as i64,
        state: a.state.clone(),
        record: a.record.clone(),
        license_inner: a.license_inner.into(),
    };
    let mut server_cfg = a.server.config(g);
    // Hyper writes every header name in Title-Case or none: the fault writes all in lower case.
    server_cfg.title_case_headers = !cfg.faults.contains(&Fault::BodySignCase);
    let app_key = match &a.app_private_key {
        Some(p) => Some(Arc::new(super::callback_args::read_rsa_pem(
            p,
            "--app-private-key",
            crate::protocol::rsa_oaep::private_key_from_pem,
        )?)),
        None => None,
    };
    let merchant = Merchant::new(cfg)?.with_sso(SsoConfig {
        key: app_key,
        timeout: a.idp_timeout,
        log: server_cfg.log,
    });
    let handle = server::serve(&a.listen, Arc::new(merchant), server_cfg)?;
    super::serve::announce(g, "merchant", handle.addr);
    if !g.quiet && !g.json {
        eprintln!(
            "  basic and License callbacks at http://{0}/produce, Kit at http://{0}/produceAPI/{1}<name>, login redirect at http://{0}/sso/callback",
            handle.addr,
            if a.protocol == Protocol::V2 { "v2/" } else { "" }
        );
    }
    handle.wait();
    Ok(Exit::Ok)
}
