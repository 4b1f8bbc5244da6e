//! Runtime-defined models: schemas read from JSON, values checked, and full
//! interoperation with derived models in diff and sync.

use std::sync::Arc;

use diffsync::{AdapterExt, DiffModel, DynModel, LocalStore, MemoryAdapter, ModelSchema};
use diffsync_tests::key_of;
use diffsync_tests::{Device, Interface, sys_a, sys_b};
use serde_json::json;

const SCHEMAS: &str = r#"[
  {"name": "site", "identifiers": [{"name": "name", "kind": "string"}],
   "attributes": [{"name": "region", "kind": "string"}], "children": ["device"]},
  {"name": "device", "identifiers": [{"name": "name", "kind": "string"}],
   "attributes": [{"name": "role", "kind": "string"}, {"name": "serial", "kind": "string", "optional": true}],
   "children": ["interface"]},
  {"name": "interface",
   "identifiers": [{"name": "device_name", "kind": "string"}, {"name": "name", "kind": "string"}],
   "attributes": [{"name": "description", "kind": "string"}, {"name": "mtu", "kind": "integer"}],
   "shortname": ["name"]}
]"#;

fn schemas() -> Vec<Arc<ModelSchema>> {
    let list: Vec<ModelSchema> = serde_json::from_str(SCHEMAS).unwrap();
    list.into_iter().map(Arc::new).collect()
}

/// System B of the worked example, built only from schemas and JSON values.
fn dyn_sys_b() -> MemoryAdapter {
    let s = schemas();
    let mut store = LocalStore::new("sys-b");
    for schema in &s {
        store.register_dyn(schema.clone()).unwrap();
    }
    let m = |i: usize, v: serde_json::Value| DynModel::from_json(&s[i], v).unwrap();
    store.add(m(0, json!({"name": "nyc", "region": "east"}))).unwrap();
    store
        .add_child(
            key_of("site:nyc"),
            m(1, json!({"name": "nyc-r1", "role": "edge", "serial": "A1"})),
        )
        .unwrap();
    for (n, d) in [("eth0", "UPLINK"), ("eth2", "new")] {
        let v = json!({"device_name": "nyc-r1", "name": n, "description": d, "mtu": 1500});
        store.add_child(Device::key("nyc-r1"), m(2, v)).unwrap();
    }
    store.add(m(0, json!({"name": "lax", "region": "west"}))).unwrap();
    store
        .add_child(key_of("site:lax"), m(1, json!({"name": "lax-r1", "role": "router"})))
        .unwrap();
    let v = json!({"device_name": "lax-r1", "name": "eth0", "description": "uplink", "mtu": 1500});
    store.add_child(Device::key("lax-r1"), m(2, v)).unwrap();
    MemoryAdapter::with_store("sys-b", &["site"], store)
}

#[test]
fn runtime_models_diff_like_derived_ones() {
    let derived = sys_a().diff_from(&sys_b()).unwrap();
    let dynamic = sys_a().diff_from(&dyn_sys_b()).unwrap();
    assert_eq!(dynamic.summary(), derived.summary());
    assert_eq!(dynamic.to_string(), derived.to_string());
}

#[test]
fn derived_adapter_syncs_from_a_runtime_one() {
    let source = dyn_sys_b();
    let mut target = sys_a();
    target.sync_from(&source).unwrap();
    assert!(!target.diff_from(&source).unwrap().has_diffs());
    // Creates were converted into the destination's own types.
    let d: &Device = target.store.get_as(key_of("device:lax-r1")).unwrap();
    assert_eq!((d.role.as_str(), d.serial.as_deref()), ("router", None));
    let i: &Interface = target.store.get_as(key_of("interface:nyc-r1__eth2")).unwrap();
    assert_eq!(i.description, "new");
}

#[test]
fn runtime_adapter_syncs_from_a_derived_one() {
    let mut target = dyn_sys_b();
    let source = sys_a();
    target.sync_from(&source).unwrap();
    assert!(!target.diff_from(&source).unwrap().has_diffs());
    let d = target.store.get_as::<DynModel>(&key_of("device:sfo-r1")).unwrap();
    assert_eq!(d.attribute("role"), Some(json!("router")));
}

#[test]
fn values_are_checked_against_the_schema() {
    let s = schemas();
    let err = DynModel::from_json(
        &s[2],
        json!({"device_name": "r1", "name": "eth0", "description": "x", "mtu": "big"}),
    )
    .unwrap_err();
    assert!(
        matches!(&err, diffsync::ModelError::InvalidValue { model_type, key, field, .. }
            if model_type == "interface" && key == "r1__eth0" && field == "mtu"),
        "{err}"
    );
    let err = DynModel::from_json(&s[1], json!({"name": "r1"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"device:r1: field "role": missing value for a required field"#
    );
    let mut ok = DynModel::from_json(&s[1], json!({"name": "r1", "role": "edge"})).unwrap();
    let bad: diffsync::Attrs = [("role".into(), json!(5))].into_iter().collect();
    assert!(ok.set_attributes(&bad).is_err());
    assert_eq!(
        ok.attribute("role"),
        Some(json!("edge")),
        "failed update leaves the model unchanged"
    );
}

#[test]
fn malformed_schemas_are_rejected_with_the_type_named() {
    let no_ids: ModelSchema = serde_json::from_str(r#"{"name": "vlan", "identifiers": []}"#).unwrap();
    let err = LocalStore::new("x").register_dyn(Arc::new(no_ids)).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"schema for "vlan": a model type needs at least one identifier"#
    );
    let dup: ModelSchema =
        serde_json::from_str(r#"{"name": "vlan", "identifiers": [{"name": "vid"}], "attributes": [{"name": "vid"}]}"#)
            .unwrap();
    assert!(
        dup.validate()
            .unwrap_err()
            .to_string()
            .contains(r#"field "vid" is listed twice"#)
    );
}

#[test]
fn derived_set_attributes_is_all_or_nothing() {
    let mut i = Interface {
        device_name: "r1".into(),
        name: "eth0".into(),
        description: "old".into(),
        mtu: 1500,
    };
    let bad: diffsync::Attrs = [("description".into(), json!("new")), ("mtu".into(), json!("big"))]
        .into_iter()
        .collect();
    let err = i.set_attributes(&bad).unwrap_err();
    assert!(
        matches!(&err, diffsync::ModelError::InvalidValue { model_type, key, field, .. }
            if model_type == "interface" && key == "r1__eth0" && field == "mtu"),
        "{err}"
    );
    assert_eq!(i.description, "old");
}

#[test]
fn schema_of_a_derived_model_is_serializable() {
    let schema = <Interface as diffsync::StaticModel>::static_schema();
    let json = serde_json::to_value(schema).unwrap();
    let back: ModelSchema = serde_json::from_value(json).unwrap();
    assert_eq!(&back, schema);
    assert_eq!(back.shortname.len(), 1);
}
