//! The peer protocol's messages and their frames.
//!
//! # Version 1
//! Every exchange is one request frame and one response frame. A frame is
//! one byte telling its encoding, then the message: `0` postcard (serde's
//! compact binary form: varints, no field names), `1` the same compressed
//! with zstd. Compression is negotiated: each side says `"zstd"` among
//! its capabilities (hello, challenge), and a side compresses only for a
//! peer that said so, and only a frame that shrinks by at least an eighth
//! (model payloads, long id lists) — never frames of random hashes
//! (fingerprints), which do not.
//!
//! Requests themselves are never compressed: a call's body is (inside
//! [`Sealed`]), so a server reads the first bytes of a request
//! ([`sealed_session`]) and knows whether it belongs to an open session
//! before it accepts more than a handshake's worth of bytes
//! ([`HANDSHAKE_MAX`]): a stranger cannot make it buffer a large body.
//!
//! A session opens in two exchanges. [`Request::Hello`] gives the protocol
//! version, the hash algorithm, capabilities, a nonce and the client's
//! Ed25519 public key, and nothing of its data; [`Response::Challenge`]
//! answers with a session id, the server's nonce and key, and the server's
//! signature of the [`transcript`] (the protocol, the session, both nonces
//! and both keys): a client that pins the server's key knows it is talking
//! to it. [`Request::Auth`] carries the client's signature of the same
//! transcript and its model types with their schema fingerprints
//! ([`schema_fingerprint`](diffsync::digest::schema_fingerprint)); a
//! server that allows the key ([`Peers`](crate::identity::Peers)) answers
//! [`Response::Welcome`]: its replica name, the types the client may see
//! with their fingerprints (a type whose schema differs is refused by
//! name, never diffed), the client's rights, and the fingerprint of all
//! the client may see. An unknown key and a wrong proof get the same
//! [`Refusal::Unauthorized`]: a stranger learns nothing and changes nothing.
//!
//! Then every call is [`Sealed`]: numbered, signed over the transcript, its
//! number and its body's SHA-256, so a replayed or altered call is refused.
//! The calls are [`Call::Reconcile`] rounds (see [`recon`](crate::recon))
//! until the client knows the differences, and [`Call::Fetch`] of the
//! models it lacks, in batches. Both nonces make the session's seed
//! ([`session_seed`](crate::index::session_seed)), which keys every id and
//! fingerprint of the session.

use serde::{Deserialize, Serialize};

use crate::identity::{PublicKey, Rights};
use crate::index::{RangePrint, ShortId};
use crate::recon::Message;

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;

/// The hash algorithm of ids and fingerprints.
pub const HASH: &str = "xxh3-128";

/// What a client says when it opens a session: nothing about its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version.
    pub version: u32,
    /// The hash algorithm of ids and fingerprints.
    pub hash: String,
    /// What it can do beyond the base protocol (`"zstd"`).
    pub capabilities: Vec<String>,
    /// Its share of the session's seed, and of what both sign.
    pub nonce: u64,
    /// Its public key.
    pub key: PublicKey,
}

/// A request, client to server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Opens a session.
    Hello(Hello),
    /// Proves the client holds its key, and says its model types.
    Auth {
        /// The session the challenge opened.
        session: u64,
        /// The client's signature of the session's transcript.
        proof: Vec<u8>,
        /// Each model type it holds, with its schema fingerprint.
        schemas: Vec<(String, u64)>,
    },
    /// A call in an authenticated session.
    Sealed(Sealed),
}

/// A call in an authenticated session, signed with the session's numbers:
/// a copy sent again (by a proxy, an attacker or a confused retry) is
/// refused, and so is one whose body was changed on the way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The session.
    pub session: u64,
    /// Higher than every earlier call's of the session.
    pub seq: u64,
    /// The [`Call`], as a frame ([`encode`]: compressed when the server
    /// takes zstd and it pays).
    pub body: Vec<u8>,
    /// The client's signature of the session's transcript, `seq` and the
    /// body's SHA-256.
    pub proof: Vec<u8>,
}

/// What an authenticated session asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// One round of reconciliation.
    Reconcile(Message),
    /// The models with these ids.
    Fetch(Vec<ShortId>),
    /// Takes a new snapshot of the store for this session (the next pull
    /// of a long-lived session): answered with its whole fingerprint.
    Renew,
    /// Writes changes to the server's system through its adapter's hooks.
    Push(Push),
    /// The server's change events after a cursor (a long poll).
    Changes {
        /// Where the last answer ended (`None`: from now on).
        since: Option<Cursor>,
        /// Events wanted at most.
        max: u32,
        /// How long the server may wait for one, in milliseconds.
        wait_ms: u32,
    },
}

/// A place in a server's stream of change events: which run of the server
/// (a restarted server starts another) and the number of the next event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The server's run.
    pub epoch: u64,
    /// The next event's number.
    pub seq: u64,
}

/// A batch of changes for the server's system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// Chosen by the client; a batch sent again (a retry after a lost
    /// answer) is answered from the server's memory, never applied twice.
    pub batch: u64,
    /// Whether a failed change lets the others go on.
    pub continue_on_failure: bool,
    /// The changes, parents before children.
    pub changes: Vec<WireChange>,
}

/// One change of a [`Push`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireChange {
    /// `"create"`, `"update"` or `"delete"`.
    pub action: String,
    /// The model's key bytes.
    pub key: Vec<u8>,
    /// For a create: the parent's key bytes, if it has one.
    pub parent: Option<Vec<u8>>,
    /// For a create: `{"identifiers":..,"attributes":..}` (all of them); for
    /// an update: the same with the changed attributes only.
    pub values: String,
    /// The item digest the client believes the server holds for this key
    /// (`None`: absent). A server that holds another refuses the change:
    /// someone wrote it since the client's last pull.
    pub expected: Option<[u8; 16]>,
    /// For a delete: its whole subtree goes with it.
    pub subtree: bool,
}

/// What became of one change of a [`Push`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pushed {
    /// Written to the system and its store.
    Applied,
    /// Not attempted: the server holds another version than expected, or
    /// the client may not write this type.
    Refused(String),
    /// The server's hook failed.
    Failed(String),
    /// Not attempted (its parent failed, or the batch stopped).
    Skipped(String),
}

/// A response, server to client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The server's side of the handshake.
    Challenge {
        /// The session's id.
        session: u64,
        /// The server's share of the seed.
        nonce: u64,
        /// The server's public key.
        key: PublicKey,
        /// The server's signature of the session's transcript.
        proof: Vec<u8>,
        /// What the server can do beyond the base protocol (`"zstd"`).
        capabilities: Vec<String>,
    },
    /// The session is open.
    Welcome {
        /// The server's replica name.
        replica: String,
        /// The model types the client may see, with their schema fingerprints.
        schemas: Vec<(String, u64)>,
        /// What the client may do.
        rights: Rights,
        /// The fingerprint of everything the client may see, in this
        /// session's keying: a client whose own equals it is done, and one
        /// that pulled knows whether it got everything.
        whole: RangePrint,
    },
    /// The fingerprint of everything the client may see, in the
    /// session's snapshot just taken.
    Renewed(RangePrint),
    /// The server's answer to a round.
    Reconcile(Message),
    /// The models asked for.
    Models(Vec<WireModel>),
    /// What became of each change of a push, in its order.
    Pushed(Vec<Pushed>),
    /// Change events, oldest first.
    Changes {
        /// Each event as JSON ([`ChangeEvent`](diffsync::ChangeEvent)).
        events: Vec<String>,
        /// Where the next request starts.
        next: Cursor,
        /// Events may have been lost before these (the server's buffer
        /// overflowed, it restarted, or its own feed had a gap): resync.
        gap: bool,
    },
    /// The request was refused; nothing was changed.
    Refused(Refusal),
}

/// What both sides sign: the protocol, the session, both nonces and both keys.
pub fn transcript(
    session: u64,
    client_nonce: u64,
    server_nonce: u64,
    client: &PublicKey,
    server: &PublicKey,
) -> Vec<u8> {
    let mut t = Vec::with_capacity(96);
    t.extend_from_slice(b"diffsync/1");
    t.extend_from_slice(&session.to_le_bytes());
    t.extend_from_slice(&client_nonce.to_le_bytes());
    t.extend_from_slice(&server_nonce.to_le_bytes());
    t.extend_from_slice(&client.0);
    t.extend_from_slice(&server.0);
    t
}

/// What a side signs: its role, then the transcript (and, for a call, its
/// number and its body's SHA-256).
pub fn to_sign(role: &[u8], transcript: &[u8], call: Option<(u64, &[u8])>) -> Vec<u8> {
    let mut m = Vec::with_capacity(role.len() + transcript.len() + 40);
    m.extend_from_slice(role);
    m.extend_from_slice(transcript);
    if let Some((seq, body)) = call {
        m.extend_from_slice(&seq.to_le_bytes());
        m.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
    }
    m
}

/// One model as it travels: its key and its parent's, as canonical key
/// bytes, and its values as JSON text (what any model serializes to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireModel {
    /// [`ModelKey::to_bytes`](diffsync::ModelKey::to_bytes) of the model.
    pub key: Vec<u8>,
    /// The same of its parent, if it has one.
    pub parent: Option<Vec<u8>>,
    /// `{"identifiers": {..}, "attributes": {..}}`.
    pub values: String,
}

/// Why a server refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The protocol versions differ.
    #[error("protocol version {theirs} is not spoken here (version {ours})")]
    Version {
        /// The server's.
        ours: u32,
        /// The client's.
        theirs: u32,
    },
    /// The hash algorithms differ.
    #[error("hash {theirs:?} is not used here ({ours:?})")]
    Hash {
        /// The server's.
        ours: String,
        /// The client's.
        theirs: String,
    },
    /// The client's key is not allowed, or its proof is wrong: one answer
    /// for both, so a stranger learns nothing.
    #[error("not authorized")]
    Unauthorized,
    /// The client may not do this (read, or see a model type).
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// A call whose number was used before in its session (a replay).
    #[error("call {seq} of this session was already answered (a replay?)")]
    Replay {
        /// Its number.
        seq: u64,
    },
    /// A model type's schema differs between the two sides: its digests
    /// would differ for equal values, so it is not compared at all.
    #[error("model type {model_type:?} has another schema on {replica:?}: update one side's schema first")]
    Schema {
        /// The type.
        model_type: String,
        /// The server's replica name.
        replica: String,
    },
    /// The session is unknown (expired, or the server restarted): start a new one.
    #[error("unknown session {0}: start a new one")]
    UnknownSession(u64),
    /// The request could not be read or makes no sense.
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// A frame could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable frame: {0}")]
pub struct BadFrame(pub String);

const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// Frames shorter than this are sent as they are.
const COMPRESS_FROM: usize = 512;

/// A message as a frame.
pub fn encode<T: Serialize>(message: &T, compress: bool) -> Vec<u8> {
    let body = postcard::to_stdvec(message).expect("the protocol's messages serialize to postcard");
    if compress
        && body.len() >= COMPRESS_FROM
        && let Ok(packed) = zstd::bulk::compress(&body, 3)
        && packed.len() + packed.len() / 7 < body.len()
    {
        let mut frame = Vec::with_capacity(packed.len() + 9);
        frame.push(ZSTD);
        frame.extend_from_slice(&(body.len() as u64).to_le_bytes());
        frame.extend_from_slice(&packed);
        return frame;
    }
    let mut frame = Vec::with_capacity(body.len() + 1);
    frame.push(RAW);
    frame.extend_from_slice(&body);
    frame
}

/// The largest message a frame may unpack to (a guard against a frame
/// that claims more than any peer would send).
pub const MAX_MESSAGE: usize = 1 << 30;

/// How many bytes a frame's message has unpacked, as its frame says (the
/// body of a [`Sealed`] call, itself a frame, counts as it travels: see
/// [`sealed_unpacked_extra`]).
pub fn unpacked_len(frame: &[u8]) -> usize {
    match frame.split_first() {
        Some((&ZSTD, rest)) => rest.split_first_chunk::<8>().map_or(frame.len(), |(len, _)| {
            usize::try_from(u64::from_le_bytes(*len)).unwrap_or(usize::MAX)
        }),
        _ => frame.len(),
    }
}

/// What a sealed call's body adds unpacked over its size on the wire.
pub fn sealed_unpacked_extra(sealed: &Sealed) -> usize {
    unpacked_len(&sealed.body).saturating_sub(sealed.body.len())
}

/// The largest request that is not a call of an open session: a hello or
/// an auth (a few hundred bytes, plus the schema list), or anything a
/// stranger sends.
pub const HANDSHAKE_MAX: usize = 64 << 10;

/// Bytes of a request frame that always hold its kind and, for a
/// [`Sealed`] call, its session ([`sealed_session`]).
pub const HEAD: usize = 12;

/// The session a request frame's first bytes name, if it is a
/// [`Sealed`] call (the frame's tag, the request's variant and the
/// session id, all before any payload).
pub fn sealed_session(head: &[u8]) -> Option<u64> {
    let (&RAW, rest) = head.split_first()? else {
        return None;
    };
    let (variant, rest) = postcard::take_from_bytes::<u32>(rest).ok()?;
    if variant != 2 {
        return None;
    }
    postcard::take_from_bytes::<u64>(rest).ok().map(|(session, _)| session)
}

/// A frame's message.
pub fn decode<T: for<'de> Deserialize<'de>>(frame: &[u8]) -> Result<T, BadFrame> {
    let (&kind, rest) = frame.split_first().ok_or_else(|| BadFrame("empty".into()))?;
    match kind {
        RAW => postcard::from_bytes(rest).map_err(|e| BadFrame(e.to_string())),
        ZSTD => {
            let (len, packed) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| BadFrame("a compressed frame without its length".into()))?;
            let len = usize::try_from(u64::from_le_bytes(*len)).unwrap_or(usize::MAX);
            if len > MAX_MESSAGE {
                return Err(BadFrame(format!("claims {len} bytes unpacked")));
            }
            // The claimed length bounds the output but is not trusted for
            // an allocation: the body grows with what actually unpacks.
            let mut body = Vec::with_capacity(len.min(1 << 20));
            let decoder = zstd::stream::read::Decoder::new(packed).map_err(|e| BadFrame(e.to_string()))?;
            std::io::Read::read_to_end(&mut std::io::Read::take(decoder, len as u64 + 1), &mut body)
                .map_err(|e| BadFrame(e.to_string()))?;
            if body.len() != len {
                return Err(BadFrame(format!(
                    "unpacks to {} bytes, not the {len} it claims",
                    body.len()
                )));
            }
            postcard::from_bytes(&body).map_err(|e| BadFrame(e.to_string()))
        }
        other => Err(BadFrame(format!("unknown encoding {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_call_names_its_session_in_its_first_bytes() {
        let sealed = Request::Sealed(Sealed {
            session: u64::MAX - 3,
            seq: 9,
            body: encode(&Call::Fetch(vec![[1; 8]; 4_000]), true),
            proof: vec![0; 64],
        });
        let frame = encode(&sealed, false);
        assert_eq!(sealed_session(&frame[..HEAD]), Some(u64::MAX - 3));
        let hello = encode(
            &Request::Hello(Hello {
                version: VERSION,
                hash: HASH.into(),
                capabilities: Vec::new(),
                nonce: 1,
                key: PublicKey([0; 32]),
            }),
            false,
        );
        assert_eq!(sealed_session(&hello), None);
        assert_eq!(sealed_session(&[1, 2, 3]), None, "a compressed request is no call");
        assert_eq!(sealed_session(&[0, 2]), None, "too short to say");
    }

    #[test]
    fn frames_round_trip_and_compress_only_what_shrinks() {
        let models = Response::Models(
            (0..200)
                .map(|i| WireModel {
                    key: format!("device:nyc__r{i}").into_bytes(),
                    parent: Some(b"site:nyc".to_vec()),
                    values: format!(r#"{{"identifiers":{{"name":"r{i}"}},"attributes":{{"role":"edge"}}}}"#),
                })
                .collect(),
        );
        let frame = encode(&models, true);
        assert_eq!(frame[0], ZSTD);
        assert_eq!(decode::<Response>(&frame).unwrap(), models);
        let random = Call::Fetch(
            (0..200u64)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes())
                .collect(),
        );
        let frame = encode(&random, true);
        assert_eq!(frame[0], RAW, "random ids do not shrink");
        assert_eq!(decode::<Call>(&frame).unwrap(), random);
        assert!(decode::<Request>(&[7, 1, 2]).is_err());
        assert!(decode::<Request>(&[]).is_err());
        let mut lying = vec![ZSTD];
        lying.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Request>(&lying).is_err());
        // A frame that claims less (or more) than it unpacks to is refused,
        // and a large claim is not allocated up front.
        let mut short = encode(&models, true);
        short[1..9].copy_from_slice(&100u64.to_le_bytes());
        assert!(decode::<Response>(&short).is_err());
        let mut long = encode(&models, true);
        long[1..9].copy_from_slice(&((MAX_MESSAGE as u64) - 1).to_le_bytes());
        assert!(decode::<Response>(&long).is_err());
    }
}
