//! Full passes: when they are due (anti-entropy, cron schedules) and
//! running one, with its progress and its retries.

use std::time::Instant;

use diffsync::{ModelKey, Progress};

use super::dirty::delays;
use super::{PROGRESS_EVERY, Worker};
use crate::events::{LoopEvent, Subject, tell};
use crate::reconciler::Reconciler;

impl<R: Reconciler> Worker<R> {
    /// The next time a cron schedule asks for a full pass.
    #[cfg(feature = "cron")]
    pub(super) fn next_scheduled(&self) -> Option<Instant> {
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
    pub(super) fn next_scheduled(&self) -> Option<Instant> {
        None
    }

    pub(super) fn next_anti_entropy(&self) -> Option<Instant> {
        self.cfg.anti_entropy.map(|every| {
            let jitter = 0.9 + fastrand::f64() * 0.2;
            Instant::now() + every.mul_f64(jitter)
        })
    }

    /// A full pass: everything compared, what differs repaired. Every dirty
    /// key is covered by it; failed models stay dirty for their retries.
    pub(super) fn full_pass(&mut self, reason: &'static str) {
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
}
