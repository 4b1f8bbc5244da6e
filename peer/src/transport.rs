//! How request frames reach a server: the [`Transport`] trait, and
//! [`Loopback`], a server in the same process (tests, measurements).

use diffsync::{Adapter, BoxError};

use crate::server::Server;

/// Carries one request frame to a peer and brings back its response frame.
/// HTTP is one; anything that moves bytes both ways can be another.
pub trait Transport {
    /// Sends `request` and returns the response.
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, BoxError>;
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
    /// Counts one exchange.
    pub fn count(&mut self, request: &[u8], response: &[u8]) {
        self.round_trips += 1;
        self.sent += request.len() as u64;
        self.received += response.len() as u64;
        self.unpacked += (crate::proto::unpacked_len(request) + crate::proto::unpacked_len(response)) as u64;
    }

    /// Bytes unpacked per byte on the wire (1.0: nothing compressed).
    pub fn compression(&self) -> f64 {
        match self.sent + self.received {
            0 => 1.0,
            wire => self.unpacked as f64 / wire as f64,
        }
    }

    /// Counts what went over since `before` through the metrics facade,
    /// labelled with the peer's name and this side's role (`client` or
    /// `server`): `diffsync_peer_round_trips_total`,
    /// `diffsync_peer_bytes_total{frame="request"|"response"}` (on the
    /// wire) and `diffsync_peer_unpacked_bytes_total` (once unpacked: over
    /// the bytes on the wire, the compression).
    pub(crate) fn export(&self, before: Traffic, peer: &str, role: &'static str) {
        let delta = self.since(before);
        let peer = peer.to_string();
        metrics::counter!("diffsync_peer_round_trips_total", "peer" => peer.clone(), "role" => role)
            .increment(delta.round_trips);
        for (frame, bytes) in [("request", delta.sent), ("response", delta.received)] {
            metrics::counter!("diffsync_peer_bytes_total", "peer" => peer.clone(), "role" => role, "frame" => frame)
                .increment(bytes);
        }
        metrics::counter!("diffsync_peer_unpacked_bytes_total", "peer" => peer, "role" => role)
            .increment(delta.unpacked);
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
}

/// A server in this process, called directly.
pub struct Loopback<'a, A> {
    server: &'a Server<A>,
}

impl<'a, A> Loopback<'a, A> {
    /// A transport to this server.
    pub fn new(server: &'a Server<A>) -> Loopback<'a, A> {
        Loopback { server }
    }
}

impl<A: Adapter> Transport for Loopback<'_, A> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, BoxError> {
        Ok(self.server.handle(request))
    }
}
