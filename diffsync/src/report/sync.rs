//! What a sync did to each element.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::diff::Action;
use crate::key::ModelKey;

use super::outcome::Outcome;

/// What happened to one element in a sync. As JSON:
/// `{"model_type", "key", "action", "outcome"}`, `key` the unique id's text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireElement", from = "WireElement")]
pub struct ElementReport {
    /// The element's key.
    pub key: ModelKey,
    /// The element's action.
    pub action: Action,
    /// Its outcome.
    pub outcome: Outcome,
}

impl ElementReport {
    /// The element's model type.
    pub fn model_type(&self) -> &str {
        self.key.model_type()
    }
}

/// An [`ElementReport`] as JSON carries it.
#[derive(Clone, Serialize, Deserialize)]
struct WireElement {
    model_type: String,
    key: String,
    action: Action,
    outcome: Outcome,
}

impl From<ElementReport> for WireElement {
    fn from(e: ElementReport) -> WireElement {
        WireElement {
            model_type: e.key.model_type().to_string(),
            key: e.key.unique_id().to_string(),
            action: e.action,
            outcome: e.outcome,
        }
    }
}

/// The key read back from the unique id's text (which quotes whatever
/// could be misread).
impl From<WireElement> for ElementReport {
    fn from(w: WireElement) -> ElementReport {
        ElementReport {
            key: ModelKey::from_unique_id(&w.model_type, &w.key),
            action: w.action,
            outcome: w.outcome,
        }
    }
}

/// Totals of a sync report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Totals {
    /// Changes applied (including subtrees removed with their parent).
    pub applied: usize,
    /// Changes whose hook failed (recoverable or fatal).
    pub failed: usize,
    /// Changes whose hook soft-failed.
    pub soft_failed: usize,
    /// Changes rolled back with their batch.
    pub rolled_back: usize,
    /// Changes not attempted.
    pub skipped: usize,
    /// Changes planned (dry run).
    pub planned: usize,
    /// No-change elements.
    pub unchanged: usize,
    /// Changes sent whose outcome is not known (no answer came).
    #[serde(default)]
    pub unknown: usize,
}

/// The result of a sync: every element of the diff, in the order the sync
/// visited them, with its outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Source name.
    pub source: String,
    /// Destination name.
    pub dest: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// One entry per element.
    pub elements: Vec<ElementReport>,
}

impl SyncReport {
    /// Counts by outcome.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for e in &self.elements {
            match e.outcome {
                Outcome::Applied | Outcome::RemovedWithParent => t.applied += 1,
                Outcome::Failed(_) | Outcome::Fatal(_) => t.failed += 1,
                Outcome::SoftFailed(_) => t.soft_failed += 1,
                Outcome::RolledBack => t.rolled_back += 1,
                Outcome::Skipped(_) | Outcome::Pending => t.skipped += 1,
                Outcome::Planned => t.planned += 1,
                Outcome::Unchanged => t.unchanged += 1,
                Outcome::Unknown(_) => t.unknown += 1,
            }
        }
        t
    }
    /// Whether every change applied (or was planned).
    pub fn is_success(&self) -> bool {
        let t = self.totals();
        t.failed + t.soft_failed + t.rolled_back + t.skipped + t.unknown == 0
    }
    /// Whether the destination changed.
    pub fn changed(&self) -> bool {
        self.totals().applied > 0
    }
    /// The changes the system did not take (failed, skipped, rolled back,
    /// only planned): exactly what the next diff shows again.
    pub fn unfinished(&self) -> impl Iterator<Item = &ElementReport> {
        self.elements.iter().filter(|e| {
            e.action != Action::NoChange && !matches!(e.outcome, Outcome::Applied | Outcome::RemovedWithParent)
        })
    }

    /// The elements whose hook failed (recoverable, soft or fatal).
    pub fn failures(&self) -> impl Iterator<Item = &ElementReport> {
        self.elements.iter().filter(|e| {
            matches!(
                e.outcome,
                Outcome::Failed(_) | Outcome::SoftFailed(_) | Outcome::Fatal(_)
            )
        })
    }
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.totals();
        writeln!(
            f,
            "sync {} \u{2192} {}{}: applied {}, failed {}, soft-failed {}, rolled back {}, skipped {}, planned {}, unchanged {}",
            self.source,
            self.dest,
            if self.dry_run { " (dry run)" } else { "" },
            t.applied,
            t.failed,
            t.soft_failed,
            t.rolled_back,
            t.skipped,
            t.planned,
            t.unchanged
        )?;
        if t.unknown > 0 {
            writeln!(
                f,
                "  {} changes sent without an answer: their outcome is unknown",
                t.unknown
            )?;
        }
        for e in &self.elements {
            writeln!(
                f,
                "  {} {} {:?}: {}",
                e.action,
                e.model_type(),
                e.key.unique_id(),
                e.outcome
            )?;
        }
        Ok(())
    }
}
