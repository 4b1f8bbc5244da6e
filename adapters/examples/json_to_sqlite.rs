//! Syncs an inventory file into an SQLite database, edits the file, syncs
//! again and prints the incremental diff and report. No server needed.
//!
//! Run: `cargo run -p diffsync-adapters --example json_to_sqlite [-- WORK_DIR]`
//! (by default in a fresh temporary directory).

use diffsync::AdapterExt;
use diffsync_adapters::sqlite::SqliteAdapter;
use diffsync_adapters::{FileAdapter, Format};

#[path = "shared/inventory.rs"]
mod inventory;
use inventory::{FIRST, registry};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let json = dir.join("inventory.json");
    let db_path = dir.join("inventory.db");
    let registry = registry();

    // 1. The file as the source of truth, synced into an empty database.
    std::fs::write(&json, FIRST)?;
    let file = FileAdapter::open("inventory.json", &json, Format::Json, registry.clone())?;
    let mut db = SqliteAdapter::open("inventory.db", &db_path, registry.clone())?;
    let report = db.sync_from(&file)?;
    println!("first sync: {} models created", report.totals().applied);
    println!("{}", db.diff_from(&file)?.summary_line());

    // 2. Someone edits the file: an MTU change, a new interface, a removed site.
    let mut doc: serde_json::Value = serde_json::from_str(FIRST)?;
    doc["site"][0]["device"][0]["interface"][1]["mtu"] = 1500.into();
    doc["site"][0]["device"][1]["interface"]
        .as_array_mut()
        .ok_or("bad document")?
        .push(serde_json::json!({"device": "nyc-edge1", "name": "Ethernet1/2", "description": "peering", "mtu": 1500, "enabled": true}));
    doc["site"].as_array_mut().ok_or("bad document")?.remove(1);
    std::fs::write(&json, serde_json::to_string_pretty(&doc)?)?;

    // 3. A fresh process would reopen both; the incremental diff and sync follow.
    let file = FileAdapter::open("inventory.json", &json, Format::Json, registry.clone())?;
    let mut db = SqliteAdapter::open("inventory.db", &db_path, registry)?;
    let diff = db.diff_from(&file)?;
    println!("\nincremental diff:\n{diff}\n{}\n", diff.summary());
    let report = db.sync_diff_from(&file, &diff, &mut diffsync::Options::new())?;
    print!("{report}");
    let rows: i64 = db
        .connection()
        .query_row("SELECT count(*) FROM interface", [], |r| r.get(0))?;
    println!("interfaces in the database: {rows}");
    let again = db.diff_from(&file)?;
    println!("second diff: {again}");
    if again.has_diffs() {
        return Err("the database still differs from the file".into());
    }
    Ok(())
}
