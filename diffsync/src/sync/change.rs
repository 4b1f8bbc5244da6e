//! One change handed to the hooks, and the batch of them a sync applies.

use std::fmt;

use super::adapter::Sink;
use crate::diff::{Action, DiffElement};
use crate::error::{HookError, Result};
use crate::model::{AnyModel, Attrs, DiffModel};
use crate::options::{Progress, Stage};
use crate::report::{Cause, Outcome, SkipReason};
use crate::store::Near;

/// One change handed to an adapter's hooks.
pub struct Change<'a> {
    /// Create, update or delete.
    pub action: Action,
    /// The diff element (type, key, identifiers, attributes, changes).
    pub element: &'a DiffElement,
    /// The values to write, made on first use (see [`attrs`](Self::attrs)).
    pub(super) attrs: std::cell::OnceCell<Attrs>,
    /// The full source model, when syncing from an adapter (not from a loaded diff).
    pub source: Option<&'a dyn AnyModel>,
    /// The parent's element, if the model is a child.
    pub(super) parent: Option<&'a DiffElement>,
    pub(super) new_model: Option<Box<dyn AnyModel>>,
    /// The nearest ancestor's change, which must apply first.
    pub(super) parent_dep: Option<usize>,
    /// For a natural-order delete: its children's deletes, which must apply first.
    pub(super) child_deps: Vec<usize>,
    /// For a create: the earlier delete of the same key (a move), which must apply first.
    pub(super) frees: Option<usize>,
    /// `SKIP_CHILDREN_ON_DELETE`: the store drops the subtree with it.
    pub(super) remove_subtree: bool,
    /// Where the destination store holds the model, and its parent.
    pub(super) near: Near,
    pub(super) parent_near: Near,
}

impl<'a> Change<'a> {
    /// The values to write: all source attributes for a create, the
    /// changed ones for an update, none for a delete. Made from the diff
    /// the first time they are asked for (a sync whose hooks read typed
    /// models never makes them).
    pub fn attrs(&self) -> &Attrs {
        self.attrs.get_or_init(|| self.element.new_values())
    }
    /// Model type name.
    pub fn model_type(&self) -> &'a str {
        self.element.model_type()
    }
    /// Unique id.
    pub fn key(&self) -> &'a str {
        self.element.unique_id()
    }
    /// Identifier values.
    pub fn identifiers(&self) -> Attrs {
        self.element.identifiers()
    }
    /// The changed model's key.
    pub fn model_key(&self) -> crate::ModelKey {
        self.element.model_key()
    }
    /// The parent's key, if the model is a child.
    pub fn parent(&self) -> Option<crate::ModelKey> {
        self.parent.map(DiffElement::model_key)
    }
    /// The parent's element, if the model is a child.
    pub fn parent_element(&self) -> Option<&'a DiffElement> {
        self.parent
    }
    /// The parent's (type, unique id), if the model is a child.
    pub(crate) fn parent_uid(&self) -> Option<(&'a str, &'a str)> {
        self.parent.map(|p| (p.model_type(), p.unique_id()))
    }
    /// The changed model's key as a `T`'s (`None`: a change of another
    /// type). With the adapter's store it gives the model as it is before
    /// the change: `self.store.get(&change.key_as::<Device>()?)`.
    pub fn key_as<T: crate::StaticModel>(&self) -> Option<crate::Key<T>> {
        (self.element.model_type() == T::NAME).then(|| crate::key::Key::assume(self.model_key()))
    }
    /// For a create: the model that will be stored, as a `T` (also for a
    /// diff read from a file: it is built from the element's values).
    pub fn created<T: DiffModel>(&self) -> Option<&T> {
        self.new_model.as_deref().and_then(|m| m.downcast_ref::<T>())
    }
    /// For an update: `old` (the model as this side holds it, from the
    /// adapter's store) with the change's values applied. A value that is
    /// not a `T`'s is an error naming model, key and field.
    pub fn updated<T: DiffModel>(&self, old: &T) -> crate::Result<T> {
        let mut new = old.clone();
        new.set_attributes(self.attrs())?;
        Ok(new)
    }
    /// For an update: the names of the attributes it changes.
    pub fn changed_fields(&self) -> impl Iterator<Item = &str> {
        self.attrs().keys().map(|k| k.as_ref())
    }
    /// The source model as a concrete type.
    pub fn source_as<T: DiffModel>(&self) -> Option<&'a T> {
        self.source.and_then(|m| m.downcast_ref::<T>())
    }
    /// For a create: the model that will be stored in the destination (built
    /// from the destination's model type); a hook may set local-only fields
    /// on it (a database id, say).
    pub fn new_model_mut<T: DiffModel>(&mut self) -> Option<&mut T> {
        self.new_model.as_deref_mut().and_then(|m| m.downcast_mut::<T>())
    }
    /// For a create: the model that will be stored.
    pub fn new_model(&self) -> Option<&dyn AnyModel> {
        self.new_model.as_deref()
    }
    /// For a delete: whether it removes the model's whole subtree (the
    /// model's `SKIP_CHILDREN_ON_DELETE`): its descendants get no change of
    /// their own, so the hook removes them from the system too.
    pub fn removes_subtree(&self) -> bool {
        self.remove_subtree
    }
}

impl fmt::Debug for Change<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Change")
            .field("action", &self.action)
            .field("model_type", &self.element.model_type())
            .field("key", &self.element.key)
            .field("attrs", &self.attrs)
            .finish()
    }
}

/// The ordered changes of one sync: parents before children, deletes per the
/// deletion-order flags. A batch hook applies them (say in one transaction)
/// and records each one's outcome:
///
/// ```text
/// for i in 0..batch.len() {
///     if !batch.should_apply(i) { continue; } // decided, blocked or aborted
///     match write(&batch.changes()[i]) {
///         Ok(()) => batch.stage(i),           // in the open transaction
///         Err(e) => { batch.set_outcome(i, Err(e.into())); return Err("rolled back".into()); }
///     }
/// }
/// commit()?;
/// batch.commit_staged();
/// ```
///
/// [`set_outcome`](Batch::set_outcome) with `Ok` says the change is in the
/// system for good; [`stage`](Batch::stage) says it is written in a
/// transaction that may still roll back. If the batch hook returns `Err` or
/// panics, staged changes are reported rolled back and the store does not
/// take them.
pub struct Batch<'a, 'p> {
    pub(super) changes: Vec<Change<'a>>,
    pub(super) outcomes: Vec<Outcome>,
    pub(super) staged: Vec<bool>,
    /// Position of each change in the sync's element order (for progress).
    pub(super) position: Vec<usize>,
    pub(super) elements: usize,
    pub(super) continue_on_failure: bool,
    pub(super) aborted: bool,
    /// The change (and its cause) that stopped the sync.
    pub(super) culprit: Option<(usize, Cause)>,
    pub(super) progress: Option<&'p mut dyn FnMut(Progress)>,
    pub(super) done: usize,
}

impl<'a> Batch<'a, '_> {
    /// Number of changes.
    pub fn len(&self) -> usize {
        self.changes.len()
    }
    /// Whether there are no changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
    /// The changes, in order.
    pub fn changes(&self) -> &[Change<'a>] {
        &self.changes
    }
    /// One change, mutably (to edit the model a create will store).
    /// Like slice indexing, panics if `i >= self.len()`.
    pub fn change_mut(&mut self, i: usize) -> &mut Change<'a> {
        &mut self.changes[i]
    }
    /// The outcomes so far.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }
    /// Whether CONTINUE_ON_FAILURE is set.
    pub fn continue_on_failure(&self) -> bool {
        self.continue_on_failure
    }
    /// Whether the sync has stopped (a fatal failure, or a failure without
    /// CONTINUE_ON_FAILURE): no further change may be applied.
    pub fn is_aborted(&self) -> bool {
        self.aborted
    }
    /// Whether change `i` must be skipped because a change it depends on failed.
    /// Panics if `i >= self.len()`.
    pub fn is_blocked(&self, i: usize) -> bool {
        self.blocked_by(i).is_some()
    }

    fn blocked_by(&self, i: usize) -> Option<SkipReason> {
        let c = &self.changes[i];
        // What a change that was never reached holds back was not reached either.
        let reason = |j: usize, failed: SkipReason| match &self.outcomes[j] {
            Outcome::Skipped(SkipReason::Aborted) => Some(SkipReason::Aborted),
            o if o.is_ok() => None,
            _ => Some(failed),
        };
        c.parent_dep
            .and_then(|p| reason(p, SkipReason::ParentFailed))
            .or_else(|| c.child_deps.iter().find_map(|&j| reason(j, SkipReason::ChildFailed)))
            .or_else(|| c.frees.and_then(|j| reason(j, SkipReason::DependencyFailed)))
    }

    /// Whether a batch hook should apply change `i` now. `false` when the
    /// change is already decided (the pre-check failed it: it already exists
    /// in the destination, say), when a change it depends on did not apply,
    /// or when the sync has stopped; the outcome is then recorded here.
    /// Panics if `i >= self.len()`.
    pub fn should_apply(&mut self, i: usize) -> bool {
        // Descendants of a failure are "parent failed" even after it stopped the sync.
        if let Some(reason) = self.blocked_by(i) {
            self.decide(i, Outcome::Skipped(reason));
            return false;
        }
        if self.aborted {
            self.decide(i, Outcome::Skipped(SkipReason::Aborted));
            return false;
        }
        if self.outcomes[i] != Outcome::Pending {
            // Failed by the pre-check: a failure at this point of the order.
            if !self.continue_on_failure && matches!(self.outcomes[i], Outcome::Failed(_)) {
                self.aborted = true;
            }
            self.report_progress(i);
            return false;
        }
        true
    }

    /// Records the result of change `i`: `Ok` means it is in the system for
    /// good. A recoverable failure stops the sync unless CONTINUE_ON_FAILURE
    /// is set; a fatal one always does; a soft one never does.
    /// Panics if `i >= self.len()`.
    pub fn set_outcome(&mut self, i: usize, result: Result<(), HookError>) {
        let change = &self.changes[i];
        let (model, key, action) = (change.element.model_type(), &change.element.key, change.action);
        let outcome = match result {
            Ok(()) => {
                tracing::debug!(%action, %model, %key, "applied");
                Outcome::Applied
            }
            Err(e) => {
                tracing::warn!(%action, %model, %key, error = %e, "change failed");
                let (outcome, stops) = match e {
                    HookError::Soft(e) => (Outcome::SoftFailed(Cause::from_error(e)), false),
                    HookError::Fatal(e) => (Outcome::Fatal(Cause::from_error(e)), true),
                    HookError::Unknown(e) => (Outcome::Unknown(Cause::from_error(e)), true),
                    HookError::Failed(e) => (Outcome::Failed(Cause::from_error(e)), !self.continue_on_failure),
                };
                if stops && !self.aborted {
                    self.aborted = true;
                    self.culprit = outcome.cause().map(|c| (i, c.clone()));
                }
                outcome
            }
        };
        self.staged[i] = false;
        self.decide(i, outcome);
    }

    /// Records that change `i` is written in an open transaction: changes
    /// that depend on it may go ahead; it becomes applied at
    /// [`commit_staged`](Batch::commit_staged) (or when the batch hook returns
    /// `Ok`), and is rolled back if the batch hook returns `Err` or panics.
    /// Panics if `i >= self.len()`.
    pub fn stage(&mut self, i: usize) {
        self.staged[i] = true;
        self.outcomes[i] = Outcome::Pending;
        self.report_progress(i);
    }

    /// The transaction committed: every staged change is applied.
    pub fn commit_staged(&mut self) {
        for i in 0..self.changes.len() {
            if std::mem::take(&mut self.staged[i]) {
                self.outcomes[i] = Outcome::Applied;
            }
        }
    }

    /// Marks change `i` as skipped. Panics if `i >= self.len()`.
    pub fn skip(&mut self, i: usize, reason: SkipReason) {
        self.decide(i, Outcome::Skipped(reason));
    }

    fn decide(&mut self, i: usize, outcome: Outcome) {
        self.outcomes[i] = outcome;
        self.report_progress(i);
    }

    fn report_progress(&mut self, i: usize) {
        let current = self.position[i] + 1;
        if current <= self.done {
            return;
        }
        self.done = current;
        if let Some(p) = self.progress.as_mut() {
            p(Progress {
                stage: Stage::Sync,
                current,
                total: self.elements,
            });
        }
    }

    /// Applies the changes one by one through the adapter's
    /// [`apply`](Sink::apply) hook, in order: skips changes whose dependencies did not apply, and
    /// after a failure that stops the sync skips the rest. Returns whether it
    /// stopped early.
    pub fn apply_each<A: Sink + ?Sized>(&mut self, adapter: &mut A) -> bool {
        for i in 0..self.changes.len() {
            if !self.should_apply(i) {
                continue;
            }
            let r = adapter.apply(&mut self.changes[i]);
            self.set_outcome(i, r);
        }
        self.aborted
    }

    /// The batch hook returned (`failed`: with `Err`, or it panicked): settle
    /// every change that is still open.
    /// `unknown`: the batch hook failed without knowing whether the system
    /// took its changes (the staged ones are then unknown, not rolled back).
    pub(super) fn settle(&mut self, failed: bool, unknown: Option<&Cause>) {
        for i in 0..self.changes.len() {
            let staged = std::mem::take(&mut self.staged[i]);
            if self.outcomes[i] != Outcome::Pending {
                continue;
            }
            self.outcomes[i] = match (failed, staged) {
                (true, true) => unknown.map_or(Outcome::RolledBack, |c| Outcome::Unknown(c.clone())),
                (true, false) => Outcome::Skipped(self.blocked_by(i).unwrap_or(SkipReason::Aborted)),
                // A change a successful batch hook did not report is applied.
                (false, _) => Outcome::Applied,
            };
        }
        if failed {
            self.aborted = true;
        }
    }
}
