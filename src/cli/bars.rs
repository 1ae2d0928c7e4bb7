//! The command line's view of the library's progress reports: indicatif bars on stderr when it
//! is a terminal, a plain line at most every half minute when it is not (a log file of a long
//! run then shows how far it got), nothing with --quiet; and Ctrl-C as cancellation.

use crate::progress::{Cancel, Hooks, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One bar per task, replaced when the next task starts.
struct Bars {
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

/// The current task as plain lines: its start, its state at most every `every`, its end.
struct Lines {
    out: Mutex<Box<dyn Write + Send>>,
    every: Duration,
    task: Mutex<Option<LineTask>>,
}

struct LineTask {
    name: String,
    total: u64,
    done: u64,
    msg: String,
    started: Instant,
    printed: Instant,
}

impl LineTask {
    fn line(&self, state: &str) -> String {
        let pct = match self.total {
            0 => 100.0,
            t => 100.0 * self.done as f64 / t as f64,
        };
        let mut s = format!(
            "{}: {state} {}/{} ({pct:.0}%) after {:.0} s",
            self.name,
            self.done,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
        if !self.msg.is_empty() {
            s.push_str(" | ");
            s.push_str(&self.msg);
        }
        s
    }
}

impl Lines {
    fn print(&self, line: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A log that cannot be written must not stop the work it reports on.
        let _ = writeln!(out, "{line}");
    }

    /// Updates the task with `f`, then prints its state if `every` has passed since the last.
    fn update(&self, f: impl FnOnce(&mut LineTask)) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = task.as_mut() {
            f(t);
            if t.printed.elapsed() >= self.every {
                t.printed = Instant::now();
                self.print(&t.line("at"));
            }
        }
    }
}

impl Progress for Lines {
    fn start(&self, name: &str, total: u64) {
        let now = Instant::now();
        self.print(&format!("{name}: {total} steps"));
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(LineTask {
            name: name.to_string(),
            total,
            done: 0,
            msg: String::new(),
            started: now,
            printed: now,
        });
    }

    fn set(&self, done: u64) {
        self.update(|t| t.done = done);
    }

    fn message(&self, msg: &str) {
        self.update(|t| t.msg = msg.to_string());
    }

    fn finish(&self, completed: bool) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.print(&t.line(if completed { "done" } else { "stopped at" }));
        }
    }
}

/// Bars on a terminal, plain lines otherwise, nothing when `quiet`; never cancelled.
pub fn hooks(quiet: bool) -> Hooks {
    if quiet {
        return Hooks::default();
    }
    if std::io::stderr().is_terminal() {
        return Hooks::new(Arc::new(Bars {
            bar: Mutex::new(None),
        }));
    }
    Hooks::new(Arc::new(Lines {
        out: Mutex::new(Box::new(std::io::stderr())),
        every: Duration::from_secs(30),
        task: Mutex::new(None),
    }))
}

/// Progress as `hooks`, cancelled by Ctrl-C (the work then stops at its next step and leaves a
/// consistent state, e.g. a checkpoint).
pub fn hooks_with_ctrl_c(quiet: bool) -> Hooks {
    let cancel = Cancel::new();
    let on_signal = cancel.clone();
    if let Err(e) = ctrlc::set_handler(move || on_signal.cancel()) {
        log::warn!("Ctrl-C handler not installed: {e}");
    }
    hooks(quiet).with_cancel(cancel)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(every: Duration) -> (Lines, Shared) {
        let out = Shared::default();
        let l = Lines {
            out: Mutex::new(Box::new(out.clone())),
            every,
            task: Mutex::new(None),
        };
        (l, out)
    }

    fn text(out: &Shared) -> String {
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn plain_lines_report_start_state_and_end() {
        let (l, out) = lines(Duration::ZERO);
        l.start("brecq", 4);
        l.set(1);
        l.message("block 1: MSE 2.0e-3");
        l.finish(true);
        l.start("logits", 10);
        l.set(3);
        l.finish(false);
        let t = text(&out);
        let got: Vec<&str> = t
            .lines()
            .map(|s| s.split(" after ").next().unwrap())
            .collect();
        assert_eq!(
            got,
            [
                "brecq: 4 steps",
                "brecq: at 1/4 (25%)",
                "brecq: at 1/4 (25%)",
                "brecq: done 1/4 (25%)",
                "logits: 10 steps",
                "logits: at 3/10 (30%)",
                "logits: stopped at 3/10 (30%)",
            ]
        );
        assert!(t.contains("s | block 1: MSE 2.0e-3\n"), "{t}");
    }

    #[test]
    fn plain_lines_wait_their_interval() {
        let (l, out) = lines(Duration::from_secs(3600));
        l.start("calibrate", 100);
        for i in 1..=100 {
            l.set(i);
        }
        l.finish(true);
        // No state lines in between: a fast task prints its start and its end only.
        let t = text(&out);
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(t.contains("calibrate: done 100/100 (100%)"), "{t}");
    }
}
