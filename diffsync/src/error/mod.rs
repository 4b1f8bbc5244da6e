//! The crate's umbrella error: one variant per kind of operation, each
//! kind defined in its own layer (a model's values, a store, a one-way
//! sync, a two-way reconcile) and returned as such by that layer.

mod diff;
mod reconcile;
mod sync;

pub use diff::DiffError;
pub use reconcile::ReconcileError;
pub use sync::{HookError, SyncError};

use crate::model::{BoxError, ModelError};
use crate::store::StoreError;

/// Everything that can go wrong in diffsync, by kind of operation. Each
/// kind names the model type and key at fault where there is one.
///
/// The low layers return their own kind ([`LocalStore`](crate::LocalStore)
/// returns [`StoreError`], a model's constructors [`ModelError`]); the
/// operations that span them (diff, sync, reconcile, load) return this, and
/// `?` converts. A message says its own facts; its cause is its
/// [`source`](std::error::Error::source), never repeated in the text:
/// [`Chain`](crate::Chain) prints both on one line.
///
/// Its `Debug` is its message and then each cause the message does not
/// already say, one a line: what `fn main() -> Result<(), diffsync::Error>`
/// prints, never the whole report an error carries (match the variant for
/// that).
///
/// ```
/// use diffsync::{Error, KeyValue, ModelKey, StoreError};
///
/// fn explain(err: &Error) -> &'static str {
///     match err {
///         Error::Store(StoreError::NotFound { .. }) => "not there",
///         Error::Store(_) => "the store failed",
///         Error::Sync(_) => "the sync stopped",
///         _ => "something else",
///     }
/// }
/// let err = Error::from(StoreError::NotFound {
///     store: "cmdb".into(),
///     key: ModelKey::new("device", [KeyValue::Str("r1".into())]),
/// });
/// assert_eq!(explain(&err), "not there");
/// assert_eq!(err.model_key().unwrap().to_string(), "device:r1");
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model, its values or its schema are wrong.
    #[error(transparent)]
    Model(ModelError),
    /// A store operation failed.
    #[error(transparent)]
    Store(StoreError),
    /// A diff could not be computed.
    #[error(transparent)]
    Diff(DiffError),
    /// A one-way sync failed or stopped.
    #[error(transparent)]
    Sync(SyncError),
    /// A two-way reconcile, its base or its strategies failed.
    #[error(transparent)]
    Reconcile(ReconcileError),
    /// An adapter failed to load its system.
    #[error("adapter {adapter:?} failed to load")]
    Load {
        /// Adapter name.
        adapter: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

/// Shorthand for `Result<T, diffsync::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ModelError> for Error {
    fn from(e: ModelError) -> Error {
        Error::Model(e)
    }
}

/// A store's model error is the crate's [`Error::Model`]: one place to
/// match it, whichever layer found it.
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        match e {
            StoreError::Model(m) => Error::Model(m),
            e => Error::Store(e),
        }
    }
}

impl From<DiffError> for Error {
    fn from(e: DiffError) -> Error {
        Error::Diff(e)
    }
}

impl From<SyncError> for Error {
    fn from(e: SyncError) -> Error {
        Error::Sync(e)
    }
}

impl From<ReconcileError> for Error {
    fn from(e: ReconcileError) -> Error {
        Error::Reconcile(e)
    }
}

impl Error {
    /// The key of the model at fault, where the error names one.
    pub fn model_key(&self) -> Option<crate::ModelKey> {
        match self {
            Error::Model(e) => e.at(),
            Error::Store(e) => e.at(),
            Error::Sync(e) => e.at(),
            Error::Diff(_) | Error::Reconcile(_) | Error::Load { .. } => None,
        }
    }
}

/// The message, then each cause on a line of its own, as [`Chain`](crate::Chain) walks them.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())?;
        for cause in crate::model::Chain(self).causes() {
            write!(f, "\n  caused by: {cause}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Chain;

    #[test]
    fn a_cause_is_printed_once() {
        let err = Error::Load {
            adapter: "files".into(),
            source: "permission denied".into(),
        };
        assert_eq!(err.to_string(), r#"adapter "files" failed to load"#);
        assert_eq!(
            Chain(&err).to_string(),
            r#"adapter "files" failed to load: permission denied"#
        );
        assert_eq!(
            format!("{err:?}"),
            "adapter \"files\" failed to load\n  caused by: permission denied"
        );
    }

    #[test]
    fn a_cause_whose_words_the_message_holds_is_still_printed() {
        let err = Error::Load {
            adapter: "cmdb".into(),
            source: "load".into(),
        };
        assert_eq!(Chain(&err).to_string(), r#"adapter "cmdb" failed to load: load"#);
        assert_eq!(format!("{err:?}"), "adapter \"cmdb\" failed to load\n  caused by: load");
    }

    #[test]
    fn a_store_s_model_error_is_the_crate_s_model_error() {
        let err = Error::from(StoreError::Model(ModelError::Schema {
            model_type: "site".into(),
            message: "no identifier".into(),
        }));
        assert!(matches!(err, Error::Model(ModelError::Schema { .. })), "{err:?}");
    }
}
