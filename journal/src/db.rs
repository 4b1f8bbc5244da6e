//! Where the journal keeps its tables: SQLite (an embedded file, the
//! default) or PostgreSQL (a server a team shares, feature `postgres`).
//! The journal's statements are written once, in the SQL both understand
//! (`?N` parameters, `INSERT .. ON CONFLICT`, `RETURNING`); each database
//! brings its schema and runs them.

use std::error::Error as StdError;

/// A database's error.
pub(crate) type DbError = Box<dyn StdError + Send + Sync>;

/// A value bound to a statement.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Arg<'a> {
        Arg::Text(s)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl<'a, T: Into<Arg<'a>>> From<Option<T>> for Arg<'a> {
    fn from(v: Option<T>) -> Arg<'a> {
        v.map_or(Arg::Null, Into::into)
    }
}

/// A value read back.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    /// A value of a type the journal never writes (a float): the row is
    /// unreadable, not the query.
    Other(&'static str),
}

/// A row read back, its cells by column.
pub(crate) struct Cells(pub(crate) Vec<Cell>);

impl Cells {
    pub(crate) fn int(&self, i: usize) -> Result<i64, String> {
        self.opt_int(i)?.ok_or_else(|| format!("column {i} is empty"))
    }
    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>, String> {
        match self.0.get(i) {
            Some(Cell::Int(v)) => Ok(Some(*v)),
            Some(Cell::Null) => Ok(None),
            other => Err(format!("column {i} holds {other:?}, not a number")),
        }
    }
    pub(crate) fn text(&mut self, i: usize) -> Result<String, String> {
        self.opt_text(i)?.ok_or_else(|| format!("column {i} is empty"))
    }
    /// The bytes in column `i`, taken out of the row.
    pub(crate) fn blob(&mut self, i: usize) -> Result<Vec<u8>, String> {
        match self.0.get_mut(i) {
            Some(Cell::Blob(v)) => Ok(std::mem::take(v)),
            other => Err(format!("column {i} holds {other:?}, not bytes")),
        }
    }
    /// The text in column `i`, taken out of the row.
    pub(crate) fn opt_text(&mut self, i: usize) -> Result<Option<String>, String> {
        match self.0.get_mut(i) {
            Some(Cell::Text(v)) => Ok(Some(std::mem::take(v))),
            Some(Cell::Null) => Ok(None),
            other => Err(format!("column {i} holds {other:?}, not text")),
        }
    }
}

/// A database the journal writes to. Statements use `?N` parameters.
pub(crate) trait Db: Send {
    /// Statements without parameters (schema, `BEGIN`, `COMMIT`).
    fn batch(&self, sql: &str) -> Result<(), DbError>;
    /// A statement; the rows it changed.
    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, DbError>;
    /// A query's rows.
    fn query(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Cells>, DbError>;
    /// The condition that the bytes of `column` hold those of `param`
    /// (the dialects' functions differ).
    fn contains(&self, column: &str, param: &str) -> String;
}

/// The tables, in SQLite: an element's id is the table's rowid.
pub(crate) const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    mode TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    options TEXT NOT NULL DEFAULT '',
    who TEXT,
    result TEXT NOT NULL,
    error TEXT,
    totals TEXT,
    phases TEXT NOT NULL DEFAULT '[]',
    peak_memory INTEGER,
    rollback_of INTEGER,
    usual TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_ms);
CREATE TABLE IF NOT EXISTS elements (
    id INTEGER PRIMARY KEY,
    model_type TEXT NOT NULL,
    key TEXT NOT NULL,
    parent_type TEXT,
    parent_key TEXT,
    identifiers TEXT NOT NULL,
    action TEXT NOT NULL,
    before TEXT,
    after TEXT,
    side TEXT
);
CREATE INDEX IF NOT EXISTS elements_key ON elements (model_type, key);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    creates INTEGER NOT NULL,
    updates INTEGER NOT NULL,
    deletes INTEGER NOT NULL,
    size INTEGER NOT NULL,
    side TEXT,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS chunk_keys (
    id INTEGER PRIMARY KEY,
    hashes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS exceptions (
    id INTEGER PRIMARY KEY,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY,
    model_type TEXT NOT NULL,
    key TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS left_alone (
    id INTEGER PRIMARY KEY,
    model_type TEXT NOT NULL,
    key TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// The layout the tables have, in `journal_meta` (`schema`): 1 is a
/// journal from before the version was kept (no `options` column, no
/// `left_alone` table); 2 kept a row per change in `elements` (read still:
/// a run recorded then keeps its rows); 3, this one, keeps a run's changes
/// in `chunks`, with each chunk's key hashes in `chunk_keys`.
pub(crate) const SCHEMA_VERSION: i64 = 3;

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Null => ValueRef::Null,
            Arg::Int(v) => ValueRef::Integer(*v),
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
            Arg::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl Db for rusqlite::Connection {
    fn batch(&self, sql: &str) -> Result<(), DbError> {
        Ok(self.execute_batch(sql)?)
    }

    fn contains(&self, column: &str, param: &str) -> String {
        format!("instr({column}, {param}) > 0")
    }

    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, DbError> {
        let mut statement = self.prepare_cached(sql)?;
        Ok(statement.execute(rusqlite::params_from_iter(args))? as u64)
    }

    fn query(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Cells>, DbError> {
        use rusqlite::types::ValueRef;
        let mut statement = self.prepare_cached(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(columns);
            for i in 0..columns {
                cells.push(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Real(_) => Cell::Other("a float"),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                });
            }
            out.push(Cells(cells));
        }
        Ok(out)
    }
}

#[cfg(feature = "postgres")]
pub(crate) use self::postgres::{Postgres, schema as postgres_schema};

#[cfg(feature = "postgres")]
mod postgres {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
    use postgres::{Client, Statement};

    use super::{Arg, Cell, Cells, Db, DbError};

    /// The tables, in PostgreSQL: SQLite's, with 64-bit numbers, a
    /// sequence for the runs' ids, and bytes as `BYTEA`.
    pub(crate) fn schema() -> String {
        super::SQLITE_SCHEMA
            .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
            .replace("INTEGER", "BIGINT")
            .replace("BLOB", "BYTEA")
    }

    /// A PostgreSQL connection and the statements it prepared.
    pub(crate) struct Postgres {
        client: RefCell<Client>,
        prepared: RefCell<HashMap<String, Statement>>,
    }

    impl Postgres {
        pub(crate) fn new(client: Client) -> Postgres {
            Postgres {
                client: RefCell::new(client),
                prepared: RefCell::new(HashMap::new()),
            }
        }

        /// The statement for `sql` (`?N` written `$N`), prepared once.
        fn prepare(&self, sql: &str) -> Result<Statement, DbError> {
            if let Some(s) = self.prepared.borrow().get(sql) {
                return Ok(s.clone());
            }
            let statement = self.client.borrow_mut().prepare(&sql.replace('?', "$"))?;
            self.prepared.borrow_mut().insert(sql.to_string(), statement.clone());
            Ok(statement)
        }
    }

    impl ToSql for Arg<'_> {
        fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, DbError> {
            match self {
                Arg::Null => Ok(IsNull::Yes),
                Arg::Int(v) => v.to_sql(ty, out),
                Arg::Text(s) => s.to_sql(ty, out),
                Arg::Blob(b) => b.to_sql(ty, out),
            }
        }
        fn accepts(ty: &Type) -> bool {
            <i64 as ToSql>::accepts(ty) || <&str as ToSql>::accepts(ty) || <&[u8] as ToSql>::accepts(ty)
        }
        to_sql_checked!();
    }

    fn params<'a>(args: &'a [Arg<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
        args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
    }

    impl Db for Postgres {
        fn batch(&self, sql: &str) -> Result<(), DbError> {
            Ok(self.client.borrow_mut().batch_execute(sql)?)
        }

        fn contains(&self, column: &str, param: &str) -> String {
            format!("position({param}::bytea in {column}) > 0")
        }

        fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, DbError> {
            let statement = self.prepare(sql)?;
            Ok(self.client.borrow_mut().execute(&statement, &params(args))?)
        }

        fn query(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Cells>, DbError> {
            let statement = self.prepare(sql)?;
            let rows = self.client.borrow_mut().query(&statement, &params(args))?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let mut cells = Vec::with_capacity(row.len());
                for (i, column) in row.columns().iter().enumerate() {
                    let cell = match *column.type_() {
                        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
                        Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| Cell::Int(v.into())),
                        Type::TEXT | Type::VARCHAR => row.try_get::<_, Option<String>>(i)?.map(Cell::Text),
                        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob),
                        _ => Some(Cell::Other("a value of another type")),
                    };
                    cells.push(cell.unwrap_or(Cell::Null));
                }
                out.push(Cells(cells));
            }
            Ok(out)
        }
    }
}
