//! The suites: lifecycle, idempotency, negative, dial, readiness. Each sends real callbacks
//! through [`Client`] and turns the replies into rows (one per check).

use super::client::{Client, Exchange, NetFailure, NetKind};
use super::judge::{self, Family, JudgeCtx, Rule, Status};
use super::request::{self, Keys, PrepOpts, Prepared, Tamper};
use crate::catalog::gen::{self, Ctx};
use crate::catalog::{self, Protocol};
use reqwest::Url;
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    Lifecycle,
    Idempotency,
    Negative,
    Dial,
    Readiness,
}

impl Suite {
    pub const ALL: [Suite; 5] = [
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
}

/// Why the License callbacks are left out of a run without testFlag.
pub const LICENSE_NEEDS_CODE: &str = "without testFlag a merchant accepts only license codes it knows: pass --license-code CODE (a code your endpoint issued) to test the License callbacks";

/// The production budget the readiness suite holds replies to (spec §1).
pub const PRODUCTION_BUDGET: Duration = Duration::from_secs(5);

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
    pub elapsed: Duration,
}

fn host_ip(url: &Url) -> Option<std::net::IpAddr> {
    let h = url.host_str()?;
    h.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

pub fn is_loopback(url: &Url) -> bool {
    match host_ip(url) {
        Some(ip) => ip.is_loopback(),
        None => url
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost")),
    }
}

/// Runs `suites` against `target`. `observe` sees every exchange (printing, recording).
pub fn run(target: &Target, suites: &[Suite]) -> Outcome {
    let start = Instant::now();
    let mut r = Runner {
        t: target,
        client: Client::new(target.timeout).with_ca(target.ca_pem.clone()),
        suite: Suite::Lifecycle,
        suite_ex: Vec::new(),
        seen: Seen::default(),
        rows: Vec::new(),
        calls: 0,
        aborted: None,
    };
    for s in suites {
        if r.aborted.is_some() {
            break;
        }
        r.suite = *s;
        match s {
            Suite::Lifecycle => lifecycle(&mut r),
            Suite::Idempotency => idempotency(&mut r),
            Suite::Negative => negative(&mut r),
            Suite::Dial => dial(&mut r),
            Suite::Readiness => readiness(&mut r),
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
}

/// What readiness needs from every exchange of a run.
#[derive(Debug, Default)]
pub struct Seen {
    /// The first TLS failure.
    pub tls_failure: Option<String>,
    /// The slowest reply, if any came.
    pub slowest: Option<Duration>,
}

impl Seen {
    pub fn record(&mut self, ex: &Exchange) {
        match &ex.outcome {
            Ok(_) => self.slowest = self.slowest.max(Some(ex.latency)),
            Err(f) if f.kind == NetKind::Tls && self.tls_failure.is_none() => {
                self.tls_failure = Some(f.message.clone())
            }
            Err(_) => {}
        }
    }
}

fn json_of(ex: &Exchange) -> Option<Value> {
    ex.outcome.as_ref().ok().and_then(judge::reply_json)
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

impl Runner<'_> {
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
            test_flag: self.t.test_flag,
            users: Some(self.t.users),
            v1_key: self.t.keys.basic.clone(),
            license: self.t.license_code.clone(),
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
        ctx.now = Some(crate::clock::now());
        let mut fields = gen::generate(cb, scene, &ctx);
        for (k, v) in extra {
            fields.insert(k.to_string(), v.clone());
        }
        let opts = PrepOpts {
            endpoint: &self.t.endpoint,
            now_ms: crate::clock::now_ms(),
            nonce: crate::clock::nonce_hex64(),
            tamper,
            kit_path_full: self.t.kit_path_full,
            license_inner: self.t.license_inner,
        };
        Some(request::prepare(cb, scene, fields, key, &opts).map_err(|e| e.0))
    }

    fn send(&mut self, p: &Prepared) -> Option<Exchange> {
        if self.aborted.is_some() {
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
        self.rows.push(Row {
            protocol: self.proto(),
            suite: self.suite,
            check,
            family: rule.family,
            status: rule.status,
            expected: rule.expected,
            actual: rule.actual,
            fix: rule.fix,
            detail,
        });
    }

    fn no_reply(&mut self, check: String, family: Family) {
        self.row(
            check,
            Rule::skip(family, "no reply (see the reachable check)"),
            String::new(),
        );
    }

    /// A step whose reply must carry `code`.
    fn expect_code(&mut self, ex: &Option<Exchange>, check: String, code: &str, family: Family) {
        let Some(ex) = ex else { return };
        if ex.outcome.is_err() {
            return self.no_reply(check, family);
        }
        let got = judge::result_code(ex);
        let ok = got.as_deref() == Some(code)
            || (code == "000000"
                && got.as_deref() == Some("000004")
                && ex.request.callback.name == "newInstance");
        let actual = got.clone().unwrap_or_else(|| "no resultCode".into());
        let detail = format!("{} ms", ex.latency.as_millis());
        if ok {
            self.row(check, Rule::pass(family, code, actual), detail);
        } else {
            let fix = match (family, code) {
                (Family::RefusesBadRequests, "000001") => {
                    "verify the signature, the timestamp window (60 s) and the nonce before acting; answer 000001 when any fails".to_string()
                }
                (_, "000003") => "answer 000003 when the instance does not exist".into(),
                _ => format!(
                    "answer {code} for {}; see resultMsg for what your endpoint objected to",
                    ex.request.title()
                ),
            };
            let msg = json_of(ex)
                .and_then(|v| v["resultMsg"].as_str().map(str::to_string))
                .unwrap_or_default();
            let actual = if msg.is_empty() {
                actual
            } else {
                format!("{actual} ({msg})")
            };
            self.row(check, Rule::fail(family, code, actual, fix), detail);
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
        self.row(check.to_string(), Rule::skip(family, why), String::new());
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
                    "{} of {total} replies: {}",
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
/// queryInstance polls after a newInstance answered 000004.
const POLLS: usize = 5;

fn lifecycle(r: &mut Runner) {
    if r.t.keys.basic.is_none() {
        r.skip_row(
            "basic interfaces",
            Family::ResultCode,
            "no basic key (--key-file)",
        );
    }
    let mut ctx = r.ctx();
    let v1 = r.t.protocol == Protocol::V1;
    let new = r.call("newInstance", None, &ctx, &[], Tamper::None);
    r.expect_code(&new, "newInstance".into(), OK, Family::ResultCode);
    if let Some(id) = new.as_ref().and_then(instance_of) {
        ctx.instance_id = Some(id);
    }
    let id = ctx.instance_id.clone().unwrap_or_default();
    let mut q = r.call("queryInstance", None, &ctx, &[], Tamper::None);
    // 000004: the endpoint provisions in the background and the marketplace polls
    // queryInstance; poll a few times, a second apart.
    if new.as_ref().and_then(judge::result_code).as_deref() == Some("000004") {
        for _ in 0..POLLS {
            if q.as_ref().is_some_and(|ex| lists_instance(ex, &id)) {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            q = r.call("queryInstance", None, &ctx, &[], Tamper::None);
        }
    }
    if let Some(ex) = &q {
        if ex.outcome.is_ok() && judge::result_code(ex).as_deref() == Some(OK) {
            if lists_instance(ex, &id) {
                r.row(
                    "queryInstance".into(),
                    Rule::pass(Family::ResultCode, "000000 listing the instance", "listed"),
                    format!("{} ms", ex.latency.as_millis()),
                );
            } else {
                r.row(
                    "queryInstance".into(),
                    Rule::fail(
                        Family::ResultCode,
                        format!("info[] listing {id}"),
                        "the instance newInstance returned is not listed",
                        "queryInstance must find the instanceId that newInstance answered",
                    ),
                    String::new(),
                );
            }
        } else {
            r.expect_code(&q, "queryInstance".into(), OK, Family::ResultCode);
        }
    }
    if v1 {
        let renew = {
            let mut c = ctx.clone();
            c.order_id = Some(gen::order_id(crate::clock::now()));
            c
        };
        let ex = r.call("refreshInstance", None, &renew, &[], Tamper::None);
        r.expect_code(&ex, "refreshInstance".into(), OK, Family::ResultCode);
        let ex = r.call(
            "refreshInstance",
            None,
            &renew,
            &[("trialToFormal", v("1"))],
            Tamper::None,
        );
        r.expect_code(
            &ex,
            "refreshInstance trialToFormal".into(),
            OK,
            Family::ResultCode,
        );
        let ex = r.call("upgrade", None, &renew, &[], Tamper::None);
        r.expect_code(&ex, "upgrade".into(), OK, Family::ResultCode);
        for s in ["FREEZE", "NORMAL"] {
            let ex = r.call("instanceStatus", Some(s), &ctx, &[], Tamper::None);
            r.expect_code(&ex, format!("instanceStatus {s}"), OK, Family::ResultCode);
        }
        let ex = r.call("expireInstance", None, &ctx, &[], Tamper::None);
        r.expect_code(&ex, "expireInstance".into(), OK, Family::ResultCode);
    } else {
        for scene in catalog::find("refreshInstance", Protocol::V2)
            .map(|c| c.scenes)
            .unwrap_or(&[])
        {
            let mut c = ctx.clone();
            c.order_id = None;
            c.order_line_id = None;
            gen::settle(&mut c);
            let ex = r.call("refreshInstance", Some(scene), &c, &[], Tamper::None);
            r.expect_code(
                &ex,
                format!("refreshInstance {scene}"),
                OK,
                Family::ResultCode,
            );
        }
        for s in ["FREEZE", "UNFREEZE"] {
            let ex = r.call("updateInstanceStatus", Some(s), &ctx, &[], Tamper::None);
            r.expect_code(
                &ex,
                format!("updateInstanceStatus {s}"),
                OK,
                Family::ResultCode,
            );
        }
        let mut up = ctx.clone();
        up.order_id = None;
        up.order_line_id = None;
        gen::settle(&mut up);
        let ex = r.call("upgradeInstance", None, &up, &[], Tamper::None);
        r.expect_code(&ex, "upgradeInstance".into(), OK, Family::ResultCode);
    }
    let ex = r.call("releaseInstance", None, &ctx, &[], Tamper::None);
    r.expect_code(&ex, "releaseInstance".into(), OK, Family::ResultCode);

    if r.has_kit() {
        let steps: [(&str, i64); 7] = [
            ("tenantSync", 1),
            ("applicationSync", 1),
            ("allOrgSync", 1),
            ("singleOrgSync", 1),
            ("authSync", 1),
            ("singleOrgSync", 0),
            ("tenantSync", 0),
        ];
        for (name, flag) in steps {
            let mut c = ctx.clone();
            c.flag = Some(flag);
            let ex = r.call(name, None, &c, &[], Tamper::None);
            let what = if flag == 1 { "add" } else { "delete" };
            r.expect_code(&ex, format!("{name} {what}"), OK, Family::ResultCode);
        }
    } else {
        r.skip_row(
            "Kit interfaces",
            Family::ResultCode,
            "no Kit key (--kit-key-file)",
        );
    }
    if r.has_license() {
        let lic = r.ctx();
        for scene in catalog::find("refreshLicenseCode", Protocol::V2)
            .map(|c| c.scenes)
            .unwrap_or(&[])
        {
            let mut c = lic.clone();
            c.order_id = None;
            c.order_line_id = None;
            gen::settle(&mut c);
            let ex = r.call("refreshLicenseCode", Some(scene), &c, &[], Tamper::None);
            r.expect_code(
                &ex,
                format!("refreshLicenseCode {scene}"),
                OK,
                Family::ResultCode,
            );
        }
        for s in ["FREEZE", "UNFREEZE"] {
            let ex = r.call("updateLicenseCodeStatus", Some(s), &lic, &[], Tamper::None);
            r.expect_code(
                &ex,
                format!("updateLicenseCodeStatus {s}"),
                OK,
                Family::ResultCode,
            );
        }
        let ex = r.call("releaseLicenseCode", None, &lic, &[], Tamper::None);
        r.expect_code(&ex, "releaseLicenseCode".into(), OK, Family::ResultCode);
    } else if r.t.keys.license.is_some() {
        r.skip_row("License callbacks", Family::ResultCode, LICENSE_NEEDS_CODE);
    } else {
        r.skip_row(
            "License callbacks",
            Family::ResultCode,
            "no License key (--license-key-file)",
        );
    }
}

fn idempotency(r: &mut Runner) {
    let mut ctx = r.ctx();
    let a = r.call("newInstance", None, &ctx, &[], Tamper::None);
    r.expect_code(&a, "newInstance".into(), OK, Family::ResultCode);
    let b = r.call("newInstance", None, &ctx, &[], Tamper::None);
    r.expect_same(
        &a,
        &b,
        "newInstance again, same order (new businessId)".into(),
    );
    if let Some(id) = a.as_ref().and_then(instance_of) {
        ctx.instance_id = Some(id);
    }
    let repeat = if r.t.protocol == Protocol::V1 {
        vec!["expireInstance", "releaseInstance"]
    } else {
        vec!["releaseInstance"]
    };
    for name in repeat {
        let a = r.call(name, None, &ctx, &[], Tamper::None);
        r.expect_code(&a, name.into(), OK, Family::ResultCode);
        let b = r.call(name, None, &ctx, &[], Tamper::None);
        r.expect_same(&a, &b, format!("{name} twice"));
    }
    if r.has_kit() {
        let kit = r.ctx();
        for (flag, what) in [(1, "add"), (0, "delete")] {
            let mut c = kit.clone();
            c.flag = Some(flag);
            let a = r.call("tenantSync", None, &c, &[], Tamper::None);
            r.expect_code(&a, format!("tenantSync {what}"), OK, Family::ResultCode);
            let b = r.call("tenantSync", None, &c, &[], Tamper::None);
            r.expect_same(&a, &b, format!("tenantSync {what} twice"));
        }
    }
    if r.has_license() {
        let lic = r.ctx();
        let a = r.call("releaseLicenseCode", None, &lic, &[], Tamper::None);
        r.expect_code(&a, "releaseLicenseCode".into(), OK, Family::ResultCode);
        let b = r.call("releaseLicenseCode", None, &lic, &[], Tamper::None);
        r.expect_same(&a, &b, "releaseLicenseCode twice".into());
    } else if r.t.keys.license.is_some() {
        r.skip_row(
            "releaseLicenseCode twice",
            Family::Idempotent,
            LICENSE_NEEDS_CODE,
        );
    }
}

fn negative(r: &mut Runner) {
    let mut ctx = r.ctx();
    let v1 = r.t.protocol == Protocol::V1;
    let new = r.call("newInstance", None, &ctx, &[], Tamper::None);
    r.expect_code(&new, "setup: newInstance".into(), OK, Family::ResultCode);
    if let Some(id) = new.as_ref().and_then(instance_of) {
        ctx.instance_id = Some(id);
    }
    let id = ctx.instance_id.clone().unwrap_or_default();
    let before = r.call("queryInstance", None, &ctx, &[], Tamper::None);
    r.expect_code(
        &before,
        "setup: queryInstance".into(),
        OK,
        Family::ResultCode,
    );
    let refused = Family::RefusesBadRequests;
    let cases: &[(Tamper, &str)] = &[
        (Tamper::BadSignature, "tampered signature"),
        (Tamper::StaleTimestamp, "stale timestamp (10 min old)"),
        (Tamper::MissingSignature, "missing signature"),
    ];
    for (tamper, what) in cases {
        if v1 && *tamper == Tamper::StaleTimestamp {
            r.skip_row(
                &format!("releaseInstance, {what}"),
                refused,
                "V1 has no timestamp window",
            );
            continue;
        }
        let ex = r.call("releaseInstance", None, &ctx, &[], *tamper);
        r.expect_code(
            &ex,
            format!("releaseInstance, {what}: refused"),
            "000001",
            refused,
        );
    }
    if v1 {
        r.skip_row(
            "queryInstance replayed: refused",
            refused,
            "V1 has no nonce",
        );
    } else if let Some(b) = &before {
        let req = b.request.clone();
        let ex = r.send(&req);
        r.expect_code(
            &ex,
            "queryInstance replayed (same nonce): refused".into(),
            "000001",
            refused,
        );
    }
    let mut unknown = ctx.clone();
    unknown.instance_id = Some(crate::clock::uuid());
    let ex = r.call("releaseInstance", None, &unknown, &[], Tamper::None);
    r.expect_code(
        &ex,
        "releaseInstance, unknown instance".into(),
        "000003",
        refused,
    );
    // The refused calls must not have changed anything.
    let after = r.call("queryInstance", None, &ctx, &[], Tamper::None);
    if let (Some(b), Some(a)) = (&before, &after) {
        if a.outcome.is_err() || b.outcome.is_err() {
            r.no_reply("state unchanged afterwards".into(), refused);
        } else {
            let same_code = judge::result_code(a) == judge::result_code(b);
            let listed = lists_instance(a, &id);
            let rule = if same_code && listed == lists_instance(b, &id) {
                Rule::pass(refused, "instance unchanged", "unchanged")
            } else {
                Rule::fail(
                    refused,
                    format!("queryInstance still lists {id}"),
                    format!(
                        "{} {}",
                        judge::result_code(a).unwrap_or_default(),
                        if listed { "listed" } else { "not listed" }
                    ),
                    "a refused callback must not act: verify before touching state",
                )
            };
            r.row("state unchanged afterwards".into(), rule, String::new());
        }
    }
    if r.has_kit() {
        let mut kit = r.ctx();
        kit.flag = Some(0);
        for (tamper, what) in [
            (Tamper::BadSignature, "tampered signature"),
            (Tamper::MissingSignature, "missing signature"),
        ] {
            let ex = r.call("tenantSync", None, &kit, &[], tamper);
            r.expect_code(
                &ex,
                format!("tenantSync delete, {what}: refused"),
                "000001",
                refused,
            );
        }
    }
    if r.has_license() {
        let lic = r.ctx();
        for (tamper, what) in [
            (Tamper::BadSignature, "tampered signature"),
            (Tamper::StaleTimestamp, "stale timestamp"),
        ] {
            let ex = r.call("releaseLicenseCode", None, &lic, &[], tamper);
            r.expect_code(
                &ex,
                format!("releaseLicenseCode, {what}: refused"),
                "000001",
                refused,
            );
        }
    } else if r.t.keys.license.is_some() {
        r.skip_row("releaseLicenseCode: refused", refused, LICENSE_NEEDS_CODE);
    }
}

/// The saved debug cases, replayed "morning" and "afternoon" as the dial test does: each
/// replay has a fresh businessId, nonce and timestamp but the saved values otherwise.
fn dial(r: &mut Runner) {
    let mut ctx = r.ctx();
    ctx.test_flag = true;
    let v1 = r.t.protocol == Protocol::V1;
    if !v1 {
        // The debugging page's mock order for a yearly purchase.
        ctx.order_id = Some("MOCKPERIODYEARNEW".into());
        ctx.order_line_id = Some("MOCKPERIODYEARNEW-000001".into());
    }
    let mut cases: Vec<(&str, Option<&str>)> = if v1 {
        vec![
            ("newInstance", None),
            ("refreshInstance", None),
            ("expireInstance", None),
            ("releaseInstance", None),
        ]
    } else {
        vec![
            ("newInstance", None),
            ("queryInstance", None),
            ("refreshInstance", Some("RENEWAL")),
            ("updateInstanceStatus", Some("FREEZE")),
            ("updateInstanceStatus", Some("UNFREEZE")),
            ("releaseInstance", None),
        ]
    };
    if r.has_kit() {
        cases.push(("tenantSync", None));
    }
    // Dial cases are test calls (testFlag even with --no-test-flag): made-up codes do.
    if r.t.keys.license.is_some() {
        cases.push(("refreshLicenseCode", Some("RENEWAL")));
        cases.push(("releaseLicenseCode", None));
    }
    let mut morning: Vec<Option<Exchange>> = Vec::new();
    for (round, label) in [(0, "morning"), (1, "afternoon")] {
        for (i, (name, scene)) in cases.iter().enumerate() {
            let title = match scene {
                Some(s) => format!("{name} {s}"),
                None => name.to_string(),
            };
            // The debugging page's renewal mock order, for the renewal case.
            let extra: Vec<(&str, Value)> = if !v1 && *name == "refreshInstance" {
                vec![
                    ("orderId", v("MOCKMONTYRENEW")),
                    ("orderLineId", v("MOCKMONTYRENEW-000001")),
                ]
            } else {
                Vec::new()
            };
            let ex = r.call(name, *scene, &ctx, &extra, Tamper::None);
            if round == 0 {
                if *name == "newInstance" {
                    if let Some(id) = ex.as_ref().and_then(instance_of) {
                        ctx.instance_id = Some(id);
                    }
                }
                r.expect_code(&ex, format!("{label}: {title}"), OK, Family::ResultCode);
                morning.push(ex);
            } else {
                let first = morning.get(i).cloned().flatten();
                r.expect_same(&first, &ex, format!("{label}: {title} as in the morning"));
            }
        }
    }
}

fn readiness(r: &mut Runner) {
    let url = r.t.endpoint.clone();
    // Run alone, readiness still needs one exchange to judge TLS and latency by: a query
    // for an instance that does not exist changes nothing.
    if r.calls == 0 && !is_loopback(&url) {
        let mut ctx = r.ctx();
        ctx.instance_id = Some(crate::clock::uuid());
        let _ = r.call("queryInstance", None, &ctx, &[], Tamper::None);
    }
    for (check, rule) in readiness_rules(&url, &r.seen, r.t.ca_pem.is_some()) {
        r.row(check, rule, String::new());
    }
}

/// The readiness rules for `url`, judged from the exchanges of the run (no extra calls).
/// `ca_file`: the client also trusted a `--ca-file` root, so a completed handshake does not
/// show that the public roots the marketplace uses would accept the certificate.
pub fn readiness_rules(url: &Url, seen: &Seen, ca_file: bool) -> Vec<(String, Rule)> {
    let f = Family::Readiness;
    if is_loopback(url) {
        return vec![(
            "production address".into(),
            Rule::skip(
                f,
                "loopback URL: HTTPS, TLS, certificate, domain name and port 443 apply to the production address only",
            ),
        )];
    }
    let mut out = Vec::new();
    let https = url.scheme() == "https";
    out.push((
        "HTTPS".into(),
        if https {
            Rule::pass(f, "https://", "https://")
        } else {
            Rule::fail(
                f,
                "https://",
                format!("{}://", url.scheme()),
                "register an https:// address; the marketplace calls HTTPS only",
            )
        },
    ));
    let host = url.host_str().unwrap_or("").to_string();
    out.push((
        "domain name, not an IP address".into(),
        if host_ip(url).is_some() {
            Rule::fail(
                f,
                "a domain name",
                host,
                "register the address under a domain name",
            )
        } else {
            Rule::pass(f, "a domain name", host)
        },
    ));
    let port = url.port_or_known_default().unwrap_or(0);
    out.push((
        "port 443".into(),
        if port == 443 {
            Rule::pass(f, "443", "443")
        } else {
            Rule::fail(
                f,
                "443",
                port.to_string(),
                "serve on the default HTTPS port 443",
            )
        },
    ));
    // The client insists on TLS ≥ 1.2 and verifies the certificate for the host, so one
    // completed exchange proves both.
    let tls_fail = seen.tls_failure.as_ref();
    let replied = seen.slowest.is_some();
    let want = "TLS ≥ 1.2 with a certificate valid for the host";
    let tls_rule = match (https, tls_fail, replied) {
        (false, _, _) => Rule::skip(f, "not HTTPS"),
        (true, _, _) if ca_file => Rule::fail(
            f,
            want,
            "trusted only through --ca-file; the marketplace uses public roots",
            "install a certificate from a public CA, then run without --ca-file to check it",
        ),
        (true, Some(e), _) => Rule::fail(
            f,
            want,
            e.clone(),
            "install a certificate from a trusted CA covering this host name; enable TLS 1.2 or 1.3",
        ),
        (true, None, true) => Rule::pass(f, want, "handshake verified"),
        (true, None, false) => Rule::skip(f, "no reply to judge TLS by"),
    };
    out.push(("TLS ≥ 1.2, certificate valid for the host".into(), tls_rule));
    let slowest = seen.slowest;
    let limit = PRODUCTION_BUDGET.as_millis();
    let rule = match slowest {
        None => Rule::skip(f, "no reply"),
        Some(d) if d <= PRODUCTION_BUDGET => {
            Rule::pass(f, format!("≤ {limit} ms"), format!("{} ms", d.as_millis()))
        }
        Some(d) => Rule::fail(
            f,
            format!("≤ {limit} ms"),
            format!("{} ms", d.as_millis()),
            format!("answer within the {limit} ms production budget"),
        ),
    };
    out.push((format!("slowest reply within {limit} ms"), rule));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(
        url: &str,
        outcome: Result<super::super::client::Reply, NetFailure>,
        ms: u64,
    ) -> Exchange {
        let cb = catalog::find("queryInstance", Protocol::V2).unwrap();
        let u = Url::parse(url).unwrap();
        let p = request::prepare(
            cb,
            None,
            serde_json::Map::new(),
            &crate::secret::Secret::new("k"),
            &PrepOpts {
                endpoint: &u,
                now_ms: 1,
                nonce: "n".into(),
                tamper: Tamper::None,
                kit_path_full: false,
                license_inner: crate::protocol::v2::LicenseInner::KeyedHmac,
            },
        )
        .unwrap();
        Exchange {
            request: p,
            outcome,
            latency: Duration::from_millis(ms),
        }
    }

    #[test]
    fn readiness_judges_a_production_address() {
        let seen = |ex: &[Exchange]| {
            let mut s = Seen::default();
            ex.iter().for_each(|e| s.record(e));
            s
        };
        let statuses = |url: &str, ex: &[Exchange]| -> Vec<Status> {
            readiness_rules(&Url::parse(url).unwrap(), &seen(ex), false)
                .into_iter()
                .map(|(_, r)| r.status)
                .collect()
        };
        let ok = super::super::client::Reply {
            status: 200,
            headers: vec![],
            body: vec![],
            truncated: false,
            header_case_known: false,
        };
        let good = "https://isv.example.com/produce";
        assert_eq!(
            statuses(good, &[exchange(good, Ok(ok.clone()), 30)]),
            vec![Status::Pass; 5]
        );
        let bad = "http://203.0.113.7:8080/produce";
        assert_eq!(
            statuses(bad, &[exchange(bad, Ok(ok.clone()), 6000)]),
            vec![
                Status::Fail,
                Status::Fail,
                Status::Fail,
                Status::Skip,
                Status::Fail
            ]
        );
        let tls = exchange(
            good,
            Err(NetFailure {
                kind: NetKind::Tls,
                message: "invalid peer certificate: Expired".into(),
            }),
            5,
        );
        let rules = readiness_rules(&Url::parse(good).unwrap(), &seen(&[tls]), false);
        assert_eq!(rules[3].1.status, Status::Fail);
        assert!(rules[3].1.actual.contains("Expired"));
        // A handshake that succeeded only thanks to --ca-file proves nothing about the
        // public roots the marketplace uses.
        let rules = readiness_rules(
            &Url::parse(good).unwrap(),
            &seen(&[exchange(good, Ok(ok.clone()), 30)]),
            true,
        );
        assert_eq!(rules[3].1.status, Status::Fail);
        assert!(
            rules[3].1.actual.contains("trusted only through --ca-file"),
            "{}",
            rules[3].1.actual
        );
        assert_eq!(statuses("http://127.0.0.1:9/", &[]), vec![Status::Skip]);
    }

    #[test]
    fn loopback_detection() {
        for (u, want) in [
            ("http://127.0.0.1:8080/produce", true),
            ("http://localhost/", true),
            ("http://[::1]:9/", true),
            ("https://isv.example.com/produce", false),
            ("https://10.0.0.1/", false),
        ] {
            assert_eq!(is_loopback(&Url::parse(u).unwrap()), want, "{u}");
        }
    }
}
