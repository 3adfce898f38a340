//! Building a signed callback request (pure: the clock value and the nonce are inputs).

use crate::catalog::{Callback, Family};
use crate::protocol::json::{canonical_sorted, Json};
use crate::protocol::{v1, v2, ProtocolError};
use crate::secret::Secret;
use reqwest::Url;
use serde_json::{Map, Value};

/// The keys a run may sign with, one per interface type.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    pub basic: Option<Secret>,
    pub kit: Option<Secret>,
    pub license: Option<Secret>,
}

impl Keys {
    pub fn for_family(&self, f: Family) -> Option<&Secret> {
        match f.key_role() {
            crate::catalog::KeyRole::Kit => self.kit.as_ref(),
            crate::catalog::KeyRole::License => self.license.as_ref(),
            _ => self.basic.as_ref(),
        }
    }
}

/// Deliberate damage for the negative suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tamper {
    #[default]
    None,
    /// One character of the signature changed.
    BadSignature,
    /// Correctly signed, but the timestamp is ten minutes old.
    StaleTimestamp,
    /// No signature at all.
    MissingSignature,
}

#[derive(Debug, Clone)]
pub struct Prepared {
    pub callback: &'static Callback,
    pub scene: Option<String>,
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The fields as sent (for V1 GET: the query parameters before authToken).
    pub fields: Map<String, Value>,
}

impl Prepared {
    pub fn title(&self) -> String {
        self.callback.title(self.scene.as_deref())
    }

    /// An equivalent curl command (the body passed as given, so it is signed byte for byte).
    pub fn curl(&self) -> String {
        curl_command(
            self.method,
            &self.url,
            &self.headers,
            &String::from_utf8_lossy(&self.body),
        )
    }
}

/// A curl command sending exactly this request (arguments quoted for a POSIX shell).
pub fn curl_command(method: &str, url: &str, headers: &[(String, String)], body: &str) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut out = format!("curl -sS -i -X {method} {}", q(url));
    for (n, v) in headers {
        out.push_str(&format!(" \\\n  -H {}", q(&format!("{n}: {v}"))));
    }
    if !body.is_empty() {
        out.push_str(&format!(" \\\n  --data-binary {}", q(body)));
    }
    out
}

pub struct PrepOpts<'a> {
    pub endpoint: &'a Url,
    pub now_ms: i64,
    pub nonce: String,
    pub tamper: Tamper,
    /// Append Kit paths to the full address instead of its origin (decision 7).
    pub kit_path_full: bool,
    /// The inner step of License 2.0 signatures (decision 5).
    pub license_inner: v2::LicenseInner,
}

const STALE_MS: i64 = 10 * 60 * 1000;

/// The canonical bytes csm sends (decision 1): compact, keys sorted at every level, no nulls.
pub fn canonical_body(fields: &Map<String, Value>) -> String {
    let members = fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), Json::from_serde(v)))
        .collect();
    canonical_sorted(&Json::Object(members))
}

fn with_query(url: &Url, pairs: &[(String, String)]) -> String {
    let mut s = url.as_str().to_string();
    if pairs.is_empty() {
        return s;
    }
    s.push(if url.query().is_some() { '&' } else { '?' });
    v1::push_query(&mut s, pairs);
    s
}

fn kit_url(endpoint: &Url, v2: bool, name: &str, full: bool) -> String {
    let prefix = if v2 {
        "/produceAPI/v2/"
    } else {
        "/produceAPI/"
    };
    if full {
        let mut base = endpoint.clone();
        base.set_query(None);
        format!("{}{}{name}", base.as_str().trim_end_matches('/'), prefix)
    } else {
        format!(
            "{}{}{name}",
            endpoint.origin().ascii_serialization(),
            prefix
        )
    }
}

fn damage(sig: &str) -> String {
    let mut chars: Vec<char> = sig.chars().collect();
    if let Some(c) = chars.first_mut() {
        *c = match *c {
            '0' => '1',
            'A' => 'B',
            'a' => 'b',
            _ => '0',
        };
    }
    chars.into_iter().collect()
}

/// Builds and signs a callback whose body is the canonical form of `fields`.
pub fn prepare(
    cb: &'static Callback,
    scene: Option<&str>,
    fields: Map<String, Value>,
    key: &Secret,
    o: &PrepOpts,
) -> Result<Prepared, ProtocolError> {
    prepare_body(cb, scene, fields, None, key, o)
}

/// Sends `raw` exactly as given (`csm send --body-file FILE`) and signs those bytes. V1 GET
/// callbacks have no body: their fields go to the query as usual.
pub fn prepare_raw(
    cb: &'static Callback,
    scene: Option<&str>,
    raw: String,
    key: &Secret,
    o: &PrepOpts,
) -> Result<Prepared, ProtocolError> {
    let fields = match serde_json::from_str::<Value>(&raw) {
        Ok(Value::Object(m)) => m,
        _ => return Err(ProtocolError::new("body: must be a JSON object")),
    };
    prepare_body(cb, scene, fields, Some(raw), key, o)
}

fn prepare_body(
    cb: &'static Callback,
    scene: Option<&str>,
    fields: Map<String, Value>,
    raw: Option<String>,
    key: &Secret,
    o: &PrepOpts,
) -> Result<Prepared, ProtocolError> {
    let k = key.expose();
    // Exactly the bytes that will be sent are signed (decision 1).
    let body_text = || raw.clone().unwrap_or_else(|| canonical_body(&fields));
    let ts_ms = if o.tamper == Tamper::StaleTimestamp {
        o.now_ms - STALE_MS
    } else {
        o.now_ms
    };
    let ts = ts_ms.to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    let json_headers = |h: &mut Vec<(String, String)>| {
        h.push((
            "Content-Type".into(),
            "application/json;charset=UTF-8".into(),
        ));
        h.push(("Accept".into(), "application/json".into()));
    };
    let (method, url, body) = match cb.family {
        Family::V2Basic | Family::OrderNotify | Family::License => {
            let body = body_text();
            let inner = if cb.family == Family::License {
                o.license_inner
            } else {
                v2::LicenseInner::KeyedHmac
            };
            let signature =
                v2::basic_signature(k, body.as_bytes(), &ts, &o.nonce, inner).hex_upper();
            let mut q = Vec::new();
            match o.tamper {
                Tamper::MissingSignature => {}
                Tamper::BadSignature => q.push(("signature".into(), damage(&signature))),
                _ => q.push(("signature".into(), signature)),
            }
            q.push(("timestamp".into(), ts.clone()));
            q.push(("nonce".into(), o.nonce.clone()));
            json_headers(&mut headers);
            ("POST", with_query(o.endpoint, &q), body.into_bytes())
        }
        Family::V2Kit => {
            let body = body_text();
            let x_sign = v2::kit_signature(k, body.as_bytes(), &ts, &o.nonce).hex_upper();
            json_headers(&mut headers);
            match o.tamper {
                Tamper::MissingSignature => {}
                Tamper::BadSignature => headers.push(("x-sign".into(), damage(&x_sign))),
                _ => headers.push(("x-sign".into(), x_sign)),
            }
            headers.push(("x-timestamp".into(), ts.clone()));
            headers.push(("x-nonce".into(), o.nonce.clone()));
            (
                "POST",
                kit_url(o.endpoint, true, cb.name, o.kit_path_full),
                body.into_bytes(),
            )
        }
        Family::V1Basic => {
            let params: Vec<(String, String)> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(n, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (n.clone(), text)
                })
                .collect();
            // The merchant signs every query parameter but authToken, so parameters already
            // in the registered address (`?channel=x`) are part of the token too.
            let mut signed = match o.endpoint.query() {
                Some(existing) => v1::parse_query(existing, false)?,
                None => Vec::new(),
            };
            signed.extend(params.iter().cloned());
            let token = v1::auth_token(k, &signed)?.auth_token;
            let mut q = params;
            match o.tamper {
                Tamper::MissingSignature => {}
                Tamper::BadSignature => q.push(("authToken".into(), damage(&token))),
                _ => q.push(("authToken".into(), token)),
            }
            headers.push(("Accept".into(), "application/json".into()));
            ("GET", with_query(o.endpoint, &q), Vec::new())
        }
        Family::V1Kit => {
            let body = body_text();
            let json = crate::protocol::json::parse(body.as_bytes())?;
            let token = v1::kit_auth_token(k, &json)?;
            json_headers(&mut headers);
            match o.tamper {
                Tamper::MissingSignature => {}
                Tamper::BadSignature => {
                    headers.push(("authToken".into(), damage(&token.auth_token)))
                }
                _ => headers.push(("authToken".into(), token.auth_token)),
            }
            (
                "POST",
                kit_url(o.endpoint, false, cb.name, o.kit_path_full),
                body.into_bytes(),
            )
        }
    };
    Ok(Prepared {
        callback: cb,
        scene: scene.map(str::to_string),
        method,
        url,
        headers,
        body,
        fields,
    })
}

/// One step down `path`: an object member (created when missing) or an array index.
fn step<'v>(cur: &'v mut Value, seg: &str, path: &str) -> Result<&'v mut Value, String> {
    match cur {
        Value::Object(m) => Ok(m
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()))),
        Value::Array(a) => {
            let len = a.len();
            let i: usize = seg.parse().map_err(|_| {
                format!("{path:?}: {seg} must be an index (the value there is an array)")
            })?;
            a.get_mut(i)
                .ok_or_else(|| format!("{path:?}: index {i} is past the end ({len} items)"))
        }
        _ => Err(format!(
            "{path:?}: cannot go into {seg}: not an object or array"
        )),
    }
}

/// Sets `path` to `value`: dots for nesting (`productInfo.productId`), numbers index arrays
/// (`userList.0.role`). Missing objects are created.
pub fn set_path(map: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("{path:?}: empty segment in the field path"));
    }
    if parts.len() == 1 {
        map.insert(path.to_string(), value);
        return Ok(());
    }
    let mut cur = map
        .entry(parts[0].to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    for seg in &parts[1..parts.len() - 1] {
        cur = step(cur, seg, path)?;
    }
    let last = parts[parts.len() - 1];
    match cur {
        Value::Object(m) => {
            m.insert(last.to_string(), value);
            Ok(())
        }
        other => {
            *step(other, last, path)? = value;
            Ok(())
        }
    }
}

/// Removes `path`; false when it was not there.
pub fn unset_path(map: &mut Map<String, Value>, path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.len() == 1 {
        return map.remove(path).is_some();
    }
    let Some(mut cur) = map.get_mut(parts[0]) else {
        return false;
    };
    for seg in &parts[1..parts.len() - 1] {
        let next = match cur {
            Value::Object(m) => m.get_mut(*seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    let last = parts[parts.len() - 1];
    match cur {
        Value::Object(m) => m.remove(last).is_some(),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{find, Protocol};

    #[test]
    fn v2_basic_request_matches_the_spec_example() {
        let cb = find("newInstance", Protocol::V2).unwrap();
        let fields: Map<String, Value> = serde_json::from_str(
            r#"{"testFlag":"1","orderLineId":"CS2211181819B4LVS-000001","orderId":"CS2211181819B4LVS","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8","activity":"newInstance"}"#,
        )
        .unwrap();
        let url = Url::parse("https://isv.example.com/produce").unwrap();
        let key = Secret::new("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d");
        let p = prepare(
            cb,
            None,
            fields,
            &key,
            &PrepOpts {
                endpoint: &url,
                now_ms: 1680508066618,
                nonce: "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA".into(),
                tamper: Tamper::None,
                kit_path_full: false,
                license_inner: v2::LicenseInner::KeyedHmac,
            },
        )
        .unwrap();
        assert!(p.url.contains(
            "signature=0A83C058A9533E2A847E95691E7F16494456EE876383A05C04A34C7DFEE74D64"
        ));
        assert!(p.url.contains("timestamp=1680508066618"));
        assert!(std::str::from_utf8(&p.body)
            .unwrap()
            .starts_with(r#"{"activity":"newInstance","businessId""#));
    }

    #[test]
    fn v1_token_covers_the_query_already_in_the_address() {
        let cb = find("newInstance", Protocol::V1).unwrap();
        let url = Url::parse("http://127.0.0.1:9/produce?channel=a%20b").unwrap();
        let key = Secret::new("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d");
        let fields: Map<String, Value> = serde_json::from_str(
            r#"{"activity":"newInstance","orderId":"CS1","timeStamp":"20240101000000000"}"#,
        )
        .unwrap();
        let p = prepare(
            cb,
            None,
            fields,
            &key,
            &PrepOpts {
                endpoint: &url,
                now_ms: 1,
                nonce: "n".into(),
                tamper: Tamper::None,
                kit_path_full: false,
                license_inner: v2::LicenseInner::KeyedHmac,
            },
        )
        .unwrap();
        // Verify as the merchant does: every decoded parameter but authToken.
        let sent = Url::parse(&p.url).unwrap();
        let params = v1::parse_query(sent.query().unwrap(), false).unwrap();
        assert!(params.contains(&("channel".into(), "a b".into())));
        let token = params
            .iter()
            .find(|(n, _)| n == "authToken")
            .unwrap()
            .1
            .clone();
        assert_eq!(
            v1::auth_token(key.expose(), &params).unwrap().auth_token,
            token
        );
    }

    #[test]
    fn kit_paths_use_the_origin_by_default() {
        let u = Url::parse("https://isv.example.com/saas/produce?x=1").unwrap();
        assert_eq!(
            kit_url(&u, true, "tenantSync", false),
            "https://isv.example.com/produceAPI/v2/tenantSync"
        );
        assert_eq!(
            kit_url(&u, true, "tenantSync", true),
            "https://isv.example.com/saas/produce/produceAPI/v2/tenantSync"
        );
        assert_eq!(
            kit_url(&u, false, "authSync", false),
            "https://isv.example.com/produceAPI/authSync"
        );
    }

    #[test]
    fn set_and_unset_nested_paths() {
        let mut m = Map::new();
        set_path(&mut m, "a.b", Value::from("x")).unwrap();
        assert_eq!(m["a"]["b"], "x");
        assert!(unset_path(&mut m, "a.b"));
        assert!(!unset_path(&mut m, "a.c"));
        assert!(set_path(&mut m, "a..b", Value::Null).is_err());
        m.insert(
            "users".into(),
            serde_json::json!([{"role": "user"}, {"role": "user"}]),
        );
        set_path(&mut m, "users.1.role", Value::from("admin")).unwrap();
        assert_eq!(m["users"][1]["role"], "admin");
        assert!(set_path(&mut m, "users.5.role", Value::Null).is_err());
        assert!(set_path(&mut m, "users.x.role", Value::Null).is_err());
        assert!(unset_path(&mut m, "users.0"));
        assert_eq!(m["users"].as_array().unwrap().len(), 1);
    }
}
