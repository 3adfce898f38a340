//! Judging one reply as the seller-center debugging page does (saas-callbacks.md §8), plus the
//! V1 rules: Body-Sign over the raw bytes, the exact header name, credentials that decrypt.
//! The rules for a production address are in `readiness`.

mod readiness;

pub use readiness::{readiness_rules, Seen, PRODUCTION_BUDGET};

use super::client::{Exchange, NetKind, Reply};
use crate::catalog::{ReplyField, COMMON_REPLY};
use crate::protocol::v1;
use crate::protocol::v1_crypto::{self, EncryptType};
use serde_json::Value;
use std::borrow::Cow;
use std::time::Duration;

/// The check families. Every failing rule belongs to exactly one, so one merchant fault
/// fails one family (`--fault` in `csm serve merchant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Reachable,
    HttpStatus,
    ContentType,
    JsonBody,
    ResultCode,
    RequiredFields,
    LengthLimits,
    BodySign,
    BodySignName,
    Credentials,
    Idempotent,
    RefusesBadRequests,
    Readiness,
    /// The single sign-on login (sso suite).
    Sso,
}

impl Family {
    pub fn id(self) -> &'static str {
        match self {
            Family::Reachable => "reachable",
            Family::HttpStatus => "http-status",
            Family::ContentType => "content-type",
            Family::JsonBody => "json-body",
            Family::ResultCode => "result-code",
            Family::RequiredFields => "required-fields",
            Family::LengthLimits => "length-limits",
            Family::BodySign => "body-sign",
            Family::BodySignName => "body-sign-name",
            Family::Credentials => "credentials",
            Family::Idempotent => "idempotent",
            Family::RefusesBadRequests => "refuses-bad-requests",
            Family::Readiness => "readiness",
            Family::Sso => "sso",
        }
    }

    /// The reply-format families, reported once per suite over all its replies.
    pub const FORMAT: [Family; 9] = [
        Family::Reachable,
        Family::HttpStatus,
        Family::ContentType,
        Family::JsonBody,
        Family::RequiredFields,
        Family::LengthLimits,
        Family::BodySign,
        Family::BodySignName,
        Family::Credentials,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Family::Reachable => "answered within the time budget",
            Family::HttpStatus => "HTTP status 200",
            Family::ContentType => "Content-Type application/json",
            Family::JsonBody => "JSON object with resultCode and resultMsg",
            Family::RequiredFields => "required reply fields present",
            Family::LengthLimits => "reply field lengths within limits",
            Family::BodySign => "Body-Sign verifies over the raw body",
            Family::BodySignName => "header name is exactly Body-Sign",
            Family::Credentials => "V1 credentials decrypt with the declared encryptType",
            _ => "",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// Text of a rule: most of it is fixed wording, borrowed rather than copied, since a load
/// run judges every reply.
pub type Text = Cow<'static, str>;

#[derive(Debug, Clone)]
pub struct Rule {
    pub family: Family,
    pub status: Status,
    pub expected: Text,
    pub actual: Text,
    pub fix: Text,
}

impl Rule {
    pub fn pass(family: Family, expected: impl Into<Text>, actual: impl Into<Text>) -> Rule {
        Rule {
            family,
            status: Status::Pass,
            expected: expected.into(),
            actual: actual.into(),
            fix: Text::Borrowed(""),
        }
    }

    pub fn fail(
        family: Family,
        expected: impl Into<Text>,
        actual: impl Into<Text>,
        fix: impl Into<Text>,
    ) -> Rule {
        Rule {
            family,
            status: Status::Fail,
            expected: expected.into(),
            actual: actual.into(),
            fix: fix.into(),
        }
    }

    pub fn skip(family: Family, why: impl Into<Text>) -> Rule {
        Rule {
            family,
            status: Status::Skip,
            expected: Text::Borrowed(""),
            actual: why.into(),
            fix: Text::Borrowed(""),
        }
    }
}

/// What the judge needs besides the exchange.
pub struct JudgeCtx<'a> {
    pub v1: bool,
    /// The key that signed the request (it also signs the V1 reply).
    pub key: &'a str,
    pub budget: Duration,
    /// Require Body-Sign on V2 replies too (decision 4: off by default).
    pub require_body_sign: bool,
}

fn short(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
    if bytes.len() > 80 {
        format!("{s}…")
    } else {
        s
    }
}

/// The debugging page's rules for one reply plus the expected resultCode.
pub fn judge_one_call(
    ex: &Exchange,
    key: &str,
    budget: Duration,
    expect: &str,
    require_body_sign: bool,
) -> Vec<Rule> {
    let cx = JudgeCtx {
        v1: ex.request.callback.family.is_v1(),
        key,
        budget,
        require_body_sign,
    };
    let mut rules = judge_format(ex, &cx);
    if ex.outcome.is_ok() {
        match result_code(ex) {
            Some(c) if c == expect => rules.push(Rule::pass(Family::ResultCode, c.clone(), c)),
            Some(c) => {
                let said = reply_msg(ex).is_some();
                rules.push(Rule::fail(
                    Family::ResultCode,
                    expect.to_string(),
                    c,
                    if said {
                        "see resultMsg for what the endpoint objected to"
                    } else {
                        "the reply gives no reason (no resultMsg): the endpoint's log will"
                    },
                ))
            }
            None => {}
        }
    }
    rules
}

/// The reply-format rules for one exchange. With no reply, only `reachable` is judged.
pub fn judge_format(ex: &Exchange, cx: &JudgeCtx) -> Vec<Rule> {
    let budget = format!("a reply within {} ms", cx.budget.as_millis());
    let reply = match &ex.outcome {
        Err(f) => {
            let fix = match (f.fix, f.kind) {
                (Some(fix), _) => fix.into(),
                (None, NetKind::Connect) => "check the address and that the endpoint is listening".into(),
                (None, NetKind::Timeout) => format!(
                    "answer within {} ms: acknowledge at once and provision in the background (newInstance may answer 000004)",
                    cx.budget.as_millis()
                ),
                (None, NetKind::Tls) => f.tls_fix().into(),
                (None, NetKind::Reset) => {
                    "the server closed the connection before its reply was whole: check its logs for a crash, and that Content-Length matches the body".into()
                }
                (None, NetKind::Protocol) => "answer with HTTP/1.1".into(),
            };
            // The message may quote the endpoint's own bytes: shown as they came.
            return vec![Rule::fail(
                Family::Reachable,
                budget,
                format!("{}: {}", f.kind.id(), f.message),
                fix,
            )];
        }
        Ok(r) => r,
    };
    let mut rules = Vec::new();
    if ex.latency > cx.budget {
        rules.push(Rule::fail(
            Family::Reachable,
            budget,
            format!("{} ms", ex.latency.as_millis()),
            "answer within the budget; provision in the background",
        ));
    } else {
        rules.push(Rule::pass(
            Family::Reachable,
            budget,
            format!("{} ms", ex.latency.as_millis()),
        ));
    }
    if reply.status == 200 {
        rules.push(Rule::pass(Family::HttpStatus, "200", "200"));
    } else if crate::net::is_redirect(reply.status) {
        rules.push(Rule::fail(
            Family::HttpStatus,
            "200",
            format!(
                "{} {}",
                reply.status,
                crate::net::redirect_note(reply.header("location"))
            ),
            "answer at the registered address itself; the marketplace does not follow redirects",
        ));
    } else {
        rules.push(Rule::fail(
            Family::HttpStatus,
            "200",
            reply.status.to_string(),
            "answer every callback with HTTP 200 and put the outcome in resultCode",
        ));
    }
    let ct = reply.header("content-type").unwrap_or("");
    if is_json_content_type(ct) {
        rules.push(Rule::pass(
            Family::ContentType,
            "application/json",
            ct.to_string(),
        ));
    } else {
        rules.push(Rule::fail(
            Family::ContentType,
            "application/json",
            if ct.is_empty() { "(none)" } else { ct }.to_string(),
            "set the header Content-Type: application/json;charset=UTF-8",
        ));
    }
    let json = reply.json();
    match json {
        None if reply.truncated => rules.push(Rule::fail(
            Family::JsonBody,
            "a JSON object",
            format!("a body over {} bytes (reading stopped)", super::client::MAX_REPLY),
            "answer with a small JSON object",
        )),
        None => rules.push(Rule::fail(
            Family::JsonBody,
            "a JSON object",
            format!("{:?}", short(&reply.body)),
            "answer with a JSON object such as {\"resultCode\":\"000000\",\"resultMsg\":\"success.\"}",
        )),
        Some(v) => {
            let missing: Vec<&str> = ["resultCode", "resultMsg"]
                .into_iter()
                .filter(|k| v.get(*k).is_none())
                .collect();
            if !missing.is_empty() {
                rules.push(Rule::fail(
                    Family::JsonBody,
                    "resultCode and resultMsg",
                    format!("missing {}", missing.join(", ")),
                    "always include resultCode and resultMsg",
                ));
            } else if !v["resultCode"].is_string() {
                rules.push(Rule::fail(
                    Family::JsonBody,
                    "resultCode as a string",
                    v["resultCode"].to_string(),
                    "send resultCode as a 6-digit string, e.g. \"000000\"",
                ));
            } else {
                rules.push(Rule::pass(
                    Family::JsonBody,
                    "resultCode and resultMsg",
                    "present",
                ));
            }
        }
    }
    if let Some(v) = json {
        let success = matches!(v["resultCode"].as_str(), Some("000000" | "000004"));
        let mut fields: Vec<&ReplyField> = COMMON_REPLY.iter().collect();
        if success {
            fields.extend(ex.request.callback.reply.iter());
        }
        rules.extend(judge_fields(v, &fields));
        if cx.v1 && success {
            rules.extend(judge_credentials(v, cx.key));
        }
    }
    rules.extend(judge_body_sign(reply, cx));
    rules
}

/// `application/json`, any case, optionally followed by `;` parameters (not `application/jsonp`).
fn is_json_content_type(ct: &str) -> bool {
    let media = ct.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
}

/// Values at `path` (`a.b`, `a[].b`); each element is (where, value or None when absent).
fn lookup<'v>(v: &'v Value, path: &str) -> Vec<(String, Option<&'v Value>)> {
    let mut cur: Vec<(String, Option<&Value>)> = vec![(String::new(), Some(v))];
    for seg in path.split('.') {
        let (name, each) = match seg.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (seg, false),
        };
        let mut next = Vec::new();
        for (at, val) in cur {
            let Some(val) = val else {
                continue;
            };
            let here = if at.is_empty() {
                name.to_string()
            } else {
                format!("{at}.{name}")
            };
            let child = val.get(name);
            if each {
                if let Some(Value::Array(items)) = child {
                    for (i, item) in items.iter().enumerate() {
                        next.push((format!("{here}[{i}]"), Some(item)));
                    }
                }
            } else {
                next.push((here, child));
            }
        }
        cur = next;
    }
    cur
}

fn judge_fields(v: &Value, fields: &[&ReplyField]) -> Vec<Rule> {
    let mut missing = Vec::new();
    let mut long = Vec::new();
    for f in fields {
        for (at, val) in lookup(v, f.path) {
            match val {
                None | Some(Value::Null) if f.required => missing.push(at),
                // `"info":[]` answers a query without the instance it asked for.
                Some(Value::Array(items)) if f.required && items.is_empty() => {
                    missing.push(format!("{at}[] (empty)"))
                }
                Some(Value::String(s)) if f.max_len.is_some_and(|m| s.chars().count() > m) => long
                    .push(format!(
                        "{at} is {} characters (limit {})",
                        s.chars().count(),
                        f.max_len.unwrap_or(0)
                    )),
                _ => {}
            }
        }
    }
    let mut rules = Vec::new();
    if missing.is_empty() {
        rules.push(Rule::pass(Family::RequiredFields, "all present", "present"));
    } else {
        rules.push(Rule::fail(
            Family::RequiredFields,
            "required reply fields",
            format!("missing {}", missing.join(", ")),
            "add the missing fields (queryInstance needs info[].instanceId and info[].appInfo.frontEndUrl)",
        ));
    }
    if long.is_empty() {
        rules.push(Rule::pass(Family::LengthLimits, "within limits", "within"));
    } else {
        rules.push(Rule::fail(
            Family::LengthLimits,
            "fields within their documented lengths",
            long.join("; "),
            "shorten the values (instanceId ≤ 64, frontEndUrl ≤ 512, resultMsg ≤ 255)",
        ));
    }
    rules
}

fn judge_credentials(v: &Value, key: &str) -> Vec<Rule> {
    let declared = v["encryptType"].as_str().unwrap_or("1");
    let t = match EncryptType::parse(declared) {
        Ok(t) => t,
        Err(e) => {
            return vec![Rule::fail(
                Family::Credentials,
                "encryptType \"1\" or \"2\"",
                e.0,
                "declare encryptType \"1\" (AES-256) or \"2\" (AES-128)",
            )]
        }
    };
    let mut bad = Vec::new();
    let mut seen = 0;
    for base in ["appInfo", "info[].appInfo"] {
        for field in ["userName", "password"] {
            for (at, val) in lookup(v, &format!("{base}.{field}")) {
                if let Some(Value::String(ct)) = val {
                    seen += 1;
                    if let Err(e) = v1_crypto::decrypt(key, t, ct) {
                        bad.push(format!("{at}: {}", e.0));
                    }
                }
            }
        }
    }
    if seen == 0 {
        return vec![Rule::skip(
            Family::Credentials,
            "no credentials in the reply",
        )];
    }
    if bad.is_empty() {
        vec![Rule::pass(
            Family::Credentials,
            format!("decrypts with encryptType {declared}"),
            format!("{seen} value(s) decrypt"),
        )]
    } else {
        vec![Rule::fail(
            Family::Credentials,
            format!("decrypts with encryptType {declared}"),
            bad.join("; "),
            "encrypt with the algorithm you declare: \"1\" AES-256-CBC, \"2\" AES-128-CBC, key from SHA1PRNG(accessKey), 16-character IV in front",
        )]
    }
}

fn judge_body_sign(reply: &Reply, cx: &JudgeCtx) -> Vec<Rule> {
    let found = reply
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(v1::BODY_SIGN_HEADER));
    let Some((name, value)) = found else {
        if cx.v1 || cx.require_body_sign {
            return vec![
                Rule::fail(
                    Family::BodySign,
                    "a Body-Sign header",
                    "none (http header->bodySign is empty)",
                    "sign every reply: Body-Sign: sign_type=\"HMAC-SHA256\", signature=\"Base64(HMAC-SHA256(accessKey, body))\"",
                ),
                Rule::skip(Family::BodySignName, "no Body-Sign header"),
            ];
        }
        return vec![
            Rule::skip(
                Family::BodySign,
                "V2: no Body-Sign (not required, spec decision 4)",
            ),
            Rule::skip(Family::BodySignName, "no Body-Sign header"),
        ];
    };
    let mut rules = Vec::new();
    // An endpoint that also refused the request's signature most likely holds another key.
    let refused = reply.json().and_then(|v| v.get("resultCode")?.as_str()) == Some("000001");
    match v1::verify_body_sign(cx.key, &reply.body, value) {
        Ok(true) => rules.push(Rule::pass(Family::BodySign, "valid", "valid")),
        Ok(false) => rules.push(Rule::fail(
            Family::BodySign,
            "Base64(HMAC-SHA256(accessKey, raw body))",
            "a signature that does not match the body",
            if refused {
                "the endpoint also answered 000001: it most likely holds another key than csm's key file (compare both with the seller center); else sign the exact bytes you send with the access key alone"
            } else {
                "sign the exact bytes you send (after serialisation, including whitespace) with the access key alone"
            },
        )),
        Err(e) => rules.push(Rule::fail(
            Family::BodySign,
            "sign_type=\"HMAC-SHA256\", signature=\"…\"",
            e.0,
            "format the header as sign_type=\"HMAC-SHA256\", signature=\"<base64>\"",
        )),
    }
    if !reply.header_case_known {
        rules.push(Rule::skip(
            Family::BodySignName,
            "not observable: an HTTP proxy relayed the reply (check with curl -i)",
        ));
    } else if name == v1::BODY_SIGN_HEADER {
        rules.push(Rule::pass(
            Family::BodySignName,
            "Body-Sign",
            name.to_string(),
        ));
    } else {
        rules.push(Rule::fail(
            Family::BodySignName,
            "Body-Sign",
            name.to_string(),
            "write the header name exactly as Body-Sign (enable the title-case option of your HTTP library)",
        ));
    }
    rules
}

/// The `resultMsg`, when the reply is JSON and has one that says something.
pub fn reply_msg(ex: &Exchange) -> Option<&str> {
    let reply = ex.outcome.as_ref().ok()?;
    reply
        .json()?
        .get("resultMsg")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
}

/// The `resultCode`, when the reply is JSON.
pub fn result_code(ex: &Exchange) -> Option<String> {
    let reply = ex.outcome.as_ref().ok()?;
    reply
        .json()?
        .get("resultCode")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths_reach_into_arrays() {
        let v = json!({"info":[{"instanceId":"a","appInfo":{}},{"instanceId":"b","appInfo":{"frontEndUrl":"u"}}]});
        let f = crate::catalog::CATALOG[1].reply; // V2 queryInstance
        let refs: Vec<&ReplyField> = f.iter().collect();
        let rules = judge_fields(&v, &refs);
        assert_eq!(rules[0].status, Status::Fail);
        assert!(
            rules[0].actual.contains("info[0].appInfo.frontEndUrl"),
            "{}",
            rules[0].actual
        );
        assert!(!rules[0].actual.contains("info[1]"));
        // An empty info[] lists no instance at all.
        let rules = judge_fields(&json!({"info": []}), &refs);
        assert_eq!(rules[0].status, Status::Fail);
        assert!(
            rules[0].actual.contains("info[] (empty)"),
            "{}",
            rules[0].actual
        );
        let listed = json!({"info":[{"instanceId":"a","appInfo":{"frontEndUrl":"u"}}]});
        assert_eq!(judge_fields(&listed, &refs)[0].status, Status::Pass);
    }

    #[test]
    fn content_type_is_exactly_json_with_optional_parameters() {
        for ok in [
            "application/json",
            "application/json;charset=UTF-8",
            "Application/JSON ; charset=utf-8",
        ] {
            assert!(is_json_content_type(ok), "{ok}");
        }
        for bad in ["application/jsonp", "application/json-seq", "text/json", ""] {
            assert!(!is_json_content_type(bad), "{bad}");
        }
    }
}
