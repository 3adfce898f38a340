//! The one HTTP client policy of csm, for every command that calls out: `send`,
//! `test-endpoint`, `license activate|heartbeat`, `usage upload|replay` and the stand-in
//! marketplace's License callbacks.
//!
//! - Redirects are never followed: a 3xx is an answer, reported with its `Location`
//!   ([`redirect_note`]). Signed requests go to the address given and nowhere else.
//! - User agent `csm/VERSION` ([`USER_AGENT`]).
//! - A connect timeout and a total timeout ([`Settings`]).
//! - TLS 1.2 or 1.3 on rustls, certificates verified against the webpki roots plus an
//!   optional extra CA (`--ca-file`) ([`tls`]).
//! - Proxies from `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` for other hosts,
//!   never for loopback ([`proxy`]).
//!
//! Three clients follow it: reqwest ([`Settings::blocking`]) for the marketplace APIs, the
//! raw HTTP/1.1 exchange of [`raw`] for callbacks, which keeps header names as received, and
//! the keep-alive pool of [`pool`] ([`Settings::pool`]) for `csm load`, which keeps them too.

pub mod failure;
pub mod pool;
pub mod proxy;
pub mod raw;
pub mod tls;

pub use failure::{NetFailure, NetKind};

use reqwest::Url;
use std::time::Duration;

pub const USER_AGENT: &str = concat!("csm/", env!("CARGO_PKG_VERSION"));

/// How long connecting may take at most, whatever the total timeout.
pub const MAX_CONNECT: Duration = Duration::from_secs(10);

/// What a caller chooses of the policy: the time budget and an extra trusted root.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The whole exchange: connect, TLS, request, reply.
    pub timeout: Duration,
    /// An extra trusted root (PEM, as checked by [`tls::parse_ca`]).
    pub ca_pem: Option<Vec<u8>>,
}

impl Settings {
    pub fn new(timeout: Duration) -> Settings {
        // Every client of a run is made here: a no_proxy list that cannot work is said once
        // a run, not per request.
        static SAID: std::sync::Once = std::sync::Once::new();
        if let Some(problem) = proxy::no_proxy_problem(&proxy::from_env) {
            SAID.call_once(|| eprintln!("csm: warning: {problem}"));
        }
        Settings {
            timeout,
            ca_pem: None,
        }
    }

    pub fn with_ca(mut self, pem: Option<Vec<u8>>) -> Settings {
        self.ca_pem = pem;
        self
    }

    pub fn connect_timeout(&self) -> Duration {
        self.timeout.min(MAX_CONNECT)
    }

    /// A reqwest client for calls to `url` (its proxy is chosen for that host). Errors are
    /// one line naming what is wrong (`--ca-file`, a proxy variable).
    pub fn blocking(&self, url: &Url) -> Result<reqwest::blocking::Client, String> {
        let mut b = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout())
            .user_agent(USER_AGENT)
            .use_preconfigured_tls(tls::client_config(self.ca_pem.as_deref())?)
            .no_proxy();
        if let Some(p) = proxy::for_url(url, &proxy::from_env)? {
            let all = reqwest::Proxy::all(p.url.clone())
                .map_err(|e| format!("{}: {} ({e})", p.var, p.shown()))?;
            b = b.proxy(all);
        }
        b.build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))
    }
}

/// The proxy calls to `url` go through, as a failure names it (`proxy HOST:PORT from
/// https_proxy`); None without one.
pub fn proxy_named(url: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    proxy::for_url(&url, &proxy::from_env)
        .ok()
        .flatten()
        .map(|p| p.named())
}

/// What a 3xx answer is, after its status: csm never follows it (the request is signed for
/// this address), so the caller should point the endpoint at the final address.
pub fn redirect_note(location: Option<&str>) -> String {
    match location {
        Some(l) => {
            let shown: String = l.chars().take(300).collect();
            format!("redirect to {shown:?}, not followed")
        }
        None => "redirect without a Location, not followed".into(),
    }
}

pub fn is_redirect(status: u16) -> bool {
    (300..400).contains(&status)
}
