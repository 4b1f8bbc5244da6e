//! SQL shared by the SQLite and PostgreSQL adapters: a table per model type
//! with a column per identifier and attribute (and `_parent` for child
//! types), statements, and value conversions by the schema's value kinds.

use diffsync::{Action, AttrChange, Change, FieldDef, LocalStore, ModelSchema, ValueKind};
use serde_json::{Map, Value};

use crate::error::{AdapterError, Result};
use crate::registry::{PARENT_KEY, Registry};

/// A value on its way to or from a database.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
}

/// What differs between SQL dialects.
pub(crate) struct Dialect {
    /// The n-th (1-based) parameter placeholder.
    pub(crate) placeholder: fn(usize) -> String,
    /// The column type of a value kind.
    pub(crate) column_type: fn(ValueKind) -> &'static str,
    /// Column giving insertion order, and its definition if it must be added.
    pub(crate) order_column: &'static str,
    pub(crate) order_column_def: Option<&'static str>,
    /// Equality that holds for two NULLs (`IS`, `IS NOT DISTINCT FROM`).
    pub(crate) same: &'static str,
    /// What makes text compare bytewise, as SQLite's BINARY does (so both
    /// engines order keys alike): PostgreSQL's `COLLATE "C"`.
    pub(crate) bytewise: &'static str,
    /// A row's hash, of these (quoted) columns of these kinds: the first
    /// 64 bits of the MD5 of the row's canonical text ([`row_text`]), in a
    /// form [`halves`](Dialect::halves) reads (PostgreSQL: `md5`'s hex
    /// digits; SQLite: an integer, from a function the range diff
    /// registers).
    pub(crate) row_hash: fn(&[(String, ValueKind)]) -> String,
    /// A row hash's high and low 32 bits, as non-negative integers (the
    /// same numbers in every engine).
    pub(crate) halves: fn(&str) -> [String; 2],
    /// A sum of integers read back as a 64-bit integer.
    pub(crate) sum: fn(&str) -> String,
    /// What keeps a subquery from being merged into the query around it
    /// (which would compute a row's hash once per use of it).
    pub(crate) fence: &'static str,
}

/// A row's canonical text, as SQL: each column's value as text,
/// length-prefixed (`NULL`: `-`), joined by `|`; a boolean is `1` or `0`,
/// a float its 64 bits in hex (zero for a negative zero), which both
/// engines print alike where their decimal texts differ (`1e-07`
/// against `0.0000001`).
/// What [`row_text`] makes of the values in Rust.
#[cfg(feature = "postgres")]
pub(crate) fn row_text_sql(columns: &[(String, ValueKind)]) -> String {
    columns
        .iter()
        .map(|(c, kind)| {
            let text = match kind {
                ValueKind::Bool => format!("CASE WHEN {c} IS NULL THEN NULL WHEN {c} THEN '1' ELSE '0' END"),
                ValueKind::Float => format!("encode(float8send({c} + 0.0::float8), 'hex')"),
                _ => format!("CAST({c} AS TEXT)"),
            };
            format!("coalesce(length({text}) || ':' || {text}, '-')")
        })
        .collect::<Vec<_>>()
        .join(" || '|' || ")
}

/// A row's 64-bit hash from its values (identifiers and attributes, in
/// column order): the first 8 bytes, big-endian, of the MD5 of its
/// canonical text, as the SQLite function and PostgreSQL's `md5` give it.
pub(crate) fn row_hash(values: &[SqlValue]) -> i64 {
    use md5::Digest;
    let texts = values.iter().map(|v| match v {
        SqlValue::Null => TextOf::Null,
        SqlValue::Int(i) => TextOf::Int(*i),
        SqlValue::Bool(b) => TextOf::Int(i64::from(*b)),
        SqlValue::Real(f) => TextOf::Real(*f),
        SqlValue::Text(t) => TextOf::Text(t),
    });
    let (mut out, mut scratch) = (String::new(), String::new());
    row_text(texts, &mut out, &mut scratch);
    let digest = md5::Md5::digest(out.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// One value of a row's canonical text, as it comes out of SQLite.
pub(crate) enum TextOf<'a> {
    /// `NULL`.
    Null,
    /// An integer (a boolean is one in SQLite), in decimal.
    Int(i64),
    /// A real, by its bits (matched across engines).
    Real(f64),
    /// Text as it is.
    Text(&'a str),
}

/// Writes a row's canonical text from its values into `out` (cleared
/// first): what [`row_text_sql`] makes PostgreSQL compute.
pub(crate) fn row_text<'a>(values: impl Iterator<Item = TextOf<'a>>, out: &mut String, scratch: &mut String) {
    use std::fmt::Write;
    out.clear();
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push('|');
        }
        let text = match v {
            TextOf::Null => {
                out.push('-');
                continue;
            }
            TextOf::Text(t) => t,
            TextOf::Int(n) => {
                scratch.clear();
                push_decimal(scratch, n.unsigned_abs(), n < 0);
                scratch.as_str()
            }
            TextOf::Real(f) => {
                scratch.clear();
                // Its bits, as PostgreSQL's `float8send` gives them (a
                // negative zero as zero): both engines say the same.
                let _ = write!(scratch, "{:016x}", (f + 0.0).to_bits());
                scratch.as_str()
            }
        };
        let chars = if text.is_ascii() {
            text.len()
        } else {
            text.chars().count()
        };
        push_decimal(out, chars as u64, false);
        out.push(':');
        out.push_str(text);
    }
}

/// `n` in decimal (after a minus sign when `negative`), without the
/// formatting machinery: a row's hash writes several per row.
fn push_decimal(out: &mut String, mut n: u64, negative: bool) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        out.push('-');
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// A row that no longer holds the values the change was computed from:
/// someone wrote it since it was read. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[error(
    "the row changed in the database since it was read (expected {expected} row with the old values, found {found}); reload and diff again"
)]
pub(crate) struct Stale {
    pub(crate) expected: u64,
    pub(crate) found: u64,
}

pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// One model type's table.
pub(crate) struct Table {
    /// The database file or server the table is in.
    pub(crate) location: String,
    pub(crate) model_type: String,
    pub(crate) name: String,
    pub(crate) columns: Vec<FieldDef>,
    pub(crate) n_ids: usize,
    pub(crate) has_parent: bool,
}

impl Table {
    pub(crate) fn new(location: &str, schema: &ModelSchema, has_parent: bool) -> Table {
        Table {
            location: location.to_string(),
            model_type: schema.name.to_string(),
            name: quote(&schema.name),
            columns: schema
                .identifiers
                .iter()
                .chain(schema.attributes.iter())
                .cloned()
                .collect(),
            n_ids: schema.identifiers.len(),
            has_parent,
        }
    }

    /// The identifier columns in key order, text compared bytewise.
    pub(crate) fn key_order(&self, d: &Dialect) -> String {
        (0..self.n_ids)
            .map(|i| self.key_column(d, i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `i`-th identifier column as keys are ordered by it (text
    /// compared bytewise).
    pub(crate) fn key_column(&self, d: &Dialect, i: usize) -> String {
        let c = &self.columns[i];
        let text = !matches!(c.kind, ValueKind::Integer | ValueKind::Float | ValueKind::Bool);
        format!("{}{}", quote(&c.name), if text { d.bytewise } else { "" })
    }

    pub(crate) fn origin(&self) -> String {
        format!("{}: table {} (model {})", self.location, self.name, self.model_type)
    }

    /// Expected column names, `_parent` last.
    pub(crate) fn column_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.columns.iter().map(|c| c.name.as_ref()).collect();
        if self.has_parent {
            v.push(PARENT_KEY);
        }
        v
    }

    pub(crate) fn create(&self, d: &Dialect) -> String {
        let mut cols: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let null = if c.optional { "" } else { " NOT NULL" };
                // Identifier text compares bytewise, so the key's index
                // serves the range diff's ordered reads in every engine.
                let text_key = i < self.n_ids && (d.column_type)(c.kind) == "TEXT";
                let collate = if text_key { d.bytewise } else { "" };
                format!("{} {}{collate}{null}", quote(&c.name), (d.column_type)(c.kind))
            })
            .collect();
        if self.has_parent {
            cols.push(format!("{} TEXT", quote(PARENT_KEY)));
        }
        if let Some(def) = d.order_column_def {
            cols.push(def.to_string());
        }
        let pk: Vec<String> = self.columns[..self.n_ids].iter().map(|c| quote(&c.name)).collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            self.name,
            cols.join(", "),
            pk.join(", ")
        )
    }

    pub(crate) fn select(&self, d: &Dialect) -> String {
        let cols: Vec<String> = self.column_names().iter().map(|c| quote(c)).collect();
        format!(
            "SELECT {} FROM {} ORDER BY {}",
            cols.join(", "),
            self.name,
            d.order_column
        )
    }

    /// The row of one model, by its identifiers.
    pub(crate) fn select_one(&self, d: &Dialect) -> String {
        let cols: Vec<String> = self.column_names().iter().map(|c| quote(c)).collect();
        format!(
            "SELECT {} FROM {} WHERE {}",
            cols.join(", "),
            self.name,
            self.where_ids(d, 1)
        )
    }

    pub(crate) fn insert(&self, d: &Dialect, rows: usize) -> String {
        let names = self.column_names();
        let width = names.len();
        let cols: Vec<String> = names.iter().map(|c| quote(c)).collect();
        let values: Vec<String> = (0..rows)
            .map(|r| {
                let ps: Vec<String> = (1..=width).map(|i| (d.placeholder)(r * width + i)).collect();
                format!("({})", ps.join(", "))
            })
            .collect();
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.name,
            cols.join(", "),
            values.join(", ")
        )
    }

    fn where_ids(&self, d: &Dialect, first: usize) -> String {
        let conds: Vec<String> = self.columns[..self.n_ids]
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = {}", quote(&c.name), (d.placeholder)(first + i)))
            .collect();
        conds.join(" AND ")
    }

    /// Sets `set`, where the identifiers match and each of `old` still
    /// holds its old value (parameters: new values, identifiers, old values).
    pub(crate) fn update(&self, d: &Dialect, set: &[&str], old: &[&str]) -> String {
        let sets: Vec<String> = set
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = {}", quote(c), (d.placeholder)(i + 1)))
            .collect();
        let first_old = set.len() + self.n_ids + 1;
        let olds: String = old
            .iter()
            .enumerate()
            .map(|(i, c)| format!(" AND {} {} {}", quote(c), d.same, (d.placeholder)(first_old + i)))
            .collect();
        format!(
            "UPDATE {} SET {} WHERE {}{olds}",
            self.name,
            sets.join(", "),
            self.where_ids(d, set.len() + 1)
        )
    }

    pub(crate) fn delete(&self, d: &Dialect) -> String {
        format!("DELETE FROM {} WHERE {}", self.name, self.where_ids(d, 1))
    }

    /// Unlinks the rows whose parent is the one parameter (a removed
    /// parent's children stay, parentless, as in the store).
    pub(crate) fn unlink(&self, d: &Dialect) -> String {
        let parent = quote(PARENT_KEY);
        format!(
            "UPDATE {} SET {parent} = NULL WHERE {parent} = {}",
            self.name,
            (d.placeholder)(1)
        )
    }

    fn kind_of(&self, column: &str) -> (ValueKind, bool) {
        self.columns
            .iter()
            .find(|c| c.name == column)
            .map_or((ValueKind::Any, true), |c| (c.kind, c.optional))
    }

    /// The row of a model record (`_parent` from `parent`).
    pub(crate) fn row(&self, record: &Map<String, Value>, parent: Option<&str>, key: &str) -> Result<Vec<SqlValue>> {
        let mut row = Vec::with_capacity(self.columns.len() + 1);
        for c in &self.columns {
            let v = record.get(c.name.as_ref()).unwrap_or(&Value::Null);
            row.push(self.to_sql(c.name.as_ref(), v, key)?);
        }
        if self.has_parent {
            row.push(parent.map_or(SqlValue::Null, |p| SqlValue::Text(p.to_string())));
        }
        Ok(row)
    }

    pub(crate) fn to_sql(&self, column: &str, v: &Value, key: &str) -> Result<SqlValue> {
        let (kind, _) = self.kind_of(column);
        let bad = || AdapterError::Model {
            origin: self.origin(),
            model_type: self.model_type.clone(),
            key: key.to_string(),
            message: format!("field {column:?}: {v} is not a {kind:?}"),
        };
        Ok(match (kind, v) {
            (_, Value::Null) => SqlValue::Null,
            (ValueKind::String, Value::String(s)) => SqlValue::Text(s.clone()),
            (ValueKind::Integer, Value::Number(n)) => SqlValue::Int(n.as_i64().ok_or_else(bad)?),
            (ValueKind::Float, Value::Number(n)) => SqlValue::Real(n.as_f64().ok_or_else(bad)?),
            (ValueKind::Bool, Value::Bool(b)) => SqlValue::Bool(*b),
            (ValueKind::List | ValueKind::Map | ValueKind::Any, v) => SqlValue::Text(v.to_string()),
            _ => return Err(bad()),
        })
    }

    /// A database value as JSON, checked against the column's kind.
    pub(crate) fn value_of(&self, column: &str, v: SqlValue, key: &str) -> Result<Value> {
        if column == PARENT_KEY {
            return Ok(match v {
                SqlValue::Text(s) => Value::String(s),
                _ => Value::Null,
            });
        }
        let (kind, _) = self.kind_of(column);
        let bad = |got: &SqlValue| AdapterError::Model {
            origin: self.origin(),
            model_type: self.model_type.clone(),
            key: key.to_string(),
            message: format!("column {column:?} holds {got:?}, expected {kind:?}"),
        };
        Ok(match (kind, v) {
            (_, SqlValue::Null) => Value::Null,
            (ValueKind::String, SqlValue::Text(s)) => Value::String(s),
            (ValueKind::Integer, SqlValue::Int(i)) => Value::from(i),
            (ValueKind::Float, SqlValue::Real(f)) => Value::from(f),
            (ValueKind::Float, SqlValue::Int(i)) => Value::from(i as f64),
            (ValueKind::Bool, SqlValue::Bool(b)) => Value::Bool(b),
            (ValueKind::Bool, SqlValue::Int(i)) if i == 0 || i == 1 => Value::Bool(i == 1),
            (ValueKind::List | ValueKind::Map | ValueKind::Any, SqlValue::Text(s)) => {
                serde_json::from_str(&s).map_err(|_| bad(&SqlValue::Text(s)))?
            }
            (_, other) => return Err(bad(&other)),
        })
    }

    /// A record from a row in `column_names()` order.
    pub(crate) fn record(&self, row: Vec<SqlValue>) -> Result<Map<String, Value>> {
        let names = self.column_names();
        let shown = |v: &SqlValue| match v {
            SqlValue::Text(s) => s.clone(),
            SqlValue::Int(i) => i.to_string(),
            SqlValue::Real(f) => f.to_string(),
            SqlValue::Bool(b) => b.to_string(),
            SqlValue::Null => "NULL".into(),
        };
        let key_guess = row[..self.n_ids]
            .iter()
            .map(shown)
            .collect::<Vec<_>>()
            .join(diffsync::model::ID_SEPARATOR);
        if let Some(i) = row[..self.n_ids]
            .iter()
            .zip(&self.columns)
            .position(|(v, def)| *v == SqlValue::Null && !def.optional)
        {
            return Err(AdapterError::Model {
                origin: self.origin(),
                model_type: self.model_type.clone(),
                key: key_guess,
                message: format!("identifier column {:?} is NULL", names[i]),
            });
        }
        let mut out = Map::new();
        for (name, v) in names.into_iter().zip(row) {
            out.insert(name.to_string(), self.value_of(name, v, &key_guess)?);
        }
        Ok(out)
    }

    /// Checks that the table has every expected column.
    pub(crate) fn check_columns(&self, found: &[String]) -> Result<()> {
        for c in self.column_names() {
            if !found.iter().any(|f| f == c) {
                return Err(AdapterError::Format {
                    origin: self.origin(),
                    message: format!("missing column {c:?} for field {c:?} of model {}", self.model_type),
                });
            }
        }
        Ok(())
    }
}

/// The columns that keep a row's hash, as [`Dialect::halves`] gives it:
/// its high and low 32 bits.
pub(crate) const HASH_COLUMNS: [&str; 2] = ["_hash_hi", "_hash_lo"];

/// Tables for every registered type, in load order.
pub(crate) fn tables(location: &str, reg: &Registry) -> Result<Vec<Table>> {
    reg.load_order()
        .into_iter()
        .map(|t| Ok(Table::new(location, reg.schema(t)?, reg.parent_type(t).is_some())))
        .collect()
}

pub(crate) fn table<'a>(tables: &'a [Table], model_type: &str) -> Result<&'a Table> {
    tables
        .iter()
        .find(|t| t.model_type == model_type)
        .ok_or_else(|| AdapterError::UnknownModelType {
            model_type: model_type.to_string(),
            known: tables
                .iter()
                .map(|t| t.model_type.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// One statement to run for a change.
pub(crate) struct Statement {
    pub(crate) sql: String,
    pub(crate) params: Vec<SqlValue>,
    /// Rows it must touch, else the change is [`Stale`].
    pub(crate) expect_rows: Option<u64>,
}

impl Statement {
    fn new(sql: String, params: Vec<SqlValue>) -> Statement {
        Statement {
            sql,
            params,
            expect_rows: None,
        }
    }

    /// Checks the rows a statement touched.
    pub(crate) fn check(&self, touched: u64) -> std::result::Result<(), Stale> {
        match self.expect_rows {
            Some(expected) if expected != touched => Err(Stale {
                expected,
                found: touched,
            }),
            _ => Ok(()),
        }
    }
}

/// The statements that apply one change: an insert, an update, or a delete
/// (with its descendants still in the store when the delete removes its
/// subtree, `SKIP_CHILDREN_ON_DELETE`: those are not in the batch). Other
/// children have deletes of their own, and one that fails keeps its row.
pub(crate) fn statements(
    d: &Dialect,
    tables: &[Table],
    reg: &Registry,
    store: &LocalStore,
    change: &Change<'_>,
) -> Result<Vec<Statement>> {
    let t = table(tables, change.model_type())?;
    let ids = |ids: &diffsync::Attrs, key: &str| -> Result<Vec<SqlValue>> {
        t.columns[..t.n_ids]
            .iter()
            .map(|c| t.to_sql(&c.name, ids.get(c.name.as_ref()).unwrap_or(&Value::Null), key))
            .collect()
    };
    Ok(match change.action {
        Action::Create => {
            let model = change.new_model().ok_or_else(|| AdapterError::Format {
                origin: t.origin(),
                message: format!("create of {:?} carries no model", change.key()),
            })?;
            let record = reg.to_value(model)?;
            vec![Statement::new(
                t.insert(d, 1),
                t.row(&record, change.parent_element().map(|p| p.unique_id()), change.key())?,
            )]
        }
        Action::Update => {
            // Expected old values (the diff's): an edit made since the read
            // is not overwritten, the change fails instead.
            let set: Vec<&str> = change.attrs().keys().map(|k| k.as_ref()).collect();
            let old: Vec<&AttrChange> = change
                .element
                .changes
                .iter()
                .filter(|c| change.attrs().contains_key(&c.name) && t.columns.iter().any(|col| col.name == c.name))
                .collect();
            let mut params = Vec::with_capacity(set.len() + t.n_ids + old.len());
            for (k, v) in change.attrs() {
                params.push(t.to_sql(k, v, change.key())?);
            }
            params.extend(ids(&change.identifiers(), change.key())?);
            for c in &old {
                params.push(t.to_sql(&c.name, &c.old, change.key())?);
            }
            let old_names: Vec<&str> = old.iter().map(|c| c.name.as_ref()).collect();
            vec![Statement {
                sql: t.update(d, &set, &old_names),
                params,
                expect_rows: Some(1),
            }]
        }
        Action::Delete => {
            let mut out = vec![Statement::new(t.delete(d), ids(&change.identifiers(), change.key())?)];
            if change.removes_subtree() {
                descendant_deletes(d, tables, store, &change.model_key(), &mut out)?;
            } else if let Some(schema) = store.schema(change.model_type()) {
                // Children whose own delete does not apply must not point at a missing row.
                for ct in schema.children.iter() {
                    out.push(Statement::new(
                        table(tables, ct)?.unlink(d),
                        vec![SqlValue::Text(change.key().to_string())],
                    ));
                }
            }
            out
        }
        _ => Vec::new(),
    })
}

fn descendant_deletes(
    d: &Dialect,
    tables: &[Table],
    store: &LocalStore,
    key: &diffsync::ModelKey,
    out: &mut Vec<Statement>,
) -> Result<()> {
    let Some(schema) = store.schema(key.model_type()) else {
        return Ok(());
    };
    let children: Vec<String> = schema.children.iter().map(|c| c.to_string()).collect();
    for ct in children {
        let Ok(keys) = store.children_dyn(key, &ct) else {
            continue;
        };
        let ctable = table(tables, &ct)?;
        for k in keys {
            let ids = store.get_dyn(&k)?.identifiers();
            let params = ctable.columns[..ctable.n_ids]
                .iter()
                .map(|c| ctable.to_sql(&c.name, ids.get(c.name.as_ref()).unwrap_or(&Value::Null), k.unique_id()))
                .collect::<Result<Vec<_>>>()?;
            out.push(Statement::new(ctable.delete(d), params));
            descendant_deletes(d, tables, store, &k, out)?;
        }
    }
    Ok(())
}

/// One row of a change log kept by triggers (SQLite or PostgreSQL) as an
/// event: `ids` is the JSON array of identifier values, `op` the operation.
pub(crate) fn log_event(
    model_type: String,
    ids: &str,
    op: &str,
    origin: Option<String>,
) -> diffsync::feed::ChangeEvent {
    use diffsync::feed::ChangeKind;
    let values: Vec<Value> = serde_json::from_str(ids).unwrap_or_default();
    diffsync::feed::ChangeEvent {
        kind: match op {
            "created" => ChangeKind::Created,
            "deleted" => ChangeKind::Deleted,
            _ => ChangeKind::Updated,
        },
        key: diffsync::ModelKey::new(model_type, values.iter().map(diffsync::KeyValue::from)),
        parent: None,
        origin,
    }
}

/// Reads the changed models' rows again, by identifiers, into `store`
/// ([`registry::reread`](crate::registry::reread)); `fetch` runs
/// [`Table::select_one`] with the identifier parameters. False when a
/// model moved: the caller reads everything again.
pub(crate) fn reread(
    tables: &[Table],
    reg: &Registry,
    store: &mut LocalStore,
    changed: &[diffsync::feed::ChangeEvent],
    origin: &str,
    mut fetch: impl FnMut(&Table, &[SqlValue]) -> Result<Option<Vec<SqlValue>>>,
) -> Result<bool> {
    crate::registry::reread(reg, store, changed, origin, |_, e| {
        let t = table(tables, e.model_type())?;
        // The row is read by the key's identifier values, in column order.
        let values = e.key.values();
        if values.len() != t.n_ids {
            return Ok(None);
        }
        let params = t.columns[..t.n_ids]
            .iter()
            .zip(values)
            .map(|(c, v)| t.to_sql(&c.name, &v.to_value(), e.key.unique_id()))
            .collect::<Result<Vec<_>>>()?;
        fetch(t, &params)?.map(|row| t.record(row)).transpose()
    })
}

/// A trigger's expression of a row's identifier values as a JSON array
/// (`row` is `NEW` or `OLD`; `array` the engine's JSON array function).
pub(crate) fn ids_array(t: &Table, row: &str, array: &str) -> String {
    let cols: Vec<String> = t.columns[..t.n_ids]
        .iter()
        .map(|c| format!("{row}.{}", quote(&c.name)))
        .collect();
    format!("{array}({})", cols.join(", "))
}

/// How a dialect makes the change feed: its tables, each model table's
/// triggers, and the statements that keep or start the log's generation.
pub(crate) struct FeedDdl {
    pub(crate) tables: &'static str,
    pub(crate) triggers: fn(&Table) -> String,
    /// Keeps the generation of a log that existed (makes one if missing).
    pub(crate) keep_generation: &'static str,
    /// Starts a new generation (a log created now: a consumer of an older
    /// one, dropped and created again, reads a gap) and clears the pruned mark.
    pub(crate) new_generation: &'static str,
}

impl FeedDdl {
    /// The statements enabling the feed on `tables`, the log having
    /// `existed` before or not.
    pub(crate) fn statements(&self, tables: &[Table], existed: bool) -> String {
        let mut ddl = String::from(self.tables);
        for t in tables {
            ddl.push_str(&(self.triggers)(t));
        }
        ddl.push_str(if existed {
            self.keep_generation
        } else {
            self.new_generation
        });
        ddl
    }
}

/// What the code both SQL adapters share asks of a connection (SQLite's or
/// PostgreSQL's): reading a table's rows by the table's column kinds, and
/// keeping a base's bytes. Errors name the table (or `origin`).
pub(crate) trait Engine {
    /// The names of `t`'s columns, as the database has them.
    fn column_names(&mut self, t: &Table) -> Result<Vec<String>>;
    /// Every row of `t` (its [`Table::select`]), to `each`.
    fn each_row(&mut self, t: &Table, each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>) -> Result<()>;
    /// The row of `t` with these identifier values ([`Table::select_one`]).
    fn one_row(&mut self, t: &Table, ids: &[SqlValue]) -> Result<Option<Vec<SqlValue>>>;
    /// Whether `t` has the row hash columns ([`HASH_COLUMNS`]) and what
    /// keeps them current for every writer (a trigger): then a range's
    /// fingerprint reads them instead of hashing its rows. The default:
    /// an engine that keeps none.
    fn kept_hashes(&mut self, t: &Table) -> Result<bool> {
        let _ = t;
        Ok(false)
    }
    /// The bytes kept under `pair` in `_diffsync_base` (made if missing).
    fn base_body(&mut self, origin: &str, pair: &str) -> Result<Option<Vec<u8>>>;
    /// Keeps `body` under `pair` in `_diffsync_base`, in one statement (the
    /// old bytes or the new, never half).
    fn put_base(&mut self, origin: &str, pair: &str, body: &[u8]) -> Result<()>;
    /// Runs `sql` with `params`, handing each row's columns, read by
    /// `kinds` (one per column), to `each`.
    fn query(
        &mut self,
        origin: &str,
        sql: &str,
        params: &[SqlValue],
        kinds: &[ValueKind],
        each: &mut dyn FnMut(Vec<SqlValue>) -> Result<()>,
    ) -> Result<()>;
}

/// Loads every table into `store` (checking each table's columns first),
/// parents before children whatever the rows' order; returns the rows it
/// read past (orphans).
pub(crate) fn load_tables(
    engine: &mut impl Engine,
    tables: &[Table],
    reg: &Registry,
    store: &mut LocalStore,
) -> Result<Vec<AdapterError>> {
    let mut loader = crate::registry::FlatLoader::default();
    for t in tables {
        t.check_columns(&engine.column_names(t)?)?;
        let origin = t.origin();
        engine.each_row(t, &mut |values| {
            let record = t.record(values)?;
            loader.insert(reg, store, &t.model_type, record, &origin)
        })?;
    }
    loader.finish(reg, store)
}

/// Keeps a two-way base in the database, under `pair`.
pub(crate) fn save_base(
    engine: &mut impl Engine,
    origin: &str,
    pair: &str,
    base: &diffsync::bidir::Base,
) -> Result<()> {
    let body = base.to_bytes()?;
    engine.put_base(&format!("{origin}: _diffsync_base"), pair, &body)
}

/// The base kept under `pair`, or an empty one (the first run).
pub(crate) fn load_base(
    engine: &mut impl Engine,
    origin: &str,
    pair: &str,
    like: &LocalStore,
) -> Result<diffsync::bidir::Base> {
    let origin = format!("{origin}: _diffsync_base");
    Ok(match engine.base_body(&origin, pair)? {
        Some(body) => diffsync::bidir::Base::from_bytes(&body, like, &origin)?,
        None => diffsync::bidir::Base::new(),
    })
}

/// Where a consumer is in a change log (SQLite: a sequence number;
/// PostgreSQL: a transaction id and a sequence number), and what tells
/// it that events may have been lost: a log of another generation, a log
/// whose positions went back, a log pruned past the cursor, or the row at
/// the cursor gone or changed while not pruned.
pub(crate) struct LogCursor<P> {
    /// The position of the last event returned.
    pub(crate) returned: P,
    /// No cursor was persisted for this consumer (or one of another
    /// generation of the log): the next read is a gap.
    fresh: bool,
    /// The log's generation, as this consumer knows it.
    pub(crate) generation: Option<String>,
    /// The row at `returned` as this consumer read it (`None`: not there).
    anchor: Option<String>,
}

impl<P: Copy + Ord + Default> LogCursor<P> {
    /// A consumer's cursor as it was saved (position and generation;
    /// `None`: never), against a log of `generation` pruned up to
    /// `pruned`, whose row at the saved position now reads `anchor`.
    pub(crate) fn open(
        saved: Option<(P, Option<String>)>,
        generation: Option<String>,
        anchor: Option<String>,
        pruned: P,
    ) -> Self {
        let returned = saved.as_ref().map_or_else(P::default, |s| s.0);
        // A cursor of another generation of the log says nothing of this one.
        let other_generation = saved
            .as_ref()
            .is_some_and(|s| s.1.as_ref().is_some_and(|g| Some(g) != generation.as_ref()));
        LogCursor {
            returned,
            // The row at the cursor went while not pruned: someone else deleted it.
            fresh: saved.is_none() || other_generation || (anchor.is_none() && returned > pruned),
            generation,
            anchor,
        }
    }

    /// Checks the log before a read: its generation (`restart`: where a
    /// new or rolled-back log is read from), whether its positions went
    /// back (`went_back`), and how far it was pruned. Returns whether
    /// events may have been lost.
    pub(crate) fn check<E>(
        &mut self,
        generation: Option<String>,
        went_back: bool,
        restart: P,
        pruned: P,
        row_at: impl FnOnce(P) -> Result<Option<String>, E>,
    ) -> Result<bool, E> {
        let mut gap = false;
        if generation != self.generation {
            gap = true;
            self.generation = generation;
            self.returned = restart;
        } else if went_back {
            gap = true;
            self.returned = restart;
        }
        if std::mem::take(&mut self.fresh) || pruned > self.returned {
            gap = true;
            self.returned = self.returned.max(pruned);
        } else if !gap && self.returned > pruned && row_at(self.returned)? != self.anchor {
            gap = true;
        }
        Ok(gap)
    }

    /// The event at `at` (a row reading `model_type ids op`) was returned.
    pub(crate) fn advance(&mut self, at: P, model_type: &str, ids: &str, op: &str) {
        self.returned = at;
        self.anchor = Some(format!("{model_type} {ids} {op}"));
    }

    /// After a gap: remember the row at the cursor as it reads now.
    pub(crate) fn reanchor(&mut self, anchor: Option<String>) {
        self.anchor = anchor;
    }
}
