//! Sign and verify of each scheme against the raw HMAC-SHA256 work the recipe needs over the
//! same bytes, measured in the same run. The ratio is csm's overhead (canonical-form check,
//! sorting, string building, encoding the result); `scripts/bench-signing.sh` runs this and
//! prints each `csm_*` median as a ratio to its group's `raw_hmac`.
//!
//! `csm_sign` is the path a sender runs (and `csm sign` without `--json`): the signature
//! text alone. `csm_verify` is a server's check of a received signature.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use csm::protocol::hmac::hmac_sha256;
use csm::protocol::{apig, json, usage_sig, v1, v2};
use sha2::{Digest, Sha256};
use std::time::Duration;

const KEY: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
const BODY: &[u8] = br#"{"activity":"newInstance","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}"#;
const TS: &str = "1680508066618";
const NONCE: &str = "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA";

fn v2_basic(c: &mut Criterion) {
    let mut g = c.benchmark_group("saas-v2");
    let s = v2::sign_basic_bytes(KEY, BODY, TS, NONCE).unwrap();
    let cr = s.canonical_request.clone();
    g.bench_function("raw_hmac", |b| {
        b.iter(|| {
            let inner = hmac_sha256(KEY.as_bytes(), black_box(BODY));
            black_box(inner);
            hmac_sha256(KEY.as_bytes(), black_box(cr.as_bytes()))
        })
    });
    g.bench_function("csm_sign", |b| {
        b.iter(|| {
            let body = v2::signed_body(black_box(BODY)).unwrap();
            v2::basic_signature(KEY, &body, TS, NONCE, v2::LicenseInner::KeyedHmac).hex()
        })
    });
    g.bench_function("csm_verify", |b| {
        b.iter(|| {
            v2::verify_basic_bytes(
                KEY,
                black_box(BODY),
                TS,
                NONCE,
                black_box(&s.signature),
                v2::LicenseInner::KeyedHmac,
            )
            .unwrap()
        })
    });
    g.finish();
}

fn kit(c: &mut Criterion) {
    let mut g = c.benchmark_group("kit");
    let s = v2::sign_kit(KEY, &json::parse(BODY).unwrap(), TS, NONCE).unwrap();
    let cr = s.canonical_request.clone();
    g.bench_function("raw_hmac", |b| {
        b.iter(|| hmac_sha256(KEY.as_bytes(), black_box(cr.as_bytes())))
    });
    g.bench_function("csm_sign", |b| {
        b.iter(|| {
            let body = v2::signed_body(black_box(BODY)).unwrap();
            v2::kit_signature(KEY, &body, TS, NONCE).hex()
        })
    });
    g.bench_function("csm_verify", |b| {
        b.iter(|| v2::verify_kit_bytes(KEY, black_box(BODY), TS, NONCE, &s.x_sign))
    });
    g.finish();
}

fn v1_schemes(c: &mut Criterion) {
    let params: Vec<(String, String)> = [
        ("activity", "newInstance"),
        ("businessId", "61e834ba-7b97-4418-b8f7-e5345137278c"),
        ("customerId", "68cbc86abc2018ab880d92f36422fa0e"),
        ("orderId", "CS1906666666ABCDE"),
        ("productId", "00301-666666-0--0"),
        ("testFlag", "1"),
        ("timeStamp", "20200727073711903"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let t = v1::auth_token(KEY, &params).unwrap();
    let hk = format!("{KEY}20200727073711903");
    let mut g = c.benchmark_group("saas-v1");
    g.bench_function("raw_hmac", |b| {
        b.iter(|| hmac_sha256(hk.as_bytes(), black_box(t.string_to_sign.as_bytes())))
    });
    g.bench_function("csm_sign", |b| {
        b.iter(|| {
            v1::auth_token_value(KEY, black_box(&params))
                .unwrap()
                .base64()
        })
    });
    g.bench_function("csm_verify", |b| {
        b.iter(|| v1::verify_auth_token(KEY, black_box(&params), &t.auth_token).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("body-sign");
    let header = v1::body_sign_header_value(&v1::body_sign(KEY, BODY));
    g.bench_function("raw_hmac", |b| {
        b.iter(|| hmac_sha256(KEY.as_bytes(), black_box(BODY)))
    });
    g.bench_function("csm_sign", |b| {
        b.iter(|| v1::body_sign_header_value(&v1::body_sign(KEY, black_box(BODY))))
    });
    g.bench_function("csm_verify", |b| {
        b.iter(|| v1::verify_body_sign(KEY, black_box(BODY), &header).unwrap())
    });
    g.finish();
}

fn usage(c: &mut Criterion) {
    let body = br#"{"usage_records":[{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z","instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721","metering_sn":"sn-0001","record_time":"20220809T091000Z","usage_value":"99"}]}"#;
    let s = usage_sig::sign(KEY, &json::parse(body).unwrap(), TS, "n-1");
    let mut g = c.benchmark_group("usage");
    g.bench_function("raw_hmac", |b| {
        b.iter(|| hmac_sha256(KEY.as_bytes(), black_box(s.string_to_sign.as_bytes())))
    });
    g.bench_function("csm_sign", |b| {
        // Usage bodies are signed exactly as sent (decision 6).
        b.iter(|| usage_sig::signature(KEY, black_box(body), TS, "n-1").base64())
    });
    g.bench_function("csm_verify", |b| {
        b.iter(|| usage_sig::verify(KEY, black_box(body), TS, "n-1", &s.signature))
    });
    g.finish();
}

fn apig_scheme(c: &mut Criterion) {
    let headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Host".to_string(), "mkt.myhuaweicloud.com".to_string()),
        ("X-Sdk-Date".to_string(), "20240317T144237Z".to_string()),
    ];
    let signed = vec![
        "content-type".to_string(),
        "host".to_string(),
        "x-sdk-date".to_string(),
    ];
    let url = "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/activate";
    let s = apig::sign("AK", KEY, "POST", url, &headers, &signed, BODY).unwrap();
    let mut with_auth = headers.clone();
    with_auth.push(("Authorization".into(), s.authorization.clone()));
    let mut g = c.benchmark_group("apig");
    // The raw crypto of the recipe: hash the body, hash the canonical request, HMAC the result.
    g.bench_function("raw_hmac", |b| {
        b.iter(|| {
            black_box(Sha256::digest(black_box(BODY)));
            black_box(Sha256::digest(black_box(s.canonical_request.as_bytes())));
            hmac_sha256(KEY.as_bytes(), black_box(s.string_to_sign.as_bytes()))
        })
    });
    g.bench_function("csm_sign", |b| {
        b.iter(|| {
            apig::authorization("AK", KEY, "POST", url, &headers, &signed, black_box(BODY)).unwrap()
        })
    });
    g.bench_function("csm_verify", |b| {
        b.iter(|| apig::verify(KEY, "POST", url, &with_auth, black_box(BODY)).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = v2_basic, kit, v1_schemes, usage, apig_scheme
}
criterion_main!(benches);
