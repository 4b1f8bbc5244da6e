//! The dashboard's pages, rendered on the server (maud escapes every value
//! it prints). No script: links and forms.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use diffsync::bidir::ConflictRecord;
use diffsync::{Action, Outcome};
use diffsync_journal::{Element, KeyEvent, Rollback, RollbackConflict, Run, RunId};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The most changes a run's page draws (a run of a million changes would
/// make a page no browser shows); the rest are counted.
pub const SHOWN: usize = 2_000;

/// A system on the front page.
pub struct SystemRow {
    /// Its name in the config.
    pub name: String,
    /// What it is (no secrets).
    pub what: String,
    /// The last run that read or wrote it.
    pub last: Option<Run>,
    /// Its recent runs, oldest first, for its chart.
    pub chart: Vec<crate::charts::RunBar>,
}

/// What a loop last told.
#[derive(Clone)]
pub struct LoopStatus {
    /// The system followed.
    pub source: String,
    /// The system kept in step.
    pub target: String,
    /// When the dashboard started it.
    pub since: SystemTime,
    /// The last sync of changed keys: when, applied, failed, latency.
    pub last_sync: Option<(SystemTime, usize, usize, Duration)>,
    /// The last full pass: when, and what came of it.
    pub last_pass: Option<(SystemTime, String)>,
    /// Failures and gaps so far.
    pub failures: u64,
    /// The last of them: when, and what.
    pub last_problem: Option<(SystemTime, String)>,
    /// Keys waiting (debouncing or retrying).
    pub queued: usize,
    /// Whether its thread still runs.
    pub running: bool,
    /// The latency of its last syncs (at most [`LAGS_KEPT`]), oldest first.
    pub lags: std::collections::VecDeque<(SystemTime, Duration)>,
}

/// How many syncs a loop's lag chart shows.
pub const LAGS_KEPT: usize = 200;

impl LoopStatus {
    /// A loop just started.
    pub fn new(source: &str, target: &str) -> LoopStatus {
        LoopStatus {
            source: source.to_string(),
            target: target.to_string(),
            since: SystemTime::now(),
            last_sync: None,
            last_pass: None,
            failures: 0,
            last_problem: None,
            queued: 0,
            running: true,
            lags: std::collections::VecDeque::with_capacity(LAGS_KEPT),
        }
    }
}

/// The pages' stylesheet, served at `/style.css` (no inline style: the
/// pages' content policy allows none).
pub(crate) const STYLE: &str = "
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 2rem 2rem; color: #1d2430; }
nav { padding: .8rem 0; border-bottom: 1px solid #d8dde6; margin-bottom: 1rem; }
nav a { margin-right: 1.2rem; font-weight: 600; }
a { color: #1a5fb4; text-decoration: none; } a:hover { text-decoration: underline; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
th, td { text-align: left; padding: .25rem .8rem .25rem 0; border-bottom: 1px solid #eceff4; vertical-align: top; }
th { font-weight: 600; color: #4c566a; }
code, .key { font-family: ui-monospace, monospace; font-size: 13px; }
.succeeded { color: #1e7d32; } .partial, .unfinished { color: #b35c00; } .failed { color: #c01c28; }
ul.tree { list-style: none; padding-left: 1.2rem; margin: 0; }
ul.tree li { margin: .15rem 0; }
.create > .sym { color: #1e7d32; } .delete > .sym { color: #c01c28; } .update > .sym { color: #b35c00; }
.sym { font-family: ui-monospace, monospace; font-weight: 700; display: inline-block; width: 1.1rem; }
.outcome { color: #4c566a; margin-left: .5rem; } .bad { color: #c01c28; font-weight: 600; }
.changed { color: #4c566a; margin-left: 1.6rem; font-size: 13px; }
.note { color: #4c566a; }
.panel { border: 1px solid #d8dde6; border-radius: 6px; padding: .8rem 1rem; margin: 1rem 0; max-width: 60rem; }
figure.chart { margin: .5rem 0 1.2rem; max-width: 600px; }
figure.chart svg { display: block; max-width: 100%; height: auto; border: 1px solid #eceff4; }
figcaption { color: #4c566a; font-size: 13px; }
figcaption .create { color: #1e7d32; font-weight: 600; } figcaption .update { color: #b35c00; font-weight: 600; }
figcaption .delete { color: #c01c28; font-weight: 600; } figcaption .mark { color: #6a1b9a; font-weight: 600; }
button { font: inherit; padding: .35rem .9rem; border-radius: 4px; border: 1px solid #a51d2d; background: #c01c28; color: white; cursor: pointer; }
";

fn layout(title: &str, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if let Some(secs) = refresh { meta http-equiv="refresh" content=(secs); }
                title { (title) " · diffsync" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                nav { a href="/" { "diffsync" } a href="/loops" { "Loops" } a href="/metrics" { "Metrics" } }
                h1 { (title) }
                (body)
            }
        }
    }
}

/// A time in ms since the epoch, in UTC.
pub(crate) fn when(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn ago(at: SystemTime) -> String {
    let secs = SystemTime::now().duration_since(at).unwrap_or(Duration::ZERO).as_secs();
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

fn result(run: &Run) -> Markup {
    html! {
        span class=(run.result.as_str()) { (run.result.as_str()) }
        @if run.dry_run { " (dry run)" }
    }
}

fn run_link(id: RunId) -> Markup {
    html! { a href={ "/runs/" (id.0) } { (id) } }
}

/// Runs on one page of the list.
pub const RUNS_PER_PAGE: usize = 50;

/// The filters the runs list was asked for.
pub struct RunsShown {
    /// Runs that read or wrote this system.
    pub system: Option<String>,
    /// Runs of this kind.
    pub mode: Option<diffsync_journal::Mode>,
    /// Runs that ended this way.
    pub result: Option<diffsync_journal::RunResult>,
    /// Runs started on or after this day (as the operator wrote it).
    pub since: Option<String>,
    /// Runs whose systems, runner, options or error contain this text.
    pub text: Option<String>,
}

fn runs_table(runs: &[Run]) -> Markup {
    let duration = |r: &Run| {
        r.ended_ms
            .map(|e| format!("{:.1} s", e.saturating_sub(r.started_ms) as f64 / 1000.0))
            .unwrap_or_default()
    };
    html! {
        table id="runs" {
            tr {
                th { "Run" } th { "Started" } th { "By" } th { "Kind" } th { "From" } th { "To" } th { "Result" }
                th { "Applied" } th { "Failed" } th { "Skipped" } th { "Took" }
            }
            @for run in runs {
                tr {
                    td { (run_link(run.id)) }
                    td { (when(run.started_ms)) }
                    td { (run.who.as_deref().unwrap_or("")) }
                    td { (run.mode.as_str()) }
                    td { (run.source) }
                    td { (run.target) }
                    td { (result(run)) }
                    @if let Some(t) = &run.totals {
                        td.num { (t.applied + t.planned) }
                        td.num { (t.failed + t.soft_failed + t.unknown) }
                        td.num { (t.skipped + t.rolled_back) }
                    } @else {
                        td {} td {} td {}
                    }
                    td.num { (duration(run)) }
                }
            }
        }
    }
}

/// The runs list's filters, as a form that asks for them again.
fn runs_filters(shown: &RunsShown, systems: &[SystemRow]) -> Markup {
    let modes = ["one-way", "two-way", "batch", "rollback"];
    let results = ["succeeded", "partial", "failed", "unfinished"];
    html! {
        form id="filters" action="/" method="get" {
            select name="system" {
                option value="" { "any system" }
                @for s in systems {
                    option selected[shown.system.as_deref() == Some(s.name.as_str())] { (s.name) }
                }
            }
            " "
            select name="mode" {
                option value="" { "any kind" }
                @for m in modes { option selected[shown.mode.map(|x| x.as_str()) == Some(m)] { (m) } }
            }
            " "
            select name="result" {
                option value="" { "any result" }
                @for r in results { option selected[shown.result.map(|x| x.as_str()) == Some(r)] { (r) } }
            }
            " since "
            input type="date" name="since" value=[shown.since.as_deref()];
            " "
            input type="search" name="q" placeholder="search: system, who, error" value=[shown.text.as_deref()];
            " "
            input type="submit" value="Show";
        }
    }
}

/// The front page: the systems and their last run, the loops, recent runs,
/// and a key's history to look up.
pub fn index(systems: &[SystemRow], recent: &[Run], shown: &RunsShown, loops: &[LoopStatus], types: &[&str]) -> Markup {
    layout(
        "Systems and runs",
        None,
        html! {
            h2 { "Systems" }
            table {
                tr { th { "System" } th { "What" } th { "Last run" } th { "Result" } }
                @for s in systems {
                    tr {
                        td { (s.name) }
                        td { (s.what) }
                        @if let Some(run) = &s.last {
                            td { (run_link(run.id)) ", " (when(run.started_ms)) }
                            td { (result(run)) }
                        } @else {
                            td class="note" { "none yet" } td {}
                        }
                    }
                }
            }
            @if !loops.is_empty() {
                h2 { "Loops" }
                (loops_table(loops))
            }
            @if systems.iter().any(|s| !s.chart.is_empty()) {
                h2 { "Runs over time" }
                @for s in systems.iter().filter(|s| !s.chart.is_empty()) { (runs_chart(s)) }
            }
            h2 { "A model's history" }
            form action="/history" method="get" {
                select name="type" { @for t in types { option { (t) } } }
                " "
                input name="key" placeholder="key" required;
                " "
                input type="submit" value="Show";
            }
            h2 { "Recent runs" }
            (runs_filters(shown, systems))
            @if recent.is_empty() {
                p class="note" { "No run is recorded here." }
            } @else {
                (runs_table(recent))
                @if recent.len() == RUNS_PER_PAGE {
                    @if let Some(last) = recent.last() {
                        p { a id="older" href={
                            "/?before=" (last.started_ms)
                            @if let Some(s) = &shown.system { "&system=" (urlencode(s)) }
                            @if let Some(m) = shown.mode { "&mode=" (m.as_str()) }
                            @if let Some(r) = shown.result { "&result=" (r.as_str()) }
                            @if let Some(s) = &shown.since { "&since=" (urlencode(s)) }
                            @if let Some(t) = &shown.text { "&q=" (urlencode(t)) }
                        } { "Older runs" } }
                    }
                }
            }
        },
    )
}

fn loops_table(loops: &[LoopStatus]) -> Markup {
    html! {
        table id="loops" {
            tr { th { "Loop" } th { "State" } th { "Queued" } th { "Last sync" } th { "Lag" } th { "Last full pass" } th { "Failures" } }
            @for l in loops {
                tr {
                    td { (l.source) " → " (l.target) }
                    td { @if l.running { "running since " (ago(l.since)) } @else { span class="failed" { "stopped" } } }
                    td { (l.queued) }
                    @if let Some((at, applied, failed, _)) = l.last_sync {
                        td { (ago(at)) ": " (applied) " applied, " (failed) " failed" }
                    } @else { td class="note" { "none yet" } }
                    td { @if let Some((_, _, _, lag)) = l.last_sync { (format!("{} ms", lag.as_millis())) } }
                    td { @if let Some((at, what)) = &l.last_pass { (ago(*at)) ": " (what) } }
                    td {
                        (l.failures)
                        @if let Some((at, what)) = &l.last_problem { br; span class="note" { "last " (ago(*at)) ": " (what) } }
                    }
                }
            }
        }
    }
}

/// The loops this dashboard runs, refreshed every two seconds.
pub fn loops(loops: &[LoopStatus]) -> Markup {
    layout(
        "Loops",
        Some(2),
        html! {
            @if loops.is_empty() {
                p class="note" { "This dashboard runs no loop (start it with --watch SOURCE:TARGET)." }
            } @else {
                (loops_table(loops))
                @for l in loops.iter().filter(|l| !l.lags.is_empty()) { (lag_chart(l)) }
            }
        },
    )
}

/// A system's recent runs as a chart (drawn on the server), with what it
/// shows in words.
fn runs_chart(s: &SystemRow) -> Markup {
    match crate::charts::runs(&s.chart) {
        Ok((svg, most, longest)) => html! {
            figure.chart id={ "chart-" (s.name) } {
                (PreEscaped(svg))
                figcaption {
                    b { (s.name) } ": its last " (s.chart.len()) " runs, oldest left. Bars: changes by kind, "
                    span.create { "creates" } ", " span.update { "updates" } ", " span.delete { "deletes" }
                    " (the highest " (most) "); " span.mark { "purple" } ": a run with failures; "
                    "line: duration (the longest " (format!("{longest:.2}")) " s)."
                }
            }
        },
        Err(e) => html! { p.note { "No chart for " (s.name) ": " (e) } },
    }
}

/// A loop's lag over its last syncs.
fn lag_chart(l: &LoopStatus) -> Markup {
    let start = l.lags.front().map_or(SystemTime::UNIX_EPOCH, |p| p.0);
    let points: Vec<(f64, f64)> = l
        .lags
        .iter()
        .map(|(at, lag)| {
            let t = at.duration_since(start).unwrap_or_default().as_secs_f64();
            (t, lag.as_secs_f64() * 1000.0)
        })
        .collect();
    let span = points.last().map_or(0.0, |p| p.0);
    match crate::charts::lag(&points) {
        Ok((svg, most)) => html! {
            figure.chart {
                (PreEscaped(svg))
                figcaption {
                    b { (l.source) " → " (l.target) } ": lag of its last "
                    @if points.len() == 1 { "sync" } @else { (points.len()) " syncs over " (format!("{span:.0}")) " s" }
                    " (the highest " (format!("{most:.0}")) " ms)."
                }
            }
        },
        Err(e) => html! { p.note { "No lag chart: " (e) } },
    }
}

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Delete => "−",
        _ => "~",
    }
}

/// Whether an outcome is worth listing among a run's failures.
pub fn is_failure(outcome: &Outcome) -> bool {
    !matches!(
        outcome,
        Outcome::Applied | Outcome::Planned | Outcome::Unchanged | Outcome::Pending | Outcome::RemovedWithParent
    )
}

/// A page of a side's changes (`total` of them; the page starts at the
/// `from`th, at most [`SHOWN`]) as a tree, with links to the pages
/// before and after.
fn tree_page(run: RunId, page: &[Element], from: usize, total: usize) -> Markup {
    let to = from + page.len();
    let elements: Vec<&Element> = page.iter().collect();
    html! {
        @if from > 0 || to < total {
            p class="note" {
                "Changes " (from + 1) "–" (to) " of " (total) ". "
                @if from > 0 {
                    a.earlier href={ "/runs/" (run.0) "?from=" (from.saturating_sub(SHOWN)) } { "Earlier changes" }
                    " "
                }
                @if to < total {
                    a.later href={ "/runs/" (run.0) "?from=" (to) } { "Later changes" }
                }
            }
        }
        (tree(&elements))
    }
}

/// The changes that went to one system, as the run page shows them: its
/// name, how many, and the page shown (from the `from`th).
pub struct SidePage<'a> {
    /// The system's name.
    pub name: &'a str,
    /// Its changes in all.
    pub total: usize,
    /// The first shown.
    pub from: usize,
    /// Those shown, at most [`SHOWN`].
    pub page: Vec<Element>,
}

/// A run's changes as a tree: each under its parent when the run changed
/// the parent too (a parent on another page: the change is a root), in
/// the run's order.
fn tree(elements: &[&Element]) -> Markup {
    let at: HashMap<&diffsync::ModelKey, usize> = elements.iter().enumerate().map(|(i, e)| (&e.key, i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); elements.len()];
    let mut roots = Vec::new();
    for (i, e) in elements.iter().enumerate() {
        match e.parent.as_ref().and_then(|p| at.get(p)) {
            Some(&p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    let mut budget = SHOWN;
    branch(elements, &children, &roots, &mut budget)
}

fn branch(elements: &[&Element], children: &[Vec<usize>], these: &[usize], budget: &mut usize) -> Markup {
    let mut items = Vec::new();
    for &i in these {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        let below = (!children[i].is_empty()).then(|| branch(elements, children, &children[i], budget));
        items.push(change(elements[i], below));
    }
    html! { ul.tree { @for item in items { (item) } } }
}

/// One change in the tree, with the changes below it.
fn change(e: &Element, below: Option<Markup>) -> Markup {
    let changed = crate::changes(e);
    html! {
        li class=(e.action.as_str()) {
            span.sym { (symbol(e.action)) }
            (e.model_type()) " "
            a.key href={ "/history?type=" (urlencode(e.model_type())) "&key=" (urlencode(e.key.unique_id())) } { (e.key.unique_id()) }
            span class={ "outcome" @if is_failure(&e.outcome) { " bad" } } { (e.outcome) }
            @if !changed.is_empty() { div.changed { (changed) } }
            @if let Some(below) = below { (below) }
        }
    }
}

/// A query value, percent-encoded (`form_urlencoded`, as the query is read).
fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One run: what it was, its changes as a tree, its failures and
/// conflicts, and the way to its rollback.
pub fn run(
    run: &Run,
    sides: &[SidePage<'_>],
    failures: &(Vec<Element>, usize),
    conflicts: &[ConflictRecord],
) -> Markup {
    let (failures, failed) = (&failures.0, failures.1);
    html! {
        (layout(&run.id.to_string(), None, html! {
            table {
                tr { th { "Kind" } td { (run.mode.as_str()) @if let Some(of) = run.rollback_of { ", undoing " (run_link(of)) } } }
                tr { th { "From" } td { (run.source) } }
                tr { th { "To" } td { (run.target) } }
                tr { th { "Started" } td { (when(run.started_ms)) } }
                @if let Some(who) = &run.who { tr { th { "By" } td { (who) } } }
                tr { th { "Ended" } td { (run.ended_ms.map(when).unwrap_or_else(|| "not ended".into())) } }
                tr { th { "Result" } td { (result(run)) } }
                @if let Some(error) = &run.error { tr { th { "Error" } td.failed { (error) } } }
                tr { th { "Changes" } td { (run.totals.as_ref().map(crate::counts).unwrap_or_default()) } }
                @if !run.phases.is_empty() {
                    tr { th { "Phases" } td { @for (name, secs) in &run.phases { (name) " " (format!("{secs:.3}")) " s " } } }
                }
                @if let Some(bytes) = run.peak_memory { tr { th { "Peak memory" } td { (bytes / (1 << 20)) " MiB" } } }
                tr { th { "Options" } td { code { (run.options) } } }
            }
            @for side in sides {
                h2 { "Changes to " (side.name) " (" (side.total) ")" }
                @if side.total == 0 { p.note { "None." } } @else { (tree_page(run.id, &side.page, side.from, side.total)) }
            }
            @if failed > 0 {
                h2 { "Failures (" (failed) ")" }
                table id="failures" {
                    tr { th { "Change" } th { "Outcome" } }
                    @for e in failures.iter().take(SHOWN) {
                        tr { td { (e.action.as_str()) " " (e.model_type()) " " span.key { (e.key.unique_id()) } } td.bad { (e.outcome) } }
                    }
                }
            }
            @if !conflicts.is_empty() {
                h2 { "Conflicts (" (conflicts.len()) ")" }
                table id="conflicts" {
                    tr { th { "Model" } th { "Kind" } th { "Left" } th { "Right" } th { "Decided" } th { "Applied" } }
                    @for c in conflicts {
                        tr {
                            td { (c.model_type()) " " span.key { (c.key.unique_id()) } }
                            td { (c.kind.as_str()) }
                            td { code { (attrs(&c.left)) } }
                            td { code { (attrs(&c.right)) } }
                            td { (c.strategy) ": " (c.resolution.as_str()) }
                            td { (match c.applied { Some(true) => "yes", Some(false) => "no", None => "unknown" }) }
                        }
                    }
                }
            }
            @if !run.dry_run {
                h2 { "Roll back" }
                p {
                    @for side in sides {
                        a.rollback href={ "/runs/" (run.id.0) "/rollback?on=" (urlencode(side.name)) } { "Preview the rollback on " (side.name) }
                        " "
                    }
                }
            }
        }))
    }
}

fn attrs(a: &Option<diffsync::Attrs>) -> String {
    a.as_ref().map_or_else(
        || "deleted".to_string(),
        |a| serde_json::to_string(a).unwrap_or_default(),
    )
}

/// What a rollback of `run` on `on` would do, and, where writes are
/// allowed, the form that confirms it (carrying `token`).
pub fn rollback_preview(run: &Run, on: &str, preview: &Rollback, recorded: &[Element], token: Option<&str>) -> Markup {
    // Only what would be written: the parents a sync walks through
    // unchanged are no undo.
    let planned: Vec<_> = preview
        .report
        .elements
        .iter()
        .filter(|e| e.action != diffsync::Action::NoChange)
        .collect();
    // What each undo writes back: the recorded change, turned around.
    let undone: HashMap<(&str, &str), String> = recorded
        .iter()
        .map(|e| {
            let mut inverse = e.clone();
            std::mem::swap(&mut inverse.before, &mut inverse.after);
            ((e.model_type(), e.key.unique_id()), crate::changes(&inverse))
        })
        .collect();
    layout(
        &format!("Roll back {} on {on}", run.id),
        None,
        html! {
            p id="summary" {
                (planned.len()) " change" @if planned.len() != 1 { "s" } " of " (run_link(run.id)) " would be undone in " (on)
                @if !preview.conflicts.is_empty() {
                    "; " (preview.conflicts.len()) " left alone (" (on) " changed them since)"
                }
                "."
            }
            (left_alone(&preview.conflicts))
            @if planned.is_empty() {
                p.note id="nothing" { "Nothing: " (on) " holds none of this run's changes as the run left them." }
            } @else {
                table id="preview" {
                    tr { th { "Undo" } th { "Model" } th { "Key" } th { "Values" } }
                    @for e in planned.iter().take(SHOWN) {
                        tr class=(e.action.as_str()) {
                            td { span.sym { (symbol(e.action)) } (e.action.as_str()) }
                            td { (e.model_type()) }
                            td.key { (e.key.unique_id()) }
                            td { (undone.get(&(e.model_type(), e.key.unique_id())).map_or("", String::as_str)) }
                        }
                    }
                }
                @if planned.len() > SHOWN { p.note { (planned.len() - SHOWN) " more are not shown." } }
            }
            @if let Some(token) = token {
                @if !planned.is_empty() {
                    form.panel method="post" action={ "/runs/" (run.id.0) "/rollback" } {
                        input type="hidden" name="on" value=(on);
                        input type="hidden" name="token" value=(token);
                        label { input type="checkbox" name="confirm" value="yes" required; " I have read what this undoes" }
                        " "
                        button type="submit" { "Roll back " (planned.len()) " change" @if planned.len() != 1 { "s" } }
                    }
                }
            } @else {
                p.note.panel { "This dashboard is read-only: run " code { "diffsync rollback " (run.id.0) } " or start the dashboard with " code { "--allow-writes" } " to roll back." }
            }
        },
    )
}

fn left_alone(conflicts: &[RollbackConflict]) -> Markup {
    html! {
        @if !conflicts.is_empty() {
            h2 { "Left alone (" (conflicts.len()) ")" }
            table id="left-alone" {
                tr { th { "Model" } th { "Key" } th { "Why" } }
                @for c in conflicts { tr { td { (c.model_type()) } td.key { (c.key.unique_id()) } td { (c.reason) } } }
            }
        }
    }
}

/// A rollback that found nothing it could undo.
pub fn nothing_undone(run: RunId, conflicts: &[RollbackConflict]) -> Markup {
    layout(
        &format!("Nothing of {run} undone"),
        None,
        html! {
            p { "The target changed every change of " (run_link(run)) " since." }
            (left_alone(conflicts))
        },
    )
}

/// Every recorded change to one model key, oldest first.
pub fn history(key: &diffsync::ModelKey, events: &[KeyEvent]) -> Markup {
    let (model_type, key) = (key.model_type(), key.unique_id());
    layout(
        &format!("History of {model_type} {key}"),
        None,
        html! {
            @if events.is_empty() {
                p.note { "No recorded change to " (model_type) " " (key) "." }
            } @else {
                table id="history" {
                    tr { th { "Run" } th { "When" } th { "Kind" } th { "From → to" } th { "Change" } th { "Outcome" } th { "Values" } }
                    @for ev in events {
                        tr {
                            td { (run_link(ev.run)) }
                            td { (when(ev.started_ms)) }
                            td { (ev.mode.as_str()) @if ev.dry_run { " (dry run)" } }
                            td { (ev.source) " → " (ev.target) }
                            td { (ev.element.action.as_str()) }
                            td class=[is_failure(&ev.element.outcome).then_some("bad")] { (ev.element.outcome) }
                            td { (crate::changes(&ev.element)) }
                        }
                    }
                }
            }
        },
    )
}

/// A page that could not be made.
pub fn error(status: StatusCode, message: &str) -> Markup {
    layout(
        status.canonical_reason().unwrap_or("Error"),
        None,
        html! { p.failed id="error" { (message) } },
    )
}

#[cfg(test)]
mod tests {
    use diffsync::{Action, Attrs, Outcome};
    use diffsync_journal::{Element, Mode, Run, RunId, RunResult};

    /// Run 7, one way from cmdb to network, ended as `result`.
    fn one_way_run(who: Option<&str>, result: RunResult) -> Run {
        Run {
            id: RunId(7),
            who: who.map(String::from),
            started_ms: 0,
            ended_ms: Some(1),
            mode: Mode::OneWay,
            source: "cmdb".into(),
            target: "network".into(),
            dry_run: false,
            options: String::new(),
            result,
            error: None,
            totals: None,
            phases: Vec::new(),
            peak_memory: None,
            rollback_of: None,
        }
    }

    fn element(seq: u32, model_type: &str, key: &str, parent: Option<(&str, &str)>, outcome: Outcome) -> Element {
        let attrs = |v: &str| -> Attrs { [("role".into(), v.into())].into_iter().collect() };
        Element {
            seq,
            key: format!("{model_type}:{key}").parse().unwrap(),
            parent: parent.map(|(t, k)| format!("{t}:{k}").parse().unwrap()),
            side: None,
            identifiers: Attrs::new(),
            action: Action::Update,
            outcome,
            before: Some(attrs("edge")),
            after: Some(attrs("core")),
        }
    }

    #[test]
    fn a_rollback_preview_says_first_what_it_writes_and_counts_only_real_writes() {
        use diffsync::{ElementReport, ModelKey, SyncReport};
        let key = |t: &str, k: &str| ModelKey::new(t.to_string(), [diffsync::KeyValue::Str(k.into())]);
        let report = SyncReport {
            source: "rollback".into(),
            dest: "network".into(),
            dry_run: true,
            elements: vec![
                ElementReport {
                    key: key("site", "nyc"),
                    action: Action::NoChange,
                    outcome: Outcome::Unchanged,
                },
                ElementReport {
                    key: key("device", "nyc-r1"),
                    action: Action::Update,
                    outcome: Outcome::Planned,
                },
            ],
        };
        let preview = diffsync_journal::Rollback {
            run: None,
            report,
            conflicts: vec![diffsync_journal::RollbackConflict {
                key: "site:sfo".parse().unwrap(),
                reason: "changed since".into(),
            }],
        };
        let run = one_way_run(None, RunResult::Succeeded);
        let page = super::rollback_preview(&run, "network", &preview, &[], Some("t")).into_string();
        let summary = &page[page.find(r#"<p id="summary">"#).expect("a summary")..];
        assert!(summary.contains("1 change of"), "{summary}");
        assert!(summary.contains("1 left alone"), "{summary}");
        let (first_summary, left, table) = (
            page.find("summary").unwrap(),
            page.find("Left alone").unwrap(),
            page.find(r#"<table id="preview">"#).unwrap(),
        );
        assert!(
            first_summary < left && left < table,
            "summary first, then what is left alone"
        );
        assert!(
            !page[table..].contains("no-change"),
            "unchanged parents are no undo: {page}"
        );
        assert!(page.contains("Roll back 1 change<"), "{page}");
    }

    #[test]
    fn a_run_page_nests_changes_under_their_parent_lists_failures_and_escapes_values() {
        let run = one_way_run(Some("ops@hq"), RunResult::Partial);
        let elements = [
            element(0, "site", "nyc", None, Outcome::Applied),
            element(
                1,
                "device",
                "<script>x</script>",
                Some(("site", "nyc")),
                Outcome::Failed("refused".into()),
            ),
        ];
        let sides = [super::SidePage {
            name: "network",
            total: elements.len(),
            from: 0,
            page: elements.to_vec(),
        }];
        let failures = (elements[1..].to_vec(), 1);
        let page = super::run(&run, &sides, &failures, &[]).into_string();
        let tree = &page[page.find(r#"<ul class="tree">"#).unwrap()..];
        let (site, device) = (tree.find("nyc").unwrap(), tree.find("&lt;script&gt;").unwrap());
        assert!(
            site < device && tree[site..device].contains(r#"<ul class="tree">"#),
            "nested: {tree}"
        );
        assert!(!page.contains("<script>"), "escaped");
        assert!(page.contains("<th>By</th><td>ops@hq</td>"), "who ran it: {page}");
        assert!(
            page.contains("/history?type=device&amp;key=%3Cscript%3Ex%3C%2Fscript%3E"),
            "the history link's key encoded as a query value: {page}"
        );
        let failures = &page[page.find(r#"<table id="failures">"#).expect("a failures table")..];
        assert!(failures.contains("&lt;script&gt;x&lt;/script&gt;") && failures.contains("FAILED: refused"));
        assert!(!failures.contains(">nyc<"), "only the failure");
        assert!(page.contains(r#"href="/runs/7/rollback?on=network""#));
    }
}
