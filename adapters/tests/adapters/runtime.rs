//! Types described at run time (as a config file would): a JSON document
//! of sites and their devices synced into SQLite tables and back, with no
//! Rust type behind them; a schema that does not hold and a record that
//! does not fit are typed errors naming them.

use std::sync::Arc;

use diffsync::{Adapter, AdapterExt, ModelSchema};
use diffsync_adapters::Registry;
use diffsync_adapters::files::{FileAdapter, Format};
use diffsync_adapters::sqlite::SqliteAdapter;
use diffsync_tests::key_of;

fn schema(json: serde_json::Value) -> Arc<ModelSchema> {
    Arc::new(serde_json::from_value(json).unwrap())
}

fn registry() -> Registry {
    let site = schema(serde_json::json!({
        "name": "site",
        "identifiers": [{"name": "name", "kind": "string"}],
        "attributes": [{"name": "region", "kind": "string"}],
        "children": ["device"]
    }));
    let device = schema(serde_json::json!({
        "name": "device",
        "identifiers": [{"name": "name", "kind": "string"}],
        "attributes": [{"name": "role", "kind": "string"}, {"name": "rack", "kind": "integer", "optional": true}]
    }));
    Registry::new().with_schema(site).unwrap().with_schema(device).unwrap()
}

#[test]
fn runtime_types_sync_from_a_file_into_sqlite_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("inventory.json");
    std::fs::write(
        &doc,
        r#"{"site": [
            {"name": "nyc", "region": "east", "device": [{"name": "nyc-r1", "role": "edge", "rack": 4}]},
            {"name": "sfo", "region": "west", "device": [{"name": "sfo-r1", "role": "core"}]}
        ]}"#,
    )
    .unwrap();
    let file = FileAdapter::open("file", &doc, Format::Json, registry()).unwrap();
    let db_path = dir.path().join("inventory.db");
    let mut db = SqliteAdapter::open("db", &db_path, registry()).unwrap();
    let report = db.sync_from(&file).unwrap();
    assert!(report.is_success() && report.totals().applied == 4, "{report}");
    // The rows, read again by a fresh adapter, are the document.
    let reread = SqliteAdapter::open("db", &db_path, registry()).unwrap();
    assert_eq!(reread.store().fingerprint(), file.store().fingerprint());
    let rack = reread.store().get_dyn(key_of("device:nyc-r1")).unwrap().attributes()["rack"].clone();
    assert_eq!(rack, 4);
    assert_eq!(
        reread.store().parent(key_of("device:sfo-r1")).unwrap(),
        Some(key_of("site:sfo"))
    );
    // And back into a new document.
    let out = dir.path().join("out.yaml");
    let mut copy = FileAdapter::open_or_empty("copy", &out, Format::Yaml, registry()).unwrap();
    copy.sync_from(&reread).unwrap();
    let again = FileAdapter::open("copy", &out, Format::Yaml, registry()).unwrap();
    assert_eq!(again.store().fingerprint(), file.store().fingerprint());
}

#[test]
fn a_runtime_schema_or_record_that_does_not_hold_is_named() {
    let no_identifier = schema(serde_json::json!({"name": "site", "identifiers": []}));
    let err = Registry::new().with_schema(no_identifier).err().unwrap();
    assert!(err.to_string().contains("site"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("bad.json");
    std::fs::write(&doc, r#"{"site": [{"name": "nyc", "region": 7}]}"#).unwrap();
    let err = FileAdapter::open("file", &doc, Format::Json, registry()).err().unwrap();
    let text = diffsync::Chain(&err).to_string();
    assert!(text.contains("nyc") && text.contains("region"), "{text}");
}
