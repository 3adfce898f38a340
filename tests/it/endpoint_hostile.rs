//! Hostile endpoints (small TCP servers on 127.0.0.1 inside the test) each get a verdict
//! in bounded time: no answer, a 10 MB body, non-JSON, a redirect to another host, a TLS
//! error, a connection reset.
//!
//! Exit codes: a first call that gets no reply at all (timeout, TLS error, reset before any
//! reply, nothing listening) is exit 4, "unreachable"; an endpoint that answers some calls
//! and then times out on one fails the `reachable` check (exit 1).

use crate::common;

use assert_cmd::Command;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const KEY: &str = "5d6e7f80-91a2-4b3c-8d4e-5f6a7b8c9d0e";

/// Serves at most `max` connections with `behave`, each on its own thread.
fn hostile(max: usize, behave: fn(TcpStream)) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max).flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || behave(stream));
        }
    });
    (port, count)
}

fn read_request(s: &mut TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 65536];
    let _ = s.read(&mut buf);
}

fn no_answer(mut s: TcpStream) {
    read_request(&mut s);
    std::thread::sleep(Duration::from_secs(6));
}

fn huge_body(mut s: TcpStream) {
    read_request(&mut s);
    let _ = s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n{\"resultCode\":\"000000\",\"resultMsg\":\"",
    );
    let chunk = vec![b'a'; 65536];
    for _ in 0..160 {
        if s.write_all(&chunk).is_err() {
            return;
        }
    }
}

fn not_json(mut s: TcpStream) {
    read_request(&mut s);
    let _ = s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 26\r\nConnection: close\r\n\r\n<html><b>hello</b></html>\n",
    );
}

fn redirect(mut s: TcpStream) {
    read_request(&mut s);
    let _ = s.write_all(
        b"HTTP/1.1 302 Found\r\nLocation: http://evil.example.com/produce\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
}

/// A chunked reply in two chunks, the connection left open: the client must stop at the
/// last chunk, not wait for the close.
fn chunked(mut s: TcpStream) {
    read_request(&mut s);
    let _ = s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"resultCode\":\"0\r\n1d;ext=1\r\n00000\",\"resultMsg\":\"success\"}\r\n0\r\n\r\n",
    );
    std::thread::sleep(Duration::from_secs(6));
}

/// A plain (not chunked) body that happens to begin like a last chunk is read whole.
fn looks_like_last_chunk(mut s: TcpStream) {
    read_request(&mut s);
    let _ = s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\n0\r\n\r\n",
    );
    std::thread::sleep(Duration::from_millis(300));
    let _ = s.write_all(b"tail");
    std::thread::sleep(Duration::from_secs(6));
}

fn plain_to_tls(mut s: TcpStream) {
    // A ClientHello arrives; a plain HTTP error goes back.
    read_request(&mut s);
    let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
}

fn reset(s: TcpStream) {
    // Closing with the request unread in the receive buffer makes the kernel send RST.
    std::thread::sleep(Duration::from_millis(200));
    drop(s);
}

fn send(url: &str) -> (Option<i32>, Value) {
    let (code, v, _) = send_full(url);
    (code, v)
}

/// Exit code, the JSON verdict on stdout, and stderr.
fn send_full(url: &str) -> (Option<i32>, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, KEY).unwrap();
    let out = Command::from_std(common::csm(dir.path()))
        .args([
            "--json",
            "send",
            "newInstance",
            "--endpoint",
            url,
            "--yes",
            "--timeout",
            "2s",
        ])
        .arg("--key-file")
        .arg(&key)
        // A guard, not a speed assertion: a hang would fail here instead of blocking CI.
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{url}: no JSON verdict ({e}): {}", common::text(&out)));
    (
        out.status.code(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn failed<'a>(v: &'a Value, family: &str) -> Option<&'a Value> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["family"] == family && c["status"] == "fail")
}

#[test]
fn no_answer_times_out_with_a_verdict() {
    let (port, _) = hostile(2, no_answer);
    let (code, v, err) = send_full(&format!("http://127.0.0.1:{port}/produce"));
    // No reply at all: the verdict is printed, and the exit code says network error.
    assert_eq!(code, Some(4), "{v:#}");
    assert!(err.contains("unreachable"), "{err}");
    assert_eq!(v["reply"]["kind"], "timeout");
    let c = failed(&v, "reachable").expect("reachable fails");
    // The advice names the budget the run used (--timeout 2s), not a fixed figure.
    assert!(c["fix"].as_str().unwrap().contains("within 2000 ms"), "{c}");
}

#[test]
fn ten_megabyte_body_is_cut_at_one_mebibyte() {
    let (port, _) = hostile(2, huge_body);
    let (code, v) = send(&format!("http://127.0.0.1:{port}/produce"));
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["reply"]["truncated"], true);
    assert_eq!(v["reply"]["body"].as_str().unwrap().len(), 1024 * 1024);
    let c = failed(&v, "json-body").expect("json-body fails");
    assert!(
        c["actual"].as_str().unwrap().contains("over 1048576 bytes"),
        "{c}"
    );
}

#[test]
fn non_json_reply_fails_content_type_and_body() {
    let (port, _) = hostile(2, not_json);
    let (code, v) = send(&format!("http://127.0.0.1:{port}/produce"));
    assert_eq!(code, Some(1));
    assert!(failed(&v, "content-type").is_some(), "{v:#}");
    let c = failed(&v, "json-body").expect("json-body fails");
    assert!(c["actual"].as_str().unwrap().contains("<html>"), "{c}");
}

#[test]
fn chunked_reply_is_joined_without_waiting_for_the_close() {
    let (port, _) = hostile(2, chunked);
    let (_, v) = send(&format!("http://127.0.0.1:{port}/produce"));
    assert_eq!(
        v["reply"]["body"], r#"{"resultCode":"000000","resultMsg":"success"}"#,
        "{v:#}"
    );
    // Answered in well under the 2 s budget: the last chunk ended the read.
    assert!(failed(&v, "reachable").is_none(), "{v:#}");
}

#[test]
fn a_plain_body_starting_like_a_last_chunk_is_read_to_its_length() {
    let (port, _) = hostile(2, looks_like_last_chunk);
    let (_, v) = send(&format!("http://127.0.0.1:{port}/produce"));
    assert_eq!(v["reply"]["body"], "0\r\n\r\ntail", "{v:#}");
}

#[test]
fn redirect_to_another_host_is_reported_not_followed() {
    let (port, count) = hostile(4, redirect);
    let (code, v) = send(&format!("http://127.0.0.1:{port}/produce"));
    assert_eq!(code, Some(1));
    let c = failed(&v, "http-status").expect("http-status fails");
    let actual = c["actual"].as_str().unwrap();
    assert!(
        actual.contains("302")
            && actual.contains("evil.example.com")
            && actual.contains("not followed"),
        "{c}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1, "exactly one connection");
}

#[test]
fn tls_error_is_a_verdict() {
    let (port, _) = hostile(2, plain_to_tls);
    let (code, v) = send(&format!("https://127.0.0.1:{port}/produce"));
    assert_eq!(code, Some(4), "{v:#}");
    assert_eq!(v["reply"]["kind"], "tls", "{v:#}");
    let c = failed(&v, "reachable").expect("reachable fails");
    assert!(c["fix"].as_str().unwrap().contains("TLS"), "{c}");
}

#[test]
fn connection_reset_is_a_verdict() {
    let (port, _) = hostile(2, reset);
    let (code, v) = send(&format!("http://127.0.0.1:{port}/produce"));
    assert_eq!(code, Some(4), "{v:#}");
    assert_eq!(v["reply"]["kind"], "reset", "{v:#}");
}

#[test]
fn test_endpoint_stops_after_a_first_call_without_reply() {
    let (port, count) = hostile(4, no_answer);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, KEY).unwrap();
    let out = Command::from_std(common::csm(dir.path()))
        .args(["--json", "test-endpoint", "--timeout", "1s", "--endpoint"])
        .arg(format!("http://127.0.0.1:{port}/produce"))
        .arg("--key-file")
        .arg(&key)
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    // The first call timed out: unreachable, one error line, a report that says so, one call.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("unreachable") && err.contains("--endpoint"),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"], "error");
    assert_eq!(report["exit_code"], 4);
    assert_eq!(report["summary"]["calls"], 1);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// Answers every call with 000000 except the second connection, which gets no answer.
fn answers_then_hangs_once(mut s: TcpStream, n: usize) {
    if n == 2 {
        return no_answer(s);
    }
    read_request(&mut s);
    let body = r#"{"resultCode":"000000","resultMsg":"ok","instanceId":"inst-1"}"#;
    let _ = s.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

#[test]
fn a_timeout_after_some_replies_is_a_failed_check_not_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().take(60).flatten().enumerate() {
            std::thread::spawn(move || answers_then_hangs_once(stream, i + 1));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, KEY).unwrap();
    let out = Command::from_std(common::csm(dir.path()))
        .args([
            "--json",
            "test-endpoint",
            "--suite",
            "lifecycle",
            "--timeout",
            "1s",
            "--endpoint",
        ])
        .arg(format!("http://127.0.0.1:{port}/produce"))
        .arg("--key-file")
        .arg(&key)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    let c = failed(&v, "reachable").expect("reachable fails");
    assert!(c["actual"].as_str().unwrap().contains("timeout"), "{c}");
    assert!(v["summary"]["calls"].as_u64().unwrap() > 2, "{v:#}");
}

/// An endpoint that provisions in the background: newInstance answers 000004 and the
/// instance shows in queryInstance only from the second query on.
fn async_provisioning(mut s: TcpStream, queries: &AtomicUsize) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let Some(bytes) = common::read_request_body(&mut s) else {
        return;
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let reply = match body["activity"].as_str() {
        Some("newInstance") => {
            r#"{"resultCode":"000004","resultMsg":"processing","instanceId":"inst-async-1"}"#.to_string()
        }
        Some("queryInstance") if queries.fetch_add(1, Ordering::SeqCst) == 0 => {
            r#"{"resultCode":"000003","resultMsg":"not yet"}"#.to_string()
        }
        Some("queryInstance") => r#"{"resultCode":"000000","resultMsg":"ok","info":[{"instanceId":"inst-async-1","appInfo":{"frontEndUrl":"https://saas.example.com/a"}}]}"#.to_string(),
        _ => r#"{"resultCode":"000000","resultMsg":"ok"}"#.to_string(),
    };
    let _ = s.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        )
        .as_bytes(),
    );
}

#[test]
fn a_000004_answer_is_followed_by_polling_queryinstance() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let queries = Arc::new(AtomicUsize::new(0));
    let q = Arc::clone(&queries);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(40).flatten() {
            async_provisioning(stream, &q);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, KEY).unwrap();
    let out = Command::from_std(common::csm(dir.path()))
        .args([
            "--json",
            "test-endpoint",
            "--suite",
            "lifecycle",
            "--endpoint",
        ])
        .arg(format!("http://127.0.0.1:{port}/produce"))
        .arg("--key-file")
        .arg(&key)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(
        queries.load(Ordering::SeqCst),
        2,
        "one poll after the first query"
    );
    let new = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "newInstance")
        .unwrap();
    assert_eq!(new["actual"], "000004");
}
