//! Links RocksDB statically from Debian's `librocksdb-dev` (`librocksdb.a`, 7.8.x)
//! when `ROCKSDB_STATIC` is set, as `.cargo/config.toml` does. Shared by the fuzz
//! crate (`fuzz/Cargo.toml`, `build = "../build.rs"`).
//!
//! `librocksdb-sys` then links only the archive; the compression libraries it was
//! built against (snappy, LZ4, bzip2, zlib) are added here as shared libraries, as
//! linker arguments: those go after every library on the command line, where the
//! linker's `--as-needed` sees the archive's references to them. zstd is not among
//! them: the `zstd` crate links its own copy (1.5.7), which resolves RocksDB's
//! references to it; the index never calls them (its tables are Snappy-compressed,
//! RocksDB's default). Whoever turns zstd on for the index should check that pairing
//! against the 1.5.4 headers Debian built RocksDB with.
//! Link arguments reach only this package's binaries, tests and benches, hence
//! the fuzz crate's use of this file.
//!
//! Why static: a cold start of the dynamically linked binary spent 0.06–0.09 s more
//! (docs/BENCHMARKS.md, "Issue 9, sixth pass"): the dynamic loader binds thousands
//! of C++ symbols of the 11 MB `librocksdb.so` and faults in its pages, of which
//! cbsnap uses a small part; the static link keeps only what is referenced.

fn main() {
    // Only this: a `rerun-if-changed=build.rs` would name `fuzz/build.rs` for the fuzz
    // crate (paths are the using package's) and rerun there every time; cargo reruns
    // a build script whose own source changed anyway.
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    if std::env::var_os("ROCKSDB_STATIC").is_some() {
        for lib in ["snappy", "lz4", "bz2", "z"] {
            println!("cargo:rustc-link-arg=-l{lib}");
        }
    }
}
