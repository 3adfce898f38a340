//! `csm verify`: check a signature, and on a mismatch run the doctor.

use super::sign::{self, Scheme, SignInputs};
use crate::catalog::{KeyRole, Protocol};
use crate::cli::GlobalArgs;
use crate::clock;
use crate::config::{self, Profile};
use crate::error::{CsmError, Exit, Result};
use crate::protocol::capture::{self, DetectedScheme};
use crate::protocol::doctor::{self, Diagnosis, V2Recipe};
use crate::protocol::{apig, v1};
use crate::secret::Secret;
use base64::Engine;
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::PathBuf;

/// What to verify: a scheme (the same names as `csm sign`), or a raw HTTP capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyTarget {
    /// A raw HTTP request capture: the scheme is detected.
    Request,
    /// A raw HTTP response capture: its Body-Sign header.
    Response,
    Scheme(Scheme),
}

impl ValueEnum for VerifyTarget {
    fn value_variants<'a>() -> &'a [Self] {
        use Scheme::*;
        &[
            VerifyTarget::Request,
            VerifyTarget::Response,
            VerifyTarget::Scheme(SaasV1),
            VerifyTarget::Scheme(SaasV1Kit),
            VerifyTarget::Scheme(BodySign),
            VerifyTarget::Scheme(SaasV2),
            VerifyTarget::Scheme(Kit),
            VerifyTarget::Scheme(License),
            VerifyTarget::Scheme(Usage),
            VerifyTarget::Scheme(Apig),
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            VerifyTarget::Request => Some(
                clap::builder::PossibleValue::new("request")
                    .help("A raw HTTP request capture: the scheme is detected"),
            ),
            VerifyTarget::Response => Some(
                clap::builder::PossibleValue::new("response")
                    .help("A raw HTTP response capture: its Body-Sign header"),
            ),
            VerifyTarget::Scheme(s) => s.to_possible_value(),
        }
    }
}

/// `verify response --scheme`: the scheme of the call a reply answers. Replies to the
/// callbacks carry Body-Sign (V1 always, V2 when the endpoint adds one); replies to usage
/// pushes and API Gateway calls carry none, so those two are accepted only to be refused with
/// a message (and left out of the help).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyScheme(pub Scheme);

/// The schemes whose replies carry Body-Sign, as listed in messages.
const BODY_SIGNED: &str = "saas-v1, saas-v1-kit, body-sign, saas-v2, kit, license";

impl ReplyScheme {
    fn body_signed(self) -> bool {
        !matches!(self.0, Scheme::Usage | Scheme::Apig)
    }

    /// V1 replies must carry Body-Sign; on V2 it is checked when present (decision 4).
    fn requires_body_sign(self) -> bool {
        matches!(
            self.0,
            Scheme::SaasV1 | Scheme::SaasV1Kit | Scheme::BodySign
        )
    }
}

impl ValueEnum for ReplyScheme {
    fn value_variants<'a>() -> &'a [Self] {
        use Scheme::*;
        &[
            ReplyScheme(SaasV1),
            ReplyScheme(SaasV1Kit),
            ReplyScheme(BodySign),
            ReplyScheme(SaasV2),
            ReplyScheme(Kit),
            ReplyScheme(License),
            ReplyScheme(Usage),
            ReplyScheme(Apig),
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let v = self.0.to_possible_value()?;
        Some(v.hide(!self.body_signed()))
    }
}

#[derive(Debug, Args)]
// The inputs are shared with `csm sign`, which generates what is absent; verify checks what
// was sent, so its help asks for those values.
#[command(
    mut_arg("timestamp", |a| a.help(
        "The timestamp that was sent: epoch ms (V2, Kit, License, usage; required) or \
         yyyyMMddHHmmssSSS (V1, its timeStamp parameter)"
    )),
    mut_arg("nonce", |a| a.help("The nonce that was sent (V2, Kit, License, usage; required)")),
    mut_arg("date", |a| a.help("apig: the X-Sdk-Date that was sent (YYYYMMDDTHHMMSSZ; required)")),
    after_help = "Exit status: 0 when the signature matches, 1 when it does not (the doctor then
shows the signed string and names the usual mistake that reproduces the received value).

Examples:
  csm verify saas-v2 --key-file k --body-file body.json --timestamp T --nonce N --signature S
  csm verify request captured.http --key-file basic.key --kit-key-file kit.key
  csm verify response reply.http --scheme saas-v1 --key-file basic.key"
)]
pub struct VerifyArgs {
    /// A scheme (as for `csm sign`), or `request FILE` / `response FILE` for a raw HTTP capture.
    #[arg(value_enum)]
    pub target: VerifyTarget,
    /// The capture file for `request` and `response` (`-` reads standard input); for
    /// `request` also a `csm serve merchant --record` file.
    pub file: Option<PathBuf>,
    /// `request` with a `--record` file of several requests: which one (1 = the first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub index: Option<u64>,
    #[command(flatten)]
    pub inputs: SignInputs,
    /// The received signature (authToken, x-sign, Body-Sign header or value, Authorization
    /// header), as a log shows it: quotes, the header's name and URL encoding are undone.
    /// saas-v1 also takes it from the authToken in --url's query.
    #[arg(long, value_name = "S")]
    pub signature: Option<String>,
    /// `response`: the scheme of the call the reply answers; its key checks the Body-Sign,
    /// which V1 replies must carry and V2 replies may. Default: the profile's protocol (v2:
    /// saas-v2), else saas-v1.
    #[arg(long, value_enum)]
    pub scheme: Option<ReplyScheme>,
    /// The Kit key, to check Kit captures and to spot a Kit key used for basic calls.
    #[arg(long, value_name = "FILE")]
    pub kit_key_file: Option<PathBuf>,
    /// The License delivery key, for License 2.0 captures.
    #[arg(long, value_name = "FILE")]
    pub license_key_file: Option<PathBuf>,
    /// Replay window for V2 timestamps (spec decision 3): 60s, 5m; a bare number is seconds
    /// (1s to 24h).
    #[arg(long, value_name = "DURATION", default_value = "60s",
          value_parser = crate::duration::flag(crate::duration::Bare::Secs, std::time::Duration::from_secs(1), std::time::Duration::from_secs(86_400)))]
    pub window: std::time::Duration,
}

/// The received signature as it is checked. Copied from a log or a header dump it may carry
/// quotes, the header's name (`Body-Sign: ...`, `Authorization: ...`), or, for an authToken
/// taken from an access log, URL encoding; the second value says what was undone.
fn received_value(s: &str, scheme: Scheme) -> (String, Option<&'static str>) {
    let mut t = s.trim();
    for q in ['"', '\'', '`'] {
        if let Some(inner) = t.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            t = inner.trim();
        }
    }
    let header = match scheme {
        Scheme::BodySign => Some(v1::BODY_SIGN_HEADER),
        Scheme::Apig => Some("Authorization"),
        _ => None,
    };
    if let Some((name, value)) = header.and_then(|h| Some((h, t.split_once(':')?))) {
        if value.0.trim().eq_ignore_ascii_case(name) {
            t = value.1.trim();
        }
    }
    if let Some(decoded) = scheme.base64().then(|| v1::url_decoded_base64(t)).flatten() {
        return (decoded, Some("URL-decoded"));
    }
    (t.to_string(), None)
}

/// A received signature must look like one: 64 hex characters or the Base64 of 32 bytes
/// (either is taken, so that the doctor can name a mix-up of the two), or the header value.
fn check_signature_shape(t: &str, scheme: Scheme) -> Result<()> {
    // Body-Sign and Authorization may also be given as the whole header value.
    let is_header = match scheme {
        Scheme::BodySign => v1::parse_body_sign(t).is_ok(),
        Scheme::Apig => apig::parse_authorization(t).is_ok(),
        _ => false,
    };
    let hex = !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit());
    let base64 = base64::engine::general_purpose::STANDARD.decode(t).ok();
    if is_header || (hex && t.len() == 64) || base64.as_ref().is_some_and(|b| b.len() == 32) {
        return Ok(());
    }
    let seen = if hex {
        format!("{} hex characters", t.len())
    } else if let Some(b) = base64 {
        format!("Base64 of {} bytes", b.len())
    } else {
        "not hex or Base64".to_string()
    };
    let rule = match scheme {
        Scheme::BodySign => {
            "the Base64 of 32 bytes (44 characters ending in =), or the whole Body-Sign value"
        }
        Scheme::Apig => "64 hex characters, or the whole Authorization value",
        s if s.base64() => "the Base64 of 32 bytes (44 characters ending in =)",
        _ => "64 hex characters",
    };
    Err(CsmError::usage(format!(
        "--signature {t:?}: {seen} (a {} signature is {rule}; was it cut short?)",
        scheme.name()
    )))
}

/// The signature that was received: `--signature`, or for saas-v1 the authToken in the
/// query of `--url` (a callback address copied whole from a log).
fn received_signature(a: &VerifyArgs, scheme: Scheme) -> Result<String> {
    if let Some(s) = &a.signature {
        return Ok(s.clone());
    }
    if scheme == Scheme::SaasV1 {
        let (in_url, _) = sign::v1_query(&a.inputs)?;
        if let Some((_, token)) = in_url.into_iter().find(|(n, _)| n == "authToken") {
            return Ok(token);
        }
        return Err(CsmError::usage(
            "--signature: required (the authToken that was received), or a --url whose query holds it",
        ));
    }
    Err(CsmError::usage(
        "--signature: required (the signature that was received)",
    ))
}

/// The seller's other keys, labelled, so the doctor can spot a key mix-up.
fn other_keys(
    a: &VerifyArgs,
    profile: &Profile,
    except: KeyRole,
) -> Result<Vec<(&'static str, Secret)>> {
    let mut out = Vec::new();
    let roles = [
        (
            KeyRole::Basic,
            "the basic-interface key",
            a.inputs.key_file.as_deref(),
        ),
        (KeyRole::Kit, "the Kit key", a.kit_key_file.as_deref()),
        (
            KeyRole::License,
            "the License key",
            a.license_key_file.as_deref(),
        ),
    ];
    for (role, label, flag) in roles {
        // Standard input was read for the key of the capture (or will not be needed): the
        // extra keys only help spot a mix-up.
        if flag.is_some_and(crate::files::is_stdin) {
            continue;
        }
        if role != except {
            if let Some(k) = config::find_key(role, flag, profile)? {
                out.push((label, k));
            }
        }
    }
    Ok(out)
}

/// The key for `role`: its own flag, else `--key-file` (V1 has one key for all), with a note
/// that says so: a capture checked with the wrong key's stand-in would fail for no clear
/// reason, or pass where the marketplace's own key would not.
fn key_for(a: &VerifyArgs, role: KeyRole, profile: &Profile) -> Result<(Secret, Option<String>)> {
    let own = match role {
        KeyRole::Kit => a.kit_key_file.as_deref(),
        KeyRole::License => a.license_key_file.as_deref(),
        KeyRole::Sk => a.inputs.sk_file.as_deref(),
        KeyRole::Basic => a.inputs.key_file.as_deref(),
    };
    if let Some(k) = config::find_key(role, own, profile)? {
        return Ok((k, None));
    }
    // The SK is never the access key: no stand-in for it.
    if matches!(role, KeyRole::Basic | KeyRole::Sk) {
        return Ok((config::require_key(role, own, profile)?, None));
    }
    let note = format!(
        "no {} given: --key-file was used as this capture's key (right for V1, where one key signs all)",
        config::key_flag(role)
    );
    // A key given nowhere is a configuration error (exit 3), as for `csm sign`.
    let key = config::require_key(KeyRole::Basic, a.inputs.key_file.as_deref(), profile).map_err(
        |_| {
            CsmError::Config(format!(
                "{}: no key given for this capture (pass {} FILE or --key-file FILE, or set {})",
                config::key_flag(role),
                config::key_flag(role),
                config::key_env(role)
            ))
        },
    )?;
    Ok((key, Some(note)))
}

/// The capture's bytes and its name for messages.
fn read_capture(a: &VerifyArgs) -> Result<(Vec<u8>, String)> {
    let path = a.file.as_deref().ok_or_else(|| {
        CsmError::usage(
            "FILE: `csm verify request|response` needs the capture file (or - for stdin)",
        )
    })?;
    let raw = crate::files::read_limited(path, crate::files::BODY_LIMIT, "FILE")?;
    Ok((raw, path.display().to_string()))
}

/// A problem in the capture itself: a usage error that names the file.
fn in_capture(file: &str) -> impl Fn(crate::protocol::ProtocolError) -> CsmError + '_ {
    move |e| CsmError::usage(format!("{file}: {e}"))
}

pub fn run(g: &GlobalArgs, a: VerifyArgs) -> Result<Exit> {
    let profile = config::active_profile(g.profile.as_deref())?;
    let now_ms = clock::now_ms();
    let window_ms = a.window.as_millis() as i64;
    let diagnosis = match a.target {
        VerifyTarget::Request => verify_request(&a, &profile, now_ms, window_ms)?,
        VerifyTarget::Response => match verify_response(&a, &profile)? {
            Reply::Checked(v) => *v,
            Reply::Unsigned(scheme) => return report_unsigned(g, scheme),
        },
        VerifyTarget::Scheme(scheme) => {
            let (received, undone) = received_value(&received_signature(&a, scheme)?, scheme);
            check_signature_shape(&received, scheme)?;
            if let (Some(what), false) = (undone, g.quiet || g.json) {
                eprintln!("csm: note: --signature {what} before the check");
            }
            sign::check_inputs(scheme, &a.inputs)?;
            verify_scheme(&a, scheme, &received, &profile, now_ms, window_ms)?
        }
    };
    report(g, &diagnosis.0, &diagnosis.1)
}

/// The signed string on one line: control characters escaped (`\n`), quotes and backslashes
/// as they are, so that a JSON body reads as the bytes that were signed.
fn shown(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\'' | '\\' => c.to_string(),
            c => c.escape_debug().to_string(),
        })
        .collect()
}

/// (diagnosis, extra failures that are not about the signature bytes)
type Verdict = (Diagnosis, Vec<String>);

fn verify_scheme(
    a: &VerifyArgs,
    scheme: Scheme,
    received: &str,
    profile: &Profile,
    now_ms: i64,
    window_ms: i64,
) -> Result<Verdict> {
    let inputs = &a.inputs;
    let key = sign::scheme_key(scheme, inputs, profile)?;
    let k = key.expose();
    let others = other_keys(a, profile, scheme.key_role())?;
    let others: Vec<(&str, &str)> = others.iter().map(|(l, s)| (*l, s.expose())).collect();
    let need = |v: &Option<String>, flag: &str| {
        v.clone().ok_or_else(|| {
            CsmError::usage(format!(
                "{flag}: required to verify {} (the value that was sent)",
                scheme.name()
            ))
        })
    };
    let mut extra = Vec::new();
    let d = match scheme {
        Scheme::SaasV1 => {
            let params = sign::v1_params(inputs)?;
            doctor::diagnose_v1(k, &v1::encode_query(&params), received)?
        }
        Scheme::SaasV1Kit => {
            doctor::diagnose_v1_kit(k, &sign::require_body(inputs, scheme)?, received)?
        }
        Scheme::BodySign => {
            let body = sign::require_body(inputs, scheme)?;
            let sig = if received.contains("sign_type") {
                v1::parse_body_sign(received)?
            } else {
                received
            };
            doctor::diagnose_body_sign(k, &others, &body, sig)
        }
        Scheme::SaasV2 | Scheme::Kit | Scheme::License => {
            let body = sign::require_body(inputs, scheme)?;
            sign::parse_json_body(&body, inputs)?;
            let ts = need(&inputs.timestamp, "--timestamp")?;
            let nonce = need(&inputs.nonce, "--nonce")?;
            let recipe = match scheme {
                Scheme::Kit => V2Recipe::Kit,
                Scheme::License => V2Recipe::License,
                _ => V2Recipe::Basic,
            };
            doctor::diagnose_v2(
                recipe,
                &doctor::V2Input {
                    key: k,
                    other_keys: &others,
                    body: &body,
                    timestamp: &ts,
                    nonce: &nonce,
                    received,
                    now_ms,
                    window_ms,
                },
            )?
        }
        Scheme::Usage => {
            let body = sign::require_body(inputs, scheme)?;
            sign::parse_json_body(&body, inputs)?;
            doctor::diagnose_usage(&doctor::UsageInput {
                key: k,
                other_keys: &others,
                body: &body,
                ts: &need(&inputs.timestamp, "--timestamp")?,
                nonce: &need(&inputs.nonce, "--nonce")?,
                received,
            })?
        }
        Scheme::Apig => {
            // Absent, apig_request would take the clock's date (right for sign only).
            need(&inputs.date, "--date")?;
            let req = sign::apig_request(inputs, profile)?;
            let body = sign::read_body(inputs.body_file.as_deref())?.unwrap_or_default();
            let authorization = if received.trim_start().starts_with("SDK-HMAC-SHA256") {
                received.to_string()
            } else {
                apig::authorization_value(&req.ak, &req.signed.join(";"), received)
            };
            // The gateway finds the SK by Access: another AK is refused whatever the bytes.
            if let Ok(auth) = apig::parse_authorization(&authorization) {
                if auth.access != req.ak {
                    extra.push(format!(
                        "Access={} in the Authorization value, but the AK is {} (--ak): the gateway looks the SK up by Access and would refuse it",
                        auth.access, req.ak
                    ));
                }
            }
            doctor::diagnose_apig(&doctor::ApigInput {
                sk: k,
                method: &req.method,
                url: &req.url,
                headers: &req.headers,
                body: &body,
                authorization: &authorization,
                now_ms,
            })?
        }
    };
    Ok((d, extra))
}

fn verify_request(
    a: &VerifyArgs,
    profile: &Profile,
    now_ms: i64,
    window_ms: i64,
) -> Result<Verdict> {
    let (raw, file) = read_capture(a)?;
    let req = if crate::merchant::record::is_record(&raw) {
        let all = crate::merchant::record::read(&raw)
            .map_err(|e| CsmError::usage(format!("{file}: {e}")))?;
        crate::merchant::record::pick(all, a.index.map(|i| i as usize))
            .map_err(|e| CsmError::usage(format!("{file}: {e}")))?
    } else {
        if a.index.is_some() {
            return Err(CsmError::usage(format!(
                "--index: {file} is a raw capture of one request; --index picks one of a `serve merchant --record` file"
            )));
        }
        capture::parse_request(&raw).map_err(in_capture(&file))?
    };
    let detected = capture::detect(&req).map_err(in_capture(&file))?;
    let role = match detected {
        DetectedScheme::Kit | DetectedScheme::SaasV1Kit => KeyRole::Kit,
        DetectedScheme::License => KeyRole::License,
        DetectedScheme::Apig => KeyRole::Sk,
        _ => KeyRole::Basic,
    };
    let (key, key_note) = key_for(a, role, profile)?;
    let k = key.expose();
    let others = other_keys(a, profile, role)?;
    let others: Vec<(&str, &str)> = others
        .iter()
        .filter(|(_, s)| s.expose() != k)
        .map(|(l, s)| (*l, s.expose()))
        .collect();
    let query = v1::parse_query(req.query(), false).map_err(in_capture(&file))?;
    let q = |n: &str| {
        query
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut extra = Vec::new();
    let d = match detected {
        DetectedScheme::SaasV2 | DetectedScheme::License | DetectedScheme::Kit => {
            let (sig, ts, nonce) = if detected == DetectedScheme::Kit {
                let h = |n: &str| req.header(n).unwrap_or_default().to_string();
                (h("x-sign"), h("x-timestamp"), h("x-nonce"))
            } else {
                (q("signature"), q("timestamp"), q("nonce"))
            };
            let recipe = match detected {
                DetectedScheme::Kit => V2Recipe::Kit,
                DetectedScheme::License => V2Recipe::License,
                _ => V2Recipe::Basic,
            };
            let mut d = doctor::diagnose_v2(
                recipe,
                &doctor::V2Input {
                    key: k,
                    other_keys: &others,
                    body: &req.body,
                    timestamp: &ts,
                    nonce: &nonce,
                    received: &sig,
                    now_ms,
                    window_ms,
                },
            )
            .map_err(in_capture(&file))?;
            // A merchant refuses a stale call even when its signature is right: a problem,
            // said once (not also as a note).
            let (stale, notes): (Vec<String>, Vec<String>) =
                d.notes.into_iter().partition(|n| n.starts_with("stale"));
            d.notes = notes;
            extra.extend(stale);
            d
        }
        DetectedScheme::SaasV1 => doctor::diagnose_v1(k, req.query(), &q("authToken"))?,
        DetectedScheme::SaasV1Kit => {
            doctor::diagnose_v1_kit(k, &req.body, req.header("authToken").unwrap_or_default())?
        }
        DetectedScheme::Usage => {
            let h = |n: &str| req.header(n).unwrap_or_default().to_string();
            doctor::diagnose_usage(&doctor::UsageInput {
                key: k,
                other_keys: &others,
                body: &req.body,
                ts: &h("ts"),
                nonce: &h("nonce"),
                received: &h("signature"),
            })?
        }
        DetectedScheme::Apig => doctor::diagnose_apig(&doctor::ApigInput {
            sk: k,
            method: &req.method,
            url: &req.target,
            headers: &req.headers,
            body: &req.body,
            authorization: req.header("Authorization").unwrap_or_default(),
            now_ms,
        })?,
    };
    let mut d = d;
    d.notes.extend(key_note);
    Ok((d, extra))
}

/// What `verify response` found: a Body-Sign checked, or none on a reply that needs none.
enum Reply {
    Checked(Box<Verdict>),
    Unsigned(Scheme),
}

fn verify_response(a: &VerifyArgs, profile: &Profile) -> Result<Reply> {
    let scheme = match a.scheme {
        Some(s) if !s.body_signed() => {
            return Err(CsmError::usage(format!(
                "--scheme {}: replies to {} calls carry no Body-Sign; verify response takes {BODY_SIGNED}",
                s.0.name(),
                s.0.name()
            )))
        }
        Some(s) => s,
        None => match profile.protocol.as_deref().and_then(Protocol::parse) {
            Some(Protocol::V2) => ReplyScheme(Scheme::SaasV2),
            _ => ReplyScheme(Scheme::SaasV1),
        },
    };
    let (raw, file) = read_capture(a)?;
    let resp = capture::parse_response(&raw).map_err(in_capture(&file))?;
    let role = scheme.0.key_role();
    let (key, key_note) = key_for(a, role, profile)?;
    let mut extra = Vec::new();
    let header = resp
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(v1::BODY_SIGN_HEADER));
    let Some((name, value)) = header else {
        if !scheme.requires_body_sign() {
            return Ok(Reply::Unsigned(scheme.0));
        }
        let hint = if a.scheme.is_none() {
            " (a V2 reply needs none: pass --scheme saas-v2)"
        } else {
            ""
        };
        return Err(CsmError::CheckFailed(format!(
            "{file}: no Body-Sign header, which {} replies must carry (the debugging page reports 'http header->bodySign is empty'){hint}",
            scheme.0.name()
        )));
    };
    if name != v1::BODY_SIGN_HEADER {
        extra.push(format!(
            "header is named {name:?}; the marketplace expects exactly \"Body-Sign\" (set your HTTP library's title-case option)"
        ));
    }
    let sig =
        v1::parse_body_sign(value).map_err(|e| CsmError::CheckFailed(format!("{file}: {e}")))?;
    // The seller's other keys, so that a reply signed with one of them is named.
    let others = other_keys(a, profile, role)?;
    let others: Vec<(&str, &str)> = others
        .iter()
        .filter(|(_, s)| *s != key)
        .map(|(l, s)| (*l, s.expose()))
        .collect();
    let mut d = doctor::diagnose_body_sign(key.expose(), &others, &resp.body, sig);
    d.notes.extend(key_note);
    Ok(Reply::Checked(Box::new((d, extra))))
}

/// A V2 reply without Body-Sign: nothing to check, and none is required (decision 4).
fn report_unsigned(g: &GlobalArgs, scheme: Scheme) -> Result<Exit> {
    let note = "no Body-Sign header; none is required on V2 replies (spec decision 4)";
    if g.json {
        crate::output::print_json(&json!({
            "scheme": scheme.name(),
            "valid": true,
            "signature_matches": null,
            "notes": [note],
            "problems": [],
        }));
    } else if !g.quiet {
        crate::say!("ok: {} reply: {note}", scheme.name());
    }
    Ok(Exit::Ok)
}

fn report(g: &GlobalArgs, d: &Diagnosis, extra: &[String]) -> Result<Exit> {
    let ok = d.valid() && extra.is_empty();
    let cause = match &d.matched {
        Some(c) if !c.accepted => Some(c.label.clone()),
        _ => None,
    };
    if g.json {
        crate::output::print_json(&json!({
            "scheme": d.scheme,
            "valid": ok,
            "signature_matches": d.valid(),
            "matched_by": d.matched.as_ref().map(|c| c.label.clone()),
            "likely_cause": cause,
            "expected": d.expected.signature,
            "received": d.received,
            "signed_string": d.expected.signed_string,
            "tried": d.tried.iter().map(|(l, m)| json!({"label": l, "matched": m})).collect::<Vec<_>>(),
            "notes": d.notes,
            "problems": extra,
        }));
    } else if !g.quiet || !ok {
        let verdict = if ok {
            format!(
                "ok: {} signature matches ({})",
                d.scheme,
                d.matched.as_ref().map(|c| c.label.as_str()).unwrap_or("")
            )
        } else if d.valid() {
            format!(
                "FAIL: {} signature matches, but the receiver would still refuse it",
                d.scheme
            )
        } else {
            format!("FAIL: {} signature does not match", d.scheme)
        };
        crate::say!("{verdict}");
        for p in extra {
            crate::say!("  problem:       {p}");
        }
        if !d.valid() {
            crate::say!("  signed string: {}", shown(&d.expected.signed_string));
            crate::say!("  expected:      {}", d.expected.signature);
            crate::say!("  received:      {}", d.received);
            crate::say!("  tried:");
            for (label, m) in &d.tried {
                crate::say!("    {} {label}", if *m { "match   " } else { "no match" });
            }
            match &cause {
                Some(c) => crate::say!("  likely cause:  {c}"),
                None => crate::say!(
                    "  likely cause:  none of the usual mistakes reproduces it; check that both sides use the same key"
                ),
            }
        }
        for n in &d.notes {
            crate::say!("  note:          {n}");
        }
    }
    Ok(if ok { Exit::Ok } else { Exit::CheckFailed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::v2;

    #[test]
    fn signature_shape() {
        let hex = "0a83c0d9f2e1b4a5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3";
        assert!(check_signature_shape(hex, Scheme::SaasV2).is_ok());
        // Cut short by one character: named, not handed to the doctor.
        let e = check_signature_shape(&hex[1..], Scheme::SaasV2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("63 hex characters"), "{e}");
        let e = check_signature_shape("bm90IDMyIGJ5dGVz", Scheme::BodySign)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Base64 of 12 bytes") && e.contains("Body-Sign"),
            "{e}"
        );
        assert!(check_signature_shape(
            "uqKPTNm33Dc+9kwcxTRY/3+kbLaXYijolEiIZ7zUM9U=",
            Scheme::SaasV1
        )
        .is_ok());
        let e = check_signature_shape("not a sig!", Scheme::SaasV2)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--signature") && e.contains("not hex or Base64"),
            "{e}"
        );
    }

    #[test]
    fn received_values_lose_what_a_log_or_a_header_dump_adds() {
        let b64 = "uqKPTNm33Dc+9kwcxTRY/3+kbLaXYijolEiIZ7zUM9U=";
        assert_eq!(
            received_value(&format!(" \"{b64}\" "), Scheme::SaasV1),
            (b64.into(), None)
        );
        assert_eq!(
            received_value(
                "uqKPTNm33Dc%2B9kwcxTRY%2F3%2BkbLaXYijolEiIZ7zUM9U%3D",
                Scheme::SaasV1
            ),
            (b64.into(), Some("URL-decoded"))
        );
        let value = format!("sign_type=\"HMAC-SHA256\", signature=\"{b64}\"");
        assert_eq!(
            received_value(&format!("body-sign: {value}"), Scheme::BodySign),
            (value.clone(), None)
        );
        // Hex is never URL-decoded, and a header name belongs to its own scheme only.
        assert_eq!(
            received_value("Body-Sign: x", Scheme::SaasV2).0,
            "Body-Sign: x"
        );
    }

    #[test]
    fn a_signed_json_string_is_shown_as_its_bytes() {
        assert_eq!(shown("{\"a\":\"b\\c\"}\r\n"), "{\"a\":\"b\\c\"}\\r\\n");
    }

    #[test]
    fn masked_signed_string_never_holds_the_key() {
        let s = v2::sign_basic_bytes("secret-key-1", b"{}", "1", "n").unwrap();
        assert!(!v2::masked(&s.canonical_request, "secret-key-1").contains("secret-key-1"));
    }
}
