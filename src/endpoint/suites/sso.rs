//! sso: 联营 single sign-on end to end (spec/sso.md). The Kit syncs point the seller's app
//! at the stand-in identity provider (tenantSync `domainName`), give it a client id and an
//! encrypted secret (applicationSync) and users (authSync); then the suite plays the
//! browser: the portal's 302 to the login URL with a fresh code, the same code again, the
//! logout. What the app did in between is read from the IdP's event log.

use super::{went_wrong, Runner, OK};
use crate::endpoint::judge::{Family, Rule};
use crate::marketplace::idp::{Idp, IdpEvent, SecretGiven};
use crate::net::proxy::is_loopback;
use crate::net::raw::{Raw, Reply, Request as RawRequest};
use crate::net::{NetFailure, Settings};
use crate::protocol::sso::{LOGOUT_PATH, PORTAL_PATH, TOKEN_PATH, USERINFO_PATH};
use crate::server::Request;
use reqwest::Url;
use serde_json::Value;
use std::sync::Arc;

/// Makes applicationSync's `clientSecret` field from the plaintext secret: RSA-OAEP with the
/// seller's registered public key, Base64.
#[derive(Clone)]
pub struct SealSecret(pub Arc<SealFn>);

/// Plaintext secret in, the field's value (or why it cannot be made) out.
pub type SealFn = dyn Fn(&str) -> Result<String, String> + Send + Sync;

impl std::fmt::Debug for SealSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealSecret")
    }
}

/// What the sso suite needs besides the callback endpoint.
#[derive(Debug, Clone)]
pub struct SsoSetup {
    /// The stand-in identity provider, in this process.
    pub idp: Arc<Idp>,
    /// How the seller's app reaches it: tenantSync's `domainName`.
    pub idp_url: Url,
    /// The seller's redirect URI (`--login-url`).
    pub login_url: Option<Url>,
    /// The seller's logout address (`--logout-url`).
    pub logout_url: Option<Url>,
    /// Without it the suite is skipped: the secret cannot be sent as the marketplace does.
    pub seal: Option<SealSecret>,
}

/// Why the suite cannot run against this target, if it cannot.
pub fn missing(r: &Runner) -> Option<&'static str> {
    let Some(sso) = &r.t.sso else {
        return Some("the sso suite runs on v2 targets with the stand-in identity provider");
    };
    if r.t.protocol != crate::catalog::Protocol::V2 {
        return Some("the sso suite runs on v2 (Kit v2 syncs carry the login settings)");
    }
    if !r.has_kit() {
        return Some("no Kit key (--kit-key-file): the login settings come in Kit syncs");
    }
    if sso.seal.is_none() {
        return Some("needs --app-public-key FILE (the RSA public key you registered): applicationSync carries clientSecret encrypted with it");
    }
    let Some(login) = &sso.login_url else {
        return Some("needs --login-url URL (your redirect URI, where the portal sends the browser with ?code=…&tenant=…)");
    };
    // An app on another machine cannot call this machine's loopback address back.
    if !is_loopback(login) && is_loopback(&sso.idp_url) {
        return Some("your app cannot reach the identity provider on this machine's loopback address: pass --idp-url with an address it can reach (and --idp-listen to listen there)");
    }
    None
}

const F: Family = Family::Sso;

/// One browser request: GET, redirects not followed, the session cookie if any.
fn browse(raw: &mut Raw, url: &Url, cookie: Option<&str>) -> Result<Reply, NetFailure> {
    let mut headers = vec![(
        "Accept".to_string(),
        "text/html,application/json".to_string(),
    )];
    if let Some(c) = cookie {
        headers.push(("Cookie".to_string(), c.to_string()));
    }
    raw.exchange(&RawRequest {
        method: "GET",
        url,
        headers: &headers,
        body: &[],
    })
}

/// The `name=value` pairs a reply sets, as a `Cookie` header; `None` when it sets none.
fn cookies(reply: &Reply) -> Option<String> {
    let set: Vec<&str> = reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.split(';').next())
        .map(str::trim)
        .filter(|c| c.contains('='))
        .collect();
    (!set.is_empty()).then(|| set.join("; "))
}

/// A login succeeded as the browser sees it: a session cookie with a 2xx or 3xx.
fn session(reply: &Reply) -> Option<String> {
    (reply.status < 400).then(|| cookies(reply)).flatten()
}

fn shown(reply: &Reply) -> String {
    let cookie = if cookies(reply).is_some() {
        "with a cookie"
    } else {
        "without a cookie"
    };
    match reply.header("location") {
        Some(l) if crate::net::is_redirect(reply.status) => {
            let l: String = l.chars().take(120).collect();
            format!("{} → {l} {cookie}", reply.status)
        }
        _ => format!("{} {cookie}", reply.status),
    }
}

/// The token requests for `grant` among `events`.
fn tokens<'a>(events: &'a [IdpEvent], grant: &str) -> Vec<(&'a str, SecretGiven, Option<&'a str>)> {
    events
        .iter()
        .filter_map(|e| match e {
            IdpEvent::Token {
                grant_type,
                client_id,
                secret,
                error,
            } if grant_type == grant => Some((client_id.as_str(), *secret, error.as_deref())),
            _ => None,
        })
        .collect()
}

/// Asks the in-process IdP as a client would (the suite's own refresh and logout follow-up).
fn ask(
    idp: &Idp,
    method: &str,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
) -> (u16, Value, Option<String>) {
    let resp = idp
        .route(&Request {
            method: method.into(),
            url,
            headers,
            body: body.into_bytes(),
        })
        .expect("an IdP route");
    let location = resp
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.clone());
    (
        resp.status,
        serde_json::from_slice(&resp.body).unwrap_or_default(),
        location,
    )
}

fn form(pairs: &[(&str, &str)]) -> String {
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    crate::protocol::v1::encode_query(&owned)
}

pub(super) fn run(r: &mut Runner) {
    if let Some(why) = missing(r) {
        return r.skip_row("single sign-on", F, why);
    }
    let sso = r.t.sso.clone().expect("checked by missing()");
    let login_url = sso.login_url.clone().expect("checked by missing()");
    let seal = sso.seal.clone().expect("checked by missing()");
    let idp_url = sso.idp_url.as_str().trim_end_matches('/').to_string();
    let mut ctx = r.ctx();
    ctx.flag = Some(1);
    // A login needs a user or two, not a full 500.
    ctx.users = Some(r.t.users.min(3));
    let plain: String = r.t.entropy.nonce_hex64().chars().take(32).collect();
    let sealed = match (seal.0)(&plain) {
        Ok(s) => s,
        Err(e) => {
            return r.row(
                "applicationSync clientSecret".into(),
                Rule::fail(
                    F,
                    "a secret encrypted with --app-public-key",
                    e,
                    "check --app-public-key: a PEM RSA public key of at least 3072 bits",
                ),
                String::new(),
            )
        }
    };
    let syncs: [(&str, Vec<(&str, Value)>); 3] = [
        (
            "tenantSync",
            vec![("domainName", Value::String(idp_url.clone()))],
        ),
        (
            "applicationSync",
            vec![("clientSecret", Value::String(sealed))],
        ),
        ("authSync", vec![]),
    ];
    let mut client_id = String::new();
    let mut user = String::new();
    // The first sync the app did not take: it then lacks its login settings.
    let mut unsynced: Option<String> = None;
    for (name, extra) in syncs {
        let Some(prepared) = r.prepare(
            name,
            None,
            &ctx,
            &extra,
            crate::endpoint::request::Tamper::None,
        ) else {
            return;
        };
        let p = match prepared {
            Ok(p) => p,
            Err(e) => {
                return r.row(
                    name.into(),
                    Rule::fail(F, "a request csm can sign", e, "report this as a csm bug"),
                    String::new(),
                )
            }
        };
        if let Err(e) = sso.idp.learn(
            name,
            &Value::Object(p.fields.clone().into_iter().collect()),
            Some(&plain),
        ) {
            return r.row(
                name.into(),
                Rule::fail(F, "a sync the IdP can learn", e, "report this as a csm bug"),
                String::new(),
            );
        }
        if name == "applicationSync" {
            client_id = p.fields["clientId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        if name == "authSync" {
            user = p.fields["userList"][0]["userName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        let ex = r.send(&p);
        let check = if name == "tenantSync" {
            "tenantSync add (domainName = the IdP)".to_string()
        } else {
            format!("{name} add")
        };
        r.expect_code(&ex, check, OK, Family::ResultCode);
        if unsynced.is_none() {
            unsynced = went_wrong(&ex).map(|why| format!("setup: {name} add {why}"));
        }
    }
    if stopped(r) {
        return;
    }
    // An app that did not take its login settings cannot log anyone in: the login checks
    // would blame the login for the sync.
    if let Some(why) = unsynced {
        let why = format!("{why}: the app has no login settings");
        for check in LOGIN_CHECKS {
            r.skip_after(check, F, &why);
        }
        return;
    }
    let mut raw = Raw::new(Settings::new(r.t.timeout).with_ca(r.t.ca_pem.clone()));

    // The portal logs the first user in and sends the browser to the login URL.
    let portal = format!(
        "{PORTAL_PATH}?{}",
        form(&[
            ("appId", ctx.app_id.as_deref().unwrap_or_default()),
            ("user", &user),
            ("redirect_uri", login_url.as_str())
        ])
    );
    let (status, body, location) = ask(&sso.idp, "GET", portal, vec![], String::new());
    let Some(callback) = location
        .filter(|_| status == 302)
        .and_then(|l| Url::parse(&l).ok())
    else {
        return r.row(
            "login portal".into(),
            Rule::fail(
                F,
                "302 to the login URL",
                format!("{status} {body}"),
                "report this as a csm bug",
            ),
            String::new(),
        );
    };
    let mark = sso.idp.events().len();
    r.calls += 1;
    let first = match browse(&mut raw, &callback, None) {
        Ok(reply) => reply,
        Err(f) => {
            return r.row(
                "login URL answers".into(),
                Rule::fail(
                    F,
                    "an answer to GET login-url?code=…&tenant=…",
                    f.message,
                    "check --login-url: the portal sends the browser there",
                ),
                String::new(),
            )
        }
    };
    let events = sso.idp.events()[mark..].to_vec();
    let exchanges = tokens(&events, "authorization_code");
    let token_fix = format!("on GET your login URL with ?code=…&tenant=…, POST {idp_url}{TOKEN_PATH} (form: client_id, client_secret, code, grant_type=authorization_code, redirect_uri)");
    let issued = exchanges.iter().any(|(_, _, e)| e.is_none());
    match exchanges.first() {
        None => {
            r.row(
                "login: code exchanged at the token endpoint".into(),
                Rule::fail(
                    F,
                    "a token request for the code",
                    format!("none; the browser got {}", shown(&first)),
                    token_fix,
                ),
                String::new(),
            );
            for check in [
                "login: client_id",
                "login: client_secret decrypted",
                "login: token issued",
            ] {
                r.skip_row(check, F, "no token request came (see above)");
            }
        }
        Some(&(got_client, secret, error)) => {
            r.row(
                "login: code exchanged at the token endpoint".into(),
                Rule::pass(
                    F,
                    "a token request for the code",
                    format!("{} request(s)", exchanges.len()),
                ),
                String::new(),
            );
            if got_client == client_id {
                r.row(
                    "login: client_id".into(),
                    Rule::pass(F, "applicationSync's clientId", got_client.to_string()),
                    String::new(),
                );
            } else {
                r.row(
                    "login: client_id".into(),
                    Rule::fail(
                        F,
                        format!("applicationSync's clientId {client_id}"),
                        got_client.to_string(),
                        "send the clientId applicationSync gave for this tenant as client_id",
                    ),
                    String::new(),
                );
            }
            let (ok, actual, fix) = match secret {
                SecretGiven::Plaintext => (true, "the decrypted secret", ""),
                SecretGiven::Ciphertext => (false, "the Base64 ciphertext from applicationSync", "clientSecret sent encrypted: decrypt it with your private key first (RSA-OAEP, PKCS#8 key)"),
                SecretGiven::Wrong => (false, "a different value", "send the clientSecret from applicationSync, decrypted with your private key"),
                SecretGiven::Missing => (false, "no client_secret", "send client_secret in the form body of the token request"),
                SecretGiven::UnknownClient => (false, "not comparable: unknown client_id", "send the clientId from applicationSync with its decrypted clientSecret"),
            };
            if ok {
                r.row(
                    "login: client_secret decrypted".into(),
                    Rule::pass(F, "the decrypted clientSecret", actual),
                    String::new(),
                );
            } else {
                r.row(
                    "login: client_secret decrypted".into(),
                    Rule::fail(F, "the decrypted clientSecret", actual, fix),
                    String::new(),
                );
            }
            match error {
                None => r.row("login: token issued".into(), Rule::pass(F, "200 with an access token", "200"), String::new()),
                Some("invalid_client") => r.skip_row("login: token issued", F, "refused for the client credentials (see above)"),
                Some(e) => r.row("login: token issued".into(), Rule::fail(F, "200 with an access token", e.to_string(), "send redirect_uri exactly as the portal was given it (your login URL), or leave it out; exchange the code at once, once"), String::new()),
            }
        }
    }
    let no_token = "no token was issued at login (see above)";
    let mut cookie = None;
    if !issued {
        for check in [
            "login: userinfo called",
            "login: the browser gets a session",
            "login: the session opens the app",
            "replayed code: refused by the IdP",
            "replayed code: no session",
        ] {
            r.skip_row(check, F, no_token);
        }
    } else {
        let infos: Vec<&IdpEvent> = events
            .iter()
            .filter(|e| matches!(e, IdpEvent::Userinfo { .. }))
            .collect();
        let answered = infos
            .iter()
            .any(|e| matches!(e, IdpEvent::Userinfo { user: Some(_), .. }));
        let userinfo_fix = format!("GET {idp_url}{USERINFO_PATH} with Authorization: Bearer <access_token> to learn who logged in");
        if answered {
            r.row(
                "login: userinfo called".into(),
                Rule::pass(F, "userinfo with the access token", "200"),
                String::new(),
            );
        } else if let Some(IdpEvent::Userinfo { error: Some(e), .. }) = infos.first() {
            r.row(
                "login: userinfo called".into(),
                Rule::fail(
                    F,
                    "userinfo with the access token",
                    format!("refused: {e}"),
                    userinfo_fix,
                ),
                String::new(),
            );
        } else {
            r.row(
                "login: userinfo called".into(),
                Rule::fail(
                    F,
                    "userinfo with the access token",
                    "not called",
                    userinfo_fix,
                ),
                String::new(),
            );
        }
        cookie = session(&first);
        if cookie.is_some() {
            r.row(
                "login: the browser gets a session".into(),
                Rule::pass(
                    F,
                    "302 into the app or 200, with a session cookie",
                    shown(&first),
                ),
                String::new(),
            );
        } else {
            r.row("login: the browser gets a session".into(), Rule::fail(F, "302 into the app or 200, with a session cookie", shown(&first), "after userinfo, answer the browser with a session: a 302 into your app (or a 200 page) that sets a session cookie"), String::new());
        }
        match (
            &cookie,
            first
                .header("location")
                .filter(|_| crate::net::is_redirect(first.status)),
        ) {
            (Some(c), Some(loc)) => match login_url.join(loc) {
                Ok(app) => {
                    r.calls += 1;
                    match browse(&mut raw, &app, Some(c)) {
                        Ok(reply) if (200..300).contains(&reply.status) => r.row("login: the session opens the app".into(), Rule::pass(F, "2xx with the session cookie", reply.status.to_string()), String::new()),
                        Ok(reply) => r.row("login: the session opens the app".into(), Rule::fail(F, "2xx with the session cookie", shown(&reply), "the page your login redirects to must accept the session cookie it set"), String::new()),
                        Err(f) => r.row("login: the session opens the app".into(), Rule::fail(F, "2xx with the session cookie", f.message, "redirect the browser to an address it can reach"), String::new()),
                    }
                }
                Err(e) => r.row(
                    "login: the session opens the app".into(),
                    Rule::fail(
                        F,
                        "a Location the browser can follow",
                        format!("{loc:?}: {e}"),
                        "send an absolute URL or a path in Location",
                    ),
                    String::new(),
                ),
            },
            _ => r.skip_row(
                "login: the session opens the app",
                F,
                "no redirect with a session to follow",
            ),
        }

        // The browser comes back with the same code: the IdP refuses it, so must the app.
        let mark = sso.idp.events().len();
        r.calls += 1;
        match browse(&mut raw, &callback, None) {
            Err(f) => r.row(
                "replayed code: no session".into(),
                Rule::fail(
                    F,
                    "an error page",
                    f.message,
                    "answer every request to your login URL",
                ),
                String::new(),
            ),
            Ok(again) => {
                let events = sso.idp.events()[mark..].to_vec();
                let refused = tokens(&events, "authorization_code")
                    .iter()
                    .any(|(_, _, e)| e.is_some());
                if refused {
                    r.row(
                        "replayed code: refused by the IdP".into(),
                        Rule::pass(
                            F,
                            "the code exchanged again and refused (invalid_grant)",
                            "refused",
                        ),
                        String::new(),
                    );
                } else {
                    r.row("replayed code: refused by the IdP".into(), Rule::fail(F, "the code exchanged again and refused (invalid_grant)", "no token request", "exchange every code at the token endpoint and log in only on a token: never trust a code you saw before"), String::new());
                }
                if session(&again).is_none() {
                    r.row(
                        "replayed code: no session".into(),
                        Rule::pass(F, "an error, no session cookie", shown(&again)),
                        String::new(),
                    );
                } else {
                    r.row("replayed code: no session".into(), Rule::fail(F, "an error, no session cookie", shown(&again), "when the token endpoint refuses the code, show an error and set no session"), String::new());
                }
            }
        }
    }
    if stopped(r) {
        return;
    }
    logout(r, &sso, &idp_url, &mut raw, cookie.as_deref());
    refresh(r, &sso, &client_id, &plain, issued);
}

/// The checks after the syncs, by name.
const LOGIN_CHECKS: [&str; 11] = [
    "login: code exchanged at the token endpoint",
    "login: client_id",
    "login: client_secret decrypted",
    "login: token issued",
    "login: userinfo called",
    "login: the browser gets a session",
    "login: the session opens the app",
    "replayed code: refused by the IdP",
    "replayed code: no session",
    "logout: 302 to the IdP's logout",
    "refresh: the login's grant renews",
];

/// Ctrl-C or a lost endpoint: no more browser requests.
fn stopped(r: &mut Runner) -> bool {
    if r.t.stop.asked() {
        r.interrupted = true;
    }
    r.aborted.is_some() || r.interrupted
}

/// The app's logout sends the browser to the IdP's logout, which sends it back.
fn logout(r: &mut Runner, sso: &SsoSetup, idp_url: &str, raw: &mut Raw, cookie: Option<&str>) {
    const CHECK: &str = "logout: 302 to the IdP's logout";
    let Some(url) = &sso.logout_url else {
        return r.skip_row(
            CHECK,
            F,
            "pass --logout-url URL (your logout address) to test it",
        );
    };
    // Logging out ends a session: without one from the login there is nothing to end.
    let Some(cookie) = cookie else {
        return r.skip_row(
            CHECK,
            F,
            "no session from the login to log out of (see above)",
        );
    };
    let want = format!("302 to {idp_url}{LOGOUT_PATH}?redirect_url=…");
    let fix = format!("on logout, end the session and 302 the browser to {idp_url}{LOGOUT_PATH}?redirect_url=<your page, URL-encoded>");
    r.calls += 1;
    let reply = match browse(raw, url, Some(cookie)) {
        Ok(reply) => reply,
        Err(f) => {
            return r.row(
                CHECK.into(),
                Rule::fail(F, want, f.message, "check --logout-url"),
                String::new(),
            )
        }
    };
    let target = reply
        .header("location")
        .filter(|_| crate::net::is_redirect(reply.status))
        .and_then(|l| Url::parse(l).ok())
        .filter(|l| l.as_str().starts_with(&format!("{idp_url}{LOGOUT_PATH}")));
    let Some(target) = target else {
        return r.row(
            CHECK.into(),
            Rule::fail(F, want, shown(&reply), fix),
            String::new(),
        );
    };
    let path = format!("{}?{}", target.path(), target.query().unwrap_or_default());
    let (status, body, back) = ask(&sso.idp, "GET", path, vec![], String::new());
    if status == 302 {
        r.row(
            CHECK.into(),
            Rule::pass(
                F,
                want,
                format!("302, back to {}", back.unwrap_or_default()),
            ),
            String::new(),
        );
    } else {
        let why = body["error_description"]
            .as_str()
            .unwrap_or("refused")
            .to_string();
        r.row(
            CHECK.into(),
            Rule::fail(
                F,
                want,
                format!("the IdP answered {status}: {why}"),
                "give redirect_url as an absolute http(s) URL, URL-encoded",
            ),
            String::new(),
        );
    }
}

/// The grant the app got at login is renewed with its credentials and reads userinfo again;
/// refreshes the app made itself are judged too.
fn refresh(r: &mut Runner, sso: &SsoSetup, client_id: &str, plain: &str, issued: bool) {
    const CHECK: &str = "refresh: the login's grant renews";
    if !issued {
        return r.skip_row(CHECK, F, "no token was issued at login (see above)");
    }
    let events = sso.idp.events();
    let own = tokens(&events, "refresh_token");
    if let Some((_, _, Some(e))) = own.iter().find(|(_, _, e)| e.is_some()) {
        return r.row(CHECK.into(), Rule::fail(F, "refresh_token requests answered 200", format!("your app's refresh was refused: {e}"), "refresh with grant_type=refresh_token, the refresh_token from the token reply, your client_id and decrypted client_secret"), String::new());
    }
    let Some(token) = sso.idp.refresh_tokens_of(client_id).into_iter().next() else {
        return r.skip_row(CHECK, F, "no refresh token was issued");
    };
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("client_secret", plain),
        ("refresh_token", &token),
    ]);
    let (status, v, _) = ask(&sso.idp, "POST", TOKEN_PATH.into(), vec![], body);
    let access = v["access_token"].as_str().unwrap_or_default().to_string();
    let (info, _, _) = ask(
        &sso.idp,
        "GET",
        USERINFO_PATH.into(),
        vec![("authorization".into(), format!("Bearer {access}"))],
        String::new(),
    );
    let detail = if own.is_empty() {
        "refreshed by csm with your credentials (your app made no refresh of its own)".to_string()
    } else {
        format!("your app refreshed {} time(s)", own.len())
    };
    if status == 200 && info == 200 {
        r.row(
            CHECK.into(),
            Rule::pass(
                F,
                "a new access token that reads userinfo",
                "200, userinfo 200",
            ),
            detail,
        );
    } else {
        r.row(
            CHECK.into(),
            Rule::fail(
                F,
                "a new access token that reads userinfo",
                format!("token {status}, userinfo {info}"),
                "report this as a csm bug",
            ),
            detail,
        );
    }
}

#[cfg(test)]
mod tests {
    //! The suite against seller apps written here: a small OAuth client on a real loopback
    //! server, right or wrong on purpose, and the real stand-in IdP. The "encryption" is a
    //! reversible stand-in (the RSA-OAEP seal is the app key's business, tested with it).
    use super::*;
    use crate::catalog::Protocol;
    use crate::clock::{SystemClock, SystemEntropy};
    use crate::endpoint::judge::Status;
    use crate::endpoint::request::Keys;
    use crate::endpoint::suites::{self, Row, Suite, Target};
    use crate::interrupt::Interrupt;
    use crate::marketplace::idp::IdpConfig;
    use crate::server::{self, Handler, Response};
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;
    use std::time::Duration;

    fn seal(plain: &str) -> String {
        format!("SEALED:{}", plain.chars().rev().collect::<String>())
    }

    fn unseal(sealed: &str) -> String {
        sealed.trim_start_matches("SEALED:").chars().rev().collect()
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum App {
        Right,
        SecretEncrypted,
        SkipUserinfo,
        CodeReuse,
        NoSso,
        LogoutStaysHome,
        RefusesSyncs,
    }

    struct SellerApp {
        mode: App,
        /// domainName, clientId, clientSecret as given
        kit: Mutex<HashMap<&'static str, String>>,
        codes: Mutex<HashSet<String>>,
    }

    fn call(method: &str, url: &str, headers: Vec<(String, String)>, body: String) -> (u16, Value) {
        let url = Url::parse(url).unwrap();
        let reply = Raw::new(Settings::new(Duration::from_secs(5)))
            .exchange(&RawRequest {
                method,
                url: &url,
                headers: &headers,
                body: body.as_bytes(),
            })
            .unwrap();
        (
            reply.status,
            serde_json::from_slice(&reply.body).unwrap_or_default(),
        )
    }

    impl SellerApp {
        fn login(&self, query: &str, host: &str) -> Response {
            let q = crate::protocol::v1::parse_query(query, true).unwrap_or_default();
            let code = q
                .iter()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let ok = Response::text(302, "")
                .with_header("Location", "/sso/app")
                .with_header("Set-Cookie", "sid=1; HttpOnly; Path=/");
            if self.mode == App::CodeReuse && self.codes.lock().unwrap().contains(&code) {
                return ok;
            }
            self.codes.lock().unwrap().insert(code.clone());
            let kit = self.kit.lock().unwrap().clone();
            let secret = if self.mode == App::SecretEncrypted {
                kit["secret"].clone()
            } else {
                unseal(&kit["secret"])
            };
            let body = form(&[
                ("client_id", &kit["client"]),
                ("client_secret", &secret),
                ("code", &code),
                ("grant_type", "authorization_code"),
                ("redirect_uri", &format!("http://{host}/sso/callback")),
            ]);
            let form_type = vec![(
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            )];
            let (status, token) = call(
                "POST",
                &format!("{}{TOKEN_PATH}", kit["domain"]),
                form_type,
                body,
            );
            if status != 200 {
                return Response::text(401, "login failed");
            }
            if self.mode != App::SkipUserinfo {
                let bearer = vec![(
                    "Authorization".to_string(),
                    format!("Bearer {}", token["access_token"].as_str().unwrap()),
                )];
                let (status, _) = call(
                    "GET",
                    &format!("{}{USERINFO_PATH}", kit["domain"]),
                    bearer,
                    String::new(),
                );
                if status != 200 {
                    return Response::text(401, "login failed");
                }
            }
            ok
        }
    }

    impl Handler for SellerApp {
        fn handle(&self, req: Request) -> Response {
            let host = req.header("host").unwrap_or_default().to_string();
            match (req.method.as_str(), req.path()) {
                ("POST", _) if self.mode == App::RefusesSyncs => {
                    Response::json(200, r#"{"resultCode":"000001","resultMsg":"bad sign"}"#)
                }
                ("POST", p) => {
                    let v: Value = serde_json::from_slice(&req.body).unwrap_or_default();
                    let mut kit = self.kit.lock().unwrap();
                    if p.ends_with("/tenantSync") {
                        kit.insert(
                            "domain",
                            v["domainName"].as_str().unwrap_or_default().into(),
                        );
                    }
                    if p.ends_with("/applicationSync") {
                        kit.insert("client", v["clientId"].as_str().unwrap_or_default().into());
                        kit.insert(
                            "secret",
                            v["clientSecret"].as_str().unwrap_or_default().into(),
                        );
                    }
                    Response::json(200, r#"{"resultCode":"000000","resultMsg":"ok"}"#)
                }
                _ if self.mode == App::NoSso => Response::text(404, "not found"),
                ("GET", "/sso/callback") => self.login(req.query(), &host),
                ("GET", "/sso/app") if req.header("cookie") == Some("sid=1") => {
                    Response::json(200, "{}")
                }
                ("GET", "/sso/app") => Response::text(401, "log in first"),
                ("GET", "/sso/logout") if self.mode == App::LogoutStaysHome => {
                    Response::text(200, "bye")
                }
                ("GET", "/sso/logout") => {
                    let domain = self.kit.lock().unwrap()["domain"].clone();
                    let back = form(&[("redirect_url", &format!("http://{host}/"))]);
                    Response::text(302, "")
                        .with_header("Location", &format!("{domain}{LOGOUT_PATH}?{back}"))
                }
                _ => Response::text(404, "not found"),
            }
        }
    }

    fn run(mode: App, sealed: bool) -> Vec<Row> {
        run_with(mode, sealed, true)
    }

    fn run_with(mode: App, sealed: bool, login: bool) -> Vec<Row> {
        let app = server::serve(
            "127.0.0.1:0",
            Arc::new(SellerApp {
                mode,
                kit: Mutex::default(),
                codes: Mutex::default(),
            }),
            server::Config::default(),
        )
        .unwrap();
        let idp = Arc::new(Idp::new(
            IdpConfig::default(),
            Arc::new(SystemClock),
            Arc::new(SystemEntropy),
        ));
        let idp_server =
            server::serve("127.0.0.1:0", idp.clone(), server::Config::default()).unwrap();
        let base = Url::parse(&format!("http://{}", app.addr)).unwrap();
        let target = Target {
            endpoint: base.join("/produce").unwrap(),
            protocol: Protocol::V2,
            keys: Keys {
                basic: None,
                kit: Some(crate::secret::Secret::new("kit")),
                license: None,
            },
            timeout: Duration::from_secs(5),
            kit_path_full: false,
            test_flag: true,
            users: 500,
            license_inner: crate::protocol::v2::LicenseInner::KeyedHmac,
            require_body_sign: false,
            ca_pem: None,
            license_code: None,
            clock: Arc::new(SystemClock),
            entropy: Arc::new(SystemEntropy),
            stop: Interrupt::never(),
            app_key: None,
            sso: Some(SsoSetup {
                idp,
                idp_url: Url::parse(&format!("http://{}", idp_server.addr)).unwrap(),
                login_url: login.then(|| base.join("/sso/callback").unwrap()),
                logout_url: Some(base.join("/sso/logout").unwrap()),
                seal: sealed.then(|| SealSecret(Arc::new(|p: &str| Ok(seal(p))))),
            }),
        };
        let out = suites::run(&target, &[Suite::Sso]);
        out.rows
            .into_iter()
            .filter(|r| r.family == Family::Sso || r.family == Family::ResultCode)
            .collect()
    }

    fn failed(rows: &[Row]) -> Vec<&str> {
        rows.iter()
            .filter(|r| r.status == Status::Fail)
            .map(|r| r.check.as_str())
            .collect()
    }

    #[test]
    fn a_conforming_app_passes_every_check() {
        let rows = run(App::Right, true);
        assert_eq!(failed(&rows), Vec::<&str>::new(), "{rows:#?}");
        let passed = rows.iter().filter(|r| r.status == Status::Pass).count();
        // 3 syncs, 7 login checks, 2 replay checks, logout, refresh: nothing skipped.
        assert_eq!(passed, 14, "{rows:#?}");
    }

    #[test]
    fn each_wrong_app_fails_exactly_its_own_checks_with_the_fix() {
        let rows = run(App::SecretEncrypted, true);
        assert_eq!(
            failed(&rows),
            ["login: client_secret decrypted"],
            "{rows:#?}"
        );
        let row = rows.iter().find(|r| r.status == Status::Fail).unwrap();
        assert!(
            row.fix
                .starts_with("clientSecret sent encrypted: decrypt it with your private key first"),
            "{}",
            row.fix
        );

        let rows = run(App::SkipUserinfo, true);
        assert_eq!(failed(&rows), ["login: userinfo called"], "{rows:#?}");

        let rows = run(App::CodeReuse, true);
        assert_eq!(
            failed(&rows),
            [
                "replayed code: refused by the IdP",
                "replayed code: no session"
            ],
            "{rows:#?}"
        );
    }

    #[test]
    fn a_logout_that_does_not_reach_the_idp_fails_with_the_fix() {
        let rows = run(App::LogoutStaysHome, true);
        assert_eq!(
            failed(&rows),
            ["logout: 302 to the IdP's logout"],
            "{rows:#?}"
        );
        let row = rows.iter().find(|r| r.status == Status::Fail).unwrap();
        assert_eq!(row.actual, "200 without a cookie");
        assert!(
            row.fix.contains("/api/v1/logout?redirect_url="),
            "{}",
            row.fix
        );
    }

    #[test]
    fn an_app_without_a_login_fails_with_named_fixes() {
        let rows = run(App::NoSso, true);
        assert_eq!(
            failed(&rows),
            ["login: code exchanged at the token endpoint"],
            "{rows:#?}"
        );
        let fixes: Vec<&str> = rows
            .iter()
            .filter(|r| r.status == Status::Fail)
            .map(|r| r.fix.as_str())
            .collect();
        assert!(fixes[0].contains("/api/v1/oauth2/token"), "{fixes:?}");
    }

    #[test]
    fn an_app_that_refuses_its_syncs_has_its_login_skipped_not_failed() {
        let rows = run(App::RefusesSyncs, true);
        assert_eq!(
            failed(&rows),
            [
                "tenantSync add (domainName = the IdP)",
                "applicationSync add",
                "authSync add"
            ],
            "{rows:#?}"
        );
        let skipped: Vec<&Row> = rows.iter().filter(|r| r.status == Status::Skip).collect();
        assert_eq!(skipped.len(), LOGIN_CHECKS.len(), "{rows:#?}");
        for row in skipped {
            assert!(
                row.actual
                    .starts_with("setup: tenantSync add answered 000001 (bad sign)"),
                "{}",
                row.actual
            );
        }
    }

    #[test]
    fn without_a_login_url_the_suite_is_skipped_with_the_reason() {
        let rows = run_with(App::Right, true, false);
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!(rows[0].status, Status::Skip);
        assert!(rows[0].actual.contains("--login-url"), "{}", rows[0].actual);
    }

    #[test]
    fn without_an_app_key_the_suite_is_skipped_with_the_reason() {
        let rows = run(App::Right, false);
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!(rows[0].status, Status::Skip);
        assert!(
            rows[0].actual.contains("--app-public-key"),
            "{}",
            rows[0].actual
        );
    }
}
