//! `--threshold` expressions: `p99<800ms`, `errors<0.1%`, `rate>=0.98`. Pure: parsing and
//! judging a measured value; a typo is an error naming the expression, never a silent pass.

use std::fmt;

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A corrected latency percentile (50, 90, 99, 99.9) or the maximum (100), in ms.
    Latency(f64),
    /// Failed requests over all requests, as a fraction.
    Errors,
    /// Achieved rate over the target rate, as a fraction.
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::Lt => value < limit,
            Op::Le => value <= limit,
            Op::Gt => value > limit,
            Op::Ge => value >= limit,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The expression as given (for the report).
    pub expr: String,
    pub metric: Metric,
    pub op: Op,
    /// In ms for latencies, a fraction for errors and rate.
    pub limit: f64,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

const FORMS: &str =
    "expected METRIC OP VALUE: p50|p90|p99|p999|max with a duration (p99<800ms), errors with a percentage (errors<0.1%), rate with a fraction or percentage of the target (rate>=0.98)";

/// A share of the requests or of the target rate: a percentage, or a bare fraction up to 1
/// (`rate>=98` would always fail: 98 is not read as 98%).
fn fraction(s: &str, expr: &str) -> Result<f64, String> {
    let (num, scale) = match s.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (s, 1.0),
    };
    let v: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| {
            format!("--threshold {expr:?}: {s:?} is not a non-negative number or percentage")
        })?;
    if v / scale > 1.0 {
        return Err(if scale == 1.0 {
            format!(
                "--threshold {expr:?}: a bare {s} is a fraction and must be at most 1 (100%){}",
                percent_hint(s, v)
            )
        } else {
            format!("--threshold {expr:?}: {s} is over 100%")
        });
    }
    Ok(v / scale)
}

/// `rate>=98` was likely meant as 98%; `rate>=1.5` as nothing a percentage would fix.
fn percent_hint(s: &str, v: f64) -> String {
    if (2.0..=100.0).contains(&v) {
        format!("; for a percentage write {s}%")
    } else {
        "; e.g. 0.98 or 98%".to_string()
    }
}

fn millis(s: &str, expr: &str) -> Result<f64, String> {
    // A latency bound names its unit (`800` alone could be ms or s); the reading is the one
    // every duration flag uses.
    if !s.trim().ends_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!(
            "--threshold {expr:?}: {s:?} needs a unit (ms, s, m, h), e.g. 800ms"
        ));
    }
    crate::duration::parse(
        s,
        crate::duration::Bare::Millis,
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(3600),
    )
    .map(|d| d.as_secs_f64() * 1000.0)
    .map_err(|e| format!("--threshold {expr:?}: {e}"))
}

/// Parses one `--threshold` expression.
pub fn parse(expr: &str) -> Result<Threshold, String> {
    let t: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    let at = t
        .find(['<', '>'])
        .ok_or_else(|| format!("--threshold {expr:?}: no comparison (<, <=, > or >=); {FORMS}"))?;
    let (name, rest) = t.split_at(at);
    let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else {
        (Op::Gt, &rest[1..])
    };
    if value.is_empty() {
        return Err(format!(
            "--threshold {expr:?}: no value after the comparison; {FORMS}"
        ));
    }
    let metric = match name {
        "p50" => Metric::Latency(50.0),
        "p90" => Metric::Latency(90.0),
        "p95" => Metric::Latency(95.0),
        "p99" => Metric::Latency(99.0),
        "p999" | "p99.9" => Metric::Latency(99.9),
        "max" => Metric::Latency(100.0),
        "errors" => Metric::Errors,
        "rate" => Metric::Rate,
        "" => return Err(format!("--threshold {expr:?}: no metric; {FORMS}")),
        other => {
            return Err(format!(
                "--threshold {expr:?}: unknown metric {other:?}; {FORMS}"
            ))
        }
    };
    let limit = match metric {
        Metric::Latency(_) => millis(value, expr)?,
        // `errors<0.1` reads as 0.1% to some and as 10% to others: the unit is written out.
        Metric::Errors if !value.ends_with('%') => {
            return Err(match value.parse::<f64>() {
                Ok(v) if (0.0..=100.0).contains(&v) => format!(
                    "--threshold {expr:?}: errors takes a percentage: write {value}% if that is meant (a bare number reads as a percentage to some and as a fraction to others)"
                ),
                _ => format!(
                    "--threshold {expr:?}: errors takes a percentage from 0% to 100%, e.g. errors<0.1%"
                ),
            })
        }
        Metric::Errors | Metric::Rate => fraction(value, expr)?,
    };
    Ok(Threshold {
        expr: expr.trim().to_string(),
        metric,
        op,
        limit,
    })
}

/// clap value parser. clap's message already names the flag and the value.
pub fn flag(s: &str) -> Result<Threshold, String> {
    parse(s).map_err(|e| match e.strip_prefix(&format!("--threshold {s:?}: ")) {
        Some(why) => why.to_string(),
        None => e,
    })
}

impl Threshold {
    /// Whether `value` (in the metric's unit) passes.
    pub fn passes(&self, value: f64) -> bool {
        self.op.holds(value, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_form() {
        let t = parse("p99<800ms").unwrap();
        assert_eq!(
            (t.metric, t.op, t.limit),
            (Metric::Latency(99.0), Op::Lt, 800.0)
        );
        let t = parse(" p999 <= 1.5s ").unwrap();
        assert_eq!(
            (t.metric, t.op, t.limit),
            (Metric::Latency(99.9), Op::Le, 1500.0)
        );
        assert_eq!(t.expr, "p999 <= 1.5s");
        let t = parse("errors<0.1%").unwrap();
        assert_eq!(t.metric, Metric::Errors);
        assert!((t.limit - 0.001).abs() < 1e-12);
        let t = parse("rate>=0.98").unwrap();
        assert_eq!((t.metric, t.op), (Metric::Rate, Op::Ge));
        assert!((parse("rate>99%").unwrap().limit - 0.99).abs() < 1e-12);
        assert_eq!(parse("max<2s").unwrap().metric, Metric::Latency(100.0));
    }

    #[test]
    fn judges_with_the_comparison() {
        let t = parse("p99<800ms").unwrap();
        assert!(t.passes(799.9));
        assert!(!t.passes(800.0));
        let t = parse("rate>=0.98").unwrap();
        assert!(t.passes(0.98));
        assert!(!t.passes(0.97));
    }

    #[test]
    fn typos_are_errors_naming_the_expression() {
        for bad in [
            "p99=800ms",
            "p98<800ms",
            "p99<800",
            "p99<800 msec",
            "errors<abc",
            "errors<-1%",
            "<1%",
            "rate>=",
            "latency<1s",
            "p99<",
            "errors<5",
            "errors<0.1",
            "rate>=98",
            "errors<101%",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with(&format!("--threshold {bad:?}")), "{bad}: {e}");
        }
        assert!(parse("p99<800").unwrap_err().contains("needs a unit"));
        assert!(parse("errors<0.1")
            .unwrap_err()
            .contains("errors takes a percentage: write 0.1% if that is meant"));
        assert!(parse("errors<150")
            .unwrap_err()
            .ends_with("errors takes a percentage from 0% to 100%, e.g. errors<0.1%"));
        assert!(parse("rate>=5")
            .unwrap_err()
            .contains("must be at most 1 (100%); for a percentage write 5%"));
        assert!(parse("rate>=1").is_ok());
        // Over 1 but no percentage anyone writes: no "write 1.5%".
        let e = parse("rate>=1.5").unwrap_err();
        assert!(
            e.ends_with("must be at most 1 (100%); e.g. 0.98 or 98%"),
            "{e}"
        );
        assert!(parse("p99<800").unwrap_err().contains("(ms, s, m, h)"));
        assert!(parse("p98<1s")
            .unwrap_err()
            .contains("unknown metric \"p98\""));
    }
}
