//! Integration tests: the real `cbsnap` binary on real directories, tar streams and
//! Docker volumes, in one binary. Organised by intent, one folder each; the shared
//! helpers are in `util`.

mod util;

/// The structure of the code: the layers of docs/ARCHITECTURE.md.
mod architecture;
/// Every storage backend: the same round trip, dedup, failed-upload and two-host
/// tests against a path and a remote repository.
mod backends;
/// What goes in comes out: snapshots and restores of directories and tar streams.
mod data;
/// Docker volumes and stacks against the real engine.
mod docker;
/// The on-disk format as a contract: old repositories stay readable.
mod format;
/// Maintenance commands: check, forget, prune, mirror, stats, diff, with-lock.
mod maintenance;
/// What an operator meets: command hints, scripts, hooks.
mod operator;
/// Failure: crashes, lost writes, damaged repositories, bad input.
mod safety;
