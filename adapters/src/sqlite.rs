//! SQLite (bundled: no server needed): a table per model type, created from
//! the models' schemas; a sync writes through the batch hook in one transaction.

use std::path::Path;

use diffsync::{Adapter, Batch, HookError, LocalStore};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use crate::error::{AdapterError, Result};
use crate::registry::{self, Registry};
use crate::sql::{self, Dialect, SqlValue, Table};

const DIALECT: Dialect = Dialect {
    placeholder: |i| format!("?{i}"),
    column_type: |k| match k {
        diffsync::ValueKind::Integer | diffsync::ValueKind::Bool => "INTEGER",
        diffsync::ValueKind::Float => "REAL",
        _ => "TEXT",
    },
    order_column: "rowid",
    same: "IS",
    order_column_def: None,
};

/// An adapter over an SQLite database.
///
/// ```
/// use diffsync::{Adapter, DiffModel};
/// use diffsync_adapters::{Registry, sqlite::SqliteAdapter};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
/// #[diffsync(name = "site")]
/// struct Site { #[diffsync(id)] name: String, region: String }
///
/// let registry = Registry::new().with::<Site>();
/// let mut a = SqliteAdapter::open_in_memory("a", registry.clone())?;
/// a.store.add(Site { name: "nyc".into(), region: "east".into() })?;
/// let mut db = SqliteAdapter::open_in_memory("db", registry)?;
/// db.sync_from(&a)?;
/// let n: i64 = db.connection().query_row("SELECT count(*) FROM site", [], |r| r.get(0))?;
/// assert_eq!(n, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SqliteAdapter {
    name: String,
    conn: Connection,
    registry: Registry,
    tables: Vec<Table>,
    origin: String,
    /// The models, as loaded from (and kept in step with) the database.
    pub store: LocalStore,
}

impl SqliteAdapter {
    /// Opens (or creates) a database file, creates missing tables and loads it.
    pub fn open(name: &str, path: impl AsRef<Path>, registry: Registry) -> Result<Self> {
        let origin = path.as_ref().display().to_string();
        let conn = Connection::open(path.as_ref()).map_err(|e| backend(&origin, e))?;
        Self::with_connection(name, conn, origin, registry)
    }

    /// A fresh in-memory database.
    pub fn open_in_memory(name: &str, registry: Registry) -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|e| backend(":memory:", e))?;
        Self::with_connection(name, conn, ":memory:".into(), registry)
    }

    fn with_connection(name: &str, conn: Connection, origin: String, registry: Registry) -> Result<Self> {
        let tables = sql::tables(&origin, &registry)?;
        for t in &tables {
            conn.execute_batch(&t.create(&DIALECT))
                .map_err(|e| backend(&t.origin(), e))?;
        }
        let mut store = LocalStore::new(name);
        registry.register_all(&mut store)?;
        let mut a = SqliteAdapter {
            name: name.to_string(),
            conn,
            registry,
            tables,
            origin,
            store,
        };
        a.load_tables()?;
        Ok(a)
    }

    /// The database connection (to query it, or to run your own statements).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Keeps a bidirectional [`Base`](diffsync::bidir::Base) in this
    /// database, under `pair` (one row of `_diffsync_base`, replaced in one
    /// statement: the old base or the new one, never half).
    pub fn save_base(&self, pair: &str, base: &diffsync::bidir::Base) -> Result<()> {
        let origin = format!("{}: _diffsync_base", self.origin);
        let body = base.to_bytes()?;
        self.conn
            .execute_batch("CREATE TABLE IF NOT EXISTS _diffsync_base (pair TEXT PRIMARY KEY, body BLOB NOT NULL)")
            .and_then(|()| {
                self.conn.execute(
                    "INSERT OR REPLACE INTO _diffsync_base (pair, body) VALUES (?1, ?2)",
                    rusqlite::params![pair, body],
                )
            })
            .map(|_| ())
            .map_err(|e| backend(&origin, e))
    }

    /// The base saved under `pair`, or an empty one (the first run).
    pub fn load_base(&self, pair: &str) -> Result<diffsync::bidir::Base> {
        let origin = format!("{}: _diffsync_base", self.origin);
        let body: Option<Vec<u8>> = self
            .conn
            .execute_batch("CREATE TABLE IF NOT EXISTS _diffsync_base (pair TEXT PRIMARY KEY, body BLOB NOT NULL)")
            .and_then(|()| {
                self.conn
                    .query_row("SELECT body FROM _diffsync_base WHERE pair = ?1", [pair], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| backend(&origin, e))?;
        Ok(match body {
            Some(b) => diffsync::bidir::Base::from_bytes(&b, &self.store, &origin)?,
            None => diffsync::bidir::Base::new(),
        })
    }

    /// Re-reads the database into a fresh store.
    pub fn reload(&mut self) -> Result<()> {
        let mut store = LocalStore::new(&self.name);
        self.registry.register_all(&mut store)?;
        self.store = store;
        self.load_tables()
    }

    fn load_tables(&mut self) -> Result<()> {
        for t in &self.tables {
            let origin = t.origin();
            let found: Vec<String> = {
                let mut stmt = self
                    .conn
                    .prepare(&format!("PRAGMA table_info({})", t.name))
                    .map_err(|e| backend(&origin, e))?;
                let rows = stmt
                    .query_map([], |r| r.get::<_, String>(1))
                    .map_err(|e| backend(&origin, e))?;
                rows.collect::<std::result::Result<_, _>>()
                    .map_err(|e| backend(&origin, e))?
            };
            t.check_columns(&found)?;
            let mut stmt = self
                .conn
                .prepare(&t.select(&DIALECT))
                .map_err(|e| backend(&origin, e))?;
            let width = t.column_names().len();
            let mut rows = stmt.query([]).map_err(|e| backend(&origin, e))?;
            while let Some(row) = rows.next().map_err(|e| backend(&origin, e))? {
                let mut values = Vec::with_capacity(width);
                for i in 0..width {
                    values.push(from_sqlite(row.get::<_, Sql>(i).map_err(|e| backend(&origin, e))?));
                }
                let record = t.record(values)?;
                registry::insert_flat(&self.registry, &mut self.store, &t.model_type, record, &origin)?;
            }
        }
        Ok(())
    }
}

fn backend(origin: &str, e: rusqlite::Error) -> AdapterError {
    AdapterError::backend(origin, e)
}

fn to_sqlite(v: &SqlValue) -> Sql {
    match v {
        SqlValue::Null => Sql::Null,
        SqlValue::Int(i) => Sql::Integer(*i),
        SqlValue::Real(f) => Sql::Real(*f),
        SqlValue::Text(s) => Sql::Text(s.clone()),
        SqlValue::Bool(b) => Sql::Integer(i64::from(*b)),
    }
}

fn from_sqlite(v: Sql) -> SqlValue {
    match v {
        Sql::Null => SqlValue::Null,
        Sql::Integer(i) => SqlValue::Int(i),
        Sql::Real(f) => SqlValue::Real(f),
        Sql::Text(s) => SqlValue::Text(s),
        Sql::Blob(b) => SqlValue::Text(String::from_utf8_lossy(&b).into_owned()),
    }
}

impl Adapter for SqliteAdapter {
    registry_adapter_basics!();

    /// All changes in one transaction. Without CONTINUE_ON_FAILURE the first
    /// failure rolls everything back (the failing change is named, the
    /// others reported rolled back); with it, each change has a savepoint and
    /// a failed one is rolled back alone. Changes count as applied only once
    /// the transaction commits.
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        let keep_going = batch.continue_on_failure();
        let origin = self.origin.clone();
        let mut tx = self.conn.transaction().map_err(|e| backend(&origin, e))?;
        for i in 0..batch.len() {
            if !batch.should_apply(i) {
                continue;
            }
            let change = &batch.changes()[i];
            let failed = |e: diffsync::BoxError| -> HookError {
                AdapterError::Write {
                    origin: origin.clone(),
                    model_type: change.model_type().to_string(),
                    key: change.key().to_string(),
                    message: e.to_string(),
                    source: e,
                }
                .into()
            };
            let result: Result<(), HookError> =
                match sql::statements(&DIALECT, &self.tables, &self.registry, &self.store, change) {
                    Err(e) => Err(e.into()),
                    Ok(stmts) if keep_going => {
                        let sp = tx.savepoint().map_err(|e| failed(e.into()))?;
                        let r = run(&sp, &stmts);
                        if r.is_ok() {
                            sp.commit().map_err(|e| failed(e.into()))?;
                        }
                        r.map_err(failed)
                    }
                    Ok(stmts) => run(&tx, &stmts).map_err(failed),
                };
            match result {
                Ok(()) => batch.stage(i),
                Err(e) => {
                    batch.set_outcome(i, Err(e));
                    if batch.is_aborted() {
                        // Dropping the transaction rolls it back.
                        return Err(format!("transaction on {origin} rolled back").into());
                    }
                }
            }
        }
        tx.commit().map_err(|e| backend(&origin, e))?;
        batch.commit_staged();
        Ok(())
    }
}

fn run(conn: &Connection, stmts: &[sql::Statement]) -> std::result::Result<(), diffsync::BoxError> {
    for s in stmts {
        let mut stmt = conn.prepare_cached(&s.sql)?;
        let touched = stmt.execute(params_from_iter(s.params.iter().map(to_sqlite)))?;
        s.check(touched as u64)?;
    }
    Ok(())
}
