//! The range diff against real databases: the diff it finds by range
//! fingerprints is the diff of the whole tables, on random inventories,
//! within SQLite, within PostgreSQL and across the two.

use diffsync::{Action, AdapterExt, Diff, MemoryAdapter, Options};
use diffsync_adapters::ranges::{RangeOptions, RangeStats, SqlTables, range_diff, range_diff_with};
use diffsync_adapters::sqlite::SqliteAdapter;
use diffsync_tests::fuzz::each_seed;
use diffsync_tests::key_of;

use crate::common::{Interface, Text, inventory, registry};

/// `base` changed at random: attributes updated, models deleted (with
/// their subtrees) and created, about `share` of the interfaces.
/// Range options cutting at `leaf` rows into `fanout` ranges.
fn cut(leaf: usize, fanout: usize) -> RangeOptions {
    RangeOptions {
        leaf,
        fanout,
        ..RangeOptions::default()
    }
}

fn changed(base: &MemoryAdapter, rng: &mut fastrand::Rng, share: f64) -> MemoryAdapter {
    let mut out = MemoryAdapter::with_store("source", &["site"], base.store.clone());
    let interfaces: Vec<Interface> = out.store.all::<Interface>().unwrap().cloned().collect();
    for mut i in interfaces {
        if rng.f64() >= share {
            continue;
        }
        let key = key_of(&format!("interface:{}__{}", i.device, i.name));
        match rng.u8(..4) {
            0 => out.store.remove(&key, false).unwrap(),
            1 => {
                i.mtu += 1;
                out.store.update(i).unwrap();
            }
            2 => {
                i.enabled = !i.enabled;
                i.description = Text(format!("{} (edited)", i.description.0));
                out.store.update(i).unwrap();
            }
            _ => {
                let new = Interface {
                    name: format!("{}-new{}", i.name, rng.u16(..)),
                    ..i
                };
                let _ = out.store.add_child(key_of(&format!("device:{}", new.device)), new);
            }
        }
    }
    if rng.bool() {
        let _ = out.store.remove(key_of("device:site1-r1"), true);
    }
    out
}

/// What a diff says, element by element: (action, key, changed attributes).
fn changes(diff: &Diff) -> Vec<(Action, String, Vec<String>)> {
    let mut out: Vec<_> = diff
        .iter()
        .map(|(e, _)| e)
        .filter(|e| e.action != Action::NoChange)
        .map(|e| {
            (
                e.action,
                e.model_key().to_string(),
                e.changes.iter().map(|c| c.name.to_string()).collect(),
            )
        })
        .collect();
    out.sort();
    out
}

fn sqlite_pair(
    dir: &std::path::Path,
    source: &MemoryAdapter,
    target: &MemoryAdapter,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (dir.join("source.db"), dir.join("target.db"));
    SqliteAdapter::open("source", &a, registry())
        .unwrap()
        .sync_from(source)
        .unwrap();
    SqliteAdapter::open("target", &b, registry())
        .unwrap()
        .sync_from(target)
        .unwrap();
    (a, b)
}

/// Both SQLite files opened as the sides of a range diff.
fn sides(a: &std::path::Path, b: &std::path::Path) -> (SqlTables, SqlTables) {
    (
        SqlTables::sqlite("source", a, registry()).unwrap(),
        SqlTables::sqlite("target", b, registry()).unwrap(),
    )
}

#[test]
fn a_range_diff_of_two_sqlite_databases_is_the_diff_of_their_tables() {
    let base = inventory("target", 30, 0);
    let (mut cases, mut differences) = (0, 0);
    each_seed("range diff, SQLite", |rng| {
        if cases >= 24 {
            return; // Each case writes two databases: a few dozen say enough.
        }
        cases += 1;
        let share = [0.0, 0.01, 0.1, 0.5][rng.usize(..4)];
        let source = changed(&base, rng, share);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = sqlite_pair(dir.path(), &source, &base);
        let expected = base.diff_from(&source).unwrap();
        let opts = RangeOptions {
            leaf: rng.usize(1..64),
            fanout: rng.usize(2..20),
            ..RangeOptions::default()
        };
        let (mut from, mut into) = sides(&a, &b);
        let found = range_diff(&mut from, &mut into, &opts).unwrap();
        assert_eq!(changes(&found.diff), changes(&expected), "{opts:?}");
        // The counts of changes agree; unchanged models are counted as far
        // as they were read (a range diff does not read the equal ones).
        let (f, e) = (found.diff.summary(), expected.summary());
        assert_eq!(
            (f.create, f.update, f.delete),
            (e.create, e.update, e.delete),
            "{opts:?}"
        );
        differences += e.create + e.update + e.delete;
    });
    assert!(differences > 0, "the cases changed something");
}

#[test]
fn equal_databases_take_one_fingerprint_per_table_and_read_no_row() {
    let base = inventory("target", 50, 0);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sqlite_pair(dir.path(), &base, &base);
    let (mut from, mut into) = sides(&a, &b);
    let found = range_diff(&mut from, &mut into, &RangeOptions::default()).unwrap();
    assert!(!found.diff.has_diffs(), "{}", found.diff);
    assert_eq!(
        (found.stats.queries, found.stats.rows_read),
        (6, 0),
        "{:?}",
        found.stats
    );
    // Three numbers a side and table: all that came out of the databases.
    assert_eq!(found.stats.bytes_read, 3 * 2 * 24);
}

#[test]
fn one_change_reads_a_leaf_of_rows_and_its_parents_not_the_tables() {
    let base = inventory("target", 200, 0);
    let mut source = MemoryAdapter::with_store("source", &["site"], base.store.clone());
    let mut i = source
        .store
        .get(&diffsync_tests::typed_key::<Interface>("interface:site120-r1__eth2"))
        .unwrap()
        .clone();
    i.mtu = 9000;
    source.store.update(i).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sqlite_pair(dir.path(), &source, &base);
    let (mut from, mut into) = sides(&a, &b);
    let mut told: Vec<RangeStats> = Vec::new();
    let found = range_diff_with(&mut from, &mut into, &cut(16, 16), &mut |s| told.push(*s)).unwrap();
    assert_eq!(changes(&found.diff), changes(&base.diff_from(&source).unwrap()));
    // Progress is told as it goes, never going back.
    assert!(told.len() > 3, "{told:?}");
    assert!(
        told.windows(2)
            .all(|w| w[0].ranges <= w[1].ranges && w[0].rows_read <= w[1].rows_read)
    );
    assert_eq!(told[0].source_rows, 200, "the sites first: {:?}", told[0]);
    assert_eq!(found.stats.source_rows, 200 + 400 + 1200);
    // 200 sites, 400 devices, 1,200 interfaces per side: read are a
    // leaf's keys and hashes, then the one differing row and its device
    // and site, each side.
    assert!(found.stats.hashes_read <= 2 * 16, "{:?}", found.stats);
    assert_eq!(found.stats.rows_read, 2 * 3, "{:?}", found.stats);
    // Bytes: the fingerprints and cut keys of three tables and their
    // ranges, the leaf's keys and hashes, six rows: a few kilobytes.
    assert!(found.stats.bytes_read < 16 << 10, "{:?}", found.stats);
    assert_eq!(found.stats.rows_kept, 2);
}

#[test]
fn sides_of_other_model_types_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sqlite_pair(dir.path(), &inventory("s", 1, 0), &inventory("t", 1, 0));
    let mut from = SqlTables::sqlite("source", &a, registry()).unwrap();
    let fewer = diffsync_adapters::Registry::new().with::<Interface>();
    let mut into = SqlTables::sqlite("target", &b, fewer).unwrap();
    let err = range_diff(&mut from, &mut into, &RangeOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("other model types"), "{err}");
    // A database without the tables is refused when opened.
    let err = SqlTables::sqlite("none", dir.path().join("missing.db"), registry())
        .err()
        .unwrap();
    assert!(!err.to_string().is_empty());
}

/// A range diff synced into the PostgreSQL database at `params` (its
/// target), opened on the image the diff read, from the source's image:
/// every change applies.
#[cfg(feature = "postgres")]
fn sync_into_postgres(params: &str, found: diffsync_adapters::ranges::RangeDiff) {
    let mut db =
        diffsync_adapters::postgres::PostgresAdapter::connect_image("target", params, registry(), found.target)
            .unwrap();
    let read = MemoryAdapter::with_store("source", &["site"], found.source);
    let report = db.sync_diff_from(&read, &found.diff, &mut Options::new()).unwrap();
    assert!(report.is_success(), "{report}");
}

#[cfg(feature = "postgres")]
#[test]
fn two_schemas_of_one_postgresql_database_are_compared_by_one_join_per_table() {
    use diffsync_adapters::postgres::PostgresAdapter;
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let mut admin = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    let params = |schema: &str| format!("{} options='-c search_path={schema}'", pg.params());
    let base = inventory("target", 30, 0);
    let mut rng = fastrand::Rng::with_seed(5);
    for share in [0.0, 0.05, 0.3] {
        admin
            .batch_execute(
                "DROP SCHEMA IF EXISTS a CASCADE; DROP SCHEMA IF EXISTS b CASCADE; CREATE SCHEMA a; CREATE SCHEMA b",
            )
            .unwrap();
        let source = changed(&base, &mut rng, share);
        PostgresAdapter::connect("a", &params("a"), registry())
            .unwrap()
            .sync_from(&source)
            .unwrap();
        PostgresAdapter::connect("b", &params("b"), registry())
            .unwrap()
            .sync_from(&base)
            .unwrap();
        let expected = changes(&base.diff_from(&source).unwrap());
        let mut from = SqlTables::postgres("source", &params("a"), registry()).unwrap();
        let mut into = SqlTables::postgres("target", &params("b"), registry()).unwrap();
        let found = range_diff(&mut from, &mut into, &RangeOptions::default()).unwrap();
        assert_eq!(changes(&found.diff), expected, "share {share}");
        // One query per table, no range compared; only differing rows come back.
        assert_eq!((found.stats.joined, found.stats.ranges), (3, 0), "{:?}", found.stats);
        // The whole tables' counts, as by ranges (a sync's rails judge them).
        let whole = |s: &diffsync::LocalStore| s.count_all() as u64;
        assert_eq!(
            (found.stats.source_rows, found.stats.target_rows),
            (whole(&source.store), whole(&base.store))
        );
        let by_ranges = range_diff(
            &mut from,
            &mut into,
            &RangeOptions {
                join: false,
                ..RangeOptions::default()
            },
        )
        .unwrap();
        assert_eq!(changes(&by_ranges.diff), expected, "share {share}");
        assert_eq!(by_ranges.stats.joined, 0);
        assert_eq!(found.stats.rows_kept, by_ranges.stats.rows_kept, "share {share}");
        // Synced from the joined diff, the schemas are equal: an empty join.
        sync_into_postgres(&params("b"), found);
        let again = range_diff(&mut from, &mut into, &RangeOptions::default()).unwrap();
        assert!(!again.diff.has_diffs(), "share {share}: {}", again.diff);
        assert_eq!((again.stats.rows_read, again.stats.joined), (0, 3), "{:?}", again.stats);
    }
    // A source whose role cannot read the target's schema: the join fails
    // and the tables are compared by ranges, each on its own connection.
    admin
        .batch_execute(
            "CREATE ROLE reader LOGIN; GRANT USAGE ON SCHEMA a TO reader; \
             GRANT SELECT ON ALL TABLES IN SCHEMA a TO reader",
        )
        .unwrap();
    let reader = params("a").replace("user=postgres", "user=reader");
    let mut from = SqlTables::postgres("source", &reader, registry()).unwrap();
    let mut into = SqlTables::postgres("target", &params("b"), registry()).unwrap();
    let found = range_diff(&mut from, &mut into, &RangeOptions::default()).unwrap();
    assert_eq!(found.stats.joined, 0, "{:?}", found.stats);
    assert!(found.stats.ranges > 0 && !found.diff.has_diffs(), "{:?}", found.stats);
    // Two databases of one server are not one database: compared by ranges.
    admin.batch_execute("CREATE DATABASE other").unwrap();
    let other = pg.params().replace("dbname=postgres", "dbname=other");
    PostgresAdapter::connect("o", &other, registry())
        .unwrap()
        .sync_from(&base)
        .unwrap();
    let mut from = SqlTables::postgres("source", &params("a"), registry()).unwrap();
    let mut into = SqlTables::postgres("target", &other, registry()).unwrap();
    let found = range_diff(&mut from, &mut into, &RangeOptions::default()).unwrap();
    assert_eq!(found.stats.joined, 0, "{:?}", found.stats);
    assert!(found.stats.ranges > 0);
}

#[cfg(feature = "postgres")]
#[test]
fn a_range_diff_across_postgresql_and_sqlite_is_the_diff_of_their_tables() {
    use diffsync_adapters::postgres::PostgresAdapter;
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let base = inventory("target", 30, 0);
    let mut rng = fastrand::Rng::with_seed(7);
    for share in [0.0, 0.05, 0.3] {
        let source = changed(&base, &mut rng, share);
        let dir = tempfile::tempdir().unwrap();
        let (_, b) = sqlite_pair(dir.path(), &source, &base);
        let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
        db.sync_from(&source).unwrap();
        let expected = changes(&base.diff_from(&source).unwrap());
        let mut from = SqlTables::postgres("source", &pg.params(), registry()).unwrap();
        let mut into = SqlTables::sqlite("target", &b, registry()).unwrap();
        let found = range_diff(&mut from, &mut into, &cut(8, 4)).unwrap();
        assert_eq!(changes(&found.diff), expected, "share {share}");
        if share == 0.0 {
            // Both engines hash text, integers, booleans and NULLs alike:
            // equal tables read no row.
            assert_eq!(found.stats.rows_read, 0, "{:?}", found.stats);
        }
        // And the other way: PostgreSQL as the target, then synced from
        // the range diff through its own writes.
        let found = range_diff(&mut into, &mut from, &cut(8, 4)).unwrap();
        assert_eq!(
            changes(&found.diff),
            changes(&source.diff_from(&base).unwrap()),
            "share {share}"
        );
        // A store in memory against PostgreSQL, as against SQLite.
        let mut store = SqlTables::memory("file", &source.store, registry()).unwrap();
        let in_memory = range_diff(&mut store, &mut from, &RangeOptions::default()).unwrap();
        assert!(!in_memory.diff.has_diffs(), "share {share}: {}", in_memory.diff);
        assert_eq!(in_memory.stats.rows_read, 0, "{:?}", in_memory.stats);
        sync_into_postgres(&pg.params(), found);
        let again = range_diff(&mut into, &mut from, &RangeOptions::default()).unwrap();
        assert!(!again.diff.has_diffs(), "share {share}: {}", again.diff);
    }
}

/// PostgreSQL's first cut of a whole table takes its keys from rows at
/// places spread over the table's pages: rows moved out of key order by
/// updates, and a table whose rows are mostly dead (deleted, not yet
/// vacuumed, so that most places hold no row and the keys are numbered
/// instead), give the diff of the whole tables, hashed in the query and
/// kept alike.
#[cfg(feature = "postgres")]
#[test]
fn a_postgresql_table_out_of_key_order_or_of_dead_rows_is_cut_where_its_pages_say() {
    use diffsync_adapters::postgres::{PostgresAdapter, keep_row_hashes};
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let source = changed(&inventory("source", 300, 0), &mut fastrand::Rng::with_seed(17), 0.05);
    let interfaces: Vec<Interface> = source.store.all::<Interface>().unwrap().cloned().collect();
    // The target lacks one interface in twenty: PostgreSQL's side holds
    // more rows of each table, or as many, and is the one cut.
    let mut target = MemoryAdapter::with_store("target", &["site"], source.store.clone());
    for i in interfaces.iter().step_by(20) {
        let key = key_of(&format!("interface:{}__{}", i.device, i.name));
        target.store.remove(&key, false).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, b) = sqlite_pair(dir.path(), &source, &target);
    let expected = changes(&target.diff_from(&source).unwrap());
    // The source's rows and nine times as many more, to be deleted.
    let mut padded = MemoryAdapter::with_store("source", &["site"], source.store.clone());
    for i in &interfaces {
        for n in 0..9 {
            let pad = Interface {
                name: format!("{}-pad{n}", i.name),
                ..i.clone()
            };
            padded
                .store
                .add_child(key_of(&format!("device:{}", i.device)), pad)
                .unwrap();
        }
    }
    PostgresAdapter::connect("pg", &pg.params(), registry())
        .unwrap()
        .sync_from(&padded)
        .unwrap();
    let mut client = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    client
        .batch_execute("UPDATE interface SET mtu = mtu WHERE md5(name) < '8'")
        .unwrap();
    let diff = |kept: &str| {
        let mut from = SqlTables::postgres("source", &pg.params(), registry()).unwrap();
        let mut into = SqlTables::sqlite("target", &b, registry()).unwrap();
        let found = range_diff(&mut from, &mut into, &cut(8, 4)).unwrap();
        assert!(found.stats.ranges > 100, "{kept}: {:?}", found.stats);
        changes(&found.diff)
    };
    // Padded: the pads are differences too.
    let padded_expected = changes(&target.diff_from(&padded).unwrap());
    assert_eq!(diff("padded, out of order"), padded_expected);
    client
        .batch_execute("DELETE FROM interface WHERE name LIKE '%-pad%'")
        .unwrap();
    assert_eq!(diff("nine rows in ten dead"), expected);
    keep_row_hashes(&pg.params(), &registry()).unwrap();
    client
        .batch_execute("UPDATE interface SET mtu = mtu WHERE md5(name) > 'c'")
        .unwrap();
    assert_eq!(diff("kept, out of order"), expected);
}

/// An engine that speaks PostgreSQL's protocol without its lists of rows
/// (`json_to_recordset`) or its pages' sizes (a distributed one, or here a
/// role that may not call them): each range is asked on its own and the
/// keys are numbered, and the diff is the same.
#[cfg(feature = "postgres")]
#[test]
fn without_lists_of_ranges_or_page_samples_each_range_is_asked_on_its_own() {
    use diffsync_adapters::postgres::PostgresAdapter;
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let base = inventory("target", 100, 0);
    let source = changed(&base, &mut fastrand::Rng::with_seed(29), 0.1);
    let dir = tempfile::tempdir().unwrap();
    let (_, b) = sqlite_pair(dir.path(), &source, &base);
    PostgresAdapter::connect("pg", &pg.params(), registry())
        .unwrap()
        .sync_from(&source)
        .unwrap();
    let diff = |params: &str| {
        let mut from = SqlTables::postgres("source", params, registry()).unwrap();
        let mut into = SqlTables::sqlite("target", &b, registry()).unwrap();
        range_diff(&mut from, &mut into, &cut(8, 4)).unwrap()
    };
    let listed = diff(&pg.params());
    let mut admin = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    admin
        .batch_execute(
            "CREATE ROLE plain LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO plain; \
             REVOKE EXECUTE ON FUNCTION json_to_recordset(json) FROM PUBLIC; \
             REVOKE EXECUTE ON FUNCTION pg_relation_size(regclass) FROM PUBLIC",
        )
        .unwrap();
    let alone = diff(&pg.params().replace("user=postgres", "user=plain"));
    let expected = changes(&base.diff_from(&source).unwrap());
    assert_eq!(changes(&listed.diff), expected);
    assert_eq!(changes(&alone.diff), expected);
    // SQLite asks a statement a range either way; PostgreSQL, refused its
    // lists, as many more.
    assert!(
        alone.stats.queries > listed.stats.queries + listed.stats.ranges / 2,
        "{:?} against {:?}",
        alone.stats,
        listed.stats
    );
}

#[cfg(feature = "postgres")]
#[test]
fn row_hashes_kept_in_postgresql_are_read_not_computed_and_follow_every_writer() {
    use diffsync_adapters::postgres::PostgresAdapter;
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let base = inventory("target", 30, 0);
    let source = changed(&base, &mut fastrand::Rng::with_seed(11), 0.1);
    let dir = tempfile::tempdir().unwrap();
    let (_, b) = sqlite_pair(dir.path(), &source, &base);
    let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    db.sync_from(&source).unwrap();
    db.keep_row_hashes().unwrap();
    db.keep_row_hashes().unwrap(); // again: nothing changes
    let expected = changes(&base.diff_from(&source).unwrap());
    let mut from = SqlTables::postgres("source", &pg.params(), registry()).unwrap();
    let mut into = SqlTables::sqlite("target", &b, registry()).unwrap();
    let found = range_diff(&mut from, &mut into, &cut(8, 4)).unwrap();
    assert_eq!(changes(&found.diff), expected);
    // The kept hashes are the ones SQLite computes: its three tables (the
    // PostgreSQL side's) read them; an equal store in memory reads no row.
    assert_eq!(found.stats.kept_hashes, 3, "{:?}", found.stats);
    let mut store = SqlTables::memory("file", &source.store, registry()).unwrap();
    let same = range_diff(&mut store, &mut from, &RangeOptions::default()).unwrap();
    assert!(!same.diff.has_diffs() && same.stats.rows_read == 0, "{:?}", same.stats);
    // Another client's writes, and the adapter's own, keep them current.
    let mut other = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    other
        .batch_execute(
            "UPDATE interface SET mtu = 4242 WHERE device = 'site0-r0' AND name = 'eth0';
             INSERT INTO interface (device, name, description, mtu, enabled, _parent)
             VALUES ('site0-r0', 'eth9', '\"by hand\"', 1, false, 'site0-r0');",
        )
        .unwrap();
    let mut edited = MemoryAdapter::with_store("source", &["site"], source.store.clone());
    let mut eth0 = edited.store.get(&Interface::key("site0-r0", "eth0")).unwrap().clone();
    eth0.mtu = 4242;
    edited.store.update(eth0).unwrap();
    edited
        .store
        .add_child(
            key_of("device:site0-r0"),
            Interface {
                device: "site0-r0".into(),
                name: "eth9".into(),
                description: Text("by hand".into()),
                mtu: 1,
                enabled: false,
            },
        )
        .unwrap();
    let mut store = SqlTables::memory("file", &edited.store, registry()).unwrap();
    let after = range_diff(&mut store, &mut from, &RangeOptions::default()).unwrap();
    assert!(!after.diff.has_diffs(), "{}", after.diff);
    assert_eq!(after.stats.kept_hashes, 3);
    // Without its trigger a table's columns are not trusted: hashed in the query.
    other
        .batch_execute("ALTER TABLE interface DISABLE TRIGGER \"_diffsync_hash_interface\";")
        .unwrap();
    let mut from = SqlTables::postgres("source", &pg.params(), registry()).unwrap();
    let mut store = SqlTables::memory("file", &edited.store, registry()).unwrap();
    let untrusted = range_diff(&mut store, &mut from, &RangeOptions::default()).unwrap();
    assert!(!untrusted.diff.has_diffs(), "{}", untrusted.diff);
    assert_eq!(untrusted.stats.kept_hashes, 2, "{:?}", untrusted.stats);
}

#[cfg(feature = "postgres")]
#[test]
fn a_server_killed_while_it_keeps_row_hashes_leaves_each_table_kept_whole_or_not_at_all() {
    use diffsync_adapters::postgres::{PostgresAdapter, keep_row_hashes};
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let base = inventory("target", 400, 0);
    PostgresAdapter::connect("pg", &pg.params(), registry())
        .unwrap()
        .sync_from(&base)
        .unwrap();
    // The same rows in memory: a side that hashes them itself.
    let equal_read_nothing = |expect_kept: Option<u64>| {
        let mut memory = SqlTables::memory("file", &base.store, registry()).unwrap();
        let mut db = SqlTables::postgres("pg", &pg.params(), registry()).unwrap();
        let found = range_diff(&mut memory, &mut db, &RangeOptions::default()).unwrap();
        assert!(!found.diff.has_diffs(), "{}", found.diff);
        // Hashes trusted but wrong would make fingerprints differ and rows be read.
        assert_eq!(found.stats.rows_read, 0, "{:?}", found.stats);
        if let Some(kept) = expect_kept {
            assert_eq!(found.stats.kept_hashes, kept, "{:?}", found.stats);
        }
    };
    for delay in [0, 3, 10, 30] {
        // Killed while the server hashes the tables (or before, or after).
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(delay));
                pg.kill();
            });
            let _ = keep_row_hashes(&pg.params(), &registry());
        });
        pg.revive();
        // Whatever the kill cut, each table is kept whole or not kept.
        equal_read_nothing(None);
        // And keeping them again finishes the job.
        keep_row_hashes(&pg.params(), &registry()).unwrap();
        equal_read_nothing(Some(3));
        // The next round starts from none kept.
        let mut client = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
        for table in ["site", "device", "interface"] {
            client
                .batch_execute(&format!("DROP TRIGGER \"_diffsync_hash_{table}\" ON {table}"))
                .unwrap();
        }
    }
}

/// A model whose name is longer than the server keeps of a trigger's.
#[derive(diffsync::DiffModel, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[diffsync(name = "a_model_type_with_a_name_much_longer_than_usual_for_tables")]
struct LongName {
    #[diffsync(id)]
    id: i64,
    text: String,
}

#[cfg(feature = "postgres")]
#[test]
fn row_hashes_are_kept_for_a_table_whose_trigger_name_the_server_cuts_short() {
    use diffsync_adapters::Registry;
    use diffsync_adapters::postgres::PostgresAdapter;
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let registry = || Registry::new().with::<LongName>();
    let mut rows = MemoryAdapter::new("rows", &[]);
    rows.store.register::<LongName>().unwrap();
    for id in 0..50 {
        rows.store
            .add(LongName {
                id,
                text: format!("t{id}"),
            })
            .unwrap();
    }
    let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    db.sync_from(&rows).unwrap();
    db.keep_row_hashes().unwrap();
    let mut memory = SqlTables::memory("rows", &rows.store, registry()).unwrap();
    let mut from = SqlTables::postgres("pg", &pg.params(), registry()).unwrap();
    let found = range_diff(&mut memory, &mut from, &RangeOptions::default()).unwrap();
    assert_eq!(
        (found.stats.kept_hashes, found.stats.rows_read),
        (1, 0),
        "{:?}",
        found.stats
    );
}

/// A model of floats, which SQLite and PostgreSQL print differently.
#[derive(diffsync::DiffModel, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[diffsync(name = "reading")]
struct Reading {
    #[diffsync(id)]
    id: i64,
    value: f64,
    scale: Option<f64>,
}

/// Floats hash by their bits in both engines (a negative zero as zero):
/// equal tables of them read no row, in the query and kept; a trigger
/// made before the canonical text changed is not trusted, and keeping the
/// hashes again replaces it.
#[cfg(feature = "postgres")]
#[test]
fn floats_hash_alike_in_postgresql_and_sqlite_and_an_outdated_trigger_is_replaced() {
    use diffsync_adapters::Registry;
    use diffsync_adapters::postgres::{PostgresAdapter, keep_row_hashes};
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let values = [0.1, 1e-7, 1e20, -0.0, 1.0 / 3.0, f64::MAX, 5e-324, -2.5, 1e300, 100.0];
    let readings = |zero: f64| {
        let mut a = MemoryAdapter::new("readings", &["reading"]);
        a.store.register::<Reading>().unwrap();
        for id in 0..600i64 {
            let value = values[id as usize % values.len()];
            a.store
                .add(Reading {
                    id,
                    value: if value == 0.0 { zero } else { value },
                    scale: (id % 3 != 0).then(|| id as f64 / 7.0),
                })
                .unwrap();
        }
        a
    };
    let registry = || Registry::new().with::<Reading>();
    PostgresAdapter::connect("pg", &pg.params(), registry())
        .unwrap()
        .sync_from(&readings(-0.0))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readings.db");
    SqliteAdapter::open("copy", &path, registry())
        .unwrap()
        .sync_from(&readings(0.0))
        .unwrap();
    let compare = |kept: u64| {
        let mut from = SqlTables::postgres("pg", &pg.params(), registry()).unwrap();
        let mut into = SqlTables::sqlite("copy", &path, registry()).unwrap();
        let found = range_diff(&mut from, &mut into, &cut(16, 4)).unwrap();
        assert!(!found.diff.has_diffs(), "{}", found.diff);
        assert_eq!(
            (found.stats.kept_hashes, found.stats.rows_read),
            (kept, 0),
            "{:?}",
            found.stats
        );
        let store = readings(0.0);
        let mut memory = SqlTables::memory("file", &store.store, registry()).unwrap();
        let found = range_diff(&mut memory, &mut from, &cut(16, 4)).unwrap();
        assert_eq!(
            (found.stats.kept_hashes, found.stats.rows_read),
            (kept, 0),
            "{:?}",
            found.stats
        );
    };
    compare(0);
    keep_row_hashes(&pg.params(), &registry()).unwrap();
    compare(1);
    // A trigger function of an older canonical text: not read, then
    // replaced (and the rows hashed again) by keeping the hashes again.
    let mut client = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    client
        .batch_execute(
            "CREATE OR REPLACE FUNCTION \"_diffsync_hash_reading\"() RETURNS trigger LANGUAGE plpgsql \
             AS $f$ BEGIN NEW.\"_hash_hi\" := 0; RETURN NEW; END $f$; UPDATE reading SET value = value",
        )
        .unwrap();
    compare(0);
    keep_row_hashes(&pg.params(), &registry()).unwrap();
    compare(1);
}

/// A model keyed by numbers.
#[derive(diffsync::DiffModel, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[diffsync(name = "vlan")]
struct Vlan {
    #[diffsync(id)]
    site: i64,
    #[diffsync(id)]
    id: i64,
    name: String,
    up: bool,
}

#[cfg(feature = "postgres")]
#[test]
fn rows_keyed_by_numbers_differ_by_range_across_postgresql_and_sqlite() {
    use diffsync_adapters::Registry;
    use diffsync_adapters::postgres::PostgresAdapter;
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let vlans = |name: &str, edit: bool| {
        let mut a = MemoryAdapter::new(name, &["vlan"]);
        a.store.register::<Vlan>().unwrap();
        for id in 0..600 {
            let renamed = edit && id % 97 == 0;
            if edit && id % 89 == 0 {
                continue;
            }
            a.store
                .add(Vlan {
                    site: id % 3,
                    id,
                    name: if renamed {
                        format!("v{id}-new")
                    } else {
                        format!("v{id}")
                    },
                    up: id % 2 == 0,
                })
                .unwrap();
        }
        a
    };
    let registry = || Registry::new().with::<Vlan>();
    let (source, base) = (vlans("source", true), vlans("target", false));
    let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    db.sync_from(&source).unwrap();
    for keep in [false, true] {
        if keep {
            db.keep_row_hashes().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        SqliteAdapter::open("b", &path, registry())
            .unwrap()
            .sync_from(&base)
            .unwrap();
        let mut from = SqlTables::postgres("source", &pg.params(), registry()).unwrap();
        let mut into = SqlTables::sqlite("target", &path, registry()).unwrap();
        let found = range_diff(&mut from, &mut into, &cut(8, 4)).unwrap();
        assert_eq!(
            changes(&found.diff),
            changes(&base.diff_from(&source).unwrap()),
            "kept {keep}"
        );
        assert_eq!(found.stats.kept_hashes, u64::from(keep));
        // Only the differing rows were read, each side's by its numbers.
        assert_eq!(found.stats.rows_read, found.stats.rows_kept, "{:?}", found.stats);
    }
}

#[test]
fn a_sync_of_a_range_diff_writes_the_differing_rows_and_leaves_the_databases_equal() {
    let base = inventory("target", 20, 0);
    let mut rng = fastrand::Rng::with_seed(11);
    for share in [0.02, 0.2, 0.6] {
        let source = changed(&base, &mut rng, share);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = sqlite_pair(dir.path(), &source, &base);
        let (mut from, mut into) = sides(&a, &b);
        let found = range_diff(&mut from, &mut into, &cut(8, 4)).unwrap();
        let expected = found.diff.summary();
        // The target opened on the image the range diff read: nothing else
        // of it is loaded.
        let mut db = SqliteAdapter::open_image("target", &b, registry(), found.target).unwrap();
        let read = MemoryAdapter::with_store("source", &["site"], found.source);
        let report = db.sync_diff_from(&read, &found.diff, &mut Options::new()).unwrap();
        assert!(report.is_success(), "{report}");
        assert_eq!(
            report.totals().applied,
            expected.create + expected.update + expected.delete,
            "share {share}"
        );
        drop(db);
        let mut into = SqlTables::sqlite("target", &b, registry()).unwrap();
        let again = range_diff(&mut from, &mut into, &RangeOptions::default()).unwrap();
        assert!(!again.diff.has_diffs(), "share {share}: {}", again.diff);
        assert_eq!(again.stats.rows_read, 0, "{:?}", again.stats);
        // And read whole, the target is the source.
        let whole = SqliteAdapter::open("target", &b, registry()).unwrap();
        assert!(!whole.diff_from(&source).unwrap().has_diffs(), "share {share}");
    }
}

/// A range diff in parts of bounded size, each synced as it comes (the
/// comparison going on between the parts): the parts' changes are the
/// whole diff's, each part holds at most its budget plus one batch of
/// leaves, and afterwards the databases are equal — with parents deleted
/// in one part and their children in later ones.
#[test]
fn a_range_diff_in_parts_synced_as_they_come_leaves_the_databases_equal() {
    use diffsync_adapters::ranges::range_diff_parts;
    let base = inventory("target", 200, 0);
    let mut rng = fastrand::Rng::with_seed(31);
    for (share, budget) in [(0.3, 1), (0.3, 20_000), (0.05, u64::MAX)] {
        let mut source = changed(&base, &mut rng, share);
        // Devices deleted with their interfaces: parents in one part,
        // children in others.
        for s in (3..200).step_by(17) {
            let _ = source.store.remove(key_of(&format!("device:site{s}-r0")), true);
        }
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = sqlite_pair(dir.path(), &source, &base);
        let expected = changes(&base.diff_from(&source).unwrap());
        let (mut from, mut into) = sides(&a, &b);
        let opts = cut(4, 4);
        let mut parts = Vec::new();
        let total = range_diff_parts(&mut from, &mut into, &opts, budget, &mut |_| {}, &mut |found| {
            let kept = found.stats.rows_kept;
            parts.push((changes(&found.diff), kept));
            let mut db = SqliteAdapter::open_image("target", &b, registry(), found.target)?;
            let read = MemoryAdapter::with_store("source", &["site"], found.source);
            let report = db.sync_diff_from(&read, &found.diff, &mut Options::new()).unwrap();
            assert!(report.is_success(), "{report}");
            Ok(())
        })
        .unwrap();
        // A budget of one byte: a part per batch of leaves; no budget:
        // one part.
        match budget {
            1 => assert!(parts.len() > 2, "{} parts", parts.len()),
            u64::MAX => assert_eq!(parts.len(), 1),
            _ => {}
        }
        // Each part holds what it kept since the last: one batch of at
        // most 128 leaves of 4 rows a side beyond the budget.
        let mut before = 0;
        for (_, kept) in &parts {
            let rows = kept - before;
            before = *kept;
            if budget == 1 {
                assert!(rows <= 2 * 128 * 4, "{rows} rows in a part");
            }
        }
        assert_eq!(before, total.rows_kept);
        let mut all: Vec<_> = parts.into_iter().flat_map(|(c, _)| c).collect();
        all.sort();
        assert_eq!(all, expected, "share {share}, budget {budget}");
        let mut into = SqlTables::sqlite("target", &b, registry()).unwrap();
        let again = range_diff(&mut from, &mut into, &RangeOptions::default()).unwrap();
        assert!(!again.diff.has_diffs(), "share {share}: {}", again.diff);
        let whole = SqliteAdapter::open("target", &b, registry()).unwrap();
        assert!(!whole.diff_from(&source).unwrap().has_diffs(), "share {share}");
    }
}

/// A sync in parts that stops after its first part (the part's callback
/// fails, as a process killed there would stop): the target holds that
/// part's changes, whole, and nothing of the others; the error is the
/// callback's; a range diff in parts run again finds only the rest and
/// leaves the databases equal.
#[test]
fn a_sync_in_parts_stopped_after_a_part_holds_that_part_and_the_next_run_finishes_it() {
    use diffsync_adapters::AdapterError;
    use diffsync_adapters::ranges::range_diff_parts;
    let base = inventory("target", 100, 0);
    let source = changed(&base, &mut fastrand::Rng::with_seed(37), 0.3);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sqlite_pair(dir.path(), &source, &base);
    let expected = changes(&base.diff_from(&source).unwrap());
    let sync = |found: diffsync_adapters::ranges::RangeDiff| {
        let changed = changes(&found.diff);
        let mut db = SqliteAdapter::open_image("target", &b, registry(), found.target).unwrap();
        let read = MemoryAdapter::with_store("source", &["site"], found.source);
        let report = db.sync_diff_from(&read, &found.diff, &mut Options::new()).unwrap();
        assert!(report.is_success(), "{report}");
        changed
    };
    let (mut from, mut into) = sides(&a, &b);
    let mut first = Vec::new();
    let stopped = range_diff_parts(&mut from, &mut into, &cut(4, 4), 1, &mut |_| {}, &mut |found| {
        if !first.is_empty() {
            return Err(AdapterError::NotFound { path: "stopped".into() });
        }
        first = sync(found);
        Ok(())
    });
    assert!(matches!(stopped, Err(AdapterError::NotFound { .. })), "{stopped:?}");
    assert!(
        !first.is_empty() && first.len() < expected.len(),
        "{} of {}",
        first.len(),
        expected.len()
    );
    // The target now differs by what the first part did not do.
    let (mut from, mut into) = sides(&a, &b);
    let rest = changes(&range_diff(&mut from, &mut into, &cut(4, 4)).unwrap().diff);
    let mut done_and_left: Vec<_> = first.iter().chain(&rest).cloned().collect();
    done_and_left.sort();
    assert_eq!(done_and_left, expected);
    let mut again = Vec::new();
    range_diff_parts(&mut from, &mut into, &cut(4, 4), 1, &mut |_| {}, &mut |found| {
        again.extend(sync(found));
        Ok(())
    })
    .unwrap();
    again.sort();
    assert_eq!(again, rest);
    let whole = SqliteAdapter::open("target", &b, registry()).unwrap();
    assert!(!whole.diff_from(&source).unwrap().has_diffs());
}

/// Rows another writer put in the tables with values of any type (SQLite
/// keeps what it is given): the range diff answers with a diff or an
/// error naming the table, never a panic.
#[test]
fn rows_of_any_type_in_the_tables_give_a_diff_or_a_named_error() {
    let base = inventory("target", 4, 0);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sqlite_pair(dir.path(), &base, &base);
    let conn = rusqlite::Connection::open(&a).unwrap();
    let junk = |rng: &mut fastrand::Rng| -> rusqlite::types::Value {
        use rusqlite::types::Value;
        match rng.u8(..5) {
            0 => Value::Integer(rng.i64(..)),
            1 => Value::Real(rng.f64() * 1e300),
            2 => Value::Text("\u{0}|9:x".repeat(rng.usize(..4))),
            3 => Value::Blob(vec![0xff; rng.usize(..8)]),
            _ => Value::Text(format!("eth{}", rng.u8(..))),
        }
    };
    let (mut diffs, mut errors) = (0, 0);
    each_seed("range diff of junk rows", |rng| {
        let column = ["name", "description", "mtu", "enabled"][rng.usize(..4)];
        let sql = format!("UPDATE interface SET \"{column}\" = ?1 WHERE rowid = ?2");
        // A failed write (a key taken twice) leaves the table as it was.
        let _ = conn.execute(&sql, rusqlite::params![junk(rng), rng.i64(1..=24)]);
        let (mut from, mut into) = sides(&a, &b);
        match range_diff(&mut from, &mut into, &cut(4, 2)) {
            Ok(_) => diffs += 1,
            Err(e) => {
                assert!(e.to_string().contains("interface"), "{e}");
                errors += 1;
            }
        }
    });
    assert!(diffs + errors > 0);
}

#[cfg(feature = "postgres")]
#[test]
fn a_server_killed_mid_diff_is_a_typed_error_and_nothing_was_written() {
    use diffsync_adapters::postgres::PostgresAdapter;
    let Some(pg) = crate::servers::Postgres::start() else {
        return;
    };
    let base = inventory("target", 200, 0);
    let source = changed(&base, &mut fastrand::Rng::with_seed(3), 0.3);
    let mut db = PostgresAdapter::connect("pg", &pg.params(), registry()).unwrap();
    db.sync_from(&source).unwrap();
    drop(db);
    let dir = tempfile::tempdir().unwrap();
    let (_, b) = sqlite_pair(dir.path(), &base, &base);
    let before = std::fs::read(&b).unwrap();
    let mut from = SqlTables::postgres("source", &pg.params(), registry()).unwrap();
    let mut into = SqlTables::sqlite("target", &b, registry()).unwrap();
    // Killed while the diff runs (with leaves of two rows it asks
    // thousands of queries).
    let err = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            pg.kill();
        });
        range_diff(&mut from, &mut into, &cut(2, 2))
            .err()
            .expect("a diff against a server killed half-way")
    });
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert_eq!(std::fs::read(&b).unwrap(), before, "the target's file is as it was");
}

#[test]
fn a_store_in_memory_is_diffed_against_a_database_by_ranges_reading_only_what_differs() {
    let base = inventory("target", 100, 0);
    let dir = tempfile::tempdir().unwrap();
    let (_, b) = sqlite_pair(dir.path(), &base, &base);
    // Equal: the database's side is one fingerprint per table (the
    // store's side runs no statement).
    let mut store = SqlTables::memory("file", &base.store, registry()).unwrap();
    let mut db = SqlTables::sqlite("db", &b, registry()).unwrap();
    let found = range_diff(&mut store, &mut db, &RangeOptions::default()).unwrap();
    assert!(!found.diff.has_diffs(), "{}", found.diff);
    assert_eq!(
        (found.stats.queries, found.stats.rows_read),
        (3, 0),
        "{:?}",
        found.stats
    );
    // Changed, both ways, at random shares and cuts.
    let mut rng = fastrand::Rng::with_seed(5);
    for share in [0.01, 0.1, 0.5] {
        let source = changed(&base, &mut rng, share);
        let opts = RangeOptions {
            leaf: rng.usize(1..32),
            fanout: rng.usize(2..8),
            ..RangeOptions::default()
        };
        let mut store = SqlTables::memory("file", &source.store, registry()).unwrap();
        let mut db = SqlTables::sqlite("db", &b, registry()).unwrap();
        let found = range_diff(&mut store, &mut db, &opts).unwrap();
        assert_eq!(
            changes(&found.diff),
            changes(&base.diff_from(&source).unwrap()),
            "{opts:?}"
        );
        let found = range_diff(&mut db, &mut store, &opts).unwrap();
        assert_eq!(
            changes(&found.diff),
            changes(&source.diff_from(&base).unwrap()),
            "{opts:?}"
        );
    }
}

/// A row another writer changed between the range diff and its sync: the
/// change to it fails as stale (the adapter's check against the image),
/// nothing of the sync is left half-applied, and a range diff run again
/// finds what is still to do.
#[test]
fn a_row_changed_since_the_range_diff_fails_its_change_and_nothing_is_half_applied() {
    let base = inventory("target", 20, 0);
    let source = changed(&base, &mut fastrand::Rng::with_seed(21), 0.2);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sqlite_pair(dir.path(), &source, &base);
    let (mut from, mut into) = sides(&a, &b);
    let found = range_diff(&mut from, &mut into, &RangeOptions::default()).unwrap();
    let updated = found
        .diff
        .iter()
        .map(|(e, _)| e)
        .find(|e| e.action == Action::Update && e.model_type() == "interface")
        .expect("an update in the diff")
        .clone();
    // Someone writes that row after the diff was made.
    let (device, name) = (
        updated
            .identifiers()
            .get("device")
            .unwrap()
            .as_str()
            .unwrap()
            .to_string(),
        updated.identifiers().get("name").unwrap().as_str().unwrap().to_string(),
    );
    rusqlite::Connection::open(&b)
        .unwrap()
        .execute(
            "UPDATE interface SET mtu = 4242 WHERE device = ?1 AND name = ?2",
            rusqlite::params![device, name],
        )
        .unwrap();
    let before = std::fs::read(&b).unwrap();
    let mut db = SqliteAdapter::open_image("target", &b, registry(), found.target).unwrap();
    let read = MemoryAdapter::with_store("source", &["site"], found.source);
    let outcome = db.sync_diff_from(&read, &found.diff, &mut Options::new());
    drop(db);
    match outcome {
        // The batch is one transaction: the stale row rolled it back whole.
        Err(e) => {
            assert!(
                format!("{e:?}").contains("changed in the database since it was read"),
                "{e:?}"
            );
            assert_eq!(std::fs::read(&b).unwrap(), before, "nothing half-applied");
        }
        Ok(report) => panic!("a stale row went through: {report}"),
    }
    // The other writer's value stands; a new range diff plans from it.
    let mut into = SqlTables::sqlite("target", &b, registry()).unwrap();
    let again = range_diff(&mut from, &mut into, &RangeOptions::default()).unwrap();
    assert_eq!(changes(&again.diff), changes(&found.diff));
}
