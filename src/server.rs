//! The HTTP/1.1 server under `serve merchant`, `serve marketplace` and the in-process `--demo`
//! merchant: hyper on a small tokio runtime. Connections are tasks, not threads, so clients
//! that stall cost a socket each. Handlers are plain functions: a quick one answers on the
//! connection's own task, one that may block (files, outgoing HTTP) runs on a bounded pool
//! of threads.
//!
//! Per connection: the request head must arrive within the client timeout (also between
//! requests on a kept-alive connection), the body within the same time again, bodies above
//! the size limit are answered 413, and a connection serves a bounded number of requests.

use crate::error::{CsmError, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Every address `listen` names is a loopback address (false when it names none): where an
/// unauthenticated API may listen.
pub fn is_loopback_listen(listen: &str) -> bool {
    use std::net::ToSocketAddrs;
    listen
        .to_socket_addrs()
        .map(|addrs| addrs.collect::<Vec<_>>())
        .is_ok_and(|addrs| !addrs.is_empty() && addrs.iter().all(|s| s.ip().is_loopback()))
}

/// Request bodies larger than this are refused with 413 by default (a Kit sync of 500 users
/// or a usage push of 1,000 records is a few hundred KiB).
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// How long a client may keep the server waiting by default: silent while sending a request
/// head or between requests on a kept-alive connection, or sending a body.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests one kept-alive connection may carry before the server closes it.
pub const DEFAULT_KEEP_ALIVE_MAX: u32 = 1000;

/// How long requests in flight may take to finish once a stop is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query exactly as received, e.g. `/produce?signature=..`.
    pub url: String,
    /// Header names as hyper gives them (lower case).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.url.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    /// First header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (fault injection).
    pub delay: Option<Duration>,
    /// Close the connection without answering (fault injection).
    pub drop_connection: bool,
}

impl Response {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/json;charset=UTF-8".into(),
            )],
            body: body.into(),
            delay: None,
            drop_connection: false,
        }
    }

    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.into(),
            delay: None,
            drop_connection: false,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Response;

    /// What the request asks for, for the log line (a callback's activity, an API's name).
    fn activity(&self, _req: &Request) -> String {
        "-".into()
    }

    /// Whether answering `req` may block its thread (file or network I/O). Such requests run
    /// on the blocking pool; the others are answered on the connection's task, which saves
    /// two thread hand-offs per request.
    fn may_block(&self, _req: &Request) -> bool {
        true
    }

    /// Called once when the server stops, after the last request: flush what is kept.
    fn close(&self) {}
}

/// How each request is logged on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    Off,
    /// `POST /produce newInstance → 000000 200 3 ms`
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Handlers running at once (threads of the blocking pool).
    pub threads: usize,
    /// See [`DEFAULT_IO_TIMEOUT`].
    pub client_timeout: Duration,
    pub max_body: usize,
    pub keep_alive_max: u32,
    /// Write header names in Title-Case (`Body-Sign`), as the marketplace's Java stack does.
    /// Off, names go out in lower case (`body-sign`): the `body-sign-case` fault.
    pub title_case_headers: bool,
    pub log: Log,
    /// Stop on SIGINT or SIGTERM (the `serve` commands; not the in-process demo).
    pub stop_on_signal: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threads: 16,
            client_timeout: DEFAULT_IO_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            keep_alive_max: DEFAULT_KEEP_ALIVE_MAX,
            title_case_headers: true,
            log: Log::Off,
            stop_on_signal: false,
        }
    }
}

pub struct ServerHandle {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Blocks until the server stops (on a signal, with `stop_on_signal`).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops accepting, lets requests in flight finish (bounded) and waits for the end.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Binds `listen` (port 0 picks a free port) and serves `handler` on a thread of its own.
pub fn serve(listen: &str, handler: Arc<dyn Handler>, cfg: Config) -> Result<ServerHandle> {
    let cannot = |e: std::io::Error| {
        CsmError::Config(format!("--listen {listen}: cannot listen there ({e})"))
            .with_hint("pick a free port on this machine, e.g. --listen 127.0.0.1:0")
    };
    // A malformed address is a usage error, told apart from one that cannot be bound.
    let has_port = listen
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        return Err(CsmError::usage(format!(
            "--listen {listen:?}: expected HOST:PORT, e.g. 127.0.0.1:8088 (port 0 picks a free one)"
        )));
    }
    let std_listener = std::net::TcpListener::bind(listen).map_err(cannot)?;
    std_listener.set_nonblocking(true).map_err(cannot)?;
    let addr = std_listener.local_addr().map_err(cannot)?;
    let runtime = runtime_builder()
        .max_blocking_threads(cfg.threads.max(1))
        .thread_name("csm-server")
        .enable_all()
        .build()
        .map_err(|e| CsmError::Config(format!("cannot start the server runtime: {e}")))?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener).map_err(cannot)?
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("csm-accept".into())
        .spawn(move || {
            runtime.block_on(accept_loop(listener, handler, Arc::new(cfg), rx));
            // Handlers still sleeping (a `slow` fault) are not waited for past the grace.
            runtime.shutdown_timeout(Duration::from_millis(100));
        })
        .map_err(|e| CsmError::Config(format!("cannot start the server thread: {e}")))?;
    Ok(ServerHandle {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    })
}

/// One runtime worker per core this process may run on (`taskset` and cgroup limits count),
/// at most 8: the work per request is small, and threads stay few however many connections
/// are open. The load generator's runtime is sized the same way.
pub(crate) fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8))
}

/// A runtime of [`worker_threads`] workers. On one core (a server pinned beside the client
/// that loads it) one thread does it all, without handing tasks and wake-ups between
/// threads.
pub(crate) fn runtime_builder() -> tokio::runtime::Builder {
    match worker_threads() {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    }
}

async fn stop_signal(cfg: &Config, stop: tokio::sync::oneshot::Receiver<()>) {
    if !cfg.stop_on_signal {
        let _ = stop.await;
        return;
    }
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = stop => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    handler: Arc<dyn Handler>,
    cfg: Arc<Config>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stopping = stop_signal(&cfg, stop);
    tokio::pin!(stopping);
    loop {
        let stream = tokio::select! {
            _ = &mut stopping => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors or a connection reset before accept: go on, after a
                // breath so a full table does not spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let served = Arc::new(AtomicU32::new(0));
        let (handler, cfg2) = (Arc::clone(&handler), Arc::clone(&cfg));
        let service = hyper::service::service_fn(move |req| {
            let n = served.fetch_add(1, Ordering::Relaxed) + 1;
            answer(req, Arc::clone(&handler), Arc::clone(&cfg2), n)
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.client_timeout)
            .title_case_headers(cfg.title_case_headers)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A dropped connection (a fault, a client gone, a timed-out head) is the end of
            // that connection only.
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    let h = Arc::clone(&handler);
    let _ = tokio::task::spawn_blocking(move || h.close()).await;
}

/// The connection ends without an answer (the `drop` faults).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

type Reply = hyper::Response<Full<Bytes>>;

fn plain(status: u16, text: &'static str) -> Reply {
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // The rest of the body is not read: the connection cannot carry another request.
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

async fn answer(
    req: hyper::Request<Incoming>,
    handler: Arc<dyn Handler>,
    cfg: Arc<Config>,
    nth: u32,
) -> std::result::Result<Reply, Dropped> {
    let start = Instant::now();
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cfg.max_body as u64) {
        return Ok(plain(413, "body too large"));
    }
    let body = match tokio::time::timeout(
        cfg.client_timeout,
        Limited::new(body, cfg.max_body).collect(),
    )
    .await
    {
        Err(_) => return Ok(plain(408, "body not received in time")),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(plain(413, "body too large"))
        }
        Ok(Err(_)) => return Ok(plain(400, "bad body")),
        Ok(Ok(collected)) => collected.to_bytes().to_vec(),
    };
    let request = Request {
        method: parts.method.as_str().to_string(),
        url: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let log_line = (cfg.log != Log::Off).then(|| {
        (
            request.method.clone(),
            request.path().to_string(),
            handler.activity(&request),
        )
    });
    // A panicking handler answers 500 and takes nothing else down.
    let resp = if handler.may_block(&request) {
        let h = Arc::clone(&handler);
        tokio::task::spawn_blocking(move || h.handle(request))
            .await
            .unwrap_or_else(|_| internal_error())
    } else {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.handle(request)))
            .unwrap_or_else(|_| internal_error())
    };
    if let Some(d) = resp.delay {
        tokio::time::sleep(d).await;
    }
    if let Some((method, path, activity)) = log_line {
        log(cfg.log, &method, &path, &activity, &resp, start.elapsed());
    }
    if resp.drop_connection {
        return Err(Dropped);
    }
    let mut out = hyper::Response::new(Full::new(Bytes::from(resp.body)));
    *out.status_mut() = hyper::StatusCode::from_u16(resp.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (n, v) in &resp.headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(n.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            out.headers_mut().append(n, v);
        }
    }
    if nth >= cfg.keep_alive_max {
        out.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    Ok(out)
}

fn internal_error() -> Response {
    Response::json(
        500,
        r#"{"resultCode":"000005","resultMsg":"internal error"}"#,
    )
}

/// The outcome a reply body names: a callback's `resultCode`, an open API's `error_code`.
fn result_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    ["resultCode", "error_code"]
        .iter()
        .find_map(|k| v[*k].as_str())
        .unwrap_or("-")
        .to_string()
}

fn log(format: Log, method: &str, path: &str, activity: &str, resp: &Response, took: Duration) {
    let code = result_code(&resp.body);
    let ms = took.as_millis();
    let line = match format {
        Log::Off => return,
        Log::Text if resp.drop_connection => {
            format!("{method} {path} {activity} → connection dropped {ms} ms")
        }
        Log::Text => format!(
            "{method} {path} {activity} → {code} {} {ms} ms",
            resp.status
        ),
        Log::Json => serde_json::json!({
            "method": method,
            "path": path,
            "activity": activity,
            "status": if resp.drop_connection { None } else { Some(resp.status) },
            "result_code": code,
            "latency_ms": ms,
        })
        .to_string(),
    };
    eprintln!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_come_from_either_reply_shape() {
        assert_eq!(result_code(br#"{"resultCode":"000000"}"#), "000000");
        assert_eq!(result_code(br#"{"error_code":"MKT.0102"}"#), "MKT.0102");
        assert_eq!(result_code(b"not json"), "-");
    }
}
