//! Per-field comparison overrides.

use diffsync::{AdapterExt, DiffModel, MemoryAdapter};

fn close_enough(a: &f64, b: &f64) -> bool {
    (a - b).abs() < 0.5
}

#[derive(DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "vlan_group")]
struct Group {
    #[diffsync(id)]
    name: String,
    #[diffsync(compare = "unordered")]
    members: Vec<u16>,
    #[diffsync(compare = "ignore_case")]
    label: String,
    #[diffsync(compare_with = close_enough)]
    speed: f64,
    tags: Vec<String>,
}

fn group(members: &[u16], label: &str, speed: f64, tags: &[&str]) -> Group {
    Group {
        name: "g".into(),
        members: members.to_vec(),
        label: label.into(),
        speed,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

#[test]
fn overrides_make_equivalent_values_equal() {
    let a = group(&[1, 2, 3], "Users", 10.0, &["x", "y"]);
    let b = group(&[3, 1, 2], "USERS", 10.2, &["x", "y"]);
    assert!(a.attributes_equal(&b));
}

#[test]
fn overrides_still_see_real_differences() {
    let a = group(&[1, 2, 3], "Users", 10.0, &["x", "y"]);
    let cases = [
        (group(&[1, 2, 2], "Users", 10.0, &["x", "y"]), 0),
        (group(&[1, 2, 3], "Admins", 10.0, &["x", "y"]), 1),
        (group(&[1, 2, 3], "Users", 11.0, &["x", "y"]), 2),
        (group(&[1, 2, 3], "Users", 10.0, &["y", "x"]), 3), // plain Vec: order matters
    ];
    for (b, index) in cases {
        let mut changed = Vec::new();
        a.changed_attributes(&b, &mut changed);
        assert_eq!(changed, [index], "{b:?}");
        assert!(!a.attributes_equal(&b));
    }
}

#[test]
fn overrides_apply_in_a_diff_and_schema_records_them() {
    let mut a = MemoryAdapter::new("a", &["vlan_group"]);
    a.store.add(group(&[1, 2], "Users", 1.0, &[])).unwrap();
    let mut b = MemoryAdapter::new("b", &["vlan_group"]);
    b.store.add(group(&[2, 1], "users", 1.1, &[])).unwrap();
    assert!(!a.diff_from(&b).unwrap().has_diffs());
    let schema = <Group as diffsync::StaticModel>::static_schema();
    let modes: Vec<_> = schema.attributes.iter().map(|f| f.compare).collect();
    use diffsync::model::Compare::*;
    assert_eq!(modes, [Unordered, IgnoreCase, Custom, Exact]);
}
