//! File adapters: every format round-trips, writes are atomic, bad input is
//! reported with its place.

use diffsync::{Adapter, AdapterExt, Chain, Error};
use diffsync_adapters::{AdapterError, FileAdapter, Format};

use crate::common::{inventory, registry};
use diffsync_tests::key_of;

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
        let mut target = FileAdapter::open_or_empty("file", &path, format, registry()).unwrap();
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
    let mut target = FileAdapter::open_or_empty("file", &path, Format::Json, registry()).unwrap();
    target.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    let before = std::fs::read_to_string(&path).unwrap();
    let mut bad = inventory("cmdb", 1, 0);
    bad.store
        .update_attributes(
            key_of("interface:site0-r0__eth1"),
            diffsync::AttrSource::Values(
                &[("description".into(), serde_json::json!("boom"))]
                    .into_iter()
                    .collect(),
            ),
        )
        .unwrap();
    let err = target.sync_from(&bad).unwrap_err();
    assert!(
        matches!(err, Error::Sync(diffsync::SyncError::Complete { .. })),
        "{err}"
    );
    assert!(Chain(&err).to_string().contains("refusing to write boom"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    // The store holds what the file does, so the next diff shows the work again.
    assert_eq!(target.diff_from(&bad).unwrap().summary().update, 1);
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
        matches!(&err, AdapterError::Record { model_type, key, line: 1, .. } if model_type == "device" && key == "r1"),
        "{msg}"
    );
    assert!(msg.contains("invalid type: integer `7`"), "{msg}");
}

#[test]
fn duplicate_key_in_a_source_names_the_key() {
    let text = r#"{"site": [{"name": "a", "region": "east"}, {"name": "a", "region": "west"}]}"#;
    let err = open_err("dup.json", text, Format::Json);
    assert!(
        err.to_string()
            .ends_with(r#"dup.json:1:44: site:a: a second record with the same identifiers"#),
        "{err}"
    );
}

#[test]
fn unknown_model_type_lists_the_registered_ones() {
    let err = open_err("unknown.json", r#"{"rack": []}"#, Format::Json);
    assert!(
        err.to_string()
            .ends_with(r#"unknown.json:1:7: unknown model type "rack"; registered: [site, device, interface]"#),
        "{err}"
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

/// The error without the temporary directory: `name:line:col: message`.
fn short(err: &AdapterError) -> String {
    let s = err.to_string();
    s.rsplit('/').next().unwrap_or(&s).to_string()
}

#[test]
fn a_typo_in_a_nested_key_or_an_unknown_field_is_an_error_at_its_line() {
    let yaml = "site:\n  - name: a\n    region: east\n    devices:\n      - name: r1\n        role: leaf\n";
    // YAML errors point at the field's value (here the list under the typo).
    let err = open_err("typo.yaml", yaml, Format::Yaml);
    assert_eq!(
        short(&err),
        r#"typo.yaml:5:7: site:a: unknown field "devices"; expected one of: name, region, device (children)"#
    );
    let json = "{\"site\": [{\"name\": \"a\", \"region\": \"east\",\n  \"regoin\": \"west\"}]}";
    let err = open_err("typo.json", json, Format::Json);
    assert!(
        short(&err).starts_with(r#"typo.json:2:10: site:a: unknown field "regoin""#),
        "{err}"
    );
    let toml = "[[site]]\nname = \"a\"\nregion = \"east\"\nzone = 1\n";
    let err = open_err("typo.toml", toml, Format::Toml);
    assert!(
        short(&err).starts_with(r#"typo.toml:4:8: site:a: unknown field "zone""#),
        "{err}"
    );
    // A local serde field of the Rust type is known.
    let ok = r#"{"site": [{"name": "a", "region": "east", "device": [{"name": "r1", "role": "leaf", "serial": null, "db_pk": 7}]}]}"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.json"), ok).unwrap();
    FileAdapter::open("f", dir.path().join("ok.json"), Format::Json, registry()).unwrap();
}

#[test]
fn children_take_their_parent_link_from_the_nesting_and_may_not_contradict_it() {
    let yaml = "\
site:
  - name: a
    region: east
    device:
      - name: r1
        role: leaf
        interface:
          - name: eth0
            description: up
            mtu: 1500
            enabled: true
";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.yaml"), yaml).unwrap();
    let f = FileAdapter::open("f", dir.path().join("inv.yaml"), Format::Yaml, registry()).unwrap();
    assert_eq!(
        f.store().parent(key_of("interface:r1__eth0")).unwrap(),
        Some(key_of("device:r1"))
    );
    let wrong = yaml.replace(
        "          - name: eth0",
        "          - name: eth0\n            device: r2",
    );
    let err = open_err("wrong.yaml", &wrong, Format::Yaml);
    assert_eq!(
        short(&err),
        r#"wrong.yaml:9:21: interface:r2__eth0: "device" is "r2", but the record is nested under device "r1""#
    );
}

#[test]
fn a_child_type_at_the_top_level_is_an_error() {
    let json = r#"{"site": [], "interface": [{"device": "r1", "name": "eth0", "description": "", "mtu": 1, "enabled": true}]}"#;
    let err = open_err("top.json", json, Format::Json);
    assert!(
        short(&err).starts_with(r#"top.json:1:24: interface is a child type: nest its records under their device"#),
        "{err}"
    );
}

#[test]
fn a_duplicate_key_in_a_json_or_yaml_map_is_an_error() {
    let err = open_err(
        "dup.json",
        "{\"site\": [{\"name\": \"a\",\n \"region\": \"east\", \"region\": \"west\"}]}",
        Format::Json,
    );
    assert!(
        short(&err).starts_with(r#"dup.json:2:"#) && short(&err).contains(r#"duplicate key "region""#),
        "{err}"
    );
    let err = open_err(
        "dup.yaml",
        "site:\n  - name: a\n    region: east\n    region: west\n",
        Format::Yaml,
    );
    assert!(matches!(err, AdapterError::Parse { line: 4, .. }), "{err}");
}

#[test]
fn a_missing_identifier_is_named_not_read_as_none() {
    let err = open_err("noid.json", r#"{"site": [{"region": "east"}]}"#, Format::Json);
    assert_eq!(short(&err), r#"noid.json:1:11: site:?: missing identifier "name""#);
}

#[test]
fn invalid_utf8_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, b"{\"site\": [\n  {\"name\": \"a\xff\", \"region\": \"east\"}]}").unwrap();
    let err = FileAdapter::open("f", &path, Format::Json, registry()).err().unwrap();
    assert_eq!(short(&err), "bad.json:2:14: invalid UTF-8");
}

fn csv_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn csv_err(files: &[(&str, &str)]) -> String {
    let dir = csv_dir(files);
    match FileAdapter::open("f", dir.path(), Format::Csv, registry()) {
        Ok(_) => panic!("should not load: {files:?}"),
        Err(e) => short(&e),
    }
}

#[test]
fn csv_layout_errors_name_file_and_line() {
    let site = ("site.csv", "name,region\na,east\n");
    assert_eq!(
        csv_err(&[site, ("device.csv", "name,role,serial\nr1,leaf,\n")]),
        r#"device.csv:1:0: device is a child type: a "_parent" column must name each row's site"#
    );
    assert_eq!(
        csv_err(&[site, ("device.csv", "name,role,serial,_parent\nr1,leaf,,\n")]),
        r#"device.csv:2:0: device:r1: no _parent: the row must name its site"#
    );
    assert_eq!(
        csv_err(&[site, ("device.csv", "name,role,serial,_parent\nr1,leaf,,b\n")]),
        r#"device.csv:2:0: device:r1: _parent names site:b, which is not loaded"#
    );
    assert_eq!(
        csv_err(&[("site.csv", "name,region,region\na,east,west\n")]),
        r#"site.csv:1:0: duplicate column "region""#
    );
    assert_eq!(
        csv_err(&[("site.csv", "name,region\na,\"east\nb,west\n")]),
        "site.csv:2:3: a quoted cell is not closed"
    );
    assert_eq!(
        csv_err(&[("site.csv", "name,region,zone\na,east,1\n")]),
        r#"site.csv:2:0: site:a: unknown column "zone""#
    );
    assert_eq!(
        csv_err(&[("site.csv", "name,region\n,east\n")]),
        r#"site.csv:2:0: site:?: missing identifier "name""#
    );
    let interface = "device,name,description,mtu,enabled,_parent\nr2,eth0,x,1500,true,r1\n";
    assert_eq!(
        csv_err(&[
            site,
            ("device.csv", "name,role,serial,_parent\nr1,leaf,,a\n"),
            ("interface.csv", interface)
        ]),
        r#"interface.csv:2:0: interface:r2__eth0: "device" is "r2", but the record is nested under device "r1""#
    );
    // A .csv file where the format wants a directory.
    let dir = csv_dir(&[site]);
    let err = FileAdapter::open("f", dir.path().join("site.csv"), Format::Csv, registry())
        .err()
        .unwrap();
    assert!(short(&err).starts_with("site.csv: is a file"), "{err}");
}

#[test]
fn a_multi_file_csv_save_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = FileAdapter::open("f", dir.path(), Format::Csv, registry()).unwrap();
    target.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let before = (read("site.csv"), read("device.csv"));
    // The last file cannot be replaced: a directory is in its way.
    std::fs::remove_file(dir.path().join("interface.csv")).unwrap();
    std::fs::create_dir(dir.path().join("interface.csv")).unwrap();
    let err = target.sync_from(&inventory("cmdb", 2, 1)).unwrap_err();
    assert!(Chain(&err).to_string().contains("interface.csv"), "{err}");
    assert_eq!(
        (read("site.csv"), read("device.csv")),
        before,
        "the files already replaced are restored"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "no temporary file left: {names:?}");
}

#[test]
fn a_file_feed_turns_each_save_into_model_events_and_waits_out_a_half_written_file() {
    use diffsync::feed::{ChangeFeed, ChangeKind};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.json");
    let mut file = FileAdapter::open_or_empty("file", &path, Format::Json, registry()).unwrap();
    file.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    let mut feed = file.change_feed().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    // Wait for what the watcher reports about a change (a few ms on inotify).
    let next = |feed: &mut diffsync_adapters::files::FileFeed| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let batch = feed.poll(100, Duration::from_millis(50)).unwrap();
            assert!(!batch.gap);
            if !batch.events.is_empty() {
                let mut got: Vec<_> = batch
                    .events
                    .into_iter()
                    .map(|e| (e.kind, e.key.unique_id().to_string()))
                    .collect();
                got.sort();
                return got;
            }
            assert!(Instant::now() < deadline, "no event");
        }
    };
    // A save half-way: an error naming the file and line, once; nothing else.
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        match feed.poll(100, Duration::from_millis(50)) {
            Err(e) => break e,
            Ok(b) => assert!(b.events.is_empty() && Instant::now() < deadline, "no error"),
        }
    };
    let place = format!("{}:", path.display());
    assert!(err.to_string().starts_with(&place), "{err}");
    for _ in 0..3 {
        assert!(
            feed.poll(100, Duration::from_millis(20)).unwrap().events.is_empty(),
            "reported once"
        );
    }
    // The finished save: one update, one delete, as an editor renames it in.
    let edited = text.replacen("\"east\"", "\"north\"", 1);
    let mut doc: serde_json::Value = serde_json::from_str(&edited).unwrap();
    doc["site"][0]["device"][0]["interface"].as_array_mut().unwrap().pop();
    let tmp = dir.path().join(".inv.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(
        next(&mut feed),
        [
            (ChangeKind::Updated, "site0".to_string()),
            (ChangeKind::Deleted, "site0-r0__eth2".to_string())
        ]
    );
    // The adapter reads the file again for the loop.
    file.reread(&[]).unwrap();
    assert_eq!(file.store().count("interface"), 5);
}

#[test]
fn a_file_feed_finds_a_change_its_watcher_missed_and_watches_again() {
    use diffsync::feed::ChangeFeed;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("inv");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("inv.json");
    let mut file = FileAdapter::open_or_empty("file", &path, Format::Json, registry()).unwrap();
    file.sync_from(&inventory("cmdb", 1, 0)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut feed = file.change_feed().unwrap();
    // The watched directory is replaced: the watch is gone with it (the
    // feed reads the removal: everything deleted).
    std::fs::remove_dir_all(&sub).unwrap();
    std::fs::create_dir(&sub).unwrap();
    let mut quiet = 0;
    while quiet < 5 {
        let b = feed.poll(100, Duration::from_millis(20)).unwrap();
        quiet = if b.events.is_empty() && !b.gap { quiet + 1 } else { 0 };
    }
    std::fs::write(&path, text.replacen("\"east\"", "\"north\"", 1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let batch = loop {
        let b = feed.poll(100, Duration::from_millis(20)).unwrap();
        if b.gap || !b.events.is_empty() {
            break b;
        }
        assert!(Instant::now() < deadline, "the change was never seen");
    };
    assert!(batch.gap, "a change no event announced");
    assert_eq!(batch.events.len(), 9, "everything back");
    // Watched again: the next save is an ordinary event.
    std::fs::write(&path, text.replacen("\"east\"", "\"south\"", 1)).unwrap();
    let batch = loop {
        let b = feed.poll(100, Duration::from_millis(20)).unwrap();
        if b.gap || !b.events.is_empty() {
            break b;
        }
        assert!(Instant::now() < deadline, "the next change was never seen");
    };
    assert!(!batch.gap);
    assert_eq!(batch.events.len(), 1);
}
#[test]
fn a_typo_beside_a_missing_field_and_a_duplicate_key_are_named_plainly() {
    let err = open_err("typo.yaml", "site:\n  - name: a\n    regoin: east\n", Format::Yaml);
    assert!(
        short(&err).starts_with(r#"typo.yaml:3:13: site:a: unknown field "regoin"; expected one of: name, region"#),
        "{err}"
    );
    let err = open_err(
        "typo.json",
        r#"{"site": [{"name": "a", "regoin": "east"}]}"#,
        Format::Json,
    );
    assert!(short(&err).contains(r#"unknown field "regoin""#), "{err}");
    // The parser's own advice (an option of its own) is not passed on.
    let err = open_err(
        "dup.yaml",
        "site:\n  - name: a\n    region: east\n    region: west\n",
        Format::Yaml,
    );
    assert_eq!(short(&err), r#"dup.yaml:4:5: duplicate key "region""#);
    let err = open_err(
        "dup.toml",
        "[[site]]\nname = \"a\"\nregion = \"east\"\nregion = \"west\"\n",
        Format::Toml,
    );
    assert_eq!(short(&err), r#"dup.toml:4:1: duplicate key "region""#);
}

/// Logs every change a sync applies, and vetoes the deletion of any site.
#[derive(Default)]
struct Audit {
    applied: Vec<String>,
}

impl diffsync::Layer for Audit {
    fn before(&mut self, batch: &mut diffsync::Batch<'_, '_>) {
        for i in 0..batch.len() {
            let c = &batch.changes()[i];
            if c.action == diffsync::Action::Delete && c.model_type() == "site" {
                batch.set_outcome(i, Err(diffsync::HookError::soft("sites are kept")));
            }
        }
    }
    fn after(&mut self, batch: &diffsync::Batch<'_, '_>, _: &Result<(), diffsync::HookError>) {
        for (c, o) in batch.changes().iter().zip(batch.outcomes()) {
            if *o == diffsync::Outcome::Applied {
                self.applied
                    .push(format!("{} {} {}", c.action, c.model_type(), c.key()));
            }
        }
    }
}

#[test]
fn a_wrapped_file_adapter_still_writes_its_file_and_its_layer_sees_and_vetoes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.json");
    let mut file = FileAdapter::open_or_empty("file", &path, Format::Json, registry()).unwrap();
    file.sync_from(&inventory("cmdb", 2, 0)).unwrap();
    let mut wrapped = diffsync::Layered::new(
        FileAdapter::open("file", &path, Format::Json, registry()).unwrap(),
        Audit::default(),
    );
    // One site fewer, and changes to the other: the layer keeps the site.
    let mut changed = inventory("cmdb", 2, 1);
    changed.store.remove(key_of("site:site1"), true).unwrap();
    let report = wrapped.sync_from(&changed).unwrap();
    assert_eq!(report.totals().applied, wrapped.layer.applied.len());
    assert!(!wrapped.layer.applied.is_empty());
    assert!(wrapped.layer.applied.iter().all(|a| a != "delete site site1"));
    // Written through, without forwarding anything by hand.
    let reopened = FileAdapter::open("file", &path, Format::Json, registry()).unwrap();
    assert!(reopened.store().get_dyn(key_of("site:site1")).is_ok(), "the veto held");
    let left = reopened.diff_from(&changed).unwrap().summary();
    // Only the vetoed site is left to delete, with its subtree (its
    // children's deletes were skipped with it).
    assert_eq!((left.create, left.update, left.delete), (0, 0, 1 + 2 * 4));
}

/// Inventory files of any shape (a JSON, YAML or TOML document mutated as
/// a tree or byte by byte): each opens, or fails naming the file; one that
/// opens can be synced from and into.
#[test]
fn inventory_files_of_any_shape_open_or_fail_named() {
    use diffsync_tests::fuzz::{each_seed, mutate_bytes, mutate_json};
    let dir = tempfile::tempdir().unwrap();
    let seed_file = dir.path().join("seed.json");
    let mut seed = FileAdapter::open_or_empty("seed", &seed_file, Format::Json, registry()).unwrap();
    seed.sync_from(&inventory("cmdb", 2, 1)).unwrap();
    let document: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&seed_file).unwrap()).unwrap();
    each_seed("an inventory file", |rng| {
        let mut doc = document.clone();
        let (file, format, bytes) = match rng.u8(..4) {
            0 => (
                "inv.json",
                Format::Json,
                mutate_bytes(rng, &serde_json::to_vec(&doc).unwrap()),
            ),
            1 => {
                mutate_json(rng, &mut doc);
                ("inv.json", Format::Json, serde_json::to_vec(&doc).unwrap())
            }
            2 => {
                mutate_json(rng, &mut doc);
                // YAML is a superset of JSON: the same tree, read by the YAML reader.
                ("inv.yaml", Format::Yaml, serde_json::to_vec(&doc).unwrap())
            }
            _ => {
                mutate_json(rng, &mut doc);
                let Ok(text) = toml::to_string(&doc) else { return };
                ("inv.toml", Format::Toml, text.into_bytes())
            }
        };
        let path = dir.path().join(file);
        std::fs::write(&path, &bytes).unwrap();
        match FileAdapter::open("f", &path, format, registry()) {
            Ok(mut opened) => {
                let _ = opened.diff_from(&inventory("cmdb", 2, 0)).map(|d| d.to_string());
                let _ = opened.sync_from(&inventory("cmdb", 1, 0));
            }
            Err(e) => {
                let text = Chain(&e).to_string();
                assert!(text.contains(file), "{text}");
            }
        }
    });
}
