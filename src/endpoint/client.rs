//! Sending a prepared callback and reading the reply, within a time budget and a size cap.
//!
//! `https://` goes through reqwest (rustls, TLS ≥ 1.2, certificates verified, redirects
//! never followed). Plain `http://` (loopback tests, the demo) uses a small HTTP/1.1 client
//! over a TCP socket, because reqwest lower-cases header names and the debugging page
//! insists on the exact name `Body-Sign`; over HTTPS that one check is reported as not
//! observable.

use super::request::Prepared;
use reqwest::Url;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Reply bodies are read up to this size; the rest is left unread.
pub const MAX_REPLY: usize = 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Header names as received (lower-cased when `header_case_known` is false).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was longer than [`MAX_REPLY`]; only the first part was read.
    pub truncated: bool,
    pub header_case_known: bool,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetKind {
    /// DNS failure or connection refused: nothing is listening.
    Connect,
    Timeout,
    Tls,
    /// The connection was closed or reset before a complete reply head.
    Reset,
    /// Something that is not HTTP came back.
    Protocol,
}

impl NetKind {
    /// No HTTP reply came at all (DNS, connect, TLS, timeout, reset): when that happens to
    /// the first call, the endpoint is unreachable (exit 4). `Protocol` means something did
    /// answer, so it is judged as a failed check instead.
    pub fn is_unreachable(self) -> bool {
        !matches!(self, NetKind::Protocol)
    }
}

#[derive(Debug, Clone)]
pub struct NetFailure {
    pub kind: NetKind,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Exchange {
    pub request: Prepared,
    pub outcome: Result<Reply, NetFailure>,
    pub latency: Duration,
}

pub struct Client {
    pub timeout: Duration,
    /// An extra trusted root (PEM), for staging endpoints behind a private CA.
    ca_pem: Option<Vec<u8>>,
    tls: Option<reqwest::blocking::Client>,
}

impl Client {
    pub fn new(timeout: Duration) -> Client {
        Client {
            timeout,
            ca_pem: None,
            tls: None,
        }
    }

    pub fn with_ca(mut self, pem: Option<Vec<u8>>) -> Client {
        self.ca_pem = pem;
        self
    }

    pub fn send(&mut self, req: &Prepared) -> Exchange {
        let start = Instant::now();
        let outcome = match Url::parse(&req.url) {
            Err(e) => Err(NetFailure {
                kind: NetKind::Connect,
                message: format!("{}: not a URL ({e})", req.url),
            }),
            Ok(url) if url.scheme() == "http" => raw_send(&url, req, self.timeout),
            Ok(url) => self.tls_send(&url, req),
        };
        Exchange {
            request: req.clone(),
            outcome,
            latency: start.elapsed(),
        }
    }

    fn tls_send(&mut self, url: &Url, req: &Prepared) -> Result<Reply, NetFailure> {
        if self.tls.is_none() {
            let setup = |e: reqwest::Error| NetFailure {
                kind: NetKind::Tls,
                message: format!("cannot set up TLS: {e}"),
            };
            let mut b = reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(self.timeout)
                .connect_timeout(self.timeout)
                .min_tls_version(reqwest::tls::Version::TLS_1_2)
                .user_agent(concat!("csm/", env!("CARGO_PKG_VERSION")));
            if let Some(pem) = &self.ca_pem {
                b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).map_err(setup)?);
            }
            self.tls = Some(b.build().map_err(setup)?);
        }
        let client = self.tls.as_ref().expect("set above");
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).expect("GET or POST");
        let mut rb = client.request(method, url.clone());
        for (n, v) in &req.headers {
            rb = rb.header(n, v);
        }
        if !req.body.is_empty() {
            rb = rb.body(req.body.clone());
        }
        let resp = rb.send().map_err(classify_reqwest)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        let mut limited = resp.take(MAX_REPLY as u64 + 1);
        limited.read_to_end(&mut body).map_err(|e| NetFailure {
            kind: if e.kind() == std::io::ErrorKind::TimedOut {
                NetKind::Timeout
            } else {
                NetKind::Reset
            },
            message: format!("reading the reply body: {e}"),
        })?;
        let truncated = body.len() > MAX_REPLY;
        body.truncate(MAX_REPLY);
        Ok(Reply {
            status,
            headers,
            body,
            truncated,
            header_case_known: false,
        })
    }
}

fn classify_reqwest(e: reqwest::Error) -> NetFailure {
    let mut text = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    let lower = text.to_ascii_lowercase();
    let kind = if e.is_timeout() {
        NetKind::Timeout
    } else if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("invalidcontenttype")
        || lower.contains("corrupt message")
        || lower.contains("peer misbehaved")
    {
        NetKind::Tls
    } else if lower.contains("reset") || lower.contains("closed") || lower.contains("eof") {
        NetKind::Reset
    } else if e.is_connect() {
        NetKind::Connect
    } else {
        NetKind::Protocol
    };
    NetFailure {
        kind,
        message: text,
    }
}

fn io_failure(e: std::io::Error, what: &str) -> NetFailure {
    use std::io::ErrorKind as K;
    let kind = match e.kind() {
        K::TimedOut | K::WouldBlock => NetKind::Timeout,
        K::ConnectionRefused | K::NotFound | K::AddrNotAvailable => NetKind::Connect,
        _ => NetKind::Reset,
    };
    NetFailure {
        kind,
        message: format!("{what}: {e}"),
    }
}

fn remaining(deadline: Instant) -> Result<Duration, NetFailure> {
    let now = Instant::now();
    if now >= deadline {
        return Err(NetFailure {
            kind: NetKind::Timeout,
            message: "no complete reply within the time budget".into(),
        });
    }
    Ok((deadline - now).max(Duration::from_millis(1)))
}

/// HTTP/1.1 over a plain socket: `Connection: close`, bounded in time and size.
fn raw_send(url: &Url, req: &Prepared, timeout: Duration) -> Result<Reply, NetFailure> {
    let deadline = Instant::now() + timeout;
    // For the Host header: IPv6 literals keep their brackets (`[::1]`).
    let host = url.host_str().unwrap_or("");
    // Resolve from the parsed host (`Url::socket_addrs` matches Domain / Ipv4 / Ipv6):
    // `host_str()` of an IPv6 literal is `[::1]`, which no resolver accepts.
    let addrs: Vec<SocketAddr> = url.socket_addrs(|| Some(80)).map_err(|e| NetFailure {
        kind: NetKind::Connect,
        message: format!("{host}: cannot resolve ({e})"),
    })?;
    // `localhost` may resolve to ::1 before 127.0.0.1: try each address in turn.
    let mut last = NetFailure {
        kind: NetKind::Connect,
        message: format!("{host}: no address"),
    };
    let mut connected = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, remaining(deadline)?) {
            Ok(s) => {
                connected = Some(s);
                break;
            }
            Err(e) => last = io_failure(e, &format!("connecting to {addr}")),
        }
    }
    let mut sock = connected.ok_or(last)?;
    let _ = sock.set_nodelay(true);
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: csm/{}\r\nConnection: close\r\n",
        req.method,
        match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        },
        env!("CARGO_PKG_VERSION")
    );
    for (n, v) in &req.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if req.method != "GET" || !req.body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&req.body);
    sock.set_write_timeout(Some(remaining(deadline)?))
        .map_err(|e| io_failure(e, "socket"))?;
    sock.write_all(&out)
        .map_err(|e| io_failure(e, "sending the request"))?;

    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(NetFailure {
                kind: NetKind::Protocol,
                message: format!("no end of the reply head within {MAX_HEAD} bytes"),
            });
        }
        sock.set_read_timeout(Some(remaining(deadline)?))
            .map_err(|e| io_failure(e, "socket"))?;
        match sock.read(&mut chunk) {
            Ok(0) => {
                return Err(NetFailure {
                    kind: if buf.is_empty() {
                        NetKind::Reset
                    } else {
                        NetKind::Protocol
                    },
                    message: if buf.is_empty() {
                        "the connection was closed without a reply".into()
                    } else {
                        format!(
                            "the reply is not HTTP: {:?}",
                            String::from_utf8_lossy(&buf[..buf.len().min(60)])
                        )
                    },
                })
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(io_failure(e, "reading the reply")),
        }
    };
    let head_text = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = parse_status(status_line).ok_or_else(|| NetFailure {
        kind: NetKind::Protocol,
        message: format!("the reply is not HTTP: status line {status_line:?}"),
    })?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let length: Option<usize> = get("content-length").and_then(|v| v.parse().ok());
    let chunked = get("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    let mut body = buf.split_off(head_end);
    let cap = MAX_REPLY + 1;
    loop {
        if body.len() >= cap {
            break;
        }
        if let (Some(len), false) = (length, chunked) {
            if body.len() >= len {
                break;
            }
        }
        // The last chunk is read (a body of one empty chunk starts with it).
        if chunked && (find(&body, b"\r\n0\r\n\r\n").is_some() || body.starts_with(b"0\r\n\r\n")) {
            break;
        }
        sock.set_read_timeout(Some(remaining(deadline)?))
            .map_err(|e| io_failure(e, "socket"))?;
        match sock.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(io_failure(e, "reading the reply body")),
        }
    }
    let mut truncated = body.len() > MAX_REPLY || length.is_some_and(|l| l > MAX_REPLY);
    if chunked && !truncated {
        body = crate::protocol::capture::dechunk(&body).map_err(|e| NetFailure {
            kind: NetKind::Protocol,
            message: format!("the chunked reply body is malformed: {e}"),
        })?;
    } else if let Some(len) = length {
        body.truncate(len);
    }
    if body.len() > MAX_REPLY {
        truncated = true;
        body.truncate(MAX_REPLY);
    }
    Ok(Reply {
        status,
        headers,
        body,
        truncated,
        header_case_known: true,
    })
}

fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines() {
        assert_eq!(parse_status("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status("SSH-2.0-OpenSSH"), None);
    }
}
