//! One model type's table: per-slot metadata (key, links, digests,
//! subtree fingerprints), the key index and the root buckets.

use std::sync::Arc;

use hashbrown::HashTable;

use super::keys::{KeyRef, Keys};
use crate::chunked::Chunked;
use crate::digest::{self, Digest, Fingerprint};
use crate::model::column::ModelVec;
use crate::model::column::Slot;
use crate::model::{Names, SchemaRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Link {
    pub(crate) ty: TypeIdx,
    pub(crate) slot: Slot,
}

/// A model type's place in a store's tables: not a slot, not a child-list
/// position (`rustc_index`'s reason for newtypes: indices that cannot mix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TypeIdx(u32);

impl TypeIdx {
    /// The `i`-th table.
    pub(crate) fn new(i: usize) -> TypeIdx {
        TypeIdx(u32::try_from(i).expect("fewer than 2^32 model types"))
    }

    /// Its position in the store's list of tables.
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::ops::Index<TypeIdx> for Vec<Table> {
    type Output = Table;
    fn index(&self, i: TypeIdx) -> &Table {
        &self[i.index()]
    }
}

impl std::ops::Index<Slot> for Chunked<Meta> {
    type Output = Meta;
    fn index(&self, i: Slot) -> &Meta {
        &self[i.index()]
    }
}

impl std::ops::IndexMut<Slot> for Chunked<Meta> {
    fn index_mut(&mut self, i: Slot) -> &mut Meta {
        &mut self[i.index()]
    }
}

impl std::ops::IndexMut<TypeIdx> for Vec<Table> {
    fn index_mut(&mut self, i: TypeIdx) -> &mut Table {
        &mut self[i.index()]
    }
}

/// Per-slot bookkeeping: unique id and its hash (computed once), links,
/// liveness, digest. 40 bytes: every model of a store has one.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    /// Its unique id, in the table's [`Keys`].
    pub(crate) uid: KeyRef,
    pub(crate) parent: Option<Link>,
    /// The model's item digest.
    pub(crate) digest: Packed,
    /// Its key's hash, half of it (see [`narrow_hash`]).
    hash: u32,
    /// Its [`Branch`] in the table's, for a type with child types
    /// ([`LEAF`] for one without: its subtree is the model alone), under
    /// the two flags [`ALIVE`] and [`IGNORED`].
    bits: u32,
}

/// [`Meta::bits`]: the slot holds a model (not removed).
const ALIVE: u32 = 1 << 31;
/// [`Meta::bits`]: the model itself is flagged IGNORE.
const IGNORED: u32 = 1 << 30;

impl Meta {
    pub(crate) fn new(
        uid: KeyRef,
        hash: u64,
        parent: Option<Link>,
        digest: Digest,
        ignored: bool,
        branch: u32,
    ) -> Meta {
        // The stores' hashes repeat their half (narrow_hash): keeping one loses nothing.
        debug_assert_eq!(widen_hash(hash as u32), hash, "a key hash from narrow_hash");
        Meta {
            uid,
            parent,
            digest: Packed::new(digest),
            hash: hash as u32,
            bits: branch | ALIVE | if ignored { IGNORED } else { 0 },
        }
    }

    /// Its key's hash, as [`LocalStore::hash`](super::LocalStore) gives it.
    pub(crate) fn hash(&self) -> u64 {
        widen_hash(self.hash)
    }

    pub(crate) fn alive(&self) -> bool {
        self.bits & ALIVE != 0
    }

    pub(crate) fn kill(&mut self) {
        self.bits &= !ALIVE;
    }

    pub(crate) fn ignored(&self) -> bool {
        self.bits & IGNORED != 0
    }

    pub(crate) fn set_ignored(&mut self, ignored: bool) {
        self.bits = if ignored {
            self.bits | IGNORED
        } else {
            self.bits & !IGNORED
        };
    }

    pub(crate) fn branch(&self) -> u32 {
        self.bits & LEAF
    }

    pub(crate) fn set_branch(&mut self, branch: u32) {
        self.bits = (self.bits & !LEAF) | branch;
    }
}

/// The [`Meta::branch`] of the `i`-th branch of a table.
pub(crate) fn branch_index(i: usize) -> u32 {
    u32::try_from(i)
        .ok()
        .filter(|&b| b < LEAF)
        .expect("fewer than 2^30 - 1 models with children in a table")
}

/// A key's hash as the stores use it: 32 bits, repeated in both halves of
/// the 64 the index and the root buckets take, so that the metadata keeps
/// half of it and loses nothing.
pub(crate) fn narrow_hash(full: u64) -> u64 {
    widen_hash((full >> 32) as u32)
}

fn widen_hash(half: u32) -> u64 {
    (u64::from(half) << 32) | u64::from(half)
}

/// A 128-bit digest kept as two words: 8-byte aligned, where a `u128`
/// would align (and pad) the whole metadata to 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Packed([u64; 2]);

impl Packed {
    pub(crate) fn new(d: Digest) -> Packed {
        Packed([d.0 as u64, (d.0 >> 64) as u64])
    }

    pub(crate) fn get(self) -> Digest {
        Digest((u128::from(self.0[1]) << 64) | u128::from(self.0[0]))
    }
}

/// The [`Meta::branch`] of a model whose type has no child types.
/// (The bits of [`Meta::bits`] under its flags, all set.)
pub(crate) const LEAF: u32 = IGNORED - 1;

/// What a model that can have children keeps: its child lists and what
/// it knows of its subtree (a leaf type's models, most of a store, keep
/// none of it: their subtree is the model alone).
#[derive(Clone, Debug)]
pub(crate) struct Branch {
    /// One list per child type of the schema.
    pub(crate) children: Box<[Vec<Slot>]>,
    /// A stable hash of (type, key), mixed into the children's terms;
    /// computed when the model first gets a child (0: not yet).
    pub(crate) key_hash: u64,
    /// The subtree's fingerprint: every change adds and takes out its
    /// terms on the way up (fingerprints are sums), valid unless `dirty`.
    pub(crate) subtree: Fingerprint,
    /// Set where a change was deeper than [`EAGER_DEPTH`] below: the
    /// subtree (and every ancestor's) waits for a recount.
    pub(crate) dirty: bool,
    /// How many models of the subtree are flagged IGNORE.
    pub(crate) flagged: u32,
}

/// All models of one type.
pub(crate) struct Table {
    pub(crate) schema: SchemaRef,
    /// The schema's field names, shared by the diff elements of the type.
    pub(crate) names: Arc<Names>,
    pub(crate) meta: Chunked<Meta>,
    /// The subtree bookkeeping of the models that can have children.
    pub(crate) branches: Chunked<Branch>,
    /// The models' unique ids.
    pub(crate) keys: Keys,
    pub(crate) index: HashTable<Slot>,
    pub(crate) live: usize,
    pub(crate) models: Box<dyn ModelVec>,
    /// Store type index of each schema child type, once known.
    pub(crate) child_types: Vec<Option<TypeIdx>>,
    /// The terms of every live model of the type.
    pub(crate) fingerprint: Fingerprint,
    /// Live models without a parent (a child type has none but orphans:
    /// the differ looks for them only when there are some).
    pub(crate) parentless: usize,
    /// The subtree fingerprints of the parentless models, summed by key
    /// hash into [`ROOT_BUCKETS`] buckets (kept once a type has
    /// [`BUCKETS_FROM`] of them; empty before): the differ compares two
    /// types' buckets and walks only the roots of those that differ.
    pub(crate) roots: Vec<RootBucket>,
}

/// How many ancestors a change updates right away. A change deeper down
/// (a chain of self-referencing models, say) marks the rest out of date
/// instead, so adding to a chain N deep costs O(1), not O(N); the differ
/// walks such subtrees, and a sync recounts them in one pass.
pub(crate) const EAGER_DEPTH: usize = 64;

/// An empty fingerprint adjustment.
pub(crate) const NOTHING: (Fingerprint, u32) = (Fingerprint { count: 0, sum: 0 }, 0);

/// How many buckets the roots of a type are summed into.
pub(crate) const ROOT_BUCKETS: usize = 1024;

/// From how many parentless models a type keeps root buckets.
const BUCKETS_FROM: usize = 256;

/// The roots of one bucket: their subtree fingerprints summed, and how many
/// have a model flagged IGNORE below them (such a bucket is always walked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RootBucket {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) flagged: u32,
}

/// The bucket of a key hash (the same in every store: keys hash alike).
pub(crate) fn root_bucket(hash: u64) -> usize {
    (hash >> 54) as usize % ROOT_BUCKETS
}

impl Clone for Table {
    fn clone(&self) -> Self {
        Table {
            schema: self.schema.clone(),
            names: self.names.clone(),
            meta: self.meta.clone(),
            branches: self.branches.clone(),
            keys: self.keys.clone(),
            index: self.index.clone(),
            live: self.live,
            models: self.models.clone_box(),
            child_types: self.child_types.clone(),
            fingerprint: self.fingerprint,
            parentless: self.parentless,
            roots: self.roots.clone(),
        }
    }
}

impl Table {
    pub(crate) fn new(schema: SchemaRef, models: Box<dyn ModelVec>) -> Self {
        let n = schema.children.len();
        Table {
            names: Arc::new(Names::of(&schema)),
            schema,
            meta: Chunked::new(),
            branches: Chunked::new(),
            keys: Keys::default(),
            index: HashTable::new(),
            live: 0,
            models,
            child_types: vec![None; n],
            fingerprint: Fingerprint::default(),
            parentless: 0,
            roots: Vec::new(),
        }
    }

    /// Adds (`in_ = true`) or takes out a parentless model's subtree
    /// fingerprint from its root bucket, as it is now.
    pub(crate) fn root_bucket_update(&mut self, slot: Slot, in_: bool) {
        if self.roots.is_empty() {
            if !in_ || self.parentless < BUCKETS_FROM {
                return;
            }
            // The first time: every root so far (this one included).
            self.roots = vec![RootBucket::default(); ROOT_BUCKETS];
            let roots: Vec<Slot> = self
                .slots()
                .filter(|&s| s != slot && self.meta[s].parent.is_none())
                .collect();
            for s in roots {
                self.root_bucket_update(s, true);
            }
        }
        // A root: no parent's key in its term.
        let (subtree, flagged) = (self.subtree(slot, None), self.flagged(slot));
        let b = &mut self.roots[root_bucket(self.meta[slot].hash())];
        // Wrapping like the fingerprints: a count off by a bug would only
        // make the differ walk more, never panic.
        if in_ {
            b.fingerprint.merge(subtree);
            b.flagged = b.flagged.wrapping_add(flagged);
        } else {
            b.fingerprint.unmerge(subtree);
            b.flagged = b.flagged.wrapping_sub(flagged);
        }
    }

    pub(crate) fn find_hashed(&self, hash: u64, uid: &str) -> Option<Slot> {
        // The index matches 7 bits of the hash: about one lookup in ten
        // (100k new keys) meets another key, told apart here by the stored
        // hash before its text is read from the arena.
        let meta = &self.meta;
        self.index
            .find(hash, |&i| meta[i].hash() == hash && self.key(i) == uid)
            .copied()
    }

    /// The subtree fingerprint of the model in `slot` (as kept: see
    /// [`dirty`](Self::dirty)); `parent`: its parent's key hash, which a
    /// leaf's subtree, its term, mixes in.
    pub(crate) fn subtree(&self, slot: Slot, parent: Option<u64>) -> Fingerprint {
        self.branch(slot).map_or_else(
            || Fingerprint {
                count: 1,
                sum: self.term(slot, parent).0,
            },
            |b| b.subtree,
        )
    }

    /// The term of the model in `slot` in fingerprints: its digest mixed
    /// with its parent's key hash `parent` (computed, not kept: 16 bytes a
    /// model saved for a hash of 24 bytes where a term is needed).
    pub(crate) fn term(&self, slot: Slot, parent: Option<u64>) -> Digest {
        digest::term(self.meta[slot].digest.get(), parent)
    }

    /// How many models of the subtree at `slot` are flagged IGNORE.
    pub(crate) fn flagged(&self, slot: Slot) -> u32 {
        self.branch(slot)
            .map_or(u32::from(self.meta[slot].ignored()), |b| b.flagged)
    }

    /// Whether the subtree fingerprint at `slot` waits for a recount (a
    /// leaf's never does).
    pub(crate) fn dirty(&self, slot: Slot) -> bool {
        self.branch(slot).is_some_and(|b| b.dirty)
    }

    /// The child lists of the model at `slot`, one per child type of the
    /// schema (none for a leaf type's model).
    pub(crate) fn children(&self, slot: Slot) -> &[Vec<Slot>] {
        self.branch(slot).map_or(&[], |b| &b.children)
    }

    /// The cached key hash of the model at `slot` (0: not computed yet, or
    /// a leaf, which never needs one: it has no children).
    pub(crate) fn key_hash(&self, slot: Slot) -> u64 {
        self.branch(slot).map_or(0, |b| b.key_hash)
    }

    /// What the model at `slot` keeps about its subtree, if its type can
    /// have children.
    pub(crate) fn branch(&self, slot: Slot) -> Option<&Branch> {
        match self.meta[slot].branch() {
            LEAF => None,
            b => self.branches.get(b as usize),
        }
    }

    /// [`branch`](Self::branch), to change it.
    pub(crate) fn branch_mut(&mut self, slot: Slot) -> Option<&mut Branch> {
        match self.meta[slot].branch() {
            LEAF => None,
            b => self.branches.get_mut(b as usize),
        }
    }

    /// The unique id of the model in `slot`.
    /// The key of the model in `slot` (a slot the table holds).
    pub(crate) fn model_key(&self, slot: Slot) -> crate::key::ModelKey {
        let uid = self.key(slot);
        let mut ids = Vec::with_capacity(uid.len() + 8);
        match self.models.get(slot) {
            Some(m) => {
                m.write_key(&mut ids);
                crate::key::ModelKey::from_encoded(self.schema.name.clone(), ids, uid)
            }
            None => crate::key::ModelKey::from_unique_id(&self.schema.name, uid),
        }
    }

    pub(crate) fn key(&self, slot: Slot) -> &str {
        self.keys.get(self.meta[slot].uid)
    }

    /// Live slots in insertion order.
    pub(crate) fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.meta
            .iter()
            .enumerate()
            .filter(|(_, m)| m.alive())
            .map(|(i, _)| Slot::new(i))
    }

    /// Records a new model's slot: `parent` with its stable key hash, the
    /// model's digest, whether it is flagged IGNORE. Returns the slot and
    /// the model's term.
    pub(crate) fn push_meta(
        &mut self,
        uid: &str,
        hash: u64,
        parent: Option<(Link, u64)>,
        digest: Digest,
        ignored: bool,
    ) -> (Slot, Digest) {
        let slot = Slot::new(self.meta.len());
        let term = digest::term(digest, parent.map(|p| p.1));
        self.fingerprint.add(term);
        self.parentless += usize::from(parent.is_none());
        let uid = self.keys.push(uid);
        let branch = if self.schema.children.is_empty() {
            LEAF
        } else {
            self.branches.push(Branch {
                children: (0..self.schema.children.len()).map(|_| Vec::new()).collect(),
                key_hash: 0,
                subtree: Fingerprint { count: 1, sum: term.0 },
                dirty: false,
                flagged: u32::from(ignored),
            });
            branch_index(self.branches.len() - 1)
        };
        self.meta
            .push(Meta::new(uid, hash, parent.map(|p| p.0), digest, ignored, branch));
        let meta = &self.meta;
        self.index.insert_unique(hash, slot, |&i| meta[i].hash());
        self.live += 1;
        if parent.is_none() {
            self.root_bucket_update(slot, true);
        }
        (slot, term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_digest_reads_back_and_keeps_the_metadata_8_aligned() {
        for d in [0u128, 1, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210] {
            assert_eq!(Packed::new(Digest(d)).get(), Digest(d));
        }
        assert_eq!(std::mem::align_of::<Meta>(), 8);
    }

    #[test]
    fn metadata_flags_branch_and_hash_read_back() {
        let uid = Keys::default().push("k");
        let hash = narrow_hash(0x0123_4567_89ab_cdef);
        let mut m = Meta::new(uid, hash, None, Digest(7), true, LEAF - 1);
        assert!(m.alive() && m.ignored());
        assert_eq!((m.branch(), m.hash(), m.digest.get()), (LEAF - 1, hash, Digest(7)));
        m.set_ignored(false);
        m.set_branch(LEAF);
        assert!(m.alive() && !m.ignored());
        assert_eq!((m.branch(), m.hash()), (LEAF, hash));
        m.kill();
        m.set_ignored(true);
        assert!(!m.alive() && m.ignored());
        assert_eq!((m.branch(), m.hash()), (LEAF, hash));
        // Half the hash is kept: both halves of what the index sees are it.
        assert_eq!(hash, 0x0123_4567_0123_4567);
    }

    #[test]
    fn metadata_of_a_model_takes_40_bytes() {
        // Every model of a store has one: a field added here costs a
        // store of a million models its size a million times.
        assert_eq!(std::mem::size_of::<Option<Link>>(), 8);
        assert_eq!(std::mem::size_of::<KeyRef>(), 8);
        assert_eq!(std::mem::size_of::<Meta>(), 40);
    }
}
