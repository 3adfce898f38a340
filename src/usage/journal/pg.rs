//! The journal in PostgreSQL (`--journal postgres://…`): the same tables as the SQLite
//! journal, plus a lease on records so that several uploader processes (on several hosts)
//! share one journal. A sender claims a batch with `FOR UPDATE SKIP LOCKED` and sets
//! `lease_owner`/`lease_until`; a process that dies mid-batch leaves its lease to expire,
//! and the next claimer takes the records as "maybe delivered" and sends them again under
//! the same metering_sn (the marketplace keeps the first of a metering_sn). No TLS: reach a
//! remote server through a tunnel or on a private network.

use super::db::{Db, DbError, Pg};
use crate::protocol::hmac::to_hex;
use std::time::Duration;

/// Transaction-scoped advisory locks that serialise creating the schema when several
/// processes open one database at once: one per schema, so that they never collide.
pub const JOURNAL_SCHEMA_LOCK: i64 = 7_316_020_250_001;
pub const AGENT_SCHEMA_LOCK: i64 = 7_316_020_250_002;

/// How long a claimed batch stays with its sender before another process may take it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);

/// `--journal` names a PostgreSQL database rather than an SQLite file.
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The URL as it may be shown: the password (in the user part or a `password=` parameter)
/// replaced by `***`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = match rest.rfind('@') {
        // An `@` after a `/`, `?` or `#` leaves it unclear where the user part ends (a password
        // with those unencoded, or an `@` in a parameter): show nothing rather than guess.
        Some(at) if rest[..at].contains(['/', '?', '#']) => return format!("{scheme}://***"),
        Some(at) => {
            let (user, after) = (&rest[..at], &rest[at + 1..]);
            let host_end = after.find(['/', '?']).unwrap_or(after.len());
            let user = match user.split_once(':') {
                Some((name, _)) => format!("{name}:***"),
                None => user.to_string(),
            };
            (format!("{user}@{}", &after[..host_end]), &after[host_end..])
        }
        None => {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        }
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Connects; errors name the redacted URL only.
pub fn connect(url: &str) -> std::result::Result<Db, DbError> {
    let mut cfg: postgres::Config = url
        .parse()
        .map_err(|e: postgres::Error| DbError(format!("not a PostgreSQL URL ({e})")))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("csm usage journal");
    }
    let mut client = cfg
        .connect(postgres::NoTls)
        .map_err(|e| DbError(format!("cannot connect: {e}")))?;
    // Every commit waits for the disk unless the journal says otherwise (`set_sync`),
    // whatever the server's, database's or role's default is.
    client.batch_execute("SET synchronous_commit = on")?;
    Ok(Db::Postgres(Box::new(Pg::new(client))))
}

/// The schema of a PostgreSQL journal: the SQLite one (`records_table`, `SCHEMA`) in
/// PostgreSQL's types, and the lease columns.
pub fn schema(records: &str, common: &str) -> String {
    let records = records
        .replace(
            "id                  INTEGER PRIMARY KEY",
            "id BIGSERIAL PRIMARY KEY",
        )
        .replace("INTEGER", "BIGINT")
        // No foreign key on import_id: PostgreSQL checks one for each row inserted (a fifth
        // of an import's time), while every import writes its `imports` row first in the
        // same transaction and none is ever deleted. SQLite does not check it either
        // (`foreign_keys` is off).
        .replace(" REFERENCES imports(id)", "")
        // Byte order for the identifiers, times and states: the unique indexes compare them
        // with memcmp, not the database's collation (under ICU's en-US an import of 1M
        // records took 21 s, in byte order 11 s). Equality is the same under either; only
        // the server's sort order of these columns differs, and no query shows one.
        .replace(" TEXT NOT NULL", BYTE_ORDER_TEXT)
        .replace(
            "    abandon_reason      TEXT,",
            "    abandon_reason      TEXT,
    -- Which process holds the record (host:pid:random) and until when (the server's clock).
    lease_owner         TEXT,
    lease_until         TIMESTAMPTZ,",
        );
    let common = common
        .replace(
            "id          INTEGER PRIMARY KEY",
            "id BIGSERIAL PRIMARY KEY",
        )
        .replace("INTEGER", "BIGINT");
    format!(
        "{common};\n{records};
-- Journals made before this lose the foreign key on import_id (checked for each row an
-- import inserts, and never needed: every import writes its row first). Only they take
-- the exclusive lock it needs, first, before this transaction holds any lock on records;
-- and they wait for it at most 2 s (another process importing holds it off): the key then
-- goes at a later open.
DO $$
DECLARE
  fk name;
  was text := current_setting('lock_timeout');
BEGIN
  SELECT conname INTO fk FROM pg_constraint WHERE conrelid = 'records'::regclass
    AND contype = 'f' AND confrelid = 'imports'::regclass;
  IF fk IS NOT NULL THEN
    PERFORM set_config('lock_timeout', '2s', true);
    BEGIN
      EXECUTE format('ALTER TABLE records DROP CONSTRAINT %I', fk);
    EXCEPTION WHEN lock_not_available THEN NULL;
    END;
    PERFORM set_config('lock_timeout', was, true);
  END IF;
END $$;
-- No index on state (an index on it, even a partial one, makes every state change write
-- all the indexes again instead of updating the row in place): a send pass walks the
-- primary key from where it left off. Journals made before this drop theirs.
DROP INDEX IF EXISTS records_unfinished;
-- Room on each page for a new version of every record on it: a record is written twice as
-- it is sent (claimed, then its outcome), and each write then stays on its page (HOT),
-- without new entries in the three indexes. At 70 half the writes moved; at 40 almost none
-- do, and a send pass takes about 0.6 of the time (200,000 records).
ALTER TABLE records SET (fillfactor = 40);"
    )
}

/// A text column that compares bytes (`COLLATE "C"`), as the journal's key columns are: in
/// place of ` TEXT NOT NULL`.
pub const BYTE_ORDER_TEXT: &str = " TEXT COLLATE \"C\" NOT NULL";

/// A name for this process in `lease_owner`: which host and process holds a batch.
pub fn lease_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    let mut rnd = [0u8; 4];
    let _ = getrandom::getrandom(&mut rnd);
    format!("{host}:{}:{}", std::process::id(), to_hex(&rnd))
}

/// For tests: a new empty database on the server named by `CSM_TEST_POSTGRES`, as a URL.
/// None (and a line saying why on stderr) when that variable is not set, unless `CI` or
/// `CSM_REQUIRE_POSTGRES=1` say the run must have PostgreSQL: then it panics.
#[doc(hidden)]
pub fn test_database(test: &str) -> Option<String> {
    let Some(base) = std::env::var("CSM_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        let required = std::env::var("CSM_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
            || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !required,
            "{test}: CSM_TEST_POSTGRES is not set but CI/CSM_REQUIRE_POSTGRES=1 asks for \
             PostgreSQL (scripts/pg-test-cluster.sh starts one)"
        );
        eprintln!(
            "{test}: skipped on PostgreSQL: CSM_TEST_POSTGRES is not set \
             (scripts/pg-test-cluster.sh start DIR prints one)"
        );
        return None;
    };
    let mut rnd = [0u8; 6];
    getrandom::getrandom(&mut rnd).expect("random");
    let name = format!("csm_t_{}", to_hex(&rnd));
    let mut client = postgres::Client::connect(&base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("CSM_TEST_POSTGRES {}: {e}", redact(&base)));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("CREATE DATABASE");
    // The same server and user, the new database.
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (base.as_str(), String::new()),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let server = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    Some(format!("{server}/{name}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        assert_eq!(
            redact("postgres://csm:s3cret@db.example:5432/usage?sslmode=disable"),
            "postgres://csm:***@db.example:5432/usage?sslmode=disable"
        );
        assert_eq!(
            redact("postgresql://h/db?user=csm&password=s3cret"),
            "postgresql://h/db?user=csm&password=***"
        );
        assert_eq!(redact("postgres://csm@h:1/db"), "postgres://csm@h:1/db");
        // A password with '@' in it (unencoded): everything before the last '@' is the user part.
        assert!(!redact("postgres://u:p@ss@h/db").contains("ss"));
        // Unencoded `/`, `?` or `@` where they make the URL ambiguous: nothing of it shown.
        assert_eq!(redact("postgres://u:pa/ss@h/db"), "postgres://***");
        assert_eq!(redact("postgres://u:pa?ss@h/db"), "postgres://***");
        assert_eq!(
            redact("postgres://h/db?user=a@b&password=x"),
            "postgres://***"
        );
    }

    #[test]
    fn the_schema_has_postgres_types_and_leases() {
        let s = schema(
            &super::super::records_table("records"),
            super::super::SCHEMA,
        );
        assert!(!s.contains("INTEGER"), "{s}");
        assert!(s.contains("lease_until         TIMESTAMPTZ"), "{s}");
        assert_eq!(s.matches("BIGSERIAL PRIMARY KEY").count(), 3, "{s}");
        assert!(!s.contains("REFERENCES"), "{s}");
        assert!(
            s.contains("metering_sn         TEXT COLLATE \"C\" NOT NULL"),
            "{s}"
        );
    }

    /// The key columns compare bytes whatever the database's default collation.
    #[test]
    fn the_key_columns_compare_bytes() {
        let Some(url) = test_database("key_columns_collation") else {
            return;
        };
        let j = super::super::Journal::open(std::path::Path::new(&url)).unwrap();
        let stage = super::super::import::stage_table(&mut j.db.borrow_mut()).unwrap();
        assert!(
            stage.contains("metering_sn         TEXT COLLATE \"C\""),
            "{stage}"
        );
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
                 WHERE a.attrelid = 'records'::regclass AND c.collname = 'C' AND a.attname IN
                 ('metering_sn', 'instance_id', 'begin_time', 'end_time')",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 4);
    }

    /// A fresh journal as an older csm left it (`sql` run on it), and a client on it.
    fn older_journal(test: &str, sql: &str) -> Option<(String, postgres::Client)> {
        let url = test_database(test)?;
        drop(super::super::Journal::open(std::path::Path::new(&url)).unwrap());
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(sql).unwrap();
        Some((url, c))
    }

    /// A journal made before its key columns compared bytes keeps its collation, and
    /// imports into it stage their rows in that collation and resolve records already
    /// journaled.
    #[test]
    fn an_older_journal_with_the_default_collation_still_imports() {
        let Some((url, _)) = older_journal(
            "older_journal_collation",
            "ALTER TABLE records ALTER COLUMN metering_sn TYPE TEXT COLLATE \"default\"",
        ) else {
            return;
        };
        let path = std::path::Path::new(&url);
        let mut j = super::super::Journal::open(path).unwrap();
        // Staged in the records' collation, so that their metering_sn index serves the
        // comparison (a byte-order staging table made PostgreSQL scan the whole table).
        let stage = super::super::import::stage_table(&mut j.db.borrow_mut()).unwrap();
        assert!(!stage.contains("COLLATE"), "{stage}");
        let text = format!(
            "{}i-1,20260110T000000Z,20260110T005959Z,1,sn-1\n",
            super::super::testing::HEAD
        );
        let first = super::super::testing::import(&mut j, &text, true);
        assert_eq!((first.new, first.error_count), (1, 0), "{:?}", first.errors);
        // The same record again: resolved against the one journaled, not an error.
        let again = super::super::testing::import(&mut j, &text, true);
        assert_eq!(
            (again.again, again.error_count),
            (1, 0),
            "{:?}",
            again.errors
        );
    }

    /// A journal made when records had a foreign key on import_id loses it when opened
    /// (imports then skip a check for each row), and imports as before.
    #[test]
    fn an_older_journal_loses_the_import_foreign_key() {
        let Some((url, mut c)) = older_journal(
            "older_journal_foreign_key",
            "ALTER TABLE records ADD CONSTRAINT records_import_id_fkey
             FOREIGN KEY (import_id) REFERENCES imports(id)",
        ) else {
            return;
        };
        let path = std::path::Path::new(&url);
        let fk = "SELECT count(*) FROM pg_constraint WHERE conrelid = 'records'::regclass
                  AND conname = 'records_import_id_fkey'";
        assert_eq!(c.query_one(fk, &[]).unwrap().get::<_, i64>(0), 1);
        let mut j = super::super::Journal::open(path).unwrap();
        assert_eq!(c.query_one(fk, &[]).unwrap().get::<_, i64>(0), 0);
        let text = format!(
            "{}i-1,20260110T000000Z,20260110T005959Z,1,sn-1\n",
            super::super::testing::HEAD
        );
        let rep = super::super::testing::import(&mut j, &text, true);
        assert_eq!((rep.read, rep.new), (1, 1));
    }
}
