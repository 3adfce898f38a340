//! `csm sign SCHEME`: compute a signature offline and print it (or every intermediate).

use crate::catalog::{KeyRole, PRODUCTION_MARKETPLACE};
use crate::cli::GlobalArgs;
use crate::clock;
use crate::config::{self, Profile};
use crate::endpoint::request;
use crate::error::{CsmError, Exit, Result};
use crate::protocol::{apig, doctor, json, usage_sig, v1, v2};
use crate::secret::Secret;
use crate::usage::batch::USAGE_PATH;
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The signature schemes. These names are a contract with users' scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scheme {
    /// V1 GET authToken over the query parameters.
    SaasV1,
    /// V1 joint-operation (Kit) POST authToken header over the body fields.
    SaasV1Kit,
    /// V1 Body-Sign response header over the exact body bytes.
    BodySign,
    /// V2 basic callbacks: query signature/timestamp/nonce.
    SaasV2,
    /// V2 Kit callbacks: x-sign header.
    Kit,
    /// License 2.0 callbacks (V2 basic recipe with the License key).
    License,
    /// Usage push: the signature header over ts, nonce and body.
    Usage,
    /// API Gateway AK/SK (SDK-HMAC-SHA256) for the marketplace open APIs.
    Apig,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::SaasV1 => "saas-v1",
            Scheme::SaasV1Kit => "saas-v1-kit",
            Scheme::BodySign => "body-sign",
            Scheme::SaasV2 => "saas-v2",
            Scheme::Kit => "kit",
            Scheme::License => "license",
            Scheme::Usage => "usage",
            Scheme::Apig => "apig",
        }
    }

    /// Its timestamps are decimal epoch milliseconds (the V2 family and usage pushes).
    pub fn epoch_ms(self) -> bool {
        matches!(
            self,
            Scheme::SaasV2 | Scheme::Kit | Scheme::License | Scheme::Usage
        )
    }

    /// Its signature travels as the Base64 of the MAC (the V1 schemes, Body-Sign, usage
    /// pushes); the others as hex.
    pub fn base64(self) -> bool {
        matches!(
            self,
            Scheme::SaasV1 | Scheme::SaasV1Kit | Scheme::BodySign | Scheme::Usage
        )
    }

    /// Which key signs this scheme (for env and profile fallbacks).
    pub fn key_role(self) -> KeyRole {
        match self {
            Scheme::Kit | Scheme::SaasV1Kit => KeyRole::Kit,
            Scheme::License => KeyRole::License,
            Scheme::Apig => KeyRole::Sk,
            _ => KeyRole::Basic,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LicenseInnerArg {
    /// Keyed inner HMAC, as for the basic interfaces (the documented reading).
    #[default]
    KeyedHmac,
    /// Unkeyed SHA-256 of the canonical body (an alternative reading).
    PlainSha256,
}

impl From<LicenseInnerArg> for v2::LicenseInner {
    fn from(a: LicenseInnerArg) -> Self {
        match a {
            LicenseInnerArg::KeyedHmac => v2::LicenseInner::KeyedHmac,
            LicenseInnerArg::PlainSha256 => v2::LicenseInner::PlainSha256,
        }
    }
}

/// Inputs shared by `csm sign` and `csm verify`.
#[derive(Debug, Clone, Args)]
pub struct SignInputs {
    /// File holding the key (its content without a trailing newline); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Timestamp: epoch ms (V2, Kit, License, usage) or yyyyMMddHHmmssSSS (V1); generated when absent.
    #[arg(long, value_name = "T")]
    pub timestamp: Option<String>,
    /// Nonce (V2, Kit, License, usage); 64 random hex characters when absent.
    #[arg(long, value_name = "N")]
    pub nonce: Option<String>,
    /// A query parameter for saas-v1, decoded (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// The body, exact bytes; `-` reads standard input.
    #[arg(long, visible_alias = "body", value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// apig: the access key id (AK).
    #[arg(long, value_name = "AK", env = "CSM_AK", hide_env_values = true)]
    pub ak: Option<String>,
    /// apig: file holding the secret key (SK); also CSM_SK.
    #[arg(long, value_name = "FILE")]
    pub sk_file: Option<PathBuf>,
    /// apig: the X-Sdk-Date value (YYYYMMDDTHHMMSSZ); now when absent.
    #[arg(long, value_name = "X_SDK_DATE")]
    pub date: Option<String>,
    /// apig: the HTTP method.
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// The request URL (apig: signed; saas-v1: the parameters in its query are signed too;
    /// sign --curl: where the request goes).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// apig: a header to sign, 'Name: value' (repeatable; X-Sdk-Date is always signed).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// license: the inner step (spec decision 5).
    #[arg(long, value_enum, default_value_t = LicenseInnerArg::KeyedHmac)]
    pub license_inner: LicenseInnerArg,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Output: every value that travels with the signature, ready to paste: the
query string (saas-v1, saas-v2, license) or one header line each (the other schemes). -q prints
the signature alone; --json every intermediate; --curl the whole signed request.

Examples:
  csm sign saas-v2 --key-file basic.key --body-file body.json
  csm sign -q saas-v2 --key-file basic.key --body-file body.json --timestamp T --nonce N
  csm sign saas-v2 --key-file basic.key --body-file body.json --timestamp T --nonce N --json
  csm sign kit --key-file kit.key --body-file t.json --curl \\
      --url https://isv.example.com/produceAPI/v2/tenantSync
  csm sign saas-v1 --key-file basic.key --param activity=newInstance --param orderId=CS1
  csm sign body-sign --key-file basic.key --body-file reply.json
  csm sign apig --ak AK --sk-file sk.txt --method POST --url https://mkt.myhuaweicloud.com/api/... \\
      --header 'Content-Type: application/json' --body-file req.json"
)]
pub struct SignArgs {
    /// The signature scheme.
    #[arg(value_enum)]
    pub scheme: Scheme,
    #[command(flatten)]
    pub inputs: SignInputs,
    /// Print a hex signature in upper case with -q and in --json's `signature` (the query and
    /// header lines always carry it so, as the marketplace sends it).
    #[arg(long)]
    pub uppercase: bool,
    /// Print the whole signed request as a curl command. The address is --url, else the
    /// profile's endpoint (saas-v1, saas-v2, license) or marketplace endpoint (usage).
    #[arg(long)]
    pub curl: bool,
}

/// Reads `--body-file` (exact bytes); None when not given.
pub fn read_body(path: Option<&Path>) -> Result<Option<Vec<u8>>> {
    let Some(path) = path else { return Ok(None) };
    crate::files::read_body_file(path).map(Some)
}

pub fn require_body(inputs: &SignInputs, scheme: Scheme) -> Result<Vec<u8>> {
    read_body(inputs.body_file.as_deref())?.ok_or_else(|| {
        CsmError::usage(format!(
            "--body-file: required for {} (the exact bytes that are signed)",
            scheme.name()
        ))
    })
}

/// A problem with the body as a usage error naming the flag and the file.
fn body_error(inputs: &SignInputs, e: impl std::fmt::Display) -> CsmError {
    let file = inputs
        .body_file
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    CsmError::usage(format!("--body-file {file}: {e}"))
}

/// Parses a JSON body, naming the flag and the position on error.
pub fn parse_json_body(body: &[u8], inputs: &SignInputs) -> Result<json::Json> {
    json::parse(body).map_err(|e| json_body_error(body, inputs, e))
}

/// The V2 body as signed (its canonical form), naming the flag on error.
fn signed_body(body: &[u8], inputs: &SignInputs) -> Result<String> {
    v2::signed_body(body).map_err(|e| json_body_error(body, inputs, e))
}

/// A body that is not JSON; one saved by Notepad starts with a byte order mark, which no
/// marketplace request has and which would be signed with the rest.
fn json_body_error(body: &[u8], inputs: &SignInputs, e: impl std::fmt::Display) -> CsmError {
    if body.starts_with("\u{feff}".as_bytes()) {
        return body_error(
            inputs,
            "starts with a byte order mark (U+FEFF, as Notepad saves UTF-8); the body is signed byte for byte, so save it as UTF-8 without one",
        );
    }
    body_error(inputs, e)
}

/// Decoded (name, value) pairs in order.
pub type Params = Vec<(String, String)>;

pub fn parse_params(raw: &[String]) -> Result<Params> {
    raw.iter()
        .map(|p| {
            p.split_once('=')
                .filter(|(n, _)| !n.is_empty())
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .ok_or_else(|| CsmError::usage(format!("--param {p:?}: must be NAME=VALUE")))
        })
        .collect()
}

/// The V1 query: the parameters already in `--url` (the merchant signs every parameter but
/// authToken, so those too), and those added: the `--param`s, with `--timestamp` (when given)
/// as their `timeStamp`.
pub fn v1_query(inputs: &SignInputs) -> Result<(Params, Params)> {
    let query = inputs.url.as_deref().and_then(|url| {
        let (_, q) = url.split_once('?')?;
        Some((url, q.split('#').next().unwrap_or_default()))
    });
    let in_url = match query {
        Some((url, q)) => v1::parse_query(q, false)
            .map_err(|e| CsmError::usage(format!("--url {url:?}: query: {e}")))?,
        None => Vec::new(),
    };
    let mut added = parse_params(&inputs.params)?;
    // Given once at most: `check_inputs` refuses a second.
    if let Some(t) = &inputs.timestamp {
        added.push(("timeStamp".into(), t.clone()));
    }
    Ok((in_url, added))
}

/// Every V1 parameter that is signed (see [`v1_query`]).
pub fn v1_params(inputs: &SignInputs) -> Result<Params> {
    let (mut all, added) = v1_query(inputs)?;
    all.extend(added);
    Ok(all)
}

pub fn parse_headers(raw: &[String]) -> Result<Vec<(String, String)>> {
    raw.iter()
        .map(|h| {
            h.split_once(':')
                .filter(|(n, _)| !n.trim().is_empty())
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| CsmError::usage(format!("--header {h:?}: must be 'Name: value'")))
        })
        .collect()
}

/// The key for a scheme: `--key-file` (or `--sk-file` for apig), then env, then profile.
pub fn scheme_key(scheme: Scheme, inputs: &SignInputs, profile: &Profile) -> Result<Secret> {
    let role = scheme.key_role();
    let flag = if role == KeyRole::Sk {
        inputs.sk_file.as_deref()
    } else {
        inputs.key_file.as_deref()
    };
    config::require_key(role, flag, profile)
}

fn v1_timestamp() -> String {
    clock::now().format("%Y%m%d%H%M%S%3f").to_string()
}

/// The apig request as given: (method, url, headers with X-Sdk-Date, signed header names, ak).
pub struct ApigRequest {
    pub ak: String,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub signed: Vec<String>,
}

pub fn apig_request(inputs: &SignInputs, profile: &Profile) -> Result<ApigRequest> {
    let ak = crate::config::require_ak(inputs.ak.as_deref(), profile, true)?;
    let url = inputs
        .url
        .clone()
        .ok_or_else(|| CsmError::usage("--url: required for apig"))?;
    // Without a scheme the host would be signed as the first part of the path.
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(CsmError::usage(format!(
            "--url {url:?}: must be an http:// or https:// URL (apig signs its path and query)"
        )));
    }
    let method = &inputs.method;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(CsmError::usage(format!(
            "--method {method:?}: must be an HTTP method such as POST or GET (letters only)"
        )));
    }
    let mut headers = parse_headers(&inputs.headers)?;
    let date = match &inputs.date {
        Some(d) => {
            apig::parse_sdk_date(d).map_err(|e| CsmError::usage(format!("--date: {e}")))?;
            d.clone()
        }
        None => apig::format_sdk_date(clock::now()),
    };
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(apig::DATE_HEADER));
    headers.push((apig::DATE_HEADER.into(), date));
    let signed = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    Ok(ApigRequest {
        ak,
        method: inputs.method.clone(),
        url,
        headers,
        signed,
    })
}

/// What `sign` and `verify` are given is signed as it is: a value with a space around it, an
/// empty nonce or a second authToken or timeStamp would give a signature that matches
/// nothing, without a word.
pub fn check_inputs(scheme: Scheme, inputs: &SignInputs) -> Result<()> {
    for (flag, value) in [
        ("--timestamp", &inputs.timestamp),
        ("--nonce", &inputs.nonce),
    ] {
        let Some(v) = value else { continue };
        if v.is_empty() {
            return Err(CsmError::usage(format!(
                "{flag}: empty (the value is signed as it is; leave the flag out to have one generated)"
            )));
        }
        // Neither a timestamp nor a nonce has room for a space, inside or around it.
        if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CsmError::usage(format!(
                "{flag} {v:?}: has a space or control character in it (the value is signed as it is; remove it)"
            )));
        }
    }
    check_timestamp(scheme, inputs.timestamp.as_deref())?;
    if scheme == Scheme::SaasV1 {
        let params = parse_params(&inputs.params)?;
        if params.iter().any(|(n, _)| n == "authToken") {
            return Err(CsmError::usage(
                "--param authToken: is the signature itself, never a signed parameter (sign computes it; verify takes it with --signature)",
            ));
        }
        // The address's query is signed too: a timeStamp there counts.
        let (in_url, _) = v1_query(inputs)?;
        let given = in_url
            .iter()
            .chain(&params)
            .filter(|(n, _)| n == "timeStamp")
            .count()
            + usize::from(inputs.timestamp.is_some());
        if given > 1 {
            return Err(CsmError::usage(
                "timeStamp: given more than once (in --url's query, --param timeStamp, --timestamp); give one",
            ));
        }
    }
    Ok(())
}

/// What only `sign` refuses in the V1 query: a received authToken in `--url` (the one it
/// computes would travel beside it), and a timeStamp not in the V1 form.
fn check_v1_signing(in_url: &Params, added: &Params) -> Result<()> {
    if in_url.iter().any(|(n, _)| n == "authToken") {
        return Err(CsmError::usage(
            "--url: its query holds an authToken already; sign computes it (drop it from the address, or use verify)",
        ));
    }
    match in_url.iter().chain(added).find(|(n, _)| n == "timeStamp") {
        Some((_, t)) if !v1::is_timestamp(t) => Err(CsmError::usage(format!(
            "timeStamp {t:?}: saas-v1 takes yyyyMMddHHmmssSSS (UTC), such as 20240317144237000"
        ))),
        _ => Ok(()),
    }
}

/// A given `--timestamp` must have the scheme's form (the V1 Kit key takes the body's field).
pub fn check_timestamp(scheme: Scheme, ts: Option<&str>) -> Result<()> {
    let Some(ts) = ts else { return Ok(()) };
    let ok = match scheme {
        Scheme::SaasV1 => v1::is_timestamp(ts),
        s if s.epoch_ms() => crate::protocol::v2::timestamp_ms(ts).is_ok(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(CsmError::usage(format!(
            "--timestamp {ts:?}: {} takes {}",
            scheme.name(),
            if scheme == Scheme::SaasV1 {
                "yyyyMMddHHmmssSSS (UTC), such as 20240317144237000"
            } else {
                "decimal epoch milliseconds"
            }
        )))
    }
}

/// Where the values that travel with a signature go on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// Query parameters appended to the address (saas-v1, saas-v2, license).
    Query,
    /// Header lines (every other scheme).
    Headers,
}

/// A computed signature and everything that goes out with it.
#[derive(Debug)]
pub struct Signed {
    /// The signature alone (`-q`): authToken, hex, Base64, or the whole header value.
    pub value: String,
    pub carrier: Carrier,
    /// Every value that must travel with the signature (the signature among them), in the
    /// order they are sent and written as on the wire (hex in upper case, as the marketplace
    /// sends it).
    pub travel: Vec<(String, String)>,
    /// The body as it goes out: the bytes that were signed (empty for a GET).
    pub body: Vec<u8>,
    /// Every intermediate (`--json`); null without `detail`.
    pub detail: Value,
}

impl Signed {
    /// The travelling values ready to paste: a query string, or one header line each.
    pub fn travel_text(&self) -> String {
        match self.carrier {
            Carrier::Query => v1::encode_query(&self.travel),
            Carrier::Headers => self
                .travel
                .iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The travelling values for `--json`: `query` (a string) or `headers` (an object).
    fn travel_json(&self) -> (&'static str, Value) {
        match self.carrier {
            Carrier::Query => ("query", Value::String(self.travel_text())),
            Carrier::Headers => (
                "headers",
                Value::Object(
                    self.travel
                        .iter()
                        .map(|(n, v)| (n.clone(), Value::String(v.clone())))
                        .collect(),
                ),
            ),
        }
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Computes the signature and what travels with it. Without `detail` the signers' own paths
/// run (no intermediates kept) and `detail` is null.
pub fn compute(
    scheme: Scheme,
    inputs: &SignInputs,
    key: &Secret,
    profile: &Profile,
    detail: bool,
) -> Result<Signed> {
    let k = key.expose();
    check_inputs(scheme, inputs)?;
    let ts_v2 = || {
        inputs
            .timestamp
            .clone()
            .unwrap_or_else(|| clock::now_ms().to_string())
    };
    let nonce = || inputs.nonce.clone().unwrap_or_else(clock::nonce_hex64);
    let signed = |value: String, carrier, travel, body, detail| Signed {
        value,
        carrier,
        travel,
        body,
        detail,
    };
    Ok(match scheme {
        Scheme::SaasV1 => {
            let (in_url, mut added) = v1_query(inputs)?;
            check_v1_signing(&in_url, &added)?;
            if !in_url.iter().chain(&added).any(|(n, _)| n == "timeStamp") {
                added.push(("timeStamp".into(), v1_timestamp()));
            }
            // The merchant signs every parameter but authToken, those in the address too.
            let all: Vec<(String, String)> = in_url.iter().chain(&added).cloned().collect();
            let t = v1::auth_token(k, &all)?;
            let mut travel = added;
            travel.push(("authToken".into(), t.auth_token.clone()));
            let v = if detail {
                let mut sent = in_url;
                sent.extend(travel.iter().cloned());
                json!({
                    "scheme": scheme.name(),
                    "string_to_sign": t.string_to_sign,
                    "hmac_key": doctor::masked_hmac_key(&t.timestamp),
                    "timestamp": t.timestamp,
                    "auth_token": t.auth_token,
                    "query_string": v1::encode_query(&sent),
                })
            } else {
                Value::Null
            };
            signed(t.auth_token, Carrier::Query, travel, Vec::new(), v)
        }
        Scheme::SaasV1Kit => {
            let body = require_body(inputs, scheme)?;
            let parsed = parse_json_body(&body, inputs)?;
            let t = v1::kit_auth_token(k, &parsed)?;
            let v = if detail {
                json!({
                    "scheme": scheme.name(),
                    "string_to_sign": t.string_to_sign,
                    "hmac_key": doctor::masked_hmac_key(&t.timestamp),
                    "auth_token": t.auth_token,
                })
            } else {
                Value::Null
            };
            let travel = pairs(&[("authToken", &t.auth_token)]);
            signed(t.auth_token, Carrier::Headers, travel, body, v)
        }
        Scheme::BodySign => {
            let body = require_body(inputs, scheme)?;
            let sig = v1::body_sign(k, &body);
            let header_value = v1::body_sign_header_value(&sig);
            let v = if detail {
                json!({
                    "scheme": scheme.name(),
                    "signature": sig,
                    "header_name": v1::BODY_SIGN_HEADER,
                    "header_value": header_value,
                })
            } else {
                Value::Null
            };
            let travel = pairs(&[(v1::BODY_SIGN_HEADER, &header_value)]);
            signed(header_value, Carrier::Headers, travel, body, v)
        }
        Scheme::SaasV2 | Scheme::License => {
            let body = require_body(inputs, scheme)?;
            let (ts, nonce) = (ts_v2(), nonce());
            let inner = match scheme {
                Scheme::License => inputs.license_inner.into(),
                _ => v2::LicenseInner::KeyedHmac,
            };
            let (sig, sent, v) = if detail {
                let parsed = parse_json_body(&body, inputs)?;
                let s = if scheme == Scheme::License {
                    v2::sign_license(k, &parsed, &ts, &nonce, inner)
                } else {
                    v2::sign_basic(k, &parsed, &ts, &nonce)
                }
                .map_err(|e| body_error(inputs, e))?;
                let v = json!({
                    "scheme": scheme.name(),
                    "canonical_body": s.canonical_body,
                    "body_text_is_canonical": s.canonical_body.as_bytes() == body.as_slice(),
                    "inner_hmac_hex": s.inner_hmac_hex,
                    "canonical_request": v2::masked(&s.canonical_request, k),
                    "signature": s.signature,
                    "signature_uppercase": s.signature.to_uppercase(),
                    "timestamp": ts,
                    "nonce": nonce,
                });
                (s.signature, s.canonical_body, v)
            } else {
                let sent = signed_body(&body, inputs)?;
                let sig = v2::basic_signature(k, sent.as_bytes(), &ts, &nonce, inner).hex();
                (sig, sent, Value::Null)
            };
            let travel = pairs(&[
                ("signature", &sig.to_uppercase()),
                ("timestamp", &ts),
                ("nonce", &nonce),
            ]);
            signed(sig, Carrier::Query, travel, sent.into_bytes(), v)
        }
        Scheme::Kit => {
            let body = require_body(inputs, scheme)?;
            let (ts, nonce) = (ts_v2(), nonce());
            let (sig, sent, v) = if detail {
                let parsed = parse_json_body(&body, inputs)?;
                let s = v2::sign_kit(k, &parsed, &ts, &nonce).map_err(|e| body_error(inputs, e))?;
                let v = json!({
                    "scheme": scheme.name(),
                    "canonical_body": s.canonical_body,
                    "body_text_is_canonical": s.canonical_body.as_bytes() == body.as_slice(),
                    "canonical_request": v2::masked(&s.canonical_request, k),
                    "signature": s.x_sign,
                    "signature_uppercase": s.x_sign.to_uppercase(),
                    "x_sign": s.x_sign,
                    "timestamp": ts,
                    "nonce": nonce,
                });
                (s.x_sign, s.canonical_body, v)
            } else {
                let sent = signed_body(&body, inputs)?;
                let sig = v2::kit_signature(k, sent.as_bytes(), &ts, &nonce).hex();
                (sig, sent, Value::Null)
            };
            let travel = pairs(&[
                ("x-sign", &sig.to_uppercase()),
                ("x-timestamp", &ts),
                ("x-nonce", &nonce),
            ]);
            signed(sig, Carrier::Headers, travel, sent.into_bytes(), v)
        }
        Scheme::Usage => {
            let body = require_body(inputs, scheme)?;
            parse_json_body(&body, inputs)?;
            let (ts, nonce) = (ts_v2(), nonce());
            // The exact bytes are signed (decision 6): csm never re-serialises a body it is given.
            let text =
                String::from_utf8(body).map_err(|_| CsmError::usage("--body-file: not UTF-8"))?;
            let (sig, v) = if detail {
                let s = usage_sig::sign_body_string(k, text.clone(), &ts, &nonce);
                let v = json!({
                    "scheme": scheme.name(),
                    "body_string": s.body_string,
                    "string_to_sign": s.string_to_sign,
                    "signature": s.signature,
                    "ts": ts,
                    "nonce": nonce,
                });
                (s.signature, v)
            } else {
                let sig = usage_sig::signature(k, text.as_bytes(), &ts, &nonce).base64();
                (sig, Value::Null)
            };
            let travel = pairs(&[("signature", &sig), ("ts", &ts), ("nonce", &nonce)]);
            signed(sig, Carrier::Headers, travel, text.into_bytes(), v)
        }
        Scheme::Apig => {
            let req = apig_request(inputs, profile)?;
            let body = read_body(inputs.body_file.as_deref())?.unwrap_or_default();
            let date = req
                .headers
                .iter()
                .find(|(n, _)| n == apig::DATE_HEADER)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let s = apig::sign(
                &req.ak,
                k,
                &req.method,
                &req.url,
                &req.headers,
                &req.signed,
                &body,
            )?;
            let v = if detail {
                json!({
                    "scheme": scheme.name(),
                    "canonical_request": s.canonical_request,
                    "string_to_sign": s.string_to_sign,
                    "signature": s.signature,
                    "signed_headers": s.signed_headers,
                    "authorization": s.authorization,
                    "x_sdk_date": date,
                })
            } else {
                Value::Null
            };
            let authorization = s.authorization;
            let travel = pairs(&[
                (apig::DATE_HEADER, &date),
                ("Authorization", &authorization),
            ]);
            signed(authorization, Carrier::Headers, travel, body, v)
        }
    })
}

/// The address `--curl` sends to: `--url`, else the profile's (the callbacks' production
/// address; for usage the marketplace endpoint and the usage path).
fn request_address(scheme: Scheme, inputs: &SignInputs, profile: &Profile) -> Result<String> {
    if scheme == Scheme::BodySign {
        return Err(CsmError::usage(
            "--curl: body-sign signs a reply, not a request; there is no request to print",
        ));
    }
    if let Some(url) = &inputs.url {
        return Ok(url.clone());
    }
    let from_profile = match scheme {
        Scheme::SaasV1 | Scheme::SaasV2 | Scheme::License => profile.endpoint.clone(),
        Scheme::Usage => profile
            .marketplace_endpoint
            .as_deref()
            .map(|b| format!("{}{USAGE_PATH}", b.trim_end_matches('/'))),
        _ => None,
    };
    let hint = match scheme {
        Scheme::Kit => {
            "pass the Kit interface's address, e.g. https://isv.example.com/produceAPI/v2/tenantSync"
                .to_string()
        }
        Scheme::SaasV1Kit => {
            "pass the Kit interface's address, e.g. https://isv.example.com/produceAPI/tenantSync"
                .to_string()
        }
        Scheme::Usage => format!(
            "pass the usage API's address (production: {PRODUCTION_MARKETPLACE}{USAGE_PATH}) or name a marketplace endpoint in a profile (`csm init`)"
        ),
        Scheme::Apig => "pass the API's address".to_string(),
        _ => "pass the production address, or name an endpoint in a profile (`csm init`)"
            .to_string(),
    };
    from_profile.ok_or_else(|| {
        CsmError::usage(format!(
            "--url: required for --curl with {}: {hint}",
            scheme.name()
        ))
    })
}

/// The whole signed request as a curl command. `address` already holds any saas-v1 query
/// parameters that were signed with the rest.
fn curl(scheme: Scheme, inputs: &SignInputs, address: &str, s: &Signed) -> Result<String> {
    let json = ("Content-Type".to_string(), "application/json".to_string());
    let (method, mut headers) = match scheme {
        Scheme::SaasV1 => ("GET".to_string(), Vec::new()),
        Scheme::Apig => {
            let mut given = parse_headers(&inputs.headers)?;
            given.retain(|(n, _)| !n.eq_ignore_ascii_case(apig::DATE_HEADER));
            (inputs.method.clone(), given)
        }
        _ => ("POST".to_string(), vec![json]),
    };
    let url = match s.carrier {
        Carrier::Query => {
            let sep = if address.contains('?') { '&' } else { '?' };
            format!("{address}{sep}{}", s.travel_text())
        }
        Carrier::Headers => {
            headers.extend(s.travel.iter().cloned());
            address.to_string()
        }
    };
    let body = std::str::from_utf8(&s.body).map_err(|_| {
        CsmError::usage("--curl: the body is not UTF-8 text; send it with curl --data-binary @FILE")
    })?;
    Ok(request::curl_command(&method, &url, &headers, body))
}

pub fn run(g: &GlobalArgs, a: SignArgs) -> Result<Exit> {
    let profile = config::active_profile(g.profile.as_deref())?;
    let mut inputs = a.inputs;
    if a.curl {
        inputs.url = Some(request_address(a.scheme, &inputs, &profile)?);
    }
    let key = scheme_key(a.scheme, &inputs, &profile)?;
    let mut s = compute(a.scheme, &inputs, &key, &profile, g.json)?;
    // Signed as given, as it should be; but the marketplace sends milliseconds, and `verify`
    // says the same of a received one.
    if let (true, Some(ts), false) = (a.scheme.epoch_ms(), &inputs.timestamp, g.quiet || g.json) {
        if crate::protocol::v2::timestamp_ms(ts).is_ok_and(|(_, seconds)| seconds) {
            eprintln!(
                "csm: note: --timestamp {ts} reads as epoch seconds; the marketplace sends milliseconds (13 digits), and a merchant that reads milliseconds refuses it as outside the window"
            );
        }
    }
    // Apig's hex is inside the Authorization value, which keeps its own case.
    if a.uppercase && !a.scheme.base64() && a.scheme != Scheme::Apig {
        s.value = s.value.to_uppercase();
        if let Some(fields) = s.detail.as_object_mut() {
            fields.insert("signature".into(), Value::String(s.value.clone()));
        }
    }
    let curl = match &inputs.url {
        Some(address) if a.curl => Some(curl(a.scheme, &inputs, address, &s)?),
        _ => None,
    };
    if g.json {
        let (name, travel) = s.travel_json();
        if let Some(fields) = s.detail.as_object_mut() {
            fields.insert(name.into(), travel);
            if let Some(c) = &curl {
                fields.insert("curl".into(), Value::String(c.clone()));
            }
        }
        crate::output::print_json(&s.detail);
    } else if let Some(c) = curl {
        crate::say!("{c}");
    } else if g.quiet {
        crate::say!("{}", s.value);
    } else {
        crate::say!("{}", s.travel_text());
    }
    Ok(Exit::Ok)
}
