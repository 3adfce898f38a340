//! HMAC-SHA256, the hex and Base64 texts signatures travel as, and constant-time checks.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub type HmacSha256 = Hmac<Sha256>;

/// The MAC of `msg` under `key`, not yet finalised: a check calls `verify_slice` on it.
pub fn mac(key: &[u8], msg: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    mac(key, msg).finalize().into_bytes().into()
}

/// Whether `received` (surrounding whitespace aside) is the hex of `mac`'s value, either
/// case; compared in constant time.
pub fn verify_hex(mac: HmacSha256, received: &str) -> bool {
    let mut sig = [0u8; 32];
    hex::decode_to_slice(received.trim(), &mut sig).is_ok() && mac.verify_slice(&sig).is_ok()
}

/// Whether `received` (surrounding whitespace aside) is the padded standard Base64 of
/// `mac`'s value; compared in constant time.
pub fn verify_base64(mac: HmacSha256, received: &str) -> bool {
    let decoded = STANDARD.decode(received.trim());
    decoded.is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
}

/// A computed HMAC-SHA256 value, encoded as the scheme needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 32]);

impl SignatureBytes {
    /// Lower-case hex.
    pub fn hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Upper-case hex, as the marketplace sends V2 signatures.
    pub fn hex_upper(&self) -> String {
        to_hex_upper(&self.0)
    }

    pub fn base64(&self) -> String {
        b64(&self.0)
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

/// Lower-case hex. Through a byte buffer: `hex::encode` collects chars one by one, which
/// shows in `csm load`, where every request carries several hex values.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("two hex digits per byte");
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Upper-case hex.
pub fn to_hex_upper(bytes: &[u8]) -> String {
    let mut out = to_hex(bytes);
    out.make_ascii_uppercase();
    out
}

pub fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Compares a hex signature csm computed with a received one (surrounding whitespace
/// aside): both decoded, so either case matches; in constant time.
pub fn hex_eq(expected: &str, received: &str) -> bool {
    match (hex::decode(expected), hex::decode(received.trim())) {
        (Ok(e), Ok(r)) => ct_eq(&e, &r),
        _ => false,
    }
}

/// Compares Base64 signatures exactly (surrounding whitespace aside), in constant time:
/// padded standard Base64 has one text for each value, so the texts are compared.
pub fn b64_eq(expected: &str, received: &str) -> bool {
    ct_eq(expected.as_bytes(), received.trim().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_digits_per_byte_in_either_case() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(to_hex_upper(&[0x00, 0x0f, 0xab, 0xff]), "000FABFF");
        assert_eq!(to_hex(&[]), "");
    }

    #[test]
    fn checks_take_either_hex_case_and_exact_base64() {
        let m = || mac(b"key", b"message");
        let sig = SignatureBytes(hmac_sha256(b"key", b"message"));
        assert!(verify_hex(m(), &sig.hex()) && verify_hex(m(), &format!(" {}\n", sig.hex_upper())));
        assert!(verify_base64(m(), &format!(" {}\n", sig.base64())));
        assert!(hex_eq(&sig.hex(), &sig.hex_upper()) && b64_eq(&sig.base64(), &sig.base64()));
        // One character off, one short, a control byte that `| 0x20` would read as a digit.
        let mut other = sig.hex().into_bytes();
        other[5] = if other[5] == b'0' { b'1' } else { b'0' };
        let other = String::from_utf8(other).unwrap();
        for bad in [
            other.as_str(),
            &sig.hex()[1..],
            &sig.hex().replacen(['3', 'a'], "\u{13}", 1),
            // A `0x` prefix is not part of a KooGallery signature (some hex crates strip it).
            &format!("0x{}", sig.hex()),
        ] {
            assert!(!verify_hex(m(), bad) && !hex_eq(&sig.hex(), bad), "{bad:?}");
        }
        // The last symbol one up changes only bits past the 32nd byte; padding is required.
        let good = sig.base64();
        let mut bad = good.clone().into_bytes();
        bad[42] += 1;
        let bad = String::from_utf8(bad).unwrap();
        for bad in [
            bad.as_str(),
            &good[..43],
            &sig.base64().to_lowercase(),
            "not base64",
        ] {
            assert!(!verify_base64(m(), bad) && !b64_eq(&good, bad), "{bad:?}");
        }
    }

    #[test]
    fn equality_is_plain_equality() {
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }
}
