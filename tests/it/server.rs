//! `csm serve merchant` and `csm serve marketplace` as real processes on loopback, against
//! clients that misbehave: stalled heads and bodies (thousands at once), bodies over the
//! limit, clients that leave mid-body, kept-alive connections past their cap, and a SIGTERM
//! with a request in flight.

use crate::common;

use common::{text, Served};

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
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
        common::csm(self.dir.path())
    }

    /// Starts `csm serve KIND --listen 127.0.0.1:0 ARGS` and reads the address it announces.
    fn serve(&self, kind: &str, args: &[&str]) -> Served {
        Served::start(
            self.cmd()
                .args(["serve", kind, "--listen", "127.0.0.1:0"])
                .args(args),
        )
    }

    /// One signed newInstance callback with `csm send` and the reply budget `timeout`.
    fn send_within(&self, url: &str, timeout: &str) -> Output {
        self.cmd()
            .args(["send", "newInstance", "--endpoint", url, "--key-file"])
            .arg(self.key())
            .args(["--timeout", timeout])
            .output()
            .unwrap()
    }

    fn send(&self, url: &str) -> Output {
        self.send_within(url, "20s")
    }
}

fn assert_answered(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    assert!(text(o).contains("\"resultCode\":\"000000\""), "{}", text(o));
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

/// The number of threads of a process, from /proc.
fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Threads: line")
}

const HEAD: &[u8] =
    b"POST /produce HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";

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
    let silent = stall(m.addr(), b"");
    let half_head = stall(
        m.addr(),
        b"POST /produce HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty",
    );
    let short_body = stall(
        m.addr(),
        &[HEAD, b"Content-Length: 1000\r\n\r\n{\"activit"].concat(),
    );
    let long_body = stall(
        m.addr(),
        &[HEAD, b"Content-Length: 100000\r\n\r\n{\"activit"].concat(),
    );

    // A signed callback is answered all the same, by the only handler thread.
    assert_answered(&env.send(&m.url));

    // A client silent in its head is dropped without a word; one silent in its body is told.
    assert!(until_dropped(silent, "a client that sends nothing").is_empty());
    assert!(until_dropped(half_head, "a client that stops inside its head").is_empty());
    for (s, what) in [(short_body, "a short body"), (long_body, "a long body")] {
        let answer = until_dropped(s, what);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408 "), "{what}: {answer}");
        assert!(answer.ends_with("body not received in time"), "{answer}");
    }
    // A kept-alive client that goes quiet after its answer is dropped as well.
    let idle = stall(
        m.addr(),
        b"GET /produce HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n",
    );
    let got = until_dropped(idle, "a kept-alive client that goes quiet");
    assert!(
        got.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );

    // And the merchant goes on answering.
    assert_answered(&env.send(&m.url));
}

#[test]
fn five_thousand_stalled_clients_cost_no_thread_each() {
    const STALLED: usize = 5000;
    let env = Env::new();
    let key = env.key();
    let m = env.serve(
        "merchant",
        &["--key-file", &key, "--client-timeout", "3s", "-q"],
    );
    // Half never finish their head, half never finish their body.
    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let sent: &[u8] = if i % 2 == 0 {
            b"POST /produce HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        } else {
            b"POST /produce HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500\r\n\r\n{"
        };
        stalled.push(stall(m.addr(), sent));
    }
    // While they hang, a signed call is answered within a 1 s budget.
    assert_answered(&env.send_within(&m.url, "1s"));
    let n = threads(m.child.id());
    assert!(n <= 32, "{n} threads with {STALLED} stalled clients");
    // Every stalled socket is closed after the read timeout.
    for (i, s) in stalled.into_iter().enumerate() {
        let got = until_dropped(s, &format!("stalled client {i}"));
        assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 408 "), "{i}");
    }
    assert_answered(&env.send(&m.url));
}

#[test]
fn bodies_over_the_limit_are_refused_and_clients_that_leave_mid_body_are_forgotten() {
    let env = Env::new();
    let key = env.key();
    let m = env.serve("merchant", &["--key-file", &key, "--client-timeout", "5s"]);
    // A 10 MB body, announced: refused from its head.
    let body = vec![b'x'; 10 * 1024 * 1024];
    let mut s = TcpStream::connect(m.addr()).unwrap();
    s.write_all(&[HEAD, b"Content-Length: 10485760\r\n\r\n"].concat())
        .unwrap();
    // The server may close before all of it is sent.
    let _ = s.write_all(&body);
    let answer = String::from_utf8_lossy(&until_dropped(s, "a 10 MB body")).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    // The same body in chunks, with no length up front: refused once it passes the limit.
    let mut s = TcpStream::connect(m.addr()).unwrap();
    s.write_all(&[HEAD, b"Transfer-Encoding: chunked\r\n\r\n"].concat())
        .unwrap();
    for part in body.chunks(1024 * 1024) {
        let framed = [format!("{:x}\r\n", part.len()).as_bytes(), part, b"\r\n"].concat();
        if s.write_all(&framed).is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let answer = String::from_utf8_lossy(&until_dropped(s, "a 10 MB chunked body")).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    // A client that leaves in the middle of its body.
    let s = stall(
        m.addr(),
        &[HEAD, b"Content-Length: 5000\r\n\r\n{\"activity\":"].concat(),
    );
    drop(s);
    // The server goes on.
    assert_answered(&env.send(&m.url));
}

#[test]
fn a_kept_alive_connection_carries_at_most_its_cap() {
    let env = Env::new();
    let key = env.key();
    let m = env.serve("merchant", &["--key-file", &key, "--keep-alive-max", "2"]);
    let mut s = TcpStream::connect(m.addr()).unwrap();
    let get = b"GET /produce HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    s.write_all(get).unwrap();
    s.write_all(get).unwrap();
    let got = String::from_utf8_lossy(&until_dropped(s, "a connection past its cap")).into_owned();
    assert_eq!(got.matches("HTTP/1.1 200 ").count(), 2, "{got}");
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let env = Env::new();
    let key = env.key();
    let rec = env.dir.path().join("rec.jsonl").display().to_string();
    let mut m = env.serve(
        "merchant",
        &[
            "--key-file",
            &key,
            "--fault",
            "slow",
            "--fault-delay",
            "1500ms",
            "--record",
            &rec,
        ],
    );
    let url = m.url.clone();
    let key2 = key.clone();
    let cmd = env.cmd();
    let in_flight = std::thread::spawn(move || {
        let mut cmd = cmd;
        cmd.args(["send", "updateInstanceStatus", "--scene", "FREEZE"])
            .args(["--set", "instanceId=3f2c0000-0000-4000-8000-000000000001"])
            .args(["--endpoint", &url, "--key-file", &key2, "--timeout", "20s"])
            .output()
            .unwrap()
    });
    // The slow answer is under way (recorded, its 1.5 s delay begun) when the signal comes.
    common::wait_for_lines(std::path::Path::new(&rec), 1);
    common::signal(m.child.id(), "-TERM");
    let o = in_flight.join().unwrap();
    assert!(text(&o).contains("< 200 ("), "{}", text(&o));
    let status = m.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // Nothing listens any more.
    assert!(TcpStream::connect(m.addr()).is_err());
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
fn the_server_flags_are_checked() {
    let env = Env::new();
    let key = env.key();
    for (kind, flag, value, rule) in [
        ("merchant", "--client-timeout", "0s", "between 1ms and 10m"),
        (
            "merchant",
            "--client-timeout",
            "5d",
            "unit must be ms, s, m or h",
        ),
        ("merchant", "--client-timeout", "1h", "between 1ms and 10m"),
        (
            "marketplace",
            "--client-timeout",
            "soon",
            "expected a duration",
        ),
        ("merchant", "--max-body", "4GB", "unit must be KiB or MiB"),
        ("marketplace", "--keep-alive-max", "0", "not in 1.."),
    ] {
        let o = env
            .cmd()
            .args(["serve", kind, "--listen", "127.0.0.1:0", "--key-file", &key])
            .args([flag, value])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(flag) && err.contains(value) && err.contains(rule),
            "{err}"
        );
        assert!(o.stdout.is_empty(), "nothing served: {}", text(&o));
    }
}

/// With --json every line a server prints is JSON, its address first.
#[test]
fn servers_announce_their_address_as_json_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "k-0123456789\n").unwrap();
    for what in ["merchant", "marketplace"] {
        let mut child = common::csm(dir.path())
            .args([
                "--json",
                "serve",
                what,
                "--listen",
                "127.0.0.1:0",
                "--key-file",
            ])
            .arg(&key)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let line = common::first_line(out, common::START_WAIT);
        let _ = child.kill();
        let _ = child.wait();
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert!(
            v["listening"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:"),
            "{what}: {v}"
        );
    }
}
