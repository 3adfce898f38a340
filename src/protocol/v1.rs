//! V1 (legacy) signatures: the GET `authToken`, the Kit POST `authToken` header and the
//! `Body-Sign` response header.

use super::hmac::{b64_eq, hmac_sha256, SignatureBytes};
use super::json::{is_name, write_compact, Json};
use super::text::Text;
use super::ProtocolError;

pub const BODY_SIGN_HEADER: &str = "Body-Sign";

#[derive(Debug, Clone, PartialEq)]
pub struct AuthToken {
    pub string_to_sign: String,
    /// The timeStamp value appended to the access key to form the HMAC key.
    pub timestamp: String,
    pub auth_token: String,
}

/// Percent-encodes everything but RFC 3986 unreserved characters, `%XX` upper case.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-decodes as UTF-8. `plus_as_space` reads `+` as a space (HTML forms); the
/// marketplace encodes spaces as `%20`, so signing code passes false.
pub fn percent_decode(s: &str, plus_as_space: bool) -> Result<String, ProtocolError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or_else(|| {
                    ProtocolError::new(format!("query {s:?}: '%' at byte {i} needs two hex digits"))
                })?;
                // from_str_radix would accept a sign ("%+A"): require two hex digits.
                let v = Some(hex)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ProtocolError::new(format!("query {s:?}: '%{hex}' at byte {i} is not hex"))
                    })?;
                out.push(v);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| ProtocolError::new(format!("query {s:?}: decodes to invalid UTF-8")))
}

/// Splits a query string into decoded (name, value) pairs in order; `a` alone means `a=`.
pub fn parse_query(
    query: &str,
    plus_as_space: bool,
) -> Result<Vec<(String, String)>, ProtocolError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((
                percent_decode(n, plus_as_space)?,
                percent_decode(v, plus_as_space)?,
            ))
        })
        .collect()
}

pub fn encode_query(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(n, v)| format!("{}={}", percent_encode(n), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The GET string to sign: every parameter but `authToken`, sorted by name (code units).
pub fn string_to_sign(params: &[(String, String)]) -> String {
    let mut out = Text::new();
    push_string_to_sign(&mut out, params);
    String::from_utf8(out.into_vec()).expect("joined from strings")
}

/// Appends the GET string to sign to `out`.
fn push_string_to_sign(out: &mut Text, params: &[(String, String)]) {
    // A callback carries a handful of parameters: their order is sorted on the stack.
    const ON_STACK: usize = 32;
    if params.len() > ON_STACK {
        let mut p: Vec<usize> = (0..params.len()).collect();
        sort_by_name(&mut p, params);
        push_joined(out, params, p);
        return;
    }
    let mut order = [0usize; ON_STACK];
    let p = &mut order[..params.len()];
    for (i, slot) in p.iter_mut().enumerate() {
        *slot = i;
    }
    sort_by_name(p, params);
    push_joined(out, params, p.iter().copied());
}

/// Sorts parameter indices by name in Java string order; equal names keep their order.
fn sort_by_name(order: &mut [usize], params: &[(String, String)]) {
    if params.iter().all(|(n, _)| n.is_ascii()) {
        // ASCII names: byte order is Java's order.
        order.sort_unstable_by(|&a, &b| {
            super::json::ascii_cmp(params[a].0.as_bytes(), params[b].0.as_bytes()).then(a.cmp(&b))
        });
    } else {
        order.sort_unstable_by(|&a, &b| {
            super::json::java_cmp(&params[a].0, &params[b].0).then(a.cmp(&b))
        });
    }
}

fn push_joined(
    out: &mut Text,
    params: &[(String, String)],
    order: impl IntoIterator<Item = usize>,
) {
    out.reserve(params.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
    let mut first = true;
    for i in order {
        let (n, v) = &params[i];
        if is_name(n, "authToken") {
            continue;
        }
        if !first {
            out.push_byte(b'&');
        }
        first = false;
        out.push(n.as_bytes());
        out.push_byte(b'=');
        out.push(v.as_bytes());
    }
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

/// The GET `authToken` over decoded parameters, with its intermediates.
pub fn auth_token(key: &str, params: &[(String, String)]) -> Result<AuthToken, ProtocolError> {
    let timestamp = timestamp_of(params)?;
    Ok(auth_token_over(key, timestamp, string_to_sign(params)))
}

/// The GET `authToken` alone (what a sender puts in the query, and what a check compares):
/// built without an allocation, and without sorting parameters that come sorted.
pub fn auth_token_value(
    key: &str,
    params: &[(String, String)],
) -> Result<SignatureBytes, ProtocolError> {
    // One pass finds the timeStamp and whether the names come sorted (as a sender's do).
    let mut timestamp = None;
    let mut sorted = true;
    let mut prev: &str = "";
    for (n, v) in params {
        if is_name(n, "authToken") {
            continue;
        }
        if timestamp.is_none() && is_name(n, "timeStamp") {
            timestamp = Some(v.as_str());
        }
        // ASCII names in byte order are in Java order; equal names keep theirs.
        sorted &= n.is_ascii() && super::json::ascii_cmp(prev.as_bytes(), n.as_bytes()).is_le();
        prev = n;
    }
    let timestamp = match timestamp {
        Some(t) => t,
        None => timestamp_of(params)?,
    };
    // HMAC key (access key + timeStamp) and string to sign share one buffer, kept per
    // thread: no allocation per token.
    let mut text = Text::scratch();
    text.push(key.as_bytes());
    text.push(timestamp.as_bytes());
    let key_len = text.len();
    if sorted {
        push_joined(&mut text, params, 0..params.len());
    } else {
        push_string_to_sign(&mut text, params);
    }
    let (hmac_key, string_to_sign) = text.as_bytes().split_at(key_len);
    let token = SignatureBytes(hmac_sha256(hmac_key, string_to_sign));
    text.keep();
    Ok(token)
}

/// The token over any candidate string (the doctor tries variants through this).
pub fn auth_token_over(key: &str, timestamp: &str, string_to_sign: String) -> AuthToken {
    let hmac_key = [key.as_bytes(), timestamp.as_bytes()].concat();
    let auth_token = SignatureBytes(hmac_sha256(&hmac_key, string_to_sign.as_bytes()))
        .base64()
        .into();
    AuthToken {
        string_to_sign,
        timestamp: timestamp.to_string(),
        auth_token,
    }
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
            Json::Array(_) | Json::Object(_) => {
                let mut s = String::new();
                write_compact(&mut s, v);
                s
            }
            other => other.scalar_text().unwrap_or_default(),
        };
        if text.trim().is_empty() {
            continue;
        }
        pairs.push((k, text));
    }
    pairs.sort_by(|a, b| super::json::java_cmp(a.0, b.0));
    Ok(pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&"))
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
    SignatureBytes(hmac_sha256(key.as_bytes(), body))
        .base64()
        .into()
}

const BODY_SIGN_HEAD: &str = "sign_type=\"HMAC-SHA256\", signature=\"";

pub fn body_sign_header_value(signature: &str) -> String {
    let mut v = String::with_capacity(BODY_SIGN_HEAD.len() + signature.len() + 1);
    v.push_str(BODY_SIGN_HEAD);
    v.push_str(signature);
    v.push('"');
    v
}

/// Reads `sign_type="HMAC-SHA256", signature="…"`, tolerating spaces around `=` and `,`
/// (the documentation example has a space after `signature=`). Returns the signature.
pub fn parse_body_sign(value: &str) -> Result<&str, ProtocolError> {
    // The form csm and the official demo write, read without splitting.
    if let Some(sig) = value
        .strip_prefix(BODY_SIGN_HEAD)
        .and_then(|r| r.strip_suffix('"'))
    {
        if !sig.is_empty() && !sig.bytes().any(|b| b == b'"' || b == b',') {
            return Ok(sig);
        }
    }
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
    Ok(SignatureBytes(hmac_sha256(key.as_bytes(), body)).matches_base64(sig))
}

/// Checks a received GET `authToken` over decoded parameters, comparing decoded bytes in
/// constant time (no Base64 encoding of the expected value).
pub fn verify_auth_token(
    key: &str,
    params: &[(String, String)],
    received: &str,
) -> Result<bool, ProtocolError> {
    Ok(auth_token_value(key, params)?.matches_base64(received))
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
    fn streamed_auth_token_check_agrees_with_the_token() {
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

    proptest::proptest! {
        /// The token alone (built on the stack when it fits, unsorted when the names come
        /// sorted) is the token of the full recipe, whatever the order and sizes.
        #[test]
        fn token_alone_agrees_with_the_recipe(
            params in proptest::collection::vec(("(authToken|timeStamp|[a-cB中]{0,3})", "[a-z]{0,2}|x{300}"), 0..12),
            timestamp in "[0-9]{0,17}|9{80}",
            sort in proptest::bool::ANY,
        ) {
            let mut params = params;
            params.push(("timeStamp".to_string(), timestamp));
            if sort {
                params.sort_by(|a, b| a.0.cmp(&b.0));
            }
            let key = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
            let alone: String = auth_token_value(key, &params).unwrap().base64().into();
            proptest::prop_assert_eq!(alone, auth_token(key, &params).unwrap().auth_token);
        }

        /// The stack sort agrees with a plain stable sort in Java order, for repeated names,
        /// non-ASCII names and lists longer than the stack holds.
        #[test]
        fn string_to_sign_is_a_stable_java_order_sort(
            params in proptest::collection::vec(("(authToken|[a-cA-C中😀]{0,3})", "[a-z]{0,2}"), 0..40)
        ) {
            let mut reference: Vec<&(String, String)> =
                params.iter().filter(|(n, _)| n != "authToken").collect();
            reference.sort_by(|a, b| crate::protocol::json::java_cmp(&a.0, &b.0));
            let joined: Vec<String> = reference.iter().map(|(n, v)| format!("{n}={v}")).collect();
            proptest::prop_assert_eq!(string_to_sign(&params), joined.join("&"));
        }
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
