//! Global and model flags, with the Python library's meanings.

use diffsync::{AdapterExt, DiffFlags, ModelFlags, Options, Summary};
use diffsync_tests::key_of;
use diffsync_tests::typed_key;
use diffsync_tests::{Device, Interface, Inventory, Site, sys_a, sys_b};

fn summary(target: &Inventory, source: &Inventory, flags: DiffFlags) -> Summary {
    target
        .diff_from_with(source, &mut Options::new().flags(flags))
        .unwrap()
        .summary()
}

fn set_device_flags(inv: &mut Inventory, name: &str, flags: ModelFlags) {
    let mut dev: Device = inv
        .store
        .get(&typed_key::<Device>(&format!("device:{}", name)))
        .unwrap()
        .clone();
    dev.flags = flags;
    inv.store.update(dev).unwrap();
}

#[test]
fn skip_unmatched_src_counts_each_skipped_root_once() {
    let s = summary(&sys_a(), &sys_b(), DiffFlags::SKIP_UNMATCHED_SRC);
    assert_eq!((s.create, s.update, s.delete, s.skip), (0, 2, 4, 2));
}

#[test]
fn skip_unmatched_dst_keeps_destination_only_models() {
    let source = sys_b();
    let mut target = sys_a();
    let flags = DiffFlags::SKIP_UNMATCHED_DST;
    let s = summary(&target, &source, flags);
    assert_eq!((s.create, s.update, s.delete, s.skip), (4, 2, 0, 2));
    target
        .sync_from_with(&source, &mut Options::new().flags(flags))
        .unwrap();
    assert!(target.store.get_opt(&Site::key("sfo")).unwrap().is_some());
    assert!(target.log.iter().all(|l| !l.starts_with("delete")));
}

#[test]
fn skip_unmatched_both_only_updates() {
    let s = summary(&sys_a(), &sys_b(), DiffFlags::SKIP_UNMATCHED_BOTH);
    assert_eq!((s.create, s.update, s.delete, s.no_change, s.skip), (0, 2, 0, 1, 4));
}

#[test]
fn ignore_on_destination_instance_hides_its_subtree() {
    let mut target = sys_a();
    set_device_flags(&mut target, "nyc-r1", ModelFlags::IGNORE);
    let s = summary(&target, &sys_b(), DiffFlags::empty());
    assert_eq!(
        s,
        Summary {
            create: 3,
            update: 0,
            delete: 3,
            no_change: 1,
            skip: 1
        }
    );
}

#[test]
fn model_skip_unmatched_dst_keeps_that_model() {
    let source = sys_b();
    let mut target = sys_a();
    // A destination-only device under a surviving site, flagged per instance.
    target
        .store
        .add_child(
            Site::key("nyc"),
            Device {
                name: "nyc-old".into(),
                role: "spare".into(),
                serial: None,
                db_pk: 7,
                flags: ModelFlags::SKIP_UNMATCHED_DST,
            },
        )
        .unwrap();
    target
        .store
        .add_child(
            Device::key("nyc-old"),
            Interface {
                device_name: "nyc-old".into(),
                name: "eth0".into(),
                description: "spare".into(),
                mtu: 1500,
            },
        )
        .unwrap();
    let s = summary(&target, &source, DiffFlags::empty());
    assert_eq!((s.delete, s.skip), (4, 1));
    target.sync_from(&source).unwrap();
    assert_eq!(target.store.get(&Device::key("nyc-old")).unwrap().db_pk, 7);
    assert_eq!(
        target
            .store
            .children_dyn(key_of("device:nyc-old"), "interface")
            .unwrap(),
        [key_of("interface:nyc-old__eth0")]
    );
    assert!(!target.log.iter().any(|l| l.contains("nyc-old")));
}

/// The hook calls that deleted something under site sfo, in order.
fn sfo_deletes(target: &Inventory) -> Vec<&str> {
    target
        .log
        .iter()
        .filter(|l| l.starts_with("delete") && l.contains("sfo"))
        .map(String::as_str)
        .collect()
}

#[test]
fn default_deletion_order_is_parent_first() {
    let mut target = sys_a();
    target.sync_from(&sys_b()).unwrap();
    let deletes = sfo_deletes(&target);
    assert_eq!(
        deletes,
        [
            "delete site sfo",
            "delete device sfo-r1",
            "delete interface sfo-r1__eth0"
        ]
    );
}

#[test]
fn natural_deletion_order_deletes_children_first() {
    let mut target = sys_a();
    set_device_flags(&mut target, "sfo-r1", ModelFlags::NATURAL_DELETION_ORDER);
    target.sync_from(&sys_b()).unwrap();
    let deletes = sfo_deletes(&target);
    assert_eq!(
        deletes,
        [
            "delete site sfo",
            "delete interface sfo-r1__eth0",
            "delete device sfo-r1"
        ]
    );
    assert_eq!(target.store.count("interface"), 3);
}

#[test]
fn natural_deletion_order_skips_parent_when_a_child_fails() {
    let mut target = sys_a().fail_on("interface", "sfo-r1__eth0");
    set_device_flags(&mut target, "sfo-r1", ModelFlags::NATURAL_DELETION_ORDER);
    let report = target
        .sync_from_with(&sys_b(), &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap();
    assert!(!target.log.contains(&"delete device sfo-r1".to_string()));
    let dev = report.elements.iter().find(|e| e.key.unique_id() == "sfo-r1").unwrap();
    assert_eq!(
        dev.outcome,
        diffsync::Outcome::Skipped(diffsync::SkipReason::ChildFailed)
    );
}

#[test]
fn skip_children_on_delete_calls_only_the_parent_hook() {
    let mut target = sys_a();
    set_device_flags(&mut target, "nyc-r1", ModelFlags::SKIP_CHILDREN_ON_DELETE);
    let source = Inventory::new(
        "src",
        &[
            ("nyc", "east", &[]),
            (
                "sfo",
                "west",
                &[("sfo-r1", "router", None, &[("eth0", "uplink", 1500)])],
            ),
        ],
    );
    target.sync_from(&source).unwrap();
    assert_eq!(target.log, ["delete device nyc-r1"]);
    assert_eq!(target.store.count("interface"), 1);
    assert!(!target.diff_from(&source).unwrap().has_diffs());
}

#[test]
fn type_level_flags_come_from_the_schema() {
    #[derive(diffsync::DiffModel, Clone, Debug, PartialEq)]
    #[diffsync(name = "vlan", flags(SKIP_UNMATCHED_DST))]
    struct Vlan {
        #[diffsync(id)]
        vid: u16,
        name: String,
    }
    let v = Vlan {
        vid: 10,
        name: "users".into(),
    };
    assert_eq!(diffsync::DiffModel::flags(&v), ModelFlags::SKIP_UNMATCHED_DST);
}

#[test]
fn log_unchanged_records_keeps_unchanged_elements() {
    let a = sys_b();
    let b = sys_b();
    let plain = a.diff_from(&b).unwrap();
    assert!(plain.elements.is_empty());
    let kept = a
        .diff_from_with(&b, &mut Options::new().flags(DiffFlags::LOG_UNCHANGED_RECORDS))
        .unwrap();
    assert_eq!(kept.iter().count(), 7);
    assert_eq!(kept.summary(), plain.summary());
    assert!(!kept.has_diffs());
    assert_eq!(kept.to_string(), "(no diffs)");
}

#[test]
fn every_flag_rendered() {
    let mut out = String::new();
    let cases = [
        ("none", DiffFlags::empty()),
        ("SKIP_UNMATCHED_SRC", DiffFlags::SKIP_UNMATCHED_SRC),
        ("SKIP_UNMATCHED_DST", DiffFlags::SKIP_UNMATCHED_DST),
        ("SKIP_UNMATCHED_BOTH", DiffFlags::SKIP_UNMATCHED_BOTH),
        ("LOG_UNCHANGED_RECORDS", DiffFlags::LOG_UNCHANGED_RECORDS),
    ];
    for (name, flags) in cases {
        let diff = sys_a()
            .diff_from_with(&sys_b(), &mut Options::new().flags(flags))
            .unwrap();
        out.push_str(&format!("== {name}: {}\n{diff}\n\n", diff.summary()));
    }
    let model_cases = [
        ("IGNORE on nyc-r1", "nyc-r1", ModelFlags::IGNORE),
        ("SKIP_UNMATCHED_DST on sfo-r1", "sfo-r1", ModelFlags::SKIP_UNMATCHED_DST),
    ];
    for (name, device, flags) in model_cases {
        let mut target = sys_a();
        set_device_flags(&mut target, device, flags);
        let diff = target.diff_from(&sys_b()).unwrap();
        out.push_str(&format!("== model {name}: {}\n{diff}\n\n", diff.summary()));
    }
    for (name, flags) in [
        ("NATURAL_DELETION_ORDER", ModelFlags::NATURAL_DELETION_ORDER),
        ("SKIP_CHILDREN_ON_DELETE", ModelFlags::SKIP_CHILDREN_ON_DELETE),
    ] {
        let mut target = sys_a();
        set_device_flags(&mut target, "sfo-r1", flags);
        target.sync_from(&sys_b()).unwrap();
        out.push_str(&format!(
            "== sync with {name} on sfo-r1:\n{}\n\n",
            target.log.join("\n")
        ));
    }
    insta::assert_snapshot!("every_flag", out);
}

/// Counts debug events whose message is `message`.
struct CountEvents {
    message: &'static str,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl tracing::Subscriber for CountEvents {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Msg(String);
        impl tracing::field::Visit for Msg {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Msg(String::new());
        event.record(&mut m);
        if m.0 == self.message {
            self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn log_unchanged_records_logs_each_unchanged_element_during_sync() {
    let count = |flags: DiffFlags| {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sub = CountEvents {
            message: "no changes to apply",
            seen: seen.clone(),
        };
        tracing::subscriber::with_default(sub, || {
            let mut target = sys_a();
            target
                .sync_from_with(&sys_b(), &mut Options::new().flags(flags))
                .unwrap();
        });
        seen.load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(count(DiffFlags::LOG_UNCHANGED_RECORDS), 1, "the unchanged site nyc");
    assert_eq!(count(DiffFlags::empty()), 0);
}

#[test]
fn natural_order_children_still_wait_for_a_failed_ancestor() {
    // The site's delete (parent first) fails; its device deletes children
    // first. Nothing under the site may be deleted.
    let mut target = sys_a().fail_on("site", "sfo");
    set_device_flags(&mut target, "sfo-r1", ModelFlags::NATURAL_DELETION_ORDER);
    let report = target
        .sync_from_with(&sys_b(), &mut Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE))
        .unwrap();
    assert!(!target.log.iter().any(|l| l.contains("sfo-r1")), "{:?}", target.log);
    for key in ["sfo-r1", "sfo-r1__eth0"] {
        let e = report.elements.iter().find(|e| e.key.unique_id() == key).unwrap();
        assert_eq!(
            e.outcome,
            diffsync::Outcome::Skipped(diffsync::SkipReason::ParentFailed),
            "{key}"
        );
    }
    assert_eq!(target.store.count("interface"), 4, "nothing under sfo was removed");
}
