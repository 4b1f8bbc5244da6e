//! Sync: turns a [`Diff`] into an ordered batch of changes, checks it against
//! the destination store, hands it to the destination adapter's hooks,
//! applies what the system took to the destination store and reports the
//! outcome of every element.
//!
//! The store is written only after the hooks, and only with the changes the
//! hooks reported applied: whatever fails (a hook, a whole batch, a panic),
//! the store holds exactly what the system took, so the next diff shows
//! exactly the unfinished work.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use hashbrown::{HashMap, HashSet};
use serde::{Deserialize, Serialize};

use crate::adapter::Adapter;
use crate::diff::{Action, Diff, DiffElement};
use crate::error::{BoxError, Error, HookError, Result};
use crate::flags::{DiffFlags, ModelFlags};
use crate::model::{AnyModel, Attrs, DiffModel};
use crate::options::{Options, Progress, Stage};
use crate::store::{AttrSource, LocalStore, Store};

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
    /// The hook failed (a recoverable error) with this message.
    Failed(String),
    /// The hook soft-failed: not applied, the sync went on.
    SoftFailed(String),
    /// The hook failed fatally: the sync stopped here.
    Fatal(String),
    /// Written by a batch whose transaction was then rolled back.
    RolledBack,
    /// Removed from the store with its `SKIP_CHILDREN_ON_DELETE` parent
    /// (the system removed the subtree); no hook ran.
    RemovedWithParent,
    /// Not attempted.
    Skipped(SkipReason),
    /// Dry run: would be attempted.
    Planned,
}

impl Outcome {
    /// The hook's message, for a failure.
    pub fn message(&self) -> Option<&str> {
        match self {
            Outcome::Failed(m) | Outcome::SoftFailed(m) | Outcome::Fatal(m) => Some(m),
            _ => None,
        }
    }
    /// Whether dependents may go ahead.
    fn is_ok(&self) -> bool {
        matches!(self, Outcome::Applied | Outcome::Planned | Outcome::Pending)
    }
    /// Whether a hook was called for it.
    fn attempted(&self) -> bool {
        matches!(
            self,
            Outcome::Applied | Outcome::Failed(_) | Outcome::SoftFailed(_) | Outcome::Fatal(_) | Outcome::RolledBack
        )
    }
}

/// One change handed to an adapter's hooks.
pub struct Change<'a> {
    /// Create, update or delete.
    pub action: Action,
    /// The diff element (type, key, identifiers, attributes, changes).
    pub element: &'a DiffElement,
    /// The values to write: all source attributes for a create, the changed ones
    /// for an update, none for a delete.
    pub attrs: Attrs,
    /// The full source model, when syncing from an adapter (not from a loaded diff).
    pub source: Option<&'a dyn AnyModel>,
    /// The parent's (type, key), if the model is a child.
    pub parent: Option<(&'a str, &'a str)>,
    new_model: Option<Box<dyn AnyModel>>,
    /// The nearest ancestor's change, which must apply first.
    parent_dep: Option<usize>,
    /// For a natural-order delete: its children's deletes, which must apply first.
    child_deps: Vec<usize>,
    /// For a create: the earlier delete of the same key (a move), which must apply first.
    frees: Option<usize>,
    /// `SKIP_CHILDREN_ON_DELETE`: the store drops the subtree with it.
    remove_subtree: bool,
}

impl<'a> Change<'a> {
    /// Model type name.
    pub fn model_type(&self) -> &'a str {
        &self.element.model_type
    }
    /// Unique id.
    pub fn key(&self) -> &'a str {
        &self.element.key
    }
    /// Identifier values.
    pub fn identifiers(&self) -> &'a Attrs {
        &self.element.identifiers
    }
    /// The changed model's key.
    pub fn model_key(&self) -> crate::ModelKey {
        crate::ModelKey::new(
            self.element.model_type.to_string(),
            self.element.identifiers.values().map(crate::KeyValue::from),
        )
    }
    /// The changed model's key as a `T`'s (`None`: a change of another
    /// type). With the adapter's store it gives the model as it is before
    /// the change: `self.store.get(&change.key_as::<Device>()?)`.
    pub fn key_as<T: crate::StaticModel>(&self) -> Option<crate::Key<T>> {
        (self.element.model_type.as_ref() == T::NAME).then(|| crate::key::Key::assume(self.model_key()))
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
        new.set_attributes(&self.attrs)?;
        Ok(new)
    }
    /// For an update: the names of the attributes it changes.
    pub fn changed_fields(&self) -> impl Iterator<Item = &str> {
        self.attrs.keys().map(|k| k.as_ref())
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
            .field("model_type", &self.element.model_type)
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
    changes: Vec<Change<'a>>,
    outcomes: Vec<Outcome>,
    staged: Vec<bool>,
    /// Position of each change in the sync's element order (for progress).
    position: Vec<usize>,
    elements: usize,
    continue_on_failure: bool,
    aborted: bool,
    /// The change (and its cause) that stopped the sync.
    culprit: Option<(usize, BoxError)>,
    progress: Option<&'p mut dyn FnMut(Progress)>,
    done: usize,
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
        let (model, key, action) = (&change.element.model_type, &change.element.key, change.action);
        let outcome = match result {
            Ok(()) => {
                tracing::debug!(%action, %model, %key, "applied");
                Outcome::Applied
            }
            Err(e) => {
                tracing::warn!(%action, %model, %key, error = %e, "change failed");
                let message = e.to_string();
                let (outcome, stops) = match &e {
                    HookError::Soft(_) => (Outcome::SoftFailed(message), false),
                    HookError::Fatal(_) => (Outcome::Fatal(message), true),
                    HookError::Failed(_) => (Outcome::Failed(message), !self.continue_on_failure),
                };
                if stops && !self.aborted {
                    self.aborted = true;
                    self.culprit = Some((i, e.into_cause()));
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
    /// [`apply`](Adapter::apply) hook, in order: skips changes whose dependencies did not apply, and
    /// after a failure that stops the sync skips the rest. Returns whether it
    /// stopped early.
    pub fn apply_each<A: Adapter + ?Sized>(&mut self, adapter: &mut A) -> bool {
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
    fn settle(&mut self, failed: bool) {
        for i in 0..self.changes.len() {
            let staged = std::mem::take(&mut self.staged[i]);
            if self.outcomes[i] != Outcome::Pending {
                continue;
            }
            self.outcomes[i] = match (failed, staged) {
                (true, true) => Outcome::RolledBack,
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

/// What happened to one element in a sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementReport {
    /// Model type name.
    pub model_type: String,
    /// Unique id.
    pub key: String,
    /// The element's action.
    pub action: Action,
    /// Its outcome.
    pub outcome: Outcome,
}

impl ElementReport {
    /// The element's key (read back from its type and unique id).
    pub fn model_key(&self) -> crate::ModelKey {
        crate::ModelKey::from_unique_id(&self.model_type, &self.key)
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
            }
        }
        t
    }
    /// Whether every change applied (or was planned).
    pub fn is_success(&self) -> bool {
        let t = self.totals();
        t.failed + t.soft_failed + t.rolled_back + t.skipped == 0
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
        }
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
        for e in &self.elements {
            writeln!(f, "  {} {} {:?}: {}", e.action, e.model_type, e.key, e.outcome)?;
        }
        Ok(())
    }
}

/// What an element of the report is, in sync order.
enum Entry {
    /// A change: index in the batch.
    Change(usize),
    /// A no-change element under this ancestor change (if any).
    Unchanged(Option<usize>),
    /// A descendant of this `SKIP_CHILDREN_ON_DELETE` delete.
    RemovedWith(usize),
}

/// The plan: the batch's changes and every element in sync order.
struct Plan<'a> {
    changes: Vec<Change<'a>>,
    /// Outcomes decided by the pre-check (creates of existing keys, say).
    outcomes: Vec<Outcome>,
    entries: Vec<(&'a DiffElement, Entry)>,
}

/// A step of the planner's walk.
enum Visit<'a, 'd> {
    /// Plan an element, then its children.
    Element {
        e: &'a DiffElement,
        parent: Option<&'a DiffElement>,
        parent_dep: Option<usize>,
    },
    /// A `NATURAL_DELETION_ORDER` delete, after its children: the changes
    /// from `first` on are theirs, and it waits for them.
    AfterChildren {
        e: &'a DiffElement,
        dst: Option<&'d dyn AnyModel>,
        parent: Option<&'a DiffElement>,
        parent_dep: Option<usize>,
        first: usize,
    },
}

struct Planner<'a, 'd> {
    source: Option<&'a LocalStore>,
    dest: &'d LocalStore,
    /// Check that elements agree with the models their keys find (diffs that
    /// were not just computed from these stores).
    check_identifiers: bool,
    /// Keys this plan creates, so children may go under them and duplicates fail.
    created: HashSet<(&'a str, &'a str)>,
    /// Keys this plan deletes, with the delete: a later create may reuse them.
    deleted: HashMap<(&'a str, &'a str), usize>,
    plan: Plan<'a>,
}

impl<'a, 'd> Planner<'a, 'd> {
    fn invalid(&self, e: &DiffElement, message: impl Into<String>) -> Error {
        Error::InvalidDiff {
            store: self.dest.name().to_string(),
            model_type: e.model_type.to_string(),
            key: e.key.clone(),
            message: message.into(),
        }
    }

    /// Plans the elements in sync order, on a work stack (hierarchies may
    /// be deep).
    fn plan(&mut self, elements: &'a [DiffElement]) -> Result<()> {
        let mut work: Vec<Visit<'a, 'd>> = elements
            .iter()
            .rev()
            .map(|e| Visit::Element {
                e,
                parent: None,
                parent_dep: None,
            })
            .collect();
        while let Some(v) = work.pop() {
            match v {
                Visit::Element { e, parent, parent_dep } => self.element(e, parent, parent_dep, &mut work)?,
                Visit::AfterChildren {
                    e,
                    dst,
                    parent,
                    parent_dep,
                    first,
                } => {
                    let kids: Vec<usize> = (first..self.plan.changes.len()).collect();
                    let me = self.change(e, dst, false, parent, parent_dep)?;
                    self.plan.changes[me].child_deps = kids;
                }
            }
        }
        Ok(())
    }

    /// Plans one element; its children go on the work stack.
    fn element(
        &mut self,
        e: &'a DiffElement,
        parent: Option<&'a DiffElement>,
        parent_dep: Option<usize>,
        work: &mut Vec<Visit<'a, 'd>>,
    ) -> Result<()> {
        // One lookup per element: `change` takes what it found.
        let dest = self.dest;
        let dst = dest.get_dyn_by_id(&e.model_type, &e.key).ok();
        if e.action != Action::Create
            && let Some(m) = dst
            && self.check_identifiers
            && m.identifiers() != e.identifiers
        {
            return Err(self.invalid(e, "the element's identifiers do not match its key"));
        }
        let dst_flags = dst.map(|m| m.flags()).unwrap_or_default();
        let delete = e.action == Action::Delete;
        let subtree = delete && dst_flags.contains(ModelFlags::SKIP_CHILDREN_ON_DELETE);
        if delete && dst_flags.contains(ModelFlags::NATURAL_DELETION_ORDER) && !subtree {
            // Children first; the parent waits for all of them, and they for
            // whatever this model's own parent waits on.
            work.push(Visit::AfterChildren {
                e,
                dst,
                parent,
                parent_dep,
                first: self.plan.changes.len(),
            });
            work.extend(e.children.iter().rev().map(|c| Visit::Element {
                e: c,
                parent: Some(e),
                parent_dep,
            }));
            return Ok(());
        }
        let me = if e.action == Action::NoChange {
            if dst.is_none() {
                return Err(self.invalid(e, "a no-change element the destination does not hold"));
            }
            self.plan.entries.push((e, Entry::Unchanged(parent_dep)));
            parent_dep
        } else {
            Some(self.change(e, dst, subtree, parent, parent_dep)?)
        };
        if let Some(me) = me
            && subtree
        {
            let mut stack: Vec<&DiffElement> = e.children.iter().rev().collect();
            while let Some(c) = stack.pop() {
                self.plan.entries.push((c, Entry::RemovedWith(me)));
                stack.extend(c.children.iter().rev());
            }
            return Ok(());
        }
        work.extend(e.children.iter().rev().map(|c| Visit::Element {
            e: c,
            parent: Some(e),
            parent_dep: me,
        }));
        Ok(())
    }

    /// Checks one change against the destination store and adds it. `dst`:
    /// the destination's model with this key; `subtree`: a delete that takes
    /// the subtree with it (`SKIP_CHILDREN_ON_DELETE`).
    fn change(
        &mut self,
        e: &'a DiffElement,
        dst: Option<&'d dyn AnyModel>,
        subtree: bool,
        parent: Option<&'a DiffElement>,
        parent_dep: Option<usize>,
    ) -> Result<usize> {
        let src_model = self.source.and_then(|s| s.get_dyn_by_id(&e.model_type, &e.key).ok());
        let parent_key = parent.map(|p| (p.model_type.as_ref(), p.key.as_str()));
        let mut outcome = Outcome::Pending;
        let mut new_model = None;
        let mut frees = None;
        let i = self.plan.changes.len();
        match e.action {
            Action::Create => {
                if let Some((pt, pk)) = parent_key {
                    if self.dest.get_dyn_by_id(pt, pk).is_err() && !self.created.contains(&(pt, pk)) {
                        return Err(self.invalid(e, format!("its parent {pt} {pk:?} is neither stored nor created")));
                    }
                    if let Some(schema) = self.dest.schema(pt)
                        && !schema.children.contains(&e.model_type)
                    {
                        return Err(self.invalid(
                            e,
                            format!(
                                "its parent type {pt} does not declare {} children (declared: [{}])",
                                e.model_type,
                                schema.children.join(", ")
                            ),
                        ));
                    }
                }
                let freed = self.deleted.remove(&(&*e.model_type, &*e.key));
                let taken = freed.is_none() && dst.is_some();
                frees = freed;
                if taken || !self.created.insert((&e.model_type, &e.key)) {
                    // The reference's pre-check: this element fails, not the sync.
                    outcome = Outcome::Failed(format!(
                        "{} {:?} already exists in store {:?}",
                        e.model_type,
                        e.key,
                        self.dest.name()
                    ));
                } else {
                    match new_model_for(e, src_model, self.dest) {
                        // A diff just computed from these stores keys its models right.
                        Ok(m) if self.check_identifiers && m.unique_id() != e.key => {
                            return Err(self.invalid(e, format!("its identifiers give the key {:?}", m.unique_id())));
                        }
                        Ok(m) => new_model = Some(m),
                        // Values the diff carries itself (read from a file, say)
                        // that do not fit: the diff is wrong, nothing is applied.
                        Err(err) if src_model.is_none() => return Err(self.invalid(e, err.to_string())),
                        // The destination's type cannot hold the source's model (a
                        // required attribute it lacks, a value of the wrong kind):
                        // this element fails.
                        Err(err) => outcome = Outcome::Failed(err.to_string()),
                    }
                }
            }
            Action::Update => {
                let Some(stored) = dst else {
                    return Err(self.invalid(e, "an update of a model the destination does not hold"));
                };
                if src_model.is_none_or(|s| s.as_any().type_id() != stored.as_any().type_id()) {
                    // Values cross types or come from a loaded diff: try them on a copy.
                    let mut probe = stored.clone_box();
                    let values = match src_model {
                        Some(s) => s.attributes(),
                        None => e.new_values(),
                    };
                    match probe.set_attributes(&values) {
                        Ok(()) => {}
                        Err(err) if src_model.is_none() => return Err(self.invalid(e, err.to_string())),
                        Err(err) => outcome = Outcome::Failed(err.to_string()),
                    }
                }
            }
            Action::Delete => {
                if dst.is_none() {
                    return Err(self.invalid(e, "a delete of a model the destination does not hold"));
                }
                self.deleted.insert((&e.model_type, &e.key), i);
            }
            Action::NoChange => {}
        }
        self.plan.changes.push(Change {
            action: e.action,
            element: e,
            attrs: e.new_values(),
            source: src_model,
            parent: parent_key,
            new_model,
            parent_dep,
            child_deps: Vec::new(),
            frees,
            remove_subtree: subtree,
        });
        self.plan.outcomes.push(outcome);
        self.plan.entries.push((e, Entry::Change(i)));
        Ok(i)
    }
}

/// The model a create stores in the destination, built from the
/// destination's model type: a typed copy when the source model is of that
/// very type (same Rust type and schema), else rebuilt from the values.
/// Local-only fields take their default, flags the destination type's.
fn new_model_for(e: &DiffElement, src: Option<&dyn AnyModel>, dest: &LocalStore) -> Result<Box<dyn AnyModel>> {
    let Some(t) = dest.table_index(&e.model_type).map(|t| &dest.tables[t as usize]) else {
        return match src {
            Some(m) => Ok(m.copy_for_create_box()),
            None => Err(Error::Schema {
                model_type: e.model_type.to_string(),
                message: format!(
                    "cannot create {:?}: the destination has not registered this model type",
                    e.key
                ),
            }),
        };
    };
    if let Some(m) = src
        && m.as_any().type_id() == t.models.rust_type().id
        && (std::ptr::eq(m.schema(), &*t.schema) || *m.schema() == *t.schema)
    {
        return Ok(m.copy_for_create_box());
    }
    let attrs = match src {
        Some(m) => m.attributes(),
        None => e.source_attrs.clone().unwrap_or_default(),
    };
    t.models.build(&t.schema, &e.identifiers, &attrs)
}

/// Runs a sync of `diff` into `dest`, with source models from `source` if
/// given. `fresh`: the diff was just computed from these stores.
pub(crate) fn sync<A: Adapter + ?Sized>(
    dest: &mut A,
    diff: &Diff,
    source: Option<&LocalStore>,
    fresh: bool,
    opts: &mut Options<'_>,
) -> Result<SyncReport> {
    check_rails(dest.store().local(), diff, source, opts)?;
    let mut planner = Planner {
        source,
        dest: dest.store().local(),
        check_identifiers: !fresh,
        created: HashSet::new(),
        deleted: HashMap::new(),
        plan: Plan {
            changes: Vec::new(),
            outcomes: Vec::new(),
            entries: Vec::new(),
        },
    };
    planner.plan(&diff.elements)?;
    let Plan {
        changes,
        outcomes,
        entries,
    } = planner.plan;
    let n = changes.len();
    if opts.flags.contains(DiffFlags::LOG_UNCHANGED_RECORDS) {
        for (e, _) in entries.iter().filter(|(e, _)| e.action == Action::NoChange) {
            tracing::debug!(model = %e.model_type, key = %e.key, status = "success", "no changes to apply");
        }
    }
    tracing::info!(source = %diff.source, dest = %diff.dest, changes = n, dry_run = opts.dry_run, "sync started");
    let mut position = vec![0; n];
    for (pos, (_, entry)) in entries.iter().enumerate() {
        if let Entry::Change(i) = entry {
            position[*i] = pos;
        }
    }
    let mut batch = Batch {
        changes,
        outcomes,
        staged: vec![false; n],
        position,
        elements: entries.len(),
        continue_on_failure: opts.flags.contains(DiffFlags::CONTINUE_ON_FAILURE),
        aborted: false,
        culprit: None,
        progress: opts.progress.as_mut().map(|p| &mut **p as &mut dyn FnMut(Progress)),
        done: 0,
    };
    let mut panic = None;
    let mut batch_error = None;
    if opts.dry_run {
        for o in &mut batch.outcomes {
            if *o == Outcome::Pending {
                *o = Outcome::Planned;
            }
        }
    } else if n > 0 {
        // A panicking hook must not leave the store behind the system: what
        // the system took before the panic is recorded, then the panic goes on.
        match catch_unwind(AssertUnwindSafe(|| dest.apply_batch(&mut batch))) {
            Ok(Ok(())) => batch.settle(false),
            Ok(Err(e)) => {
                batch.settle(true);
                batch_error = Some(e.into_cause());
            }
            Err(payload) => {
                batch.settle(true);
                panic = Some(payload);
            }
        }
    }
    let aborted = batch.aborted;
    let culprit = batch.culprit.take();
    // The change that stopped the sync: the hook's culprit, else the
    // failure a batch recorded, else none (the batch as a whole failed).
    let stopped_at = culprit
        .as_ref()
        .map(|(i, _)| *i)
        .or_else(|| {
            batch
                .outcomes
                .iter()
                .position(|o| matches!(o, Outcome::Fatal(_) | Outcome::Failed(_)))
        })
        .map(|i| {
            let e = batch.changes[i].element;
            let message = batch.outcomes[i].message().unwrap_or_default().to_string();
            (e.model_type.to_string(), e.key.clone(), message)
        });
    let Batch {
        changes,
        outcomes,
        progress,
        done,
        ..
    } = batch;
    let report = SyncReport {
        source: diff.source.clone(),
        dest: diff.dest.clone(),
        dry_run: opts.dry_run,
        elements: report_elements(&entries, &outcomes, aborted),
    };
    if let Some(p) = progress.filter(|_| done < entries.len()) {
        p(Progress {
            stage: Stage::Sync,
            current: entries.len(),
            total: entries.len(),
        });
    }
    let store_error = apply_to_store(dest.store_mut(), changes, &outcomes);
    if let Some(payload) = panic {
        resume_unwind(payload);
    }
    if let Some((model_type, key, source)) = store_error {
        return Err(Error::StoreApply {
            store: dest.store().name().to_string(),
            model_type,
            key,
            source: Box::new(source),
            report: Box::new(report),
        });
    }
    if aborted {
        // What the store took must reach a system that is written at the
        // end (a file, an object): else the store would be ahead of it.
        if !opts.dry_run && report.totals().applied > 0 {
            dest.sync_complete(diff, &report)
                .map_err(|source| Error::SyncComplete {
                    adapter: diff.dest.clone(),
                    source: source.into_cause(),
                })?;
        }
        let (model_type, key, message) =
            stopped_at.unwrap_or_else(|| (String::new(), String::new(), "the batch failed".to_string()));
        let message = match &batch_error {
            Some(b) => format!("{message}; {b}"),
            None => message,
        };
        return Err(Error::SyncAborted {
            model_type,
            key,
            message,
            cause: culprit.map(|(_, c)| c).or(batch_error),
            report: Box::new(report),
        });
    }
    if !opts.dry_run && outcomes.iter().any(Outcome::attempted) {
        dest.sync_complete(diff, &report)
            .map_err(|source| Error::SyncComplete {
                adapter: diff.dest.clone(),
                source: source.into_cause(),
            })?;
    }
    let totals = report.totals();
    tracing::info!(applied = totals.applied, failed = totals.failed, "sync complete");
    Ok(report)
}

/// The rails a one-way sync stops at before writing anything: an empty
/// source against a destination that holds models, and more deletes than
/// the allowed share of the destination.
fn check_rails(dest: &LocalStore, diff: &Diff, source: Option<&LocalStore>, opts: &Options<'_>) -> Result<()> {
    let models = dest.count_all();
    if let Some(source) = source
        && !opts.allow_empty_source
        && source.count_all() == 0
        && models > 0
    {
        return Err(Error::EmptySource {
            source_name: diff.source.clone(),
            dest: diff.dest.clone(),
            models,
        });
    }
    if let Some(share) = opts.max_delete_share {
        let deletes = diff.summary().delete;
        if deletes > 0 && deletes as f64 > share * models as f64 {
            return Err(Error::TooManyDeletes {
                side: diff.dest.clone(),
                deletes,
                total: models,
                share,
            });
        }
    }
    Ok(())
}

/// Every element's outcome, in sync order.
fn report_elements(entries: &[(&DiffElement, Entry)], outcomes: &[Outcome], aborted: bool) -> Vec<ElementReport> {
    // Derived outcomes follow the change they hang on.
    let inherited = |dep: usize| match &outcomes[dep] {
        Outcome::Skipped(SkipReason::Aborted) => Outcome::Skipped(SkipReason::Aborted),
        o if o.is_ok() => Outcome::Pending,
        _ => Outcome::Skipped(SkipReason::ParentFailed),
    };
    let mut out: Vec<ElementReport> = Vec::with_capacity(entries.len());
    // A no-change element was reached unless the sync stopped before it: the
    // next change after it was aborted, or there is none and the sync stopped.
    let mut next_aborted = aborted;
    let mut reached = vec![true; entries.len()];
    for (pos, (_, entry)) in entries.iter().enumerate().rev() {
        match entry {
            Entry::Change(i) => next_aborted = outcomes[*i] == Outcome::Skipped(SkipReason::Aborted),
            _ => reached[pos] = !next_aborted,
        }
    }
    for (pos, (e, entry)) in entries.iter().enumerate() {
        let outcome = match entry {
            Entry::Change(i) => outcomes[*i].clone(),
            Entry::Unchanged(dep) => match dep.map(inherited) {
                Some(o) if o != Outcome::Pending => o,
                _ if reached[pos] => Outcome::Unchanged,
                _ => Outcome::Skipped(SkipReason::Aborted),
            },
            Entry::RemovedWith(dep) => match &outcomes[*dep] {
                Outcome::Applied => Outcome::RemovedWithParent,
                Outcome::Planned => Outcome::Planned,
                _ => match inherited(*dep) {
                    Outcome::Pending => Outcome::Skipped(SkipReason::ParentFailed),
                    o => o,
                },
            },
        };
        out.push(ElementReport {
            model_type: e.model_type.to_string(),
            key: e.key.clone(),
            action: e.action,
            outcome,
        });
    }
    out
}

/// Applies what the system took to the store, in order. Every applied
/// change is recorded even after a store error (the system has them all);
/// the first error is returned with the change it hit. Children whose own
/// delete did not apply stay, as parentless models the next diff sees; a
/// `SKIP_CHILDREN_ON_DELETE` subtree goes.
fn apply_to_store<S: Store + ?Sized>(
    store: &mut S,
    changes: Vec<Change<'_>>,
    outcomes: &[Outcome],
) -> Option<(String, String, Error)> {
    // A networked store may buffer these writes and flush them at once.
    store.begin_batch();
    let mut first = None;
    // Consecutive deletes (siblings, usually) go to the store together.
    let mut changes: Vec<Change<'_>> = changes;
    let applied: Vec<usize> = (0..changes.len())
        .filter(|&i| outcomes[i] == Outcome::Applied)
        .collect();
    let mut k = 0;
    while k < applied.len() {
        let i = applied[k];
        if changes[i].action == Action::Delete {
            let run = applied[k..]
                .iter()
                .take_while(|&&j| changes[j].action == Action::Delete)
                .count();
            let run = &applied[k..k + run];
            let items: Vec<(&str, &str, bool)> = run
                .iter()
                .map(|&j| {
                    let c = &changes[j];
                    (c.element.model_type.as_ref(), c.element.key.as_str(), c.remove_subtree)
                })
                .collect();
            if let Err((at, err)) = store.remove_many(&items) {
                let e = changes[run[at]].element;
                first.get_or_insert((e.model_type.to_string(), e.key.clone(), err));
            }
            k += run.len();
            continue;
        }
        if let Err(err) = apply_change(store, &mut changes[i])
            && first.is_none()
        {
            first = Some((
                changes[i].element.model_type.to_string(),
                changes[i].element.key.clone(),
                err,
            ));
        }
        k += 1;
    }
    if let Err(err) = store.end_batch()
        && first.is_none()
    {
        first = Some((String::new(), String::new(), err));
    }
    store.recount_fingerprints();
    first
}

fn apply_change<S: Store + ?Sized>(store: &mut S, change: &mut Change<'_>) -> Result<()> {
    let e = change.element;
    match change.action {
        Action::Create => match change.new_model.take() {
            Some(model) => store.insert(model, change.parent),
            None => Ok(()),
        },
        Action::Update => match change.source {
            Some(src) => store.update_attributes(&e.model_type, &e.key, AttrSource::Model(src)),
            None => store.update_attributes(&e.model_type, &e.key, AttrSource::Values(&change.attrs)),
        },
        Action::Delete => store.remove(&e.model_type, &e.key, change.remove_subtree),
        _ => Ok(()),
    }
}
