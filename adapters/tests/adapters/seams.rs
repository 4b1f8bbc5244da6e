//! Trust at the seams: where a sync meets a path that does not exist, a
//! source that came up empty, a base in a missing directory.

use diffsync::bidir::Base;
use diffsync::{Adapter, AdapterExt, Error, Options};
use diffsync_adapters::sqlite::SqliteAdapter;
use diffsync_adapters::{AdapterError, FileAdapter, Format};

use crate::common::{inventory, registry};
use diffsync_tests::{key_of, typed_key};

fn sqlite_with(dir: &std::path::Path, sites: usize) -> SqliteAdapter {
    let mut db = SqliteAdapter::open("db", dir.join("inv.db"), registry()).unwrap();
    db.sync_from(&inventory("cmdb", sites, 0)).unwrap();
    db
}

#[test]
fn a_mistyped_source_path_is_an_error_naming_it_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = sqlite_with(dir.path(), 2);
    for (path, format) in [
        (dir.path().join("inventroy.json"), Format::Json),
        (dir.path().join("no-such-dir"), Format::Csv),
    ] {
        match FileAdapter::open("file", &path, format, registry()) {
            Err(AdapterError::NotFound { path: p }) => assert_eq!(p, path.display().to_string()),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("{} opened as an empty system", path.display()),
        }
        // Asked for, a missing file is an empty system: a target to create.
        let empty = FileAdapter::open_or_empty("file", &path, format, registry()).unwrap();
        assert_eq!(empty.store().count_all(), 0);
    }
    db.reload().unwrap();
    assert_eq!(db.store().count_all(), 2 * 9);
}

#[test]
fn a_sync_from_an_empty_source_into_a_full_target_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = sqlite_with(dir.path(), 2);
    let path = dir.path().join("empty.json");
    std::fs::write(&path, "{}").unwrap();
    let empty = FileAdapter::open("file", &path, Format::Json, registry()).unwrap();
    let err = db.sync_from(&empty).unwrap_err();
    assert!(
        matches!(&err, Error::Sync(diffsync::SyncError::EmptySource { source_name, dest, models: 18 }) if source_name == "file" && dest == "db"),
        "{err}"
    );
    db.reload().unwrap();
    assert_eq!(db.store().count_all(), 18, "nothing was deleted");
    // A dry run is refused too: its plan would be the same disaster.
    assert!(matches!(
        db.sync_from_with(&empty, &mut Options::new().dry_run(true)),
        Err(Error::Sync(diffsync::SyncError::EmptySource { .. }))
    ));
    // An empty target takes an empty source without a word.
    let mut fresh = SqliteAdapter::open("fresh", dir.path().join("fresh.db"), registry()).unwrap();
    assert!(fresh.sync_from(&empty).unwrap().is_success());
    // Allowed on purpose, the sync empties the target.
    db.sync_from_with(&empty, &mut Options::new().allow_empty_source(true))
        .unwrap();
    db.reload().unwrap();
    assert_eq!(db.store().count_all(), 0);
}

#[test]
fn a_one_way_sync_deleting_more_than_the_allowed_share_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = sqlite_with(dir.path(), 4);
    // Three of four sites gone: 27 of 36 models.
    let source = inventory("cmdb", 1, 0);
    let err = db
        .sync_from_with(&source, &mut Options::new().max_delete_share(Some(0.5)))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Sync(diffsync::SyncError::TooManyDeletes { side, deletes: 27, total: 36, .. }) if side == "db"),
        "{err}"
    );
    db.reload().unwrap();
    assert_eq!(db.store().count_all(), 36);
    // Under the limit, it goes through.
    db.sync_from_with(&source, &mut Options::new().max_delete_share(Some(0.8)))
        .unwrap();
    db.reload().unwrap();
    assert_eq!(db.store().count_all(), 9);
}

#[test]
fn a_base_in_a_missing_directory_is_an_error_not_a_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let like = inventory("cmdb", 1, 0).store;
    let err = Base::load(dir.path().join("stat").join("base.json"), &like).unwrap_err();
    assert!(
        matches!(&err, Error::Reconcile(diffsync::ReconcileError::Base { message, .. }) if message.contains("does not exist")),
        "{err}"
    );
    // A missing file in an existing directory is the first run.
    assert!(Base::load(dir.path().join("base.json"), &like).unwrap().is_empty());
}

#[cfg(feature = "redis")]
#[test]
fn a_redis_side_whose_server_dies_mid_reconcile_loses_no_edit_after_a_restart() {
    use diffsync::bidir::{BiOptions, reconcile};
    use diffsync::{AttrSource, Store, StoreAdapter};
    use diffsync_adapters::redis::RedisStore;

    use crate::common::Site;
    use crate::servers::Redis;

    let Some(mut server) = Redis::start_durable() else {
        return;
    };
    let open =
        |url: &str| StoreAdapter::with_store("redis", &["site"], RedisStore::open(url, "inv", registry()).unwrap());
    let mut redis = open(&server.url());
    redis.sync_from(&inventory("cmdb", 2, 0)).unwrap();
    let mut memory = inventory("memory", 2, 0);
    let mut base = Base::from_store(inventory("base", 2, 0).store);
    // The memory side's edits: a create, an update, a delete.
    memory
        .store
        .add(Site {
            name: "ams".into(),
            region: "eu".into(),
        })
        .unwrap();
    let v = [("region".to_string().into(), "north".into())].into_iter().collect();
    memory
        .store
        .update_attributes(key_of("site:site1"), AttrSource::Values(&v))
        .unwrap();
    memory.store.remove(key_of("device:site0-r1"), true).unwrap();

    server.kill();
    let opts = BiOptions::new().max_delete_share(None);
    let err = reconcile(&mut memory, &mut redis, &mut base, &opts).unwrap_err();
    assert!(
        matches!(&err, Error::Reconcile(diffsync::ReconcileError::Unfinished { side, .. }) if side == "redis"),
        "{err}"
    );
    // The image took nothing the server does not hold.
    let image = redis.store.local();
    assert!(image.get_dyn(key_of("site:ams")).is_err());
    assert_eq!(image.get(&Site::key("site1")).unwrap().region, "west");
    assert!(image.get_dyn(key_of("device:site0-r1")).is_ok());
    assert!(image.get_dyn(key_of("interface:site0-r1__eth2")).is_ok());
    // Nor did the base.
    assert!(base.store().get_dyn(key_of("site:ams")).is_err());
    assert!(base.store().get_dyn(key_of("device:site0-r1")).is_ok());

    // Restart: the server comes back with its data, the process reopens it.
    server.revive();
    let mut redis = open(&server.url());
    reconcile(&mut memory, &mut redis, &mut base, &opts).unwrap();
    for store in [memory.store(), redis.store.local()] {
        assert!(store.get_dyn(key_of("site:ams")).is_ok(), "the create was undone");
        assert_eq!(store.get(&Site::key("site1")).unwrap().region, "north");
        assert!(
            store.get_dyn(key_of("device:site0-r1")).is_err(),
            "the delete was undone"
        );
        assert!(store.get_dyn(key_of("interface:site0-r1__eth0")).is_err());
    }
    assert!(!memory.diff_from(&redis).unwrap().has_diffs());
}

/// Saves a base to a store, loads it back and compares; a second save replaces it.
fn round_trip(store: &mut dyn diffsync::bidir::BaseStore) {
    let like = inventory("x", 1, 0).store;
    assert!(
        store.load(&like).unwrap().is_empty(),
        "nothing saved yet: the first run"
    );
    for sites in [2, 1] {
        let base = Base::from_store(inventory("base", sites, 0).store);
        store.save(&base).unwrap();
        let back = store.load(&like).unwrap();
        let show = |b: &Base| diffsync::MemoryAdapter::with_store("b", &["site"], b.store().clone());
        assert!(!show(&back).diff_from(&show(&base)).unwrap().has_diffs());
        assert_eq!(back.len(), sites * 9);
    }
}

#[test]
fn a_base_store_keeps_a_base_in_a_file_or_an_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(&mut diffsync::bidir::BaseFile(dir.path().join("base.json")));
    round_trip(&mut diffsync_adapters::sqlite::SqliteBase::open(dir.path().join("inv.db"), "a-b").unwrap());
}

#[cfg(feature = "postgres")]
#[test]
fn a_base_store_keeps_a_base_in_postgres() {
    let Some(server) = crate::servers::Postgres::start() else {
        return;
    };
    round_trip(&mut diffsync_adapters::postgres::PostgresBase::connect(&server.params(), "a-b").unwrap());
}

#[cfg(feature = "redis")]
#[test]
fn a_base_store_keeps_a_base_in_redis() {
    let Some(server) = crate::servers::Redis::start() else {
        return;
    };
    round_trip(&mut diffsync_adapters::redis::RedisBase::open(&server.url(), "inv", "a-b").unwrap());
}

#[test]
fn a_loop_tells_once_that_its_source_file_does_not_parse_and_waits_out_a_half_written_save() {
    use diffsync_live::{LoopEvent, OneWay, ReconcileLoop};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.json");
    let mut file = FileAdapter::open_or_empty("file", &path, Format::Json, registry()).unwrap();
    file.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    let good = std::fs::read_to_string(&path).unwrap();
    let feed = file.change_feed().unwrap();
    let mirror = Arc::new(Mutex::new(diffsync::MemoryAdapter::new("mirror", &["site"])));
    let looped = ReconcileLoop::new(OneWay::new(Arc::new(Mutex::new(file)), vec![mirror.clone()]))
        .feed(feed)
        .debounce(Duration::from_millis(5))
        .anti_entropy(None);
    let events = looped.subscribe();
    let handle = looped.spawn().unwrap();
    let next = |what: &dyn Fn(&LoopEvent) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = events.recv_timeout(deadline - Instant::now()).expect("no such event");
            if what(&e) {
                return e;
            }
        }
    };
    next(&|e| matches!(e, LoopEvent::FullPass { .. }));
    // As an editor saves: a new file renamed over the old one.
    let save = |text: String| {
        let tmp = dir.path().join(".inv.json.swp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    // A save that does not parse: a failure naming the file and line.
    save(good.replacen("\"region\"", "\"region\" \"x\"", 1));
    let failed = next(&|e| matches!(e, LoopEvent::Failed { .. }));
    let LoopEvent::Failed { error, subject, .. } = failed else {
        unreachable!()
    };
    assert!(error.starts_with(&format!("{}:", path.display())), "{error}");
    // Once: nothing more while the file stays as it is.
    std::thread::sleep(Duration::from_millis(300));
    let more: Vec<LoopEvent> = events.try_iter().collect();
    assert!(more.is_empty(), "first {subject:?} {error:?} then {more:?}");
    // Fixed: the loop goes on.
    save(good.replacen("\"east\"", "\"north\"", 1));
    next(&|e| matches!(e, LoopEvent::Synced { applied: 1, .. }));
    // A save that is not atomic (the file cut short, then written to its
    // end a moment later) is no failure: the half file is given time.
    let whole = good.replacen("\"east\"", "\"south\"", 1);
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    std::fs::write(&path, &whole).unwrap();
    let synced = next(&|e| matches!(e, LoopEvent::Synced { .. } | LoopEvent::Failed { .. }));
    assert!(matches!(synced, LoopEvent::Synced { applied: 1, .. }), "{synced:?}");
    std::thread::sleep(Duration::from_millis(400));
    let more: Vec<LoopEvent> = events.try_iter().collect();
    assert!(!more.iter().any(|e| matches!(e, LoopEvent::Failed { .. })), "{more:?}");
    save(good.replacen("\"east\"", "\"north\"", 1));
    next(&|e| matches!(e, LoopEvent::Synced { applied: 1, .. }));
    handle.shutdown();
    let m = mirror.lock().unwrap();
    assert_eq!(
        m.store
            .get(&typed_key::<crate::common::Site>("site:site0"))
            .unwrap()
            .region,
        "north"
    );
}

#[test]
fn a_loaded_diff_that_does_not_fit_is_refused_whole_and_the_database_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = sqlite_with(dir.path(), 1);
    let source = inventory("cmdb", 2, 0);
    let text = serde_json::to_string(&db.diff_from(&source).unwrap()).unwrap();
    // An interface moved right under its site, which declares devices only.
    let mut diff: diffsync::Diff = serde_json::from_str(&text).unwrap();
    let site = diff.elements.iter_mut().find(|e| e.unique_id() == "site1").unwrap();
    let mut device = site.children.remove(0);
    site.children = std::mem::take(&mut device.children);
    let err = db.sync_diff(&diff, &mut Options::new()).unwrap_err();
    assert!(
        matches!(&err, Error::Sync(diffsync::SyncError::InvalidDiff { key, .. }) if key.model_type() == "interface"),
        "{err}"
    );
    // A value of the wrong kind somewhere in it: nothing at all is applied.
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let intf = json["elements"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["key"] == "site1-r1__eth2")
        .unwrap();
    intf["source_attrs"]["mtu"] = serde_json::json!("big");
    let diff: diffsync::Diff = serde_json::from_value(json).unwrap();
    let err = db.sync_diff(&diff, &mut Options::new()).unwrap_err();
    assert!(
        matches!(&err, Error::Sync(diffsync::SyncError::InvalidDiff { key, .. }) if key.unique_id() == "site1-r1__eth2"),
        "{err}"
    );
    let reopened = SqliteAdapter::open("db", dir.path().join("inv.db"), registry()).unwrap();
    assert_eq!(reopened.store.count_all(), 9, "nothing was written");
}

#[test]
fn a_row_whose_parent_is_missing_is_named_and_the_database_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_with(dir.path(), 1);
    db.connection()
        .execute_batch("PRAGMA foreign_keys = OFF; DELETE FROM device WHERE name = 'site0-r1';")
        .unwrap();
    let reopened = SqliteAdapter::open("db", dir.path().join("inv.db"), registry()).unwrap();
    let warnings: Vec<String> = reopened.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[0].contains("interface:site0-r1__eth0 names a parent device:site0-r1"),
        "{warnings:?}"
    );
    assert!(
        warnings[0].contains(": table \"interface\""),
        "names the table: {warnings:?}"
    );
    // Loaded without the parent, they show at the top of a diff: a sync
    // from a source without them deletes them.
    let mut source = inventory("cmdb", 1, 0);
    source.store.remove(key_of("device:site0-r1"), true).unwrap();
    let mut reopened = reopened;
    let diff = reopened.diff_from(&source).unwrap();
    assert_eq!(diff.summary().delete, 3, "{diff}");
    reopened.sync_from(&source).unwrap();
    let again = SqliteAdapter::open("db", dir.path().join("inv.db"), registry()).unwrap();
    assert!(again.warnings().is_empty());
    assert!(!again.diff_from(&source).unwrap().has_diffs());
}

#[test]
fn a_rewritten_file_keeps_its_permissions_and_an_untouched_one_its_comments() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, format) in [("inv.yaml", Format::Yaml), ("csv", Format::Csv)] {
        let path = dir.path().join(name);
        let mut file = FileAdapter::open_or_empty("file", &path, format, registry()).unwrap();
        file.sync_from(&inventory("cmdb", 1, 0)).unwrap();
        let files: Vec<std::path::PathBuf> = match format {
            Format::Csv => ["site", "device", "interface"]
                .map(|t| path.join(format!("{t}.csv")))
                .to_vec(),
            _ => vec![path.clone()],
        };
        for f in &files {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        file.sync_from(&inventory("cmdb", 1, 1)).unwrap();
        for f in &files {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{}", f.display());
        }
    }
    // A hand-kept file, reconciled with a side that changed nothing of it.
    let path = dir.path().join("inv.yaml");
    let text = format!("# kept by hand\n{}", std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, &text).unwrap();
    let mut file = FileAdapter::open("file", &path, Format::Yaml, registry()).unwrap();
    let mut other = inventory("other", 1, 1);
    let mut base = Base::from_store(inventory("base", 1, 1).store);
    let opts = diffsync::bidir::BiOptions::new();
    diffsync::bidir::reconcile(&mut file, &mut other, &mut base, &opts).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "not rewritten");
}
