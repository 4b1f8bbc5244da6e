//! The serving side: answers hellos, reconcile rounds and fetches from an
//! adapter's store.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use diffsync::{Adapter, LocalStore, ModelKey, Store};

use crate::index::{Index, ShortId, session_seed, short};
use crate::proto::{self, HASH, Hello, Refusal, Request, Response, VERSION, WireModel};
use crate::recon::{Config, Differences, Side};

/// Sessions kept at once; the oldest goes first.
const SESSIONS: usize = 64;

/// One open session: the index of the store as it was when it opened (a
/// session reconciles one snapshot; the next session sees later writes).
struct Session {
    id: u64,
    index: Index,
    /// Position of each short id, built on the first fetch.
    by_id: Option<HashMap<ShortId, usize>>,
}

/// Serves an adapter's store to peers: any transport hands it request
/// frames ([`handle`](Server::handle)) and sends back what it returns.
///
/// ```
/// use diffsync::{DiffModel, LocalStore, MemoryAdapter};
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
/// let mut store = LocalStore::new("hq");
/// store.add(Site { name: "nyc".into(), region: "east".into() }).unwrap();
/// let server = Server::new("hq", MemoryAdapter::with_store("hq", &[], store));
///
/// let mut image = LocalStore::new("branch's copy of hq");
/// image.register::<Site>().unwrap();
/// let mut peer = RemotePeer::connect("hq", image, Loopback::new(&server)).unwrap();
/// let pulled = peer.pull().unwrap();
/// assert_eq!(pulled.fetched, 1);
/// assert_eq!(peer.image().get(&Site::key("nyc".to_string())).unwrap().region, "east");
/// ```
pub struct Server<A> {
    replica: String,
    adapter: Mutex<A>,
    sessions: Mutex<VecDeque<Session>>,
}

impl<A: Adapter> Server<A> {
    /// A server named `replica` over an adapter (whose store it reads).
    pub fn new(replica: impl Into<String>, adapter: A) -> Server<A> {
        Server {
            replica: replica.into(),
            adapter: Mutex::new(adapter),
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
        match request {
            Request::Hello(hello) => self.welcome(hello),
            Request::Reconcile { session, message } => self
                .with_session(session, |s| {
                    let mut ignored = Differences::default();
                    match Side::responder(&s.index, Config::default()).answer(&message, &mut ignored) {
                        Ok(Some(reply)) => Response::Reconcile(reply),
                        Ok(None) => Response::Refused(Refusal::Malformed("nothing to answer".into())),
                        Err(e) => Response::Refused(Refusal::Malformed(e.to_string())),
                    }
                })
                .unwrap_or_else(Response::Refused),
            Request::Fetch { session, ids } => {
                let keys = self.with_session(session, |s| {
                    let index = &s.index;
                    let by_id = s.by_id.get_or_insert_with(|| {
                        index
                            .items()
                            .iter()
                            .enumerate()
                            .map(|(p, it)| (short(it.id), p))
                            .collect()
                    });
                    ids.iter()
                        .filter_map(|id| by_id.get(id))
                        .map(|&p| index.items()[p].key.clone())
                        .collect::<Vec<_>>()
                });
                match keys {
                    Ok(keys) => {
                        let adapter = self.adapter();
                        let store = adapter.store().local();
                        Response::Models(keys.into_iter().filter_map(|k| wire_model(store, k)).collect())
                    }
                    Err(refused) => Response::Refused(refused),
                }
            }
        }
    }

    fn welcome(&self, theirs: Hello) -> Response {
        if theirs.version != VERSION {
            return Response::Refused(Refusal::Version {
                ours: VERSION,
                theirs: theirs.version,
            });
        }
        if theirs.hash != HASH {
            return Response::Refused(Refusal::Hash {
                ours: HASH.into(),
                theirs: theirs.hash,
            });
        }
        let nonce = fastrand::u64(..);
        let seed = session_seed(theirs.nonce, nonce);
        let (hello, index) = {
            let adapter = self.adapter();
            let store = adapter.store().local();
            let hello = hello_of(&self.replica, store, nonce);
            for (t, fp) in &theirs.schemas {
                if hello.schemas.iter().any(|(u, ours)| u == t && ours != fp) {
                    return Response::Refused(Refusal::Schema {
                        model_type: t.clone(),
                        replica: self.replica.clone(),
                    });
                }
            }
            (hello, Index::build(store, seed))
        };
        let id = fastrand::u64(..);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() == SESSIONS {
            sessions.pop_front();
        }
        let whole = index.fingerprint(0, index.len());
        sessions.push_back(Session { id, index, by_id: None });
        Response::Welcome {
            session: id,
            hello,
            whole,
        }
    }

    /// Runs `f` on an open session, or says it is unknown.
    fn with_session<T>(&self, id: u64, f: impl FnOnce(&mut Session) -> T) -> Result<T, Refusal> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.iter_mut().find(|s| s.id == id) {
            Some(s) => Ok(f(s)),
            None => Err(Refusal::UnknownSession(id)),
        }
    }
}

/// A side's hello: its types' schema fingerprints and a fresh nonce.
pub(crate) fn hello_of(replica: &str, store: &LocalStore, nonce: u64) -> Hello {
    Hello {
        version: VERSION,
        replica: replica.to_string(),
        schemas: store
            .model_types()
            .filter_map(|t| Some((t.to_string(), diffsync::digest::schema_fingerprint(store.schema(t)?))))
            .collect(),
        hash: HASH.into(),
        capabilities: vec!["zstd".into()],
        nonce,
    }
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
