//! The journal's rollback through the SQL adapters: a recorded sync undone
//! in the real database (read back after a reload: the rows, not only the
//! store), and a row edited since left alone and named. And the journal
//! kept in PostgreSQL: the same undo, a run the process died in, runs of
//! two processes sharing it, retention.

use diffsync::{AdapterExt, Options};
use diffsync_journal::{Journal, Mode, Retention, RunFilter, RunResult};

use crate::common::inventory;
use diffsync_tests::key_of;

/// Records a sync of `db` from a changed inventory, checks it changed the
/// rows, rolls it back and checks the rows are as before; then the same
/// run again, a row edited behind the journal's back, and a rollback that
/// leaves that row alone. `reload` reads the database again; `edit` changes
/// a device's role in it directly.
fn undo_in_the_database<A: diffsync::Sink<Store = diffsync::LocalStore>>(
    journal: &mut Journal,
    db: &mut A,
    reload: impl Fn(&mut A),
    edit: impl Fn(&mut A, &str, &str),
) {
    db.sync_from(&inventory("cmdb", 3, 0)).unwrap();
    reload(db);
    let before = db.store().fingerprint();
    let mut changed = inventory("cmdb", 3, 1);
    changed.store.remove(key_of("site:site2"), true).unwrap();
    let (run, report) = journal.sync(db, &changed, &mut Options::new()).unwrap();
    assert!(report.is_success() && report.changed(), "{report}");
    reload(db);
    assert_ne!(db.store().fingerprint(), before);

    let undo = journal.rollback(run, db, false).unwrap();
    assert!(undo.conflicts.is_empty() && undo.report.is_success(), "{undo:?}");
    reload(db);
    assert_eq!(db.store().fingerprint(), before, "the rows are as they were");

    // Again, and someone edits a device the run changed, in the database.
    let (run, _) = journal.sync(db, &changed, &mut Options::new()).unwrap();
    edit(db, "site1-r1", "core");
    reload(db);
    let undo = journal.rollback(run, db, false).unwrap();
    let refused: Vec<(&str, &str)> = undo
        .conflicts
        .iter()
        .map(|c| (c.model_type(), c.key.unique_id()))
        .collect();
    assert_eq!(refused, [("device", "site1-r1")], "{:?}", undo.conflicts);
    reload(db);
    let role = db.store().get_dyn(key_of("device:site1-r1")).unwrap().attributes()["role"].clone();
    assert_eq!(role, "core", "the edit made since stays");
    assert!(db.store().get_dyn(key_of("site:site2")).is_ok(), "the rest was undone");
}

#[cfg(feature = "sqlite")]
#[test]
fn a_recorded_sync_is_undone_in_an_sqlite_database() {
    use diffsync_adapters::sqlite::SqliteAdapter;
    let dir = tempfile::tempdir().unwrap();
    let mut db = SqliteAdapter::open("db", dir.path().join("inv.db"), crate::common::registry()).unwrap();
    undo_in_the_database(
        &mut Journal::in_memory().unwrap(),
        &mut db,
        |db| db.reload().unwrap(),
        |db, device, role| {
            db.connection()
                .execute("UPDATE device SET role = ?1 WHERE name = ?2", [role, device])
                .unwrap();
        },
    );
}

#[cfg(feature = "postgres")]
#[test]
fn a_recorded_sync_is_undone_in_a_postgresql_database() {
    use diffsync_adapters::postgres::PostgresAdapter;
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let mut db = PostgresAdapter::connect("pg", &pg.params(), crate::common::registry()).unwrap();
    // The journal in the same server, as a team would keep it.
    undo_in_the_database(
        &mut Journal::connect_postgres(&pg.params()).unwrap(),
        &mut db,
        |db| db.reload().unwrap(),
        |db, device, role| {
            db.client()
                .execute("UPDATE device SET role = $1 WHERE name = $2", &[&role, &device])
                .unwrap();
        },
    );
}

/// A layer that stands for a process dying while its target applies.
struct DiesMidApply;

impl diffsync::Layer for DiesMidApply {
    fn before(&mut self, _: &mut diffsync::Batch<'_, '_>) {
        panic!("the process dies mid-apply");
    }
}

#[cfg(feature = "postgres")]
#[test]
fn processes_opening_a_new_postgresql_journal_at_once_all_open_it() {
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    // Eight at once, several times: without a lock, two racing `CREATE
    // TABLE IF NOT EXISTS` make one of them fail.
    for round in 0..4 {
        let params = pg.params();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let opened: Vec<Result<(), String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (barrier, params) = (std::sync::Arc::clone(&barrier), params.clone());
                    scope.spawn(move || {
                        barrier.wait();
                        Journal::connect_postgres(&params)
                            .map(drop)
                            .map_err(|e| diffsync::Chain(&e).to_string())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(opened.iter().all(Result::is_ok), "round {round}: {opened:?}");
        // A fresh journal for the next round.
        let mut client = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
        client
            .batch_execute("DROP TABLE runs, elements, exceptions, conflicts, left_alone, journal_meta")
            .unwrap();
    }
}

#[cfg(feature = "postgres")]
#[test]
fn a_journal_in_postgresql_keeps_a_dead_run_unfinished_and_is_shared_by_processes() {
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let source = inventory("cmdb", 2, 1);
    // A process records a run and dies while its target applies.
    {
        let mut journal = Journal::connect_postgres(&pg.params()).unwrap();
        let mut target = diffsync::Layered::new(inventory("network", 2, 0), DiesMidApply);
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            journal.sync(&mut target, &source, &mut Options::new())
        }));
        assert!(died.is_err());
    }
    // The next process reads it back: unfinished, its changes planned.
    let mut one = Journal::connect_postgres(&pg.params()).unwrap();
    let unfinished = RunFilter {
        result: Some(RunResult::Unfinished),
        ..RunFilter::default()
    };
    let [dead] = one.runs(&unfinished).unwrap().runs.try_into().unwrap();
    assert_eq!((dead.source.as_str(), dead.target.as_str()), ("cmdb", "network"));
    let planned = one.elements(dead.id).unwrap();
    assert!(!planned.is_empty());
    assert!(
        planned.iter().all(|e| e.outcome == diffsync::Outcome::Pending),
        "{planned:?}"
    );
    // Counted by kind in the database (the dashboard's charts).
    let counts = one.action_counts(dead.id).unwrap();
    let of = |a: diffsync::Action| planned.iter().filter(|e| e.action == a).count();
    assert_eq!(
        (counts.create, counts.update, counts.delete),
        (
            of(diffsync::Action::Create),
            of(diffsync::Action::Update),
            of(diffsync::Action::Delete)
        )
    );
    assert_eq!(counts.total(), planned.len());

    // Two processes record into the same journal; each sees both.
    let mut two = Journal::connect_postgres(&pg.params()).unwrap();
    let mut a = inventory("network", 2, 0);
    let mut b = inventory("lab", 2, 0);
    let (run_a, report_a) = one.sync(&mut a, &source, &mut Options::new()).unwrap();
    let (run_b, _) = two.sync(&mut b, &source, &mut Options::new()).unwrap();
    assert_ne!(run_a, run_b);
    // Found by text in PostgreSQL as in SQLite: a system's name in any
    // case, LIKE's wildcards only themselves.
    let by_text = |text: &str| -> Vec<_> {
        let filter = RunFilter {
            text: Some(text.into()),
            ..RunFilter::default()
        };
        one.runs(&filter).unwrap().runs.iter().map(|r| r.id).collect()
    };
    assert_eq!(by_text("LAB"), [run_b]);
    assert!(by_text("l_b").is_empty());
    let ran = two.run(run_a).unwrap();
    assert_eq!((ran.result, ran.mode), (RunResult::Succeeded, Mode::OneWay));
    let recorded = one.elements(run_a).unwrap();
    let reported: Vec<(String, String)> = report_a
        .elements
        .iter()
        .filter(|e| e.action != diffsync::Action::NoChange)
        .map(|e| (e.model_type().to_string(), e.key.unique_id().to_string()))
        .collect();
    let read: Vec<(String, String)> = recorded
        .iter()
        .map(|e| (e.model_type().to_string(), e.key.unique_id().to_string()))
        .collect();
    assert_eq!(read, reported, "the journal reads back what the report said");
    let changed = &recorded[0];
    let changed_key = changed.key.clone();
    let history = two.history(&changed_key).unwrap();
    let runs: Vec<_> = history.iter().map(|h| h.run).collect();
    assert_eq!(runs, [dead.id, run_a, run_b], "one key's history across processes");

    // Retention drops the oldest, with their changes.
    assert_eq!(one.retain(Retention::Runs(1)).unwrap(), 2);
    assert!(matches!(two.run(run_a), Err(diffsync_journal::JournalError::NoRun(_))));
    assert_eq!(two.history(&changed_key).unwrap().len(), 1);
}

#[cfg(feature = "sqlite")]
#[test]
fn a_journal_file_from_before_options_were_kept_opens_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let source = inventory("cmdb", 1, 0);
    let first = {
        let mut journal = Journal::open(&path).unwrap();
        journal
            .sync(&mut inventory("network", 0, 0), &source, &mut Options::new())
            .unwrap()
            .0
    };
    // The file as an earlier build left it: no options column.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("ALTER TABLE runs DROP COLUMN options").unwrap();
    drop(conn);
    let mut journal = Journal::open(&path).unwrap();
    assert_eq!(journal.run(first).unwrap().options, "");
    let (second, _) = journal
        .sync(&mut inventory("network", 0, 0), &source, &mut Options::new())
        .unwrap();
    assert_eq!(journal.run(second).unwrap().options, "defaults");
}

/// Vetoes the deletes of the interfaces of one device.
#[cfg(feature = "sqlite")]
struct KeepsInterfacesOf(&'static str);

#[cfg(feature = "sqlite")]
impl diffsync::Layer for KeepsInterfacesOf {
    fn before(&mut self, batch: &mut diffsync::Batch<'_, '_>) {
        for i in 0..batch.len() {
            let c = &batch.changes()[i];
            if c.action == diffsync::Action::Delete
                && c.model_type() == "interface"
                && c.key().starts_with(&format!("{}__", self.0))
            {
                batch.set_outcome(i, Err(diffsync::HookError::soft("the operator keeps these")));
            }
        }
    }
}

#[cfg(feature = "sqlite")]
#[test]
fn a_partial_run_s_rollback_restores_the_links_its_deletes_cut() {
    use diffsync_adapters::sqlite::SqliteAdapter;
    let dir = tempfile::tempdir().unwrap();
    let mut db = SqliteAdapter::open("db", dir.path().join("inv.db"), crate::common::registry()).unwrap();
    db.sync_from(&inventory("cmdb", 2, 0)).unwrap();
    let before = db.store.fingerprint();
    // The run deletes device site1-r0; its interfaces' deletes are vetoed:
    // the device goes, its interfaces stay, unlinked.
    let mut changed = inventory("cmdb", 2, 0);
    changed.store.remove(key_of("device:site1-r0"), true).unwrap();
    let mut journal = Journal::in_memory().unwrap();
    let mut target = diffsync::Layered::new(db, KeepsInterfacesOf("site1-r0"));
    let opts = &mut Options::new().flags(diffsync::DiffFlags::CONTINUE_ON_FAILURE);
    let (run, report) = journal.sync(&mut target, &changed, opts).unwrap();
    assert!(!report.is_success(), "{report}");
    let mut db = target.inner;
    db.reload().unwrap();
    assert!(db.store.get_dyn(key_of("device:site1-r0")).is_err());
    assert_eq!(db.store.parent(key_of("interface:site1-r0__eth0")).unwrap(), None);
    // Undone: the device back, and its interfaces under it again, in the rows.
    let undo = journal.rollback(run, &mut db, false).unwrap();
    assert!(undo.conflicts.is_empty() && undo.report.is_success(), "{undo:?}");
    db.reload().unwrap();
    assert_eq!(
        db.store.parent(key_of("interface:site1-r0__eth0")).unwrap(),
        Some(key_of("device:site1-r0"))
    );
    assert_eq!(db.store.fingerprint(), before, "the rows are as they were");
}
