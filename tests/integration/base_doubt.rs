//! The write-ahead base under crashes, partial failures and schema change:
//! what a run does not know it learns before it classifies, and no edit is
//! lost to a doubt.

use std::sync::{Arc, Mutex};

use diffsync::bidir::{Base, BaseFile, BaseStore, ConflictKind, ConflictRecord, Strategy, reconcile};
use diffsync::{AdapterExt, Error};
use diffsync_tests::{Device, Interface, Inventory, Site, sys_a};

use crate::seams::{named, no_limit, set};
use diffsync_tests::key_of;

/// Runs one reconcile that dies right after saving its intents (before
/// any write), and returns the base a restarted process loads.
fn crash_before_the_writes(left: &mut Inventory, right: &mut Inventory, base: Base, dir: &std::path::Path) -> Base {
    let file = BaseFile(dir.join("base.json"));
    file.clone().save(&base).unwrap();
    let mut base = file.clone().load(&left.store).unwrap();
    let opts = no_limit().save_to(Arc::new(Mutex::new(file.clone())));
    let left_before = left.store.fingerprint();
    let run = diffsync::bidir::reconcile_observed(left, right, &mut base, &opts, |_| Err("the process died".into()));
    assert!(matches!(run, Err(Error::Reconcile(_))), "{run:?}");
    assert_eq!(left.store.fingerprint(), left_before, "nothing written");
    file.clone().load(&left.store).unwrap()
}

fn ams() -> Site {
    Site {
        name: "ams".into(),
        region: "eu".into(),
    }
}

#[test]
fn a_create_whose_write_never_happened_is_sent_again_after_a_crash_under_any_strategy() {
    for strategy in [Strategy::LeftWins, Strategy::RightWins, Strategy::Safe] {
        let dir = tempfile::tempdir().unwrap();
        let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
        left.store.add(ams()).unwrap();
        left.store
            .add_child(
                Site::key("ams"),
                Device {
                    name: "ams-r1".into(),
                    role: "edge".into(),
                    serial: None,
                    db_pk: 0,
                    flags: Default::default(),
                },
            )
            .unwrap();
        let mut base = crash_before_the_writes(&mut left, &mut right, Base::from_store(sys_a().store), dir.path());
        let log = Arc::new(Mutex::new(Vec::<ConflictRecord>::new()));
        let opts = no_limit().strategy(strategy.clone()).log_to(log.clone());
        let report = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
        for side in [&left, &right] {
            assert!(side.store.get(&Site::key("ams")).is_ok(), "{strategy:?}: {}", side.name);
            assert!(
                side.store.get(&Device::key("ams-r1")).is_ok(),
                "{strategy:?}: {}",
                side.name
            );
        }
        // Whether the right never got them or deleted them since cannot be
        // told: in the log, kept by the left, applied.
        let logged: Vec<_> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.applied == Some(true))
            .map(|c| (c.key.unique_id().to_string(), c.resolution, c.strategy.clone()))
            .collect();
        let kept = |k: &str| {
            (
                k.to_string(),
                diffsync::bidir::Resolution::Left,
                "a create in doubt is kept".to_string(),
            )
        };
        assert_eq!(logged, [kept("ams"), kept("ams-r1")], "{strategy:?}: {report}");
        // Settled: the next run has nothing to do.
        let again = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
        assert!(again.conflicts.is_empty() && !again.plan_left.has_diffs() && !again.plan_right.has_diffs());
    }
}

#[test]
fn a_key_in_doubt_stays_in_doubt_across_runs_until_the_sides_agree() {
    let dir = tempfile::tempdir().unwrap();
    let file = BaseFile(dir.path().join("base.json"));
    let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
    // The left deletes sfo; the run dies before the right is written.
    left.store.remove(key_of("site:sfo"), true).unwrap();
    let mut base = crash_before_the_writes(&mut left, &mut right, Base::from_store(sys_a().store), dir.path());
    // Meanwhile the right deleted it too, and the left made a new sfo:
    // whether the right's user meant to delete this one is not known.
    right.store.remove(key_of("site:sfo"), true).unwrap();
    left.store
        .add(Site {
            name: "sfo".into(),
            region: "new".into(),
        })
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::<ConflictRecord>::new()));
    let opts = no_limit()
        .log_to(log.clone())
        .save_to(Arc::new(Mutex::new(file.clone())));
    for run in 0..3 {
        let report = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
        assert_eq!(report.conflicts.len(), 1, "run {run}: {report}");
        assert!(right.store.get(&Site::key("sfo")).is_err(), "run {run}: recreated");
        // As a restarted process would: the base from its file.
        base = file.clone().load(&left.store).unwrap();
    }
    // Settled by hand (the right takes it): the doubt is gone.
    right
        .store
        .add(Site {
            name: "sfo".into(),
            region: "new".into(),
        })
        .unwrap();
    let report = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
    assert!(report.conflicts.is_empty(), "{report}");
    base = file.clone().load(&left.store).unwrap();
    set(&mut left.store, "site", "sfo", "region", "newer");
    let report = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
    assert!(report.conflicts.is_empty(), "{report}");
    assert_eq!(right.store.get(&Site::key("sfo")).unwrap().region, "newer");
}

/// The base file of `sys_a` as JSON, with `edit` applied.
fn base_json(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let bytes = Base::from_store(sys_a().store).to_bytes().unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    edit(&mut doc);
    serde_json::to_vec(&doc).unwrap()
}

#[test]
fn an_attribute_the_base_never_recorded_is_unknown_not_a_side_s_value() {
    // A base saved before `description` was an attribute of interfaces.
    let bytes = base_json(|doc| {
        for m in doc["models"].as_array_mut().unwrap() {
            if m["model_type"] == "interface" {
                m["attributes"].as_object_mut().unwrap().remove("description");
            }
        }
        let fields = doc["schemas"]["interface"]["attributes"].as_array_mut().unwrap();
        fields.retain(|f| f["name"] != "description");
        doc["schemas"]["interface"]["fingerprint"] = "0".into();
    });
    // The field is new: both systems hold its default until someone sets it.
    let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
    for side in [&mut left, &mut right] {
        for k in ["nyc-r1__eth0", "nyc-r1__eth1", "sfo-r1__eth0"] {
            set(&mut side.store, "interface", k, "description", "");
        }
    }
    // Each side edits one interface's description; both edit a third, differently.
    set(&mut right.store, "interface", "nyc-r1__eth0", "description", "right's");
    set(&mut left.store, "interface", "sfo-r1__eth0", "description", "left's");
    set(&mut left.store, "interface", "nyc-r1__eth1", "description", "left's");
    set(&mut right.store, "interface", "nyc-r1__eth1", "description", "right's");
    let mut base = Base::from_bytes(&bytes, &left.store, "old base").unwrap();
    let report = reconcile(
        &mut left,
        &mut right,
        &mut base,
        &no_limit().strategy(Strategy::LeftWins),
    )
    .unwrap();
    // The one-sided edits went across; the two-sided one is a conflict.
    let description =
        |inv: &Inventory, d: &str, i: &str| inv.store.get(&Interface::key(d, i)).unwrap().description.clone();
    assert_eq!(description(&left, "nyc-r1", "eth0"), "right's", "{report}");
    assert_eq!(description(&right, "sfo-r1", "eth0"), "left's", "{report}");
    let conflicts: Vec<(&str, ConflictKind)> = report.conflicts.iter().map(|c| (c.key.unique_id(), c.kind)).collect();
    assert_eq!(conflicts, [("nyc-r1__eth1", ConflictKind::UpdateUpdate)], "{report}");
    // A base made from that of a side's, with values both sides agree on,
    // moves nothing.
    let mut base = Base::from_bytes(&bytes, &left.store, "old base").unwrap();
    let report = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    assert!(report.conflicts.is_empty() && !report.plan_left.has_diffs(), "{report}");
}

/// The first record of `model_type` in a base file's JSON.
fn first_of<'a>(doc: &'a mut serde_json::Value, model_type: &str) -> &'a mut serde_json::Value {
    doc["models"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["model_type"] == model_type)
        .unwrap()
}

#[test]
fn a_base_whose_records_contradict_its_own_schema_is_refused_by_name() {
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: [(&str, Edit); 3] = [
        (
            "mtu",
            Box::new(|doc| {
                let m = first_of(doc, "interface");
                m["attributes"].as_object_mut().unwrap().remove("mtu");
            }),
        ),
        (
            "colour",
            Box::new(|doc| {
                let m = first_of(doc, "site");
                m["attributes"]["colour"] = "red".into();
            }),
        ),
        (
            "mtu",
            Box::new(|doc| {
                let m = first_of(doc, "interface");
                m["attributes"]["mtu"] = "large".into();
            }),
        ),
    ];
    for (field, edit) in cases {
        let bytes = base_json(edit);
        let err = Base::from_bytes(&bytes, &sys_a().store, "base.json").unwrap_err();
        let text = diffsync::Chain(&err).to_string();
        assert!(text.contains("base.json") && text.contains(field), "{field}: {text}");
    }
}

/// A device moved from one site to another on one side.
fn moved() -> (Inventory, Inventory, Base) {
    let (mut left, right) = (named(sys_a(), "left"), named(sys_a(), "right"));
    let device = left.store.get(&Device::key("sfo-r1")).unwrap().clone();
    let interfaces: Vec<Interface> = left
        .store
        .children::<Interface>(Device::key("sfo-r1").as_ref())
        .unwrap()
        .iter()
        .map(|k| left.store.get(k).unwrap().clone())
        .collect();
    left.store.remove(key_of("device:sfo-r1"), true).unwrap();
    left.store.add_child(Site::key("nyc"), device).unwrap();
    for i in interfaces {
        left.store.add_child(Device::key("sfo-r1"), i).unwrap();
    }
    (left, right, Base::from_store(sys_a().store))
}

#[test]
fn a_model_moved_to_another_parent_on_one_side_moves_on_the_other() {
    for strategy in [Strategy::Safe, Strategy::LeftWins, Strategy::RightWins] {
        let (mut left, mut right, mut base) = moved();
        let report = reconcile(&mut left, &mut right, &mut base, &no_limit().strategy(strategy.clone())).unwrap();
        assert!(report.conflicts.is_empty(), "{strategy:?}: {report}");
        assert_eq!(
            right.store.parent(key_of("device:sfo-r1")).unwrap(),
            Some(key_of("site:nyc")),
            "{strategy:?}"
        );
        assert!(!left.diff_from(&right).unwrap().has_diffs(), "{strategy:?}");
        let again = reconcile(&mut left, &mut right, &mut base, &no_limit().strategy(strategy)).unwrap();
        assert!(!again.plan_left.has_diffs() && !again.plan_right.has_diffs(), "{again}");
    }
}

#[test]
fn a_move_against_an_edit_of_the_moved_model_is_one_conflict_per_key() {
    let (mut left, mut right, mut base) = moved();
    set(&mut right.store, "device", "sfo-r1", "role", "spine");
    let report = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    let keys: Vec<&str> = report.conflicts.iter().map(|c| c.key.unique_id()).collect();
    assert_eq!(keys, ["sfo-r1"], "{report}");
}

#[test]
fn a_child_left_by_a_failed_delete_is_not_copied_back_against_the_deletion() {
    let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
    let mut base = Base::from_store(sys_a().store);
    // The left deletes device nyc-r1 with its interfaces; on the right, the
    // hook of one interface fails.
    left.store.remove(key_of("device:nyc-r1"), true).unwrap();
    right = right.fail_on("interface", "nyc-r1__eth1");
    let _ = reconcile(&mut left, &mut right, &mut base, &no_limit());
    right.fail.clear();
    // The next runs finish the deletion; nothing comes back to the left.
    for _ in 0..2 {
        let report = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
        assert!(report.conflicts.is_empty(), "{report}");
    }
    assert!(left.store.get(&Interface::key("nyc-r1", "eth1")).is_err());
    assert!(right.store.get(&Interface::key("nyc-r1", "eth1")).is_err());
    assert!(right.store.get(&Device::key("nyc-r1")).is_err());
}

#[test]
fn a_decision_a_failed_hook_left_undone_is_carried_out_next_run_whatever_the_strategy() {
    for later in [Strategy::LeftWins, Strategy::Safe, Strategy::RightWins] {
        let dir = tempfile::tempdir().unwrap();
        let file = BaseFile(dir.path().join("base.json"));
        let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
        file.clone().save(&Base::from_store(sys_a().store)).unwrap();
        let mut base = file.clone().load(&left.store).unwrap();
        // The right deletes device nyc-r1; the left edits one of its
        // interfaces. The deletion wins, and on the left the device goes
        // but a hook below it fails: the edited interface is left without
        // its parent.
        right.store.remove(key_of("device:nyc-r1"), true).unwrap();
        set(&mut left.store, "interface", "nyc-r1__eth1", "description", "edited");
        left = left.fail_on("interface", "nyc-r1__eth0");
        let log = Arc::new(Mutex::new(Vec::<ConflictRecord>::new()));
        let saved = Arc::new(Mutex::new(file.clone()));
        let opts = no_limit()
            .strategy(Strategy::RightWins)
            .log_to(log.clone())
            .save_to(saved.clone());
        assert!(reconcile(&mut left, &mut right, &mut base, &opts).is_err());
        let logged = log.lock().unwrap().clone();
        assert_eq!(
            logged
                .iter()
                .map(|c| (c.key.unique_id(), c.resolution))
                .collect::<Vec<_>>(),
            [("nyc-r1__eth1", diffsync::bidir::Resolution::Right)]
        );
        // Later runs, restarted, with whatever strategy: the logged deletion
        // is carried out, not undone; one record says it was applied.
        left.fail.clear();
        let opts = no_limit().strategy(later.clone()).log_to(log.clone()).save_to(saved);
        for _ in 0..2 {
            let mut base = file.clone().load(&left.store).unwrap();
            reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
        }
        for side in [&left, &right] {
            for i in ["eth0", "eth1"] {
                assert!(
                    side.store.get(&Interface::key("nyc-r1", i)).is_err(),
                    "{later:?}: {} {i}",
                    side.name
                );
            }
        }
        let logged = log.lock().unwrap().clone();
        let applied: Vec<_> = logged.iter().filter(|c| c.applied == Some(true)).collect();
        assert_eq!(applied.len(), 1, "{later:?}: {logged:?}");
        assert_eq!(
            (
                applied[0].key.unique_id(),
                applied[0].resolution,
                applied[0].strategy.as_str()
            ),
            ("nyc-r1__eth1", diffsync::bidir::Resolution::Right, "right-wins")
        );
    }
}
