//! `csm usage` end to end: real csm processes against a real `csm serve marketplace`,
//! journal and marketplace state read back from their SQLite files.

use crate::usage_common;

use std::time::Duration;
use usage_common::*;

const GOOD: &str = "i-1,20260110T100000Z,20260110T110000Z,2.5\n";
const HEAD: &str = "instance_id,begin_time,end_time,usage_value\n";
const GOOD_JSON: &str = r#"{"instance_id":"i-1","begin_time":"20260110T100000Z","end_time":"20260110T110000Z","usage_value":2.5}"#;

/// Runs `c` with `input` on its standard input (a pipe, read once).
fn with_stdin(c: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_first_upload_from_a_pipe_is_read_once() {
    let env = Env::new();
    let server = env.market(&[]);
    let o = with_stdin(
        &mut env.send_cmd(
            &["upload", "/dev/stdin", "--format", "csv", "-q"],
            &server.url,
        ),
        format!("{HEAD}{GOOD}").as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 1);
    // `-` is standard input too; errors name it stdin.
    let o = with_stdin(
        &mut env.send_cmd(&["upload", "-", "--format", "csv"], &server.url),
        format!("{HEAD}i-2,20260110T100000Z,yesterday,1\n").as_bytes(),
    );
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("stdin:2: "), "{:?}", text(&o));
    // The records and the key cannot both come on standard input: refused before either
    // is read (the key would have swallowed the records).
    let o = with_stdin(
        csm(env.dir()).args([
            "usage",
            "upload",
            "-",
            "--key-file",
            "-",
            "--endpoint",
            &server.url,
        ]),
        format!("{HEAD}{GOOD}").as_bytes(),
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out} {err}");
    assert!(
        err.contains("--key-file -: standard input is taken by the usage file already"),
        "{err}"
    );
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn a_refused_first_upload_leaves_no_journal_behind() {
    let env = Env::new();
    let server = env.market(&[]);
    let bad = env.write(
        "bad.csv",
        &format!("{HEAD}{GOOD}i-2,20260110T100000Z,yesterday,1\n"),
    );
    let o = env.usage(&["upload", bad.to_str().unwrap()], Some(&server));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out} {err}");
    assert!(err.contains("nothing was journaled"), "{err}");
    let mut lock = env.journal.clone().into_os_string();
    lock.push(".lock");
    assert!(!env.journal.exists(), "the journal was created");
    assert!(
        !std::path::Path::new(&lock).exists(),
        "the lock was created"
    );
    // The same from a pipe, which is read once.
    let o = with_stdin(
        &mut env.send_cmd(&["upload", "-"], &server.url),
        &std::fs::read(&bad).unwrap(),
    );
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(!env.journal.exists(), "the journal was created from a pipe");
    assert!(!std::path::Path::new(&lock).exists());
    // A good file then creates it as usual.
    let good = env.write("good.csv", &format!("{HEAD}{GOOD}"));
    let o = env.usage(&["upload", good.to_str().unwrap(), "-q"], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(env.journal.exists());
}

#[test]
fn bad_input_corpus_names_the_line_and_leaves_the_journal_unchanged() {
    let env = Env::new();
    let server = env.market(&[]);
    // A journal with history, so that "unchanged" means something.
    let seed = env.write("seed.csv", &csv_records(150, true));
    let o = env.usage(&["upload", seed.to_str().unwrap(), "-q"], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let before = dump(&env.journal);
    let held = count(&env.market, "SELECT count(*) FROM usage_records");

    let long = format!(
        "i-2,20260110T100000Z,20260110T110000Z,{}\n",
        "9".repeat(10 << 20)
    );
    let mut bad_utf8 = format!("{HEAD}{GOOD}").into_bytes();
    bad_utf8.extend_from_slice(b"i-\xff\xfe,20260110T100000Z,20260110T110000Z,1\n");
    // (file name, content, line, what the message must say)
    let cases: Vec<(&str, Vec<u8>, u64, &str)> = vec![
        ("quote.csv", format!("{HEAD}{GOOD}\"i-2,20260110T100000Z,20260110T110000Z,1\n"), 3, "quoted field not closed"),
        ("json.jsonl", format!("{GOOD_JSON}\n{{\"instance_id\": \n"), 2, "not valid JSON"),
        ("array.jsonl", format!("{GOOD_JSON}\n[1,2]\n"), 2, "not a JSON object"),
        ("missing_col.csv", format!("{HEAD}{GOOD}i-2,20260110T100000Z,1\n"), 3, "3 columns, the header has 4"),
        ("extra_col.csv", format!("{HEAD}{GOOD}i-2,20260110T100000Z,20260110T110000Z,1,x\n"), 3, "5 columns"),
        ("no_value_header.csv", "instance_id,begin_time,end_time\ni,a,b\n".to_string(), 1, "usage_value"),
        ("extra_header.csv", "instance_id,begin_time,end_time,usage_value,colour\n".to_string(), 1, "\"colour\""),
        ("extra_field.jsonl", format!("{GOOD_JSON}\n{{\"instance_id\":\"i-2\",\"begin_time\":\"20260110T100000Z\",\"end_time\":\"20260110T110000Z\",\"usage_value\":\"1\",\"unit\":\"h\"}}\n"), 2, "\"unit\""),
        ("missing_field.jsonl", "{\"instance_id\":\"i-2\",\"begin_time\":\"20260110T100000Z\",\"end_time\":\"20260110T110000Z\"}\n".to_string(), 1, "usage_value"),
        ("bad_time.csv", format!("{HEAD}{GOOD}i-2,20261301T000000Z,20260110T110000Z,1\n"), 3, "begin_time \"20261301T000000Z\": not a time"),
        ("bad_time2.csv", format!("{HEAD}{GOOD}i-2,20260110T100000Z,yesterday,1\n"), 3, "end_time \"yesterday\""),
        ("future.csv", format!("{HEAD}{GOOD}i-2,20260110T120000Z,20260110T140000Z,1\n"), 3, "in the future"),
        ("reversed.csv", format!("{HEAD}{GOOD}i-2,20260110T110000Z,20260110T100000Z,1\n"), 3, "after end_time"),
        ("old.csv", format!("{HEAD}{GOOD}i-2,20251201T100000Z,20251201T110000Z,1\n"), 3, "21 days"),
        ("negative.csv", format!("{HEAD}{GOOD}i-2,20260110T100000Z,20260110T110000Z,-3\n"), 3, "negative"),
        ("zero.csv", format!("{HEAD}{GOOD}i-2,20260110T100000Z,20260110T110000Z,0.000\n"), 3, "zero"),
        ("decimals.csv", format!("{HEAD}{GOOD}i-2,20260110T100000Z,20260110T110000Z,1.23456\n"), 3, "5 decimals"),
        ("huge.csv", format!("{HEAD}{GOOD}i-2,20260110T100000Z,20260110T110000Z,123456789012345678901234567890\n"), 3, "too large"),
        ("exponent.jsonl", format!("{GOOD_JSON}\n{{\"instance_id\":\"i-2\",\"begin_time\":\"20260110T100000Z\",\"end_time\":\"20260110T110000Z\",\"usage_value\":1e30}}\n"), 2, "not a plain decimal"),
        ("dup_sn.csv", format!("{HEAD}{}", "i-1,20260110T100000Z,20260110T110000Z,1\n").replace(HEAD, "instance_id,begin_time,end_time,usage_value,metering_sn\n").replace(",1\n", ",1,s-1\n") + "i-2,20260110T100000Z,20260110T110000Z,1,s-1\n", 3, "duplicates line 2 of this file"),
        ("dup_journal.csv", "instance_id,begin_time,end_time,usage_value,metering_sn\ninst-0000,20260110T103000Z,20260110T113000Z,3,other-sn\n".to_string(), 2, "period"),
        ("long.csv", format!("{HEAD}{GOOD}{long}"), 3, "bytes long"),
        ("utf8.csv", String::new(), 3, "not valid UTF-8"),
    ]
    .into_iter()
    .map(|(n, c, l, w)| {
        let bytes = if n == "utf8.csv" { bad_utf8.clone() } else { c.into_bytes() };
        (n, bytes, l, w)
    })
    .collect();
    for (name, content, line, what) in cases {
        let p = env.path(name);
        std::fs::write(&p, &content).unwrap();
        let f = p.to_str().unwrap();
        let o = env.usage(&["upload", f], Some(&server));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {out} {err}");
        let at = format!("{f}:{line}: ");
        assert!(
            err.contains(&at) && err.contains(what),
            "{name}: expected {at:?} and {what:?} in: {err}"
        );
        assert!(err.contains("nothing was journaled"), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(
            err.len() < 4096,
            "{name}: the error repeats the input: {} bytes",
            err.len()
        );
        assert_eq!(dump(&env.journal), before, "{name}: the journal changed");
        // validate reports the same line on stdout, with the same exit code.
        let o = env.usage(&["validate", f], None);
        let (out, _) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}");
        assert!(out.contains(&at), "{name}: {out}");
    }
    // With --json each line names the field it breaks a rule of, when it is one field's.
    for (name, field) in [
        ("bad_time2.csv", serde_json::json!("end_time")),
        ("negative.csv", serde_json::json!("usage_value")),
        ("future.csv", serde_json::json!("end_time")),
        ("dup_sn.csv", serde_json::Value::Null),
    ] {
        let f = env.path(name);
        let o = env.usage(&["validate", "--json", f.to_str().unwrap()], None);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let first = &v["error_lines"][0];
        assert_eq!(first["field"], field, "{name}: {v}");
        assert!(first["message"].as_str().is_some(), "{name}: {v}");
    }
    assert_eq!(dump(&env.journal), before);
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        held
    );
}

#[test]
fn upload_then_again_is_idempotent_and_status_export_report_it() {
    let env = Env::new();
    let server = env.market(&[]);
    let f = env.write("u.jsonl", &{
        // JSONL with RFC 3339 times (converted) and numbers as values.
        let mut s = String::new();
        for i in 0..1500 {
            let h = i % 100;
            s.push_str(&format!(
                "{{\"instance_id\":\"j-{}\",\"begin_time\":\"2026-01-0{}T{:02}:00:00+08:00\",\"end_time\":\"2026-01-0{}T{:02}:59:59+08:00\",\"usage_value\":{}.25}}\n",
                i / 100,
                5 + h / 24,
                h % 24,
                5 + h / 24,
                h % 24,
                i % 5 + 1
            ));
        }
        s
    });
    let fs = f.to_str().unwrap();
    let o = env.usage(&["upload", fs, "--json", "--batch", "500"], Some(&server));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["accepted"], 1500);
    assert_eq!(v["requests"], 3);
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        1500
    );
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_requests"), 3);
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE usage_value_type = 'number'"
        ),
        1500
    );
    // Converted to the API's UTC form; values sent as JSON numbers and stored as given.
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE begin_time = '20260104T160000Z'
             AND end_time = '20260104T165959Z'"
        ),
        15
    );

    // Again: nothing new, nothing sent.
    let o = env.usage(&["upload", fs, "--json"], Some(&server));
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["requests"], 0);
    assert_eq!(v["import"]["already_accepted"], 1500);
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_requests"), 3);

    let o = env.usage(&["status", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["counts"]["accepted"], 1500);
    assert_eq!(v["counts"]["pending"], 0);
    assert!(v["oldest_unsent"].is_null());
    let o = env.usage(&["status"], None);
    let (out, _) = text(&o);
    assert!(out.contains("accepted") && out.contains("1500"), "{out}");
    assert!(
        out.contains("UTC"),
        "the deadline assumption is printed: {out}"
    );

    let out_file = env.path("acc.csv");
    let o = env.usage(
        &[
            "export",
            "--state",
            "accepted",
            "--out",
            out_file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    let exported = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(exported.lines().count(), 1501);
    let o = env.usage(&["export", "--state", "lost", "--out", "x.csv"], None);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o).1;
    assert!(
        err.contains("'lost'")
            && err.contains("--state")
            && err.contains("pending, sent, accepted, rejected"),
        "{err}"
    );

    // Upload dry run: counts, journals nothing.
    let before = dump(&env.journal);
    let g = env.write("new.csv", &csv_records(120, false));
    let o = env.usage(&["upload", g.to_str().unwrap(), "--dry-run"], None);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("120 records would be sent"));
    assert_eq!(dump(&env.journal), before);
}

#[test]
fn rejected_records_exit_5_then_export_fix_upload_delivers_them() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(1000, false));
    let fs = f.to_str().unwrap();
    let held;
    {
        let server = env.market(&["partial-rejects=3"]);
        let o = env.usage(&["upload", fs], Some(&server));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(5), "{out} {err}");
        assert!(out.contains("012"), "per-code summary: {out}");
        assert!(out.contains("rejected for good"), "{out}");
        held = count(&env.market, "SELECT count(*) FROM usage_records");
        assert!(held > 0 && held < 1000, "{held}");
        // Again with --json: no table says why it is exit 5, so stderr does.
        let o = env.usage(&["--json", "upload", fs], Some(&server));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(5), "{out} {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["exit_code"], 5, "{v}");
        assert!(
            err.contains(&format!("exit 5: 0 records rejected for good, 0 records to retry later, {} records rejected by an earlier run", 1000 - held)),
            "{err}"
        );
    }
    let rejected = count(
        &env.journal,
        "SELECT count(*) FROM records WHERE state = 'rejected'",
    );
    assert_eq!(rejected, 1000 - held);
    let rej = env.path("rejected.csv");
    let o = env.usage(
        &[
            "export",
            "--state",
            "rejected",
            "--out",
            rej.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    let text_rej = std::fs::read_to_string(&rej).unwrap();
    assert_eq!(text_rej.lines().count() as i64, rejected + 1);
    assert!(text_rej.contains("012"));
    // "Fixed": the values are doubled; the metering_sn column keeps each record's id.
    let fixed: String = text_rej
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l}\n")
            } else {
                format!("{}\n", l.replacen(".5,csm-", ".75,csm-", 1))
            }
        })
        .collect();
    let fixed_p = env.write("fixed.csv", &fixed);
    let server = env.market(&[]);
    let o = env.usage(
        &["upload", fixed_p.to_str().unwrap(), "--json"],
        Some(&server),
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["import"]["replaced"], rejected);
    assert_eq!(v["accepted"], rejected);
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        1000
    );
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE usage_value LIKE '%.75'"
        ),
        rejected
    );
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'accepted'"
        ),
        1000
    );
}

#[test]
fn a_marketplace_that_keeps_failing_is_not_called_unreachable() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(20, true));
    // Every request answered 500.
    let server = env.market(&["5xx=1"]);
    let o = env
        .send_cmd(
            &["upload", f.to_str().unwrap(), "--retries", "2"],
            &server.url,
        )
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out} {err}");
    assert!(
        err.contains("the marketplace kept failing: ")
            && err.contains("after 3 attempts: MKT.0999: HTTP 500"),
        "{err}"
    );
    assert!(!err.contains("could not reach"), "{err}");
}

#[test]
fn a_proxy_that_refuses_is_named() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(3, true));
    let port = common::closed_port();
    let o = env
        .send_cmd(
            &["upload", f.to_str().unwrap(), "--retries", "0", "--yes"],
            "https://203.0.113.1",
        )
        .env("https_proxy", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out} {err}");
    assert!(
        err.contains(&format!(
            "proxy 127.0.0.1:{port} from https_proxy: could not connect"
        )),
        "{err}"
    );
}

#[test]
fn unreachable_marketplace_exits_4_and_replay_delivers_later() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(300, true));
    let fs = f.to_str().unwrap();
    // A port with nothing listening.
    let port = common::closed_port();
    let mut c = csm(env.dir());
    let o = c
        .args(["usage", "upload", fs, "--journal"])
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&env.key)
        .args(["--endpoint", &format!("http://127.0.0.1:{port}")])
        .args(["--retries", "2", "--backoff-ms", "1"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out} {err}");
    assert!(err.contains("could not reach the marketplace"), "{err}");
    // In plain words: what failed and why, not the HTTP library's layers.
    assert!(
        err.contains("after 3 attempts: network: could not connect: "),
        "{err}"
    );
    assert!(!err.contains("client error"), "{err}");
    assert!(err.contains("300 records wait in the journal"), "{err}");
    // Never connected: the records are known not to be delivered.
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'pending'"
        ),
        300
    );
    let o = env.usage(&["status", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["counts"]["pending"], 300);
    assert_eq!(v["oldest_unsent"]["instance_id"], "inst-0000");
    assert!(v["unsent_by_deadline"]["overdue"].as_u64().unwrap() > 0);
    assert!(!v["last_errors"].as_array().unwrap().is_empty());
    // Each error names the instance and period, as 话单管理 finds the record.
    let e = &v["last_errors"][0];
    assert!(
        e["instance_id"].as_str().unwrap().starts_with("inst-")
            && e["begin_time"].is_string()
            && e["end_time"].is_string(),
        "{e}"
    );

    // Every answer a 500: retried, then exit 4; nothing stored; records maybe delivered.
    {
        let server = env.market(&["5xx=1"]);
        let o = env.usage(&["replay", "--retries", "2"], Some(&server));
        assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
        assert_eq!(count(&env.market, "SELECT count(*) FROM usage_requests"), 3);
        assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 0);
    }
    // Every second answer a 500: the retries get through.
    let server = env.market(&["5xx"]);
    let o = env.usage(&["replay", "--batch", "100", "--json"], Some(&server));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["accepted"], 300);
    let failed = v["failed_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "MKT.0999")
        .expect("500s counted");
    // Requests, not records: three batches of 100, every second answer a 500.
    assert!(failed["count"].as_u64().unwrap() >= 2);
    assert!(failed["count"].as_u64().unwrap() < v["requests"].as_u64().unwrap());
    let records: u64 = v["by_code"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(records, 300, "by_code counts records only: {out}");
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        300
    );
}

#[test]
fn slow_answers_time_out_and_the_replay_counts_them_once() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(200, false));
    {
        let server = env.market(&["slow=2500"]);
        let o = env.usage(
            &[
                "upload",
                f.to_str().unwrap(),
                "--timeout",
                "1",
                "--retries",
                "0",
            ],
            Some(&server),
        );
        assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
        assert!(text(&o).1.contains("timeout"), "{:?}", text(&o));
    }
    // The slow marketplace stored the batch before answering late.
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        200
    );
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'sent' AND maybe_delivered = 1"
        ),
        200
    );
    let server = env.market(&[]);
    let o = env.usage(&["replay"], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        200
    );
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'accepted' AND last_code = '005'"
        ),
        200
    );
}

#[test]
fn batch_limit_of_100_is_met_by_smaller_batches() {
    let env = Env::new();
    let server = env.market(&["batch-limit=100"]);
    let f = env.write("u.csv", &csv_records(450, false));
    let o = env.usage(&["upload", f.to_str().unwrap()], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    // Said, with the flag that avoids the refused first request.
    assert!(
        text(&o)
            .1
            .contains("batches of 100 went instead; --batch 100 sends that size"),
        "{:?}",
        text(&o)
    );
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        450
    );
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_requests WHERE error_code = 'MKT.9003'"
        ),
        1
    );
    let o = env.usage(
        &["upload", f.to_str().unwrap(), "--batch", "99"],
        Some(&server),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o).1;
    assert!(
        err.contains("--batch") && err.contains("99") && err.contains("100..=1000"),
        "{err}"
    );
}

#[test]
fn a_wrong_key_is_refused_with_mkt_0102_and_no_secret_is_printed() {
    let env = Env::new();
    let server = env.market(&[]);
    let f = env.write("u.csv", &csv_records(50, false));
    let wrong = env.path("wrong");
    std::fs::write(&wrong, "the-wrong-usage-key-8d1c").unwrap();
    let mut outputs = Vec::new();
    let mut c = csm(env.dir());
    let o = c
        .args(["usage", "upload", f.to_str().unwrap(), "--journal"])
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&wrong)
        .args(["--endpoint", &server.url])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out} {err}");
    assert!(err.contains("MKT.0102"), "{err}");
    // The hint names the key, the fix for a refused signature (not the endpoint).
    assert!(err.contains("hint: check --key-file"), "{err}");
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 0);
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'pending'"
        ),
        50
    );
    outputs.push(out + &err);
    for args in [
        vec!["upload", f.to_str().unwrap(), "--json"],
        vec!["replay"],
        vec!["status", "--json"],
        vec!["validate", f.to_str().unwrap()],
        vec!["upload", "--help"],
    ] {
        let o = env.usage(&args, Some(&server));
        let (out, err) = text(&o);
        outputs.push(out + &err);
    }
    for o in &outputs {
        assert!(
            !o.contains(KEY) && !o.contains("the-wrong-usage-key"),
            "key printed: {o}"
        );
    }
    // The journal itself holds no key either.
    let bytes = std::fs::read(&env.journal).unwrap();
    assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
}

#[test]
fn journal_problems_exit_3() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(120, false));
    // Not a database.
    std::fs::write(&env.journal, vec![b'x'; 4096]).unwrap();
    let o = env.usage(&["upload", f.to_str().unwrap(), "--dry-run"], None);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out} {err}");
    assert!(err.contains("journal"), "{err}");
    std::fs::remove_file(&env.journal).unwrap();

    // A second sender on the same journal is refused while the first runs.
    let server = env.market(&["slow=1500"]);
    let mut first = csm(env.dir())
        .args(["usage", "upload", f.to_str().unwrap(), "--journal"])
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&env.key)
        .args(["--endpoint", &server.url, "-q"])
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while try_count(
        &env.journal,
        "SELECT count(*) FROM records WHERE state = 'sent'",
    )
    .unwrap_or(0)
        == 0
    {
        assert!(t0.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = env.usage(&["replay"], Some(&server));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out} {err}");
    assert!(err.contains("in use"), "{err}");
    assert!(first.wait().unwrap().success());
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        120
    );
}

#[test]
fn api_gateway_signing_on_top_is_checked_by_the_stand_in() {
    let env = Env::new();
    let sk = env.write("sk", "apig-secret-key-MFyfvK41ba2gi");
    let wrong_sk = env.write("sk2", "apig-secret-key-wrong-000000");
    let server = env.market_with(None, &["--sk-file", sk.to_str().unwrap()]);
    let f = env.write("u.csv", &csv_records(150, false));
    let fs = f.to_str().unwrap();
    let o = env.usage(
        &[
            "upload",
            fs,
            "--apig",
            "--ak",
            "QTWAOYTTINDUT2QVKYUC",
            "--sk-file",
            wrong_sk.to_str().unwrap(),
        ],
        Some(&server),
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out} {err}");
    assert!(err.contains("APIGW.0301"), "{err}");
    assert!(!(out.clone() + &err).contains("apig-secret-key"));
    let o = env.usage(
        &[
            "replay",
            "--apig",
            "--ak",
            "QTWAOYTTINDUT2QVKYUC",
            "--sk-file",
            sk.to_str().unwrap(),
        ],
        Some(&server),
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        150
    );
    let o = env.usage(&["replay", "--ak", "X"], Some(&server));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn values_as_strings_and_a_jsonl_export_round_trip() {
    let env = Env::new();
    let server = env.market(&[]);
    let f = env.write("u.csv", &csv_records(130, true));
    let o = env.usage(
        &[
            "upload",
            f.to_str().unwrap(),
            "--usage-value",
            "string",
            "--batch",
            "100",
        ],
        Some(&server),
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        130
    );
    // --usage-value string reached the marketplace as JSON strings.
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE usage_value_type = 'string'"
        ),
        130
    );
    // Explicit metering_sn values are kept as given.
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE metering_sn LIKE 'sn-%'"
        ),
        130
    );
    let out = env.path("acc.jsonl");
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
    assert_eq!(o.status.code(), Some(0));
    let text_out = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text_out.lines().count(), 130);
    let first: serde_json::Value = serde_json::from_str(text_out.lines().next().unwrap()).unwrap();
    assert_eq!(first["state"], "accepted");
    assert_eq!(first["metering_sn"], "sn-000000");
    // The export reads back as input: the same records, all already accepted.
    let o = env.usage(&["upload", out.to_str().unwrap(), "--json"], Some(&server));
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout} {err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["import"]["already_accepted"], 130);
    assert_eq!(v["requests"], 0);
}

#[test]
fn production_is_never_the_silent_default_and_the_destination_is_named() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(3, true));
    let fs = f.to_str().unwrap();
    let key = env.key.to_str().unwrap();
    // No --endpoint, no profile, no terminal: refused before anything is journaled.
    let o = env.usage(&["upload", fs, "--key-file", key], None);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out} {err}");
    assert!(
        err.contains("https://mkt.myhuaweicloud.com") && err.contains("--yes"),
        "{err}"
    );
    assert!(!env.journal.exists(), "nothing may be journaled");
    // --help names the default.
    let o = env.usage(&["upload", "--help"], None);
    assert!(text(&o).0.contains("https://mkt.myhuaweicloud.com"));
    // A dry run names where the records would go, and sends nothing.
    let o = env.usage(&["upload", fs, "--dry-run"], None);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    assert!(
        err.contains("would go to https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/isv/usage-data"),
        "{err}"
    );
    // A destination chosen on purpose is named before anything is sent, also in JSON.
    let server = env.market(&[]);
    let o = env.usage(&["upload", fs, "--json"], Some(&server));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    assert!(
        err.contains(&format!("usage records go to {}/api/", server.url)),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["destination"].as_str().unwrap().starts_with(&server.url));
    // With a journal in place, replay too refuses production taken by default.
    let o = env.usage(&["replay", "--key-file", key], None);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out} {err}");
    assert!(
        err.contains("production marketplace https://mkt.myhuaweicloud.com")
            && err.contains("--yes"),
        "{err}"
    );
}

#[test]
fn no_journal_is_a_configuration_error() {
    let env = Env::new();
    for args in [
        vec!["status"],
        vec!["export", "--state", "pending", "--out", "x.csv"],
    ] {
        let o = env.usage(&args, None);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {out} {err}");
        assert!(err.contains("no journal there"), "{err}");
    }
}

#[test]
fn durations_read_alike_on_every_flag() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(3, true));
    let fs = f.to_str().unwrap();
    let o = env.usage(
        &[
            "upload",
            fs,
            "--dry-run",
            "--timeout",
            "2m",
            "--backoff-ms",
            "1s",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = env.usage(&["upload", fs, "--dry-run", "--timeout", "2h"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("\"2h\": must be between 1s and 1h"),
        "{:?}",
        text(&o)
    );
}

fn interrupt(child: &std::process::Child) {
    crate::common::signal(child.id(), "-INT");
}

/// Waits until the stand-in holds at least `n` records (bounded).
fn wait_for_stored(env: &Env, n: i64) {
    let start = std::time::Instant::now();
    while try_count(&env.market, "SELECT count(*) FROM usage_records").unwrap_or(0) < n {
        assert!(start.elapsed() < Duration::from_secs(60), "nothing stored");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_stops_starting_batches_settles_those_in_flight_and_replay_finishes() {
    let env = Env::new();
    // Every push answers after 300 ms: the upload is still running when Ctrl-C comes.
    let server = env.market(&["slow=300"]);
    let f = env.write("u.csv", &csv_records(3000, true));
    let up = csm(env.dir())
        .args(["usage", "upload", f.to_str().unwrap(), "--journal"])
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&env.key)
        .args(["--endpoint", &server.url, "--batch", "100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_stored(&env, 100);
    interrupt(&up);
    let o = up.wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(130), "{out} {err}");
    assert!(
        err.contains("interrupted") && err.contains("csm usage replay"),
        "{err}"
    );
    let held = count(&env.market, "SELECT count(*) FROM usage_records");
    assert!(held < 3000, "the upload ran to the end: {held}");
    // Nothing is left in flight: what was sent got its answer.
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'sent'"
        ),
        0
    );
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'accepted'"
        ),
        held
    );
    let o = env.usage(&["replay"], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        3000
    );
}

/// Stopped (a cancelled CI job's SIGTERM) while waiting to retry, with nothing in flight: the
/// run says it was interrupted (exit 130), not that all went well.
#[test]
fn a_stop_during_the_wait_before_a_retry_is_an_interruption() {
    let env = Env::new();
    // Nothing listens: every attempt fails at once, then waits 8 s before the next.
    let port = common::closed_port();
    let f = env.write("u.csv", &csv_records(5, true));
    let up = csm(env.dir())
        .args([
            "--json",
            "usage",
            "upload",
            f.to_str().unwrap(),
            "--journal",
        ])
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&env.key)
        .args(["--endpoint", &format!("http://127.0.0.1:{port}")])
        .args(["--retries", "5", "--backoff-ms", "8000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    crate::common::signal(up.id(), "-TERM");
    let o = up.wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(130), "{out} {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["interrupted"], true, "{v}");
    assert_eq!(v["exit_code"], 130, "{v}");
    assert_eq!(v["not_sent"], 5, "{v}");
}

/// A second Ctrl-C ends an upload at once with 130, a second SIGTERM (a CI runner's) with
/// 143, as the exit code tables of the README and docs/usage.md say.
#[test]
fn a_second_signal_stops_at_once() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let env = Env::new();
        // Answers take 20 s: only the second signal can end the run quickly.
        let server = env.market(&["slow=20000"]);
        let f = env.write("u.csv", &csv_records(300, true));
        let mut up = csm(env.dir())
            .args(["usage", "upload", f.to_str().unwrap(), "--journal"])
            .arg(&env.journal)
            .arg("--key-file")
            .arg(&env.key)
            .args(["--endpoint", &server.url, "--batch", "100", "-q"])
            .spawn()
            .unwrap();
        // The first batch is on its way once the journal marks it sent.
        let start = std::time::Instant::now();
        while try_count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'sent'",
        )
        .unwrap_or(0)
            == 0
        {
            assert!(start.elapsed() < Duration::from_secs(60), "nothing sent");
            std::thread::sleep(Duration::from_millis(20));
        }
        crate::common::signal(up.id(), signal);
        std::thread::sleep(Duration::from_millis(200));
        crate::common::signal(up.id(), signal);
        let status = up.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}");
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{signal}: waited for the slow answer"
        );
    }
    // Both exit codes of an interruption are in the usage docs' table.
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/usage.md")).unwrap();
    let table = docs
        .split("\n## Exit codes\n")
        .nth(1)
        .and_then(|t| t.split("\n\n").next())
        .unwrap();
    for code in ["130", "143"] {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("| {code} |"))),
            "{code} not in docs/usage.md's exit codes:\n{table}"
        );
    }
}

/// An empty file is read as no records (exit 0), with a warning that it may have been cut
/// short; a file with only its header is an hour without usage, and no warning.
#[test]
fn an_empty_file_is_warned_about_a_header_only_one_is_not() {
    let env = Env::new();
    let server = env.market(&[]);
    let empty = env.write("empty.csv", "");
    let header = env.write(
        "header.csv",
        "instance_id,begin_time,end_time,usage_value\n",
    );
    for (f, warned) in [(&empty, true), (&header, false)] {
        let f = f.to_str().unwrap();
        for o in [
            env.usage(&["validate", f], None),
            env.usage(&["upload", f], Some(&server)),
        ] {
            let (out, err) = text(&o);
            assert_eq!(o.status.code(), Some(0), "{f}: {out} {err}");
            assert_eq!(
                err.contains("is empty; was it written completely?"),
                warned,
                "{f}: {err}"
            );
        }
    }
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 0);
}

/// The stand-in's periodic faults fail the first attempt of every second batch: with two
/// requests in flight, the retry of a failed batch gets through (counted by request, it
/// came back on a failing number every time, and the upload ended exit 4 with most records
/// unsent). Every record is held once, and the retries are counted as requests.
#[test]
fn retries_get_through_a_marketplace_that_fails_every_second_batch() {
    for (fault, code) in [("5xx", "MKT.0999"), ("drop-after-store=2", "network")] {
        let env = Env::new();
        let f = env.write("u.csv", &csv_records(3000, true));
        let server = env.market(&[fault]);
        let o = env
            .send_cmd(
                &["upload", f.to_str().unwrap(), "--batch", "100", "--json"],
                &server.url,
            )
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{fault}: {out} {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["accepted"], 3000, "{fault}: {v}");
        // 30 batches, every second one failed once and sent again.
        assert_eq!(
            v["failed_attempts"],
            serde_json::json!([{"code": code, "count": 15}]),
            "{fault}: {v}"
        );
        assert_eq!(v["requests"], 45, "{fault}: {v}");
        assert_eq!(
            count(
                &env.market,
                "SELECT count(DISTINCT metering_sn) || '/' || count(*) = '3000/3000' FROM usage_records"
            ),
            1,
            "{fault}"
        );
        assert_eq!(
            count(
                &env.journal,
                "SELECT count(*) FROM records WHERE state = 'accepted'"
            ),
            3000,
            "{fault}"
        );
        if fault.starts_with("drop") {
            // The dropped batches were stored: their resend is answered "already held".
            assert_eq!(
                count(
                    &env.journal,
                    "SELECT count(*) FROM records WHERE last_code = '005'"
                ),
                1500
            );
        }
    }
}

/// A request the marketplace refused as a whole (MKT.9003, its batch then sent again in
/// batches of 100) is a failed attempt: `requests` is the answered ones plus these.
#[test]
fn a_batch_refused_as_too_large_is_a_failed_attempt() {
    let env = Env::new();
    let server = env.market(&["batch-limit"]);
    let f = env.write("u.csv", &csv_records(450, false));
    let o = env.usage(&["upload", f.to_str().unwrap(), "--json"], Some(&server));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["failed_attempts"],
        serde_json::json!([{"code": "MKT.9003", "count": 1}]),
        "{v}"
    );
    // One of 450 refused, then five of at most 100 answered.
    assert_eq!(v["requests"], 6, "{v}");
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_requests"), 6);
    // Said so without --json too.
    let env = Env::new();
    let server = env.market(&["batch-limit"]);
    let f = env.write("u.csv", &csv_records(450, false));
    let o = env.usage(&["upload", f.to_str().unwrap()], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o).0.contains(
            "1 of 6 requests not answered record by record (sent again or left for replay): \
             MKT.9003 (too many records in one request): 1"
        ),
        "{:?}",
        text(&o)
    );
}

/// JSONL: a key that is not a usage field is said first, whatever its value; a null
/// required field names it in `--json`; white space around an id is refused, naming the
/// field (never trimmed), around a time or a value dropped.
#[test]
fn jsonl_errors_name_the_field_and_ids_are_not_trimmed() {
    let env = Env::new();
    let rec = |extra: &str| {
        format!(
            r#"{{"instance_id":"i-1","begin_time":"20260110T100000Z","end_time":"20260110T110000Z"{extra}}}"#
        )
    };
    let lines = [
        rec(r#","usage_value":1,"foo":1"#),
        rec(r#","usage_value":1,"foo":"x""#),
        rec(r#","usage_value":null"#),
        r#"{"instance_id":"i-5 ","begin_time":"20260110T100000Z","end_time":"20260110T110000Z","usage_value":1}"#.to_string(),
        rec(r#","usage_value":1,"metering_sn":" x ""#),
        rec(r#","usage_value":" 1","metering_sn":"sn-ok","record_time":" 20260110T120000Z""#),
    ];
    let f = env.write("u.jsonl", &(lines.join("\n") + "\n"));
    let o = env.usage(&["validate", f.to_str().unwrap(), "--json"], None);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out} {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<(u64, Option<&str>, &str)> = v["error_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["field"].as_str(),
                e["message"].as_str().unwrap(),
            )
        })
        .collect();
    let unknown = "field \"foo\" is not a usage field (expected some of instance_id, begin_time, \
                   end_time, usage_value, metering_sn, relate_pkg_instance, record_time)";
    assert_eq!(
        got,
        [
            (1, None, unknown),
            (2, None, unknown),
            (
                3,
                Some("usage_value"),
                "field \"usage_value\" is null (required: give a value)"
            ),
            (
                4,
                Some("instance_id"),
                "instance_id \"i-5 \": starts or ends with white space (csm never changes an id: remove it)"
            ),
            (
                5,
                Some("metering_sn"),
                "metering_sn \" x \": starts or ends with white space (csm never changes an id: remove it)"
            ),
        ]
    );
    assert_eq!(v["new"], 1, "{v}");
    // The good line's value and time were read without their spaces.
    let ok = env.write("ok.jsonl", &(lines[5].clone() + "\n"));
    let server = env.market(&[]);
    let o = env.usage(&["upload", ok.to_str().unwrap()], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE metering_sn = 'sn-ok' AND usage_value = '1' \
             AND record_time = '20260110T120000Z'"
        ),
        1
    );
}

/// Ctrl-C while the requests in flight get no answer in time: their records stay `sent`
/// (maybe delivered), and the message says so, with the records never sent, as the journal
/// holds them; a replay settles both.
#[test]
fn ctrl_c_says_which_records_are_left_sent_and_which_pending() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(1000, true));
    {
        // Every answer comes after the 1 s timeout.
        let server = env.market(&["slow=3000"]);
        let up = csm(env.dir())
            .args(["usage", "upload", f.to_str().unwrap(), "--journal"])
            .arg(&env.journal)
            .arg("--key-file")
            .arg(&env.key)
            .args([
                "--endpoint",
                &server.url,
                "--batch",
                "100",
                "--timeout",
                "1",
            ])
            .args(["--retries", "100", "-q"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while try_count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'sent'",
        )
        .unwrap_or(0)
            == 0
        {
            assert!(start.elapsed() < Duration::from_secs(60), "nothing sent");
            std::thread::sleep(Duration::from_millis(20));
        }
        interrupt(&up);
        let o = up.wait_with_output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(130), "{out} {err}");
        let n = |state: &str| {
            count(
                &env.journal,
                &format!("SELECT count(*) FROM records WHERE state = '{state}'"),
            )
        };
        let (pending, sent) = (n("pending"), n("sent"));
        assert!(sent > 0 && pending > 0, "{pending} {sent}");
        assert!(!err.contains("settled."), "{err}");
        assert!(
            err.contains(&format!(
                "for `csm usage replay`: {pending} records pending (not delivered), {sent} records sent without a definite answer (maybe delivered; the replay settles them)"
            )),
            "{err}"
        );
    }
    let server = env.market(&[]);
    let o = env.usage(&["replay"], Some(&server));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        count(&env.market, "SELECT count(*) FROM usage_records"),
        1000
    );
}

/// `status` says an error its records share once, with their number, and a dropped
/// connection once, not in the HTTP library's words again.
#[test]
fn status_shows_each_error_once_with_its_count() {
    let env = Env::new();
    let f = env.write("u.csv", &csv_records(250, true));
    {
        let server = env.market(&["drop-after-store=1"]);
        let o = env.usage(
            &[
                "upload",
                f.to_str().unwrap(),
                "--batch",
                "100",
                "--retries",
                "0",
            ],
            Some(&server),
        );
        assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
    }
    let dropped = "connection closed before the answer was whole";
    let o = env.usage(&["status", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors = v["last_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(
        (
            &errors[0]["count"],
            &errors[0]["code"],
            &errors[0]["message"],
            &errors[0]["state"]
        ),
        (
            &serde_json::json!(200),
            &serde_json::json!("network"),
            &serde_json::json!(dropped),
            &serde_json::json!("sent")
        ),
        "{v}"
    );
    let sent = count(
        &env.journal,
        "SELECT count(*) FROM records WHERE state = 'sent'",
    );
    assert_eq!(sent, 200);
    let o = env.usage(&["status"], None);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    assert_eq!(out.matches("network").count(), 1, "{out}");
    assert!(!out.contains("message completed"), "{out}");
}

/// Past the 21-day limit a record cannot be fixed: the hints say so instead of "fix, upload
/// again" or "a corrected record can now be uploaded".
#[test]
fn records_past_the_age_limit_are_not_said_to_be_fixable() {
    let env = Env::new();
    let f = env.write(
        "u.csv",
        "instance_id,begin_time,end_time,usage_value,metering_sn\n\
         i-1,20251221T100000Z,20251221T110000Z,1,old-1\n\
         i-2,20260110T100000Z,20260110T110000Z,1,new-1\n",
    );
    // Journaled while fresh, not delivered (nothing listens).
    let closed = format!("http://127.0.0.1:{}", common::closed_port());
    let o = env
        .send_cmd(&["upload", f.to_str().unwrap(), "--retries", "0"], &closed)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
    // Two days later old-1 is past the limit.
    let later = "2026-01-12T12:30:00Z";
    let server = env.market_with(Some(later), &[]);
    let o = env
        .send_cmd(&["replay"], &server.url)
        .env("CSM_NOW", later)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{out} {err}");
    assert!(
        out.contains(
            "1 record rejected with MKT.9004 (not sent): begin_time is more than 21 days old, \
             and past that limit the marketplace takes no record for the period, fixed or not"
        ),
        "{out}"
    );
    assert!(!out.contains("fix, upload again"), "{out}");
    let resolve = |sn: &str| {
        csm(env.dir())
            .env("CSM_NOW", later)
            .args(["usage", "resolve", sn, "--abandon", "--reason", "too late"])
            .arg("--journal")
            .arg(&env.journal)
            .output()
            .unwrap()
    };
    let o = resolve("old-1");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    assert!(
        out.contains("began more than 21 days ago: the marketplace takes no record for it any more, so no corrected record can be uploaded for it"),
        "{out}"
    );
    assert!(!out.contains("can now be uploaded"), "{out}");
}
