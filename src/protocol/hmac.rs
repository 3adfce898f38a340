//! HMAC-SHA256 and constant-time comparisons.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub type HmacSha256 = Hmac<Sha256>;

// Kept out of line, as are the other HMAC entry points: inlined into a caller, the MAC
// state is copied about on the stack, which costs about a tenth of a short message's HMAC
// (measured in benches/signing.rs).
#[inline(never)]
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The HMAC of the concatenation of `parts`, without building the concatenation on the heap.
#[inline(never)]
pub fn hmac_sha256_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    update_gathered(&mut mac, parts);
    mac.finalize().into_bytes().into()
}

/// Feeds `parts` to `mac` in one update when they fit on the stack together: every update
/// costs about as much as hashing 30 more bytes, and a signature's parts (key, nonce,
/// timestamp, hex digest, a callback body) are mostly short.
fn update_gathered(mac: &mut HmacSha256, parts: &[&[u8]]) {
    const ROOM: usize = 512;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total > ROOM || parts.len() == 1 {
        for p in parts {
            mac.update(p);
        }
        return;
    }
    let mut gathered = [0u8; ROOM];
    let mut len = 0;
    for p in parts {
        gathered[len..len + p.len()].copy_from_slice(p);
        len += p.len();
    }
    mac.update(&gathered[..len]);
}

/// The MAC of `msg` under `key`, not yet finalised: a check calls `verify_slice` on it.
pub fn mac(key: &[u8], msg: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac
}

/// Whether `received` (surrounding whitespace aside) is the hex of `mac`'s value, either
/// case; compared in constant time.
pub fn verify_hex(mac: HmacSha256, received: &str) -> bool {
    hex::decode(received.trim()).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
}

/// Whether `received` (surrounding whitespace aside) is the padded standard Base64 of
/// `mac`'s value; compared in constant time.
pub fn verify_base64(mac: HmacSha256, received: &str) -> bool {
    let decoded = base64::engine::general_purpose::STANDARD.decode(received.trim());
    decoded.is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
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

    /// The HMAC of the concatenation of `parts`, without building the concatenation on the
    /// heap.
    #[inline(never)]
    pub fn sign_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.0.clone();
        update_gathered(&mut mac, parts);
        mac.finalize().into_bytes().into()
    }
}

/// A computed HMAC-SHA256 value, encoded only when and how the scheme needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 32]);

impl SignatureBytes {
    /// Lower-case hex.
    pub fn hex(&self) -> SignatureText {
        SignatureText::hex(hex_digits(&self.0, false))
    }

    /// Upper-case hex, as the marketplace sends V2 signatures.
    pub fn hex_upper(&self) -> SignatureText {
        SignatureText::hex(hex_digits(&self.0, true))
    }

    pub fn base64(&self) -> SignatureText {
        let mut bytes = [0u8; 64];
        bytes[..44].copy_from_slice(&b64_digits(&self.0));
        SignatureText { bytes, len: 44 }
    }

    /// Whether `received` (surrounding whitespace aside) is these bytes as 64 hex digits of
    /// either case; compared as text in constant time, without decoding.
    pub fn matches_hex(&self, received: &str) -> bool {
        hex_text_eq(&hex_digits(&self.0, false), received)
    }

    /// Whether `received` (surrounding whitespace aside) is these bytes in padded standard
    /// Base64. Only one text encodes 32 bytes, so comparing text is comparing bytes.
    pub fn matches_base64(&self, received: &str) -> bool {
        ct_eq(&b64_digits(&self.0), received.trim().as_bytes())
    }
}

/// A signature's text (hex or Base64) kept on the stack; reads as a `&str`.
#[derive(Clone, Copy)]
pub struct SignatureText {
    bytes: [u8; 64],
    len: usize,
}

impl SignatureText {
    fn hex(bytes: [u8; 64]) -> Self {
        SignatureText { bytes, len: 64 }
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

impl From<SignatureText> for String {
    fn from(t: SignatureText) -> String {
        t.as_str().to_owned()
    }
}

/// 32 bytes as 64 hex digits on the stack, computed without a table or a branch (so the
/// loop vectorises): the signers hash hex text, and the hex crate's encoder goes character
/// by character.
fn hex_digits(bytes: &[u8; 32], upper: bool) -> [u8; 64] {
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

/// 32 bytes as the 44 characters of padded standard Base64, on the stack. Signatures are
/// always 32 bytes; a fixed-size codec is several times faster than the general engine.
fn b64_digits(bytes: &[u8; 32]) -> [u8; 44] {
    let mut out = [b'='; 44];
    let symbol = |n: u32, shift: u32| B64_ALPHABET[((n >> shift) & 63) as usize];
    // Fixed bounds throughout, so the loop unrolls without a bounds check.
    for g in 0..11 {
        let at = 3 * g;
        let n = (u32::from(bytes[at]) << 16)
            | (u32::from(*bytes.get(at + 1).unwrap_or(&0)) << 8)
            | u32::from(*bytes.get(at + 2).unwrap_or(&0));
        out[4 * g] = symbol(n, 18);
        out[4 * g + 1] = symbol(n, 12);
        out[4 * g + 2] = symbol(n, 6);
        out[4 * g + 3] = symbol(n, 0);
    }
    // The last group holds two bytes: three symbols and one '='.
    out[43] = b'=';
    out
}

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

/// Compares a hex signature csm computed with a received one (surrounding whitespace
/// aside), either case, in constant time.
pub fn hex_eq(expected: &str, received: &str) -> bool {
    hex_text_eq(expected.as_bytes(), received)
}

fn hex_text_eq(expected: &[u8], received: &str) -> bool {
    let received = received.trim().as_bytes();
    if expected.len() != received.len() {
        return false;
    }
    let diff = expected.iter().zip(received).fold(0u8, |d, (&e, &c)| {
        // Setting bit 0x20 lower-cases 'A'-'F' and keeps digits; it would also turn the
        // control bytes 0x10-0x19 into digits, which the last term refuses.
        d | ((c | 0x20) ^ (e | 0x20)) | u8::from(c < 0x20)
    });
    diff.ct_eq(&0).into()
}

/// Compares Base64 signatures exactly (surrounding whitespace aside), in constant time.
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
        /// However a message is cut into parts, and whether or not they fit on the stack
        /// together, the MAC is the MAC of the whole.
        #[test]
        fn parts_are_the_whole(
            message in proptest::collection::vec(any::<u8>(), 0..700),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (message.len() + 1)).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for c in cuts.into_iter().chain([message.len()]) {
                parts.push(&message[from..c]);
                from = c;
            }
            let whole: [u8; 32] = {
                let mut mac = HmacSha256::new_from_slice(b"key").unwrap();
                mac.update(&message);
                mac.finalize().into_bytes().into()
            };
            prop_assert_eq!(hmac_sha256_parts(b"key", &parts), whole);
            prop_assert_eq!(KeyedHmac::new(b"key").sign_parts(&parts), whole);
        }

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
        }

        /// Text matching accepts exactly what the hex and base64 crates decode to the same
        /// bytes, for any byte in any place.
        #[test]
        fn text_matching_agrees_with_decoding(bytes in any::<[u8; 32]>(), at in 0usize..64, byte in any::<u8>()) {
            let sig = SignatureBytes(bytes);
            let mut hex_text = String::from(sig.hex_upper()).into_bytes();
            hex_text[at] = byte;
            if let Ok(t) = std::str::from_utf8(&hex_text) {
                let decoded = hex::decode(t.trim()).ok();
                prop_assert_eq!(sig.matches_hex(t), decoded.as_deref() == Some(&bytes[..]), "{:?}", t);
            }
            let mut b64_text = String::from(sig.base64()).into_bytes();
            b64_text[at % 44] = byte;
            if let Ok(t) = std::str::from_utf8(&b64_text) {
                let decoded = ENGINE.decode(t.trim()).ok();
                prop_assert_eq!(sig.matches_base64(t), decoded.as_deref() == Some(&bytes[..]), "{:?}", t);
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
        let sig = SignatureBytes([0xAB; 32]);
        let good = String::from(sig.base64());
        assert!(sig.matches_base64(&format!(" {good}\n")));
        // The last symbol one up changes only bits past the 32nd byte.
        let mut bad = good.clone().into_bytes();
        bad[42] += 1;
        assert!(!sig.matches_base64(std::str::from_utf8(&bad).unwrap()));
        assert!(!sig.matches_base64(&good[..43]));
    }

    #[test]
    fn hex_comparison_takes_either_case_and_nothing_else() {
        let sig = SignatureBytes([0x3C; 32]);
        let lower = String::from(sig.hex());
        assert!(hex_eq(&lower, &lower.to_uppercase()) && sig.matches_hex(&lower.to_uppercase()));
        // 0x13 | 0x20 is '3': a control byte must not pass for a digit.
        let control = lower.replacen('3', "\u{13}", 1);
        assert!(!hex_eq(&lower, &control) && !sig.matches_hex(&control));
        assert!(!hex_eq(&lower, &lower[1..]));
    }
}
