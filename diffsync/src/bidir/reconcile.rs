//! The reconcile itself: classify both sides against the base, decide each
//! conflict, write both sides, and advance the base by what they acknowledged.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use super::base::{Base, BaseStore, Decided, Pending, SharedBaseStore};
use super::log::{ConflictSink, SharedSink};
use super::options::BiOptions;
use super::strategy::{Conflict, Strategy, merge_plan};
use crate::diff::{Action, Diff, DiffElement};
use crate::differ;
use crate::error::{Error, ReconcileError, Result, SyncError};
use crate::model::{AnyModel, Chain};
use crate::options::Options;
use crate::report::{BiReport, ConflictKind, ConflictRecord, Resolution, SyncReport};
use crate::store::{LocalStore, Store};
use crate::sync::adapter::{Adapter, AdapterExt};

/// Where an element's change goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// Structure only (an unchanged parent).
    Keep,
    ToLeft,
    ToRight,
    /// Both sides take part of the other's attributes (a merge).
    Both,
    /// A conflict left as it is.
    Skip,
}

/// Attributes each side takes, by key, for merged conflicts.
type MergePlans = HashMap<(String, String), (Vec<String>, Vec<String>)>;

/// (model type, key)
type Key<'a> = (&'a str, &'a str);

/// Base keys neither side holds any more (deleted on both).
fn deleted_on_both(base: &LocalStore, ls: &LocalStore, rs: &LocalStore) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in base.model_types() {
        for m in base.get_all_dyn(t) {
            let k = m.unique_id();
            if ls.find_dyn(t, &k).is_none() && rs.find_dyn(t, &k).is_none() {
                out.push((t.to_string(), k));
            }
        }
    }
    out
}

/// Rebuilds a lost or corrupt base: reconciles with an empty one, so every
/// model on one side only goes to the other (deletes since the lost base
/// cannot be told from creates) and every key the sides hold differently
/// is a create/create conflict for `strategy`. Returns the new base.
pub fn resync<L: Adapter + ?Sized, R: Adapter + ?Sized>(
    left: &mut L,
    right: &mut R,
    strategy: Strategy,
    opts: &BiOptions,
) -> Result<(Base, BiReport)> {
    let mut base = Base::new();
    let report = reconcile(left, right, &mut base, &opts.clone().strategy(strategy))?;
    Ok((base, report))
}

/// What each side did since the base, and how the sides differ: the
/// first step of a [`reconcile`], before any strategy.
#[derive(Debug)]
#[non_exhaustive]
pub struct Classification {
    /// The diff that makes the left side look like the right one.
    pub diff: Diff,
    /// Every key where a side differs from the base (changed on one side,
    /// or on both: identically, or a conflict when the sides differ).
    pub changes: Vec<KeyChange>,
    /// Base keys neither side holds any more (deleted on both: no conflict).
    pub deleted_on_both: Vec<(String, String)>,
}

/// What each side did to one key since the base: `Create`, `Update`,
/// `Delete`, or `None` for unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyChange {
    /// Model type name.
    pub model_type: std::borrow::Cow<'static, str>,
    /// Unique id.
    pub key: String,
    /// What the left side did.
    pub left: Option<Action>,
    /// What the right side did.
    pub right: Option<Action>,
}

/// Classifies every model of both sides against `base` in one walk of
/// the hierarchy (the sides against each other, each against the base by
/// content). Writes nothing.
pub fn classify<L: Adapter + ?Sized, R: Adapter + ?Sized>(left: &L, right: &R, base: &Base) -> Result<Classification> {
    let (ls, rs) = (left.store().local(), right.store().local());
    let (src, dst) = crate::sync::adapter::sides(left, right);
    let (diff, three) = differ::diff_three(&src, &dst, &base.store, &mut Options::new())?;
    let differ::ThreeWay { changes, seen, .. } = three;
    let deleted_on_both = if seen < base.len() {
        deleted_on_both(&base.store, ls, rs)
    } else {
        Vec::new()
    };
    let changes = changes
        .into_iter()
        .map(|c| KeyChange {
            model_type: c.model_type,
            key: c.key,
            left: c.dst,
            right: c.src,
        })
        .collect();
    Ok(Classification {
        diff,
        changes,
        deleted_on_both,
    })
}

/// Reconciles two adapters against `base`: what changed on one side only
/// goes to the other, what changed on both is a conflict for the strategy,
/// and the base takes every key that ends equal on both sides.
pub fn reconcile<L: Adapter + ?Sized, R: Adapter + ?Sized>(
    left: &mut L,
    right: &mut R,
    base: &mut Base,
    opts: &BiOptions,
) -> Result<BiReport> {
    reconcile_observed(left, right, base, opts, |_| Ok(()))
}

/// What a reconcile is about to write, shown to the observer of
/// [`reconcile_observed`] before either side is written.
#[derive(Clone, Copy, Debug)]
pub struct Planned<'a> {
    /// The changes going to the left side.
    pub to_left: &'a Diff,
    /// The changes going to the right side.
    pub to_right: &'a Diff,
    /// The conflicts, with their resolutions.
    pub conflicts: &'a [ConflictRecord],
}

/// [`reconcile`], showing `observe` what is about to be written to each
/// side (and the conflicts) once the plan is made and before either side
/// is written, dry runs included: a journal writes it ahead there. An
/// error from `observe` stops the reconcile before any write
/// ([`ReconcileError::Observer`]).
pub fn reconcile_observed<L: Adapter + ?Sized, R: Adapter + ?Sized>(
    left: &mut L,
    right: &mut R,
    base: &mut Base,
    opts: &BiOptions,
    observe: impl FnOnce(Planned<'_>) -> std::result::Result<(), crate::BoxError>,
) -> Result<BiReport> {
    if base.store.model_types().next().is_none() {
        base.store = left.store().local().empty_like("base");
    }
    let (ls, rs) = (left.store().local(), right.store().local());
    if !opts.allow_empty_side && !base.is_empty() {
        for (name, s) in [(left.name(), ls), (right.name(), rs)] {
            if s.count_all() == 0 {
                return Err(Error::Reconcile(ReconcileError::EmptySide {
                    side: name.to_string(),
                    base: base.len(),
                }));
            }
        }
    }
    let strategies = opts.strategies([ls, rs])?;
    let base_before = base.store.fingerprint();
    if !base.unknown.is_empty() {
        base.fill_unknown(ls, rs)?;
    }
    let resolved = !base.pending.is_empty();
    if resolved {
        base.resolve_pending(ls, rs)?;
    }
    let Classification {
        diff: d,
        changes,
        deleted_on_both: both_deleted,
    } = classify(left, right, base)?;
    let (mut cl, mut cr): (HashMap<Key<'_>, Action>, HashMap<Key<'_>, Action>) = Default::default();
    for c in &changes {
        let key = (c.model_type.as_ref(), c.key.as_str());
        if let Some(a) = c.left {
            cl.insert(key, a);
        }
        if let Some(a) = c.right {
            cr.insert(key, a);
        }
    }
    let suspects = std::mem::take(&mut base.suspect);
    let suspects_before = suspects.len();
    let judge = Judge {
        opts,
        strategies,
        base: &base.store,
        ls,
        rs,
    };
    let walk: Vec<_> = d.iter().collect();
    let mut flow = vec![Flow::Keep; walk.len()];
    let mut conflicts = Vec::new();
    let mut merges = MergePlans::new();
    let (units, in_unit) = moves(&walk);
    for unit in &units {
        judge.moved(unit, &walk, &mut flow, &mut conflicts);
    }
    for (i, (e, _)) in walk.iter().enumerate() {
        if e.action == Action::NoChange || in_unit[i] {
            continue;
        }
        let key = (e.model_type.as_ref(), e.key.as_str());
        flow[i] = match (cl.get(&key), cr.get(&key)) {
            // A key an interrupted write left in doubt: a conflict, by what
            // each side holds.
            (a, b) if (a.is_none() || b.is_none()) && suspects.contains(&(key.0.to_string(), key.1.to_string())) => {
                let kind = match (ls.find_dyn(key.0, key.1).is_some(), rs.find_dyn(key.0, key.1).is_some()) {
                    (true, false) => ConflictKind::UpdateDelete,
                    (false, true) => ConflictKind::DeleteUpdate,
                    _ => ConflictKind::UpdateUpdate,
                };
                let (flow, record) = judge.decide(key, kind, &mut merges);
                conflicts.push(record);
                flow
            }
            (None, Some(_)) => Flow::ToLeft,
            (Some(_), None) => Flow::ToRight,
            (Some(a), Some(b)) => {
                let kind = match (a, b) {
                    (Action::Update, Action::Delete) => ConflictKind::UpdateDelete,
                    (Action::Delete, Action::Update) => ConflictKind::DeleteUpdate,
                    (Action::Create, Action::Create) => ConflictKind::CreateCreate,
                    _ => ConflictKind::UpdateUpdate,
                };
                let (flow, record) = judge.decide(key, kind, &mut merges);
                conflicts.push(record);
                flow
            }
            // Equal to the base on both sides yet different: the base is
            // not what either holds (a base edited by hand); leave it.
            (None, None) => Flow::Skip,
        };
    }
    guard_deletes(&walk, &mut flow, &judge, &mut conflicts);
    // A conflict an earlier run decided (and logged) whose resolution never
    // reached the losing side: carried out as decided while the sides hold
    // what they held then, whatever the strategy says now (logged again,
    // so the record that says it was applied is this run's).
    let standing: Vec<Decided> = std::mem::take(&mut base.decided)
        .into_iter()
        .filter(|d| d.stands(ls, rs))
        .collect();
    if !standing.is_empty() {
        for c in &mut conflicts {
            let Some(d) = standing.iter().find(|d| d.model_type == c.model_type && d.key == c.key) else {
                continue;
            };
            let (resolution, to) = match d.left_won {
                true => (Resolution::Left, Flow::ToRight),
                false => (Resolution::Right, Flow::ToLeft),
            };
            for (i, (e, _)) in walk.iter().enumerate() {
                if e.action != Action::NoChange && e.model_type == c.model_type.as_str() && e.key == c.key {
                    flow[i] = to;
                }
            }
            let key = (c.model_type.as_str(), c.key.as_str());
            let clock = c.clock.clone();
            *c = record(
                &judge.conflict(key, c.kind),
                &d.strategy,
                clock.as_deref(),
                resolution,
                None,
            );
        }
    }
    drop(judge);
    // The flow of each element, by address: the selections below see the same elements.
    let flows: HashMap<*const DiffElement, Flow> = walk
        .iter()
        .zip(&flow)
        .filter(|(_, f)| matches!(f, Flow::ToLeft | Flow::ToRight | Flow::Both))
        .map(|((e, _), f)| (*e as *const DiffElement, *f))
        .collect();
    let goes = |e: &DiffElement, to: Flow| {
        let f = flows.get(&(e as *const DiffElement));
        f == Some(&to) || f == Some(&Flow::Both)
    };
    let mut to_left = d.select(false, |e| goes(e, Flow::ToLeft));
    let mut to_right = d.select(true, |e| goes(e, Flow::ToRight));
    drop(flows);
    // A merged element brings each side only the attributes it takes.
    for (plan, takes) in [(&mut to_left, 0), (&mut to_right, 1)] {
        crate::diff::for_each_mut(&mut plan.elements, |e| {
            let key = (e.model_type.to_string(), e.key.clone());
            if let Some(p) = merges.get(&key) {
                let names = if takes == 0 { &p.0 } else { &p.1 };
                e.changes.retain(|c| names.iter().any(|n| *n == c.name));
            }
        });
    }
    for (diff, name, store) in [(&to_left, left.name(), ls), (&to_right, right.name(), rs)] {
        let deletes = diff.summary().delete;
        if let Some(share) = opts.max_delete_share
            && deletes > 0
            && deletes as f64 > share * store.count_all() as f64
        {
            return Err(Error::Sync(SyncError::TooManyDeletes {
                side: name.to_string(),
                deletes,
                total: store.count_all(),
                share,
            }));
        }
    }
    // Parents before children, each key once.
    let touched: Vec<Key<'_>> = {
        let mut seen = HashSet::new();
        walk.iter()
            .map(|(e, _)| (e.model_type.as_ref(), e.key.as_str()))
            .chain(changes.iter().map(|c| (c.model_type.as_ref(), c.key.as_str())))
            .chain(both_deleted.iter().map(|(t, k)| (t.as_str(), k.as_str())))
            .filter(|k| seen.insert(*k))
            .collect()
    };
    let differing: HashSet<Key<'_>> = walk
        .iter()
        .filter(|(e, _)| e.action != Action::NoChange)
        .map(|(e, _)| (e.model_type.as_ref(), e.key.as_str()))
        .collect();
    drop(walk);

    // Write-ahead: the base, with the writes about to be made, is saved
    // before either side is written, so a crash in between cannot leave a
    // base older than the sides (which would take a deletion made later
    // for a creation on the other side).
    let saved = opts.saved.as_ref().filter(|_| !opts.dry_run);
    let writes = !opts.dry_run && (to_left.has_diffs() || to_right.has_diffs());
    let mut intents = Vec::new();
    if writes {
        intents = Base::intents(&to_left, ls, true);
        intents.extend(Base::intents(&to_right, rs, false));
    }
    if let Some(store) = saved.filter(|_| writes) {
        base.pending.clone_from(&intents);
        let ahead = lock_base(store).save(base);
        base.pending.clear();
        ahead?;
    }
    // Write-ahead: every conflict is in the log before either side is written.
    let run = run_id();
    for c in &mut conflicts {
        c.run.clone_from(&run);
    }
    let sink = opts.log.as_ref().filter(|_| !opts.dry_run && !conflicts.is_empty());
    if let Some(sink) = sink {
        lock_sink(sink)
            .write(&conflicts)
            .map_err(|source| Error::Reconcile(ReconcileError::ConflictLog { source }))?;
    }
    observe(Planned {
        to_left: &to_left,
        to_right: &to_right,
        conflicts: &conflicts,
    })
    .map_err(|source| Error::Reconcile(ReconcileError::Observer { source }))?;

    // Without source models: an update writes exactly its element's
    // changes (a merge takes only some), a create its element's values. A
    // panicking hook ends the run after what it did is recorded: the base
    // and the log are brought up to date, then the panic goes on.
    let sync_side = |side: &mut dyn FnMut() -> Result<SyncReport>| match catch_unwind(AssertUnwindSafe(side)) {
        Ok(r) => (r, None),
        Err(panic) => (Err(not_run(panic_text(&*panic))), Some(panic)),
    };
    let (left_result, mut panic) =
        sync_side(&mut || left.sync_diff(&to_left, &mut Options::new().dry_run(opts.dry_run)));
    let left_panicked = panic.is_some();
    let right_result = match panic {
        Some(_) => Err(not_run("not started: the other side's sync panicked".into())),
        None => {
            let (r, p) = sync_side(&mut || right.sync_diff(&to_right, &mut Options::new().dry_run(opts.dry_run)));
            panic = p;
            r
        }
    };
    let panicked = [left_panicked, !left_panicked && panic.is_some()];
    let (plan_left, plan_right) = (to_left, to_right);
    let (to_left, left_error) = split(left_result, left.name(), right.name());
    let (to_right, right_error) = split(right_result, right.name(), left.name());
    // What a system did not acknowledge stays out of the base, whatever its
    // store's image says (an image can be ahead of its system when a
    // store's flush or a `sync_complete` failed).
    let unacked_left = unacknowledged(&plan_left, &to_left, left_error.as_ref());
    let unacked_right = unacknowledged(&plan_right, &to_right, right_error.as_ref());
    settle(
        &mut conflicts,
        [
            SideOutcome {
                plan: &plan_left,
                unacked: &unacked_left,
                panicked: panicked[0],
            },
            SideOutcome {
                plan: &plan_right,
                unacked: &unacked_right,
                panicked: panicked[1],
            },
        ],
    );
    if let Some(sink) = sink
        && let Err(e) = lock_sink(sink).settle(&conflicts)
    {
        tracing::warn!(error = %e, run = %run, "conflict log: the outcomes could not be recorded");
    }
    // The writes of a side whose sync panicked, and those its system did
    // not acknowledge (a hook failed, or its answer was lost on the way:
    // the write may have landed all the same), stay pending: the next run
    // looks at the side before it classifies, so a write that landed is
    // not taken for the side's own edit.
    let pending: Vec<Pending> = intents
        .into_iter()
        .filter(|p| {
            let side = usize::from(!p.to_left);
            let unacked = if p.to_left { &unacked_left } else { &unacked_right };
            panicked[side] || unacked.contains(&(p.model_type.clone(), p.key.clone()))
        })
        .collect();
    let unacked: HashSet<(String, String)> = unacked_left.into_iter().chain(unacked_right).collect();

    let mut identical = both_deleted.len();
    let (ls, rs) = (left.store().local(), right.store().local());
    for key in &touched {
        let (t, k) = *key;
        if !unacked.is_empty() && unacked.contains(&(t.to_string(), k.to_string())) {
            continue;
        }
        let (in_left, in_right) = (ls.find_dyn(t, k).is_some(), rs.find_dyn(t, k).is_some());
        let agreed = match (in_left, in_right) {
            (true, true) => ls.same_attrs(t, k, rs),
            (false, false) => true,
            _ => false,
        };
        if !agreed {
            continue;
        }
        if !differing.contains(key) && cl.contains_key(key) {
            identical += 1;
        }
        if opts.dry_run {
            continue;
        }
        if in_left {
            base.agree(ls, t, k)?;
        } else if base.store.find_dyn(t, k).is_some() {
            base.store.remove(t, k, false)?;
        }
    }
    base.store.refresh_fingerprints();
    base.pending = pending;
    // A key in doubt stays so, and a decision not carried out stays to be
    // carried out, until both sides agree on the key.
    let (ls, rs) = (left.store().local(), right.store().local());
    let open = |t: &str, k: &str| match (ls.find_dyn(t, k).is_some(), rs.find_dyn(t, k).is_some()) {
        (true, true) => !ls.same_attrs(t, k, rs),
        (false, false) => false,
        _ => true,
    };
    base.suspect = suspects
        .into_iter()
        .filter(|(t, k)| opts.dry_run || open(t, k))
        .collect();
    let decided_before = standing.len();
    let mut decided = standing;
    if !opts.dry_run {
        for c in &report_conflicts(&conflicts) {
            if !decided.iter().any(|d| d.model_type == c.0 && d.key == c.1) {
                decided.push(Decided {
                    model_type: c.0.clone(),
                    key: c.1.clone(),
                    left_won: c.2,
                    strategy: c.3.clone(),
                    left: Decided::held(ls, &c.0, &c.1),
                    right: Decided::held(rs, &c.0, &c.1),
                });
            }
        }
        decided.retain(|d| open(&d.model_type, &d.key));
    }
    base.decided = decided;
    let moved = writes
        || resolved
        || base.suspect.len() != suspects_before
        || base.decided.len() != decided_before
        || base.store.fingerprint() != base_before;
    let base_error = saved
        .filter(|_| moved)
        .and_then(|store| lock_base(store).save(base).err());
    let report = BiReport {
        plan_left,
        plan_right,
        to_left,
        to_right,
        conflicts,
        identical,
        left_error,
        right_error,
    };
    if let Some(panic) = panic {
        resume_unwind(panic);
    }
    let stopped = report
        .stopped()
        .map(|(side, e)| (side.to_string(), Chain(e).to_string()))
        .or_else(|| base_error.map(|e| ("the base store".to_string(), Chain(&e).to_string())));
    match stopped {
        None => Ok(report),
        Some((side, message)) => Err(Error::Reconcile(ReconcileError::Unfinished {
            side,
            message,
            report: Box::new(report),
        })),
    }
}

fn lock_base(store: &SharedBaseStore) -> std::sync::MutexGuard<'_, dyn BaseStore + 'static> {
    store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A run's id: unique per process and time.
fn run_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}-{n}", std::process::id())
}

fn lock_sink(sink: &SharedSink) -> std::sync::MutexGuard<'_, dyn ConflictSink + Send + 'static> {
    sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A panic's message.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("a hook panicked: {text}")
}

/// A side's sync that did not run to its end with a report (it panicked,
/// or did not start): nothing of it is taken as acknowledged.
fn not_run(message: String) -> Error {
    Error::Sync(SyncError::Aborted {
        model_type: String::new(),
        key: String::new(),
        cause: message.into(),
        report: Box::default(),
    })
}

/// How one side's sync of a run ended, as [`settle`] needs it.
struct SideOutcome<'a> {
    /// What the side was to apply.
    plan: &'a Diff,
    /// The keys of `plan` its system did not acknowledge.
    unacked: &'a HashSet<(String, String)>,
    /// The side's sync panicked: what it planned is not known.
    panicked: bool,
}

/// Sets each conflict's `applied`: whether its resolution reached the
/// losing side's system (`None` when that side's sync panicked).
fn settle(conflicts: &mut [ConflictRecord], sides: [SideOutcome<'_>; 2]) {
    let planned: Vec<HashSet<(&str, &str)>> = sides
        .iter()
        .map(|side| {
            side.plan
                .iter()
                .filter(|(e, _)| e.action != Action::NoChange)
                .map(|(e, _)| (e.model_type.as_ref(), e.key.as_str()))
                .collect()
        })
        .collect();
    let reached = |side: usize, c: &ConflictRecord| -> Option<bool> {
        if !planned[side].contains(&(c.model_type.as_str(), c.key.as_str())) {
            return Some(false);
        }
        if sides[side].panicked {
            return None;
        }
        Some(!sides[side].unacked.contains(&(c.model_type.clone(), c.key.clone())))
    };
    for c in conflicts {
        c.applied = match c.resolution {
            Resolution::Left => reached(1, c),
            Resolution::Right => reached(0, c),
            Resolution::Merge => match (reached(0, c), reached(1, c)) {
                (None, _) | (_, None) => None,
                (Some(l), Some(r)) => {
                    let whole = |side: usize| !sides[side].unacked.contains(&(c.model_type.clone(), c.key.clone()));
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
fn unacknowledged(plan: &Diff, report: &SyncReport, error: Option<&Error>) -> HashSet<(String, String)> {
    let changed = plan
        .iter()
        .map(|(e, _)| e)
        .filter(|e| e.action != Action::NoChange)
        .map(|e| (e.model_type.to_string(), e.key.clone()));
    let whole = match error {
        None => false,
        Some(Error::Sync(SyncError::Aborted { .. })) => false,
        Some(Error::Sync(SyncError::StoreApply { model_type, .. })) => model_type.is_empty(),
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
        .map(|e| (e.model_type.as_str(), e.key.as_str()))
        .collect();
    let at = match error {
        Some(Error::Sync(SyncError::StoreApply { model_type, key, .. })) => Some((model_type.as_str(), key.as_str())),
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
fn report_conflicts(conflicts: &[ConflictRecord]) -> Vec<(String, String, bool, String)> {
    conflicts
        .iter()
        .filter(|c| c.applied != Some(true))
        .filter_map(|c| {
            let left_won = match c.resolution {
                Resolution::Left => true,
                Resolution::Right => false,
                _ => return None,
            };
            Some((c.model_type.clone(), c.key.clone(), left_won, c.strategy.clone()))
        })
        .collect()
}

/// A side's sync result as its report and its error, if it stopped.
fn split(r: Result<SyncReport>, dest: &str, source: &str) -> (SyncReport, Option<Error>) {
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

/// A model moved to another parent on a side (the diff deletes it under
/// one parent and creates it under another), with everything below it in
/// both places: one change, which goes whole one way or not at all.
struct Unit {
    /// The moved model's key.
    root: (String, String),
    /// The walk's elements of both subtrees.
    elements: Vec<usize>,
}

/// The moves in a walk, and which elements belong to one.
fn moves(walk: &[(&DiffElement, usize)]) -> (Vec<Unit>, Vec<bool>) {
    let mut in_unit = vec![false; walk.len()];
    let mut at: HashMap<Key<'_>, Vec<usize>> = HashMap::new();
    for (i, (e, _)) in walk.iter().enumerate() {
        if matches!(e.action, Action::Create | Action::Delete) {
            at.entry((e.model_type.as_ref(), e.key.as_str())).or_default().push(i);
        }
    }
    at.retain(|_, places| places.len() == 2 && walk[places[0]].0.action != walk[places[1]].0.action);
    if at.is_empty() {
        return (Vec::new(), in_unit);
    }
    let subtree = |i: usize| {
        let depth = walk[i].1;
        let end = walk[i + 1..]
            .iter()
            .position(|(_, d)| *d <= depth)
            .map_or(walk.len(), |n| i + 1 + n);
        i..end
    };
    let mut units = Vec::new();
    for i in 0..walk.len() {
        let (e, _) = walk[i];
        if in_unit[i] {
            continue;
        }
        let Some(places) = at.get(&(e.model_type.as_ref(), e.key.as_str())) else {
            continue;
        };
        let elements: Vec<usize> = places.iter().flat_map(|&p| subtree(p)).collect();
        for &j in &elements {
            in_unit[j] = true;
        }
        units.push(Unit {
            root: (e.model_type.to_string(), e.key.clone()),
            elements,
        });
    }
    (units, in_unit)
}

/// What decides conflicts: the options, each type's strategy and the three stores.
struct Judge<'a> {
    opts: &'a BiOptions,
    strategies: HashMap<String, Strategy>,
    base: &'a LocalStore,
    ls: &'a LocalStore,
    rs: &'a LocalStore,
}

impl Judge<'_> {
    /// Whether `side` holds the key otherwise than the base: present on one
    /// only, other attributes, or under another parent.
    fn changed(&self, side: &LocalStore, (t, k): Key<'_>) -> bool {
        match (side.find_dyn(t, k), self.base.find_dyn(t, k)) {
            (None, None) => false,
            (Some(_), None) | (None, Some(_)) => true,
            (Some(_), Some(_)) => {
                !self.base.same_attrs(t, k, side) || side.parent_of(t, k).ok() != self.base.parent_of(t, k).ok()
            }
        }
    }

    /// Decides a move: the side that moved it (and changed what it likes
    /// below it) wins when the other side changed nothing of the unit; else
    /// each key the two sides changed is a conflict, one record per key,
    /// and the strategy's decision for the first of them moves the whole
    /// unit one way or leaves it (a merge cannot split a move: left alone).
    fn moved(
        &self,
        unit: &Unit,
        walk: &[(&DiffElement, usize)],
        flow: &mut [Flow],
        conflicts: &mut Vec<ConflictRecord>,
    ) {
        let root = (unit.root.0.as_str(), unit.root.1.as_str());
        let (left_moved, right_moved) = (self.changed(self.ls, root), self.changed(self.rs, root));
        let mut keys: Vec<Key<'_>> = Vec::new();
        for &i in &unit.elements {
            let key = (walk[i].0.model_type.as_ref(), walk[i].0.key.as_str());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let changed: Vec<(Key<'_>, bool, bool)> = keys
            .iter()
            .map(|&k| (k, self.changed(self.ls, k), self.changed(self.rs, k)))
            .collect();
        let clear = |by_left: bool| {
            changed.iter().all(|(k, l, r)| {
                if by_left {
                    !*r || (*k == root && !right_moved)
                } else {
                    !*l || (*k == root && !left_moved)
                }
            })
        };
        let to = if left_moved && !right_moved && clear(true) {
            Flow::ToRight
        } else if right_moved && !left_moved && clear(false) {
            Flow::ToLeft
        } else {
            // Contested: the keys each side changed where the other changed
            // the unit too.
            let contested: Vec<Key<'_>> = changed
                .iter()
                .filter(|(k, l, r)| {
                    (*l && *r) || (*k == root && (*l || *r)) || (*l && right_moved) || (*r && left_moved)
                })
                .map(|(k, ..)| *k)
                .collect();
            let kind = |(t, k): Key<'_>| match (self.ls.find_dyn(t, k).is_some(), self.rs.find_dyn(t, k).is_some()) {
                (true, false) => ConflictKind::UpdateDelete,
                (false, true) => ConflictKind::DeleteUpdate,
                _ => ConflictKind::UpdateUpdate,
            };
            let lead = contested.first().copied().unwrap_or(root);
            let strategy = self.strategies.get(lead.0).unwrap_or(&self.opts.strategy);
            let resolution = match strategy.resolve(&self.conflict(lead, kind(lead))) {
                Resolution::Merge => Resolution::Skip,
                r => r,
            };
            for k in if contested.is_empty() { vec![root] } else { contested } {
                conflicts.push(record(
                    &self.conflict(k, kind(k)),
                    &strategy.name(),
                    strategy.clock(),
                    resolution,
                    None,
                ));
            }
            match resolution {
                Resolution::Left => Flow::ToRight,
                Resolution::Right => Flow::ToLeft,
                _ => Flow::Skip,
            }
        };
        for &i in &unit.elements {
            if walk[i].0.action != Action::NoChange {
                flow[i] = to;
            }
        }
    }

    fn conflict<'c>(&'c self, (t, k): Key<'c>, kind: ConflictKind) -> Conflict<'c> {
        Conflict {
            model_type: t,
            key: k,
            kind,
            base: self.base.find_dyn(t, k),
            left: self.ls.find_dyn(t, k),
            right: self.rs.find_dyn(t, k),
            left_replica: self.ls.name(),
            right_replica: self.rs.name(),
        }
    }

    /// How a deletion of a model with changes below it on the other side
    /// is resolved: `keeper`, the side that kept (and changed under) it,
    /// wins when modifications beat deletions; else the type's strategy
    /// decides (a merge cannot: unresolved). Returns the resolution, the
    /// strategy's name and its clock.
    fn child_under_delete(&self, key: Key<'_>, keeper: Resolution) -> (Resolution, String, Option<String>) {
        let strategy = self.strategies.get(key.0).unwrap_or(&self.opts.strategy);
        if self.opts.modification_beats_deletion {
            return (keeper, MODIFICATION_WINS.to_string(), None);
        }
        let resolution = match strategy.resolve(&self.conflict(key, ConflictKind::ChildUnderDelete)) {
            Resolution::Merge => Resolution::Skip,
            r => r,
        };
        (resolution, strategy.name(), strategy.clock().map(str::to_string))
    }

    /// Resolves one conflict with the model type's strategy.
    fn decide(&self, key: Key<'_>, kind: ConflictKind, merges: &mut MergePlans) -> (Flow, ConflictRecord) {
        let c = self.conflict(key, kind);
        let (t, k) = key;
        let strategy = self.strategies.get(t).unwrap_or(&self.opts.strategy);
        let modification = match kind {
            ConflictKind::UpdateDelete => Some(Resolution::Left),
            ConflictKind::DeleteUpdate => Some(Resolution::Right),
            _ => None,
        }
        .filter(|_| self.opts.modification_beats_deletion);
        let (mut resolution, name) = match modification {
            Some(r) => (r, MODIFICATION_WINS.to_string()),
            None => (strategy.resolve(&c), strategy.name()),
        };
        let mut left_takes = None;
        let flow = match resolution {
            Resolution::Left => Flow::ToRight,
            Resolution::Right => Flow::ToLeft,
            Resolution::Skip => Flow::Skip,
            Resolution::Merge => {
                let plan = (kind == ConflictKind::UpdateUpdate)
                    .then(|| merge_plan(&c, strategy.overlap_winner(&c)))
                    .flatten();
                match plan {
                    None => {
                        resolution = Resolution::Skip;
                        Flow::Skip
                    }
                    Some((l, r)) => {
                        let flow = match (l.is_empty(), r.is_empty()) {
                            (true, _) => Flow::ToRight,
                            (_, true) => Flow::ToLeft,
                            _ => Flow::Both,
                        };
                        left_takes = Some(l.clone());
                        merges.insert((t.to_string(), k.to_string()), (l, r));
                        flow
                    }
                }
            }
        };
        let record = record(&c, &name, strategy.clock(), resolution, left_takes.as_deref());
        (flow, record)
    }
}

/// The strategy named in the log when a modification beat a deletion.
const MODIFICATION_WINS: &str = "modification beats deletion";

/// A conflict's log record; `clock`: the attribute the strategy compared.
/// `left_takes`: for a merge, the attributes the left takes from the right.
fn record(
    c: &Conflict<'_>,
    strategy: &str,
    clock: Option<&str>,
    resolution: Resolution,
    left_takes: Option<&[String]>,
) -> ConflictRecord {
    let result = match resolution {
        Resolution::Left => c.left.map(|m| m.attributes()),
        Resolution::Right => c.right.map(|m| m.attributes()),
        Resolution::Skip => None,
        Resolution::Merge => c.left.zip(c.right).zip(left_takes).map(|((l, r), takes)| {
            let mut merged = l.attributes();
            for name in takes {
                if let Some(v) = r.attribute(name) {
                    merged.insert(name.clone().into(), v);
                }
            }
            merged
        }),
    };
    let schema = c.left.or(c.right).or(c.base).map(|m| m.schema());
    let clock = clock
        .map(str::to_string)
        .or_else(|| schema.and_then(|s| s.timestamp.as_ref().or(s.version.as_ref()).map(|f| f.to_string())));
    let value = |m: Option<&dyn AnyModel>| m.zip(clock.as_deref()).and_then(|(m, f)| m.attribute(f));
    ConflictRecord {
        model_type: c.model_type.to_string(),
        key: c.key.to_string(),
        kind: c.kind,
        base: c.base.map(|m| m.attributes()),
        left: c.left.map(|m| m.attributes()),
        right: c.right.map(|m| m.attributes()),
        strategy: strategy.to_string(),
        resolution,
        left_clock: value(c.left),
        right_clock: value(c.right),
        clock,
        left_replica: c.left_replica.to_string(),
        right_replica: c.right_replica.to_string(),
        run: String::new(),
        applied: None,
        result,
    }
}

/// A delete must not take descendants that do not go the same way: one
/// side deleted a model while the other changed something below it (a
/// child created, updated or deleted). The parent's strategy decides, as
/// for any conflict (with `modification_beats_deletion`, the modifying
/// side wins): the deletion wins and takes the subtree with it (each
/// change below it that is lost is logged); the modification wins and the
/// parent is recreated on the deleting side; or, left unresolved (`safe`),
/// neither the parent nor anything below it is touched. One record per
/// key: a key that already has one gets its resolution updated. Walks the
/// pre-order backwards (children first).
fn guard_deletes(
    walk: &[(&DiffElement, usize)],
    flow: &mut [Flow],
    judge: &Judge<'_>,
    conflicts: &mut Vec<ConflictRecord>,
) {
    let mut records: Records = conflicts
        .iter()
        .enumerate()
        .map(|(i, c)| ((c.model_type.clone(), c.key.clone()), i))
        .collect();
    type Records = HashMap<(String, String), usize>;
    fn log(records: &mut Records, conflicts: &mut Vec<ConflictRecord>, c: ConflictRecord) {
        match records.get(&(c.model_type.clone(), c.key.clone())) {
            Some(&at) => {
                let r = &mut conflicts[at];
                r.resolution = c.resolution;
                r.strategy = c.strategy;
            }
            None => {
                records.insert((c.model_type.clone(), c.key.clone()), conflicts.len());
                conflicts.push(c);
            }
        }
    }
    // Per depth: the flows seen among the descendants of the current element.
    let mut below: Vec<(bool, bool, bool)> = Vec::new(); // (to left, to right, skip)
    for i in (0..walk.len()).rev() {
        let (e, depth) = walk[i];
        let mut kids = below.get(depth + 1).copied().unwrap_or_default();
        below.truncate(depth + 1);
        below.resize(depth + 1, (false, false, false));
        // In the diff that makes the left look like the right, a Delete is
        // only on the left (deleted on the right) and a Create only on the right.
        let by_right = e.action == Action::Delete && flow[i] == Flow::ToLeft;
        let by_left = e.action == Action::Create && flow[i] == Flow::ToRight;
        let contested = (by_right && (kids.1 || kids.2)) || (by_left && (kids.0 || kids.2));
        if contested {
            let key = (e.model_type.as_ref(), e.key.as_str());
            let (deleter, keeper) = if by_right {
                (Resolution::Right, Resolution::Left)
            } else {
                (Resolution::Left, Resolution::Right)
            };
            let (mut resolution, name, clock) = judge.child_under_delete(key, keeper);
            let end = walk[i + 1..]
                .iter()
                .position(|(_, d)| *d <= depth)
                .map_or(walk.len(), |n| i + 1 + n);
            let c = judge.conflict(key, ConflictKind::ChildUnderDelete);
            if resolution == deleter {
                // The deletion stands, and takes the subtree with it.
                let to = flow[i];
                for j in i + 1..end {
                    if flow[j] != to {
                        let (d, _) = walk[j];
                        let lost =
                            judge.conflict((d.model_type.as_ref(), d.key.as_str()), ConflictKind::ChildUnderDelete);
                        log(
                            &mut records,
                            conflicts,
                            record(&lost, &name, clock.as_deref(), deleter, None),
                        );
                        flow[j] = to;
                    }
                }
            } else if resolution == keeper && !kids.2 {
                flow[i] = if by_right { Flow::ToRight } else { Flow::ToLeft };
            } else {
                resolution = Resolution::Skip;
                flow[i] = Flow::Skip;
                for j in i + 1..end {
                    if flow[j] != Flow::Keep {
                        flow[j] = Flow::Skip;
                        let (d, _) = walk[j];
                        if let Some(&at) = records.get(&(d.model_type.to_string(), d.key.clone())) {
                            conflicts[at].resolution = Resolution::Skip;
                        }
                    }
                }
            }
            log(
                &mut records,
                conflicts,
                record(&c, &name, clock.as_deref(), resolution, None),
            );
            kids = flow[i + 1..end].iter().fold((false, false, false), |k, f| {
                (
                    k.0 || matches!(f, Flow::ToLeft | Flow::Both),
                    k.1 || matches!(f, Flow::ToRight | Flow::Both),
                    k.2 || *f == Flow::Skip,
                )
            });
        }
        let me = &mut below[depth];
        me.0 |= kids.0 || matches!(flow[i], Flow::ToLeft | Flow::Both);
        me.1 |= kids.1 || matches!(flow[i], Flow::ToRight | Flow::Both);
        me.2 |= kids.2 || flow[i] == Flow::Skip;
    }
}
