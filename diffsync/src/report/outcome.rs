//! What became of one element of a sync, and why a change failed.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{BoxError, Chain, Said};

/// Why an element was not attempted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// Its parent's change failed, soft-failed or was not attempted.
    ParentFailed,
    /// A natural-order delete whose child's delete did not apply.
    ChildFailed,
    /// A create whose key an earlier delete in the same sync had to free
    /// (a model moved to another parent), and that delete did not apply.
    DependencyFailed,
    /// The sync stopped at an earlier failure.
    Aborted,
}

/// What happened to one element.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
#[non_exhaustive]
pub enum Outcome {
    /// Not yet decided (inside a batch hook).
    Pending,
    /// Applied to the system and the store.
    Applied,
    /// A no-change element (kept as the parent of changes): nothing to apply.
    Unchanged,
    /// The hook failed (a recoverable error) with this cause.
    Failed(Cause),
    /// The hook soft-failed: not applied, the sync went on.
    SoftFailed(Cause),
    /// The hook failed fatally: the sync stopped here.
    Fatal(Cause),
    /// Written by a batch whose transaction was then rolled back.
    RolledBack,
    /// Removed from the store with its `SKIP_CHILDREN_ON_DELETE` parent
    /// (the system removed the subtree); no hook ran.
    RemovedWithParent,
    /// Not attempted.
    Skipped(SkipReason),
    /// Dry run: would be attempted.
    Planned,
    /// Sent to the system, whose answer never came (a peer's answer lost
    /// on the way): it may have been applied or not. The store did not
    /// take it; the next run learns which (a two-way run keeps the write
    /// pending in its base until it does).
    Unknown(Cause),
}

impl Outcome {
    /// The hook's message, for a failure.
    pub fn message(&self) -> Option<&str> {
        self.cause().map(Cause::message)
    }
    /// The hook's error, for a failure.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Outcome::Failed(c) | Outcome::SoftFailed(c) | Outcome::Fatal(c) | Outcome::Unknown(c) => Some(c),
            _ => None,
        }
    }
    /// Whether dependents may go ahead.
    pub(crate) fn is_ok(&self) -> bool {
        matches!(self, Outcome::Applied | Outcome::Planned | Outcome::Pending)
    }
    /// Whether a hook was called for it.
    pub(crate) fn attempted(&self) -> bool {
        matches!(
            self,
            Outcome::Applied
                | Outcome::Failed(_)
                | Outcome::SoftFailed(_)
                | Outcome::Fatal(_)
                | Outcome::RolledBack
                | Outcome::Unknown(_)
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Applied => f.write_str("applied"),
            Outcome::Unchanged => f.write_str("unchanged"),
            Outcome::Failed(m) => write!(f, "FAILED: {m}"),
            Outcome::SoftFailed(m) => write!(f, "soft-failed: {m}"),
            Outcome::Fatal(m) => write!(f, "FATAL: {m}"),
            Outcome::RolledBack => f.write_str("rolled back"),
            Outcome::RemovedWithParent => f.write_str("removed with parent"),
            Outcome::Skipped(SkipReason::ParentFailed) => f.write_str("skipped (parent failed)"),
            Outcome::Skipped(SkipReason::ChildFailed) => f.write_str("skipped (child failed)"),
            Outcome::Skipped(SkipReason::DependencyFailed) => f.write_str("skipped (dependency failed)"),
            Outcome::Skipped(SkipReason::Aborted) => f.write_str("skipped (sync aborted)"),
            Outcome::Planned => f.write_str("planned"),
            Outcome::Pending => f.write_str("pending"),
            Outcome::Unknown(m) => write!(f, "UNKNOWN (no answer): {m}"),
        }
    }
}

/// Why a change failed, as an [`Outcome`](crate::Outcome) keeps it: the
/// error's message with its causes, said once ("insert failed: disk full"),
/// and the error itself for code that wants its type
/// ([`downcast_ref`](Cause::downcast_ref)). Reads as the message (`Deref`
/// to `str`); compares, serializes and deserializes as the message (a
/// report read back from JSON has the text, not the error).
///
/// ```
/// use diffsync::Cause;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("port {0} is taken")]
/// struct PortTaken(u16);
///
/// let cause = Cause::from_error(Box::new(PortTaken(8080)));
/// assert_eq!(&*cause, "port 8080 is taken");
/// assert_eq!(cause.downcast_ref::<PortTaken>().map(|p| p.0), Some(8080));
/// assert_eq!(cause, Cause::from("port 8080 is taken"));
/// ```
#[derive(Clone)]
pub struct Cause {
    text: String,
    /// The error, said already by the text.
    error: Option<Arc<Said>>,
}

impl Cause {
    /// A cause kept with its error.
    pub fn from_error(error: BoxError) -> Cause {
        Cause {
            text: Chain(&*error).to_string(),
            error: Some(Arc::new(Said::new(error))),
        }
    }
    /// A cause with this text, keeping the error it came from (whose text
    /// the message may extend).
    pub(crate) fn new(text: String, error: Option<BoxError>) -> Cause {
        Cause {
            text,
            error: error.map(|e| Arc::new(Said::new(e))),
        }
    }
    /// The same error with another text (one that says more).
    pub(crate) fn retold(self, text: String) -> Cause {
        Cause { text, ..self }
    }
    /// The message, causes included.
    pub fn message(&self) -> &str {
        &self.text
    }
    /// The error, where this process made it (not for a report read back).
    pub fn error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.error.as_deref().map(Said::error)
    }
    /// The error as `E`, if it is one.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.error()?.downcast_ref::<E>()
    }
}

impl From<&str> for Cause {
    fn from(text: &str) -> Cause {
        Cause::from(text.to_string())
    }
}

impl From<String> for Cause {
    fn from(text: String) -> Cause {
        Cause { text, error: None }
    }
}

impl std::ops::Deref for Cause {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        self.text == other.text
    }
}

impl Eq for Cause {}

impl PartialEq<str> for Cause {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for Cause {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A cause's source is the error it keeps, as [`Said`] (the cause's
/// message holds its text): [`Chain`] stops there, code that walks the
/// sources finds it below.
impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Serialize for Cause {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Cause {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cause, D::Error> {
        String::deserialize(d).map(Cause::from)
    }
}
