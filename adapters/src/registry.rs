//! The model types an adapter handles, with their serde conversions, and the
//! nested-document layout that file and object-store adapters share.

use std::sync::Arc;

use diffsync::model::AnyModel;
use diffsync::{DiffModel, DynModel, LocalStore, ModelKey, ModelSchema, StaticModel};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{AdapterError, Result};

/// The key under which a child record names its parent's unique id in flat
/// layouts (CSV rows, SQL tables, per-model objects, Redis values).
pub const PARENT_KEY: &str = "_parent";

type ToValue = fn(&dyn AnyModel) -> Option<std::result::Result<Value, serde_json::Error>>;
type FromValue = fn(Value) -> std::result::Result<Box<dyn AnyModel>, serde_json::Error>;
type Register = fn(&mut LocalStore) -> Result<(), diffsync::StoreError>;

#[derive(Clone)]
struct Entry {
    schema: Arc<ModelSchema>,
    kind: Kind,
}

/// How a type's models are made and read.
#[derive(Clone)]
enum Kind {
    /// A derived Rust type, through serde.
    Derived {
        to_value: ToValue,
        from_value: FromValue,
        register: Register,
    },
    /// A type described at run time: [`DynModel`]s.
    Runtime,
}

fn to_value<T: StaticModel + Serialize>(m: &dyn AnyModel) -> Option<std::result::Result<Value, serde_json::Error>> {
    m.downcast_ref::<T>().map(serde_json::to_value)
}

fn from_value<T: StaticModel + DeserializeOwned>(
    v: Value,
) -> std::result::Result<Box<dyn AnyModel>, serde_json::Error> {
    Ok(Box::new(T::deserialize(v)?))
}

fn register<T: StaticModel>(store: &mut LocalStore) -> Result<(), diffsync::StoreError> {
    store.register::<T>()
}

/// The model types an adapter reads and writes: derived, serde-capable
/// Rust types ([`with`](Registry::with)), or types described at run time
/// ([`with_schema`](Registry::with_schema), read from a config file, say).
///
/// ```
/// use diffsync::DiffModel;
/// use diffsync_adapters::Registry;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
/// #[diffsync(name = "site")]
/// struct Site { #[diffsync(id)] name: String, region: String }
///
/// let registry = Registry::new().with::<Site>();
/// assert_eq!(registry.top_level(), ["site"]);
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<Entry>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a model type (parents before their children keeps load order simple).
    pub fn with<T: StaticModel + Serialize + DeserializeOwned>(mut self) -> Self {
        if !self.entries.iter().any(|e| e.schema.name == T::NAME) {
            self.entries.push(Entry {
                schema: Arc::new(T::static_schema().clone()),
                kind: Kind::Derived {
                    to_value: to_value::<T>,
                    from_value: from_value::<T>,
                    register: register::<T>,
                },
            });
        }
        self
    }

    /// Adds a type described at run time: its models are [`DynModel`]s,
    /// read and written as JSON objects of their fields. The schema is
    /// checked ([`ModelSchema::validate`]); a type of that name already
    /// registered stays.
    pub fn with_schema(mut self, schema: Arc<ModelSchema>) -> Result<Self> {
        schema.validate().map_err(diffsync::Error::from)?;
        if !self.entries.iter().any(|e| e.schema.name == schema.name) {
            self.entries.push(Entry {
                schema,
                kind: Kind::Runtime,
            });
        }
        Ok(self)
    }

    fn entry(&self, model_type: &str) -> Result<&Entry> {
        self.entries
            .iter()
            .find(|e| e.schema.name == model_type)
            .ok_or_else(|| AdapterError::UnknownModelType {
                model_type: model_type.to_string(),
                known: self.names().join(", "),
            })
    }

    /// Registered model type names, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.schema.name.as_ref()).collect()
    }

    /// The schemas, in registration order.
    pub fn schemas(&self) -> impl Iterator<Item = &ModelSchema> + '_ {
        self.entries.iter().map(|e| &*e.schema)
    }

    /// The schema of one type.
    pub fn schema(&self, model_type: &str) -> Result<&ModelSchema> {
        self.entry(model_type).map(|e| &*e.schema)
    }

    /// Types no registered type lists as a child, in registration order.
    pub fn top_level(&self) -> Vec<&str> {
        self.names()
            .into_iter()
            .filter(|n| self.parent_type(n).is_none())
            .collect()
    }

    /// The type that lists `child` as a child type, if any.
    pub fn parent_type(&self, child: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.schema.children.iter().any(|c| c == child))
            .map(|e| e.schema.name.as_ref())
    }

    /// Types in load order: every parent type before its children.
    pub fn load_order(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let mut todo: std::collections::VecDeque<&str> = self.top_level().into();
        while let Some(t) = todo.pop_front() {
            if out.contains(&t) {
                continue;
            }
            out.push(t);
            if let Ok(s) = self.schema(t) {
                todo.extend(s.children.iter().map(|c| c.as_ref()));
            }
        }
        out
    }

    /// Registers every type in a store, so syncs can create them.
    pub fn register_all(&self, store: &mut LocalStore) -> Result<()> {
        for e in &self.entries {
            match &e.kind {
                Kind::Derived { register, .. } => register(store)?,
                Kind::Runtime => store.register_dyn(e.schema.clone())?,
            }
        }
        Ok(())
    }

    /// A model as a JSON object (all its serde fields, local ones included).
    pub fn to_value(&self, model: &dyn AnyModel) -> Result<Map<String, Value>> {
        let e = self.entry(model.model_type())?;
        let err = |message: String| AdapterError::Model {
            origin: String::new(),
            model_type: model.model_type().to_string(),
            key: model.unique_id(),
            message,
        };
        let value = match &e.kind {
            Kind::Derived { to_value, .. } => to_value(model),
            Kind::Runtime => model.downcast_ref::<DynModel>().map(|m| {
                let mut fields = DiffModel::identifiers(m);
                fields.extend(DiffModel::attributes(m));
                serde_json::to_value(fields)
            }),
        };
        match value {
            Some(Ok(Value::Object(m))) => Ok(m),
            Some(Ok(other)) => Err(err(format!("serializes to {other}, not an object"))),
            Some(Err(e)) => Err(err(e.to_string())),
            None => Err(err("is not the registered Rust type".into())),
        }
    }

    /// A model from a JSON object; `origin` (a path, a table) goes into errors.
    pub fn from_value(&self, model_type: &str, value: Map<String, Value>, origin: &str) -> Result<Box<dyn AnyModel>> {
        let e = self.entry(model_type)?;
        let key = key_of(&e.schema, &value);
        let err = |message: String| AdapterError::Model {
            origin: origin.to_string(),
            model_type: model_type.to_string(),
            key: key.clone(),
            message,
        };
        match &e.kind {
            Kind::Derived { from_value, .. } => from_value(Value::Object(value)).map_err(|e| err(e.to_string())),
            Kind::Runtime => DynModel::from_json(&e.schema, Value::Object(value))
                .map(|m| Box::new(m) as Box<dyn AnyModel>)
                .map_err(|e| err(e.to_string())),
        }
    }
}

/// The unique id a record will have (for messages, before it is a model).
pub(crate) fn key_of(schema: &ModelSchema, record: &Map<String, Value>) -> String {
    diffsync::model::unique_id_of(
        schema
            .identifiers
            .iter()
            .map(|f| record.get(f.name.as_ref()).cloned().unwrap_or(Value::Null)),
    )
}

#[cfg(any(feature = "files", feature = "object-store"))]
/// A flat record: a model's fields (and [`PARENT_KEY`]).
pub(crate) type Record = Map<String, Value>;

#[cfg(any(feature = "files", feature = "object-store"))]
/// Every model as a flat record with its parent's id under [`PARENT_KEY`],
/// grouped by type in load order.
pub(crate) fn flat_records(reg: &Registry, store: &LocalStore) -> Result<Vec<(String, Vec<Record>)>> {
    let mut out = Vec::new();
    for t in reg.load_order() {
        let mut rows = Vec::new();
        for m in store.get_all_dyn(t) {
            let mut fields = reg.to_value(m)?;
            if let Some(parent) = store.parent(m.model_key())? {
                fields.insert(PARENT_KEY.into(), Value::String(parent.unique_id().to_string()));
            }
            rows.push(fields);
        }
        out.push((t.to_string(), rows));
    }
    Ok(out)
}

#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "object-store",
    feature = "redis"
))]
/// Adds a flat record (with an optional [`PARENT_KEY`]) to a store.
pub(crate) fn insert_flat(
    reg: &Registry,
    store: &mut LocalStore,
    model_type: &str,
    mut fields: Map<String, Value>,
    origin: &str,
) -> Result<()> {
    let parent = match fields.remove(PARENT_KEY) {
        Some(Value::String(p)) => Some(p),
        _ => None,
    };
    let model = reg.from_value(model_type, fields, origin)?;
    let parent = match parent {
        Some(text) => parent_key(reg, model_type, &text).map_err(|message| AdapterError::Model {
            origin: origin.to_string(),
            model_type: model_type.to_string(),
            key: model.unique_id(),
            message,
        })?,
        None => None,
    };
    store.insert_boxed(model, parent.as_ref())?;
    Ok(())
}

#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "object-store",
    feature = "redis"
))]
/// The key of the parent a flat record of `model_type` names by its
/// unique id's text (its [`PARENT_KEY`]), read against the parent type's
/// identifiers (`None`: the type has no parent type). `Err`: a text that
/// is no key of the parent type.
pub(crate) fn parent_key(
    reg: &Registry,
    model_type: &str,
    text: &str,
) -> std::result::Result<Option<ModelKey>, String> {
    let Some(pt) = reg.parent_type(model_type) else {
        return Ok(None);
    };
    let schema = reg.schema(pt).map_err(|e| e.to_string())?;
    schema
        .parse_key(text)
        .map(Some)
        .map_err(|e| format!("its {PARENT_KEY}: {e}"))
}

/// Loads flat records (a row, an object, a key) into a store in any order:
/// a child whose parent is not loaded yet waits for it. What never finds
/// its parent is an orphan: loaded without its parent link (the next diff
/// shows it at the top level, so a sync deletes or moves it) and reported,
/// so a system holding one still opens.
#[derive(Default)]
pub(crate) struct FlatLoader {
    /// (model type, record with its parent link, origin, parent key)
    waiting: Vec<(String, Map<String, Value>, String, String)>,
}

impl FlatLoader {
    pub(crate) fn insert(
        &mut self,
        reg: &Registry,
        store: &mut LocalStore,
        model_type: &str,
        fields: Map<String, Value>,
        origin: &str,
    ) -> Result<()> {
        if let Some(Value::String(pk)) = fields.get(PARENT_KEY)
            && let Ok(Some(parent)) = parent_key(reg, model_type, pk)
            && !store.contains(&parent)
        {
            let pk = pk.clone();
            self.waiting
                .push((model_type.to_string(), fields, origin.to_string(), pk));
            return Ok(());
        }
        insert_flat(reg, store, model_type, fields, origin)
    }

    /// Loads what waited; returns the orphans, each named by where it is,
    /// its type and key, and the parent it names.
    pub(crate) fn finish(mut self, reg: &Registry, store: &mut LocalStore) -> Result<Vec<AdapterError>> {
        loop {
            let before = self.waiting.len();
            for (t, fields, origin, _) in std::mem::take(&mut self.waiting) {
                self.insert(reg, store, &t, fields, &origin)?;
            }
            if self.waiting.is_empty() || self.waiting.len() == before {
                break;
            }
        }
        let mut orphans = Vec::new();
        for (t, mut fields, origin, parent_key) in self.waiting {
            fields.remove(PARENT_KEY);
            let model = reg.from_value(&t, fields, &origin)?;
            let key = model.unique_id();
            store.insert_boxed(model, None)?;
            let orphan = AdapterError::Orphan {
                origin,
                model_type: t.clone(),
                key,
                parent_type: reg.parent_type(&t).unwrap_or_default().to_string(),
                parent_key,
            };
            tracing::warn!(error = %orphan, "loaded a model without its parent");
            orphans.push(orphan);
        }
        Ok(orphans)
    }
}

/// Reads changed models again into an image (`Adapter::reread` of the
/// adapters whose image mirrors a system): `fetch` returns a model's flat
/// record as the system holds it now (`None`: gone), and is asked only
/// about registered types. A record found
/// is added or updated, a record gone is removed. A child whose parent is
/// not read yet waits for it within the same call. Returns false when a
/// model changed parents: the image cannot take that in place (its
/// children would lose their link), the caller reads everything again.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) fn reread(
    reg: &Registry,
    store: &mut LocalStore,
    changed: &[diffsync::feed::ChangeEvent],
    origin: &str,
    mut fetch: impl FnMut(&LocalStore, &diffsync::feed::ChangeEvent) -> Result<Option<Map<String, Value>>>,
) -> Result<bool> {
    let mut todo: Vec<&diffsync::feed::ChangeEvent> =
        changed.iter().filter(|e| reg.schema(e.model_type()).is_ok()).collect();
    loop {
        let before = todo.len();
        let mut waiting = Vec::new();
        let mut last_error = None;
        for e in todo {
            match fetch(store, e).and_then(|record| apply_record(reg, store, e, record, origin)) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(err) => {
                    last_error = Some(err);
                    waiting.push(e);
                }
            }
        }
        match last_error {
            None => return Ok(true),
            Some(err) if waiting.len() == before => return Err(err),
            Some(_) => todo = waiting,
        }
    }
}

/// Brings one model of the image in line with its record; false when the
/// record names another parent than the image has.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
fn apply_record(
    reg: &Registry,
    store: &mut LocalStore,
    e: &diffsync::feed::ChangeEvent,
    record: Option<Map<String, Value>>,
    origin: &str,
) -> Result<bool> {
    let ty = e.model_type();
    let key = &e.key;
    let present = store.contains(key);
    match record {
        None if present => store.remove(key, false)?,
        None => {}
        Some(record) if present => {
            let parent = record.get(PARENT_KEY).and_then(Value::as_str);
            if store.parent(key)?.as_ref().map(ModelKey::unique_id) != parent {
                return Ok(false);
            }
            let attrs: diffsync::Attrs = record
                .into_iter()
                .map(|(k, v)| (std::borrow::Cow::Owned(k), v))
                .collect();
            store.update_attributes(key, diffsync::AttrSource::Values(&attrs))?;
        }
        Some(record) => insert_flat(reg, store, ty, record, origin)?,
    }
    Ok(true)
}
