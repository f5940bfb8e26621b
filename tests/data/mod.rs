mod crypto;
mod dedup;
mod live;
mod mount;
mod restore_safety;
mod roundtrip;
mod tar_import;
mod tar_spill;
