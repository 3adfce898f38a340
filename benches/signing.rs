//! Absolute times of sign and verify for each scheme, with the raw HMAC-SHA256 work of the
//! same bytes beside them (criterion; the cases are in `signing_cases`). The overhead ratios
//! come from `benches/signing_overhead.rs`, which interleaves the three so that a slower
//! moment of the machine weighs on all of them alike.

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::{Duration, Instant};

mod signing_cases;

fn signing(c: &mut Criterion) {
    for case in signing_cases::all() {
        let mut g = c.benchmark_group(case.scheme);
        for (name, run) in [
            ("raw_hmac", &case.raw_hmac),
            ("csm_sign", &case.csm_sign),
            ("csm_verify", &case.csm_verify),
        ] {
            g.bench_function(name, |b| {
                b.iter_custom(|n| {
                    let start = Instant::now();
                    run(n);
                    start.elapsed()
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = signing
}
criterion_main!(benches);
