//! HMAC-SHA256 and constant-time comparisons.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// An HMAC key schedule computed once and reused for several messages under the same key
/// (V2 signs twice with the access key).
#[derive(Clone)]
pub struct KeyedHmac(HmacSha256);

impl KeyedHmac {
    pub fn new(key: &[u8]) -> Self {
        KeyedHmac(HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 32] {
        self.sign_parts(&[msg])
    }

    /// The HMAC of the concatenation of `parts`, without building the concatenation.
    pub fn sign_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.0.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

/// Decodes a received Base64 signature into bytes; None unless it is 32 bytes of Base64.
pub fn b64_32(received: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let n = base64::Engine::decode_slice(
        &base64::engine::general_purpose::STANDARD,
        received.trim(),
        &mut out,
    )
    .ok()?;
    (n == 32).then_some(out)
}

/// Decodes a received hex signature (either case) into bytes; None unless it is exactly
/// 64 hex digits.
pub fn hex32(received: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(received.trim(), &mut out).ok()?;
    Some(out)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn b64(data: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data)
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Compares hex signatures case-insensitively in constant time.
pub fn hex_eq(expected: &str, received: &str) -> bool {
    let e = expected.to_ascii_lowercase();
    let r = received.trim().to_ascii_lowercase();
    ct_eq(e.as_bytes(), r.as_bytes())
}

/// Compares base64 signatures exactly, in constant time.
pub fn b64_eq(expected: &str, received: &str) -> bool {
    ct_eq(expected.as_bytes(), received.trim().as_bytes())
}
