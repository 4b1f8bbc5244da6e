//! The journal in SQLite: runs recorded as they go, and read back.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use diffsync::{
    Action, Adapter, AdapterExt, Attrs, Chain, Diff, DiffElement, Error, Options, Outcome, SyncError, SyncReport,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::JournalError;
use crate::record::{Element, KeyEvent, Mode, Retention, Run, RunFilter, RunId, RunResult, Side, now_ms, peak_memory};
use crate::recorder::Recording;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    mode TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    result TEXT NOT NULL,
    error TEXT,
    totals TEXT,
    phases TEXT NOT NULL DEFAULT '[]',
    peak_memory INTEGER,
    rollback_of INTEGER,
    usual TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_ms);
CREATE TABLE IF NOT EXISTS elements (
    id INTEGER PRIMARY KEY,
    model_type TEXT NOT NULL,
    key TEXT NOT NULL,
    parent_type TEXT,
    parent_key TEXT,
    identifiers TEXT NOT NULL,
    action TEXT NOT NULL,
    before TEXT,
    after TEXT,
    side TEXT
);
CREATE INDEX IF NOT EXISTS elements_key ON elements (model_type, key);
CREATE TABLE IF NOT EXISTS exceptions (
    id INTEGER PRIMARY KEY,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY,
    model_type TEXT NOT NULL,
    key TEXT NOT NULL,
    record TEXT NOT NULL
);
";

/// Changes of a plan written per transaction.
const PLAN_CHUNK: usize = 4_096;

/// An element's row id: its run in the high bits, its place in the run in
/// the low ones, so a run's elements are one range of the table's own key
/// (no second index to keep up while a run is recorded).
fn element_id(run: RunId, seq: u32) -> i64 {
    (run.0 << 32) | i64::from(seq)
}

/// The first row id past a run's elements.
fn run_end(run: RunId) -> i64 {
    (run.0 + 1) << 32
}

/// A journal of runs in an SQLite file: each run is written as it goes
/// (its row first, marked unfinished; its planned changes by a second
/// thread while the sync applies them, committed every 4,096; then the
/// outcomes and the run's end), so a process that dies mid-run leaves a
/// readable record that says so. The outcome every change had (applied,
/// or planned in a dry run) is said once per run; only the others get a
/// row of their own.
///
/// ```
/// use diffsync::{DiffModel, MemoryAdapter};
/// use diffsync_journal::{Journal, RunResult};
///
/// #[derive(DiffModel, Clone, Debug, PartialEq)]
/// #[diffsync(name = "site")]
/// struct Site { #[diffsync(id)] name: String, region: String }
///
/// let mut cmdb = MemoryAdapter::new("cmdb", &["site"]);
/// cmdb.store.add(Site { name: "nyc".into(), region: "east".into() })?;
/// let mut network = MemoryAdapter::new("network", &["site"]);
/// network.store.register::<Site>()?;
///
/// let mut journal = Journal::in_memory()?;
/// let (run, report) = journal.sync(&mut network, &cmdb, &mut Default::default())?;
/// assert!(report.is_success());
/// let recorded = journal.run(run)?;
/// assert_eq!((recorded.result, recorded.source.as_str()), (RunResult::Succeeded, "cmdb"));
/// let history = journal.history("site", "nyc")?;
/// assert_eq!(history[0].element.after.as_ref().unwrap()["region"], "east");
///
/// // Undone: the site created by that run is deleted again.
/// let undo = journal.rollback(run, &mut network, false)?;
/// assert!(undo.conflicts.is_empty());
/// assert_eq!(network.store.count_all(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Journal {
    conn: Connection,
}

/// A run being recorded: what its end is counted under.
pub(crate) struct Ended {
    pub(crate) run: RunId,
    pub(crate) mode: Mode,
    pub(crate) target: String,
}

/// A change of a run, as the recorder tracks it: its place and key.
pub(crate) struct Planned {
    seq: u32,
    model_type: String,
    key: String,
}

/// The changes that went to one system, and its sync's report.
pub(crate) struct Part<'a> {
    pub(crate) planned: &'a [Planned],
    pub(crate) report: Option<&'a SyncReport>,
}

impl Journal {
    /// The journal in `path` (created, with its tables, if new).
    pub fn open(path: impl AsRef<Path>) -> Result<Journal, JournalError> {
        let conn = Connection::open(path.as_ref()).map_err(JournalError::db("open"))?;
        Journal::setup(conn)
    }

    /// A journal in memory (tests, examples).
    pub fn in_memory() -> Result<Journal, JournalError> {
        Journal::setup(Connection::open_in_memory().map_err(JournalError::db("open"))?)
    }

    fn setup(conn: Connection) -> Result<Journal, JournalError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -32768;
             PRAGMA wal_autocheckpoint = 16384;",
        )
        .map_err(JournalError::db("set up"))?;
        conn.execute_batch(SCHEMA)
            .map_err(JournalError::db("create its tables"))?;
        Ok(Journal { conn })
    }

    /// Syncs `target` from `source` (as [`AdapterExt::sync_from_with`]
    /// does, safety rails included) and records the run: its id and the
    /// sync's report. A sync that stops with an error is recorded as
    /// failed, with what it did until then, and the error names the run.
    pub fn sync<T: Adapter + ?Sized, S: Adapter + ?Sized>(
        &mut self,
        target: &mut T,
        source: &S,
        opts: &mut Options<'_>,
    ) -> Result<(RunId, SyncReport), JournalError> {
        self.record(Mode::OneWay, None, target, source, opts)
    }

    pub(crate) fn record<T: Adapter + ?Sized, S: Adapter + ?Sized>(
        &mut self,
        mode: Mode,
        rollback_of: Option<RunId>,
        target: &mut T,
        source: &S,
        opts: &mut Options<'_>,
    ) -> Result<(RunId, SyncReport), JournalError> {
        let _recording = Recording::start();
        let run = self.begin(mode, source.name(), target.name(), opts.is_dry_run(), rollback_of)?;
        let ended = Ended {
            run,
            mode,
            target: target.name().to_string(),
        };
        let t = Instant::now();
        let diff = match target.diff_from_with(source, opts) {
            Ok(diff) => diff,
            Err(e) => return Err(self.failed(&ended, &[], Vec::new(), e)),
        };
        let mut phases = vec![("diff".to_string(), t.elapsed().as_secs_f64())];
        // The plan is written by a second thread while the sync applies it
        // (committed every few thousand changes, and whole before the run
        // ends, a panicking hook included): the journal costs a fraction
        // of the sync instead of adding to it.
        let t = Instant::now();
        let (planned, result) = std::thread::scope(|scope| {
            let writer = scope.spawn(|| self.plan(run, &diff, None, 0));
            let result = target.sync_diff_from(source, &diff, opts);
            let planned = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (planned, result)
        });
        let planned = planned?;
        phases.push(("sync".into(), t.elapsed().as_secs_f64()));
        match result {
            Ok(report) => {
                let result = if report.is_success() {
                    RunResult::Succeeded
                } else {
                    RunResult::Partial
                };
                let part = Part {
                    planned: &planned,
                    report: Some(&report),
                };
                self.finish(&ended, &[part], result, None, &phases)?;
                Ok((run, report))
            }
            Err(e) => Err(self.failed(&ended, &planned, phases, e)),
        }
    }

    /// Records a run that stopped with `error`: the outcomes its report
    /// holds, its end; the error returned names the run.
    fn failed(&mut self, ended: &Ended, planned: &[Planned], phases: Vec<(String, f64)>, error: Error) -> JournalError {
        let report = match &error {
            Error::Sync(SyncError::Aborted { report, .. } | SyncError::StoreApply { report, .. }) => Some(&**report),
            _ => None,
        };
        let message = Chain(&error).to_string();
        let part = Part { planned, report };
        match self.finish(ended, &[part], RunResult::Failed, Some(&message), &phases) {
            Ok(()) => JournalError::Run {
                run: ended.run,
                source: Box::new(error),
            },
            Err(e) => e,
        }
    }

    pub(crate) fn begin(
        &mut self,
        mode: Mode,
        source: &str,
        target: &str,
        dry_run: bool,
        rollback_of: Option<RunId>,
    ) -> Result<RunId, JournalError> {
        self.conn
            .execute(
                "INSERT INTO runs (started_ms, mode, source, target, dry_run, result, rollback_of)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'unfinished', ?6)",
                params![
                    now_ms() as i64,
                    mode.as_str(),
                    source,
                    target,
                    dry_run,
                    rollback_of.map(|r| r.0)
                ],
            )
            .map_err(JournalError::db("record a run's start"))?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    /// The run's changes: written straight from the diff's walk (parents
    /// before children), committed every [`PLAN_CHUNK`] changes.
    fn plan(&mut self, run: RunId, diff: &Diff, side: Option<Side>, first: u32) -> Result<Vec<Planned>, JournalError> {
        // The diff's walk, with each element's parent.
        let mut path: Vec<(&str, &str)> = Vec::new();
        let changes = diff.iter().filter_map(move |(e, depth)| {
            path.truncate(depth);
            let parent = path.last().copied();
            path.push((&e.model_type, &e.key));
            (e.action != Action::NoChange).then_some((e, parent))
        });
        self.plan_changes(run, changes, side, first)
    }

    /// Writes changes (an element and its parent each) as a run's plan,
    /// committed every [`PLAN_CHUNK`].
    pub(crate) fn plan_changes<'d>(
        &mut self,
        run: RunId,
        changes: impl Iterator<Item = (&'d DiffElement, Option<(&'d str, &'d str)>)>,
        side: Option<Side>,
        first: u32,
    ) -> Result<Vec<Planned>, JournalError> {
        let fail = JournalError::db("record a plan");
        self.conn.execute_batch("BEGIN").map_err(&fail)?;
        let planned = self.plan_in(run, changes, side, first);
        let end = if planned.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.conn.execute_batch(end).map_err(&fail)?;
        planned
    }

    fn plan_in<'d>(
        &mut self,
        run: RunId,
        changes: impl Iterator<Item = (&'d DiffElement, Option<(&'d str, &'d str)>)>,
        side: Option<Side>,
        first: u32,
    ) -> Result<Vec<Planned>, JournalError> {
        let fail = JournalError::db("record a plan");
        let mut planned = Vec::new();
        // Rows go in statements of ROWS_PER_INSERT (a statement's step is
        // most of a row's cost); their JSON is written into one buffer per
        // statement, not a string per value.
        let mut rows: Vec<Row<'_>> = Vec::with_capacity(ROWS_PER_INSERT);
        let mut text = Vec::new();
        for (e, parent) in changes {
            let seq = first + planned.len() as u32;
            let ids = append_json(&mut text, Some(&e.identifiers));
            let before = append_json(&mut text, e.dest_attrs.as_ref());
            // An update keeps only what it changed: the values after are
            // those before with these.
            let after = if e.action == Action::Update {
                let changed: serde_json::Map<String, serde_json::Value> =
                    e.changes.iter().map(|c| (c.name.to_string(), c.new.clone())).collect();
                append_json(&mut text, Some(&changed))
            } else {
                append_json(&mut text, e.source_attrs.as_ref())
            };
            rows.push(Row {
                id: element_id(run, seq),
                model_type: &e.model_type,
                key: &e.key,
                parent_type: parent.map(|p| p.0),
                parent_key: parent.map(|p| p.1),
                ids: ids.unwrap_or_default(),
                action: e.action.as_str(),
                before,
                after,
            });
            planned.push(Planned {
                seq,
                model_type: e.model_type.to_string(),
                key: e.key.clone(),
            });
            if rows.len() == ROWS_PER_INSERT {
                self.insert_rows(&rows, &text, side).map_err(&fail)?;
                rows.clear();
                text.clear();
            }
            if planned.len() % PLAN_CHUNK == 0 {
                self.conn.execute_batch("COMMIT; BEGIN").map_err(&fail)?;
            }
        }
        self.insert_rows(&rows, &text, side).map_err(&fail)?;
        Ok(planned)
    }

    /// One statement inserting `rows` (their JSON spans in `text`).
    fn insert_rows(&self, rows: &[Row<'_>], text: &[u8], side: Option<Side>) -> rusqlite::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO elements (id, model_type, key, parent_type, parent_key, identifiers, action, before, after,
             side) VALUES {}",
            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows.len()].join(", ")
        );
        let mut insert = self.conn.prepare_cached(&sql)?;
        // serde_json writes UTF-8: each span is text.
        let span = |s: (usize, usize)| std::str::from_utf8(&text[s.0..s.1]).unwrap_or_default();
        let side = side.map(Side::as_str);
        let spans: Vec<(&str, Option<&str>, Option<&str>)> = rows
            .iter()
            .map(|r| (span(r.ids), r.before.map(span), r.after.map(span)))
            .collect();
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(rows.len() * 10);
        for (r, (ids, before, after)) in rows.iter().zip(&spans) {
            values.extend_from_slice(&[
                &r.id,
                &r.model_type,
                &r.key,
                &r.parent_type,
                &r.parent_key,
                ids,
                &r.action,
                before,
                after,
                &side,
            ]);
        }
        insert.execute(values.as_slice())?;
        Ok(())
    }

    /// The run's end, and each change's outcome: the usual one (applied,
    /// or planned in a dry run) said once for the run, the others (failed,
    /// skipped, never reached) one row each.
    pub(crate) fn finish(
        &mut self,
        ended: &Ended,
        parts: &[Part<'_>],
        result: RunResult,
        error: Option<&str>,
        phases: &[(String, f64)],
    ) -> Result<(), JournalError> {
        let (run, fail) = (ended.run, JournalError::db("record a run's end"));
        let peak = peak_memory();
        let reports: Vec<&SyncReport> = parts.iter().filter_map(|p| p.report).collect();
        let usual = if reports.iter().any(|r| r.dry_run) {
            Outcome::Planned
        } else {
            Outcome::Applied
        };
        let totals = (!reports.is_empty()).then(|| {
            reports
                .iter()
                .map(|r| r.totals())
                .fold(diffsync::Totals::default(), |mut all, t| {
                    all.applied += t.applied;
                    all.failed += t.failed;
                    all.soft_failed += t.soft_failed;
                    all.rolled_back += t.rolled_back;
                    all.skipped += t.skipped;
                    all.planned += t.planned;
                    all.unchanged += t.unchanged;
                    all
                })
        });
        let tx = self.conn.transaction().map_err(&fail)?;
        {
            let mut except = tx
                .prepare("INSERT OR REPLACE INTO exceptions (id, outcome) VALUES (?1, ?2)")
                .map_err(&fail)?;
            for part in parts {
                // The changes whose outcome is not the usual one: none,
                // usually, and then nothing is looked up.
                let reported: Vec<&diffsync::ElementReport> = part
                    .report
                    .map(|r| r.elements.iter().filter(|e| e.action != Action::NoChange).collect())
                    .unwrap_or_default();
                if reported.len() == part.planned.len() && reported.iter().all(|e| e.outcome == usual) {
                    continue;
                }
                let seq: HashMap<(&str, &str), u32> = part
                    .planned
                    .iter()
                    .map(|p| ((p.model_type.as_str(), p.key.as_str()), p.seq))
                    .collect();
                let named: HashMap<u32, &Outcome> = reported
                    .iter()
                    .filter_map(|e| Some((*seq.get(&(e.model_type.as_str(), e.key.as_str()))?, &e.outcome)))
                    .collect();
                for p in part.planned {
                    // A change the report does not name was never reached.
                    let outcome = named.get(&p.seq).copied().unwrap_or(&Outcome::Pending);
                    if *outcome != usual {
                        except
                            .execute(params![element_id(run, p.seq), json(outcome)])
                            .map_err(&fail)?;
                    }
                }
            }
            tx.execute(
                "UPDATE runs SET ended_ms = ?2, result = ?3, error = ?4, totals = ?5, phases = ?6, peak_memory = ?7,
                 usual = ?8 WHERE id = ?1",
                params![
                    run.0,
                    now_ms() as i64,
                    result.as_str(),
                    error,
                    totals.map(|t| json(&t)),
                    json(&phases),
                    peak.map(|m| m as i64),
                    json(&usual),
                ],
            )
            .map_err(&fail)?;
        }
        tx.commit().map_err(&fail)?;
        crate::metrics::record_run(ended.mode, &ended.target, result, &reports, phases, peak);
        Ok(())
    }

    /// Reconciles `left` and `right` against `base` (as
    /// [`bidir::reconcile`](diffsync::bidir::reconcile) does) and records
    /// the run: mode two-way, the left side as its source and the right as
    /// its target, each side's changes with their outcomes and the side
    /// they went to, and every conflict with its resolution
    /// ([`conflicts`](Journal::conflicts)).
    pub fn reconcile<L: Adapter + ?Sized, R: Adapter + ?Sized>(
        &mut self,
        left: &mut L,
        right: &mut R,
        base: &mut diffsync::bidir::Base,
        opts: &diffsync::bidir::BiOptions,
    ) -> Result<(RunId, diffsync::bidir::BiReport), JournalError> {
        let _recording = Recording::start();
        let run = self.begin(Mode::TwoWay, left.name(), right.name(), opts.is_dry_run(), None)?;
        let ended = Ended {
            run,
            mode: Mode::TwoWay,
            target: right.name().to_string(),
        };
        let t = Instant::now();
        let result = diffsync::bidir::reconcile(left, right, base, opts);
        let phases = vec![("reconcile".to_string(), t.elapsed().as_secs_f64())];
        let report = match result {
            Ok(report) => report,
            Err(e) => return Err(self.failed(&ended, &[], phases, e)),
        };
        let to_left = self.plan(run, &report.plan_left, Some(Side::Left), 0)?;
        let to_right = self.plan(run, &report.plan_right, Some(Side::Right), to_left.len() as u32)?;
        self.record_conflicts(run, &report.conflicts)?;
        let (result, error) = match report.stopped() {
            Some((side, e)) => (RunResult::Failed, Some(format!("{side}: {}", Chain(e)))),
            None if report.is_clean() && report.to_left.is_success() && report.to_right.is_success() => {
                (RunResult::Succeeded, None)
            }
            None => (RunResult::Partial, None),
        };
        let parts = [
            Part {
                planned: &to_left,
                report: Some(&report.to_left),
            },
            Part {
                planned: &to_right,
                report: Some(&report.to_right),
            },
        ];
        self.finish(&ended, &parts, result, error.as_deref(), &phases)?;
        crate::metrics::record_conflicts(&report.conflicts);
        Ok((run, report))
    }

    fn record_conflicts(
        &mut self,
        run: RunId,
        conflicts: &[diffsync::bidir::ConflictRecord],
    ) -> Result<(), JournalError> {
        let fail = JournalError::db("record conflicts");
        let tx = self.conn.transaction().map_err(&fail)?;
        {
            let mut insert = tx
                .prepare("INSERT INTO conflicts (id, model_type, key, record) VALUES (?1, ?2, ?3, ?4)")
                .map_err(&fail)?;
            for (i, c) in conflicts.iter().enumerate() {
                insert
                    .execute(params![element_id(run, i as u32), c.model_type, c.key, json(c)])
                    .map_err(&fail)?;
            }
        }
        tx.commit().map_err(&fail)
    }

    /// A two-way run's conflicts, each with what base, left and right held,
    /// the strategy and its resolution.
    pub fn conflicts(&self, run: RunId) -> Result<Vec<diffsync::bidir::ConflictRecord>, JournalError> {
        let fail = JournalError::db("read a run's conflicts");
        let mut query = self
            .conn
            .prepare("SELECT record FROM conflicts WHERE id >= ?1 AND id < ?2 ORDER BY id")
            .map_err(&fail)?;
        let rows = query
            .query_map([element_id(run, 0), run_end(run)], |row| row.get::<_, String>(0))
            .map_err(&fail)?;
        rows.map(|r| {
            serde_json::from_str(&r.map_err(&fail)?).map_err(|e| JournalError::Corrupt {
                run,
                message: e.to_string(),
            })
        })
        .collect()
    }

    /// One run (without its elements: [`elements`](Journal::elements)).
    pub fn run(&self, run: RunId) -> Result<Run, JournalError> {
        self.conn
            .query_row(&format!("{RUN_COLUMNS} WHERE id = ?1"), [run.0], read_run)
            .optional()
            .map_err(JournalError::db("read a run"))?
            .ok_or(JournalError::NoRun(run))?
            .map_err(|message| JournalError::Corrupt { run, message })
    }

    /// A run's changes, in order, with their outcomes (`Pending` while the
    /// run goes on, or when it died).
    pub fn elements(&self, run: RunId) -> Result<Vec<Element>, JournalError> {
        let fail = JournalError::db("read a run's changes");
        let usual = self.usual(run)?;
        let mut query = self
            .conn
            .prepare(&format!(
                "{ELEMENT_COLUMNS} WHERE e.id >= ?1 AND e.id < ?2 ORDER BY e.id"
            ))
            .map_err(&fail)?;
        let rows = query
            .query_map([element_id(run, 0), run_end(run)], read_element)
            .map_err(&fail)?;
        rows.map(|r| {
            r.map_err(&fail)?
                .and_then(|(e, exception)| with_outcome(e, exception, usual.as_ref()))
                .map_err(|message| JournalError::Corrupt { run, message })
        })
        .collect()
    }

    /// The outcome of a run's changes that have no row of their own
    /// (`None`: the run has not ended).
    fn usual(&self, run: RunId) -> Result<Option<Outcome>, JournalError> {
        let usual: Option<Option<String>> = self
            .conn
            .query_row("SELECT usual FROM runs WHERE id = ?1", [run.0], |row| row.get(0))
            .optional()
            .map_err(JournalError::db("read a run"))?;
        let usual = usual.ok_or(JournalError::NoRun(run))?;
        usual
            .map(|u| serde_json::from_str(&u))
            .transpose()
            .map_err(|e| JournalError::Corrupt {
                run,
                message: e.to_string(),
            })
    }

    /// The runs that match, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>, JournalError> {
        let mut sql = format!("{RUN_COLUMNS} WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(system) = &filter.system {
            args.push(system.clone().into());
            sql.push_str(&format!(" AND (source = ?{n} OR target = ?{n})", n = args.len()));
        }
        if let Some(mode) = filter.mode {
            args.push(mode.as_str().to_string().into());
            sql.push_str(&format!(" AND mode = ?{}", args.len()));
        }
        if let Some(result) = filter.result {
            args.push(result.as_str().to_string().into());
            sql.push_str(&format!(" AND result = ?{}", args.len()));
        }
        if let Some(since) = filter.since_ms {
            args.push((since as i64).into());
            sql.push_str(&format!(" AND started_ms >= ?{}", args.len()));
        }
        if let Some(until) = filter.until_ms {
            args.push((until as i64).into());
            sql.push_str(&format!(" AND started_ms < ?{}", args.len()));
        }
        sql.push_str(" ORDER BY id DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut query = self.conn.prepare(&sql).map_err(JournalError::db("query runs"))?;
        let rows = query
            .query_map(rusqlite::params_from_iter(args), read_run)
            .map_err(JournalError::db("query runs"))?;
        let mut runs = Vec::new();
        for row in rows {
            let run = row.map_err(JournalError::db("query runs"))?;
            runs.push(run.map_err(|message| JournalError::Corrupt {
                run: RunId(-1),
                message,
            })?);
        }
        Ok(runs)
    }

    /// Every recorded change to one model, oldest first, with its run:
    /// who changed this device's role, when, in which run, from what.
    pub fn history(&self, model_type: &str, key: &str) -> Result<Vec<KeyEvent>, JournalError> {
        let fail = JournalError::db("read a key's history");
        let mut query = self
            .conn
            .prepare(&format!(
                "{ELEMENT_COLUMNS_WITH_RUN} WHERE e.model_type = ?1 AND e.key = ?2 ORDER BY e.id"
            ))
            .map_err(&fail)?;
        let rows = query
            .query_map([model_type, key], |row| {
                Ok((
                    read_element(row)?,
                    row.get::<_, i64>(11)? as u64,
                    row.get::<_, String>(12)?,
                    row.get::<_, String>(13)?,
                    row.get::<_, String>(14)?,
                    row.get::<_, bool>(15)?,
                    row.get::<_, Option<String>>(16)?,
                ))
            })
            .map_err(&fail)?;
        let mut events = Vec::new();
        for row in rows {
            let (element, started_ms, mode, source, target, dry_run, usual) = row.map_err(&fail)?;
            let (element, exception) = element.map_err(|message| JournalError::Corrupt {
                run: RunId(-1),
                message,
            })?;
            let run = RunId(element.seq_run);
            let corrupt = |message: String| JournalError::Corrupt { run, message };
            let usual: Option<Outcome> = usual
                .map(|u| serde_json::from_str(&u))
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?;
            events.push(KeyEvent {
                run,
                started_ms,
                mode: Mode::parse(&mode).ok_or_else(|| corrupt(format!("unknown mode {mode:?}")))?,
                source,
                target,
                dry_run,
                element: with_outcome(element, exception, usual.as_ref()).map_err(corrupt)?,
            });
        }
        Ok(events)
    }

    /// Drops the runs `keep` does not keep, with their changes; how many.
    pub fn retain(&mut self, keep: Retention) -> Result<usize, JournalError> {
        let fail = JournalError::db("drop old runs");
        let tx = self.conn.transaction().map_err(&fail)?;
        let dropped: Vec<i64> = {
            let (sql, arg) = match keep {
                Retention::Runs(n) => (
                    "SELECT id FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY id DESC LIMIT ?1)",
                    n as i64,
                ),
                Retention::MaxAgeMs(age) => (
                    "SELECT id FROM runs WHERE started_ms < ?1",
                    now_ms().saturating_sub(age) as i64,
                ),
            };
            let mut query = tx.prepare(sql).map_err(&fail)?;
            let rows = query.query_map([arg], |row| row.get(0)).map_err(&fail)?;
            rows.collect::<Result<_, _>>().map_err(&fail)?
        };
        for &id in &dropped {
            let run = RunId(id);
            for table in ["elements", "exceptions", "conflicts"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE id >= ?1 AND id < ?2"),
                    [element_id(run, 0), run_end(run)],
                )
                .map_err(&fail)?;
            }
            tx.execute("DELETE FROM runs WHERE id = ?1", [id]).map_err(&fail)?;
        }
        tx.commit().map_err(&fail)?;
        Ok(dropped.len())
    }
}

/// Rows of a multi-row insert.
const ROWS_PER_INSERT: usize = 64;

/// An element's row, waiting for its statement; its JSON is a span of the
/// statement's text.
struct Row<'a> {
    id: i64,
    model_type: &'a str,
    key: &'a str,
    parent_type: Option<&'a str>,
    parent_key: Option<&'a str>,
    ids: (usize, usize),
    action: &'static str,
    before: Option<(usize, usize)>,
    after: Option<(usize, usize)>,
}

/// Appends a value's JSON to `text`: where it is.
fn append_json<T: serde::Serialize>(text: &mut Vec<u8>, value: Option<&T>) -> Option<(usize, usize)> {
    let value = value?;
    let start = text.len();
    serde_json::to_writer(&mut *text, value).expect("journal records serialize to JSON");
    Some((start, text.len()))
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("journal records serialize to JSON")
}

const RUN_COLUMNS: &str = "SELECT id, started_ms, ended_ms, mode, source, target, dry_run, result, error, totals,
    phases, peak_memory, rollback_of FROM runs";

fn read_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Run, String>> {
    let mode: String = row.get(3)?;
    let result: String = row.get(7)?;
    let totals: Option<String> = row.get(9)?;
    let phases: String = row.get(10)?;
    let run = || -> Result<Run, String> {
        Ok(Run {
            id: RunId(row.get(0).map_err(|e| e.to_string())?),
            started_ms: row.get::<_, i64>(1).map_err(|e| e.to_string())? as u64,
            ended_ms: row
                .get::<_, Option<i64>>(2)
                .map_err(|e| e.to_string())?
                .map(|v| v as u64),
            mode: Mode::parse(&mode).ok_or_else(|| format!("unknown mode {mode:?}"))?,
            source: row.get(4).map_err(|e| e.to_string())?,
            target: row.get(5).map_err(|e| e.to_string())?,
            dry_run: row.get(6).map_err(|e| e.to_string())?,
            result: RunResult::parse(&result).ok_or_else(|| format!("unknown result {result:?}"))?,
            error: row.get(8).map_err(|e| e.to_string())?,
            totals: totals
                .map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| e.to_string())?,
            phases: serde_json::from_str(&phases).map_err(|e| e.to_string())?,
            peak_memory: row
                .get::<_, Option<i64>>(11)
                .map_err(|e| e.to_string())?
                .map(|v| v as u64),
            rollback_of: row.get::<_, Option<i64>>(12).map_err(|e| e.to_string())?.map(RunId),
        })
    };
    Ok(run())
}

const ELEMENT_COLUMNS: &str = "SELECT e.id, e.model_type, e.key, e.parent_type, e.parent_key, e.identifiers,
    e.action, e.before, e.after, x.outcome, e.side FROM elements e LEFT JOIN exceptions x ON x.id = e.id";

const ELEMENT_COLUMNS_WITH_RUN: &str = "SELECT e.id, e.model_type, e.key, e.parent_type, e.parent_key,
    e.identifiers, e.action, e.before, e.after, x.outcome, e.side, r.started_ms, r.mode, r.source, r.target,
    r.dry_run, r.usual FROM elements e LEFT JOIN exceptions x ON x.id = e.id JOIN runs r ON r.id = (e.id >> 32)";

/// An element as read, before its outcome is known.
struct Read {
    seq_run: i64,
    element: Element,
}

fn read_element(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<(Read, Option<String>), String>> {
    let id: i64 = row.get(0)?;
    let (model_type, key): (String, String) = (row.get(1)?, row.get(2)?);
    let parent_type: Option<String> = row.get(3)?;
    let parent_key: Option<String> = row.get(4)?;
    let identifiers: String = row.get(5)?;
    let action: String = row.get(6)?;
    let before: Option<String> = row.get(7)?;
    let after: Option<String> = row.get(8)?;
    let exception: Option<String> = row.get(9)?;
    let side: Option<String> = row.get(10)?;
    let element = || -> Result<(Read, Option<String>), String> {
        let attrs = |text: Option<String>| -> Result<_, String> {
            text.map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| e.to_string())
        };
        let action: Action = serde_json::from_value(serde_json::Value::String(action)).map_err(|e| e.to_string())?;
        let before: Option<Attrs> = attrs(before)?;
        let mut after: Option<Attrs> = attrs(after)?;
        if action == Action::Update
            && let (Some(before), Some(changed)) = (&before, after.take())
        {
            let mut whole = before.clone();
            whole.extend(changed);
            after = Some(whole);
        }
        let element = Element {
            seq: (id & 0xffff_ffff) as u32,
            model_type,
            key,
            parent: parent_type.zip(parent_key),
            side: match side.as_deref() {
                None => None,
                Some("left") => Some(Side::Left),
                Some("right") => Some(Side::Right),
                Some(other) => return Err(format!("unknown side {other:?}")),
            },
            identifiers: serde_json::from_str(&identifiers).map_err(|e| e.to_string())?,
            action,
            outcome: Outcome::Pending,
            before,
            after,
        };
        Ok((
            Read {
                seq_run: id >> 32,
                element,
            },
            exception,
        ))
    };
    Ok(element())
}

/// The element with its outcome: its own row's, else the run's usual one
/// once the run ended, else pending.
fn with_outcome(read: Read, exception: Option<String>, usual: Option<&Outcome>) -> Result<Element, String> {
    let mut element = read.element;
    element.outcome = match (exception, usual) {
        (Some(text), _) => serde_json::from_str(&text).map_err(|e| e.to_string())?,
        (None, Some(usual)) => usual.clone(),
        (None, None) => Outcome::Pending,
    };
    Ok(element)
}
