//! Raw HTTP captures (as printed by `nc -l`, a proxy or a server log): parsing a request or a
//! response into its parts, and telling which KooGallery scheme signed a request.

use super::ProtocolError;

#[derive(Debug, Clone, PartialEq)]
pub struct CapturedRequest {
    pub method: String,
    /// Path and query as on the request line (or the absolute URL a proxy logged).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CapturedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Which signature a captured request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectedScheme {
    SaasV1,
    SaasV1Kit,
    SaasV2,
    /// A V2 basic-recipe request whose activity is a License 2.0 callback.
    License,
    Kit,
    Usage,
    Apig,
}

impl DetectedScheme {
    pub fn name(self) -> &'static str {
        match self {
            DetectedScheme::SaasV1 => "saas-v1",
            DetectedScheme::SaasV1Kit => "saas-v1-kit",
            DetectedScheme::SaasV2 => "saas-v2",
            DetectedScheme::License => "license",
            DetectedScheme::Kit => "kit",
            DetectedScheme::Usage => "usage",
            DetectedScheme::Apig => "apig",
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl CapturedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

impl CapturedResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Splits head from body at the first blank line (CRLF or bare LF captures).
fn split_head(raw: &[u8]) -> Result<(Vec<&str>, &[u8]), ProtocolError> {
    let (head_end, body_start) = find_blank_line(raw).ok_or_else(|| {
        ProtocolError::new("capture: no blank line ends the headers (is this a raw HTTP message?)")
    })?;
    let head = std::str::from_utf8(&raw[..head_end])
        .map_err(|_| ProtocolError::new("capture: the header block is not UTF-8 text"))?;
    let lines: Vec<&str> = head.lines().map(|l| l.trim_end_matches('\r')).collect();
    Ok((lines, &raw[body_start..]))
}

fn find_blank_line(raw: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(b"\r\n\r\n") {
            return Some((i, i + 4));
        }
        if raw[i..].starts_with(b"\n\n") {
            return Some((i, i + 2));
        }
        if raw[i..].starts_with(b"\n\r\n") {
            return Some((i, i + 3));
        }
        i += 1;
    }
    // Headers only, no body and no final blank line.
    let text = std::str::from_utf8(raw).ok()?;
    if !text.trim_end().is_empty() && text.ends_with('\n') {
        return Some((raw.len(), raw.len()));
    }
    None
}

fn parse_headers(lines: &[&str]) -> Result<Vec<(String, String)>, ProtocolError> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (n, v) = l.split_once(':').ok_or_else(|| {
                ProtocolError::new(format!(
                    "capture line {}: {l:?} is not a header (Name: value)",
                    i + 2
                ))
            })?;
            Ok((n.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The body, cut to Content-Length when the capture carries more (a trailing newline
/// that a terminal added is not part of what was signed).
fn body_of(headers: &[(String, String)], rest: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    if header(headers, "Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(rest);
    }
    match header(headers, "Content-Length") {
        Some(v) => {
            let n: usize = v.trim().parse().map_err(|_| {
                ProtocolError::new(format!("capture: Content-Length {v:?} is not a number"))
            })?;
            if rest.len() < n {
                return Err(ProtocolError::new(format!(
                    "capture: Content-Length says {n} bytes but the body has {} (truncated capture?)",
                    rest.len()
                )));
            }
            Ok(rest[..n].to_vec())
        }
        None => Ok(rest.to_vec()),
    }
}

/// Joins the chunks of a `Transfer-Encoding: chunked` body (what was signed is the joined
/// data; chunk extensions are ignored).
pub fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| ProtocolError::new("capture: chunked body without a chunk-size line"))?;
        let line = std::str::from_utf8(&rest[..eol]).unwrap_or("");
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| {
            ProtocolError::new(format!("capture: chunk size {size_text:?} is not hex"))
        })?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err(ProtocolError::new(format!(
                "capture: a chunk says {size} bytes but {} remain (truncated capture?)",
                rest.len()
            )));
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
    }
}

pub fn parse_request(raw: &[u8]) -> Result<CapturedRequest, ProtocolError> {
    let (lines, rest) = split_head(raw)?;
    let first = lines
        .first()
        .ok_or_else(|| ProtocolError::new("capture: empty"))?;
    let mut parts = first.split_whitespace();
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Err(ProtocolError::new(format!(
            "capture line 1: {first:?} is not a request line (METHOD TARGET HTTP/1.1)"
        )));
    };
    if !version.starts_with("HTTP/") || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ProtocolError::new(format!(
            "capture line 1: {first:?} is not a request line (METHOD TARGET HTTP/1.1)"
        )));
    }
    let headers = parse_headers(&lines[1..])?;
    let body = body_of(&headers, rest)?;
    Ok(CapturedRequest {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body,
    })
}

pub fn parse_response(raw: &[u8]) -> Result<CapturedResponse, ProtocolError> {
    let (lines, rest) = split_head(raw)?;
    let first = lines
        .first()
        .ok_or_else(|| ProtocolError::new("capture: empty"))?;
    let mut parts = first.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        ProtocolError::new(format!(
            "capture line 1: {first:?} is not a status line (HTTP/1.1 200 OK)"
        ))
    })?;
    let headers = parse_headers(&lines[1..])?;
    let body = body_of(&headers, rest)?;
    Ok(CapturedResponse {
        status,
        headers,
        body,
    })
}

const LICENSE_ACTIVITIES: [&str; 3] = [
    "refreshLicenseCode",
    "updateLicenseCodeStatus",
    "releaseLicenseCode",
];

/// Tells the scheme from where the signature travels.
pub fn detect(req: &CapturedRequest) -> Result<DetectedScheme, ProtocolError> {
    let query = super::v1::parse_query(req.query(), false)?;
    let has_q = |n: &str| query.iter().any(|(k, _)| k == n);
    if req
        .header("Authorization")
        .is_some_and(|v| v.trim_start().starts_with(super::apig::ALGORITHM))
    {
        return Ok(DetectedScheme::Apig);
    }
    if req.header("x-sign").is_some() {
        return Ok(DetectedScheme::Kit);
    }
    if has_q("signature") && has_q("timestamp") && has_q("nonce") {
        let activity = super::json::parse(&req.body).ok().and_then(|b| {
            b.get("activity")
                .and_then(|a| a.as_str().map(str::to_string))
        });
        return Ok(match activity {
            Some(a) if LICENSE_ACTIVITIES.contains(&a.as_str()) => DetectedScheme::License,
            _ => DetectedScheme::SaasV2,
        });
    }
    if has_q("authToken") {
        return Ok(DetectedScheme::SaasV1);
    }
    if req.header("authToken").is_some() {
        return Ok(DetectedScheme::SaasV1Kit);
    }
    if req.header("signature").is_some()
        && req.header("ts").is_some()
        && req.header("nonce").is_some()
    {
        return Ok(DetectedScheme::Usage);
    }
    Err(ProtocolError::new(
        "capture: no KooGallery signature found (looked for query signature/timestamp/nonce, \
         authToken, x-sign, signature/ts/nonce headers and an SDK-HMAC-SHA256 Authorization)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lf_and_crlf_requests_and_cuts_to_content_length() {
        let raw = b"POST /produce?signature=AB&timestamp=1&nonce=n HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}\n";
        let r = parse_request(raw).unwrap();
        assert_eq!(r.body, b"{}");
        assert_eq!(detect(&r).unwrap(), DetectedScheme::SaasV2);
        let raw = b"GET /?activity=a&timeStamp=1&authToken=x HTTP/1.1\r\nHost: x\r\n\r\n";
        let r = parse_request(raw).unwrap();
        assert_eq!(detect(&r).unwrap(), DetectedScheme::SaasV1);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let raw = b"POST /p?signature=a&timestamp=1&nonce=n HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5\r\n\":1}\n\r\n0\r\n\r\n";
        assert_eq!(parse_request(raw).unwrap().body, b"{\"a\":1}\n");
        assert!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[test]
    fn undecodable_query_is_named() {
        let r =
            parse_request(b"GET /?activity=a&authToken=%zz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(detect(&r).unwrap_err().to_string().contains("%zz"));
    }

    #[test]
    fn malformed_capture_names_the_line() {
        let e = parse_request(b"hello world\n\n").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = parse_request(b"GET / HTTP/1.1\nbad header\n\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
