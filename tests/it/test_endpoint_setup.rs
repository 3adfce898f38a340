//! `csm test-endpoint` against endpoints where the setup of a check fails: a 404 page, a
//! wrong key, replies without resultMsg, something that is not HTTP. A check whose setup
//! failed is skipped and says which step failed; it never passes. The dial suite's afternoon
//! replays the morning's bodies, as the merchant's `--record` file shows.

use crate::common::{self, text};
use crate::endpoint::Env;

use base64::Engine;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 48\r\nConnection: close\r\n\r\n<html><body><h1>404 Not Found</h1></body></html>";

fn checks(r: &Value) -> &Vec<Value> {
    r["checks"].as_array().unwrap()
}

fn check<'a>(r: &'a Value, suite: &str, name: &str) -> &'a Value {
    checks(r)
        .iter()
        .find(|c| c["suite"] == suite && c["check"] == name)
        .unwrap_or_else(|| panic!("no check {suite} | {name}: {r:#}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The families of checks a conversation makes (not the reply-format rows).
const STEP_FAMILIES: [&str; 3] = ["result-code", "idempotent", "refuses-bad-requests"];

#[test]
fn test_endpoint_passes_nothing_against_a_404_page() {
    let env = Env::new();
    let (base, _) = common::canned(NOT_FOUND.into(), 1000);
    let junit = env.p("report.xml");
    let (o, r) = env.test_endpoint(
        &format!("{base}/produce"),
        &["--key-file", &env.p("basic.key"), "--junit", &junit],
    );
    assert_eq!(o.status.code(), Some(1), "{r:#}");
    // Only the reply's speed is anything to pass on.
    for c in checks(&r) {
        if c["status"] == "pass" {
            assert_eq!(c["family"], "reachable", "passed with nothing tested: {c}");
        }
    }
    let again = check(
        &r,
        "idempotency",
        "newInstance again, same order (new businessId)",
    );
    assert_eq!(again["status"], "skip", "{again}");
    assert!(
        s(&again["actual"]).starts_with("the first newInstance got HTTP 404 text/html, not JSON"),
        "{again}"
    );
    let unchanged = check(&r, "negative", "state unchanged afterwards");
    assert_eq!(unchanged["status"], "skip", "{unchanged}");
    assert_eq!(
        unchanged["actual"], "setup: newInstance got HTTP 404 text/html, not JSON",
        "{unchanged}"
    );
    let afternoon: Vec<&Value> = checks(&r)
        .iter()
        .filter(|c| c["suite"] == "dial" && s(&c["check"]).starts_with("afternoon: "))
        .collect();
    assert_eq!(afternoon.len(), 6, "{r:#}");
    for c in afternoon {
        assert_eq!(c["status"], "skip", "{c}");
        assert!(s(&c["actual"]).contains("morning"), "{c}");
    }
    // The skip and its reason reach the JUnit file too.
    let x = std::fs::read_to_string(&junit).unwrap();
    assert!(
        x.contains("name=\"state unchanged afterwards\"><skipped message=\"setup: newInstance got HTTP 404 text/html, not JSON\"/>"),
        "{x}"
    );

    // No resultMsg to point to: the fix says once what the reply is, then refers to it.
    let failed: Vec<&Value> = checks(&r)
        .iter()
        .filter(|c| c["family"] == "result-code" && c["status"] == "fail")
        .collect();
    assert!(failed.len() > 1, "{r:#}");
    let mut told = 0;
    for c in &failed {
        let fix = s(&c["fix"]);
        assert!(!fix.contains("resultMsg"), "{c}");
        assert!(
            s(&c["actual"]).contains("HTTP 404 text/html, not JSON"),
            "{c}"
        );
        if fix.contains("HTTP 404 text/html is no callback reply") {
            told += 1;
        } else {
            assert!(
                fix.starts_with(
                    "HTTP 404 text/html again: see the fix of lifecycle \"newInstance\""
                ),
                "{c}"
            );
        }
    }
    assert_eq!(told, 1, "{r:#}");
}

#[test]
fn test_endpoint_with_the_wrong_key_passes_no_refusal() {
    let env = Env::new();
    let m = env.serve(&["--key-file", &env.p("basic.key")]);
    let (o, r) = env.test_endpoint(
        &format!("{}/produce", m.url),
        &["--key-file", &env.p("wrong.key")],
    );
    assert_eq!(o.status.code(), Some(1), "{r:#}");
    // Everything is refused: refusing the bad requests too proves nothing.
    for c in checks(&r) {
        if STEP_FAMILIES.contains(&s(&c["family"])) {
            assert_ne!(c["status"], "pass", "{c}");
        }
    }
    let unchanged = check(&r, "negative", "state unchanged afterwards");
    assert_eq!(unchanged["status"], "skip", "{unchanged}");
    assert!(
        s(&unchanged["actual"]).starts_with("setup: newInstance answered 000001"),
        "{unchanged}"
    );
    let tampered = check(
        &r,
        "negative",
        "releaseInstance, tampered signature: refused",
    );
    assert_eq!(tampered["status"], "skip", "{tampered}");
}

/// The step checks of a run, in order: (suite, check).
fn steps(r: &Value) -> Vec<(String, String)> {
    checks(r)
        .iter()
        .filter(|c| STEP_FAMILIES.contains(&s(&c["family"])))
        .map(|c| (s(&c["suite"]).to_string(), s(&c["check"]).to_string()))
        .collect()
}

#[test]
fn test_endpoint_skips_under_the_names_a_passing_run_checks() {
    let env = Env::new();
    let (base, _) = common::canned(NOT_FOUND.into(), 1000);
    for proto in ["v2", "v1"] {
        let m = env.serve(&["--protocol", proto, "--key-file", &env.p("basic.key")]);
        let args = ["--protocol", proto, "--key-file", &env.p("basic.key")];
        let (o, good) = env.test_endpoint(&format!("{}/produce", m.url), &args);
        assert_eq!(o.status.code(), Some(0), "{good:#}");
        let (_, bad) = env.test_endpoint(&format!("{base}/produce"), &args);
        assert_eq!(steps(&bad), steps(&good), "{proto}: {bad:#}");
    }
}

#[test]
fn test_endpoint_fixes_name_no_resultmsg_that_is_not_there() {
    let env = Env::new();
    let body = r#"{"resultCode":"000005"}"#;
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (base, _) = common::canned(reply, 1000);
    let url = format!("{base}/produce");
    let (o, r) = env.test_endpoint(
        &url,
        &["--suite", "lifecycle", "--key-file", &env.p("basic.key")],
    );
    assert_eq!(o.status.code(), Some(1), "{r:#}");
    let new = check(&r, "lifecycle", "newInstance");
    assert_eq!(
        (&new["status"], &new["actual"]),
        (&"fail".into(), &"000005".into())
    );
    assert!(!s(&new["fix"]).contains("see resultMsg"), "{new}");
    assert!(s(&new["fix"]).contains("no resultMsg"), "{new}");
    // `csm send` judges one reply the same way.
    let o = env
        .cmd()
        .args(["--json", "send", "newInstance", "--endpoint", &url])
        .args(["--key-file", &env.p("basic.key")])
        .output()
        .unwrap();
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let code = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["family"] == "result-code")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert!(!s(&code["fix"]).contains("see resultMsg"), "{code}");
}

/// What the dial test keeps of one recorded request: the method, the path, the query
/// without signature, timestamp, nonce and authToken, the body without its timeStamp, and
/// the body's bytes when it has no timeStamp (V2 basic and License: replayed byte for byte).
type Kept = (
    String,
    String,
    Vec<(String, String)>,
    Value,
    Option<Vec<u8>>,
);

fn kept(line: &str) -> Kept {
    let r: Value = serde_json::from_str(line).unwrap();
    let url = s(&r["url"]).to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let fresh = ["signature", "timestamp", "nonce", "authToken", "timeStamp"];
    let query: Vec<(String, String)> = csm::protocol::v1::parse_query(query, false)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !fresh.contains(&k.as_str()))
        .collect();
    let body = base64::engine::general_purpose::STANDARD
        .decode(s(&r["body_base64"]))
        .unwrap();
    let mut fields: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stamped = fields
        .as_object_mut()
        .and_then(|b| b.remove("timeStamp"))
        .is_some();
    let bytes = (!stamped).then_some(body);
    (
        s(&r["method"]).to_string(),
        path.to_string(),
        query,
        fields,
        bytes,
    )
}

#[test]
fn test_endpoint_dial_afternoon_resends_the_morning_bodies() {
    let env = Env::new();
    for proto in ["v2", "v1"] {
        let record = env.p(&format!("{proto}.jsonl"));
        let mut keys = vec!["--key-file", "basic.key", "--kit-key-file", "kit.key"];
        if proto == "v2" {
            keys.extend(["--license-key-file", "license.key"]);
        }
        let keys: Vec<String> = keys
            .iter()
            .map(|k| {
                if k.ends_with(".key") {
                    env.p(k)
                } else {
                    k.to_string()
                }
            })
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut serve = vec!["--protocol", proto, "--record", &record];
        serve.extend(&keys);
        let m = env.serve(&serve);
        let mut args = vec!["--suite", "dial", "--protocol", proto];
        args.extend(&keys);
        let (o, r) = env.test_endpoint(&format!("{}/produce", m.url), &args);
        assert_eq!(o.status.code(), Some(0), "{r:#}");
        drop(m);
        let lines: Vec<String> = std::fs::read_to_string(Path::new(&record))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        // Morning then afternoon, the same cases in the same order.
        assert_eq!(lines.len() % 2, 0, "{proto}: {lines:#?}");
        let (morning, afternoon) = lines.split_at(lines.len() / 2);
        let mut kinds = Vec::new();
        for (a, b) in morning.iter().zip(afternoon) {
            let (a, b) = (kept(a), kept(b));
            assert_eq!(a, b, "{proto}: the afternoon sent other fields");
            kinds.push(a.1.clone());
        }
        let tenant = morning
            .iter()
            .map(|l| kept(l))
            .find(|k| k.1.ends_with("/tenantSync"))
            .unwrap_or_else(|| panic!("{proto}: no tenantSync in {kinds:?}"));
        for field in ["tenantId", "tenantCode", "domainName"] {
            assert!(tenant.3.get(field).is_some(), "{proto}: {:?}", tenant.3);
        }
    }
}

/// Serves every connection on its own thread with `behave`.
fn serve_each(behave: fn(TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200).flatten() {
            std::thread::spawn(move || behave(stream));
        }
    });
    port
}

/// An SSH server's greeting, whatever is asked.
fn ssh(mut s: TcpStream) {
    let _ = s.write_all(b"SSH-2.0-OpenSSH_9.0\r\n");
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = common::read_request(&mut s);
}

/// A plain HTTP reply to a TLS handshake.
fn plain_to_tls(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 65536];
    let _ = s.read(&mut buf);
    let _ = s.write_all(NOT_FOUND.as_bytes());
    std::thread::sleep(Duration::from_millis(500));
}

#[test]
fn test_endpoint_shows_the_endpoints_bytes_as_they_came() {
    let env = Env::new();
    let port = serve_each(ssh);
    let (o, r) = env.test_endpoint(
        &format!("http://127.0.0.1:{port}/produce"),
        &["--suite", "lifecycle", "--key-file", &env.p("basic.key")],
    );
    assert_eq!(o.status.code(), Some(1), "{r:#}");
    let c = checks(&r)
        .iter()
        .find(|c| c["family"] == "reachable" && c["status"] == "fail")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert!(
        s(&c["actual"]).contains("protocol: the reply is not HTTP"),
        "{c}"
    );
    assert!(s(&c["actual"]).contains("SSH-2.0-OpenSSH_9.0"), "{c}");

    let port = serve_each(plain_to_tls);
    let (o, r) = env.test_endpoint(
        &format!("https://127.0.0.1:{port}/produce"),
        &["--suite", "lifecycle", "--key-file", &env.p("basic.key")],
    );
    assert_eq!(o.status.code(), Some(4), "{r:#}");
    let c = checks(&r)
        .iter()
        .find(|c| c["family"] == "reachable" && c["status"] == "fail")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert!(s(&c["actual"]).contains("tls: "), "{c}");
    assert!(s(&c["actual"]).contains("InvalidContentType"), "{c}");
    // The fix still recognises the plain HTTP answer.
    assert!(s(&c["fix"]).contains("plain HTTP"), "{c}");
}

/// A JSON refusal whose resultMsg holds an escape sequence and a bell.
fn coloured_refusal(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = common::read_request(&mut s);
    let body = "{\"resultCode\":\"000001\",\"resultMsg\":\"\\u001b[31mRED\\u001b[0m\\u0007\"}";
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(reply.as_bytes());
}

/// An endpoint's escape sequences reach neither the table nor the recap of failures: they
/// would colour or move a CI log.
#[test]
fn test_endpoint_passes_on_no_control_character_of_the_endpoint() {
    let env = Env::new();
    let port = serve_each(coloured_refusal);
    let url = format!("http://127.0.0.1:{port}/produce");
    for show in ["all", "failures"] {
        let o = env
            .cmd()
            .args(["test-endpoint", "--endpoint", &url, "--suite", "lifecycle"])
            .args(["--key-file", &env.p("basic.key"), "--show", show])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("RED"), "{out}");
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}'),
            "{show}: {out:?}"
        );
    }
}

/// The recorded requests of a `--record` file that `is` picks (path, JSON body).
fn recorded(record: &str, is: impl Fn(&str, &Value) -> bool) -> usize {
    std::fs::read_to_string(record)
        .unwrap()
        .lines()
        .filter(|l| {
            let r: Value = serde_json::from_str(l).unwrap();
            let url = s(&r["url"]);
            let path = url.split_once('?').map_or(url, |(p, _)| p);
            let body = base64::engine::general_purpose::STANDARD
                .decode(s(&r["body_base64"]))
                .unwrap();
            is(path, &serde_json::from_slice(&body).unwrap_or(Value::Null))
        })
        .count()
}

/// The negative suite against a merchant whose key of one interface type is `merchant_key`
/// (the right one or another), the test-endpoint signing with the right ones: the report and
/// the merchant's record.
fn negative_with(env: &Env, proto: &str, flag: &str, merchant_key: &str) -> (Value, String) {
    let record = env.p(&format!("{proto}{flag}{merchant_key}.jsonl"));
    let (basic, kit, license) = (env.p("basic.key"), env.p("kit.key"), env.p("license.key"));
    let theirs = env.p(merchant_key);
    let mut serve = vec![
        "--protocol",
        proto,
        "--record",
        &record,
        "--key-file",
        &basic,
    ];
    let mut args = vec![
        "--suite",
        "negative",
        "--protocol",
        proto,
        "--key-file",
        &basic,
    ];
    args.extend(["--kit-key-file", &kit]);
    if flag == "--kit-key-file" {
        serve.extend([flag, &theirs]);
    } else {
        serve.extend(["--kit-key-file", &kit, flag, &theirs]);
        args.extend([flag, &license]);
    }
    let m = env.serve(&serve);
    let (o, r) = env.test_endpoint(&format!("{}/produce", m.url), &args);
    let right = merchant_key != "wrong.key";
    assert_eq!(o.status.code(), Some(if right { 0 } else { 1 }), "{r:#}");
    drop(m);
    (r, record)
}

#[test]
fn test_endpoint_sends_no_kit_refusal_when_the_kit_setup_is_refused() {
    let env = Env::new();
    let refusals = [
        "tenantSync delete, tampered signature: refused",
        "tenantSync delete, missing signature: refused",
    ];
    for proto in ["v2", "v1"] {
        let tenant_syncs = |record: &str| recorded(record, |p, _| p.ends_with("/tenantSync"));
        // The merchant checks Kit calls with another key: it refuses the correctly signed
        // setup too, and refusing the bad ones proves nothing.
        let (r, record) = negative_with(&env, proto, "--kit-key-file", "wrong.key");
        for name in refusals {
            let c = check(&r, "negative", name);
            assert_eq!(c["status"], "skip", "{proto}: {c}");
            assert!(
                s(&c["actual"]).starts_with("setup: tenantSync add answered 000001"),
                "{proto}: {c}"
            );
        }
        let setup = check(&r, "negative", "setup: tenantSync add");
        assert_eq!(setup["status"], "fail", "{proto}: {setup}");
        // The basic refusals still count: their setup went through.
        let basic = check(
            &r,
            "negative",
            "releaseInstance, tampered signature: refused",
        );
        assert_eq!(basic["status"], "pass", "{proto}: {basic}");
        assert_eq!(tenant_syncs(&record), 1, "{proto}: only the setup is sent");

        let (r, record) = negative_with(&env, proto, "--kit-key-file", "kit.key");
        for name in ["setup: tenantSync add"].into_iter().chain(refusals) {
            let c = check(&r, "negative", name);
            assert_eq!(c["status"], "pass", "{proto}: {c}");
        }
        assert_eq!(tenant_syncs(&record), 3, "{proto}");
    }
}

#[test]
fn test_endpoint_sends_no_license_refusal_when_the_license_setup_is_refused() {
    let env = Env::new();
    let refusals = [
        "releaseLicenseCode, tampered signature: refused",
        "releaseLicenseCode, stale timestamp: refused",
    ];
    let releases = |record: &str| recorded(record, |_, b| b["activity"] == "releaseLicenseCode");
    let (r, record) = negative_with(&env, "v2", "--license-key-file", "wrong.key");
    for name in refusals {
        let c = check(&r, "negative", name);
        assert_eq!(c["status"], "skip", "{c}");
        assert!(
            s(&c["actual"]).starts_with("setup: releaseLicenseCode answered 000001"),
            "{c}"
        );
    }
    let setup = check(&r, "negative", "setup: releaseLicenseCode");
    assert_eq!(setup["status"], "fail", "{setup}");
    // The Kit refusals, with the right Kit key, still count.
    let kit = check(
        &r,
        "negative",
        "tenantSync delete, tampered signature: refused",
    );
    assert_eq!(kit["status"], "pass", "{kit}");
    assert_eq!(releases(&record), 1, "only the setup is sent");

    let (r, record) = negative_with(&env, "v2", "--license-key-file", "license.key");
    for name in ["setup: releaseLicenseCode"].into_iter().chain(refusals) {
        let c = check(&r, "negative", name);
        assert_eq!(c["status"], "pass", "{c}");
    }
    assert_eq!(releases(&record), 3);
}
