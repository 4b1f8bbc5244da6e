//! The in-memory store.

use std::hash::BuildHasher;

use hashbrown::{HashMap, HashSet};

use super::{ChangeEvent, ChangeKind, Listener};
use super::{Result, StoreError};
use crate::digest::{self, Digest, Fingerprint};
use crate::flags::ModelFlags;
use crate::model::AttrSource;
use crate::model::ModelError;
use crate::model::column::{__new_vec, ErasedVec, RustType, TypedVec};
use crate::model::{AnyModel, Attrs, DiffModel, IdPart, ModelSchema, SchemaRef, StaticModel, unique_id_of};

use super::table::{LEAF, Link, NOTHING, Table, TypeIdx, branch_index, narrow_hash};
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
/// assert_eq!(store.children_keys("device", "r1", "interface")?, vec!["r1__eth0"]);
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
            model_type: model_type.into(),
            key: key.into(),
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

    /// Resolves the parent and the child-list index for a child of `child_type`.
    fn parent_link(&self, parent: ParentRef<'_>, child_type: &str) -> Result<(Link, usize)> {
        let (pt, ps) = match parent {
            ParentRef::Key(t, k, near) => self.locate_near(t, k, near).ok_or_else(|| self.not_found(t, k))?,
            ParentRef::Handle(h) => self.resolve(h)?,
        };
        let table = &self.tables[pt];
        let schema = &table.schema;
        let ci = schema
            .child_index(child_type)
            .ok_or_else(|| StoreError::WrongChildType {
                parent_type: schema.name.to_string(),
                parent_key: table.key(ps).to_string(),
                child_type: child_type.into(),
                allowed: schema.children.join(", "),
            })?;
        Ok((Link { ty: pt, slot: ps }, ci))
    }

    /// Adds a model at the top level and returns its handle. Adding a model
    /// equal to the stored one is a no-op; a different model with the same key
    /// is an [`StoreError::AlreadyExists`].
    pub fn add<T: DiffModel>(&mut self, model: T) -> Result<Handle> {
        self.add_typed(model, None)
    }

    /// Adds a model as a child of the stored model `parent` names
    /// (`&Device::key("nyc", "r1")`, or an erased [`ModelKey`](crate::ModelKey)).
    /// The parent's type must declare the child's type.
    pub fn add_child<T: DiffModel>(&mut self, parent: impl AsRef<crate::ModelKey>, child: T) -> Result<Handle> {
        let parent = parent.as_ref();
        self.add_child_by_id(parent.model_type(), &parent.unique_id(), child)
    }

    /// Like [`add_child`](Self::add_child), with the parent named by type
    /// and unique id's text form (`"device"`, `"nyc__r1"`).
    pub fn add_child_by_id<T: DiffModel>(&mut self, parent_type: &str, parent_key: &str, child: T) -> Result<Handle> {
        self.add_typed(child, Some(ParentRef::Key(parent_type, parent_key, None)))
    }

    /// Adds a model as a child of the model `parent` designates (a handle
    /// returned by an earlier add): no key to build, no lookup.
    pub fn add_under<T: DiffModel>(&mut self, parent: Handle, child: T) -> Result<Handle> {
        self.add_typed(child, Some(ParentRef::Handle(parent)))
    }

    fn add_typed<T: DiffModel>(&mut self, model: T, parent: Option<ParentRef<'_>>) -> Result<Handle> {
        let known = self.table_index(&DiffModel::schema(&model).name);
        let ty = match known {
            Some(t) if self.tables[t].models.as_any().is::<TypedVec<T>>() => t,
            _ => self.ensure_table(model.schema_ref(), __new_vec::<T>, RustType::of::<T>())?,
        };
        let link = match parent {
            Some(p) => Some(self.parent_link(p, &DiffModel::schema(&model).name)?),
            None => None,
        };
        // The id is built in a reused buffer and copied into the table's keys.
        let mut uid = std::mem::take(&mut self.scratch);
        uid.clear();
        model.write_unique_id(&mut uid);
        let hash = self.hash(&uid);
        let table = &mut self.tables[ty];
        if let Some(slot) = table.find_hashed(hash, &uid) {
            let same_parent = table.meta[slot].parent == link.map(|l| l.0);
            let typed = table
                .models
                .as_any()
                .downcast_ref::<TypedVec<T>>()
                .and_then(|v| v.at(slot));
            if same_parent && typed.is_some_and(|old| old.attributes_equal(&model)) {
                return Ok(self.handle(ty, slot));
            }
            return Err(StoreError::AlreadyExists {
                store: self.name.clone(),
                model_type: table.schema.name.to_string(),
                key: uid,
            });
        }
        let Some(vec) = table.models.as_any_mut().downcast_mut::<TypedVec<T>>() else {
            return Err(StoreError::Model(ModelError::TypeMismatch {
                model_type: table.schema.name.to_string(),
                key: uid,
                stored: table.models.rust_type().name.into(),
                requested: std::any::type_name::<T>().into(),
            }));
        };
        let item = digest::item_digest(&model);
        let ignored = model.flags().contains(ModelFlags::IGNORE);
        vec.0.push(Some(model));
        let parent = link.map(|(l, _)| (l, self.key_hash(l)));
        let (slot, term) = self.tables[ty].push_meta(&uid, hash, parent, item, ignored);
        self.scratch = uid;
        if let Some((l, ci)) = link {
            self.link(l, ci, ty, slot, (term, ignored));
        }
        self.emit(ChangeKind::Created, Link { ty, slot });
        Ok(self.handle(ty, slot))
    }

    /// Links a new model (its term, whether it is flagged IGNORE) under `parent`.
    fn link(&mut self, parent: Link, ci: usize, child_ty: TypeIdx, slot: Slot, (term, ignored): (Digest, bool)) {
        let pt = &mut self.tables[parent.ty];
        pt.child_types[ci] = Some(child_ty);
        // The parent's type has child types: it has a branch.
        if let Some(b) = pt.branch_mut(parent.slot) {
            b.children[ci].push(slot);
        }
        // A new model's subtree is itself.
        let added = (Fingerprint { count: 1, sum: term.0 }, u32::from(ignored));
        self.adjust(parent, added, NOTHING);
    }

    /// Makes the model at `at` a root: its term no longer mixes in a
    /// parent's key, so its subtree and its type's fingerprint change by
    /// the difference (its ancestors' lost the whole subtree already), and
    /// it joins its root bucket as it is then.
    fn orphan(&mut self, at: Link) {
        let old = self.term_at(at);
        let t = &mut self.tables[at.ty];
        t.meta[at.slot].parent = None;
        t.parentless += 1;
        let new = t.term(at.slot, None);
        t.fingerprint.remove(old);
        t.fingerprint.add(new);
        let dirty = t.dirty(at.slot);
        // A leaf's subtree follows from its term; a branch's out of date
        // is recounted whole.
        if let Some(b) = t.branch_mut(at.slot).filter(|_| !dirty) {
            b.subtree.unmerge(Fingerprint { count: 1, sum: old.0 });
            b.subtree.merge(Fingerprint { count: 1, sum: new.0 });
        }
        t.root_bucket_update(at.slot, true);
        if dirty {
            self.dirty_roots.push(at);
        }
        if old != new {
            self.emit(ChangeKind::Updated, at);
        }
    }

    /// The key hash of the parent of the model at `at`, if it has one.
    fn parent_hash(&self, at: Link) -> Option<u64> {
        let p = self.tables[at.ty].meta[at.slot].parent?;
        Some(self.tables[p.ty].key_hash(p.slot))
    }

    /// The term of the model at `at` in fingerprints.
    pub(crate) fn term_at(&self, at: Link) -> Digest {
        self.tables[at.ty].term(at.slot, self.parent_hash(at))
    }

    /// The subtree fingerprint of the model at `at` (as kept).
    pub(crate) fn subtree_at(&self, at: Link) -> Fingerprint {
        self.tables[at.ty].subtree(at.slot, self.parent_hash(at))
    }

    /// Tells `listener` of every change made through this store from now
    /// on, until it says nobody reads any more.
    pub(crate) fn listen(&mut self, listener: Box<dyn Listener>) {
        self.listeners.push(listener);
    }

    /// Tags the events of the changes made from now on (`None`: untagged),
    /// so their readers can tell a sync's own writes from others.
    pub fn set_origin(&mut self, origin: Option<&str>) {
        self.origin = origin.map(str::to_string);
    }

    /// Tells the subscribers about a change of the model at `at`.
    pub(crate) fn emit(&mut self, kind: ChangeKind, at: Link) {
        if self.listeners.is_empty() {
            return;
        }
        let t = &self.tables[at.ty];
        let m = &t.meta[at.slot];
        let event = ChangeEvent {
            kind,
            model_type: t.schema.name.to_string(),
            key: t.key(at.slot).to_string(),
            identifiers: t.models.get(at.slot).map(|m| m.identifiers()),
            parent: m.parent.map(|p| {
                let pt = &self.tables[p.ty];
                (pt.schema.name.to_string(), pt.key(p.slot).to_string())
            }),
            origin: self.origin.clone(),
        };
        // A reader that went away stops being told.
        self.listeners.retain(|l| l.hear(&event));
    }
    /// Adds a boxed model of any type (used by sync and by networked stores).
    pub fn insert_boxed(&mut self, model: Box<dyn AnyModel>, parent: Option<(&str, &str)>) -> Result<()> {
        self.insert_near(model, parent, None)
    }

    /// [`insert_boxed`](Self::insert_boxed) under a parent that may be at
    /// `parent_near`.
    pub(crate) fn insert_near(
        &mut self,
        model: Box<dyn AnyModel>,
        parent: Option<(&str, &str)>,
        parent_near: Near,
    ) -> Result<()> {
        let schema = model.schema_ref();
        let ty = match self.table_index(&schema.name) {
            Some(t) => t,
            None => {
                let vec = model.__new_vec();
                let rust_type = vec.0.rust_type();
                self.ensure_table(schema, || vec, rust_type)?
            }
        };
        let uid = model.unique_id();
        let link = match parent {
            Some((t, k)) => Some(self.parent_link(ParentRef::Key(t, k, parent_near), model.model_type())?),
            None => None,
        };
        let hash = self.hash(&uid);
        let table = &mut self.tables[ty];
        if table.find_hashed(hash, &uid).is_some() {
            return Err(StoreError::AlreadyExists {
                store: self.name.clone(),
                model_type: table.schema.name.to_string(),
                key: uid,
            });
        }
        let schema = table.schema.clone();
        let item = digest::item_digest(&*model);
        let ignored = model.flags().contains(ModelFlags::IGNORE);
        table.models.push_boxed(model, &schema)?;
        let parent = link.map(|(l, _)| (l, self.key_hash(l)));
        let (slot, term) = self.tables[ty].push_meta(&uid, hash, parent, item, ignored);
        if let Some((l, ci)) = link {
            self.link(l, ci, ty, slot, (term, ignored));
        }
        self.emit(ChangeKind::Created, Link { ty, slot });
        Ok(())
    }

    fn typed_vec<T: DiffModel>(&self, ty: TypeIdx, key: &str) -> Result<&TypedVec<T>> {
        let t = &self.tables[ty];
        t.models.as_any().downcast_ref::<TypedVec<T>>().ok_or_else(|| {
            StoreError::Model(ModelError::TypeMismatch {
                model_type: t.schema.name.to_string(),
                key: key.to_string(),
                stored: t.models.rust_type().name.into(),
                requested: std::any::type_name::<T>().into(),
            })
        })
    }

    /// The model a typed key names: `store.get(&Device::key("nyc", "r1"))`.
    pub fn get<T: DiffModel>(&self, key: &crate::Key<T>) -> Result<&T> {
        self.get_by_id(key.model_type(), &key.unique_id())
    }

    /// Like [`get`](Self::get), but `None` when absent.
    pub fn get_opt<T: DiffModel>(&self, key: &crate::Key<T>) -> Result<Option<&T>> {
        self.get_opt_by_id(key.model_type(), &key.unique_id())
    }

    /// The model an erased key names (a runtime model's, or a key parsed
    /// from text), type-erased.
    pub fn get_dyn(&self, key: &crate::ModelKey) -> Result<&dyn AnyModel> {
        self.get_dyn_by_id(key.model_type(), &key.unique_id())
    }

    /// The model of type `model_type` whose unique id is `key` (the text
    /// form: `nyc__r1`); [`get`](Self::get) takes a typed key instead.
    pub fn get_by_id<T: DiffModel>(&self, model_type: &str, key: &str) -> Result<&T> {
        let (ty, slot) = self
            .locate(model_type, key)
            .ok_or_else(|| self.not_found(model_type, key))?;
        self.typed_vec::<T>(ty, key)?
            .at(slot)
            .ok_or_else(|| self.not_found(model_type, key))
    }

    /// Like [`get_by_id`](Self::get_by_id), but `None` when absent.
    pub fn get_opt_by_id<T: DiffModel>(&self, model_type: &str, key: &str) -> Result<Option<&T>> {
        match self.locate(model_type, key) {
            None => Ok(None),
            Some((ty, slot)) => Ok(self.typed_vec::<T>(ty, key)?.at(slot)),
        }
    }

    /// The model with these identifier values (in identifier order).
    pub fn get_by_identifiers<T: DiffModel, I: IdPart>(
        &self,
        model_type: &str,
        ids: impl IntoIterator<Item = I>,
    ) -> Result<&T> {
        self.get_by_id(model_type, &unique_id_of(ids))
    }

    /// A model of any type by its unique id's text form, type-erased.
    pub fn get_dyn_by_id(&self, model_type: &str, key: &str) -> Result<&dyn AnyModel> {
        self.find_dyn(model_type, key)
            .ok_or_else(|| self.not_found(model_type, key))
    }

    /// [`get_dyn_by_id`](Self::get_dyn_by_id) for callers that only ask
    /// whether: a missing key allocates no error (a sync's pre-check of
    /// every create looks its key up, and almost always misses).
    pub(crate) fn find_dyn(&self, model_type: &str, key: &str) -> Option<&dyn AnyModel> {
        self.find_dyn_near(model_type, key, None)
    }

    /// [`find_dyn`](Self::find_dyn) of a model that may be at `near`.
    pub(crate) fn find_dyn_near(&self, model_type: &str, key: &str, near: Near) -> Option<&dyn AnyModel> {
        let (ty, slot) = self.locate_near(model_type, key, near)?;
        self.tables[ty].models.get(slot)
    }

    /// Every stored `T`, in insertion order: `store.all::<Device>()`.
    pub fn all<T: StaticModel>(&self) -> Result<impl Iterator<Item = &T>> {
        self.get_all::<T>(T::NAME)
    }

    /// How many `T`s the store holds.
    pub fn count_of<T: StaticModel>(&self) -> usize {
        self.count(T::NAME)
    }

    /// The key of the parent of the model `key` names (`None`: it has no
    /// parent). An error if the store does not hold that model.
    pub fn parent(&self, key: &crate::ModelKey) -> Result<Option<crate::ModelKey>> {
        let id = key.unique_id();
        match self.parent_of(key.model_type(), &id)? {
            Some((t, k)) => Ok(Some(self.get_dyn_by_id(t, k)?.model_key())),
            None => Ok(None),
        }
    }

    /// The keys of a model's children of type `C`, in insertion order
    /// (an error if `C` is not one of the parent type's children).
    pub fn children<C: StaticModel>(&self, parent: &crate::ModelKey) -> Result<Vec<crate::Key<C>>> {
        let id = parent.unique_id();
        self.children_keys(parent.model_type(), &id, C::NAME)?
            .into_iter()
            .map(|k| Ok(crate::Key::assume(self.get_dyn_by_id(C::NAME, k)?.model_key())))
            .collect()
    }

    /// Every model of a type, in insertion order (none if the type is
    /// unknown); [`all`](Self::all) names the type by its Rust type.
    pub fn get_all<T: DiffModel>(&self, model_type: &str) -> Result<impl Iterator<Item = &T>> {
        let found = match self.table_index(model_type) {
            Some(ty) => Some((&self.tables[ty], self.typed_vec::<T>(ty, "")?)),
            None => None,
        };
        Ok(found
            .into_iter()
            .flat_map(|(t, v)| t.slots().filter_map(move |s| v.at(s))))
    }

    /// Every model of a type, type-erased, in insertion order.
    pub fn get_all_dyn(&self, model_type: &str) -> impl Iterator<Item = &dyn AnyModel> {
        let table = self.table_index(model_type).map(|ty| &self.tables[ty]);
        table
            .into_iter()
            .flat_map(|t| t.slots().filter_map(move |s| t.models.get(s)))
    }

    /// The models with these keys, in the order of `keys`; any missing key is an error.
    pub fn get_by_keys<T: DiffModel, K: AsRef<str>>(&self, model_type: &str, keys: &[K]) -> Result<Vec<&T>> {
        keys.iter()
            .map(|k| self.get_by_id::<T>(model_type, k.as_ref()))
            .collect()
    }

    /// Unique ids of a model's children of one type, in insertion order.
    pub fn children_keys(&self, model_type: &str, key: &str, child_type: &str) -> Result<Vec<&str>> {
        let (ty, slot) = self
            .locate(model_type, key)
            .ok_or_else(|| self.not_found(model_type, key))?;
        let t = &self.tables[ty];
        let ci = t
            .schema
            .child_index(child_type)
            .ok_or_else(|| StoreError::WrongChildType {
                parent_type: model_type.into(),
                parent_key: key.into(),
                child_type: child_type.into(),
                allowed: t.schema.children.join(", "),
            })?;
        let Some(cty) = t.child_types[ci] else {
            return Ok(Vec::new());
        };
        let ct = &self.tables[cty];
        Ok(t.children(slot)
            .get(ci)
            .map_or_else(Vec::new, |list| list.iter().map(|&c| ct.key(c)).collect()))
    }

    /// The parent (type, key) of a model, if it was added as a child.
    pub fn parent_of(&self, model_type: &str, key: &str) -> Result<Option<(&str, &str)>> {
        let (ty, slot) = self
            .locate(model_type, key)
            .ok_or_else(|| self.not_found(model_type, key))?;
        Ok(self.tables[ty].meta[slot].parent.map(|l| {
            let pt = &self.tables[l.ty];
            (pt.schema.name.as_ref(), pt.key(l.slot))
        }))
    }

    /// Replaces a stored model (links stay), or adds it at the top level if absent.
    pub fn update<T: DiffModel>(&mut self, model: T) -> Result<()> {
        let uid = model.unique_id();
        match self.locate(&DiffModel::schema(&model).name, &uid) {
            None => self.add(model).map(|_| ()),
            Some((ty, slot)) => {
                let t = &mut self.tables[ty];
                let stored = t.models.rust_type().name;
                let vec = t.models.as_any_mut().downcast_mut::<TypedVec<T>>().ok_or_else(|| {
                    StoreError::Model(ModelError::TypeMismatch {
                        model_type: DiffModel::schema(&model).name.to_string(),
                        key: uid.clone(),
                        stored: stored.into(),
                        requested: std::any::type_name::<T>().into(),
                    })
                })?;
                vec.0[slot.index()] = Some(model);
                self.redigest(Link { ty, slot });
                Ok(())
            }
        }
    }

    /// Returns the stored model with `model`'s key, or adds `model`; `true` if added.
    pub fn get_or_instantiate<T: DiffModel>(&mut self, model: T) -> Result<(&T, bool)> {
        let uid = model.unique_id();
        let name = DiffModel::schema(&model).name.to_string();
        let created = self.locate(&name, &uid).is_none();
        if created {
            self.add(model)?;
        }
        Ok((self.get_by_id(&name, &uid)?, created))
    }

    /// Like [`get_or_instantiate`](Self::get_or_instantiate), but an existing model
    /// takes `model`'s attributes; `true` if added.
    pub fn update_or_instantiate<T: DiffModel>(&mut self, model: T) -> Result<(&T, bool)> {
        let uid = model.unique_id();
        let name = DiffModel::schema(&model).name.to_string();
        let created = match self.locate(&name, &uid) {
            None => {
                self.add(model)?;
                true
            }
            Some(_) => {
                self.update_attributes(&name, &uid, AttrSource::Model(&model))?;
                false
            }
        };
        Ok((self.get_by_id(&name, &uid)?, created))
    }

    /// Number of models of one type.
    pub fn count(&self, model_type: &str) -> usize {
        self.table_index(model_type).map_or(0, |t| self.tables[t].live)
    }

    /// Number of models of all types.
    pub fn count_all(&self) -> usize {
        self.tables.iter().map(|t| t.live).sum()
    }

    /// Replaces a model's attributes in place.
    pub fn update_attributes(&mut self, model_type: &str, key: &str, source: AttrSource<'_>) -> Result<()> {
        self.update_near(model_type, key, source, None)
    }

    /// [`update_attributes`](Self::update_attributes) of a model that may be at `near`.
    pub(crate) fn update_near(
        &mut self,
        model_type: &str,
        key: &str,
        source: AttrSource<'_>,
        near: Near,
    ) -> Result<()> {
        let (ty, slot) = self
            .locate_near(model_type, key, near)
            .ok_or_else(|| self.not_found(model_type, key))?;
        let result = self.tables[ty].models.update_attrs(slot, source);
        // Even a failed update may have set some attributes.
        self.redigest(Link { ty, slot });
        Ok(result?)
    }

    /// Removes a model. Its children are removed with it when `remove_children`
    /// is set; otherwise they stay, unlinked, at the top level.
    pub fn remove(&mut self, model_type: &str, key: &str, remove_children: bool) -> Result<()> {
        self.remove_many(&[(model_type, key, remove_children)])
            .map_err(|(_, e)| e)
    }

    /// Removes several models, each `(type, key, remove_children)`: every
    /// one it finds, and the first missing one with its index. Each parent's
    /// child list is filtered once, so removing many siblings costs the
    /// list's length once, not once per sibling.
    pub fn remove_many(&mut self, items: &[(&str, &str, bool)]) -> std::result::Result<(), (usize, StoreError)> {
        self.remove_many_near(items, |_| None)
    }

    /// [`remove_many`](Self::remove_many) of models that may be where
    /// `near` says (by the item's index).
    pub(crate) fn remove_many_near(
        &mut self,
        items: &[(&str, &str, bool)],
        near: impl Fn(usize) -> Near,
    ) -> std::result::Result<(), (usize, StoreError)> {
        let mut first = None;
        let mut found = Vec::with_capacity(items.len());
        for (i, &(model_type, key, remove_children)) in items.iter().enumerate() {
            match self.locate_near(model_type, key, near(i)) {
                Some((ty, slot)) => found.push((ty, slot, remove_children)),
                None => {
                    first.get_or_insert_with(|| (i, self.not_found(model_type, key)));
                }
            }
        }
        // Each removed model's subtree leaves its ancestors' fingerprints,
        // up to the nearest one removed here too (whose own subtree, this
        // one included, leaves the ancestors above it).
        let removing: HashSet<Link> = found.iter().map(|&(ty, slot, _)| Link { ty, slot }).collect();
        for &at in &removing {
            let t = &self.tables[at.ty];
            if let Some(parent) = t.meta[at.slot].parent {
                let gone = (self.subtree_at(at), t.flagged(at.slot));
                self.adjust_below(parent, NOTHING, gone, Some(&removing));
            }
        }
        // (parent type, parent slot, child list) → the slots leaving it.
        let mut leaving: HashMap<(TypeIdx, Slot, usize), HashSet<Slot>> = HashMap::new();
        for &(ty, slot, _) in &found {
            if let Some(p) = self.tables[ty].meta[slot].parent
                && let Some(ci) = self.tables[p.ty].child_types.iter().position(|c| *c == Some(ty))
            {
                leaving.entry((p.ty, p.slot, ci)).or_default().insert(slot);
            }
        }
        for ((pty, pslot, ci), gone) in leaving {
            if let Some(b) = self.tables[pty].branch_mut(pslot) {
                b.children[ci].retain(|s| !gone.contains(s));
            }
        }
        for (ty, slot, remove_children) in found {
            // A subtree removed earlier in the list may have taken it already.
            if self.tables[ty].meta[slot].alive() {
                self.drop_slot(ty, slot, remove_children);
            }
        }
        self.compact_if_sparse();
        first.map_or(Ok(()), Err)
    }

    /// Reclaims removed slots of tables that are more than half empty (so a
    /// long-lived store with churn does not grow), keeping insertion order.
    fn compact_if_sparse(&mut self) {
        for ty in 0..self.tables.len() {
            let t = &self.tables[ty];
            if t.meta.len() > COMPACT_MIN_SLOTS && t.live * 2 < t.meta.len() {
                self.compact_table(TypeIdx::new(ty));
            }
        }
    }

    fn compact_table(&mut self, ty: TypeIdx) {
        self.epoch += 1;
        let t = &mut self.tables[ty];
        // Old slot → new slot; a dead one maps past the end (a reference
        // to it, which must not exist, would fail loudly).
        let mut remap = vec![Slot::MAX; t.meta.len()];
        let mut next = 0;
        for (old, m) in t.meta.iter().enumerate() {
            if m.alive() {
                remap[old] = Slot::new(next);
                next += 1;
            }
        }
        t.meta.retain(|m| m.alive());
        let old_keys = std::mem::take(&mut t.keys);
        let old_branches = std::mem::take(&mut t.branches);
        for m in t.meta.iter_mut() {
            m.uid = t.keys.push(old_keys.get(m.uid));
            if let Some(b) = (m.branch() != LEAF).then(|| &old_branches[m.branch() as usize]) {
                t.branches.push(b.clone());
                m.set_branch(branch_index(t.branches.len() - 1));
            }
        }
        t.models.compact();
        for l in self.dirty_roots.iter_mut().filter(|l| l.ty == ty) {
            l.slot = remap[l.slot.index()];
        }
        t.index.clear();
        let meta = &t.meta;
        for (slot, m) in meta.iter().enumerate() {
            t.index.insert_unique(m.hash(), Slot::new(slot), |&i| meta[i].hash());
        }
        // Every reference to this table's slots: parents' child lists, children's parent links.
        for u in &mut self.tables {
            let child_lists: Vec<usize> = (0..u.child_types.len())
                .filter(|&ci| u.child_types[ci] == Some(ty))
                .collect();
            // Removed slots elsewhere hold no live references (and no child lists).
            for m in u.meta.iter_mut().filter(|m| m.alive()) {
                if let Some(p) = &mut m.parent
                    && p.ty == ty
                {
                    p.slot = remap[p.slot.index()];
                }
            }
            for b in u.branches.iter_mut() {
                for &ci in &child_lists {
                    for s in &mut b.children[ci] {
                        *s = remap[s.index()];
                    }
                }
            }
        }
    }

    /// Frees a slot; its children are freed too (a work stack, not
    /// recursion: subtrees may be deep) or left parentless.
    fn drop_slot(&mut self, ty: TypeIdx, slot: Slot, remove_children: bool) {
        let mut stack = vec![(ty, slot)];
        while let Some((ty, slot)) = stack.pop() {
            self.emit(ChangeKind::Deleted, Link { ty, slot });
            let term = self.term_at(Link { ty, slot });
            let t = &mut self.tables[ty];
            if t.meta[slot].parent.is_none() {
                t.root_bucket_update(slot, false);
            }
            // The lists are emptied, not dropped: a branch keeps one per child type.
            let children: Vec<Vec<Slot>> = t
                .branch_mut(slot)
                .map(|b| b.children.iter_mut().map(std::mem::take).collect())
                .unwrap_or_default();
            let meta = &mut t.meta[slot];
            meta.kill();
            let hash = meta.hash();
            if let Ok(e) = t.index.find_entry(hash, |&i| i == slot) {
                e.remove();
            }
            t.models.clear(slot);
            t.live -= 1;
            t.fingerprint.remove(term);
            t.parentless -= usize::from(meta.parent.is_none());
            for (ci, list) in children.into_iter().enumerate() {
                let Some(cty) = self.tables[ty].child_types[ci] else {
                    continue;
                };
                if remove_children {
                    stack.extend(list.into_iter().map(|c| (cty, c)));
                } else {
                    for c in list {
                        self.orphan(Link { ty: cty, slot: c });
                    }
                }
            }
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
    fn insert(&mut self, model: Box<dyn AnyModel>, parent: Option<(&str, &str)>) -> Result<()> {
        self.insert_boxed(model, parent)
    }
    fn update_attributes(&mut self, model_type: &str, key: &str, source: AttrSource<'_>) -> Result<()> {
        LocalStore::update_attributes(self, model_type, key, source)
    }
    fn remove(&mut self, model_type: &str, key: &str, remove_children: bool) -> Result<()> {
        LocalStore::remove(self, model_type, key, remove_children)
    }
    fn remove_many(&mut self, items: &[(&str, &str, bool)]) -> std::result::Result<(), (usize, StoreError)> {
        LocalStore::remove_many(self, items)
    }
    fn recount_fingerprints(&mut self) {
        self.refresh_fingerprints()
    }
    fn set_origin(&mut self, origin: Option<&str>) {
        LocalStore::set_origin(self, origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Fingerprint;
    use crate::store::{EAGER_DEPTH, ROOT_BUCKETS};
    use serde_json::Value;

    #[derive(crate::DiffModel, Clone, Debug, PartialEq)]
    #[diffsync(name = "rack", children(Unit))]
    struct Rack {
        #[diffsync(id)]
        name: String,
    }

    #[derive(crate::DiffModel, Clone, Debug, PartialEq)]
    #[diffsync(name = "unit")]
    struct Unit {
        #[diffsync(id)]
        rack: String,
        #[diffsync(id)]
        pos: u32,
        label: String,
    }

    #[derive(crate::DiffModel, Clone, Debug, PartialEq)]
    #[diffsync(name = "link", children(Chain))]
    struct Chain {
        #[diffsync(id)]
        n: u32,
        label: String,
    }

    /// Each model's subtree fingerprint counted from scratch.
    fn recounted(s: &LocalStore) -> Vec<(String, Fingerprint)> {
        let mut out = Vec::new();
        for m in s.get_all_dyn("link") {
            let mut fp = Fingerprint::default();
            let mut stack = vec![m.unique_id()];
            while let Some(k) = stack.pop() {
                let (ty, slot) = s.locate("link", &k).unwrap();
                fp.add(s.term_at(Link { ty, slot }));
                stack.extend(
                    s.children_keys("link", &k, "link")
                        .unwrap()
                        .into_iter()
                        .map(str::to_string),
                );
            }
            out.push((m.unique_id(), fp));
        }
        out
    }

    #[test]
    fn changes_deeper_than_the_eager_depth_are_recounted_not_lost() {
        let mut s = LocalStore::new("chain");
        let depth = 3 * EAGER_DEPTH as u32;
        s.add(Chain {
            n: 0,
            label: "x".into(),
        })
        .unwrap();
        for n in 1..depth {
            s.add_child_by_id("link", &(n - 1).to_string(), Chain { n, label: "x".into() })
                .unwrap();
        }
        let v = [("label".into(), "deep".into())].into_iter().collect();
        s.update_attributes("link", &(depth - 2).to_string(), AttrSource::Values(&v))
            .unwrap();
        // Cut the chain in two, and drop a short stretch further down.
        s.remove("link", &(depth / 2).to_string(), false).unwrap();
        let (a, b) = ((depth - 20).to_string(), (depth - 19).to_string());
        s.remove_many(&[("link", &b, false), ("link", &a, false)]).unwrap();
        assert!(!s.fingerprints_fresh(), "a chain this deep leaves its top out of date");
        for (k, fp) in recounted(&s) {
            assert_eq!(s.subtree_fingerprint("link", &k), Some(fp), "before the recount: {k}");
        }
        s.refresh_fingerprints();
        assert!(s.fingerprints_fresh());
        for (k, fp) in recounted(&s) {
            let (ty, slot) = s.locate("link", &k).unwrap();
            assert!(!s.tables[ty].dirty(slot));
            assert_eq!(s.subtree_at(Link { ty, slot }), fp, "after the recount: {k}");
        }
    }

    fn unit(rack: &str, pos: u32) -> Unit {
        Unit {
            rack: rack.into(),
            pos,
            label: format!("u{pos}"),
        }
    }

    #[test]
    fn a_sync_whose_deletes_compact_the_store_writes_its_later_updates_by_key() {
        use crate::{AdapterExt, MemoryAdapter};
        // Rack a's 2,100 units go, rack b's 900 are relabelled. a comes
        // first, so its deletes compact the unit table before b's updates;
        // b's units sat after 100 of a's, so the slot the diff found for
        // each of them now holds the unit 100 places on, or nothing.
        let store = |with_a: bool, label: &str| {
            let mut s = LocalStore::new("s");
            let a = s.add(Rack { name: "a".into() }).unwrap();
            let b = s.add(Rack { name: "b".into() }).unwrap();
            let units = (0..100)
                .map(|p| (a, p))
                .chain((100..1_000).map(|p| (b, p)))
                .chain((1_000..3_000).map(|p| (a, p)));
            for (rack, pos) in units.filter(|&(r, _)| with_a || r == b) {
                let name = if rack == a { "a" } else { "b" };
                let u = Unit {
                    label: format!("{label}{pos}"),
                    ..unit(name, pos)
                };
                s.add_under(rack, u).unwrap();
            }
            MemoryAdapter::with_store("s", &["rack"], s)
        };
        let mut target = store(true, "u");
        let source = store(false, "new");
        let epoch = target.store.epoch;
        let report = target.sync_from(&source).unwrap();
        assert!(report.is_success());
        assert!(target.store.epoch > epoch, "the deletes compacted the table");
        assert!(!target.diff_from(&source).unwrap().has_diffs());
        assert_eq!(target.store.count("unit"), 900);
        let label = |p: u32| {
            let key = DiffModel::unique_id(&unit("b", p));
            target.store.get_dyn_by_id("unit", &key).unwrap().attribute("label")
        };
        assert_eq!(label(100), Some("new100".into()));
        assert_eq!(label(999), Some("new999".into()));
    }

    #[test]
    fn a_diff_made_from_other_stores_syncs_by_its_keys_not_their_slots() {
        use crate::{AdapterExt, MemoryAdapter};
        // The same units in the opposite order: every slot the diff found
        // in `forward` holds another unit in `backward`.
        let store = |order: &mut dyn Iterator<Item = u32>, label: &dyn Fn(u32) -> String, gone: u32| {
            let mut s = LocalStore::new("s");
            let rack = s.add(Rack { name: "r".into() }).unwrap();
            for pos in order.filter(|&p| p != gone) {
                let u = Unit {
                    label: label(pos),
                    ..unit("r", pos)
                };
                s.add_under(rack, u).unwrap();
            }
            MemoryAdapter::with_store("s", &["rack"], s)
        };
        let old = |p: u32| format!("u{p}");
        let forward = store(&mut (0..50), &old, 99);
        let mut backward = store(&mut (0..50).rev(), &old, 99);
        let source = store(
            &mut (0..50),
            &|p| if p % 3 == 0 { format!("new{p}") } else { old(p) },
            7,
        );
        let diff = forward.diff_from(&source).unwrap();
        let report = backward
            .sync_diff_from(&source, &diff, &mut crate::Options::new())
            .unwrap();
        assert!(report.is_success());
        assert!(!backward.diff_from(&source).unwrap().has_diffs());
    }

    #[test]
    fn a_slot_hint_is_checked_and_a_wrong_one_falls_back_to_the_key() {
        let mut s = LocalStore::new("s");
        let rack = s.add(Rack { name: "r".into() }).unwrap();
        for pos in 0..3 {
            s.add_under(rack, unit("r", pos)).unwrap();
        }
        let key = |pos| DiffModel::unique_id(&unit("r", pos));
        let at = |s: &LocalStore, pos| s.locate("unit", &key(pos)).unwrap();
        let (ty, one) = at(&s, 1);
        let key1 = key(1);
        // Right, another key's slot, another type's, past the end.
        assert_eq!(s.locate_near("unit", &key1, Some((ty, one))), Some((ty, one)));
        assert_eq!(s.locate_near("unit", &key1, Some(at(&s, 2))), Some((ty, one)));
        assert_eq!(
            s.locate_near("unit", &key1, Some(s.locate("rack", "r").unwrap())),
            Some((ty, one))
        );
        assert_eq!(s.locate_near("unit", &key1, Some((ty, Slot::new(99)))), Some((ty, one)));
        // A removed model's slot holds nothing, even with its key's text.
        s.remove("unit", &key1, false).unwrap();
        assert_eq!(s.locate_near("unit", &key1, Some((ty, one))), None);
        // Writes through hints: the model at the hint is the one changed,
        // a stale hint changes the model its key names.
        let key2 = key(2);
        let label = |l: &str| -> Attrs { [("label".into(), l.into())].into_iter().collect() };
        s.update_near("unit", &key2, AttrSource::Values(&label("by slot")), Some(at(&s, 2)))
            .unwrap();
        s.update_near("unit", &key2, AttrSource::Values(&label("stale")), Some(at(&s, 0)))
            .unwrap();
        assert_eq!(
            s.get_dyn_by_id("unit", &key2).unwrap().attribute("label"),
            Some("stale".into())
        );
        assert_eq!(
            s.get_dyn_by_id("unit", &key(0)).unwrap().attribute("label"),
            Some("u0".into())
        );
        let key0 = key(0);
        let two = at(&s, 2);
        s.remove_many_near(&[("unit", &key0, false)], |_| Some(two)).unwrap();
        assert_eq!(s.count("unit"), 1);
        assert!(s.find_dyn("unit", &key2).is_some());
    }

    #[test]
    fn children_left_parentless_count_as_roots_added_so() {
        // Enough roots for buckets (256 and up): the orphans' terms lose
        // their parent's key in the type's fingerprint, their subtrees and
        // their root buckets alike.
        let (mut orphaned, mut direct) = (LocalStore::new("orphaned"), LocalStore::new("direct"));
        orphaned.add(Rack { name: "r".into() }).unwrap();
        for pos in 0..300 {
            orphaned.add_child_by_id("rack", "r", unit("r", pos)).unwrap();
            direct.add(unit("r", pos)).unwrap();
        }
        orphaned.remove("rack", "r", false).unwrap();
        let (o, d) = (
            orphaned.table_index("unit").unwrap(),
            direct.table_index("unit").unwrap(),
        );
        let (ot, dt) = (&orphaned.tables[o], &direct.tables[d]);
        assert_eq!(ot.parentless, 300);
        assert_eq!(ot.roots.len(), ROOT_BUCKETS);
        assert_eq!(ot.roots, dt.roots);
        assert_eq!(ot.fingerprint, dt.fingerprint);
        for slot in ot.slots() {
            let key = ot.key(slot);
            let twin = dt.find_hashed(direct.hash(key), key).unwrap();
            assert_eq!(
                orphaned.term_at(Link { ty: o, slot }),
                direct.term_at(Link { ty: d, slot: twin })
            );
        }
    }

    #[test]
    fn index_survives_growth_removal_and_re_adding() {
        let mut s = LocalStore::new("t");
        s.add(Rack { name: "r".into() }).unwrap();
        for pos in 0..5000 {
            s.add_child_by_id("rack", "r", unit("r", pos)).unwrap();
        }
        for pos in (0..5000).step_by(2) {
            s.remove("unit", &format!("r__{pos}"), false).unwrap();
        }
        assert_eq!(s.count("unit"), 2500);
        assert!(s.get_opt_by_id::<Unit>("unit", "r__10").unwrap().is_none());
        assert_eq!(s.get_by_id::<Unit>("unit", "r__11").unwrap().label, "u11");
        s.add_child_by_id("rack", "r", unit("r", 10)).unwrap();
        let children = s.children_keys("rack", "r", "unit").unwrap();
        assert_eq!(children.len(), 2501);
        assert_eq!(children[0], "r__1");
        assert_eq!(*children.last().unwrap(), "r__10");
    }

    #[test]
    fn sparse_tables_are_compacted_and_links_stay_right() {
        let mut s = LocalStore::new("t");
        for r in ["a", "b"] {
            s.add(Rack { name: r.into() }).unwrap();
            for pos in 0..2000 {
                s.add_child_by_id("rack", r, unit(r, pos)).unwrap();
            }
        }
        for pos in 0..2000 {
            if pos % 4 != 0 {
                s.remove("unit", &format!("a__{pos}"), false).unwrap();
            }
            if pos % 2 == 1 {
                s.remove("unit", &format!("b__{pos}"), false).unwrap();
            }
        }
        let units = s.table_index("unit").unwrap();
        assert!(s.tables[units].meta.len() < 4000, "the unit table was compacted");
        assert_eq!(s.count("unit"), 500 + 1000);
        let a = s.children_keys("rack", "a", "unit").unwrap();
        assert_eq!((a.len(), a[0], a[1]), (500, "a__0", "a__4"));
        assert_eq!(s.parent_of("unit", "b__1998").unwrap(), Some(("rack", "b")));
        assert_eq!(s.get_by_id::<Unit>("unit", "b__1000").unwrap().label, "u1000");
        s.remove("rack", "a", true).unwrap();
        assert_eq!(s.count("unit"), 1000);
        let first = s.get_all::<Unit>("unit").unwrap().next().unwrap();
        assert_eq!(DiffModel::unique_id(first), "b__0");

        // A parent table compacted under its children: their parent links follow.
        let mut s = LocalStore::new("t");
        for r in 0..2000 {
            let name = format!("r{r}");
            s.add(Rack { name: name.clone() }).unwrap();
            s.add_child_by_id("rack", &name, unit(&name, 1)).unwrap();
        }
        for r in (0..2000).filter(|r| r % 4 != 3) {
            s.remove("rack", &format!("r{r}"), false).unwrap();
        }
        let racks = s.table_index("rack").unwrap();
        assert!(s.tables[racks].meta.len() < 2000, "the rack table was compacted");
        assert_eq!(s.parent_of("unit", "r1999__1").unwrap(), Some(("rack", "r1999")));
        assert_eq!(s.children_keys("rack", "r3", "unit").unwrap(), ["r3__1"]);
        assert_eq!(s.parent_of("unit", "r0__1").unwrap(), None);
    }

    #[test]
    fn handles_add_children_without_keys_and_go_stale_safely() {
        let mut s = LocalStore::new("t");
        let r = s.add(Rack { name: "r".into() }).unwrap();
        s.add_under(r, unit("r", 1)).unwrap();
        s.add_under(r, unit("r", 2)).unwrap();
        assert_eq!(s.children_keys("rack", "r", "unit").unwrap(), ["r__1", "r__2"]);
        assert_eq!(
            s.add(Rack { name: "r".into() }).unwrap(),
            r,
            "re-adding an equal model returns its handle"
        );
        let u = s.add_under(r, unit("r", 3)).unwrap();
        let err = s.add_under(u, unit("r", 4)).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unit:r__3 cannot have children of type "unit"; declared child types: []"#
        );

        // From another store, or from the store this one was cloned from.
        let mut other = LocalStore::new("other");
        other.add(Rack { name: "x".into() }).unwrap();
        let mut clone = s.clone();
        for store in [&mut other, &mut clone] {
            let err = store.add_under(r, unit("r", 9)).unwrap_err();
            assert!(
                matches!(err, StoreError::StaleHandle { ref model_type, .. } if model_type == "rack"),
                "{err}"
            );
            assert_eq!(store.count("unit"), if store.name() == "t" { 3 } else { 0 });
        }

        // After the parent is removed, and after a compaction moved slots.
        s.remove("rack", "r", true).unwrap();
        assert!(matches!(
            s.add_under(r, unit("r", 5)),
            Err(StoreError::StaleHandle { .. })
        ));
        let keep = s.add(Rack { name: "keep".into() }).unwrap();
        for pos in 0..2000 {
            s.add_under(keep, unit("keep", pos)).unwrap();
        }
        for pos in 0..1500 {
            s.remove("unit", &format!("keep__{pos}"), false).unwrap();
        }
        let err = s.add_under(keep, unit("keep", 9999)).unwrap_err();
        assert!(matches!(err, StoreError::StaleHandle { .. }), "{err}");
        assert_eq!(s.count("unit"), 500, "nothing was added through the stale handle");
    }

    #[test]
    fn boxed_insert_converts_between_rust_types() {
        let mut s = LocalStore::new("t");
        s.register::<Unit>().unwrap();
        let schema = std::sync::Arc::new(<Unit as StaticModel>::static_schema().clone());
        let values: Attrs = [
            ("rack".into(), Value::from("r")),
            ("pos".into(), Value::from(4)),
            ("label".into(), Value::from("top")),
        ]
        .into_iter()
        .collect();
        let m = crate::DynModel::new(&schema, &values, &values).unwrap();
        s.insert_boxed(Box::new(m), None).unwrap();
        assert_eq!(s.get_by_id::<Unit>("unit", "r__4").unwrap().label, "top");
    }

    #[test]
    fn registering_a_name_with_another_type_is_a_mismatch() {
        #[derive(crate::DiffModel, Clone, Debug, PartialEq)]
        #[diffsync(name = "unit")]
        struct Other {
            #[diffsync(id)]
            id: u32,
        }
        let mut s = LocalStore::new("t");
        s.register::<Unit>().unwrap();
        s.register::<Unit>().unwrap();
        let err = s.add(Other { id: 1 }).unwrap_err();
        assert!(
            matches!(err, StoreError::Model(ModelError::TypeMismatch { .. })),
            "{err}"
        );
        assert_eq!(s.count_all(), 0);
    }
}
