//! Huawei API Gateway AK/SK signing, `SDK-HMAC-SHA256` (license-and-usage.md §5).

use super::hmac::{hex_lower, hmac_sha256, SignatureBytes};
use super::json::is_name;
use super::text::Text;
use super::v1::{percent_decode, percent_encode};
use super::ProtocolError;
use sha2::{Digest, Sha256};

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
    let b = url.as_bytes();
    let (host, path_start) = split_host(url);
    let path_end = find_any(b, path_start, [b'?', b'#']).unwrap_or(b.len());
    let path = &url[path_start..path_end];
    if b.get(path_end) != Some(&b'?') {
        return (host, path, "");
    }
    let query_end = find_any(b, path_end + 1, [b'#']).unwrap_or(b.len());
    (host, path, &url[path_end + 1..query_end])
}

/// A URL's host with port, and where its path (or query) starts.
fn split_host(url: &str) -> (Option<&str>, usize) {
    let b = url.as_bytes();
    // A scheme ends at the first ':', which comes before any '/', '?' or '#'.
    let scheme_end = find_any(b, 0, [b':', b'/', b'?', b'#'])
        .filter(|&i| b[i] == b':' && b[i + 1..].starts_with(b"//"));
    match scheme_end {
        Some(i) => {
            let end = find_any(b, i + 3, [b'/', b'?', b'#']).unwrap_or(b.len());
            (Some(&url[i + 3..end]), end)
        }
        None => (None, 0),
    }
}

/// The first position at or after `from` of any of `needles`, eight bytes at a time: a URL
/// is too short for a search call to pay for itself.
fn find_any<const N: usize>(hay: &[u8], from: usize, needles: [u8; N]) -> Option<usize> {
    let mut i = from;
    while let Some(chunk) = hay.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let hits = needles
            .iter()
            .fold(0, |hits, &n| hits | super::json::byte_hits(word, n));
        if hits != 0 {
            // Only the lowest flag is exact (a borrow can flag the byte above a hit).
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    hay.get(i..)?
        .iter()
        .position(|c| needles.contains(c))
        .map(|j| i + j)
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
    let names = signed_headers.iter().map(AsRef::as_ref);
    let mut request =
        CanonicalRequest::build(Text::new(), method, url, headers, names, None, body)?;
    let signed_headers = request.signed_list().to_string();
    let at = request.push_string_to_sign();
    let text = request.text.as_bytes();
    let as_string = |b: &[u8]| String::from_utf8(b.to_vec()).expect("joined from strings");
    let canonical_request = as_string(&text[..at.start]);
    let string_to_sign = as_string(&text[at.clone()]);
    let signature: String = SignatureBytes(hmac_sha256(sk.as_bytes(), &text[at]))
        .hex()
        .into();
    let authorization = authorization_value(ak, &signed_headers, &signature);
    Ok(ApigSignature {
        canonical_request,
        string_to_sign,
        signature,
        signed_headers,
        authorization,
    })
}

/// The `Authorization` header value alone (what a sender needs): the canonical request is
/// built in a per-thread buffer, and the value is the one allocation.
pub fn authorization<S: AsRef<str>>(
    ak: &str,
    sk: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    signed_headers: &[S],
    body: &[u8],
) -> Result<String, ProtocolError> {
    let names = signed_headers.iter().map(AsRef::as_ref);
    let text = Text::scratch();
    let mut request = CanonicalRequest::build(text, method, url, headers, names, None, body)?;
    let authorization = request.authorization(ak, sk);
    request.text.keep();
    Ok(authorization)
}

/// `SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`.
pub fn authorization_value(ak: &str, signed: &str, signature: &str) -> String {
    authorization_from_bytes(ak.as_bytes(), signed.as_bytes(), signature.as_bytes())
}

/// [`authorization_value`] from pieces held as bytes (each a string, or hex digits):
/// assembled as bytes and checked as text once, which costs less than checking each piece.
// Inlined, so that a signature's known length (64 digits) is a fixed-size copy.
#[inline(always)]
fn authorization_from_bytes(ak: &[u8], signed: &[u8], signature: &[u8]) -> String {
    let parts: [&[u8]; 7] = [
        ALGORITHM.as_bytes(),
        b" Access=",
        ak,
        b", SignedHeaders=",
        signed,
        b", Signature=",
        signature,
    ];
    let mut value = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        value.extend_from_slice(part);
    }
    String::from_utf8(value).expect("joined from strings and hex digits")
}

/// The canonical request text, with the X-Sdk-Date value signed with it and where the
/// signed-header list lies in the text.
struct CanonicalRequest<'h> {
    text: Text,
    date: &'h str,
    signed: std::ops::Range<usize>,
}

/// What [`write_listed`] did: wrote the request, or found the names not in list form and
/// hands the buffer back for the second try.
enum Listed<'h> {
    Written(CanonicalRequest<'h>),
    NotListed(Text),
}

impl<'h> CanonicalRequest<'h> {
    /// Written into `text` (empty; a buffer to reuse). `names` are the header names to
    /// sign, as given: used as they are when they already are the list the recipe wants (as
    /// every signer writes them); `joined` is the same names joined by ';', when the caller
    /// has them so.
    fn build<'n>(
        text: Text,
        method: &str,
        url: &str,
        headers: &'h [(String, String)],
        names: impl Iterator<Item = &'n str> + Clone,
        joined: Option<&str>,
        body: &[u8],
    ) -> Result<Self, ProtocolError> {
        let listed = write_listed(text, method, url, headers, names.clone(), joined, body)?;
        Ok(match listed {
            Listed::Written(request) => request,
            Listed::NotListed(mut text) => {
                let list = normalised_list(names);
                if let Some(bad) = list
                    .iter()
                    .find(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic()))
                {
                    return Err(ProtocolError::new(format!(
                        "signed headers: {bad:?} is not a header name (printable ASCII, no spaces)"
                    )));
                }
                let names = list.iter().map(String::as_str);
                text.truncate(0);
                match write_listed(text, method, url, headers, names, None, body)? {
                    Listed::Written(request) => request,
                    Listed::NotListed(_) => unreachable!("a normalised list is a signed list"),
                }
            }
        })
    }

    fn signed_list(&self) -> &str {
        std::str::from_utf8(self.text.slice(self.signed.clone())).expect("joined from header names")
    }

    /// Writes the string to sign after the canonical request (the text so far) and returns
    /// where it lies: one buffer, hashed in one update.
    fn push_string_to_sign(&mut self) -> std::ops::Range<usize> {
        let request_hash = hex_lower(&Sha256::digest(self.text.as_bytes()).into());
        let start = self.text.len();
        for part in [ALGORITHM.as_bytes(), b"\n", self.date.as_bytes(), b"\n"] {
            self.text.push(part);
        }
        self.text.push(&request_hash);
        start..self.text.len()
    }

    /// The signature; the string to sign is taken off the text again.
    fn signature(&mut self, sk: &str) -> [u8; 32] {
        let at = self.push_string_to_sign();
        let signature = hmac_sha256(sk.as_bytes(), self.text.slice(at.clone()));
        self.text.truncate(at.start);
        signature
    }

    /// The `Authorization` value for this request.
    fn authorization(&mut self, ak: &str, sk: &str) -> String {
        let digits = hex_lower(&self.signature(sk));
        let signed = self.text.slice(self.signed.clone());
        authorization_from_bytes(ak.as_bytes(), signed, &digits)
    }
}

/// The canonical request written into `text` (empty) from names that are already
/// trimmed, lower case, sorted and without repeats; the buffer back as soon as one is not
/// (checked on the way, not in a pass of its own).
fn write_listed<'h, 'n>(
    mut text: Text,
    method: &str,
    url: &str,
    headers: &'h [(String, String)],
    names: impl Iterator<Item = &'n str> + Clone,
    joined: Option<&str>,
    body: &[u8],
) -> Result<Listed<'h>, ProtocolError> {
    debug_assert!(text.is_empty());
    // Room for the usual request and the string to sign after it (method, hashes and date:
    // under 192 bytes), each header line and its name again in the list. A query that
    // percent-encoding lengthens makes the text grow instead.
    let header_bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    text.reserve(192 + url.len() + 2 * header_bytes);
    for b in method.bytes() {
        text.push_byte(b.to_ascii_uppercase());
    }
    text.push_byte(b'\n');
    // The usual URL, a path of unreserved characters (so no query either), is taken as it
    // is after one look at each byte; anything else is split and canonicalised.
    let rest = &url[split_host(url).1..];
    if is_plain_path(rest) {
        push_plain_path(&mut text, rest);
        text.push(b"\n\n");
    } else {
        let (_, path, query) = split_url(url);
        push_canonical_uri(&mut text, path)?;
        text.push_byte(b'\n');
        if !query.is_empty() {
            text.push(canonical_query(query)?.as_bytes());
        }
        text.push_byte(b'\n');
    }
    let mut date = None;
    let mut prev: &[u8] = &[];
    for n in names.clone() {
        if !follows_in_list(prev, n.as_bytes()) {
            return Ok(Listed::NotListed(text));
        }
        prev = n.as_bytes();
        let is_date = is_name(n, "x-sdk-date");
        let v = match lower_header_value(headers, n) {
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
        text.push(n.as_bytes());
        text.push_byte(b':');
        text.push(v.as_bytes().trim_ascii());
        text.push_byte(b'\n');
    }
    let Some(date) = date else {
        return Err(match header_value(headers, DATE_HEADER) {
            None => date_missing(),
            Some(_) => ProtocolError::new("signed headers: must include x-sdk-date"),
        });
    };
    text.push_byte(b'\n');
    let start = text.len();
    match joined {
        Some(list) => text.push(list.as_bytes()),
        None => {
            for (i, n) in names.enumerate() {
                if i > 0 {
                    text.push_byte(b';');
                }
                text.push(n.as_bytes());
            }
        }
    }
    let signed = start..text.len();
    text.push_byte(b'\n');
    text.push(&hex_lower(&Sha256::digest(body).into()));
    Ok(Listed::Written(CanonicalRequest { text, date, signed }))
}

/// Whether `name` may follow `prev` in a signed-header list: lower case, no ';', sorted and
/// without repeats (`prev` empty for the first name).
fn follows_in_list(prev: &[u8], name: &[u8]) -> bool {
    !name.is_empty()
        && all_in(name, &LISTED_NAME)
        && (prev.is_empty() || super::json::ascii_cmp(prev, name).is_lt())
}

/// Printable ASCII but upper case letters and ';': the bytes of a name in a signed list,
/// one flag per byte value (a look-up per byte is quicker than the tests it stands for, on
/// names this short).
const LISTED_NAME: [bool; 256] = {
    let mut set = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        set[b] = !(b as u8).is_ascii_uppercase() && b != b';' as usize;
        b += 1;
    }
    set
};

/// Whether every byte of `s` is in `set` (each looked at, no early exit: names are short).
fn all_in(s: &[u8], set: &[bool; 256]) -> bool {
    s.iter().fold(true, |ok, &b| ok & set[usize::from(b)])
}

/// The names trimmed, lower case, sorted and without repeats; a name holding ';' is a list.
fn normalised_list<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut list: Vec<String> = names
        .flat_map(|n| n.split(';'))
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    list.sort();
    list.dedup();
    list
}

/// A received `SignedHeaders=` value's names, split at ';' byte by byte (the names are short).
#[derive(Clone)]
struct ListedNames<'a>(Option<&'a str>);

impl<'a> Iterator for ListedNames<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let s = self.0?;
        match s.bytes().position(|b| b == b';') {
            Some(i) => {
                self.0 = Some(&s[i + 1..]);
                Some(&s[..i])
            }
            None => {
                self.0 = None;
                Some(s)
            }
        }
    }
}

fn push_canonical_uri(out: &mut Text, path: &str) -> Result<(), ProtocolError> {
    if is_plain_path(path) {
        push_plain_path(out, path);
    } else {
        out.push(canonical_uri(path)?.as_bytes());
    }
    Ok(())
}

/// Whether `path` is unreserved characters and slashes only: such a path decodes and
/// re-encodes to itself, so only the slashes at its ends can change.
fn is_plain_path(path: &str) -> bool {
    // Every byte is looked at (no early exit) so that the check vectorises.
    path.bytes().fold(true, |plain, b| {
        plain & (b.is_ascii_alphanumeric() | matches!(b, b'-' | b'_' | b'.' | b'~' | b'/'))
    })
}

/// A plain path (see [`is_plain_path`]) as its canonical URI: with a slash at each end.
fn push_plain_path(out: &mut Text, path: &str) {
    if !path.starts_with('/') {
        out.push_byte(b'/');
    }
    out.push(path.as_bytes());
    if !path.is_empty() && !path.ends_with('/') {
        out.push_byte(b'/');
    }
}

fn date_missing() -> ProtocolError {
    ProtocolError::new("X-Sdk-Date: missing (format YYYYMMDDTHHMMSSZ, UTC)")
}

/// The value of the header named `lower` (a lower-case name, as a signed list holds them),
/// names compared a word at a time (see [`lowers_to`]).
fn lower_header_value<'a>(headers: &'a [(String, String)], lower: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.len() == lower.len() && lowers_to(n.as_bytes(), lower.as_bytes()))
        .map(|(_, v)| v.as_str())
}

/// Whether `name`, ASCII upper case letters lowered, is `lower` (both the same length).
fn lowers_to(name: &[u8], lower: &[u8]) -> bool {
    debug_assert_eq!(name.len(), lower.len());
    let len = name.len();
    let at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"));
    let half = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("four bytes"));
    if len >= 8 {
        // Whole words, the last one ending at the end (overlapping the one before).
        let mut same = true;
        for i in (0..len - 8).step_by(8) {
            same &= lowered(at(name, i)) == at(lower, i);
        }
        same & (lowered(at(name, len - 8)) == at(lower, len - 8))
    } else if len >= 4 {
        // The first four bytes and the last four (overlapping) as one word.
        let word = |b: &[u8]| u64::from(half(b, 0)) | (u64::from(half(b, len - 4)) << 32);
        lowered(word(name)) == word(lower)
    } else {
        let word = |b: &[u8]| b.iter().fold(0u64, |w, &c| (w << 8) | u64::from(c));
        lowered(word(name)) == word(lower)
    }
}

/// Eight bytes with the ASCII upper case letters among them lowered.
fn lowered(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // High bit of each byte in 'A'..='Z' (7-bit sums never carry out of a byte; bytes at or
    // above 0x80 are left alone).
    let low7 = w & !HIGH;
    let upper = (low7 + ONES * (0x80 - u64::from(b'A')))
        & !(low7 + ONES * (0x80 - u64::from(b'Z') - 1))
        & !w
        & HIGH;
    w | (upper >> 2)
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
    let comma = |s: &str| find_any(s.as_bytes(), 0, [b',']);
    let rest = value.strip_prefix("SDK-HMAC-SHA256 Access=")?;
    let (access, rest) = rest.split_at(comma(rest)?);
    let rest = rest.strip_prefix(", SignedHeaders=")?;
    let (signed_headers, rest) = rest.split_at(comma(rest)?);
    let signature = rest.strip_prefix(", Signature=")?;
    // Every byte is looked at (no early exit) so that the check vectorises.
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes().fold(true, |plain, b| {
                plain & !(b == b',' || b == b'=' || b.is_ascii_whitespace())
            })
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
    let auth = lower_header_value(headers, "authorization")
        .ok_or_else(|| ProtocolError::new("Authorization: header missing"))?;
    let auth = parse_authorization(auth)?;
    let listed = auth.signed_headers;
    let names = ListedNames(Some(listed));
    let text = Text::scratch();
    let mut request =
        CanonicalRequest::build(text, method, url, headers, names, Some(listed), body)?;
    let matches = SignatureBytes(request.signature(sk)).matches_hex(auth.signature);
    request.text.keep();
    Ok(matches)
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
    fn listed_name_bytes_are_what_the_rule_says() {
        for b in 0..=255u8 {
            let listed = b.is_ascii_graphic() && !b.is_ascii_uppercase() && b != b';';
            assert_eq!(LISTED_NAME[usize::from(b)], listed, "{b:#x}");
        }
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

    proptest::proptest! {
        #[test]
        fn word_search_finds_the_first(hay in "[a-d/?#\u{80}-\u{ff}]{0,40}", from in 0usize..45) {
            let b = hay.as_bytes();
            let want = b.get(from..).and_then(|t| t.iter().position(|c| b"/?#".contains(c))).map(|j| from + j);
            proptest::prop_assert_eq!(find_any(b, from, [b'/', b'?', b'#']), want);
        }

        #[test]
        fn word_lowering_is_ascii_lowering(
            name in proptest::collection::vec(proptest::prop_oneof![b'@'..=b'\x7b', proptest::num::u8::ANY], 0..40),
            other in proptest::collection::vec(b'@'..=b'\x7b', 0..40),
        ) {
            let lowered = name.to_ascii_lowercase();
            for lower in [&lowered, &other] {
                if name.len() == lower.len() {
                    proptest::prop_assert_eq!(lowers_to(&name, lower), name.eq_ignore_ascii_case(lower));
                }
            }
        }

        #[test]
        fn uri_and_query_lines_follow_the_split(url in "(https?://h(:1)?)?[/a-zA-Z~._%?#=&!-]{0,24}") {
            let headers = vec![("X-Sdk-Date".to_string(), "20191115T033655Z".to_string())];
            let got = sign("AK", "SK", "get", &url, &headers, &["x-sdk-date"], b"");
            let (_, path, query) = split_url(&url);
            let want = canonical_uri(path)
                .and_then(|p| Ok(format!("GET\n{p}\n{}\n", canonical_query(query)?)));
            match (got, want) {
                (Ok(got), Ok(want)) => proptest::prop_assert!(
                    got.canonical_request.starts_with(&want),
                    "{:?} does not start with {:?}", got.canonical_request, want
                ),
                (Err(_), Err(_)) => {}
                (got, want) => proptest::prop_assert!(false, "{url}: {got:?} against {want:?}"),
            }
        }
    }

    #[test]
    fn every_byte_of_a_name_counts() {
        // Names of every length the word comparison splits differently, one byte changed.
        let name = b"X-Sdk-Date-And-Some-More";
        for len in 0..=name.len() {
            let lower = name[..len].to_ascii_lowercase();
            assert!(lowers_to(&name[..len], &lower), "{len}");
            for at in 0..len {
                let mut changed = lower.clone();
                changed[at] ^= 0x01;
                assert!(!lowers_to(&name[..len], &changed), "{len} {at}");
            }
        }
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
