//! The journal in SQLite: runs recorded as they go, and read back.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use diffsync::{Action, Adapter, AdapterExt, Chain, Diff, Error, Options, Outcome, SyncError, SyncReport};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::JournalError;
use crate::record::{Element, KeyEvent, Mode, Retention, Run, RunFilter, RunId, RunResult, now_ms, peak_memory};

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
    rollback_of INTEGER
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_ms);
CREATE TABLE IF NOT EXISTS elements (
    run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    model_type TEXT NOT NULL,
    key TEXT NOT NULL,
    parent_type TEXT,
    parent_key TEXT,
    identifiers TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    before TEXT,
    after TEXT,
    PRIMARY KEY (run, seq)
);
CREATE INDEX IF NOT EXISTS elements_key ON elements (model_type, key);
";

/// A journal of runs in an SQLite file: each run is written as it goes
/// (its row first, marked unfinished; its planned changes before any is
/// applied; their outcomes and the run's end after), so a process that
/// dies mid-run leaves a readable record that says so.
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

/// The pre-order walk of a diff's changes with their parents.
pub(crate) fn elements_of(diff: &Diff) -> Vec<Element> {
    let mut out = Vec::new();
    let mut path: Vec<(String, String)> = Vec::new();
    for (e, depth) in diff.iter() {
        path.truncate(depth);
        let parent = path.last().cloned();
        path.push((e.model_type.to_string(), e.key.clone()));
        if e.action == Action::NoChange {
            continue;
        }
        out.push(Element {
            seq: out.len() as u32,
            model_type: e.model_type.to_string(),
            key: e.key.clone(),
            parent,
            identifiers: e.identifiers.clone(),
            action: e.action,
            outcome: Outcome::Pending,
            before: e.dest_attrs.clone(),
            after: e.source_attrs.clone(),
        });
    }
    out
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
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
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
        let run = self.begin(mode, source.name(), target.name(), opts.is_dry_run(), rollback_of)?;
        let t = Instant::now();
        let diff = match target.diff_from_with(source, opts) {
            Ok(diff) => diff,
            Err(e) => return Err(self.failed(run, Vec::new(), None, e)),
        };
        let mut phases = vec![("diff".to_string(), t.elapsed().as_secs_f64())];
        let elements = elements_of(&diff);
        self.plan(run, &elements)?;
        let t = Instant::now();
        let result = target.sync_diff_from(source, &diff, opts);
        phases.push(("sync".into(), t.elapsed().as_secs_f64()));
        match result {
            Ok(report) => {
                self.outcomes(run, &elements, &report)?;
                let result = if report.is_success() {
                    RunResult::Succeeded
                } else {
                    RunResult::Partial
                };
                self.finish(run, result, None, Some(&report), &phases)?;
                Ok((run, report))
            }
            Err(e) => Err(self.failed(run, elements, Some(phases), e)),
        }
    }

    /// Records a run that stopped with `error`: the outcomes its report
    /// holds, its end; the error returned names the run.
    fn failed(
        &mut self,
        run: RunId,
        elements: Vec<Element>,
        phases: Option<Vec<(String, f64)>>,
        error: Error,
    ) -> JournalError {
        let report = match &error {
            Error::Sync(SyncError::Aborted { report, .. } | SyncError::StoreApply { report, .. }) => Some(&**report),
            _ => None,
        };
        let recorded = report
            .map_or(Ok(()), |r| self.outcomes(run, &elements, r))
            .and_then(|()| {
                self.finish(
                    run,
                    RunResult::Failed,
                    Some(&Chain(&error).to_string()),
                    report,
                    &phases.unwrap_or_default(),
                )
            });
        match recorded {
            Ok(()) => JournalError::Run {
                run,
                source: Box::new(error),
            },
            Err(e) => e,
        }
    }

    fn begin(
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

    /// The run's changes, before any is applied.
    fn plan(&mut self, run: RunId, elements: &[Element]) -> Result<(), JournalError> {
        let tx = self.conn.transaction().map_err(JournalError::db("record a plan"))?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO elements (run, seq, model_type, key, parent_type, parent_key, identifiers,
                     action, outcome, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(JournalError::db("record a plan"))?;
            let pending = json(&Outcome::Pending);
            for e in elements {
                insert
                    .execute(params![
                        run.0,
                        e.seq,
                        e.model_type,
                        e.key,
                        e.parent.as_ref().map(|p| &p.0),
                        e.parent.as_ref().map(|p| &p.1),
                        json(&e.identifiers),
                        e.action.as_str(),
                        pending,
                        e.before.as_ref().map(json),
                        e.after.as_ref().map(json),
                    ])
                    .map_err(JournalError::db("record a plan"))?;
            }
        }
        tx.commit().map_err(JournalError::db("record a plan"))
    }

    /// Each change's outcome, from the report.
    fn outcomes(&mut self, run: RunId, elements: &[Element], report: &SyncReport) -> Result<(), JournalError> {
        let seq: HashMap<(&str, &str), u32> = elements
            .iter()
            .map(|e| ((e.model_type.as_str(), e.key.as_str()), e.seq))
            .collect();
        let tx = self.conn.transaction().map_err(JournalError::db("record outcomes"))?;
        {
            let mut update = tx
                .prepare("UPDATE elements SET outcome = ?3 WHERE run = ?1 AND seq = ?2")
                .map_err(JournalError::db("record outcomes"))?;
            for r in &report.elements {
                if let Some(s) = seq.get(&(r.model_type.as_str(), r.key.as_str())) {
                    update
                        .execute(params![run.0, s, json(&r.outcome)])
                        .map_err(JournalError::db("record outcomes"))?;
                }
            }
        }
        tx.commit().map_err(JournalError::db("record outcomes"))
    }

    fn finish(
        &mut self,
        run: RunId,
        result: RunResult,
        error: Option<&str>,
        report: Option<&SyncReport>,
        phases: &[(String, f64)],
    ) -> Result<(), JournalError> {
        self.conn
            .execute(
                "UPDATE runs SET ended_ms = ?2, result = ?3, error = ?4, totals = ?5, phases = ?6, peak_memory = ?7
                 WHERE id = ?1",
                params![
                    run.0,
                    now_ms() as i64,
                    result.as_str(),
                    error,
                    report.map(|r| json(&r.totals())),
                    json(&phases),
                    peak_memory().map(|m| m as i64),
                ],
            )
            .map_err(JournalError::db("record a run's end"))?;
        Ok(())
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

    /// A run's changes, in order.
    pub fn elements(&self, run: RunId) -> Result<Vec<Element>, JournalError> {
        let mut query = self
            .conn
            .prepare(&format!("{ELEMENT_COLUMNS} WHERE run = ?1 ORDER BY seq"))
            .map_err(JournalError::db("read a run's changes"))?;
        let rows = query
            .query_map([run.0], read_element)
            .map_err(JournalError::db("read a run's changes"))?;
        rows.map(|r| {
            r.map_err(JournalError::db("read a run's changes"))?
                .map_err(|message| JournalError::Corrupt { run, message })
        })
        .collect()
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
        let mut query = self
            .conn
            .prepare(
                "SELECT e.run, e.seq, e.model_type, e.key, e.parent_type, e.parent_key, e.identifiers, e.action,
                        e.outcome, e.before, e.after, r.started_ms, r.mode, r.source, r.target, r.dry_run
                 FROM elements e JOIN runs r ON r.id = e.run
                 WHERE e.model_type = ?1 AND e.key = ?2 ORDER BY e.run, e.seq",
            )
            .map_err(JournalError::db("read a key's history"))?;
        let rows = query
            .query_map([model_type, key], |row| {
                let element = read_element(row)?;
                Ok((
                    RunId(row.get(0)?),
                    element,
                    row.get::<_, i64>(11)? as u64,
                    row.get::<_, String>(12)?,
                    row.get::<_, String>(13)?,
                    row.get::<_, String>(14)?,
                    row.get::<_, bool>(15)?,
                ))
            })
            .map_err(JournalError::db("read a key's history"))?;
        let mut events = Vec::new();
        for row in rows {
            let (run, element, started_ms, mode, source, target, dry_run) =
                row.map_err(JournalError::db("read a key's history"))?;
            let corrupt = |message: String| JournalError::Corrupt { run, message };
            events.push(KeyEvent {
                run,
                started_ms,
                mode: Mode::parse(&mode).ok_or_else(|| corrupt(format!("unknown mode {mode:?}")))?,
                source,
                target,
                dry_run,
                element: element.map_err(corrupt)?,
            });
        }
        Ok(events)
    }

    /// Drops the runs `keep` does not keep, with their changes; how many.
    pub fn retain(&mut self, keep: Retention) -> Result<usize, JournalError> {
        let n = match keep {
            Retention::Runs(n) => self.conn.execute(
                "DELETE FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY id DESC LIMIT ?1)",
                [n as i64],
            ),
            Retention::MaxAgeMs(age) => self.conn.execute(
                "DELETE FROM runs WHERE started_ms < ?1",
                [now_ms().saturating_sub(age) as i64],
            ),
        };
        n.map_err(JournalError::db("drop old runs"))
    }
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

const ELEMENT_COLUMNS: &str = "SELECT run, seq, model_type, key, parent_type, parent_key, identifiers, action,
    outcome, before, after FROM elements";

fn read_element(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Element, String>> {
    let parent_type: Option<String> = row.get(4)?;
    let parent_key: Option<String> = row.get(5)?;
    let identifiers: String = row.get(6)?;
    let action: String = row.get(7)?;
    let outcome: String = row.get(8)?;
    let before: Option<String> = row.get(9)?;
    let after: Option<String> = row.get(10)?;
    let (seq, model_type, key): (u32, String, String) = (row.get(1)?, row.get(2)?, row.get(3)?);
    let element = || -> Result<Element, String> {
        let attrs = |text: Option<String>| -> Result<_, String> {
            text.map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| e.to_string())
        };
        Ok(Element {
            seq,
            model_type,
            key,
            parent: parent_type.zip(parent_key),
            identifiers: serde_json::from_str(&identifiers).map_err(|e| e.to_string())?,
            action: serde_json::from_value(serde_json::Value::String(action)).map_err(|e| e.to_string())?,
            outcome: serde_json::from_str(&outcome).map_err(|e| e.to_string())?,
            before: attrs(before)?,
            after: attrs(after)?,
        })
    };
    Ok(element())
}
