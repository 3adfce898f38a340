//! The policy's keep-alive client for many requests to one endpoint (`csm load`): hyper's
//! pooled HTTP/1.1 client on tokio, with the same user agent, connect timeout, TLS
//! configuration and proxy choice as the other clients ([`Settings::pool`]).
//!
//! hyper hands reply header names over in lower case; each connection is wrapped in a reader
//! that keeps the reply head's names as the endpoint wrote them ([`Reply::headers`]), so the
//! `Body-Sign` name is judged under load too.

use super::failure::{self, NetFailure, NetKind};
use super::raw::{Reply, MAX_REPLY};
use super::{proxy, tls, Settings, USER_AGENT};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::Url;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Stream = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

/// Where connections go: straight to the endpoint, through a `CONNECT` tunnel (HTTPS via a
/// proxy), or to a proxy that relays plain HTTP.
#[derive(Clone)]
enum Route {
    Direct(HttpsConnector<HttpConnector>),
    Tunnel(HttpsConnector<Tunnel<HttpConnector>>),
    Relay(HttpsConnector<HttpConnector>, Uri),
}

#[derive(Clone)]
pub struct Connector {
    route: Route,
}

impl tower_service::Service<Uri> for Connector {
    type Response = Sniffed;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Sniffed, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.route {
            Route::Direct(c) | Route::Relay(c, _) => c.poll_ready(cx),
            Route::Tunnel(c) => c.poll_ready(cx),
        }
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match &mut self.route {
            Route::Direct(c) => {
                let f = c.call(dst);
                Box::pin(async move { Ok(Sniffed::new(f.await?, false)) })
            }
            Route::Tunnel(c) => {
                let f = c.call(dst);
                Box::pin(async move { Ok(Sniffed::new(f.await?, false)) })
            }
            Route::Relay(c, proxy) => {
                let f = c.call(proxy.clone());
                Box::pin(async move { Ok(Sniffed::new(f.await?, true)) })
            }
        }
    }
}

/// The header names of the last reply head read on a connection, as written (None until a
/// whole head was read after the last request went out).
#[derive(Clone, Default)]
struct HeadNames(Arc<Mutex<Option<Headers>>>);

type Headers = Vec<(String, String)>;

const MAX_HEAD: usize = 64 * 1024;

/// A connection that copies each reply head aside, to parse its header names.
pub struct Sniffed {
    inner: Stream,
    relayed: bool,
    names: HeadNames,
    /// Reading a head (a request went out since the last one was whole).
    in_head: bool,
    head: Vec<u8>,
    scratch: Box<[u8]>,
}

impl Sniffed {
    fn new(inner: Stream, relayed: bool) -> Sniffed {
        Sniffed {
            inner,
            relayed,
            names: HeadNames::default(),
            in_head: false,
            head: Vec::new(),
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }

    /// Parses the head read so far; a whole final head (not 1xx) ends the sniffing.
    fn parse_head(&mut self) {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut fields);
            match resp.parse(&self.head) {
                Ok(httparse::Status::Complete(len)) => {
                    if resp.code.is_some_and(|c| (100..200).contains(&c)) {
                        self.head.drain(..len);
                        continue;
                    }
                    let names = resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    *self.names.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(names);
                    self.done();
                }
                Ok(httparse::Status::Partial) if self.head.len() < MAX_HEAD => {}
                // Too long or not HTTP: hyper reports it; the names stay unknown.
                _ => self.done(),
            }
            return;
        }
    }

    fn done(&mut self) {
        self.in_head = false;
        self.head.clear();
    }
}

impl Read for Sniffed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.in_head {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = buf.remaining().min(this.scratch.len());
        let mut tmp = ReadBuf::new(&mut this.scratch[..n]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, tmp.unfilled()))?;
        let got = tmp.filled();
        buf.put_slice(got);
        if got.is_empty() {
            this.done();
        } else {
            this.head.extend_from_slice(got);
            this.parse_head();
        }
        Poll::Ready(Ok(()))
    }
}

impl Sniffed {
    /// A request is going out: the next head read is its reply's.
    fn sending(&mut self) {
        if !self.in_head {
            self.in_head = true;
            self.head.clear();
            *self.names.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

impl Write for Sniffed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.sending();
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.sending();
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connection for Sniffed {
    fn connected(&self) -> Connected {
        self.inner
            .connected()
            .proxy(self.relayed)
            .extra(self.names.clone())
    }
}

/// A pooled client for one endpoint; cheap to share between tasks.
pub struct Pool {
    client: Client<Connector, Full<Bytes>>,
    /// `Proxy-Authorization` for a proxy that relays plain HTTP.
    relay_auth: Option<String>,
    relayed: bool,
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
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(Connector { route });
        Ok(Pool {
            client,
            relay_auth,
            relayed: via.is_some() && url.scheme() == "http",
        })
    }
}

impl Pool {
    /// One exchange: the reply with its header names as written, or why none came. The
    /// caller bounds it in time.
    pub async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Reply, NetFailure> {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("user-agent", USER_AGENT);
        for (n, v) in headers {
            b = b.header(n.as_str(), v.as_str());
        }
        if let Some(auth) = &self.relay_auth {
            b = b.header("proxy-authorization", auth.as_str());
        }
        let req = b
            .body(Full::new(body))
            .map_err(|e| NetFailure::new(NetKind::Protocol, format!("the request: {e}")))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| failure::from_hyper(&e))?;
        let status = resp.status().as_u16();
        // Read now: once the body is in, the connection may carry another request.
        let sniffed = resp
            .extensions()
            .get::<HeadNames>()
            .and_then(|n| n.0.lock().unwrap_or_else(|e| e.into_inner()).take());
        let header_case_known = sniffed.is_some() && !self.relayed;
        let headers = sniffed.unwrap_or_else(|| {
            resp.headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect()
        });
        let (body, truncated) = match Limited::new(resp.into_body(), MAX_REPLY).collect().await {
            Ok(c) => (c.to_bytes().to_vec(), false),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => (Vec::new(), true),
            Err(e) => return Err(failure::from_hyper_body(&*e)),
        };
        Ok(Reply {
            status,
            headers,
            body,
            truncated,
            header_case_known,
        })
    }
}
