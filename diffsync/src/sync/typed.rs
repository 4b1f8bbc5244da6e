//! A batch's changes of one model type, typed: what a batch hook of a
//! system that writes in bulk reads instead of erased changes.

use super::change::Batch;
use crate::diff::Action;
use crate::error::HookError;
use crate::key::{Key, ModelKey};
use crate::model::StaticModel;
use crate::store::LocalStore;

/// One change of a [`Batch`], typed and owned (see [`Batch::typed`]): the
/// values a bulk request is built from. After the request, record each
/// outcome with [`Batch::set_outcome`] at [`index`](Typed::index), and for
/// a create, set local-only fields (an id the system assigned) with
/// [`Batch::change_mut`]`(index).new_model_mut::<T>()`.
#[derive(Debug)]
pub struct Typed<T: StaticModel> {
    /// The change's position in the batch.
    pub index: usize,
    /// The changed model's key.
    pub key: Key<T>,
    /// What to do.
    pub edit: Edit<T>,
}

/// What a [`Typed`] change asks of the system: [`Write`](crate::Write)'s
/// cases, with owned models.
#[derive(Debug)]
pub enum Edit<T: StaticModel> {
    /// Create `new` (the model the store will hold).
    Create {
        /// The model to create.
        new: T,
        /// Its parent's key, if it is a child.
        parent: Option<ModelKey>,
    },
    /// Change `old` (as this side holds it) into `new`.
    Update {
        /// The model as this side holds it.
        old: T,
        /// The model as the change leaves it.
        new: T,
        /// The attributes that change, in schema order.
        changed: Vec<T::Field>,
    },
    /// Delete `old`.
    Delete {
        /// The model as this side holds it.
        old: T,
        /// Its descendants go with it (the model's
        /// `SKIP_CHILDREN_ON_DELETE`): the system removes them too.
        subtree: bool,
    },
}

impl Batch<'_, '_> {
    /// The changes of model type `T` to apply now, in order and typed,
    /// read with the adapter's `store` (where an update's and a delete's
    /// old model is). A change that is not to be applied (see
    /// [`should_apply`](Batch::should_apply): decided already, held back
    /// by a failed parent, or after the sync stopped) is left out, its
    /// outcome recorded; changes of other types are left as they are. A
    /// model the store does not hold as a `T` is an error naming it.
    pub fn typed<T: StaticModel>(&mut self, store: &LocalStore) -> Result<Vec<Typed<T>>, HookError> {
        let mut typed = Vec::new();
        for index in 0..self.len() {
            let change = &self.changes()[index];
            let Some(key) = change.key_as::<T>() else {
                continue;
            };
            if !matches!(change.action, Action::Create | Action::Update | Action::Delete) || !self.should_apply(index) {
                continue;
            }
            let change = &self.changes()[index];
            let edit = match change.action {
                Action::Create => Edit::Create {
                    new: change.created::<T>().cloned().ok_or_else(|| not_a::<T>(key.erased()))?,
                    parent: change.parent(),
                },
                Action::Update => {
                    let old = store.get(&key)?.clone();
                    let new = change.updated(&old)?;
                    let changed = change.changed_fields().filter_map(T::field).collect();
                    Edit::Update { old, new, changed }
                }
                _ => Edit::Delete {
                    old: store.get(&key)?.clone(),
                    subtree: change.removes_subtree(),
                },
            };
            typed.push(Typed { index, key, edit });
        }
        Ok(typed)
    }
}

fn not_a<T>(key: &ModelKey) -> HookError {
    HookError::Failed(
        format!(
            "{key} is not built as a `{}`: the batch's model of this type is another Rust type",
            std::any::type_name::<T>()
        )
        .into(),
    )
}
