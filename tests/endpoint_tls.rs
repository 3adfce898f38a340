//! The HTTPS path: a TLS endpoint on 127.0.0.1 (test-only certificate for 127.0.0.1 in
//! tests/fixtures) answered through the same client real sellers' endpoints get.

mod common;

use assert_cmd::Command;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const KEY: &str = "5d6e7f80-91a2-4b3c-8d4e-5f6a7b8c9d0e";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A TLS 1.3 server that answers every request with a signed 000000 reply.
fn tls_endpoint(max: usize) -> u16 {
    tls_endpoint_with(max, &rustls::version::TLS13, "Body-Sign")
}

/// A TLS server of one protocol version whose replies carry the signature under `sign_name`.
fn tls_endpoint_with(
    max: usize,
    version: &'static rustls::SupportedProtocolVersion,
    sign_name: &'static str,
) -> u16 {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture("test-only-localhost.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("test-only-localhost.key")).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().take(max).flatten() {
            let cfg = Arc::clone(&cfg);
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                if common::read_request_body(&mut tls).is_none() {
                    return;
                }
                let body = r#"{"instanceId":"tls-1","resultCode":"000000","resultMsg":"success."}"#;
                let sig = csm::protocol::v1::body_sign(KEY, body.as_bytes());
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\n{sign_name}: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    csm::protocol::v1::body_sign_header_value(&sig),
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

fn send(url: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, KEY).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_csm"))
        .env_clear()
        .env("CSM_CONFIG_DIR", dir.path())
        .args([
            "--json",
            "send",
            "newInstance",
            "--endpoint",
            url,
            "--key-file",
        ])
        .arg(&key)
        .args(extra)
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", common::text(&out)));
    (out.status.code(), v)
}

fn check<'a>(v: &'a Value, family: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["family"] == family)
        .unwrap_or_else(|| panic!("no {family} check: {v:#}"))
}

/// `send` to a TLS endpoint of `version` answering with `sign_name`, trusting the fixture.
fn send_trusted(
    version: &'static rustls::SupportedProtocolVersion,
    sign_name: &'static str,
) -> (Option<i32>, Value) {
    let port = tls_endpoint_with(2, version, sign_name);
    let url = format!("https://127.0.0.1:{port}/produce");
    let ca = fixture("test-only-localhost.pem").display().to_string();
    send(&url, &["--ca-file", &ca])
}

#[test]
fn https_reply_is_judged_through_the_tls_client() {
    let (code, v) = send_trusted(&rustls::version::TLS13, "Body-Sign");
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["reply"]["status"], 200);
    assert_eq!(check(&v, "body-sign")["status"], "pass");
    // The header name is read as sent, over TLS as over plain HTTP.
    assert_eq!(check(&v, "body-sign-name")["status"], "pass", "{v:#}");
}

#[test]
fn https_reply_with_a_lower_case_body_sign_is_caught() {
    let (code, v) = send_trusted(&rustls::version::TLS13, "body-sign");
    assert_eq!(code, Some(1), "{v:#}");
    // The signature itself is right; only the name is wrong.
    assert_eq!(check(&v, "body-sign")["status"], "pass", "{v:#}");
    let name = check(&v, "body-sign-name");
    assert_eq!(name["status"], "fail", "{name}");
    assert_eq!(name["actual"], "body-sign", "{name}");
}

#[test]
fn tls_1_2_endpoint_is_accepted() {
    let (code, v) = send_trusted(&rustls::version::TLS12, "Body-Sign");
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(check(&v, "body-sign-name")["status"], "pass", "{v:#}");
}

#[test]
fn untrusted_certificate_is_a_tls_verdict() {
    let port = tls_endpoint(2);
    let (code, v) = send(&format!("https://127.0.0.1:{port}/produce"), &[]);
    // A failed handshake is no reply at all: network error, with the verdict printed.
    assert_eq!(code, Some(4), "{v:#}");
    assert_eq!(v["reply"]["kind"], "tls", "{v:#}");
    let r = check(&v, "reachable");
    assert_eq!(r["status"], "fail");
    assert!(r["fix"].as_str().unwrap().contains("trusted CA"), "{r}");
}

#[test]
fn ca_file_must_be_a_certificate() {
    let (code, _) = {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, KEY).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_csm"))
            .env_clear()
            .env("CSM_CONFIG_DIR", dir.path())
            .args([
                "send",
                "newInstance",
                "--endpoint",
                "https://127.0.0.1:9/",
                "--key-file",
            ])
            .arg(&key)
            .arg("--ca-file")
            .arg(&key)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            err.contains("--ca-file") && err.contains("not a PEM certificate"),
            "{err}"
        );
        (out.status.code(), ())
    };
    assert_eq!(code, Some(2));
}
