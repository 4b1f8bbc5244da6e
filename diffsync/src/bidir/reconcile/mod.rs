//! The reconcile itself: classify both sides against the base, decide each
//! conflict, write both sides, and advance the base by what they acknowledged.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

mod decide;
mod settle;

use decide::{Flow, Judge, Key, MergePlans, guard_deletes, moves, record};
use settle::{SideOutcome, not_run, panic_text, report_conflicts, settle, split, unacknowledged};

use super::base::{Base, BaseStore, Decided, Pending, SharedBaseStore};
use super::log::{ConflictSink, SharedSink};
use super::options::BiOptions;
use super::strategy::Strategy;
use crate::diff::{Action, Diff, DiffElement};
use crate::differ;
use crate::error::{Error, ReconcileError, Result, SyncError};
use crate::key::ModelKey;
use crate::model::Chain;
use crate::options::Options;
use crate::report::{BiReport, ConflictKind, ConflictRecord, Resolution, SyncReport};
use crate::store::{LocalStore, Store};
use crate::sync::adapter::{Adapter, AdapterExt, Sink};

/// Base keys neither side holds any more (deleted on both).
fn deleted_on_both(base: &LocalStore, ls: &LocalStore, rs: &LocalStore) -> Vec<ModelKey> {
    let mut out = Vec::new();
    for t in base.model_types() {
        for m in base.get_all_dyn(t) {
            let k = m.unique_id();
            if ls.find_dyn(t, &k).is_none() && rs.find_dyn(t, &k).is_none() {
                out.push(m.model_key());
            }
        }
    }
    out
}

/// Rebuilds a lost or corrupt base: reconciles with an empty one, so every
/// model on one side only goes to the other (deletes since the lost base
/// cannot be told from creates) and every key the sides hold differently
/// is a create/create conflict for `strategy`. Returns the new base.
pub fn resync<L: Sink + ?Sized, R: Sink + ?Sized>(
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
    pub deleted_on_both: Vec<ModelKey>,
}

/// What each side did to one key since the base: `Create`, `Update`,
/// `Delete`, or `None` for unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyChange {
    /// The model's key.
    pub key: ModelKey,
    /// What the left side did.
    pub left: Option<Action>,
    /// What the right side did.
    pub right: Option<Action>,
}

impl KeyChange {
    /// The model type.
    pub fn model_type(&self) -> &str {
        self.key.model_type()
    }
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
pub fn reconcile<L: Sink + ?Sized, R: Sink + ?Sized>(
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
pub fn reconcile_observed<L: Sink + ?Sized, R: Sink + ?Sized>(
    left: &mut L,
    right: &mut R,
    base: &mut Base,
    opts: &BiOptions,
    observe: impl FnOnce(Planned<'_>) -> std::result::Result<(), crate::BoxError>,
) -> Result<BiReport> {
    let prepared = prepare(&*left, &*right, base, opts)?;
    let (ls, rs) = (left.store().local(), right.store().local());
    let Classification {
        diff: d,
        changes,
        deleted_on_both: both_deleted,
    } = classify(left, right, base)?;
    let walk: Vec<_> = d.iter().collect();
    // Decisions of earlier runs not carried out yet, while they stand.
    let standing: Vec<Decided> = base.decided.iter().filter(|d| d.stands(ls, rs)).cloned().collect();
    let judge = Judge {
        opts,
        strategies: prepared.strategies,
        base: &base.store,
        ls,
        rs,
    };
    let Decisions {
        flow,
        mut conflicts,
        merges,
    } = decide_each(&walk, &changes, (&base.suspect, &base.kept), &standing, &judge);
    drop(judge);
    let (to_left, to_right) = select(&d, &walk, &flow, &merges);
    for (plan, name, store) in [(&to_left, left.name(), ls), (&to_right, right.name(), rs)] {
        check_deletes(plan, name, store, opts)?;
    }
    // Parents before children, each key once.
    let touched: Vec<Key<'_>> = {
        let mut seen = HashSet::new();
        walk.iter()
            .map(|(e, _)| (e.model_type(), e.unique_id()))
            .chain(changes.iter().map(|c| (c.key.model_type(), c.key.unique_id())))
            .chain(both_deleted.iter().map(|k| (k.model_type(), k.unique_id())))
            .filter(|k| seen.insert(*k))
            .collect()
    };
    let differing: HashSet<Key<'_>> = walk
        .iter()
        .filter(|(e, _)| e.action != Action::NoChange)
        .map(|(e, _)| (e.model_type(), e.unique_id()))
        .collect();
    let changed_left: HashSet<Key<'_>> = changes
        .iter()
        .filter(|c| c.left.is_some())
        .map(|c| (c.key.model_type(), c.key.unique_id()))
        .collect();
    drop(walk);

    let ahead = write_ahead(base, [&to_left, &to_right], [ls, rs], &mut conflicts, opts)?;
    observe(Planned {
        to_left: &to_left,
        to_right: &to_right,
        conflicts: &conflicts,
    })
    .map_err(|source| Error::Reconcile(ReconcileError::Observer { source }))?;

    let Applied {
        results: [left_result, right_result],
        panicked,
        panic,
    } = apply(left, right, &to_left, &to_right, opts);
    let (plan_left, plan_right) = (to_left, to_right);
    let (to_left, left_error) = split(left_result, left.name(), right.name());
    let (to_right, right_error) = split(right_result, right.name(), left.name());
    // What a system did not acknowledge stays out of the base, whatever its
    // store's image says (an image can be ahead of its system when a
    // store's flush or a `sync_complete` failed).
    let unacked = [
        unacknowledged(&plan_left, &to_left, left_error.as_ref()),
        unacknowledged(&plan_right, &to_right, right_error.as_ref()),
    ];
    settle(
        &mut conflicts,
        [
            SideOutcome {
                plan: &plan_left,
                unacked: &unacked[0],
                panicked: panicked[0],
                report: &to_left,
            },
            SideOutcome {
                plan: &plan_right,
                unacked: &unacked[1],
                panicked: panicked[1],
                report: &to_right,
            },
        ],
    );
    if let Some(sink) = ahead.sink
        && let Err(e) = lock_sink(sink).settle(&conflicts)
    {
        tracing::warn!(error = %e, run = %ahead.run, "conflict log: the outcomes could not be recorded");
    }
    let (ls, rs) = (left.store().local(), right.store().local());
    let identical = both_deleted.len()
        + advance(
            base,
            Sides { ls, rs },
            &touched,
            &unacked,
            |key| !differing.contains(key) && changed_left.contains(key),
            opts,
        )?;
    // The writes of a side whose sync panicked, and those its system did
    // not acknowledge (a hook failed, or its answer was lost on the way:
    // the write may have landed all the same), stay pending: the next run
    // looks at the side before it classifies, so a write that landed is
    // not taken for the side's own edit.
    base.pending = ahead
        .intents
        .into_iter()
        .filter(|p| {
            let side = usize::from(!p.to_left);
            panicked[side] || unacked[side].contains(&(p.model_type.clone(), p.key.clone()))
        })
        .collect();
    let doubts_moved = keep_doubts(base, Sides { ls, rs }, standing, &conflicts, opts);
    let moved = ahead.writes || prepared.resolved || doubts_moved || base.store.fingerprint() != prepared.base_before;
    let base_error = opts
        .saved
        .as_ref()
        .filter(|_| moved && !opts.dry_run)
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

/// What a run's first step found: each type's strategy, the base as it
/// was, and whether an earlier run's writes were settled.
struct Prepared {
    strategies: HashMap<String, Strategy>,
    base_before: crate::digest::Fingerprint,
    resolved: bool,
}

/// Before classifying: the rails that stop a run before it plans, and
/// what the base does not know yet learned from the sides (attributes it
/// never recorded, the writes an earlier run left in doubt).
fn prepare<L: Adapter + ?Sized, R: Adapter + ?Sized>(
    left: &L,
    right: &R,
    base: &mut Base,
    opts: &BiOptions,
) -> Result<Prepared> {
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
    Ok(Prepared {
        strategies,
        base_before,
        resolved,
    })
}

/// Keys (model type, key) as the base keeps them.
type KeySet = HashSet<(String, String)>;

/// Where each element's change goes, the conflicts and the merges.
struct Decisions {
    flow: Vec<Flow>,
    conflicts: Vec<ConflictRecord>,
    merges: MergePlans,
}

/// Decides each element of the walk: a change on one side goes to the
/// other, one on both (or on a key in doubt) is a conflict for the
/// strategy, a move is one change, a delete does not take what the other
/// side changed below it, and a decision an earlier run could not carry
/// out is carried out as made.
fn decide_each(
    walk: &[(&DiffElement, usize)],
    changes: &[KeyChange],
    (suspects, kept): (&KeySet, &KeySet),
    standing: &[Decided],
    judge: &Judge<'_>,
) -> Decisions {
    let (mut cl, mut cr): (HashMap<Key<'_>, Action>, HashMap<Key<'_>, Action>) = Default::default();
    for c in changes {
        let key = (c.key.model_type(), c.key.unique_id());
        if let Some(a) = c.left {
            cl.insert(key, a);
        }
        if let Some(a) = c.right {
            cr.insert(key, a);
        }
    }
    let (ls, rs) = (judge.ls, judge.rs);
    let mut flow = vec![Flow::Keep; walk.len()];
    let mut conflicts = Vec::new();
    let mut merges = MergePlans::new();
    let (units, in_unit) = moves(walk);
    for unit in &units {
        judge.moved(unit, walk, &mut flow, &mut conflicts);
    }
    for (i, (e, _)) in walk.iter().enumerate() {
        if e.action == Action::NoChange || in_unit[i] {
            continue;
        }
        let key = (e.model_type(), e.unique_id());
        flow[i] = match (cl.get(&key), cr.get(&key)) {
            // A key an interrupted write left in doubt: a conflict, by what
            // each side holds.
            (a, b) if (a.is_none() || b.is_none()) && suspects.contains(&(key.0.to_string(), key.1.to_string())) => {
                let kind = match (ls.find_dyn(key.0, key.1).is_some(), rs.find_dyn(key.0, key.1).is_some()) {
                    (true, false) => ConflictKind::UpdateDelete,
                    (false, true) => ConflictKind::DeleteUpdate,
                    _ => ConflictKind::UpdateUpdate,
                };
                let owned = (key.0.to_string(), key.1.to_string());
                let (flow, record) = match kind {
                    ConflictKind::UpdateDelete | ConflictKind::DeleteUpdate if kept.contains(&owned) => {
                        judge.kept(key, kind)
                    }
                    _ => judge.decide(key, kind, &mut merges),
                };
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
    guard_deletes(walk, &mut flow, judge, &mut conflicts);
    // A conflict an earlier run decided (and logged) whose resolution never
    // reached the losing side: carried out as decided while the sides hold
    // what they held then, whatever the strategy says now (logged again,
    // so the record that says it was applied is this run's).
    for c in &mut conflicts {
        let Some(d) = standing
            .iter()
            .find(|d| d.model_type == c.model_type() && d.key == c.key.unique_id())
        else {
            continue;
        };
        let (resolution, to) = match d.left_won {
            true => (Resolution::Left, Flow::ToRight),
            false => (Resolution::Right, Flow::ToLeft),
        };
        for (i, (e, _)) in walk.iter().enumerate() {
            if e.action != Action::NoChange && e.model_type() == c.model_type() && e.unique_id() == c.key.unique_id() {
                flow[i] = to;
            }
        }
        let key = (c.model_type(), c.key.unique_id());
        let clock = c.clock.clone();
        *c = record(
            &judge.conflict(key, c.kind),
            &d.strategy,
            clock.as_deref(),
            resolution,
            None,
        );
    }
    Decisions {
        flow,
        conflicts,
        merges,
    }
}

/// The diffs each side takes: the elements going its way (a merged one
/// with only the attributes it takes).
fn select(d: &Diff, walk: &[(&DiffElement, usize)], flow: &[Flow], merges: &MergePlans) -> (Diff, Diff) {
    // The flow of each element, by address: the selections see the same elements.
    let flows: HashMap<*const DiffElement, Flow> = walk
        .iter()
        .zip(flow)
        .filter(|(_, f)| matches!(f, Flow::ToLeft | Flow::ToRight | Flow::Both))
        .map(|((e, _), f)| (*e as *const DiffElement, *f))
        .collect();
    let goes = |e: &DiffElement, to: Flow| {
        let f = flows.get(&(e as *const DiffElement));
        f == Some(&to) || f == Some(&Flow::Both)
    };
    let mut to_left = d.select(false, |e| goes(e, Flow::ToLeft));
    let mut to_right = d.select(true, |e| goes(e, Flow::ToRight));
    for (plan, takes) in [(&mut to_left, 0), (&mut to_right, 1)] {
        crate::diff::for_each_mut(&mut plan.elements, |e| {
            let key = (e.model_type().to_string(), e.unique_id().to_string());
            if let Some(p) = merges.get(&key) {
                let names = if takes == 0 { &p.0 } else { &p.1 };
                e.retain_changes(|c| names.iter().any(|n| *n == c.name));
            }
        });
    }
    (to_left, to_right)
}

/// The rail: a side may not lose more than the share of its models the
/// options allow.
fn check_deletes(plan: &Diff, side: &str, store: &LocalStore, opts: &BiOptions) -> Result<()> {
    let deletes = plan.summary().delete;
    match opts.max_delete_share {
        Some(share) if deletes > 0 && deletes as f64 > share * store.count_all() as f64 => {
            Err(Error::Sync(SyncError::TooManyDeletes {
                side: side.to_string(),
                deletes,
                total: store.count_all(),
                share,
            }))
        }
        _ => Ok(()),
    }
}

/// What was written ahead of the writes.
struct Ahead<'o> {
    /// The writes about to be made (saved with the base when it is kept).
    intents: Vec<Pending>,
    /// Whether anything is to be written.
    writes: bool,
    /// The run's id, in each conflict record.
    run: String,
    /// The conflict log the records went to, to settle them after.
    sink: Option<&'o SharedSink>,
}

/// Write-ahead, before either side is written: the base with the writes
/// about to be made (so a crash in between cannot leave a base older than
/// the sides, which would take a deletion made later for a creation on
/// the other side), and every conflict in the log.
fn write_ahead<'o>(
    base: &mut Base,
    plans: [&Diff; 2],
    stores: [&LocalStore; 2],
    conflicts: &mut [ConflictRecord],
    opts: &'o BiOptions,
) -> Result<Ahead<'o>> {
    let writes = !opts.dry_run && plans.iter().any(|p| p.has_diffs());
    let mut intents = Vec::new();
    if writes {
        intents = Base::intents(plans[0], stores[0], true);
        intents.extend(Base::intents(plans[1], stores[1], false));
    }
    if let Some(store) = opts.saved.as_ref().filter(|_| writes) {
        base.pending.clone_from(&intents);
        let saved = lock_base(store).save(base);
        base.pending.clear();
        saved?;
    }
    let run = run_id();
    for c in conflicts.iter_mut() {
        c.run.clone_from(&run);
    }
    let sink = opts.log.as_ref().filter(|_| !opts.dry_run && !conflicts.is_empty());
    if let Some(sink) = sink {
        lock_sink(sink)
            .write(conflicts)
            .map_err(|source| Error::Reconcile(ReconcileError::ConflictLog { source }))?;
    }
    Ok(Ahead {
        intents,
        writes,
        run,
        sink,
    })
}

/// How the two sides' syncs ended.
struct Applied {
    results: [Result<SyncReport>; 2],
    /// Which side's sync panicked (the other did not start, or ran).
    panicked: [bool; 2],
    /// The panic, resumed once the run is recorded.
    panic: Option<Box<dyn std::any::Any + Send>>,
}

/// Writes each side its plan through its own sync, without source models:
/// an update writes exactly its element's changes (a merge takes only
/// some), a create its element's values. A panicking hook ends the run
/// after what it did is recorded: the base and the log are brought up to
/// date, then the panic goes on.
fn apply<L: Sink + ?Sized, R: Sink + ?Sized>(
    left: &mut L,
    right: &mut R,
    to_left: &Diff,
    to_right: &Diff,
    opts: &BiOptions,
) -> Applied {
    let sync_side = |side: &mut dyn FnMut() -> Result<SyncReport>| match catch_unwind(AssertUnwindSafe(side)) {
        Ok(r) => (r, None),
        Err(panic) => (Err(not_run(panic_text(&*panic))), Some(panic)),
    };
    let (left_result, mut panic) =
        sync_side(&mut || left.sync_diff(to_left, &mut Options::new().dry_run(opts.dry_run)));
    let left_panicked = panic.is_some();
    let right_result = match panic {
        Some(_) => Err(not_run("not started: the other side's sync panicked".into())),
        None => {
            let (r, p) = sync_side(&mut || right.sync_diff(to_right, &mut Options::new().dry_run(opts.dry_run)));
            panic = p;
            r
        }
    };
    Applied {
        results: [left_result, right_result],
        panicked: [left_panicked, !left_panicked && panic.is_some()],
        panic,
    }
}

/// The two sides' stores, after the writes.
#[derive(Clone, Copy)]
struct Sides<'a> {
    ls: &'a LocalStore,
    rs: &'a LocalStore,
}

impl Sides<'_> {
    /// Whether the sides hold the key differently (one only, or other attributes).
    fn apart(&self, t: &str, k: &str) -> bool {
        match (self.ls.find_dyn(t, k).is_some(), self.rs.find_dyn(t, k).is_some()) {
            (true, true) => !self.ls.same_attrs(t, k, self.rs),
            (false, false) => false,
            _ => true,
        }
    }
}

/// The base takes each touched key both sides acknowledged and ended equal
/// on; how many of them changed the same way on both sides (`identical`).
fn advance(
    base: &mut Base,
    sides: Sides<'_>,
    touched: &[Key<'_>],
    unacked: &[HashSet<(String, String)>; 2],
    identical: impl Fn(&Key<'_>) -> bool,
    opts: &BiOptions,
) -> Result<usize> {
    let mut count = 0;
    for key in touched {
        let (t, k) = *key;
        let owned = (t.to_string(), k.to_string());
        if unacked.iter().any(|u| u.contains(&owned)) || sides.apart(t, k) {
            continue;
        }
        if identical(key) {
            count += 1;
        }
        if opts.dry_run {
            continue;
        }
        if sides.ls.find_dyn(t, k).is_some() {
            base.agree(sides.ls, t, k)?;
        } else if base.store.find_dyn(t, k).is_some() {
            base.store.remove_uid(t, k, false)?;
        }
    }
    base.store.refresh_fingerprints();
    Ok(count)
}

/// A key in doubt stays so, and a decision not carried out stays to be
/// carried out, until both sides agree on the key; the conflicts whose
/// resolution did not reach the losing side become such decisions.
/// Whether either set changed.
fn keep_doubts(
    base: &mut Base,
    sides: Sides<'_>,
    standing: Vec<Decided>,
    conflicts: &[ConflictRecord],
    opts: &BiOptions,
) -> bool {
    if opts.dry_run {
        return false;
    }
    let (suspects_before, decided_before) = (base.suspect.clone(), base.decided.clone());
    base.suspect.retain(|(t, k)| sides.apart(t, k));
    let suspect = &base.suspect;
    base.kept.retain(|key| suspect.contains(key));
    let mut decided = standing;
    for (t, k, left_won, strategy) in report_conflicts(conflicts) {
        if !decided.iter().any(|d| d.model_type == t && d.key == k) {
            decided.push(Decided {
                left: Decided::held(sides.ls, &t, &k),
                right: Decided::held(sides.rs, &t, &k),
                model_type: t,
                key: k,
                left_won,
                strategy,
            });
        }
    }
    decided.retain(|d| sides.apart(&d.model_type, &d.key));
    base.decided = decided;
    base.suspect != suspects_before || base.decided != decided_before
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
