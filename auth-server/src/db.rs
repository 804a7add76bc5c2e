//! One SQL interface over the two storage backends: an embedded SQLite file (the default) and a
//! PostgreSQL server shared by several replicas. The storage code in [`crate::store`] and
//! [`crate::upstream_store`] is written once against [`Sql`]; statements use SQLite's numbered
//! placeholders (`?1`), rewritten to PostgreSQL's (`$1`) for that backend, and only SQL both
//! dialects accept. Every integer is an `i64` (`INTEGER` in SQLite, `BIGINT` in PostgreSQL),
//! booleans are stored as 0/1, so one row decoder serves both.
//!
//! The differences that matter for correctness are behind [`Sql::query_locking`]: SQLite runs
//! every writing transaction alone (`BEGIN IMMEDIATE`), PostgreSQL lets them run side by side,
//! so a read that decides a write takes a row lock there (`FOR UPDATE`).

use std::cell::RefCell;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use rusqlite::TransactionBehavior;

use crate::store::StoreError;

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A statement argument.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Int(i64::from(v))
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Blob(v)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Arg::Null, Arg::Text)
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().map_or(Arg::Null, Arg::Text)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Arg::Null, Arg::Int)
    }
}

/// The arguments of a statement, in placeholder order: `args![a, b]`.
#[macro_export]
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::db::Arg::from($value)),*][..]
    };
}

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// A result row, decoded the same way for both backends.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("result has no column {i}")))
    }

    fn mismatch(&self, i: usize, wanted: &str) -> StoreError {
        StoreError::Corrupt(format!("column {i} is not {wanted}: {:?}", self.0.get(i)))
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.cell(i)? {
            Cell::Int(v) => Ok(*v),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    pub fn bool(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.int(i)? != 0)
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.cell(i)? {
            Cell::Text(v) => Ok(v.clone()),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.cell(i)? {
            Cell::Blob(v) => Ok(v.clone()),
            _ => Err(self.mismatch(i, "bytes")),
        }
    }
}

/// What the storage code needs of a connection or a transaction.
pub trait Sql {
    fn backend(&self) -> Backend;
    /// Runs a statement; the number of rows it changed.
    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError>;
    /// All rows of a query.
    fn query(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError>;
    /// Runs several statements without arguments (schema changes).
    fn batch(&self, sql: &str) -> Result<(), StoreError>;

    /// The first row of a query, if any.
    fn query_opt(&self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Like [`Sql::query_opt`] for a read whose answer decides a write in the same
    /// transaction: the rows stay locked until it ends, so a concurrent transaction on another
    /// replica waits and then reads what this one wrote.
    fn query_locking(&self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>, StoreError> {
        match self.backend() {
            Backend::Sqlite => self.query_opt(sql, args),
            Backend::Postgres => self.query_opt(&format!("{sql} FOR UPDATE"), args),
        }
    }
}

/// A connection that can start a transaction.
pub trait Conn: Sql {
    /// Starts a writing transaction; dropping it uncommitted rolls it back.
    fn transaction(&mut self) -> Result<Box<dyn Tx + '_>, StoreError>;
}

/// An open transaction.
pub trait Tx: Sql {
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

// ---------------------------------------------------------------- SQLite

fn sqlite_value<'a>(arg: &Arg<'a>) -> rusqlite::types::ToSqlOutput<'a> {
    use rusqlite::types::{ToSqlOutput, Value, ValueRef};
    match arg {
        Arg::Null => ToSqlOutput::Owned(Value::Null),
        Arg::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
        Arg::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        Arg::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
    }
}

fn sqlite_params<'a>(args: &'a [Arg<'a>]) -> Vec<rusqlite::types::ToSqlOutput<'a>> {
    args.iter().map(sqlite_value).collect()
}

fn sqlite_cell(value: rusqlite::types::ValueRef<'_>) -> Result<Cell, StoreError> {
    use rusqlite::types::ValueRef;
    Ok(match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(v) => Cell::Int(v),
        ValueRef::Text(v) => Cell::Text(
            String::from_utf8(v.to_vec())
                .map_err(|e| StoreError::Corrupt(format!("text is not UTF-8: {e}")))?,
        ),
        ValueRef::Blob(v) => Cell::Blob(v.to_vec()),
        ValueRef::Real(v) => {
            return Err(StoreError::Corrupt(format!("unexpected real number {v}")));
        }
    })
}

impl Sql for rusqlite::Connection {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let params = sqlite_params(args);
        let changed = self.execute(sql, rusqlite::params_from_iter(params.iter()))?;
        Ok(changed as u64)
    }

    fn query(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        let params = sqlite_params(args);
        let mut stmt = self.prepare(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(columns);
            for i in 0..columns {
                cells.push(sqlite_cell(row.get_ref(i)?)?);
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.execute_batch(sql)?)
    }
}

struct SqliteTx<'c>(rusqlite::Transaction<'c>);

impl Sql for SqliteTx<'_> {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }
    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        Sql::execute(&*self.0, sql, args)
    }
    fn query(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        Sql::query(&*self.0, sql, args)
    }
    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Sql::batch(&*self.0, sql)
    }
}

impl Tx for SqliteTx<'_> {
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.0.commit()?)
    }
}

impl Conn for rusqlite::Connection {
    fn transaction(&mut self) -> Result<Box<dyn Tx + '_>, StoreError> {
        // IMMEDIATE takes the write lock at once, so a transaction's reads and writes are never
        // interleaved with another writer's (other processes on the same file included).
        let tx = self.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Ok(Box::new(SqliteTx(tx)))
    }
}

// ---------------------------------------------------------------- PostgreSQL

/// Rewrites SQLite's numbered placeholders (`?1`) as PostgreSQL's (`$1`). Statements are this
/// crate's own constants: a `?` never appears in a string literal of theirs.
pub fn postgres_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            Arg::Int(v) => v.to_sql(ty, out),
            Arg::Text(v) => v.to_sql(ty, out),
            Arg::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::INT8,
            Type::INT4,
            Type::INT2,
            Type::BOOL,
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
            Type::UNKNOWN,
            Type::BYTEA,
        ]
        .contains(ty)
    }

    to_sql_checked!();
}

fn postgres_cell(row: &postgres::Row, i: usize) -> Result<Cell, StoreError> {
    let ty = row
        .columns()
        .get(i)
        .map(|c| c.type_().clone())
        .ok_or_else(|| StoreError::Corrupt(format!("result has no column {i}")))?;
    let cell = match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Cell::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| Cell::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map(|v| Cell::Int(v.into())),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob),
        _ => row.try_get::<_, Option<String>>(i)?.map(Cell::Text),
    };
    Ok(cell.unwrap_or(Cell::Null))
}

fn postgres_rows(rows: Vec<postgres::Row>) -> Result<Vec<Row>, StoreError> {
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| postgres_cell(row, i))
                .collect::<Result<Vec<_>, _>>()
                .map(Row)
        })
        .collect()
}

fn postgres_args<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

/// The operations both a PostgreSQL client and its transaction offer.
pub trait PostgresClient {
    fn execute_pg(
        &mut self,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error>;
    fn query_pg(
        &mut self,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error>;
    fn batch_pg(&mut self, sql: &str) -> Result<(), postgres::Error>;
}

impl PostgresClient for postgres::Transaction<'_> {
    fn execute_pg(
        &mut self,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        self.execute(sql, args)
    }
    fn query_pg(
        &mut self,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        self.query(sql, args)
    }
    fn batch_pg(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.batch_execute(sql)
    }
}

/// A PostgreSQL client or transaction behind the shared-reference [`Sql`] interface (the
/// driver's methods take `&mut self`; the storage code never holds two statements at once).
pub struct Postgres<C>(RefCell<C>);

impl<C: PostgresClient> Postgres<C> {
    fn with<R>(
        &self,
        f: impl FnOnce(&mut C) -> Result<R, postgres::Error>,
    ) -> Result<R, StoreError> {
        let mut client = self
            .0
            .try_borrow_mut()
            .map_err(|_| StoreError::Worker("database connection used re-entrantly".into()))?;
        Ok(f(&mut client)?)
    }
}

impl<C: PostgresClient> Sql for Postgres<C> {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let sql = postgres_placeholders(sql);
        self.with(|c| c.execute_pg(&sql, &postgres_args(args)))
    }

    fn query(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        let sql = postgres_placeholders(sql);
        postgres_rows(self.with(|c| c.query_pg(&sql, &postgres_args(args)))?)
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.with(|c| c.batch_pg(sql))
    }
}

impl<'c> Postgres<&'c mut postgres::Client> {
    pub fn new(client: &'c mut postgres::Client) -> Self {
        Postgres(RefCell::new(client))
    }
}

impl PostgresClient for &mut postgres::Client {
    fn execute_pg(
        &mut self,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        (**self).execute(sql, args)
    }
    fn query_pg(
        &mut self,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        (**self).query(sql, args)
    }
    fn batch_pg(&mut self, sql: &str) -> Result<(), postgres::Error> {
        (**self).batch_execute(sql)
    }
}

impl Conn for Postgres<&mut postgres::Client> {
    fn transaction(&mut self) -> Result<Box<dyn Tx + '_>, StoreError> {
        let client: &mut postgres::Client = self.0.get_mut();
        let tx = client.transaction()?;
        Ok(Box::new(Postgres(RefCell::new(tx))))
    }
}

impl Tx for Postgres<postgres::Transaction<'_>> {
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.0.into_inner().commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_placeholders_become_postgres_placeholders() {
        assert_eq!(
            postgres_placeholders("UPDATE t SET a = ?1 WHERE b = ?12 AND c = ?1"),
            "UPDATE t SET a = $1 WHERE b = $12 AND c = $1"
        );
        assert_eq!(postgres_placeholders("SELECT '?' || x"), "SELECT '?' || x");
    }

    #[test]
    fn sqlite_rows_decode_to_typed_cells() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.batch("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, n TEXT)")
            .unwrap();
        let changed = Sql::execute(
            &conn,
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
            args![7i64, "text", &b"\x00\x01"[..], None::<&str>],
        )
        .unwrap();
        assert_eq!(changed, 1);
        let row = conn
            .query_opt("SELECT i, s, b, n FROM t WHERE i = ?1", args![7i64])
            .unwrap()
            .unwrap();
        assert_eq!(row.int(0).unwrap(), 7);
        assert_eq!(row.text(1).unwrap(), "text");
        assert_eq!(row.blob(2).unwrap(), vec![0, 1]);
        assert_eq!(row.opt_text(3).unwrap(), None);
        assert!(matches!(row.text(0), Err(StoreError::Corrupt(_))));
    }
}
