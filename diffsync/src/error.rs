//! The crate's single error type.

use crate::sync::SyncReport;

/// Any error, boxed: the cause carried by [`HookError`] and by backend errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How an adapter hook (create, update, delete, batch) failed. Three kinds,
/// as in the Python library:
///
/// - [`Failed`](HookError::Failed): a recoverable error. The change is not
///   applied, its children are skipped, and the sync stops unless
///   `CONTINUE_ON_FAILURE` is set. Any error converts into it, so `?` works
///   in a hook.
/// - [`Soft`](HookError::Soft): the change was not applied (the Python
///   library's hook returning `None`). Its children are skipped; the sync
///   goes on even without `CONTINUE_ON_FAILURE`.
/// - [`Fatal`](HookError::Fatal): the system cannot take more changes. The
///   sync stops even with `CONTINUE_ON_FAILURE`.
///
/// ```
/// use diffsync::HookError;
///
/// fn hook(busy: bool, gone: bool) -> Result<(), HookError> {
///     if gone {
///         return Err(HookError::fatal("connection lost"));
///     }
///     if busy {
///         return Err(HookError::soft("locked by another user; next run"));
///     }
///     let port: u16 = "8080".parse()?; // any error is a recoverable failure
///     let _ = port;
///     Ok(())
/// }
/// assert!(matches!(hook(true, false), Err(HookError::Soft(_))));
/// assert!(matches!(hook(false, true), Err(HookError::Fatal(_))));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum HookError {
    /// A recoverable failure.
    Failed(BoxError),
    /// A soft failure: not applied, the sync goes on.
    Soft(BoxError),
    /// A fatal failure: the sync stops.
    Fatal(BoxError),
}

impl HookError {
    /// A soft failure with this cause.
    pub fn soft(cause: impl Into<BoxError>) -> Self {
        HookError::Soft(cause.into())
    }
    /// A fatal failure with this cause.
    pub fn fatal(cause: impl Into<BoxError>) -> Self {
        HookError::Fatal(cause.into())
    }
    /// The cause.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            HookError::Failed(e) | HookError::Soft(e) | HookError::Fatal(e) => &**e,
        }
    }
    /// The cause, owned.
    pub fn into_cause(self) -> BoxError {
        match self {
            HookError::Failed(e) | HookError::Soft(e) | HookError::Fatal(e) => e,
        }
    }
}

impl<E: Into<BoxError>> From<E> for HookError {
    fn from(e: E) -> Self {
        HookError::Failed(e.into())
    }
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.cause(), f)
    }
}

/// Everything that can go wrong in diffsync. Every variant names the model type
/// and key at fault where there is one.
///
/// Its `Debug` is its message and then each cause the message does not
/// already say, one a line: what `fn main() -> Result<(), diffsync::Error>`
/// prints, never the whole report an error carries (match the variant for
/// that).
#[derive(thiserror::Error)]
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
        source: BoxError,
    },
    /// A sync stopped at a failing element (a recoverable failure without
    /// `CONTINUE_ON_FAILURE`, a fatal one, or a failed batch). The report
    /// tells what happened to every element; the store reflects exactly
    /// what was applied.
    #[error("sync aborted at {model_type} {key:?}: {message}")]
    SyncAborted {
        /// Model type name of the failing element (empty if a batch failed as a whole).
        model_type: String,
        /// Unique id of the failing element.
        key: String,
        /// The hook's error message.
        message: String,
        /// The hook's error, when there is one.
        #[source]
        cause: Option<BoxError>,
        /// What happened to every element.
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
        source: BoxError,
    },
    /// Another writer changed a model since this store read it (optimistic
    /// concurrency in a shared store): nothing of the write was applied and
    /// the in-memory image is as it was. Refresh the store and diff again.
    #[error(
        "store {store:?}: {model_type} {key:?} was changed by another writer \
         (version {expected} expected, {found} found); nothing was written"
    )]
    Conflict {
        /// Store name (and where it lives).
        store: String,
        /// Model type name.
        model_type: String,
        /// Unique id.
        key: String,
        /// The version this store read.
        expected: u64,
        /// The version the backend holds.
        found: u64,
    },
    /// A bidirectional base could not be read or written.
    #[error("base {path}: {message}")]
    Base {
        /// The base file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A saved base does not fit a model type's schema any more: an
    /// identifier or an attribute's kind changed since it was saved.
    /// Nothing was written; rebuild the base with a resync.
    #[error("base {path}: {model_type}.{field}: {message}; the base cannot be used, rebuild it with a resync")]
    BaseSchema {
        /// Where the base came from.
        path: String,
        /// Model type name.
        model_type: String,
        /// The field that changed.
        field: String,
        /// How it changed.
        message: String,
    },
    /// A conflict strategy cannot be read, or does not fit a model type
    /// (`newest` for a type without a timestamp field, say).
    #[error("strategy {strategy:?}{}: {message}", if model_type.is_empty() { String::new() } else { format!(" for {model_type:?}") })]
    Strategy {
        /// The strategy as written.
        strategy: String,
        /// The model type it was meant for (empty when none).
        model_type: String,
        /// What is wrong.
        message: String,
    },
    /// A sync or reconcile would delete more of a side than allowed; nothing was written.
    #[error(
        "stopped before writing: {deletes} of {total} models of {side:?} would be deleted \
         (more than {share} of them); raise the limit if this is intended"
    )]
    TooManyDeletes {
        /// The side that would lose them.
        side: String,
        /// Deletes planned.
        deletes: usize,
        /// Models the side holds.
        total: usize,
        /// The limit, as a share.
        share: f64,
    },
    /// One side is empty while the base is not: it probably failed to load,
    /// and a reconcile would delete everything on the other side.
    #[error(
        "reconcile refused: {side:?} is empty but the base holds {base} models \
         (a side that failed to load?); allow an empty side to proceed"
    )]
    EmptySide {
        /// The empty side.
        side: String,
        /// Models in the base.
        base: usize,
    },
    /// A one-way sync from an empty source into a destination that holds
    /// models: the source probably failed to load, and the sync would
    /// delete everything. Nothing was written.
    #[error(
        "sync refused: source {source_name:?} holds no model but {dest:?} holds {models} \
         (a source that failed to load?); allow an empty source to proceed"
    )]
    EmptySource {
        /// The empty source.
        source_name: String,
        /// The destination.
        dest: String,
        /// Models the destination holds.
        models: usize,
    },
    /// A reconcile did not finish: a side's sync stopped (a hook failed, a
    /// server died, a store could not record what it wrote). What both
    /// systems acknowledged was applied, and the base took exactly that
    /// (save it); the rest is found again by the next run. The report
    /// tells what went where and each side's error.
    #[error(
        "reconcile unfinished: the sync to {side:?} stopped: {message}; \
         the base took only what both systems acknowledged, run again"
    )]
    Unfinished {
        /// The (first) side whose sync stopped.
        side: String,
        /// Its error, as text (both sides' errors are in the report).
        message: String,
        /// What the run did.
        report: Box<crate::bidir::BiReport>,
    },
    /// A reconcile's conflict log could not take the run's conflicts;
    /// nothing was written to either side.
    #[error("the conflict log failed; the reconcile stopped before writing")]
    ConflictLog {
        /// The sink's error.
        #[source]
        source: BoxError,
    },
    /// An adapter failed to load its system.
    #[error("adapter {adapter:?} failed to load: {source}")]
    Load {
        /// Adapter name.
        adapter: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A diff does not fit the destination store (a diff read back from
    /// JSON or edited by hand, or a store changed since the diff): found
    /// before any hook ran, so nothing was applied.
    #[error("invalid diff for store {store:?}: {model_type} {key:?}: {message}")]
    InvalidDiff {
        /// Destination store name.
        store: String,
        /// Model type name.
        model_type: String,
        /// Unique id.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A top-level model type that neither store knows (a typo in `top_level()`).
    #[error("unknown top-level model type {model_type:?} in adapter {adapter:?}; known types: [{known}]")]
    UnknownModelType {
        /// Adapter name.
        adapter: String,
        /// The type named.
        model_type: String,
        /// Types the stores know, comma separated.
        known: String,
    },
    /// The hooks ran, but applying their changes to the destination store
    /// failed (a networked store's backend, say). The report tells what the
    /// system took; the store's image holds the same changes.
    #[error("store {store:?} failed to record the sync's changes{}: {source}", at_part(.model_type, .key))]
    StoreApply {
        /// Store name.
        store: String,
        /// Model type name of the first change that failed (empty when the
        /// store failed to flush the whole sync).
        model_type: String,
        /// Its unique id.
        key: String,
        /// The store's error.
        #[source]
        source: Box<Error>,
        /// What happened to every element.
        report: Box<SyncReport>,
    },
}

fn at_part(model_type: &str, key: &str) -> String {
    if model_type.is_empty() {
        String::new()
    } else {
        format!(" at {model_type} {key:?}")
    }
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

impl Error {
    /// The key of the model at fault, where the error names one.
    pub fn model_key(&self) -> Option<crate::ModelKey> {
        let (model_type, key) = match self {
            Error::AlreadyExists { model_type, key, .. }
            | Error::NotFound { model_type, key, .. }
            | Error::TypeMismatch { model_type, key, .. }
            | Error::InvalidValue { model_type, key, .. }
            | Error::SyncAborted { model_type, key, .. }
            | Error::Store { model_type, key, .. }
            | Error::Conflict { model_type, key, .. }
            | Error::InvalidDiff { model_type, key, .. }
            | Error::StoreApply { model_type, key, .. } => (model_type, key),
            _ => return None,
        };
        (!model_type.is_empty() && !key.is_empty()).then(|| crate::ModelKey::from_unique_id(model_type, key))
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said = self.to_string();
        f.write_str(&said)?;
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            if !said.contains(&text) {
                write!(f, "\n  caused by: {text}")?;
                said.push_str(&text);
            }
            cause = c.source();
        }
        Ok(())
    }
}
