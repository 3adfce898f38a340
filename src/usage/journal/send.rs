//! What happens to records on the wire: each step of a batch is one transaction, so the
//! journal always says which records may have reached the marketplace.

use super::db::{id_list, vals, Db, DbError, Row, Val};
use super::{storage, Journal, Scope, State, Stored};
use crate::error::Result;
use crate::usage::batch::Outcome;
use crate::usage::record::UsageRecord;
use std::collections::BTreeMap;

/// The columns [`stored`] reads.
const STORED: &str = "id, metering_sn, sn_derived, instance_id, begin_time, end_time, record_time,
    usage_value, relate_pkg_instance, maybe_delivered";

fn stored(r: &Row) -> std::result::Result<Stored, DbError> {
    Ok(Stored {
        id: r.int(0)?,
        record: UsageRecord {
            metering_sn: r.text(1)?,
            sn_derived: r.bool(2)?,
            instance_id: r.text(3)?,
            begin_time: r.text(4)?,
            end_time: r.text(5)?,
            record_time: r.text(6)?,
            usage_value: r.text(7)?,
            relate_pkg_instance: r.opt_text(8)?,
        },
        maybe_delivered: r.bool(9)?,
    })
}

impl Journal {
    /// Records left `sent` by an interrupted run may have been delivered: say so, so that a
    /// "duplicate metering_sn" answer counts as their delivery. PostgreSQL: only records
    /// no live process holds (their lease is gone or expired).
    pub fn recover_in_flight(&mut self) -> Result<usize> {
        let sql = if self.lease.is_some() {
            "UPDATE records SET maybe_delivered = 1 WHERE state = 'sent' AND maybe_delivered = 0
             AND (lease_until IS NULL OR lease_until < now())"
        } else {
            "UPDATE records SET maybe_delivered = 1 WHERE state = 'sent' AND maybe_delivered = 0"
        };
        let n = self.db().exec(sql, &[]).map_err(|e| self.err(e))?;
        Ok(n as usize)
    }

    /// Counts the records a send pass will take.
    pub fn count_scope(&self, scope: Scope) -> Result<u64> {
        let (filter, args) = scope_sql(scope);
        self.db()
            .query_one(
                &format!("SELECT count(*) FROM records WHERE {filter}"),
                &args,
            )
            .and_then(|r| r.int(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// The next records of the scope after `after_id`, in id order. PostgreSQL: only records
    /// no other process holds, and they are this process's for the lease (a record found
    /// `sent` that way was left by a process that died mid-batch: it may have been
    /// delivered).
    pub fn next_batch(&self, scope: Scope, after_id: i64, limit: usize) -> Result<Vec<Stored>> {
        let (filter, mut args) = scope_sql(scope);
        let n = args.len();
        args.push(after_id.into());
        args.push((limit as i64).into());
        let rows = match &self.lease {
            // Walks the table in rowid order from `after_id` (there is no index on state or
            // import_id to prefer).
            None => self.db().query(
                &format!(
                    "SELECT {STORED} FROM records WHERE {filter} AND id > ?{} ORDER BY id
                     LIMIT ?{}",
                    n + 1,
                    n + 2
                ),
                &args,
            ),
            Some(lease) => {
                args.push(lease.owner.as_str().into());
                args.push((lease.duration.as_millis() as i64).into());
                self.db().query(
                    &format!(
                        "UPDATE records r SET lease_owner = ?{o},
                         lease_until = now() + ?{d}::bigint * interval '1 millisecond',
                         maybe_delivered = CASE WHEN r.state = 'sent' THEN 1
                         ELSE r.maybe_delivered END
                         WHERE r.id = ANY(ARRAY(SELECT id FROM records WHERE {filter}
                               AND id > ?{a} AND (lease_until IS NULL OR lease_until < now())
                               ORDER BY id LIMIT ?{l} FOR UPDATE SKIP LOCKED))
                         RETURNING {cols}",
                        a = n + 1,
                        l = n + 2,
                        o = n + 3,
                        d = n + 4,
                        cols = STORED
                            .split(',')
                            .map(|c| format!("r.{}", c.trim()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    &args,
                )
            }
        }
        .map_err(|e| self.err(e))?;
        let mut out = rows
            .iter()
            .map(stored)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        // RETURNING keeps no order.
        out.sort_by_key(|s| s.id);
        Ok(out)
    }

    /// Before a request leaves: the batch is recorded and its records become `sent`.
    /// Committed (synced) first, so a crash after this point is seen as "maybe delivered".
    /// PostgreSQL: the lease starts again for the attempt.
    pub fn mark_sent(&mut self, ids: &[i64], attempt: u32, now: &str) -> Result<i64> {
        self.set_sync(true)?;
        let path = self.path.clone();
        let serr = |e: DbError| storage(&path, e);
        let lease = self
            .lease
            .as_ref()
            .map(|l| (l.owner.clone(), l.duration.as_millis() as i64));
        let db = self.db.get_mut();
        let update = match lease {
            None => format!(
                "UPDATE records SET state = 'sent', attempts = attempts + 1, sent_at = ?2,
                 last_batch = ?3 WHERE {}",
                db.ids_in("id", 1)
            ),
            Some(_) => format!(
                "UPDATE records SET state = 'sent', attempts = attempts + 1, sent_at = ?2,
                 last_batch = ?3, lease_owner = ?4,
                 lease_until = now() + ?5::bigint * interval '1 millisecond' WHERE {}",
                db.ids_in("id", 1)
            ),
        };
        db.in_tx(&serr, |db| {
            let batch = db
                .query_one(
                    "INSERT INTO batches (started_at, records, attempt) VALUES (?1, ?2, ?3)
                     RETURNING id",
                    vals![now, ids.len() as i64, i64::from(attempt)],
                )
                .and_then(|r| r.int(0))
                .map_err(serr)?;
            let mut args: Vec<Val> = vals![id_list(ids), now, batch].to_vec();
            if let Some((owner, ms)) = &lease {
                args.push(owner.as_str().into());
                args.push((*ms).into());
            }
            db.exec(&update, &args).map_err(serr)?;
            Ok((batch, true))
        })
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
            "UPDATE records SET maybe_delivered = 1, last_code = ?2, last_message = ?3",
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
             ELSE 'pending' END, last_code = ?2, last_message = ?3",
        )
    }

    /// Closes a batch with `outcome` and applies `update` (parameters: the ids as JSON,
    /// the code, the reason; the WHERE on the ids is added here) to its records, in one
    /// transaction.
    fn close_batch(
        &mut self,
        c: &BatchClose,
        ids: &[i64],
        outcome: &str,
        update: &str,
    ) -> Result<()> {
        self.set_sync(false)?;
        let path = self.path.clone();
        let serr = |e: DbError| storage(&path, e);
        let db = self.db.get_mut();
        let update = format!("{update} WHERE {}", db.ids_in("id", 1));
        db.in_tx(&serr, |db| {
            finish_batch(db, c.batch, c.http_status, c.code, outcome, c.now).map_err(serr)?;
            db.exec(&update, vals![id_list(ids), c.code, c.reason])
                .map_err(serr)?;
            Ok(((), true))
        })
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
        let serr = |e: DbError| storage(&path, e);
        let db = self.db.get_mut();
        let sql = format!(
            "UPDATE records SET state = CASE WHEN maybe_delivered = 1 THEN 'sent'
             ELSE 'rejected' END, last_code = ?2, last_message = ?3,
             decided_at = CASE WHEN maybe_delivered = 1 THEN decided_at ELSE ?4 END{}
             WHERE {}",
            db.lease_release(),
            db.ids_in("id", 1)
        );
        db.exec(&sql, vals![id_list(ids), code, reason, now])
            .map_err(serr)?;
        Ok(())
    }

    /// Stores each record's outcome of a batch (one transaction). PostgreSQL: the records
    /// are given back (a process that ends then has few leases left to give back).
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
        let serr = |e: DbError| storage(&path, e);
        let db = self.db.get_mut();
        // ?2 is the state, as text in both stores.
        let sql = format!(
            "UPDATE records SET state = CASE WHEN ?2 = 'pending' AND maybe_delivered = 1
             THEN 'sent' ELSE ?2 END, last_code = ?3, last_message = ?4,
             decided_at = CASE WHEN ?2 = 'pending' THEN decided_at ELSE ?5 END{}
             WHERE {}",
            db.lease_release(),
            db.ids_in("id", 1)
        );
        db.in_tx(&serr, |db| {
            finish_batch(db, batch, Some(http_status), "", "answered", now).map_err(serr)?;
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
                db.exec(&sql, vals![id_list(&group), state.as_str(), code, msg, now])
                    .map_err(serr)?;
            }
            Ok(((), true))
        })
    }
}

/// The WHERE of a scope and its parameters (`?1` on).
fn scope_sql(scope: Scope) -> (String, Vec<Val>) {
    match scope {
        Scope::Import(id) => (
            "import_id = ?1 AND state IN ('pending', 'sent')".into(),
            vec![id.into()],
        ),
        Scope::Unfinished { include_rejected } => (
            format!(
                "state IN ('pending', 'sent'{})",
                if include_rejected { ", 'rejected'" } else { "" }
            ),
            Vec::new(),
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
    db: &mut Db,
    batch: i64,
    http_status: Option<u16>,
    code: &str,
    verdict: &str,
    now: &str,
) -> std::result::Result<(), DbError> {
    db.exec(
        "UPDATE batches SET finished_at = ?2, http_status = ?3, error_code = ?4, verdict = ?5
         WHERE id = ?1",
        vals![batch, now, http_status.map(i64::from), code, verdict],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{import, journals, HEAD};
    use super::super::{Scope, State};
    use crate::usage::batch::Outcome;

    #[test]
    fn outcomes_and_replacement() {
        for (_dir, mut j) in journals() {
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

    /// PostgreSQL: a sender that dies mid-batch keeps its records until its lease expires;
    /// then another takes them, as maybe delivered (they were `sent`).
    #[test]
    fn an_expired_lease_hands_the_batch_to_another_sender_as_maybe_delivered() {
        let Some(url) = super::super::pg::test_database("an_expired_lease") else {
            return;
        };
        let url = std::path::Path::new(&url);
        let mut dead = super::super::Journal::open(url).unwrap();
        dead.set_lease(std::time::Duration::from_secs(1));
        let r = import(
            &mut dead,
            &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\ni2,20260110T100000Z,20260110T110000Z,1,b\n"),
            true,
        );
        let batch = dead.next_batch(Scope::Import(r.import_id), 0, 1).unwrap();
        assert_eq!(batch.len(), 1);
        dead.mark_sent(&[batch[0].id], 1, "t").unwrap();
        // Killed here: nothing is given back.
        std::mem::forget(dead);
        let other = super::super::Journal::open(url).unwrap();
        let all = Scope::Unfinished {
            include_rejected: false,
        };
        let now: Vec<(String, bool)> = other
            .next_batch(all, 0, 10)
            .unwrap()
            .into_iter()
            .map(|s| (s.record.metering_sn, s.maybe_delivered))
            .collect();
        assert_eq!(now, [("b".to_string(), false)]);
        drop(other);
        std::thread::sleep(std::time::Duration::from_millis(1200));
        let other = super::super::Journal::open(url).unwrap();
        let later: Vec<(String, bool)> = other
            .next_batch(all, 0, 10)
            .unwrap()
            .into_iter()
            .map(|s| (s.record.metering_sn, s.maybe_delivered))
            .collect();
        assert_eq!(later, [("a".to_string(), true), ("b".to_string(), false)]);
    }
}
