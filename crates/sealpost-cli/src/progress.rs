//! Progress output for slow steps: an indicatif spinner on a terminal (none when stderr is
//! not a terminal or logs are on), and a `✓ …` line on stderr when the step is done.

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static SPINNERS: AtomicBool = AtomicBool::new(true);

/// Spinners off (e.g. while tracing logs go to stderr, which they would garble).
pub fn set_enabled(enabled: bool) {
    SPINNERS.store(enabled, Ordering::Relaxed);
}

/// A step in progress; cleared when dropped (e.g. on an error).
pub struct Step {
    bar: ProgressBar,
}

impl Step {
    /// Starts a step described by `what` ("Registering…").
    pub fn start(what: &str) -> Self {
        let bar = if SPINNERS.load(Ordering::Relaxed) {
            // Draws to stderr, and not at all unless stderr is a terminal.
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}") {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(80));
        Self { bar }
    }

    /// Finishes the step with a result line.
    pub fn done(self, result: &str) {
        self.bar.finish_and_clear();
        eprintln!("✓ {result}");
    }

    /// Finishes the step silently.
    pub fn clear(self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}
