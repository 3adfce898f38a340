//! The reference merchant's app side of a joint-operation login: applicationSync's
//! clientSecret decrypted (ciphertexts from Python `cryptography`, tests/vectors/rsa_oaep.json,
//! and from `csm send --app-public-key`), then `/sso/callback` against a small identity
//! provider run here on loopback that answers the documented shapes and records what it got.

use crate::common::{self, Served};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KIT: &str = "kit-key-0123456789";
const TOKEN: &str = "3f2c9b1e-7a41-4e0c-9d55-6b8f0e2a1c77";

fn vectors() -> Value {
    let path = format!("{}/tests/vectors/rsa_oaep.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// One request the identity provider received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    form: Vec<(String, String)>,
}

impl Seen {
    fn form(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal OAuth identity provider: token (authorization_code) and userinfo with the
/// documented shapes and errors; codes are single use; every request is recorded.
struct Idp {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

struct IdpRules {
    client_id: String,
    client_secret: String,
    codes: HashSet<String>,
    user: String,
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

impl Idp {
    fn start(rules: IdpRules) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let rules = Mutex::new(rules);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let (mut len, mut authorization) = (0usize, None);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    let (n, v) = h.trim().split_once(':').unwrap_or(("", ""));
                    match n.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        "authorization" => authorization = Some(v.trim().to_string()),
                        _ => {}
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let form: Vec<(String, String)> = String::from_utf8_lossy(&body)
                    .split('&')
                    .filter_map(|p| p.split_once('='))
                    .map(|(n, v)| (decode(n), decode(v)))
                    .collect();
                let seen = Seen {
                    path: path.clone(),
                    authorization,
                    form,
                };
                log.lock().unwrap().push(seen.clone());
                let mut rules = rules.lock().unwrap();
                let (status, reply) = if path == "/api/v1/oauth2/token" {
                    if seen.form("client_id") != Some(rules.client_id.as_str())
                        || seen.form("client_secret") != Some(rules.client_secret.as_str())
                    {
                        (
                            401,
                            r#"{"error":"invalid_client","error_description":"Bad client credentials"}"#.to_string(),
                        )
                    } else if seen.form("grant_type") != Some("authorization_code")
                        || !rules.codes.remove(seen.form("code").unwrap_or(""))
                    {
                        (
                            400,
                            r#"{"error":"invalid_grant","error_description":"Invalid authorization code"}"#.to_string(),
                        )
                    } else {
                        (
                            200,
                            format!(
                                r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":7200,"scope":"get_user_info","refresh_token":"r-1"}}"#
                            ),
                        )
                    }
                } else if path == "/api/v1/oauth2/userinfo" {
                    if seen.authorization.as_deref() == Some(&format!("Bearer {TOKEN}")) {
                        (
                            200,
                            format!(
                                r#"{{"id":"u-1","userName":"{}","name":"王伟","email":"user000@example.com","mobile":"13800000000","role":"admin","organizationName":"总部","userId":"u-1","organizationCode":"ORG0001","projectName":"p","tenant":"t"}}"#,
                                rules.user
                            ),
                        )
                    } else {
                        (
                            401,
                            r#"{"error":"unauthorized","error_description":"Full authentication is required to access this resource"}"#.to_string(),
                        )
                    }
                } else {
                    (404, "{}".to_string())
                };
                drop(rules);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        Idp { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let v = vectors();
        std::fs::write(dir.path().join("kit.key"), KIT).unwrap();
        std::fs::write(
            dir.path().join("app.pem"),
            v["private_key_pkcs8_pem"].as_str().unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("app.pem.pub"),
            v["public_key_spki_pem"].as_str().unwrap(),
        )
        .unwrap();
        Env { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self) -> Command {
        common::csm(self.dir.path())
    }

    /// `csm serve merchant` with the test key pair; its stderr goes to merchant.log.
    fn merchant(&self, faults: &[&str]) -> Served {
        let log = std::fs::File::create(self.path("merchant.log")).unwrap();
        let mut c = self.cmd();
        c.args([
            "serve",
            "merchant",
            "--listen",
            "127.0.0.1:0",
            "--kit-key-file",
        ])
        .arg(self.path("kit.key"))
        .arg("--app-private-key")
        .arg(self.path("app.pem"))
        .args(["--idp-timeout", "5s"]);
        for f in faults {
            c.args(["--fault", f]);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let url = common::announced_url(&mut child);
        Served { child, url }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("merchant.log")).unwrap_or_default()
    }

    /// Waits until the merchant's log holds `text` (its lines are written after the reply).
    fn log_shows(&self, text: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if self.log().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn send(&self, m: &Served, activity: &str, args: &[&str]) -> Output {
        self.cmd()
            .args([
                "send",
                activity,
                "--endpoint",
                &format!("{}/produce", m.url),
            ])
            .arg("--kit-key-file")
            .arg(self.path("kit.key"))
            .args(args)
            .output()
            .unwrap()
    }

    /// tenantSync, applicationSync (with `secret_args`) and authSync for `tenant`.
    fn sync(&self, m: &Served, tenant: &str, domain: &str, client: &str, secret_args: &[&str]) {
        let t = format!("tenantId={tenant}");
        ok(&self.send(
            m,
            "tenantSync",
            &["--set", &t, "--set", &format!("domainName={domain}")],
        ));
        let mut app = vec!["--set", &t];
        let c = format!("clientId={client}");
        app.extend(["--set", &c]);
        app.extend(secret_args);
        ok(&self.send(m, "applicationSync", &app));
        ok(&self.send(m, "authSync", &["--set", &t]));
    }
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn browser() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

struct Answer {
    status: u16,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

fn get(url: &str, cookie: Option<&str>) -> Answer {
    let mut r = browser().get(url);
    if let Some(c) = cookie {
        r = r.header("Cookie", format!("csm_session={c}"));
    }
    let r = r.send().unwrap();
    let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let (location, set_cookie) = (h("location"), h("set-cookie"));
    Answer {
        status: r.status().as_u16(),
        location,
        cookie: set_cookie,
        body: r.text().unwrap(),
    }
}

/// The session id of a `Set-Cookie: csm_session=ID; HttpOnly; Path=/`.
fn session(a: &Answer) -> String {
    let c = a.cookie.as_deref().expect("a Set-Cookie");
    assert!(c.contains("HttpOnly") && c.contains("Path=/"), "{c}");
    c.strip_prefix("csm_session=")
        .and_then(|c| c.split(';').next())
        .filter(|id| id.len() >= 32)
        .unwrap_or_else(|| panic!("not a session cookie: {c}"))
        .to_string()
}

fn idp_for(secret: &str, codes: &[&str], user: &str) -> Idp {
    Idp::start(IdpRules {
        client_id: "client-A".into(),
        client_secret: secret.into(),
        codes: codes.iter().map(|c| c.to_string()).collect(),
        user: user.into(),
    })
}

#[test]
fn each_oaep_reading_decrypts_and_the_login_uses_the_plaintext_secret() {
    let env = Env::new();
    let m = env.merchant(&[]);
    let v = vectors();
    let mut readings = HashSet::new();
    for case in v["cases"].as_array().unwrap() {
        let reading = case["reading"].as_str().unwrap();
        if !readings.insert(reading) {
            continue;
        }
        let plain = case["plaintext"].as_str().unwrap();
        let idp = idp_for(plain, &["code-1"], "user000");
        let tenant = format!("tenant-{reading}");
        let ct = format!("clientSecret={}", case["ciphertext_b64"].as_str().unwrap());
        env.sync(&m, &tenant, &idp.url, "client-A", &["--set", &ct]);
        assert!(
            env.log_shows(&format!("clientSecret decrypted with OAEP {reading}\n")),
            "{reading}: {}",
            env.log()
        );

        let login = get(
            &format!("{}/sso/callback?code=code-1&tenant={tenant}", m.url),
            None,
        );
        assert_eq!(login.status, 302, "{reading}: {}", login.body);
        assert_eq!(login.location.as_deref(), Some("/sso/app"));
        let sid = session(&login);
        let seen = idp.seen();
        let token = seen
            .iter()
            .find(|s| s.path == "/api/v1/oauth2/token")
            .unwrap();
        assert_eq!(token.form("client_id"), Some("client-A"));
        assert_eq!(token.form("client_secret"), Some(plain), "{reading}");
        assert_eq!(token.form("code"), Some("code-1"));
        assert_eq!(token.form("grant_type"), Some("authorization_code"));
        assert_eq!(
            token.form("redirect_uri"),
            Some(format!("{}/sso/callback", m.url).as_str())
        );
        let info = seen
            .iter()
            .find(|s| s.path == "/api/v1/oauth2/userinfo")
            .expect("userinfo asked");
        assert_eq!(
            info.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );

        let app = get(&format!("{}/sso/app", m.url), Some(&sid));
        assert_eq!(app.status, 200);
        let who: Value = serde_json::from_str(&app.body).unwrap();
        assert_eq!(who["userName"], "user000");
        assert_eq!(who["tenant"], tenant.as_str());
        assert_eq!(get(&format!("{}/sso/app", m.url), None).status, 401);
        assert_eq!(
            get(&format!("{}/sso/app", m.url), Some("forged")).status,
            401
        );

        // A replayed code goes to the identity provider, which refuses it: no session.
        let again = get(
            &format!("{}/sso/callback?code=code-1&tenant={tenant}", m.url),
            None,
        );
        assert_eq!(again.status, 401);
        assert!(again.body.contains("invalid_grant"), "{}", again.body);
        assert!(again.cookie.is_none());

        let out = get(&format!("{}/sso/logout", m.url), Some(&sid));
        assert_eq!(out.status, 302);
        let back = format!("{}/sso/logged-out", m.url)
            .replace(':', "%3A")
            .replace('/', "%2F");
        assert_eq!(
            out.location,
            Some(format!("{}/api/v1/logout?redirect_url={back}", idp.url))
        );
        assert_eq!(get(&format!("{}/sso/app", m.url), Some(&sid)).status, 401);
    }
    assert_eq!(readings.len(), 3);
}

#[test]
fn identity_provider_errors_answer_401_without_a_session() {
    let env = Env::new();
    let m = env.merchant(&[]);
    let idp = idp_for("not-what-the-app-has", &["c"], "user000");
    let public = env.path("app.pem.pub").display().to_string();
    env.sync(
        &m,
        "t-bad",
        &idp.url,
        "client-A",
        &["--app-public-key", &public],
    );
    let bad_client = get(&format!("{}/sso/callback?code=c&tenant=t-bad", m.url), None);
    assert_eq!(bad_client.status, 401);
    assert!(
        bad_client.body.contains("invalid_client"),
        "{}",
        bad_client.body
    );
    assert!(bad_client.cookie.is_none());
    let unknown = get(
        &format!("{}/sso/callback?code=c&tenant=nobody", m.url),
        None,
    );
    assert_eq!(unknown.status, 401);
    assert!(unknown.body.contains("tenantSync"), "{}", unknown.body);
    assert_eq!(
        get(&format!("{}/sso/callback?code=c", m.url), None).status,
        400
    );
}

#[test]
fn faults_break_exactly_their_step() {
    let v = vectors();
    let case = &v["cases"][0];
    let (plain, ct) = (
        case["plaintext"].as_str().unwrap(),
        case["ciphertext_b64"].as_str().unwrap(),
    );
    let secret = format!("clientSecret={ct}");
    let env = Env::new();

    // sso-secret-encrypted: the ciphertext goes out as client_secret; the IdP refuses it.
    let m = env.merchant(&["sso-secret-encrypted"]);
    let idp = idp_for(plain, &["c1"], "user000");
    env.sync(&m, "t1", &idp.url, "client-A", &["--set", &secret]);
    let a = get(&format!("{}/sso/callback?code=c1&tenant=t1", m.url), None);
    assert_eq!(a.status, 401);
    assert!(a.cookie.is_none());
    assert_eq!(idp.seen()[0].form("client_secret"), Some(ct));
    drop(m);

    // sso-code-reuse: a replayed code logs in again without asking the IdP.
    let m = env.merchant(&["sso-code-reuse"]);
    let idp = idp_for(plain, &["c1"], "user000");
    env.sync(&m, "t1", &idp.url, "client-A", &["--set", &secret]);
    let first = get(&format!("{}/sso/callback?code=c1&tenant=t1", m.url), None);
    assert_eq!(first.status, 302);
    let replay = get(&format!("{}/sso/callback?code=c1&tenant=t1", m.url), None);
    assert_eq!(replay.status, 302, "{}", replay.body);
    let sid = session(&replay);
    assert_eq!(
        idp.count("/api/v1/oauth2/token"),
        1,
        "the replay asked the IdP"
    );
    assert_eq!(get(&format!("{}/sso/app", m.url), Some(&sid)).status, 200);
    drop(m);

    // sso-skip-userinfo: logged in after the token exchange alone.
    let m = env.merchant(&["sso-skip-userinfo"]);
    let idp = idp_for(plain, &["c1"], "user000");
    env.sync(&m, "t1", &idp.url, "client-A", &["--set", &secret]);
    let a = get(&format!("{}/sso/callback?code=c1&tenant=t1", m.url), None);
    assert_eq!(a.status, 302);
    assert_eq!(idp.count("/api/v1/oauth2/token"), 1);
    assert_eq!(idp.count("/api/v1/oauth2/userinfo"), 0);
    let app = get(&format!("{}/sso/app", m.url), Some(&session(&a)));
    assert_eq!(app.status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&app.body).unwrap()["userName"],
        Value::Null
    );
}

#[test]
fn a_user_not_in_auth_sync_is_refused() {
    let env = Env::new();
    let m = env.merchant(&[]);
    let case = &vectors()["cases"][0];
    let idp = idp_for(case["plaintext"].as_str().unwrap(), &["c1"], "intruder");
    let secret = format!("clientSecret={}", case["ciphertext_b64"].as_str().unwrap());
    env.sync(&m, "t1", &idp.url, "client-A", &["--set", &secret]);
    let a = get(&format!("{}/sso/callback?code=c1&tenant=t1", m.url), None);
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.body.contains("intruder") && a.cookie.is_none(),
        "{}",
        a.body
    );
}

#[test]
fn send_encrypts_with_the_app_public_key_and_the_merchant_names_the_reading() {
    let env = Env::new();
    let m = env.merchant(&[]);
    let public = env.path("app.pem.pub").display().to_string();
    for (oaep, t) in [("sha256-mgf1sha1", "t1"), ("sha256", "t2"), ("sha1", "t3")] {
        ok(&env.send(
            &m,
            "applicationSync",
            &[
                "--app-public-key",
                &public,
                "--oaep",
                oaep,
                "--set",
                &format!("tenantId={t}"),
            ],
        ));
        assert!(
            env.log_shows(&format!("tenant {t} app "))
                && env.log().contains(&format!("OAEP {oaep}\n")),
            "{oaep}: {}",
            env.log()
        );
    }
    // A ciphertext for another key: 000101, as the official demo answers.
    let other = env.path("other.pem");
    ok(&env
        .cmd()
        .args(["crypto", "rsa-keygen", "--out"])
        .arg(&other)
        .output()
        .unwrap());
    let o = env.send(
        &m,
        "applicationSync",
        &[
            "--app-public-key",
            &format!("{}.pub", other.display()),
            "--expect-code",
            "000101",
        ],
    );
    ok(&o);
    // Without a key, the stand-in bytes do not decrypt either.
    ok(&env.send(&m, "applicationSync", &["--expect-code", "000101"]));
}

#[test]
fn rsa_keygen_writes_a_private_pkcs8_and_a_public_spki_and_keeps_existing_files() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let out = env.path("seller.pem");
    ok(&env
        .cmd()
        .args(["crypto", "rsa-keygen", "--out"])
        .arg(&out)
        .output()
        .unwrap());
    let private = std::fs::read_to_string(&out).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let public = std::fs::read_to_string(env.path("seller.pem.pub")).unwrap();
    let key = csm::protocol::rsa_oaep::private_key_from_pem(&private).unwrap();
    assert_eq!(
        csm::protocol::rsa_oaep::public_key_from_pem(&public).unwrap(),
        key.to_public_key()
    );
    let again = env
        .cmd()
        .args(["crypto", "rsa-keygen", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        private,
        "overwritten"
    );
}

#[test]
fn small_or_wrong_keys_are_refused_with_the_flag_named() {
    let env = Env::new();
    let small = env.path("small.pub");
    std::fs::write(
        &small,
        vectors()["small_public_key_spki_pem"].as_str().unwrap(),
    )
    .unwrap();
    let o = env
        .cmd()
        .args([
            "send",
            "applicationSync",
            "--endpoint",
            "http://127.0.0.1:9/produce",
            "--kit-key-file",
        ])
        .arg(env.path("kit.key"))
        .arg("--app-public-key")
        .arg(&small)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--app-public-key") && err.contains("2048 bits") && err.contains("3072"),
        "{err}"
    );
    // A public key where the private one belongs: refused, and the key is not quoted.
    let o = env
        .cmd()
        .args([
            "serve",
            "merchant",
            "--listen",
            "127.0.0.1:0",
            "--kit-key-file",
        ])
        .arg(env.path("kit.key"))
        .arg("--app-private-key")
        .arg(env.path("app.pem.pub"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--app-private-key") && err.contains("PKCS#8"),
        "{err}"
    );
    assert!(!err.contains("MII"), "{err}");
}
