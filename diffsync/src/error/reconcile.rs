//! What a two-way reconcile can fail with, besides what its syncs and
//! stores can.

use crate::model::BoxError;
use crate::report::BiReport;

/// What a bidirectional reconcile, its base or its strategies can fail with.
/// Part of the crate's [`Error`](crate::Error) (as
/// [`Error::Reconcile`](crate::Error::Reconcile)); a reconcile's sync or
/// store failures come as [`Error::Sync`](crate::Error::Sync) and
/// [`Error::Store`](crate::Error::Store).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
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
        /// Its error, with its causes, as text (both sides' errors are in the report).
        message: String,
        /// What the run did.
        report: Box<BiReport>,
    },
    /// A reconcile's conflict log could not take the run's conflicts;
    /// nothing was written to either side.
    #[error("the conflict log failed; the reconcile stopped before writing")]
    ConflictLog {
        /// The sink's error.
        #[source]
        source: BoxError,
    },
    /// The observer of [`reconcile_observed`](crate::bidir::reconcile_observed)
    /// failed (a journal that cannot record the plan): nothing was written
    /// to either side.
    #[error("the reconcile's observer failed; the reconcile stopped before writing")]
    Observer {
        /// The observer's error.
        #[source]
        source: BoxError,
    },
}
