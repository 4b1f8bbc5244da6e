//! The adapters' error type.

use diffsync::BoxError;

/// Everything an adapter can fail with. Each variant names where (path,
/// table, address) and, when known, the model type, key and field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// A file or object could not be read or written.
    #[error("{path}: cannot read or write it")]
    Io {
        /// The file, directory or object.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory to read does not exist (a mistyped path, say).
    /// Open a target that is to be created with an `open_or_empty`.
    #[error("{path}: no such file or directory (a target to be created is opened with open_or_empty)")]
    NotFound {
        /// The path.
        path: String,
    },
    /// A document is not well-formed.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file or object.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// A document is well-formed but not laid out as expected.
    #[error("{origin}: {message}")]
    Format {
        /// The file, table or object.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A record does not fit its model (missing field, wrong type).
    #[error("{origin}: {model_type}:{key}: {message}")]
    Model {
        /// The file, table or object.
        origin: String,
        /// Model type name.
        model_type: String,
        /// Unique id, as far as known.
        key: String,
        /// What serde said (it names the field).
        message: String,
    },
    /// A record in a file does not fit its model: an unknown field, a
    /// missing identifier, a value of the wrong type, a link to a parent
    /// that contradicts its nesting, a key loaded twice.
    #[error("{path}:{line}:{column}: {model_type}:{key}: {message}")]
    Record {
        /// The file.
        path: String,
        /// 1-based line of the record or field (0 when unknown).
        line: usize,
        /// 1-based column.
        column: usize,
        /// Model type name.
        model_type: String,
        /// The record's identifiers, `?` for a missing one.
        key: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A record names a parent that does not exist (a row whose parent row
    /// was deleted by another tool, say). Not fatal: the adapter loads the
    /// model without its parent link and reports this among its warnings.
    #[error(
        "{origin}: {model_type}:{key} names a parent {parent_type}:{parent_key} that does not exist; \
         loaded without it (a sync from a source that has it moves or deletes it)"
    )]
    Orphan {
        /// The table, object or key.
        origin: String,
        /// Model type name.
        model_type: String,
        /// Unique id.
        key: String,
        /// The parent's model type.
        parent_type: String,
        /// The parent key the record names.
        parent_key: String,
    },
    /// A model type the registry does not know.
    #[error("unknown model type {model_type:?}; registered: [{known}]")]
    UnknownModelType {
        /// The type found.
        model_type: String,
        /// Registered types.
        known: String,
    },
    /// A database or server error.
    #[error("{origin}: {message}")]
    Backend {
        /// Database file, server address (and table).
        origin: String,
        /// The backend's message.
        message: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// Writing one model to a database failed (a constraint, a lock).
    #[error("{origin}: writing {model_type}:{key}: {message}")]
    Write {
        /// Database file or server address, and table.
        origin: String,
        /// Model type name.
        model_type: String,
        /// Unique id.
        key: String,
        /// The backend's message.
        message: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// A server could not be reached.
    #[error("cannot connect to {address}: {message}")]
    Unreachable {
        /// The address tried.
        address: String,
        /// The cause.
        message: String,
    },
    /// A store operation failed (duplicate key, unknown parent, ...).
    #[error(transparent)]
    Store(#[from] diffsync::Error),
}

impl From<diffsync::StoreError> for AdapterError {
    fn from(e: diffsync::StoreError) -> Self {
        AdapterError::Store(e.into())
    }
}

impl AdapterError {
    /// A backend error at `origin`, keeping the error as its source.
    pub(crate) fn backend(origin: impl Into<String>, e: impl Into<BoxError>) -> Self {
        let (message, source) = said(e.into());
        AdapterError::Backend {
            origin: origin.into(),
            message,
            source,
        }
    }

    /// Writing one model failed: the backend's words in the message, its
    /// error kept as the source.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn write(origin: impl Into<String>, model_type: &str, key: &str, e: impl Into<BoxError>) -> Self {
        let (message, source) = said(e.into());
        AdapterError::Write {
            origin: origin.into(),
            model_type: model_type.to_string(),
            key: key.to_string(),
            message,
            source,
        }
    }

    /// Reads a feed position in the feed's notation, or says it is not one
    /// of this feed's (a typed `Format` error).
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
    pub(crate) fn position<T>(
        origin: &str,
        position: &diffsync::feed::Position,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, Self> {
        parse(position.as_str()).ok_or_else(|| AdapterError::Format {
            origin: origin.to_string(),
            message: format!("{:?} is not a position of this change feed", position.as_str()),
        })
    }
}

/// The backend's own words for an error, and the error as a source the
/// message already speaks for ([`diffsync::Said`]: [`diffsync::Chain`]
/// does not say it again; code that looks for it finds it).
fn said(error: BoxError) -> (String, BoxError) {
    let message = message_of(&*error);
    (message, Box::new(diffsync::Said::new(error)))
}

/// The backend's own words: a PostgreSQL server error's message without
/// the client's "db error:" wrapping, else the error's text.
pub(crate) fn message_of(e: &(dyn std::error::Error + 'static)) -> String {
    #[cfg(feature = "postgres")]
    if let Some(db) = e
        .downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::as_db_error)
    {
        return db.message().to_string();
    }
    e.to_string()
}

/// An adapter error where the core wants a base error (a base store's).
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) fn base_error(origin: &str, e: AdapterError) -> diffsync::Error {
    match e {
        AdapterError::Store(e) => e,
        e => diffsync::ReconcileError::Base {
            path: origin.to_string(),
            message: diffsync::Chain(&e).to_string(),
        }
        .into(),
    }
}

/// An adapter's error reading its system again, as the core reports it
/// (`Error::Load`, naming the adapter).
pub(crate) fn load_failed(adapter: &str) -> impl Fn(AdapterError) -> diffsync::Error + '_ {
    move |e| diffsync::Error::Load {
        adapter: adapter.to_string(),
        source: Box::new(e),
    }
}

/// Shorthand for `Result<T, AdapterError>`.
pub type Result<T, E = AdapterError> = std::result::Result<T, E>;
