//! The policy's keep-alive client for many requests to one endpoint (`csm load`), with the
//! same user agent, connect timeout, TLS configuration and proxy choice as the other clients
//! ([`Settings::pool`]).
//!
//! Each exchange is lean HTTP/1.1 on a kept-alive connection, as a load generator must be: the
//! request written at once, the reply head parsed once by the raw client's reader
//! ([`raw::parse_head`], which keeps header names as the endpoint wrote them, so the
//! `Body-Sign` name is judged under load too), the body read by `Content-Length`, chunked or
//! to the end. Connections come from hyper's connectors (TCP, `CONNECT` tunnel, rustls).
//!
//! A connection the server closed while it was idle is noticed before it is used and
//! replaced. One found closed as a request goes out on it is replaced and the request sent
//! once more, when the server did not take the request: the write failed with no reply
//! waiting, or the connection was closed (FIN or reset) before any byte of the reply. One
//! request at a time goes on a connection, so a reset there means the request reached a
//! socket the server had closed, not that a reply was thrown away; any other read error
//! is an error, never a resend. Both are counted ([`Pool::reconnects`]).

use super::failure::{self, io_failure, NetFailure};
use super::raw::{self, BodyReader, Reply};
use super::{proxy, tls, Settings};
use hyper::rt::{Read, ReadBuf, Write};
use hyper::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use reqwest::Url;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use tower_service::Service;

type Stream = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

/// Where connections go: straight to the endpoint, through a `CONNECT` tunnel (HTTPS via a
/// proxy), or to a proxy that relays plain HTTP.
#[derive(Clone)]
enum Route {
    Direct(HttpsConnector<HttpConnector>),
    Tunnel(HttpsConnector<Tunnel<HttpConnector>>),
    Relay(HttpsConnector<HttpConnector>, Uri),
}

const READ_CHUNK: usize = 16 * 1024;

/// One kept-alive connection and what was read on it past the last reply.
struct Conn {
    io: Stream,
    buf: Vec<u8>,
    scratch: Box<[u8]>,
    /// Bytes read since the last request went out.
    got: usize,
    /// The peer closed the stream: FIN (over TLS also without `close_notify`) or reset.
    ended: bool,
}

impl Conn {
    /// One read appended to `buf`; 0 at the end of the stream (over TLS also when the peer
    /// closed without `close_notify`).
    async fn read_more(&mut self) -> io::Result<usize> {
        let mut rb = ReadBuf::new(&mut self.scratch);
        let io = &mut self.io;
        let r = poll_fn(|cx| Pin::new(&mut *io).poll_read(cx, rb.unfilled())).await;
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.ended = true;
                return Ok(0);
            }
            Err(e) => {
                self.ended |= e.kind() == io::ErrorKind::ConnectionReset;
                return Err(e);
            }
        }
        let n = rb.filled().len();
        self.ended |= n == 0;
        self.buf.extend_from_slice(&self.scratch[..n]);
        self.got += n;
        Ok(n)
    }

    async fn write_all(&mut self, mut out: &[u8]) -> io::Result<()> {
        let io = &mut self.io;
        while !out.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, out)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            out = &out[n..];
        }
        poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx)).await
    }

    /// A read of at most one byte, without waiting: Pending while nothing has arrived and
    /// the connection is open. The byte read is dropped: after either question below, the
    /// connection is not used again when the answer is yes.
    fn read_now(&mut self) -> Poll<io::Result<usize>> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut rb = ReadBuf::new(&mut byte);
        Pin::new(&mut self.io)
            .poll_read(&mut cx, rb.unfilled())
            .map_ok(|()| rb.filled().len())
    }

    /// After a failed write: whether a reply (an early answer, a 413 say) is waiting.
    fn reply_waiting(&mut self) -> bool {
        matches!(self.read_now(), Poll::Ready(Ok(n)) if n > 0)
    }

    /// An idle connection the server closed (or wrote to unasked) is of no further use.
    fn closed_while_idle(&mut self) -> bool {
        !self.buf.is_empty() || self.read_now().is_ready()
    }

    /// Reads one reply; true when the connection may carry another request.
    async fn reply(&mut self, relayed: bool) -> Result<(Reply, bool), NetFailure> {
        let head = loop {
            if let Some(head) = raw::parse_head(&mut self.buf)? {
                break head;
            }
            let n = self
                .read_more()
                .await
                .map_err(|e| io_failure(e, "reading the reply"))?;
            if n == 0 {
                return Err(raw::closed_in_head(&self.buf));
            }
        };
        let mut reader = BodyReader::new(&head)?;
        let mut closed = false;
        let body = loop {
            if let Some(body) = reader.step(&mut self.buf, closed)? {
                break body;
            }
            closed = self.body_read().await? == 0;
        };
        let reply = Reply::new(
            head.status,
            head.headers,
            body.bytes,
            body.truncated,
            !relayed,
        );
        Ok((reply, body.reusable))
    }

    async fn body_read(&mut self) -> Result<usize, NetFailure> {
        self.read_more()
            .await
            .map_err(|e| io_failure(e, "reading the reply body"))
    }
}

/// How an exchange on one connection failed, and whether sending again elsewhere is safe.
struct Failed {
    failure: NetFailure,
    /// The connection ended before any byte of a reply: the request was not answered.
    unanswered: bool,
}

/// A keep-alive client for one endpoint; cheap to share between tasks.
pub struct Pool {
    route: Route,
    /// Where connections go (the endpoint, or the proxy that relays plain HTTP).
    dst: Uri,
    /// The `Host` header.
    host: String,
    /// `Proxy-Authorization` for a proxy that relays plain HTTP.
    relay_auth: Option<String>,
    relayed: bool,
    /// The proxy connections go through, as failures name it.
    proxy: Option<String>,
    idle: Mutex<Vec<Conn>>,
    max_idle: usize,
    reconnects: AtomicU64,
}

fn uri(url: &Url) -> Result<Uri, String> {
    url.as_str()
        .parse()
        .map_err(|e| format!("{url}: not a usable address ({e})"))
}

impl Settings {
    /// A keep-alive client for many calls to `url`, at most `connections` kept open. Errors
    /// are one line naming what is wrong (`--ca-file`, a proxy variable).
    pub fn pool(&self, url: &Url, connections: usize) -> Result<Pool, String> {
        let tls = tls::client_config(self.ca_pem.as_deref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.connect_timeout()));
        let https = |inner| {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
                .enable_http1()
                .wrap_connector(inner)
        };
        let via = proxy::for_url(url, &proxy::from_env)?;
        let (route, relay_auth) = match &via {
            None => (Route::Direct(https(http)), None),
            Some(p) if url.scheme() == "https" => {
                let mut t = Tunnel::new(uri(&p.url)?, http);
                if let Some(auth) = p.authorization() {
                    let v = auth.parse().map_err(|_| {
                        format!("{}: proxy credentials not usable in a header", p.var)
                    })?;
                    t = t.with_auth(v);
                }
                let c = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls.clone())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(t);
                (Route::Tunnel(c), None)
            }
            Some(p) => (Route::Relay(https(http), uri(&p.url)?), p.authorization()),
        };
        Ok(Pool {
            route,
            dst: uri(url)?,
            host: raw::authority(url),
            relay_auth,
            relayed: via.is_some() && url.scheme() == "http",
            proxy: via.as_ref().map(|p| p.named()),
            idle: Mutex::new(Vec::with_capacity(connections)),
            max_idle: connections.max(1),
            reconnects: AtomicU64::new(0),
        })
    }
}

impl Pool {
    /// One exchange: the reply with its header names as written, or why none came. The
    /// caller bounds it in time (a connection dropped mid-exchange is not reused).
    pub async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Reply, NetFailure> {
        let out = self.request(method, url, headers, body);
        let reused = self.idle_conn();
        let fresh = reused.is_none();
        let conn = match reused {
            Some(c) => c,
            None => self.connect().await?,
        };
        match self.exchange_on(conn, &out).await {
            Ok(reply) => Ok(reply),
            Err(f) if f.unanswered && !fresh => {
                // The server closed a kept-alive connection as the request went out.
                self.reconnects.fetch_add(1, Ordering::Relaxed);
                let conn = self.connect().await?;
                self.exchange_on(conn, &out).await.map_err(|f| f.failure)
            }
            Err(f) => Err(f.failure),
        }
    }

    /// Kept-alive connections found closed by the server (replaced as needed).
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    async fn exchange_on(&self, mut conn: Conn, out: &[u8]) -> Result<Reply, Failed> {
        conn.got = 0;
        if let Err(e) = conn.write_all(out).await {
            return Err(Failed {
                failure: io_failure(e, "sending the request"),
                unanswered: !conn.reply_waiting(),
            });
        }
        match conn.reply(self.relayed).await {
            Ok((reply, keep)) => {
                if keep {
                    self.give_back(conn);
                }
                Ok(reply)
            }
            Err(failure) => Err(Failed {
                unanswered: conn.ended && conn.got == 0,
                failure,
            }),
        }
    }

    /// An idle connection still open, if any (closed ones are dropped and counted).
    fn idle_conn(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut c) = idle.pop() {
            if !c.closed_while_idle() {
                return Some(c);
            }
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        None
    }

    fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, NetFailure> {
        self.connect_direct_or_via()
            .await
            .map_err(|f| match &self.proxy {
                Some(p) => f.within(p),
                None => f,
            })
    }

    async fn connect_direct_or_via(&self) -> Result<Conn, NetFailure> {
        let dst = self.dst.clone();
        let io = match self.route.clone() {
            Route::Direct(mut c) => {
                poll_fn(|cx| c.poll_ready(cx))
                    .await
                    .map_err(connect_failure)?;
                c.call(dst).await
            }
            Route::Tunnel(mut c) => {
                poll_fn(|cx| c.poll_ready(cx))
                    .await
                    .map_err(connect_failure)?;
                c.call(dst).await
            }
            Route::Relay(mut c, proxy) => {
                poll_fn(|cx| c.poll_ready(cx))
                    .await
                    .map_err(connect_failure)?;
                c.call(proxy).await
            }
        }
        .map_err(connect_failure)?;
        Ok(Conn {
            io,
            buf: Vec::with_capacity(READ_CHUNK),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            got: 0,
            ended: false,
        })
    }

    /// The request as written on the wire: head and body in one buffer, one write.
    fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Vec<u8> {
        let url = url.split('#').next().unwrap_or(url);
        let target = if self.relayed {
            // A proxy relaying plain HTTP is given the absolute URL.
            url
        } else {
            origin_form(url)
        };
        let mut head = String::with_capacity(256 + headers.len() * 64);
        raw::write_head(
            &mut head,
            raw::RequestHead {
                method,
                target,
                host: &self.host,
                keep_alive: true,
                proxy_auth: self.relay_auth.as_deref(),
                headers,
                body_len: body.len(),
            },
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// The path and query of an absolute http(s) URL as `Url` writes it (always with a path).
fn origin_form(url: &str) -> &str {
    let after = url.find("://").map_or(0, |k| k + 3);
    url[after..].find('/').map_or("/", |k| &url[after + k..])
}

fn connect_failure(e: Box<dyn std::error::Error + Send + Sync>) -> NetFailure {
    failure::from_connect(&*e)
}
