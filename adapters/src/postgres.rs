//! PostgreSQL: the same tables as the SQLite adapter, against a server.
//! Creates are written as multi-row INSERTs, the whole sync in one transaction.

use std::error::Error as StdError;

use bytes::BytesMut;
use diffsync::{Action, Adapter, Batch, HookError, LocalStore, ValueKind};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Transaction};

use crate::error::{AdapterError, Result};
use crate::registry::{self, Registry};
use crate::sql::{self, Dialect, SqlValue, Table};

const DIALECT: Dialect = Dialect {
    placeholder: |i| format!("${i}"),
    column_type: |k| match k {
        ValueKind::Integer => "BIGINT",
        ValueKind::Float => "DOUBLE PRECISION",
        ValueKind::Bool => "BOOLEAN",
        _ => "TEXT",
    },
    order_column: "\"_seq\"",
    order_column_def: Some("\"_seq\" BIGSERIAL"),
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

/// An adapter over a PostgreSQL database.
pub struct PostgresAdapter {
    name: String,
    client: Client,
    registry: Registry,
    tables: Vec<Table>,
    origin: String,
    /// The models, as loaded from (and kept in step with) the database.
    pub store: LocalStore,
}

impl PostgresAdapter {
    /// Connects (`params` as for `postgres::Client::connect`, e.g.
    /// `host=127.0.0.1 port=5432 user=app dbname=inventory`), creates missing
    /// tables and loads them.
    pub fn connect(name: &str, params: &str, registry: Registry) -> Result<Self> {
        let origin = address(params);
        let client = Client::connect(params, NoTls).map_err(|e| AdapterError::Unreachable {
            address: origin.clone(),
            message: e.to_string(),
        })?;
        let tables = sql::tables(&registry)?;
        let mut store = LocalStore::new(name);
        registry.register_all(&mut store)?;
        let mut a = PostgresAdapter {
            name: name.to_string(),
            client,
            registry,
            tables,
            origin,
            store,
        };
        for t in &a.tables {
            let ddl = t.create(&DIALECT);
            a.client
                .batch_execute(&ddl)
                .map_err(|e| backend(&format!("{}: {}", a.origin, t.origin()), e))?;
        }
        a.load_tables()?;
        Ok(a)
    }

    /// The client (to query the database, or run your own statements).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
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
            let origin = format!("{}: {}", self.origin, t.origin());
            let found: Vec<String> = self
                .client
                .query(
                    "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1",
                    &[&t.model_type],
                )
                .map_err(|e| backend(&origin, e))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            t.check_columns(&found)?;
            let rows = self
                .client
                .query(&t.select(&DIALECT), &[])
                .map_err(|e| backend(&origin, e))?;
            for row in rows {
                let mut values = Vec::with_capacity(row.len());
                for (i, name) in t.column_names().iter().enumerate() {
                    let kind = t
                        .columns
                        .iter()
                        .find(|c| c.name == *name)
                        .map_or(ValueKind::String, |c| c.kind);
                    let get = |e: postgres::Error| AdapterError::Model {
                        origin: origin.clone(),
                        model_type: t.model_type.clone(),
                        key: String::new(),
                        message: format!("column {name:?}: {e}"),
                    };
                    let v = match kind {
                        ValueKind::Integer => row.try_get::<_, Option<i64>>(i).map_err(get)?.map(SqlValue::Int),
                        ValueKind::Float => row.try_get::<_, Option<f64>>(i).map_err(get)?.map(SqlValue::Real),
                        ValueKind::Bool => row.try_get::<_, Option<bool>>(i).map_err(get)?.map(SqlValue::Bool),
                        _ => row.try_get::<_, Option<String>>(i).map_err(get)?.map(SqlValue::Text),
                    };
                    values.push(v.unwrap_or(SqlValue::Null));
                }
                let record = t.record(values)?;
                registry::insert_flat(&self.registry, &mut self.store, &t.model_type, record, &origin)?;
            }
        }
        Ok(())
    }
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

fn backend(origin: &str, e: postgres::Error) -> AdapterError {
    AdapterError::Backend {
        origin: origin.to_string(),
        message: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_string()),
    }
}

fn run(tx: &mut Transaction<'_>, stmts: &[sql::Statement]) -> std::result::Result<(), String> {
    for s in stmts {
        let params: Vec<&(dyn ToSql + Sync)> = s.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        tx.execute(s.sql.as_str(), &params).map_err(|e| {
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string())
        })?;
    }
    Ok(())
}

impl Adapter for PostgresAdapter {
    registry_adapter_basics!();

    /// One transaction. Without CONTINUE_ON_FAILURE, creates are grouped per
    /// model type into multi-row INSERTs (the tables have no foreign keys, so
    /// order across types does not matter inside the transaction) and any
    /// failure rolls everything back. With it, each change runs in its own
    /// savepoint. Changes count as applied only once the transaction commits.
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        let keep_going = batch.continue_on_failure();
        let mut tx = self.client.transaction()?;
        if keep_going {
            for i in 0..batch.len() {
                if !batch.should_apply(i) {
                    continue;
                }
                let r = match sql::statements(&DIALECT, &self.tables, &self.registry, &self.store, &batch.changes()[i])
                {
                    Err(e) => Err(e.to_string()),
                    Ok(stmts) => {
                        let mut sp = tx.transaction()?;
                        let r = run(&mut sp, &stmts);
                        if r.is_ok() {
                            sp.commit()?;
                        }
                        r
                    }
                };
                match r {
                    Ok(()) => batch.stage(i),
                    Err(e) => batch.set_outcome(i, Err(e.into())),
                }
            }
            tx.commit()?;
            batch.commit_staged();
            return Ok(());
        }
        // All or nothing: group creates by type, run the rest in order.
        let mut inserts: Vec<(usize, Vec<SqlValue>)> = Vec::new();
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
                inserts.extend(stmts.into_iter().map(|s| (t, s.params)));
            } else if let Err(e) = run(&mut tx, &stmts) {
                batch.set_outcome(i, Err(e.into()));
                return Err("transaction rolled back".into());
            }
            batch.stage(i);
        }
        for (ti, t) in self.tables.iter().enumerate() {
            let rows: Vec<&Vec<SqlValue>> = inserts.iter().filter(|(i, _)| *i == ti).map(|(_, r)| r).collect();
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let params: Vec<&(dyn ToSql + Sync)> = chunk
                    .iter()
                    .flat_map(|r| r.iter())
                    .map(|p| p as &(dyn ToSql + Sync))
                    .collect();
                tx.execute(t.insert(&DIALECT, chunk.len()).as_str(), &params)
                    .map_err(|e| {
                        let msg = e
                            .as_db_error()
                            .map_or_else(|| e.to_string(), |d| d.message().to_string());
                        format!("insert into {}: {msg}; transaction rolled back", t.origin())
                    })?;
            }
        }
        tx.commit()?;
        batch.commit_staged();
        Ok(())
    }
}
