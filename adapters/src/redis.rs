//! A Redis-backed [`Store`]: an adapter's models outlive the process and can
//! be shared by several processes or machines.
//!
//! Each model is one key, `{namespace}:{model type}:{unique id}`, holding its
//! JSON with the parent's id under `_parent` (so child links persist); the
//! hash `{namespace}:_order` keeps each key's insertion sequence (so order
//! survives a reload). Reads and diffs use an in-memory image loaded at open.
//! Outside a sync every change is written through at once (one round trip)
//! and undone in the image if the server refuses it; a sync's changes are
//! queued and written in one round trip at its end.
//!
//! # Several processes on one namespace
//! Writes are optimistic: the hash `{namespace}:_version` holds a version per
//! key (kept after a delete, so a key never returns to an old version), and
//! every write is a server-side script that checks the versions this store
//! read for every key it touches, then writes all of them, or none. A key
//! another process changed since (an update from a stale image, a create of
//! a key someone else created, a remove while someone added a child) fails
//! with [`StoreError::Conflict`] naming the model; the image is left as
//! it was. Adding or removing a child also moves its parent's version, so a
//! process that removes the parent from an image without that child
//! conflicts instead of leaving the child pointing at a missing parent.
//!
//! A dropped connection (a server restart) is reopened and the command
//! tried once more; a write retried this way applies at most once (a
//! repeat would find the versions moved and report a conflict).

use std::collections::HashMap;

use diffsync::model::AnyModel;
use diffsync::{AttrSource, BoxError, Chain, DiffModel, LocalStore, ModelKey, Store, StoreError};
use redis::{Client, Commands, Connection, RedisResult};
use serde_json::{Map, Value};

use crate::error::{AdapterError, Result};
use crate::registry::{self, PARENT_KEY, Registry};

/// What the store's operations return.
type StoreResult<T> = std::result::Result<T, StoreError>;

/// A [`Store`] kept in Redis, under a namespace.
///
/// ```no_run
/// use diffsync_adapters::{Registry, redis::RedisStore};
/// let store = RedisStore::open("redis://127.0.0.1:6379/", "inventory", Registry::new())?;
/// # Ok::<(), diffsync_adapters::AdapterError>(())
/// ```
pub struct RedisStore {
    image: LocalStore,
    client: Client,
    conn: Connection,
    namespace: String,
    registry: Registry,
    address: String,
    /// The version of each key this store last read or wrote (absent: 0).
    versions: HashMap<String, u64>,
    /// Writes queued during a sync (`begin_batch` .. `end_batch`).
    pending: Option<Writes>,
    /// How to take the queued changes back out of the image, in order.
    undo: Vec<Undo>,
    /// The tag of the writes made now (see [`Store::set_origin`]).
    origin: Option<String>,
}

/// What one write does to one key.
struct Write {
    model_type: String,
    uid: String,
    /// The version the key must still have.
    expect: u64,
    /// The JSON to store, or `None` to delete.
    value: Option<String>,
}

/// The key a model type and the unique id this store wrote for it name
/// (the library's own text form, read back).
fn model_key(model_type: &str, uid: &str) -> ModelKey {
    ModelKey::parse(&format!("{model_type}:{uid}"))
        .unwrap_or_else(|_| ModelKey::new(model_type.to_string(), [diffsync::KeyValue::Str(uid.to_string())]))
}

/// Writes to apply together, one per key (a key touched twice keeps its
/// first expected version and its last value).
#[derive(Default)]
struct Writes {
    keys: Vec<String>,
    writes: Vec<Write>,
    index: HashMap<String, usize>,
}

/// How to take one queued change back out of the image, should its batch
/// never reach the server.
enum Undo {
    /// Undoes an insert.
    Remove(ModelKey),
    /// Undoes an update: the attributes before it.
    Restore(ModelKey, diffsync::Attrs),
    /// Undoes a remove: the subtree as it was (each model with its
    /// parent's key), parents first.
    Reinsert(Vec<(Box<dyn AnyModel>, Option<ModelKey>)>),
}

impl Undo {
    fn apply(self, image: &mut LocalStore) -> StoreResult<()> {
        match self {
            Undo::Remove(key) => image.remove(&key, true),
            Undo::Restore(key, attrs) => image.update_attributes(&key, AttrSource::Values(&attrs)),
            Undo::Reinsert(subtree) => {
                for (model, parent) in subtree {
                    // A child the remove left behind (parentless) goes back under its parent.
                    let key = model.model_key();
                    if image.contains(&key) {
                        image.remove(&key, false)?;
                    }
                    image.insert_boxed(model, parent.as_ref())?;
                }
                Ok(())
            }
        }
    }
}

impl Writes {
    fn put(&mut self, key: String, write: Write) {
        match self.index.get(&key) {
            Some(&i) => self.writes[i].value = write.value,
            None => {
                self.index.insert(key.clone(), self.keys.len());
                self.keys.push(key);
                self.writes.push(write);
            }
        }
    }
}

/// Runs a command; on a dropped connection (a server restart, say)
/// reconnects and runs it once more.
fn retry<T>(
    client: &Client,
    conn: &mut Connection,
    mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
) -> RedisResult<T> {
    match f(conn) {
        Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            *conn = client.get_connection()?;
            f(conn)
        }
        other => other,
    }
}

/// Checks every key's version, then writes them all and logs each write
/// to the namespace's change stream, in the same script (all or nothing):
/// `KEYS` = version hash, order hash, sequence counter, change stream, then
/// the models' keys; `ARGV` = the writer's tag (empty: none), then per key
/// its expected version, its JSON (empty: delete), model type and unique
/// id. Returns 0, or the first key whose version moved and that version.
const WRITE_SCRIPT: &str = r#"
local n = #KEYS - 4
for i = 1, n do
  local found = tonumber(redis.call('HGET', KEYS[1], KEYS[i + 4]) or '0')
  if found ~= tonumber(ARGV[4 * i - 2]) then
    return {KEYS[i + 4], found}
  end
end
for i = 1, n do
  local key, value = KEYS[i + 4], ARGV[4 * i - 1]
  local op = 'updated'
  redis.call('HINCRBY', KEYS[1], key, 1)
  if value == '' then
    op = 'deleted'
    redis.call('DEL', key)
    redis.call('HDEL', KEYS[2], key)
  else
    redis.call('SET', key, value)
    if redis.call('HEXISTS', KEYS[2], key) == 0 then
      op = 'created'
      redis.call('HSET', KEYS[2], key, redis.call('INCR', KEYS[3]))
    end
  end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 1000000, '*', 'type', ARGV[4 * i], 'key', ARGV[4 * i + 1], 'op', op, 'origin', ARGV[1])
end
return 0
"#;

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`) and loads every model of the namespace.
    pub fn open(url: &str, namespace: &str, registry: Registry) -> Result<Self> {
        let unreachable = |e: redis::RedisError| AdapterError::Unreachable {
            address: url.to_string(),
            message: e.to_string(),
        };
        let client = Client::open(url).map_err(unreachable)?;
        let conn = client.get_connection().map_err(unreachable)?;
        let mut store = RedisStore {
            image: LocalStore::new(namespace),
            client,
            conn,
            namespace: namespace.to_string(),
            registry,
            address: url.to_string(),
            versions: HashMap::new(),
            pending: None,
            undo: Vec::new(),
            origin: None,
        };
        store.refresh()?;
        Ok(store)
    }

    /// Re-reads the namespace from Redis (to see other processes' writes).
    pub fn refresh(&mut self) -> Result<()> {
        let mut image = LocalStore::new(&self.namespace);
        self.registry.register_all(&mut image)?;
        let origin = format!("{} namespace {:?}", self.address, self.namespace);
        let backend = |e: redis::RedisError| AdapterError::backend(origin.clone(), e);
        let (order_key, version_key) = (self.order_key(), self.version_key());
        let order: HashMap<String, u64> =
            retry(&self.client, &mut self.conn, |c| c.hgetall(&order_key)).map_err(backend)?;
        // Versions first: a write in between leaves this image newer than
        // its versions, so the next write conflicts (safe) rather than
        // overwriting a newer model from an older image.
        let versions: HashMap<String, u64> =
            retry(&self.client, &mut self.conn, |c| c.hgetall(&version_key)).map_err(backend)?;
        let mut loader = registry::FlatLoader::default();
        for model_type in self.registry.load_order() {
            let pattern = format!("{}:{model_type}:*", self.namespace);
            let mut keys: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = retry(&self.client, &mut self.conn, |c| {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query(c)
                })
                .map_err(backend)?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            let mut records: Vec<(u64, Map<String, Value>)> = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(500) {
                let values: Vec<Option<String>> =
                    retry(&self.client, &mut self.conn, |c| c.mget(chunk)).map_err(backend)?;
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
                loader.insert(&self.registry, &mut image, model_type, r, &origin)?;
            }
        }
        // Orphans are logged (tracing) and loaded without their parent.
        loader.finish(&self.registry, &mut image)?;
        image.set_origin(self.origin.as_deref());
        self.image = image;
        self.versions = versions;
        Ok(())
    }

    /// Keeps a bidirectional [`Base`](diffsync::bidir::Base) in this
    /// namespace, under `pair` (one key, replaced in one command).
    pub fn save_base(&mut self, pair: &str, base: &diffsync::bidir::Base) -> Result<()> {
        let (key, origin) = base_key(&self.address, &self.namespace, pair);
        save_base(&self.client, &mut self.conn, &key, &origin, base)
    }

    /// The base saved under `pair`, or an empty one (the first run).
    pub fn load_base(&mut self, pair: &str) -> Result<diffsync::bidir::Base> {
        let (key, origin) = base_key(&self.address, &self.namespace, pair);
        load_base(&self.client, &mut self.conn, &key, &origin, &self.image)
    }

    /// Adds a model at the top level (written through).
    pub fn add<T: DiffModel>(&mut self, model: T) -> StoreResult<()> {
        Store::insert(self, Box::new(model), None)
    }

    /// Adds a model as a child of the model `parent` names (written through).
    pub fn add_child<T: DiffModel>(&mut self, parent: impl AsRef<ModelKey>, model: T) -> StoreResult<()> {
        Store::insert(self, Box::new(model), Some(parent.as_ref()))
    }

    fn key(&self, model_type: &str, uid: &str) -> String {
        format!("{}:{model_type}:{uid}", self.namespace)
    }

    fn fail(&self, model_type: &str, key: &str, e: impl Into<BoxError>) -> StoreError {
        StoreError::Backend {
            store: format!("{} ({})", self.namespace, self.address),
            key: (!model_type.is_empty()).then(|| model_key(model_type, key)),
            source: e.into(),
        }
    }

    fn order_key(&self) -> String {
        format!("{}:_order", self.namespace)
    }

    fn version_key(&self) -> String {
        format!("{}:_version", self.namespace)
    }

    fn stream_key(&self) -> String {
        format!("{}:_changes", self.namespace)
    }

    /// A durable feed of every write made through a `RedisStore` to this
    /// namespace, by any process (they go to a stream in the same script as
    /// the data), for `consumer`: it resumes after the last entry it
    /// committed, and reports a gap when the stream was trimmed past it.
    /// Writes made to the keys by other means are not in the stream.
    pub fn change_feed(&self, consumer: &str) -> Result<RedisFeed> {
        let origin = format!("{} stream {:?}", self.address, self.stream_key());
        let mut conn = self
            .client
            .get_connection()
            .map_err(|e| AdapterError::backend(origin.clone(), e))?;
        let cursor_key = format!("{}:_cursor:{consumer}", self.namespace);
        let cursor: Option<String> = conn
            .get(&cursor_key)
            .map_err(|e| AdapterError::backend(origin.clone(), e))?;
        Ok(RedisFeed {
            conn,
            stream: self.stream_key(),
            cursor_key,
            fresh: cursor.is_none(),
            cursor: cursor.unwrap_or_else(|| "0-0".into()),
            origin,
            deleted: (0, 0),
            added: 0,
        })
    }

    /// Writes these models' JSON (`None`: delete) now, checked against the
    /// versions this store read, or queues them during a sync.
    fn send(&mut self, models: Vec<(&str, &str, Option<String>)>) -> StoreResult<()> {
        let entries: Vec<(String, Write)> = models
            .into_iter()
            .map(|(model_type, uid, value)| {
                let key = self.key(model_type, uid);
                let expect = self.versions.get(&key).copied().unwrap_or(0);
                let write = Write {
                    model_type: model_type.to_string(),
                    uid: uid.to_string(),
                    expect,
                    value,
                };
                (key, write)
            })
            .collect();
        let queued = self.pending.is_some();
        let mut now = Writes::default();
        let writes = self.pending.as_mut().unwrap_or(&mut now);
        for (key, write) in entries {
            writes.put(key, write);
        }
        if queued { Ok(()) } else { self.flush(now) }
    }

    /// Runs the write script; on success the versions move on.
    fn flush(&mut self, writes: Writes) -> StoreResult<()> {
        let Some(first) = writes.writes.first() else {
            return Ok(());
        };
        let script = redis::Script::new(WRITE_SCRIPT);
        let mut call = script.prepare_invoke();
        call.key(self.version_key())
            .key(self.order_key())
            .key(format!("{}:_seq", self.namespace))
            .key(self.stream_key())
            .arg(self.origin.as_deref().unwrap_or(""));
        for (key, w) in writes.keys.iter().zip(&writes.writes) {
            call.key(key)
                .arg(w.expect)
                .arg(w.value.as_deref().unwrap_or(""))
                .arg(&w.model_type)
                .arg(&w.uid);
        }
        let reply: RedisResult<redis::Value> = retry(&self.client, &mut self.conn, |c| call.invoke(c));
        let conflict = match reply {
            Ok(redis::Value::Int(0)) => None,
            Ok(redis::Value::Array(v)) => match v.as_slice() {
                [redis::Value::BulkString(k), redis::Value::Int(found)] => {
                    Some((String::from_utf8_lossy(k).into_owned(), *found))
                }
                _ => None,
            },
            Ok(other) => return Err(self.fail(&first.model_type, &first.uid, format!("unexpected reply {other:?}"))),
            Err(e) => return Err(self.fail(&first.model_type, &first.uid, e)),
        };
        if let Some((key, found)) = conflict {
            let w = writes.index.get(&key).map_or(first, |&i| &writes.writes[i]);
            return Err(StoreError::Conflict {
                store: format!("{} ({})", self.namespace, self.address),
                key: model_key(&w.model_type, &w.uid),
                expected: w.expect,
                found: u64::try_from(found).unwrap_or(0),
            });
        }
        for (key, w) in writes.keys.into_iter().zip(writes.writes) {
            self.versions.insert(key, w.expect + 1);
        }
        Ok(())
    }

    /// The JSON to store for one model, from the image.
    fn value(&self, key: &ModelKey) -> StoreResult<String> {
        self.record(key, true)
    }

    /// One model's JSON from the image, with its parent link or without.
    fn record(&self, key: &ModelKey, with_parent: bool) -> StoreResult<String> {
        let model = self.image.get_dyn(key)?;
        let mut record = self
            .registry
            .to_value(model)
            .map_err(|e| self.fail(key.model_type(), key.unique_id(), e))?;
        if with_parent && let Some(parent) = self.image.parent(key)? {
            record.insert(PARENT_KEY.into(), Value::String(parent.unique_id().to_string()));
        }
        Ok(Value::Object(record).to_string())
    }

    /// The keys of a model and everything below it, parents first.
    fn subtree(&self, key: &ModelKey, out: &mut Vec<ModelKey>) -> StoreResult<()> {
        out.push(key.clone());
        if let Some(schema) = self.image.schema(key.model_type()) {
            for ct in schema.children.iter() {
                for k in self.image.children_dyn(key, ct)? {
                    self.subtree(&k, out)?;
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
    fn set_origin(&mut self, origin: Option<&str>) {
        self.image.set_origin(origin);
        self.origin = origin.map(str::to_string);
    }
    fn refresh(&mut self) -> StoreResult<()> {
        RedisStore::refresh(self).map_err(|e| self.fail("", "", e))
    }
    /// Reads these models' keys again, each with its version in one atomic
    /// round trip (a model that moved to another parent: the whole namespace).
    fn reread(&mut self, changed: &[diffsync::feed::ChangeEvent]) -> StoreResult<()> {
        let origin = format!("{} namespace {:?}", self.address, self.namespace);
        let version_key = self.version_key();
        let (client, conn, versions, namespace) = (&self.client, &mut self.conn, &mut self.versions, &self.namespace);
        let done = registry::reread(&self.registry, &mut self.image, changed, &origin, |_, e| {
            let key = format!("{namespace}:{}:{}", e.model_type(), e.key.unique_id());
            let (version, text): (Option<u64>, Option<String>) = retry(client, conn, |c| {
                redis::pipe().atomic().hget(&version_key, &key).get(&key).query(c)
            })
            .map_err(|err| AdapterError::backend(origin.clone(), err))?;
            versions.insert(key.clone(), version.unwrap_or(0));
            match text.map(|t| serde_json::from_str(&t)) {
                None => Ok(None),
                Some(Ok(Value::Object(m))) => Ok(Some(m)),
                Some(_) => Err(AdapterError::Format {
                    origin: format!("{origin}: key {key:?}"),
                    message: "not a JSON object".into(),
                }),
            }
        })
        .map_err(|e| self.fail("", "", e))?;
        if done { Ok(()) } else { Store::refresh(self) }
    }
    fn insert(&mut self, model: Box<dyn AnyModel>, parent: Option<&ModelKey>) -> StoreResult<()> {
        let key = model.model_key();
        self.image.insert_boxed(model, parent)?;
        // The parent is written too: its version moves, so a process removing
        // it from an image without this child conflicts.
        let written = self.value(&key).and_then(|json| {
            let mut models = vec![(key.model_type(), key.unique_id(), Some(json))];
            if let Some(p) = parent {
                models.push((p.model_type(), p.unique_id(), Some(self.value(p)?)));
            }
            self.send(models)
        });
        if written.is_err() {
            self.image.remove(&key, false)?;
        } else if self.pending.is_some() {
            self.undo.push(Undo::Remove(key));
        }
        written
    }
    fn update_attributes(&mut self, key: &ModelKey, source: AttrSource<'_>) -> StoreResult<()> {
        let before = self.image.get_dyn(key)?.attributes();
        self.image.update_attributes(key, source)?;
        let written = self
            .value(key)
            .and_then(|json| self.send(vec![(key.model_type(), key.unique_id(), Some(json))]));
        if written.is_err() {
            self.image.update_attributes(key, AttrSource::Values(&before))?;
        } else if self.pending.is_some() {
            self.undo.push(Undo::Restore(key.clone(), before));
        }
        written
    }
    fn remove(&mut self, key: &ModelKey, remove_children: bool) -> StoreResult<()> {
        let mut gone = Vec::new();
        if remove_children {
            self.subtree(key, &mut gone)?;
        } else {
            gone.push(key.clone());
        }
        // Children left behind lose their parent link in Redis too; the
        // parent's version moves (its children changed).
        let mut orphans: Vec<ModelKey> = Vec::new();
        if !remove_children && let Some(schema) = self.image.schema(key.model_type()) {
            for ct in schema.children.iter() {
                orphans.extend(self.image.children_dyn(key, ct)?);
            }
        }
        let parent = self.image.parent(key)?;
        let mut models: Vec<(&str, &str, Option<String>)> = Vec::new();
        for k in &gone {
            models.push((k.model_type(), k.unique_id(), None));
        }
        for k in &orphans {
            models.push((k.model_type(), k.unique_id(), Some(self.record(k, false)?)));
        }
        if let Some(p) = &parent {
            models.push((p.model_type(), p.unique_id(), Some(self.record(p, true)?)));
        }
        let undo = match self.pending {
            Some(_) => {
                let mut whole = Vec::new();
                self.subtree(key, &mut whole)?;
                let mut before = Vec::with_capacity(whole.len());
                for k in &whole {
                    before.push((self.image.get_dyn(k)?.clone_box(), self.image.parent(k)?));
                }
                Some(Undo::Reinsert(before))
            }
            None => None,
        };
        self.send(models)?;
        self.image.remove(key, remove_children)?;
        self.undo.extend(undo);
        Ok(())
    }
    fn begin_batch(&mut self) {
        self.pending = Some(Writes::default());
        self.undo.clear();
    }
    fn end_batch(&mut self) -> StoreResult<()> {
        let Some(writes) = self.pending.take() else {
            return Ok(());
        };
        let undo = std::mem::take(&mut self.undo);
        let Err(e) = self.flush(writes) else {
            return Ok(());
        };
        // One script: nothing of the batch reached the server. The image
        // takes its changes back, so it never holds what the server does
        // not; then it is re-read, for what other writers did meanwhile.
        let mut rolled_back = true;
        for u in undo.into_iter().rev() {
            rolled_back &= u.apply(&mut self.image).is_ok();
        }
        let refreshed = self.refresh().is_ok();
        let note = match (refreshed, rolled_back) {
            (true, _) => "nothing of this sync was written; the store was re-read from the server",
            (false, true) => "nothing of this sync was written; the store's image was rolled back to what it read",
            (false, false) => {
                "nothing of this sync was written; the in-memory image is ahead of the server: call refresh()"
            }
        };
        match e {
            // The conflict says nothing was written; the image is the server's again.
            StoreError::Conflict { .. } if refreshed => Err(e),
            e => Err(self.fail("", "", format!("{} ({note})", Chain(&e)))),
        }
    }
}

/// The key of a base in a namespace, and its origin for errors.
fn base_key(address: &str, namespace: &str, pair: &str) -> (String, String) {
    let key = format!("{namespace}:_base:{pair}");
    let origin = format!("{address} key {key:?}");
    (key, origin)
}

fn save_base(
    client: &Client,
    conn: &mut Connection,
    key: &str,
    origin: &str,
    base: &diffsync::bidir::Base,
) -> Result<()> {
    let body = base.to_bytes()?;
    retry(client, conn, |c| c.set::<_, _, ()>(key, body.as_slice())).map_err(|e| AdapterError::backend(origin, e))
}

fn load_base(
    client: &Client,
    conn: &mut Connection,
    key: &str,
    origin: &str,
    like: &LocalStore,
) -> Result<diffsync::bidir::Base> {
    let body: Option<Vec<u8>> = retry(client, conn, |c| c.get(key)).map_err(|e| AdapterError::backend(origin, e))?;
    Ok(match body {
        Some(b) => diffsync::bidir::Base::from_bytes(&b, like, origin)?,
        None => diffsync::bidir::Base::new(),
    })
}

/// A bidirectional base kept in a Redis namespace (one key under a pair
/// name, as [`RedisStore::save_base`] keeps it), for a reconcile loop:
/// see [`BaseStore`](diffsync::bidir::BaseStore). It connects on its own.
pub struct RedisBase {
    client: Client,
    conn: Connection,
    key: String,
    origin: String,
}

impl RedisBase {
    /// Connects to `url`; the base is kept in `namespace` under `pair`.
    pub fn open(url: &str, namespace: &str, pair: &str) -> Result<Self> {
        let unreachable = |e: redis::RedisError| AdapterError::Unreachable {
            address: url.to_string(),
            message: e.to_string(),
        };
        let client = Client::open(url).map_err(unreachable)?;
        let conn = client.get_connection().map_err(unreachable)?;
        let (key, origin) = base_key(url, namespace, pair);
        Ok(RedisBase {
            client,
            conn,
            key,
            origin,
        })
    }
}

impl diffsync::bidir::BaseStore for RedisBase {
    fn load(&mut self, like: &LocalStore) -> diffsync::Result<diffsync::bidir::Base> {
        load_base(&self.client, &mut self.conn, &self.key, &self.origin, like)
            .map_err(|e| crate::error::base_error(&self.origin, e))
    }
    fn save(&mut self, base: &diffsync::bidir::Base) -> diffsync::Result<()> {
        save_base(&self.client, &mut self.conn, &self.key, &self.origin, base)
            .map_err(|e| crate::error::base_error(&self.origin, e))
    }
}

/// The change feed of a Redis namespace (see [`RedisStore::change_feed`]):
/// blocking stream reads (a real wake-up, no polling), a cursor persisted in
/// the namespace on commit.
pub struct RedisFeed {
    conn: Connection,
    stream: String,
    cursor_key: String,
    /// The id of the last entry returned.
    cursor: String,
    fresh: bool,
    origin: String,
    /// The highest deleted entry id already reported as a gap.
    deleted: (u64, u64),
    /// How many entries the stream was ever given, when last polled.
    added: u64,
}

/// A stream's state for a cursor (`ARGV[1]`): `{}` when the stream does
/// not exist, else its last generated id, its highest deleted id, whether
/// the entry at the cursor is still there (`1`/`0`), and how many entries
/// it was ever given.
const STREAM_STATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last, deleted, added = '0-0', '0-0', 0
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
  if info[i] == 'max-deleted-entry-id' then deleted = info[i + 1] end
  if info[i] == 'entries-added' then added = info[i + 1] end
end
local here = #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
return {last, deleted, tostring(here), tostring(added)}
"#;

/// A stream entry id as (milliseconds, sequence), for comparisons.
fn entry_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

impl diffsync::feed::ChangeFeed for RedisFeed {
    fn poll(
        &mut self,
        max: usize,
        wait: std::time::Duration,
    ) -> std::result::Result<diffsync::feed::FeedBatch, diffsync::BoxError> {
        use diffsync::feed::{ChangeEvent, ChangeKind, FeedBatch};
        use redis::streams::{StreamReadOptions, StreamReadReply};
        let backend = |e: redis::RedisError| AdapterError::backend(self.origin.clone(), e);
        let mut batch = FeedBatch {
            gap: std::mem::take(&mut self.fresh),
            ..FeedBatch::default()
        };
        // Any discontinuity after the cursor is a gap: entries after it
        // deleted (trimmed past it, or XDEL), a stream whose ids went back
        // (a server restored from an older snapshot) or that is gone, or
        // one created again (the entry at the cursor vanished without a
        // deletion the stream remembers).
        if self.cursor != "0-0" {
            let state: Vec<String> = redis::Script::new(STREAM_STATE)
                .key(&self.stream)
                .arg(&self.cursor)
                .invoke(&mut self.conn)
                .map_err(backend)?;
            let at = entry_id(&self.cursor);
            match state.as_slice() {
                [last, deleted, anchor, added] => {
                    let (last, deleted) = (entry_id(last), entry_id(deleted));
                    // Fewer entries ever added than before: a new stream.
                    let added: u64 = added.parse().unwrap_or(0);
                    let renewed = added < std::mem::replace(&mut self.added, added);
                    if renewed || last < at || (anchor == "0" && deleted < at) {
                        batch.gap = true;
                        self.cursor = state[0].clone();
                    } else if deleted > at.max(self.deleted) {
                        // Told once: later polls know of these deletions.
                        batch.gap = true;
                        self.deleted = deleted;
                    }
                }
                // The stream is gone.
                _ => {
                    batch.gap = true;
                    self.cursor = "0-0".into();
                }
            }
        }
        let mut opts = StreamReadOptions::default().count(max.max(1));
        let ms = wait.as_millis() as usize;
        if ms > 0 && !batch.gap {
            opts = opts.block(ms);
        }
        let reply: Option<StreamReadReply> = self
            .conn
            .xread_options(&[&self.stream], &[&self.cursor], &opts)
            .map_err(|e| AdapterError::backend(self.origin.clone(), e))?;
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            let field = |name: &str| -> String { entry.get::<String>(name).unwrap_or_default() };
            let origin = Some(field("origin")).filter(|o| !o.is_empty());
            // The writer put the key's text; one that is no key's is
            // a change this feed cannot name: everything is read again.
            let Ok(key) = format!("{}:{}", field("type"), field("key")).parse::<diffsync::ModelKey>() else {
                batch.gap = true;
                self.cursor = entry.id.clone();
                continue;
            };
            batch.events.push(ChangeEvent {
                kind: match field("op").as_str() {
                    "created" => ChangeKind::Created,
                    "deleted" => ChangeKind::Deleted,
                    _ => ChangeKind::Updated,
                },
                key,
                parent: None,
                origin,
            });
            self.cursor = entry.id.clone();
        }
        Ok(batch)
    }

    fn position(&self) -> Option<diffsync::feed::Position> {
        Some(diffsync::feed::Position::new(self.cursor.clone()))
    }

    fn commit_at(&mut self, position: &diffsync::feed::Position) -> std::result::Result<(), diffsync::BoxError> {
        let id = AdapterError::position(&self.origin, position, |p| {
            let (ms, seq) = p.split_once('-')?;
            (ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok()).then(|| p.to_string())
        })?;
        let _: () = self
            .conn
            .set(&self.cursor_key, id)
            .map_err(|e| AdapterError::backend(self.origin.clone(), e))?;
        Ok(())
    }
}
