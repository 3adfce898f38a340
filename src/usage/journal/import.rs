//! Reading a file into the journal: one transaction per file, and the rules for a record
//! that is already there (the same again, a fixed rejected one, a duplicate).
//!
//! Speed: the rows are first staged in a temporary table without indexes ([`CHUNK`] rows at
//! a time: one round trip per chunk to a PostgreSQL server, through COPY), then go into the
//! journal in one `INSERT … SELECT … ORDER BY metering_sn`. In metering_sn order the unique indexes
//! grow at their ends whatever the order of the file (a derived metering_sn starts with
//! the window): a file sorted by instance no longer scatters index writes over the whole
//! journal, which had the page cache spill the same pages again and again. Rows already
//! journaled are then looked at one by one, in file order. All in the import's one
//! transaction: a crash leaves the journal as it was.

use super::db::{vals, Db, DbError, Row, Val};
use super::{storage, Journal, State};
use crate::error::{CsmError, Result};
use crate::usage::reader::{LineError, RecordReader};
use crate::usage::record::{self, Billing, Deadline, UsageRecord};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

/// What an import found. Every data line read is counted once: `read` = `bad` +
/// `unchecked` + `new` + `again` + `already_accepted` + `already_rejected` +
/// `already_abandoned` + `replaced`.
#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    pub import_id: i64,
    /// Data lines: every line but blank ones and the CSV header.
    pub read: u64,
    /// Data lines that break a rule (each is one of `errors`).
    pub bad: u64,
    /// Data lines not checked because the CSV header is bad.
    pub unchecked: u64,
    pub new: u64,
    /// Already in the journal with the same content, not yet accepted: sent again.
    pub again: u64,
    pub already_accepted: u64,
    pub already_rejected: u64,
    /// Abandoned by the seller (`usage resolve --abandon`): never sent again.
    pub already_abandoned: u64,
    /// Rejected before, now fixed in the input: replaced and sent again.
    pub replaced: u64,
    pub errors: Vec<LineError>,
    pub error_count: u64,
    /// The input held nothing but blank lines (for CSV, not even a header).
    pub empty: bool,
    pub deadline: BTreeMap<&'static str, u64>,
    /// Records past the ideal window: (line, metering_sn, end_time, status).
    pub late: Vec<(u64, String, String, Deadline)>,
}

/// At most this many line errors are kept for printing; all are counted.
const MAX_ERRORS_KEPT: usize = 50;
const MAX_LATE_KEPT: usize = 10;

/// Rows staged at a time. SQLite takes them in one INSERT of 9 parameters a row, under its
/// 32,766 per statement.
const CHUNK: usize = 1000;

/// The staged rows of one import (the temporary table lives in the import's transaction).
const STAGE: &str = "CREATE TEMP TABLE import_rows (
    line                BIGINT PRIMARY KEY,
    metering_sn         TEXT NOT NULL,
    sn_derived          BIGINT NOT NULL,
    instance_id         TEXT NOT NULL,
    begin_time          TEXT NOT NULL,
    end_time            TEXT NOT NULL,
    record_time         TEXT NOT NULL,
    usage_value         TEXT NOT NULL,
    relate_pkg_instance TEXT
)";

/// The staged columns, in the order [`stage_chunk`] gives them: the line, then the record's
/// ([`record_columns`]).
const STAGE_COLUMNS: &[&str] = &[
    "line",
    "metering_sn",
    "sn_derived",
    "instance_id",
    "begin_time",
    "end_time",
    "record_time",
    "usage_value",
    "relate_pkg_instance",
];

/// The record's columns, as a SQL list.
fn record_columns() -> String {
    STAGE_COLUMNS[1..].join(", ")
}

/// Checked records with their line numbers, staged together.
type Chunk = Vec<(u64, UsageRecord)>;

/// What one import carries from chunk to chunk.
struct Ctx<'a> {
    path: &'a Path,
    import_id: i64,
    known: bool,
    /// For the deadlines of the records that will be sent.
    now: DateTime<Utc>,
    billing: Billing,
}

impl Journal {
    /// Reads the whole input into the journal in one transaction. With `commit` false (or
    /// when any line is bad) the transaction is rolled back: the journal is unchanged.
    pub fn import<R: BufRead>(
        &mut self,
        reader: &mut RecordReader<R>,
        file_label: &str,
        now: DateTime<Utc>,
        billing: Billing,
        commit: bool,
    ) -> Result<ImportReport> {
        self.set_sync(true)?;
        let known = self.known;
        let path = self.path.clone();
        let serr = |e: DbError| storage(&path, e);
        let db = self.db.get_mut();
        db.in_tx(&serr, |db| {
            let now_s = record::format_api_time(now);
            let import_id = db
                .query_one(
                    "INSERT INTO imports (file, imported_at, new_records) VALUES (?1, ?2, 0)
                     RETURNING id",
                    vals![file_label, now_s.as_str()],
                )
                .and_then(|r| r.int(0))
                .map_err(serr)?;
            let stage = stage_table(db).map_err(serr)?;
            db.batch(&stage).map_err(serr)?;
            let cx = Ctx {
                path: &path,
                import_id,
                known,
                now,
                billing,
            };
            let mut rep = ImportReport {
                import_id,
                ..Default::default()
            };
            // Lines are read and checked here while the chunks before are staged on a
            // thread of their own (at most two chunks wait between them).
            let (staged, read) = std::thread::scope(|scope| {
                let (chunks, staging) = std::sync::mpsc::sync_channel::<Chunk>(2);
                let (db, cx) = (&mut *db, &cx);
                let stager = scope.spawn(move || -> Result<u64> {
                    let mut staged = 0;
                    for chunk in staging {
                        staged += stage_chunk(db, cx, chunk)?;
                    }
                    Ok(staged)
                });
                let read = read_chunks(reader, file_label, now, billing, &mut rep, &chunks);
                drop(chunks);
                let staged = stager
                    .join()
                    .unwrap_or_else(|_| Err(storage(&path, "the thread staging rows failed")));
                (staged, read)
            });
            read?;
            let staged = staged?;
            let cols = record_columns();
            let insert = format!(
                "INSERT INTO records ({cols}, source_file, source_line, import_id)
                 SELECT {cols}, CAST(?1 AS TEXT), line, CAST(?2 AS BIGINT)
                 FROM import_rows WHERE true ORDER BY metering_sn, line"
            );
            let args = vals![file_label, import_id];
            // Most imports hold new records only: a plain INSERT skips the checks ON CONFLICT
            // makes before each row goes in (PostgreSQL: a fifth of the import). Any record
            // already journaled, two lines with one metering_sn, or another host importing
            // the same rows: it stops at the first, changes nothing, and the rows go in again,
            // the conflicting ones left out (of two rows with one metering_sn, the earlier
            // line goes in).
            let inserted = match db.exec_unique(&insert, args).map_err(serr)? {
                Some(n) => n,
                None => db
                    .exec(&format!("{insert} ON CONFLICT DO NOTHING"), args)
                    .map_err(serr)?,
            };
            if known || inserted < staged {
                resolve_staged(db, &cx, &mut rep)?;
            } else {
                rep.new = inserted;
            }
            db.batch("DROP TABLE import_rows").map_err(serr)?;
            // Errors in line order (rows already journaled are looked at after the others).
            rep.errors.sort_by_key(|e| e.line);
            rep.read = reader.data_lines();
            rep.empty = reader.held_nothing();
            rep.unchecked = reader.unchecked();
            rep.bad = rep.error_count - u64::from(reader.header_failed());
            db.exec(
                "UPDATE imports SET new_records = ?1 WHERE id = ?2",
                vals![rep.new as i64, import_id],
            )
            .map_err(serr)?;
            let keep = commit && rep.error_count == 0;
            if keep && rep.new > 10_000 && db.is_postgres() {
                // Fresh statistics, or the first batches are planned for an empty table.
                db.batch("ANALYZE records").map_err(serr)?;
            }
            Ok((rep, keep))
        })
    }
}

/// Reads and checks every line, counting what it finds in `rep`, and hands the good ones
/// to `chunks` [`CHUNK`] at a time. Stops early, without an error, when the stager has
/// stopped (its error is the import's).
fn read_chunks<R: BufRead>(
    reader: &mut RecordReader<R>,
    file_label: &str,
    now: DateTime<Utc>,
    billing: Billing,
    rep: &mut ImportReport,
    chunks: &std::sync::mpsc::SyncSender<Chunk>,
) -> Result<()> {
    let mut chunk: Chunk = Vec::with_capacity(CHUNK);
    while let Some(item) = reader
        .next_record()
        .map_err(|e| CsmError::io(file_label, e))?
    {
        let (line, raw) = match item {
            Ok(x) => x,
            Err(e) => {
                rep.push_error(e);
                continue;
            }
        };
        let rec = match record::validate(&raw, now) {
            Ok(r) => r,
            Err(e) => {
                rep.push_error(LineError {
                    line,
                    field: Some(e.field),
                    message: e.message,
                });
                continue;
            }
        };
        count_deadline(rep, line, &rec, billing, now);
        chunk.push((line, rec));
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if chunks.send(full).is_err() {
                return Ok(());
            }
        }
    }
    let _ = chunks.send(chunk);
    Ok(())
}

/// Counts `rec`'s deadline status, and keeps it among the first late ones.
fn count_deadline(
    rep: &mut ImportReport,
    line: u64,
    rec: &UsageRecord,
    billing: Billing,
    now: DateTime<Utc>,
) {
    let st = record::deadline_status(&rec.end_time, billing, now);
    *rep.deadline.entry(st.as_str()).or_default() += 1;
    if st != Deadline::OnTime && rep.late.len() < MAX_LATE_KEPT {
        rep.late
            .push((line, rec.metering_sn.clone(), rec.end_time.clone(), st));
    }
}

/// The staging table for this journal. PostgreSQL: its text columns in the collation of
/// `records.metering_sn`, which the rows are sorted by and compared with: byte order in
/// journals made since the key columns compare bytes, the database's default in older ones
/// (compared in another collation, their metering_sn index could not be used).
pub(super) fn stage_table(db: &mut Db) -> std::result::Result<String, DbError> {
    if !db.is_postgres() {
        // The rowid itself: no second index to keep.
        return Ok(STAGE.replace("BIGINT PRIMARY KEY", "INTEGER PRIMARY KEY"));
    }
    let bytes = db
        .query_one(
            "SELECT count(*) FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
             WHERE a.attrelid = 'records'::regclass AND a.attname = 'metering_sn'
             AND c.collname = 'C'",
            &[],
        )?
        .bool(0)?;
    Ok(if bytes {
        STAGE.replace(" TEXT NOT NULL", super::pg::BYTE_ORDER_TEXT)
    } else {
        STAGE.to_string()
    })
}

/// Stages the rows of `chunk`; how many.
fn stage_chunk(db: &mut Db, cx: &Ctx, chunk: Chunk) -> Result<u64> {
    if chunk.is_empty() {
        return Ok(0);
    }
    let mut params: Vec<Val> = Vec::with_capacity(chunk.len() * 9);
    for (line, rec) in chunk {
        params.extend([
            Val::from(line as i64),
            rec.metering_sn.into(),
            rec.sn_derived.into(),
            rec.instance_id.into(),
            rec.begin_time.into(),
            rec.end_time.into(),
            rec.record_time.into(),
            rec.usage_value.into(),
            rec.relate_pkg_instance.into(),
        ]);
    }
    db.insert_rows("import_rows", STAGE_COLUMNS, &params)
        .map_err(|e| storage(cx.path, e))
}

/// The staged rows that did not go in (already journaled), or in a scratch journal every
/// row: each resolved against what is there, in file order, a page at a time.
fn resolve_staged(db: &mut Db, cx: &Ctx, rep: &mut ImportReport) -> Result<()> {
    let serr = |e: DbError| storage(cx.path, e);
    // The read counted every good record: recounted below for those that will be sent.
    rep.deadline.clear();
    rep.late.clear();
    let mut after = 0i64;
    loop {
        let rows = db
            .query(
                &format!(
                    "SELECT {}, EXISTS (SELECT 1 FROM records r
                       WHERE r.metering_sn = s.metering_sn AND r.import_id = ?1
                       AND r.source_line = s.line)
                     FROM import_rows s WHERE line > ?2 ORDER BY line LIMIT ?3",
                    STAGE_COLUMNS.join(", ")
                ),
                vals![cx.import_id, after, CHUNK as i64],
            )
            .map_err(serr)?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.int(0).map_err(serr)?;
        for row in rows {
            let get = || -> std::result::Result<_, DbError> {
                Ok((
                    row.int(0)? as u64,
                    UsageRecord {
                        metering_sn: row.text(1)?,
                        sn_derived: row.bool(2)?,
                        instance_id: row.text(3)?,
                        begin_time: row.text(4)?,
                        end_time: row.text(5)?,
                        record_time: row.text(6)?,
                        usage_value: row.text(7)?,
                        relate_pkg_instance: row.opt_text(8)?,
                    },
                    row.bool(9)?,
                ))
            };
            let (line, rec, new_here) = get().map_err(serr)?;
            let settled_before =
                rep.already_accepted + rep.already_rejected + rep.already_abandoned;
            let found = if new_here && cx.known {
                // New in this scratch journal: the real one may hold it.
                resolve_conflict(db, &rec, -1, rep, Where::Known)
            } else if new_here {
                Ok(false)
            } else {
                resolve_conflict(db, &rec, cx.import_id, rep, Where::Main).and_then(|f| {
                    f.then_some(true).ok_or_else(|| {
                        format!("metering_sn {:?}: could not be journaled", rec.metering_sn)
                    })
                })
            };
            let settled = found.is_err()
                || rep.already_accepted + rep.already_rejected + rep.already_abandoned
                    > settled_before;
            match found {
                Ok(true) => {}
                Ok(false) => rep.new += 1,
                Err(message) => rep.push_error(LineError {
                    line,
                    field: None,
                    message,
                }),
            }
            // Counted again here, for the records that will be sent: one decided before, or a
            // line in error, has no deadline to meet.
            if !settled {
                count_deadline(rep, line, &rec, cx.billing, cx.now);
            }
        }
    }
}

impl ImportReport {
    fn push_error(&mut self, e: LineError) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(e);
        }
    }
}

/// Where [`resolve_conflict`] looks.
#[derive(Clone, Copy)]
enum Where {
    Main,
    Known,
}

/// A record whose metering_sn or period is already journaled: the same record again is
/// fine (it joins this upload unless it is decided), a fixed rejected record replaces the
/// old one, anything else is a duplicate and an error naming the earlier line.
///
/// `Where::Known` looks in the real journal attached read-only to a scratch one (`import_id`
/// -1): nothing is written, the outcome is counted as an import into it would count it.
/// Ok(false): the record is in neither place (a new record).
fn resolve_conflict(
    db: &mut Db,
    rec: &UsageRecord,
    import_id: i64,
    rep: &mut ImportReport,
    place: Where,
) -> std::result::Result<bool, String> {
    let t = match place {
        Where::Main => "records",
        Where::Known => "known.records",
    };
    let write = matches!(place, Where::Main);
    let dberr = |e: DbError| format!("journal: {e}");
    let by_sn: Option<Row> = db
        .query_opt(
            &format!(
                "SELECT id, state, instance_id, begin_time, end_time, usage_value,
                 relate_pkg_instance, source_file, source_line, maybe_delivered,
                 import_id = ?2 FROM {t} WHERE metering_sn = ?1"
            ),
            vals![&rec.metering_sn, import_id],
        )
        .map_err(dberr)?;
    let where_ = |file: &str, line: i64, imp_same: bool| {
        if imp_same {
            format!("line {line} of this file")
        } else {
            format!("{file} line {line}")
        }
    };
    if let Some(row) = by_sn {
        let get = || -> std::result::Result<_, DbError> {
            Ok((
                row.int(0)?,
                row.state(1)?,
                row.text(2)?,
                row.text(3)?,
                row.text(4)?,
                row.text(5)?,
                row.opt_text(6)?,
                row.text(7)?,
                row.int(8)?,
                row.bool(9)?,
                row.bool(10)?,
            ))
        };
        let (id, state, inst, begin, end, value, relate, file, line, maybe, this_import) =
            get().map_err(dberr)?;
        let sn_state = format!("state {}", state.as_str());
        let same = inst == rec.instance_id
            && begin == rec.begin_time
            && end == rec.end_time
            && value == rec.usage_value
            && relate == rec.relate_pkg_instance;
        if this_import {
            // A line copied twice into one file: said as such (only one of them can go).
            if same {
                return Err(format!(
                    "repeats {} exactly (the same record twice in one file: remove one)",
                    where_(&file, line, true)
                ));
            }
            if rec.sn_derived {
                return Err(period_duplicate(rec, &where_(&file, line, true), &sn_state));
            }
            return Err(format!(
                "metering_sn {:?} duplicates {} (each record needs its own metering_sn)",
                rec.metering_sn,
                where_(&file, line, true)
            ));
        }
        if same {
            match state {
                State::Accepted => rep.already_accepted += 1,
                State::Rejected => rep.already_rejected += 1,
                State::Abandoned => rep.already_abandoned += 1,
                State::Pending | State::Sent => {
                    if write {
                        db.exec(
                            "UPDATE records SET import_id = ?2 WHERE id = ?1",
                            vals![id, import_id],
                        )
                        .map_err(dberr)?;
                    }
                    rep.again += 1;
                }
            }
            return Ok(true);
        }
        if state == State::Abandoned {
            // Its first version may still travel under it in someone's mind or log: a
            // metering_sn names one record for good.
            return Err(format!(
                "metering_sn {:?} names a record abandoned with `csm usage resolve` ({}); \
                 the corrected record needs a new metering_sn{}",
                rec.metering_sn,
                where_(&file, line, false),
                if rec.sn_derived {
                    " (this one was derived from the instance and period: give the row a \
                     metering_sn of its own)"
                } else {
                    ""
                }
            ));
        }
        if state == State::Rejected && maybe {
            // An earlier attempt got no definite answer: the marketplace may hold the first
            // version, and a later "duplicate metering_sn" would pass the fix off as accepted.
            return Err(format!(
                "metering_sn {:?} was rejected but may already be held by the marketplace \
                 ({}, an attempt got no definite answer); a fix needs a new metering_sn, {}",
                rec.metering_sn,
                where_(&file, line, false),
                resolve_hint(&rec.metering_sn)
            ));
        }
        if state == State::Rejected {
            // Replaceable unless another record holds the new period.
            let free = db
                .query_one(
                    &format!(
                        "SELECT count(*) = 0 FROM {t} WHERE instance_id = ?1
                         AND begin_time = ?2 AND end_time = ?3 AND id != ?4
                         AND state != 'abandoned'"
                    ),
                    vals![&rec.instance_id, &rec.begin_time, &rec.end_time, id],
                )
                .and_then(|r| r.bool(0))
                .map_err(dberr)?;
            if free && write {
                db.exec(
                    "UPDATE records SET instance_id = ?2, begin_time = ?3, end_time = ?4,
                     usage_value = ?5, relate_pkg_instance = ?6, record_time = ?7, import_id = ?8,
                     state = CASE WHEN maybe_delivered = 1 THEN 'sent' ELSE 'pending' END,
                     last_code = NULL, last_message = NULL, decided_at = NULL WHERE id = ?1",
                    vals![
                        id,
                        &rec.instance_id,
                        &rec.begin_time,
                        &rec.end_time,
                        &rec.usage_value,
                        rec.relate_pkg_instance.clone(),
                        &rec.record_time,
                        import_id
                    ],
                )
                .map_err(dberr)?;
            }
            if free {
                rep.replaced += 1;
                return Ok(true);
            }
        } else if rec.sn_derived {
            // No metering_sn given: the one csm derived names the instance and period.
            return Err(period_duplicate(
                rec,
                &where_(&file, line, false),
                &sn_state,
            ));
        } else {
            return Err(format!(
                "metering_sn {:?} is already journaled with other content ({}, state {}); \
                 a metering_sn names one record for good",
                rec.metering_sn,
                where_(&file, line, false),
                state.as_str()
            ));
        }
    }
    // Abandoned records hold no period (a journal of version 1 has none).
    let by_period: Option<Row> = db
        .query_opt(
            &format!(
                "SELECT metering_sn, state, source_file, source_line, import_id = ?4,
                 maybe_delivered FROM {t}
                 WHERE instance_id = ?1 AND begin_time = ?2 AND end_time = ?3
                 AND state != 'abandoned'"
            ),
            vals![&rec.instance_id, &rec.begin_time, &rec.end_time, import_id],
        )
        .map_err(dberr)?;
    match by_period {
        Some(row) => {
            let get = || -> std::result::Result<_, DbError> {
                Ok((
                    row.text(0)?,
                    row.state(1)?,
                    row.text(2)?,
                    row.int(3)?,
                    row.bool(4)?,
                    row.bool(5)?,
                ))
            };
            let (sn, state, file, line, same_import, maybe) = get().map_err(dberr)?;
            let mut m = period_duplicate(
                rec,
                &where_(&file, line, same_import),
                &format!("metering_sn {sn:?}, state {}", state.as_str()),
            );
            if state == State::Rejected && maybe {
                m.push_str(&format!(
                    "; its fix needs a new metering_sn, {}",
                    resolve_hint(&sn)
                ));
            } else if state == State::Rejected {
                m.push_str(&format!(
                    "; its fix goes under metering_sn {sn:?}, or under a new one {}",
                    resolve_hint(&sn)
                ));
            }
            Err(m)
        }
        None => Ok(false),
    }
}

/// How a rejected record's period is freed for a fix under a new metering_sn.
fn resolve_hint(sn: &str) -> String {
    format!(
        "once 卖家中心 > 交易管理 > 话单管理 shows that the marketplace does not hold {sn:?} \
         and `csm usage resolve {sn} --abandon --reason TEXT` has abandoned it"
    )
}

/// A second record for one instance and period; `earlier` says where the first is, `about`
/// what it is.
fn period_duplicate(rec: &UsageRecord, earlier: &str, about: &str) -> String {
    format!(
        "instance_id {} period {}..{} duplicates {earlier} ({about}); \
         the marketplace bills only the first record of a period",
        record::show(&rec.instance_id),
        rec.begin_time,
        rec.end_time,
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::{import, journals, HEAD};
    use super::super::State;

    #[test]
    fn import_is_all_or_nothing_and_idempotent() {
        for (_dir, mut j) in journals() {
            let good = format!(
            "{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\ni1,20260110T090000Z,20260110T100000Z,2,\n"
        );
            let bad = format!("{good}i2,20260110T100000Z,20260110T110000Z,-1,c\n");
            let r = import(&mut j, &bad, true);
            assert_eq!(r.error_count, 1);
            assert_eq!(r.errors[0].line, 4);
            assert_eq!(j.counts().unwrap()[&State::Pending], 0);
            let r = import(&mut j, &good, true);
            assert_eq!((r.new, r.error_count), (2, 0));
            let r = import(&mut j, &good, true);
            assert_eq!((r.new, r.again), (0, 2));
            assert_eq!(j.counts().unwrap()[&State::Pending], 2);
            // Same sn, other content; same period, other sn; duplicate inside one file.
            let r = import(
                &mut j,
                &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,9,a\n"),
                true,
            );
            assert!(
                r.errors[0].message.contains("other content"),
                "{:?}",
                r.errors
            );
            let r = import(
                &mut j,
                &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,zz\n"),
                true,
            );
            assert!(r.errors[0].message.contains("period"), "{:?}", r.errors);
            let r = import(
            &mut j,
            &format!("{HEAD}i9,20260110T100000Z,20260110T110000Z,1,q\ni8,20260110T100000Z,20260110T110000Z,1,q\n"),
            true,
        );
            assert!(
                r.errors[0].message.contains("line 2 of this file"),
                "{:?}",
                r.errors
            );
            // The same line twice: said as a repeat, with or without a metering_sn.
            for sn in ["r", ""] {
                let line = format!("i7,20260110T100000Z,20260110T110000Z,1,{sn}\n");
                let r = import(&mut j, &format!("{HEAD}{line}{line}"), true);
                assert!(
                    r.errors[0]
                        .message
                        .starts_with("repeats line 2 of this file exactly"),
                    "{:?}",
                    r.errors
                );
            }
            assert_eq!(j.counts().unwrap()[&State::Pending], 2);
        }
    }

    #[test]
    fn deadlines_count_the_records_that_will_be_sent() {
        for (_dir, mut j) in journals() {
            // Now is 12:00; hours that ended at 09:00 are overdue (hourly billing).
            let good = format!("{HEAD}i1,20260110T080000Z,20260110T090000Z,1,a\n");
            let r = import(&mut j, &good, true);
            assert_eq!(r.deadline.values().sum::<u64>(), 1, "{:?}", r.deadline);
            // The same record again (still unsent) still has its deadline; a line in error
            // (the same period under another metering_sn) has none.
            let text = format!("{good}i1,20260110T080000Z,20260110T090000Z,1,b\n");
            let r = import(&mut j, &text, false);
            assert_eq!((r.again, r.error_count), (1, 1));
            assert_eq!(r.deadline.values().sum::<u64>(), 1, "{:?}", r.deadline);
            assert_eq!(r.late.len(), 1, "{:?}", r.late);
            // Accepted since: again in a file, it has no deadline, and the late list holds
            // the record that will be sent.
            let a = super::super::testing::take(&mut j, super::super::testing::ALL);
            let ids: Vec<i64> = a.sent.iter().map(|s| s.id).collect();
            j.apply(
                a.batch_id.unwrap(),
                &ids,
                &[super::super::super::batch::Outcome::Accepted { code: "000".into() }],
                200,
                "t",
            )
            .unwrap();
            let text = format!("{good}i2,20260110T080000Z,20260110T090000Z,1,c\n");
            let r = import(&mut j, &text, false);
            assert_eq!((r.already_accepted, r.new), (1, 1));
            assert_eq!(r.deadline.values().sum::<u64>(), 1, "{:?}", r.deadline);
            assert_eq!(r.late.iter().map(|l| l.0).collect::<Vec<_>>(), [3]);
        }
    }

    fn total(r: &super::ImportReport) -> u64 {
        r.bad
            + r.unchecked
            + r.new
            + r.again
            + r.already_accepted
            + r.already_rejected
            + r.already_abandoned
            + r.replaced
    }

    /// 11 data lines: one the reader cannot split, nine that break a rule, one good.
    /// Every one is read, and each is counted once.
    #[test]
    fn every_data_line_is_read_and_counted_once() {
        for (_dir, mut j) in journals() {
            let mut text = format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,\n\n");
            for i in 2..=10 {
                text.push_str(&format!("i{i},bad,20260110T110000Z,1,\n"));
            }
            text.push_str("i11,a,b\n");
            let r = import(&mut j, &text, false);
            assert_eq!((r.read, r.bad, r.new, r.error_count), (11, 10, 1, 10));
            assert_eq!(total(&r), r.read);

            // Journaled, then again with a duplicate and a bad line: still one bucket each.
            let good = format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\ni2,20260110T100000Z,20260110T110000Z,1,b\n");
            import(&mut j, &good, true);
            let r = import(
                &mut j,
                &format!("{good}i3,20260110T100000Z,20260110T110000Z,1,a\ni4,x\n"),
                false,
            );
            assert_eq!((r.read, r.again, r.bad), (4, 2, 2), "{:?}", r.errors);
            assert_eq!(total(&r), r.read);

            // A bad header: one error, and the rows are read but not checked.
            let r = import(&mut j, "instance_id,colour\ni1,red\n\ni2,blue\n", false);
            assert_eq!((r.read, r.bad, r.unchecked, r.error_count), (2, 0, 2, 1));
            assert_eq!(total(&r), r.read);
        }
    }
}
