//! A Redis-backed [`Store`]: an adapter's models outlive the process and can
//! be shared by several processes or machines.
//!
//! Each model is one key, `{namespace}:{model type}:{unique id}`, holding its
//! JSON with the parent's id under `_parent` (so child links persist); the
//! hash `{namespace}:_order` keeps each key's insertion sequence (so order
//! survives a reload). Reads and diffs use an in-memory image loaded at open.
//! Outside a sync every change is written through at once (one round trip)
//! and undone in the image if the server refuses it; a sync's changes are
//! queued and flushed in one MULTI/EXEC transaction at its end.

use diffsync::model::AnyModel;
use diffsync::{AttrSource, DiffModel, LocalStore, Store};
use redis::{Commands, Connection};
use serde_json::{Map, Value};

use crate::error::{AdapterError, Result};
use crate::registry::{self, PARENT_KEY, Registry};

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
    /// Next insertion sequence.
    next_seq: u64,
    /// Writes queued during a sync (`begin_batch` .. `end_batch`).
    pending: Option<redis::Pipeline>,
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
            next_seq: 0,
            pending: None,
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
        let order: std::collections::HashMap<String, u64> = self.conn.hgetall(self.order_key()).map_err(backend)?;
        self.next_seq = order.values().max().map_or(0, |m| m + 1);
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
            let mut records: Vec<(u64, Map<String, Value>)> = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(500) {
                let values: Vec<Option<String>> = self.conn.mget(chunk).map_err(backend)?;
                for (key, v) in chunk.iter().zip(values) {
                    let Some(text) = v else { continue };
                    match serde_json::from_str(&text) {
                        Ok(Value::Object(m)) => records.push((order.get(key).copied().unwrap_or(u64::MAX), m)),
                        _ => {
                            return Err(AdapterError::Format {
                                origin: format!("{origin}: key {key:?}"),
                                message: "not a JSON object".into(),
                            });
                        }
                    }
                }
            }
            records.sort_by_key(|(seq, _)| *seq);
            for (_, r) in records {
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

    fn order_key(&self) -> String {
        format!("{}:_order", self.namespace)
    }

    /// Runs `commands` now (one round trip), or queues them during a sync.
    fn send(
        &mut self,
        model_type: &str,
        uid: &str,
        commands: impl FnOnce(&mut redis::Pipeline),
    ) -> diffsync::Result<()> {
        if let Some(p) = self.pending.as_mut() {
            commands(p);
            return Ok(());
        }
        let mut p = redis::pipe();
        commands(&mut p);
        p.query::<()>(&mut self.conn).map_err(|e| self.fail(model_type, uid, e))
    }

    /// The JSON to store for one model, from the image.
    fn value(&self, model_type: &str, uid: &str) -> diffsync::Result<String> {
        let model = self.image.get_dyn(model_type, uid)?;
        let mut record = self
            .registry
            .to_value(model)
            .map_err(|e| self.fail(model_type, uid, e))?;
        if let Some((_, parent)) = self.image.parent_of(model_type, uid)? {
            record.insert(PARENT_KEY.into(), Value::String(parent.to_string()));
        }
        Ok(Value::Object(record).to_string())
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
        let written = self.value(&model_type, &uid).and_then(|json| {
            let (key, order, seq) = (self.key(&model_type, &uid), self.order_key(), self.next_seq);
            self.send(&model_type, &uid, |p| {
                p.set(&key, json).ignore().hset(&order, &key, seq).ignore();
            })
        });
        match written {
            Ok(()) => {
                self.next_seq += 1;
                Ok(())
            }
            Err(e) => {
                self.image.remove(&model_type, &uid, false)?;
                Err(e)
            }
        }
    }
    fn update_attributes(&mut self, model_type: &str, key: &str, source: AttrSource<'_>) -> diffsync::Result<()> {
        let before = self.image.get_dyn(model_type, key)?.attributes();
        self.image.update_attributes(model_type, key, source)?;
        let written = self.value(model_type, key).and_then(|json| {
            let rkey = self.key(model_type, key);
            self.send(model_type, key, |p| {
                p.set(&rkey, json).ignore();
            })
        });
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
        let mut orphans: Vec<(String, String)> = Vec::new();
        if !remove_children && let Some(schema) = self.image.schema(model_type) {
            for ct in schema.children.iter() {
                for k in self.image.children_keys(model_type, key, ct)? {
                    orphans.push((ct.to_string(), k.to_string()));
                }
            }
        }
        let keys: Vec<String> = gone.iter().map(|(t, k)| self.key(t, k)).collect();
        let order = self.order_key();
        self.send(model_type, key, |p| {
            p.del(&keys).ignore().hdel(&order, &keys).ignore();
        })?;
        self.image.remove(model_type, key, remove_children)?;
        // Children left behind lose their parent link in Redis too.
        for (t, k) in orphans {
            let json = self.value(&t, &k)?;
            let rkey = self.key(&t, &k);
            self.send(&t, &k, |p| {
                p.set(&rkey, json).ignore();
            })?;
        }
        Ok(())
    }
    fn begin_batch(&mut self) {
        let mut p = redis::pipe();
        p.atomic();
        self.pending = Some(p);
    }
    fn end_batch(&mut self) -> diffsync::Result<()> {
        let Some(p) = self.pending.take() else { return Ok(()) };
        if p.cmd_iter().next().is_none() {
            return Ok(());
        }
        let Err(e) = p.query::<()>(&mut self.conn) else {
            return Ok(());
        };
        // MULTI/EXEC: nothing of the batch reached the server. Bring the image back to it.
        let note = match self.refresh() {
            Ok(()) => "nothing of this sync was written; the store was re-read from the server",
            Err(_) => "nothing of this sync was written; the in-memory image is ahead of the server: call refresh()",
        };
        Err(self.fail("sync", "", format!("{e} ({note})")))
    }
}
