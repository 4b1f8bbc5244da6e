//! The conflict log: what each conflict was, what was decided, and whether it was applied.

use std::fmt;
use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ReconcileError;
use super::strategy::{ConflictKind, Resolution};
use crate::error::{Error, Result};
use crate::model::Attrs;

/// One logged conflict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// Model type name.
    pub model_type: String,
    /// Unique id.
    pub key: String,
    /// What each side did.
    pub kind: ConflictKind,
    /// Attributes of the agreed version.
    pub base: Option<Attrs>,
    /// Attributes of the left side's version.
    pub left: Option<Attrs>,
    /// Attributes of the right side's version.
    pub right: Option<Attrs>,
    /// The strategy that decided.
    pub strategy: String,
    /// What it decided.
    pub resolution: Resolution,
    /// The attribute read as the models' clock: the one the strategy
    /// compared, else the type's declared timestamp, else its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    /// The left version's clock value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_clock: Option<Value>,
    /// The right version's clock value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right_clock: Option<Value>,
    /// The left side's replica id (its store's name).
    pub left_replica: String,
    /// The right side's replica id.
    pub right_replica: String,
    /// The run that met the conflict (unique per reconcile).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run: String,
    /// Whether the resolution reached the systems: `Some(true)` once the
    /// winner's version (or the merge) is in the losing side's system,
    /// `Some(false)` when it did not get there (or nothing was to be
    /// applied), `None` while not known: a record written ahead of the
    /// writes whose run then stopped before it could tell (a crash), or
    /// whose losing side's sync panicked (what it wrote is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<bool>,
    /// The version the resolution gives both sides: the winner's, or the
    /// merge (`None`: deleted, or nothing applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Attrs>,
}

impl fmt::Display for ConflictRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resolution = self.resolution.as_str();
        write!(
            f,
            "{} {} {:?}: {resolution} ({})",
            self.kind.as_str(),
            self.model_type,
            self.key,
            self.strategy
        )?;
        let none = Attrs::new();
        let (l, r) = (
            self.left.as_ref().unwrap_or(&none),
            self.right.as_ref().unwrap_or(&none),
        );
        let names: Vec<&str> = l
            .keys()
            .chain(r.keys())
            .map(|k| k.as_ref())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let show = |a: &Option<Attrs>, k: &str| match a.as_ref().map(|a| a.get(k)) {
            None => "-".to_string(),
            Some(None) => "-".to_string(),
            Some(Some(v)) => v.as_str().map_or_else(|| v.to_string(), str::to_string),
        };
        if let Some(clock) = &self.clock {
            let v = |c: &Option<Value>| c.as_ref().map_or("-".to_string(), Value::to_string);
            write!(
                f,
                "\n  clock {clock}: {}={} {}={}",
                self.left_replica,
                v(&self.left_clock),
                self.right_replica,
                v(&self.right_clock)
            )?;
        }
        for k in names.into_iter().filter(|k| l.get(k) != r.get(k)) {
            write!(
                f,
                "\n  {k}    base({})    left({})    right({})",
                show(&self.base, k),
                show(&self.left, k),
                show(&self.right, k)
            )?;
            if self.resolution != Resolution::Skip {
                write!(f, "    → {}", show(&self.result, k))?;
            }
        }
        Ok(())
    }
}

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
    a.run == b.run && a.model_type == b.model_type && a.key == b.key
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
                    .find(|r| r.run == s.settled && r.model_type == s.model_type && r.key == s.key)
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
                model_type: r.model_type.clone(),
                key: r.key.clone(),
                applied: r.applied?,
            };
            Some(serde_json::to_vec(&settled))
        }))
    }
}

/// A conflict sink shared by the runs that log to it.
pub type SharedSink = Arc<std::sync::Mutex<dyn ConflictSink + Send>>;
