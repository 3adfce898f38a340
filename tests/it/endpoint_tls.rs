//! The HTTPS path: a TLS endpoint on 127.0.0.1 (test-only certificate for 127.0.0.1 in
//! tests/fixtures) answered through the same client real sellers' endpoints get.

use crate::common;

use assert_cmd::Command;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const KEY: &str = "5d6e7f80-91a2-4b3c-8d4e-5f6a7b8c9d0e";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub const LOCALHOST: &str = "test-only-localhost";

/// A TLS 1.3 server that answers every request with a signed 000000 reply.
fn tls_endpoint(max: usize) -> u16 {
    tls_endpoint_with(max, &rustls::version::TLS13, "Body-Sign", LOCALHOST)
}

/// A TLS server of one protocol version, with the fixture certificate `cert` (.pem/.key),
/// whose replies carry the signature under `sign_name`.
pub fn tls_endpoint_with(
    max: usize,
    version: &'static rustls::SupportedProtocolVersion,
    sign_name: &'static str,
    cert: &str,
) -> u16 {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture(&format!("{cert}.pem")))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture(&format!("{cert}.key"))).unwrap();
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
    send_with_env(url, extra, &[])
}

/// `send` with environment variables set (the rest of the environment cleared).
fn send_with_env(url: &str, extra: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, KEY).unwrap();
    let out = Command::from_std(common::csm(dir.path()))
        .envs(vars.iter().copied())
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
    let port = tls_endpoint_with(2, version, sign_name, LOCALHOST);
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

/// An HTTP proxy for one `CONNECT`: it records the request head and joins the tunnel to
/// 127.0.0.1:`port`, whatever host was asked for.
fn connect_proxy(port: u16) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Some(Ok(mut client)) = listener.incoming().next() else {
            return;
        };
        let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
            return;
        };
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        let (mut client, mut upstream) = (client, upstream);
        std::thread::spawn(move || std::io::copy(&mut u2, &mut c2));
        let _ = std::io::copy(&mut client, &mut upstream);
    });
    (proxy_port, rx)
}

#[test]
fn https_to_another_host_is_tunnelled_through_the_proxy_with_its_name() {
    let cert = "test-only-isv-example-test";
    let port = tls_endpoint_with(2, &rustls::version::TLS13, "body-sign", cert);
    let (proxy, heads) = connect_proxy(port);
    let ca = fixture(&format!("{cert}.pem")).display().to_string();
    let proxy = format!("http://127.0.0.1:{proxy}");
    // The name is never resolved here: the proxy is asked for it, and the certificate is
    // verified for it (SNI) at the end of the tunnel.
    let (code, v) = send_with_env(
        "https://isv.example.test/produce",
        &["--ca-file", &ca, "--yes"],
        &[("HTTPS_PROXY", &proxy)],
    );
    let head = heads.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        head.starts_with("CONNECT isv.example.test:443 HTTP/1.1\r\n"),
        "{head}"
    );
    assert_eq!(v["reply"]["status"], 200, "{v:#}");
    // Through a tunnel the names are the endpoint's own: the lower-case name is caught.
    assert_eq!(check(&v, "body-sign-name")["status"], "fail", "{v:#}");
    assert_eq!(code, Some(1), "{v:#}");
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
    assert!(r["fix"].as_str().unwrap().contains("--ca-file"), "{r}");
}

/// A staging server that presents the CA certificate a bare `openssl req -x509` makes as its
/// own gets the fix for that, not the generic one, even with the certificate trusted.
#[test]
fn a_ca_certificate_served_as_the_servers_own_gets_its_own_fix() {
    let port = tls_endpoint_with(
        2,
        &rustls::version::TLS13,
        "Body-Sign",
        "test-only-localhost-ca",
    );
    let ca = fixture("test-only-localhost-ca.pem").display().to_string();
    let (code, v) = send(
        &format!("https://127.0.0.1:{port}/produce"),
        &["--ca-file", &ca],
    );
    assert_eq!(code, Some(4), "{v:#}");
    let r = check(&v, "reachable");
    assert!(
        r["fix"]
            .as_str()
            .unwrap()
            .contains("CA certificate as its own"),
        "{r}"
    );
}

#[test]
fn ca_file_must_be_a_certificate() {
    let (code, _) = {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, KEY).unwrap();
        let out = Command::from_std(common::csm(dir.path()))
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
