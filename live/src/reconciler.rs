//! What a loop drives: a pass over changed keys or over everything, one
//! way ([`OneWay`]) or two ways ([`TwoWay`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use diffsync::bidir::{Base, BaseStore, BiOptions, ConflictRecord, ConflictSink, Resolution, SharedSink, reconcile};
use diffsync::feed::ChangeEvent;
use diffsync::{
    Adapter, AdapterExt, Chain, DiffFlags, ModelKey, Options, Outcome, Progress, ReconcileError, Sink, Store,
    SyncReport,
};

use crate::lock;

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PassOutcome {
    /// Changes applied.
    pub applied: usize,
    /// The keys of the changes applied, in order.
    pub changed: Vec<ModelKey>,
    /// Keys not brought in step, with why (retried later); `None`: the
    /// pass failed as a whole (every key it covered is retried).
    pub failed: Vec<(Option<ModelKey>, String)>,
    /// Conflicts met for the first time (a conflict left unresolved is
    /// reported once, until one side changes it again).
    pub conflicts: Vec<ConflictRecord>,
    /// Conflicts left unresolved after the pass (new or not).
    pub unresolved: usize,
}

impl PassOutcome {
    fn add_report(&mut self, report: &SyncReport) {
        self.applied += report.totals().applied;
        self.changed.extend(
            report
                .elements
                .iter()
                .filter(|e| e.outcome == Outcome::Applied)
                .map(|e| e.key.clone()),
        );
        for e in report.unfinished() {
            self.failed.push((Some(e.key.clone()), e.outcome.to_string()));
        }
    }
}

/// What a reconcile loop drives: how to bring some keys, or everything, in step.
pub trait Reconciler: Send {
    /// Brings the models these events name (the latest event of each
    /// dirty key) and their subtrees in step.
    fn sync_keys(&mut self, changed: &[ChangeEvent], origin: &str) -> PassOutcome;
    /// Compares everything and repairs what differs (start, anti-entropy,
    /// gap, manual trigger), telling `progress` how far it got. Cheap when
    /// nothing differs.
    fn sync_all(&mut self, origin: &str, progress: &mut dyn FnMut(Progress)) -> PassOutcome;
}

/// An adapter whose writes carry the loop's tag until this is dropped
/// (a panicking hook included).
struct Tagged<'a, A: Sink>(&'a mut A);

impl<'a, A: Sink> Tagged<'a, A> {
    fn new(adapter: &'a mut A, origin: &str) -> Self {
        adapter.set_origin(Some(origin));
        Tagged(adapter)
    }
}

impl<A: Sink> Drop for Tagged<'_, A> {
    fn drop(&mut self) {
        self.0.set_origin(None);
    }
}

/// One-way: a source's changes go to every target. A full pass re-reads
/// the source and every target ([`Adapter::refresh`]), so it also repairs
/// what another writer changed in a target.
pub struct OneWay<S, T> {
    source: Arc<Mutex<S>>,
    targets: Vec<Arc<Mutex<T>>>,
    allow_empty_source: bool,
    max_delete_share: Option<f64>,
}

impl<S, T> OneWay<S, T> {
    /// The source, and the targets kept in step with it. A source that
    /// comes up empty while a target is not is refused (a failed pass, see
    /// [`Options::allow_empty_source`]).
    pub fn new(source: Arc<Mutex<S>>, targets: Vec<Arc<Mutex<T>>>) -> Self {
        OneWay {
            source,
            targets,
            allow_empty_source: false,
            max_delete_share: None,
        }
    }

    /// Sync from a source that holds no model into targets that do
    /// (see [`Options::allow_empty_source`]).
    pub fn allow_empty_source(mut self, allow: bool) -> Self {
        self.allow_empty_source = allow;
        self
    }

    /// Refuse a sync that would delete more than this share of a target
    /// (see [`Options::max_delete_share`]).
    pub fn max_delete_share(mut self, share: Option<f64>) -> Self {
        self.max_delete_share = share;
        self
    }
}

impl<S: Adapter + Send, T: Sink + Send> OneWay<S, T> {
    /// Re-reads `changed` in the source, then syncs every target: the
    /// models of `part` (with their subtrees), or everything.
    fn each_target(
        &mut self,
        changed: &[ChangeEvent],
        part: Option<&[ModelKey]>,
        origin: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> PassOutcome {
        let mut source = lock(&self.source);
        let mut out = PassOutcome::default();
        if !changed.is_empty()
            && let Err(e) = source.reread(changed)
        {
            out.failed.push((None, format!("re-reading the source: {}", Chain(&e))));
            return out;
        }
        for target in &self.targets {
            let mut target = lock(target);
            let mut opts = Options::new()
                .flags(DiffFlags::CONTINUE_ON_FAILURE)
                .allow_empty_source(self.allow_empty_source)
                .max_delete_share(self.max_delete_share)
                .progress(&mut *progress);
            if let Some(keys) = part {
                opts = opts.part(keys);
            }
            let tagged = Tagged::new(&mut *target, origin);
            let result = tagged.0.sync_from_with(&*source, &mut opts);
            drop(tagged);
            match result {
                Ok(report) => out.add_report(&report),
                Err(e) => out.failed.push((None, Chain(&e).to_string())),
            }
        }
        out
    }
}

impl<S: Adapter + Send, T: Sink + Send> Reconciler for OneWay<S, T> {
    fn sync_keys(&mut self, changed: &[ChangeEvent], origin: &str) -> PassOutcome {
        let keys: Vec<ModelKey> = changed.iter().map(|e| e.key.clone()).collect();
        let mut out = self.each_target(changed, Some(&keys), origin, &mut |_| {});
        // A sync that stopped names no key: all of them are retried.
        let stopped: Vec<String> = out
            .failed
            .iter()
            .filter(|(k, _)| k.is_none())
            .map(|(_, e)| e.clone())
            .collect();
        out.failed.retain(|(k, _)| k.is_some());
        for e in stopped {
            out.failed.extend(keys.iter().map(|k| (Some(k.clone()), e.clone())));
        }
        out
    }

    fn sync_all(&mut self, origin: &str, progress: &mut dyn FnMut(Progress)) -> PassOutcome {
        let equal = {
            let mut source = lock(&self.source);
            if let Err(e) = source.refresh() {
                let mut out = PassOutcome::default();
                out.failed.push((None, format!("re-reading the source: {}", Chain(&e))));
                return out;
            }
            // The targets too: what another writer changed in a target is
            // what a full pass is there to repair, and no feed tells it.
            for target in &self.targets {
                let mut target = lock(target);
                if let Err(e) = target.refresh() {
                    let mut out = PassOutcome::default();
                    out.failed
                        .push((None, format!("re-reading the target {}: {}", target.name(), Chain(&e))));
                    return out;
                }
            }
            let root = source.store().local().fingerprint();
            self.targets
                .iter()
                .all(|t| lock(t).store().local().fingerprint() == root)
        };
        if equal {
            return PassOutcome::default();
        }
        self.each_target(&[], None, origin, progress)
    }
}

/// Two-way: a bidirectional [`reconcile`] of two adapters against their base.
///
/// Every conflict the loop meets is told to subscribers
/// ([`LoopEvent::Conflict`](crate::LoopEvent::Conflict), with its full record) and written to the
/// options' conflict sink ([`BiOptions::log_to`]) ahead of the writes; a
/// conflict left unresolved (`safe`) is told and logged once, and counted
/// by every pass while it stays, until one side changes it again. With a
/// [`BaseStore`] ([`TwoWay::persisted`]) the base is loaded at start and
/// saved after each pass that moved it, so a loop stopped and started
/// again loses none of the edits made meanwhile.
pub struct TwoWay<L, R> {
    left: Arc<Mutex<L>>,
    right: Arc<Mutex<R>>,
    base: Base,
    opts: BiOptions,
    /// The unresolved conflicts already reported, by identity.
    known: Arc<HashSet<String>>,
}

impl<L, R> TwoWay<L, R> {
    /// Both sides, the base they last agreed on, and the reconcile's
    /// options. The base lives in memory only: see [`persisted`](Self::persisted).
    pub fn new(left: Arc<Mutex<L>>, right: Arc<Mutex<R>>, base: Base, opts: BiOptions) -> Self {
        TwoWay {
            left,
            right,
            base,
            opts,
            known: Arc::default(),
        }
    }

    /// The base as it stands.
    pub fn base(&self) -> &Base {
        &self.base
    }
}

impl<L: Adapter, R> TwoWay<L, R> {
    /// Both sides and the options, the base loaded from `store` now (an
    /// empty one on the first run) and saved there by each pass that moves
    /// it, ahead of its writes and after them ([`BiOptions::save_to`]).
    pub fn persisted(
        left: Arc<Mutex<L>>,
        right: Arc<Mutex<R>>,
        mut store: impl BaseStore + 'static,
        opts: BiOptions,
    ) -> diffsync::Result<Self> {
        let base = store.load(lock(&left).store().local())?;
        let opts = opts.save_to(Arc::new(Mutex::new(store)));
        Ok(TwoWay::new(left, right, base, opts))
    }
}

/// A conflict's identity: what each side holds for the key. The same
/// identity in the next pass is the same conflict, still unresolved.
fn identity(c: &ConflictRecord) -> String {
    format!("{}\0{:?}\0{:?}\0{:?}", c.key, c.kind, c.left, c.right)
}

/// The loop's view of the user's conflict sink: conflicts already
/// reported unresolved are not logged again.
struct LoopSink {
    inner: Option<SharedSink>,
    known: Arc<HashSet<String>>,
}

impl LoopSink {
    fn fresh(&self, records: &[ConflictRecord]) -> Vec<ConflictRecord> {
        records
            .iter()
            .filter(|c| !self.known.contains(&identity(c)))
            .cloned()
            .collect()
    }
}

impl ConflictSink for LoopSink {
    fn write(&mut self, records: &[ConflictRecord]) -> Result<(), diffsync::BoxError> {
        let fresh = self.fresh(records);
        match &self.inner {
            Some(sink) if !fresh.is_empty() => lock(sink).write(&fresh),
            _ => Ok(()),
        }
    }
    fn settle(&mut self, records: &[ConflictRecord]) -> Result<(), diffsync::BoxError> {
        let fresh = self.fresh(records);
        match &self.inner {
            Some(sink) if !fresh.is_empty() => lock(sink).settle(&fresh),
            _ => Ok(()),
        }
    }
}

impl<L: Sink + Send, R: Sink + Send> TwoWay<L, R> {
    /// One reconcile: re-read both sides, reconcile (which saves the base
    /// of a persisted loop).
    fn pass(&mut self, origin: &str) -> PassOutcome {
        let mut out = PassOutcome::default();
        let whole = |out: &mut PassOutcome, e: String| out.failed.push((None, e));
        let (mut left, mut right) = (lock(&self.left), lock(&self.right));
        if let Err(e) = left.refresh().and_then(|()| right.refresh()) {
            whole(&mut out, format!("re-reading: {}", Chain(&e)));
            return out;
        }
        let sink = LoopSink {
            inner: self.opts.sink().cloned(),
            known: self.known.clone(),
        };
        let opts = self
            .opts
            .clone()
            .log_to_shared(Some(Arc::new(Mutex::new(sink)) as SharedSink));
        let (l, r) = (Tagged::new(&mut *left, origin), Tagged::new(&mut *right, origin));
        let result = reconcile(&mut *l.0, &mut *r.0, &mut self.base, &opts);
        drop((l, r));
        drop((left, right));
        let report = match result {
            Ok(report) => report,
            Err(diffsync::Error::Reconcile(ReconcileError::Unfinished { side, message, report })) => {
                whole(&mut out, format!("the sync to {side} stopped: {message}"));
                *report
            }
            Err(e) => {
                whole(&mut out, Chain(&e).to_string());
                return out;
            }
        };
        out.add_report(&report.to_left);
        out.add_report(&report.to_right);
        out.unresolved = report.unresolved();
        out.conflicts = report
            .conflicts
            .iter()
            .filter(|c| !self.known.contains(&identity(c)))
            .cloned()
            .collect();
        self.known = Arc::new(
            report
                .conflicts
                .iter()
                .filter(|c| c.resolution == Resolution::Skip)
                .map(identity)
                .collect(),
        );
        out
    }
}

impl<L: Sink + Send, R: Sink + Send> Reconciler for TwoWay<L, R> {
    /// A reconcile is cheap where nothing changed (fingerprints skip equal
    /// subtrees), so the keys only trigger it.
    fn sync_keys(&mut self, changed: &[ChangeEvent], origin: &str) -> PassOutcome {
        {
            let (mut left, mut right) = (lock(&self.left), lock(&self.right));
            // Each side re-reads what changed; an event of one side names
            // nothing the other side must read, and a re-read of an unknown
            // key is a no-op.
            if let Err(e) = left.reread(changed).and_then(|()| right.reread(changed)) {
                let mut out = PassOutcome::default();
                out.failed.push((None, format!("re-reading: {}", Chain(&e))));
                return out;
            }
        }
        self.pass(origin)
    }

    /// A reconcile reports no progress.
    fn sync_all(&mut self, origin: &str, _progress: &mut dyn FnMut(Progress)) -> PassOutcome {
        self.pass(origin)
    }
}
