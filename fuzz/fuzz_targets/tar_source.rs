//! Tar streams come from `cbsnap snapshot --tar`, old `tar czf` backups and the
//! Docker archive API: they are the most hostile input cbsnap reads.
//!
//! The input is fed to `source::tar::read_tar` (which detects gzip and zstd by their
//! magic, so compressed streams are covered too) with a sink that reads every file's
//! content to the end through a fixed buffer, so memory stays bounded whatever sizes
//! the headers claim.
//!
//! Properties: no panic; every path the source yields is either empty (the root) or
//! components that are each `tree::valid_name` (hence no `..`, `.`, empty, `/` or NUL);
//! the same holds for hard-link targets; and every node can be stored: it survives
//! `tree::encode` → `tree::decode` unchanged (the ingest pipeline stores exactly
//! these nodes, and `encode` panics on fields longer than their length prefix).

#![no_main]

use cbsnap::source::{Content, Entry, Sink};
use cbsnap::tree::{self, NodeKind};
use cbsnap::Id;
use libfuzzer_sys::fuzz_target;

/// Stop reading one file's content after this much (a zstd frame of a few bytes can
/// claim gigabytes); `read_tar` drains the rest itself.
const MAX_CONTENT: u64 = 64 << 20;

struct Check {
    buf: Vec<u8>,
}

/// At most 80 bytes of a path for a message (hostile paths can be megabytes long).
fn short(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned()
}

fn check_path(what: &str, path: &[u8]) {
    if path.is_empty() {
        return;
    }
    // What must never come out is a path that escapes or aliases the root: an empty,
    // `.` or `..` component, or a NUL. A component too long for the tree format is
    // the ingest's to skip and name in the snapshot's errors.
    for comp in path.split(|b| *b == b'/') {
        assert!(
            !comp.is_empty() && comp != b"." && comp != b".." && !comp.contains(&0),
            "read_tar yielded a {what} with the unsafe component {:?} ({} bytes) in {:?}",
            short(comp),
            comp.len(),
            short(path)
        );
    }
}

impl Sink for Check {
    fn entry(&mut self, e: Entry, content: Content<'_>) -> cbsnap::Result<()> {
        check_path("path", &e.path);
        if let Some(t) = &e.hardlink_to {
            check_path("hard-link target", t);
        }

        // The node as ingest would store it: named after the last component.
        if let Some(name) = e
            .path
            .rsplit(|b| *b == b'/')
            .next()
            .filter(|n| !n.is_empty())
        {
            let mut n = e.node.clone();
            n.name = name.to_vec();
            if n.kind == NodeKind::Dir {
                n.content = vec![Id::default()];
            }
            // The ingest skips a node that does not fit the tree format and names it
            // in the snapshot's errors (`tree::fits`); every other node must survive
            // a round trip, once the ingest has cut owner names to what the format
            // stores (and recorded it).
            if tree::fits(&n).is_ok() {
                tree::truncate_owner_names(&mut n);
                let back = tree::decode(&tree::encode(std::slice::from_ref(&n)));
                assert_eq!(
                    back.as_deref(),
                    Ok(std::slice::from_ref(&n)),
                    "node does not survive a tree round trip"
                );
            }
        }

        if let Content::Stream(r) = content {
            let mut total = 0u64;
            while total < MAX_CONTENT {
                match r.read(&mut self.buf) {
                    Ok(0) => break,
                    Ok(k) => total += k as u64,
                    // Errors are the stream's; read_tar reports them.
                    Err(_) => break,
                }
            }
        }
        Ok(())
    }

    fn warn(&mut self, _path: &[u8], _error: String) {}
}

fuzz_target!(|data: &[u8]| {
    let mut sink = Check {
        buf: vec![0u8; 64 << 10],
    };
    let _ = cbsnap::source::tar::read_tar(data, b"", &mut sink);
});
