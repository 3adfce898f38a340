//! `csm usage agent`: real agent processes (pinned clock) against the real stand-in
//! marketplace: spool pickup, idempotent re-drops, HTTP ingest and its token, hours closing,
//! late events, catch-up, heartbeat zero, /metrics, /healthz and the stall alarm, SIGTERM.

use crate::usage_common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use usage_common::common::{announced_url, text};
use usage_common::*;

/// `csm usage agent` on the env's journal and key, sending to `endpoint`, clock at `now`.
fn agent(env: &Env, now: &str, endpoint: &str, args: &[&str]) -> Command {
    let mut c = csm(env.dir());
    c.env("CSM_NOW", now)
        .args(["usage", "agent", "--journal"])
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&env.key)
        .args(["--endpoint", endpoint, "--backoff-ms", "1"])
        .args(args);
    c
}

fn once(env: &Env, now: &str, endpoint: &str, args: &[&str]) -> (Output, Value) {
    let o = agent(env, now, endpoint, &[&["--once", "--json"], args].concat())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o, v)
}

fn spool(env: &Env) -> PathBuf {
    let d = env.path("spool");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn drop_file(dir: &Path, name: &str, body: &str) {
    // As a service should: write under a temporary name, then rename into the spool.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// The stand-in's records: (instance, begin, end, value, metering_sn), in arrival order.
fn market_records(db: &Path) -> Vec<(String, String, String, String, String)> {
    let c = open(db);
    let mut st = c
        .prepare("SELECT instance_id, begin_time, end_time, usage_value, metering_sn FROM usage_records ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn derived_sn(inst: &str, begin: &str, end: &str) -> String {
    csm::usage::record::derive_metering_sn(inst, begin, end, None)
}

#[test]
fn a_missing_spool_is_an_error_and_is_not_created() {
    let env = Env::new();
    let market = env.market(&[]);
    let typo = env.path("spoll");
    let (o, _) = once(&env, NOW, &market.url, &["--spool", typo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("spoll: no such directory (create it first"),
        "{}",
        text(&o)
    );
    assert!(!typo.exists());
    // A file where the directory should be.
    std::fs::write(&typo, "x").unwrap();
    let (o, _) = once(&env, NOW, &market.url, &["--spool", typo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("spoll: not a directory"), "{}", text(&o));
}

#[test]
fn spool_files_are_taken_in_whole_moved_and_a_redrop_counts_once() {
    let env = Env::new();
    let market = env.market(&[]);
    let dir = spool(&env);
    drop_file(
        &dir,
        "a.jsonl",
        "{\"instance_id\":\"i-1\",\"time\":\"20260110T100500Z\",\"value\":2}\n\
         {\"instance_id\":\"i-1\",\"time\":\"2026-01-10T18:40:00+08:00\",\"value\":\"3.5\"}\n\
         {\"instance_id\":\"i-2\",\"time\":\"20260110T111000Z\",\"value\":1,\"event_id\":\"e-2\"}\n",
    );
    drop_file(
        &dir,
        "b.csv",
        "instance_id,time,value,event_id\ni-1,20260110T105900Z,0.25,e-b1\n",
    );
    // One bad line: the whole file is refused, none of its events counted.
    drop_file(
        &dir,
        "bad.csv",
        "instance_id,time,value\ni-1,20260110T101500Z,100\ni-1,20260110T101600Z,-1\n",
    );
    drop_file(&dir, "notes.txt", "not events");
    let sp = dir.to_str().unwrap();
    let (o, v) = once(&env, NOW, &market.url, &["--spool", sp]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(v["spool"]["done"], serde_json::json!(["a.jsonl", "b.csv"]));
    assert_eq!(v["spool"]["events_new"], 4);
    assert!(dir.join("done/a.jsonl").exists() && dir.join("done/b.csv").exists());
    assert!(dir.join("failed/bad.csv").exists() && !dir.join("bad.csv").exists());
    let why = std::fs::read_to_string(dir.join("failed/bad.csv.error")).unwrap();
    assert!(
        why.starts_with("bad.csv:3: value \"-1\": negative"),
        "{why}"
    );
    assert!(std::fs::read_to_string(dir.join("failed/notes.txt.error"))
        .unwrap()
        .contains("not an event file"));
    // Both hours (10 and 11) ended more than 5 minutes before 12:30: closed and sent.
    assert_eq!(
        (v["hours_closed"].as_u64(), v["accepted"].as_u64()),
        (Some(2), Some(2))
    );
    let recs = market_records(&env.market);
    assert_eq!(
        recs,
        vec![
            (
                "i-1".into(),
                "20260110T100000Z".into(),
                "20260110T110000Z".into(),
                "5.75".into(),
                derived_sn("i-1", "20260110T100000Z", "20260110T110000Z")
            ),
            (
                "i-2".into(),
                "20260110T110000Z".into(),
                "20260110T120000Z".into(),
                "1".into(),
                derived_sn("i-2", "20260110T110000Z", "20260110T120000Z")
            ),
        ]
    );

    // The same file again (a crash between taking it in and moving it looks the same):
    // every event is a duplicate of itself, nothing changes.
    drop_file(
        &dir,
        "a.jsonl",
        &std::fs::read_to_string(dir.join("done/a.jsonl")).unwrap(),
    );
    let (o, v) = once(&env, NOW, &market.url, &["--spool", sp]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        (
            v["spool"]["events_new"].as_u64(),
            v["spool"]["events_duplicate"].as_u64()
        ),
        (Some(0), Some(3))
    );
    assert!(dir.join("done/a.jsonl.1").exists());
    assert_eq!(v["hours"]["reported"], 2);
    assert_eq!(market_records(&env.market).len(), 2);

    // A new event for a closed hour is late: refused, the file goes to failed/.
    drop_file(
        &dir,
        "late.jsonl",
        "{\"instance_id\":\"i-1\",\"time\":\"20260110T105000Z\",\"value\":9}\n",
    );
    let (o, v) = once(&env, NOW, &market.url, &["--spool", sp]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let why = std::fs::read_to_string(dir.join("failed/late.jsonl.error")).unwrap();
    assert!(
        why.contains("late, the hour 20260110T100000Z of instance \"i-1\" was closed"),
        "{why}"
    );
    assert_eq!(v["spool"]["failed"][0]["file"], "late.jsonl");
    assert_eq!(market_records(&env.market)[0].3, "5.75");
}

#[test]
fn an_hour_closes_at_its_end_plus_grace_with_the_chosen_aggregate() {
    let env = Env::new();
    let market = env.market_with(Some("2026-01-10T14:00:00Z"), &[]);
    let dir = spool(&env);
    let sp = dir.to_str().unwrap();
    drop_file(
        &dir,
        "e.csv",
        "instance_id,time,value\ni-9,20260110T121000Z,4\ni-9,20260110T125000Z,2\ni-9,20260110T123000Z,7\n",
    );
    let args = ["--spool", sp, "--aggregate", "last", "--grace", "10m"];
    // 12:00-13:00 stays open until 13:10.
    for now in ["2026-01-10T12:59:59Z", "2026-01-10T13:09:59Z"] {
        let (o, v) = once(&env, now, &market.url, &args);
        assert_eq!(o.status.code(), Some(0), "{now}: {}", text(&o));
        assert_eq!(v["hours"]["open"], 1, "{now}");
        assert_eq!(v["hours_closed"], 0, "{now}");
    }
    assert!(market_records(&env.market).is_empty());
    let (o, v) = once(&env, "2026-01-10T13:10:00Z", &market.url, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        (v["hours_closed"].as_u64(), v["accepted"].as_u64()),
        (Some(1), Some(1))
    );
    // last: the value of the latest event (12:50), not the last line of the file.
    assert_eq!(market_records(&env.market)[0].3, "2");
}

#[test]
fn catch_up_after_downtime_sends_oldest_first_and_heartbeat_zero_covers_quiet_hours() {
    let env = Env::new();
    let dir = spool(&env);
    let sp = dir.to_str().unwrap();
    drop_file(
        &dir,
        "e.jsonl",
        "{\"instance_id\":\"i-1\",\"time\":\"20260110T081500Z\",\"value\":1}\n\
         {\"instance_id\":\"i-1\",\"time\":\"20260110T091500Z\",\"value\":2}\n",
    );
    // 10:02: the 08 hour is due, the marketplace is down: it waits in the journal.
    let down = format!("http://127.0.0.1:{}", free_port());
    let (o, v) = once(
        &env,
        "2026-01-10T10:02:00Z",
        &down,
        &["--spool", sp, "--retries", "0"],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(
        (
            v["hours"]["journaled"].as_u64(),
            v["hours"]["open"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // Back at 12:30: the 09 hour closes too, both go, oldest first; 10 and 11 had no
    // events and are closed as zero (nothing sent for them).
    let market = env.market(&[]);
    let (o, v) = once(&env, NOW, &market.url, &["--spool", sp, "--heartbeat-zero"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["hours"]["reported"], 2);
    assert_eq!(v["hours"]["zero"], 2);
    let recs = market_records(&env.market);
    let begins: Vec<_> = recs.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(begins, ["20260110T080000Z", "20260110T090000Z"]);
    // A late event for a zero hour is refused like any closed hour's.
    drop_file(
        &dir,
        "late.jsonl",
        "{\"instance_id\":\"i-1\",\"time\":\"20260110T103000Z\",\"value\":1}\n",
    );
    let (o, _) = once(&env, NOW, &market.url, &["--spool", sp, "--heartbeat-zero"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(std::fs::read_to_string(dir.join("failed/late.jsonl.error"))
        .unwrap()
        .contains("(zero)"));
}

fn get(url: &str) -> (u16, String) {
    let r = reqwest::blocking::get(url).unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn post(url: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::blocking::Client::new()
        .post(format!("{url}/events"))
        .body(body.to_string());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().unwrap()).unwrap_or(Value::Null),
    )
}

/// Polls `f` until it holds (at most 60 s).
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not within 60 s: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric(body: &str, sample: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

const EVENTS: &str = "{\"instance_id\":\"i-1\",\"time\":\"20260110T101000Z\",\"value\":3,\"event_id\":\"h-1\"}\n\
                      {\"instance_id\":\"i-1\",\"time\":\"20260110T102000Z\",\"value\":4,\"event_id\":\"h-2\"}\n";

#[test]
fn http_ingest_metrics_alarm_recovery_and_sigterm() {
    let env = Env::new();
    let token = "agent-token-5d1c9e";
    std::fs::write(env.path("token"), format!("{token}\n")).unwrap();
    let touched = env.path("alarm-ran");
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let alarm_cmd = format!("echo \"$CSM_ALARM_REASON\" >> {}", touched.display());
    let mut child = agent(
        &env,
        NOW,
        &endpoint,
        &[
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            env.path("token").to_str().unwrap(),
            "--every",
            "1s",
            "--retries",
            "0",
            "--on-alarm",
            &alarm_cmd,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let url = announced_url(&mut child);

    // No token, a wrong one: 401, nothing taken; the token never appears in answers.
    for t in [None, Some("wrong")] {
        let (s, v) = post(&url, EVENTS, t);
        assert_eq!(s, 401, "{v}");
        assert!(!v.to_string().contains(token));
    }
    let (s, v) = post(&url, EVENTS, Some(token));
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(2)), "{v}");
    let (s, v) = post(&url, EVENTS, Some(token));
    assert_eq!(
        (s, v["duplicate"].as_u64(), v["accepted"].as_u64()),
        (200, Some(2), Some(0))
    );
    let (s, v) = post(
        &url,
        "{\"instance_id\":\"i-1\",\"time\":\"soon\",\"value\":1}\n",
        Some(token),
    );
    assert_eq!(s, 400);
    assert!(
        v["lines"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("time "),
        "{v}"
    );
    // A CSV file posted here is told where CSV goes.
    let (s, v) = post(
        &url,
        "instance_id,time,value\ni-1,20260110T101500Z,3\n",
        Some(token),
    );
    assert_eq!(s, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .ends_with("CSV files go in the --spool directory"),
        "{v}"
    );

    // 10:00-11:00 closes at the next cycle; the marketplace is down and 12:30 is 90 min
    // after the hour's end: the alarm goes on, the command runs once.
    // Red as soon as the hour is journaled; the send's failure is known when the cycle ends.
    let health = || {
        let (s, body) = get(&format!("{url}/healthz"));
        (s, serde_json::from_str::<Value>(&body).unwrap())
    };
    wait_until("/healthz red, with the cycle's problem", || {
        let (s, h) = health();
        s == 503 && !h["last_problem"].is_null()
    });
    let (_, h) = health();
    assert_eq!(h["status"], "red");
    assert!(
        h["reason"].as_str().unwrap().contains("not reported"),
        "{h}"
    );
    assert!(
        h["last_problem"]
            .as_str()
            .unwrap()
            .contains("could not reach"),
        "{h}"
    );
    wait_until("the alarm command ran", || touched.exists());
    let (s, m) = get(&format!("{url}/metrics"));
    assert_eq!(s, 200);
    assert_eq!(
        metric(
            &m,
            "csm_agent_events_total{source=\"http\",outcome=\"new\"}"
        ),
        Some(2),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "csm_agent_events_total{source=\"http\",outcome=\"duplicate\"}"
        ),
        Some(2)
    );
    assert_eq!(metric(&m, "csm_agent_hours{state=\"journaled\"}"), Some(1));
    assert_eq!(metric(&m, "csm_agent_records{state=\"pending\"}"), Some(1));
    assert_eq!(
        metric(&m, "csm_agent_oldest_unreported_hour_age_seconds"),
        Some(90 * 60)
    );
    assert_eq!(metric(&m, "csm_agent_last_push_timestamp_seconds"), Some(0));
    assert_eq!(metric(&m, "csm_agent_alarm"), Some(1));
    // A late event for the closed hour: 409.
    let (s, v) = post(
        &url,
        "{\"instance_id\":\"i-1\",\"time\":\"20260110T105900Z\",\"value\":1}\n",
        Some(token),
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["lines"][0]["late"], true);

    // The marketplace comes up where the agent sends: the hour is reported, green again.
    let mut mk = csm(env.dir());
    mk.args([
        "serve",
        "marketplace",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--key-file",
    ])
    .arg(&env.key)
    .arg("--state")
    .arg(&env.market);
    let _market = Server::start(&mut mk);
    wait_until("/healthz green", || get(&format!("{url}/healthz")).0 == 200);
    let (_, m) = get(&format!("{url}/metrics"));
    assert_eq!(
        metric(&m, "csm_agent_hours{state=\"reported\"}"),
        Some(1),
        "{m}"
    );
    assert_eq!(metric(&m, "csm_agent_alarm"), Some(0));
    let pushed = metric(&m, "csm_agent_last_push_timestamp_seconds").unwrap();
    assert_eq!(
        pushed, 1_768_048_200,
        "the pinned clock: 2026-01-10T12:30:00Z"
    );
    assert_eq!(market_records(&env.market)[0].3, "7");
    // The alarm ran once for its one episode.
    assert_eq!(
        std::fs::read_to_string(&touched).unwrap().lines().count(),
        1
    );

    // SIGTERM: the listener stops, the process exits 0.
    let status = stopped(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("csm agent: stopped"), "{err}");
    assert!(!err.contains(token), "the token is never printed");
}

#[test]
fn ingest_without_a_token_is_for_loopback_only() {
    let env = Env::new();
    let market = env.market(&[]);
    let mut child = agent(
        &env,
        NOW,
        &market.url,
        &["--listen", "127.0.0.1:0", "--every", "1s"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let url = announced_url(&mut child);
    let (s, v) = post(&url, EVENTS, None);
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(2)), "{v}");
    wait_until("the hour is reported", || {
        market_records(&env.market).len() == 1
    });
    let _ = child.kill();
    let _ = child.wait();
    // Any other address needs a token.
    let o = agent(&env, NOW, &market.url, &["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--listen 0.0.0.0:0: not a loopback address"),
        "{}",
        text(&o)
    );
}

#[test]
fn production_is_never_a_silent_default() {
    let env = Env::new();
    let o = csm(env.dir())
        .args(["--no-input", "usage", "agent", "--once", "--journal"])
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&env.key)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("production marketplace https://mkt.myhuaweicloud.com"),
        "{}",
        text(&o)
    );
    assert!(!env.journal.exists());
    assert!(!env.path("journal.sqlite.agent.sqlite").exists());
}

#[test]
fn while_an_upload_holds_the_journal_the_agent_sends_nothing_and_says_so() {
    let env = Env::new();
    let market = env.market(&[]);
    let dir = spool(&env);
    let sp = dir.to_str().unwrap();
    drop_file(
        &dir,
        "e.jsonl",
        "{\"instance_id\":\"i-1\",\"time\":\"20260110T101500Z\",\"value\":1}\n",
    );
    // The lock `usage upload` and `replay` take while they send.
    let lock = std::fs::File::create(env.path("journal.sqlite.lock")).unwrap();
    lock.lock().unwrap();
    let (o, v) = once(&env, NOW, &market.url, &["--spool", sp]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        v["journal_busy"].as_str().unwrap().contains("in use"),
        "{v}"
    );
    assert_eq!(
        (v["hours"]["closed"].as_u64(), v["to_send"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(market_records(&env.market).is_empty());
    lock.unlock().unwrap();
    let (o, v) = once(&env, NOW, &market.url, &["--spool", sp]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["hours"]["reported"], 1);
    assert_eq!(market_records(&env.market).len(), 1);
}

#[test]
fn an_answer_lost_after_the_marketplace_stored_the_records_is_retried_and_bills_once() {
    let env = Env::new();
    // The first push is stored, then its connection dropped: the agent cannot know.
    let market = env.market(&["drop-after-store"]);
    let dir = spool(&env);
    drop_file(
        &dir,
        "e.jsonl",
        "{\"instance_id\":\"i-1\",\"time\":\"20260110T101500Z\",\"value\":1}\n\
         {\"instance_id\":\"i-2\",\"time\":\"20260110T111500Z\",\"value\":2}\n",
    );
    let (o, v) = once(&env, NOW, &market.url, &["--spool", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        (v["accepted"].as_u64(), v["hours"]["reported"].as_u64()),
        (Some(2), Some(2))
    );
    // Sent twice under the same metering_sn, held once.
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_requests"), 2);
    assert_eq!(market_records(&env.market).len(), 2);
}

#[test]
fn a_postgres_journal_out_of_reach_is_named_without_its_password() {
    let env = Env::new();
    let url = "postgres://csm:s3cret-pw@127.0.0.1:1/usage";
    let run = |extra: &[&str]| {
        csm(env.dir())
            .args(["usage", "agent", "--once", "--journal", url])
            .arg("--key-file")
            .arg(&env.key)
            .args(["--endpoint", "http://127.0.0.1:1"])
            .args(extra)
            .output()
            .unwrap()
    };
    // Without --state the state is kept in the journal's database: nothing to reach.
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("postgres://csm:***@127.0.0.1:1/usage"),
        "{}",
        text(&o)
    );
    // --state names a file, never a URL (whose password would become a file name).
    let o = run(&["--state", url]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--state: a PostgreSQL URL"),
        "{}",
        text(&o)
    );
    for o in [run(&[]), run(&["--state", url])] {
        assert!(!text(&o).contains("s3cret-pw"), "{}", text(&o));
    }
    assert!(!env.dir().join("postgres:").exists());
}

/// Two agents on two hosts (two processes, two spools) share one PostgreSQL journal: the
/// events of one instance-hour are split between them and one is dropped on both; the
/// marketplace gets one record for that hour, the sum of every distinct event.
#[test]
fn two_agents_sharing_a_postgres_journal_report_each_hour_once_with_every_event() {
    let Some(url) = crate::usage_pg::database("two agents sharing a journal") else {
        return;
    };
    let mut env = Env::new();
    env.journal = PathBuf::from(&url);
    let market = env.market(&[]);
    let (a, b) = (env.path("spool-a"), env.path("spool-b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
    }
    let line = |id: &str, inst: &str, time: &str, v: &str| {
        format!("{{\"event_id\":\"{id}\",\"instance_id\":\"{inst}\",\"time\":\"{time}\",\"value\":\"{v}\"}}\n")
    };
    // i-1, 10:00-11:00: 1 + 2 + 4 (on both) + 8 + 16.
    drop_file(
        &a,
        "a.jsonl",
        &[
            line("e-1", "i-1", "20260110T100100Z", "1"),
            line("e-2", "i-1", "20260110T102000Z", "2"),
            line("e-both", "i-1", "20260110T103000Z", "4"),
        ]
        .concat(),
    );
    drop_file(
        &b,
        "b.jsonl",
        &[
            line("e-both", "i-1", "20260110T103000Z", "4"),
            line("e-3", "i-1", "20260110T104000Z", "8"),
            line("e-4", "i-1", "20260110T105900Z", "16"),
            line("e-5", "i-2", "20260110T105000Z", "0.5"),
        ]
        .concat(),
    );
    // Both at once: while the hour is open (10:59:30), then after it closed (12:30).
    let both = |now: &str| -> Vec<Value> {
        let kids: Vec<_> = [&a, &b]
            .iter()
            .map(|sp| {
                agent(&env, now, &market.url, &["--once", "--json", "--spool"])
                    .arg(sp)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        kids.into_iter()
            .map(|k| {
                let o = k.wait_with_output().unwrap();
                let v: Value = serde_json::from_slice(&o.stdout).unwrap();
                // Exit 5 only for the stall alarm: the clock jumps to 12:30 for hours that
                // ended at 11:00, and one agent may finish while the other still sends.
                let alarm_only = o.status.code() == Some(5) && v["alarm"].is_string();
                assert!(
                    o.status.code() == Some(0) || alarm_only,
                    "{now}: {}",
                    text(&o)
                );
                v
            })
            .collect()
    };
    let ingest = both("2026-01-10T10:59:30Z");
    let new: u64 = ingest
        .iter()
        .map(|v| v["spool"]["events_new"].as_u64().unwrap())
        .sum();
    let dup: u64 = ingest
        .iter()
        .map(|v| v["spool"]["events_duplicate"].as_u64().unwrap())
        .sum();
    assert_eq!((new, dup), (6, 1), "{ingest:?}");
    // An agent sees every hour, not only its own: the later of the two snapshots (each
    // taken after its own agent's ingest) comes after both ingests.
    let open = ingest
        .iter()
        .map(|v| v["hours"]["open"].as_u64().unwrap())
        .max();
    assert_eq!(open, Some(2), "{ingest:?}");
    let report = both(NOW);
    let closed: u64 = report
        .iter()
        .map(|v| v["hours_closed"].as_u64().unwrap())
        .sum();
    assert_eq!(closed, 2, "each hour is closed by one agent: {report:?}");
    let recs = market_records(&env.market);
    let i1: Vec<_> = recs.iter().filter(|r| r.0 == "i-1").collect();
    assert_eq!(i1.len(), 1, "{recs:?}");
    assert_eq!(
        (i1[0].1.as_str(), i1[0].3.as_str()),
        ("20260110T100000Z", "31")
    );
    assert_eq!(
        recs.iter()
            .filter(|r| r.0 == "i-2")
            .map(|r| r.3.as_str())
            .collect::<Vec<_>>(),
        vec!["0.5"]
    );
    // One record per hour in the journal too.
    assert_eq!(
        crate::usage_pg::jcount(&env.journal, "SELECT count(*) FROM records"),
        2
    );

    // Afterwards, either agent: an event for the closed hour is late (whoever closed it),
    // a re-drop of one the other agent took is a duplicate.
    drop_file(
        &a,
        "late.jsonl",
        &line("e-6", "i-1", "20260110T105800Z", "32"),
    );
    drop_file(
        &b,
        "again.jsonl",
        &line("e-1", "i-1", "20260110T100100Z", "1"),
    );
    let (o, v) = once(&env, NOW, &market.url, &["--spool", a.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let why = std::fs::read_to_string(a.join("failed/late.jsonl.error")).unwrap();
    assert!(why.contains("late, the hour 20260110T100000Z"), "{why}");
    assert_eq!(v["hours"]["reported"], 2, "{v}");
    let (o, v) = once(&env, NOW, &market.url, &["--spool", b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["spool"]["events_duplicate"], 1, "{v}");
    assert_eq!(market_records(&env.market).len(), 2);
}

/// The sample systemd unit and container files pass the agent only flags it has (they are
/// not run here: a drift check, so that a renamed flag cannot leave them broken).
#[test]
fn the_deploy_samples_use_only_flags_the_agent_has() {
    let dir = tempfile::tempdir().unwrap();
    let help = text(
        &csm(dir.path())
            .args(["usage", "agent", "--help"])
            .output()
            .unwrap(),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for (file, command) in [
        ("csm-usage-agent.service", "ExecStart="),
        ("Dockerfile", "ENTRYPOINT"),
    ] {
        let sample = std::fs::read_to_string(root.join(file)).unwrap();
        // The command only: from its keyword to the first line not continued by `\`.
        let start = sample.find(command).unwrap_or_else(|| panic!("{file}"));
        let mut line = String::new();
        for l in sample[start..].lines() {
            line.push_str(l);
            if !l.trim_end().ends_with('\\') {
                break;
            }
        }
        assert!(line.contains("usage agent") || line.contains("\"usage\", \"agent\""));
        let flags: Vec<&str> = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .collect();
        assert!(flags.len() >= 5, "{file}: {flags:?}");
        for f in flags {
            assert!(
                help.contains(&format!("{f} ")) || help.contains(&format!("{f}\n")),
                "{file}: {f} is not a flag of `csm usage agent`"
            );
        }
    }
}

#[test]
fn a_rejected_hour_abandoned_with_resolve_no_longer_holds_the_alarm() {
    let env = Env::new();
    // Every record refused (012), as for an instance that is not pay-per-use.
    let market = env.market_with(
        Some("2026-01-10T14:30:00Z"),
        &["--fault", "partial-rejects=1"],
    );
    let dir = spool(&env);
    let sp = dir.to_str().unwrap();
    drop_file(
        &dir,
        "e.csv",
        "instance_id,time,value\ni-9,20260110T121000Z,4\n",
    );
    let (o, v) = once(&env, "2026-01-10T13:10:00Z", &market.url, &["--spool", sp]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(v["hours"]["rejected"], 1, "{v:#}");
    // An hour later the rejected hour raises the alarm.
    let (o, v) = once(&env, "2026-01-10T14:30:00Z", &market.url, &["--spool", sp]);
    assert_eq!(v["hours"]["rejected"], 1, "{v:#}");
    assert!(!v["alarm"].is_null() && v["alarm"] != false, "{v:#}");
    // A cron job that checks the exit code sees the alarm.
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    // A person settles it (billed under a fixed record, or not at all).
    let sn = derived_sn("i-9", "20260110T120000Z", "20260110T130000Z");
    let o = csm(env.dir())
        .env("CSM_NOW", "2026-01-10T14:31:00Z")
        .args([
            "usage",
            "resolve",
            &sn,
            "--abandon",
            "--reason",
            "not pay-per-use",
        ])
        .arg("--journal")
        .arg(&env.journal)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (o, v) = once(&env, "2026-01-10T14:32:00Z", &market.url, &["--spool", sp]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        (
            v["hours"]["rejected"].as_u64(),
            v["hours"]["reported"].as_u64()
        ),
        (Some(0), Some(1)),
        "{v:#}"
    );
    assert!(v["alarm"].is_null() || v["alarm"] == false, "{v:#}");
}

#[test]
fn a_running_agent_with_json_prints_json_lines() {
    use std::io::BufRead;
    let env = Env::new();
    let market = env.market(&[]);
    let mut child = agent(
        &env,
        NOW,
        &market.url,
        &["--json", "--listen", "127.0.0.1:0", "--every", "1s"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let next = || -> Value {
        let l = rx.recv_timeout(Duration::from_secs(20)).expect("a line");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
    };
    let first = next();
    let url = first["listening"]
        .as_str()
        .expect("the address")
        .to_string();
    assert!(first["destination"]
        .as_str()
        .unwrap()
        .starts_with(&market.url));
    let (s, _) = post(&url, EVENTS, None);
    assert_eq!(s, 200);
    // A line per cycle that did something, until the hour (10:00-11:00) is accepted.
    let mut accepted = 0;
    while accepted == 0 {
        let v = next();
        assert!(v["at"].is_string() && v["hours"].is_object(), "{v}");
        accepted = v["accepted"].as_u64().unwrap_or(0);
    }
    assert_eq!(market_records(&env.market).len(), 1);
    let _ = child.kill();
    let _ = child.wait();
}

/// Two events at the largest value each are one hour's sum no record can carry: the second
/// is refused at intake (HTTP and spool alike), so that what was taken in is billed.
#[test]
fn an_event_that_would_take_its_hour_past_what_a_record_carries_is_refused_at_intake() {
    let env = Env::new();
    let market = env.market(&[]);
    let dir = spool(&env);
    let sp = dir.to_str().unwrap();
    let ev = |id: &str, time: &str, v: &str| {
        format!(
            "{{\"instance_id\":\"i-1\",\"time\":\"{time}\",\"value\":{v},\"event_id\":\"{id}\"}}\n"
        )
    };
    // 11:30 pinned: the 10 o'clock hour is open.
    let mut child = agent(
        &env,
        "2026-01-10T11:30:00Z",
        &market.url,
        &["--listen", "127.0.0.1:0", "--every", "1s", "--spool", sp],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let url = announced_url(&mut child);
    let (s, v) = post(&url, &ev("a", "20260110T101500Z", "99999999"), None);
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(1)), "{v}");
    let (s, v) = post(&url, &ev("b", "20260110T102000Z", "99999999"), None);
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["lines"][0]["kind"], "over_limit", "{v}");
    assert_eq!(v["lines"][0]["line"], 1, "{v}");
    assert_eq!(
        v["lines"][0]["message"],
        "value \"99999999\": the hour 20260110T100000Z of instance \"i-1\" would sum to 199999998, more than one usage record carries (usage_value at most 99999999.9999); refused so that no usage taken in goes unbilled"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("1 over the hour's limit"),
        "{v}"
    );
    // Up to the limit exactly is fine.
    let (s, v) = post(&url, &ev("c", "20260110T102500Z", "0.9999"), None);
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(1)), "{v}");
    // The spool refuses it the same way, naming the line.
    drop_file(
        &dir,
        "more.jsonl",
        &[
            ev("d", "20260110T103000Z", "0"),
            ev("e", "20260110T103100Z", "0.0001"),
        ]
        .concat(),
    );
    wait_until("the spool file is refused", || {
        dir.join("failed/more.jsonl.error").exists()
    });
    let why = std::fs::read_to_string(dir.join("failed/more.jsonl.error")).unwrap();
    assert!(
        why.starts_with("more.jsonl:2: value \"0.0001\": the hour 20260110T100000Z of instance \"i-1\" would sum to 100000000, more than one usage record carries"),
        "{why}"
    );
    assert_eq!(why.lines().count(), 1, "{why}");
    let _ = child.kill();
    let _ = child.wait();

    // The hour closes with what was taken in, and the marketplace bills it.
    let (o, v) = once(&env, NOW, &market.url, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["failed_hours"], serde_json::json!([]), "{v}");
    assert_eq!(v["hours"]["reported"], 1, "{v}");
    assert_eq!(market_records(&env.market)[0].3, "99999999.9999");
}

/// An hour that can no longer be reported (here: the agent was down for more than 21
/// days) is said in the log as it fails and raises the alarm: /healthz red, the metric, the
/// --on-alarm command. That command, still running when the agent is stopped, is stopped
/// with it.
#[test]
fn a_failed_hour_is_logged_and_raises_the_alarm_and_the_alarm_command_ends_with_the_agent() {
    let env = Env::new();
    let down = format!("http://127.0.0.1:{}", free_port());
    let dir = spool(&env);
    let sp = dir.to_str().unwrap();
    drop_file(
        &dir,
        "e.jsonl",
        "{\"instance_id\":\"i-1\",\"time\":\"20260110T101500Z\",\"value\":2}\n",
    );
    let (o, v) = once(&env, "2026-01-10T10:30:00Z", &down, &["--spool", sp]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["hours"]["open"], 1, "{v}");

    // 22 days later.
    let pid_file = env.path("alarm.pid");
    // A child that ignores SIGTERM is stopped too; the agent's CSM_* secrets are not passed.
    let on_alarm = format!(
        "env > {}; (trap '' TERM; exec sleep 120) >/dev/null 2>&1 & echo $$ > {}; echo \"$CSM_ALARM_REASON\" > {}; sleep 120",
        env.path("alarm.env").display(),
        pid_file.display(),
        env.path("alarm.reason").display()
    );
    let mut child = agent(
        &env,
        "2026-02-01T10:30:00Z",
        &down,
        &[
            "--listen",
            "127.0.0.1:0",
            "--every",
            "1s",
            "--retries",
            "0",
            "--on-alarm",
            &on_alarm,
        ],
    )
    .env("CSM_SK", "secret-sk")
    .env("CSM_ACCESS_KEY", "secret-access")
    .env("CSM_KIT_KEY", "secret-kit")
    .env("CSM_LICENSE_KEY", "secret-license")
    .env("CSM_AGENT_TOKEN", "secret-token")
    .env("CSM_JOURNAL", "postgres://csm:secret-pw@127.0.0.1:1/csm")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let url = announced_url(&mut child);
    wait_until("/healthz red", || get(&format!("{url}/healthz")).0 == 503);
    let (_, h) = get(&format!("{url}/healthz"));
    let h: Value = serde_json::from_str(&h).unwrap();
    assert!(
        h["reason"].as_str().unwrap().starts_with(
            "the hour 20260110T100000Z of instance \"i-1\" failed at 20260201T103000Z and is not billed: hour 20260110T100000Z: more than 21 days old"
        ),
        "{h}"
    );
    let (_, m) = get(&format!("{url}/metrics"));
    assert_eq!(metric(&m, "csm_agent_alarm"), Some(1), "{m}");
    assert_eq!(metric(&m, "csm_agent_hours{state=\"failed\"}"), Some(1));
    wait_until("the alarm command runs", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.ends_with('\n'))
    });
    let group = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let reason = std::fs::read_to_string(env.path("alarm.reason")).unwrap();
    assert!(reason.contains("failed at 20260201T103000Z"), "{reason}");
    let seen = std::fs::read_to_string(env.path("alarm.env")).unwrap();
    let csm: Vec<&str> = seen.lines().filter(|l| l.starts_with("CSM_")).collect();
    assert!(
        csm.len() == 1 && csm[0].starts_with("CSM_ALARM_REASON="),
        "{csm:?}"
    );
    assert!(!seen.contains("secret"), "{seen}");

    // Stopped, the agent gives the command a few seconds, then stops it and its children.
    let status = stopped(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("the hour 20260110T100000Z of instance \"i-1\" failed and is not billed: hour 20260110T100000Z: more than 21 days old"),
        "{err}"
    );
    let logged = err.find("failed and is not billed").unwrap();
    assert!(
        err[logged..].contains("csm agent: ALARM: the hour"),
        "the failure, then the alarm: {err}"
    );
    assert!(
        err.contains("--on-alarm still running 5 s after the stop: stopped"),
        "{err}"
    );
    // Nothing of the command's process group is left (`sh`, its `sleep` and the child
    // that ignores SIGTERM).
    // (A moment for the orphaned `sleep`, signalled, to be reaped; far less than it sleeps.)
    let gone = Instant::now();
    while Command::new("sh")
        .args(["-c", "kill -s 0 -- \"-$1\" 2>/dev/null", "sh", &group])
        .status()
        .unwrap()
        .success()
    {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "the --on-alarm command outlived the agent"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // --once says it too (exit 5), while the alarm holds.
    let (o, v) = once(&env, "2026-02-01T10:40:00Z", &down, &[]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        v["alarm"]
            .as_str()
            .unwrap()
            .contains("failed at 20260201T103000Z"),
        "{v}"
    );
}

/// Times with fractions of a second (JavaScript's toISOString()) are taken: the fraction is
/// cut off for the hour, never rounded into the next one, and two events in one second stay
/// two events.
#[test]
fn event_times_with_fractions_of_a_second_are_taken_and_cut_to_the_second() {
    let env = Env::new();
    let market = env.market(&[]);
    let dir = spool(&env);
    drop_file(
        &dir,
        "e.jsonl",
        "{\"instance_id\":\"i-1\",\"time\":\"2026-01-10T10:59:59.999Z\",\"value\":1}\n\
         {\"instance_id\":\"i-1\",\"time\":\"2026-01-10T10:59:59.998Z\",\"value\":1}\n\
         {\"instance_id\":\"i-1\",\"time\":\"2026-01-10T18:59:59.5+08:00\",\"value\":1}\n",
    );
    let (o, v) = once(&env, NOW, &market.url, &["--spool", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["spool"]["events_new"], 3, "{v}");
    let recs = market_records(&env.market);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(
        (recs[0].1.as_str(), recs[0].3.as_str()),
        ("20260110T100000Z", "3")
    );
}

/// A body (or spool file) with several problems names every refused line in one answer:
/// 400 when one of them needs fixing, 409 when the lines are fine but their hours are closed
/// or full.
#[test]
fn every_refused_line_is_named_in_one_answer() {
    let env = Env::new();
    let market = env.market(&[]);
    let dir = spool(&env);
    let sp = dir.to_str().unwrap();
    let mut child = agent(
        &env,
        NOW,
        &market.url,
        &["--listen", "127.0.0.1:0", "--every", "1s", "--spool", sp],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let url = announced_url(&mut child);
    let (s, v) = post(&url, EVENTS, None);
    assert_eq!(s, 200, "{v}");
    wait_until("the hour is reported", || {
        market_records(&env.market).len() == 1
    });
    let late = "{\"instance_id\":\"i-1\",\"time\":\"20260110T105900Z\",\"value\":1}\n";
    let fine = "{\"instance_id\":\"i-2\",\"time\":\"20260110T121000Z\",\"value\":1}\n";
    let negative = "{\"instance_id\":\"i-2\",\"time\":\"20260110T121500Z\",\"value\":\"-5\"}\n";
    let big = "{\"instance_id\":\"i-3\",\"time\":\"20260110T121500Z\",\"value\":99999999}\n";
    let bigger = "{\"instance_id\":\"i-3\",\"time\":\"20260110T121600Z\",\"value\":1}\n";
    let (s, v) = post(&url, &[late, fine, negative].concat(), None);
    assert_eq!(s, 400, "{v}");
    let lines: Vec<(u64, &str)> = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["line"].as_u64().unwrap(), l["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, [(1, "late"), (3, "invalid")], "{v}");
    assert_eq!(v["lines"][0]["late"], true);
    assert!(
        v["lines"][1]["message"]
            .as_str()
            .unwrap()
            .starts_with("value \"-5\": negative"),
        "{v}"
    );
    assert_eq!(
        v["error"], "2 event(s) refused (1 invalid, 1 late), none taken",
        "{v}"
    );
    // Late and full, nothing to fix in the lines themselves: 409, both named.
    let (s, v) = post(&url, &[late, big, bigger].concat(), None);
    assert_eq!(s, 409, "{v}");
    let kinds: Vec<&str> = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["late", "over_limit"], "{v}");
    // Nothing of either body was taken.
    let (_, m) = get(&format!("{url}/metrics"));
    assert_eq!(
        metric(&m, "csm_agent_hours{state=\"open\"}"),
        Some(0),
        "{m}"
    );

    // The spool's .error file: one line per problem, every kind.
    drop_file(&dir, "mixed.jsonl", &[late, fine, negative].concat());
    wait_until("the spool file is refused", || {
        dir.join("failed/mixed.jsonl.error").exists()
    });
    let why = std::fs::read_to_string(dir.join("failed/mixed.jsonl.error")).unwrap();
    let problems: Vec<&str> = why.lines().collect();
    assert_eq!(problems.len(), 2, "{why}");
    assert!(
        problems[0].starts_with("mixed.jsonl:1: time 20260110T105900Z: late"),
        "{why}"
    );
    assert!(
        problems[1].starts_with("mixed.jsonl:3: value \"-5\": negative"),
        "{why}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn flags_of_the_running_agent_are_refused_with_once() {
    let env = Env::new();
    let down = format!("http://127.0.0.1:{}", free_port());
    for flags in [
        &["--listen", "127.0.0.1:0"][..],
        &["--every", "5s"],
        &["--token-file", "token"],
    ] {
        let (o, _) = once(&env, NOW, &down, flags);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", text(&o));
        assert!(
            text(&o).contains("cannot be used with") && text(&o).contains(flags[0]),
            "{flags:?}: {}",
            text(&o)
        );
    }
    assert!(!env.journal.exists());
}

/// SIGTERM to a running agent, and its exit status (within `limit`).
fn stopped(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    crate::common::signal(child.id(), "-TERM");
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < limit, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
