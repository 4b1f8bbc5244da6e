//! A live mirror: an SQLite database kept in step with a directory of
//! inventory files (CSV, one file per model type) while they are edited. A
//! reconcile loop watches the directory (inotify through `notify`), turns
//! each save into model-level change events, and applies only what
//! changed, printing its events.
//!
//! `cargo run -p diffsync-adapters --example live_mirror`

#[path = "shared/inventory.rs"]
mod inventory;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diffsync::AdapterExt;
use diffsync_adapters::files::{FileAdapter, Format};
use diffsync_adapters::sqlite::SqliteAdapter;
use diffsync_live::{LoopEvent, OneWay, ReconcileLoop};
use inventory::{FIRST, registry};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let (csv, db_path) = (dir.path().join("inventory"), dir.path().join("mirror.db"));
    // The directory starts as the sample inventory: site.csv, device.csv,
    // interface.csv (written by a sync from the JSON sample).
    let sample = dir.path().join("sample.json");
    std::fs::write(&sample, FIRST)?;
    std::fs::create_dir(&csv)?;
    let mut files = FileAdapter::open("files", &csv, Format::Csv, registry())?;
    files.sync_from(&FileAdapter::open("sample", &sample, Format::Json, registry())?)?;
    let feed = files.change_feed()?;
    let db = SqliteAdapter::open("db", &db_path, registry())?;
    let (files, db) = (Arc::new(Mutex::new(files)), Arc::new(Mutex::new(db)));
    let looped = ReconcileLoop::new(OneWay::new(files.clone(), vec![db.clone()]))
        .feed(feed)
        .debounce(Duration::from_millis(50))
        .anti_entropy(Some(Duration::from_secs(5)));
    let events = looped.subscribe();
    let handle = looped.spawn()?;
    let show = |until: &dyn Fn(&LoopEvent) -> bool| {
        for e in events.iter() {
            println!("  {e:?}");
            if until(&e) {
                break;
            }
        }
    };
    println!("start: the database is empty, the loop's startup sync fills it");
    show(&|e| matches!(e, LoopEvent::FullPass { .. }));

    // Edits as an editor makes them: a new file, renamed over the old one.
    let edit = |file: &str, change: &dyn Fn(String) -> String| -> std::io::Result<()> {
        let path = csv.join(file);
        let tmp = csv.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, change(std::fs::read_to_string(&path)?))?;
        std::fs::rename(&tmp, &path)
    };
    println!("edit interface.csv: a description");
    edit("interface.csv", &|t| t.replace("rack A12", "rack B07"))?;
    show(&|e| matches!(e, LoopEvent::Synced { .. }));
    println!("edit device.csv and interface.csv: a new device with an interface");
    edit("device.csv", &|t| t + "lon,lon-edge1,edge,,lon\n")?;
    edit("interface.csv", &|t| {
        t + "lon-edge1,Ethernet1/1,transit,1500,true,lon__lon-edge1\n"
    })?;
    let applied = std::cell::Cell::new(0);
    show(&|e| {
        if let LoopEvent::Synced { applied: n, .. } = e {
            applied.set(applied.get() + n);
        }
        applied.get() >= 2
    });
    handle.shutdown();
    let fresh = SqliteAdapter::open("check", &db_path, registry())?;
    let diff = fresh.diff_from(&*files.lock().unwrap_or_else(|e| e.into_inner()))?;
    println!("files vs database: {}", diff.summary());
    Ok(())
}
