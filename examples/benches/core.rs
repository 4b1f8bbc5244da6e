//! Microbenchmarks: load, diff, sync and rendering at 10k and 100k models per side
//! (`cargo bench -p diffsync-examples --features bench`). Data comes from the in-memory
//! generator, so no files are needed.

use diffsync::AdapterExt;
use diffsync::MemoryAdapter;
use diffsync_examples::{build, generate, load};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

const SIZES: [usize; 2] = [10_000, 100_000];

fn pair(n: usize) -> (MemoryAdapter, MemoryAdapter) {
    let (a, b) = generate(n);
    let source = build("source", a).expect("generated data has unique keys");
    let target = build("target", b).expect("generated data has unique keys");
    (source, target)
}

/// A workload document parsed straight into a store (the bench program's loader).
#[divan::bench(args = SIZES, sample_count = 10)]
fn load_json(bencher: divan::Bencher, n: usize) {
    let json = serde_json::to_vec(&generate(n).0).expect("json");
    bencher.bench_local(|| load("source", &json).expect("load"));
}

#[divan::bench(args = SIZES, sample_count = 10)]
fn diff(bencher: divan::Bencher, n: usize) {
    let (source, target) = pair(n);
    bencher.bench_local(|| target.diff_from(&source).expect("diff"));
}

#[divan::bench(args = SIZES, sample_count = 10)]
fn sync(bencher: divan::Bencher, n: usize) {
    let (source, target) = pair(n);
    bencher
        .with_inputs(|| target.clone())
        .bench_local_values(|mut t| t.sync_from(&source).expect("sync"));
}

#[divan::bench(args = SIZES, sample_count = 10)]
fn render_text(bencher: divan::Bencher, n: usize) {
    let (source, target) = pair(n);
    let diff = target.diff_from(&source).expect("diff");
    bencher.bench_local(|| diff.to_string());
}

#[divan::bench(args = SIZES, sample_count = 10)]
fn render_json(bencher: divan::Bencher, n: usize) {
    let (source, target) = pair(n);
    let diff = target.diff_from(&source).expect("diff");
    bencher.bench_local(|| serde_json::to_string(&diff).expect("json"));
}
