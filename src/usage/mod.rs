//! Usage records (话单): reading, the local rules, the journal and the upload loop.
//!
//! - [`record`]: the record, time and value rules, derived metering_sn, deadlines (pure);
//! - [`reader`]: streaming CSV/JSONL readers with line numbers (pure over `BufRead`);
//! - [`encoding`]: `--encoding`, GB18030 decoded to UTF-8 as it is read;
//! - [`batch`]: the signed body and what an answer means for each record (pure);
//! - [`journal`]: the SQLite journal (schema in docs/usage.md);
//! - [`upload`]: the send loop with bounded retries, backoff and jitter.

pub mod agent;
pub mod batch;
pub mod encoding;
pub mod journal;
pub mod reader;
pub mod record;
pub mod upload;
