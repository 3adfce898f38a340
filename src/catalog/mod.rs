//! The callback catalog: every callback the marketplace sends, as data, with value generators.
//!
//! Each [`Callback`] lists its request fields (type, maximum length, required, allowed values,
//! how to generate a realistic value) and the reply fields the debugging page insists on.
//! Sources: saas-callbacks.md §3.6, §3.7, §4.5–§4.7 and license-and-usage.md §2.4.

pub mod gen;

/// Which of the seller's keys signs an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// The key bound to the basic interfaces (V1, V2 basic, orderNotify, usage push).
    Basic,
    /// The key bound to the joint-operation (Kit) sync interfaces.
    Kit,
    /// The key bound to the License delivery interface.
    License,
    /// The API Gateway secret key (SK).
    Sk,
}

/// Checks a structured value (an object, or a JSON string holding one, as csm sends it)
/// against its `members`: the error names the member, the value and the rule.
pub fn check_members(
    name: &str,
    value: &serde_json::Value,
    members: &[Field],
) -> std::result::Result<(), String> {
    use serde_json::Value;
    let parsed;
    let obj = match value {
        Value::Object(m) => m,
        Value::Null => return Err(format!("{name} is missing")),
        Value::String(s) if s.is_empty() => return Err(format!("{name} is missing")),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => {
                parsed = m;
                &parsed
            }
            _ => {
                return Err(format!(
                    "{name} is neither a JSON object nor a string holding one"
                ))
            }
        },
        _ => return Err(format!("{name} must be a JSON object")),
    };
    for m in members {
        let at = format!("{name}.{}", m.name);
        let text = match obj.get(m.name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let Some(text) = text else {
            if m.required {
                return Err(format!("{at} is missing"));
            }
            continue;
        };
        if m.ty == FieldType::Integer && text.parse::<i64>().is_err() {
            return Err(format!("{at} {text:?} must be an integer"));
        }
        if let Some(max) = m.max_len {
            let n = text.chars().count();
            if n > max {
                return Err(format!("{at} is {n} characters (limit {max})"));
            }
        }
    }
    Ok(())
}

/// The production marketplace's open-API host (license-and-usage.md §1): the default of the
/// commands that call the marketplace, taken only when chosen on purpose.
pub const PRODUCTION_MARKETPLACE: &str = "https://mkt.myhuaweicloud.com";

/// How a callback travels and is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// V2 basic: POST JSON, query `signature`/`timestamp`/`nonce`.
    V2Basic,
    /// 通用接口 orderNotify: the V2 basic scheme.
    OrderNotify,
    /// License 2.0: the V2 basic scheme with the License key.
    License,
    /// Kit V2: POST JSON to `/produceAPI/v2/<name>`, headers `x-sign`/`x-timestamp`/`x-nonce`.
    V2Kit,
    /// V1 basic: GET, every field in the query, `authToken`.
    V1Basic,
    /// V1 Kit: POST JSON to `/produceAPI/<name>`, header `authToken`.
    V1Kit,
}

impl Family {
    pub fn key_role(self) -> KeyRole {
        match self {
            Family::V2Kit | Family::V1Kit => KeyRole::Kit,
            Family::License => KeyRole::License,
            _ => KeyRole::Basic,
        }
    }

    pub fn is_v1(self) -> bool {
        matches!(self, Family::V1Basic | Family::V1Kit)
    }

    pub fn is_kit(self) -> bool {
        matches!(self, Family::V2Kit | Family::V1Kit)
    }

    pub fn label(self) -> &'static str {
        match self {
            Family::V2Basic => "V2 basic",
            Family::OrderNotify => "V2 general (orderNotify)",
            Family::License => "License 2.0",
            Family::V2Kit => "V2 Kit",
            Family::V1Basic => "V1 basic",
            Family::V1Kit => "V1 Kit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Integer,
    Decimal,
    Array,
    Object,
}

/// How a realistic value is made for a field (see [`gen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gen {
    /// The callback's own activity name.
    Activity,
    /// The chosen scene (or the first allowed value).
    Scene,
    Const(&'static str),
    ConstInt(i64),
    TestFlag,
    TestFlagInt,
    BusinessId,
    OrderId,
    OrderLineId,
    InstanceId,
    ProductId,
    SkuCode,
    /// `yyyyMMddHHmmss`, UTC, a year ahead.
    ExpireTime14,
    /// V1 `timeStamp`: `yyyyMMddHHmmssSSS` UTC.
    TimeStampUtc17,
    /// Kit body `timeStamp`: `yyyyMMddHHmmssSSS` in UTC+8.
    TimeStampCst17,
    CustomerId,
    CustomerName,
    UserId,
    UserName,
    /// V1 request-side encrypted phone number.
    EncryptedMobile,
    /// V1 request-side encrypted e-mail address.
    EncryptedEmail,
    OrderAmount,
    SaasExtendParams,
    License,
    TenantId,
    TenantCode,
    CompanyName,
    DomainName,
    AppId,
    ClientId,
    ClientSecret,
    /// Users for authSync; V1 sends them as a JSON string.
    UserList {
        as_string: bool,
    },
    OrgCode,
    OrgName,
    ParentCode,
    OrgInfoList,
    /// V1 allOrgSync's `orgInfo` JSON string.
    OrgInfoString,
    SyncTime,
    ProductInfo,
    /// productInfo's quantity (seats, bandwidth...), an integer.
    LinearValue,
    ProductName,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
    /// Maximum length in characters, where the documentation gives one.
    pub max_len: Option<usize>,
    pub required: bool,
    /// Allowed values; empty means free.
    pub values: &'static [&'static str],
    pub gen: Gen,
    /// Generated only when asked for (`--set`), e.g. optional fields the marketplace often omits.
    pub default_absent: bool,
    /// The members of a structured value (changeInstanceCheck's `productInfo`), checked like
    /// top-level fields; empty for plain values.
    pub members: &'static [Field],
}

/// A field the reply must (or may) carry, with its length limit. `path` uses `a.b` and `a[].b`.
#[derive(Debug, Clone, Copy)]
pub struct ReplyField {
    pub path: &'static str,
    pub required: bool,
    pub max_len: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
pub struct Callback {
    pub family: Family,
    /// The activity (basic, License, orderNotify) or interface name (Kit).
    pub name: &'static str,
    /// The field a `--scene` sets (`scene`, `status`, `instanceStatus`), if any.
    pub scene_field: Option<&'static str>,
    pub scenes: &'static [&'static str],
    pub fields: &'static [Field],
    pub reply: &'static [ReplyField],
    pub summary: &'static str,
}

impl Callback {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// `newInstance`, `refreshInstance RENEWAL`, `tenantSync`.
    pub fn title(&self, scene: Option<&str>) -> String {
        match scene {
            Some(s) => format!("{} {s}", self.name),
            None => self.name.to_string(),
        }
    }
}

const fn f(name: &'static str, ty: FieldType, max: usize, required: bool, gen: Gen) -> Field {
    Field {
        name,
        ty,
        max_len: if max == 0 { None } else { Some(max) },
        required,
        values: &[],
        gen,
        default_absent: false,
        members: &[],
    }
}

const fn e(
    name: &'static str,
    max: usize,
    required: bool,
    values: &'static [&'static str],
    gen: Gen,
) -> Field {
    Field {
        name,
        ty: FieldType::String,
        max_len: if max == 0 { None } else { Some(max) },
        required,
        values,
        gen,
        default_absent: false,
        members: &[],
    }
}

const fn absent(mut field: Field) -> Field {
    field.default_absent = true;
    field
}

const fn r(path: &'static str, required: bool, max: usize) -> ReplyField {
    ReplyField {
        path,
        required,
        max_len: if max == 0 { None } else { Some(max) },
    }
}

use FieldType::{Array, Decimal, Integer, String as Str};

const V2_TEST_FLAG: Field = e("testFlag", 2, false, &["1", "0"], Gen::TestFlag);
const V1_TEST_FLAG: Field = e("testFlag", 2, false, &["1", "0"], Gen::TestFlag);
const V1_TS: Field = f("timeStamp", Str, 17, true, Gen::TimeStampUtc17);
const KIT_TEST_FLAG: Field = Field {
    name: "testFlag",
    ty: Integer,
    max_len: None,
    required: true,
    values: &["0", "1"],
    gen: Gen::TestFlagInt,
    default_absent: false,
    members: &[],
};
/// changeInstanceCheck's `productInfo` (sso.md; zh-cn_topic_0000002411753620, 2026-01-06).
pub const PRODUCT_INFO: &[Field] = &[
    f("productId", Str, 64, true, Gen::ProductId),
    f("skuCode", Str, 64, true, Gen::SkuCode),
    f("linearValue", Integer, 0, false, Gen::LinearValue),
    f("productName", Str, 64, true, Gen::ProductName),
];
const KIT_TS: Field = f("timeStamp", Str, 17, true, Gen::TimeStampCst17);
const KIT_INSTANCE: Field = f("instanceId", Str, 64, true, Gen::InstanceId);
const fn kit_flag(values: &'static [&'static str]) -> Field {
    Field {
        name: "flag",
        ty: Integer,
        max_len: None,
        required: true,
        values,
        gen: Gen::ConstInt(1),
        default_absent: false,
        members: &[],
    }
}

/// Every reply carries these (debugging page rule 4 and rule 7).
pub const COMMON_REPLY: &[ReplyField] = &[r("resultCode", true, 6), r("resultMsg", true, 255)];

const REPLY_NONE: &[ReplyField] = &[];
const V2_NEW_REPLY: &[ReplyField] = &[r("instanceId", true, 64)];
const V2_QUERY_REPLY: &[ReplyField] = &[
    r("info", true, 0),
    r("info[].instanceId", true, 64),
    r("info[].appInfo", true, 0),
    r("info[].appInfo.frontEndUrl", true, 512),
    r("info[].appInfo.adminUrl", false, 512),
    r("info[].appInfo.userName", false, 128),
    r("info[].appInfo.password", false, 128),
    // Required only where usageInfo is present (debugging page rule 6).
    r("info[].usageInfo[].usageValue", true, 0),
    r("info[].usageInfo[].statisticalTime", true, 0),
    r("info[].usageInfo[].dashboardUrl", false, 512),
];
const V1_NEW_REPLY: &[ReplyField] = &[
    r("instanceId", true, 64),
    r("encryptType", false, 1),
    r("appInfo", true, 0),
    r("appInfo.frontEndUrl", true, 512),
    r("appInfo.adminUrl", false, 512),
    r("appInfo.userName", false, 128),
    r("appInfo.password", false, 128),
    r("appInfo.memo", false, 1024),
];
const V1_QUERY_REPLY: &[ReplyField] = &[
    r("encryptType", false, 1),
    r("info", true, 0),
    r("info[].instanceId", true, 64),
    r("info[].appInfo", true, 0),
    r("info[].appInfo.frontEndUrl", true, 512),
    r("info[].appInfo.adminUrl", false, 512),
    r("info[].appInfo.userName", false, 128),
    r("info[].appInfo.password", false, 128),
];

const REFRESH_SCENES: &[&str] = &[
    "TRIAL_TO_FORMAL",
    "RENEWAL",
    "UNSUBSCRIBE_RENEWAL_PERIOD",
    "RENEWAL_CHANGE",
];
const STATUS_VALUES: &[&str] = &["FREEZE", "UNFREEZE"];
const LICENSE_SCENES: &[&str] = &["RENEWAL", "UNSUBSCRIBE_RENEWAL_PERIOD"];

/// The whole catalog, V2 first.
pub const CATALOG: &[Callback] = &[
    // ---- V2 basic (saas-callbacks.md §4.5) ----
    Callback {
        family: Family::V2Basic,
        name: "newInstance",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("businessId", Str, 64, true, Gen::BusinessId),
            f("orderId", Str, 64, true, Gen::OrderId),
            f("orderLineId", Str, 64, true, Gen::OrderLineId),
            V2_TEST_FLAG,
        ],
        reply: V2_NEW_REPLY,
        summary: "a buyer purchased: create the instance (idempotent on orderId + orderLineId)",
    },
    Callback {
        family: Family::V2Basic,
        name: "queryInstance",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            // A comma-separated list of at most 100 ids.
            f("instanceId", Str, 6500, true, Gen::InstanceId),
            V2_TEST_FLAG,
        ],
        reply: V2_QUERY_REPLY,
        summary: "the marketplace asks for instance details (also polled after 000004)",
    },
    Callback {
        family: Family::V2Basic,
        name: "refreshInstance",
        scene_field: Some("scene"),
        scenes: REFRESH_SCENES,
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            e("scene", 64, true, REFRESH_SCENES, Gen::Scene),
            f("orderId", Str, 64, true, Gen::OrderId),
            f("orderLineId", Str, 64, true, Gen::OrderLineId),
            f("instanceId", Str, 64, true, Gen::InstanceId),
            absent(f("productId", Str, 64, false, Gen::ProductId)),
            f("expireTime", Str, 20, true, Gen::ExpireTime14),
            V2_TEST_FLAG,
        ],
        reply: REPLY_NONE,
        summary: "renewal, trial to paid, renewal refund or renewal change: new expiry",
    },
    Callback {
        family: Family::V2Basic,
        name: "updateInstanceStatus",
        scene_field: Some("status"),
        scenes: STATUS_VALUES,
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("instanceId", Str, 64, true, Gen::InstanceId),
            e("status", 32, true, STATUS_VALUES, Gen::Scene),
            V2_TEST_FLAG,
        ],
        reply: REPLY_NONE,
        summary: "freeze on expiry, unfreeze after renewal",
    },
    Callback {
        family: Family::V2Basic,
        name: "releaseInstance",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("instanceId", Str, 64, true, Gen::InstanceId),
            absent(f("orderId", Str, 64, false, Gen::OrderId)),
            absent(f("orderLineId", Str, 64, false, Gen::OrderLineId)),
            V2_TEST_FLAG,
        ],
        reply: REPLY_NONE,
        summary: "the retention period ended or the buyer unsubscribed: delete the instance",
    },
    Callback {
        family: Family::V2Basic,
        name: "upgradeInstance",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("instanceId", Str, 64, true, Gen::InstanceId),
            f("orderId", Str, 64, true, Gen::OrderId),
            f("orderLineId", Str, 64, true, Gen::OrderLineId),
            V2_TEST_FLAG,
        ],
        reply: REPLY_NONE,
        summary: "the buyer upgraded the specification (a new order)",
    },
    Callback {
        family: Family::V2Basic,
        name: "changeInstanceCheck",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("instanceId", Str, 64, true, Gen::InstanceId),
            // Sent as a JSON string so the body stays a flat string map (§4.2, decision 12).
            Field {
                members: PRODUCT_INFO,
                ..f("productInfo", Str, 2048, true, Gen::ProductInfo)
            },
            V2_TEST_FLAG,
        ],
        reply: REPLY_NONE,
        summary: "may the instance change to this product on renewal? (optional interface)",
    },
    // ---- orderNotify (§4.7) ----
    Callback {
        family: Family::OrderNotify,
        name: "orderNotify",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("orderId", Str, 64, true, Gen::OrderId),
            f("orderLineId", Str, 64, true, Gen::OrderLineId),
            e("testFlag", 2, true, &["1", "0"], Gen::TestFlag),
        ],
        reply: REPLY_NONE,
        summary: "order notification (general interface key)",
    },
    // ---- License 2.0 (license-and-usage.md §2.4) ----
    Callback {
        family: Family::License,
        name: "refreshLicenseCode",
        scene_field: Some("scene"),
        scenes: LICENSE_SCENES,
        fields: &[
            f("activity", Str, 20, true, Gen::Activity),
            e("scene", 64, true, LICENSE_SCENES, Gen::Scene),
            f("orderId", Str, 64, true, Gen::OrderId),
            f("orderLineId", Str, 64, true, Gen::OrderLineId),
            f("license", Str, 64, true, Gen::License),
            absent(f("productId", Str, 64, false, Gen::ProductId)),
            f("expireTime", Str, 20, true, Gen::ExpireTime14),
            V2_TEST_FLAG,
        ],
        reply: REPLY_NONE,
        summary: "renewal or renewal refund of a license code: new expiry",
    },
    Callback {
        family: Family::License,
        name: "updateLicenseCodeStatus",
        scene_field: Some("status"),
        scenes: STATUS_VALUES,
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("license", Str, 64, true, Gen::License),
            e("status", 32, true, STATUS_VALUES, Gen::Scene),
            V2_TEST_FLAG,
        ],
        reply: REPLY_NONE,
        summary: "freeze a license code after expiry, unfreeze after renewal",
    },
    Callback {
        family: Family::License,
        name: "releaseLicenseCode",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("license", Str, 64, true, Gen::License),
            absent(f("orderId", Str, 64, false, Gen::OrderId)),
            absent(f("orderLineId", Str, 64, false, Gen::OrderLineId)),
            V2_TEST_FLAG,
        ],
        reply: REPLY_NONE,
        summary: "revoke a license code (freeze period over, or unsubscribed)",
    },
    // ---- Kit V2 (§4.6) ----
    Callback {
        family: Family::V2Kit,
        name: "tenantSync",
        scene_field: None,
        scenes: &[],
        fields: &[
            KIT_INSTANCE,
            f("orderId", Str, 64, false, Gen::OrderId),
            f("tenantId", Str, 64, true, Gen::TenantId),
            f("tenantCode", Str, 64, true, Gen::TenantCode),
            f("name", Str, 255, true, Gen::CompanyName),
            f("domainName", Str, 255, true, Gen::DomainName),
            kit_flag(&["0", "1", "2"]),
            KIT_TEST_FLAG,
            KIT_TS,
        ],
        reply: REPLY_NONE,
        summary: "tenant created (1), deleted (0) or renamed (2)",
    },
    Callback {
        family: Family::V2Kit,
        name: "applicationSync",
        scene_field: None,
        scenes: &[],
        fields: &[
            KIT_INSTANCE,
            f("tenantId", Str, 64, true, Gen::TenantId),
            f("appId", Str, 64, true, Gen::AppId),
            f("clientId", Str, 64, true, Gen::ClientId),
            f("clientSecret", Str, 1024, true, Gen::ClientSecret),
            kit_flag(&["0", "1", "2"]),
            KIT_TEST_FLAG,
            KIT_TS,
        ],
        reply: REPLY_NONE,
        summary: "application credential created, deleted or changed",
    },
    Callback {
        family: Family::V2Kit,
        name: "authSync",
        scene_field: None,
        scenes: &[],
        fields: &[
            KIT_INSTANCE,
            f("tenantId", Str, 64, true, Gen::TenantId),
            f("appId", Str, 64, true, Gen::AppId),
            f(
                "userList",
                Array,
                500,
                true,
                Gen::UserList { as_string: false },
            ),
            f("currentSyncTime", Str, 17, true, Gen::SyncTime),
            kit_flag(&["0", "1", "2", "3"]),
            KIT_TEST_FLAG,
            KIT_TS,
        ],
        reply: REPLY_NONE,
        summary: "users authorised (1), removed (0), changed (2) or deauthorised (3); at most 500",
    },
    Callback {
        family: Family::V2Kit,
        name: "singleOrgSync",
        scene_field: None,
        scenes: &[],
        fields: &[
            KIT_INSTANCE,
            f("tenantId", Str, 64, true, Gen::TenantId),
            f("orgCode", Str, 64, true, Gen::OrgCode),
            f("orgName", Str, 128, true, Gen::OrgName),
            f("parentCode", Str, 64, false, Gen::ParentCode),
            kit_flag(&["0", "1", "2"]),
            KIT_TEST_FLAG,
            KIT_TS,
        ],
        reply: REPLY_NONE,
        summary: "one department added, deleted or changed",
    },
    Callback {
        family: Family::V2Kit,
        name: "allOrgSync",
        scene_field: None,
        scenes: &[],
        fields: &[
            KIT_INSTANCE,
            f("tenantId", Str, 64, true, Gen::TenantId),
            f("orgInfoList", Array, 0, true, Gen::OrgInfoList),
            KIT_TEST_FLAG,
            KIT_TS,
        ],
        reply: REPLY_NONE,
        summary: "the whole organisation tree",
    },
    // ---- V1 basic (§3.6) ----
    Callback {
        family: Family::V1Basic,
        name: "newInstance",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("customerId", Str, 100, true, Gen::CustomerId),
            f("customerName", Str, 64, true, Gen::CustomerName),
            absent(f("userId", Str, 64, false, Gen::UserId)),
            absent(f("userName", Str, 64, false, Gen::UserName)),
            f("mobilePhone", Str, 256, false, Gen::EncryptedMobile),
            f("email", Str, 256, false, Gen::EncryptedEmail),
            f("businessId", Str, 64, true, Gen::BusinessId),
            f("orderId", Str, 64, true, Gen::OrderId),
            f("skuCode", Str, 64, true, Gen::SkuCode),
            f("productId", Str, 64, true, Gen::ProductId),
            V1_TEST_FLAG,
            e("trialFlag", 1, false, &["0", "1"], Gen::Const("0")),
            f("expireTime", Str, 14, false, Gen::ExpireTime14),
            e(
                "chargingMode",
                1,
                false,
                &["0", "1", "3", "5"],
                Gen::Const("1"),
            ),
            e(
                "periodType",
                8,
                false,
                &["year", "month"],
                Gen::Const("year"),
            ),
            f("periodNumber", Integer, 4, false, Gen::Const("1")),
            f("orderAmount", Decimal, 20, false, Gen::OrderAmount),
            f("saasExtendParams", Str, 2048, false, Gen::SaasExtendParams),
            absent(f("amount", Integer, 10, false, Gen::Const("1"))),
            absent(f("diskSize", Integer, 10, false, Gen::Const("100"))),
            absent(f("bandWidth", Integer, 10, false, Gen::Const("10"))),
            V1_TS,
        ],
        reply: V1_NEW_REPLY,
        summary: "a buyer purchased: create the instance, answer encrypted credentials",
    },
    Callback {
        family: Family::V1Basic,
        name: "refreshInstance",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("instanceId", Str, 64, true, Gen::InstanceId),
            f("orderId", Str, 64, true, Gen::OrderId),
            absent(f("productId", Str, 64, false, Gen::ProductId)),
            f("expireTime", Str, 14, true, Gen::ExpireTime14),
            absent(e("trialToFormal", 1, false, &["1"], Gen::Const("1"))),
            e(
                "periodType",
                8,
                false,
                &["year", "month"],
                Gen::Const("year"),
            ),
            f("periodNumber", Integer, 4, false, Gen::Const("1")),
            f("orderAmount", Decimal, 20, false, Gen::OrderAmount),
            V1_TEST_FLAG,
            V1_TS,
        ],
        reply: REPLY_NONE,
        summary: "renewal or trial to paid: new expiry",
    },
    Callback {
        family: Family::V1Basic,
        name: "expireInstance",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("instanceId", Str, 64, true, Gen::InstanceId),
            f("orderId", Str, 64, true, Gen::OrderId),
            V1_TEST_FLAG,
            V1_TS,
        ],
        reply: REPLY_NONE,
        summary: "the instance expired: freeze it, keep the data",
    },
    Callback {
        family: Family::V1Basic,
        name: "releaseInstance",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("instanceId", Str, 64, true, Gen::InstanceId),
            f("orderId", Str, 64, true, Gen::OrderId),
            absent(f("orderAmount", Decimal, 20, false, Gen::OrderAmount)),
            V1_TEST_FLAG,
            V1_TS,
        ],
        reply: REPLY_NONE,
        summary: "delete the instance and its data",
    },
    Callback {
        family: Family::V1Basic,
        name: "upgrade",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("instanceId", Str, 64, true, Gen::InstanceId),
            f("orderId", Str, 64, true, Gen::OrderId),
            f("skuCode", Str, 64, true, Gen::SkuCode),
            f("productId", Str, 64, true, Gen::ProductId),
            absent(f("amount", Integer, 10, false, Gen::Const("2"))),
            absent(f(
                "saasExtendParams",
                Str,
                2048,
                false,
                Gen::SaasExtendParams,
            )),
            V1_TEST_FLAG,
            V1_TS,
        ],
        reply: REPLY_NONE,
        summary: "the buyer upgraded the specification",
    },
    Callback {
        family: Family::V1Basic,
        name: "instanceStatus",
        scene_field: Some("instanceStatus"),
        scenes: &["FREEZE", "NORMAL"],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("instanceId", Str, 64, true, Gen::InstanceId),
            e(
                "instanceStatus",
                16,
                true,
                &["FREEZE", "NORMAL"],
                Gen::Scene,
            ),
            V1_TEST_FLAG,
            V1_TS,
        ],
        reply: REPLY_NONE,
        summary: "on-demand instance frozen or back to normal",
    },
    Callback {
        family: Family::V1Basic,
        name: "queryInstance",
        scene_field: None,
        scenes: &[],
        fields: &[
            f("activity", Str, 32, true, Gen::Activity),
            f("instanceId", Str, 6500, true, Gen::InstanceId),
            V1_TEST_FLAG,
            V1_TS,
        ],
        reply: V1_QUERY_REPLY,
        summary: "instance details, credentials encrypted",
    },
    // ---- V1 Kit (§3.7) ----
    Callback {
        family: Family::V1Kit,
        name: "tenantSync",
        scene_field: None,
        scenes: &[],
        fields: &[
            KIT_INSTANCE,
            f("orderId", Str, 64, false, Gen::OrderId),
            f("tenantId", Str, 64, true, Gen::TenantId),
            f("tenantCode", Str, 64, true, Gen::TenantCode),
            f("name", Str, 255, true, Gen::CompanyName),
            f("domainName", Str, 255, true, Gen::DomainName),
            kit_flag(&["0", "1", "2"]),
            KIT_TEST_FLAG,
            KIT_TS,
        ],
        reply: REPLY_NONE,
        summary: "tenant created, deleted or renamed",
    },
    Callback {
        family: Family::V1Kit,
        name: "applicationSync",
        scene_field: None,
        scenes: &[],
        fields: &[
            KIT_INSTANCE,
            f("tenantId", Str, 64, true, Gen::TenantId),
            f("appId", Str, 64, true, Gen::AppId),
            f("clientId", Str, 64, true, Gen::ClientId),
            f("clientSecret", Str, 1024, true, Gen::ClientSecret),
            kit_flag(&["0", "1", "2"]),
            KIT_TEST_FLAG,
            KIT_TS,
        ],
        reply: REPLY_NONE,
        summary: "application credential created, deleted or changed",
    },
    Callback {
        family: Family::V1Kit,
        name: "authSync",
        scene_field: None,
        scenes: &[],
        fields: &[
            KIT_INSTANCE,
            f("tenantId", Str, 64, true, Gen::TenantId),
            f("appId", Str, 64, true, Gen::AppId),
            f("userList", Str, 0, true, Gen::UserList { as_string: true }),
            f("currentSyncTime", Str, 17, true, Gen::SyncTime),
            kit_flag(&["0", "1", "2", "3"]),
            KIT_TEST_FLAG,
            KIT_TS,
        ],
        reply: REPLY_NONE,
        summary: "users authorised or removed (userList as a JSON string)",
    },
    Callback {
        family: Family::V1Kit,
        name: "singleOrgSync",
        scene_field: None,
        scenes: &[],
        fields: &[
            KIT_INSTANCE,
            f("tenantId", Str, 64, true, Gen::TenantId),
            f("orgCode", Str, 64, true, Gen::OrgCode),
            f("orgName", Str, 128, true, Gen::OrgName),
            f("parentCode", Str, 64, false, Gen::ParentCode),
            kit_flag(&["0", "1", "2"]),
            KIT_TEST_FLAG,
            KIT_TS,
        ],
        reply: REPLY_NONE,
        summary: "one department added, deleted or changed",
    },
    Callback {
        family: Family::V1Kit,
        name: "allOrgSync",
        scene_field: None,
        scenes: &[],
        fields: &[
            KIT_INSTANCE,
            f("tenantId", Str, 64, true, Gen::TenantId),
            f("orgInfo", Str, 0, true, Gen::OrgInfoString),
            KIT_TEST_FLAG,
            KIT_TS,
        ],
        reply: REPLY_NONE,
        summary: "the whole organisation tree (orgInfo as a JSON string)",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    V1,
    V2,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "v1" | "1" => Some(Protocol::V1),
            "v2" | "2" => Some(Protocol::V2),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        }
    }
}

/// Finds a callback by name for a protocol. Names shared by V1 and V2 (newInstance,
/// tenantSync, ...) resolve by protocol; License and orderNotify exist only in V2 form.
pub fn find(name: &str, protocol: Protocol) -> Option<&'static Callback> {
    let mut named = CATALOG.iter().filter(|c| c.name == name);
    let first = named.clone().next();
    named
        .find(|c| c.family.is_v1() == (protocol == Protocol::V1))
        .or(first)
}

/// All names, for error messages.
pub fn names(protocol: Protocol) -> Vec<&'static str> {
    let mut v: Vec<&str> = CATALOG
        .iter()
        .filter(|c| {
            c.family.is_v1() == (protocol == Protocol::V1)
                || matches!(c.family, Family::License | Family::OrderNotify)
        })
        .map(|c| c.name)
        .collect();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scene_field_is_a_field_with_those_values() {
        for c in CATALOG {
            if let Some(sf) = c.scene_field {
                let field = c.field(sf).expect("scene field listed");
                assert_eq!(field.values, c.scenes, "{}", c.name);
            } else {
                assert!(c.scenes.is_empty(), "{}", c.name);
            }
        }
    }

    #[test]
    fn names_resolve_by_protocol() {
        assert_eq!(
            find("newInstance", Protocol::V1).unwrap().family,
            Family::V1Basic
        );
        assert_eq!(
            find("newInstance", Protocol::V2).unwrap().family,
            Family::V2Basic
        );
        assert_eq!(
            find("tenantSync", Protocol::V1).unwrap().family,
            Family::V1Kit
        );
        assert_eq!(
            find("releaseLicenseCode", Protocol::V1).unwrap().family,
            Family::License
        );
        assert!(find("nope", Protocol::V2).is_none());
        let kit = |fam| CATALOG.iter().filter(|c| c.family == fam).count();
        assert_eq!(kit(Family::V2Kit), 5);
        assert_eq!(kit(Family::V1Kit), 5);
    }

    #[test]
    fn catalog_is_complete() {
        let v2: Vec<_> = CATALOG
            .iter()
            .filter(|c| c.family == Family::V2Basic)
            .map(|c| c.name)
            .collect();
        assert_eq!(v2.len(), 7);
        let v1: Vec<_> = CATALOG
            .iter()
            .filter(|c| c.family == Family::V1Basic)
            .map(|c| c.name)
            .collect();
        assert_eq!(v1.len(), 7);
        assert_eq!(
            CATALOG
                .iter()
                .filter(|c| c.family == Family::License)
                .count(),
            3
        );
    }
}
