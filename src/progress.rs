//! Progress display: a bar on a terminal (bytes, rate, ETA when the total is known,
//! current path), nothing with `-q` or when stderr is not a terminal (cron, CI).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress display; clones share it. Hidden, it still keeps the total it was
/// given ([`Progress::total`]), so callers and tests can see what would be drawn.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    total: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Progress {
    /// A progress display on stderr if it is a terminal and `quiet` is off.
    pub fn new(quiet: bool, what: &str) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {spinner} {bytes} {binary_bytes_per_sec} {wide_msg}",
            )
            .expect("template is valid"),
        );
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar: Some(bar),
            total: Default::default(),
        }
    }

    pub fn hidden() -> Progress {
        Progress {
            bar: None,
            total: Default::default(),
        }
    }

    /// Once the total is known, show a bar with an ETA.
    pub fn set_total(&self, total: u64) {
        self.total
            .store(total, std::sync::atomic::Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {percent}% {binary_bytes_per_sec} ETA {eta} {wide_msg}",
                )
                .expect("template is valid")
                .progress_chars("=> "),
            );
        }
    }

    /// The total in bytes given to [`Progress::set_total`], 0 if none yet.
    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn set_path(&self, p: &[u8]) {
        if let Some(b) = &self.bar {
            b.set_message(String::from_utf8_lossy(p).into_owned());
        }
    }

    /// Print a line above the bar; when hidden, hand it to the warnings sink
    /// ([`crate::warn::Warning::Line`]), which the binary renders.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => crate::warn::emit(crate::warn::Warning::Line(line.to_string())),
        }
    }

    /// Print a notice above the bar; when hidden, hand it to the warnings sink, which
    /// leaves it out with `-q` ([`crate::warn::Level::Notice`]).
    pub fn notice(&self, w: crate::warn::Warning) {
        match &self.bar {
            Some(b) => b.println(w.to_string()),
            None => crate::warn::emit(w),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
