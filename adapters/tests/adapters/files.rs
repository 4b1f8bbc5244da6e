//! File adapters: every format round-trips, writes are atomic, bad input is
//! reported with its place.

use diffsync::{Adapter, Error};
use diffsync_adapters::{AdapterError, FileAdapter, Format};

use crate::common::{inventory, registry};

#[test]
fn every_format_round_trips_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let source = inventory("cmdb", 3, 0);
    for (file, format) in [
        ("inv.json", Format::Json),
        ("inv.yaml", Format::Yaml),
        ("inv.toml", Format::Toml),
        ("csv", Format::Csv),
    ] {
        let path = dir.path().join(file);
        let mut target = FileAdapter::open("file", &path, format, registry()).unwrap();
        let report = target.sync_from(&source).unwrap();
        assert_eq!(report.totals().applied, 3 * (1 + 2 * 4), "{file}");
        let reopened = FileAdapter::open("file", &path, format, registry()).unwrap();
        let diff = reopened.diff_from(&source).unwrap();
        assert!(!diff.has_diffs(), "{file}:\n{diff}");
        // An incremental change rewrites the file with only that change to apply next time.
        let changed = inventory("cmdb", 3, 1);
        let mut target = reopened;
        let s = target.diff_from(&changed).unwrap().summary();
        assert_eq!((s.create, s.update), (6, 3 + 18), "{file}");
        target.sync_from(&changed).unwrap();
        let again = FileAdapter::open("file", &path, format, registry()).unwrap();
        assert!(!again.diff_from(&changed).unwrap().has_diffs(), "{file}");
    }
}

#[test]
fn format_is_chosen_by_extension() {
    use std::path::Path;
    assert_eq!(Format::from_path(Path::new("a.yml")), Some(Format::Yaml));
    assert_eq!(Format::from_path(Path::new("a.toml")), Some(Format::Toml));
    assert_eq!(Format::from_path(Path::new("a.json")), Some(Format::Json));
    assert_eq!(Format::from_path(Path::new("a.txt")), None);
}

#[test]
fn a_failed_write_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.json");
    let mut target = FileAdapter::open("file", &path, Format::Json, registry()).unwrap();
    target.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    let before = std::fs::read_to_string(&path).unwrap();
    let mut bad = inventory("cmdb", 1, 0);
    bad.store
        .update_attributes(
            "interface",
            "site0-r0__eth1",
            diffsync::AttrSource::Values(
                &[("description".into(), serde_json::json!("boom"))]
                    .into_iter()
                    .collect(),
            ),
        )
        .unwrap();
    let err = target.sync_from(&bad).unwrap_err();
    assert!(matches!(err, Error::SyncComplete { .. }), "{err}");
    assert!(err.to_string().contains("refusing to write boom"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
}

fn open_err(name: &str, text: &str, format: Format) -> AdapterError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    match FileAdapter::open("f", &path, format, registry()) {
        Ok(_) => panic!("{name} should not load"),
        Err(e) => e,
    }
}

#[test]
fn malformed_json_names_path_line_and_column() {
    let err = open_err(
        "bad.json",
        "{\"site\": [\n  {\"name\": \"a\", \"region\": }\n]}",
        Format::Json,
    );
    let AdapterError::Parse { path, line, column, .. } = &err else {
        panic!("{err}")
    };
    assert!(path.ends_with("bad.json"));
    assert_eq!((*line, *column), (2, 27), "{err}");
    assert_eq!(err.to_string(), format!("{path}:2:27: expected value"));
}

#[test]
fn malformed_yaml_and_toml_name_the_line() {
    let err = open_err("bad.yaml", "site:\n  - name: a\n    region: [east\n", Format::Yaml);
    assert!(matches!(&err, AdapterError::Parse { line, .. } if *line >= 3), "{err}");
    let err = open_err("bad.toml", "[[site]]\nname = \"a\"\nregion = \n", Format::Toml);
    assert!(matches!(&err, AdapterError::Parse { line: 3, .. }), "{err}");
}

#[test]
fn wrong_field_type_names_model_key_and_field() {
    let text = r#"{"site": [{"name": "a", "region": "east", "device": [{"name": "r1", "role": 7}]}]}"#;
    let err = open_err("types.json", text, Format::Json);
    let msg = err.to_string();
    assert!(
        matches!(&err, AdapterError::Model { model_type, key, .. } if model_type == "device" && key == "r1"),
        "{msg}"
    );
    assert!(msg.contains("invalid type: integer `7`"), "{msg}");
}

#[test]
fn duplicate_key_in_a_source_names_the_key() {
    let text = r#"{"site": [{"name": "a", "region": "east"}, {"name": "a", "region": "west"}]}"#;
    let err = open_err("dup.json", text, Format::Json);
    assert_eq!(err.to_string(), r#"site "a" already exists in store "f""#);
}

#[test]
fn unknown_model_type_lists_the_registered_ones() {
    let err = open_err("unknown.json", r#"{"rack": []}"#, Format::Json);
    assert_eq!(
        err.to_string(),
        r#"unknown model type "rack"; registered: [site, device, interface]"#
    );
}

#[test]
fn csv_bad_cell_names_file_line_and_column_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("site.csv"), "name,region\na,east\n").unwrap();
    std::fs::write(dir.path().join("device.csv"), "name,role,serial,_parent\nr1,leaf,,a\n").unwrap();
    std::fs::write(
        dir.path().join("interface.csv"),
        "device,name,description,mtu,enabled,_parent\nr1,eth0,x,1500,true,r1\nr1,eth1,y,big,false,r1\n",
    )
    .unwrap();
    let err = match FileAdapter::open("f", dir.path(), Format::Csv, registry()) {
        Ok(_) => panic!("should not load"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(msg.contains("interface.csv:3:"), "{msg}");
    assert!(msg.contains("column \"mtu\""), "{msg}");
}
