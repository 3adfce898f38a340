//! The suites: lifecycle, idempotency, negative, dial, readiness, and sso when asked for. Each sends real callbacks
//! through [`Client`] and turns the replies into rows (one per check).
//!
//! This file is the runner the suites share (calls, rows, the per-suite format rows); each
//! suite is a file of its own. The time and the random values of requests come from the
//! [`Target`]'s clock and entropy, never from globals.

mod dial;
mod idempotency;
mod lifecycle;
mod negative;
mod readiness;
mod sso;

pub use sso::{SealSecret, SsoSetup};

use super::client::{Client, Exchange, NetFailure, Reply};
use super::judge::{self, Family, JudgeCtx, Rule, Seen, Status};
use super::request::{self, Keys, PrepOpts, Prepared, Tamper};
use crate::catalog::gen::{self, Ctx};
use crate::catalog::{self, Protocol};
use crate::clock::{Clock, Entropy};
use crate::interrupt::Interrupt;
use reqwest::Url;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    Lifecycle,
    Idempotency,
    Negative,
    Dial,
    Readiness,
    /// Single sign-on through the stand-in identity provider: only when asked for.
    Sso,
}

impl Suite {
    pub const ALL: [Suite; 6] = [
        Suite::Lifecycle,
        Suite::Idempotency,
        Suite::Negative,
        Suite::Dial,
        Suite::Readiness,
        Suite::Sso,
    ];

    /// What runs without `--suite`: sso needs flags of its own (an app key, a login URL).
    pub const DEFAULT: [Suite; 5] = [
        Suite::Lifecycle,
        Suite::Idempotency,
        Suite::Negative,
        Suite::Dial,
        Suite::Readiness,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Suite::Lifecycle => "lifecycle",
            Suite::Idempotency => "idempotency",
            Suite::Negative => "negative",
            Suite::Dial => "dial",
            Suite::Readiness => "readiness",
            Suite::Sso => "sso",
        }
    }
}

/// The endpoint under test and how to talk to it.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: Url,
    pub protocol: Protocol,
    pub keys: Keys,
    /// Per-call time budget (5 s production; 20 s as the debugging page).
    pub timeout: Duration,
    pub kit_path_full: bool,
    pub test_flag: bool,
    /// authSync users per call (at most 500).
    pub users: usize,
    pub license_inner: crate::protocol::v2::LicenseInner,
    pub require_body_sign: bool,
    /// An extra trusted root certificate (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// A license code the endpoint knows (`--license-code`), used instead of made-up `PL…`
    /// codes: without testFlag a merchant accepts only codes it issued.
    pub license_code: Option<String>,
    /// The time requests carry (timestamps, generated dates).
    pub clock: Arc<dyn Clock>,
    /// Nonces and ids (instance ids the endpoint must not know).
    pub entropy: Arc<dyn Entropy>,
    /// Ctrl-C: no call is started after it; the checks made so far are reported.
    pub stop: Interrupt,
    /// The sso suite's identity provider and the seller's login settings.
    pub sso: Option<SsoSetup>,
    /// `--app-public-key`: every applicationSync carries a real ciphertext of its secret.
    pub app_key: Option<crate::protocol::rsa_oaep::AppKey>,
}

/// Why the License callbacks are left out of a run without testFlag.
pub const LICENSE_NEEDS_CODE: &str = "without testFlag a merchant accepts only license codes it knows: pass --license-code CODE (a code your endpoint issued) to test the License callbacks";

#[derive(Debug, Clone)]
pub struct Row {
    pub protocol: &'static str,
    pub suite: Suite,
    pub check: String,
    pub family: Family,
    pub status: Status,
    pub expected: String,
    pub actual: String,
    pub fix: String,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub calls: usize,
    /// Set when the first call got no reply at all (DNS, connect, TLS, timeout, reset).
    pub unreachable: Option<NetFailure>,
    /// Ctrl-C stopped the run before its end.
    pub interrupted: bool,
    pub elapsed: Duration,
}

/// Runs `suites` against `target`, in order. A first call that gets no reply at all ends
/// the run.
pub fn run(target: &Target, suites: &[Suite]) -> Outcome {
    let start = Instant::now();
    let mut r = Runner::new(target);
    for s in suites {
        if r.aborted.is_some() || r.interrupted {
            break;
        }
        r.suite = *s;
        match s {
            Suite::Lifecycle => lifecycle::run(&mut r),
            Suite::Idempotency => idempotency::run(&mut r),
            Suite::Negative => negative::run(&mut r),
            Suite::Dial => dial::run(&mut r),
            Suite::Readiness => readiness::run(&mut r),
            Suite::Sso => sso::run(&mut r),
        }
        r.finish_suite();
    }
    // The first call got no reply at all: unreachable (exit 4). A later call without reply
    // is a failed `reachable` check instead (exit 1).
    let unreachable = r.aborted.clone().filter(|f| f.kind.is_unreachable());
    Outcome {
        rows: r.rows,
        calls: r.calls,
        unreachable,
        interrupted: r.interrupted,
        elapsed: start.elapsed(),
    }
}

struct Runner<'a> {
    t: &'a Target,
    client: Client,
    suite: Suite,
    suite_ex: Vec<Exchange>,
    /// What the whole run saw, for the readiness rules (the exchanges go with their suite).
    seen: Seen,
    rows: Vec<Row>,
    calls: usize,
    aborted: Option<NetFailure>,
    interrupted: bool,
    /// Each kind of non-JSON reply seen (`HTTP 404 text/html`) and the check whose fix
    /// explains it.
    not_json: Vec<(String, String)>,
}

fn json_of(ex: &Exchange) -> Option<&Value> {
    ex.outcome.as_ref().ok().and_then(|r| r.json())
}

fn instance_of(ex: &Exchange) -> Option<String> {
    json_of(ex)?
        .get("instanceId")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn lists_instance(ex: &Exchange, id: &str) -> bool {
    json_of(ex)
        .and_then(|v| v.get("info").cloned())
        .and_then(|i| i.as_array().cloned())
        .is_some_and(|a| a.iter().any(|e| e["instanceId"].as_str() == Some(id)))
}

/// A reply that is not JSON, in a few words: `HTTP 404 text/html`.
fn reply_kind(reply: &Reply) -> String {
    match reply.header("content-type").map(str::trim) {
        Some(ct) if !ct.is_empty() => format!("HTTP {} {ct}", reply.status),
        _ => format!("HTTP {} without Content-Type", reply.status),
    }
}

/// Whether `got` answers a call that expects `want`: a newInstance may also answer 000004
/// for 000000 (provisioning in the background; the marketplace then polls).
fn answers(got: Option<&str>, want: &str, ex: &Exchange) -> bool {
    got == Some(want)
        || (want == OK && got == Some("000004") && ex.request.callback.name == "newInstance")
}

/// Why a step that later checks build on did not go through, in a few words (`answered
/// 000001 (bad sign)`, `got HTTP 404 text/html, not JSON`). None when it answered 000000 (a
/// newInstance also 000004), or was never sent: no key for it, or the run stopped, and the
/// steps after it are then not sent either.
fn went_wrong(ex: &Option<Exchange>) -> Option<String> {
    let ex = ex.as_ref()?;
    let reply = match &ex.outcome {
        Ok(reply) => reply,
        Err(_) => return Some("got no reply".into()),
    };
    let Some(v) = reply.json() else {
        return Some(format!("got {}, not JSON", reply_kind(reply)));
    };
    let Some(code) = v.get("resultCode").and_then(Value::as_str) else {
        return Some("got no resultCode".into());
    };
    if answers(Some(code), OK, ex) {
        return None;
    }
    Some(match judge::reply_msg(ex) {
        Some(m) => format!("answered {code} ({m})"),
        None => format!("answered {code}"),
    })
}

/// Why a newInstance left no instance to work on (as [`went_wrong`]; a success without an
/// instanceId too).
fn no_instance(ex: &Option<Exchange>) -> Option<String> {
    if let Some(why) = went_wrong(ex) {
        return Some(why);
    }
    let ex = ex.as_ref()?;
    match instance_of(ex).filter(|id| !id.is_empty()) {
        Some(_) => None,
        None => Some(format!(
            "answered {} without an instanceId",
            judge::result_code(ex).unwrap_or_default()
        )),
    }
}

impl<'a> Runner<'a> {
    fn new(t: &'a Target) -> Runner<'a> {
        Runner {
            t,
            client: Client::new(t.timeout).with_ca(t.ca_pem.clone()),
            suite: Suite::Lifecycle,
            suite_ex: Vec::new(),
            seen: Seen::default(),
            rows: Vec::new(),
            calls: 0,
            aborted: None,
            interrupted: false,
            not_json: Vec::new(),
        }
    }

    fn proto(&self) -> &'static str {
        self.t.protocol.name()
    }

    fn has_kit(&self) -> bool {
        self.t.keys.kit.is_some()
    }

    /// The License callbacks run when their key is there and the code they carry can be
    /// accepted: a test call (made-up codes are fine) or a code the endpoint knows.
    fn has_license(&self) -> bool {
        self.t.keys.license.is_some() && (self.t.test_flag || self.t.license_code.is_some())
    }

    fn ctx(&self) -> Ctx {
        let mut c = Ctx {
            // Set here so that settle() takes neither from the globals.
            now: Some(self.t.clock.now()),
            instance_id: Some(self.t.entropy.uuid()),
            test_flag: self.t.test_flag,
            users: Some(self.t.users),
            v1_key: self.t.keys.basic.clone(),
            license: self.t.license_code.clone(),
            entropy: Arc::clone(&self.t.entropy),
            app_key: self.t.app_key.clone(),
            ..Ctx::default()
        };
        gen::settle(&mut c);
        c
    }

    fn prepare(
        &self,
        name: &str,
        scene: Option<&str>,
        ctx: &Ctx,
        extra: &[(&str, Value)],
        tamper: Tamper,
    ) -> Option<Result<Prepared, String>> {
        // License and orderNotify exist only in V2 form; find() falls back to it.
        let cb = catalog::find(name, self.t.protocol)?;
        // No key for this interface type: the step is left out (a skip row says so).
        let key = self.t.keys.for_family(cb.family)?;
        let mut ctx = ctx.clone();
        ctx.now = Some(self.t.clock.now());
        let mut fields = gen::generate(cb, scene, &ctx);
        for (k, v) in extra {
            fields.insert(k.to_string(), v.clone());
        }
        Some(request::prepare(cb, scene, fields, key, &self.opts(tamper)).map_err(|e| e.0))
    }

    /// How this target's requests are signed and addressed, with a fresh nonce and time.
    fn opts(&self, tamper: Tamper) -> PrepOpts<'_> {
        PrepOpts {
            endpoint: &self.t.endpoint,
            now_ms: self.t.clock.now_ms(),
            nonce: self.t.entropy.nonce_hex64(),
            tamper,
            kit_path_full: self.t.kit_path_full,
            license_inner: self.t.license_inner,
        }
    }

    fn send(&mut self, p: &Prepared) -> Option<Exchange> {
        if self.t.stop.asked() {
            self.interrupted = true;
        }
        if self.aborted.is_some() || self.interrupted {
            return None;
        }
        let ex = self.client.send(p);
        if let Err(f) = &ex.outcome {
            // Nothing came back from the very first call: the rest would only repeat it.
            if self.calls == 0 {
                self.aborted = Some(f.clone());
            }
        }
        self.calls += 1;
        self.seen.record(&ex);
        self.suite_ex.push(ex.clone());
        Some(ex)
    }

    fn call(
        &mut self,
        name: &str,
        scene: Option<&str>,
        ctx: &Ctx,
        extra: &[(&str, Value)],
        tamper: Tamper,
    ) -> Option<Exchange> {
        match self.prepare(name, scene, ctx, extra, tamper)? {
            Ok(p) => self.send(&p),
            Err(e) => {
                self.row(
                    name.to_string(),
                    Rule::fail(
                        Family::ResultCode,
                        "a request csm can sign",
                        e,
                        "report this as a csm bug",
                    ),
                    String::new(),
                );
                None
            }
        }
    }

    fn row(&mut self, check: String, rule: Rule, detail: String) {
        // What came from the endpoint is held escaped where it has control characters, so
        // that no table, recap or log line passes on an escape sequence.
        self.rows.push(Row {
            protocol: self.proto(),
            suite: self.suite,
            check,
            family: rule.family,
            status: rule.status,
            expected: rule.expected.into_owned(),
            actual: crate::output::printable(&rule.actual),
            fix: rule.fix.into_owned(),
            detail: crate::output::printable(&detail),
        });
    }

    fn no_reply(&mut self, check: String, family: Family) {
        let why = if self.interrupted {
            "not sent (interrupted)"
        } else {
            "no reply (see the reachable check)"
        };
        self.row(check, Rule::skip(family, why), String::new());
    }

    /// A step whose reply must carry `code`.
    fn expect_code(&mut self, ex: &Option<Exchange>, check: String, code: &str, family: Family) {
        let Some(ex) = ex else { return };
        let reply = match &ex.outcome {
            Ok(reply) => reply,
            Err(_) => return self.no_reply(check, family),
        };
        let got = judge::result_code(ex);
        let ok = answers(got.as_deref(), code, ex);
        let detail = format!("{} ms", ex.latency.as_millis());
        if ok {
            let actual = got.unwrap_or_default();
            return self.row(check, Rule::pass(family, code.to_string(), actual), detail);
        }
        let Some(v) = reply.json() else {
            // Not JSON: there is no resultCode or resultMsg to speak of, and the same kind
            // of reply on every step needs its fix said once.
            let kind = reply_kind(reply);
            let fix = self.not_json_fix(&kind, reply.status, &check);
            let actual = format!("no resultCode: {kind}, not JSON");
            return self.row(
                check,
                Rule::fail(family, code.to_string(), actual, fix),
                detail,
            );
        };
        let msg = judge::reply_msg(ex);
        let fix = match (family, code) {
            (Family::RefusesBadRequests, "000001") => {
                "verify the signature, the timestamp window (60 s) and the nonce before acting; answer 000001 when any fails".to_string()
            }
            (_, "000003") => "answer 000003 when the instance does not exist".into(),
            _ => {
                let title = ex.request.title();
                match (&got, msg) {
                    (None, _) => format!(
                        "answer {code} for {title} in resultCode, as a string (see the json-body check)"
                    ),
                    (Some(_), Some(_)) => format!(
                        "answer {code} for {title}; see resultMsg for what your endpoint objected to"
                    ),
                    (Some(_), None) => format!(
                        "answer {code} for {title}; the reply gives no reason (no resultMsg): your endpoint's log will"
                    ),
                }
            }
        };
        let actual = match (&got, v.get("resultCode")) {
            (Some(c), _) => c.clone(),
            (None, Some(c)) => format!("resultCode {c} (not a string)"),
            (None, None) => "no resultCode".into(),
        };
        let actual = match msg {
            Some(m) => format!("{actual} ({m})"),
            None => actual,
        };
        self.row(
            check,
            Rule::fail(family, code.to_string(), actual, fix),
            detail,
        );
    }

    /// The fix for a reply that is not JSON: in full for the first reply of its kind, then
    /// pointing there.
    fn not_json_fix(&mut self, kind: &str, status: u16, check: &str) -> String {
        if let Some((_, first)) = self.not_json.iter().find(|(k, _)| k == kind) {
            return format!("{kind} again: see the fix of {first}");
        }
        let first = format!("{} \"{check}\"", self.suite.name());
        self.not_json.push((kind.to_string(), first));
        let hint = match status {
            404 | 405 => ": check that the address is the one your endpoint serves callbacks at",
            _ => "",
        };
        format!("answer every callback with HTTP 200, Content-Type application/json and a JSON object with its resultCode (see the json-body check); {kind} is no callback reply{hint}")
    }

    /// Skips a check that builds on an earlier step that did not go through, saying which.
    /// Once the run has stopped (Ctrl-C, no first reply) nothing more is said.
    fn skip_after(&mut self, check: &str, family: Family, why: &str) {
        if self.t.stop.asked() {
            self.interrupted = true;
        }
        if self.aborted.is_some() || self.interrupted {
            return;
        }
        self.skip_row(check, family, why);
    }

    /// The same callback again, as the dial test replays a saved case: the fields exactly
    /// as sent before, signed afresh (a new timestamp and nonce; V1 and Kit bodies carry
    /// their timeStamp in the fields).
    fn replay(&mut self, saved: &Prepared) -> Option<Exchange> {
        let key = self.t.keys.for_family(saved.callback.family)?.clone();
        let mut fields = saved.fields.clone();
        gen::restamp(saved.callback, &mut fields, self.t.clock.now());
        let opts = self.opts(Tamper::None);
        match request::prepare(saved.callback, saved.scene.as_deref(), fields, &key, &opts) {
            Ok(p) => self.send(&p),
            Err(e) => {
                self.row(
                    saved.title(),
                    Rule::fail(
                        Family::ResultCode,
                        "a request csm can sign",
                        e.0,
                        "report this as a csm bug",
                    ),
                    String::new(),
                );
                None
            }
        }
    }

    /// A repeated call must answer as the first did: same code, same instanceId.
    fn expect_same(&mut self, first: &Option<Exchange>, again: &Option<Exchange>, check: String) {
        let (Some(a), Some(b)) = (first, again) else {
            return;
        };
        if a.outcome.is_err() || b.outcome.is_err() {
            return self.no_reply(check, Family::Idempotent);
        }
        // Two missing answers are not the same answer: without a first one there is
        // nothing to compare with.
        if let Some(why) = went_wrong(first) {
            let why = format!("the first call {why}: nothing to compare with");
            return self.skip_row(&check, Family::Idempotent, &why);
        }
        let (ca, cb) = (judge::result_code(a), judge::result_code(b));
        let (ia, ib) = (instance_of(a), instance_of(b));
        let show = |c: &Option<String>, i: &Option<String>| match i {
            Some(i) => format!("{} {i}", c.as_deref().unwrap_or("-")),
            None => c.clone().unwrap_or_else(|| "-".into()),
        };
        let detail = format!("{} ms", b.latency.as_millis());
        if ca == cb && ia == ib {
            self.row(
                check,
                Rule::pass(Family::Idempotent, show(&ca, &ia), show(&cb, &ib)),
                detail,
            );
        } else {
            self.row(
                check,
                Rule::fail(
                    Family::Idempotent,
                    format!("as the first call: {}", show(&ca, &ia)),
                    show(&cb, &ib),
                    "key on orderId + orderLineId (instances) or the id itself: a repeated call returns the first answer and changes nothing",
                ),
                detail,
            );
        }
    }

    fn skip_row(&mut self, check: &str, family: Family, why: &str) {
        self.row(
            check.to_string(),
            Rule::skip(family, why.to_string()),
            String::new(),
        );
    }

    /// One row per reply-format family over the suite's replies.
    fn finish_suite(&mut self) {
        let exchanges = std::mem::take(&mut self.suite_ex);
        if exchanges.is_empty() {
            return;
        }
        let mut per: Vec<(Family, Vec<(String, Rule)>)> =
            Family::FORMAT.iter().map(|f| (*f, Vec::new())).collect();
        let mut slowest = Duration::ZERO;
        for ex in &exchanges {
            slowest = slowest.max(ex.latency);
            let key = self.t.keys.for_family(ex.request.callback.family);
            let cx = JudgeCtx {
                v1: ex.request.callback.family.is_v1(),
                key: key.map(|k| k.expose()).unwrap_or(""),
                budget: self.t.timeout,
                require_body_sign: self.t.require_body_sign,
            };
            for rule in judge::judge_format(ex, &cx) {
                if let Some((_, v)) = per.iter_mut().find(|(f, _)| *f == rule.family) {
                    v.push((ex.request.title(), rule));
                }
            }
        }
        for (family, rules) in per {
            let total = rules.len();
            let failed: Vec<&(String, Rule)> = rules
                .iter()
                .filter(|(_, r)| r.status == Status::Fail)
                .collect();
            let passed = rules
                .iter()
                .filter(|(_, r)| r.status == Status::Pass)
                .count();
            let check = family.describe().to_string();
            if let Some((title, first)) = failed.first() {
                let mut calls: Vec<&str> = failed.iter().map(|(t, _)| t.as_str()).collect();
                calls.dedup();
                let detail = format!(
                    "{} of {total} calls: {}",
                    failed.len(),
                    calls.into_iter().take(4).collect::<Vec<_>>().join(", ")
                );
                let rule = Rule::fail(
                    family,
                    first.expected.clone(),
                    format!("{title}: {}", first.actual),
                    first.fix.clone(),
                );
                self.row(check, rule, detail);
            } else if passed > 0 {
                let detail = if family == Family::Reachable {
                    format!("{passed} replies, slowest {} ms", slowest.as_millis())
                } else {
                    format!("{passed} replies")
                };
                let (e, a) = rules
                    .iter()
                    .find(|(_, r)| r.status == Status::Pass)
                    .map(|(_, r)| (r.expected.clone(), r.actual.clone()))
                    .unwrap_or_default();
                self.row(check, Rule::pass(family, e, a), detail);
            } else if let Some((_, first)) = rules.first() {
                self.row(
                    check,
                    Rule::skip(family, first.actual.clone()),
                    String::new(),
                );
            }
        }
    }
}

fn v(s: &str) -> Value {
    Value::String(s.to_string())
}

const OK: &str = "000000";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};

    #[derive(Debug)]
    struct Fixed;

    impl Clock for Fixed {
        fn now(&self) -> DateTime<Utc> {
            Utc.timestamp_millis_opt(1_768_046_400_000).unwrap()
        }
    }

    impl Entropy for Fixed {
        fn nonce_hex64(&self) -> String {
            "AB".repeat(32)
        }

        fn uuid(&self) -> String {
            "00000000-0000-4000-8000-000000000001".into()
        }

        fn below(&self, _n: usize) -> usize {
            0
        }
    }

    /// What a request carries of time and chance comes from the target: a pinned clock and
    /// entropy pin the timestamp, the nonce and the instance id.
    #[test]
    fn requests_take_time_and_ids_from_the_target() {
        let target = Target {
            endpoint: Url::parse("http://127.0.0.1:9/produce").unwrap(),
            protocol: Protocol::V2,
            keys: Keys {
                basic: Some(crate::secret::Secret::new("k")),
                kit: None,
                license: None,
            },
            timeout: Duration::from_secs(1),
            kit_path_full: false,
            test_flag: true,
            users: 1,
            license_inner: crate::protocol::v2::LicenseInner::KeyedHmac,
            require_body_sign: false,
            ca_pem: None,
            license_code: None,
            clock: Arc::new(Fixed),
            entropy: Arc::new(Fixed),
            stop: Interrupt::never(),
            sso: None,
            app_key: None,
        };
        let r = Runner::new(&target);
        let p = r
            .prepare("queryInstance", None, &r.ctx(), &[], Tamper::None)
            .unwrap()
            .unwrap();
        assert!(p.url.contains("timestamp=1768046400000"), "{}", p.url);
        assert!(
            p.url.contains(&format!("nonce={}", "AB".repeat(32))),
            "{}",
            p.url
        );
        assert_eq!(
            p.fields["instanceId"],
            "00000000-0000-4000-8000-000000000001"
        );
        // Generated values come from the target's entropy too: the same body twice.
        let again = r
            .prepare("newInstance", None, &r.ctx(), &[], Tamper::None)
            .unwrap()
            .unwrap();
        let once = r
            .prepare("newInstance", None, &r.ctx(), &[], Tamper::None)
            .unwrap()
            .unwrap();
        assert_eq!(again.body, once.body);
        let order = once.fields["orderId"].as_str().unwrap().to_string();
        assert!(order.ends_with("AAAAA"), "{order}");
    }
}
