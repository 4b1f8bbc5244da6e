//! The serving side: answers handshakes, reconcile rounds and fetches from
//! an adapter's store, for the peers it allows.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use diffsync::feed::ChangeFeed;
use diffsync::{
    AdapterExt, Attrs, Chain, DiffFlags, Error, LocalStore, MemoryAdapter, ModelKey, Options, Outcome, Sink, Store,
    SyncError,
};

use crate::identity::{Identity, Peers, PublicKey, Rights};
use crate::index::{Index, ShortId, session_seed, short};
use crate::proto::{
    self, Call, Cursor, HASH, Hello, Push, Pushed, Refusal, Request, Response, Sealed, VERSION, WireChange, WireModel,
};
use crate::recon::{Config, Differences, Side};
use crate::transport::Transport;

/// Open sessions kept at once; the least recently used goes first. Only
/// an allowed peer opens one (a hello keeps nothing on the server).
const SESSIONS: usize = 64;
/// Open sessions one peer keeps at once (each holds an index of the
/// store): its least recently used goes first.
const SESSIONS_PER_PEER: usize = 4;
/// Seconds an auth may come after its challenge.
const CHALLENGE_TTL: u64 = 120;
/// Pushed batches whose answers are kept for a client that sends one again.
const BATCHES: usize = 256;
/// Change events kept for peers that follow them; a peer further behind
/// is told of a gap.
const EVENTS: usize = 100_000;

/// The served system's change events, numbered, for peers to follow.
struct Relay {
    feed: Box<dyn ChangeFeed>,
    epoch: u64,
    /// Number of the oldest event kept.
    start: u64,
    /// Events before this number may be lost (the feed had a gap).
    lost_before: u64,
    events: VecDeque<(String, String)>,
}

impl Relay {
    fn next(&self) -> u64 {
        self.start + self.events.len() as u64
    }

    /// Takes what the feed has (waiting up to `wait` when nothing is new
    /// after `since`).
    fn fill(&mut self, since: u64, wait: std::time::Duration) -> Result<(), String> {
        let mut wait = if since < self.next() {
            std::time::Duration::ZERO
        } else {
            wait
        };
        loop {
            let batch = self.feed.poll(10_000, wait).map_err(|e| Chain(&*e).to_string())?;
            wait = std::time::Duration::ZERO;
            if batch.gap {
                self.lost_before = self.next();
            }
            if batch.events.is_empty() {
                return Ok(());
            }
            for e in &batch.events {
                let json = serde_json::to_string(e).map_err(|e| e.to_string())?;
                self.events.push_back((e.model_type().to_string(), json));
            }
            while self.events.len() > EVENTS {
                self.events.pop_front();
                self.start += 1;
            }
        }
    }
}

/// An open session: the client proved its key. It holds the index of the
/// store as it was (a session reconciles one snapshot; the next round
/// that renews it sees later writes).
struct Session {
    id: u64,
    client: PublicKey,
    transcript: Vec<u8>,
    seed: u64,
    /// Whether the client takes compressed answers.
    zstd: bool,
    rights: Rights,
    /// The model types the client may see.
    types: Vec<String>,
    last_seq: u64,
    index: Index,
    /// Position of each short id, built on the first fetch.
    by_id: Option<HashMap<ShortId, usize>>,
    /// The welcome, as sent (an auth sent again gets it again).
    welcome: Vec<u8>,
    /// Bytes its calls unpacked.
    spent: u64,
    /// When it was last used (a tick of the server's): the least recently
    /// used goes first.
    used: u64,
}

/// What signs an answer: the session's transcript and the call's number,
/// and the client, once it proved its key.
struct Signer {
    transcript: Vec<u8>,
    seq: u64,
    zstd: bool,
}

/// Serves an adapter's store to the peers it allows: any transport hands
/// it request frames ([`handle`](Server::handle)) and sends back what it
/// returns. It is a [`Transport`] itself (a reference or an `Arc` to it),
/// so a client in the same process calls it directly and a socket server
/// (HTTP, QUIC) serves it.
///
/// ```
/// use diffsync::{DiffModel, LocalStore, MemoryAdapter};
/// use diffsync_peer::identity::{Identity, Peers, Rights};
/// use diffsync_peer::{RemotePeer, Server};
///
/// #[derive(DiffModel, Clone, Debug, PartialEq)]
/// #[diffsync(name = "site")]
/// struct Site {
///     #[diffsync(id)]
///     name: String,
///     region: String,
/// }
///
/// let (hq, branch) = (Identity::generate(), Identity::generate());
/// let mut store = LocalStore::new("hq");
/// store.add(Site { name: "nyc".into(), region: "east".into() }).unwrap();
/// let peers = Peers::new().allow("branch", branch.public_key(), Rights::read());
/// let server = Server::new("hq", MemoryAdapter::with_store("hq", &[], store), hq, peers);
///
/// let mut image = LocalStore::new("branch's copy of hq");
/// image.register::<Site>().unwrap();
/// let mut peer = RemotePeer::connect("hq", image, &server, branch).unwrap();
/// let pulled = peer.pull().unwrap();
/// assert_eq!(pulled.fetched, 1);
/// assert_eq!(peer.image().get(&Site::key("nyc".to_string())).unwrap().region, "east");
/// ```
pub struct Server<A> {
    replica: String,
    adapter: Mutex<A>,
    identity: Identity,
    /// Keys the session ids this run issues (a MAC of the handshake's
    /// numbers): an auth names a session only this server could have made.
    secret: ring::hmac::Key,
    peers: Mutex<Peers>,
    /// Open sessions, and the tick they are stamped with.
    sessions: Mutex<(Vec<Session>, u64)>,
    /// Answers of recent pushes, by client and batch id.
    batches: Mutex<VecDeque<(PublicKey, u64, Vec<Pushed>)>>,
    relay: Mutex<Option<Relay>>,
}

impl<A: Sink> Server<A> {
    /// A server named `replica` over an adapter (whose store it reads),
    /// proving itself with `identity` and answering only `peers`.
    pub fn new(replica: impl Into<String>, adapter: A, identity: Identity, peers: Peers) -> Server<A> {
        let mut secret = [0u8; 32];
        for chunk in secret.chunks_mut(8) {
            chunk.copy_from_slice(&fastrand::u64(..).to_le_bytes());
        }
        // fastrand's seed is not secret enough for a MAC key: ring's
        // system random source, when it answers, replaces it.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret);
        Server {
            replica: replica.into(),
            adapter: Mutex::new(adapter),
            identity,
            secret: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
            peers: Mutex::new(peers),
            sessions: Mutex::new((Vec::new(), 0)),
            batches: Mutex::new(VecDeque::new()),
            relay: Mutex::new(None),
        }
    }

    /// Relays the served system's change events (its adapter's feed: a
    /// store's [`subscribe`](diffsync::LocalStore::subscribe), an SQL
    /// change log) to peers that follow them
    /// ([`PeerFeed`](crate::PeerFeed)), each event only to peers that may
    /// see its type. The last 100,000 events are kept; a peer further
    /// behind, or following a server that restarted, is told of a gap.
    pub fn with_feed(self, feed: impl ChangeFeed + 'static) -> Server<A> {
        *self.relay.lock().unwrap_or_else(|p| p.into_inner()) = Some(Relay {
            feed: Box::new(feed),
            epoch: fastrand::u64(..),
            start: 0,
            lost_before: 0,
            events: VecDeque::new(),
        });
        self
    }

    /// Replaces the allow-list (an edited file read again, a key revoked):
    /// new sessions follow it at once, and the open sessions of a peer no
    /// longer allowed, or allowed other rights, end (the peer opens a new
    /// one, or is refused).
    pub fn set_peers(&self, peers: Peers) {
        self.sessions()
            .0
            .retain(|s| peers.get(&s.client).is_some_and(|(_, rights)| *rights == s.rights));
        *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = peers;
    }

    /// The adapter, locked: to change what is served.
    pub fn adapter(&self) -> std::sync::MutexGuard<'_, A> {
        self.adapter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers one request frame with a response frame. Never fails: what
    /// cannot be answered is a [`Response::Refused`]. Nothing a stranger
    /// sends is unpacked: a request is read as it is, a call's body only
    /// once its signature verified.
    pub fn handle(&self, frame: &[u8]) -> Vec<u8> {
        let (result, signer) = match proto::decode_request(frame) {
            Ok(Request::Hello(hello)) => (self.challenge(hello), None),
            Ok(Request::Auth {
                session,
                hello,
                nonce,
                issued,
                proof,
                schemas,
            }) => self.auth(session, &hello, nonce, issued, &proof, &schemas),
            Ok(Request::Sealed(sealed)) => self.call(sealed),
            Err(e) => (Err(Refusal::Malformed(e.to_string())), None),
        };
        let response = result.unwrap_or_else(Response::Refused);
        let Some(signer) = signer else {
            return proto::encode(&response, false);
        };
        match response {
            // Kept as sent: an auth sent again is answered with these bytes.
            Response::Signed(signed) => proto::encode(&Response::Signed(signed), false),
            response => self.sign(&signer, &response),
        }
    }

    /// An answer of a session, signed over its transcript and the call's
    /// number.
    fn sign(&self, signer: &Signer, response: &Response) -> Vec<u8> {
        let body = proto::encode(response, signer.zstd);
        let proof = self.identity.sign(&proto::to_sign(
            b"answer",
            &signer.transcript,
            Some((signer.seq, &body)),
        ));
        proto::encode(
            &Response::Signed(proto::Signed {
                seq: signer.seq,
                body,
                proof,
            }),
            false,
        )
    }

    /// The name the allow-list gives the peer of the session a sealed
    /// call (`request`'s first bytes) belongs to; none for anything else.
    pub fn sender(&self, request: &[u8]) -> Option<String> {
        let id = proto::sealed_session(&request[..request.len().min(proto::HEAD)])?;
        let client = self.sessions().0.iter().find(|s| s.id == id)?.client;
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.get(&client).map(|(name, _)| name.clone())
    }

    /// How many bytes a request frame that starts with `head` (at least
    /// [`proto::HEAD`] bytes, or all of it) may have: a call of an open
    /// session up to [`proto::MAX_REQUEST`], anything else — a handshake,
    /// a stranger's bytes — [`proto::HANDSHAKE_MAX`]. A transport reads
    /// the head, asks, and stops reading past the answer.
    pub fn admits(&self, head: &[u8]) -> usize {
        match proto::sealed_session(head) {
            Some(id) if self.sessions().0.iter().any(|s| s.id == id) => proto::MAX_REQUEST,
            _ => proto::HANDSHAKE_MAX,
        }
    }

    /// The session id a challenge gives: a MAC of what the hello and the
    /// challenge said, so the auth can be checked against it without any
    /// state kept in between.
    fn session_id(&self, hello: &Hello, nonce: u64, issued: u64) -> u64 {
        let mut m = Vec::with_capacity(96);
        m.extend_from_slice(b"diffsync session");
        m.extend_from_slice(&hello.nonce.to_le_bytes());
        m.extend_from_slice(&nonce.to_le_bytes());
        m.extend_from_slice(&issued.to_le_bytes());
        m.extend_from_slice(&hello.key.0);
        m.push(u8::from(takes_zstd(hello)));
        let tag = ring::hmac::sign(&self.secret, &m);
        let mut id = [0u8; 8];
        id.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_le_bytes(id)
    }

    fn challenge(&self, theirs: Hello) -> Result<Response, Refusal> {
        if theirs.version != VERSION {
            return Err(Refusal::Version {
                ours: VERSION,
                theirs: theirs.version,
            });
        }
        if theirs.hash != HASH {
            return Err(Refusal::Hash {
                ours: HASH.into(),
                theirs: theirs.hash,
            });
        }
        let (nonce, issued) = (fastrand::u64(..), now());
        let id = self.session_id(&theirs, nonce, issued);
        let key = self.identity.public_key();
        let transcript = proto::transcript(id, theirs.nonce, nonce, &theirs.key, &key);
        let proof = self.identity.sign(&proto::to_sign(b"server", &transcript, None));
        Ok(Response::Challenge {
            session: id,
            nonce,
            key,
            issued,
            proof,
            capabilities: vec!["zstd".into()],
        })
    }

    fn auth(
        &self,
        id: u64,
        hello: &Hello,
        nonce: u64,
        issued: u64,
        proof: &[u8],
        schemas: &[(String, u64)],
    ) -> (Result<Response, Refusal>, Option<Signer>) {
        // The same auth again (a transport that resent it after a lost
        // answer): the same welcome, if it is the same proof.
        {
            let mut sessions = self.sessions();
            let tick = sessions.1;
            if let Some(s) = sessions.0.iter_mut().find(|s| s.id == id) {
                if !s
                    .client
                    .verifies(&proto::to_sign(b"client", &s.transcript, None), proof)
                {
                    return (Err(Refusal::Unauthorized), None);
                }
                s.used = tick;
                let signer = Signer {
                    transcript: s.transcript.clone(),
                    seq: 0,
                    zstd: s.zstd,
                };
                return (
                    proto::decode_response(&s.welcome).map_err(|_| Refusal::Unauthorized),
                    Some(signer),
                );
            }
        }
        let age = now().saturating_sub(issued);
        if self.session_id(hello, nonce, issued) != id || age > CHALLENGE_TTL || issued > now() + 5 {
            return (Err(Refusal::UnknownSession(id)), None);
        }
        let transcript = proto::transcript(id, hello.nonce, nonce, &hello.key, &self.identity.public_key());
        let client = hello.key;
        let signer = Signer {
            transcript: transcript.clone(),
            seq: 0,
            zstd: takes_zstd(hello),
        };
        let rights = {
            let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            peers.get(&client).map(|(_, rights)| rights.clone())
        };
        let Some(rights) = rights else {
            return (Err(Refusal::Unauthorized), Some(signer));
        };
        if !client.verifies(&proto::to_sign(b"client", &transcript, None), proof) {
            return (Err(Refusal::Unauthorized), Some(signer));
        }
        if !rights.read {
            return (Err(Refusal::Forbidden("reading this replica".into())), Some(signer));
        }
        let seed = session_seed(hello.nonce, nonce);
        let (ours, index) = {
            let adapter = self.adapter();
            let store = adapter.store().local();
            let ours: Vec<(String, u64)> = schemas_of(store)
                .into_iter()
                .filter(|(t, _)| rights.covers(t))
                .collect();
            if let Some((t, _)) = schemas
                .iter()
                .find(|(t, fp)| ours.iter().any(|(u, mine)| u == t && mine != fp))
            {
                let refusal = Refusal::Schema {
                    model_type: t.clone(),
                    replica: self.replica.clone(),
                };
                return (Err(refusal), Some(signer));
            }
            (ours, Index::build(store, seed, |t| rights.covers(t)))
        };
        let whole = index.fingerprint(0, index.len());
        let welcome = Response::Welcome {
            replica: self.replica.clone(),
            schemas: ours.clone(),
            rights: rights.clone(),
            whole,
        };
        let signed = self.sign(&signer, &welcome);
        let mut sessions = self.sessions();
        let (open, tick) = &mut *sessions;
        *tick += 1;
        // Room for it: the peer's least recently used session first, then
        // anyone's.
        let mine = open.iter().filter(|s| s.client == client).count();
        let evict = if mine >= SESSIONS_PER_PEER {
            open.iter()
                .enumerate()
                .filter(|(_, s)| s.client == client)
                .min_by_key(|(_, s)| s.used)
        } else if open.len() >= SESSIONS {
            open.iter().enumerate().min_by_key(|(_, s)| s.used)
        } else {
            None
        }
        .map(|(i, _)| i);
        if let Some(i) = evict {
            open.swap_remove(i);
        }
        open.push(Session {
            id,
            client,
            transcript,
            seed,
            zstd: signer.zstd,
            rights,
            types: ours.into_iter().map(|(t, _)| t).collect(),
            last_seq: 0,
            index,
            by_id: None,
            welcome: signed.clone(),
            spent: 0,
            used: *tick,
        });
        (
            proto::decode_response(&signed).map_err(|_| Refusal::Unauthorized),
            Some(signer),
        )
    }

    fn call(&self, sealed: Sealed) -> (Result<Response, Refusal>, Option<Signer>) {
        let mut sessions = self.sessions();
        let (open, tick) = &mut *sessions;
        *tick += 1;
        let Some(at) = open.iter().position(|s| s.id == sealed.session) else {
            return (Err(Refusal::UnknownSession(sealed.session)), None);
        };
        let s = &mut open[at];
        let signer = Signer {
            transcript: s.transcript.clone(),
            seq: sealed.seq,
            zstd: s.zstd,
        };
        let signed = proto::to_sign(b"call", &s.transcript, Some((sealed.seq, &sealed.body)));
        if !s.client.verifies(&signed, &sealed.proof) {
            return (Err(Refusal::Unauthorized), Some(signer));
        }
        if sealed.seq <= s.last_seq {
            return (Err(Refusal::Replay { seq: sealed.seq }), Some(signer));
        }
        s.last_seq = sealed.seq;
        s.used = *tick;
        // Bounded before anything unpacks: the call, and the session's sum.
        let size = proto::unpacked_len(&sealed.body).max(sealed.body.len());
        if size > proto::MAX_CALL {
            let limit = proto::MAX_CALL as u64;
            return (Err(Refusal::TooLarge { limit }), Some(signer));
        }
        if s.spent + size as u64 > proto::SESSION_BUDGET {
            open.swap_remove(at);
            let budget = proto::SESSION_BUDGET;
            return (Err(Refusal::Spent { budget }), Some(signer));
        }
        s.spent += size as u64;
        let call: Call = match proto::decode_within(&sealed.body, size) {
            Ok(call) => call,
            Err(e) => return (Err(Refusal::Malformed(e.to_string())), Some(signer)),
        };
        let (id, client, rights, seed) = (s.id, s.client, s.rights.clone(), s.seed);
        let answer = match call {
            Call::Changes { since, max, wait_ms } => {
                drop(sessions);
                let wait = std::time::Duration::from_millis(u64::from(wait_ms).min(30_000));
                self.changes(&rights, since, max as usize, wait)
            }
            Call::Push(push) => {
                drop(sessions);
                if rights.write {
                    Ok(Response::Pushed(self.push(client, &rights, push)))
                } else {
                    Err(Refusal::Forbidden("writing to this replica".into()))
                }
            }
            Call::Reconcile { renew, message } => {
                let whole = if renew {
                    let types = s.types.clone();
                    drop(sessions);
                    let index = {
                        let adapter = self.adapter();
                        Index::build(adapter.store().local(), seed, |t| types.iter().any(|u| u == t))
                    };
                    let whole = index.fingerprint(0, index.len());
                    sessions = self.sessions();
                    let Some(s) = sessions.0.iter_mut().find(|s| s.id == id) else {
                        return (Err(Refusal::UnknownSession(id)), Some(signer));
                    };
                    s.index = index;
                    s.by_id = None;
                    Some(whole)
                } else {
                    None
                };
                let Some(s) = sessions.0.iter().find(|s| s.id == id) else {
                    return (Err(Refusal::UnknownSession(id)), Some(signer));
                };
                let mut ignored = Differences::default();
                match Side::responder(&s.index, Config::default()).answer(&message, &mut ignored) {
                    Ok(Some(message)) => Ok(Response::Reconcile { whole, message }),
                    Ok(None) => Err(Refusal::Malformed("nothing to answer".into())),
                    Err(e) => Err(Refusal::Malformed(e.to_string())),
                }
            }
            Call::Fetch(ids) => {
                let index = &s.index;
                let by_id = s.by_id.get_or_insert_with(|| {
                    index
                        .items()
                        .iter()
                        .enumerate()
                        .map(|(p, it)| (short(it.id), p))
                        .collect()
                });
                let keys: Vec<Option<Vec<u8>>> = ids
                    .iter()
                    .map(|id| by_id.get(id).map(|&p| index.items()[p].key.clone()))
                    .collect();
                drop(sessions);
                let adapter = self.adapter();
                let store = adapter.store().local();
                let (mut models, mut filled, mut answered) = (Vec::new(), 0, 0u32);
                for key in keys {
                    if filled >= proto::ANSWER_FILL {
                        break;
                    }
                    answered += 1;
                    if let Some(m) = key.and_then(|k| wire_model(store, k)) {
                        filled += m.key.len() + m.values.len() + m.parent.as_ref().map_or(0, Vec::len);
                        models.push(m);
                    }
                }
                Ok(Response::Models { models, answered })
            }
        };
        (answer, Some(signer))
    }

    /// The events after `since` a peer with `rights` may see.
    fn changes(
        &self,
        rights: &Rights,
        since: Option<Cursor>,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<Response, Refusal> {
        let mut relay = self.relay.lock().unwrap_or_else(|p| p.into_inner());
        let relay = relay
            .as_mut()
            .ok_or_else(|| Refusal::Forbidden("following this replica's changes (it relays no feed)".into()))?;
        let (from, mut gap) = match since {
            None => (relay.next(), false),
            Some(c) if c.epoch != relay.epoch || c.seq > relay.next() => (relay.next(), true),
            Some(c) => (c.seq, false),
        };
        relay.fill(from, wait).map_err(Refusal::Malformed)?;
        if from < relay.start || from < relay.lost_before {
            gap = true;
        }
        let first = from.max(relay.start);
        let mut events = Vec::new();
        let mut next = first;
        for (model_type, json) in relay.events.iter().skip((first - relay.start) as usize) {
            if events.len() == max {
                break;
            }
            next += 1;
            if rights.covers(model_type) {
                events.push(json.clone());
            }
        }
        Ok(Response::Changes {
            events,
            next: Cursor {
                epoch: relay.epoch,
                seq: next,
            },
            gap,
        })
    }

    /// Applies a pushed batch through the adapter's hooks: each change
    /// whose expected digest is what the store holds goes into a copy of
    /// the store, and the adapter syncs from that copy for exactly those
    /// keys, so its hooks, its transaction and its store do what they do
    /// for any sync. A batch seen before is answered as it was then.
    fn push(&self, client: PublicKey, rights: &Rights, push: Push) -> Vec<Pushed> {
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((.., answer)) = batches.iter().find(|(c, b, _)| *c == client && *b == push.batch) {
            return answer.clone();
        }
        let mut adapter = self.adapter();
        let mut view = adapter.store().local().clone();
        let mut outcomes: Vec<Option<Pushed>> = vec![None; push.changes.len()];
        let mut keys = Vec::new();
        for (i, change) in push.changes.iter().enumerate() {
            match stage(adapter.store().local(), &mut view, rights, change) {
                Ok(Some(key)) => keys.push((i, key)),
                Ok(None) => outcomes[i] = Some(Pushed::Applied),
                Err(refused) => outcomes[i] = Some(refused),
            }
        }
        if !keys.is_empty() {
            let view = MemoryAdapter::with_store(self.replica.clone(), &[], view);
            let mut opts = Options::new().part(keys.iter().map(|(_, k)| k));
            if push.continue_on_failure {
                opts = opts.flags(DiffFlags::CONTINUE_ON_FAILURE);
            }
            let report = match adapter.sync_from_with(&view, &mut opts) {
                Ok(report) => Ok(report),
                Err(Error::Sync(SyncError::Aborted { report, .. } | SyncError::StoreApply { report, .. })) => {
                    Ok(*report)
                }
                Err(e) => Err(Chain(&e).to_string()),
            };
            for (i, key) in &keys {
                outcomes[*i] = Some(match &report {
                    Err(message) => Pushed::Failed(message.clone()),
                    Ok(report) => report
                        .elements
                        .iter()
                        .find(|e| e.key == *key)
                        .map_or(Pushed::Applied, |e| match &e.outcome {
                            Outcome::Applied | Outcome::Unchanged | Outcome::RemovedWithParent => Pushed::Applied,
                            Outcome::Skipped(why) => Pushed::Skipped(format!("{why:?}")),
                            other => Pushed::Failed(other.to_string()),
                        }),
                });
            }
        }
        let answer: Vec<Pushed> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Pushed::Skipped("not reached".into())))
            .collect();
        if batches.len() == BATCHES {
            batches.pop_front();
        }
        batches.push_back((client, push.batch, answer.clone()));
        answer
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, (Vec<Session>, u64)> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a hello says it takes compressed answers.
fn takes_zstd(hello: &Hello) -> bool {
    hello.capabilities.iter().any(|c| c == "zstd")
}

/// Seconds since the epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks one pushed change against the store and applies it to the
/// copy: its key, `None` when the store already holds what it writes (a
/// batch applied before this server restarted and forgot its answer), or
/// why it is refused ([`Pushed::Forbidden`] when it touches a type the
/// client may not write).
fn stage(
    store: &LocalStore,
    view: &mut LocalStore,
    rights: &Rights,
    change: &WireChange,
) -> Result<Option<ModelKey>, Pushed> {
    let key = ModelKey::from_bytes(&change.key).map_err(|e| Pushed::Refused(format!("an unreadable key: {e}")))?;
    let t = key.model_type();
    let forbidden = |model_type: &str| Pushed::Forbidden {
        key: key.to_string(),
        model_type: model_type.to_string(),
    };
    if !rights.covers(t) {
        return Err(forbidden(t));
    }
    // A delete touches every model below it: removed with it, or left
    // without its parent.
    if change.action == "delete"
        && let Some(other) = type_below(store, &key, rights)
    {
        return Err(forbidden(&other));
    }
    stage_allowed(store, view, change, &key).map_err(Pushed::Refused)
}

/// The first type below a model (its children's, theirs, ...) that the
/// rights do not cover.
fn type_below(store: &LocalStore, key: &ModelKey, rights: &Rights) -> Option<String> {
    let mut todo = vec![key.clone()];
    while let Some(k) = todo.pop() {
        let children = store
            .schema(k.model_type())
            .map(|s| s.children.clone())
            .unwrap_or_default();
        for child in children.iter() {
            let Ok(keys) = store.children_dyn(&k, child) else {
                continue;
            };
            if keys.is_empty() {
                continue;
            }
            if !rights.covers(child) {
                return Some(child.to_string());
            }
            todo.extend(keys);
        }
    }
    None
}

/// [`stage`] of a change the client may make.
fn stage_allowed(
    store: &LocalStore,
    view: &mut LocalStore,
    change: &WireChange,
    key: &ModelKey,
) -> Result<Option<ModelKey>, String> {
    let t = key.model_type();
    let values = || -> Result<(Attrs, Attrs), String> {
        let v: serde_json::Value = serde_json::from_str(&change.values).map_err(|e| format!("{key}: {e}"))?;
        let part = |name: &str| -> Result<Attrs, String> {
            serde_json::from_value(v.get(name).cloned().unwrap_or_default()).map_err(|e| format!("{key}: {name}: {e}"))
        };
        Ok((part("identifiers")?, part("attributes")?))
    };
    let held = store.digest(key).map(|d| d.0.to_le_bytes());
    if held != change.expected {
        let already = match (change.action.as_str(), store.get_dyn(key)) {
            ("delete", Err(_)) => true,
            ("create" | "update", Ok(model)) => {
                let (_, written) = values()?;
                let (ids, now) = (model.identifiers(), model.attributes());
                let mut after = now.clone();
                after.extend(written);
                diffsync::digest::digest_of(t, &ids, &after) == diffsync::digest::digest_of(t, &ids, &now)
            }
            _ => false,
        };
        if already {
            return Ok(None);
        }
        return Err(format!(
            "{key} changed on this replica since the writer read it; pull and diff again"
        ));
    }
    let done = match change.action.as_str() {
        "create" => {
            let (ids, attrs) = values()?;
            let parent = match &change.parent {
                Some(p) => Some(ModelKey::from_bytes(p).map_err(|e| format!("{key}: its parent: {e}"))?),
                None => None,
            };
            let model = view.build(t, &ids, &attrs).map_err(|e| Chain(&e).to_string())?;
            view.insert_boxed(model, parent.as_ref())
        }
        "update" => {
            let (_, attrs) = values()?;
            view.update_attributes(key, diffsync::AttrSource::Values(&attrs))
        }
        "delete" => view.remove(key, change.subtree),
        other => return Err(format!("{key}: unknown action {other:?}")),
    };
    done.map_err(|e| Chain(&e).to_string())?;
    Ok(Some(key.clone()))
}

/// A store's model types with their schema fingerprints.
pub(crate) fn schemas_of(store: &LocalStore) -> Vec<(String, u64)> {
    store
        .model_types()
        .filter_map(|t| Some((t.to_string(), diffsync::digest::schema_fingerprint(store.schema(t)?))))
        .collect()
}

/// A stored model as it travels (`None` if it is gone since the index was built).
fn wire_model(store: &LocalStore, key: Vec<u8>) -> Option<WireModel> {
    let model_key = ModelKey::from_bytes(&key).ok()?;
    let model = store.get_dyn(&model_key).ok()?;
    let parent = store.parent(&model_key).ok().flatten().map(|p| p.to_bytes());
    let values = serde_json::json!({
        "identifiers": model.identifiers(),
        "attributes": model.attributes(),
    });
    Some(WireModel {
        key,
        parent,
        values: values.to_string(),
    })
}

/// A server answers frames itself: a client can call it in this process
/// (tests, measurements), and a socket server serves it.
impl<A: Sink> Transport for &Server<A> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, diffsync::BoxError> {
        Ok(self.handle(request))
    }

    fn admits(&self, head: &[u8]) -> usize {
        Server::admits(self, head)
    }

    fn sender(&self, request: &[u8]) -> Option<String> {
        Server::sender(self, request)
    }
}

/// What a socket server serves: the server, shared by its connections.
impl<A: Sink> Transport for std::sync::Arc<Server<A>> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, diffsync::BoxError> {
        Transport::call(&mut &**self, request)
    }

    fn admits(&self, head: &[u8]) -> usize {
        Server::admits(self, head)
    }

    fn sender(&self, request: &[u8]) -> Option<String> {
        Server::sender(self, request)
    }
}
