//! Huawei API Gateway AK/SK signing, `SDK-HMAC-SHA256` (license-and-usage.md §5).

use super::hmac::{hex_lower, hmac_sha256, sha256_hex, HmacSha256, SignatureBytes};
use super::v1::{percent_decode, percent_encode};
use super::ProtocolError;
use hmac::Mac;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
pub const DATE_HEADER: &str = "X-Sdk-Date";

#[derive(Debug, Clone, PartialEq)]
pub struct ApigSignature {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature: String,
    pub signed_headers: String,
    pub authorization: String,
}

/// `host[:port]` as a Host header carries it for `url`: lower case, without user info or the
/// scheme's default port (spec §5.1 step 2), so the value signed is the value the gateway
/// sees. None for a URL without an http(s) scheme or a host.
pub fn host_header_value(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let authority = split_url(url).0?.rsplit('@').next()?.to_ascii_lowercase();
    if authority.is_empty() || authority.starts_with(':') {
        return None;
    }
    Some(
        authority
            .strip_suffix(default)
            .unwrap_or(&authority)
            .to_string(),
    )
}

/// Splits a URL (absolute or a bare path) into (host with port, path, query).
pub fn split_url(url: &str) -> (Option<&str>, &str, &str) {
    let url = url.split('#').next().unwrap_or("");
    let (host, rest) = match url.split_once("://") {
        Some((_, after)) => match after.find(['/', '?']) {
            Some(i) => (Some(&after[..i]), &after[i..]),
            None => (Some(after), ""),
        },
        None => (None, url),
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    (host, path, query)
}

pub fn canonical_uri(path: &str) -> Result<String, ProtocolError> {
    let decoded = percent_decode(path, false)?;
    let mut out = decoded
        .split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/");
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    if !out.ends_with('/') {
        out.push('/');
    }
    Ok(out)
}

/// Decoded names and values, sorted by name then value, then percent-encoded (decision 10).
pub fn canonical_query(query: &str) -> Result<String, ProtocolError> {
    let mut pairs = super::v1::parse_query(query, false)?;
    pairs.sort_by(|a, b| {
        a.0.as_bytes()
            .cmp(b.0.as_bytes())
            .then(a.1.as_bytes().cmp(b.1.as_bytes()))
    });
    Ok(pairs
        .iter()
        .map(|(n, v)| format!("{}={}", percent_encode(n), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&"))
}

/// Signs a request, keeping every intermediate (for `--json` and the doctor).
/// `signed_headers` are the header names to sign (any case); each must be present in
/// `headers`, and `x-sdk-date` must be among them.
pub fn sign<S: AsRef<str>>(
    ak: &str,
    sk: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    signed_headers: &[S],
    body: &[u8],
) -> Result<ApigSignature, ProtocolError> {
    let signed = signed_list(signed_headers);
    let (canonical_request, date) = canonical_request(method, url, headers, &signed, body)?;
    let canonical_request = String::from_utf8(canonical_request).expect("joined from strings");
    let string_to_sign = format!(
        "{ALGORITHM}\n{date}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let signature: String = SignatureBytes(hmac_sha256(sk.as_bytes(), string_to_sign.as_bytes()))
        .hex()
        .into();
    let authorization = authorization_value(ak, &signed, &signature);
    Ok(ApigSignature {
        canonical_request,
        string_to_sign,
        signature,
        signed_headers: signed.into_owned(),
        authorization,
    })
}

/// The `Authorization` header value alone (what a sender needs): the canonical request is
/// gathered in one buffer, hashed, and the string to sign streamed into the HMAC.
pub fn authorization<S: AsRef<str>>(
    ak: &str,
    sk: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    signed_headers: &[S],
    body: &[u8],
) -> Result<String, ProtocolError> {
    let signed = signed_list(signed_headers);
    let sig = signature_bytes(sk, method, url, headers, &signed, body)?;
    let digits = hex_lower(&sig);
    let hex = std::str::from_utf8(&digits).expect("hex digits are ASCII");
    Ok(authorization_value(ak, &signed, hex))
}

/// `SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`.
pub fn authorization_value(ak: &str, signed: &str, signature: &str) -> String {
    let mut v = String::with_capacity(64 + ak.len() + signed.len() + signature.len());
    for part in [
        ALGORITHM,
        " Access=",
        ak,
        ", SignedHeaders=",
        signed,
        ", Signature=",
        signature,
    ] {
        v.push_str(part);
    }
    v
}

/// The signature over a canonical signed-header list.
fn signature_bytes(
    sk: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    signed: &str,
    body: &[u8],
) -> Result<[u8; 32], ProtocolError> {
    let (canonical_request, date) = canonical_request(method, url, headers, signed, body)?;
    let request_hash = hex_lower(&Sha256::digest(&canonical_request).into());
    let mut mac = HmacSha256::new_from_slice(sk.as_bytes()).expect("HMAC takes keys of any length");
    for part in [
        ALGORITHM.as_bytes(),
        b"\n",
        date.as_bytes(),
        b"\n",
        &request_hash,
    ] {
        mac.update(part);
    }
    Ok(mac.finalize().into_bytes().into())
}

/// Signed header names as the recipe lists them: trimmed, lower case, sorted, without
/// repeats, joined by ';'.
fn signed_list<S: AsRef<str>>(names: &[S]) -> Cow<'_, str> {
    match names {
        [one] if is_signed_list(std::iter::once(one.as_ref())) => Cow::Borrowed(one.as_ref()),
        _ if is_signed_list(names.iter().map(AsRef::as_ref)) => Cow::Owned(
            names
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(";"),
        ),
        _ => Cow::Owned(normalised_list(names.iter().map(AsRef::as_ref))),
    }
}

/// The same from a received `SignedHeaders=` value: borrowed when it already is one (as every
/// signer writes it).
fn signed_list_joined(raw: &str) -> Cow<'_, str> {
    if is_signed_list(raw.split(';')) {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(normalised_list(raw.split(';')))
    }
}

fn is_signed_list<'a>(names: impl Iterator<Item = &'a str>) -> bool {
    let mut prev: Option<&str> = None;
    names.into_iter().all(|n| {
        let ok = !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase() && b != b';')
            && prev.is_none_or(|p| p < n);
        prev = Some(n);
        ok
    })
}

fn normalised_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut list: Vec<String> = names.map(|h| h.trim().to_ascii_lowercase()).collect();
    list.sort();
    list.dedup();
    list.join(";")
}

/// The X-Sdk-Date value; it must be present and signed.
fn date_of<'h>(headers: &'h [(String, String)], signed: &str) -> Result<&'h str, ProtocolError> {
    let date = header_value(headers, DATE_HEADER)
        .ok_or_else(|| ProtocolError::new("X-Sdk-Date: missing (format YYYYMMDDTHHMMSSZ, UTC)"))?;
    if !signed.split(';').any(|n| n == "x-sdk-date") {
        return Err(ProtocolError::new(
            "signed headers: must include x-sdk-date",
        ));
    }
    Ok(date)
}

/// The canonical request, built in one buffer, and the X-Sdk-Date value signed with it.
fn canonical_request<'h>(
    method: &str,
    url: &str,
    headers: &'h [(String, String)],
    signed: &str,
    body: &[u8],
) -> Result<(Vec<u8>, &'h str), ProtocolError> {
    let date = date_of(headers, signed)?;
    let mut out = Vec::with_capacity(512);
    let (_, path, query) = split_url(url);
    out.extend(method.bytes().map(|b| b.to_ascii_uppercase()));
    out.push(b'\n');
    push_canonical_uri(&mut out, path)?;
    out.push(b'\n');
    if !query.is_empty() {
        out.extend_from_slice(canonical_query(query)?.as_bytes());
    }
    out.push(b'\n');
    for n in signed.split(';') {
        let v = header_value(headers, n).ok_or_else(|| {
            ProtocolError::new(format!(
                "header {n}: listed as signed but not present in the request"
            ))
        })?;
        out.extend_from_slice(n.as_bytes());
        out.push(b':');
        out.extend_from_slice(v.trim().as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&hex_lower(&Sha256::digest(body).into()));
    Ok((out, date))
}

/// A path of unreserved characters and slashes decodes and re-encodes to itself, so only
/// the slashes at its ends can change; anything else takes [`canonical_uri`].
fn push_canonical_uri(out: &mut Vec<u8>, path: &str) -> Result<(), ProtocolError> {
    let plain = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/'));
    if !plain {
        out.extend_from_slice(canonical_uri(path)?.as_bytes());
        return Ok(());
    }
    if !path.starts_with('/') {
        out.push(b'/');
    }
    out.extend_from_slice(path.as_bytes());
    if out.last() != Some(&b'/') {
        out.push(b'/');
    }
    Ok(())
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The parts of an `Authorization: SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`
/// header, borrowed from its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization<'a> {
    pub access: &'a str,
    /// The names as listed, joined by ';'.
    pub signed_headers: &'a str,
    pub signature: &'a str,
}

impl<'a> Authorization<'a> {
    pub fn signed_header_names(&self) -> Vec<&'a str> {
        self.signed_headers.split(';').collect()
    }
}

pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, ProtocolError> {
    if let Some(auth) = exact_authorization(value) {
        return Ok(auth);
    }
    let rest = value
        .trim()
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| ProtocolError::new(format!("Authorization: must start with {ALGORITHM}")))?;
    let (mut access, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or_else(|| {
            ProtocolError::new(format!(
                "Authorization: part {:?} is not name=value",
                part.trim()
            ))
        })?;
        match k.trim() {
            "Access" => access = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    match (access, signed, signature) {
        (Some(access), Some(signed_headers), Some(signature)) => Ok(Authorization {
            access,
            signed_headers,
            signature,
        }),
        _ => Err(ProtocolError::new(
            "Authorization: needs Access=, SignedHeaders= and Signature=",
        )),
    }
}

/// The form every signer writes, read without splitting; None for anything else (spacing
/// variants, other order), which the general reader takes.
fn exact_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("SDK-HMAC-SHA256 Access=")?;
    let (access, rest) = rest.split_at(rest.find(',')?);
    let rest = rest.strip_prefix(", SignedHeaders=")?;
    let (signed_headers, rest) = rest.split_at(rest.find(',')?);
    let signature = rest.strip_prefix(", Signature=")?;
    let plain = |s: &str| {
        !s.is_empty()
            && !s
                .bytes()
                .any(|b| b == b',' || b == b'=' || b.is_ascii_whitespace())
    };
    (plain(access) && plain(signed_headers) && plain(signature)).then_some(Authorization {
        access,
        signed_headers,
        signature,
    })
}

/// Verifies a received request against its `Authorization` header; compares the decoded
/// signature in constant time. [`sign`] recomputes the intermediates for a message.
pub fn verify(
    sk: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<bool, ProtocolError> {
    let auth = header_value(headers, "Authorization")
        .ok_or_else(|| ProtocolError::new("Authorization: header missing"))?;
    let auth = parse_authorization(auth)?;
    let signed = signed_list_joined(auth.signed_headers);
    let got = signature_bytes(sk, method, url, headers, &signed, body)?;
    Ok(SignatureBytes(got).matches_hex(auth.signature))
}

/// Parses an `X-Sdk-Date` value (`YYYYMMDDTHHMMSSZ`) to epoch milliseconds.
pub fn parse_sdk_date(v: &str) -> Result<i64, ProtocolError> {
    chrono::NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%SZ")
        .map(|t| t.and_utc().timestamp_millis())
        .map_err(|_| {
            ProtocolError::new(format!("X-Sdk-Date {v:?}: must be YYYYMMDDTHHMMSSZ (UTC)"))
        })
}

pub fn format_sdk_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_drops_default_ports_case_and_user_info() {
        let host = |u: &str| host_header_value(u);
        assert_eq!(host("http://h:80/p").as_deref(), Some("h"));
        assert_eq!(
            host("https://MKT.Example.com:443/p").as_deref(),
            Some("mkt.example.com")
        );
        assert_eq!(host("https://h:8443/p").as_deref(), Some("h:8443"));
        assert_eq!(host("http://h:443/p").as_deref(), Some("h:443"));
        assert_eq!(host("https://u:p@h/p").as_deref(), Some("h"));
        assert_eq!(host("https:///p"), None);
        assert_eq!(host("ftp://h/p"), None);
    }

    #[test]
    fn authorization_forms_read_alike() {
        let want = Authorization {
            access: "AK1",
            signed_headers: "host;x-sdk-date",
            signature: "ab12",
        };
        for v in [
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;x-sdk-date, Signature=ab12",
            "SDK-HMAC-SHA256 Access=AK1,SignedHeaders=host;x-sdk-date,Signature=ab12",
            " SDK-HMAC-SHA256  Signature=ab12 , Access=AK1, SignedHeaders= host;x-sdk-date ",
        ] {
            assert_eq!(parse_authorization(v).unwrap(), want, "{v}");
        }
        // The exact reader leaves anything unusual to the general one.
        for odd in [
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host, Signature=ab=12",
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host, Signature=ab12, X=1",
            "SDK-HMAC-SHA256 Access=, SignedHeaders=host, Signature=ab12",
        ] {
            assert_eq!(exact_authorization(odd), None, "{odd}");
        }
        assert!(parse_authorization("SDK-HMAC-SHA256 Access=AK1, Signature=ab").is_err());
    }

    #[test]
    fn official_example() {
        let h = |n: &str, v: &str| (n.to_string(), v.to_string());
        let headers = vec![
            h("Content-Type", "application/json"),
            h("Host", "service.region.example.com"),
            h("X-Sdk-Date", "20191115T033655Z"),
        ];
        let s = sign(
            "QTWAOYTTINDUT2QVKYUC",
            "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
            "GET",
            "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
            &headers,
            &["content-type", "host", "x-sdk-date"],
            b"",
        )
        .unwrap();
        assert_eq!(
            s.signature,
            "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
        );
    }
}
