//! Trust at the seams: no mode loses an edit or hides a conflict where it
//! meets a system that refused a write, a restart, a schema change or a
//! diff read from a file.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use diffsync::bidir::{
    Base, BaseFile, BaseStore, BiOptions, ConflictRecord, ConflictSink, JsonLines, Resolution, Strategy, reconcile,
};
use diffsync::{Adapter, AdapterExt, AttrSource, Change, Error, HookError, LocalStore, MemoryAdapter, Sink};
use diffsync_tests::key_of;
use diffsync_tests::{Interface, Inventory, Site, sys_a};

pub(crate) fn no_limit() -> BiOptions {
    BiOptions::new().max_delete_share(None)
}

pub(crate) fn set(store: &mut LocalStore, ty: &str, key: &str, attr: &str, value: &str) {
    let values = [(attr.to_string().into(), value.into())].into_iter().collect();
    store
        .update_attributes(key_of(&format!("{}:{}", ty, key)), AttrSource::Values(&values))
        .unwrap();
}

pub(crate) fn named(mut inv: Inventory, name: &str) -> Inventory {
    inv.name = name.into();
    inv
}

#[test]
fn a_side_whose_system_took_nothing_adds_nothing_to_the_base_and_no_edit_is_reverted() {
    let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
    let mut base = Base::from_store(sys_a().store);
    // The left's edits: a create, an update, a delete.
    left.store
        .add(Site {
            name: "ams".into(),
            region: "eu".into(),
        })
        .unwrap();
    set(&mut left.store, "site", "sfo", "region", "south");
    left.store.remove(key_of("interface:nyc-r1__eth1"), false).unwrap();
    // The right's system takes nothing (its write at the end fails), while
    // its store's image takes everything.
    let system = right.store.clone();
    right.fail_complete = true;
    let err = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap_err();
    let Error::Reconcile(diffsync::ReconcileError::Unfinished { side, report, .. }) = &err else {
        panic!("{err}")
    };
    assert_eq!(side, "right");
    assert!(err.to_string().starts_with("reconcile unfinished"), "{err}");
    assert!(
        report.to_string().starts_with("UNFINISHED: the sync to right stopped"),
        "{report}"
    );
    // The base holds none of it.
    assert!(base.store().get_dyn(key_of("site:ams")).is_err());
    assert_eq!(base.store().get(&Site::key("sfo")).unwrap().region, "west");
    assert!(base.store().get_dyn(key_of("interface:nyc-r1__eth1")).is_ok());

    // A restart: the right is read again from its system.
    right.store = system;
    right.fail_complete = false;
    reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    for side in [&left, &right] {
        assert!(
            side.store.get_dyn(key_of("site:ams")).is_ok(),
            "{} lost the create",
            side.name
        );
        assert_eq!(side.store.get(&Site::key("sfo")).unwrap().region, "south");
        assert!(
            side.store.get(&Interface::key("nyc-r1", "eth1")).is_err(),
            "{} got the deleted interface back",
            side.name
        );
    }
}

#[test]
fn an_unfinished_reconcile_leaves_by_question_mark() {
    fn run(left: &mut Inventory, right: &mut Inventory, base: &mut Base) -> diffsync::Result<usize> {
        let report = reconcile(left, right, base, &no_limit())?;
        Ok(report.conflicts.len())
    }
    let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
    let mut base = Base::from_store(sys_a().store);
    set(&mut left.store, "site", "sfo", "region", "south");
    right.fail.insert(("site".into(), "sfo".into()));
    assert!(matches!(
        run(&mut left, &mut right, &mut base),
        Err(Error::Reconcile(diffsync::ReconcileError::Unfinished { .. }))
    ));
    right.fail.clear();
    assert_eq!(run(&mut left, &mut right, &mut base).unwrap(), 0);
}

/// Left and right both edit `nyc`'s region; the left also renames `sfo`'s
/// region, which goes to the right.
/// A base file whose saves fail from the `fail_from`-th on (counting from
/// 1): the process dying before it could record the run's end.
struct DyingBase {
    file: BaseFile,
    saves: usize,
    fail_from: usize,
}

impl BaseStore for DyingBase {
    fn load(&mut self, like: &LocalStore) -> diffsync::Result<Base> {
        self.file.load(like)
    }
    fn save(&mut self, base: &Base) -> diffsync::Result<()> {
        self.saves += 1;
        if self.saves >= self.fail_from {
            return Err(Error::Reconcile(diffsync::ReconcileError::Base {
                path: self.file.0.display().to_string(),
                message: "the process died".into(),
            }));
        }
        self.file.save(base)
    }
}

/// Runs one reconcile whose base store dies after the intents are saved
/// (before the run's end is), and returns the base a restarted process
/// loads.
fn crash_after_the_writes(left: &mut Inventory, right: &mut Inventory, base: Base, dir: &std::path::Path) -> Base {
    let file = BaseFile(dir.join("base.json"));
    file.clone().save(&base).unwrap();
    let dying = Arc::new(Mutex::new(DyingBase {
        file: file.clone(),
        saves: 0,
        fail_from: 2,
    }));
    let mut base = file.clone().load(&left.store).unwrap();
    let opts = no_limit().save_to(dying);
    let run = reconcile(left, right, &mut base, &opts);
    assert!(
        matches!(run, Err(Error::Reconcile(diffsync::ReconcileError::Unfinished { .. }))),
        "{run:?}"
    );
    file.clone().load(&left.store).unwrap()
}

#[test]
fn a_write_that_landed_before_a_crash_is_in_the_next_base_so_a_new_edit_is_no_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
    set(&mut left.store, "site", "sfo", "region", "south");
    let mut base = crash_after_the_writes(&mut left, &mut right, Base::from_store(sys_a().store), dir.path());
    assert_eq!(right.store.get(&Site::key("sfo")).unwrap().region, "south");
    // The restarted process's base still holds "west" with the write as an
    // intent; the right holds what it wrote, so the intent landed. The
    // left's next edit is its own, not a conflict with the right.
    set(&mut left.store, "site", "sfo", "region", "north");
    let report = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    assert!(report.conflicts.is_empty(), "{report}");
    assert_eq!(right.store.get(&Site::key("sfo")).unwrap().region, "north");
    assert_eq!(base.store().get(&Site::key("sfo")).unwrap().region, "north");
}

#[test]
fn a_create_the_target_lacks_after_a_crash_is_sent_again_nothing_the_creator_made_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
    let ams = Site {
        name: "ams".into(),
        region: "eu".into(),
    };
    left.store.add(ams).unwrap();
    let mut base = crash_after_the_writes(&mut left, &mut right, Base::from_store(sys_a().store), dir.path());
    // The create reached the right, whose user deletes it before the next
    // run. The base never recorded the create: whether the right never got
    // it or deleted it cannot be told, and a create that never landed must
    // not cost the left its model (a winning strategy would delete it
    // there): the create is sent again, and the deletion it overrides is in
    // the log, whatever the strategy.
    right.store.remove(key_of("site:ams"), true).unwrap();
    let log = Arc::new(Mutex::new(Vec::<ConflictRecord>::new()));
    let opts = no_limit().strategy(Strategy::RightWins).log_to(log.clone());
    let report = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
    let logged = log.lock().unwrap().clone();
    assert_eq!(logged.len(), 1, "{report}");
    assert_eq!(
        (logged[0].key.unique_id(), logged[0].resolution, logged[0].applied),
        ("ams", Resolution::Left, Some(true))
    );
    assert!(left.store.get(&Site::key("ams")).is_ok());
    assert!(right.store.get(&Site::key("ams")).is_ok(), "sent again");
    // Settled: the next run has nothing to do.
    let report = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
    assert!(
        report.conflicts.is_empty() && !report.plan_left.has_diffs() && !report.plan_right.has_diffs(),
        "{report}"
    );
}

#[test]
fn a_write_that_never_landed_is_sent_again_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
    set(&mut left.store, "site", "sfo", "region", "south");
    // The right's system takes nothing of the run, and then the process dies.
    right.fail_complete = true;
    let mut base = crash_after_the_writes(&mut left, &mut right, Base::from_store(sys_a().store), dir.path());
    right.fail_complete = false;
    right.store = sys_a().store;
    let report = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    assert!(report.conflicts.is_empty(), "{report}");
    assert_eq!(right.store.get(&Site::key("sfo")).unwrap().region, "south");
}

fn conflicting() -> (Inventory, Inventory, Base) {
    let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
    set(&mut left.store, "site", "nyc", "region", "left-edit");
    set(&mut right.store, "site", "nyc", "region", "right-edit");
    set(&mut left.store, "site", "sfo", "region", "south");
    (left, right, Base::from_store(sys_a().store))
}

#[test]
fn a_conflict_is_logged_before_the_losing_side_is_written_and_settled_after_a_panic() {
    let (mut left, mut right, mut base) = conflicting();
    // The right's hook panics after the left took the right's version.
    right.panic_on.insert(("site".into(), "sfo".into()));
    let log = Arc::new(Mutex::new(Vec::<ConflictRecord>::new()));
    let opts = no_limit().strategy(Strategy::RightWins).log_to(log.clone());
    let panicked = catch_unwind(AssertUnwindSafe(|| reconcile(&mut left, &mut right, &mut base, &opts)));
    assert!(panicked.is_err(), "the panic goes on");
    // The left's edit was overwritten: the log says so, and that it was applied.
    assert_eq!(left.store.get(&Site::key("nyc")).unwrap().region, "right-edit");
    let logged = log.lock().unwrap().clone();
    assert_eq!(logged.len(), 1);
    let c = &logged[0];
    assert_eq!(
        (c.key.unique_id(), c.resolution, c.applied),
        ("nyc", Resolution::Right, Some(true))
    );
    assert!(!c.run.is_empty());
    // The base took the key both now hold, not the one the right never got.
    assert_eq!(base.store().get(&Site::key("nyc")).unwrap().region, "right-edit");
    assert_eq!(base.store().get(&Site::key("sfo")).unwrap().region, "west");
    // The next run finishes the work and logs nothing again.
    right.panic_on.clear();
    let report = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
    assert!(report.conflicts.is_empty(), "{report}");
    assert_eq!(right.store.get(&Site::key("sfo")).unwrap().region, "south");
    assert_eq!(log.lock().unwrap().len(), 1);
}

/// An adapter that looks at the conflict log each time one of its hooks runs.
struct Probe {
    inner: Inventory,
    log: Arc<Mutex<Vec<ConflictRecord>>>,
    seen: Vec<Vec<Option<bool>>>,
}

impl Adapter for Probe {
    type Store = LocalStore;
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn store(&self) -> &LocalStore {
        &self.inner.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.inner.store
    }
    fn top_level(&self) -> Vec<&str> {
        vec!["site"]
    }
}
impl Sink for Probe {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        if matches!(change.action, diffsync::Action::Update) {
            let states = self.log.lock().unwrap().iter().map(|c| c.applied).collect();
            self.seen.push(states);
        }
        Ok(())
    }
}

#[test]
fn the_log_holds_a_conflict_before_a_hook_writes_it_and_a_failing_log_stops_the_run() {
    let (left, right, mut base) = conflicting();
    let log = Arc::new(Mutex::new(Vec::<ConflictRecord>::new()));
    let mut left = Probe {
        inner: left,
        log: log.clone(),
        seen: Vec::new(),
    };
    let mut right = right;
    let opts = no_limit().strategy(Strategy::RightWins).log_to(log.clone());
    reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
    // When the left's hook wrote nyc, the record was already there, unsettled.
    assert_eq!(left.seen, [vec![None]]);
    assert_eq!(log.lock().unwrap()[0].applied, Some(true));

    // A log that cannot take the records stops the run before any write.
    struct Broken;
    impl ConflictSink for Broken {
        fn write(&mut self, _: &[ConflictRecord]) -> Result<(), diffsync::BoxError> {
            Err("disk full".into())
        }
    }
    let (mut left, mut right, mut base) = conflicting();
    let before = (left.store.clone(), right.store.clone());
    let opts = no_limit()
        .strategy(Strategy::RightWins)
        .log_to(Arc::new(Mutex::new(Broken)));
    let err = reconcile(&mut left, &mut right, &mut base, &opts).unwrap_err();
    assert!(
        matches!(err, Error::Reconcile(diffsync::ReconcileError::ConflictLog { .. })),
        "{err}"
    );
    assert!(
        !left
            .diff_from(&MemoryAdapter::with_store("x", &["site"], before.0))
            .unwrap()
            .has_diffs()
    );
    assert!(
        !right
            .diff_from(&MemoryAdapter::with_store("x", &["site"], before.1))
            .unwrap()
            .has_diffs()
    );
}

#[test]
fn a_json_lines_log_reads_back_each_record_once_with_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conflicts.jsonl");
    let (mut left, mut right, mut base) = conflicting();
    let opts = no_limit()
        .strategy(Strategy::LeftWins)
        .log_to(Arc::new(Mutex::new(JsonLines(path.clone()))));
    reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().count(),
        2,
        "written ahead, then settled"
    );
    let records = JsonLines(path).read().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].key.unique_id(), records[0].applied), ("nyc", Some(true)));
}

#[test]
fn a_strategy_for_an_unknown_type_or_a_bad_skew_is_a_typed_error() {
    for text in [
        "newest(-3)",
        "newest(1e400)",
        "newest(nan)",
        "newest(at, 1e400)",
        "highest(3)",
    ] {
        match Strategy::parse(text) {
            Err(Error::Reconcile(diffsync::ReconcileError::Strategy { message, .. })) => {
                assert!(message.contains("number"), "{text}: {message}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let (mut left, mut right, mut base) = conflicting();
    let before = right.store.clone();
    let opts = no_limit().strategy_for("stie", Strategy::LeftWins);
    let err = reconcile(&mut left, &mut right, &mut base, &opts).unwrap_err();
    match &err {
        Error::Reconcile(diffsync::ReconcileError::Strategy {
            model_type, message, ..
        }) => {
            assert_eq!(model_type, "stie");
            assert!(message.contains("known: [device, interface, site]"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert!(
        !right
            .diff_from(&MemoryAdapter::with_store("x", &["site"], before))
            .unwrap()
            .has_diffs()
    );
}

/// A side of runtime-defined sites whose attributes are `attrs`
/// (`(name, kind, optional)`), holding `rows` (name, then the attributes' values).
fn dyn_sites(name: &str, attrs: &[(&str, &str, bool)], rows: &[serde_json::Value]) -> MemoryAdapter {
    let fields: Vec<serde_json::Value> = attrs
        .iter()
        .map(|(n, k, o)| serde_json::json!({"name": n, "kind": k, "optional": o}))
        .collect();
    let schema: diffsync::ModelSchema = serde_json::from_value(serde_json::json!({
        "name": "site", "identifiers": [{"name": "name", "kind": "string"}], "attributes": fields,
    }))
    .unwrap();
    let schema = Arc::new(schema);
    let mut store = LocalStore::new(name);
    store.register_dyn(schema.clone()).unwrap();
    for r in rows {
        store
            .add(diffsync::DynModel::from_json(&schema, r.clone()).unwrap())
            .unwrap();
    }
    MemoryAdapter::with_store(name, &["site"], store)
}

#[test]
fn an_attribute_added_since_the_base_was_saved_is_no_change_by_itself() {
    use serde_json::json;
    let old = dyn_sites(
        "base",
        &[("region", "string", false)],
        &[json!({"name": "nyc", "region": "east"})],
    );
    let saved = Base::from_store(old.store).to_bytes().unwrap();
    // The type gained an optional `owner`, which both systems hold.
    let now = [("region", "string", false), ("owner", "string", true)];
    let mut left = dyn_sites(
        "left",
        &now,
        &[json!({"name": "nyc", "region": "north", "owner": "ops"})],
    );
    let mut right = dyn_sites(
        "right",
        &now,
        &[json!({"name": "nyc", "region": "east", "owner": "ops"})],
    );
    let mut base = Base::from_bytes(&saved, left.store(), "base.json").unwrap();
    let opts = no_limit().strategy(Strategy::RightWins);
    let report = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
    assert!(report.conflicts.is_empty(), "{report}");
    let region = |a: &MemoryAdapter| a.store.get_dyn(key_of("site:nyc")).unwrap().attribute("region");
    assert_eq!(region(&right), Some(json!("north")), "the left's edit went across");
    assert_eq!(region(&left), Some(json!("north")));
}

#[test]
fn an_attribute_removed_since_is_dropped_and_a_changed_kind_is_refused_by_name() {
    use serde_json::json;
    let old = dyn_sites(
        "base",
        &[("region", "string", false), ("legacy", "integer", false)],
        &[json!({"name": "nyc", "region": "east", "legacy": 1})],
    );
    let saved = Base::from_store(old.store).to_bytes().unwrap();
    let like = dyn_sites("x", &[("region", "string", false)], &[]);
    let base = Base::from_bytes(&saved, like.store(), "base.json").unwrap();
    assert_eq!(
        base.store().get_dyn(key_of("site:nyc")).unwrap().attribute("legacy"),
        None,
        "dropped"
    );
    let like = dyn_sites("x", &[("region", "integer", false), ("legacy", "integer", false)], &[]);
    match Base::from_bytes(&saved, like.store(), "base.json").unwrap_err() {
        Error::Reconcile(diffsync::ReconcileError::BaseSchema {
            model_type,
            field,
            message,
            ..
        }) => {
            assert_eq!((model_type.as_str(), field.as_str()), ("site", "region"));
            assert!(message.contains("String") && message.contains("Integer"), "{message}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_truncated_base_file_says_to_rebuild_it() {
    let saved = Base::from_store(sys_a().store).to_bytes().unwrap();
    let err = Base::from_bytes(&saved[..saved.len() / 2], &sys_a().store, "base.json").unwrap_err();
    assert!(err.to_string().contains("rebuild it with a resync"), "{err}");
}

/// The left adds an interface under `nyc-r1`, which the right deleted.
fn created_under_deleted() -> (Inventory, Inventory, Base) {
    let (mut left, mut right) = (named(sys_a(), "left"), named(sys_a(), "right"));
    left.store
        .add_child(
            diffsync_tests::Device::key("nyc-r1"),
            Interface {
                device_name: "nyc-r1".into(),
                name: "eth9".into(),
                description: "new".into(),
                mtu: 1500,
            },
        )
        .unwrap();
    right.store.remove(key_of("device:nyc-r1"), true).unwrap();
    (left, right, Base::from_store(sys_a().store))
}

#[test]
fn a_child_created_under_a_parent_deleted_on_the_other_side_goes_as_the_strategy_says() {
    // (strategy, modification beats deletion, device kept on the left, on the right)
    let cases = [
        (Strategy::Safe, false, true, false),
        (Strategy::RightWins, false, false, false),
        (Strategy::RightWins, true, true, true),
        (Strategy::LeftWins, false, true, true),
    ];
    for (strategy, beats, on_left, on_right) in cases {
        let name = format!("{} beats={beats}", strategy.name());
        let (mut left, mut right, mut base) = created_under_deleted();
        let opts = no_limit().strategy(strategy).modification_beats_deletion(beats);
        let report = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
        let has = |i: &Inventory, t: &str, k: &str| i.store.get_dyn(key_of(&format!("{}:{}", t, k))).is_ok();
        assert_eq!(has(&left, "device", "nyc-r1"), on_left, "{name}: {report}");
        assert_eq!(has(&right, "device", "nyc-r1"), on_right, "{name}: {report}");
        // The new child goes wherever its parent is.
        assert_eq!(has(&left, "interface", "nyc-r1__eth9"), on_left, "{name}");
        assert_eq!(has(&right, "interface", "nyc-r1__eth9"), on_right, "{name}");
        // One record per key, saying what was applied.
        let keys: Vec<&str> = report.conflicts.iter().map(|c| c.key.unique_id()).collect();
        let unique: std::collections::BTreeSet<&str> = keys.iter().copied().collect();
        assert_eq!(keys.len(), unique.len(), "{name}: {report}");
        let device = report.conflicts.iter().find(|c| c.key.unique_id() == "nyc-r1").unwrap();
        let expect = match (on_left, on_right) {
            (true, false) => Resolution::Skip,
            (false, false) => Resolution::Right,
            _ => Resolution::Left,
        };
        assert_eq!(device.resolution, expect, "{name}: {report}");
        assert_eq!(device.applied, Some(expect != Resolution::Skip), "{name}");
        if !on_left {
            // A winning deletion took the new child: logged too.
            let child = report.conflicts.iter().find(|c| c.key.unique_id() == "nyc-r1__eth9");
            assert!(
                child.is_some_and(|c| c.resolution == Resolution::Right),
                "{name}: {report}"
            );
        }
        // Left unresolved, it stays as it is and is found again; else done.
        let again = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
        assert_eq!(
            again.conflicts.is_empty(),
            expect != Resolution::Skip,
            "{name}: {again}"
        );
        if expect != Resolution::Skip {
            assert!(!left.diff_from(&right).unwrap().has_diffs(), "{name}");
        }
    }
}
