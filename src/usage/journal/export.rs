//! Records written back out as a file `upload` reads.

use super::db::{vals, DbError};
use super::{Journal, State};
use crate::error::{CsmError, Result};
use crate::usage::record;
use std::io::Write;

/// Where the rows go: CSV quotes only the fields that need it, so `upload` reads them back.
enum Sink<'a> {
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
    Jsonl(&'a mut dyn Write),
}

fn write_error(e: impl std::fmt::Display) -> CsmError {
    CsmError::Storage(format!("export: {e}"))
}

impl Journal {
    /// Writes the records in `state` as CSV (or JSONL) that `upload` reads back; the
    /// `state`, `result_code` and `result_msg` columns (and for abandoned records who gave
    /// up on them, when and why) are for the reader and ignored on input.
    pub fn export(&self, state: State, jsonl: bool, out: &mut dyn Write) -> Result<u64> {
        // A journal of version 1 (read as it is) has no abandoned records nor their columns.
        let abandoned = state == State::Abandoned && self.version >= 2;
        let audit = if abandoned {
            ", coalesce(abandoned_at, ''), coalesce(abandoned_by, ''), coalesce(abandon_reason, '')"
        } else {
            ""
        };
        let sql = format!(
            "SELECT instance_id, begin_time, end_time, usage_value, metering_sn,
             coalesce(relate_pkg_instance, ''), record_time, state,
             coalesce(last_code, ''), coalesce(last_message, ''),
             CASE WHEN maybe_delivered = 1 THEN 'yes' ELSE 'no' END{audit}
             FROM records WHERE state = ?1 ORDER BY id"
        );
        let mut n = 0u64;
        // The SELECT above lists the input columns, then the informational ones, in this order.
        let audit_names: &[&str] = if abandoned {
            &record::ABANDON_FIELDS
        } else {
            &[]
        };
        let names: Vec<&str> = record::FIELDS
            .iter()
            .chain(record::INFO_FIELDS.iter())
            .chain(audit_names)
            .copied()
            .collect();
        let mut sink = if jsonl {
            Sink::Jsonl(out)
        } else {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(&names).map_err(write_error)?;
            Sink::Csv(Box::new(w))
        };
        // A write error stops the walk; it is reported as the export's, not the store's.
        let mut failed: Option<CsmError> = None;
        let walk = self.db().each(&sql, vals![state.as_str()], |r| {
            let vals: Vec<String> = (0..names.len())
                .map(|i| r.text(i))
                .collect::<std::result::Result<_, _>>()?;
            let written = match &mut sink {
                Sink::Jsonl(out) => {
                    let mut m = serde_json::Map::new();
                    for (k, v) in names.iter().zip(&vals) {
                        if !v.is_empty() {
                            m.insert(k.to_string(), serde_json::Value::String(v.clone()));
                        }
                    }
                    writeln!(out, "{}", serde_json::Value::Object(m)).map_err(write_error)
                }
                Sink::Csv(w) => w.write_record(&vals).map_err(write_error),
            };
            if let Err(e) = written {
                failed = Some(e);
                return Err(DbError("export stopped".into()));
            }
            n += 1;
            Ok(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        walk.map_err(|e| self.err(e))?;
        if let Sink::Csv(mut w) = sink {
            // The writer buffers: an error writing the last rows shows here, not on drop.
            w.flush().map_err(write_error)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{import, journals, ALL, HEAD};
    use super::super::{LocalRefusal, State};

    /// A reason with a comma and quotes is quoted so that the file reads back whole, and the
    /// fixed file replaces the rejected record.
    #[test]
    fn csv_quotes_what_needs_it_and_reads_back() {
        for (_dir, mut j) in journals() {
            import(
                &mut j,
                &format!("{HEAD}i1,20260110T100000Z,20260110T110000Z,1,a\n"),
                true,
            );
            // Refused here, unsent: the shortest way to a rejected record with a reason.
            let refuse = LocalRefusal {
                applies: &|_| true,
                code: "003",
                reason: "value \"1\", refused",
            };
            let (_, a) = j.take_batch(ALL, 0, 10, "t", &refuse).unwrap().unwrap();
            assert_eq!((a.batch_id, a.refused.len()), (None, 1));
            let mut out = Vec::new();
            assert_eq!(j.export(State::Rejected, false, &mut out).unwrap(), 1);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(
                text,
                "instance_id,begin_time,end_time,usage_value,metering_sn,relate_pkg_instance,\
             record_time,state,result_code,result_msg,maybe_delivered\n\
             i1,20260110T100000Z,20260110T110000Z,1,a,,20260110T120000Z,rejected,003,\
             \"value \"\"1\"\", refused\",no\n"
            );
            let r = import(&mut j, &text.replace(",1,a,", ",2,a,"), true);
            assert_eq!((r.replaced, r.error_count), (1, 0), "{:?}", r.errors);
        }
    }
}
