//! The stand-in identity provider of `csm serve marketplace`, used as an OAuth client would
//! use it: a real server process on loopback, plain HTTP requests, redirects not followed.

use crate::common::{csm, Served};
use reqwest::blocking::{Client, Response};
use reqwest::Url;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const REDIRECT: &str = "http://127.0.0.1:9/sso/callback";

struct Idp {
    _dir: tempfile::TempDir,
    served: Served,
    http: Client,
}

/// A marketplace with one tenant, one app (client C1, secret `s3cret`, sent sealed as
/// `SEALED==`) and two users, learnt through the sync API as the sso suite teaches it.
fn start(extra: &[&str]) -> Idp {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(
        csm(dir.path())
            .args(["serve", "marketplace", "--listen", "127.0.0.1:0"])
            .args(extra),
    );
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let idp = Idp {
        _dir: dir,
        served,
        http,
    };
    let syncs = [
        json!({"sync": "tenantSync", "fields": {"tenantId": "T1", "domainName": idp.served.url, "flag": 1}}),
        json!({"sync": "applicationSync", "clientSecret": "s3cret",
               "fields": {"tenantId": "T1", "appId": "A1", "clientId": "C1", "clientSecret": "SEALED==", "flag": 1}}),
        json!({"sync": "applicationSync", "clientSecret": "other",
               "fields": {"tenantId": "T1", "appId": "A2", "clientId": "C2", "clientSecret": "X", "flag": 1}}),
        json!({"sync": "authSync", "fields": {"tenantId": "T1", "appId": "A1", "flag": 1, "userList": [
            {"userName": "user000", "name": "张三", "email": "user000@example.com", "mobile": "13800000000",
             "role": "admin", "orgCode": "ORG0001", "employeeCode": "E00001"},
            {"userName": "user001", "role": "user"}]}}),
    ];
    for s in syncs {
        let r = idp
            .http
            .post(format!("{}/idp/sync", idp.served.url))
            .header("Content-Type", "application/json")
            .body(s.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{s}");
    }
    idp
}

impl Idp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.served.url)
    }

    /// The portal for `user` of A1: the code and tenant it redirects with.
    fn login(&self, user: &str, redirect: &str) -> (String, String) {
        let r = self
            .http
            .get(self.url("/unified-login/portal"))
            .query(&[("appId", "A1"), ("user", user), ("redirect_uri", redirect)])
            .send()
            .unwrap();
        assert_eq!(r.status(), 302);
        let loc = Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        assert!(loc.as_str().starts_with(redirect), "{loc}");
        let q: HashMap<String, String> = loc.query_pairs().into_owned().collect();
        (q["code"].clone(), q["tenant"].clone())
    }

    fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/api/v1/oauth2/token"))
            .form(form)
            .send()
            .unwrap();
        json_of(r)
    }

    fn exchange(
        &self,
        code: &str,
        client: &str,
        secret: &str,
        redirect: Option<&str>,
    ) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", client),
            ("client_secret", secret),
            ("code", code),
        ];
        if let Some(r) = redirect {
            form.push(("redirect_uri", r));
        }
        self.token(&form)
    }

    fn userinfo(&self, bearer: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .get(self.url("/api/v1/oauth2/userinfo"))
            .header("Accept", "application/json");
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        json_of(req.send().unwrap())
    }

    fn events(&self) -> Vec<Value> {
        let r = self.http.get(self.url("/idp/events")).send().unwrap();
        json_of(r).1.as_array().unwrap().clone()
    }
}

fn json_of(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let v: Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
    (status, v)
}

fn form<'a>(token: &'a str, client: &'a str, secret: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "refresh_token"),
        ("client_id", client),
        ("client_secret", secret),
        ("refresh_token", token),
    ]
}

fn error(v: &Value) -> (&str, &str) {
    (
        v["error"].as_str().unwrap_or("-"),
        v["error_description"].as_str().unwrap_or("-"),
    )
}

#[test]
fn a_login_gives_a_single_use_code_a_bearer_token_and_the_user() {
    let idp = start(&[]);
    let (code, tenant) = idp.login("user000", REDIRECT);
    assert_eq!(tenant, "T1");
    let (s, v) = idp.exchange(&code, "C1", "s3cret", Some(REDIRECT));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 7200);
    assert_eq!(v["scope"], "get_user_info");
    assert!(
        v["refresh_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{v}"
    );
    let access = v["access_token"].as_str().unwrap().to_string();
    let (s, info) = idp.userinfo(Some(&access));
    assert_eq!(s, 200, "{info}");
    for k in [
        "id",
        "userName",
        "name",
        "email",
        "mobile",
        "role",
        "organizationName",
        "userId",
        "organizationCode",
        "projectName",
        "tenant",
    ] {
        assert!(info.get(k).is_some(), "userinfo lacks {k}: {info}");
    }
    assert_eq!(
        (info["userName"].as_str(), info["role"].as_str()),
        (Some("user000"), Some("admin"))
    );
    assert_eq!(
        (info["name"].as_str(), info["tenant"].as_str()),
        (Some("张三"), Some("T1"))
    );
    // The code is used up: a replay is an invalid grant.
    let (s, v) = idp.exchange(&code, "C1", "s3cret", Some(REDIRECT));
    assert_eq!(
        (s, error(&v)),
        (400, ("invalid_grant", "Invalid authorization code"))
    );
}

#[test]
fn bad_and_expired_codes_are_invalid_grants() {
    let idp = start(&["--idp-code-ttl", "300ms"]);
    let (s, v) = idp.exchange("no-such-code", "C1", "s3cret", None);
    assert_eq!(
        (s, error(&v)),
        (400, ("invalid_grant", "Invalid authorization code"))
    );
    let (code, _) = idp.login("user000", REDIRECT);
    std::thread::sleep(Duration::from_millis(400));
    let (s, v) = idp.exchange(&code, "C1", "s3cret", None);
    assert_eq!(
        (s, error(&v)),
        (400, ("invalid_grant", "Invalid authorization code"))
    );
    let (s, v) = idp.token(&[
        ("grant_type", "authorization_code"),
        ("client_id", "C1"),
        ("client_secret", "s3cret"),
    ]);
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")));
    // A body that is not a form (a broken escape) is said to be one, not a client error.
    let r = idp
        .http
        .post(idp.url("/api/v1/oauth2/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&code=%zz&client_id=C1&client_secret=s3cret")
        .send()
        .unwrap();
    let (s, v) = json_of(r);
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    assert!(
        v["error_description"].as_str().unwrap_or("").contains('%'),
        "{v}"
    );
}

#[test]
fn client_credentials_are_checked_and_the_log_tells_what_secret_came() {
    let idp = start(&[]);
    let (code, _) = idp.login("user000", REDIRECT);
    // The ciphertext as applicationSync carried it, then a wrong secret, then no client.
    for (client, secret) in [("C1", "SEALED=="), ("C1", "wrong"), ("nobody", "s3cret")] {
        let (s, v) = idp.exchange(&code, client, secret, None);
        assert_eq!(
            (s, error(&v)),
            (403, ("invalid_client", "Bad client credentials")),
            "{client}"
        );
    }
    // Another app's good credentials with A1's code: the code is bound to its client.
    let (s, v) = idp.exchange(&code, "C2", "other", None);
    assert_eq!(
        (s, error(&v)),
        (403, ("invalid_client", "Client ID mismatch"))
    );
    let seen: Vec<(String, String, String)> = idp
        .events()
        .iter()
        .filter(|e| e["event"] == "token")
        .map(|e| {
            (
                e["client_id"].as_str().unwrap().into(),
                e["secret"].as_str().unwrap().into(),
                e["error"].as_str().unwrap_or("none").into(),
            )
        })
        .collect();
    let want = [
        ("C1", "ciphertext", "invalid_client"),
        ("C1", "wrong", "invalid_client"),
        ("nobody", "unknown-client", "invalid_client"),
        ("C2", "plaintext", "invalid_client"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(seen, want);
    // Secrets never reach the log.
    let log = serde_json::to_string(&idp.events()).unwrap();
    assert!(!log.contains("s3cret") && !log.contains("SEALED"), "{log}");
}

#[test]
fn the_redirect_uri_must_be_the_one_the_code_went_to() {
    let idp = start(&[]);
    let (code, _) = idp.login("user000", REDIRECT);
    let (s, v) = idp.exchange(&code, "C1", "s3cret", Some("http://127.0.0.1:9/elsewhere"));
    assert_eq!(
        (s, error(&v)),
        (400, ("invalid_grant", "Redirect URI mismatch"))
    );
    // Left out it is not compared (it is optional).
    let (code, _) = idp.login("user000", REDIRECT);
    let (s, v) = idp.exchange(&code, "C1", "s3cret", None);
    assert_eq!(s, 200, "{v}");
}

#[test]
fn a_refresh_token_gives_a_new_access_token_and_a_bad_one_is_refused() {
    let idp = start(&[]);
    let (code, _) = idp.login("user001", REDIRECT);
    let (_, v) = idp.exchange(&code, "C1", "s3cret", None);
    let (old, refresh) = (
        v["access_token"].as_str().unwrap(),
        v["refresh_token"].as_str().unwrap(),
    );
    let (s, v) = idp.token(&form(refresh, "C1", "s3cret"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["token_type"].as_str(), v["expires_in"].as_u64()),
        (Some("Bearer"), Some(7200))
    );
    let fresh = v["access_token"].as_str().unwrap();
    assert_ne!(fresh, old);
    assert_eq!(idp.userinfo(Some(fresh)).1["userName"], "user001");
    // The access token it replaces stops working.
    assert_eq!(idp.userinfo(Some(old)).0, 401);
    let (s, v) = idp.token(&form("not-a-token", "C1", "s3cret"));
    assert_eq!(
        (s, error(&v)),
        (400, ("invalid_grant", "Invalid refresh token"))
    );
    // Another client cannot use C1's refresh token.
    let (s, v) = idp.token(&form(refresh, "C2", "other"));
    assert_eq!(
        (s, error(&v)),
        (400, ("invalid_grant", "Invalid refresh token"))
    );
    let (s, v) = idp.token(&form(refresh, "C1", "wrong"));
    assert_eq!(
        (s, error(&v)),
        (403, ("invalid_client", "Bad client credentials"))
    );
}

#[test]
fn userinfo_needs_a_valid_unexpired_bearer_token() {
    let idp = start(&["--idp-access-ttl", "300ms"]);
    let (s, v) = idp.userinfo(None);
    assert_eq!(
        (s, error(&v)),
        (
            401,
            (
                "unauthorized",
                "Full authentication is required to access this resource"
            )
        )
    );
    let (s, v) = idp.userinfo(Some("made-up"));
    assert_eq!(
        (s, error(&v)),
        (401, ("invalid_token", "Invalid access token"))
    );
    let (code, _) = idp.login("user000", REDIRECT);
    let (_, v) = idp.exchange(&code, "C1", "s3cret", None);
    assert_eq!(
        v["expires_in"], 0,
        "a 300 ms lifetime is announced as 0 whole seconds"
    );
    let access = v["access_token"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(400));
    let (s, v) = idp.userinfo(Some(&access));
    assert_eq!(
        (s, error(&v)),
        (401, ("invalid_token", "Access token expired"))
    );
}

#[test]
fn logout_redirects_to_the_given_url_and_the_portal_refuses_strangers() {
    let idp = start(&[]);
    let back = "http://127.0.0.1:9/bye?x=1";
    let r = idp
        .http
        .get(idp.url("/api/v1/logout"))
        .query(&[("redirect_url", back)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], back);
    let (s, v) = json_of(idp.http.get(idp.url("/api/v1/logout")).send().unwrap());
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")));
    assert!(idp
        .events()
        .iter()
        .any(|e| e["event"] == "logout" && e["redirect_url"] == back));
    // A user authSync never sent, an app applicationSync never sent.
    for (app, user) in [("A1", "user999"), ("A9", "user000")] {
        let r = idp
            .http
            .get(idp.url("/unified-login/portal"))
            .query(&[("appId", app), ("user", user), ("redirect_uri", REDIRECT)])
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{app} {user}");
    }
    // The marketplace's own APIs still answer beside the IdP.
    let r = idp.http.get(idp.url("/no/such/api")).send().unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn a_sync_the_idp_does_not_learn_from_is_refused() {
    let idp = start(&[]);
    let r = idp
        .http
        .post(idp.url("/idp/sync"))
        .header("Content-Type", "application/json")
        .body(json!({"sync": "orgSync", "fields": {}}).to_string())
        .send()
        .unwrap();
    let (status, v) = json_of(r);
    assert_eq!(status, 400, "{v}");
    let (code, desc) = error(&v);
    assert_eq!(code, "invalid_request");
    assert!(
        desc.contains("\"orgSync\": the identity provider learns from tenantSync, applicationSync, authSync only"),
        "{desc}"
    );
}
