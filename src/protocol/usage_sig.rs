//! The usage push signature: Base64(HMAC-SHA256(key, "ts=<ts>&nonce=<nonce>&body=<body>")).

use super::hmac::{b64, b64_eq, hmac_sha256, mac, verify_base64, SignatureBytes};
use super::json::{canonical_sorted, Json};

#[derive(Debug, Clone, PartialEq)]
pub struct UsageSignature {
    /// The exact body text: signed, and sent as the HTTP body.
    pub body_string: String,
    pub string_to_sign: String,
    pub signature: String,
}

/// Signs a body object: its keys are sorted at every level (decision 6).
pub fn sign(key: &str, body: &Json, ts: &str, nonce: &str) -> UsageSignature {
    sign_body_string(key, canonical_sorted(body), ts, nonce)
}

/// Signs body text exactly as given (what a server verifies against the raw bytes).
pub fn sign_body_string(key: &str, body_string: String, ts: &str, nonce: &str) -> UsageSignature {
    let string_to_sign = String::from_utf8(string_to_sign(body_string.as_bytes(), ts, nonce))
        .expect("joined from strings");
    let signature = b64(&hmac_sha256(key.as_bytes(), string_to_sign.as_bytes()));
    UsageSignature {
        body_string,
        string_to_sign,
        signature,
    }
}

/// `ts=<ts>&nonce=<nonce>&body=<body>`, the body as its exact bytes.
fn string_to_sign(body: &[u8], ts: &str, nonce: &str) -> Vec<u8> {
    [
        b"ts=",
        ts.as_bytes(),
        b"&nonce=",
        nonce.as_bytes(),
        b"&body=",
        body,
    ]
    .concat()
}

pub fn signature_matches(expected: &str, received: &str) -> bool {
    b64_eq(expected, received)
}

/// The signature alone over the exact body bytes.
pub fn signature(key: &str, body: &[u8], ts: &str, nonce: &str) -> SignatureBytes {
    SignatureBytes(hmac_sha256(
        key.as_bytes(),
        &string_to_sign(body, ts, nonce),
    ))
}

/// Checks a received signature over the exact body bytes.
pub fn verify(key: &str, body: &[u8], ts: &str, nonce: &str, received: &str) -> bool {
    verify_base64(
        mac(key.as_bytes(), &string_to_sign(body, ts, nonce)),
        received,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_agrees_with_the_signature() {
        let s = sign_body_string("k-1", r#"{"usage_records":[]}"#.into(), "1", "n");
        assert!(verify(
            "k-1",
            br#"{"usage_records":[]}"#,
            "1",
            "n",
            &s.signature
        ));
        assert!(!verify(
            "k-1",
            br#"{"usage_records":[] }"#,
            "1",
            "n",
            &s.signature
        ));
        assert!(!verify(
            "k-2",
            br#"{"usage_records":[]}"#,
            "1",
            "n",
            &s.signature
        ));
    }
}
