//! Global and per-model flags, with the Python diffsync library's meanings.

use serde::{Deserialize, Serialize};

bitflags::bitflags! {
    /// Flags for one diff or sync operation.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct DiffFlags: u32 {
        /// A failing hook is recorded in the report and the sync goes on;
        /// the failed element's children are skipped.
        const CONTINUE_ON_FAILURE = 0b1;
        /// Source-only models (and their subtrees) produce no element: nothing is created.
        const SKIP_UNMATCHED_SRC = 0b10;
        /// Destination-only models (and their subtrees) produce no element: nothing is deleted.
        const SKIP_UNMATCHED_DST = 0b100;
        /// Both of the above.
        const SKIP_UNMATCHED_BOTH = Self::SKIP_UNMATCHED_SRC.bits() | Self::SKIP_UNMATCHED_DST.bits();
        /// Keep unchanged elements in the diff and log them (debug) during sync.
        const LOG_UNCHANGED_RECORDS = 0b1000;
    }
}

bitflags::bitflags! {
    /// Flags of a model type (schema default) or of one model instance.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct ModelFlags: u32 {
        /// Neither this model nor its subtree is diffed or synced (counts one skip).
        const IGNORE = 0b1;
        /// Deleting this model calls only its own delete hook; its descendants are
        /// dropped from the store without hooks.
        const SKIP_CHILDREN_ON_DELETE = 0b10;
        /// If only in the source, this model is not created.
        const SKIP_UNMATCHED_SRC = 0b100;
        /// If only in the destination, this model (and its subtree) is not deleted.
        const SKIP_UNMATCHED_DST = 0b1000;
        /// Both of the above.
        const SKIP_UNMATCHED_BOTH = Self::SKIP_UNMATCHED_SRC.bits() | Self::SKIP_UNMATCHED_DST.bits();
        /// Delete children before their parent.
        const NATURAL_DELETION_ORDER = 0b10000;
    }
}
