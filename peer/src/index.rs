//! A store's models in key order, with the sums that give any range's
//! fingerprint in constant time.

use diffsync::LocalStore;
use diffsync::digest::Digest;
use xxhash_rust::xxh3::{xxh3_64_with_seed, xxh3_128_with_seed};

/// One model in the index: its canonical key bytes and its session id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The key's canonical bytes ([`ModelKey::to_bytes`](diffsync::ModelKey::to_bytes)):
    /// the order ranges are cut in.
    pub key: Vec<u8>,
    /// The model's id in this session: a keyed hash of its key and its
    /// fingerprint term (so an edit or a move changes it).
    pub id: u128,
}

/// An id as item lists carry it: the low 64 bits of the session id, as
/// bytes (eight on the wire, where a varint of a random number takes ten).
pub type ShortId = [u8; 8];

/// The short form of an id.
pub fn short(id: u128) -> ShortId {
    (id as u64).to_le_bytes()
}

/// A range's fingerprint: a keyed hash of the count and the wrapping sum of
/// the ids in it. Keyed by the session's seed, which neither side's data
/// can know in advance: a writer cannot craft models whose sums collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RangePrint(pub [u8; 16]);

/// A store's models in key order, for one session.
///
/// ```
/// use diffsync_peer::index::Index;
///
/// let index = Index::from_terms([(vec![2], 20), (vec![1], 10)].map(|(k, d)| (k, diffsync::digest::Digest(d))), 7);
/// assert_eq!(index.len(), 2);
/// assert_eq!(index.items()[0].key, vec![1]);
/// assert_eq!(index.fingerprint(0, 2), Index::from_terms(
///     [(vec![1], 10), (vec![2], 20)].map(|(k, d)| (k, diffsync::digest::Digest(d))), 7).fingerprint(0, 2));
/// ```
#[derive(Clone, Debug)]
pub struct Index {
    items: Vec<Item>,
    /// `prefix[i]` is the wrapping sum of the first `i` ids.
    prefix: Vec<u128>,
    seed: u64,
}

impl Index {
    /// The index of a store's models of the types `keep` takes (those
    /// flagged IGNORE left out).
    pub fn build(store: &LocalStore, seed: u64, keep: impl Fn(&str) -> bool) -> Index {
        Index::from_terms(
            store
                .terms()
                .filter(|(k, _)| keep(k.model_type()))
                .map(|(k, term)| (k.to_bytes(), term)),
            seed,
        )
    }

    /// The fingerprint of all of a store's models of the types `keep`
    /// takes, as [`build`](Index::build)`(..).fingerprint(0, len)` gives it,
    /// without sorting (a range's fingerprint depends on the sum and count
    /// of its ids only).
    pub fn whole_of(store: &LocalStore, seed: u64, keep: impl Fn(&str) -> bool) -> RangePrint {
        let (mut sum, mut count) = (0u128, 0u64);
        for (k, term) in store.terms().filter(|(k, _)| keep(k.model_type())) {
            sum = sum.wrapping_add(item_id(&k.to_bytes(), term, seed));
            count += 1;
        }
        print_of(sum, count, seed)
    }

    /// The index of (key bytes, term) pairs.
    pub fn from_terms(terms: impl IntoIterator<Item = (Vec<u8>, Digest)>, seed: u64) -> Index {
        let mut items: Vec<Item> = terms
            .into_iter()
            .map(|(key, term)| {
                let id = item_id(&key, term, seed);
                Item { key, id }
            })
            .collect();
        items.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let mut prefix = Vec::with_capacity(items.len() + 1);
        let mut sum = 0u128;
        prefix.push(0);
        for it in &items {
            sum = sum.wrapping_add(it.id);
            prefix.push(sum);
        }
        Index { items, prefix, seed }
    }

    /// How many models.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The models, in key order.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The first position whose key is at least `bound` (`None`: the end).
    pub fn position(&self, bound: Option<&[u8]>) -> usize {
        match bound {
            None => self.items.len(),
            Some(b) => self.items.partition_point(|it| it.key.as_slice() < b),
        }
    }

    /// The fingerprint of the models at positions `from..to`.
    pub fn fingerprint(&self, from: usize, to: usize) -> RangePrint {
        let sum = self.prefix[to].wrapping_sub(self.prefix[from]);
        print_of(sum, (to - from) as u64, self.seed)
    }

    /// The shortest bound that falls after the key at `at - 1` and at or
    /// before the key at `at`: where a split between them is cut.
    pub fn bound_before(&self, at: usize) -> Vec<u8> {
        let next = &self.items[at].key;
        if at == 0 {
            return next[..1.min(next.len())].to_vec();
        }
        let prev = &self.items[at - 1].key;
        let shared = prev.iter().zip(next).take_while(|(a, b)| a == b).count();
        next[..(shared + 1).min(next.len())].to_vec()
    }
}

/// The fingerprint of ids summing to `sum`, `count` of them.
fn print_of(sum: u128, count: u64, seed: u64) -> RangePrint {
    let mut buf = [0u8; 24];
    buf[..16].copy_from_slice(&sum.to_le_bytes());
    buf[16..].copy_from_slice(&count.to_le_bytes());
    RangePrint(xxh3_128_with_seed(&buf, seed).to_le_bytes())
}

/// A model's id in a session.
fn item_id(key: &[u8], term: Digest, seed: u64) -> u128 {
    let mut buf = Vec::with_capacity(key.len() + 16);
    buf.extend_from_slice(key);
    buf.extend_from_slice(&term.0.to_le_bytes());
    xxh3_128_with_seed(&buf, seed)
}

/// A session's seed, from both sides' nonces: neither side alone picks it.
pub fn session_seed(client_nonce: u64, server_nonce: u64) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&client_nonce.to_le_bytes());
    buf[8..].copy_from_slice(&server_nonce.to_le_bytes());
    xxh3_64_with_seed(&buf, 0x6469_6666_7379_6e63)
}
