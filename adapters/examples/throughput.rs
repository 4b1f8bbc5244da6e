//! Throughput of syncing N creates (default 100,000 models: sites, devices,
//! interfaces) from memory into an empty SQLite database, into PostgreSQL
//! with `--postgres PARAMS`, and into a Redis-backed store with `--redis URL`.
//! Prints one JSON line per target.
//!
//! Run: `cargo run --release -p diffsync-adapters --example throughput -- [--models N] [--postgres "host=... port=... user=... dbname=..."] [--redis redis://127.0.0.1:6379/]`

use std::time::Instant;

use diffsync::{AdapterExt, DiffModel, LocalStore, MemoryAdapter, StoreAdapter};
use diffsync_adapters::Registry;
use diffsync_adapters::postgres::PostgresAdapter;
use diffsync_adapters::redis::RedisStore;
use diffsync_adapters::sqlite::SqliteAdapter;
use serde::{Deserialize, Serialize};

#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "site", children(Device))]
struct Site {
    #[diffsync(id)]
    name: String,
    region: String,
}

#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "device", children(Interface))]
struct Device {
    #[diffsync(id)]
    site: String,
    #[diffsync(id)]
    name: String,
    role: String,
    serial: String,
}

#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "interface")]
struct Interface {
    #[diffsync(id)]
    site: String,
    #[diffsync(id)]
    device: String,
    #[diffsync(id)]
    name: String,
    description: String,
    mtu: i64,
    enabled: bool,
}

fn source(n: usize) -> diffsync::Result<MemoryAdapter> {
    let mut s = LocalStore::new("memory");
    let sites = (n / 100).max(1);
    let per_device = (n - sites * 10) / (sites * 9);
    for si in 0..sites {
        let site = format!("site{si:06}");
        s.add(Site {
            name: site.clone(),
            region: "us-east".into(),
        })?;
        for di in 0..9 {
            let dev = format!("dev{di:02}");
            let key = Device::key(&site, &dev);
            s.add_child(
                Site::key(&site),
                Device {
                    site: site.clone(),
                    name: dev.clone(),
                    role: "leaf".into(),
                    serial: format!("SN{si}{di}"),
                },
            )?;
            for ii in 0..per_device {
                let intf = Interface {
                    site: site.clone(),
                    device: dev.clone(),
                    name: format!("Ethernet1/{ii}"),
                    description: format!("port {ii}"),
                    mtu: 9216,
                    enabled: ii % 2 == 0,
                };
                s.add_child(&key, intf)?;
            }
        }
    }
    Ok(MemoryAdapter::with_store("memory", &["site"], s))
}

fn report(target: &str, models: usize, secs: f64) {
    println!(
        "{{\"target\": \"{target}\", \"creates\": {models}, \"seconds\": {secs:.3}, \"creates_per_second\": {:.0}}}",
        models as f64 / secs
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut n, mut pg, mut redis) = (100_000usize, None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--models" => n = args.next().ok_or("--models N")?.parse()?,
            "--postgres" => pg = Some(args.next().ok_or("--postgres PARAMS")?),
            "--redis" => redis = Some(args.next().ok_or("--redis URL")?),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let registry = Registry::new().with::<Site>().with::<Device>().with::<Interface>();
    let src = source(n)?;
    let models = src.store.count_all();

    let dir = tempfile::tempdir()?;
    let mut db = SqliteAdapter::open("sqlite", dir.path().join("t.db"), registry.clone())?;
    let t = Instant::now();
    let r = db.sync_from(&src)?;
    report("sqlite", r.totals().applied, t.elapsed().as_secs_f64());
    assert_eq!(r.totals().applied, models);

    if let Some(params) = pg {
        let mut db = PostgresAdapter::connect("postgres", &params, registry.clone())?;
        let t = Instant::now();
        let r = db.sync_from(&src)?;
        report("postgres", r.totals().applied, t.elapsed().as_secs_f64());
    }
    if let Some(url) = redis {
        let namespace = format!("throughput-{}", std::process::id());
        let store = RedisStore::open(&url, &namespace, registry)?;
        let mut target = StoreAdapter::with_store("redis", &["site"], store);
        let t = Instant::now();
        let r = target.sync_from(&src)?;
        report("redis", r.totals().applied, t.elapsed().as_secs_f64());
    }
    Ok(())
}
