//! The marketplace's license open APIs as the seller's software calls them (spec §2.6, §5):
//! building the AK/SK-signed request and reading the answer. Pure: the caller passes the
//! time and sends the bytes; nothing here touches the network or prints.

use super::code;
use crate::error::Exit;
use crate::protocol::apig;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub const ACTIVATE_PATH: &str = "/api/mkp-openapi-public/global/v1/license/activate";
pub const HEARTBEAT_PATH: &str = "/api/mkp-openapi-public/global/v1/license/heartbeat";
/// `error_code` of a successful open-API call.
pub const SUCCESS: &str = "92020000";
/// The marketplace's internal error (§2.6.4). One copy of the table also uses it, with HTTP
/// 403, for an authentication failure.
pub const INTERNAL: &str = "92020001";
/// Longest answer read; the documented answers are a few hundred bytes.
pub const MAX_ANSWER: usize = 1024 * 1024;
/// Marketplace codes have at most 64 characters (spec §2.8).
pub const CODE_MAX: usize = code::MARKETPLACE_MAX;
/// The open APIs' and callbacks' time format: UTC yyyyMMddHHmmss.
pub const TIME_FORMAT: &str = "%Y%m%d%H%M%S";

/// Whether `t` is a UTC yyyyMMddHHmmss time (exactly 14 digits, a real date and time).
pub fn valid_time(t: &str) -> bool {
    t.len() == 14 && chrono::NaiveDateTime::parse_from_str(t, TIME_FORMAT).is_ok()
}

/// Which open API, with its own inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `real_effect_time`: when the software actually started, UTC yyyyMMddHHmmss.
    Activate {
        real_effect_time: Option<String>,
    },
    Heartbeat,
}

impl Call {
    pub fn path(&self) -> &'static str {
        match self {
            Call::Activate { .. } => ACTIVATE_PATH,
            Call::Heartbeat => HEARTBEAT_PATH,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Call::Activate { .. } => "activate",
            Call::Heartbeat => "heartbeat",
        }
    }
}

/// Everything to POST, exactly: the headers include `Authorization`, and every other header
/// listed here (Host included) is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The Host header signed for `url`, or a message naming `--endpoint`.
fn host_header(url: &str) -> Result<String, String> {
    apig::host_header_value(url).ok_or_else(|| {
        format!("--endpoint {url:?}: must be an http:// or https:// URL with a host")
    })
}

/// Checks the inputs a user typed; messages name the input, the value and the rule.
pub fn check_inputs(code: &str, call: &Call) -> Result<(), String> {
    let c = code.trim();
    if c.is_empty() || c.len() > CODE_MAX {
        return Err(format!(
            "CODE {code:?}: a marketplace license code has 1 to {CODE_MAX} characters"
        ));
    }
    code::check_marketplace_shape(c).map_err(|t| format!("CODE {code:?}: {}", t.reason))?;
    if let Call::Activate {
        real_effect_time: Some(t),
    } = call
    {
        if !valid_time(t) {
            return Err(format!(
                "--real-effect-time {t:?}: must be UTC yyyyMMddHHmmss"
            ));
        }
    }
    Ok(())
}

/// The signed request for `call` on `code`, against the base URL `endpoint`, at time `now`.
pub fn build_request(
    call: &Call,
    endpoint: &str,
    code: &str,
    ak: &str,
    sk: &str,
    now: DateTime<Utc>,
) -> Result<Request, String> {
    check_inputs(code, call)?;
    let base = endpoint.trim_end_matches('/');
    let lower = base.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!(
            "--endpoint {base:?}: must start with http:// or https://"
        ));
    }
    if base.contains(['?', '#']) {
        return Err(format!(
            "--endpoint {base:?}: a base URL without query or fragment"
        ));
    }
    let url = format!("{base}{}", call.path());
    let mut body = serde_json::Map::new();
    body.insert("license".into(), Value::String(code.trim().to_string()));
    if let Call::Activate {
        real_effect_time: Some(t),
    } = call
    {
        body.insert("real_effect_time".into(), Value::String(t.clone()));
    }
    let body = Value::Object(body).to_string();
    let mut headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Host".to_string(), host_header(&url)?),
        (apig::DATE_HEADER.to_string(), apig::format_sdk_date(now)),
    ];
    let signed: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    let authorization =
        apig::authorization(ak, sk, "POST", &url, &headers, &signed, body.as_bytes())
            .map_err(|e| e.0)?;
    headers.push(("Authorization".to_string(), authorization));
    Ok(Request { url, headers, body })
}

/// What an answer means for the caller, whatever the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// activate: done; heartbeat: the code is ALIVE.
    Ok,
    /// heartbeat: the marketplace says the code is EXPIRED.
    Expired,
    /// A definite no about the code (a 9202xxxx answer, or a status other than ALIVE):
    /// FROZEN, RELEASED, unknown, not activated, illegal state.
    Refused,
    /// Refused for the request's own setup (the AK/SK, the clock, a wrong --endpoint): an
    /// HTTP 4xx that says nothing about the code.
    Setup,
    /// No answer about the code from the marketplace: it failed (5xx, 429, its internal
    /// error), or something else answered (a proxy's or a captive portal's page). The same
    /// call may succeed later.
    Transient,
}

impl Standing {
    /// Only a definite answer about the code exits 0, 1 or 6, so that a script locks a
    /// customer out on those and not on an outage (4) or its own setup (3).
    pub fn exit(self) -> Exit {
        match self {
            Standing::Ok => Exit::Ok,
            Standing::Expired => Exit::LicenseDate,
            Standing::Refused => Exit::CheckFailed,
            Standing::Setup => Exit::Io,
            Standing::Transient => Exit::Network,
        }
    }

    /// The standing of an answer that is not the license API's (an error page, a body
    /// without its codes): by its HTTP status alone, never an answer about the code.
    pub fn of_status(http_status: u16) -> Standing {
        match http_status {
            429 => Standing::Transient,
            400..=499 => Standing::Setup,
            _ => Standing::Transient,
        }
    }

    fn of(call: &Call, http_status: u16, error_code: &str, status: &str) -> Standing {
        match error_code {
            SUCCESS => match (call, status) {
                (Call::Activate { .. }, _) | (Call::Heartbeat, "ALIVE") => Standing::Ok,
                (Call::Heartbeat, "EXPIRED") => Standing::Expired,
                _ => Standing::Refused,
            },
            // The same code is an authentication failure with 403 and an internal error
            // otherwise (§2.6.4).
            INTERNAL if http_status == 403 => Standing::Setup,
            INTERNAL => Standing::Transient,
            // The license API's own answers about the code (§2.6.4), with 200 or 400.
            c if c.starts_with("9202") => Standing::Refused,
            // The gateway's (APIGW.0301 …) or none: not about the code.
            _ => Standing::of_status(http_status),
        }
    }
}

/// The marketplace's answer, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub error_code: String,
    pub error_msg: String,
    /// activate: `data.license_code_info` decoded from its JSON string; heartbeat: `data`.
    pub license_info: Option<Value>,
    /// `status` of the license info (`ALIVE`, `FROZEN`, ...), empty when absent.
    pub status: String,
    pub standing: Standing,
}

impl Answer {
    /// activate: `92020000`; heartbeat: `92020000` and `ALIVE`.
    pub fn ok(&self) -> bool {
        self.standing == Standing::Ok
    }
}

/// At most `n` characters of an answer, for messages.
pub fn excerpt(body: &[u8], n: usize) -> String {
    String::from_utf8_lossy(body).chars().take(n).collect()
}

/// Reads an answer body. Not JSON is an error naming the status and the start of the body.
pub fn parse_answer(call: &Call, http_status: u16, body: &[u8]) -> Result<Answer, String> {
    let answer: Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "HTTP {http_status}, the answer is not JSON: {:?}",
            excerpt(body, 200)
        )
    })?;
    let text = |k: &str| {
        answer
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let error_code = text("error_code");
    let error_msg = text("error_msg");
    let license_info = match call {
        // activate returns the license info as a JSON string; decode it when it is one.
        Call::Activate { .. } => match answer.pointer("/data/license_code_info").cloned() {
            Some(Value::String(s)) => Some(serde_json::from_str(&s).unwrap_or(Value::String(s))),
            other => other,
        },
        Call::Heartbeat => answer.get("data").cloned(),
    };
    let status = license_info
        .as_ref()
        .and_then(|i| i.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let standing = Standing::of(call, http_status, &error_code, &status);
    Ok(Answer {
        error_code,
        error_msg,
        license_info,
        status,
        standing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn activate_request_is_signed_with_host_and_verifies() {
        let call = Call::Activate {
            real_effect_time: Some("20260102153555".into()),
        };
        let r = build_request(
            &call,
            "http://127.0.0.1:8080/",
            " PLABC ",
            "AK1",
            "sk-1",
            now(),
        )
        .unwrap();
        assert_eq!(r.url, format!("http://127.0.0.1:8080{ACTIVATE_PATH}"));
        assert_eq!(
            r.body,
            r#"{"license":"PLABC","real_effect_time":"20260102153555"}"#
        );
        assert_eq!(header(&r, "Host"), Some("127.0.0.1:8080"));
        assert_eq!(header(&r, "X-Sdk-Date"), Some("20261124T090000Z"));
        let auth = header(&r, "Authorization").unwrap();
        assert!(
            auth.starts_with("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=content-type;host;x-sdk-date, Signature="),
            "{auth}"
        );
        // The gateway's side accepts exactly these bytes, and not a different Host.
        let ok = apig::verify("sk-1", "POST", &r.url, &r.headers, r.body.as_bytes()).unwrap();
        assert!(ok);
        let mut moved = r.headers.clone();
        moved[1].1 = "127.0.0.1:9090".into();
        let ok = apig::verify("sk-1", "POST", &r.url, &moved, r.body.as_bytes()).unwrap();
        assert!(!ok, "Host must be signed");
        assert!(!format!("{r:?}").contains("sk-1"));
    }

    #[test]
    fn heartbeat_request_has_only_the_license() {
        let r = build_request(
            &Call::Heartbeat,
            "https://MKT.Example.com:443",
            "PL1",
            "AK",
            "SK",
            now(),
        )
        .unwrap();
        assert_eq!(r.body, r#"{"license":"PL1"}"#);
        assert_eq!(
            r.url,
            format!("https://MKT.Example.com:443{HEARTBEAT_PATH}")
        );
        assert_eq!(header(&r, "Host"), Some("mkt.example.com"));
    }

    #[test]
    fn bad_inputs_are_refused_with_the_rule() {
        let e = |call: Call, endpoint: &str, code: &str| {
            build_request(&call, endpoint, code, "AK", "SK", now()).unwrap_err()
        };
        assert!(
            e(Call::Heartbeat, crate::catalog::PRODUCTION_MARKETPLACE, " ").contains("1 to 64")
        );
        assert!(e(
            Call::Heartbeat,
            crate::catalog::PRODUCTION_MARKETPLACE,
            &"P".repeat(65)
        )
        .contains("1 to 64"));
        assert!(e(
            Call::Heartbeat,
            crate::catalog::PRODUCTION_MARKETPLACE,
            "PL 1é"
        )
        .contains("position 3"));
        assert!(e(Call::Heartbeat, "ftp://x", "PL1").contains("http://"));
        assert!(e(Call::Heartbeat, "http://x/?a=1", "PL1").contains("query"));
        let bad_time = Call::Activate {
            real_effect_time: Some("2026-01-02".into()),
        };
        assert!(
            e(bad_time, crate::catalog::PRODUCTION_MARKETPLACE, "PL1").contains("yyyyMMddHHmmss")
        );
    }

    #[test]
    fn activate_answer_decodes_the_license_info_string() {
        let body = br#"{"error_code":"92020000","error_msg":"success","data":{"license_code_info":"{\"status\":\"ALIVE\",\"expire_time\":\"20230726121646\",\"product_id\":\"12345\",\"amount\":2,\"order_id\":\"CS123\"}"}}"#;
        let call = Call::Activate {
            real_effect_time: None,
        };
        let a = parse_answer(&call, 200, body).unwrap();
        assert!(a.ok());
        assert_eq!(a.status, "ALIVE");
        assert_eq!(a.license_info.unwrap()["amount"], 2);
        let refused = parse_answer(
            &call,
            200,
            br#"{"error_code":"92020003","error_msg":"illegal state"}"#,
        )
        .unwrap();
        assert!(!refused.ok());
        assert_eq!(refused.error_msg, "illegal state");
        assert_eq!(refused.license_info, None);
    }

    #[test]
    fn heartbeat_is_ok_only_when_alive() {
        let alive = br#"{"error_code":"92020000","error_msg":"success","data":{"license_code":"PL1","status":"ALIVE"}}"#;
        let frozen = br#"{"error_code":"92020000","error_msg":"success","data":{"license_code":"PL1","status":"FROZEN"}}"#;
        assert!(parse_answer(&Call::Heartbeat, 200, alive).unwrap().ok());
        let f = parse_answer(&Call::Heartbeat, 200, frozen).unwrap();
        assert!(!f.ok());
        assert_eq!(f.status, "FROZEN");
    }

    #[test]
    fn only_a_definite_answer_about_the_code_exits_0_1_or_6() {
        let hb = |http: u16, body: &str| {
            let a = parse_answer(&Call::Heartbeat, http, body.as_bytes()).unwrap();
            (a.standing, a.standing.exit().code())
        };
        let status = |s: &str| {
            format!(
                r#"{{"error_code":"92020000","error_msg":"success","data":{{"status":"{s}"}}}}"#
            )
        };
        assert_eq!(hb(200, &status("ALIVE")), (Standing::Ok, 0));
        assert_eq!(hb(200, &status("EXPIRED")), (Standing::Expired, 6));
        assert_eq!(hb(200, &status("FROZEN")), (Standing::Refused, 1));
        assert_eq!(hb(200, &status("RELEASED")), (Standing::Refused, 1));
        let code = |c: &str| format!(r#"{{"error_code":"{c}","error_msg":"x"}}"#);
        assert_eq!(hb(200, &code("92020011")), (Standing::Refused, 1));
        assert_eq!(hb(200, &code("92020005")), (Standing::Refused, 1));
        // The marketplace failing is not an answer about the code.
        assert_eq!(hb(500, &code("92020001")), (Standing::Transient, 4));
        assert_eq!(hb(200, &code("92020001")), (Standing::Transient, 4));
        assert_eq!(hb(504, &code("APIGW.0201")), (Standing::Transient, 4));
        assert_eq!(hb(429, &code("APIGW.0308")), (Standing::Transient, 4));
        // Nor is a refusal of the credentials.
        assert_eq!(hb(401, &code("APIGW.0301")), (Standing::Setup, 3));
        assert_eq!(hb(401, &code("APIGW.0303")), (Standing::Setup, 3));
        assert_eq!(hb(403, &code("92020001")), (Standing::Setup, 3));
        let act = parse_answer(
            &Call::Activate {
                real_effect_time: None,
            },
            500,
            code("92020001").as_bytes(),
        )
        .unwrap();
        assert_eq!(act.standing, Standing::Transient);
        assert_eq!(Standing::of_status(502), Standing::Transient);
        assert_eq!(Standing::of_status(401), Standing::Setup);
        // A wrong --endpoint, another gateway refusal, a page that is not the API's: not
        // a no about the code.
        assert_eq!(Standing::of_status(404), Standing::Setup);
        assert_eq!(hb(403, &code("APIGW.0310")), (Standing::Setup, 3));
        assert_eq!(hb(400, &code("95000001")), (Standing::Setup, 3));
        assert_eq!(hb(200, r#"{"result":"ok"}"#), (Standing::Transient, 4));
        assert_eq!(hb(400, &code("92020002")), (Standing::Refused, 1));
    }

    #[test]
    fn an_answer_that_is_not_json_is_an_error_with_an_excerpt() {
        let e = parse_answer(&Call::Heartbeat, 502, b"<html>bad gateway</html>").unwrap_err();
        assert!(e.contains("HTTP 502") && e.contains("bad gateway"), "{e}");
        let long = vec![b'x'; 5000];
        assert!(
            parse_answer(&Call::Heartbeat, 200, &long)
                .unwrap_err()
                .len()
                < 300
        );
    }
}
