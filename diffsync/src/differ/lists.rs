//! Sibling lists: matched by key (scanned when short, through the index
//! when long), top-level lists cut into buckets whose fingerprints differ.

use super::pair::diff_pair;
#[cfg(feature = "parallel")]
use super::parallel::{self, PARALLEL_MIN_MODELS};
use super::{Ctx, PairOutcome, SCAN_LIMIT, check_identifiers, check_shortnames, table};
use crate::diff::DiffElement;
use crate::error::Result;
use crate::model::ModelSchema;
use crate::model::column::Slot;
use crate::store::{LocalStore, RootBucket, Table, TypeIdx, root_bucket};
use hashbrown::HashTable;

/// One sibling list: its model type and slots.
#[derive(Clone, Copy)]
pub(super) struct List<'s> {
    pub(super) ty: Option<TypeIdx>,
    pub(super) slots: &'s [Slot],
}

fn uid_of(t: Option<&Table>, slot: Slot) -> &str {
    t.map_or("", |t| t.key(slot))
}

/// Matches two sibling lists by unique id and calls `emit` with each pair:
/// source order first (with the matching destination slot, if any), then the
/// destination-only slots in destination order.
pub(super) fn match_lists(
    src: &LocalStore,
    dst: &LocalStore,
    s: List<'_>,
    d: List<'_>,
    emit: impl FnMut(Option<Slot>, Option<Slot>) -> Result<()>,
) -> Result<()> {
    let (st, dt) = (table(src, s.ty), table(dst, d.ty));
    let (s_slots, d_slots) = (s.slots, d.slots);
    let Some(dt) = dt else {
        return pair_up(s_slots, d_slots, &mut vec![false; d_slots.len()], |_, _, _| None, emit);
    };
    let uid_at = |j: usize| dt.key(d_slots[j]);
    // Lists are usually in the same order on both sides: the same position
    // is tried first.
    let same_place = |i: usize, uid: &str, used: &[bool]| i < d_slots.len() && !used[i] && uid_at(i) == uid;
    if d_slots.len() <= SCAN_LIMIT {
        let mut used = [false; SCAN_LIMIT];
        let find = |i: usize, slot: Slot, used: &[bool]| {
            let uid = uid_of(st, slot);
            if same_place(i, uid, used) {
                return Some(i);
            }
            (0..d_slots.len()).find(|&j| !used[j] && uid_at(j) == uid)
        };
        return pair_up(s_slots, d_slots, &mut used[..d_slots.len()], find, emit);
    }
    // Long lists: else a table of this list alone, built at the first
    // mismatch from the hashes the store computed once. The cost per model
    // does not depend on the list's length, and stays in cache.
    let hash_at = |j: &u32| dt.meta[d_slots[*j as usize]].hash();
    let mut index: Option<HashTable<u32>> = None;
    let find = |i: usize, slot: Slot, used: &[bool]| {
        let uid = uid_of(st, slot);
        if same_place(i, uid, used) {
            return Some(i);
        }
        let index = index.get_or_insert_with(|| {
            let mut t = HashTable::with_capacity(d_slots.len());
            for j in 0..d_slots.len() as u32 {
                t.insert_unique(hash_at(&j), j, hash_at);
            }
            t
        });
        index
            .find(dst.hash(uid), |&j| uid_at(j as usize) == uid)
            .map(|&j| j as usize)
            .filter(|&j| !used[j])
    };
    pair_up(s_slots, d_slots, &mut vec![false; d_slots.len()], find, emit)
}

/// Emits each source slot with the destination slot `find` matches it to
/// (`used`: the destination slots matched so far), then the destination
/// slots nothing matched, in destination order.
fn pair_up(
    s_slots: &[Slot],
    d_slots: &[Slot],
    used: &mut [bool],
    mut find: impl FnMut(usize, Slot, &[bool]) -> Option<usize>,
    mut emit: impl FnMut(Option<Slot>, Option<Slot>) -> Result<()>,
) -> Result<()> {
    for (i, &slot) in s_slots.iter().enumerate() {
        let found = find(i, slot, used);
        if let Some(j) = found {
            used[j] = true;
        }
        emit(Some(slot), found.map(|j| d_slots[j]))?;
    }
    for (j, &slot) in d_slots.iter().enumerate() {
        if !used[j] {
            emit(None, Some(slot))?;
        }
    }
    Ok(())
}

/// Diffs two sibling lists (slots of one model type); appends elements to `out`
/// and returns the number of unchanged models not materialized.
fn diff_lists(
    ctx: &mut Ctx<'_, '_, '_>,
    s: List<'_>,
    d: List<'_>,
    siblings: bool,
    out: &mut Vec<DiffElement>,
) -> Result<usize> {
    let (sty, dty) = (s.ty, d.ty);
    check_identifiers(ctx, table(ctx.src, sty), table(ctx.dst, dty))?;
    let start = out.len();
    let mut unchanged = 0;
    let (src, dst) = (ctx.src, ctx.dst);
    match_lists(src, dst, s, d, |s, d| {
        match diff_pair(ctx, sty, s, dty, d)? {
            PairOutcome::Unchanged(n) => unchanged += n,
            PairOutcome::Element(e) => out.push(e),
            PairOutcome::Skipped => {}
        }
        Ok(())
    })?;
    if siblings {
        check_shortnames(&out[start..])?;
    }
    Ok(unchanged)
}

/// Diffs the top-level lists of one model type. Roots in buckets whose
/// fingerprints match on both sides are counted unchanged unvisited. Large
/// inputs are matched here and their pairs' subtrees diffed in parallel;
/// the elements are concatenated in pair order, so the result is the same
/// as sequentially.
pub(super) fn diff_top(
    ctx: &mut Ctx<'_, '_, '_>,
    sty: Option<TypeIdx>,
    s_slots: &[Slot],
    dty: Option<TypeIdx>,
    d_slots: &[Slot],
    siblings: bool,
    out: &mut Vec<DiffElement>,
) -> Result<usize> {
    let narrowed = differing_buckets(ctx, sty, s_slots, dty, d_slots);
    let (s_slots, d_slots, same) = match &narrowed {
        Some((s, d, same)) => (&s[..], &d[..], *same),
        None => (s_slots, d_slots, 0),
    };
    #[cfg(feature = "parallel")]
    if ctx.scope.is_none() && ctx.total >= PARALLEL_MIN_MODELS && rayon::current_num_threads() > 1 {
        check_identifiers(ctx, table(ctx.src, sty), table(ctx.dst, dty))?;
        let mut pairs = Vec::with_capacity(s_slots.len().max(d_slots.len()));
        match_lists(ctx.src, ctx.dst, top(sty, s_slots), top(dty, d_slots), |s, d| {
            pairs.push((s, d));
            Ok(())
        })?;
        let start = out.len();
        let unchanged = parallel::diff_pairs(ctx, sty, dty, &pairs, out)?;
        if siblings {
            check_shortnames(&out[start..])?;
        }
        return Ok(unchanged + same);
    }
    Ok(diff_lists(ctx, top(sty, s_slots), top(dty, d_slots), siblings, out)? + same)
}

/// The roots of both sides that lie in buckets whose fingerprints differ,
/// and how many models (per side) the equal buckets hold: `None` when
/// buckets cannot be trusted here (out-of-date fingerprints, a part,
/// unchanged records wanted) or save nothing. In a three-way walk a bucket
/// is skipped only where the base's equals both sides' too (nothing in it
/// changed on either side since the base), and the base models in it
/// count as met.
fn differing_buckets(
    ctx: &mut Ctx<'_, '_, '_>,
    sty: Option<TypeIdx>,
    s_slots: &[Slot],
    dty: Option<TypeIdx>,
    d_slots: &[Slot],
) -> Option<(Vec<Slot>, Vec<Slot>, usize)> {
    let (st, dt) = (table(ctx.src, sty)?, table(ctx.dst, dty)?);
    let usable = ctx.scope.is_none()
        && ctx.skip_equal
        && !st.roots.is_empty()
        && !dt.roots.is_empty()
        && ctx.src.fingerprints_fresh()
        && ctx.dst.fingerprints_fresh()
        && (std::ptr::eq::<ModelSchema>(&*st.schema, &*dt.schema) || st.schema.children == dt.schema.children);
    if !usable {
        return None;
    }
    let base_roots: Option<&[RootBucket]> = match ctx.three.as_mut() {
        None => None,
        Some(three) => {
            let base: &LocalStore = three.base;
            let b = &base.tables[three.base_table(dt)?];
            if !base.fingerprints_fresh() || b.roots.is_empty() || b.schema.children != dt.schema.children {
                return None;
            }
            Some(&b.roots)
        }
    };
    let differs: Vec<bool> = st
        .roots
        .iter()
        .zip(&dt.roots)
        .enumerate()
        .map(|(i, (a, b))| {
            a != b || a.flagged > 0 || b.flagged > 0 || base_roots.is_some_and(|r| r[i] != *b || r[i].flagged > 0)
        })
        .collect();
    let same: u64 = st
        .roots
        .iter()
        .zip(&differs)
        .filter(|(_, d)| !**d)
        .map(|(b, _)| b.fingerprint.count)
        .sum();
    if same == 0 {
        return None;
    }
    if let Some(three) = ctx.three.as_mut() {
        // The base holds exactly these models there: met, all equal.
        three.seen += same as usize;
    }
    let keep = |t: &Table, slots: &[Slot]| -> Vec<Slot> {
        slots
            .iter()
            .copied()
            .filter(|&s| differs[root_bucket(t.meta[s].hash())])
            .collect()
    };
    let narrowed = (keep(st, s_slots), keep(dt, d_slots), same as usize);
    ctx.count(2 * narrowed.2);
    Some(narrowed)
}

pub(super) fn top(ty: Option<TypeIdx>, slots: &[Slot]) -> List<'_> {
    List { ty, slots }
}

/// The list of one child type of a model.
pub(super) fn child_list<'a>(t: Option<&'a Table>, slot: Option<Slot>, name: &str) -> Option<List<'a>> {
    let (t, slot) = (t?, slot?);
    let ci = t.schema.child_index(name)?;
    Some(List {
        ty: t.child_types[ci],
        slots: t.children(slot).get(ci)?,
    })
}
