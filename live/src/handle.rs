//! The handle that controls a running loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::events::{LoopEvent, subscribe};

/// What the handle asks of the loop's thread.
pub(crate) enum Command {
    Trigger,
    Shutdown,
}

/// Controls a running loop.
pub struct LoopHandle {
    pub(crate) cmd: Sender<Command>,
    pub(crate) thread: Option<JoinHandle<()>>,
    pub(crate) listeners: Arc<Mutex<Vec<Sender<LoopEvent>>>>,
    pub(crate) queued: Arc<AtomicUsize>,
}

impl LoopHandle {
    /// Lifecycle events from now on.
    pub fn subscribe(&self) -> Receiver<LoopEvent> {
        subscribe(&self.listeners)
    }
    /// Runs a full pass as soon as the current step is done.
    pub fn trigger(&self) {
        let _ = self.cmd.send(Command::Trigger);
    }
    /// Keys waiting to be synced (debouncing, or waiting for a retry), as
    /// of the loop's last step.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
    /// Whether the loop's thread still runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
    /// Stops the loop after its current step and waits for it.
    pub fn shutdown(mut self) {
        self.stop();
    }
    fn stop(&mut self) {
        let _ = self.cmd.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LoopHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
