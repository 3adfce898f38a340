//! The HTTP client policy seen from outside, through real csm processes and real sockets:
//! a 3xx is an answer (reported with its Location, never followed), loopback calls never go
//! through a proxy, and other hosts do when the environment names one.

use crate::usage_common;

use serde_json::Value;
use std::process::Output;
use std::sync::{Arc, Mutex};
use usage_common::*;

const ONE: &str = "instance_id,begin_time,end_time,usage_value,metering_sn\n\
                   i-1,20260110T090000Z,20260110T100000Z,1,sn-a\n";
const CALLBACK_KEY: &str = "5d6e7f80-91a2-4b3c-8d4e-5f6a7b8c9d0e";
const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

fn reply(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A server that should never be called (a redirect target, a proxy): it records what
/// reaches it.
fn trap() -> (String, Arc<Mutex<Vec<String>>>) {
    common::canned(reply("200 OK", "", "{}"), 8)
}

/// A server answering `307` towards `path` on a [`trap`]: its base URL, the Location, what
/// reached it and what reached the trap.
struct Redirecting {
    base: String,
    location: String,
    heads: Arc<Mutex<Vec<String>>>,
    followed: Arc<Mutex<Vec<String>>>,
}

fn redirecting(path: &str) -> Redirecting {
    let (elsewhere, followed) = trap();
    let location = format!("{elsewhere}{path}");
    let extra = format!("Location: {location}\r\n");
    let (base, heads) = common::canned(reply("307 Temporary Redirect", &extra, ""), 8);
    Redirecting {
        base,
        location,
        heads,
        followed,
    }
}

fn calls(heads: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    heads.lock().unwrap().clone()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn upload(env: &Env, endpoint: &str, vars: &[(&str, &str)]) -> Output {
    let f = env.write("u.csv", ONE);
    env.upload_cmd(&f, endpoint)
        .envs(vars.iter().copied())
        .args(["--retries", "2"])
        .output()
        .unwrap()
}

fn license(env: &Env, what: &str, endpoint: &str, vars: &[(&str, &str)]) -> Output {
    let sk = env.write("sk", "client-secret-key-1");
    let mut c = csm(env.dir());
    for (k, v) in vars {
        c.env(k, v);
    }
    c.args(["license", what, "PL1", "--ak", "AK1", "--sk-file"])
        .arg(&sk)
        .args(["--endpoint", endpoint])
        .output()
        .unwrap()
}

/// `csm --json send newInstance` to `url` (with `--yes`); exit code and the JSON verdict.
fn send(env: &Env, url: &str, vars: &[(&str, &str)]) -> (Option<i32>, Value) {
    let key = env.write("callback-key", CALLBACK_KEY);
    let mut c = csm(env.dir());
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c
        .args(["--json", "send", "newInstance", "--yes", "--timeout", "5s"])
        .args(["--endpoint", url, "--key-file"])
        .arg(&key)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", stderr(&out)));
    (out.status.code(), v)
}

#[test]
fn a_usage_push_answered_307_is_reported_not_followed_and_stays_pending() {
    let env = Env::new();
    let r = redirecting("/api/mkp-openapi-public/global/v1/isv/usage-data");
    let o = upload(&env, &r.base, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("csm: error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("HTTP 307")
            && line.contains(&r.location)
            && line.contains("not followed")
            && line.contains("--endpoint"),
        "{err}"
    );
    // Not followed, and not sent again: a redirect does not go away by retrying.
    assert_eq!(calls(&r.heads).len(), 1, "{:?}", calls(&r.heads));
    assert!(calls(&r.followed).is_empty(), "{:?}", calls(&r.followed));
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'pending'"
        ),
        1
    );
}

#[test]
fn license_activate_answered_307_is_reported_not_followed() {
    let env = Env::new();
    let r = redirecting("/moved");
    let o = license(&env, "activate", &r.base, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("HTTP 307") && err.contains(&r.location) && err.contains("not followed"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(calls(&r.heads).len(), 1);
    assert!(calls(&r.followed).is_empty(), "{:?}", calls(&r.followed));
}

/// Every proxy variable pointing at `proxy`.
fn all_proxies(proxy: &str) -> Vec<(&'static str, String)> {
    PROXY_VARS.iter().map(|v| (*v, proxy.to_string())).collect()
}

fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn loopback_calls_ignore_proxy_variables() {
    let (proxy, proxied) = trap();
    let bogus = "socks5://user:pw@[not a host";
    for vars in [all_proxies(&proxy), all_proxies(bogus)] {
        let vars = pairs(&vars);
        let env = Env::new();
        // usage upload, against the stand-in marketplace.
        let market = env.market(&[]);
        let o = upload(&env, &market.url, &vars);
        assert_eq!(o.status.code(), Some(0), "{vars:?}: {}", stderr(&o));
        // license heartbeat: it reaches the server (whatever the server answers).
        let (base, heads) = common::canned(reply("200 OK", "", "{}"), 2);
        let o = license(&env, "heartbeat", &base, &vars);
        assert_eq!(calls(&heads).len(), 1, "{vars:?}: {}", stderr(&o));
        // send: the callback client.
        let (base, heads) = common::canned(reply("200 OK", "", "{}"), 2);
        let (_, v) = send(&env, &format!("{base}/produce"), &vars);
        assert_eq!(v["reply"]["status"], 200, "{vars:?}: {v:#}");
        assert_eq!(calls(&heads).len(), 1);
    }
    assert!(calls(&proxied).is_empty(), "{:?}", calls(&proxied));
}

#[test]
fn a_callback_to_another_host_goes_through_http_proxy() {
    let env = Env::new();
    let body = r#"{"resultCode":"000000","resultMsg":"success.","instanceId":"i-1"}"#;
    let sig = csm::protocol::v1::body_sign(CALLBACK_KEY, body.as_bytes());
    let signed = format!(
        "Body-Sign: {}\r\n",
        csm::protocol::v1::body_sign_header_value(&sig)
    );
    let (proxy, heads) = common::canned(reply("200 OK", &signed, body), 2);
    // The name is never resolved: the proxy gets the absolute URL.
    let url = "http://isv.example.invalid/produce";
    let absolute = format!("POST {url}?");
    let (_, v) = send(
        &env,
        url,
        &[("HTTP_PROXY", &proxy), ("NO_PROXY", "other.example")],
    );
    let seen = calls(&heads);
    assert_eq!(seen.len(), 1, "{v:#}");
    assert!(seen[0].starts_with(&absolute), "{}", seen[0]);
    assert!(
        seen[0].contains("\r\nHost: isv.example.invalid\r\n"),
        "{}",
        seen[0]
    );
    assert_eq!(v["reply"]["status"], 200, "{v:#}");
    // A relaying proxy writes its own header names: the exact name is not judged.
    let name = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["family"] == "body-sign-name")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(name["status"], "skip", "{name}");
    assert!(name["actual"].as_str().unwrap().contains("proxy"), "{name}");
}

#[test]
fn a_proxy_that_refuses_the_tunnel_is_named_with_its_fix() {
    let env = Env::new();
    for (status, fix) in [
        (
            "407 Proxy Authentication Required",
            "the proxy wants credentials",
        ),
        ("403 Forbidden", "the proxy refused the tunnel to this host"),
    ] {
        let (proxy, heads) = common::canned(reply(status, "", ""), 2);
        let (code, v) = send(
            &env,
            "https://isv.example.invalid/produce",
            &[("HTTPS_PROXY", &proxy)],
        );
        assert_eq!(code, Some(4), "{v:#}");
        assert!(calls(&heads)[0].starts_with("CONNECT isv.example.invalid:443 "));
        let code = &status[..3];
        // Not "check the address": the endpoint was never reached.
        let check = &v["checks"][0];
        assert_eq!(check["family"], "reachable", "{v:#}");
        assert!(check["actual"]
            .as_str()
            .unwrap()
            .contains(&format!("answered HTTP {code}")));
        assert!(check["fix"].as_str().unwrap().starts_with(fix), "{v:#}");
        // csm load's own connections (hyper's tunnel) get the same fix.
        let (proxy, _) = common::canned(reply(status, "", ""), 2);
        let key = env.write("callback-key", CALLBACK_KEY);
        let o = csm(env.dir())
            .env("HTTPS_PROXY", &proxy)
            .args(["load", "--yes", "--rate", "1", "--requests", "1"])
            .args([
                "--endpoint",
                "https://isv.example.invalid/produce",
                "--key-file",
            ])
            .arg(&key)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("hint: {fix}")),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn usage_and_license_check_their_ca_file() {
    let env = Env::new();
    let not_pem = env.write("ca.pem", "not a certificate");
    let f = env.write("u.csv", ONE);
    let (base, heads) = trap();
    let mut runs = vec![env.upload_cmd(&f, &base)];
    for what in ["activate", "heartbeat"] {
        let mut c = csm(env.dir());
        c.args(["license", what, "PL1", "--ak", "AK1", "--sk-file"])
            .arg(env.write("sk", "client-secret-key-1"))
            .args(["--endpoint", &base]);
        runs.push(c);
    }
    for mut c in runs {
        let o = c.arg("--ca-file").arg(&not_pem).output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("--ca-file") && err.contains("not a PEM certificate"),
            "{err}"
        );
    }
    assert!(calls(&heads).is_empty(), "{:?}", calls(&heads));
}
