//! `diffsync serve`: the dashboard (server-rendered pages on the journal)
//! and the Prometheus metrics endpoint, with the loops it was asked to run.
//!
//! Read-only unless started with `--allow-writes`: then a run's page can
//! roll it back, after its preview, through a form that carries this
//! process's token (a page of another site cannot post it). Off loopback,
//! writes also need the credential of `--token-file` (HTTP basic
//! authentication). Every request's Host must be one the dashboard is
//! reached by (DNS rebinding cannot point another name at it), and every
//! answer forbids framing and scripts (no page of another site can frame
//! the rollback form).

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use diffsync_journal::{Journal, JournalError, Mode, Run, RunFilter, RunId, RunResult, Side};
use diffsync_live::{LoopEvent, LoopHandle};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;

use crate::Failure;
use crate::config::{Config, with_system};
use crate::pages;

/// How `serve` was started.
pub struct ServeOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Whether a page may roll a run back.
    pub allow_writes: bool,
    /// The credential for writes, off loopback.
    pub token_file: Option<std::path::PathBuf>,
    /// Host names the dashboard is reached by.
    pub allow_host: Vec<String>,
    /// The loops to run, `(source, target)`.
    pub watch: Vec<(String, String)>,
    /// When the loops run full passes.
    pub passes: crate::watch::Passes,
}

/// What the pages are made from.
struct Dashboard {
    config: Config,
    journal: Mutex<Journal>,
    allow_writes: bool,
    /// Carried by the rollback form and checked on its post.
    token: String,
    /// Who may ask.
    guard: Guard,
    loops: Vec<Loop>,
    metrics: PrometheusHandle,
    /// An ended run's changes by kind, counted once (they never change):
    /// the charts do not count them again on every visit.
    counts: Mutex<std::collections::HashMap<RunId, diffsync_journal::ActionCounts>>,
}

/// A loop `serve` runs, and what it last told.
struct Loop {
    handle: LoopHandle,
    status: Arc<Mutex<pages::LoopStatus>>,
}

/// Who may ask what: the Host names taken, and the credential writes need.
struct Guard {
    /// Host header values taken as they are (lowercase, with the port).
    hosts: Vec<String>,
    /// Names taken with the port or none (`--allow-host`).
    names: Vec<String>,
    /// Listening on all addresses: any IP literal with this port is taken.
    any_ip: bool,
    port: u16,
    /// The password writes need (`--token-file`), if any.
    credential: Option<String>,
}

impl Guard {
    fn new(opts: &ServeOptions, bound: SocketAddr) -> Result<Guard, Failure> {
        let ip = bound.ip();
        let credential = match &opts.token_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| format!("--token-file {}: {e}", path.display()))?;
                let token = text.trim().to_string();
                if token.len() < 16 {
                    return Err(format!(
                        "--token-file {}: the credential is shorter than 16 characters",
                        path.display()
                    )
                    .into());
                }
                Some(token)
            }
            None => None,
        };
        if !ip.is_loopback() {
            if opts.allow_writes && credential.is_none() {
                return Err(format!(
                    "--allow-writes on {bound} (not loopback) needs --token-file: anyone who reaches it could roll runs back"
                )
                .into());
            }
            eprintln!(
                "diffsync: warning: serving on {bound}, not loopback: anyone who reaches it can read the journal{}",
                if credential.is_some() {
                    "; the write credential travels in clear HTTP (put a TLS proxy in front)"
                } else {
                    ""
                }
            );
        }
        let port = bound.port();
        let mut hosts = vec![bound.to_string()];
        if ip.is_loopback() || ip.is_unspecified() {
            hosts.extend([
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ]);
        }
        Ok(Guard {
            hosts,
            names: opts.allow_host.iter().map(|h| h.to_ascii_lowercase()).collect(),
            any_ip: ip.is_unspecified(),
            port,
            credential,
        })
    }

    /// Whether a request's Host header names this dashboard.
    fn takes_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        let port = format!(":{}", self.port);
        if self
            .names
            .iter()
            .any(|n| host == *n || host.strip_suffix(&port) == Some(n.as_str()))
        {
            return true;
        }
        // An IP literal cannot be rebound to another address.
        self.any_ip && host.parse::<SocketAddr>().is_ok_and(|a| a.port() == self.port)
    }

    /// Whether a request carries the write credential (or none is needed).
    fn authorized(&self, request: &axum::extract::Request) -> bool {
        use base64::Engine;
        let Some(credential) = &self.credential else {
            return true;
        };
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|d| String::from_utf8(d).ok());
        let password = given.as_deref().and_then(|d| d.split_once(':')).map(|(_, p)| p);
        password.is_some_and(|p| same(p.as_bytes(), credential.as_bytes()))
    }
}

/// Whether two secrets are equal, in a time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks every request before its page: the Host, and for a rollback
/// (its preview with the form, and its post) the write credential; and
/// gives every answer the headers that keep it out of other sites' frames.
async fn check_request(
    State(app): State<Arc<Dashboard>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut response = if !app.guard.takes_host(&host) {
        PageError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!("this dashboard is not reached as {host:?} (start it with --allow-host for another name)"),
        )
        .into_response()
    } else if request.uri().path().ends_with("/rollback") && app.allow_writes && !app.guard.authorized(&request) {
        let mut r = PageError::new(
            StatusCode::UNAUTHORIZED,
            "rolling a run back needs the dashboard's credential",
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic realm=\"diffsync\", charset=\"UTF-8\""),
        );
        r
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

/// Serves until the process is stopped.
pub fn serve(config: Config, opts: ServeOptions) -> Result<u8, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(opts.listen))?;
    let address = listener.local_addr()?;
    let guard = Guard::new(&opts, address)?;
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let mut loops = Vec::new();
    for (source, target) in &opts.watch {
        let (handle, events) = crate::watch::start(&config, source, target, &opts.passes)?;
        let status = Arc::new(Mutex::new(pages::LoopStatus::new(source, target)));
        let followed = status.clone();
        std::thread::Builder::new()
            .name(format!("diffsync-status-{source}-{target}"))
            .spawn(move || follow(&events, &followed))?;
        loops.push(Loop { handle, status });
    }
    let dashboard = Arc::new(Dashboard {
        journal: Mutex::new(config.journal()?),
        config,
        allow_writes: opts.allow_writes,
        token: token()?,
        guard,
        loops,
        metrics,
        counts: Mutex::default(),
    });
    let app = Router::new()
        .route("/", get(index))
        .route("/loops", get(loops_page))
        .route("/runs/{run}", get(run_page))
        .route("/runs/{run}/rollback", get(rollback_preview).post(rollback))
        .route("/history", get(history))
        .route("/metrics", get(metrics_page))
        .route("/style.css", get(style))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&dashboard),
            check_request,
        ))
        .with_state(dashboard);
    runtime.block_on(async {
        crate::say!("serving http://{address}/");
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, app).await
    })?;
    Ok(0)
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], pages::STYLE).into_response()
}

/// 128 bits from the system's secure random source, in hex: what a page
/// of another site cannot guess.
fn token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Keeps a loop's status as its events come.
fn follow(events: &Receiver<LoopEvent>, status: &Mutex<pages::LoopStatus>) {
    for event in events {
        let now = SystemTime::now();
        let mut s = lock(status);
        match &event {
            LoopEvent::Synced {
                applied,
                failed,
                latency,
                ..
            } => {
                s.last_sync = Some((now, *applied, *failed, *latency));
                if s.lags.len() == pages::LAGS_KEPT {
                    s.lags.pop_front();
                }
                s.lags.push_back((now, *latency));
            }
            LoopEvent::FullPass { .. } => s.last_pass = Some((now, crate::watch::describe(&event).unwrap_or_default())),
            LoopEvent::Failed { .. } | LoopEvent::Gap { .. } => {
                s.failures += 1;
                s.last_problem = Some((now, crate::watch::describe(&event).unwrap_or_default()));
            }
            _ => {}
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A page that could not be made: its status and why, shown as a page.
struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }
}

impl From<JournalError> for PageError {
    fn from(e: JournalError) -> PageError {
        let status = match e {
            JournalError::NoRun(_) => StatusCode::NOT_FOUND,
            JournalError::NotUndoable { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        PageError::new(status, diffsync::Chain(&e).to_string())
    }
}

impl From<crate::config::ConfigError> for PageError {
    fn from(e: crate::config::ConfigError) -> PageError {
        PageError::new(StatusCode::INTERNAL_SERVER_ERROR, diffsync::Chain(&e).to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        (self.status, pages::error(self.status, &self.message)).into_response()
    }
}

type Page = Result<Response, PageError>;

/// Makes a page on a blocking thread (the journal and the systems are
/// read through blocking clients).
async fn blocking(app: Arc<Dashboard>, page: impl FnOnce(&Dashboard) -> Page + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(move || page(&app)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => e.into_response(),
        Err(_) => PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "the page's work panicked").into_response(),
    }
}

/// The runs list's filters and page (`before`: runs started before this
/// time, ms since the epoch: the next page).
#[derive(Deserialize, Default)]
struct RunsQuery {
    system: Option<String>,
    mode: Option<String>,
    result: Option<String>,
    /// Runs started on or after this day (or RFC 3339 time).
    since: Option<String>,
    /// Runs whose systems, runner, options or error contain this text.
    q: Option<String>,
    before: Option<u64>,
}

/// A system's chart of `recent` (its last runs, newest first), oldest
/// first: each run's changes by kind (counted in the journal, once for a
/// run that ended), its failures and its duration.
fn system_chart(d: &Dashboard, journal: &Journal, recent: &[Run]) -> Result<Vec<crate::charts::RunBar>, PageError> {
    let mut bars = Vec::with_capacity(recent.len());
    for run in recent.iter().rev() {
        let known = lock(&d.counts).get(&run.id).copied();
        let counts = match known {
            Some(c) => c,
            None => {
                let c = journal.action_counts(run.id)?;
                if run.ended_ms.is_some() {
                    lock(&d.counts).insert(run.id, c);
                }
                c
            }
        };
        let failed = run.totals.as_ref().map_or(0, |t| t.failed + t.soft_failed + t.unknown);
        bars.push(crate::charts::RunBar {
            create: counts.create,
            update: counts.update,
            delete: counts.delete,
            failed,
            seconds: run.ended_ms.map(|e| e.saturating_sub(run.started_ms) as f64 / 1000.0),
        });
    }
    Ok(bars)
}

async fn index(State(app): State<Arc<Dashboard>>, Query(q): Query<RunsQuery>) -> Response {
    blocking(app, move |d| {
        let journal = lock(&d.journal);
        let mut systems = Vec::new();
        let mut charted = std::collections::HashSet::new();
        for (name, what) in d.config.systems() {
            // Its last runs, newest first: the last of them and its chart.
            let filter = RunFilter {
                system: Some(name.to_string()),
                limit: Some(pages::RUNS_PER_PAGE),
                ..RunFilter::default()
            };
            let recent: Vec<Run> = journal.runs(&filter)?.into_iter().collect();
            let chart = system_chart(d, &journal, &recent)?;
            charted.extend(recent.iter().map(|r| r.id));
            let last = recent.into_iter().next();
            systems.push(pages::SystemRow {
                name: name.to_string(),
                what,
                last,
                chart,
            });
        }
        // Only the runs the charts show stay counted: a dashboard that
        // runs for months does not keep every run it ever charted.
        lock(&d.counts).retain(|id, _| charted.contains(id));
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let mode = nonempty(&q.mode).map(|m| {
            [Mode::OneWay, Mode::TwoWay, Mode::Batch, Mode::Rollback]
                .into_iter()
                .find(|x| x.as_str() == m)
                .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, format!("no run kind {m:?}")))
        });
        let result = nonempty(&q.result).map(|r| {
            [
                RunResult::Succeeded,
                RunResult::Partial,
                RunResult::Failed,
                RunResult::Unfinished,
            ]
            .into_iter()
            .find(|x| x.as_str() == r)
            .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, format!("no run result {r:?}")))
        });
        let since = nonempty(&q.since);
        let since_ms = since
            .as_deref()
            .map(|s| crate::since(s).map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e)))
            .transpose()?;
        let filter = RunFilter {
            system: nonempty(&q.system),
            mode: mode.transpose()?,
            result: result.transpose()?,
            since_ms,
            until_ms: q.before,
            text: nonempty(&q.q),
            limit: Some(pages::RUNS_PER_PAGE),
        };
        let recent = journal.runs(&filter)?;
        let loops = d.loops.iter().map(Loop::status).collect::<Vec<_>>();
        let shown = pages::RunsShown {
            system: filter.system.clone(),
            mode: filter.mode,
            result: filter.result,
            since,
            text: filter.text.clone(),
        };
        Ok(pages::index(&systems, &recent, &shown, &loops, &d.config.model_types()).into_response())
    })
    .await
}

impl Loop {
    fn status(&self) -> pages::LoopStatus {
        let mut status = lock(&self.status).clone();
        status.queued = self.handle.queued();
        status.running = self.handle.is_running();
        status
    }
}

async fn loops_page(State(app): State<Arc<Dashboard>>) -> Response {
    let loops = app.loops.iter().map(Loop::status).collect::<Vec<_>>();
    pages::loops(&loops).into_response()
}

/// Where a run's page starts its lists of changes (`from`: the first
/// change shown, counted from 0).
#[derive(Deserialize, Default)]
struct RunQuery {
    from: Option<usize>,
}

async fn run_page(State(app): State<Arc<Dashboard>>, Path(run): Path<i64>, Query(q): Query<RunQuery>) -> Response {
    blocking(app, move |d| {
        let journal = lock(&d.journal);
        let id = RunId(run);
        let recorded = journal.run(id)?;
        let sides: Vec<(Option<Side>, &str)> = match recorded.mode {
            Mode::TwoWay => vec![
                (Some(Side::Left), &recorded.source),
                (Some(Side::Right), &recorded.target),
            ],
            _ => vec![(None, &recorded.target)],
        };
        // Only the pages shown are read from the journal, not the run.
        let mut pages = Vec::new();
        for (side, name) in sides {
            let (first, total) = journal.changes_to(id, side)?;
            let from = q.from.unwrap_or(0).min((total as usize).saturating_sub(1));
            let page = journal.elements_page(id, first + from as u32, pages::SHOWN as u32)?;
            let page = page.into_iter().filter(|e| e.side == side).collect();
            pages.push(pages::SidePage {
                name,
                total: total as usize,
                from,
                page,
            });
        }
        let failures = journal.unusual(id, pages::is_failure, pages::SHOWN)?;
        let conflicts = journal.conflicts(id)?;
        Ok(pages::run(&recorded, &pages, &failures, &conflicts).into_response())
    })
    .await
}

/// Which system a rollback undoes a run's changes on (a two-way run wrote
/// to both; a one-way run to its target).
#[derive(Deserialize)]
struct On {
    on: Option<String>,
}

async fn rollback_preview(State(app): State<Arc<Dashboard>>, Path(run): Path<i64>, Query(on): Query<On>) -> Response {
    blocking(app, move |d| {
        let recorded = lock(&d.journal).run(RunId(run))?;
        let on = on.on.unwrap_or_else(|| recorded.target.clone());
        // Loaded without the journal held: other pages go on meanwhile.
        let mut target = d.config.open(&on)?;
        let journal = lock(&d.journal);
        let preview = with_system!(&mut target, t => journal.rollback_preview(RunId(run), t))?;
        let side = match recorded.mode {
            Mode::TwoWay if on == recorded.source => Some(Side::Left),
            Mode::TwoWay => Some(Side::Right),
            _ => None,
        };
        let elements: Vec<_> = journal
            .elements(RunId(run))?
            .into_iter()
            .filter(|e| e.side == side)
            .collect();
        let form = d.allow_writes.then_some(d.token.as_str());
        Ok(pages::rollback_preview(&recorded, &on, &preview, &elements, form).into_response())
    })
    .await
}

/// The rollback form, posted.
#[derive(Deserialize)]
struct Confirmed {
    on: String,
    token: String,
    confirm: Option<String>,
}

async fn rollback(State(app): State<Arc<Dashboard>>, Path(run): Path<i64>, Form(form): Form<Confirmed>) -> Response {
    blocking(app, move |d| {
        if !d.allow_writes {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "this dashboard is read-only: start it with --allow-writes to roll runs back",
            ));
        }
        if form.token != d.token {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "the form is not this dashboard's (it restarted since the page was loaded): load the preview again",
            ));
        }
        if form.confirm.as_deref() != Some("yes") {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "the rollback was not confirmed: tick the box under the preview",
            ));
        }
        let mut target = d.config.open(&form.on)?;
        let mut journal = lock(&d.journal);
        let undo = with_system!(&mut target, t => journal.rollback(RunId(run), t, false))?;
        Ok(match undo.run {
            Some(own) => Redirect::to(&format!("/runs/{}", own.0)).into_response(),
            None => pages::nothing_undone(RunId(run), &undo.conflicts).into_response(),
        })
    })
    .await
}

/// A model key whose history is asked for.
#[derive(Deserialize)]
struct KeyQuery {
    #[serde(rename = "type")]
    model_type: String,
    key: String,
}

async fn history(State(app): State<Arc<Dashboard>>, Query(q): Query<KeyQuery>) -> Response {
    blocking(app, move |d| {
        // The key as diffsync prints it, read against its type's identifiers.
        let key = d
            .config
            .key(&q.model_type, &q.key)
            .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, diffsync::Chain(&e).to_string()))?;
        let events = lock(&d.journal).history(&key)?;
        Ok(pages::history(&key, &events).into_response())
    })
    .await
}

async fn metrics_page(State(app): State<Arc<Dashboard>>) -> Response {
    app.metrics.run_upkeep();
    let mut text = app.metrics.render();
    // Every run the journal holds (the command line's and other
    // processes', not only the loops this one runs).
    let journal = tokio::task::spawn_blocking({
        let app = Arc::clone(&app);
        move || journal_metrics(&lock(&app.journal))
    })
    .await;
    match journal {
        Ok(Ok(more)) => text.push_str(&more),
        // Said where the scraper's operator looks (a comment to Prometheus).
        Ok(Err(e)) => text.push_str(&format!(
            "# the journal could not be read: {}\n",
            diffsync::Chain(&e).to_string().replace('\n', " ")
        )),
        Err(_) => text.push_str("# the journal could not be read\n"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The journal's runs by source, target, mode and result, and their
/// changes by target and outcome, in Prometheus' text format (gauges: what
/// the journal holds now; a prune lowers them).
fn journal_metrics(journal: &Journal) -> Result<String, diffsync_journal::JournalError> {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let label = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut runs: BTreeMap<(String, String, &str, &str), u64> = BTreeMap::new();
    let mut changes: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for run in journal.runs(&RunFilter::default())? {
        *runs
            .entry((
                run.source.clone(),
                run.target.clone(),
                run.mode.as_str(),
                run.result.as_str(),
            ))
            .or_default() += 1;
        if let Some(t) = &run.totals {
            for (outcome, n) in [
                ("applied", t.applied),
                ("failed", t.failed),
                ("soft_failed", t.soft_failed),
                ("skipped", t.skipped),
                ("planned", t.planned),
            ] {
                *changes.entry((run.target.clone(), outcome)).or_default() += n as u64;
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP diffsync_journal_runs Runs the journal holds, by systems, mode and result."
    );
    let _ = writeln!(out, "# TYPE diffsync_journal_runs gauge");
    for ((source, target, mode, result), n) in &runs {
        let _ = writeln!(
            out,
            "diffsync_journal_runs{{source=\"{}\",target=\"{}\",mode=\"{mode}\",result=\"{result}\"}} {n}",
            label(source),
            label(target)
        );
    }
    let _ = writeln!(
        out,
        "# HELP diffsync_journal_changes Changes of the runs the journal holds, by target and outcome."
    );
    let _ = writeln!(out, "# TYPE diffsync_journal_changes gauge");
    for ((target, outcome), n) in &changes {
        let _ = writeln!(
            out,
            "diffsync_journal_changes{{target=\"{}\",outcome=\"{outcome}\"}} {n}",
            label(target)
        );
    }
    Ok(out)
}
