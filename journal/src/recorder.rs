//! A layer that records every batch an adapter applies: loop passes, and
//! any sync that goes through the wrapped adapter.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use diffsync::{Batch, Chain, ElementReport, HookError, Layer, Outcome, SyncReport};

use crate::journal::{Ended, Journal, Part, Planned};
use crate::record::{Mode, RunResult};

/// Records each batch the wrapped adapter applies as a run of mode
/// [`Mode::Batch`]: its changes (with values before and after) before any
/// is applied, then their outcomes. Wrap a loop's target with it
/// (`Layered::new(target, Recorder::new(journal, "cmdb", "network"))`) and
/// every pass is in the journal, and can be rolled back like any run. A
/// hook that panics leaves the run unfinished, its changes recorded. The
/// journal failing does not stop the sync: it is logged.
///
/// A run the journal drives itself through the wrapped adapter
/// ([`Journal::sync`], [`Journal::reconcile`], [`Journal::rollback`]) is
/// recorded once, as that run: the recorder stands aside while it goes.
pub struct Recorder {
    journal: Arc<Mutex<Journal>>,
    source: String,
    target: String,
    current: Option<(Ended, Planned)>,
}

impl Recorder {
    /// A recorder writing to `journal`, naming the runs' systems (the
    /// wrapped adapter is `target`).
    pub fn new(journal: Arc<Mutex<Journal>>, source: impl Into<String>, target: impl Into<String>) -> Recorder {
        Recorder {
            journal,
            source: source.into(),
            target: target.into(),
            current: None,
        }
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }
}

thread_local! {
    /// Whether this thread is inside a run the journal records itself.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as inside a run the journal records, until dropped:
/// a [`Recorder`] on the adapter the run writes to stands aside (and does
/// not wait for the journal the run holds).
pub(crate) struct Recording(bool);

impl Recording {
    pub(crate) fn start() -> Recording {
        Recording(RECORDING.replace(true))
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        RECORDING.set(self.0);
    }
}

impl Layer for Recorder {
    fn before(&mut self, batch: &mut Batch<'_, '_>) {
        if RECORDING.get() {
            return;
        }
        let changes = batch.changes();
        let begun = {
            let mut journal = self.journal();
            journal
                .begin(Mode::Batch, &self.source, &self.target, false, "", None)
                .and_then(|run| {
                    let planned = journal.plan_changes(
                        run,
                        changes.iter().map(|c| {
                            let parent = c.parent_element();
                            (c.element, parent.map(|p| (p.model_type(), p.unique_id())))
                        }),
                        None,
                        0,
                    )?;
                    Ok((run, planned))
                })
        };
        match begun {
            Ok((run, planned)) => {
                let ended = Ended {
                    run,
                    mode: Mode::Batch,
                    target: self.target.clone(),
                    left_alone: Vec::new(),
                };
                self.current = Some((ended, planned));
            }
            Err(e) => tracing::warn!(error = %Chain(&e), target = %self.target, "the journal cannot record a batch"),
        }
    }

    fn after(&mut self, batch: &Batch<'_, '_>, result: &Result<(), HookError>) {
        let Some((ended, planned)) = self.current.take() else {
            return;
        };
        let report = SyncReport {
            source: self.source.clone(),
            dest: self.target.clone(),
            dry_run: false,
            elements: batch
                .changes()
                .iter()
                .zip(batch.outcomes())
                .map(|(c, o)| ElementReport {
                    key: c.model_key(),
                    action: c.action,
                    outcome: o.clone(),
                })
                .collect(),
        };
        let (outcome, error) = match result {
            Err(e) => (RunResult::Failed, Some(e.to_string())),
            Ok(()) if report.elements.iter().all(|e| e.outcome == Outcome::Applied) => (RunResult::Succeeded, None),
            Ok(()) => (RunResult::Partial, None),
        };
        let part = Part {
            planned: &planned,
            report: Some(&report),
        };
        let finished = self.journal().finish(&ended, &[part], outcome, error.as_deref(), &[]);
        if let Err(e) = finished {
            tracing::warn!(error = %Chain(&e), target = %self.target, "the journal cannot record a batch's end");
        }
    }
}
