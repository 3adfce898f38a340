//! `--client-timeout` on `csm serve merchant` and `csm serve marketplace`, as real processes on
//! loopback: clients that connect and then stall are dropped, a signed callback is still
//! answered while they hold more connections than the merchant has workers, and the server
//! keeps accepting after its listening socket has waited longer than the timeout, and an answer
//! that takes longer than the timeout still arrives.

mod common;

use common::{text, Served};

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BASIC: &str = "0f3c2a9e-5b1d-4c7e-8a6f-1d2e3f4a5b6c";

/// How long a test waits for the server to drop a stalled client: far beyond the 1 s timeout
/// the servers get here, so a busy machine does not fail the test, yet bounded.
const DROP_WAIT: Duration = Duration::from_secs(20);

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("basic.key"), format!("{BASIC}\n")).unwrap();
        Env { dir }
    }

    fn key(&self) -> String {
        self.dir.path().join("basic.key").display().to_string()
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_csm"));
        c.env_clear()
            .env("CSM_CONFIG_DIR", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// Starts `csm serve KIND --listen 127.0.0.1:0 ARGS` and reads the address it announces.
    fn serve(&self, kind: &str, args: &[&str]) -> Served {
        Served::start(
            self.cmd()
                .args(["serve", kind, "--listen", "127.0.0.1:0"])
                .args(args),
        )
    }

    /// One signed newInstance callback with `csm send`, which gives up after 20 s.
    fn send(&self, url: &str) -> Output {
        self.cmd()
            .args(["send", "newInstance", "--endpoint", url, "--key-file"])
            .arg(self.key())
            .args(["--timeout", "20s"])
            .output()
            .unwrap()
    }
}

/// A client that connects, sends `sent` and then nothing more.
fn stall(addr: &str, sent: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(sent).unwrap();
    s.flush().unwrap();
    s
}

/// Reads what the server sends until it closes the connection; fails the test when it is
/// still open after `DROP_WAIT`.
fn until_dropped(mut s: TcpStream, what: &str) -> Vec<u8> {
    s.set_read_timeout(Some(DROP_WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A reset is the server dropping the connection too.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "{what}: the server kept the connection open for {} s (got {:?})",
                    DROP_WAIT.as_secs(),
                    String::from_utf8_lossy(&got)
                )
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("{what}: reading failed: {e}"),
        }
    }
}

#[test]
fn stalled_clients_neither_starve_the_merchant_nor_stay_connected() {
    let env = Env::new();
    let key = env.key();
    let m = env.serve(
        "merchant",
        &[
            "--key-file",
            &key,
            "--client-timeout",
            "1s",
            "--threads",
            "1",
        ],
    );

    // Four stalled clients against one worker. tiny_http reads a body of up to 1024 bytes
    // with the headers on its own connection thread, and a larger one on the worker that
    // answers: the last two stall on each side of that line.
    let silent = stall(m.addr(), b"");
    let half_headers = stall(
        m.addr(),
        b"POST /produce HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty",
    );
    let short_body = stall(
        m.addr(),
        b"POST /produce HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"activit",
    );
    let worker_body = stall(
        m.addr(),
        b"POST /produce HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 100000\r\n\r\n{\"activit",
    );

    // A signed callback is answered all the same (without a timeout the only worker would
    // wait for the rest of that 100000-byte body for ever, and `csm send` would give up).
    let o = env.send(&m.url);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("\"resultCode\":\"000000\""),
        "{}",
        text(&o)
    );

    // Every stalled client is dropped; the one whose body the worker was reading is told why.
    assert!(until_dropped(silent, "a client that sends nothing").is_empty());
    assert!(until_dropped(half_headers, "a client that stops inside its headers").is_empty());
    assert!(until_dropped(short_body, "a client that stops inside a short body").is_empty());
    let answer = until_dropped(worker_body, "a client that stops inside a long body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.ends_with("body not received in time"), "{answer}");

    // And the merchant goes on answering.
    let o = env.send(&m.url);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn keeps_accepting_after_waiting_longer_than_the_timeout() {
    // The timeout is set on the listening socket, so accept() itself gives up after 1 s
    // without a new client; the server must take that as nothing more than a quiet second.
    let env = Env::new();
    let key = env.key();
    let m = env.serve("merchant", &["--key-file", &key, "--client-timeout", "1s"]);
    std::thread::sleep(Duration::from_millis(2500));
    let o = env.send(&m.url);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A kept-alive client that goes quiet after its answer is dropped as well.
    let mut idle = stall(
        m.addr(),
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n",
    );
    idle.flush().unwrap();
    let got = until_dropped(idle, "a kept-alive client that goes quiet");
    assert!(
        got.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn an_answer_slower_than_the_timeout_still_arrives() {
    // The timeout bounds what a client makes the server wait for, not how long the merchant
    // takes to answer: the `slow` fault answers status changes after 2.5 s, past the 1 s.
    let env = Env::new();
    let key = env.key();
    let m = env.serve(
        "merchant",
        &[
            "--key-file",
            &key,
            "--client-timeout",
            "1s",
            "--fault",
            "slow",
            "--fault-delay",
            "2500ms",
        ],
    );
    let o = env
        .cmd()
        .args(["send", "updateInstanceStatus", "--scene", "FREEZE"])
        .args(["--set", "instanceId=3f2c0000-0000-4000-8000-000000000001"])
        .args(["--endpoint", &m.url, "--key-file", &key, "--timeout", "20s"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("< 200 ("), "{}", text(&o));
    assert!(text(&o).contains("Body-Sign: "), "{}", text(&o));
}

#[test]
fn the_marketplace_drops_stalled_clients_too() {
    let env = Env::new();
    let key = env.key();
    let m = env.serve(
        "marketplace",
        &["--key-file", &key, "--client-timeout", "1s"],
    );
    let silent = stall(
        m.addr(),
        b"POST /rest/usage HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    );
    assert!(until_dropped(silent, "a client of the marketplace that stalls").is_empty());
}

#[test]
fn the_timeout_is_checked() {
    let env = Env::new();
    let key = env.key();
    for (kind, value, rule) in [
        ("merchant", "0s", "between 1ms and 10m"),
        ("merchant", "5h", "unit must be ms, s or m"),
        ("marketplace", "soon", "expected a duration"),
    ] {
        let o = env
            .cmd()
            .args(["serve", kind, "--listen", "127.0.0.1:0", "--key-file", &key])
            .args(["--client-timeout", value])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--client-timeout") && err.contains(value) && err.contains(rule),
            "{err}"
        );
        assert!(o.stdout.is_empty(), "nothing served: {}", text(&o));
    }
}
