//! The diff of many top-level pairs on the thread pool.

/// Top-level elements from which [`discard`] frees in parallel.
pub(super) const PARALLEL_MIN_ELEMENTS: usize = 1_000;

/// Below this many models in both stores, a diff runs on the calling
/// thread; so does the diff of a part (a few subtrees, as a reconcile loop
/// diffs them: waking the pool would cost more than it saves).
pub(super) const PARALLEL_MIN_MODELS: usize = 20_000;

use rayon::prelude::*;

use super::pair::Pair;

use super::pair::diff_pair;
use super::{Ctx, PairOutcome};
use crate::diff::DiffElement;
use crate::error::Result;
use crate::store::TypeIdx;

/// What one chunk of pairs produced.
struct Part {
    elements: Vec<DiffElement>,
    unchanged: usize,
    skipped: usize,
    processed: usize,
    three: Option<(Vec<super::three_way::BaseChange>, usize)>,
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
