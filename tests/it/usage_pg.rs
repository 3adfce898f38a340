//! The usage journal in PostgreSQL (`--journal postgres://…`): a real server named by
//! `CSM_TEST_POSTGRES` (`.ci/run` starts one with scripts/pg-test-cluster.sh), a fresh
//! database per test. Without that variable these tests say they were skipped, unless
//! `CI`/`CSM_REQUIRE_POSTGRES=1` ask for PostgreSQL: then they fail.

use crate::usage_common;

use rand::Rng;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use usage_common::*;

/// A fresh PostgreSQL journal URL for `test`, or None (skipped, said on stderr).
pub fn database(test: &str) -> Option<String> {
    csm::usage::journal::pg::test_database(test)
}

/// The environments a journal test runs in: SQLite, and PostgreSQL when there is a server.
pub fn envs(test: &str) -> Vec<Env> {
    let mut all = vec![Env::new()];
    if let Some(url) = database(test) {
        let mut e = Env::new();
        e.journal = PathBuf::from(url);
        all.push(e);
    }
    all
}

fn is_url(journal: &Path) -> bool {
    journal.to_str().is_some_and(|s| s.starts_with("postgres"))
}

fn client(url: &Path) -> postgres::Client {
    postgres::Client::connect(url.to_str().unwrap(), postgres::NoTls).unwrap()
}

/// `SELECT count(*) …` on a journal of either kind.
pub fn jcount(journal: &Path, sql: &str) -> i64 {
    if is_url(journal) {
        client(journal).query_one(sql, &[]).unwrap().get(0)
    } else {
        count(journal, sql)
    }
}

/// Every row of the journal's records and batches as text (equal dumps: unchanged).
pub fn jdump(journal: &Path) -> String {
    if !is_url(journal) {
        return dump(journal);
    }
    let mut c = client(journal);
    let mut out = String::new();
    for t in ["meta", "imports", "records", "batches"] {
        for r in c
            .query(
                &format!("SELECT CAST(x AS TEXT) FROM {t} x ORDER BY 1"),
                &[],
            )
            .unwrap()
        {
            out.push_str(r.get::<_, &str>(0));
            out.push('\n');
        }
    }
    out
}

/// A URL with a password in it (the test server trusts loopback and ignores it).
fn with_password(url: &str, password: &str) -> String {
    url.replacen("://csm@", &format!("://csm:{password}@"), 1)
}

#[test]
fn upload_status_export_on_postgres_and_the_password_is_never_shown() {
    let Some(url) = database("upload_status_export_on_postgres") else {
        return;
    };
    let secret = "pw-7f3a9c-never-shown";
    let env = {
        let mut e = Env::new();
        e.journal = PathBuf::from(with_password(&url, secret));
        e
    };
    let f = env.write("u.csv", &csv_records(250, false));
    let server = env.market(&[]);
    let mut outputs = Vec::new();
    let o = env.usage(
        &["upload", f.to_str().unwrap(), "--batch", "100"],
        Some(&server),
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    outputs.push(o);
    // The same file again: nothing new, nothing sent twice.
    let o = env.usage(&["upload", f.to_str().unwrap(), "--json"], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["import"]["already_accepted"], 250, "{v}");
    outputs.push(o);
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        250
    );
    assert_eq!(
        jcount(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'accepted' AND lease_owner IS NULL"
        ),
        250
    );
    let o = env.usage(&["status"], None);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("csm:***@127.0.0.1"), "{:?}", text(&o));
    outputs.push(o);
    let out = env.path("accepted.csv");
    let o = env.usage(
        &[
            "export",
            "--state",
            "accepted",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 251);
    outputs.push(o);
    // A database that does not exist: a storage error naming it, without the password.
    let mut e2 = Env::new();
    e2.journal = PathBuf::from(format!("{}_missing", env.journal.display()));
    let o = e2.usage(&["status"], None);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).1.contains("***"), "{:?}", text(&o));
    outputs.push(o);
    for o in &outputs {
        let (out, err) = text(o);
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{out}\n{err}"
        );
    }
}

/// Journals `n` records as pending: the upload cannot connect.
fn journal_pending(env: &Env, file: &Path) {
    let o = csm(env.dir())
        .args(["usage", "upload"])
        .arg(file)
        .arg("--journal")
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&env.key)
        .args(["--endpoint", &format!("http://127.0.0.1:{}", free_port())])
        .args(["--retries", "0", "--backoff-ms", "1", "-q"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
}

fn replay(env: &Env, server: &Server, lease: &str) -> Child {
    env.send_cmd(&["replay", "-q"], &server.url)
        .args(["--batch", "100", "--lease", lease])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Four uploaders share one journal and one stand-in that drops every second answer after
/// storing it; two are SIGKILLed at random points. Once their leases expire, a last replay
/// sends what they held: the stand-in holds every record exactly once.
#[test]
fn four_uploaders_two_killed_every_record_held_exactly_once() {
    let Some(url) = database("four_uploaders_two_killed") else {
        return;
    };
    let n = 4000i64;
    let mut env = Env::new();
    env.journal = PathBuf::from(url);
    let f = env.write("u.csv", &csv_records(n as usize, false));
    journal_pending(&env, &f);
    assert_eq!(
        jcount(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'pending'"
        ),
        n
    );
    let server = env.market(&["drop-after-store"]);
    let mut rng = rand::thread_rng();
    // Killed once the stand-in holds this many records (different points each run).
    let kill_at = [rng.gen_range(n / 10..n / 2), rng.gen_range(n / 10..n / 2)];
    let mut procs: Vec<Child> = (0..4).map(|_| replay(&env, &server, "3s")).collect();
    let mut killed = [false, false];
    let mut kills = Vec::new();
    let started = Instant::now();
    loop {
        let held = try_count(&env.market, "SELECT count(*) FROM usage_records").unwrap_or(0);
        for k in 0..2 {
            if !killed[k] && held >= kill_at[k] {
                procs[k].kill().unwrap(); // SIGKILL
                procs[k].wait().unwrap();
                killed[k] = true;
                kills.push(held);
            }
        }
        let live = procs[2..]
            .iter_mut()
            .map(|p| p.try_wait().unwrap().is_none())
            .filter(|running| *running)
            .count();
        if live == 0 && killed.iter().all(|k| *k) {
            break;
        }
        if live == 0 {
            // The survivors finished first: kill the others where they are.
            for k in 0..2 {
                if !killed[k] {
                    let _ = procs[k].kill();
                    procs[k].wait().unwrap();
                    killed[k] = true;
                    kills.push(n);
                }
            }
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the uploaders made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for p in procs.drain(2..) {
        let o = p.wait_with_output().unwrap();
        assert!(
            matches!(o.status.code(), Some(0) | Some(4)),
            "{:?} {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // What the killed ones held waits for their leases to expire, then goes out again.
    std::thread::sleep(Duration::from_secs(4));
    // The stand-in drops every second answer: a replay that meets only dropped answers
    // for one batch stops (exit 4) and the next goes on.
    let mut codes = Vec::new();
    for _ in 0..10 {
        let o = replay(&env, &server, "3s").wait_with_output().unwrap();
        let code = o.status.code();
        assert!(
            matches!(code, Some(0) | Some(4)),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        codes.push(code);
        if code == Some(0) {
            break;
        }
    }
    assert_eq!(codes.last(), Some(&Some(0)), "{codes:?}");
    assert_eq!(
        jcount(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'accepted'"
        ),
        n
    );
    let c = open(&env.market);
    let (rows, distinct): (i64, i64) = c
        .query_row(
            "SELECT count(*), count(DISTINCT metering_sn) FROM usage_records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, distinct), (n, n));
    // The same metering_sn set on both sides.
    let mut pg = client(&env.journal);
    let mut journal_sns: Vec<String> = pg
        .query("SELECT metering_sn FROM records", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut st = c.prepare("SELECT metering_sn FROM usage_records").unwrap();
    let mut held_sns: Vec<String> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    journal_sns.sort();
    held_sns.sort();
    assert_eq!(journal_sns, held_sns);
    // Resends happened (dropped answers, taken-over leases), and were answered "held".
    let resent = jcount(
        &env.journal,
        "SELECT count(*) FROM records WHERE last_code = '005'",
    );
    assert!(resent > 0, "no resend was exercised");
    // At least one kill landed mid-run (not after everything was held).
    assert!(
        kills.iter().any(|h| *h < n),
        "both kills came after the end: {kills:?}"
    );
    eprintln!("killed when the stand-in held {kills:?} of {n} records");
}
