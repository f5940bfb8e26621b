//! Integration tests of the maintenance commands: forget, prune, check, stats, diff,
//! mirror and with-lock, run through the real binary on temporary repositories.

mod check;
mod check_oversize;
mod common;
mod concurrency;
mod forget_prune;
mod mirror;
mod stats_diff;
