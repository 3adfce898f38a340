//! The readiness rules: what the marketplace asks of a production address (HTTPS, TLS ≥ 1.2,
//! a certificate valid for the host, a domain name, port 443, replies within 5 s), judged
//! from what a run saw. No calls of their own.

use super::{Family, Rule};
use crate::endpoint::client::{Exchange, NetKind};
use crate::net::proxy::{host_ip, is_loopback};
use reqwest::Url;
use std::time::Duration;

/// The production budget the readiness suite holds replies to (spec §1).
pub const PRODUCTION_BUDGET: Duration = Duration::from_secs(5);

/// What readiness needs from every exchange of a run.
#[derive(Debug, Default)]
pub struct Seen {
    /// The first TLS failure.
    pub tls_failure: Option<String>,
    /// The slowest reply, if any came.
    pub slowest: Option<Duration>,
}

impl Seen {
    pub fn record(&mut self, ex: &Exchange) {
        match &ex.outcome {
            Ok(_) => self.slowest = self.slowest.max(Some(ex.latency)),
            Err(f) if f.kind == NetKind::Tls && self.tls_failure.is_none() => {
                self.tls_failure = Some(f.message.clone())
            }
            Err(_) => {}
        }
    }
}

/// The readiness rules for `url`, judged from the exchanges of the run (no extra calls).
/// `ca_file`: the client also trusted a `--ca-file` root, so a completed handshake does not
/// show that the public roots the marketplace uses would accept the certificate.
pub fn readiness_rules(url: &Url, seen: &Seen, ca_file: bool) -> Vec<(String, Rule)> {
    let f = Family::Readiness;
    if is_loopback(url) {
        return vec![(
            "production address".into(),
            Rule::skip(
                f,
                "loopback URL: HTTPS, TLS, certificate, domain name and port 443 apply to the production address only",
            ),
        )];
    }
    let mut out = Vec::new();
    let https = url.scheme() == "https";
    out.push((
        "HTTPS".into(),
        if https {
            Rule::pass(f, "https://", "https://")
        } else {
            Rule::fail(
                f,
                "https://",
                format!("{}://", url.scheme()),
                "register an https:// address; the marketplace calls HTTPS only",
            )
        },
    ));
    let host = url.host_str().unwrap_or("").to_string();
    out.push((
        "domain name, not an IP address".into(),
        if host_ip(url).is_some() {
            Rule::fail(
                f,
                "a domain name",
                host,
                "register the address under a domain name",
            )
        } else {
            Rule::pass(f, "a domain name", host)
        },
    ));
    let port = url.port_or_known_default().unwrap_or(0);
    out.push((
        "port 443".into(),
        if port == 443 {
            Rule::pass(f, "443", "443")
        } else {
            Rule::fail(
                f,
                "443",
                port.to_string(),
                "serve on the default HTTPS port 443",
            )
        },
    ));
    // The client insists on TLS ≥ 1.2 and verifies the certificate for the host, so one
    // completed exchange proves both.
    let tls_fail = seen.tls_failure.as_ref();
    let replied = seen.slowest.is_some();
    let want = "TLS ≥ 1.2 with a certificate valid for the host";
    let tls_rule = match (https, tls_fail, replied) {
        (false, _, _) => Rule::skip(f, "not HTTPS"),
        (true, _, _) if ca_file => Rule::fail(
            f,
            want,
            "trusted only through --ca-file; the marketplace uses public roots",
            "install a certificate from a public CA, then run without --ca-file to check it",
        ),
        (true, Some(e), _) => Rule::fail(
            f,
            want,
            e.clone(),
            "install a certificate from a trusted CA covering this host name; enable TLS 1.2 or 1.3",
        ),
        (true, None, true) => Rule::pass(f, want, "handshake verified"),
        (true, None, false) => Rule::skip(f, "no reply to judge TLS by"),
    };
    out.push(("TLS ≥ 1.2, certificate valid for the host".into(), tls_rule));
    let slowest = seen.slowest;
    let limit = PRODUCTION_BUDGET.as_millis();
    let rule = match slowest {
        None => Rule::skip(f, "no reply"),
        Some(d) if d <= PRODUCTION_BUDGET => {
            Rule::pass(f, format!("≤ {limit} ms"), format!("{} ms", d.as_millis()))
        }
        Some(d) => Rule::fail(
            f,
            format!("≤ {limit} ms"),
            format!("{} ms", d.as_millis()),
            format!("answer within the {limit} ms production budget"),
        ),
    };
    out.push((format!("slowest reply within {limit} ms"), rule));
    out
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;
    use crate::catalog::{self, Protocol};
    use crate::endpoint::client::{NetFailure, Reply};
    use crate::endpoint::request::{self, PrepOpts, Tamper};

    fn exchange(url: &str, outcome: Result<Reply, NetFailure>, ms: u64) -> Exchange {
        let cb = catalog::find("queryInstance", Protocol::V2).unwrap();
        let u = Url::parse(url).unwrap();
        let p = request::prepare(
            cb,
            None,
            serde_json::Map::new(),
            &crate::secret::Secret::new("k"),
            &PrepOpts {
                endpoint: &u,
                now_ms: 1,
                nonce: "n".into(),
                tamper: Tamper::None,
                kit_path_full: false,
                license_inner: crate::protocol::v2::LicenseInner::KeyedHmac,
            },
        )
        .unwrap();
        Exchange {
            request: p,
            outcome,
            latency: Duration::from_millis(ms),
        }
    }

    #[test]
    fn readiness_judges_a_production_address() {
        let seen = |ex: &[Exchange]| {
            let mut s = Seen::default();
            ex.iter().for_each(|e| s.record(e));
            s
        };
        let statuses = |url: &str, ex: &[Exchange]| -> Vec<Status> {
            readiness_rules(&Url::parse(url).unwrap(), &seen(ex), false)
                .into_iter()
                .map(|(_, r)| r.status)
                .collect()
        };
        let ok = Reply::new(200, vec![], vec![], false, false);
        let good = "https://isv.example.com/produce";
        assert_eq!(
            statuses(good, &[exchange(good, Ok(ok.clone()), 30)]),
            vec![Status::Pass; 5]
        );
        let bad = "http://203.0.113.7:8080/produce";
        assert_eq!(
            statuses(bad, &[exchange(bad, Ok(ok.clone()), 6000)]),
            vec![
                Status::Fail,
                Status::Fail,
                Status::Fail,
                Status::Skip,
                Status::Fail
            ]
        );
        let tls = exchange(
            good,
            Err(NetFailure::new(
                NetKind::Tls,
                "invalid peer certificate: Expired",
            )),
            5,
        );
        let rules = readiness_rules(&Url::parse(good).unwrap(), &seen(&[tls]), false);
        assert_eq!(rules[3].1.status, Status::Fail);
        assert!(rules[3].1.actual.contains("Expired"));
        // A handshake that succeeded only thanks to --ca-file proves nothing about the
        // public roots the marketplace uses.
        let rules = readiness_rules(
            &Url::parse(good).unwrap(),
            &seen(&[exchange(good, Ok(ok.clone()), 30)]),
            true,
        );
        assert_eq!(rules[3].1.status, Status::Fail);
        assert!(
            rules[3].1.actual.contains("trusted only through --ca-file"),
            "{}",
            rules[3].1.actual
        );
        assert_eq!(statuses("http://127.0.0.1:9/", &[]), vec![Status::Skip]);
    }

    #[test]
    fn loopback_detection() {
        for (u, want) in [
            ("http://127.0.0.1:8080/produce", true),
            ("http://localhost/", true),
            ("http://[::1]:9/", true),
            ("https://isv.example.com/produce", false),
            ("https://10.0.0.1/", false),
        ] {
            assert_eq!(is_loopback(&Url::parse(u).unwrap()), want, "{u}");
        }
    }
}
