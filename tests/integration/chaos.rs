//! Chaos: random inventories (with a chain of a self-referencing type up to
//! 1,000 deep), random hook outcomes (ok, recoverable, soft,
//! fatal, panic), with and without CONTINUE_ON_FAILURE, through the
//! per-change hooks and through a transactional batch hook. After every
//! sync the destination store equals the system, the report accounts for
//! every element once, and the re-diff is exactly the unfinished work.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use diffsync::{
    Action, Adapter, AdapterExt, Batch, Change, DiffFlags, Error, HookError, LocalStore, ModelFlags, Options, Sink,
};
use diffsync_tests::{Device, Interface, Node, Site};
use proptest::prelude::*;
use serde_json::Value;

/// What the system holds: (type, key) → (attributes, parent key).
type System = BTreeMap<(String, String), (Value, Option<String>)>;

/// One inventory: sites → devices → interfaces. Some devices have more
/// than 32 interfaces (the differ's long-list path).
#[derive(Clone, Debug)]
struct Shape {
    /// (site id, region, devices)
    sites: Vec<(u8, u8, Vec<DevShape>)>,
    /// Length of a chain of nodes, each the child of the one before.
    chain: u16,
}

/// (device id, role, interface count)
type DevShape = (u8, u8, u8);

fn shape() -> impl Strategy<Value = Shape> {
    // (site id, region, devices: (device id, role, interface count))
    let dev = (0..4u8, 0..2u8, prop_oneof![0..5u8, 33..40u8]);
    let site = (0..4u8, 0..2u8, prop::collection::vec(dev, 0..3));
    let chain = prop_oneof![Just(0u16), 995..=1000u16];
    (prop::collection::vec(site, 0..4), chain).prop_map(|(sites, chain)| Shape { sites, chain })
}

/// Builds a store from a shape; `variant` perturbs descriptions.
fn build(name: &str, shape: &Shape, variant: u8) -> LocalStore {
    let mut store = LocalStore::new(name);
    store.register::<Site>().unwrap();
    store.register::<Device>().unwrap();
    store.register::<Interface>().unwrap();
    store.register::<Node>().unwrap();
    let mut parent = None;
    for i in 0..shape.chain {
        let label = if (i + u16::from(variant)).is_multiple_of(97) {
            "changed"
        } else {
            "x"
        };
        let node = Node::new(format!("n{i}"), label);
        parent = Some(match parent {
            None => store.add(node).unwrap(),
            Some(p) => store.add_under(p, node).unwrap(),
        });
    }
    for (s, region, devs) in &shape.sites {
        let site = format!("s{s}");
        let Ok(h) = store.add(Site {
            name: site.clone(),
            region: ["east", "west"][*region as usize].into(),
        }) else {
            continue; // a duplicate site id with another region
        };
        for (d, role, n) in devs {
            let dev = format!("{site}-d{d}");
            let Ok(dh) = store.add_under(
                h,
                Device {
                    name: dev.clone(),
                    role: ["router", "edge"][*role as usize].into(),
                    serial: None,
                    db_pk: 0,
                    flags: ModelFlags::empty(),
                },
            ) else {
                continue;
            };
            for i in 0..*n {
                let intf = Interface {
                    device_name: dev.clone(),
                    name: format!("eth{i}"),
                    description: if (i + variant).is_multiple_of(7) {
                        "changed".into()
                    } else {
                        "x".into()
                    },
                    mtu: 1500,
                };
                store.add_under(dh, intf).unwrap();
            }
        }
    }
    store
}

fn snapshot(store: &LocalStore) -> System {
    let mut out = System::new();
    for ty in ["site", "device", "interface", "node"] {
        for m in store.get_all_dyn(ty) {
            let key = m.unique_id();
            let parent = store.parent(m.model_key()).unwrap().map(|p| p.unique_id().to_string());
            out.insert(
                (ty.to_string(), key),
                (serde_json::to_value(m.attributes()).unwrap(), parent),
            );
        }
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Fate {
    Ok,
    Recoverable,
    Soft,
    Fatal,
    Panic,
}

/// The system behind the store, with hooks whose outcome depends on the key.
struct Chaotic {
    store: LocalStore,
    system: System,
    seed: u64,
    transactional: bool,
}

impl Chaotic {
    fn fate(&self, key: &str) -> Fate {
        let h = key
            .bytes()
            .fold(self.seed, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        match h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58 {
            0..=3 => Fate::Recoverable,
            4..=6 => Fate::Soft,
            7 => Fate::Fatal,
            8 => Fate::Panic,
            _ => Fate::Ok,
        }
    }
}

/// What the system does for a change, as its fate says (into a copy, for a batch).
fn write(fate: Fate, system: &mut System, change: &Change<'_>) -> Result<(), HookError> {
    match fate {
        Fate::Ok => {}
        Fate::Recoverable => return Err("refused".into()),
        Fate::Soft => return Err(HookError::soft("busy")),
        Fate::Fatal => return Err(HookError::fatal("down")),
        Fate::Panic => panic!("hook bug at {}", change.key()),
    }
    let id = (change.model_type().to_string(), change.key().to_string());
    match change.action {
        Action::Create => {
            let attrs = serde_json::to_value(change.new_model().unwrap().attributes()).unwrap();
            system.insert(id, (attrs, change.parent().map(|p| p.unique_id().to_string())));
        }
        Action::Update => {
            let (attrs, _) = system.get_mut(&id).unwrap();
            for (k, v) in change.attrs() {
                attrs[k.as_ref()] = v.clone();
            }
        }
        Action::Delete => {
            system.remove(&id);
            // Children the system still holds lose their parent.
            for (_, parent) in system.values_mut() {
                if parent.as_deref() == Some(change.key()) {
                    *parent = None;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

impl Adapter for Chaotic {
    type Store = LocalStore;
    fn name(&self) -> &str {
        "chaotic"
    }
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }
    fn top_level(&self) -> Vec<&str> {
        vec!["site", "node"]
    }
}
impl Sink for Chaotic {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        write(self.fate(change.key()), &mut self.system, change)
    }
    fn apply_batch(&mut self, batch: &mut Batch<'_, '_>) -> Result<(), HookError> {
        if !self.transactional {
            batch.apply_each(self);
            return Ok(());
        }
        // A transaction: writes go to a copy, committed at the end; a
        // failure that stops the sync rolls everything back.
        let mut tx = self.system.clone();
        for i in 0..batch.len() {
            if !batch.should_apply(i) {
                continue;
            }
            let change = &batch.changes()[i];
            match write(self.fate(change.key()), &mut tx, change) {
                Ok(()) => batch.stage(i),
                Err(e) => {
                    // A savepoint per change: the failed one's writes are not in `tx`.
                    batch.set_outcome(i, Err(e));
                    if batch.is_aborted() {
                        return Err("rolled back".into());
                    }
                }
            }
        }
        self.system = tx;
        batch.commit_staged();
        Ok(())
    }
}

fn changes(diff: &diffsync::Diff) -> BTreeSet<(String, String, Action)> {
    diff.iter()
        .filter(|(e, _)| e.action != Action::NoChange)
        .map(|(e, _)| (e.model_type().to_string(), e.unique_id().to_string(), e.action))
        .collect()
}

fn run(src: &Shape, dst: &Shape, seed: u64, continue_on_failure: bool, transactional: bool) {
    let source = diffsync::MemoryAdapter::with_store("src", &["site", "node"], build("src", src, 0));
    let store = build("dst", dst, 1);
    let mut target = Chaotic {
        system: snapshot(&store),
        store,
        seed,
        transactional,
    };
    // Several rounds: each starts from what the previous one left.
    for _ in 0..3 {
        let diff = target.diff_from(&source).unwrap();
        let flags = if continue_on_failure {
            DiffFlags::CONTINUE_ON_FAILURE
        } else {
            DiffFlags::empty()
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            target.sync_diff_from(
                &source,
                &diff,
                &mut Options::new().flags(flags).allow_empty_source(true),
            )
        }));
        // Whatever happened, the store is what the system holds.
        assert_eq!(snapshot(&target.store), target.system, "store == system");
        let report = match result {
            Ok(Ok(report)) => report,
            Ok(Err(Error::Sync(diffsync::SyncError::Aborted { report, .. }))) => *report,
            Ok(Err(e)) => panic!("unexpected error: {e}"),
            Err(_) => continue, // a hook panicked: no report, but the store is right
        };
        // The report accounts for every element once, in the diff's order
        // up to natural-order deletes (none here).
        let reported: Vec<_> = report
            .elements
            .iter()
            .map(|e| (e.model_type(), e.key.unique_id()))
            .collect();
        let elements: Vec<_> = diff.iter().map(|(e, _)| (e.model_type(), e.unique_id())).collect();
        assert_eq!(reported, elements);
        // The re-diff is exactly the unfinished work.
        let unfinished: BTreeSet<_> = report
            .unfinished()
            .map(|e| (e.model_type().to_string(), e.key.unique_id().to_string(), e.action))
            .collect();
        assert_eq!(changes(&target.diff_from(&source).unwrap()), unfinished);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn per_change_hooks_keep_the_store_equal_to_the_system(
        src in shape(), dst in shape(), seed in any::<u64>(), cont in any::<bool>(),
    ) {
        run(&src, &dst, seed, cont, false);
    }

    #[test]
    fn a_transactional_batch_keeps_the_store_equal_to_the_system(
        src in shape(), dst in shape(), seed in any::<u64>(), cont in any::<bool>(),
    ) {
        run(&src, &dst, seed, cont, true);
    }
}
