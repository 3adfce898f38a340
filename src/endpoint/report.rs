//! Rendering a test-endpoint run: a table for people, JSON (schema in docs/test-endpoint.md)
//! and JUnit XML for CI.

use super::judge::Status;
use super::suites::{Row, Suite};
use comfy_table::{Cell, Color};
use serde_json::{json, Value};
use std::time::Duration;

/// The `schema` value of the JSON report; bump on incompatible changes.
pub const SCHEMA: &str = "csm.test-endpoint/1";

#[derive(Debug, Clone, Default)]
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
            "{}: {}, {} passed, {} failed, {} skipped; {} in {:.2} s",
            self.result().to_uppercase(),
            crate::output::plural(self.rows.len() as u64, "check"),
            self.count(Status::Pass),
            self.count(Status::Fail),
            self.count(Status::Skip),
            crate::output::plural(self.calls as u64, "call"),
            self.elapsed.as_secs_f64()
        )
    }

    /// The table for people. `Show::Failures` folds the passed checks of each suite into
    /// one row and ends with a recap of the failures; `colour` paints the result column.
    pub fn table(&self, show: Show, colour: bool) -> String {
        let mut t = crate::output::table();
        if colour {
            t.enforce_styling();
        }
        t.set_header(vec!["proto", "suite", "check", "result", "detail"]);
        let mut folded: Vec<(&str, Suite, usize)> = Vec::new();
        for r in &self.rows {
            if show == Show::Failures && r.status == Status::Pass {
                match folded.last_mut() {
                    Some((p, s, n)) if *p == r.protocol && *s == r.suite => *n += 1,
                    _ => folded.push((r.protocol, r.suite, 1)),
                }
                continue;
            }
            // Folded passes keep their place before the next failure or skip.
            for (p, s, n) in folded.drain(..) {
                add_folded(&mut t, p, s, n, colour);
            }
            t.add_row(vec![
                Cell::new(r.protocol),
                Cell::new(r.suite.name()),
                Cell::new(format!("{} [{}]", r.check, r.family.id())),
                result_cell(r.status, colour),
                Cell::new(detail(r)),
            ]);
        }
        for (p, s, n) in folded {
            add_folded(&mut t, p, s, n, colour);
        }
        let mut out = format!("{t}\n{}", self.summary_line());
        let failed: Vec<&Row> = self.failed().collect();
        if show == Show::Failures && !failed.is_empty() {
            out.push_str("\nfailed:");
            for r in failed {
                out.push_str(&format!(
                    "\n  {} {} {} [{}]: expected {}; got {}",
                    r.protocol,
                    r.suite.name(),
                    r.check,
                    r.family.id(),
                    r.expected,
                    r.actual
                ));
            }
        }
        if let Some(cause) = self.likely_cause() {
            out.push_str(&format!("\nlikely cause: {cause}"));
        }
        out
    }

    fn failed(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.status == Status::Fail)
    }

    /// When most failures share one resultCode, what that usually means, said once.
    pub fn likely_cause(&self) -> Option<String> {
        let mut by_code: std::collections::BTreeMap<&str, usize> = Default::default();
        for r in self.failed() {
            if let Some(code) = r
                .actual
                .get(..6)
                .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            {
                *by_code.entry(code).or_default() += 1;
            }
        }
        let total = self.failed().count();
        let (top, n) = by_code.into_iter().max_by_key(|(_, n)| *n)?;
        // A wrong key fails both ways: calls refused with 000001, and replies whose Body-Sign
        // (made with the endpoint's key) does not verify. Those point the same way.
        let same_cause = match top {
            "000001" => self
                .failed()
                .filter(|r| r.family == super::judge::Family::BodySign)
                .count(),
            _ => 0,
        };
        if n < 3 || n * 5 < (total - same_cause) * 3 {
            return None;
        }
        let v1_only = self.protocols.iter().all(|p| *p == "v1");
        let cause = code_cause(top, v1_only)?;
        let with = match same_cause {
            0 => String::new(),
            k => format!(" and {k} more had a Body-Sign that does not verify"),
        };
        Some(format!(
            "{n} of {total} failures answered {top}{with}: {cause}"
        ))
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
        if let Some(c) = self.likely_cause() {
            v["likely_cause"] = json!(c);
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
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{fails}\" errors=\"0\" skipped=\"{skips}\">\n",
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

/// Which rows the table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Show {
    /// Every check.
    All,
    /// Failures and skips in full, passes folded per suite, a recap of failures last.
    Failures,
}

fn result_cell(status: Status, colour: bool) -> Cell {
    let (text, c) = match status {
        Status::Pass => ("pass", Color::Green),
        Status::Skip => ("skip", Color::Yellow),
        Status::Fail => ("FAIL", Color::Red),
    };
    let cell = Cell::new(text);
    if colour {
        cell.fg(c)
    } else {
        cell
    }
}

fn add_folded(t: &mut comfy_table::Table, protocol: &str, suite: Suite, n: usize, colour: bool) {
    t.add_row(vec![
        Cell::new(protocol),
        Cell::new(suite.name()),
        Cell::new(crate::output::plural(n as u64, "check")),
        result_cell(Status::Pass, colour),
        Cell::new(format!("{n} passed (--show all lists them)")),
    ]);
}

fn detail(r: &Row) -> String {
    match r.status {
        Status::Pass if r.detail.is_empty() => r.actual.clone(),
        Status::Pass => r.detail.clone(),
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

/// What a resultCode most failures share usually means, when it points at csm's side of the
/// call (the keys, the protocol) rather than the endpoint's business.
pub fn code_cause(code: &str, v1_only: bool) -> Option<&'static str> {
    Some(match code {
        "000001" => "the endpoint refuses csm's signatures (and the replies' Body-Sign does not verify with the key given, if that failed too): check that each key file holds the key the seller center shows for that interface type, and that --protocol matches the endpoint",
        "000002" if v1_only => "looks like a V2 endpoint (it refuses V1 GET callbacks); try --protocol v2",
        "000002" => "the endpoint refuses the callbacks' parameters; if it is a V1 endpoint (GET callbacks), try --protocol v1",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::judge::Family;

    fn row(suite: Suite, status: Status, actual: &str) -> Row {
        Row {
            protocol: "v1",
            suite,
            check: format!("{} call", suite.name()),
            family: Family::ResultCode,
            status,
            expected: "000000".into(),
            actual: actual.into(),
            fix: String::new(),
            detail: String::new(),
        }
    }

    fn report(rows: Vec<Row>) -> Report {
        Report {
            endpoint: "http://127.0.0.1:1/".into(),
            protocols: vec!["v1"],
            suites: Suite::ALL.to_vec(),
            demo: false,
            faults: vec![],
            rows,
            calls: 1,
            elapsed: Duration::ZERO,
            error: None,
        }
    }

    #[test]
    fn passes_fold_per_suite_in_place_and_failures_are_recapped() {
        let mut rows = vec![row(Suite::Lifecycle, Status::Pass, "000000"); 3];
        rows.push(row(Suite::Idempotency, Status::Pass, "000000"));
        rows.push(row(Suite::Negative, Status::Fail, "000005 (boom)"));
        rows.push(row(Suite::Negative, Status::Pass, "000000"));
        let t = report(rows).table(Show::Failures, false);
        let lifecycle = t.find("3 passed").unwrap();
        let idempotency = t.find("1 passed").unwrap();
        let failure = t.find("FAIL").unwrap();
        assert!(lifecycle < idempotency && idempotency < failure, "{t}");
        assert!(t.contains("failed:\n  v1 negative negative call [result-code]: expected 000000; got 000005 (boom)"), "{t}");
        let all =
            report(vec![row(Suite::Lifecycle, Status::Pass, "000000"); 3]).table(Show::All, false);
        assert_eq!(all.matches("lifecycle call").count(), 3, "{all}");
        assert!(!all.contains("\u{1b}["), "no colour asked for");
        let painted =
            report(vec![row(Suite::Lifecycle, Status::Pass, "000000")]).table(Show::All, true);
        assert!(painted.contains("\u{1b}["), "{painted}");
    }

    #[test]
    fn a_shared_result_code_names_its_likely_cause_once() {
        let mut rows = vec![row(Suite::Lifecycle, Status::Fail, "000002 (not enabled)"); 21];
        rows.push(row(Suite::Lifecycle, Status::Fail, "000005 (other)"));
        let r = report(rows);
        let cause = r.likely_cause().unwrap();
        assert!(
            cause.starts_with("21 of 22 failures answered 000002"),
            "{cause}"
        );
        assert!(cause.contains("try --protocol v2"), "{cause}");
        assert_eq!(
            r.table(Show::Failures, false)
                .matches("likely cause:")
                .count(),
            1
        );
        assert_eq!(r.json(1)["likely_cause"], cause.as_str());
        // Scattered failures name no cause.
        let scattered = report(vec![
            row(Suite::Lifecycle, Status::Fail, "000002 (a)"),
            row(Suite::Lifecycle, Status::Fail, "000001 (b)"),
            row(Suite::Lifecycle, Status::Fail, "000005 (c)"),
        ]);
        assert_eq!(scattered.likely_cause(), None);
        // A wrong key: half the failures 000001, the other half Body-Sign that does not
        // verify; both point at the key.
        let mut rows: Vec<Row> = (0..4)
            .map(|_| {
                row(
                    Suite::Lifecycle,
                    Status::Fail,
                    "000001 (signature does not match)",
                )
            })
            .collect();
        for _ in 0..4 {
            let mut r = row(Suite::Lifecycle, Status::Fail, "signature over other bytes");
            r.family = Family::BodySign;
            rows.push(r);
        }
        let wrong_key = report(rows);
        assert!(wrong_key
            .likely_cause()
            .unwrap()
            .starts_with("4 of 8 failures answered 000001 and 4 more had a Body-Sign"));
    }

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
