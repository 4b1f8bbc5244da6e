//! The serving side: answers handshakes, reconcile rounds and fetches from
//! an adapter's store, for the peers it allows.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use diffsync::feed::ChangeFeed;
use diffsync::{
    Adapter, AdapterExt, Attrs, Chain, DiffFlags, Error, LocalStore, MemoryAdapter, ModelKey, Options, Outcome, Store,
    SyncError,
};

use crate::identity::{Identity, Peers, PublicKey, Rights};
use crate::index::{Index, ShortId, session_seed, short};
use crate::proto::{
    self, Call, Cursor, HASH, Hello, Push, Pushed, Refusal, Request, Response, Sealed, VERSION, WireChange, WireModel,
};
use crate::recon::{Config, Differences, Side};
use crate::transport::Traffic;

/// Sessions kept at once (open and half-open); the oldest goes first.
const SESSIONS: usize = 64;
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
                self.events.push_back((e.model_type.clone(), json));
            }
            while self.events.len() > EVENTS {
                self.events.pop_front();
                self.start += 1;
            }
        }
    }
}

/// One session. Until the client proves its key, only the handshake's
/// numbers; then the index of the store as it was (a session reconciles
/// one snapshot; the next session sees later writes).
struct Session {
    id: u64,
    client: PublicKey,
    transcript: Vec<u8>,
    seed: u64,
    /// Whether the client takes compressed answers.
    zstd: bool,
    open: Option<Open>,
}

/// An authenticated session.
struct Open {
    rights: Rights,
    /// The model types the client may see.
    types: Vec<String>,
    last_seq: u64,
    index: Index,
    /// Position of each short id, built on the first fetch.
    by_id: Option<HashMap<ShortId, usize>>,
    /// What the auth was answered (an auth sent again gets it again).
    welcome: Response,
}

/// Serves an adapter's store to the peers it allows: any transport hands
/// it request frames ([`handle`](Server::handle)) and sends back what it
/// returns.
///
/// ```
/// use diffsync::{DiffModel, LocalStore, MemoryAdapter};
/// use diffsync_peer::identity::{Identity, Peers, Rights};
/// use diffsync_peer::{Loopback, RemotePeer, Server};
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
/// let mut peer = RemotePeer::connect("hq", image, Loopback::new(&server), branch).unwrap();
/// let pulled = peer.pull().unwrap();
/// assert_eq!(pulled.fetched, 1);
/// assert_eq!(peer.image().get(&Site::key("nyc".to_string())).unwrap().region, "east");
/// ```
pub struct Server<A> {
    replica: String,
    adapter: Mutex<A>,
    identity: Identity,
    peers: Mutex<Peers>,
    sessions: Mutex<VecDeque<Session>>,
    /// Answers of recent pushes, by client and batch id.
    batches: Mutex<VecDeque<(PublicKey, u64, Vec<Pushed>)>>,
    relay: Mutex<Option<Relay>>,
    /// What each authenticated peer's calls moved.
    traffic: Mutex<HashMap<PublicKey, Traffic>>,
}

impl<A: Adapter> Server<A> {
    /// A server named `replica` over an adapter (whose store it reads),
    /// proving itself with `identity` and answering only `peers`.
    pub fn new(replica: impl Into<String>, adapter: A, identity: Identity, peers: Peers) -> Server<A> {
        Server {
            replica: replica.into(),
            adapter: Mutex::new(adapter),
            identity,
            peers: Mutex::new(peers),
            sessions: Mutex::new(VecDeque::new()),
            batches: Mutex::new(VecDeque::new()),
            relay: Mutex::new(None),
            traffic: Mutex::new(HashMap::new()),
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
        let mut sessions = self.sessions();
        sessions.retain(|s| match &s.open {
            None => true,
            Some(open) => peers.get(&s.client).is_some_and(|(_, rights)| *rights == open.rights),
        });
        *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = peers;
    }

    /// The adapter, locked: to change what is served.
    pub fn adapter(&self) -> std::sync::MutexGuard<'_, A> {
        self.adapter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers one request frame with a response frame. Never fails: what
    /// cannot be answered is a [`Response::Refused`].
    pub fn handle(&self, frame: &[u8]) -> Vec<u8> {
        let (response, compress, session, extra) = match proto::decode::<Request>(frame) {
            Ok(request) => {
                // Handshake answers are small; calls are answered
                // compressed when the client said it takes zstd.
                let (session, compress, extra) = match &request {
                    Request::Sealed(s) => (
                        Some(s.session),
                        self.sessions().iter().any(|x| x.id == s.session && x.zstd),
                        proto::sealed_unpacked_extra(s),
                    ),
                    Request::Auth { session, .. } => (Some(*session), false, 0),
                    Request::Hello(_) => (None, false, 0),
                };
                (self.answer(request), compress, session, extra)
            }
            Err(e) => (Response::Refused(Refusal::Malformed(e.to_string())), false, None, 0),
        };
        let reply = proto::encode(&response, compress);
        // Counted for a peer once it has proven its key.
        let client = session.and_then(|id| {
            let sessions = self.sessions();
            sessions
                .iter()
                .find(|s| s.id == id && s.open.is_some())
                .map(|s| s.client)
        });
        if let Some(client) = client {
            let name = {
                let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
                peers
                    .get(&client)
                    .map_or_else(|| client.to_string(), |(name, _)| name.clone())
            };
            let mut traffic = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
            let t = traffic.entry(client).or_default();
            let before = *t;
            t.count(frame, &reply);
            t.unpacked += extra as u64;
            t.export(before, &name, "server");
        }
        reply
    }

    /// What each peer's calls moved since this server started, by the name
    /// the allow-list gives it (its key, if it is no longer allowed).
    pub fn traffic(&self) -> Vec<(String, Traffic)> {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let traffic = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(String, Traffic)> = traffic
            .iter()
            .map(|(key, t)| {
                (
                    peers.get(key).map_or_else(|| key.to_string(), |(name, _)| name.clone()),
                    *t,
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// How many bytes a request frame that starts with `head` (at least
    /// [`proto::HEAD`] bytes, or all of it) may have: a call of an open
    /// session up to [`proto::MAX_MESSAGE`], anything else — a handshake,
    /// a stranger's bytes — [`proto::HANDSHAKE_MAX`]. A transport reads
    /// the head, asks, and stops reading past the answer.
    pub fn admits(&self, head: &[u8]) -> usize {
        match proto::sealed_session(head) {
            Some(id) if self.sessions().iter().any(|s| s.id == id && s.open.is_some()) => proto::MAX_MESSAGE,
            _ => proto::HANDSHAKE_MAX,
        }
    }

    fn answer(&self, request: Request) -> Response {
        let result = match request {
            Request::Hello(hello) => self.challenge(hello),
            Request::Auth {
                session,
                proof,
                schemas,
            } => self.auth(session, &proof, &schemas),
            Request::Sealed(sealed) => self.call(sealed),
        };
        result.unwrap_or_else(Response::Refused)
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
        let (id, nonce) = (fastrand::u64(..), fastrand::u64(..));
        let key = self.identity.public_key();
        let transcript = proto::transcript(id, theirs.nonce, nonce, &theirs.key, &key);
        let proof = self.identity.sign(&proto::to_sign(b"server", &transcript, None));
        let mut sessions = self.sessions();
        if sessions.len() == SESSIONS {
            // Handshakes never finished go first: a stranger opening
            // hellos must not push out the sessions of allowed peers.
            match sessions.iter().position(|s| s.open.is_none()) {
                Some(i) => drop(sessions.remove(i)),
                None => drop(sessions.pop_front()),
            }
        }
        sessions.push_back(Session {
            id,
            client: theirs.key,
            transcript,
            seed: session_seed(theirs.nonce, nonce),
            zstd: theirs.capabilities.iter().any(|c| c == "zstd"),
            open: None,
        });
        Ok(Response::Challenge {
            session: id,
            nonce,
            key,
            proof,
            capabilities: vec!["zstd".into()],
        })
    }

    fn auth(&self, id: u64, proof: &[u8], schemas: &[(String, u64)]) -> Result<Response, Refusal> {
        let (client, transcript, seed) = {
            let sessions = self.sessions();
            let s = sessions
                .iter()
                .find(|s| s.id == id)
                .ok_or(Refusal::UnknownSession(id))?;
            if let Some(open) = &s.open {
                // The same auth again (a transport that resent it after a
                // lost answer): the same welcome, if it is the same proof.
                if !s
                    .client
                    .verifies(&proto::to_sign(b"client", &s.transcript, None), proof)
                {
                    return Err(Refusal::Unauthorized);
                }
                return Ok(open.welcome.clone());
            }
            (s.client, s.transcript.clone(), s.seed)
        };
        let rights = {
            let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            let (_, rights) = peers.get(&client).ok_or(Refusal::Unauthorized)?;
            rights.clone()
        };
        if !client.verifies(&proto::to_sign(b"client", &transcript, None), proof) {
            return Err(Refusal::Unauthorized);
        }
        if !rights.read {
            return Err(Refusal::Forbidden("reading this replica".into()));
        }
        let (ours, index) = {
            let adapter = self.adapter();
            let store = adapter.store().local();
            let ours: Vec<(String, u64)> = schemas_of(store)
                .into_iter()
                .filter(|(t, _)| rights.covers(t))
                .collect();
            for (t, fp) in schemas {
                if ours.iter().any(|(u, mine)| u == t && mine != fp) {
                    return Err(Refusal::Schema {
                        model_type: t.clone(),
                        replica: self.replica.clone(),
                    });
                }
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
        let mut sessions = self.sessions();
        let s = sessions
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or(Refusal::UnknownSession(id))?;
        s.open = Some(Open {
            rights: rights.clone(),
            types: ours.into_iter().map(|(t, _)| t).collect(),
            last_seq: 0,
            index,
            by_id: None,
            welcome: welcome.clone(),
        });
        Ok(welcome)
    }

    fn call(&self, sealed: Sealed) -> Result<Response, Refusal> {
        let mut sessions = self.sessions();
        let s = sessions
            .iter_mut()
            .find(|s| s.id == sealed.session)
            .ok_or(Refusal::UnknownSession(sealed.session))?;
        let signed = proto::to_sign(b"call", &s.transcript, Some((sealed.seq, &sealed.body)));
        if !s.client.verifies(&signed, &sealed.proof) {
            return Err(Refusal::Unauthorized);
        }
        let open = s.open.as_mut().ok_or(Refusal::Unauthorized)?;
        if sealed.seq <= open.last_seq {
            return Err(Refusal::Replay { seq: sealed.seq });
        }
        open.last_seq = sealed.seq;
        let call: Call = proto::decode(&sealed.body).map_err(|e| Refusal::Malformed(e.to_string()))?;
        match call {
            Call::Changes { since, max, wait_ms } => {
                let rights = open.rights.clone();
                drop(sessions);
                self.changes(
                    &rights,
                    since,
                    max as usize,
                    std::time::Duration::from_millis(u64::from(wait_ms).min(30_000)),
                )
            }
            Call::Push(push) => {
                if !open.rights.write {
                    return Err(Refusal::Forbidden("writing to this replica".into()));
                }
                let (client, rights) = (s.client, open.rights.clone());
                drop(sessions);
                Ok(Response::Pushed(self.push(client, &rights, push)))
            }
            Call::Renew => {
                let (seed, types) = (s.seed, open.types.clone());
                drop(sessions);
                let index = {
                    let adapter = self.adapter();
                    Index::build(adapter.store().local(), seed, |t| types.iter().any(|u| u == t))
                };
                let whole = index.fingerprint(0, index.len());
                let mut sessions = self.sessions();
                let open = sessions
                    .iter_mut()
                    .find(|s| s.id == sealed.session)
                    .and_then(|s| s.open.as_mut())
                    .ok_or(Refusal::UnknownSession(sealed.session))?;
                open.index = index;
                open.by_id = None;
                Ok(Response::Renewed(whole))
            }
            Call::Reconcile(message) => {
                let mut ignored = Differences::default();
                match Side::responder(&open.index, Config::default()).answer(&message, &mut ignored) {
                    Ok(Some(reply)) => Ok(Response::Reconcile(reply)),
                    Ok(None) => Err(Refusal::Malformed("nothing to answer".into())),
                    Err(e) => Err(Refusal::Malformed(e.to_string())),
                }
            }
            Call::Fetch(ids) => {
                let index = &open.index;
                let by_id = open.by_id.get_or_insert_with(|| {
                    index
                        .items()
                        .iter()
                        .enumerate()
                        .map(|(p, it)| (short(it.id), p))
                        .collect()
                });
                let keys: Vec<Vec<u8>> = ids
                    .iter()
                    .filter_map(|id| by_id.get(id))
                    .map(|&p| index.items()[p].key.clone())
                    .collect();
                drop(sessions);
                let adapter = self.adapter();
                let store = adapter.store().local();
                Ok(Response::Models(
                    keys.into_iter().filter_map(|k| wire_model(store, k)).collect(),
                ))
            }
        }
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
                Err(refusal) => outcomes[i] = Some(Pushed::Refused(refusal)),
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
                        .find(|e| e.model_type == key.model_type() && e.key == key.unique_id())
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

    fn sessions(&self) -> std::sync::MutexGuard<'_, VecDeque<Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Checks one pushed change against the store and applies it to the
/// copy: its key, `None` when the store already holds what it writes (a
/// batch applied before this server restarted and forgot its answer), or
/// why it is refused.
fn stage(
    store: &LocalStore,
    view: &mut LocalStore,
    rights: &Rights,
    change: &WireChange,
) -> Result<Option<ModelKey>, String> {
    let key = ModelKey::from_bytes(&change.key).map_err(|e| format!("an unreadable key: {e}"))?;
    let (t, uid) = (key.model_type(), key.unique_id());
    if !rights.covers(t) {
        return Err(format!("{key}: this peer may not write {t:?}"));
    }
    let values = || -> Result<(Attrs, Attrs), String> {
        let v: serde_json::Value = serde_json::from_str(&change.values).map_err(|e| format!("{key}: {e}"))?;
        let part = |name: &str| -> Result<Attrs, String> {
            serde_json::from_value(v.get(name).cloned().unwrap_or_default()).map_err(|e| format!("{key}: {name}: {e}"))
        };
        Ok((part("identifiers")?, part("attributes")?))
    };
    let held = store.digest(t, &uid).map(|d| d.0.to_le_bytes());
    if held != change.expected {
        let already = match (change.action.as_str(), store.get_dyn(&key)) {
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
            let parent = parent.as_ref().map(|p| (p.model_type().to_string(), p.unique_id()));
            view.insert_boxed(model, parent.as_ref().map(|(pt, pk)| (pt.as_str(), pk.as_str())))
        }
        "update" => {
            let (_, attrs) = values()?;
            view.update_attributes(t, &uid, diffsync::AttrSource::Values(&attrs))
        }
        "delete" => view.remove(t, &uid, change.subtree),
        other => return Err(format!("{key}: unknown action {other:?}")),
    };
    done.map_err(|e| Chain(&e).to_string())?;
    Ok(Some(key))
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
