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
        self.cmd()
            .args(["--json", "load", "--endpoint", &format!("{url}/produce")])
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
    // It stops at the first refusal instead of running out the 10 s.
    assert!(num(&r["duration_s"]) < 8.0, "{r:#}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("unreachable"));
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
            "--threshold \"p99<800\"",
        ),
        (
            vec!["--rate", "10", "--requests", "5", "--threshold", "p98<1s"],
            "unknown metric",
        ),
        (vec!["--rate", "fast", "--requests", "5"], "--rate"),
        (vec!["--rate", "10"], "--duration"),
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

#[test]
fn ctrl_c_stops_starting_requests_and_reports_what_was_sent() {
    let env = Env::new();
    let rec = env.path("rec.jsonl");
    let m = env.serve(&["-q", "--record", &rec.display().to_string()]);
    let child = env
        .cmd()
        .args([
            "--json",
            "load",
            "--endpoint",
            &format!("{}/produce", m.url),
        ])
        .args(["--key-file", &env.p("basic.key")])
        .args(["--rate", "50", "--duration", "30s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Requests are arriving when Ctrl-C comes.
    common::wait_for_lines(&rec, 5);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["interrupted"], true);
    let n = r["requests"].as_u64().unwrap();
    // Stopped well before the 1,500 a full run would send.
    assert!(n > 0 && n < 1500, "{n}");
    assert_eq!(r["by_result_code"]["000000"].as_u64(), Some(n), "{r}");
}
