//! The journal's rollback through the SQL adapters: a recorded sync undone
//! in the real database (read back after a reload: the rows, not only the
//! store), and a row edited since left alone and named.

use diffsync::{Adapter, AdapterExt, Options};
use diffsync_journal::Journal;

use crate::common::inventory;

/// Records a sync of `db` from a changed inventory, checks it changed the
/// rows, rolls it back and checks the rows are as before; then the same
/// run again, a row edited behind the journal's back, and a rollback that
/// leaves that row alone. `reload` reads the database again; `edit` changes
/// a device's role in it directly.
fn undo_in_the_database<A: Adapter<Store = diffsync::LocalStore>>(
    db: &mut A,
    reload: impl Fn(&mut A),
    edit: impl Fn(&mut A, &str, &str),
) {
    db.sync_from(&inventory("cmdb", 3, 0)).unwrap();
    reload(db);
    let before = db.store().fingerprint();
    let mut changed = inventory("cmdb", 3, 1);
    changed.store.remove("site", "site2", true).unwrap();
    let mut journal = Journal::in_memory().unwrap();
    let (run, report) = journal.sync(db, &changed, &mut Options::new()).unwrap();
    assert!(report.is_success() && report.changed(), "{report}");
    reload(db);
    assert_ne!(db.store().fingerprint(), before);

    let undo = journal.rollback(run, db, false).unwrap();
    assert!(undo.conflicts.is_empty() && undo.report.is_success(), "{undo:?}");
    reload(db);
    assert_eq!(db.store().fingerprint(), before, "the rows are as they were");

    // Again, and someone edits a device the run changed, in the database.
    let (run, _) = journal.sync(db, &changed, &mut Options::new()).unwrap();
    edit(db, "site1-r1", "core");
    reload(db);
    let undo = journal.rollback(run, db, false).unwrap();
    let refused: Vec<(&str, &str)> = undo
        .conflicts
        .iter()
        .map(|c| (c.model_type.as_str(), c.key.as_str()))
        .collect();
    assert_eq!(refused, [("device", "site1-r1")], "{:?}", undo.conflicts);
    reload(db);
    let role = db.store().get_dyn_by_id("device", "site1-r1").unwrap().attributes()["role"].clone();
    assert_eq!(role, "core", "the edit made since stays");
    assert!(db.store().get_dyn_by_id("site", "site2").is_ok(), "the rest was undone");
}

#[cfg(feature = "sqlite")]
#[test]
fn a_recorded_sync_is_undone_in_an_sqlite_database() {
    use diffsync_adapters::sqlite::SqliteAdapter;
    let dir = tempfile::tempdir().unwrap();
    let mut db = SqliteAdapter::open("db", dir.path().join("inv.db"), crate::common::registry()).unwrap();
    undo_in_the_database(
        &mut db,
        |db| db.reload().unwrap(),
        |db, device, role| {
            db.connection()
                .execute("UPDATE device SET role = ?1 WHERE name = ?2", [role, device])
                .unwrap();
        },
    );
}

#[cfg(feature = "postgres")]
#[test]
fn a_recorded_sync_is_undone_in_a_postgresql_database() {
    use diffsync_adapters::postgres::PostgresAdapter;
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let mut db = PostgresAdapter::connect("pg", &pg.params(), crate::common::registry()).unwrap();
    undo_in_the_database(
        &mut db,
        |db| db.reload().unwrap(),
        |db, device, role| {
            db.client()
                .execute("UPDATE device SET role = $1 WHERE name = $2", &[&role, &device])
                .unwrap();
        },
    );
}
