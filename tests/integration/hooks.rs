//! Typed hooks: a `Hooks` table hands each change to the hook of its model
//! type as a `Write` of the user's own struct.

use diffsync::{
    Adapter, AdapterExt, Chain, Change, Diff, DiffModel, DynHooks, DynModel, HookError, Hooks, LocalStore, ModelSchema,
    Options, Outcome, Sink, Write,
};
use diffsync_tests::{Device, DeviceField, Interface, InterfaceField, Site, key_of, sys_a, sys_b};

/// The worked example's system A, writing through typed hooks into a log.
struct Typed {
    store: LocalStore,
    log: Vec<String>,
    /// The database id a create hands back.
    next_pk: i64,
}

impl Typed {
    fn from(inventory: diffsync_tests::Inventory) -> Typed {
        Typed {
            store: inventory.store,
            log: Vec::new(),
            next_pk: 100,
        }
    }

    fn site(&mut self, write: Write<'_, Site>) -> Result<(), HookError> {
        let line = match write {
            Write::Create { new, parent } => format!("create site {} (parent {parent:?})", new.name),
            Write::Update { old, new, changed } => {
                format!("update site {}: {changed:?} {} -> {}", new.name, old.region, new.region)
            }
            Write::Delete { old, subtree } => format!("delete site {} subtree={subtree}", old.name),
        };
        self.log.push(line);
        Ok(())
    }

    fn device(&mut self, write: Write<'_, Device>) -> Result<(), HookError> {
        let line = match write {
            Write::Create { new, parent } => {
                new.db_pk = self.next_pk;
                self.next_pk += 1;
                format!(
                    "create device {} under {}",
                    new.name,
                    parent.expect("a device has a site")
                )
            }
            Write::Update { old, new, changed } => {
                let what: Vec<String> = changed
                    .iter()
                    .map(|f| match f {
                        DeviceField::Role => format!("role {} -> {}", old.role, new.role),
                        DeviceField::Serial => format!("serial {:?} -> {:?}", old.serial, new.serial),
                    })
                    .collect();
                format!("update device {}: {}", new.name, what.join(", "))
            }
            Write::Delete { old, subtree } => format!("delete device {} subtree={subtree}", old.name),
        };
        self.log.push(line);
        Ok(())
    }

    fn interface(&mut self, write: Write<'_, Interface>) -> Result<(), HookError> {
        let line = match write {
            Write::Create { new, parent } => format!(
                "create interface {} {} under {}",
                new.device_name,
                new.name,
                parent.expect("an interface has a device")
            ),
            Write::Update { new, changed, .. } => format!(
                "update interface {} {}: {:?}",
                new.device_name,
                new.name,
                changed.iter().map(|f| f.name()).collect::<Vec<_>>()
            ),
            Write::Delete { old, subtree } => {
                format!("delete interface {} {} subtree={subtree}", old.device_name, old.name)
            }
        };
        self.log.push(line);
        Ok(())
    }
}

impl Adapter for Typed {
    type Store = LocalStore;
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }
}
impl Sink for Typed {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        Hooks::new()
            .on(Self::site)
            .on(Self::device)
            .on(Self::interface)
            .apply(self, change)
    }
}

const WORKED_EXAMPLE: [&str; 10] = [
    "update device nyc-r1: role router -> edge",
    "update interface nyc-r1 eth0: [\"description\"]",
    "create interface nyc-r1 eth2 under device:nyc-r1",
    "delete interface nyc-r1 eth1 subtree=false",
    "create site lax (parent None)",
    "create device lax-r1 under site:lax",
    "create interface lax-r1 eth0 under device:lax-r1",
    "delete site sfo subtree=false",
    "delete device sfo-r1 subtree=false",
    "delete interface sfo-r1 eth0 subtree=false",
];

#[test]
fn typed_hooks_get_old_new_changed_fields_and_parent_keys() {
    let mut target = Typed::from(sys_a());
    let report = target.sync_from(&sys_b()).unwrap();
    assert!(report.is_success(), "{report}");
    assert_eq!(target.log, WORKED_EXAMPLE);
    // What a create hook set on the new model is what the store keeps.
    let created = target.store.get(&Device::key("lax-r1")).unwrap();
    assert!(created.db_pk >= 100, "{created:?}");
    assert!(!target.diff_from(&sys_b()).unwrap().has_diffs());
}

#[test]
fn typed_hooks_work_the_same_for_a_diff_read_from_json() {
    let (target, source) = (Typed::from(sys_a()), sys_b());
    let json = serde_json::to_string(&target.diff_from(&source).unwrap()).unwrap();
    let diff: Diff = serde_json::from_str(&json).unwrap();
    let mut from_json = Typed::from(sys_a());
    let report = from_json.sync_diff(&diff, &mut Options::new()).unwrap();
    assert!(report.is_success(), "{report}");
    let mut direct = Typed::from(sys_a());
    direct.sync_from(&source).unwrap();
    assert_eq!(from_json.log, direct.log);
    assert!(!from_json.diff_from(&source).unwrap().has_diffs());
}

/// A `Typed` whose changes go through another hook table: `apply`.
struct With<F>(Typed, F);

impl<F: FnMut(&mut Typed, &mut Change<'_>) -> Result<(), HookError>> Adapter for With<F> {
    type Store = LocalStore;
    fn store(&self) -> &LocalStore {
        &self.0.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.0.store
    }
}
impl<F: FnMut(&mut Typed, &mut Change<'_>) -> Result<(), HookError>> Sink for With<F> {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        (self.1)(&mut self.0, change)
    }
}

#[test]
fn a_type_without_a_hook_fails_its_changes_and_the_store_keeps_the_old_model() {
    // Registers sites only.
    let mut target = With(Typed::from(sys_a()), |t: &mut Typed, c: &mut Change<'_>| {
        Hooks::new().on(Typed::site).apply(t, c)
    });
    let mut opts = Options::new().flags(diffsync::DiffFlags::CONTINUE_ON_FAILURE);
    let report = target.sync_from_with(&sys_b(), &mut opts).unwrap();
    let failed: Vec<String> = report
        .failures()
        .map(|e| {
            format!(
                "{} {}: {}",
                e.model_type(),
                e.key.unique_id(),
                e.outcome.message().unwrap_or_default()
            )
        })
        .collect();
    assert!(
        failed.contains(&"device nyc-r1: adapter `sys-a` has no hook for model type `device`".to_string()),
        "{failed:#?}"
    );
    // The site create went through its hook; the device update did not reach the store.
    assert!(target.0.log.iter().any(|l| l == "create site lax (parent None)"));
    assert_eq!(target.0.store.get(&Device::key("nyc-r1")).unwrap().role, "router");
}

#[test]
fn a_hook_for_another_rust_type_than_the_store_holds_fails_with_both_names() {
    // The target holds runtime models; a hook typed for the derived `Site`
    // cannot read them.
    let schema: ModelSchema = serde_json::from_value(serde_json::json!({
        "name": "site", "identifiers": [{"name": "name", "kind": "string"}],
        "attributes": [{"name": "region", "kind": "string"}]
    }))
    .unwrap();
    let schema = std::sync::Arc::new(schema);
    let site =
        |region: &str| DynModel::from_json(&schema, serde_json::json!({"name": "nyc", "region": region})).unwrap();
    let (mut source, mut target) = (LocalStore::new("source"), LocalStore::new("target"));
    source.add(site("west")).unwrap();
    target.add(site("east")).unwrap();
    let source = diffsync::MemoryAdapter::with_store("source", &["site"], source);
    let mut target = Typed {
        store: target,
        log: Vec::new(),
        next_pk: 0,
    };
    let err = Chain(&target.sync_from(&source).unwrap_err()).to_string();
    assert!(err.contains("is not stored as a `diffsync_tests::Site`"), "{err}");
    assert!(target.log.is_empty());

    // Registered by name, the runtime model gets its own typed hook.
    struct Runtime(LocalStore, Vec<String>);
    impl Adapter for Runtime {
        type Store = LocalStore;
        fn store(&self) -> &LocalStore {
            &self.0
        }
        fn store_mut(&mut self) -> &mut LocalStore {
            &mut self.0
        }
    }
    impl Sink for Runtime {
        fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
            Hooks::new()
                .on_dyn("site", |a: &mut Self, w| {
                    if let Write::Update { old, new, changed } = w {
                        a.1.push(format!(
                            "{changed:?}: {} -> {}",
                            old.attribute("region").unwrap(),
                            new.attribute("region").unwrap()
                        ));
                    }
                    Ok(())
                })
                .apply(self, change)
        }
    }
    let mut runtime = Runtime(target.store, Vec::new());
    runtime.sync_from(&source).unwrap();
    assert_eq!(runtime.1, ["[\"region\"]: \"east\" -> \"west\""]);
}

#[test]
fn the_derive_names_each_compared_field() {
    assert_eq!(Device::field("role"), Some(DeviceField::Role));
    assert_eq!(Device::field("db_pk"), None, "local-only fields are not compared");
    assert_eq!(Device::field("name"), None, "identifiers do not change");
    assert_eq!(InterfaceField::Mtu.name(), "mtu");
    assert_eq!(DynModel::field("anything"), Some("anything".to_string()));
}

#[test]
fn an_empty_target_with_default_top_level_types_is_filled() {
    struct Plain(LocalStore);
    impl Adapter for Plain {
        type Store = LocalStore;
        fn store(&self) -> &LocalStore {
            &self.0
        }
        fn store_mut(&mut self) -> &mut LocalStore {
            &mut self.0
        }
    }
    impl Sink for Plain {}
    let source = Plain(sys_b().store);
    let mut target = Plain(LocalStore::new("empty"));
    assert!(target.top_level().is_empty());
    let report = target.sync_from(&source).unwrap();
    assert_eq!(report.totals().applied, source.0.count_all());
    assert!(!target.diff_from(&source).unwrap().has_diffs());
    assert!(report.elements.iter().all(|e| e.outcome == Outcome::Applied));
}

#[test]
fn a_typed_hook_that_panics_leaves_the_store_with_what_applied_before_it() {
    // Panics when asked to create site `lax`.
    let mut target = With(Typed::from(sys_a()), |t: &mut Typed, c: &mut Change<'_>| {
        Hooks::new()
            .on(|t: &mut Typed, w: Write<'_, Site>| {
                if matches!(&w, Write::Create { new, .. } if new.name == "lax") {
                    panic!("hook bug");
                }
                t.site(w)
            })
            .on(Typed::device)
            .on(Typed::interface)
            .apply(t, c)
    });
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.sync_from(&sys_b())));
    assert!(caught.is_err(), "the panic goes on to the caller");
    // The four changes before lax's create reached the system and the store; nothing after.
    assert_eq!(target.0.log, WORKED_EXAMPLE[..4]);
    let store = &target.0.store;
    assert_eq!(store.get(&Device::key("nyc-r1")).unwrap().role, "edge");
    assert!(store.get_opt(&Interface::key("nyc-r1", "eth2")).unwrap().is_some());
    assert!(store.get_opt(&Interface::key("nyc-r1", "eth1")).unwrap().is_none());
    assert!(store.get_opt(&Site::key("lax")).unwrap().is_none());
    assert!(store.get_opt(&Site::key("sfo")).unwrap().is_some());
}

#[test]
fn hooks_for_runtime_types_are_built_in_a_loop_over_a_config() {
    // Types known only at run time, as a config declares them.
    let config = [("site", "region"), ("rack", "row"), ("vendor", "country")];
    let schemas: Vec<std::sync::Arc<ModelSchema>> = config
        .iter()
        .map(|(name, attr)| {
            let schema: ModelSchema = serde_json::from_value(serde_json::json!({
                "name": name, "identifiers": [{"name": "name", "kind": "string"}],
                "attributes": [{"name": attr, "kind": "string"}]
            }))
            .unwrap();
            std::sync::Arc::new(schema)
        })
        .collect();
    let model = |i: usize, name: &str, value: &str| {
        let (_, attr) = config[i];
        DynModel::from_json(&schemas[i], serde_json::json!({"name": name, attr: value})).unwrap()
    };
    struct Generic {
        store: LocalStore,
        hooks: DynHooks<Generic>,
        log: Vec<String>,
    }
    impl Adapter for Generic {
        type Store = LocalStore;
        fn store(&self) -> &LocalStore {
            &self.store
        }
        fn store_mut(&mut self) -> &mut LocalStore {
            &mut self.store
        }
    }
    impl Sink for Generic {
        fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
            let hooks = self.hooks.clone();
            Hooks::new().on_table(&hooks).apply(self, change)
        }
    }
    // One hook per configured type but the last, made in a loop.
    let mut hooks = DynHooks::new();
    for (name, attr) in &config[..2] {
        let (name, attr) = (name.to_string(), attr.to_string());
        hooks.insert(name.clone(), move |a: &mut Generic, w: Write<'_, DynModel>| {
            let line = match w {
                Write::Create { new, .. } => {
                    format!("{name}: insert {}", new.attribute(&attr).unwrap().as_str().unwrap())
                }
                Write::Update { new, .. } => format!("{name}: set {}", new.attribute(&attr).unwrap().as_str().unwrap()),
                Write::Delete { old, .. } => format!("{name}: delete {}", old.unique_id()),
            };
            a.log.push(line);
            Ok(())
        });
    }
    assert_eq!(hooks.len(), 2);
    let mut source = LocalStore::new("source");
    let mut target = Generic {
        store: LocalStore::new("target"),
        hooks,
        log: Vec::new(),
    };
    for schema in &schemas {
        source.register_dyn(schema.clone()).unwrap();
        target.store.register_dyn(schema.clone()).unwrap();
    }
    source.add(model(0, "nyc", "east")).unwrap();
    source.add(model(1, "r1", "a")).unwrap();
    source.add(model(2, "acme", "us")).unwrap();
    target.store.add(model(0, "nyc", "west")).unwrap();
    target.store.add(model(1, "r9", "z")).unwrap();
    let source = diffsync::MemoryAdapter::with_store("source", &["site", "rack", "vendor"], source);
    let mut opts = Options::new().flags(diffsync::DiffFlags::CONTINUE_ON_FAILURE);
    let report = target.sync_from_with(&source, &mut opts).unwrap();
    let mut log = target.log.clone();
    log.sort();
    assert_eq!(log, ["rack: delete r9", "rack: insert a", "site: set east"]);
    // The type without a hook fails its change, by name; the others applied.
    let failed: Vec<String> = report
        .failures()
        .map(|e| format!("{}: {}", e.key, e.outcome.message().unwrap_or_default()))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("no hook for model type `vendor`"), "{failed:?}");
    assert!(!target.store.contains(key_of("vendor:acme")));
    assert!(target.store.contains(key_of("rack:r1")));
}

/// A model that counts its copies (its `Clone` is written by hand).
#[derive(DiffModel, Debug, PartialEq)]
#[diffsync(name = "counted")]
struct Counted {
    #[diffsync(id)]
    name: String,
    value: u32,
}

static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Clone for Counted {
    fn clone(&self) -> Self {
        COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Counted {
            name: self.name.clone(),
            value: self.value,
        }
    }
}

/// What writes to the system: the hooks' own part of the adapter.
#[derive(Default)]
struct Writer {
    log: Vec<String>,
}

impl Writer {
    fn counted(&mut self, write: Write<'_, Counted>) -> Result<(), HookError> {
        self.log.push(match write {
            Write::Create { new, .. } => format!("create {}={}", new.name, new.value),
            Write::Update { old, new, .. } => format!("update {}: {} -> {}", new.name, old.value, new.value),
            Write::Delete { old, .. } => format!("delete {}={}", old.name, old.value),
        });
        Ok(())
    }
}

/// An adapter whose hooks write through `writer`, lent beside the store
/// (`parts`) or through the whole adapter.
struct Split {
    store: LocalStore,
    writer: Writer,
    parts: bool,
}

impl Adapter for Split {
    type Store = LocalStore;
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }
}

impl Sink for Split {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        if self.parts {
            return Hooks::new()
                .on(Writer::counted)
                .apply_parts(&self.store, &mut self.writer, change);
        }
        Hooks::new()
            .on(|a: &mut Split, w| a.writer.counted(w))
            .apply(self, change)
    }
}

fn counted_system(name: &str, values: &[(&str, u32)], parts: bool) -> Split {
    let mut store = LocalStore::new(name);
    for (n, v) in values {
        store
            .add(Counted {
                name: n.to_string(),
                value: *v,
            })
            .unwrap();
    }
    Split {
        store,
        writer: Writer::default(),
        parts,
    }
}

/// The copies one sync makes (creating c, updating a, deleting b), and what its hooks wrote.
fn copies_of_one_sync(parts: bool) -> (usize, Vec<String>) {
    let source = counted_system("src", &[("a", 2), ("c", 3)], parts);
    let mut target = counted_system("dst", &[("a", 1), ("b", 9)], parts);
    let before = COPIES.load(std::sync::atomic::Ordering::Relaxed);
    let report = target.sync_from(&source).unwrap();
    let copies = COPIES.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(report.is_success(), "{report:?}");
    assert!(!target.diff_from(&source).unwrap().has_diffs());
    (copies, target.writer.log)
}

#[test]
fn hooks_lent_beside_the_store_borrow_the_old_model_instead_of_copying_it() {
    // The counter is global: the two syncs run one after the other in this test only.
    let (copied, log) = copies_of_one_sync(false);
    let (borrowed, same_log) = copies_of_one_sync(true);
    assert_eq!(same_log, log);
    assert_eq!(log, ["update a: 1 -> 2", "create c=3", "delete b=9"]);
    // The whole adapter lent: the update's and the delete's old models are
    // copies; lent beside the store, they are borrowed.
    assert_eq!(copied - borrowed, 2, "copied {copied}, borrowed {borrowed}");
}

#[test]
fn parts_with_no_hook_for_a_type_fail_its_change_naming_the_adapter() {
    struct Unhooked(Split);
    impl Adapter for Unhooked {
        type Store = LocalStore;
        fn store(&self) -> &LocalStore {
            &self.0.store
        }
        fn store_mut(&mut self) -> &mut LocalStore {
            &mut self.0.store
        }
    }
    impl Sink for Unhooked {
        fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
            Hooks::new().apply_parts(&self.0.store, &mut self.0.writer, change)
        }
    }
    let source = counted_system("src", &[("a", 2)], true);
    let mut target = Unhooked(counted_system("dst", &[("a", 1)], true));
    let mut opts = Options::new().flags(diffsync::DiffFlags::CONTINUE_ON_FAILURE);
    let report = target.sync_from_with(&source, &mut opts).unwrap();
    let failed: Vec<String> = report
        .failures()
        .map(|e| format!("{}: {}", e.key, e.outcome.message().unwrap_or_default()))
        .collect();
    assert_eq!(
        failed,
        ["counted:a: adapter `dst` has no hook for model type `counted`"]
    );
    assert_eq!(
        target.0.store.get(&Counted::key("a")).unwrap().value,
        1,
        "the store keeps the old model"
    );
}
