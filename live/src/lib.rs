//! Event-driven and incremental sync: a reconcile loop that keeps targets
//! in step with a source as it changes.
//!
//! The loop follows the controller pattern: change events are hints. Each
//! names a model; the loop keeps one dirty entry per key (however many
//! events came), waits out a debounce window, then re-reads and diffs just
//! those keys ([`Options::part`]) and applies what differs. A failed key is
//! retried with jittered exponential backoff (capped at 64 s by default).
//! Because feeds can lose events, a periodic anti-entropy pass compares the
//! stores' fingerprints and repairs whatever differs, and a feed that
//! reports a gap triggers such a pass at once. A sync also runs at start,
//! on [`LoopHandle::trigger`] and on cron schedules
//! ([`ReconcileLoop::schedule`], feature `cron`, on by default).
//!
//! The loop drives a [`Reconciler`]: [`OneWay`] (a source to one or more
//! targets) or [`TwoWay`] (a bidirectional reconcile against a base).
//!
//! # Threads, not async
//! The loop runs on one thread of its own. Adapters' hooks are synchronous
//! (SQLite, PostgreSQL, Redis clients, files), so an async runtime would only
//! add a dependency and the risk of blocking its executor; the loop sleeps
//! in the feeds' `poll` instead. Adapters are shared with the application
//! behind `Arc<Mutex<_>>`: the loop locks them for one pass at a time.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use diffsync::{Adapter, DiffModel, MemoryAdapter};
//! use diffsync_live::{LoopEvent, OneWay, ReconcileLoop};
//!
//! #[derive(DiffModel, Clone, Debug, PartialEq)]
//! #[diffsync(name = "site")]
//! struct Site { #[diffsync(id)] name: String, region: String }
//!
//! let source = Arc::new(Mutex::new(MemoryAdapter::new("cmdb", &["site"])));
//! let target = Arc::new(Mutex::new(MemoryAdapter::new("mirror", &["site"])));
//! let feed = source.lock().unwrap().store.subscribe();
//! let looped = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
//!     .feed(feed)
//!     .debounce(Duration::from_millis(5));
//! let events = looped.subscribe();
//! let handle = looped.spawn()?;
//! assert_eq!(events.recv().ok(), Some(LoopEvent::Started));
//! assert!(matches!(events.recv(), Ok(LoopEvent::FullPass { reason: "startup", .. })));
//! source.lock().unwrap().store.add(Site { name: "nyc".into(), region: "east".into() })?;
//! // The incremental sync of that key.
//! assert!(matches!(events.recv(), Ok(LoopEvent::Synced { keys: 1, applied: 1, .. })));
//! assert_eq!(target.lock().unwrap().store.count("site"), 1);
//! handle.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use diffsync::bidir::{Base, BaseStore, BiOptions, ConflictRecord, ConflictSink, Resolution, SharedSink, reconcile};
use diffsync::feed::{ChangeEvent, ChangeFeed, Position};
use diffsync::{
    Adapter, AdapterExt, DiffFlags, ElementReport, ModelKey, Options, Outcome, Progress, Stage, Store, SyncReport,
};

/// A model, by (type, key).
pub type Key = (String, String);

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PassOutcome {
    /// Changes applied.
    pub applied: usize,
    /// The keys of the changes applied, in order.
    pub changed: Vec<ModelKey>,
    /// Keys not brought in step, with why (retried later).
    pub failed: Vec<(Key, String)>,
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
                .map(ElementReport::model_key),
        );
        for e in report.unfinished() {
            self.failed
                .push(((e.model_type.clone(), e.key.clone()), e.outcome.to_string()));
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

/// Locks a shared adapter; a panic in an earlier pass poisoned nothing that
/// matters (a sync leaves the store as the system took the changes).
fn lock<A: ?Sized>(m: &Mutex<A>) -> MutexGuard<'_, A> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An adapter whose writes carry the loop's tag until this is dropped
/// (a panicking hook included).
struct Tagged<'a, A: Adapter>(&'a mut A);

impl<'a, A: Adapter> Tagged<'a, A> {
    fn new(adapter: &'a mut A, origin: &str) -> Self {
        adapter.set_origin(Some(origin));
        Tagged(adapter)
    }
}

impl<A: Adapter> Drop for Tagged<'_, A> {
    fn drop(&mut self) {
        self.0.set_origin(None);
    }
}

/// One-way: a source's changes go to every target.
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

impl<S: Adapter + Send, T: Adapter + Send> OneWay<S, T> {
    /// Re-reads `changed` in the source, then syncs every target: the
    /// models of `part` (with their subtrees), or everything.
    fn each_target(
        &mut self,
        changed: &[ChangeEvent],
        part: Option<&[Key]>,
        origin: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> PassOutcome {
        let mut source = lock(&self.source);
        let mut out = PassOutcome::default();
        if !changed.is_empty()
            && let Err(e) = source.reread(changed)
        {
            out.failed
                .push(((String::new(), String::new()), format!("re-reading the source: {e}")));
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
                opts = opts.part(keys.iter().cloned());
            }
            let tagged = Tagged::new(&mut *target, origin);
            let result = tagged.0.sync_from_with(&*source, &mut opts);
            drop(tagged);
            match result {
                Ok(report) => out.add_report(&report),
                Err(e) => out.failed.push(((String::new(), String::new()), e.to_string())),
            }
        }
        out
    }
}

impl<S: Adapter + Send, T: Adapter + Send> Reconciler for OneWay<S, T> {
    fn sync_keys(&mut self, changed: &[ChangeEvent], origin: &str) -> PassOutcome {
        let keys: Vec<Key> = changed.iter().map(|e| (e.model_type.clone(), e.key.clone())).collect();
        let mut out = self.each_target(changed, Some(&keys), origin, &mut |_| {});
        // A sync that stopped names no key: all of them are retried.
        let stopped: Vec<String> = out
            .failed
            .iter()
            .filter(|(k, _)| k.0.is_empty())
            .map(|(_, e)| e.clone())
            .collect();
        out.failed.retain(|(k, _)| !k.0.is_empty());
        for e in stopped {
            out.failed.extend(keys.iter().map(|k| (k.clone(), e.clone())));
        }
        out
    }

    fn sync_all(&mut self, origin: &str, progress: &mut dyn FnMut(Progress)) -> PassOutcome {
        let equal = {
            let mut source = lock(&self.source);
            if let Err(e) = source.refresh() {
                let mut out = PassOutcome::default();
                out.failed
                    .push(((String::new(), String::new()), format!("re-reading the source: {e}")));
                return out;
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
/// ([`LoopEvent::Conflict`], with its full record) and written to the
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
    format!("{}\0{}\0{:?}\0{:?}\0{:?}", c.model_type, c.key, c.kind, c.left, c.right)
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

impl<L: Adapter + Send, R: Adapter + Send> TwoWay<L, R> {
    /// One reconcile: re-read both sides, reconcile (which saves the base
    /// of a persisted loop).
    fn pass(&mut self, origin: &str) -> PassOutcome {
        let mut out = PassOutcome::default();
        let whole = |out: &mut PassOutcome, e: String| out.failed.push(((String::new(), String::new()), e));
        let (mut left, mut right) = (lock(&self.left), lock(&self.right));
        if let Err(e) = left.refresh().and_then(|()| right.refresh()) {
            whole(&mut out, format!("re-reading: {e}"));
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
            Err(diffsync::Error::Unfinished { side, message, report }) => {
                whole(&mut out, format!("the sync to {side} stopped: {message}"));
                *report
            }
            Err(e) => {
                whole(&mut out, e.to_string());
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

impl<L: Adapter + Send, R: Adapter + Send> Reconciler for TwoWay<L, R> {
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
                out.failed
                    .push(((String::new(), String::new()), format!("re-reading: {e}")));
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

/// What the loop tells its subscribers (and `tracing`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LoopEvent {
    /// The loop runs.
    Started,
    /// Dirty keys were synced.
    Synced {
        /// How many keys.
        keys: usize,
        /// Changes applied.
        applied: usize,
        /// The keys of the changes applied, in order.
        changed: Vec<ModelKey>,
        /// Keys left for a retry.
        failed: usize,
        /// Time from the oldest key's first event to its apply.
        latency: Duration,
        /// Conflicts left unresolved (two-way; 0 one-way).
        unresolved: usize,
    },
    /// A two-way loop met a conflict: what each side held, what the
    /// strategy decided and whether it was applied. An unresolved one is
    /// told once, until one side changes it again.
    Conflict(Box<ConflictRecord>),
    /// A key could not be brought in step; it is retried after `retry_in`.
    Failed {
        /// The model (empty for a failure of the whole pass or a feed).
        key: Key,
        /// Why.
        error: String,
        /// When it is tried again.
        retry_in: Duration,
    },
    /// A feed may have lost events: a full pass follows.
    Gap {
        /// Which feed (its index in the builder's order).
        feed: usize,
    },
    /// How far a full pass got (at most every 100 ms, and at the end of
    /// each stage of each target's sync).
    Progress {
        /// Why the pass runs.
        reason: &'static str,
        /// Diffing or applying.
        stage: Stage,
        /// Done so far.
        current: usize,
        /// Expected in all.
        total: usize,
    },
    /// A full pass ran (start, anti-entropy, gap, trigger).
    FullPass {
        /// Why it ran.
        reason: &'static str,
        /// Changes applied (0 when everything was in step).
        repaired: usize,
        /// Keys left for a retry.
        failed: usize,
        /// Why the pass failed as a whole (a source that could not be
        /// read, a sync that stopped); it is retried after a backoff.
        error: Option<String>,
        /// Conflicts left unresolved (two-way; 0 one-way): a pass that
        /// leaves some is not clean.
        unresolved: usize,
    },
    /// The loop stopped.
    Stopped,
}

enum Command {
    Trigger,
    Shutdown,
}

/// Builds and starts a reconcile loop.
pub struct ReconcileLoop<R> {
    reconciler: R,
    feeds: Vec<Box<dyn ChangeFeed>>,
    debounce: Duration,
    anti_entropy: Option<Duration>,
    min_backoff: Duration,
    max_backoff: Duration,
    max_pending: usize,
    max_batch: usize,
    startup_sync: bool,
    commit_every: Duration,
    origin: String,
    listeners: Arc<Mutex<Vec<Sender<LoopEvent>>>>,
    /// Cron schedules of full passes.
    #[cfg(feature = "cron")]
    schedules: Vec<croner::Cron>,
}

/// A cron pattern that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cron pattern {pattern:?}: {message}")]
pub struct BadSchedule {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong.
    pub message: String,
}

impl<R: Reconciler + 'static> ReconcileLoop<R> {
    /// A loop driving `reconciler`: debounce 100 ms, anti-entropy every
    /// 5 minutes (±10 %), backoff 100 ms doubling to 64 s, at most 100,000
    /// dirty keys, batches of 10,000, a full sync at start, cursors
    /// committed every second.
    pub fn new(reconciler: R) -> Self {
        ReconcileLoop {
            reconciler,
            feeds: Vec::new(),
            debounce: Duration::from_millis(100),
            anti_entropy: Some(Duration::from_secs(300)),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(64),
            max_pending: 100_000,
            max_batch: 10_000,
            startup_sync: true,
            commit_every: Duration::from_secs(1),
            origin: "diffsync-live".into(),
            listeners: Arc::default(),
            #[cfg(feature = "cron")]
            schedules: Vec::new(),
        }
    }
    /// Also runs a full pass at the times of a cron pattern (UTC; five
    /// fields, or six with seconds first: `"0 */15 * * * *"`).
    #[cfg(feature = "cron")]
    pub fn schedule(mut self, pattern: &str) -> Result<Self, BadSchedule> {
        let cron = <croner::Cron as std::str::FromStr>::from_str(pattern).map_err(|e| BadSchedule {
            pattern: pattern.to_string(),
            message: e.to_string(),
        })?;
        self.schedules.push(cron);
        Ok(self)
    }
    /// Lifecycle events, from the start (see also [`LoopHandle::subscribe`]).
    pub fn subscribe(&self) -> Receiver<LoopEvent> {
        subscribe(&self.listeners)
    }
    /// Adds a change feed.
    pub fn feed(mut self, feed: impl ChangeFeed + 'static) -> Self {
        self.feeds.push(Box::new(feed));
        self
    }
    /// How long a key waits after its first event before it is synced
    /// (later events in the window join it: one apply per key per window).
    pub fn debounce(mut self, d: Duration) -> Self {
        self.debounce = d;
        self
    }
    /// Period of the anti-entropy pass (jittered ±10 %); `None`: never.
    pub fn anti_entropy(mut self, every: Option<Duration>) -> Self {
        self.anti_entropy = every;
        self
    }
    /// Retry delays: from `min`, doubling, jittered, at most `max`.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max;
        self
    }
    /// At most this many dirty keys: past it the feeds are not read (a
    /// durable feed keeps the rest) until the loop catches up.
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n.max(1);
        self
    }
    /// At most this many keys per incremental sync.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }
    /// Whether to run a full sync when the loop starts.
    pub fn startup_sync(mut self, on: bool) -> Self {
        self.startup_sync = on;
        self
    }
    /// How often the feeds' cursors are persisted (also when the loop
    /// stops): each at the last position before the oldest event not yet
    /// handled, so it advances under sustained load.
    pub fn commit_every(mut self, every: Duration) -> Self {
        self.commit_every = every;
        self
    }
    /// The tag of the loop's own writes (their events are not new work).
    pub fn origin(mut self, tag: impl Into<String>) -> Self {
        self.origin = tag.into();
        self
    }
    /// Starts the loop on its own thread (an error when the system cannot
    /// start one).
    pub fn spawn(self) -> std::io::Result<LoopHandle> {
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let listeners = self.listeners.clone();
        let state = Worker {
            cfg: self,
            dirty: HashMap::new(),
            polls: 0,
            marks: Vec::new(),
            last_commit: Instant::now(),
            full_retry: None,
            listeners: listeners.clone(),
            cmd: cmd_rx,
        };
        let thread = std::thread::Builder::new()
            .name("diffsync-live".into())
            .spawn(move || state.run())?;
        Ok(LoopHandle {
            cmd: cmd_tx,
            thread: Some(thread),
            listeners,
        })
    }
}

fn subscribe(listeners: &Mutex<Vec<Sender<LoopEvent>>>) -> Receiver<LoopEvent> {
    let (tx, rx) = mpsc::channel();
    lock(listeners).push(tx);
    rx
}

/// Controls a running loop.
pub struct LoopHandle {
    cmd: Sender<Command>,
    thread: Option<JoinHandle<()>>,
    listeners: Arc<Mutex<Vec<Sender<LoopEvent>>>>,
}

impl LoopHandle {
    /// Lifecycle events from now on.
    pub fn subscribe(&self) -> Receiver<LoopEvent> {
        subscribe(&self.listeners)
    }
    /// Runs a full pass as soon as the current step is done.
    pub fn trigger(&self) {
        let _ = self.cmd.send(Command::Trigger);
    }
    /// Whether the loop's thread still runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
    /// Stops the loop after its current step and waits for it.
    pub fn shutdown(mut self) {
        self.stop();
    }
    fn stop(&mut self) {
        let _ = self.cmd.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LoopHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One dirty key.
struct Dirty {
    /// The latest event about it.
    event: ChangeEvent,
    /// When its first pending event came (for latency).
    since: Instant,
    /// When it is due.
    due: Instant,
    /// Retry delays, once it failed.
    backoff: Option<ExponentialBackoff>,
    /// The poll that read its oldest unhandled event (none for a key that
    /// only a pass's failure made dirty): feeds are committed only up to
    /// positions before it.
    first_poll: Option<u64>,
}

struct Worker<R> {
    cfg: ReconcileLoop<R>,
    dirty: HashMap<Key, Dirty>,
    /// Polls of the feeds so far.
    polls: u64,
    /// Per feed, positions not committed yet, with the poll that reached them.
    marks: Vec<VecDeque<(u64, Position)>>,
    last_commit: Instant,
    /// A full pass that failed as a whole is retried: when, and its delays.
    full_retry: Option<(Instant, ExponentialBackoff)>,
    listeners: Arc<Mutex<Vec<Sender<LoopEvent>>>>,
    cmd: Receiver<Command>,
}

/// Retry delays: jittered, doubling from `min`, at most `max`, endless.
fn delays(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(min)
        .with_max_delay(max)
        .without_max_times()
        .build()
}

/// Sends an event to every subscriber still listening.
fn tell(listeners: &Mutex<Vec<Sender<LoopEvent>>>, event: LoopEvent) {
    lock(listeners).retain(|l| l.send(event.clone()).is_ok());
}

/// The least time between two progress events of a pass.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The longest the loop sleeps in a feed's poll, so commands are seen.
const TICK: Duration = Duration::from_millis(20);

impl<R: Reconciler> Worker<R> {
    fn emit(&self, event: LoopEvent) {
        match &event {
            LoopEvent::Failed { key, error, retry_in } => {
                tracing::warn!(model_type = %key.0, key = %key.1, %error, ?retry_in, "sync failed, retrying")
            }
            LoopEvent::Gap { feed } => tracing::warn!(feed, "feed reported a gap, full pass"),
            other => tracing::debug!(event = ?other, "reconcile loop"),
        }
        tell(&self.listeners, event);
    }

    /// The next time a cron schedule asks for a full pass.
    #[cfg(feature = "cron")]
    fn next_scheduled(&self) -> Option<Instant> {
        let now = chrono::Utc::now();
        self.cfg
            .schedules
            .iter()
            .filter_map(|c| c.find_next_occurrence(&now, false).ok())
            .filter_map(|t| (t - now).to_std().ok())
            .min()
            .map(|d| Instant::now() + d)
    }

    #[cfg(not(feature = "cron"))]
    fn next_scheduled(&self) -> Option<Instant> {
        None
    }

    fn next_anti_entropy(&self) -> Option<Instant> {
        self.cfg.anti_entropy.map(|every| {
            let jitter = 0.9 + fastrand::f64() * 0.2;
            Instant::now() + every.mul_f64(jitter)
        })
    }

    fn run(mut self) {
        self.emit(LoopEvent::Started);
        if self.cfg.startup_sync {
            self.full_pass("startup");
        }
        let mut next_ae = self.next_anti_entropy();
        let mut next_cron = self.next_scheduled();
        loop {
            match self.cmd.try_recv() {
                Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => break,
                Ok(Command::Trigger) => self.full_pass("trigger"),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            let next_due = self.dirty.values().map(|d| d.due).min();
            let retry = self.full_retry.as_ref().map(|(t, _)| *t);
            let until = [next_due, next_ae, retry, next_cron].into_iter().flatten().min();
            let wait = until.map_or(TICK, |t| t.saturating_duration_since(now).min(TICK));
            if self.poll_feeds(wait) {
                self.full_pass("gap");
            }
            self.sync_due();
            if next_cron.is_some_and(|t| Instant::now() >= t) {
                self.full_pass("schedule");
                next_cron = self.next_scheduled();
            } else if next_ae.is_some_and(|t| Instant::now() >= t) {
                self.full_pass("anti-entropy");
                next_ae = self.next_anti_entropy();
            } else if self.full_retry.as_ref().is_some_and(|(t, _)| Instant::now() >= *t) {
                self.full_pass("retry");
            }
            // Every step (at most every `commit_every`), so a commit that
            // failed is tried again even when no new work comes.
            self.commit_feeds(false);
        }
        self.commit_feeds(true);
        self.emit(LoopEvent::Stopped);
    }

    /// Reads the feeds into the dirty set; true when one reported a gap.
    fn poll_feeds(&mut self, wait: Duration) -> bool {
        let room = self.cfg.max_pending.saturating_sub(self.dirty.len());
        if room == 0 || self.cfg.feeds.is_empty() {
            std::thread::sleep(wait);
            return false;
        }
        let slice = wait / self.cfg.feeds.len() as u32;
        self.polls += 1;
        let poll = self.polls;
        self.marks.resize_with(self.cfg.feeds.len(), VecDeque::new);
        let mut gap = false;
        let mut failures = Vec::new();
        let mut gaps = Vec::new();
        for (i, feed) in self.cfg.feeds.iter_mut().enumerate() {
            let room = self.cfg.max_pending.saturating_sub(self.dirty.len());
            if room == 0 {
                break;
            }
            let batch = match feed.poll(room.min(self.cfg.max_batch), slice) {
                Ok(b) => b,
                Err(e) => {
                    failures.push((i, e.to_string()));
                    continue;
                }
            };
            if batch.gap {
                gap = true;
                gaps.push(i);
            }
            let now = Instant::now();
            for e in batch.events {
                if e.origin.as_deref() == Some(self.cfg.origin.as_str()) {
                    continue;
                }
                let debounce = self.cfg.debounce;
                self.dirty
                    .entry((e.model_type.clone(), e.key.clone()))
                    .and_modify(|d| {
                        d.event = e.clone();
                        d.first_poll.get_or_insert(poll);
                    })
                    .or_insert_with(|| Dirty {
                        event: e,
                        since: now,
                        due: now + debounce,
                        backoff: None,
                        first_poll: Some(poll),
                    });
            }
            if let Some(p) = feed.position() {
                let marks = &mut self.marks[i];
                if marks.back().is_none_or(|(_, last)| *last != p) {
                    marks.push_back((poll, p));
                }
            }
        }
        for feed in gaps {
            self.emit(LoopEvent::Gap { feed });
        }
        for (i, error) in failures {
            self.emit(LoopEvent::Failed {
                key: (format!("feed {i}"), String::new()),
                error,
                retry_in: TICK,
            });
        }
        gap
    }

    /// Syncs the keys that are due, in batches; failed ones wait their backoff.
    fn sync_due(&mut self) {
        let now = Instant::now();
        let mut due: Vec<Key> = self
            .dirty
            .iter()
            .filter(|(_, d)| d.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        due.sort();
        for batch in due.chunks(self.cfg.max_batch) {
            let oldest = batch
                .iter()
                .filter_map(|k| self.dirty.get(k).map(|d| d.since))
                .min()
                .unwrap_or(now);
            let origin = self.cfg.origin.clone();
            let changed: Vec<ChangeEvent> = batch
                .iter()
                .filter_map(|k| self.dirty.get(k).map(|d| d.event.clone()))
                .collect();
            let outcome = self.guarded(|r| r.sync_keys(&changed, &origin));
            let failed = self.requeue(batch, &outcome);
            self.tell_conflicts(&outcome);
            self.emit(LoopEvent::Synced {
                keys: batch.len(),
                applied: outcome.applied,
                changed: outcome.changed.clone(),
                failed,
                latency: oldest.elapsed(),
                unresolved: outcome.unresolved,
            });
        }
    }

    /// Tells subscribers (and `tracing`) each conflict met for the first time.
    fn tell_conflicts(&self, outcome: &PassOutcome) {
        for c in &outcome.conflicts {
            tracing::warn!(
                model_type = %c.model_type,
                key = %c.key,
                kind = c.kind.as_str(),
                strategy = %c.strategy,
                resolution = ?c.resolution,
                applied = ?c.applied,
                "conflict"
            );
            self.emit(LoopEvent::Conflict(Box::new(c.clone())));
        }
    }

    /// Runs a reconciler step; a panic in a hook fails the step, not the loop.
    fn guarded(&mut self, step: impl FnOnce(&mut R) -> PassOutcome) -> PassOutcome {
        match catch_unwind(AssertUnwindSafe(|| step(&mut self.cfg.reconciler))) {
            Ok(o) => o,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                PassOutcome {
                    failed: vec![((String::new(), String::new()), format!("a hook panicked: {msg}"))],
                    ..PassOutcome::default()
                }
            }
        }
    }

    /// Keys of `batch` that succeeded leave the dirty set; failed ones (the
    /// failed models, or every key of a pass that failed as a whole) are
    /// due again after their next backoff delay. Returns how many failed.
    fn requeue(&mut self, batch: &[Key], outcome: &PassOutcome) -> usize {
        let whole = outcome
            .failed
            .iter()
            .find(|(k, _)| k.0.is_empty())
            .map(|(_, e)| e.clone());
        let mut failed: Vec<(Key, String)> = match &whole {
            Some(e) => batch.iter().map(|k| (k.clone(), e.clone())).collect(),
            None => outcome.failed.clone(),
        };
        failed.sort();
        failed.dedup_by(|a, b| a.0 == b.0);
        for k in batch {
            if !failed.iter().any(|(f, _)| f == k) {
                self.dirty.remove(k);
            }
        }
        let now = Instant::now();
        let (min, max) = (self.cfg.min_backoff, self.cfg.max_backoff);
        for (k, error) in &failed {
            let entry = self.dirty.entry(k.clone()).or_insert_with(|| Dirty {
                event: ChangeEvent {
                    kind: diffsync::feed::ChangeKind::Updated,
                    model_type: k.0.clone(),
                    key: k.1.clone(),
                    identifiers: None,
                    parent: None,
                    origin: None,
                },
                since: now,
                due: now,
                backoff: None,
                first_poll: None,
            });
            let backoff = entry.backoff.get_or_insert_with(|| delays(min, max));
            let retry_in = backoff.next().unwrap_or(max).min(max);
            entry.due = now + retry_in;
            let (key, error) = (k.clone(), error.clone());
            self.emit(LoopEvent::Failed { key, error, retry_in });
        }
        failed.len()
    }

    /// A full pass: everything compared, what differs repaired. Every dirty
    /// key is covered by it; failed models stay dirty for their retries.
    fn full_pass(&mut self, reason: &'static str) {
        let origin = self.cfg.origin.clone();
        let listeners = self.listeners.clone();
        let mut last = Instant::now();
        let mut progress = |p: Progress| {
            if p.current >= p.total || last.elapsed() >= PROGRESS_EVERY {
                last = Instant::now();
                let (stage, current, total) = (p.stage, p.current, p.total);
                tracing::debug!(reason, ?stage, current, total, "full pass progress");
                tell(
                    &listeners,
                    LoopEvent::Progress {
                        reason,
                        stage,
                        current,
                        total,
                    },
                );
            }
        };
        let outcome = self.guarded(|r| r.sync_all(&origin, &mut progress));
        let whole = outcome
            .failed
            .iter()
            .find(|(k, _)| k.0.is_empty())
            .map(|(_, e)| e.clone());
        match &whole {
            Some(error) => {
                let (min, max) = (self.cfg.min_backoff, self.cfg.max_backoff);
                let (due, backoff) = self
                    .full_retry
                    .get_or_insert_with(|| (Instant::now(), delays(min, max)));
                let retry_in = backoff.next().unwrap_or(max).min(max);
                *due = Instant::now() + retry_in;
                let error = error.clone();
                self.emit(LoopEvent::Failed {
                    key: (String::new(), String::new()),
                    error,
                    retry_in,
                });
            }
            None => self.full_retry = None,
        }
        let pending: Vec<Key> = self.dirty.keys().cloned().collect();
        let failed = self.requeue(&pending, &outcome);
        self.tell_conflicts(&outcome);
        self.emit(LoopEvent::FullPass {
            reason,
            repaired: outcome.applied,
            failed,
            error: whole,
            unresolved: outcome.unresolved,
        });
    }

    /// Persists each feed's cursor at the last position before the oldest
    /// unhandled event of a dirty key (a key that keeps failing holds its
    /// feed's cursor back, so a restart still sees its event). At most
    /// every [`ReconcileLoop::commit_every`], unless `now`.
    fn commit_feeds(&mut self, now: bool) {
        if (!now && self.last_commit.elapsed() < self.cfg.commit_every) || self.marks.iter().all(VecDeque::is_empty) {
            return;
        }
        self.last_commit = Instant::now();
        let mut firsts: Vec<u64> = self.dirty.values().filter_map(|d| d.first_poll).collect();
        firsts.sort_unstable();
        firsts.dedup();
        let safe = firsts.first().copied().unwrap_or(u64::MAX);
        let mut failures = Vec::new();
        for (i, marks) in self.marks.iter_mut().enumerate() {
            let Some(upto) = marks.iter().rposition(|(poll, _)| *poll < safe) else {
                compact(marks, &firsts);
                continue;
            };
            match self.cfg.feeds[i].commit_at(&marks[upto].1) {
                Ok(()) => drop(marks.drain(..=upto)),
                Err(e) => failures.push((i, e.to_string())),
            }
            compact(marks, &firsts);
        }
        for (i, error) in failures {
            self.emit(LoopEvent::Failed {
                key: (format!("feed {i}"), String::new()),
                error,
                retry_in: self.cfg.commit_every,
            });
        }
    }
}

/// Drops the positions a later one makes useless: a position can be
/// committed before the next one only if a dirty key's first poll lies
/// between them (`firsts`: those polls, sorted). What stays is at most one
/// position per dirty key, however long a key keeps failing.
fn compact(marks: &mut VecDeque<(u64, Position)>, firsts: &[u64]) {
    let mut next_poll: Option<u64> = None;
    let mut kept = VecDeque::with_capacity(marks.len());
    while let Some((poll, p)) = marks.pop_back() {
        let needed = next_poll.is_none_or(|next| {
            let i = firsts.partition_point(|&f| f <= poll);
            firsts.get(i).is_some_and(|&f| f <= next)
        });
        if needed {
            next_poll = Some(poll);
            kept.push_front((poll, p));
        }
    }
    *marks = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_the_last_position_before_each_dirty_keys_first_poll() {
        let mut marks: VecDeque<(u64, Position)> = (1..=10).map(|p| (p, Position::new(p.to_string()))).collect();
        compact(&mut marks, &[3, 7]);
        let kept: Vec<u64> = marks.iter().map(|(p, _)| *p).collect();
        // 2 is committed once the key first seen at poll 3 is handled, 6
        // once the one at 7 is; 10 is the latest. The others add nothing.
        assert_eq!(kept, [2, 6, 10]);
        compact(&mut marks, &[]);
        assert_eq!(marks.len(), 1);
    }
}
