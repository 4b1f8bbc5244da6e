//! Stores: where an adapter keeps its models. [`Store`] is the trait a store
//! implements; [`LocalStore`] is the in-memory default.
//!
//! A store keeps, per model type, its models in insertion order, an index from
//! unique id to model, and the parent → children links. Links live in the store,
//! not in the models, so every store (in memory or networked) persists them.

mod error;
pub(crate) mod event;
mod fingerprint;
mod keys;
mod local;
mod table;

pub use crate::model::AttrSource;
pub use error::StoreError;
pub(crate) use error::at_part;
pub(crate) use event::{ChangeEvent, ChangeKind, Listener};
pub use local::LocalStore;
pub(crate) use local::Near;
pub(crate) use table::*;

/// What store operations return.
pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;
use crate::ModelKey;
use crate::model::AnyModel;
use crate::model::column::Slot;

/// The operations diff and sync need from a store.
///
/// Reads go through [`Store::local`], the in-memory image of the store (for
/// [`LocalStore`], itself); a networked store keeps such an image and writes
/// every change through to its backend in the three mutating methods.
pub trait Store: Send + Sync {
    /// The store's name (for messages).
    fn name(&self) -> &str;
    /// The in-memory image used for reads and diffing.
    fn local(&self) -> &LocalStore;
    /// The image itself, when it is all the store is (an in-memory
    /// store): a sync then writes to it directly, with the slots its diff
    /// found. A store that writes through to a backend keeps `None`.
    #[doc(hidden)]
    fn local_mut(&mut self) -> Option<&mut LocalStore> {
        None
    }
    /// Adds a model, as a child of the model `parent` names if given.
    fn insert(&mut self, model: Box<dyn AnyModel>, parent: Option<&ModelKey>) -> Result<(), StoreError>;
    /// Replaces the attributes of the stored model `key` names;
    /// identifiers, local fields and links stay.
    fn update_attributes(&mut self, key: &ModelKey, source: AttrSource<'_>) -> Result<(), StoreError>;
    /// Removes the model `key` names; with `remove_children`, its whole subtree too.
    fn remove(&mut self, key: &ModelKey, remove_children: bool) -> Result<(), StoreError>;
    /// Removes several models, each `(key, remove_children)`: every one
    /// it can, and the first failure with its index. A store may do this
    /// faster than one by one (a sync removes consecutive deletes so).
    fn remove_many(&mut self, items: &[(ModelKey, bool)]) -> std::result::Result<(), (usize, StoreError)> {
        let mut first = None;
        for (i, (key, remove_children)) in items.iter().enumerate() {
            if let Err(e) = self.remove(key, *remove_children) {
                first.get_or_insert((i, e));
            }
        }
        first.map_or(Ok(()), Err)
    }
    /// A sync is about to apply its changes: a networked store may buffer
    /// its writes from here until [`end_batch`](Store::end_batch).
    fn begin_batch(&mut self) {}
    /// The sync has applied its changes: flush buffered writes, all or nothing.
    fn end_batch(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Recounts the image's subtree fingerprints that changes deep down
    /// left out of date (a sync calls it when done; nothing a user calls).
    #[doc(hidden)]
    fn recount_fingerprints(&mut self) {}
    /// Tags the change events of the writes made from now on (see
    /// [`LocalStore::set_origin`]).
    fn set_origin(&mut self, origin: Option<&str>) {
        let _ = origin;
    }
    /// Reads the backend again into the image (other processes' writes);
    /// nothing to read for an in-memory store.
    fn refresh(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Reads just these changed models again into the image. The default
    /// reads everything ([`refresh`](Store::refresh)).
    fn reread(&mut self, changed: &[ChangeEvent]) -> Result<(), StoreError> {
        let _ = changed;
        self.refresh()
    }
}

/// Where a model sits in a [`LocalStore`], as returned by the add methods:
/// pass it to [`LocalStore::add_under`] to add children without spelling the
/// parent's key (and without looking it up). A handle belongs to the store
/// that returned it; after a removal that compacts the store, older handles
/// are stale and [`StoreError::StaleHandle`] says so (never a wrong link).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handle {
    ty: TypeIdx,
    slot: Slot,
    store: u64,
    epoch: u64,
}
