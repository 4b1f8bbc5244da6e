//! What a store operation can fail with.

use crate::key::ModelKey;
use crate::model::{BoxError, ModelError};

/// A store operation failed: a key taken or missing, a child the parent's
/// schema does not allow, a stale handle, a networked store's backend or a
/// concurrent writer. What [`LocalStore`](crate::LocalStore) and every
/// [`Store`](crate::Store) return; part of the crate's
/// [`Error`](crate::Error) (as [`Error::Store`](crate::Error::Store)).
///
/// ```
/// use diffsync::{DiffModel, LocalStore, StoreError};
///
/// #[derive(DiffModel, Clone, Debug, PartialEq)]
/// #[diffsync(name = "site")]
/// struct Site {
///     #[diffsync(id)]
///     name: String,
/// }
///
/// let store = LocalStore::new("inventory");
/// let err = store.get(&Site::key("nyc".to_string())).unwrap_err();
/// assert!(matches!(err, StoreError::NotFound { .. }));
/// assert_eq!(err.to_string(), r#"site:nyc not found in store "inventory""#);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A different model with the same key is already stored.
    #[error("{key} already exists in store {store:?}")]
    AlreadyExists {
        /// Store name.
        store: String,
        /// The model's key.
        key: ModelKey,
    },
    /// No model with that key is stored.
    #[error("{key} not found in store {store:?}")]
    NotFound {
        /// Store name.
        store: String,
        /// The key looked for.
        key: ModelKey,
    },
    /// A child of a type the parent does not declare.
    #[error("{parent} cannot have children of type {child_type:?}; declared child types: [{allowed}]")]
    WrongChildType {
        /// The parent's key.
        parent: ModelKey,
        /// Offending child type.
        child_type: String,
        /// Declared child types, comma separated.
        allowed: String,
    },
    /// A [`Handle`](crate::store::Handle) that no longer (or never) designates
    /// a model of this store.
    #[error(
        "stale handle to a {model_type} in store {store:?}: the model was removed, the store compacted since, or the handle is from another store"
    )]
    StaleHandle {
        /// Store name.
        store: String,
        /// The handle's model type, if the store knows it.
        model_type: String,
    },
    /// A store's backend (a networked store's server, say) failed; the
    /// in-memory image was left as it was before the operation. The
    /// backend's error is the [`source`](std::error::Error::source).
    #[error("store {store:?}{}: the backend failed", at_part(.key.as_ref()))]
    Backend {
        /// Store name.
        store: String,
        /// The model the backend failed on (none when the whole store failed).
        key: Option<ModelKey>,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// Another writer changed a model since this store read it (optimistic
    /// concurrency in a shared store): nothing of the write was applied and
    /// the in-memory image is as it was. Refresh the store and diff again.
    #[error(
        "store {store:?}: {key} was changed by another writer \
         (version {expected} expected, {found} found); nothing was written"
    )]
    Conflict {
        /// Store name (and where it lives).
        store: String,
        /// The model's key.
        key: ModelKey,
        /// The version this store read.
        expected: u64,
        /// The version the backend holds.
        found: u64,
    },
    /// The model or its schema is wrong.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl StoreError {
    /// The model at fault, where the error names one.
    pub(crate) fn at(&self) -> Option<ModelKey> {
        match self {
            StoreError::AlreadyExists { key, .. }
            | StoreError::NotFound { key, .. }
            | StoreError::Conflict { key, .. } => Some(key.clone()),
            StoreError::Backend { key, .. } => key.clone(),
            StoreError::Model(m) => m.at(),
            StoreError::WrongChildType { .. } | StoreError::StaleHandle { .. } => None,
        }
    }
}

/// `" at <key>"`, or nothing when no model is named.
pub(crate) fn at_part(key: Option<&ModelKey>) -> String {
    key.map(|k| format!(" at {k}")).unwrap_or_default()
}
