//! How request frames reach a server: the [`Transport`] trait, which both
//! ends of a connection implement (a client's HTTP or QUIC connection, and
//! the [`Server`](crate::Server) itself, which answers frames in this
//! process), and [`Counted`], the layer that counts what goes over any of
//! them.
//!
//! One shape for both ends, as tower's services have: a layer written once
//! wraps a client's transport or a server alike, and a socket server (HTTP,
//! QUIC) serves any transport: a [`Server`](crate::Server), a counted one,
//! or a transport to another machine (a relay).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use diffsync::BoxError;

use crate::proto;

/// Carries one request frame to a peer and brings back its response frame.
/// HTTP and QUIC are two; anything that moves bytes both ways can be
/// another. A [`Server`](crate::Server) is one too: it answers the frame
/// itself.
pub trait Transport {
    /// Sends `request` and returns the response.
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, BoxError>;

    /// How many bytes a request frame that starts with `head` (at least
    /// [`proto::HEAD`] bytes, or all of it) may have: a socket server
    /// reads the head, asks, and stops reading past the answer. The
    /// [`Server`](crate::Server) admits a call of an open session up to
    /// [`proto::MAX_REQUEST`] and anything else up to
    /// [`proto::HANDSHAKE_MAX`]; a transport that passes frames on asks
    /// what it wraps, and one that cannot tell admits a handshake's worth
    /// (the default).
    fn admits(&self, head: &[u8]) -> usize {
        let _ = head;
        proto::HANDSHAKE_MAX
    }

    /// The peer `request` comes from, once it has proven its key: the
    /// server names the peer of a sealed call's session; a transport
    /// that cannot tell (a client's) knows no one (the default).
    fn sender(&self, request: &[u8]) -> Option<String> {
        let _ = request;
        None
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, BoxError> {
        (**self).call(request)
    }

    fn admits(&self, head: &[u8]) -> usize {
        (**self).admits(head)
    }

    fn sender(&self, request: &[u8]) -> Option<String> {
        (**self).sender(request)
    }
}

/// What went over a transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Request/response exchanges.
    pub round_trips: u64,
    /// Bytes of request frames.
    pub sent: u64,
    /// Bytes of response frames.
    pub received: u64,
    /// Bytes the frames (both ways) carry once unpacked: with `sent` and
    /// `received`, what compression saved.
    pub unpacked: u64,
}

impl Traffic {
    /// Counts one exchange: its bytes on the wire, and what they carry
    /// unpacked (a sealed call's or a signed answer's compressed body as
    /// its frame says, read from the envelope without unpacking it).
    pub fn count(&mut self, request: &[u8], response: &[u8]) {
        self.round_trips += 1;
        self.sent += request.len() as u64;
        self.received += response.len() as u64;
        self.unpacked += (proto::request_carries(request) + proto::response_carries(response)) as u64;
    }

    /// Bytes unpacked per byte on the wire (1.0: nothing compressed).
    pub fn compression(&self) -> f64 {
        match self.sent + self.received {
            0 => 1.0,
            wire => self.unpacked as f64 / wire as f64,
        }
    }

    /// What went over since `before` (a counter read earlier).
    pub fn since(&self, before: Traffic) -> Traffic {
        Traffic {
            round_trips: self.round_trips - before.round_trips,
            sent: self.sent - before.sent,
            received: self.received - before.received,
            unpacked: self.unpacked - before.unpacked,
        }
    }

    fn add(&mut self, other: Traffic) {
        self.round_trips += other.round_trips;
        self.sent += other.sent;
        self.received += other.received;
        self.unpacked += other.unpacked;
    }
}

/// A layer that counts what goes over the transport it wraps, per peer,
/// and exports it through the metrics facade (labelled with the peer's
/// name and this end's role, `client` or `server`):
/// `diffsync_peer_round_trips_total`,
/// `diffsync_peer_bytes_total{frame="request"|"response"}` (on the wire)
/// and `diffsync_peer_unpacked_bytes_total` (once unpacked: over the bytes
/// on the wire, the compression).
///
/// A client's layer counts every answered exchange under the peer it
/// talks to; a server's counts the calls of the peers that proved their
/// keys, under the name its allow-list gives them
/// ([`Transport::sender`]), and nothing of strangers. Clones share their
/// counts (a socket server clones its service per request).
///
/// ```
/// use std::sync::Arc;
/// use diffsync::{LocalStore, MemoryAdapter};
/// use diffsync_peer::identity::{Identity, Peers, Rights};
/// use diffsync_peer::{Counted, RemotePeer, Server};
///
/// let (hq, branch) = (Identity::generate(), Identity::generate());
/// let peers = Peers::new().allow("branch", branch.public_key(), Rights::read());
/// let adapter = MemoryAdapter::with_store("hq", &[], LocalStore::new("hq"));
/// let server = Counted::server(Arc::new(Server::new("hq", adapter, hq, peers)));
/// let mut peer = RemotePeer::connect("hq", LocalStore::new("image"), server.clone(), branch).unwrap();
/// peer.pull().unwrap();
/// let [(name, served)] = server.traffic().try_into().unwrap();
/// assert_eq!(name, "branch");
/// // The hello and the auth come before the peer proved its key.
/// assert_eq!(served.round_trips, peer.traffic().round_trips - 2);
/// ```
pub struct Counted<T> {
    inner: T,
    role: &'static str,
    /// The peer a client's exchanges are counted under; a server's are
    /// counted under their sender.
    peer: Option<String>,
    counts: Arc<Mutex<BTreeMap<String, Traffic>>>,
}

impl<T> Counted<T> {
    /// A client's transport to the peer named `peer`, counted.
    pub fn client(inner: T, peer: impl Into<String>) -> Counted<T> {
        Counted {
            inner,
            role: "client",
            peer: Some(peer.into()),
            counts: Arc::default(),
        }
    }

    /// A server (or what a socket server serves), counted per peer.
    pub fn server(inner: T) -> Counted<T> {
        Counted {
            inner,
            role: "server",
            peer: None,
            counts: Arc::default(),
        }
    }

    /// What each peer's exchanges moved so far, by name, in name order.
    pub fn traffic(&self) -> Vec<(String, Traffic)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.iter().map(|(name, t)| (name.clone(), *t)).collect()
    }

    /// What all exchanges moved so far.
    pub fn total(&self) -> Traffic {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.values().fold(Traffic::default(), |mut all, t| {
            all.add(*t);
            all
        })
    }

    /// The transport it wraps.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn record(&self, peer: String, request: &[u8], response: &[u8]) {
        let mut exchange = Traffic::default();
        exchange.count(request, response);
        metrics::counter!("diffsync_peer_round_trips_total", "peer" => peer.clone(), "role" => self.role)
            .increment(exchange.round_trips);
        for (frame, bytes) in [("request", exchange.sent), ("response", exchange.received)] {
            metrics::counter!("diffsync_peer_bytes_total", "peer" => peer.clone(), "role" => self.role, "frame" => frame)
                .increment(bytes);
        }
        metrics::counter!("diffsync_peer_unpacked_bytes_total", "peer" => peer.clone(), "role" => self.role)
            .increment(exchange.unpacked);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.entry(peer).or_default().add(exchange);
    }
}

impl<T: Clone> Clone for Counted<T> {
    fn clone(&self) -> Counted<T> {
        Counted {
            inner: self.inner.clone(),
            role: self.role,
            peer: self.peer.clone(),
            counts: Arc::clone(&self.counts),
        }
    }
}

impl<T: Transport> Transport for Counted<T> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, BoxError> {
        let response = self.inner.call(request)?;
        if let Some(peer) = self.peer.clone().or_else(|| self.inner.sender(request)) {
            self.record(peer, request, &response);
        }
        Ok(response)
    }

    fn admits(&self, head: &[u8]) -> usize {
        self.inner.admits(head)
    }

    fn sender(&self, request: &[u8]) -> Option<String> {
        self.inner.sender(request)
    }
}
