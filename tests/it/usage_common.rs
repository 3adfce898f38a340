//! Helpers shared by the usage tests: real `csm` processes, a real stand-in marketplace.
#![allow(dead_code)]

pub(crate) use crate::common;

use rusqlite::Connection;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub const NOW: &str = "2026-01-10T12:30:00Z";
pub const KEY: &str = "usage-test-key-3b890f5c-4b9e";

pub use common::Served as Server;

/// A csm process with a fixed clock and no influence from the caller's environment.
pub fn csm(dir: &Path) -> Command {
    let mut c = common::csm(dir);
    c.env("CSM_NOW", NOW);
    c
}

pub fn start_marketplace(dir: &Path, state: &Path, key: &Path, faults: &[&str]) -> Server {
    let mut extra = Vec::new();
    for f in faults {
        extra.extend(["--fault", f]);
    }
    start_marketplace_with(dir, state, key, None, &extra)
}

/// The stand-in with its own clock (`now`, else [`NOW`]) and any further flags.
pub fn start_marketplace_with(
    dir: &Path,
    state: &Path,
    key: &Path,
    now: Option<&str>,
    extra: &[&str],
) -> Server {
    let mut cmd = csm(dir);
    cmd.env("CSM_NOW", now.unwrap_or(NOW))
        .args([
            "serve",
            "marketplace",
            "--listen",
            "127.0.0.1:0",
            "--key-file",
        ])
        .arg(key)
        .arg("--state")
        .arg(state)
        .args(extra);
    Server::start(&mut cmd)
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub key: PathBuf,
    pub journal: PathBuf,
    pub market: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("key");
        std::fs::write(&key, KEY).unwrap();
        Env {
            journal: tmp.path().join("journal.sqlite"),
            market: tmp.path().join("market.sqlite"),
            key,
            tmp,
        }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn market(&self, faults: &[&str]) -> Server {
        start_marketplace(self.dir(), &self.market, &self.key, faults)
    }

    /// The stand-in with its own clock and/or further flags.
    pub fn market_with(&self, now: Option<&str>, extra: &[&str]) -> Server {
        start_marketplace_with(self.dir(), &self.market, &self.key, now, extra)
    }

    /// `csm usage <args> --journal J` (and the key and endpoint when a server is given).
    pub fn usage(&self, args: &[&str], server: Option<&Server>) -> Output {
        match server {
            Some(s) => self.send_cmd(args, &s.url).output().unwrap(),
            None => csm(self.dir())
                .arg("usage")
                .args(args)
                .arg("--journal")
                .arg(&self.journal)
                .output()
                .unwrap(),
        }
    }

    /// `csm usage <args> --journal J --key-file K --endpoint E --backoff-ms 1`, to add flags
    /// or variables to and run.
    pub fn send_cmd(&self, args: &[&str], endpoint: &str) -> Command {
        let mut c = csm(self.dir());
        c.arg("usage")
            .args(args)
            .arg("--journal")
            .arg(&self.journal)
            .arg("--key-file")
            .arg(&self.key)
            .args(["--endpoint", endpoint, "--backoff-ms", "1"]);
        c
    }

    /// `csm usage upload FILE` as [`Env::send_cmd`].
    pub fn upload_cmd(&self, file: &Path, endpoint: &str) -> Command {
        self.send_cmd(&["upload", file.to_str().unwrap()], endpoint)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

pub fn open(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

pub fn count(db: &Path, sql: &str) -> i64 {
    open(db).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Like [`count`] for a database another process may still be creating: None until it can.
pub fn try_count(db: &Path, sql: &str) -> Option<i64> {
    if !db.exists() {
        return None;
    }
    let c = Connection::open(db).ok()?;
    c.busy_timeout(Duration::from_secs(1)).ok()?;
    c.query_row(sql, [], |r| r.get(0)).ok()
}

/// Every row of every journal table, as text: equal dumps mean an unchanged journal.
pub fn dump(db: &Path) -> String {
    if !db.exists() {
        return String::new();
    }
    let c = open(db);
    let mut out = String::new();
    for t in ["meta", "imports", "records", "batches"] {
        let mut st = c.prepare(&format!("SELECT * FROM {t} ORDER BY 1")).unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..n {
                let v: rusqlite::types::Value = r.get(i).unwrap();
                out.push_str(&format!("{v:?}|"));
            }
            out.push('\n');
        }
    }
    out
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `n` CSV records, hourly windows back from NOW, one instance per 100 records.
pub fn csv_records(n: usize, with_sn: bool) -> String {
    let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap();
    let mut s = String::from("instance_id,begin_time,end_time,usage_value");
    if with_sn {
        s.push_str(",metering_sn");
    }
    s.push('\n');
    for i in 0..n {
        let end = now - chrono::Duration::hours(1 + (i % 100) as i64);
        let begin = end - chrono::Duration::hours(1);
        s.push_str(&format!(
            "inst-{:04},{},{},{}.5",
            i / 100,
            begin.format("%Y%m%dT%H%M%SZ"),
            end.format("%Y%m%dT%H%M%SZ"),
            i % 9 + 1
        ));
        if with_sn {
            s.push_str(&format!(",sn-{i:06}"));
        }
        s.push('\n');
    }
    s
}
