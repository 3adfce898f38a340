//! Negative: tampered, stale, missing and replayed signatures and unknown instances are
//! refused, and refusing them changes nothing.

use super::{instance_of, lists_instance, no_instance, went_wrong, Runner, LICENSE_NEEDS_CODE, OK};
use crate::catalog::gen::Ctx;
use crate::catalog::Protocol;
use crate::endpoint::client::Exchange;
use crate::endpoint::judge::{self, Family, Rule};
use crate::endpoint::request::Tamper;

pub(super) fn run(r: &mut Runner) {
    let mut ctx = r.ctx();
    let v1 = r.t.protocol == Protocol::V1;
    let refused = Family::RefusesBadRequests;
    let new = r.call("newInstance", None, &ctx, &[], Tamper::None);
    r.expect_code(&new, "setup: newInstance".into(), OK, Family::ResultCode);
    if let Some(id) = new.as_ref().and_then(instance_of) {
        ctx.instance_id = Some(id);
    }
    let id = ctx.instance_id.clone().unwrap_or_default();
    // A refusal proves nothing from an endpoint that refuses correctly signed calls too, and
    // "unchanged" nothing without an instance to change.
    if let Some(why) = no_instance(&new) {
        let why = format!("setup: newInstance {why}");
        r.skip_after("setup: queryInstance", Family::ResultCode, &why);
        for (check, own) in checks(v1) {
            r.skip_after(&check, Family::RefusesBadRequests, own.unwrap_or(&why));
        }
        return kit_and_license(r);
    }
    let before = r.call("queryInstance", None, &ctx, &[], Tamper::None);
    r.expect_code(
        &before,
        "setup: queryInstance".into(),
        OK,
        Family::ResultCode,
    );
    // The replay and the comparison afterwards need the instance listed first.
    let unlisted = match went_wrong(&before) {
        Some(why) => Some(why),
        None => before
            .as_ref()
            .filter(|b| b.outcome.is_ok() && !lists_instance(b, &id))
            .map(|_| format!("answered {OK} without listing {id}")),
    }
    .map(|why| format!("setup: queryInstance {why}"));
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
    } else if let Some(why) = &unlisted {
        r.skip_after(REPLAYED, refused, why);
    } else if let Some(b) = &before {
        let req = b.request.clone();
        let ex = r.send(&req);
        r.expect_code(&ex, REPLAYED.into(), "000001", refused);
    }
    let mut unknown = ctx.clone();
    unknown.instance_id = Some(r.t.entropy.uuid());
    let ex = r.call("releaseInstance", None, &unknown, &[], Tamper::None);
    r.expect_code(
        &ex,
        "releaseInstance, unknown instance".into(),
        "000003",
        refused,
    );
    // The refused calls must not have changed anything.
    if let Some(why) = &unlisted {
        r.skip_after(UNCHANGED, refused, why);
        return kit_and_license(r);
    }
    let after = r.call("queryInstance", None, &ctx, &[], Tamper::None);
    if let (Some(b), Some(a)) = (&before, &after) {
        if a.outcome.is_err() || b.outcome.is_err() {
            r.no_reply(UNCHANGED.into(), refused);
        } else {
            // Listed before (checked above): still listed, with the same answer.
            let same_code = judge::result_code(a) == judge::result_code(b);
            let listed = lists_instance(a, &id);
            let rule = if same_code && listed {
                Rule::pass(refused, "instance unchanged", "unchanged")
            } else {
                Rule::fail(
                    refused,
                    format!("queryInstance still lists {id}"),
                    format!(
                        "{} {}",
                        judge::result_code(a).unwrap_or_else(|| "no resultCode".into()),
                        if listed { "listed" } else { "not listed" }
                    ),
                    "a refused callback must not act: verify before touching state",
                )
            };
            r.row(UNCHANGED.into(), rule, String::new());
        }
    }
    kit_and_license(r);
}

const REPLAYED: &str = "queryInstance replayed (same nonce): refused";
const UNCHANGED: &str = "state unchanged afterwards";

/// The checks after the setup, by name, for their skip rows when the setup failed; with
/// their own reason where V1 skips them anyway.
fn checks(v1: bool) -> Vec<(String, Option<&'static str>)> {
    let mut out = vec![
        (
            "releaseInstance, tampered signature: refused".to_string(),
            None,
        ),
        if v1 {
            (
                "releaseInstance, stale timestamp (10 min old)".into(),
                Some("V1 has no timestamp window"),
            )
        } else {
            (
                "releaseInstance, stale timestamp (10 min old): refused".into(),
                None,
            )
        },
        ("releaseInstance, missing signature: refused".into(), None),
        if v1 {
            (
                "queryInstance replayed: refused".into(),
                Some("V1 has no nonce"),
            )
        } else {
            (REPLAYED.into(), None)
        },
    ];
    out.push(("releaseInstance, unknown instance".into(), None));
    out.push((UNCHANGED.into(), None));
    out
}

/// Kit and License refusals: their own calls, each family after one correctly signed call
/// that must be accepted (a tenantSync add of the tenant the refusals then try to delete, a
/// releaseLicenseCode of the code they then try to release: a repeated release is a
/// success). An endpoint that refuses that call too proves nothing by refusing the others:
/// they are then skipped, and not sent.
fn kit_and_license(r: &mut Runner) {
    if r.has_kit() {
        let mut kit = r.ctx();
        kit.flag = Some(1);
        let add = r.call("tenantSync", None, &kit, &[], Tamper::None);
        kit.flag = Some(0);
        refusals(
            r,
            &add,
            "setup: tenantSync add",
            "tenantSync",
            "tenantSync delete",
            &kit,
            &[
                (Tamper::BadSignature, "tampered signature"),
                (Tamper::MissingSignature, "missing signature"),
            ],
        );
    }
    if r.has_license() {
        let lic = r.ctx();
        let release = r.call("releaseLicenseCode", None, &lic, &[], Tamper::None);
        refusals(
            r,
            &release,
            "setup: releaseLicenseCode",
            "releaseLicenseCode",
            "releaseLicenseCode",
            &lic,
            &[
                (Tamper::BadSignature, "tampered signature"),
                (Tamper::StaleTimestamp, "stale timestamp"),
            ],
        );
    } else if r.t.keys.license.is_some() {
        r.skip_row(
            "releaseLicenseCode: refused",
            Family::RefusesBadRequests,
            LICENSE_NEEDS_CODE,
        );
    }
}

/// The row of the setup call `setup` (which must answer 000000), then `name` sent with each
/// tamper (which must be refused with 000001), or skipped, naming the setup, when the setup
/// did not go through.
fn refusals(
    r: &mut Runner,
    setup: &Option<Exchange>,
    step: &str,
    name: &str,
    title: &str,
    ctx: &Ctx,
    cases: &[(Tamper, &str)],
) {
    let refused = Family::RefusesBadRequests;
    r.expect_code(setup, step.into(), OK, Family::ResultCode);
    let failed = went_wrong(setup).map(|why| format!("{step} {why}"));
    for (tamper, what) in cases {
        let check = format!("{title}, {what}: refused");
        if let Some(why) = &failed {
            r.skip_after(&check, refused, why);
            continue;
        }
        let ex = r.call(name, None, ctx, &[], *tamper);
        r.expect_code(&ex, check, "000001", refused);
    }
}
