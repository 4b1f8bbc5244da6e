//! Two-way sync of an inventory kept both as a JSON file and as an SQLite
//! database, each edited on its own: the plan, the conflict log and the
//! base file between runs. No server needed.
//!
//! Run: `cargo run -p diffsync-adapters --example bidir_json_sqlite [-- WORK_DIR]`
//! (by default in a fresh temporary directory).

use diffsync::bidir::{Base, BiOptions, JsonLines, Strategy, reconcile};
use diffsync::{Adapter, AdapterExt};
use diffsync_adapters::sqlite::SqliteAdapter;
use diffsync_adapters::{FileAdapter, Format};

#[path = "shared/inventory.rs"]
mod inventory;
use inventory::{FIRST, registry};

fn main() -> Result<(), diffsync::BoxError> {
    let tmp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let (json, db_path) = (dir.join("inventory.json"), dir.join("inventory.db"));
    let (base_path, log_path) = (dir.join("base.json"), dir.join("conflicts.jsonl"));
    let registry = registry();
    let open = || -> Result<(FileAdapter, SqliteAdapter), diffsync::BoxError> {
        Ok((
            FileAdapter::open("file", &json, Format::Json, registry.clone())?,
            SqliteAdapter::open("db", &db_path, registry.clone())?,
        ))
    };
    // Attributes edited on one side merge; an attribute edited on both: the file wins.
    let opts = BiOptions::new()
        .strategy(Strategy::Merge {
            fallback: Box::new(Strategy::LeftWins),
        })
        .max_delete_share(None);

    // 1. First run: the database is empty, there is no base yet.
    std::fs::write(&json, FIRST)?;
    let (mut file, mut db) = open()?;
    let mut base = Base::load(&base_path, file.store())?;
    let report = reconcile(&mut file, &mut db, &mut base, &opts)?;
    base.save(&base_path)?;
    println!("first run: {report}");
    println!("base: {} models in {}\n", base.len(), base_path.display());

    // 2. Both are edited independently.
    let mut doc: serde_json::Value = serde_json::from_str(FIRST)?;
    let core = &mut doc["site"][0]["device"][0]["interface"];
    core[0]["description"] = "uplink to spine1".into();
    core[1]["mtu"] = 1500.into();
    std::fs::write(&json, serde_json::to_string_pretty(&doc)?)?;
    db.connection().execute_batch(
        "UPDATE site SET region = 'us-east-2' WHERE name = 'nyc';
         UPDATE interface SET description = 'core uplink', enabled = 0
           WHERE device = 'nyc-core1' AND name = 'Ethernet1/1';
         DELETE FROM interface WHERE device = 'lon-core1';",
    )?;

    // 3. A later run: reopen both and the base, look at the plan, reconcile.
    let (mut file, mut db) = open()?;
    let mut base = Base::load(&base_path, file.store())?;
    let plan = reconcile(&mut file, &mut db, &mut base, &opts.clone().dry_run(true))?;
    println!("plan:\n{}\n", plan.plan());
    let report = reconcile(&mut file, &mut db, &mut base, &opts)?;
    report.log_to(&mut JsonLines(log_path.clone()))?;
    base.save(&base_path)?;
    println!("{report}");
    println!("conflict log: {}", log_path.display());

    // 4. Both now hold the same inventory.
    let (file, db) = open()?;
    let left = db.diff_from(&file)?;
    println!("file vs database: {left}");
    if left.has_diffs() {
        return Err("the sides still differ".into());
    }
    Ok(())
}
