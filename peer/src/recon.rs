//! Range-based set reconciliation, sans IO: what each side sends in answer
//! to what it received, until the initiator knows every difference.
//!
//! A message covers the whole key space with consecutive ranges, each
//! given by its exclusive upper bound (the last one is open) and one of
//! three modes: skip (settled), a fingerprint, or the list of ids in it.
//! A side that receives a fingerprint compares it with its own over the
//! same range: equal, the range is settled; else it answers with its ids
//! when it holds few models there, or with the fingerprints of `split`
//! sub-ranges cut at its own models. A list of ids is answered by the
//! responder with its own list; the initiator, holding both, settles the
//! range and records the differences. No state is kept between rounds
//! (each message says everything about the ranges still open), and the
//! two sides need not share any tree shape: each cuts where its own
//! models are.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::index::{Index, RangePrint, ShortId, short};

/// How a side splits and when it lists ids instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Sub-ranges a mismatched range is split into.
    pub split: usize,
    /// Ranges the initiator's first message cuts the key space into (more
    /// saves round trips on large stores: one range per ~`split`² models
    /// is a good start).
    pub first_split: usize,
    /// A side holding at most this many models in a mismatched range
    /// lists their ids instead of splitting it.
    pub list_below: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            split: 16,
            first_split: 16,
            list_below: 48,
        }
    }
}

impl Config {
    /// The default, with a first message sized for an index of `n` models:
    /// one range per 8,192 models (at least 16, at most 4,096), so that two
    /// splits by 16 reach ranges of about 32 (at most 48 are listed). A few
    /// differences then cost a few kilobytes, and scattered ones (0.1 %)
    /// two round trips.
    pub fn for_size(n: usize) -> Config {
        Config {
            first_split: (n / 8_192).clamp(16, 4_096),
            ..Config::default()
        }
    }
}

/// What one range of a message says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Settled: nothing to do.
    Skip,
    /// The sender's fingerprint of the range.
    Fingerprint(RangePrint),
    /// The ids of every model the sender holds in the range.
    Ids(Vec<ShortId>),
}

/// One range: everything from the previous range's upper bound (or the
/// start) up to, not including, `upper` (`None`: to the end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Exclusive upper bound, as key bytes; `None` for the last range.
    pub upper: Option<Vec<u8>>,
    /// What the sender says of it.
    pub mode: Mode,
}

/// A reconcile message: consecutive ranges covering the key space.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The ranges, in key order; the last is open.
    pub ranges: Vec<Range>,
}

impl Message {
    /// Whether every range is settled.
    pub fn is_settled(&self) -> bool {
        self.ranges.iter().all(|r| r.mode == Mode::Skip)
    }
}

/// A message that does not cover the key space in order.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed reconcile message: {0}")]
pub struct Malformed(pub &'static str);

/// The differences the initiator found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Differences {
    /// Positions (in the initiator's index) of models the other side does
    /// not hold as they are here.
    pub have: Vec<usize>,
    /// Ids of models the other side holds and this one does not.
    pub need: Vec<ShortId>,
}

/// One side of a reconciliation over an index.
pub struct Side<'a> {
    index: &'a Index,
    config: Config,
    initiator: bool,
}

impl<'a> Side<'a> {
    /// The side that starts and learns the differences.
    pub fn initiator(index: &'a Index, config: Config) -> Side<'a> {
        Side {
            index,
            config,
            initiator: true,
        }
    }

    /// The side that answers.
    pub fn responder(index: &'a Index, config: Config) -> Side<'a> {
        Side {
            index,
            config,
            initiator: false,
        }
    }

    /// The first message: the key space cut into `first_split` ranges with
    /// their fingerprints (or the whole list, for a small index).
    pub fn initiate(&self) -> Message {
        let mut out = Out::default();
        let n = self.index.len();
        if n <= self.config.list_below {
            out.push(None, Mode::Ids(self.ids(0, n)));
        } else {
            self.split(&mut out, 0, n, None, self.config.first_split);
        }
        out.done()
    }

    /// Answers a message: `None` when the initiator has nothing left to
    /// ask (every range settled); the differences it learns go to `diff`.
    pub fn answer(&self, msg: &Message, diff: &mut Differences) -> Result<Option<Message>, Malformed> {
        let mut out = Out::default();
        let mut from = 0usize;
        let mut lower: Option<&[u8]> = Some(&[]);
        let last = msg.ranges.len().checked_sub(1).ok_or(Malformed("no range"))?;
        for (i, range) in msg.ranges.iter().enumerate() {
            let upper = range.upper.as_deref();
            if (upper.is_none()) != (i == last) {
                return Err(Malformed("only the last range is open"));
            }
            if let (Some(l), Some(u)) = (lower, upper)
                && u <= l
            {
                return Err(Malformed("ranges out of order"));
            }
            let to = self.index.position(upper).max(from);
            match &range.mode {
                Mode::Skip => out.push(range.upper.clone(), Mode::Skip),
                Mode::Fingerprint(theirs) => {
                    if self.index.fingerprint(from, to) == *theirs {
                        out.push(range.upper.clone(), Mode::Skip);
                    } else if to - from <= self.config.list_below {
                        out.push(range.upper.clone(), Mode::Ids(self.ids(from, to)));
                    } else {
                        self.split(&mut out, from, to, range.upper.clone(), self.config.split);
                    }
                }
                Mode::Ids(theirs) if self.initiator => {
                    let theirs: HashSet<ShortId> = theirs.iter().copied().collect();
                    let mine: HashSet<ShortId> = (from..to).map(|p| short(self.index.items()[p].id)).collect();
                    diff.have
                        .extend((from..to).filter(|&p| !theirs.contains(&short(self.index.items()[p].id))));
                    diff.need.extend(theirs.iter().filter(|id| !mine.contains(*id)));
                    out.push(range.upper.clone(), Mode::Skip);
                }
                Mode::Ids(_) => out.push(range.upper.clone(), Mode::Ids(self.ids(from, to))),
            }
            from = to;
            lower = upper;
        }
        let reply = out.done();
        Ok(if self.initiator && reply.is_settled() {
            None
        } else {
            Some(reply)
        })
    }

    fn ids(&self, from: usize, to: usize) -> Vec<ShortId> {
        self.index.items()[from..to].iter().map(|it| short(it.id)).collect()
    }

    /// Cuts positions `from..to` into `parts` ranges at this side's models,
    /// each with its fingerprint; the last ends at `upper`.
    fn split(&self, out: &mut Out, from: usize, to: usize, upper: Option<Vec<u8>>, parts: usize) {
        let n = to - from;
        let parts = parts.clamp(1, n.max(1));
        let mut start = from;
        for k in 1..parts {
            let cut = from + n * k / parts;
            if cut <= start {
                continue;
            }
            out.push(
                Some(self.index.bound_before(cut)),
                Mode::Fingerprint(self.index.fingerprint(start, cut)),
            );
            start = cut;
        }
        out.push(upper, Mode::Fingerprint(self.index.fingerprint(start, to)));
    }
}

/// A message being written: consecutive skips merge into one.
#[derive(Default)]
struct Out {
    ranges: Vec<Range>,
}

impl Out {
    fn push(&mut self, upper: Option<Vec<u8>>, mode: Mode) {
        if mode == Mode::Skip
            && let Some(last) = self.ranges.last_mut()
            && last.mode == Mode::Skip
        {
            last.upper = upper;
            return;
        }
        self.ranges.push(Range { upper, mode });
    }

    fn done(self) -> Message {
        Message { ranges: self.ranges }
    }
}

/// Runs a whole reconciliation between two indexes in memory: the
/// differences the initiator learns, and the messages exchanged (for
/// tests and measurements).
pub fn run(initiator: &Index, responder: &Index, config: Config) -> Result<(Differences, Vec<Message>), Malformed> {
    let (a, b) = (Side::initiator(initiator, config), Side::responder(responder, config));
    let mut diff = Differences::default();
    let mut sent = vec![a.initiate()];
    loop {
        let mut ignored = Differences::default();
        let reply = b
            .answer(sent.last().expect("a message was sent"), &mut ignored)?
            .ok_or(Malformed("the responder always answers"))?;
        sent.push(reply);
        match a.answer(sent.last().expect("a reply was pushed"), &mut diff)? {
            Some(next) => sent.push(next),
            None => return Ok((diff, sent)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use diffsync::digest::Digest;
    use proptest::prelude::*;

    use super::*;

    /// A store as the protocol sees it: key bytes to term.
    type Set = BTreeMap<Vec<u8>, u128>;

    fn index(set: &Set, seed: u64) -> Index {
        Index::from_terms(set.iter().map(|(k, &t)| (k.clone(), Digest(t))), seed)
    }

    /// The keys the two sets hold differently (missing on one side, or
    /// with another term), as the initiator must learn them.
    fn truth(a: &Set, b: &Set) -> (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) {
        let have = a
            .iter()
            .filter(|(k, t)| b.get(*k) != Some(t))
            .map(|(k, _)| k.clone())
            .collect();
        let need = b
            .iter()
            .filter(|(k, t)| a.get(*k) != Some(t))
            .map(|(k, _)| k.clone())
            .collect();
        (have, need)
    }

    fn found(a: &Index, b: &Index, d: &Differences) -> (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) {
        let have = d.have.iter().map(|&p| a.items()[p].key.clone()).collect();
        let by_id: BTreeMap<ShortId, &Vec<u8>> = b.items().iter().map(|it| (short(it.id), &it.key)).collect();
        let need = d.need.iter().map(|id| by_id[id].clone()).collect();
        (have, need)
    }

    fn key(n: u32) -> Vec<u8> {
        // Keys that share long prefixes, as a type name and a site do.
        let mut k = b"device\0site-".to_vec();
        k.extend_from_slice(format!("{:06}", n).as_bytes());
        k
    }

    /// The shapes the issue names: equal, one change, scattered and
    /// clustered changes, disjoint, empty.
    fn pair() -> impl Strategy<Value = (Set, Set)> {
        let base = (0usize..3000).prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::vec(any::<u128>(), n),
                any::<u64>(),
                0usize..6,
            )
        });
        base.prop_map(|(n, terms, pick, shape)| {
            let a: Set = terms.iter().enumerate().map(|(i, &t)| (key(i as u32 * 3), t)).collect();
            let mut b = a.clone();
            let mut rng = pick;
            let mut next = || {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (rng >> 33) as usize
            };
            match shape {
                0 => {}
                1 if n > 0 => {
                    let k = key((next() % n) as u32 * 3);
                    *b.get_mut(&k).unwrap() ^= 1;
                }
                2 => {
                    for _ in 0..(n / 50 + 1) {
                        match next() % 3 {
                            0 if n > 0 => {
                                b.remove(&key((next() % n) as u32 * 3));
                            }
                            1 => {
                                b.insert(key((next() % (n + 1)) as u32 * 3 + 1), next() as u128);
                            }
                            _ if n > 0 => {
                                if let Some(t) = b.get_mut(&key((next() % n) as u32 * 3)) {
                                    *t = t.wrapping_add(1);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                3 if n > 0 => {
                    let start = next() % n;
                    for i in start..(start + 200).min(n) {
                        *b.get_mut(&key(i as u32 * 3)).unwrap() ^= 7;
                    }
                }
                4 => {
                    b = a.iter().map(|(k, t)| ([k.as_slice(), b"x"].concat(), *t)).collect();
                }
                _ => b.clear(),
            }
            if next() % 2 == 0 { (a, b) } else { (b, a) }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_differences_found_are_the_true_set_difference((a, b) in pair(), seed in any::<u64>(), first in 1usize..300) {
            let (ia, ib) = (index(&a, seed), index(&b, seed));
            let config = Config { first_split: first, ..Config::default() };
            let (diff, _) = run(&ia, &ib, config).unwrap();
            prop_assert_eq!(found(&ia, &ib, &diff), truth(&a, &b));
        }
    }

    /// The negentropy crate's differences, as keys: its ids are 32 bytes of
    /// hashes of key and term, its timestamps the key's rank among both
    /// sides' keys (so its order is the key order too).
    fn negentropy_found(a: &Set, b: &Set) -> (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) {
        use negentropy::{Id, Negentropy, NegentropyStorageVector};
        let rank: BTreeMap<&Vec<u8>, u64> = a
            .keys()
            .chain(b.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .zip(0..)
            .collect();
        let mut by_id = BTreeMap::new();
        let storage = |set: &Set, by_id: &mut BTreeMap<[u8; 32], Vec<u8>>| {
            let mut s = NegentropyStorageVector::new();
            for (k, t) in set {
                // Negentropy sums its ids: they must be hashes of the
                // content (raw terms that differ by ±3 would cancel out).
                let content = [k.as_slice(), &t.to_le_bytes()].concat();
                let mut id = [0u8; 32];
                id[..16].copy_from_slice(&xxhash_rust::xxh3::xxh3_128(&content).to_le_bytes());
                id[16..].copy_from_slice(&xxhash_rust::xxh3::xxh3_128_with_seed(&content, 1).to_le_bytes());
                by_id.insert(id, k.clone());
                s.insert(rank[k], Id::from_byte_array(id)).unwrap();
            }
            s.seal().unwrap();
            s
        };
        let (sa, sb) = (storage(a, &mut by_id), storage(b, &mut by_id));
        let mut client = Negentropy::borrowed(&sa, 0).unwrap();
        let mut server = Negentropy::borrowed(&sb, 0).unwrap();
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let mut msg = client.initiate().unwrap();
        loop {
            let reply = server.reconcile(&msg).unwrap();
            match client.reconcile_with_ids(&reply, &mut have, &mut need).unwrap() {
                Some(next) => msg = next,
                None => break,
            }
        }
        let keys = |ids: Vec<Id>| ids.iter().map(|id| by_id[id.as_bytes()].clone()).collect();
        (keys(have), keys(need))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn the_differences_are_those_the_negentropy_crate_finds((a, b) in pair(), seed in any::<u64>()) {
            let (ia, ib) = (index(&a, seed), index(&b, seed));
            let (diff, _) = run(&ia, &ib, Config::for_size(ia.len())).unwrap();
            prop_assert_eq!(found(&ia, &ib, &diff), negentropy_found(&a, &b));
        }
    }

    #[test]
    fn equal_stores_settle_in_one_round_trip() {
        let a: Set = (0..100_000).map(|i| (key(i), u128::from(i) * 7919)).collect();
        let (ia, ib) = (index(&a, 1), index(&a, 1));
        let (diff, sent) = run(&ia, &ib, Config::for_size(ia.len())).unwrap();
        assert_eq!(diff, Differences::default());
        assert_eq!(sent.len(), 2, "one message and its answer");
        assert!(sent[1].is_settled());
    }

    #[test]
    fn a_malformed_message_is_refused() {
        let a: Set = (0..10).map(|i| (key(i), 1)).collect();
        let ia = index(&a, 1);
        let side = Side::responder(&ia, Config::default());
        let mut d = Differences::default();
        let open_early = Message {
            ranges: vec![
                Range {
                    upper: None,
                    mode: Mode::Skip,
                },
                Range {
                    upper: Some(key(3)),
                    mode: Mode::Skip,
                },
            ],
        };
        assert!(side.answer(&open_early, &mut d).is_err());
        let backwards = Message {
            ranges: vec![
                Range {
                    upper: Some(key(5)),
                    mode: Mode::Skip,
                },
                Range {
                    upper: Some(key(3)),
                    mode: Mode::Skip,
                },
                Range {
                    upper: None,
                    mode: Mode::Skip,
                },
            ],
        };
        assert!(side.answer(&backwards, &mut d).is_err());
        assert!(side.answer(&Message::default(), &mut d).is_err());
    }
}
