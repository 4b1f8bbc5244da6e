//! Sync behaviour: failures, aborts, dry runs, batches, loaded and reversed diffs.

use diffsync::{
    Action, Adapter, AdapterExt, Chain, Diff, DiffFlags, Error, Options, Outcome, Progress, Sink, SkipReason, Stage,
};
use diffsync_tests::{Device, Inventory, Site, sys_a, sys_b};
use diffsync_tests::{key_of, typed_key};

#[test]
fn continue_on_failure_skips_children_of_a_failed_parent() {
    let source = sys_b();
    let mut target = sys_a().fail_on("device", "lax-r1");
    let report = target
        .sync_from_with(&source, &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap();
    let t = report.totals();
    assert_eq!((t.applied, t.failed, t.skipped), (8, 1, 1));
    let intf = report
        .elements
        .iter()
        .find(|e| e.key.unique_id() == "lax-r1__eth0")
        .unwrap();
    assert_eq!(intf.outcome, Outcome::Skipped(SkipReason::ParentFailed));
    let failed: Vec<_> = report.failures().map(|e| e.key.unique_id()).collect();
    assert_eq!(failed, ["lax-r1"]);
    assert!(target.store.get_opt(&Site::key("lax")).unwrap().is_some());
    assert!(target.store.get_opt(&Device::key("lax-r1")).unwrap().is_none());
    assert_eq!(target.completed, 1);
    // What failed shows up again in the next diff.
    let s = target.diff_from(&source).unwrap().summary();
    assert_eq!((s.create, s.update, s.delete), (2, 0, 0));
}

#[test]
fn failure_without_continue_aborts_and_store_reflects_only_applied_changes() {
    let source = sys_b();
    let mut target = sys_a().fail_on("site", "lax");
    let err = target.sync_from(&source).unwrap_err();
    let Error::Sync(diffsync::SyncError::Aborted {
        key,
        cause: message,
        report,
        ..
    }) = err
    else {
        panic!("expected SyncAborted, got {err}");
    };
    assert_eq!(key.map(|k| k.to_string()).as_deref(), Some("site:lax"));
    assert!(message.contains("refused by backend"), "{message}");
    let t = report.totals();
    assert_eq!((t.applied, t.failed, t.skipped, t.unchanged), (4, 1, 5, 1));
    // The report lists every element: the failing one's children are
    // "parent failed", the later ones "aborted".
    let at = report.elements.iter().position(|e| e.key.unique_id() == "lax").unwrap();
    let after: Vec<_> = report.elements[at + 1..]
        .iter()
        .map(|e| (e.key.unique_id(), e.outcome.clone()))
        .collect();
    assert_eq!(
        after,
        [
            ("lax-r1", Outcome::Skipped(SkipReason::ParentFailed)),
            ("lax-r1__eth0", Outcome::Skipped(SkipReason::ParentFailed)),
            ("sfo", Outcome::Skipped(SkipReason::Aborted)),
            ("sfo-r1", Outcome::Skipped(SkipReason::Aborted)),
            ("sfo-r1__eth0", Outcome::Skipped(SkipReason::Aborted)),
        ]
    );
    // Applied before the failure: in the store. After it: not.
    assert!(
        target
            .store
            .get_opt(&typed_key::<diffsync_tests::Interface>("interface:nyc-r1__eth2"))
            .unwrap()
            .is_some()
    );
    assert!(target.store.get_opt(&Site::key("sfo")).unwrap().is_some());
    // What the store took is handed to the system at the end all the same.
    assert_eq!(target.completed, 1);
}

#[test]
fn failing_batch_leaves_store_untouched() {
    let source = sys_b();
    let mut target = sys_a();
    target.fail_batch = true;
    let before = target.diff_from(&source).unwrap();
    let err = target.sync_from(&source).unwrap_err();
    assert!(matches!(err, Error::Sync(diffsync::SyncError::Aborted { .. })), "{err}");
    assert!(Chain(&err).to_string().contains("transaction rolled back"), "{err}");
    assert_eq!(target.diff_from(&source).unwrap(), before);
}

#[test]
fn dry_run_calls_no_hook_and_changes_nothing() {
    let source = sys_b();
    let mut target = sys_a();
    let before = target.diff_from(&source).unwrap();
    let report = target
        .sync_from_with(&source, &mut Options::new().dry_run(true))
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.totals().planned, 10);
    assert!(target.log.is_empty());
    assert_eq!(target.completed, 0);
    assert_eq!(target.diff_from(&source).unwrap(), before);
}

#[test]
fn a_diff_saved_as_json_syncs_later_without_the_source() {
    let source = sys_b();
    let json = serde_json::to_string(&sys_a().diff_from(&source).unwrap()).unwrap();
    let loaded: Diff = serde_json::from_str(&json).unwrap();
    let mut target = sys_a();
    let report = target.sync_diff(&loaded, &mut Options::new()).unwrap();
    assert!(report.is_success());
    assert!(!target.diff_from(&source).unwrap().has_diffs());
}

#[test]
fn reversed_diff_undoes_a_sync() {
    let source = sys_b();
    let original = sys_a();
    let mut target = original.clone();
    let diff = target.diff_from(&source).unwrap();
    target.sync_diff_from(&source, &diff, &mut Options::new()).unwrap();
    target.sync_diff(&diff.reversed(), &mut Options::new()).unwrap();
    let back = target.diff_from(&original).unwrap();
    assert!(!back.has_diffs(), "{back}");
}

#[test]
fn filtered_diff_keeps_parents_needed_by_kept_children() {
    let source = sys_b();
    let mut target = sys_a();
    let diff = target.diff_from(&source).unwrap().only_types(&["interface"]);
    target.sync_diff_from(&source, &diff, &mut Options::new()).unwrap();
    assert_eq!(
        target.log,
        [
            r#"update interface nyc-r1__eth0 {"description":"UPLINK"}"#,
            r#"create interface nyc-r1__eth2 {"description":"new","mtu":1500}"#,
            "delete interface nyc-r1__eth1",
            "delete interface sfo-r1__eth0",
        ]
    );
    // The site and device whose deletes were filtered out are still there.
    assert!(target.store.get_opt(&Device::key("sfo-r1")).unwrap().is_some());
}

#[test]
fn filter_by_action_and_predicate() {
    let diff = sys_a().diff_from(&sys_b()).unwrap();
    let updates = diff.only_actions(&[Action::Update]);
    let s = updates.summary();
    assert_eq!((s.create, s.update, s.delete), (0, 2, 0));
    let none = diff.filtered(|e| e.model_type() == "nothing");
    assert!(!none.has_diffs());
}

#[test]
fn progress_reports_both_stages() {
    let source = sys_b();
    let mut target = sys_a();
    let mut events: Vec<Progress> = Vec::new();
    let mut cb = |p: Progress| events.push(p);
    target
        .sync_from_with(&source, &mut Options::new().progress(&mut cb))
        .unwrap();
    let diff_last = events.iter().rfind(|p| p.stage == Stage::Diff).unwrap();
    assert_eq!((diff_last.current, diff_last.total), (14, 14));
    let sync: Vec<_> = events
        .iter()
        .filter(|p| p.stage == Stage::Sync)
        .map(|p| (p.current, p.total))
        .collect();
    // Every element of the diff counts, the no-change site `nyc` first.
    assert_eq!(sync, (2..=11).map(|i| (i, 11)).collect::<Vec<_>>());
}

#[test]
fn sync_to_syncs_the_other_way() {
    let source = sys_b();
    let mut target = sys_a();
    source.sync_to(&mut target).unwrap();
    assert!(!target.diff_from(&source).unwrap().has_diffs());
}

#[test]
fn sync_into_an_empty_adapter_creates_everything() {
    let source = sys_b();
    let mut target = Inventory::empty("empty");
    let report = target.sync_from(&source).unwrap();
    assert_eq!(report.totals().applied, 7);
    assert_eq!(target.store.count_all(), 7);
    assert!(!target.diff_from(&source).unwrap().has_diffs());
}

#[test]
fn loaded_diff_into_a_store_without_the_type_is_an_error_and_changes_nothing() {
    let diff = sys_a().diff_from(&sys_b()).unwrap();
    let mut target = sys_a();
    target.store = diffsync::LocalStore::new("bare");
    let err = target.sync_diff(&diff, &mut Options::new()).unwrap_err();
    assert!(
        matches!(&err, Error::Sync(diffsync::SyncError::InvalidDiff { key, .. }) if key.to_string() == "site:nyc"),
        "{err}"
    );
    assert!(target.log.is_empty());
    assert_eq!(target.store.count_all(), 0);
}

#[test]
fn empty_adapters_have_no_diffs() {
    let a = diffsync::MemoryAdapter::new("a", &["site"]);
    let b = diffsync::MemoryAdapter::new("b", &["site"]);
    let d = a.diff_from(&b).unwrap();
    assert!(!d.has_diffs() && d.is_empty());
    assert_eq!(d.to_string(), "(no diffs)");
    assert_eq!(d.summary(), diffsync::Summary::default());
}

#[test]
fn a_top_level_type_on_one_side_only_is_skipped_whole() {
    #[derive(diffsync::DiffModel, Clone, Debug, PartialEq)]
    #[diffsync(name = "vendor")]
    struct Vendor {
        #[diffsync(id)]
        name: String,
    }
    let mut with_vendors = diffsync::MemoryAdapter::with_store("b", &["site", "vendor"], sys_b().store);
    for v in ["acme", "initech"] {
        with_vendors.store.add(Vendor { name: v.into() }).unwrap();
    }
    let s = sys_a().diff_from(&with_vendors).unwrap().summary();
    assert_eq!((s.create, s.update, s.delete, s.skip), (4, 2, 4, 2));
    let mut target = sys_a();
    target.sync_from(&with_vendors).unwrap();
    assert_eq!(target.store.count("vendor"), 0, "nothing of a skipped type is created");
}

#[test]
fn sync_into_a_store_without_the_child_type_uses_the_source_type() {
    let source = sys_b();
    let mut target = diffsync::MemoryAdapter::new("bare", &["site"]);
    target.sync_from(&source).unwrap();
    assert_eq!(target.store.count("interface"), 3);
    assert_eq!(
        target.store.children_dyn(key_of("device:nyc-r1"), "interface").unwrap(),
        [key_of("interface:nyc-r1__eth0"), key_of("interface:nyc-r1__eth2")]
    );
    assert!(!target.diff_from(&source).unwrap().has_diffs());
}

/// An adapter whose batch hook records every change as failed (and returns Ok).
struct RejectAll(diffsync::LocalStore);

impl Adapter for RejectAll {
    type Store = diffsync::LocalStore;
    fn name(&self) -> &str {
        "reject-all"
    }
    fn store(&self) -> &diffsync::LocalStore {
        &self.0
    }
    fn store_mut(&mut self) -> &mut diffsync::LocalStore {
        &mut self.0
    }
    fn top_level(&self) -> Vec<&str> {
        vec!["site"]
    }
}
impl Sink for RejectAll {
    fn apply_batch(&mut self, batch: &mut diffsync::Batch<'_, '_>) -> Result<(), diffsync::HookError> {
        for i in 0..batch.len() {
            batch.set_outcome(i, Err("rejected".into()));
        }
        Ok(())
    }
}

#[test]
fn a_failure_recorded_by_a_batch_hook_follows_continue_on_failure() {
    let source = sys_b();
    let mut target = RejectAll(sys_a().store);
    let err = target.sync_from(&source).unwrap_err();
    assert!(
        matches!(&err, Error::Sync(diffsync::SyncError::Aborted { cause, .. }) if *cause == "rejected"),
        "{err}"
    );
    let report = target
        .sync_from_with(&source, &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap();
    assert_eq!(report.totals().failed, 10);
}

#[test]
fn an_error_returned_from_main_prints_its_message_not_its_report() {
    let mut target = sys_a().fail_on("site", "lax");
    let err = target.sync_from(&sys_b()).unwrap_err();
    // `fn main() -> Result<(), diffsync::Error>` prints the Debug form.
    assert_eq!(
        err.model_key(),
        Some(Site::key("lax").into_erased()),
        "the key at fault"
    );
    let printed = format!("{err:?}");
    assert_eq!(printed.lines().next(), Some(err.to_string().as_str()));
    assert!(!printed.contains("ElementReport") && printed.len() < 300, "{printed}");
}

/// An adapter that names only its store (its name is the store's).
struct Plain(diffsync::LocalStore);

impl Adapter for Plain {
    type Store = diffsync::LocalStore;
    fn store(&self) -> &diffsync::LocalStore {
        &self.0
    }
    fn store_mut(&mut self) -> &mut diffsync::LocalStore {
        &mut self.0
    }
}

#[test]
fn top_level_types_come_from_the_schemas_and_adapters_sync_behind_dyn() {
    let source = Plain(sys_b().store);
    assert_eq!(source.top_level(), ["site"]);
    // A type that is its own child is still top level.
    let mut tree = diffsync::LocalStore::new("tree");
    tree.register::<diffsync_tests::Node>().unwrap();
    assert_eq!(Plain(tree).top_level(), ["node"]);
    // Targets of different kinds in one list.
    let mut targets: Vec<Box<dyn Sink<Store = diffsync::LocalStore>>> =
        vec![Box::new(sys_a()), Box::new(diffsync_tests::Inventory::empty("empty"))];
    for target in &mut targets {
        target.sync_from(&source).unwrap();
        let left = target.diff_from(&source).unwrap();
        assert!(!left.has_diffs(), "{}: {left}", target.name());
    }
}
