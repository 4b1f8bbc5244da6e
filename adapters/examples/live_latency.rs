//! Event-to-applied latency of a reconcile loop into SQLite: a producer
//! edits an in-memory inventory at a steady rate; a loop debounces the
//! change events and applies each batch to an SQLite file in one
//! transaction. Prints one JSON line.
//!
//! `cargo run --release -p diffsync-adapters --example live_latency -- --rate 10000 --seconds 60`
//!
//! The loop reports, per incremental sync, the time from the first event of
//! its oldest key to the commit; every key of a batch is counted with its
//! batch's figure (an upper bound), so the percentiles are per key. The
//! database runs in WAL mode with checkpoints on a thread of their own, as
//! SQLite's documentation suggests for a writer that must not stall.

// The shared models; the file examples' sample document goes unused here.
#[allow(dead_code)]
#[path = "shared/inventory.rs"]
mod inventory;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diffsync::{AdapterExt, AttrSource, DiffModel, MemoryAdapter};
use diffsync_adapters::sqlite::SqliteAdapter;
use diffsync_live::{LoopEvent, OneWay, ReconcileLoop};
use inventory::{Device, Interface, Site, registry};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let (mut rate, mut seconds, mut keys, mut debounce_ms) = (10_000u64, 60u64, 100_000usize, 100u64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || -> Result<u64, BoxError> { Ok(args.next().ok_or("missing value")?.parse()?) };
        match a.as_str() {
            "--rate" => rate = value()?,
            "--seconds" => seconds = value()?,
            "--keys" => keys = value()? as usize,
            "--debounce-ms" => debounce_ms = value()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    // The source: `keys` interfaces, 10 per device, 10 devices per site.
    let mut source = MemoryAdapter::new("cmdb", &["site"]);
    let mut names = Vec::with_capacity(keys);
    for i in 0..keys {
        let (site, dev) = (format!("s{}", i / 100), format!("s{}-d{}", i / 100, i / 10));
        if i % 100 == 0 {
            source.store.add(Site {
                name: site.clone(),
                region: "east".into(),
            })?;
        }
        if i % 10 == 0 {
            source.store.add_child(
                Site::key(&site),
                Device {
                    site: site.clone(),
                    name: dev.clone(),
                    role: "leaf".into(),
                    serial: None,
                },
            )?;
        }
        let intf = Interface {
            device: dev.clone(),
            name: format!("eth{}", i % 10),
            description: String::new(),
            mtu: 1500,
            enabled: true,
        };
        names.push(DiffModel::key(&intf));
        source.store.add_child(Device::key(&site, &dev), intf)?;
    }
    let dir = std::env::temp_dir().join(format!("diffsync-live-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut db = SqliteAdapter::open("mirror", dir.join("mirror.db"), registry())?;
    // WAL, checkpointed by a thread of its own: a checkpoint run by the
    // committing connection (SQLite's default) fsyncs in the loop's commit
    // and puts 10-20 ms into the latency tail.
    db.connection()
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")?;
    let stop = Arc::new(AtomicBool::new(false));
    let checkpointer = {
        let (stop, path) = (stop.clone(), dir.join("mirror.db"));
        let conn = rusqlite::Connection::open(path)?;
        std::thread::spawn(move || -> rusqlite::Result<()> {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            }
            Ok(())
        })
    };
    db.sync_from(&source)?;
    let feed = source.store.subscribe();
    let source = Arc::new(Mutex::new(source));
    let target = Arc::new(Mutex::new(db));
    let debounce = Duration::from_millis(debounce_ms);
    let looped = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .feed(feed)
        .debounce(debounce)
        .startup_sync(false)
        .anti_entropy(None);
    let events = looped.subscribe();
    let handle = looped.spawn()?;

    // The producer: `rate` updates per second, in 1 ms ticks, random keys.
    let producer = {
        let source = source.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let (mut seed, mut done) = (0x9E37_79B9_7F4A_7C15u64, 0u64);
            while start.elapsed() < Duration::from_secs(seconds) {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                if due > done {
                    let mut s = source.lock().unwrap_or_else(|e| e.into_inner());
                    for n in done..due {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let k = &names[(seed >> 33) as usize % names.len()];
                        let v = [("description".into(), format!("edit {n}").into())]
                            .into_iter()
                            .collect();
                        // A key the producer chose exists: the store is never changed elsewhere.
                        let _ = s.store.update_attributes(k.erased(), AttrSource::Values(&v));
                    }
                    done = due;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            done
        })
    };
    let mut latencies: Vec<(Duration, usize)> = Vec::new();
    let (mut applied, mut failed, mut batches) = (0, 0, 0);
    let mut quiet_since: Option<Instant> = None;
    loop {
        match events.recv_timeout(Duration::from_millis(10)) {
            Ok(LoopEvent::Synced {
                keys,
                applied: a,
                failed: f,
                latency,
                ..
            }) => {
                latencies.push((latency, keys));
                applied += a;
                failed += f;
                batches += 1;
                quiet_since = None;
            }
            Ok(_) => {}
            Err(_) if producer.is_finished() => {
                let q = *quiet_since.get_or_insert_with(Instant::now);
                if q.elapsed() > debounce * 5 {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let updates = producer.join().map_err(|_| "producer panicked")?;
    handle.shutdown();
    stop.store(true, Ordering::Relaxed);
    checkpointer.join().map_err(|_| "checkpointer panicked")??;
    let in_step = {
        let (s, t) = (
            source.lock().unwrap_or_else(|e| e.into_inner()),
            target.lock().unwrap_or_else(|e| e.into_inner()),
        );
        let fresh = SqliteAdapter::open("check", dir.join("mirror.db"), registry())?;
        !fresh.diff_from(&*s)?.has_diffs() && !t.diff_from(&*s)?.has_diffs()
    };
    std::fs::remove_dir_all(&dir)?;
    latencies.sort();
    let total: usize = latencies.iter().map(|(_, k)| k).sum();
    let pct = |p: f64| {
        let mut seen = 0;
        for (l, k) in &latencies {
            seen += k;
            if seen as f64 >= p * total as f64 {
                return l.as_secs_f64() * 1000.0;
            }
        }
        0.0
    };
    let ms = |x: f64| (x * 10.0).round() / 10.0;
    println!(
        "{}",
        serde_json::json!({
            "workload": "live_latency",
            "keys": keys,
            "rate_per_s": rate,
            "seconds": seconds,
            "debounce_ms": debounce_ms,
            "updates": updates,
            "synced_keys": total,
            "batches": batches,
            "applied": applied,
            "failed": failed,
            "latency_ms_p50": ms(pct(0.50)),
            "latency_ms_p99": ms(pct(0.99)),
            "latency_ms_max": ms(pct(1.0)),
            "p99_budget_ms": debounce_ms + 50,
            "target_in_step": in_step,
        })
    );
    Ok(())
}
