//! Idempotency: the same call twice answers as the first did and changes nothing.

use super::{instance_of, Runner, LICENSE_NEEDS_CODE, OK};
use crate::catalog::Protocol;
use crate::endpoint::judge::Family;
use crate::endpoint::request::Tamper;

pub(super) fn run(r: &mut Runner) {
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
