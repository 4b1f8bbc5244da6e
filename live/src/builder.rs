//! Building a loop: its reconciler, feeds, timings and schedules (started by
//! [`ReconcileLoop::spawn`], on the worker's thread).

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diffsync::feed::ChangeFeed;

use crate::events::{LoopEvent, subscribe};
use crate::reconciler::Reconciler;

/// Builds and starts a reconcile loop.
pub struct ReconcileLoop<R> {
    pub(crate) reconciler: R,
    pub(crate) feeds: Vec<Box<dyn ChangeFeed>>,
    pub(crate) debounce: Duration,
    pub(crate) anti_entropy: Option<Duration>,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_pending: usize,
    pub(crate) max_batch: usize,
    pub(crate) startup_sync: bool,
    pub(crate) commit_every: Duration,
    pub(crate) origin: String,
    pub(crate) listeners: Arc<Mutex<Vec<Sender<LoopEvent>>>>,
    /// Cron schedules of full passes.
    #[cfg(feature = "cron")]
    pub(crate) schedules: Vec<croner::Cron>,
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
        let cron = croner::Cron::new(pattern)
            .with_seconds_optional()
            .parse()
            .map_err(|e| BadSchedule {
                pattern: pattern.to_string(),
                message: e.to_string(),
            })?;
        self.schedules.push(cron);
        Ok(self)
    }
    /// Lifecycle events, from the start (see also [`LoopHandle::subscribe`](crate::LoopHandle::subscribe)).
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
    /// The tag of the loop's own writes (their events are not new work),
    /// and the `loop` label of its metrics: `diffsync_loop_applied_total`,
    /// `diffsync_loop_failed_total`, `diffsync_loop_latency_seconds`
    /// (event to applied), `diffsync_loop_queue_depth`,
    /// `diffsync_loop_retries_total{subject}`, `diffsync_loop_gaps_total`,
    /// `diffsync_loop_full_passes_total{reason,result}`,
    /// `diffsync_loop_repaired_total`, `diffsync_loop_conflicts_total{kind,strategy}`,
    /// counted through the `metrics` facade.
    pub fn origin(mut self, tag: impl Into<String>) -> Self {
        self.origin = tag.into();
        self
    }
}
