//! Keys: typed keys built from identifiers, their canonical encoding's
//! order and injectivity, and their text form.

use std::cmp::Ordering;

use diffsync::{
    Change, DiffModel, DynModel, HookError, Hooks, Key, KeyValue, LocalStore, ModelKey, Write, unique_id_of,
};
use diffsync_tests::key_of;
use diffsync_tests::{Device, Interface, Site, sys_a};
use proptest::prelude::*;
use serde_json::json;

#[test]
fn a_typed_key_is_built_from_identifiers_and_fetches_its_model() {
    let inv = sys_a();
    let key: Key<Interface> = Interface::key("nyc-r1", "eth0");
    let intf = inv.store.get(&key).unwrap();
    assert_eq!(intf.key(), key);
    assert_eq!(key.to_string(), "interface:nyc-r1__eth0");
    // Typed and erased, one key: the same text, the same value.
    assert_eq!(key.erased().to_string(), key.to_string());
    assert_eq!(Key::<Interface>::try_from(key.clone().into_erased()).unwrap(), key);
    assert_eq!(key.unique_id(), intf.unique_id(), "the store's id");
    assert!(inv.store.get_opt(&Site::key("ams")).unwrap().is_none());
    // An erased key read from text, as a command line gives it.
    let parsed: ModelKey = "device:nyc-r1".parse().unwrap();
    assert_eq!(inv.store.get_dyn(&parsed).unwrap().model_key(), parsed);
    assert_eq!(Key::<Device>::parse("device:nyc-r1").unwrap(), Device::key("nyc-r1"));
    let err = Key::<Site>::parse("device:nyc-r1").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"key "device:nyc-r1" is of model type "device", not "site""#
    );
}

#[test]
fn a_string_that_reads_as_a_number_is_its_own_key() {
    // The key of a device named "100" is not the key of a device numbered 100.
    let mut store = LocalStore::new("s");
    store.register::<Device>().unwrap();
    store
        .add(Device {
            name: "100".into(),
            role: "edge".into(),
            serial: None,
            db_pk: 0,
            flags: Default::default(),
        })
        .unwrap();
    let key = Device::key("100");
    assert_eq!(store.get(&key).unwrap().role, "edge");
    assert_eq!(key.to_string(), r#"device:"100""#);
    let number = ModelKey::new("device", [KeyValue::Int(100)]);
    assert_ne!(*key.erased(), number);
    assert!(store.get_dyn(&number).is_err());
    assert_eq!(ModelKey::parse(&key.to_string()).unwrap(), *key.erased());
    // Typed, the text is read against the identifiers: unquoted "100" is
    // the string too, and an erased key of the number is no Device key.
    assert_eq!("device:100".parse::<Key<Device>>().unwrap(), key);
    assert_eq!(Key::<Device>::try_from(key.erased().clone()).unwrap(), key);
    let misfit = Key::<Device>::try_from(number).unwrap_err();
    assert!(matches!(misfit, diffsync::KeyParseError::Schema { .. }), "{misfit}");
    let other = "site:100".parse::<Key<Device>>().unwrap_err();
    assert!(matches!(other, diffsync::KeyParseError::WrongType { .. }), "{other}");
}

#[test]
fn a_runtime_model_has_the_same_key_as_a_derived_one() {
    use diffsync::StaticModel;
    let intf = Interface {
        device_name: "a".into(),
        name: "100".into(),
        description: String::new(),
        mtu: 1500,
    };
    let schema = std::sync::Arc::new(Interface::static_schema().clone());
    let dynamic = DynModel::new(&schema, &intf.identifiers(), &intf.attributes()).unwrap();
    assert_eq!(dynamic.model_key(), *Interface::key("a", "100").erased());
    assert_eq!(dynamic.model_key(), intf.model_key());
}

/// An identifier value of any kind, with the separators, quotes, NUL bytes
/// and number-like strings that make keys ambiguous.
fn value() -> impl Strategy<Value = KeyValue> {
    prop_oneof![
        Just(KeyValue::Null),
        any::<bool>().prop_map(KeyValue::Bool),
        any::<i64>().prop_map(|i| KeyValue::Int(i.into())),
        any::<u64>().prop_map(|i| KeyValue::Int(i.into())),
        (-1e6f64..1e6)
            .prop_filter("not an integer", |f| f.fract() != 0.0)
            .prop_map(KeyValue::Float),
        "[a_\"0-9\\x00é]{0,6}".prop_map(KeyValue::Str),
        prop_oneof![
            Just("100"),
            Just("None"),
            Just("a__b"),
            Just("_"),
            Just(""),
            Just("-1.5")
        ]
        .prop_map(|s| KeyValue::Str(s.into())),
    ]
}

/// The order keys must have, written independently of the encoding: type
/// name bytewise, then the values in turn, each by kind, then by value.
fn reference(a: &(String, Vec<KeyValue>), b: &(String, Vec<KeyValue>)) -> Ordering {
    fn rank(v: &KeyValue) -> u8 {
        match v {
            KeyValue::Null => 0,
            KeyValue::Bool(false) => 1,
            KeyValue::Bool(true) => 2,
            KeyValue::Int(_) => 3,
            KeyValue::Float(_) => 4,
            KeyValue::Str(_) => 5,
        }
    }
    fn one(a: &KeyValue, b: &KeyValue) -> Ordering {
        match (a, b) {
            (KeyValue::Int(x), KeyValue::Int(y)) => x.cmp(y),
            (KeyValue::Float(x), KeyValue::Float(y)) => x.partial_cmp(y).unwrap(),
            (KeyValue::Str(x), KeyValue::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
            _ => rank(a).cmp(&rank(b)),
        }
    }
    a.0.as_bytes().cmp(b.0.as_bytes()).then_with(|| {
        for (x, y) in a.1.iter().zip(&b.1) {
            match one(x, y) {
                Ordering::Equal => continue,
                other => return other,
            }
        }
        a.1.len().cmp(&b.1.len())
    })
}

fn key() -> impl Strategy<Value = (String, Vec<KeyValue>)> {
    (
        prop_oneof![Just("device".to_string()), Just("dev".to_string()), "[a-z\\x00]{0,3}"],
        prop::collection::vec(value(), 0..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_encodings_order_is_the_values_order_and_it_is_injective(a in key(), b in key()) {
        let (ka, kb) = (ModelKey::new(a.0.clone(), a.1.clone()), ModelKey::new(b.0.clone(), b.1.clone()));
        let (ea, eb) = (ka.to_bytes(), kb.to_bytes());
        let want = reference(&a, &b);
        prop_assert_eq!(ea.cmp(&eb), want, "{} vs {}", ka, kb);
        prop_assert_eq!(ka.cmp(&kb), want);
        prop_assert_eq!(ea == eb, want == Ordering::Equal);
        prop_assert_eq!(ModelKey::from_bytes(&ea).unwrap(), ka.clone());
        prop_assert_eq!(ka.values(), a.1.clone());
    }

    #[test]
    fn the_text_form_reads_back_and_is_the_stores_id(a in key()) {
        prop_assume!(!a.0.is_empty() && !a.0.contains(':'));
        let k = ModelKey::new(a.0.clone(), a.1.clone());
        prop_assert_eq!(ModelKey::parse(&k.to_string()).unwrap(), k.clone());
        let json: Vec<serde_json::Value> = a.1.iter().map(KeyValue::to_value).collect();
        prop_assert_eq!(k.unique_id(), unique_id_of(json.iter()));
    }

    #[test]
    fn events_and_reports_keep_any_key_through_their_json(a in key(), p in key()) {
        use diffsync::{Action, ChangeEvent, ElementReport, Outcome};
        prop_assume!(!a.0.is_empty() && !p.0.is_empty());
        let (k, parent) = (ModelKey::new(a.0.clone(), a.1.clone()), ModelKey::new(p.0.clone(), p.1.clone()));
        let event = ChangeEvent {
            kind: diffsync::feed::ChangeKind::Updated,
            key: k.clone(),
            parent: Some(parent),
            origin: None,
        };
        let text = serde_json::to_string(&event).unwrap();
        prop_assert_eq!(serde_json::from_str::<ChangeEvent>(&text).unwrap(), event, "{}", text);
        let element = ElementReport { key: k, action: Action::Update, outcome: Outcome::Applied };
        let text = serde_json::to_string(&element).unwrap();
        prop_assert_eq!(serde_json::from_str::<ElementReport>(&text).unwrap(), element, "{}", text);
    }
}

#[test]
fn json_identifiers_key_as_the_typed_fields_do() {
    let typed = Interface::key("r1", "7");
    let from_json = ModelKey::new("interface", [json!("r1"), json!("7")].iter().map(KeyValue::from));
    assert_eq!(*typed.erased(), from_json);
}

/// Hooks written on the user's own type: no downcast, no JSON indexing.
struct Sites {
    store: LocalStore,
    seen: Vec<String>,
}

impl Sites {
    fn new(name: &str, rows: &[(&str, &str)]) -> Sites {
        let mut store = LocalStore::new(name);
        store.register::<Site>().unwrap();
        for (n, r) in rows {
            store
                .add(Site {
                    name: n.to_string(),
                    region: r.to_string(),
                })
                .unwrap();
        }
        Sites {
            store,
            seen: Vec::new(),
        }
    }
}

impl diffsync::Adapter for Sites {
    type Store = LocalStore;
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }
}

impl diffsync::Sink for Sites {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        Hooks::new().on(Self::site).apply(self, change)
    }
}

impl Sites {
    fn site(&mut self, write: Write<'_, Site>) -> Result<(), HookError> {
        self.seen.push(match write {
            Write::Create { new, .. } => format!("create {} in {}", new.key(), new.region),
            Write::Update { old, new, changed } => {
                let fields: Vec<&str> = changed.iter().map(|f| f.name()).collect();
                format!("update {}: {} -> {} {fields:?}", new.name, old.region, new.region)
            }
            Write::Delete { old, .. } => format!("delete {} in {}", old.name, old.region),
        });
        Ok(())
    }
}

#[test]
fn hooks_read_the_users_own_type_also_for_a_diff_read_from_json() {
    use diffsync::{AdapterExt, Diff, Options};
    let source = Sites::new("cmdb", &[("nyc", "east"), ("ams", "eu")]);
    let start = [("nyc", "west"), ("lax", "west")];
    let want = [
        "update nyc: west -> east [\"region\"]",
        "create site:ams in eu",
        "delete lax in west",
    ];
    let mut target = Sites::new("net", &start);
    target.sync_from(&source).unwrap();
    assert_eq!(target.seen, want);
    // The same from a diff saved as JSON: no source models to read.
    let json = serde_json::to_string(&Sites::new("net", &start).diff_from(&source).unwrap()).unwrap();
    let loaded: Diff = serde_json::from_str(&json).unwrap();
    let mut target = Sites::new("net", &start);
    target.sync_diff(&loaded, &mut Options::new()).unwrap();
    assert_eq!(target.seen, want);
    // A value that is not a site's: an error naming model, key and field.
    let mut bad: serde_json::Value = serde_json::from_str(&json).unwrap();
    let text = bad.to_string().replace("\"east\"", "7");
    bad = serde_json::from_str(&text).unwrap();
    let bad: Diff = serde_json::from_value(bad).unwrap();
    let err = Sites::new("net", &start)
        .sync_diff(&bad, &mut Options::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("nyc") && err.to_string().contains("region"),
        "{err}"
    );
}

#[test]
fn a_part_and_a_change_event_name_models_by_key() {
    use diffsync::{AdapterExt, AttrSource, ChangeFeed, Options};
    let (target, source) = (sys_a(), diffsync_tests::sys_b());
    let by_key = target
        .diff_from_with(&source, &mut Options::new().part([Site::key("nyc")]))
        .unwrap();
    let by_text = target
        .diff_from_with(&source, &mut Options::new().part([key_of("site:nyc")]))
        .unwrap();
    assert!(by_key.has_diffs());
    assert_eq!(by_key, by_text);
    // A store's feed tells each change by key.
    let mut store = sys_a().store;
    let mut feed = store.subscribe();
    let south = [("region".into(), json!("south"))].into_iter().collect();
    store
        .update_attributes(key_of("site:sfo"), AttrSource::Values(&south))
        .unwrap();
    let batch = feed.poll(10, std::time::Duration::ZERO).unwrap();
    let keys: Vec<ModelKey> = batch.events.iter().map(|e| e.key.clone()).collect();
    assert_eq!(keys, [Site::key("sfo").into_erased()]);
}

#[test]
fn a_store_is_walked_by_typed_keys_without_spelling_a_type_name() {
    let store = sys_a().store;
    let sites: Vec<&str> = store.all::<Site>().unwrap().map(|s| s.name.as_str()).collect();
    assert_eq!(sites, ["nyc", "sfo"]);
    assert_eq!(store.count_of::<Interface>(), 3);
    let nyc = Site::key("nyc");
    let devices = store.children::<Device>(nyc.erased()).unwrap();
    assert_eq!(devices, [Device::key("nyc-r1")]);
    let eth = store.children::<Interface>(devices[0].erased()).unwrap();
    assert_eq!(
        eth,
        [Interface::key("nyc-r1", "eth0"), Interface::key("nyc-r1", "eth1")]
    );
    assert_eq!(
        store.parent(eth[1].erased()).unwrap(),
        Some(devices[0].erased().clone())
    );
    assert_eq!(store.parent(nyc.erased()).unwrap(), None);
    // A child type the parent does not declare, and a key the store does not hold.
    assert!(store.children::<Site>(nyc.erased()).is_err());
    assert!(store.parent(Site::key("atlantis").erased()).is_err());
}

/// A key's text read against its type's schema: for random identifier
/// values of every kind, the text diffsync prints (`type:id`, and the id
/// alone) reads back as the same key, and printed keys sort as the keys do
/// where their texts are alike.
mod text_against_the_schema {
    use diffsync::{FieldDef, KeyValue, ModelKey, ModelSchema, ValueKind};
    use proptest::prelude::*;

    fn schema(kinds: &[(ValueKind, bool)]) -> ModelSchema {
        kinds
            .iter()
            .enumerate()
            .fold(ModelSchema::new("thing"), |schema, (i, (kind, optional))| {
                let field = FieldDef::named(format!("id{i}"), *kind);
                schema.identifier(if *optional { field.optional() } else { field })
            })
    }

    /// A value of the kind, and the kind (optional ones may be null).
    fn value() -> impl Strategy<Value = ((ValueKind, bool), KeyValue)> {
        let text = prop_oneof![
            Just(String::new()),
            Just("100".to_string()),
            Just("None".to_string()),
            Just("a__b".to_string()),
            Just("\"q".to_string()),
            Just("_x_".to_string()),
            Just("true".to_string()),
            "[a-z0-9_:\" ]{0,8}",
            any::<String>(),
        ];
        prop_oneof![
            text.clone()
                .prop_map(|s| ((ValueKind::String, false), KeyValue::Str(s))),
            any::<i64>().prop_map(|i| ((ValueKind::Integer, false), KeyValue::Int(i.into()))),
            any::<bool>().prop_map(|b| ((ValueKind::Bool, false), KeyValue::Bool(b))),
            (-1e12f64..1e12).prop_map(|f| ((ValueKind::Float, false), KeyValue::Float(f))),
            text.clone().prop_map(|s| ((ValueKind::String, true), KeyValue::Str(s))),
            Just(((ValueKind::String, true), KeyValue::Null)),
            text.prop_map(|s| ((ValueKind::Any, false), KeyValue::Str(s))),
            any::<i64>().prop_map(|i| ((ValueKind::Any, false), KeyValue::Int(i.into()))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn printed_then_read_is_the_same_key(values in proptest::collection::vec(value(), 1..4)) {
            let kinds: Vec<(ValueKind, bool)> = values.iter().map(|(k, _)| *k).collect();
            let read = schema(&kinds);
            let key = ModelKey::new("thing", values.iter().map(|(_, v)| v.clone()));
            prop_assert_eq!(&read.parse_key(&key.to_string()).unwrap(), &key, "{}", key);
            prop_assert_eq!(&read.parse_key(key.unique_id()).unwrap(), &key, "{}", key);
        }
    }

    #[test]
    fn a_key_of_a_string_named_100_reads_from_its_plain_text() {
        let strings = schema(&[(ValueKind::String, false), (ValueKind::String, false)]);
        let key = ModelKey::new("thing", [KeyValue::Str("nyc".into()), KeyValue::Str("100".into())]);
        for text in ["nyc__100", r#"nyc__"100""#, r#"thing:nyc__"100""#, "thing:nyc__100"] {
            assert_eq!(strings.parse_key(text).unwrap(), key, "{text}");
        }
        let err = strings.parse_key("nyc").unwrap_err().to_string();
        assert!(err.contains("\"thing\"") && err.contains("\"nyc\""), "{err}");
        let ints = schema(&[(ValueKind::Integer, false)]);
        let err = ints.parse_key("abc").unwrap_err().to_string();
        assert!(err.contains("id0") && err.contains("Integer"), "{err}");
    }
}

#[test]
fn reports_events_and_conflicts_keep_their_keys_through_json() {
    use diffsync::bidir::{ConflictKind, ConflictRecord};
    use diffsync::feed::ChangeFeed;
    use diffsync::{AdapterExt, ChangeEvent, ElementReport};
    // A device named "100": its key must come back a string, not a number.
    let device = |role: &str| Device {
        name: "100".into(),
        role: role.into(),
        serial: None,
        db_pk: 0,
        flags: Default::default(),
    };
    let mut source = diffsync_tests::Inventory::empty("source");
    source.store.add(device("edge")).unwrap();
    let mut target = diffsync_tests::Inventory::empty("target");
    let mut feed = target.store.subscribe();
    let report = target.sync_from(&source).unwrap();
    let element = &report.elements[0];
    assert_eq!(element.key, *Device::key("100").erased());
    let text = serde_json::to_string(element).unwrap();
    assert!(
        text.contains(r#""model_type":"device""#) && text.contains(r#""key":"\"100\"""#),
        "{text}"
    );
    assert_eq!(&serde_json::from_str::<ElementReport>(&text).unwrap(), element);

    let batch = feed.poll(10, std::time::Duration::ZERO).unwrap();
    let event = &batch.events[0];
    assert_eq!(event.key, *Device::key("100").erased());
    let text = serde_json::to_string(event).unwrap();
    assert_eq!(&serde_json::from_str::<ChangeEvent>(&text).unwrap(), event);

    let conflict = ConflictRecord {
        key: Device::key("100").into_erased(),
        kind: ConflictKind::UpdateUpdate,
        base: None,
        left: None,
        right: None,
        strategy: "left wins".into(),
        resolution: diffsync::bidir::Resolution::Left,
        clock: None,
        left_clock: None,
        right_clock: None,
        left_replica: "a".into(),
        right_replica: "b".into(),
        run: String::new(),
        applied: None,
        result: None,
    };
    let text = serde_json::to_string(&conflict).unwrap();
    assert_eq!(serde_json::from_str::<ConflictRecord>(&text).unwrap(), conflict);
}

#[test]
fn the_json_forms_of_events_reports_and_conflicts_are_the_earlier_ones() {
    use diffsync::bidir::ConflictRecord;
    use diffsync::{ChangeEvent, ElementReport};
    // What a peer of the previous version sends: identifiers by name, the
    // parent as [type, unique id].
    let earlier = json!({
        "kind": "updated", "model_type": "device", "key": "nyc-r1",
        "identifiers": {"name": "nyc-r1"}, "parent": ["site", "nyc"], "origin": "loop"
    });
    let event: ChangeEvent = serde_json::from_value(earlier).unwrap();
    assert_eq!(event.key, *Device::key("nyc-r1").erased());
    assert_eq!(event.parent, Some(Site::key("nyc").into_erased()));
    // What this version writes: the same fields, without the identifiers.
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({"kind": "updated", "model_type": "device", "key": "nyc-r1", "parent": ["site", "nyc"], "origin": "loop"})
    );
    let applied = serde_json::to_value(diffsync::Outcome::Applied).unwrap();
    let earlier = json!({"model_type": "device", "key": "\"100\"", "action": "create", "outcome": applied});
    let element: ElementReport = serde_json::from_value(earlier.clone()).unwrap();
    assert_eq!(element.key, *Device::key("100").erased());
    assert_eq!(serde_json::to_value(&element).unwrap(), earlier);
    let conflict = json!({
        "model_type": "site", "key": "nyc",
        "kind": serde_json::to_value(diffsync::bidir::ConflictKind::UpdateUpdate).unwrap(), "base": null,
        "left": {"region": "east"}, "right": {"region": "west"}, "strategy": "left wins",
        "resolution": serde_json::to_value(diffsync::bidir::Resolution::Left).unwrap(),
        "left_replica": "a", "right_replica": "b"
    });
    let record: ConflictRecord = serde_json::from_value(conflict.clone()).unwrap();
    assert_eq!(record.key, Site::key("nyc").into_erased());
    assert_eq!(serde_json::to_value(&record).unwrap(), conflict);
}

/// A model keyed by one identifier of each kind.
#[derive(diffsync::DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "mixed")]
struct Mixed {
    #[diffsync(id)]
    s: String,
    #[diffsync(id)]
    n: i64,
    #[diffsync(id)]
    b: bool,
    #[diffsync(id)]
    o: Option<String>,
    v: u32,
}

/// A model keyed by any JSON: a float's or a list's key does not give
/// its JSON back, so a diff element keeps such a model's values.
#[derive(diffsync::DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "measured")]
struct Measured {
    #[diffsync(id)]
    at: serde_json::Value,
    v: u32,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// An element's key is its model's, and its identifiers the model's
    /// JSON values, whether it reads them from the key or keeps them.
    #[test]
    fn a_diff_elements_key_and_identifiers_are_its_models(
        s in "[a-z\"_ 0-9]{0,6}", n in any::<i64>(), b in any::<bool>(), o in proptest::option::of("[0-9a-z]{0,3}"),
        at in prop_oneof![
            // Quarters: exact in binary, so JSON text reads them back.
            (-4_000_000i64..4_000_000).prop_map(|q| json!(q as f64 / 4.0 + 0.25)),
            any::<i64>().prop_map(|i| json!(i)),
            "[a-z]{0,3}".prop_map(|s| json!([s])),
        ],
    ) {
        let mixed = Mixed { s, n, b, o, v: 1 };
        let measured = Measured { at, v: 1 };
        let mut a = LocalStore::new("a");
        a.register::<Mixed>().unwrap();
        a.register::<Measured>().unwrap();
        a.add(mixed.clone()).unwrap();
        a.add(measured.clone()).unwrap();
        let top = ["mixed", "measured"];
        let a = diffsync::MemoryAdapter::with_store("a", &top, a);
        let b_side = diffsync::MemoryAdapter::with_store("b", &top, LocalStore::new("b"));
        let diff = diffsync::AdapterExt::diff_from(&b_side, &a).unwrap();
        prop_assert_eq!(diff.summary().create, 2);
        for (e, _) in diff.iter() {
            let (key, ids) = match e.model_type() {
                "mixed" => (mixed.model_key(), mixed.identifiers()),
                _ => (measured.model_key(), measured.identifiers()),
            };
            prop_assert_eq!(&e.key, &key);
            prop_assert_eq!(e.unique_id(), key.unique_id());
            prop_assert_eq!(e.identifiers(), ids);
        }
        let json = serde_json::to_string(&diff).unwrap();
        prop_assert_eq!(serde_json::from_str::<diffsync::Diff>(&json).unwrap(), diff);
    }
}
