//! How hooks fail, what a failed change keeps of its cause, and what a
//! one-way diff or sync can fail with.

use std::fmt;

use crate::key::ModelKey;
use crate::model::BoxError;
use crate::report::{Cause, SyncReport};
use crate::store::StoreError;

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
    /// The system's answer never came (a peer's answer lost on the way):
    /// the change (for a batch, every change it held) may have been applied
    /// or not. The sync stops; the store does not take it
    /// ([`Outcome::Unknown`](crate::Outcome::Unknown)).
    Unknown(BoxError),
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
    /// An outcome not known, with this cause.
    pub fn unknown(cause: impl Into<BoxError>) -> Self {
        HookError::Unknown(cause.into())
    }
    /// The cause.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            HookError::Failed(e) | HookError::Soft(e) | HookError::Fatal(e) | HookError::Unknown(e) => &**e,
        }
    }
    /// The cause, owned.
    pub fn into_cause(self) -> BoxError {
        match self {
            HookError::Failed(e) | HookError::Soft(e) | HookError::Fatal(e) | HookError::Unknown(e) => e,
        }
    }
}

impl<E: Into<BoxError>> From<E> for HookError {
    fn from(e: E) -> Self {
        HookError::Failed(e.into())
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.cause(), f)
    }
}

/// What a one-way diff or sync can fail with. Part of the crate's
/// [`Error`](crate::Error) (as [`Error::Sync`](crate::Error::Sync)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A sync stopped at a failing element (a recoverable failure without
    /// `CONTINUE_ON_FAILURE`, a fatal one, or a failed batch). The report
    /// tells what happened to every element; the store reflects exactly
    /// what was applied. The hook's error is the `source`.
    #[error("sync aborted{}", crate::store::at_part(.key.as_ref()))]
    Aborted {
        /// The failing element's key (none if a batch failed as a whole).
        key: Option<ModelKey>,
        /// The hook's error.
        #[source]
        cause: Cause,
        /// What happened to every element.
        report: Box<SyncReport>,
    },
    /// The hooks ran, but applying their changes to the destination store
    /// failed (a networked store's backend, say). The report tells what the
    /// system took; the store's image holds the same changes.
    #[error("store {store:?} failed to record the sync's changes{}", crate::store::at_part(.key.as_ref()))]
    StoreApply {
        /// Store name.
        store: String,
        /// The key of the first change that failed (none when the store
        /// failed to flush the whole sync).
        key: Option<ModelKey>,
        /// The store's error.
        #[source]
        source: Box<StoreError>,
        /// What happened to every element.
        report: Box<SyncReport>,
    },
    /// The observer of a sync (a journal writing its plan ahead) failed:
    /// nothing was written to the destination.
    #[error("the sync's observer failed; nothing was written")]
    Observer {
        /// The observer's error.
        #[source]
        source: BoxError,
    },
    /// The destination's `sync_complete` hook failed (the changes were applied).
    #[error("sync_complete of adapter {adapter:?} failed")]
    Complete {
        /// Adapter name.
        adapter: String,
        /// The adapter's error.
        #[source]
        source: BoxError,
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
    /// A diff does not fit the destination store (a diff read back from
    /// JSON or edited by hand, or a store changed since the diff): found
    /// before any hook ran, so nothing was applied.
    #[error("invalid diff for store {store:?}: {key}: {message}")]
    InvalidDiff {
        /// Destination store name.
        store: String,
        /// The element's key.
        key: ModelKey,
        /// What is wrong.
        message: String,
    },
}

impl SyncError {
    /// The model type and unique id at fault, where the error names a model.
    pub(crate) fn at(&self) -> Option<ModelKey> {
        match self {
            SyncError::Aborted { key, .. } | SyncError::StoreApply { key, .. } => key.clone(),
            SyncError::InvalidDiff { key, .. } => Some(key.clone()),
            _ => None,
        }
    }
    /// What happened to every element, for a sync that stopped half-way.
    pub fn report(&self) -> Option<&SyncReport> {
        match self {
            SyncError::Aborted { report, .. } | SyncError::StoreApply { report, .. } => Some(report),
            _ => None,
        }
    }
}
