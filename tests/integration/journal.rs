//! The journal: runs recorded as they go and read back, per-key history,
//! retention, and guarded rollback.

use diffsync::{Action, DiffFlags, Options, Outcome};
use diffsync_journal::{Journal, JournalError, Mode, Retention, RunFilter, RunResult};
use diffsync_tests::key_of;
use diffsync_tests::{Device, Inventory, Site, sys_a, sys_b};

fn set(inv: &mut Inventory, model_type: &str, key: &str, field: &str, value: &str) {
    let values: diffsync::Attrs = [(field.to_string().into(), value.into())].into_iter().collect();
    inv.store
        .update_attributes(
            key_of(&format!("{}:{}", model_type, key)),
            diffsync::AttrSource::Values(&values),
        )
        .unwrap();
}

#[test]
fn a_recorded_sync_reads_back_what_its_report_said() {
    let mut journal = Journal::in_memory().unwrap();
    let mut target = sys_b();
    let mut opts = Options::new().max_delete_share(Some(0.9));
    let (run, report) = journal.sync(&mut target, &sys_a(), &mut opts).unwrap();
    let recorded = journal.run(run).unwrap();
    assert!(recorded.options == "deletes at most 90 %", "{}", recorded.options);
    assert_eq!(
        (
            recorded.mode,
            recorded.result,
            recorded.source.as_str(),
            recorded.target.as_str()
        ),
        (Mode::OneWay, RunResult::Succeeded, "sys-a", "sys-b")
    );
    assert!(!recorded.dry_run && recorded.ended_ms.is_some() && recorded.error.is_none());
    assert_eq!(recorded.totals, Some(report.totals()));
    let phases: Vec<&str> = recorded.phases.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(phases, ["diff", "sync"]);
    // Every change of the report, with its outcome, in the diff's order.
    let elements = journal.elements(run).unwrap();
    let counts = journal.action_counts(run).unwrap();
    let of = |a: Action| elements.iter().filter(|e| e.action == a).count();
    assert_eq!(
        (counts.create, counts.update, counts.delete),
        (of(Action::Create), of(Action::Update), of(Action::Delete))
    );
    assert!(counts.total() > 0);
    let changes: Vec<_> = report
        .elements
        .iter()
        .filter(|e| e.action != Action::NoChange)
        .collect();
    assert_eq!(elements.len(), changes.len());
    for r in changes {
        let e = elements
            .iter()
            .find(|e| e.model_type() == r.model_type() && e.key.unique_id() == r.key.unique_id())
            .unwrap();
        assert_eq!((e.action, &e.outcome), (r.action, &r.outcome), "{}", r.key);
    }
    // Values before and after, and the parent of each.
    let role = elements.iter().find(|e| e.key.unique_id() == "nyc-r1").unwrap();
    assert_eq!(role.before.as_ref().unwrap()["role"], "edge");
    assert_eq!(role.after.as_ref().unwrap()["role"], "router");
    assert_eq!(role.parent, Some(Site::key("nyc").into_erased()));
    assert_eq!(
        role.changed(),
        [("role".to_string(), Some("edge".into()), Some("router".into()))]
    );
    let lax = elements.iter().find(|e| e.key.unique_id() == "lax").unwrap();
    assert_eq!((lax.action, lax.after.is_none()), (Action::Delete, true));
    // Who ran it.
    assert!(
        recorded.who.as_deref().is_some_and(|w| w.contains('@')),
        "{:?}",
        recorded.who
    );
}

#[test]
fn a_journal_from_before_runs_kept_who_ran_them_gains_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let mut journal = Journal::open(&path).unwrap();
    journal.sync(&mut sys_b(), &sys_a(), &mut Options::new()).unwrap();
    drop(journal);
    // As an older version left it: no who column.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("ALTER TABLE runs DROP COLUMN who")
        .unwrap();
    let mut journal = Journal::open(&path).unwrap();
    let old = journal.runs(&Default::default()).unwrap().runs;
    assert_eq!(old[0].who, None, "an old run says nothing of who ran it");
    let (run, _) = journal.sync(&mut sys_b(), &sys_a(), &mut Options::new()).unwrap();
    assert!(journal.run(run).unwrap().who.is_some());
}

#[test]
fn a_failed_change_is_recorded_with_its_message_and_the_run_as_partial() {
    let mut journal = Journal::in_memory().unwrap();
    let mut target = sys_b().fail_on("site", "sfo");
    let mut opts = Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE);
    let (run, report) = journal.sync(&mut target, &sys_a(), &mut opts).unwrap();
    assert!(!report.is_success());
    assert_eq!(journal.run(run).unwrap().result, RunResult::Partial);
    let sfo = journal
        .elements(run)
        .unwrap()
        .into_iter()
        .find(|e| e.key.unique_id() == "sfo")
        .unwrap();
    assert!(matches!(&sfo.outcome, Outcome::Failed(c) if c.message().contains("refused by backend")));
    // Found among the run's unusual outcomes without reading the others.
    let (failed, count) = journal.unusual(run, |o| matches!(o, Outcome::Failed(_)), 10).unwrap();
    assert_eq!((count, failed.len()), (1, 1));
    assert_eq!(failed[0], sfo);
    assert_eq!(journal.unusual(run, |_| false, 10).unwrap(), (vec![], 0));

    // Without CONTINUE_ON_FAILURE the sync stops: recorded as failed, and
    // the error names the run.
    let mut target = sys_b().fail_on("site", "sfo");
    let err = journal.sync(&mut target, &sys_a(), &mut Options::new()).unwrap_err();
    let JournalError::Run { run, .. } = err else {
        panic!("{err:?}")
    };
    let recorded = journal.run(run).unwrap();
    assert_eq!(recorded.result, RunResult::Failed);
    assert!(recorded.error.unwrap().contains("refused by backend"));
}

#[test]
fn a_run_killed_mid_apply_leaves_an_unfinished_record_that_can_be_undone() {
    let mut journal = Journal::in_memory().unwrap();
    let mut target = sys_b();
    target.panic_on.insert(("site".into(), "sfo".into()));
    let before = target.store.fingerprint();
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        journal.sync(&mut target, &sys_a(), &mut Options::new())
    }));
    assert!(died.is_err(), "the hook panicked");
    let filter = RunFilter {
        result: Some(RunResult::Unfinished),
        ..RunFilter::default()
    };
    let [unfinished] = journal.runs(&filter).unwrap().runs.try_into().unwrap();
    assert!(unfinished.ended_ms.is_none());
    let elements = journal.elements(unfinished.id).unwrap();
    assert!(!elements.is_empty() && elements.iter().all(|e| e.outcome == Outcome::Pending));
    // Some changes reached the system before the panic: undone, by digest.
    assert_ne!(target.store.fingerprint(), before);
    target.panic_on.clear();
    let undo = journal.rollback(unfinished.id, &mut target, false).unwrap();
    assert!(undo.conflicts.is_empty(), "{:?}", undo.conflicts);
    assert_eq!(target.store.fingerprint(), before);
}

#[test]
fn a_rollback_restores_the_target_exactly_and_its_rollback_restores_the_run() {
    let mut journal = Journal::in_memory().unwrap();
    let mut target = sys_b();
    let before = target.store.fingerprint();
    let (run, _) = journal.sync(&mut target, &sys_a(), &mut Options::new()).unwrap();
    assert_eq!(target.store.fingerprint(), sys_a().store.fingerprint());
    let hooks_before = target.log.len();

    // A preview: the plan, recorded nowhere.
    let runs = |j: &Journal| j.runs(&diffsync_journal::RunFilter::default()).unwrap().len();
    let recorded_runs = runs(&journal);
    let preview = journal.rollback_preview(run, &mut target).unwrap();
    assert!(preview.run.is_none() && preview.conflicts.is_empty());
    assert_eq!(runs(&journal), recorded_runs, "a preview records no run");

    // A dry run: the same plan, recorded; nothing written.
    let plan = journal.rollback(run, &mut target, true).unwrap();
    assert!(plan.report.totals().planned > 0);
    assert_eq!(runs(&journal), recorded_runs + 1);
    let planned = |r: &diffsync_journal::Rollback| {
        let mut keys: Vec<_> = r.report.elements.iter().map(|e| (e.action, e.key.clone())).collect();
        keys.sort();
        keys
    };
    assert_eq!(planned(&preview), planned(&plan));
    assert_eq!(target.store.fingerprint(), sys_a().store.fingerprint());
    assert_eq!(target.log.len(), hooks_before);

    let undo = journal.rollback(run, &mut target, false).unwrap();
    assert!(undo.conflicts.is_empty() && undo.report.is_success(), "{undo:?}");
    assert_eq!(target.store.fingerprint(), before, "the target is as it was");
    assert!(target.log.len() > hooks_before, "through the target's own hooks");
    let undo_run = undo.run.unwrap();
    let recorded = journal.run(undo_run).unwrap();
    assert_eq!((recorded.mode, recorded.rollback_of), (Mode::Rollback, Some(run)));

    // The rollback's rollback: the run's result again.
    let redo = journal.rollback(undo_run, &mut target, false).unwrap();
    assert!(redo.conflicts.is_empty(), "{:?}", redo.conflicts);
    assert_eq!(target.store.fingerprint(), sys_a().store.fingerprint());
}

#[test]
fn a_rollback_leaves_what_changed_since_alone_and_names_it() {
    let mut journal = Journal::in_memory().unwrap();
    let mut target = sys_b();
    let (run, _) = journal.sync(&mut target, &sys_a(), &mut Options::new()).unwrap();
    // Since the run: the device it updated is edited again, and a site it
    // created gets a new device.
    set(&mut target, "device", "nyc-r1", "role", "spine");
    target
        .store
        .add_child(
            diffsync_tests::Site::key("sfo".to_string()),
            Device {
                name: "sfo-r9".into(),
                role: "edge".into(),
                serial: None,
                db_pk: 0,
                flags: diffsync::ModelFlags::empty(),
            },
        )
        .unwrap();
    let preview = journal.rollback_preview(run, &mut target).unwrap();
    let undo = journal.rollback(run, &mut target, false).unwrap();
    assert_eq!(preview.conflicts, undo.conflicts, "the preview names the same");
    let mut conflicts: Vec<(&str, &str, &str)> = undo
        .conflicts
        .iter()
        .map(|c| (c.model_type(), c.key.unique_id(), c.reason.as_str()))
        .collect();
    conflicts.sort();
    assert_eq!(
        conflicts,
        [
            ("device", "nyc-r1", "changed since the run"),
            ("site", "sfo", "it has children written since the run"),
        ]
    );
    // The edit and the new device stayed; the rest was undone (lax is back).
    assert_eq!(
        target.store.get(&Device::key("nyc-r1".to_string())).unwrap().role,
        "spine"
    );
    assert!(target.store.get(&Device::key("sfo-r9".to_string())).is_ok());
    assert!(target.store.get_dyn(key_of("site:lax")).is_ok());
    assert!(target.store.get_dyn(key_of("interface:nyc-r1__eth2")).is_ok());
}

#[test]
fn a_rollback_of_a_dry_run_or_of_another_target_is_refused() {
    let mut journal = Journal::in_memory().unwrap();
    let mut target = sys_b();
    let (dry, _) = journal
        .sync(&mut target, &sys_a(), &mut Options::new().dry_run(true))
        .unwrap();
    assert!(matches!(
        journal.rollback(dry, &mut target, false),
        Err(JournalError::NotUndoable { .. })
    ));
    let (run, _) = journal.sync(&mut target, &sys_a(), &mut Options::new()).unwrap();
    let mut other = sys_a();
    let err = journal.rollback(run, &mut other, false).unwrap_err();
    assert!(err.to_string().contains("sys-b"), "{err}");
}

#[test]
fn the_history_of_a_key_says_who_changed_it_when_and_from_what() {
    let mut journal = Journal::in_memory().unwrap();
    let mut target = sys_b();
    let (first, _) = journal.sync(&mut target, &sys_a(), &mut Options::new()).unwrap();
    let mut cmdb = sys_a();
    cmdb.name = "cmdb".into();
    set(&mut cmdb, "device", "nyc-r1", "role", "core");
    let (second, _) = journal.sync(&mut target, &cmdb, &mut Options::new()).unwrap();
    let history = journal.history(Device::key("nyc-r1")).unwrap();
    let seen: Vec<_> = history
        .iter()
        .map(|h| (h.run, h.source.as_str(), h.element.changed()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                first,
                "sys-a",
                vec![("role".to_string(), Some("edge".into()), Some("router".into()))]
            ),
            (
                second,
                "cmdb",
                vec![("role".to_string(), Some("router".into()), Some("core".into()))]
            ),
        ]
    );
}

#[test]
fn runs_are_found_by_system_mode_and_result_and_old_ones_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut journal = Journal::open(&path).unwrap();
    let mut target = sys_b();
    let (first, _) = journal.sync(&mut target, &sys_a(), &mut Options::new()).unwrap();
    journal.rollback(first, &mut target, false).unwrap();
    let mut other = sys_a();
    let (third, _) = journal.sync(&mut other, &sys_b(), &mut Options::new()).unwrap();
    drop(journal);

    // Read back from the file.
    let mut journal = Journal::open(&path).unwrap();
    let by = |filter: RunFilter| -> Vec<i64> { journal.runs(&filter).unwrap().iter().map(|r| r.id.0).collect() };
    assert_eq!(by(RunFilter::default()).len(), 3);
    let rollbacks = by(RunFilter {
        mode: Some(Mode::Rollback),
        ..RunFilter::default()
    });
    assert_eq!(rollbacks.len(), 1);
    let on_a = by(RunFilter {
        system: Some("sys-a".into()),
        mode: Some(Mode::OneWay),
        ..RunFilter::default()
    });
    assert_eq!(on_a, [third.0, first.0], "newest first");
    assert_eq!(journal.retain(Retention::Runs(1)).unwrap(), 2);
    assert_eq!(journal.runs(&RunFilter::default()).unwrap()[0].id, third);
    assert!(
        journal
            .history(Device::key("nyc-r1"))
            .unwrap()
            .iter()
            .all(|h| h.run == third)
    );
    assert!(matches!(journal.run(first), Err(JournalError::NoRun(_))));
}

/// The process's metrics endpoint, started by the first test that needs it
/// (a process has one recorder).
pub(crate) fn metrics_endpoint() -> std::net::SocketAddr {
    static ENDPOINT: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();
    *ENDPOINT.get_or_init(|| {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = free.local_addr().unwrap();
        drop(free);
        diffsync_journal::metrics::serve(address).unwrap();
        address
    })
}

/// The body of `GET /metrics` at `address` (retried while the listener starts).
pub(crate) fn scrape(address: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    for _ in 0..100 {
        if let Ok(mut stream) = std::net::TcpStream::connect(address) {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            return response;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on {address}");
}

/// The value of the one sample of `name` whose labels include all of `labels`.
pub(crate) fn sample(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let matching: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
    matching.first().copied()
}

#[test]
fn the_metrics_endpoint_counts_a_known_run() {
    let address = metrics_endpoint();
    let mut journal = Journal::in_memory().unwrap();
    let mut target = sys_b().fail_on("site", "sfo");
    target.name = "metrics-target".into();
    let mut opts = Options::new().flags(DiffFlags::CONTINUE_ON_FAILURE);
    let (_, report) = journal.sync(&mut target, &sys_a(), &mut opts).unwrap();
    let body = scrape(address);
    let target = r#"target="metrics-target""#;
    assert_eq!(
        sample(
            &body,
            "diffsync_runs_total",
            &[target, r#"mode="one-way""#, r#"result="partial""#]
        ),
        Some(1.0),
        "{body}"
    );
    // Each change counted once, under its type, action and outcome.
    let counted: f64 = body
        .lines()
        .filter(|l| l.starts_with("diffsync_operations_total{") && l.contains(target))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let changes = report.elements.iter().filter(|e| e.action != Action::NoChange).count();
    assert_eq!(counted, changes as f64, "{body}");
    let update = [
        target,
        r#"model_type="device""#,
        r#"action="update""#,
        r#"outcome="applied""#,
    ];
    assert_eq!(sample(&body, "diffsync_operations_total", &update), Some(1.0), "{body}");
    let failed = [
        target,
        r#"model_type="site""#,
        r#"action="create""#,
        r#"outcome="failed""#,
    ];
    assert_eq!(sample(&body, "diffsync_operations_total", &failed), Some(1.0), "{body}");
    // Phase durations are histograms with buckets.
    assert!(
        body.lines()
            .any(|l| l.starts_with("diffsync_phase_seconds_bucket{") && l.contains(r#"phase="sync""#)),
        "{body}"
    );
    assert!(body.contains("# TYPE diffsync_runs_total counter"), "{body}");
}

/// Each recorded change of a run: the side it went to, and its key.
fn sides(journal: &Journal, run: diffsync_journal::RunId) -> Vec<(Option<diffsync_journal::Side>, String)> {
    journal
        .elements(run)
        .unwrap()
        .iter()
        .map(|e| (e.side, e.key.unique_id().to_string()))
        .collect()
}

/// Two sides and their base; since the base, left edited a device, right
/// a site, and both one interface.
fn edited_on_both_sides() -> (Inventory, Inventory, diffsync::bidir::Base) {
    let (mut left, mut right) = (sys_a(), sys_a());
    let base = diffsync::bidir::Base::from_store(sys_a().store);
    set(&mut left, "device", "nyc-r1", "role", "core");
    set(&mut right, "site", "sfo", "region", "pacific");
    set(&mut left, "interface", "nyc-r1__eth0", "description", "left's");
    set(&mut right, "interface", "nyc-r1__eth0", "description", "right's");
    (left, right, base)
}

#[test]
fn runs_are_found_by_text_in_their_systems_runner_options_or_error() {
    let mut journal = Journal::in_memory().unwrap();
    journal.sync(&mut sys_b(), &sys_a(), &mut Options::new()).unwrap();
    journal
        .sync(&mut sys_b(), &sys_a(), &mut Options::new().max_delete_share(Some(0.9)))
        .unwrap();
    let found = |text: &str| -> Vec<i64> {
        let filter = RunFilter {
            text: Some(text.to_string()),
            ..RunFilter::default()
        };
        journal.runs(&filter).unwrap().runs.iter().map(|r| r.id.0).collect()
    };
    // A system's name in any case; an option; nothing.
    assert_eq!(found("SYS-A"), [2, 1]);
    assert_eq!(found("deletes at most 90"), [2]);
    assert!(found("no such text").is_empty());
    // LIKE's wildcards match only themselves: `%` is in the second run's
    // options only, and `_` is no `-`.
    assert_eq!(found("%"), [2]);
    assert!(found("sys_a").is_empty());
}

#[test]
fn a_two_way_run_is_recorded_per_side_with_its_conflicts() {
    use diffsync::bidir::{BiOptions, Strategy};
    use diffsync_journal::Side;
    let mut journal = Journal::in_memory().unwrap();
    let (mut left, mut right, mut base) = edited_on_both_sides();
    let opts = BiOptions::new().strategy(Strategy::LeftWins);
    let (run, report) = journal.reconcile(&mut left, &mut right, &mut base, &opts).unwrap();
    assert_eq!(left.store.fingerprint(), right.store.fingerprint());
    let recorded = journal.run(run).unwrap();
    assert_eq!(recorded.options, "strategy left-wins; deletes at most 50 % a side");
    assert_eq!(
        (
            recorded.mode,
            recorded.source.as_str(),
            recorded.target.as_str(),
            recorded.result
        ),
        (Mode::TwoWay, "sys-a", "sys-a", RunResult::Succeeded)
    );
    let sides = sides(&journal, run);
    // Each side's changes are numbered one after the other: left, then right.
    let (left_at, right_at) = (
        journal.changes_to(run, Some(Side::Left)).unwrap(),
        journal.changes_to(run, Some(Side::Right)).unwrap(),
    );
    let count = |side| sides.iter().filter(|(s, _)| *s == side).count() as u32;
    assert_eq!(left_at, (0, count(Some(Side::Left))));
    assert_eq!(right_at, (left_at.1, count(Some(Side::Right))));
    assert_eq!(journal.changes_to(run, None).unwrap(), (0, 0));
    assert!(sides.contains(&(Some(Side::Left), "sfo".into())), "{sides:?}");
    assert!(sides.contains(&(Some(Side::Right), "nyc-r1".into())), "{sides:?}");
    assert!(sides.contains(&(Some(Side::Right), "nyc-r1__eth0".into())), "{sides:?}");
    let conflicts = journal.conflicts(run).unwrap();
    assert_eq!(conflicts, report.conflicts);
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].key.unique_id(), "nyc-r1__eth0");
}

#[test]
fn a_two_way_run_a_hook_kills_leaves_both_sides_changes_and_its_conflict_unfinished() {
    use diffsync::bidir::{BiOptions, Strategy};
    use diffsync_journal::Side;
    let mut journal = Journal::in_memory().unwrap();
    let (mut left, mut right, mut base) = edited_on_both_sides();
    // The right side's hook dies writing the device.
    right.panic_on.insert(("device".into(), "nyc-r1".into()));
    let opts = BiOptions::new().strategy(Strategy::LeftWins);
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        journal.reconcile(&mut left, &mut right, &mut base, &opts)
    }));
    assert!(died.is_err());
    let unfinished = RunFilter {
        result: Some(RunResult::Unfinished),
        ..RunFilter::default()
    };
    let [run] = journal.runs(&unfinished).unwrap().runs.try_into().unwrap();
    let sides = sides(&journal, run.id);
    assert!(sides.contains(&(Some(Side::Left), "sfo".into())), "{sides:?}");
    assert!(sides.contains(&(Some(Side::Right), "nyc-r1".into())), "{sides:?}");
    let conflicts = journal.conflicts(run.id).unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].key.unique_id(), "nyc-r1__eth0");
}

#[test]
fn a_two_way_run_s_side_is_undone_on_that_side_alone() {
    use diffsync::bidir::{Base, BiOptions, Strategy};
    let mut journal = Journal::in_memory().unwrap();
    let (mut left, mut right) = (sys_a(), sys_a());
    left.name = "left".into();
    right.name = "right".into();
    let mut base = Base::from_store(sys_a().store);
    set(&mut left, "device", "nyc-r1", "role", "core");
    set(&mut right, "site", "sfo", "region", "pacific");
    let (left_before, right_before) = (left.store.fingerprint(), right.store.fingerprint());
    let (run, _) = journal
        .reconcile(
            &mut left,
            &mut right,
            &mut base,
            &BiOptions::new().strategy(Strategy::LeftWins),
        )
        .unwrap();
    // Undo what went to the right side: it holds its own edit again, not left's.
    let undo = journal.rollback(run, &mut right, false).unwrap();
    assert!(undo.conflicts.is_empty(), "{:?}", undo.conflicts);
    assert_eq!(right.store.fingerprint(), right_before);
    assert_ne!(
        left.store.fingerprint(),
        left_before,
        "the left side keeps what it took"
    );
    let undo = journal.rollback(run, &mut left, false).unwrap();
    assert!(undo.conflicts.is_empty(), "{:?}", undo.conflicts);
    assert_eq!(left.store.fingerprint(), left_before);
    assert!(journal.rollback(run, &mut sys_b(), false).is_err(), "neither side");
}

mod failure {
    use std::sync::{Arc, Mutex};

    use diffsync::{Adapter, Change, HookError, LocalStore, Options};
    use diffsync_journal::{Journal, JournalError, RunFilter, RunId, RunResult};
    use diffsync_tests::{Inventory, sys_a, sys_b};

    /// A target whose hooks look at the journal's file (through a second
    /// connection) before each write: how many of the run's changes it holds.
    struct Watched {
        inner: Inventory,
        path: std::path::PathBuf,
        seen: Arc<Mutex<Vec<usize>>>,
    }

    impl Adapter for Watched {
        type Store = LocalStore;
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn store(&self) -> &LocalStore {
            &self.inner.store
        }
        fn store_mut(&mut self) -> &mut LocalStore {
            &mut self.inner.store
        }
    }
    impl diffsync::Sink for Watched {
        fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
            let other = Journal::open(&self.path).unwrap();
            let newest = other.runs(&RunFilter::default()).unwrap().runs[0].id;
            self.seen.lock().unwrap().push(other.elements(newest).unwrap().len());
            self.inner.apply(change)
        }
    }

    #[test]
    fn a_run_s_plan_is_in_the_journal_before_its_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let mut journal = Journal::open(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut target = Watched {
            inner: sys_b(),
            path: path.clone(),
            seen: Arc::clone(&seen),
        };
        let (run, report) = journal.sync(&mut target, &sys_a(), &mut Options::new()).unwrap();
        let planned = journal.elements(run).unwrap().len();
        assert!(planned > 0 && report.is_success());
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), planned, "one write per change");
        assert!(
            seen.iter().all(|&n| n == planned),
            "the plan was whole at every write: {seen:?}"
        );
    }

    #[test]
    fn another_application_s_database_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES ('ada');")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Journal::open(&path).err().expect("a foreign database was opened");
        assert!(
            matches!(&err, JournalError::NotAJournal { tables, .. } if tables == "customers"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "the file was changed");
        assert!(!dir.path().join("app.db-wal").exists(), "switched to WAL");
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete");
    }

    #[test]
    fn a_journal_of_a_newer_layout_is_refused_an_older_one_is_brought_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        drop(Journal::open(&path).unwrap());
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute("UPDATE journal_meta SET value = '99' WHERE name = 'schema'", [])
                .unwrap();
        }
        let err = Journal::open(&path).err().expect("a newer journal was opened");
        assert!(matches!(err, JournalError::Newer { found: 99, .. }), "{err}");
        // A journal from before the layout's version was kept (no meta, no
        // options column): opened, and its runs read.
        let old = dir.path().join("old.db");
        {
            let conn = rusqlite::Connection::open(&old).unwrap();
            conn.execute_batch(
                "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_ms INTEGER NOT NULL, ended_ms INTEGER,
                 mode TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL, dry_run INTEGER NOT NULL,
                 result TEXT NOT NULL, error TEXT, totals TEXT, phases TEXT NOT NULL DEFAULT '[]', peak_memory INTEGER,
                 rollback_of INTEGER, usual TEXT);
                 INSERT INTO runs (started_ms, ended_ms, mode, source, target, dry_run, result)
                 VALUES (1, 2, 'one-way', 'a', 'b', 0, 'succeeded');",
            )
            .unwrap();
        }
        let journal = Journal::open(&old).unwrap();
        let runs = journal.runs(&RunFilter::default()).unwrap();
        assert_eq!((runs.len(), runs.unreadable.len()), (1, 0));
    }

    #[test]
    fn an_unreadable_run_is_skipped_and_named_by_its_own_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let mut journal = Journal::open(&path).unwrap();
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(journal.sync(&mut sys_b(), &sys_a(), &mut Options::new()).unwrap().0);
        }
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute("UPDATE runs SET mode = 'sideways' WHERE id = ?1", [runs[1].0])
                .unwrap();
        }
        let read = journal.runs(&RunFilter::default()).unwrap();
        let ids: Vec<RunId> = read.iter().map(|r| r.id).collect();
        assert_eq!(ids, [runs[2], runs[0]]);
        assert!(
            matches!(&read.unreadable[..], [JournalError::Corrupt { run, message }] if *run == runs[1] && message.contains("sideways")),
            "{:?}",
            read.unreadable
        );
    }

    #[test]
    fn a_rollback_records_what_it_left_alone_and_says_partial() {
        let mut journal = Journal::in_memory().unwrap();
        let mut target = sys_b();
        let (run, _) = journal.sync(&mut target, &sys_a(), &mut Options::new()).unwrap();
        // Someone edits one of the run's results; the rest can be undone.
        let values: diffsync::Attrs = [("role".to_string().into(), "spine".into())].into_iter().collect();
        target
            .store
            .update_attributes(
                diffsync_tests::key_of("device:nyc-r1"),
                diffsync::AttrSource::Values(&values),
            )
            .unwrap();
        let undo = journal.rollback(run, &mut target, false).unwrap();
        assert_eq!(undo.conflicts.len(), 1);
        let own = undo.run.unwrap();
        assert_eq!(journal.run(own).unwrap().result, RunResult::Partial);
        assert_eq!(journal.left_alone(own).unwrap(), undo.conflicts);
        // Rolled back again: everything is changed since (by the first
        // rollback), so all is left alone, and that too is a run.
        let again = journal.rollback(run, &mut target, false).unwrap();
        assert!(again.report.elements.is_empty() && !again.conflicts.is_empty());
        let own = again.run.expect("recorded");
        assert_eq!(journal.run(own).unwrap().result, RunResult::Partial);
        assert_eq!(journal.left_alone(own).unwrap(), again.conflicts);
    }
}

/// The chaos law of rollback: runs that apply only part of their changes
/// (hooks fail at random), edits by someone else afterwards, then the
/// rollback: every key holds what it held before the run, except the keys
/// edited since (they keep the edit) and the ones the rollback left alone
/// (recorded with it, and the rollback then partial).
#[test]
fn a_partial_run_s_rollback_restores_every_key_but_those_edited_since_and_left_alone() {
    use std::collections::BTreeMap;

    use diffsync::{DiffFlags, LocalStore};
    use diffsync_tests::Interface;

    /// A model's place: (type, key).
    type At = (String, String);

    /// Each model: (type, key) → (attributes, parent).
    fn state(store: &LocalStore) -> BTreeMap<At, (String, Option<At>)> {
        let mut out = BTreeMap::new();
        for t in ["site", "device", "interface"] {
            for m in store.get_all_dyn(t) {
                let k = m.unique_id();
                let parent = store
                    .parent(key_of(&format!("{}:{}", t, k)))
                    .unwrap()
                    .map(|p| (p.model_type().to_string(), p.unique_id().to_string()));
                out.insert(
                    (t.to_string(), k),
                    (serde_json::to_string(&m.attributes()).unwrap(), parent),
                );
            }
        }
        out
    }
    let seeds: u64 = std::env::var("CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for seed in 0..seeds {
        let mut rng = fastrand::Rng::with_seed(seed);
        let start = |name: &str| {
            let mut inv = Inventory::empty(name);
            for s in 0..3 {
                let site = format!("s{s}");
                inv.store
                    .add(diffsync_tests::Site {
                        name: site.clone(),
                        region: "east".into(),
                    })
                    .unwrap();
                for d in 0..2 {
                    let dev = format!("{site}-d{d}");
                    let device = Device {
                        name: dev.clone(),
                        role: "edge".into(),
                        serial: None,
                        db_pk: 0,
                        flags: Default::default(),
                    };
                    inv.store.add_child(key_of(&format!("site:{}", site)), device).unwrap();
                    for i in 0..2 {
                        let intf = Interface {
                            device_name: dev.clone(),
                            name: format!("eth{i}"),
                            description: "up".into(),
                            mtu: 1500,
                        };
                        inv.store.add_child(key_of(&format!("device:{}", dev)), intf).unwrap();
                    }
                }
            }
            inv
        };
        let mut target = start("target");
        let before = state(&target.store);
        // The source: updates, deletes (subtrees), creates.
        let mut source = start("source");
        for (t, k) in before.keys() {
            if source.store.get_dyn(key_of(&format!("{}:{}", t, k))).is_err() {
                continue;
            }
            match rng.u8(..6) {
                0 => set(
                    &mut source,
                    t,
                    k,
                    if t == "site" {
                        "region"
                    } else if t == "device" {
                        "role"
                    } else {
                        "description"
                    },
                    "changed",
                ),
                1 => source.store.remove(key_of(&format!("{}:{}", t, k)), true).unwrap(),
                _ => {}
            }
        }
        source
            .store
            .add(diffsync_tests::Site {
                name: format!("new{seed}"),
                region: "north".into(),
            })
            .unwrap();
        // Hooks that fail at random: the run is partial.
        for (t, k) in before.keys().chain([("site".to_string(), format!("new{seed}"))].iter()) {
            if rng.u8(..4) == 0 {
                target.fail.insert((t.clone(), k.clone()));
            }
        }
        let mut journal = Journal::in_memory().unwrap();
        let opts = &mut Options::new()
            .flags(DiffFlags::CONTINUE_ON_FAILURE)
            .max_delete_share(None);
        let (run, _) = match journal.sync(&mut target, &source, opts) {
            Ok(done) => done,
            Err(JournalError::Run { run, .. }) => (run, Default::default()),
            Err(e) => panic!("seed {seed}: {e}"),
        };
        target.fail.clear();
        // Someone else edits a few models afterwards.
        let after_run = state(&target.store);
        let mut edited = Vec::new();
        for (t, k) in after_run.keys() {
            if t == "device" && rng.u8(..5) == 0 {
                set(&mut target, t, k, "role", "someone else's");
                edited.push((t.clone(), k.clone()));
            }
        }
        let edits = state(&target.store);
        let undo = journal.rollback(run, &mut target, false).unwrap();
        let now = state(&target.store);
        let left_alone: Vec<(String, String)> = undo
            .conflicts
            .iter()
            .map(|c| (c.model_type().to_string(), c.key.unique_id().to_string()))
            .collect();
        let keys: std::collections::BTreeSet<&(String, String)> = before.keys().chain(now.keys()).collect();
        for key in keys {
            if left_alone.contains(key) {
                continue;
            }
            // An edit since is kept; where the model is, the run's doing, is undone.
            let expected = match (edited.contains(key), edits.get(key), before.get(key)) {
                (true, Some((attrs, _)), Some((_, parent))) => Some((attrs.clone(), parent.clone())),
                (true, edit, _) => edit.cloned(),
                (false, _, was) => was.cloned(),
            };
            assert_eq!(
                now.get(key),
                expected.as_ref(),
                "seed {seed}: {key:?}; left alone: {left_alone:?}"
            );
        }
        if let Some(own) = undo.run {
            let recorded = journal.run(own).unwrap();
            assert_eq!(
                recorded.result == RunResult::Partial,
                !undo.conflicts.is_empty() || !undo.report.is_success(),
                "seed {seed}: {recorded:?}"
            );
            assert_eq!(journal.left_alone(own).unwrap(), undo.conflicts, "seed {seed}");
        }
    }
}

/// `n` sites, each in `region`.
fn sites(name: &str, n: usize, region: &str) -> diffsync::MemoryAdapter {
    let mut adapter = diffsync::MemoryAdapter::new(name, &["site"]);
    adapter.store.register::<Site>().unwrap();
    for i in 0..n {
        adapter
            .store
            .add(Site {
                name: format!("site{i:04}"),
                region: region.into(),
            })
            .unwrap();
    }
    adapter
}

/// Two recorded syncs into an empty target: `created` sites made in the
/// east, then `moved` of them moved west (the rest deleted).
fn create_then_move(
    journal: &mut Journal,
    created: usize,
    moved: usize,
) -> (diffsync_journal::RunId, diffsync_journal::RunId) {
    let mut target = sites("target", 0, "");
    let mut run = |source: diffsync::MemoryAdapter| journal.sync(&mut target, &source, &mut Options::new()).unwrap().0;
    (run(sites("cmdb", created, "east")), run(sites("cmdb", moved, "west")))
}

#[test]
fn a_run_of_many_chunks_reads_back_in_order_and_each_key_s_history_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut journal = Journal::open(&path).unwrap();
    // 1,300 creates, then 1,300 updates: three chunks a run.
    let (created, moved) = create_then_move(&mut journal, 1300, 1300);
    let elements = journal.elements(moved).unwrap();
    let seqs: Vec<u32> = elements.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..1300).collect::<Vec<u32>>());
    assert!(
        elements
            .iter()
            .all(|e| e.action == Action::Update && e.outcome == Outcome::Applied)
    );
    assert_eq!(journal.action_counts(moved).unwrap().update, 1300);
    assert_eq!(journal.changes_to(moved, None).unwrap(), (0, 1300));
    // A page across a chunk's end, the last page, one past the end.
    let page = |from, limit| -> Vec<u32> {
        let page = journal.elements_page(moved, from, limit).unwrap();
        page.iter().map(|e| e.seq).collect()
    };
    assert_eq!(page(500, 30), (500..530).collect::<Vec<u32>>());
    assert_eq!(page(1290, 100), (1290..1300).collect::<Vec<u32>>());
    assert!(page(5000, 10).is_empty());
    assert_eq!(journal.elements_page(moved, 500, 30).unwrap()[..], elements[500..530]);
    // A key of the last chunk: both its runs, with their values.
    let history = journal.history(Site::key("site1299")).unwrap();
    let seen: Vec<_> = history
        .iter()
        .map(|h| (h.run, h.element.action, h.element.changed()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                created,
                Action::Create,
                vec![("region".to_string(), None, Some("east".into()))]
            ),
            (
                moved,
                Action::Update,
                vec![("region".to_string(), Some("east".into()), Some("west".into()))]
            ),
        ]
    );
    assert!(journal.history(Site::key("site9999")).unwrap().is_empty());
    // Kept compactly: well under 100 bytes a change (a row each took about 240).
    drop(journal);
    let bytes = std::fs::metadata(&path).unwrap().len();
    assert!(bytes < 2600 * 100, "{bytes} bytes for 2,600 changes");
    // Dropping the first run drops its chunks: its key is found once.
    let mut journal = Journal::open(&path).unwrap();
    assert_eq!(journal.retain(Retention::Runs(1)).unwrap(), 1);
    assert_eq!(journal.history(Site::key("site1299")).unwrap().len(), 1);
    assert!(matches!(journal.elements(created), Err(JournalError::NoRun(r)) if r == created));
}

#[test]
fn a_run_recorded_a_row_per_change_by_an_older_version_still_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut journal = Journal::open(&path).unwrap();
    let (run, _) = journal.sync(&mut sys_b(), &sys_a(), &mut Options::new()).unwrap();
    let elements = journal.elements(run).unwrap();
    let history = journal.history(Device::key("nyc-r1")).unwrap();
    drop(journal);
    // As layout 2 kept it: the same changes, a row each (an update's
    // values after: the changed ones only).
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DELETE FROM chunks; DELETE FROM chunk_keys;")
            .unwrap();
        for e in &elements {
            let changed = e.action == Action::Update;
            let after = e.after.as_ref().map(|after| {
                let kept: diffsync::Attrs = after
                    .iter()
                    .filter(|(k, v)| !changed || e.before.as_ref().and_then(|b| b.get(k.as_ref())) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                serde_json::to_string(&kept).unwrap()
            });
            conn.execute(
                "INSERT INTO elements (id, model_type, key, parent_type, parent_key, identifiers, action, before, after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                rusqlite::params![
                    (run.0 << 32) | i64::from(e.seq),
                    e.model_type(),
                    e.key.unique_id(),
                    e.parent.as_ref().map(|p| p.model_type().to_string()),
                    e.parent.as_ref().map(|p| p.unique_id().to_string()),
                    serde_json::to_string(&e.identifiers).unwrap(),
                    e.action.as_str(),
                    e.before.as_ref().map(|b| serde_json::to_string(b).unwrap()),
                    after,
                ],
            )
            .unwrap();
        }
    }
    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.elements(run).unwrap(), elements);
    assert_eq!(journal.history(Device::key("nyc-r1")).unwrap(), history);
    assert_eq!(journal.action_counts(run).unwrap().total(), elements.len());
    assert_eq!(journal.changes_to(run, None).unwrap(), (0, elements.len() as u32));
    assert_eq!(journal.elements_page(run, 1, 2).unwrap()[..], elements[1..3]);
}

#[test]
fn a_journal_in_postgresql_reads_back_what_one_in_sqlite_does() {
    let Some(pg) = diffsync_tests::servers::Postgres::start() else {
        return;
    };
    let mut shared = Journal::connect_postgres(&pg.params()).unwrap();
    let mut local = Journal::in_memory().unwrap();
    let mut read = Vec::new();
    for journal in [&mut shared, &mut local] {
        let (created, moved) = create_then_move(journal, 700, 650);
        let counts = journal.action_counts(moved).unwrap();
        read.push((
            journal.elements(created).unwrap(),
            journal.elements(moved).unwrap(),
            journal.history(Site::key("site0699")).unwrap().len(),
            journal.history(Site::key("site0001")).unwrap().len(),
            (counts.update, counts.delete),
        ));
    }
    assert_eq!(read[0], read[1]);
    assert_eq!((read[0].2, read[0].3, read[0].4), (2, 2, (650, 50)));
}
