//! A live mirror: an SQLite database kept in step with an inventory file
//! while the file is being edited. A reconcile loop watches the file
//! (inotify through `notify`), turns each save into model-level change
//! events, and applies only what changed, printing its events.
//!
//! `cargo run -p diffsync-adapters --example live_mirror`

#[path = "shared/inventory.rs"]
mod inventory;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diffsync::Adapter;
use diffsync_adapters::files::{FileAdapter, Format};
use diffsync_adapters::sqlite::SqliteAdapter;
use diffsync_live::{LoopEvent, OneWay, ReconcileLoop};
use inventory::{FIRST, registry};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let (json, db_path) = (dir.path().join("inventory.json"), dir.path().join("mirror.db"));
    std::fs::write(&json, FIRST)?;
    let file = FileAdapter::open("file", &json, Format::Json, registry())?;
    let feed = file.change_feed()?;
    let db = SqliteAdapter::open("db", &db_path, registry())?;
    let (file, db) = (Arc::new(Mutex::new(file)), Arc::new(Mutex::new(db)));
    let looped = ReconcileLoop::new(OneWay::new(file.clone(), vec![db.clone()]))
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
    let save = |text: String| -> std::io::Result<()> {
        let tmp = dir.path().join(".inventory.json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &json)
    };
    let edits = [
        ("a description", FIRST.replace("\"rack A12\"", "\"rack B07\"")),
        (
            "a new interface",
            FIRST.replace("\"rack A12\"", "\"rack B07\"").replace(
                r#"{"device": "nyc-edge1", "name": "Ethernet1/1", "description": "transit", "mtu": 1500, "enabled": true}"#,
                r#"{"device": "nyc-edge1", "name": "Ethernet1/1", "description": "transit", "mtu": 1500, "enabled": true},
      {"device": "nyc-edge1", "name": "Ethernet1/2", "description": "peering", "mtu": 1500, "enabled": false}"#,
            ),
        ),
    ];
    for (what, text) in edits {
        println!("edit the file: {what}");
        save(text)?;
        show(&|e| matches!(e, LoopEvent::Synced { .. }));
    }
    handle.shutdown();
    let fresh = SqliteAdapter::open("check", &db_path, registry())?;
    let diff = fresh.diff_from(&*file.lock().unwrap_or_else(|e| e.into_inner()))?;
    println!("file vs database: {}", diff.summary());
    Ok(())
}
