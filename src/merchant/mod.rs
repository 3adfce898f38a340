//! The reference merchant endpoint served by `csm serve merchant` (and in-process by
//! `csm test-endpoint --demo`).
//!
//! What a seller can copy from here, in order: verify before acting (signature, then the
//! 60 s timestamp window, then the nonce); answer HTTP 200 with JSON and the outcome in
//! `resultCode`; key instances on orderId + orderLineId so a repeated newInstance returns
//! the same instanceId; treat a repeated release/delete as success; in V1, encrypt the
//! credentials with the declared encryptType and sign the exact reply bytes in a header
//! named exactly `Body-Sign`.
//!
//! Routes: basic and License callbacks at `/` and `/produce` (any path ending in
//! `/produce`), Kit V2 at `/produceAPI/v2/<name>`, Kit V1 at `/produceAPI/<name>`; the app
//! side of a joint-operation login under `/sso/` ([`sso`]).

mod instances;
mod nonces;
pub mod record;
pub mod sso;
pub mod store;

use crate::catalog::{self, Protocol};
use crate::endpoint::request::Keys;
use crate::error::{CsmError, Result};
use crate::protocol::json;
use crate::protocol::v1_crypto::{self, EncryptType};
use crate::protocol::{v1, v2};
use crate::server::{Handler, Request, Response};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use store::Store;

/// Ways to be wrong on purpose, one per check family of `csm test-endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Body-Sign over different bytes than those sent (family body-sign).
    BadBodySign,
    /// Header names written in lower case, `body-sign` among them (family body-sign-name).
    BodySignCase,
    /// `200` instead of `000000` on success (family result-code).
    WrongCode,
    /// Status changes answer after the fault delay, beyond the 5 s budget (family reachable).
    Slow,
    /// A repeated newInstance creates another instance; a repeated release/delete fails
    /// (family idempotent).
    NotIdempotent,
    /// No signature, window or nonce checks (family refuses-bad-requests).
    AcceptBadSignatures,
    /// appInfo.frontEndUrl left out (family required-fields).
    DropFields,
    /// V1 credentials encrypted with AES-128 while declaring encryptType "1" (family credentials).
    WrongEncryption,
    /// Stops answering once, for 2 s starting 1 s after the first request: every reply due
    /// then is held to the stall's end (for load tests: coordinated omission).
    Stall,
    /// The login sends applicationSync's clientSecret as received, still encrypted: the
    /// identity provider refuses the client (the FAQ's 403).
    SsoSecretEncrypted,
    /// A login redirect whose code was seen before logs in again without asking the identity
    /// provider (codes are single use).
    SsoCodeReuse,
    /// The login trusts the token exchange alone and never asks userinfo who logged in.
    SsoSkipUserinfo,
}

/// The `stall` fault: when it starts after the first request, and how long it lasts.
pub const STALL_AFTER: Duration = Duration::from_secs(1);
pub const STALL_FOR: Duration = Duration::from_secs(2);

impl Fault {
    pub const ALL: [(&'static str, Fault); 12] = [
        ("bad-body-sign", Fault::BadBodySign),
        ("body-sign-case", Fault::BodySignCase),
        ("wrong-code", Fault::WrongCode),
        ("slow", Fault::Slow),
        ("not-idempotent", Fault::NotIdempotent),
        ("accept-bad-signatures", Fault::AcceptBadSignatures),
        ("drop-fields", Fault::DropFields),
        ("wrong-encryption", Fault::WrongEncryption),
        ("stall", Fault::Stall),
        ("sso-secret-encrypted", Fault::SsoSecretEncrypted),
        ("sso-code-reuse", Fault::SsoCodeReuse),
        ("sso-skip-userinfo", Fault::SsoSkipUserinfo),
    ];

    /// The protocol whose callbacks alone this fault changes, if it is one of them: under the
    /// other one it would change nothing, and a test would pass as if it had been tried.
    pub fn only_for(self) -> Option<Protocol> {
        match self {
            // encryptType belongs to the V1 credentials.
            Fault::WrongEncryption => Some(Protocol::V1),
            _ => None,
        }
    }

    /// Refuses a fault of callbacks the run does not serve (`protocols`): it would change
    /// nothing, and a test would pass as if it had been tried.
    pub fn check_served(faults: &[Fault], protocols: &[Protocol]) -> Result<()> {
        let unserved = faults
            .iter()
            .find_map(|f| Some((f, f.only_for().filter(|p| !protocols.contains(p))?)));
        match unserved {
            Some((f, p)) => Err(CsmError::usage(format!(
                "--fault {}: changes {} callbacks only, which this run does not serve (give --protocol {})",
                f.name(),
                p.name(),
                p.name()
            ))),
            None => Ok(()),
        }
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .expect("every fault is named in ALL")
    }

    pub fn parse(name: &str) -> Result<Fault> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                CsmError::usage(format!(
                    "--fault {name:?}: unknown fault (one of: {})",
                    Self::ALL.map(|(n, _)| n).join(", ")
                ))
            })
    }
}

pub struct MerchantConfig {
    pub protocol: Protocol,
    pub keys: Keys,
    pub faults: Vec<Fault>,
    /// How long the `slow` fault waits before answering.
    pub fault_delay: Duration,
    pub window_ms: i64,
    pub state: Option<PathBuf>,
    /// Append every received request (raw) to this file as JSON lines.
    pub record: Option<PathBuf>,
    /// The inner step expected in License 2.0 signatures (decision 5).
    pub license_inner: v2::LicenseInner,
}

impl MerchantConfig {
    /// A well-behaved merchant for `protocol` with `keys`: no faults, the 60 s replay window
    /// (decision 3), state in memory, nothing recorded, the keyed License inner step; the
    /// `slow` fault, when added, waits 6 s (beyond the 5 s budget).
    pub fn new(protocol: Protocol, keys: Keys) -> MerchantConfig {
        MerchantConfig {
            protocol,
            keys,
            faults: Vec::new(),
            fault_delay: Duration::from_secs(6),
            window_ms: 60_000,
            state: None,
            record: None,
            license_inner: v2::LicenseInner::KeyedHmac,
        }
    }
}

pub struct Merchant {
    cfg: MerchantConfig,
    sso: sso::Sso,
    store: Mutex<Box<dyn Store>>,
    nonces: Mutex<nonces::Nonces>,
    record: Option<Mutex<std::fs::File>>,
    /// When the first request came (the `stall` fault counts from it).
    first: std::sync::OnceLock<std::time::Instant>,
}

type Reply = (&'static str, String, Map<String, Value>);

fn reply(code: &'static str, msg: impl Into<String>) -> Reply {
    (code, msg.into(), Map::new())
}

fn ok() -> Reply {
    reply("000000", "success.")
}

/// The values the catalog allows for a V2 (or License) callback's field.
fn allowed(activity: &str, field: &str) -> &'static [&'static str] {
    catalog::find(activity, Protocol::V2)
        .and_then(|cb| cb.field(field))
        .map_or(&[], |f| f.values)
}

fn str_field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The activity or Kit interface a request names, for a log line.
pub fn activity_of(req: &Request) -> String {
    if let Some(page) = req.path().strip_prefix("/sso/") {
        return format!("sso-{page}");
    }
    if let Some((_, name)) = req.path().rsplit_once("/produceAPI/") {
        return name.trim_start_matches("v2/").to_string();
    }
    if req.method == "GET" {
        return v1::parse_query(req.query(), false)
            .ok()
            .and_then(|q| q.into_iter().find(|(n, _)| n == "activity"))
            .map(|(_, v)| v)
            .unwrap_or_default();
    }
    serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| v.get("activity")?.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn int_field(body: &Map<String, Value>, name: &str) -> Option<i64> {
    match body.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl Merchant {
    pub fn new(cfg: MerchantConfig) -> Result<Merchant> {
        let store = store::open(cfg.state.as_deref())?;
        let record = match &cfg.record {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| CsmError::io(format!("--record {}", p.display()), e))?,
            )),
            None => None,
        };
        Ok(Merchant {
            sso: sso::Sso::new(sso::SsoConfig::default()),
            cfg,
            store: Mutex::new(store),
            nonces: Mutex::new(nonces::Nonces::default()),
            record,
            first: std::sync::OnceLock::new(),
        })
    }

    /// The app side of the login: its private key, the identity provider's budget, logging.
    pub fn with_sso(mut self, cfg: sso::SsoConfig) -> Merchant {
        self.sso = sso::Sso::new(cfg);
        self
    }

    /// With the `stall` fault: how long a reply due now is held.
    fn stall(&self) -> Option<Duration> {
        if !self.has(Fault::Stall) {
            return None;
        }
        let now = std::time::Instant::now();
        let start = *self.first.get_or_init(|| now) + STALL_AFTER;
        let end = start + STALL_FOR;
        (now >= start && now < end).then(|| end - now)
    }

    fn has(&self, f: Fault) -> bool {
        self.cfg.faults.contains(&f)
    }

    fn record(&self, req: &Request) {
        if let Some(file) = &self.record {
            let line = record::line(req);
            if let Ok(mut f) = file.lock() {
                let _ = writeln!(f, "{line}");
            }
        }
    }

    /// Window and nonce checks shared by the V2 schemes.
    fn check_fresh(&self, timestamp: &str, nonce: &str) -> std::result::Result<(), Reply> {
        let (ts, _) = v2::timestamp_ms(timestamp)
            .map_err(|_| reply("000001", "timestamp is not epoch milliseconds"))?;
        let now = crate::clock::now_ms();
        if !v2::within_window(ts, now, self.cfg.window_ms) {
            return Err(reply("000001", "timestamp outside the replay window"));
        }
        let mut seen = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.insert(nonce, ts, now - self.cfg.window_ms) {
            return Err(reply("000001", "nonce already used (replay)"));
        }
        Ok(())
    }

    /// V2 basic and License: query signature/timestamp/nonce over the body.
    fn verify_v2_basic(
        &self,
        req: &Request,
        key: &str,
        inner: v2::LicenseInner,
    ) -> std::result::Result<(), Reply> {
        if self.has(Fault::AcceptBadSignatures) {
            return Ok(());
        }
        // The first of each name counts, as in the rest of the query handling.
        let (mut sig, mut ts, mut nonce) = (None, None, None);
        for pair in v1::query_pairs(req.query(), false) {
            let (name, value) =
                pair.map_err(|_| reply("000001", "query string is not decodable"))?;
            let slot = match &*name {
                "signature" => &mut sig,
                "timestamp" => &mut ts,
                "nonce" => &mut nonce,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        let (Some(sig), Some(ts), Some(nonce)) = (sig, ts, nonce) else {
            return Err(reply("000001", "signature, timestamp or nonce missing"));
        };
        let (sig, ts, nonce) = (&*sig, &*ts, &*nonce);
        // Raw bytes first, then the demo's re-serialisations (spec decision 2).
        let matched = v2::verify_basic_bytes(key, &req.body, ts, nonce, sig, inner).is_some();
        if !matched {
            return Err(reply("000001", "signature does not match"));
        }
        self.check_fresh(ts, nonce)
    }

    fn verify_kit_v2(&self, req: &Request, key: &str) -> std::result::Result<(), Reply> {
        if self.has(Fault::AcceptBadSignatures) {
            return Ok(());
        }
        let (Some(sig), Some(ts), Some(nonce)) = (
            req.header("x-sign"),
            req.header("x-timestamp"),
            req.header("x-nonce"),
        ) else {
            return Err(reply("000001", "x-sign, x-timestamp or x-nonce missing"));
        };
        let matched = v2::verify_kit_bytes(key, &req.body, ts, nonce, sig).is_some();
        if !matched {
            return Err(reply("000001", "x-sign does not match"));
        }
        self.check_fresh(ts, nonce)
    }

    fn verify_kit_v1(&self, req: &Request, key: &str) -> std::result::Result<(), Reply> {
        if self.has(Fault::AcceptBadSignatures) {
            return Ok(());
        }
        let Some(token) = req.header("authToken") else {
            return Err(reply("000001", "authToken header missing"));
        };
        let j = json::parse(&req.body).map_err(|_| reply("000002", "body is not JSON"))?;
        let expected =
            v1::kit_auth_token(key, &j).map_err(|e| reply("000002", e.0.replace('"', "'")))?;
        if !v1::token_matches(&expected.auth_token, token) {
            return Err(reply("000001", "authToken does not match"));
        }
        Ok(())
    }

    fn verify_v1_get(
        &self,
        params: &[(String, String)],
        key: &str,
    ) -> std::result::Result<(), Reply> {
        if self.has(Fault::AcceptBadSignatures) {
            return Ok(());
        }
        let Some((_, token)) = params.iter().find(|(n, _)| n == "authToken") else {
            return Err(reply("000001", "authToken missing"));
        };
        let ok = v1::verify_auth_token(key, params, token)
            .map_err(|e| reply("000001", e.0.replace('"', "'")))?;
        if !ok {
            return Err(reply("000001", "authToken does not match"));
        }
        Ok(())
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Box<dyn Store>> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn credentials(&self, id: &str, v1: bool) -> Map<String, Value> {
        let mut app = Map::new();
        app.insert(
            "frontEndUrl".into(),
            Value::from(format!("https://saas.example.com/console/{id}")),
        );
        app.insert(
            "adminUrl".into(),
            Value::from("https://saas.example.com/admin"),
        );
        let user = format!("admin_{}", id.chars().take(8).collect::<String>());
        let pass = format!("Pw{}", crate::clock::alphanumeric(14));
        if v1 {
            let key = self
                .cfg
                .keys
                .basic
                .as_ref()
                .map(|k| k.expose())
                .unwrap_or("");
            let t = if self.has(Fault::WrongEncryption) {
                EncryptType::Aes128
            } else {
                EncryptType::Aes256
            };
            for (name, plain) in [("userName", user), ("password", pass)] {
                let iv = crate::clock::alphanumeric(16);
                if let Ok(ct) = v1_crypto::encrypt(key, t, &iv, &plain) {
                    app.insert(name.into(), Value::from(ct));
                }
            }
        } else {
            app.insert("userName".into(), Value::from(user));
            app.insert("password".into(), Value::from(pass));
        }
        if self.has(Fault::DropFields) {
            app.remove("frontEndUrl");
        }
        app
    }

    // ---- instances (V1 and V2 basic) ----

    fn new_instance(
        &self,
        order_key: &str,
        business_id: Option<&str>,
        test: bool,
    ) -> Result<String> {
        let mut st = self.store();
        if !self.has(Fault::NotIdempotent) {
            if let Some(inst) = st.by_order(order_key)? {
                // Saved debug cases are replayed by the dial test: a released test instance
                // comes back under the same id.
                if inst.status == "RELEASED" && test {
                    st.set_status(&inst.instance_id, "ACTIVE")?;
                }
                return Ok(inst.instance_id);
            }
        }
        let id = match business_id {
            Some(b) if st.instance(b)?.is_none() => b.to_string(),
            _ => crate::clock::uuid(),
        };
        st.insert_instance(&id, order_key)?;
        Ok(id)
    }

    /// The instance if it exists and is not released.
    fn live(&self, id: &str) -> Result<Option<store::Instance>> {
        Ok(self
            .store()
            .instance(id)?
            .filter(|i| i.status != "RELEASED"))
    }

    fn release(&self, id: &str) -> Result<Reply> {
        let mut st = self.store();
        match st.instance(id)? {
            None => Ok(reply("000003", "instance does not exist")),
            Some(i) if i.status == "RELEASED" => {
                if self.has(Fault::NotIdempotent) {
                    Ok(reply("000003", "instance already released"))
                } else {
                    Ok(ok())
                }
            }
            Some(_) => {
                st.set_status(id, "RELEASED")?;
                Ok(ok())
            }
        }
    }

    fn query(&self, ids: &str, v1: bool) -> Result<Reply> {
        let mut info = Vec::new();
        for id in ids
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .take(100)
        {
            if self.live(id)?.is_some() {
                let mut item = Map::new();
                item.insert("instanceId".into(), Value::from(id));
                item.insert("appInfo".into(), Value::Object(self.credentials(id, v1)));
                info.push(Value::Object(item));
            }
        }
        if info.is_empty() {
            return Ok(reply("000003", "instance does not exist"));
        }
        let (c, m, mut extra) = ok();
        if v1 {
            extra.insert("encryptType".into(), Value::from("1"));
        }
        extra.insert("info".into(), Value::Array(info));
        Ok((c, m, extra))
    }

    fn basic_v2(&self, body: &Map<String, Value>) -> Result<Reply> {
        let activity = str_field(body, "activity").unwrap_or("");
        let test = str_field(body, "testFlag") == Some("1");
        let need = |n: &str| str_field(body, n);
        let missing = |n: &str| Ok(reply("000002", format!("{n} is missing")));
        match activity {
            "newInstance" => {
                let (Some(o), Some(l)) = (need("orderId"), need("orderLineId")) else {
                    return missing("orderId or orderLineId");
                };
                let id = self.new_instance(&[o, "|", l].concat(), need("businessId"), test)?;
                let (c, m, mut extra) = ok();
                extra.insert("instanceId".into(), Value::from(id));
                Ok((c, m, extra))
            }
            "queryInstance" => match need("instanceId") {
                Some(ids) => self.query(ids, false),
                None => missing("instanceId"),
            },
            "refreshInstance" => {
                let Some(id) = need("instanceId") else {
                    return missing("instanceId");
                };
                let scene = need("scene").unwrap_or("");
                if !allowed("refreshInstance", "scene").contains(&scene) {
                    return Ok(reply("000002", "scene is not a known scene"));
                }
                let Some(exp) = need("expireTime") else {
                    return missing("expireTime");
                };
                if self.live(id)?.is_none() {
                    return Ok(reply("000003", "instance does not exist"));
                }
                self.store().set_expiry(id, exp)?;
                Ok(ok())
            }
            "updateInstanceStatus" => {
                let Some(id) = need("instanceId") else {
                    return missing("instanceId");
                };
                let status = match need("status") {
                    Some("FREEZE") => "FROZEN",
                    Some("UNFREEZE") => "ACTIVE",
                    _ => return Ok(reply("000002", "status must be FREEZE or UNFREEZE")),
                };
                if self.live(id)?.is_none() {
                    return Ok(reply("000003", "instance does not exist"));
                }
                self.store().set_status(id, status)?;
                Ok(ok())
            }
            "releaseInstance" => match need("instanceId") {
                Some(id) => self.release(id),
                None => missing("instanceId"),
            },
            "upgradeInstance" | "changeInstanceCheck" => {
                let Some(id) = need("instanceId") else {
                    return missing("instanceId");
                };
                if activity == "changeInstanceCheck" {
                    let info = body.get("productInfo").unwrap_or(&Value::Null);
                    if let Err(e) =
                        catalog::check_members("productInfo", info, catalog::PRODUCT_INFO)
                    {
                        return Ok(reply("000002", e));
                    }
                }
                if self.live(id)?.is_none() {
                    return Ok(reply("000003", "instance does not exist"));
                }
                Ok(ok())
            }
            "orderNotify" => match need("orderId") {
                Some(_) => Ok(ok()),
                None => missing("orderId"),
            },
            _ => Ok(reply("000002", "unknown activity")),
        }
    }

    fn license(&self, body: &Map<String, Value>) -> Result<Reply> {
        let activity = str_field(body, "activity").unwrap_or("");
        let test = str_field(body, "testFlag") == Some("1");
        let Some(code) = str_field(body, "license") else {
            return Ok(reply("000002", "license is missing"));
        };
        let mut st = self.store();
        let known = st.license(code)?;
        // Dial tests replay saved cases with made-up codes: a test call for an unknown
        // code is accepted (license-and-usage.md §2.5).
        if known.is_none() && !test {
            return Ok(reply("000003", "license code does not exist"));
        }
        match activity {
            "refreshLicenseCode" => {
                let scene = str_field(body, "scene").unwrap_or("");
                let scenes = allowed("refreshLicenseCode", "scene");
                if !scenes.contains(&scene) {
                    let one_of = scenes.join(" or ");
                    return Ok(reply("000002", format!("scene must be {one_of}")));
                }
                let Some(exp) = str_field(body, "expireTime") else {
                    return Ok(reply("000002", "expireTime is missing"));
                };
                // A released code stays released, except for replayed test cases.
                if known.as_deref() == Some("RELEASED") && !test {
                    return Ok(reply("000003", "license code was released"));
                }
                st.put_license(code, "ACTIVE", Some(exp))?;
                Ok(ok())
            }
            "updateLicenseCodeStatus" => {
                let status = match str_field(body, "status") {
                    Some("FREEZE") => "FROZEN",
                    Some("UNFREEZE") => "ACTIVE",
                    _ => return Ok(reply("000002", "status must be FREEZE or UNFREEZE")),
                };
                st.put_license(code, status, None)?;
                Ok(ok())
            }
            "releaseLicenseCode" => {
                if known.as_deref() == Some("RELEASED") && self.has(Fault::NotIdempotent) {
                    return Ok(reply("000003", "license code already released"));
                }
                st.put_license(code, "RELEASED", None)?;
                Ok(ok())
            }
            _ => Ok(reply("000002", "unknown activity")),
        }
    }

    fn kit(
        &self,
        name: &str,
        body: &Map<String, Value>,
        decrypted: Option<sso::Decrypted>,
    ) -> Result<Reply> {
        let id_field = match name {
            "tenantSync" | "allOrgSync" => "tenantId",
            "applicationSync" | "authSync" => "appId",
            "singleOrgSync" => "orgCode",
            _ => return Ok(reply("000002", "unknown Kit interface")),
        };
        let Some(id) = str_field(body, id_field) else {
            return Ok(reply("000002", format!("{id_field} is missing")));
        };
        let flag = if name == "allOrgSync" {
            1
        } else {
            match int_field(body, "flag") {
                Some(f @ 0..=3) => f,
                _ => return Ok(reply("000002", "flag must be 0, 1, 2 or 3")),
            }
        };
        let mut st = self.store();
        let exists = st.kit_exists(name, id)?;
        let strict = self.has(Fault::NotIdempotent);
        match flag {
            0 | 3 => {
                if !exists && strict {
                    return Ok(reply("000003", "nothing to delete"));
                }
                st.kit_delete(name, id)?;
            }
            1 if exists && strict => return Ok(reply("000005", "already exists")),
            _ => {
                let data = Value::Object(body.clone()).to_string();
                st.kit_put(name, id, &data)?;
            }
        }
        drop(st);
        self.sso.synced(name, body, flag, decrypted);
        Ok(ok())
    }

    fn v1_basic(&self, params: &[(String, String)]) -> Result<Reply> {
        let get = |n: &str| {
            params
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let test = get("testFlag") == Some("1");
        let missing = |n: &str| Ok(reply("000002", format!("{n} is missing")));
        match get("activity").unwrap_or("") {
            "newInstance" => {
                let Some(o) = get("orderId") else {
                    return missing("orderId");
                };
                let id = self.new_instance(o, get("businessId"), test)?;
                let (c, m, mut extra) = ok();
                extra.insert("instanceId".into(), Value::from(id.clone()));
                extra.insert("encryptType".into(), Value::from("1"));
                extra.insert("appInfo".into(), Value::Object(self.credentials(&id, true)));
                Ok((c, m, extra))
            }
            "queryInstance" => match get("instanceId") {
                Some(ids) => self.query(ids, true),
                None => missing("instanceId"),
            },
            "refreshInstance" | "upgrade" => {
                let Some(id) = get("instanceId") else {
                    return missing("instanceId");
                };
                if self.live(id)?.is_none() {
                    return Ok(reply("000003", "instance does not exist"));
                }
                if let Some(exp) = get("expireTime") {
                    let mut st = self.store();
                    st.set_expiry(id, exp)?;
                    st.set_status(id, "ACTIVE")?;
                }
                Ok(ok())
            }
            "expireInstance" => {
                let Some(id) = get("instanceId") else {
                    return missing("instanceId");
                };
                match self.live(id)? {
                    None => Ok(reply("000003", "instance does not exist")),
                    Some(i) if i.status == "EXPIRED" && self.has(Fault::NotIdempotent) => {
                        Ok(reply("000005", "instance already expired"))
                    }
                    Some(_) => {
                        self.store().set_status(id, "EXPIRED")?;
                        Ok(ok())
                    }
                }
            }
            "instanceStatus" => {
                let Some(id) = get("instanceId") else {
                    return missing("instanceId");
                };
                let status = match get("instanceStatus") {
                    Some("FREEZE") => "FROZEN",
                    Some("NORMAL") => "ACTIVE",
                    _ => return Ok(reply("000002", "instanceStatus must be FREEZE or NORMAL")),
                };
                if self.live(id)?.is_none() {
                    return Ok(reply("000003", "instance does not exist"));
                }
                self.store().set_status(id, status)?;
                Ok(ok())
            }
            "releaseInstance" => match get("instanceId") {
                Some(id) => self.release(id),
                None => missing("instanceId"),
            },
            _ => Ok(reply("000002", "unknown activity")),
        }
    }

    /// The reply, the key that signs it (`Body-Sign`), and whether `slow` applies.
    fn route(&self, req: &Request) -> (Reply, Option<&str>, bool) {
        let path = req.path();
        let keys = &self.cfg.keys;
        let internal = |e: CsmError| reply("000005", format!("internal error: {e}"));
        let body_map = || -> std::result::Result<Map<String, Value>, Reply> {
            match serde_json::from_slice::<Value>(&req.body) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(reply("000002", "body is not a JSON object")),
            }
        };
        for (prefix, v2kit) in [("/produceAPI/v2/", true), ("/produceAPI/", false)] {
            if let Some(idx) = path.find(prefix) {
                let name = &path[idx + prefix.len()..];
                let key = keys.kit.as_ref().map(|k| k.expose());
                let Some(key) = key else {
                    return (
                        reply("000001", "no Kit key configured (--kit-key-file)"),
                        None,
                        false,
                    );
                };
                // The official demo decrypts clientSecret before it checks the signature.
                let decrypted = if name == "applicationSync" {
                    match self.sso.decrypt(&req.body) {
                        Ok(d) => d,
                        Err(r) => return (r, Some(key), false),
                    }
                } else {
                    None
                };
                let verified = if v2kit {
                    self.verify_kit_v2(req, key)
                } else {
                    self.verify_kit_v1(req, key)
                };
                let r = verified
                    .and_then(|_| body_map())
                    .and_then(|b| self.kit(name, &b, decrypted).map_err(internal));
                return (r.unwrap_or_else(|e| e), Some(key), false);
            }
        }
        if !(path == "/" || path.ends_with("/produce")) {
            return (
                reply("000002", format!("no callback is served at {path}")),
                None,
                false,
            );
        }
        if req.method == "GET" {
            let key = keys.basic.as_ref().map(|k| k.expose());
            if self.cfg.protocol != Protocol::V1 {
                return (
                    reply("000002", "V1 GET callbacks are not enabled (--protocol v1)"),
                    key,
                    false,
                );
            }
            let Some(key) = key else {
                return (reply("000001", "no key configured"), None, false);
            };
            let params = match v1::parse_query(req.query(), false) {
                Ok(p) => p,
                Err(_) => {
                    return (
                        reply("000002", "query string is not decodable"),
                        Some(key),
                        false,
                    )
                }
            };
            let slow = params
                .iter()
                .any(|(n, v)| n == "activity" && v == "instanceStatus");
            let r = self
                .verify_v1_get(&params, key)
                .and_then(|_| self.v1_basic(&params).map_err(internal));
            return (r.unwrap_or_else(|e| e), Some(key), slow);
        }
        let body = match body_map() {
            Ok(b) => b,
            Err(e) => return (e, None, false),
        };
        let activity = str_field(&body, "activity").unwrap_or("").to_string();
        let is_license = catalog::find(&activity, Protocol::V2)
            .is_some_and(|cb| cb.family == catalog::Family::License);
        let key = if is_license {
            keys.license.as_ref()
        } else {
            keys.basic.as_ref()
        }
        .map(|k| k.expose());
        let Some(key) = key else {
            let which = if is_license {
                "--license-key-file"
            } else {
                "--key-file"
            };
            return (
                reply("000001", format!("no key configured ({which})")),
                None,
                false,
            );
        };
        if !is_license && activity != "orderNotify" && self.cfg.protocol != Protocol::V2 {
            return (
                reply("000002", "V2 callbacks are not enabled (--protocol v2)"),
                Some(key),
                false,
            );
        }
        let slow = activity == "updateInstanceStatus";
        let inner = if is_license {
            self.cfg.license_inner
        } else {
            v2::LicenseInner::KeyedHmac
        };
        let r = self.verify_v2_basic(req, key, inner).and_then(|_| {
            if is_license {
                self.license(&body)
            } else {
                self.basic_v2(&body)
            }
            .map_err(internal)
        });
        (r.unwrap_or_else(|e| e), Some(key), slow)
    }
}

impl Handler for Merchant {
    fn activity(&self, req: &Request) -> String {
        activity_of(req)
    }

    /// Callbacks are answered from memory; `--record` writes a file on each request, and the
    /// login pages (`/sso/`) call the identity provider.
    fn may_block(&self, req: &Request) -> bool {
        self.record.is_some() || req.path().starts_with("/sso/")
    }

    fn close(&self) {
        if let Some(Ok(f)) = self.record.as_ref().map(|f| f.lock()) {
            let _ = f.sync_all();
        }
    }

    fn handle(&self, req: Request) -> Response {
        self.record(&req);
        if req.path().starts_with("/sso/") {
            return self.sso.handle(&req, &self.cfg.faults);
        }
        let ((code, msg, extra), key, slow) = self.route(&req);
        let code = if code == "000000" && self.has(Fault::WrongCode) {
            "200"
        } else {
            code
        };
        let mut body = Map::new();
        body.insert("resultCode".into(), Value::from(code));
        body.insert("resultMsg".into(), Value::from(msg));
        body.extend(extra);
        let bytes = serde_json::to_vec(&body).expect("a JSON map always serialises");
        // Every reply is signed (V1 requires it; on V2 it is harmless and checked when present).
        let body_sign = key.map(|key| {
            let sig = if self.has(Fault::BadBodySign) {
                v1::body_sign(key, &[bytes.as_slice(), b" "].concat())
            } else {
                v1::body_sign(key, &bytes)
            };
            v1::body_sign_header_value(&sig)
        });
        let mut resp = Response::json(200, bytes);
        if let Some(value) = body_sign {
            let name = if self.has(Fault::BodySignCase) {
                "body-sign"
            } else {
                v1::BODY_SIGN_HEADER
            };
            resp = resp.with_header(name, &value);
        }
        if slow && self.has(Fault::Slow) {
            resp.delay = Some(self.cfg.fault_delay);
        }
        if let Some(d) = self.stall() {
            resp.delay = Some(resp.delay.unwrap_or_default().max(d));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    const KEY: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";

    fn merchant(faults: Vec<Fault>) -> Merchant {
        let keys = Keys {
            basic: Some(Secret::new(KEY)),
            kit: None,
            license: None,
        };
        Merchant::new(MerchantConfig {
            faults,
            fault_delay: Duration::from_millis(1),
            ..MerchantConfig::new(Protocol::V2, keys)
        })
        .unwrap()
    }

    /// A V2 basic request whose signature covers `signed` while `body` travels.
    fn request(body: &str, signed: &str, ts: &str, nonce: &str) -> Request {
        let s = v2::sign_basic_canonical(
            KEY,
            signed.to_string(),
            ts,
            nonce,
            v2::LicenseInner::KeyedHmac,
        );
        Request {
            method: "POST".into(),
            url: format!(
                "/produce?signature={}&timestamp={ts}&nonce={nonce}",
                s.signature.to_uppercase()
            ),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn code(r: &Response) -> String {
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v["resultCode"].as_str().unwrap().to_string()
    }

    const CANONICAL: &str = r#"{"activity":"newInstance","businessId":"b-1","orderId":"CS1","orderLineId":"CS1-000001","testFlag":"1"}"#;
    const LOOSE: &str = r#"{ "orderId": "CS1", "activity": "newInstance", "orderLineId": "CS1-000001", "businessId": "b-1", "testFlag": "1" }"#;

    #[test]
    fn verifies_raw_bytes_then_the_canonical_form() {
        let m = merchant(vec![]);
        let now = crate::clock::now_ms().to_string();
        // Signed over the raw (loose) bytes.
        let r = m.handle(request(LOOSE, LOOSE, &now, "n1"));
        assert_eq!(code(&r), "000000");
        // Signed over the canonical form of the same body (decision 2).
        let r = m.handle(request(LOOSE, CANONICAL, &now, "n2"));
        assert_eq!(code(&r), "000000");
        // Signed over something else.
        let r = m.handle(request(LOOSE, "{}", &now, "n3"));
        assert_eq!(code(&r), "000001");
        assert!(r.headers.iter().any(|(n, _)| n == "Body-Sign"));
    }

    #[test]
    fn window_nonce_and_seconds() {
        let m = merchant(vec![]);
        let now = crate::clock::now_ms();
        let stale = (now - 120_000).to_string();
        assert_eq!(
            code(&m.handle(request(CANONICAL, CANONICAL, &stale, "a"))),
            "000001"
        );
        // A seconds timestamp is read by magnitude (decision 3).
        let secs = (now / 1000).to_string();
        assert_eq!(
            code(&m.handle(request(CANONICAL, CANONICAL, &secs, "b"))),
            "000000"
        );
        let ts = now.to_string();
        assert_eq!(
            code(&m.handle(request(CANONICAL, CANONICAL, &ts, "c"))),
            "000000"
        );
        assert_eq!(
            code(&m.handle(request(CANONICAL, CANONICAL, &ts, "c"))),
            "000001",
            "a replayed nonce is refused"
        );
    }

    #[test]
    fn faults_parse_by_name() {
        for (name, f) in Fault::ALL {
            assert_eq!(Fault::parse(name).unwrap(), f);
        }
        let e = Fault::parse("nope").unwrap_err().to_string();
        assert!(e.contains("bad-body-sign"), "{e}");
        let m = merchant(vec![Fault::AcceptBadSignatures]);
        assert_eq!(
            code(&m.handle(request(CANONICAL, "{}", "1", "x"))),
            "000000"
        );
    }

    #[test]
    fn change_instance_check_names_the_product_info_member_at_fault() {
        let m = merchant(vec![]);
        let now = crate::clock::now_ms().to_string();
        let cb = catalog::find("changeInstanceCheck", Protocol::V2).unwrap();
        let good = crate::catalog::gen::generate(cb, None, &crate::catalog::gen::Ctx::default());
        let body = Value::Object(good.clone()).to_string();
        // Well-formed: the fields pass, the made-up instance does not exist.
        let r = m.handle(request(&body, &body, &now, "p1"));
        assert_eq!(code(&r), "000003");
        let cases = [
            (
                r#"{"productId":"p","skuCode":"s"}"#,
                "productInfo.productName is missing",
            ),
            (
                r#"{"productId":"p","skuCode":"s","productName":"n","linearValue":"ten"}"#,
                "productInfo.linearValue \"ten\" must be an integer",
            ),
            (
                "not json",
                "productInfo is neither a JSON object nor a string holding one",
            ),
        ];
        for (i, (info, msg)) in cases.iter().enumerate() {
            let mut b = good.clone();
            b.insert("productInfo".into(), Value::from(*info));
            let body = Value::Object(b).to_string();
            let r = m.handle(request(&body, &body, &now, &format!("q{i}")));
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["resultCode"], "000002", "{info}");
            assert_eq!(v["resultMsg"], *msg, "{info}");
        }
        // The object form is read too (third-party senders).
        let mut b = good;
        b.insert(
            "productInfo".into(),
            serde_json::json!({"productId": "p", "skuCode": "s", "productName": "x".repeat(65)}),
        );
        let body = Value::Object(b).to_string();
        let v: Value =
            serde_json::from_slice(&m.handle(request(&body, &body, &now, "o")).body).unwrap();
        assert_eq!(
            v["resultMsg"],
            "productInfo.productName is 65 characters (limit 64)"
        );
    }
}
