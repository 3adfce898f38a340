//! The stand-in marketplace: usage push API and license open APIs behind one router,
//! with its state in one SQLite database (a file with `--state`, else in memory), and the
//! stand-in identity provider of single sign-on ([`idp`], in memory) on the same server.

pub mod idp;
pub mod license_api;
pub mod usage_api;

use crate::error::{CsmError, Result};
use crate::protocol::v2::LicenseInner;
use crate::secret::Secret;
use crate::server::{Handler, Request, Response};
use reqwest::Url;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::Mutex;

/// What the stand-in is started with; keys already read.
#[derive(Debug, Default)]
pub struct MarketplaceConfig {
    /// Verifies usage push signatures.
    pub usage_key: Option<Secret>,
    /// API Gateway access key id accepted by the license open APIs.
    pub ak: Option<String>,
    /// Accepted API Gateway secret for the license open APIs.
    pub sk: Option<Secret>,
    /// Signs License callbacks sent to the merchant.
    pub license_key: Option<Secret>,
    /// Where License callbacks go (confirmed by the caller when not loopback).
    pub merchant_endpoint: Option<Url>,
    /// SQLite state file; in memory when absent.
    pub state: Option<PathBuf>,
    pub faults: Vec<Fault>,
    pub license_inner: LicenseInner,
    /// Lifetimes of the identity provider's codes and tokens.
    pub idp: idp::IdpConfig,
}

pub struct Marketplace {
    pub db: Mutex<Connection>,
    pub cfg: MarketplaceConfig,
    /// The usage push batches received so far, by content: the periodic faults act on
    /// every N-th batch, not on every N-th request, so that a batch sent again gets through.
    pub usage_batches: usage_api::Batches,
    /// The single sign-on identity provider (`/unified-login/…`, `/api/v1/…`).
    pub idp: idp::Idp,
}

/// The faults the stand-in implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The first attempt of every N-th usage push batch (default 2) answers 500 MKT.0999;
    /// with N = 1 every request does.
    ServerError,
    /// Usage pushes answer after MS milliseconds (default 2000).
    Slow,
    /// The first attempt of every N-th usage push batch (default 2) is stored, then the
    /// connection is dropped; with N = 1 every request is.
    DropAfterStore,
    /// Records of every instance whose FNV-1a hash is divisible by N (default 10) are
    /// refused with 012.
    PartialRejects,
    /// At most N records per push (default 100).
    BatchLimit,
    /// The license open APIs answer 500.
    LicenseInternalError,
}

/// A fault and its number, if one was given (`--fault 5xx=3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub param: Option<u64>,
}

/// Name, kind, what `=N` means (None: takes no number), and the smallest N.
const FAULTS: [(&str, FaultKind, Option<&str>, u64); 6] = [
    ("5xx", FaultKind::ServerError, Some("N"), 1),
    ("slow", FaultKind::Slow, Some("MS"), 0),
    ("drop-after-store", FaultKind::DropAfterStore, Some("N"), 1),
    ("partial-rejects", FaultKind::PartialRejects, Some("N"), 1),
    ("batch-limit", FaultKind::BatchLimit, Some("N"), 1),
    (
        "license-internal-error",
        FaultKind::LicenseInternalError,
        None,
        0,
    ),
];

/// Every fault name, for help and completion.
pub fn fault_names() -> Vec<&'static str> {
    FAULTS.iter().map(|f| f.0).collect()
}

fn known_faults() -> String {
    FAULTS
        .iter()
        .map(|(n, _, arg, _)| match arg {
            Some(a) => format!("{n}[={a}]"),
            None => n.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Fault {
    /// `NAME` or `NAME=N`, checked against the faults the stand-in implements.
    pub fn parse(f: &str) -> Result<Fault> {
        let (name, value) = match f.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (f, None),
        };
        let bad = |rule: String| {
            CsmError::usage(format!("--fault {f:?}: {rule} (known: {})", known_faults()))
        };
        let Some((_, kind, arg, min)) = FAULTS.iter().find(|(n, ..)| *n == name) else {
            return Err(bad("unknown fault".into()));
        };
        let param = match (arg, value) {
            (None, Some(_)) => return Err(bad(format!("{name} takes no number"))),
            (Some(a), Some(v)) => match v.parse::<u64>() {
                Ok(n) if n >= *min => Some(n),
                _ => return Err(bad(format!("{a} must be a whole number >= {min}"))),
            },
            _ => None,
        };
        Ok(Fault { kind: *kind, param })
    }
}

impl Marketplace {
    pub fn open(cfg: MarketplaceConfig) -> Result<Self> {
        let conn = match &cfg.state {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // A stand-in taking millions of usage records keeps its unique indexes in memory.
        conn.pragma_update(None, "cache_size", -65536)?;
        usage_api::init_schema(&conn)?;
        license_api::init_schema(&conn)?;
        let idp = idp::Idp::new(
            cfg.idp,
            std::sync::Arc::new(crate::clock::SystemClock),
            std::sync::Arc::new(crate::clock::SystemEntropy),
        );
        Ok(Marketplace {
            db: Mutex::new(conn),
            cfg,
            usage_batches: usage_api::Batches::default(),
            idp,
        })
    }

    pub fn has_fault(&self, kind: FaultKind) -> bool {
        self.fault_param(kind).is_some()
    }

    /// `--fault NAME` gives `Some(None)`, `--fault NAME=N` gives `Some(Some(N))`.
    pub fn fault_param(&self, kind: FaultKind) -> Option<Option<u64>> {
        self.cfg
            .faults
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| f.param)
    }
}

impl Handler for Marketplace {
    fn activity(&self, req: &Request) -> String {
        req.path().rsplit('/').next().unwrap_or("-").to_string()
    }

    fn handle(&self, req: Request) -> Response {
        if let Some(r) = self.idp.route(&req) {
            return r;
        }
        if let Some(r) = license_api::route(self, &req) {
            return r;
        }
        if let Some(r) = usage_api::route(self, &req) {
            return r;
        }
        Response::json(
            404,
            format!(
                "{{\"error_code\":\"MKT.0199\",\"error_msg\":\"no such API: {} {}\"}}",
                req.method,
                req.path().replace('"', "")
            ),
        )
    }
}
