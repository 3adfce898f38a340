//! `csm serve marketplace`: the stand-in marketplace (and its single sign-on identity
//! provider) as a real server on this machine.

use crate::catalog::KeyRole;
use crate::cli::GlobalArgs;
use crate::config::{self, Profile};
use crate::error::{CsmError, Exit, Result};
use crate::marketplace::idp::IdpConfig;
use crate::marketplace::{Fault, Marketplace, MarketplaceConfig};
use crate::protocol::v2::LicenseInner;
use crate::server;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct MarketplaceArgs {
    /// Address to listen on, loopback only (the admin API has no authentication); port 0
    /// picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: String,
    /// The seller key bound to the basic interfaces: verifies usage push signatures.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// API Gateway access key id accepted by the license open APIs (needs --sk-file; with
    /// --sk-file alone, any id is taken).
    #[arg(long, env = "CSM_AK", hide_env_values = true)]
    pub ak: Option<String>,
    /// API Gateway secret key accepted by the license open APIs.
    #[arg(long, value_name = "FILE")]
    pub sk_file: Option<PathBuf>,
    /// The key bound to the License delivery interface: signs License callbacks to the merchant.
    #[arg(long, value_name = "FILE")]
    pub license_key_file: Option<PathBuf>,
    /// The merchant's production address, for License callbacks (sent with testFlag "1"
    /// unless an admin request asks for "0"; a non-loopback address needs --yes or a confirmation).
    #[arg(long, value_name = "URL")]
    pub merchant_endpoint: Option<String>,
    /// SQLite state file (accepted usage in table usage_records); in memory when absent.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Misbehave on purpose (repeatable): 5xx[=N], slow[=MS], drop-after-store[=N],
    /// partial-rejects[=N], batch-limit[=N], license-internal-error. 5xx and
    /// drop-after-store act on the first attempt of every N-th usage batch (a retry gets
    /// through; N=1: every request)
    #[arg(long, value_name = "NAME",
          value_parser = super::callback_args::Offered(crate::marketplace::fault_names))]
    pub fault: Vec<String>,
    /// Sign License callbacks with the plain SHA-256 inner step instead of the keyed HMAC
    /// (a third-party reading of the recipe; spec decision 5).
    #[arg(long)]
    pub license_plain_sha256: bool,
    /// How long a single sign-on authorization code stays valid (not published; OAuth 2.0
    /// recommends at most 10 minutes), e.g. 300s or 2m.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = ttl)]
    pub idp_code_ttl: Duration,
    /// Lifetime of the identity provider's access tokens (documented: 7200 s).
    #[arg(long, value_name = "DURATION", default_value = "7200s", value_parser = ttl)]
    pub idp_access_ttl: Duration,
    /// Lifetime of its refresh tokens (documented: 30 days).
    #[arg(long, value_name = "DURATION", default_value = "720h", value_parser = ttl)]
    pub idp_refresh_ttl: Duration,
    /// Send License callbacks to a --merchant-endpoint that is not loopback without asking.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub server: super::serve::ServerArgs,
}

/// Code and token lifetimes: bare seconds, 1 ms to 400 days (short ones let tests see expiry).
pub fn ttl(s: &str) -> std::result::Result<Duration, String> {
    crate::duration::parse(
        s,
        crate::duration::Bare::Secs,
        Duration::from_millis(1),
        Duration::from_secs(400 * 24 * 3600),
    )
}

/// Flags and keys read and checked into the stand-in's own settings. License callbacks may
/// reach a production merchant: anything but loopback needs a yes (asked by `run`).
fn marketplace_config(a: &MarketplaceArgs) -> Result<MarketplaceConfig> {
    let faults = a
        .fault
        .iter()
        .map(|f| Fault::parse(f))
        .collect::<Result<Vec<_>>>()?;
    let merchant_endpoint = match &a.merchant_endpoint {
        Some(raw) => {
            // The shared endpoint rule (http(s), a host, no credentials, never echoed).
            Some(crate::endpoint::url::parse_endpoint_for(
                "--merchant-endpoint",
                raw,
            )?)
        }
        None => None,
    };
    // The stand-in reads keys from its flags and env only, never from a seller's profile.
    let none = Profile::default();
    let sk = config::find_key(KeyRole::Sk, a.sk_file.as_deref(), &none)?;
    // An access key id without its secret key: every signed license call is refused. Said
    // at start rather than refused: CSM_AK may be set for csm's client side (a secret key
    // alone is fine: then any access key id is taken).
    if a.ak.is_some() && sk.is_none() {
        eprintln!(
            "csm: warning: an access key id (--ak or CSM_AK) without a secret key (--sk-file or CSM_SK): the license open APIs refuse every call"
        );
    }
    Ok(MarketplaceConfig {
        usage_key: config::find_key(KeyRole::Basic, a.key_file.as_deref(), &none)?,
        ak: a.ak.clone(),
        sk,
        license_key: config::find_key(KeyRole::License, a.license_key_file.as_deref(), &none)?,
        merchant_endpoint,
        state: a.state.clone(),
        faults,
        license_inner: if a.license_plain_sha256 {
            LicenseInner::PlainSha256
        } else {
            LicenseInner::KeyedHmac
        },
        idp: IdpConfig {
            code_ttl: a.idp_code_ttl,
            access_ttl: a.idp_access_ttl,
            refresh_ttl: a.idp_refresh_ttl,
        },
    })
}

pub fn run(g: &GlobalArgs, a: MarketplaceArgs) -> Result<Exit> {
    let cfg = marketplace_config(&a)?;
    // The admin API mints and releases license codes and sends License callbacks with no
    // authentication: it answers this machine only.
    if !server::is_loopback_listen(&a.listen) {
        return Err(CsmError::usage(format!(
            "--listen {}: not a loopback address, and the stand-in's admin API (/csm/...) has no authentication; listen on 127.0.0.1 (reach it from elsewhere through a tunnel)",
            a.listen
        )));
    }
    // Asked once every flag is checked.
    if let Some(url) = &cfg.merchant_endpoint {
        super::callback_args::confirm_remote(
            "--merchant-endpoint",
            url,
            a.yes,
            g,
            "License callbacks",
        )?;
    }
    let market = Marketplace::open(cfg)?;
    let handle = server::serve(&a.listen, Arc::new(market), a.server.config(g))?;
    super::serve::announce(g, "marketplace", handle.addr);
    handle.wait();
    Ok(Exit::Ok)
}
