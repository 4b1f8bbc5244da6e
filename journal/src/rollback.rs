//! Undoing a recorded run, only where the target still holds what it wrote.

use diffsync::digest::digest_of;
use diffsync::{
    Action, Adapter, AdapterExt, AttrSource, Attrs, Chain, LocalStore, MemoryAdapter, ModelKey, Options, Outcome, Sink,
    Store, SyncReport,
};

use crate::error::JournalError;
use crate::journal::Journal;
use crate::record::{Element, Mode, RunId, RunResult, Side};

/// What a rollback did.
#[derive(Debug)]
pub struct Rollback {
    /// The rollback's own run in the journal (`None`: nothing to undo and
    /// nothing left alone). A rollback that left changes alone is
    /// recorded as partial, with them ([`Journal::left_alone`]).
    pub run: Option<RunId>,
    /// The sync that applied the inverse changes (planned, for a dry run).
    pub report: SyncReport,
    /// The changes left alone because the target changed since the run.
    pub conflicts: Vec<RollbackConflict>,
}

/// A change of the run that was not undone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackConflict {
    /// The model's key.
    pub key: diffsync::ModelKey,
    /// Why it was left alone.
    pub reason: String,
}

impl RollbackConflict {
    /// The model type.
    pub fn model_type(&self) -> &str {
        self.key.model_type()
    }
}

/// How a change is undone.
enum Inverse<'a> {
    /// A create: delete what it made.
    Remove(&'a Element),
    /// A delete: make it again, under its parent.
    Restore(&'a Element),
    /// An update: the values from before.
    Revert(&'a Element),
}

impl Journal {
    /// Undoes a recorded run on `target`: a model it created is deleted,
    /// one it updated gets its values from before, one it deleted (a whole
    /// subtree, parents first) is made again. Only where the target still
    /// holds exactly what the run wrote (compared by digest): a model
    /// changed, deleted or made again since is left alone and reported as
    /// a conflict, by key, and so is a model the run created that has
    /// children written since. The inverse changes go through the target's
    /// own hooks as one sync, in a safe order, and the rollback is recorded
    /// as a run of its own (so it can be rolled back in turn). A dry run
    /// plans it and writes nothing to the target. A run the process died
    /// in can be undone too: its changes whose result the target holds are
    /// undone. Of a two-way run, the changes that went to `target` (its
    /// left or its right side, by name) are undone.
    pub fn rollback<T: Sink + ?Sized>(
        &mut self,
        run: RunId,
        target: &mut T,
        dry_run: bool,
    ) -> Result<Rollback, JournalError> {
        let mut plan = self.plan_rollback(run, target)?;
        if plan.keys.is_empty() {
            // Nothing to undo; what was left alone is recorded all the same.
            let own = match plan.conflicts.is_empty() || dry_run {
                true => None,
                false => Some(self.record_left_alone(run, target.name(), &plan.conflicts)?),
            };
            crate::metrics::record_rollback_conflicts(target.name(), plan.conflicts.len());
            return Ok(Rollback {
                run: own,
                ..plan.nothing()
            });
        }
        let source = plan.source(run);
        let mut opts = plan.options(dry_run);
        let (own, report) = self.record(Mode::Rollback, Some(run), target, &source, &mut opts, &plan.conflicts)?;
        crate::metrics::record_rollback_conflicts(target.name(), plan.conflicts.len());
        Ok(Rollback {
            run: Some(own),
            report,
            conflicts: plan.conflicts,
        })
    }

    /// What [`rollback`](Journal::rollback) would do, planned against
    /// `target` and recorded nowhere: for a preview a user confirms
    /// before the rollback runs (whose own dry run is journaled).
    pub fn rollback_preview<T: Sink + ?Sized>(&self, run: RunId, target: &mut T) -> Result<Rollback, JournalError> {
        let mut plan = self.plan_rollback(run, target)?;
        if plan.keys.is_empty() {
            return Ok(plan.nothing());
        }
        let source = plan.source(run);
        let report = target
            .sync_from_with(&source, &mut plan.options(true))
            .map_err(|source| JournalError::Preview {
                run,
                source: Box::new(source),
            })?;
        Ok(Rollback {
            run: None,
            report,
            conflicts: plan.conflicts,
        })
    }

    /// The inverse changes of `run` that `target` can take (their keys and
    /// the store as it would be after them), and the ones it cannot.
    fn plan_rollback<T: Adapter + ?Sized>(&self, run: RunId, target: &T) -> Result<Plan, JournalError> {
        let recorded = self.run(run)?;
        let refuse = |reason: String| JournalError::NotUndoable { run, reason };
        if recorded.dry_run {
            return Err(refuse("it was a dry run: it changed nothing".into()));
        }
        // A two-way run wrote to both of its systems: `target` is one of
        // them, and only what went to it is undone.
        let side = match recorded.mode {
            Mode::TwoWay if target.name() == recorded.source => Some(Side::Left),
            Mode::TwoWay if target.name() == recorded.target => Some(Side::Right),
            _ if target.name() == recorded.target => None,
            _ => {
                return Err(refuse(format!(
                    "it wrote to {:?}, not to {:?}",
                    recorded.target,
                    target.name()
                )));
            }
        };
        let unfinished = recorded.result == RunResult::Unfinished;
        let elements = self.elements(run)?;
        let done = elements.iter().filter(|e| e.side == side).filter(|e| match e.outcome {
            Outcome::Applied | Outcome::RemovedWithParent => true,
            Outcome::Pending => unfinished,
            _ => false,
        });
        let store = target.store().local();
        let mut conflicts = Vec::new();
        let mut inverses = Vec::new();
        for e in done {
            match check(store, e) {
                Ok(Some(inverse)) => inverses.push(inverse),
                Ok(None) => {}
                Err(reason) => conflicts.push(conflict(e, reason)),
            }
        }
        let mut view = store.clone();
        let mut keys = Vec::new();
        // Values back first, then what was deleted (parents first), then
        // what was created (children first).
        for inverse in &inverses {
            if let Inverse::Revert(e) = inverse {
                let before = e.before.clone().unwrap_or_default();
                match view.update_attributes(&e.key, AttrSource::Values(&before)) {
                    Ok(()) => keys.push(e.key.clone()),
                    Err(err) => conflicts.push(conflict(e, Chain(&err).to_string())),
                }
            }
        }
        for inverse in &inverses {
            if let Inverse::Restore(e) = inverse {
                match restore(&mut view, e) {
                    Ok(()) => keys.push(e.key.clone()),
                    Err(reason) => conflicts.push(conflict(e, reason)),
                }
            }
        }
        // A delete of a parent whose children's deletes did not apply cut
        // their links (the store leaves them parentless, an SQL adapter
        // clears their parent column): a write no change of the run
        // records. Restored, the parent takes them back.
        for inverse in &inverses {
            let Inverse::Restore(p) = inverse else { continue };
            for child in elements
                .iter()
                .filter(|e| e.side == side && e.parent.as_ref() == Some(&p.key))
            {
                let cut = view.parent(&child.key).is_ok_and(|parent| parent.is_none()) && view.contains(&p.key);
                if cut {
                    match relink(&mut view, &child.key, &p.key, &mut keys) {
                        Ok(()) => {}
                        Err(reason) => conflicts.push(conflict(child, reason)),
                    }
                }
            }
        }
        for inverse in inverses.iter().rev() {
            if let Inverse::Remove(e) = inverse {
                let below = view.subtree_fingerprint(&e.key).map_or(0, |f| f.count);
                if below > 1 {
                    conflicts.push(conflict(e, "it has children written since the run".into()));
                    continue;
                }
                match view.remove(&e.key, false) {
                    Ok(()) => keys.push(e.key.clone()),
                    Err(err) => conflicts.push(conflict(e, Chain(&err).to_string())),
                }
            }
        }
        Ok(Plan { keys, view, conflicts })
    }
}

/// A rollback, planned.
struct Plan {
    /// The keys the inverse changes touch.
    keys: Vec<ModelKey>,
    /// The target's store with them applied.
    view: LocalStore,
    /// The changes left alone.
    conflicts: Vec<RollbackConflict>,
}

impl Plan {
    /// The rollback of a plan with no inverse change: only what it left alone.
    fn nothing(self) -> Rollback {
        Rollback {
            run: None,
            report: SyncReport::default(),
            conflicts: self.conflicts,
        }
    }

    /// The store as the rollback would leave it, taken as the sync's source.
    fn source(&mut self, run: RunId) -> MemoryAdapter {
        MemoryAdapter::with_store(format!("rollback of {run}"), &[], std::mem::take(&mut self.view))
    }

    /// The sync's options: the touched keys only.
    fn options(&self, dry_run: bool) -> Options<'static> {
        Options::new()
            .part(self.keys.iter())
            .dry_run(dry_run)
            .allow_empty_source(true)
    }
}

/// How to undo a change the target still holds the result of (`None`: a
/// change of a run that died before it, which the target never took); or
/// why not.
fn check<'a>(store: &LocalStore, e: &'a Element) -> Result<Option<Inverse<'a>>, String> {
    let now = store.get_opt_dyn(&e.key);
    let holds = |values: &Option<Attrs>| match (values, now) {
        (Some(values), Some(m)) => {
            digest_of(e.model_type(), &e.identifiers, values)
                == digest_of(e.model_type(), &m.identifiers(), &m.attributes())
        }
        (None, None) => true,
        _ => false,
    };
    if !holds(&e.after) {
        if e.outcome == Outcome::Pending && holds(&e.before) {
            return Ok(None);
        }
        return Err(match (&e.after, now) {
            (Some(_), None) => "deleted since the run".into(),
            (None, Some(_)) => "made again since the run".into(),
            _ => "changed since the run".into(),
        });
    }
    Ok(Some(match e.action {
        Action::Create => Inverse::Remove(e),
        Action::Delete => Inverse::Restore(e),
        _ => Inverse::Revert(e),
    }))
}

fn restore(view: &mut LocalStore, e: &Element) -> Result<(), String> {
    let before: Attrs = e.before.clone().unwrap_or_default();
    let model = view
        .build(e.model_type(), &e.identifiers, &before)
        .map_err(|err| Chain(&err).to_string())?;
    let parent = &e.parent;
    view.insert_boxed(model, parent.as_ref()).map_err(|err| match parent {
        Some(p) if !view.contains(p) => format!("its parent {p} is gone"),
        _ => Chain(&err).to_string(),
    })
}

/// Puts a parentless model back under `parent`, with what is below it
/// (each key it moves is added to `keys`).
fn relink(view: &mut LocalStore, key: &ModelKey, parent: &ModelKey, keys: &mut Vec<ModelKey>) -> Result<(), String> {
    fn fail<E: std::error::Error + 'static>(err: E) -> String {
        Chain(&err).to_string()
    }
    let t = key.model_type();
    let model = view.get_dyn(key).map_err(fail)?;
    let rebuilt = view.build(t, &model.identifiers(), &model.attributes()).map_err(fail)?;
    let mut below: Vec<ModelKey> = Vec::new();
    for child_type in view.schema(t).map(|s| s.children.to_vec()).unwrap_or_default() {
        below.extend(view.children_dyn(key, &child_type).map_err(fail)?);
    }
    view.remove(key, false).map_err(fail)?;
    view.insert_boxed(rebuilt, Some(parent)).map_err(fail)?;
    keys.push(key.clone());
    for child in below {
        relink(view, &child, key, keys)?;
    }
    Ok(())
}

fn conflict(e: &Element, reason: String) -> RollbackConflict {
    RollbackConflict {
        key: e.key.clone(),
        reason,
    }
}
