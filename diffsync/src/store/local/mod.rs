//! The in-memory store.

mod add;
mod read;
#[cfg(test)]
mod tests;
mod write;

use std::hash::BuildHasher;

use hashbrown::HashMap;

use super::Listener;
use super::{Result, StoreError};
use crate::key::ModelKey;
use crate::model::AttrSource;
use crate::model::ModelError;
use crate::model::column::{__new_vec, ErasedVec, RustType};
use crate::model::{AnyModel, Attrs, ModelSchema, SchemaRef, StaticModel};

use super::table::{Link, Table, TypeIdx, narrow_hash};
use super::{Handle, Store};
use crate::model::column::Slot;

/// A parent given by type and key, or by handle.
#[derive(Clone, Copy)]
enum ParentRef<'k> {
    /// A parent's type and key, and where it may be ([`Near`]).
    Key(&'k str, &'k str, Near),
    Handle(Handle),
}

/// Where a diff found a model (in this store, or in another: the slot's
/// type and key are checked, so a wrong or stale slot only costs the
/// lookup it did not save): tried before a key lookup.
pub(crate) type Near = Option<(TypeIdx, Slot)>;

fn next_store_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The hash function of every store in this process: seeded at random once
/// (keys come from outside), shared so a key's hash computed by one store
/// finds it in another (the three-way walk looks models up in a base).
fn shared_hasher() -> hashbrown::DefaultHashBuilder {
    static HASHER: std::sync::OnceLock<hashbrown::DefaultHashBuilder> = std::sync::OnceLock::new();
    *HASHER.get_or_init(Default::default)
}

/// Tables with fewer slots are never compacted.
const COMPACT_MIN_SLOTS: usize = 1024;

/// The in-memory store: models per type in insertion order, indexed by unique id,
/// with parent → children links.
///
/// ```
/// use diffsync::{DiffModel, LocalStore};
///
/// #[derive(DiffModel, Clone, Debug, PartialEq)]
/// #[diffsync(name = "device", children(Interface))]
/// struct Device { #[diffsync(id)] name: String, role: String }
///
/// #[derive(DiffModel, Clone, Debug, PartialEq)]
/// #[diffsync(name = "interface")]
/// struct Interface { #[diffsync(id)] device: String, #[diffsync(id)] name: String, mtu: u32 }
///
/// let mut store = LocalStore::new("inventory");
/// store.add(Device { name: "r1".into(), role: "edge".into() })?;
/// store.add_child(Device::key("r1"), Interface { device: "r1".into(), name: "eth0".into(), mtu: 1500 })?;
/// assert_eq!(store.get(&Interface::key("r1", "eth0"))?.mtu, 1500);
/// assert_eq!(store.children::<Interface>(&Device::key("r1"))?, vec![Interface::key("r1", "eth0")]);
/// assert!(store.add(Device { name: "r1".into(), role: "core".into() }).is_err());
/// # Ok::<(), diffsync::Error>(())
/// ```
pub struct LocalStore {
    name: String,
    /// Identifies this store (and not its clones) in handles.
    id: u64,
    /// Bumped when a compaction moves slots, making older handles stale.
    epoch: u64,
    hasher: hashbrown::DefaultHashBuilder,
    pub(crate) tables: Vec<Table>,
    by_name: HashMap<String, TypeIdx>,
    scratch: String,
    /// Parentless models whose subtree fingerprint is dirty (may hold
    /// duplicates and models cleaned or removed since).
    pub(crate) dirty_roots: Vec<Link>,
    /// Who hears of this store's changes (its feeds).
    listeners: Vec<Box<dyn Listener>>,
    /// The tag put on the events of changes made now.
    origin: Option<String>,
}

impl Clone for LocalStore {
    fn clone(&self) -> Self {
        LocalStore {
            name: self.name.clone(),
            id: next_store_id(),
            epoch: self.epoch,
            hasher: self.hasher,
            tables: self.tables.clone(),
            by_name: self.by_name.clone(),
            scratch: String::new(),
            dirty_roots: self.dirty_roots.clone(),
            // A clone is another store: its changes are its own.
            listeners: Vec::new(),
            origin: None,
        }
    }
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for t in &self.tables {
            m.entry(&t.schema.name, &t.live);
        }
        m.finish()
    }
}

impl Default for LocalStore {
    fn default() -> Self {
        LocalStore::new("local")
    }
}

impl LocalStore {
    /// An empty store.
    pub fn new(name: impl Into<String>) -> Self {
        LocalStore {
            name: name.into(),
            id: next_store_id(),
            epoch: 0,
            hasher: shared_hasher(),
            tables: Vec::new(),
            by_name: HashMap::new(),
            scratch: String::new(),
            dirty_roots: Vec::new(),
            listeners: Vec::new(),
            origin: None,
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Registers a derived model type, so that syncs can create models of it.
    /// Registering twice is harmless.
    pub fn register<T: StaticModel>(&mut self) -> Result<()> {
        self.ensure_table(
            SchemaRef::Static(T::static_schema()),
            || __new_vec::<T>(),
            RustType::of::<T>(),
        )
        .map(|_| ())
    }

    /// Registers a runtime-defined model type.
    pub fn register_dyn(&mut self, schema: std::sync::Arc<ModelSchema>) -> Result<()> {
        schema.validate()?;
        self.ensure_table(
            SchemaRef::Shared(schema),
            __new_vec::<crate::model::DynModel>,
            RustType::of::<crate::model::DynModel>(),
        )
        .map(|_| ())
    }

    /// Model type names in registration order.
    pub fn model_types(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(|t| t.schema.name.as_ref())
    }

    /// The schema of a model type, if known.
    pub fn schema(&self, model_type: &str) -> Option<&ModelSchema> {
        self.table_index(model_type).map(|i| &*self.tables[i].schema)
    }

    pub(crate) fn table_index(&self, model_type: &str) -> Option<TypeIdx> {
        self.by_name.get(model_type).copied()
    }

    pub(crate) fn hash(&self, uid: &str) -> u64 {
        narrow_hash(self.hasher.hash_one(uid))
    }

    /// Finds a key of the table `ty` by a hash another store computed
    /// (every store shares the hash function).
    /// `near`: the slot to try first (stores filled in the same order keep
    /// a key at the same slot, and that probe is a sequential access).
    pub(crate) fn find_with_hash(&self, ty: TypeIdx, hash: u64, key: &str, near: Slot) -> Option<Slot> {
        let t = &self.tables[ty];
        match t.meta.get(near.index()) {
            Some(m) if m.alive() && m.hash() == hash && t.keys.get(m.uid) == key => Some(near),
            _ => t.find_hashed(hash, key),
        }
    }

    pub(crate) fn locate(&self, model_type: &str, key: &str) -> Option<(TypeIdx, Slot)> {
        let ty = self.table_index(model_type)?;
        let slot = self.tables[ty].find_hashed(self.hash(key), key)?;
        Some((ty, slot))
    }

    /// [`locate`](Self::locate), trying `near` first: a live slot of the
    /// type that holds the key saves the hash lookup (at 1M models, three
    /// cache misses: the index's control bytes, its slot, the metadata).
    pub(crate) fn locate_near(&self, model_type: &str, key: &str, near: Near) -> Option<(TypeIdx, Slot)> {
        match near {
            Some((ty, slot))
                if self
                    .tables
                    .get(ty.index())
                    .is_some_and(|t| *t.schema.name == *model_type) =>
            {
                let slot = self.find_with_hash(ty, self.hash(key), key, slot)?;
                Some((ty, slot))
            }
            _ => self.locate(model_type, key),
        }
    }

    fn ensure_table(
        &mut self,
        schema: SchemaRef,
        make: impl FnOnce() -> ErasedVec,
        rust_type: RustType,
    ) -> Result<TypeIdx> {
        if let Some(&i) = self.by_name.get(schema.name.as_ref()) {
            let t = &self.tables[i];
            if t.models.rust_type() != rust_type {
                return Err(StoreError::Model(ModelError::TypeMismatch {
                    model_type: schema.name.to_string(),
                    key: String::new(),
                    stored: t.models.rust_type().name.into(),
                    requested: rust_type.name.into(),
                }));
            }
            return Ok(i);
        }
        schema.validate()?;
        let i = TypeIdx::new(self.tables.len());
        self.by_name.insert(schema.name.to_string(), i);
        self.tables.push(Table::new(schema, make().0));
        // Resolve child links declared by earlier types that name this one.
        let name = self.tables[i].schema.name.clone();
        for t in &mut self.tables {
            for (ci, c) in t.schema.children.iter().enumerate() {
                if *c == name {
                    t.child_types[ci] = Some(i);
                }
            }
        }
        let children: Vec<_> = self.tables[i].schema.children.to_vec();
        for (ci, c) in children.iter().enumerate() {
            self.tables[i].child_types[ci] = self.by_name.get(c.as_ref()).copied();
        }
        Ok(i)
    }

    /// An empty store with the same model types (schemas and Rust types).
    pub(crate) fn empty_like(&self, name: &str) -> LocalStore {
        let mut out = LocalStore::new(name);
        for t in &self.tables {
            let make = || ErasedVec(t.models.new_empty());
            // The types are valid in `self`, so they are valid here.
            let _ = out.ensure_table(t.schema.clone(), make, t.models.rust_type());
        }
        out
    }

    /// Whether both stores hold `model_type`/`key` with equal attributes
    /// (typed and in place when both have the same Rust type).
    pub(crate) fn same_attrs(&self, model_type: &str, key: &str, other: &LocalStore) -> bool {
        match (self.locate(model_type, key), other.locate(model_type, key)) {
            (Some((ty, slot)), Some((oty, oslot))) => {
                self.tables[ty]
                    .models
                    .attrs_equal(slot, &*other.tables[oty].models, oslot)
            }
            _ => false,
        }
    }

    /// Builds a model of a registered type from its identifiers' and
    /// attributes' values (checked against the type's schema), for
    /// [`insert_boxed`](Self::insert_boxed): how a model that arrives as
    /// values (a row, a peer's payload) becomes the type this store holds.
    pub fn build(&self, model_type: &str, ids: &Attrs, attrs: &Attrs) -> Result<Box<dyn AnyModel>> {
        let t = self.table_index(model_type).map(|i| &self.tables[i]).ok_or_else(|| {
            StoreError::Model(ModelError::Schema {
                model_type: model_type.to_string(),
                message: "not registered in this store".into(),
            })
        })?;
        Ok(t.models.build(&t.schema, ids, attrs)?)
    }

    fn not_found(&self, model_type: &str, key: &str) -> StoreError {
        StoreError::NotFound {
            store: self.name.clone(),
            key: ModelKey::from_unique_id(model_type, key),
        }
    }

    fn resolve(&self, h: Handle) -> Result<(TypeIdx, Slot)> {
        let alive = self
            .tables
            .get(h.ty.index())
            .and_then(|t| t.meta.get(h.slot.index()))
            .is_some_and(|m| m.alive());
        if alive && h.store == self.id && h.epoch == self.epoch {
            return Ok((h.ty, h.slot));
        }
        Err(StoreError::StaleHandle {
            store: self.name.clone(),
            model_type: self
                .tables
                .get(h.ty.index())
                .map(|t| t.schema.name.to_string())
                .unwrap_or_default(),
        })
    }

    fn handle(&self, ty: TypeIdx, slot: Slot) -> Handle {
        Handle {
            ty,
            slot,
            store: self.id,
            epoch: self.epoch,
        }
    }
}

impl Store for LocalStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn local(&self) -> &LocalStore {
        self
    }
    fn local_mut(&mut self) -> Option<&mut LocalStore> {
        Some(self)
    }
    fn insert(&mut self, model: Box<dyn AnyModel>, parent: Option<&crate::ModelKey>) -> Result<()> {
        self.insert_boxed(model, parent)
    }
    fn update_attributes(&mut self, key: &crate::ModelKey, source: AttrSource<'_>) -> Result<()> {
        LocalStore::update_attributes(self, key, source)
    }
    fn remove(&mut self, key: &crate::ModelKey, remove_children: bool) -> Result<()> {
        LocalStore::remove(self, key, remove_children)
    }
    fn remove_many(&mut self, items: &[(crate::ModelKey, bool)]) -> std::result::Result<(), (usize, StoreError)> {
        LocalStore::remove_many(self, items)
    }
    fn recount_fingerprints(&mut self) {
        self.refresh_fingerprints()
    }
    fn set_origin(&mut self, origin: Option<&str>) {
        LocalStore::set_origin(self, origin)
    }
}
