//! `csm load` against real `csm serve merchant` processes on loopback. Counts are asserted;
//! timings only with bounds a slow CI cannot miss.

use crate::common;
use common::{text, Served};

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BASIC: &str = "0f3c2a9e-5b1d-4c7e-8a6f-1d2e3f4a5b6c";
const WRONG: &str = "11111111-2222-4333-8444-555555555555";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("basic.key"), format!("{BASIC}\n")).unwrap();
        std::fs::write(dir.path().join("wrong.key"), format!("{WRONG}\n")).unwrap();
        Env { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn cmd(&self) -> Command {
        common::csm(self.dir.path())
    }

    fn serve(&self, args: &[&str]) -> Served {
        Served::start(
            self.cmd()
                .args(["serve", "merchant", "--listen", "127.0.0.1:0", "--key-file"])
                .arg(self.path("basic.key"))
                .args(args),
        )
    }

    /// `csm --json load --endpoint URL/produce --key-file KEY ARGS…`.
    fn load(&self, url: &str, key: &str, args: &[&str]) -> Output {
        self.load_as(&["--json"], url, key, args)
    }

    /// The same, with the text report.
    fn load_text(&self, url: &str, key: &str, args: &[&str]) -> Output {
        self.load_as(&[], url, key, args)
    }

    fn load_as(&self, global: &[&str], url: &str, key: &str, args: &[&str]) -> Output {
        self.cmd()
            .args(global)
            .args(["load", "--endpoint", &format!("{url}/produce")])
            .args(["--key-file", &self.p(key)])
            .args(args)
            .output()
            .unwrap()
    }
}

fn report(o: &Output) -> Value {
    let r: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)));
    assert_schema(&r);
    r
}

/// Every one of `n` requests answered 000000, none failed in transport or by the judge, exit 0.
fn assert_all_accepted(r: &Value, n: u64) {
    assert_eq!(
        r["by_result_code"],
        serde_json::json!({"000000": n}),
        "{r:#}"
    );
    assert_eq!(r["errors"], serde_json::json!({}), "{r:#}");
    assert_eq!(r["rejected"], serde_json::json!({}), "{r:#}");
    assert_eq!(r["exit_code"], 0, "{r:#}");
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn assert_schema(r: &Value) {
    crate::schema::assert_matches("docs/load.schema.json", r);
}

#[test]
fn schema_checker_refuses_what_the_schema_does_not_allow() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/load.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut errors = Vec::new();
    let bad =
        serde_json::json!({"schema": "csm.load/1", "errors": {"oops": 1}, "rate_target": "x"});
    crate::schema::validate(&schema, &bad, "$", &mut errors);
    assert!(errors
        .iter()
        .any(|e| e.contains("unexpected property oops")));
    assert!(errors.iter().any(|e| e.contains("$.rate_target")));
    assert!(errors.iter().any(|e| e.contains("missing \"requests\"")));
}

/// The nonce of a recorded V2 basic request (from its query).
fn nonce_of(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    let url = v["url"].as_str().unwrap();
    url.split(['?', '&'])
        .find_map(|p| p.strip_prefix("nonce="))
        .unwrap_or_else(|| panic!("no nonce in {url}"))
        .to_string()
}

#[test]
fn a_fixed_rate_sends_the_scheduled_requests_each_signed_and_unique() {
    let env = Env::new();
    let rec = env.p("record.jsonl");
    let m = env.serve(&["--record", &rec]);
    let o = env.load(
        &m.url,
        "basic.key",
        &[
            "--rate",
            "500",
            "--duration",
            "3s",
            "--connections",
            "20",
            "--threshold",
            "errors<0.1%",
            "--threshold",
            "p99<60s",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    // Exactly the schedule: 500/s × 3 s (the issue allows ±2%).
    assert_eq!(r["requests"], 1500, "{r:#}");
    assert_eq!(r["started"], 1500);
    assert_eq!(r["by_result_code"], serde_json::json!({"000000": 1500}));
    assert_eq!(r["by_http_status"], serde_json::json!({"200": 1500}));
    assert_eq!(r["failed"], 0);
    assert_eq!(r["rejected"], serde_json::json!({}));
    assert_eq!(r["rate_target"], 500.0);
    assert!(num(&r["rate_achieved"]) > 250.0, "{r:#}");
    assert!(r["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["pass"] == true));
    // The corrected latency is never below the service time.
    assert!(num(&r["latency_ms"]["max"]) >= num(&r["service_ms"]["max"]) - 0.01);
    // Every one reached the merchant with a nonce of its own.
    drop(m);
    let recorded = std::fs::read_to_string(&rec).unwrap();
    let nonces: BTreeSet<String> = recorded.lines().map(nonce_of).collect();
    assert_eq!(recorded.lines().count(), 1500);
    assert_eq!(nonces.len(), 1500);
}

#[test]
fn a_wrong_key_fails_every_request_and_the_errors_threshold() {
    let env = Env::new();
    let m = env.serve(&[]);
    let o = env.load(
        &m.url,
        "wrong.key",
        &[
            "--rate",
            "100",
            "--requests",
            "50",
            "--threshold",
            "errors<1%",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["by_result_code"], serde_json::json!({"000001": 50}));
    assert_eq!(r["failed"], 50);
    assert_eq!(r["rejected"]["result-code"], 50);
    assert_eq!(r["thresholds"][0]["value"], 1.0);
    assert_eq!(r["thresholds"][0]["pass"], false);
    assert_eq!(r["exit_code"], 1);
    // The text report says what all those 000001 most likely mean, and the value's unit.
    let o = env.load_text(
        &m.url,
        "wrong.key",
        &[
            "--rate",
            "100",
            "--requests",
            "20",
            "--threshold",
            "errors<1%",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(
            "20 of 20 failed requests answered 000001: the endpoint refuses csm's signatures"
        ),
        "{out}"
    );
    // The limit as applied beside the value.
    let line = out.lines().find(|l| l.contains("errors<1%")).unwrap_or("");
    assert!(
        line.contains("100.000% <  1.000%") && line.ends_with("FAIL"),
        "{out}"
    );
    // Without a threshold it is exit 0, and said so, so that a CI log does not read a pass.
    let o = env.load(&m.url, "wrong.key", &["--rate", "100", "--requests", "5"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("note: every request failed; without a --threshold that is still exit 0"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_slow_endpoint_fails_a_latency_threshold() {
    let env = Env::new();
    let m = env.serve(&["--fault", "slow", "--fault-delay", "700ms"]);
    // updateInstanceStatus is what `slow` delays; it needs instances, made first.
    let o = env.load(
        &m.url,
        "basic.key",
        &[
            "--activity",
            "newInstance,updateInstanceStatus:3",
            "--rate",
            "40",
            "--requests",
            "80",
            "--threshold",
            "p99<500ms",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["requests"], 80);
    assert!(num(&r["latency_ms"]["p99"]) >= 700.0, "{r:#}");
    assert_eq!(r["thresholds"][0]["pass"], false);
    assert!(r["by_activity"]["updateInstanceStatus"].as_u64().unwrap() > 0);
}

#[test]
fn an_unreachable_endpoint_exits_4_with_the_report() {
    let env = Env::new();
    let port = common::closed_port();
    let o = env.load(
        &format!("http://127.0.0.1:{port}"),
        "basic.key",
        &["--rate", "50", "--duration", "10s"],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["exit_code"], 4);
    assert!(r["errors"]["connect"].as_u64().unwrap() >= 1, "{r:#}");
    assert!(r["error"].as_str().unwrap().contains("unreachable"));
    // No reply: no latency, and nothing for the judge to reject (the failures are errors).
    assert!(
        r["latency_ms"].is_null() && r["service_ms"].is_null(),
        "{r:#}"
    );
    assert_eq!(r["rejected"], serde_json::json!({}), "{r:#}");
    // It stops at the first refusal instead of running out the 10 s.
    assert!(num(&r["duration_s"]) < 8.0, "{r:#}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("unreachable"));
    // Times to a refusal are no latency: a latency bound fails, and the text report says
    // what happened instead of printing them.
    let o = env.load_text(
        &format!("http://127.0.0.1:{port}"),
        "basic.key",
        &[
            "--rate",
            "50",
            "--requests",
            "3",
            "--threshold",
            "p99<800ms",
        ],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("  latency   none (no request was answered)\n"),
        "{out}"
    );
    assert!(out.contains("  no reply  connect: "), "{out}");
    let line = out.lines().find(|l| l.contains("p99<800ms")).unwrap_or("");
    assert!(line.contains(" none ") && line.ends_with("FAIL"), "{out}");
}

#[test]
fn with_requests_and_duration_whichever_ends_first() {
    let env = Env::new();
    let m = env.serve(&[]);
    // At 200/s: 1 s ends before 100,000 requests; 50 requests end before an hour.
    for (requests, duration, sent) in [("100000", "1s", 200), ("50", "1h", 50)] {
        let o = env.load(
            &m.url,
            "basic.key",
            &[
                "--activity",
                "newInstance",
                "--rate",
                "200",
                "--requests",
                requests,
                "--duration",
                duration,
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(report(&o)["requests"], sent);
    }
}

#[test]
fn a_stall_shows_in_the_corrected_latency_not_the_service_time() {
    let env = Env::new();
    let m = env.serve(&["--fault", "stall"]);
    let o = env.load(
        &m.url,
        "basic.key",
        &[
            "--activity",
            "newInstance",
            "--rate",
            "100",
            "--duration",
            "4s",
            "--connections",
            "10",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["requests"], 400);
    // Requests due during the 2 s stall waited up to 2 s from their intended start.
    assert!(num(&r["latency_ms"]["p90"]) > 1000.0, "{r:#}");
    // Only the few on a connection when it began were slow to be served.
    assert!(num(&r["service_ms"]["p50"]) < 500.0, "{r:#}");
    assert!(num(&r["service_ms"]["p90"]) < 1000.0, "{r:#}");
}

#[test]
fn closed_loop_sends_the_requests_asked_for() {
    let env = Env::new();
    let m = env.serve(&[]);
    let o = env.load(
        &m.url,
        "basic.key",
        &["--rate", "max", "--requests", "200", "--connections", "4"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["requests"], 200);
    assert_eq!(r["rate_target"], Value::Null);
    assert_eq!(r["by_result_code"], serde_json::json!({"000000": 200}));
}

#[test]
fn usage_errors_name_the_flag_and_exit_2() {
    let env = Env::new();
    let url = "http://127.0.0.1:9";
    for (args, needle) in [
        (
            vec!["--rate", "10", "--requests", "5", "--threshold", "p99<800"],
            "invalid value 'p99<800' for '--threshold <EXPR>': \"800\" needs a unit",
        ),
        (
            vec![
                "--rate",
                "10",
                "--requests",
                "5",
                "--threshold",
                "errors<0.1",
            ],
            "errors takes a percentage: write 0.1%",
        ),
        (
            vec!["--rate", "10", "--requests", "5", "--threshold", "p98<1s"],
            "unknown metric",
        ),
        (vec!["--rate", "fast", "--requests", "5"], "--rate"),
        (
            vec!["--rate", "10"],
            "<--duration <DURATION>|--requests <N>>",
        ),
        (
            vec![
                "--rate",
                "max",
                "--requests",
                "5",
                "--threshold",
                "rate>=0.9",
            ],
            "give --rate N",
        ),
        (
            vec![
                "--rate",
                "10",
                "--requests",
                "5",
                "--activity",
                "newInstanse",
            ],
            "newInstanse",
        ),
        (
            // A member of a text field: refused before the run, not counted per request.
            vec![
                "--rate",
                "10",
                "--requests",
                "5",
                "--activity",
                "newInstance",
                "--allow-unknown",
                "--set",
                "orderId.x=1",
            ],
            "--set \"orderId.x\": cannot go into x",
        ),
        // Load goes to test orders only.
        (
            vec!["--rate", "10", "--requests", "5", "--set", "testFlag=0"],
            "--set testFlag: csm load sends test callbacks only (testFlag=1)",
        ),
        // A V1 callback is not sent under v2 (it would go out as a V1 GET).
        (
            vec![
                "--rate",
                "10",
                "--requests",
                "5",
                "--activity",
                "expireInstance",
            ],
            "--activity \"expireInstance\": not a v2 callback (a v1 callback: pass --protocol v1)",
        ),
        (
            vec![
                "--rate",
                "10",
                "--requests",
                "5",
                "--activity",
                "newinstance",
            ],
            "(did you mean newInstance?)",
        ),
        (
            vec![
                "--rate",
                "10",
                "--requests",
                "5",
                "--activity",
                "newInstance,queryInstance,newInstance:2",
            ],
            "--activity newInstance: given twice",
        ),
        (
            vec!["--rate", "10", "--duration", "1s", "--ramp", "2s"],
            "--ramp 2s: must be shorter than --duration 1s",
        ),
        // Refused for the field's value, not for another activity's lack of the field.
        (
            vec![
                "--rate",
                "10",
                "--requests",
                "5",
                "--activity",
                "queryInstance,refreshInstance",
                "--set",
                "scene=X",
            ],
            "scene must be one of",
        ),
        (
            vec![
                "--rate",
                "10",
                "--requests",
                "5",
                "--activity",
                "queryInstance,releaseInstance",
                "--set",
                "nosuch=1",
            ],
            "--set nosuch: none of the activities sent has this field (queryInstance, releaseInstance)",
        ),
    ] {
        let o = env.load(url, "basic.key", &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(needle), "{args:?}: {}", text(&o));
    }
}

#[test]
fn a_remote_endpoint_needs_yes_without_a_terminal() {
    let env = Env::new();
    let o = env.load(
        "http://192.0.2.1",
        "basic.key",
        &["--rate", "10", "--requests", "5"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--yes"), "{}", text(&o));
}

/// A 30 s `csm --json load` against the merchant at `url`, stopped by `signal` once its
/// `--record` file `rec` holds `lines` requests.
fn stopped_load(
    env: &Env,
    url: &str,
    args: &[&str],
    rec: &std::path::Path,
    lines: usize,
    signal: &str,
) -> std::process::Output {
    let child = env
        .cmd()
        .args(["--json", "load", "--endpoint", &format!("{url}/produce")])
        .args(["--key-file", &env.p("basic.key"), "--duration", "30s"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for_lines(rec, lines);
    common::signal(child.id(), signal);
    child.wait_with_output().unwrap()
}

#[test]
fn ctrl_c_stops_starting_requests_and_reports_what_was_sent() {
    let env = Env::new();
    let rec = env.path("rec.jsonl");
    let m = env.serve(&["-q", "--record", &rec.display().to_string()]);
    // Requests are arriving when Ctrl-C comes.
    let o = stopped_load(&env, &m.url, &["--rate", "50"], &rec, 5, "-INT");
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["interrupted"], true);
    let n = r["requests"].as_u64().unwrap();
    // Stopped well before the 1,500 a full run would send.
    assert!(n > 0 && n < 1500, "{n}");
    assert_eq!(r["by_result_code"]["000000"].as_u64(), Some(n), "{r}");
}

/// A stop (a cancelled CI job's SIGTERM) while requests wait for the one connection: those
/// are neither sent nor counted, and what was on the wire is reported as the merchant got it.
#[test]
fn a_stop_leaves_the_requests_waiting_for_a_connection_unsent_and_uncounted() {
    let env = Env::new();
    let rec = env.path("rec.jsonl");
    // Every freeze is answered after 2 s: at 20/s on one connection, most requests wait.
    let m = env.serve(&[
        "-q",
        "--fault",
        "slow",
        "--fault-delay",
        "2s",
        "--record",
        &rec.display().to_string(),
    ]);
    // The instance made, one freeze answered 2 s later and the next on the wire: the starts
    // of those 2 s wait for the connection.
    let args = [
        "--activity",
        "updateInstanceStatus FREEZE",
        "--connections",
        "1",
        "--rate",
        "20",
    ];
    let o = stopped_load(&env, &m.url, &args, &rec, 3, "-TERM");
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["interrupted"], true);
    assert!(r["errors"].get("queued").is_none(), "{r}");
    let sent = std::fs::read_to_string(&rec).unwrap().lines().count() as u64;
    assert_eq!(r["requests"].as_u64(), Some(sent), "{r}");
    // What was never sent is no start either: the achieved rate counts starts.
    assert_eq!(r["started"], r["requests"], "{r}");
}

/// The activity and instance id of a recorded V2 basic request (from its JSON body).
fn step_of(line: &str) -> (String, Option<String>) {
    use base64::Engine;
    let v: Value = serde_json::from_str(line).unwrap();
    let body = base64::engine::general_purpose::STANDARD
        .decode(v["body_base64"].as_str().unwrap())
        .unwrap();
    let b: Value = serde_json::from_slice(&body).unwrap();
    (
        b["activity"].as_str().unwrap().to_string(),
        b["instanceId"].as_str().map(str::to_string),
    )
}

#[test]
fn lifecycle_orders_run_their_steps_in_order_each_on_its_own_instance() {
    let env = Env::new();
    let rec = env.p("record.jsonl");
    let m = env.serve(&["--record", &rec]);
    let o = env.load(
        &m.url,
        "basic.key",
        &[
            "--scenario",
            "lifecycle",
            "--rate",
            "200",
            "--requests",
            "100",
            "--set",
            "productId=LOAD-P1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["by_result_code"], serde_json::json!({"000000": 100}));
    // Counted per step: each step follows the one before it, so the counts never rise
    // along the order (orders still running at the end stop part way).
    let steps = &r["by_activity"];
    let counts: Vec<u64> = [
        "newInstance",
        "queryInstance",
        "refreshInstance RENEWAL",
        "updateInstanceStatus FREEZE",
        "releaseInstance",
    ]
    .iter()
    .map(|k| steps[*k].as_u64().unwrap_or(0))
    .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{r:#}");
    let (new, released) = (counts[0], counts[4]);
    assert!(released >= 5, "{r:#}");
    assert_eq!(r["orders"]["started"].as_u64(), Some(new));
    assert_eq!(r["orders"]["completed"].as_u64(), Some(released));
    drop(m);
    // On the merchant's side: per instance, the steps after newInstance in order, once each.
    let order = [
        "queryInstance",
        "refreshInstance",
        "updateInstanceStatus",
        "releaseInstance",
    ];
    let mut seen: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in std::fs::read_to_string(&rec).unwrap().lines() {
        let (activity, instance) = step_of(line);
        if activity == "newInstance" {
            continue;
        }
        seen.entry(instance.expect("an instance id"))
            .or_default()
            .push(activity);
    }
    let full = seen.values().filter(|s| s.len() == order.len()).count();
    assert_eq!(full as u64, released);
    for s in seen.values() {
        assert_eq!(s[..], order[..s.len()], "{seen:#?}");
    }
    // --set reached the one step that has the field (refreshInstance).
    let recorded = std::fs::read_to_string(&rec).unwrap();
    let with_product = recorded
        .lines()
        .filter(|l| step_of(l).0 == "refreshInstance")
        .count();
    assert!(with_product > 0);
    use base64::Engine;
    for line in recorded
        .lines()
        .filter(|l| step_of(l).0 == "refreshInstance")
    {
        let v: Value = serde_json::from_str(line).unwrap();
        let body = base64::engine::general_purpose::STANDARD
            .decode(v["body_base64"].as_str().unwrap())
            .unwrap();
        let b: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(b["productId"], "LOAD-P1");
    }
}

#[test]
fn set_names_a_field_no_activity_has() {
    let env = Env::new();
    let o = env.load(
        "http://127.0.0.1:9",
        "basic.key",
        &[
            "--activity",
            "newInstance",
            "--rate",
            "10",
            "--requests",
            "1",
            "--set",
            "nosuch=1",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--set nosuch") && err.contains("newInstance"),
        "{err}"
    );
}

#[test]
fn an_hdr_log_that_cannot_be_written_is_refused_before_the_run() {
    let env = Env::new();
    let m = env.serve(&["--record", &env.p("record.jsonl")]);
    let o = env.load(
        &m.url,
        "basic.key",
        &[
            "--rate",
            "50",
            "--requests",
            "5",
            "--hdr-out",
            &env.p("no/such/dir/latency.hlog"),
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // The run did not start: the error object, not a report.
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["exit_code"], 3, "{r:#}");
    assert!(r["error"].as_str().unwrap().contains("--hdr-out"), "{r:#}");
    // Nothing was sent.
    let sent = std::fs::read_to_string(env.path("record.jsonl")).unwrap_or_default();
    assert_eq!(sent.lines().count(), 0, "{sent}");
}

#[test]
fn a_request_never_sent_is_a_shortfall_of_the_rate() {
    let env = Env::new();
    let m = env.serve(&["--fault", "stall"]);
    // Five connections held by the 2 s stall: requests due meanwhile find none free within
    // the 1 s budget and are not sent.
    let o = env.load(
        &m.url,
        "basic.key",
        &[
            "--activity",
            "newInstance",
            "--rate",
            "100",
            "--duration",
            "4s",
            "--connections",
            "5",
            "--timeout",
            "1s",
            "--threshold",
            "rate>=0.98",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = report(&o);
    assert_schema(&r);
    let queued = r["errors"]["queued"].as_u64().unwrap_or(0);
    assert!(queued >= 20, "{r:#}");
    assert_eq!(r["started"], 400, "{r:#}");
    assert_eq!(r["sent"].as_u64().unwrap(), 400 - queued, "{r:#}");
    let rate = num(&r["thresholds"][0]["value"]);
    assert!(rate <= (400 - queued) as f64 / 400.0 + 1e-9, "{r:#}");
    assert_eq!(r["thresholds"][0]["pass"], false);
}

#[test]
fn a_run_whose_starts_were_all_on_time_is_the_whole_rate() {
    let env = Env::new();
    let m = env.serve(&[]);
    // A last start handed over a little late (well within an interval) is on time.
    let o = env.load(
        &m.url,
        "basic.key",
        &[
            "--activity",
            "newInstance",
            "--rate",
            "20",
            "--requests",
            "20",
            "--threshold",
            "rate>=1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(num(&r["thresholds"][0]["value"]), 1.0, "{r:#}");
    assert_eq!(r["sent"], 20);
}

#[test]
fn a_ramp_is_no_shortfall_of_the_rate() {
    let env = Env::new();
    let m = env.serve(&[]);
    let o = env.load_text(
        &m.url,
        "basic.key",
        &[
            "--activity",
            "newInstance",
            "--rate",
            "200",
            "--duration",
            "2s",
            "--ramp",
            "1s",
            "--threshold",
            "rate>=0.95",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // 100 requests in the ramp, then 200 in the second that follows.
    assert!(out.starts_with("300 requests in "), "{out}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("rising over 1s"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_hdr_log_reads_back_with_every_request() {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::Histogram;
    let env = Env::new();
    let m = env.serve(&[]);
    let log = env.p("latency.hlog");
    let o = env.load(
        &m.url,
        "basic.key",
        &["--rate", "200", "--duration", "2500ms", "--hdr-out", &log],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    let raw = std::fs::read(&log).unwrap();
    assert!(raw.starts_with(b"#[Histogram log format version 1.3]\n"));
    let mut total = Histogram::<u64>::new(3).unwrap();
    let mut starts = Vec::new();
    for e in IntervalLogIterator::new(&raw) {
        let LogEntry::Interval(i) = e.unwrap() else {
            continue;
        };
        starts.push(i.start_timestamp().as_secs_f64());
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(i.encoded_histogram())
            .unwrap();
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .unwrap();
        total.add(&h).unwrap();
    }
    // One interval a second (the last one partial), every request in one of them.
    assert_eq!(starts, [0.0, 1.0, 2.0]);
    assert_eq!(total.len(), r["requests"].as_u64().unwrap());
    let max_ms = total.max() as f64 / 1000.0;
    assert!((max_ms - num(&r["latency_ms"]["max"])).abs() <= max_ms * 0.01 + 0.01);
}

#[test]
fn a_lower_case_body_sign_name_is_rejected_per_reply_on_kept_alive_connections() {
    let env = Env::new();
    let m = env.serve(&["--fault", "body-sign-case"]);
    let o = env.load(
        &m.url,
        "basic.key",
        &[
            "--activity",
            "newInstance",
            "--rate",
            "100",
            "--requests",
            "60",
            "--connections",
            "3",
        ],
    );
    // Replies are still 000000, but the marketplace refuses them: each one fails.
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["by_result_code"], serde_json::json!({"000000": 60}));
    assert_eq!(r["rejected"]["body-sign-name"], 60, "{r:#}");
    assert_eq!(r["failed"], 60, "{r:#}");
}

#[test]
fn https_to_a_plain_http_endpoint_says_so() {
    let env = Env::new();
    let m = env.serve(&[]);
    let url = m.url.replacen("http://", "https://", 1);
    let o = env.load(&url, "basic.key", &["--rate", "10", "--requests", "2"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("hint: the endpoint answers in plain HTTP, not TLS: use an http:// address"),
        "{}",
        text(&o)
    );
}

#[test]
fn an_order_whose_reply_the_judge_rejects_stops_there() {
    let env = Env::new();
    // Every reply 000000, but with a Body-Sign header name the marketplace refuses.
    let m = env.serve(&["--fault", "body-sign-case"]);
    let o = env.load(
        &m.url,
        "basic.key",
        &[
            "--scenario",
            "lifecycle",
            "--rate",
            "100",
            "--requests",
            "10",
        ],
    );
    let r = report(&o);
    assert_eq!(r["failed"], 10, "{r:#}");
    // Each request was the first step of a new order, and no order went further.
    assert_eq!(
        r["by_activity"],
        serde_json::json!({"newInstance": 10}),
        "{r:#}"
    );
    assert_eq!(r["orders"]["completed"], 0, "{r:#}");
}

#[test]
fn https_endpoints_are_loaded_through_the_policy_tls() {
    use crate::endpoint_tls::{tls_endpoint_with, KEY, LOCALHOST};
    let env = Env::new();
    std::fs::write(env.path("tls.key"), KEY).unwrap();
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{LOCALHOST}.pem"));
    for (name, rejected) in [("Body-Sign", None), ("body-sign", Some(20))] {
        let port = tls_endpoint_with(20, &rustls::version::TLS13, name, LOCALHOST);
        let url = format!("https://127.0.0.1:{port}");
        let o = env.load(
            &url,
            "tls.key",
            &[
                "--activity",
                "newInstance",
                "--rate",
                "50",
                "--requests",
                "20",
            ],
        );
        // Without the test CA, the certificate is refused: unreachable, kind tls.
        if rejected.is_none() {
            assert_eq!(o.status.code(), Some(4), "{}", text(&o));
            assert!(report(&o)["errors"]["tls"].as_u64().unwrap() >= 1);
        }
        let port = tls_endpoint_with(20, &rustls::version::TLS13, name, LOCALHOST);
        let url = format!("https://127.0.0.1:{port}");
        let ca = ca.display().to_string();
        let o = env.load(
            &url,
            "tls.key",
            &[
                "--activity",
                "newInstance",
                "--rate",
                "50",
                "--requests",
                "20",
                "--ca-file",
                &ca,
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let r = report(&o);
        assert_eq!(
            r["by_result_code"],
            serde_json::json!({"000000": 20}),
            "{r:#}"
        );
        assert_eq!(r["rejected"]["body-sign-name"].as_u64(), rejected, "{r:#}");
    }
}

#[test]
fn a_body_file_lays_its_fields_over_fresh_requests() {
    use base64::Engine;
    let env = Env::new();
    let rec = env.p("record.jsonl");
    std::fs::write(env.path("body.json"), r#"{"productId":"FROM-FILE"}"#).unwrap();
    let m = env.serve(&["--record", &rec]);
    let body = env.p("body.json");
    let o = env.load(
        &m.url,
        "basic.key",
        &[
            "--activity",
            "newInstance,refreshInstance",
            "--rate",
            "100",
            "--requests",
            "40",
            "--body",
            &body,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    drop(m);
    let mut orders = BTreeSet::new();
    let mut refreshes = 0;
    for line in std::fs::read_to_string(&rec).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["body_base64"].as_str().unwrap())
            .unwrap();
        let b: Value = serde_json::from_slice(&raw).unwrap();
        if b["activity"] == "refreshInstance" {
            refreshes += 1;
            assert_eq!(b["productId"], "FROM-FILE", "{b}");
        } else {
            // newInstance has no productId: the file's field is not forced on it.
            assert!(b.get("productId").is_none(), "{b}");
        }
        orders.insert(b["orderId"].as_str().unwrap().to_string());
    }
    assert!(refreshes > 0);
    // Ids not named in the file stay fresh per request.
    assert_eq!(orders.len(), 40);
}

/// How the keep-alive test endpoint answers the `k`th request (from 1) on its `c`th
/// connection (from 1): the bytes to write, and whether to keep the connection open after.
type Answer = fn(c: usize, k: usize, body: &str, sign: &str) -> (String, bool);

/// A keep-alive HTTP/1.1 endpoint on loopback whose replies are signed 000000 newInstance
/// answers for the `BASIC` key, written by `answer`. Returns its base URL and the number of
/// connections it accepted.
fn keep_alive_endpoint(answer: Answer) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&accepted);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let c = count.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                for k in 1.. {
                    if common::read_request(&mut s).is_none() {
                        return;
                    }
                    let body = format!(
                        r#"{{"instanceId":"ka-{c}-{k}","resultCode":"000000","resultMsg":"success."}}"#
                    );
                    let sig = csm::protocol::v1::body_sign(BASIC, body.as_bytes());
                    let sign = csm::protocol::v1::body_sign_header_value(&sig);
                    let (reply, keep) = answer(c, k, &body, &sign);
                    if s.write_all(reply.as_bytes()).is_err() || !keep {
                        return;
                    }
                }
            });
        }
    });
    (base, accepted)
}

fn whole(body: &str, sign: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nBody-Sign: {sign}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `body` as three chunks, with a chunk extension and a trailer.
fn chunked(body: &str, sign: &str) -> String {
    let (a, rest) = body.split_at(7);
    let (b, c) = rest.split_at(rest.len() / 2);
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nBody-Sign: {sign}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n{:x}\r\n{c}\r\n0\r\nX-Trailer: t\r\n\r\n",
        a.len(),
        b.len(),
        c.len()
    )
}

fn load_on(env: &Env, url: &str, args: &[&str]) -> Value {
    let o = env
        .cmd()
        .args([
            "--json",
            "load",
            "--endpoint",
            url,
            "--activity",
            "newInstance",
        ])
        .args(["--key-file", &env.p("basic.key")])
        .args(args)
        .output()
        .unwrap();
    report(&o)
}

#[test]
fn connections_the_server_closes_are_replaced_without_losing_a_request() {
    let env = Env::new();
    // Closes every connection after its third reply, which does not say so (no
    // `Connection: close`); the client finds out when it reuses it.
    let (url, accepted) = keep_alive_endpoint(|_, k, body, sign| (whole(body, sign), k < 3));
    for args in [
        ["--rate", "200", "--requests", "90", "--connections", "3"],
        ["--rate", "max", "--requests", "90", "--connections", "3"],
    ] {
        let r = load_on(&env, &url, &args);
        assert_all_accepted(&r, 90);
        // Every third reuse finds its connection closed (the last ones may stay unused).
        let reconnects = r["reconnects"].as_u64().unwrap();
        assert!((20..=30).contains(&reconnects), "{r:#}");
    }
    // Three requests per connection: kept alive, and no more connections than that needs.
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!((60..=66).contains(&n), "{n} connections for 180 requests");
}

#[test]
fn chunked_replies_are_read_whole_on_kept_alive_connections() {
    let env = Env::new();
    let (url, accepted) = keep_alive_endpoint(|_, _, body, sign| (chunked(body, sign), true));
    let r = load_on(
        &env,
        &url,
        &["--rate", "max", "--requests", "200", "--connections", "2"],
    );
    // Nothing rejected: the Body-Sign of each joined body verifies, every chunk read in order.
    assert_all_accepted(&r, 200);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(r["reconnects"], 0, "{r:#}");
}

#[test]
fn a_reply_cut_off_is_a_reset_not_a_reply() {
    let env = Env::new();
    // Each connection: a whole reply, then one cut off in its body (by Content-Length on odd
    // connections, before the last chunk on even ones) and the connection closed.
    let (url, _) = keep_alive_endpoint(|c, k, body, sign| {
        if k == 1 {
            return (whole(body, sign), true);
        }
        let reply = if c % 2 == 1 {
            whole(body, sign)
        } else {
            chunked(body, sign)
        };
        (reply[..reply.len() - 12].to_string(), false)
    });
    let r = load_on(
        &env,
        &url,
        &["--rate", "100", "--requests", "20", "--connections", "1"],
    );
    assert_eq!(r["requests"], 20, "{r:#}");
    assert_eq!(
        r["by_result_code"],
        serde_json::json!({"000000": 10}),
        "{r:#}"
    );
    assert_eq!(r["errors"], serde_json::json!({"reset": 10}), "{r:#}");
    assert_eq!(r["failed"], 10, "{r:#}");
}

#[test]
fn https_connections_are_kept_alive_too() {
    use crate::endpoint_tls::LOCALHOST;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixtures.join(format!("{LOCALHOST}.pem")))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixtures.join(format!("{LOCALHOST}.key"))).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/produce", l.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for tcp in l.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let cfg = Arc::clone(&cfg);
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                while common::read_request(&mut tls).is_some() {
                    let body =
                        r#"{"instanceId":"tls-ka","resultCode":"000000","resultMsg":"success."}"#;
                    let sig = csm::protocol::v1::body_sign(BASIC, body.as_bytes());
                    let sign = csm::protocol::v1::body_sign_header_value(&sig);
                    if tls.write_all(whole(body, &sign).as_bytes()).is_err() {
                        return;
                    }
                    let _ = tls.flush();
                }
            });
        }
    });
    let env = Env::new();
    let ca = fixtures
        .join(format!("{LOCALHOST}.pem"))
        .display()
        .to_string();
    let r = load_on(
        &env,
        &url,
        &[
            "--rate",
            "max",
            "--requests",
            "100",
            "--connections",
            "2",
            "--ca-file",
            &ca,
        ],
    );
    assert_all_accepted(&r, 100);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
