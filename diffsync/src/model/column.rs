//! The erased column a store keeps one model type's values in: what a
//! model hands out for a store that meets its type for the first time, and
//! what the comparison reads typed, in place.

use std::any::Any;
use std::borrow::Cow;
use std::num::NonZeroU32;

use serde_json::Value;

use super::error::ModelError;
use super::{AnyModel, Attrs, DiffModel, SchemaRef};
use crate::chunked::Chunked;

type Result<T, E = ModelError> = std::result::Result<T, E>;

mod compare;

/// Where to take new attribute values from when updating a stored model.
#[derive(Clone, Copy, Debug)]
pub enum AttrSource<'a> {
    /// Copy every attribute of this model (typed when it has the same Rust type).
    Model(&'a dyn AnyModel),
    /// Set these named values.
    Values(&'a Attrs),
}

/// A Rust type: compared by its `TypeId`, named by its type name (for
/// messages only: type names are not unique).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RustType {
    pub(crate) id: std::any::TypeId,
    pub(crate) name: &'static str,
}

impl RustType {
    pub(crate) fn of<T: Any>() -> RustType {
        RustType {
            id: std::any::TypeId::of::<T>(),
            name: std::any::type_name::<T>(),
        }
    }
}

impl PartialEq for RustType {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

/// A model's place in its type's column (and in the store's table of that
/// type): an index that cannot be mixed up with a type's or a list's.
/// Kept as the index plus one, so that an `Option<Slot>` (a parent link,
/// a side of a pair) takes no more room than the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Slot(NonZeroU32);

impl Slot {
    /// The highest slot there can be.
    pub(crate) const MAX: Slot = Slot(NonZeroU32::MAX);

    /// The `i`-th slot.
    pub(crate) fn new(i: usize) -> Slot {
        let plus_one = u32::try_from(i).ok().and_then(|i| i.checked_add(1));
        Slot(
            plus_one
                .and_then(NonZeroU32::new)
                .expect("fewer than 2^32 - 1 models of a type"),
        )
    }

    /// Its position in the column.
    pub(crate) fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// Type-erased storage of one model type's values, in slots.
pub(crate) trait ModelVec: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn rust_type(&self) -> RustType;
    fn get(&self, slot: Slot) -> Option<&dyn AnyModel>;
    fn push_boxed(&mut self, model: Box<dyn AnyModel>, schema: &SchemaRef) -> Result<()>;
    fn clear(&mut self, slot: Slot);
    fn update_attrs(&mut self, slot: Slot, source: AttrSource<'_>) -> Result<()>;
    /// Whether `self[slot]` (source) and `other[oslot]` (destination) have equal attributes.
    fn attrs_equal(&self, slot: Slot, other: &dyn ModelVec, oslot: Slot) -> bool;
    /// Differing attributes as (name, source value, destination value).
    fn changes(&self, slot: Slot, other: &dyn ModelVec, oslot: Slot) -> Vec<(Cow<'static, str>, Value, Value)>;
    fn clone_box(&self) -> Box<dyn ModelVec>;
    /// An empty vector of the same model type.
    fn new_empty(&self) -> Box<dyn ModelVec>;
    /// A new model of this vector's type from values.
    fn build(&self, schema: &SchemaRef, ids: &Attrs, attrs: &Attrs) -> Result<Box<dyn AnyModel>>;
    /// Drops emptied slots, keeping the order of the others.
    fn compact(&mut self);
}

pub(crate) struct TypedVec<T>(pub(crate) Chunked<Option<T>>);

impl<T: DiffModel> TypedVec<T> {
    pub(crate) fn at(&self, slot: Slot) -> Option<&T> {
        self.0.get(slot.index()).and_then(Option::as_ref)
    }
}

impl<T: DiffModel> ModelVec for TypedVec<T> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn rust_type(&self) -> RustType {
        RustType::of::<T>()
    }
    fn get(&self, slot: Slot) -> Option<&dyn AnyModel> {
        self.at(slot).map(|m| m as &dyn AnyModel)
    }
    fn push_boxed(&mut self, model: Box<dyn AnyModel>, schema: &SchemaRef) -> Result<()> {
        let m = to_typed::<T>(model, schema)?;
        self.0.push(Some(m));
        Ok(())
    }
    fn clear(&mut self, slot: Slot) {
        if let Some(s) = self.0.get_mut(slot.index()) {
            *s = None;
        }
    }
    fn update_attrs(&mut self, slot: Slot, source: AttrSource<'_>) -> Result<()> {
        let Some(Some(m)) = self.0.get_mut(slot.index()) else {
            return Ok(());
        };
        match source {
            AttrSource::Model(src) => match src.downcast_ref::<T>() {
                Some(typed) => {
                    m.copy_attributes_from(typed);
                    Ok(())
                }
                None => m.set_attributes(&src.attributes()),
            },
            AttrSource::Values(values) => m.set_attributes(values),
        }
    }
    fn attrs_equal(&self, slot: Slot, other: &dyn ModelVec, oslot: Slot) -> bool {
        compare::attrs_equal(self, slot, other, oslot)
    }
    fn changes(&self, slot: Slot, other: &dyn ModelVec, oslot: Slot) -> Vec<(Cow<'static, str>, Value, Value)> {
        compare::changes(self, slot, other, oslot)
    }
    fn clone_box(&self) -> Box<dyn ModelVec> {
        Box::new(TypedVec(self.0.clone()))
    }
    fn new_empty(&self) -> Box<dyn ModelVec> {
        Box::new(TypedVec::<T>(Chunked::new()))
    }
    fn build(&self, schema: &SchemaRef, ids: &Attrs, attrs: &Attrs) -> Result<Box<dyn AnyModel>> {
        Ok(Box::new(T::from_parts(schema, ids, attrs)?))
    }
    fn compact(&mut self) {
        self.0.retain(Option::is_some);
    }
}

fn to_typed<T: DiffModel>(model: Box<dyn AnyModel>, schema: &SchemaRef) -> Result<T> {
    if !model.as_any().is::<T>() {
        // Another Rust type (e.g. a runtime model into a derived store): rebuild from values.
        return T::from_parts(schema, &model.identifiers(), &model.attributes());
    }
    let any: Box<dyn Any> = model;
    any.downcast::<T>().map(|b| *b).map_err(|_| ModelError::TypeMismatch {
        model_type: schema.name.to_string(),
        key: String::new(),
        stored: std::any::type_name::<T>().into(),
        requested: "another type".into(),
    })
}

#[doc(hidden)]
/// Opaque storage for one model type (used when a store meets a type it has not registered).
pub struct ErasedVec(pub(crate) Box<dyn ModelVec>);

#[doc(hidden)]
pub fn __new_vec<T: DiffModel>() -> ErasedVec {
    ErasedVec(Box::new(TypedVec::<T>(Chunked::new())))
}
