//! Reading models: by key, by type, parents and children.

use crate::key::ModelKey;
use crate::model::ModelError;
use crate::model::column::Slot;
use crate::model::column::TypedVec;
use crate::model::{AnyModel, DiffModel, StaticModel};
use crate::store::{Result, StoreError};

use crate::store::table::TypeIdx;

use super::{LocalStore, Near};

impl LocalStore {
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
        self.find(key.model_type(), key.unique_id())
    }

    /// Like [`get`](Self::get), but `None` when absent.
    pub fn get_opt<T: DiffModel>(&self, key: &crate::Key<T>) -> Result<Option<&T>> {
        match self.locate(key.model_type(), key.unique_id()) {
            None => Ok(None),
            Some((ty, slot)) => Ok(self.typed_vec::<T>(ty, key.unique_id())?.at(slot)),
        }
    }

    /// The model an erased key names (a runtime model's, or a key parsed
    /// from text), type-erased.
    pub fn get_dyn(&self, key: impl AsRef<crate::ModelKey>) -> Result<&dyn AnyModel> {
        let key = key.as_ref();
        self.find_dyn(key.model_type(), key.unique_id())
            .ok_or_else(|| self.not_found(key.model_type(), key.unique_id()))
    }

    /// Like [`get_dyn`](Self::get_dyn), but `None` when absent.
    pub fn get_opt_dyn(&self, key: impl AsRef<crate::ModelKey>) -> Option<&dyn AnyModel> {
        let key = key.as_ref();
        self.find_dyn(key.model_type(), key.unique_id())
    }

    /// The model an erased key names, as a `T`: a runtime model's
    /// [`DynModel`](crate::DynModel), say (an error if the store holds
    /// that type as another Rust type).
    pub fn get_as<T: DiffModel>(&self, key: impl AsRef<crate::ModelKey>) -> Result<&T> {
        let key = key.as_ref();
        self.find(key.model_type(), key.unique_id())
    }

    /// Whether the store holds the model `key` names.
    pub fn contains(&self, key: impl AsRef<crate::ModelKey>) -> bool {
        let key = key.as_ref();
        self.locate(key.model_type(), key.unique_id()).is_some()
    }

    /// The model of type `model_type` whose unique id is `uid`, type-erased.
    pub(crate) fn get_dyn_uid(&self, model_type: &str, uid: &str) -> Result<&dyn AnyModel> {
        self.find_dyn(model_type, uid)
            .ok_or_else(|| self.not_found(model_type, uid))
    }

    /// The `T` of type `model_type` whose unique id is `uid`.
    pub(crate) fn find<T: DiffModel>(&self, model_type: &str, uid: &str) -> Result<&T> {
        let (ty, slot) = self
            .locate(model_type, uid)
            .ok_or_else(|| self.not_found(model_type, uid))?;
        self.typed_vec::<T>(ty, uid)?
            .at(slot)
            .ok_or_else(|| self.not_found(model_type, uid))
    }

    /// [`get_dyn`](Self::get_dyn) for callers that only ask
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
    pub fn parent(&self, key: impl AsRef<crate::ModelKey>) -> Result<Option<crate::ModelKey>> {
        let key = key.as_ref();
        Ok(self.parent_slot(key)?.map(|(ty, slot)| self.key_at(ty, slot)))
    }

    /// The keys of a model's children of type `C`, in insertion order
    /// (an error if `C` is not one of the parent type's children).
    pub fn children<C: StaticModel>(&self, parent: impl AsRef<crate::ModelKey>) -> Result<Vec<crate::Key<C>>> {
        Ok(self
            .children_dyn(parent, C::NAME)?
            .into_iter()
            .map(crate::Key::assume)
            .collect())
    }

    /// The keys of a model's children of the type named `child_type`, in
    /// insertion order (an error if it is not one of the parent type's
    /// children): [`children`](Self::children) for runtime models.
    pub fn children_dyn(&self, parent: impl AsRef<crate::ModelKey>, child_type: &str) -> Result<Vec<crate::ModelKey>> {
        let parent = parent.as_ref();
        let (cty, slots) = self.child_slots(parent.model_type(), parent.unique_id(), child_type)?;
        Ok(slots.iter().map(|&c| self.key_at(cty, c)).collect())
    }

    /// The key of the model at `slot` of table `ty`; of a removed one, read
    /// back from the text the index kept.
    pub(crate) fn key_at(&self, ty: TypeIdx, slot: Slot) -> crate::ModelKey {
        let t = &self.tables[ty];
        match t.models.get(slot) {
            Some(m) => m.model_key(),
            None => crate::ModelKey::from_unique_id(&t.schema.name, t.key(slot)),
        }
    }

    /// Where the parent of the model `key` names is.
    fn parent_slot(&self, key: &crate::ModelKey) -> Result<Option<(TypeIdx, Slot)>> {
        let (ty, slot) = self
            .locate(key.model_type(), key.unique_id())
            .ok_or_else(|| self.not_found(key.model_type(), key.unique_id()))?;
        Ok(self.tables[ty].meta[slot].parent.map(|l| (l.ty, l.slot)))
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

    /// The children of one type of the model `(model_type, uid)`: their
    /// table and slots, in insertion order.
    fn child_slots(&self, model_type: &str, uid: &str, child_type: &str) -> Result<(TypeIdx, &[Slot])> {
        let (ty, slot) = self
            .locate(model_type, uid)
            .ok_or_else(|| self.not_found(model_type, uid))?;
        let t = &self.tables[ty];
        let ci = t
            .schema
            .child_index(child_type)
            .ok_or_else(|| StoreError::WrongChildType {
                parent: ModelKey::from_unique_id(model_type, uid),
                child_type: child_type.into(),
                allowed: t.schema.children.join(", "),
            })?;
        match t.child_types[ci] {
            None => Ok((ty, &[])),
            Some(cty) => Ok((cty, t.children(slot).get(ci).map_or(&[][..], |list| &list[..]))),
        }
    }

    /// The parent (type, unique id) of a model, if it was added as a child.
    pub(crate) fn parent_uid(&self, model_type: &str, uid: &str) -> Result<Option<(&str, &str)>> {
        let (ty, slot) = self
            .locate(model_type, uid)
            .ok_or_else(|| self.not_found(model_type, uid))?;
        Ok(self.tables[ty].meta[slot].parent.map(|l| {
            let pt = &self.tables[l.ty];
            (pt.schema.name.as_ref(), pt.key(l.slot))
        }))
    }
}
