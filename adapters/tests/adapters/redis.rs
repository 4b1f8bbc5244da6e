//! Redis-backed store against a real redis-server started by the test.

use diffsync::{AdapterExt, Chain, Error, LocalStore, Store, StoreAdapter};
use diffsync_adapters::AdapterError;
use diffsync_adapters::redis::RedisStore;

use crate::common::{Device, Interface, Site, Text, assert_reread_by_key, device, inventory, registry, site};
use crate::servers::Redis;
use diffsync_tests::key_of;
use diffsync_tests::typed_key;

/// A hook-less adapter over a Redis-backed store.
type Persistent = StoreAdapter<RedisStore>;

fn persistent(store: RedisStore) -> Persistent {
    StoreAdapter::with_store("redis", &["site"], store)
}

fn keys(s: &LocalStore, t: &str) -> Vec<String> {
    s.get_all_dyn(t).map(|m| m.unique_id()).collect()
}

#[test]
fn a_synced_store_outlives_its_process_with_links_and_order() {
    let Some(server) = Redis::start() else { return };
    let source = inventory("cmdb", 3, 0);
    {
        let store = RedisStore::open(&server.url(), "inv", registry()).unwrap();
        let mut target = persistent(store);
        target.sync_from(&source).unwrap();
    }
    let reopened = persistent(RedisStore::open(&server.url(), "inv", registry()).unwrap());
    assert!(!reopened.diff_from(&source).unwrap().has_diffs());
    let image = reopened.store.local();
    assert_eq!(
        image.children_dyn(key_of("device:site1-r0"), "interface").unwrap(),
        [
            key_of("interface:site1-r0__eth0"),
            key_of("interface:site1-r0__eth1"),
            key_of("interface:site1-r0__eth2")
        ]
    );
    assert_eq!(keys(image, "site"), keys(&source.store, "site"));
    assert_eq!(keys(image, "interface"), keys(&source.store, "interface"));

    // Incremental sync, then another reopen.
    let changed = inventory("cmdb", 2, 1);
    let mut target = reopened;
    target.sync_from(&changed).unwrap();
    let again = RedisStore::open(&server.url(), "inv", registry()).unwrap();
    assert!(!persistent(again).diff_from(&changed).unwrap().has_diffs());
}

#[test]
fn two_stores_share_a_namespace_and_namespaces_are_separate() {
    let Some(server) = Redis::start() else { return };
    let mut a = RedisStore::open(&server.url(), "shared", registry()).unwrap();
    let mut b = RedisStore::open(&server.url(), "shared", registry()).unwrap();
    let other = RedisStore::open(&server.url(), "other", registry()).unwrap();
    a.add(Site {
        name: "nyc".into(),
        region: "east".into(),
    })
    .unwrap();
    a.add_child(
        Site::key("nyc"),
        Device {
            name: "r1".into(),
            role: "edge".into(),
            serial: None,
            db_pk: 0,
            flags: Default::default(),
        },
    )
    .unwrap();
    a.add_child(
        Device::key("r1"),
        Interface {
            device: "r1".into(),
            name: "eth0".into(),
            description: Text("up".into()),
            mtu: 1500,
            enabled: true,
        },
    )
    .unwrap();
    assert_eq!(b.local().count_all(), 0);
    b.refresh().unwrap();
    assert_eq!(b.local().count_all(), 3);
    assert_eq!(
        b.local().parent(key_of("interface:r1__eth0")).unwrap(),
        Some(key_of("device:r1"))
    );
    assert_eq!(other.local().count_all(), 0);
    // Removing a parent without its children keeps them, unlinked, in Redis too.
    Store::remove(&mut a, &key_of("device:r1"), false).unwrap();
    b.refresh().unwrap();
    assert_eq!(b.local().count("device"), 0);
    assert_eq!(b.local().parent(key_of("interface:r1__eth0")).unwrap(), None);
}

#[test]
fn unreachable_server_names_the_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let err = RedisStore::open(&url, "x", registry()).err().unwrap();
    assert!(
        matches!(&err, AdapterError::Unreachable { address, .. } if *address == url),
        "{err}"
    );
}

#[test]
fn a_failed_write_leaves_the_image_unchanged() {
    let Some(server) = Redis::start() else { return };
    let mut s = RedisStore::open(&server.url(), "inv", registry()).unwrap();
    s.add(Site {
        name: "nyc".into(),
        region: "east".into(),
    })
    .unwrap();
    drop(server);
    let err = s
        .add(Site {
            name: "lax".into(),
            region: "west".into(),
        })
        .unwrap_err();
    assert!(
        matches!(&err, diffsync::StoreError::Backend { key: Some(key), .. } if key.to_string() == "site:lax"),
        "{err}"
    );
    assert_eq!(keys(s.local(), "site"), ["nyc"]);
}

#[test]
fn a_sync_whose_flush_fails_reports_it_and_writes_nothing() {
    let Some(server) = Redis::start() else { return };
    let mut target = persistent(RedisStore::open(&server.url(), "inv", registry()).unwrap());
    target.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    drop(server);
    let err = target.sync_from(&inventory("cmdb", 2, 1)).unwrap_err();
    let msg = Chain(&err).to_string();
    let Error::Sync(diffsync::SyncError::StoreApply { source, report, .. }) = err else {
        panic!("{msg}")
    };
    assert!(matches!(*source, diffsync::StoreError::Backend { .. }), "{msg}");
    assert!(report.totals().applied > 0, "the report tells what the hooks applied");
    assert!(
        msg.contains("nothing of this sync was written") && msg.contains("rolled back"),
        "{msg}"
    );
    // The image took nothing the server did not: it is as it was read.
    assert!(!target.diff_from(&inventory("cmdb", 1, 0)).unwrap().has_diffs());
}

fn region(s: &RedisStore, name: &str) -> String {
    s.local()
        .get(&typed_key::<Site>(&format!("site:{}", name)))
        .unwrap()
        .region
        .clone()
}

fn is_conflict_on(err: &diffsync::StoreError, ty: &str, k: &str) -> bool {
    matches!(err, diffsync::StoreError::Conflict { key, .. } if key.model_type() == ty && key.unique_id() == k)
}

#[test]
fn a_write_from_a_stale_image_conflicts_instead_of_losing_an_update() {
    let Some(server) = Redis::start() else { return };
    let mut a = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    a.add(site("nyc", "east")).unwrap();
    let mut b = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    a.update_attributes(
        &key_of("site:nyc"),
        diffsync::AttrSource::Values(&[("region".into(), "north".into())].into_iter().collect()),
    )
    .unwrap();
    let err = b
        .update_attributes(
            &key_of("site:nyc"),
            diffsync::AttrSource::Values(&[("region".into(), "south".into())].into_iter().collect()),
        )
        .unwrap_err();
    assert!(is_conflict_on(&err, "site", "nyc"), "{err}");
    assert!(err.to_string().contains("changed by another writer"), "{err}");
    assert_eq!(region(&b, "nyc"), "east", "the image is as it was");
    b.refresh().unwrap();
    assert_eq!(region(&b, "nyc"), "north", "A's write survived");
    // After a refresh, B's write goes through.
    b.update_attributes(
        &key_of("site:nyc"),
        diffsync::AttrSource::Values(&[("region".into(), "south".into())].into_iter().collect()),
    )
    .unwrap();
    a.refresh().unwrap();
    assert_eq!(region(&a, "nyc"), "south");
}

#[test]
fn two_creates_of_one_key_the_second_conflicts() {
    let Some(server) = Redis::start() else { return };
    let mut a = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    let mut b = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    a.add(site("nyc", "east")).unwrap();
    let err = b.add(site("nyc", "west")).unwrap_err();
    assert!(is_conflict_on(&err, "site", "nyc"), "{err}");
    assert_eq!(b.local().count("site"), 0);
    // A deleted and re-created key never returns to an old version.
    Store::remove(&mut a, &key_of("site:nyc"), false).unwrap();
    let mut c = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    c.add(site("nyc", "north")).unwrap();
    let err = a.add(site("nyc", "east")).unwrap_err();
    assert!(is_conflict_on(&err, "site", "nyc"), "{err}");
    let fresh = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    assert_eq!(region(&fresh, "nyc"), "north");
}

#[test]
fn a_remove_racing_with_a_child_add_conflicts_and_the_namespace_still_loads() {
    let Some(server) = Redis::start() else { return };
    let mut a = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    a.add(site("nyc", "east")).unwrap();
    let mut b = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    b.add_child(Site::key("nyc"), device("r1", "edge")).unwrap();
    for remove_children in [true, false] {
        let err = Store::remove(&mut a, &key_of("site:nyc"), remove_children).unwrap_err();
        assert!(is_conflict_on(&err, "site", "nyc"), "{err}");
    }
    assert_eq!(a.local().count("site"), 1);
    let fresh = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    assert_eq!(
        fresh.local().parent(key_of("device:r1")).unwrap(),
        Some(key_of("site:nyc"))
    );
    // From a fresh image the remove goes through, and takes the child along.
    a.refresh().unwrap();
    Store::remove(&mut a, &key_of("site:nyc"), true).unwrap();
    let fresh = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    assert_eq!(fresh.local().count_all(), 0);
}

#[test]
fn a_sync_from_a_stale_image_conflicts_writes_nothing_and_rereads() {
    let Some(server) = Redis::start() else { return };
    let mut target = persistent(RedisStore::open(&server.url(), "inv", registry()).unwrap());
    target.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    let mut other = RedisStore::open(&server.url(), "inv", registry()).unwrap();
    let before = keys(other.local(), "interface");
    other
        .update_attributes(
            &key_of("device:site0-r0"),
            diffsync::AttrSource::Values(&[("role".into(), "spine".into())].into_iter().collect()),
        )
        .unwrap();
    let err = target.sync_from(&inventory("cmdb", 2, 1)).unwrap_err();
    let Error::Sync(diffsync::SyncError::StoreApply { source, .. }) = &err else {
        panic!("{err}")
    };
    assert!(matches!(**source, diffsync::StoreError::Conflict { .. }), "{err}");
    // Nothing of the sync reached the server; the image is the server's again.
    let fresh = RedisStore::open(&server.url(), "inv", registry()).unwrap();
    assert_eq!(keys(fresh.local(), "interface"), before);
    assert_eq!(fresh.local().get(&Device::key("site0-r0")).unwrap().role, "spine");
    assert_eq!(
        target.store.local().get(&Device::key("site0-r0")).unwrap().role,
        "spine"
    );
    // The next sync does the whole work.
    target.sync_from(&inventory("cmdb", 2, 1)).unwrap();
    let fresh = persistent(RedisStore::open(&server.url(), "inv", registry()).unwrap());
    assert!(!fresh.diff_from(&inventory("cmdb", 2, 1)).unwrap().has_diffs());
}

#[test]
fn a_store_reconnects_after_a_server_restart() {
    let Some(mut server) = Redis::start_on_socket() else {
        return;
    };
    let mut s = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    s.add(site("nyc", "east")).unwrap();
    server.restart();
    // The restarted server is empty (no persistence): the refresh shows it.
    s.refresh().unwrap();
    assert_eq!(s.local().count_all(), 0);
    s.add(site("lax", "west")).unwrap();
    server.restart();
    s.add(site("sfo", "west")).unwrap();
    let fresh = RedisStore::open(&server.url(), "ns", registry()).unwrap();
    assert_eq!(keys(fresh.local(), "site"), ["sfo"]);
}

#[test]
fn a_bidirectional_base_lives_in_the_namespace() {
    use diffsync::bidir::{BiOptions, reconcile};
    let Some(server) = Redis::start() else { return };
    let mut left = inventory("cmdb", 1, 0);
    let mut target = persistent(RedisStore::open(&server.url(), "inv", registry()).unwrap());
    let mut base = target.store.load_base("cmdb").unwrap();
    assert!(base.is_empty());
    reconcile(
        &mut left,
        &mut target,
        &mut base,
        &BiOptions::new().max_delete_share(None),
    )
    .unwrap();
    target.store.save_base("cmdb", &base).unwrap();
    let mut again = RedisStore::open(&server.url(), "inv", registry()).unwrap();
    let loaded = again.load_base("cmdb").unwrap();
    assert_eq!(loaded.len(), left.store.count_all());
    assert_eq!(
        again.local().count_all(),
        left.store.count_all(),
        "the base key is not a model"
    );
}

#[test]
fn the_change_stream_carries_every_processs_writes_and_resumes_after_its_cursor() {
    use diffsync::feed::{ChangeFeed, ChangeKind::*};
    use std::time::Duration;
    let Some(server) = Redis::start() else { return };
    let mut a = persistent(RedisStore::open(&server.url(), "inv", registry()).unwrap());
    a.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    // Another process reads the stream.
    let b = RedisStore::open(&server.url(), "inv", registry()).unwrap();
    let mut feed = b.change_feed("mirror").unwrap();
    let first = feed.poll(1000, Duration::ZERO).unwrap();
    assert!(first.gap, "a consumer that never committed starts with a full sync");
    assert_eq!(first.events.len(), a.store.local().count_all());
    feed.commit().unwrap();
    // Tagged writes, and a blocking read that wakes up for them.
    a.store.set_origin(Some("loop"));
    a.store.remove(&key_of("interface:site0-r0__eth0"), false).unwrap();
    a.store.set_origin(None);
    let v = [("region".into(), "north".into())].into_iter().collect();
    a.store
        .update_attributes(&key_of("site:site0"), diffsync::AttrSource::Values(&v))
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let batch = feed.poll(10, Duration::from_secs(5)).unwrap();
        assert!(!batch.events.is_empty(), "the read woke up for nothing: {got:?}");
        got.extend(
            batch
                .events
                .into_iter()
                .map(|e| (e.kind, e.key.unique_id().to_string(), e.origin)),
        );
    }
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        [
            (Deleted, s("site0-r0__eth0"), Some(s("loop"))),
            // The parent's record (its child order) was written too.
            (Updated, s("site0-r0"), Some(s("loop"))),
            (Updated, s("site0"), None)
        ]
    );
    // A new process resumes after the committed cursor: the three again.
    let mut feed = b.change_feed("mirror").unwrap();
    let again = feed.poll(10, Duration::ZERO).unwrap();
    assert!(!again.gap);
    assert_eq!(again.events.len(), 3);
    feed.commit().unwrap();
    // The stream trimmed past the cursor: a gap.
    let mut conn = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("XTRIM")
        .arg("inv:_changes")
        .arg("MAXLEN")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    a.store.remove(&key_of("site:site0"), true).unwrap();
    let mut feed = b.change_feed("mirror").unwrap();
    assert!(feed.poll(10, Duration::ZERO).unwrap().gap);
    feed.commit().unwrap();
    // A write refused for a stale version logs nothing: the stream is
    // written by the same script, all or nothing.
    a.store
        .add(Site {
            name: "lax".into(),
            region: "west".into(),
        })
        .unwrap();
    let mut c = persistent(RedisStore::open(&server.url(), "inv", registry()).unwrap());
    let v = [("region".into(), "south".into())].into_iter().collect();
    c.store
        .update_attributes(&key_of("site:lax"), diffsync::AttrSource::Values(&v))
        .unwrap();
    let stale = a
        .store
        .update_attributes(&key_of("site:lax"), diffsync::AttrSource::Values(&v));
    assert!(matches!(stale, Err(diffsync::StoreError::Conflict { .. })), "{stale:?}");
    let after: Vec<_> = feed
        .poll(10, Duration::ZERO)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(after, [Created, Updated], "only the writes that went through");
}

#[test]
fn a_reread_reads_the_named_keys_with_their_versions() {
    let Some(server) = Redis::start() else { return };
    let mut target = persistent(RedisStore::open(&server.url(), "inv", registry()).unwrap());
    target.sync_from(&inventory("cmdb", 2, 0)).unwrap();
    // Another process makes the changes of `CHANGED_BY_OTHERS`.
    let mut other = RedisStore::open(&server.url(), "inv", registry()).unwrap();
    let region = |r: &str| [("region".into(), r.into())].into_iter().collect::<diffsync::Attrs>();
    other
        .add_child(
            Site::key("site0"),
            Device {
                name: "site0-r9".into(),
                role: "edge".into(),
                serial: None,
                db_pk: 0,
                flags: Default::default(),
            },
        )
        .unwrap();
    other
        .update_attributes(&key_of("site:site1"), diffsync::AttrSource::Values(&region("south")))
        .unwrap();
    other.remove(&key_of("interface:site1-r1__eth0"), false).unwrap();
    other
        .update_attributes(&key_of("site:site0"), diffsync::AttrSource::Values(&region("north")))
        .unwrap();
    assert_reread_by_key(&mut target);
    // The versions came with the values: a write to a key read again
    // goes through, one to a key not read again is stale and conflicts.
    target
        .store
        .update_attributes(&key_of("site:site1"), diffsync::AttrSource::Values(&region("far")))
        .unwrap();
    let err = target
        .store
        .update_attributes(&key_of("site:site0"), diffsync::AttrSource::Values(&region("far")))
        .unwrap_err();
    assert!(matches!(err, diffsync::StoreError::Conflict { .. }), "{err}");
}

#[test]
fn a_change_stream_with_entries_deleted_or_created_again_is_a_gap() {
    use diffsync::feed::ChangeFeed;
    use std::time::Duration;
    let Some(server) = Redis::start() else { return };
    let mut a = persistent(RedisStore::open(&server.url(), "inv", registry()).unwrap());
    a.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    let mut feed = a.store.change_feed("mirror").unwrap();
    crate::common::drain(&mut feed);
    feed.commit().unwrap();
    let mut conn = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let mut edit = |region: &str| {
        let v = [("region".into(), region.into())].into_iter().collect();
        a.store
            .update_attributes(&key_of("site:site0"), diffsync::AttrSource::Values(&v))
            .unwrap();
    };
    let poll = |feed: &mut diffsync_adapters::redis::RedisFeed| feed.poll(100, Duration::ZERO).unwrap();
    // An entry after the cursor deleted by someone else.
    edit("a");
    edit("b");
    let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg("inv:_changes")
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(&mut conn)
        .unwrap();
    let _: i64 = redis::cmd("XDEL")
        .arg("inv:_changes")
        .arg(&last[0].0)
        .query(&mut conn)
        .unwrap();
    assert!(poll(&mut feed).gap);
    assert!(!poll(&mut feed).gap, "once");
    // The stream deleted and written again (more than before).
    let _: i64 = redis::cmd("DEL").arg("inv:_changes").query(&mut conn).unwrap();
    for r in ["c", "d", "e"] {
        edit(r);
    }
    assert!(crate::common::drain(&mut feed).0);
    // Ids that went back (a server restored from an older snapshot).
    let _: i64 = redis::cmd("DEL").arg("inv:_changes").query(&mut conn).unwrap();
    let _: String = redis::cmd("XADD")
        .arg("inv:_changes")
        .arg("1-1")
        .arg("type")
        .arg("site")
        .arg("key")
        .arg("site0")
        .arg("op")
        .arg("updated")
        .query(&mut conn)
        .unwrap();
    assert!(poll(&mut feed).gap);
    assert!(!poll(&mut feed).gap, "once");
    // An entry whose key no key's text is (written by someone else): the
    // change cannot be named, so everything is read again.
    let _: String = redis::cmd("XADD")
        .arg("inv:_changes")
        .arg("*")
        .arg("type")
        .arg("site")
        .arg("key")
        .arg("\"unterminated")
        .arg("op")
        .arg("updated")
        .query(&mut conn)
        .unwrap();
    let batch = poll(&mut feed);
    assert!(batch.gap && batch.events.is_empty(), "{:?}", batch.events);
}
