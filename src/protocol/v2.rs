//! V2 signatures: basic callbacks (query `signature`/`timestamp`/`nonce`), Kit callbacks
//! (`x-sign`), License 2.0 callbacks (the basic recipe with the License key).

use super::hmac::{hex_eq, hmac_sha256, sha256_hex};
use super::json::{canonical_v2, parse, Json};
use super::ProtocolError;

/// Every intermediate of a V2 basic (or License) signature, named as in the vector files.
/// `canonical_request` begins with the access key: show it through [`masked`].
#[derive(Debug, Clone, PartialEq)]
pub struct BasicSignature {
    pub canonical_body: String,
    pub inner_hmac_hex: String,
    pub canonical_request: String,
    /// Lower-case hex, as the official demo outputs it.
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KitSignature {
    pub canonical_body: String,
    pub canonical_request: String,
    /// The `x-sign` value, lower-case hex.
    pub x_sign: String,
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
    let canonical_body = canonical_v2(body)?;
    Ok(sign_basic_canonical(
        key,
        canonical_body,
        timestamp,
        nonce,
        LicenseInner::KeyedHmac,
    ))
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

/// The basic recipe over an already canonical body (or any candidate body text).
pub fn sign_basic_canonical(
    key: &str,
    canonical_body: String,
    timestamp: &str,
    nonce: &str,
    inner: LicenseInner,
) -> BasicSignature {
    let inner_hmac_hex = match inner {
        LicenseInner::KeyedHmac => {
            hex::encode(hmac_sha256(key.as_bytes(), canonical_body.as_bytes()))
        }
        LicenseInner::PlainSha256 => sha256_hex(canonical_body.as_bytes()),
    };
    let canonical_request = format!("{key}{nonce}{timestamp}{inner_hmac_hex}");
    let signature = hex::encode(hmac_sha256(key.as_bytes(), canonical_request.as_bytes()));
    BasicSignature {
        canonical_body,
        inner_hmac_hex,
        canonical_request,
        signature,
    }
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
    let canonical_request = concat(&[key, nonce, timestamp, &canonical_body]);
    let x_sign = hex::encode(hmac_sha256(key.as_bytes(), canonical_request.as_bytes()));
    KitSignature {
        canonical_body,
        canonical_request,
        x_sign,
    }
}

fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// Parses body bytes and signs them with the basic recipe.
pub fn sign_basic_bytes(
    key: &str,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
) -> Result<BasicSignature, ProtocolError> {
    sign_basic(key, &parse(body)?, timestamp, nonce)
}

/// Verifies a received V2 basic (or License, keyed) signature. The raw bytes are tried first
/// (decision 2): a canonical body then costs no parsing; only otherwise is the body parsed and
/// its canonical form tried.
pub fn verify_basic_bytes(
    key: &str,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
    received: &str,
) -> Result<bool, ProtocolError> {
    let raw = std::str::from_utf8(body).map_err(|_| ProtocolError::new("body: not UTF-8"))?;
    let s = sign_basic_canonical(
        key,
        raw.to_string(),
        timestamp,
        nonce,
        LicenseInner::KeyedHmac,
    );
    if signature_matches(&s.signature, received) {
        return Ok(true);
    }
    let canonical = canonical_v2(&parse(body)?)?;
    if canonical == raw {
        return Ok(false);
    }
    let s = sign_basic_canonical(key, canonical, timestamp, nonce, LicenseInner::KeyedHmac);
    Ok(signature_matches(&s.signature, received))
}

/// Verifies a received Kit `x-sign`, raw bytes first as for [`verify_basic_bytes`].
pub fn verify_kit_bytes(
    key: &str,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
    received: &str,
) -> Result<bool, ProtocolError> {
    let raw = std::str::from_utf8(body).map_err(|_| ProtocolError::new("body: not UTF-8"))?;
    if signature_matches(
        &sign_kit_canonical(key, raw.to_string(), timestamp, nonce).x_sign,
        received,
    ) {
        return Ok(true);
    }
    let canonical = canonical_v2(&parse(body)?)?;
    Ok(canonical != raw
        && signature_matches(
            &sign_kit_canonical(key, canonical, timestamp, nonce).x_sign,
            received,
        ))
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
    (now_ms - ts_ms).abs() <= window_ms
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
        assert!(verify_basic_bytes(
            key,
            body,
            "1680508066618",
            "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA",
            &upper
        )
        .unwrap());
        // Pretty-printed on the wire: still verifies through the canonical form.
        let pretty = String::from_utf8(body.to_vec()).unwrap().replace(',', ", ");
        assert!(verify_basic_bytes(
            key,
            pretty.as_bytes(),
            "1680508066618",
            "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA",
            &upper
        )
        .unwrap());
        assert!(!verify_basic_bytes(
            key,
            pretty.as_bytes(),
            "1680508066619",
            "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA",
            &upper
        )
        .unwrap());
    }
}
