//! SQLite (bundled: no server needed): a table per model type, created from
//! the models' schemas; a sync writes through the batch hook in one transaction.

use std::path::Path;

use diffsync::{Adapter, Batch, HookError, LocalStore, Sink};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use crate::error::{AdapterError, Result};
use crate::registry::Registry;
use crate::sql::{self, Dialect, SqlValue, Table};

pub(crate) const DIALECT: Dialect = Dialect {
    placeholder: |i| format!("?{i}"),
    column_type: |k| match k {
        diffsync::ValueKind::Integer | diffsync::ValueKind::Bool => "INTEGER",
        diffsync::ValueKind::Float => "REAL",
        _ => "TEXT",
    },
    order_column: "rowid",
    same: "IS",
    order_column_def: None,
    bytewise: "",
    row_hash: |columns| {
        let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
        format!("diffsync_row_hash({})", names.join(", "))
    },
    halves: |h| [format!("(({h} >> 32) & 4294967295)"), format!("({h} & 4294967295)")],
    sum: |x| format!("sum({x})"),
    fence: " LIMIT -1",
};

/// An adapter over an SQLite database.
///
/// ```
/// use diffsync::{AdapterExt, DiffModel};
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
    /// The database file (`None` in memory).
    path: Option<std::path::PathBuf>,
    /// Whether `enable_change_feed` ran: writes then tag their origin.
    feed: bool,
    /// The tag of the writes made now (see [`Sink::set_origin`]).
    write_origin: Option<String>,
    /// What the last load read past.
    warnings: Vec<AdapterError>,
    /// The models, as loaded from (and kept in step with) the database.
    pub store: LocalStore,
}

impl SqliteAdapter {
    /// Opens (or creates) a database file, creates missing tables and loads it.
    pub fn open(name: &str, path: impl AsRef<Path>, registry: Registry) -> Result<Self> {
        let origin = path.as_ref().display().to_string();
        let conn = Connection::open(path.as_ref()).map_err(|e| backend(&origin, e))?;
        let mut a = Self::with_connection(name, conn, origin, registry)?;
        a.path = Some(path.as_ref().to_path_buf());
        Ok(a)
    }

    /// Opens a database file without loading it: the store is `image`, a
    /// part of the database read elsewhere (a [range diff](crate::ranges)'s
    /// target image, which holds the rows that differ and their parents),
    /// so a sync of that diff writes the rows it changes, checked against
    /// what the image holds, without reading the rest of the database.
    pub fn open_image(name: &str, path: impl AsRef<Path>, registry: Registry, image: LocalStore) -> Result<Self> {
        let origin = path.as_ref().display().to_string();
        let conn = Connection::open(path.as_ref()).map_err(|e| backend(&origin, e))?;
        let mut a = Self::unloaded(name, conn, origin, registry)?;
        a.path = Some(path.as_ref().to_path_buf());
        a.store = image;
        Ok(a)
    }

    /// A fresh in-memory database.
    pub fn open_in_memory(name: &str, registry: Registry) -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|e| backend(":memory:", e))?;
        Self::with_connection(name, conn, ":memory:".into(), registry)
    }

    fn with_connection(name: &str, conn: Connection, origin: String, registry: Registry) -> Result<Self> {
        let mut a = Self::unloaded(name, conn, origin, registry)?;
        a.load_tables()?;
        Ok(a)
    }

    fn unloaded(name: &str, conn: Connection, origin: String, registry: Registry) -> Result<Self> {
        let tables = sql::tables(&origin, &registry)?;
        for t in &tables {
            conn.execute_batch(&t.create(&DIALECT))
                .map_err(|e| backend(&t.origin(), e))?;
        }
        let mut store = LocalStore::new(name);
        registry.register_all(&mut store)?;
        let a = SqliteAdapter {
            name: name.to_string(),
            conn,
            registry,
            tables,
            origin,
            path: None,
            feed: false,
            write_origin: None,
            warnings: Vec::new(),
            store,
        };
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
        sql::save_base(&mut &self.conn, &self.origin, pair, base)
    }

    /// The base saved under `pair`, or an empty one (the first run).
    pub fn load_base(&self, pair: &str) -> Result<diffsync::bidir::Base> {
        sql::load_base(&mut &self.conn, &self.origin, pair, &self.store)
    }

    /// Records every change to the model tables, by any connection or
    /// process, in a change table kept by triggers (`_diffsync_changes`),
    /// which [`change_feed`](Self::change_feed) reads. Writes made through
    /// this adapter carry the origin set with [`Sink::set_origin`].
    pub fn enable_change_feed(&mut self) -> Result<()> {
        let origin = format!("{}: _diffsync_changes", self.origin);
        let existed: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_diffsync_changes'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| backend(&origin, e))?;
        let ddl = FEED_DDL.statements(&self.tables, existed);
        self.conn.execute_batch(&ddl).map_err(|e| backend(&origin, e))?;
        let has_generation: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('_diffsync_cursor') WHERE name = 'generation'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| backend(&origin, e))?;
        if !has_generation {
            self.conn
                .execute_batch("ALTER TABLE _diffsync_cursor ADD COLUMN generation TEXT")
                .map_err(|e| backend(&origin, e))?;
        }
        self.feed = true;
        Ok(())
    }

    /// A durable feed of this database's changes for `consumer`, on a
    /// connection of its own: it resumes after the last event `consumer`
    /// committed, in this process or an earlier one.
    pub fn change_feed(&self, consumer: &str) -> Result<SqliteFeed> {
        let fail = |message: &str| AdapterError::backend(&self.origin, message.to_string());
        if !self.feed {
            return Err(fail("the change feed is not enabled: call enable_change_feed first"));
        }
        let path = self
            .path
            .as_ref()
            .ok_or_else(|| fail("an in-memory database has no feed for other connections"))?;
        let conn = Connection::open(path).map_err(|e| backend(&self.origin, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| backend(&self.origin, e))?;
        let cursor: Option<(i64, Option<String>)> = conn
            .query_row(
                "SELECT seq, generation FROM _diffsync_cursor WHERE consumer = ?1",
                [consumer],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| backend(&self.origin, e))?;
        let origin = format!("{}: _diffsync_changes", self.origin);
        let fail = |e| backend(&origin, e);
        let (generation, _) = log_state(&conn).map_err(fail)?;
        let pruned = pruned_upto(&conn).map_err(fail)?;
        let anchor = row_at(&conn, cursor.as_ref().map_or(0, |c| c.0)).map_err(fail)?;
        let cursor = sql::LogCursor::open(cursor, generation, anchor, pruned);
        Ok(SqliteFeed {
            conn,
            consumer: consumer.to_string(),
            cursor,
            origin,
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
        self.warnings = sql::load_tables(&mut &self.conn, &self.tables, &self.registry, &mut self.store)?;
        Ok(())
    }

    /// What the last load found wrong but could read past: rows naming a
    /// parent that does not exist ([`AdapterError::Orphan`], loaded
    /// without their parent link), each named by table and key.
    pub fn warnings(&self) -> &[AdapterError] {
        &self.warnings
    }
}

/// A connection of the range diff ([`crate::ranges`]): read-only, with
/// the row hash registered (`diffsync_row_hash(columns...)`: the first 8
/// bytes, big-endian, of the MD5 of the row's canonical text, as
/// PostgreSQL's `md5` of [`sql::row_text_sql`] gives them in hex).
#[cfg(feature = "sqlite")]
pub(crate) fn range_connection(path: &Path, origin: &str) -> Result<Connection> {
    use rusqlite::functions::FunctionFlags;
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| backend(origin, e))?;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    // The text is built in buffers kept for the connection's life.
    let buffers = std::sync::Mutex::new((String::new(), String::new()));
    conn.create_scalar_function("diffsync_row_hash", -1, flags, move |ctx| {
        use md5::Digest;
        use rusqlite::types::ValueRef;
        use sql::TextOf;
        let values = (0..ctx.len()).map(|i| match ctx.get_raw(i) {
            ValueRef::Null => TextOf::Null,
            ValueRef::Integer(n) => TextOf::Int(n),
            ValueRef::Real(f) => TextOf::Real(f),
            ValueRef::Text(t) | ValueRef::Blob(t) => TextOf::Text(std::str::from_utf8(t).unwrap_or("\u{fffd}")),
        });
        let mut held = buffers.lock().unwrap_or_else(|p| p.into_inner());
        let (out, scratch) = &mut *held;
        sql::row_text(values, out, scratch);
        let digest = md5::Md5::digest(out.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Ok(i64::from_be_bytes(first))
    })
    .map_err(|e| backend(origin, e))?;
    Ok(conn)
}

/// The range diff's connection, reading as the adapter does.
pub(crate) struct RangeConnection(pub(crate) Connection);

impl sql::Engine for RangeConnection {
    fn column_names(&mut self, t: &Table) -> Result<Vec<String>> {
        (&self.0).column_names(t)
    }
    fn each_row(&mut self, t: &Table, each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>) -> Result<()> {
        (&self.0).each_row(t, each)
    }
    fn one_row(&mut self, t: &Table, ids: &[SqlValue]) -> Result<Option<Vec<SqlValue>>> {
        (&self.0).one_row(t, ids)
    }
    fn base_body(&mut self, origin: &str, pair: &str) -> Result<Option<Vec<u8>>> {
        (&self.0).base_body(origin, pair)
    }
    fn put_base(&mut self, origin: &str, pair: &str, body: &[u8]) -> Result<()> {
        (&self.0).put_base(origin, pair, body)
    }
    fn query(
        &mut self,
        origin: &str,
        sql: &str,
        params: &[SqlValue],
        kinds: &[diffsync::ValueKind],
        each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>,
    ) -> Result<()> {
        (&self.0).query(origin, sql, params, kinds, each)
    }
}

const BASE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _diffsync_base (pair TEXT PRIMARY KEY, body BLOB NOT NULL)";

/// Hands the first `width` columns of each of `rows` to `each`.
fn each_value_row(
    mut rows: rusqlite::Rows<'_>,
    width: usize,
    origin: &str,
    each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>,
) -> Result<()> {
    while let Some(row) = rows.next().map_err(|e| backend(origin, e))? {
        let values = (0..width)
            .map(|i| row.get::<_, Sql>(i).map(from_sqlite))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| backend(origin, e))?;
        each(values)?;
    }
    Ok(())
}

/// The shared SQL code's reads and the base's row, on SQLite (whose
/// connections read and write through a shared reference).
impl sql::Engine for &Connection {
    fn column_names(&mut self, t: &Table) -> Result<Vec<String>> {
        let origin = t.origin();
        let mut stmt = self
            .prepare(&format!("PRAGMA table_info({})", t.name))
            .map_err(|e| backend(&origin, e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(1))
            .map_err(|e| backend(&origin, e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| backend(&origin, e))
    }

    fn each_row(&mut self, t: &Table, each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>) -> Result<()> {
        let origin = t.origin();
        let mut stmt = self.prepare(&t.select(&DIALECT)).map_err(|e| backend(&origin, e))?;
        let rows = stmt.query([]).map_err(|e| backend(&origin, e))?;
        each_value_row(rows, t.column_names().len(), &origin, each)
    }

    fn query(
        &mut self,
        origin: &str,
        sql: &str,
        params: &[SqlValue],
        kinds: &[diffsync::ValueKind],
        each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.prepare_cached(sql).map_err(|e| backend(origin, e))?;
        let rows = stmt
            .query(params_from_iter(params.iter().map(to_sqlite)))
            .map_err(|e| backend(origin, e))?;
        each_value_row(rows, kinds.len(), origin, each)
    }

    fn one_row(&mut self, t: &Table, ids: &[SqlValue]) -> Result<Option<Vec<SqlValue>>> {
        let width = t.column_names().len();
        let mut stmt = self
            .prepare_cached(&t.select_one(&DIALECT))
            .map_err(|e| backend(&t.origin(), e))?;
        stmt.query_row(params_from_iter(ids.iter().map(to_sqlite)), |r| {
            (0..width).map(|i| r.get::<_, Sql>(i).map(from_sqlite)).collect()
        })
        .optional()
        .map_err(|e| backend(&t.origin(), e))
    }

    fn base_body(&mut self, origin: &str, pair: &str) -> Result<Option<Vec<u8>>> {
        self.execute_batch(BASE_TABLE)
            .and_then(|()| {
                self.query_row("SELECT body FROM _diffsync_base WHERE pair = ?1", [pair], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| backend(origin, e))
    }

    fn put_base(&mut self, origin: &str, pair: &str, body: &[u8]) -> Result<()> {
        self.execute_batch(BASE_TABLE)
            .and_then(|()| {
                self.execute(
                    "INSERT OR REPLACE INTO _diffsync_base (pair, body) VALUES (?1, ?2)",
                    rusqlite::params![pair, body],
                )
            })
            .map(|_| ())
            .map_err(|e| backend(origin, e))
    }
}

/// A bidirectional base kept in an SQLite database (a row of
/// `_diffsync_base` under a pair name), for a reconcile loop: see
/// [`BaseStore`](diffsync::bidir::BaseStore). The database may be one of
/// the sides' (it opens a connection of its own).
pub struct SqliteBase {
    conn: Connection,
    origin: String,
    pair: String,
}

impl SqliteBase {
    /// Opens (or creates) the database file; the base is kept under `pair`.
    pub fn open(path: impl AsRef<Path>, pair: &str) -> Result<Self> {
        let origin = path.as_ref().display().to_string();
        let conn = Connection::open(path.as_ref()).map_err(|e| backend(&origin, e))?;
        Ok(SqliteBase {
            conn,
            origin,
            pair: pair.to_string(),
        })
    }
}

impl diffsync::bidir::BaseStore for SqliteBase {
    fn load(&mut self, like: &LocalStore) -> diffsync::Result<diffsync::bidir::Base> {
        sql::load_base(&mut &self.conn, &self.origin, &self.pair, like)
            .map_err(|e| crate::error::base_error(&self.origin, e))
    }
    fn save(&mut self, base: &diffsync::bidir::Base) -> diffsync::Result<()> {
        sql::save_base(&mut &self.conn, &self.origin, &self.pair, base)
            .map_err(|e| crate::error::base_error(&self.origin, e))
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
    type Store = LocalStore;
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }

    fn refresh(&mut self) -> diffsync::Result<()> {
        self.reload().map_err(crate::error::load_failed(&self.name))?;
        let origin = self.write_origin.clone();
        self.store.set_origin(origin.as_deref());
        Ok(())
    }

    /// Reads the changed rows again (by their identifiers) into the image:
    /// a row found is added or updated, a row gone is removed (a model that
    /// moved to another parent: the whole database).
    fn reread(&mut self, changed: &[diffsync::feed::ChangeEvent]) -> diffsync::Result<()> {
        let mut conn = &self.conn;
        let origin = self.origin.clone();
        let done = sql::reread(
            &self.tables,
            &self.registry,
            &mut self.store,
            changed,
            &origin,
            |t, ids| sql::Engine::one_row(&mut conn, t, ids),
        )
        .map_err(crate::error::load_failed(&self.name))?;
        // A model moved to another parent: read everything.
        if done { Ok(()) } else { self.refresh() }
    }
}
impl Sink for SqliteAdapter {
    /// All changes in one transaction. Without CONTINUE_ON_FAILURE the first
    /// failure rolls everything back (the failing change is named, the
    /// others reported rolled back); with it, each change has a savepoint and
    /// a failed one is rolled back alone. Changes count as applied only once
    /// the transaction commits.
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        let keep_going = batch.continue_on_failure();
        let origin = self.origin.clone();
        let mut tx = self.conn.transaction().map_err(|e| backend(&origin, e))?;
        // The triggers read the writer's tag; set inside the transaction,
        // no other connection ever sees it.
        if self.feed {
            tx.execute(
                "UPDATE _diffsync_origin SET tag = ?1 WHERE id = 1",
                [&self.write_origin],
            )
            .map_err(|e| backend(&origin, e))?;
        }
        for i in 0..batch.len() {
            if !batch.should_apply(i) {
                continue;
            }
            let change = &batch.changes()[i];
            let failed = |e: diffsync::BoxError| -> HookError {
                AdapterError::write(origin.clone(), change.model_type(), change.key(), e).into()
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
        if self.feed {
            tx.execute("UPDATE _diffsync_origin SET tag = NULL WHERE id = 1", [])
                .map_err(|e| backend(&origin, e))?;
        }
        tx.commit().map_err(|e| backend(&origin, e))?;
        batch.commit_staged();
        Ok(())
    }

    fn set_origin(&mut self, origin: Option<&str>) {
        self.store.set_origin(origin);
        self.write_origin = origin.map(str::to_string);
    }
}

/// The feed's tables: the change log, the writer's tag, consumers' cursors,
/// and how far the log was pruned.
const FEED_TABLES: &str = "
CREATE TABLE IF NOT EXISTS _diffsync_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, model_type TEXT NOT NULL, ids TEXT NOT NULL, op TEXT NOT NULL, origin TEXT);
CREATE TABLE IF NOT EXISTS _diffsync_origin (id INTEGER PRIMARY KEY CHECK (id = 1), tag TEXT);
INSERT OR IGNORE INTO _diffsync_origin (id, tag) VALUES (1, NULL);
CREATE TABLE IF NOT EXISTS _diffsync_cursor (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _diffsync_pruned (id INTEGER PRIMARY KEY CHECK (id = 1), upto INTEGER NOT NULL);
INSERT OR IGNORE INTO _diffsync_pruned (id, upto) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS _diffsync_generation (id INTEGER PRIMARY KEY CHECK (id = 1), generation TEXT NOT NULL);
";

/// The feed's tables, triggers and generations.
const FEED_DDL: sql::FeedDdl = sql::FeedDdl {
    tables: FEED_TABLES,
    triggers: feed_triggers,
    keep_generation: "INSERT OR IGNORE INTO _diffsync_generation (id, generation) VALUES (1, lower(hex(randomblob(16))));",
    new_generation:
        "INSERT OR REPLACE INTO _diffsync_generation (id, generation) VALUES (1, lower(hex(randomblob(16))));
             UPDATE _diffsync_pruned SET upto = 0 WHERE id = 1;",
};

/// Triggers that log a table's inserts, updates (a changed identifier is a
/// delete of the old key too) and deletes, with the writer's tag.
fn feed_triggers(t: &Table) -> String {
    let ty = t.model_type.replace('\'', "''");
    let (new, old) = (
        sql::ids_array(t, "NEW", "json_array"),
        sql::ids_array(t, "OLD", "json_array"),
    );
    let log = |ids: &str, op: &str| {
        format!(
            "INSERT INTO _diffsync_changes (model_type, ids, op, origin) VALUES ('{ty}', {ids}, '{op}', (SELECT tag FROM _diffsync_origin WHERE id = 1));"
        )
    };
    let name = |what: &str| sql::quote(&format!("_diffsync_{what}_{}", t.model_type));
    format!(
        "CREATE TRIGGER IF NOT EXISTS {} AFTER INSERT ON {} BEGIN {} END;
CREATE TRIGGER IF NOT EXISTS {} AFTER UPDATE ON {} BEGIN {} INSERT INTO _diffsync_changes (model_type, ids, op, origin) SELECT '{ty}', {old}, 'deleted', (SELECT tag FROM _diffsync_origin WHERE id = 1) WHERE {old} IS NOT {new}; END;
CREATE TRIGGER IF NOT EXISTS {} AFTER DELETE ON {} BEGIN {} END;
",
        name("insert"),
        t.name,
        log(&new, "created"),
        name("update"),
        t.name,
        log(&new, "updated"),
        name("delete"),
        t.name,
        log(&old, "deleted"),
    )
}

/// A durable feed of an SQLite database's changes (see
/// [`SqliteAdapter::enable_change_feed`]): reads the change log after the
/// consumer's cursor; [`commit`](ChangeFeed::commit) persists the cursor and
/// prunes what every consumer has read. Says "gap" when the consumer never
/// committed (its first sync must be full) or the log was pruned past it.
pub struct SqliteFeed {
    conn: Connection,
    consumer: String,
    /// Where this consumer is: the last sequence number returned.
    cursor: sql::LogCursor<i64>,
    origin: String,
}

use diffsync::feed::{ChangeFeed, FeedBatch, Position};

/// The log's generation and the highest sequence number it ever gave
/// (rows deleted or not).
fn log_state(conn: &Connection) -> rusqlite::Result<(Option<String>, i64)> {
    conn.query_row(
        "SELECT (SELECT generation FROM _diffsync_generation WHERE id = 1),
                coalesce((SELECT seq FROM sqlite_sequence WHERE name = '_diffsync_changes'), 0)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// How far the log was pruned.
fn pruned_upto(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT upto FROM _diffsync_pruned WHERE id = 1", [], |r| r.get(0))
}

/// The log row at `seq`, as text to compare.
fn row_at(conn: &Connection, seq: i64) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT model_type || ' ' || ids || ' ' || op FROM _diffsync_changes WHERE seq = ?1",
        [seq],
        |r| r.get(0),
    )
    .optional()
}

impl SqliteFeed {
    fn read(&mut self, max: usize) -> rusqlite::Result<FeedBatch> {
        let mut batch = FeedBatch::default();
        // Any discontinuity after the cursor is a gap: a log of another
        // generation (dropped and created again), numbers that went back
        // (a database restored from a backup), the row at the cursor gone
        // or changed while not pruned (pruned or rewritten by someone else).
        let (generation, highest) = log_state(&self.conn)?;
        let pruned = pruned_upto(&self.conn)?.min(highest);
        let went_back = highest < self.cursor.returned;
        let conn = &self.conn;
        batch.gap = self
            .cursor
            .check(generation, went_back, highest, pruned, |seq| row_at(conn, seq))?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, model_type, ids, op, origin FROM _diffsync_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![self.cursor.returned, max as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        for row in rows {
            let (seq, model_type, ids, op, origin) = row?;
            // Numbers are given without holes (rolled-back ones included):
            // a hole is rows deleted after the cursor.
            batch.gap |= seq != self.cursor.returned + 1;
            self.cursor.advance(seq, &model_type, &ids, &op);
            batch.events.push(sql::log_event(model_type, &ids, &op, origin));
        }
        // The log ended before the highest number it gave: the rows after
        // the cursor were deleted (the log cleared or cut short by hand).
        if batch.events.len() < max && self.cursor.returned < highest {
            batch.gap = true;
            self.cursor.returned = highest;
        }
        if batch.gap {
            self.cursor.reanchor(row_at(&self.conn, self.cursor.returned)?);
        }
        Ok(batch)
    }
}

impl ChangeFeed for SqliteFeed {
    fn poll(&mut self, max: usize, wait: std::time::Duration) -> std::result::Result<FeedBatch, diffsync::BoxError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let batch = self.read(max).map_err(|e| backend(&self.origin, e))?;
            if batch.gap || !batch.events.is_empty() {
                return Ok(batch);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(batch);
            }
            // Other processes' commits are seen by polling: a few ms apart.
            std::thread::sleep((deadline - now).min(std::time::Duration::from_millis(2)));
        }
    }

    fn position(&self) -> Option<Position> {
        Some(Position::new(self.cursor.returned.to_string()))
    }

    fn commit_at(&mut self, position: &Position) -> std::result::Result<(), diffsync::BoxError> {
        let seq: i64 = AdapterError::position(&self.origin, position, |p| p.parse().ok())?;
        let tx = self.conn.transaction().map_err(|e| backend(&self.origin, e))?;
        tx.execute(
            "INSERT INTO _diffsync_cursor (consumer, seq, generation) VALUES (?1, ?2, ?3)
             ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq, generation = excluded.generation",
            rusqlite::params![self.consumer, seq, self.cursor.generation],
        )
        .and_then(|_| {
            tx.execute_batch(
                "UPDATE _diffsync_pruned SET upto = max(upto, (SELECT min(seq) FROM _diffsync_cursor)) WHERE id = 1;
                 DELETE FROM _diffsync_changes WHERE seq <= (SELECT upto FROM _diffsync_pruned WHERE id = 1);",
            )
        })
        .and_then(|()| tx.commit())
        .map_err(|e| backend(&self.origin, e))?;
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
