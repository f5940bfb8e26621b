//! The compute limit of an initial snapshot: what reading every file, FastCDC,
//! BLAKE3 and zstd cost on all cores, writing nothing (no packs, no index, no trees).
//! A snapshot cannot be faster than this on the same machine; `docs/BENCHMARKS.md`
//! reports the initial snapshot as a percentage of it.
//!
//! Every stage is the engine's: FastCDC 2020 ([`Chunker`], as in
//! `cbsnap::chunker::chunk_stream`), [`Id::hash`], [`compress`], with the repository
//! defaults (16/64/256 KiB, zstd level 3). Files are processed in parallel (rayon),
//! and the chunks of one file are hashed and compressed on every core, so one big
//! file keeps all cores busy too.
//!
//! Run:
//!
//! ```text
//! cargo bench --bench limit -- DIR [ZSTD_LEVEL]
//! taskset -c 0 target/release/deps/limit-* DIR    # one core
//! ```
//!
//! Prints one line: files, bytes, chunks, seconds, MiB/s and the stored fraction.
//! Without a directory it prints the usage and exits 0 (so `cargo bench` runs it
//! harmlessly).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cbsnap::chunker::Chunker;
use cbsnap::config::ChunkerParams;
use cbsnap::id::Id;
use cbsnap::pack::compress;

/// Regular files under `root`, symlinks not followed, with an explicit stack.
fn files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Totals {
    bytes: AtomicU64,
    chunks: AtomicU64,
    stored: AtomicU64,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(root) = args.first().map(PathBuf::from) else {
        eprintln!("usage: cargo bench --bench limit -- DIR [ZSTD_LEVEL]");
        return;
    };
    let level: i32 = match args.get(1).map(|l| l.parse()) {
        None => 3,
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            eprintln!("limit: ZSTD_LEVEL must be an integer: {e}");
            std::process::exit(2);
        }
    };
    let params = ChunkerParams::default();
    let t = Totals::default();
    let started = Instant::now();
    let list = match files(&root) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("limit: cannot walk {}: {e}", root.display());
            std::process::exit(1);
        }
    };
    use rayon::prelude::*;
    // Each file is chunked by whichever worker holds its chunk iterator (par_bridge),
    // and its chunks are hashed and compressed by all of them: one big file uses
    // every core, and only a few chunks per core are in memory.
    let failed = list.par_iter().try_for_each(|path| {
        let mut cdc = Chunker::new(File::open(path)?, &params);
        std::iter::from_fn(|| cdc.next_chunk().map(|c| c.map(<[u8]>::to_vec)).transpose())
            .par_bridge()
            .try_for_each(|c| {
                let c = c?;
                std::hint::black_box(Id::hash(&c));
                let (stored, _) = compress(&c, level);
                t.bytes.fetch_add(c.len() as u64, Ordering::Relaxed);
                t.chunks.fetch_add(1, Ordering::Relaxed);
                t.stored.fetch_add(stored.len() as u64, Ordering::Relaxed);
                Ok::<(), std::io::Error>(())
            })
    });
    if let Err(e) = failed {
        eprintln!("limit: read failed: {e}");
        std::process::exit(1);
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = t.bytes.load(Ordering::Relaxed);
    println!(
        "limit: {} files, {} bytes, {} chunks, {:.3} s, {:.1} MiB/s, zstd {level} stores {:.1}%, {} threads",
        list.len(),
        bytes,
        t.chunks.load(Ordering::Relaxed),
        secs,
        bytes as f64 / secs / (1 << 20) as f64,
        100.0 * t.stored.load(Ordering::Relaxed) as f64 / bytes.max(1) as f64,
        rayon::current_num_threads(),
    );
}
