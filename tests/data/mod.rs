mod crypto;
mod dedup;
mod live;
mod mount;
mod restore_reads;
mod restore_safety;
mod roundtrip;
mod tar_import;
