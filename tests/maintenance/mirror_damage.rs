//! A mirror never spreads local damage onto the good copy off-host: a damaged or
//! deleted local pack never replaces or removes the mirror's good one, a repository
//! that lacks packs its index lists is not mirrored, and a mirror never goes onto or
//! into the repository itself. Each case once exited 0 having done the harm (a
//! tester's reports); `backends::mirror_damage` runs them against S3.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::*;

/// A repository with two snapshots (two packs at least) and its good mirror `mirror/`.
fn repo_and_mirror() -> (Env, PathBuf) {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "a.bin", &random_bytes(1 << 20, 70));
    env.snapshot(&src, "data");
    write(&src, "b.bin", &random_bytes(1 << 20, 71));
    env.snapshot(&src, "data");
    let mirror = env.path("mirror");
    env.ok(&["mirror", mirror.to_str().unwrap()]);
    assert!(packs(&env.repo()).len() >= 2);
    (env, mirror)
}

/// A copy of the repository (with its index, as the operator's disk holds it) named
/// `name`, and the id of its largest pack: the one the tests damage.
fn damaged_copy(env: &Env, name: &str) -> (PathBuf, String) {
    let copy = env.path(name);
    copy_dir(&env.repo(), &copy);
    let (pack, _) = packs(&copy).into_iter().max_by_key(|(_, n)| *n).unwrap();
    (copy, pack)
}

fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Flip one bit in the middle of `path`; its size stays, its mtime is new.
fn flip_bit(path: &Path) {
    let mut b = fs::read(path).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    fs::write(path, b).unwrap();
    // A later mtime than the good copy's for sure: both may fall in one second.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(later)
        .unwrap();
}

/// The mirror still holds the good pack `pack` and checks clean, data included.
fn mirror_is_good(env: &Env, mirror: &Path, pack: &str, good: &[u8]) {
    assert!(
        fs::read(pack_path(mirror, pack)).unwrap() == good,
        "the mirror's pack {pack} was replaced or removed"
    );
    env.ok_in(mirror, &["check", "--read-data"]);
}

fn refused(o: &Output, code: i32, says: &[&str]) {
    assert_eq!(o.status.code(), Some(code), "{}", stderr(o));
    for s in says {
        assert!(stderr(o).contains(s), "no `{s}` in: {}", stderr(o));
    }
}

/// A truncated local pack is refused before anything is copied (the index recorded
/// its size); and once a command has opened the repository (the index forgot the
/// pack), the mirror still keeps its good copy: a pack it has is never sent again.
/// Then the advice works: the pack copied back from the mirror, `check` is clean.
#[test]
fn a_truncated_local_pack_never_replaces_the_mirrors_good_one() {
    let (env, mirror) = repo_and_mirror();
    let m = mirror.to_str().unwrap();
    let (dmg, pack) = damaged_copy(&env, "dmg");
    let good = fs::read(pack_path(&env.repo(), &pack)).unwrap();
    truncate(&pack_path(&dmg, &pack), good.len() as u64 / 2);

    let o = env.run(&dmg, &["mirror", m]);
    refused(&o, 1, &[&pack, "nothing was copied", "cbsnap check"]);
    mirror_is_good(&env, &mirror, &pack, &good);

    // Any command that opens the repository brings the index in step: the damaged
    // pack is no longer listed there, and the size check cannot see it.
    env.ok_in(&dmg, &["snapshots"]);
    env.ok_in(&dmg, &["mirror", m]);
    mirror_is_good(&env, &mirror, &pack, &good);

    // `check` tells the operator to copy the pack back from the mirror: it is there.
    let o = env.run(&dmg, &["check"]);
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    fs::copy(pack_path(&mirror, &pack), pack_path(&dmg, &pack)).unwrap();
    env.ok_in(&dmg, &["check", "--read-data"]);
}

/// A pack with a flipped bit (same size, new mtime) never goes over the mirror's:
/// rsync's size-and-mtime test sent it before.
#[test]
fn a_pack_with_a_flipped_bit_never_replaces_the_mirrors_good_one() {
    let (env, mirror) = repo_and_mirror();
    let (dmg, pack) = damaged_copy(&env, "dmg");
    let good = fs::read(pack_path(&env.repo(), &pack)).unwrap();
    flip_bit(&pack_path(&dmg, &pack));
    env.ok_in(&dmg, &["mirror", mirror.to_str().unwrap()]);
    mirror_is_good(&env, &mirror, &pack, &good);
}

/// A deleted local pack: `mirror --delete` is refused while the index lists the pack;
/// once the index has forgotten it, `--delete` keeps the mirror's packs (the index no
/// longer vouches that no snapshot needs them) and says why. After the pack is
/// copied back and `check` is clean, `--delete` removes pruned packs again.
#[test]
fn a_deleted_local_pack_is_never_deleted_from_the_mirror() {
    let (env, mirror) = repo_and_mirror();
    let m = mirror.to_str().unwrap();
    let (dmg, pack) = damaged_copy(&env, "dmg");
    let good = fs::read(pack_path(&env.repo(), &pack)).unwrap();
    fs::remove_file(pack_path(&dmg, &pack)).unwrap();

    let o = env.run(&dmg, &["mirror", "--delete", m]);
    refused(&o, 1, &[&pack, "missing", "nothing was copied"]);
    mirror_is_good(&env, &mirror, &pack, &good);

    env.ok_in(&dmg, &["snapshots"]);
    let o = env.run(&dmg, &["mirror", "--delete", m]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("--delete kept"), "{}", stderr(&o));
    mirror_is_good(&env, &mirror, &pack, &good);

    fs::copy(pack_path(&mirror, &pack), pack_path(&dmg, &pack)).unwrap();
    env.ok_in(&dmg, &["check"]);
    env.ok_in(&dmg, &["forget", "--keep-last", "1", "--prune"]);
    let o = env.run(&dmg, &["mirror", "--delete", m]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("--delete kept"), "{}", stderr(&o));
    assert_eq!(packs(&mirror), packs(&dmg));
    env.ok_in(&mirror, &["check", "--read-data"]);
}

/// A first mirror of a repository that lacks a pack its index lists, or whose pack
/// does not match its name, is refused and copies nothing: it made a mirror whose
/// snapshots referenced missing or damaged data, with exit 0.
#[test]
fn a_fresh_mirror_of_a_damaged_repository_is_refused() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "a.bin", &random_bytes(1 << 20, 72));
    env.snapshot(&src, "data");
    let (lost, pack) = damaged_copy(&env, "lost");
    fs::remove_file(pack_path(&lost, &pack)).unwrap();
    let fresh = env.path("fresh");
    let o = env.run(&lost, &["mirror", fresh.to_str().unwrap()]);
    refused(&o, 1, &[&pack, "missing"]);
    assert!(!fresh.exists(), "nothing was copied");

    let (flipped, pack) = damaged_copy(&env, "flipped");
    flip_bit(&pack_path(&flipped, &pack));
    let o = env.run(&flipped, &["mirror", fresh.to_str().unwrap()]);
    refused(&o, 1, &[&pack, "hashes to", "nothing was copied"]);
    assert!(!fresh.exists(), "nothing was copied");
}

/// A mirror onto the repository itself (by its path or through a symbolic link) or
/// into a directory inside it is refused (exit 2): the one said "mirrored" having
/// copied nothing, the other made a nested repository the next run copied again.
#[test]
fn a_mirror_onto_or_into_the_repository_is_refused() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "a.bin", &random_bytes(100_000, 73));
    env.snapshot(&src, "data");
    let link = env.path("link");
    std::os::unix::fs::symlink(env.repo(), &link).unwrap();
    let repo = env.repo();
    let inside = repo.join("mirror");
    let via_link = link.join("packs/m");
    for (dest, what) in [
        (repo.clone(), "is the repository itself"),
        (link.clone(), "is the repository itself"),
        (inside.clone(), "lies inside the repository"),
        (via_link.clone(), "lies inside the repository"),
    ] {
        for flags in [&[][..], &["--delete"]] {
            let mut args = vec!["mirror", dest.to_str().unwrap()];
            args.extend_from_slice(flags);
            let o = env.run(&repo, &args);
            refused(&o, 2, &[what]);
        }
    }
    assert!(!inside.exists() && !via_link.exists());
    env.ok(&["check", "--read-data"]);
}

/// A damaged local snapshot file (same size, new mtime) never goes over the mirror's
/// good one either: snapshot files are named by their content too.
#[test]
fn a_damaged_snapshot_file_never_replaces_the_mirrors_good_one() {
    let (env, mirror) = repo_and_mirror();
    let dmg = env.path("dmg");
    copy_dir(&env.repo(), &dmg);
    let name = fs::read_dir(dmg.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.len() == 64)
        .unwrap();
    let good = fs::read(mirror.join("snapshots").join(&name)).unwrap();
    flip_bit(&dmg.join("snapshots").join(&name));
    env.ok_in(&dmg, &["mirror", mirror.to_str().unwrap()]);
    assert!(fs::read(mirror.join("snapshots").join(&name)).unwrap() == good);
    env.ok_in(&mirror, &["check"]);
}
