//! Crash safety of `csm usage upload`: a real upload process is killed with SIGKILL at many
//! points of an upload to a real `csm serve marketplace` that drops the connection after
//! storing every second batch (the ambiguous case). After each kill `csm usage replay` runs;
//! at the end the marketplace's state file must hold every record exactly once, with the
//! values of the input. CI runs 5,000 records in batches of 100 with 10 kills; the
//! 100,000-record run with 20 kills is `cargo test --test it usage_crash -- --ignored`.

use rusqlite::Connection;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::usage_common;

use usage_common::{csm, start_marketplace, NOW};
const KEY: &str = "crash-test-usage-key-6dc0a70e";

/// Hourly windows going back from NOW (all inside the 21-day limit), no metering_sn
/// column: csm derives it, so a resend must derive the same one.
fn write_input(path: &Path, n: usize) -> i64 {
    let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "instance_id,begin_time,end_time,usage_value").unwrap();
    let mut total = 0i64;
    for i in 0..n {
        let end = now - chrono::Duration::hours(1 + (i % 400) as i64);
        let begin = end - chrono::Duration::hours(1);
        let units = (i % 97 + 1) as i64 * 10_000 + (i % 4) as i64 * 2_500;
        total += units;
        writeln!(
            f,
            "inst-{:05},{},{},{}.{:04}",
            i / 400,
            begin.format("%Y%m%dT%H%M%SZ"),
            end.format("%Y%m%dT%H%M%SZ"),
            units / 10_000,
            units % 10_000
        )
        .unwrap();
    }
    f.flush().unwrap();
    total
}

fn units(v: &str) -> i64 {
    let (i, f) = v.split_once('.').unwrap_or((v, ""));
    i.parse::<i64>().unwrap() * 10_000 + format!("{f:0<4}").parse::<i64>().unwrap()
}

fn open(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

fn stored(db: &Path) -> i64 {
    open(db)
        .query_row("SELECT coalesce(max(id), 0) FROM usage_records", [], |r| {
            r.get(0)
        })
        .unwrap()
}

/// What must hold after any crash: the marketplace holds nothing the journal thinks was
/// never sent, and everything the journal calls accepted is held.
fn check_invariants(market: &Path, journal: &Path) -> (i64, i64) {
    let c = open(market);
    c.execute("ATTACH DATABASE ?1 AS j", [journal.to_str().unwrap()])
        .unwrap();
    let held_but_unsent: i64 = c
        .query_row(
            "SELECT count(*) FROM usage_records u LEFT JOIN j.records r USING (metering_sn)
             WHERE r.id IS NULL OR r.state NOT IN ('sent', 'accepted')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        held_but_unsent, 0,
        "the marketplace holds records the journal never sent"
    );
    let accepted_not_held: i64 = c
        .query_row(
            "SELECT count(*) FROM j.records r LEFT JOIN usage_records u USING (metering_sn)
             WHERE r.state = 'accepted' AND u.id IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        accepted_not_held, 0,
        "the journal calls records accepted that are not held"
    );
    let rejected: i64 = c
        .query_row(
            "SELECT count(*) FROM j.records WHERE state = 'rejected'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        rejected, 0,
        "a resend was refused (a record sent under a second id?)"
    );
    let held: i64 = c
        .query_row("SELECT count(*) FROM usage_records", [], |r| r.get(0))
        .unwrap();
    let journaled: i64 = c
        .query_row("SELECT count(*) FROM j.records", [], |r| r.get(0))
        .unwrap();
    (held, journaled)
}

#[test]
fn sigkill_at_10_points_then_replay_holds_every_record_exactly_once() {
    crash_run(5_000, 10, 100);
}

#[test]
#[ignore = "100,000 records: minutes in a debug build; run with --ignored"]
fn sigkill_at_20_points_of_100k_records_then_replay_holds_every_record_exactly_once() {
    crash_run(100_000, 20, 1000);
}

/// `n` records in batches of `batch`, the upload killed `kills` times.
fn crash_run(n: usize, kills: usize, batch: usize) {
    let batch = batch.to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = dir.join("key");
    std::fs::write(&key, KEY).unwrap();
    let input = dir.join("usage.csv");
    let total_units = write_input(&input, n);
    let market_db = dir.join("market.sqlite");
    let journal: PathBuf = dir.join("journal.sqlite");
    let server = start_marketplace(dir, &market_db, &key, &["drop-after-store"]);

    let mut kill_points = Vec::new();
    let mut replay_codes = Vec::new();
    for k in 1..=kills {
        let before = stored(&market_db);
        // Spread over the upload, and always at least one more stored batch than before.
        let target = ((k * n / (kills + 1)) as i64).max(before + 1);
        let mut up = csm(dir)
            .args(["usage", "upload"])
            .arg(&input)
            .arg("--journal")
            .arg(&journal)
            .arg("--key-file")
            .arg(&key)
            .args(["--endpoint", &server.url, "--backoff-ms", "1", "-q"])
            .args(["--batch", &batch])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let at = loop {
            if let Some(status) = up.try_wait().unwrap() {
                // Finished before the target: only possible at the very end.
                assert!(status.success(), "upload failed: {status:?}");
                break None;
            }
            let n = stored(&market_db);
            if n >= target {
                // Vary the phase hit: waiting for the answer, storing outcomes, the next batch.
                std::thread::sleep(Duration::from_millis((k % 4) as u64 * 3));
                up.kill().unwrap(); // SIGKILL
                up.wait().unwrap();
                break Some(n);
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "upload made no progress"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        kill_points.push(at);
        check_invariants(&market_db, &journal);

        // One attempt per batch: in drop mode the replay stops at the first dropped answer,
        // so the next kill lands in a still unfinished upload.
        let out = csm(dir)
            .args(["usage", "replay", "--journal"])
            .arg(&journal)
            .arg("--key-file")
            .arg(&key)
            .args(["--endpoint", &server.url, "--retries", "0", "-q"])
            .args(["--batch", &batch])
            .output()
            .unwrap();
        let code = out.status.code().unwrap();
        assert!(
            code == 0 || code == 4,
            "replay exit {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        replay_codes.push(code);
        let (_, journaled) = check_invariants(&market_db, &journal);
        assert_eq!(journaled, n as i64, "the journal lost or gained records");
    }
    eprintln!("kill points (records held): {kill_points:?}; replay exits: {replay_codes:?}");
    let killed: Vec<i64> = kill_points.iter().flatten().copied().collect();
    assert!(
        killed.len() >= kills - 1,
        "upload was killed only {} times: {kill_points:?}",
        killed.len()
    );
    assert!(
        killed.windows(2).all(|w| w[0] < w[1]),
        "kill points not increasing: {kill_points:?}"
    );

    // The final replay delivers what is left, retrying the dropped answers.
    let out = csm(dir)
        .args(["usage", "replay", "--journal"])
        .arg(&journal)
        .arg("--key-file")
        .arg(&key)
        .args(["--endpoint", &server.url, "--backoff-ms", "1", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (held, _) = check_invariants(&market_db, &journal);
    assert_eq!(held, n as i64);

    let c = open(&market_db);
    let distinct: (i64, i64) = c
        .query_row(
            "SELECT count(DISTINCT metering_sn),
                    count(DISTINCT instance_id || begin_time || end_time) FROM usage_records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(distinct, (n as i64, n as i64));
    let mut st = c.prepare("SELECT usage_value FROM usage_records").unwrap();
    let billed: i64 = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|v| units(&v.unwrap()))
        .sum();
    assert_eq!(billed, total_units, "the marketplace bills other amounts");
    let j = open(&journal);
    let accepted: i64 = j
        .query_row(
            "SELECT count(*) FROM records WHERE state = 'accepted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(accepted, n as i64);
    // The drops really happened: some records were answered "already held" on a resend.
    let resent: i64 = j
        .query_row(
            "SELECT count(*) FROM records WHERE last_code = '005'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(resent > 0, "no ambiguous delivery was exercised");
    drop(server);
}
