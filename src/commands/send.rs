//! `csm send`: one signed callback, the full request and reply, and the verdicts.

use super::callback_args::{
    check_proxy, confirm_remote, endpoint_from, read_ca, reply_budget, resolve_protocol, KeyFiles,
};
use crate::catalog::gen::{self, Ctx};
use crate::catalog::{self, Callback, FieldType, Protocol};
use crate::cli::GlobalArgs;
use crate::commands::sign::LicenseInnerArg;
use crate::config;
use crate::endpoint::client::Client;
use crate::endpoint::judge::{self, Status};
use crate::endpoint::request::{self, PrepOpts, Prepared, Tamper};
use crate::error::{CsmError, Exit, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  csm send newInstance --endpoint http://127.0.0.1:8088/produce --key-file basic.key
  csm send refreshInstance --scene RENEWAL --endpoint URL --key-file basic.key --set instanceId=ID
  csm send authSync --endpoint URL --kit-key-file kit.key --set userList.0.role=admin --dry-run
  csm send applicationSync --endpoint URL --kit-key-file kit.key --app-public-key app.pem.pub
  csm send releaseLicenseCode --endpoint URL --license-key-file license.key --curl")]
pub struct SendArgs {
    /// The activity or Kit interface, e.g. newInstance, refreshInstance, tenantSync,
    /// refreshLicenseCode, orderNotify.
    #[arg(value_parser = super::callback_args::Offered(super::callback_args::activity_names))]
    pub activity: String,
    /// Scene or status for activities that have one (RENEWAL, FREEZE, ...).
    #[arg(long)]
    pub scene: Option<String>,
    /// The production address, e.g. https://isv.example.com/produce.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Callback protocol version (default: the profile's, else v2).
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    #[command(flatten)]
    pub keys: KeyFiles,
    /// Override a field: `--set instanceId=abc`, nested `--set a.b=c`; JSON for
    /// integer, array and object fields. Repeatable.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// Leave a field out. Repeatable.
    #[arg(long, value_name = "FIELD")]
    pub unset: Vec<String>,
    /// Start from this JSON object instead of generated values; its bytes are sent (and
    /// signed) exactly as they are.
    #[arg(long = "body-file", visible_alias = "body", value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// Accept fields and values the catalog does not list.
    #[arg(long)]
    pub allow_unknown: bool,
    /// The resultCode the reply should carry.
    #[arg(long, default_value = "000000", value_name = "CODE", value_parser = result_code)]
    pub expect_code: String,
    /// Print the request without sending it.
    #[arg(long)]
    pub dry_run: bool,
    /// Print an equivalent curl command.
    #[arg(long)]
    pub curl: bool,
    /// Time budget, e.g. 5s or 1500ms.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = crate::duration::timeout)]
    pub timeout: Duration,
    /// Use the debugging page's 20 s budget.
    #[arg(long, conflicts_with = "timeout")]
    pub debug_page: bool,
    /// Append Kit paths to the full address instead of its origin.
    #[arg(long)]
    pub kit_path_full: bool,
    /// Send without testFlag (as a live call). Only for endpoints you own. Also needed to
    /// send a testFlag other than 1 from --set, --unset or --body-file.
    #[arg(long)]
    pub no_test_flag: bool,
    /// Users generated for authSync (at most 500 per call).
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=500))]
    pub users: u16,
    /// Require a valid Body-Sign on V2 replies too (V1 always requires it).
    #[arg(long)]
    pub require_body_sign: bool,
    /// Inner step of the License 2.0 signature (decision 5).
    #[arg(long, value_enum, default_value_t = LicenseInnerArg::KeyedHmac)]
    pub license_inner: LicenseInnerArg,
    /// Also trust this root certificate (PEM), e.g. a staging endpoint behind a private CA.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Do not ask before sending to a non-loopback address.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Checks an override path against the catalog; returns the field's type when known.
pub fn check_field(
    cb: &Callback,
    path: &str,
    allow_unknown: bool,
    flag: &str,
) -> Result<Option<FieldType>> {
    let top = path.split('.').next().unwrap_or("");
    match cb.field(top) {
        Some(f) => {
            let nested = matches!(f.ty, FieldType::Object | FieldType::Array);
            if path.contains('.') && !nested && !allow_unknown {
                return Err(CsmError::usage(format!(
                    "{flag} {path}: {top} holds a single value, not an object or a list; set it whole (or pass --allow-unknown)"
                )));
            }
            Ok(Some(f.ty))
        }
        None if allow_unknown => Ok(None),
        None => Err(CsmError::usage(format!(
            "{flag} {path}: {} has no field {top:?} (fields: {}); pass --allow-unknown to send it anyway",
            cb.name,
            cb.fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
        ))),
    }
}

pub fn parse_value(raw: &str, ty: Option<FieldType>, kit: bool, nested: bool) -> Value {
    if nested {
        // Inside a list or object: integers stay numbers (employeeType), JSON when it looks
        // like JSON, text otherwise ("true" for `enable` is text in the spec).
        if raw.starts_with(['{', '[', '"']) {
            if let Ok(v) = serde_json::from_str(raw) {
                return v;
            }
        }
        return raw
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(raw.into()));
    }
    match ty {
        Some(FieldType::Array | FieldType::Object) => {
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.into()))
        }
        Some(FieldType::Integer) if kit => raw
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(raw.into())),
        Some(_) => Value::String(raw.into()),
        None if raw.starts_with('{') || raw.starts_with('[') => {
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.into()))
        }
        None => Value::String(raw.into()),
    }
}

/// A `--body-file` file: its exact text and its fields, checked against the catalog.
pub fn read_body(
    cb: &Callback,
    path: &std::path::Path,
    allow_unknown: bool,
) -> Result<(String, Map<String, Value>)> {
    let bytes = crate::files::read_body_file(path)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        CsmError::usage(format!(
            "--body-file {}: not UTF-8 (JSON bodies must be UTF-8)",
            path.display()
        ))
    })?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => {
            for k in m.keys() {
                check_field(cb, k, allow_unknown, "--body-file")?;
            }
            Ok((text, m))
        }
        Ok(_) => Err(CsmError::usage(format!(
            "--body-file {}: must hold a JSON object",
            path.display()
        ))),
        Err(e) => Err(CsmError::usage(format!(
            "--body-file {}: not JSON ({e})",
            path.display()
        ))),
    }
}

/// `--expect-code`: a resultCode is six digits (`000000`, `000001`, ...).
fn result_code(s: &str) -> std::result::Result<String, String> {
    if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_string())
    } else {
        Err("a resultCode is six digits, e.g. 000000 or 000001".into())
    }
}

/// Only `--no-test-flag` sends a live call: a testFlag other than 1 (from `--set`, `--unset`
/// or `--body-file`) is refused without it, and a body from a file that has none is not
/// given one silently (it is sent as given).
fn require_test_flag(fields: &Map<String, Value>, a: &SendArgs) -> Result<()> {
    if a.no_test_flag {
        return Ok(());
    }
    match fields.get("testFlag") {
        Some(v) if gen::is_test_flag(v) => Ok(()),
        Some(v) => Err(CsmError::usage(format!(
            "testFlag {v}: that is a live call, provisioned and billed; pass --no-test-flag to send one (only to an endpoint you own)"
        ))),
        None if a.unset.iter().any(|u| u == "testFlag") => Err(CsmError::usage(
            "--unset testFlag: that is a live call, provisioned and billed; pass --no-test-flag as well (only to an endpoint you own)",
        )),
        None if a.body.is_some() => Err(CsmError::usage(format!(
            "--body-file {}: the body has no testFlag; add \"testFlag\":\"1\" (Kit: 1) or pass --no-test-flag to send it as a live call",
            a.body.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        ))),
        None => Ok(()),
    }
}

/// The value `--set PATH=RAW` gives `cb`: the field known (or `--allow-unknown`), one of its
/// allowed values, typed as the catalog says.
pub fn set_value(
    cb: &'static Callback,
    path: &str,
    raw: &str,
    allow_unknown: bool,
) -> Result<Value> {
    let ty = check_field(cb, path, allow_unknown, "--set")?;
    if let Some(f) = cb.field(path) {
        if !f.values.is_empty() && !f.values.contains(&raw) && !allow_unknown {
            return Err(CsmError::usage(format!(
                "--set {path}={raw}: {path} must be one of {} (pass --allow-unknown to send it anyway)",
                f.values.join(", ")
            )));
        }
    }
    Ok(parse_value(raw, ty, cb.family.is_kit(), path.contains('.')))
}

/// The generated body (or `--body-file`) with `--set` and `--unset` applied, all validated.
pub fn build_fields(
    cb: &'static Callback,
    scene: Option<&str>,
    ctx: &Ctx,
    a: &SendArgs,
) -> Result<Map<String, Value>> {
    let mut fields = match &a.body {
        Some(path) => read_body(cb, path, a.allow_unknown)?.1,
        None => gen::generate(cb, scene, ctx),
    };
    for s in &a.set {
        let (path, raw) = s
            .split_once('=')
            .ok_or_else(|| CsmError::usage(format!("--set {s:?}: must be FIELD=VALUE")))?;
        let value = set_value(cb, path, raw, a.allow_unknown)?;
        request::set_path(&mut fields, path, value)
            .map_err(|e| CsmError::usage(format!("--set {e}")))?;
    }
    for path in &a.unset {
        check_field(cb, path, a.allow_unknown, "--unset")?;
        if !request::unset_path(&mut fields, path) {
            return Err(CsmError::usage(format!(
                "--unset {path}: the body has no such field (nothing to remove)"
            )));
        }
    }
    Ok(fields)
}

fn print_request(p: &Prepared) {
    crate::say!("> {} {}", p.method, p.url);
    for (n, v) in &p.headers {
        crate::say!("> {n}: {v}");
    }
    crate::say!(">");
    if !p.body.is_empty() {
        crate::say!("{}", String::from_utf8_lossy(&p.body));
    }
}

fn request_json(p: &Prepared) -> Value {
    json!({
        "activity": p.callback.name,
        "family": p.callback.family,
        "scene": p.scene,
        "method": p.method,
        "url": p.url,
        "headers": p.headers,
        "body": String::from_utf8_lossy(&p.body),
    })
}

pub fn run(g: &GlobalArgs, a: SendArgs) -> Result<Exit> {
    let profile = config::active_profile(g.profile.as_deref())?;
    let protocol = resolve_protocol(a.protocol, &profile)?;
    let cb = catalog::find(&a.activity, protocol).ok_or_else(|| {
        CsmError::usage(format!(
            "ACTIVITY {:?}: not a {} callback (one of: {})",
            a.activity,
            protocol.name(),
            catalog::names(protocol).join(", ")
        ))
    })?;
    if let Some(s) = &a.scene {
        if cb.scene_field.is_none() {
            return Err(CsmError::usage(format!(
                "--scene {s}: {} has no scene",
                cb.name
            )));
        }
        if !cb.scenes.contains(&s.as_str()) && !a.allow_unknown {
            return Err(CsmError::usage(format!(
                "--scene {s}: {} takes one of {}",
                cb.name,
                cb.scenes.join(", ")
            )));
        }
    }
    let endpoint = endpoint_from(a.endpoint.as_deref(), &profile, "")?;
    // The one key this callback needs is named, whether other keys were given or none: a
    // key given nowhere is a configuration error (exit 3).
    let keys = a.keys.interface.read(&profile)?;
    let key = keys.for_family(cb.family).cloned().ok_or_else(|| {
        let role = cb.family.key_role();
        CsmError::Config(format!(
            "{}: {} needs the {} key (pass {} FILE, set {}, or name it in a profile with `csm init`)",
            config::key_flag(role),
            cb.name,
            cb.family.label(),
            config::key_flag(role),
            config::key_env(role)
        ))
    })?;
    let app_key = a.keys.app_key()?;
    // Everything time-dependent (values, timestamp, nonce, signature) is made here, so it
    // can be made again after a confirmation prompt.
    let make = || -> Result<Prepared> {
        let mut ctx = Ctx {
            test_flag: !a.no_test_flag,
            users: Some(a.users as usize),
            v1_key: keys.basic.clone(),
            app_key: app_key.clone(),
            ..Ctx::default()
        };
        gen::settle(&mut ctx);
        let opts = PrepOpts {
            endpoint: &endpoint,
            now_ms: crate::clock::now_ms(),
            nonce: crate::clock::nonce_hex64(),
            tamper: Tamper::None,
            kit_path_full: a.kit_path_full,
            license_inner: a.license_inner.into(),
        };
        Ok(match &a.body {
            // No overrides: the file's bytes go out exactly as they are, and are what is signed.
            Some(path) if a.set.is_empty() && a.unset.is_empty() => {
                let (text, fields) = read_body(cb, path, a.allow_unknown)?;
                require_test_flag(&fields, &a)?;
                request::prepare_raw(cb, a.scene.as_deref(), text, &key, &opts)?
            }
            // Overrides: the result is re-serialised in canonical form.
            _ => {
                let fields = build_fields(cb, a.scene.as_deref(), &ctx, &a)?;
                require_test_flag(&fields, &a)?;
                request::prepare(cb, a.scene.as_deref(), fields, &key, &opts)?
            }
        })
    };
    // Bad input is reported before any prompt.
    let ca = read_ca(a.ca_file.as_deref())?;
    let mut prepared = make()?;
    if !a.dry_run {
        check_proxy(&endpoint)?;
    }
    if !a.dry_run && !crate::net::proxy::is_loopback(&endpoint) && !a.yes {
        let flag = if a.no_test_flag {
            "WITHOUT testFlag"
        } else {
            "marked testFlag=1"
        };
        confirm_remote(
            "--endpoint",
            &endpoint,
            a.yes,
            g,
            &format!("{} ({flag})", cb.name),
        )?;
        // Signed again after the answer: a slow reply must not leave a stale timestamp.
        prepared = make()?;
    }
    if a.dry_run {
        if g.json {
            let mut v = json!({"request": request_json(&prepared), "sent": false});
            if a.curl {
                v["curl"] = Value::from(prepared.curl());
            }
            crate::output::print_json(&v);
        } else if a.curl {
            crate::say!("{}", prepared.curl());
        } else {
            print_request(&prepared);
        }
        return Ok(Exit::Ok);
    }
    let timeout = reply_budget(a.debug_page, a.timeout);
    let ex = Client::new(timeout).with_ca(ca).send(&prepared);
    let rules = judge::judge_one_call(
        &ex,
        key.expose(),
        timeout,
        &a.expect_code,
        a.require_body_sign,
    );
    let failed = rules.iter().any(|r| r.status == Status::Fail);
    if g.json {
        let reply = match &ex.outcome {
            Ok(r) => json!({
                "status": r.status,
                "headers": r.headers,
                "body": String::from_utf8_lossy(&r.body),
                "truncated": r.truncated,
                "latency_ms": ex.latency.as_millis() as u64,
            }),
            Err(f) => json!({"error": f.message, "kind": f.kind}),
        };
        let mut v = json!({
            "request": request_json(&prepared),
            "sent": true,
            "reply": reply,
            "checks": rules.iter().map(|r| json!({
                "family": r.family.id(), "status": r.status, "expected": r.expected,
                "actual": r.actual, "fix": r.fix})).collect::<Vec<_>>(),
            "result": if failed { "fail" } else { "pass" },
        });
        if a.curl {
            v["curl"] = Value::from(prepared.curl());
        }
        crate::output::print_json(&v);
    } else {
        if a.curl {
            crate::say!("{}\n", prepared.curl());
        }
        if !g.quiet {
            print_request(&prepared);
            crate::say!();
            match &ex.outcome {
                Ok(r) => {
                    crate::say!("< {} ({} ms)", r.status, ex.latency.as_millis());
                    for (n, v) in &r.headers {
                        crate::say!("< {n}: {v}");
                    }
                    crate::say!("<");
                    crate::say!("{}", String::from_utf8_lossy(&r.body));
                    if r.truncated {
                        crate::say!(
                            "(reply cut at {} bytes)",
                            crate::endpoint::client::MAX_REPLY
                        );
                    }
                }
                Err(f) => crate::say!(
                    "< no reply after {} ms: {}",
                    ex.latency.as_millis(),
                    f.message
                ),
            }
            crate::say!();
        }
        for r in &rules {
            let tag = match r.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            match r.status {
                Status::Fail => crate::say!(
                    "{tag}  {:<16} expected {}; got {}\n      fix: {}",
                    r.family.id(),
                    r.expected,
                    r.actual,
                    r.fix
                ),
                _ => crate::say!("{tag}  {:<16} {}", r.family.id(), r.actual),
            }
        }
    }
    if let Err(f) = &ex.outcome {
        // No reply at all (DNS, connect, TLS, timeout, reset): a network error, after the
        // verdict above has been printed.
        if f.kind.is_unreachable() {
            return Err(super::callback_args::unreachable(&endpoint, f));
        }
    }
    Ok(if failed { Exit::CheckFailed } else { Exit::Ok })
}
