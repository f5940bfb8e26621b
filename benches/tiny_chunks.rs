//! Set a new, still empty repository's chunker to FastCDC's smallest sizes (min 64,
//! avg 256, max 1024 bytes), so that a few hundred MiB of data fill its index with
//! millions of chunks: what `benches/index_scale.sh` and `benches/maint.sh` need to
//! show a huge index on a small disk. The config is decoded, changed and encoded with
//! the engine's own code, so its checksum (format version 2 and later) stays valid;
//! editing the JSON by hand would make every later command refuse the repository.
//!
//! Run (after `cbsnap --repo REPO init`, before the first snapshot):
//!
//! ```text
//! cargo bench --bench tiny_chunks --no-run   # prints the binary's path
//! target/release/deps/tiny_chunks-* REPO
//! ```
//!
//! Without an argument it prints the usage and exits 0 (so `cargo bench` runs it
//! harmlessly). Exit 1, with the reason, when the config cannot be read or written.

use std::path::Path;

use cbsnap::config::RepoConfig;

fn main() {
    let Some(repo) = std::env::args().nth(1).filter(|a| a != "--bench") else {
        eprintln!("usage: tiny_chunks REPO   (sets REPO/config's chunker to 64/256/1024 bytes)");
        return;
    };
    if let Err(e) = set(Path::new(&repo)) {
        eprintln!("tiny_chunks: {repo}: {e}");
        std::process::exit(1);
    }
}

fn set(repo: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let path = repo.join("config");
    let mut cfg = RepoConfig::decode(&std::fs::read(&path)?)?;
    if repo.join("snapshots").read_dir()?.next().is_some() {
        return Err("the repository has snapshots; its chunker must not change".into());
    }
    cfg.chunker.min_size = 64;
    cfg.chunker.avg_size = 256;
    cfg.chunker.max_size = 1024;
    cfg.chunker.validate()?;
    std::fs::write(&path, cfg.encode())?;
    Ok(())
}
