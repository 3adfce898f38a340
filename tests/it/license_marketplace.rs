//! The License 2.0 lifecycle on one machine: `csm serve marketplace` as a real process,
//! `csm license activate|heartbeat` against it, and the License callbacks it sends to a
//! recording merchant that checks their signatures with the protocol functions.

use crate::common;

use csm::protocol::{apig, json, v2};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const AK: &str = "TESTAKLICENSE0001";
const SK: &str = "test-sk-3f9a0c7d1e2b4a6f8c0d2e4f";
const LICENSE_KEY: &str = "license-key-7c1e9b2d4f6a8c0e";

/// `common::csm` with a config dir of its own for the whole test binary (these tests name
/// their keys and addresses with flags).
fn csm() -> Command {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    common::csm(DIR.get_or_init(|| tempfile::tempdir().unwrap()).path())
}

/// One callback as the recording merchant saw it.
#[derive(Debug, Clone)]
struct Seen {
    body: Value,
    raw_body: String,
    signature_ok: bool,
    timestamp_ok: bool,
}

/// A small merchant endpoint on 127.0.0.1: verifies the License signature of every callback
/// (keyed inner HMAC, decision 5), records it, answers 000000 or 000001.
struct Merchant {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Merchant {
    fn start(key: &'static str, inner: v2::LicenseInner) -> Merchant {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/produce", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = handle(stream, key, inner, &rec);
            }
        });
        Merchant { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn handle(
    stream: TcpStream,
    key: &str,
    inner: v2::LicenseInner,
    rec: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let params: std::collections::HashMap<String, String> =
        csm::protocol::v1::parse_query(query, false)
            .unwrap_or_default()
            .into_iter()
            .collect();
    let get = |n: &str| params.get(n).cloned().unwrap_or_default();
    let (signature, ts, nonce) = (get("signature"), get("timestamp"), get("nonce"));
    // Hash the raw bytes as received (license-and-usage.md §2.3), not a re-serialisation.
    let expected = v2::sign_basic_canonical(
        key,
        String::from_utf8_lossy(&body).into_owned(),
        &ts,
        &nonce,
        inner,
    );
    let signature_ok =
        !signature.is_empty() && v2::signature_matches(&expected.signature, &signature);
    let timestamp_ok = v2::timestamp_ms(&ts)
        .map(|(ms, secs)| {
            !secs && v2::within_window(ms, chrono::Utc::now().timestamp_millis(), 60_000)
        })
        .unwrap_or(false);
    // The body is also a V2 canonical body: re-signing the parsed JSON gives the same result.
    let reparsed_ok = json::parse(&body)
        .ok()
        .and_then(|j| v2::sign_license(key, &j, &ts, &nonce, inner).ok())
        .is_some_and(|s| s.signature == expected.signature);
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    rec.lock().unwrap().push(Seen {
        body: parsed,
        raw_body: String::from_utf8_lossy(&body).into_owned(),
        signature_ok: signature_ok && reparsed_ok,
        timestamp_ok,
    });
    let answer = if signature_ok {
        r#"{"resultCode":"000000","resultMsg":"success."}"#
    } else {
        r#"{"resultCode":"000001","resultMsg":"authentication failed"}"#
    };
    let mut s = stream;
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    s.flush()
}

/// `csm serve marketplace` as a child process, killed on drop.
use common::Served as Market;

fn write_key(dir: &Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, value).unwrap();
    p.to_string_lossy().into_owned()
}

fn start_market(dir: &Path, merchant: Option<&str>) -> Market {
    start_market_with(dir, merchant, &[])
}

fn start_market_with(dir: &Path, merchant: Option<&str>, extra: &[&str]) -> Market {
    let sk = write_key(dir, "sk", SK);
    let lk = write_key(dir, "license.key", LICENSE_KEY);
    let mut cmd = csm();
    cmd.args([
        "serve",
        "marketplace",
        "--listen",
        "127.0.0.1:0",
        "--ak",
        AK,
        "--sk-file",
        &sk,
        "--license-key-file",
        &lk,
    ]);
    if let Some(m) = merchant {
        cmd.args(["--merchant-endpoint", m]);
    }
    cmd.args(extra);
    Market::start(&mut cmd)
}

use common::first_line;

#[test]
fn first_line_gives_up_after_its_wait() {
    // A pipe whose writer stays open but silent: the reader must not hang.
    let mut child = Command::new("sleep")
        .arg("30")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let r = first_line(child.stdout.take().unwrap(), Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r, Err("no first line within 300 ms".to_string()));
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn admin(m: &Market, step: &str, body: Value) -> Value {
    let r = http()
        .post(format!("{}/csm/license/{step}", m.url))
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    assert!(
        !text.contains(SK) && !text.contains(LICENSE_KEY),
        "key leaked: {text}"
    );
    let v: Value = serde_json::from_str::<Value>(&text).unwrap();
    assert_eq!(status, 200, "{step}: {v}");
    v
}

fn mint(m: &Market, body: Value) -> String {
    admin(m, "mint", body)["codes"][0]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs `csm license <what> CODE` against the stand-in; returns (exit code, stdout+stderr).
fn license_cmd(
    dir: &Path,
    m: &Market,
    what: &str,
    code: &str,
    sk: &str,
    extra: &[&str],
) -> (i32, String) {
    let skf = write_key(dir, "client-sk", sk);
    let out = csm()
        .args([
            "license",
            what,
            code,
            "--endpoint",
            &m.url,
            "--ak",
            AK,
            "--sk-file",
            &skf,
        ])
        .args(extra)
        .output()
        .unwrap();
    let text = common::text(&out);
    assert!(!text.contains(SK), "SK leaked: {text}");
    (out.status.code().unwrap_or(-1), text)
}

fn heartbeat_status(dir: &Path, m: &Market, code: &str) -> (i32, String) {
    let skf = write_key(dir, "client-sk", SK);
    let out = csm()
        .args([
            "--json",
            "license",
            "heartbeat",
            code,
            "--endpoint",
            &m.url,
            "--ak",
            AK,
            "--sk-file",
            &skf,
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error_code"], "92020000", "{v}");
    (
        out.status.code().unwrap_or(-1),
        v["license_info"]["status"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

/// A raw AK/SK-signed POST to an open API, for what the CLI does not send.
fn signed_post(m: &Market, path: &str, body: &Value, sk: &str) -> (u16, Value) {
    let url = format!("{}{path}", m.url);
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let body = body.to_string();
    let headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Host".to_string(), host),
        (
            "X-Sdk-Date".to_string(),
            apig::format_sdk_date(chrono::Utc::now()),
        ),
    ];
    let names: Vec<String> = headers.iter().map(|(n, _)| n.to_lowercase()).collect();
    let sig = apig::sign(AK, sk, "POST", &url, &headers, &names, body.as_bytes()).unwrap();
    let mut req = http().post(&url).body(body);
    for (n, v) in &headers {
        req = req.header(n, v);
    }
    let r = req
        .header("Authorization", sig.authorization)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str::<Value>(&r.text().unwrap()).unwrap(),
    )
}

#[test]
fn license_lifecycle_with_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let merchant = Merchant::start(LICENSE_KEY, v2::LicenseInner::KeyedHmac);
    let m = start_market(dir.path(), Some(&merchant.url));
    let code = mint(
        &m,
        json!({"product_id": "OFFI555", "expire_time": "20991231235959", "amount": 3}),
    );
    assert!(code.starts_with("PL") && code.len() <= 64, "{code}");

    // Heartbeat before activation: not activated.
    let (c, out) = license_cmd(dir.path(), &m, "heartbeat", &code, SK, &[]);
    assert_eq!(c, 1, "{out}");
    assert!(out.contains("92020011"), "{out}");

    // Activate; the real effect time may not be earlier than the order (§2.6.1).
    let started = after_minting();
    let (c, out) = license_cmd(
        dir.path(),
        &m,
        "activate",
        &code,
        SK,
        &["--real-effect-time", &started],
    );
    assert_eq!(c, 0, "{out}");
    assert!(
        out.contains("92020000")
            && out.contains("status=ALIVE")
            && out.contains("product_id=OFFI555"),
        "{out}"
    );
    assert!(out.contains("amount=3"), "{out}");
    assert_eq!(heartbeat_status(dir.path(), &m, &code), (0, "ALIVE".into()));

    // Freeze through a callback; the heartbeat shows FROZEN.
    let r = admin(&m, "freeze", json!({"license": code}));
    assert_eq!(r["callback"]["result_code"], "000000", "{r}");
    assert_eq!(r["license"]["status"], "FROZEN");
    assert_eq!(
        heartbeat_status(dir.path(), &m, &code),
        (1, "FROZEN".into())
    );
    // In text, the line that comes with exit 1 says why.
    let skf = write_key(dir.path(), "client-sk", SK);
    let out = csm()
        .args(["license", "heartbeat", &code, "--endpoint", &m.url])
        .args(["--ak", AK, "--sk-file", &skf])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the code is FROZEN, not ALIVE"), "{err}");

    // Renewal and unfreeze.
    let r = admin(
        &m,
        "renew",
        json!({"license": code, "expire_time": "21000101000000", "order_id": "CSRENEW1"}),
    );
    assert_eq!(r["callback"]["result_code"], "000000", "{r}");
    let r = admin(&m, "unfreeze", json!({"license": code}));
    assert_eq!(r["callback"]["result_code"], "000000", "{r}");
    assert_eq!(heartbeat_status(dir.path(), &m, &code), (0, "ALIVE".into()));
    // A real (non-test) callback only when the admin request asks for it.
    let r = admin(
        &m,
        "renew",
        json!({"license": code, "expire_time": "21010101000000", "test_flag": "0"}),
    );
    assert_eq!(r["callback"]["result_code"], "000000", "{r}");

    // Release; the code is dead and cannot be activated again.
    let r = admin(&m, "release", json!({"license": code}));
    assert_eq!(r["callback"]["result_code"], "000000", "{r}");
    assert_eq!(
        heartbeat_status(dir.path(), &m, &code),
        (1, "RELEASED".into())
    );
    let (c, out) = license_cmd(dir.path(), &m, "activate", &code, SK, &[]);
    assert_eq!(c, 1, "{out}");
    assert!(out.contains("92020003"), "{out}");
    // A second release is refused by the admin API without a callback.
    let r = http()
        .post(format!("{}/csm/license/release", m.url))
        .body(json!({"license": code}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);

    // What the merchant received: four callbacks, each correctly signed, in order.
    let seen = merchant.seen();
    let activities: Vec<String> = seen
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s.body["activity"].as_str().unwrap_or(""),
                s.body["status"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        activities,
        [
            "updateLicenseCodeStatus:FREEZE",
            "refreshLicenseCode:",
            "updateLicenseCodeStatus:UNFREEZE",
            "refreshLicenseCode:",
            "releaseLicenseCode:"
        ]
    );
    let flags: Vec<&str> = seen
        .iter()
        .map(|s| s.body["testFlag"].as_str().unwrap_or("missing"))
        .collect();
    assert_eq!(
        flags,
        ["1", "1", "1", "0", "1"],
        "testFlag defaults to debug"
    );
    for s in &seen {
        assert!(s.signature_ok, "bad signature on {}", s.raw_body);
        assert!(s.timestamp_ok, "timestamp outside 60 s on {}", s.raw_body);
        assert_eq!(s.body["license"], code.as_str());
        assert!(!s.raw_body.contains(' '), "not compact: {}", s.raw_body);
    }
    let renew = &seen[1].body;
    assert_eq!(renew["expireTime"], "21000101000000");
    assert_eq!(renew["scene"], "RENEWAL");
    assert_eq!(renew["orderId"], "CSRENEW1");
    // Top-level keys in ascending order (decision 1).
    let keys: Vec<&str> = seen[1]
        .raw_body
        .split("\":")
        .filter_map(|p| p.rsplit("\"").next())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "{}", seen[1].raw_body);
}

#[test]
fn open_api_errors_and_aksk_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let m = start_market(dir.path(), None);
    let code = mint(&m, json!({}));

    // Bad SK: the gateway refuses the credentials, not the code: configuration, exit 3.
    for what in ["activate", "heartbeat"] {
        let (c, out) = license_cmd(dir.path(), &m, what, &code, "not-the-sk", &[]);
        assert_eq!(c, 3, "{what}: {out}");
        assert!(out.contains("APIGW.0301"), "{out}");
        assert!(
            out.contains("refused for the request (HTTP 401), not for the code"),
            "{out}"
        );
    }
    // The code was not activated by the refused call.
    let (c, out) = license_cmd(dir.path(), &m, "heartbeat", &code, SK, &[]);
    assert_eq!(c, 1);
    assert!(out.contains("92020011"), "{out}");

    // No Authorization at all; a wrong AK; a stale X-Sdk-Date.
    let url = format!(
        "{}/api/mkp-openapi-public/global/v1/license/activate",
        m.url
    );
    let r = http()
        .post(&url)
        .header("Content-Type", "application/json")
        .body(json!({"license": code}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = serde_json::from_str::<Value>(&r.text().unwrap()).unwrap();
    assert_eq!(v["error_code"], "APIGW.0301");
    let host = m.url.trim_start_matches("http://").to_string();
    let body = json!({"license": code}).to_string();
    for (ak, date, want) in [
        (
            "SOMEONEELSE",
            apig::format_sdk_date(chrono::Utc::now()),
            "APIGW.0301",
        ),
        (AK, "20200101T000000Z".to_string(), "APIGW.0303"),
    ] {
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Host".to_string(), host.clone()),
            ("X-Sdk-Date".to_string(), date.clone()),
        ];
        let names: Vec<String> = headers.iter().map(|(n, _)| n.to_lowercase()).collect();
        let sig = apig::sign(ak, SK, "POST", &url, &headers, &names, body.as_bytes()).unwrap();
        let mut req = http().post(&url).body(body.clone());
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        let r = req
            .header("Authorization", sig.authorization)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let v: Value = serde_json::from_str::<Value>(&r.text().unwrap()).unwrap();
        assert_eq!(v["error_code"], want, "{v}");
    }

    // Unknown code; unclaimed code; bad parameters; wrong content type.
    let p1 = "/api/mkp-openapi-public/global/v1/license/activate";
    let (s, v) = signed_post(&m, p1, &json!({"license": "PLNOSUCHCODE"}), SK);
    assert_eq!((s, v["error_code"].as_str().unwrap()), (200, "92020005"));
    let unclaimed = mint(&m, json!({"claimed": false}));
    let (_, v) = signed_post(&m, p1, &json!({"license": unclaimed}), SK);
    assert_eq!(v["error_code"], "92020004");
    admin(&m, "claim", json!({"license": unclaimed}));
    let (_, v) = signed_post(&m, p1, &json!({"license": unclaimed}), SK);
    assert_eq!(v["error_code"], "92020000", "{v}");
    let info: Value =
        serde_json::from_str(v["data"]["license_code_info"].as_str().unwrap()).unwrap();
    assert_eq!(info["status"], "ALIVE");
    let (s, v) = signed_post(&m, p1, &json!({"license": "X".repeat(65)}), SK);
    assert_eq!((s, v["error_code"].as_str().unwrap()), (400, "95000001"));
    let (_, v) = signed_post(
        &m,
        p1,
        &json!({"license": code, "real_effect_time": "2026-01-02"}),
        SK,
    );
    assert_eq!(v["error_code"], "92020002");

    // v2 batch: one illegal code refuses the whole batch.
    let p2 = "/api/mkp-openapi-public/global/v2/license/activate";
    let (_, v) = signed_post(&m, p2, &json!({"license_list": [code, "PLNOSUCHCODE"]}), SK);
    assert_eq!(v["error_code"], "92020020");
    let (_, v) = signed_post(&m, p2, &json!({"license_list": [code]}), SK);
    assert_eq!(v["error_code"], "92020000");

    // Software usage statistics: known active codes accepted, others listed as failed.
    let p3 = "/api/mkp-openapi-public/global/v2/license/software-usage-info";
    let body = json!({"usage_info": [
        {"license": code, "software_usage_Info": [{"id": "device-1"}, {"active_num": 12}]},
        {"license": "PLNOSUCHCODE", "software_usage_Info": [{"active_num": 1}]}
    ]});
    let (s, v) = signed_post(&m, p3, &body, SK);
    assert_eq!(s, 200);
    assert_eq!(v["error_code"], "92020000", "{v}");
    assert_eq!(
        v["data"]["check_fail_license_list"],
        json!(["PLNOSUCHCODE"])
    );
    let bad = json!({"usage_info": [{"license": code, "software_usage_Info": [{"id": "a", "active_num": 1}]}]});
    let (s, v) = signed_post(&m, p3, &bad, SK);
    assert_eq!((s, v["error_code"].as_str().unwrap()), (400, "95000001"));

    // Expiry: an expired code reads EXPIRED.
    admin(&m, "expire", json!({"license": code}));
    let (_, status) = heartbeat_status(dir.path(), &m, &code);
    assert_eq!(status, "EXPIRED");
}

#[test]
fn the_cli_refuses_bad_arguments_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let skf = write_key(dir.path(), "sk", SK);
    for (args, needle) in [
        (
            vec![
                "license",
                "activate",
                "",
                "--ak",
                AK,
                "--sk-file",
                &skf,
                "--endpoint",
                "http://127.0.0.1:9",
            ],
            "CODE",
        ),
        (
            vec![
                "license",
                "activate",
                "PLX",
                "--sk-file",
                &skf,
                "--endpoint",
                "http://127.0.0.1:9",
            ],
            "--ak",
        ),
        (
            vec![
                "license",
                "activate",
                "PLX",
                "--ak",
                AK,
                "--endpoint",
                "http://127.0.0.1:9",
            ],
            "--sk-file",
        ),
        (
            vec![
                "license",
                "activate",
                "PLX",
                "--ak",
                AK,
                "--sk-file",
                &skf,
                "--endpoint",
                "ftp://x",
            ],
            "--endpoint",
        ),
        (
            vec![
                "license",
                "activate",
                "PLX",
                "--ak",
                AK,
                "--sk-file",
                &skf,
                "--endpoint",
                "http://127.0.0.1:9",
                "--real-effect-time",
                "yesterday",
            ],
            "--real-effect-time",
        ),
    ] {
        let out = csm()
            .env("CSM_CONFIG_DIR", dir.path())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // A key (or key id) named nowhere is configuration (3); the rest are usage errors.
        let want = if needle == "--sk-file" || needle == "--ak" {
            3
        } else {
            2
        };
        assert_eq!(out.status.code(), Some(want), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Nothing listens on port 9: a network error, exit 4.
    let out = csm()
        .env("CSM_CONFIG_DIR", dir.path())
        .args([
            "license",
            "heartbeat",
            "PLX",
            "--ak",
            AK,
            "--sk-file",
            &skf,
            "--endpoint",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    // The URL once, then the cause.
    assert_eq!(err.matches("127.0.0.1:9").count(), 1, "{err}");
    assert!(
        err.contains("Connection refused") || err.contains("connection refused"),
        "{err}"
    );
}

#[test]
fn plain_sha256_callbacks_and_injected_internal_errors() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = Merchant::start(LICENSE_KEY, v2::LicenseInner::KeyedHmac);
    let plain = Merchant::start(LICENSE_KEY, v2::LicenseInner::PlainSha256);
    // With --license-plain-sha256 the plain reading verifies and the keyed one does not.
    for (merchant, want) in [(&plain, "000000"), (&keyed, "000001")] {
        let m = start_market_with(dir.path(), Some(&merchant.url), &["--license-plain-sha256"]);
        let code = mint(&m, json!({}));
        admin(&m, "claim", json!({"license": code}));
        let r = admin(
            &m,
            "release",
            json!({"license": code, "order_id": "CSUNSUB1"}),
        );
        assert_eq!(r["callback"]["result_code"], want, "{r}");
        let seen = merchant.seen();
        assert_eq!(seen.last().unwrap().body["orderId"], "CSUNSUB1");
    }
    // --fault license-internal-error: every open API answers 92020001.
    let m = start_market_with(dir.path(), None, &["--fault", "license-internal-error"]);
    let code = mint(&m, json!({}));
    let (s, v) = signed_post(
        &m,
        "/api/mkp-openapi-public/global/v1/license/activate",
        &json!({"license": code}),
        SK,
    );
    assert_eq!((s, v["error_code"].as_str().unwrap()), (500, "92020001"));
    // For the CLI that is an outage, not an answer about the code: exit 4, as unreachable.
    for what in ["heartbeat", "activate"] {
        let (c, out) = license_cmd(dir.path(), &m, what, &code, SK, &[]);
        assert_eq!(c, 4, "{what}: {out}");
        assert!(
            out.contains("92020001") && out.contains("try again later"),
            "{out}"
        );
    }
    // An error page without JSON from a gateway or proxy, by its status: 5xx is 4 too.
    let page = "<html>bad gateway</html>";
    let (url, _) = common::canned(
        format!(
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        ),
        1,
    );
    let skf = write_key(dir.path(), "client-sk", SK);
    let out = csm()
        .args(["license", "heartbeat", "PL0001", "--endpoint", &url])
        .args(["--ak", AK, "--sk-file", &skf])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("HTTP 502") && err.contains("bad gateway"),
        "{err}"
    );
}

/// A request as a raw server received it: request line, headers, body.
type Received = (String, Vec<(String, String)>, Vec<u8>);

/// One request to a raw loopback server answering `answer_len` bytes of non-JSON: returns
/// its URL and the request as received.
fn one_shot_server(answer_len: usize) -> (String, std::thread::JoinHandle<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').unwrap();
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let mut w = stream;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {answer_len}\r\nConnection: close\r\n\r\n"
        );
        let _ = w.write_all(head.as_bytes());
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = answer_len;
        while left > 0 {
            let n = left.min(chunk.len());
            if w.write_all(&chunk[..n]).is_err() {
                break; // csm stopped reading: expected past the cap
            }
            left -= n;
        }
        (request_line.trim_end().to_string(), headers, body)
    });
    (url, h)
}

#[test]
fn the_answer_is_read_up_to_1_mib_and_the_sent_host_is_the_signed_host() {
    let dir = tempfile::tempdir().unwrap();
    let (url, server) = one_shot_server(3 * 1024 * 1024);
    let skf = write_key(dir.path(), "client-sk", SK);
    let out = csm()
        .args([
            "license",
            "heartbeat",
            "PL0001",
            "--endpoint",
            &url,
            "--ak",
            AK,
            "--sk-file",
            &skf,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    assert!(err.lines().count() == 1 && err.len() < 400, "{err}");

    // What arrived verifies with the SK, Host included in the signature and as sent.
    let (line, headers, body) = server.join().unwrap();
    assert!(
        line.starts_with("POST /api/mkp-openapi-public/global/v1/license/heartbeat "),
        "{line}"
    );
    let auth = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        auth.contains("SignedHeaders=content-type;host;x-sdk-date"),
        "{auth}"
    );
    let host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(format!("http://{host}"), url);
    let full = format!("{url}{}", line.split(' ').nth(1).unwrap());
    let ok = apig::verify(SK, "POST", &full, &headers, &body).unwrap();
    assert!(ok, "signature over the request as received does not verify");
}

/// Runs `csm` with its output captured; a child still running after 20 s (a server that
/// started when it should have refused) is killed and reported as exit None.
fn run_bounded(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = csm()
        .env("CSM_CONFIG_DIR", dir.path())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let code = match child.try_wait().unwrap() {
        Some(s) => s.code(),
        None => {
            let _ = child.kill();
            None
        }
    };
    let out = child.wait_with_output().unwrap();
    (code, common::text(&out))
}

#[test]
fn endpoint_flags_refuse_credentials_and_bad_urls_without_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let skf = write_key(dir.path(), "sk", SK);
    let open = |endpoint: &str| {
        run_bounded(&[
            "license",
            "heartbeat",
            "PLX",
            "--ak",
            AK,
            "--sk-file",
            &skf,
            "--endpoint",
            endpoint,
        ])
    };
    let (code, text) = open("http://user:s3cret-pw@127.0.0.1:9/");
    assert_eq!(code, Some(2), "{text}");
    assert!(!text.contains("s3cret-pw"), "password echoed: {text}");
    assert!(
        text.contains("--endpoint") && text.contains("password"),
        "{text}"
    );
    let (code, text) = open("http://[::1");
    assert_eq!(code, Some(2), "{text}");
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    assert!(text.starts_with("csm: error: --endpoint"), "{text}");

    let (code, text) = run_bounded(&[
        "serve",
        "marketplace",
        "--listen",
        "127.0.0.1:0",
        "--merchant-endpoint",
        "ftp://u:pw-s3cret@127.0.0.1:1/x",
    ]);
    assert_eq!(code, Some(2), "{text}");
    assert!(!text.contains("pw-s3cret"), "password echoed: {text}");
    assert!(
        text.starts_with("csm: error: --merchant-endpoint"),
        "{text}"
    );
    let (code, text) = run_bounded(&[
        "serve",
        "marketplace",
        "--listen",
        "127.0.0.1:0",
        "--merchant-endpoint",
        "ftp://127.0.0.1:1/x",
    ]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("--merchant-endpoint") && text.contains("http"),
        "{text}"
    );
}

/// POSTs an admin request; returns (HTTP status, answer).
fn admin_raw(m: &Market, step: &str, body: Value) -> (u16, Value) {
    let r = http()
        .post(format!("{}/csm/license/{step}", m.url))
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().unwrap()).unwrap())
}

#[test]
fn admin_requests_refuse_bad_values_instead_of_dropping_them() {
    let dir = tempfile::tempdir().unwrap();
    let merchant = Merchant::start(LICENSE_KEY, v2::LicenseInner::KeyedHmac);
    let m = start_market(dir.path(), Some(&merchant.url));
    let code = mint(&m, json!({}));
    for (step, body, field) in [
        (
            "release",
            json!({"license": code, "order_id": 123}),
            "order_id",
        ),
        (
            "renew",
            json!({"license": code, "expire_time": "21000101000000", "product_id": 5}),
            "product_id",
        ),
    ] {
        let (status, v) = admin_raw(&m, step, body);
        assert_eq!(status, 400, "{step}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").starts_with(field),
            "{step}: {v}"
        );
    }
    // A value of the right type but the wrong form is named with its rule.
    for (body, want) in [
        (
            json!({"license": code, "expire_time": "abc"}),
            "expire_time \"abc\": must be UTC yyyyMMddHHmmss",
        ),
        (
            json!({"license": code}),
            "expire_time: required, UTC yyyyMMddHHmmss",
        ),
        (
            json!({"license": code, "expire_time": "21000101000000", "scene": "LATER"}),
            "scene \"LATER\": must be RENEWAL or UNSUBSCRIBE_RENEWAL_PERIOD",
        ),
        (
            json!({"license": code, "expire_time": "21000101000000", "test_flag": "2"}),
            "test_flag \"2\": must be \"0\" or \"1\"",
        ),
    ] {
        let (status, v) = admin_raw(&m, "renew", body);
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"], want, "{v}");
    }
    // Nothing was sent and nothing changed.
    assert!(merchant.seen().is_empty(), "{:?}", merchant.seen());
    let r = http()
        .get(format!("{}/csm/license/codes/{code}", m.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(v["status"], "CREATED", "{v}");
}

#[test]
fn a_code_not_shaped_like_the_marketplace_s_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let skf = write_key(dir.path(), "sk", SK);
    for (code, position) in [
        ("PL 1é", "position 3"),
        ("PLabc", "position 3"),
        ("abc", "does not start with PL"),
        ("XY1234", "does not start with PL"),
    ] {
        let (exit, text) = run_bounded(&[
            "license",
            "heartbeat",
            code,
            "--ak",
            AK,
            "--sk-file",
            &skf,
            "--endpoint",
            "http://127.0.0.1:9",
        ]);
        assert_eq!(exit, Some(2), "{code}: {text}");
        assert!(text.starts_with("csm: error: CODE"), "{code}: {text}");
        assert!(text.contains(position), "{code}: {text}");
        // The rule is named, whatever broke it.
        assert!(
            text.contains("a marketplace code is PL, then upper-case letters and digits"),
            "{code}: {text}"
        );
    }
}

#[test]
fn a_heartbeat_reports_an_alive_code_past_its_expiry_as_expired() {
    let dir = tempfile::tempdir().unwrap();
    let m = start_market(dir.path(), None);
    let code = mint(&m, json!({"expire_time": "20200101000000"}));
    // Activation does not look at the expiry: the code becomes ALIVE.
    let (c, out) = license_cmd(dir.path(), &m, "activate", &code, SK, &[]);
    assert_eq!(c, 0, "{out}");
    assert!(out.contains("status=ALIVE"), "{out}");
    // Stored ALIVE, reported EXPIRED, and the heartbeat exits 6 (outside its dates).
    assert_eq!(
        heartbeat_status(dir.path(), &m, &code),
        (6, "EXPIRED".into())
    );
    let r = http()
        .get(format!("{}/csm/license/codes/{code}", m.url))
        .send()
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(v["status"], "ALIVE", "{v}");
    assert_eq!(v["effective_status"], "EXPIRED", "{v}");
}

#[test]
fn callbacks_are_sent_as_csm_send_sends_them_and_the_merchant_s_answer_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let (url, merchant) = one_shot_server(3 * 1024 * 1024);
    let m = start_market(dir.path(), Some(&format!("{url}/produce?channel=a")));
    let code = mint(&m, json!({}));
    let r = admin(&m, "release", json!({"license": code}));
    let error = r["callback"]["error"].as_str().unwrap_or("");
    assert!(error.contains("larger than 1048576 bytes"), "{r}");
    let (line, headers, body) = merchant.join().unwrap();
    assert!(
        line.starts_with("POST /produce?channel=a&signature="),
        "{line}"
    );
    let ct = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    assert_eq!(ct, Some("application/json;charset=UTF-8"));
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["activity"], "releaseLicenseCode");
    assert_eq!(sent["license"], code.as_str());
}

#[test]
fn a_v2_heartbeat_batch_with_an_illegal_code_counts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = start_market(dir.path(), None);
    let alive = mint(&m, json!({}));
    let fresh = mint(&m, json!({}));
    let (c, out) = license_cmd(dir.path(), &m, "activate", &alive, SK, &[]);
    assert_eq!(c, 0, "{out}");
    let (status, v) = signed_post(
        &m,
        "/api/mkp-openapi-public/global/v2/license/heartbeat",
        &json!({"license_list": [alive, fresh]}),
        SK,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["error_code"], "92020020", "{v}");
    let r = http()
        .get(format!("{}/csm/license/codes/{alive}", m.url))
        .send()
        .unwrap();
    let row: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(row["heartbeats"], 0, "a refused batch counted: {row}");
}

/// A merchant on 127.0.0.1 answering 000000 to `calls` callbacks, each on its own thread.
/// It holds its answer to refreshLicenseCode until told to go on, and says when that
/// callback has arrived, so a test can run another step while a renewal is in flight.
fn held_renewal_merchant(
    calls: usize,
) -> (
    String,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/produce", listener.local_addr().unwrap());
    let (arrived_tx, arrived_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Arc::new(Mutex::new(go_rx));
    std::thread::spawn(move || {
        for _ in 0..calls {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let arrived = arrived_tx.clone();
            let go = go_rx.clone();
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((n, v)) = line.split_once(':') {
                        if n.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                if String::from_utf8_lossy(&body).contains("refreshLicenseCode") {
                    let _ = arrived.send(());
                    let _ = go.lock().unwrap().recv_timeout(Duration::from_secs(4));
                }
                let answer = r#"{"resultCode":"000000","resultMsg":"success"}"#;
                let mut w = stream;
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    (url, arrived_rx, go_tx)
}

#[test]
fn a_step_that_lost_a_race_during_its_callback_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    // freeze, renew (held), unfreeze.
    let (url, arrived, go) = held_renewal_merchant(3);
    let m = start_market(dir.path(), Some(&url));
    let code = mint(&m, json!({}));
    let (c, out) = license_cmd(dir.path(), &m, "activate", &code, SK, &[]);
    assert_eq!(c, 0, "{out}");
    admin(&m, "freeze", json!({"license": code}));
    // A renewal of the FROZEN code, held at the merchant...
    let renew = {
        let url = m.url.clone();
        let code = code.clone();
        std::thread::spawn(move || {
            let r = http()
                .post(format!("{url}/csm/license/renew"))
                .body(json!({"license": code, "expire_time": "21000101000000"}).to_string())
                .send()
                .unwrap();
            let status = r.status().as_u16();
            (
                status,
                serde_json::from_str::<Value>(&r.text().unwrap()).unwrap(),
            )
        })
    };
    arrived
        .recv_timeout(Duration::from_secs(20))
        .expect("the renewal callback arrived");
    // ...while the code is unfrozen.
    let r = admin(&m, "unfreeze", json!({"license": code}));
    assert_eq!(r["license"]["status"], "ALIVE", "{r}");
    go.send(()).unwrap();
    let (status, v) = renew.join().unwrap();
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("changed to ALIVE"),
        "{v}"
    );
    let r = http()
        .get(format!("{}/csm/license/codes/{code}", m.url))
        .send()
        .unwrap();
    let row: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(
        row["status"], "ALIVE",
        "the unfreeze was overwritten: {row}"
    );
}

#[test]
fn license_calls_reach_production_only_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let skf = write_key(dir.path(), "client-sk", SK);
    for what in ["activate", "heartbeat"] {
        let out = csm()
            .env_remove("CSM_MARKETPLACE_ENDPOINT")
            .env("CSM_CONFIG_DIR", dir.path())
            .stdin(std::process::Stdio::null())
            .args(["license", what, "PL1", "--ak", AK, "--sk-file", &skf])
            .output()
            .unwrap();
        let text = common::text(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {text}");
        assert!(
            text.contains("production marketplace https://mkt.myhuaweicloud.com")
                && text.contains("--yes"),
            "{what}: {text}"
        );
    }
}

#[test]
fn license_timeouts_read_like_every_duration_flag() {
    let dir = tempfile::tempdir().unwrap();
    let skf = write_key(dir.path(), "client-sk", SK);
    for (value, ok) in [
        ("1500ms", true),
        ("2", true),
        ("0.5s", true),
        ("11m", false),
        ("soon", false),
    ] {
        let out = csm()
            .env("CSM_CONFIG_DIR", dir.path())
            .args(["license", "heartbeat", "PL1", "--ak", AK, "--sk-file", &skf])
            .args(["--endpoint", "http://127.0.0.1:9", "--timeout", value])
            .output()
            .unwrap();
        let text = common::text(&out);
        // A good value gets as far as the network (nothing listens on port 9: exit 4).
        let want = if ok { 4 } else { 2 };
        assert_eq!(out.status.code(), Some(want), "{value}: {text}");
        if !ok {
            assert!(text.contains("--timeout") && text.contains(value), "{text}");
            assert!(
                text.contains("between 1ms and 10m") || text.contains("expected a duration"),
                "{text}"
            );
        }
    }
}

#[test]
fn the_stand_in_marketplace_listens_on_loopback_only() {
    // Its admin API has no authentication: a public address is refused before it listens.
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let o = csm()
            .args(["serve", "marketplace", "--listen", listen])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{listen}: {err}");
        assert!(
            err.contains(&format!("--listen {listen}: not a loopback address")),
            "{err}"
        );
    }
}

/// A real effect time a little after the codes minted now (UTC yyyyMMddHHmmss).
fn after_minting() -> String {
    (chrono::Utc::now() + chrono::Duration::minutes(1))
        .format("%Y%m%d%H%M%S")
        .to_string()
}

#[test]
fn a_real_effect_time_before_the_order_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = start_market(dir.path(), None);
    let code = mint(&m, json!({}));
    let other = mint(&m, json!({}));
    // §2.6.1: not earlier than the order time. The spec names no code: the parameter error.
    let (c, out) = license_cmd(
        dir.path(),
        &m,
        "activate",
        &code,
        SK,
        &["--real-effect-time", "20200101000000"],
    );
    assert_eq!(c, 1, "{out}");
    assert!(
        out.contains("92020002")
            && out.contains(
                "real_effect_time 20200101000000: must not be earlier than the order time"
            ),
        "{out}"
    );
    let p2 = "/api/mkp-openapi-public/global/v2/license/activate";
    let (_, v) = signed_post(
        &m,
        p2,
        &json!({"license_list": [code, other], "real_effect_time": "20200101000000"}),
        SK,
    );
    assert_eq!(v["error_code"], "92020002", "{v}");
    // Nothing was activated by the refusals.
    for c in [&code, &other] {
        let r = http()
            .get(format!("{}/csm/license/codes/{c}", m.url))
            .send()
            .unwrap();
        let v: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
        assert_eq!(v["status"], "CREATED", "{v}");
    }
    // A time after the order is taken and kept as the activation time.
    let started = after_minting();
    let (c, out) = license_cmd(
        dir.path(),
        &m,
        "activate",
        &code,
        SK,
        &["--real-effect-time", &started],
    );
    assert_eq!(c, 0, "{out}");
    let r = http()
        .get(format!("{}/csm/license/codes/{code}", m.url))
        .send()
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(v["activate_time"], started.as_str(), "{v}");
}

#[test]
fn a_callback_that_never_reached_the_merchant_is_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("http://127.0.0.1:{}/produce", common::closed_port());
    let m = start_market(dir.path(), Some(&closed));
    let code = mint(&m, json!({}));
    let r = admin(&m, "release", json!({"license": code}));
    let cb = &r["callback"];
    assert_eq!(cb["sent"], false, "{r}");
    assert_eq!(cb["http_status"], Value::Null, "{r}");
    let error = cb["error"].as_str().unwrap_or("");
    assert!(error.to_lowercase().contains("connection refused"), "{r}");
    // The state changes all the same, as the marketplace's does (it retries the callback).
    assert_eq!(r["license"]["status"], "RELEASED", "{r}");
    // A TLS handshake that runs out of time: connected, but nothing was written.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let https = format!("https://{}/produce", silent.local_addr().unwrap());
    let m = start_market(dir.path(), Some(&https));
    let code = mint(&m, json!({}));
    let r = admin(&m, "release", json!({"license": code}));
    assert_eq!(r["callback"]["sent"], false, "{r}");
    assert!(
        r["callback"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("TLS handshake"),
        "{r}"
    );
    drop(silent);
    // A callback the merchant answered was sent.
    let merchant = Merchant::start(LICENSE_KEY, v2::LicenseInner::KeyedHmac);
    let m = start_market(dir.path(), Some(&merchant.url));
    let code = mint(&m, json!({}));
    let r = admin(&m, "release", json!({"license": code}));
    assert_eq!(r["callback"]["sent"], true, "{r}");
    assert_eq!(r["callback"]["result_code"], "000000", "{r}");
}
