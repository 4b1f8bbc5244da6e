//! Nested documents (JSON, YAML, TOML): `{type: [record, ...]}` at the top,
//! and in each record `{child_type: [record, ...]}` for its children.
//!
//! Loading is strict: a duplicate key, an unknown type or field (a typo in
//! a child list's name is one), a child type at the top level, a record
//! without an identifier, or a child whose link to its parent contradicts
//! its nesting is an error naming the file, line, model, key and field, and
//! nothing is loaded. Errors found after parsing are located by parsing the
//! text once more down to the offending record or field, so the common path
//! pays nothing for line numbers.

use std::fmt;

use diffsync::model::AnyModel;
use diffsync::{LocalStore, ModelKey, ModelSchema};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{AdapterError, Result};
use crate::files::Format;
use crate::registry::Registry;

/// Parses a document, refusing duplicate keys in any map.
pub(crate) fn parse(text: &str, format: Format, path: &str) -> Result<Value> {
    let parsed = match format {
        Format::Json => serde_json::from_str::<Strict>(text).map_err(|e| json_error(path, e)),
        Format::Yaml => serde_saphyr::from_str::<Strict>(text).map_err(|e| yaml_error(path, e)),
        Format::Toml => toml::from_str::<Strict>(text).map_err(|e| toml_error(path, text, e)),
        Format::Csv => Ok(Strict(Value::Null)),
    };
    parsed.map(|s| s.0)
}

pub(crate) fn json_error(path: &str, e: serde_json::Error) -> AdapterError {
    AdapterError::Parse {
        path: path.to_string(),
        line: e.line(),
        column: e.column(),
        // serde_json appends " at line L column C", which the error already shows.
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
    }
}

fn yaml_error(path: &str, e: serde_saphyr::Error) -> AdapterError {
    let (line, column) = e
        .location()
        .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
    // The parser's first line, without the place (given apart) and without
    // advice about its own options, which this adapter does not expose.
    let text = e.to_string();
    let mut message = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
    if let Some((place, rest)) = message.split_once(": ")
        && place.starts_with("line ")
    {
        message = rest;
    }
    let message = match message.strip_prefix("duplicate mapping key: ") {
        Some(key) => format!("duplicate key {:?}", key.split(", set ").next().unwrap_or(key)),
        None => message.to_string(),
    };
    AdapterError::Parse {
        path: path.to_string(),
        line,
        column,
        message,
    }
}

fn toml_error(path: &str, text: &str, e: toml::de::Error) -> AdapterError {
    let (line, column) = e.span().map_or((0, 0), |s| line_column(text, s.start));
    let message = match (e.message(), e.span().and_then(|s| text.get(s))) {
        ("duplicate key", Some(key)) => format!("duplicate key {:?}", key.trim()),
        (m, _) => m.to_string(),
    };
    AdapterError::Parse {
        path: path.to_string(),
        line,
        column,
        message,
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A JSON value read without accepting a key twice in one map.
struct Strict(Value);

impl<'de> de::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// A step from a value to one inside it.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// What is wrong, and where in the document.
struct Fault {
    at: Vec<Step>,
    model_type: String,
    /// The record's key; `None` for a fault in the layout (no record).
    key: Option<String>,
    message: String,
}

/// Loads a parsed document into `store` (nothing, on error).
pub(crate) fn load(
    reg: &Registry,
    store: &mut LocalStore,
    doc: Value,
    text: &str,
    format: Format,
    path: &str,
) -> Result<()> {
    let mut staged = store.clone();
    let mut loader = Loader {
        reg,
        store: &mut staged,
    };
    match loader.document(doc) {
        Ok(()) => {
            *store = staged;
            Ok(())
        }
        Err(f) => Err(locate(f, text, format, path)),
    }
}

struct Loader<'a> {
    reg: &'a Registry,
    store: &'a mut LocalStore,
}

impl Loader<'_> {
    fn document(&mut self, doc: Value) -> std::result::Result<(), Fault> {
        let fault = |at: Vec<Step>, model_type: &str, message: String| Fault {
            at,
            model_type: model_type.to_string(),
            key: None,
            message,
        };
        let Value::Object(top) = doc else {
            return Err(fault(
                vec![],
                "document",
                "the document must be a map of model type to list of records".into(),
            ));
        };
        for (model_type, records) in top {
            let at = vec![Step::Key(model_type.clone())];
            if let Err(e) = self.reg.schema(&model_type) {
                return Err(fault(at, &model_type, e.to_string()));
            }
            if let Some(parent) = self.reg.parent_type(&model_type) {
                return Err(fault(
                    at,
                    &model_type,
                    format!(
                        "{model_type} is a child type: nest its records under their {parent} (as \"{model_type}\": [...])"
                    ),
                ));
            }
            self.records(&model_type, records, None, at)?;
        }
        Ok(())
    }

    /// One list of records; `parent`: the model they are nested under.
    fn records(
        &mut self,
        model_type: &str,
        records: Value,
        parent: Option<&ModelKey>,
        at: Vec<Step>,
    ) -> std::result::Result<(), Fault> {
        let Value::Array(records) = records else {
            return Err(Fault {
                at,
                model_type: model_type.to_string(),
                key: None,
                message: format!("{model_type:?} must be a list of records"),
            });
        };
        for (i, record) in records.into_iter().enumerate() {
            let mut at = at.clone();
            at.push(Step::Index(i));
            self.record(model_type, record, parent, at)?;
        }
        Ok(())
    }

    fn record(
        &mut self,
        model_type: &str,
        record: Value,
        parent: Option<&ModelKey>,
        at: Vec<Step>,
    ) -> std::result::Result<(), Fault> {
        let schema = self.reg.schema(model_type).map_err(|e| Fault {
            at: at.clone(),
            model_type: model_type.to_string(),
            key: None,
            message: e.to_string(),
        })?;
        let Value::Object(mut fields) = record else {
            return Err(Fault {
                at,
                model_type: model_type.to_string(),
                key: None,
                message: format!("a {model_type} record must be a map"),
            });
        };
        let children: Vec<(String, Value)> = schema
            .children
            .iter()
            .filter_map(|c| fields.remove(c.as_ref()).map(|v| (c.to_string(), v)))
            .collect();
        let fault = |fields: &Map<String, Value>, field: Option<&str>, message: String| {
            let mut at = at.clone();
            if let Some(f) = field {
                at.push(Step::Key(f.to_string()));
            }
            Fault {
                at,
                model_type: model_type.to_string(),
                key: Some(shown_key(schema, fields)),
                message,
            }
        };
        if let Some(parent) = parent {
            let parent_model = self
                .store
                .get_dyn(parent)
                .map_err(|e| fault(&fields, None, e.to_string()))?;
            link_to_parent(schema, &mut fields, parent_model).map_err(|(f, m)| fault(&fields, Some(&f), m))?;
        }
        if let Some(id) = schema
            .identifiers
            .iter()
            .find(|f| !f.optional && fields.get(f.name.as_ref()).is_none_or(Value::is_null))
        {
            return Err(fault(&fields, None, format!("missing identifier {:?}", id.name)));
        }
        let model = self.reg.from_value(model_type, fields.clone(), "").map_err(|e| {
            // A field the type does not know beside one it misses is most
            // likely a typo of it: name the typo, where it is.
            match unknown_keys(schema, &fields).next() {
                Some(typo) => fault(
                    &fields,
                    Some(typo),
                    format!(
                        "unknown field {typo:?}; expected one of: {} ({})",
                        field_names(schema),
                        model_message(e)
                    ),
                ),
                None => fault(&fields, None, model_message(e)),
            }
        })?;
        if let Some(unknown) = unknown_field(self.reg, schema, &fields, &*model) {
            return Err(fault(
                &fields,
                Some(&unknown),
                format!("unknown field {unknown:?}; expected one of: {}", field_names(schema)),
            ));
        }
        let key = model.model_key();
        self.store.insert_boxed(model, parent).map_err(|e| {
            let message = match e {
                diffsync::StoreError::AlreadyExists { .. } => "a second record with the same identifiers".to_string(),
                e => e.to_string(),
            };
            fault(&fields, None, message)
        })?;
        for (child_type, list) in children {
            let mut at = at.clone();
            at.push(Step::Key(child_type.clone()));
            self.records(&child_type, list, Some(&key), at)?;
        }
        Ok(())
    }
}

/// The fields a record of this type may have (children as lists).
fn field_names(schema: &ModelSchema) -> String {
    schema
        .identifiers
        .iter()
        .chain(schema.attributes.iter())
        .map(|f| f.name.to_string())
        .chain(schema.children.iter().map(|c| format!("{c} (children)")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A record key the model does not know: neither a schema field nor a
/// serde field of the Rust type (a local-only field, say), which shows in
/// the model's own serialization.
pub(crate) fn unknown_field(
    reg: &Registry,
    schema: &ModelSchema,
    fields: &Map<String, Value>,
    model: &dyn AnyModel,
) -> Option<String> {
    let mut extra = unknown_keys(schema, fields).peekable();
    extra.peek()?;
    let own = reg.to_value(model).ok()?;
    extra.find(|k| !own.contains_key(k.as_str())).cloned()
}

/// Record keys that are neither a field of the schema nor a child list.
fn unknown_keys<'f>(schema: &ModelSchema, fields: &'f Map<String, Value>) -> impl Iterator<Item = &'f String> {
    let known = |k: &str| {
        schema
            .identifiers
            .iter()
            .chain(schema.attributes.iter())
            .any(|f| f.name == k)
            || schema.children.iter().any(|c| c == k)
    };
    fields.keys().filter(move |k| !known(k))
}

/// The serde message of a record that does not fit its type.
fn model_message(e: AdapterError) -> String {
    match e {
        AdapterError::Model { message, .. } => message,
        other => other.to_string(),
    }
}

/// A record's key for messages: its identifiers, `?` for a missing one.
pub(crate) fn shown_key(schema: &ModelSchema, fields: &Map<String, Value>) -> String {
    diffsync::readable_id_of(schema.identifiers.iter().map(|f| match fields.get(f.name.as_ref()) {
        None | Some(Value::Null) if !f.optional => Value::String("?".into()),
        Some(v) => v.clone(),
        None => Value::Null,
    }))
}

/// The identifiers of a child that name its parent: a field named after
/// the parent type (`device`, when the parent has one identifier) or
/// `<parent type>_<parent identifier>` (`device_name`). Each is filled
/// from the parent when absent; a value that names another parent is an
/// error `(field, message)`.
pub(crate) fn link_to_parent(
    schema: &ModelSchema,
    fields: &mut Map<String, Value>,
    parent: &dyn AnyModel,
) -> std::result::Result<(), (String, String)> {
    let pt = parent.model_type();
    let pids = parent.identifiers();
    for f in schema.identifiers.iter() {
        let wanted = if f.name == pt && pids.len() == 1 {
            pids.values().next()
        } else {
            f.name
                .strip_prefix(pt)
                .and_then(|rest| rest.strip_prefix('_'))
                .and_then(|pid| pids.get(pid))
        };
        let Some(wanted) = wanted else { continue };
        match fields.get(f.name.as_ref()) {
            None | Some(Value::Null) => {
                fields.insert(f.name.to_string(), wanted.clone());
            }
            Some(v) if v == wanted => {}
            Some(v) => {
                return Err((
                    f.name.to_string(),
                    format!(
                        "{:?} is {v}, but the record is nested under {pt} {:?}",
                        f.name,
                        parent.unique_id()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Turns a fault into an error with the line of the record or field: the
/// text is parsed once more, down the fault's path, and stopped there with
/// an error the parser places.
fn locate(f: Fault, text: &str, format: Format, path: &str) -> AdapterError {
    let seed = Find {
        at: &f.at,
        at_key: format == Format::Json,
    };
    let (line, column) = match format {
        Format::Json => {
            let mut d = serde_json::Deserializer::from_str(text);
            seed.deserialize(&mut d)
                .err()
                .map_or((0, 0), |e| (e.line(), e.column()))
        }
        Format::Yaml => serde_saphyr::with_deserializer_from_str(text, |d| seed.deserialize(d))
            .err()
            .and_then(|e| e.location())
            .map_or((0, 0), |l| (l.line() as usize, l.column() as usize)),
        Format::Toml => toml::de::Deserializer::parse(text)
            .and_then(|d| seed.deserialize(d))
            .err()
            .and_then(|e| e.span())
            .map_or((0, 0), |s| line_column(text, s.start)),
        Format::Csv => (0, 0),
    };
    match f.key {
        Some(key) => AdapterError::Record {
            path: path.to_string(),
            line,
            column,
            model_type: f.model_type,
            key,
            message: f.message,
        },
        None => AdapterError::Parse {
            path: path.to_string(),
            line,
            column,
            message: f.message,
        },
    }
}

/// Walks down a path and fails there (at a map's key, or at the start of
/// the value the path ends at); skips everything else.
#[derive(Clone, Copy)]
struct Find<'p> {
    at: &'p [Step],
    /// Fail right after a field's key (JSON places that exactly), else on
    /// its value (YAML and TOML place values, not keys).
    at_key: bool,
}

/// The error `Find` raises where it stops.
const HERE: &str = "here";

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let Some((Step::Key(want), rest)) = self.at.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        while let Some(key) = map.next_key::<String>()? {
            if key != *want {
                map.next_value::<IgnoredAny>()?;
            } else if rest.is_empty() && self.at_key {
                return Err(de::Error::custom(HERE));
            } else {
                map.next_value_seed(Find { at: rest, ..self })?;
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let Some((Step::Index(want), rest)) = self.at.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Find { at: rest, ..self })?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
        Err(E::custom(HERE))
    }
}

/// The store as a nested document (the inverse of [`load`]).
pub(crate) fn dump(reg: &Registry, store: &LocalStore) -> Result<Value> {
    let mut top = Map::new();
    for t in reg.top_level() {
        let mut list = Vec::new();
        for m in store.get_all_dyn(t) {
            list.push(Value::Object(dump_model(reg, store, m)?));
        }
        top.insert(t.to_string(), Value::Array(list));
    }
    Ok(Value::Object(top))
}

fn dump_model(reg: &Registry, store: &LocalStore, m: &dyn AnyModel) -> Result<Map<String, Value>> {
    let mut fields = reg.to_value(m)?;
    let key = m.model_key();
    for child_type in m.schema().children.iter() {
        let mut list = Vec::new();
        for k in store.children_dyn(&key, child_type)? {
            list.push(Value::Object(dump_model(reg, store, store.get_dyn(&k)?)?));
        }
        if !list.is_empty() {
            fields.insert(child_type.to_string(), Value::Array(list));
        }
    }
    Ok(fields)
}
