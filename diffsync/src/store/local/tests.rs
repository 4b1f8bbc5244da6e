use super::*;
use crate::DiffModel;
use crate::digest::Fingerprint;
use crate::store::{EAGER_DEPTH, ROOT_BUCKETS};
use serde_json::Value;

/// A key from its text form (`device:r1`).
fn key_of(text: &str) -> crate::ModelKey {
    text.parse().expect("a key's text")
}

/// A typed key from its text form.
fn typed_key<T: crate::StaticModel>(text: &str) -> crate::Key<T> {
    text.parse().expect("a key's text")
}

#[derive(crate::DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "rack", children(Unit))]
struct Rack {
    #[diffsync(id)]
    name: String,
}

#[derive(crate::DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "unit")]
struct Unit {
    #[diffsync(id)]
    rack: String,
    #[diffsync(id)]
    pos: u32,
    label: String,
}

#[derive(crate::DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "link", children(Chain))]
struct Chain {
    #[diffsync(id)]
    n: u32,
    label: String,
}

/// Each model's subtree fingerprint counted from scratch.
fn recounted(s: &LocalStore) -> Vec<(String, Fingerprint)> {
    let mut out = Vec::new();
    for m in s.get_all_dyn("link") {
        let mut fp = Fingerprint::default();
        let mut stack = vec![m.unique_id()];
        while let Some(k) = stack.pop() {
            let (ty, slot) = s.locate("link", &k).unwrap();
            fp.add(s.term_at(Link { ty, slot }));
            let key = s.get_dyn_uid("link", &k).unwrap().model_key();
            stack.extend(
                s.children_dyn(&key, "link")
                    .unwrap()
                    .iter()
                    .map(|c| c.unique_id().to_string()),
            );
        }
        out.push((m.unique_id(), fp));
    }
    out
}

#[test]
fn changes_deeper_than_the_eager_depth_are_recounted_not_lost() {
    let mut s = LocalStore::new("chain");
    let depth = 3 * EAGER_DEPTH as u32;
    s.add(Chain {
        n: 0,
        label: "x".into(),
    })
    .unwrap();
    for n in 1..depth {
        s.add_child(Chain::key(n - 1), Chain { n, label: "x".into() }).unwrap();
    }
    let v = [("label".into(), "deep".into())].into_iter().collect();
    s.update_attributes(Chain::key(depth - 2).erased(), AttrSource::Values(&v))
        .unwrap();
    // Cut the chain in two, and drop a short stretch further down.
    s.remove(Chain::key(depth / 2).erased(), false).unwrap();
    let (a, b) = (
        Chain::key(depth - 20).into_erased(),
        Chain::key(depth - 19).into_erased(),
    );
    s.remove_many(&[(b, false), (a, false)]).unwrap();
    assert!(!s.fingerprints_fresh(), "a chain this deep leaves its top out of date");
    for (k, fp) in recounted(&s) {
        assert_eq!(
            s.subtree_fingerprint(key_of(&format!("link:{k}"))),
            Some(fp),
            "before the recount: {k}"
        );
    }
    s.refresh_fingerprints();
    assert!(s.fingerprints_fresh());
    for (k, fp) in recounted(&s) {
        let (ty, slot) = s.locate("link", &k).unwrap();
        assert!(!s.tables[ty].dirty(slot));
        assert_eq!(s.subtree_at(Link { ty, slot }), fp, "after the recount: {k}");
    }
}

fn unit(rack: &str, pos: u32) -> Unit {
    Unit {
        rack: rack.into(),
        pos,
        label: format!("u{pos}"),
    }
}

#[test]
fn a_sync_whose_deletes_compact_the_store_writes_its_later_updates_by_key() {
    use crate::{AdapterExt, MemoryAdapter};
    // Rack a's 2,100 units go, rack b's 900 are relabelled. a comes
    // first, so its deletes compact the unit table before b's updates;
    // b's units sat after 100 of a's, so the slot the diff found for
    // each of them now holds the unit 100 places on, or nothing.
    let store = |with_a: bool, label: &str| {
        let mut s = LocalStore::new("s");
        let a = s.add(Rack { name: "a".into() }).unwrap();
        let b = s.add(Rack { name: "b".into() }).unwrap();
        let units = (0..100)
            .map(|p| (a, p))
            .chain((100..1_000).map(|p| (b, p)))
            .chain((1_000..3_000).map(|p| (a, p)));
        for (rack, pos) in units.filter(|&(r, _)| with_a || r == b) {
            let name = if rack == a { "a" } else { "b" };
            let u = Unit {
                label: format!("{label}{pos}"),
                ..unit(name, pos)
            };
            s.add_under(rack, u).unwrap();
        }
        MemoryAdapter::with_store("s", &["rack"], s)
    };
    let mut target = store(true, "u");
    let source = store(false, "new");
    let epoch = target.store.epoch;
    let report = target.sync_from(&source).unwrap();
    assert!(report.is_success());
    assert!(target.store.epoch > epoch, "the deletes compacted the table");
    assert!(!target.diff_from(&source).unwrap().has_diffs());
    assert_eq!(target.store.count("unit"), 900);
    let label = |p: u32| {
        let key = DiffModel::unique_id(&unit("b", p));
        target.store.get_dyn_uid("unit", &key).unwrap().attribute("label")
    };
    assert_eq!(label(100), Some("new100".into()));
    assert_eq!(label(999), Some("new999".into()));
}

#[test]
fn a_diff_made_from_other_stores_syncs_by_its_keys_not_their_slots() {
    use crate::{AdapterExt, MemoryAdapter};
    // The same units in the opposite order: every slot the diff found
    // in `forward` holds another unit in `backward`.
    let store = |order: &mut dyn Iterator<Item = u32>, label: &dyn Fn(u32) -> String, gone: u32| {
        let mut s = LocalStore::new("s");
        let rack = s.add(Rack { name: "r".into() }).unwrap();
        for pos in order.filter(|&p| p != gone) {
            let u = Unit {
                label: label(pos),
                ..unit("r", pos)
            };
            s.add_under(rack, u).unwrap();
        }
        MemoryAdapter::with_store("s", &["rack"], s)
    };
    let old = |p: u32| format!("u{p}");
    let forward = store(&mut (0..50), &old, 99);
    let mut backward = store(&mut (0..50).rev(), &old, 99);
    let source = store(
        &mut (0..50),
        &|p| if p % 3 == 0 { format!("new{p}") } else { old(p) },
        7,
    );
    let diff = forward.diff_from(&source).unwrap();
    let report = backward
        .sync_diff_from(&source, &diff, &mut crate::Options::new())
        .unwrap();
    assert!(report.is_success());
    assert!(!backward.diff_from(&source).unwrap().has_diffs());
}

#[test]
fn a_slot_hint_is_checked_and_a_wrong_one_falls_back_to_the_key() {
    let mut s = LocalStore::new("s");
    let rack = s.add(Rack { name: "r".into() }).unwrap();
    for pos in 0..3 {
        s.add_under(rack, unit("r", pos)).unwrap();
    }
    let key = |pos| DiffModel::unique_id(&unit("r", pos));
    let at = |s: &LocalStore, pos| s.locate("unit", &key(pos)).unwrap();
    let (ty, one) = at(&s, 1);
    let key1 = key(1);
    // Right, another key's slot, another type's, past the end.
    assert_eq!(s.locate_near("unit", &key1, Some((ty, one))), Some((ty, one)));
    assert_eq!(s.locate_near("unit", &key1, Some(at(&s, 2))), Some((ty, one)));
    assert_eq!(
        s.locate_near("unit", &key1, Some(s.locate("rack", "r").unwrap())),
        Some((ty, one))
    );
    assert_eq!(s.locate_near("unit", &key1, Some((ty, Slot::new(99)))), Some((ty, one)));
    // A removed model's slot holds nothing, even with its key's text.
    s.remove_uid("unit", &key1, false).unwrap();
    assert_eq!(s.locate_near("unit", &key1, Some((ty, one))), None);
    // Writes through hints: the model at the hint is the one changed,
    // a stale hint changes the model its key names.
    let key2 = key(2);
    let label = |l: &str| -> Attrs { [("label".into(), l.into())].into_iter().collect() };
    s.update_near("unit", &key2, AttrSource::Values(&label("by slot")), Some(at(&s, 2)))
        .unwrap();
    s.update_near("unit", &key2, AttrSource::Values(&label("stale")), Some(at(&s, 0)))
        .unwrap();
    assert_eq!(
        s.get_dyn_uid("unit", &key2).unwrap().attribute("label"),
        Some("stale".into())
    );
    assert_eq!(
        s.get_dyn_uid("unit", &key(0)).unwrap().attribute("label"),
        Some("u0".into())
    );
    let key0 = key(0);
    let two = at(&s, 2);
    s.remove_many_near(&[("unit", &key0, false)], |_| Some(two)).unwrap();
    assert_eq!(s.count("unit"), 1);
    assert!(s.find_dyn("unit", &key2).is_some());
}

#[test]
fn children_left_parentless_count_as_roots_added_so() {
    // Enough roots for buckets (256 and up): the orphans' terms lose
    // their parent's key in the type's fingerprint, their subtrees and
    // their root buckets alike.
    let (mut orphaned, mut direct) = (LocalStore::new("orphaned"), LocalStore::new("direct"));
    orphaned.add(Rack { name: "r".into() }).unwrap();
    for pos in 0..300 {
        orphaned.add_child(key_of("rack:r"), unit("r", pos)).unwrap();
        direct.add(unit("r", pos)).unwrap();
    }
    orphaned.remove(key_of("rack:r"), false).unwrap();
    let (o, d) = (
        orphaned.table_index("unit").unwrap(),
        direct.table_index("unit").unwrap(),
    );
    let (ot, dt) = (&orphaned.tables[o], &direct.tables[d]);
    assert_eq!(ot.parentless, 300);
    assert_eq!(ot.roots.len(), ROOT_BUCKETS);
    assert_eq!(ot.roots, dt.roots);
    assert_eq!(ot.fingerprint, dt.fingerprint);
    for slot in ot.slots() {
        let key = ot.key(slot);
        let twin = dt.find_hashed(direct.hash(key), key).unwrap();
        assert_eq!(
            orphaned.term_at(Link { ty: o, slot }),
            direct.term_at(Link { ty: d, slot: twin })
        );
    }
}

#[test]
fn index_survives_growth_removal_and_re_adding() {
    let mut s = LocalStore::new("t");
    s.add(Rack { name: "r".into() }).unwrap();
    for pos in 0..5000 {
        s.add_child(key_of("rack:r"), unit("r", pos)).unwrap();
    }
    for pos in (0..5000).step_by(2) {
        s.remove(key_of(&format!("unit:r__{pos}")), false).unwrap();
    }
    assert_eq!(s.count("unit"), 2500);
    assert!(s.get_opt(&typed_key::<Unit>("unit:r__10")).unwrap().is_none());
    assert_eq!(s.get(&typed_key::<Unit>("unit:r__11")).unwrap().label, "u11");
    s.add_child(key_of("rack:r"), unit("r", 10)).unwrap();
    let children = s.children_dyn(key_of("rack:r"), "unit").unwrap();
    assert_eq!(children.len(), 2501);
    assert_eq!(children[0], key_of("unit:r__1"));
    assert_eq!(*children.last().unwrap(), key_of("unit:r__10"));
}

#[test]
fn sparse_tables_are_compacted_and_links_stay_right() {
    let mut s = LocalStore::new("t");
    for r in ["a", "b"] {
        s.add(Rack { name: r.into() }).unwrap();
        for pos in 0..2000 {
            s.add_child(Rack::key(r), unit(r, pos)).unwrap();
        }
    }
    for pos in 0..2000 {
        if pos % 4 != 0 {
            s.remove(key_of(&format!("unit:a__{pos}")), false).unwrap();
        }
        if pos % 2 == 1 {
            s.remove(key_of(&format!("unit:b__{pos}")), false).unwrap();
        }
    }
    let units = s.table_index("unit").unwrap();
    assert!(s.tables[units].meta.len() < 4000, "the unit table was compacted");
    assert_eq!(s.count("unit"), 500 + 1000);
    let a = s.children_dyn(key_of("rack:a"), "unit").unwrap();
    assert_eq!((a.len(), a[0].unique_id(), a[1].unique_id()), (500, "a__0", "a__4"));
    assert_eq!(s.parent(key_of("unit:b__1998")).unwrap(), Some(key_of("rack:b")));
    assert_eq!(s.get(&typed_key::<Unit>("unit:b__1000")).unwrap().label, "u1000");
    s.remove(key_of("rack:a"), true).unwrap();
    assert_eq!(s.count("unit"), 1000);
    let first = s.get_all::<Unit>("unit").unwrap().next().unwrap();
    assert_eq!(DiffModel::unique_id(first), "b__0");

    // A parent table compacted under its children: their parent links follow.
    let mut s = LocalStore::new("t");
    for r in 0..2000 {
        let name = format!("r{r}");
        s.add(Rack { name: name.clone() }).unwrap();
        s.add_child(Rack::key(&name), unit(&name, 1)).unwrap();
    }
    for r in (0..2000).filter(|r| r % 4 != 3) {
        s.remove(key_of(&format!("rack:r{r}")), false).unwrap();
    }
    let racks = s.table_index("rack").unwrap();
    assert!(s.tables[racks].meta.len() < 2000, "the rack table was compacted");
    assert_eq!(s.parent(key_of("unit:r1999__1")).unwrap(), Some(key_of("rack:r1999")));
    assert_eq!(
        s.children_dyn(key_of("rack:r3"), "unit").unwrap(),
        [key_of("unit:r3__1")]
    );
    assert_eq!(s.parent(key_of("unit:r0__1")).unwrap(), None);
}

#[test]
fn handles_add_children_without_keys_and_go_stale_safely() {
    let mut s = LocalStore::new("t");
    let r = s.add(Rack { name: "r".into() }).unwrap();
    s.add_under(r, unit("r", 1)).unwrap();
    s.add_under(r, unit("r", 2)).unwrap();
    assert_eq!(
        s.children_dyn(key_of("rack:r"), "unit").unwrap(),
        [key_of("unit:r__1"), key_of("unit:r__2")]
    );
    assert_eq!(
        s.add(Rack { name: "r".into() }).unwrap(),
        r,
        "re-adding an equal model returns its handle"
    );
    let u = s.add_under(r, unit("r", 3)).unwrap();
    let err = s.add_under(u, unit("r", 4)).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"unit:r__3 cannot have children of type "unit"; declared child types: []"#
    );

    // From another store, or from the store this one was cloned from.
    let mut other = LocalStore::new("other");
    other.add(Rack { name: "x".into() }).unwrap();
    let mut clone = s.clone();
    for store in [&mut other, &mut clone] {
        let err = store.add_under(r, unit("r", 9)).unwrap_err();
        assert!(
            matches!(err, StoreError::StaleHandle { ref model_type, .. } if model_type == "rack"),
            "{err}"
        );
        assert_eq!(store.count("unit"), if store.name() == "t" { 3 } else { 0 });
    }

    // After the parent is removed, and after a compaction moved slots.
    s.remove(key_of("rack:r"), true).unwrap();
    assert!(matches!(
        s.add_under(r, unit("r", 5)),
        Err(StoreError::StaleHandle { .. })
    ));
    let keep = s.add(Rack { name: "keep".into() }).unwrap();
    for pos in 0..2000 {
        s.add_under(keep, unit("keep", pos)).unwrap();
    }
    for pos in 0..1500 {
        s.remove(key_of(&format!("unit:keep__{pos}")), false).unwrap();
    }
    let err = s.add_under(keep, unit("keep", 9999)).unwrap_err();
    assert!(matches!(err, StoreError::StaleHandle { .. }), "{err}");
    assert_eq!(s.count("unit"), 500, "nothing was added through the stale handle");
}

#[test]
fn boxed_insert_converts_between_rust_types() {
    let mut s = LocalStore::new("t");
    s.register::<Unit>().unwrap();
    let schema = std::sync::Arc::new(<Unit as StaticModel>::static_schema().clone());
    let values: Attrs = [
        ("rack".into(), Value::from("r")),
        ("pos".into(), Value::from(4)),
        ("label".into(), Value::from("top")),
    ]
    .into_iter()
    .collect();
    let m = crate::DynModel::new(&schema, &values, &values).unwrap();
    s.insert_boxed(Box::new(m), None).unwrap();
    assert_eq!(s.get(&typed_key::<Unit>("unit:r__4")).unwrap().label, "top");
}

#[test]
fn registering_a_name_with_another_type_is_a_mismatch() {
    #[derive(crate::DiffModel, Clone, Debug, PartialEq)]
    #[diffsync(name = "unit")]
    struct Other {
        #[diffsync(id)]
        id: u32,
    }
    let mut s = LocalStore::new("t");
    s.register::<Unit>().unwrap();
    s.register::<Unit>().unwrap();
    let err = s.add(Other { id: 1 }).unwrap_err();
    assert!(
        matches!(err, StoreError::Model(ModelError::TypeMismatch { .. })),
        "{err}"
    );
    assert_eq!(s.count_all(), 0);
}
