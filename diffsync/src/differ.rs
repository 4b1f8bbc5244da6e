//! The diff algorithm: walks two stores from their top-level model types down
//! the parent → children links and builds a [`Diff`].
//!
//! Children are matched within their parent (small, cache-friendly lists),
//! attributes are compared typed and in place, and an element is only built
//! for a model that changed or has changed descendants; unchanged subtrees are
//! counted, not materialized.

use hashbrown::{HashSet, HashTable};

use crate::diff::{Action, AttrChange, Diff, DiffElement, Located};
use crate::error::{DiffError, Error, Result};
use crate::flags::{DiffFlags, ModelFlags};
use crate::model::ModelError;
use crate::model::column::Slot;
use crate::model::{AnyModel, ModelSchema};
use crate::options::{Options, Progress, Stage};
use crate::store::{LocalStore, RootBucket, Table, TypeIdx, root_bucket};

/// Lists up to this long are matched by scanning instead of through the index.
const SCAN_LIMIT: usize = 32;

/// One side of a comparison: a store, its name and its top-level model types.
pub(crate) struct Side<'a> {
    pub(crate) store: &'a LocalStore,
    pub(crate) name: &'a str,
    pub(crate) top_level: Vec<&'a str>,
}

/// What one side did to a key since the base: `Create`, `Update` or `Delete`.
pub(crate) type SinceBase = Option<Action>;

/// A key where a side differs from the base, found by a three-way walk.
pub(crate) struct BaseChange {
    pub(crate) model_type: std::borrow::Cow<'static, str>,
    pub(crate) key: String,
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
    tables: Vec<(*const Table, Option<TypeIdx>)>,
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
    fn same_in_base(&mut self, t: &Table, slot: Slot, n: usize) -> bool {
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

    fn base_table(&mut self, side: &Table) -> Option<TypeIdx> {
        let at = side as *const Table;
        if let Some((_, t)) = self.tables.iter().find(|(p, _)| *p == at) {
            return *t;
        }
        let t = self.base.table_index(&side.schema.name);
        self.tables.push((at, t));
        t
    }
}

struct Ctx<'a, 'o, 's> {
    src: &'a LocalStore,
    dst: &'a LocalStore,
    three: Option<ThreeWay<'a>>,
    /// The part to diff ([`Options::part`]), if not everything.
    scope: Option<&'s Scope>,
    flags: DiffFlags,
    keep_unchanged: bool,
    /// Equal subtree fingerprints stand for equal subtrees (off: every
    /// pair is visited, for unchanged records and the laws' reference).
    skip_equal: bool,
    skipped: usize,
    processed: usize,
    total: usize,
    next_report: usize,
    step: usize,
    progress: Option<&'o mut dyn FnMut(Progress)>,
}

impl Ctx<'_, '_, '_> {
    fn count(&mut self, n: usize) {
        self.processed += n;
        if self.processed >= self.next_report {
            self.next_report = self.processed + self.step;
            if let Some(p) = self.progress.as_mut() {
                p(Progress {
                    stage: Stage::Diff,
                    current: self.processed,
                    total: self.total,
                });
            }
        }
    }
}

/// Result of comparing one pair (or one-sided model).
// Moved straight into the parent's Vec; boxing would cost an allocation per element.
#[allow(clippy::large_enum_variant)]
enum PairOutcome {
    /// Equal, with no changes below: this many models compared, nothing kept.
    Unchanged(usize),
    Element(DiffElement),
    Skipped,
}

/// The part of two stores a diff covers ([`Options::part`]), as slots:
/// per side (source, destination) the requested models and their ancestors.
pub(crate) struct Scope {
    full: [HashSet<(TypeIdx, Slot)>; 2],
    path: [HashSet<(TypeIdx, Slot)>; 2],
    /// (type, key) of ancestors outside every requested subtree: in the
    /// result they are no-change parents.
    outside: HashSet<(String, String)>,
}

impl Scope {
    fn new(stores: [&LocalStore; 2], keys: &[(String, String)]) -> Scope {
        let mut sc = Scope {
            full: Default::default(),
            path: Default::default(),
            outside: HashSet::new(),
        };
        for (i, store) in stores.into_iter().enumerate() {
            for (t, k) in keys {
                let Some((ty, slot)) = store.locate(t, k) else { continue };
                sc.full[i].insert((ty, slot));
                let mut up = store.tables[ty].meta[slot].parent;
                while let Some(l) = up {
                    sc.path[i].insert((l.ty, l.slot));
                    up = store.tables[l.ty].meta[l.slot].parent;
                }
            }
            for &(ty, slot) in &sc.path[i] {
                let mut at = Some((ty, slot));
                let mut inside = false;
                while let Some((t, s)) = at {
                    inside |= sc.full[i].contains(&(t, s));
                    at = store.tables[t].meta[s].parent.map(|l| (l.ty, l.slot));
                }
                if !inside {
                    let t = &store.tables[ty];
                    sc.outside.insert((t.schema.name.to_string(), t.key(slot).to_string()));
                }
            }
        }
        sc
    }

    /// The keys of one model type (its table on each side) that are
    /// requested or on the way to one, on either side.
    fn keys<'s>(&self, sides: [(&'s LocalStore, Option<TypeIdx>); 2]) -> HashSet<&'s str> {
        let mut out = HashSet::new();
        for (i, (store, ty)) in sides.into_iter().enumerate() {
            let Some(ty) = ty else { continue };
            let t = &store.tables[ty];
            for &(mt, slot) in self.full[i].iter().chain(&self.path[i]) {
                if mt == ty {
                    out.insert(t.key(slot));
                }
            }
        }
        out
    }

    /// Whether a pair is in a requested subtree (`Some(true)`), only on
    /// the way to one (`Some(false)`), or outside the part.
    fn place(&self, st: Option<TypeIdx>, s: Option<Slot>, dt: Option<TypeIdx>, d: Option<Slot>) -> Option<bool> {
        let has = |set: &HashSet<(TypeIdx, Slot)>, t: Option<TypeIdx>, slot: Option<Slot>| {
            t.zip(slot).is_some_and(|k| set.contains(&k))
        };
        if has(&self.full[0], st, s) || has(&self.full[1], dt, d) {
            Some(true)
        } else if has(&self.path[0], st, s) || has(&self.path[1], dt, d) {
            Some(false)
        } else {
            None
        }
    }
}

/// Computes `dst.diff_from(src)`.
pub(crate) fn diff(src: &Side<'_>, dst: &Side<'_>, opts: &mut Options<'_>) -> Result<Diff> {
    walk(src, dst, None, opts).map(|(d, _)| d)
}

/// Computes `dst.diff_from(src)` and, in the same walk, where each side
/// differs from `base` (keys on neither side are not visited: compare
/// [`ThreeWay::seen`] with the base's size).
pub(crate) fn diff_three<'a>(
    src: &Side<'a>,
    dst: &Side<'a>,
    base: &'a LocalStore,
    opts: &mut Options<'_>,
) -> Result<(Diff, ThreeWay<'a>)> {
    let (d, three) = walk(src, dst, Some(ThreeWay::new(base)), opts)?;
    Ok((d, three.unwrap_or_else(|| ThreeWay::new(base))))
}

fn walk<'a>(
    src: &Side<'a>,
    dst: &Side<'a>,
    three: Option<ThreeWay<'a>>,
    opts: &mut Options<'_>,
) -> Result<(Diff, Option<ThreeWay<'a>>)> {
    let total = src.store.count_all() + dst.store.count_all();
    let scope = opts.part.as_ref().map(|keys| Scope::new([src.store, dst.store], keys));
    let mut ctx = Ctx {
        src: src.store,
        dst: dst.store,
        three,
        scope: scope.as_ref(),
        flags: opts.flags,
        keep_unchanged: opts.flags.contains(DiffFlags::LOG_UNCHANGED_RECORDS),
        skip_equal: !opts.flags.contains(DiffFlags::LOG_UNCHANGED_RECORDS) && !opts.walk_all,
        skipped: 0,
        processed: 0,
        total,
        next_report: 0,
        step: (total / 1000).max(1),
        progress: opts.progress.as_mut().map(|p| &mut **p as &mut dyn FnMut(Progress)),
    };
    tracing::debug!(source = src.name, dest = dst.name, models = total, "diff started");
    let mut diff = Diff {
        source: src.name.to_string(),
        dest: dst.name.to_string(),
        ..Diff::default()
    };
    check_top_level(src, dst)?;
    // Top-level types on one side only are counted as skipped, never diffed.
    let mut one_sided: Vec<&str> = src
        .top_level
        .iter()
        .filter(|t| !dst.top_level.contains(t))
        .chain(dst.top_level.iter().filter(|t| !src.top_level.contains(t)))
        .copied()
        .collect();
    one_sided.sort_unstable();
    for t in one_sided {
        let n = src.store.count(t) + dst.store.count(t);
        ctx.skipped += n;
        ctx.count(n);
    }
    // Roots are the parentless models of the top-level types (a type that is
    // its own child has both). Then orphans: parentless models of the other
    // types (a child whose parent's delete applied while its own did not),
    // diffed at the top level so the next sync retries them.
    let roots: Vec<&str> = dst
        .top_level
        .iter()
        .filter(|t| src.top_level.contains(t))
        .copied()
        .collect();
    let mut orphan_types: Vec<&str> = dst.store.model_types().collect();
    orphan_types.extend(src.store.model_types().filter(|t| dst.store.table_index(t).is_none()));
    orphan_types.retain(|t| !src.top_level.contains(t) && !dst.top_level.contains(t));
    for (i, ty) in roots.iter().chain(&orphan_types).enumerate() {
        let sty = src.store.table_index(ty);
        let dty = dst.store.table_index(ty);
        let (s_slots, d_slots) = match ctx.scope {
            // Only the roots of the part, looked up by key (a root on the
            // way on one side still pairs with its match on the other).
            Some(sc) => {
                let keys = sc.keys([(src.store, sty), (dst.store, dty)]);
                (
                    parentless_of(src.store, sty, &keys),
                    parentless_of(dst.store, dty, &keys),
                )
            }
            None => (parentless(src.store, sty), parentless(dst.store, dty)),
        };
        let orphans = i >= roots.len();
        if orphans && s_slots.is_empty() && d_slots.is_empty() {
            continue;
        }
        let start = diff.elements.len();
        diff.unchanged += diff_top(&mut ctx, sty, &s_slots, dty, &d_slots, !orphans, &mut diff.elements)?;
        if orphans {
            // Orphans of different former parents are no siblings: a
            // shortname would not tell them apart, the unique id does.
            for e in &mut diff.elements[start..] {
                e.shortname = None;
            }
        }
    }
    diff.skipped = ctx.skipped;
    // The end, unless the last report was at this very count.
    let reported = ctx.next_report == ctx.processed + ctx.step;
    if let Some(p) = ctx.progress.as_mut().filter(|_| !reported) {
        p(Progress {
            stage: Stage::Diff,
            current: ctx.processed,
            total: ctx.total,
        });
    }
    if let Some(sc) = &scope {
        // Ancestors outside the part only carry it: no-change parents.
        diff.retain(|e| !sc.outside.contains(&(e.model_type.to_string(), e.key.clone())));
    }
    for (ty, order) in &opts.order {
        diff.order(ty, order);
    }
    tracing::debug!(summary = %diff.summary(), "diff complete");
    Ok((diff, ctx.three))
}

/// Live slots of a type without a parent, in insertion order.
fn parentless(store: &LocalStore, ty: Option<TypeIdx>) -> Vec<Slot> {
    ty.map(|t| &store.tables[t])
        .filter(|t| t.parentless > 0)
        .map(|t| t.slots().filter(|&s| t.meta[s].parent.is_none()).collect())
        .unwrap_or_default()
}

/// The slots of these keys that are live and parentless, in insertion order.
fn parentless_of(store: &LocalStore, ty: Option<TypeIdx>, keys: &HashSet<&str>) -> Vec<Slot> {
    let Some(t) = table(store, ty) else { return Vec::new() };
    let mut slots: Vec<Slot> = keys
        .iter()
        .filter_map(|k| t.find_hashed(store.hash(k), k))
        .filter(|&s| t.meta[s].alive() && t.meta[s].parent.is_none())
        .collect();
    // Slots are allocated in insertion order.
    slots.sort_unstable();
    slots
}

/// A top-level type neither store knows is a typo, not an empty type
/// (unless neither store knows any type yet).
fn check_top_level(src: &Side<'_>, dst: &Side<'_>) -> Result<()> {
    let known = |t: &str| src.store.table_index(t).is_some() || dst.store.table_index(t).is_some();
    if src.store.model_types().next().is_none() && dst.store.model_types().next().is_none() {
        return Ok(());
    }
    for side in [src, dst] {
        if let Some(t) = side.top_level.iter().find(|t| !known(t)) {
            let mut types: Vec<&str> = src.store.model_types().chain(dst.store.model_types()).collect();
            types.sort_unstable();
            types.dedup();
            return Err(Error::Diff(DiffError::UnknownModelType {
                adapter: side.name.to_string(),
                model_type: t.to_string(),
                known: types.join(", "),
            }));
        }
    }
    Ok(())
}

fn table(store: &LocalStore, ty: Option<TypeIdx>) -> Option<&Table> {
    ty.map(|t| &store.tables[t])
}

fn check_identifiers(ctx: &Ctx<'_, '_, '_>, st: Option<&Table>, dt: Option<&Table>) -> Result<()> {
    if let (Some(st), Some(dt)) = (st, dt)
        && st
            .schema
            .identifiers
            .iter()
            .map(|f| &f.name)
            .ne(dt.schema.identifiers.iter().map(|f| &f.name))
    {
        return Err(Error::Model(ModelError::Schema {
            model_type: st.schema.name.to_string(),
            message: format!(
                "identifiers differ between {:?} and {:?}",
                ctx.src.name(),
                ctx.dst.name()
            ),
        }));
    }
    Ok(())
}

/// One sibling list: its model type and slots.
#[derive(Clone, Copy)]
struct List<'s> {
    ty: Option<TypeIdx>,
    slots: &'s [Slot],
}

fn uid_of(t: Option<&Table>, slot: Slot) -> &str {
    t.map_or("", |t| t.key(slot))
}

/// Matches two sibling lists by unique id and calls `emit` with each pair:
/// source order first (with the matching destination slot, if any), then the
/// destination-only slots in destination order.
fn match_lists(
    src: &LocalStore,
    dst: &LocalStore,
    s: List<'_>,
    d: List<'_>,
    mut emit: impl FnMut(Option<Slot>, Option<Slot>) -> Result<()>,
) -> Result<()> {
    let (st, dt) = (table(src, s.ty), table(dst, d.ty));
    let (s_slots, d_slots) = (s.slots, d.slots);
    if d_slots.len() <= SCAN_LIMIT {
        let mut used = [false; SCAN_LIMIT];
        for (i, &slot) in s_slots.iter().enumerate() {
            let uid = uid_of(st, slot);
            let found = dt.and_then(|dt| {
                let hit = |j: usize| !used[j] && dt.key(d_slots[j]) == uid;
                // Lists are usually in the same order on both sides: try position i first.
                if i < d_slots.len() && hit(i) {
                    Some(i)
                } else {
                    (0..d_slots.len()).find(|&j| hit(j))
                }
            });
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
        return Ok(());
    }
    // Long lists: the same position first (lists are usually in the same
    // order on both sides), else a table of this list alone, built at the
    // first mismatch from the hashes the store computed once. The cost per
    // model does not depend on the list's length, and stays in cache.
    let Some(dt) = dt else {
        for &slot in s_slots {
            emit(Some(slot), None)?;
        }
        return Ok(());
    };
    let hash_at = |j: &u32| dt.meta[d_slots[*j as usize]].hash();
    let uid_at = |j: usize| dt.key(d_slots[j]);
    let mut used = vec![false; d_slots.len()];
    let mut index: Option<HashTable<u32>> = None;
    for (i, &slot) in s_slots.iter().enumerate() {
        let uid = uid_of(st, slot);
        let found = if i < d_slots.len() && !used[i] && uid_at(i) == uid {
            Some(i)
        } else {
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
fn diff_top(
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

fn top(ty: Option<TypeIdx>, slots: &[Slot]) -> List<'_> {
    List { ty, slots }
}

/// Frees a diff the caller is done with: a large one's top-level elements
/// on the pool's threads (a 1M sync spent a fifth of its time freeing the
/// elements the differ's threads had built, one by one on its own).
pub(crate) fn discard(diff: Diff) {
    #[cfg(feature = "parallel")]
    if diff.elements.len() >= PARALLEL_MIN_ELEMENTS && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        diff.elements.into_par_iter().for_each(drop);
    }
}

/// Top-level elements from which [`discard`] frees in parallel.
#[cfg(feature = "parallel")]
const PARALLEL_MIN_ELEMENTS: usize = 1_000;

/// Below this many models in both stores, a diff runs on the calling
/// thread; so does the diff of a part (a few subtrees, as a reconcile loop
/// diffs them: waking the pool would cost more than it saves).
#[cfg(feature = "parallel")]
const PARALLEL_MIN_MODELS: usize = 20_000;

#[cfg(feature = "parallel")]
mod parallel {
    use rayon::prelude::*;

    use super::{Ctx, PairOutcome, diff_pair};
    use crate::diff::DiffElement;
    use crate::error::Result;
    use crate::model::column::Slot;
    use crate::store::TypeIdx;

    type Pair = (Option<Slot>, Option<Slot>);

    /// What one chunk of pairs produced.
    struct Part {
        elements: Vec<DiffElement>,
        unchanged: usize,
        skipped: usize,
        processed: usize,
        three: Option<(Vec<super::BaseChange>, usize)>,
    }

    /// Diffs top-level pairs in parallel chunks. Chunks run in waves so the
    /// progress callback (not thread-safe) is called between waves, here.
    pub(super) fn diff_pairs(
        ctx: &mut Ctx<'_, '_, '_>,
        sty: Option<TypeIdx>,
        dty: Option<TypeIdx>,
        pairs: &[Pair],
        out: &mut Vec<DiffElement>,
    ) -> Result<usize> {
        let threads = rayon::current_num_threads();
        let chunk = (pairs.len() / (threads * 64)).max(1);
        let wave = chunk * threads * 8;
        let (src, dst, flags, total) = (ctx.src, ctx.dst, ctx.flags, ctx.total);
        let (keep_unchanged, skip_equal) = (ctx.keep_unchanged, ctx.skip_equal);
        let scope = ctx.scope;
        let base = ctx.three.as_ref().map(|t| t.base);
        let mut unchanged = 0;
        // The parts' elements, joined once at the end: extended part by
        // part, the list doubled and copied its 248-byte elements again
        // at each growth, on the calling thread while the pool waited.
        let mut parts: Vec<Vec<DiffElement>> = Vec::new();
        for wave in pairs.chunks(wave) {
            let results: Vec<Result<Part>> = wave
                .par_chunks(chunk)
                .map(|part| {
                    let mut w = Ctx {
                        src,
                        dst,
                        three: base.map(super::ThreeWay::new),
                        scope,
                        flags,
                        keep_unchanged,
                        skip_equal,
                        skipped: 0,
                        processed: 0,
                        total,
                        next_report: usize::MAX,
                        step: usize::MAX,
                        progress: None,
                    };
                    let mut elements = Vec::new();
                    let mut unchanged = 0;
                    for &(s, d) in part {
                        match diff_pair(&mut w, sty, s, dty, d)? {
                            PairOutcome::Unchanged(n) => unchanged += n,
                            PairOutcome::Element(e) => elements.push(e),
                            PairOutcome::Skipped => {}
                        }
                    }
                    Ok(Part {
                        elements,
                        unchanged,
                        skipped: w.skipped,
                        processed: w.processed,
                        three: w.three.map(|t| (t.changes, t.seen)),
                    })
                })
                .collect();
            for r in results {
                let part = r?;
                parts.push(part.elements);
                unchanged += part.unchanged;
                if let (Some(t), Some((changes, seen))) = (ctx.three.as_mut(), part.three) {
                    t.changes.extend(changes);
                    t.seen += seen;
                }
                ctx.skipped += part.skipped;
                ctx.count(part.processed);
            }
        }
        out.reserve(parts.iter().map(Vec::len).sum());
        for part in parts {
            out.extend(part);
        }
        Ok(unchanged)
    }
}

fn check_shortnames(elements: &[DiffElement]) -> Result<()> {
    if elements.len() < 2 || elements.iter().all(|e| e.shortname.is_none()) {
        return Ok(());
    }
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(elements.len());
    for e in elements {
        if !seen.insert((&e.model_type, e.sibling_name())) {
            let first = elements
                .iter()
                .find(|o| o.model_type == e.model_type && o.sibling_name() == e.sibling_name())
                .map_or("", |o| o.key.as_str());
            return Err(Error::Diff(DiffError::ShortnameCollision {
                model_type: e.model_type.to_string(),
                shortname: e.sibling_name().to_string(),
                first: first.to_string(),
                second: e.key.clone(),
            }));
        }
    }
    Ok(())
}

fn model(store: &LocalStore, ty: Option<TypeIdx>, slot: Option<Slot>) -> Option<&dyn AnyModel> {
    store.tables[ty?].models.get(slot?)
}

type Pair = (Option<Slot>, Option<Slot>);

/// A pair whose children are being diffed: the differ's work stack holds
/// one per level, so the depth of a hierarchy is no risk to the call stack.
struct Frame<'a> {
    sty: Option<TypeIdx>,
    s: Option<Slot>,
    dty: Option<TypeIdx>,
    d: Option<Slot>,
    equal: bool,
    /// Inside the diffed part (always, unless the diff has a scope).
    inside: bool,
    /// The side whose child types drive the walk: the source if present.
    primary: Option<&'a Table>,
    /// The next child type (index into the primary's schema).
    next_type: usize,
    /// The current child list: its types, matched pairs and the next pair.
    list: Option<(Option<TypeIdx>, Option<TypeIdx>)>,
    pairs: Vec<Pair>,
    next_pair: usize,
    /// Where the current list's elements start in `children`.
    list_start: usize,
    children: Vec<DiffElement>,
    child_unchanged: usize,
}

/// Diffs one pair (or one-sided model) and its subtree.
fn diff_pair(
    ctx: &mut Ctx<'_, '_, '_>,
    sty: Option<TypeIdx>,
    s: Option<Slot>,
    dty: Option<TypeIdx>,
    d: Option<Slot>,
) -> Result<PairOutcome> {
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut spare: Vec<Vec<Pair>> = Vec::new();
    match open(ctx, sty, s, dty, d, false) {
        Opened::Skipped => return Ok(PairOutcome::Skipped),
        Opened::Same(n) => return Ok(PairOutcome::Unchanged(n)),
        Opened::Frame(frame) => stack.push(frame),
    }
    loop {
        let Some(top) = stack.last_mut() else {
            return Err(internal("", "the differ's work stack ran empty"));
        };
        if let Some(&(cs, cd)) = top.pairs.get(top.next_pair) {
            top.next_pair += 1;
            let (csty, cdty) = top.list.unwrap_or_default();
            match open(ctx, csty, cs, cdty, cd, top.inside) {
                Opened::Skipped => {}
                Opened::Same(n) => top.child_unchanged += n,
                Opened::Frame(frame) => stack.push(frame),
            }
            continue;
        }
        if top.list.take().is_some() {
            check_shortnames(&top.children[top.list_start..])?;
            top.pairs.clear();
            top.next_pair = 0;
        }
        if next_list(ctx, top)? {
            if top.pairs.capacity() == 0
                && let Some(v) = spare.pop()
            {
                top.pairs = v;
            }
            continue;
        }
        let Some(mut done) = stack.pop() else {
            return Err(internal("", "the differ's work stack ran empty"));
        };
        spare.push(std::mem::take(&mut done.pairs));
        let outcome = finish(ctx, done)?;
        let Some(parent) = stack.last_mut() else {
            return Ok(outcome);
        };
        match outcome {
            PairOutcome::Unchanged(n) => parent.child_unchanged += n,
            PairOutcome::Element(e) => parent.children.push(e),
            PairOutcome::Skipped => {}
        }
    }
}

fn internal(model_type: &str, message: &str) -> Error {
    Error::Model(ModelError::Schema {
        model_type: model_type.to_string(),
        message: format!("internal: {message}"),
    })
}

/// What starting a pair found.
enum Opened<'a> {
    /// Flags skip it.
    Skipped,
    /// Its subtrees are equal (their fingerprints match): this many pairs.
    Same(usize),
    /// Its children are to be diffed.
    Frame(Frame<'a>),
}

/// Starts a pair: counts it, compares its attributes; whole subtrees whose
/// fingerprints match (and, in a three-way walk, the base's too) are
/// counted unchanged without a visit.
fn open<'a>(
    ctx: &mut Ctx<'a, '_, '_>,
    sty: Option<TypeIdx>,
    s: Option<Slot>,
    dty: Option<TypeIdx>,
    d: Option<Slot>,
    parent_inside: bool,
) -> Opened<'a> {
    let inside = match ctx.scope {
        Some(sc) if !parent_inside => match sc.place(sty, s, dty, d) {
            Some(inside) => inside,
            // Outside the part: not visited, not counted.
            None => return Opened::Skipped,
        },
        _ => true,
    };
    // Equal subtrees: nothing below can differ, and no flag matters
    // (IGNORE would have marked them), so not even the models are looked
    // at; in a three-way walk, if the base's subtree is equal too (else
    // the walk below compares the base's models one by one).
    if ctx.skip_equal
        && let (Some(st), Some(s), Some(dt), Some(d)) = (table(ctx.src, sty), s, table(ctx.dst, dty), d)
        && let Some(n) = same_subtree(st, s, dt, d)
        && (std::ptr::eq::<ModelSchema>(&*st.schema, &*dt.schema) || st.schema.children == dt.schema.children)
        && ctx.three.as_mut().is_none_or(|three| three.same_in_base(dt, d, n))
    {
        if let Some(three) = ctx.three.as_mut() {
            three.seen += n;
        }
        ctx.count(2 * n);
        return Opened::Same(n);
    }
    let sm = model(ctx.src, sty, s);
    let dm = model(ctx.dst, dty, d);
    let sflags = sm.map_or(ModelFlags::empty(), |m| m.flags());
    let dflags = dm.map_or(ModelFlags::empty(), |m| m.flags());
    let skip = (ctx.flags.contains(DiffFlags::SKIP_UNMATCHED_SRC) && dm.is_none())
        || (ctx.flags.contains(DiffFlags::SKIP_UNMATCHED_DST) && sm.is_none())
        || (dm.is_none() && sflags.contains(ModelFlags::SKIP_UNMATCHED_SRC))
        || (sm.is_none() && dflags.contains(ModelFlags::SKIP_UNMATCHED_DST))
        || sflags.contains(ModelFlags::IGNORE)
        || dflags.contains(ModelFlags::IGNORE);
    if skip {
        ctx.skipped += 1;
        ctx.count(1);
        return Opened::Skipped;
    }
    ctx.count(usize::from(sm.is_some()) + usize::from(dm.is_some()));
    let st = table(ctx.src, sty);
    let dt = table(ctx.dst, dty);
    // Equal subtree fingerprints: equal models all the way
    // down (the pair's own attributes included), nothing to compare.
    let same = match (st, s, dt, d) {
        (Some(st), Some(s), Some(dt), Some(d)) if ctx.skip_equal => same_subtree(st, s, dt, d).filter(|_| {
            std::ptr::eq::<ModelSchema>(&*st.schema, &*dt.schema) || st.schema.children == dt.schema.children
        }),
        _ => None,
    };
    let equal = same.is_some()
        || match (st, s, dt, d) {
            (Some(st), Some(s), Some(dt), Some(d)) => st.models.attrs_equal(s, &*dt.models, d),
            _ => false,
        };
    let base = match ctx.three.as_mut() {
        Some(three) => against_base(three, st, s, dt, d, equal),
        None => None,
    };
    if let (Some(n), Some(d)) = (same, d)
        && let Some(dt) = dt
    {
        let same_base = match (&ctx.three, base) {
            (None, _) => true,
            (Some(three), Some((bt, bs))) => same_subtree(&three.base.tables[bt], bs, dt, d) == Some(n),
            (Some(_), None) => false,
        };
        if same_base {
            if let Some(three) = ctx.three.as_mut() {
                // The rest of the subtree's base models are met too.
                three.seen += n - 1;
            }
            ctx.count(2 * (n - 1));
            return Opened::Same(n);
        }
    }
    // Child types the destination declares and the source does not: their
    // children count as skipped (when both sides have the model).
    if s.is_some()
        && d.is_some()
        && let (Some(st), Some(dt)) = (st, dt)
    {
        for name in dt.schema.children.iter().filter(|c| st.schema.child_index(c).is_none()) {
            let n = child_list(Some(dt), d, name).map_or(0, |l| l.slots.len());
            ctx.skipped += n;
            ctx.count(n);
        }
    }
    Opened::Frame(Frame {
        sty,
        s,
        dty,
        d,
        equal,
        inside,
        primary: if s.is_some() { st } else { dt },
        next_type: 0,
        list: None,
        pairs: Vec::new(),
        next_pair: 0,
        list_start: 0,
        children: Vec::new(),
        child_unchanged: 0,
    })
}

/// The size of two subtrees with equal fingerprints and no
/// flagged model (flags would make a visit count them differently).
fn same_subtree(at: &Table, a: Slot, bt: &Table, b: Slot) -> Option<usize> {
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
fn against_base(
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
            model_type: t.schema.name.clone(),
            key: t.key(slot).to_string(),
            dst,
            src,
        });
    }
    found
}

/// Moves a frame to its next non-empty child list and matches it; false
/// when no list is left. A child type the destination does not declare
/// (when both sides have the model) counts its children as skipped.
fn next_list(ctx: &mut Ctx<'_, '_, '_>, f: &mut Frame<'_>) -> Result<bool> {
    let Some(primary) = f.primary else {
        return Ok(false);
    };
    let (st, dt) = (table(ctx.src, f.sty), table(ctx.dst, f.dty));
    let both = f.s.is_some() && f.d.is_some();
    while let Some(name) = primary.schema.children.get(f.next_type) {
        f.next_type += 1;
        let s_list = child_list(st, f.s, name);
        let d_list = child_list(dt, f.d, name);
        if both && dt.is_some_and(|t| t.schema.child_index(name).is_none()) {
            let n = s_list.map_or(0, |l| l.slots.len());
            ctx.skipped += n;
            ctx.count(n);
            continue;
        }
        let empty = List { ty: None, slots: &[] };
        let (s_list, d_list) = (s_list.unwrap_or(empty), d_list.unwrap_or(empty));
        if s_list.slots.is_empty() && d_list.slots.is_empty() {
            continue;
        }
        check_identifiers(ctx, table(ctx.src, s_list.ty), table(ctx.dst, d_list.ty))?;
        let pairs = &mut f.pairs;
        match_lists(ctx.src, ctx.dst, s_list, d_list, |s, d| {
            pairs.push((s, d));
            Ok(())
        })?;
        f.list = Some((s_list.ty, d_list.ty));
        f.list_start = f.children.len();
        return Ok(true);
    }
    Ok(false)
}

/// Ends a pair whose children are done: its element, or the count of an
/// unchanged subtree.
fn finish(ctx: &Ctx<'_, '_, '_>, f: Frame<'_>) -> Result<PairOutcome> {
    let Frame {
        sty,
        s,
        dty,
        d,
        equal,
        mut children,
        child_unchanged,
        ..
    } = f;
    if equal && children.is_empty() && !ctx.keep_unchanged {
        return Ok(PairOutcome::Unchanged(1 + child_unchanged));
    }
    // Grown a push at a time, the list may be twice as long as needed,
    // and it lives as long as the diff.
    children.shrink_to_fit();
    let (st, dt) = (table(ctx.src, sty), table(ctx.dst, dty));
    let sm = model(ctx.src, sty, s);
    let dm = model(ctx.dst, dty, d);
    let any = sm.or(dm).ok_or_else(|| internal("", "element without a model"))?;
    let (action, changes) = match (sm, dm) {
        (Some(_), None) => (Action::Create, Vec::new()),
        (None, Some(_)) => (Action::Delete, Vec::new()),
        _ if equal => (Action::NoChange, Vec::new()),
        _ => {
            let (Some(st), Some(s), Some(dt), Some(d)) = (st, s, dt, d) else {
                return Err(internal(any.model_type(), "update without both sides"));
            };
            let changes = st
                .models
                .changes(s, &*dt.models, d)
                .into_iter()
                .map(|(name, new, old)| AttrChange { name, old, new })
                .collect();
            (Action::Update, changes)
        }
    };
    let key = st
        .zip(s)
        .or(dt.zip(d))
        .map(|(t, slot)| t.key(slot).to_string())
        .unwrap_or_default();
    Ok(PairOutcome::Element(DiffElement {
        model_type: any.schema().name.clone(),
        key,
        shortname: any.shortname(),
        identifiers: any.identifiers(),
        action,
        // A no-change element's sides are equal: it is kept only as a parent.
        source_attrs: sm.filter(|_| action != Action::NoChange).map(|m| m.attributes()),
        dest_attrs: dm.filter(|_| action != Action::NoChange).map(|m| m.attributes()),
        changes,
        unchanged_descendants: child_unchanged,
        children,
        located: Some(Located {
            src: sty.zip(s),
            dst: dty.zip(d),
        }),
    }))
}

/// The list of one child type of a model.
fn child_list<'a>(t: Option<&'a Table>, slot: Option<Slot>, name: &str) -> Option<List<'a>> {
    let (t, slot) = (t?, slot?);
    let ci = t.schema.child_index(name)?;
    Some(List {
        ty: t.child_types[ci],
        slots: t.children(slot).get(ci)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::{AdapterExt, DiffModel, LocalStore, MemoryAdapter};

    #[derive(DiffModel, Clone, Debug, PartialEq)]
    #[diffsync(name = "switch", children(Port))]
    struct Switch {
        #[diffsync(id)]
        name: String,
    }

    #[derive(DiffModel, Clone, Debug, PartialEq)]
    #[diffsync(name = "port", shortname(label))]
    struct Port {
        #[diffsync(id)]
        switch: String,
        #[diffsync(id)]
        n: u32,
        label: String,
    }

    fn switch(name: &str, ports: impl Iterator<Item = u32>, label: impl Fn(u32) -> String) -> MemoryAdapter {
        let mut s = LocalStore::new(name);
        s.add(Switch { name: "sw".into() }).unwrap();
        for n in ports {
            let p = Port {
                switch: "sw".into(),
                n,
                label: label(n),
            };
            s.add_child_by_id("switch", "sw", p).unwrap();
        }
        MemoryAdapter::with_store(name, &["switch"], s)
    }

    #[test]
    fn large_sibling_lists_match_through_the_index_in_any_order() {
        // 200 children (> SCAN_LIMIT), reversed order on one side, some changed.
        let src = switch("src", 0..200, |n| format!("p{n}"));
        let dst = switch("dst", (50..250).rev(), |n| {
            if n % 10 == 0 { format!("x{n}") } else { format!("p{n}") }
        });
        let s = dst.diff_from(&src).unwrap().summary();
        assert_eq!((s.create, s.delete), (50, 50));
        assert_eq!(s.update, (50..200).filter(|n| n % 10 == 0).count());
        assert_eq!(s.no_change, 1 + 150 - s.update);
    }

    #[test]
    fn small_sibling_lists_match_out_of_order() {
        let src = switch("src", 0..5, |n| format!("p{n}"));
        let dst = switch("dst", (0..5).rev(), |n| format!("p{n}"));
        assert!(!dst.diff_from(&src).unwrap().has_diffs());
    }

    #[test]
    fn shortname_collision_names_type_and_both_keys() {
        let src = switch("src", 0..3, |n| if n == 0 { "same".into() } else { format!("p{n}") });
        let dst = switch("dst", 1..4, |_| "same".into());
        let err = dst.diff_from(&src).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"port shortname "same" is shared by "sw__0" and "sw__3""#
        );
    }

    #[cfg(feature = "parallel")]
    #[test]
    fn parallel_diff_equals_sequential_diff() {
        // 300 switches x 40 ports per side: above PARALLEL_MIN_MODELS.
        let build = |name: &str, variant: u32| {
            let mut s = LocalStore::new(name);
            for sw in 0..300u32 {
                if variant == 1 && sw % 50 == 7 {
                    continue; // switches only in the other side
                }
                let sname = format!("sw{sw}");
                s.add(Switch { name: sname.clone() }).unwrap();
                for n in 0..40 + variant * (sw % 3) {
                    let label = if variant == 1 && (sw + n) % 97 == 0 {
                        "changed".to_string()
                    } else {
                        format!("p{n}")
                    };
                    s.add_child_by_id(
                        "switch",
                        &sname,
                        Port {
                            switch: sname.clone(),
                            n,
                            label,
                        },
                    )
                    .unwrap();
                }
            }
            MemoryAdapter::with_store(name, &["switch"], s)
        };
        let (src, dst) = (build("src", 0), build("dst", 1));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut last = None;
                let mut cb = |p: crate::Progress| last = Some((p.current, p.total));
                let diff = dst
                    .diff_from_with(&src, &mut crate::Options::new().progress(&mut cb))
                    .unwrap();
                (diff, last)
            })
        };
        let (sequential, seq_progress) = run(1);
        let (parallel, par_progress) = run(4);
        assert!(sequential.has_diffs());
        assert_eq!(parallel, sequential);
        assert_eq!(par_progress, seq_progress);
        let s = parallel.summary();
        assert_eq!(s.create, 6 * 41);
        assert!(s.update > 0 && s.delete > 0);
    }
}
