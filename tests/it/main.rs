//! Integration tests: the real `cbsnap` binary on real directories, tar streams and
//! Docker volumes. Organised by intent, one module each.

mod common;
#[path = "../common/docker.rs"]
mod docker_fixture;

mod crash;
mod dedup;
mod docker;
mod errors;
mod live;
mod mount;
mod ops;
mod ops_scripts;
mod restore_safety;
mod roundtrip;
mod stack;
