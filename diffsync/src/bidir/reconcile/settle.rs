//! After the writes: what each side acknowledged, whether each conflict's
//! resolution reached its losing side.

use std::collections::HashSet;

use crate::diff::{Action, Diff};
use crate::error::{Error, Result, SyncError};
use crate::report::{ConflictRecord, Resolution, SyncReport};

/// A panic's message.
pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("a hook panicked: {text}")
}

/// A side's sync that did not run to its end with a report (it panicked,
/// or did not start): nothing of it is taken as acknowledged.
pub(super) fn not_run(message: String) -> Error {
    Error::Sync(SyncError::Aborted {
        key: None,
        cause: message.into(),
        report: Box::default(),
    })
}

/// How one side's sync of a run ended, as [`settle`] needs it.
pub(super) struct SideOutcome<'a> {
    /// What the side was to apply.
    pub(super) plan: &'a Diff,
    /// The keys of `plan` its system did not acknowledge.
    pub(super) unacked: &'a HashSet<(String, String)>,
    /// The side's sync panicked: what it planned is not known.
    pub(super) panicked: bool,
    /// What the side's sync reported (a change sent without an answer is
    /// not known to have reached it).
    pub(super) report: &'a SyncReport,
}

/// Sets each conflict's `applied`: whether its resolution reached the
/// losing side's system (`None` when that side's sync panicked, or its
/// write went without an answer).
pub(super) fn settle(conflicts: &mut [ConflictRecord], sides: [SideOutcome<'_>; 2]) {
    let planned: Vec<HashSet<(&str, &str)>> = sides
        .iter()
        .map(|side| {
            side.plan
                .iter()
                .filter(|(e, _)| e.action != Action::NoChange)
                .map(|(e, _)| (e.model_type(), e.unique_id()))
                .collect()
        })
        .collect();
    let reached = |side: usize, c: &ConflictRecord| -> Option<bool> {
        if !planned[side].contains(&(c.model_type(), c.key.unique_id())) {
            return Some(false);
        }
        let unknown = || {
            sides[side].report.elements.iter().any(|e| {
                matches!(e.outcome, crate::report::Outcome::Unknown(_))
                    && e.model_type() == c.model_type()
                    && e.key.unique_id() == c.key.unique_id()
            })
        };
        if sides[side].panicked || unknown() {
            return None;
        }
        Some(
            !sides[side]
                .unacked
                .contains(&(c.model_type().to_string(), c.key.unique_id().to_string())),
        )
    };
    for c in conflicts {
        c.applied = match c.resolution {
            Resolution::Left => reached(1, c),
            Resolution::Right => reached(0, c),
            Resolution::Merge => match (reached(0, c), reached(1, c)) {
                (None, _) | (_, None) => None,
                (Some(l), Some(r)) => {
                    let whole = |side: usize| {
                        !sides[side]
                            .unacked
                            .contains(&(c.model_type().to_string(), c.key.unique_id().to_string()))
                    };
                    Some((l || r) && whole(0) && whole(1))
                }
            },
            Resolution::Skip => Some(false),
        };
    }
}

/// The keys of `plan`'s changes that did not reach the side's system:
/// those its report does not show applied, or all of them when the
/// store or the adapter failed to write the sync as a whole.
pub(super) fn unacknowledged(plan: &Diff, report: &SyncReport, error: Option<&Error>) -> HashSet<(String, String)> {
    let changed = plan
        .iter()
        .map(|(e, _)| e)
        .filter(|e| e.action != Action::NoChange)
        .map(|e| (e.model_type().to_string(), e.unique_id().to_string()));
    let whole = match error {
        None => false,
        Some(Error::Sync(SyncError::Aborted { .. })) => false,
        Some(Error::Sync(SyncError::StoreApply { key, .. })) => key.is_none(),
        Some(_) => true,
    };
    if whole {
        return changed.collect();
    }
    let acked: HashSet<(&str, &str)> = report
        .elements
        .iter()
        .filter(|e| {
            matches!(
                e.outcome,
                crate::sync::Outcome::Applied | crate::sync::Outcome::RemovedWithParent
            )
        })
        .map(|e| (e.model_type(), e.key.unique_id()))
        .collect();
    let at = match error {
        Some(Error::Sync(SyncError::StoreApply { key: Some(key), .. })) => Some((key.model_type(), key.unique_id())),
        _ => None,
    };
    changed
        .filter(|(t, k)| {
            let key = (t.as_str(), k.as_str());
            !acked.contains(&key) || at == Some(key)
        })
        .collect()
}

/// The conflicts a side won whose resolution did not reach the losing
/// side (or is not known to have): (type, key, the left won, strategy).
pub(super) fn report_conflicts(conflicts: &[ConflictRecord]) -> Vec<(String, String, bool, String)> {
    conflicts
        .iter()
        .filter(|c| c.applied != Some(true))
        .filter_map(|c| {
            let left_won = match c.resolution {
                Resolution::Left => true,
                Resolution::Right => false,
                _ => return None,
            };
            Some((
                c.model_type().to_string(),
                c.key.unique_id().to_string(),
                left_won,
                c.strategy.clone(),
            ))
        })
        .collect()
}

/// A side's sync result as its report and its error, if it stopped.
pub(super) fn split(r: Result<SyncReport>, dest: &str, source: &str) -> (SyncReport, Option<Error>) {
    match r {
        Ok(report) => (report, None),
        Err(e) => {
            let report = match &e {
                Error::Sync(SyncError::Aborted { report, .. }) | Error::Sync(SyncError::StoreApply { report, .. }) => {
                    (**report).clone()
                }
                _ => SyncReport {
                    source: source.to_string(),
                    dest: dest.to_string(),
                    ..SyncReport::default()
                },
            };
            (report, Some(e))
        }
    }
}
