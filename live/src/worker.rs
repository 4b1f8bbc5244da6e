//! The loop's thread: feeds, the dirty map, debounce, retries, passes.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use diffsync::feed::{ChangeEvent, Position};
use diffsync::{Chain, ModelKey, Progress};

use crate::builder::ReconcileLoop;
use crate::events::{LoopEvent, Subject, tell};
use crate::handle::{Command, LoopHandle};
use crate::reconciler::{PassOutcome, Reconciler};

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

/// Retry delays: jittered, doubling from `min`, at most `max`, endless.
fn delays(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(min)
        .with_max_delay(max)
        .without_max_times()
        .build()
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

    /// The event in the loop's metrics (labelled with its origin tag).
    fn count(&self, event: &LoopEvent) {
        let name = self.cfg.origin.clone();
        match event {
            LoopEvent::Synced {
                applied,
                failed,
                latency,
                ..
            } => {
                metrics::counter!("diffsync_loop_applied_total", "loop" => name.clone()).increment(*applied as u64);
                metrics::counter!("diffsync_loop_failed_total", "loop" => name.clone()).increment(*failed as u64);
                metrics::histogram!("diffsync_loop_latency_seconds", "loop" => name.clone())
                    .record(latency.as_secs_f64());
            }
            LoopEvent::Conflict(c) => {
                metrics::counter!(
                    "diffsync_loop_conflicts_total",
                    "loop" => name.clone(),
                    "kind" => c.kind.as_str(),
                    "strategy" => c.strategy.clone(),
                )
                .increment(1);
            }
            LoopEvent::Failed { subject, .. } => {
                let subject = match subject {
                    Subject::Model(_) => "model",
                    Subject::Feed(_) => "feed",
                    Subject::Pass => "pass",
                };
                metrics::counter!("diffsync_loop_retries_total", "loop" => name.clone(), "subject" => subject)
                    .increment(1);
            }
            LoopEvent::Gap { .. } => metrics::counter!("diffsync_loop_gaps_total", "loop" => name.clone()).increment(1),
            LoopEvent::FullPass {
                reason,
                repaired,
                error,
                ..
            } => {
                let result = if error.is_some() { "failed" } else { "ok" };
                metrics::counter!("diffsync_loop_full_passes_total", "loop" => name.clone(), "reason" => *reason, "result" => result)
                    .increment(1);
                metrics::counter!("diffsync_loop_repaired_total", "loop" => name.clone()).increment(*repaired as u64);
            }
            _ => {}
        }
        metrics::gauge!("diffsync_loop_queue_depth", "loop" => name).set(self.dirty.len() as f64);
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
                    failures.push((i, Chain(&*e).to_string()));
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
                    .entry(e.model_key())
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
                subject: Subject::Feed(i),
                error,
                retry_in: TICK,
            });
        }
        gap
    }

    /// Syncs the keys that are due, in batches; failed ones wait their backoff.
    fn sync_due(&mut self) {
        let now = Instant::now();
        let mut due: Vec<ModelKey> = self
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
                    failed: vec![(None, format!("a hook panicked: {msg}"))],
                    ..PassOutcome::default()
                }
            }
        }
    }

    /// Keys of `batch` that succeeded leave the dirty set; failed ones (the
    /// failed models, or every key of a pass that failed as a whole) are
    /// due again after their next backoff delay. Returns how many failed.
    fn requeue(&mut self, batch: &[ModelKey], outcome: &PassOutcome) -> usize {
        let whole = outcome.failed.iter().find(|(k, _)| k.is_none()).map(|(_, e)| e.clone());
        let mut failed: Vec<(ModelKey, String)> = match &whole {
            Some(e) => batch.iter().map(|k| (k.clone(), e.clone())).collect(),
            None => outcome
                .failed
                .iter()
                .filter_map(|(k, e)| Some((k.clone()?, e.clone())))
                .collect(),
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
                    model_type: k.model_type().to_string(),
                    key: k.unique_id(),
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
            let (subject, error) = (Subject::Model(k.clone()), error.clone());
            self.emit(LoopEvent::Failed {
                subject,
                error,
                retry_in,
            });
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
        let whole = outcome.failed.iter().find(|(k, _)| k.is_none()).map(|(_, e)| e.clone());
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
                    subject: Subject::Pass,
                    error,
                    retry_in,
                });
            }
            None => self.full_retry = None,
        }
        let pending: Vec<ModelKey> = self.dirty.keys().cloned().collect();
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
                Err(e) => failures.push((i, Chain(&*e).to_string())),
            }
            compact(marks, &firsts);
        }
        for (i, error) in failures {
            self.emit(LoopEvent::Failed {
                subject: Subject::Feed(i),
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
