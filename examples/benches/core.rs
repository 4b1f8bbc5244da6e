//! Microbenchmarks: load, diff, sync and rendering at 10k and 100k models per side,
//! and runtime models of a wide table
//! (`cargo bench -p diffsync-examples --features bench`). Data comes from the in-memory
//! generator, so no files are needed.

use diffsync::AdapterExt;
use diffsync::MemoryAdapter;
use diffsync_examples::{File, build, generate, load, load_reader};

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

/// The generated workload of `n` models a side, as a document.
fn document(n: usize) -> Vec<u8> {
    serde_json::to_vec(&generate(n).0).expect("json")
}

/// A workload document parsed straight into a store (the bench program's loader).
#[divan::bench(args = SIZES, sample_count = 10)]
fn load_json(bencher: divan::Bencher, n: usize) {
    let json = document(n);
    bencher.bench_local(|| load("source", &json).expect("load"));
}

/// The same document read by the file loader (a buffer at a time, each
/// site record parsed whole from it).
#[divan::bench(args = SIZES, sample_count = 10)]
fn load_json_reader(bencher: divan::Bencher, n: usize) {
    let json = document(n);
    bencher.bench_local(|| load_reader("source", &json[..]).expect("load"));
}

/// The JSON parsers on the workload, into its records (no store): serde_json
/// from a slice and from a reader (a byte at a time), sonic-rs from a slice.
#[divan::bench(consts = SIZES, args = ["serde_json", "serde_json_reader", "sonic_rs"], sample_count = 10)]
fn parse<const N: usize>(bencher: divan::Bencher, parser: &str) {
    let json = document(N);
    let parse: fn(&[u8]) -> File = match parser {
        "serde_json" => |j| serde_json::from_slice(j).expect("parse"),
        "serde_json_reader" => |j| serde_json::from_reader(j).expect("parse"),
        _ => |j| sonic_rs::from_slice(j).expect("parse"),
    };
    bencher.bench_local(|| parse(&json));
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

/// Runtime models of a wide table built from JSON rows (1,000 rows of 10,
/// 50 and 200 string columns): what a name lookup in `Attrs` costs as a
/// model grows wide.
#[divan::bench(args = [10, 50, 200], sample_count = 10)]
fn wide_rows(bencher: divan::Bencher, columns: usize) {
    use std::sync::Arc;
    let attributes: Vec<serde_json::Value> = (0..columns)
        .map(|i| serde_json::json!({"name": format!("col{i:03}"), "kind": "string"}))
        .collect();
    let schema: diffsync::ModelSchema = serde_json::from_value(serde_json::json!({
        "name": "row",
        "identifiers": [{"name": "id", "kind": "integer"}],
        "attributes": attributes,
    }))
    .expect("schema");
    let schema = Arc::new(schema);
    let rows: Vec<serde_json::Value> = (0..1_000)
        .map(|r| {
            let mut row = serde_json::Map::new();
            row.insert("id".into(), r.into());
            for i in 0..columns {
                row.insert(format!("col{i:03}"), format!("v{r}-{i}").into());
            }
            serde_json::Value::Object(row)
        })
        .collect();
    bencher.with_inputs(|| rows.clone()).bench_local_values(|rows| {
        for row in rows {
            divan::black_box(diffsync::DynModel::from_json(&schema, row).expect("row"));
        }
    });
}
