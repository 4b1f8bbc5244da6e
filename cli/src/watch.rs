//! The loop, one way from a system's change feed to another system, its
//! target recorded pass by pass in the journal.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diffsync_live::{LoopEvent, LoopHandle, OneWay, ReconcileLoop};

use crate::Failure;
use crate::config::{Config, with_system};

/// When a loop runs its full passes, besides the one it starts with.
#[derive(Clone, clap::Args)]
pub struct Passes {
    /// Seconds between full passes (0: none after the first).
    #[arg(long, default_value_t = 300)]
    pub anti_entropy: u64,
    /// Also a full pass at the times of this cron pattern (UTC; five
    /// fields, or six with seconds first). Repeatable.
    #[arg(long, value_name = "CRON")]
    pub schedule: Vec<String>,
}

/// Starts the loop that keeps `target` like `source` (a full pass first,
/// then as `passes` says), with its events.
pub fn start(
    config: &Config,
    source: &str,
    target: &str,
    passes: &Passes,
) -> Result<(LoopHandle, Receiver<LoopEvent>), Failure> {
    let (followed, feed) = config.open_with_feed(source, &format!("diffsync-watch-{target}"))?;
    let journal = Arc::new(Mutex::new(config.journal()?));
    let kept = config.open(target)?;
    let every = (passes.anti_entropy > 0).then(|| Duration::from_secs(passes.anti_entropy));
    let (source, target) = (source.to_string(), target.to_string());
    // Each system is moved into the loop, whatever its store.
    with_system!(followed, followed => with_system!(kept, kept => {
        let recorded = diffsync::Layered::new(kept, diffsync_journal::Recorder::new(journal, &source, &target));
        let mut builder = ReconcileLoop::new(OneWay::new(
            Arc::new(Mutex::new(followed)),
            vec![Arc::new(Mutex::new(recorded))],
        ))
        .feed(feed)
        .anti_entropy(every)
        // Names the loop in its metrics (`loop="source->target"`).
        .origin(format!("{source}->{target}"));
        for pattern in &passes.schedule {
            builder = builder.schedule(pattern)?;
        }
        let events = builder.subscribe();
        Ok((builder.spawn()?, events))
    }))
}

/// Runs the loop until the process is stopped, printing what it does.
pub fn print(config: &Config, source: &str, target: &str, passes: &Passes) -> Result<u8, Failure> {
    let (_running, events) = start(config, source, target, passes)?;
    let now = || chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f UTC");
    crate::say!("{} watching {source} -> {target}", now());
    for event in events {
        if let Some(line) = describe(&event) {
            crate::say!("{} {line}", now());
        }
    }
    Ok(0)
}

/// An event in a line (`None` for the ones not worth one).
pub fn describe(event: &LoopEvent) -> Option<String> {
    Some(match event {
        LoopEvent::Synced {
            applied,
            failed,
            latency,
            ..
        } => {
            format!(
                "synced: {applied} applied, {failed} failed, {} ms after the change",
                latency.as_millis()
            )
        }
        LoopEvent::FullPass {
            reason,
            repaired,
            failed,
            error,
            ..
        } => match error {
            Some(e) => format!("full pass ({reason}) failed: {e}"),
            None => format!("full pass ({reason}): {repaired} repaired, {failed} failed"),
        },
        LoopEvent::Failed {
            subject,
            error,
            retry_in,
        } => {
            format!("failed: {subject}: {error} (again in {} ms)", retry_in.as_millis())
        }
        LoopEvent::Gap { .. } => "the feed may have missed changes: a full pass follows".into(),
        LoopEvent::Progress { .. } | LoopEvent::Started => return None,
        other => format!("{other:?}"),
    })
}
