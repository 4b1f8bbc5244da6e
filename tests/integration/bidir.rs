//! Bidirectional sync: three-way reconcile against a base, strategies,
//! conflict log, safety rails, base persistence; and a property test of
//! independent random edits on both sides.

use std::collections::BTreeSet;

use diffsync::bidir::{Base, BiOptions, ConflictKind, Resolution, Strategy, reconcile};
use diffsync::{AdapterExt, AttrSource, Error, LocalStore};
use diffsync_tests::{Device, Interface, Inventory, Site, sys_a};
use diffsync_tests::{key_of, typed_key};
use proptest::prelude::*;

fn no_limit() -> BiOptions {
    BiOptions::new().max_delete_share(None)
}

fn set(store: &mut LocalStore, ty: &str, key: &str, attr: &str, value: &str) {
    let values = [(attr.to_string().into(), value.into())].into_iter().collect();
    store
        .update_attributes(key_of(&format!("{ty}:{key}")), AttrSource::Values(&values))
        .unwrap();
}

fn description(inv: &Inventory, key: &str) -> String {
    inv.store
        .get(&typed_key::<Interface>(&format!("interface:{}", key)))
        .unwrap()
        .description
        .clone()
}

/// Both sides and the base start as `sys_a`.
fn agreed() -> (Inventory, Inventory, Base) {
    let (mut left, mut right) = (sys_a(), sys_a());
    left.name = "left".into();
    right.name = "right".into();
    (left, right, Base::from_store(sys_a().store))
}

#[test]
fn a_first_run_without_a_base_takes_the_union_and_conflicts_on_differences() {
    let mut left = Inventory::new("left", &[("nyc", "east", &[]), ("ams", "eu", &[])]);
    let mut right = Inventory::new("right", &[("nyc", "north", &[]), ("lax", "west", &[])]);
    let mut base = Base::new();
    let report = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    let keys = |i: &Inventory| {
        i.store
            .get_all_dyn("site")
            .map(|m| m.unique_id())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(keys(&left), ["ams", "lax", "nyc"].map(String::from).into());
    assert_eq!(keys(&right), keys(&left));
    assert_eq!(report.conflicts.len(), 1);
    let c = &report.conflicts[0];
    assert_eq!(
        (c.kind, c.key.unique_id(), c.resolution),
        (ConflictKind::CreateCreate, "nyc", Resolution::Skip)
    );
    // The base holds what both sides agree on; the conflict stays out of it.
    assert_eq!(base.len(), 2);
    assert!(base.store().get_dyn(key_of("site:nyc")).is_err());
    // Detected again next run, and resolved by a strategy.
    let again = reconcile(
        &mut left,
        &mut right,
        &mut base,
        &no_limit().strategy(Strategy::RightWins),
    )
    .unwrap();
    assert_eq!(again.conflicts.len(), 1);
    assert_eq!(left.store.get(&Site::key("nyc")).unwrap().region, "north");
    assert_eq!(base.len(), 3);
    assert!(!left.diff_from(&right).unwrap().has_diffs());
}

#[test]
fn a_change_on_one_side_flows_and_the_same_change_on_both_is_no_conflict() {
    let (mut left, mut right, mut base) = agreed();
    set(
        &mut left.store,
        "interface",
        "nyc-r1__eth0",
        "description",
        "core uplink",
    );
    set(&mut right.store, "site", "sfo", "region", "south");
    set(&mut left.store, "device", "nyc-r1", "role", "edge");
    set(&mut right.store, "device", "nyc-r1", "role", "edge");
    let report = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    assert!(report.conflicts.is_empty(), "{report}");
    assert_eq!(report.identical, 1);
    assert_eq!(description(&right, "nyc-r1__eth0"), "core uplink");
    assert_eq!(left.store.get(&Site::key("sfo")).unwrap().region, "south");
    assert_eq!(
        right.log,
        ["update interface nyc-r1__eth0 {\"description\":\"core uplink\"}"]
    );
    assert!(!left.diff_from(&right).unwrap().has_diffs());
    // Nothing left to do.
    let again = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    assert_eq!(
        (again.to_left.totals().applied, again.to_right.totals().applied),
        (0, 0)
    );
}

#[test]
fn an_update_on_both_sides_is_a_conflict_for_the_strategy() {
    let strategies = [
        (Strategy::Safe, Resolution::Skip, ("left", "right")),
        (Strategy::LeftWins, Resolution::Left, ("left", "left")),
        (Strategy::RightWins, Resolution::Right, ("right", "right")),
    ];
    for (strategy, resolution, (l, r)) in strategies {
        let (mut left, mut right, mut base) = agreed();
        set(&mut left.store, "interface", "nyc-r1__eth1", "description", "left");
        set(&mut right.store, "interface", "nyc-r1__eth1", "description", "right");
        let report = reconcile(&mut left, &mut right, &mut base, &no_limit().strategy(strategy)).unwrap();
        assert_eq!(report.conflicts.len(), 1);
        let c = &report.conflicts[0];
        assert_eq!((c.kind, c.resolution), (ConflictKind::UpdateUpdate, resolution));
        assert_eq!(
            (
                description(&left, "nyc-r1__eth1").as_str(),
                description(&right, "nyc-r1__eth1").as_str()
            ),
            (l, r)
        );
    }
}

#[test]
fn a_conflict_log_renders_base_left_and_right() {
    let (mut left, mut right, mut base) = agreed();
    set(&mut left.store, "interface", "nyc-r1__eth1", "description", "left");
    set(&mut right.store, "interface", "nyc-r1__eth1", "description", "right");
    let report = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    assert_eq!(
        report.to_string(),
        "to left: 0 applied, 0 failed; to right: 0 applied, 0 failed; 1 conflicts, 0 identical changes\n\
         update/update interface \"nyc-r1__eth1\": not applied (safe)\n  \
         description    base(to-sw)    left(left)    right(right)"
    );
}

#[test]
fn a_per_type_strategy_and_a_closure_decide_their_types() {
    let (mut left, mut right, mut base) = agreed();
    set(&mut left.store, "interface", "nyc-r1__eth1", "description", "left");
    set(&mut right.store, "interface", "nyc-r1__eth1", "description", "right");
    set(&mut left.store, "site", "nyc", "region", "l");
    set(&mut right.store, "site", "nyc", "region", "r");
    let longest = Strategy::Custom(std::sync::Arc::new(|c: &diffsync::bidir::Conflict<'_>| {
        let len = |m: Option<&dyn diffsync::model::AnyModel>| {
            m.map_or(0, |m| m.attributes()["description"].to_string().len())
        };
        if len(c.left) >= len(c.right) {
            Resolution::Left
        } else {
            Resolution::Right
        }
    }));
    let opts = no_limit()
        .strategy(Strategy::RightWins)
        .strategy_for("interface", longest);
    let report = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
    assert_eq!(description(&right, "nyc-r1__eth1"), "right");
    assert_eq!(left.store.get(&Site::key("nyc")).unwrap().region, "r");
    let strategies: Vec<_> = report
        .conflicts
        .iter()
        .map(|c| (c.key.unique_id(), c.strategy.as_str()))
        .collect();
    assert_eq!(strategies, [("nyc", "right-wins"), ("nyc-r1__eth1", "custom")]);
}

#[test]
fn a_delete_on_one_side_flows_and_delete_against_update_conflicts() {
    let (mut left, mut right, mut base) = agreed();
    left.store.remove(key_of("interface:nyc-r1__eth1"), false).unwrap();
    right.store.remove(key_of("interface:sfo-r1__eth0"), false).unwrap();
    set(&mut left.store, "interface", "sfo-r1__eth0", "description", "kept?");
    let report = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    assert!(right.store.get_dyn(key_of("interface:nyc-r1__eth1")).is_err());
    let kinds: Vec<_> = report.conflicts.iter().map(|c| (c.kind, c.key.unique_id())).collect();
    assert_eq!(kinds, [(ConflictKind::UpdateDelete, "sfo-r1__eth0")]);
    assert!(
        left.store.get_dyn(key_of("interface:sfo-r1__eth0")).is_ok(),
        "safe: nothing applied"
    );
}

#[test]
fn a_child_changed_under_a_parent_deleted_on_the_other_side_keeps_the_parent() {
    for (strategy, survives) in [(Strategy::Safe, false), (Strategy::LeftWins, true)] {
        let (mut left, mut right, mut base) = agreed();
        set(
            &mut left.store,
            "interface",
            "nyc-r1__eth0",
            "description",
            "still here",
        );
        right.store.remove(key_of("device:nyc-r1"), true).unwrap();
        let report = reconcile(&mut left, &mut right, &mut base, &no_limit().strategy(strategy)).unwrap();
        let kinds: BTreeSet<_> = report.conflicts.iter().map(|c| (c.kind, c.key.unique_id())).collect();
        assert!(kinds.contains(&(ConflictKind::ChildUnderDelete, "nyc-r1")), "{report}");
        assert!(
            kinds.contains(&(ConflictKind::UpdateDelete, "nyc-r1__eth0")),
            "{report}"
        );
        assert_eq!(description(&left, "nyc-r1__eth0"), "still here");
        assert!(
            left.store.get_dyn(key_of("device:nyc-r1")).is_ok(),
            "the left keeps its device"
        );
        // Left wins: the modification beats the deletion, the device comes back on the right.
        assert_eq!(
            right.store.get_dyn(key_of("device:nyc-r1")).is_ok(),
            survives,
            "{report}"
        );
        if survives {
            assert_eq!(description(&right, "nyc-r1__eth0"), "still here");
        }
    }
}

#[test]
fn safety_rails_stop_before_writing() {
    let (mut left, mut right, mut base) = agreed();
    let mut empty = Inventory::empty("right");
    let err = reconcile(&mut left, &mut empty, &mut base, &no_limit()).unwrap_err();
    assert!(
        matches!(&err, Error::Reconcile(diffsync::ReconcileError::EmptySide { side, base: 7 }) if side == "right"),
        "{err}"
    );
    assert_eq!(left.store.count_all(), 7, "nothing deleted");
    right.store.remove(key_of("site:nyc"), true).unwrap();
    right.store.remove(key_of("site:sfo"), true).unwrap();
    right
        .store
        .add(Site {
            name: "x".into(),
            region: "y".into(),
        })
        .unwrap();
    let err = reconcile(&mut left, &mut right, &mut base, &BiOptions::new()).unwrap_err();
    assert!(
        matches!(&err, Error::Sync(diffsync::SyncError::TooManyDeletes { side, deletes: 7, total: 7, .. }) if side == "left"),
        "{err}"
    );
    assert_eq!(left.store.count_all(), 7, "nothing deleted");
    assert!(left.log.is_empty() && right.log.is_empty());
}

#[test]
fn a_dry_run_plans_and_writes_nothing() {
    let (mut left, mut right, mut base) = agreed();
    set(&mut left.store, "interface", "nyc-r1__eth0", "description", "planned");
    let report = reconcile(&mut left, &mut right, &mut base, &no_limit().dry_run(true)).unwrap();
    assert_eq!(report.to_right.totals().planned, 1);
    assert_eq!(description(&right, "nyc-r1__eth0"), "uplink");
    assert_eq!(description(&base_inventory(&base), "nyc-r1__eth0"), "uplink");
}

#[test]
fn an_observer_sees_the_plan_before_any_write_and_its_error_stops_the_run() {
    use diffsync::bidir::{ReconcileError, reconcile_observed};
    let (mut left, mut right, mut base) = agreed();
    set(&mut left.store, "interface", "nyc-r1__eth0", "description", "left's");
    set(&mut right.store, "site", "sfo", "region", "pacific");
    let mut seen = Vec::new();
    let err = reconcile_observed(&mut left, &mut right, &mut base, &no_limit(), |plan| {
        for (side, diff) in [("left", plan.to_left), ("right", plan.to_right)] {
            seen.extend(
                diff.iter()
                    .filter(|(e, _)| e.action != diffsync::Action::NoChange)
                    .map(|(e, _)| (side, e.unique_id().to_string())),
            );
        }
        Err("the journal is full".into())
    })
    .unwrap_err();
    assert!(
        matches!(err, Error::Reconcile(ReconcileError::Observer { .. })),
        "{err}"
    );
    assert_eq!(
        seen,
        [("left", "sfo".to_string()), ("right", "nyc-r1__eth0".to_string())]
    );
    // Nothing was written: each side still holds only its own edit.
    assert_eq!(description(&right, "nyc-r1__eth0"), "uplink");
    assert_eq!(description(&base_inventory(&base), "nyc-r1__eth0"), "uplink");
    let region = left.store.get(&typed_key::<Site>("site:sfo")).unwrap().region.clone();
    assert_ne!(region, "pacific");
}

fn base_inventory(base: &Base) -> Inventory {
    let mut inv = Inventory::empty("base");
    inv.store = base.store().clone();
    inv
}

#[test]
fn a_failed_hook_keeps_the_change_for_the_next_run() {
    let (mut left, mut right, mut base) = agreed();
    set(&mut left.store, "interface", "nyc-r1__eth0", "description", "new");
    right.fail.insert(("interface".into(), "nyc-r1__eth0".into()));
    let err = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap_err();
    let Error::Reconcile(diffsync::ReconcileError::Unfinished { side, report, .. }) = err else {
        panic!("{err}")
    };
    assert_eq!(side, "right");
    assert!(report.right_error.is_some());
    assert_eq!(
        description(&base_inventory(&base), "nyc-r1__eth0"),
        "uplink",
        "not agreed yet"
    );
    right.fail.clear();
    reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    assert_eq!(description(&right, "nyc-r1__eth0"), "new");
    assert_eq!(description(&base_inventory(&base), "nyc-r1__eth0"), "new");
}

#[test]
fn a_base_saves_and_loads() {
    let dir = std::env::temp_dir().join(format!("diffsync-base-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("base.json");
    let (_, _, base) = agreed();
    base.save(&path).unwrap();
    let like = Inventory::empty("x").store;
    let back = Base::load(&path, &like).unwrap();
    assert!(
        !base_inventory(&back)
            .diff_from(&base_inventory(&base))
            .unwrap()
            .has_diffs()
    );
    assert_eq!(
        back.store().parent(key_of("interface:nyc-r1__eth0")).unwrap(),
        Some(key_of("device:nyc-r1"))
    );
    assert!(Base::load(dir.join("missing.json"), &like).unwrap().is_empty());
    std::fs::write(&path, r#"{"format": "other", "version": 9, "models": []}"#).unwrap();
    let err = Base::load(&path, &like).err().unwrap();
    assert!(err.to_string().contains("rebuild it with a resync"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Random edits: (which interface, kind) where kind 0 = description,
/// 1 = mtu, 2 = delete.
fn edits() -> impl proptest::strategy::Strategy<Value = Vec<(u8, u8)>> {
    prop::collection::vec((0..6u8, 0..3u8), 0..6)
}

/// A base of 3 sites × 2 devices × 3 interfaces.
fn big_base(name: &str) -> Inventory {
    let mut inv = Inventory::empty(name);
    for s in 0..3 {
        let site = format!("s{s}");
        let h = inv
            .store
            .add(Site {
                name: site.clone(),
                region: "r".into(),
            })
            .unwrap();
        for d in 0..2 {
            let dev = format!("{site}-d{d}");
            let dh = inv
                .store
                .add_under(
                    h,
                    Device {
                        name: dev.clone(),
                        role: "x".into(),
                        serial: None,
                        db_pk: 0,
                        flags: Default::default(),
                    },
                )
                .unwrap();
            for i in 0..3 {
                inv.store
                    .add_under(
                        dh,
                        Interface {
                            device_name: dev.clone(),
                            name: format!("e{i}"),
                            description: "d".into(),
                            mtu: 1500,
                        },
                    )
                    .unwrap();
            }
        }
    }
    inv
}

fn apply(inv: &mut Inventory, edits: &[(u8, u8)], tag: &str, mtu: u32) -> BTreeSet<String> {
    let keys: Vec<String> = inv.store.get_all_dyn("interface").map(|m| m.unique_id()).collect();
    let mut touched = BTreeSet::new();
    for (which, kind) in edits {
        let key = &keys[(*which as usize * 3) % keys.len()];
        if inv.store.get_dyn(key_of(&format!("interface:{}", key))).is_err() {
            continue;
        }
        touched.insert(key.clone());
        match kind {
            0 => set(&mut inv.store, "interface", key, "description", tag),
            1 => {
                let v = [("mtu".into(), mtu.into())].into_iter().collect();
                inv.store
                    .update_attributes(key_of(&format!("interface:{}", key)), AttrSource::Values(&v))
                    .unwrap();
            }
            _ => inv.store.remove(key_of(&format!("interface:{}", key)), false).unwrap(),
        }
    }
    touched
}

fn state(inv: &Inventory) -> BTreeSet<(String, String, String)> {
    ["site", "device", "interface"]
        .iter()
        .flat_map(|t| {
            inv.store
                .get_all_dyn(t)
                .map(move |m| (t.to_string(), m.unique_id(), format!("{:?}", m.attributes())))
        })
        .collect()
}

/// The strategy seen from the other side.
fn mirrored(which: u8) -> (Strategy, Strategy) {
    match which {
        0 => (Strategy::LeftWins, Strategy::RightWins),
        1 => (Strategy::RightWins, Strategy::LeftWins),
        _ => (
            Strategy::Merge {
                fallback: Box::new(Strategy::LeftWins),
            },
            Strategy::Merge {
                fallback: Box::new(Strategy::RightWins),
            },
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn independent_edits_converge_and_conflicts_are_logged_once(
        l_edits in edits(), r_edits in edits(), which in 0..3u8, fail in prop::option::of((any::<bool>(), 0..18usize)),
    ) {
        let (mut left, mut right) = (big_base("left"), big_base("right"));
        let mut base = Base::from_store(big_base("base").store);
        let (lt, rt) = (apply(&mut left, &l_edits, "L", 9000), apply(&mut right, &r_edits, "R", 1400));
        let value = |i: &Inventory, k: &str| i.store.get_dyn(key_of(&format!("interface:{}", k))).ok().map(|m| m.attributes());
        let differently: Vec<String> = lt.intersection(&rt).filter(|k| value(&left, k) != value(&right, k)).cloned().collect();
        let (strategy, mirror) = mirrored(which);
        // The same run from the other side ends in the same state.
        let (mut m_left, mut m_right, mut m_base) = (right.clone(), left.clone(), base.clone());
        reconcile(&mut m_left, &mut m_right, &mut m_base, &no_limit().strategy(mirror)).unwrap();
        // A hook that fails on one side: the next run completes the work.
        let keys: Vec<String> = big_base("x").store.get_all_dyn("interface").map(|m| m.unique_id()).collect();
        if let Some((on_left, i)) = fail {
            let side = if on_left { &mut left } else { &mut right };
            side.fail.insert(("interface".into(), keys[i].clone()));
            match reconcile(&mut left, &mut right, &mut base, &no_limit().strategy(strategy.clone())) {
                Ok(_) | Err(Error::Reconcile(diffsync::ReconcileError::Unfinished { .. })) => {}
                Err(e) => panic!("{e}"),
            }
            left.fail.clear();
            right.fail.clear();
        }
        let report = reconcile(&mut left, &mut right, &mut base, &no_limit().strategy(strategy.clone())).unwrap();
        // Both sides end equal, and equal to the mirrored run.
        prop_assert!(!left.diff_from(&right).unwrap().has_diffs());
        prop_assert_eq!(state(&left), state(&m_left));
        // A key changed on one side only has that side's version.
        for k in lt.symmetric_difference(&rt) {
            let (changed, other) = if lt.contains(k) { (&left, &right) } else { (&right, &left) };
            prop_assert_eq!(changed.store.get_dyn(key_of(&format!("interface:{}", k))).ok().map(|m| m.attributes()),
                            other.store.get_dyn(key_of(&format!("interface:{}", k))).ok().map(|m| m.attributes()));
        }
        if fail.is_none() {
            // Keys changed differently on both sides are logged exactly once.
            let logged: Vec<&str> = report.conflicts.iter().map(|c| c.key.unique_id()).collect();
            let unique: BTreeSet<&str> = logged.iter().copied().collect();
            prop_assert_eq!(logged.len(), unique.len());
            for k in &differently {
                prop_assert!(unique.contains(k.as_str()), "{} not logged: {}", k, report);
            }
        }
        // The base is what both hold, and another run changes nothing.
        prop_assert!(!base_inventory(&base).diff_from(&left).unwrap().has_diffs());
        let again = reconcile(&mut left, &mut right, &mut base, &no_limit().strategy(strategy)).unwrap();
        prop_assert_eq!(again.to_left.totals().applied + again.to_right.totals().applied, 0);
        prop_assert!(again.conflicts.is_empty());
    }
}

/// Three sites whose edits on both sides cover every conflict kind.
fn every_kind() -> (Inventory, Inventory, Base) {
    let sites: &[diffsync_tests::SiteSpec<'_>] = &[
        (
            "nyc",
            "east",
            &[(
                "nyc-r1",
                "router",
                None,
                &[("eth0", "up", 1500), ("eth1", "down", 1500)],
            )],
        ),
        (
            "sfo",
            "west",
            &[(
                "sfo-r1",
                "router",
                None,
                &[("eth0", "a", 1500), ("eth1", "b", 1500), ("eth2", "c", 1500)],
            )],
        ),
        ("lon", "eu", &[("lon-r1", "edge", None, &[("eth0", "x", 9000)])]),
    ];
    let (mut left, mut right) = (Inventory::new("left", sites), Inventory::new("right", sites));
    let base = Base::from_store(Inventory::new("base", sites).store);
    // One side only.
    set(&mut left.store, "interface", "nyc-r1__eth0", "description", "uplink");
    set(&mut right.store, "site", "sfo", "region", "south");
    // update/update
    set(&mut left.store, "interface", "nyc-r1__eth1", "description", "left");
    set(&mut right.store, "interface", "nyc-r1__eth1", "description", "right");
    // update/delete and delete/update
    set(
        &mut left.store,
        "interface",
        "sfo-r1__eth0",
        "description",
        "kept on the left",
    );
    right.store.remove(key_of("interface:sfo-r1__eth0"), false).unwrap();
    left.store.remove(key_of("interface:sfo-r1__eth1"), false).unwrap();
    set(
        &mut right.store,
        "interface",
        "sfo-r1__eth1",
        "description",
        "kept on the right",
    );
    // create/create
    left.store
        .add(Site {
            name: "ams".into(),
            region: "eu".into(),
        })
        .unwrap();
    right
        .store
        .add(Site {
            name: "ams".into(),
            region: "europe".into(),
        })
        .unwrap();
    // A child changed under a device deleted on the other side.
    set(&mut left.store, "interface", "lon-r1__eth0", "description", "busy");
    right.store.remove(key_of("device:lon-r1"), true).unwrap();
    (left, right, base)
}

#[test]
fn dry_run_plans_and_conflict_logs_for_every_kind() {
    // A closure: a deletion loses, else the replica tiebreak.
    let keep = Strategy::Custom(std::sync::Arc::new(|c: &diffsync::bidir::Conflict<'_>| {
        match (c.left, c.right) {
            (Some(_), None) => Resolution::Left,
            (None, Some(_)) => Resolution::Right,
            _ => c.tiebreak(),
        }
    }));
    let strategies = [
        ("safe", no_limit()),
        ("left_wins", no_limit().strategy(Strategy::LeftWins)),
        ("right_wins", no_limit().strategy(Strategy::RightWins)),
        (
            "merge_right_wins",
            no_limit().strategy(Strategy::merge(Strategy::RightWins)),
        ),
        (
            "highest_mtu",
            no_limit()
                .strategy(Strategy::highest_by("mtu"))
                .strategy_for("site", Strategy::LeftWins)
                .strategy_for("device", Strategy::RightWins),
        ),
        ("custom", no_limit().strategy(keep)),
        (
            "right_wins_modification_beats_deletion",
            no_limit()
                .strategy(Strategy::RightWins)
                .modification_beats_deletion(true),
        ),
    ];
    for (name, opts) in strategies {
        let (mut left, mut right, mut base) = every_kind();
        let report = reconcile(&mut left, &mut right, &mut base, &opts.dry_run(true)).unwrap();
        insta::assert_snapshot!(format!("bidir_plan_{name}"), report.plan());
        assert!(left.log.is_empty() && right.log.is_empty(), "a dry run writes nothing");
    }
    let (mut left, mut right, mut base) = every_kind();
    let report = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    let mut log: Vec<diffsync::bidir::ConflictRecord> = Vec::new();
    report.log_to(&mut log).unwrap();
    // One run id for the run's records (it differs from run to run).
    assert!(!log[0].run.is_empty() && log.iter().all(|c| c.run == log[0].run));
    log.iter_mut().for_each(|c| c.run.clear());
    insta::assert_json_snapshot!("bidir_conflict_log", log);
}

fn stamped(name: &str, rows: &[(&str, &str, i64, i64)]) -> diffsync::MemoryAdapter {
    let s: std::sync::Arc<diffsync::ModelSchema> = std::sync::Arc::new(
        serde_json::from_value(serde_json::json!({
            "name": "rec", "identifiers": [{"name": "id"}],
            "attributes": [{"name": "value"}, {"name": "updated_at", "kind": "integer"}, {"name": "version", "kind": "integer"}],
        }))
        .unwrap(),
    );
    let mut a = diffsync::MemoryAdapter::new(name, &["rec"]);
    a.store.register_dyn(s.clone()).unwrap();
    for (id, value, at, version) in rows {
        let m = serde_json::json!({"id": id, "value": value, "updated_at": at, "version": version});
        a.store.add(diffsync::DynModel::from_json(&s, m).unwrap()).unwrap();
    }
    a
}

#[test]
fn newest_and_highest_decide_by_a_field_with_skew_and_a_replica_tiebreak() {
    let base = [("a", "0", 100, 1), ("b", "0", 100, 1), ("c", "0", 100, 1)];
    let left_rows = [("a", "L", 200, 5), ("b", "L", 300, 2), ("c", "L", 301, 3)];
    let right_rows = [("a", "R", 250, 3), ("b", "R", 299, 2), ("c", "R", 300, 9)];
    let run = |strategy: Strategy| {
        let (mut l, mut r) = (stamped("left", &left_rows), stamped("right", &right_rows));
        let mut b = Base::from_store(stamped("base", &base).store);
        let report = reconcile(&mut l, &mut r, &mut b, &no_limit().strategy(strategy)).unwrap();
        assert!(!l.diff_from(&r).unwrap().has_diffs());
        let value = |k: &str| l.store.get_dyn(key_of(&format!("rec:{}", k))).unwrap().attributes()["value"].clone();
        let winners: Vec<_> = ["a", "b", "c"].iter().map(|k| value(k)).collect();
        (
            winners,
            report
                .conflicts
                .iter()
                .map(|c| c.strategy.clone())
                .collect::<BTreeSet<_>>(),
        )
    };
    // a: right is newer; b, c: within a skew of 5 → the tiebreak ("right" sorts last).
    let (winners, names) = run(Strategy::newest_by("updated_at", 5.0));
    assert_eq!(winners, ["R", "R", "R"]);
    assert_eq!(names, ["newest(updated_at, 5)".to_string()].into());
    let (winners, _) = run(Strategy::newest_by("updated_at", 0.0));
    assert_eq!(winners, ["R", "L", "L"]);
    // Highest version: a left (5 > 3), b tie → tiebreak (right), c right (9 > 3).
    let (winners, _) = run(Strategy::highest_by("version"));
    assert_eq!(winners, ["L", "R", "R"]);
}

#[test]
fn a_merge_takes_each_sides_attributes_and_sends_the_overlap_to_the_fallback() {
    let merge = |fallback: Strategy| Strategy::Merge {
        fallback: Box::new(fallback),
    };
    let mtu = |i: &Inventory| i.store.get(&Interface::key("nyc-r1", "eth1")).unwrap().mtu;
    // Disjoint attributes: merged, each side writes only what it takes.
    let (mut left, mut right, mut base) = agreed();
    set(&mut left.store, "interface", "nyc-r1__eth1", "description", "left");
    let nine = [("mtu".into(), 9000.into())].into_iter().collect();
    right
        .store
        .update_attributes(key_of("interface:nyc-r1__eth1"), AttrSource::Values(&nine))
        .unwrap();
    let report = reconcile(
        &mut left,
        &mut right,
        &mut base,
        &no_limit().strategy(merge(Strategy::Safe)),
    )
    .unwrap();
    assert_eq!(report.conflicts[0].resolution, Resolution::Merge);
    // The record says what both sides now hold.
    let result = report.conflicts[0].result.as_ref().unwrap();
    assert_eq!((&result["description"], &result["mtu"]), (&"left".into(), &9000.into()));
    assert_eq!(
        (description(&right, "nyc-r1__eth1"), mtu(&right)),
        ("left".to_string(), 9000)
    );
    assert_eq!(
        (description(&left, "nyc-r1__eth1"), mtu(&left)),
        ("left".to_string(), 9000)
    );
    assert_eq!(left.log, ["update interface nyc-r1__eth1 {\"mtu\":9000}"]);
    assert_eq!(right.log, ["update interface nyc-r1__eth1 {\"description\":\"left\"}"]);
    assert_eq!(mtu(&base_inventory(&base)), 9000, "the merged model is agreed");
    // An attribute changed on both: the fallback decides it, or nothing is applied.
    for (fallback, expect) in [(Strategy::RightWins, Some("right")), (Strategy::Safe, None)] {
        let (mut left, mut right, mut base) = agreed();
        set(&mut left.store, "interface", "nyc-r1__eth1", "description", "left");
        set(&mut right.store, "interface", "nyc-r1__eth1", "description", "right");
        right
            .store
            .update_attributes(key_of("interface:nyc-r1__eth1"), AttrSource::Values(&nine))
            .unwrap();
        let report = reconcile(&mut left, &mut right, &mut base, &no_limit().strategy(merge(fallback))).unwrap();
        match expect {
            Some(d) => {
                assert_eq!((description(&left, "nyc-r1__eth1").as_str(), mtu(&left)), (d, 9000));
                assert!(!left.diff_from(&right).unwrap().has_diffs());
            }
            None => {
                assert_eq!(report.conflicts[0].resolution, Resolution::Skip);
                assert_eq!(mtu(&left), 1500);
            }
        }
    }
}

#[test]
fn a_resync_rebuilds_the_base_with_a_named_strategy() {
    let (mut left, mut right, _) = agreed();
    set(&mut left.store, "site", "nyc", "region", "l");
    set(&mut right.store, "site", "nyc", "region", "r");
    right
        .store
        .add(Site {
            name: "lax".into(),
            region: "west".into(),
        })
        .unwrap();
    let (base, report) =
        diffsync::bidir::resync(&mut left, &mut right, Strategy::RightWins, &BiOptions::new()).unwrap();
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.conflicts[0].kind, ConflictKind::CreateCreate);
    assert_eq!(left.store.get(&Site::key("nyc")).unwrap().region, "r");
    assert!(left.store.get_dyn(key_of("site:lax")).is_ok(), "the union");
    assert_eq!(base.len(), left.store.count_all());
}

#[test]
fn a_base_of_a_deep_self_referencing_chain_saves_and_loads() {
    let mut store = LocalStore::new("chain");
    let mut parent = None;
    for i in 0..1000 {
        let node = diffsync_tests::Node::new(format!("n{i}"), "x");
        parent = Some(match parent {
            None => store.add(node).unwrap(),
            Some(p) => store.add_under(p, node).unwrap(),
        });
    }
    let base = Base::from_store(store.clone());
    let back = Base::from_bytes(&base.to_bytes().unwrap(), &store, "memory").unwrap();
    assert_eq!(back.len(), 1000);
    assert_eq!(
        back.store().parent(key_of("node:n999")).unwrap(),
        Some(key_of("node:n998"))
    );
}

/// A config entry whose clock and version are declared on the fields.
#[derive(diffsync::DiffModel, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[diffsync(name = "setting")]
struct Setting {
    #[diffsync(id)]
    key: String,
    value: String,
    #[diffsync(timestamp)]
    changed_at: i64,
    #[diffsync(version)]
    revision: u32,
}

fn settings(name: &str, rows: &[(&str, &str, i64, u32)]) -> diffsync::MemoryAdapter {
    let mut a = diffsync::MemoryAdapter::new(name, &["setting"]);
    for (key, value, changed_at, revision) in rows {
        a.store
            .add(Setting {
                key: key.to_string(),
                value: value.to_string(),
                changed_at: *changed_at,
                revision: *revision,
            })
            .unwrap();
    }
    a
}

fn value_of(a: &diffsync::MemoryAdapter, key: &str) -> String {
    a.store
        .get(&typed_key::<Setting>(&format!("setting:{}", key)))
        .unwrap()
        .value
        .clone()
}

#[test]
fn declared_timestamp_and_version_fields_decide_and_are_logged_as_clocks() {
    let base = [("dns", "0", 100, 1), ("ntp", "0", 100, 1)];
    let (l, r) = (
        [("dns", "L", 200, 7), ("ntp", "L", 300, 2)],
        [("dns", "R", 250, 3), ("ntp", "R", 290, 9)],
    );
    for (strategy, dns, ntp) in [(Strategy::newest(0.0), "R", "L"), (Strategy::highest(), "L", "R")] {
        let (mut left, mut right) = (settings("site-a", &l), settings("site-b", &r));
        let mut b = Base::from_store(settings("base", &base).store);
        let name = strategy.name();
        let report = reconcile(&mut left, &mut right, &mut b, &no_limit().strategy(strategy)).unwrap();
        assert!(report.is_clean(), "{report}");
        insta::assert_snapshot!(format!("bidir_plan_settings_{name}"), report.plan());
        assert_eq!(
            (value_of(&left, "dns"), value_of(&right, "ntp")),
            (dns.into(), ntp.into())
        );
        let c = &report.conflicts[0];
        let clock = if name == "newest" { "changed_at" } else { "revision" };
        assert_eq!(c.clock.as_deref(), Some(clock));
        let field = |a: &Option<diffsync::Attrs>| a.as_ref().unwrap()[clock].clone();
        assert_eq!(
            (c.left_clock.clone(), c.right_clock.clone()),
            (Some(field(&c.left)), Some(field(&c.right)))
        );
        assert_eq!(
            (c.left_replica.as_str(), c.right_replica.as_str()),
            ("site-a", "site-b")
        );
        // The log names the strategy with the field it read.
        assert_eq!(report.conflicts_by_strategy(), [(format!("{name}({clock})"), 2)]);
    }
}

#[test]
fn a_strategy_needing_a_field_the_type_lacks_is_refused_before_any_write() {
    let (mut left, mut right, mut base) = agreed();
    set(&mut left.store, "site", "nyc", "region", "north");
    for strategy in [
        Strategy::newest(5.0),
        Strategy::highest_by("serial"),
        Strategy::newest_by("nope", 0.0),
    ] {
        let err = reconcile(&mut left, &mut right, &mut base, &no_limit().strategy(strategy)).unwrap_err();
        assert!(
            matches!(&err, Error::Reconcile(diffsync::ReconcileError::Strategy { model_type, .. }) if model_type == "site"),
            "{err}"
        );
        assert!(right.log.is_empty() && left.log.is_empty());
    }
    // Named for the one type that has the field, and decided by it.
    let err = reconcile(
        &mut left,
        &mut right,
        &mut base,
        &no_limit().strategy(Strategy::newest(5.0)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("#[diffsync(timestamp)]") && err.contains("\"site\""),
        "{err}"
    );
    assert_eq!(right.store.get(&Site::key("nyc")).unwrap().region, "east");
}

#[test]
fn a_runtime_schema_names_its_strategy_and_the_run_can_override_it() {
    let schema = |strategy: &str| -> std::sync::Arc<diffsync::ModelSchema> {
        std::sync::Arc::new(
            serde_json::from_value(serde_json::json!({
                "name": "rec", "identifiers": [{"name": "id"}], "strategy": strategy, "timestamp": "at",
                "attributes": [{"name": "value"}, {"name": "at", "kind": "integer"}],
            }))
            .unwrap(),
        )
    };
    let side = |name: &str, strategy: &str, value: &str, at: i64| {
        let s = schema(strategy);
        let mut a = diffsync::MemoryAdapter::new(name, &["rec"]);
        a.store.register_dyn(s.clone()).unwrap();
        let m = serde_json::json!({"id": "x", "value": value, "at": at});
        a.store.add(diffsync::DynModel::from_json(&s, m).unwrap()).unwrap();
        a
    };
    let run = |strategy: &str, opts: BiOptions| {
        let (mut l, mut r) = (side("l", strategy, "L", 10), side("r", strategy, "R", 5));
        let mut b = Base::from_store(side("b", strategy, "0", 0).store);
        let report = reconcile(&mut l, &mut r, &mut b, &opts).unwrap();
        (
            report.conflicts[0].strategy.clone(),
            r.store.get_dyn(key_of("rec:x")).unwrap().attributes()["value"].clone(),
        )
    };
    assert_eq!(run("right-wins", no_limit()), ("right-wins".into(), "R".into()));
    assert_eq!(run("newest", no_limit()), ("newest(at)".into(), "L".into()));
    let opts = no_limit().strategy_for("rec", Strategy::RightWins);
    assert_eq!(run("newest", opts), ("right-wins".into(), "R".into()));
    // A schema naming an unknown strategy is refused when it is registered.
    let bad: diffsync::ModelSchema = serde_json::from_value(serde_json::json!({
        "name": "rec", "identifiers": [{"name": "id"}], "strategy": "loudest",
    }))
    .unwrap();
    let err = LocalStore::new("x").register_dyn(std::sync::Arc::new(bad)).unwrap_err();
    assert!(err.to_string().contains("\"loudest\""), "{err}");
}

#[test]
fn modification_beats_deletion_when_asked_whatever_the_strategy() {
    for beats in [false, true] {
        let (mut left, mut right, mut base) = agreed();
        right.store.remove(key_of("interface:sfo-r1__eth0"), false).unwrap();
        set(&mut left.store, "interface", "sfo-r1__eth0", "description", "edited");
        left.store.remove(key_of("interface:nyc-r1__eth1"), false).unwrap();
        set(&mut right.store, "interface", "nyc-r1__eth1", "description", "edited");
        let opts = no_limit()
            .strategy(Strategy::LeftWins)
            .modification_beats_deletion(beats);
        let report = reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
        let on_right = right.store.get_dyn(key_of("interface:sfo-r1__eth0")).is_ok();
        let on_left = left.store.get_dyn(key_of("interface:nyc-r1__eth1")).is_ok();
        // Left wins: its update comes back to the right either way; its
        // delete of nyc-r1__eth1 wins only when deletions may win.
        assert_eq!((on_right, on_left), (true, beats), "{report}");
        let by: Vec<_> = report.conflicts_by_strategy().into_iter().map(|(s, _)| s).collect();
        let expect = if beats {
            "modification beats deletion"
        } else {
            "left-wins"
        };
        assert_eq!(by, [expect], "{report}");
        assert!(!left.diff_from(&right).unwrap().has_diffs());
    }
}

proptest! {
    #[test]
    fn a_strategys_text_form_reads_back(
        field in proptest::option::of("[a-z_]{1,8}"),
        skew in prop_oneof![Just(0.0), 1.0f64..1e6],
        which in 0u8..6,
        depth in 0usize..3,
    ) {
        let mut s = match which {
            0 => Strategy::Safe,
            1 => Strategy::LeftWins,
            2 => Strategy::RightWins,
            3 => Strategy::Newest { field: field.clone(), skew },
            _ => Strategy::Highest { field: field.clone() },
        };
        for _ in 0..depth {
            s = Strategy::merge(s);
        }
        let back = Strategy::parse(&s.name()).unwrap();
        prop_assert_eq!(back.name(), s.name());
    }
}

#[test]
fn a_malformed_strategy_text_is_a_typed_error() {
    for text in [
        "newest(",
        "newest(at, -3)",
        "merge(oldest)",
        "custom",
        "highest(a b)",
        "",
    ] {
        assert!(
            matches!(
                Strategy::parse(text),
                Err(Error::Reconcile(diffsync::ReconcileError::Strategy { .. }))
            ),
            "{text}"
        );
    }
}

#[test]
fn a_base_file_loads_whatever_the_order_of_its_records_and_refuses_a_missing_parent() {
    let like = diffsync_tests::Inventory::empty("like").store;
    let record =
        |t: &str, key: &str, parent: Option<(&str, &str)>, ids: serde_json::Value, attrs: serde_json::Value| {
            let mut r = serde_json::json!({"model_type": t, "key": key, "identifiers": ids, "attributes": attrs});
            if let Some(p) = parent {
                r["parent"] = serde_json::json!(p);
            }
            r
        };
    let intf = record(
        "interface",
        "r1__eth0",
        Some(("device", "r1")),
        serde_json::json!({"device_name": "r1", "name": "eth0"}),
        serde_json::json!({"description": "up", "mtu": 1500}),
    );
    let dev = record(
        "device",
        "r1",
        Some(("site", "nyc")),
        serde_json::json!({"name": "r1"}),
        serde_json::json!({"role": "edge", "serial": null}),
    );
    let site = record(
        "site",
        "nyc",
        None,
        serde_json::json!({"name": "nyc"}),
        serde_json::json!({"region": "east"}),
    );
    let file = |models: Vec<serde_json::Value>| {
        serde_json::to_vec(&serde_json::json!({"format": "diffsync-base", "version": 1, "models": models})).unwrap()
    };
    let base = Base::from_bytes(&file(vec![intf.clone(), dev.clone(), site]), &like, "hand-written").unwrap();
    assert_eq!(
        base.store().parent(key_of("interface:r1__eth0")).unwrap(),
        Some(key_of("device:r1"))
    );
    assert_eq!(
        base.store().parent(key_of("device:r1")).unwrap(),
        Some(key_of("site:nyc"))
    );
    let err = Base::from_bytes(&file(vec![intf, dev]), &like, "hand-written").unwrap_err();
    assert!(
        matches!(&err, Error::Reconcile(diffsync::ReconcileError::Base { path, message }) if path == "hand-written" && message.contains("site \"nyc\"")),
        "{err}"
    );
}
