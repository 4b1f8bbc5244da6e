//! The in-memory store's change feed.

use std::time::Duration;

use diffsync::feed::{ChangeEvent, ChangeFeed, ChangeKind};
use diffsync::{Adapter, AdapterExt, AttrSource, LocalStore};
use diffsync_tests::key_of;
use diffsync_tests::sys_a;

fn drain(feed: &mut impl ChangeFeed) -> Vec<(ChangeKind, String, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    loop {
        let batch = feed.poll(3, Duration::ZERO).unwrap();
        assert!(!batch.gap);
        if batch.events.is_empty() {
            return out;
        }
        out.extend(batch.events.into_iter().map(|e: ChangeEvent| {
            (
                e.kind,
                format!("{} {}", e.model_type(), e.key.unique_id()),
                e.parent.map(|p| format!("{} {}", p.model_type(), p.unique_id())),
                e.origin,
            )
        }));
    }
}

#[test]
fn every_change_through_the_store_is_published_once_with_its_parent_and_origin() {
    let mut inv = sys_a();
    let mut feed = inv.store.subscribe();
    let v = [("description".into(), "changed".into())].into_iter().collect();
    inv.store
        .update_attributes(key_of("interface:nyc-r1__eth0"), AttrSource::Values(&v))
        .unwrap();
    // The same values again: no change, no event.
    inv.store
        .update_attributes(key_of("interface:nyc-r1__eth0"), AttrSource::Values(&v))
        .unwrap();
    inv.store.set_origin(Some("loop-1"));
    inv.store.remove(key_of("device:nyc-r1"), false).unwrap();
    inv.store.set_origin(None);
    inv.store.remove(key_of("site:sfo"), true).unwrap();
    use ChangeKind::*;
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        drain(&mut feed),
        [
            (Updated, "interface nyc-r1__eth0".into(), s("device nyc-r1"), None),
            (Deleted, "device nyc-r1".into(), s("site nyc"), s("loop-1")),
            // Its children stay, parentless: their parent link changed.
            (Updated, "interface nyc-r1__eth0".into(), None, s("loop-1")),
            (Updated, "interface nyc-r1__eth1".into(), None, s("loop-1")),
            (Deleted, "site sfo".into(), None, None),
            (Deleted, "device sfo-r1".into(), s("site sfo"), None),
            (Deleted, "interface sfo-r1__eth0".into(), s("device sfo-r1"), None),
        ]
    );
}

#[test]
fn a_sync_publishes_its_writes_and_a_dropped_reader_costs_nothing() {
    let source = sys_a();
    let mut target = diffsync_tests::Inventory::empty("target");
    let mut feed = target.store.subscribe();
    drop(target.store.subscribe());
    target.store_mut().set_origin(Some("sync"));
    target.sync_from(&source).unwrap();
    let events = drain(&mut feed);
    assert_eq!(events.len(), source.store.count_all());
    assert!(
        events
            .iter()
            .all(|(k, _, _, o)| *k == ChangeKind::Created && o.as_deref() == Some("sync"))
    );
    // A clone is another store: its changes are not this feed's.
    let mut copy: LocalStore = target.store.clone();
    copy.remove(key_of("site:nyc"), true).unwrap();
    assert!(drain(&mut feed).is_empty());
}

#[test]
fn a_reader_too_far_behind_reads_a_gap_and_the_store_never_waits() {
    let mut inv = sys_a();
    let mut feed = inv.store.subscribe_with_capacity(2);
    for (i, d) in ["a", "b", "c", "d"].iter().enumerate() {
        let v = [("description".into(), (*d).into())].into_iter().collect();
        let key = ["nyc-r1__eth0", "nyc-r1__eth1"][i % 2];
        inv.store
            .update_attributes(key_of(&format!("interface:{}", key)), AttrSource::Values(&v))
            .unwrap();
    }
    // Two events kept, two dropped: the first poll says so.
    let batch = feed.poll(10, Duration::ZERO).unwrap();
    assert!(batch.gap);
    assert_eq!(batch.events.len(), 2);
    // Read up, the feed holds events again, and says nothing of a gap.
    let v = [("description".into(), "e".into())].into_iter().collect();
    inv.store
        .update_attributes(key_of("interface:nyc-r1__eth0"), AttrSource::Values(&v))
        .unwrap();
    assert_eq!(drain(&mut feed).len(), 1);
}

#[test]
fn a_channel_feed_carries_the_applications_events_and_tells_a_closed_reader() {
    let event = |key: &str| ChangeEvent {
        kind: ChangeKind::Updated,
        key: key_of(&format!("site:{key}")),
        parent: None,
        origin: None,
    };
    let (tx, mut rx) = diffsync::feed::channel(2);
    let other = tx.clone();
    assert!(tx.send(event("a")) && other.send(event("b")));
    // Full: dropped, and the reader hears of it.
    assert!(tx.send(event("c")));
    let batch = rx.poll(10, Duration::ZERO).unwrap();
    assert!(batch.gap);
    assert_eq!(
        batch.events.iter().map(|e| e.key.unique_id()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    drop(rx);
    assert!(!tx.send(event("d")) && !other.send(event("e")), "the reader is gone");
}
