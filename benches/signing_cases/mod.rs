//! The signing cases both signing benchmarks run: per scheme, the raw HMAC-SHA256 work the
//! recipe needs over the same bytes (the baseline), csm's sign path (what a sender runs, and
//! `csm sign` without `--json`: the signature text alone) and csm's verify path (a server's
//! check of a received signature). Each runs `n` times inside one call, so the benchmarks
//! time loops and not calls through a box.

use csm::protocol::hmac::hmac_sha256;
use csm::protocol::{apig, json, usage_sig, v1, v2};
use sha2::{Digest, Sha256};
use std::hint::black_box;

pub type Run = Box<dyn Fn(u64)>;

pub struct Case {
    pub scheme: &'static str,
    pub raw_hmac: Run,
    pub csm_sign: Run,
    pub csm_verify: Run,
}

const KEY: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
const BODY: &[u8] = br#"{"activity":"newInstance","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}"#;
const TS: &str = "1680508066618";
const NONCE: &str = "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA";

fn run(f: impl Fn() + 'static) -> Run {
    Box::new(move |n| {
        for _ in 0..n {
            f();
        }
    })
}

pub fn all() -> Vec<Case> {
    vec![
        saas_v2(),
        kit(),
        saas_v1(),
        body_sign(),
        usage(),
        apig_case(),
    ]
}

fn saas_v2() -> Case {
    let s = v2::sign_basic_bytes(KEY, BODY, TS, NONCE).unwrap();
    let cr = s.canonical_request.clone();
    Case {
        scheme: "saas-v2",
        raw_hmac: run(move || {
            black_box(hmac_sha256(KEY.as_bytes(), black_box(BODY)));
            black_box(hmac_sha256(KEY.as_bytes(), black_box(cr.as_bytes())));
        }),
        csm_sign: run(|| {
            let body = v2::signed_body(black_box(BODY)).unwrap();
            black_box(
                v2::basic_signature(KEY, body.as_bytes(), TS, NONCE, v2::LicenseInner::KeyedHmac)
                    .hex(),
            );
        }),
        csm_verify: run(move || {
            let ok = v2::verify_basic_bytes(
                KEY,
                black_box(BODY),
                TS,
                NONCE,
                black_box(&s.signature),
                v2::LicenseInner::KeyedHmac,
            );
            black_box(ok.unwrap());
        }),
    }
}

fn kit() -> Case {
    let s = v2::sign_kit(KEY, &json::parse(BODY).unwrap(), TS, NONCE).unwrap();
    let cr = s.canonical_request.clone();
    Case {
        scheme: "kit",
        raw_hmac: run(move || {
            black_box(hmac_sha256(KEY.as_bytes(), black_box(cr.as_bytes())));
        }),
        csm_sign: run(|| {
            let body = v2::signed_body(black_box(BODY)).unwrap();
            black_box(v2::kit_signature(KEY, body.as_bytes(), TS, NONCE).hex());
        }),
        csm_verify: run(move || {
            black_box(v2::verify_kit_bytes(
                KEY,
                black_box(BODY),
                TS,
                NONCE,
                &s.x_sign,
            ));
        }),
    }
}

fn saas_v1() -> Case {
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
    let sign_params = params.clone();
    Case {
        scheme: "saas-v1",
        raw_hmac: run(move || {
            black_box(hmac_sha256(
                hk.as_bytes(),
                black_box(t.string_to_sign.as_bytes()),
            ));
        }),
        csm_sign: run(move || {
            black_box(v1::auth_token(KEY, black_box(&sign_params)).unwrap());
        }),
        csm_verify: run(move || {
            black_box(v1::verify_auth_token(KEY, black_box(&params), &t.auth_token).unwrap());
        }),
    }
}

fn body_sign() -> Case {
    let header = v1::body_sign_header_value(&v1::body_sign(KEY, BODY));
    Case {
        scheme: "body-sign",
        raw_hmac: run(|| {
            black_box(hmac_sha256(KEY.as_bytes(), black_box(BODY)));
        }),
        csm_sign: run(|| {
            black_box(v1::body_sign_header_value(&v1::body_sign(
                KEY,
                black_box(BODY),
            )));
        }),
        csm_verify: run(move || {
            black_box(v1::verify_body_sign(KEY, black_box(BODY), &header).unwrap());
        }),
    }
}

fn usage() -> Case {
    const USAGE_BODY: &[u8] = br#"{"usage_records":[{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z","instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721","metering_sn":"sn-0001","record_time":"20220809T091000Z","usage_value":"99"}]}"#;
    let s = usage_sig::sign(KEY, &json::parse(USAGE_BODY).unwrap(), TS, "n-1");
    let string_to_sign = s.string_to_sign.clone();
    Case {
        scheme: "usage",
        raw_hmac: run(move || {
            black_box(hmac_sha256(
                KEY.as_bytes(),
                black_box(string_to_sign.as_bytes()),
            ));
        }),
        // Usage bodies are signed exactly as sent (decision 6).
        csm_sign: run(|| {
            black_box(usage_sig::signature(KEY, black_box(USAGE_BODY), TS, "n-1").base64());
        }),
        csm_verify: run(move || {
            black_box(usage_sig::verify(
                KEY,
                black_box(USAGE_BODY),
                TS,
                "n-1",
                &s.signature,
            ));
        }),
    }
}

fn apig_case() -> Case {
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
    const URL: &str =
        "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/activate";
    let s = apig::sign("AK", KEY, "POST", URL, &headers, &signed, BODY).unwrap();
    let mut with_auth = headers.clone();
    with_auth.push(("Authorization".into(), s.authorization.clone()));
    let (canonical_request, string_to_sign) = (s.canonical_request, s.string_to_sign);
    Case {
        scheme: "apig",
        // The raw crypto of the recipe: hash the body, hash the canonical request, HMAC the
        // string to sign.
        raw_hmac: run(move || {
            black_box(Sha256::digest(black_box(BODY)));
            black_box(Sha256::digest(black_box(canonical_request.as_bytes())));
            black_box(hmac_sha256(
                KEY.as_bytes(),
                black_box(string_to_sign.as_bytes()),
            ));
        }),
        csm_sign: run(move || {
            let auth =
                apig::authorization("AK", KEY, "POST", URL, &headers, &signed, black_box(BODY));
            black_box(auth.unwrap());
        }),
        csm_verify: run(move || {
            black_box(apig::verify(KEY, "POST", URL, &with_auth, black_box(BODY)).unwrap());
        }),
    }
}
