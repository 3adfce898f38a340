//! Dial: the cases saved on the seller center's debugging page, replayed twice.

use super::{instance_of, v, Runner, OK};
use crate::catalog::Protocol;
use crate::endpoint::client::Exchange;
use crate::endpoint::judge::Family;
use crate::endpoint::request::Tamper;
use serde_json::Value;

/// The saved debug cases, replayed "morning" and "afternoon" as the dial test does: each
/// replay has a fresh businessId, nonce and timestamp but the saved values otherwise.
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
