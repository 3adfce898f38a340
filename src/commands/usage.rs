//! `csm usage`: validate, upload, replay, status, export, resolve. Glue only: the rules live in
//! `crate::usage`.

use crate::catalog::KeyRole;
use crate::cli::GlobalArgs;
use crate::commands::callback_args;
use crate::config::{self, Profile};
use crate::duration::Bare;
use crate::error::{CsmError, Exit, Result};
use crate::output;
use crate::usage::batch::{ValueAs, MAX_BATCH, MIN_BATCH, USAGE_PATH};
use crate::usage::encoding::Encoding;
use crate::usage::journal::{self, ImportReport, Journal, Scope, State};
use crate::usage::reader::{Format, RecordReader};
use crate::usage::record::{Billing, MAX_AGE_DAYS};
use crate::usage::upload::{self, SendConfig, SendReport};
use crate::{clock, usage};
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct UsageArgs {
    #[command(subcommand)]
    pub command: UsageCommand,
}

#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Check a file against every local rule (nothing is journaled or sent).
    Validate(ValidateArgs),
    /// Journal the records of a file, then send them in signed batches.
    Upload(UploadArgs),
    /// Send again everything in the journal that is not accepted yet (same metering_sn).
    Replay(ReplayArgs),
    /// Counts by state, the oldest record waiting to be sent, deadlines, the last errors.
    Status(StatusArgs),
    /// Write the records in one state to a file (CSV or JSONL) that upload reads back.
    Export(ExportArgs),
    /// Give up on a record the marketplace does not hold, so that a corrected one can be
    /// uploaded for its period under a new metering_sn.
    Resolve(ResolveArgs),
    /// Run the hourly metering agent: events in (spool directory, POST /events), one record
    /// per instance and closed hour out, sent like `upload`; /healthz and /metrics.
    Agent(crate::commands::usage_agent::AgentArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LeaseArg {
    /// PostgreSQL journal: how long a batch this process claims stays its own before another
    /// uploader may take it over and send it again under the same metering_sn (after a
    /// crash): 5m, 90s; a bare number is seconds, 1s to 24h. Must outlast one batch with all
    /// its retries.
    #[arg(long, default_value = "5m", value_name = "DURATION",
          value_parser = crate::duration::flag(Bare::Secs, Duration::from_secs(1), Duration::from_secs(86400)))]
    pub lease: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct JournalArg {
    /// The journal: an SQLite file, or a PostgreSQL database several uploaders share
    /// (postgres://USER:PASSWORD@HOST:PORT/DB, no TLS). Default:
    /// <data dir>/csm/usage-journal.sqlite.
    #[arg(long, env = "CSM_JOURNAL", hide_env_values = true, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

impl JournalArg {
    /// The journal named, or the default. A libpq `key=value` connection string is refused
    /// without being repeated (it may hold a password): taken as a file name, it would be
    /// created on disk under that name.
    pub(crate) fn path(&self) -> Result<PathBuf> {
        let path = self.journal.clone().unwrap_or_else(journal::default_path);
        let text = path.to_string_lossy().to_ascii_lowercase();
        let libpq = ["host=", "dbname=", "user=", "password=", "port="]
            .iter()
            .any(|k| text.starts_with(k) || text.contains(&format!(" {k}")));
        if !journal::is_postgres(&path) && libpq {
            return Err(CsmError::usage(
                "--journal: a PostgreSQL journal is named by a URL, postgres://USER:PASSWORD@HOST:PORT/DB (key=value connection strings are not read)",
            ));
        }
        Ok(path)
    }
}

#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Usage records: CSV with a header, or JSONL (one object per line); - reads standard
    /// input (give --format jsonl for JSON lines).
    pub file: PathBuf,
    /// Input format; by default from the extension (.jsonl/.ndjson/.json are JSONL, else CSV).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The file's text encoding: gb18030 (or gbk) for CSV saved by Chinese Excel.
    #[arg(
        long,
        value_enum,
        ignore_case = true,
        default_value = "utf-8",
        value_name = "NAME"
    )]
    pub encoding: Encoding,
    /// How the product's pay-per-use item is billed (sets the reporting deadlines).
    #[arg(long, value_enum, default_value = "hourly")]
    pub billing: Billing,
}

#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// The seller key bound to the basic interfaces (signs the usage push).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Marketplace base URL (scheme, host, port); csm appends the API path. Else the
    /// profile's; else the production marketplace https://mkt.myhuaweicloud.com, which needs
    /// --yes or a yes at the terminal.
    #[arg(
        long,
        env = "CSM_MARKETPLACE_ENDPOINT",
        hide_env_values = true,
        value_name = "BASE_URL"
    )]
    pub endpoint: Option<String>,
    /// Send to the production marketplace without asking when no --endpoint or profile
    /// names the destination.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Records per request (100 to 1000).
    #[arg(long, default_value_t = MAX_BATCH as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(MIN_BATCH as u64..=MAX_BATCH as u64))]
    pub batch: u64,
    /// Further attempts of a batch after a network error or 5xx (0 to 100).
    #[arg(long, default_value_t = 5, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: u32,
    /// First pause between attempts: 500ms, 2s; a bare number is milliseconds, 1ms to 30s
    /// (doubles, with jitter, up to 30 s).
    #[arg(long, default_value = "500ms", value_name = "DURATION",
          value_parser = crate::duration::flag(Bare::Millis, Duration::from_millis(1), Duration::from_secs(30)))]
    pub backoff_ms: Duration,
    /// How long to wait for one answer: 30s, 2m; a bare number is seconds, 1s to 1h.
    #[arg(long, default_value = "30s", value_name = "DURATION",
          value_parser = crate::duration::flag(Bare::Secs, Duration::from_secs(1), Duration::from_secs(3600)))]
    pub timeout: Duration,
    /// Also trust this root certificate (PEM), e.g. a staging marketplace behind a private CA.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// How usage_value is written in the body (decision 6: a JSON number).
    #[arg(long, value_enum, default_value = "number")]
    pub usage_value: ValueAs,
    /// Also sign each request for the API Gateway (AK/SK, SDK-HMAC-SHA256), on top of the
    /// body signature; needs --ak and --sk-file (or the profile's).
    #[arg(long)]
    pub apig: bool,
    /// API Gateway access key id (with --apig).
    #[arg(long, value_name = "AK")]
    pub ak: Option<String>,
    /// API Gateway secret key file (with --apig).
    #[arg(long, value_name = "FILE")]
    pub sk_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub journal: JournalArg,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub journal: JournalArg,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub lease: LeaseArg,
    /// Check and count everything, journal nothing, send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub journal: JournalArg,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub lease: LeaseArg,
    /// Leave out records the marketplace rejected for good (resent unchanged, they are
    /// refused again; `usage export --state rejected` takes them out to fix).
    #[arg(long)]
    pub skip_rejected: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub journal: JournalArg,
    /// How the product's pay-per-use item is billed (sets the reporting deadlines).
    #[arg(long, value_enum, default_value = "hourly")]
    pub billing: Billing,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub journal: JournalArg,
    /// Which records: those in this state.
    #[arg(long, value_enum, value_name = "S")]
    pub state: State,
    /// Output file (.jsonl/.ndjson/.json for JSONL, else CSV); written whole or not at all.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The record's metering_sn (as `usage status` or `usage export` show it).
    #[arg(value_name = "METERING_SN")]
    pub metering_sn: String,
    #[command(flatten)]
    pub journal: JournalArg,
    /// Abandon it: never send it again and free its period for a corrected record under a
    /// new metering_sn. Only after 卖家中心 > 交易管理 > 话单管理 shows that the
    /// marketplace does not hold it.
    #[arg(long, required = true)]
    pub abandon: bool,
    /// Why (kept in the journal with who and when): e.g. what 话单管理 showed.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

pub fn run(g: &GlobalArgs, a: UsageArgs) -> Result<Exit> {
    match a.command {
        UsageCommand::Validate(v) => validate(g, v),
        UsageCommand::Upload(u) => upload(g, u),
        UsageCommand::Replay(r) => replay(g, r),
        UsageCommand::Status(s) => status(g, s),
        UsageCommand::Export(e) => export(g, e),
        UsageCommand::Resolve(r) => resolve(g, r),
        UsageCommand::Agent(a) => crate::commands::usage_agent::run(g, a),
    }
}

/// Standard input's reader when the usage file is `-`, as refusals name it.
const USAGE_FILE: &str = "the usage file";

fn open_input(input: &InputArgs) -> Result<RecordReader<Box<dyn BufRead>>> {
    // `-` is standard input (a pipe: read once, as it comes).
    let mut reader: Box<dyn BufRead> = if crate::files::is_stdin(&input.file) {
        crate::files::claim_stdin(USAGE_FILE)?;
        Box::new(BufReader::with_capacity(1 << 16, std::io::stdin()))
    } else {
        let f = std::fs::File::open(&input.file).map_err(|e| CsmError::io(&input.file, e))?;
        Box::new(BufReader::with_capacity(1 << 16, f))
    };
    let format = input
        .format
        .unwrap_or_else(|| Format::from_path(&input.file));
    // UTF-8 read as GB18030 decodes without an error into other characters, which would be
    // billed under them: refused before anything is read.
    if input.encoding == Encoding::Gb18030 {
        let head = reader
            .fill_buf()
            .map_err(|e| CsmError::io(&input.file, e))?;
        if crate::usage::encoding::is_utf8_text(head) {
            return Err(CsmError::usage(format!(
                "--encoding gb18030: {} is UTF-8 text (its Chinese reads as UTF-8, and as GB18030 would become other characters); drop --encoding",
                label(&input.file)
            )));
        }
    }
    Ok(RecordReader::decoding(reader, format, input.encoding))
}

/// A file or journal as messages show it (a PostgreSQL URL without its password).
fn label(p: &Path) -> String {
    if crate::files::is_stdin(p) {
        return "stdin".into();
    }
    journal::display(p)
}

fn import_json(r: &ImportReport, file: &str) -> serde_json::Value {
    json!({
        "file": file,
        "records": r.read,
        "bad": r.bad,
        "not_checked": r.unchecked,
        "new": r.new,
        "already_journaled_unsent": r.again,
        "already_accepted": r.already_accepted,
        "already_rejected": r.already_rejected,
        "already_abandoned": r.already_abandoned,
        "replaced": r.replaced,
        "errors": r.error_count,
        "error_lines": r.errors.iter().map(|e| json!({"line": e.line, "field": e.field, "message": e.message})).collect::<Vec<_>>(),
        "deadline": r.deadline,
        "late": r.late.iter().map(|(l, sn, end, d)| json!({"line": l, "metering_sn": sn, "end_time": end, "status": d.as_str()})).collect::<Vec<_>>(),
    })
}

/// An hour without usage may well be a file with a header and no record; an empty file is
/// more likely an export that failed or was cut short. Not an error (exit 0): said on stderr.
fn warn_empty(rep: &ImportReport, file: &str) {
    if rep.empty {
        eprintln!("csm: warning: {file} is empty; was it written completely?");
    }
}

fn print_import(g: &GlobalArgs, r: &ImportReport, file: &str, billing: Billing, per_record: bool) {
    if g.quiet {
        return;
    }
    let mut t = output::table();
    t.set_header(vec!["records", "count"]);
    // Every data line read is in one of the rows below "read".
    t.add_row(vec!["read".to_string(), r.read.to_string()]);
    t.add_row(vec!["bad".to_string(), r.bad.to_string()]);
    t.add_row(vec!["new".to_string(), r.new.to_string()]);
    for (k, v) in [
        ("not checked (the header is bad)", r.unchecked),
        ("already journaled, not yet accepted", r.again),
        ("already accepted", r.already_accepted),
        ("already rejected", r.already_rejected),
        ("already abandoned", r.already_abandoned),
        ("fixed, replacing a rejected record", r.replaced),
    ] {
        if v > 0 {
            t.add_row(vec![k.to_string(), v.to_string()]);
        }
    }
    for (k, v) in &r.deadline {
        t.add_row(vec![format!("deadline {k}"), v.to_string()]);
    }
    crate::say!("{file}:");
    crate::say!("{t}");
    crate::say!("{}", billing_note(billing));
    if !per_record {
        return;
    }
    for (line, sn, end, d) in &r.late {
        crate::say!(
            "{file}:{line}: metering_sn {sn} ending {end} is {}",
            d.as_str()
        );
    }
}

fn billing_note(b: Billing) -> &'static str {
    match b {
        Billing::Hourly => {
            "deadlines in UTC, hourly billing: minutes 0-15 of the next hour, at most 2 h late"
        }
        Billing::Daily => {
            "deadlines in UTC, daily billing: 00:00-00:15 next day, never after 01:00"
        }
    }
}

fn print_line_errors(r: &ImportReport, file: &str, to_stdout: bool) {
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::stderr().lock())
    };
    for e in &r.errors {
        let _ = writeln!(out, "{file}:{}: {}", e.line, e.message);
    }
    if r.error_count as usize > r.errors.len() {
        let _ = writeln!(
            out,
            "{file}: ... and {} more bad lines",
            r.error_count as usize - r.errors.len()
        );
    }
}

fn bad_input(r: &ImportReport, file: &str) -> CsmError {
    let first = r
        .errors
        .first()
        .map(|e| format!("; first at line {}: {}", e.line, e.message))
        .unwrap_or_default();
    CsmError::usage(format!(
        "{file}: {} bad line(s), nothing was journaled{first}",
        r.error_count
    ))
}

/// A journal in memory for `validate` and `upload --dry-run`: the real one, when there is
/// one, is only read (records already in it are counted as an upload would count them).
/// What a check in memory compared the input with: the journal as named, whether its
/// records were read, and the sentence that says so.
struct Compared {
    journal: String,
    read: bool,
    said: String,
}

fn check_only(a: &JournalArg) -> Result<(Journal, Compared)> {
    let path = a.path()?;
    // A PostgreSQL journal is not attached: records already in it are counted as new.
    let local = !journal::is_postgres(&path) && path.exists();
    let said = if journal::is_postgres(&path) {
        format!(
            "not compared with the PostgreSQL journal {}: records already in it count as new",
            label(&path)
        )
    } else if local {
        format!("compared with the journal {} (read only)", label(&path))
    } else {
        format!(
            "no journal at {} yet: every good record is new",
            label(&path)
        )
    };
    let compared = Compared {
        journal: label(&path),
        read: local,
        said,
    };
    Ok((Journal::scratch(local.then_some(path.as_path()))?, compared))
}

/// The journal `replay`, `status` and `export` work on: it must be there already.
fn existing_journal(a: &JournalArg) -> Result<PathBuf> {
    let path = a.path()?;
    // PostgreSQL: opening it says whether a journal is there.
    if !journal::is_postgres(&path) && !path.exists() {
        return Err(CsmError::Config(format!(
            "--journal {}: no journal there (upload a file first)",
            path.display()
        )));
    }
    Ok(path)
}

fn validate(g: &GlobalArgs, a: ValidateArgs) -> Result<Exit> {
    let mut reader = open_input(&a.input)?;
    let file = label(&a.input.file);
    let (mut scratch, compared) = check_only(&a.journal)?;
    let rep = scratch.import(&mut reader, &file, clock::now(), a.input.billing, false)?;
    warn_empty(&rep, &file);
    if g.json {
        let mut v = import_json(&rep, &file);
        v["journal"] = json!(compared.journal);
        v["journal_read"] = json!(compared.read);
        output::print_json(&v);
    } else {
        print_line_errors(&rep, &file, true);
        print_import(g, &rep, &file, a.input.billing, true);
        // What "new" and "already ..." were counted against, as every usage command says.
        if !g.quiet {
            crate::say!("{}", compared.said);
        }
    }
    if rep.error_count > 0 {
        return Err(bad_input(&rep, &file));
    }
    Ok(Exit::Ok)
}

/// The marketplace's base URL: the rules of every endpoint flag (http or https, a host, no
/// user info, never echoed), then no path, query or fragment (csm appends the API path).
/// Returned without a trailing `/`.
fn check_endpoint(raw: &str) -> Result<String> {
    let url = crate::endpoint::url::parse_endpoint(raw)?;
    let bad = |rule: &str| {
        CsmError::usage(format!(
            "--endpoint {raw}: {rule} (a base URL: scheme, host and port; csm appends the API path)"
        ))
    };
    if url.query().is_some() {
        return Err(bad("must not have a query (?...)"));
    }
    if url.fragment().is_some() {
        return Err(bad("must not have a fragment (#...)"));
    }
    if !matches!(url.path(), "" | "/") {
        return Err(bad("must not have a path"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// The usage API's URL: the base from `--endpoint`, the profile or (confirmed) production.
/// `confirm` is false for a dry run, which sends nothing.
fn usage_url(g: &GlobalArgs, c: &ConnArgs, profile: &Profile, confirm: bool) -> Result<String> {
    let (base, chosen) = callback_args::marketplace_base(c.endpoint.as_deref(), profile);
    let base = check_endpoint(&base)?;
    if confirm && !chosen {
        callback_args::confirm_production(c.yes, g, "usage records")?;
    }
    Ok(format!("{base}{USAGE_PATH}"))
}

/// Says where records go before any is sent (stderr: stdout may be a JSON report).
pub(crate) fn announce(g: &GlobalArgs, url: &str, dry_run: bool) {
    if g.quiet {
        return;
    }
    let mut e = std::io::stderr().lock();
    let verb = if dry_run { "would go to" } else { "go to" };
    let _ = writeln!(e, "usage records {verb} {url}");
}

pub(crate) fn send_config(g: &GlobalArgs, c: &ConnArgs) -> Result<SendConfig> {
    let profile = config::active_profile(g.profile.as_deref())?;
    let key = config::require_key(KeyRole::Basic, c.key_file.as_deref(), &profile)?;
    let apig = if c.apig {
        let ak = config::require_ak(c.ak.as_deref(), &profile, false)?;
        let sk = config::require_key(KeyRole::Sk, c.sk_file.as_deref(), &profile)?;
        Some(upload::ApigKeys { ak, sk })
    } else {
        if c.ak.is_some() || c.sk_file.is_some() {
            return Err(CsmError::usage(
                "--ak/--sk-file: add --apig to sign requests for the API Gateway",
            ));
        }
        None
    };
    // Bad keys and files are reported before any prompt.
    let ca_pem = callback_args::read_ca(c.ca_file.as_deref())?;
    let url = usage_url(g, c, &profile, true)?;
    Ok(SendConfig {
        url,
        key,
        batch: c.batch as usize,
        retries: c.retries,
        backoff: c.backoff_ms,
        max_backoff: Duration::from_secs(30),
        timeout: c.timeout,
        ca_pem,
        value_as: c.usage_value,
        apig,
    })
}

fn progress_bar(g: &GlobalArgs, total: u64) -> indicatif::ProgressBar {
    if g.quiet || g.json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records {rate} eta {eta}")
    {
        // indicatif's own {per_sec} prints fractions of a record ("58,596.6037/s").
        let style = style.with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&per_second(s.per_sec()));
            },
        );
        pb.set_style(style);
    }
    pb
}

/// A rate as whole records per second with thousands separators: `58,597/s`.
fn per_second(rate: f64) -> String {
    let n = if rate.is_finite() && rate > 0.0 {
        rate.round() as u64
    } else {
        0
    };
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 2);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str("/s");
    out
}

fn run_send(
    g: &GlobalArgs,
    j: &mut Journal,
    scope: Scope,
    cfg: &SendConfig,
) -> Result<(SendReport, u64)> {
    j.recover_in_flight()?;
    let total = j.count_scope(scope)?;
    let pb = progress_bar(g, total);
    let stop = crate::interrupt::Interrupt::install();
    let rep = upload::send(j, scope, cfg, &stop, &mut |n| pb.set_position(n))?;
    pb.finish_and_clear();
    Ok((rep, total))
}

fn finish(
    g: &GlobalArgs,
    j: &Journal,
    cfg: &SendConfig,
    (rep, scope, total): (&SendReport, Scope, u64),
    import: Option<(&ImportReport, &str)>,
) -> Result<Exit> {
    let counts = j.counts()?;
    let unsent = total.saturating_sub(rep.accepted + rep.rejected + rep.retry_later);
    // Records of this file rejected by an earlier run are not sent again, but the file is
    // still not fully delivered.
    let earlier_rejected = import.map_or(0, |(r, _)| r.already_rejected);
    // Decided first, so that the JSON carries the exit code the run ends with.
    let verdict = if let Some((what, fix)) = &rep.refused {
        Err(CsmError::Config(format!(
            "{} ({what}); records stay in the journal for `csm usage replay`",
            fix.lead()
        ))
        .with_hint(fix.hint()))
    } else if let Some(u) = &rep.unreachable {
        Err(CsmError::Network(format!(
            "{u}; {} in the journal for `csm usage replay`",
            records_wait(unsent)
        )))
    } else if rep.interrupted {
        Ok(Exit::Interrupted)
    } else if rep.rejected > 0 || rep.retry_later > 0 || earlier_rejected > 0 {
        Ok(Exit::Partial)
    } else {
        Ok(Exit::Ok)
    };
    if g.json {
        let exit_code = match &verdict {
            Ok(exit) => exit.code(),
            Err(e) => e.exit().code(),
        };
        let mut v = json!({
            "exit_code": exit_code,
            "journal": label(&j.path),
            "destination": cfg.url,
            "to_send": total,
            "accepted": rep.accepted,
            "rejected": rep.rejected,
            "retry_later": rep.retry_later,
            "not_sent": unsent,
            "requests": rep.requests,
            "by_code": rep.by_code.iter().map(|((o, c), n)| json!({"outcome": o, "code": c, "count": n})).collect::<Vec<_>>(),
            "failed_attempts": rep.failed_attempts.iter().map(|(c, n)| json!({"code": c, "count": n})).collect::<Vec<_>>(),
            "journal_counts": counts,
            "unreachable": rep.unreachable,
            "interrupted": rep.interrupted,
            "refused": rep.refused.as_ref().map(|(what, _)| what),
            "batch_fell_back_to": rep.batch_fell_back_to,
        });
        if let Some((r, f)) = import {
            v["import"] = import_json(r, f);
        }
        output::print_json(&v);
    } else if !g.quiet {
        let mut t = output::table();
        t.set_header(vec!["outcome", "records"]);
        t.add_row(vec!["accepted".to_string(), rep.accepted.to_string()]);
        t.add_row(vec![
            "rejected for good".to_string(),
            rep.rejected.to_string(),
        ]);
        t.add_row(vec!["retry later".to_string(), rep.retry_later.to_string()]);
        // Never sent, sent without a definite answer (a timeout), or in a batch refused as a
        // whole: they wait in the journal for replay ("not sent" is wrong for the second).
        t.add_row(vec!["left in the journal".to_string(), unsent.to_string()]);
        crate::say!("{t}");
        if !rep.by_code.is_empty() {
            let mut c = output::table();
            c.set_header(vec!["outcome", "code", "records", "meaning"]);
            for ((o, code), n) in &rep.by_code {
                let mut meaning = code_meaning(code);
                if *o == "accepted" && code == "005" {
                    meaning = "held by the marketplace from an earlier attempt".into();
                }
                c.add_row(vec![o.to_string(), code.clone(), n.to_string(), meaning]);
            }
            crate::say!("{c}");
        }
        if !rep.failed_attempts.is_empty() {
            // Requests, not records: one batch may fail several times before it gets through.
            let failed = rep
                .failed_attempts
                .iter()
                .map(|(code, n)| match code_meaning(code) {
                    m if m.is_empty() => format!("{code}: {n}"),
                    m => format!("{code} ({m}): {n}"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let n: u64 = rep.failed_attempts.values().sum();
            crate::say!(
                "{n} of {} requests not answered record by record (sent again or left for replay): {failed}",
                rep.requests
            );
        }
        crate::say!(
            "journal {}: {}",
            j.path.display(),
            State::ALL
                .iter()
                .map(|s| format!("{} {}", s.as_str(), counts.get(s).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // Refused here as past the 21-day limit: no fix of them can be billed any more.
        let too_old = rep
            .by_code
            .get(&("rejected", "MKT.9004".to_string()))
            .copied()
            .unwrap_or(0);
        if rep.rejected > too_old {
            let which = if too_old > 0 {
                "other rejected"
            } else {
                "rejected"
            };
            crate::say!("{which} records: `csm usage export --state rejected --out FILE`, fix, upload again (a record an earlier attempt may have delivered, maybe_delivered yes in the export, is checked in 话单管理 and settled with `csm usage resolve` first: docs/usage.md)");
        }
        if too_old > 0 {
            crate::say!(
                "{} rejected with MKT.9004 (not sent): begin_time is more than {MAX_AGE_DAYS} days old, and past that limit the marketplace takes no record for the period, fixed or not; leave {} out of a fixed file (`csm usage resolve SN --abandon --reason TEXT` closes {})",
                records(too_old),
                if too_old == 1 { "it" } else { "them" },
                if too_old == 1 { "it" } else { "them" },
            );
        }
    }
    if let (Some(n), false) = (rep.batch_fell_back_to, g.quiet || g.json) {
        eprintln!(
            "csm: note: the marketplace refused larger batches (MKT.9003), so batches of {n} went instead; --batch {n} sends that size from the start"
        );
    }
    match verdict {
        Ok(Exit::Interrupted) => {
            // Where things are: everything not accepted is in the journal, nothing is lost;
            // a request in flight may have ended without a definite answer.
            // A count that fails does not turn the interruption into another error.
            let left = match j.waiting(scope) {
                Ok((pending, sent)) => left_for_replay(pending, sent, &j.path),
                Err(_) => format!(
                    "{} in the journal {} for `csm usage replay`",
                    records_wait(unsent),
                    j.path.display()
                ),
            };
            let mut e = std::io::stderr().lock();
            let _ = writeln!(
                e,
                "csm: interrupted: no batch was started after Ctrl-C or SIGTERM, and the answers to those in flight were stored; {left}"
            );
        }
        Ok(Exit::Partial) => exit_5_notes(g, rep, earlier_rejected),
        _ => {}
    }
    verdict
}

/// Why exit 5, where the table does not say it.
fn exit_5_notes(g: &GlobalArgs, rep: &SendReport, earlier_rejected: u64) {
    // Nothing of this run was refused: its table does not say why.
    if earlier_rejected > 0 && rep.rejected == 0 && !g.quiet && !g.json {
        eprintln!(
            "csm: {} of the file rejected by an earlier run (not sent again, so exit 5): `csm usage export --state rejected --out FILE`, fix, upload the fixed file",
            records(earlier_rejected)
        );
    }
    // With --json no table says it: one line for the log beside the exit code.
    if g.json && !g.quiet {
        eprintln!(
            "csm: exit 5: {} rejected for good, {} to retry later, {} rejected by an earlier run (`csm usage export --state rejected --out FILE`)",
            records(rep.rejected),
            records(rep.retry_later),
            records(earlier_rejected)
        );
    }
}

fn code_meaning(code: &str) -> String {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) {
        return usage::batch::record_code_meaning(code).to_string();
    }
    match code {
        "MKT.0000" => "success".into(),
        "network" => "network error: no answer".into(),
        "timeout" => "no answer in time".into(),
        "MKT.0102" => "body signature refused".into(),
        "MKT.0999" => "marketplace internal error".into(),
        "MKT.9003" => "too many records in one request".into(),
        "MKT.9004" => "begin_time older than 21 days".into(),
        c if c.starts_with("HTTP 2") => "not an answer of the usage API (wrong --endpoint?)".into(),
        c if c.starts_with("HTTP ") => "HTTP error".into(),
        _ => String::new(),
    }
}

fn upload(g: &GlobalArgs, a: UploadArgs) -> Result<Exit> {
    // Refusals that need no answer come before production's confirmation.
    let path = a.journal.path()?;
    // Records on standard input: a key file `-` is refused then, before it reads them.
    if crate::files::is_stdin(&a.input.file) {
        crate::files::claim_stdin(USAGE_FILE)?;
    }
    let cfg = if a.dry_run {
        None
    } else {
        Some(send_config(g, &a.conn)?)
    };
    let destination = match &cfg {
        Some(c) => c.url.clone(),
        None => usage_url(
            g,
            &a.conn,
            &config::active_profile(g.profile.as_deref())?,
            false,
        )?,
    };
    let mut reader = open_input(&a.input)?;
    let file = label(&a.input.file);
    // One shape for every upload report: the import's counts under `import`, beside where
    // the records go (the send's outcome joins them when there was one).
    let upload_json = |rep: &ImportReport| {
        json!({
            "journal": label(&path),
            "destination": destination,
            "dry_run": a.dry_run,
            "import": import_json(rep, &file),
        })
    };
    let refuse = |rep: &ImportReport| -> CsmError {
        if g.json {
            output::print_json(&upload_json(rep));
        } else {
            print_line_errors(rep, &file, false);
        }
        bad_input(rep, &file)
    };
    // A first upload that is refused (exit 2) leaves no journal behind.
    let creates = !a.dry_run && !journal::is_postgres(&path) && !path.exists();
    let mut compared = None;
    let mut j = if a.dry_run {
        let (scratch, c) = check_only(&a.journal)?;
        compared = Some(c);
        scratch
    } else {
        Journal::open(&path)?
    };
    j.set_lease(a.lease.lease);
    let lock = if a.dry_run {
        None
    } else {
        Some(j.lock_for_sending()?)
    };
    // A file uploaded before is read again: its records still unsent join this upload
    // (whichever import journaled them), decided ones are counted and left alone.
    let rep = j.import(
        &mut reader,
        &file,
        clock::now(),
        a.input.billing,
        !a.dry_run,
    )?;
    warn_empty(&rep, &file);
    if rep.error_count > 0 {
        let e = refuse(&rep);
        if creates {
            drop(lock);
            drop(j);
            journal::remove_files(&path);
        }
        return Err(e);
    }
    announce(g, &destination, a.dry_run);
    let Some(cfg) = cfg else {
        if g.json {
            output::print_json(&upload_json(&rep));
        } else {
            print_import(g, &rep, &file, a.input.billing, false);
            if !g.quiet {
                if let Some(c) = &compared {
                    crate::say!("{}", c.said);
                }
                crate::say!(
                    "dry run: {} records would be sent to {destination}, nothing was journaled or sent",
                    rep.new + rep.again + rep.replaced
                );
            }
        }
        return Ok(Exit::Ok);
    };
    if !g.json {
        print_import(g, &rep, &file, a.input.billing, false);
    }
    let scope = Scope::Import(rep.import_id);
    let (sent, total) = run_send(g, &mut j, scope, &cfg)?;
    finish(g, &j, &cfg, (&sent, scope, total), Some((&rep, &file)))
}

fn replay(g: &GlobalArgs, a: ReplayArgs) -> Result<Exit> {
    let path = existing_journal(&a.journal)?;
    let cfg = send_config(g, &a.conn)?;
    let mut j = Journal::open(&path)?;
    j.set_lease(a.lease.lease);
    let _lock = j.lock_for_sending()?;
    announce(g, &cfg.url, false);
    let scope = Scope::Unfinished {
        include_rejected: !a.skip_rejected,
    };
    let (sent, total) = run_send(g, &mut j, scope, &cfg)?;
    finish(g, &j, &cfg, (&sent, scope, total), None)
}

fn status(g: &GlobalArgs, a: StatusArgs) -> Result<Exit> {
    let path = existing_journal(&a.journal)?;
    let j = Journal::open_read_only(&path)?;
    let s = j.status(a.billing, clock::now())?;
    if g.json {
        output::print_json(&json!({
            "journal": label(&path),
            "counts": s.counts,
            "oldest_unsent": s.oldest_unsent.as_ref().map(|(sn, inst, end, d)| json!({
                "metering_sn": sn, "instance_id": inst, "end_time": end, "deadline": d.as_str()})),
            "unsent_by_deadline": s.unsent_by_deadline,
            "not_accepted_by_code": s.codes.iter().map(|(st, c, n)| json!({"state": st, "code": c, "count": n})).collect::<Vec<_>>(),
            "last_errors": s.last_errors.iter().map(|e| json!({
                "count": e.count, "metering_sn": e.metering_sn, "instance_id": e.instance_id,
                "begin_time": e.begin_time, "end_time": e.end_time, "state": e.state,
                "code": e.code, "message": e.message, "at": e.at})).collect::<Vec<_>>(),
            "abandoned": s.abandoned.iter().map(|a| json!({
                "metering_sn": a.metering_sn, "instance_id": a.instance_id,
                "begin_time": a.begin_time, "end_time": a.end_time,
                "abandoned_at": a.at, "abandoned_by": a.by, "reason": a.reason})).collect::<Vec<_>>(),
            "deadline_assumption": billing_note(a.billing),
        }));
        return Ok(Exit::Ok);
    }
    crate::say!("journal {}", label(&path));
    let mut t = output::table();
    t.set_header(vec!["state", "records"]);
    for st in State::ALL {
        t.add_row(vec![
            st.as_str().to_string(),
            s.counts.get(&st).copied().unwrap_or(0).to_string(),
        ]);
    }
    crate::say!("{t}");
    match &s.oldest_unsent {
        Some((sn, inst, end, d)) => crate::say!(
            "oldest pending or sent: metering_sn {sn} (instance {inst}) ending {end}: {}; `csm usage replay` sends it",
            d.as_str()
        ),
        None => crate::say!("oldest pending or sent: none"),
    }
    let late = s.unsent_by_deadline.get("late").copied().unwrap_or(0);
    let overdue = s.unsent_by_deadline.get("overdue").copied().unwrap_or(0);
    crate::say!(
        "pending or sent, past the ideal window: {late}; past the last moment: {overdue} ({})",
        billing_note(a.billing)
    );
    if !s.last_errors.is_empty() {
        // One row per error, however many records share it; one of them is named.
        let mut e = output::table();
        e.set_header(vec![
            "latest at",
            "records",
            "state",
            "code",
            "message",
            "e.g. metering_sn",
            "period",
        ]);
        for x in &s.last_errors {
            e.add_row(vec![
                x.at.clone(),
                x.count.to_string(),
                x.state.as_str().to_string(),
                x.code.clone(),
                x.message.clone(),
                x.metering_sn.clone(),
                format!("{} {}..{}", x.instance_id, x.begin_time, x.end_time),
            ]);
        }
        whole_column(&mut e, 5);
        crate::say!("last errors:\n{e}");
    }
    if !s.abandoned.is_empty() {
        let mut e = output::table();
        e.set_header(vec![
            "abandoned at",
            "by",
            "metering_sn",
            "period",
            "reason",
        ]);
        for a in &s.abandoned {
            e.add_row(vec![
                a.at.clone(),
                a.by.clone(),
                a.metering_sn.clone(),
                format!("{} {}..{}", a.instance_id, a.begin_time, a.end_time),
                a.reason.clone(),
            ]);
        }
        whole_column(&mut e, 2);
        let all = s.counts.get(&State::Abandoned).copied().unwrap_or(0);
        crate::say!(
            "abandoned (latest {} of {all}; all: `csm usage export --state abandoned`):\n{e}",
            s.abandoned.len()
        );
    }
    Ok(Exit::Ok)
}

/// A column (a metering_sn) shown on one line, whatever the width: it is copied into
/// `usage resolve` as it is shown.
fn whole_column(t: &mut comfy_table::Table, index: usize) {
    if let Some(c) = t.column_mut(index) {
        c.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
    }
}

/// The export is renamed over `--out`: never over the journal or a file SQLite keeps beside it.
fn refuse_journal_file(out: &Path, journal: &Path) -> Result<()> {
    let (o, j) = (crate::files::resolved(out), crate::files::resolved(journal));
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut name = j.clone().into_os_string();
        name.push(suffix);
        if o.as_os_str() == name {
            return Err(CsmError::usage(format!(
                "--out {}: is the journal{} (the export must go to another file)",
                out.display(),
                if suffix.is_empty() {
                    String::new()
                } else {
                    format!("'s {suffix} file")
                }
            )));
        }
    }
    Ok(())
}

fn export(g: &GlobalArgs, a: ExportArgs) -> Result<Exit> {
    let path = existing_journal(&a.journal)?;
    refuse_journal_file(&a.out, &path)?;
    // Named before the journal is read, with the flag.
    crate::files::check_writable(&a.out, "--out")?;
    let j = Journal::open_read_only(&path)?;
    let jsonl = Format::from_path(&a.out) == Format::Jsonl;
    let n = crate::files::write_atomic_with(&a.out, false, |w| j.export(a.state, jsonl, w))?;
    if g.json {
        output::print_json(&json!({"state": a.state, "records": n, "out": label(&a.out)}));
    } else if !g.quiet {
        crate::say!(
            "{n} {} records written to {}",
            a.state.as_str(),
            a.out.display()
        );
    }
    Ok(Exit::Ok)
}

/// `--reason`: one line of text that says why, kept in the journal.
const MAX_REASON_CHARS: usize = 500;

fn check_reason(reason: &str) -> Result<&str> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(CsmError::usage(
            "--reason: empty or only spaces; say why the record is abandoned (e.g. what 话单管理 showed)",
        ));
    }
    if r.chars().count() > MAX_REASON_CHARS {
        return Err(CsmError::usage(format!(
            "--reason: {} characters (at most {MAX_REASON_CHARS})",
            r.chars().count()
        )));
    }
    if r.chars().any(char::is_control) {
        return Err(CsmError::usage(
            "--reason: has a control character (one line of text)",
        ));
    }
    Ok(r)
}

/// Who abandons a record, as the journal keeps it: the login name.
fn who() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .or_else(account_name)
        .unwrap_or_else(|| "unknown".to_string())
}

/// The account the process runs as (cron and containers often set no USER), as `id -un`
/// names it through the system's name services (systemd's DynamicUser accounts are in no
/// /etc/passwd); else `uid 1000` from /proc.
fn account_name() -> Option<String> {
    let id = std::process::Command::new("id").arg("-un").output().ok();
    if let Some(name) = id
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|n| !n.is_empty())
    {
        return Some(name);
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    Some(format!("uid {uid}"))
}

fn resolve(g: &GlobalArgs, a: ResolveArgs) -> Result<Exit> {
    let reason = check_reason(&a.reason)?;
    let path = existing_journal(&a.journal)?;
    let mut j = Journal::open(&path)?;
    // Not while an upload or replay may be sending it.
    let _lock = j.lock_for_sending()?;
    let by = who();
    let now = crate::usage::record::format_api_time(clock::now());
    let r = j.abandon(&a.metering_sn, &by, reason, &now)?;
    if g.json {
        output::print_json(&json!({
            "journal": label(&path),
            "metering_sn": r.metering_sn,
            "was": r.was,
            "maybe_delivered": r.maybe_delivered,
            "last_code": r.last_code,
            "instance_id": r.instance_id,
            "begin_time": r.begin_time,
            "end_time": r.end_time,
            "abandoned_at": now,
            "abandoned_by": by,
            "reason": reason,
        }));
    } else if !g.quiet {
        crate::say!(
            "metering_sn {} abandoned (was {}{}{}) by {by} at {now}: {reason}",
            r.metering_sn,
            r.was.as_str(),
            r.last_code
                .as_deref()
                .map(|c| format!(" {c}"))
                .unwrap_or_default(),
            if r.maybe_delivered {
                ", maybe delivered"
            } else {
                ""
            },
        );
        if crate::usage::record::past_age_limit(&r.begin_time, clock::now()) {
            crate::say!(
                "it is never sent again; its period (instance {} {}..{}) began more than {MAX_AGE_DAYS} days ago: the marketplace takes no record for it any more, so no corrected record can be uploaded for it",
                r.instance_id,
                r.begin_time,
                r.end_time
            );
        } else {
            crate::say!(
                "it is never sent again; a corrected record for instance {} {}..{} can now be uploaded under a new metering_sn",
                r.instance_id,
                r.begin_time,
                r.end_time
            );
        }
    }
    Ok(Exit::Ok)
}

/// What an interrupted run leaves for `replay`: records known not delivered, and records
/// sent without a definite answer (maybe delivered: the replay settles them under the same
/// metering_sn, the marketplace keeping the first).
fn left_for_replay(pending: u64, sent: u64, journal: &Path) -> String {
    let mut parts = Vec::new();
    if pending > 0 {
        parts.push(format!("{} pending (not delivered)", records(pending)));
    }
    if sent > 0 {
        parts.push(format!(
            "{} sent without a definite answer (maybe delivered; the replay settles them)",
            records(sent)
        ));
    }
    if parts.is_empty() {
        return format!(
            "no record is left pending or sent in the journal {}",
            journal.display()
        );
    }
    format!(
        "left in the journal {} for `csm usage replay`: {}",
        journal.display(),
        parts.join(", ")
    )
}

/// "1 record", "2 records".
fn records(n: u64) -> String {
    output::plural(n, "record")
}

/// "1 record waits", "2 records wait".
fn records_wait(n: u64) -> String {
    format!("{} wait{}", records(n), if n == 1 { "s" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without USER (cron, containers), `resolve` still records an account: a name, or the
    /// uid of an account without one.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_account_is_named_without_user() {
        let name = account_name().unwrap();
        assert!(!name.trim().is_empty() && name != "unknown", "{name:?}");
        assert!(!name.contains('\n'), "{name:?}");
    }

    #[test]
    fn rates_are_whole_records_per_second() {
        assert_eq!(per_second(58_596.603_7), "58,597/s");
        assert_eq!(per_second(999.4), "999/s");
        assert_eq!(per_second(1_000.0), "1,000/s");
        assert_eq!(per_second(1_234_567.0), "1,234,567/s");
        assert_eq!(per_second(0.3), "0/s");
        assert_eq!(per_second(f64::NAN), "0/s");
        assert_eq!(per_second(f64::INFINITY), "0/s");
    }

    /// An interrupted run says which records are left, and in which state.
    #[test]
    fn what_an_interruption_leaves_is_said_by_state() {
        let j = Path::new("j.sqlite");
        assert_eq!(
            left_for_replay(2800, 200, j),
            "left in the journal j.sqlite for `csm usage replay`: 2800 records pending (not delivered), \
             200 records sent without a definite answer (maybe delivered; the replay settles them)"
        );
        assert_eq!(
            left_for_replay(1, 0, j),
            "left in the journal j.sqlite for `csm usage replay`: 1 record pending (not delivered)"
        );
        assert_eq!(
            left_for_replay(0, 0, j),
            "no record is left pending or sent in the journal j.sqlite"
        );
    }

    #[test]
    fn a_reason_is_one_line_of_text() {
        assert_eq!(check_reason("  not held  ").unwrap(), "not held");
        assert!(check_reason(" ")
            .unwrap_err()
            .to_string()
            .contains("--reason"));
        assert!(check_reason("a\nb").is_err());
        assert!(check_reason(&"x".repeat(501)).is_err());
    }
}
