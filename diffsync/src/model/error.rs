//! What a model can get wrong: a value that does not fit its schema, a
//! schema that contradicts itself, a Rust type other than the one expected.

/// Any error, boxed: the cause carried by hooks, backends and feeds.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A model, its values or its schema are wrong. Part of [`StoreError`](crate::StoreError)
/// and of the crate's [`Error`](crate::Error) (as [`Error::Model`](crate::Error::Model)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
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
}

impl ModelError {
    /// The model type and unique id at fault, where the error names a model.
    pub(crate) fn at(&self) -> Option<(&str, &str)> {
        match self {
            ModelError::InvalidValue { model_type, key, .. } | ModelError::TypeMismatch { model_type, key, .. } => {
                Some((model_type, key))
            }
            ModelError::Schema { .. } => None,
        }
    }
}

fn key_part(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" {key:?}")
    }
}

/// An error and its causes on one line, each said once: `"sync aborted at
/// device \"r1\": insert failed: disk full"`. Where a message already
/// holds its cause's text (an error written as `"{path}: {source}"`), the
/// walk stops there: that message speaks for the cause and what is under it.
///
/// ```
/// use diffsync::{Chain, Error, StoreError};
///
/// let err = Error::from(StoreError::Backend {
///     store: "redis".into(),
///     model_type: String::new(),
///     key: String::new(),
///     source: "connection refused".into(),
/// });
/// assert_eq!(Chain(&err).to_string(), r#"store "redis": the backend failed: connection refused"#);
/// ```
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if said.contains(&text) {
                break;
            }
            said.push_str(": ");
            said.push_str(&text);
            cause = c.source();
        }
        f.write_str(&said)
    }
}

impl std::fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
