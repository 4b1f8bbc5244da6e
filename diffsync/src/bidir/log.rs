//! The conflict log: what each conflict was, what was decided, and whether it was applied.

use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ReconcileError, Result};
use crate::report::{BiReport, ConflictRecord};

/// Where conflict records go: a file, a table, a monitoring system.
///
/// Given to a reconcile ([`BiOptions::log_to`](super::BiOptions::log_to)), a sink is written ahead:
/// [`write`](Self::write) takes a run's conflicts before either side is
/// written (a failure stops the run before any write), and
/// [`settle`](Self::settle) takes them again with
/// [`applied`](ConflictRecord::applied) set once the syncs are done. A
/// crash in between leaves the records with `applied: None`.
pub trait ConflictSink {
    /// Takes the conflicts of one run; they must be durable on return.
    fn write(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError>;
    /// Takes the same records again, [`applied`](ConflictRecord::applied)
    /// now known. The default does nothing (a sink that only counts, say).
    fn settle(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError> {
        let _ = records;
        Ok(())
    }
}

/// The same record: same run, model type and key.
fn same_record(a: &ConflictRecord, b: &ConflictRecord) -> bool {
    a.run == b.run && a.model_type() == b.model_type() && a.key == b.key
}

impl ConflictSink for Vec<ConflictRecord> {
    fn write(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError> {
        self.extend_from_slice(records);
        Ok(())
    }
    fn settle(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError> {
        for r in records {
            match self.iter_mut().rev().find(|w| same_record(w, r)) {
                Some(w) => w.applied = r.applied,
                None => self.push(r.clone()),
            }
        }
        Ok(())
    }
}

/// Appends each conflict as one JSON line to a file (synced to disk before
/// `write` returns); a settled outcome is one more, shorter line
/// (`{"settled": RUN, "model_type": .., "key": .., "applied": BOOL}`).
/// [`JsonLines::read`] gives the records with their outcomes.
pub struct JsonLines(pub std::path::PathBuf);

/// A settled outcome's line in a [`JsonLines`] file.
#[derive(Serialize, Deserialize)]
struct Settled {
    settled: String,
    model_type: String,
    key: String,
    applied: bool,
}

impl JsonLines {
    fn append(
        &self,
        lines: impl IntoIterator<Item = serde_json::Result<Vec<u8>>>,
    ) -> std::result::Result<(), crate::BoxError> {
        let mut text = Vec::new();
        for line in lines {
            text.extend(line?);
            text.push(b'\n');
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.0)?;
        f.write_all(&text)?;
        f.sync_all()?;
        Ok(())
    }

    /// Every record in the file, once each, with its settled outcome (a
    /// record a crash left unsettled has `applied: None`).
    pub fn read(&self) -> Result<Vec<ConflictRecord>> {
        let path = self.0.display().to_string();
        let text = std::fs::read_to_string(&self.0).map_err(|e| {
            Error::Reconcile(ReconcileError::Base {
                path: path.clone(),
                message: e.to_string(),
            })
        })?;
        let mut out: Vec<ConflictRecord> = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let fail = |e: serde_json::Error| {
                Error::Reconcile(ReconcileError::Base {
                    path: format!("{path}:{}", i + 1),
                    message: e.to_string(),
                })
            };
            if line.starts_with("{\"settled\"") {
                let s: Settled = serde_json::from_str(line).map_err(fail)?;
                if let Some(r) = out
                    .iter_mut()
                    .rev()
                    .find(|r| r.run == s.settled && r.model_type() == s.model_type && r.key.unique_id() == s.key)
                {
                    r.applied = Some(s.applied);
                }
            } else {
                out.push(serde_json::from_str(line).map_err(fail)?);
            }
        }
        Ok(out)
    }
}

impl ConflictSink for JsonLines {
    fn write(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError> {
        self.append(records.iter().map(serde_json::to_vec))
    }
    fn settle(&mut self, records: &[ConflictRecord]) -> std::result::Result<(), crate::BoxError> {
        self.append(records.iter().filter_map(|r| {
            let settled = Settled {
                settled: r.run.clone(),
                model_type: r.model_type().to_string(),
                key: r.key.unique_id().to_string(),
                applied: r.applied?,
            };
            Some(serde_json::to_vec(&settled))
        }))
    }
}

/// A conflict sink shared by the runs that log to it.
pub type SharedSink = Arc<std::sync::Mutex<dyn ConflictSink + Send>>;

/// Writing a run's conflicts to a sink (here, with the sinks).
impl BiReport {
    /// Writes the conflicts to a sink (a file, a table).
    pub fn log_to(&self, sink: &mut dyn ConflictSink) -> std::result::Result<(), crate::BoxError> {
        sink.write(&self.conflicts)
    }
}
