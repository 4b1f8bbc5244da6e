//! Adding models: parents found by key or handle, links, change events.

use crate::digest::{self, Digest, Fingerprint};
use crate::flags::ModelFlags;
use crate::key::ModelKey;
use crate::model::ModelError;
use crate::model::column::{__new_vec, RustType, TypedVec};
use crate::model::{AnyModel, DiffModel};
use crate::store::{ChangeEvent, ChangeKind, Listener};
use crate::store::{Result, StoreError};

use crate::model::column::Slot;
use crate::store::Handle;
use crate::store::table::{Link, NOTHING, TypeIdx};

use super::{LocalStore, Near, ParentRef};

impl LocalStore {
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
                parent: ModelKey::from_unique_id(&schema.name, table.key(ps)),
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
        self.add_typed(
            child,
            Some(ParentRef::Key(parent.model_type(), parent.unique_id(), None)),
        )
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
                key: ModelKey::from_unique_id(&table.schema.name, &uid),
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
    pub(super) fn orphan(&mut self, at: Link) {
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
        let parent = self.tables[at.ty].meta[at.slot].parent;
        let event = ChangeEvent {
            kind,
            key: self.key_at(at.ty, at.slot),
            parent: parent.map(|p| self.key_at(p.ty, p.slot)),
            origin: self.origin.clone(),
        };
        // A reader that went away stops being told.
        self.listeners.retain(|l| l.hear(&event));
    }
    /// Adds a boxed model of any type, as a child of the model `parent`
    /// names if given (used by sync and by networked stores).
    pub fn insert_boxed(&mut self, model: Box<dyn AnyModel>, parent: Option<&crate::ModelKey>) -> Result<()> {
        self.insert_near(model, parent.map(|p| (p.model_type(), p.unique_id())), None)
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
                key: ModelKey::from_unique_id(&table.schema.name, &uid),
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
}
