//! `diffsync serve`: the dashboard (server-rendered pages on the journal)
//! and the Prometheus metrics endpoint, with the loops it was asked to run.
//!
//! Read-only unless started with `--allow-writes`: then a run's page can
//! roll it back, after its preview, through a form that carries this
//! process's token (a page of another site cannot post it).

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use diffsync_journal::{Journal, JournalError, Mode, RunFilter, RunId, Side};
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
    loops: Vec<Loop>,
    metrics: PrometheusHandle,
}

/// A loop `serve` runs, and what it last told.
struct Loop {
    handle: LoopHandle,
    status: Arc<Mutex<pages::LoopStatus>>,
}

/// Serves until the process is stopped.
pub fn serve(config: Config, opts: ServeOptions) -> Result<u8, Failure> {
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
        loops,
        metrics,
    });
    let app = Router::new()
        .route("/", get(index))
        .route("/loops", get(loops_page))
        .route("/runs/{run}", get(run_page))
        .route("/runs/{run}/rollback", get(rollback_preview).post(rollback))
        .route("/history", get(history))
        .route("/metrics", get(metrics_page))
        .with_state(dashboard);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        let address = listener.local_addr()?;
        println!("serving http://{address}/");
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, app).await
    })?;
    Ok(0)
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

async fn index(State(app): State<Arc<Dashboard>>) -> Response {
    blocking(app, |d| {
        let journal = lock(&d.journal);
        let mut systems = Vec::new();
        for (name, what) in d.config.systems() {
            let filter = RunFilter {
                system: Some(name.to_string()),
                limit: Some(1),
                ..RunFilter::default()
            };
            let last = journal.runs(&filter)?.into_iter().next();
            systems.push(pages::SystemRow {
                name: name.to_string(),
                what,
                last,
            });
        }
        let recent = journal.runs(&RunFilter {
            limit: Some(50),
            ..RunFilter::default()
        })?;
        let loops = d.loops.iter().map(Loop::status).collect::<Vec<_>>();
        Ok(pages::index(&systems, &recent, &loops, &d.config.model_types()).into_response())
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

async fn run_page(State(app): State<Arc<Dashboard>>, Path(run): Path<i64>) -> Response {
    blocking(app, move |d| {
        let journal = lock(&d.journal);
        let recorded = journal.run(RunId(run))?;
        let elements = journal.elements(RunId(run))?;
        let conflicts = journal.conflicts(RunId(run))?;
        Ok(pages::run(&recorded, &elements, &conflicts).into_response())
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
        let events = lock(&d.journal).history(&q.model_type, &q.key)?;
        Ok(pages::history(&q.model_type, &q.key, &events).into_response())
    })
    .await
}

async fn metrics_page(State(app): State<Arc<Dashboard>>) -> Response {
    app.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}
