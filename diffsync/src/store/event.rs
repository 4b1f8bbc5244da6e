//! What a store tells about its changes: the events, and the listeners it
//! tells them to (the feeds of [`feed`](crate::feed) are such listeners;
//! the store knows nothing of them).

use serde::{Deserialize, Serialize};

use crate::key::{KeyValue, ModelKey};

/// What happened to a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Added.
    Created,
    /// Its attributes (or its parent link) changed.
    Updated,
    /// Removed.
    Deleted,
}

/// One change of one model.
///
/// On the wire (JSON: a peer's feed, a file) it is
/// `{"kind", "model_type", "key", "parent", "origin"}` with the unique id's
/// text as `key` and `parent` as `[type, unique id]`; `identifiers` (the
/// values by name) is read when present, as earlier versions wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireEvent", from = "WireEvent")]
pub struct ChangeEvent {
    /// What happened.
    pub kind: ChangeKind,
    /// The changed model's key.
    pub key: ModelKey,
    /// Its parent's key, when it has one.
    pub parent: Option<ModelKey>,
    /// Who wrote it, when the writer said (a sync tags its own writes, so
    /// a loop does not take them for new work).
    pub origin: Option<String>,
}

impl ChangeEvent {
    /// The changed model's type.
    pub fn model_type(&self) -> &str {
        self.key.model_type()
    }
}

/// A [`ChangeEvent`] as JSON carries it.
#[derive(Clone, Serialize, Deserialize)]
struct WireEvent {
    kind: ChangeKind,
    model_type: String,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identifiers: Option<crate::model::Attrs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
}

impl From<ChangeEvent> for WireEvent {
    fn from(e: ChangeEvent) -> WireEvent {
        WireEvent {
            kind: e.kind,
            model_type: e.key.model_type().to_string(),
            key: e.key.unique_id().to_string(),
            identifiers: None,
            parent: e
                .parent
                .map(|p| (p.model_type().to_string(), p.unique_id().to_string())),
            origin: e.origin,
        }
    }
}

/// The key from the identifier values when the sender gave them, else
/// from the unique id's text (which quotes whatever could be misread).
impl From<WireEvent> for ChangeEvent {
    fn from(w: WireEvent) -> ChangeEvent {
        let key = match w.identifiers {
            Some(ids) => ModelKey::new(w.model_type, ids.values().map(KeyValue::from)),
            None => ModelKey::from_unique_id(&w.model_type, &w.key),
        };
        ChangeEvent {
            kind: w.kind,
            key,
            parent: w.parent.map(|(t, k)| ModelKey::from_unique_id(&t, &k)),
            origin: w.origin,
        }
    }
}

/// Hears a store's change events (a feed's sending end).
pub(crate) trait Listener: Send + Sync {
    /// Takes one event; false once nobody reads any more (the store then
    /// stops telling this listener).
    fn hear(&self, event: &ChangeEvent) -> bool;
}
