//! SQLite adapter: schema from models, load, transactional batch writes,
//! rollback and savepoints, bad tables.

use diffsync::{AdapterExt, Chain, DiffFlags, Error, Options, Outcome};
use diffsync_adapters::AdapterError;
use diffsync_adapters::sqlite::SqliteAdapter;

use crate::common::{inventory, registry};
use diffsync_tests::key_of;

fn count(db: &SqliteAdapter, table: &str) -> i64 {
    db.connection()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn sync_writes_rows_and_a_reopened_database_has_no_diff() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.db");
    let source = inventory("cmdb", 4, 0);
    let mut db = SqliteAdapter::open("db", &path, registry()).unwrap();
    let report = db.sync_from(&source).unwrap();
    assert_eq!(report.totals().applied, 4 * 9);
    assert_eq!(
        (count(&db, "site"), count(&db, "device"), count(&db, "interface")),
        (4, 8, 24)
    );
    let descr: String = db
        .connection()
        .query_row(
            "SELECT description FROM interface WHERE device = 'site1-r0' AND name = 'eth0'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        descr, "\"uplink, \\\"core\\\"\\nline 2\"",
        "custom types are stored as JSON"
    );
    drop(db);

    let mut db = SqliteAdapter::open("db", &path, registry()).unwrap();
    assert!(!db.diff_from(&source).unwrap().has_diffs());
    // Incremental: updates, new interfaces, and two deleted sites with their subtrees.
    let mut changed = inventory("cmdb", 3, 1);
    changed.store.remove(key_of("site:site2"), true).unwrap();
    let diff = db.diff_from(&changed).unwrap();
    let s = diff.summary();
    assert_eq!((s.create, s.delete), (4, 2 * 9), "{diff}");
    db.sync_from(&changed).unwrap();
    db.reload().unwrap();
    assert!(!db.diff_from(&changed).unwrap().has_diffs());
    assert_eq!(count(&db, "site"), 2);
    assert_eq!(count(&db, "interface"), 2 * 2 * 4);
}

fn refuse_eth3(db: &SqliteAdapter, device: &str) {
    db.connection()
        .execute_batch(&format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON interface WHEN NEW.name = 'eth3' AND NEW.device = '{device}'
             BEGIN SELECT RAISE(ABORT, 'eth3 refused'); END;"
        ))
        .unwrap();
}

#[test]
fn a_failing_statement_rolls_the_whole_transaction_back() {
    let mut db = SqliteAdapter::open_in_memory("db", registry()).unwrap();
    db.sync_from(&inventory("cmdb", 2, 0)).unwrap();
    refuse_eth3(&db, "site1-r1");
    let changed = inventory("cmdb", 2, 1);
    let before = db.diff_from(&changed).unwrap();
    let err = db.sync_from(&changed).unwrap_err();
    let Error::Sync(diffsync::SyncError::Aborted {
        cause: message, report, ..
    }) = &err
    else {
        panic!("{err}")
    };
    assert!(
        message.contains("eth3 refused") && message.contains("rolled back"),
        "{message}"
    );
    assert_eq!(report.totals().applied, 0);
    // Nothing half-applied: neither the database nor the store changed.
    assert_eq!(db.diff_from(&changed).unwrap(), before);
    db.reload().unwrap();
    assert_eq!(db.diff_from(&changed).unwrap(), before);
}

#[test]
fn continue_on_failure_uses_a_savepoint_per_change() {
    let mut db = SqliteAdapter::open_in_memory("db", registry()).unwrap();
    db.sync_from(&inventory("cmdb", 2, 0)).unwrap();
    refuse_eth3(&db, "site1-r1");
    let changed = inventory("cmdb", 2, 1);
    let report = db
        .sync_from_with(&changed, &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap();
    let failed: Vec<_> = report.failures().map(|e| e.key.unique_id()).collect();
    assert_eq!(failed, ["site1-r1__eth3"]);
    assert!(
        report.elements.iter().all(
            |e| matches!(e.outcome, Outcome::Applied | Outcome::Unchanged) || e.key.unique_id() == "site1-r1__eth3"
        )
    );
    db.reload().unwrap();
    let left = db.diff_from(&changed).unwrap();
    let s = left.summary();
    assert_eq!((s.create, s.update, s.delete), (1, 0, 0), "{left}");
}

#[test]
fn a_table_missing_a_column_names_table_model_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE site (name TEXT PRIMARY KEY); INSERT INTO site VALUES ('a');")
        .unwrap();
    drop(conn);
    let err = SqliteAdapter::open("db", &path, registry()).err().unwrap();
    assert!(matches!(err, AdapterError::Format { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("table \"site\" (model site)") && msg.contains("missing column \"region\""),
        "{msg}"
    );
}

#[test]
fn a_cell_of_the_wrong_type_names_model_key_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.db");
    {
        let mut db = SqliteAdapter::open("db", &path, registry()).unwrap();
        db.sync_from(&inventory("cmdb", 1, 0)).unwrap();
        db.connection()
            .execute(
                "UPDATE interface SET mtu = 'big' WHERE name = 'eth1' AND device = 'site0-r0'",
                [],
            )
            .unwrap();
    }
    let err = SqliteAdapter::open("db", &path, registry()).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("interface:site0-r0__eth1:") && msg.contains("column \"mtu\""),
        "{msg}"
    );
}

/// The chain of an error's sources, outermost first.
fn chain<'e>(e: &'e (dyn std::error::Error + 'static)) -> Vec<&'e (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source()).collect()
}

#[test]
fn a_locked_database_names_its_file_and_keeps_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.db");
    let mut db = SqliteAdapter::open("db", &path, registry()).unwrap();
    db.connection()
        .busy_timeout(std::time::Duration::from_millis(20))
        .unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = db.sync_from(&inventory("cmdb", 1, 0)).unwrap_err();
    let msg = Chain(&err).to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("database is locked"),
        "{msg}"
    );
    assert!(
        chain(&err)
            .iter()
            .any(|e| e.downcast_ref::<rusqlite::Error>().is_some()),
        "the rusqlite error is in the source chain: {msg}"
    );
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(db.store.count_all(), 0, "nothing applied to the store");
    db.sync_from(&inventory("cmdb", 1, 0)).unwrap();
}

#[test]
fn a_refused_row_names_file_model_and_key_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.db");
    let mut db = SqliteAdapter::open("db", &path, registry()).unwrap();
    refuse_eth3(&db, "site0-r1");
    let err = db.sync_from(&inventory("cmdb", 1, 1)).unwrap_err();
    let Error::Sync(diffsync::SyncError::Aborted { cause, key, .. }) = &err else {
        panic!("{err}")
    };
    assert_eq!(key.as_ref().map(|k| k.unique_id()), Some("site0-r1__eth3"));
    let cause = cause.error().unwrap().to_string();
    assert_eq!(
        cause,
        format!("{}: writing interface:site0-r1__eth3: eth3 refused", path.display())
    );
}

#[test]
fn a_null_identifier_is_named_not_read_as_a_key() {
    let mut db = SqliteAdapter::open_in_memory("db", registry()).unwrap();
    db.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    db.connection()
        .execute_batch("CREATE TABLE t AS SELECT * FROM site; DROP TABLE site; CREATE TABLE site (name TEXT, region TEXT NOT NULL, _seq INTEGER); INSERT INTO site (name, region) VALUES (NULL, 'east');")
        .unwrap();
    let err = db.reload().unwrap_err().to_string();
    assert!(err.contains("identifier column \"name\" is NULL"), "{err}");
}

#[test]
fn a_bidirectional_base_lives_in_the_database() {
    use diffsync::bidir::{BiOptions, reconcile};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.db");
    let mut left = inventory("cmdb", 2, 0);
    {
        let mut db = SqliteAdapter::open("db", &path, registry()).unwrap();
        let mut base = db.load_base("cmdb").unwrap();
        assert!(base.is_empty());
        reconcile(&mut left, &mut db, &mut base, &BiOptions::new().max_delete_share(None)).unwrap();
        db.save_base("cmdb", &base).unwrap();
    }
    // Another process: the base says what both agreed on, so a delete on
    // the left is a delete (not a create on the right).
    left.store.remove(key_of("interface:site0-r0__eth1"), false).unwrap();
    let mut db = SqliteAdapter::open("db", &path, registry()).unwrap();
    let mut base = db.load_base("cmdb").unwrap();
    assert_eq!(base.len(), db.store.count_all());
    let report = reconcile(&mut left, &mut db, &mut base, &BiOptions::new()).unwrap();
    assert_eq!(report.to_right.totals().applied, 1);
    assert!(db.store.get_dyn(key_of("interface:site0-r0__eth1")).is_err());
    assert!(db.load_base("other").unwrap().is_empty());
}

#[test]
fn an_update_does_not_overwrite_an_edit_made_since_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.db");
    let mut db = SqliteAdapter::open("db", &path, registry()).unwrap();
    db.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    // Another writer edits a row after this adapter read it.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute("UPDATE device SET role = 'edited' WHERE name = 'site0-r1'", [])
        .unwrap();
    let err = db.sync_from(&inventory("cmdb", 1, 1)).unwrap_err();
    let Error::Sync(diffsync::SyncError::Aborted { key, cause, .. }) = &err else {
        panic!("{err}")
    };
    assert_eq!(key.as_ref().map(|k| k.unique_id()), Some("site0-r1"));
    assert!(
        cause.to_string().contains("changed in the database since it was read"),
        "{cause}"
    );
    let role: String = other
        .query_row("SELECT role FROM device WHERE name = 'site0-r1'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(role, "edited", "the other writer's edit survives");
    // After a reload the diff shows the real state, and the sync goes through.
    db.reload().unwrap();
    db.sync_from(&inventory("cmdb", 1, 1)).unwrap();
    db.reload().unwrap();
    assert!(!db.diff_from(&inventory("cmdb", 1, 1)).unwrap().has_diffs());
}
