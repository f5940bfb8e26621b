//! Pack files are read back from disk by `check`, index rebuilds and restore; a
//! damaged or hostile pack must yield errors, never a panic or an out-of-bounds read.
//!
//! The trailer is protected by a BLAKE3 checksum that a fuzzer cannot forge, so the
//! first input byte picks a mode:
//! - odd: the rest of the input is the pack file, byte for byte;
//! - even: the rest is `data area || trailer entries`, the number of entries is
//!   `input[0] / 2 % 16`, and the harness writes a valid header and a footer with the
//!   correct entry count, checksum and magic, so the fuzzer reaches the entry decoder,
//!   the bounds checks, `read_stored` and `decode_blob`.
//!
//! Properties: no panic; every entry `read_trailer` returns lies inside the data area
//! (checked here with checked arithmetic, independently of the reader's own check);
//! `read_stored` of such an entry succeeds and `decode_blob` returns without panicking.

#![no_main]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::OnceLock;

use cbsnap::codec;
use cbsnap::pack::{self, ENTRY_LEN, FOOTER_LEN};
use libfuzzer_sys::fuzz_target;

/// One unnamed temp file reused by every run (creating a file per input is slow).
fn file() -> &'static Mutex<File> {
    static F: OnceLock<Mutex<File>> = OnceLock::new();
    F.get_or_init(|| Mutex::new(tempfile::tempfile().expect("create a temp file")))
}

fn build(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    if mode & 1 == 1 {
        return rest.to_vec();
    }
    let n = (mode as usize / 2) % 16;
    let tlen = (n * ENTRY_LEN).min(rest.len());
    let (blobs, trailer) = rest.split_at(rest.len() - tlen);
    let mut out = codec::header(pack::MAGIC, pack::VERSION).to_vec();
    out.extend_from_slice(blobs);
    out.extend_from_slice(trailer);
    out.extend_from_slice(&((tlen / ENTRY_LEN) as u32).to_le_bytes());
    out.extend_from_slice(cbsnap::Id::hash(trailer).as_bytes());
    out.extend_from_slice(pack::TRAILER_MAGIC);
    out
}

fuzz_target!(|data: &[u8]| {
    let bytes = build(data);
    let guard = file().lock().unwrap_or_else(|e| e.into_inner());
    guard.set_len(0).expect("truncate the temp file");
    guard.write_all_at(&bytes, 0).expect("write the temp file");
    let len = bytes.len() as u64;

    let Ok(entries) = pack::read_trailer(&guard, len, &cbsnap::crypto::Crypt::Plain) else {
        return;
    };
    let data_end = len - FOOTER_LEN as u64 - (entries.len() * ENTRY_LEN) as u64;
    for e in &entries {
        let end = e.offset.checked_add(e.stored_len as u64);
        assert!(
            e.offset >= codec::HEADER_LEN as u64 && end.is_some_and(|end| end <= data_end),
            "read_trailer accepted an entry outside the data area: offset {} len {} (data ends at {data_end})",
            e.offset,
            e.stored_len
        );
        let stored = pack::read_stored(&guard, e.offset, e.stored_len)
            .expect("an accepted entry can be read");
        let _ = pack::decode_blob(e, &stored, &cbsnap::crypto::Crypt::Plain);
    }
});
