//! Dial: the cases saved on the seller center's debugging page, replayed twice.

use super::{instance_of, no_instance, v, went_wrong, Runner, OK};
use crate::catalog::{self, Protocol};
use crate::endpoint::client::Exchange;
use crate::endpoint::judge::Family;
use crate::endpoint::request::Tamper;
use serde_json::Value;

/// The saved debug cases, replayed "morning" and "afternoon" as the dial test does: the
/// afternoon sends the morning's fields again, with a fresh signature, timestamp and nonce.
pub(super) fn run(r: &mut Runner) {
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
    // The morning's calls, each with why the afternoon cannot compare with it, if it cannot.
    let mut morning: Vec<(Option<Exchange>, Option<String>)> = Vec::new();
    let mut lost: Option<String> = None;
    for (name, scene) in &cases {
        let title = title(name, *scene);
        let check = format!("morning: {title}");
        // Everything but newInstance, the Kit and the License cases acts on the instance.
        let on_instance = *name != "newInstance"
            && catalog::find(name, r.t.protocol).is_some_and(|cb| {
                matches!(
                    cb.family,
                    catalog::Family::V2Basic | catalog::Family::V1Basic
                )
            });
        if let (true, Some(why)) = (on_instance, &lost) {
            r.skip_after(&check, Family::ResultCode, why);
            let why = format!("the morning call was not made ({why})");
            morning.push((None, Some(why)));
            continue;
        }
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
        if *name == "newInstance" {
            if let Some(id) = ex.as_ref().and_then(instance_of) {
                ctx.instance_id = Some(id);
            }
            lost =
                no_instance(&ex).map(|why| format!("no instance: the morning newInstance {why}"));
        }
        r.expect_code(&ex, check, OK, Family::ResultCode);
        let why =
            went_wrong(&ex).map(|why| format!("the morning call {why}: nothing to compare with"));
        morning.push((ex, why));
    }
    // The afternoon replays exactly what the morning sent: only the signature, the
    // timestamp and the nonce are new.
    for ((name, scene), (first, why)) in cases.iter().zip(&morning) {
        let check = format!("afternoon: {} as in the morning", title(name, *scene));
        if let Some(why) = why {
            r.skip_after(&check, Family::Idempotent, why);
            continue;
        }
        let Some(saved) = first else { continue };
        let ex = r.replay(&saved.request);
        r.expect_same(first, &ex, check);
    }
}

fn title(name: &str, scene: Option<&str>) -> String {
    match scene {
        Some(s) => format!("{name} {s}"),
        None => name.to_string(),
    }
}
