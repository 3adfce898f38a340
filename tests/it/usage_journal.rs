//! Review fixes: records past the 21-day window, replaced rejected records, endpoint and
//! flag checks, input strictness and the stand-in's fault names.

use crate::usage_common;

use crate::usage_pg::{envs, jcount, jdump};
use std::path::Path;
use usage_common::*;

/// Two days after NOW: a record that began 20 days before NOW is then 22 days old.
const LATER: &str = "2026-01-12T12:30:00Z";

/// Journals the file's records as pending (the upload cannot connect).
fn journal_pending(env: &Env, file: &str) {
    let o = csm(env.dir())
        .args(["usage", "upload", file, "--journal"])
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&env.key)
        .args(["--endpoint", &format!("http://127.0.0.1:{}", free_port())])
        .args(["--retries", "0", "--backoff-ms", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
}

#[test]
fn a_record_past_21_days_is_rejected_locally_and_does_not_block_its_batch() {
    for env in envs("a_record_past_21_days_is_rejected_locall") {
        let f = env.write(
            "u.csv",
            "instance_id,begin_time,end_time,usage_value,metering_sn\n\
         i-1,20251221T100000Z,20251221T110000Z,1,sn-old\n\
         i-1,20260110T090000Z,20260110T100000Z,2,sn-b\n\
         i-2,20260110T090000Z,20260110T100000Z,3,sn-c\n",
        );
        journal_pending(&env, f.to_str().unwrap());
        let server = env.market_with(Some(LATER), &[]);
        let o = env
            .send_cmd(&["replay"], &server.url)
            .env("CSM_NOW", LATER)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(5), "{out} {err}");
        assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 2);
        // Refused before sending: no request of this run was turned away for it.
        assert_eq!(
            count(
                &env.market,
                "SELECT count(*) FROM usage_requests WHERE error_code = 'MKT.9004'"
            ),
            0
        );
        assert_eq!(
            count(
                &env.market,
                "SELECT count(*) FROM usage_records WHERE metering_sn = 'sn-old'"
            ),
            0
        );
        assert_eq!(
            jcount(
                &env.journal,
                "SELECT count(*) FROM records WHERE metering_sn = 'sn-old' AND state = 'rejected' \
             AND last_code = 'MKT.9004' AND last_message LIKE '%21 days%'"
            ),
            1
        );
        assert_eq!(
            jcount(
                &env.journal,
                "SELECT count(*) FROM records WHERE state = 'accepted'"
            ),
            2
        );
    }
}

#[test]
fn a_rejected_record_that_may_have_been_delivered_cannot_be_replaced_under_its_sn() {
    for env in envs("a_rejected_record_that_may_have_been_del") {
        let first = env.write(
            "u.csv",
            "instance_id,begin_time,end_time,usage_value,metering_sn\n\
         i-1,20260110T090000Z,20260110T100000Z,1,sn-a\n",
        );
        {
            // The first attempt is dropped after the stand-in's answer (maybe delivered); the
            // retry is answered 012 (every instance refused).
            let server = env.market(&["drop-after-store=2", "partial-rejects=1"]);
            let o = env.usage(&["upload", first.to_str().unwrap()], Some(&server));
            assert_eq!(o.status.code(), Some(5), "{:?}", text(&o));
        }
        assert_eq!(
            jcount(
                &env.journal,
                "SELECT count(*) FROM records WHERE state = 'rejected' AND maybe_delivered = 1"
            ),
            1
        );
        let before = jdump(&env.journal);
        let fixed = env.write(
            "fixed.csv",
            "instance_id,begin_time,end_time,usage_value,metering_sn\n\
         i-1,20260110T090000Z,20260110T100000Z,2,sn-a\n",
        );
        let server = env.market(&[]);
        let o = env.usage(&["upload", fixed.to_str().unwrap()], Some(&server));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out} {err}");
        assert!(err.contains("fixed.csv:2"), "{err}");
        assert!(err.contains("sn-a"), "{err}");
        assert!(err.contains("new metering_sn"), "{err}");
        assert_eq!(jdump(&env.journal), before);
        assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 0);
    }
}

#[test]
fn a_mkt_9004_answer_sends_the_other_records_again_in_the_same_run() {
    let env = Env::new();
    // 21 days less 30 minutes before NOW: fresh for csm, too old for a stand-in whose
    // clock is an hour ahead, which answers MKT.9004 for the batch.
    let f = env.write(
        "u.csv",
        "instance_id,begin_time,end_time,usage_value,metering_sn\n\
         i-1,20251220T130000Z,20251220T140000Z,1,sn-edge\n",
    );
    journal_pending(&env, f.to_str().unwrap());
    let server = env.market_with(Some("2026-01-10T13:30:00Z"), &[]);
    let o = env
        .send_cmd(&["replay", "--retries", "2"], &server.url)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{out} {err}");
    // The first attempt and two more, then the record waits (not rejected: csm does not
    // know it is old).
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_requests WHERE error_code = 'MKT.9004'"
        ),
        3
    );
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'pending' AND last_code = 'MKT.9004'"
        ),
        1
    );
}

/// A loopback HTTP server that answers every request with `status` and an empty JSON body,
/// for at most `max` requests (bounded).
fn answering(status: u16, max: usize) -> String {
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    common::canned(reply, max).0
}

fn upload_to(env: &Env, file: &str, endpoint: &str) -> std::process::Output {
    env.upload_cmd(Path::new(file), endpoint)
        .args(["--retries", "0"])
        .output()
        .unwrap()
}

const ONE: &str = "instance_id,begin_time,end_time,usage_value,metering_sn\n\
                   i-1,20260110T090000Z,20260110T100000Z,1,sn-a\n";

#[test]
fn endpoint_must_be_a_plain_base_url_and_no_password_is_echoed() {
    let env = Env::new();
    let f = env.write("u.csv", ONE);
    let fs = f.to_str().unwrap();
    for (endpoint, rule) in [
        ("ftp://127.0.0.1:1", "http"),
        // The rule and wording every endpoint flag of csm uses.
        (
            "http://user:hunter2@127.0.0.1:1",
            "must not contain a user name or password",
        ),
        ("http://127.0.0.1:1/api", "path"),
        ("http://127.0.0.1:1/?a=b", "query"),
        ("http://127.0.0.1:1/#x", "fragment"),
        ("not a url", "not a URL"),
    ] {
        let o = upload_to(&env, fs, endpoint);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{endpoint}: {out} {err}");
        assert!(err.contains("--endpoint") && err.contains(rule), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            !err.contains("hunter2") && !out.contains("hunter2"),
            "{err}"
        );
    }
    assert!(!env.journal.exists() || count(&env.journal, "SELECT count(*) FROM records") == 0);
}

#[test]
fn a_404_stops_the_run_and_a_408_counts_as_maybe_delivered() {
    let env = Env::new();
    let f = env.write("u.csv", ONE);
    let fs = f.to_str().unwrap();
    let o = upload_to(&env, fs, &answering(404, 1));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out} {err}");
    assert!(err.contains("--endpoint"), "{err}");
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'pending'"
        ),
        1
    );
    let o = upload_to(&env, fs, &answering(408, 1));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out} {err}");
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'sent' AND maybe_delivered = 1"
        ),
        1
    );
}

/// `--endpoint` at a merchant endpoint (it answers 200 at any path, with its own JSON): the
/// run stops at once with exit 3 and says what answered, instead of retrying; the record
/// stays maybe delivered (a 200 proves nothing either way).
#[test]
fn a_server_that_is_not_the_usage_api_stops_the_run_and_is_named() {
    let env = Env::new();
    let f = env.write("u.csv", ONE);
    let merchant = common::Served::start(
        csm(env.dir())
            .args(["serve", "merchant", "--listen", "127.0.0.1:0", "--key-file"])
            .arg(&env.key),
    );
    let o = env
        .upload_cmd(&f, &merchant.url)
        .args(["--retries", "3"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out} {err}");
    assert!(
        err.contains("no usage API answers at the endpoint") && err.contains("resultCode"),
        "{err}"
    );
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'sent' AND maybe_delivered = 1 AND attempts = 1"
        ),
        1
    );
}

/// A stand-in started without `--key-file` refuses pushes as a wrong key would (exit 3 after
/// one request, the record back to `pending`), not with a 5xx retried in vain; and an access
/// key id without its secret key is named at start.
#[test]
fn a_stand_in_without_keys_says_so() {
    let env = Env::new();
    let f = env.write("u.csv", ONE);
    let market = common::Served::start(csm(env.dir()).args([
        "serve",
        "marketplace",
        "--listen",
        "127.0.0.1:0",
    ]));
    let o = env.upload_cmd(&f, &market.url).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out} {err}");
    assert!(err.contains("started without --key-file"), "{err}");
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'pending' AND attempts = 1"
        ),
        1
    );
    // An access key id without its secret key is named at start (from the flag or from
    // CSM_AK, which may be set for csm's client side); here the address then stops it.
    for (flag, env_ak) in [(Some("AK1"), None), (None, Some("AK1"))] {
        let mut c = csm(env.dir());
        c.args(["serve", "marketplace", "--listen", "nowhere"])
            .env_remove("CSM_SK");
        if let Some(ak) = flag {
            c.args(["--ak", ak]);
        }
        if let Some(ak) = env_ak {
            c.env("CSM_AK", ak);
        }
        let o = c.output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out} {err}");
        assert!(
            err.contains("warning: an access key id (--ak or CSM_AK) without a secret key"),
            "{err}"
        );
    }
}

#[test]
fn out_of_range_timeout_backoff_and_retries_are_usage_errors() {
    let env = Env::new();
    let f = env.write("u.csv", ONE);
    for (flag, value) in [
        ("--timeout", "18446744073709551615"),
        ("--timeout", "0"),
        ("--timeout", "3601"),
        ("--backoff-ms", "18446744073709551615"),
        ("--backoff-ms", "0"),
        ("--retries", "101"),
        ("--batch", "99"),
        ("--batch", "1001"),
    ] {
        let o = csm(env.dir())
            .args(["usage", "upload", f.to_str().unwrap(), "--journal"])
            .arg(&env.journal)
            .arg("--key-file")
            .arg(&env.key)
            .args(["--endpoint", "http://127.0.0.1:1", flag, value])
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {out} {err}");
        assert!(err.contains(flag) && !err.contains("panicked"), "{err}");
    }
    assert!(!env.journal.exists());
}

#[test]
fn a_jsonl_key_given_twice_is_an_error_naming_the_line() {
    let env = Env::new();
    let f = env.write(
        "u.jsonl",
        "{\"instance_id\":\"i-1\",\"begin_time\":\"20260110T090000Z\",\"end_time\":\"20260110T100000Z\",\"usage_value\":\"1\",\"metering_sn\":\"a\"}\n\
         {\"instance_id\":\"i-2\",\"begin_time\":\"20260110T090000Z\",\"end_time\":\"20260110T100000Z\",\"usage_value\":\"1\",\"usage_value\":\"900\",\"metering_sn\":\"b\"}\n",
    );
    let o = env.usage(&["validate", f.to_str().unwrap()], None);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out} {err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("u.jsonl:2: field \"usage_value\" appears twice"),
        "{all}"
    );
    assert!(!env.journal.exists() || count(&env.journal, "SELECT count(*) FROM records") == 0);
}

#[test]
fn record_time_must_lie_between_end_time_and_now() {
    let env = Env::new();
    let f = env.write(
        "u.csv",
        "instance_id,begin_time,end_time,usage_value,metering_sn,record_time\n\
         i-1,20260110T090000Z,20260110T100000Z,1,a,20260110T100000Z\n\
         i-2,20260110T090000Z,20260110T100000Z,1,b,20260110T095900Z\n\
         i-3,20260110T090000Z,20260110T100000Z,1,c,20260111T000000Z\n",
    );
    let o = env.usage(&["validate", f.to_str().unwrap()], None);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out} {err}");
    let all = format!("{out}{err}");
    assert!(
        !all.lines()
            .any(|l| l.contains("u.csv:2:") && l.contains("record_time")),
        "{all}"
    );
    assert!(all.contains("2 bad line(s)"), "{all}");
    assert!(
        all.contains("u.csv:3:") && all.contains("record_time 20260110T095900Z is before end_time"),
        "{all}"
    );
    assert!(
        all.contains("u.csv:4:") && all.contains("record_time 20260111T000000Z is in the future"),
        "{all}"
    );
    assert!(all.contains("end_time <= record_time <= now"), "{all}");
}

#[test]
fn uploading_a_file_whose_records_were_rejected_exits_5_even_when_nothing_is_sent() {
    let env = Env::new();
    let f = env.write("u.csv", ONE);
    let fs = f.to_str().unwrap();
    {
        let server = env.market(&["partial-rejects=1"]);
        let o = env.usage(&["upload", fs], Some(&server));
        assert_eq!(o.status.code(), Some(5), "{:?}", text(&o));
    }
    let server = env.market(&[]);
    let o = env.usage(&["upload", fs], Some(&server));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{out} {err}");
    assert!(out.contains("already rejected"), "{out}");
    assert!(
        err.contains("rejected by an earlier run (not sent again, so exit 5)"),
        "{err}"
    );
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 0);
}

#[test]
fn the_stand_in_refuses_unknown_faults_and_bad_numbers_at_start() {
    let env = Env::new();
    for (fault, rule) in [
        ("drop-after-stor", "unknown fault"),
        ("5xx=x", "N must be a whole number"),
        ("partial-rejects=0", "N must be a whole number >= 1"),
        ("license-internal-error=3", "takes no number"),
    ] {
        let mut child = csm(env.dir())
            .args([
                "serve",
                "marketplace",
                "--listen",
                "127.0.0.1:0",
                "--key-file",
            ])
            .arg(&env.key)
            .args(["--fault", fault])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: a stand-in that accepted the fault would serve forever.
        for _ in 0..100 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
        }
        let o = child.wait_with_output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{fault}: {out} {err}");
        assert!(
            err.contains("--fault") && err.contains(fault) && err.contains(rule),
            "{err}"
        );
        assert!(err.contains("drop-after-store[=N]"), "{err}");
        assert!(err.contains("license-internal-error"), "{err}");
    }
    // Known faults still start (and are answered as before).
    let server = env.market(&["slow=0", "license-internal-error", "batch-limit=100"]);
    assert!(server.url.starts_with("http://127.0.0.1:"));
}

#[test]
fn uploading_a_file_again_sends_its_records_after_a_later_file_took_them_over() {
    for env in envs("uploading_a_file_again_sends_its_records") {
        let all = csv_records(4, true);
        let lines: Vec<&str> = all.lines().collect();
        let a = env.write("a.csv", &(lines[..3].join("\n") + "\n"));
        let b = env.write("b.csv", &all);
        journal_pending(&env, a.to_str().unwrap());
        journal_pending(&env, b.to_str().unwrap());
        let server = env.market(&[]);
        let o = env.usage(&["upload", a.to_str().unwrap()], Some(&server));
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE metering_sn IN ('sn-000000', 'sn-000001')"
        ),
        2
    );
        assert_eq!(
            jcount(
                &env.journal,
                "SELECT count(*) FROM records WHERE state = 'accepted' \
             AND metering_sn IN ('sn-000000', 'sn-000001')"
            ),
            2
        );
    }
}

#[test]
fn export_refuses_to_write_over_the_journal_or_its_files() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(3, true));
    journal_pending(&env, f.to_str().unwrap());
    let before = dump(&env.journal);
    let j = env.journal.to_str().unwrap().to_string();
    let dotted = env
        .dir()
        .join(".")
        .join("journal.sqlite")
        .to_str()
        .unwrap()
        .to_string();
    for out in [j.clone(), dotted, format!("{j}-wal"), format!("{j}.lock")] {
        let o = env.usage(&["export", "--state", "pending", "--out", &out], None);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}: {err}");
        assert!(err.contains("--out") && err.contains(&out), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(dump(&env.journal), before);
    }
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'pending'"
        ),
        3
    );
}

/// Runs `csm usage <args>` with its stdout a pipe whose reading end is already closed.
fn with_closed_stdout(env: &Env, args: &[&str], server: Option<&Server>) -> (Option<i32>, String) {
    let mut c = csm(env.dir());
    c.arg("usage").args(args).arg("--journal").arg(&env.journal);
    if let Some(s) = server {
        c.arg("--key-file")
            .arg(&env.key)
            .args(["--endpoint", &s.url, "--backoff-ms", "1"]);
    }
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    (o.status.code(), text(&o).1)
}

#[test]
fn a_closed_stdout_neither_panics_nor_stops_the_upload() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(5, true));
    let fs = f.to_str().unwrap();
    for args in [vec!["validate", fs], vec!["upload", fs, "--dry-run"]] {
        let (code, err) = with_closed_stdout(&env, &args, None);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let server = env.market(&[]);
    let (code, err) = with_closed_stdout(&env, &["upload", fs], Some(&server));
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 5);
    let (code, err) = with_closed_stdout(&env, &["status"], None);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_database_that_is_not_a_journal_is_refused_and_left_unchanged() {
    let env = Env::new();
    let other = env.path("other.db");
    {
        let c = open(&other);
        c.execute_batch("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('keep');")
            .unwrap();
    }
    let bytes = std::fs::read(&other).unwrap();
    let f = env.write("u.csv", &csv_records(3, true));
    let fs = f.to_str().unwrap();
    let out = env.path("out.csv");
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let key = env.key.to_str().unwrap();
    let runs: [Vec<&str>; 5] = [
        vec!["status"],
        vec![
            "export",
            "--state",
            "pending",
            "--out",
            out.to_str().unwrap(),
        ],
        vec!["validate", fs],
        vec!["upload", fs, "--dry-run"],
        vec!["upload", fs, "--endpoint", &endpoint, "--key-file", key],
    ];
    for args in runs {
        let o = csm(env.dir())
            .arg("usage")
            .args(&args)
            .arg("--journal")
            .arg(&other)
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains("--journal") && err.contains("schema_version"),
            "{err}"
        );
        // One error line (after the destination, which upload names first).
        let lines = err.lines().filter(|l| !l.starts_with("usage records "));
        assert_eq!(lines.count(), 1, "{err}");
        assert_eq!(std::fs::read(&other).unwrap(), bytes, "{args:?}");
        assert!(!env.path("other.db-wal").exists(), "{args:?}");
    }
}

#[test]
fn validate_dry_run_status_and_export_only_read_the_journal() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(3, true));
    let fs = f.to_str().unwrap();
    journal_pending(&env, fs);
    let before = dump(&env.journal);
    // Another process holds the journal's write lock: readers must not need it.
    let writer = open(&env.journal);
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let o = env.usage(&["validate", fs, "--json"], None);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["already_journaled_unsent"], 3);
    // It says what it compared with.
    assert_eq!(v["journal_read"], true, "{v}");
    assert!(
        v["journal"].as_str().unwrap().ends_with("journal.sqlite"),
        "{v}"
    );
    let o = env.usage(&["upload", fs, "--dry-run", "--json"], None);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // As every upload report: the counts under `import`.
    assert_eq!(v["dry_run"], true);
    assert_eq!(
        (
            v["import"]["already_journaled_unsent"].as_u64(),
            v["import"]["new"].as_u64()
        ),
        (Some(3), Some(0))
    );
    // A line that clashes with a journaled period is still found.
    let clash = csv_records(1, true).replace("sn-000000", "sn-other");
    let c = env.write("clash.csv", &clash);
    let o = env.usage(&["upload", c.to_str().unwrap(), "--dry-run"], None);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("period"), "{:?}", text(&o));
    let o = env.usage(&["status", "--json"], None);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let out = env.path("p.csv");
    let o = env.usage(
        &[
            "export",
            "--state",
            "pending",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 4);
    writer.execute_batch("ROLLBACK").unwrap();
    drop(writer);
    assert_eq!(dump(&env.journal), before);
}

#[test]
fn records_waiting_out_a_backoff_stay_pending_until_their_attempt_leaves() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(3, true));
    // Nothing listens: the first attempt cannot connect; the retry waits 15 to 30 s.
    let mut child = csm(env.dir())
        .args(["usage", "upload", f.to_str().unwrap(), "--journal"])
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&env.key)
        .args(["--endpoint", &format!("http://127.0.0.1:{}", free_port())])
        .args(["--retries", "1", "--backoff-ms", "30000", "-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while try_count(
        &env.journal,
        "SELECT count(*) FROM batches WHERE verdict = 'refused'",
    )
    .unwrap_or(0)
        == 0
    {
        assert!(t0.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    // Killed during the pause: the retry was neither journaled nor signed.
    assert_eq!(count(&env.journal, "SELECT count(*) FROM batches"), 1);
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'pending' AND maybe_delivered = 0"
        ),
        3
    );
    // A replay after the kill does not take them for maybe delivered.
    let server = env.market(&[]);
    let o = env.usage(&["replay", "--json"], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE maybe_delivered = 1"
        ),
        0
    );
}

#[test]
fn a_maybe_delivered_record_past_21_days_is_not_rejected_unsent() {
    let env = Env::new();
    let f = env.write(
        "u.csv",
        "instance_id,begin_time,end_time,usage_value,metering_sn\n\
         i-1,20251221T100000Z,20251221T110000Z,1,sn-old\n",
    );
    // A 500: no definite answer, the marketplace may hold it.
    let o = upload_to(&env, f.to_str().unwrap(), &answering(500, 1));
    assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
    let server = env.market_with(Some(LATER), &[]);
    let o = env
        .send_cmd(&["replay"], &server.url)
        .env("CSM_NOW", LATER)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{:?}", text(&o));
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_requests"), 0);
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'sent' AND maybe_delivered = 1"
        ),
        1
    );
}

#[test]
fn long_unknown_names_are_shortened_and_derived_sn_clashes_name_the_period_rule() {
    let env = Env::new();
    let long = "x".repeat(60_000);
    let csv = env.write(
        "h.csv",
        &format!("instance_id,begin_time,end_time,usage_value,{long}\ni-1,20260110T090000Z,20260110T100000Z,1,a\n"),
    );
    let jsonl = env.write(
        "h.jsonl",
        &format!("{{\"instance_id\":\"i-1\",\"begin_time\":\"20260110T090000Z\",\"end_time\":\"20260110T100000Z\",\"usage_value\":1,\"{long}\":\"a\"}}\n"),
    );
    let jsonl_num = env.write(
        "n.jsonl",
        &format!("{{\"instance_id\":\"i-1\",\"begin_time\":\"20260110T090000Z\",\"end_time\":\"20260110T100000Z\",\"usage_value\":1,\"{long}\":2}}\n"),
    );
    // A long key given twice (half as long, so the line fits): refused as repeated, and
    // shown shortened too.
    let half = "y".repeat(30_000);
    let jsonl_twice = env.write(
        "t.jsonl",
        &format!("{{\"instance_id\":\"i-1\",\"{half}\":\"a\",\"{half}\":\"b\"}}\n"),
    );
    for (f, says) in [
        (csv, "60000 characters"),
        (jsonl, "60000 characters"),
        (jsonl_num, "60000 characters"),
        (jsonl_twice, "30000 characters) appears twice"),
    ] {
        let o = env.usage(&["validate", f.to_str().unwrap()], None);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{}", &err[..err.len().min(300)]);
        assert!(
            out.len() + err.len() < 2000,
            "{} bytes",
            out.len() + err.len()
        );
    }
    // No metering_sn column: two rows of one instance and period.
    let dup = env.write(
        "d.csv",
        "instance_id,begin_time,end_time,usage_value\n\
         i-1,20260110T090000Z,20260110T100000Z,1\n\
         i-1,20260110T090000Z,20260110T100000Z,2\n",
    );
    let o = env.usage(&["validate", dup.to_str().unwrap()], None);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("period") && err.contains("line 2"),
        "{out}{err}"
    );
    assert!(!err.contains("metering_sn \"csm-"), "{err}");
    // Same against the journal.
    let one = env.write(
        "one.csv",
        "instance_id,begin_time,end_time,usage_value\ni-1,20260110T090000Z,20260110T100000Z,1\n",
    );
    journal_pending(&env, one.to_str().unwrap());
    let two = env.write(
        "two.csv",
        "instance_id,begin_time,end_time,usage_value\ni-1,20260110T090000Z,20260110T100000Z,5\n",
    );
    let o = env.usage(&["upload", two.to_str().unwrap(), "--dry-run"], None);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("period") && err.contains("one.csv"),
        "{out}{err}"
    );
    assert!(!err.contains("metering_sn \"csm-"), "{err}");
}

#[test]
fn batch_is_range_checked_even_for_a_dry_run() {
    let env = Env::new();
    let f = env.write("u.csv", ONE);
    let o = env.usage(
        &["upload", f.to_str().unwrap(), "--dry-run", "--batch", "5"],
        None,
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out} {err}");
    assert!(
        err.contains("--batch") && err.contains("100..=1000"),
        "{err}"
    );
    assert!(!env.journal.exists());
}

/// `csm usage resolve ... --journal J` as the seller `seller-li`.
fn resolve(env: &Env, args: &[&str]) -> std::process::Output {
    csm(env.dir())
        .env("USER", "seller-li")
        .args(["usage", "resolve"])
        .args(args)
        .arg("--journal")
        .arg(&env.journal)
        .output()
        .unwrap()
}

/// The dead end after `drop-after-store` + `partial-rejects` (the fix fits neither under
/// the old metering_sn nor under a new one), the way out (`resolve --abandon`), and the
/// corrected record accepted by a real stand-in under a new metering_sn.
#[test]
fn a_dead_end_rejected_record_is_abandoned_and_its_fix_uploaded_under_a_new_sn() {
    let env = Env::new();
    let head = "instance_id,begin_time,end_time,usage_value,metering_sn\n";
    let first = env.write(
        "u.csv",
        &format!("{head}i-1,20260110T090000Z,20260110T100000Z,1,sn-a\n"),
    );
    {
        let server = env.market(&["drop-after-store=2", "partial-rejects=1"]);
        let o = env.usage(&["upload", first.to_str().unwrap()], Some(&server));
        assert_eq!(o.status.code(), Some(5), "{:?}", text(&o));
    }
    let server = env.market(&[]);
    let same_sn = env.write(
        "same.csv",
        &format!("{head}i-1,20260110T090000Z,20260110T100000Z,2,sn-a\n"),
    );
    let new_sn = env.write(
        "new.csv",
        &format!("{head}i-1,20260110T090000Z,20260110T100000Z,2,sn-a2\n"),
    );
    for (f, says) in [(&same_sn, "may already be held"), (&new_sn, "period")] {
        let o = env.usage(&["upload", f.to_str().unwrap()], Some(&server));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out} {err}");
        assert!(err.contains(says), "{err}");
        assert!(
            err.contains("`csm usage resolve sn-a --abandon --reason TEXT`"),
            "{err}"
        );
    }

    // Refused: no --reason, a blank one, an unknown metering_sn; the journal is unchanged.
    let before = dump(&env.journal);
    for (args, says) in [
        (vec!["sn-a", "--abandon"], "--reason"),
        (vec!["sn-a", "--reason", "x"], "--abandon"),
        (
            vec!["sn-a", "--abandon", "--reason", "  "],
            "--reason: empty or only spaces",
        ),
        (vec!["sn-zz", "--abandon", "--reason", "x"], "\"sn-zz\""),
    ] {
        let o = resolve(&env, &args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {out} {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let o = resolve(&env, &["sn-zz", "--abandon", "--reason", "x"]);
    let (_, err) = text(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(dump(&env.journal), before);

    let reason = "not in 话单管理 on 2026-01-10";
    let o = resolve(&env, &["sn-a", "--abandon", "--reason", reason]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    assert!(
        out.contains("sn-a abandoned (was rejected 012, maybe delivered) by seller-li"),
        "{out}"
    );
    assert!(out.contains("new metering_sn"), "{out}");

    // Under its old metering_sn the fix is still refused; under a new one it goes through.
    let o = env.usage(&["upload", same_sn.to_str().unwrap()], Some(&server));
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("abandoned"), "{:?}", text(&o));
    let o = env.usage(&["upload", new_sn.to_str().unwrap()], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE metering_sn = 'sn-a2' AND usage_value = '2'"
        ),
        1
    );
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 1);
    // The original file again: the abandoned record is counted, not sent.
    let o = env.usage(
        &["upload", first.to_str().unwrap(), "--json"],
        Some(&server),
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["import"]["already_abandoned"], 1, "{v}");
    let o = env.usage(&["replay"], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 1);

    // An accepted record cannot be abandoned.
    let o = resolve(&env, &["sn-a2", "--abandon", "--reason", "x"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("\"sn-a2\"") && err.contains("accepted"),
        "{err}"
    );

    // The audit trail: status and export show who, when and why.
    let o = env.usage(&["status"], None);
    let (out, _) = text(&o);
    assert!(
        out.contains("abandoned") && out.contains("seller-li"),
        "{out}"
    );
    assert!(out.contains(reason), "{out}");
    let o = env.usage(&["status", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["counts"]["abandoned"], 1, "{v}");
    assert_eq!(v["abandoned"][0]["metering_sn"], "sn-a", "{v}");
    assert_eq!(v["abandoned"][0]["abandoned_by"], "seller-li", "{v}");
    assert_eq!(v["abandoned"][0]["abandoned_at"], "20260110T123000Z", "{v}");
    let out_file = env.path("abandoned.csv");
    let o = env.usage(
        &[
            "export",
            "--state",
            "abandoned",
            "--out",
            out_file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let exported = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        exported.starts_with(
            "instance_id,begin_time,end_time,usage_value,metering_sn,relate_pkg_instance,\
             record_time,state,result_code,result_msg,maybe_delivered,abandoned_at,abandoned_by,\
             abandon_reason\n"
        ),
        "{exported}"
    );
    assert!(
        exported.contains(",sn-a,,20260110T123000Z,abandoned,012,")
            && exported.contains(&format!(",yes,20260110T123000Z,seller-li,{reason}")),
        "{exported}"
    );
}

/// A CSV saved by Chinese Excel (GB18030) with Chinese text in instance_id.
fn gb18030_csv(env: &Env) -> std::path::PathBuf {
    let text = "instance_id,begin_time,end_time,usage_value,metering_sn\r\n\
                实例-华东一号,20260110T090000Z,20260110T100000Z,1.5,sn-cn\r\n";
    let (bytes, _, unmappable) = encoding_rs::GB18030.encode(text);
    assert!(!unmappable);
    let p = env.path("excel.csv");
    std::fs::write(&p, &bytes).unwrap();
    p
}

#[test]
fn a_gb18030_file_is_refused_with_a_hint_and_read_with_encoding_gb18030() {
    let env = Env::new();
    let f = gb18030_csv(&env);
    let f = f.to_str().unwrap();
    for cmd in [&["validate", f][..], &["upload", f, "--dry-run"]] {
        let o = env.usage(cmd, None);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {out} {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.contains("excel.csv")
                && last.contains("line 2")
                && last.contains("not valid UTF-8")
                && last.contains("GB18030")
                && last.contains("--encoding gb18030"),
            "{cmd:?}: {err}"
        );
    }
    assert!(!env.journal.exists());
    for name in ["gb18030", "gbk", "GBK"] {
        let o = env.usage(&["validate", f, "--encoding", name], None);
        assert_eq!(o.status.code(), Some(0), "{name}: {:?}", text(&o));
    }
    let server = env.market(&[]);
    let o = env.usage(&["upload", f, "--encoding", "gb18030"], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE instance_id = '实例-华东一号' \
             AND usage_value = '1.5'"
        ),
        1
    );
    let o = env.usage(&["validate", f, "--encoding", "latin1"], None);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    // The reverse slip: UTF-8 read as GB18030 would be billed as other characters.
    let utf8 = env.write(
        "utf8.csv",
        "instance_id,begin_time,end_time,usage_value\n实例-9,20260110T100000Z,20260110T110000Z,1\n",
    );
    let o = env.usage(
        &["upload", utf8.to_str().unwrap(), "--encoding", "gb18030"],
        Some(&server),
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out} {err}");
    assert!(
        err.contains("is UTF-8 text") && err.contains("drop --encoding"),
        "{err}"
    );
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE instance_id LIKE '%-9'"
        ),
        0
    );
}

/// 11 data lines (one the reader cannot split, nine that break a rule, one good): the
/// counts say 11 read, and every line is in exactly one of the others.
#[test]
fn validate_counts_every_data_line_once() {
    let env = Env::new();
    let mut t = String::from(
        "instance_id,begin_time,end_time,usage_value\n\
         i1,20260110T100000Z,20260110T110000Z,1\n\n",
    );
    for i in 2..=10 {
        t.push_str(&format!("i{i},bad,20260110T110000Z,1\n"));
    }
    t.push_str("i11,a,b\n");
    let f = env.write("eleven.csv", &t);
    let o = env.usage(&["validate", f.to_str().unwrap(), "--json"], None);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&v["records"], &v["bad"], &v["new"], &v["errors"]),
        (&11.into(), &10.into(), &1.into(), &10.into()),
        "{v}"
    );
    let o = env.usage(&["validate", f.to_str().unwrap()], None);
    let (out, _) = text(&o);
    let row = |name: &str| {
        out.lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("{name}: {out}"))
            .split_whitespace()
            .filter_map(|w| w.parse::<u64>().ok())
            .next()
            .unwrap()
    };
    assert_eq!((row("read"), row("bad"), row("new")), (11, 10, 1), "{out}");
}

/// `csm usage ARGS --journal J` as the user `uid` (through util-linux `setpriv`).
#[cfg(target_os = "linux")]
fn usage_as(env: &Env, uid: u32, args: &[&str], extra: &[&str]) -> std::process::Output {
    let mut c = crate::common::user(std::process::Command::new("setpriv"), env.dir());
    let id = uid.to_string();
    c.args(["--reuid", &id, "--regid", &id, "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_csm"))
        .arg("usage")
        .args(args)
        .arg("--journal")
        .arg(&env.journal)
        .args(extra)
        .env("CSM_NOW", NOW);
    c.output().unwrap()
}

/// A read as another user than the journal's owner (a monitoring account) makes the -wal and
/// -shm files as that user: the read says so, and the owner's next write names them. Needs
/// root, to act as two users; skipped otherwise (said on stderr).
#[cfg(target_os = "linux")]
#[test]
fn a_read_as_another_user_is_warned_of_and_named_at_the_owners_write() {
    use std::os::unix::fs::{chown, PermissionsExt};
    let root = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        eprintln!("skipped: needs root to act as two users");
        return;
    }
    let (owner, reader) = (1001, 65534);
    let env = Env::new();
    let server = env.market(&[]);
    let first = env.write("first.csv", &csv_records(3, true));
    let o = env.upload_cmd(&first, &server.url).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    // The journal and its directory as a seller's service account would have them.
    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    for entry in std::fs::read_dir(env.dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.to_string_lossy().contains("journal.sqlite") {
            chown(&p, Some(owner), Some(owner)).unwrap();
        }
    }
    let o = usage_as(&env, reader, &["status"], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let (_, stderr) = text(&o);
    assert!(
        stderr.contains("-wal and ")
            && stderr.contains("-shm cannot be written by the journal's owner"),
        "{stderr}"
    );
    let second = env.write("second.csv", &csv_records(3, true).replace(".5,", ".25,"));
    let key = env.key.to_str().unwrap().to_string();
    let o = usage_as(
        &env,
        owner,
        &["upload", second.to_str().unwrap()],
        &["--key-file", &key, "--endpoint", &server.url, "--yes"],
    );
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "cannot be written by the journal's owner, left by a read as another user: chown them"
        ),
        "{stderr}"
    );
}
