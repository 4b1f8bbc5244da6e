//! The range diff against loading both sides whole, on two SQLite
//! databases of N rows of the workload's interface shape (two identifier
//! columns, four attributes) of which a share differs (updated, inserted
//! or deleted in equal parts, at random). Prints one JSON line per mode.
//!
//! Run (each mode in a process of its own, so that peak memory is its own):
//! `cargo run --release -p diffsync-adapters --example range_bench -- --rows 1000000 --rate 0.001 --mode range`
//! and `--mode load` (open both with `SqliteAdapter`, then `diff_from`).
//! The databases are made once under `--dir` (default
//! `/tmp/diffsync-range-bench`) and reused while rows, rate and seed match.

use std::path::{Path, PathBuf};
use std::time::Instant;

use diffsync::{AdapterExt, DiffModel};
use diffsync_adapters::Registry;
use diffsync_adapters::ranges::{RangeOptions, SqlTables, range_diff};
use diffsync_adapters::sqlite::SqliteAdapter;
use serde::{Deserialize, Serialize};

#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "interface")]
struct Interface {
    #[diffsync(id)]
    device: String,
    #[diffsync(id)]
    name: String,
    description: String,
    mtu: i64,
    enabled: bool,
    speed: i64,
}

fn registry() -> Registry {
    Registry::new().with::<Interface>()
}

/// Peak resident memory of this process, in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Makes (or reuses) the two databases.
fn make(dir: &Path, rows: u64, rate: f64, seed: u64) -> (PathBuf, PathBuf) {
    let tag = format!("{rows}-{rate}-{seed}");
    let (a, b) = (
        dir.join(format!("source-{tag}.db")),
        dir.join(format!("target-{tag}.db")),
    );
    if a.exists() && b.exists() {
        return (a, b);
    }
    std::fs::create_dir_all(dir).unwrap();
    let _ = (std::fs::remove_file(&a), std::fs::remove_file(&b));
    for p in [&a, &b] {
        // The adapter makes the table as it keeps it.
        drop(SqliteAdapter::open("make", p, registry()).unwrap());
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut conns: Vec<rusqlite::Connection> = [&a, &b]
        .iter()
        .map(|p| rusqlite::Connection::open(p).unwrap())
        .collect();
    for c in &conns {
        c.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; BEGIN")
            .unwrap();
    }
    let insert = "INSERT INTO \"interface\" (\"device\", \"name\", \"description\", \"mtu\", \"enabled\", \"speed\") VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    for i in 0..rows {
        let device = format!("site{:05}-r{}", i / 64, (i / 8) % 8);
        let name = format!("eth{}", i % 8);
        let (mtu, enabled, speed) = (1500 + (i % 3) as i64 * 3000, i % 2 == 0, 1000 * (1 + (i % 4) as i64));
        let description = format!("port {i} of {device}");
        let differs = rng.f64() < rate;
        for (side, c) in conns.iter_mut().enumerate() {
            // A differing row: updated, only in the source, or only in the target.
            let row = match (differs, rng_kind(i), side) {
                (true, 0, 1) => Some(mtu + 1),
                (true, 1, 1) | (true, 2, 0) => None,
                _ => Some(mtu),
            };
            if let Some(mtu) = row {
                c.prepare_cached(insert)
                    .unwrap()
                    .execute(rusqlite::params![device, name, description, mtu, enabled, speed])
                    .unwrap();
            }
        }
    }
    for c in &conns {
        c.execute_batch("COMMIT").unwrap();
    }
    (a, b)
}

/// Which kind of difference a differing row is (by its number, so both
/// sides agree): 0 updated, 1 inserted (source only), 2 deleted (target only).
fn rng_kind(i: u64) -> u64 {
    (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let rows: u64 = arg("--rows").map_or(1_000_000, |v| v.parse().unwrap());
    let rate: f64 = arg("--rate").map_or(0.001, |v| v.parse().unwrap());
    let seed: u64 = arg("--seed").map_or(7, |v| v.parse().unwrap());
    let mode = arg("--mode").unwrap_or_else(|| "range".into());
    let dir = PathBuf::from(arg("--dir").unwrap_or_else(|| "/tmp/diffsync-range-bench".into()));
    let (a, b) = make(&dir, rows, rate, seed);
    let started = Instant::now();
    let (summary, extra) = match mode.as_str() {
        "range" => {
            let mut source = SqlTables::sqlite("source", &a, registry()).unwrap();
            let mut target = SqlTables::sqlite("target", &b, registry()).unwrap();
            let found = range_diff(&mut source, &mut target, &RangeOptions::default()).unwrap();
            let s = found.stats;
            (
                found.diff.summary(),
                format!(
                    r#","queries":{},"ranges":{},"rows_read":{},"rows_kept":{}"#,
                    s.queries, s.ranges, s.rows_read, s.rows_kept
                ),
            )
        }
        "load" => {
            let source = SqliteAdapter::open("source", &a, registry()).unwrap();
            let target = SqliteAdapter::open("target", &b, registry()).unwrap();
            (target.diff_from(&source).unwrap().summary(), String::new())
        }
        other => panic!("--mode range or load, not {other}"),
    };
    println!(
        r#"{{"mode":"{mode}","rows":{rows},"rate":{rate},"seconds":{:.3},"peak_mib":{:.1},"create":{},"update":{},"delete":{}{extra}}}"#,
        started.elapsed().as_secs_f64(),
        peak_mib(),
        summary.create,
        summary.update,
        summary.delete,
    );
}
