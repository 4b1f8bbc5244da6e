//! Chaos through a real SQLite database: random inventories on both sides,
//! triggers that refuse random rows (inserts, updates and deletes), with and
//! without CONTINUE_ON_FAILURE. After every sync the adapter's store is what
//! the database holds (a fresh open sees no difference), the report
//! accounts for every element once, and the re-diff is exactly the
//! unfinished work. A last round without refusals converges.

use std::collections::BTreeSet;

use diffsync::{Action, AdapterExt, DiffFlags, Error, Options};
use diffsync_adapters::sqlite::SqliteAdapter;
use proptest::prelude::*;

use crate::common::{inventory, registry};

/// (table, SQL expression of a row's key)
const TABLES: [(&str, &str); 3] = [
    ("site", "name"),
    ("device", "name"),
    ("interface", "device || '__' || name"),
];

/// Triggers that refuse any write to a row whose key is in `refused`.
fn refuse_listed_rows(db: &SqliteAdapter) {
    let mut sql = String::from("CREATE TABLE refused (key TEXT PRIMARY KEY);");
    for (table, key) in TABLES {
        for (op, row) in [("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")] {
            let key = key
                .replace("device", &format!("{row}.device"))
                .replace("name", &format!("{row}.name"));
            sql.push_str(&format!(
                "CREATE TRIGGER refuse_{op}_{table} BEFORE {op} ON {table}
                 WHEN EXISTS (SELECT 1 FROM refused WHERE key = {key})
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;"
            ));
        }
    }
    db.connection().execute_batch(&sql).unwrap();
}

fn changes(diff: &diffsync::Diff) -> BTreeSet<(String, String, Action)> {
    diff.iter()
        .filter(|(e, _)| e.action != Action::NoChange)
        .map(|(e, _)| (e.model_type().to_string(), e.unique_id().to_string(), e.action))
        .collect()
}

fn run(src: (usize, u32), dst: (usize, u32), seed: u64, continue_on_failure: bool) {
    let source = inventory("cmdb", src.0, src.1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.db");
    let mut db = SqliteAdapter::open("db", &path, registry()).unwrap();
    db.sync_from(&inventory("cmdb", dst.0, dst.1)).unwrap();
    refuse_listed_rows(&db);
    // Refuse about one key in six, of either side.
    let mut keys: BTreeSet<String> = BTreeSet::new();
    for store in [&source.store, &db.store] {
        for ty in ["site", "device", "interface"] {
            keys.extend(store.get_all_dyn(ty).map(|m| m.unique_id()));
        }
    }
    let fate = |k: &str| {
        k.bytes()
            .fold(seed, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    };
    for k in keys
        .iter()
        .filter(|k| fate(k).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61 == 0)
    {
        db.connection().execute("INSERT INTO refused VALUES (?1)", [k]).unwrap();
    }
    let flags = if continue_on_failure {
        DiffFlags::CONTINUE_ON_FAILURE
    } else {
        DiffFlags::empty()
    };
    for round in 0..3 {
        if round == 2 {
            db.connection().execute("DELETE FROM refused", []).unwrap();
        }
        let diff = db.diff_from(&source).unwrap();
        let mut opts = Options::new().flags(flags).allow_empty_source(true);
        let report = match db.sync_diff_from(&source, &diff, &mut opts) {
            Ok(report) => report,
            Err(Error::Sync(diffsync::SyncError::Aborted { report, .. })) => *report,
            Err(e) => panic!("unexpected error: {e}"),
        };
        // The store is what the database holds.
        let fresh = SqliteAdapter::open("fresh", &path, registry()).unwrap();
        assert!(!fresh.diff_from(&db).unwrap().has_diffs(), "store == database");
        // Every element reported once, in the diff's order.
        let reported: Vec<_> = report
            .elements
            .iter()
            .map(|e| (e.model_type(), e.key.unique_id()))
            .collect();
        let elements: Vec<_> = diff.iter().map(|(e, _)| (e.model_type(), e.unique_id())).collect();
        assert_eq!(reported, elements);
        // The re-diff is exactly the unfinished work.
        let unfinished: BTreeSet<_> = report
            .unfinished()
            .map(|e| (e.model_type().to_string(), e.key.unique_id().to_string(), e.action))
            .collect();
        assert_eq!(changes(&db.diff_from(&source).unwrap()), unfinished);
    }
    assert!(
        !db.diff_from(&source).unwrap().has_diffs(),
        "converged once nothing is refused"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_sqlite_target_mirrors_its_store_through_refused_writes(
        src in (0..4usize, 0..3u32), dst in (0..4usize, 0..3u32), seed in any::<u64>(), cont in any::<bool>(),
    ) {
        run(src, dst, seed, cont);
    }
}
