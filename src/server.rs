//! A small blocking HTTP/1.1 server on tiny_http, shared by `serve merchant` and
//! `serve marketplace`. Header names are written exactly as given (`Body-Sign` stays
//! `Body-Sign`), which is why a lower-casing server stack is not used here.

use crate::error::{CsmError, Result};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Requests larger than this are refused with 413 before they are read whole.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query exactly as received, e.g. `/produce?signature=..`.
    pub url: String,
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
}

pub struct ServerHandle {
    pub addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// Blocks until the server stops (it does not stop by itself).
    pub fn wait(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }

    pub fn shutdown(self) {
        self.server.unblock();
        for _ in 1..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// How long a client may keep the server waiting by default: silent while sending a request
/// or between requests on a kept-alive connection, not reading an answer, or sending a body.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds `listen` (port 0 picks a free port) and serves on `threads` worker threads, with
/// [`DEFAULT_IO_TIMEOUT`].
pub fn serve(listen: &str, handler: Arc<dyn Handler>, threads: usize) -> Result<ServerHandle> {
    serve_with_timeout(listen, handler, threads, DEFAULT_IO_TIMEOUT)
}

/// As [`serve`], dropping any connection whose client stalls for `io_timeout` (see [`bind`]).
pub fn serve_with_timeout(
    listen: &str,
    handler: Arc<dyn Handler>,
    threads: usize,
    io_timeout: Duration,
) -> Result<ServerHandle> {
    let listener = bind(listen, io_timeout)?;
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| CsmError::Config(format!("--listen {listen}: cannot listen there ({e})")))?;
    let addr = server.server_addr().to_ip().ok_or_else(|| {
        CsmError::Config(format!("--listen {listen}: not an IP address and port"))
    })?;
    let server = Arc::new(server);
    let workers = (0..threads.max(1))
        .map(|_| {
            let server = Arc::clone(&server);
            let handler = Arc::clone(&handler);
            std::thread::spawn(move || {
                while let Ok(req) = server.recv() {
                    answer(req, handler.as_ref(), io_timeout);
                }
            })
        })
        .collect();
    Ok(ServerHandle {
        addr,
        server,
        workers,
    })
}

/// The listening socket, with `io_timeout` as its SO_RCVTIMEO and SO_SNDTIMEO.
///
/// tiny_http 0.12 reads and writes client sockets with no timeout and offers no hook on an
/// accepted socket, so one client that stops sending would hold its connection (and, in the
/// middle of a body, a worker) forever. Linux copies both options from the listener to every
/// socket accept() returns, so each read or write on a connection gives up after `io_timeout`
/// and tiny_http closes it. accept() itself then also returns EAGAIN after `io_timeout`
/// without a new client; the vendored tiny_http keeps accepting after that (upstream stops).
fn bind(listen: &str, io_timeout: Duration) -> Result<TcpListener> {
    let listener = TcpListener::bind(listen)
        .map_err(|e| CsmError::Config(format!("--listen {listen}: cannot listen there ({e})")))?;
    let sock = socket2::SockRef::from(&listener);
    sock.set_read_timeout(Some(io_timeout))
        .and_then(|()| sock.set_write_timeout(Some(io_timeout)))
        .map_err(|e| {
            CsmError::Config(format!(
                "--listen {listen}: cannot set a {}ms socket timeout ({e})",
                io_timeout.as_millis()
            ))
        })?;
    Ok(listener)
}

fn answer(mut req: tiny_http::Request, handler: &dyn Handler, io_timeout: Duration) {
    let declared = req.body_length().unwrap_or(0);
    if declared > MAX_BODY {
        let _ =
            req.respond(tiny_http::Response::from_string("body too large").with_status_code(413));
        return;
    }
    let body = match read_body(req.as_reader(), declared, Instant::now() + io_timeout) {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let _ = req
                .respond(tiny_http::Response::from_string("body too large").with_status_code(413));
            return;
        }
        Err(BodyError::Unreadable) => {
            let _ = req.respond(tiny_http::Response::from_string("bad body").with_status_code(400));
            return;
        }
        Err(BodyError::TooSlow) => {
            // Dropping a tiny_http request reads and discards the rest of its declared body,
            // as slowly as the client sends it: that happens off the worker threads (should no
            // thread be had, here after all, where tiny_http answers 500 for it).
            let _ = std::thread::Builder::new()
                .name("csm-late-body".into())
                .spawn(move || {
                    let _ = req.respond(
                        tiny_http::Response::from_string("body not received in time")
                            .with_status_code(408),
                    );
                });
            return;
        }
    };
    let request = Request {
        method: req.method().as_str().to_string(),
        url: req.url().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
            .collect(),
        body,
    };
    // A bug in one handler must not take a worker thread down with it.
    let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.handle(request)))
        .unwrap_or_else(|_| {
            Response::json(
                500,
                r#"{"resultCode":"000005","resultMsg":"internal error"}"#,
            )
        });
    if let Some(d) = resp.delay {
        std::thread::sleep(d);
    }
    if resp.drop_connection {
        // tiny_http answers 500 for a request dropped unanswered and gives no access to the
        // socket; bytes that are no HTTP status line make the client give up on the
        // connection with no answer at all, which is what a dropped connection looks like.
        let mut w = req.into_writer();
        let _ = w.write_all(b"\0 connection dropped\r\n\r\n");
        let _ = w.flush();
        return;
    }
    // Content-Length always: tiny_http's chunked answers above 32 KB stall loopback clients.
    let mut out = tiny_http::Response::from_data(resp.body)
        .with_status_code(resp.status)
        .with_chunked_threshold(usize::MAX);
    for (n, v) in &resp.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()) {
            out.add_header(h);
        }
    }
    let _ = req.respond(out);
}

enum BodyError {
    TooLarge,
    /// A pause longer than the socket timeout, or the whole body later than its deadline.
    TooSlow,
    Unreadable,
}

/// Reads the request body. Each read gives up after the socket's timeout; `deadline` also
/// bounds a client that trickles the body a byte at a time, since the worker reading it
/// serves nobody else meanwhile.
fn read_body(
    reader: &mut dyn std::io::Read,
    declared: usize,
    deadline: Instant,
) -> std::result::Result<Vec<u8>, BodyError> {
    let mut body = Vec::with_capacity(declared);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(body),
            Ok(n) if body.len() + n > MAX_BODY => return Err(BodyError::TooLarge),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(BodyError::TooSlow)
            }
            Err(_) => return Err(BodyError::Unreadable),
        }
        if Instant::now() >= deadline {
            return Err(BodyError::TooSlow);
        }
    }
}

use std::io::Write as _;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Error, ErrorKind, Read};

    /// Hands out a byte per read for ever when its kind is `Other`, else fails with its kind.
    struct Trickle(ErrorKind);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == ErrorKind::Other {
                buf[0] = b'x';
                return Ok(1);
            }
            Err(Error::from(self.0))
        }
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_body_that_arrives_in_time_is_read_whole() {
        let body = read_body(&mut Cursor::new(b"{\"a\":1}".to_vec()), 7, later());
        assert_eq!(body.ok().as_deref(), Some(&b"{\"a\":1}"[..]));
    }

    #[test]
    fn a_socket_timeout_or_a_missed_deadline_is_too_slow() {
        for kind in [ErrorKind::WouldBlock, ErrorKind::TimedOut] {
            let r = read_body(&mut Trickle(kind), 10, later());
            assert!(matches!(r, Err(BodyError::TooSlow)), "{kind:?}");
        }
        // A client that keeps sending a byte at a time still has to finish by the deadline.
        let r = read_body(&mut Trickle(ErrorKind::Other), 10, Instant::now());
        assert!(matches!(r, Err(BodyError::TooSlow)));
    }

    #[test]
    fn other_read_errors_and_oversized_bodies_are_refused() {
        let r = read_body(&mut Trickle(ErrorKind::ConnectionReset), 10, later());
        assert!(matches!(r, Err(BodyError::Unreadable)));
        let mut huge = std::io::repeat(b'x').take(MAX_BODY as u64 + 1);
        assert!(matches!(
            read_body(&mut huge, 0, later()),
            Err(BodyError::TooLarge)
        ));
    }
}
