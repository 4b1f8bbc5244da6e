//! What a store tells about its changes: the events, and the listeners it
//! tells them to (the feeds of [`feed`](crate::feed) are such listeners;
//! the store knows nothing of them).

use serde::{Deserialize, Serialize};

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// What happened.
    pub kind: ChangeKind,
    /// Model type name.
    pub model_type: String,
    /// Unique id.
    pub key: String,
    /// The identifier values, when the feed knows them (a consumer re-reads
    /// a model it has not seen yet by them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifiers: Option<crate::model::Attrs>,
    /// The parent (type, key), when the model has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<(String, String)>,
    /// Who wrote it, when the writer said (a sync tags its own writes, so
    /// a loop does not take them for new work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl ChangeEvent {
    /// The changed model's key.
    pub fn model_key(&self) -> crate::ModelKey {
        match &self.identifiers {
            Some(ids) => crate::ModelKey::new(self.model_type.clone(), ids.values().map(crate::KeyValue::from)),
            None => crate::ModelKey::from_unique_id(&self.model_type, &self.key),
        }
    }
}

/// Hears a store's change events (a feed's sending end).
pub(crate) trait Listener: Send + Sync {
    /// Takes one event; false once nobody reads any more (the store then
    /// stops telling this listener).
    fn hear(&self, event: &ChangeEvent) -> bool;
}
