//! Every case of every known-answer vector file (tests/vectors/, computed by independent
//! Java and Python implementations) against csm's protocol code.

use csm::protocol::json::{self, Json};
use csm::protocol::{apig, usage_sig, v1, v1_crypto, v2};

fn load(name: &str) -> Json {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    json::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn cases<'a>(doc: &'a Json, key: &str) -> &'a [Json] {
    match doc.get(key) {
        Some(Json::Array(a)) => a,
        _ => panic!("no {key} array"),
    }
}

fn s<'a>(case: &'a Json, key: &str) -> &'a str {
    case.get(key)
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("case field {key} missing or not a string"))
}

fn pairs(case: &Json, key: &str) -> Vec<(String, String)> {
    let Some(Json::Array(items)) = case.get(key) else {
        panic!("{key} is not an array")
    };
    items
        .iter()
        .map(|p| match p {
            Json::Array(kv) => (
                kv[0].as_str().unwrap().to_string(),
                kv[1].as_str().unwrap().to_string(),
            ),
            _ => panic!("{key}: pair expected"),
        })
        .collect()
}

fn count_checked(n: usize, file: &str) {
    assert!(n > 0, "{file}: no case was checked");
}

#[test]
fn saas_v1_auth_token() {
    let doc = load("saas_v1_auth_token.json");
    let all = cases(&doc, "cases");
    for c in all {
        let name = s(c, "name");
        let key = s(c, "access_key");
        let params = pairs(c, "params");
        let t = v1::auth_token(key, &params).unwrap();
        assert_eq!(t.string_to_sign, s(c, "string_to_sign"), "{name}");
        assert_eq!(format!("{key}{}", t.timestamp), s(c, "hmac_key"), "{name}");
        assert_eq!(t.auth_token, s(c, "auth_token"), "{name}");
        // The query as sent decodes to the same parameters (authToken aside) and token.
        let from_query = v1::parse_query(s(c, "query_string"), false).unwrap();
        let received = from_query
            .iter()
            .find(|(n, _)| n == "authToken")
            .map(|(_, v)| v.clone())
            .expect("authToken in query");
        assert!(v1::token_matches(&t.auth_token, &received), "{name}");
        assert_eq!(v1::auth_token(key, &from_query).unwrap(), t, "{name}");
        // The server's check agrees.
        assert!(v1::verify_auth_token(key, &from_query, &received).unwrap());
    }
    count_checked(all.len(), "saas_v1_auth_token");
}

#[test]
fn saas_v1_kit_auth_token() {
    let doc = load("saas_v1_kit_auth_token.json");
    let all = cases(&doc, "cases");
    for c in all {
        let name = s(c, "name");
        let key = s(c, "access_key");
        let body = json::parse(s(c, "body_text").as_bytes()).unwrap();
        let t = v1::kit_auth_token(key, &body).unwrap();
        assert_eq!(t.string_to_sign, s(c, "string_to_sign"), "{name}");
        assert_eq!(format!("{key}{}", t.timestamp), s(c, "hmac_key"), "{name}");
        assert_eq!(t.auth_token, s(c, "auth_token"), "{name}");
        // The body object and the body text agree.
        assert_eq!(&body, c.get("body").unwrap(), "{name}");
    }
    count_checked(all.len(), "saas_v1_kit_auth_token");
}

#[test]
fn saas_v1_body_sign() {
    let doc = load("saas_v1_body_sign.json");
    let all = cases(&doc, "cases");
    for c in all {
        let name = s(c, "name");
        let key = s(c, "access_key");
        let body = s(c, "body").as_bytes();
        let sig = v1::body_sign(key, body);
        assert_eq!(sig, s(c, "signature"), "{name}");
        assert_eq!(s(c, "header_name"), v1::BODY_SIGN_HEADER, "{name}");
        assert_eq!(
            v1::body_sign_header_value(&sig),
            s(c, "header_value"),
            "{name}"
        );
        assert!(
            v1::verify_body_sign(key, body, s(c, "header_value")).unwrap(),
            "{name}"
        );
        assert!(
            v1::verify_body_sign(key, body, s(c, "header_value_doc_variant")).unwrap(),
            "{name}"
        );
        // One byte more (a trailing newline) must not verify.
        let mut longer = body.to_vec();
        longer.push(b'\n');
        assert!(
            !v1::verify_body_sign(key, &longer, s(c, "header_value")).unwrap(),
            "{name}"
        );
    }
    count_checked(all.len(), "saas_v1_body_sign");
}

#[test]
fn saas_v1_crypto() {
    let doc = load("saas_v1_crypto.json");
    let kd = cases(&doc, "key_derivation_cases");
    for c in kd {
        let name = s(c, "name");
        let key = s(c, "access_key");
        assert_eq!(hex::encode(key.as_bytes()), s(c, "seed_hex"), "{name}");
        let aes256 = hex::encode(v1_crypto::derive_key(key, v1_crypto::EncryptType::Aes256));
        assert_eq!(aes256, s(c, "aes256_key_hex"), "{name}");
        assert_ne!(
            aes256,
            s(c, "naive_unsigned_carry_aes256_key_hex"),
            "{name}"
        );
        assert_eq!(
            hex::encode(v1_crypto::derive_key(key, v1_crypto::EncryptType::Aes128)),
            s(c, "aes128_key_hex"),
            "{name}"
        );
        let stream = hex::encode(v1_crypto::sha1prng(key.as_bytes(), 40));
        assert_eq!(
            stream,
            format!(
                "{}{}",
                s(c, "sha1prng_block0_hex"),
                s(c, "sha1prng_block1_hex")
            ),
            "{name}"
        );
    }
    let all = cases(&doc, "cases");
    for c in all {
        let name = s(c, "name");
        let key = s(c, "access_key");
        let t = v1_crypto::EncryptType::parse(s(c, "encrypt_type")).unwrap();
        assert_eq!(
            hex::encode(v1_crypto::derive_key(key, t)),
            s(c, "aes_key_hex"),
            "{name}"
        );
        let ct = v1_crypto::encrypt(key, t, s(c, "iv"), s(c, "plaintext")).unwrap();
        assert_eq!(ct, s(c, "ciphertext"), "{name}");
        assert_eq!(
            v1_crypto::decrypt(key, t, &ct).unwrap(),
            s(c, "plaintext"),
            "{name}"
        );
    }
    count_checked(kd.len() + all.len(), "saas_v1_crypto");
}

fn check_v2_like(file: &str, kit: bool) {
    let doc = load(file);
    let all = cases(&doc, "cases");
    for c in all {
        let name = s(c, "name");
        let key = s(c, "access_key");
        let (ts, nonce) = (s(c, "timestamp"), s(c, "nonce"));
        let body = json::parse(s(c, "body_text").as_bytes()).unwrap();
        let canonical = json::canonical_v2(&body).unwrap();
        assert_eq!(canonical, s(c, "canonical_body"), "{file} {name}");
        let is_canonical = matches!(c.get("body_text_is_canonical"), Some(Json::Bool(true)));
        assert_eq!(
            is_canonical,
            canonical == s(c, "body_text"),
            "{file} {name}"
        );
        let expected = s(c, "signature");
        assert_eq!(
            expected.to_uppercase(),
            s(c, "signature_uppercase"),
            "{file} {name}"
        );
        if kit {
            let k = v2::sign_kit(key, &body, ts, nonce).unwrap();
            assert_eq!(
                k.canonical_request,
                s(c, "canonical_request"),
                "{file} {name}"
            );
            assert_eq!(k.x_sign, expected, "{file} {name}");
            let signed = v2::signed_body(s(c, "body_text").as_bytes()).unwrap();
            let fast = v2::kit_signature(key, signed.as_bytes(), ts, nonce);
            assert_eq!(fast.hex().as_str(), expected, "{file} {name}");
            assert_eq!(fast.hex_upper().as_str(), s(c, "signature_uppercase"));
        } else {
            let b = v2::sign_basic(key, &body, ts, nonce).unwrap();
            assert_eq!(b.inner_hmac_hex, s(c, "inner_hmac_hex"), "{file} {name}");
            assert_eq!(
                b.canonical_request,
                s(c, "canonical_request"),
                "{file} {name}"
            );
            assert_eq!(b.signature, expected, "{file} {name}");
            if !file.starts_with("license") {
                let fast =
                    v2::sign_basic_bytes(key, s(c, "body_text").as_bytes(), ts, nonce).unwrap();
                assert_eq!(fast.signature, expected, "{file} {name}");
            }
            // The sender's path: the signature alone, streamed over the signed body.
            let signed = v2::signed_body(s(c, "body_text").as_bytes()).unwrap();
            assert_eq!(signed, canonical, "{file} {name}");
            let keyed = v2::LicenseInner::KeyedHmac;
            let alone = v2::basic_signature(key, signed.as_bytes(), ts, nonce, keyed);
            assert_eq!(alone.hex().as_str(), expected, "{file} {name}");
            assert_eq!(alone.hex_upper().as_str(), s(c, "signature_uppercase"));
            assert!(v2::signature_matches(
                &b.signature,
                s(c, "signature_uppercase")
            ));
            match c.get("string_map_variant") {
                Some(Json::Null) | None => {
                    assert_eq!(json::string_map_variant(&body), None, "{file} {name}")
                }
                Some(v) => {
                    let variant = json::string_map_variant(&body);
                    let want = v
                        .get("canonical_body")
                        .and_then(Json::as_str)
                        .or(v.as_str());
                    assert_eq!(variant.as_deref(), want, "{file} {name}");
                }
            }
        }
        if let Some(plain) = c.get("variant_plain_sha256") {
            let p = v2::sign_license(key, &body, ts, nonce, v2::LicenseInner::PlainSha256).unwrap();
            let want = plain.get("signature").and_then(Json::as_str).unwrap();
            assert_eq!(p.signature, want, "{file} {name}");
            let plain_inner = v2::LicenseInner::PlainSha256;
            let alone = v2::basic_signature(key, canonical.as_bytes(), ts, nonce, plain_inner);
            assert_eq!(alone.hex().as_str(), want, "{file} {name}");
            assert!(
                !v2::signature_matches(&p.signature, expected),
                "{file} {name}"
            );
        }
    }
    count_checked(all.len(), file);
}

#[test]
fn saas_v2_signature() {
    check_v2_like("saas_v2_signature.json", false);
}

#[test]
fn license_v2_signature() {
    check_v2_like("license_v2_signature.json", false);
}

#[test]
fn kit_v2_signature() {
    check_v2_like("kit_v2_signature.json", true);
}

#[test]
fn usage_push_signature() {
    let doc = load("usage_push_signature.json");
    let all = cases(&doc, "cases");
    for c in all {
        let name = s(c, "name");
        let body = c.get("body").unwrap();
        let sig = usage_sig::sign(s(c, "key"), body, s(c, "ts"), s(c, "nonce"));
        assert_eq!(sig.body_string, s(c, "body_string"), "{name}");
        assert_eq!(sig.string_to_sign, s(c, "string_to_sign"), "{name}");
        assert_eq!(sig.signature, s(c, "signature"), "{name}");
        let alone = usage_sig::signature(
            s(c, "key"),
            s(c, "body_string").as_bytes(),
            s(c, "ts"),
            s(c, "nonce"),
        );
        assert_eq!(alone.base64().as_str(), s(c, "signature"), "{name}");
    }
    count_checked(all.len(), "usage_push_signature");
}

#[test]
fn apig_sdk_hmac() {
    let doc = load("apig_sdk_hmac.json");
    let all = cases(&doc, "cases");
    for c in all {
        let name = s(c, "name");
        let headers = pairs(c, "headers");
        let signed: Vec<String> = match c.get("signed_headers") {
            Some(Json::Array(a)) => a.iter().map(|h| h.as_str().unwrap().to_string()).collect(),
            _ => panic!("signed_headers"),
        };
        let sig = apig::sign(
            s(c, "ak"),
            s(c, "sk"),
            s(c, "method"),
            s(c, "url"),
            &headers,
            &signed,
            s(c, "body").as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sig.canonical_request, s(c, "canonical_request"), "{name}");
        assert_eq!(sig.string_to_sign, s(c, "string_to_sign"), "{name}");
        assert_eq!(sig.signature, s(c, "signature"), "{name}");
        assert_eq!(sig.authorization, s(c, "authorization"), "{name}");
        // The sender's path (the header value alone) agrees, whatever the names' case and order.
        let shuffled: Vec<String> = signed.iter().rev().map(|h| h.to_uppercase()).collect();
        let alone = apig::authorization(
            s(c, "ak"),
            s(c, "sk"),
            s(c, "method"),
            s(c, "url"),
            &headers,
            &shuffled,
            s(c, "body").as_bytes(),
        )
        .unwrap();
        assert_eq!(alone, sig.authorization, "{name}");
        // The server side: the Authorization header verifies the same request, not another.
        let mut with_auth = headers.clone();
        with_auth.push(("Authorization".into(), sig.authorization.clone()));
        let verify = |body: &str| {
            apig::verify(
                s(c, "sk"),
                s(c, "method"),
                s(c, "url"),
                &with_auth,
                body.as_bytes(),
            )
            .unwrap()
        };
        assert!(verify(s(c, "body")), "{name}");
        assert!(!verify(&format!("{} ", s(c, "body"))), "{name}");
    }
    count_checked(all.len(), "apig_sdk_hmac");
}

/// Decision 10: a repeated query name whose values sort differently encoded and decoded.
/// Expected values computed with Huawei's Python SDK signer (huaweicloudsdkcore
/// `signer.Signer`, PyPI), which sorts decoded names and values before encoding.
#[test]
fn apig_query_order_matches_the_python_sdk_signer() {
    let h = |n: &str, v: &str| (n.to_string(), v.to_string());
    let headers = vec![
        h("X-Sdk-Date", "20240317T144237Z"),
        h("Content-Type", "application/json"),
        h("Host", "mkt.myhuaweicloud.com"),
    ];
    let signed: Vec<String> = ["content-type", "host", "x-sdk-date"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let s = apig::sign(
        "AKEXAMPLE",
        "SKEXAMPLE-123",
        "GET",
        "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/order/query?orderId=CS1%2Fx&k=a%2F&k=a-&a%2F=1&a-=2",
        &headers,
        &signed,
        b"",
    )
    .unwrap();
    assert_eq!(
        s.canonical_request.lines().nth(2).unwrap(),
        "a-=2&a%2F=1&k=a-&k=a%2F&orderId=CS1%2Fx"
    );
    assert_eq!(
        s.authorization,
        "SDK-HMAC-SHA256 Access=AKEXAMPLE, SignedHeaders=content-type;host;x-sdk-date, Signature=4c1559d91bc6b41b52837526f55f7cb3937597794bc36b3e5f8c52a81e43496c"
    );
}

/// applicationSync clientSecret ciphertexts made by Python `cryptography`
/// (scripts/make-rsa-oaep-vectors.py): each decrypts under its own OAEP reading only.
#[test]
fn rsa_oaep_client_secret() {
    use csm::protocol::rsa_oaep::{self, Reading};
    let doc = load("rsa_oaep.json");
    let key = rsa_oaep::private_key_from_pem(s(&doc, "private_key_pkcs8_pem")).unwrap();
    let all = cases(&doc, "cases");
    let mut seen = std::collections::HashSet::new();
    for c in all {
        let reading = Reading::parse(s(c, "reading")).expect("known reading");
        seen.insert(reading);
        let (plain, ct) = (s(c, "plaintext").as_bytes(), s(c, "ciphertext_b64"));
        assert_eq!(rsa_oaep::decrypt(&key, reading, ct).unwrap(), plain);
        for other in Reading::ALL.into_iter().filter(|r| *r != reading) {
            let e = rsa_oaep::decrypt(&key, other, ct).unwrap_err();
            assert!(e.0.contains(other.name()), "{e}");
        }
        assert_eq!(
            rsa_oaep::decrypt_any(&key, ct).unwrap(),
            (reading, plain.to_vec())
        );
    }
    assert_eq!(seen.len(), 3, "every reading has cases");
    // Both public PEM forms read as the same key, and what csm encrypts the
    // independent key decrypts (and csm reads back) under each reading.
    let spki = rsa_oaep::public_key_from_pem(s(&doc, "public_key_spki_pem")).unwrap();
    let pkcs1 = rsa_oaep::public_key_from_pem(s(&doc, "public_key_pkcs1_pem")).unwrap();
    assert_eq!(spki, pkcs1);
    assert_eq!(spki, key.to_public_key());
    for r in Reading::ALL {
        let ct = rsa_oaep::encrypt(&spki, r, "秘密-1".as_bytes()).unwrap();
        assert_eq!(
            rsa_oaep::decrypt_any(&key, &ct).unwrap(),
            (r, "秘密-1".as_bytes().to_vec())
        );
    }
    let e = rsa_oaep::public_key_from_pem(s(&doc, "small_public_key_spki_pem")).unwrap_err();
    assert!(
        e.0.contains("2048 bits") && e.0.contains("at least 3072"),
        "{e}"
    );
    let e = rsa_oaep::decrypt_any(&key, "bm90IGEgY2lwaGVydGV4dA==").unwrap_err();
    assert!(
        e.0.contains("a ciphertext for this 3072-bit key has 384"),
        "{e}"
    );
}
