//! Sync: turns a [`Diff`] into an ordered batch of changes, hands it to the
//! destination adapter's hooks, applies what succeeded to the destination store
//! and reports the outcome of every element.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::adapter::Adapter;
use crate::diff::{Action, ChildOrder, Diff, DiffElement};
use crate::error::{Error, HookError, Result};
use crate::flags::{DiffFlags, ModelFlags};
use crate::model::{AnyModel, Attrs, DiffModel, SchemaRef};
use crate::store::{AttrSource, LocalStore, Store};

/// Which phase a progress report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Computing the diff (`total` = models in both stores).
    Diff,
    /// Applying changes (`total` = changes in the batch).
    Sync,
}

/// A progress report: `current` of `total` done in `stage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The phase.
    pub stage: Stage,
    /// Done so far.
    pub current: usize,
    /// Expected in all.
    pub total: usize,
}

/// Options of a diff or sync. Build with the methods:
///
/// ```
/// use diffsync::{ChildOrder, DiffFlags, Options};
///
/// let mut seen = 0;
/// let mut on_progress = |_p: diffsync::Progress| seen += 1;
/// let opts = Options::new()
///     .flags(DiffFlags::CONTINUE_ON_FAILURE)
///     .order("interface", ChildOrder::ByKey)
///     .dry_run(true)
///     .progress(&mut on_progress);
/// assert!(opts.is_dry_run());
/// ```
#[derive(Default)]
pub struct Options<'a> {
    pub(crate) flags: DiffFlags,
    pub(crate) order: Vec<(String, ChildOrder)>,
    pub(crate) dry_run: bool,
    pub(crate) progress: Option<&'a mut dyn FnMut(Progress)>,
}

impl<'a> Options<'a> {
    /// Default options: no flags, insertion order, real sync, no progress.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the flags.
    pub fn flags(mut self, flags: DiffFlags) -> Self {
        self.flags = flags;
        self
    }
    /// Orders the siblings of `model_type` in the diff (and so in the sync).
    pub fn order(mut self, model_type: impl Into<String>, order: ChildOrder) -> Self {
        self.order.push((model_type.into(), order));
        self
    }
    /// Plans the sync and reports it without calling hooks or changing the store.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
    /// Calls `f` with progress (at most about a thousand times per stage, and at the end).
    pub fn progress(mut self, f: &'a mut dyn FnMut(Progress)) -> Self {
        self.progress = Some(f);
        self
    }
    /// Whether this is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }
}

/// Why an element was not attempted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A change it depends on (its parent, or for natural-order deletes a child) did not apply.
    DependencyFailed,
    /// The sync stopped at an earlier failure.
    Aborted,
}

/// What happened to one change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum Outcome {
    /// Not yet decided (inside a batch hook).
    Pending,
    /// Applied to the system and the store.
    Applied,
    /// The hook failed with this message.
    Failed(String),
    /// Not attempted.
    Skipped(SkipReason),
    /// Dry run: would be attempted.
    Planned,
}

impl Outcome {
    fn is_ok(&self) -> bool {
        matches!(self, Outcome::Applied | Outcome::Planned | Outcome::Pending)
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
    after: Vec<usize>,
    remove_children: bool,
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
    /// The source model as a concrete type.
    pub fn source_as<T: DiffModel>(&self) -> Option<&'a T> {
        self.source.and_then(|m| m.downcast_ref::<T>())
    }
    /// For a create: the model that will be stored in the destination; a hook
    /// may set local-only fields on it (a database id, say).
    pub fn new_model_mut<T: DiffModel>(&mut self) -> Option<&mut T> {
        self.new_model.as_deref_mut().and_then(|m| m.downcast_mut::<T>())
    }
    /// For a create: the model that will be stored.
    pub fn new_model(&self) -> Option<&dyn AnyModel> {
        self.new_model.as_deref()
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
/// and sets each one's outcome.
pub struct Batch<'a, 'p> {
    changes: Vec<Change<'a>>,
    outcomes: Vec<Outcome>,
    continue_on_failure: bool,
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
    /// Whether change `i` must be skipped because a change it depends on failed.
    /// Panics if `i >= self.len()`.
    pub fn is_blocked(&self, i: usize) -> bool {
        self.changes[i].after.iter().any(|&j| !self.outcomes[j].is_ok())
    }
    /// Records the result of change `i`. Panics if `i >= self.len()`.
    pub fn set_outcome(&mut self, i: usize, result: Result<(), HookError>) {
        let change = &self.changes[i];
        self.outcomes[i] = match result {
            Ok(()) => {
                tracing::debug!(action = %change.action, model = %change.element.model_type, key = %change.element.key, "applied");
                Outcome::Applied
            }
            Err(e) => {
                tracing::warn!(action = %change.action, model = %change.element.model_type, key = %change.element.key, error = %e, "change failed");
                Outcome::Failed(e.to_string())
            }
        };
        self.done += 1;
        if let Some(p) = self.progress.as_mut() {
            p(Progress {
                stage: Stage::Sync,
                current: self.done,
                total: self.changes.len(),
            });
        }
    }
    /// Marks change `i` as skipped. Panics if `i >= self.len()`.
    pub fn skip(&mut self, i: usize, reason: SkipReason) {
        self.outcomes[i] = Outcome::Skipped(reason);
    }

    /// Applies the changes one by one through the adapter's create/update/delete
    /// hooks: skips changes whose dependencies failed, and after a failure
    /// without CONTINUE_ON_FAILURE skips the rest. Returns whether it stopped early.
    pub fn apply_each<A: Adapter + ?Sized>(&mut self, adapter: &mut A) -> bool {
        for i in 0..self.changes.len() {
            if self.is_blocked(i) {
                self.skip(i, SkipReason::DependencyFailed);
                continue;
            }
            let change = &mut self.changes[i];
            let r = match change.action {
                Action::Create => adapter.create(change),
                Action::Update => adapter.update(change),
                Action::Delete => adapter.delete(change),
                Action::NoChange => Ok(()),
            };
            let failed = r.is_err();
            self.set_outcome(i, r);
            if failed && !self.continue_on_failure {
                for j in i + 1..self.changes.len() {
                    self.skip(j, SkipReason::Aborted);
                }
                return true;
            }
        }
        false
    }
}

/// What happened to one element in a sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementReport {
    /// Model type name.
    pub model_type: String,
    /// Unique id.
    pub key: String,
    /// The action attempted.
    pub action: Action,
    /// Its outcome.
    pub outcome: Outcome,
}

/// Totals of a sync report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Changes applied.
    pub applied: usize,
    /// Changes whose hook failed.
    pub failed: usize,
    /// Changes not attempted.
    pub skipped: usize,
    /// Changes planned (dry run).
    pub planned: usize,
}

/// The result of a sync: every change's outcome, in the order attempted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Source name.
    pub source: String,
    /// Destination name.
    pub dest: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// One entry per change.
    pub elements: Vec<ElementReport>,
}

impl SyncReport {
    /// Counts by outcome.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for e in &self.elements {
            match e.outcome {
                Outcome::Applied => t.applied += 1,
                Outcome::Failed(_) => t.failed += 1,
                Outcome::Skipped(_) | Outcome::Pending => t.skipped += 1,
                Outcome::Planned => t.planned += 1,
            }
        }
        t
    }
    /// Whether every change applied (or was planned).
    pub fn is_success(&self) -> bool {
        let t = self.totals();
        t.failed == 0 && t.skipped == 0
    }
    /// Whether the destination changed.
    pub fn changed(&self) -> bool {
        self.totals().applied > 0
    }
    /// The failed elements.
    pub fn failures(&self) -> impl Iterator<Item = &ElementReport> {
        self.elements.iter().filter(|e| matches!(e.outcome, Outcome::Failed(_)))
    }
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.totals();
        writeln!(
            f,
            "sync {} \u{2192} {}{}: applied {}, failed {}, skipped {}, planned {}",
            self.source,
            self.dest,
            if self.dry_run { " (dry run)" } else { "" },
            t.applied,
            t.failed,
            t.skipped,
            t.planned
        )?;
        for e in &self.elements {
            let outcome = match &e.outcome {
                Outcome::Applied => "applied".to_string(),
                Outcome::Failed(m) => format!("FAILED: {m}"),
                Outcome::Skipped(SkipReason::DependencyFailed) => "skipped (dependency failed)".into(),
                Outcome::Skipped(SkipReason::Aborted) => "skipped (sync aborted)".into(),
                Outcome::Planned => "planned".into(),
                Outcome::Pending => "pending".into(),
            };
            writeln!(f, "  {} {} {:?}: {}", e.action, e.model_type, e.key, outcome)?;
        }
        Ok(())
    }
}

/// Builds the ordered batch for `diff` against the destination store.
fn plan<'a>(diff: &'a Diff, source: Option<&'a LocalStore>, dest: &LocalStore) -> Result<Vec<Change<'a>>> {
    let mut out = Vec::new();
    for e in &diff.elements {
        plan_element(e, None, None, source, dest, &mut out)?;
    }
    Ok(out)
}

fn plan_element<'a>(
    e: &'a DiffElement,
    parent: Option<&'a DiffElement>,
    parent_change: Option<usize>,
    source: Option<&'a LocalStore>,
    dest: &LocalStore,
    out: &mut Vec<Change<'a>>,
) -> Result<()> {
    let dst_flags = dest
        .get_dyn(&e.model_type, &e.key)
        .map(|m| m.flags())
        .unwrap_or_default();
    let natural = e.action == Action::Delete && dst_flags.contains(ModelFlags::NATURAL_DELETION_ORDER);
    let skip_children = e.action == Action::Delete && dst_flags.contains(ModelFlags::SKIP_CHILDREN_ON_DELETE);
    let make = || -> Result<Option<Change<'a>>> {
        if e.action == Action::NoChange {
            return Ok(None);
        }
        let src_model = source.and_then(|s| s.get_dyn(&e.model_type, &e.key).ok());
        let new_model = match e.action {
            Action::Create => Some(new_model_for(e, src_model, dest)?),
            _ => None,
        };
        Ok(Some(Change {
            action: e.action,
            element: e,
            attrs: e.new_values(),
            source: src_model,
            parent: parent.map(|p| (p.model_type.as_ref(), p.key.as_str())),
            new_model,
            after: parent_change.into_iter().collect(),
            remove_children: e.action == Action::Delete,
        }))
    };
    if natural && !skip_children {
        // Children first; the parent waits for all of them, and they for
        // whatever this model's own parent waits on.
        let first = out.len();
        for c in &e.children {
            plan_element(c, Some(e), parent_change, source, dest, out)?;
        }
        let kids: Vec<usize> = (first..out.len()).collect();
        if let Some(mut ch) = make()? {
            ch.after.extend(kids);
            out.push(ch);
        }
        return Ok(());
    }
    let me = match make()? {
        Some(ch) => {
            out.push(ch);
            Some(out.len() - 1)
        }
        None => parent_change,
    };
    if !skip_children {
        for c in &e.children {
            plan_element(c, Some(e), me, source, dest, out)?;
        }
    }
    Ok(())
}

/// The model a create will store in the destination: the source model itself
/// when available and of the destination's type, else rebuilt from the element.
fn new_model_for(e: &DiffElement, src: Option<&dyn AnyModel>, dest: &LocalStore) -> Result<Box<dyn AnyModel>> {
    let dest_table = dest.table_index(&e.model_type).map(|t| &dest.tables[t as usize]);
    match (src, dest_table) {
        (Some(m), None) => Ok(m.clone_box()),
        (Some(m), Some(t)) if m.__new_vec().0.type_name() == t.models.type_name() => Ok(m.clone_box()),
        (_, Some(t)) => rebuild(e, &t.schema, &*t.models),
        (None, None) => Err(Error::Schema {
            model_type: e.model_type.to_string(),
            message: format!(
                "cannot create {:?}: the destination has not registered this model type",
                e.key
            ),
        }),
    }
}

fn rebuild(e: &DiffElement, schema: &SchemaRef, models: &dyn crate::store::ModelVec) -> Result<Box<dyn AnyModel>> {
    let attrs = e.source_attrs.clone().unwrap_or_default();
    models.build(schema, &e.identifiers, &attrs)
}

/// Runs a sync of `diff` into `dest`, with source models from `source` if given.
pub(crate) fn sync<A: Adapter + ?Sized>(
    dest: &mut A,
    diff: &Diff,
    source: Option<&LocalStore>,
    opts: &mut Options<'_>,
) -> Result<SyncReport> {
    let changes = plan(diff, source, dest.store().local())?;
    let n = changes.len();
    if opts.flags.contains(DiffFlags::LOG_UNCHANGED_RECORDS) {
        for (e, _) in diff.iter().filter(|(e, _)| e.action == Action::NoChange) {
            tracing::debug!(model = %e.model_type, key = %e.key, status = "success", "no changes to apply");
        }
    }
    tracing::info!(source = %diff.source, dest = %diff.dest, changes = n, dry_run = opts.dry_run, "sync started");
    let mut batch = Batch {
        changes,
        outcomes: vec![Outcome::Pending; n],
        continue_on_failure: opts.flags.contains(DiffFlags::CONTINUE_ON_FAILURE),
        progress: opts.progress.as_mut().map(|p| &mut **p as &mut dyn FnMut(Progress)),
        done: 0,
    };
    let mut aborted = false;
    if opts.dry_run {
        for i in 0..n {
            batch.outcomes[i] = Outcome::Planned;
        }
    } else if n > 0 {
        if let Err(e) = dest.apply_batch(&mut batch) {
            // The batch as a whole failed (say, a rolled-back transaction):
            // nothing of it is applied, and the store stays as it was.
            let msg = e.to_string();
            for o in &mut batch.outcomes {
                if o.is_ok() {
                    *o = Outcome::Failed(msg.clone());
                }
            }
            aborted = true;
        }
        // Without CONTINUE_ON_FAILURE any failure ends the sync, whether the
        // default per-change path stopped or a batch hook recorded it.
        aborted |= batch.outcomes.iter().any(|o| match o {
            Outcome::Skipped(SkipReason::Aborted) => true,
            Outcome::Failed(_) => !batch.continue_on_failure,
            _ => false,
        });
        for o in &mut batch.outcomes {
            if *o == Outcome::Pending {
                *o = Outcome::Applied;
            }
        }
    }
    let mut report = SyncReport {
        source: diff.source.clone(),
        dest: diff.dest.clone(),
        dry_run: opts.dry_run,
        elements: Vec::with_capacity(n),
    };
    let Batch { changes, outcomes, .. } = batch;
    // A networked store may buffer these writes and flush them at once.
    dest.store_mut().begin_batch();
    let mut store_error = None;
    for (mut change, outcome) in changes.into_iter().zip(outcomes) {
        if outcome == Outcome::Applied
            && store_error.is_none()
            && let Err(e) = apply_to_store(dest.store_mut(), &mut change)
        {
            store_error = Some(e);
        }
        report.elements.push(ElementReport {
            model_type: change.element.model_type.to_string(),
            key: change.element.key.clone(),
            action: change.action,
            outcome,
        });
    }
    let flushed = dest.store_mut().end_batch();
    if let Some(e) = store_error {
        return Err(e);
    }
    flushed?;
    if aborted {
        let first = report.failures().next().cloned();
        let (model_type, key, message) = match first {
            Some(ElementReport {
                model_type,
                key,
                outcome: Outcome::Failed(m),
                ..
            }) => (model_type, key, m),
            _ => (String::new(), String::new(), "batch failed".to_string()),
        };
        return Err(Error::SyncAborted {
            model_type,
            key,
            message,
            report: Box::new(report),
        });
    }
    if !opts.dry_run
        && report
            .elements
            .iter()
            .any(|e| !matches!(e.outcome, Outcome::Skipped(_)))
    {
        dest.sync_complete(diff, &report)
            .map_err(|source| Error::SyncComplete {
                adapter: diff.dest.clone(),
                source,
            })?;
    }
    let totals = report.totals();
    tracing::info!(applied = totals.applied, failed = totals.failed, "sync complete");
    Ok(report)
}

fn apply_to_store<S: Store + ?Sized>(store: &mut S, change: &mut Change<'_>) -> Result<()> {
    let e = change.element;
    match change.action {
        Action::Create => {
            let Some(model) = change.new_model.take() else {
                return Ok(());
            };
            store.insert(model, change.parent)
        }
        Action::Update => match change.source {
            Some(src) => store.update_attributes(&e.model_type, &e.key, AttrSource::Model(src)),
            None => store.update_attributes(&e.model_type, &e.key, AttrSource::Values(&change.attrs)),
        },
        Action::Delete => match store.remove(&e.model_type, &e.key, change.remove_children) {
            // Already gone with a deleted parent.
            Err(Error::NotFound { .. }) => Ok(()),
            r => r,
        },
        Action::NoChange => Ok(()),
    }
}
