//! The diff algorithm: walks two stores from their top-level model types down
//! the parent → children links and builds a [`Diff`].
//!
//! Children are matched within their parent (small, cache-friendly lists),
//! attributes are compared typed and in place, and an element is only built
//! for a model that changed or has changed descendants; unchanged subtrees are
//! counted, not materialized.

mod lists;
mod pair;
#[cfg(feature = "parallel")]
mod parallel;
mod scope;
#[cfg(test)]
mod tests;
mod three_way;

use crate::diff::{Diff, DiffElement};
use crate::error::{DiffError, Error, Result};
use crate::flags::DiffFlags;
use crate::model::AnyModel;
use crate::model::ModelError;
use crate::model::column::Slot;
use crate::options::{Options, Progress, Stage};
use crate::store::{LocalStore, Table, TypeIdx};
use hashbrown::HashSet;
use lists::diff_top;
#[cfg(feature = "parallel")]
use parallel::PARALLEL_MIN_ELEMENTS;
pub(crate) use scope::Scope;
pub(crate) use three_way::ThreeWay;

/// Lists up to this long are matched by scanning instead of through the index.
const SCAN_LIMIT: usize = 32;

/// One side of a comparison: a store, its name and its top-level model types.
pub(crate) struct Side<'a> {
    pub(crate) store: &'a LocalStore,
    pub(crate) name: &'a str,
    pub(crate) top_level: Vec<&'a str>,
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
        diff.retain(|e| {
            !sc.outside
                .contains(&(e.model_type().to_string(), e.unique_id().to_string()))
        });
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

/// Frees a diff the caller is done with: a large one's top-level elements
/// on the pool's threads (a 1M sync spent a fifth of its time freeing the
/// elements the differ's threads had built, one by one on its own).
pub(crate) fn discard(diff: Diff) {
    #[cfg(feature = "parallel")]
    if diff.elements.len() >= PARALLEL_MIN_ELEMENTS && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        diff.elements.into_par_iter().for_each(drop);
    }
    #[cfg(not(feature = "parallel"))]
    drop(diff);
}

fn check_shortnames(elements: &[DiffElement]) -> Result<()> {
    if elements.len() < 2 || elements.iter().all(|e| e.shortname.is_none()) {
        return Ok(());
    }
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(elements.len());
    for e in elements {
        if !seen.insert((e.model_type(), e.sibling_name())) {
            let first = elements
                .iter()
                .find(|o| o.model_type() == e.model_type() && o.sibling_name() == e.sibling_name())
                .map_or("", |o| o.unique_id());
            return Err(Error::Diff(DiffError::ShortnameCollision {
                model_type: e.model_type().to_string(),
                shortname: e.sibling_name().to_string(),
                first: first.to_string(),
                second: e.unique_id().to_string(),
            }));
        }
    }
    Ok(())
}

fn model(store: &LocalStore, ty: Option<TypeIdx>, slot: Option<Slot>) -> Option<&dyn AnyModel> {
    store.tables[ty?].models.get(slot?)
}

fn internal(model_type: &str, message: &str) -> Error {
    Error::Model(ModelError::Schema {
        model_type: model_type.to_string(),
        message: format!("internal: {message}"),
    })
}
