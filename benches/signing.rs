//! One benchmark per signing scheme: the sender's signature and the receiver's check of it,
//! as a regression alarm (criterion reports a change against the last run).

use criterion::{criterion_group, criterion_main, Criterion};
use csm::protocol::{apig, usage_sig, v1, v2};
use std::hint::black_box;
use std::time::Duration;

const KEY: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
const BODY: &[u8] = br#"{"activity":"newInstance","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}"#;
const USAGE_BODY: &[u8] = br#"{"usage_records":[{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z","instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721","metering_sn":"sn-0001","record_time":"20220809T091000Z","usage_value":"99"}]}"#;
const TS: &str = "1680508066618";
const NONCE: &str = "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA";
const URL: &str = "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/activate";

fn signing(c: &mut Criterion) {
    let keyed = v2::LicenseInner::KeyedHmac;
    c.bench_function("saas-v2", |b| {
        b.iter(|| {
            let body = v2::signed_body(black_box(BODY)).unwrap();
            let sig = v2::basic_signature(KEY, body.as_bytes(), TS, NONCE, keyed).hex_upper();
            assert!(v2::verify_basic_bytes(KEY, BODY, TS, NONCE, &sig, keyed).is_some());
        })
    });
    c.bench_function("kit", |b| {
        b.iter(|| {
            let body = v2::signed_body(black_box(BODY)).unwrap();
            let sig = v2::kit_signature(KEY, body.as_bytes(), TS, NONCE).hex_upper();
            assert!(v2::verify_kit_bytes(KEY, BODY, TS, NONCE, &sig).is_some());
        })
    });
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
    c.bench_function("saas-v1", |b| {
        b.iter(|| {
            let token = v1::auth_token(KEY, black_box(&params)).unwrap().auth_token;
            assert!(v1::verify_auth_token(KEY, &params, &token).unwrap());
        })
    });
    c.bench_function("body-sign", |b| {
        b.iter(|| {
            let header = v1::body_sign_header_value(&v1::body_sign(KEY, black_box(BODY)));
            assert!(v1::verify_body_sign(KEY, BODY, &header).unwrap());
        })
    });
    c.bench_function("usage", |b| {
        b.iter(|| {
            let sig = usage_sig::signature(KEY, black_box(USAGE_BODY), TS, "n-1").base64();
            assert!(usage_sig::verify(KEY, USAGE_BODY, TS, "n-1", &sig));
        })
    });
    let headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Host".to_string(), "mkt.myhuaweicloud.com".to_string()),
        ("X-Sdk-Date".to_string(), "20240317T144237Z".to_string()),
    ];
    let signed = ["content-type", "host", "x-sdk-date"];
    c.bench_function("apig", |b| {
        b.iter(|| {
            let auth = apig::authorization("AK", KEY, "POST", URL, &headers, &signed, BODY);
            let mut received = headers.clone();
            received.push(("Authorization".into(), auth.unwrap()));
            assert!(apig::verify(KEY, "POST", URL, &received, black_box(BODY)).unwrap());
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = signing
}
criterion_main!(benches);
