//! The command line's view of the library's progress reports: indicatif bars on stderr
//! (hidden with --quiet or when stderr is not a terminal), and Ctrl-C as cancellation.

use crate::progress::{Cancel, Hooks, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::{Arc, Mutex};

/// One bar per task, replaced when the next task starts.
struct Bars {
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f(b);
        }
    }
}

impl Progress for Bars {
    fn start(&self, name: &str, total: u64) {
        if self.quiet {
            return;
        }
        let b = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        b.set_style(style);
        b.set_prefix(name.to_string());
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(b);
    }

    fn set(&self, done: u64) {
        self.with_bar(|b| b.set_position(done));
    }

    fn message(&self, msg: &str) {
        self.with_bar(|b| b.set_message(msg.to_string()));
    }

    fn finish(&self, completed: bool) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            match completed {
                true => b.finish_and_clear(),
                false => b.abandon(),
            }
        }
    }
}

/// Progress bars unless `quiet`; never cancelled.
pub fn hooks(quiet: bool) -> Hooks {
    Hooks::new(Arc::new(Bars {
        quiet,
        bar: Mutex::new(None),
    }))
}

/// Progress bars unless `quiet`, cancelled by Ctrl-C (the work then stops at its next step
/// and leaves a consistent state, e.g. a checkpoint).
pub fn hooks_with_ctrl_c(quiet: bool) -> Hooks {
    let cancel = Cancel::new();
    let on_signal = cancel.clone();
    if let Err(e) = ctrlc::set_handler(move || on_signal.cancel()) {
        log::warn!("Ctrl-C handler not installed: {e}");
    }
    hooks(quiet).with_cancel(cancel)
}
