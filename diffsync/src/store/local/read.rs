//! Reading models: by key, by type, parents and children.

use crate::model::ModelError;
use crate::model::column::TypedVec;
use crate::model::{AnyModel, DiffModel, IdPart, StaticModel, unique_id_of};
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
}
