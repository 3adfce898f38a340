//! Huawei API Gateway AK/SK signing, `SDK-HMAC-SHA256` (license-and-usage.md §5).

use super::hmac::{hex_eq, hmac_sha256, sha256_hex};
use super::v1::{percent_decode, percent_encode};
use super::ProtocolError;

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

/// Signs a request. `signed_headers` are the header names to sign (any case); each must be
/// present in `headers`, and `x-sdk-date` must be among them.
pub fn sign(
    ak: &str,
    sk: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    signed_headers: &[String],
    body: &[u8],
) -> Result<ApigSignature, ProtocolError> {
    let (_, path, query) = split_url(url);
    let mut names: Vec<String> = signed_headers
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let date = header_value(headers, DATE_HEADER)
        .ok_or_else(|| ProtocolError::new("X-Sdk-Date: missing (format YYYYMMDDTHHMMSSZ, UTC)"))?;
    if !names.iter().any(|n| n == "x-sdk-date") {
        return Err(ProtocolError::new(
            "signed headers: must include x-sdk-date",
        ));
    }
    let mut canonical_headers = String::new();
    for n in &names {
        let v = header_value(headers, n).ok_or_else(|| {
            ProtocolError::new(format!(
                "header {n}: listed as signed but not present in the request"
            ))
        })?;
        canonical_headers.push_str(&format!("{n}:{}\n", v.trim()));
    }
    let signed = names.join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        canonical_uri(path)?,
        canonical_query(query)?,
        canonical_headers,
        signed,
        sha256_hex(body)
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{date}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let signature = hex::encode(hmac_sha256(sk.as_bytes(), string_to_sign.as_bytes()));
    let authorization =
        format!("{ALGORITHM} Access={ak}, SignedHeaders={signed}, Signature={signature}");
    Ok(ApigSignature {
        canonical_request,
        string_to_sign,
        signature,
        signed_headers: signed,
        authorization,
    })
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The parts of an `Authorization: SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…` header.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    pub access: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

pub fn parse_authorization(value: &str) -> Result<Authorization, ProtocolError> {
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
            "Access" => access = Some(v.trim().to_string()),
            "SignedHeaders" => signed = Some(v.trim().split(';').map(str::to_string).collect()),
            "Signature" => signature = Some(v.trim().to_string()),
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

/// Verifies a received request; returns the recomputed signature and whether it matches.
pub fn verify(
    sk: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(ApigSignature, bool), ProtocolError> {
    let auth = header_value(headers, "Authorization")
        .ok_or_else(|| ProtocolError::new("Authorization: header missing"))?;
    let auth = parse_authorization(auth)?;
    let sig = sign(
        &auth.access,
        sk,
        method,
        url,
        headers,
        &auth.signed_headers,
        body,
    )?;
    let ok = hex_eq(&sig.signature, &auth.signature);
    Ok((sig, ok))
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
            &["content-type".into(), "host".into(), "x-sdk-date".into()],
            b"",
        )
        .unwrap();
        assert_eq!(
            s.signature,
            "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
        );
    }
}
