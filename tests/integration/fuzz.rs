//! Inputs no one expects: every decoder that reads outside input, fed
//! valid inputs mutated at random, structure-aware (JSON trees edited node
//! by node; binary frames cut, spliced and overwritten where their
//! lengths and varints are). No input may panic or make the decoder hold
//! more than its bound.
//!
//! Each decoder takes `FUZZ_CASES` inputs (256 by default, so `cargo
//! test` stays quick; the book's Security chapter gives the counts run before a release).
//! A failure names its seed: `FUZZ_SEED=<seed> FUZZ_CASES=1` replays it.

use std::panic::{AssertUnwindSafe, catch_unwind};

use diffsync::{AdapterExt, BoxError, Diff, LocalStore, MemoryAdapter, Options};
use diffsync_peer::identity::{Identity, Peers, Rights};
use diffsync_peer::proto::{self, Request, Response};
use diffsync_peer::{RemotePeer, Server, Transport};
use diffsync_tests::fuzz::{cases, each_seed, mutate_bytes, mutate_json};
use diffsync_tests::{Inventory, sys_a, sys_b};
use serde_json::Value;

/// `f`'s result and the most the calling thread held while it ran.
fn held<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(f()));
    (out.expect("ran"), info.bytes_max)
}

/// A request and its answer.
type Exchange = (Vec<u8>, Vec<u8>);

/// Every request and answer a transport carried.
type Frames = std::sync::Arc<std::sync::Mutex<Vec<Exchange>>>;

/// A transport that keeps every request and answer it carried.
struct Capture<'a, A> {
    inner: &'a Server<A>,
    frames: Frames,
}

impl<A: diffsync::Sink> Transport for Capture<'_, A> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, BoxError> {
        let answer = self.inner.call(request)?;
        self.frames.lock().unwrap().push((request.to_vec(), answer.clone()));
        Ok(answer)
    }
}

/// A server and the frames of whole sessions with it: hello, auth,
/// reconcile rounds, fetches, a push and a poll of its changes.
fn session() -> (Server<Inventory>, Vec<Exchange>) {
    let me = Identity::generate();
    let mut served = sys_b();
    let feed = served.store.subscribe();
    let peers = Peers::new().allow("a", me.public_key(), Rights::read_write());
    let server = Server::new("b", served, Identity::generate(), peers).with_feed(feed);
    let frames = Frames::default();
    let wire = || Capture {
        inner: &server,
        frames: std::sync::Arc::clone(&frames),
    };
    let key = || Identity::from_pkcs8(&me.to_pkcs8()).unwrap();
    let mut peer = RemotePeer::connect("b", Inventory::empty("image").store, wire(), key()).unwrap();
    peer.pull().unwrap();
    peer.sync_from(&sys_a()).unwrap();
    let follower = RemotePeer::connect("b", Inventory::empty("image").store, wire(), key()).unwrap();
    let mut follower = diffsync_peer::PeerFeed::new(follower);
    let _ = diffsync::ChangeFeed::poll(&mut follower, 100, std::time::Duration::ZERO);
    drop((peer, follower));
    let frames = std::mem::take(&mut *frames.lock().unwrap());
    (server, frames)
}

#[test]
fn protocol_frames_and_sealed_calls() {
    let (server, frames) = session();
    assert!(frames.len() >= 6, "a whole session: {}", frames.len());
    let requests: Vec<&Vec<u8>> = frames.iter().map(|(r, _)| r).collect();
    each_seed("a request frame", |rng| {
        let pick = rng.usize(..requests.len());
        let frame = mutate_bytes(rng, requests[pick]);
        let (answer, bytes) = held(|| server.handle(&frame));
        // A stranger's frame (every mutated one: its signature fails) is
        // never unpacked nor buffered beyond itself.
        assert!(
            bytes < (1 << 20) + 8 * frame.len() as u64,
            "held {bytes} for {} bytes",
            frame.len()
        );
        assert!(proto::decode_response(&answer).is_ok());
        // So is a sealed call's body, decoded as a server does once the
        // call's signature verified (the limit is a call's).
        if let Ok(Request::Sealed(sealed)) = proto::decode_request(&frame) {
            let (_, bytes) = held(|| proto::decode_within::<proto::Call>(&sealed.body, proto::MAX_CALL));
            assert!(bytes <= proto::MAX_CALL as u64 + (1 << 20), "held {bytes}");
        }
    });
}

/// A server whose answers a relay mutates before the client reads them.
struct Mutating<'a, A> {
    inner: &'a Server<A>,
    rng: fastrand::Rng,
}

impl<A: diffsync::Sink> Transport for Mutating<'_, A> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, BoxError> {
        let answer = self.inner.call(request)?;
        Ok(if self.rng.u8(..3) == 0 {
            mutate_bytes(&mut self.rng, &answer)
        } else {
            answer
        })
    }
}

#[test]
fn answers_a_client_reads() {
    let (_, frames) = session();
    let answers: Vec<&Vec<u8>> = frames.iter().map(|(_, a)| a).collect();
    each_seed("an answer frame", |rng| {
        let pick = rng.usize(..answers.len());
        let frame = mutate_bytes(rng, answers[pick]);
        let (decoded, bytes) = held(|| proto::decode_response(&frame));
        assert!(bytes < (1 << 20) + 8 * frame.len() as u64, "held {bytes}");
        if let Ok(Response::Signed(signed)) = decoded {
            let (_, bytes) = held(|| proto::decode_within::<Response>(&signed.body, proto::MAX_ANSWER));
            assert!(bytes <= proto::MAX_ANSWER as u64 + (1 << 20), "held {bytes}");
        }
    });
    // Whole sessions whose answers a relay mutates: each pull or push ends
    // in a typed error or completes; the client never panics.
    let (first, n) = cases();
    for seed in first..first + n.div_ceil(16) {
        let me = Identity::generate();
        let peers = Peers::new().allow("a", me.public_key(), Rights::read_write());
        let server = Server::new("b", sys_b(), Identity::generate(), peers);
        let wire = Mutating {
            inner: &server,
            rng: fastrand::Rng::with_seed(seed),
        };
        let ran = catch_unwind(AssertUnwindSafe(|| {
            if let Ok(mut peer) = RemotePeer::connect("b", Inventory::empty("image").store, wire, me) {
                let _ = peer.pull();
                let _ = peer.sync_from(&sys_a());
            }
        }));
        assert!(ran.is_ok(), "a session with mutated answers, seed {seed}, panicked");
    }
}

/// A base file with something in every section.
fn base_document() -> Value {
    let (mut left, mut right) = (sys_a(), sys_b());
    left.name = "left".into();
    right.name = "right".into();
    let mut base = diffsync::bidir::Base::new();
    let opts = diffsync::bidir::BiOptions::new().max_delete_share(None);
    diffsync::bidir::reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
    serde_json::from_slice(&base.to_bytes().unwrap()).unwrap()
}

#[test]
fn base_files() {
    let document = base_document();
    let like = sys_a().store;
    each_seed("a base file", |rng| {
        let bytes = if rng.u8(..4) == 0 {
            mutate_bytes(rng, &serde_json::to_vec(&document).unwrap())
        } else {
            let mut doc = document.clone();
            mutate_json(rng, &mut doc);
            serde_json::to_vec(&doc).unwrap()
        };
        let (read, held_bytes) = held(|| diffsync::bidir::Base::from_bytes(&bytes, &like, "fuzz"));
        assert!(held_bytes < (4 << 20) + 64 * bytes.len() as u64, "held {held_bytes}");
        // A base that reads is one a reconcile can use.
        if let Ok(mut base) = read {
            let (mut left, mut right) = (sys_a(), sys_b());
            let opts = diffsync::bidir::BiOptions::new()
                .max_delete_share(None)
                .dry_run(rng.bool());
            let _ = diffsync::bidir::reconcile(&mut left, &mut right, &mut base, &opts);
        }
    });
}

#[test]
fn diff_json() {
    let diff = sys_a().diff_from(&sys_b()).unwrap();
    let document: Value = serde_json::to_value(&diff).unwrap();
    each_seed("a diff's JSON", |rng| {
        let text = if rng.u8(..4) == 0 {
            mutate_bytes(rng, &serde_json::to_vec(&document).unwrap())
        } else {
            let mut doc = document.clone();
            mutate_json(rng, &mut doc);
            serde_json::to_vec(&doc).unwrap()
        };
        let (read, bytes) = held(|| serde_json::from_slice::<Diff>(&text));
        assert!(bytes < (1 << 20) + 64 * text.len() as u64, "held {bytes}");
        // A diff that reads is one a sync can take or refuse, typed.
        if let Ok(diff) = read {
            let _ = diff.to_string();
            let mut target = sys_a();
            let _ = target.sync_diff(&diff, &mut Options::new().dry_run(rng.bool()));
            let mut store = MemoryAdapter::with_store("other", &[], LocalStore::new("other"));
            let _ = store.sync_diff(&diff, &mut Options::new());
        }
    });
}

#[test]
fn journal_rows() {
    use diffsync_journal::{Journal, RunFilter, RunId};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut runs = Vec::new();
    {
        let mut journal = Journal::open(&path).unwrap();
        runs.push(journal.sync(&mut sys_b(), &sys_a(), &mut Options::new()).unwrap().0);
        let (mut left, mut right) = (sys_a(), sys_b());
        right.name = "right".into();
        let mut base = diffsync::bidir::Base::new();
        let opts = diffsync::bidir::BiOptions::new().max_delete_share(None);
        runs.push(journal.reconcile(&mut left, &mut right, &mut base, &opts).unwrap().0);
    }
    let pristine = std::fs::read(&path).unwrap();
    const CELLS: [(&str, &[&str]); 6] = [
        (
            "runs",
            &[
                "mode",
                "result",
                "totals",
                "phases",
                "options",
                "usual",
                "started_ms",
                "ended_ms",
                "error",
            ],
        ),
        (
            "elements",
            &["action", "identifiers", "before", "after", "side", "parent_type", "key"],
        ),
        ("exceptions", &["outcome"]),
        ("conflicts", &["record", "key"]),
        ("chunks", &["body", "size", "count", "creates", "id"]),
        ("chunk_keys", &["hashes", "id"]),
    ];
    each_seed("a journal row", |rng| {
        std::fs::write(&path, &pristine).unwrap();
        let _ = std::fs::remove_file(dir.path().join("journal.db-wal"));
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            for _ in 0..rng.usize(1..=3) {
                let (table, columns) = CELLS[rng.usize(..CELLS.len())];
                let column = columns[rng.usize(..columns.len())];
                if column == "body" && rng.bool() {
                    // Past the compression: the chunk's JSON, changed, packed again
                    // (its size said right, or not).
                    let (id, body): (i64, Vec<u8>) = conn
                        .query_row("SELECT id, body FROM chunks ORDER BY random() LIMIT 1", [], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .unwrap();
                    let mut doc: Value = serde_json::from_slice(&zstd::decode_all(&body[..]).unwrap()).unwrap();
                    mutate_json(rng, &mut doc);
                    let text = serde_json::to_vec(&doc).unwrap();
                    let size = text.len() as i64 + if rng.u8(..4) == 0 { rng.i64(-2..=2) } else { 0 };
                    let packed = zstd::encode_all(&text[..], 1).unwrap();
                    conn.execute(
                        "UPDATE chunks SET body = ?1, size = ?2 WHERE id = ?3",
                        rusqlite::params![packed, size, id],
                    )
                    .unwrap();
                    continue;
                }
                let current: Option<String> = conn
                    .query_row(
                        &format!("SELECT CAST({column} AS TEXT) FROM {table} LIMIT 1"),
                        [],
                        |r| r.get(0),
                    )
                    .ok()
                    .flatten();
                let value: rusqlite::types::Value = match rng.u8(..5) {
                    0 => rusqlite::types::Value::Null,
                    1 => rusqlite::types::Value::Integer(rng.i64(..)),
                    2 => rusqlite::types::Value::Blob(vec![0xff, 0xfe, 0x00]),
                    3 => match current.and_then(|c| serde_json::from_str::<Value>(&c).ok()) {
                        Some(mut v) => {
                            mutate_json(rng, &mut v);
                            rusqlite::types::Value::Text(v.to_string())
                        }
                        None => rusqlite::types::Value::Text("{".into()),
                    },
                    _ => {
                        rusqlite::types::Value::Text(String::from_utf8_lossy(&mutate_bytes(rng, b"\"applied\"")).into())
                    }
                };
                let _ = conn.execute(&format!("UPDATE {table} SET {column} = ?1"), [value]);
            }
        }
        let journal = Journal::open(&path).unwrap();
        let listed = journal.runs(&RunFilter::default()).unwrap();
        assert_eq!(listed.len() + listed.unreadable.len(), runs.len());
        for &run in &runs {
            let _ = journal.run(run);
            let _ = journal.elements(run);
            let _ = journal.elements_page(run, rng.u32(..40), rng.u32(..40));
            let _ = journal.unusual(run, |_| true, rng.usize(..40));
            let _ = journal.changes_to(run, None);
            let _ = journal.conflicts(run);
            let _ = journal.action_counts(run);
            let _ = journal.left_alone(run);
            let _ = journal.rollback_preview(run, &mut sys_b());
        }
        let text = RunFilter {
            text: Some("a%_\\".into()),
            ..RunFilter::default()
        };
        let _ = journal.runs(&text);
        let _ = journal.run(RunId(i64::MAX));
        let _ = journal.history(diffsync_tests::key_of("device:nyc-r1"));
    });
}

#[test]
fn change_events_a_feed_relays() {
    // The events a peer's feed answers are JSON text: each decoded as a
    // follower does.
    let event = serde_json::to_value(diffsync::ChangeEvent {
        key: diffsync_tests::key_of("device:nyc-r1"),
        kind: diffsync::feed::ChangeKind::Updated,
        origin: Some("loop".into()),
        parent: Some(diffsync_tests::key_of("site:nyc")),
    })
    .unwrap();
    each_seed("a change event", |rng| {
        let mut doc = event.clone();
        mutate_json(rng, &mut doc);
        if let Ok(event) = serde_json::from_value::<diffsync::ChangeEvent>(doc) {
            let _ = event.key.to_string();
        }
    });
}
