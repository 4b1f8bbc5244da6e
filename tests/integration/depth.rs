//! Depth: a 100,000-level chain of a self-referencing type diffs, renders,
//! round-trips through JSON, syncs and is removed without recursion on the
//! call stack (the test threads have 2 MiB stacks).

use diffsync::{Action, AdapterExt, Diff, MemoryAdapter, ModelFlags, Options, Outcome};
use diffsync_tests::Node;
use diffsync_tests::key_of;

const DEPTH: usize = 100_000;

/// A chain n0 → n1 → … of `len` nodes; the last one's label is `leaf`.
fn chain(name: &str, len: usize, label: &str, leaf: &str) -> MemoryAdapter {
    chain_with(name, len, label, leaf, ModelFlags::empty())
}

/// A chain whose root has these flags.
fn chain_with(name: &str, len: usize, label: &str, leaf: &str, root: ModelFlags) -> MemoryAdapter {
    let mut a = empty(name);
    let mut parent = None;
    for i in 0..len {
        let node = Node {
            name: format!("n{i}"),
            label: if i + 1 == len { leaf } else { label }.into(),
            flags: if i == 0 { root } else { ModelFlags::empty() },
        };
        let h = match parent {
            None => a.store.add(node),
            Some(p) => a.store.add_under(p, node),
        };
        parent = Some(h.unwrap());
    }
    a
}

fn empty(name: &str) -> MemoryAdapter {
    let mut a = MemoryAdapter::new(name, &["node"]);
    a.store.register::<Node>().unwrap();
    a
}

#[test]
fn a_chain_100_000_deep_diffs_renders_round_trips_and_syncs() {
    let source = chain("src", DEPTH, "x", "x");
    let mut target = empty("dst");
    let diff = target.diff_from(&source).unwrap();
    assert_eq!(diff.summary().create, DEPTH);
    assert_eq!(
        diff.iter().last().map(|(e, d)| (e.unique_id(), d)),
        Some(("n99999", DEPTH - 1))
    );
    // Levels past 16 keep the 16th's indentation and show their depth.
    let text = diff.to_string();
    assert_eq!(text.lines().count(), 2 * DEPTH);
    let lines: Vec<&str> = text.lines().take(4).collect();
    assert_eq!(
        lines,
        [
            "node",
            "  node: n0 MISSING in dst",
            "    node",
            "      node: n1 MISSING in dst"
        ]
    );
    let pad = " ".repeat(66);
    assert!(
        text.ends_with(&format!("{pad}[99999] node: n99999 MISSING in dst")),
        "{}",
        &text[text.len() - 200..]
    );

    let json = serde_json::to_string(&diff).unwrap();
    let back: Diff = serde_json::from_str(&json).unwrap();
    assert!(back == diff);
    let copy = back.clone();
    drop(back);

    let report = target.sync_diff(&copy, &mut Default::default()).unwrap();
    assert_eq!(report.totals().applied, DEPTH);
    assert!(!target.diff_from(&source).unwrap().has_diffs());
    assert_eq!(
        target.store.parent(key_of("node:n99999")).unwrap(),
        Some(key_of("node:n99998"))
    );

    // One change at the bottom: every ancestor is kept as a no-change parent.
    let changed = chain("src", DEPTH, "x", "y");
    let diff = target.diff_from(&changed).unwrap();
    let s = diff.summary();
    assert_eq!((s.update, s.no_change), (1, DEPTH - 1));
    assert!(diff.to_string().ends_with("label    src(y)    dst(x)"));
    let updates = diff.only_actions(&[Action::Update]);
    assert!(updates == diff);
    assert_eq!(diff.reversed().reversed().summary(), s);
    target.sync_from(&changed).unwrap();
    assert!(!target.diff_from(&changed).unwrap().has_diffs());

    // Delete all: children first is not required, each delete removes its own model.
    let all = &mut Options::new().allow_empty_source(true);
    let report = target.sync_from_with(&empty("src"), all).unwrap();
    assert_eq!(report.totals().applied, DEPTH);
    assert_eq!(target.store.count("node"), 0);
}

#[test]
fn a_skip_children_on_delete_root_removes_a_100_000_deep_subtree() {
    let mut target = chain_with("dst", DEPTH, "x", "x", ModelFlags::SKIP_CHILDREN_ON_DELETE);
    let all = &mut Options::new().allow_empty_source(true);
    let report = target.sync_from_with(&empty("src"), all).unwrap();
    assert_eq!(report.elements.len(), DEPTH);
    assert_eq!(report.elements[0].outcome, Outcome::Applied);
    let removed = report
        .elements
        .iter()
        .filter(|e| e.outcome == Outcome::RemovedWithParent);
    assert_eq!(removed.count(), DEPTH - 1);
    assert_eq!(target.store.count("node"), 0);
}
