//! Sending a prepared callback and reading the reply, within a time budget and a size cap,
//! through the raw exchange of [`crate::net::raw`] (plain HTTP or TLS): header names are
//! seen exactly as the endpoint wrote them, so the `Body-Sign` name is checked over HTTPS too.

use super::request::Prepared;
use crate::net::raw::{Raw, Request};
use crate::net::Settings;
use reqwest::Url;
use std::time::{Duration, Instant};

pub use crate::net::raw::{Reply, MAX_REPLY};
pub use crate::net::{NetFailure, NetKind};

#[derive(Debug, Clone)]
pub struct Exchange {
    pub request: Prepared,
    pub outcome: Result<Reply, NetFailure>,
    pub latency: Duration,
}

pub struct Client {
    raw: Raw,
}

impl Client {
    pub fn new(timeout: Duration) -> Client {
        Client {
            raw: Raw::new(Settings::new(timeout)),
        }
    }

    /// An extra trusted root (PEM), for staging endpoints behind a private CA.
    pub fn with_ca(self, pem: Option<Vec<u8>>) -> Client {
        Client {
            raw: Raw::new(Settings::new(self.raw.timeout()).with_ca(pem)),
        }
    }

    pub fn send(&mut self, req: &Prepared) -> Exchange {
        let start = Instant::now();
        let outcome = match Url::parse(&req.url) {
            Err(e) => Err(NetFailure::new(
                NetKind::Connect,
                format!("{}: not a URL ({e})", req.url),
            )),
            Ok(url) => self.raw.exchange(&Request {
                method: req.method,
                url: &url,
                headers: &req.headers,
                body: &req.body,
            }),
        };
        Exchange {
            request: req.clone(),
            outcome,
            latency: start.elapsed(),
        }
    }
}
