//! Helpers shared by the integration tests that start `csm serve …` as real processes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Output};
use std::time::Duration;

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
