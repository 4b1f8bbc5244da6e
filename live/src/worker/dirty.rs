//! The dirty set: debounced keys synced in batches when due, failed ones
//! due again after their backoff.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use diffsync::ModelKey;
use diffsync::feed::ChangeEvent;

use super::Worker;
use crate::events::{LoopEvent, Subject};
use crate::reconciler::{PassOutcome, Reconciler};

/// One dirty key.
pub(super) struct Dirty {
    /// The latest event about it.
    pub(super) event: ChangeEvent,
    /// When its first pending event came (for latency).
    pub(super) since: Instant,
    /// When it is due.
    pub(super) due: Instant,
    /// Retry delays, once it failed.
    pub(super) backoff: Option<ExponentialBackoff>,
    /// The poll that read its oldest unhandled event (none for a key that
    /// only a pass's failure made dirty): feeds are committed only up to
    /// positions before it.
    pub(super) first_poll: Option<u64>,
}

/// Retry delays: jittered, doubling from `min`, at most `max`, endless.
pub(super) fn delays(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(min)
        .with_max_delay(max)
        .without_max_times()
        .build()
}

impl<R: Reconciler> Worker<R> {
    /// Syncs the keys that are due, in batches; failed ones wait their backoff.
    pub(super) fn sync_due(&mut self) {
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

    /// Keys of `batch` that succeeded leave the dirty set; failed ones (the
    /// failed models, or every key of a pass that failed as a whole) are
    /// due again after their next backoff delay. Returns how many failed.
    pub(super) fn requeue(&mut self, batch: &[ModelKey], outcome: &PassOutcome) -> usize {
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
                    key: k.clone(),
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
}
