//! Huawei API Gateway AK/SK signing, `SDK-HMAC-SHA256` (license-and-usage.md §5).

use super::hmac::{hmac_sha256, mac, sha256_hex, to_hex, verify_hex};
use super::v1::{encode_query, parse_query, percent_decode, percent_encode};
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

/// Splits a URL (absolute or a bare path) into (host with port, path, query), as written:
/// the url crate would normalise the path (dot segments, an empty path read as `/`), and the
/// signature is over the request as sent.
pub fn split_url(url: &str) -> (Option<&str>, &str, &str) {
    // A scheme ends at the first ':', which comes before any '/', '?' or '#'.
    let (host, rest) = match url.split_once("://") {
        Some((scheme, rest)) if !scheme.contains([':', '/', '?', '#']) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            (Some(&rest[..end]), &rest[end..])
        }
        _ => (None, url),
    };
    let rest = rest.split('#').next().unwrap_or_default();
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
    let mut pairs = parse_query(query, false)?;
    pairs.sort();
    Ok(encode_query(&pairs))
}

/// Signs a request, keeping every intermediate (for `--json` and the doctor).
/// `signed_headers` are the header names to sign (any case, in any order, or already joined
/// by ';'); each must be present in `headers`, and `x-sdk-date` must be among them.
pub fn sign<S: AsRef<str>>(
    ak: &str,
    sk: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    signed_headers: &[S],
    body: &[u8],
) -> Result<ApigSignature, ProtocolError> {
    let names = signed_list(signed_headers.iter().map(AsRef::as_ref))?;
    let (canonical_request, date) = canonical_request(method, url, headers, &names, body)?;
    let string_to_sign = string_to_sign(&canonical_request, date);
    let signature = to_hex(&hmac_sha256(sk.as_bytes(), string_to_sign.as_bytes()));
    let signed_headers = names.join(";");
    let authorization = authorization_value(ak, &signed_headers, &signature);
    Ok(ApigSignature {
        canonical_request,
        string_to_sign,
        signature,
        signed_headers,
        authorization,
    })
}

/// The `Authorization` header value alone (what a sender needs).
pub fn authorization<S: AsRef<str>>(
    ak: &str,
    sk: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    signed_headers: &[S],
    body: &[u8],
) -> Result<String, ProtocolError> {
    Ok(sign(ak, sk, method, url, headers, signed_headers, body)?.authorization)
}

/// `SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`.
pub fn authorization_value(ak: &str, signed: &str, signature: &str) -> String {
    format!("{ALGORITHM} Access={ak}, SignedHeaders={signed}, Signature={signature}")
}

/// `SDK-HMAC-SHA256`, the X-Sdk-Date value and the hex SHA-256 of the canonical request.
pub fn string_to_sign(canonical_request: &str, date: &str) -> String {
    let hash = sha256_hex(canonical_request.as_bytes());
    format!("{ALGORITHM}\n{date}\n{hash}")
}

/// The canonical request (spec §5.1: method, URI, query, signed headers, their list, body
/// hash, joined by newlines) and the X-Sdk-Date value signed with it. `names` are a
/// signed list as [`signed_list`] makes it.
fn canonical_request<'h>(
    method: &str,
    url: &str,
    headers: &'h [(String, String)],
    names: &[String],
    body: &[u8],
) -> Result<(String, &'h str), ProtocolError> {
    let (_, path, query) = split_url(url);
    let mut out = format!(
        "{}\n{}\n{}\n",
        method.to_ascii_uppercase(),
        canonical_uri(path)?,
        canonical_query(query)?
    );
    let mut date = None;
    for n in names {
        let is_date = n == "x-sdk-date";
        let v = match header_value(headers, n) {
            Some(v) => v,
            None if is_date => return Err(date_missing()),
            None => {
                return Err(ProtocolError::new(format!(
                    "header {n}: listed as signed but not present in the request"
                )))
            }
        };
        if is_date {
            date = Some(v);
        }
        out.push_str(&format!("{n}:{}\n", v.trim_ascii()));
    }
    let Some(date) = date else {
        return Err(match header_value(headers, DATE_HEADER) {
            None => date_missing(),
            Some(_) => ProtocolError::new("signed headers: must include x-sdk-date"),
        });
    };
    out.push_str(&format!("\n{}\n{}", names.join(";"), sha256_hex(body)));
    Ok((out, date))
}

/// The names to sign as the recipe lists them: trimmed, lower case, sorted, without repeats
/// (a name holding ';' is a list itself).
fn signed_list<'a>(names: impl Iterator<Item = &'a str>) -> Result<Vec<String>, ProtocolError> {
    let mut list: Vec<String> = names
        .flat_map(|n| n.split(';'))
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    list.sort();
    list.dedup();
    if let Some(bad) = list
        .iter()
        .find(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ProtocolError::new(format!(
            "signed headers: {bad:?} is not a header name (printable ASCII, no spaces)"
        )));
    }
    Ok(list)
}

fn date_missing() -> ProtocolError {
    ProtocolError::new("X-Sdk-Date: missing (format YYYYMMDDTHHMMSSZ, UTC)")
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

/// Verifies a received request against its `Authorization` header: the signature is
/// decoded and compared in constant time. [`sign`] recomputes the intermediates.
pub fn verify(
    sk: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<bool, ProtocolError> {
    let auth = header_value(headers, "authorization")
        .ok_or_else(|| ProtocolError::new("Authorization: header missing"))?;
    let auth = parse_authorization(auth)?;
    let names = signed_list(auth.signed_header_names().into_iter())?;
    let (canonical_request, date) = canonical_request(method, url, headers, &names, body)?;
    let string_to_sign = string_to_sign(&canonical_request, date);
    Ok(verify_hex(
        mac(sk.as_bytes(), string_to_sign.as_bytes()),
        auth.signature,
    ))
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
        assert!(parse_authorization("SDK-HMAC-SHA256 Access=AK1, Signature=ab").is_err());
    }

    #[test]
    fn urls_split_at_scheme_path_query_and_fragment() {
        for (url, want) in [
            ("https://h:8443/a/b?x=1#f", (Some("h:8443"), "/a/b", "x=1")),
            ("https://h?x=1", (Some("h"), "", "x=1")),
            ("https://h#f?x=1", (Some("h"), "", "")),
            ("https://h", (Some("h"), "", "")),
            ("/p/q?x=http://y", (None, "/p/q", "x=http://y")),
            ("a:b/c://d/e", (None, "a:b/c://d/e", "")),
            ("p#x://h/q", (None, "p", "")),
            ("", (None, "", "")),
        ] {
            assert_eq!(split_url(url), want, "{url}");
        }
    }

    #[test]
    fn signed_names_in_any_form_sign_alike() {
        let h = |n: &str, v: &str| (n.to_string(), v.to_string());
        let headers = vec![h("Host", "h"), h("X-Sdk-Date", "20191115T033655Z")];
        let url = "https://h/p";
        let want = authorization(
            "AK",
            "SK",
            "GET",
            url,
            &headers,
            &["host", "x-sdk-date"],
            b"",
        );
        let want = want.unwrap();
        for names in [
            vec!["X-Sdk-Date", "Host"],
            vec!["host;x-sdk-date"],
            vec![" host ", "x-sdk-date", "host"],
        ] {
            let got = authorization("AK", "SK", "GET", url, &headers, &names, b"").unwrap();
            assert_eq!(got, want, "{names:?}");
            assert_eq!(
                sign("AK", "SK", "GET", url, &headers, &names, b"")
                    .unwrap()
                    .authorization,
                want
            );
        }
        // A received list in another form is read the same way.
        let mut received = headers.clone();
        let odd = want.replace(
            "SignedHeaders=host;x-sdk-date",
            "SignedHeaders=X-Sdk-Date;Host",
        );
        received.push(h("Authorization", &odd));
        assert!(verify("SK", "GET", url, &received, b"").unwrap());
        // The errors name the header at fault.
        let err = |headers: &[(String, String)], names: &[&str]| {
            authorization("AK", "SK", "GET", url, headers, names, b"")
                .unwrap_err()
                .to_string()
        };
        assert!(err(&headers, &["host"]).contains("must include x-sdk-date"));
        assert!(err(&headers[..1], &["host"]).contains("X-Sdk-Date: missing"));
        assert!(err(&headers[..1], &["host", "x-sdk-date"]).contains("X-Sdk-Date: missing"));
        assert!(err(&headers, &["a", "x-sdk-date"]).contains("header a: listed as signed"));
        for odd in [&["host;;x-sdk-date"][..], &["host", "x sdk"], &["中"]] {
            assert!(
                err(&headers, odd).contains("is not a header name"),
                "{odd:?}"
            );
        }
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
