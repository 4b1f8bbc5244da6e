//! Text rendering details: multi-line strings, summary line, no diffs.

use diffsync::{AdapterExt, ChildOrder, Options};
use diffsync_tests::{Inventory, sys_a, sys_b};

fn with_description(name: &str, descr: &str) -> Inventory {
    Inventory::new(
        name,
        &[("nyc", "east", &[("r1", "router", None, &[("eth0", descr, 1500)])])],
    )
}

#[test]
fn multi_line_strings_render_as_unified_line_diff() {
    let source = with_description("netbox", "uplink to core\nvlan 10\nvlan 20\nmanaged\n");
    let target = with_description("device", "uplink to core\nvlan 10\nvlan 30\nmanaged\n");
    let diff = target.diff_from(&source).unwrap();
    insta::assert_snapshot!("multi_line_description", diff.to_string());
}

#[test]
fn summary_line_names_both_sides() {
    let diff = sys_a().diff_from(&sys_b()).unwrap();
    assert_eq!(
        diff.summary_line(),
        "sys-b \u{2192} sys-a: create: 4, update: 2, delete: 4, no-change: 1, skip: 0"
    );
}

#[test]
fn child_order_by_key_and_custom() {
    let source = Inventory::new(
        "src",
        &[(
            "nyc",
            "east",
            &[(
                "r1",
                "router",
                None,
                &[("eth9", "x", 1), ("eth1", "x", 1), ("eth5", "x", 1)],
            )],
        )],
    );
    let target = Inventory::new("dst", &[("nyc", "east", &[("r1", "router", None, &[])])]);
    let insertion = target.diff_from(&source).unwrap();
    let by_key = target
        .diff_from_with(&source, &mut Options::new().order("interface", ChildOrder::ByKey))
        .unwrap();
    let reverse = ChildOrder::Custom(std::sync::Arc::new(|a, b| b.key.cmp(&a.key)));
    let custom = target
        .diff_from_with(&source, &mut Options::new().order("interface", reverse))
        .unwrap();
    insta::assert_snapshot!(
        "child_order",
        format!("insertion:\n{insertion}\n\nby key:\n{by_key}\n\ncustom (reverse key):\n{custom}")
    );
    // The sync follows the diff's order.
    let mut t = target.clone();
    t.sync_diff_from(&source, &by_key, &mut Options::new()).unwrap();
    assert_eq!(
        t.log.iter().map(|l| l.split(' ').nth(2).unwrap()).collect::<Vec<_>>(),
        ["r1__eth1", "r1__eth5", "r1__eth9"]
    );
}
