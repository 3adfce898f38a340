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
        let mut mac = self.0.clone();
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }
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
