//! Trust at the seams: no mode loses an edit or hides a conflict where it
//! meets a system that refused a write, a restart, a schema change or a
//! diff read from a file.

use diffsync::bidir::{Base, BiOptions, reconcile};
use diffsync::{AttrSource, Error, LocalStore};
use diffsync_tests::{Interface, Inventory, Site, sys_a};

fn no_limit() -> BiOptions {
    BiOptions::new().max_delete_share(None)
}

fn set(store: &mut LocalStore, ty: &str, key: &str, attr: &str, value: &str) {
    let values = [(attr.to_string().into(), value.into())].into_iter().collect();
    store.update_attributes(ty, key, AttrSource::Values(&values)).unwrap();
}

fn named(mut inv: Inventory, name: &str) -> Inventory {
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
    left.store.remove("interface", "nyc-r1__eth1", false).unwrap();
    // The right's system takes nothing (its write at the end fails), while
    // its store's image takes everything.
    let system = right.store.clone();
    right.fail_complete = true;
    let err = reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap_err();
    let Error::Unfinished { side, report, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(side, "right");
    assert!(err.to_string().starts_with("reconcile unfinished"), "{err}");
    assert!(
        report.to_string().starts_with("UNFINISHED: the sync to right stopped"),
        "{report}"
    );
    // The base holds none of it.
    assert!(base.store().get_dyn("site", "ams").is_err());
    assert_eq!(base.store().get::<Site>("site", "sfo").unwrap().region, "west");
    assert!(base.store().get_dyn("interface", "nyc-r1__eth1").is_ok());

    // A restart: the right is read again from its system.
    right.store = system;
    right.fail_complete = false;
    reconcile(&mut left, &mut right, &mut base, &no_limit()).unwrap();
    for side in [&left, &right] {
        assert!(
            side.store.get_dyn("site", "ams").is_ok(),
            "{} lost the create",
            side.name
        );
        assert_eq!(side.store.get::<Site>("site", "sfo").unwrap().region, "south");
        assert!(
            side.store.get::<Interface>("interface", "nyc-r1__eth1").is_err(),
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
        Err(Error::Unfinished { .. })
    ));
    right.fail.clear();
    assert_eq!(run(&mut left, &mut right, &mut base).unwrap(), 0);
}
