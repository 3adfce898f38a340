//! `csm test-endpoint --suite sso` as a real process: skipped with its reason when a
//! prerequisite is missing, bad sso flags refused, and (once the reference merchant logs in
//! through the IdP) the demo and each sso fault failing exactly its own checks.

use crate::common::{csm, text, Served};
use serde_json::Value;
use std::process::Output;

const KIT: &str = "7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d";

fn report(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// The sso suite's rows as (protocol, check, status, actual).
fn sso_rows(r: &Value) -> Vec<(String, String, String, String)> {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["suite"] == "sso")
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("protocol"), s("check"), s("status"), s("actual"))
        })
        .collect()
}

fn failed_checks(r: &Value) -> Vec<String> {
    sso_rows(r)
        .into_iter()
        .filter(|(_, _, status, _)| status == "fail")
        .map(|(_, check, ..)| check)
        .collect()
}

#[test]
fn without_an_app_key_sso_is_skipped_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let kit = dir.path().join("kit.key");
    std::fs::write(&kit, format!("{KIT}\n")).unwrap();
    let merchant = Served::start(
        csm(dir.path())
            .args([
                "serve",
                "merchant",
                "--listen",
                "127.0.0.1:0",
                "--kit-key-file",
            ])
            .arg(&kit),
    );
    let endpoint = format!("{}/produce", merchant.url);
    let login = format!("{}/sso/callback", merchant.url);
    let junit = dir.path().join("report.xml");
    let o = csm(dir.path())
        .args([
            "--json",
            "test-endpoint",
            "--suite",
            "sso",
            "--endpoint",
            &endpoint,
        ])
        .args(["--login-url", &login, "--kit-key-file"])
        .arg(&kit)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let r = report(&o);
    crate::schema::assert_matches("docs/test-endpoint.schema.json", &r);
    assert_eq!(r["suites"], serde_json::json!(["sso"]));
    let rows = sso_rows(&r);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].2.as_str()), ("v2", "skip"));
    assert!(rows[0].3.contains("--app-public-key"), "{}", rows[0].3);
    // Nothing failed, but nothing was checked either: not a pass a CI could take for one.
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(r["result"], "error");
    // With --json there is no table: the first reason is in the message.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nothing was checked") && err.contains("--app-public-key"),
        "{}",
        text(&o)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("name=\"v2.sso\"") && xml.contains("<skipped") && xml.contains("<error"),
        "{xml}"
    );
}

#[test]
fn sso_is_not_in_the_default_suites() {
    let dir = tempfile::tempdir().unwrap();
    let o = csm(dir.path())
        .args(["--json", "test-endpoint", "--demo", "--suite", "dial"])
        .output()
        .unwrap();
    assert!(sso_rows(&report(&o)).is_empty());
    let o = csm(dir.path())
        .args(["test-endpoint", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in ["--login-url", "--logout-url", "--idp-listen", "--idp-url"] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn a_real_endpoint_without_a_kit_key_or_on_v1_is_skipped_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let kit = dir.path().join("kit.key");
    std::fs::write(&kit, format!("{KIT}\n")).unwrap();
    let merchant = Served::start(
        csm(dir.path())
            .args([
                "serve",
                "merchant",
                "--listen",
                "127.0.0.1:0",
                "--kit-key-file",
            ])
            .arg(&kit),
    );
    let endpoint = format!("{}/produce", merchant.url);
    let login = format!("{}/sso/callback", merchant.url);
    let cases: [(&[&str], &str); 2] = [
        (&["--protocol", "v2", "--key-file", "KIT"], "no Kit key"),
        (&["--protocol", "v1", "--kit-key-file", "KIT"], "runs on v2"),
    ];
    for (extra, why) in cases {
        let extra: Vec<String> = extra
            .iter()
            .map(|a| {
                if *a == "KIT" {
                    kit.display().to_string()
                } else {
                    a.to_string()
                }
            })
            .collect();
        let o = csm(dir.path())
            .args([
                "--json",
                "test-endpoint",
                "--suite",
                "sso",
                "--endpoint",
                &endpoint,
            ])
            .args(["--login-url", &login])
            .args(&extra)
            .output()
            .unwrap();
        let rows = sso_rows(&report(&o));
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].2, "skip");
        assert!(rows[0].3.contains(why), "{why}: {}", rows[0].3);
    }
}

#[test]
fn bad_sso_flags_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let o = csm(dir.path())
        .args([
            "test-endpoint",
            "--demo",
            "--suite",
            "sso",
            "--login-url",
            "ftp://host/cb",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--login-url") && err.contains("http"), "{err}");

    // A login page that is not on this machine is called only when chosen on purpose (with
    // an identity provider on loopback it is not called at all: the suite is skipped).
    let remote = ["--login-url", "http://203.0.113.1:8080/sso/callback"];
    let o = csm(dir.path())
        .args(["test-endpoint", "--demo", "--suite", "sso"])
        .args(remote)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = csm(dir.path())
        .args(["test-endpoint", "--demo", "--suite", "sso"])
        .args(remote)
        .args(["--idp-url", "http://192.0.2.10:8091"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--login-url http://203.0.113.1:8080/sso/callback: not a loopback address")
            && err.contains("pass --yes"),
        "{err}"
    );

    // An address already taken: a configuration error naming --idp-listen.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = csm(dir.path())
        .args([
            "test-endpoint",
            "--demo",
            "--suite",
            "sso",
            "--idp-listen",
            &addr,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--idp-listen") && err.contains(&addr), "{err}");
}

// ---- with the reference merchant's app side (decrypts, exchanges, userinfo, a session) ----

#[test]

fn the_demo_runs_sso_and_every_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let o = csm(dir.path())
        .args(["--json", "test-endpoint", "--demo"])
        .output()
        .unwrap();
    let r = report(&o);
    crate::schema::assert_matches("docs/test-endpoint.schema.json", &r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v2: Vec<_> = sso_rows(&r)
        .into_iter()
        .filter(|row| row.0 == "v2")
        .collect();
    assert!(v2.len() >= 14, "the demo includes sso: {v2:?}");
    assert!(v2.iter().all(|row| row.2 == "pass"), "{v2:?}");
}

#[test]

fn each_sso_fault_fails_exactly_its_own_checks() {
    let cases: [(&str, &[&str]); 3] = [
        ("sso-secret-encrypted", &["login: client_secret decrypted"]),
        ("sso-skip-userinfo", &["login: userinfo called"]),
        (
            "sso-code-reuse",
            &[
                "replayed code: refused by the IdP",
                "replayed code: no session",
            ],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (fault, checks) in cases {
        let o = csm(dir.path())
            .args([
                "--json",
                "test-endpoint",
                "--demo",
                "--suite",
                "sso",
                "--fault",
                fault,
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{fault}: {}", text(&o));
        let r = report(&o);
        assert_eq!(failed_checks(&r), checks, "{fault}");
        if fault == "sso-secret-encrypted" {
            let fix = r["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["status"] == "fail")
                .map(|c| c["fix"].as_str().unwrap_or_default().to_string())
                .unwrap();
            assert!(
                fix.contains("decrypt it with your private key first"),
                "{fix}"
            );
        }
    }
}
