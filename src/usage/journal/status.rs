//! Counts by state and code, and the `status` report.

use super::db::vals;
use super::{Journal, State};
use crate::error::Result;
use crate::usage::record::{self, Billing, Deadline};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Status {
    pub counts: BTreeMap<State, u64>,
    /// (metering_sn, instance_id, end_time, deadline status) of the unsent record that ends first.
    pub oldest_unsent: Option<(String, String, String, Deadline)>,
    pub unsent_by_deadline: BTreeMap<&'static str, u64>,
    pub last_errors: Vec<LastError>,
    /// (state, last code, count) of records not accepted.
    pub codes: Vec<(State, String, u64)>,
    /// The records given up on, the latest first (at most [`MAX_ABANDONED_SHOWN`]).
    pub abandoned: Vec<AbandonedRecord>,
}

pub const MAX_ABANDONED_SHOWN: usize = 10;

/// A record abandoned with `csm usage resolve --abandon`: who, when, why.
#[derive(Debug)]
pub struct AbandonedRecord {
    pub metering_sn: String,
    pub instance_id: String,
    pub begin_time: String,
    pub end_time: String,
    pub at: String,
    pub by: String,
    pub reason: String,
}

/// One error of the latest records not accepted, with the number of them that share it:
/// a batch's records carry the same answer, and one row says it once.
#[derive(Debug)]
pub struct LastError {
    /// Records in this state with this code and message.
    pub count: u64,
    /// One of them to look up: the last journaled.
    pub metering_sn: String,
    /// The instance and period, as 话单管理 finds a record.
    pub instance_id: String,
    pub begin_time: String,
    pub end_time: String,
    pub state: State,
    pub code: String,
    pub message: String,
    /// When the latest of them was decided or sent.
    pub at: String,
}

/// Distinct errors `status` shows at most.
pub const MAX_ERRORS_SHOWN: usize = 10;

impl Journal {
    /// The state of each of these records the journal holds. Only reads: unlike a send
    /// pass, it claims nothing, so other senders sharing the journal are not held up.
    pub fn states_of(&self, sns: &[String]) -> Result<std::collections::HashMap<String, State>> {
        let mut out = std::collections::HashMap::new();
        let mut db = self.db();
        let sql = format!(
            "SELECT metering_sn, state FROM records WHERE {}",
            db.texts_in("metering_sn", 1)
        );
        let list = super::db::text_list(sns);
        db.each(&sql, &[list.into()], |r| {
            out.insert(r.text(0)?, r.state(1)?);
            Ok(())
        })
        .map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Records per state; every state is there, with 0 when it has none.
    pub fn counts(&self) -> Result<BTreeMap<State, u64>> {
        let mut out: BTreeMap<State, u64> = State::ALL.iter().map(|s| (*s, 0)).collect();
        self.db()
            .each(
                "SELECT state, count(*) FROM records GROUP BY state",
                &[],
                |r| {
                    out.insert(r.state(0)?, r.int(1)? as u64);
                    Ok(())
                },
            )
            .map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Counts of not-accepted records per last code (for summaries and `status`).
    pub fn codes(&self, states: &[State]) -> Result<Vec<(State, String, u64)>> {
        let list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let mut out = Vec::new();
        self.db()
            .each(
                &format!(
                    "SELECT state, coalesce(last_code, ''), count(*) FROM records
                     WHERE state IN ({list}) GROUP BY state, last_code ORDER BY 3 DESC"
                ),
                &[],
                |r| {
                    out.push((r.state(0)?, r.text(1)?, r.int(2)? as u64));
                    Ok(())
                },
            )
            .map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// The status report: counts, the oldest unsent record, records past their deadline,
    /// the last errors. Streams over the unsent records (memory stays flat).
    pub fn status(&self, billing: Billing, now: DateTime<Utc>) -> Result<Status> {
        let counts = self.counts()?;
        let mut s = Status {
            counts,
            ..Default::default()
        };
        self.db()
            .each(
                "SELECT metering_sn, instance_id, end_time FROM records
                 WHERE state IN ('pending', 'sent') ORDER BY end_time",
                &[],
                |r| {
                    let end = r.text(2)?;
                    let d = record::deadline_status(&end, billing, now);
                    *s.unsent_by_deadline.entry(d.as_str()).or_default() += 1;
                    if s.oldest_unsent.is_none() {
                        s.oldest_unsent = Some((r.text(0)?, r.text(1)?, end, d));
                    }
                    Ok(())
                },
            )
            .map_err(|e| self.err(e))?;
        let mut last_errors = Vec::new();
        // Grouped by state, code and message (one aggregate, not a window sorting every
        // record: a journal may hold a million rejected ones); the last journaled record of
        // each group stands for it.
        self.db()
            .each(
                "SELECT r.metering_sn, g.state, g.last_code, g.message, g.at, r.instance_id,
                 r.begin_time, r.end_time, g.n FROM (
                     SELECT state, last_code, coalesce(last_message, '') AS message,
                     max(coalesce(decided_at, sent_at, '')) AS at, count(*) AS n,
                     max(id) AS example
                     FROM records
                     WHERE last_code IS NOT NULL AND state NOT IN ('accepted', 'abandoned')
                     GROUP BY 1, 2, 3 ORDER BY at DESC, example DESC LIMIT ?1
                 ) g JOIN records r ON r.id = g.example ORDER BY g.at DESC, g.example DESC",
                vals![MAX_ERRORS_SHOWN as i64],
                |r| {
                    last_errors.push(LastError {
                        count: r.int(8)? as u64,
                        metering_sn: r.text(0)?,
                        instance_id: r.text(5)?,
                        begin_time: r.text(6)?,
                        end_time: r.text(7)?,
                        state: r.state(1)?,
                        code: r.text(2)?,
                        message: r.text(3)?,
                        at: r.text(4)?,
                    });
                    Ok(())
                },
            )
            .map_err(|e| self.err(e))?;
        s.last_errors = last_errors;
        s.codes = self.codes(&[State::Pending, State::Sent, State::Rejected])?;
        s.abandoned = self.abandoned()?;
        Ok(s)
    }

    /// The latest abandoned records (none in a journal of version 1).
    fn abandoned(&self) -> Result<Vec<AbandonedRecord>> {
        if self.version < 2 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        self.db()
            .each(
                "SELECT metering_sn, instance_id, begin_time, end_time, coalesce(abandoned_at, ''),
                 coalesce(abandoned_by, ''), coalesce(abandon_reason, '') FROM records
                 WHERE state = 'abandoned' ORDER BY abandoned_at DESC, id DESC LIMIT ?1",
                vals![MAX_ABANDONED_SHOWN as i64],
                |r| {
                    out.push(AbandonedRecord {
                        metering_sn: r.text(0)?,
                        instance_id: r.text(1)?,
                        begin_time: r.text(2)?,
                        end_time: r.text(3)?,
                        at: r.text(4)?,
                        by: r.text(5)?,
                        reason: r.text(6)?,
                    });
                    Ok(())
                },
            )
            .map_err(|e| self.err(e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{import, journals, now, ALL, HEAD};
    use super::super::{LocalRefusal, State};
    use crate::usage::batch::Outcome;
    use crate::usage::record::Billing;

    /// A batch's records share its answer: `status` says each error once, with the number of
    /// records that share it and one of them (the last journaled), the latest error first.
    #[test]
    fn last_errors_are_one_row_per_error_with_a_count() {
        for (_dir, mut j) in journals() {
            let mut text = HEAD.to_string();
            for i in 0..12 {
                text += &format!("i{i},20260110T100000Z,20260110T110000Z,1,sn-{i:02}\n");
            }
            import(&mut j, &text, true);
            let (_, a) = j
                .take_batch(ALL, 0, 1000, "20260110T110000Z", &LocalRefusal::NONE)
                .unwrap()
                .unwrap();
            let b = a.batch_id.unwrap();
            let ids: Vec<i64> = a.sent.iter().map(|s| s.id).collect();
            let dropped = "connection closed before the answer was whole";
            j.mark_ambiguous(b, &ids[..10], None, "network", dropped, "20260110T110500Z")
                .unwrap();
            let rejected = |code: &str| Outcome::Rejected {
                code: code.into(),
                reason: "no".into(),
            };
            j.apply(
                b,
                &ids[10..],
                &[rejected("012"), rejected("003")],
                200,
                "20260110T110600Z",
            )
            .unwrap();
            let s = j.status(Billing::Hourly, now()).unwrap();
            let rows: Vec<(u64, State, &str, &str, &str)> = s
                .last_errors
                .iter()
                .map(|e| {
                    (
                        e.count,
                        e.state,
                        e.code.as_str(),
                        e.metering_sn.as_str(),
                        e.at.as_str(),
                    )
                })
                .collect();
            assert_eq!(
                rows,
                [
                    (1, State::Rejected, "003", "sn-11", "20260110T110600Z"),
                    (1, State::Rejected, "012", "sn-10", "20260110T110600Z"),
                    (10, State::Sent, "network", "sn-09", "20260110T110000Z"),
                ]
            );
            assert_eq!(s.last_errors[2].message, dropped);
            assert_eq!(s.last_errors[2].instance_id, "i9");
        }
    }
}
