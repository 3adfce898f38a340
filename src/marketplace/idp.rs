//! The stand-in identity provider of 联营 single sign-on (spec/sso.md): the login portal,
//! the OAuth 2.0 token endpoint (authorization_code and refresh_token grants), userinfo and
//! logout, with the documented shapes, statuses and error strings.
//!
//! State only: requests come in as [`Request`]s and go out as [`Response`]s, time comes from
//! a [`Clock`] and codes and tokens from an [`Entropy`], so every rule (single-use codes,
//! expiry) is testable with a pinned clock. Apps, tenants and users are learnt from the Kit
//! syncs csm itself sends ([`Idp::learn`]), so one run is coherent. What callers did is kept
//! in an event log ([`Idp::events`]) that `test-endpoint`'s sso suite judges by.

use crate::clock::{Clock, Entropy};
use crate::secret::Secret;
use crate::server::{Handler, Request, Response};
use reqwest::Url;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long an authorization code may wait for its exchange. Not published; OAuth 2.0
/// (RFC 6749 §4.1.2) recommends at most 10 minutes. `--idp-code-ttl` overrides it.
pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(300);
/// `expires_in` of access tokens (zh-cn_topic_0070649448).
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(7200);
/// Refresh tokens are valid 30 days (saascenter_usermanual_0162).
pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

pub use crate::protocol::sso::{LOGOUT_PATH, PORTAL_PATH, TOKEN_PATH, USERINFO_PATH};
/// Test plumbing of `csm serve marketplace`: teach the IdP a Kit sync (POST), read its
/// event log (GET). In process, the sso suite calls [`Idp::learn`] and [`Idp::events`].
pub const SYNC_PATH: &str = "/idp/sync";

/// The Kit syncs [`Idp::learn`] takes something from.
const LEARNT_SYNCS: [&str; 3] = ["tenantSync", "applicationSync", "authSync"];
pub const EVENTS_PATH: &str = "/idp/events";

#[derive(Debug, Clone, Copy)]
pub struct IdpConfig {
    pub code_ttl: Duration,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

impl Default for IdpConfig {
    fn default() -> Self {
        IdpConfig {
            code_ttl: DEFAULT_CODE_TTL,
            access_ttl: DEFAULT_ACCESS_TTL,
            refresh_ttl: DEFAULT_REFRESH_TTL,
        }
    }
}

/// What a token request's `client_secret` was, compared with what applicationSync carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretGiven {
    /// The decrypted secret: right.
    Plaintext,
    /// The Base64 ciphertext exactly as applicationSync sent it: never decrypted.
    Ciphertext,
    /// Something else.
    Wrong,
    /// No `client_secret` at all.
    Missing,
    /// The client id is unknown, so the secret could not be compared.
    UnknownClient,
}

/// One thing a caller did, in order. Secrets and tokens are never kept here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum IdpEvent {
    /// The portal sent a browser to `redirect_uri` with a fresh code.
    Login {
        app_id: String,
        user: String,
        redirect_uri: String,
    },
    Token {
        grant_type: String,
        client_id: String,
        secret: SecretGiven,
        /// `None` when a token was issued, else the `error` answered.
        error: Option<String>,
    },
    Userinfo {
        /// The userName answered; `None` when refused.
        user: Option<String>,
        error: Option<String>,
    },
    Logout {
        redirect_url: String,
    },
}

#[derive(Debug, Clone)]
struct App {
    tenant_id: String,
    client_id: String,
    secret: Secret,
    /// The clientSecret field as sent (the ciphertext), to recognise it coming back.
    sealed: Option<String>,
}

#[derive(Debug, Clone)]
struct Grant {
    app_id: String,
    client_id: String,
    user: String,
    tenant_id: String,
    redirect_uri: String,
    expires_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    /// tenantId → domainName
    tenants: HashMap<String, String>,
    apps: HashMap<String, App>,
    /// (appId, userName) → the user as authSync sent it
    users: HashMap<(String, String), Value>,
    codes: HashMap<String, Grant>,
    access: HashMap<String, Grant>,
    refresh: HashMap<String, Grant>,
    events: Vec<IdpEvent>,
}

pub struct Idp {
    cfg: IdpConfig,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp").field("cfg", &self.cfg).finish()
    }
}

/// An OAuth error reply: `{"error","error_description"}`.
/// 400 `invalid_request` for a redirect parameter that is not an absolute http(s) URL.
fn not_http_url(name: &str, given: &str) -> Response {
    oauth_error(
        400,
        "invalid_request",
        &format!("{name} {given:?}: must be an absolute http or https URL"),
    )
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    Response::json(
        status,
        json!({"error": error, "error_description": description}).to_string(),
    )
}

/// `invalid_client` is answered 403: the seller FAQ's "token calls answered 403" are the
/// undecrypted secret (spec/sso.md); no other status is published.
const INVALID_CLIENT_STATUS: u16 = 403;
const BAD_CLIENT: &str = "Bad client credentials";
const CLIENT_MISMATCH: &str = "Client ID mismatch";
const BAD_CODE: &str = "Invalid authorization code";
const BAD_REFRESH: &str = "Invalid refresh token";
const REDIRECT_MISMATCH: &str = "Redirect URI mismatch";
const NEEDS_AUTH: &str = "Full authentication is required to access this resource";

/// `a=1&b=2` (a form body or a query) as decoded pairs; a malformed one is answered 400
/// `invalid_request`, naming where it breaks.
fn form_pairs(s: &str) -> Result<Vec<(String, String)>, Response> {
    crate::protocol::v1::parse_query(s, true)
        .map_err(|e| oauth_error(400, "invalid_request", &e.to_string()))
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn redirect(location: &str) -> Response {
    Response::text(302, "").with_header("Location", location)
}

impl Idp {
    pub fn new(cfg: IdpConfig, clock: Arc<dyn Clock>, entropy: Arc<dyn Entropy>) -> Idp {
        Idp {
            cfg,
            clock,
            entropy,
            state: Mutex::new(State::default()),
        }
    }

    pub fn config(&self) -> IdpConfig {
        self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A handler that panicked holding the lock left whole maps behind: go on with them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything callers did so far, oldest first.
    pub fn events(&self) -> Vec<IdpEvent> {
        self.lock().events.clone()
    }

    /// Learns from a Kit sync's fields as csm sent them: tenantSync (domainName),
    /// applicationSync (clientId; `plain_secret` is the clientSecret before encryption) and
    /// authSync (userList). `flag` 0 removes; other syncs are ignored.
    pub fn learn(
        &self,
        sync: &str,
        fields: &Value,
        plain_secret: Option<&str>,
    ) -> Result<(), String> {
        let s = |k: &str| -> Result<String, String> {
            fields[k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{sync}: field {k} missing or not a string"))
        };
        let removed = fields["flag"].as_i64() == Some(0) || fields["flag"].as_str() == Some("0");
        let mut st = self.lock();
        match sync {
            "tenantSync" => {
                let tenant = s("tenantId")?;
                if removed {
                    st.tenants.remove(&tenant);
                } else {
                    st.tenants.insert(tenant, s("domainName")?);
                }
            }
            "applicationSync" => {
                let app_id = s("appId")?;
                if removed {
                    st.apps.remove(&app_id);
                    return Ok(());
                }
                let secret =
                    plain_secret.ok_or("applicationSync: the plaintext clientSecret is needed")?;
                let app = App {
                    tenant_id: s("tenantId")?,
                    client_id: s("clientId")?,
                    secret: Secret::new(secret.to_string()),
                    sealed: fields["clientSecret"]
                        .as_str()
                        .filter(|c| *c != secret)
                        .map(str::to_string),
                };
                st.apps.insert(app_id, app);
            }
            "authSync" => {
                let app_id = s("appId")?;
                let users = match &fields["userList"] {
                    Value::Array(a) => a.clone(),
                    // V1 carries the list as a JSON string.
                    Value::String(t) => serde_json::from_str(t)
                        .map_err(|e| format!("authSync: userList is not a JSON list ({e})"))?,
                    _ => return Err("authSync: userList missing".into()),
                };
                for u in users {
                    let Some(name) = u["userName"].as_str().map(str::to_string) else {
                        continue;
                    };
                    let key = (app_id.clone(), name);
                    if removed || fields["flag"].as_i64() == Some(3) {
                        st.users.remove(&key);
                    } else {
                        st.users.insert(key, u);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The refresh tokens issued to `client_id` so far (for the suite's refresh check).
    pub fn refresh_tokens_of(&self, client_id: &str) -> Vec<String> {
        self.lock()
            .refresh
            .iter()
            .filter(|(_, g)| g.client_id == client_id)
            .map(|(t, _)| t.clone())
            .collect()
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn ttl_ms(d: Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }

    /// The routes this IdP answers; `None` for any other path.
    pub fn route(&self, req: &Request) -> Option<Response> {
        let r = match (req.method.as_str(), req.path()) {
            ("GET", PORTAL_PATH) => self.portal(req),
            ("POST", TOKEN_PATH) => self.token(req),
            ("GET", USERINFO_PATH) => self.userinfo(req),
            ("GET", LOGOUT_PATH) => self.logout(req),
            ("POST", SYNC_PATH) => self.sync_api(req),
            ("GET", EVENTS_PATH) => Response::json(
                200,
                serde_json::to_string(&self.events()).unwrap_or_default(),
            ),
            (
                _,
                PORTAL_PATH | TOKEN_PATH | USERINFO_PATH | LOGOUT_PATH | SYNC_PATH | EVENTS_PATH,
            ) => oauth_error(
                405,
                "method_not_allowed",
                &format!("{} not allowed here", req.method),
            ),
            _ => return None,
        };
        Some(r)
    }

    /// `GET /unified-login/portal?appId=…&user=…&redirect_uri=…[&state=…]`: the user logs in
    /// at once (no page) and the browser is sent to `redirect_uri?code=…&tenant=…`.
    fn portal(&self, req: &Request) -> Response {
        let q = match form_pairs(req.query()) {
            Ok(q) => q,
            Err(bad) => return bad,
        };
        let (Some(app_id), Some(user), Some(redirect_uri)) = (
            param(&q, "appId"),
            param(&q, "user"),
            param(&q, "redirect_uri"),
        ) else {
            return oauth_error(
                400,
                "invalid_request",
                "appId, user and redirect_uri are required",
            );
        };
        let mut target = match Url::parse(redirect_uri) {
            Ok(t) if matches!(t.scheme(), "http" | "https") => t,
            _ => return not_http_url("redirect_uri", redirect_uri),
        };
        let mut st = self.lock();
        let Some(app) = st.apps.get(app_id).cloned() else {
            return oauth_error(400, "invalid_request", "unknown appId (no applicationSync)");
        };
        if !st
            .users
            .contains_key(&(app_id.to_string(), user.to_string()))
        {
            return oauth_error(
                400,
                "access_denied",
                "user not authorised for this app (no authSync)",
            );
        }
        let code = self.entropy.uuid().replace('-', "");
        st.codes.insert(
            code.clone(),
            Grant {
                app_id: app_id.to_string(),
                client_id: app.client_id.clone(),
                user: user.to_string(),
                tenant_id: app.tenant_id.clone(),
                redirect_uri: redirect_uri.to_string(),
                expires_ms: self.now_ms() + Self::ttl_ms(self.cfg.code_ttl),
            },
        );
        st.events.push(IdpEvent::Login {
            app_id: app_id.to_string(),
            user: user.to_string(),
            redirect_uri: redirect_uri.to_string(),
        });
        {
            let mut qp = target.query_pairs_mut();
            qp.append_pair("code", &code);
            qp.append_pair("tenant", &app.tenant_id);
            if let Some(s) = param(&q, "state") {
                qp.append_pair("state", s);
            }
        }
        redirect(target.as_str())
    }

    /// Which app a client id and secret belong to, and what the secret was.
    fn authenticate(
        st: &State,
        client_id: &str,
        secret: Option<&str>,
    ) -> (Option<String>, SecretGiven) {
        let Some((app_id, app)) = st.apps.iter().find(|(_, a)| a.client_id == client_id) else {
            return (None, SecretGiven::UnknownClient);
        };
        let given = match secret {
            None => SecretGiven::Missing,
            Some(s)
                if crate::protocol::hmac::ct_eq(s.as_bytes(), app.secret.expose().as_bytes()) =>
            {
                SecretGiven::Plaintext
            }
            Some(s) if app.sealed.as_deref() == Some(s) => SecretGiven::Ciphertext,
            Some(_) => SecretGiven::Wrong,
        };
        let ok = given == SecretGiven::Plaintext;
        (ok.then(|| app_id.clone()), given)
    }

    /// `POST /api/v1/oauth2/token`, form-encoded: both grants.
    fn token(&self, req: &Request) -> Response {
        let form = match form_pairs(&String::from_utf8_lossy(&req.body)) {
            Ok(f) => f,
            Err(bad) => return bad,
        };
        let grant_type = param(&form, "grant_type").unwrap_or("").to_string();
        let client_id = param(&form, "client_id").unwrap_or("").to_string();
        let mut st = self.lock();
        let (app_id, secret) = Self::authenticate(&st, &client_id, param(&form, "client_secret"));
        let (resp, error) = match (app_id, grant_type.as_str()) {
            (None, _) => (
                oauth_error(INVALID_CLIENT_STATUS, "invalid_client", BAD_CLIENT),
                Some("invalid_client"),
            ),
            (Some(_), "authorization_code") => self.exchange_code(&mut st, &form, &client_id),
            (Some(_), "refresh_token") => self.refresh(&mut st, &form, &client_id),
            (Some(_), "") => (
                oauth_error(400, "invalid_request", "Missing grant type"),
                Some("invalid_request"),
            ),
            (Some(_), other) => (
                oauth_error(
                    400,
                    "unsupported_grant_type",
                    &format!("Unsupported grant type: {}", other.replace('"', "")),
                ),
                Some("unsupported_grant_type"),
            ),
        };
        st.events.push(IdpEvent::Token {
            grant_type,
            client_id,
            secret,
            error: error.map(str::to_string),
        });
        resp
    }

    fn exchange_code(
        &self,
        st: &mut State,
        form: &[(String, String)],
        client_id: &str,
    ) -> (Response, Option<&'static str>) {
        let Some(code) = param(form, "code") else {
            return (
                oauth_error(
                    400,
                    "invalid_request",
                    "An authorization code must be supplied",
                ),
                Some("invalid_request"),
            );
        };
        // Single use: taken out whatever follows, as a replay must never succeed.
        let grant = st.codes.remove(code);
        let Some(grant) = grant.filter(|g| g.expires_ms > self.now_ms()) else {
            return (
                oauth_error(400, "invalid_grant", BAD_CODE),
                Some("invalid_grant"),
            );
        };
        if grant.client_id != client_id {
            return (
                oauth_error(INVALID_CLIENT_STATUS, "invalid_client", CLIENT_MISMATCH),
                Some("invalid_client"),
            );
        }
        // redirect_uri is optional; when given it must be the one the code went to.
        if param(form, "redirect_uri").is_some_and(|r| r != grant.redirect_uri) {
            return (
                oauth_error(400, "invalid_grant", REDIRECT_MISMATCH),
                Some("invalid_grant"),
            );
        }
        let refresh = self.entropy.uuid();
        st.refresh.insert(
            refresh.clone(),
            Grant {
                expires_ms: self.now_ms() + Self::ttl_ms(self.cfg.refresh_ttl),
                ..grant.clone()
            },
        );
        (self.issue(st, grant, &refresh), None)
    }

    fn refresh(
        &self,
        st: &mut State,
        form: &[(String, String)],
        client_id: &str,
    ) -> (Response, Option<&'static str>) {
        let now = self.now_ms();
        let grant = param(form, "refresh_token")
            .and_then(|t| st.refresh.get(t))
            .filter(|g| g.expires_ms > now && g.client_id == client_id)
            .cloned();
        let Some(grant) = grant else {
            return (
                oauth_error(400, "invalid_grant", BAD_REFRESH),
                Some("invalid_grant"),
            );
        };
        let refresh = param(form, "refresh_token").unwrap_or_default().to_string();
        // The access tokens issued before for this grant stop working.
        st.access
            .retain(|_, g| !(g.client_id == grant.client_id && g.user == grant.user));
        (self.issue(st, grant, &refresh), None)
    }

    fn issue(&self, st: &mut State, grant: Grant, refresh: &str) -> Response {
        let access = self.entropy.uuid();
        st.access.insert(
            access.clone(),
            Grant {
                expires_ms: self.now_ms() + Self::ttl_ms(self.cfg.access_ttl),
                ..grant
            },
        );
        Response::json(
            200,
            json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.cfg.access_ttl.as_secs(),
                "scope": "get_user_info",
                "refresh_token": refresh,
            })
            .to_string(),
        )
    }

    /// `GET /api/v1/oauth2/userinfo` with `Authorization: Bearer …`.
    fn userinfo(&self, req: &Request) -> Response {
        let token = req
            .header("authorization")
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let mut st = self.lock();
        let now = self.now_ms();
        let (resp, event) = match token.map(|t| st.access.get(t).cloned()) {
            None => (
                oauth_error(401, "unauthorized", NEEDS_AUTH),
                Err("unauthorized"),
            ),
            Some(None) => (
                oauth_error(401, "invalid_token", "Invalid access token"),
                Err("invalid_token"),
            ),
            Some(Some(g)) if g.expires_ms <= now => (
                oauth_error(401, "invalid_token", "Access token expired"),
                Err("invalid_token"),
            ),
            Some(Some(g)) => {
                let u = st
                    .users
                    .get(&(g.app_id.clone(), g.user.clone()))
                    .cloned()
                    .unwrap_or(Value::Null);
                let text = |k: &str| u[k].as_str().unwrap_or("").to_string();
                let role = if u["role"].as_str() == Some("admin") {
                    "admin"
                } else {
                    "user"
                };
                let body = json!({
                    "id": format!("{}-{}", g.tenant_id, g.user),
                    "userName": g.user,
                    "name": text("name"),
                    "email": text("email"),
                    "mobile": text("mobile"),
                    "role": role,
                    "organizationName": text("orgName"),
                    "userId": text("employeeCode"),
                    "organizationCode": text("orgCode"),
                    "projectName": "",
                    "tenant": g.tenant_id,
                });
                (Response::json(200, body.to_string()), Ok(g.user))
            }
        };
        st.events.push(match event {
            Ok(user) => IdpEvent::Userinfo {
                user: Some(user),
                error: None,
            },
            Err(e) => IdpEvent::Userinfo {
                user: None,
                error: Some(e.into()),
            },
        });
        resp
    }

    /// `GET /api/v1/logout?redirect_url=…` → 302 there.
    fn logout(&self, req: &Request) -> Response {
        let q = match form_pairs(req.query()) {
            Ok(q) => q,
            Err(bad) => return bad,
        };
        let given = param(&q, "redirect_url").unwrap_or("");
        let target = match Url::parse(given) {
            Ok(t) if matches!(t.scheme(), "http" | "https") => t,
            _ => return not_http_url("redirect_url", given),
        };
        self.lock().events.push(IdpEvent::Logout {
            redirect_url: target.to_string(),
        });
        redirect(target.as_str())
    }

    /// `POST /idp/sync` `{"sync": NAME, "fields": {…}, "clientSecret": PLAINTEXT}`.
    fn sync_api(&self, req: &Request) -> Response {
        let v: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return oauth_error(400, "invalid_request", &format!("not JSON: {e}")),
        };
        let sync = v["sync"].as_str().unwrap_or("");
        // `learn` passes over the other syncs a suite sends; a caller naming one here
        // expects it learnt.
        if !LEARNT_SYNCS.contains(&sync) {
            return oauth_error(
                400,
                "invalid_request",
                &format!(
                    "sync {sync:?}: the identity provider learns from {} only",
                    LEARNT_SYNCS.join(", ")
                ),
            );
        }
        match self.learn(sync, &v["fields"], v["clientSecret"].as_str()) {
            Ok(()) => Response::json(200, r#"{"learnt":true}"#),
            Err(e) => oauth_error(400, "invalid_request", &e),
        }
    }
}

impl Handler for Idp {
    fn handle(&self, req: Request) -> Response {
        self.route(&req)
            .unwrap_or_else(|| oauth_error(404, "not_found", "no such IdP route"))
    }

    fn activity(&self, req: &Request) -> String {
        req.path().rsplit('/').next().unwrap_or("-").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

    /// A clock the test moves by hand.
    #[derive(Debug)]
    struct Pinned(AtomicI64);

    impl Clock for Pinned {
        fn now(&self) -> DateTime<Utc> {
            Utc.timestamp_millis_opt(self.0.load(Ordering::SeqCst))
                .unwrap()
        }
    }

    #[derive(Debug, Default)]
    struct Counter(AtomicU64);

    impl Entropy for Counter {
        fn nonce_hex64(&self) -> String {
            "0".repeat(64)
        }
        fn uuid(&self) -> String {
            format!(
                "00000000-0000-4000-8000-{:012}",
                self.0.fetch_add(1, Ordering::SeqCst)
            )
        }
        fn below(&self, _n: usize) -> usize {
            0
        }
    }

    const START: i64 = 1_768_046_400_000;

    fn idp() -> (Idp, Arc<Pinned>) {
        let clock = Arc::new(Pinned(AtomicI64::new(START)));
        let idp = Idp::new(
            IdpConfig {
                code_ttl: Duration::from_secs(60),
                access_ttl: Duration::from_secs(7200),
                refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            },
            clock.clone(),
            Arc::new(Counter::default()),
        );
        idp.learn(
            "tenantSync",
            &json!({"tenantId": "T1", "domainName": "http://idp", "flag": 1}),
            None,
        )
        .unwrap();
        idp.learn(
            "applicationSync",
            &json!({"tenantId": "T1", "appId": "A1", "clientId": "C1", "clientSecret": "SEALED", "flag": 1}),
            Some("plain"),
        )
        .unwrap();
        idp.learn(
            "authSync",
            &json!({"tenantId": "T1", "appId": "A1", "flag": 1,
                    "userList": [{"userName": "user000", "role": "admin", "name": "张三"}]}),
            None,
        )
        .unwrap();
        (idp, clock)
    }

    fn get(idp: &Idp, url: &str, bearer: Option<&str>) -> Response {
        let mut headers = Vec::new();
        if let Some(b) = bearer {
            headers.push(("authorization".to_string(), format!("Bearer {b}")));
        }
        idp.handle(Request {
            method: "GET".into(),
            url: url.into(),
            headers,
            body: Vec::new(),
        })
    }

    fn token(idp: &Idp, form: &str) -> (u16, Value) {
        let r = idp.handle(Request {
            method: "POST".into(),
            url: TOKEN_PATH.into(),
            headers: vec![],
            body: form.as_bytes().to_vec(),
        });
        (r.status, serde_json::from_slice(&r.body).unwrap())
    }

    fn login(idp: &Idp) -> String {
        let r = get(
            idp,
            "/unified-login/portal?appId=A1&user=user000&redirect_uri=http%3A%2F%2Fapp%2Fcb",
            None,
        );
        assert_eq!(r.status, 302);
        let loc = &r.headers.iter().find(|(n, _)| n == "Location").unwrap().1;
        let u = Url::parse(loc).unwrap();
        assert_eq!(u.path(), "/cb");
        let q: HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["tenant"], "T1");
        q["code"].clone()
    }

    #[test]
    fn the_portal_keeps_the_redirect_query_and_passes_state_through() {
        let (idp, _) = idp();
        let r = get(
            &idp,
            "/unified-login/portal?appId=A1&user=user000&state=xyz&redirect_uri=http%3A%2F%2Fapp%2Fcb%3Fx%3D1",
            None,
        );
        assert_eq!(r.status, 302);
        let loc = &r.headers.iter().find(|(n, _)| n == "Location").unwrap().1;
        let q: Vec<(String, String)> = Url::parse(loc)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        let names: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["x", "code", "tenant", "state"], "{loc}");
        assert_eq!(q[3].1, "xyz");
        // The code is bound to the redirect URI as given, query and all.
        let (s, v) = token(
            &idp,
            &format!(
                "grant_type=authorization_code&client_id=C1&client_secret=plain&code={}&redirect_uri=http%3A%2F%2Fapp%2Fcb%3Fx%3D1",
                q[1].1
            ),
        );
        assert_eq!(s, 200, "{v}");
    }

    #[test]
    fn a_code_expires_after_its_ttl() {
        let (idp, clock) = idp();
        let code = login(&idp);
        clock.0.fetch_add(60_000, Ordering::SeqCst);
        let (s, v) = token(
            &idp,
            &format!("grant_type=authorization_code&client_id=C1&client_secret=plain&code={code}"),
        );
        assert_eq!((s, v["error_description"].as_str()), (400, Some(BAD_CODE)));
        // One millisecond earlier it would still have worked.
        let code = login(&idp);
        clock.0.fetch_add(59_999, Ordering::SeqCst);
        let (s, v) = token(
            &idp,
            &format!("grant_type=authorization_code&client_id=C1&client_secret=plain&code={code}"),
        );
        assert_eq!(s, 200, "{v}");
    }

    #[test]
    fn access_and_refresh_tokens_expire_at_their_lifetimes() {
        let (idp, clock) = idp();
        let code = login(&idp);
        let (_, v) = token(
            &idp,
            &format!("grant_type=authorization_code&client_id=C1&client_secret=plain&code={code}"),
        );
        assert_eq!(v["expires_in"], 7200);
        let access = v["access_token"].as_str().unwrap().to_string();
        let refresh = v["refresh_token"].as_str().unwrap().to_string();
        clock.0.fetch_add(7_199_999, Ordering::SeqCst);
        assert_eq!(get(&idp, USERINFO_PATH, Some(&access)).status, 200);
        clock.0.fetch_add(1, Ordering::SeqCst);
        let r = get(&idp, USERINFO_PATH, Some(&access));
        assert_eq!(r.status, 401);
        assert!(String::from_utf8_lossy(&r.body).contains("Access token expired"));
        // The refresh token outlives it: a new access token reads userinfo again.
        let (s, v) = token(
            &idp,
            &format!(
                "grant_type=refresh_token&client_id=C1&client_secret=plain&refresh_token={refresh}"
            ),
        );
        assert_eq!(s, 200, "{v}");
        let fresh = v["access_token"].as_str().unwrap().to_string();
        let info = get(&idp, USERINFO_PATH, Some(&fresh));
        let info: Value = serde_json::from_slice(&info.body).unwrap();
        assert_eq!(
            (
                info["userName"].as_str(),
                info["role"].as_str(),
                info["tenant"].as_str()
            ),
            (Some("user000"), Some("admin"), Some("T1"))
        );
        // 30 days after the exchange the refresh token is gone.
        clock.0.store(START + 30 * 24 * 3_600_000, Ordering::SeqCst);
        let (s, v) = token(
            &idp,
            &format!(
                "grant_type=refresh_token&client_id=C1&client_secret=plain&refresh_token={refresh}"
            ),
        );
        assert_eq!(
            (s, v["error_description"].as_str()),
            (400, Some(BAD_REFRESH))
        );
    }

    #[test]
    fn the_event_log_tells_a_ciphertext_from_a_wrong_secret() {
        let (idp, _) = idp();
        let code = login(&idp);
        for secret in ["SEALED", "nope"] {
            let (s, v) = token(
                &idp,
                &format!(
                    "grant_type=authorization_code&client_id=C1&client_secret={secret}&code={code}"
                ),
            );
            assert_eq!((s, v["error"].as_str()), (403, Some("invalid_client")));
        }
        let seen: Vec<SecretGiven> = idp
            .events()
            .into_iter()
            .filter_map(|e| match e {
                IdpEvent::Token { secret, .. } => Some(secret),
                _ => None,
            })
            .collect();
        assert_eq!(seen, [SecretGiven::Ciphertext, SecretGiven::Wrong]);
        // A bad secret does not use the code up.
        let (s, _) = token(
            &idp,
            &format!("grant_type=authorization_code&client_id=C1&client_secret=plain&code={code}"),
        );
        assert_eq!(s, 200);
    }
}
