//! The `cbsnap` command: parses arguments, calls one engine function, prints the
//! result. Exit codes (the policy is in `src/error.rs`): 0 ok; 1 error, including
//! states of the environment (a volume in use); 2 bad usage only; 3 finished but not
//! exactly; 130/143 interrupted.

mod cli;

fn main() {
    limit_malloc_arenas();
    std::process::exit(cli::run());
}

/// Arenas glibc's `malloc` may use, unless `MALLOC_ARENA_MAX` says otherwise.
const MALLOC_ARENAS: i32 = 2;

/// glibc gives each thread that allocates an arena of its own, up to eight per core,
/// and memory freed in one arena is not reused by another: with the pipeline's dozen
/// threads a snapshot's peak RSS was twice its peak heap (90–93 MiB against 42.8 MiB,
/// heaptrack, 216,000 new blobs). [`MALLOC_ARENAS`] arenas measured 70–75 MiB and no
/// slower (`docs/BENCHMARKS.md`, "Memory (E)"). Runs first, while no other thread exists; an
/// operator's `MALLOC_ARENA_MAX` is left to glibc.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` only sets a tunable of the allocator; no other thread
        // exists yet to race with it. A refusal (0) leaves glibc's default.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}
