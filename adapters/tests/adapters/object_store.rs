//! Object-store adapter on the in-memory and local-filesystem backends, both layouts.

use std::sync::Arc;

use diffsync::AdapterExt;
use diffsync_adapters::AdapterError;
use diffsync_adapters::object_store::{Layout, ObjectStoreAdapter};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use crate::common::{inventory, registry};
use diffsync_tests::key_of;

fn round_trip(bucket: Arc<dyn ObjectStore>, layout: Layout) {
    let source = inventory("cmdb", 3, 0);
    let mut a = ObjectStoreAdapter::new("bucket", bucket.clone(), "inv", layout, registry()).unwrap();
    a.sync_from(&source).unwrap();
    let b = ObjectStoreAdapter::new("bucket", bucket.clone(), "inv", layout, registry()).unwrap();
    let left = b.diff_from(&source).unwrap();
    assert!(!left.has_diffs(), "{layout:?}: {left}");
    assert_eq!(
        b.store
            .get_all_dyn("interface")
            .map(|m| m.unique_id())
            .collect::<Vec<_>>(),
        source
            .store
            .get_all_dyn("interface")
            .map(|m| m.unique_id())
            .collect::<Vec<_>>(),
        "{layout:?}: insertion order survives"
    );
    // Incremental: updates, creates, and a deleted site with its subtree.
    let mut changed = inventory("cmdb", 3, 1);
    changed.store.remove(key_of("site:site0"), true).unwrap();
    let mut b = b;
    b.sync_from(&changed).unwrap();
    let c = ObjectStoreAdapter::new("bucket", bucket, "inv", layout, registry()).unwrap();
    let left = c.diff_from(&changed).unwrap();
    assert!(!left.has_diffs(), "{layout:?}: {left}");
}

#[test]
fn in_memory_both_layouts() {
    round_trip(Arc::new(InMemory::new()), Layout::PerModel);
    round_trip(Arc::new(InMemory::new()), Layout::PerType);
}

#[test]
fn local_filesystem_both_layouts_and_objects_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    round_trip(fs.clone(), Layout::PerModel);
    assert!(dir.path().join("inv/interface/site1-r0__eth3.json").is_file());
    assert!(
        !dir.path().join("inv/site/site0.json").exists(),
        "deleted subtree's objects are gone"
    );
    assert!(!dir.path().join("inv/interface/site0-r0__eth0.json").exists());
    let dir2 = tempfile::tempdir().unwrap();
    round_trip(
        Arc::new(LocalFileSystem::new_with_prefix(dir2.path()).unwrap()),
        Layout::PerType,
    );
    assert!(dir2.path().join("inv/device.json").is_file());
}

#[test]
fn by_url_and_a_malformed_object_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let mut a = ObjectStoreAdapter::from_url("files", &url, Layout::PerType, registry()).unwrap();
    a.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    std::fs::write(dir.path().join("site.json"), "[{\"name\": \"a\",\n \"region\": ]").unwrap();
    let err = ObjectStoreAdapter::from_url("files", &url, Layout::PerType, registry())
        .err()
        .unwrap();
    assert!(
        matches!(&err, AdapterError::Parse { path, line: 2, .. } if path.ends_with("site.json")),
        "{err}"
    );
    let err = ObjectStoreAdapter::from_url("x", "nope://bucket", Layout::PerType, registry())
        .err()
        .unwrap();
    assert!(matches!(&err, AdapterError::Unreachable { .. }), "{err}");
}
