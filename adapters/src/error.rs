//! The adapters' error type.

/// Everything an adapter can fail with. Each variant names where (path,
/// table, address) and, when known, the model type, key and field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// A file or object could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file, directory or object.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
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
    #[error("{origin}: {model_type} {key:?}: {message}")]
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
        /// Table, database or server address.
        origin: String,
        /// The backend's message.
        message: String,
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

/// Shorthand for `Result<T, AdapterError>`.
pub type Result<T, E = AdapterError> = std::result::Result<T, E>;
