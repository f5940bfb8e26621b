//! Integration tests: the real `cbsnap` binary on real directories, tar streams and
//! Docker volumes. Organised by intent, one module each.

mod common;
#[path = "../common/docker.rs"]
mod docker_fixture;

mod crash;
mod dedup;
mod docker;
mod docker_trust;
mod errors;
mod fixture;
mod live;
mod location;
mod lost_writes;
mod mount;
mod ops;
mod ops_scripts;
mod restore_safety;
mod roundtrip;
mod run_hooks;
mod stack;
mod tar_import;
mod trust;
