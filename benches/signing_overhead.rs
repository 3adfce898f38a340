//! csm's overhead over the raw HMAC-SHA256 work of each scheme, as ratios measured in the
//! same run. Raw, sign and verify are timed in short interleaved rounds (in a rotating
//! order), each round gives a ratio, and the median round counts: a machine that speeds up
//! or slows down moves all three alike. Where code and data happen to lie in memory moves
//! these timings by several percent from one process to the next, so the measurement runs
//! in several processes and the median process is reported, with the range seen.
//!
//! `cargo bench --bench signing_overhead [-- SECONDS_PER_SCHEME [PROCESSES] [SCHEME]]`
//! (2 and 5, every scheme).

use std::time::{Duration, Instant};

mod signing_cases;

/// Calls per timed stretch: long enough for the clock, short against the machine's drift.
const CALLS: u64 = 200;
const CHILD: &str = "CSM_SIGNING_OVERHEAD_CHILD";

fn time(run: &signing_cases::Run) -> f64 {
    let start = Instant::now();
    run(CALLS);
    start.elapsed().as_nanos() as f64 / CALLS as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One process's figures: per scheme, raw, sign and verify ns and the two ratios.
fn measure(seconds: f64, only: Option<&str>) {
    let cases = signing_cases::all().into_iter();
    for case in cases.filter(|c| only.is_none_or(|s| s == c.scheme)) {
        let runs = [&case.raw_hmac, &case.csm_sign, &case.csm_verify];
        // Warm-up: caches, branch predictors, the clock.
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_millis(200) {
            runs.iter().for_each(|r| r(CALLS));
        }
        let mut rounds: [Vec<f64>; 5] = Default::default();
        let start = Instant::now();
        let mut round = 0usize;
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            let mut ns = [0.0; 3];
            for k in 0..3 {
                let i = (round + k) % 3;
                ns[i] = time(runs[i]);
            }
            round += 1;
            for (column, value) in
                rounds
                    .iter_mut()
                    .zip([ns[0], ns[1], ns[2], ns[1] / ns[0], ns[2] / ns[0]])
            {
                column.push(value);
            }
        }
        let figures: Vec<String> = rounds.iter_mut().map(|c| median(c).to_string()).collect();
        println!("{} {}", case.scheme, figures.join(" "));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<f64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    // cargo passes flags of its own (`--bench`); a word that is neither is a scheme.
    let only = args
        .iter()
        .find(|a| !a.starts_with('-') && a.parse::<f64>().is_err());
    let seconds = numbers.first().copied().unwrap_or(2.0);
    if std::env::var_os(CHILD).is_some() {
        measure(seconds, only.map(String::as_str));
        return;
    }
    let schemes: Vec<&str> = signing_cases::all().iter().map(|c| c.scheme).collect();
    if let Some(unknown) = only.filter(|s| !schemes.contains(&s.as_str())) {
        eprintln!(
            "scheme {unknown:?}: not measured here (one of {})",
            schemes.join(", ")
        );
        std::process::exit(2);
    }
    let processes = numbers.get(1).map_or(5, |&p| p.max(1.0) as usize);
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let mut by_scheme: Vec<(String, [Vec<f64>; 5])> = Vec::new();
    for _ in 0..processes {
        let out = std::process::Command::new(&exe)
            .arg(seconds.to_string())
            .args(only)
            .env(CHILD, "1")
            .output()
            .expect("run a measuring process");
        assert!(out.status.success(), "a measuring process failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut fields = line.split_whitespace();
            let scheme = fields.next().expect("a scheme name").to_string();
            let values: Vec<f64> = fields.map(|f| f.parse().expect("a number")).collect();
            let at = match by_scheme.iter().position(|(s, _)| *s == scheme) {
                Some(i) => i,
                None => {
                    by_scheme.push((scheme, Default::default()));
                    by_scheme.len() - 1
                }
            };
            for (column, v) in by_scheme[at].1.iter_mut().zip(values) {
                column.push(v);
            }
        }
    }
    println!(
        "{:<10} {:>7} {:>8} {:>16} {:>9} {:>16}",
        "scheme", "raw_ns", "sign_ns", "sign/raw", "verify_ns", "verify/raw"
    );
    for (scheme, mut columns) in by_scheme {
        let range = |c: &[f64]| {
            let (lo, hi) = c
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            format!("{lo:.2}–{hi:.2}")
        };
        let (sign_range, verify_range) = (range(&columns[3]), range(&columns[4]));
        let m: Vec<f64> = columns.iter_mut().map(|c| median(c)).collect();
        println!(
            "{:<10} {:>7.0} {:>8.0} {:>5.2}x {:>10} {:>9.0} {:>5.2}x {:>10}",
            scheme, m[0], m[1], m[3], sign_range, m[2], m[4], verify_range
        );
    }
}
