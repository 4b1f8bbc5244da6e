//! Change feeds: what changed in a store or a system, as events a
//! reconcile loop consumes.
//!
//! Events are hints, not data: a consumer re-reads the model and diffs it,
//! so duplicated, reordered or coalesced events do no harm. A lost event
//! does, which is why a feed says when it may have lost some (a
//! [`FeedBatch::gap`]: resync needed) and why a loop also runs periodic
//! anti-entropy passes.
//!
//! [`LocalStore::subscribe`](crate::LocalStore::subscribe) is the feed of
//! the in-memory store; adapters provide durable feeds for their systems.
//!
//! ```
//! use diffsync::feed::{ChangeFeed, ChangeKind};
//! use diffsync::{DiffModel, LocalStore};
//! use std::time::Duration;
//!
//! #[derive(DiffModel, Clone, Debug, PartialEq)]
//! #[diffsync(name = "site")]
//! struct Site { #[diffsync(id)] name: String, region: String }
//!
//! let mut store = LocalStore::new("cmdb");
//! let mut feed = store.subscribe();
//! store.add(Site { name: "nyc".into(), region: "east".into() })?;
//! let batch = feed.poll(10, Duration::ZERO).unwrap();
//! assert_eq!(batch.events[0].kind, ChangeKind::Created);
//! assert_eq!(batch.events[0].key, *Site::key("nyc").erased());
//! # Ok::<(), diffsync::Error>(())
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::Duration;

use crate::LocalStore;
use crate::model::BoxError;
pub use crate::store::event::{ChangeEvent, ChangeKind};

/// What one poll of a feed returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedBatch {
    /// The events, oldest first.
    pub events: Vec<ChangeEvent>,
    /// The feed may have lost events before these (an overflow, a pruned
    /// log, a restart): the consumer must resync everything.
    pub gap: bool,
}

/// Where a durable feed stands: just after the last event it returned.
/// Opaque to a consumer, which keeps it to [commit](ChangeFeed::commit_at)
/// later, once every event before it has been handled.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position(String);

impl Position {
    /// A position in a feed's own notation (a sequence number, a stream id).
    pub fn new(p: impl Into<String>) -> Self {
        Position(p.into())
    }
    /// The feed's notation.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A source of change events.
pub trait ChangeFeed: Send {
    /// Waits up to `wait` for events and returns at most `max` of them
    /// (none when nothing came).
    fn poll(&mut self, max: usize, wait: Duration) -> Result<FeedBatch, BoxError>;
    /// Where the feed stands now (after the last event returned); `None`
    /// for a feed that keeps no cursor.
    fn position(&self) -> Option<Position> {
        None
    }
    /// Every event up to `position` (one this feed returned) has been
    /// handled: a durable feed persists its cursor there, so a restart
    /// resumes after it.
    fn commit_at(&mut self, position: &Position) -> Result<(), BoxError> {
        let _ = position;
        Ok(())
    }
    /// Every event returned so far has been handled.
    fn commit(&mut self) -> Result<(), BoxError> {
        match self.position() {
            Some(p) => self.commit_at(&p),
            None => Ok(()),
        }
    }
}

/// A boxed feed is a feed (one picked at run time): every method goes to
/// the boxed one.
impl<F: ChangeFeed + ?Sized> ChangeFeed for Box<F> {
    fn poll(&mut self, max: usize, wait: Duration) -> Result<FeedBatch, BoxError> {
        (**self).poll(max, wait)
    }
    fn position(&self) -> Option<Position> {
        (**self).position()
    }
    fn commit_at(&mut self, position: &Position) -> Result<(), BoxError> {
        (**self).commit_at(position)
    }
    fn commit(&mut self) -> Result<(), BoxError> {
        (**self).commit()
    }
}

/// How many unread events a [`LocalStore::subscribe`]
/// feed holds before it drops events and reports a gap.
pub const FEED_CAPACITY: usize = 100_000;

impl LocalStore {
    /// A feed of every change made through this store from now on (see
    /// [`feed`](crate::feed)), holding at most [`FEED_CAPACITY`] unread
    /// events.
    pub fn subscribe(&mut self) -> StoreFeed {
        self.subscribe_with_capacity(FEED_CAPACITY)
    }

    /// A feed holding at most `capacity` unread events. The store never
    /// waits for the reader: past the capacity, events are dropped and the
    /// reader's next poll reports a gap (as inotify does when its queue
    /// overflows), so memory stays bounded and nothing is lost unseen.
    pub fn subscribe_with_capacity(&mut self, capacity: usize) -> StoreFeed {
        let (subscriber, feed) = StoreFeed::new(capacity);
        self.listen(Box::new(subscriber));
        feed
    }
}

/// What a store and the feed it feeds share.
#[derive(Debug, Default)]
struct Shared {
    /// Events sent and not received yet.
    queued: AtomicUsize,
    /// Events were dropped since the last poll.
    overflow: AtomicBool,
    /// The reading end is gone.
    closed: AtomicBool,
}

/// The sending end of a [`StoreFeed`], kept by its store.
#[derive(Clone, Debug)]
struct Subscriber {
    tx: Sender<ChangeEvent>,
    shared: Arc<Shared>,
    capacity: usize,
}

impl Subscriber {
    /// Sends `event`, or drops it and flags the gap when the reader is
    /// `capacity` events behind. False once the reader is gone.
    fn send(&self, event: ChangeEvent) -> bool {
        if self.shared.queued.load(Ordering::Acquire) >= self.capacity {
            self.gap();
            return self.reader_alive();
        }
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.send(event).is_ok()
    }

    fn gap(&self) {
        self.shared.overflow.store(true, Ordering::Release);
    }

    fn reader_alive(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire)
    }
}

impl crate::store::Listener for Subscriber {
    fn hear(&self, event: &ChangeEvent) -> bool {
        self.send(event.clone())
    }
}

/// A feed the application fills: change events from wherever it hears
/// of changes (a message bus, webhooks, a system's own notifications),
/// for a reconcile loop. The reading end holds at most `capacity` unread
/// events; past that, events are dropped and the reader reads a gap.
///
/// ```
/// use diffsync::feed::{self, ChangeEvent, ChangeFeed, ChangeKind};
/// use std::time::Duration;
///
/// let (tx, mut rx) = feed::channel(1000);
/// // In the bus consumer: one event per message.
/// // The message names the model by the text diffsync prints for its key.
/// let event = ChangeEvent {
///     kind: ChangeKind::Updated,
///     key: "site:nyc".parse().unwrap(),
///     parent: None,
///     origin: None,
/// };
/// assert!(tx.send(event));
/// // The consumer reconnected and may have missed messages.
/// tx.gap();
/// let batch = rx.poll(10, Duration::ZERO).unwrap();
/// assert!(batch.gap);
/// assert_eq!(batch.events[0].key.to_string(), "site:nyc");
/// ```
pub fn channel(capacity: usize) -> (FeedSender, StoreFeed) {
    let (subscriber, feed) = StoreFeed::new(capacity);
    (FeedSender(subscriber), feed)
}

/// The sending end of a [`channel`] feed (clone it for several publishers).
#[derive(Clone, Debug)]
pub struct FeedSender(Subscriber);

impl FeedSender {
    /// Queues an event; false once the reading end is gone.
    pub fn send(&self, event: ChangeEvent) -> bool {
        self.0.send(event)
    }
    /// Says events may have been lost (the publisher reconnected to its
    /// bus, say): the reader's next poll reports a gap, so a loop runs a
    /// full pass.
    pub fn gap(&self) {
        self.0.gap();
    }
}

/// A feed in memory: of a [`LocalStore`] (every change
/// made through the store, as it happens), or filled by the application
/// ([`channel`]). Not durable (it lives as long as the process); the
/// writer never waits for its reader, and a reader too far behind reads a
/// gap.
pub struct StoreFeed {
    rx: Receiver<ChangeEvent>,
    shared: Arc<Shared>,
}

impl StoreFeed {
    fn new(capacity: usize) -> (Subscriber, StoreFeed) {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let subscriber = Subscriber {
            tx,
            shared: shared.clone(),
            capacity: capacity.max(1),
        };
        (subscriber, StoreFeed { rx, shared })
    }

    fn received(&self, e: ChangeEvent) -> ChangeEvent {
        self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        e
    }
}

impl Drop for StoreFeed {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl ChangeFeed for StoreFeed {
    fn poll(&mut self, max: usize, wait: Duration) -> Result<FeedBatch, BoxError> {
        let mut batch = FeedBatch {
            gap: self.shared.overflow.swap(false, Ordering::AcqRel),
            ..FeedBatch::default()
        };
        let first = match self.rx.try_recv() {
            Ok(e) => e,
            Err(TryRecvError::Empty) if batch.gap => return Ok(batch),
            Err(TryRecvError::Empty) => match self.rx.recv_timeout(wait) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => return Ok(batch),
                Err(RecvTimeoutError::Disconnected) => return Err("the store of this feed was dropped".into()),
            },
            Err(TryRecvError::Disconnected) => return Err("the store of this feed was dropped".into()),
        };
        batch.events.push(self.received(first));
        while batch.events.len() < max {
            match self.rx.try_recv() {
                Ok(e) => batch.events.push(self.received(e)),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        Ok(batch)
    }
}
