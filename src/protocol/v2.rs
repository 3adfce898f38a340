//! V2 signatures: basic callbacks (query `signature`/`timestamp`/`nonce`), Kit callbacks
//! (`x-sign`), License 2.0 callbacks (the basic recipe with the License key).

use super::hmac::{
    hex_eq, hmac_sha256, mac, sha256_hex, to_hex, verify_hex, HmacSha256, SignatureBytes,
};
use super::json::{canonical_v2, parse, Json};
use super::ProtocolError;
use hmac::Mac;

/// Every intermediate of a V2 basic (or License) signature, named as in the vector files.
/// `canonical_request` begins with the access key: show it through [`masked`].
#[derive(Clone, PartialEq)]
pub struct BasicSignature {
    pub canonical_body: String,
    pub inner_hmac_hex: String,
    pub canonical_request: String,
    /// Lower-case hex, as the official demo outputs it.
    pub signature: String,
}

#[derive(Clone, PartialEq)]
pub struct KitSignature {
    pub canonical_body: String,
    pub canonical_request: String,
    /// The `x-sign` value, lower-case hex.
    pub x_sign: String,
}

// The canonical requests begin with the key, so Debug leaves them out.
impl std::fmt::Debug for BasicSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicSignature")
            .field("canonical_body", &self.canonical_body)
            .field("inner_hmac_hex", &self.inner_hmac_hex)
            .field("canonical_request", &"(holds the key; redacted)")
            .field("signature", &self.signature)
            .finish()
    }
}

impl std::fmt::Debug for KitSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KitSignature")
            .field("canonical_body", &self.canonical_body)
            .field("canonical_request", &"(holds the key; redacted)")
            .field("x_sign", &self.x_sign)
            .finish()
    }
}

/// Which inner step a License 2.0 callback uses (spec README decision 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LicenseInner {
    /// Keyed inner HMAC, same as the basic interfaces (the documented reading).
    #[default]
    KeyedHmac,
    /// Unkeyed SHA-256 of the canonical body (a third-party reading).
    PlainSha256,
}

pub fn sign_basic(
    key: &str,
    body: &Json,
    timestamp: &str,
    nonce: &str,
) -> Result<BasicSignature, ProtocolError> {
    sign_license(key, body, timestamp, nonce, LicenseInner::KeyedHmac)
}

pub fn sign_license(
    key: &str,
    body: &Json,
    timestamp: &str,
    nonce: &str,
    inner: LicenseInner,
) -> Result<BasicSignature, ProtocolError> {
    let canonical_body = canonical_v2(body)?;
    Ok(sign_basic_canonical(
        key,
        canonical_body,
        timestamp,
        nonce,
        inner,
    ))
}

/// Parses body bytes and signs them with the basic recipe, keeping every intermediate.
pub fn sign_basic_bytes(
    key: &str,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
) -> Result<BasicSignature, ProtocolError> {
    sign_basic(key, &parse(body)?, timestamp, nonce)
}

/// The basic recipe over an already canonical body (or any candidate body text).
pub fn sign_basic_canonical(
    key: &str,
    canonical_body: String,
    timestamp: &str,
    nonce: &str,
    inner: LicenseInner,
) -> BasicSignature {
    let (inner_hmac_hex, canonical_request, mac) =
        basic(key, canonical_body.as_bytes(), timestamp, nonce, inner);
    BasicSignature {
        canonical_body,
        inner_hmac_hex,
        canonical_request,
        signature: to_hex(&mac.finalize().into_bytes()),
    }
}

/// The basic (or License) signature alone, over a body that is already canonical.
pub fn basic_signature(
    key: &str,
    canonical_body: &[u8],
    timestamp: &str,
    nonce: &str,
    inner: LicenseInner,
) -> SignatureBytes {
    let (_, _, mac) = basic(key, canonical_body, timestamp, nonce, inner);
    SignatureBytes(mac.finalize().into_bytes().into())
}

/// The basic recipe over `body` (canonical, or a candidate a verifier tries): the inner
/// value's hex, the canonical request, and the request's MAC, not yet finalised so that a
/// check can compare it in constant time.
fn basic(
    key: &str,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
    inner: LicenseInner,
) -> (String, String, HmacSha256) {
    let inner_hex = match inner {
        LicenseInner::KeyedHmac => to_hex(&hmac_sha256(key.as_bytes(), body)),
        LicenseInner::PlainSha256 => sha256_hex(body),
    };
    let canonical_request = [key, nonce, timestamp, &inner_hex].concat();
    let request_mac = mac(key.as_bytes(), canonical_request.as_bytes());
    (inner_hex, canonical_request, request_mac)
}

pub fn sign_kit(
    key: &str,
    body: &Json,
    timestamp: &str,
    nonce: &str,
) -> Result<KitSignature, ProtocolError> {
    Ok(sign_kit_canonical(
        key,
        canonical_v2(body)?,
        timestamp,
        nonce,
    ))
}

pub fn sign_kit_canonical(
    key: &str,
    canonical_body: String,
    timestamp: &str,
    nonce: &str,
) -> KitSignature {
    let request = kit_request(key, canonical_body.as_bytes(), timestamp, nonce);
    let x_sign = to_hex(&hmac_sha256(key.as_bytes(), &request));
    KitSignature {
        canonical_body,
        canonical_request: String::from_utf8(request).expect("joined from strings"),
        x_sign,
    }
}

/// The Kit `x-sign` alone, over a body that is already canonical.
pub fn kit_signature(
    key: &str,
    canonical_body: &[u8],
    timestamp: &str,
    nonce: &str,
) -> SignatureBytes {
    let request = kit_request(key, canonical_body, timestamp, nonce);
    SignatureBytes(hmac_sha256(key.as_bytes(), &request))
}

/// The Kit canonical request: key, nonce, timestamp and body, joined (no inner HMAC).
fn kit_request(key: &str, body: &[u8], timestamp: &str, nonce: &str) -> Vec<u8> {
    [key.as_bytes(), nonce.as_bytes(), timestamp.as_bytes(), body].concat()
}

/// Body bytes as they are signed: their canonical form (every body csm builds is already
/// canonical, decision 1, and comes out unchanged).
pub fn signed_body(body: &[u8]) -> Result<String, ProtocolError> {
    canonical_v2(&parse(body)?)
}

/// Which form of the received body a matching signature was computed over (decision 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyForm {
    /// The raw bytes as received.
    Raw,
    /// The canonical form (top level sorted, compact).
    Canonical,
    /// The official basic demo's reading: a flat string map.
    StringMap,
}

/// Verifies a received V2 basic or License signature: the raw bytes first, then the
/// canonical form, then the demo's string-map reading. Returns the form that matched, or
/// None (also for a signature that is not hex).
pub fn verify_basic_bytes(
    key: &str,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
    received: &str,
    inner: LicenseInner,
) -> Option<BodyForm> {
    let matches = |text: &[u8]| verify_hex(basic(key, text, timestamp, nonce, inner).2, received);
    if matches(body) {
        return Some(BodyForm::Raw);
    }
    let parsed = parse(body).ok()?;
    if let Ok(c) = canonical_v2(&parsed) {
        if c.as_bytes() != body && matches(c.as_bytes()) {
            return Some(BodyForm::Canonical);
        }
    }
    let m = super::json::string_map_variant(&parsed)?;
    matches(m.as_bytes()).then_some(BodyForm::StringMap)
}

/// Verifies a received Kit `x-sign`: raw bytes first, then the canonical form.
pub fn verify_kit_bytes(
    key: &str,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
    received: &str,
) -> Option<BodyForm> {
    let matches = |text: &[u8]| {
        let request = kit_request(key, text, timestamp, nonce);
        verify_hex(mac(key.as_bytes(), &request), received)
    };
    if matches(body) {
        return Some(BodyForm::Raw);
    }
    let c = canonical_v2(&parse(body).ok()?).ok()?;
    (c.as_bytes() != body && matches(c.as_bytes())).then_some(BodyForm::Canonical)
}

/// Constant-time, case-insensitive check of a received hex signature.
pub fn signature_matches(expected_hex: &str, received: &str) -> bool {
    hex_eq(expected_hex, received)
}

/// A canonical request with the access key replaced by a placeholder, for display.
pub fn masked(canonical_request: &str, key: &str) -> String {
    match canonical_request.strip_prefix(key) {
        Some(rest) => format!("{}{rest}", super::KEY_PLACEHOLDER),
        None => canonical_request.replace(key, super::KEY_PLACEHOLDER),
    }
}

/// Reads a V2 `timestamp` as milliseconds; a 10-digit value is taken as seconds (decision 3).
/// Returns (milliseconds, was_seconds).
pub fn timestamp_ms(ts: &str) -> Result<(i64, bool), ProtocolError> {
    let t = ts.trim();
    let v: i64 = t.parse().map_err(|_| {
        ProtocolError::new(format!(
            "timestamp {t:?}: must be decimal epoch milliseconds (13 digits)"
        ))
    })?;
    if t.len() <= 10 {
        Ok((v * 1000, true))
    } else {
        Ok((v, false))
    }
}

/// Whether `ts_ms` is inside `window_ms` of `now_ms`, in either direction.
pub fn within_window(ts_ms: i64, now_ms: i64, window_ms: i64) -> bool {
    now_ms
        .checked_sub(ts_ms)
        .is_some_and(|d| d.unsigned_abs() <= window_ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec saas-callbacks.md §9.1
    #[test]
    fn spec_example() {
        let key = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
        let body = br#"{"activity":"newInstance","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}"#;
        let s = sign_basic_bytes(
            key,
            body,
            "1680508066618",
            "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA",
        )
        .unwrap();
        assert_eq!(
            s.inner_hmac_hex,
            "39a6939ce9492308ad515570323a1c443ef061cee7060dfadb81db1d5c9f6920"
        );
        assert!(signature_matches(
            &s.signature,
            "0A83C058A9533E2A847E95691E7F16494456EE876383A05C04A34C7DFEE74D64"
        ));
        assert!(!masked(&s.canonical_request, key).contains(key));
        let upper = s.signature.to_uppercase();
        let n = "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA";
        let keyed = LicenseInner::KeyedHmac;
        let check = |b: &[u8], ts: &str| verify_basic_bytes(key, b, ts, n, &upper, keyed);
        assert_eq!(check(body, "1680508066618"), Some(BodyForm::Raw));
        // Pretty-printed on the wire: still verifies through the canonical form.
        let pretty = String::from_utf8(body.to_vec()).unwrap().replace(',', ", ");
        assert_eq!(
            check(pretty.as_bytes(), "1680508066618"),
            Some(BodyForm::Canonical)
        );
        assert_eq!(check(pretty.as_bytes(), "1680508066619"), None);
        // testFlag as a number: only the demo's string-map reading reproduces a string-signed body.
        let numeric = String::from_utf8(body.to_vec())
            .unwrap()
            .replace(r#""testFlag":"1""#, r#""testFlag":1"#);
        assert_eq!(
            check(numeric.as_bytes(), "1680508066618"),
            Some(BodyForm::StringMap)
        );
    }

    #[test]
    fn window_never_overflows() {
        assert!(!within_window(i64::MIN, 1_700_000_000_000, 60_000));
        assert!(!within_window(i64::MAX, -1, 60_000));
        assert!(within_window(1_700_000_000_000, 1_700_000_059_000, 60_000));
    }

    #[test]
    fn debug_hides_the_key() {
        let s = sign_basic_bytes("secret-key-9", b"{}", "1", "n").unwrap();
        assert!(!format!("{s:?}").contains("secret-key-9"));
        let k = sign_kit("secret-key-9", &parse(b"{}").unwrap(), "1", "n").unwrap();
        assert!(!format!("{k:?}").contains("secret-key-9"));
    }
}
