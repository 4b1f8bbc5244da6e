//! A remote peer as an adapter: an image of its store, brought up to date
//! by range-based reconciliation.

use std::collections::HashSet;

use diffsync::{Adapter, Attrs, BoxError, Change, HookError, LocalStore, ModelKey, StoreError};
use serde::Deserialize;

use crate::index::{Index, RangePrint, session_seed};
use crate::proto::{self, Hello, Refusal, Request, Response, WireModel};
use crate::recon::{Config, Differences, Malformed, Side};
use crate::server::hello_of;
use crate::transport::{Traffic, Transport};

/// Ids asked for in one fetch.
const FETCH_BATCH: usize = 2_000;
/// Reconciliations a pull runs at most (a second one when the image does
/// not match the peer after the first: the peer changed meanwhile, say).
const PASSES: usize = 3;

/// What can go wrong talking to a peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The transport failed (connection refused, reset, timed out).
    #[error("peer {peer:?}: the transport failed")]
    Transport {
        /// The peer's name.
        peer: String,
        /// The transport's error.
        #[source]
        source: BoxError,
    },
    /// The peer refused the request; nothing was changed on either side.
    #[error("peer {peer:?} refused")]
    Refused {
        /// The peer's name.
        peer: String,
        /// Why.
        #[source]
        refusal: Refusal,
    },
    /// The peer answered something this side cannot use.
    #[error("peer {peer:?} answered out of protocol: {message}")]
    Protocol {
        /// The peer's name.
        peer: String,
        /// What was wrong.
        message: String,
    },
    /// A model the peer sent does not fit the image's schema.
    #[error("peer {peer:?} sent a model the image cannot hold")]
    Model {
        /// The peer's name.
        peer: String,
        /// The image's error.
        #[source]
        source: Box<StoreError>,
    },
}

/// What a pull did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pulled {
    /// Models fetched (created or updated in the image).
    pub fetched: usize,
    /// Models removed from the image (the peer no longer holds them).
    pub removed: usize,
    /// Reconciliations run (0: the image already matched).
    pub passes: usize,
    /// What went over the transport.
    pub traffic: Traffic,
}

/// A diffsync process on another machine, as an adapter: its store is an
/// image of the peer's, which [`pull`](RemotePeer::pull) (and the
/// adapter's [`refresh`](Adapter::refresh)) brings up to date by
/// reconciling key ranges, so the bytes moved grow with the differences.
/// Start the image as a copy of the store it will be synced with, and the
/// first pull moves only what differs. Then any driver works:
/// `local.sync_from(&peer)`, `diff_from`, a loop's source.
///
/// Read-only for now: a change written to it fails (the peer's rights and
/// the push of batches come with the next step of the protocol).
pub struct RemotePeer<T> {
    name: String,
    image: LocalStore,
    transport: T,
    traffic: Traffic,
    /// The session `connect` opened, for the first pull.
    opened: Option<(u64, u64, RangePrint)>,
}

impl<T: Transport> RemotePeer<T> {
    /// A peer named `name` reached over `transport`, with the image it
    /// starts from (its model types registered). Says hello, so a peer
    /// whose protocol or schemas do not match is refused here.
    pub fn connect(name: impl Into<String>, image: LocalStore, transport: T) -> Result<RemotePeer<T>, PeerError> {
        let mut peer = RemotePeer {
            name: name.into(),
            image,
            transport,
            traffic: Traffic::default(),
            opened: None,
        };
        peer.opened = Some(peer.open()?);
        Ok(peer)
    }

    /// The image of the peer's store.
    pub fn image(&self) -> &LocalStore {
        &self.image
    }

    /// Everything that went over the transport so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Brings the image up to date with the peer: reconciles, fetches what
    /// differs, removes what the peer no longer holds.
    pub fn pull(&mut self) -> Result<Pulled, PeerError> {
        let before = self.traffic;
        let mut pulled = Pulled::default();
        let (mut session, mut seed, mut whole) = match self.opened.take() {
            Some(opened) => opened,
            None => self.open()?,
        };
        loop {
            let index = Index::build(&self.image, seed);
            if index.fingerprint(0, index.len()) == whole {
                break;
            }
            if pulled.passes == PASSES {
                return Err(self.protocol(format!(
                    "the image still differs from the peer after {PASSES} reconciliations"
                )));
            }
            if pulled.passes > 0 {
                (session, seed, whole) = self.open()?;
            }
            pulled.passes += 1;
            let diff = self.reconcile(session, &index)?;
            let mut models = Vec::new();
            for ids in diff.need.chunks(FETCH_BATCH) {
                match self.call(&Request::Fetch {
                    session,
                    ids: ids.to_vec(),
                })? {
                    Response::Models(batch) => models.extend(batch),
                    other => return Err(self.unexpected(&other)),
                }
            }
            let stale: Vec<Vec<u8>> = diff.have.iter().map(|&p| index.items()[p].key.clone()).collect();
            let (fetched, removed) = self.apply(models, stale)?;
            pulled.fetched += fetched;
            pulled.removed += removed;
        }
        pulled.traffic = Traffic {
            round_trips: self.traffic.round_trips - before.round_trips,
            sent: self.traffic.sent - before.sent,
            received: self.traffic.received - before.received,
        };
        Ok(pulled)
    }

    /// Says hello: the session id, its seed, and the fingerprint of all
    /// the peer holds.
    fn open(&mut self) -> Result<(u64, u64, RangePrint), PeerError> {
        let ours = hello_of(self.image.name(), &self.image, fastrand::u64(..));
        let nonce = ours.nonce;
        match self.call(&Request::Hello(ours))? {
            Response::Welcome { session, hello, whole } => {
                self.check(&hello)?;
                Ok((session, session_seed(nonce, hello.nonce), whole))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    /// The server checked our schemas; this checks its, for the types it
    /// did not know of ours.
    fn check(&self, theirs: &Hello) -> Result<(), PeerError> {
        let ours = hello_of("", &self.image, 0);
        for (t, fp) in &theirs.schemas {
            if ours.schemas.iter().any(|(u, mine)| u == t && mine != fp) {
                return Err(PeerError::Refused {
                    peer: self.name.clone(),
                    refusal: Refusal::Schema {
                        model_type: t.clone(),
                        replica: theirs.replica.clone(),
                    },
                });
            }
        }
        Ok(())
    }

    fn reconcile(&mut self, session: u64, index: &Index) -> Result<Differences, PeerError> {
        let side = Side::initiator(index, Config::for_size(index.len()));
        let mut diff = Differences::default();
        let mut message = side.initiate();
        loop {
            let reply = match self.call(&Request::Reconcile { session, message })? {
                Response::Reconcile(reply) => reply,
                other => return Err(self.unexpected(&other)),
            };
            match side
                .answer(&reply, &mut diff)
                .map_err(|Malformed(m)| self.protocol(m))?
            {
                Some(next) => message = next,
                None => return Ok(diff),
            }
        }
    }

    /// Puts fetched models into the image (parents before children) and
    /// removes the stale keys the fetch did not bring back.
    fn apply(&mut self, models: Vec<WireModel>, stale: Vec<Vec<u8>>) -> Result<(usize, usize), PeerError> {
        let mut pending: Vec<(ModelKey, Option<ModelKey>, Attrs, Attrs)> = Vec::with_capacity(models.len());
        for m in models {
            let key = ModelKey::from_bytes(&m.key).map_err(|e| self.protocol(e.to_string()))?;
            let parent = match m.parent {
                Some(p) => Some(ModelKey::from_bytes(&p).map_err(|e| self.protocol(e.to_string()))?),
                None => None,
            };
            let values: Values = serde_json::from_str(&m.values).map_err(|e| self.protocol(e.to_string()))?;
            pending.push((key, parent, values.identifiers, values.attributes));
        }
        let fetched_keys: HashSet<Vec<u8>> = pending.iter().map(|(k, ..)| k.to_bytes()).collect();
        let fetched = pending.len();
        // Updates in place where the parent is the same; else out and in again.
        let mut inserts = Vec::new();
        for (key, parent, ids, attrs) in pending {
            let (t, uid) = (key.model_type().to_string(), key.unique_id());
            let same_parent = self.image.get_dyn(&key).is_ok()
                && self.image.parent(&key).ok().flatten().map(|p| p.to_bytes())
                    == parent.as_ref().map(ModelKey::to_bytes);
            if same_parent {
                self.image
                    .update_attributes(&t, &uid, diffsync::AttrSource::Values(&attrs))
                    .map_err(|e| self.model(e))?;
            } else {
                if self.image.get_dyn(&key).is_ok() {
                    self.image.remove(&t, &uid, false).map_err(|e| self.model(e))?;
                }
                inserts.push((key, parent, ids, attrs));
            }
        }
        // Parents first: insert what has its parent in place, until nothing moves.
        while !inserts.is_empty() {
            let before = inserts.len();
            let mut waiting = Vec::new();
            for (key, parent, ids, attrs) in inserts {
                if let Some(p) = &parent
                    && self.image.get_dyn(p).is_err()
                {
                    waiting.push((key, parent, ids, attrs));
                    continue;
                }
                let model = self
                    .image
                    .build(key.model_type(), &ids, &attrs)
                    .map_err(|e| self.model(e))?;
                let parent = parent.as_ref().map(|p| (p.model_type().to_string(), p.unique_id()));
                self.image
                    .insert_boxed(model, parent.as_ref().map(|(t, k)| (t.as_str(), k.as_str())))
                    .map_err(|e| self.model(e))?;
            }
            if waiting.len() == before {
                let (key, parent, ..) = &waiting[0];
                return Err(self.protocol(format!(
                    "{key} names a parent {} that neither side holds",
                    parent.as_ref().map(ModelKey::to_string).unwrap_or_default()
                )));
            }
            inserts = waiting;
        }
        let mut removed = 0;
        for key in stale.iter().filter(|k| !fetched_keys.contains(*k)) {
            let key = ModelKey::from_bytes(key).map_err(|e| self.protocol(e.to_string()))?;
            if self.image.get_dyn(&key).is_ok() {
                self.image
                    .remove(key.model_type(), &key.unique_id(), false)
                    .map_err(|e| self.model(e))?;
                removed += 1;
            }
        }
        Ok((fetched, removed))
    }

    fn call(&mut self, request: &Request) -> Result<Response, PeerError> {
        let frame = proto::encode(request, true);
        let reply = self.transport.call(&frame).map_err(|source| PeerError::Transport {
            peer: self.name.clone(),
            source,
        })?;
        self.traffic.count(&frame, &reply);
        match proto::decode::<Response>(&reply).map_err(|e| self.protocol(e.to_string()))? {
            Response::Refused(refusal) => Err(PeerError::Refused {
                peer: self.name.clone(),
                refusal,
            }),
            response => Ok(response),
        }
    }

    fn unexpected(&self, response: &Response) -> PeerError {
        let what = match response {
            Response::Welcome { .. } => "a welcome",
            Response::Reconcile(_) => "a reconcile round",
            Response::Models(_) => "models",
            Response::Refused(_) => "a refusal",
        };
        self.protocol(format!("{what} where another answer was due"))
    }

    fn protocol(&self, message: impl Into<String>) -> PeerError {
        PeerError::Protocol {
            peer: self.name.clone(),
            message: message.into(),
        }
    }

    fn model(&self, source: StoreError) -> PeerError {
        PeerError::Model {
            peer: self.name.clone(),
            source: Box::new(source),
        }
    }
}

/// A model's values as they travel.
#[derive(Deserialize)]
struct Values {
    identifiers: Attrs,
    attributes: Attrs,
}

impl<T: Transport> Adapter for RemotePeer<T> {
    type Store = LocalStore;

    fn name(&self) -> &str {
        &self.name
    }
    fn store(&self) -> &LocalStore {
        &self.image
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.image
    }
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        Err(HookError::Failed(
            format!(
                "{} {}: peer {:?} is read here, not written (pushing to a peer is not built yet)",
                change.model_type(),
                change.key(),
                self.name
            )
            .into(),
        ))
    }
    /// Pulls: the image becomes the peer's store as it is now.
    fn refresh(&mut self) -> diffsync::Result<()> {
        self.pull().map(drop).map_err(|e| {
            diffsync::Error::from(StoreError::Backend {
                store: self.name.clone(),
                model_type: String::new(),
                key: String::new(),
                source: Box::new(e),
            })
        })
    }
}
