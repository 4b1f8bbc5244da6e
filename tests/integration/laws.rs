//! Property tests: the laws every diff and sync obeys.

use diffsync::{AdapterExt, Diff, Options};
use diffsync_tests::Inventory;
use diffsync_tests::key_of;
use proptest::prelude::*;

type Intf = (String, String, u32);
type Dev = (String, String, Vec<Intf>);
type SiteData = (String, String, Vec<Dev>);

fn inventory_data() -> impl Strategy<Value = Vec<SiteData>> {
    let intf = (
        0..4u8,
        prop::sample::select(vec!["uplink", "to-sw", "", "a\nb"]),
        prop::sample::select(vec![1500u32, 9000]),
    )
        .prop_map(|(n, d, m)| (format!("eth{n}"), d.to_string(), m));
    let dev = (
        0..3u8,
        prop::sample::select(vec!["router", "edge"]),
        prop::collection::vec(intf, 0..4),
    );
    let site = (
        0..4u8,
        prop::sample::select(vec!["east", "west"]),
        prop::collection::vec(dev, 0..3),
    );
    prop::collection::vec(site, 0..4).prop_map(|sites| {
        let mut seen_sites = std::collections::HashSet::new();
        sites
            .into_iter()
            .filter(|(s, _, _)| seen_sites.insert(*s))
            .map(|(s, region, devs)| {
                let site = format!("s{s}");
                let mut seen = std::collections::HashSet::new();
                let devs = devs
                    .into_iter()
                    .filter(|(d, _, _)| seen.insert(*d))
                    .map(|(d, role, intfs)| {
                        let mut seen = std::collections::HashSet::new();
                        let intfs = intfs.into_iter().filter(|i| seen.insert(i.0.clone())).collect();
                        (format!("{site}-d{d}"), role.to_string(), intfs)
                    })
                    .collect();
                (site, region.to_string(), devs)
            })
            .collect()
    })
}

fn build(name: &str, data: &[SiteData]) -> Inventory {
    let intfs: Vec<Vec<Vec<diffsync_tests::IntfSpec<'_>>>> = data
        .iter()
        .map(|(_, _, devs)| {
            devs.iter()
                .map(|(_, _, i)| i.iter().map(|(n, d, m)| (n.as_str(), d.as_str(), *m)).collect())
                .collect()
        })
        .collect();
    let devs: Vec<Vec<diffsync_tests::DevSpec<'_>>> = data
        .iter()
        .zip(&intfs)
        .map(|((_, _, devs), intfs)| {
            devs.iter()
                .zip(intfs)
                .map(|((d, role, _), i)| (d.as_str(), role.as_str(), None, i.as_slice()))
                .collect()
        })
        .collect();
    let sites: Vec<diffsync_tests::SiteSpec<'_>> = data
        .iter()
        .zip(&devs)
        .map(|((s, r, _), d)| (s.as_str(), r.as_str(), d.as_slice()))
        .collect();
    Inventory::new(name, &sites)
}

/// `b`, or, when there are edits, `a` with interfaces edited or removed.
fn edited(a: &[SiteData], b: &[SiteData], edits: &[(prop::sample::Index, bool)]) -> Inventory {
    let mut target = build("b", if edits.is_empty() { b } else { a });
    let keys: Vec<String> = target.store.get_all_dyn("interface").map(|m| m.unique_id()).collect();
    for (i, remove) in edits {
        let Some(k) = (!keys.is_empty()).then(|| &keys[i.index(keys.len())]) else {
            break;
        };
        if *remove {
            let _ = target.store.remove(key_of(&format!("interface:{}", k)), false);
        } else if target.store.get_dyn(key_of(&format!("interface:{}", k))).is_ok() {
            let v = [("description".into(), "edited".into())].into_iter().collect();
            target
                .store
                .update_attributes(key_of(&format!("interface:{}", k)), diffsync::AttrSource::Values(&v))
                .unwrap();
        }
    }
    target
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn after_sync_from_the_diff_is_empty(a in inventory_data(), b in inventory_data()) {
        let source = build("a", &a);
        let mut target = build("b", &b);
        target.sync_from_with(&source, &mut Options::new().allow_empty_source(true)).unwrap();
        let again = target.diff_from(&source).unwrap();
        prop_assert!(!again.has_diffs(), "{}", again);
        prop_assert_eq!(target.store.count_all(), source.store.count_all());
    }

    #[test]
    fn skipping_subtrees_with_equal_fingerprints_changes_nothing_in_the_diff(
        a in inventory_data(),
        b in inventory_data(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..3),
        log_unchanged in any::<bool>(),
    ) {
        // Either an unrelated inventory, or the same one with a few edits
        // deep down (equal counts, different content: what a fingerprint must tell).
        let source = build("a", &a);
        let target = edited(&a, &b, &edits);
        let flags = if log_unchanged { diffsync::DiffFlags::LOG_UNCHANGED_RECORDS } else { diffsync::DiffFlags::empty() };
        let diff = |s: &Inventory, t: &Inventory, walk_all: bool| {
            t.diff_from_with(s, &mut Options::new().flags(flags).walk_all(walk_all)).unwrap()
        };
        let same = build("a", &a);
        for (s, t) in [(&source, &target), (&source, &same)] {
            let (fast, slow) = (diff(s, t, false), diff(s, t, true));
            prop_assert_eq!(serde_json::to_value(&fast).unwrap(), serde_json::to_value(&slow).unwrap());
            prop_assert_eq!(fast.summary(), slow.summary());
            prop_assert_eq!((fast.unchanged, fast.skipped), (slow.unchanged, slow.skipped));
        }
        prop_assert_eq!(source.store.fingerprint(), same.store.fingerprint());
    }

    #[test]
    fn a_partial_diff_and_sync_are_the_same_part_of_the_full_ones(
        a in inventory_data(),
        b in inventory_data(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..4),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let source = build("a", &a);
        let mut target = edited(&a, &b, &edits);
        // Any models of either side, at any level.
        let mut all: Vec<(String, String)> = Vec::new();
        for inv in [&source, &target] {
            for t in ["site", "device", "interface"] {
                all.extend(inv.store.get_all_dyn(t).map(|m| (t.to_string(), m.unique_id())));
            }
        }
        let part: Vec<(String, String)> = if all.is_empty() { Vec::new() } else { picks.iter().map(|i| all[i.index(all.len())].clone()).collect() };
        // In the part: a requested model or below one, in either store.
        let inside = |t: &str, k: &str| {
            [&source, &target].iter().any(|inv| {
                let mut at = Some((t.to_string(), k.to_string()));
                while let Some((t, k)) = at {
                    if part.contains(&(t.clone(), k.clone())) {
                        return true;
                    }
                    at = inv.store.parent(key_of(&format!("{}:{}", t, k))).ok().flatten().map(|p| (p.model_type().to_string(), p.unique_id().to_string()));
                }
                false
            })
        };
        let inside_set: std::collections::HashSet<(String, String)> = all.iter().filter(|(t, k)| inside(t, k)).cloned().collect();
        let inside = |t: &str, k: &str| inside_set.contains(&(t.to_string(), k.to_string()));
        let full = target.diff_from(&source).unwrap();
        let expected = full.filtered(|e| inside(e.model_type(), e.unique_id()));
        let mut partial = target.diff_from_with(&source, &mut Options::new().part(part_keys(&part))).unwrap();
        let mut expected = expected;
        // Counts of unchanged models under a carrying parent cover only the part.
        fn uncount(es: &mut [diffsync::DiffElement], inside: &dyn Fn(&str, &str) -> bool) {
            for e in es {
                if !inside(e.model_type(), e.unique_id()) {
                    e.unchanged_descendants = 0;
                    uncount(&mut e.children, inside);
                }
            }
        }
        uncount(&mut partial.elements, &inside);
        uncount(&mut expected.elements, &inside);
        prop_assert_eq!(&partial.elements, &expected.elements);
        // Syncing the part changes the part, and nothing else.
        let outside_before: Vec<_> = all.iter().filter(|(t, k)| !inside(t, k)).map(|(t, k)| target.store.get_dyn(key_of(&format!("{}:{}", t, k))).ok().map(|m| m.attributes())).collect();
        target.sync_from_with(&source, &mut Options::new().part(part_keys(&part)).allow_empty_source(true)).unwrap();
        let again = target.diff_from_with(&source, &mut Options::new().part(part_keys(&part))).unwrap();
        prop_assert!(!again.has_diffs(), "{}", again);
        let outside_after: Vec<_> = all.iter().filter(|(t, k)| !inside(t, k)).map(|(t, k)| target.store.get_dyn(key_of(&format!("{}:{}", t, k))).ok().map(|m| m.attributes())).collect();
        prop_assert_eq!(outside_before, outside_after);
    }

    #[test]
    fn a_fresh_diff_syncs_as_the_same_diff_read_back_does(
        a in inventory_data(),
        b in inventory_data(),
        failing in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    ) {
        // A diff just made from the stores goes by where the differ found
        // each model; one read back from JSON by each key: the same hooks,
        // the same report, the same store.
        let source = build("a", &a);
        let (mut fresh, mut loaded) = (build("b", &b), build("b", &b));
        let keys: Vec<String> = fresh.store.get_all_dyn("interface").map(|m| m.unique_id()).collect();
        for i in &failing {
            if !keys.is_empty() {
                let k = &keys[i.index(keys.len())];
                fresh.fail.insert(("interface".into(), k.clone()));
                loaded.fail.insert(("interface".into(), k.clone()));
            }
        }
        let opts = || Options::new().allow_empty_source(true).flags(diffsync::DiffFlags::CONTINUE_ON_FAILURE);
        let diff = loaded.diff_from(&source).unwrap();
        let read: Diff = serde_json::from_str(&serde_json::to_string(&diff).unwrap()).unwrap();
        let by_key = loaded.sync_diff_from(&source, &read, &mut opts());
        let located = fresh.sync_from_with(&source, &mut opts());
        prop_assert_eq!(format!("{located:?}"), format!("{by_key:?}"));
        prop_assert_eq!(&fresh.log, &loaded.log);
        prop_assert!(!fresh.diff_from(&loaded).unwrap().has_diffs());
    }

    #[test]
    fn summary_accounts_for_every_model(a in inventory_data(), b in inventory_data()) {
        let source = build("a", &a);
        let target = build("b", &b);
        let s = target.diff_from(&source).unwrap().summary();
        prop_assert_eq!(s.skip, 0);
        prop_assert_eq!(
            s.create + s.delete + 2 * (s.update + s.no_change),
            source.store.count_all() + target.store.count_all()
        );
        prop_assert_eq!(s.create + s.update + s.no_change, source.store.count_all());
        prop_assert_eq!(s.delete + s.update + s.no_change, target.store.count_all());
    }

    #[test]
    fn reverse_undoes_and_json_round_trips(a in inventory_data(), b in inventory_data()) {
        let source = build("a", &a);
        let original = build("b", &b);
        let mut target = original.clone();
        let diff = target.diff_from(&source).unwrap();
        let back: Diff = serde_json::from_str(&serde_json::to_string(&diff).unwrap()).unwrap();
        prop_assert_eq!(&back, &diff);
        prop_assert_eq!(diff.reversed().reversed(), diff.clone());
        target.sync_diff_from(&source, &diff, &mut Options::new().allow_empty_source(true)).unwrap();
        target.sync_diff(&back.reversed(), &mut Options::new()).unwrap();
        let restored = target.diff_from(&original).unwrap();
        prop_assert!(!restored.has_diffs(), "{}", restored);
    }
}

/// Edits of a wide inventory (hundreds of sites: past the point where a
/// store sums its roots into buckets).
#[derive(Clone, Debug)]
enum WideEdit {
    Region(prop::sample::Index),
    Description(prop::sample::Index),
    RemoveSite(prop::sample::Index),
    RemoveInterface(prop::sample::Index),
    AddSite(u16),
}

/// `sites` sites, each with a device and an interface; with `ignored`,
/// a few devices are flagged IGNORE.
fn wide(name: &str, sites: usize, ignored: bool) -> Inventory {
    wide_into(Inventory::empty(name), sites, ignored)
}

/// [`wide`]'s models added to `inv` after what it holds.
fn wide_into(mut inv: Inventory, sites: usize, ignored: bool) -> Inventory {
    use diffsync::ModelFlags;
    use diffsync_tests::{Device, Interface, Site};
    for i in 0..sites {
        let (site, dev) = (format!("s{i}"), format!("s{i}-r1"));
        inv.store
            .add(Site {
                name: site.clone(),
                region: "east".into(),
            })
            .unwrap();
        let device = Device {
            name: dev.clone(),
            role: "edge".into(),
            serial: None,
            db_pk: 0,
            flags: if ignored && i % 97 == 5 {
                ModelFlags::IGNORE
            } else {
                ModelFlags::empty()
            },
        };
        inv.store.add_child(key_of(&format!("site:{}", site)), device).unwrap();
        let intf = Interface {
            device_name: dev.clone(),
            name: "eth0".into(),
            description: "uplink".into(),
            mtu: 1500,
        };
        inv.store.add_child(key_of(&format!("device:{}", dev)), intf).unwrap();
    }
    inv
}

/// The same models under the same parents, in the same order, added afresh.
fn copy(inv: &Inventory) -> Inventory {
    use diffsync_tests::{Device, Interface, Site};
    let mut out = Inventory::empty(inv.store.name());
    for m in inv.store.get_all_dyn("site") {
        let site: &Site = inv.store.get_as(key_of(&format!("site:{}", &m.unique_id()))).unwrap();
        out.store.add(site.clone()).unwrap();
    }
    for t in ["device", "interface"] {
        for m in inv.store.get_all_dyn(t) {
            let key = m.model_key();
            let parent = inv.store.parent(&key).unwrap().unwrap();
            if t == "device" {
                let d: &Device = inv.store.get_as(&key).unwrap();
                out.store.add_child(parent, d.clone()).unwrap();
            } else {
                let i: &Interface = inv.store.get_as(&key).unwrap();
                out.store.add_child(parent, i.clone()).unwrap();
            }
        }
    }
    out
}

fn wide_edit(inv: &mut Inventory, edit: &WideEdit) {
    let keys = |t: &str| -> Vec<String> { inv.store.get_all_dyn(t).map(|m| m.unique_id()).collect() };
    let set = |k: &str, v: &str| {
        [(k.to_string().into(), v.into())]
            .into_iter()
            .collect::<diffsync::Attrs>()
    };
    match edit {
        WideEdit::Region(i) => {
            let ks = keys("site");
            if let Some(k) = (!ks.is_empty()).then(|| &ks[i.index(ks.len())]) {
                let v = set("region", "west");
                inv.store
                    .update_attributes(key_of(&format!("site:{}", k)), diffsync::AttrSource::Values(&v))
                    .unwrap();
            }
        }
        WideEdit::Description(i) => {
            let ks = keys("interface");
            if let Some(k) = (!ks.is_empty()).then(|| &ks[i.index(ks.len())]) {
                let v = set("description", "edited");
                inv.store
                    .update_attributes(key_of(&format!("interface:{}", k)), diffsync::AttrSource::Values(&v))
                    .unwrap();
            }
        }
        WideEdit::RemoveSite(i) => {
            let ks = keys("site");
            if let Some(k) = (!ks.is_empty()).then(|| ks[i.index(ks.len())].clone()) {
                inv.store.remove(key_of(&format!("site:{}", k)), true).unwrap();
            }
        }
        WideEdit::RemoveInterface(i) => {
            let ks = keys("interface");
            if let Some(k) = (!ks.is_empty()).then(|| ks[i.index(ks.len())].clone()) {
                inv.store.remove(key_of(&format!("interface:{}", k)), false).unwrap();
            }
        }
        WideEdit::AddSite(n) => {
            let site = diffsync_tests::Site {
                name: format!("new{n}"),
                region: "north".into(),
            };
            let _ = inv.store.add(site);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn root_buckets_of_wide_stores_change_nothing_in_the_diff(
        sites in 250usize..700,
        edits in prop::collection::vec(wide_edits(), 0..6),
        on_target in prop::collection::vec(any::<bool>(), 6),
        ignored_on in any::<Option<bool>>(),
    ) {
        let (mut source, mut target) = (
            wide("a", sites, ignored_on == Some(false)),
            wide("b", sites, ignored_on == Some(true)),
        );
        for (edit, t) in edits.iter().zip(&on_target) {
            wide_edit(if *t { &mut target } else { &mut source }, edit);
        }
        let fast = target.diff_from(&source).unwrap();
        // Every root visited.
        let walked = target.diff_from_with(&source, &mut Options::new().walk_all(true)).unwrap();
        // The same models added afresh: buckets built from scratch, not
        // maintained through the edits.
        let afresh = copy(&target).diff_from(&copy(&source)).unwrap();
        for other in [walked, afresh] {
            prop_assert_eq!(serde_json::to_value(&fast).unwrap(), serde_json::to_value(&other).unwrap());
            prop_assert_eq!((fast.unchanged, fast.skipped), (other.unchanged, other.skipped));
        }
    }
}

/// What `side` did since `base`, by key: the one-way diff that would make
/// the base look like it.
fn since_base(base: &Inventory, side: &Inventory) -> std::collections::BTreeMap<(String, String), diffsync::Action> {
    base.diff_from(side)
        .unwrap()
        .iter()
        .filter(|(e, _)| e.action != diffsync::Action::NoChange)
        .map(|(e, _)| ((e.model_type().to_string(), e.unique_id().to_string()), e.action))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A wide base (root buckets on every store) edited on both sides: the
    /// three-way walk, which skips a bucket equal on all three stores,
    /// classifies every key as two one-way diffs against the base do. With
    /// `shifted`, the base holds a site before the others (gone from both
    /// sides), so no model is at the slot it has on the sides, where the
    /// walk looks first.
    #[test]
    fn classification_of_wide_stores_agrees_with_one_way_diffs_against_the_base(
        sites in 250usize..600,
        shifted in any::<bool>(),
        left_edits in prop::collection::vec(wide_edits(), 0..6),
        right_edits in prop::collection::vec(wide_edits(), 0..6),
        both in prop::collection::vec(wide_edits(), 0..3),
    ) {
        let (mut left, mut right) = (wide("left", sites, false), wide("right", sites, false));
        for edit in &both {
            wide_edit(&mut left, edit);
            wide_edit(&mut right, edit);
        }
        for edit in &left_edits {
            wide_edit(&mut left, edit);
        }
        for edit in &right_edits {
            wide_edit(&mut right, edit);
        }
        let mut base_inv = Inventory::empty("base");
        if shifted {
            let first = diffsync_tests::Site { name: "first".into(), region: "east".into() };
            base_inv.store.add(first).unwrap();
        }
        let base_inv = wide_into(base_inv, sites, false);
        let base = diffsync::bidir::Base::from_store(base_inv.store.clone());
        let classes = diffsync::bidir::classify(&left, &right, &base).unwrap();
        let (l, r) = (since_base(&base_inv, &left), since_base(&base_inv, &right));
        let deleted = |k: &(String, String)| {
            l.get(k) == Some(&diffsync::Action::Delete) && r.get(k) == Some(&diffsync::Action::Delete)
        };
        let expected: std::collections::BTreeSet<_> = l
            .keys()
            .chain(r.keys())
            .filter(|k| !deleted(k))
            .map(|k| (k.clone(), l.get(k).copied(), r.get(k).copied()))
            .collect();
        let got: std::collections::BTreeSet<_> = classes
            .changes
            .iter()
            .map(|c| ((c.model_type().to_string(), c.key.unique_id().to_string()), c.left, c.right))
            .collect();
        prop_assert_eq!(got, expected);
        let mut on_both: Vec<(String, String)> = l.keys().filter(|k| deleted(k)).cloned().collect();
        let mut got_both: Vec<(String, String)> = classes
            .deleted_on_both
            .iter()
            .map(|k| (k.model_type().to_string(), k.unique_id().to_string()))
            .collect();
        on_both.sort();
        got_both.sort();
        prop_assert_eq!(got_both, on_both);
    }
}

fn wide_edits() -> impl Strategy<Value = WideEdit> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(WideEdit::Region),
        any::<prop::sample::Index>().prop_map(WideEdit::Description),
        any::<prop::sample::Index>().prop_map(WideEdit::RemoveSite),
        any::<prop::sample::Index>().prop_map(WideEdit::RemoveInterface),
        (0u16..5).prop_map(WideEdit::AddSite),
    ]
}

/// The keys of models named by (type, unique id).
fn part_keys(part: &[(String, String)]) -> Vec<diffsync::ModelKey> {
    part.iter().map(|(t, k)| key_of(&format!("{t}:{k}"))).collect()
}
