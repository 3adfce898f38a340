//! Rendering a test-endpoint run: a table for people, JSON (schema in docs/test-endpoint.md)
//! and JUnit XML for CI.

use super::judge::Status;
use super::suites::{Row, Suite};
use serde_json::{json, Value};
use std::time::Duration;

/// The `schema` value of the JSON report; bump on incompatible changes.
pub const SCHEMA: &str = "csm.test-endpoint/1";

#[derive(Debug, Clone)]
pub struct Report {
    pub endpoint: String,
    pub protocols: Vec<&'static str>,
    pub suites: Vec<Suite>,
    pub demo: bool,
    pub faults: Vec<String>,
    pub rows: Vec<Row>,
    pub calls: usize,
    pub elapsed: Duration,
    /// Why the run stopped short (set up failed, endpoint unreachable): the reports carry it.
    pub error: Option<String>,
}

impl Report {
    pub fn count(&self, s: Status) -> usize {
        self.rows.iter().filter(|r| r.status == s).count()
    }

    pub fn passed(&self) -> bool {
        self.error.is_none() && self.count(Status::Fail) == 0
    }

    fn result(&self) -> &'static str {
        match (&self.error, self.passed()) {
            (Some(_), _) => "error",
            (None, true) => "pass",
            (None, false) => "fail",
        }
    }

    pub fn summary_line(&self) -> String {
        format!(
            "{}: {} checks, {} passed, {} failed, {} skipped; {} calls in {:.2} s",
            self.result().to_uppercase(),
            self.rows.len(),
            self.count(Status::Pass),
            self.count(Status::Fail),
            self.count(Status::Skip),
            self.calls,
            self.elapsed.as_secs_f64()
        )
    }

    pub fn table(&self) -> String {
        let mut t = crate::output::table();
        t.set_header(vec!["proto", "suite", "check", "result", "detail"]);
        for r in &self.rows {
            let result = match r.status {
                Status::Pass => "pass".to_string(),
                Status::Skip => "skip".to_string(),
                Status::Fail => "FAIL".to_string(),
            };
            let detail = match r.status {
                Status::Pass => {
                    if r.detail.is_empty() {
                        r.actual.clone()
                    } else {
                        r.detail.clone()
                    }
                }
                Status::Skip => r.actual.clone(),
                Status::Fail => {
                    let mut d = format!("expected {}; got {}", r.expected, r.actual);
                    if !r.fix.is_empty() {
                        d.push_str(&format!("\nfix: {}", r.fix));
                    }
                    if !r.detail.is_empty() {
                        d.push_str(&format!("\n({})", r.detail));
                    }
                    d
                }
            };
            t.add_row(vec![
                r.protocol.to_string(),
                r.suite.name().to_string(),
                format!("{} [{}]", r.check, r.family.id()),
                result,
                detail,
            ]);
        }
        format!("{t}\n{}", self.summary_line())
    }

    pub fn json(&self, exit_code: u8) -> Value {
        let mut v = json!({
            "schema": SCHEMA,
            "endpoint": self.endpoint,
            "protocols": self.protocols,
            "suites": self.suites.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "demo": self.demo,
            "faults": self.faults,
            "result": self.result(),
            "exit_code": exit_code,
            "summary": {
                "checks": self.rows.len(),
                "passed": self.count(Status::Pass),
                "failed": self.count(Status::Fail),
                "skipped": self.count(Status::Skip),
                "calls": self.calls,
                "duration_ms": self.elapsed.as_millis() as u64,
            },
            "checks": self.rows.iter().map(|r| json!({
                "protocol": r.protocol,
                "suite": r.suite.name(),
                "check": r.check,
                "family": r.family.id(),
                "status": r.status,
                "expected": r.expected,
                "actual": r.actual,
                "fix": r.fix,
                "detail": r.detail,
            })).collect::<Vec<_>>(),
        });
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }

    pub fn junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let errors = usize::from(self.error.is_some());
        out.push_str(&format!(
            "<testsuites name=\"csm test-endpoint\" tests=\"{}\" failures=\"{}\" errors=\"{errors}\" skipped=\"{}\" time=\"{:.3}\">\n",
            self.rows.len() + errors,
            self.count(Status::Fail),
            self.count(Status::Skip),
            self.elapsed.as_secs_f64()
        ));
        let mut groups: Vec<(String, Vec<&Row>)> = Vec::new();
        for r in &self.rows {
            let name = format!("{}.{}", r.protocol, r.suite.name());
            match groups.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(r),
                None => groups.push((name, vec![r])),
            }
        }
        for (name, rows) in groups {
            let fails = rows.iter().filter(|r| r.status == Status::Fail).count();
            let skips = rows.iter().filter(|r| r.status == Status::Skip).count();
            out.push_str(&format!(
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{fails}\" skipped=\"{skips}\">\n",
                xml(&name),
                rows.len()
            ));
            for r in rows {
                out.push_str(&format!(
                    "    <testcase classname=\"{}\" name=\"{}\"",
                    xml(&format!("{name}.{}", r.family.id())),
                    xml(&r.check)
                ));
                match r.status {
                    Status::Pass => out.push_str("/>\n"),
                    Status::Skip => out.push_str(&format!(
                        "><skipped message=\"{}\"/></testcase>\n",
                        xml(&r.actual)
                    )),
                    Status::Fail => out.push_str(&format!(
                        "><failure message=\"{}\">{}</failure></testcase>\n",
                        xml(&format!("expected {}; got {}", r.expected, r.actual)),
                        xml(&format!("fix: {}\n{}", r.fix, r.detail))
                    )),
                }
            }
            out.push_str("  </testsuite>\n");
        }
        if let Some(e) = &self.error {
            out.push_str(&format!(
                "  <testsuite name=\"csm\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\">\n    <testcase classname=\"csm\" name=\"run\"><error message=\"{}\"/></testcase>\n  </testsuite>\n",
                xml(e)
            ));
        }
        out.push_str("</testsuites>\n");
        out
    }
}

fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\n' => o.push_str("&#10;"),
            c if (c as u32) < 0x20 && c != '\t' => {}
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::judge::Family;

    #[test]
    fn junit_escapes_and_counts() {
        let row = Row {
            protocol: "v2",
            suite: Suite::Negative,
            check: "a <b> & \"c\"".into(),
            family: Family::RefusesBadRequests,
            status: Status::Fail,
            expected: "000001".into(),
            actual: "000000".into(),
            fix: "verify".into(),
            detail: String::new(),
        };
        let rep = Report {
            endpoint: "http://127.0.0.1:1/".into(),
            protocols: vec!["v2"],
            suites: vec![Suite::Negative],
            demo: false,
            faults: vec![],
            rows: vec![row],
            calls: 1,
            elapsed: Duration::from_millis(5),
            error: None,
        };
        let x = rep.junit();
        assert!(x.contains("failures=\"1\""));
        assert!(x.contains("a &lt;b&gt; &amp; &quot;c&quot;"));
        assert!(!rep.passed());
        assert_eq!(rep.json(1)["summary"]["failed"], 1);
    }
}
