//! `csm serve merchant|marketplace`, and the server flags both share.

use crate::cli::GlobalArgs;
use crate::error::{Exit, Result};
use crate::server::{self, Log};
use clap::{Args, Subcommand};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub target: ServeTarget,
}

#[derive(Debug, Subcommand)]
pub enum ServeTarget {
    /// A reference merchant endpoint: verifies every callback and answers as KooGallery documents it.
    Merchant(super::serve_merchant::MerchantArgs),
    /// A stand-in marketplace: usage push and license open APIs, and License callbacks.
    Marketplace(super::serve_marketplace::MarketplaceArgs),
}

pub fn run(g: &GlobalArgs, a: ServeArgs) -> Result<Exit> {
    match a.target {
        ServeTarget::Merchant(m) => super::serve_merchant::run(g, m),
        ServeTarget::Marketplace(m) => super::serve_marketplace::run(g, m),
    }
}

/// The first line a server prints: where it listens (tests and scripts read it to learn the
/// port of port 0). With --json, a JSON line like the request log after it.
pub fn announce(g: &GlobalArgs, what: &str, addr: std::net::SocketAddr) {
    if g.json {
        crate::say!(
            "{}",
            serde_json::json!({ "listening": format!("http://{addr}") })
        );
    } else {
        crate::say!("csm {what} listening on http://{addr}");
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// How a server treats its clients: the same flags for both servers.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Drop a connection whose client sends no complete request head for this long (also
    /// between requests on a kept-alive connection), or takes longer than this again to send
    /// the body (answered 408): 30s, 1500ms, 2m.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = crate::duration::timeout)]
    pub client_timeout: Duration,
    /// Refuse request bodies larger than this with 413 (bytes, or with a KiB/MiB suffix).
    #[arg(long, default_value = "4MiB", value_name = "SIZE", value_parser = parse_size)]
    pub max_body: usize,
    /// Requests one kept-alive connection may carry; the last is answered with
    /// `Connection: close`.
    #[arg(long, default_value_t = server::DEFAULT_KEEP_ALIVE_MAX, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_alive_max: u32,
    /// Requests handled at once (threads; connections themselves cost none).
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
}

impl ServerArgs {
    /// The server's settings; requests are logged on stderr unless `-q`, as JSON lines with
    /// `--json`. SIGINT and SIGTERM stop the server cleanly.
    pub fn config(&self, g: &GlobalArgs) -> server::Config {
        server::Config {
            threads: usize::from(self.threads),
            client_timeout: self.client_timeout,
            max_body: self.max_body,
            keep_alive_max: self.keep_alive_max,
            title_case_headers: true,
            log: if g.quiet {
                Log::Off
            } else if g.json {
                Log::Json
            } else {
                Log::Text
            },
            stop_on_signal: true,
        }
    }
}

/// `4194304`, `512KiB`, `4MiB` (also `KB`/`MB`, `K`/`M`, read as binary units).
pub fn parse_size(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a size such as 4MiB, 512KiB or 1048576"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("{s:?}: unit must be KiB or MiB")),
    };
    match n.checked_mul(mult) {
        Some(v) if (1024..=1024 * 1024 * 1024).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: must be between 1KiB and 1024MiB")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MiB"), Ok(4 * 1024 * 1024));
        assert_eq!(parse_size("512kib"), Ok(512 * 1024));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("12").unwrap_err().contains("between"));
        assert!(parse_size("4GB").unwrap_err().contains("unit"));
        assert!(parse_size("lots").unwrap_err().contains("expected a size"));
    }

    #[test]
    fn defaults_are_the_servers() {
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            s: ServerArgs,
        }
        let t = T::parse_from(["t"]);
        assert_eq!(t.s.client_timeout, server::DEFAULT_IO_TIMEOUT);
        assert_eq!(t.s.max_body, server::DEFAULT_MAX_BODY);
        let t = T::parse_from(["t", "--client-timeout", "1500ms", "--max-body", "1MiB"]);
        assert_eq!(t.s.client_timeout, Duration::from_millis(1500));
        assert_eq!(t.s.max_body, 1024 * 1024);
    }
}
