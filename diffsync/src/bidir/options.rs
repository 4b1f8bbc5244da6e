//! The options of a reconcile.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::base::{BaseStore, SharedBaseStore};
use super::log::{ConflictSink, SharedSink};
use super::strategy::Strategy;
use crate::error::{Error, ReconcileError, Result};
use crate::store::LocalStore;

/// Options of a [`reconcile`](fn@super::reconcile).
#[derive(Clone)]
pub struct BiOptions {
    pub(super) strategy: Strategy,
    per_type: Vec<(String, Strategy)>,
    pub(super) max_delete_share: Option<f64>,
    pub(super) allow_empty_side: bool,
    pub(super) dry_run: bool,
    pub(super) modification_beats_deletion: bool,
    pub(super) log: Option<SharedSink>,
    pub(super) saved: Option<SharedBaseStore>,
}

impl fmt::Debug for BiOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BiOptions")
            .field("strategy", &self.strategy)
            .field("per_type", &self.per_type)
            .field("max_delete_share", &self.max_delete_share)
            .field("allow_empty_side", &self.allow_empty_side)
            .field("dry_run", &self.dry_run)
            .field("modification_beats_deletion", &self.modification_beats_deletion)
            .field("log", &self.log.is_some())
            .field("saved", &self.saved.is_some())
            .finish()
    }
}

/// The options as an operator reads them (a journal's runs show this):
/// the strategy, per-type strategies, the delete limit, then what else
/// differs from the defaults, `;`-separated.
///
/// ```
/// use diffsync::bidir::{BiOptions, Strategy};
///
/// assert_eq!(BiOptions::new().to_string(), "strategy safe; deletes at most 50 % a side");
/// let opts = BiOptions::new().strategy(Strategy::LeftWins).max_delete_share(None).dry_run(true);
/// assert_eq!(opts.to_string(), "strategy left-wins; no delete limit; dry run");
/// ```
impl fmt::Display for BiOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "strategy {}", self.strategy.name())?;
        for (ty, strategy) in &self.per_type {
            write!(f, ", {ty}: {}", strategy.name())?;
        }
        match self.max_delete_share {
            Some(share) => write!(
                f,
                "; deletes at most {} % a side",
                (share * 100.0 * 100.0).round() / 100.0
            )?,
            None => f.write_str("; no delete limit")?,
        }
        if self.allow_empty_side {
            f.write_str("; empty side allowed")?;
        }
        if self.modification_beats_deletion {
            f.write_str("; a modification beats a deletion")?;
        }
        if self.dry_run {
            f.write_str("; dry run")?;
        }
        Ok(())
    }
}

impl Default for BiOptions {
    fn default() -> Self {
        BiOptions {
            strategy: Strategy::Safe,
            per_type: Vec::new(),
            max_delete_share: Some(0.5),
            allow_empty_side: false,
            dry_run: false,
            modification_beats_deletion: false,
            log: None,
            saved: None,
        }
    }
}

impl BiOptions {
    /// Safe strategy, at most half of a side deleted, no empty side.
    pub fn new() -> Self {
        Self::default()
    }
    /// The strategy for every model type without its own.
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = s;
        self
    }
    /// The strategy for one model type (before the one its schema names,
    /// if any, and the default).
    pub fn strategy_for(mut self, model_type: impl Into<String>, s: Strategy) -> Self {
        self.per_type.push((model_type.into(), s));
        self
    }
    /// Stop before writing anything when a side would lose more than this
    /// share of its models (`None`: no limit).
    pub fn max_delete_share(mut self, share: Option<f64>) -> Self {
        self.max_delete_share = share;
        self
    }
    /// Reconcile even when one side is empty and the base is not (a side
    /// that came up empty would otherwise delete everything on the other).
    pub fn allow_empty_side(mut self, allow: bool) -> Self {
        self.allow_empty_side = allow;
        self
    }
    /// Plan only: report what would go where, write nothing, keep the base.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
    /// Whether this is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Update/delete and delete/update conflicts go to the modification,
    /// whatever the strategy (a deletion never loses an edit it did not
    /// see). Off by default: the strategy decides (`newest` and `highest`
    /// let the modification win anyway: a deletion has no clock).
    pub fn modification_beats_deletion(mut self, on: bool) -> Self {
        self.modification_beats_deletion = on;
        self
    }

    /// Logs every conflict to `sink`, written ahead: the records are in
    /// the sink before either side is written (a sink that fails stops the
    /// run before any write, with [`ReconcileError::ConflictLog`](crate::ReconcileError::ConflictLog)), and settled
    /// once the writes are done (see [`ConflictSink`]). A dry run logs
    /// nothing.
    pub fn log_to<S: ConflictSink + Send + 'static>(mut self, sink: Arc<std::sync::Mutex<S>>) -> Self {
        self.log = Some(sink);
        self
    }

    /// Saves the base to `store` as the run goes: before either side is
    /// written (with the writes about to be made, so a run that dies half
    /// way is settled by the next one: a write that landed counts, one that
    /// did not does not), and once more at the end. A save that fails
    /// before the writes stops the run before any write; one that fails at
    /// the end makes the run [`ReconcileError::Unfinished`](crate::ReconcileError::Unfinished). A dry run saves nothing.
    pub fn save_to<S: BaseStore + 'static>(mut self, store: Arc<std::sync::Mutex<S>>) -> Self {
        self.saved = Some(store);
        self
    }

    /// Saves to this shared base store (see [`save_to`](Self::save_to)).
    pub fn save_to_shared(mut self, store: Option<SharedBaseStore>) -> Self {
        self.saved = store;
        self
    }

    /// The sink conflicts are logged to, if any.
    pub fn sink(&self) -> Option<&SharedSink> {
        self.log.as_ref()
    }

    /// Logs to this shared sink (one that [`sink`](Self::sink) returned, or a wrapper of it).
    pub fn log_to_shared(mut self, sink: Option<SharedSink>) -> Self {
        self.log = sink;
        self
    }

    /// Each model type's strategy, fields bound to the type's declared ones:
    /// the run's choice for the type, else its schema's, else the default.
    pub(super) fn strategies(&self, stores: [&LocalStore; 2]) -> Result<HashMap<String, Strategy>> {
        // A strategy for a type neither side has is a typo, not a no-op.
        for (t, s) in &self.per_type {
            if stores.iter().all(|st| st.schema(t).is_none()) {
                let mut known: Vec<&str> = stores.iter().flat_map(|st| st.model_types()).collect();
                known.sort_unstable();
                known.dedup();
                return Err(Error::Reconcile(ReconcileError::Strategy {
                    strategy: s.name(),
                    model_type: t.clone(),
                    message: format!("neither side has this model type; known: [{}]", known.join(", ")),
                }));
            }
        }
        let mut out = HashMap::new();
        for store in stores {
            for t in store.model_types() {
                let Some(schema) = store.schema(t) else { continue };
                if out.contains_key(t) {
                    continue;
                }
                let named = match self.per_type.iter().find(|(n, _)| n == t) {
                    Some((_, s)) => s.clone(),
                    None => match &schema.strategy {
                        Some(text) => Strategy::parse(text).map_err(|e| match e {
                            Error::Reconcile(ReconcileError::Strategy { strategy, message, .. }) => {
                                Error::Reconcile(ReconcileError::Strategy {
                                    strategy,
                                    model_type: t.to_string(),
                                    message,
                                })
                            }
                            other => other,
                        })?,
                        None => self.strategy.clone(),
                    },
                };
                out.insert(t.to_string(), named.bind(schema)?);
            }
        }
        Ok(out)
    }
}
