//! What a reconcile did.

use std::fmt;

use super::log::{ConflictRecord, ConflictSink};
use super::strategy::{ConflictKind, Resolution};
use crate::diff::Diff;
use crate::error::Error;
use crate::model::Chain;
use crate::sync::SyncReport;

/// What a [`reconcile`](fn@super::reconcile) did.
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

    /// Writes the conflicts to a sink (a file, a table).
    pub fn log_to(&self, sink: &mut dyn ConflictSink) -> std::result::Result<(), crate::BoxError> {
        sink.write(&self.conflicts)
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
