//! The stand-in marketplace: usage push API and license open APIs behind one router,
//! with its state in one SQLite database (a file with `--state`, else in memory).

pub mod license_api;
pub mod usage_api;

use crate::commands::serve_marketplace::MarketplaceArgs;
use crate::config::{self, KeyRole, Profile};
use crate::error::Result;
use crate::secret::Secret;
use crate::server::{Handler, Request, Response};
use rusqlite::Connection;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

pub struct Marketplace {
    pub db: Mutex<Connection>,
    pub args: MarketplaceArgs,
    /// Verifies usage push signatures.
    pub usage_key: Option<Secret>,
    /// Accepted API Gateway credentials for the license open APIs.
    pub sk: Option<Secret>,
    /// Signs License callbacks sent to the merchant.
    pub license_key: Option<Secret>,
    /// Usage push requests received so far (fault modes act on every N-th).
    pub usage_requests: AtomicU64,
}

/// The faults the stand-in implements: name, what `=N` means (None: takes no number),
/// and the smallest N.
const FAULTS: [(&str, Option<&str>, u64); 6] = [
    ("5xx", Some("N"), 1),
    ("slow", Some("MS"), 0),
    ("drop-after-store", Some("N"), 1),
    ("partial-rejects", Some("N"), 1),
    ("batch-limit", Some("N"), 1),
    ("license-internal-error", None, 0),
];

fn known_faults() -> String {
    FAULTS
        .iter()
        .map(|(n, arg, _)| match arg {
            Some(a) => format!("{n}[={a}]"),
            None => n.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every `--fault` names a fault the stand-in implements, with a number in range when given.
pub fn check_faults(faults: &[String]) -> Result<()> {
    for f in faults {
        let (name, value) = match f.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (f.as_str(), None),
        };
        let bad = |rule: String| {
            crate::error::CsmError::usage(format!(
                "--fault {f:?}: {rule} (known: {})",
                known_faults()
            ))
        };
        let Some((_, arg, min)) = FAULTS.iter().find(|(n, _, _)| *n == name) else {
            return Err(bad("unknown fault".into()));
        };
        match (arg, value) {
            (None, Some(_)) => return Err(bad(format!("{name} takes no number"))),
            (Some(a), Some(v)) => match v.parse::<u64>() {
                Ok(n) if n >= *min => {}
                _ => return Err(bad(format!("{a} must be a whole number >= {min}"))),
            },
            _ => {}
        }
    }
    Ok(())
}

impl Marketplace {
    pub fn open(args: MarketplaceArgs) -> Result<Self> {
        check_faults(&args.fault)?;
        let none = Profile::default();
        let usage_key = config::find_key(KeyRole::Basic, args.key_file.as_deref(), &none)?;
        let sk = config::find_key(KeyRole::Sk, args.sk_file.as_deref(), &none)?;
        let license_key =
            config::find_key(KeyRole::License, args.license_key_file.as_deref(), &none)?;
        let conn = match &args.state {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // A stand-in taking millions of usage records keeps its unique indexes in memory.
        conn.pragma_update(None, "cache_size", -65536)?;
        usage_api::init_schema(&conn)?;
        license_api::init_schema(&conn)?;
        Ok(Marketplace {
            db: Mutex::new(conn),
            args,
            usage_key,
            sk,
            license_key,
            usage_requests: AtomicU64::new(0),
        })
    }

    pub fn has_fault(&self, name: &str) -> bool {
        self.fault_param(name).is_some()
    }

    /// `--fault NAME` gives `Some(None)`, `--fault NAME=N` gives `Some(Some(N))`.
    pub fn fault_param(&self, name: &str) -> Option<Option<u64>> {
        self.args
            .fault
            .iter()
            .find_map(|f| match f.split_once('=') {
                Some((n, v)) if n == name => Some(v.parse().ok()),
                None if f == name => Some(None),
                _ => None,
            })
    }
}

impl Handler for Marketplace {
    fn handle(&self, req: Request) -> Response {
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
