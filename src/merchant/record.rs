//! The `serve merchant --record FILE` format: every received request as one JSON line
//! (`method`, `url`, `headers`, `body_base64`), which `csm verify request FILE` reads back.

use crate::protocol::capture::CapturedRequest;
use crate::server::Request;
use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Recorded {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body_base64: String,
}

/// Headers whose values are credentials (a session, a bearer token): recorded as this.
const REDACTED: &str = "<redacted>";
const SECRET_HEADERS: [&str; 4] = [
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
];

/// The login pages' query, with the one-time authorization code (and any token) replaced:
/// the record is for verifying callback signatures, which never need them.
fn recorded_url(url: &str) -> String {
    let Some((path, query)) = url.split_once('?').filter(|(p, _)| p.starts_with("/sso/")) else {
        return url.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k == "code" || k.contains("token") => format!("{k}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// One request as its line (no newline); credentials that are not part of a callback's
/// signature are redacted.
pub fn line(req: &Request) -> String {
    let headers = req
        .headers
        .iter()
        .map(|(n, v)| {
            let secret = SECRET_HEADERS.iter().any(|s| n.eq_ignore_ascii_case(s));
            (n.clone(), if secret { REDACTED.into() } else { v.clone() })
        })
        .collect();
    let r = Recorded {
        method: req.method.clone(),
        url: recorded_url(&req.url),
        headers,
        body_base64: base64::engine::general_purpose::STANDARD.encode(&req.body),
    };
    serde_json::to_string(&r).unwrap_or_default()
}

/// A record file rather than a raw capture: it starts with a JSON object.
pub fn is_record(raw: &[u8]) -> bool {
    raw.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Every request in a record file, in order; an error names the line and what is wrong.
pub fn read(raw: &[u8]) -> Result<Vec<CapturedRequest>, String> {
    let text = std::str::from_utf8(raw).map_err(|e| format!("not UTF-8 text ({e})"))?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let r: Recorded = serde_json::from_str(l).map_err(|e| {
            format!(
                "line {}: not a recorded request ({e}); expected the JSON lines of `csm serve merchant --record`",
                i + 1
            )
        })?;
        let body = base64::engine::general_purpose::STANDARD
            .decode(&r.body_base64)
            .map_err(|e| format!("line {}: body_base64 is not Base64 ({e})", i + 1))?;
        out.push(CapturedRequest {
            method: r.method,
            target: r.url,
            headers: r.headers,
            body,
        });
    }
    Ok(out)
}

/// Request `index` (1-based) of a record file; without an index the file must hold one.
pub fn pick(
    mut all: Vec<CapturedRequest>,
    index: Option<usize>,
) -> Result<CapturedRequest, String> {
    let n = all.len();
    match index {
        _ if n == 0 => Err("holds no recorded request".into()),
        None if n == 1 => Ok(all.remove(0)),
        None => Err(format!(
            "holds {n} recorded requests: pick one with --index N (1 to {n})"
        )),
        Some(i) if (1..=n).contains(&i) => Ok(all.swap_remove(i - 1)),
        Some(i) => Err(format!("--index {i}: the file holds requests 1 to {n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_request_reads_back_as_it_came() {
        let req = Request {
            method: "POST".into(),
            url: "/produce?signature=ab&timestamp=1&nonce=n".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{\"activity\":\"newInstance\"}\xff".to_vec(),
        };
        let text = format!("{}\n{}\n", line(&req), line(&req));
        assert!(is_record(text.as_bytes()));
        let all = read(text.as_bytes()).unwrap();
        assert_eq!(all.len(), 2);
        let got = pick(all, Some(2)).unwrap();
        assert_eq!(got.method, "POST");
        assert_eq!(got.target, req.url);
        assert_eq!(got.headers, req.headers);
        assert_eq!(got.body, req.body);
        assert!(pick(read(text.as_bytes()).unwrap(), None)
            .unwrap_err()
            .contains("--index N (1 to 2)"));
        assert!(pick(read(text.as_bytes()).unwrap(), Some(3))
            .unwrap_err()
            .contains("1 to 2"));
        assert!(read(b"{\"method\":1}\n")
            .unwrap_err()
            .starts_with("line 1:"));
        assert!(!is_record(b"POST / HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn sessions_and_login_codes_are_not_recorded() {
        let req = Request {
            method: "GET".into(),
            url: "/sso/callback?code=5a8f1b&state=s1".into(),
            headers: vec![
                ("cookie".into(), "csm_session=20828F00".into()),
                ("Authorization".into(), "Bearer t0k3n".into()),
                ("host".into(), "127.0.0.1".into()),
            ],
            body: Vec::new(),
        };
        let l = line(&req);
        for secret in ["5a8f1b", "20828F00", "t0k3n"] {
            assert!(!l.contains(secret), "{l}");
        }
        let got = read(l.as_bytes()).unwrap().remove(0);
        assert_eq!(got.target, "/sso/callback?code=<redacted>&state=s1");
        assert_eq!(got.headers[2], ("host".into(), "127.0.0.1".into()));
        // A callback's query is its signature: recorded as it came.
        let callback = Request {
            url: "/produce?signature=ab&code=1".into(),
            ..req
        };
        assert!(line(&callback).contains("\"/produce?signature=ab&code=1\""));
    }
}
