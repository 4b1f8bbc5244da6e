//! SQLite's durable change feed: a trigger-kept log read after a persisted
//! cursor, the adapter's own writes tagged, and a reconcile loop that
//! resumes from the cursor after a restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diffsync::feed::{ChangeFeed, ChangeKind, Position};
use diffsync::{Adapter, AdapterExt, Chain, MemoryAdapter, Sink};
use diffsync_adapters::sqlite::SqliteAdapter;
use diffsync_live::{LoopEvent, OneWay, ReconcileLoop};

use crate::common::{CHANGED_BY_OTHERS, assert_reread_by_key, drain, inventory, registry};
use diffsync_tests::{key_of, typed_key};

/// An SQLite database in a temporary directory holding `inventory(_, sites, 0)`,
/// its change feed enabled first when `feed`.
fn database(sites: usize, feed: bool) -> (tempfile::TempDir, std::path::PathBuf, SqliteAdapter) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.db");
    let mut db = SqliteAdapter::open("db", &path, registry()).unwrap();
    if feed {
        db.enable_change_feed().unwrap();
    }
    db.sync_from(&inventory("cmdb", sites, 0)).unwrap();
    (dir, path, db)
}

#[test]
fn the_change_log_records_every_writer_and_tags_the_adapters_own_writes() {
    let (_dir, path, mut db) = database(1, true);
    let mut feed = db.change_feed("mirror").unwrap();
    let (gap, first) = drain(&mut feed);
    assert!(gap, "a consumer that never committed starts with a full sync");
    assert_eq!(first.len(), db.store.count_all());
    assert!(
        first
            .iter()
            .all(|(k, _, _, o)| *k == ChangeKind::Created && o.is_none())
    );
    // Another process writes.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch(
            "UPDATE device SET role = 'spine' WHERE name = 'site0-r0';
             DELETE FROM interface WHERE device = 'site0-r1' AND name = 'eth2';
             INSERT INTO site (name, region) VALUES ('site9', 'north');
             UPDATE site SET name = 'site8' WHERE name = 'site9';",
        )
        .unwrap();
    let s = |t: &str, k: &str| (t.to_string(), k.to_string());
    let (gap, events) = drain(&mut feed);
    assert!(!gap);
    let got: Vec<_> = events.iter().map(|(k, t, key, o)| (*k, s(t, key), o.clone())).collect();
    use ChangeKind::*;
    assert_eq!(
        got,
        [
            (Updated, s("device", "site0-r0"), None),
            (Deleted, s("interface", "site0-r1__eth2"), None),
            (Created, s("site", "site9"), None),
            // A changed identifier: the new key updated, the old one deleted.
            (Updated, s("site", "site8"), None),
            (Deleted, s("site", "site9"), None),
        ]
    );
    // A tagged sync that fails (the image is stale) rolls the tag back with
    // everything else: nothing logged, no tag left for other writers.
    db.set_origin(Some("loop"));
    assert!(db.sync_from(&inventory("cmdb", 1, 1)).is_err());
    db.set_origin(None);
    assert_eq!(drain(&mut feed), (false, Vec::new()));
    let tag: Option<String> = other
        .query_row("SELECT tag FROM _diffsync_origin", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tag, None);
    // The adapter's own writes carry its tag, inside its transaction only.
    db.reload().unwrap();
    db.set_origin(Some("loop"));
    db.sync_from(&inventory("cmdb", 1, 1)).unwrap();
    db.set_origin(None);
    let (_, tagged) = drain(&mut feed);
    assert!(
        !tagged.is_empty() && tagged.iter().all(|(_, _, _, o)| o.as_deref() == Some("loop")),
        "{tagged:?}"
    );
    let tag: Option<String> = other
        .query_row("SELECT tag FROM _diffsync_origin", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tag, None);
}

#[test]
fn a_feed_resumes_after_its_committed_cursor_and_reports_a_pruned_log_as_a_gap() {
    let (_dir, path, db) = database(2, true);
    {
        let mut feed = db.change_feed("mirror").unwrap();
        drain(&mut feed);
        feed.commit().unwrap();
    }
    let other = rusqlite::Connection::open(&path).unwrap();
    let logged = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT count(*) FROM _diffsync_changes", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(logged(&other), 0, "everything every consumer read is pruned");
    other
        .execute("UPDATE site SET region = 'south' WHERE name = 'site1'", [])
        .unwrap();
    // A new process: the same consumer resumes after its cursor.
    let mut feed = db.change_feed("mirror").unwrap();
    let before = feed.position().unwrap();
    let (gap, events) = drain(&mut feed);
    assert!(!gap);
    assert_eq!(events, [(ChangeKind::Updated, "site".into(), "site1".into(), None)]);
    // Committed at a position before that event, a restart reads it again;
    // a position that is not this feed's is refused.
    feed.commit_at(&before).unwrap();
    let err = feed.commit_at(&Position::new("7-0")).unwrap_err().to_string();
    assert!(err.contains("\"7-0\" is not a position of this change feed"), "{err}");
    let mut feed = db.change_feed("mirror").unwrap();
    assert_eq!(drain(&mut feed).1.len(), 1);
    // Someone truncated the log past this consumer's cursor.
    other
        .execute("UPDATE site SET region = 'west' WHERE name = 'site1'", [])
        .unwrap();
    other
        .execute_batch("DELETE FROM _diffsync_changes; UPDATE _diffsync_pruned SET upto = upto + 1000;")
        .unwrap();
    let mut feed = db.change_feed("mirror").unwrap();
    assert!(drain(&mut feed).0, "events were lost: resync");
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_loop_from_sqlite_resumes_from_the_cursor_after_a_restart_without_a_full_resync() {
    let (_dir, path, db) = database(2, true);
    let feed = db.change_feed("mirror").unwrap();
    let source = Arc::new(Mutex::new(db));
    let target = Arc::new(Mutex::new(MemoryAdapter::new("mirror", &["site"])));
    let in_step = || {
        let fresh = SqliteAdapter::open("check", &path, registry()).unwrap();
        !target.lock().unwrap().diff_from(&fresh).unwrap().has_diffs()
    };
    let other = rusqlite::Connection::open(&path).unwrap();
    let first = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .feed(feed)
        .debounce(Duration::from_millis(5))
        .anti_entropy(None);
    let events = first.subscribe();
    let handle = first.spawn().unwrap();
    other
        .execute("INSERT INTO site (name, region) VALUES ('site7', 'north')", [])
        .unwrap();
    // A consumer that never committed reads a gap: a full pass, then its
    // cursor is committed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(
        events.recv_timeout(Duration::from_millis(100)),
        Ok(LoopEvent::FullPass { reason: "gap", .. })
    ) {
        assert!(Instant::now() < deadline, "no gap pass");
    }
    wait_until("the first loop", &in_step);
    handle.shutdown();

    // While no loop runs, the database changes.
    other
        .execute_batch(
            "UPDATE device SET role = 'spine' WHERE name = 'site0-r0';
             DELETE FROM interface WHERE device = 'site1-r1' AND name = 'eth0';
             INSERT INTO device (name, role, serial, _parent) VALUES ('site7-r0', 'edge', NULL, 'site7');",
        )
        .unwrap();
    let feed = source.lock().unwrap().change_feed("mirror").unwrap();
    let second = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .feed(feed)
        .debounce(Duration::from_millis(5))
        .anti_entropy(None)
        .startup_sync(false);
    let events = second.subscribe();
    let handle = second.spawn().unwrap();
    wait_until("the restarted loop", in_step);
    handle.shutdown();
    let seen: Vec<LoopEvent> = events.try_iter().collect();
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, LoopEvent::FullPass { .. } | LoopEvent::Gap { .. })),
        "resumed from the cursor, no full resync: {seen:?}"
    );
    let applied: usize = seen
        .iter()
        .map(|e| match e {
            LoopEvent::Synced { applied, .. } => *applied,
            _ => 0,
        })
        .sum();
    assert_eq!(applied, 3, "{seen:?}");
}

#[test]
fn a_reread_reads_the_named_rows_by_key() {
    let (_dir, path, mut db) = database(2, false);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(CHANGED_BY_OTHERS)
        .unwrap();
    assert_reread_by_key(&mut db);
}

#[test]
fn a_reread_of_a_model_that_moved_reads_everything_and_keeps_its_children() {
    use diffsync::feed::ChangeEvent;
    let (_dir, path, mut db) = database(2, false);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE device SET _parent = 'site1' WHERE name = 'site0-r0'")
        .unwrap();
    db.reread(&[ChangeEvent {
        kind: ChangeKind::Updated,
        key: key_of("device:site0-r0"),
        parent: None,
        origin: None,
    }])
    .unwrap();
    assert_eq!(
        db.store.parent(key_of("device:site0-r0")).unwrap(),
        Some(key_of("site:site1"))
    );
    assert_eq!(
        db.store
            .children_dyn(key_of("device:site0-r0"), "interface")
            .unwrap()
            .len(),
        3
    );
    let fresh = SqliteAdapter::open("check", &path, registry()).unwrap();
    assert!(!db.diff_from(&fresh).unwrap().has_diffs());
}

#[test]
fn a_reread_of_a_row_that_does_not_fit_names_it_and_keeps_the_image() {
    use diffsync::feed::ChangeEvent;
    let (_dir, path, mut db) = database(1, false);
    let before = db
        .store
        .get_dyn(key_of("interface:site0-r0__eth0"))
        .unwrap()
        .attributes();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "UPDATE site SET region = 'south' WHERE name = 'site0';
             UPDATE interface SET mtu = 'lots' WHERE device = 'site0-r0' AND name = 'eth0';",
        )
        .unwrap();
    let event = |model_type: &str, key: &str| ChangeEvent {
        kind: ChangeKind::Updated,
        key: key_of(&format!("{model_type}:{key}")),
        parent: None,
        origin: None,
    };
    let err = db
        .reread(&[event("site", "site0"), event("interface", "site0-r0__eth0")])
        .unwrap_err();
    let err = Chain(&err).to_string();
    assert!(err.contains("interface") && err.contains("site0-r0__eth0"), "{err}");
    // The row that fits was read; the one that does not left its model as it was.
    assert_eq!(
        db.store
            .get(&typed_key::<crate::common::Site>("site:site0"))
            .unwrap()
            .region,
        "south"
    );
    assert_eq!(
        db.store
            .get_dyn(key_of("interface:site0-r0__eth0"))
            .unwrap()
            .attributes(),
        before
    );
}

/// A feed that has read (and committed) everything of `db`'s log so far.
fn caught_up(db: &SqliteAdapter) -> diffsync_adapters::sqlite::SqliteFeed {
    let mut feed = db.change_feed("mirror").unwrap();
    drain(&mut feed);
    feed.commit().unwrap();
    feed
}

fn write(path: &std::path::Path, sql: &str) {
    rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

const EDIT: &str = "UPDATE site SET region = 'north' WHERE name = 'site0';";

#[test]
fn a_log_pruned_by_someone_else_past_the_cursor_is_a_gap() {
    let (_dir, path, db) = database(1, true);
    let mut feed = caught_up(&db);
    write(&path, &EDIT.repeat(3));
    // Another tool prunes the log, past this consumer's cursor.
    write(
        &path,
        "DELETE FROM _diffsync_changes WHERE seq <= (SELECT max(seq) - 1 FROM _diffsync_changes);",
    );
    let (gap, _) = drain(&mut feed);
    assert!(gap, "two events went unseen");
    assert_eq!(drain(&mut feed), (false, Vec::new()), "once");
    // A row deleted from the middle of what is still to read: a hole.
    write(&path, &EDIT.repeat(3));
    write(
        &path,
        "DELETE FROM _diffsync_changes WHERE seq = (SELECT max(seq) - 1 FROM _diffsync_changes);",
    );
    assert!(drain(&mut feed).0);
}

#[test]
fn a_log_cleared_after_unread_writes_is_a_gap_at_the_next_poll() {
    let (_dir, path, db) = database(1, true);
    let mut feed = caught_up(&db);
    write(&path, &EDIT.repeat(3));
    // Cleared by hand (or by a pruner of another tool): no write follows.
    write(&path, "DELETE FROM _diffsync_changes;");
    assert!(drain(&mut feed).0, "three events went unseen");
    assert_eq!(drain(&mut feed), (false, Vec::new()), "once");
    // Cut short: the last unread rows deleted.
    write(&path, &EDIT.repeat(3));
    write(
        &path,
        "DELETE FROM _diffsync_changes WHERE seq >= (SELECT max(seq) - 1 FROM _diffsync_changes);",
    );
    let (gap, events) = drain(&mut feed);
    assert!(gap, "{events:?}");
    // Later writes read as usual.
    write(&path, EDIT);
    let (gap, events) = drain(&mut feed);
    assert!(!gap && events.len() == 1, "{events:?}");
}

#[test]
fn a_log_dropped_and_created_again_is_a_gap_even_when_it_outgrew_the_cursor() {
    let (_dir, path, mut db) = database(1, true);
    let mut feed = caught_up(&db);
    write(&path, "DROP TABLE _diffsync_changes;");
    db.enable_change_feed().unwrap();
    // The new log gets more rows than the old one had.
    write(&path, &EDIT.repeat(db.store.count_all() + 5));
    assert!(drain(&mut feed).0);
    // A consumer that committed in the old generation starts again with a gap.
    let mut reopened = db.change_feed("mirror").unwrap();
    assert!(drain(&mut reopened).0);
}

#[test]
fn a_database_restored_from_a_backup_under_a_running_feed_is_a_gap() {
    let (dir, path, db) = database(1, true);
    let backup = dir.path().join("backup.db");
    let mut feed = caught_up(&db);
    write(&path, &format!("VACUUM INTO '{}';", backup.display()));
    write(&path, &EDIT.repeat(3));
    assert_eq!(drain(&mut feed).1.len(), 3);
    // Restored in place: the data, the log and its counter go back three rows.
    write(
        &path,
        &format!(
            "ATTACH '{}' AS b;
             DELETE FROM site; INSERT INTO site SELECT * FROM b.site;
             DELETE FROM _diffsync_changes; INSERT INTO _diffsync_changes SELECT * FROM b._diffsync_changes;
             UPDATE sqlite_sequence SET seq = (SELECT seq FROM b.sqlite_sequence WHERE name = '_diffsync_changes')
              WHERE name = '_diffsync_changes';
             DETACH b;",
            backup.display()
        ),
    );
    write(&path, "UPDATE site SET region = 'south' WHERE name = 'site0';");
    let (gap, _) = drain(&mut feed);
    assert!(gap, "the log went backwards under the feed");
    write(&path, &EDIT.repeat(4));
    let (gap, events) = drain(&mut feed);
    assert!(!gap);
    assert_eq!(events.len(), 4);
}

/// Rows another writer put in the change log, mutated at random (values
/// of another type, identifiers that are no JSON, unknown types and
/// operations): each poll reads them or fails typed, and re-reading what
/// they name never panics.
#[test]
fn change_log_rows_of_any_shape_are_read_or_refused() {
    use diffsync_tests::fuzz::{each_seed, mutate_bytes, mutate_json};
    let (_dir, path, mut db) = database(1, true);
    let mut feed = caught_up(&db);
    let other = rusqlite::Connection::open(&path).unwrap();
    let row: serde_json::Value = serde_json::json!(["device", ["site0-r0"], "updated", "loop"]);
    each_seed("a change log row", |rng| {
        let mut doc = row.clone();
        mutate_json(rng, &mut doc);
        let cell = |v: Option<&serde_json::Value>| -> rusqlite::types::Value {
            match v {
                Some(serde_json::Value::String(s)) => rusqlite::types::Value::Text(s.clone()),
                Some(serde_json::Value::Number(n)) => n.as_i64().map_or(
                    rusqlite::types::Value::Real(n.as_f64().unwrap_or(0.0)),
                    rusqlite::types::Value::Integer,
                ),
                Some(serde_json::Value::Null) | None => rusqlite::types::Value::Null,
                Some(other) => rusqlite::types::Value::Text(other.to_string()),
            }
        };
        let at = |i: usize| doc.as_array().and_then(|a| a.get(i));
        let ids = match at(1) {
            Some(v) if rng.bool() => rusqlite::types::Value::Text(
                String::from_utf8_lossy(&mutate_bytes(rng, v.to_string().as_bytes())).into(),
            ),
            v => cell(v),
        };
        // The log's columns are NOT NULL: such a row is refused by SQLite itself.
        let _ = other.execute(
            "INSERT INTO _diffsync_changes (model_type, ids, op, origin) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![cell(at(0)), ids, cell(at(2)), cell(at(3))],
        );
        if let Ok(batch) = feed.poll(16, Duration::ZERO) {
            let _ = db.reread(&batch.events);
            let _ = feed.commit();
        }
    });
}
