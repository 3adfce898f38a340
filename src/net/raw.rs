//! One HTTP/1.1 exchange over a connection of its own (`Connection: close`), plain or TLS,
//! that keeps the reply's header names exactly as the server wrote them (reqwest
//! lower-cases them; the debugging page insists on the exact name `Body-Sign`).
//!
//! The time budget is the deadline of the whole exchange (connect, proxy tunnel, TLS
//! handshake, request, reply); reply bodies are read up to [`MAX_REPLY`]. Heads are parsed
//! by `httparse`; `Content-Length`, chunked and read-to-close bodies are understood.

use super::failure::{io_failure, io_kind, NetFailure, NetKind};
use super::{proxy, tls, Settings, USER_AGENT};
use reqwest::Url;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Reply bodies are read up to this size; the rest is left unread.
pub const MAX_REPLY: usize = 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;
const MAX_FIELDS: usize = 128;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Header names as received (as a proxy rewrote them when `header_case_known` is false).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was longer than [`MAX_REPLY`]; only the first part was read.
    pub truncated: bool,
    /// The names are the endpoint's own: false when a plain-HTTP proxy relayed the reply.
    pub header_case_known: bool,
    /// The body as a JSON object, parsed on first use: the load engine, the judge and the
    /// suites all read it, and it is parsed once.
    json: OnceLock<Option<serde_json::Value>>,
}

impl Reply {
    pub fn new(
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        truncated: bool,
        header_case_known: bool,
    ) -> Reply {
        Reply {
            status,
            headers,
            body,
            truncated,
            header_case_known,
            json: OnceLock::new(),
        }
    }

    /// The body when it is a whole JSON object (not cut off at [`MAX_REPLY`]).
    pub fn json(&self) -> Option<&serde_json::Value> {
        self.json
            .get_or_init(|| {
                if self.truncated {
                    return None;
                }
                serde_json::from_slice::<serde_json::Value>(&self.body)
                    .ok()
                    .filter(serde_json::Value::is_object)
            })
            .as_ref()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// What to send: the URL is parsed already; `Host`, `User-Agent`, `Connection` and
/// `Content-Length` are added.
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a Url,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// The raw client: the policy's settings and, once an `https://` URL needed it, the TLS
/// configuration (built once, shared by the calls).
pub struct Raw {
    settings: Settings,
    tls: Option<Arc<ClientConfig>>,
}

impl Raw {
    pub fn new(settings: Settings) -> Raw {
        Raw {
            settings,
            tls: None,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    pub fn exchange(&mut self, req: &Request) -> Result<Reply, NetFailure> {
        let deadline = Instant::now() + self.settings.timeout;
        let url = req.url;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            s => {
                return Err(NetFailure::new(
                    NetKind::Connect,
                    format!("{url}: scheme {s:?} is not http or https"),
                ))
            }
        };
        let via = proxy::for_url(url, &proxy::from_env)
            .map_err(|e| NetFailure::new(NetKind::Connect, e).before_sending())?;
        let relayed = via.is_some() && !https;
        let mut conn = self
            .open(url, https, via.as_ref(), deadline)
            .map_err(NetFailure::before_sending)?;
        let head = request_head(req, if relayed { via.as_ref() } else { None });
        let mut out = head.into_bytes();
        out.extend_from_slice(req.body);
        conn.budget(deadline)?;
        conn.write_all(&out)
            .and_then(|()| conn.flush())
            .map_err(|e| io_failure(e, "sending the request"))?;
        let mut buf = Vec::with_capacity(8192);
        let head = read_head(&mut conn, &mut buf, deadline)?;
        let (body, truncated) = read_body(&mut conn, &head, buf, deadline)?;
        Ok(Reply::new(
            head.status,
            head.headers,
            body,
            truncated,
            !relayed,
        ))
    }

    /// A connection to `url` (through `via`), TLS set up for https: nothing is sent yet.
    fn open(
        &mut self,
        url: &Url,
        https: bool,
        via: Option<&proxy::Proxy>,
        deadline: Instant,
    ) -> Result<Conn, NetFailure> {
        let mut tcp = match via {
            None => connect(url, deadline)?,
            Some(p) => connect(&p.url, deadline).map_err(|f| f.within(&p.named()))?,
        };
        let _ = tcp.set_nodelay(true);
        if let (Some(p), true) = (via, https) {
            tunnel(&mut tcp, p, url, deadline)?;
        }
        Ok(if https {
            Conn::Tls(Box::new(self.handshake(tcp, url, deadline)?))
        } else {
            Conn::Plain(tcp)
        })
    }

    fn handshake(
        &mut self,
        mut tcp: TcpStream,
        url: &Url,
        deadline: Instant,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>, NetFailure> {
        let config = match &self.tls {
            Some(c) => Arc::clone(c),
            None => {
                let c = tls::client_config(self.settings.ca_pem.as_deref())
                    .map_err(|e| NetFailure::new(NetKind::Tls, e))?;
                Arc::clone(self.tls.insert(Arc::new(c)))
            }
        };
        let host = url.host_str().unwrap_or("");
        let name = match proxy::host_ip(url) {
            Some(ip) => ServerName::from(ip),
            None => ServerName::try_from(host.to_string()).map_err(|e| {
                NetFailure::new(
                    NetKind::Connect,
                    format!("{host}: not a host name for TLS ({e})"),
                )
            })?,
        };
        let mut conn = ClientConnection::new(config, name)
            .map_err(|e| NetFailure::new(NetKind::Tls, format!("TLS: {e}")))?;
        while conn.is_handshaking() {
            set_budget(&tcp, deadline)?;
            if let Err(e) = conn.complete_io(&mut tcp) {
                // Whatever breaks the handshake (an alert, a certificate, a server that does
                // not speak TLS and hangs up) is a TLS failure, except running out of time.
                let kind = match io_kind(&e) {
                    NetKind::Timeout => NetKind::Timeout,
                    _ => NetKind::Tls,
                };
                return Err(NetFailure::new(kind, format!("TLS handshake: {e}")));
            }
        }
        Ok(StreamOwned::new(conn, tcp))
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

fn remaining(deadline: Instant) -> Result<Duration, NetFailure> {
    let now = Instant::now();
    if now >= deadline {
        return Err(NetFailure::new(
            NetKind::Timeout,
            "no complete reply within the time budget",
        ));
    }
    Ok((deadline - now).max(Duration::from_millis(1)))
}

fn set_budget(tcp: &TcpStream, deadline: Instant) -> Result<(), NetFailure> {
    let left = remaining(deadline)?;
    tcp.set_read_timeout(Some(left))
        .and_then(|()| tcp.set_write_timeout(Some(left)))
        .map_err(|e| io_failure(e, "socket"))
}

/// A TCP connection to `url`'s host, each resolved address in turn (`localhost` may
/// resolve to ::1 before 127.0.0.1).
fn connect(url: &Url, deadline: Instant) -> Result<TcpStream, NetFailure> {
    let host = url.host_str().unwrap_or("");
    // `Url::socket_addrs` resolves the parsed host: `host_str()` of an IPv6 literal is
    // `[::1]`, which no resolver accepts.
    let addrs: Vec<SocketAddr> = url
        .socket_addrs(|| url.port_or_known_default())
        .map_err(|e| NetFailure::new(NetKind::Connect, format!("{host}: cannot resolve ({e})")))?;
    let mut last = NetFailure::new(NetKind::Connect, format!("{host}: no address"));
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, remaining(deadline)?) {
            Ok(s) => return Ok(s),
            Err(e) => last = io_failure(e, &format!("connecting to {addr}")),
        }
    }
    Err(last)
}

/// `host:port` of `url`, as the `Host` header and `CONNECT` write it.
pub(crate) fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// `CONNECT host:port` through an HTTP proxy; the socket then carries the TLS session.
fn tunnel(
    tcp: &mut TcpStream,
    p: &proxy::Proxy,
    url: &Url,
    deadline: Instant,
) -> Result<(), NetFailure> {
    let host = url.host_str().unwrap_or("");
    let target = format!("{host}:{}", url.port_or_known_default().unwrap_or(443));
    let mut head =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: {USER_AGENT}\r\n");
    if let Some(auth) = p.authorization() {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    let named = p.named();
    set_budget(tcp, deadline)?;
    tcp.write_all(head.as_bytes())
        .map_err(|e| io_failure(e, &named))?;
    let mut buf = Vec::new();
    let answer = read_head(tcp, &mut buf, deadline).map_err(|f| f.within(&named))?;
    if !(200..300).contains(&answer.status) || !buf.is_empty() {
        return Err(NetFailure::new(
            NetKind::Connect,
            format!("{named}: CONNECT {target} answered HTTP {}", answer.status),
        )
        .with_fix(NetFailure::proxy_refused_fix(Some(answer.status))));
    }
    Ok(())
}

fn request_head(req: &Request, relay: Option<&proxy::Proxy>) -> String {
    let url = req.url;
    let target = if relay.is_some() {
        // A proxy relaying plain HTTP is given the absolute URL.
        let mut u = url.clone();
        u.set_fragment(None);
        u.to_string()
    } else {
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    };
    let auth = relay.and_then(proxy::Proxy::authorization);
    let mut head = String::new();
    write_head(
        &mut head,
        RequestHead {
            method: req.method,
            target: &target,
            host: &authority(url),
            keep_alive: false,
            proxy_auth: auth.as_deref(),
            headers: req.headers,
            body_len: req.body.len(),
        },
    );
    head
}

/// What the head of a request says, for [`write_head`].
pub(crate) struct RequestHead<'a> {
    pub method: &'a str,
    /// Origin form (path and query), or the absolute URL for a proxy that relays plain HTTP.
    pub target: &'a str,
    pub host: &'a str,
    /// Else `Connection: close`.
    pub keep_alive: bool,
    pub proxy_auth: Option<&'a str>,
    pub headers: &'a [(String, String)],
    pub body_len: usize,
}

/// Appends the head of an HTTP/1.1 request to `out`, the way both raw clients send it: the
/// caller's headers as given (names spelled as they are), `Host`, the user agent and the
/// body's length added.
pub(crate) fn write_head(out: &mut String, h: RequestHead) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\n",
        h.method, h.target, h.host
    );
    if !h.keep_alive {
        out.push_str("Connection: close\r\n");
    }
    if let Some(auth) = h.proxy_auth {
        let _ = write!(out, "Proxy-Authorization: {auth}\r\n");
    }
    for (n, v) in h.headers {
        let _ = write!(out, "{n}: {v}\r\n");
    }
    if h.method != "GET" || h.body_len > 0 {
        let _ = write!(out, "Content-Length: {}\r\n", h.body_len);
    }
    out.push_str("\r\n");
}

#[derive(Debug)]
pub(crate) struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// HTTP/1.1 (an HTTP/1.0 reply ends its connection unless it says otherwise).
    pub http11: bool,
}

impl Head {
    /// The connection may carry another request after this reply's body.
    pub(crate) fn keeps_alive(&self) -> bool {
        let says = |token: &str| {
            header(&self.headers, "connection")
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if self.http11 {
            !says("close")
        } else {
            says("keep-alive")
        }
    }
}

fn not_http(buf: &[u8], why: impl std::fmt::Display) -> NetFailure {
    NetFailure::new(
        NetKind::Protocol,
        format!(
            "the reply is not HTTP ({why}): {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(60)])
        ),
    )
}

/// A connection whose reads and writes can be bounded by the deadline.
trait Timed: Read {
    fn budget(&self, deadline: Instant) -> Result<(), NetFailure>;
}

impl Timed for TcpStream {
    fn budget(&self, deadline: Instant) -> Result<(), NetFailure> {
        set_budget(self, deadline)
    }
}

impl Timed for Conn {
    fn budget(&self, deadline: Instant) -> Result<(), NetFailure> {
        set_budget(self.tcp(), deadline)
    }
}

/// One read within the deadline; 0 at the end of the stream (over TLS also when the peer
/// closed without `close_notify`, as many servers do after `Connection: close`).
fn read_some(
    conn: &mut impl Timed,
    chunk: &mut [u8],
    deadline: Instant,
    what: &str,
) -> Result<usize, NetFailure> {
    conn.budget(deadline)?;
    loop {
        match conn.read(chunk) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(io_failure(e, what)),
        }
    }
}

/// Parses a whole reply head at the start of `buf` and removes it (interim 1xx heads, like
/// `100 Continue`, are skipped); None while the head is incomplete.
pub(crate) fn parse_head(buf: &mut Vec<u8>) -> Result<Option<Head>, NetFailure> {
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true);
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut resp = httparse::Response::new(&mut fields);
        match config.parse_response(&mut resp, buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                let http11 = resp.version == Some(1);
                let headers = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect();
                buf.drain(..len);
                if (100..200).contains(&status) && status != 101 {
                    continue;
                }
                return Ok(Some(Head {
                    status,
                    headers,
                    http11,
                }));
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(not_http(
                    buf,
                    format!("more than {MAX_FIELDS} header fields"),
                ))
            }
            Err(e) => return Err(not_http(buf, e)),
        }
        if buf.len() > MAX_HEAD {
            return Err(NetFailure::new(
                NetKind::Protocol,
                format!("no end of the reply head within {MAX_HEAD} bytes"),
            ));
        }
        return Ok(None);
    }
}

/// Reads and parses a reply head; `buf` keeps what came after it.
fn read_head(
    conn: &mut impl Timed,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Head, NetFailure> {
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(head) = parse_head(buf)? {
            return Ok(head);
        }
        let n = read_some(conn, &mut chunk, deadline, "reading the reply")?;
        if n == 0 {
            return Err(closed_in_head(buf));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The connection ended before a whole reply head: `buf` holds what came of it.
pub(crate) fn closed_in_head(buf: &[u8]) -> NetFailure {
    if buf.is_empty() {
        NetFailure::new(NetKind::Reset, "the connection was closed without a reply")
    } else {
        not_http(buf, "the connection was closed within the head")
    }
}

/// How the body ends.
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

fn framing(head: &Head) -> Result<Framing, NetFailure> {
    if matches!(head.status, 204 | 304) {
        return Ok(Framing::None);
    }
    let chunked = header(&head.headers, "transfer-encoding").is_some_and(|v| {
        v.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    });
    if chunked {
        return Ok(Framing::Chunked);
    }
    match header(&head.headers, "content-length") {
        None => Ok(Framing::Close),
        Some(v) => v.parse().map(Framing::Length).map_err(|_| {
            NetFailure::new(
                NetKind::Protocol,
                format!("the reply's Content-Length {v:?} is not a number"),
            )
        }),
    }
}

/// The body (joined when chunked) and whether it was cut at [`MAX_REPLY`]. `raw` holds
/// what was read after the head.
fn read_body(
    conn: &mut impl Timed,
    head: &Head,
    mut raw: Vec<u8>,
    deadline: Instant,
) -> Result<(Vec<u8>, bool), NetFailure> {
    let mut reader = BodyReader::new(head)?;
    let mut chunk = [0u8; 16384];
    let mut closed = false;
    loop {
        if let Some(body) = reader.step(&mut raw, closed)? {
            return Ok((body.bytes, body.truncated));
        }
        let n = read_some(conn, &mut chunk, deadline, "reading the reply body")?;
        raw.extend_from_slice(&chunk[..n]);
        closed = n == 0;
    }
}

/// A reply body taken from the bytes read so far, by either client (this one and
/// [`super::pool`]): the framing says when the body is whole, how a close cuts it, and
/// whether the connection can carry another request.
pub(crate) struct BodyReader {
    framing: Framing,
    dechunk: Dechunk,
    keep_alive: bool,
}

/// A whole reply body.
pub(crate) struct Body {
    pub bytes: Vec<u8>,
    /// Cut at [`MAX_REPLY`].
    pub truncated: bool,
    /// The connection can carry another request.
    pub reusable: bool,
}

impl BodyReader {
    pub(crate) fn new(head: &Head) -> Result<BodyReader, NetFailure> {
        Ok(BodyReader {
            framing: framing(head)?,
            dechunk: Dechunk::default(),
            keep_alive: head.keeps_alive(),
        })
    }

    /// The body once `buf` (the bytes read after the head) holds all of it, taken out of
    /// `buf`; None while more must be read. `closed`: the server closed the connection after
    /// the bytes in `buf`, so a body still short of its length or last chunk was cut. Never
    /// None when `closed`: the callers' read loops end on it.
    pub(crate) fn step(
        &mut self,
        buf: &mut Vec<u8>,
        closed: bool,
    ) -> Result<Option<Body>, NetFailure> {
        let cut = || {
            NetFailure::new(
                NetKind::Reset,
                "the connection was closed within the reply body",
            )
        };
        let body = |bytes, truncated, reusable| {
            Ok(Some(Body {
                bytes,
                truncated,
                reusable,
            }))
        };
        match self.framing {
            Framing::None => body(Vec::new(), false, self.keep_alive),
            Framing::Length(len) => {
                let want = len.min(MAX_REPLY as u64) as usize;
                if buf.len() < want {
                    return if closed { Err(cut()) } else { Ok(None) };
                }
                let rest = buf.split_off(want);
                let bytes = std::mem::replace(buf, rest);
                // The rest of a body past the limit is left unread, with its connection.
                let truncated = len > MAX_REPLY as u64;
                body(bytes, truncated, self.keep_alive && !truncated)
            }
            Framing::Close => {
                if buf.len() <= MAX_REPLY && !closed {
                    return Ok(None);
                }
                let mut bytes = std::mem::take(buf);
                let truncated = bytes.len() > MAX_REPLY;
                bytes.truncate(MAX_REPLY);
                body(bytes, truncated, false)
            }
            Framing::Chunked => {
                let malformed = |e: String| {
                    NetFailure::new(
                        NetKind::Protocol,
                        format!("the chunked reply body is malformed: {e}"),
                    )
                };
                let d = &mut self.dechunk;
                d.feed(buf).map_err(malformed)?;
                // The limit first: the last chunk may arrive in the read that crosses it.
                if d.out.len() > MAX_REPLY {
                    let mut bytes = std::mem::take(&mut d.out);
                    bytes.truncate(MAX_REPLY);
                    return body(bytes, true, false);
                }
                if d.done {
                    return body(std::mem::take(&mut d.out), false, self.keep_alive);
                }
                if buf.len() > MAX_HEAD {
                    return Err(malformed(format!(
                        "a chunk-size or trailer line longer than {MAX_HEAD} bytes"
                    )));
                }
                if closed {
                    return Err(cut());
                }
                Ok(None)
            }
        }
    }
}

/// A chunked body decoded as it arrives (chunk extensions and trailers skipped).
#[derive(Default)]
struct Dechunk {
    pub out: Vec<u8>,
    /// Data bytes still due in the current chunk, then its CRLF.
    left: u64,
    in_data: bool,
    in_trailers: bool,
    pub done: bool,
}

impl Dechunk {
    /// Consumes from `raw` all it can decode now.
    fn feed(&mut self, raw: &mut Vec<u8>) -> Result<(), String> {
        let mut pos = 0;
        while !self.done {
            let rest = &raw[pos..];
            if self.in_data {
                if self.left > 0 {
                    let take = (self.left as usize).min(rest.len());
                    if take == 0 {
                        break;
                    }
                    self.out.extend_from_slice(&rest[..take]);
                    self.left -= take as u64;
                    pos += take;
                    continue;
                }
                if rest.len() < 2 {
                    break;
                }
                if &rest[..2] != b"\r\n" {
                    return Err("a chunk is longer than its size line says".into());
                }
                pos += 2;
                self.in_data = false;
            } else if self.in_trailers {
                let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                    break;
                };
                pos += eol + 2;
                self.done = eol == 0;
            } else {
                match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, 0))) => {
                        pos += n;
                        self.in_trailers = true;
                    }
                    Ok(httparse::Status::Complete((n, size))) => {
                        pos += n;
                        self.left = size;
                        self.in_data = true;
                    }
                    Ok(httparse::Status::Partial) => break,
                    Err(_) => {
                        return Err(format!(
                            "bad chunk-size line {:?}",
                            String::from_utf8_lossy(&rest[..rest.len().min(40)])
                        ))
                    }
                }
            }
        }
        raw.drain(..pos);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(parts: &[&[u8]]) -> Result<(Vec<u8>, bool), String> {
        let mut d = Dechunk::default();
        let mut raw = Vec::new();
        for p in parts {
            raw.extend_from_slice(p);
            d.feed(&mut raw)?;
        }
        Ok((d.out, d.done))
    }

    #[test]
    fn chunks_are_joined_across_reads() {
        let whole = b"10\r\n{\"resultCode\":\"0\r\n1d;ext=1\r\n00000\",\"resultMsg\":\"success\"}\r\n0\r\nX-T: 1\r\n\r\n";
        let want = br#"{"resultCode":"000000","resultMsg":"success"}"#.to_vec();
        assert_eq!(decode(&[whole]), Ok((want.clone(), true)));
        let split: Vec<&[u8]> = whole.chunks(3).collect();
        assert_eq!(decode(&split), Ok((want, true)));
        assert_eq!(decode(&[b"0\r\n\r\n"]), Ok((vec![], true)));
        assert_eq!(decode(&[b"5\r\nab"]), Ok((b"ab".to_vec(), false)));
        assert!(decode(&[b"zz\r\n"]).is_err());
        assert!(decode(&[b"2\r\nabc\r\n"]).is_err());
    }

    fn head(headers: &[(&str, &str)]) -> Head {
        Head {
            status: 200,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            http11: true,
        }
    }

    /// Feeds `parts` one read at a time, then a close; the body or the failure.
    fn body_of(h: &Head, parts: &[&[u8]]) -> Result<(Body, Vec<u8>), NetFailure> {
        let mut reader = BodyReader::new(h)?;
        let mut buf = Vec::new();
        for p in parts {
            buf.extend_from_slice(p);
            if let Some(b) = reader.step(&mut buf, false)? {
                return Ok((b, buf));
            }
        }
        let b = reader
            .step(&mut buf, true)?
            .expect("a closed connection ends the body");
        Ok((b, buf))
    }

    #[test]
    fn bodies_end_by_their_framing_and_a_close_cuts_them() {
        let length = head(&[("Content-Length", "5")]);
        let (b, rest) = body_of(&length, &[b"he", b"lloHTTP"]).unwrap();
        assert_eq!(
            (b.bytes.as_slice(), b.truncated, b.reusable),
            (&b"hello"[..], false, true)
        );
        // What follows the body stays for the next reply.
        assert_eq!(rest, b"HTTP");
        // Shorter than its Content-Length when the server closed: cut, not accepted.
        let e = body_of(&length, &[b"hel"]).err().unwrap();
        assert_eq!(e.kind, NetKind::Reset);
        assert!(e.message.contains("within the reply body"), "{}", e.message);

        let chunked = head(&[("Transfer-Encoding", "chunked")]);
        let (b, _) = body_of(&chunked, &[b"3\r\nab", b"c\r\n0\r\n\r\n"]).unwrap();
        assert_eq!((b.bytes.as_slice(), b.reusable), (&b"abc"[..], true));
        assert_eq!(
            body_of(&chunked, &[b"3\r\nabc\r\n"]).err().unwrap().kind,
            NetKind::Reset
        );

        // A last chunk in the read that crosses the limit: cut at the limit all the same.
        let big = [
            b"100005\r\n".as_slice(),
            &vec![b'x'; MAX_REPLY + 5],
            b"\r\n0\r\n\r\n",
        ]
        .concat();
        let (b, _) = body_of(&chunked, &[&big]).unwrap();
        assert_eq!(
            (b.bytes.len(), b.truncated, b.reusable),
            (MAX_REPLY, true, false)
        );

        // No length: the body runs to the close, and the connection is done.
        let (b, _) = body_of(&head(&[]), &[b"to ", b"the end"]).unwrap();
        assert_eq!(
            (b.bytes.as_slice(), b.reusable),
            (&b"to the end"[..], false)
        );
        let closing = head(&[("Content-Length", "2"), ("Connection", "close")]);
        assert!(!body_of(&closing, &[b"ok"]).unwrap().0.reusable);
    }

    #[test]
    fn heads_keep_names_and_skip_interim_replies() {
        let mut src = Loaded(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nbody-sign : x\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        );
        let mut buf = Vec::new();
        let head = read_head(&mut src, &mut buf, Instant::now() + Duration::from_secs(1)).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.headers[0], ("body-sign".to_string(), "x".to_string()));
        assert_eq!(buf, b"ok");
    }

    /// Bytes handed out in one read, then the end of the stream.
    struct Loaded(Vec<u8>);

    impl Read for Loaded {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }

    impl Timed for Loaded {
        fn budget(&self, _: Instant) -> Result<(), NetFailure> {
            Ok(())
        }
    }

    #[test]
    fn not_http_is_a_protocol_failure() {
        let mut buf = Vec::new();
        let mut src = Loaded(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec());
        let f = read_head(&mut src, &mut buf, Instant::now() + Duration::from_secs(1)).unwrap_err();
        assert_eq!(f.kind, NetKind::Protocol);
        let mut src = Loaded(Vec::new());
        let f = read_head(
            &mut src,
            &mut Vec::new(),
            Instant::now() + Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(f.kind, NetKind::Reset);
    }
}
