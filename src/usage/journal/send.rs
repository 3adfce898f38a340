//! What happens to records on the wire: each step of a batch is one transaction, so the
//! journal always says which records may have reached the marketplace.

use super::db::{id_list, vals, Db, DbError, Row, Val};
use super::{storage, Journal, Scope, State, Stored};
use crate::error::Result;
use crate::usage::batch::Outcome;
use crate::usage::record::UsageRecord;
use std::collections::BTreeMap;

/// In SQL: the record may have reached the marketplace (flagged, or `sent` by an attempt
/// that got no definite answer: a process died, or this one was stopped).
macro_rules! maybe {
    () => {
        "(maybe_delivered = 1 OR state = 'sent')"
    };
}
const MAYBE: &str = maybe!();

/// The columns [`stored`] reads, with "maybe delivered" as a send pass must see it.
const STORED: &str = concat!(
    "id, metering_sn, sn_derived, instance_id, begin_time, end_time, record_time,
    usage_value, relate_pkg_instance, CASE WHEN ",
    maybe!(),
    " THEN 1 ELSE 0 END"
);

/// In SQL (PostgreSQL): no live process holds the record.
pub(super) const LEASE_FREE: &str = "(lease_until IS NULL OR lease_until < now())";

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
        let free = match self.lease {
            Some(_) => format!(" AND {LEASE_FREE}"),
            None => String::new(),
        };
        let sql = format!(
            "UPDATE records SET maybe_delivered = 1 WHERE state = 'sent' AND maybe_delivered = 0{free}"
        );
        let n = self.db().exec(&sql, &[]).map_err(|e| self.err(e))?;
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

    /// The records of `scope` not sent with a definite answer yet: (`pending`, `sent`).
    pub fn waiting(&self, scope: Scope) -> Result<(u64, u64)> {
        let (filter, args) = scope_sql(scope);
        let mut out = (0, 0);
        self.db()
            .each(
                &format!(
                    "SELECT state, count(*) FROM records WHERE {filter}
                     AND state IN ('pending', 'sent') GROUP BY state"
                ),
                &args,
                |r| {
                    let n = r.int(1)? as u64;
                    match r.state(0)? {
                        State::Sent => out.1 = n,
                        _ => out.0 = n,
                    }
                    Ok(())
                },
            )
            .map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Takes the next records of `scope` after `after_id` (id order, at most `limit`) and
    /// journals their first attempt, all in one transaction committed with a full sync
    /// before anything is sent: the records `refusal` applies to are refused here (see
    /// [`Attempt::refused`]), the others become `sent` under a new batch. A crash after this
    /// point is seen as "maybe delivered". PostgreSQL: only records no other process holds
    /// (`FOR UPDATE SKIP LOCKED`, then a lease); one found `sent` was left by a process that
    /// died mid-batch and may have been delivered. None when the scope has nothing left;
    /// else the last id taken (the next call's `after_id`) and the attempt.
    pub fn take_batch(
        &mut self,
        scope: Scope,
        after_id: i64,
        limit: usize,
        now: &str,
        refusal: &LocalRefusal,
    ) -> Result<Option<(i64, Attempt)>> {
        self.set_sync(true)?;
        let (filter, mut args) = scope_sql(scope);
        let n = args.len();
        args.push(after_id.into());
        args.push((limit as i64).into());
        // PostgreSQL: only records no live process holds, and none another one is taking.
        let (free, lock) = match self.lease {
            Some(_) => (format!(" AND {LEASE_FREE}"), " FOR UPDATE SKIP LOCKED"),
            None => (String::new(), ""),
        };
        let select = format!(
            "SELECT {STORED} FROM records WHERE {filter} AND id > ?{}{free} ORDER BY id
             LIMIT ?{}{lock}",
            n + 1,
            n + 2,
        );
        let path = self.path.clone();
        let serr = |e: DbError| storage(&path, e);
        let lease = self.lease_args();
        let taken = self.db.get_mut().in_tx(&serr, |db| {
            let taken = db
                .query(&select, &args)
                .and_then(|rows| rows.iter().map(stored).collect::<Result<Vec<_>, _>>())
                .map_err(serr)?;
            let Some(last) = taken.last().map(|s| s.id) else {
                return Ok((None, true));
            };
            let attempt = journal_attempt(db, &lease, taken, 1, now, refusal).map_err(serr)?;
            Ok((Some((last, attempt)), true))
        })?;
        if let Some((_, a)) = &taken {
            self.hold(a.sent.iter().map(|s| s.id));
        }
        Ok(taken)
    }

    /// Journals a further attempt of records already taken (a retry), as [`take_batch`]
    /// does the first. The records are read again, locked: only those still waiting to be
    /// sent (not abandoned meanwhile) and, on PostgreSQL, still this process's or free
    /// (another process took over an expired lease: it sends them) are retried, with what
    /// the journal says of them now. PostgreSQL: the lease starts again.
    ///
    /// [`take_batch`]: Journal::take_batch
    pub fn retake(
        &mut self,
        batch: &[Stored],
        attempt: u32,
        now: &str,
        refusal: &LocalRefusal,
    ) -> Result<Attempt> {
        self.set_sync(true)?;
        let path = self.path.clone();
        let serr = |e: DbError| storage(&path, e);
        let lease = self.lease_args();
        let ids: Vec<i64> = batch.iter().map(|s| s.id).collect();
        let mut args: Vec<Val> = vals![id_list(&ids)].to_vec();
        let db = self.db.get_mut();
        let (held, lock) = match &lease {
            Some((owner, _)) => {
                args.push(owner.as_str().into());
                (
                    format!(" AND (lease_owner = ?2 OR {LEASE_FREE})"),
                    " FOR UPDATE",
                )
            }
            None => (String::new(), ""),
        };
        let select = format!(
            "SELECT {STORED} FROM records WHERE {} AND state IN ('pending', 'sent'){held}
             ORDER BY id{lock}",
            db.ids_in("id", 1)
        );
        let a = db.in_tx(&serr, |db| {
            let rows = db
                .query(&select, &args)
                .and_then(|rows| rows.iter().map(stored).collect::<Result<Vec<_>, _>>())
                .map_err(serr)?;
            let a = journal_attempt(db, &lease, rows, attempt, now, refusal).map_err(serr)?;
            Ok((a, true))
        })?;
        self.hold(a.sent.iter().map(|s| s.id));
        Ok(a)
    }

    /// PostgreSQL: gives back every lease of this process (nothing of it is on the wire
    /// when this is called): a record left `sent` is then another process's to settle, as
    /// maybe delivered, without waiting for the lease to expire. Only the records this
    /// process claimed and still holds are looked at, by id.
    pub fn release_leases(&mut self) -> Result<()> {
        let Some(l) = self.lease.as_mut().filter(|l| !l.held.is_empty()) else {
            return Ok(());
        };
        let ids: Vec<i64> = l.held.iter().copied().collect();
        let db = self.db.get_mut();
        let sql = format!(
            "UPDATE records SET lease_owner = NULL, lease_until = NULL
             WHERE {} AND lease_owner = ?2",
            db.ids_in("id", 1)
        );
        db.exec(&sql, vals![id_list(&ids), l.owner.as_str()])
            .map_err(|e| storage(&self.path, e))?;
        l.held.clear();
        Ok(())
    }

    /// The condition that keeps an outcome to the records this process still has out:
    /// `sent` (not abandoned meanwhile) and, on PostgreSQL, not taken over by another
    /// process after the lease expired (that one settles them); its owner parameter is
    /// `?n`.
    fn still_ours(&self, n: usize) -> (String, Option<Val>) {
        match &self.lease {
            Some(l) => (
                format!(" AND state = 'sent' AND lease_owner = ?{n}"),
                Some(l.owner.as_str().into()),
            ),
            None => (" AND state = 'sent'".into(), None),
        }
    }

    /// PostgreSQL: this process's name and lease in milliseconds, for an attempt.
    fn lease_args(&self) -> Option<(String, i64)> {
        self.lease
            .as_ref()
            .map(|l| (l.owner.clone(), l.duration.as_millis() as i64))
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
        let (ours, owner) = self.still_ours(4);
        let db = self.db.get_mut();
        let update = format!("{update} WHERE {}{ours}", db.ids_in("id", 1));
        let mut args = vals![id_list(ids), c.code, c.reason].to_vec();
        args.extend(owner);
        db.in_tx(&serr, |db| {
            finish_batch(db, c.batch, c.http_status, c.code, outcome, c.now).map_err(serr)?;
            db.exec(&update, &args).map_err(serr)?;
            Ok(((), true))
        })
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
        let (ours, owner) = self.still_ours(6);
        let db = self.db.get_mut();
        // ?2 is the state, as text in both stores.
        let sql = format!(
            "UPDATE records SET state = CASE WHEN ?2 = 'pending' AND maybe_delivered = 1
             THEN 'sent' ELSE ?2 END, last_code = ?3, last_message = ?4,
             decided_at = CASE WHEN ?2 = 'pending' THEN decided_at ELSE ?5 END{}
             WHERE {}{ours}",
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
                let mut args = vals![id_list(&group), state.as_str(), code, msg, now].to_vec();
                args.extend(owner.clone());
                db.exec(&sql, &args).map_err(serr)?;
            }
            Ok(((), true))
        })?;
        // Given back by the statements above.
        self.no_longer_held(ids);
        Ok(())
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

/// Records a send pass refuses here instead of sending (their begin_time left the
/// marketplace's window while they waited, say): which, and the code and reason stored.
pub struct LocalRefusal<'a> {
    pub applies: &'a dyn Fn(&Stored) -> bool,
    pub code: &'a str,
    pub reason: &'a str,
}

impl LocalRefusal<'_> {
    /// Refuses nothing.
    pub const NONE: LocalRefusal<'static> = LocalRefusal {
        applies: &|_| false,
        code: "",
        reason: "",
    };
}

/// One attempt of a batch, journaled.
#[derive(Debug)]
pub struct Attempt {
    /// The batch row; None when every record was refused.
    pub batch_id: Option<i64>,
    /// Now `sent`: to go on the wire.
    pub sent: Vec<Stored>,
    /// Refused without being sent: `rejected` with the refusal's code, or left `sent` (and
    /// undecided) when an earlier attempt may have delivered them.
    pub refused: Vec<Stored>,
}

/// Refuses what `refusal` applies to and marks the rest `sent` under a new batch, in the
/// caller's transaction. `lease`: PostgreSQL's owner and lease in milliseconds.
fn journal_attempt(
    db: &mut Db,
    lease: &Option<(String, i64)>,
    records: Vec<Stored>,
    attempt: u32,
    now: &str,
    refusal: &LocalRefusal,
) -> std::result::Result<Attempt, DbError> {
    let (refused, sent): (Vec<Stored>, Vec<Stored>) =
        records.into_iter().partition(|s| (refusal.applies)(s));
    if !refused.is_empty() {
        let ids: Vec<i64> = refused.iter().map(|s| s.id).collect();
        let sql = format!(
            "UPDATE records SET state = CASE WHEN {MAYBE} THEN 'sent' ELSE 'rejected' END,
             maybe_delivered = CASE WHEN {MAYBE} THEN 1 ELSE 0 END,
             last_code = ?2, last_message = ?3,
             decided_at = CASE WHEN {MAYBE} THEN decided_at ELSE ?4 END{}
             WHERE {}",
            db.lease_release(),
            db.ids_in("id", 1)
        );
        db.exec(
            &sql,
            vals![id_list(&ids), refusal.code, refusal.reason, now],
        )?;
    }
    if sent.is_empty() {
        return Ok(Attempt {
            batch_id: None,
            sent,
            refused,
        });
    }
    let ids: Vec<i64> = sent.iter().map(|s| s.id).collect();
    let batch = db
        .query_one(
            "INSERT INTO batches (started_at, records, attempt) VALUES (?1, ?2, ?3)
             RETURNING id",
            vals![now, ids.len() as i64, i64::from(attempt)],
        )?
        .int(0)?;
    let mut args: Vec<Val> = vals![id_list(&ids), now, batch].to_vec();
    let lease_set = match lease {
        None => "",
        Some((owner, ms)) => {
            args.push(owner.as_str().into());
            args.push((*ms).into());
            ", lease_owner = ?4, lease_until = now() + ?5::bigint * interval '1 millisecond'"
        }
    };
    db.exec(
        &format!(
            "UPDATE records SET state = 'sent', attempts = attempts + 1, sent_at = ?2,
             last_batch = ?3, maybe_delivered = CASE WHEN {MAYBE} THEN 1 ELSE 0 END{lease_set}
             WHERE {}",
            db.ids_in("id", 1)
        ),
        &args,
    )?;
    Ok(Attempt {
        batch_id: Some(batch),
        sent,
        refused,
    })
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
    use super::super::testing::{import, journals, take, take_two, ALL, HEAD};
    use super::super::{LocalRefusal, Scope, State};
    use crate::usage::batch::Outcome;

    #[test]
    fn outcomes_and_replacement() {
        for (_dir, mut j) in journals() {
            let r = import(
            &mut j,
            &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\ni2,20260110T100000Z,20260110T110000Z,1,b\n"),
            true,
        );
            let a = take(&mut j, Scope::Import(r.import_id));
            assert_eq!(a.sent.len(), 2);
            let ids: Vec<i64> = a.sent.iter().map(|s| s.id).collect();
            let b = a.batch_id.unwrap();
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

    /// A retry sends only what is still waiting: a record abandoned meanwhile is neither
    /// sent again nor given an outcome.
    #[test]
    fn a_retry_skips_what_was_abandoned_meanwhile() {
        for (_dir, mut j) in journals() {
            let (a, ids) = take_two(&mut j);
            j.mark_refused(a.batch_id.unwrap(), &ids, Some(503), "5xx", "busy", "t")
                .unwrap();
            j.abandon("a", "me", "not billable", "t").unwrap();
            let again = j.retake(&a.sent, 2, "t", &LocalRefusal::NONE).unwrap();
            let sns: Vec<&str> = again
                .sent
                .iter()
                .map(|s| s.record.metering_sn.as_str())
                .collect();
            assert_eq!(sns, ["b"]);
            j.apply(
                again.batch_id.unwrap(),
                &ids,
                &[
                    Outcome::Accepted { code: "000".into() },
                    Outcome::Accepted { code: "000".into() },
                ],
                200,
                "t",
            )
            .unwrap();
            let c = j.counts().unwrap();
            assert_eq!((c[&State::Abandoned], c[&State::Accepted]), (1, 1));
        }
    }

    /// PostgreSQL: once another sender took over an expired lease, the first one's retry,
    /// outcomes and giving back leave the records to it.
    #[test]
    fn a_sender_whose_lease_was_taken_over_leaves_the_records_alone() {
        let Some(url) = super::super::pg::test_database("lease_taken_over") else {
            return;
        };
        let url = std::path::Path::new(&url);
        let mut slow = super::super::Journal::open(url).unwrap();
        slow.set_lease(std::time::Duration::from_millis(200));
        import(
            &mut slow,
            &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\n"),
            true,
        );
        let a = take(&mut slow, ALL);
        std::thread::sleep(std::time::Duration::from_millis(400));
        let mut other = super::super::Journal::open(url).unwrap();
        let b = take(&mut other, ALL);
        assert_eq!(b.sent.len(), 1);
        assert!(b.sent[0].maybe_delivered);
        // The slow sender's outcome and retry do not touch the other's records.
        let ids = [a.sent[0].id];
        slow.mark_refused(a.batch_id.unwrap(), &ids, Some(503), "5xx", "busy", "t")
            .unwrap();
        assert!(slow
            .retake(&a.sent, 2, "t", &LocalRefusal::NONE)
            .unwrap()
            .sent
            .is_empty());
        slow.release_leases().unwrap();
        other
            .apply(
                b.batch_id.unwrap(),
                &ids,
                &[Outcome::Accepted { code: "005".into() }],
                200,
                "t",
            )
            .unwrap();
        assert_eq!(other.counts().unwrap()[&State::Accepted], 1);
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
        let (_, a) = dead
            .take_batch(Scope::Import(r.import_id), 0, 1, "t", &LocalRefusal::NONE)
            .unwrap()
            .unwrap();
        assert_eq!(a.sent.len(), 1);
        // Killed here: nothing is given back.
        std::mem::forget(dead);
        let mut other = super::super::Journal::open(url).unwrap();
        let taken = |a: super::super::Attempt| -> Vec<(String, bool)> {
            a.sent
                .into_iter()
                .map(|s| (s.record.metering_sn, s.maybe_delivered))
                .collect()
        };
        assert_eq!(taken(take(&mut other, ALL)), [("b".to_string(), false)]);
        // Ends after sending "b" and hearing nothing back: "b" stays `sent`, lease given back.
        drop(other);
        std::thread::sleep(std::time::Duration::from_millis(1200));
        let mut other = super::super::Journal::open(url).unwrap();
        assert_eq!(
            taken(take(&mut other, ALL)),
            [("a".to_string(), true), ("b".to_string(), true)]
        );
    }

    /// PostgreSQL: outcomes stored on a second connection of the sender apply to what the
    /// first claimed (the same name on the leases) and give those leases back; the first
    /// then gives back only what it still holds.
    #[test]
    fn a_second_writer_stores_outcomes_of_what_the_first_claimed() {
        let Some(url) = super::super::pg::test_database("second_writer") else {
            return;
        };
        let url = std::path::Path::new(&url);
        let mut first = super::super::Journal::open(url).unwrap();
        let (a, ids) = take_two(&mut first);
        let mut second = first.second_writer().unwrap().expect("PostgreSQL");
        second
            .apply(
                a.batch_id.unwrap(),
                &ids[..1],
                &[Outcome::Accepted { code: "000".into() }],
                200,
                "t",
            )
            .unwrap();
        first.no_longer_held(&ids[..1]);
        assert_eq!(first.held_count(), 1);
        first.release_leases().unwrap();
        assert_eq!(first.counts().unwrap()[&State::Accepted], 1);
        let mut c = postgres::Client::connect(url.to_str().unwrap(), postgres::NoTls).unwrap();
        let leased: i64 = c
            .query_one(
                "SELECT count(*) FROM records WHERE lease_owner IS NOT NULL",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(leased, 0);
        // The one without an outcome is free for another sender, as maybe delivered.
        let mut other = super::super::Journal::open(url).unwrap();
        let b = take(&mut other, ALL);
        assert_eq!(b.sent.len(), 1);
        assert!(b.sent[0].maybe_delivered);
    }

    /// A journal in one SQLite file has no second writer.
    #[test]
    fn sqlite_has_no_second_writer() {
        let (_dir, j) = super::super::testing::journal();
        assert!(j.second_writer().unwrap().is_none());
    }

    /// PostgreSQL: a sender gives back what it still holds (a batch without a definite
    /// answer keeps its lease for the retry; one answered was given back with its outcome),
    /// and nothing another sender holds.
    #[test]
    fn giving_back_frees_what_this_sender_holds_and_nothing_else() {
        let Some(url) = super::super::pg::test_database("giving_back") else {
            return;
        };
        let url = std::path::Path::new(&url);
        let mut first = super::super::Journal::open(url).unwrap();
        import(
            &mut first,
            &format!(
                "{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\n\
                 i2,20260110T100000Z,20260110T110000Z,1,b\n\
                 i3,20260110T100000Z,20260110T110000Z,1,c\n\
                 i4,20260110T100000Z,20260110T110000Z,1,d\n"
            ),
            true,
        );
        let one = |j: &mut super::super::Journal, after: i64| {
            j.take_batch(ALL, after, 1, "t", &LocalRefusal::NONE)
                .unwrap()
                .unwrap()
        };
        let (after_a, a) = one(&mut first, 0);
        let (after_b, b) = one(&mut first, after_a);
        let mut second = super::super::Journal::open(url).unwrap();
        let (_, c) = one(&mut second, after_b);
        first
            .mark_ambiguous(
                a.batch_id.unwrap(),
                &[a.sent[0].id],
                None,
                "timeout",
                "-",
                "t",
            )
            .unwrap();
        first
            .apply(
                b.batch_id.unwrap(),
                &[b.sent[0].id],
                &[Outcome::Accepted { code: "000".into() }],
                200,
                "t",
            )
            .unwrap();
        first.release_leases().unwrap();
        let mut third = super::super::Journal::open(url).unwrap();
        let sns: Vec<(String, bool)> = take(&mut third, ALL)
            .sent
            .into_iter()
            .map(|s| (s.record.metering_sn, s.maybe_delivered))
            .collect();
        // "a" given back as maybe delivered, "b" accepted, "c" still the second's.
        assert_eq!(sns, [("a".to_string(), true), ("d".to_string(), false)]);
        assert_eq!(c.sent[0].record.metering_sn, "c");
    }
}
