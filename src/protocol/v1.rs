//! V1 (legacy) signatures: the GET `authToken`, the Kit POST `authToken` header and the
//! `Body-Sign` response header.

use super::hmac::{b64, b64_eq, hmac_sha256, mac, verify_base64, HmacSha256};
use super::json::{compact, java_cmp, Json};
use super::ProtocolError;
use hmac::Mac;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::borrow::Cow;

pub const BODY_SIGN_HEADER: &str = "Body-Sign";

#[derive(Debug, Clone, PartialEq)]
pub struct AuthToken {
    pub string_to_sign: String,
    /// The timeStamp value appended to the access key to form the HMAC key.
    pub timestamp: String,
    pub auth_token: String,
}

/// Everything but the RFC 3986 unreserved characters is percent-encoded.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986 unreserved characters, `%XX` upper case.
pub fn percent_encode(s: &str) -> String {
    encoded(s).collect()
}

/// [`percent_encode`] as it is written out, without a String of its own.
fn encoded(s: &str) -> percent_encoding::PercentEncode<'_> {
    utf8_percent_encode(s, RESERVED)
}

/// Percent-decodes as UTF-8. `plus_as_space` reads `+` as a space (HTML forms); the
/// marketplace encodes spaces as `%20`, so signing code passes false.
pub fn percent_decode(s: &str, plus_as_space: bool) -> Result<String, ProtocolError> {
    percent_decode_cow(s, plus_as_space).map(Cow::into_owned)
}

/// [`percent_decode`], borrowing `s` when it has nothing to decode.
fn percent_decode_cow(s: &str, plus_as_space: bool) -> Result<Cow<'_, str>, ProtocolError> {
    // The crate's decoder passes a malformed escape through as text: a signed value must not
    // mean two things, so it is refused here.
    for (i, _) in s.match_indices('%') {
        let hex = s.get(i + 1..i + 3).ok_or_else(|| {
            ProtocolError::new(format!("query {s:?}: '%' at byte {i} needs two hex digits"))
        })?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProtocolError::new(format!(
                "query {s:?}: '%{hex}' at byte {i} is not hex"
            )));
        }
    }
    // Most values (hex signatures, timestamps, nonces) have nothing to decode.
    let escaped = s.contains('%') || (plus_as_space && s.contains('+'));
    if !escaped {
        return Ok(Cow::Borrowed(s));
    }
    let spaced = if plus_as_space {
        s.replace('+', " ")
    } else {
        s.to_string()
    };
    match percent_decode_str(&spaced).decode_utf8() {
        Ok(decoded) => Ok(Cow::Owned(decoded.into_owned())),
        Err(_) => Err(ProtocolError::new(format!(
            "query {s:?}: decodes to invalid UTF-8"
        ))),
    }
}

/// Splits a query string into decoded (name, value) pairs in order; `a` alone means `a=`.
pub fn parse_query(
    query: &str,
    plus_as_space: bool,
) -> Result<Vec<(String, String)>, ProtocolError> {
    query_pairs(query, plus_as_space)
        .map(|p| p.map(|(n, v)| (n.into_owned(), v.into_owned())))
        .collect()
}

/// [`parse_query`] as it goes, borrowing what has nothing to decode (a verifier looks for
/// three names and copies nothing).
pub fn query_pairs(
    query: &str,
    plus_as_space: bool,
) -> impl Iterator<Item = Result<(Cow<'_, str>, Cow<'_, str>), ProtocolError>> {
    query.split('&').filter(|p| !p.is_empty()).map(move |p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        Ok((
            percent_decode_cow(n, plus_as_space)?,
            percent_decode_cow(v, plus_as_space)?,
        ))
    })
}

pub fn encode_query(params: &[(String, String)]) -> String {
    let mut out = String::new();
    push_query(&mut out, params);
    out
}

/// Appends [`encode_query`]'s text to `out` (a URL being built).
pub fn push_query(out: &mut String, params: &[(String, String)]) {
    for (i, (n, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.extend(encoded(n));
        out.push('=');
        out.extend(encoded(v));
    }
}

/// The GET string to sign: every parameter but `authToken`, sorted by name (Java order,
/// equal names as given), joined as `name=value` by `&`.
pub fn string_to_sign(params: &[(String, String)]) -> String {
    let mut signed: Vec<&(String, String)> =
        params.iter().filter(|(n, _)| n != "authToken").collect();
    signed.sort_by(|a, b| java_cmp(&a.0, &b.0));
    joined(signed.into_iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

fn joined<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn timestamp_of(params: &[(String, String)]) -> Result<&str, ProtocolError> {
    params
        .iter()
        .find(|(n, _)| n == "timeStamp")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| {
            ProtocolError::new("timeStamp: missing (the V1 HMAC key is access key + timeStamp)")
        })
}

/// The V1 timeStamp form: a UTC date and time, yyyyMMddHHmmss, then the milliseconds (the
/// guide's own example has one digit of them, `201706211855321`, so their count is not
/// checked).
pub fn is_timestamp(ts: &str) -> bool {
    (14..=17).contains(&ts.len())
        && ts.bytes().all(|b| b.is_ascii_digit())
        && chrono::NaiveDateTime::parse_from_str(&ts[..14], "%Y%m%d%H%M%S").is_ok()
}

/// A Base64 value (an authToken, a Body-Sign, a ciphertext) copied from a URL or an access
/// log, its `%XX` escapes undone (`+`, `/` and `=` travel escaped there); None when it has
/// none. Base64 has no `%`, so nothing else holds one.
pub fn url_decoded_base64(v: &str) -> Option<String> {
    let escaped = v
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    if !escaped {
        return None;
    }
    percent_encoding::percent_decode_str(v)
        .decode_utf8()
        .ok()
        .map(|d| d.into_owned())
}

/// The GET `authToken` over decoded parameters, with its intermediates.
pub fn auth_token(key: &str, params: &[(String, String)]) -> Result<AuthToken, ProtocolError> {
    let timestamp = timestamp_of(params)?;
    Ok(auth_token_over(key, timestamp, string_to_sign(params)))
}

/// The token over any candidate string (the doctor tries variants through this).
pub fn auth_token_over(key: &str, timestamp: &str, string_to_sign: String) -> AuthToken {
    let mac = token_mac(key, timestamp, &string_to_sign);
    AuthToken {
        auth_token: b64(&mac.finalize().into_bytes()),
        string_to_sign,
        timestamp: timestamp.to_string(),
    }
}

/// The HMAC of the string to sign, keyed with the access key followed by the timeStamp.
fn token_mac(key: &str, timestamp: &str, string_to_sign: &str) -> HmacSha256 {
    let hmac_key = [key.as_bytes(), timestamp.as_bytes()].concat();
    mac(&hmac_key, string_to_sign.as_bytes())
}

/// The Kit POST string to sign: top-level fields as strings, blanks skipped, sorted.
pub fn kit_string_to_sign(body: &Json) -> Result<String, ProtocolError> {
    let Json::Object(m) = body else {
        return Err(ProtocolError::new("body: must be a JSON object"));
    };
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (k, v) in m {
        let text = match v {
            Json::Null => continue,
            Json::Array(_) | Json::Object(_) => compact(v),
            other => other.scalar_text().unwrap_or_default(),
        };
        if text.trim().is_empty() {
            continue;
        }
        pairs.push((k, text));
    }
    pairs.sort_by(|a, b| java_cmp(a.0, b.0));
    Ok(joined(pairs.iter().map(|(n, v)| (*n, v.as_str()))))
}

/// The Kit POST `authToken` header; the key's timestamp is the body's `timeStamp` field.
pub fn kit_auth_token(key: &str, body: &Json) -> Result<AuthToken, ProtocolError> {
    let ts = body
        .get("timeStamp")
        .and_then(Json::scalar_text)
        .ok_or_else(|| {
            ProtocolError::new(
                "timeStamp: missing from the body (the V1 Kit HMAC key is access key + timeStamp)",
            )
        })?;
    Ok(auth_token_over(key, &ts, kit_string_to_sign(body)?))
}

pub fn token_matches(expected: &str, received: &str) -> bool {
    b64_eq(expected, received)
}

/// Base64(HMAC-SHA256(access key alone, exact body bytes)).
pub fn body_sign(key: &str, body: &[u8]) -> String {
    b64(&hmac_sha256(key.as_bytes(), body))
}

pub fn body_sign_header_value(signature: &str) -> String {
    ["sign_type=\"HMAC-SHA256\", signature=\"", signature, "\""].concat()
}

/// Reads `sign_type="HMAC-SHA256", signature="…"`, tolerating spaces around `=` and `,`
/// (the documentation example has a space after `signature=`). Returns the signature.
pub fn parse_body_sign(value: &str) -> Result<&str, ProtocolError> {
    let mut sign_type = None;
    let mut signature = None;
    for part in value.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            ProtocolError::new(format!(
                "Body-Sign {value:?}: each part must be name=\"value\""
            ))
        })?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| {
                ProtocolError::new(format!("Body-Sign {value:?}: values must be double-quoted"))
            })?;
        let slot = match k.trim() {
            "sign_type" => &mut sign_type,
            "signature" => &mut signature,
            other => {
                return Err(ProtocolError::new(format!(
                    "Body-Sign {value:?}: unknown part {other:?}"
                )));
            }
        };
        if slot.replace(v).is_some() {
            return Err(ProtocolError::new(format!(
                "Body-Sign {value:?}: {} appears twice",
                k.trim()
            )));
        }
    }
    if sign_type != Some("HMAC-SHA256") {
        return Err(ProtocolError::new(format!(
            "Body-Sign {value:?}: sign_type must be \"HMAC-SHA256\""
        )));
    }
    match signature {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ProtocolError::new(format!(
            "Body-Sign {value:?}: signature is empty"
        ))),
    }
}

/// Checks a `Body-Sign` header value against the raw body.
pub fn verify_body_sign(key: &str, body: &[u8], header_value: &str) -> Result<bool, ProtocolError> {
    let sig = parse_body_sign(header_value)?;
    Ok(verify_base64(mac(key.as_bytes(), body), sig))
}

/// Checks a received GET `authToken` over decoded parameters.
pub fn verify_auth_token(
    key: &str,
    params: &[(String, String)],
    received: &str,
) -> Result<bool, ProtocolError> {
    let mac = token_mac(key, timestamp_of(params)?, &string_to_sign(params));
    Ok(verify_base64(mac, received))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        let key = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
        let body = br#"{"resultCode":"000000","resultMsg":"success.","instanceId":"61e834ba-7b97-4418-b8f7-e5345137278c"}"#;
        assert_eq!(
            body_sign(key, body),
            "uqKPTNm33Dc+9kwcxTRY/3+kbLaXYijolEiIZ7zUM9U="
        );
        let v = "sign_type=\"HMAC-SHA256\", signature= \"uqKPTNm33Dc+9kwcxTRY/3+kbLaXYijolEiIZ7zUM9U=\"";
        assert!(verify_body_sign(key, body, v).unwrap());
        assert!(!verify_body_sign(key, b"{}", v).unwrap());
    }

    #[test]
    fn auth_token_check_agrees_with_the_token() {
        let key = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
        let params: Vec<(String, String)> = [
            ("timeStamp", "20200727073711903"),
            ("activity", "newInstance"),
            ("b", ""),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let t = auth_token(key, &params).unwrap().auth_token;
        assert!(verify_auth_token(key, &params, &t).unwrap());
        assert!(!verify_auth_token(key, &params[..2], &t).unwrap());
        assert!(!verify_auth_token(key, &params, "not base64").unwrap());
    }

    #[test]
    fn body_sign_header_forms() {
        let sig = "uqKPTNm33Dc+9kwcxTRY/3+kbLaXYijolEiIZ7zUM9U=";
        for ok in [
            format!("sign_type=\"HMAC-SHA256\", signature=\"{sig}\""),
            format!("sign_type=\"HMAC-SHA256\", signature= \"{sig}\""),
            format!("signature=\"{sig}\",sign_type=\"HMAC-SHA256\""),
        ] {
            assert_eq!(parse_body_sign(&ok).unwrap(), sig, "{ok}");
        }
        for bad in [
            format!("sign_type=\"HMAC-SHA256\", signature=\"{sig}\", x=\"1\""),
            "sign_type=\"HMAC-SHA256\", signature=\"\"".to_string(),
            format!("sign_type=\"HMAC-SHA1\", signature=\"{sig}\""),
        ] {
            assert!(parse_body_sign(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decode_and_encode() {
        assert_eq!(percent_decode("a%2Bb+c", false).unwrap(), "a+b+c");
        assert_eq!(percent_decode("a%2Bb+c", true).unwrap(), "a+b c");
        assert_eq!(percent_encode("a b/中"), "a%20b%2F%E4%B8%AD");
        assert!(percent_decode("%G1", false).is_err());
    }
}
