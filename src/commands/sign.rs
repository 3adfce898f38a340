//! `csm sign SCHEME`: compute a signature offline and print it (or every intermediate).

use crate::catalog::KeyRole;
use crate::cli::GlobalArgs;
use crate::clock;
use crate::config::{self, Profile};
use crate::error::{CsmError, Exit, Result};
use crate::protocol::{apig, doctor, json, usage_sig, v1, v2};
use crate::secret::Secret;
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
    #[arg(long, value_name = "AK", env = "CSM_AK")]
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
    /// apig: the request URL.
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
#[command(after_help = "Examples:
  csm sign saas-v2 --key-file basic.key --body-file body.json
  csm sign saas-v2 --key-file basic.key --body-file body.json --timestamp T --nonce N --json
  csm sign saas-v1 --key-file basic.key --param activity=newInstance --param orderId=CS1
  csm sign body-sign --key-file basic.key --body-file reply.json
  csm sign apig --ak AK --sk-file sk.txt --method POST --url https://mkt.myhuaweicloud.com/api/... \\
      --header 'Content-Type: application/json' --body-file req.json")]
pub struct SignArgs {
    /// The signature scheme.
    #[arg(value_enum)]
    pub scheme: Scheme,
    #[command(flatten)]
    pub inputs: SignInputs,
    /// Print hex signatures in upper case, as the marketplace sends them.
    #[arg(long)]
    pub uppercase: bool,
}

/// Reads `--body-file` (exact bytes); None when not given.
pub fn read_body(path: Option<&Path>) -> Result<Option<Vec<u8>>> {
    let Some(path) = path else { return Ok(None) };
    crate::files::read_limited(path, crate::files::BODY_LIMIT, "--body-file").map(Some)
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
    json::parse(body).map_err(|e| body_error(inputs, e))
}

/// The V2 body as signed (its canonical form), naming the flag on error.
fn signed_body(body: &[u8], inputs: &SignInputs) -> Result<String> {
    v2::signed_body(body).map_err(|e| body_error(inputs, e))
}

pub fn parse_params(raw: &[String]) -> Result<Vec<(String, String)>> {
    raw.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .ok_or_else(|| CsmError::usage(format!("--param {p:?}: must be NAME=VALUE")))
        })
        .collect()
}

/// The V1 `--param`s, with `--timestamp` (when given) as their `timeStamp`.
pub fn v1_params(inputs: &SignInputs) -> Result<Vec<(String, String)>> {
    let mut params = parse_params(&inputs.params)?;
    if let Some(t) = &inputs.timestamp {
        params.retain(|(n, _)| n != "timeStamp");
        params.push(("timeStamp".into(), t.clone()));
    }
    Ok(params)
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
    let ak = inputs
        .ak
        .clone()
        .or_else(|| profile.ak.clone())
        .ok_or_else(|| CsmError::usage("--ak: required for apig (or set CSM_AK)"))?;
    let url = inputs
        .url
        .clone()
        .ok_or_else(|| CsmError::usage("--url: required for apig"))?;
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

/// A given `--timestamp` must have the scheme's form (the V1 Kit key takes the body's field).
pub fn check_timestamp(scheme: Scheme, ts: Option<&str>) -> Result<()> {
    let Some(ts) = ts else { return Ok(()) };
    let ok = match scheme {
        Scheme::SaasV1 => !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()),
        Scheme::SaasV2 | Scheme::Kit | Scheme::License | Scheme::Usage => {
            crate::protocol::v2::timestamp_ms(ts).is_ok()
        }
        Scheme::SaasV1Kit | Scheme::BodySign | Scheme::Apig => true,
    };
    if ok {
        Ok(())
    } else {
        Err(CsmError::usage(format!(
            "--timestamp {ts:?}: {} takes {}",
            scheme.name(),
            if scheme == Scheme::SaasV1 {
                "digits, yyyyMMddHHmmssSSS (UTC)"
            } else {
                "decimal epoch milliseconds"
            }
        )))
    }
}

/// Computes the signature: (the value printed alone, every intermediate as JSON). Without
/// `detail` the signers' own paths run (no intermediates kept) and the JSON is null.
pub fn compute(
    scheme: Scheme,
    inputs: &SignInputs,
    key: &Secret,
    profile: &Profile,
    detail: bool,
) -> Result<(String, Value)> {
    let k = key.expose();
    check_timestamp(scheme, inputs.timestamp.as_deref())?;
    let ts_v2 = || {
        inputs
            .timestamp
            .clone()
            .unwrap_or_else(|| clock::now_ms().to_string())
    };
    let nonce = || inputs.nonce.clone().unwrap_or_else(clock::nonce_hex64);
    Ok(match scheme {
        Scheme::SaasV1 => {
            let mut params = v1_params(inputs)?;
            if !params.iter().any(|(n, _)| n == "timeStamp") {
                params.push(("timeStamp".into(), v1_timestamp()));
            }
            if !detail {
                return Ok((v1::auth_token(k, &params)?.auth_token, Value::Null));
            }
            let t = v1::auth_token(k, &params)?;
            let mut sent = params.clone();
            sent.push(("authToken".into(), t.auth_token.clone()));
            let v = json!({
                "scheme": scheme.name(),
                "string_to_sign": t.string_to_sign,
                "hmac_key": doctor::masked_hmac_key(&t.timestamp),
                "timestamp": t.timestamp,
                "auth_token": t.auth_token,
                "query_string": v1::encode_query(&sent),
            });
            (t.auth_token, v)
        }
        Scheme::SaasV1Kit => {
            let body = require_body(inputs, scheme)?;
            let parsed = parse_json_body(&body, inputs)?;
            let t = v1::kit_auth_token(k, &parsed)?;
            let v = json!({
                "scheme": scheme.name(),
                "string_to_sign": t.string_to_sign,
                "hmac_key": doctor::masked_hmac_key(&t.timestamp),
                "auth_token": t.auth_token,
            });
            (t.auth_token, v)
        }
        Scheme::BodySign => {
            let body = require_body(inputs, scheme)?;
            let sig = v1::body_sign(k, &body);
            let header_value = v1::body_sign_header_value(&sig);
            let v = json!({
                "scheme": scheme.name(),
                "signature": sig,
                "header_name": v1::BODY_SIGN_HEADER,
                "header_value": header_value,
            });
            (header_value, v)
        }
        Scheme::SaasV2 | Scheme::License => {
            let body = require_body(inputs, scheme)?;
            let (ts, nonce) = (ts_v2(), nonce());
            if !detail {
                let inner = match scheme {
                    Scheme::License => inputs.license_inner.into(),
                    _ => v2::LicenseInner::KeyedHmac,
                };
                let signed = signed_body(&body, inputs)?;
                let sig = v2::basic_signature(k, signed.as_bytes(), &ts, &nonce, inner);
                return Ok((sig.hex(), Value::Null));
            }
            let parsed = parse_json_body(&body, inputs)?;
            let s = if scheme == Scheme::License {
                v2::sign_license(k, &parsed, &ts, &nonce, inputs.license_inner.into())
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
                "query": format!("signature={}&timestamp={ts}&nonce={nonce}", s.signature.to_uppercase()),
            });
            (s.signature, v)
        }
        Scheme::Kit => {
            let body = require_body(inputs, scheme)?;
            let (ts, nonce) = (ts_v2(), nonce());
            if !detail {
                let signed = signed_body(&body, inputs)?;
                return Ok((
                    v2::kit_signature(k, signed.as_bytes(), &ts, &nonce).hex(),
                    Value::Null,
                ));
            }
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
                "headers": {"x-sign": s.x_sign.to_uppercase(), "x-timestamp": ts, "x-nonce": nonce},
            });
            (s.x_sign, v)
        }
        Scheme::Usage => {
            let body = require_body(inputs, scheme)?;
            parse_json_body(&body, inputs)?;
            let (ts, nonce) = (ts_v2(), nonce());
            // The exact bytes are signed (decision 6): csm never re-serialises a body it is given.
            let text =
                String::from_utf8(body).map_err(|_| CsmError::usage("--body-file: not UTF-8"))?;
            if !detail {
                let sig = usage_sig::signature(k, text.as_bytes(), &ts, &nonce);
                return Ok((sig.base64(), Value::Null));
            }
            let s = usage_sig::sign_body_string(k, text, &ts, &nonce);
            let v = json!({
                "scheme": scheme.name(),
                "body_string": s.body_string,
                "string_to_sign": s.string_to_sign,
                "signature": s.signature,
                "ts": ts,
                "nonce": nonce,
            });
            (s.signature, v)
        }
        Scheme::Apig => {
            let req = apig_request(inputs, profile)?;
            let body = read_body(inputs.body_file.as_deref())?.unwrap_or_default();
            if !detail {
                let value = apig::authorization(
                    &req.ak,
                    k,
                    &req.method,
                    &req.url,
                    &req.headers,
                    &req.signed,
                    &body,
                )?;
                return Ok((value, Value::Null));
            }
            let s = apig::sign(
                &req.ak,
                k,
                &req.method,
                &req.url,
                &req.headers,
                &req.signed,
                &body,
            )?;
            let date = req
                .headers
                .iter()
                .find(|(n, _)| n == apig::DATE_HEADER)
                .map(|(_, v)| v.clone());
            let v = json!({
                "scheme": scheme.name(),
                "canonical_request": s.canonical_request,
                "string_to_sign": s.string_to_sign,
                "signature": s.signature,
                "signed_headers": s.signed_headers,
                "authorization": s.authorization,
                "x_sdk_date": date,
            });
            (s.authorization, v)
        }
    })
}

pub fn run(g: &GlobalArgs, a: SignArgs) -> Result<Exit> {
    let profile = config::active_profile(g.profile.as_deref())?;
    let key = scheme_key(a.scheme, &a.inputs, &profile)?;
    let (mut value, mut all) = compute(a.scheme, &a.inputs, &key, &profile, g.json)?;
    let hex_scheme = matches!(a.scheme, Scheme::SaasV2 | Scheme::Kit | Scheme::License);
    if a.uppercase && hex_scheme {
        value = value.to_uppercase();
        if let Some(fields) = all.as_object_mut() {
            fields.insert("signature".into(), Value::String(value.clone()));
        }
    }
    if g.json {
        crate::output::print_json(&all);
    } else {
        crate::say!("{value}");
    }
    Ok(Exit::Ok)
}
