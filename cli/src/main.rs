//! `diffsync`: diff, sync, history and rollback of the systems a config
//! file names, without writing Rust. Every sync and rollback is recorded in
//! the config's journal.
//!
//! Exit codes: 0 done (and, for `diff`, no differences); 1 an error
//! stopped the command (its message names the file, system, model or
//! key); 2 the arguments are wrong; 3 `diff` found differences; 4 a run
//! had changes that failed; 5 conflicts: a reconcile left some unapplied,
//! or a rollback left changes alone.
#![warn(missing_docs)]

/// Writes to standard output; a failed write (a closed pipe: `diffsync
/// diff a b | head`) is an error the command returns, and `main` ends
/// quietly on a closed pipe instead of panicking as `println!` does.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}
/// [`say!`] without the line's end.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}
pub(crate) use say;

mod charts;
mod config;
mod pages;
mod serve;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use diffsync::{AdapterExt, Chain, Options, Outcome, Totals};
use diffsync_journal::{RunFilter, RunId};

use crate::config::{Config, System, with_system};

/// Differences found (`diff`).
const DIFFERENCES: u8 = 3;
/// A run had changes that failed.
const FAILURES: u8 = 4;
/// A reconcile left conflicts unapplied, or a rollback left changes alone.
const CONFLICTS: u8 = 5;

#[derive(Parser)]
#[command(
    name = "diffsync",
    version,
    about = "Compare and synchronize the systems a config file names",
    after_help = "Exit codes: 0 done (diff: no differences), 1 an error stopped it, 2 wrong arguments, \
                  3 diff found differences, 4 a run had changes that failed, \
                  5 a reconcile left conflicts or a rollback left changes alone.\n\n\
                  Example: diffsync -c diffsync.toml diff cmdb network --format table"
)]
struct Cli {
    /// The config file (TOML, or YAML by its extension); before or after
    /// the command.
    #[arg(short, long, global = true, default_value = "diffsync.toml")]
    config: PathBuf,
    /// No progress bars (they are shown only on a terminal anyway).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What would change in TARGET to make it look like SOURCE.
    #[command(after_help = "Example: diffsync diff cmdb network --type device --format table")]
    Diff {
        /// The system read.
        source: String,
        /// The system compared.
        target: String,
        /// How to print it: text (a tree), json, table.
        #[arg(long, value_enum, default_value_t = Shown::Text)]
        format: Shown,
        /// Only these model types (repeatable); a type's children are
        /// shown under it as in the whole diff.
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// Only this model and its subtree (repeatable): its key as diffsync
        /// prints it, `TYPE:KEY` (`site:nyc`, `device:nyc__r1`).
        #[arg(long = "key", value_name = "TYPE:KEY")]
        keys: Vec<String>,
        /// Compare by key ranges inside the databases, reading out only
        /// the rows that differ: auto (when a system is SQLite or
        /// PostgreSQL; a file on the other side is loaded), always (an
        /// error otherwise), never (load both).
        #[arg(long, value_enum, default_value_t = Ranges::Auto)]
        ranges: Ranges,
    },
    /// Makes TARGET look like SOURCE, through its writes, and records the run.
    #[command(after_help = "Example: diffsync sync cmdb network --dry-run")]
    Sync {
        /// The system read.
        source: String,
        /// The system written.
        target: String,
        /// Plan only: write nothing (the journal too, unless --record).
        #[arg(long)]
        dry_run: bool,
        /// Keep a dry run's plan in the journal.
        #[arg(long, requires = "dry_run")]
        record: bool,
        /// Find what differs by key ranges inside the databases, and write
        /// only that: auto (when TARGET is SQLite or PostgreSQL), always,
        /// never (load both).
        #[arg(long, value_enum, default_value_t = Ranges::Auto)]
        ranges: Ranges,
        /// Let a SOURCE that holds nothing empty a TARGET that holds
        /// models (refused by default: a source that failed to load looks
        /// the same).
        #[arg(long)]
        allow_empty_source: bool,
        /// Refuse, before writing anything, a sync that would delete more
        /// than this share (0 to 1) of TARGET's models.
        #[arg(long, value_name = "SHARE")]
        max_delete_share: Option<f64>,
        /// A TARGET file that does not exist yet is created (refused by
        /// default: a mistyped path looks the same).
        #[arg(long)]
        create_target: bool,
    },
    /// Two-way: what changed on one side since the last reconcile goes to
    /// the other; what changed on both is a conflict for the strategy. The
    /// base (what both held after the last run) is kept beside the config.
    #[command(after_help = "Example: diffsync reconcile cmdb network --strategy left-wins")]
    Reconcile {
        /// One side.
        left: String,
        /// The other side.
        right: String,
        /// How conflicts are decided: safe (leave both, report), left-wins,
        /// right-wins, newest(FIELD, SKEW), highest(FIELD), merge(FALLBACK).
        #[arg(long, default_value = "safe")]
        strategy: String,
        /// Plan only: write nothing to either side or the base.
        #[arg(long)]
        dry_run: bool,
        /// Refuse, before writing anything, a run that would delete more
        /// than this share (0 to 1) of either side's models (default 0.5;
        /// 1 lets any share through).
        #[arg(long, value_name = "SHARE", default_value_t = 0.5)]
        max_delete_share: f64,
    },
    /// Keeps TARGET like SOURCE as SOURCE changes (the loop): each change
    /// to SOURCE, by any writer, is synced; a full pass at the start, every
    /// ANTI_ENTROPY seconds and at the --schedule times repairs what a feed
    /// missed (and what was changed in TARGET). Every pass is recorded in
    /// the journal. Runs until stopped (Ctrl-C).
    #[command(after_help = "Example: diffsync watch cmdb network --anti-entropy 300")]
    Watch {
        /// The system followed.
        source: String,
        /// The system kept in step.
        target: String,
        #[command(flatten)]
        passes: watch::Passes,
    },
    /// The recorded runs, newest first.
    #[command(after_help = "Example: diffsync runs --system network --result failed --since 2026-12-01")]
    Runs {
        /// Only runs that read or wrote this system.
        #[arg(long)]
        system: Option<String>,
        /// Only runs of this kind.
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Only runs that ended this way.
        #[arg(long, value_enum)]
        result: Option<ResultArg>,
        /// Only runs started on or after this day (YYYY-MM-DD, UTC) or
        /// time (RFC 3339).
        #[arg(long, value_name = "WHEN", value_parser = since)]
        since: Option<u64>,
        /// Only runs whose systems, runner (user@host), options or error
        /// contain this text.
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// How to print them: text (a line each), json (a JSON object a
        /// line, the journal's record).
        #[arg(long, value_enum, default_value_t = Listed::Text)]
        format: Listed,
    },
    /// Checks the config (its model declarations, each named by its line)
    /// and that every system reads as declared, writing to none: a
    /// database's tables and columns, a file parsed, a Redis store reached.
    /// Exits 1 if any is not.
    #[command(after_help = "Example: diffsync check -c diffsync.toml")]
    Check,
    /// Drops recorded runs (with their changes): all but the newest
    /// --keep, or those started more than --older-than days ago.
    #[command(after_help = "Example: diffsync prune --older-than 30")]
    Prune {
        /// Keep the newest this many runs.
        #[arg(long, conflicts_with = "older_than", required_unless_present = "older_than")]
        keep: Option<usize>,
        /// Drop the runs started more than this many days ago.
        #[arg(long, value_name = "DAYS")]
        older_than: Option<f64>,
    },
    /// One recorded run, with each change and its outcome.
    #[command(after_help = "Example: diffsync show 3 --limit 50")]
    Show {
        /// The run's number.
        run: i64,
        /// At most this many changes (the run's line says how many there are).
        #[arg(long)]
        limit: Option<usize>,
        /// How to print it: text, json (the run's record, then a JSON
        /// object a change).
        #[arg(long, value_enum, default_value_t = Listed::Text)]
        format: Listed,
    },
    /// Every recorded change to one model, oldest first.
    #[command(after_help = "Example: diffsync history site nyc --format json")]
    History {
        /// The model type.
        model_type: String,
        /// The model's key, as diffsync prints it (`nyc__r1`; a value that
        /// could be misread is quoted, `nyc__"100"`, or not: the type's
        /// identifiers tell).
        key: String,
        /// How to print it: text, json (a JSON object a change).
        #[arg(long, value_enum, default_value_t = Listed::Text)]
        format: Listed,
    },
    /// The dashboard (systems, runs, a run's changes, a key's history, the
    /// loops, rollback previews) and the Prometheus metrics at /metrics.
    /// Read-only unless --allow-writes.
    #[command(after_help = "Example: diffsync serve --listen 127.0.0.1:8480 --watch cmdb:network")]
    Serve {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8480")]
        listen: std::net::SocketAddr,
        /// Let a page roll a run back (after its preview and a confirmation).
        /// Off loopback this needs --token-file.
        #[arg(long)]
        allow_writes: bool,
        /// A file holding the credential a browser gives (as the password
        /// of HTTP basic authentication) to roll a run back; required for
        /// --allow-writes when listening off loopback.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// A host name the dashboard is reached by (repeatable): any other
        /// name in a request's Host header is refused, against DNS
        /// rebinding. The listen address (and localhost on loopback) and,
        /// listening on all addresses, any IP literal are always taken.
        #[arg(long, value_name = "NAME")]
        allow_host: Vec<String>,
        /// Runs the loop that keeps TARGET like SOURCE and shows its status
        /// (repeatable).
        #[arg(long, value_name = "SOURCE:TARGET", value_parser = pair)]
        watch: Vec<(String, String)>,
        #[command(flatten)]
        passes: watch::Passes,
    },
    /// Undoes a recorded run where its target still holds what it wrote.
    #[command(after_help = "Example: diffsync rollback 3 --dry-run")]
    Rollback {
        /// The run's number.
        run: i64,
        /// Plan only: say what would be undone.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask (on a terminal, rollback asks before it writes).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// How a list is printed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Listed {
    /// A line each, tab-separated.
    Text,
    /// A JSON object a line.
    Json,
}

/// A kind of run, as `runs --mode` takes it.
#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// diff and sync.
    OneWay,
    /// reconcile.
    TwoWay,
    /// A loop's pass.
    Batch,
    /// rollback.
    Rollback,
}

/// How a run ended, as `runs --result` takes it.
#[derive(Clone, Copy, ValueEnum)]
enum ResultArg {
    /// Every change applied.
    Succeeded,
    /// Some changes did not apply.
    Partial,
    /// It stopped with an error.
    Failed,
    /// Not ended.
    Unfinished,
}

/// `--since`: a day or an RFC 3339 time, as ms since the epoch.
pub(crate) fn since(text: &str) -> Result<u64, String> {
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_millis())
        })
        .map_err(|_| format!("{text:?} is no day (YYYY-MM-DD) nor RFC 3339 time"))?;
    u64::try_from(at).map_err(|_| format!("{text:?} is before 1970"))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Ranges {
    /// By ranges when both systems are SQL databases.
    Auto,
    /// By ranges, or an error.
    Always,
    /// Load both systems and diff them.
    Never,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shown {
    /// The diff's tree, as the library renders it.
    Text,
    /// The diff serialized (for scripts).
    Json,
    /// One row per changed attribute: action, type, key, attribute, the
    /// value in the source and in the target.
    Table,
}

/// `SOURCE:TARGET`, two system names.
fn pair(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((source, target)) if !source.is_empty() && !target.is_empty() => Ok((source.into(), target.into())),
        _ => Err(format!("{s:?} is not SOURCE:TARGET")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`| head`): nothing more to say.
        Err(e) if closed_pipe(&*e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("diffsync: {}", Chain(&*e));
            if let Some(hint) = hint(&*e) {
                eprintln!("diffsync: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The flag that lets a refused run proceed, in the command line's terms.
fn hint(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next = Some(e);
    while let Some(e) = next {
        let adapter = e
            .downcast_ref::<diffsync_adapters::AdapterError>()
            .or_else(|| e.downcast_ref::<Box<diffsync_adapters::AdapterError>>().map(|b| &**b));
        if let Some(diffsync_adapters::AdapterError::NotFound { .. }) = adapter {
            return Some("to create a target file that does not exist yet, add --create-target to sync");
        }
        let error = e
            .downcast_ref::<diffsync::Error>()
            .or_else(|| e.downcast_ref::<Box<diffsync::Error>>().map(|b| &**b));
        let sync = match error {
            Some(diffsync::Error::Sync(err)) => Some(err),
            _ => e.downcast_ref::<diffsync::SyncError>(),
        };
        if let Some(err) = sync {
            match err {
                diffsync::SyncError::EmptySource { .. } => {
                    return Some("to empty the target on purpose, add --allow-empty-source");
                }
                diffsync::SyncError::TooManyDeletes { .. } => {
                    return Some("to delete that many on purpose, raise --max-delete-share");
                }
                _ => {}
            }
        }
        next = e.source();
    }
    None
}

/// Whether an error is (or was caused by) a write to a closed pipe.
fn closed_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        next = e.source();
    }
    false
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The diff of two systems by key ranges inside their databases
/// ([`diffsync_adapters::ranges`]), when `ranges` allows it and the
/// target is an SQL database that holds its tables (or, with
/// `memory_target`, the source is): the other side, if it is no
/// database (a file), is loaded and compared from memory. With `auto`,
/// anything else (two files, a database not made yet) is `None`: the
/// caller loads both. Says on stderr what it read.
fn range_diff(
    config: &Config,
    progress: &Progress,
    source: &str,
    target: &str,
    ranges: Ranges,
    memory_target: bool,
) -> Result<Option<diffsync_adapters::ranges::RangeDiff>, Failure> {
    let tables = |name: &str| match config.range_tables(name) {
        Err(_) if ranges == Ranges::Auto => Ok(None),
        other => other,
    };
    let pair = match ranges {
        Ranges::Never => None,
        _ => match (tables(source)?, tables(target)?) {
            (Some(s), Some(t)) => Some((s, t)),
            (None, Some(t)) => Some((config.memory_tables(source)?, t)),
            (Some(s), None) if memory_target => Some((s, config.memory_tables(target)?)),
            _ => None,
        },
    };
    let Some((mut s, mut t)) = pair else {
        if ranges == Ranges::Always {
            return Err(format!(
                "--ranges always: {source:?} or {target:?} (the target, for a sync) must be a SQLite or PostgreSQL system"
            )
            .into());
        }
        return Ok(None);
    };
    let mut shown = progress.ranges();
    let found = diffsync_adapters::ranges::range_diff_with(&mut s, &mut t, &Default::default(), &mut shown)?;
    progress.done();
    let stats = found.stats;
    if stats.joined > 0 {
        eprintln!(
            "compared by joins inside the database: {} queries, {} tables joined, {} rows read ({})",
            stats.queries,
            stats.joined,
            stats.rows_read,
            indicatif::HumanBytes(stats.bytes_read)
        );
    } else {
        let kept = match stats.kept_hashes {
            0 => String::new(),
            n => format!(", {n} tables' row hashes read as kept"),
        };
        eprintln!(
            "compared by key ranges: {} queries, {} ranges, {} rows read{kept}, {} read in all",
            stats.queries,
            stats.ranges,
            stats.rows_read,
            indicatif::HumanBytes(stats.bytes_read)
        );
    }
    Ok(Some(found))
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let config = Config::load(&cli.config)?;
    let progress = Progress::new(cli.quiet);
    let open = |name: &str| progress.loading(name, || config.open(name));
    match cli.command {
        Command::Diff {
            source,
            target,
            format,
            types,
            keys,
            ranges,
        } => {
            for t in &types {
                config.key_type(t)?;
            }
            let keys = keys
                .iter()
                .map(|k| match k.split_once(':') {
                    Some((t, text)) => config.key(t, text),
                    None => Err(config::ConfigError::Key {
                        message: format!("--key {k:?}: a key is TYPE:KEY, as diffsync prints it (site:nyc)"),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let by_ranges = range_diff(&config, &progress, &source, &target, ranges, true)?;
            let diff = match by_ranges {
                // The database was compared whole: the keys' subtrees are
                // picked out of its diff.
                Some(found) if !keys.is_empty() => found.diff.only_keys(&keys),
                Some(found) => found.diff,
                None => {
                    let (source, target) = (open(&source)?, open(&target)?);
                    let mut report = progress.reporter();
                    let mut opts = Options::new().progress(&mut report);
                    if !keys.is_empty() {
                        opts = opts.part(&keys);
                    }
                    let diff = with_system!(&target, t => with_system!(&source, s => t.diff_from_with(s, &mut opts)))?;
                    progress.done();
                    diff
                }
            };
            let diff = if types.is_empty() {
                diff
            } else {
                let types: Vec<&str> = types.iter().map(String::as_str).collect();
                diff.only_types(&types)
            };
            match format {
                Shown::Text if diff.has_diffs() => say!("{diff}"),
                Shown::Text => say!("no differences"),
                Shown::Json => say!("{}", serde_json::to_string_pretty(&diff)?),
                Shown::Table => say_raw!("{}", table(&diff, coloured())),
            }
            eprintln!("{}", diff.summary());
            Ok(if diff.has_diffs() { DIFFERENCES } else { 0 })
        }
        Command::Sync {
            source,
            target,
            dry_run,
            record,
            ranges,
            allow_empty_source,
            max_delete_share,
            create_target,
        } => {
            if let Some(share) = max_delete_share
                && !(0.0..=1.0).contains(&share)
            {
                return Err(format!("--max-delete-share {share}: a share from 0 to 1").into());
            }
            // By ranges, the sync runs between the two images the range
            // diff read: the target opened on its image (nothing else of it
            // loaded), written through its own statements. The empty-source
            // rail is the whole tables'.
            let by_ranges = match range_diff(&config, &progress, &source, &target, ranges, false)? {
                Some(found) if found.stats.source_rows > 0 || found.stats.target_rows == 0 => Some(found),
                _ => None,
            };
            let (source, mut target, whole) = match by_ranges {
                Some(found) => {
                    // The delete rail is the whole target's, not its image's.
                    let (deletes, models) = (found.diff.summary().delete, found.stats.target_rows);
                    if let Some(share) = max_delete_share
                        && deletes > 0
                        && deletes as f64 > share * models as f64
                    {
                        return Err(format!(
                            "stopped before writing: {deletes} of {models} models of {target:?} would be deleted \
                             (more than {share} of them); raise --max-delete-share if this is intended"
                        )
                        .into());
                    }
                    let image = config.open_image(&target, found.target)?.ok_or("not an SQL system")?;
                    let read = diffsync::MemoryAdapter::with_store(source.clone(), &[], found.source);
                    (System::Local(Box::new(read)), image, false)
                }
                None => (
                    open(&source)?,
                    progress.loading(&target, || config.open_target(&target, create_target))?,
                    true,
                ),
            };
            let mut report = progress.reporter();
            let mut opts = Options::new()
                .dry_run(dry_run)
                .allow_empty_source(allow_empty_source || !whole)
                .max_delete_share(max_delete_share.filter(|_| whole))
                .progress(&mut report);
            // A dry run is journaled only when asked: a plan is no run.
            let (run, report) = if dry_run && !record {
                let report =
                    with_system!(&mut target, t => with_system!(&source, s => t.sync_from_with(s, &mut opts)))?;
                ("plan (not recorded)".to_string(), report)
            } else {
                let mut journal = config.journal()?;
                let (run, report) =
                    with_system!(&mut target, t => with_system!(&source, s => journal.sync(t, s, &mut opts)))?;
                (run.to_string(), report)
            };
            progress.done();
            say!("{run}: {}", counts(&report.totals()));
            let usual = |o: &Outcome| matches!(o, Outcome::Applied | Outcome::Planned | Outcome::Unchanged);
            for e in report.elements.iter().filter(|e| !usual(&e.outcome)) {
                say!(
                    "  {} {} {}: {}",
                    e.action.as_str(),
                    e.model_type(),
                    e.key.unique_id(),
                    e.outcome
                );
            }
            Ok(if report.is_success() { 0 } else { FAILURES })
        }
        Command::Reconcile {
            left,
            right,
            strategy,
            dry_run,
            max_delete_share,
        } => {
            if !(0.0..=1.0).contains(&max_delete_share) {
                return Err(format!("--max-delete-share {max_delete_share}: a share from 0 to 1").into());
            }
            let strategy = diffsync::bidir::Strategy::parse(&strategy)?;
            let base_file = config.base_path(&left, &right);
            let (mut left, mut right) = (open(&left)?, open(&right)?);
            let mut base = diffsync::bidir::Base::load(&base_file, left.local())?;
            let saved = std::sync::Arc::new(std::sync::Mutex::new(diffsync::bidir::BaseFile(base_file)));
            let opts = diffsync::bidir::BiOptions::new()
                .strategy(strategy)
                .dry_run(dry_run)
                .max_delete_share((max_delete_share < 1.0).then_some(max_delete_share))
                .save_to(saved);
            let mut journal = config.journal()?;
            let (run, report) =
                with_system!(&mut left, l => with_system!(&mut right, r => journal.reconcile(l, r, &mut base, &opts)))?;
            say!("{run}: {report}");
            Ok(
                if report.stopped().is_some() || !report.to_left.is_success() || !report.to_right.is_success() {
                    FAILURES
                } else if !report.is_clean() {
                    CONFLICTS
                } else {
                    0
                },
            )
        }
        Command::Watch { source, target, passes } => watch::print(&config, &source, &target, &passes),
        Command::Serve {
            listen,
            allow_writes,
            token_file,
            allow_host,
            watch,
            passes,
        } => serve::serve(
            config,
            serve::ServeOptions {
                listen,
                allow_writes,
                token_file,
                allow_host,
                watch,
                passes,
            },
        ),
        Command::Runs {
            system,
            mode,
            result,
            since,
            search,
            limit,
            format,
        } => {
            use diffsync_journal::{Mode, RunResult};
            let journal = config.journal()?;
            let filter = RunFilter {
                system,
                mode: mode.map(|m| match m {
                    ModeArg::OneWay => Mode::OneWay,
                    ModeArg::TwoWay => Mode::TwoWay,
                    ModeArg::Batch => Mode::Batch,
                    ModeArg::Rollback => Mode::Rollback,
                }),
                result: result.map(|r| match r {
                    ResultArg::Succeeded => RunResult::Succeeded,
                    ResultArg::Partial => RunResult::Partial,
                    ResultArg::Failed => RunResult::Failed,
                    ResultArg::Unfinished => RunResult::Unfinished,
                }),
                since_ms: since,
                text: search,
                limit: Some(limit),
                ..RunFilter::default()
            };
            let runs = journal.runs(&filter)?;
            for unreadable in &runs.unreadable {
                eprintln!("diffsync: {}", diffsync::Chain(unreadable));
            }
            for run in runs {
                if format == Listed::Json {
                    say!("{}", serde_json::to_string(&run)?);
                    continue;
                }
                let totals = run.totals.as_ref().map(counts).unwrap_or_default();
                say!(
                    "{}\t{}\t{}\t{} -> {}\t{}{}\t{totals}",
                    run.id.0,
                    pages::when(run.started_ms),
                    run.mode.as_str(),
                    run.source,
                    run.target,
                    run.result.as_str(),
                    if run.dry_run { " (dry run)" } else { "" },
                );
            }
            Ok(0)
        }
        Command::Check => {
            let mut problems = 0;
            let names: Vec<(String, String)> = config.systems().map(|(n, w)| (n.to_string(), w)).collect();
            for (name, what) in names {
                match config.check(&name) {
                    Ok(note) => say!("ok\t{name}\t{what}: {note}"),
                    Err(e) => {
                        problems += 1;
                        say!("problem\t{name}\t{what}: {}", Chain(&e));
                    }
                }
            }
            if problems > 0 {
                return Err(format!(
                    "{problems} system{} cannot be read as declared",
                    if problems == 1 { "" } else { "s" }
                )
                .into());
            }
            Ok(0)
        }
        Command::Prune { keep, older_than } => {
            let mut journal = config.journal()?;
            let keep = match (keep, older_than) {
                (Some(n), _) => diffsync_journal::Retention::Runs(n),
                (None, Some(days)) if days >= 0.0 => {
                    diffsync_journal::Retention::MaxAgeMs((days * 86_400_000.0) as u64)
                }
                _ => return Err("--older-than takes a number of days, 0 or more".into()),
            };
            let dropped = journal.retain(keep)?;
            say!("dropped {dropped} run{}", if dropped == 1 { "" } else { "s" });
            Ok(0)
        }
        Command::Show { run, limit, format } => {
            let journal = config.journal()?;
            let recorded = journal.run(RunId(run))?;
            // Only the changes shown are read (a run's chunks hold them).
            let limit = limit.map_or(u32::MAX, |l| u32::try_from(l).unwrap_or(u32::MAX));
            let elements = journal.elements_page(RunId(run), 0, limit)?;
            let total = journal.action_counts(RunId(run))?.total();
            if format == Listed::Json {
                say!("{}", serde_json::to_string(&recorded)?);
                for e in &elements {
                    say!("{}", serde_json::to_string(e)?);
                }
                return Ok(0);
            }
            let shown = elements.len();
            say!(
                "{}: {} {} -> {}, {}, started {}{}, {} change{}{}{}",
                recorded.id,
                recorded.mode.as_str(),
                recorded.source,
                recorded.target,
                recorded.result.as_str(),
                pages::when(recorded.started_ms),
                recorded.who.as_deref().map(|w| format!(" by {w}")).unwrap_or_default(),
                total,
                if total == 1 { "" } else { "s" },
                if shown < total {
                    format!(" (the first {shown} shown)")
                } else {
                    String::new()
                },
                recorded.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            );
            for e in elements {
                say!(
                    "  {} {} {}\t{}\t{}",
                    e.action.as_str(),
                    e.model_type(),
                    e.key.unique_id(),
                    e.outcome,
                    changes(&e)
                );
            }
            Ok(0)
        }
        Command::History {
            model_type,
            key,
            format,
        } => {
            let key = config.key(&model_type, &key)?;
            let journal = config.journal()?;
            let events = journal.history(&key)?;
            if events.is_empty() && format == Listed::Text {
                say!("no recorded change to {key}");
            }
            for event in events {
                if format == Listed::Json {
                    say!("{}", serde_json::to_string(&event)?);
                    continue;
                }
                say!(
                    "{}\t{}\t{} -> {}\t{}\t{}\t{}",
                    event.run,
                    pages::when(event.started_ms),
                    event.source,
                    event.target,
                    event.element.action.as_str(),
                    event.element.outcome,
                    changes(&event.element)
                );
            }
            Ok(0)
        }
        Command::Rollback { run, dry_run, yes } => {
            use std::io::IsTerminal;
            let mut journal = config.journal()?;
            let recorded = journal.run(RunId(run))?;
            let mut target = open(&recorded.target)?;
            if !dry_run && !yes && std::io::stdin().is_terminal() {
                let preview = with_system!(&mut target, t => journal.rollback_preview(RunId(run), t))?;
                let (writes, left) = (preview.report.totals().planned, preview.conflicts.len());
                eprint!(
                    "roll back {} in {:?}: {writes} change{} to undo{}? [y/N] ",
                    recorded.id,
                    recorded.target,
                    if writes == 1 { "" } else { "s" },
                    if left > 0 {
                        format!(", {left} left alone")
                    } else {
                        String::new()
                    }
                );
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    say!("not rolled back");
                    return Ok(0);
                }
            }
            let undo = with_system!(&mut target, t => journal.rollback(RunId(run), t, dry_run))?;
            let run = undo
                .run
                .map_or_else(|| "nothing to undo".to_string(), |r| r.to_string());
            say!("{run}: {}", counts(&undo.report.totals()));
            for c in &undo.conflicts {
                say!("  left alone: {} {}: {}", c.model_type(), c.key.unique_id(), c.reason);
            }
            Ok(if !undo.conflicts.is_empty() {
                CONFLICTS
            } else if undo.report.is_success() {
                0
            } else {
                FAILURES
            })
        }
    }
}

/// Whether output is coloured: on a terminal, unless `NO_COLOR` is set
/// (to anything but the empty string, as no-color.org says).
fn coloured() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A diff as a table, one row per changed attribute (a create's or a
/// delete's every attribute), columns aligned; with `colour`, each row in
/// its action's colour (creates green, updates yellow, deletes red).
fn table(diff: &diffsync::Diff, colour: bool) -> String {
    let shown = |v: Option<&serde_json::Value>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let mut rows = vec![["ACTION", "TYPE", "KEY", "ATTRIBUTE", "SOURCE", "TARGET"].map(String::from)];
    for (e, _) in diff.iter().filter(|(e, _)| e.action != diffsync::Action::NoChange) {
        let row = |attribute: &str, source: String, target: String| {
            [
                e.action.as_str().to_string(),
                e.model_type().to_string(),
                e.unique_id().to_string(),
                attribute.to_string(),
                source,
                target,
            ]
        };
        let mut attrs: Vec<[String; 6]> = match e.action {
            diffsync::Action::Update => e
                .changes
                .iter()
                .map(|c| row(&c.name, shown(Some(&c.new)), shown(Some(&c.old))))
                .collect(),
            _ => {
                let (side, other) = match e.action {
                    diffsync::Action::Create => (&e.source_attrs(), &e.dest_attrs()),
                    _ => (&e.dest_attrs(), &e.source_attrs()),
                };
                side.iter()
                    .flat_map(|a| a.iter())
                    .map(|(name, v)| {
                        let (here, there) = (shown(Some(v)), shown(other.as_ref().and_then(|o| o.get(name))));
                        match e.action {
                            diffsync::Action::Create => row(name, here, there),
                            _ => row(name, there, here),
                        }
                    })
                    .collect()
            }
        };
        if attrs.is_empty() {
            attrs.push(row("", String::new(), String::new()));
        }
        rows.extend(attrs);
    }
    let mut widths = [0; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:w$}")).collect();
        let line = line.join("  ");
        let paint = match row[0].as_str() {
            _ if !colour => None,
            "create" => Some("32"),
            "update" => Some("33"),
            "delete" => Some("31"),
            _ => None,
        };
        match paint {
            Some(code) => out.push_str(&format!("\x1b[{code}m{}\x1b[0m", line.trim_end())),
            None => out.push_str(line.trim_end()),
        }
        out.push('\n');
    }
    out
}

/// A run's counts, the non-zero ones.
pub(crate) fn counts(t: &Totals) -> String {
    let all = [
        ("applied", t.applied),
        ("planned", t.planned),
        ("failed", t.failed),
        ("soft-failed", t.soft_failed),
        ("rolled back", t.rolled_back),
        ("unknown", t.unknown),
        ("skipped", t.skipped),
    ];
    let shown: Vec<String> = all
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what} {n}"))
        .collect();
    if shown.is_empty() {
        "nothing to do".into()
    } else {
        shown.join(", ")
    }
}

/// What a recorded change changed: `field: before -> after`, `-` for none.
pub(crate) fn changes(e: &diffsync_journal::Element) -> String {
    let shown = |v: &Option<serde_json::Value>| v.as_ref().map_or_else(|| "-".to_string(), |v| v.to_string());
    e.changed()
        .iter()
        .map(|(name, before, after)| format!("{name}: {} -> {}", shown(before), shown(after)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Progress bars on standard error when it is a terminal (and not
/// `--quiet`): a spinner while a system loads, a bar while a diff and a
/// sync go. Nothing when piped.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        use std::io::IsTerminal;
        let shown = !quiet && std::io::stderr().is_terminal();
        Progress {
            bar: shown.then(indicatif::ProgressBar::hidden),
        }
    }

    /// `open`, with a spinner naming `name` meanwhile.
    fn loading<T>(&self, name: &str, open: impl FnOnce() -> T) -> T {
        let Some(bar) = &self.bar else {
            return open();
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(indicatif::ProgressStyle::default_spinner());
        bar.set_message(format!("loading {name}"));
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        let opened = open();
        bar.disable_steady_tick();
        bar.finish_and_clear();
        opened
    }

    /// A callback for the core's progress reports, drawing them as a bar.
    fn reporter(&self) -> impl FnMut(diffsync::Progress) + use<> {
        let bar = self.bar.clone();
        let mut stage = None;
        move |p: diffsync::Progress| {
            let Some(bar) = &bar else { return };
            if stage != Some(p.stage) {
                stage = Some(p.stage);
                bar.reset();
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                let style = indicatif::ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                bar.set_style(style.progress_chars("=> "));
                bar.set_message(match p.stage {
                    diffsync::Stage::Diff => "diff",
                    _ => "sync",
                });
            }
            bar.set_length(p.total as u64);
            bar.set_position(p.current as u64);
        }
    }

    /// A callback for a range diff's progress, drawn as a spinner with
    /// what it compared and read so far.
    fn ranges(&self) -> impl FnMut(&diffsync_adapters::ranges::RangeStats) + use<> {
        let bar = self.bar.clone();
        let mut started = false;
        move |s| {
            let Some(bar) = &bar else { return };
            if !started {
                started = true;
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_style(indicatif::ProgressStyle::default_spinner());
                bar.enable_steady_tick(std::time::Duration::from_millis(100));
            }
            bar.set_message(format!(
                "comparing by key ranges: {} ranges, {} rows read of {} and {} ({})",
                s.ranges,
                s.rows_read,
                s.source_rows,
                s.target_rows,
                indicatif::HumanBytes(s.bytes_read)
            ));
        }
    }

    /// Clears the bar once the work is done.
    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.disable_steady_tick();
            bar.finish_and_clear();
        }
    }
}
