//! The result of a load run: thresholds judged, the `--json` object (docs/load.schema.json)
//! and the text summary (pure).

use super::schedule::Schedule;
use super::stats::{self, counts_json, ms_at, percentiles_json, Stats, PERCENTILES};
use super::threshold::{Metric, Op, Threshold};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Verdict {
    pub expr: String,
    pub metric: Metric,
    pub value: f64,
    pub pass: bool,
    /// The comparison as applied (`rate>=98%` is read as 0.98): shown beside the value.
    pub op: Op,
    pub limit: f64,
}

impl Verdict {
    /// A value of this metric with its unit (ms or s, per cent).
    fn shown(&self, v: f64) -> String {
        match self.metric {
            Metric::Latency(_) => fmt_ms(v),
            Metric::Errors | Metric::Rate => format!("{:.3}%", v * 100.0),
        }
    }
}

#[derive(Debug)]
pub struct Report {
    pub endpoint: String,
    pub protocol: &'static str,
    pub mix: String,
    pub connections: usize,
    /// None for `--rate max`.
    pub rate_target: Option<f64>,
    /// `--ramp`: the schedule's rise to the target.
    pub ramp: Duration,
    pub started: u64,
    pub elapsed: Duration,
    pub sending: Duration,
    /// `--scenario lifecycle`: virtual orders started, and run to their release.
    pub orders: Option<(u64, u64)>,
    /// Kept-alive connections found closed by the endpoint (replaced as needed).
    pub reconnects: u64,
    pub stats: Stats,
    pub thresholds: Vec<Verdict>,
    pub interrupted: bool,
    pub error: Option<String>,
}

impl Report {
    /// Requests handed to a connection: started, less those that found no free connection
    /// within the budget or could not be built.
    pub fn sent(&self) -> u64 {
        let unsent: u64 = stats::NOT_SENT
            .iter()
            .filter_map(|k| self.stats.errors.get(k))
            .sum();
        self.started.saturating_sub(unsent)
    }

    /// Requests sent per second over the sending period (ended per second for max).
    pub fn rate_achieved(&self) -> f64 {
        let secs = self.sending.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        let n = if self.rate_target.is_some() {
            self.sent()
        } else {
            self.stats.requests
        };
        (n as f64 / secs * 100.0).round() / 100.0
    }

    /// The measured value a threshold compares (ms, or a fraction).
    fn answered(&self) -> bool {
        self.stats.replies() > 0
    }

    /// Whether the run measured `metric`: with no reply at all, the times to failure are no
    /// latency (the text says none, and a latency bound fails).
    fn measured(&self, metric: Metric) -> bool {
        self.answered() || !matches!(metric, Metric::Latency(_))
    }

    pub fn value_of(&self, t: &Threshold) -> f64 {
        match t.metric {
            Metric::Latency(p) => ms_at(&self.stats.latency, p),
            Metric::Errors => self.stats.error_ratio(),
            // Requests sent against the starts the schedule planned by then (whole ones), so
            // that a ramp's slow start is no shortfall, and a request never sent is.
            Metric::Rate => match self.rate_target {
                Some(rate) if rate > 0.0 => {
                    // The starts due by the last one (the sending period less the interval
                    // after it), and that one. Not the count by the period's end: within a
                    // ramp, one interval of the full rate holds less than one start.
                    let last = self
                        .sending
                        .saturating_sub(Duration::from_secs_f64(1.0 / rate));
                    let schedule = Schedule {
                        rate,
                        ramp: self.ramp,
                    };
                    let planned = (schedule.count_by(last) + 1e-6).floor() + 1.0;
                    if planned > 0.0 {
                        self.sent() as f64 / planned
                    } else {
                        0.0
                    }
                }
                _ => 0.0,
            },
        }
    }

    pub fn judge(&mut self, thresholds: &[Threshold]) {
        self.thresholds = thresholds
            .iter()
            .map(|t| {
                let value = self.value_of(t);
                Verdict {
                    expr: t.expr.clone(),
                    metric: t.metric,
                    value: (value * 1e6).round() / 1e6,
                    pass: self.measured(t.metric) && t.passes(value),
                    op: t.op,
                    limit: t.limit,
                }
            })
            .collect();
    }

    /// When most failed requests share a resultCode that points at the keys or the protocol
    /// (`000001`, `000002`), what to check, as test-endpoint says it. Only failures count:
    /// 20 wrong Kit signatures among 120 successes still get their line.
    pub fn likely_cause(&self) -> Option<String> {
        let s = &self.stats;
        let (code, n) = s
            .by_result_code
            .iter()
            .filter(|(code, _)| code.as_str() != crate::load::stats::OK)
            .max_by_key(|(_, n)| **n)?;
        if *n * 5 < s.failed * 3 {
            return None;
        }
        let cause = crate::endpoint::report::code_cause(code, self.protocol == "v1")?;
        Some(format!(
            "{n} of {} failed requests answered {code}: {cause}",
            s.failed
        ))
    }

    pub fn thresholds_pass(&self) -> bool {
        self.thresholds.iter().all(|v| v.pass)
    }

    pub fn json(&self, exit: u8) -> Value {
        let s = &self.stats;
        json!({
            "schema": "csm.load/1",
            "endpoint": self.endpoint,
            "protocol": self.protocol,
            "activities": self.mix,
            "connections": self.connections,
            "requests": s.requests,
            "started": self.started,
            "sent": self.sent(),
            "duration_s": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "rate_target": self.rate_target,
            "rate_achieved": self.rate_achieved(),
            // With no reply, the times to failure are no latency (the text says none).
            "latency_ms": self.answered().then(|| percentiles_json(&s.latency)),
            "service_ms": self.answered().then(|| percentiles_json(&s.service)),
            "failed": s.failed,
            "failed_by_activity": counts_json(&s.failed_by_activity),
            "likely": self.likely_cause(),
            "by_http_status": counts_json(&s.by_http_status),
            "by_result_code": counts_json(&s.by_result_code),
            "errors": counts_json(&s.errors),
            "rejected": counts_json(&s.rejected),
            "by_activity": counts_json(&s.by_activity),
            "orders": self.orders.map(|(started, completed)| json!({
                "started": started, "completed": completed
            })),
            "reconnects": self.reconnects,
            "thresholds": self.thresholds.iter().map(|v| json!({
                "expr": v.expr,
                "value": self.measured(v.metric).then_some(v.value),
                "pass": v.pass
            })).collect::<Vec<_>>(),
            "interrupted": self.interrupted,
            "error": self.error,
            "exit_code": exit,
        })
    }

    pub fn text(&self) -> String {
        let s = &self.stats;
        let counts = |m: &std::collections::BTreeMap<String, u64>| -> String {
            if m.is_empty() {
                return "none".into();
            }
            m.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let strs = |m: &std::collections::BTreeMap<&'static str, u64>| -> String {
            counts(&m.iter().map(|(k, v)| (k.to_string(), *v)).collect())
        };
        let pct = |h| {
            PERCENTILES
                .iter()
                .map(|(k, p)| format!("{k} {}", fmt_ms(ms_at(h, *p))))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let target = match self.rate_target {
            Some(r) => format!("target {}, ", fmt_rate(r)),
            None => "closed loop, ".into(),
        };
        let mut out = format!(
            "{} in {:.2} s to {} ({}; {}achieved {}; {})\n",
            crate::output::plural(s.requests, "request"),
            self.elapsed.as_secs_f64(),
            self.endpoint,
            self.protocol,
            target,
            fmt_rate(self.rate_achieved()),
            crate::output::plural(self.connections as u64, "connection"),
        );
        // Times to a failure are no latencies a seller can read anything from.
        if !self.answered() {
            out.push_str("  latency   none (no request was answered)\n");
        } else {
            out.push_str(&format!("  latency   {}\n", pct(&s.latency)));
            out.push_str(&format!("  service   {}\n", pct(&s.service)));
        }
        out.push_str(&format!("  HTTP      {}\n", counts(&s.by_http_status)));
        out.push_str(&format!("  result    {}\n", counts(&s.by_result_code)));
        // Not "errors": that is the threshold's name for every failed request.
        out.push_str(&format!("  no reply  {}\n", strs(&s.errors)));
        out.push_str(&format!("  rejected  {}\n", strs(&s.rejected)));
        if let Some((started, completed)) = self.orders {
            out.push_str(&format!(
                "  orders    {started} started, {completed} run to their release\n"
            ));
        }
        if self.reconnects > 0 {
            out.push_str(&format!(
                "  reconnects {} (kept-alive connections the endpoint closed)\n",
                self.reconnects
            ));
        }
        // Which activities failed, when the run sent more than one.
        let per_activity = if s.by_activity.len() > 1 && s.failed > 0 {
            format!("; {}", counts(&s.failed_by_activity))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  failed    {} of {} ({:.2}%{per_activity})\n",
            s.failed,
            s.requests,
            s.error_ratio() * 100.0
        ));
        if let Some(cause) = self.likely_cause() {
            out.push_str(&format!("  likely    {cause}\n"));
        }
        if self.interrupted {
            out.push_str("  stopped   interrupted (Ctrl-C): the results so far\n");
        }
        for v in &self.thresholds {
            let value = if self.measured(v.metric) {
                v.shown(v.value)
            } else {
                "none".to_string()
            };
            out.push_str(&format!(
                "  threshold {:<16} {:>12} {:<2} {:<12} {}\n",
                v.expr,
                value,
                v.op.symbol(),
                v.shown(v.limit),
                if v.pass { "pass" } else { "FAIL" }
            ));
        }
        out
    }
}

/// A time as the text report shows it: about three significant digits.
fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        // Microseconds, so that one line's sub-millisecond values read alike (0.090, 0.100)
        // and a bound of 0.05 ms is not "0.0 ms".
        format!("{ms:.3} ms")
    }
}

/// A rate as the text report shows it: whole requests a second from 100/s, else one decimal.
fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}/s")
    } else {
        format!("{r:.1}/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::Ended;

    fn report(codes: &[(&str, u64)]) -> Report {
        let mut stats = Stats::default();
        for (code, n) in codes {
            for _ in 0..*n {
                stats.add(Ended {
                    activity: "tenantSync".into(),
                    latency: Duration::from_millis(2),
                    service: Duration::from_millis(1),
                    outcome: Ok((200, Some(code.to_string()))),
                    rejected: &[],
                });
            }
        }
        Report {
            endpoint: "http://127.0.0.1:9/produce".into(),
            protocol: "v2",
            mix: "tenantSync".into(),
            connections: 1,
            rate_target: Some(100.0),
            ramp: Duration::ZERO,
            started: stats.requests,
            elapsed: Duration::from_secs(1),
            sending: Duration::from_secs(1),
            orders: None,
            reconnects: 0,
            stats,
            thresholds: Vec::new(),
            interrupted: false,
            error: None,
        }
    }

    #[test]
    fn the_likely_cause_reads_the_failures_only() {
        // A minority of failures, all 000001: the line is there, in text and JSON.
        let r = report(&[("000000", 120), ("000001", 20)]);
        let cause = r.likely_cause().expect("20 of 20 failures share 000001");
        assert!(
            cause.starts_with("20 of 20 failed requests answered 000001"),
            "{cause}"
        );
        assert_eq!(r.json(0)["likely"], cause);
        assert!(r.text().contains(&format!("  likely    {cause}\n")));
        // Failures without a shared code say nothing.
        let r = report(&[("000001", 2), ("000002", 2), ("000005", 2)]);
        assert_eq!(r.likely_cause(), None);
        assert!(r.json(0)["likely"].is_null());
    }

    /// The share of the planned starts sent: 1 for a run on time, with a ramp or not (also
    /// when it ends within the ramp), less for one handed over late or with requests unsent.
    #[test]
    fn rate_is_the_share_of_planned_starts_sent() {
        let ms = Duration::from_millis;
        let rate = super::super::threshold::parse("rate>=1").unwrap();
        let value = |target: f64, ramp, started, late, queued: u64| {
            let mut r = report(&[("000000", started - queued)]);
            if queued > 0 {
                r.stats.errors.insert(stats::QUEUED, queued);
            }
            let s = Schedule { rate: target, ramp };
            let interval = Duration::from_secs_f64(1.0 / target);
            (r.rate_target, r.ramp, r.started) = (Some(target), ramp, started);
            r.sending = super::super::schedule::sending_period(
                s.offset(started - 1),
                late,
                ms(2),
                interval,
            );
            r.value_of(&rate)
        };
        assert_eq!(value(200.0, Duration::ZERO, 100, ms(1), 0), 1.0);
        assert_eq!(value(100.0, ms(2000), 50, ms(0), 0), 1.0);
        assert_eq!(value(100.0, ms(2000), 300, ms(0), 0), 1.0);
        // 20 ms late at 200/s: four more starts were due by then.
        assert!((value(200.0, Duration::ZERO, 100, ms(22), 0) - 100.0 / 104.0).abs() < 1e-9);
        assert!((value(200.0, Duration::ZERO, 100, ms(0), 10) - 0.9).abs() < 1e-9);
    }

    #[test]
    fn one_request_is_not_requests() {
        let r = report(&[("000000", 1)]);
        assert!(r.text().starts_with("1 request in 1.00 s"), "{}", r.text());
    }
}
