//! One pair of models (either side may be missing) and its subtree,
//! walked with an explicit stack of frames.

use super::lists::{List, child_list, match_lists};
use super::three_way::{against_base, same_subtree};
use super::{Ctx, PairOutcome, check_identifiers, check_shortnames, internal, model, table};
use crate::diff::{Action, AttrChange, DiffElement, Located, values_of};
use crate::error::Result;
use crate::flags::{DiffFlags, ModelFlags};
use crate::key::ModelKey;
use crate::model::ModelSchema;
use crate::model::column::Slot;
use crate::model::{AnyModel, Names};
use crate::store::{Table, TypeIdx};

pub(super) type Pair = (Option<Slot>, Option<Slot>);

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
    pub(super) children: Vec<DiffElement>,
    child_unchanged: usize,
}

/// Diffs one pair (or one-sided model) and its subtree.
pub(super) fn diff_pair(
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
    let (any_t, any_slot) = match (st.zip(s), dt.zip(d)) {
        (Some(x), _) | (None, Some(x)) => x,
        (None, None) => return Err(internal(any.model_type(), "element without a table")),
    };
    let uid = any_t.key(any_slot);
    // The encoding is about as long as the text.
    let mut ids = Vec::with_capacity(uid.len() + 8);
    let exact = any.write_key(&mut ids);
    let key = ModelKey::from_encoded(any.schema().name.clone(), ids, uid);
    // Kept beside the key only when it cannot give them back.
    let identifiers = (!exact).then(|| any.identifiers());
    // A no-change element's sides are equal: it is kept only as a parent.
    let side = |t: Option<&Table>, m: Option<&dyn AnyModel>| {
        let (t, m) = (t?, m?);
        Some(match m.attribute_values() {
            Some(values) => (t.names.clone(), values),
            None => {
                let attrs = m.attributes();
                let ids = identifiers.clone().unwrap_or_else(|| m.identifiers());
                (Names::fitted(&t.names, &ids, Some(&attrs)), values_of(attrs))
            }
        })
    };
    let (source, dest) = match action {
        Action::NoChange => (None, None),
        _ => (side(st, sm), side(dt, dm)),
    };
    let names = match (&source, &dest, &identifiers) {
        (Some((n, _)), _, _) | (None, Some((n, _)), _) => n.clone(),
        (None, None, Some(ids)) => Names::fitted(&any_t.names, ids, None),
        (None, None, None) => any_t.names.clone(),
    };
    Ok(PairOutcome::Element(DiffElement::found(
        key,
        any.shortname(),
        identifiers.map(values_of),
        names,
        action,
        source,
        dest,
        changes,
        children,
        child_unchanged,
        Located {
            src: sty.zip(s),
            dst: dty.zip(d),
        },
    )))
}
