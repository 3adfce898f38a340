//! HMAC-SHA256 and constant-time comparisons.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub type HmacSha256 = Hmac<Sha256>;

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

    /// Starts an HMAC under this key, for messages fed piece by piece.
    pub fn start(&self) -> HmacSha256 {
        self.0.clone()
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

/// A computed HMAC-SHA256 value, encoded only when and how the scheme needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 32]);

impl SignatureBytes {
    /// Lower-case hex.
    pub fn hex(&self) -> SignatureText {
        SignatureText::new(&hex_digits(&self.0, false))
    }

    /// Upper-case hex, as the marketplace sends V2 signatures.
    pub fn hex_upper(&self) -> SignatureText {
        SignatureText::new(&hex_digits(&self.0, true))
    }

    pub fn base64(&self) -> SignatureText {
        SignatureText::new(&b64_digits(&self.0))
    }

    /// Constant-time comparison with decoded received bytes.
    pub fn matches(&self, received: &[u8; 32]) -> bool {
        ct_eq(&self.0, received)
    }

    /// Whether `received` (surrounding whitespace aside) is these bytes as 64 hex digits of
    /// either case; compared as text in constant time, without decoding.
    pub fn matches_hex(&self, received: &str) -> bool {
        let Ok(text) = <&[u8; 64]>::try_from(received.trim().as_bytes()) else {
            return false;
        };
        let ours = hex_digits(&self.0, false);
        let mut diff = 0u8;
        for (&c, &o) in text.iter().zip(&ours) {
            // Setting bit 0x20 lower-cases 'A'-'F' and keeps digits; it would also turn the
            // control bytes 0x10-0x19 into digits, which the second term refuses.
            diff |= ((c | 0x20) ^ o) | u8::from(c < 0x20);
        }
        diff.ct_eq(&0).into()
    }

    /// Whether `received` (surrounding whitespace aside) is these bytes in padded standard
    /// Base64. Only one text encodes 32 bytes, so comparing text is comparing bytes.
    pub fn matches_base64(&self, received: &str) -> bool {
        ct_eq(received.trim().as_bytes(), &b64_digits(&self.0))
    }
}

/// A signature's text (hex or Base64) kept on the stack; reads as a `&str`.
#[derive(Clone, Copy)]
pub struct SignatureText {
    bytes: [u8; 64],
    len: usize,
}

impl SignatureText {
    fn new(ascii: &[u8]) -> Self {
        let mut bytes = [0u8; 64];
        bytes[..ascii.len()].copy_from_slice(ascii);
        SignatureText {
            bytes,
            len: ascii.len(),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("signature text is ASCII")
    }
}

impl std::ops::Deref for SignatureText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for SignatureText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for SignatureText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for SignatureText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SignatureText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for SignatureText {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl From<SignatureText> for String {
    fn from(t: SignatureText) -> String {
        t.as_str().to_owned()
    }
}

/// 32 bytes as 64 hex digits on the stack, computed without a table or a branch (so the
/// loop vectorises): the signers hash hex text, and the hex crate's encoder goes character
/// by character.
pub fn hex_digits(bytes: &[u8; 32], upper: bool) -> [u8; 64] {
    let letter_gap = if upper { 7 } else { 39 };
    let digit = |n: u8| n + b'0' + (9u8.wrapping_sub(n) >> 7) * letter_gap;
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = digit(b >> 4);
        pair[1] = digit(b & 0x0f);
    }
    out
}

/// Lower-case hex digits of 32 bytes, on the stack.
pub fn hex_lower(bytes: &[u8; 32]) -> [u8; 64] {
    hex_digits(bytes, false)
}

const B64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Each byte's Base64 value, or 0xFF for bytes outside the alphabet.
const B64_VALUES: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 64 {
        t[B64_ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// 32 bytes as the 44 characters of padded standard Base64, on the stack. Signatures are
/// always 32 bytes; a fixed-size codec is several times faster than the general engine.
pub fn b64_digits(bytes: &[u8; 32]) -> [u8; 44] {
    let mut out = [b'='; 44];
    let symbol = |n: u32, shift: u32| B64_ALPHABET[((n >> shift) & 63) as usize];
    for (quad, group) in out.chunks_exact_mut(4).zip(bytes.chunks_exact(3)) {
        let n = (u32::from(group[0]) << 16) | (u32::from(group[1]) << 8) | u32::from(group[2]);
        quad.copy_from_slice(&[symbol(n, 18), symbol(n, 12), symbol(n, 6), symbol(n, 0)]);
    }
    // The last two bytes give three symbols and one '='.
    let n = (u32::from(bytes[30]) << 16) | (u32::from(bytes[31]) << 8);
    out[40..43].copy_from_slice(&[symbol(n, 18), symbol(n, 12), symbol(n, 6)]);
    out
}

/// Decodes a received Base64 signature into bytes; None unless it is 32 bytes of padded
/// standard Base64 with zero trailing bits (what the base64 crate accepts, strictly).
pub fn b64_32(received: &str) -> Option<[u8; 32]> {
    let text: &[u8; 44] = received.trim().as_bytes().try_into().ok()?;
    // Invalid symbols are 0xFF in the table: collected, then checked once (no branch per symbol).
    let mut invalid = 0u8;
    let mut value = |c: u8| {
        let v = B64_VALUES[usize::from(c)];
        invalid |= v;
        u32::from(v & 63)
    };
    let mut out = [0u8; 32];
    for (group, quad) in out.chunks_exact_mut(3).zip(text.chunks_exact(4)) {
        let n = (value(quad[0]) << 18)
            | (value(quad[1]) << 12)
            | (value(quad[2]) << 6)
            | value(quad[3]);
        group.copy_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let n = (value(text[40]) << 18) | (value(text[41]) << 12) | (value(text[42]) << 6);
    out[30] = (n >> 16) as u8;
    out[31] = (n >> 8) as u8;
    // The third symbol's last two bits lie past the 32nd byte and must be zero.
    let trailing = n & 0xFF != 0;
    (invalid & 0x80 == 0 && !trailing && text[43] == b'=').then_some(out)
}

/// Decodes a received hex signature (either case) into bytes; None unless it is exactly
/// 64 hex digits.
pub fn hex32(received: &str) -> Option<[u8; 32]> {
    let digits: &[u8; 64] = received.trim().as_bytes().try_into().ok()?;
    let mut invalid = 0u8;
    let mut out = [0u8; 32];
    for (b, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = (
            HEX_VALUES[usize::from(pair[0])],
            HEX_VALUES[usize::from(pair[1])],
        );
        invalid |= hi | lo;
        *b = (hi << 4) | (lo & 0x0f);
    }
    (invalid & 0x80 == 0).then_some(out)
}

/// Each byte's hex value (either case), or 0xFF for a non-hex byte.
const HEX_VALUES: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        t[b"0123456789ABCDEF"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

pub fn sha256_hex(data: &[u8]) -> String {
    SignatureBytes(Sha256::digest(data).into()).hex().into()
}

pub fn b64(data: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data)
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Differences are folded without a branch, and subtle's barrier applies once to the
    // result: its per-byte barrier costs more than the HMAC's last block.
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    diff.ct_eq(&0).into()
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;

    const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    proptest! {
        #[test]
        fn fixed_codecs_agree_with_the_general_ones(bytes in any::<[u8; 32]>()) {
            let sig = SignatureBytes(bytes);
            prop_assert_eq!(String::from(sig.base64()), ENGINE.encode(bytes));
            prop_assert_eq!(String::from(sig.hex()), hex::encode(bytes));
            prop_assert_eq!(String::from(sig.hex_upper()), hex::encode_upper(bytes));
            prop_assert!(sig.matches_hex(&sig.hex()) && sig.matches_hex(&sig.hex_upper()));
            prop_assert!(sig.matches_base64(&sig.base64()));
            let mut other = bytes;
            other[bytes[0] as usize % 32] ^= 1 << (bytes[1] % 8);
            let other = SignatureBytes(other);
            prop_assert!(!sig.matches_hex(&other.hex()) && !sig.matches_base64(&other.base64()));
            prop_assert_eq!(b64_32(&sig.base64()), Some(bytes));
            prop_assert_eq!(hex32(&sig.hex_upper()), Some(bytes));
            prop_assert_eq!(hex32(&sig.hex()), Some(bytes));
        }

        #[test]
        fn base64_decoding_accepts_what_the_crate_accepts(text in "[A-Za-z0-9+/=*]{42,46}") {
            let general = ENGINE
                .decode(&text)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok());
            prop_assert_eq!(b64_32(&text), general);
        }

        #[test]
        fn hex_decoding_accepts_exactly_64_digits(text in "[0-9a-fA-Fg ]{62,66}") {
            let general = hex::decode(text.trim())
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok());
            prop_assert_eq!(hex32(&text), general);
        }

        /// Text matching accepts exactly what decoding accepts, for any byte in any place.
        #[test]
        fn text_matching_agrees_with_decoding(bytes in any::<[u8; 32]>(), at in 0usize..64, byte in any::<u8>()) {
            let sig = SignatureBytes(bytes);
            let mut hex_text = String::from(sig.hex_upper()).into_bytes();
            hex_text[at] = byte;
            if let Ok(t) = std::str::from_utf8(&hex_text) {
                prop_assert_eq!(sig.matches_hex(t), hex32(t) == Some(bytes), "{:?}", t);
            }
            let mut b64_text = String::from(sig.base64()).into_bytes();
            b64_text[at % 44] = byte;
            if let Ok(t) = std::str::from_utf8(&b64_text) {
                prop_assert_eq!(sig.matches_base64(t), b64_32(t) == Some(bytes), "{:?}", t);
            }
        }

        #[test]
        fn equality_is_plain_equality(a in proptest::collection::vec(any::<u8>(), 0..40), flip in any::<usize>()) {
            prop_assert!(ct_eq(&a, &a));
            let mut b = a.clone();
            if !b.is_empty() {
                let i = flip % b.len();
                b[i] ^= 1;
                prop_assert!(!ct_eq(&a, &b));
            }
            prop_assert!(!ct_eq(&a, &a[..a.len().saturating_sub(1)]) || a.is_empty());
        }
    }

    #[test]
    fn trailing_bits_and_padding_are_strict() {
        let good = String::from(SignatureBytes([0xAB; 32]).base64());
        assert!(b64_32(&good).is_some());
        // "q=" → "r=": the last symbol changes only bits past the 32nd byte.
        let mut bad = good.clone().into_bytes();
        bad[42] = b'r';
        assert_eq!(b64_32(std::str::from_utf8(&bad).unwrap()), None);
        assert_eq!(b64_32(&good[..43]), None);
    }
}
