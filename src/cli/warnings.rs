//! The binary's [`Sink`] for the library's warnings: `-q` and `--json` decide what
//! reaches the operator, here and nowhere else.

use std::io::Write;
use std::sync::Arc;

use cbsnap::warn::{Level, Sink, Warning};

/// Writes warnings to stderr, one line each, without panicking on a closed stderr.
/// Notices (why a command waits, what a snapshot leaves out on purpose) are left out
/// with `-q`; with `--json` they still go to stderr, which the JSON on stdout does
/// not share (a script sees why it waits).
/// Warnings are always written.
struct Stderr {
    show_notices: bool,
}

impl Sink for Stderr {
    fn warn(&self, w: &Warning) {
        if w.level() == Level::Notice && !self.show_notices {
            return;
        }
        let _ = writeln!(std::io::stderr(), "{w}");
    }
}

/// Install the sink for this process, from the global flags.
pub fn install(quiet: bool) {
    cbsnap::warn::install(Arc::new(Stderr {
        show_notices: !quiet,
    }));
}
