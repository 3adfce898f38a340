//! `csm license keygen|gen|inspect|validate|activate|heartbeat`: glue between
//! `crate::license` (codes, key files, batch files), the clock, the terminal and the
//! marketplace open APIs.

use crate::catalog::KeyRole;
use crate::cli::GlobalArgs;
use crate::clock;
use crate::commands::callback_args;
use crate::config;
use crate::error::{CsmError, Exit, Result};
use crate::files;
use crate::license::issue::{self, Issued};
use crate::license::openapi::{self, Call};
use crate::license::{self, batch, code, keys, payload, Parsed, Payload, Policy};
use crate::net::{self, failure, Settings};
use crate::output;
use chrono::{DateTime, NaiveDate};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct LicenseArgs {
    #[command(subcommand)]
    pub command: LicenseCommand,
}

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Make an Ed25519 key pair: the private key to FILE (0600), the public key to FILE.pub,
    /// and a separate short-code secret to FILE.short (0600).
    Keygen(KeygenArgs),
    /// Issue signed licenses (codes, short codes or files), or marketplace-shaped PL codes.
    Gen(GenArgs),
    /// Decode a code or license file and show every field (the signature only if keys are given).
    Inspect(InspectArgs),
    /// Judge a code or license file: valid, valid-in-grace, expired, bad-signature, ...
    #[command(
        after_help = "Exit codes: 0 valid or valid-in-grace; 6 expired or not-yet-valid; \
                      1 bad-signature, unknown-key-id, revoked or wrong-product; 2 malformed \
                      (with the typo's position when known); 3 short-secret-needed (a short \
                      code given without --short-secret), or no --public-key or \
                      --short-secret given at all."
    )]
    Validate(ValidateArgs),
    /// Activate a marketplace license code (open API, AK/SK-signed).
    #[command(
        after_help = "Exit codes: 0 activated; 1 refused (the answer names why: illegal state, \
                      not claimed, no such code, a bad real_effect_time, ...); 3 refused for \
                      the request, not the code (APIGW.0301 AK/SK, APIGW.0303 date, another \
                      HTTP 4xx such as a wrong --endpoint) or credentials given nowhere; 4 no \
                      answer about the code (unreachable, HTTP 5xx or 429, 92020001, a page \
                      that is not the API's): try again later."
    )]
    Activate(ActivateArgs),
    /// Query a marketplace license code's status (heartbeat open API, AK/SK-signed); exit 0 only if ALIVE.
    #[command(
        after_help = "Exit codes: 0 ALIVE; 6 EXPIRED; 1 any other answer about the code \
                      (FROZEN, RELEASED, not activated, no such code); 3 refused for the \
                      request, not the code (APIGW.0301 AK/SK, APIGW.0303 date, another HTTP \
                      4xx such as a wrong --endpoint) or credentials given nowhere; 4 no answer \
                      about the code (unreachable, HTTP 5xx or 429, 92020001, a page that is \
                      not the API's): try again later. Lock features on 1 or 6 only."
    )]
    Heartbeat(OpenApiArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Private key file to write (0600); the public key goes to FILE.pub, the short-code
    /// secret to FILE.short (0600, never printed).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

// The required flags depend on the form, so clap's own usage line would show them all as
// optional; this one names them per form.
#[derive(Debug, Args)]
#[command(
    override_usage = "csm license gen --private-key <FILE> --product <P> --sku <S> --customer <C> --expires <DATE> [OPTIONS]
       csm license gen --short <--private-key <FILE>|--short-secret <FILE>> --product <P> --expires <DATE> [OPTIONS]
       csm license gen --marketplace [--count <N>] [--out <FILE> [--force]] [--format <FORMAT>]"
)]
pub struct GenArgs {
    /// Private key file from `csm license keygen`; required, except with --short-secret or
    /// --marketplace.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["marketplace", "short_secret"],
        conflicts_with = "marketplace"
    )]
    pub private_key: Option<PathBuf>,
    /// Product id the license is for; required, except with --marketplace.
    #[arg(
        long,
        value_name = "P",
        required_unless_present = "marketplace",
        conflicts_with = "marketplace"
    )]
    pub product: Option<String>,
    /// SKU (skuCode); required, except with --short (which does not carry it) or
    /// --marketplace.
    #[arg(
        long,
        value_name = "S",
        required_unless_present_any = ["marketplace", "short"],
        conflicts_with_all = ["marketplace", "short"]
    )]
    pub sku: Option<String>,
    /// Customer or instance id; required, except with --short (which does not carry it) or
    /// --marketplace.
    #[arg(
        long,
        value_name = "C",
        required_unless_present_any = ["marketplace", "short"],
        conflicts_with_all = ["marketplace", "short"]
    )]
    pub customer: Option<String>,
    /// Last valid day, YYYY-MM-DD (UTC), or `never`; required, except with --marketplace.
    #[arg(
        long,
        value_name = "DATE",
        required_unless_present = "marketplace",
        conflicts_with = "marketplace"
    )]
    pub expires: Option<String>,
    /// Issue day, YYYY-MM-DD (UTC); today by default.
    #[arg(long, value_name = "DATE", conflicts_with = "marketplace")]
    pub issued: Option<String>,
    /// Feature names, comma-separated; not with --short, which does not carry them.
    #[arg(long, value_name = "A,B", value_delimiter = ',', conflicts_with_all = ["marketplace", "short"])]
    pub features: Vec<String>,
    /// Seats; 0 means not limited.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        conflicts_with = "marketplace"
    )]
    pub seats: u32,
    /// Days after expiry during which the license is still accepted (valid-in-grace).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        conflicts_with = "marketplace"
    )]
    pub grace_days: u16,
    /// Short code of at most 64 characters, for a marketplace license field. Its tag is an
    /// HMAC with the short secret (FILE.short next to --private-key, or --short-secret), not a
    /// signature by the private key. Trade-off: it is checked with that same symmetric secret, which can also
    /// mint short codes, so ship the secret only where that is acceptable. It does not carry
    /// the SKU, customer or features (the product only as a 4-byte digest); 80-bit tag.
    #[arg(long, conflicts_with_all = ["file", "marketplace"])]
    pub short: bool,
    /// Short-code secret file (FILE.short from `csm license keygen`); with --short.
    #[arg(long, value_name = "FILE", requires = "short")]
    pub short_secret: Option<PathBuf>,
    /// A license file (JSON with a detached signature) instead of a code.
    #[arg(long, conflicts_with = "marketplace")]
    pub file: bool,
    /// Codes shaped like the marketplace's (`PL` + 30 symbols), for test callbacks; unsigned.
    #[arg(long)]
    pub marketplace: bool,
    /// How many licenses to make.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: u32,
    /// Write the batch to FILE (CSV or JSON lines) instead of printing one per line; an
    /// existing FILE only with --force, and never a key file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace an existing --out file (never a key file given here or beside it).
    #[arg(long, requires = "out")]
    pub force: bool,
    /// Batch file format (with --out); by default from the --out extension (.csv, else JSON lines).
    #[arg(long, value_enum, requires = "out")]
    pub format: Option<batch::Format>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A code, a license file, or `-` for standard input.
    #[arg(value_name = "CODE|FILE")]
    pub input: String,
    /// Public key file(s): also check the signature.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub public_key: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// A code, a license file, or `-` for standard input.
    #[arg(value_name = "CODE|FILE")]
    pub input: String,
    /// Public key file(s) to trust; keep rotated-out keys here so their licenses stay valid.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub public_key: Vec<PathBuf>,
    /// Short-code secret file(s) (FILE.short): needed only for short codes. The secret can
    /// also mint short codes, so ship it only where that is acceptable.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub short_secret: Vec<PathBuf>,
    /// Judge as of this day (YYYY-MM-DD or RFC 3339, UTC) instead of today.
    #[arg(long, value_name = "DATE")]
    pub at: Option<String>,
    /// Revocation list: one license id (16 hex digits) or code per line, `#` comments.
    #[arg(long, value_name = "FILE")]
    pub revoked: Option<PathBuf>,
    /// Refuse licenses issued for another product.
    #[arg(long, value_name = "P")]
    pub product: Option<String>,
}

#[derive(Debug, Args)]
pub struct OpenApiArgs {
    /// The marketplace license code (PL…, at most 64 characters).
    #[arg(value_name = "CODE")]
    pub code: String,
    /// Base URL of the marketplace open APIs. Else the profile's; else the production
    /// marketplace https://mkt.myhuaweicloud.com, which needs --yes or a yes at the terminal.
    #[arg(
        long,
        value_name = "URL",
        env = "CSM_MARKETPLACE_ENDPOINT",
        hide_env_values = true
    )]
    pub endpoint: Option<String>,
    /// Call the production marketplace without asking when no --endpoint or profile names
    /// the destination.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// API Gateway access key id (AK).
    #[arg(long, env = "CSM_AK", hide_env_values = true, value_name = "AK")]
    pub ak: Option<String>,
    /// File holding the API Gateway secret key (SK); or set CSM_SK.
    #[arg(long, value_name = "FILE")]
    pub sk_file: Option<PathBuf>,
    /// How long to wait for the answer: 5s, 1500ms; a bare number is seconds (1ms to 10m).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::duration::timeout)]
    pub timeout: Duration,
    /// Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ActivateArgs {
    #[command(flatten)]
    pub api: OpenApiArgs,
    /// When the software actually started, UTC yyyyMMddHHmmss (real_effect_time).
    #[arg(long, value_name = "TIME")]
    pub real_effect_time: Option<String>,
}

pub fn run(g: &GlobalArgs, a: LicenseArgs) -> Result<Exit> {
    match a.command {
        LicenseCommand::Keygen(k) => keygen(g, k),
        LicenseCommand::Gen(k) => gen(g, k),
        LicenseCommand::Inspect(k) => inspect(g, k),
        LicenseCommand::Validate(k) => validate(g, k),
        LicenseCommand::Activate(k) => open_api(
            g,
            &k.api,
            Call::Activate {
                real_effect_time: k.real_effect_time,
            },
        ),
        LicenseCommand::Heartbeat(k) => open_api(g, &k, Call::Heartbeat),
    }
}

// ---------------------------------------------------------------- inputs

/// How messages name the positional input of inspect and validate.
const INPUT: &str = "CODE|FILE";
const INPUT_LIMIT: u64 = code::MAX_INPUT as u64;

/// The text to judge and a label for messages. An argument naming an existing file is read.
fn read_input(arg: &str) -> Result<(String, String)> {
    if arg == "-" {
        return Ok((
            files::read_text(Path::new("-"), INPUT_LIMIT, INPUT)?,
            "<stdin>".into(),
        ));
    }
    // Anything longer than a path can be is a code (and is never echoed back whole).
    if arg.len() > 1024 {
        return Ok((arg.to_string(), "code".into()));
    }
    let path = Path::new(arg);
    if path.is_dir() {
        return Err(CsmError::usage(format!(
            "{arg}: a directory, not a license code or file"
        )));
    }
    if path.is_file() {
        return Ok((files::read_text(path, INPUT_LIMIT, INPUT)?, arg.to_string()));
    }
    if arg.contains(['/', '\\']) || arg.ends_with(".json") || arg.ends_with(".lic") {
        return Err(CsmError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such license file"),
        ));
    }
    Ok((arg.to_string(), "code".into()))
}

fn parse_day(flag: &str, v: &str) -> Result<NaiveDate> {
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&chrono::Utc).date_naive());
    }
    Err(CsmError::usage(format!(
        "{flag} {v:?}: must be a date YYYY-MM-DD or RFC 3339 time (UTC)"
    )))
}

fn day_number(flag: &str, v: &str) -> Result<u16> {
    // Only --expires takes `never`; its messages name it, so that it is found.
    let never = flag == "--expires";
    if never && v.eq_ignore_ascii_case("never") {
        return Ok(payload::NEVER);
    }
    let d = parse_day(flag, v).map_err(|e| {
        if never {
            CsmError::usage(format!(
                "{flag} {v:?}: must be a date YYYY-MM-DD or RFC 3339 time (UTC), or never"
            ))
        } else {
            e
        }
    })?;
    payload::day_number(d).ok_or_else(|| {
        CsmError::usage(format!(
            "{flag} {v}: outside 1970-01-01..2149-06-05, the range a license can carry{}",
            if never { "; never for no end" } else { "" }
        ))
    })
}

// ---------------------------------------------------------------- keygen

fn keygen(g: &GlobalArgs, a: KeygenArgs) -> Result<Exit> {
    // A directory that is missing or read-only is named by its flag, before a key exists.
    files::check_writable(&a.out, "--out")?;
    let (key, short) = keys::generate()?;
    keys::write_key_files(&a.out, &key, &short, a.force)?;
    let (pub_path, short_path) = (keys::public_path(&a.out), keys::short_path(&a.out));
    let public_line = key.public().to_line();
    if g.json {
        output::print_json(&json!({
            "key_id": key.id.to_string(),
            "public_key": public_line,
            "private_key_file": a.out.display().to_string(),
            "public_key_file": pub_path.display().to_string(),
            "short_secret_file": short_path.display().to_string(),
        }));
    } else {
        crate::say!("{public_line}");
        if !g.quiet {
            eprintln!(
                "key id {}: private key in {} (0600), public key in {}, short-code secret in {} (0600)",
                key.id,
                a.out.display(),
                pub_path.display(),
                short_path.display()
            );
        }
    }
    Ok(Exit::Ok)
}

// ---------------------------------------------------------------- gen

fn gen(g: &GlobalArgs, a: GenArgs) -> Result<Exit> {
    if a.count == 0 || a.count > 1_000_000 {
        return Err(CsmError::usage(format!(
            "--count {}: must be 1 to 1000000",
            a.count
        )));
    }
    if let Some(out) = &a.out {
        check_gen_out(out, &a)?;
    }
    let mut records: Vec<Issued> = Vec::with_capacity(a.count as usize);
    if a.marketplace {
        let mut seen = HashSet::new();
        while records.len() < a.count as usize {
            let mut r = [0u8; 19];
            getrandom::getrandom(&mut r)
                .map_err(|e| CsmError::Config(format!("no randomness: {e}")))?;
            let c = code::marketplace_code(&r);
            if seen.insert(c.clone()) {
                records.push(Issued {
                    fields: json!({ "code": c }),
                    text: c,
                });
            }
        }
    } else {
        // --short signs with the short secret only; the private key is just where to find it.
        let short = if a.short {
            Some(match (&a.short_secret, &a.private_key) {
                (Some(p), _) => keys::read_short_secret(p, "--short-secret")?,
                (None, Some(k)) => keys::read_short_secret_beside(k)?,
                (None, None) => unreachable!("required by clap"),
            })
        } else {
            None
        };
        let key = a
            .private_key
            .as_deref()
            .map(keys::read_private_key)
            .transpose()?;
        let form = match (&key, &short) {
            (Some(k), Some(s)) if k.id != s.id => {
                return Err(CsmError::usage(format!(
                    "--short: the short secret is for key id {}, the private key has id {}",
                    s.id, k.id
                )))
            }
            (_, Some(s)) => issue::Form::Short(s),
            (Some(k), None) if a.file => issue::Form::File(k),
            (Some(k), None) => issue::Form::Code(k),
            (None, None) => unreachable!("required by clap"),
        };
        let issued = match &a.issued {
            Some(v) => day_number("--issued", v)?,
            None => payload::day_number(clock::now().date_naive())
                .ok_or_else(|| CsmError::usage("the clock is outside 1970..2149"))?,
        };
        let expires = day_number("--expires", a.expires.as_deref().unwrap_or_default())?;
        let template = Payload {
            key_id: license::KeyId([0; 4]),
            serial: 0,
            product: a.product.clone().unwrap_or_default(),
            sku: a.sku.clone().unwrap_or_default(),
            customer: a.customer.clone().unwrap_or_default(),
            issued,
            expires,
            grace_days: a.grace_days,
            features: a.features.iter().map(|f| f.trim().to_string()).collect(),
            seats: a.seats,
        };
        records = issue::issue(form, &template, a.count as usize, rand::random::<u32>)
            .map_err(CsmError::usage)?;
    }
    match &a.out {
        None => {
            let mut out = std::io::stdout().lock();
            for i in &records {
                let r = match &i.fields["license"] {
                    _ if g.json && !a.file => writeln!(out, "{}", i.fields),
                    // A single license file on the terminal is easier to read indented.
                    Value::Object(_) if a.count == 1 => {
                        let pretty = serde_json::to_string_pretty(&i.fields["license"]);
                        writeln!(out, "{}", pretty.expect("json"))
                    }
                    _ => writeln!(out, "{}", i.text),
                };
                if r.is_err() {
                    break; // a closed pipe is not an error
                }
            }
        }
        Some(path) => {
            let holds = if a.marketplace {
                batch::Holds::Marketplace
            } else if a.short {
                batch::Holds::ShortCodes
            } else {
                batch::Holds::Licenses
            };
            let format = a.format.unwrap_or_else(|| batch::Format::of_path(path));
            let text = batch::render(format, holds, &records).map_err(CsmError::Storage)?;
            // Checked again: the file may have appeared while the batch was made.
            check_gen_out(path, &a)?;
            files::write_atomic(path, text.as_bytes(), false)?;
            if g.json {
                output::print_json(
                    &json!({"file": path.display().to_string(), "count": records.len()}),
                );
            } else if !g.quiet {
                crate::say!("wrote {} license(s) to {}", records.len(), path.display());
            }
        }
    }
    Ok(Exit::Ok)
}

/// Where `gen --out` may write: never over a key file it was given (or one keygen wrote
/// beside it), even with --force, as the batch would replace the key for good; over another
/// existing file only with --force; into a directory that takes a file.
fn check_gen_out(out: &Path, a: &GenArgs) -> Result<()> {
    let mut guarded: Vec<(PathBuf, &str)> = Vec::new();
    // Each key file by the path given and by where it leads: keygen wrote the siblings
    // beside the file itself, not beside a link to it.
    let both = |p: &PathBuf| {
        let mut v = vec![p.clone(), files::resolved(p)];
        v.dedup();
        v
    };
    for k in a.private_key.iter().flat_map(both) {
        guarded.push((keys::public_path(&k), "the public key beside --private-key"));
        guarded.push((
            keys::short_path(&k),
            "the short secret beside --private-key",
        ));
        guarded.push((k, "the --private-key file"));
    }
    for s in a.short_secret.iter().flat_map(both) {
        // FILE.short: keygen wrote FILE and FILE.pub with it.
        if let Some(stem) = s.to_str().and_then(|t| t.strip_suffix(".short")) {
            let k = PathBuf::from(stem);
            guarded.push((
                keys::public_path(&k),
                "the public key beside --short-secret",
            ));
            guarded.push((k, "the private key beside --short-secret"));
        }
        guarded.push((s, "the --short-secret file"));
    }
    let target = files::resolved(out);
    for (p, what) in &guarded {
        if files::resolved(p) == target || files::same_file(out, p) {
            return Err(CsmError::usage(format!(
                "--out {}: is {what} ({}); a batch there would destroy the key, so it is refused even with --force",
                out.display(),
                p.display()
            )));
        }
    }
    // A directory is left to check_writable, which says so.
    if !a.force && out.exists() && !out.is_dir() {
        return Err(CsmError::usage(format!(
            "--out {}: the file exists; pass --force to replace it",
            out.display()
        )));
    }
    files::check_writable(out, "--out")
}

// ---------------------------------------------------------------- inspect, validate

/// A file read as a license file (JSON): its errors already say what it is not.
fn looks_like_license_file(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

fn inspect(g: &GlobalArgs, a: InspectArgs) -> Result<Exit> {
    let (text, label) = read_input(&a.input)?;
    let parsed = license::parse(&text).map_err(|t| {
        let not = if label != "code" && !looks_like_license_file(&text) {
            "not a license: "
        } else {
            ""
        };
        CsmError::usage(format!("{label}: malformed: {not}{}", t.reason))
    })?;
    let ring = keys::load_keyring(&a.public_key, &[])?;
    warn_private(&ring);
    let (kind, mut fields) = match &parsed {
        Parsed::Marketplace(c) => (
            "marketplace",
            json!({"code": c, "length": c.len(), "note": "marketplace-shaped code: no offline signature; check it with `csm license heartbeat`"}),
        ),
        Parsed::Full {
            payload,
            bytes,
            from_file,
            ..
        } => (
            if *from_file { "file" } else { "code" },
            code::fields_json(payload, bytes),
        ),
        Parsed::Short { payload, bytes, .. } => ("short", code::short_fields_json(payload, bytes)),
    };
    let signature = if a.public_key.is_empty() || matches!(parsed, Parsed::Marketplace(_)) {
        "not checked".to_string()
    } else {
        let today = clock::now().date_naive();
        let v = license::judge(&parsed, &ring, &Policy::default(), today);
        match v.kind {
            license::Kind::BadSignature | license::Kind::UnknownKeyId => {
                format!("{}: {}", v.kind.name(), v.reason)
            }
            license::Kind::ShortSecretNeeded => {
                "not checked (a short code is checked with `validate --short-secret`)".to_string()
            }
            _ => "good".to_string(),
        }
    };
    fields["form"] = Value::String(kind.into());
    fields["signature"] = Value::String(signature);
    if g.json {
        output::print_json(&fields);
    } else {
        let mut t = output::table();
        if let Value::Object(m) = &fields {
            let mut keys: Vec<&String> = m.keys().collect();
            let order = &code::READING_ORDER;
            keys.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(order.len()));
            for k in keys {
                let v = &m[k];
                let shown = match v {
                    Value::String(s) => s.clone(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_string).unwrap_or(x.to_string()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => other.to_string(),
                };
                t.add_row(vec![k.clone(), shown]);
            }
        }
        crate::say!("{t}");
    }
    Ok(Exit::Ok)
}

fn load_revoked(path: &Path) -> Result<HashSet<String>> {
    let text = files::read_text(path, INPUT_LIMIT, "--revoked")?;
    license::verdict::revoked_ids(&text).map_err(|line| {
        CsmError::usage(format!(
            "--revoked {} line {line}: neither a license id (16 hex digits) nor a csm code",
            path.display()
        ))
    })
}

fn validate(g: &GlobalArgs, a: ValidateArgs) -> Result<Exit> {
    let at = match &a.at {
        Some(v) => parse_day("--at", v)?,
        None => clock::now().date_naive(),
    };
    let ring = keys::load_keyring(&a.public_key, &a.short_secret)?;
    warn_private(&ring);
    if ring.public.is_empty() && ring.short.is_empty() {
        // A key given nowhere is configuration (3), as for every command that needs one.
        return Err(CsmError::Config(
            "--public-key: no key given (pass the FILE.pub written by `csm license keygen`, or --short-secret FILE.short for short codes)".into(),
        ));
    }
    let policy = Policy {
        revoked: match &a.revoked {
            Some(p) => load_revoked(p)?,
            None => HashSet::new(),
        },
        product: a.product.as_deref(),
    };
    let (text, label) = read_input(&a.input)?;
    let v = license::validate(&text, &ring, &policy, at);
    if g.json {
        output::print_json(&json!({
            "input": label,
            "verdict": v.kind.name(),
            "reason": v.reason,
            "position": v.position,
            "exit_code": v.kind.exit().code(),
            "at": at.to_string(),
            "license": v.license,
        }));
    } else {
        let mut line = format!("{}: {}", v.kind.name(), v.reason);
        if v.kind == license::Kind::Malformed && label != "code" && !looks_like_license_file(&text)
        {
            line = format!("malformed: not a license: {}", v.reason);
        }
        if v.kind.is_valid() {
            crate::say!("{line}");
        } else {
            // Refusals go to stderr as one line; stdout stays for results.
            eprintln!("csm: {label}: {line}");
        }
    }
    Ok(v.kind.exit())
}

// ---------------------------------------------------------------- activate, heartbeat

/// Glue only: inputs and keys in, the request from `license::openapi` out through reqwest,
/// the typed answer printed.
fn open_api(g: &GlobalArgs, a: &OpenApiArgs, call: Call) -> Result<Exit> {
    openapi::check_inputs(&a.code, &call).map_err(CsmError::usage)?;
    let profile = config::active_profile(g.profile.as_deref())?;
    let ak = config::require_ak(a.ak.as_deref(), &profile, true)?;
    let sk = config::require_key(KeyRole::Sk, a.sk_file.as_deref(), &profile)?;
    let ca_pem = callback_args::read_ca(a.ca_file.as_deref())?;
    // The shared endpoint rule: http(s) with a host, no user:password@ (never echoed).
    let (base, chosen) = callback_args::marketplace_base(a.endpoint.as_deref(), &profile);
    let base = crate::endpoint::url::parse_endpoint(&base)?;
    if !chosen {
        callback_args::confirm_production(a.yes, g, "a license call")?;
    }
    let req = openapi::build_request(
        &call,
        base.as_str(),
        &a.code,
        &ak,
        sk.expose(),
        clock::now(),
    )
    .map_err(CsmError::usage)?;
    let url = req.url.clone();
    let client = Settings::new(a.timeout)
        .with_ca(ca_pem)
        .blocking(&base)
        .map_err(CsmError::Config)?;
    let mut builder = client.post(&url).body(req.body);
    for (n, v) in &req.headers {
        builder = builder.header(n, v);
    }
    let resp = builder.send().map_err(|e| {
        // The URL is already in the message: not again from reqwest. A connection that
        // failed through a proxy names it.
        let connect = e.is_connect();
        let mut f = failure::from_reqwest(e);
        if let (true, Some(p)) = (connect, net::proxy_named(&url)) {
            f = f.within(&p);
        }
        CsmError::Network(format!("POST {url}: {}", f.message))
    })?;
    let status = resp.status().as_u16();
    if net::is_redirect(status) {
        let location = resp.headers().get(reqwest::header::LOCATION);
        let location = location.map(|v| String::from_utf8_lossy(v.as_bytes()));
        return Err(CsmError::CheckFailed(format!(
            "POST {url}: HTTP {status} {}; point --endpoint at the address that answers",
            net::redirect_note(location.as_deref())
        )));
    }
    // Bounded: a misbehaving endpoint cannot make csm hold an unbounded answer.
    let mut body = Vec::new();
    resp.take(openapi::MAX_ANSWER as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| CsmError::Network(format!("POST {url}: reading the answer: {e}")))?;
    if body.len() > openapi::MAX_ANSWER {
        return Err(CsmError::CheckFailed(format!(
            "POST {url}: HTTP {status}, the answer is larger than {} bytes",
            openapi::MAX_ANSWER
        )));
    }
    let answer = openapi::parse_answer(&call, status, &body).map_err(|e| {
        let e = format!("POST {url}: {e}");
        // An error page from the gateway or a proxy: its status alone says whose fault.
        match openapi::Standing::of_status(status).exit() {
            Exit::Io => CsmError::Config(e),
            _ => CsmError::Network(e),
        }
    })?;
    let code = a.code.trim();
    if g.json {
        output::print_json(&json!({
            "license": code,
            "http_status": status,
            "error_code": answer.error_code,
            "error_msg": answer.error_msg,
            "license_info": answer.license_info,
        }));
    } else {
        let what = call.name();
        let detail = answer
            .license_info
            .as_ref()
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}={}",
                            v.as_str().map(str::to_string).unwrap_or(v.to_string())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let line = if answer.error_code.is_empty() {
            format!(
                "{what} {code}: HTTP {status} {}",
                openapi::excerpt(&body, 200)
            )
        } else {
            format!(
                "{what} {code}: {} {} {detail}",
                answer.error_code, answer.error_msg
            )
            .trim_end()
            .to_string()
        };
        use openapi::Standing;
        match answer.standing {
            Standing::Ok => crate::say!("{line}"),
            // Answered, but the code is not usable: say why this exits 1 or 6.
            Standing::Expired | Standing::Refused if answer.error_code == openapi::SUCCESS => {
                eprintln!(
                    "csm: {line}: the code is {}, not ALIVE",
                    if answer.status.is_empty() {
                        "without a status"
                    } else {
                        answer.status.as_str()
                    }
                )
            }
            Standing::Setup => eprintln!(
                "csm: {line}: refused for the request (HTTP {status}), not for the code; check --ak, --sk-file, --endpoint and the clock"
            ),
            Standing::Transient => eprintln!(
                "csm: {line}: no answer about the code (HTTP {status}: the marketplace failed, or something else answered); try again later"
            ),
            _ => eprintln!("csm: {line}"),
        }
    }
    Ok(answer.standing.exit())
}

/// A private key given as `--public-key` works (its public half checks the signature), but
/// such a file should never ship with a product: say so.
fn warn_private(ring: &keys::Keyring) {
    for p in &ring.private_files {
        eprintln!(
            "csm: warning: --public-key {}: this is a private signing key; validation needs only the public key (the .pub file `csm license keygen` wrote), and the private one must not ship with the product",
            p.display()
        );
    }
}
