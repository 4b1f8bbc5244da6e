//! The peer protocol's messages and their frames.
//!
//! # Version 2
//! Every exchange is one request frame and one response frame. A frame is
//! one byte telling its encoding, then the message: `0` postcard (serde's
//! compact binary form: varints, no field names), `1` the same compressed
//! with zstd. Compression is negotiated: each side says `"zstd"` among
//! its capabilities (hello, challenge), and a side compresses only for a
//! peer that said so, and only a frame that shrinks by at least an eighth
//! (model payloads, long id lists) — never frames of random hashes
//! (fingerprints), which do not.
//!
//! # Nothing unpacked for a stranger
//! Requests and responses are never compressed as a whole: only the body
//! of a [`Sealed`] call and of a [`Signed`] answer is, and it is unpacked
//! only after its signature verifies. A server reads a request's first
//! bytes ([`sealed_session`]) and knows whether it belongs to an open
//! session before it accepts more than [`HANDSHAKE_MAX`] bytes; a call's
//! body may unpack to [`MAX_CALL`] bytes, a session's calls to
//! [`SESSION_BUDGET`] in all, and both are checked while the body unpacks
//! (a body that claims less than it unpacks to is cut off at its claim).
//! A client takes an answer of at most [`MAX_ANSWER`] bytes unpacked.
//!
//! # The handshake
//! A session opens in two exchanges. [`Request::Hello`] gives the protocol
//! version, the hash algorithm, capabilities, a nonce and the client's
//! Ed25519 public key, and nothing of its data; [`Response::Challenge`]
//! answers with a session id, the server's nonce and key, the time it was
//! issued, and the server's signature of the [`transcript`] (the protocol,
//! the session, both nonces and both keys): a client that pins the
//! server's key knows it is talking to it. The server keeps nothing for a
//! hello: the session id is a keyed hash (a MAC under a secret of the
//! server's run) of what the hello and the challenge said, so a flood of
//! hellos fills no table and pushes no allowed peer out. [`Request::Auth`]
//! repeats the hello and the challenge's numbers (the server checks them
//! against the session id, and that the challenge is recent), carries the
//! client's signature of the same transcript and its model types with
//! their schema fingerprints
//! ([`schema_fingerprint`](diffsync::digest::schema_fingerprint)); a
//! server that allows the key ([`Peers`](crate::identity::Peers)) answers
//! [`Response::Welcome`]: its replica name, the types the client may see
//! with their fingerprints (a type whose schema differs is refused by
//! name, never diffed), the client's rights, and the fingerprint of all
//! the client may see. An unknown key and a wrong proof get the same
//! [`Refusal::Unauthorized`]: a stranger learns nothing and changes nothing.
//!
//! # Calls and answers
//! Then every call is [`Sealed`]: numbered, signed over the transcript, its
//! number and its body's SHA-256, so a replayed or altered call is refused.
//! Every answer of the session (the welcome included, as number 0) is
//! [`Signed`] the same way by the server, so a relay that holds a
//! certificate the client trusts still cannot change a model, a
//! fingerprint or a push's outcome: the client refuses an answer that does
//! not verify ([`PeerError::Impostor`](crate::PeerError::Impostor)). The
//! only answers not signed are those that change nothing: the challenge
//! (signed in itself), a refusal of a hello, and [`Refusal::UnknownSession`].
//!
//! The calls are [`Call::Reconcile`] rounds (see [`recon`](crate::recon))
//! until the client knows the differences — the first round of a pull
//! takes a new snapshot of the server's store and answers its whole
//! fingerprint, so an equal pull is one round trip — and [`Call::Fetch`]
//! of the models it lacks, in batches. Both nonces make the session's seed
//! ([`session_seed`](crate::index::session_seed)), which keys every id and
//! fingerprint of the session.

use serde::{Deserialize, Serialize};

use crate::identity::{PublicKey, Rights};
use crate::index::{RangePrint, ShortId};
use crate::recon::Message;

/// The protocol version this crate speaks.
pub const VERSION: u32 = 2;

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
        /// The hello the challenge answered (the server keeps nothing
        /// between the two: it checks them against the session id).
        hello: Hello,
        /// The server's nonce, from the challenge.
        nonce: u64,
        /// When the challenge was issued, from the challenge.
        issued: u64,
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
    /// One round of reconciliation. `renew`: take a new snapshot of the
    /// store first (the first round of a pull on a session kept from
    /// before), answered with its whole fingerprint.
    Reconcile {
        /// Take a new snapshot before answering.
        renew: bool,
        /// The round.
        message: Message,
    },
    /// The models with these ids: answered in order, as many as fit in one
    /// answer ([`Response::Models`] says how many ids it took).
    Fetch(Vec<ShortId>),
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
    /// Not attempted: the server holds another version than expected.
    Refused(String),
    /// Not attempted: the change writes (or, deleting a subtree, removes)
    /// a model of a type the client may not write. Nothing of it was done.
    Forbidden {
        /// The change's key.
        key: String,
        /// The type the client may not write.
        model_type: String,
    },
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
        /// When the challenge was issued (seconds since the epoch, the
        /// server's clock): an auth must come soon after.
        issued: u64,
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
    /// The server's answer to a round, and with a round that renewed the
    /// snapshot, the snapshot's whole fingerprint.
    Reconcile {
        /// The fingerprint of everything the client may see, when the
        /// round took a new snapshot.
        whole: Option<RangePrint>,
        /// The answer.
        message: Message,
    },
    /// The models asked for, for the first `answered` ids of the fetch (a
    /// model gone since the snapshot is left out): the client asks again
    /// for the rest.
    Models {
        /// The models.
        models: Vec<WireModel>,
        /// How many of the fetch's ids this answers.
        answered: u32,
    },
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
    /// An answer of an open session, signed by the server.
    Signed(Signed),
}

/// An answer of an open session, bound to it: the server's signature of
/// the transcript, the call's number (0 for the welcome) and the body's
/// SHA-256. A client unpacks the body only once the signature verifies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// The number of the call answered (0: the auth).
    pub seq: u64,
    /// The [`Response`], as a frame ([`encode`]: compressed when the client
    /// takes zstd and it pays).
    pub body: Vec<u8>,
    /// The server's signature.
    pub proof: Vec<u8>,
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
    /// A call unpacks to more than a call may ([`MAX_CALL`]).
    #[error("the call unpacks to more than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The session's calls unpacked all a session may
    /// ([`SESSION_BUDGET`]); the session is over: start a new one.
    #[error("the session used its {budget} bytes: start a new one")]
    Spent {
        /// The budget.
        budget: u64,
    },
}

/// A frame could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable frame: {0}")]
pub struct BadFrame(pub String);

const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// The largest zstd window a frame may need (2^23 bytes).
const WINDOW_LOG_MAX: u32 = 23;
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

/// The most a call's body may unpack to (a push of 2,000 changes is a
/// few megabytes; a client splits larger ones).
pub const MAX_CALL: usize = 64 << 20;

/// The most all calls of one session may unpack to together; then the
/// session ends and the client opens another.
pub const SESSION_BUDGET: u64 = 4 << 30;

/// The most an answer may unpack to (a fetch's answer is filled to
/// [`ANSWER_FILL`]; one model larger than that still fits).
pub const MAX_ANSWER: usize = 256 << 20;

/// How full a server fills one answer of models before it leaves the rest
/// of a fetch for the next call.
pub const ANSWER_FILL: usize = 32 << 20;

/// The largest request a server takes on the wire: a call of
/// [`MAX_CALL`] and its envelope.
pub const MAX_REQUEST: usize = MAX_CALL + 4096;

/// How many bytes a frame's message has unpacked, as its frame says (the
/// body of a [`Sealed`] call or a [`Signed`] answer, itself a frame,
/// counts as it travels: see [`body_unpacked_extra`]).
pub fn unpacked_len(frame: &[u8]) -> usize {
    match frame.split_first() {
        Some((&ZSTD, rest)) => rest.split_first_chunk::<8>().map_or(frame.len(), |(len, _)| {
            usize::try_from(u64::from_le_bytes(*len)).unwrap_or(usize::MAX)
        }),
        _ => frame.len(),
    }
}

/// What a sealed call's or a signed answer's body adds unpacked over its
/// size on the wire.
pub fn body_unpacked_extra(body: &[u8]) -> usize {
    unpacked_len(body).saturating_sub(body.len())
}

/// How many bytes a request frame carries unpacked: its own, and what a
/// [`Sealed`] call's body adds. Read from the envelope: nothing unpacked.
pub fn request_carries(frame: &[u8]) -> usize {
    unpacked_len(frame) + enclosed_body(frame, 2, true).map_or(0, body_unpacked_extra)
}

/// How many bytes a response frame carries unpacked: its own, and what a
/// [`Signed`] answer's body adds. Read from the envelope: nothing unpacked.
pub fn response_carries(frame: &[u8]) -> usize {
    unpacked_len(frame) + enclosed_body(frame, 7, false).map_or(0, body_unpacked_extra)
}

/// The body of an uncompressed frame whose message is the enum `variant`
/// (`Request::Sealed`, `Response::Signed`), found by walking the varints
/// before it: the session id (a sealed call's only), the call's number,
/// the body's length.
fn enclosed_body(frame: &[u8], variant: u32, session: bool) -> Option<&[u8]> {
    let (&RAW, rest) = frame.split_first()? else {
        return None;
    };
    let (found, mut rest) = postcard::take_from_bytes::<u32>(rest).ok()?;
    if found != variant {
        return None;
    }
    if session {
        rest = postcard::take_from_bytes::<u64>(rest).ok()?.1;
    }
    let (_seq, rest) = postcard::take_from_bytes::<u64>(rest).ok()?;
    let (len, rest) = postcard::take_from_bytes::<u64>(rest).ok()?;
    rest.get(..usize::try_from(len).ok()?)
}

/// The largest request that is not a call of an open session: a hello or
/// an auth (a few hundred bytes, plus the schema list), or anything a
/// stranger sends. Also the largest answer a client takes before the
/// server is authenticated (a challenge).
pub const HANDSHAKE_MAX: usize = 16 << 10;

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

/// A request frame's message: never compressed as a whole, and no larger
/// than a handshake unless it is a sealed call ([`MAX_REQUEST`]). Nothing
/// of a call's body is unpacked here.
pub fn decode_request(frame: &[u8]) -> Result<Request, BadFrame> {
    match frame.first() {
        Some(&RAW) => {}
        Some(_) => return Err(BadFrame("a request is never compressed as a whole".into())),
        None => return Err(BadFrame("empty".into())),
    }
    let limit = match sealed_session(&frame[..frame.len().min(HEAD)]) {
        Some(_) => MAX_REQUEST,
        None => HANDSHAKE_MAX,
    };
    if frame.len() > limit {
        return Err(BadFrame(format!(
            "{} bytes, more than the {limit} such a request may have",
            frame.len()
        )));
    }
    decode_within(frame, 0)
}

/// A response frame as it arrives, before anything in it is trusted: not
/// compressed as a whole (a signed answer's body is, and is unpacked with
/// [`decode_within`] once its signature verifies).
pub fn decode_response(frame: &[u8]) -> Result<Response, BadFrame> {
    decode_within(frame, 0)
}

/// A frame's message, unpacking at most `limit` bytes (0: a compressed
/// frame is refused). The unpacked size is checked as the frame unpacks:
/// a frame that claims more than `limit` is refused before, one that
/// unpacks to more than it claims is cut off at its claim.
pub fn decode_within<T: for<'de> Deserialize<'de>>(frame: &[u8], limit: usize) -> Result<T, BadFrame> {
    let (&kind, rest) = frame.split_first().ok_or_else(|| BadFrame("empty".into()))?;
    match kind {
        RAW => postcard::from_bytes(rest).map_err(|e| BadFrame(e.to_string())),
        ZSTD if limit == 0 => Err(BadFrame("a compressed frame where none is taken".into())),
        ZSTD => {
            let (len, packed) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| BadFrame("a compressed frame without its length".into()))?;
            let len = usize::try_from(u64::from_le_bytes(*len)).unwrap_or(usize::MAX);
            if len > limit {
                return Err(BadFrame(format!("claims {len} bytes unpacked, more than {limit}")));
            }
            // The claimed length bounds the output but is not trusted for
            // an allocation: the body grows with what actually unpacks.
            let mut body = Vec::with_capacity(len.min(1 << 20));
            let mut decoder = zstd::stream::read::Decoder::new(packed).map_err(|e| BadFrame(e.to_string()))?;
            // The decoder's window (C memory, outside `limit`) is at most
            // 8 MiB, whatever the frame asks for: level 3 uses 2 MiB.
            decoder
                .window_log_max(WINDOW_LOG_MAX)
                .map_err(|e| BadFrame(e.to_string()))?;
            std::io::Read::read_to_end(&mut std::io::Read::take(decoder, len as u64 + 1), &mut body)
                .map_err(|e| BadFrame(e.to_string()))?;
            if body.len() != len {
                return Err(BadFrame(format!(
                    "unpacks to {}{} bytes, not the {len} it claims",
                    if body.len() > len { "more than " } else { "" },
                    body.len().min(len)
                )));
            }
            postcard::from_bytes(&body).map_err(|e| BadFrame(e.to_string()))
        }
        other => Err(BadFrame(format!("unknown encoding {other}"))),
    }
}

/// A frame's message, unpacking at most [`MAX_ANSWER`] bytes (a frame this
/// side wrote, or an answer whose signature verified).
pub fn decode<T: for<'de> Deserialize<'de>>(frame: &[u8]) -> Result<T, BadFrame> {
    decode_within(frame, MAX_ANSWER)
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
    fn what_a_frame_carries_is_read_from_its_envelope() {
        let body = encode(&Call::Fetch(vec![[1; 8]; 4_000]), true);
        let unpacked = unpacked_len(&body);
        assert!(unpacked > body.len() * 4, "{unpacked}");
        let sealed = encode(
            &Request::Sealed(Sealed {
                session: u64::MAX - 3,
                seq: 300,
                body: body.clone(),
                proof: vec![0; 64],
            }),
            false,
        );
        assert_eq!(request_carries(&sealed), sealed.len() + unpacked - body.len());
        let signed = encode(
            &Response::Signed(Signed {
                seq: 300,
                body: body.clone(),
                proof: vec![0; 64],
            }),
            false,
        );
        assert_eq!(response_carries(&signed), signed.len() + unpacked - body.len());
        // Other messages carry what they are; a frame cut short, too.
        let refused = encode(&Response::Refused(Refusal::Unauthorized), false);
        assert_eq!(response_carries(&refused), refused.len());
        assert_eq!(response_carries(&signed[..20]), 20);
        assert_eq!(request_carries(&signed), signed.len(), "a response read as a request");
    }

    #[test]
    fn frames_round_trip_and_compress_only_what_shrinks() {
        let models = Response::Models {
            models: (0..200)
                .map(|i| WireModel {
                    key: format!("device:nyc__r{i}").into_bytes(),
                    parent: Some(b"site:nyc".to_vec()),
                    values: format!(r#"{{"identifiers":{{"name":"r{i}"}},"attributes":{{"role":"edge"}}}}"#),
                })
                .collect(),
            answered: 200,
        };
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
        long[1..9].copy_from_slice(&((MAX_ANSWER as u64) - 1).to_le_bytes());
        assert!(decode::<Response>(&long).is_err());
    }
}
