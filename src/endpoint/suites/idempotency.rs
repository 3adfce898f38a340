//! Idempotency: the same call twice answers as the first did and changes nothing.

use super::{instance_of, no_instance, went_wrong, Runner, LICENSE_NEEDS_CODE, OK};
use crate::catalog::gen::Ctx;
use crate::catalog::Protocol;
use crate::endpoint::judge::Family;
use crate::endpoint::request::Tamper;

pub(super) fn run(r: &mut Runner) {
    let mut ctx = r.ctx();
    let a = r.call("newInstance", None, &ctx, &[], Tamper::None);
    r.expect_code(&a, "newInstance".into(), OK, Family::ResultCode);
    let check = "newInstance again, same order (new businessId)";
    let lost = no_instance(&a);
    match &lost {
        Some(why) => {
            let why = format!("the first newInstance {why}: nothing to repeat");
            r.skip_after(check, Family::Idempotent, &why);
        }
        None => {
            let b = r.call("newInstance", None, &ctx, &[], Tamper::None);
            r.expect_same(&a, &b, check.into());
        }
    }
    if let Some(id) = a.as_ref().and_then(instance_of) {
        ctx.instance_id = Some(id);
    }
    let repeat = if r.t.protocol == Protocol::V1 {
        vec!["expireInstance", "releaseInstance"]
    } else {
        vec!["releaseInstance"]
    };
    for name in repeat {
        // Releasing an instance that was never created repeats nothing.
        if let Some(why) = &lost {
            let why = format!("no instance: newInstance {why}");
            r.skip_after(name, Family::ResultCode, &why);
            r.skip_after(&format!("{name} twice"), Family::Idempotent, &why);
            continue;
        }
        twice(r, name, name.into(), &ctx);
    }
    if r.has_kit() {
        let kit = r.ctx();
        for (flag, what) in [(1, "add"), (0, "delete")] {
            let mut c = kit.clone();
            c.flag = Some(flag);
            twice(r, "tenantSync", format!("tenantSync {what}"), &c);
        }
    }
    if r.has_license() {
        let lic = r.ctx();
        twice(r, "releaseLicenseCode", "releaseLicenseCode".into(), &lic);
    } else if r.t.keys.license.is_some() {
        r.skip_row(
            "releaseLicenseCode twice",
            Family::Idempotent,
            LICENSE_NEEDS_CODE,
        );
    }
}

/// `name` once (it must succeed), then again (it must answer as the first time). A first
/// call that failed leaves nothing to repeat: the second is not sent.
fn twice(r: &mut Runner, name: &str, check: String, ctx: &Ctx) {
    let a = r.call(name, None, ctx, &[], Tamper::None);
    r.expect_code(&a, check.clone(), OK, Family::ResultCode);
    let again = format!("{check} twice");
    match went_wrong(&a) {
        Some(why) => {
            let why = format!("the first {check} {why}: nothing to repeat");
            r.skip_after(&again, Family::Idempotent, &why);
        }
        None => {
            let b = r.call(name, None, ctx, &[], Tamper::None);
            r.expect_same(&a, &b, again);
        }
    }
}
