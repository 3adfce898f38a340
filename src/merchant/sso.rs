//! The app side of a joint-operation (联营) login (sso.md), as a seller's app does it:
//! keep what the Kit syncs say (tenantSync: the tenant's identity host; applicationSync: the
//! client id and the clientSecret, decrypted with the app's private key; authSync: the users),
//! then on `GET /sso/callback?code=…&tenant=…` exchange the code for a token with the
//! decrypted secret, ask userinfo who logged in, and give the browser a session cookie.
//!
//! Routes: `/sso/callback` (the app's redirect URI), `/sso/app` (200 with the session's
//! user, else 401), `/sso/logout` (ends the session, 302 to the identity host's logout),
//! `/sso/logged-out`.

use super::{reply, Fault, Reply};
use crate::protocol::rsa_oaep::{self, AppKey, Reading};
use crate::protocol::sso as idp_path;
use crate::secret::Secret;
use crate::server::{Request, Response};
use rsa::RsaPrivateKey;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The login redirect URI's path on the merchant's listener (`?code=…&tenant=…`).
pub const CALLBACK_PATH: &str = "/sso/callback";
/// The app page: 200 with `{"userName","tenant"}` for a session cookie, else 401.
pub const APP_PATH: &str = "/sso/app";
/// Ends the session and redirects to the identity host's logout.
pub const LOGOUT_PATH: &str = "/sso/logout";

/// The session cookie's name.
pub const COOKIE: &str = "csm_session";

/// How long the merchant waits for the identity provider by default.
pub const IDP_TIMEOUT: Duration = Duration::from_secs(5);

/// A client secret recovered from applicationSync, and the OAEP reading that opened it.
pub struct Decrypted {
    pub reading: Reading,
    pub secret: Secret,
}

struct App {
    app_id: String,
    client_id: String,
    /// The plaintext secret (None without `--app-private-key`).
    secret: Option<Secret>,
    /// The clientSecret as received (what the `sso-secret-encrypted` fault sends).
    ciphertext: String,
}

#[derive(Clone)]
struct Session {
    user_name: Option<String>,
    tenant: String,
}

#[derive(Default)]
struct State {
    /// tenantId → domainName (tenantSync).
    domains: HashMap<String, String>,
    /// tenantId → the app's credentials (applicationSync).
    apps: HashMap<String, App>,
    /// tenantId → userNames that may log in (authSync).
    users: HashMap<String, HashSet<String>>,
    /// cookie value → session.
    sessions: HashMap<String, Session>,
    /// code → session, for the `sso-code-reuse` fault only.
    by_code: HashMap<String, Session>,
}

/// How the merchant plays the app side of the login.
#[derive(Clone)]
pub struct SsoConfig {
    /// The app's private key (`--app-private-key`): applicationSync's clientSecret is
    /// decrypted with it, and refused with `000101` when it does not decrypt. Without it,
    /// clientSecret is kept as received and no login can succeed.
    pub key: Option<Arc<RsaPrivateKey>>,
    /// How long a login waits for the identity provider.
    pub timeout: Duration,
    /// Log the steps (which OAEP reading opened a secret, who logged in) on stderr, in the
    /// server's own log format.
    pub log: crate::server::Log,
}

impl Default for SsoConfig {
    fn default() -> Self {
        SsoConfig {
            key: None,
            timeout: IDP_TIMEOUT,
            log: crate::server::Log::Off,
        }
    }
}

/// A fresh key pair for an in-process merchant (`test-endpoint --demo`, about a second in a
/// debug build): the config that decrypts with the private key, and the sender's key that
/// encrypts under `reading` (for [`crate::catalog::gen::Ctx::app_key`]).
pub fn demo_pair(reading: Reading) -> crate::error::Result<(SsoConfig, AppKey)> {
    let key = rsa_oaep::generate()?;
    let public = AppKey {
        key: Arc::new(key.to_public_key()),
        reading,
    };
    Ok((
        SsoConfig {
            key: Some(Arc::new(key)),
            ..SsoConfig::default()
        },
        public,
    ))
}

pub struct Sso {
    cfg: SsoConfig,
    state: Mutex<State>,
}

fn text(status: u16, body: impl Into<String>) -> Response {
    Response::text(status, body.into().into_bytes())
}

fn str_of<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    crate::protocol::v1::parse_query(req.query(), false)
        .ok()?
        .into_iter()
        .find(|(n, v)| n == name && !v.is_empty())
        .map(|(_, v)| v)
}

fn cookie(req: &Request) -> Option<String> {
    req.header("cookie")?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The error of an identity-provider reply: `HTTP 400 invalid_grant: Invalid authorization code`.
/// One non-empty string field of an IdP call's 200 JSON reply; else what went wrong.
fn reply_field(
    url: &reqwest::Url,
    sent: reqwest::Result<reqwest::blocking::Response>,
    field: &str,
) -> Result<String, String> {
    let r = sent.map_err(|e| format!("{url}: {}", crate::net::failure::from_reqwest(e).message))?;
    let status = r.status().as_u16();
    let body = r.text().unwrap_or_default();
    if status != 200 {
        return Err(idp_error(status, &body));
    }
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v[field]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("HTTP 200 without {field}"))
}

fn idp_error(status: u16, body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_default();
    match (v["error"].as_str(), v["error_description"].as_str()) {
        (Some(e), Some(d)) => format!("HTTP {status} {e}: {d}"),
        (Some(e), None) => format!("HTTP {status} {e}"),
        _ => format!("HTTP {status}"),
    }
}

impl Sso {
    pub fn new(cfg: SsoConfig) -> Sso {
        Sso {
            cfg,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self, line: &str) {
        match self.cfg.log {
            crate::server::Log::Off => {}
            crate::server::Log::Text => eprintln!("sso: {line}"),
            crate::server::Log::Json => eprintln!("{}", json!({ "sso": line })),
        }
    }

    /// applicationSync's clientSecret decrypted with the app's private key, before the
    /// signature is checked (as the official demo does): `000101` when no OAEP reading opens
    /// it. Without a private key nothing is decrypted.
    pub fn decrypt(&self, body: &[u8]) -> Result<Option<Decrypted>, Reply> {
        let Some(key) = &self.cfg.key else {
            return Ok(None);
        };
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
            return Ok(None);
        };
        let Some(ct) = str_of(&body, "clientSecret") else {
            return Ok(None);
        };
        match rsa_oaep::decrypt_any(key, ct) {
            Ok((reading, plain)) => {
                let secret = String::from_utf8(plain).map_err(|_| {
                    reply(
                        "000101",
                        "clientSecret decrypts to bytes that are not UTF-8",
                    )
                })?;
                Ok(Some(Decrypted {
                    reading,
                    secret: Secret::new(secret),
                }))
            }
            Err(e) => {
                self.note(&format!("applicationSync clientSecret refused: {e}"));
                Err(reply(
                    "000101",
                    format!("clientSecret {e} (--app-private-key)"),
                ))
            }
        }
    }

    /// Keeps what an accepted Kit sync says about tenants, apps and users.
    pub fn synced(
        &self,
        name: &str,
        body: &Map<String, Value>,
        flag: i64,
        decrypted: Option<Decrypted>,
    ) {
        let Some(tenant) = str_of(body, "tenantId").map(str::to_string) else {
            return;
        };
        let mut st = self.state();
        match (name, flag) {
            ("tenantSync", 0) => {
                st.domains.remove(&tenant);
            }
            ("tenantSync", _) => {
                if let Some(d) = str_of(body, "domainName") {
                    st.domains
                        .insert(tenant, d.trim_end_matches('/').to_string());
                }
            }
            ("applicationSync", 0) => {
                st.apps.remove(&tenant);
            }
            ("applicationSync", _) => {
                let app = App {
                    app_id: str_of(body, "appId").unwrap_or_default().to_string(),
                    client_id: str_of(body, "clientId").unwrap_or_default().to_string(),
                    ciphertext: str_of(body, "clientSecret").unwrap_or_default().to_string(),
                    secret: decrypted.as_ref().map(|d| d.secret.clone()),
                };
                if let Some(d) = &decrypted {
                    self.note(&format!(
                        "applicationSync tenant {tenant} app {} client {}: clientSecret decrypted with OAEP {}",
                        app.app_id,
                        app.client_id,
                        d.reading.name()
                    ));
                }
                st.apps.insert(tenant, app);
            }
            ("authSync", _) => {
                let list: Vec<Value> = match body.get("userList") {
                    Some(Value::Array(a)) => a.clone(),
                    // V1 sends the list as a JSON string.
                    Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_default(),
                    _ => Vec::new(),
                };
                let users = st.users.entry(tenant).or_default();
                for u in &list {
                    let Some(n) = u["userName"].as_str() else {
                        continue;
                    };
                    // 0 deletes, 3 cancels the authorisation; a disabled user may not log in.
                    if flag == 0 || flag == 3 || u["enable"].as_str() == Some("false") {
                        users.remove(n);
                    } else {
                        users.insert(n.to_string());
                    }
                }
            }
            _ => {}
        }
    }

    /// Answers the `/sso/…` routes.
    pub fn handle(&self, req: &Request, faults: &[Fault]) -> Response {
        match req.path() {
            CALLBACK_PATH => self.callback(req, faults),
            APP_PATH => {
                let session = cookie(req).and_then(|c| self.state().sessions.get(&c).cloned());
                match session {
                    Some(s) => Response::json(
                        200,
                        json!({"userName": s.user_name, "tenant": s.tenant}).to_string(),
                    ),
                    None => text(401, "not logged in: no valid csm_session cookie"),
                }
            }
            LOGOUT_PATH => self.logout(req),
            "/sso/logged-out" => text(200, "logged out"),
            other => text(404, format!("nothing is served at {other}")),
        }
    }

    /// `http://HOST/sso/…` as the browser reached this listener.
    fn own_url(req: &Request, path: &str) -> String {
        format!("http://{}{path}", req.header("host").unwrap_or("127.0.0.1"))
    }

    fn login(&self, session: Session, code: Option<&str>) -> Response {
        let id = crate::clock::nonce_hex64();
        let mut st = self.state();
        st.sessions.insert(id.clone(), session.clone());
        if let Some(code) = code {
            st.by_code.insert(code.to_string(), session);
        }
        Response::text(302, Vec::new())
            .with_header("Location", APP_PATH)
            .with_header("Set-Cookie", &format!("{COOKIE}={id}; HttpOnly; Path=/"))
    }

    fn callback(&self, req: &Request, faults: &[Fault]) -> Response {
        let (Some(code), Some(tenant)) = (query_param(req, "code"), query_param(req, "tenant"))
        else {
            return text(
                400,
                "the login redirect must carry code and tenant (/sso/callback?code=…&tenant=…)",
            );
        };
        if faults.contains(&Fault::SsoCodeReuse) {
            let known = self.state().by_code.get(&code).cloned();
            if let Some(s) = known {
                return self.login(s, None);
            }
        }
        let (domain, client_id, secret) = {
            let st = self.state();
            let Some(domain) = st.domains.get(&tenant).cloned() else {
                return text(
                    401,
                    format!("tenant {tenant}: unknown (no tenantSync gave its domainName)"),
                );
            };
            let Some(app) = st.apps.get(&tenant) else {
                return text(
                    401,
                    format!("tenant {tenant}: no applicationSync gave its client credentials"),
                );
            };
            let secret = if faults.contains(&Fault::SsoSecretEncrypted) {
                app.ciphertext.clone()
            } else {
                match &app.secret {
                    Some(s) => s.expose().to_string(),
                    None => {
                        return text(
                            401,
                            format!("tenant {tenant}: clientSecret was not decrypted (start the merchant with --app-private-key)"),
                        )
                    }
                }
            };
            (domain, app.client_id.clone(), secret)
        };
        let token = match self.token(&domain, &client_id, &secret, &code, req) {
            Ok(t) => t,
            Err(e) => return text(401, format!("login failed: token exchange: {e}")),
        };
        let user_name = if faults.contains(&Fault::SsoSkipUserinfo) {
            None
        } else {
            match self.userinfo(&domain, &token) {
                Ok(u) => Some(u),
                Err(e) => return text(401, format!("login failed: userinfo: {e}")),
            }
        };
        if let Some(u) = &user_name {
            let st = self.state();
            if st.users.get(&tenant).is_some_and(|set| !set.contains(u)) {
                return text(
                    403,
                    format!("user {u} is not authorised for this app (not in authSync's userList)"),
                );
            }
        }
        self.note(&format!(
            "tenant {tenant}: {} logged in",
            user_name.as_deref().unwrap_or("(userinfo not asked)")
        ));
        let remember = faults
            .contains(&Fault::SsoCodeReuse)
            .then_some(code.as_str());
        self.login(Session { user_name, tenant }, remember)
    }

    fn client(&self, url: &str) -> Result<(reqwest::Url, reqwest::blocking::Client), String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("{url}: not a URL ({e})"))?;
        let client = crate::net::Settings::new(self.cfg.timeout).blocking(&url)?;
        Ok((url, client))
    }

    fn token(
        &self,
        domain: &str,
        client_id: &str,
        secret: &str,
        code: &str,
        req: &Request,
    ) -> Result<String, String> {
        let (url, client) = self.client(&format!("{domain}{}", idp_path::TOKEN_PATH))?;
        let redirect = Self::own_url(req, CALLBACK_PATH);
        let form = [
            ("client_id", client_id),
            ("client_secret", secret),
            ("code", code),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect.as_str()),
        ];
        let sent = client
            .post(url.clone())
            .header("Accept", "application/json")
            .form(&form)
            .send();
        reply_field(&url, sent, "access_token")
    }

    fn userinfo(&self, domain: &str, token: &str) -> Result<String, String> {
        let (url, client) = self.client(&format!("{domain}{}", idp_path::USERINFO_PATH))?;
        let sent = client
            .get(url.clone())
            .header("Authorization", format!("Bearer {token}"))
            .header("Accept", "application/json")
            .send();
        reply_field(&url, sent, "userName")
    }

    fn logout(&self, req: &Request) -> Response {
        let mut st = self.state();
        let ended = cookie(req).and_then(|c| st.sessions.remove(&c));
        let Some(tenant) = ended
            .map(|s| s.tenant)
            .or_else(|| query_param(req, "tenant"))
        else {
            return text(
                400,
                "no session to end: send the csm_session cookie (or ?tenant=TENANT_ID)",
            );
        };
        let Some(domain) = st.domains.get(&tenant).cloned() else {
            return text(
                400,
                format!("tenant {tenant}: unknown (no tenantSync gave its domainName)"),
            );
        };
        let back = Self::own_url(req, "/sso/logged-out");
        let location = format!(
            "{domain}{}?redirect_url={}",
            idp_path::LOGOUT_PATH,
            crate::protocol::v1::percent_encode(&back)
        );
        Response::text(302, Vec::new())
            .with_header("Location", &location)
            .with_header(
                "Set-Cookie",
                &format!("{COOKIE}=; Max-Age=0; HttpOnly; Path=/"),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{find, gen, Protocol};

    #[test]
    fn the_demo_pair_decrypts_what_the_generator_encrypts_and_nothing_else() {
        let (cfg, app_key) = demo_pair(Reading::Sha256).unwrap();
        let sso = Sso::new(cfg);
        let mut ctx = gen::Ctx {
            app_key: Some(app_key),
            ..gen::Ctx::default()
        };
        gen::settle(&mut ctx);
        let cb = find("applicationSync", Protocol::V2).unwrap();
        let body = Value::Object(gen::generate(cb, None, &ctx)).to_string();
        let d = sso.decrypt(body.as_bytes()).unwrap().expect("decrypted");
        assert_eq!(d.reading, Reading::Sha256);
        assert_eq!(d.secret, ctx.client_secret.clone().unwrap());
        // The stand-in bytes sent without a public key are refused as the demo does.
        ctx.app_key = None;
        let body = Value::Object(gen::generate(cb, None, &ctx)).to_string();
        let (code, msg, _) = sso.decrypt(body.as_bytes()).err().expect("refused");
        assert_eq!(code, "000101");
        assert!(msg.contains("--app-private-key"), "{msg}");
    }

    #[test]
    fn cookies_and_idp_errors_are_read() {
        let req = Request {
            method: "GET".into(),
            url: "/sso/app".into(),
            headers: vec![("Cookie".into(), "a=1; csm_session=abc; b=2".into())],
            body: Vec::new(),
        };
        assert_eq!(cookie(&req).as_deref(), Some("abc"));
        assert_eq!(
            idp_error(
                400,
                r#"{"error":"invalid_grant","error_description":"Invalid authorization code"}"#
            ),
            "HTTP 400 invalid_grant: Invalid authorization code"
        );
        assert_eq!(idp_error(502, "<html>"), "HTTP 502");
    }
}
