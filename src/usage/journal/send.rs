//! What happens to records on the wire: each step of a batch is one transaction, so the
//! journal always says which records may have reached the marketplace.

use super::{storage, Journal, Scope, State, Stored};
use crate::error::Result;
use crate::usage::batch::Outcome;
use crate::usage::record::UsageRecord;
use rusqlite::{params, Transaction};
use std::collections::BTreeMap;

impl Journal {
    /// Records left `sent` by an interrupted run may have been delivered: say so, so that a
    /// "duplicate metering_sn" answer counts as their delivery.
    pub fn recover_in_flight(&mut self) -> Result<usize> {
        self.conn
            .execute(
                "UPDATE records SET maybe_delivered = 1 WHERE state = 'sent' AND maybe_delivered = 0",
                [],
            )
            .map_err(|e| self.err(e))
    }

    /// Counts the records a send pass will take.
    pub fn count_scope(&self, scope: Scope) -> Result<u64> {
        let (sql, arg) = scope_sql("SELECT count(*) FROM records", scope);
        self.conn
            .query_row(&sql, params![arg], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// The next records of the scope after `after_id`, in id order.
    pub fn next_batch(&self, scope: Scope, after_id: i64, limit: usize) -> Result<Vec<Stored>> {
        let (sql, arg) = scope_sql(
            "SELECT id, metering_sn, sn_derived, instance_id, begin_time, end_time, record_time,
             usage_value, relate_pkg_instance, maybe_delivered FROM records",
            scope,
        );
        // Walks the table in rowid order from `after_id` (there is no index on state or
        // import_id to prefer).
        let sql = format!("{sql} AND id > ?2 ORDER BY id LIMIT ?3");
        let mut st = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![arg, after_id, limit as i64], |r| {
                Ok(Stored {
                    id: r.get(0)?,
                    record: UsageRecord {
                        metering_sn: r.get(1)?,
                        sn_derived: r.get(2)?,
                        instance_id: r.get(3)?,
                        begin_time: r.get(4)?,
                        end_time: r.get(5)?,
                        record_time: r.get(6)?,
                        usage_value: r.get(7)?,
                        relate_pkg_instance: r.get(8)?,
                    },
                    maybe_delivered: r.get(9)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Before a request leaves: the batch is recorded and its records become `sent`.
    /// Committed (synced) first, so a crash after this point is seen as "maybe delivered".
    pub fn mark_sent(&mut self, ids: &[i64], attempt: u32, now: &str) -> Result<i64> {
        self.set_sync(true)?;
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let tx = self.conn.transaction().map_err(serr)?;
        tx.execute(
            "INSERT INTO batches (started_at, records, attempt) VALUES (?1, ?2, ?3)",
            params![now, ids.len() as i64, attempt],
        )
        .map_err(serr)?;
        let batch = tx.last_insert_rowid();
        {
            let mut st = tx
                .prepare_cached(
                    "UPDATE records SET state = 'sent', attempts = attempts + 1, sent_at = ?2,
                     last_batch = ?3 WHERE id IN (SELECT value FROM json_each(?1))",
                )
                .map_err(serr)?;
            st.execute(params![id_list(ids), now, batch])
                .map_err(serr)?;
        }
        tx.commit().map_err(serr)?;
        Ok(batch)
    }

    /// No definite answer: the records stay `sent` and are marked "maybe delivered".
    pub fn mark_ambiguous(
        &mut self,
        batch: i64,
        ids: &[i64],
        http_status: Option<u16>,
        code: &str,
        reason: &str,
        now: &str,
    ) -> Result<()> {
        let close = BatchClose {
            batch,
            http_status,
            code,
            reason,
            now,
        };
        self.close_batch(
            &close,
            ids,
            "ambiguous",
            "UPDATE records SET maybe_delivered = 1, last_code = ?2, last_message = ?3
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
    }

    /// The request was refused as a whole, nothing stored: the records go back to `pending`.
    /// A record that may have been delivered by an earlier attempt stays `sent`.
    pub fn mark_refused(
        &mut self,
        batch: i64,
        ids: &[i64],
        http_status: Option<u16>,
        code: &str,
        reason: &str,
        now: &str,
    ) -> Result<()> {
        let close = BatchClose {
            batch,
            http_status,
            code,
            reason,
            now,
        };
        self.close_batch(
            &close,
            ids,
            "refused",
            "UPDATE records SET state = CASE WHEN maybe_delivered = 1 THEN 'sent'
             ELSE 'pending' END, last_code = ?2, last_message = ?3
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
    }

    /// Closes a batch with `outcome` and applies `update` (parameters: the ids as JSON,
    /// the code, the reason) to its records, in one transaction.
    fn close_batch(
        &mut self,
        c: &BatchClose,
        ids: &[i64],
        outcome: &str,
        update: &str,
    ) -> Result<()> {
        self.set_sync(false)?;
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let tx = self.conn.transaction().map_err(serr)?;
        finish_batch(&tx, c.batch, c.http_status, c.code, outcome, c.now).map_err(serr)?;
        tx.prepare_cached(update)
            .and_then(|mut st| st.execute(params![id_list(ids), c.code, c.reason]))
            .map_err(serr)?;
        tx.commit().map_err(serr)
    }

    /// Records refused here without being sent (their begin_time left the marketplace's
    /// window while they waited): `rejected` with the code the marketplace would give. A
    /// record an earlier attempt may have delivered stays `sent` (as in `mark_refused`).
    pub fn reject_unsent(
        &mut self,
        ids: &[i64],
        code: &str,
        reason: &str,
        now: &str,
    ) -> Result<()> {
        self.set_sync(false)?;
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let tx = self.conn.transaction().map_err(serr)?;
        tx.execute(
            "UPDATE records SET state = CASE WHEN maybe_delivered = 1 THEN 'sent'
             ELSE 'rejected' END, last_code = ?2, last_message = ?3,
             decided_at = CASE WHEN maybe_delivered = 1 THEN decided_at ELSE ?4 END
             WHERE id IN (SELECT value FROM json_each(?1))",
            params![id_list(ids), code, reason, now],
        )
        .map_err(serr)?;
        tx.commit().map_err(serr)
    }

    /// Stores each record's outcome of a batch (one transaction).
    pub fn apply(
        &mut self,
        batch: i64,
        ids: &[i64],
        outcomes: &[Outcome],
        http_status: u16,
        now: &str,
    ) -> Result<()> {
        self.set_sync(false)?;
        let path = self.path.clone();
        let serr = |e: rusqlite::Error| storage(&path, e);
        let tx = self.conn.transaction().map_err(serr)?;
        finish_batch(&tx, batch, Some(http_status), "", "answered", now).map_err(serr)?;
        {
            let mut st = tx
                .prepare_cached(
                    "UPDATE records SET state = CASE WHEN ?2 = 'pending' AND maybe_delivered = 1
                     THEN 'sent' ELSE ?2 END, last_code = ?3, last_message = ?4,
                     decided_at = CASE WHEN ?2 = 'pending' THEN decided_at ELSE ?5 END
                     WHERE id IN (SELECT value FROM json_each(?1))",
                )
                .map_err(serr)?;
            // One statement per distinct outcome (a batch usually has one or two).
            let mut groups: BTreeMap<(State, &str, &str), Vec<i64>> = BTreeMap::new();
            for (id, o) in ids.iter().zip(outcomes) {
                let key = match o {
                    Outcome::Accepted { code } => (State::Accepted, code.as_str(), ""),
                    Outcome::Rejected { code, reason } => {
                        (State::Rejected, code.as_str(), reason.as_str())
                    }
                    Outcome::Retry { code, reason } => {
                        (State::Pending, code.as_str(), reason.as_str())
                    }
                };
                groups.entry(key).or_default().push(*id);
            }
            for ((state, code, msg), group) in groups {
                st.execute(params![id_list(&group), state, code, msg, now])
                    .map_err(serr)?;
            }
        }
        tx.commit().map_err(serr)
    }
}

/// Record ids as a JSON array, for `id IN (SELECT value FROM json_each(?))`: one statement
/// per batch instead of one per record.
fn id_list(ids: &[i64]) -> String {
    let mut s = String::with_capacity(ids.len() * 8 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s.push(']');
    s
}

fn scope_sql(select: &str, scope: Scope) -> (String, i64) {
    match scope {
        Scope::Import(id) => (
            format!("{select} WHERE import_id = ?1 AND state IN ('pending', 'sent')"),
            id,
        ),
        Scope::Unfinished { include_rejected } => (
            format!(
                "{select} WHERE ?1 = ?1 AND state IN ('pending', 'sent'{})",
                if include_rejected { ", 'rejected'" } else { "" }
            ),
            0,
        ),
    }
}

/// How a batch ended, for [`Journal::close_batch`].
struct BatchClose<'a> {
    batch: i64,
    http_status: Option<u16>,
    code: &'a str,
    reason: &'a str,
    now: &'a str,
}

fn finish_batch(
    tx: &Transaction,
    batch: i64,
    http_status: Option<u16>,
    code: &str,
    verdict: &str,
    now: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE batches SET finished_at = ?2, http_status = ?3, error_code = ?4, verdict = ?5
         WHERE id = ?1",
        params![batch, now, http_status, code, verdict],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{import, journal, HEAD};
    use super::super::{Scope, State};
    use crate::usage::batch::Outcome;

    #[test]
    fn outcomes_and_replacement() {
        let (_dir, mut j) = journal();
        let r = import(
            &mut j,
            &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\ni2,20260110T100000Z,20260110T110000Z,1,b\n"),
            true,
        );
        let batch = j.next_batch(Scope::Import(r.import_id), 0, 100).unwrap();
        assert_eq!(batch.len(), 2);
        let ids: Vec<i64> = batch.iter().map(|s| s.id).collect();
        let b = j.mark_sent(&ids, 1, "t").unwrap();
        assert_eq!(j.counts().unwrap()[&State::Sent], 2);
        j.apply(
            b,
            &ids,
            &[
                Outcome::Accepted { code: "000".into() },
                Outcome::Rejected {
                    code: "003".into(),
                    reason: "bad".into(),
                },
            ],
            200,
            "t",
        )
        .unwrap();
        let c = j.counts().unwrap();
        assert_eq!((c[&State::Accepted], c[&State::Rejected]), (1, 1));
        let mut out = Vec::new();
        assert_eq!(j.export(State::Rejected, false, &mut out).unwrap(), 1);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(",b,") && text.contains("003"), "{text}");
        // The exported file, fixed, goes back in and replaces the rejected record.
        let fixed = text.replace(",1,b,", ",2,b,");
        let r = import(&mut j, &fixed, true);
        assert_eq!((r.replaced, r.error_count), (1, 0), "{:?}", r.errors);
        assert_eq!(j.counts().unwrap()[&State::Pending], 1);
    }
}
