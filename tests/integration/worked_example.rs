//! The Python library's worked example (reference §2.6): same data, same
//! summary, same hook order.

use diffsync::{Action, AdapterExt, Diff, Summary};
use diffsync_tests::key_of;
use diffsync_tests::{Device, Interface, sys_a, sys_b};

#[test]
fn summary_matches_python_diffsync() {
    let diff = sys_a().diff_from(&sys_b()).unwrap();
    assert_eq!(
        diff.summary(),
        Summary {
            create: 4,
            update: 2,
            delete: 4,
            no_change: 1,
            skip: 0
        }
    );
    assert_eq!(diff.len(), 11);
    assert!(diff.has_diffs());
}

#[test]
fn text_render_matches_python_tree() {
    let diff = sys_a().diff_from(&sys_b()).unwrap();
    insta::assert_snapshot!("worked_example_text", diff.to_string());
}

#[test]
fn json_render_is_stable_and_reads_back() {
    let diff = sys_a().diff_from(&sys_b()).unwrap();
    let json = serde_json::to_string_pretty(&diff).unwrap();
    insta::assert_snapshot!("worked_example_json", json);
    let back: Diff = serde_json::from_str(&json).unwrap();
    assert_eq!(back, diff);
}

#[test]
fn sync_calls_hooks_in_python_order_with_changed_attributes_only() {
    let source = sys_b();
    let mut target = sys_a();
    let report = target.sync_from(&source).unwrap();
    assert_eq!(
        target.log,
        [
            r#"update device nyc-r1 {"role":"edge"}"#,
            r#"update interface nyc-r1__eth0 {"description":"UPLINK"}"#,
            r#"create interface nyc-r1__eth2 {"description":"new","mtu":1500}"#,
            "delete interface nyc-r1__eth1",
            r#"create site lax {"region":"west"}"#,
            r#"create device lax-r1 {"role":"router","serial":null}"#,
            r#"create interface lax-r1__eth0 {"description":"uplink","mtu":1500}"#,
            "delete site sfo",
            "delete device sfo-r1",
            "delete interface sfo-r1__eth0",
        ]
    );
    assert!(report.is_success());
    assert_eq!(report.totals().applied, 10);
    assert_eq!(target.completed, 1);
    insta::assert_snapshot!("worked_example_report", report.to_string());
}

#[test]
fn after_sync_from_a_second_diff_is_empty_and_store_matches() {
    let source = sys_b();
    let mut target = sys_a();
    target.sync_from(&source).unwrap();
    let again = target.diff_from(&source).unwrap();
    assert!(!again.has_diffs(), "{again}");
    assert_eq!(again.to_string(), "(no diffs)");
    assert_eq!(again.summary().no_change, 7);
    // The created device kept the local field its create hook set.
    assert_eq!(target.store.get(&Device::key("lax-r1")).unwrap().db_pk, 1000);
    assert_eq!(
        target.store.children_dyn(key_of("device:nyc-r1"), "interface").unwrap(),
        [key_of("interface:nyc-r1__eth0"), key_of("interface:nyc-r1__eth2")]
    );
    assert!(
        target
            .store
            .get_opt(&Interface::key("sfo-r1", "eth0"))
            .unwrap()
            .is_none()
    );
    assert_eq!(target.store.count_all(), source.store.count_all());
}

#[test]
fn diff_to_is_diff_from_the_other_way() {
    let a = sys_a();
    let b = sys_b();
    assert_eq!(b.diff_to(&a).unwrap(), a.diff_from(&b).unwrap());
    let s = a.diff_to(&b).unwrap().summary();
    assert_eq!((s.create, s.update, s.delete), (4, 2, 4));
}

#[test]
fn sync_complete_is_not_called_when_nothing_changes() {
    let source = sys_b();
    let mut target = sys_b();
    let report = target.sync_from(&source).unwrap();
    assert!(report.elements.is_empty());
    assert_eq!(target.completed, 0);
}

#[test]
fn elements_carry_both_sides_and_changes() {
    let diff = sys_a().diff_from(&sys_b()).unwrap();
    let (dev, _) = diff.iter().find(|(e, _)| e.unique_id() == "nyc-r1").unwrap();
    assert_eq!(dev.action, Action::Update);
    assert_eq!(dev.changes.len(), 1);
    assert_eq!(dev.changes[0].name, "role");
    assert_eq!(dev.changes[0].old, "router");
    assert_eq!(dev.changes[0].new, "edge");
    assert_eq!(dev.source_attrs().as_ref().unwrap()["serial"], "A1");
    assert_eq!(dev.dest_attrs().as_ref().unwrap()["role"], "router");
    assert_eq!(dev.identifiers()["name"], "nyc-r1");
    let site = &diff.elements[0];
    assert_eq!((site.unique_id(), site.action), ("nyc", Action::NoChange));
}

#[test]
fn python_dict_layout_matches_the_reference_output() {
    // json.dumps(diff.dict()) from Python diffsync 2.2.3 on the same data
    // (../shared/reference/python-diffsync.md, worked example).
    let reference = r#"{"site": {"nyc": {"-": {}, "+": {}, "device": {"nyc-r1": {"-": {"role": "router"}, "+": {"role": "edge"}, "interface": {"eth0": {"-": {"description": "uplink"}, "+": {"description": "UPLINK"}}, "eth2": {"+": {"description": "new", "mtu": 1500}}, "eth1": {"-": {"description": "to-sw", "mtu": 1500}}}}}}, "lax": {"+": {"region": "west"}, "device": {"lax-r1": {"+": {"role": "router", "serial": null}, "interface": {"eth0": {"+": {"description": "uplink", "mtu": 1500}}}}}}, "sfo": {"-": {"region": "west"}, "device": {"sfo-r1": {"-": {"role": "router", "serial": null}, "interface": {"eth0": {"-": {"description": "uplink", "mtu": 1500}}}}}}}}"#;
    let reference: serde_json::Value = serde_json::from_str(reference).unwrap();
    let ours = sys_a().diff_from(&sys_b()).unwrap().to_python_dict();
    // Compared as text so key order counts too.
    assert_eq!(
        serde_json::to_string(&ours).unwrap(),
        serde_json::to_string(&reference).unwrap()
    );
}

#[test]
fn text_render_equals_the_reference_output() {
    // diff.str() from Python diffsync 2.2.3 (../shared/reference/python-diffsync.md).
    let reference = "\
site
  site: nyc
    device
      device: nyc-r1
        role    sys-b(edge)    sys-a(router)
        interface
          interface: eth0
            description    sys-b(UPLINK)    sys-a(uplink)
          interface: eth2 MISSING in sys-a
          interface: eth1 MISSING in sys-b
  site: lax MISSING in sys-a
    device
      device: lax-r1 MISSING in sys-a
        interface
          interface: eth0 MISSING in sys-a
  site: sfo MISSING in sys-b
    device
      device: sfo-r1 MISSING in sys-b
        interface
          interface: eth0 MISSING in sys-b";
    assert_eq!(sys_a().diff_from(&sys_b()).unwrap().to_string(), reference);
}

#[test]
fn a_child_type_on_one_side_only_counts_its_children_as_skipped() {
    use diffsync::{DiffModel, MemoryAdapter};
    // The reference fixture's case: one side's site model has a `place`
    // child type the other side's has not.
    #[derive(DiffModel, Clone, Debug, PartialEq)]
    #[diffsync(name = "place")]
    struct Place {
        #[diffsync(id)]
        name: String,
    }
    #[derive(DiffModel, Clone, Debug, PartialEq)]
    #[diffsync(name = "site", children(Place))]
    struct SiteWithPlaces {
        #[diffsync(id)]
        name: String,
        region: String,
    }
    let mut b = MemoryAdapter::new("backend-b", &["site"]);
    b.store
        .add(SiteWithPlaces {
            name: "nyc".into(),
            region: "east".into(),
        })
        .unwrap();
    b.store
        .add_child(key_of("site:nyc"), Place { name: "hq".into() })
        .unwrap();
    let mut a = MemoryAdapter::new("backend-a", &["site"]);
    a.store
        .add(diffsync_tests::Site {
            name: "nyc".into(),
            region: "east".into(),
        })
        .unwrap();
    let s = a.diff_from(&b).unwrap().summary();
    assert_eq!((s.create, s.no_change, s.skip), (0, 1, 1));
    let s = b.diff_from(&a).unwrap().summary();
    assert_eq!((s.delete, s.no_change, s.skip), (0, 1, 1));
}
