//! PostgreSQL: the same tables as the SQLite adapter, against a server.
//! Creates are written as multi-row INSERTs, the whole sync in one transaction.

use std::error::Error as StdError;

use bytes::BytesMut;
use diffsync::{Action, Adapter, Batch, HookError, LocalStore, Sink, ValueKind};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Transaction};

use crate::error::{AdapterError, Result};
use crate::registry::Registry;
use crate::sql::{self, Dialect, SqlValue, Table};

pub(crate) const DIALECT: Dialect = Dialect {
    placeholder: |i| format!("${i}"),
    column_type: |k| match k {
        ValueKind::Integer => "BIGINT",
        ValueKind::Float => "DOUBLE PRECISION",
        ValueKind::Bool => "BOOLEAN",
        _ => "TEXT",
    },
    order_column: "\"_seq\"",
    same: "IS NOT DISTINCT FROM",
    order_column_def: Some("\"_seq\" BIGSERIAL"),
    bytewise: " COLLATE \"C\"",
    row_hash: |columns| format!("md5({})", sql::row_text_sql(columns)),
    halves: |h| {
        [
            format!("('x' || substr({h}, 1, 8))::bit(32)::bigint"),
            format!("('x' || substr({h}, 9, 8))::bit(32)::bigint"),
        ]
    },
    sum: |x| format!("sum({x})::bigint"),
    fence: " OFFSET 0",
};

/// PostgreSQL allows 65,535 parameters per statement; rows per INSERT stay well below.
const ROWS_PER_INSERT: usize = 1000;

impl ToSql for SqlValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Int(i) => i.to_sql(ty, out),
            SqlValue::Real(f) => f.to_sql(ty, out),
            SqlValue::Text(s) => s.to_sql(ty, out),
            SqlValue::Bool(b) => b.to_sql(ty, out),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// Where bidirectional bases are kept, one row per pair of adapters.
const BASE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _diffsync_base (pair TEXT PRIMARY KEY, body BYTEA NOT NULL)";

/// An adapter over a PostgreSQL database.
pub struct PostgresAdapter {
    name: String,
    client: Client,
    registry: Registry,
    tables: Vec<Table>,
    origin: String,
    /// The connection parameters (a feed opens its own connection).
    params: String,
    /// Whether `enable_change_feed` ran: writes then tag their origin.
    feed: bool,
    /// The tag of the writes made now (see [`Sink::set_origin`]).
    write_origin: Option<String>,
    /// What the last load read past.
    warnings: Vec<AdapterError>,
    /// The models, as loaded from (and kept in step with) the database.
    pub store: LocalStore,
}

impl PostgresAdapter {
    /// Connects (`params` as for `postgres::Client::connect`, e.g.
    /// `host=127.0.0.1 port=5432 user=app dbname=inventory`), creates missing
    /// tables and loads them.
    pub fn connect(name: &str, params: &str, registry: Registry) -> Result<Self> {
        let mut a = Self::connect_unloaded(name, params, registry)?;
        a.load_tables()?;
        Ok(a)
    }

    /// Connects without loading: the store is `image`, a part of the
    /// database read elsewhere (a [range diff](crate::ranges)'s target
    /// image, which holds the rows that differ and their parents), so a
    /// sync of that diff writes the rows it changes, checked against what
    /// the image holds, without reading the rest of the database.
    pub fn connect_image(name: &str, params: &str, registry: Registry, image: LocalStore) -> Result<Self> {
        let mut a = Self::connect_unloaded(name, params, registry)?;
        a.store = image;
        Ok(a)
    }

    fn connect_unloaded(name: &str, params: &str, registry: Registry) -> Result<Self> {
        let (client, origin) = connect(params)?;
        let tables = sql::tables(&origin, &registry)?;
        let mut store = LocalStore::new(name);
        registry.register_all(&mut store)?;
        let mut a = PostgresAdapter {
            name: name.to_string(),
            client,
            registry,
            tables,
            origin,
            params: params.to_string(),
            feed: false,
            write_origin: None,
            warnings: Vec::new(),
            store,
        };
        for t in &a.tables {
            let ddl = t.create(&DIALECT);
            a.client.batch_execute(&ddl).map_err(|e| backend(&t.origin(), e))?;
        }
        Ok(a)
    }

    /// Records every change to the model tables, by any client, in a
    /// change log kept by triggers (`_diffsync_changes`), which
    /// [`change_feed`](Self::change_feed) reads. Each row carries its
    /// transaction id, so a reader never moves past a transaction that has
    /// not finished (sequence numbers are handed out before commit, in
    /// another order than commits). Writes made through this adapter carry
    /// the origin set with [`Sink::set_origin`].
    pub fn enable_change_feed(&mut self) -> Result<()> {
        let origin = format!("{}: _diffsync_changes", self.origin);
        let existed: bool = self
            .client
            .query_one("SELECT to_regclass('_diffsync_changes') IS NOT NULL", &[])
            .map_err(|e| backend(&origin, e))?
            .get(0);
        let ddl = FEED_DDL.statements(&self.tables, existed);
        self.client.batch_execute(&ddl).map_err(|e| backend(&origin, e))?;
        self.feed = true;
        Ok(())
    }

    /// Keeps each row's hash (the one a range diff compares, of its
    /// identifiers and attributes) in two columns of its table, `_hash_hi`
    /// and `_hash_lo`, which a trigger sets on every insert and update by
    /// any client, with an index of the key and the hashes; the rows there
    /// are hashed now. A range diff over these tables then reads the hashes
    /// (a range's fingerprint is an index-only read) instead of hashing
    /// every row it covers in each query ([`RangeStats::kept_hashes`](crate::ranges::RangeStats::kept_hashes)
    /// counts the tables). Dropping or disabling the trigger makes the
    /// range diff hash in its queries again. Safe to call again.
    /// Tables whose hashes are kept already are left as they are. Without
    /// loading the tables: [`keep_row_hashes`].
    pub fn keep_row_hashes(&mut self) -> Result<()> {
        keep_hashes(&mut self.client, &self.tables)
    }

    /// A durable feed of this database's changes for `consumer`, on a
    /// connection of its own, resuming after the last event it committed.
    pub fn change_feed(&self, consumer: &str) -> Result<PostgresFeed> {
        let origin = format!("{}: _diffsync_changes", self.origin);
        if !self.feed {
            return Err(AdapterError::backend(
                &origin,
                "the change feed is not enabled: call enable_change_feed first",
            ));
        }
        let (mut client, _) = connect(&self.params)?;
        let cursor = client
            .query_opt(
                "SELECT xid, seq, generation FROM _diffsync_cursor WHERE consumer = $1",
                &[&consumer],
            )
            .map_err(|e| backend(&origin, e))?
            .map(|r| ((r.get::<_, i64>(0), r.get::<_, i64>(1)), r.get::<_, Option<String>>(2)));
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .map_err(|e| backend(&origin, e))?;
        let fail = |e| backend(&origin, e);
        let (generation, _, pruned) = log_state(&mut client).map_err(fail)?;
        let anchor = row_at(&mut client, cursor.as_ref().map_or((0, 0), |c| c.0)).map_err(fail)?;
        let cursor = sql::LogCursor::open(cursor, generation, anchor, pruned);
        Ok(PostgresFeed {
            client,
            params: self.params.clone(),
            consumer: consumer.to_string(),
            cursor,
            origin,
        })
    }

    /// The client (to query the database, or run your own statements).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Keeps a bidirectional [`Base`](diffsync::bidir::Base) in this
    /// database, under `pair` (one row of `_diffsync_base`, written by one
    /// upsert: the old base or the new one, never half).
    pub fn save_base(&mut self, pair: &str, base: &diffsync::bidir::Base) -> Result<()> {
        alive(&mut self.client, &self.params, true)?;
        sql::save_base(&mut self.client, &self.origin, pair, base)
    }

    /// The base saved under `pair`, or an empty one (the first run).
    pub fn load_base(&mut self, pair: &str) -> Result<diffsync::bidir::Base> {
        alive(&mut self.client, &self.params, true)?;
        sql::load_base(&mut self.client, &self.origin, pair, &self.store)
    }

    /// Re-reads the database into a fresh store.
    pub fn reload(&mut self) -> Result<()> {
        alive(&mut self.client, &self.params, true)?;
        let mut store = LocalStore::new(&self.name);
        self.registry.register_all(&mut store)?;
        self.store = store;
        self.load_tables()
    }

    fn load_tables(&mut self) -> Result<()> {
        self.warnings = sql::load_tables(&mut self.client, &self.tables, &self.registry, &mut self.store)?;
        Ok(())
    }

    /// What the last load found wrong but could read past: rows naming a
    /// parent that does not exist ([`AdapterError::Orphan`], loaded
    /// without their parent link), each named by table and key.
    pub fn warnings(&self) -> &[AdapterError] {
        &self.warnings
    }
}

/// A row's values, read by the columns' value kinds.
fn row_values(t: &Table, row: &postgres::Row) -> Result<Vec<SqlValue>> {
    let mut values = Vec::with_capacity(row.len());
    // The row's key for messages, from the identifiers read as text (`?`
    // where one cannot be).
    let key = || {
        diffsync::readable_id_of((0..t.n_ids).map(|i| {
            let text = match t.columns[i].kind {
                ValueKind::Integer => row.try_get::<_, Option<i64>>(i).ok().flatten().map(|v| v.to_string()),
                _ => row.try_get::<_, Option<String>>(i).ok().flatten(),
            };
            serde_json::Value::String(text.unwrap_or_else(|| "?".into()))
        }))
    };
    for (i, name) in t.column_names().iter().enumerate() {
        let kind = t
            .columns
            .iter()
            .find(|c| c.name == *name)
            .map_or(ValueKind::String, |c| c.kind);
        let get = |e: postgres::Error| AdapterError::Model {
            origin: t.origin(),
            model_type: t.model_type.clone(),
            key: key(),
            message: format!("column {name:?}: {}", crate::error::message_of(&e)),
        };
        let v = match kind {
            ValueKind::Integer => row.try_get::<_, Option<i64>>(i).map_err(get)?.map(SqlValue::Int),
            ValueKind::Float => row.try_get::<_, Option<f64>>(i).map_err(get)?.map(SqlValue::Real),
            ValueKind::Bool => row.try_get::<_, Option<bool>>(i).map_err(get)?.map(SqlValue::Bool),
            _ => row.try_get::<_, Option<String>>(i).map_err(get)?.map(SqlValue::Text),
        };
        values.push(v.unwrap_or(SqlValue::Null));
    }
    Ok(values)
}

/// The host and port of connection parameters, for messages (no password).
fn address(params: &str) -> String {
    let get = |k: &str| {
        params
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
    };
    format!(
        "postgres://{}:{}",
        get("host").unwrap_or("localhost"),
        get("port").unwrap_or("5432")
    )
}

/// The shared SQL code's reads and the base's row, on PostgreSQL.
/// Runs a prepared statement, handing each row's columns, read by
/// `kinds`, to `each`.
fn query_rows(
    client: &mut Client,
    origin: &str,
    statement: &postgres::Statement,
    params: &[SqlValue],
    kinds: &[ValueKind],
    each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>,
) -> Result<()> {
    // Rows handed on as they arrive, never all held: a statement may
    // answer for tens of thousands of ranges.
    let mut rows = client
        .query_raw(statement, params.iter())
        .map_err(|e| backend(origin, e))?;
    while let Some(row) = rows.next().map_err(|e| backend(origin, e))? {
        let mut values = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            let get = |e: postgres::Error| backend(origin, e);
            values.push(
                match kind {
                    ValueKind::Integer => row.try_get::<_, Option<i64>>(i).map_err(get)?.map(SqlValue::Int),
                    ValueKind::Float => row.try_get::<_, Option<f64>>(i).map_err(get)?.map(SqlValue::Real),
                    ValueKind::Bool => row.try_get::<_, Option<bool>>(i).map_err(get)?.map(SqlValue::Bool),
                    _ => row.try_get::<_, Option<String>>(i).map_err(get)?.map(SqlValue::Text),
                }
                .unwrap_or(SqlValue::Null),
            );
        }
        each(values)?;
    }
    Ok(())
}

impl sql::Engine for Client {
    fn kept_hashes(&mut self, t: &Table) -> Result<bool> {
        let row = self
            .query_one(
                "SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1)
                          AND attname = ANY($2) AND NOT attisdropped) = 2
                    AND EXISTS (SELECT 1 FROM pg_trigger JOIN pg_proc ON pg_proc.oid = tgfoid
                          WHERE tgrelid = to_regclass($1) AND tgname = left($3, 63)
                          AND tgenabled <> 'D' AND prosrc = $4)",
                &[
                    &t.name,
                    &&sql::HASH_COLUMNS[..],
                    &hash_trigger(t),
                    &hash_function_body(t),
                ],
            )
            .map_err(|e| backend(&t.origin(), e))?;
        Ok(row.get(0))
    }

    fn column_names(&mut self, t: &Table) -> Result<Vec<String>> {
        Ok(self
            // The table the name finds through the search path, as the
            // statements' unqualified names do (a table of that name in
            // another schema of the database is not this one).
            .query(
                "SELECT attname::text FROM pg_attribute \
                 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                &[&t.name],
            )
            .map_err(|e| backend(&t.origin(), e))?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn each_row(&mut self, t: &Table, each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>) -> Result<()> {
        let rows = self
            .query(&t.select(&DIALECT), &[])
            .map_err(|e| backend(&t.origin(), e))?;
        for row in rows {
            each(row_values(t, &row)?)?;
        }
        Ok(())
    }

    fn query(
        &mut self,
        origin: &str,
        sql: &str,
        params: &[SqlValue],
        kinds: &[ValueKind],
        each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>,
    ) -> Result<()> {
        let statement = self.prepare(sql).map_err(|e| backend(origin, e))?;
        query_rows(self, origin, &statement, params, kinds, each)
    }

    fn one_row(&mut self, t: &Table, ids: &[SqlValue]) -> Result<Option<Vec<SqlValue>>> {
        let params: Vec<&(dyn ToSql + Sync)> = ids.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let row = self
            .query_opt(&t.select_one(&DIALECT), &params)
            .map_err(|e| backend(&t.origin(), e))?;
        row.map(|r| row_values(t, &r)).transpose()
    }

    fn base_body(&mut self, origin: &str, pair: &str) -> Result<Option<Vec<u8>>> {
        let row = self
            .batch_execute(BASE_TABLE)
            .and_then(|()| self.query_opt("SELECT body FROM _diffsync_base WHERE pair = $1", &[&pair]))
            .map_err(|e| backend(origin, e))?;
        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
    }

    fn put_base(&mut self, origin: &str, pair: &str, body: &[u8]) -> Result<()> {
        self.batch_execute(BASE_TABLE)
            .and_then(|()| {
                self.execute(
                    "INSERT INTO _diffsync_base (pair, body) VALUES ($1, $2) \
                     ON CONFLICT (pair) DO UPDATE SET body = EXCLUDED.body",
                    &[&pair, &body],
                )
            })
            .map(|_| ())
            .map_err(|e| backend(origin, e))
    }
}

/// A connection to the server `params` name, and where it is (for
/// messages: no password); a server that does not answer is
/// [`AdapterError::Unreachable`].
fn connect(params: &str) -> Result<(Client, String)> {
    let origin = address(params);
    let client = Client::connect(params, NoTls).map_err(|e| AdapterError::Unreachable {
        address: origin.clone(),
        message: e.to_string(),
    })?;
    Ok((client, origin))
}

/// A connection of the range diff ([`crate::ranges`]), and where it is.
pub(crate) fn range_client(params: &str) -> Result<(RangeClient, String)> {
    let (mut client, origin) = connect(params)?;
    // A statement prepared once is still planned for each range's bounds:
    // a plan for unknown bounds guesses a tenth of the table and reads
    // a range of 200 rows by scanning and sorting the whole table.
    // Nor are a range's few hundred rows worth parallel workers, whose
    // start costs more than the read; nor compiling a statement that
    // lists thousands of ranges (JIT: ~80 ms a statement, the estimate of
    // a join to a list it cannot see the length of being large).
    // Settings of PostgreSQL's own: an engine that speaks its protocol
    // without them (a distributed one) plans as it does, and the diff is
    // the same.
    for setting in [
        "SET plan_cache_mode = force_custom_plan",
        "SET max_parallel_workers_per_gather = 0",
        "SET jit = off",
    ] {
        if let Err(e) = client.batch_execute(setting) {
            tracing::debug!(%origin, error = %e, setting, "not taken; planning as the server does");
        }
    }
    Ok((
        RangeClient {
            client,
            prepared: std::collections::HashMap::new(),
        },
        origin,
    ))
}

/// The range diff's connection: its queries are prepared once each (it
/// runs the same few thousands of times).
pub(crate) struct RangeClient {
    client: Client,
    prepared: std::collections::HashMap<String, postgres::Statement>,
}

impl sql::Engine for RangeClient {
    fn kept_hashes(&mut self, t: &Table) -> Result<bool> {
        self.client.kept_hashes(t)
    }
    fn column_names(&mut self, t: &Table) -> Result<Vec<String>> {
        self.client.column_names(t)
    }
    fn each_row(&mut self, t: &Table, each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>) -> Result<()> {
        self.client.each_row(t, each)
    }
    fn one_row(&mut self, t: &Table, ids: &[SqlValue]) -> Result<Option<Vec<SqlValue>>> {
        self.client.one_row(t, ids)
    }
    fn base_body(&mut self, origin: &str, pair: &str) -> Result<Option<Vec<u8>>> {
        self.client.base_body(origin, pair)
    }
    fn put_base(&mut self, origin: &str, pair: &str, body: &[u8]) -> Result<()> {
        self.client.put_base(origin, pair, body)
    }
    fn query(
        &mut self,
        origin: &str,
        sql: &str,
        params: &[SqlValue],
        kinds: &[ValueKind],
        each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>,
    ) -> Result<()> {
        let statement = match self.prepared.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = self.client.prepare(sql).map_err(|e| backend(origin, e))?;
                self.prepared.insert(sql.to_string(), s.clone());
                s
            }
        };
        query_rows(&mut self.client, origin, &statement, params, kinds, each)
    }
}

/// A bidirectional base kept in a PostgreSQL database (a row of
/// `_diffsync_base` under a pair name), for a reconcile loop: see
/// [`BaseStore`](diffsync::bidir::BaseStore). It connects on its own.
pub struct PostgresBase {
    client: Client,
    params: String,
    origin: String,
    pair: String,
}

impl PostgresBase {
    /// Connects (`params` as for [`PostgresAdapter::connect`]); the base is kept under `pair`.
    pub fn connect(params: &str, pair: &str) -> Result<Self> {
        let (client, origin) = connect(params)?;
        Ok(PostgresBase {
            client,
            params: params.to_string(),
            origin,
            pair: pair.to_string(),
        })
    }
}

impl diffsync::bidir::BaseStore for PostgresBase {
    fn load(&mut self, like: &LocalStore) -> diffsync::Result<diffsync::bidir::Base> {
        alive(&mut self.client, &self.params, true)
            .and_then(|_| sql::load_base(&mut self.client, &self.origin, &self.pair, like))
            .map_err(|e| crate::error::base_error(&self.origin, e))
    }
    fn save(&mut self, base: &diffsync::bidir::Base) -> diffsync::Result<()> {
        alive(&mut self.client, &self.params, true)
            .and_then(|_| sql::save_base(&mut self.client, &self.origin, &self.pair, base))
            .map_err(|e| crate::error::base_error(&self.origin, e))
    }
}

/// How long a liveness check of a connection may take.
const ALIVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the connection again when the server dropped it (a restart, a
/// failover), so an adapter, a base or a feed outlives a database restart.
/// `probe`: ask the server (one round trip) rather than trust what the
/// client last saw. `true`: it was opened again.
fn alive(client: &mut Client, params: &str, probe: bool) -> Result<bool> {
    if !client.is_closed() && (!probe || client.is_valid(ALIVE_WITHIN).is_ok()) {
        return Ok(false);
    }
    *client = connect(params)?.0;
    Ok(true)
}

fn backend(origin: &str, e: postgres::Error) -> AdapterError {
    AdapterError::backend(origin, e)
}

fn run(tx: &mut Transaction<'_>, stmts: &[sql::Statement]) -> std::result::Result<(), diffsync::BoxError> {
    for s in stmts {
        let params: Vec<&(dyn ToSql + Sync)> = s.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let touched = tx.execute(s.sql.as_str(), &params)?;
        s.check(touched)?;
    }
    Ok(())
}

/// A failed write of one change, naming the server, model and key.
fn write_error(origin: &str, change: &diffsync::Change<'_>, e: diffsync::BoxError) -> HookError {
    AdapterError::write(origin, change.model_type(), change.key(), e).into()
}

impl Adapter for PostgresAdapter {
    type Store = LocalStore;
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }

    /// Reads the changed rows again (by their identifiers) into the image:
    /// a row found is added or updated, a row gone is removed (a model that
    /// moved to another parent: the whole database).
    fn reread(&mut self, changed: &[diffsync::feed::ChangeEvent]) -> diffsync::Result<()> {
        alive(&mut self.client, &self.params, true).map_err(crate::error::load_failed(&self.name))?;
        let client = &mut self.client;
        let origin = self.origin.clone();
        let done = sql::reread(
            &self.tables,
            &self.registry,
            &mut self.store,
            changed,
            &origin,
            |t, ids| sql::Engine::one_row(client, t, ids),
        )
        .map_err(crate::error::load_failed(&self.name))?;
        // A model moved to another parent: read everything.
        if done { Ok(()) } else { self.refresh() }
    }

    fn refresh(&mut self) -> diffsync::Result<()> {
        self.reload().map_err(crate::error::load_failed(&self.name))?;
        let origin = self.write_origin.clone();
        self.store.set_origin(origin.as_deref());
        Ok(())
    }
}
impl Sink for PostgresAdapter {
    fn set_origin(&mut self, origin: Option<&str>) {
        self.store.set_origin(origin);
        self.write_origin = origin.map(str::to_string);
    }

    /// One transaction. Without CONTINUE_ON_FAILURE, creates are grouped per
    /// model type into multi-row INSERTs (the tables have no foreign keys, so
    /// order across types does not matter inside the transaction) and any
    /// failure rolls everything back. With it, each change runs in its own
    /// savepoint. Changes count as applied only once the transaction commits.
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        let keep_going = batch.continue_on_failure();
        let origin = self.origin.clone();
        alive(&mut self.client, &self.params, true)?;
        let mut tx = self.client.transaction().map_err(|e| backend(&origin, e))?;
        // The triggers read the writer's tag from a setting local to this transaction.
        if self.feed
            && let Some(tag) = &self.write_origin
        {
            tx.execute("SELECT set_config('diffsync.origin', $1, true)", &[tag])
                .map_err(|e| backend(&origin, e))?;
        }
        if keep_going {
            for i in 0..batch.len() {
                if !batch.should_apply(i) {
                    continue;
                }
                let change = &batch.changes()[i];
                let r: Result<(), HookError> =
                    match sql::statements(&DIALECT, &self.tables, &self.registry, &self.store, change) {
                        Err(e) => Err(e.into()),
                        Ok(stmts) => {
                            let mut sp = tx.transaction().map_err(|e| backend(&origin, e))?;
                            let r = run(&mut sp, &stmts).map_err(|e| write_error(&origin, change, e));
                            if r.is_ok() {
                                sp.commit().map_err(|e| backend(&origin, e))?;
                            }
                            r
                        }
                    };
                match r {
                    Ok(()) => batch.stage(i),
                    Err(e) => batch.set_outcome(i, Err(e)),
                }
            }
            tx.commit().map_err(|e| backend(&origin, e))?;
            batch.commit_staged();
            return Ok(());
        }
        // All or nothing: group creates by type, run the rest in order.
        // (table, change, row)
        let mut inserts: Vec<(usize, usize, Vec<SqlValue>)> = Vec::new();
        for i in 0..batch.len() {
            if !batch.should_apply(i) {
                if batch.is_aborted() {
                    return Err("transaction rolled back".into());
                }
                continue;
            }
            let change = &batch.changes()[i];
            let stmts = match sql::statements(&DIALECT, &self.tables, &self.registry, &self.store, change) {
                Ok(stmts) => stmts,
                Err(e) => {
                    batch.set_outcome(i, Err(e.into()));
                    return Err("transaction rolled back".into());
                }
            };
            if change.action == Action::Create {
                let t = self
                    .tables
                    .iter()
                    .position(|t| t.model_type == change.model_type())
                    .unwrap_or(0);
                inserts.extend(stmts.into_iter().map(|s| (t, i, s.params)));
            } else if let Err(e) = run(&mut tx, &stmts) {
                let e = write_error(&origin, change, e);
                batch.set_outcome(i, Err(e));
                return Err("transaction rolled back".into());
            }
            batch.stage(i);
        }
        for (ti, t) in self.tables.iter().enumerate() {
            let rows: Vec<(usize, &Vec<SqlValue>)> = inserts
                .iter()
                .filter(|(table, ..)| *table == ti)
                .map(|(_, i, r)| (*i, r))
                .collect();
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let params: Vec<&(dyn ToSql + Sync)> = chunk
                    .iter()
                    .flat_map(|(_, r)| r.iter())
                    .map(|p| p as &(dyn ToSql + Sync))
                    .collect();
                let mut sp = tx.transaction().map_err(|e| backend(&origin, e))?;
                let failed = sp.execute(t.insert(&DIALECT, chunk.len()).as_str(), &params).is_err();
                if !failed {
                    sp.commit().map_err(|e| backend(&origin, e))?;
                    continue;
                }
                drop(sp);
                // The multi-row INSERT failed: find the row, to name its change.
                for &(i, row) in chunk {
                    let params: Vec<&(dyn ToSql + Sync)> = row.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                    if let Err(e) = tx.execute(t.insert(&DIALECT, 1).as_str(), &params) {
                        let e = write_error(&origin, &batch.changes()[i], e.into());
                        batch.set_outcome(i, Err(e));
                        return Err("transaction rolled back".into());
                    }
                }
                return Err(format!(
                    "{}: a multi-row INSERT failed, no row alone did; transaction rolled back",
                    t.origin()
                )
                .into());
            }
        }
        tx.commit().map_err(|e| backend(&origin, e))?;
        batch.commit_staged();
        Ok(())
    }
}

/// The feed's tables: the log (with each row's transaction id), consumers'
/// cursors, and how far the log was pruned.
const PG_FEED_TABLES: &str = "
CREATE TABLE IF NOT EXISTS _diffsync_changes (seq BIGSERIAL PRIMARY KEY, xid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint), model_type TEXT NOT NULL, ids JSONB NOT NULL, op TEXT NOT NULL, origin TEXT);
CREATE INDEX IF NOT EXISTS _diffsync_changes_order ON _diffsync_changes (xid, seq);
CREATE TABLE IF NOT EXISTS _diffsync_cursor (consumer TEXT PRIMARY KEY, xid BIGINT NOT NULL, seq BIGINT NOT NULL);
ALTER TABLE _diffsync_cursor ADD COLUMN IF NOT EXISTS generation TEXT;
CREATE TABLE IF NOT EXISTS _diffsync_generation (id INT PRIMARY KEY CHECK (id = 1), generation TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS _diffsync_pruned (id INT PRIMARY KEY CHECK (id = 1), xid BIGINT NOT NULL, seq BIGINT NOT NULL);
INSERT INTO _diffsync_pruned (id, xid, seq) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING;
CREATE OR REPLACE FUNCTION _diffsync_notify() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM pg_notify('diffsync_changes', '');
  RETURN NULL;
END $f$;
";

/// The feed's tables, triggers and generations.
const FEED_DDL: sql::FeedDdl = sql::FeedDdl {
    tables: PG_FEED_TABLES,
    triggers: pg_feed_trigger,
    keep_generation: "INSERT INTO _diffsync_generation (id, generation) VALUES (1, md5(random()::text || clock_timestamp()::text)) ON CONFLICT (id) DO NOTHING;",
    new_generation:
        "INSERT INTO _diffsync_generation (id, generation) VALUES (1, md5(random()::text || clock_timestamp()::text))
               ON CONFLICT (id) DO UPDATE SET generation = excluded.generation;
             UPDATE _diffsync_pruned SET xid = 0, seq = 0 WHERE id = 1;",
};

/// [`PostgresAdapter::keep_row_hashes`] for the tables of `registry`'s
/// types in the database `params` names, without loading them (a table
/// of a million rows is hashed by the server, in one statement).
pub fn keep_row_hashes(params: &str, registry: &Registry) -> Result<()> {
    let (mut client, origin) = connect(params)?;
    keep_hashes(&mut client, &sql::tables(&origin, registry)?)
}

fn keep_hashes(client: &mut Client, tables: &[Table]) -> Result<()> {
    use sql::Engine;
    for t in tables {
        if client.kept_hashes(t)? {
            continue;
        }
        let origin = t.origin();
        client.batch_execute(&hash_ddl(t)).map_err(|e| backend(&origin, e))?;
        // Outside the transaction above: the hashes visible to index-only
        // reads, and the planner told of the new index.
        client
            .batch_execute(&format!("VACUUM (ANALYZE) {}", t.name))
            .map_err(|e| backend(&origin, e))?;
    }
    Ok(())
}

/// The name of `t`'s hash trigger (and its function and index; the
/// server keeps its first 63 bytes, which is what is looked up).
fn hash_trigger(t: &Table) -> String {
    format!("_diffsync_hash_{}", t.model_type)
}

/// The statements keeping `t`'s row hashes: the columns, the trigger that
/// sets them (the hash the range diff computes, of the new row), the rows
/// there hashed, the index of the key and the hashes.
fn hash_ddl(t: &Table) -> String {
    let name = sql::quote(&hash_trigger(t));
    let [hi, lo] = sql::HASH_COLUMNS.map(sql::quote);
    format!(
        "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {hi} BIGINT, ADD COLUMN IF NOT EXISTS {lo} BIGINT;
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $f${body}$f$;
DROP TRIGGER IF EXISTS {name} ON {table};
CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {name}();
UPDATE {table} SET {hi} = NULL;
CREATE INDEX IF NOT EXISTS {name} ON {table} ({key}) INCLUDE ({hi}, {lo});",
        table = t.name,
        body = hash_function_body(t),
        key = t.key_order(&DIALECT),
    )
}

/// The body of `t`'s hash trigger function: the hash the range diff
/// computes, of the new row. A trigger whose function says anything else
/// (one made before the row's canonical text last changed) is not
/// trusted, and keeping the hashes again replaces it and hashes the rows.
fn hash_function_body(t: &Table) -> String {
    let [hi, lo] = sql::HASH_COLUMNS.map(sql::quote);
    let columns: Vec<(String, ValueKind)> = t
        .columns
        .iter()
        .map(|c| (format!("NEW.{}", sql::quote(&c.name)), c.kind))
        .collect();
    let [high, low] = (DIALECT.halves)("h");
    format!(
        "
DECLARE h text := {hash};
BEGIN
  NEW.{hi} := {high};
  NEW.{lo} := {low};
  RETURN NEW;
END ",
        hash = (DIALECT.row_hash)(&columns),
    )
}

/// The channel on which a write to a model table wakes the feeds (once per
/// transaction: PostgreSQL folds equal notifications).
const NOTIFY_CHANNEL: &str = "diffsync_changes";

/// A trigger function and trigger logging a table's inserts, updates (a
/// changed identifier also deletes the old key) and deletes.
fn pg_feed_trigger(t: &Table) -> String {
    let ty = t.model_type.replace('\'', "''");
    let array = "jsonb_build_array";
    let (new, old) = (sql::ids_array(t, "NEW", array), sql::ids_array(t, "OLD", array));
    let log = |ids: &str, op: &str| {
        format!(
            "INSERT INTO _diffsync_changes (model_type, ids, op, origin) VALUES ('{ty}', {ids}, {op}, NULLIF(current_setting('diffsync.origin', true), ''));"
        )
    };
    let func = sql::quote(&format!("_diffsync_log_{}", t.model_type));
    let trigger = sql::quote(&format!("_diffsync_{}", t.model_type));
    let wake = sql::quote(&format!("_diffsync_wake_{}", t.model_type));
    format!(
        "CREATE OR REPLACE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF TG_OP = 'DELETE' THEN
    {}
  ELSE
    {}
    IF TG_OP = 'UPDATE' AND {old} IS DISTINCT FROM {new} THEN
      {}
    END IF;
  END IF;
  RETURN NULL;
END $f$;
DROP TRIGGER IF EXISTS {trigger} ON {table};
CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {func}();
DROP TRIGGER IF EXISTS {wake} ON {table};
CREATE TRIGGER {wake} AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION _diffsync_notify();
",
        log(&old, "'deleted'"),
        log(&new, "CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END"),
        log(&old, "'deleted'"),
        table = t.name,
    )
}

/// A durable feed of a PostgreSQL database's changes (see
/// [`PostgresAdapter::enable_change_feed`]). It reads only rows of
/// transactions older than the oldest one still running (their rows can no
/// longer appear), in (transaction, sequence) order, after the consumer's
/// cursor; [`commit`](ChangeFeed::commit) persists the cursor and prunes what
/// every consumer has read. A gap when the consumer never committed or the
/// log was pruned past it. A poll reads the log, then sleeps until a
/// NOTIFY that a statement-level trigger sends from every writing
/// transaction wakes it (a wake-up only: a notification can be missed,
/// never an event, since the log is read again on every poll; NOTIFY
/// takes a global lock at commit, once per transaction). A feed kept open
/// but never polled holds its notifications in the server's queue: drop
/// feeds you stop reading.
pub struct PostgresFeed {
    client: Client,
    /// The connection parameters (to connect again after a restart).
    params: String,
    consumer: String,
    /// Where this consumer is: the (transaction id, sequence number) of
    /// the last event returned.
    cursor: sql::LogCursor<(i64, i64)>,
    origin: String,
}

use diffsync::feed::{ChangeFeed, FeedBatch, Position};

/// A change log's generation, the oldest running transaction id, and the
/// pruned position.
type LogState = (Option<String>, i64, (i64, i64));

/// The log's generation, the oldest transaction still running (or the
/// next one), and how far the log was pruned.
fn log_state(client: &mut Client) -> std::result::Result<LogState, postgres::Error> {
    let row = client.query_one(
        "SELECT (SELECT generation FROM _diffsync_generation WHERE id = 1),
                pg_snapshot_xmin(pg_current_snapshot())::text::bigint, p.xid, p.seq
           FROM _diffsync_pruned p WHERE p.id = 1",
        &[],
    )?;
    Ok((row.get(0), row.get(1), (row.get(2), row.get(3))))
}

/// The log row at a position, as text to compare.
fn row_at(client: &mut Client, (xid, seq): (i64, i64)) -> std::result::Result<Option<String>, postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT model_type || ' ' || ids::text || ' ' || op FROM _diffsync_changes WHERE xid = $1 AND seq = $2",
            &[&xid, &seq],
        )?
        .map(|r| r.get(0)))
}

impl PostgresFeed {
    /// Sleeps until a notification comes or `wait` passes, then takes
    /// every notification pending (one read covers them all).
    fn wait_for_notification(&mut self, wait: std::time::Duration) -> std::result::Result<(), postgres::Error> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut notifications = self.client.notifications();
        if notifications.timeout_iter(wait).next()?.is_some() {
            while notifications.iter().next()?.is_some() {}
        }
        Ok(())
    }

    fn read(&mut self, max: usize) -> std::result::Result<FeedBatch, postgres::Error> {
        let mut batch = FeedBatch::default();
        // Any discontinuity after the cursor is a gap: a log of another
        // generation (dropped and created again), transaction ids that went
        // back (a cluster restored from a backup), the row at the cursor
        // gone or changed while not pruned (pruned or rewritten by someone
        // else). Sequence numbers have holes (rolled-back transactions), so
        // a hole says nothing.
        let (generation, xmin, pruned) = log_state(&mut self.client)?;
        // The cursor's transaction had not committed yet: ids went back.
        let went_back = xmin <= self.cursor.returned.0;
        let client = &mut self.client;
        batch.gap = self
            .cursor
            .check(generation, went_back, (xmin - 1, i64::MAX), pruned, |at| {
                row_at(client, at)
            })?;
        let rows = self.client.query(
            "SELECT xid, seq, model_type, ids::text, op, origin FROM _diffsync_changes
             WHERE (xid, seq) > ($1, $2) AND xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
             ORDER BY xid, seq LIMIT $3",
            &[&self.cursor.returned.0, &self.cursor.returned.1, &(max as i64)],
        )?;
        for row in rows {
            let (model_type, ids, op, origin): (String, String, String, Option<String>) =
                (row.get(2), row.get(3), row.get(4), row.get(5));
            self.cursor.advance((row.get(0), row.get(1)), &model_type, &ids, &op);
            batch.events.push(sql::log_event(model_type, &ids, &op, origin));
        }
        if batch.gap && batch.events.is_empty() {
            self.cursor.reanchor(row_at(&mut self.client, self.cursor.returned)?);
        }
        Ok(batch)
    }
}

impl ChangeFeed for PostgresFeed {
    fn poll(&mut self, max: usize, wait: std::time::Duration) -> std::result::Result<FeedBatch, diffsync::BoxError> {
        let deadline = std::time::Instant::now() + wait;
        // A server that restarted dropped the connection and its LISTEN (the
        // last poll failed on it; no round trip is spent to ask): the log is
        // read from the cursor all the same (a log restored from a backup is
        // a gap, as ever).
        if alive(&mut self.client, &self.params, false)? {
            self.client
                .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
                .map_err(|e| backend(&self.origin, e))?;
        }
        loop {
            let batch = self.read(max).map_err(|e| backend(&self.origin, e))?;
            let now = std::time::Instant::now();
            if batch.gap || !batch.events.is_empty() || now >= deadline {
                return Ok(batch);
            }
            // Rows a notification announces may still wait behind an older
            // running transaction: the caller's next poll reads them.
            self.wait_for_notification(deadline - now)
                .map_err(|e| backend(&self.origin, e))?;
        }
    }

    fn position(&self) -> Option<Position> {
        let (xid, seq) = self.cursor.returned;
        Some(Position::new(format!("{xid}:{seq}")))
    }

    fn commit_at(&mut self, position: &Position) -> std::result::Result<(), diffsync::BoxError> {
        let (xid, seq): (i64, i64) = AdapterError::position(&self.origin, position, |p| {
            let (x, s) = p.split_once(':')?;
            Some((x.parse().ok()?, s.parse().ok()?))
        })?;
        let mut tx = self.client.transaction().map_err(|e| backend(&self.origin, e))?;
        tx.execute(
            "INSERT INTO _diffsync_cursor (consumer, xid, seq, generation) VALUES ($1, $2, $3, $4)
             ON CONFLICT (consumer) DO UPDATE SET xid = excluded.xid, seq = excluded.seq, generation = excluded.generation",
            &[&self.consumer, &xid, &seq, &self.cursor.generation],
        )
        .and_then(|_| {
            tx.batch_execute(
                "UPDATE _diffsync_pruned p SET xid = c.xid, seq = c.seq
                   FROM (SELECT xid, seq FROM _diffsync_cursor ORDER BY xid, seq LIMIT 1) c
                  WHERE p.id = 1 AND (c.xid, c.seq) > (p.xid, p.seq);
                 DELETE FROM _diffsync_changes WHERE (xid, seq) <= (SELECT xid, seq FROM _diffsync_pruned WHERE id = 1);",
            )
        })
        .and_then(|()| tx.commit())
        .map_err(|e| backend(&self.origin, e))?;
        Ok(())
    }
}
