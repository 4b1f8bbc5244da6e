//! Digests and fingerprints: stable item digests independent of the Rust
//! type, and store-maintained fingerprints that always equal a from-scratch
//! recomputation.

use std::collections::BTreeMap;

use diffsync::ModelKey;
use diffsync::digest::{Digest, Fingerprint, item_digest, term_of};
use diffsync::{AttrSource, DiffModel, DynModel, LocalStore, ModelSchema};
use diffsync_tests::{Interface, Node};
use diffsync_tests::{key_of, typed_key};
use proptest::prelude::*;

#[test]
fn a_runtime_model_and_a_derived_one_with_equal_values_have_equal_digests() {
    let derived = Interface {
        device_name: "r1".into(),
        name: "eth0".into(),
        description: "uplink".into(),
        mtu: 1500,
    };
    // Fields listed in another order than the struct's.
    let schema: std::sync::Arc<ModelSchema> = std::sync::Arc::new(
        serde_json::from_value(serde_json::json!({
            "name": "interface",
            "identifiers": [{"name": "device_name"}, {"name": "name"}],
            "attributes": [{"name": "mtu", "kind": "integer"}, {"name": "description"}],
        }))
        .unwrap(),
    );
    let json = serde_json::json!({"device_name": "r1", "name": "eth0", "mtu": 1500, "description": "uplink"});
    let dynamic = DynModel::from_json(&schema, json).unwrap();
    assert_eq!(item_digest(&derived), item_digest(&dynamic));
    // The digest also equals the one computed from values (a change, a row).
    let of = diffsync::digest::digest_of("interface", &derived.identifiers(), &derived.attributes());
    assert_eq!(item_digest(&derived), of);
    // Every part counts: type, identifier, attribute value and its kind.
    let mut other = derived.clone();
    other.mtu = 1501;
    assert_ne!(item_digest(&derived), item_digest(&other));
    let float = serde_json::json!({"device_name": "r1", "name": "eth0", "mtu": 1500.0, "description": "uplink"});
    let schema_f: std::sync::Arc<ModelSchema> = std::sync::Arc::new(
        serde_json::from_value(serde_json::json!({
            "name": "interface",
            "identifiers": [{"name": "device_name"}, {"name": "name"}],
            "attributes": [{"name": "mtu", "kind": "float"}, {"name": "description"}],
        }))
        .unwrap(),
    );
    assert_ne!(
        item_digest(&derived),
        item_digest(&DynModel::from_json(&schema_f, float).unwrap())
    );
}

/// One step of a random history of a store of nodes.
#[derive(Clone, Debug)]
enum Op {
    /// Add node `n` under the `parent`-th live node (or at the top).
    Add { parent: Option<usize> },
    /// Relabel the `i`-th live node.
    Update { i: usize, label: u8 },
    /// Remove the `i`-th live node, with or without its subtree.
    Remove { i: usize, subtree: bool },
    /// Move the `i`-th live node (and its subtree) under the `to`-th one.
    Move { i: usize, to: Option<usize> },
    /// Remove several live nodes in one call (a parent and its own
    /// descendants among them, say), each with or without its subtree.
    RemoveMany { picks: Vec<(usize, bool)> },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::option::weighted(0.8, any::<usize>()).prop_map(|parent| Op::Add { parent }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, label)| Op::Update { i, label }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, subtree)| Op::Remove { i, subtree }),
        1 => (any::<usize>(), proptest::option::of(any::<usize>())).prop_map(|(i, to)| Op::Move { i, to }),
        1 => proptest::collection::vec((any::<usize>(), any::<bool>()), 1..5).prop_map(|picks| Op::RemoveMany { picks }),
    ]
}

fn keys(store: &LocalStore) -> Vec<String> {
    store.get_all_dyn("node").map(|m| m.unique_id()).collect()
}

fn descendants(store: &LocalStore, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![key.to_string()];
    while let Some(k) = stack.pop() {
        stack.extend(
            store
                .children_dyn(key_of(&format!("node:{k}")), "node")
                .unwrap()
                .iter()
                .map(|c| c.unique_id().to_string()),
        );
        out.push(k);
    }
    out
}

/// Each model's term and the subtree fingerprints, computed from nothing
/// but the models and links the store shows.
fn from_scratch(store: &LocalStore) -> (Fingerprint, BTreeMap<String, Fingerprint>) {
    let term = |k: &str| {
        let m = store.get_dyn(key_of(&format!("node:{}", k))).unwrap();
        let parent = store.parent(key_of(&format!("node:{}", k))).unwrap();
        term_of(item_digest(m), parent.as_ref())
    };
    let mut root = Fingerprint::default();
    let mut subtrees = BTreeMap::new();
    for k in keys(store) {
        root.add(term(&k));
        let mut fp = Fingerprint::default();
        for d in descendants(store, &k) {
            fp.add(term(&d));
        }
        subtrees.insert(k, fp);
    }
    (root, subtrees)
}

/// The same models and links added in another order (parents first, the
/// last-added first among the roots and siblings).
fn rebuilt(store: &LocalStore) -> LocalStore {
    let mut out = LocalStore::new("rebuilt");
    let mut roots: Vec<String> = keys(store)
        .into_iter()
        .filter(|k| store.parent(key_of(&format!("node:{}", k))).unwrap().is_none())
        .collect();
    roots.reverse();
    let mut queue: std::collections::VecDeque<(String, Option<String>)> =
        roots.into_iter().map(|k| (k, None)).collect();
    while let Some((k, parent)) = queue.pop_front() {
        let m: &Node = store.get_as(key_of(&format!("node:{}", &k))).unwrap();
        match &parent {
            None => out.add(m.clone()).unwrap(),
            Some(p) => out.add_child(key_of(&format!("node:{}", p)), m.clone()).unwrap(),
        };
        let mut kids = store.children_dyn(key_of(&format!("node:{k}")), "node").unwrap();
        kids.reverse();
        queue.extend(kids.iter().map(|c| (c.unique_id().to_string(), Some(k.clone()))));
    }
    out
}

fn pick(store: &LocalStore, i: usize) -> Option<String> {
    let ks = keys(store);
    (!ks.is_empty()).then(|| ks[i % ks.len()].clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn maintained_fingerprints_equal_a_recomputation_after_any_history(ops in proptest::collection::vec(op(), 1..80)) {
        let mut store = LocalStore::new("s");
        let mut next = 0;
        for op in ops {
            match op {
                Op::Add { parent } => {
                    let node = Node::new(format!("n{next}"), "x");
                    next += 1;
                    match parent.and_then(|p| pick(&store, p)) {
                        Some(p) => store.add_child(key_of(&format!("node:{}", p)), node).unwrap(),
                        None => store.add(node).unwrap(),
                    };
                }
                Op::Update { i, label } => {
                    if let Some(k) = pick(&store, i) {
                        let v = [("label".into(), label.to_string().into())].into_iter().collect();
                        store.update_attributes(key_of(&format!("node:{}", k)), AttrSource::Values(&v)).unwrap();
                    }
                }
                Op::Remove { i, subtree } => {
                    if let Some(k) = pick(&store, i) {
                        store.remove(key_of(&format!("node:{}", k)), subtree).unwrap();
                    }
                }
                Op::RemoveMany { picks } => {
                    let ks: Vec<(String, bool)> =
                        picks.iter().filter_map(|&(i, sub)| pick(&store, i).map(|k| (k, sub))).collect();
                    let items: Vec<(ModelKey, bool)> =
                        ks.iter().map(|(k, sub)| (key_of(&format!("node:{k}")), *sub)).collect();
                    // A key listed twice, or under a subtree removed first, is missing by then.
                    let _ = store.remove_many(&items);
                }
                Op::Move { i, to } => {
                    // A move is a removal and a re-add of the subtree elsewhere.
                    let Some(k) = pick(&store, i) else { continue };
                    let moving = descendants(&store, &k);
                    let to = to.and_then(|t| pick(&store, t)).filter(|t| !moving.contains(t));
                    let mut copies: Vec<(Node, Option<String>)> = Vec::new();
                    for d in &moving {
                        let parent = store.parent(key_of(&format!("node:{}", d))).unwrap().map(|p| p.unique_id().to_string());
                        let parent = if d == &k { to.clone() } else { parent };
                        copies.push((store.get(&typed_key::<Node>(&format!("node:{}", d))).unwrap().clone(), parent));
                    }
                    store.remove(key_of(&format!("node:{}", k)), true).unwrap();
                    for (m, parent) in copies {
                        match parent {
                            Some(p) => store.add_child(key_of(&format!("node:{}", p)), m).unwrap(),
                            None => store.add(m).unwrap(),
                        };
                    }
                }
            }
            let (root, subtrees) = from_scratch(&store);
            prop_assert_eq!(store.fingerprint(), root);
            prop_assert_eq!(store.type_fingerprint("node"), root);
            for (k, fp) in &subtrees {
                prop_assert_eq!(store.subtree_fingerprint(key_of(&format!("node:{k}"))), Some(*fp), "{}", k);
            }
        }
        let (_, subtrees) = from_scratch(&store);
        let mut other = rebuilt(&store);
        prop_assert_eq!(other.fingerprint(), store.fingerprint());
        for (k, fp) in &subtrees {
            prop_assert_eq!(other.subtree_fingerprint(key_of(&format!("node:{k}"))), Some(*fp));
        }
        // One changed label anywhere changes the root.
        if let Some(k) = pick(&store, 7) {
            let v = [("label".into(), "changed".into())].into_iter().collect();
            other.update_attributes(key_of(&format!("node:{}", k)), AttrSource::Values(&v)).unwrap();
            prop_assert_ne!(other.fingerprint(), store.fingerprint());
        }
    }
}

#[test]
fn the_item_digest_is_xxh3_128_of_the_documented_encoding() {
    // Built by hand from the module docs: what an SQL query or a script
    // elsewhere would compute.
    fn s(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    let mut bytes = Vec::new();
    s(&mut bytes, "interface");
    bytes.extend_from_slice(&2u64.to_le_bytes());
    s(&mut bytes, "device_name");
    bytes.push(0x05);
    s(&mut bytes, "r1");
    s(&mut bytes, "name");
    bytes.push(0x05);
    s(&mut bytes, "eth0");
    bytes.extend_from_slice(&2u64.to_le_bytes());
    s(&mut bytes, "description");
    bytes.push(0x05);
    s(&mut bytes, "uplink");
    s(&mut bytes, "mtu");
    bytes.push(0x03);
    bytes.extend_from_slice(&1500i128.to_le_bytes());
    let m = Interface {
        device_name: "r1".into(),
        name: "eth0".into(),
        description: "uplink".into(),
        mtu: 1500,
    };
    assert_eq!(item_digest(&m), Digest(xxhash_rust::xxh3::xxh3_128(&bytes)));
}
