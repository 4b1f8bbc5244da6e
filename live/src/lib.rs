//! Event-driven and incremental sync: a reconcile loop that keeps targets
//! in step with a source as it changes.
//!
//! The loop follows the controller pattern: change events are hints. Each
//! names a model; the loop keeps one dirty entry per key (however many
//! events came), waits out a debounce window, then re-reads and diffs just
//! those keys ([`Options::part`](diffsync::Options::part)) and applies what differs. A failed key is
//! retried with jittered exponential backoff (capped at 64 s by default).
//! Because feeds can lose events, a periodic anti-entropy pass compares the
//! stores' fingerprints and repairs whatever differs, and a feed that
//! reports a gap triggers such a pass at once. A sync also runs at start,
//! on [`LoopHandle::trigger`] and on cron schedules
//! ([`ReconcileLoop::schedule`], feature `cron`, on by default).
//!
//! The loop drives a [`Reconciler`]: [`OneWay`] (a source to one or more
//! targets) or [`TwoWay`] (a bidirectional reconcile against a base).
//!
//! # Threads, not async
//! The loop runs on one thread of its own. Adapters' hooks are synchronous
//! (SQLite, PostgreSQL, Redis clients, files), so an async runtime would only
//! add a dependency and the risk of blocking its executor; the loop sleeps
//! in the feeds' `poll` instead. Adapters are shared with the application
//! behind `Arc<Mutex<_>>`: the loop locks them for one pass at a time.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use diffsync::{Adapter, DiffModel, MemoryAdapter};
//! use diffsync_live::{LoopEvent, OneWay, ReconcileLoop};
//!
//! #[derive(DiffModel, Clone, Debug, PartialEq)]
//! #[diffsync(name = "site")]
//! struct Site { #[diffsync(id)] name: String, region: String }
//!
//! let source = Arc::new(Mutex::new(MemoryAdapter::new("cmdb", &["site"])));
//! let target = Arc::new(Mutex::new(MemoryAdapter::new("mirror", &["site"])));
//! let feed = source.lock().unwrap().store.subscribe();
//! let looped = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
//!     .feed(feed)
//!     .debounce(Duration::from_millis(5));
//! let events = looped.subscribe();
//! let handle = looped.spawn()?;
//! assert_eq!(events.recv().ok(), Some(LoopEvent::Started));
//! assert!(matches!(events.recv(), Ok(LoopEvent::FullPass { reason: "startup", .. })));
//! source.lock().unwrap().store.add(Site { name: "nyc".into(), region: "east".into() })?;
//! // The incremental sync of that key.
//! assert!(matches!(events.recv(), Ok(LoopEvent::Synced { keys: 1, applied: 1, .. })));
//! assert_eq!(target.lock().unwrap().store.count("site"), 1);
//! handle.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Mutex, MutexGuard};

mod builder;
mod events;
mod handle;
mod reconciler;
mod worker;

pub use builder::{BadSchedule, ReconcileLoop};
pub use events::{LoopEvent, Subject};
pub use handle::LoopHandle;
pub use reconciler::{OneWay, PassOutcome, Reconciler, TwoWay};

/// Locks a shared adapter; a panic in an earlier pass poisoned nothing that
/// matters (a sync leaves the store as the system took the changes).
fn lock<A: ?Sized>(m: &Mutex<A>) -> MutexGuard<'_, A> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
