//! What computing a diff can fail with.

/// What computing a diff can fail with, besides a model's own errors. Part
/// of the crate's [`Error`](super::Error) (as [`Error::Diff`](super::Error::Diff)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
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
}
