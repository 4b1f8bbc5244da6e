//! A journal of diffsync runs: what each run did, the history of every
//! model key across runs, and a guarded undo.
//!
//! - [`Journal`]: runs recorded in SQLite as they go (an embedded file, no
//!   server): mode, systems, dry run, result, error, totals, seconds per
//!   phase, peak memory, and per change the action, the outcome and the
//!   attribute values before and after. Queries: [`runs`](Journal::runs)
//!   by system, mode, result and time; one [`run`](Journal::run) and its
//!   [`elements`](Journal::elements); the [`history`](Journal::history) of
//!   one key; [`retain`](Journal::retain) by count or age.
//! - [`Journal::rollback`]: the inverse of each change a run applied,
//!   through the target's ordinary hooks, only where the target still
//!   holds what the run wrote; the rest is reported as conflicts, by key.
//! - [`Recorder`]: a layer that records every batch an adapter applies
//!   (the passes of a loop, say).
//! - [`metrics`]: every recorded run counted in the Prometheus form, and
//!   an endpoint that serves the counts.
#![warn(missing_docs)]

mod chunk;
mod db;
mod error;
mod journal;
pub mod metrics;
mod record;
mod recorder;
mod rollback;

pub use error::JournalError;
pub use journal::{Journal, Runs};
pub use record::{ActionCounts, Element, KeyEvent, Mode, Retention, Run, RunFilter, RunId, RunResult, Side};
pub use recorder::Recorder;
pub use rollback::{Rollback, RollbackConflict};
