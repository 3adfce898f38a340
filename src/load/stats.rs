//! What a load run measured: two HDR histograms (latency from the intended start, and
//! service time from the actual send) and the counts by status, code, error and rule.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Microseconds, 1 µs to 1 h, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug, Clone)]
pub struct Stats {
    /// From each request's intended start to its end (coordinated omission corrected).
    pub latency: Histogram<u64>,
    /// From the moment the request was handed to a connection to its end.
    pub service: Histogram<u64>,
    /// Requests that ended (answered or not).
    pub requests: u64,
    /// Ended without a reply, with an HTTP status other than 200, or a resultCode other
    /// than 000000.
    pub failed: u64,
    pub by_http_status: BTreeMap<String, u64>,
    pub by_result_code: BTreeMap<String, u64>,
    /// Requests without a reply, by kind (timeout, refused, reset, connect, protocol, queued).
    pub errors: BTreeMap<&'static str, u64>,
    /// Replies the judge rejects, by rule (result-code, json-body, body-sign, ...).
    pub rejected: BTreeMap<&'static str, u64>,
    pub by_activity: BTreeMap<String, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: histogram(),
            service: histogram(),
            requests: 0,
            failed: 0,
            by_http_status: BTreeMap::new(),
            by_result_code: BTreeMap::new(),
            errors: BTreeMap::new(),
            rejected: BTreeMap::new(),
            by_activity: BTreeMap::new(),
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// One ended request.
pub struct Ended<'a> {
    pub activity: String,
    pub latency: Duration,
    pub service: Duration,
    pub outcome: Result<(u16, Option<String>), &'static str>,
    pub rejected: &'a [&'static str],
}

impl Stats {
    pub fn add(&mut self, e: Ended) {
        self.requests += 1;
        self.latency.saturating_record(micros(e.latency));
        self.service.saturating_record(micros(e.service));
        *self.by_activity.entry(e.activity).or_default() += 1;
        let ok = match e.outcome {
            Err(kind) => {
                *self.errors.entry(kind).or_default() += 1;
                false
            }
            Ok((status, code)) => {
                *self.by_http_status.entry(status.to_string()).or_default() += 1;
                let code_ok = code.as_deref() == Some("000000");
                *self
                    .by_result_code
                    .entry(code.unwrap_or_else(|| "none".into()))
                    .or_default() += 1;
                status == 200 && code_ok
            }
        };
        if !ok {
            self.failed += 1;
        }
        for r in e.rejected {
            *self.rejected.entry(r).or_default() += 1;
        }
    }

    /// Replies received (any status).
    pub fn replies(&self) -> u64 {
        self.by_http_status.values().sum()
    }

    /// Failed over ended requests (1 when none ended: nothing proves the endpoint works).
    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            1.0
        } else {
            self.failed as f64 / self.requests as f64
        }
    }
}

/// A percentile of `h` in ms (quantile 1.0 is the maximum); 0 when empty.
pub fn ms_at(h: &Histogram<u64>, percentile: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    let us = if percentile >= 100.0 {
        h.max()
    } else {
        h.value_at_quantile(percentile / 100.0)
    };
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p999", 99.9),
    ("max", 100.0),
];

pub fn percentiles_json(h: &Histogram<u64>) -> Value {
    let mut m = Map::new();
    for (k, p) in PERCENTILES {
        m.insert(k.into(), json!(ms_at(h, p)));
    }
    Value::Object(m)
}

pub fn counts_json<K: ToString>(m: &BTreeMap<K, u64>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
}

/// The histogram as an HdrHistogram percentile distribution (the `.hgrm` text that
/// HdrHistogram's plotter reads), values in ms.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if h.is_empty() {
        return out;
    }
    for v in h.iter_quantiles(1) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - q))
        } else {
            format!("{:>14}", "inf")
        };
        out.push_str(&format!(
            "{:>12.3} {:>14.12} {:>10} {}\n",
            v.value_iterated_to() as f64 / 1000.0,
            q,
            v.count_since_last_iteration(),
            inv
        ));
        if q >= 1.0 {
            break;
        }
    }
    out.push_str(&format!(
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]\n#[Max     = {:>12.3}, Total count    = {:>12}]\n#[Buckets = {:>12}, SubBuckets     = {:>12}]\n",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len(),
        h.buckets(),
        h.distinct_values()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_failures_count_as_failed() {
        let mut s = Stats::default();
        for (status, code) in [(200, "000000"), (200, "000001"), (500, "000000")] {
            s.add(Ended {
                activity: "newInstance".into(),
                latency: Duration::from_millis(5),
                service: Duration::from_millis(4),
                outcome: Ok((status, Some(code.into()))),
                rejected: &[],
            });
        }
        s.add(Ended {
            activity: "newInstance".into(),
            latency: Duration::from_secs(5),
            service: Duration::from_secs(5),
            outcome: Err("timeout"),
            rejected: &["reachable"],
        });
        assert_eq!((s.requests, s.failed, s.replies()), (4, 3, 3));
        assert_eq!(s.by_result_code["000001"], 1);
        assert_eq!(s.errors["timeout"], 1);
        assert!((s.error_ratio() - 0.75).abs() < 1e-12);
        let max = ms_at(&s.latency, 100.0);
        assert!((max - 5000.0).abs() < 5.0, "{max}");
        assert!(hgrm(&s.latency).contains("Total count    =            4"));
    }
}
