//! The three-way walk: each side compared with the base, models equal to
//! their base image recognised by digest, whole equal subtrees skipped.

use crate::diff::Action;
use crate::model::column::Slot;
use crate::store::{LocalStore, Table, TypeIdx};

/// What one side did to a key since the base: `Create`, `Update` or `Delete`.
pub(crate) type SinceBase = Option<Action>;

/// A key where a side differs from the base, found by a three-way walk.
pub(crate) struct BaseChange {
    pub(crate) key: crate::key::ModelKey,
    /// The destination side against the base.
    pub(crate) dst: SinceBase,
    /// The source side against the base.
    pub(crate) src: SinceBase,
}

/// The base side of a three-way walk, and what the walk found against it.
pub(crate) struct ThreeWay<'a> {
    pub(crate) base: &'a LocalStore,
    pub(crate) changes: Vec<BaseChange>,
    /// Base models met by the walk (the others are on neither side).
    pub(crate) seen: usize,
    /// The base's table for each side table met (few types: a list keyed
    /// by the side table's address, so a lookup compares no names).
    pub(super) tables: Vec<(*const Table, Option<TypeIdx>)>,
}

impl<'a> ThreeWay<'a> {
    pub(crate) fn new(base: &'a LocalStore) -> Self {
        ThreeWay {
            base,
            changes: Vec::new(),
            seen: 0,
            tables: Vec::new(),
        }
    }

    /// Whether the base holds the subtree at `slot` of `t` (`n` models)
    /// as it is.
    pub(super) fn same_in_base(&mut self, t: &Table, slot: Slot, n: usize) -> bool {
        let Some(bt) = self.base_table(t) else { return false };
        let base = self.base;
        let btable = &base.tables[bt];
        // The same slot first (a base built like the side keeps its models
        // there): an equal subtree there is this one, key included (a
        // digest covers the identifiers), so no key is read.
        if btable.meta.get(slot.index()).is_some_and(|m| m.alive()) && same_subtree(btable, slot, t, slot) == Some(n) {
            return true;
        }
        base.find_with_hash(bt, t.meta[slot].hash(), t.key(slot), slot)
            .is_some_and(|bs| same_subtree(btable, bs, t, slot) == Some(n))
    }

    /// Where the base holds the model at `slot` of `t`: at the same slot
    /// with the same digest (the same model, key included: no key read),
    /// else by its key.
    fn find_in_base(&mut self, t: &Table, slot: Slot) -> Option<(TypeIdx, Slot)> {
        let bt = self.base_table(t)?;
        let btable = &self.base.tables[bt];
        if btable
            .meta
            .get(slot.index())
            .is_some_and(|m| m.alive() && m.digest == t.meta[slot].digest)
        {
            return Some((bt, slot));
        }
        let found = self.base.find_with_hash(bt, t.meta[slot].hash(), t.key(slot), slot)?;
        Some((bt, found))
    }

    pub(super) fn base_table(&mut self, side: &Table) -> Option<TypeIdx> {
        let at = side as *const Table;
        if let Some((_, t)) = self.tables.iter().find(|(p, _)| *p == at) {
            return *t;
        }
        let t = self.base.table_index(&side.schema.name);
        self.tables.push((at, t));
        t
    }
}

/// The size of two subtrees with equal fingerprints and no
/// flagged model (flags would make a visit count them differently).
pub(super) fn same_subtree(at: &Table, a: Slot, bt: &Table, b: Slot) -> Option<usize> {
    match (at.branch(a), bt.branch(b)) {
        (Some(x), Some(y)) => (!x.dirty && !y.dirty && x.flagged == 0 && y.flagged == 0 && x.subtree == y.subtree)
            .then_some(x.subtree.count as usize),
        // Two leaves: a leaf's subtree is its term, its digest mixed with
        // its parent's key, and the parents of a pair have the same key
        // (or none): the digests tell.
        (None, None) => {
            let (x, y) = (&at.meta[a], &bt.meta[b]);
            (!x.ignored() && !y.ignored() && x.digest == y.digest).then_some(1)
        }
        // A leaf against a model whose type has children: walked.
        _ => None,
    }
}

/// Compares one pair with the base model of the same key; returns where
/// the base holds it.
pub(super) fn against_base(
    three: &mut ThreeWay<'_>,
    st: Option<&Table>,
    s: Option<Slot>,
    dt: Option<&Table>,
    d: Option<Slot>,
    equal: bool,
) -> Option<(TypeIdx, Slot)> {
    // The destination first: the base is built like it, often in its order.
    let (t, slot) = dt.zip(d).or(st.zip(s))?;
    let base = three.base;
    let found = three.find_in_base(t, slot);
    three.seen += usize::from(found.is_some());
    let vs = |side: Option<&Table>, slot: Option<Slot>| -> SinceBase {
        match (side.zip(slot), found) {
            (None, None) => None,
            (Some(_), None) => Some(Action::Create),
            (None, Some(_)) => Some(Action::Delete),
            (Some((t, x)), Some((bt, bs))) => {
                // Equal digests are equal attributes: the models are not read.
                let bt = &base.tables[bt];
                let same = bt.meta[bs].digest == t.meta[x].digest || t.models.attrs_equal(x, &*bt.models, bs);
                (!same).then_some(Action::Update)
            }
        }
    };
    let dst = vs(dt, d);
    // Equal sides, the destination as the base: the source is too.
    let src = if equal && dst.is_none() { None } else { vs(st, s) };
    if dst.is_some() || src.is_some() {
        three.changes.push(BaseChange {
            key: t.model_key(slot),
            dst,
            src,
        });
    }
    found
}
