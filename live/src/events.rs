//! What a loop tells its subscribers.

use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use diffsync::bidir::ConflictRecord;
use diffsync::{ModelKey, Stage};

use crate::lock;

/// What a [`LoopEvent::Failed`] is about.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Subject {
    /// One model (retried on its own).
    Model(ModelKey),
    /// A feed, by its index in the builder's order (polled again).
    Feed(usize),
    /// A whole pass (retried as a whole).
    Pass,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Model(key) => write!(f, "{key}"),
            Subject::Feed(i) => write!(f, "feed {i}"),
            Subject::Pass => f.write_str("pass"),
        }
    }
}

/// What the loop tells its subscribers (and `tracing`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LoopEvent {
    /// The loop runs.
    Started,
    /// Dirty keys were synced.
    Synced {
        /// How many keys.
        keys: usize,
        /// Changes applied.
        applied: usize,
        /// The keys of the changes applied, in order.
        changed: Vec<ModelKey>,
        /// Keys left for a retry.
        failed: usize,
        /// Time from the oldest key's first event to its apply.
        latency: Duration,
        /// Conflicts left unresolved (two-way; 0 one-way).
        unresolved: usize,
    },
    /// A two-way loop met a conflict: what each side held, what the
    /// strategy decided and whether it was applied. An unresolved one is
    /// told once, until one side changes it again.
    Conflict(Box<ConflictRecord>),
    /// A key could not be brought in step; it is retried after `retry_in`.
    Failed {
        /// What failed: a model, a feed, or a whole pass.
        subject: Subject,
        /// Why.
        error: String,
        /// When it is tried again.
        retry_in: Duration,
    },
    /// A feed may have lost events: a full pass follows.
    Gap {
        /// Which feed (its index in the builder's order).
        feed: usize,
    },
    /// How far a full pass got (at most every 100 ms, and at the end of
    /// each stage of each target's sync).
    Progress {
        /// Why the pass runs.
        reason: &'static str,
        /// Diffing or applying.
        stage: Stage,
        /// Done so far.
        current: usize,
        /// Expected in all.
        total: usize,
    },
    /// A full pass ran (start, anti-entropy, gap, trigger).
    FullPass {
        /// Why it ran.
        reason: &'static str,
        /// Changes applied (0 when everything was in step).
        repaired: usize,
        /// Keys left for a retry.
        failed: usize,
        /// Why the pass failed as a whole (a source that could not be
        /// read, a sync that stopped); it is retried after a backoff.
        error: Option<String>,
        /// Conflicts left unresolved (two-way; 0 one-way): a pass that
        /// leaves some is not clean.
        unresolved: usize,
    },
    /// The loop stopped.
    Stopped,
}

pub(crate) fn subscribe(listeners: &Mutex<Vec<Sender<LoopEvent>>>) -> Receiver<LoopEvent> {
    let (tx, rx) = mpsc::channel();
    lock(listeners).push(tx);
    rx
}

/// Sends an event to every subscriber still listening.
pub(crate) fn tell(listeners: &Mutex<Vec<Sender<LoopEvent>>>, event: LoopEvent) {
    lock(listeners).retain(|l| l.send(event.clone()).is_ok());
}
