//! Snapshot files and the repository `config` are read from disk on every command.
//!
//! Both are `magic || u32 version || JSON` (a version 2 config then has a BLAKE3
//! checksum of the bytes before it). Each input is tried as a whole file and,
//! so that the fuzzer spends its time in the JSON rather than on the magic, also
//! behind a valid header.
//!
//! Properties: neither decoder panics; what they accept re-encodes and decodes to the
//! same value; an accepted config names chunker parameters the chunker can run with
//! (a config is untrusted input too: it must be refused with an error, not make a
//! later `snapshot` panic).

#![no_main]

use cbsnap::codec;
use cbsnap::config::{self, RepoConfig};
use cbsnap::snapshot::{self, Snapshot};
use libfuzzer_sys::fuzz_target;

fn with_header(magic: &[u8; 8], version: u32, body: &[u8]) -> Vec<u8> {
    let mut v = codec::header(magic, version).to_vec();
    v.extend_from_slice(body);
    v
}

fn check_snapshot(buf: &[u8]) {
    if let Ok(s) = Snapshot::decode(buf) {
        let back = Snapshot::decode(&s.encode()).expect("an encoded snapshot decodes");
        assert_eq!(back, s, "snapshot round trip changed the value");
    }
}

fn check_config(buf: &[u8]) {
    if let Ok(c) = RepoConfig::decode(buf) {
        let back = RepoConfig::decode(&c.encode()).expect("an encoded config decodes");
        assert_eq!(back, c, "config round trip changed the value");
        cbsnap::chunker::chunk_stream(
            &[0u8; 16][..],
            &c.chunker,
            |_| Ok::<(), std::io::Error>(()),
            |e| e,
        )
        .expect("chunking 16 bytes from memory");
    }
}

fuzz_target!(|data: &[u8]| {
    check_snapshot(data);
    check_config(data);
    check_snapshot(&with_header(snapshot::MAGIC, snapshot::VERSION, data));
    // Version 1 has no checksum; from version 2 on the fuzzer cannot forge one, so
    // the harness appends it.
    check_config(&with_header(config::MAGIC, 1, data));
    let mut sealed = with_header(config::MAGIC, config::FORMAT_VERSION, data);
    let sum = blake3::hash(&sealed);
    sealed.extend_from_slice(sum.as_bytes());
    check_config(&sealed);
});
