//! What runs report: each element's outcome and why, a one-way sync's
//! report, a two-way run's report and its conflicts. Plain data, below the
//! algorithms that make them and the errors that carry them.

mod bidir;
mod outcome;
mod sync;

pub use bidir::{BiReport, ConflictKind, ConflictRecord, Resolution};
pub use outcome::{Cause, Outcome, SkipReason};
pub use sync::{ElementReport, SyncReport, Totals};
