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
    #[error("{model_type}:{key}: field {field:?}: {message}")]
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
    pub(crate) fn at(&self) -> Option<crate::ModelKey> {
        match self {
            ModelError::InvalidValue { model_type, key, .. } | ModelError::TypeMismatch { model_type, key, .. }
                if !model_type.is_empty() && !key.is_empty() =>
            {
                Some(crate::ModelKey::from_unique_id(model_type, key))
            }
            _ => None,
        }
    }
}

/// `:key` after a model type, as a key prints (`device:nyc__r1`), or
/// nothing without a key.
fn key_part(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(":{key}")
    }
}

/// An error and its causes on one line, each said once: `"sync aborted at
/// device \"r1\": insert failed: disk full"`. A cause is left out where
/// the message above it ends with it, as `": {cause}"` or whole (an error
/// of another crate written as `"{kind}: {source}"`), and the walk stops
/// at a [`Said`] (an error the message above already spoke for); a cause
/// whose text merely occurs inside another message is still said.
///
/// ```
/// use diffsync::{Chain, Error, StoreError};
///
/// let err = Error::from(StoreError::Backend {
///     store: "redis".into(),
///     key: None,
///     source: "connection refused".into(),
/// });
/// assert_eq!(Chain(&err).to_string(), r#"store "redis": the backend failed: connection refused"#);
/// ```
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl Chain<'_> {
    /// The texts of the causes beneath the error that its display does not
    /// already end with, in order, up to a [`Said`] one.
    pub(crate) fn causes(&self) -> Vec<String> {
        let mut above = self.0.to_string();
        let mut causes = Vec::new();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            if c.is::<Said>() {
                break;
            }
            let text = c.to_string();
            let said = above == text
                || above
                    .strip_suffix(text.as_str())
                    .is_some_and(|head| head.ends_with(": "));
            if !said {
                causes.push(text.clone());
            }
            above = text;
            cause = c.source();
        }
        causes
    }
}

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        for cause in self.causes() {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

/// An error whose words the error above it already holds (a backend's
/// message taken into an adapter's error, a hook's error and its causes
/// said as one message), kept beneath it for code that looks for it:
/// [`Chain`] stops here, the source chain goes on to the error.
///
/// ```
/// use diffsync::{Chain, Said};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("writing r1: {message}")]
/// struct Write { message: String, #[source] source: Said }
///
/// let backend: diffsync::BoxError = "disk full".into();
/// let err = Write { message: backend.to_string(), source: Said::new(backend) };
/// assert_eq!(Chain(&err).to_string(), "writing r1: disk full");
/// assert_eq!(std::error::Error::source(&err.source).unwrap().to_string(), "disk full");
/// ```
#[derive(Debug)]
pub struct Said(BoxError);

impl Said {
    /// `error`, said already by the error above it.
    pub fn new(error: BoxError) -> Said {
        Said(error)
    }

    /// The error.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for Said {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Said {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl std::fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct Said(&'static str, Option<Box<Said>>);

    impl std::fmt::Display for Said {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Said {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|s| s as _)
        }
    }

    fn chain(levels: &[&'static str]) -> String {
        let mut err = None;
        for text in levels.iter().rev() {
            err = Some(Box::new(Said(text, err)));
        }
        Chain(&*err.expect("one level")).to_string()
    }

    #[test]
    fn each_cause_is_said_once_even_when_its_text_occurs_in_a_message_above() {
        assert_eq!(
            chain(&[r#"adapter "cmdb" failed to load"#, "load", "disk full"]),
            r#"adapter "cmdb" failed to load: load: disk full"#
        );
        // A message that ends with its cause (another crate's "{kind}: {source}").
        assert_eq!(
            chain(&["db error: relation exists", "relation exists"]),
            "db error: relation exists"
        );
        assert_eq!(chain(&["a: b: c", "b: c", "c"]), "a: b: c");
        // The same text twice (a wrapper that forwards its message).
        assert_eq!(chain(&["x", "x", "y"]), "x: y");
    }
}
