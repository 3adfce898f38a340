//! Codes generated and validated per second, against the raw Ed25519 sign and verify of the
//! same bytes measured in the same run. Goal: csm within 1.3x of raw.
//!
//! `cargo bench --bench license` runs criterion on the four operations, then prints the
//! ratios from an interleaved measurement (rounds alternate raw and csm, medians compared).

use chrono::NaiveDate;
use criterion::{black_box, Criterion};
use csm::license::{self, keys::SIGN_CONTEXT, payload, Keyring, Payload, Policy, PrivateKey};
use ed25519_dalek::{Signature, Signer, Verifier};
use std::time::Instant;

struct Fixture {
    key: PrivateKey,
    payload: Payload,
    message: Vec<u8>,
    signature: Signature,
    code: String,
    ring: Keyring,
    at: NaiveDate,
}

fn fixture() -> Fixture {
    let key = PrivateKey::from_seed([42; 32]);
    let payload = Payload {
        key_id: key.id,
        serial: 123_456_789,
        product: "OFFI720000000000001".into(),
        sku: "basic-annual".into(),
        customer: "0a1b2c3d4e5f6a7b8c9d".into(),
        issued: payload::day_number(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()).unwrap(),
        expires: payload::day_number(NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()).unwrap(),
        grace_days: 14,
        features: vec!["export".into(), "sso".into()],
        seats: 25,
    };
    let mut message = SIGN_CONTEXT.to_vec();
    message.extend_from_slice(&payload::encode(&payload));
    let signature = key.key.sign(&message);
    let code = license::issue_code(&key, &payload);
    let mut ring = Keyring::default();
    ring.public.push(key.public());
    Fixture {
        key,
        payload,
        message,
        signature,
        code,
        ring,
        at: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
    }
}

fn raw_sign(f: &Fixture) -> Signature {
    f.key.key.sign(black_box(&f.message))
}

fn csm_gen(f: &Fixture) -> String {
    license::issue_code(&f.key, black_box(&f.payload))
}

fn raw_verify(f: &Fixture) -> bool {
    let vk = f.key.key.verifying_key();
    vk.verify(black_box(&f.message), &f.signature).is_ok()
}

fn csm_validate(f: &Fixture) -> bool {
    license::validate(black_box(&f.code), &f.ring, &Policy::default(), f.at)
        .kind
        .is_valid()
}

fn criterion_benches(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("license");
    g.bench_function("raw_ed25519_sign", |b| b.iter(|| raw_sign(f)));
    g.bench_function("csm_gen_code", |b| b.iter(|| csm_gen(f)));
    g.bench_function("raw_ed25519_verify", |b| b.iter(|| raw_verify(f)));
    g.bench_function("csm_validate_code", |b| b.iter(|| csm_validate(f)));
    g.finish();
}

/// Nanoseconds per call of `op`, over `n` calls.
fn per_call<T>(n: u32, mut op: impl FnMut() -> T) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        black_box(op());
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Raw and csm alternate round by round, so both see the same machine load.
fn ratios(f: &Fixture) {
    let (rounds, n) = (15, 2000);
    let (mut rs, mut cg, mut rv, mut cv) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        rs.push(per_call(n, || raw_sign(f)));
        cg.push(per_call(n, || csm_gen(f)));
        rv.push(per_call(n, || raw_verify(f)));
        cv.push(per_call(n, || csm_validate(f)));
    }
    let (rs, cg, rv, cv) = (median(rs), median(cg), median(rv), median(cv));
    println!();
    println!(
        "license codes, {} characters, medians of {rounds} interleaved rounds of {n}:",
        f.code.len()
    );
    println!(
        "  generate: csm {:>9.0}/s  raw Ed25519 sign   {:>9.0}/s  ratio {:.2}x",
        1e9 / cg,
        1e9 / rs,
        cg / rs
    );
    println!(
        "  validate: csm {:>9.0}/s  raw Ed25519 verify {:>9.0}/s  ratio {:.2}x",
        1e9 / cv,
        1e9 / rv,
        cv / rv
    );
    println!("  goal: ratio <= 1.30");
}

fn main() {
    let f = fixture();
    assert!(csm_validate(&f), "the fixture code must validate");
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &f);
    c.final_summary();
    ratios(&f);
}
