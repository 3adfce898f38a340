//! `csm serve marketplace`: the stand-in marketplace as a real server on this machine.

use crate::cli::GlobalArgs;
use crate::error::{Exit, Result};
use crate::marketplace::Marketplace;
use crate::server;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Args)]
pub struct MarketplaceArgs {
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: String,
    /// The seller key bound to the basic interfaces: verifies usage push signatures.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// API Gateway access key id accepted by the license open APIs.
    #[arg(long, env = "CSM_AK")]
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
    /// partial-rejects[=N], batch-limit[=N], license-internal-error.
    #[arg(long, value_name = "NAME")]
    pub fault: Vec<String>,
    /// Sign License callbacks with the plain SHA-256 inner step instead of the keyed HMAC
    /// (a third-party reading of the recipe; spec decision 5).
    #[arg(long)]
    pub license_plain_sha256: bool,
    /// Send License callbacks to a --merchant-endpoint that is not loopback without asking.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub timeout: super::callback_args::ClientTimeout,
}

/// License callbacks may reach a production merchant: anything but loopback needs a yes.
fn confirm_merchant(g: &GlobalArgs, a: &MarketplaceArgs) -> Result<()> {
    let Some(raw) = &a.merchant_endpoint else {
        return Ok(());
    };
    // The shared endpoint rule (http(s), a host, no credentials, never echoed).
    let url = super::callback_args::parse_endpoint_for("--merchant-endpoint", raw)?;
    super::callback_args::confirm_remote("--merchant-endpoint", &url, a.yes, g, "License callbacks")
}

pub fn run(g: &GlobalArgs, a: MarketplaceArgs) -> Result<Exit> {
    confirm_merchant(g, &a)?;
    let listen = a.listen.clone();
    let client_timeout = a.timeout.client_timeout;
    let market = Arc::new(Marketplace::open(a)?);
    let handle = server::serve_with_timeout(&listen, market, 4, client_timeout)?;
    if !g.quiet {
        // Tests and scripts read this line to learn the port when listening on port 0.
        crate::say!("csm marketplace listening on http://{}", handle.addr);
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
    handle.wait();
    Ok(Exit::Ok)
}
