//! The crate's single error type.

use crate::sync::SyncReport;

/// An error raised by an adapter hook (create, update, delete, batch) or a loader.
pub type HookError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in diffsync. Every variant names the model type
/// and key at fault where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A different model with the same key is already stored.
    #[error("{model_type} {key:?} already exists in store {store:?}")]
    AlreadyExists {
        /// Store name.
        store: String,
        /// Model type name.
        model_type: String,
        /// Unique id.
        key: String,
    },
    /// No model with that key is stored.
    #[error("{model_type} {key:?} not found in store {store:?}")]
    NotFound {
        /// Store name.
        store: String,
        /// Model type name.
        model_type: String,
        /// Unique id.
        key: String,
    },
    /// A child of a type the parent does not declare.
    #[error(
        "{parent_type} {parent_key:?} cannot have children of type {child_type:?}; declared child types: [{allowed}]"
    )]
    WrongChildType {
        /// Parent model type.
        parent_type: String,
        /// Parent unique id.
        parent_key: String,
        /// Offending child type.
        child_type: String,
        /// Declared child types, comma separated.
        allowed: String,
    },
    /// A model type is used with a Rust type other than the one the store holds.
    #[error("{model_type}{}: this store holds {stored}, not {requested}", key_part(.key))]
    TypeMismatch {
        /// Model type name.
        model_type: String,
        /// Unique id of the model at fault (empty when registering a type).
        key: String,
        /// What the store holds.
        stored: String,
        /// What the caller used.
        requested: String,
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
    /// Two siblings share a shortname, so a diff could not tell them apart.
    #[error("{model_type} shortname {shortname:?} is shared by {first:?} and {second:?}")]
    ShortnameCollision {
        /// Model type name.
        model_type: String,
        /// The shared shortname.
        shortname: String,
        /// First unique id.
        first: String,
        /// Second unique id.
        second: String,
    },
    /// A field value does not fit the model's schema.
    #[error("{model_type} {key:?}: field {field:?}: {message}")]
    InvalidValue {
        /// Model type name.
        model_type: String,
        /// Unique id (or what is known of it).
        key: String,
        /// Field name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A schema is malformed or two schemas for the same type disagree.
    #[error("schema for {model_type:?}: {message}")]
    Schema {
        /// Model type name.
        model_type: String,
        /// What is wrong.
        message: String,
    },
    /// The destination's `sync_complete` hook failed (the changes were applied).
    #[error("sync_complete of adapter {adapter:?} failed: {source}")]
    SyncComplete {
        /// Adapter name.
        adapter: String,
        /// The adapter's error.
        #[source]
        source: HookError,
    },
    /// A sync stopped at a failing element (no `CONTINUE_ON_FAILURE`). The report
    /// tells what was applied before it; the store reflects exactly that.
    #[error("sync aborted at {model_type} {key:?}: {message}")]
    SyncAborted {
        /// Model type name of the failing element.
        model_type: String,
        /// Unique id of the failing element.
        key: String,
        /// The hook's error message.
        message: String,
        /// What happened to every element up to the failure.
        report: Box<SyncReport>,
    },
    /// A store's backend (a networked store's server, say) failed; the
    /// in-memory image was left as it was before the operation.
    #[error("store {store:?}: {model_type} {key:?}: {source}")]
    Store {
        /// Store name.
        store: String,
        /// Model type name.
        model_type: String,
        /// Unique id.
        key: String,
        /// The backend's error.
        #[source]
        source: HookError,
    },
    /// An adapter failed to load its system.
    #[error("adapter {adapter:?} failed to load: {source}")]
    Load {
        /// Adapter name.
        adapter: String,
        /// The cause.
        #[source]
        source: HookError,
    },
}

fn key_part(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" {key:?}")
    }
}

/// Shorthand for `Result<T, diffsync::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
