//! What a load run measured: two HDR histograms (latency from the intended start, and
//! service time from the actual send) and the counts by status, code, error and rule.

use crate::net::NetKind;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Microseconds, 1 µs to 1 h, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// The resultCode of a callback that did what it was asked.
pub const OK: &str = "000000";

/// Error kinds of requests never sent: no free connection within the budget, or a request
/// that could not be built.
pub const QUEUED: &str = "queued";
pub const PREPARE: &str = "prepare";
pub const NOT_SENT: [&str; 2] = [QUEUED, PREPARE];

/// A call succeeded: HTTP 200, resultCode [`OK`], and nothing the judge rejects (a reply
/// the marketplace would refuse, a Body-Sign that does not verify say, fails the call).
pub fn succeeded(status: u16, code: Option<&str>, rejected: &[&str]) -> bool {
    status == 200 && code == Some(OK) && rejected.is_empty()
}

#[derive(Debug, Clone)]
pub struct Stats {
    /// From each request's intended start to its end (coordinated omission corrected), but
    /// for requests that failed before going out (see [`Ended`]).
    pub latency: Histogram<u64>,
    /// From the moment the request was handed to a connection to its end.
    pub service: Histogram<u64>,
    /// Requests that ended (answered or not).
    pub requests: u64,
    /// Ended without a reply, with an HTTP status other than 200, a resultCode other than
    /// 000000, or a reply the judge rejects (as the marketplace would refuse it).
    pub failed: u64,
    pub by_http_status: BTreeMap<String, u64>,
    pub by_result_code: BTreeMap<String, u64>,
    /// Requests without a reply, by kind (timeout, reset, connect, tls, protocol, queued,
    /// prepare).
    pub errors: BTreeMap<&'static str, u64>,
    /// Replies the judge rejects, by rule (result-code, json-body, body-sign, ...).
    pub rejected: BTreeMap<&'static str, u64>,
    pub by_activity: BTreeMap<String, u64>,
    /// Failed requests per activity (only those with a failure).
    pub failed_by_activity: BTreeMap<String, u64>,
    /// The latency of the requests ended since the last [`Stats::take_interval`].
    pub interval: Histogram<u64>,
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
            failed_by_activity: BTreeMap::new(),
            interval: histogram(),
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
    /// The judge's failed rules for a reply (none without one: that is an error).
    pub rejected: &'a [&'static str],
}

impl Ended<'_> {
    fn kind(&self) -> Option<&'static str> {
        self.outcome.as_ref().err().copied()
    }

    /// Whether its time is a latency. Not for a request that failed before it went out (a
    /// refused connection, a failed TLS handshake, one never built): that time says how fast
    /// the failure came, and would pull the percentiles down for an endpoint down half the
    /// run. A wait for a free connection (`queued`), a timeout and a failure mid-exchange
    /// (`reset`, `protocol`) are: the caller waited.
    fn waited(&self) -> bool {
        let before_sending = [NetKind::Connect.id(), NetKind::Tls.id(), PREPARE];
        !self.kind().is_some_and(|k| before_sending.contains(&k))
    }

    /// Whether it has a service time: it waited on a connection.
    fn served(&self) -> bool {
        self.waited() && self.kind() != Some(QUEUED)
    }
}

impl Stats {
    pub fn add(&mut self, e: Ended) {
        self.requests += 1;
        if e.waited() {
            self.latency.saturating_record(micros(e.latency));
            self.interval.saturating_record(micros(e.latency));
        }
        if e.served() {
            self.service.saturating_record(micros(e.service));
        }
        *self.by_activity.entry(e.activity.clone()).or_default() += 1;
        let ok = match e.outcome {
            Err(kind) => {
                *self.errors.entry(kind).or_default() += 1;
                false
            }
            Ok((status, code)) => {
                *self.by_http_status.entry(status.to_string()).or_default() += 1;
                let ok = succeeded(status, code.as_deref(), e.rejected);
                *self
                    .by_result_code
                    .entry(code.unwrap_or_else(|| "none".into()))
                    .or_default() += 1;
                ok
            }
        };
        if !ok {
            self.failed += 1;
            *self.failed_by_activity.entry(e.activity).or_default() += 1;
        }
        for r in e.rejected {
            *self.rejected.entry(r).or_default() += 1;
        }
    }

    /// The interval histogram so far; a new interval starts empty.
    pub fn take_interval(&mut self) -> Histogram<u64> {
        let h = self.interval.clone();
        self.interval.reset();
        h
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

/// One interval of an HdrHistogram interval log (the line `HistogramLogProcessor` and the
/// plotting tools read): `start` from the run's start, latency in microseconds.
pub fn interval_line(h: &Histogram<u64>, start: Duration, length: Duration) -> String {
    let mut out = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    // A writer with no header writes just the interval's line.
    let written = IntervalLogWriterBuilder::new()
        .begin_log_with(&mut out, &mut ser)
        .map_err(|e| e.to_string())
        .and_then(|mut w| {
            w.write_histogram(h, start, length, None)
                .map_err(|e| format!("{e:?}"))
        });
    match written {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        // Serialising into memory does not fail; a note keeps the log readable if it did.
        Err(e) => format!(
            "#interval at {:.3} s not written: {e}\n",
            start.as_secs_f64()
        ),
    }
}

/// The whole interval log: the header (StartTime and BaseTime: the run's start), the legend,
/// then the intervals.
pub fn interval_log(started: SystemTime, lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    let header = IntervalLogWriterBuilder::new()
        .add_comment("[Histogram log format version 1.3]")
        .add_comment("csm load: latency from each request's intended start, in microseconds")
        .with_start_time(started)
        .with_base_time(started)
        .begin_log_with(&mut out, &mut ser)
        .map(|_| ());
    debug_assert!(header.is_ok());
    out.extend_from_slice(
        b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
    );
    for l in lines {
        out.extend_from_slice(l.as_bytes());
    }
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
            rejected: &[],
        });
        assert_eq!((s.requests, s.failed, s.replies()), (4, 3, 3));
        // A reply with resultCode 000000 that the judge rejects fails too.
        s.add(Ended {
            activity: "queryInstance".into(),
            latency: Duration::from_millis(5),
            service: Duration::from_millis(4),
            outcome: Ok((200, Some("000000".into()))),
            rejected: &["body-sign"],
        });
        assert_eq!((s.requests, s.failed), (5, 4));
        assert_eq!(s.rejected["body-sign"], 1);
        assert_eq!(s.failed_by_activity["newInstance"], 3);
        assert_eq!(s.failed_by_activity["queryInstance"], 1);
        assert_eq!(s.by_result_code["000001"], 1);
        assert_eq!(s.errors["timeout"], 1);
        assert!((s.error_ratio() - 0.8).abs() < 1e-12);
        let max = ms_at(&s.latency, 100.0);
        assert!((max - 5000.0).abs() < 5.0, "{max}");
        let h = s.take_interval();
        assert_eq!((h.len(), s.interval.len()), (5, 0));
    }

    #[test]
    fn failures_before_sending_are_no_latencies() {
        let mut s = Stats::default();
        let ended = |latency_ms: u64, service_ms: u64, outcome| Ended {
            activity: "newInstance".into(),
            latency: Duration::from_millis(latency_ms),
            service: Duration::from_millis(service_ms),
            outcome,
            rejected: &[],
        };
        s.add(ended(300, 300, Ok((200, Some(OK.into())))));
        // Failed before going out: failures, but no time anyone waited for a reply.
        for kind in ["connect", "tls", PREPARE] {
            s.add(ended(1, 1, Err(kind)));
        }
        assert_eq!(
            (s.latency.len(), s.service.len(), s.interval.len()),
            (1, 1, 1)
        );
        assert!((ms_at(&s.latency, 50.0) - 300.0).abs() < 1.0);
        // Out of time or cut off on the wire, or waiting for a connection: latency; all but
        // the last were served.
        s.add(ended(5000, 5000, Err(NetKind::Timeout.id())));
        s.add(ended(2000, 2000, Err("reset")));
        s.add(ended(2000, 2000, Err("protocol")));
        s.add(ended(5000, 0, Err(QUEUED)));
        assert_eq!((s.latency.len(), s.service.len()), (5, 4));
        assert_eq!((s.requests, s.failed), (8, 7));
    }

    #[test]
    fn the_interval_log_reads_back() {
        use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
        use hdrhistogram::serialization::Deserializer;
        let mut h = histogram();
        for us in [1_000, 2_000, 900_000] {
            h.record(us).unwrap();
        }
        let lines = [
            interval_line(&h, Duration::ZERO, Duration::from_secs(1)),
            interval_line(&histogram(), Duration::from_secs(1), Duration::from_secs(1)),
        ];
        let log = interval_log(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            &lines,
        );
        let mut intervals = Vec::new();
        for e in IntervalLogIterator::new(&log) {
            if let LogEntry::Interval(i) = e.unwrap() {
                intervals.push((i.start_timestamp(), i.encoded_histogram().to_string()));
            }
        }
        assert_eq!(intervals.len(), 2);
        assert_eq!(intervals[1].0, Duration::from_secs(1));
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&intervals[0].1)
            .unwrap();
        let back: Histogram<u64> = Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .unwrap();
        assert_eq!((back.len(), back.max()), (3, h.max()));
    }
}
