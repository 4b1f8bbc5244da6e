//! The serving side: answers handshakes, reconcile rounds and fetches from
//! an adapter's store, for the peers it allows.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use diffsync::{Adapter, LocalStore, ModelKey, Store};

use crate::identity::{Identity, Peers, PublicKey};
use crate::index::{Index, ShortId, session_seed, short};
use crate::proto::{self, Call, HASH, Hello, Refusal, Request, Response, Sealed, VERSION, WireModel};
use crate::recon::{Config, Differences, Side};

/// Sessions kept at once (open and half-open); the oldest goes first.
const SESSIONS: usize = 64;

/// One session. Until the client proves its key, only the handshake's
/// numbers; then the index of the store as it was (a session reconciles
/// one snapshot; the next session sees later writes).
struct Session {
    id: u64,
    client: PublicKey,
    transcript: Vec<u8>,
    seed: u64,
    open: Option<Open>,
}

/// An authenticated session.
struct Open {
    /// The model types the client may see.
    types: Vec<String>,
    last_seq: u64,
    index: Index,
    /// Position of each short id, built on the first fetch.
    by_id: Option<HashMap<ShortId, usize>>,
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
    peers: Peers,
    sessions: Mutex<VecDeque<Session>>,
}

impl<A: Adapter> Server<A> {
    /// A server named `replica` over an adapter (whose store it reads),
    /// proving itself with `identity` and answering only `peers`.
    pub fn new(replica: impl Into<String>, adapter: A, identity: Identity, peers: Peers) -> Server<A> {
        Server {
            replica: replica.into(),
            adapter: Mutex::new(adapter),
            identity,
            peers,
            sessions: Mutex::new(VecDeque::new()),
        }
    }

    /// The adapter, locked: to change what is served.
    pub fn adapter(&self) -> std::sync::MutexGuard<'_, A> {
        self.adapter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers one request frame with a response frame. Never fails: what
    /// cannot be answered is a [`Response::Refused`].
    pub fn handle(&self, frame: &[u8]) -> Vec<u8> {
        let response = match proto::decode::<Request>(frame) {
            Ok(request) => self.answer(request),
            Err(e) => Response::Refused(Refusal::Malformed(e.to_string())),
        };
        proto::encode(&response, true)
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
            sessions.pop_front();
        }
        sessions.push_back(Session {
            id,
            client: theirs.key,
            transcript,
            seed: session_seed(theirs.nonce, nonce),
            open: None,
        });
        Ok(Response::Challenge {
            session: id,
            nonce,
            key,
            proof,
        })
    }

    fn auth(&self, id: u64, proof: &[u8], schemas: &[(String, u64)]) -> Result<Response, Refusal> {
        let (client, transcript, seed) = {
            let sessions = self.sessions();
            let s = sessions
                .iter()
                .find(|s| s.id == id && s.open.is_none())
                .ok_or(Refusal::UnknownSession(id))?;
            (s.client, s.transcript.clone(), s.seed)
        };
        let (_, rights) = self.peers.get(&client).ok_or(Refusal::Unauthorized)?;
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
        let mut sessions = self.sessions();
        let s = sessions
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or(Refusal::UnknownSession(id))?;
        s.open = Some(Open {
            types: ours.iter().map(|(t, _)| t.clone()).collect(),
            last_seq: 0,
            index,
            by_id: None,
        });
        Ok(Response::Welcome {
            replica: self.replica.clone(),
            schemas: ours,
            rights: rights.clone(),
            whole,
        })
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
        let call: Call = postcard::from_bytes(&sealed.body).map_err(|e| Refusal::Malformed(e.to_string()))?;
        match call {
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

    fn sessions(&self) -> std::sync::MutexGuard<'_, VecDeque<Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
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
