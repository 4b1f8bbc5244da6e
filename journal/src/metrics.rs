//! What every recorded run counts, in the conventional Prometheus form,
//! through the [`metrics`] facade (any recorder the application installs
//! gets them), and an endpoint that serves them ([`serve`], feature
//! `prometheus`).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `diffsync_runs_total` | counter | `mode`, `target`, `result` |
//! | `diffsync_operations_total` | counter | `mode`, `target`, `model_type`, `action`, `outcome` |
//! | `diffsync_phase_seconds` | histogram | `mode`, `phase` |
//! | `diffsync_run_peak_memory_bytes` | gauge | `mode` |
//! | `diffsync_conflicts_total` | counter | `kind`, `strategy` |
//! | `diffsync_rollback_conflicts_total` | counter | `target` |

use std::collections::HashMap;

use diffsync::{Action, Outcome, SyncReport};

use crate::record::{Mode, RunResult};

/// Counts one ended run.
pub(crate) fn record_run(
    mode: Mode,
    target: &str,
    result: RunResult,
    reports: &[&SyncReport],
    phases: &[(String, f64)],
    peak_memory: Option<u64>,
) {
    let mode = mode.as_str();
    metrics::counter!("diffsync_runs_total", "mode" => mode, "target" => target.to_string(), "result" => result.as_str())
        .increment(1);
    let mut groups: HashMap<(&str, Action, &'static str), u64> = HashMap::new();
    for report in reports {
        for e in report.elements.iter().filter(|e| e.action != Action::NoChange) {
            *groups
                .entry((e.model_type(), e.action, outcome_label(&e.outcome)))
                .or_default() += 1;
        }
    }
    {
        for ((model_type, action, outcome), n) in groups {
            metrics::counter!(
                "diffsync_operations_total",
                "mode" => mode,
                "target" => target.to_string(),
                "model_type" => model_type.to_string(),
                "action" => action.as_str(),
                "outcome" => outcome,
            )
            .increment(n);
        }
    }
    for (phase, seconds) in phases {
        metrics::histogram!("diffsync_phase_seconds", "mode" => mode, "phase" => phase.clone()).record(*seconds);
    }
    if let Some(bytes) = peak_memory {
        metrics::gauge!("diffsync_run_peak_memory_bytes", "mode" => mode).set(bytes as f64);
    }
}

/// Counts a two-way run's conflicts by kind and strategy.
pub(crate) fn record_conflicts(conflicts: &[diffsync::bidir::ConflictRecord]) {
    for c in conflicts {
        metrics::counter!(
            "diffsync_conflicts_total",
            "kind" => c.kind.as_str(),
            "strategy" => c.strategy.clone(),
        )
        .increment(1);
    }
}

/// Counts the changes a rollback left alone.
pub(crate) fn record_rollback_conflicts(target: &str, conflicts: usize) {
    if conflicts > 0 {
        metrics::counter!("diffsync_rollback_conflicts_total", "target" => target.to_string())
            .increment(conflicts as u64);
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Pending => "pending",
        Outcome::Applied => "applied",
        Outcome::Unchanged => "unchanged",
        Outcome::Failed(_) => "failed",
        Outcome::SoftFailed(_) => "soft_failed",
        Outcome::Fatal(_) => "fatal",
        Outcome::RolledBack => "rolled_back",
        Outcome::RemovedWithParent => "removed_with_parent",
        Outcome::Skipped(_) => "skipped",
        Outcome::Planned => "planned",
        Outcome::Unknown(_) => "unknown",
        _ => "other",
    }
}

/// The endpoint could not be set up.
#[cfg(feature = "prometheus")]
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {address}")]
pub struct MetricsError {
    /// The address asked for.
    pub address: std::net::SocketAddr,
    /// The exporter's error.
    #[source]
    pub source: metrics_exporter_prometheus::BuildError,
}

/// Installs the process's Prometheus recorder and serves what it holds at
/// `http://{address}/metrics` (any path answers), from a thread of its own:
/// the runs of every journal in the process from then on, and whatever
/// else the application counts through [`metrics`]. Durations are
/// histograms with buckets from 1 ms to 10 min. Once per process: a second
/// call fails.
#[cfg(feature = "prometheus")]
pub fn serve(address: std::net::SocketAddr) -> Result<(), MetricsError> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const SECONDS: &[f64] = &[
        0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
    ];
    let fail = |source| MetricsError { address, source };
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .map_err(fail)?
        .install()
        .map_err(fail)?;
    metrics::describe_counter!("diffsync_runs_total", "Runs recorded, by mode, target and result.");
    metrics::describe_counter!(
        "diffsync_operations_total",
        "Changes of recorded runs, by model type, action and outcome."
    );
    metrics::describe_histogram!(
        "diffsync_phase_seconds",
        metrics::Unit::Seconds,
        "Seconds per phase of recorded runs."
    );
    metrics::describe_gauge!(
        "diffsync_run_peak_memory_bytes",
        metrics::Unit::Bytes,
        "The process's peak resident memory at the end of the last run."
    );
    metrics::describe_counter!(
        "diffsync_conflicts_total",
        "Conflicts of two-way runs, by kind and the strategy that decided."
    );
    metrics::describe_counter!(
        "diffsync_rollback_conflicts_total",
        "Changes rollbacks left alone because the target changed since."
    );
    Ok(())
}
