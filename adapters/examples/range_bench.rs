//! The range diff against loading both sides whole, on two databases of N
//! rows of the workload's interface shape (two identifier columns, four
//! attributes) of which a share differs (updated, inserted or deleted in
//! equal parts, at random): two SQLite files, or with `--postgres PARAMS`
//! two databases of one PostgreSQL server (`diffsync_source`,
//! `diffsync_target`). Prints one JSON line per mode.
//!
//! Run (each mode in a process of its own, so that peak memory is its own):
//! `cargo run --release -p diffsync-adapters --example range_bench -- --rows 1000000 --rate 0.001 --mode range`
//! and `--mode load` (open both adapters, then `diff_from`); with
//! `--postgres "host=127.0.0.1 port=5432 user=postgres"`, also
//! `--mode reladiff` (runs `reladiff` on the same two tables, if it is on
//! the PATH: `pip install reladiff psycopg2-binary`); `--schemas` puts the
//! two tables in two schemas of one database (`diffsync_joined`) instead,
//! which the range diff compares by one join per table; `--keep-hashes`
//! has the server keep each row's hash in columns of its table
//! (`postgres::keep_row_hashes`, once) before the timed diff; `--leaf N`
//! sets the range diff's leaf size (default 256); `--budget BYTES` diffs in
//! parts of about that many bytes of rows (`range_diff_parts`), each
//! counted and dropped. The SQLite files are
//! made once under `--dir` (default `/tmp/diffsync-range-bench`) and
//! reused while rows, rate and seed match; the PostgreSQL tables while
//! their row counts match.

use std::path::{Path, PathBuf};
use std::time::Instant;

use diffsync::{AdapterExt, DiffModel};
use diffsync_adapters::Registry;
use diffsync_adapters::ranges::{RangeOptions, SqlTables, range_diff, range_diff_parts};
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

/// The rows of both sides, in order: (device, name, description, mtu,
/// enabled, speed) or `None` where the side lacks the row.
fn rows(rows: u64, rate: f64, seed: u64, mut each: impl FnMut(usize, (String, String, String, i64, bool, i64))) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 0..rows {
        let device = format!("site{:05}-r{}", i / 64, (i / 8) % 8);
        let name = format!("eth{}", i % 8);
        let (mtu, enabled, speed) = (1500 + (i % 3) as i64 * 3000, i % 2 == 0, 1000 * (1 + (i % 4) as i64));
        let description = format!("port {i} of {device}");
        let differs = rng.f64() < rate;
        for side in 0..2 {
            // A differing row: updated, only in the source, or only in the target.
            let mtu = match (differs, rng_kind(i), side) {
                (true, 0, 1) => Some(mtu + 1),
                (true, 1, 1) | (true, 2, 0) => None,
                _ => Some(mtu),
            };
            if let Some(mtu) = mtu {
                each(
                    side,
                    (device.clone(), name.clone(), description.clone(), mtu, enabled, speed),
                );
            }
        }
    }
}

/// Makes (or reuses) the two PostgreSQL databases; their connection
/// parameters.
/// Makes (or reuses) the two tables: in two databases of the server, or
/// (`schemas`) in two schemas of one database (`diffsync_joined`), which
/// the range diff compares by one join per table.
fn make_postgres(params: &str, rows: u64, rate: f64, seed: u64, schemas: bool) -> [String; 2] {
    use std::io::Write;
    let names = ["diffsync_source", "diffsync_target"];
    let sides = names.map(|name| match schemas {
        true => format!("{params} dbname=diffsync_joined options='-c search_path={name}'"),
        false => format!("{params} dbname={name}"),
    });
    let mut admin = postgres::Client::connect(&format!("{params} dbname=postgres"), postgres::NoTls).unwrap();
    if schemas
        && admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = 'diffsync_joined'", &[])
            .unwrap()
            .is_none()
    {
        admin.batch_execute("CREATE DATABASE diffsync_joined").unwrap();
    }
    let mut expected = [0i64; 2];
    self::rows(rows, rate, seed, |side, _| expected[side] += 1);
    let mut fresh = false;
    for ((name, side), want) in names.iter().zip(&sides).zip(expected) {
        let count = postgres::Client::connect(side, postgres::NoTls)
            .ok()
            .and_then(|mut c| c.query_one("SELECT count(*) FROM interface", &[]).ok())
            .map(|r| r.get::<_, i64>(0));
        if count != Some(want) {
            fresh = true;
            if schemas {
                let mut joined =
                    postgres::Client::connect(&format!("{params} dbname=diffsync_joined"), postgres::NoTls).unwrap();
                joined
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"))
                    .unwrap();
            } else {
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
                admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            }
        }
    }
    if fresh {
        for p in &sides {
            // The adapter makes the table as it keeps it.
            drop(diffsync_adapters::postgres::PostgresAdapter::connect("make", p, registry()).unwrap());
        }
        let mut clients: Vec<postgres::Client> = sides
            .iter()
            .map(|p| postgres::Client::connect(p, postgres::NoTls).unwrap())
            .collect();
        let mut writers: Vec<_> = clients
            .iter_mut()
            .map(|c| {
                c.copy_in("COPY interface (device, name, description, mtu, enabled, speed) FROM STDIN")
                    .unwrap()
            })
            .collect();
        self::rows(
            rows,
            rate,
            seed,
            |side, (device, name, description, mtu, enabled, speed)| {
                writeln!(
                    writers[side],
                    "{device}\t{name}\t{description}\t{mtu}\t{enabled}\t{speed}"
                )
                .unwrap();
            },
        );
        for w in writers {
            w.finish().unwrap();
        }
        for c in &mut clients {
            c.batch_execute("VACUUM ANALYZE interface").unwrap();
        }
    }
    sides
}

/// Makes (or reuses) the two databases.
fn make(dir: &Path, rows_n: u64, rate: f64, seed: u64) -> (PathBuf, PathBuf) {
    let tag = format!("{rows_n}-{rate}-{seed}");
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
    let conns: Vec<rusqlite::Connection> = [&a, &b]
        .iter()
        .map(|p| rusqlite::Connection::open(p).unwrap())
        .collect();
    for c in &conns {
        c.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; BEGIN")
            .unwrap();
    }
    let insert = "INSERT INTO \"interface\" (\"device\", \"name\", \"description\", \"mtu\", \"enabled\", \"speed\") VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    rows(
        rows_n,
        rate,
        seed,
        |side, (device, name, description, mtu, enabled, speed)| {
            conns[side]
                .prepare_cached(insert)
                .unwrap()
                .execute(rusqlite::params![device, name, description, mtu, enabled, speed])
                .unwrap();
        },
    );
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
    let leaf: Option<usize> = arg("--leaf").map(|v| v.parse().unwrap());
    let budget: Option<u64> = arg("--budget").map(|v| v.parse().unwrap());
    let dir = PathBuf::from(arg("--dir").unwrap_or_else(|| "/tmp/diffsync-range-bench".into()));
    let out = match arg("--postgres") {
        None => {
            let (a, b) = make(&dir, rows, rate, seed);
            let started = Instant::now();
            let out = match mode.as_str() {
                "range" => ranged(
                    &mut SqlTables::sqlite("source", &a, registry()).unwrap(),
                    &mut SqlTables::sqlite("target", &b, registry()).unwrap(),
                    leaf,
                    budget,
                ),
                "load" => {
                    let source = SqliteAdapter::open("source", &a, registry()).unwrap();
                    let target = SqliteAdapter::open("target", &b, registry()).unwrap();
                    (target.diff_from(&source).unwrap().summary(), String::new())
                }
                other => panic!("--mode range or load, not {other}"),
            };
            (started, out)
        }
        Some(params) => {
            let [a, b] = make_postgres(&params, rows, rate, seed, args.iter().any(|a| a == "--schemas"));
            if args.iter().any(|a| a == "--keep-hashes") {
                // Once per table (a no-op after): the server hashes every row.
                let started = Instant::now();
                for side in [&a, &b] {
                    diffsync_adapters::postgres::keep_row_hashes(side, &registry()).unwrap();
                }
                eprintln!("hash columns kept in {:.1} s", started.elapsed().as_secs_f64());
            }
            let started = Instant::now();
            let out = match mode.as_str() {
                "range" => ranged(
                    &mut SqlTables::postgres("source", &a, registry()).unwrap(),
                    &mut SqlTables::postgres("target", &b, registry()).unwrap(),
                    leaf,
                    budget,
                ),
                "load" => {
                    use diffsync_adapters::postgres::PostgresAdapter;
                    let source = PostgresAdapter::connect("source", &a, registry()).unwrap();
                    let target = PostgresAdapter::connect("target", &b, registry()).unwrap();
                    (target.diff_from(&source).unwrap().summary(), String::new())
                }
                "reladiff" => return reladiff(&params),
                other => panic!("--mode range, load or reladiff, not {other}"),
            };
            (started, out)
        }
    };
    report(&mode, rows, rate, out.0, out.1);
}

/// A range diff of the two sides: its summary and what it read.
fn ranged(
    source: &mut SqlTables,
    target: &mut SqlTables,
    leaf: Option<usize>,
    budget: Option<u64>,
) -> (diffsync::Summary, String) {
    let opts = RangeOptions {
        leaf: leaf.unwrap_or(RangeOptions::default().leaf),
        ..RangeOptions::default()
    };
    let (summary, s, parts) = match budget {
        None => {
            let found = range_diff(source, target, &opts).unwrap();
            (found.diff.summary(), found.stats, 1)
        }
        Some(budget) => {
            // The parts' diffs counted and dropped, as a sync would apply
            // and drop them.
            let (mut summary, mut parts) = (diffsync::Summary::default(), 0);
            let stats = range_diff_parts(source, target, &opts, budget, &mut |_| {}, &mut |found| {
                let s = found.diff.summary();
                summary.create += s.create;
                summary.update += s.update;
                summary.delete += s.delete;
                parts += 1;
                Ok(())
            })
            .unwrap();
            (summary, stats, parts)
        }
    };
    (
        summary,
        format!(
            r#","parts":{parts},"queries":{},"ranges":{},"joined":{},"kept_hashes":{},"hashes_read":{},"rows_read":{},"rows_kept":{},"bytes_read":{}"#,
            s.queries, s.ranges, s.joined, s.kept_hashes, s.hashes_read, s.rows_read, s.rows_kept, s.bytes_read
        ),
    )
}

fn report(mode: &str, rows: u64, rate: f64, started: Instant, (summary, extra): (diffsync::Summary, String)) {
    println!(
        r#"{{"mode":"{mode}","rows":{rows},"rate":{rate},"seconds":{:.3},"peak_mib":{:.1},"create":{},"update":{},"delete":{}{extra}}}"#,
        started.elapsed().as_secs_f64(),
        peak_mib(),
        summary.create,
        summary.update,
        summary.delete,
    );
}

/// Runs reladiff's `hashdiff` across the two databases, timed, its peak
/// memory from `/usr/bin/time`.
fn reladiff(params: &str) {
    let field = |name: &str| {
        params
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    };
    let url = |db: &str| {
        format!(
            "postgresql://{}@{}:{}/{db}",
            field("user"),
            field("host"),
            field("port")
        )
    };
    let started = Instant::now();
    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "peak_kib=%M", "reladiff"])
        .arg(url("diffsync_source"))
        .arg("interface")
        .arg(url("diffsync_target"))
        .arg("interface")
        .args([
            "-k",
            "device",
            "-k",
            "name",
            "-c",
            "description",
            "-c",
            "mtu",
            "-c",
            "enabled",
            "-c",
            "speed",
            "-s",
            "--json",
        ])
        .output()
        .expect("run reladiff (pip install reladiff psycopg2-binary)");
    let seconds = started.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    let peak = err
        .lines()
        .find_map(|l| l.strip_prefix("peak_kib="))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0.0, |k| k / 1024.0);
    println!(
        r#"{{"mode":"reladiff","seconds":{seconds:.3},"peak_mib":{peak:.1},"stats":{}}}"#,
        String::from_utf8_lossy(&out.stdout).trim()
    );
    if !out.status.success() {
        eprintln!("{err}");
    }
}
