//! The journal: runs recorded as they go, and read back.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use crate::chunk::ChunkWriter;
use crate::db::{Arg, Cells, Db};
use crate::error::JournalError;
use crate::record::{
    ActionCounts, Element, KeyEvent, Mode, Retention, Run, RunFilter, RunId, RunResult, Side, now_ms, peak_memory,
};
use crate::recorder::Recording;
use diffsync::{
    Action, Adapter, AdapterExt, Attrs, Chain, Diff, DiffElement, Error, Options, Outcome, Sink, SyncError, SyncReport,
};

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

/// Changes one read of a run's unusual changes covers (a chunk's worth).
const CHUNK_READ: u32 = crate::chunk::CHUNK_CHANGES as u32;

/// The tables whose rows a run's changes key (by [`element_id`]).
const BY_CHANGE: [&str; 6] = [
    "elements",
    "chunks",
    "chunk_keys",
    "exceptions",
    "conflicts",
    "left_alone",
];

/// A journal of runs in an SQLite file: each run is written as it goes
/// (its row first, marked unfinished; its planned changes by a second
/// thread while the sync plans them, in compressed chunks of 512
/// committed 8 at a time; then the
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
/// let history = journal.history(Site::key("nyc"))?;
/// assert_eq!(history[0].element.after.as_ref().unwrap()["region"], "east");
///
/// // Undone: the site created by that run is deleted again.
/// let undo = journal.rollback(run, &mut network, false)?;
/// assert!(undo.conflicts.is_empty());
/// assert_eq!(network.store.count_all(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Journal {
    db: Box<dyn Db>,
}

/// The runs a query found: those that read back, and the rows that did not
/// (each a [`JournalError::Corrupt`] naming its run).
#[derive(Debug, Default)]
pub struct Runs {
    /// The runs, newest first.
    pub runs: Vec<Run>,
    /// The rows that could not be read.
    pub unreadable: Vec<JournalError>,
}

impl std::ops::Deref for Runs {
    type Target = [Run];
    fn deref(&self) -> &[Run] {
        &self.runs
    }
}

impl IntoIterator for Runs {
    type Item = Run;
    type IntoIter = std::vec::IntoIter<Run>;
    fn into_iter(self) -> Self::IntoIter {
        self.runs.into_iter()
    }
}

/// A run being recorded: what its end is counted under.
pub(crate) struct Ended {
    pub(crate) run: RunId,
    pub(crate) mode: Mode,
    pub(crate) target: String,
    /// Changes a rollback left alone, recorded with its end (and making it
    /// partial).
    pub(crate) left_alone: Vec<crate::RollbackConflict>,
}

/// The changes of a run as its end needs them: each one's place and key,
/// numbered on from `first`, their texts in one buffer (not two strings
/// a change).
#[derive(Default)]
pub(crate) struct Planned {
    first: u32,
    text: String,
    /// Where each change's model type and key end in `text`.
    ends: Vec<(u32, u32)>,
}

impl Planned {
    fn starting_at(first: u32) -> Planned {
        Planned {
            first,
            ..Planned::default()
        }
    }

    fn push(&mut self, model_type: &str, key: &str) {
        self.text.push_str(model_type);
        let type_end = self.text.len() as u32;
        self.text.push_str(key);
        self.ends.push((type_end, self.text.len() as u32));
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Each change's number in the run, model type and key.
    fn iter(&self) -> impl Iterator<Item = (u32, &str, &str)> {
        let mut start = 0;
        self.ends.iter().zip(self.first..).map(move |(&(type_end, end), seq)| {
            let (t, k) = (start as usize, type_end as usize);
            start = end;
            (seq, &self.text[t..k], &self.text[k..end as usize])
        })
    }

    /// These changes and then `next`'s (numbered on from these).
    fn then(mut self, next: Planned) -> Planned {
        let offset = self.text.len() as u32;
        self.text.push_str(&next.text);
        self.ends
            .extend(next.ends.iter().map(|&(t, e)| (t + offset, e + offset)));
        self
    }
}

/// The changes that went to one system, and its sync's report.
pub(crate) struct Part<'a> {
    pub(crate) planned: &'a Planned,
    pub(crate) report: Option<&'a SyncReport>,
}

impl Journal {
    /// The journal in the SQLite file `path` (created, with its tables, if
    /// new). A file of another application (tables that are not a
    /// journal's) is refused before anything in it is changed, and so is
    /// a journal of a newer layout; an older one is brought up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal, JournalError> {
        let conn = rusqlite::Connection::open(path.as_ref()).map_err(JournalError::db("open"))?;
        let tables: Vec<String> = {
            let mut statement = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .map_err(JournalError::db("open"))?;
            let names = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(JournalError::db("open"))?;
            names.collect::<Result<_, _>>().map_err(JournalError::db("open"))?
        };
        let ours = |t: &str| ["runs", "journal_meta"].contains(&t) || BY_CHANGE.contains(&t);
        let foreign: Vec<&String> = tables.iter().filter(|t| !ours(t)).collect();
        if !foreign.is_empty() || (!tables.is_empty() && !tables.iter().any(|t| t == "runs")) {
            let shown: Vec<&str> = foreign.iter().take(5).map(|t| t.as_str()).collect();
            return Err(JournalError::NotAJournal {
                path: path.as_ref().display().to_string(),
                tables: shown.join(", "),
            });
        }
        Journal::sqlite(conn)
    }

    /// A journal in memory (tests, examples).
    pub fn in_memory() -> Result<Journal, JournalError> {
        Journal::sqlite(rusqlite::Connection::open_in_memory().map_err(JournalError::db("open"))?)
    }

    fn sqlite(conn: rusqlite::Connection) -> Result<Journal, JournalError> {
        // The version is checked before the file is switched to WAL.
        let db: Box<dyn Db> = Box::new(conn);
        check_version(&*db)?;
        db.batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -32768;
             PRAGMA wal_autocheckpoint = 16384;",
        )
        .map_err(JournalError::db("set up"))?;
        Journal::with_tables(db, crate::db::SQLITE_SCHEMA)
    }

    /// The journal in a PostgreSQL database, for a team sharing it
    /// (`params` as for `postgres::Client::connect`, e.g.
    /// `"host=db user=ops dbname=diffsync"`); its tables are created if
    /// missing (under a lock: processes opening a new journal at once
    /// wait for each other). Runs recorded by several processes at once
    /// each get their own id.
    #[cfg(feature = "postgres")]
    pub fn connect_postgres(params: &str) -> Result<Journal, JournalError> {
        let client = postgres::Client::connect(params, postgres::NoTls).map_err(JournalError::db("connect"))?;
        let db: Box<dyn Db> = Box::new(crate::db::Postgres::new(client));
        // A session lock (released at its end, or by the unlock below)
        // around the check and the creation of the tables.
        db.batch("SELECT pg_advisory_lock(7164302556203237987)")
            .map_err(JournalError::db("lock the journal's tables"))?;
        let made = check_version(&*db).and_then(|()| Journal::with_tables(db, &crate::db::postgres_schema()));
        if let Ok(journal) = &made {
            journal
                .db
                .batch("SELECT pg_advisory_unlock(7164302556203237987)")
                .map_err(JournalError::db("unlock the journal's tables"))?;
        }
        made
    }

    fn with_tables(db: Box<dyn Db>, schema: &str) -> Result<Journal, JournalError> {
        db.batch(schema).map_err(JournalError::db("create its tables"))?;
        // A journal made before runs kept their options, or who ran them,
        // gains the column.
        if db.query("SELECT options FROM runs LIMIT 0", &[]).is_err() {
            db.batch("ALTER TABLE runs ADD COLUMN options TEXT NOT NULL DEFAULT ''")
                .map_err(JournalError::db("add the options column"))?;
        }
        if db.query("SELECT who FROM runs LIMIT 0", &[]).is_err() {
            db.batch("ALTER TABLE runs ADD COLUMN who TEXT")
                .map_err(JournalError::db("add the who column"))?;
        }
        db.execute(
            "INSERT INTO journal_meta (name, value) VALUES ('schema', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[Arg::Text(&crate::db::SCHEMA_VERSION.to_string())],
        )
        .map_err(JournalError::db("record its layout's version"))?;
        Ok(Journal { db })
    }

    /// Syncs `target` from `source` (as [`AdapterExt::sync_from_with`]
    /// does, safety rails included) and records the run: its id and the
    /// sync's report. A sync that stops with an error is recorded as
    /// failed, with what it did until then, and the error names the run.
    pub fn sync<T: Sink + ?Sized, S: Adapter + ?Sized>(
        &mut self,
        target: &mut T,
        source: &S,
        opts: &mut Options<'_>,
    ) -> Result<(RunId, SyncReport), JournalError> {
        self.record(Mode::OneWay, None, target, source, opts, &[])
    }

    pub(crate) fn record<T: Sink + ?Sized, S: Adapter + ?Sized>(
        &mut self,
        mode: Mode,
        rollback_of: Option<RunId>,
        target: &mut T,
        source: &S,
        opts: &mut Options<'_>,
        left_alone: &[crate::RollbackConflict],
    ) -> Result<(RunId, SyncReport), JournalError> {
        let _recording = Recording::start();
        let options = opts.to_string();
        let run = self.begin(
            mode,
            source.name(),
            target.name(),
            opts.is_dry_run(),
            &options,
            rollback_of,
        )?;
        let ended = Ended {
            run,
            mode,
            target: target.name().to_string(),
            left_alone: left_alone.to_vec(),
        };
        // The plan is written by a second thread while the sync plans and
        // checks it; the sync writes nothing before the plan is committed
        // (a crash after a write leaves a journal that knows the write).
        let t = Instant::now();
        let observed = target.sync_from_observed(source, opts, |diff| {
            let diffed = t.elapsed();
            self.plan(run, diff, None, 0)
                .map(|planned| (diffed, planned))
                .map_err(|e| Box::new(e) as diffsync::BoxError)
        });
        let (result, (diffed, planned)) = match observed {
            Ok(observed) => observed,
            Err(e) => return Err(self.failed(&ended, &Planned::default(), Vec::new(), e)),
        };
        let phases = vec![
            ("diff".to_string(), diffed.as_secs_f64()),
            ("sync".to_string(), (t.elapsed() - diffed).as_secs_f64()),
        ];
        match result {
            Ok(report) => {
                let result = if report.is_success() && left_alone.is_empty() {
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

    /// Records a rollback that had nothing to undo but left changes alone.
    pub(crate) fn record_left_alone(
        &mut self,
        rollback_of: RunId,
        target: &str,
        left_alone: &[crate::RollbackConflict],
    ) -> Result<RunId, JournalError> {
        let _recording = Recording::start();
        let run = self.begin(
            Mode::Rollback,
            &format!("rollback of {rollback_of}"),
            target,
            false,
            "",
            Some(rollback_of),
        )?;
        let ended = Ended {
            run,
            mode: Mode::Rollback,
            target: target.to_string(),
            left_alone: left_alone.to_vec(),
        };
        self.finish(&ended, &[], RunResult::Partial, None, &[])?;
        Ok(run)
    }

    /// What a rollback left alone, by key, with why.
    pub fn left_alone(&self, run: RunId) -> Result<Vec<crate::RollbackConflict>, JournalError> {
        let rows = self.of_run(
            "SELECT model_type, key, reason FROM left_alone WHERE id >= ?1 AND id < ?2 ORDER BY id",
            run,
            "read what a rollback left alone",
        )?;
        rows.into_iter()
            .map(|mut r| {
                let (model_type, key) = (r.text(0)?, r.text(1)?);
                // The key's text form reads back as the key it was printed from.
                let key = diffsync::ModelKey::parse(&format!("{model_type}:{key}"))
                    .map_err(|e| format!("a key left alone that does not read back: {e}"))?;
                Ok(crate::RollbackConflict {
                    key,
                    reason: r.text(2)?,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(|message| JournalError::Corrupt { run, message })
    }

    /// `f` in one transaction: committed if it succeeds, rolled back if not.
    fn transaction<T>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&dyn Db) -> Result<T, crate::db::DbError>,
    ) -> Result<T, JournalError> {
        let fail = JournalError::db(doing);
        self.db.batch("BEGIN").map_err(&fail)?;
        match f(&*self.db) {
            Ok(value) => {
                self.db.batch("COMMIT").map_err(&fail)?;
                Ok(value)
            }
            Err(e) => {
                // The transaction's own error says what went wrong.
                let _ = self.db.batch("ROLLBACK");
                Err(fail(e))
            }
        }
    }

    /// Records a run that stopped with `error`: the outcomes its report
    /// holds, its end; the error returned names the run.
    fn failed(&mut self, ended: &Ended, planned: &Planned, phases: Vec<(String, f64)>, error: Error) -> JournalError {
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
        options: &str,
        rollback_of: Option<RunId>,
    ) -> Result<RunId, JournalError> {
        let fail = JournalError::db::<crate::db::DbError>("record a run's start");
        let rows = self
            .db
            .query(
                "INSERT INTO runs (started_ms, mode, source, target, dry_run, options, result, rollback_of, who)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'unfinished', ?7, ?8) RETURNING id",
                &[
                    Arg::Int(now_ms() as i64),
                    mode.as_str().into(),
                    source.into(),
                    target.into(),
                    Arg::Int(dry_run.into()),
                    options.into(),
                    rollback_of.map(|r| r.0).into(),
                    Arg::Text(&who()),
                ],
            )
            .map_err(&fail)?;
        let id = rows
            .first()
            .map(|r| r.int(0))
            .unwrap_or_else(|| Err("no id returned".into()));
        Ok(RunId(id.map_err(|e| fail(e.into()))?))
    }

    /// The run's changes: written straight from the diff's walk (parents
    /// before children), in chunks of [`CHUNK_CHANGES`](crate::chunk::CHUNK_CHANGES).
    fn plan(&mut self, run: RunId, diff: &Diff, side: Option<Side>, first: u32) -> Result<Planned, JournalError> {
        // The diff's walk, with each element's parent.
        let mut path: Vec<(&str, &str)> = Vec::new();
        let changes = diff.iter().filter_map(move |(e, depth)| {
            path.truncate(depth);
            let parent = path.last().copied();
            path.push((e.model_type(), e.unique_id()));
            (e.action != Action::NoChange).then_some((e, parent))
        });
        self.plan_changes(run, changes, side, first)
    }

    /// Writes changes (an element and its parent each) as a run's plan,
    /// in chunks of [`CHUNK_CHANGES`](crate::chunk::CHUNK_CHANGES).
    pub(crate) fn plan_changes<'d>(
        &self,
        run: RunId,
        changes: impl Iterator<Item = (&'d DiffElement, Option<(&'d str, &'d str)>)>,
        side: Option<Side>,
        first: u32,
    ) -> Result<Planned, JournalError> {
        self.transaction("record a plan", |_| self.plan_in(run, changes, side, first))
    }

    fn plan_in<'d>(
        &self,
        run: RunId,
        changes: impl Iterator<Item = (&'d DiffElement, Option<(&'d str, &'d str)>)>,
        side: Option<Side>,
        first: u32,
    ) -> Result<Planned, crate::db::DbError> {
        let mut planned = Planned::starting_at(first);
        let mut chunk = ChunkWriter::new(side);
        let mut chunk_first = first;
        let mut written = 0;
        for (e, parent) in changes {
            let seq = first + planned.len() as u32;
            chunk.push(e, parent);
            planned.push(e.model_type(), e.unique_id());
            if chunk.is_full() {
                self.insert_chunk(run, chunk_first, &mut chunk)?;
                chunk_first = seq + 1;
                written += 1;
                if written % CHUNKS_PER_COMMIT == 0 {
                    self.db.batch("COMMIT; BEGIN")?;
                }
            }
        }
        if chunk.count > 0 {
            self.insert_chunk(run, chunk_first, &mut chunk)?;
        }
        Ok(planned)
    }

    /// Writes the chunk whose first change is number `first` of `run`, and
    /// its changes' key hashes; `chunk` is empty again.
    fn insert_chunk(&self, run: RunId, first: u32, chunk: &mut ChunkWriter<'_>) -> Result<(), crate::db::DbError> {
        let id = Arg::Int(element_id(run, first));
        let (count, [creates, updates, deletes]) = (chunk.count as i64, chunk.counts);
        let side = chunk.side.map(Side::as_str);
        let (body, size, hashes) = chunk.take();
        self.db.execute(
            "INSERT INTO chunks (id, count, creates, updates, deletes, size, side, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &[
                id,
                Arg::Int(count),
                Arg::Int(creates),
                Arg::Int(updates),
                Arg::Int(deletes),
                Arg::Int(size as i64),
                side.into(),
                Arg::Blob(&body),
            ],
        )?;
        self.db.execute(
            "INSERT INTO chunk_keys (id, hashes) VALUES (?1, ?2)",
            &[id, Arg::Blob(&hashes)],
        )?;
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
        let run = ended.run;
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
                    all.unknown += t.unknown;
                    all
                })
        });
        let totals = totals.map(|t| json(&t));
        let (phases_json, usual_json) = (json(&phases), json(&usual));
        self.transaction("record a run's end", |db| {
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
                let seq: HashMap<(&str, &str), u32> = part.planned.iter().map(|(seq, t, k)| ((t, k), seq)).collect();
                let named: HashMap<u32, &Outcome> = reported
                    .iter()
                    .filter_map(|e| Some((*seq.get(&(e.model_type(), e.key.unique_id()))?, &e.outcome)))
                    .collect();
                for (seq, _, _) in part.planned.iter() {
                    // A change the report does not name was never reached.
                    let outcome = named.get(&seq).copied().unwrap_or(&Outcome::Pending);
                    if *outcome != usual {
                        db.execute(
                            "INSERT INTO exceptions (id, outcome) VALUES (?1, ?2)
                             ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome",
                            &[Arg::Int(element_id(run, seq)), json(outcome).as_str().into()],
                        )?;
                    }
                }
            }
            for (i, c) in ended.left_alone.iter().enumerate() {
                db.execute(
                    "INSERT INTO left_alone (id, model_type, key, reason) VALUES (?1, ?2, ?3, ?4)",
                    &[
                        Arg::Int(element_id(run, i as u32)),
                        c.model_type().into(),
                        c.key.unique_id().into(),
                        c.reason.as_str().into(),
                    ],
                )?;
            }
            db.execute(
                "UPDATE runs SET ended_ms = ?2, result = ?3, error = ?4, totals = ?5, phases = ?6, peak_memory = ?7,
                 usual = ?8 WHERE id = ?1",
                &[
                    Arg::Int(run.0),
                    Arg::Int(now_ms() as i64),
                    result.as_str().into(),
                    error.into(),
                    totals.as_deref().into(),
                    phases_json.as_str().into(),
                    peak.map(|m| m as i64).into(),
                    usual_json.as_str().into(),
                ],
            )?;
            Ok(())
        })?;
        crate::metrics::record_run(ended.mode, &ended.target, result, &reports, phases, peak);
        Ok(())
    }

    /// Reconciles `left` and `right` against `base` (as
    /// [`bidir::reconcile`](diffsync::bidir::reconcile) does) and records
    /// the run: mode two-way, the left side as its source and the right as
    /// its target, each side's changes with their outcomes and the side
    /// they went to, and every conflict with its resolution
    /// ([`conflicts`](Journal::conflicts)).
    pub fn reconcile<L: Sink + ?Sized, R: Sink + ?Sized>(
        &mut self,
        left: &mut L,
        right: &mut R,
        base: &mut diffsync::bidir::Base,
        opts: &diffsync::bidir::BiOptions,
    ) -> Result<(RunId, diffsync::bidir::BiReport), JournalError> {
        let _recording = Recording::start();
        let options = opts.to_string();
        let run = self.begin(
            Mode::TwoWay,
            left.name(),
            right.name(),
            opts.is_dry_run(),
            &options,
            None,
        )?;
        let ended = Ended {
            run,
            mode: Mode::TwoWay,
            target: right.name().to_string(),
            left_alone: Vec::new(),
        };
        let t = Instant::now();
        // Each side's changes and the conflicts are written before either
        // side is: a process that dies applying leaves them, unfinished.
        let mut written = None;
        let result = diffsync::bidir::reconcile_observed(left, right, base, opts, |plan| {
            let to_left = self.plan(run, plan.to_left, Some(Side::Left), 0)?;
            let to_right = self.plan(run, plan.to_right, Some(Side::Right), to_left.len() as u32)?;
            self.record_conflicts(run, plan.conflicts)?;
            written = Some((to_left, to_right));
            Ok(())
        });
        let phases = vec![("reconcile".to_string(), t.elapsed().as_secs_f64())];
        let (to_left, to_right) = written.unwrap_or_default();
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                return Err(self.failed(&ended, &to_left.then(to_right), phases, e));
            }
        };
        // The conflicts again, now saying whether their resolution landed.
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
        self.transaction("record conflicts", |db| {
            for (i, c) in conflicts.iter().enumerate() {
                db.execute(
                    "INSERT INTO conflicts (id, model_type, key, record) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                    &[
                        Arg::Int(element_id(run, i as u32)),
                        c.model_type().into(),
                        c.key.unique_id().into(),
                        json(c).as_str().into(),
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The rows `sql` selects from a run's rows (`?1`: its first row id,
    /// `?2`: the first past it).
    fn of_run(&self, sql: &str, run: RunId, what: &'static str) -> Result<Vec<crate::db::Cells>, JournalError> {
        self.db
            .query(sql, &[Arg::Int(element_id(run, 0)), Arg::Int(run_end(run))])
            .map_err(JournalError::db(what))
    }

    /// How many creates, updates and deletes a run planned (one indexed
    /// count of its changes; the dashboard's charts).
    pub fn action_counts(&self, run: RunId) -> Result<ActionCounts, JournalError> {
        let rows = self.of_run(
            "SELECT action, count(*) FROM elements WHERE id >= ?1 AND id < ?2 GROUP BY action",
            run,
            "count a run's changes",
        )?;
        let mut counts = ActionCounts::default();
        let corrupt = |message: String| JournalError::Corrupt { run, message };
        let chunked = self.of_run(
            "SELECT CAST(coalesce(sum(creates), 0) AS BIGINT), CAST(coalesce(sum(updates), 0) AS BIGINT),
             CAST(coalesce(sum(deletes), 0) AS BIGINT) FROM chunks WHERE id >= ?1 AND id < ?2",
            run,
            "count a run's changes",
        )?;
        for row in chunked {
            let n = |i| row.int(i).map(|n| usize::try_from(n).unwrap_or(0)).map_err(corrupt);
            counts.create += n(0)?;
            counts.update += n(1)?;
            counts.delete += n(2)?;
        }
        for mut row in rows {
            let n = usize::try_from(row.int(1).map_err(corrupt)?).unwrap_or(0);
            match row.text(0).map_err(corrupt)?.as_str() {
                "create" => counts.create += n,
                "update" => counts.update += n,
                "delete" => counts.delete += n,
                other => return Err(corrupt(format!("a change with the action {other:?}"))),
            }
        }
        Ok(counts)
    }

    /// A two-way run's conflicts, each with what base, left and right held,
    /// the strategy and its resolution.
    pub fn conflicts(&self, run: RunId) -> Result<Vec<diffsync::bidir::ConflictRecord>, JournalError> {
        let rows = self.of_run(
            "SELECT record FROM conflicts WHERE id >= ?1 AND id < ?2 ORDER BY id",
            run,
            "read a run's conflicts",
        )?;
        let corrupt = |message: String| JournalError::Corrupt { run, message };
        rows.into_iter()
            .map(|mut r| serde_json::from_str(&r.text(0).map_err(corrupt)?).map_err(|e| corrupt(e.to_string())))
            .collect()
    }

    /// One run (without its elements: [`elements`](Journal::elements)).
    pub fn run(&self, run: RunId) -> Result<Run, JournalError> {
        let rows = self
            .db
            .query(&format!("{RUN_COLUMNS} WHERE id = ?1"), &[Arg::Int(run.0)])
            .map_err(JournalError::db("read a run"))?;
        let row = rows.into_iter().next().ok_or(JournalError::NoRun(run))?;
        read_run(row).map_err(|message| JournalError::Corrupt { run, message })
    }

    /// A run's changes, in order, with their outcomes (`Pending` while the
    /// run goes on, or when it died).
    pub fn elements(&self, run: RunId) -> Result<Vec<Element>, JournalError> {
        self.elements_page(run, 0, u32::MAX)
    }

    /// `limit` of a run's changes from its `from`-th on (numbered from 0, in
    /// order), with their outcomes: only the chunks that hold them are
    /// read (a page of a run of a million changes reads a few).
    ///
    /// ```
    /// # use diffsync::{DiffModel, MemoryAdapter};
    /// # use diffsync_journal::Journal;
    /// # #[derive(DiffModel, Clone, Debug, PartialEq)]
    /// # #[diffsync(name = "site")]
    /// # struct Site { #[diffsync(id)] name: String }
    /// let mut cmdb = MemoryAdapter::new("cmdb", &["site"]);
    /// for name in ["a", "b", "c"] {
    ///     cmdb.store.add(Site { name: name.into() })?;
    /// }
    /// let mut network = MemoryAdapter::new("network", &["site"]);
    /// network.store.register::<Site>()?;
    /// let mut journal = Journal::in_memory()?;
    /// let (run, _) = journal.sync(&mut network, &cmdb, &mut Default::default())?;
    /// let page = journal.elements_page(run, 1, 5)?;
    /// let keys: Vec<&str> = page.iter().map(|e| e.key.unique_id()).collect();
    /// assert_eq!(keys, ["b", "c"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn elements_page(&self, run: RunId, from: u32, limit: u32) -> Result<Vec<Element>, JournalError> {
        let usual = self.usual(run)?;
        let corrupt = |message: String| JournalError::Corrupt { run, message };
        let (first, end) = (
            element_id(run, from),
            (element_id(run, from) + i64::from(limit)).min(run_end(run)),
        );
        let range = [Arg::Int(first), Arg::Int(end)];
        let query =
            |sql: &str, args: &[Arg<'_>], what: &'static str| self.db.query(sql, args).map_err(JournalError::db(what));
        // A run recorded before changes were kept in chunks has a row each.
        let rows = query(
            &format!("{ELEMENT_COLUMNS} WHERE e.id >= ?1 AND e.id < ?2 ORDER BY e.id"),
            &range,
            "read a run's changes",
        )?;
        let mut elements = rows
            .into_iter()
            .map(|row| read_element(row).and_then(|(e, exception)| with_outcome(e, exception, usual.as_ref())))
            .collect::<Result<Vec<_>, String>>()
            .map_err(corrupt)?;
        let exceptions: HashMap<i64, String> = query(
            "SELECT id, outcome FROM exceptions WHERE id >= ?1 AND id < ?2",
            &range,
            "read a run's outcomes",
        )?
        .into_iter()
        .map(|mut r| Ok((r.int(0)?, r.text(1)?)))
        .collect::<Result<_, String>>()
        .map_err(corrupt)?;
        // The chunks that hold some of the page: those starting in it, and
        // the one before it (the run's own, by the id's range).
        let chunks = query(
            "SELECT id, size, body FROM chunks WHERE id < ?2 AND id >= ?3 AND id + count > ?1 ORDER BY id",
            &[range[0], range[1], Arg::Int(element_id(run, 0))],
            "read a run's changes",
        )?;
        for mut row in chunks {
            let mut read = || -> Result<Vec<(Element, String)>, String> {
                crate::chunk::read(seq_of(row.int(0)?), row.int(1)?, &row.blob(2)?)
            };
            for (element, _) in read().map_err(corrupt)? {
                let id = element_id(run, element.seq);
                if id < first || id >= end {
                    continue;
                }
                let exception = exceptions.get(&id).cloned();
                elements.push(with_outcome(element, exception, usual.as_ref()).map_err(corrupt)?);
            }
        }
        Ok(elements)
    }

    /// Where the changes that went to `side` are among a run's (`None`:
    /// a one-way run's target): the number of the first and how many
    /// (a side's changes are numbered one after the other).
    pub fn changes_to(&self, run: RunId, side: Option<Side>) -> Result<(u32, u32), JournalError> {
        let side = side.map_or("", Side::as_str);
        let args = [Arg::Int(element_id(run, 0)), Arg::Int(run_end(run)), Arg::Text(side)];
        let corrupt = |message: String| JournalError::Corrupt { run, message };
        let mut found = (u32::MAX, 0u32);
        for sql in [
            "SELECT min(id), CAST(coalesce(sum(count), 0) AS BIGINT) FROM chunks
             WHERE id >= ?1 AND id < ?2 AND coalesce(side, '') = ?3",
            // A run recorded a row per change.
            "SELECT min(id), count(*) FROM elements WHERE id >= ?1 AND id < ?2 AND coalesce(side, '') = ?3",
        ] {
            let rows = self
                .db
                .query(sql, &args)
                .map_err(JournalError::db("count a run's changes"))?;
            for row in rows {
                if let Some(first) = row.opt_int(0).map_err(corrupt)? {
                    let count = u32::try_from(row.int(1).map_err(corrupt)?).unwrap_or(u32::MAX);
                    found = (found.0.min(seq_of(first)), found.1.saturating_add(count));
                }
            }
        }
        Ok(if found.1 == 0 { (0, 0) } else { found })
    }

    /// The first `limit` of a run's changes whose own outcome (not the
    /// run's usual one: failed, skipped, never reached...) `keep` takes,
    /// in order, and how many it takes in all: only their chunks are read.
    pub fn unusual(
        &self,
        run: RunId,
        keep: impl Fn(&Outcome) -> bool,
        limit: usize,
    ) -> Result<(Vec<Element>, usize), JournalError> {
        let corrupt = |message: String| JournalError::Corrupt { run, message };
        let rows = self.of_run(
            "SELECT id, outcome FROM exceptions WHERE id >= ?1 AND id < ?2 ORDER BY id",
            run,
            "read a run's outcomes",
        )?;
        let mut kept = Vec::new();
        for mut row in rows {
            let id = row.int(0).map_err(corrupt)?;
            let outcome: Outcome =
                serde_json::from_str(&row.text(1).map_err(corrupt)?).map_err(|e| corrupt(e.to_string()))?;
            if keep(&outcome) {
                kept.push(seq_of(id));
            }
        }
        let mut elements = Vec::with_capacity(limit.min(kept.len()));
        let mut wanted = kept.iter().take(limit).copied().peekable();
        // A page from each wanted change on, as long as the next ones are in it.
        while let Some(seq) = wanted.next() {
            let page = self.elements_page(run, seq, CHUNK_READ)?;
            let end = seq.saturating_add(CHUNK_READ);
            let mut take = vec![seq];
            while let Some(next) = wanted.next_if(|s| *s < end) {
                take.push(next);
            }
            elements.extend(page.into_iter().filter(|e| take.binary_search(&e.seq).is_ok()));
        }
        Ok((elements, kept.len()))
    }

    /// The outcome of a run's changes that have no row of their own
    /// (`None`: the run has not ended).
    fn usual(&self, run: RunId) -> Result<Option<Outcome>, JournalError> {
        let rows = self
            .db
            .query("SELECT usual FROM runs WHERE id = ?1", &[Arg::Int(run.0)])
            .map_err(JournalError::db("read a run"))?;
        let mut row = rows.into_iter().next().ok_or(JournalError::NoRun(run))?;
        let corrupt = |message: String| JournalError::Corrupt { run, message };
        row.opt_text(0)
            .map_err(corrupt)?
            .map(|u| serde_json::from_str(&u))
            .transpose()
            .map_err(|e| corrupt(e.to_string()))
    }

    /// The runs that match, newest first. A run whose row cannot be read
    /// (written by hand, damaged) does not hide the others: it is in
    /// [`Runs::unreadable`], with its id.
    pub fn runs(&self, filter: &RunFilter) -> Result<Runs, JournalError> {
        let mut sql = format!("{RUN_COLUMNS} WHERE 1 = 1");
        let mut args: Vec<Arg<'_>> = Vec::new();
        if let Some(system) = &filter.system {
            args.push(system.as_str().into());
            sql.push_str(&format!(" AND (source = ?{n} OR target = ?{n})", n = args.len()));
        }
        if let Some(mode) = filter.mode {
            args.push(mode.as_str().into());
            sql.push_str(&format!(" AND mode = ?{}", args.len()));
        }
        if let Some(result) = filter.result {
            args.push(result.as_str().into());
            sql.push_str(&format!(" AND result = ?{}", args.len()));
        }
        if let Some(since) = filter.since_ms {
            args.push(Arg::Int(since as i64));
            sql.push_str(&format!(" AND started_ms >= ?{}", args.len()));
        }
        if let Some(until) = filter.until_ms {
            args.push(Arg::Int(until as i64));
            sql.push_str(&format!(" AND started_ms < ?{}", args.len()));
        }
        let pattern;
        if let Some(text) = &filter.text {
            // The text as it is: its `%`, `_` and `\` match only themselves.
            let escaped = text
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            pattern = format!("%{escaped}%");
            args.push(pattern.as_str().into());
            let n = args.len();
            let like = |column: &str| format!("lower(coalesce({column}, '')) LIKE ?{n} ESCAPE '\\'");
            let columns = ["source", "target", "who", "options", "error"].map(like);
            sql.push_str(&format!(" AND ({})", columns.join(" OR ")));
        }
        sql.push_str(" ORDER BY id DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let rows = self.db.query(&sql, &args).map_err(JournalError::db("query runs"))?;
        let mut runs = Runs::default();
        for row in rows {
            let id = row.int(0).map(RunId);
            match read_run(row) {
                Ok(run) => runs.runs.push(run),
                Err(message) => {
                    let run = id.unwrap_or(RunId(i64::MIN));
                    tracing::warn!(%run, %message, "an unreadable run was skipped");
                    runs.unreadable.push(JournalError::Corrupt { run, message });
                }
            }
        }
        Ok(runs)
    }

    /// Every recorded change to the model `key` names, oldest first, with
    /// its run: who changed this device's role, when, in which run, from what.
    pub fn history(&self, key: impl AsRef<diffsync::ModelKey>) -> Result<Vec<KeyEvent>, JournalError> {
        let key = key.as_ref();
        let (model_type, key) = (key.model_type(), key.unique_id());
        let fail = JournalError::db("read a key's history");
        // Runs recorded before changes were kept in chunks: a row each.
        let rows = self
            .db
            .query(
                &format!("{ELEMENT_COLUMNS_WITH_RUN} WHERE e.model_type = ?1 AND e.key = ?2 ORDER BY e.id"),
                &[model_type.into(), key.into()],
            )
            .map_err(&fail)?;
        let mut events = Vec::new();
        for mut row in rows {
            let run = RunId(row.int(0).unwrap_or(-1) >> 32);
            let corrupt = |message: String| JournalError::Corrupt { run, message };
            let event = || -> Result<KeyEvent, String> {
                let about = RunAbout::read(&mut row, 11)?;
                let (element, exception) = read_element(row)?;
                about.event(run, with_outcome(element, exception, about.usual.as_ref())?)
            };
            events.push(event().map_err(corrupt)?);
        }
        // Runs kept in chunks: the chunks whose hashes hold the key's
        // (found inside the database), read, and their changes of the key
        // (a hash is checked against the key).
        let hash = crate::chunk::key_hash(model_type, key, &mut Vec::new());
        let sql = format!(
            "SELECT c.id, c.size, c.body FROM chunk_keys k JOIN chunks c ON c.id = k.id WHERE {} ORDER BY c.id",
            self.db.contains("k.hashes", "?1")
        );
        let chunks = self.db.query(&sql, &[Arg::Blob(&hash)]).map_err(&fail)?;
        let mut about: Option<(RunId, RunAbout)> = None;
        for mut row in chunks {
            let first = row.int(0).map_err(|message| JournalError::Corrupt {
                run: RunId(-1),
                message,
            })?;
            let run = RunId(first >> 32);
            let corrupt = |message: String| JournalError::Corrupt { run, message };
            let (size, body) = (row.int(1).map_err(corrupt)?, row.blob(2).map_err(corrupt)?);
            for (element, written) in crate::chunk::read(seq_of(first), size, &body).map_err(corrupt)? {
                if element.key.model_type() != model_type || written != key {
                    continue;
                }
                if about.as_ref().is_none_or(|(r, _)| *r != run) {
                    about = Some((run, self.run_about(run)?));
                }
                let Some((_, run_about)) = &about else { continue };
                let exception = self
                    .db
                    .query(
                        "SELECT outcome FROM exceptions WHERE id = ?1",
                        &[Arg::Int(element_id(run, element.seq))],
                    )
                    .map_err(&fail)?
                    .pop()
                    .map(|mut r| r.text(0))
                    .transpose()
                    .map_err(corrupt)?;
                let element = with_outcome(element, exception, run_about.usual.as_ref()).map_err(corrupt)?;
                events.push(run_about.event(run, element).map_err(corrupt)?);
            }
        }
        events.sort_by_key(|e| (e.run, e.element.seq));
        Ok(events)
    }

    /// What a key's history says of `run`.
    fn run_about(&self, run: RunId) -> Result<RunAbout, JournalError> {
        let mut rows = self
            .db
            .query(
                "SELECT started_ms, mode, source, target, dry_run, usual FROM runs WHERE id = ?1",
                &[Arg::Int(run.0)],
            )
            .map_err(JournalError::db("read a key's history"))?;
        let mut row = rows.pop().ok_or(JournalError::NoRun(run))?;
        RunAbout::read(&mut row, 0).map_err(|message| JournalError::Corrupt { run, message })
    }

    /// Drops the runs `keep` does not keep, with their changes; how many.
    pub fn retain(&mut self, keep: Retention) -> Result<usize, JournalError> {
        self.transaction("drop old runs", |db| {
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
            let dropped = db.query(sql, &[Arg::Int(arg)])?;
            for row in &dropped {
                let run = RunId(row.int(0)?);
                for table in BY_CHANGE {
                    db.execute(
                        &format!("DELETE FROM {table} WHERE id >= ?1 AND id < ?2"),
                        &[Arg::Int(element_id(run, 0)), Arg::Int(run_end(run))],
                    )?;
                }
                db.execute("DELETE FROM runs WHERE id = ?1", &[Arg::Int(run.0)])?;
            }
            Ok(dropped.len())
        })
    }
}

/// Refuses a journal whose layout is newer than this build's (read
/// without writing anything).
fn check_version(db: &dyn Db) -> Result<(), JournalError> {
    // No table yet (a new journal) or one from before the version was kept.
    let Ok(rows) = db.query("SELECT value FROM journal_meta WHERE name = 'schema'", &[]) else {
        return Ok(());
    };
    let found = match rows.into_iter().next() {
        None => return Ok(()),
        Some(mut row) => row.text(0).ok().and_then(|v| v.parse::<i64>().ok()).unwrap_or(i64::MAX),
    };
    if found > crate::db::SCHEMA_VERSION {
        return Err(JournalError::Newer {
            found,
            supported: crate::db::SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Chunks of a plan written per transaction.
const CHUNKS_PER_COMMIT: usize = 8;

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("journal records serialize to JSON")
}

const RUN_COLUMNS: &str = "SELECT id, started_ms, ended_ms, mode, source, target, dry_run, result, error, totals,
    phases, peak_memory, rollback_of, options, who FROM runs";

/// Who runs this process: `user@host`, as the environment and the
/// kernel say (`?` for what they do not).
fn who() -> String {
    let user = ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "?".into());
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "?".into());
    format!("{user}@{host}")
}

fn read_run(mut row: Cells) -> Result<Run, String> {
    let mode = row.text(3)?;
    let result = row.text(7)?;
    Ok(Run {
        id: RunId(row.int(0)?),
        started_ms: row.int(1)? as u64,
        ended_ms: row.opt_int(2)?.map(|v| v as u64),
        mode: Mode::parse(&mode).ok_or_else(|| format!("unknown mode {mode:?}"))?,
        source: row.text(4)?,
        target: row.text(5)?,
        dry_run: row.int(6)? != 0,
        result: RunResult::parse(&result).ok_or_else(|| format!("unknown result {result:?}"))?,
        error: row.opt_text(8)?,
        totals: row
            .opt_text(9)?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| e.to_string())?,
        phases: serde_json::from_str(&row.text(10)?).map_err(|e| e.to_string())?,
        peak_memory: row.opt_int(11)?.map(|v| v as u64),
        rollback_of: row.opt_int(12)?.map(RunId),
        options: row.text(13)?,
        who: row.opt_text(14)?,
    })
}

const ELEMENT_COLUMNS: &str = "SELECT e.id, e.model_type, e.key, e.parent_type, e.parent_key, e.identifiers,
    e.action, e.before, e.after, x.outcome, e.side FROM elements e LEFT JOIN exceptions x ON x.id = e.id";

const ELEMENT_COLUMNS_WITH_RUN: &str = "SELECT e.id, e.model_type, e.key, e.parent_type, e.parent_key,
    e.identifiers, e.action, e.before, e.after, x.outcome, e.side, r.started_ms, r.mode, r.source, r.target,
    r.dry_run, r.usual FROM elements e LEFT JOIN exceptions x ON x.id = e.id JOIN runs r ON r.id = (e.id >> 32)";

/// A change's number in its run, from its id.
fn seq_of(id: i64) -> u32 {
    (id & 0xffff_ffff) as u32
}

/// What a key's history says of a change's run.
struct RunAbout {
    started_ms: u64,
    mode: Mode,
    source: String,
    target: String,
    dry_run: bool,
    usual: Option<Outcome>,
}

impl RunAbout {
    /// From six columns of `row` from `at` on: started, mode, source,
    /// target, dry run, the usual outcome.
    fn read(row: &mut Cells, at: usize) -> Result<RunAbout, String> {
        let mode = row.text(at + 1)?;
        Ok(RunAbout {
            started_ms: row.int(at)? as u64,
            mode: Mode::parse(&mode).ok_or_else(|| format!("unknown mode {mode:?}"))?,
            source: row.text(at + 2)?,
            target: row.text(at + 3)?,
            dry_run: row.int(at + 4)? != 0,
            usual: row
                .opt_text(at + 5)?
                .map(|u| serde_json::from_str(&u))
                .transpose()
                .map_err(|e| e.to_string())?,
        })
    }

    fn event(&self, run: RunId, element: Element) -> Result<KeyEvent, String> {
        Ok(KeyEvent {
            run,
            started_ms: self.started_ms,
            mode: self.mode,
            source: self.source.clone(),
            target: self.target.clone(),
            dry_run: self.dry_run,
            element,
        })
    }
}

/// An element as read (its outcome pending), and its own outcome's row.
fn read_element(mut row: Cells) -> Result<(Element, Option<String>), String> {
    let id = row.int(0)?;
    let attrs = |text: Option<String>| -> Result<Option<Attrs>, String> {
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| e.to_string())
    };
    let action: Action = serde_json::from_value(serde_json::Value::String(row.text(6)?)).map_err(|e| e.to_string())?;
    let before = attrs(row.opt_text(7)?)?;
    let after = crate::record::values_after(action, before.as_ref(), attrs(row.opt_text(8)?)?);
    let identifiers: Attrs = serde_json::from_str(&row.text(5)?).map_err(|e| e.to_string())?;
    let parent = match row.opt_text(3)?.zip(row.opt_text(4)?) {
        Some((t, k)) => Some(crate::record::parent_key(&t, &k).map_err(|e| e.to_string())?),
        None => None,
    };
    let element = Element {
        seq: seq_of(id),
        // The key from the identifier values; the row's key text is what
        // history is looked up by.
        key: diffsync::ModelKey::new(row.text(1)?, identifiers.values().map(diffsync::KeyValue::from)),
        parent,
        side: Side::read(row.opt_text(10)?.as_deref())?,
        identifiers,
        action,
        outcome: Outcome::Pending,
        before,
        after,
    };
    Ok((element, row.opt_text(9)?))
}

/// The element with its outcome: its own row's, else the run's usual one
/// once the run ended, else pending.
fn with_outcome(mut element: Element, exception: Option<String>, usual: Option<&Outcome>) -> Result<Element, String> {
    element.outcome = match (exception, usual) {
        (Some(text), _) => serde_json::from_str(&text).map_err(|e| e.to_string())?,
        (None, Some(usual)) => usual.clone(),
        (None, None) => Outcome::Pending,
    };
    Ok(element)
}
