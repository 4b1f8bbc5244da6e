//! A Redis-backed [`Store`]: an adapter's models outlive the process and can
//! be shared by several processes or machines.
//!
//! Each model is one key, `{namespace}:{model type}:{unique id}`, holding its
//! JSON with the parent's id under `_parent` (so child links persist) and an
//! insertion sequence under `_seq` (so order survives a reload). Reads and
//! diffs use an in-memory image loaded at open; every change is written
//! through, and a write that fails on the server is undone in the image.

use diffsync::model::AnyModel;
use diffsync::{AttrSource, DiffModel, LocalStore, Store};
use redis::{Commands, Connection};
use serde_json::{Map, Value};

use crate::error::{AdapterError, Result};
use crate::registry::{self, PARENT_KEY, Registry};

const SEQ_KEY: &str = "_seq";

/// A [`Store`] kept in Redis, under a namespace.
///
/// ```no_run
/// use diffsync_adapters::{Registry, redis::RedisStore};
/// let store = RedisStore::open("redis://127.0.0.1:6379/", "inventory", Registry::new())?;
/// # Ok::<(), diffsync_adapters::AdapterError>(())
/// ```
pub struct RedisStore {
    image: LocalStore,
    conn: Connection,
    namespace: String,
    registry: Registry,
    address: String,
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`) and loads every model of the namespace.
    pub fn open(url: &str, namespace: &str, registry: Registry) -> Result<Self> {
        let unreachable = |e: redis::RedisError| AdapterError::Unreachable {
            address: url.to_string(),
            message: e.to_string(),
        };
        let client = redis::Client::open(url).map_err(unreachable)?;
        let conn = client.get_connection().map_err(unreachable)?;
        let mut store = RedisStore {
            image: LocalStore::new(namespace),
            conn,
            namespace: namespace.to_string(),
            registry,
            address: url.to_string(),
        };
        store.refresh()?;
        Ok(store)
    }

    /// Re-reads the namespace from Redis (to see other processes' writes).
    pub fn refresh(&mut self) -> Result<()> {
        let mut image = LocalStore::new(&self.namespace);
        self.registry.register_all(&mut image)?;
        let origin = format!("{} namespace {:?}", self.address, self.namespace);
        let backend = |e: redis::RedisError| AdapterError::Backend {
            origin: origin.clone(),
            message: e.to_string(),
        };
        for model_type in self.registry.load_order() {
            let pattern = format!("{}:{model_type}:*", self.namespace);
            let mut keys: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut self.conn)
                    .map_err(backend)?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            let mut records: Vec<Map<String, Value>> = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(500) {
                let values: Vec<Option<String>> = self.conn.mget(chunk).map_err(backend)?;
                for (key, v) in chunk.iter().zip(values) {
                    let Some(text) = v else { continue };
                    match serde_json::from_str(&text) {
                        Ok(Value::Object(m)) => records.push(m),
                        _ => {
                            return Err(AdapterError::Format {
                                origin: format!("{origin}: key {key:?}"),
                                message: "not a JSON object".into(),
                            });
                        }
                    }
                }
            }
            records.sort_by_key(|r| r.get(SEQ_KEY).and_then(Value::as_u64).unwrap_or(u64::MAX));
            for mut r in records {
                r.remove(SEQ_KEY);
                registry::insert_flat(&self.registry, &mut image, model_type, r, &origin)?;
            }
        }
        self.image = image;
        Ok(())
    }

    /// Adds a model at the top level (written through).
    pub fn add<T: DiffModel>(&mut self, model: T) -> diffsync::Result<()> {
        Store::insert(self, Box::new(model), None)
    }

    /// Adds a model as a child of `parent_type`/`parent_key` (written through).
    pub fn add_child<T: DiffModel>(&mut self, parent_type: &str, parent_key: &str, model: T) -> diffsync::Result<()> {
        Store::insert(self, Box::new(model), Some((parent_type, parent_key)))
    }

    fn key(&self, model_type: &str, uid: &str) -> String {
        format!("{}:{model_type}:{uid}", self.namespace)
    }

    fn fail(&self, model_type: &str, key: &str, e: impl std::fmt::Display) -> diffsync::Error {
        diffsync::Error::Store {
            store: format!("{} ({})", self.namespace, self.address),
            model_type: model_type.to_string(),
            key: key.to_string(),
            source: e.to_string().into(),
        }
    }

    /// Writes the image's current value of one model to Redis.
    fn write(&mut self, model_type: &str, uid: &str, seq: Option<u64>) -> diffsync::Result<()> {
        let model = self.image.get_dyn(model_type, uid)?;
        let mut record = self
            .registry
            .to_value(model)
            .map_err(|e| self.fail(model_type, uid, e))?;
        if let Some((_, parent)) = self.image.parent_of(model_type, uid)? {
            record.insert(PARENT_KEY.into(), Value::String(parent.to_string()));
        }
        let key = self.key(model_type, uid);
        let seq = match seq {
            Some(s) => s,
            None => {
                // Keep the sequence the model already had.
                let old: Option<String> = self.conn.get(&key).map_err(|e| self.fail(model_type, uid, e))?;
                old.and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .and_then(|v| v.get(SEQ_KEY).and_then(Value::as_u64))
                    .unwrap_or(0)
            }
        };
        record.insert(SEQ_KEY.into(), Value::from(seq));
        let text = Value::Object(record).to_string();
        self.conn
            .set::<_, _, ()>(&key, text)
            .map_err(|e| self.fail(model_type, uid, e))
    }

    fn subtree(&self, model_type: &str, uid: &str, out: &mut Vec<(String, String)>) -> diffsync::Result<()> {
        out.push((model_type.to_string(), uid.to_string()));
        if let Some(schema) = self.image.schema(model_type) {
            for ct in schema.children.iter() {
                for k in self.image.children_keys(model_type, uid, ct)? {
                    self.subtree(ct, k, out)?;
                }
            }
        }
        Ok(())
    }
}

impl Store for RedisStore {
    fn name(&self) -> &str {
        &self.namespace
    }
    fn local(&self) -> &LocalStore {
        &self.image
    }
    fn insert(&mut self, model: Box<dyn AnyModel>, parent: Option<(&str, &str)>) -> diffsync::Result<()> {
        let (model_type, uid) = (model.model_type().to_string(), model.unique_id());
        self.image.insert_boxed(model, parent)?;
        let seq: std::result::Result<u64, _> = self.conn.incr(format!("{}:{SEQ_KEY}", self.namespace), 1);
        let written = match seq {
            Ok(seq) => self.write(&model_type, &uid, Some(seq)),
            Err(e) => Err(self.fail(&model_type, &uid, e)),
        };
        if written.is_err() {
            self.image.remove(&model_type, &uid, false)?;
        }
        written
    }
    fn update_attributes(&mut self, model_type: &str, key: &str, source: AttrSource<'_>) -> diffsync::Result<()> {
        let before = self.image.get_dyn(model_type, key)?.attributes();
        self.image.update_attributes(model_type, key, source)?;
        let written = self.write(model_type, key, None);
        if written.is_err() {
            self.image
                .update_attributes(model_type, key, AttrSource::Values(&before))?;
        }
        written
    }
    fn remove(&mut self, model_type: &str, key: &str, remove_children: bool) -> diffsync::Result<()> {
        let mut gone = Vec::new();
        if remove_children {
            self.subtree(model_type, key, &mut gone)?;
        } else {
            gone.push((model_type.to_string(), key.to_string()));
        }
        let orphans: Vec<(String, String)> = if remove_children {
            Vec::new()
        } else {
            let mut v = Vec::new();
            if let Some(schema) = self.image.schema(model_type) {
                for ct in schema.children.iter() {
                    for k in self.image.children_keys(model_type, key, ct)? {
                        v.push((ct.to_string(), k.to_string()));
                    }
                }
            }
            v
        };
        let keys: Vec<String> = gone.iter().map(|(t, k)| self.key(t, k)).collect();
        self.conn
            .del::<_, ()>(keys)
            .map_err(|e| self.fail(model_type, key, e))?;
        self.image.remove(model_type, key, remove_children)?;
        // Children left behind lose their parent link in Redis too.
        for (t, k) in orphans {
            self.write(&t, &k, None)?;
        }
        Ok(())
    }
}
