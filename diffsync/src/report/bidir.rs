//! What a two-way run reports: its conflicts, how each was resolved, and
//! what each side's sync did.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sync::SyncReport;
use crate::diff::Diff;
use crate::error::Error;
use crate::key::ModelKey;
use crate::model::{Attrs, Chain};

/// How a conflict is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Resolution {
    /// The left side's version goes to both sides.
    Left,
    /// The right side's version goes to both sides.
    Right,
    /// Neither side changes; the conflict stays, and the next run finds it again.
    Skip,
    /// Attributes changed on one side only are merged: each side takes the
    /// other's changes (with [`Strategy::Merge`](crate::bidir::Strategy::Merge), attributes changed on
    /// both go to its fallback; from a closure, such an overlap leaves the
    /// conflict unapplied). Only for update/update conflicts.
    Merge,
}

impl Resolution {
    /// What it decided, in words: `left wins`, `right wins`, `not
    /// applied`, `merged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Left => "left wins",
            Resolution::Right => "right wins",
            Resolution::Skip => "not applied",
            Resolution::Merge => "merged",
        }
    }
}

/// What kind of conflict: what each side did since the base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ConflictKind {
    /// Both sides changed the model's attributes, differently.
    UpdateUpdate,
    /// The left side changed the model, the right side deleted it.
    UpdateDelete,
    /// The left side deleted the model, the right side changed it.
    DeleteUpdate,
    /// Both sides created the key, with different attributes.
    CreateCreate,
    /// One side deleted the model while the other changed something below it.
    ChildUnderDelete,
}

impl ConflictKind {
    /// The kind's name, as in the log: `update/update`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::UpdateUpdate => "update/update",
            ConflictKind::UpdateDelete => "update/delete",
            ConflictKind::DeleteUpdate => "delete/update",
            ConflictKind::CreateCreate => "create/create",
            ConflictKind::ChildUnderDelete => "child-under-delete",
        }
    }
}

/// One logged conflict. As JSON (a base, a journal, a log line) the key
/// is two fields: `model_type` and `key`, the unique id's text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "WireConflict", from = "WireConflict")]
pub struct ConflictRecord {
    /// The model's key.
    pub key: ModelKey,
    /// What each side did.
    pub kind: ConflictKind,
    /// Attributes of the agreed version.
    pub base: Option<Attrs>,
    /// Attributes of the left side's version.
    pub left: Option<Attrs>,
    /// Attributes of the right side's version.
    pub right: Option<Attrs>,
    /// The strategy that decided.
    pub strategy: String,
    /// What it decided.
    pub resolution: Resolution,
    /// The attribute read as the models' clock: the one the strategy
    /// compared, else the type's declared timestamp, else its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    /// The left version's clock value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_clock: Option<Value>,
    /// The right version's clock value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right_clock: Option<Value>,
    /// The left side's replica id (its store's name).
    pub left_replica: String,
    /// The right side's replica id.
    pub right_replica: String,
    /// The run that met the conflict (unique per reconcile).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run: String,
    /// Whether the resolution reached the systems: `Some(true)` once the
    /// winner's version (or the merge) is in the losing side's system,
    /// `Some(false)` when it did not get there (or nothing was to be
    /// applied), `None` while not known: a record written ahead of the
    /// writes whose run then stopped before it could tell (a crash), or
    /// whose losing side's sync panicked (what it wrote is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<bool>,
    /// The version the resolution gives both sides: the winner's, or the
    /// merge (`None`: deleted, or nothing applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Attrs>,
}

/// A [`ConflictRecord`] as JSON carries it.
#[derive(Clone, Serialize, Deserialize)]
struct WireConflict {
    model_type: String,
    key: String,
    kind: ConflictKind,
    base: Option<Attrs>,
    left: Option<Attrs>,
    right: Option<Attrs>,
    strategy: String,
    resolution: Resolution,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clock: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left_clock: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    right_clock: Option<Value>,
    left_replica: String,
    right_replica: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    applied: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Attrs>,
}

impl ConflictRecord {
    /// The model type.
    pub fn model_type(&self) -> &str {
        self.key.model_type()
    }
}

impl From<ConflictRecord> for WireConflict {
    fn from(c: ConflictRecord) -> WireConflict {
        WireConflict {
            model_type: c.key.model_type().to_string(),
            key: c.key.unique_id().to_string(),
            kind: c.kind,
            base: c.base,
            left: c.left,
            right: c.right,
            strategy: c.strategy,
            resolution: c.resolution,
            clock: c.clock,
            left_clock: c.left_clock,
            right_clock: c.right_clock,
            left_replica: c.left_replica,
            right_replica: c.right_replica,
            run: c.run,
            applied: c.applied,
            result: c.result,
        }
    }
}

/// The key read back from the unique id's text (which quotes whatever
/// could be misread).
impl From<WireConflict> for ConflictRecord {
    fn from(w: WireConflict) -> ConflictRecord {
        ConflictRecord {
            key: ModelKey::from_unique_id(&w.model_type, &w.key),
            kind: w.kind,
            base: w.base,
            left: w.left,
            right: w.right,
            strategy: w.strategy,
            resolution: w.resolution,
            clock: w.clock,
            left_clock: w.left_clock,
            right_clock: w.right_clock,
            left_replica: w.left_replica,
            right_replica: w.right_replica,
            run: w.run,
            applied: w.applied,
            result: w.result,
        }
    }
}

impl fmt::Display for ConflictRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resolution = self.resolution.as_str();
        write!(
            f,
            "{} {} {:?}: {resolution} ({})",
            self.kind.as_str(),
            self.model_type(),
            self.key.unique_id(),
            self.strategy
        )?;
        let none = Attrs::new();
        let (l, r) = (
            self.left.as_ref().unwrap_or(&none),
            self.right.as_ref().unwrap_or(&none),
        );
        let names: Vec<&str> = l
            .keys()
            .chain(r.keys())
            .map(|k| k.as_ref())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let show = |a: &Option<Attrs>, k: &str| match a.as_ref().map(|a| a.get(k)) {
            None => "-".to_string(),
            Some(None) => "-".to_string(),
            Some(Some(v)) => v.as_str().map_or_else(|| v.to_string(), str::to_string),
        };
        if let Some(clock) = &self.clock {
            let v = |c: &Option<Value>| c.as_ref().map_or("-".to_string(), Value::to_string);
            write!(
                f,
                "\n  clock {clock}: {}={} {}={}",
                self.left_replica,
                v(&self.left_clock),
                self.right_replica,
                v(&self.right_clock)
            )?;
        }
        for k in names.into_iter().filter(|k| l.get(k) != r.get(k)) {
            write!(
                f,
                "\n  {k}    base({})    left({})    right({})",
                show(&self.base, k),
                show(&self.left, k),
                show(&self.right, k)
            )?;
            if self.resolution != Resolution::Skip {
                write!(f, "    → {}", show(&self.result, k))?;
            }
        }
        Ok(())
    }
}

/// What a [`reconcile`](fn@crate::bidir::reconcile) did.
#[derive(Debug)]
#[non_exhaustive]
pub struct BiReport {
    /// What went (in a dry run: would go) to the left side, as a diff.
    pub plan_left: Diff,
    /// What went (would go) to the right side.
    pub plan_right: Diff,
    /// The changes that went to the left side (its sync's report).
    pub to_left: SyncReport,
    /// The changes that went to the right side.
    pub to_right: SyncReport,
    /// Every conflict, with its resolution.
    pub conflicts: Vec<ConflictRecord>,
    /// Models both sides changed the same way (resolved silently).
    pub identical: usize,
    /// The left side's sync stopped with this error (its report is in `to_left`).
    pub left_error: Option<Error>,
    /// The right side's sync stopped with this error.
    pub right_error: Option<Error>,
}

impl BiReport {
    /// The side whose sync stopped first, and its error (`None`: both
    /// syncs ran to their end).
    pub fn stopped(&self) -> Option<(&str, &Error)> {
        match (&self.left_error, &self.right_error) {
            (Some(e), _) => Some((self.to_left.dest.as_str(), e)),
            (None, Some(e)) => Some((self.to_right.dest.as_str(), e)),
            (None, None) => None,
        }
    }

    /// Conflicts the run left unapplied (`safe`, a closure's skip, a merge
    /// that could not merge): they stay until one side changes again.
    pub fn unresolved(&self) -> usize {
        self.conflicts
            .iter()
            .filter(|c| c.resolution == Resolution::Skip)
            .count()
    }

    /// Whether both syncs completed and no conflict was left unapplied.
    pub fn is_clean(&self) -> bool {
        self.left_error.is_none()
            && self.right_error.is_none()
            && self.to_left.is_success()
            && self.to_right.is_success()
            && self.conflicts.iter().all(|c| c.resolution != Resolution::Skip)
    }

    /// The plan as text: the writes to each side ([`Diff::to_writes`]) and
    /// each conflict.
    pub fn plan(&self) -> String {
        let mut out = String::new();
        for (arrow, d) in [("left", &self.plan_left), ("right", &self.plan_right)] {
            out.push_str(&format!("to the {arrow} ({}):\n", d.dest));
            for line in d.to_writes().lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        out.push_str(&format!("conflicts: {}", self.conflicts.len()));
        for c in &self.conflicts {
            for line in c.to_string().lines() {
                out.push_str(&format!("\n  {line}"));
            }
        }
        out
    }

    /// Counts of conflicts by kind.
    pub fn conflicts_by_kind(&self) -> Vec<(ConflictKind, usize)> {
        count_by(&self.conflicts, |c| c.kind)
    }

    /// Counts of conflicts by the strategy that decided them.
    pub fn conflicts_by_strategy(&self) -> Vec<(String, usize)> {
        count_by(&self.conflicts, |c| c.strategy.clone())
    }
}

fn count_by<K: Ord>(records: &[ConflictRecord], key: impl Fn(&ConflictRecord) -> K) -> Vec<(K, usize)> {
    let mut counts: std::collections::BTreeMap<K, usize> = Default::default();
    for c in records {
        *counts.entry(key(c)).or_default() += 1;
    }
    counts.into_iter().collect()
}

impl fmt::Display for BiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (l, r) = (self.to_left.totals(), self.to_right.totals());
        for (dest, e) in [
            (&self.to_left.dest, &self.left_error),
            (&self.to_right.dest, &self.right_error),
        ] {
            if let Some(e) = e {
                writeln!(f, "UNFINISHED: the sync to {dest} stopped: {}", Chain(e))?;
            }
        }
        write!(
            f,
            "to {}: {} applied, {} failed; to {}: {} applied, {} failed; {} conflicts, {} identical changes",
            self.to_left.dest,
            l.applied,
            l.failed,
            self.to_right.dest,
            r.applied,
            r.failed,
            self.conflicts.len(),
            self.identical
        )?;
        for c in &self.conflicts {
            write!(f, "\n{c}")?;
        }
        Ok(())
    }
}
