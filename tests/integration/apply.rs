//! The apply path keeps the store equal to the system whatever fails: no
//! cascade past a surviving child, creates of the destination's type, a
//! pre-check before any hook, three kinds of hook failure, a complete report.

use std::sync::Arc;

use diffsync::{
    Action, Adapter, AdapterExt, Batch, Chain, Change, Diff, DiffFlags, DiffModel, DynModel, Edit, Error, HookError,
    LocalStore, MemoryAdapter, ModelFlags, ModelSchema, Options, Outcome, Sink, SkipReason, Typed,
};
use diffsync_tests::key_of;
use diffsync_tests::{Device, Interface, Inventory, Node, Site, sys_a, sys_b};
use serde_json::json;

fn outcome_of<'r>(report: &'r diffsync::SyncReport, key: &str) -> &'r Outcome {
    &report
        .elements
        .iter()
        .find(|e| e.key.unique_id() == key)
        .unwrap()
        .outcome
}

#[test]
fn a_child_whose_delete_failed_stays_in_the_store_and_is_retried() {
    let source = sys_b();
    let mut target = sys_a().fail_on("interface", "sfo-r1__eth0");
    let report = target
        .sync_from_with(&source, &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap();
    assert!(matches!(outcome_of(&report, "sfo-r1__eth0"), Outcome::Failed(_)));
    assert_eq!(*outcome_of(&report, "sfo"), Outcome::Applied);
    // The system still holds the interface, so the store does, without a parent.
    let intf = target.store.get(&Interface::key("sfo-r1", "eth0")).unwrap();
    assert_eq!(intf.description, "uplink");
    assert_eq!(target.store.parent(key_of("interface:sfo-r1__eth0")).unwrap(), None);
    // The next diff shows exactly that delete, and the next sync does it.
    let diff = target.diff_from(&source).unwrap();
    let left: Vec<_> = diff
        .iter()
        .map(|(e, _)| (e.model_type(), e.unique_id(), e.action))
        .collect();
    assert_eq!(left, [("interface", "sfo-r1__eth0", Action::Delete)]);
    target.fail.clear();
    target.sync_from(&source).unwrap();
    assert!(!target.diff_from(&source).unwrap().has_diffs());
    assert_eq!(target.store.count("interface"), 3);
}

#[test]
fn children_not_reached_by_an_aborted_sync_stay_in_the_store() {
    let source = sys_b();
    // sfo's delete applies, then its device's delete fails and stops the sync:
    // the interface under it was never deleted from the system.
    let mut target = sys_a().fail_on("device", "sfo-r1");
    let err = target.sync_from(&source).unwrap_err();
    let Error::Sync(diffsync::SyncError::Aborted { report, .. }) = err else {
        panic!("{err}")
    };
    assert_eq!(*outcome_of(&report, "sfo"), Outcome::Applied);
    assert_eq!(
        *outcome_of(&report, "sfo-r1__eth0"),
        Outcome::Skipped(SkipReason::ParentFailed)
    );
    assert!(target.store.get_opt(&Site::key("sfo")).unwrap().is_none());
    assert!(target.store.get_opt(&Device::key("sfo-r1")).unwrap().is_some());
    assert!(
        target
            .store
            .get_opt(&Interface::key("sfo-r1", "eth0"))
            .unwrap()
            .is_some()
    );
    let s = target.diff_from(&source).unwrap().summary();
    assert_eq!(
        (s.create, s.update, s.delete),
        (0, 0, 2),
        "device and interface are left"
    );
}

#[test]
fn an_ignored_child_of_a_deleted_parent_stays() {
    let source = sys_b();
    let mut target = sys_a();
    let mut dev = target.store.get(&Device::key("sfo-r1")).unwrap().clone();
    dev.flags = ModelFlags::IGNORE;
    target.store.update(dev).unwrap();
    target.sync_from(&source).unwrap();
    assert!(target.store.get_opt(&Site::key("sfo")).unwrap().is_none());
    assert!(target.store.get_opt(&Device::key("sfo-r1")).unwrap().is_some());
    assert!(
        target
            .store
            .get_opt(&Interface::key("sfo-r1", "eth0"))
            .unwrap()
            .is_some()
    );
    // Still ignored by the next diff, and counted as skipped there.
    let s = target.diff_from(&source).unwrap().summary();
    assert_eq!((s.create, s.update, s.delete, s.skip), (0, 0, 0, 1));
}

#[test]
fn skip_children_on_delete_removes_the_subtree_and_reports_it() {
    let source = sys_b();
    let mut target = sys_a();
    let mut dev = target.store.get(&Device::key("sfo-r1")).unwrap().clone();
    dev.flags = ModelFlags::SKIP_CHILDREN_ON_DELETE;
    target.store.update(dev).unwrap();
    let report = target.sync_from(&source).unwrap();
    assert_eq!(*outcome_of(&report, "sfo-r1"), Outcome::Applied);
    assert_eq!(*outcome_of(&report, "sfo-r1__eth0"), Outcome::RemovedWithParent);
    assert!(!target.log.iter().any(|l| l.contains("sfo-r1__eth0")));
    assert!(
        target
            .store
            .get_opt(&Interface::key("sfo-r1", "eth0"))
            .unwrap()
            .is_none()
    );
    assert!(!target.diff_from(&source).unwrap().has_diffs());
}

fn schema(value: serde_json::Value) -> Arc<ModelSchema> {
    Arc::new(serde_json::from_value(value).unwrap())
}

#[test]
fn a_create_builds_the_destinations_model_type() {
    // Per-side attribute sets: the source knows `owner`, the destination has
    // `mtu` with a default and ignores its own type's flags nowhere else.
    let src_schema = schema(json!({
        "name": "port", "identifiers": [{"name": "name", "kind": "string"}],
        "attributes": [{"name": "descr", "kind": "string"}, {"name": "owner", "kind": "string"}],
    }));
    let dst_schema = schema(json!({
        "name": "port", "identifiers": [{"name": "name", "kind": "string"}],
        "attributes": [{"name": "descr", "kind": "string"}, {"name": "mtu", "kind": "integer", "default": 1500}],
        "flags": "SKIP_UNMATCHED_DST",
    }));
    let mut source = MemoryAdapter::new("src", &["port"]);
    source.store.register_dyn(src_schema.clone()).unwrap();
    let p = DynModel::from_json(&src_schema, json!({"name": "p1", "descr": "up", "owner": "ops"})).unwrap();
    source
        .store
        .add(p.with_flags(ModelFlags::NATURAL_DELETION_ORDER))
        .unwrap();
    let mut target = MemoryAdapter::new("dst", &["port"]);
    target.store.register_dyn(dst_schema.clone()).unwrap();
    target.sync_from(&source).unwrap();

    let created = target.store.get_as::<DynModel>(&key_of("port:p1")).unwrap();
    assert!(Arc::ptr_eq(created.shared_schema(), &dst_schema));
    let attrs = DiffModel::attributes(created);
    assert_eq!(
        serde_json::to_value(&attrs).unwrap(),
        json!({"descr": "up", "mtu": 1500})
    );
    assert_eq!(DiffModel::flags(created), ModelFlags::SKIP_UNMATCHED_DST);
    assert!(!target.diff_from(&source).unwrap().has_diffs());
}

#[test]
fn a_create_of_a_derived_model_resets_local_fields_and_instance_flags() {
    let mut source = MemoryAdapter::new("src", &["site"]);
    source
        .store
        .add(Site {
            name: "nyc".into(),
            region: "east".into(),
        })
        .unwrap();
    let dev = Device {
        name: "r1".into(),
        role: "edge".into(),
        serial: None,
        db_pk: 77,
        flags: ModelFlags::NATURAL_DELETION_ORDER,
    };
    source.store.add_child(Site::key("nyc"), dev).unwrap();
    let mut target = MemoryAdapter::new("dst", &["site"]);
    target.sync_from(&source).unwrap();
    let created = target.store.get(&Device::key("r1")).unwrap();
    assert_eq!((created.db_pk, created.flags), (0, ModelFlags::empty()));
    assert_eq!(created.role, "edge");
}

/// An inventory where interface `moved__eth0` sits under device `owner`.
fn with_moved(name: &str, owner: &str) -> Inventory {
    let mut inv = Inventory::new(
        name,
        &[("nyc", "east", &[("a", "router", None, &[]), ("b", "router", None, &[])])],
    );
    let intf = Interface {
        device_name: "moved".into(),
        name: "eth0".into(),
        description: "x".into(),
        mtu: 1500,
    };
    inv.store.add_child(key_of(&format!("device:{}", owner)), intf).unwrap();
    inv
}

#[test]
fn a_move_whose_delete_comes_first_applies_in_one_run() {
    let source = with_moved("src", "b");
    let mut target = with_moved("dst", "a");
    let report = target.sync_from(&source).unwrap();
    let intf: Vec<_> = report
        .elements
        .iter()
        .filter(|e| e.model_type() == "interface")
        .collect();
    assert_eq!((intf[0].action, &intf[0].outcome), (Action::Delete, &Outcome::Applied));
    assert_eq!((intf[1].action, &intf[1].outcome), (Action::Create, &Outcome::Applied));
    assert!(!target.diff_from(&source).unwrap().has_diffs());
    assert_eq!(
        target.store.parent(key_of("interface:moved__eth0")).unwrap(),
        Some(key_of("device:b"))
    );

    // If that delete fails, the create waits for it.
    let mut target = with_moved("dst", "a").fail_on("interface", "moved__eth0");
    let report = target
        .sync_from_with(&source, &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap();
    let create = report
        .elements
        .iter()
        .rfind(|e| e.key.unique_id() == "moved__eth0")
        .unwrap();
    assert_eq!(create.outcome, Outcome::Skipped(SkipReason::DependencyFailed));
    assert_eq!(
        target.store.parent(key_of("interface:moved__eth0")).unwrap(),
        Some(key_of("device:a"))
    );
}

#[test]
fn a_move_whose_create_comes_first_has_its_delete_hoisted_and_applies_in_one_run() {
    // The new parent comes before the old one: the delete goes first all
    // the same, so the create finds the key free.
    let source = with_moved("src", "a");
    let mut target = with_moved("dst", "b");
    let report = target.sync_from(&source).unwrap();
    let intf: Vec<_> = report
        .elements
        .iter()
        .filter(|e| e.model_type() == "interface")
        .map(|e| (e.action, e.outcome.clone()))
        .collect();
    assert_eq!(
        intf,
        [(Action::Delete, Outcome::Applied), (Action::Create, Outcome::Applied)]
    );
    assert!(!target.diff_from(&source).unwrap().has_diffs());
    assert_eq!(
        target.store.parent(key_of("interface:moved__eth0")).unwrap(),
        Some(key_of("device:a"))
    );
}

#[test]
fn a_create_of_an_existing_key_fails_that_element_before_any_hook() {
    // A diff that creates a key the target holds elsewhere, without the
    // delete that frees it: that create fails alone.
    let source = with_moved("src", "a");
    let mut target = with_moved("dst", "b");
    let diff = target
        .diff_from(&source)
        .unwrap()
        .filtered(|e| e.action != Action::Delete);
    let report = target
        .sync_diff(&diff, &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap();
    let intf: Vec<_> = report
        .elements
        .iter()
        .filter(|e| e.model_type() == "interface")
        .map(|e| (e.action, e.outcome.clone()))
        .collect();
    assert!(
        matches!(&intf[..], [(Action::Create, Outcome::Failed(m))] if m.contains("already exists")),
        "{intf:?}"
    );
    assert!(!target.log.iter().any(|l| l.starts_with("create")), "{:?}", target.log);
}

#[test]
fn a_loaded_diff_that_does_not_fit_the_store_is_refused_before_any_hook() {
    let diff = sys_a().diff_from(&sys_b()).unwrap();
    // Edits of the diff's JSON: its elements in pre-order, each with its depth.
    type Edit = fn(&mut Vec<serde_json::Value>);
    fn at<'a>(es: &'a mut [serde_json::Value], key: &str) -> &'a mut serde_json::Value {
        es.iter_mut().find(|e| e["key"] == key).unwrap()
    }
    let cases: [(&str, Edit); 7] = [
        ("a child type its parent does not declare", |es| {
            // The site's device goes; its interfaces become the site's children.
            let i = es.iter().position(|e| e["key"] == "lax").unwrap();
            es.remove(i + 1);
            for e in &mut es[i + 1..] {
                match e["depth"].as_u64() {
                    Some(2) => e["depth"] = json!(1),
                    _ => break,
                }
            }
        }),
        ("a value of the wrong kind in a create", |es| {
            at(es, "lax")["source_attrs"]["region"] = json!(5);
        }),
        ("a value of the wrong kind in an update", |es| {
            let i = es.iter().position(|e| e["key"] == "nyc").unwrap();
            es[i + 1]["changes"][0]["new"] = json!(["edge"]);
        }),
        ("key disagrees with identifiers", |es| {
            at(es, "lax")["identifiers"]["name"] = json!("other");
        }),
        ("delete of a missing key", |es| {
            let e = at(es, "sfo");
            e["key"] = json!("gone");
            e["identifiers"]["name"] = json!("gone");
        }),
        ("update of a missing key", |es| {
            let i = es.iter().position(|e| e["key"] == "nyc").unwrap();
            es[i + 1]["key"] = json!("nyc-r9");
            es[i + 1]["identifiers"]["name"] = json!("nyc-r9");
        }),
        ("create under a missing parent", |es| {
            at(es, "lax")["action"] = json!("no-change");
        }),
    ];
    let edited = |edit: Edit| -> Diff {
        let mut json = serde_json::to_value(&diff).unwrap();
        let es = json["elements"].as_array_mut().unwrap();
        edit(es);
        serde_json::from_value(json).unwrap()
    };
    for (what, edit) in cases {
        let d = edited(edit);
        let mut target = sys_a();
        let before = target.store.clone();
        let err = target.sync_diff(&d, &mut Options::new()).unwrap_err();
        assert!(
            matches!(err, Error::Sync(diffsync::SyncError::InvalidDiff { .. })),
            "{what}: {err}"
        );
        assert!(target.log.is_empty(), "{what}: no hook ran");
        assert!(
            !MemoryAdapter::with_store("x", &["site"], before)
                .diff_from(&target)
                .unwrap()
                .has_diffs()
        );
    }
}

/// An adapter whose hooks fail as told per key: `soft:`, `fatal:`, `panic:`,
/// `typed:` (a [`Refused`] with a cause), `err:`.
struct Scripted {
    store: LocalStore,
    script: Vec<(String, &'static str)>,
    calls: Vec<String>,
    completed: usize,
}

impl Scripted {
    fn new(inv: Inventory, script: &[(&str, &'static str)]) -> Self {
        Scripted {
            store: inv.store,
            script: script.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            calls: Vec::new(),
            completed: 0,
        }
    }
    fn run(&mut self, change: &Change<'_>) -> Result<(), HookError> {
        self.calls.push(format!("{} {}", change.action, change.key()));
        match self.script.iter().find(|(k, _)| k == change.key()).map(|(_, v)| *v) {
            Some("soft") => Err(HookError::soft("busy")),
            Some("fatal") => Err(HookError::fatal("link down")),
            Some("panic") => panic!("hook bug"),
            Some("typed") => Err(Refused {
                port: 8080,
                source: "permission denied".into(),
            }
            .into()),
            Some(_) => Err("refused".into()),
            None => Ok(()),
        }
    }
}

impl Adapter for Scripted {
    type Store = LocalStore;
    fn name(&self) -> &str {
        "scripted"
    }
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }
    fn top_level(&self) -> Vec<&str> {
        vec!["site"]
    }
}
impl Sink for Scripted {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        match change.action {
            Action::Create => self.run(change),
            Action::Update => self.run(change),
            Action::Delete => self.run(change),
            _ => Ok(()),
        }
    }
    fn sync_complete(&mut self, _: &Diff, _: &diffsync::SyncReport) -> Result<(), HookError> {
        self.completed += 1;
        Ok(())
    }
}

#[test]
fn a_soft_failure_skips_children_and_the_sync_goes_on() {
    let mut target = Scripted::new(sys_a(), &[("lax", "soft")]);
    let report = target.sync_from(&sys_b()).unwrap();
    assert_eq!(*outcome_of(&report, "lax"), Outcome::SoftFailed("busy".into()));
    assert_eq!(
        *outcome_of(&report, "lax-r1"),
        Outcome::Skipped(SkipReason::ParentFailed)
    );
    assert_eq!(*outcome_of(&report, "sfo"), Outcome::Applied);
    assert_eq!(target.completed, 1);
    assert_eq!(report.totals().soft_failed, 1);
}

#[test]
fn sync_complete_runs_even_when_every_change_soft_failed() {
    let script: Vec<(&str, &'static str)> = ["nyc-r1", "nyc-r1__eth0", "nyc-r1__eth2", "nyc-r1__eth1", "lax", "sfo"]
        .iter()
        .map(|k| (*k, "soft"))
        .collect();
    let mut target = Scripted::new(sys_a(), &script);
    let report = target.sync_from(&sys_b()).unwrap();
    assert_eq!(report.totals().applied, 0);
    assert_eq!(target.completed, 1);
    let left = target.diff_from(&sys_b()).unwrap();
    assert_eq!(left.elements, sys_a().diff_from(&sys_b()).unwrap().elements);
}

/// A hook's own error type, with a cause of its own.
#[derive(Debug, thiserror::Error)]
#[error("port {port} refused")]
struct Refused {
    port: u16,
    #[source]
    source: diffsync::BoxError,
}

#[test]
fn a_failed_change_keeps_its_typed_error_and_says_each_cause_once() {
    let mut target = Scripted::new(sys_a(), &[("nyc-r1__eth0", "typed")]);
    let err = target.sync_from(&sys_b()).unwrap_err();
    let Error::Sync(diffsync::SyncError::Aborted { report, .. }) = &err else {
        panic!("{err}")
    };
    let outcome = outcome_of(report, "nyc-r1__eth0");
    // The outcome reads as the message with its cause, and keeps the error.
    assert_eq!(outcome.message(), Some("port 8080 refused: permission denied"));
    let refused = outcome.cause().and_then(|c| c.downcast_ref::<Refused>());
    assert_eq!(refused.map(|r| r.port), Some(8080));
    // The sync's error says where it stopped; its cause is the hook's
    // error, said once on the line Chain prints and once in Debug.
    assert_eq!(err.to_string(), r#"sync aborted at interface:nyc-r1__eth0"#);
    assert_eq!(
        Chain(&err).to_string(),
        r#"sync aborted at interface:nyc-r1__eth0: port 8080 refused: permission denied"#
    );
    assert_eq!(
        format!("{err:?}"),
        "sync aborted at interface:nyc-r1__eth0\n  caused by: port 8080 refused: permission denied"
    );
    let typed = std::iter::successors(std::error::Error::source(&err), |e| e.source())
        .find_map(|e| e.downcast_ref::<Refused>());
    assert!(typed.is_some(), "the hook's error is in the source chain");
}

#[test]
fn a_fatal_failure_stops_even_with_continue_on_failure() {
    let mut target = Scripted::new(sys_a(), &[("nyc-r1__eth0", "fatal")]);
    let err = target
        .sync_from_with(&sys_b(), &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap_err();
    let Error::Sync(diffsync::SyncError::Aborted { key, report, cause, .. }) = err else {
        panic!("{err}")
    };
    assert_eq!(key, Some(key_of("interface:nyc-r1__eth0")));
    assert_eq!(cause.to_string(), "link down");
    assert_eq!(*outcome_of(&report, "nyc-r1__eth0"), Outcome::Fatal("link down".into()));
    assert_eq!(*outcome_of(&report, "lax"), Outcome::Skipped(SkipReason::Aborted));
    // nyc-r1 was applied: the system is told at the end.
    assert_eq!(target.completed, 1);
    assert_eq!(target.calls, ["update nyc-r1", "update nyc-r1__eth0"]);
}

#[test]
fn a_panicking_hook_leaves_the_store_with_what_applied_before_it() {
    let source = sys_b();
    let mut target = Scripted::new(sys_a(), &[("lax", "panic")]);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.sync_from(&source)));
    assert!(caught.is_err(), "the panic goes on to the caller");
    // The four changes before `lax` are in the store; nothing after it.
    assert_eq!(target.calls.len(), 5);
    let store = &target.store;
    assert_eq!(store.get(&Device::key("nyc-r1")).unwrap().role, "edge");
    assert!(store.get_opt(&Interface::key("nyc-r1", "eth2")).unwrap().is_some());
    assert!(store.get_opt(&Interface::key("nyc-r1", "eth1")).unwrap().is_none());
    assert!(store.get_opt(&Site::key("sfo")).unwrap().is_some());
    let s = target.diff_from(&source).unwrap().summary();
    assert_eq!((s.create, s.update, s.delete), (3, 0, 3));
}

/// A transactional batch hook: stages each change and fails at one key.
struct Transactional {
    store: LocalStore,
    fail_at: &'static str,
    panic: bool,
}

impl Adapter for Transactional {
    type Store = LocalStore;
    fn name(&self) -> &str {
        "tx"
    }
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }
    fn top_level(&self) -> Vec<&str> {
        vec!["site"]
    }
}
impl Sink for Transactional {
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        for i in 0..batch.len() {
            if !batch.should_apply(i) {
                continue;
            }
            if batch.changes()[i].key() == self.fail_at {
                if self.panic {
                    panic!("driver bug");
                }
                batch.set_outcome(i, Err("constraint violated".into()));
                return Err("transaction rolled back".into());
            }
            batch.stage(i);
        }
        batch.commit_staged();
        Ok(())
    }
}

#[test]
fn a_failed_batch_names_the_change_and_rolls_back_the_others() {
    for panic in [false, true] {
        let source = sys_b();
        let mut target = Transactional {
            store: sys_a().store,
            fail_at: "lax-r1",
            panic,
        };
        let before = target.diff_from(&source).unwrap();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.sync_from(&source)));
        assert_eq!(target.diff_from(&source).unwrap(), before, "nothing applied");
        if panic {
            assert!(run.is_err());
            continue;
        }
        let err = run.unwrap().unwrap_err();
        let Error::Sync(diffsync::SyncError::Aborted {
            key,
            cause: message,
            report,
            ..
        }) = err
        else {
            panic!("{err}")
        };
        assert_eq!(key, Some(key_of("device:lax-r1")));
        assert_eq!(message, "constraint violated; transaction rolled back");
        let outcomes: Vec<_> = report
            .elements
            .iter()
            .map(|e| (e.key.unique_id(), e.outcome.clone()))
            .collect();
        let mut expected = vec![("nyc", Outcome::Unchanged)];
        for k in ["nyc-r1", "nyc-r1__eth0", "nyc-r1__eth2", "nyc-r1__eth1", "lax"] {
            expected.push((k, Outcome::RolledBack));
        }
        expected.push(("lax-r1", Outcome::Failed("constraint violated".into())));
        expected.push(("lax-r1__eth0", Outcome::Skipped(SkipReason::ParentFailed)));
        for k in ["sfo", "sfo-r1", "sfo-r1__eth0"] {
            expected.push((k, Outcome::Skipped(SkipReason::Aborted)));
        }
        assert_eq!(outcomes, expected);
    }
}

#[test]
fn unknown_top_level_type_is_an_error_listing_the_known_ones() {
    let source = sys_b();
    let target = MemoryAdapter::with_store("typo", &["sites"], sys_a().store);
    let err = target.diff_from(&source).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"unknown top-level model type "sites" in adapter "typo"; known types: [device, interface, site]"#
    );
}

fn chain(name: &str, len: usize, label: &str) -> MemoryAdapter {
    let mut a = MemoryAdapter::new(name, &["node"]);
    let mut parent = a.store.add(Node::new("n0", label));
    for i in 1..len {
        let node = Node::new(format!("n{i}"), label);
        parent = a.store.add_under(parent.unwrap(), node);
    }
    parent.unwrap();
    a
}

#[test]
fn a_self_referencing_type_has_only_its_parentless_models_as_roots() {
    let source = chain("src", 3, "x");
    let mut target = MemoryAdapter::new("dst", &["node"]);
    let diff = target.diff_from(&source).unwrap();
    let shape: Vec<_> = diff.iter().map(|(e, depth)| (e.unique_id(), depth)).collect();
    assert_eq!(shape, [("n0", 0), ("n1", 1), ("n2", 2)]);
    assert_eq!(diff.summary().create, 3);
    target.sync_from(&source).unwrap();
    assert!(!target.diff_from(&source).unwrap().has_diffs());
    assert_eq!(target.store.parent(key_of("node:n2")).unwrap(), Some(key_of("node:n1")));
    let changed = chain("src", 3, "y");
    assert_eq!(target.diff_from(&changed).unwrap().summary().update, 3);
}

#[test]
fn ids_that_join_to_the_same_text_are_different_models() {
    let s = schema(json!({
        "name": "pair", "identifiers": [{"name": "a", "optional": true}, {"name": "b"}],
        "attributes": [{"name": "v", "kind": "integer"}],
    }));
    let mut store = LocalStore::new("t");
    store.register_dyn(s.clone()).unwrap();
    let rows = [
        json!({"a": "a__b", "b": "c", "v": 1}),
        json!({"a": "a", "b": "b__c", "v": 2}),
        json!({"a": null, "b": "x", "v": 3}),
        json!({"a": "None", "b": "x", "v": 4}),
        json!({"a": 1, "b": "x", "v": 5}),
        json!({"a": "1", "b": "x", "v": 6}),
    ];
    for r in &rows {
        store.add(DynModel::from_json(&s, r.clone()).unwrap()).unwrap();
    }
    assert_eq!(store.count("pair"), rows.len());
    let mut keys: Vec<String> = store.get_all_dyn("pair").map(|m| m.unique_id()).collect();
    keys.dedup();
    assert_eq!(keys.len(), rows.len(), "{keys:?}");
    // An update meant for one goes to that one only.
    let mut target = MemoryAdapter::with_store("dst", &["pair"], store.clone());
    let mut source = MemoryAdapter::with_store("src", &["pair"], store);
    let m = DynModel::from_json(&s, json!({"a": "a", "b": "b__c", "v": 20})).unwrap();
    source.store.update(m).unwrap();
    let diff = target.diff_from(&source).unwrap();
    assert_eq!(diff.summary().update, 1);
    // The diff names it unambiguously, as its key prints.
    assert_eq!(
        diff.to_string(),
        "pair\n  pair: a__\"b__c\"\n    v    src(20)    dst(2)"
    );
    // The Python-shaped dict keeps the reference's plain text.
    assert_eq!(
        diff.to_python_dict(),
        json!({"pair": {"a__b__c": {"-": {"v": 2}, "+": {"v": 20}}}})
    );
    target.sync_from(&source).unwrap();
    let v = |k: &str| {
        DiffModel::attributes(
            target
                .store
                .get_as::<DynModel>(&key_of(&format!("pair:{}", k)))
                .unwrap(),
        )["v"]
            .clone()
    };
    assert_eq!((v(r#"a__"b__c""#), v(r#""a__b"__c"#)), (json!(20), json!(1)));
}

#[test]
fn an_observed_sync_hands_its_diff_to_the_observer_and_applies_the_same() {
    let source = sys_b();
    let mut target = sys_a();
    let expected = target.diff_from(&source).unwrap();
    let (report, seen) = target
        .sync_from_observed(&source, &mut Options::new(), |diff| Ok(diff.clone()))
        .unwrap();
    assert_eq!(seen, expected);
    assert!(report.unwrap().is_success());
    assert!(!target.diff_from(&source).unwrap().has_diffs());
    // A diff that cannot be made: the observer never runs.
    let mut typo = MemoryAdapter::with_store("typo", &["sites"], sys_a().store);
    let mut ran = false;
    let err = typo.sync_from_observed(&source, &mut Options::new(), |_| {
        ran = true;
        Ok(())
    });
    assert!(matches!(err, Err(Error::Diff(_))), "{err:?}");
    assert!(!ran);
    // An observer that fails (a journal that cannot write the plan):
    // nothing is written to the target.
    let mut target = sys_a();
    let err = target.sync_from_observed(&source, &mut Options::new(), |_| -> Result<(), diffsync::BoxError> {
        Err("the journal's disk is full".into())
    });
    assert!(
        matches!(&err, Err(Error::Sync(diffsync::SyncError::Observer { .. }))),
        "{err:?}"
    );
    assert_eq!(target.store.fingerprint(), sys_a().store.fingerprint());
    assert!(target.log.is_empty(), "{:?}", target.log);
}

/// A bulk writer: reads its batch typed, fails the create of the device
/// named "bad", applies the rest.
struct Bulk {
    store: LocalStore,
    log: Vec<String>,
}

impl Adapter for Bulk {
    type Store = LocalStore;
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }
}

impl Sink for Bulk {
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        for Typed { index, key, edit } in batch.typed::<Device>(&self.store)? {
            self.log.push(match &edit {
                Edit::Create { new, parent } => format!("create {key} as {} under {parent:?}", new.role),
                Edit::Update { old, new, changed } => format!("update {key}: {} -> {} {changed:?}", old.role, new.role),
                Edit::Delete { old, subtree } => format!("delete {} (subtree: {subtree})", old.name),
            });
            let refused = matches!(&edit, Edit::Create { new, .. } if new.name == "bad");
            batch.set_outcome(
                index,
                if refused {
                    Err(HookError::Failed("refused".into()))
                } else {
                    Ok(())
                },
            );
        }
        // Read after the devices' outcomes: the children of the failed one
        // are left out, reported as such.
        for Typed { index, key, edit } in batch.typed::<Interface>(&self.store)? {
            let Edit::Create { new, parent } = edit else {
                panic!("only creates of interfaces here");
            };
            self.log
                .push(format!("create {key} (mtu {}) under {}", new.mtu, parent.unwrap()));
            batch.set_outcome(index, Ok(()));
        }
        Ok(())
    }
}

#[test]
fn a_batch_hook_reads_its_changes_typed_and_a_failed_parent_holds_back_its_children() {
    let device = |name: &str, role: &str| Device {
        name: name.into(),
        role: role.into(),
        serial: None,
        db_pk: 0,
        flags: ModelFlags::empty(),
    };
    let interface = |device: &str| Interface {
        device_name: device.into(),
        name: "eth0".into(),
        description: String::new(),
        mtu: 9000,
    };
    let mut source = MemoryAdapter::new("source", &["device"]);
    for (name, role) in [("r1", "core"), ("bad", "edge"), ("new", "edge")] {
        source.store.add(device(name, role)).unwrap();
    }
    for parent in ["bad", "new"] {
        source
            .store
            .add_child(Device::key(parent.to_string()), interface(parent))
            .unwrap();
    }
    let mut target = Bulk {
        store: LocalStore::new("target"),
        log: Vec::new(),
    };
    target.store.add(device("r1", "edge")).unwrap();
    target.store.add(device("old", "spare")).unwrap();
    let report = target
        .sync_from_with(&source, &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap();
    assert_eq!(
        target.log,
        [
            "update device:r1: edge -> core [Role]",
            "create device:bad as edge under None",
            "create device:new as edge under None",
            "delete old (subtree: false)",
            "create interface:new__eth0 (mtu 9000) under device:new",
        ]
    );
    assert!(matches!(outcome_of(&report, "bad"), Outcome::Failed(_)));
    assert_eq!(
        outcome_of(&report, "bad__eth0"),
        &Outcome::Skipped(SkipReason::ParentFailed)
    );
    assert_eq!(outcome_of(&report, "new__eth0"), &Outcome::Applied);
    // The store took what the system took.
    assert_eq!(target.store.get(&Device::key("r1".to_string())).unwrap().role, "core");
    assert!(target.store.get_opt(&Device::key("old".to_string())).unwrap().is_none());
    assert!(target.store.get_opt(&Device::key("bad".to_string())).unwrap().is_none());
    assert_eq!(target.store.count_all(), 3, "r1, new and its interface");
}
