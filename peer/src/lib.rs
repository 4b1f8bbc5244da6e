//! Sync with diffsync processes on other machines.
//!
//! Two processes that each hold a store find what differs between them by
//! range-based set reconciliation (Meyer; the negentropy protocol): both
//! sort their models by the canonical bytes of their keys, and exchange
//! fingerprints of key ranges, splitting the ranges whose fingerprints
//! differ, until the ranges left are small enough to list. Bytes on the
//! wire and round trips grow with the differences, not with the stores.
//!
//! - [`index`]: a store's models in key order, with constant-time range
//!   fingerprints keyed by the session.
//! - [`recon`]: the reconciliation itself, sans IO: a message in, a
//!   message out.
//! - [`proto`]: the protocol's messages and frames (versioned).
//! - [`Server`]: answers peers from an adapter's store, over any
//!   [`Transport`]; [`RemotePeer`]: a peer as an adapter, whose store is an
//!   image of the peer's that [`RemotePeer::pull`] brings up to date.
//! - [`state`]: what a replica keeps about its peers across restarts.
#![warn(missing_docs)]

mod client;
#[cfg(feature = "http")]
pub mod http;
pub mod identity;
pub mod index;
pub mod proto;
#[cfg(feature = "quic")]
pub mod quic;
pub mod recon;
pub mod server;
#[cfg(feature = "http")]
pub mod socket;
pub mod state;
pub mod transport;

pub use client::{PUSH_BATCH, PeerError, PeerFeed, Pulled, RemotePeer, Resent};
pub use server::Server;
pub use transport::{Counted, Traffic, Transport};
