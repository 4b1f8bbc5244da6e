//! LocalStore: keys, links, errors.

use diffsync::{DiffModel, Key, LocalStore, ModelFlags, Store};
use diffsync_tests::{Device, Interface, Site, sys_a};
use diffsync_tests::{key_of, typed_key};

fn dev(name: &str, role: &str) -> Device {
    Device {
        name: name.into(),
        role: role.into(),
        serial: None,
        db_pk: 0,
        flags: ModelFlags::empty(),
    }
}

fn intf(dev: &str, name: &str) -> Interface {
    Interface {
        device_name: dev.into(),
        name: name.into(),
        description: String::new(),
        mtu: 1500,
    }
}

#[test]
fn add_of_a_different_model_with_the_same_key_names_type_and_key() {
    let mut s = LocalStore::new("inv");
    s.add(dev("r1", "edge")).unwrap();
    s.add(dev("r1", "edge")).unwrap(); // equal: no-op
    let err = s.add(dev("r1", "core")).unwrap_err();
    assert!(matches!(&err, diffsync::StoreError::AlreadyExists { key, .. } if key.to_string() == "device:r1"));
    assert_eq!(err.to_string(), r#"device:r1 already exists in store "inv""#);
    assert_eq!(s.get(&Device::key("r1")).unwrap().role, "edge");
}

#[test]
fn get_by_typed_key_by_its_text_and_erased() {
    let s = sys_a().store;
    let i = s.get(&Interface::key("nyc-r1", "eth1")).unwrap();
    assert_eq!(i.description, "to-sw");
    // What the key prints reads back as the same key, typed or erased.
    let text = Interface::key("nyc-r1", "eth1").to_string();
    assert_eq!(s.get(&typed_key::<Interface>(&text)).unwrap(), i);
    assert_eq!(s.get_dyn(key_of(&text)).unwrap().unique_id(), i.unique_id());
    assert_eq!(s.get_as::<Interface>(&key_of(&text)).unwrap(), i);
    assert!(s.contains(key_of(&text)));
    let err = s.get_dyn(key_of("interface:nope")).unwrap_err();
    assert_eq!(err.to_string(), r#"interface:nope not found in store "sys-a""#);
    assert!(s.get_opt_dyn(key_of("interface:nope")).is_none());
    // A typed key of another type is refused by name.
    let wrong = Key::<Interface>::try_from(key_of("device:nyc-r1")).unwrap_err();
    assert!(wrong.to_string().contains("device"), "{wrong}");
}

#[test]
fn get_all_keeps_insertion_order_and_unknown_type_is_empty() {
    let s = sys_a().store;
    let names: Vec<_> = s
        .get_all::<Interface>("interface")
        .unwrap()
        .map(|i| i.unique_id())
        .collect();
    assert_eq!(names, ["nyc-r1__eth0", "nyc-r1__eth1", "sfo-r1__eth0"]);
    assert_eq!(s.get_all::<Site>("nothing").unwrap().count(), 0);
    assert_eq!(
        s.get_all_dyn("site").map(|m| m.unique_id()).collect::<Vec<_>>(),
        ["nyc", "sfo"]
    );
}

#[test]
fn wrong_rust_type_is_a_type_mismatch() {
    let s = sys_a().store;
    let err = s.get_as::<Site>(&key_of("device:nyc-r1")).unwrap_err();
    assert!(
        matches!(&err, diffsync::StoreError::Model(diffsync::ModelError::TypeMismatch { model_type, key, .. }) if model_type == "device" && key == "nyc-r1"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(r#"device:nyc-r1: this store holds "#) && msg.ends_with("::Site"),
        "{msg}"
    );
}

#[test]
fn counts_per_type_and_total() {
    let s = sys_a().store;
    assert_eq!((s.count("site"), s.count("device"), s.count("interface")), (2, 2, 3));
    assert_eq!(s.count_all(), 7);
    assert_eq!(s.count("nothing"), 0);
    assert_eq!(s.model_types().collect::<Vec<_>>(), ["site", "device", "interface"]);
}

#[test]
fn child_links_are_kept_by_the_store() {
    let s = sys_a().store;
    assert_eq!(
        s.children_dyn(key_of("site:nyc"), "device").unwrap(),
        [key_of("device:nyc-r1")]
    );
    assert_eq!(
        s.parent(key_of("interface:nyc-r1__eth1")).unwrap(),
        Some(key_of("device:nyc-r1"))
    );
    assert_eq!(s.parent(key_of("site:nyc")).unwrap(), None);
}

#[test]
fn child_of_undeclared_type_or_missing_parent_is_an_error() {
    let mut s = LocalStore::new("inv");
    s.add(Site {
        name: "nyc".into(),
        region: "east".into(),
    })
    .unwrap();
    let err = s.add_child(Site::key("nyc"), intf("r1", "eth0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"site:nyc cannot have children of type "interface"; declared child types: [device]"#
    );
    let err = s.add_child(Device::key("r9"), intf("r9", "eth0")).unwrap_err();
    assert_eq!(err.to_string(), r#"device:r9 not found in store "inv""#);
    assert_eq!(s.count("interface"), 0, "nothing half-added");
}

#[test]
fn update_replaces_a_model_and_keeps_its_links() {
    let mut s = sys_a().store;
    s.update(dev("nyc-r1", "spine")).unwrap();
    assert_eq!(s.get(&Device::key("nyc-r1")).unwrap().role, "spine");
    assert_eq!(s.children_dyn(key_of("device:nyc-r1"), "interface").unwrap().len(), 2);
    s.update(dev("new", "leaf")).unwrap();
    assert_eq!(s.count("device"), 3);
}

#[test]
fn remove_with_and_without_children() {
    let mut s = sys_a().store;
    s.remove(key_of("device:nyc-r1"), false).unwrap();
    assert_eq!(s.count("interface"), 3);
    assert_eq!(s.parent(key_of("interface:nyc-r1__eth0")).unwrap(), None);
    assert!(s.children_dyn(key_of("site:nyc"), "device").unwrap().is_empty());
    Store::remove(&mut s, &key_of("site:sfo"), true).unwrap();
    assert_eq!((s.count("site"), s.count("device"), s.count("interface")), (1, 0, 2));
    let err = s.remove(key_of("site:sfo"), true).unwrap_err();
    assert!(matches!(err, diffsync::StoreError::NotFound { .. }));
    // A removed key can be added again.
    s.add(Site {
        name: "sfo".into(),
        region: "west".into(),
    })
    .unwrap();
    assert_eq!(
        s.get_all::<Site>("site")
            .unwrap()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>(),
        ["nyc", "sfo"]
    );
}

#[test]
fn get_or_instantiate_and_update_or_instantiate() {
    let mut s = LocalStore::new("inv");
    let (d, created) = s.get_or_instantiate(dev("r1", "edge")).unwrap();
    assert!(created);
    assert_eq!(d.role, "edge");
    let (d, created) = s.get_or_instantiate(dev("r1", "core")).unwrap();
    assert!(!created);
    assert_eq!(d.role, "edge", "existing model wins, attributes ignored");
    let mut with_pk = dev("r1", "core");
    with_pk.db_pk = 99;
    let (d, created) = s.update_or_instantiate(with_pk).unwrap();
    assert!(!created);
    assert_eq!(
        (d.role.as_str(), d.db_pk),
        ("core", 0),
        "attributes copied, local fields kept"
    );
}

#[test]
fn a_cloned_store_is_independent() {
    let a = sys_a().store;
    let mut b = a.clone();
    b.remove(key_of("site:nyc"), true).unwrap();
    assert_eq!(a.count_all(), 7);
    assert_eq!(b.count_all(), 3);
}

#[test]
fn a_glob_import_leaves_model_methods_unambiguous() {
    // `use diffsync::*` must not bring in a second trait with the same method names.
    #[allow(unused_imports)]
    use diffsync::*;
    let d = dev("r1", "edge");
    assert_eq!(d.unique_id(), "r1");
    // Methods of a `dyn AnyModel` need no import.
    let s = sys_a().store;
    let any = s.get_dyn(key_of("device:nyc-r1")).unwrap();
    assert_eq!((any.model_type(), any.unique_id()), ("device", "nyc-r1".to_string()));
}

#[test]
fn remove_many_removes_what_it_finds_and_names_the_first_missing() {
    let mut s = LocalStore::new("s");
    let site = s
        .add(Site {
            name: "nyc".into(),
            region: "east".into(),
        })
        .unwrap();
    for d in ["r1", "r2", "r3", "r4"] {
        let h = s.add_under(site, dev(d, "edge")).unwrap();
        s.add_under(h, intf(d, "eth0")).unwrap();
    }
    let err = s
        .remove_many(&[
            (key_of("device:r1"), false),
            (key_of("device:r9"), false),
            (key_of("device:r3"), true),
            (key_of("interface:r3__eth0"), false),
        ])
        .unwrap_err();
    assert_eq!(err.0, 1);
    assert!(
        matches!(err.1, diffsync::StoreError::NotFound { ref key, .. } if key.unique_id() == "r9"),
        "{:?}",
        err.1
    );
    assert_eq!(
        s.children_dyn(key_of("site:nyc"), "device").unwrap(),
        [key_of("device:r2"), key_of("device:r4")]
    );
    // r1's interface stays, parentless; r3's went with its subtree.
    assert_eq!(s.parent(key_of("interface:r1__eth0")).unwrap(), None);
    assert!(s.get_dyn(key_of("interface:r3__eth0")).is_err());
    assert_eq!(s.count("interface"), 3);
}
