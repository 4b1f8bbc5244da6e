//! The loop's thread: feeds, the dirty map, debounce, retries, passes.

mod dirty;
mod feeds;
mod metrics;
mod passes;

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::ExponentialBackoff;
use diffsync::ModelKey;
use diffsync::feed::Position;

use dirty::Dirty;

use crate::builder::ReconcileLoop;
use crate::events::{LoopEvent, tell};
use crate::handle::{Command, LoopHandle};
use crate::reconciler::{PassOutcome, Reconciler};

struct Worker<R> {
    cfg: ReconcileLoop<R>,
    dirty: HashMap<ModelKey, Dirty>,
    /// Polls of the feeds so far.
    polls: u64,
    /// Per feed, positions not committed yet, with the poll that reached them.
    marks: Vec<VecDeque<(u64, Position)>>,
    last_commit: Instant,
    /// A full pass that failed as a whole is retried: when, and its delays.
    full_retry: Option<(Instant, ExponentialBackoff)>,
    listeners: Arc<Mutex<Vec<Sender<LoopEvent>>>>,
    /// The dirty set's size, for the handle.
    queued: Arc<AtomicUsize>,
    cmd: Receiver<Command>,
}

/// The least time between two progress events of a pass.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The longest the loop sleeps in a feed's poll, so commands are seen.
const TICK: Duration = Duration::from_millis(20);

impl<R: Reconciler + 'static> ReconcileLoop<R> {
    /// Starts the loop on its own thread (an error when the system cannot
    /// start one).
    pub fn spawn(self) -> std::io::Result<LoopHandle> {
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let listeners = self.listeners.clone();
        let queued = Arc::new(AtomicUsize::new(0));
        let state = Worker {
            cfg: self,
            dirty: HashMap::new(),
            polls: 0,
            marks: Vec::new(),
            last_commit: Instant::now(),
            full_retry: None,
            listeners: listeners.clone(),
            queued: queued.clone(),
            cmd: cmd_rx,
        };
        let thread = std::thread::Builder::new()
            .name("diffsync-live".into())
            .spawn(move || state.run())?;
        Ok(LoopHandle {
            cmd: cmd_tx,
            thread: Some(thread),
            listeners,
            queued,
        })
    }
}

impl<R: Reconciler> Worker<R> {
    fn emit(&self, event: LoopEvent) {
        match &event {
            LoopEvent::Failed {
                subject,
                error,
                retry_in,
            } => {
                tracing::warn!(%subject, %error, ?retry_in, "sync failed, retrying")
            }
            LoopEvent::Gap { feed } => tracing::warn!(feed, "feed reported a gap, full pass"),
            other => tracing::debug!(event = ?other, "reconcile loop"),
        }
        self.count(&event);
        tell(&self.listeners, event);
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
            self.queued.store(self.dirty.len(), Ordering::Relaxed);
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

    /// Tells subscribers (and `tracing`) each conflict met for the first time.
    fn tell_conflicts(&self, outcome: &PassOutcome) {
        for c in &outcome.conflicts {
            tracing::warn!(
                model_type = %c.model_type(),
                key = %c.key.unique_id(),
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
                    failed: vec![(None, format!("a hook panicked: {msg}"))],
                    ..PassOutcome::default()
                }
            }
        }
    }
}
