//! The `csm` binary as users run it: sign, verify, crypto, init, completions, exit codes,
//! and that no secret ever reaches an output stream.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

const KEY: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
const BODY: &str = r#"{"activity":"newInstance","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}"#;
const TS: &str = "1680508066618";
const NONCE: &str = "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA";
const SIG: &str = "0a83c058a9533e2a847e95691e7f16494456ee876383a05c04a34c7dfee74d64";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), format!("{KEY}\n")).unwrap();
        std::fs::write(dir.path().join("kit-key"), "kit-key-0000-1111\n").unwrap();
        std::fs::write(dir.path().join("body.json"), BODY).unwrap();
        Env { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// A csm command with a clean environment: no CSM_* from the caller, config in the tempdir.
    fn csm(&self) -> Command {
        let mut c = Command::from_std(crate::common::csm(&self.path("config")));
        c.current_dir(self.dir.path());
        c
    }
}

fn out(c: &mut Command) -> (i32, String, String) {
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn v2_args(scheme: &str) -> Vec<&str> {
    vec![
        scheme,
        "--key-file",
        "key",
        "--body-file",
        "body.json",
        "--timestamp",
        TS,
        "--nonce",
        NONCE,
    ]
}

#[test]
fn sign_quiet_prints_the_signature_alone() {
    let e = Env::new();
    let (code, stdout, _) = out(e.csm().args(["-q", "sign"]).args(v2_args("saas-v2")));
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("{SIG}\n"));
    let (_, upper, _) = out(e
        .csm()
        .args(["-q", "sign"])
        .args(v2_args("saas-v2"))
        .arg("--uppercase"));
    assert_eq!(upper.trim(), SIG.to_uppercase());
}

/// A key file with a space left at the end of the key: used as it is (another signature),
/// and the warning names the file, not the key.
#[test]
fn whitespace_around_a_key_is_kept_and_named() {
    let e = Env::new();
    e.write("key", format!("{KEY} \n"));
    let (code, stdout, err) = out(e.csm().args(["-q", "sign"]).args(v2_args("saas-v2")));
    assert_eq!(code, 0, "{err}");
    assert_ne!(stdout.trim(), SIG);
    assert!(
        err.contains("warning: --key-file key: the key starts or ends with whitespace"),
        "{err}"
    );
    assert!(!err.contains(KEY), "{err}");
}

/// Signs with `args` (no -q): the text output, the bare signature (-q) and the JSON.
fn sign_three_ways(e: &Env, args: &[&str]) -> (String, String, serde_json::Value) {
    let (code, text, err) = out(e.csm().arg("sign").args(args));
    assert_eq!(code, 0, "{args:?}: {err}");
    let (_, sig, _) = out(e.csm().args(["-q", "sign"]).args(args));
    let (_, json, _) = out(e.csm().args(["--json", "sign"]).args(args));
    let json = serde_json::from_str(&json).unwrap();
    (text, sig.trim().to_string(), json)
}

#[test]
fn sign_prints_every_value_that_travels_with_the_signature() {
    let e = Env::new();
    e.write(
        "kit.json",
        r#"{"instanceId":"i-1","timeStamp":"20220413093539534"}"#,
    );
    let upper = SIG.to_uppercase();
    // Query-signed: one line to append to the address.
    let (text, sig, json) = sign_three_ways(&e, &v2_args("saas-v2"));
    let query = format!("signature={upper}&timestamp={TS}&nonce={NONCE}");
    assert_eq!(text, format!("{query}\n"));
    assert_eq!(sig, SIG);
    assert_eq!(json["query"], query.as_str());
    let (text, sig, json) = sign_three_ways(&e, &v2_args("license"));
    let query = format!(
        "signature={}&timestamp={TS}&nonce={NONCE}",
        sig.to_uppercase()
    );
    assert_eq!(
        (text.trim(), json["query"].as_str()),
        (query.as_str(), Some(query.as_str()))
    );
    let v1 = [
        "saas-v1",
        "--key-file",
        "key",
        "--param",
        "activity=newInstance",
        "--timestamp",
        "20200727073711903",
    ];
    let (text, token, json) = sign_three_ways(&e, &v1);
    let encoded = token
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let query = format!("activity=newInstance&timeStamp=20200727073711903&authToken={encoded}");
    assert_eq!(text.trim(), query);
    assert_eq!(json["query"], query.as_str());
    // Header-signed: one `Name: value` line each.
    let kit = [
        "kit",
        "--key-file",
        "kit-key",
        "--body-file",
        "body.json",
        "--timestamp",
        TS,
        "--nonce",
        NONCE,
    ];
    let (text, sig, json) = sign_three_ways(&e, &kit);
    let upper = sig.to_uppercase();
    assert_eq!(
        text,
        format!("x-sign: {upper}\nx-timestamp: {TS}\nx-nonce: {NONCE}\n")
    );
    assert_eq!(json["headers"]["x-sign"], upper.as_str());
    let usage = [
        "usage",
        "--key-file",
        "key",
        "--body-file",
        "body.json",
        "--timestamp",
        TS,
        "--nonce",
        "n-1",
    ];
    let (text, sig, json) = sign_three_ways(&e, &usage);
    assert_eq!(text, format!("signature: {sig}\nts: {TS}\nnonce: n-1\n"));
    assert_eq!(json["headers"]["ts"], TS);
    let (text, sig, json) = sign_three_ways(
        &e,
        &[
            "saas-v1-kit",
            "--key-file",
            "kit-key",
            "--body-file",
            "kit.json",
        ],
    );
    assert_eq!(text, format!("authToken: {sig}\n"));
    assert_eq!(json["headers"]["authToken"], sig.as_str());
    let (text, sig, json) = sign_three_ways(
        &e,
        &["body-sign", "--key-file", "key", "--body-file", "body.json"],
    );
    assert_eq!(text, format!("Body-Sign: {sig}\n"));
    assert!(sig.starts_with("sign_type=\"HMAC-SHA256\""), "{sig}");
    assert_eq!(json["headers"]["Body-Sign"], sig.as_str());
    let apig = [
        "apig",
        "--ak",
        "AK1",
        "--sk-file",
        "key",
        "--url",
        "https://h/p",
        "--date",
        "20240317T144237Z",
    ];
    let (text, sig, json) = sign_three_ways(&e, &apig);
    assert_eq!(
        text,
        format!("X-Sdk-Date: 20240317T144237Z\nAuthorization: {sig}\n")
    );
    assert_eq!(json["headers"]["Authorization"], sig.as_str());
    for out in [&text, &sig] {
        assert!(!out.contains(KEY), "key leaked");
    }
    // The whole header, pasted as the log shows it, verifies; under another AK it would be
    // refused by the gateway whatever its bytes, and says so.
    let header = format!("Authorization: {sig}");
    let verify = |ak: &str| {
        let mut args = apig.to_vec();
        args[2] = ak;
        out(e
            .csm()
            .arg("verify")
            .args(&args)
            .args(["--signature", &header]))
    };
    let (code, stdout, stderr) = verify("AK1");
    assert_eq!(code, 0, "{stdout} {stderr}");
    let (code, stdout, _) = verify("AK2");
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("problem:") && stdout.contains("Access=AK1"),
        "{stdout}"
    );
}

/// `name=value` pairs of a query string (values here need no decoding but `%2B`, `%2F`, `%3D`).
fn query_value(query: &str, name: &str) -> String {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} not in {query}"))
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=")
}

#[test]
fn generated_timestamp_and_nonce_are_printed_and_verify() {
    let e = Env::new();
    let base = ["--key-file", "key", "--body-file", "body.json"];
    let (_, q, _) = out(e.csm().args(["sign", "saas-v2"]).args(base));
    let q = q.trim();
    let (code, stdout, _) = out(e.csm().args(["verify", "saas-v2"]).args(base).args([
        "--timestamp",
        &query_value(q, "timestamp"),
        "--nonce",
        &query_value(q, "nonce"),
        "--signature",
        &query_value(q, "signature"),
    ]));
    assert_eq!(code, 0, "{q}: {stdout}");
    let (_, lines, _) = out(e.csm().args(["sign", "usage"]).args(base));
    let h = |n: &str| {
        lines
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{n}: ")))
            .unwrap_or_else(|| panic!("{n} not in {lines}"))
            .to_string()
    };
    let (code, stdout, _) = out(e.csm().args(["verify", "usage"]).args(base).args([
        "--timestamp",
        &h("ts"),
        "--nonce",
        &h("nonce"),
        "--signature",
        &h("signature"),
    ]));
    assert_eq!(code, 0, "{lines}: {stdout}");
    let v1 = ["--key-file", "key", "--param", "activity=newInstance"];
    let (_, q, _) = out(e.csm().args(["sign", "saas-v1"]).args(v1));
    let q = q.trim();
    let (code, stdout, _) = out(e.csm().args(["verify", "saas-v1"]).args(v1).args([
        "--timestamp",
        &query_value(q, "timeStamp"),
        "--signature",
        &query_value(q, "authToken"),
    ]));
    assert_eq!(code, 0, "{q}: {stdout}");
    // As a log shows it: in quotes, URL-encoded, or in the whole callback address.
    let token = query_value(q, "authToken");
    let encoded: String =
        percent_encoding::utf8_percent_encode(&token, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let ts = query_value(q, "timeStamp");
    for received in [format!("\"{token}\""), encoded.clone()] {
        let (code, stdout, stderr) = out(e.csm().args(["verify", "saas-v1"]).args(v1).args([
            "--timestamp",
            &ts,
            "--signature",
            &received,
        ]));
        assert_eq!(code, 0, "{received}: {stdout} {stderr}");
    }
    let url = format!("https://seller.example/produce?timeStamp={ts}&authToken={encoded}");
    let (code, stdout, stderr) = out(e.csm().args([
        "verify",
        "saas-v1",
        "--key-file",
        "key",
        "--param",
        "activity=newInstance",
        "--url",
        &url,
    ]));
    assert_eq!(code, 0, "{url}: {stdout} {stderr}");
}

/// The request a `csm sign --curl` command sends, as a raw HTTP capture.
fn capture_of_curl(curl: &str) -> String {
    let unquote = |s: &str| {
        s.trim()
            .trim_end_matches('\\')
            .trim()
            .trim_matches('\'')
            .to_string()
    };
    let mut lines = curl.lines();
    let first = lines.next().unwrap();
    let (method, url) = first
        .strip_prefix("curl -sS -i -X ")
        .and_then(|r| r.split_once(' '))
        .unwrap();
    let url = unquote(url);
    let target = &url[url.find("://").unwrap() + 3..];
    let target = &target[target.find('/').unwrap()..];
    let mut headers = Vec::new();
    let mut body = String::new();
    for l in lines {
        let l = l.trim();
        if let Some(h) = l.strip_prefix("-H ") {
            headers.push(unquote(h));
        } else if let Some(b) = l.strip_prefix("--data-binary ") {
            body = unquote(b);
        }
    }
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: isv.example.com\r\n");
    for h in headers {
        s.push_str(&format!("{h}\r\n"));
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s
}

#[test]
fn sign_curl_prints_the_whole_signed_request() {
    let e = Env::new();
    e.write(
        "kit.json",
        r#"{"instanceId":"i-1","timeStamp":"20220413093539534"}"#,
    );
    // Pretty-printed on purpose: the canonical bytes that were signed are the ones sent.
    e.write("pretty.json", BODY.replace(',', ",\n  "));
    let now = "1700000000000";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "saas-v2",
                "--key-file",
                "key",
                "--body-file",
                "pretty.json",
                "--url",
                "https://isv.example.com/produce",
            ],
            "saas-v2",
        ),
        (
            vec![
                "kit",
                "--key-file",
                "kit-key",
                "--body-file",
                "kit.json",
                "--url",
                "https://isv.example.com/produceAPI/v2/tenantSync",
            ],
            "kit",
        ),
        (
            vec![
                "saas-v1",
                "--key-file",
                "key",
                "--param",
                "activity=newInstance",
                "--url",
                "https://isv.example.com/produce?channel=a+b",
            ],
            "saas-v1",
        ),
        (
            vec![
                "saas-v1-kit",
                "--key-file",
                "kit-key",
                "--body-file",
                "kit.json",
                "--url",
                "https://isv.example.com/produceAPI/tenantSync",
            ],
            "saas-v1-kit",
        ),
    ];
    for (args, scheme) in cases {
        let (code, curl, err) = out(e
            .csm()
            .env("CSM_NOW", now)
            .args(["sign", "--curl"])
            .args(&args));
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(curl.starts_with("curl -sS -i -X "), "{curl}");
        assert!(
            !curl.contains(KEY) && !curl.contains("kit-key-0000"),
            "key leaked: {curl}"
        );
        let cap = e.write("curl.http", capture_of_curl(&curl));
        let (code, stdout, err) = out(e
            .csm()
            .env("CSM_NOW", now)
            .args(["verify", "request"])
            .arg(&cap)
            .args(["--key-file", "key", "--kit-key-file", "kit-key"]));
        assert_eq!(code, 0, "{curl}\n{stdout}{err}");
        assert!(stdout.contains(scheme), "{stdout}");
    }
    // The profile's endpoint is the address when --url is absent; --json adds the command.
    init_v2_profile(&e, "p");
    let (code, stdout, err) = out(e
        .csm()
        .env("CSM_PROFILE", "p")
        .args(["--json", "sign", "--curl"])
        .args(v2_args("license")));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let want = format!(
        "'https://isv.example.com/produce?{}'",
        v["query"].as_str().unwrap()
    );
    assert!(v["curl"].as_str().unwrap().contains(&want), "{stdout}");
    // No address known: a usage error naming --url; a reply is no request.
    for (args, needle) in [
        (
            v2_args("saas-v2"),
            "--url: required for --curl with saas-v2",
        ),
        (
            vec!["kit", "--key-file", "kit-key", "--body-file", "kit.json"],
            "--url: required for --curl with kit",
        ),
        (
            vec!["usage", "--key-file", "key", "--body-file", "body.json"],
            "--url: required for --curl with usage",
        ),
        (
            vec!["body-sign", "--key-file", "key", "--body-file", "body.json"],
            "--curl: body-sign signs a reply",
        ),
    ] {
        let (code, stdout, err) = out(e.csm().args(["sign", "--curl"]).args(&args));
        assert_eq!(code, 2, "{args:?}: {stdout}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn sign_json_names_every_intermediate_and_masks_the_key() {
    let e = Env::new();
    let (code, stdout, _) = out(e.csm().args(["sign", "--json"]).args(v2_args("saas-v2")));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["signature"], SIG);
    assert_eq!(
        v["inner_hmac_hex"],
        "39a6939ce9492308ad515570323a1c443ef061cee7060dfadb81db1d5c9f6920"
    );
    assert_eq!(v["canonical_body"], BODY);
    assert!(v["canonical_request"]
        .as_str()
        .unwrap()
        .starts_with("<access-key>"));
    assert!(!stdout.contains(KEY));
}

#[test]
fn key_from_env_and_stdin() {
    let e = Env::new();
    let (code, stdout, _) = out(e.csm().env("CSM_ACCESS_KEY", KEY).args([
        "-q",
        "sign",
        "saas-v2",
        "--body-file",
        "body.json",
        "--timestamp",
        TS,
        "--nonce",
        NONCE,
    ]));
    assert_eq!((code, stdout.trim()), (0, SIG));
    let (code, stdout, _) = out(e.csm().write_stdin(format!("{KEY}\n")).args([
        "-q",
        "sign",
        "saas-v2",
        "--key-file",
        "-",
        "--body-file",
        "body.json",
        "--timestamp",
        TS,
        "--nonce",
        NONCE,
    ]));
    assert_eq!((code, stdout.trim()), (0, SIG));
}

#[test]
fn every_scheme_signs_and_verifies_its_own_output() {
    let e = Env::new();
    let kit_body = e.write("kit.json", r#"{"flag":1,"instanceId":"i-1","tenantId":"t1","testFlag":0,"timeStamp":"20220413093539534"}"#);
    let usage = e.write("usage.json", r#"{"usage_records":[{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z","instance_id":"i-1","metering_sn":"sn-1","record_time":"20220809T091000Z","usage_value":"99"}]}"#);
    // Unsorted and pretty-printed: signed through its canonical form.
    let pretty = e.write(
        "pretty.json",
        "{\n  \"testFlag\": \"1\",\n  \"activity\": \"newInstance\"\n}\n",
    );
    let kit_body = kit_body.to_str().unwrap();
    let usage = usage.to_str().unwrap();
    let pretty = pretty.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "saas-v2",
            "--key-file",
            "key",
            "--body-file",
            pretty,
            "--timestamp",
            TS,
            "--nonce",
            NONCE,
        ],
        vec![
            "kit",
            "--key-file",
            "kit-key",
            "--body-file",
            pretty,
            "--timestamp",
            TS,
            "--nonce",
            NONCE,
        ],
        vec![
            "saas-v1",
            "--key-file",
            "key",
            "--param",
            "activity=newInstance",
            "--param",
            "customerName=张 三+x",
            "--timestamp",
            "20200727073711903",
        ],
        vec!["saas-v1-kit", "--key-file", "key", "--body-file", kit_body],
        vec!["body-sign", "--key-file", "key", "--body-file", "body.json"],
        vec![
            "saas-v2",
            "--key-file",
            "key",
            "--body-file",
            "body.json",
            "--timestamp",
            TS,
            "--nonce",
            NONCE,
        ],
        vec![
            "kit",
            "--key-file",
            "kit-key",
            "--body-file",
            kit_body,
            "--timestamp",
            TS,
            "--nonce",
            NONCE,
        ],
        vec![
            "license",
            "--key-file",
            "key",
            "--body-file",
            "body.json",
            "--timestamp",
            TS,
            "--nonce",
            NONCE,
        ],
        vec![
            "usage",
            "--key-file",
            "key",
            "--body-file",
            usage,
            "--timestamp",
            TS,
            "--nonce",
            "n-1",
        ],
        vec![
            "apig",
            "--ak",
            "AK1",
            "--sk-file",
            "key",
            "--url",
            "https://mkt.myhuaweicloud.com/api/x?b=1&a=2",
            "--header",
            "Content-Type: application/json",
            "--date",
            "20240317T144237Z",
        ],
    ];
    for args in cases {
        let (code, sig, err) = out(e.csm().args(["-q", "sign"]).args(&args));
        assert_eq!(code, 0, "{args:?}: {err}");
        let sig = sig.trim().to_string();
        // The plain path (no intermediates kept) prints what `--json` computes step by step.
        let (code, detail, err) = out(e.csm().args(["sign", "--json"]).args(&args));
        assert_eq!(code, 0, "{args:?}: {err}");
        let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
        let field = match args[0] {
            "saas-v1" | "saas-v1-kit" => "auth_token",
            "body-sign" => "header_value",
            "apig" => "authorization",
            _ => "signature",
        };
        assert_eq!(detail[field].as_str(), Some(sig.as_str()), "{args:?}");
        let (code, stdout, err) = out(e
            .csm()
            .arg("verify")
            .args(&args)
            .args(["--signature", &sig]));
        assert_eq!(code, 0, "{args:?}: {stdout} {err}");
        assert!(stdout.starts_with("ok:"), "{args:?}: {stdout}");
        // One character changed: a mismatch, exit 1.
        let mut tampered: Vec<char> = sig.chars().collect();
        let i = tampered.len() - 3;
        tampered[i] = if tampered[i] == '0' { '1' } else { '0' };
        let tampered: String = tampered.into_iter().collect();
        let (code, stdout, _) = out(e
            .csm()
            .arg("verify")
            .args(&args)
            .args(["--signature", &tampered]));
        assert_eq!(code, 1, "{args:?}: {stdout}");
        assert!(stdout.contains("does not match"), "{args:?}: {stdout}");
        assert!(!stdout.contains(KEY), "{args:?}: key leaked");
    }
}

#[test]
fn doctor_names_the_kit_key_mix_up_and_seconds() {
    let e = Env::new();
    let (_, kit_sig, _) = out(e.csm().args(["-q", "sign"]).args([
        "saas-v2",
        "--key-file",
        "kit-key",
        "--body-file",
        "body.json",
        "--timestamp",
        TS,
        "--nonce",
        NONCE,
    ]));
    let (code, stdout, _) = out(e.csm().arg("verify").args(v2_args("saas-v2")).args([
        "--kit-key-file",
        "kit-key",
        "--signature",
        kit_sig.trim(),
    ]));
    assert_eq!(code, 1);
    assert!(
        stdout.contains("likely cause:  signed with the Kit key instead"),
        "{stdout}"
    );
    assert!(stdout.contains("signed string: <access-key>"), "{stdout}");

    let (_, secs, _) = out(e.csm().args(["-q", "sign"]).args([
        "saas-v2",
        "--key-file",
        "key",
        "--body-file",
        "body.json",
        "--timestamp",
        "1680508066",
        "--nonce",
        NONCE,
    ]));
    let (code, stdout, _) = out(e
        .csm()
        .args(["verify", "--json"])
        .args(v2_args("saas-v2"))
        .args(["--signature", secs.trim()]));
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["likely_cause"],
        "timestamp in seconds instead of milliseconds"
    );
    assert_eq!(v["valid"], false);
}

fn capture(path_and_query: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut s = format!("POST {path_and_query} HTTP/1.1\r\nHost: isv.example.com\r\n");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s
}

#[test]
fn verify_request_detects_the_scheme_and_checks_the_window() {
    let e = Env::new();
    let now = "1700000000000";
    let sig = |ts: &str| {
        let (_, s, _) = out(e.csm().args(["-q", "sign"]).args([
            "saas-v2",
            "--key-file",
            "key",
            "--body-file",
            "body.json",
            "--timestamp",
            ts,
            "--nonce",
            "N1",
            "--uppercase",
        ]));
        s.trim().to_string()
    };
    let fresh = e.write(
        "fresh.http",
        capture(
            &format!("/produce?signature={}&timestamp={now}&nonce=N1", sig(now)),
            &[("Content-Type", "application/json")],
            BODY,
        ),
    );
    let (code, stdout, err) = out(e
        .csm()
        .env("CSM_NOW", now)
        .args(["verify", "request"])
        .arg(&fresh)
        .args(["--key-file", "key"]));
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("saas-v2"), "{stdout}");

    let old = "1699999000000";
    let stale = e.write(
        "stale.http",
        capture(
            &format!("/produce?signature={}&timestamp={old}&nonce=N1", sig(old)),
            &[],
            BODY,
        ),
    );
    let (code, stdout, _) = out(e
        .csm()
        .env("CSM_NOW", now)
        .args(["verify", "request"])
        .arg(&stale)
        .args(["--key-file", "key"]));
    assert_eq!(code, 1, "{stdout}");
    // Said once, as a problem, and the right way round: the capture is 1000 s old.
    assert_eq!(stdout.matches("stale timestamp").count(), 1, "{stdout}");
    assert!(stdout.contains("stale timestamp: 1000 s ago"), "{stdout}");

    // The same capture, pretty-printed by a proxy log: raw bytes differ, canonical form agrees.
    let pretty = BODY.replace(",", ",\n  ");
    let p = e.write(
        "pretty.http",
        capture(
            &format!("/produce?signature={}&timestamp={now}&nonce=N1", sig(now)),
            &[],
            &pretty,
        ),
    );
    let (code, stdout, _) = out(e
        .csm()
        .env("CSM_NOW", now)
        .args(["verify", "request"])
        .arg(&p)
        .args(["--key-file", "key"]));
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn verify_kit_request_with_the_kit_key() {
    let e = Env::new();
    let body = r#"{"flag":1,"instanceId":"i-1","tenantId":"t1","testFlag":0,"timeStamp":"20220413093539534"}"#;
    e.write("kit.json", body);
    let (_, xs, _) = out(e.csm().args(["-q", "sign"]).args([
        "kit",
        "--key-file",
        "kit-key",
        "--body-file",
        "kit.json",
        "--timestamp",
        "1700000000000",
        "--nonce",
        "N2",
    ]));
    let cap = e.write(
        "kit.http",
        capture(
            "/produceAPI/v2/tenantSync",
            &[
                ("x-sign", xs.trim()),
                ("x-timestamp", "1700000000000"),
                ("x-nonce", "N2"),
            ],
            body,
        ),
    );
    let (code, stdout, err) = out(e
        .csm()
        .env("CSM_NOW", "1700000001000")
        .args(["verify", "request"])
        .arg(&cap)
        .args(["--kit-key-file", "kit-key"]));
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("kit"), "{stdout}");
}

#[test]
fn verify_response_body_sign_header_name_and_value() {
    let e = Env::new();
    let body = r#"{"resultCode":"000000","resultMsg":"success.","instanceId":"61e834ba-7b97-4418-b8f7-e5345137278c"}"#;
    let good = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nBody-Sign: sign_type=\"HMAC-SHA256\", signature= \"uqKPTNm33Dc+9kwcxTRY/3+kbLaXYijolEiIZ7zUM9U=\"\r\n\r\n{body}");
    let p = e.write("good.http", &good);
    let (code, stdout, _) = out(e.csm().args(["verify", "response"]).arg(&p).args([
        "--scheme",
        "saas-v1",
        "--key-file",
        "key",
    ]));
    assert_eq!(code, 0, "{stdout}");
    let p = e.write("case.http", good.replace("Body-Sign", "Body-sign"));
    let (code, stdout, _) = out(e.csm().args(["verify", "response"]).arg(&p).args([
        "--scheme",
        "saas-v1",
        "--key-file",
        "key",
    ]));
    assert_eq!(code, 1);
    assert!(stdout.contains("exactly \"Body-Sign\""), "{stdout}");
    let p = e.write(
        "none.http",
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{body}"),
    );
    let (code, _, err) = out(e.csm().args(["verify", "response"]).arg(&p).args([
        "--scheme",
        "saas-v1",
        "--key-file",
        "key",
    ]));
    assert_eq!(code, 1);
    assert!(err.contains("bodySign is empty"), "{err}");
}

#[test]
fn bad_input_is_one_line_with_a_usage_or_input_code() {
    let e = Env::new();
    e.write("empty-key", "\n");
    e.write("notjson.json", "{\"a\":");
    e.write("array.json", "[1,2]");
    e.write("garbage.http", "hello there\n\n");
    e.write("bom.json", "\u{feff}{\"a\":1}");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        // The V1 address's query is signed too: what it holds counts.
        (
            vec![
                "sign",
                "saas-v1",
                "--key-file",
                "key",
                "--url",
                "https://x/p?activity=a&timeStamp=20240317144237000",
                "--timestamp",
                "20240317144237001",
            ],
            2,
            "timeStamp: given more than once",
        ),
        (
            vec![
                "sign",
                "saas-v1",
                "--key-file",
                "key",
                "--url",
                "https://x/p?activity=a&authToken=abc",
            ],
            2,
            "holds an authToken already",
        ),
        (
            vec![
                "sign",
                "saas-v1",
                "--key-file",
                "key",
                "--param",
                "timeStamp=1680508066618",
            ],
            2,
            "saas-v1 takes yyyyMMddHHmmssSSS",
        ),
        (
            vec![
                "sign",
                "kit",
                "--key-file",
                "key",
                "--body-file",
                "body.json",
                "--nonce",
                "ab cd",
            ],
            2,
            "--nonce \"ab cd\": has a space",
        ),
        (
            vec![
                "sign",
                "saas-v2",
                "--key-file",
                "key",
                "--body-file",
                "bom.json",
            ],
            2,
            "starts with a byte order mark",
        ),
        // A key pasted for its file's name is not echoed.
        (
            vec![
                "sign",
                "saas-v2",
                "--key-file",
                "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
                "--body-file",
                "body.json",
            ],
            3,
            "looks like a key itself",
        ),
        (
            vec![
                "sign",
                "saas-v2",
                "--key-file",
                "missing-key",
                "--body-file",
                "body.json",
            ],
            3,
            "--key-file missing-key",
        ),
        (
            vec![
                "sign",
                "saas-v2",
                "--key-file",
                "empty-key",
                "--body-file",
                "body.json",
            ],
            3,
            "empty",
        ),
        (
            vec![
                "sign",
                "saas-v2",
                "--key-file",
                "key",
                "--body-file",
                "notjson.json",
            ],
            2,
            "not JSON at line",
        ),
        (
            vec!["sign", "saas-v2", "--key-file", "key"],
            2,
            "--body-file: required",
        ),
        // The signature alone and every intermediate refuse a body that is not an object alike.
        (
            vec![
                "sign",
                "kit",
                "--key-file",
                "key",
                "--body-file",
                "array.json",
            ],
            2,
            "--body-file array.json: body: must be a JSON object",
        ),
        (
            vec![
                "sign",
                "--json",
                "kit",
                "--key-file",
                "key",
                "--body-file",
                "array.json",
            ],
            2,
            "--body-file array.json: body: must be a JSON object",
        ),
        (
            vec!["sign", "no-such-scheme", "--key-file", "key"],
            2,
            "invalid value",
        ),
        (
            // A key named nowhere is configuration, as a missing key file is.
            vec!["sign", "saas-v2", "--body-file", "body.json"],
            3,
            "CSM_ACCESS_KEY",
        ),
        (
            vec![
                "verify",
                "saas-v2",
                "--key-file",
                "key",
                "--body-file",
                "body.json",
                "--timestamp",
                TS,
                "--nonce",
                NONCE,
                "--signature",
                "zz!!",
            ],
            2,
            "not hex or Base64",
        ),
        // Values signed as they are: spaces, an empty nonce, a second authToken or timeStamp.
        (
            vec![
                "sign",
                "saas-v2",
                "--key-file",
                "key",
                "--body-file",
                "body.json",
                "--timestamp",
                "1680508066618 ",
            ],
            2,
            "--timestamp \"1680508066618 \": has a space",
        ),
        (
            vec![
                "sign",
                "kit",
                "--key-file",
                "key",
                "--body-file",
                "body.json",
                "--nonce",
                "",
            ],
            2,
            "--nonce: empty",
        ),
        (
            vec![
                "sign",
                "saas-v1",
                "--key-file",
                "key",
                "--param",
                "authToken=x",
            ],
            2,
            "--param authToken: is the signature itself",
        ),
        (
            vec![
                "sign",
                "saas-v1",
                "--key-file",
                "key",
                "--param",
                "timeStamp=20240317144237000",
                "--timestamp",
                "20240317144237001",
            ],
            2,
            "give one",
        ),
        (
            vec![
                "sign",
                "saas-v1",
                "--key-file",
                "key",
                "--timestamp",
                "1680508066618",
            ],
            2,
            "saas-v1 takes yyyyMMddHHmmssSSS",
        ),
        (
            vec!["sign", "saas-v1", "--key-file", "key", "--param", "=x"],
            2,
            "must be NAME=VALUE",
        ),
        (
            vec![
                "sign",
                "apig",
                "--ak",
                "AK",
                "--sk-file",
                "key",
                "--url",
                "mkt.example.com/x",
            ],
            2,
            "must be an http:// or https:// URL",
        ),
        (
            vec![
                "sign",
                "apig",
                "--ak",
                "AK",
                "--sk-file",
                "key",
                "--url",
                "https://h/p",
                "--method",
                "PO ST",
            ],
            2,
            "--method \"PO ST\"",
        ),
        (
            vec![
                "verify",
                "saas-v2",
                "--key-file",
                "key",
                "--body-file",
                "body.json",
                "--timestamp",
                TS,
                "--nonce",
                NONCE,
                "--signature",
                "0a83c0d9f2e1b4a5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d",
            ],
            2,
            "63 hex characters",
        ),
        (
            vec![
                "verify",
                "apig",
                "--ak",
                "AK",
                "--sk-file",
                "key",
                "--url",
                "https://h/p",
                "--signature",
                "0a83c0d9f2e1b4a5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3",
            ],
            2,
            "--date: required to verify apig",
        ),
        (
            vec!["verify", "request", "garbage.http", "--key-file", "key"],
            2,
            "line 1",
        ),
        (
            vec![
                "crypto",
                "encrypt",
                "--key-file",
                "key",
                "--encrypt-type",
                "3",
                "x",
            ],
            2,
            "--encrypt-type",
        ),
        (
            vec!["sign", "saas-v1", "--key-file", "key", "--param", "novalue"],
            2,
            "NAME=VALUE",
        ),
        (
            vec![
                "sign",
                "saas-v2",
                "--key-file",
                "key",
                "--body-file",
                "body.json",
                "--timestamp",
                "abc",
            ],
            2,
            "--timestamp \"abc\"",
        ),
        (
            vec![
                "sign",
                "saas-v2",
                "--key-file",
                "/dev/zero",
                "--body-file",
                "body.json",
            ],
            2,
            "larger than",
        ),
        (
            vec!["crypto", "decrypt", "--key-file", "key", "--", "short"],
            2,
            "VALUE \"short\"",
        ),
        (
            vec![
                "verify",
                "body-sign",
                "--key-file",
                "key",
                "--body-file",
                "body.json",
                "--signature",
                "zzz!",
            ],
            2,
            "not hex or Base64",
        ),
        (
            vec![
                "verify",
                "saas-v2",
                "--key-file",
                "key",
                "--body-file",
                "body.json",
                "--timestamp",
                "99999999999999999",
                "--nonce",
                "n",
                "--signature",
                "0a83c0d9f2e1b4a5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3",
            ],
            1,
            "",
        ),
    ];
    for (args, want, needle) in cases {
        let (code, stdout, stderr) = out(e.csm().args(&args));
        assert_eq!(code, want, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        if want == 1 {
            // A verdict, not an error: nothing on stderr, no panic.
            assert!(stderr.is_empty(), "{args:?}: {stderr}");
            continue;
        }
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{args:?}"
        );
        if want != 2 || !needle.contains("invalid value") {
            assert_eq!(
                stderr
                    .trim()
                    .lines()
                    .filter(|l| l.starts_with("csm: error"))
                    .count(),
                1,
                "{args:?}: {stderr}"
            );
        }
        // Nothing on stdout, but with --json the error as an object.
        // (The argument parser's own refusals end before csm runs: no object then.)
        if args.contains(&"--json") && !stderr.starts_with("error:") {
            let v: serde_json::Value = serde_json::from_str(&stdout).expect(&stdout);
            assert_eq!(v["exit_code"], want, "{args:?}: {stdout}");
        } else {
            assert!(stdout.is_empty(), "{args:?}: {stdout}");
        }
    }
}

#[test]
fn crypto_round_trip_and_known_answer() {
    let e = Env::new();
    let (code, stdout, _) = out(e.csm().args(["crypto", "derive-key", "--key-file", "key"]));
    assert_eq!(
        (code, stdout.trim()),
        (
            0,
            "98ace25cc513876be5a4d6f3b534db90e2ea597b35fe217e2406163abed41d04"
        )
    );
    let (_, ct, _) = out(e.csm().args([
        "crypto",
        "encrypt",
        "--key-file",
        "key",
        "--encrypt-type",
        "2",
        "--iv",
        "A1b2C3d4E5f6G7h8",
        "--",
        "P@ssw0rd!",
    ]));
    assert_eq!(ct.trim(), "A1b2C3d4E5f6G7h8GysoMh3NYI2E2x9K2dwf3Q==");
    let (code, pt, _) = out(e.csm().args([
        "crypto",
        "decrypt",
        "--key-file",
        "key",
        "--encrypt-type",
        "2",
        ct.trim(),
    ]));
    assert_eq!((code, pt.trim()), (0, "P@ssw0rd!"));
    // Wrong encryptType: a clear failure, not garbage.
    let (code, _, err) = out(e
        .csm()
        .args(["crypto", "decrypt", "--key-file", "key", ct.trim()]));
    assert_eq!(code, 1);
    assert!(err.contains("encryptType 1"), "{err}");
}

/// `csm init` of a v2 profile `name` whose endpoint is https://isv.example.com/produce.
fn init_v2_profile(e: &Env, name: &str) {
    let (code, _, err) = out(e.csm().args([
        "init",
        "--profile",
        name,
        "--endpoint",
        "https://isv.example.com/produce",
        "--protocol",
        "v2",
        "--key-file",
        "key",
    ]));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn init_without_a_terminal_names_the_flags_and_writes_a_private_profile() {
    let e = Env::new();
    let (code, _, err) = out(e.csm().arg("init"));
    assert_eq!(code, 2);
    assert!(
        err.contains("--endpoint") && err.contains("--key-file"),
        "{err}"
    );
    init_v2_profile(&e, "staging");
    // No profile in use (none named default) is said as such, not as a missing `default`.
    let (code, _, err) = out(e.csm().args(["profile", "show"]));
    assert_eq!(code, 3);
    assert!(
        err.contains("no profile is in use") && err.contains("staging"),
        "{err}"
    );
    // Written again without --kit-key-file: the one it had is kept, and that is said.
    let (code, _, _) = out(e.csm().args([
        "init",
        "--profile",
        "staging",
        "--endpoint",
        "https://isv.example.com/produce",
        "--protocol",
        "v2",
        "--key-file",
        "key",
        "--kit-key-file",
        "kit-key",
    ]));
    assert_eq!(code, 0);
    let (code, stdout, _) = out(e.csm().args([
        "init",
        "--profile",
        "staging",
        "--endpoint",
        "https://isv.example.com/produce",
        "--protocol",
        "v2",
        "--key-file",
        "key",
    ]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("kept from the profile as it was: --kit-key-file"),
        "{stdout}"
    );
    let cfg = std::fs::read_to_string(e.path("config/config.toml")).unwrap();
    assert!(
        cfg.contains("[profiles.staging]") && !cfg.contains(KEY),
        "{cfg}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(e.path("config/config.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The profile feeds later commands.
    let (code, stdout, _) = out(e.csm().env("CSM_PROFILE", "staging").args([
        "-q",
        "sign",
        "saas-v2",
        "--body-file",
        "body.json",
        "--timestamp",
        TS,
        "--nonce",
        NONCE,
    ]));
    assert_eq!((code, stdout.trim()), (0, SIG));
    let (code, _, err) = out(e.csm().args([
        "--profile",
        "nope",
        "sign",
        "saas-v2",
        "--body-file",
        "body.json",
    ]));
    assert_eq!(code, 3);
    assert!(err.contains("--profile nope"), "{err}");
}

#[test]
fn secrets_never_reach_help_or_output() {
    let e = Env::new();
    let sig = "00".repeat(32);
    // (arguments, the exit code that proves the command really ran)
    let runs: Vec<(Vec<&str>, i32)> = vec![
        (vec!["--help"], 0),
        (vec!["sign", "--help"], 0),
        (vec!["verify", "--help"], 0),
        (vec!["crypto", "encrypt", "--help"], 0),
        (vec!["init", "--help"], 0),
        (
            vec!["sign", "--json", "saas-v2", "--body-file", "body.json"],
            0,
        ),
        (
            vec![
                "sign",
                "--json",
                "license",
                "--key-file",
                "key",
                "--body-file",
                "body.json",
            ],
            0,
        ),
        (
            vec![
                "sign",
                "--json",
                "kit",
                "--key-file",
                "key",
                "--body-file",
                "body.json",
            ],
            0,
        ),
        (vec!["sign", "--json", "saas-v1", "--param", "a=b"], 0),
        (
            vec!["sign", "--json", "body-sign", "--body-file", "body.json"],
            0,
        ),
        (
            vec![
                "verify",
                "--json",
                "saas-v2",
                "--body-file",
                "body.json",
                "--timestamp",
                TS,
                "--nonce",
                NONCE,
                "--signature",
                &sig,
            ],
            1,
        ),
        (
            vec![
                "verify",
                "saas-v2",
                "--body-file",
                "body.json",
                "--timestamp",
                TS,
                "--nonce",
                NONCE,
                "--signature",
                &sig,
            ],
            1,
        ),
        (
            vec![
                "sign",
                "--json",
                "apig",
                "--ak",
                "AK",
                "--url",
                "https://h/p",
            ],
            0,
        ),
        (
            vec![
                "verify",
                "apig",
                "--ak",
                "AK",
                "--url",
                "https://h/p",
                "--date",
                "20240317T144237Z",
                "--signature",
                &sig,
            ],
            1,
        ),
        (vec!["crypto", "--json", "derive-key"], 0),
        (vec!["crypto", "encrypt", "x"], 0),
        (
            vec![
                "init",
                "--endpoint",
                "https://isv.example.com/p",
                "--protocol",
                "v2",
                "--key-file",
                "key",
            ],
            0,
        ),
    ];
    for (args, want) in runs {
        let (code, stdout, stderr) = out(e
            .csm()
            .env("CSM_ACCESS_KEY", KEY)
            .env("CSM_SK", KEY)
            .args(&args));
        assert_eq!(code, want, "{args:?}: {stderr}");
        assert!(
            !stdout.contains(KEY) && !stderr.contains(KEY),
            "{args:?} leaked the key"
        );
    }
    let cfg = std::fs::read_to_string(e.path("config/config.toml")).unwrap();
    assert!(!cfg.contains(KEY), "the profile holds the key itself");
}

#[test]
fn completions_match_the_committed_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let generated = Env::new()
            .csm()
            .args(["completions", shell])
            .output()
            .unwrap()
            .stdout;
        let file = match shell {
            "bash" => "csm.bash",
            "zsh" => "_csm",
            "fish" => "csm.fish",
            "powershell" => "_csm.ps1",
            _ => "csm.elv",
        };
        let committed = std::fs::read(dir.join(file)).unwrap_or_default();
        assert!(
            generated == committed,
            "completions/{file} is out of date: run scripts/gen-completions.sh"
        );
    }
}

#[test]
fn marketplace_refuses_a_remote_merchant_without_yes() {
    let e = Env::new();
    let (code, stdout, err) = out(e.csm().args([
        "serve",
        "marketplace",
        "--listen",
        "127.0.0.1:0",
        "--merchant-endpoint",
        "https://isv.example.com/produce",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--merchant-endpoint") && err.contains("--yes"),
        "{err}"
    );
    assert!(
        stdout.is_empty(),
        "the server must not have started: {stdout}"
    );
}

#[test]
fn verify_help_asks_for_the_values_that_were_sent() {
    let e = Env::new();
    let (code, help, _) = out(e.csm().args(["verify", "--help"]));
    assert_eq!(code, 0);
    // verify generates nothing: what was sent is required, never "generated when absent".
    assert!(!help.contains("when absent"), "{help}");
    for flag in ["--timestamp", "--nonce", "--date"] {
        let line = help
            .split("\n\n")
            .find(|p| p.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing: {help}"));
        assert!(line.contains("sent"), "{flag}: {line}");
    }
    // sign still documents what it generates.
    let (_, help, _) = out(e.csm().args(["sign", "--help"]));
    assert!(help.contains("generated when"), "{help}");
}

#[test]
fn verify_response_takes_every_scheme_whose_replies_carry_body_sign() {
    let e = Env::new();
    e.write("license-key", "license-key-2222\n");
    let body = r#"{"resultCode":"000000","resultMsg":"success."}"#;
    e.write("reply.json", body);
    let reply = |key: &str| {
        let (code, value, err) = out(e.csm().args([
            "-q",
            "sign",
            "body-sign",
            "--key-file",
            key,
            "--body-file",
            "reply.json",
        ]));
        assert_eq!(code, 0, "{err}");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nBody-Sign: {}\r\n\r\n{body}",
            value.trim()
        )
    };
    let basic = e.write("basic.http", reply("key"));
    let kit = e.write("kit.http", reply("kit-key"));
    let license = e.write("license.http", reply("license-key"));
    let keys = [
        "--key-file",
        "key",
        "--kit-key-file",
        "kit-key",
        "--license-key-file",
        "license-key",
    ];
    // Each scheme checks the Body-Sign with the key of the call the reply answers.
    for (scheme, file) in [
        ("saas-v1", &basic),
        ("body-sign", &basic),
        ("saas-v2", &basic),
        ("saas-v1-kit", &kit),
        ("kit", &kit),
        ("license", &license),
    ] {
        let (code, stdout, err) = out(e
            .csm()
            .args(["verify", "response"])
            .arg(file)
            .args(["--scheme", scheme])
            .args(keys));
        assert_eq!(code, 0, "{scheme}: {stdout}{err}");
        assert!(stdout.starts_with("ok:"), "{scheme}: {stdout}");
        let (code, stdout, _) = out(e
            .csm()
            .args(["verify", "response"])
            .arg(&basic)
            .args(["--scheme", scheme])
            .args(keys));
        let want = if file == &basic { 0 } else { 1 };
        assert_eq!(code, want, "{scheme} with the basic key's reply: {stdout}");
    }
    // Without --scheme (and no profile protocol): the basic key, Body-Sign required.
    let (code, stdout, err) = out(e
        .csm()
        .args(["verify", "response"])
        .arg(&basic)
        .args(["--key-file", "key"]));
    assert_eq!(code, 0, "{stdout}{err}");
    let none = e.write(
        "none.http",
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{body}"),
    );
    let (code, _, err) = out(e
        .csm()
        .args(["verify", "response"])
        .arg(&none)
        .args(["--key-file", "key"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("bodySign is empty") && err.contains("--scheme saas-v2"),
        "{err}"
    );
    // V2 replies need no Body-Sign (decision 4): none is a pass, and said so.
    let (code, stdout, err) = out(e.csm().args(["verify", "response"]).arg(&none).args([
        "--scheme",
        "saas-v2",
        "--key-file",
        "key",
    ]));
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        stdout.contains("no Body-Sign") && stdout.contains("decision 4"),
        "{stdout}"
    );
    // A v2 profile makes saas-v2 the default.
    init_v2_profile(&e, "v2");
    let (code, stdout, err) = out(e
        .csm()
        .env("CSM_PROFILE", "v2")
        .args(["verify", "response"])
        .arg(&none));
    assert_eq!(code, 0, "{stdout}{err}");
    // Replies to usage pushes and API Gateway calls carry no Body-Sign: refused in one line.
    for scheme in ["usage", "apig"] {
        let (code, stdout, err) = out(e.csm().args(["verify", "response"]).arg(&basic).args([
            "--scheme",
            scheme,
            "--key-file",
            "key",
        ]));
        assert_eq!(code, 2, "{scheme}: {stdout}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("--scheme {scheme}"))
                && err.contains("saas-v1, saas-v1-kit, body-sign, saas-v2, kit, license"),
            "{err}"
        );
    }
}

#[test]
fn body_file_is_the_name_everywhere_and_body_an_alias() {
    let e = Env::new();
    let sign = |flag: &str| {
        out(e.csm().args([
            "-q",
            "sign",
            "saas-v2",
            "--key-file",
            "key",
            flag,
            "body.json",
            "--timestamp",
            TS,
            "--nonce",
            NONCE,
        ]))
    };
    assert_eq!(sign("--body-file"), sign("--body"));
    assert_eq!(sign("--body").1.trim(), SIG);
    let send = [
        "send",
        "newInstance",
        "--endpoint",
        "http://127.0.0.1:9/produce",
        "--key-file",
        "key",
        "--dry-run",
    ];
    for flag in ["--body-file", "--body"] {
        let (code, stdout, err) = out(e.csm().args(send).args([flag, "body.json"]));
        assert_eq!(code, 0, "{flag}: {err}");
        assert!(stdout.contains("CS2211181819B4LVS"), "{flag}: {stdout}");
    }
    // JSON typed where the file goes: a usage error that says so, without echoing the body.
    let sign_args = ["sign", "saas-v2", "--key-file", "key"];
    for args in [&sign_args[..], &send[..]] {
        let (code, _, err) = out(e
            .csm()
            .args(args)
            .args(["--body", r#"{"clientSecret":"s3cr3t"}"#]));
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("--body-file: the value is JSON, not a file"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
    }
    for cmd in ["sign", "verify", "send"] {
        let (_, help, _) = out(e.csm().args([cmd, "--help"]));
        assert!(
            help.contains("--body-file <FILE>") && help.contains("[alias: --body]"),
            "{cmd}: {help}"
        );
    }
}

#[test]
fn profiles_are_listed_and_shown_without_key_contents() {
    let e = Env::new();
    std::fs::create_dir_all(e.path("config")).unwrap();
    let key = e.path("key");
    e.write(
        "config/config.toml",
        format!(
            "[profiles.default]\nendpoint = \"http://127.0.0.1:8088/produce\"\n\n[profiles.prod]\nendpoint = \"https://isv.example.com/produce\"\nprotocol = \"v2\"\nkey_file = {:?}\nkit_key_file = \"/nowhere/kit.key\"\n",
            key.display().to_string()
        ),
    );
    let (code, stdout, _) = out(e.csm().args(["profile", "list"]));
    assert_eq!(code, 0);
    assert_eq!(stdout, "* default\n  prod\n");
    let (_, stdout, _) = out(e.csm().args(["--profile", "prod", "profile", "list"]));
    assert_eq!(stdout, "  default\n* prod\n");
    let (code, stdout, stderr) = out(e.csm().args(["profile", "show", "prod"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&key.display().to_string()), "{stdout}");
    assert!(stdout.contains("/nowhere/kit.key (missing)"), "{stdout}");
    assert!(!stdout.contains(KEY), "a key was printed: {stdout}");
    let (_, stdout, _) = out(e.csm().args(["--json", "profile", "show", "prod"]));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["protocol"], "v2");
    assert_eq!(v["ak"], serde_json::Value::Null);
    let (code, _, stderr) = out(e.csm().args(["profile", "show", "staging"]));
    assert_eq!(code, 3);
    assert!(stderr.contains("known: default, prod"), "{stderr}");
}

#[test]
fn man_pages_match_the_committed_files() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let e = Env::new();
    let fresh = e.path("man");
    let (code, _, stderr) = out(e.csm().arg("man").arg(&fresh));
    assert_eq!(code, 0, "{stderr}");
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let pages = names(&fresh);
    assert!(
        pages.contains(&"csm-usage-upload.1".to_string()),
        "{pages:?}"
    );
    assert_eq!(
        pages,
        names(&committed),
        "man/ is out of date: run scripts/gen-completions.sh"
    );
    for p in pages {
        assert!(
            std::fs::read(fresh.join(&p)).unwrap() == std::fs::read(committed.join(&p)).unwrap(),
            "man/{p} is out of date: run scripts/gen-completions.sh"
        );
    }
}

#[test]
fn completion_offers_activities_schemes_and_faults() {
    let e = Env::new();
    let (_, bash, _) = out(e.csm().args(["completions", "bash"]));
    for word in [
        "newInstance",
        "tenantSync",
        "saas-v2",
        "not-idempotent",
        "drop-after-store",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    // The profile hook is patched into the generated scripts: a clap_complete change that
    // moves the text it replaces must not drop it silently.
    for shell in ["bash", "zsh", "fish"] {
        let (_, script, _) = out(e.csm().args(["completions", shell]));
        assert!(
            script.contains("csm profile list -q"),
            "{shell}: no profile hook"
        );
    }
    // Bash itself completes `--profile` from the config and `send` from the catalog.
    std::fs::create_dir_all(e.path("config")).unwrap();
    e.write(
        "config/config.toml",
        "[profiles.default]\n[profiles.prod]\n",
    );
    let script = e.write("csm.bash", &bash);
    let bin = Path::new(env!("CARGO_BIN_EXE_csm"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let complete = |words: &str, cword: usize| {
        let o = std::process::Command::new("bash")
            .env("PATH", &path)
            .env("CSM_CONFIG_DIR", e.path("config"))
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; _csm csm \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(complete("csm --profile ''", 2), "default prod");
    assert_eq!(complete("csm send newI", 2), "newInstance");
}

#[test]
fn json_is_refused_where_there_is_no_json_to_print() {
    let e = Env::new();
    for args in [
        vec!["--json", "completions", "bash"],
        vec!["--json", "init"],
    ] {
        let (code, stdout, stderr) = out(e.csm().args(&args));
        assert_eq!(code, 2, "{args:?}");
        assert!(stderr.contains("--json: not for this command"), "{stderr}");
        // The caller asked for JSON: the refusal is an error object like any other.
        let v: serde_json::Value = serde_json::from_str(&stdout).expect(&stdout);
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with("--json: not for this command"),
            "{v}"
        );
        assert_eq!(v["exit_code"], 2);
    }
    // A refusal of the parser names what is missing in the object's one line, not only in
    // the text on stderr.
    let (code, stdout, _) = out(e.csm().args([
        "--json",
        "load",
        "--endpoint",
        "http://127.0.0.1:9/produce",
        "--rate",
        "100",
    ]));
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect(&stdout);
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with("the following required arguments were not provided: <--duration"),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
}

#[test]
fn with_json_a_failed_command_still_writes_an_object() {
    let e = Env::new();
    let (code, stdout, stderr) = out(e.csm().args([
        "--json",
        "send",
        "newInstance",
        "--endpoint",
        "http://127.0.0.1:9/produce",
        "--key-file",
        "missing.key",
    ]));
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.starts_with("csm: error: --key-file missing.key"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(v["exit_code"], 3);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("--key-file missing.key"));
    // A command that wrote its own report does not get a second object.
    let (code, stdout, _) = out(e.csm().args([
        "--json",
        "test-endpoint",
        "--endpoint",
        "http://127.0.0.1:9/produce",
        "--key-file",
        "missing.key",
    ]));
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect(&stdout);
    assert!(
        v["schema"]
            .as_str()
            .is_some_and(|s| s.starts_with("csm.test-endpoint")),
        "{stdout}"
    );
}

#[test]
fn an_access_key_id_given_nowhere_is_a_configuration_error() {
    let e = Env::new();
    e.write("sk", "sk-0000\n");
    let (code, _, stderr) = out(e.csm().args([
        "sign",
        "apig",
        "--sk-file",
        "sk",
        "--method",
        "GET",
        "--url",
        "https://example.com/api/x",
    ]));
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains(
            "--ak: no access key id given (pass --ak AK, set CSM_AK, or name it in a profile"
        ),
        "{stderr}"
    );
    // `usage` does not read CSM_AK, and does not offer it.
    let (code, _, stderr) = out(e.csm().args([
        "usage",
        "upload",
        "--apig",
        "--sk-file",
        "sk",
        "--key-file",
        "key",
        "--endpoint",
        "http://127.0.0.1:9",
        "body.json",
    ]));
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("--ak: no access key id given (pass --ak AK, or name it in a profile"),
        "{stderr}"
    );
}

#[test]
fn mistakes_found_before_anything_is_sent() {
    let e = Env::new();
    std::fs::write(e.path("sk"), "sk-0123456789\n").unwrap();
    std::fs::write(e.path("empty"), "").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // An empty access key id, or one with a space, is not signed into a header.
        (
            vec![
                "sign",
                "apig",
                "--ak",
                "",
                "--sk-file",
                "sk",
                "--url",
                "https://x/y",
            ],
            "--ak \"\": an access key id is one word",
        ),
        (
            vec![
                "sign",
                "apig",
                "--ak",
                "AK X",
                "--sk-file",
                "sk",
                "--url",
                "https://x/y",
            ],
            "--ak \"AK X\": an access key id is one word",
        ),
        // --fault changes the built-in merchant only.
        (
            vec![
                "test-endpoint",
                "--endpoint",
                "http://127.0.0.1:9/produce",
                "--key-file",
                "key",
                "--fault",
                "slow",
            ],
            "--fault: makes the built-in merchant of --demo wrong on purpose",
        ),
        (
            vec![
                "send",
                "newInstance",
                "--endpoint",
                "http://127.0.0.1:9/",
                "--key-file",
                "key",
                "--expect-code",
                "abc",
            ],
            "a resultCode is six digits",
        ),
        // A libpq connection string is refused without being repeated.
        (
            vec![
                "usage",
                "status",
                "--journal",
                "host=127.0.0.1 user=csm password=pw-secret-1 dbname=db",
            ],
            "--journal: a PostgreSQL journal is named by a URL",
        ),
    ];
    for (args, needle) in cases {
        let (code, stdout, stderr) = out(e.csm().args(&args));
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("pw-secret-1"), "{stderr}");
    }
    // An empty key file is a key problem (exit 3), as an empty CSM_ACCESS_KEY is: a CI step
    // that writes a withheld secret to a file gets the same answer as one that exports it.
    for args in [
        vec![
            "sign",
            "apig",
            "--ak",
            "AK1",
            "--sk-file",
            "empty",
            "--url",
            "https://x/y",
        ],
        vec![
            "send",
            "newInstance",
            "--endpoint",
            "http://127.0.0.1:9/produce",
            "--key-file",
            "empty",
        ],
    ] {
        let (code, stdout, stderr) = out(e.csm().args(&args));
        assert_eq!(code, 3, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("empty: the file is empty (it must hold the secret on one line)"),
            "{args:?}: {stderr}"
        );
    }
    // A proxy variable csm cannot use is configuration (exit 3) for every command that
    // calls an endpoint, not an unreachable endpoint.
    for args in [
        vec![
            "send",
            "newInstance",
            "--endpoint",
            "https://203.0.113.1/produce",
            "--key-file",
            "key",
            "--yes",
        ],
        vec![
            "test-endpoint",
            "--endpoint",
            "https://203.0.113.1/produce",
            "--key-file",
            "key",
            "--yes",
        ],
        vec![
            "load",
            "--endpoint",
            "https://203.0.113.1/produce",
            "--key-file",
            "key",
            "--yes",
            "--rate",
            "1",
            "--requests",
            "1",
        ],
    ] {
        let (code, stdout, stderr) = out(e
            .csm()
            .env("https_proxy", "socks5://127.0.0.1:1")
            .args(&args));
        assert_eq!(code, 3, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("https_proxy: proxy scheme \"socks5\" is not supported"),
            "{args:?}: {stderr}"
        );
    }
    // A dry run calls nothing, so the proxy does not matter to it.
    let (code, _, stderr) = out(e.csm().env("https_proxy", "socks5://127.0.0.1:1").args([
        "send",
        "newInstance",
        "--endpoint",
        "https://203.0.113.1/produce",
        "--key-file",
        "key",
        "--dry-run",
    ]));
    assert_eq!(code, 0, "{stderr}");
    // Standard input is read once: a second `-` is named, not read as empty.
    let (code, _, stderr) = out(e.csm().write_stdin(format!("{KEY}\n")).args([
        "sign",
        "-q",
        "saas-v2",
        "--key-file",
        "-",
        "--body-file",
        "-",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--body-file -: standard input is taken by --key-file already"),
        "{stderr}"
    );
}

#[test]
fn help_never_shows_a_password_from_the_environment() {
    let e = Env::new();
    for args in [["usage", "upload", "--help"], ["usage", "status", "--help"]] {
        let (code, stdout, _) = out(e
            .csm()
            .env("CSM_JOURNAL", "postgres://csm:pw-secret-2@127.0.0.1:1/db")
            .env(
                "CSM_MARKETPLACE_ENDPOINT",
                "https://user:pw-secret-3@mkt.example",
            )
            .args(args));
        assert_eq!(code, 0, "{stdout}");
        assert!(stdout.contains("CSM_JOURNAL"), "{stdout}");
        assert!(!stdout.contains("pw-secret"), "{args:?}: {stdout}");
    }
}

#[test]
fn a_key_from_the_environment_with_stray_whitespace_is_warned_about() {
    let e = Env::new();
    let (code, _, stderr) = out(e.csm().env("CSM_ACCESS_KEY", format!(" {KEY} ")).args([
        "sign",
        "-q",
        "saas-v2",
        "--body-file",
        "body.json",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: CSM_ACCESS_KEY: the value starts or ends with whitespace"),
        "{stderr}"
    );
    assert!(!stderr.contains(KEY), "{stderr}");
}

/// A Kit reply checked with `--key-file` standing in for the Kit key says so; with both keys
/// given, a Body-Sign made with the basic key is named as the mix-up it is.
#[test]
fn verify_response_names_the_key_it_used_and_a_key_mix_up() {
    let e = Env::new();
    let body = r#"{"resultCode":"000000","resultMsg":"success."}"#;
    e.write("reply.json", body);
    let (_, header, _) = out(e.csm().args([
        "sign",
        "body-sign",
        "--key-file",
        "key",
        "--body-file",
        "reply.json",
    ]));
    let capture = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{}\r\n\r\n{body}",
        header.trim()
    );
    e.write("reply.http", capture);
    let verify = |extra: &[&str]| {
        out(e
            .csm()
            .args([
                "verify",
                "response",
                "reply.http",
                "--scheme",
                "kit",
                "--key-file",
                "key",
            ])
            .args(extra))
    };
    let (code, stdout, _) = verify(&[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("no --kit-key-file given"), "{stdout}");
    let (code, stdout, _) = verify(&["--kit-key-file", "kit-key"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("likely cause:  signed with the basic-interface key instead"),
        "{stdout}"
    );
}

/// CI sets flags through the environment as it sets them elsewhere: `CSM_NO_INPUT=1`, and a
/// variable it does not have (a secret withheld from a forked pull request) as an empty one,
/// which counts as unset.
#[test]
fn the_environment_as_ci_sets_it() {
    let e = Env::new();
    for v in ["1", "yes", "true", "0", ""] {
        let (code, _, err) = out(e.csm().env("CSM_NO_INPUT", v).args(["profile", "list"]));
        assert_eq!(code, 0, "CSM_NO_INPUT={v:?}: {err}");
    }
    // A typo is refused, naming the value, not read as on or off.
    let (code, _, err) = out(e
        .csm()
        .env("CSM_NO_INPUT", "nope")
        .args(["profile", "list"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope"), "{err}");
    let (code, _, err) = out(e.csm().env("CSM_ACCESS_KEY", "").args([
        "sign",
        "saas-v2",
        "--body-file",
        "body.json",
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no key given"), "{err}");
    let (code, _, err) = out(e
        .csm()
        .env("CSM_JOURNAL", "")
        .env("CSM_PROFILE", "")
        .args(["usage", "status"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no journal there"), "{err}");
}

#[test]
fn an_output_place_that_cannot_be_one_is_named() {
    let e = Env::new();
    std::fs::write(e.path("afile"), "").unwrap();
    let (code, _, stderr) = out(e.csm().args(["man"]).arg(e.path("afile")));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("afile: not a directory"), "{stderr}");
    // Refused before seconds of key generation, naming the flag.
    let (code, _, stderr) = out(e
        .csm()
        .args(["crypto", "rsa-keygen", "--out"])
        .arg(e.path("no/such/app.pem")));
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("--out ") && stderr.contains(": no directory "),
        "{stderr}"
    );
    assert!(!e.path("no").exists());
}
