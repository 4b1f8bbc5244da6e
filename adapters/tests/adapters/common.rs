//! Fixtures: a serde-capable site → device → interface inventory, of the
//! workspace's test models (`diffsync_tests`, with its storage variant of
//! the interface).

pub use diffsync_tests::storage::{Interface, Text};
pub use diffsync_tests::{Device, Site};

use diffsync::{LocalStore, MemoryAdapter};
use diffsync_adapters::Registry;
use diffsync_tests::key_of;

/// A site in `region`.
pub fn site(name: &str, region: &str) -> Site {
    Site {
        name: name.into(),
        region: region.into(),
    }
}

/// A device with `role`, no serial.
pub fn device(name: &str, role: &str) -> Device {
    Device {
        name: name.into(),
        role: role.into(),
        serial: None,
        db_pk: 0,
        flags: Default::default(),
    }
}

pub fn registry() -> Registry {
    Registry::new().with::<Site>().with::<Device>().with::<Interface>()
}

/// `sites` sites, each with 2 devices of 3 interfaces; `variant` changes some values.
pub fn inventory(name: &str, sites: usize, variant: u32) -> MemoryAdapter {
    let mut store = LocalStore::new(name);
    for s in 0..sites {
        let site = format!("site{s}");
        store
            .add(Site {
                name: site.clone(),
                region: if s % 2 == 0 { "east".into() } else { "west".into() },
            })
            .unwrap();
        for d in 0..2 {
            let dev = format!("{site}-r{d}");
            store
                .add_child(
                    key_of(&format!("site:{}", site)),
                    Device {
                        name: dev.clone(),
                        role: if variant > 0 && d == 1 {
                            "spine".into()
                        } else {
                            "leaf".into()
                        },
                        serial: (d == 0).then(|| format!("SN{s}{d}")),
                        db_pk: 0,
                        flags: Default::default(),
                    },
                )
                .unwrap();
            for i in 0..3 + variant {
                store
                    .add_child(
                        key_of(&format!("device:{}", dev)),
                        Interface {
                            device: dev.clone(),
                            name: format!("eth{i}"),
                            description: Text(if i == 0 {
                                "uplink, \"core\"\nline 2".into()
                            } else {
                                format!("port {i}")
                            }),
                            mtu: 1500 + i64::from(variant) * 100,
                            enabled: i % 2 == 0,
                        },
                    )
                    .unwrap();
            }
        }
    }
    MemoryAdapter::with_store(name, &["site"], store)
}

/// (kind, model type, key, origin) of a change event.
pub type Seen = (diffsync::feed::ChangeKind, String, String, Option<String>);

/// Everything a feed has now, and whether it reported a gap.
pub fn drain(feed: &mut impl diffsync::feed::ChangeFeed) -> (bool, Vec<Seen>) {
    let (mut gap, mut out) = (false, Vec::new());
    for _ in 0..10_000 {
        let batch = feed.poll(100, std::time::Duration::ZERO).unwrap();
        gap |= batch.gap;
        if batch.events.is_empty() && !batch.gap {
            return (gap, out);
        }
        out.extend(batch.events.into_iter().map(|e| {
            (
                e.kind,
                e.model_type().to_string(),
                e.key.unique_id().to_string(),
                e.origin,
            )
        }));
    }
    panic!("the feed never ran dry: a gap or events on every poll");
}

/// Rows another client changes (`assert_reread_by_key` names the first
/// three in events).
pub const CHANGED_BY_OTHERS: &str = "
    INSERT INTO device (name, role, serial, _parent) VALUES ('site0-r9', 'edge', NULL, 'site0');
    UPDATE site SET region = 'south' WHERE name = 'site1';
    DELETE FROM interface WHERE device = 'site1-r1' AND name = 'eth0';
    UPDATE site SET region = 'north' WHERE name = 'site0';";

/// After `CHANGED_BY_OTHERS` on the database of `db` (loaded from
/// `inventory(_, 2, 0)`), a re-read of the first three changes brings them
/// into the image and nothing else: the fourth, not named, stays unseen.
pub fn assert_reread_by_key(db: &mut impl diffsync::Adapter) {
    use diffsync::Store;
    use diffsync::feed::{ChangeEvent, ChangeKind};
    let event = |kind, key: &str| ChangeEvent {
        kind,
        key: key_of(key),
        parent: None,
        origin: None,
    };
    db.reread(&[
        event(ChangeKind::Created, "device:site0-r9"),
        event(ChangeKind::Updated, "site:site1"),
        event(ChangeKind::Deleted, "interface:site1-r1__eth0"),
        event(ChangeKind::Updated, "no_such_type:x"),
    ])
    .unwrap();
    let store = db.store().local();
    assert_eq!(store.get(&Device::key("site0-r9")).unwrap().role, "edge");
    assert!(
        store
            .children_dyn(key_of("site:site0"), "device")
            .unwrap()
            .contains(Device::key("site0-r9").erased())
    );
    assert_eq!(store.get(&Site::key("site1")).unwrap().region, "south");
    assert!(store.get_dyn(key_of("interface:site1-r1__eth0")).is_err());
    assert_eq!(
        store.get(&Site::key("site0")).unwrap().region,
        "east",
        "read by key only"
    );
}
