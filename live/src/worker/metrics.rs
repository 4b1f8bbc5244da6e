//! The loop's events counted in its metrics.

use super::Worker;
use crate::events::{LoopEvent, Subject};
use crate::reconciler::Reconciler;

impl<R: Reconciler> Worker<R> {
    /// The event in the loop's metrics (labelled with its origin tag).
    pub(super) fn count(&self, event: &LoopEvent) {
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
}
