//! A peer server and client under attack: what a stranger, a type-limited
//! peer and a relay can make them do.

use std::sync::OnceLock;

use diffsync::{AdapterExt, BoxError, DiffFlags, MemoryAdapter, Options};
use diffsync_peer::identity::{Identity, PublicKey, Rights};
use diffsync_peer::proto::{self, Call, Refusal, Request, Response};
use diffsync_peer::{PeerError, RemotePeer, Server, Transport};
use diffsync_tests::{Inventory, sys_b};

use crate::peer::{empty_image, inventory, serve, serve_rw, serve_with, set};
use diffsync_tests::key_of;

/// A zstd frame body that unpacks to 256 MiB of zeros (about 8 KB packed).
fn bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            std::io::Write::write_all(&mut encoder, &zeros).unwrap();
        }
        encoder.finish().unwrap()
    })
}

/// A compressed frame (tag 1) that claims `claim` bytes unpacked and holds the bomb.
fn bomb_frame(claim: u64) -> Vec<u8> {
    let mut frame = vec![1u8];
    frame.extend_from_slice(&claim.to_le_bytes());
    frame.extend_from_slice(bomb());
    frame
}

/// The most the calling thread held at once while `f` ran, in bytes.
fn peak<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(f()));
    (out.expect("ran"), info.bytes_max)
}

/// A session opened by hand, as a client's code would (to send calls the
/// client never sends).
struct Manual {
    me: Identity,
    session: u64,
    transcript: Vec<u8>,
    seq: u64,
}

impl Manual {
    fn open<A: diffsync::Sink>(server: &Server<A>, me: Identity) -> Manual {
        let hello = proto::Hello {
            version: proto::VERSION,
            hash: proto::HASH.into(),
            capabilities: vec!["zstd".into()],
            nonce: 7,
            key: me.public_key(),
        };
        let challenge = server.handle(&proto::encode(&Request::Hello(hello.clone()), false));
        let Ok(Response::Challenge {
            session,
            nonce,
            key,
            issued,
            ..
        }) = proto::decode_response(&challenge)
        else {
            panic!("no challenge")
        };
        let transcript = proto::transcript(session, 7, nonce, &me.public_key(), &key);
        let auth = Request::Auth {
            session,
            hello,
            nonce,
            issued,
            proof: me.sign(&proto::to_sign(b"client", &transcript, None)),
            schemas: vec![],
        };
        let welcome = proto::decode_response(&server.handle(&proto::encode(&auth, false))).unwrap();
        assert!(matches!(welcome, Response::Signed(_)), "{welcome:?}");
        Manual {
            me,
            session,
            transcript,
            seq: 0,
        }
    }

    /// A call of the session with this body, signed.
    fn call(&mut self, body: Vec<u8>) -> Vec<u8> {
        self.seq += 1;
        let proof = self
            .me
            .sign(&proto::to_sign(b"call", &self.transcript, Some((self.seq, &body))));
        proto::encode(
            &Request::Sealed(proto::Sealed {
                session: self.session,
                seq: self.seq,
                body,
                proof,
            }),
            false,
        )
    }

    /// The server's answer, unpacked (a signed one's body).
    fn answer(frame: &[u8]) -> Response {
        crate::peer::unsigned(frame)
    }
}

#[test]
fn nothing_a_stranger_sends_is_unpacked_and_a_peer_s_calls_are_bounded_before_they_unpack() {
    let (server, me) = serve(sys_b());
    bomb();
    // A stranger's compressed request, a call naming no session, and a
    // call naming an open session with a wrong proof: each holds the bomb,
    // and none makes the server hold more than a few hundred kilobytes.
    let mut open = Manual::open(&server, me);
    let sealed = |session, body: Vec<u8>| {
        proto::encode(
            &Request::Sealed(proto::Sealed {
                session,
                seq: 1,
                body,
                proof: vec![0; 64],
            }),
            false,
        )
    };
    let strangers = [
        ("a compressed request", bomb_frame(1 << 30)),
        ("a compressed request claiming little", bomb_frame(100)),
        ("a call of no session", sealed(42, bomb_frame(1 << 28))),
        ("a call with a wrong proof", sealed(open.session, bomb_frame(1 << 28))),
    ];
    for (what, frame) in strangers {
        let (answer, held) = peak(|| server.handle(&frame));
        assert!(held < 512 << 10, "{what}: the server held {held} bytes");
        let answer = Manual::answer(&answer);
        assert!(
            matches!(
                answer,
                Response::Refused(Refusal::Malformed(_) | Refusal::UnknownSession(_) | Refusal::Unauthorized)
            ),
            "{what}: {answer:?}"
        );
    }
    // An allowed peer's call: one that claims more than a call may unpack
    // is refused before it unpacks; one that claims less than it holds is
    // cut off at its claim.
    let (answer, held) = peak(|| server.handle(&open.call(bomb_frame(1 << 30))));
    assert!(held < 512 << 10, "held {held}");
    assert_eq!(
        Manual::answer(&answer),
        Response::Refused(Refusal::TooLarge {
            limit: proto::MAX_CALL as u64
        })
    );
    let (answer, held) = peak(|| server.handle(&open.call(bomb_frame(1 << 20))));
    assert!(held < 4 << 20, "held {held}");
    assert!(
        matches!(Manual::answer(&answer), Response::Refused(Refusal::Malformed(m)) if m.contains("more than")),
        "{:?}",
        Manual::answer(&answer)
    );
    // The session is still good for honest calls.
    let fetch = open.call(proto::encode(&Call::Fetch(vec![]), false));
    assert!(matches!(
        Manual::answer(&server.handle(&fetch)),
        Response::Models { answered: 0, .. }
    ));
}

#[test]
fn a_session_that_unpacked_its_budget_ends_and_the_client_opens_another() {
    let (server, me) = serve(sys_b());
    let mut open = Manual::open(&server, me);
    // Calls that each claim a full call's worth (and hold something that
    // does not unpack), until the session's budget is spent.
    let full = {
        let mut frame = vec![1u8];
        frame.extend_from_slice(&(proto::MAX_CALL as u64).to_le_bytes());
        frame.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff]);
        frame
    };
    let calls = proto::SESSION_BUDGET / proto::MAX_CALL as u64;
    for _ in 0..calls {
        let answer = Manual::answer(&server.handle(&open.call(full.clone())));
        assert!(matches!(answer, Response::Refused(Refusal::Malformed(_))), "{answer:?}");
    }
    let answer = Manual::answer(&server.handle(&open.call(full)));
    assert_eq!(
        answer,
        Response::Refused(Refusal::Spent {
            budget: proto::SESSION_BUDGET
        })
    );
    let fetch = open.call(proto::encode(&Call::Fetch(vec![]), false));
    assert!(matches!(
        Manual::answer(&server.handle(&fetch)),
        Response::Refused(Refusal::UnknownSession(_))
    ));
}

#[test]
fn a_type_limited_peer_cannot_delete_a_subtree_that_holds_other_types() {
    // The client may write devices only; it deletes a device, whose
    // interfaces would go with it.
    let (server, me) = serve_with(sys_b(), Rights::read_write().only(&["site", "device"]));
    let mut peer = RemotePeer::connect("b", empty_image(), &server, me).unwrap();
    peer.pull().unwrap();
    let mut target = Inventory::empty("local");
    target.store = peer.image().clone();
    target.store.remove(key_of("device:nyc-r1"), true).unwrap();
    let before = server.adapter().store.fingerprint();
    let report = peer
        .sync_from_with(&target, &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap();
    let failed: Vec<String> = report
        .failures()
        .map(|e| {
            format!(
                "{} {}: {}",
                e.model_type(),
                e.key.unique_id(),
                e.outcome.message().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert!(
        failed[0].starts_with("device nyc-r1") && failed[0].contains("may not write \"interface\""),
        "{failed:?}"
    );
    let served = server.adapter();
    assert_eq!(served.store.fingerprint(), before, "nothing of the subtree went");
    assert!(served.log.is_empty(), "no hook ran: {:?}", served.log);
}

#[test]
fn a_delete_within_the_peer_s_types_still_goes() {
    let (server, me) = serve_with(sys_b(), Rights::read_write().only(&["site", "device", "interface"]));
    let mut peer = RemotePeer::connect("b", empty_image(), &server, me).unwrap();
    peer.pull().unwrap();
    let mut target = Inventory::empty("local");
    target.store = peer.image().clone();
    target.store.remove(key_of("device:nyc-r1"), true).unwrap();
    let report = peer.sync_from(&target).unwrap();
    assert!(report.is_success(), "{report}");
    assert_eq!(server.adapter().store.fingerprint(), target.store.fingerprint());
}

/// What a relay in the middle does to each answer it carries.
type Rewrite = Box<dyn FnMut(Response) -> Option<Response>>;

/// A relay between client and server (one that holds a certificate the
/// client trusts): it reads every answer and may replace it.
struct Relay<'a, A> {
    inner: &'a Server<A>,
    rewrite: Rewrite,
}

impl<A: diffsync::Sink> Transport for Relay<'_, A> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, BoxError> {
        let answer = self.inner.call(request)?;
        let decoded = proto::decode_response(&answer)?;
        Ok(match (self.rewrite)(decoded) {
            Some(other) => proto::encode(&other, false),
            None => answer,
        })
    }
}

/// A signed answer with its body's message replaced by `f`'s (the
/// signature kept).
fn resigned(response: Response, f: &mut dyn FnMut(Response) -> Option<Response>) -> Option<Response> {
    let Response::Signed(mut signed) = response else {
        return None;
    };
    let inner: Response = proto::decode(&signed.body).ok()?;
    signed.body = proto::encode(&f(inner)?, false);
    Some(Response::Signed(signed))
}

#[test]
fn a_relay_cannot_change_an_answer_the_client_accepts() {
    let theirs = inventory("b", 5, 4);
    let cases: Vec<(&str, Rewrite)> = vec![
        (
            "a model's values",
            Box::new(|r| {
                resigned(r, &mut |inner| match inner {
                    Response::Models { mut models, answered } if !models.is_empty() => {
                        models[0].values = models[0].values.replace("uplink", "owned");
                        Some(Response::Models { models, answered })
                    }
                    _ => None,
                })
            }),
        ),
        (
            "a round's fingerprints",
            Box::new(|r| {
                resigned(r, &mut |inner| match inner {
                    Response::Reconcile { whole, mut message } => {
                        message.ranges.truncate(1);
                        message.ranges[0].upper = None;
                        message.ranges[0].mode = diffsync_peer::recon::Mode::Skip;
                        Some(Response::Reconcile { whole, message })
                    }
                    _ => None,
                })
            }),
        ),
        (
            "the welcome's rights",
            Box::new(|r| {
                resigned(r, &mut |inner| match inner {
                    Response::Welcome {
                        replica,
                        schemas,
                        whole,
                        ..
                    } => Some(Response::Welcome {
                        replica,
                        schemas,
                        rights: Rights::read_write(),
                        whole,
                    }),
                    _ => None,
                })
            }),
        ),
        (
            "an answer unsigned",
            Box::new(|r| match r {
                Response::Signed(s) => match proto::decode::<Response>(&s.body).ok()? {
                    inner @ Response::Models { .. } => Some(inner),
                    _ => None,
                },
                _ => None,
            }),
        ),
        (
            "a refusal unsigned",
            Box::new(|r| match r {
                Response::Signed(s) => match proto::decode::<Response>(&s.body).ok()? {
                    Response::Models { .. } => Some(Response::Refused(Refusal::Forbidden("all of it".into()))),
                    _ => None,
                },
                _ => None,
            }),
        ),
    ];
    for (what, rewrite) in cases {
        let (server, me) = serve(MemoryAdapter::with_store("b", &[], theirs.clone()));
        let relay = Relay {
            inner: &server,
            rewrite,
        };
        let result = RemotePeer::connect("b", empty_image(), relay, me).and_then(|mut peer| peer.pull().map(|_| peer));
        match result {
            Err(PeerError::Impostor { message, .. }) => assert!(message.contains("sign"), "{what}: {message}"),
            Err(other) => panic!("{what}: {other:?}"),
            Ok(peer) => panic!("{what}: accepted; the image holds {}", peer.image().count_all()),
        }
    }
}

/// A transport that, after the server's challenge to our hello, lets a
/// crowd of strangers send their hellos before our auth goes out; and that
/// loses the answer to our first auth.
struct Crowded<'a, A> {
    inner: &'a Server<A>,
    strangers: usize,
    lose_auth: bool,
}

impl<A: diffsync::Sink> Transport for Crowded<'_, A> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, BoxError> {
        let answer = self.inner.call(request)?;
        match proto::decode_request(request)? {
            Request::Hello(_) => {
                for n in 0..self.strangers {
                    let hello = Request::Hello(proto::Hello {
                        version: proto::VERSION,
                        hash: proto::HASH.into(),
                        capabilities: vec![],
                        nonce: n as u64,
                        key: PublicKey(fastrand::u64(..).to_le_bytes().repeat(4).try_into().unwrap()),
                    });
                    self.inner.call(&proto::encode(&hello, false))?;
                }
            }
            Request::Auth { .. } if self.lose_auth => {
                self.lose_auth = false;
                return Err("connection reset by peer".into());
            }
            _ => {}
        }
        Ok(answer)
    }
}

#[test]
fn a_flood_of_hellos_does_not_lock_an_allowed_peer_out_and_a_lost_handshake_is_tried_again() {
    let (server, me) = serve(sys_b());
    let (_, held) = peak(|| {
        let crowd = Crowded {
            inner: &server,
            strangers: 5_000,
            lose_auth: true,
        };
        let mut peer = RemotePeer::connect("b", empty_image(), crowd, me).unwrap();
        peer.pull().unwrap();
        assert_eq!(peer.image().fingerprint(), sys_b().store.fingerprint());
    });
    // 5,000 hellos left nothing behind on the server.
    assert!(held < 8 << 20, "held {held}");
}

#[test]
fn an_equal_pull_is_one_round_trip_and_a_small_scattered_difference_three() {
    let theirs = inventory("b", 300, 30);
    let (server, me) = serve_rw(MemoryAdapter::with_store("b", &[], theirs.clone()));
    let mut peer = RemotePeer::connect("b", theirs.clone(), &server, me).unwrap();
    assert_eq!(peer.pull().unwrap().traffic.round_trips, 1, "an equal pull");
    assert_eq!(peer.pull().unwrap().traffic.round_trips, 1, "an equal pull");
    // 0.1 % of the models changed, scattered.
    let total = theirs.count_all();
    {
        let served = &mut server.adapter().store;
        for s in (0..300).step_by(12) {
            set(served, "device", &format!("site{s:04}-r{}", s % 30), "role", "core");
        }
    }
    let pulled = peer.pull().unwrap();
    assert_eq!(pulled.fetched, 25, "{pulled:?} of {total}");
    assert_eq!(pulled.traffic.round_trips, 3, "{pulled:?}");
    assert_eq!(peer.image().fingerprint(), server.adapter().store.fingerprint());
}
