//! Readiness: the production-address rules (`judge::readiness_rules`) over what the run saw.

use super::Runner;
use crate::endpoint::judge::readiness_rules;
use crate::endpoint::request::Tamper;
use crate::net::proxy::is_loopback;

pub(super) fn run(r: &mut Runner) {
    let url = r.t.endpoint.clone();
    // Run alone, readiness still needs one exchange to judge TLS and latency by: a query
    // for an instance that does not exist changes nothing.
    if r.calls == 0 && !is_loopback(&url) {
        let mut ctx = r.ctx();
        ctx.instance_id = Some(r.t.entropy.uuid());
        let _ = r.call("queryInstance", None, &ctx, &[], Tamper::None);
    }
    for (check, rule) in readiness_rules(&url, &r.seen, r.t.ca_pem.is_some()) {
        r.row(check, rule, String::new());
    }
}
