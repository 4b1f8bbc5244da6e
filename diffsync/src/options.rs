//! Options of a diff or sync: flags, sibling order, dry run, progress,
//! safety rails.
//! The diff layer reads them as well as the sync, so they stand alone.

use serde::{Deserialize, Serialize};

use crate::diff::ChildOrder;
use crate::flags::DiffFlags;

/// Which phase a progress report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    /// Computing the diff (`total` = models in both stores).
    Diff,
    /// Applying changes (`total` = elements of the diff, the sync report's length).
    Sync,
}

/// A progress report: `current` of `total` done in `stage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The phase.
    pub stage: Stage,
    /// Done so far.
    pub current: usize,
    /// Expected in all.
    pub total: usize,
}

/// Options of a diff or sync. Build with the methods:
///
/// ```
/// use diffsync::{ChildOrder, DiffFlags, Options};
///
/// let mut seen = 0;
/// let mut on_progress = |_p: diffsync::Progress| seen += 1;
/// let opts = Options::new()
///     .flags(DiffFlags::CONTINUE_ON_FAILURE)
///     .order("interface", ChildOrder::ByKey)
///     .dry_run(true)
///     .progress(&mut on_progress);
/// assert!(opts.is_dry_run());
/// ```
#[derive(Default)]
pub struct Options<'a> {
    pub(crate) flags: DiffFlags,
    pub(crate) order: Vec<(String, ChildOrder)>,
    pub(crate) dry_run: bool,
    pub(crate) progress: Option<&'a mut dyn FnMut(Progress)>,
    pub(crate) part: Option<Vec<(String, String)>>,
    pub(crate) allow_empty_source: bool,
    pub(crate) max_delete_share: Option<f64>,
    pub(crate) walk_all: bool,
}

/// What the options are (a journal records it with each run): every
/// setting, the ordered types by name, whether a progress callback is set.
impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ordered: Vec<&str> = self.order.iter().map(|(t, _)| t.as_str()).collect();
        f.debug_struct("Options")
            .field("flags", &self.flags)
            .field("ordered", &ordered)
            .field("dry_run", &self.dry_run)
            .field("part", &self.part)
            .field("allow_empty_source", &self.allow_empty_source)
            .field("max_delete_share", &self.max_delete_share)
            .field("walk_all", &self.walk_all)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// The options as an operator reads them (a journal's runs show this):
/// what differs from the defaults, `;`-separated, or `defaults`. Flags in
/// kebab case (`continue-on-failure`), a part by its keys' text.
///
/// ```
/// use diffsync::{ChildOrder, DiffFlags, Options};
///
/// assert_eq!(Options::new().to_string(), "defaults");
/// let opts = Options::new()
///     .flags(DiffFlags::CONTINUE_ON_FAILURE | DiffFlags::SKIP_UNMATCHED_DST)
///     .order("interface", ChildOrder::ByKey)
///     .dry_run(true)
///     .max_delete_share(Some(0.25));
/// assert_eq!(
///     opts.to_string(),
///     "dry run; continue-on-failure, skip-unmatched-dst; order interface; deletes at most 25 %"
/// );
/// ```
impl std::fmt::Display for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.dry_run {
            parts.push("dry run".into());
        }
        let flags: Vec<String> = self
            .flags
            .iter_names()
            // A union (SKIP_UNMATCHED_BOTH) is told by its members.
            .filter(|(_, flag)| flag.bits().count_ones() == 1)
            .map(|(name, _)| name.to_ascii_lowercase().replace('_', "-"))
            .collect();
        if !flags.is_empty() {
            parts.push(flags.join(", "));
        }
        if !self.order.is_empty() {
            let types: Vec<&str> = self.order.iter().map(|(t, _)| t.as_str()).collect();
            parts.push(format!("order {}", types.join(", ")));
        }
        if let Some(keys) = &self.part {
            let keys: Vec<String> = keys.iter().map(|(t, k)| format!("{t}:{k}")).collect();
            parts.push(format!("part {}", keys.join(", ")));
        }
        if self.allow_empty_source {
            parts.push("empty source allowed".into());
        }
        if let Some(share) = self.max_delete_share {
            parts.push(format!("deletes at most {} %", (share * 100.0 * 100.0).round() / 100.0));
        }
        if self.walk_all {
            parts.push("every model walked".into());
        }
        if parts.is_empty() {
            return f.write_str("defaults");
        }
        f.write_str(&parts.join("; "))
    }
}

impl<'a> Options<'a> {
    /// Default options: no flags, insertion order, real sync, no progress.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the flags.
    pub fn flags(mut self, flags: DiffFlags) -> Self {
        self.flags = flags;
        self
    }
    /// Orders the siblings of `model_type` in the diff (and so in the sync).
    pub fn order(mut self, model_type: impl Into<String>, order: ChildOrder) -> Self {
        self.order.push((model_type.into(), order));
        self
    }
    /// Plans the sync and reports it without calling hooks or changing the store.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
    /// Diffs (and syncs) only the models these keys name, each with its
    /// whole subtree, in either store: `Options::new().part([Device::key("nyc", "r1")])`.
    /// The diff has the elements a full diff has for them, under their
    /// ancestors as no-change parents (a model whose parent is created on
    /// the way is only in the part with that parent). Keys in neither store
    /// are no part of anything.
    pub fn part<K: AsRef<crate::ModelKey>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        let keys = keys.into_iter().map(|k| {
            let k = k.as_ref();
            (k.model_type().to_string(), k.unique_id().to_string())
        });
        self.part = Some(keys.collect());
        self
    }
    /// Calls `f` with progress (at most about a thousand times per stage, and at the end).
    pub fn progress(mut self, f: &'a mut dyn FnMut(Progress)) -> Self {
        self.progress = Some(f);
        self
    }
    /// Sync even when the source holds no model and the destination does.
    /// Off by default: a source that came up empty (a mistyped path, a
    /// failed export, an unreachable database read as nothing) would
    /// otherwise delete everything in the destination, so such a sync is
    /// refused with [`SyncError::EmptySource`](crate::SyncError::EmptySource)
    /// before anything is written.
    pub fn allow_empty_source(mut self, allow: bool) -> Self {
        self.allow_empty_source = allow;
        self
    }
    /// Stop a sync before writing anything when it would delete more than
    /// this share of the destination's models
    /// ([`SyncError::TooManyDeletes`](crate::SyncError::TooManyDeletes)). `None`
    /// (the default): no limit.
    pub fn max_delete_share(mut self, share: Option<f64>) -> Self {
        self.max_delete_share = share;
        self
    }
    /// Visit every pair of models, even under equal subtree fingerprints:
    /// the differ's reference behaviour, which its property tests and
    /// benchmarks compare the skipping diff with. The result is the same.
    #[doc(hidden)]
    pub fn walk_all(mut self, walk_all: bool) -> Self {
        self.walk_all = walk_all;
        self
    }
    /// Whether this is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }
}
