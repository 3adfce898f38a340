//! The two stores a journal lives in, behind one small SQL interface: SQLite (one file, the
//! embedded default) and PostgreSQL (`postgres://…`, shared by several hosts). The journal's
//! logic is written once against [`Db`]: SQL with `?N` placeholders (rewritten to `$N` for
//! PostgreSQL), values as [`Val`], and the few dialect differences as fragments from here.

use postgres::fallible_iterator::FallibleIterator;
use std::collections::HashMap;

/// A value passed to or read from either store. Booleans are stored as 0/1 integers in both
/// (one schema, one set of queries).
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::Int(v as i64)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// `vals![a, b, …]`: the parameters of one statement.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$($crate::usage::journal::db::Val::from($v)),*][..] };
}
pub(crate) use vals;

/// A store error: its text never holds the connection's password (neither driver puts the
/// connection string in its errors).
#[derive(Debug)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        DbError(e.to_string())
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        // The server's message (with its detail) says more than the driver's summary.
        match e.as_db_error() {
            Some(d) => DbError(format!("{}: {}", d.severity(), d.message())),
            None => DbError(e.to_string()),
        }
    }
}

pub type DbResult<T> = std::result::Result<T, DbError>;

/// One row read back.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Val>);

impl Row {
    fn at(&self, i: usize) -> DbResult<&Val> {
        self.0
            .get(i)
            .ok_or_else(|| DbError(format!("no column {i}")))
    }
    pub fn int(&self, i: usize) -> DbResult<i64> {
        match self.at(i)? {
            Val::Int(v) => Ok(*v),
            v => Err(DbError(format!("column {i}: {v:?}, not an integer"))),
        }
    }
    pub fn bool(&self, i: usize) -> DbResult<bool> {
        self.int(i).map(|v| v != 0)
    }
    pub fn text(&self, i: usize) -> DbResult<String> {
        match self.at(i)? {
            Val::Text(v) => Ok(v.clone()),
            Val::Int(v) => Ok(v.to_string()),
            Val::Null => Err(DbError(format!("column {i}: NULL, not text"))),
        }
    }
    pub fn opt_text(&self, i: usize) -> DbResult<Option<String>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
    pub fn state(&self, i: usize) -> DbResult<super::State> {
        let s = self.text(i)?;
        super::State::parse(&s).ok_or_else(|| DbError(format!("record state {s:?}")))
    }
}

pub struct Pg {
    pub client: postgres::Client,
    /// Prepared statements by their `?N` text (the journal repeats a few statements a lot).
    stmts: HashMap<String, postgres::Statement>,
}

impl Pg {
    pub fn new(client: postgres::Client) -> Pg {
        Pg {
            client,
            stmts: HashMap::new(),
        }
    }

    fn stmt(&mut self, sql: &str) -> DbResult<postgres::Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&pg_placeholders(sql))?;
        // Bounded: statements built per batch size would otherwise pile up.
        if self.stmts.len() > 256 {
            self.stmts.clear();
        }
        self.stmts.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Pg>),
}

/// `?1` → `$1` (the journal's SQL has no `?` inside string literals).
fn pg_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut it = sql.chars().peekable();
    while let Some(c) = it.next() {
        if c == '?' && it.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

impl postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        use postgres::types::{IsNull, Type};
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Val::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_row(r: &postgres::Row) -> DbResult<Row> {
    use postgres::types::Type;
    let mut out = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let v = match *c.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Val::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|v| Val::Int(v.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|v| Val::Int(v.into())),
            Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(|v| Val::Int(v.into())),
            _ => r.try_get::<_, Option<String>>(i)?.map(Val::Text),
        };
        out.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(out))
}

fn sqlite_row(r: &rusqlite::Row, n: usize) -> rusqlite::Result<Row> {
    use rusqlite::types::ValueRef;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(match r.get_ref(i)? {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(v) => Val::Int(v),
            ValueRef::Real(v) => Val::Text(v.to_string()),
            ValueRef::Text(t) | ValueRef::Blob(t) => {
                Val::Text(String::from_utf8_lossy(t).into_owned())
            }
        });
    }
    Ok(Row(out))
}

/// One value in COPY's text format: `\N` for NULL, and the four characters the format
/// gives a meaning to escaped.
fn copy_text(v: &Val, out: &mut Vec<u8>) {
    match v {
        Val::Null => out.extend_from_slice(b"\\N"),
        Val::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Val::Text(t) => {
            for b in t.bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    _ => out.push(b),
                }
            }
        }
    }
}

fn pg_params(params: &[Val]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

impl Db {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Runs statements without parameters (schema, transaction control).
    pub fn batch(&mut self, sql: &str) -> DbResult<()> {
        match self {
            Db::Sqlite(c) => c.execute_batch(sql)?,
            Db::Postgres(p) => p.client.batch_execute(sql)?,
        }
        Ok(())
    }

    /// Runs one statement; the number of rows it changed.
    pub fn exec(&mut self, sql: &str, params: &[Val]) -> DbResult<u64> {
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                Ok(st.execute(rusqlite::params_from_iter(params.iter()))? as u64)
            }
            Db::Postgres(p) => {
                let st = p.stmt(sql)?;
                Ok(p.client.execute(&st, &pg_params(params))?)
            }
        }
    }

    /// Runs one statement inside the caller's transaction; `None`, with nothing changed, when
    /// it would break a unique constraint. PostgreSQL runs it under a savepoint: a failed
    /// statement would otherwise end the whole transaction.
    pub fn exec_unique(&mut self, sql: &str, params: &[Val]) -> DbResult<Option<u64>> {
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                match st.execute(rusqlite::params_from_iter(params.iter())) {
                    Ok(n) => Ok(Some(n as u64)),
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if matches!(
                            e.extended_code,
                            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                                | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                        ) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Db::Postgres(p) => {
                let st = p.stmt(sql)?;
                p.client.batch_execute("SAVEPOINT unique_check")?;
                match p.client.execute(&st, &pg_params(params)) {
                    Ok(n) => {
                        p.client.batch_execute("RELEASE SAVEPOINT unique_check")?;
                        Ok(Some(n))
                    }
                    Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                        p.client.batch_execute(
                            "ROLLBACK TO SAVEPOINT unique_check; RELEASE SAVEPOINT unique_check",
                        )?;
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Inserts `values` (row after row, `columns.len()` values each) into `table`: on
    /// SQLite as one multi-row INSERT, on PostgreSQL as one `COPY … FROM STDIN` stream (no
    /// statement to parse and bind: a third of the time of the INSERT for 1,000 rows).
    pub fn insert_rows(&mut self, table: &str, columns: &[&str], values: &[Val]) -> DbResult<u64> {
        let width = columns.len();
        if width == 0 || values.is_empty() {
            return Ok(0);
        }
        debug_assert_eq!(values.len() % width, 0, "{table}: whole rows only");
        let rows = values.len() / width;
        match self {
            Db::Sqlite(c) => {
                let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
                for r in 0..rows {
                    sql.push_str(if r == 0 { "(" } else { ",(" });
                    for c in 0..width {
                        if c > 0 {
                            sql.push(',');
                        }
                        sql.push_str(&format!("?{}", r * width + c + 1));
                    }
                    sql.push(')');
                }
                let mut st = c.prepare_cached(&sql)?;
                Ok(st.execute(rusqlite::params_from_iter(values.iter()))? as u64)
            }
            Db::Postgres(p) => {
                use std::io::Write;
                let mut text = Vec::with_capacity(values.len() * 16);
                for row in values.chunks(width) {
                    for (i, v) in row.iter().enumerate() {
                        if i > 0 {
                            text.push(b'\t');
                        }
                        copy_text(v, &mut text);
                    }
                    text.push(b'\n');
                }
                let mut w = p
                    .client
                    .copy_in(&format!("COPY {table} ({}) FROM STDIN", columns.join(", ")))?;
                w.write_all(&text)
                    .map_err(|e| DbError(format!("COPY {table}: {e}")))?;
                Ok(w.finish()?)
            }
        }
    }

    pub fn query(&mut self, sql: &str, params: &[Val]) -> DbResult<Vec<Row>> {
        let mut out = Vec::new();
        self.each(sql, params, |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    pub fn query_opt(&mut self, sql: &str, params: &[Val]) -> DbResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    pub fn query_one(&mut self, sql: &str, params: &[Val]) -> DbResult<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| DbError("no row".into()))
    }

    /// Streams the rows to `f` (memory stays flat on large results).
    pub fn each(
        &mut self,
        sql: &str,
        params: &[Val],
        mut f: impl FnMut(Row) -> DbResult<()>,
    ) -> DbResult<()> {
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
                while let Some(r) = rows.next()? {
                    f(sqlite_row(r, n)?)?;
                }
            }
            Db::Postgres(p) => {
                let st = p.stmt(sql)?;
                let mut rows = p.client.query_raw(&st, pg_params(params))?;
                while let Some(r) = rows.next()? {
                    f(pg_row(&r)?)?;
                }
            }
        }
        Ok(())
    }

    pub fn begin(&mut self) -> DbResult<()> {
        self.batch("BEGIN")
    }

    pub fn commit(&mut self) -> DbResult<()> {
        self.batch("COMMIT")
    }

    /// Ends a transaction that failed or is not to be kept; an error here changes nothing
    /// (the transaction is gone either way).
    pub fn rollback(&mut self) {
        let _ = self.batch("ROLLBACK");
    }

    /// Runs `f` in one transaction: committed when it returns `Ok((_, true))`, rolled back
    /// otherwise. `wrap` turns the store's own errors (begin, commit) into `f`'s.
    pub fn in_tx<T, E>(
        &mut self,
        wrap: &dyn Fn(DbError) -> E,
        f: impl FnOnce(&mut Db) -> std::result::Result<(T, bool), E>,
    ) -> std::result::Result<T, E> {
        self.begin().map_err(wrap)?;
        match f(self) {
            Ok((v, true)) => match self.commit() {
                Ok(()) => Ok(v),
                Err(e) => {
                    self.rollback();
                    Err(wrap(e))
                }
            },
            Ok((v, false)) => {
                self.rollback();
                Ok(v)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// PostgreSQL: `, lease_owner = NULL, lease_until = NULL` for an UPDATE of records that
    /// are decided (the lease columns exist only there).
    pub fn lease_release(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => ", lease_owner = NULL, lease_until = NULL",
        }
    }

    /// `col` is one of the ids, passed as one JSON array parameter `?n`: one statement per
    /// batch instead of one per record.
    ///
    /// PostgreSQL: `= ANY(ARRAY(…))`, the ids probed in the index in one scan; `IN (SELECT
    /// …)` hashed them first and looked each up apart (an UPDATE of 1,000 records by id
    /// took 5.9 ms that way, 3.8 ms this way). Texts keep `IN` ([`Db::texts_in`]): compared
    /// with `= ANY`, a column's collation and the array's could conflict.
    pub fn ids_in(&self, col: &str, n: usize) -> String {
        match self {
            Db::Sqlite(_) => self.json_in(col, n),
            Db::Postgres(_) => format!(
                "{col} = ANY(ARRAY(SELECT json_array_elements_text(?{n}::text::json)::bigint))"
            ),
        }
    }

    /// `col IN (the texts)`, as [`Db::ids_in`] for a JSON array of strings.
    pub fn texts_in(&self, col: &str, n: usize) -> String {
        self.json_in(col, n)
    }

    fn json_in(&self, col: &str, n: usize) -> String {
        match self {
            Db::Sqlite(_) => format!("{col} IN (SELECT value FROM json_each(?{n}))"),
            Db::Postgres(_) => {
                format!("{col} IN (SELECT json_array_elements_text(?{n}::text::json))")
            }
        }
    }
}

/// Strings as a JSON array, for [`Db::texts_in`].
pub fn text_list<S: AsRef<str>>(texts: &[S]) -> String {
    serde_json::Value::from(texts.iter().map(|t| t.as_ref()).collect::<Vec<_>>()).to_string()
}

/// Record ids as a JSON array, for [`Db::ids_in`].
pub fn id_list(ids: &[i64]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_json_arrays_with_texts_escaped() {
        assert_eq!(id_list(&[3, 1]), "[3,1]");
        assert_eq!(text_list(&["a", "b\"c", "中"]), r#"["a","b\"c","中"]"#);
        assert_eq!(text_list::<&str>(&[]), "[]");
    }

    /// An SQLite database in memory and, when the run has a PostgreSQL server, a fresh
    /// database on it.
    fn stores(test: &str) -> Vec<Db> {
        let mut dbs = vec![Db::Sqlite(rusqlite::Connection::open_in_memory().unwrap())];
        if let Some(url) = super::super::pg::test_database(test) {
            let client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            dbs.push(Db::Postgres(Box::new(Pg::new(client))));
        }
        dbs
    }

    /// A statement that would break a unique constraint changes nothing, and the
    /// transaction it ran in goes on; on each store.
    #[test]
    fn a_unique_conflict_changes_nothing_and_the_transaction_goes_on() {
        let dbs = stores("unique_conflict");
        for mut db in dbs {
            let pg = db.is_postgres();
            db.batch("CREATE TABLE t (k TEXT UNIQUE, v BIGINT)")
                .unwrap();
            db.begin().unwrap();
            db.exec("INSERT INTO t VALUES ('a', 1)", &[]).unwrap();
            let two = "INSERT INTO t SELECT column1, column2 FROM (VALUES ('b', 2), (?1, 3)) AS s";
            assert_eq!(db.exec_unique(two, vals!["a"]).unwrap(), None, "pg {pg}");
            assert_eq!(db.exec_unique(two, vals!["c"]).unwrap(), Some(2), "pg {pg}");
            db.exec("INSERT INTO t VALUES ('d', 4)", &[]).unwrap();
            db.commit().unwrap();
            let keys: Vec<String> = db
                .query("SELECT k FROM t ORDER BY k", &[])
                .unwrap()
                .iter()
                .map(|r| r.text(0).unwrap())
                .collect();
            assert_eq!(keys, ["a", "b", "c", "d"], "pg {pg}");
        }
    }

    /// Rows go in as they were, on each store: text with the characters COPY's text format
    /// gives a meaning to, NULL, the text "\\N", integers.
    #[test]
    fn inserted_rows_read_back_as_they_were() {
        let dbs = stores("insert_rows");
        let values = vals![
            1,
            "tab\there",
            Val::Null,
            2,
            "back\\slash \\N",
            "line\nbreak\r\n",
            3,
            "\\N",
            "中文,\"quoted\"",
        ];
        for mut db in dbs {
            let pg = db.is_postgres();
            db.batch("CREATE TABLE t (n BIGINT, a TEXT, b TEXT)")
                .unwrap();
            db.begin().unwrap();
            assert_eq!(db.insert_rows("t", &["n", "a", "b"], values).unwrap(), 3);
            db.commit().unwrap();
            let back: Vec<Val> = db
                .query("SELECT n, a, b FROM t ORDER BY n", &[])
                .unwrap()
                .into_iter()
                .flat_map(|r| r.0)
                .collect();
            assert_eq!(back, values, "pg {pg}");
        }
    }

    #[test]
    fn placeholders_are_rewritten_for_postgres() {
        assert_eq!(
            pg_placeholders("SELECT a FROM t WHERE b = ?1 AND c IN (?12, ?3)"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($12, $3)"
        );
    }
}
