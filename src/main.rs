//! The `cbsnap` command: parses arguments, calls one engine function, prints the
//! result. Exit codes (the policy is in `src/error.rs`): 0 ok; 1 error, including
//! states of the environment (a volume in use); 2 bad usage only; 3 finished but not
//! exactly; 130/143 interrupted.

mod cli;

fn main() {
    tune_malloc();
    std::process::exit(cli::run());
}

/// Arenas glibc's `malloc` may use, unless `MALLOC_ARENA_MAX` says otherwise.
const MALLOC_ARENAS: i32 = 2;

/// Bytes from which glibc's `malloc` maps an allocation of its own, unless
/// `MALLOC_MMAP_THRESHOLD_` says otherwise.
const MALLOC_MMAP_THRESHOLD: i32 = 384 << 10;

/// Free bytes at the top of the heap above which glibc's `free` gives memory back,
/// unless `MALLOC_TRIM_THRESHOLD_` says otherwise.
const MALLOC_TRIM_THRESHOLD: i32 = 4 << 20;

/// Keep the process's RSS near its heap (issue 9: peak RSS ≤ 64 MB).
///
/// - Arenas: glibc gives each thread that allocates an arena of its own, up to eight
///   per core, and memory freed in one arena is not reused by another: with the
///   pipeline's dozen threads a snapshot's peak RSS was twice its peak heap (90–93 MiB
///   against 42.8 MiB, heaptrack, 216,000 new blobs). [`MALLOC_ARENAS`] arenas
///   measured 70–75 MiB and no slower (`docs/BENCHMARKS.md`, "Memory (E)").
/// - Map threshold: glibc raises its threshold (128 KiB at start) up to 32 MiB each
///   time a mapped block is freed; blocks below it come from the arenas, and once
///   RocksDB's memtable blocks and the pipeline's buffers of a few hundred KiB do,
///   they stay there as holes between smaller blocks. Setting it fixes it at
///   [`MALLOC_MMAP_THRESHOLD`]: above the largest chunk (256 KiB) and its compressed
///   bound, so chunks stay in the arenas (128 KiB cost a big-file snapshot a third
///   more system time), below the index's 512 KiB memtable blocks
///   ([`cbsnap::index`]), which are mapped and given back. With it, 216,000 new blobs
///   in one snapshot peak at 61.0–62.6 MiB instead of 70.8–80.5 (`docs/BENCHMARKS.md`,
///   "Memory (Q)").
/// - Trim threshold: fixing the map threshold also stops glibc from raising the trim
///   threshold with it, which then stays at 128 KiB: a 300,000-entry tar import
///   shrank and grew the heap with `brk` 626,000 times (system time 2.75 s instead of
///   0.37). [`MALLOC_TRIM_THRESHOLD`] keeps that to a handful, RSS the same.
///
/// Runs first, while no other thread exists; an operator's `MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` is left to glibc.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (env, param, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, MALLOC_ARENAS),
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MALLOC_MMAP_THRESHOLD,
        ),
        (
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            MALLOC_TRIM_THRESHOLD,
        ),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: `mallopt` only sets a tunable of the allocator; no other thread
            // exists yet to race with it. A refusal (0) leaves glibc's default.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}
