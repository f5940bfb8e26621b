//! Integration tests: the real `cbsnap` binary on real directories and tar streams.
//! Organised by intent, one module each.

mod common;

mod crash;
mod dedup;
mod errors;
mod roundtrip;
