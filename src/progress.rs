//! Progress reporting and cancellation for long work, passed in by the caller.
//!
//! The library never draws anything: it tells a [`Progress`] what it is doing, and checks a
//! [`Cancel`] token between steps. The command line maps both onto progress bars and Ctrl-C;
//! an app can show them in its own way or ignore them ([`Hooks::default`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Receives progress reports. Every method has an empty default, so an implementation only
/// overrides what it shows.
pub trait Progress: Send + Sync {
    /// A task of `total` steps named `name` begins (the previous one, if any, has finished).
    fn start(&self, _name: &str, _total: u64) {}
    /// The current task has reached `done` of its steps.
    fn set(&self, _done: u64) {}
    /// A short status line for the current task (e.g. the latest loss).
    fn message(&self, _msg: &str) {}
    /// The current task is over (`completed` is false when it stopped early).
    fn finish(&self, _completed: bool) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}

/// A cancellation token: clones share one flag. Long work checks it between steps and stops
/// with [`crate::Error::Cancelled`], leaving its last consistent state behind.
#[derive(Debug, Default, Clone)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token that is not cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the work holding a clone of this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once cancelled.
    pub fn check(&self) -> crate::Result<()> {
        match self.is_cancelled() {
            true => Err(crate::Error::Cancelled),
            false => Ok(()),
        }
    }
}

/// What a caller passes to long work: where progress goes and the token that stops it.
/// The default shows nothing and is never cancelled.
#[derive(Clone)]
pub struct Hooks {
    /// Receives the progress reports.
    pub progress: Arc<dyn Progress>,
    /// Checked between steps.
    pub cancel: Cancel,
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            progress: Arc::new(Silent),
            cancel: Cancel::new(),
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

impl Hooks {
    /// Progress goes to `progress`; never cancelled unless [`Hooks::with_cancel`] is used.
    pub fn new(progress: Arc<dyn Progress>) -> Hooks {
        Hooks {
            progress,
            cancel: Cancel::new(),
        }
    }

    /// The same hooks, stopped by `cancel`.
    pub fn with_cancel(mut self, cancel: Cancel) -> Hooks {
        self.cancel = cancel;
        self
    }

    /// Starts a task of `total` steps; it reports its end when dropped.
    pub(crate) fn task(&self, name: &str, total: u64) -> Task<'_> {
        self.progress.start(name, total);
        Task {
            hooks: self,
            done: 0,
            completed: false,
        }
    }
}

/// One running task: counts steps and reports the end when dropped.
pub(crate) struct Task<'a> {
    hooks: &'a Hooks,
    done: u64,
    completed: bool,
}

impl Task<'_> {
    /// `steps` more steps are done; `Err(Cancelled)` when the caller has cancelled.
    pub fn inc(&mut self, steps: u64) -> crate::Result<()> {
        self.done += steps;
        self.hooks.progress.set(self.done);
        self.hooks.cancel.check()
    }

    /// Moves to step `done` (for work resumed part-way).
    pub fn set(&mut self, done: u64) {
        self.done = done;
        self.hooks.progress.set(done);
    }

    /// A status line for the task.
    pub fn message(&self, msg: &str) {
        self.hooks.progress.message(msg);
    }

    /// The task ran to its end.
    pub fn complete(mut self) {
        self.completed = true;
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        self.hooks.progress.finish(self.completed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl Progress for Log {
        fn start(&self, name: &str, total: u64) {
            self.0.lock().unwrap().push(format!("start {name} {total}"));
        }
        fn set(&self, done: u64) {
            self.0.lock().unwrap().push(format!("set {done}"));
        }
        fn finish(&self, completed: bool) {
            self.0.lock().unwrap().push(format!("finish {completed}"));
        }
    }

    #[test]
    fn a_task_reports_its_steps_its_end_and_stops_when_cancelled() {
        let log = Arc::new(Log::default());
        let cancel = Cancel::new();
        let hooks = Hooks::new(log.clone()).with_cancel(cancel.clone());
        {
            let mut t = hooks.task("calibrate", 3);
            t.inc(2).unwrap();
            cancel.cancel();
            assert!(matches!(t.inc(1), Err(crate::Error::Cancelled)));
        }
        hooks.task("again", 1).complete();
        let got = log.0.lock().unwrap().clone();
        let want = [
            "start calibrate 3",
            "set 2",
            "set 3",
            "finish false",
            "start again 1",
            "finish true",
        ];
        assert_eq!(got, want);
    }
}
