//! A remote peer as an adapter: an image of its store, brought up to date
//! by range-based reconciliation.

use std::collections::HashSet;

use diffsync::{Action, Adapter, Attrs, Batch, BoxError, Change, HookError, LocalStore, ModelKey, Sink, StoreError};
use serde::Deserialize;

use crate::identity::{Identity, PublicKey, Rights};
use crate::index::{Index, RangePrint, ShortId, session_seed};
use crate::proto::{
    self, Call, Cursor, HASH, Hello, Push, Pushed, Refusal, Request, Response, Sealed, VERSION, WireChange, WireModel,
};
use crate::recon::{Config, Differences, Malformed, Side};
use crate::server::schemas_of;
use crate::state::{KnownPeer, LastSync, StateError};
use crate::transport::{Counted, Traffic, Transport};

/// Ids asked for in one fetch (512 KiB of them; the server fills its
/// answer to [`proto::ANSWER_FILL`] and says how many it took).
const FETCH_BATCH: usize = 65_536;
/// Bytes of changes sent in one push at most (well below what a call may
/// unpack to, [`proto::MAX_CALL`]).
const PUSH_BYTES: usize = proto::MAX_CALL / 4;
/// Times a session is opened before a pull or push gives up (a lost
/// answer, a challenge that expired on the way).
const OPEN_ATTEMPTS: usize = 3;
/// Changes sent in one push at most: a large sync goes as several pushes,
/// one at a time, so neither side holds more than one batch in flight.
pub const PUSH_BATCH: usize = 2_000;
/// Times a push is sent again after its answer was lost (same batch id:
/// the server applies it once).
const PUSH_ATTEMPTS: usize = 3;
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
    /// The server is not who it was (its key differs from the pinned one),
    /// or its proof of its key is wrong: nothing was sent to it.
    #[error("peer {peer:?} is not the replica expected: {message}")]
    Impostor {
        /// The peer's name.
        peer: String,
        /// What did not match.
        message: String,
    },
    /// The peer's record (pinned key, queued batches, cursor) cannot be
    /// read or written: a batch is not sent unless it is queued first.
    #[error("peer {peer:?}: its record cannot be kept")]
    State {
        /// The peer's name.
        peer: String,
        /// The record's error.
        #[source]
        source: StateError,
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

/// A batch from an earlier run (or an earlier failed push) that was sent
/// again, and what the peer answered for its changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resent {
    /// The batch's id.
    pub batch: u64,
    /// Each change's outcome, in the batch's order.
    pub outcomes: Vec<Pushed>,
}

/// A diffsync process on another machine, as an adapter: its store is an
/// image of the peer's, which [`pull`](RemotePeer::pull) (and the
/// adapter's [`refresh`](Adapter::refresh)) brings up to date by
/// reconciling key ranges, so the bytes moved grow with the differences.
/// Start the image as a copy of the store it will be synced with, and the
/// first pull moves only what differs. Then any driver works:
/// `local.sync_from(&peer)`, `diff_from`, a loop's source.
///
/// Written to as any adapter is (it is the target of `sync_from`, a side of
/// a two-way reconcile): a sync's changes go to the peer as one batch,
/// which the peer applies through its own adapter's hooks, each change only
/// if the peer still holds what this image holds for its key (else the
/// change fails: someone wrote it since the last pull; pull and diff
/// again). A batch whose answer is lost is sent again with its id, and the
/// peer answers it from memory instead of applying it twice. Writing needs
/// the `write` right.
pub struct RemotePeer<T> {
    name: String,
    image: LocalStore,
    /// The transport, counted under the peer's name.
    transport: Counted<T>,
    identity: Identity,
    /// The server's key: pinned by the caller, or as first seen.
    server_key: Option<PublicKey>,
    /// The open session, renewed by each pull (a new one when the server
    /// forgot it).
    session: Option<Session>,
    rights: Rights,
    /// The record kept across runs, if any.
    known: Option<KnownPeer>,
    /// Queued batches sent again, with their answers.
    resent: Vec<Resent>,
}

/// An open session, as the client keeps it.
struct Session {
    id: u64,
    transcript: Vec<u8>,
    seq: u64,
    seed: u64,
    /// Whether the server takes compressed call bodies.
    zstd: bool,
    /// The server's key, that signs every answer.
    server: PublicKey,
    /// The fingerprint of the server's snapshot.
    whole: RangePrint,
    /// The session was opened for the pull at hand, so its snapshot (the
    /// welcome's) is current: the first round need not renew it.
    fresh: bool,
    /// The model types the server lets this client see.
    types: Vec<String>,
}

/// Whether an error says the session is gone (the server restarted or
/// evicted it, or it used its budget): a new one may do.
fn session_lost(e: &PeerError) -> bool {
    matches!(
        e,
        PeerError::Refused {
            refusal: Refusal::UnknownSession(_) | Refusal::Spent { .. },
            ..
        }
    )
}

impl<T: Transport> RemotePeer<T> {
    /// A peer named `name` reached over `transport`, with the image it
    /// starts from (its model types registered), proving itself with
    /// `identity`. Opens a session, so a peer that does not allow this key,
    /// or whose protocol or schemas do not match, is refused here. The
    /// server's key is taken as first seen and held to for later sessions;
    /// [`connect_pinned`](RemotePeer::connect_pinned) names it up front.
    pub fn connect(
        name: impl Into<String>,
        image: LocalStore,
        transport: T,
        identity: Identity,
    ) -> Result<RemotePeer<T>, PeerError> {
        RemotePeer::start(name.into(), image, transport, identity, None)
    }

    /// Like [`connect`](RemotePeer::connect), talking only to the server
    /// that holds `server_key`'s private half.
    pub fn connect_pinned(
        name: impl Into<String>,
        image: LocalStore,
        transport: T,
        identity: Identity,
        server_key: PublicKey,
    ) -> Result<RemotePeer<T>, PeerError> {
        RemotePeer::start(name.into(), image, transport, identity, Some(server_key))
    }

    /// Like [`connect`](RemotePeer::connect), for a peer remembered in a
    /// [`StateDir`](crate::state::StateDir): its key is pinned (the one in
    /// the record, or the one seen now, saved for next time), its
    /// cursor is where a [`PeerFeed`] resumes, each pull and push is
    /// recorded as its last sync, and every batch is queued in the record
    /// before it is sent and taken out once answered. Batches an earlier
    /// run sent without an answer (a crash, a lost connection) are sent
    /// again here, first, with their ids: the peer applies each once and
    /// [`resent`](RemotePeer::resent) tells what it answered.
    pub fn connect_known(
        known: KnownPeer,
        image: LocalStore,
        transport: T,
        identity: Identity,
    ) -> Result<RemotePeer<T>, PeerError> {
        let (name, key) = (known.name.clone(), known.key);
        let mut peer = RemotePeer {
            name: name.clone(),
            image,
            transport: Counted::client(transport, name),
            identity,
            server_key: key,
            session: None,
            rights: Rights::default(),
            known: Some(known),
            resent: Vec::new(),
        };
        peer.session = Some(peer.open()?);
        if key.is_none() {
            let seen = peer.server_key;
            peer.remember(|k| k.key = seen)?;
        }
        peer.resend_queued()?;
        Ok(peer)
    }

    fn start(
        name: String,
        image: LocalStore,
        transport: T,
        identity: Identity,
        server_key: Option<PublicKey>,
    ) -> Result<RemotePeer<T>, PeerError> {
        let mut peer = RemotePeer {
            name: name.clone(),
            image,
            transport: Counted::client(transport, name),
            identity,
            server_key,
            session: None,
            rights: Rights::default(),
            known: None,
            resent: Vec::new(),
        };
        peer.session = Some(peer.open()?);
        Ok(peer)
    }

    /// What the server lets this client do.
    pub fn rights(&self) -> &Rights {
        &self.rights
    }

    /// The image of the peer's store.
    pub fn image(&self) -> &LocalStore {
        &self.image
    }

    /// The record kept across runs ([`connect_known`](RemotePeer::connect_known)).
    pub fn known(&self) -> Option<&KnownPeer> {
        self.known.as_ref()
    }

    /// Batches of earlier runs or failed pushes that were sent again, with
    /// the peer's answers, oldest first.
    pub fn resent(&self) -> &[Resent] {
        &self.resent
    }

    /// Everything that went over the transport so far.
    pub fn traffic(&self) -> Traffic {
        self.transport.total()
    }

    /// Brings the image up to date with the peer: reconciles, fetches what
    /// differs, removes what the peer no longer holds.
    pub fn pull(&mut self) -> Result<Pulled, PeerError> {
        let result = self.pull_now();
        let last = match &result {
            Ok(p) => LastSync::now(true, format!("pulled: {} fetched, {} removed", p.fetched, p.removed)),
            Err(e) => LastSync::now(false, format!("pull failed: {}", diffsync::Chain(e))),
        };
        let recorded = self.remember(|k| k.last = Some(last.clone()));
        let pulled = result?;
        recorded?;
        Ok(pulled)
    }

    fn pull_now(&mut self) -> Result<Pulled, PeerError> {
        let before = self.traffic();
        let mut pulled = Pulled::default();
        let mut session = match self.session.take() {
            // Its snapshot is as old as the session: renewed by the first round.
            Some(s) => Session { fresh: false, ..s },
            None => self.open()?,
        };
        let mut result = self.pull_in(&mut session, &mut pulled);
        if result.as_ref().is_err_and(session_lost) {
            // The peer forgot the session (a restart, an eviction): a new
            // one, and the pull once more.
            session = self.open()?;
            result = self.pull_in(&mut session, &mut pulled);
        }
        self.session = Some(session);
        result?;
        pulled.traffic = self.traffic().since(before);
        Ok(pulled)
    }

    /// Reconciles with the peer's snapshot (a new one, unless the session
    /// was just opened) and takes what differs, until the image equals
    /// the snapshot: one round trip when nothing differs; a model that
    /// changed on the peer between the snapshot and the fetch takes
    /// another pass.
    fn pull_in(&mut self, session: &mut Session, pulled: &mut Pulled) -> Result<(), PeerError> {
        let keep = |types: &[String], t: &str| types.iter().any(|u| u == t);
        if session.fresh && Index::whole_of(&self.image, session.seed, |t| keep(&session.types, t)) == session.whole {
            // The next pull renews the snapshot.
            session.fresh = false;
            return Ok(());
        }
        loop {
            let index = Index::build(&self.image, session.seed, |t| keep(&session.types, t));
            let diff = self.reconcile(session, &index)?;
            if diff.have.is_empty() && diff.need.is_empty() {
                return Ok(());
            }
            if pulled.passes == PASSES {
                return Err(self.protocol(format!(
                    "the image still differs from the peer after {PASSES} reconciliations"
                )));
            }
            pulled.passes += 1;
            let mut models = Vec::new();
            let mut rest: &[ShortId] = &diff.need;
            while !rest.is_empty() {
                let ids = &rest[..rest.len().min(FETCH_BATCH)];
                let answered = match self.seal(session, &Call::Fetch(ids.to_vec()))? {
                    Response::Models {
                        models: batch,
                        answered,
                    } => {
                        models.extend(batch);
                        answered as usize
                    }
                    other => return Err(self.unexpected(&other)),
                };
                if answered == 0 || answered > ids.len() {
                    return Err(self.protocol(format!("a fetch of {} ids answered {answered}", ids.len())));
                }
                rest = &rest[answered..];
            }
            let stale: Vec<Vec<u8>> = diff.have.iter().map(|&p| index.items()[p].key.clone()).collect();
            drop(index);
            let (fetched, removed) = self.apply(models, stale)?;
            pulled.fetched += fetched;
            pulled.removed += removed;
            if Index::whole_of(&self.image, session.seed, |t| keep(&session.types, t)) == session.whole {
                return Ok(());
            }
        }
    }

    /// Opens a session: hello, the server's proof, ours, the welcome. A
    /// handshake whose answer is lost, or whose challenge expired on the
    /// way, is tried again (after a jittered wait).
    fn open(&mut self) -> Result<Session, PeerError> {
        let mut waits = backon::BackoffBuilder::build(
            backon::ExponentialBuilder::default()
                .with_jitter()
                .with_min_delay(std::time::Duration::from_millis(20))
                .with_max_delay(std::time::Duration::from_secs(1))
                .with_max_times(OPEN_ATTEMPTS - 1),
        );
        loop {
            match self.handshake() {
                Err(e) if matches!(e, PeerError::Transport { .. }) || session_lost(&e) => match waits.next() {
                    Some(wait) => {
                        tracing::debug!(peer = %self.name, error = %diffsync::Chain(&e), "handshake failed; again");
                        std::thread::sleep(wait);
                    }
                    None => return Err(e),
                },
                result => return result,
            }
        }
    }

    fn handshake(&mut self) -> Result<Session, PeerError> {
        let nonce = fastrand::u64(..);
        let key = self.identity.public_key();
        let hello = Hello {
            version: VERSION,
            hash: HASH.into(),
            capabilities: vec!["zstd".into()],
            nonce,
            key,
        };
        // Nothing the server sends is trusted before its proof: an answer
        // larger than a handshake's is not even read.
        let (id, server_nonce, server_key, issued, proof, zstd) =
            match self.call(&Request::Hello(hello.clone()), true)? {
                Response::Challenge {
                    session,
                    nonce,
                    key,
                    issued,
                    proof,
                    capabilities,
                } => (
                    session,
                    nonce,
                    key,
                    issued,
                    proof,
                    capabilities.iter().any(|c| c == "zstd"),
                ),
                Response::Refused(refusal) => return Err(self.refused(refusal)),
                other => return Err(self.unexpected(&other)),
            };
        if let Some(pinned) = self.server_key
            && pinned != server_key
        {
            return Err(self.impostor(format!("its key is {server_key}, not {pinned}")));
        }
        let transcript = proto::transcript(id, nonce, server_nonce, &key, &server_key);
        if !server_key.verifies(&proto::to_sign(b"server", &transcript, None), &proof) {
            return Err(self.impostor("its proof of its key is wrong".into()));
        }
        self.server_key = Some(server_key);
        let auth = Request::Auth {
            session: id,
            hello,
            nonce: server_nonce,
            issued,
            proof: self.identity.sign(&proto::to_sign(b"client", &transcript, None)),
            schemas: schemas_of(&self.image),
        };
        let answer = self.call(&auth, false)?;
        match self.verified(answer, &transcript, &server_key, 0)? {
            Response::Welcome {
                replica,
                schemas,
                rights,
                whole,
            } => {
                let ours = schemas_of(&self.image);
                for (t, fp) in &schemas {
                    if ours.iter().any(|(u, mine)| u == t && mine != fp) {
                        return Err(PeerError::Refused {
                            peer: self.name.clone(),
                            refusal: Refusal::Schema {
                                model_type: t.clone(),
                                replica,
                            },
                        });
                    }
                }
                self.rights = rights;
                Ok(Session {
                    id,
                    transcript,
                    seq: 0,
                    seed: session_seed(nonce, server_nonce),
                    zstd,
                    server: server_key,
                    whole,
                    fresh: true,
                    types: schemas.into_iter().map(|(t, _)| t).collect(),
                })
            }
            Response::Refused(refusal) => Err(self.refused(refusal)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// An answer of a session, once its signature verifies: the server's
    /// over the transcript, the call's number and the body. Only a refusal
    /// that changes nothing (the session is unknown) may come unsigned;
    /// anything else unsigned, or signed wrong, is a relay's or an
    /// impostor's, and refused.
    fn verified(
        &self,
        answer: Response,
        transcript: &[u8],
        server: &PublicKey,
        seq: u64,
    ) -> Result<Response, PeerError> {
        match answer {
            Response::Signed(signed) => {
                let message = proto::to_sign(b"answer", transcript, Some((signed.seq, &signed.body)));
                if signed.seq != seq || !server.verifies(&message, &signed.proof) {
                    return Err(self.impostor(format!("its answer to call {seq} is not signed by its key")));
                }
                match proto::decode_within::<Response>(&signed.body, proto::MAX_ANSWER)
                    .map_err(|e| self.protocol(e.to_string()))?
                {
                    Response::Refused(refusal) => Err(self.refused(refusal)),
                    Response::Signed(_) => Err(self.protocol("a signed answer inside a signed answer")),
                    response => Ok(response),
                }
            }
            Response::Refused(refusal @ Refusal::UnknownSession(_)) => Err(self.refused(refusal)),
            Response::Refused(refusal) if seq == 0 => Err(self.refused(refusal)),
            other => Err(self.impostor(format!("{} came unsigned where a signed answer was due", what(&other)))),
        }
    }

    /// Sends a call of an open session, numbered and signed; its answer,
    /// verified.
    fn seal(&mut self, session: &mut Session, call: &Call) -> Result<Response, PeerError> {
        let body = proto::encode(call, session.zstd);
        let mut again = true;
        loop {
            session.seq += 1;
            let proof = self.identity.sign(&proto::to_sign(
                b"call",
                &session.transcript,
                Some((session.seq, &body)),
            ));
            let sealed = Sealed {
                session: session.id,
                seq: session.seq,
                body: body.clone(),
                proof,
            };
            let answer = self.call(&Request::Sealed(sealed), false)?;
            match self.verified(answer, &session.transcript, &session.server, session.seq) {
                // The transport sent the frame again after a lost answer
                // and the peer had it already. Every call is safe to ask
                // again under a new number: rounds and fetches read (a
                // renewal takes a snapshot), a push is answered by batch id.
                Err(PeerError::Refused {
                    refusal: Refusal::Replay { .. },
                    ..
                }) if again => again = false,
                result => return result,
            }
        }
    }

    /// Reconciles the image's index with the session's snapshot (renewed
    /// first unless the session is fresh): the differences.
    fn reconcile(&mut self, session: &mut Session, index: &Index) -> Result<Differences, PeerError> {
        let side = Side::initiator(index, Config::for_size(index.len()));
        let mut diff = Differences::default();
        let mut message = side.initiate();
        let mut renew = !session.fresh;
        session.fresh = false;
        loop {
            let reply = match self.seal(session, &Call::Reconcile { renew, message })? {
                Response::Reconcile { whole, message } => {
                    if let Some(whole) = whole {
                        session.whole = whole;
                    } else if renew {
                        return Err(self.protocol("a renewed round without its snapshot's fingerprint"));
                    }
                    message
                }
                other => return Err(self.unexpected(&other)),
            };
            renew = false;
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
            let same_parent = self.image.get_dyn(&key).is_ok()
                && self.image.parent(&key).ok().flatten().map(|p| p.to_bytes())
                    == parent.as_ref().map(ModelKey::to_bytes);
            if same_parent {
                self.image
                    .update_attributes(&key, diffsync::AttrSource::Values(&attrs))
                    .map_err(|e| self.model(e))?;
            } else {
                if self.image.get_dyn(&key).is_ok() {
                    self.image.remove(&key, false).map_err(|e| self.model(e))?;
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
                self.image
                    .insert_boxed(model, parent.as_ref())
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
                self.image.remove(&key, false).map_err(|e| self.model(e))?;
                removed += 1;
            }
        }
        Ok((fetched, removed))
    }

    /// Sends a batch (queued batches first, when a record is kept); the
    /// outcome of each change.
    fn push(&mut self, continue_on_failure: bool, changes: Vec<WireChange>) -> Result<Vec<Pushed>, HookError> {
        let fatal = |e: PeerError| HookError::Fatal(Box::new(e));
        let push = Push {
            batch: fastrand::u64(..),
            continue_on_failure,
            changes,
        };
        if self.known.is_some() {
            self.resend_queued().map_err(fatal)?;
            self.remember(|k| KnownPeer::queue(k, &push)).map_err(fatal)?;
        }
        match self.send(&push) {
            Ok(answer) => {
                let applied = answer.iter().filter(|p| matches!(p, Pushed::Applied)).count();
                let last = LastSync::now(true, format!("pushed: {applied} of {} applied", answer.len()));
                if let Err(e) = self.remember(|k| {
                    KnownPeer::answered(k, push.batch);
                    k.last = Some(last.clone());
                }) {
                    // Answered, so it stays answered: sent again next time,
                    // the peer answers it from memory.
                    tracing::warn!(peer = %self.name, error = %diffsync::Chain(&e), "an answered batch stays queued");
                }
                Ok(answer)
            }
            Err(e) => {
                let last = LastSync::now(false, format!("push failed: {}", diffsync::Chain(&e)));
                let _ = self.remember(|k| k.last = Some(last.clone()));
                // No answer came (the transport failed after sending): the
                // peer may have applied the batch; the next pull tells.
                Err(match e {
                    PeerError::Transport { .. } => HookError::unknown(e),
                    e => fatal(e),
                })
            }
        }
    }

    /// Sends the record's queued batches again, oldest first. A batch the
    /// peer refuses outright (the peer no longer lets this replica write)
    /// is answered too: its changes are refused, and it leaves the queue.
    fn resend_queued(&mut self) -> Result<(), PeerError> {
        let queued: Vec<Push> = self
            .known
            .as_ref()
            .map(|k| k.pending_batches().to_vec())
            .unwrap_or_default();
        for push in queued {
            let outcomes = match self.send(&push) {
                Ok(outcomes) => outcomes,
                Err(PeerError::Refused { refusal, .. }) => {
                    vec![Pushed::Refused(refusal.to_string()); push.changes.len()]
                }
                Err(e) => return Err(e),
            };
            tracing::info!(peer = %self.name, batch = push.batch, "a queued batch was answered");
            self.remember(|k| KnownPeer::answered(k, push.batch))?;
            self.resent.push(Resent {
                batch: push.batch,
                outcomes,
            });
        }
        Ok(())
    }

    /// Sends a batch; after a lost answer, sends it again with the same id
    /// (after a jittered wait).
    fn send(&mut self, push: &Push) -> Result<Vec<Pushed>, PeerError> {
        let mut waits = backon::BackoffBuilder::build(
            backon::ExponentialBuilder::default()
                .with_jitter()
                .with_min_delay(std::time::Duration::from_millis(20))
                .with_max_delay(std::time::Duration::from_secs(1))
                .with_max_times(PUSH_ATTEMPTS - 1),
        );
        loop {
            let result = match self.session.take() {
                Some(s) => Ok(s),
                None => self.open(),
            }
            .and_then(|mut session| {
                let result = self.seal(&mut session, &Call::Push(push.clone()));
                self.session = Some(session);
                result
            });
            let error = match result {
                Ok(Response::Pushed(answer)) => return Ok(answer),
                Ok(other) => return Err(self.unexpected(&other)),
                // The connection failed, or the peer forgot the session
                // (a restart): a new session, the same batch id.
                Err(e) if session_lost(&e) || matches!(e, PeerError::Transport { .. }) => {
                    self.session = None;
                    e
                }
                Err(e) => return Err(e),
            };
            match waits.next() {
                Some(wait) => std::thread::sleep(wait),
                None => return Err(error),
            }
        }
    }

    /// Changes the kept record, if there is one, and saves it.
    fn remember(&mut self, change: impl Fn(&mut KnownPeer)) -> Result<(), PeerError> {
        match &mut self.known {
            Some(known) => known.update(change).map_err(|source| PeerError::State {
                peer: self.name.clone(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// One change as it travels, with the digest this image holds for it.
    fn wire_change(&self, change: &Change<'_>) -> Result<WireChange, HookError> {
        let (t, uid) = (change.model_type(), change.key());
        let values =
            |attrs: &Attrs| serde_json::json!({"identifiers": change.identifiers(), "attributes": attrs}).to_string();
        let (action, values) = match change.action {
            Action::Create => ("create", values(change.attrs())),
            Action::Update => ("update", values(change.attrs())),
            Action::Delete => ("delete", String::new()),
            other => return Err(HookError::Failed(format!("{t} {uid}: cannot push a {other}").into())),
        };
        Ok(WireChange {
            action: action.into(),
            key: change.model_key().to_bytes(),
            parent: change.parent().map(|p| p.to_bytes()),
            values,
            expected: self.image.digest(change.model_key()).map(|d| d.0.to_le_bytes()),
            subtree: change.removes_subtree(),
        })
    }

    /// Sends a request and reads the answer's envelope (nothing in it is
    /// unpacked; a handshake's answer may be no larger than a handshake).
    fn call(&mut self, request: &Request, handshake: bool) -> Result<Response, PeerError> {
        // Requests go as they are (their call bodies are compressed):
        // the server reads their head before it takes in a large body.
        let frame = proto::encode(request, false);
        let reply = self.transport.call(&frame).map_err(|source| PeerError::Transport {
            peer: self.name.clone(),
            source,
        })?;
        if handshake && reply.len() > proto::HANDSHAKE_MAX {
            return Err(self.protocol(format!("a handshake answer of {} bytes", reply.len())));
        }
        proto::decode_response(&reply).map_err(|e| self.protocol(e.to_string()))
    }

    fn refused(&self, refusal: Refusal) -> PeerError {
        PeerError::Refused {
            peer: self.name.clone(),
            refusal,
        }
    }

    fn unexpected(&self, response: &Response) -> PeerError {
        self.protocol(format!("{} where another answer was due", what(response)))
    }

    fn protocol(&self, message: impl Into<String>) -> PeerError {
        PeerError::Protocol {
            peer: self.name.clone(),
            message: message.into(),
        }
    }

    fn impostor(&self, message: String) -> PeerError {
        PeerError::Impostor {
            peer: self.name.clone(),
            message,
        }
    }

    fn model(&self, source: StoreError) -> PeerError {
        PeerError::Model {
            peer: self.name.clone(),
            source: Box::new(source),
        }
    }
}

/// A peer's change events, as a feed for a loop
/// ([`diffsync_live`](https://docs.rs/diffsync-live)): each poll is a long
/// poll of the events the peer's [`Server::with_feed`](crate::Server::with_feed)
/// relays, from where the last one ended. A peer that restarted, or one
/// whose buffer overflowed, says so and the poll reports a gap (the loop
/// then runs a full pass). Uses a session of its own: connect a second
/// [`RemotePeer`] for it.
pub struct PeerFeed<T> {
    peer: RemotePeer<T>,
    cursor: Option<Cursor>,
}

impl<T: Transport> PeerFeed<T> {
    /// Follows the peer's changes from now on.
    /// A peer connected with [`RemotePeer::connect_known`] resumes from
    /// the cursor in its record, and each poll moves it there: after a
    /// restart the feed goes on where it left off (or reports a gap, when
    /// the peer cannot vouch for what came in between).
    pub fn new(peer: RemotePeer<T>) -> PeerFeed<T> {
        let cursor = peer.known.as_ref().and_then(|k| k.cursor);
        PeerFeed { peer, cursor }
    }
}

impl<T: Transport + Send> diffsync::ChangeFeed for PeerFeed<T> {
    fn poll(&mut self, max: usize, wait: std::time::Duration) -> Result<diffsync::feed::FeedBatch, BoxError> {
        let call = Call::Changes {
            since: self.cursor,
            max: u32::try_from(max).unwrap_or(u32::MAX),
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        };
        let mut session = match self.peer.session.take() {
            Some(s) => s,
            None => self.peer.open()?,
        };
        let answer = self.peer.seal(&mut session, &call);
        self.peer.session = Some(session);
        let answer = match answer {
            Err(e) if session_lost(&e) => {
                // The peer forgot the session (a restart): a new one, and
                // the cursor tells the peer to report what it cannot vouch for.
                let mut session = self.peer.open()?;
                let answer = self.peer.seal(&mut session, &call);
                self.peer.session = Some(session);
                answer?
            }
            other => other?,
        };
        match answer {
            Response::Changes { events, next, gap } => {
                let events = events
                    .iter()
                    .map(|e| serde_json::from_str(e))
                    .collect::<Result<Vec<diffsync::ChangeEvent>, _>>()?;
                if self.cursor != Some(next) {
                    self.peer.remember(|k| k.cursor = Some(next))?;
                }
                self.cursor = Some(next);
                Ok(diffsync::feed::FeedBatch { events, gap })
            }
            other => Err(Box::new(self.peer.unexpected(&other))),
        }
    }

    fn position(&self) -> Option<diffsync::feed::Position> {
        self.cursor
            .map(|c| diffsync::feed::Position::new(format!("{}:{}", c.epoch, c.seq)))
    }
}

/// About what a change takes in a push.
fn wire_size(change: &WireChange) -> usize {
    change.key.len() + change.values.len() + change.parent.as_ref().map_or(0, Vec::len) + 64
}

/// What an answer is, for a message.
fn what(response: &Response) -> &'static str {
    match response {
        Response::Challenge { .. } => "a challenge",
        Response::Pushed(_) => "a push's outcomes",
        Response::Changes { .. } => "change events",
        Response::Welcome { .. } => "a welcome",
        Response::Reconcile { .. } => "a reconcile round",
        Response::Models { .. } => "models",
        Response::Refused(_) => "a refusal",
        Response::Signed(_) => "a signed answer",
    }
}

/// A change's outcome as the hooks report it.
fn outcome(pushed: Pushed) -> Result<(), HookError> {
    match pushed {
        Pushed::Applied => Ok(()),
        Pushed::Forbidden { key, model_type } => Err(HookError::Failed(
            format!("{key}: this replica may not write {model_type:?} on the peer").into(),
        )),
        Pushed::Refused(m) | Pushed::Failed(m) => Err(HookError::Failed(m.into())),
        Pushed::Skipped(m) => Err(HookError::soft(m)),
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
    /// Pulls: the image becomes the peer's store as it is now (the named
    /// models are among what a pull brings; it brings all that differs).
    fn reread(&mut self, changed: &[diffsync::ChangeEvent]) -> diffsync::Result<()> {
        let _ = changed;
        self.refresh()
    }
    /// Pulls: the image becomes the peer's store as it is now.
    fn refresh(&mut self) -> diffsync::Result<()> {
        self.pull().map(drop).map_err(|e| {
            diffsync::Error::from(StoreError::Backend {
                store: self.name.clone(),
                key: None,
                source: Box::new(e),
            })
        })
    }
}
impl<T: Transport> Sink for RemotePeer<T> {
    /// One change alone: a batch of one.
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        let wire = self.wire_change(change)?;
        if wire_size(&wire) > PUSH_BYTES {
            let message = format!("{} bytes, more than a push may carry ({PUSH_BYTES})", wire_size(&wire));
            return Err(HookError::Failed(message.into()));
        }
        let answer = self.push(false, vec![wire])?;
        match answer.into_iter().next() {
            Some(pushed) => outcome(pushed),
            None => Err(HookError::fatal("the peer answered no outcome")),
        }
    }
    /// The batch's changes in pushes of at most [`PUSH_BATCH`], one after
    /// the other; each change gets the peer's outcome, and a change whose
    /// parent failed in an earlier push is not sent.
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        let mut i = 0;
        while i < batch.len() {
            let (mut sent, mut changes, mut bytes) = (Vec::new(), Vec::new(), 0);
            while i < batch.len() && changes.len() < PUSH_BATCH && bytes < PUSH_BYTES {
                if batch.should_apply(i) {
                    match self.wire_change(&batch.changes()[i]) {
                        Ok(wire) if wire_size(&wire) > PUSH_BYTES => {
                            let message =
                                format!("{} bytes, more than a push may carry ({PUSH_BYTES})", wire_size(&wire));
                            batch.set_outcome(i, Err(HookError::Failed(message.into())));
                        }
                        Ok(wire) => {
                            bytes += wire_size(&wire);
                            changes.push(wire);
                            sent.push(i);
                            batch.stage(i);
                        }
                        Err(e) => batch.set_outcome(i, Err(e)),
                    }
                }
                i += 1;
            }
            if sent.is_empty() {
                continue;
            }
            let answer = self.push(batch.continue_on_failure(), changes)?;
            if answer.len() != sent.len() {
                return Err(HookError::fatal(format!(
                    "the peer answered {} outcomes for {} changes",
                    answer.len(),
                    sent.len()
                )));
            }
            for (i, pushed) in sent.into_iter().zip(answer) {
                batch.set_outcome(i, outcome(pushed));
            }
        }
        Ok(())
    }
}
