//! Helpers shared by the integration tests that start `csm serve …` as real processes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `csm` as every test runs it: none of the caller's `CSM_*` or proxy variables, the config dir (and
/// the home and data dirs, where the default journal lives) pinned to `dir`, no colour, no
/// standard input.
pub fn csm(dir: &std::path::Path) -> Command {
    user(Command::new(env!("CARGO_BIN_EXE_csm")), dir)
}

/// Any command (a shell that runs `csm`, say) in the environment [`csm`] gives.
pub fn user(mut c: Command, dir: &std::path::Path) -> Command {
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy().to_ascii_lowercase();
        // Proxies are a test's own choice too (set after this, where a test needs one).
        if name.starts_with("csm_") || name.ends_with("_proxy") {
            c.env_remove(k);
        }
    }
    c.env("CSM_CONFIG_DIR", dir)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
        .env("XDG_DATA_HOME", dir.join("xdg-data"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// Waits (at most 60 s) until `path` holds `n` lines: a `serve merchant --record` file
/// shows that requests reached the server, so a signal can be sent while they are handled.
pub fn wait_for_lines(path: &std::path::Path, n: usize) {
    let start = std::time::Instant::now();
    while std::fs::read_to_string(path).map_or(0, |t| t.lines().count()) < n {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}: fewer than {n} lines after 60 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (`-INT`, `-TERM`) to process `pid`, as Ctrl-C or a cancelled CI job does.
pub fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

/// A loopback port nothing listens on (bound, then released): an unreachable endpoint.
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How long a starting server may take to print its address line.
pub const START_WAIT: Duration = Duration::from_secs(20);

/// The first line a child prints, read on a thread so a server that never prints (or hangs
/// before it does) fails the test after `wait` instead of blocking CI.
pub fn first_line<R: Read + Send + 'static>(out: R, wait: Duration) -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = BufReader::new(out).read_line(&mut line).map(|_| line);
        let _ = tx.send(r);
    });
    match rx.recv_timeout(wait) {
        Ok(Ok(l)) if !l.is_empty() => Ok(l),
        Ok(Ok(_)) => Err("exited before printing its first line".into()),
        Ok(Err(e)) => Err(format!("reading its first line: {e}")),
        Err(_) => Err(format!("no first line within {} ms", wait.as_millis())),
    }
}

/// A `csm serve …` child process and the URL it announced; killed when dropped.
pub struct Served {
    pub child: Child,
    pub url: String,
}

impl Served {
    /// Spawns `cmd` (a `csm serve …` command on loopback; stdout read, stderr dropped) and
    /// waits for it to announce its URL (see [`announced_url`]).
    pub fn start(cmd: &mut Command) -> Served {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("csm starts");
        let url = announced_url(&mut child);
        let served = Served { child, url };
        let loopback = ["http://127.0.0.1:", "http://[::1]:"];
        assert!(
            loopback.iter().any(|l| served.url.starts_with(l)),
            "not a loopback URL: {}",
            served.url
        );
        served
    }

    /// `host:port`, for raw connections.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URL a `csm serve …` child announces (`csm … listening on http://ADDR`); on failure
/// the child is killed and the test fails with the reason.
pub fn announced_url(child: &mut Child) -> String {
    let out = child.stdout.take().expect("the child's stdout is piped");
    match first_line(out, START_WAIT) {
        Ok(line) => line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string(),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server {e}");
        }
    }
}

/// A finished child's stdout and stderr together, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Reads one HTTP/1.1 request (head, then as much body as Content-Length says) from a test
/// server's connection; its body, or None when the client went away first.
pub fn read_request_body(conn: &mut impl Read) -> Option<Vec<u8>> {
    read_request(conn).map(|(_, body)| body)
}

/// Reads one HTTP/1.1 request: its head (up to the blank line) and its body.
pub fn read_request(conn: &mut impl Read) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).into_owned();
            let len: usize = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= p + 4 + len {
                return Some((head, buf[p + 4..p + 4 + len].to_vec()));
            }
        }
    }
}

/// A loopback HTTP server for at most `max` connections: each request is read, its head
/// recorded, and `reply` (a whole HTTP response) written back. Returns
/// `http://127.0.0.1:PORT` and the heads received so far.
pub fn canned(reply: String, max: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    std::thread::spawn(move || {
        for s in l.incoming().take(max) {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if let Some((head, _)) = read_request(&mut s) {
                seen.lock().unwrap().push(head);
            }
            let _ = s.write_all(reply.as_bytes());
        }
    });
    (base, heads)
}
