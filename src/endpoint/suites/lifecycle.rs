//! Lifecycle: every callback of an instance's life in order (new, query, renew, freeze,
//! upgrade, release), then the Kit sync steps and the License callbacks when there are keys.

use super::{instance_of, lists_instance, no_instance, v, Runner, LICENSE_NEEDS_CODE, OK};
use crate::catalog::gen::{self, Ctx};
use crate::catalog::{self, Protocol};
use crate::endpoint::client::Exchange;
use crate::endpoint::judge::{self, Family, Rule};
use crate::endpoint::request::Tamper;
use std::time::Duration;

/// queryInstance polls after a newInstance answered 000004.
const POLLS: usize = 5;

pub(super) fn run(r: &mut Runner) {
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
    match no_instance(&new) {
        // Every other basic callback acts on the instance: without one they test nothing.
        Some(why) => {
            let why = format!("no instance: newInstance {why}");
            for check in instance_steps(v1) {
                r.skip_after(&check, Family::ResultCode, &why);
            }
        }
        None => {
            if let Some(id) = new.as_ref().and_then(instance_of) {
                ctx.instance_id = Some(id);
            }
            instance(r, &ctx, &new, v1);
        }
    }
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

/// The checks of [`instance`], by name.
fn instance_steps(v1: bool) -> Vec<String> {
    let mut steps = vec!["queryInstance".to_string()];
    if v1 {
        steps.extend(
            [
                "refreshInstance",
                "refreshInstance trialToFormal",
                "upgrade",
                "instanceStatus FREEZE",
                "instanceStatus NORMAL",
                "expireInstance",
            ]
            .map(String::from),
        );
    } else {
        for scene in catalog::find("refreshInstance", Protocol::V2)
            .map(|c| c.scenes)
            .unwrap_or(&[])
        {
            steps.push(format!("refreshInstance {scene}"));
        }
        steps.extend(
            [
                "updateInstanceStatus FREEZE",
                "updateInstanceStatus UNFREEZE",
                "upgradeInstance",
            ]
            .map(String::from),
        );
    }
    steps.push("releaseInstance".into());
    steps
}

/// The instance's life after newInstance created it: query, renew, freeze, upgrade, release.
fn instance(r: &mut Runner, ctx: &Ctx, new: &Option<Exchange>, v1: bool) {
    let id = ctx.instance_id.clone().unwrap_or_default();
    let mut q = r.call("queryInstance", None, ctx, &[], Tamper::None);
    // 000004: the endpoint provisions in the background and the marketplace polls
    // queryInstance; poll a few times, a second apart.
    if new.as_ref().and_then(judge::result_code).as_deref() == Some("000004") {
        for _ in 0..POLLS {
            if q.as_ref().is_some_and(|ex| lists_instance(ex, &id)) {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            q = r.call("queryInstance", None, ctx, &[], Tamper::None);
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
            c.order_id = Some(gen::order_id(r.t.clock.now(), r.t.entropy.as_ref()));
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
            let ex = r.call("instanceStatus", Some(s), ctx, &[], Tamper::None);
            r.expect_code(&ex, format!("instanceStatus {s}"), OK, Family::ResultCode);
        }
        let ex = r.call("expireInstance", None, ctx, &[], Tamper::None);
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
            let ex = r.call("updateInstanceStatus", Some(s), ctx, &[], Tamper::None);
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
    let ex = r.call("releaseInstance", None, ctx, &[], Tamper::None);
    r.expect_code(&ex, "releaseInstance".into(), OK, Family::ResultCode);
}
