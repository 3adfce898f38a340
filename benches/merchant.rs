//! The reference merchant's own work per request, without HTTP: `Merchant::handle` on an
//! accepted signed newInstance (fresh ids, nonce and signature each time, as `csm load`
//! sends them) against an unsigned newInstance it refuses at the signature check (the body
//! `scripts/bench-load.sh` gives wrk). Their difference is what makes the merchant slower
//! under `csm load` than under wrk; the HTTP and kernel work around it is the same for both.
//!
//! `cargo bench --bench merchant` prints the median time of each over several rounds and
//! their ratio, measured in the same run. The requests are built before the clock starts, on a
//! merchant whose instance table is already full, as in a long run.

mod common;

use common::{median, prepared, us, KEY};
use csm::catalog::Protocol;
use csm::endpoint::request::Keys;
use csm::merchant::{Merchant, MerchantConfig};
use csm::secret::Secret;
use csm::server::{Handler, Request};
use reqwest::Url;
use std::hint::black_box;
use std::time::{Duration, Instant};

// The allocator `csm` itself uses (src/main.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 7;
const PER_ROUND: usize = 30_000;

/// What bench-load.sh gives wrk: no signature, so the merchant refuses it with 000001.
const UNSIGNED: &str = r#"{"activity":"newInstance","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}"#;

fn merchant() -> Merchant {
    let keys = Keys {
        basic: Some(Secret::new(KEY)),
        kit: None,
        license: None,
    };
    Merchant::new(MerchantConfig::new(Protocol::V2, keys)).unwrap()
}

fn headers(len: usize) -> Vec<(String, String)> {
    vec![
        ("host".into(), "127.0.0.1:8080".into()),
        ("content-type".into(), "application/json".into()),
        ("content-length".into(), len.to_string()),
    ]
}

/// A signed newInstance as `csm load` generates it.
fn signed(url: &Url) -> Request {
    let p = prepared("newInstance", url);
    let u = Url::parse(&p.url).unwrap();
    let mut h = headers(p.body.len());
    h.extend(p.headers);
    Request {
        method: p.method.into(),
        url: format!("{}?{}", u.path(), u.query().unwrap_or("")),
        headers: h,
        body: p.body,
    }
}

fn unsigned() -> Request {
    Request {
        method: "POST".into(),
        url: "/produce".into(),
        headers: headers(UNSIGNED.len()),
        body: UNSIGNED.as_bytes().to_vec(),
    }
}

/// The resultCode the merchant answers `r` with.
fn result_code(m: &Merchant, r: Request) -> String {
    let v: serde_json::Value = serde_json::from_slice(&m.handle(r).body).unwrap();
    v["resultCode"].as_str().unwrap_or("(none)").to_string()
}

/// Median over rounds of the time per request, each round on requests built beforehand.
fn measure(m: &Merchant, build: &dyn Fn() -> Request, want: &str) -> Duration {
    let rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let reqs: Vec<Request> = (0..PER_ROUND).map(|_| build()).collect();
            let t = Instant::now();
            for r in reqs {
                black_box(m.handle(black_box(r)));
            }
            let took = t.elapsed() / PER_ROUND as u32;
            // The merchant as the round left it still answers as it should.
            assert_eq!(result_code(m, build()), want);
            took
        })
        .collect();
    median(rounds)
}

fn main() {
    let url = Url::parse("http://127.0.0.1:8080/produce").unwrap();
    // Check once, outside the timing, that each request gets the answer it is meant to.
    let m = merchant();
    assert_eq!(result_code(&m, signed(&url)), "000000");
    assert_eq!(result_code(&m, unsigned()), "000001");

    // Measured in the steady state of a long run: the instance table at its bound.
    let m = merchant();
    for _ in 0..csm::merchant::store::MEMORY_ROWS + 10_000 {
        m.handle(signed(&url));
    }
    let refused = measure(&m, &unsigned, "000001");
    let accepted = measure(&m, &|| signed(&url), "000000");
    println!("merchant handle, medians of {ROUNDS} rounds of {PER_ROUND} (same run)");
    println!(
        "  unsigned newInstance, refused (wrk's): {:>6.2} us (baseline 1.00x)",
        us(refused)
    );
    println!(
        "  signed newInstance, accepted (csm's):  {:>6.2} us ({:.2}x, {:.2} us more)",
        us(accepted),
        us(accepted) / us(refused),
        us(accepted) - us(refused)
    );
}
