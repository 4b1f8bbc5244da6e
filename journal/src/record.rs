//! What the journal keeps: runs, their elements, and the history of a key.

use diffsync::{Action, Attrs, KeyParseError, KeyValue, ModelKey, Outcome, Totals};
use serde::{Deserialize, Serialize};

/// A run's number in its journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunId(pub i64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run {}", self.0)
    }
}

/// What kind of run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Mode {
    /// A one-way sync: the target made to look like the source.
    OneWay,
    /// A two-way reconcile: the source is the left side, the target the right.
    TwoWay,
    /// A batch written to an adapter wrapped in a [`Recorder`](crate::Recorder)
    /// (a pass of a loop, say).
    Batch,
    /// The undo of a recorded run.
    Rollback,
}

impl Mode {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::OneWay => "one-way",
            Mode::TwoWay => "two-way",
            Mode::Batch => "batch",
            Mode::Rollback => "rollback",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Mode> {
        match s {
            "one-way" => Some(Mode::OneWay),
            "two-way" => Some(Mode::TwoWay),
            "batch" => Some(Mode::Batch),
            "rollback" => Some(Mode::Rollback),
            _ => None,
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RunResult {
    /// Not ended: still going, or the process died during it.
    Unfinished,
    /// Every change applied (or, in a dry run, was planned).
    Succeeded,
    /// It ended, with changes that did not apply (failed, skipped, rolled back).
    Partial,
    /// It stopped with an error (a fatal hook, a safety rail, a failed load).
    Failed,
}

impl RunResult {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Unfinished => "unfinished",
            RunResult::Succeeded => "succeeded",
            RunResult::Partial => "partial",
            RunResult::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<RunResult> {
        match s {
            "unfinished" => Some(RunResult::Unfinished),
            "succeeded" => Some(RunResult::Succeeded),
            "partial" => Some(RunResult::Partial),
            "failed" => Some(RunResult::Failed),
            _ => None,
        }
    }
}

/// One recorded run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Its number.
    pub id: RunId,
    /// Who ran it, `user@host` (`None`: a run recorded before the journal
    /// kept it).
    #[serde(default)]
    pub who: Option<String>,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// When it ended (`None`: unfinished).
    pub ended_ms: Option<u64>,
    /// What kind of run.
    pub mode: Mode,
    /// The system read from.
    pub source: String,
    /// The system written to.
    pub target: String,
    /// Whether nothing was written (a plan).
    pub dry_run: bool,
    /// The options it ran with (flags, safety rails; a two-way run's
    /// strategies), as the core prints them.
    pub options: String,
    /// How it ended.
    pub result: RunResult,
    /// The error it stopped with, with its causes.
    pub error: Option<String>,
    /// Counts by outcome (once ended).
    pub totals: Option<Totals>,
    /// Seconds spent per phase, in order (`diff`, `sync`).
    pub phases: Vec<(String, f64)>,
    /// The process's peak resident memory at the end of the run, in bytes
    /// (where the platform says).
    pub peak_memory: Option<u64>,
    /// The run this one undid.
    pub rollback_of: Option<RunId>,
}

/// How many changes of each kind a run planned
/// ([`Journal::action_counts`](crate::Journal::action_counts)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActionCounts {
    /// Creates.
    pub create: usize,
    /// Updates.
    pub update: usize,
    /// Deletes.
    pub delete: usize,
}

impl ActionCounts {
    /// All of them.
    pub fn total(&self) -> usize {
        self.create + self.update + self.delete
    }
}

/// Which side of a two-way reconcile a change went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The left side (the run's `source`).
    Left,
    /// The right side (the run's `target`).
    Right,
}

impl Side {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
        }
    }

    /// The side a stored name says (`None`: a one-way run's target); a
    /// name of no side is an error saying it.
    pub(crate) fn read(name: Option<&str>) -> Result<Option<Side>, String> {
        match name {
            None => Ok(None),
            Some("left") => Ok(Some(Side::Left)),
            Some("right") => Ok(Some(Side::Right)),
            Some(other) => Err(format!("unknown side {other:?}")),
        }
    }
}

/// A change's values after it, as kept: an update keeps only what it
/// changed, so its values after are those before with these.
pub(crate) fn values_after(action: diffsync::Action, before: Option<&Attrs>, after: Option<Attrs>) -> Option<Attrs> {
    match (action, before, after) {
        (diffsync::Action::Update, Some(before), Some(changed)) => {
            let mut whole = before.clone();
            whole.extend(changed);
            Some(whole)
        }
        // An update with nothing before it has no whole to give.
        (diffsync::Action::Update, None, _) => None,
        (_, _, after) => after,
    }
}

/// One change of a run, as recorded. As JSON the keys are their texts:
/// `model_type` and `key` (the unique id), `parent` as `[type, unique id]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "WireElement", try_from = "WireElement")]
pub struct Element {
    /// Its place in the run (the diff's order: parents before children).
    pub seq: u32,
    /// The changed model's key.
    pub key: ModelKey,
    /// Its parent's key, if it has one.
    pub parent: Option<ModelKey>,
    /// The side it went to, in a two-way reconcile (`None`: the run's target).
    pub side: Option<Side>,
    /// Identifier values.
    pub identifiers: Attrs,
    /// What the run did.
    pub action: Action,
    /// What came of it (`Pending` while the run goes on, or when it died).
    pub outcome: Outcome,
    /// The attributes the target held before (`None` for a create).
    pub before: Option<Attrs>,
    /// The attributes the run wrote (`None` for a delete).
    pub after: Option<Attrs>,
}

/// An [`Element`] as JSON carries it.
#[derive(Clone, Serialize, Deserialize)]
struct WireElement {
    seq: u32,
    model_type: String,
    key: String,
    parent: Option<(String, String)>,
    side: Option<Side>,
    identifiers: Attrs,
    action: Action,
    outcome: Outcome,
    before: Option<Attrs>,
    after: Option<Attrs>,
}

impl From<Element> for WireElement {
    fn from(e: Element) -> WireElement {
        WireElement {
            seq: e.seq,
            model_type: e.key.model_type().to_string(),
            key: e.key.unique_id().to_string(),
            parent: e
                .parent
                .map(|p| (p.model_type().to_string(), p.unique_id().to_string())),
            side: e.side,
            identifiers: e.identifiers,
            action: e.action,
            outcome: e.outcome,
            before: e.before,
            after: e.after,
        }
    }
}

impl TryFrom<WireElement> for Element {
    type Error = KeyParseError;

    fn try_from(w: WireElement) -> Result<Element, KeyParseError> {
        Ok(Element {
            seq: w.seq,
            key: ModelKey::new(w.model_type, w.identifiers.values().map(KeyValue::from)),
            parent: w.parent.map(|(t, k)| parent_key(&t, &k)).transpose()?,
            side: w.side,
            identifiers: w.identifiers,
            action: w.action,
            outcome: w.outcome,
            before: w.before,
            after: w.after,
        })
    }
}

/// A parent's key from its recorded type and unique id (a text diffsync
/// wrote, which quotes whatever could be misread).
pub(crate) fn parent_key(model_type: &str, key: &str) -> Result<ModelKey, KeyParseError> {
    ModelKey::parse(&format!("{model_type}:{key}"))
}

impl Element {
    /// The changed model's type.
    pub fn model_type(&self) -> &str {
        self.key.model_type()
    }

    /// The attributes whose values differ between before and after, with
    /// both values (all of them for a create or a delete).
    pub fn changed(&self) -> Vec<(String, Option<serde_json::Value>, Option<serde_json::Value>)> {
        let empty = Attrs::new();
        let (before, after) = (
            self.before.as_ref().unwrap_or(&empty),
            self.after.as_ref().unwrap_or(&empty),
        );
        let mut changed: Vec<_> = before
            .iter()
            .filter(|(k, v)| after.get(k) != Some(*v))
            .map(|(k, v)| (k.to_string(), Some(v.clone()), after.get(k).cloned()))
            .collect();
        changed.extend(
            after
                .iter()
                .filter(|(k, _)| !before.contains_key(k))
                .map(|(k, v)| (k.to_string(), None, Some(v.clone()))),
        );
        changed
    }
}

/// One change to a model key, with the run that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyEvent {
    /// The run.
    pub run: RunId,
    /// When the run started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// The run's kind.
    pub mode: Mode,
    /// The system read from.
    pub source: String,
    /// The system written to.
    pub target: String,
    /// Whether the run was a dry run.
    pub dry_run: bool,
    /// The change as recorded.
    pub element: Element,
}

/// Which runs a query returns (all fields optional; newest first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFilter {
    /// Runs that read from or wrote to this system.
    pub system: Option<String>,
    /// Runs of this kind.
    pub mode: Option<Mode>,
    /// Runs that ended this way.
    pub result: Option<RunResult>,
    /// Runs started at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Runs started before this time.
    pub until_ms: Option<u64>,
    /// Runs whose systems, runner (`user@host`), options or error contain
    /// this text (ASCII letters in any case).
    pub text: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// What [`Journal::retain`](crate::Journal::retain) keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// The newest runs, this many.
    Runs(usize),
    /// Runs started within this many milliseconds before now.
    MaxAgeMs(u64),
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The process's peak resident set, where the platform reports it.
pub(crate) fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
