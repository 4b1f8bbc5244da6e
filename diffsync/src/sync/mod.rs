//! Sync: turns a [`Diff`] into an ordered batch of changes, checks it against
//! the destination store, hands it to the destination adapter's hooks,
//! applies what the system took to the destination store and reports the
//! outcome of every element.
//!
//! The store is written only after the hooks, and only with the changes the
//! hooks reported applied: whatever fails (a hook, a whole batch, a panic),
//! the store holds exactly what the system took, so the next diff shows
//! exactly the unfinished work.

pub(crate) mod adapter;
mod change;
mod plan;
mod typed;

pub use crate::error::{HookError, SyncError};
pub use crate::report::{Cause, ElementReport, Outcome, SkipReason, SyncReport, Totals};
pub use change::{Batch, Change};
pub use typed::{Edit, Typed};

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use hashbrown::{HashMap, HashSet};

use crate::diff::{Action, Diff, DiffElement};
use crate::error::{Error, Result};
use crate::flags::DiffFlags;

use crate::model::Chain;
use crate::options::{Options, Progress, Stage};
use crate::store::{AttrSource, LocalStore, Store, StoreError};
use adapter::Sink;
use plan::{Entry, Plan, Planner};

/// Runs a sync of `diff` into `dest`, with source models from `source` if
/// given. `fresh`: the diff was just computed from these stores.
pub(crate) fn sync<A: Sink + ?Sized>(
    dest: &mut A,
    diff: &Diff,
    source: Option<&LocalStore>,
    fresh: bool,
    opts: &mut Options<'_>,
) -> Result<SyncReport> {
    sync_gated(dest, diff, source, fresh, opts, &mut || Ok(()))
}

/// [`sync`], calling `gate` once the changes are planned and checked and
/// before the first is written: an error from it stops the sync with
/// nothing written (the caller says why).
pub(crate) fn sync_gated<A: Sink + ?Sized>(
    dest: &mut A,
    diff: &Diff,
    source: Option<&LocalStore>,
    fresh: bool,
    opts: &mut Options<'_>,
    gate: &mut dyn FnMut() -> std::result::Result<(), ()>,
) -> Result<SyncReport> {
    check_rails(dest.store().local(), diff, source, opts)?;
    // Sized once: grown a push at a time, the plan's lists are copied at
    // each doubling (a change is 160 bytes).
    let (mut elements, mut creates, mut changing) = (0, 0, 0);
    for (e, _) in diff.iter() {
        elements += 1;
        creates += usize::from(e.action == Action::Create);
        changing += usize::from(e.action != Action::NoChange);
    }
    let mut planner = Planner {
        source,
        dest: dest.store().local(),
        check_identifiers: !fresh,
        located: fresh,
        created: HashSet::with_capacity(creates),
        deleted: HashMap::new(),
        plan: Plan {
            changes: Vec::with_capacity(changing),
            outcomes: Vec::with_capacity(changing),
            entries: Vec::with_capacity(elements),
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
            tracing::debug!(model = %e.model_type(), key = %e.key, status = "success", "no changes to apply");
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
        if gate().is_err() {
            return Err(Error::Sync(SyncError::Observer {
                source: "stopped before any write".into(),
            }));
        }
        // A panicking hook must not leave the store behind the system: what
        // the system took before the panic is recorded, then the panic goes on.
        match catch_unwind(AssertUnwindSafe(|| dest.apply_batch(&mut batch))) {
            Ok(Ok(())) => batch.settle(false, None),
            Ok(Err(e)) => {
                let unknown = matches!(e, HookError::Unknown(_)).then(|| Cause::from(Chain(e.cause()).to_string()));
                batch.settle(true, unknown.as_ref());
                batch_error = Some(e.into_cause());
            }
            Err(payload) => {
                batch.settle(true, None);
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
            (e.model_key(), message)
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
    if let Some((key, source)) = store_error {
        return Err(Error::Sync(SyncError::StoreApply {
            store: dest.store().name().to_string(),
            key,
            source: Box::new(source),
            report: Box::new(report),
        }));
    }
    if aborted {
        // What the store took must reach a system that is written at the
        // end (a file, an object): else the store would be ahead of it.
        if !opts.dry_run && report.totals().applied > 0 {
            dest.sync_complete(diff, &report).map_err(|source| {
                Error::Sync(SyncError::Complete {
                    adapter: diff.dest.clone(),
                    source: source.into_cause(),
                })
            })?;
        }
        let (key, message) = match stopped_at {
            Some((key, message)) => (Some(key), message),
            None => (None, "the batch failed".to_string()),
        };
        let cause = match (batch_error, culprit) {
            // The hook's error stays the cause's error; the batch's is told.
            (Some(b), Some((_, c))) => c.retold(format!("{message}; {}", Chain(&*b))),
            (Some(b), None) => Cause::new(format!("{message}; {}", Chain(&*b)), Some(b)),
            (None, Some((_, c))) => c,
            (None, None) => Cause::from(message),
        };
        return Err(Error::Sync(SyncError::Aborted {
            key,
            cause,
            report: Box::new(report),
        }));
    }
    if !opts.dry_run && outcomes.iter().any(Outcome::attempted) {
        dest.sync_complete(diff, &report).map_err(|source| {
            Error::Sync(SyncError::Complete {
                adapter: diff.dest.clone(),
                source: source.into_cause(),
            })
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
        return Err(Error::Sync(SyncError::EmptySource {
            source_name: diff.source.clone(),
            dest: diff.dest.clone(),
            models,
        }));
    }
    if let Some(share) = opts.max_delete_share {
        let deletes = diff.summary().delete;
        if deletes > 0 && deletes as f64 > share * models as f64 {
            return Err(Error::Sync(SyncError::TooManyDeletes {
                side: diff.dest.clone(),
                deletes,
                total: models,
                share,
            }));
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
            // The element's unique id is the text of its identifiers (the
            // differ made it from them; a loaded diff's is what the store
            // was looked up by): taken as it is, not made again.
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
) -> Option<(Option<crate::ModelKey>, StoreError)> {
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
            let removed = match store.local_mut() {
                Some(local) => {
                    let items: Vec<(&str, &str, bool)> = run
                        .iter()
                        .map(|&j| {
                            let c = &changes[j];
                            (c.element.model_type(), c.element.unique_id(), c.remove_subtree)
                        })
                        .collect();
                    local.remove_many_near(&items, |at| changes[run[at]].near)
                }
                None => {
                    let items: Vec<(crate::ModelKey, bool)> = run
                        .iter()
                        .map(|&j| (changes[j].element.model_key(), changes[j].remove_subtree))
                        .collect();
                    store.remove_many(&items)
                }
            };
            if let Err((at, err)) = removed {
                let e = changes[run[at]].element;
                first.get_or_insert((Some(e.model_key()), err));
            }
            k += run.len();
            continue;
        }
        if let Err(err) = apply_change(store, &mut changes[i])
            && first.is_none()
        {
            first = Some((Some(changes[i].element.model_key()), err));
        }
        k += 1;
    }
    if let Err(err) = store.end_batch()
        && first.is_none()
    {
        first = Some((None, err));
    }
    store.recount_fingerprints();
    first
}

fn apply_change<S: Store + ?Sized>(store: &mut S, change: &mut Change<'_>) -> Result<(), StoreError> {
    let e = change.element;
    fn values<'c>(change: &'c Change<'_>) -> AttrSource<'c> {
        match change.source {
            Some(src) => AttrSource::Model(src),
            None => AttrSource::Values(change.attrs()),
        }
    }
    // An in-memory store is written with the slots the diff found.
    if let Some(local) = store.local_mut() {
        return match change.action {
            Action::Create => match change.new_model.take() {
                Some(model) => local.insert_near(model, change.parent_uid(), change.parent_near),
                None => Ok(()),
            },
            Action::Update => local.update_near(e.model_type(), e.unique_id(), values(change), change.near),
            Action::Delete => local
                .remove_many_near(&[(e.model_type(), e.unique_id(), change.remove_subtree)], |_| {
                    change.near
                })
                .map_err(|(_, err)| err),
            _ => Ok(()),
        };
    }
    match change.action {
        Action::Create => match change.new_model.take() {
            Some(model) => store.insert(model, change.parent().as_ref()),
            None => Ok(()),
        },
        Action::Update => store.update_attributes(&e.model_key(), values(change)),
        Action::Delete => store.remove(&e.model_key(), change.remove_subtree),
        _ => Ok(()),
    }
}
