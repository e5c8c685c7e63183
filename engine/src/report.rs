//! What a run prints: one line per stage event on stderr, progress bars for
//! running stages when stderr is a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Prints stage events and owns the progress bars.
#[derive(Clone)]
pub struct Reporter {
    multi: MultiProgress,
    live: bool,
    quiet: bool,
}

impl Reporter {
    /// A reporter; bars are drawn only on a terminal and when not `quiet`.
    pub fn new(quiet: bool) -> Self {
        let live = !quiet && std::io::stderr().is_terminal();
        let target = if live { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Reporter { multi: MultiProgress::with_draw_target(target), live, quiet }
    }

    /// Print one line above the bars.
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        if self.live {
            // Only fails when the terminal is gone; there is nowhere left to print.
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    /// A bar for a running stage.
    pub fn bar(&self, stage: &str) -> ProgressBar {
        if !self.live {
            return ProgressBar::hidden();
        }
        let bar = self.multi.add(ProgressBar::new_spinner());
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_prefix(stage.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// Remove a finished bar.
    pub fn done(&self, bar: &ProgressBar) {
        bar.finish_and_clear();
        self.multi.remove(bar);
    }
}
