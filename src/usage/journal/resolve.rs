//! The seller's way out of a record that can be neither sent again nor replaced: abandoning
//! it. The record stays in the journal with who, when and why; it is never sent again, and
//! its period is free for a corrected record under a new metering_sn.

use super::db::{vals, DbError};
use super::{storage, Journal, State};
use crate::error::{CsmError, Result};
use crate::usage::record::show;

/// What `abandon` changed.
#[derive(Debug, Clone)]
pub struct Abandoned {
    pub metering_sn: String,
    pub instance_id: String,
    pub begin_time: String,
    pub end_time: String,
    /// The state it was in.
    pub was: State,
    pub maybe_delivered: bool,
    /// The marketplace's last answer for it (code), if any.
    pub last_code: Option<String>,
}

impl Journal {
    /// Marks the record `metering_sn` abandoned by `by` at `now` for `reason`, in one
    /// transaction. Refused for a record that is not in the journal, accepted (it is
    /// billed), abandoned already, or (PostgreSQL) held by a sender. The caller holds the
    /// send lock (SQLite).
    pub fn abandon(
        &mut self,
        metering_sn: &str,
        by: &str,
        reason: &str,
        now: &str,
    ) -> Result<Abandoned> {
        self.set_sync(true)?;
        let path = self.path.clone();
        let serr = |e: DbError| storage(&path, e);
        let me = self.lease.as_ref().map(|l| l.owner.clone());
        let db = self.db.get_mut();
        db.in_tx(&serr, |db| {
            // PostgreSQL has no send lock: a record another process holds is left to it.
            let held = if db.is_postgres() {
                format!(
                    "CASE WHEN NOT {} THEN lease_owner END",
                    super::send::LEASE_FREE
                )
            } else {
                "NULL".to_string()
            };
            let row = db
                .query_opt(
                    &format!(
                        "SELECT id, state, instance_id, begin_time, end_time, maybe_delivered,
                         last_code, coalesce(abandoned_at, decided_at), {held} FROM records
                         WHERE metering_sn = ?1{}",
                        // Locked until the commit: a sender cannot take it meanwhile.
                        if db.is_postgres() { " FOR UPDATE" } else { "" }
                    ),
                    vals![metering_sn],
                )
                .map_err(serr)?;
            // Whole when it could be a metering_sn (at most 64 characters): it is compared
            // by eye with what `status` shows.
            let sn = if metering_sn.chars().count() <= 64 {
                format!("{metering_sn:?}")
            } else {
                show(metering_sn)
            };
            let Some(row) = row else {
                return Err(CsmError::usage(format!(
                    "metering_sn {sn}: not in the journal {} (nothing to resolve)",
                    super::display(&path)
                )));
            };
            let get = || -> std::result::Result<_, DbError> {
                Ok((
                    row.int(0)?,
                    row.state(1)?,
                    row.text(2)?,
                    row.text(3)?,
                    row.text(4)?,
                    row.bool(5)?,
                    row.opt_text(6)?,
                    row.opt_text(7)?,
                ))
            };
            let (id, was, instance_id, begin_time, end_time, maybe_delivered, last_code, at) =
                get().map_err(serr)?;
            let at = at.unwrap_or_default();
            match was {
                State::Accepted => {
                    return Err(CsmError::usage(format!(
                        "metering_sn {sn}: accepted by the marketplace ({at}) and billed; \
                         an accepted record cannot be abandoned"
                    )))
                }
                State::Abandoned => {
                    return Err(CsmError::usage(format!(
                        "metering_sn {sn}: already abandoned ({at})"
                    )))
                }
                State::Pending | State::Sent | State::Rejected => {}
            }
            let holder = row.opt_text(8).map_err(serr)?;
            if let Some(owner) = holder.filter(|o| Some(o) != me.as_ref()) {
                return Err(CsmError::usage(format!(
                    "metering_sn {sn}: being sent by {owner} (its lease has not expired); \
                     try again once that upload or replay is done"
                )));
            }
            db.exec(
                "UPDATE records SET state = 'abandoned', retired_id = id, abandoned_at = ?2,
                 abandoned_by = ?3, abandon_reason = ?4 WHERE id = ?1",
                vals![id, now, by, reason],
            )
            .map_err(serr)?;
            Ok((
                Abandoned {
                    metering_sn: metering_sn.to_string(),
                    instance_id,
                    begin_time,
                    end_time,
                    was,
                    maybe_delivered,
                    last_code,
                },
                true,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{import, journals, take, take_two, ALL, HEAD};
    use super::super::{Scope, State};
    use crate::error::CsmError;

    #[test]
    fn abandon_frees_the_period_not_the_metering_sn() {
        for (_dir, mut j) in journals() {
            let (a, ids) = take_two(&mut j);
            let b = a.batch_id.unwrap();
            j.mark_ambiguous(b, &ids[..1], None, "network", "dropped", "t")
                .unwrap();
            j.apply(
                b,
                &ids,
                &[
                    crate::usage::batch::Outcome::Rejected {
                        code: "012".into(),
                        reason: "no".into(),
                    },
                    crate::usage::batch::Outcome::Accepted { code: "000".into() },
                ],
                200,
                "t",
            )
            .unwrap();
            // The dead end: neither under its metering_sn nor under a new one.
            let fixed_same_sn = format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,2,a\n");
            let fixed_new_sn = format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,2,a2\n");
            let r = import(&mut j, &fixed_same_sn, true);
            assert!(
                r.errors[0].message.contains("usage resolve"),
                "{:?}",
                r.errors
            );
            let r = import(&mut j, &fixed_new_sn, true);
            assert!(
                r.errors[0].message.contains("usage resolve"),
                "{:?}",
                r.errors
            );

            // Refused: unknown, accepted.
            let e = j.abandon("zz", "me", "why", "t2").unwrap_err();
            assert!(
                matches!(e, CsmError::Usage(_)) && e.to_string().contains("\"zz\""),
                "{e}"
            );
            let e = j.abandon("b", "me", "why", "t2").unwrap_err();
            assert!(e.to_string().contains("accepted"), "{e}");

            let a = j.abandon("a", "me", "not in 话单管理", "t2").unwrap();
            assert_eq!((a.was, a.maybe_delivered), (State::Rejected, true));
            assert_eq!(a.last_code.as_deref(), Some("012"));
            let e = j.abandon("a", "me", "why", "t3").unwrap_err();
            assert!(e.to_string().contains("already abandoned (t2)"), "{e}");

            // The same record again is counted and left alone; other content under the
            // abandoned metering_sn is refused; the fix under a new one is journaled.
            let r = import(
                &mut j,
                &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\n"),
                true,
            );
            assert_eq!(
                (r.already_abandoned, r.error_count),
                (1, 0),
                "{:?}",
                r.errors
            );
            let r = import(&mut j, &fixed_same_sn, true);
            assert!(r.errors[0].message.contains("abandoned"), "{:?}", r.errors);
            let r = import(&mut j, &fixed_new_sn, true);
            assert_eq!((r.new, r.error_count), (1, 0), "{:?}", r.errors);
            // Abandoned records are not sent again, not even by a replay of rejected ones.
            let all = Scope::Unfinished {
                include_rejected: true,
            };
            let left: Vec<String> = take(&mut j, all)
                .sent
                .into_iter()
                .map(|s| s.record.metering_sn)
                .collect();
            assert_eq!(left, ["a2"]);
            let c = j.counts().unwrap();
            assert_eq!((c[&State::Abandoned], c[&State::Sent]), (1, 1));
            // A second fix for the same period is a period duplicate of the first fix.
            let r = import(
                &mut j,
                &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,3,a3\n"),
                true,
            );
            assert!(r.errors[0].message.contains("\"a2\""), "{:?}", r.errors);
        }
    }

    /// PostgreSQL: a record another process has claimed is not abandoned under it.
    #[test]
    fn a_record_another_sender_holds_is_not_abandoned() {
        let Some(url) = super::super::pg::test_database("a_record_another_sender_holds") else {
            return;
        };
        let url = std::path::Path::new(&url);
        let mut j = super::Journal::open(url).unwrap();
        import(
            &mut j,
            &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\n"),
            true,
        );
        let mut other = super::Journal::open(url).unwrap();
        assert_eq!(take(&mut other, ALL).sent.len(), 1);
        // Taken by the other process: neither taken by this one nor abandoned.
        assert!(take(&mut j, ALL).sent.is_empty());
        let e = j.abandon("a", "me", "why", "t").unwrap_err();
        assert!(e.to_string().contains("being sent by"), "{e}");
        // Once the other is gone, its lease is given back (the record stays `sent`: the
        // other process may have sent it).
        drop(other);
        assert_eq!(j.abandon("a", "me", "why", "t").unwrap().was, State::Sent);
    }
}
