//! Realistic values for catalog fields: order ids like `CS2211181819B4LVS`, UUID business
//! ids, timestamps in each field's format, product and SKU codes, base64 saasExtendParams,
//! Chinese names, user lists for authSync.

use super::{Callback, Family, FieldType, Gen};
use crate::clock::{Entropy, SystemEntropy};
use crate::protocol::rsa_oaep::AppKey;
use crate::protocol::v1_crypto::{self, EncryptType};
use base64::Engine;
use chrono::{DateTime, Datelike, Duration, FixedOffset, Timelike, Utc};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Values shared between the callbacks of one conversation (an order, its instance, ...).
/// Empty fields are generated fresh, from `entropy` (the caller's; commands use the
/// system's, the test-endpoint engine its target's).
#[derive(Debug, Clone)]
pub struct Ctx {
    pub entropy: Arc<dyn Entropy>,
    pub now: Option<DateTime<Utc>>,
    /// Mark the call as a debug call (`testFlag` "1" / 1). On by default in every command.
    pub test_flag: bool,
    pub order_id: Option<String>,
    pub order_line_id: Option<String>,
    pub instance_id: Option<String>,
    pub license: Option<String>,
    pub tenant_id: Option<String>,
    pub app_id: Option<String>,
    pub org_code: Option<String>,
    pub flag: Option<i64>,
    /// authSync user count (at most 500 per call).
    pub users: Option<usize>,
    /// V1 basic key: encrypts request-side mobilePhone and email (redacted in Debug).
    pub v1_key: Option<crate::secret::Secret>,
    /// tenantSync `domainName` (the tenant's identity host); a made-up host when empty.
    pub domain_name: Option<String>,
    /// applicationSync `clientId`.
    pub client_id: Option<String>,
    /// applicationSync's clientSecret in plaintext: what the seller must recover by
    /// decrypting the ciphertext that travels (redacted in Debug).
    pub client_secret: Option<crate::secret::Secret>,
    /// The seller's registered public key (`--app-public-key`): applicationSync then carries
    /// a real RSA-OAEP ciphertext of `client_secret`. Without it, random bytes of a 3072-bit
    /// ciphertext's size stand in.
    pub app_key: Option<AppKey>,
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx {
            entropy: Arc::new(SystemEntropy),
            now: None,
            test_flag: false,
            order_id: None,
            order_line_id: None,
            instance_id: None,
            license: None,
            tenant_id: None,
            app_id: None,
            org_code: None,
            flag: None,
            users: None,
            v1_key: None,
            domain_name: None,
            client_id: None,
            client_secret: None,
            app_key: None,
        }
    }
}

const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴"];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳",
];
const COMPANIES: &[&str] = &["云杉科技有限公司", "星河数据有限公司", "青石软件有限公司"];
const DEPARTMENTS: &[&str] = &["研发部", "市场部", "财务部", "运维部", "销售部"];

fn pick(e: &dyn Entropy, chars: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| chars[e.below(chars.len())] as char)
        .collect()
}

fn upper_alnum(e: &dyn Entropy, n: usize) -> String {
    pick(e, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", n)
}

fn digits(e: &dyn Entropy, n: usize) -> String {
    pick(e, b"0123456789", n)
}

fn hex32(e: &dyn Entropy) -> String {
    e.uuid().replace('-', "")
}

pub fn chinese_name(e: &dyn Entropy) -> String {
    format!(
        "{}{}{}",
        SURNAMES[e.below(SURNAMES.len())],
        GIVEN[e.below(GIVEN.len())],
        GIVEN[e.below(GIVEN.len())]
    )
}

/// `CS` + yyMMddHHmm + 5 upper-case alphanumerics, like `CS2211181819B4LVS`.
pub fn order_id(now: DateTime<Utc>, e: &dyn Entropy) -> String {
    format!(
        "CS{:02}{:02}{:02}{:02}{:02}{}",
        now.year() % 100,
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        upper_alnum(e, 5)
    )
}

/// A marketplace-style license code (spec decision 9): `PL` + upper-case alphanumerics.
pub fn license_code(e: &dyn Entropy) -> String {
    format!("PL{}", upper_alnum(e, 30))
}

pub fn product_id(e: &dyn Entropy) -> String {
    format!("00301-{}-0--0", digits(e, 6))
}

fn saas_extend_params(e: &dyn Entropy) -> String {
    let items = json!([
        {"name": "companyName", "value": COMPANIES[0]},
        {"name": "contactName", "value": chinese_name(e)},
        {"name": "custEmail", "value": "buyer@example.com"}
    ]);
    base64::engine::general_purpose::STANDARD.encode(items.to_string())
}

fn user_list(e: &dyn Entropy, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "email": format!("user{i:03}@example.com"),
                "employeeCode": format!("E{:05}", i + 1),
                "employeeType": 1 + e.below(4),
                "enable": "true",
                "mobile": format!("138{}", digits(e, 8)),
                "name": chinese_name(e),
                "orgCode": "ORG0001",
                "position": "工程师",
                "role": if i == 0 { "admin" } else { "user" },
                "userName": format!("user{i:03}"),
            })
        })
        .collect()
}

fn org_list() -> Vec<Value> {
    let mut v = vec![json!({"orgCode": "ORG0001", "orgName": "总部"})];
    for (i, d) in DEPARTMENTS.iter().enumerate() {
        v.push(
            json!({"orgCode": format!("ORG{:04}", i + 2), "orgName": d, "parentCode": "ORG0001"}),
        );
    }
    v
}

fn cst(now: DateTime<Utc>) -> DateTime<FixedOffset> {
    now.with_timezone(&FixedOffset::east_opt(8 * 3600).expect("UTC+8 is valid"))
}

/// Fills the shared values of `ctx` that are still empty, so that a suite can reuse them.
pub fn settle(ctx: &mut Ctx) {
    settle_for(ctx, |_| true);
}

/// [`settle`] for only the shared values that fields made by a `Gen` in `wants` read: a load
/// run makes a body per request and need not draw a license code for a newInstance.
fn settle_for(ctx: &mut Ctx, wants: impl Fn(Gen) -> bool) {
    let now = ctx.now.unwrap_or_else(crate::clock::now);
    ctx.now = Some(now);
    let e = Arc::clone(&ctx.entropy);
    let e = e.as_ref();
    if wants(Gen::OrderId) || wants(Gen::OrderLineId) {
        ctx.order_id.get_or_insert_with(|| order_id(now, e));
        let oid = ctx.order_id.clone().unwrap_or_default();
        ctx.order_line_id
            .get_or_insert_with(|| format!("{oid}-000001"));
    }
    if wants(Gen::InstanceId) {
        ctx.instance_id.get_or_insert_with(|| e.uuid());
    }
    if wants(Gen::License) {
        ctx.license.get_or_insert_with(|| license_code(e));
    }
    if wants(Gen::TenantId) {
        ctx.tenant_id.get_or_insert_with(|| hex32(e));
    }
    if wants(Gen::AppId) {
        ctx.app_id
            .get_or_insert_with(|| format!("app-{}", upper_alnum(e, 12)));
    }
    if wants(Gen::OrgCode) {
        ctx.org_code.get_or_insert_with(|| "ORG0002".into());
    }
    if wants(Gen::ClientId) {
        ctx.client_id
            .get_or_insert_with(|| format!("client-{}", upper_alnum(e, 16)));
    }
    if wants(Gen::ClientSecret) {
        ctx.client_secret.get_or_insert_with(|| {
            crate::secret::Secret::new(pick(
                e,
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                32,
            ))
        });
    }
}

/// A testFlag value that marks a test call: "1" (basic, License) or 1 (Kit), as generated.
pub fn is_test_flag(v: &Value) -> bool {
    v == "1" || v == 1
}

/// A body for `cb` with every field that is not `default_absent`; shared values come
/// from `ctx`. V1 basic and V2 basic values are strings; Kit keeps integer fields as numbers.
pub fn generate(cb: &Callback, scene: Option<&str>, ctx: &Ctx) -> Map<String, Value> {
    let mut ctx = ctx.clone();
    let mut made: Vec<Gen> = cb
        .fields
        .iter()
        .filter(|f| !f.default_absent)
        .map(|f| f.gen)
        .collect();
    if made.contains(&Gen::ProductInfo) {
        made.extend(super::PRODUCT_INFO.iter().map(|m| m.gen));
    }
    settle_for(&mut ctx, |g| made.contains(&g));
    let now = ctx.now.unwrap_or_else(crate::clock::now);
    let mut out = Map::new();
    for field in cb.fields {
        if field.default_absent {
            continue;
        }
        let v = match value(cb, field.gen, scene, &ctx, now) {
            Some(v) => v,
            None => continue,
        };
        let v = match (cb.family, field.ty, v) {
            // Basic interfaces are flat string maps (§4.2): numbers travel as text.
            (Family::V1Basic | Family::V2Basic | Family::License | Family::OrderNotify, _, v) => {
                match v {
                    Value::String(_) => v,
                    other => Value::String(other.to_string()),
                }
            }
            (_, FieldType::Integer, Value::String(s)) => s
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(s)),
            (_, _, v) => v,
        };
        out.insert(field.name.to_string(), v);
    }
    out
}

/// The fields that carry the call's own time (the V1 and Kit `timeStamp`), made anew at `now`:
/// a saved call replayed is the same call sent later.
pub fn restamp(cb: &Callback, fields: &mut Map<String, Value>, now: DateTime<Utc>) {
    for f in cb.fields {
        if !matches!(f.gen, Gen::TimeStampUtc17 | Gen::TimeStampCst17) {
            continue;
        }
        if let (Some(slot), Some(v)) = (
            fields.get_mut(f.name),
            value(cb, f.gen, None, &Ctx::default(), now),
        ) {
            *slot = v;
        }
    }
}

fn value(
    cb: &Callback,
    g: Gen,
    scene: Option<&str>,
    ctx: &Ctx,
    now: DateTime<Utc>,
) -> Option<Value> {
    let s = |x: String| Some(Value::String(x));
    let opt = |x: &Option<String>| x.clone().unwrap_or_default();
    let e = ctx.entropy.as_ref();
    match g {
        Gen::Activity => s(cb.name.to_string()),
        Gen::Scene => s(scene
            .map(str::to_string)
            .or_else(|| cb.scenes.first().map(|x| x.to_string()))
            .unwrap_or_default()),
        Gen::Const(c) => s(c.to_string()),
        Gen::ConstInt(i) => match (cb.family.is_kit(), ctx.flag) {
            (true, Some(flag)) => Some(Value::from(flag)),
            _ => Some(Value::from(i)),
        },
        Gen::TestFlag => match (ctx.test_flag, cb.family) {
            (true, _) => s("1".into()),
            // orderNotify requires the field; elsewhere live calls omit it.
            (false, Family::OrderNotify) => s("0".into()),
            (false, _) => None,
        },
        Gen::TestFlagInt => Some(Value::from(i64::from(ctx.test_flag))),
        Gen::BusinessId => s(e.uuid()),
        Gen::OrderId => s(opt(&ctx.order_id)),
        Gen::OrderLineId => s(opt(&ctx.order_line_id)),
        Gen::InstanceId => s(opt(&ctx.instance_id)),
        Gen::ProductId => s(product_id(e)),
        Gen::SkuCode => s(e.uuid()),
        Gen::ExpireTime14 => s((now + Duration::days(365))
            .format("%Y%m%d%H%M%S")
            .to_string()),
        Gen::TimeStampUtc17 => s(now.format("%Y%m%d%H%M%S%3f").to_string()),
        Gen::TimeStampCst17 => s(cst(now).format("%Y%m%d%H%M%S%3f").to_string()),
        Gen::CustomerId => s(hex32(e)),
        Gen::CustomerName => s(format!("hw{}", digits(e, 8))),
        Gen::UserId => s(hex32(e)),
        Gen::UserName => s(chinese_name(e)),
        Gen::EncryptedMobile | Gen::EncryptedEmail => {
            let plain = if g == Gen::EncryptedMobile {
                format!("138{}", digits(e, 8))
            } else {
                format!("buyer{}@example.com", digits(e, 4))
            };
            let key = ctx.v1_key.as_ref()?.expose();
            let iv = pick(
                e,
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                16,
            );
            v1_crypto::encrypt(key, EncryptType::Aes256, &iv, &plain)
                .ok()
                .map(Value::String)
        }
        Gen::OrderAmount => s(format!("{}.00", (1 + e.below(99)) * 100)),
        Gen::SaasExtendParams => s(saas_extend_params(e)),
        Gen::License => s(opt(&ctx.license)),
        Gen::TenantId => s(opt(&ctx.tenant_id)),
        Gen::TenantCode => s(format!("tenant{}", digits(e, 6))),
        Gen::CompanyName => s(COMPANIES[0].to_string()),
        Gen::DomainName => s(ctx
            .domain_name
            .clone()
            .unwrap_or_else(|| format!("https://t{}.tenantaccount.example.com", digits(e, 4)))),
        Gen::AppId => s(opt(&ctx.app_id)),
        Gen::ClientId => s(opt(&ctx.client_id)),
        Gen::ClientSecret => match (&ctx.app_key, &ctx.client_secret) {
            (Some(key), Some(plain)) => key
                .encrypt(plain.expose().as_bytes())
                .ok()
                .map(Value::String),
            _ => {
                // Stands in for an RSA-OAEP ciphertext (3072-bit key → 384 bytes).
                let bytes: Vec<u8> = (0..384).map(|_| e.below(256) as u8).collect();
                s(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
        },
        Gen::UserList { as_string } => {
            let list = Value::Array(user_list(e, ctx.users.unwrap_or(3).min(500)));
            if as_string {
                s(list.to_string())
            } else {
                Some(list)
            }
        }
        Gen::OrgCode => s(opt(&ctx.org_code)),
        Gen::OrgName => s(DEPARTMENTS[0].to_string()),
        Gen::ParentCode => s("ORG0001".into()),
        Gen::OrgInfoList => Some(Value::Array(org_list())),
        Gen::OrgInfoString => s(Value::Array(org_list()).to_string()),
        Gen::SyncTime => s(cst(now).format("%Y%m%d%H%M%S%3f").to_string()),
        Gen::ProductInfo => {
            let mut info = Map::new();
            for m in super::PRODUCT_INFO {
                if let Some(v) = value(cb, m.gen, scene, ctx, now) {
                    info.insert(m.name.to_string(), v);
                }
            }
            s(Value::Object(info).to_string())
        }
        Gen::LinearValue => Some(Value::from(1 + e.below(100) as i64)),
        Gen::ProductName => s("云杉协同办公 标准版".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{find, Protocol, CATALOG};

    #[test]
    fn an_order_id_is_cs_the_minute_and_five_characters() {
        use chrono::TimeZone;
        let now = Utc.with_ymd_and_hms(2026, 1, 5, 9, 7, 0).unwrap();
        let id = order_id(now, &crate::clock::SystemEntropy);
        assert_eq!(id.len(), 17, "{id}");
        assert!(id.starts_with("CS2601050907"), "{id}");
        assert!(id[12..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    }

    #[test]
    fn every_callback_generates_its_required_fields_within_limits() {
        let ctx = Ctx {
            test_flag: true,
            v1_key: Some(crate::secret::Secret::new(
                "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            )),
            users: Some(500),
            ..Ctx::default()
        };
        assert!(
            !format!("{ctx:?}").contains("a1b2c3d4"),
            "Debug of Ctx shows the V1 key"
        );
        for cb in CATALOG {
            let body = generate(cb, None, &ctx);
            for field in cb.fields {
                let v = body.get(field.name);
                if field.required {
                    assert!(v.is_some(), "{} lacks {}", cb.name, field.name);
                }
                if let (Some(Value::String(s)), Some(max)) = (v, field.max_len) {
                    assert!(
                        s.chars().count() <= max,
                        "{}.{} too long",
                        cb.name,
                        field.name
                    );
                }
                if let (Some(Value::String(s)), false) = (v, field.values.is_empty()) {
                    assert!(
                        field.values.contains(&s.as_str()),
                        "{}.{}",
                        cb.name,
                        field.name
                    );
                }
                // A value taken from the context was settled for this body, not left empty.
                if let Some(Value::String(s)) = v {
                    assert!(!s.is_empty(), "{}.{} is empty", cb.name, field.name);
                }
            }
            if let Some(Value::String(info)) = body.get("productInfo") {
                let info: Value = serde_json::from_str(info).unwrap();
                for (name, v) in info.as_object().unwrap() {
                    assert_ne!(v, "", "{}.productInfo.{name} is empty", cb.name);
                }
            }
        }
    }

    #[test]
    fn formats_look_like_the_marketplace() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        let ctx = Ctx {
            now: Some(now),
            test_flag: true,
            users: Some(500),
            ..Ctx::default()
        };
        let b = generate(find("newInstance", Protocol::V2).unwrap(), None, &ctx);
        let oid = b["orderId"].as_str().unwrap();
        assert!(oid.starts_with("CS2601020304") && oid.len() == 17, "{oid}");
        assert_eq!(b["orderLineId"], format!("{oid}-000001"));
        assert_eq!(b["testFlag"], "1");
        let k = generate(find("authSync", Protocol::V2).unwrap(), None, &ctx);
        assert_eq!(k["userList"].as_array().unwrap().len(), 500);
        assert_eq!(k["timeStamp"], "20260102110405678");
        assert_eq!(k["testFlag"], 1);
        let l = generate(
            find("releaseLicenseCode", Protocol::V2).unwrap(),
            None,
            &ctx,
        );
        assert!(l["license"].as_str().unwrap().starts_with("PL"));
        let r = generate(
            find("refreshInstance", Protocol::V2).unwrap(),
            Some("RENEWAL"),
            &ctx,
        );
        assert_eq!(r["scene"], "RENEWAL");
        assert_eq!(r["expireTime"], "20270102030405");
        let live = Ctx {
            test_flag: false,
            ..ctx
        };
        let b = generate(find("newInstance", Protocol::V2).unwrap(), None, &live);
        assert!(b.get("testFlag").is_none());
    }

    #[test]
    fn product_info_carries_its_documented_members() {
        let b = generate(
            find("changeInstanceCheck", Protocol::V2).unwrap(),
            None,
            &Ctx::default(),
        );
        let info: Value = serde_json::from_str(b["productInfo"].as_str().unwrap()).unwrap();
        for m in crate::catalog::PRODUCT_INFO {
            let v = &info[m.name];
            assert!(!v.is_null() || !m.required, "productInfo lacks {}", m.name);
            if let (Some(t), Some(max)) = (v.as_str(), m.max_len) {
                assert!(t.chars().count() <= max, "productInfo.{} too long", m.name);
            }
        }
        assert!(info["linearValue"].is_i64());
    }

    #[test]
    fn client_credentials_are_settled_once_and_the_secret_is_redacted() {
        let mut ctx = Ctx::default();
        settle(&mut ctx);
        let secret = ctx.client_secret.clone().unwrap();
        assert_eq!(secret.expose().len(), 32);
        assert!(!format!("{ctx:?}").contains(secret.expose()));
        let b = generate(find("applicationSync", Protocol::V2).unwrap(), None, &ctx);
        assert_eq!(b["clientId"].as_str(), ctx.client_id.as_deref());
        // No public key: a 384-byte stand-in, not the secret.
        let ct = b["clientSecret"].as_str().unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(ct)
                .unwrap()
                .len(),
            384
        );
    }
}
