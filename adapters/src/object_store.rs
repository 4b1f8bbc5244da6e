//! Object stores (`object_store`: local filesystem, in-memory, and S3, GCS
//! or Azure when their `object_store` features are enabled).
//!
//! Two layouts: one JSON object per model at `{prefix}/{type}/{unique id}.json`,
//! written change by change in the hooks; or one JSON array per model type at
//! `{prefix}/{type}.json`, rewritten after each sync. Each object holds the
//! model's fields, `_parent` for children and `_seq` for insertion order.

use std::sync::Arc;

use diffsync::{Action, Adapter, Change, Diff, HookError, LocalStore, ModelKey, Sink, SyncReport};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Map, Value};

use crate::error::{AdapterError, Result};
use crate::registry::{self, PARENT_KEY, Registry};

const SEQ_KEY: &str = "_seq";

/// Where models go in the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `{prefix}/{type}/{unique id}.json`, one object per model.
    PerModel,
    /// `{prefix}/{type}.json`, a JSON array per model type.
    PerType,
}

/// An adapter over a prefix of an object store.
///
/// ```
/// use std::sync::Arc;
/// use diffsync_adapters::{Registry, object_store::{Layout, ObjectStoreAdapter}};
///
/// let bucket = Arc::new(object_store::memory::InMemory::new());
/// let a = ObjectStoreAdapter::new("bucket", bucket, "inventory", Layout::PerModel, Registry::new())?;
/// // Or by URL: "file:///srv/inv", "memory:///", and with object_store's
/// // features enabled, "s3://bucket/prefix", "gs://...", "az://...".
/// let b = ObjectStoreAdapter::from_url("files", "memory:///inv", Layout::PerType, Registry::new())?;
/// # Ok::<(), diffsync_adapters::AdapterError>(())
/// ```
pub struct ObjectStoreAdapter {
    name: String,
    bucket: Arc<dyn ObjectStore>,
    prefix: Path,
    layout: Layout,
    registry: Registry,
    runtime: tokio::runtime::Runtime,
    next_seq: u64,
    /// The models, as loaded from (and kept in step with) the bucket.
    pub store: LocalStore,
}

impl ObjectStoreAdapter {
    /// Opens `prefix` in `bucket` and loads it.
    pub fn new(
        name: &str,
        bucket: Arc<dyn ObjectStore>,
        prefix: &str,
        layout: Layout,
        registry: Registry,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| AdapterError::Io {
                path: "tokio runtime".into(),
                source: e,
            })?;
        let mut store = LocalStore::new(name);
        registry.register_all(&mut store)?;
        let mut a = ObjectStoreAdapter {
            name: name.to_string(),
            bucket,
            prefix: Path::from(prefix),
            layout,
            registry,
            runtime,
            next_seq: 0,
            store,
        };
        a.load()?;
        Ok(a)
    }

    /// Opens a URL (`file:///dir`, `memory:///prefix`, `s3://bucket/prefix`, ...).
    pub fn from_url(name: &str, url: &str, layout: Layout, registry: Registry) -> Result<Self> {
        let bad = |message: String| AdapterError::Unreachable {
            address: url.to_string(),
            message,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let (bucket, prefix) = object_store::parse_url(&parsed).map_err(|e| bad(e.to_string()))?;
        Self::new(name, Arc::from(bucket), prefix.as_ref(), layout, registry)
    }

    fn path(&self, parts: &[&str]) -> Path {
        let mut p = self.prefix.clone();
        for part in parts {
            p = p.join(*part);
        }
        p
    }

    fn backend(&self, path: &Path, e: object_store::Error) -> AdapterError {
        AdapterError::backend(format!("object {path}"), e)
    }

    fn get_json(&self, path: &Path) -> Result<Option<Value>> {
        let got = self.runtime.block_on(async {
            match self.bucket.get(path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let Some(bytes) = got.map_err(|e| self.backend(path, e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AdapterError::Parse {
                path: path.to_string(),
                line: e.line(),
                column: e.column(),
                message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
            })
    }

    fn put_json(&self, path: &Path, v: &Value) -> Result<()> {
        let payload = PutPayload::from(v.to_string().into_bytes());
        self.runtime
            .block_on(self.bucket.put(path, payload))
            .map(|_| ())
            .map_err(|e| self.backend(path, e))
    }

    fn load(&mut self) -> Result<()> {
        let mut loader = registry::FlatLoader::default();
        for model_type in self.registry.load_order() {
            let mut records: Vec<(Map<String, Value>, String)> = Vec::new();
            match self.layout {
                Layout::PerType => {
                    let path = self.path(&[&format!("{model_type}.json")]);
                    match self.get_json(&path)? {
                        None => {}
                        Some(Value::Array(items)) => {
                            for item in items {
                                let Value::Object(m) = item else {
                                    return Err(not_object(&path));
                                };
                                records.push((m, path.to_string()));
                            }
                        }
                        Some(_) => return Err(not_object(&path)),
                    }
                }
                Layout::PerModel => {
                    let dir = self.path(&[model_type]);
                    let metas: Vec<_> = self
                        .runtime
                        .block_on(self.bucket.list(Some(&dir)).try_collect::<Vec<_>>())
                        .map_err(|e| self.backend(&dir, e))?;
                    for meta in metas {
                        match self.get_json(&meta.location)? {
                            Some(Value::Object(m)) => records.push((m, meta.location.to_string())),
                            Some(_) => return Err(not_object(&meta.location)),
                            None => {}
                        }
                    }
                }
            }
            records.sort_by_key(|(r, _)| r.get(SEQ_KEY).and_then(Value::as_u64).unwrap_or(u64::MAX));
            for (mut r, origin) in records {
                if let Some(seq) = r.remove(SEQ_KEY).and_then(|v| v.as_u64()) {
                    self.next_seq = self.next_seq.max(seq + 1);
                }
                loader.insert(&self.registry, &mut self.store, model_type, r, &origin)?;
            }
        }
        // Orphans are logged (tracing) and loaded without their parent.
        loader.finish(&self.registry, &mut self.store)?;
        Ok(())
    }

    fn model_path(&self, model_type: &str, key: &str) -> Path {
        self.path(&[model_type, &format!("{key}.json")])
    }

    fn put_model(
        &mut self,
        model_type: &str,
        key: &str,
        mut record: Map<String, Value>,
        parent: Option<&str>,
        seq: u64,
    ) -> Result<()> {
        if let Some(p) = parent {
            record.insert(PARENT_KEY.into(), Value::String(p.to_string()));
        }
        record.insert(SEQ_KEY.into(), Value::from(seq));
        self.put_json(&self.model_path(model_type, key), &Value::Object(record))
    }

    fn subtree(&self, key: &ModelKey, out: &mut Vec<Path>) -> Result<()> {
        out.push(self.model_path(key.model_type(), key.unique_id()));
        if let Some(schema) = self.store.schema(key.model_type()) {
            for ct in schema.children.iter() {
                for k in self.store.children_dyn(key, ct)? {
                    self.subtree(&k, out)?;
                }
            }
        }
        Ok(())
    }
}

fn not_object(path: &Path) -> AdapterError {
    AdapterError::Format {
        origin: format!("object {path}"),
        message: "expected JSON object(s) of model records".into(),
    }
}

impl Adapter for ObjectStoreAdapter {
    type Store = LocalStore;
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }
}
impl Sink for ObjectStoreAdapter {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        match change.action {
            Action::Create => {
                if self.layout == Layout::PerModel {
                    let model = change.new_model().ok_or("create without a model")?;
                    let record = self.registry.to_value(model)?;
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.put_model(
                        change.model_type(),
                        change.key(),
                        record,
                        change.parent_element().map(|p| p.unique_id()),
                        seq,
                    )?;
                }
                Ok(())
            }
            Action::Update => {
                if self.layout == Layout::PerModel {
                    let (t, k) = (change.model_type(), change.key());
                    let key = change.model_key();
                    let current = self.store.get_dyn(&key)?;
                    let mut record = self.registry.to_value(current)?;
                    for (name, v) in change.attrs() {
                        record.insert(name.to_string(), v.clone());
                    }
                    let parent = self.store.parent(&key)?.map(|p| p.unique_id().to_string());
                    let old = self.get_json(&self.model_path(t, k))?;
                    let seq = old.and_then(|v| v.get(SEQ_KEY).and_then(Value::as_u64)).unwrap_or(0);
                    self.put_model(t, k, record, parent.as_deref(), seq)?;
                }
                Ok(())
            }
            Action::Delete => {
                if self.layout == Layout::PerModel {
                    let mut paths = Vec::new();
                    self.subtree(&change.model_key(), &mut paths)?;
                    for p in paths {
                        match self.runtime.block_on(self.bucket.delete(&p)) {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => return Err(self.backend(&p, e).into()),
                        }
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    /// With one object per type, writes every type's object. When one
    /// fails, the objects written so far stay, and the store is read back
    /// from the bucket so it holds what the bucket does.
    fn sync_complete(&mut self, _diff: &Diff, _report: &SyncReport) -> Result<(), HookError> {
        let Err(e) = self.write_types() else { return Ok(()) };
        let mut fresh = LocalStore::new(&self.name);
        if self.registry.register_all(&mut fresh).is_ok() {
            let kept = std::mem::replace(&mut self.store, fresh);
            if self.load().is_err() {
                self.store = kept;
            }
        }
        Err(e.into())
    }
}

impl ObjectStoreAdapter {
    fn write_types(&self) -> Result<()> {
        if self.layout == Layout::PerType {
            for (model_type, rows) in registry::flat_records(&self.registry, &self.store)? {
                let rows: Vec<Value> = rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut r)| {
                        r.insert(SEQ_KEY.into(), Value::from(i as u64));
                        Value::Object(r)
                    })
                    .collect();
                self.put_json(&self.path(&[&format!("{model_type}.json")]), &Value::Array(rows))?;
            }
        }
        Ok(())
    }
}
