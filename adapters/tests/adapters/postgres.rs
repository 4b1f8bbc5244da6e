//! PostgreSQL adapter against a real server started by the test.

use diffsync::{Adapter, AdapterExt, Chain, DiffFlags, Error, Options, Sink};
use diffsync_adapters::AdapterError;
use diffsync_adapters::postgres::PostgresAdapter;

use crate::common::{CHANGED_BY_OTHERS, assert_reread_by_key, drain, inventory, registry};
use crate::servers::Postgres;
use diffsync_tests::key_of;
use diffsync_tests::typed_key;

fn count(db: &mut PostgresAdapter, table: &str) -> i64 {
    db.client()
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

#[test]
fn sync_round_trip_and_incremental_changes() {
    let Some(pg) = Postgres::start() else { return };
    let source = inventory("cmdb", 5, 0);
    let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    let report = db.sync_from(&source).unwrap();
    assert_eq!(report.totals().applied, 5 * 9);
    assert_eq!(count(&mut db, "interface"), 30);
    let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    assert!(!db.diff_from(&source).unwrap().has_diffs());
    let mut changed = inventory("cmdb", 5, 1);
    changed.store.remove(key_of("device:site4-r1"), true).unwrap();
    db.sync_from(&changed).unwrap();
    db.reload().unwrap();
    let left = db.diff_from(&changed).unwrap();
    assert!(!left.has_diffs(), "{left}");
    assert_eq!(count(&mut db, "device"), 9);
}

/// A database with a change feed, holding `sites` sites of the inventory.
fn fed(pg: &Postgres, sites: usize) -> PostgresAdapter {
    let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    db.enable_change_feed().unwrap();
    db.sync_from(&inventory("cmdb", sites, 0)).unwrap();
    db
}

/// The `mirror` consumer's feed, having read and committed all there is.
fn caught_up(db: &PostgresAdapter) -> diffsync_adapters::postgres::PostgresFeed {
    let mut feed = db.change_feed("mirror").unwrap();
    drain(&mut feed);
    diffsync::feed::ChangeFeed::commit(&mut feed).unwrap();
    feed
}

fn refuse_eth3(db: &mut PostgresAdapter) {
    db.client()
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN
               IF NEW.name = 'eth3' AND NEW.device = 'site1-r1' THEN RAISE EXCEPTION 'eth3 refused'; END IF;
               RETURN NEW; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER refuse BEFORE INSERT ON interface FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .unwrap();
}

#[test]
fn failure_rolls_back_and_continue_on_failure_uses_savepoints() {
    let Some(pg) = Postgres::start() else { return };
    let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    db.sync_from(&inventory("cmdb", 2, 0)).unwrap();
    refuse_eth3(&mut db);
    let changed = inventory("cmdb", 2, 1);
    let before = db.diff_from(&changed).unwrap();
    let err = db.sync_from(&changed).unwrap_err();
    assert!(
        matches!(&err, Error::Sync(diffsync::SyncError::Aborted { cause: message, .. }) if message.contains("eth3 refused")),
        "{err}"
    );
    db.reload().unwrap();
    assert_eq!(db.diff_from(&changed).unwrap(), before, "nothing half-applied");

    let report = db
        .sync_from_with(&changed, &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap();
    assert_eq!(
        report.failures().map(|e| e.key.unique_id()).collect::<Vec<_>>(),
        ["site1-r1__eth3"]
    );
    db.reload().unwrap();
    let s = db.diff_from(&changed).unwrap().summary();
    assert_eq!((s.create, s.update), (1, 0));
}

#[test]
fn missing_column_and_wrong_type_are_named() {
    let Some(pg) = Postgres::start() else { return };
    let mut c = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    c.batch_execute("CREATE TABLE site (name TEXT PRIMARY KEY, _seq BIGSERIAL)")
        .unwrap();
    let err = PostgresAdapter::connect("pg", &pg.params(), registry()).err().unwrap();
    assert!(err.to_string().contains("missing column \"region\""), "{err}");
    c.batch_execute("DROP TABLE site; CREATE TABLE site (name TEXT PRIMARY KEY, region INTEGER, _seq BIGSERIAL); INSERT INTO site (name, region) VALUES ('a', 1)").unwrap();
    let err = PostgresAdapter::connect("pg", &pg.params(), registry()).err().unwrap();
    assert!(
        matches!(&err, AdapterError::Model { model_type, key, .. } if model_type == "site" && key == "a"),
        "{err}"
    );
    assert!(err.to_string().contains("column \"region\""), "{err}");
}

#[test]
fn unreachable_server_names_the_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let params = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2");
    let err = PostgresAdapter::connect("pg", &params, registry()).err().unwrap();
    assert!(
        matches!(&err, AdapterError::Unreachable { address, .. } if *address == format!("postgres://127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn a_refused_row_names_server_model_and_key_and_keeps_the_cause() {
    let Some(pg) = Postgres::start() else { return };
    let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    db.sync_from(&inventory("cmdb", 2, 0)).unwrap();
    refuse_eth3(&mut db);
    let report = db
        .sync_from_with(
            &inventory("cmdb", 2, 1),
            &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE),
        )
        .unwrap();
    let failed = report.failures().next().unwrap();
    let msg = failed.outcome.message().unwrap_or_default();
    assert_eq!(
        msg,
        format!(
            "postgres://127.0.0.1:{}: writing interface:site1-r1__eth3: eth3 refused",
            pg.port
        )
    );
    // A row another client inserted since the load fails the multi-row
    // INSERT; the error names the server and the change whose row it was.
    db.client()
        .batch_execute("INSERT INTO site (name, region) VALUES ('site9', 'x')")
        .unwrap();
    let err = db.sync_from(&inventory("cmdb", 10, 0)).unwrap_err();
    let Error::Sync(diffsync::SyncError::Aborted { key, cause, .. }) = &err else {
        panic!("{err}")
    };
    assert_eq!(key.as_ref().map(|k| k.unique_id()), Some("site9"));
    let message = &**cause;
    assert!(
        message.starts_with(&format!(
            "postgres://127.0.0.1:{}: writing site:site9: duplicate key",
            pg.port
        )),
        "{message}"
    );
    let cause: &(dyn std::error::Error + 'static) = cause.error().unwrap();
    let chain: Vec<_> = std::iter::successors(Some(cause), |e| e.source()).collect();
    assert!(
        chain.iter().any(|e| e.downcast_ref::<postgres::Error>().is_some()),
        "{message}"
    );
}

#[test]
fn a_bidirectional_base_lives_in_the_database() {
    use diffsync::bidir::{BiOptions, reconcile};
    let Some(pg) = Postgres::start() else { return };
    let mut left = inventory("cmdb", 2, 0);
    {
        let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
        let mut base = db.load_base("cmdb").unwrap();
        assert!(base.is_empty());
        reconcile(&mut left, &mut db, &mut base, &BiOptions::new().max_delete_share(None)).unwrap();
        db.save_base("cmdb", &base).unwrap();
        // Saved again (an upsert): still one row.
        db.save_base("cmdb", &base).unwrap();
        assert_eq!(count(&mut db, "_diffsync_base"), 1);
    }
    // Another process: the base says what both agreed on, so a delete on
    // the left is a delete (not a create on the right).
    left.store.remove(key_of("interface:site0-r0__eth1"), false).unwrap();
    let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    let mut base = db.load_base("cmdb").unwrap();
    assert_eq!(base.len(), db.store.count_all());
    let report = reconcile(&mut left, &mut db, &mut base, &BiOptions::new()).unwrap();
    assert_eq!(report.to_right.totals().applied, 1);
    db.reload().unwrap();
    assert!(db.store.get_dyn(key_of("interface:site0-r0__eth1")).is_err());
    assert!(db.load_base("other").unwrap().is_empty());
    // A corrupt row is a typed error naming where it was read, not an empty base.
    db.client()
        .execute("UPDATE _diffsync_base SET body = 'not json' WHERE pair = 'cmdb'", &[])
        .unwrap();
    let err = db.load_base("cmdb").unwrap_err().to_string();
    assert!(err.contains("_diffsync_base"), "{err}");
}

#[test]
fn the_change_feed_never_passes_a_transaction_still_running_and_resumes_after_its_cursor() {
    use diffsync::feed::{ChangeFeed, ChangeKind::*};
    let Some(pg) = Postgres::start() else { return };
    let mut db = fed(&pg, 1);
    let mut feed = db.change_feed("mirror").unwrap();
    let (gap, first) = drain(&mut feed);
    assert!(gap, "a consumer that never committed starts with a full sync");
    assert_eq!(first.len(), db.store.count_all());
    // A transaction that started first and commits last: its sequence
    // number is lower than the other's, its commit later.
    let mut early = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    let mut late = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    let mut t1 = early.transaction().unwrap();
    t1.execute("INSERT INTO site (name, region) VALUES ('a', 'x')", &[])
        .unwrap();
    late.execute("INSERT INTO site (name, region) VALUES ('b', 'y')", &[])
        .unwrap();
    let (_, while_running) = drain(&mut feed);
    assert!(
        while_running.is_empty(),
        "nothing past a running transaction: {while_running:?}"
    );
    t1.commit().unwrap();
    let s = |k: &str| (Created, "site".to_string(), k.to_string(), None);
    assert_eq!(drain(&mut feed).1, [s("a"), s("b")], "none lost, in transaction order");
    // Tagged writes; the cursor survives a new connection.
    feed.commit().unwrap();
    db.reload().unwrap();
    db.set_origin(Some("loop"));
    let mut changed = inventory("cmdb", 1, 1);
    for k in ["a", "b"] {
        changed
            .store
            .add(
                db.store
                    .get(&typed_key::<crate::common::Site>(&format!("site:{}", k)))
                    .unwrap()
                    .clone(),
            )
            .unwrap();
    }
    db.sync_from(&changed).unwrap();
    db.set_origin(None);
    late.execute("DELETE FROM site WHERE name = 'b'", &[]).unwrap();
    let mut feed = db.change_feed("mirror").unwrap();
    let (gap, events) = drain(&mut feed);
    assert!(!gap);
    let (tagged, untagged): (Vec<_>, Vec<_>) = events.iter().partition(|e| e.3.is_some());
    assert!(!tagged.is_empty() && tagged.iter().all(|e| e.3.as_deref() == Some("loop")));
    assert_eq!(untagged, [&(Deleted, "site".to_string(), "b".to_string(), None)]);
    assert_eq!(
        count(&mut db, "_diffsync_changes") as usize,
        events.len(),
        "what was committed is pruned"
    );
}

#[test]
fn a_loop_keeps_a_mirror_of_a_postgres_database_written_by_others() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let Some(pg) = Postgres::start() else { return };
    let db = fed(&pg, 2);
    let feed = db.change_feed("mirror").unwrap();
    let source = Arc::new(Mutex::new(db));
    let mirror = Arc::new(Mutex::new(diffsync::MemoryAdapter::new("mirror", &["site"])));
    let handle = diffsync_live::ReconcileLoop::new(diffsync_live::OneWay::new(source.clone(), vec![mirror.clone()]))
        .feed(feed)
        .debounce(Duration::from_millis(5))
        .anti_entropy(None)
        .spawn()
        .unwrap();
    let mut other = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    other
        .batch_execute(
            "INSERT INTO site (name, region) VALUES ('site7', 'north');
             UPDATE device SET role = 'spine' WHERE name = 'site0-r0';
             DELETE FROM interface WHERE device = 'site1-r1' AND name = 'eth0';",
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fresh = PostgresAdapter::connect("check", &pg.params(), registry()).unwrap();
        if !mirror.lock().unwrap().diff_from(&fresh).unwrap().has_diffs() {
            break;
        }
        assert!(Instant::now() < deadline, "the mirror never caught up");
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.shutdown();
}

#[test]
fn a_reread_reads_the_named_rows_by_key() {
    let Some(pg) = Postgres::start() else { return };
    let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    db.sync_from(&inventory("cmdb", 2, 0)).unwrap();
    let mut other = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    other.batch_execute(CHANGED_BY_OTHERS).unwrap();
    assert_reread_by_key(&mut db);
}

#[test]
fn a_waiting_feed_sleeps_until_a_commit_notifies_it() {
    use diffsync::feed::{ChangeFeed, ChangeKind};
    use std::time::{Duration, Instant};
    let Some(pg) = Postgres::start() else { return };
    let db = fed(&pg, 1);
    let mut feed = db.change_feed("mirror").unwrap();
    drain(&mut feed);
    let params = pg.params();
    let writer = std::thread::spawn(move || {
        let mut other = postgres::Client::connect(&params, postgres::NoTls).unwrap();
        std::thread::sleep(Duration::from_millis(800));
        // The feed's connection has been idle since its last read: it
        // waits for a notification instead of querying every few ms.
        let idle: f64 = other
            .query_one(
                "SELECT extract(epoch FROM now() - state_change)::float8 FROM pg_stat_activity
                 WHERE query LIKE 'SELECT xid, seq, model_type%' AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0);
        other
            .execute("INSERT INTO site (name, region) VALUES ('late', 'x')", &[])
            .unwrap();
        idle
    });
    let start = Instant::now();
    let batch = feed.poll(100, Duration::from_secs(20)).unwrap();
    let idle = writer.join().unwrap();
    assert!(idle > 0.5, "the feed queried {idle:.3} s before, while nothing changed");
    let got: Vec<_> = batch.events.iter().map(|e| (e.kind, e.key.unique_id())).collect();
    assert_eq!(got, [(ChangeKind::Created, "late")]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "woken by the commit, not the timeout"
    );
}

#[test]
fn a_change_log_pruned_by_someone_else_or_created_again_is_a_gap() {
    use diffsync::feed::ChangeFeed;
    let Some(pg) = Postgres::start() else { return };
    let mut db = fed(&pg, 1);
    let mut feed = caught_up(&db);
    let mut other = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    let edit = "UPDATE site SET region = 'north' WHERE name = 'site0';";
    // Read up to the first of three edits, then another tool prunes the log past it.
    other.batch_execute(&edit.repeat(3)).unwrap();
    assert_eq!(feed.poll(1, std::time::Duration::ZERO).unwrap().events.len(), 1);
    other
        .batch_execute("DELETE FROM _diffsync_changes WHERE seq < (SELECT max(seq) FROM _diffsync_changes)")
        .unwrap();
    let (gap, _) = drain(&mut feed);
    assert!(gap, "an edit went unseen");
    assert_eq!(drain(&mut feed), (false, Vec::new()), "once");
    // Dropped and created again, then written more than the old log was.
    other.batch_execute("DROP TABLE _diffsync_changes CASCADE").unwrap();
    db.enable_change_feed().unwrap();
    other.batch_execute(&edit.repeat(40)).unwrap();
    assert!(drain(&mut feed).0);
    // A consumer that committed in the old generation starts with a gap.
    let mut reopened = db.change_feed("mirror").unwrap();
    assert!(drain(&mut reopened).0);
}

#[test]
fn the_adapter_its_base_and_its_feed_outlive_a_server_restart() {
    use diffsync::bidir::{BaseStore, BiOptions, Strategy, reconcile};
    use diffsync::feed::{ChangeFeed, ChangeKind::*};
    use diffsync_adapters::postgres::PostgresBase;
    let Some(pg) = Postgres::start() else { return };
    let mut db = fed(&pg, 1);
    let mut feed = caught_up(&db);
    let mut base = PostgresBase::connect(&pg.params(), "cmdb/pg").unwrap();
    pg.kill();
    // While the server is down: a typed error, nothing changed.
    let err = db.sync_from(&inventory("cmdb", 1, 1)).unwrap_err();
    assert!(Chain(&err).to_string().contains("127.0.0.1"), "{err}");
    assert!(feed.poll(10, std::time::Duration::ZERO).is_err());
    pg.revive();
    // Back: each opens its connection again on its next use.
    db.refresh().unwrap();
    let mut cmdb = inventory("cmdb", 1, 1);
    let mut saved = base.load(&db.store).unwrap();
    let report = reconcile(
        &mut cmdb,
        &mut db,
        &mut saved,
        &BiOptions::new().strategy(Strategy::LeftWins).max_delete_share(None),
    )
    .unwrap();
    assert!(report.is_clean(), "{report}");
    base.save(&saved).unwrap();
    assert!(!db.diff_from(&cmdb).unwrap().has_diffs());
    let (gap, events) = drain(&mut feed);
    assert!(!gap, "the log is whole: no gap");
    assert!(!events.is_empty() && events.iter().all(|e| matches!(e.0, Created | Updated | Deleted)));
    let db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    assert!(!db.diff_from(&cmdb).unwrap().has_diffs());
    assert_eq!(base.load(&db.store).unwrap().len(), db.store.count_all());
}
