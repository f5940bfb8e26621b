//! `cbsnap mirror s3://…` (and `sftp://…`) never spreads local damage onto the good
//! copy in the bucket (the path cases are in `maintenance::mirror_damage`): a truncated local
//! pack never replaces the mirror's (it was sent again because its size differed), a
//! deleted one is never deleted from it with `--delete`, and a repository that lacks
//! a pack its index lists is not mirrored at all. Against the real S3 (moto) and SFTP
//! (sshd) servers.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::util::servers::{self, Server};
use crate::util::*;

/// `cbsnap --repo REPO ARGS` with a cache of the test's own (a mirror in the bucket
/// has the repository's id, so its index would share the user's cache otherwise).
fn run(env: &Env, repo: &Path, args: &[&str]) -> Output {
    env.cmd(repo, args)
        .env("XDG_CACHE_HOME", env.path("cache"))
        .output()
        .unwrap()
}

fn ok(env: &Env, repo: &Path, args: &[&str]) -> String {
    expect_success(args, run(env, repo, args))
}

/// A path repository with two snapshots, its good mirror at a new S3 location, and a
/// copy of the repository (index included) whose largest pack the test damages.
fn setup(server: Server) -> (Env, String, std::path::PathBuf, String) {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "a.bin", &random_bytes(1 << 20, 80));
    env.snapshot(&src, "data");
    write(&src, "b.bin", &random_bytes(1 << 20, 81));
    env.snapshot(&src, "data");
    let bucket = server.location();
    ok(&env, &env.repo(), &["mirror", &bucket]);
    let dmg = env.path("dmg");
    copy_dir(&env.repo(), &dmg);
    let (pack, _) = packs(&dmg).into_iter().max_by_key(|(_, n)| *n).unwrap();
    (env, bucket, dmg, pack)
}

fn size_in(bucket: &str, pack: &str) -> Option<u64> {
    servers::storage(bucket)
        .size(&format!("packs/{}/{pack}", &pack[..2]))
        .ok()
}

fn never_replaces_a_good_pack_with_a_truncated_one(server: Server) {
    let (env, bucket, dmg, pack) = setup(server);
    let good = fs::metadata(pack_path(&dmg, &pack)).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(pack_path(&dmg, &pack))
        .unwrap()
        .set_len(good / 2)
        .unwrap();
    let o = run(&env, &dmg, &["mirror", &bucket]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&pack), "{}", stderr(&o));
    assert_eq!(size_in(&bucket, &pack), Some(good));
    // The index in step with the damage (it forgot the pack): still not sent.
    ok(&env, &dmg, &["snapshots"]);
    ok(&env, &dmg, &["mirror", &bucket]);
    assert_eq!(size_in(&bucket, &pack), Some(good));
    ok(&env, Path::new(&bucket), &["check", "--read-data"]);
}

fn delete_never_deletes_a_pack_the_repository_lost(server: Server) {
    let (env, bucket, dmg, pack) = setup(server);
    let good = fs::metadata(pack_path(&dmg, &pack)).unwrap().len();
    fs::remove_file(pack_path(&dmg, &pack)).unwrap();
    let o = run(&env, &dmg, &["mirror", "--delete", &bucket]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&pack), "{}", stderr(&o));
    assert_eq!(size_in(&bucket, &pack), Some(good));
    ok(&env, &dmg, &["snapshots"]);
    let o = run(&env, &dmg, &["mirror", "--delete", &bucket]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("--delete kept"), "{}", stderr(&o));
    assert_eq!(size_in(&bucket, &pack), Some(good));
    ok(&env, Path::new(&bucket), &["check", "--read-data"]);
}

fn a_fresh_mirror_of_a_repository_missing_a_pack_is_refused(server: Server) {
    let (env, _, dmg, pack) = setup(server);
    fs::remove_file(pack_path(&dmg, &pack)).unwrap();
    let fresh = server.location();
    let o = run(&env, &dmg, &["mirror", &fresh]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&pack), "{}", stderr(&o));
    let written: Vec<String> = servers::storage(&fresh)
        .list("")
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert!(written.is_empty(), "nothing copied: {written:?}");
}

#[test]
fn s3_mirror_never_replaces_a_good_pack_with_a_truncated_one() {
    never_replaces_a_good_pack_with_a_truncated_one(Server::S3)
}

#[test]
fn sftp_mirror_never_replaces_a_good_pack_with_a_truncated_one() {
    never_replaces_a_good_pack_with_a_truncated_one(Server::Sftp)
}

#[test]
fn s3_mirror_delete_never_deletes_a_pack_the_repository_lost() {
    delete_never_deletes_a_pack_the_repository_lost(Server::S3)
}

#[test]
fn sftp_mirror_delete_never_deletes_a_pack_the_repository_lost() {
    delete_never_deletes_a_pack_the_repository_lost(Server::Sftp)
}

#[test]
fn s3_a_fresh_mirror_of_a_repository_missing_a_pack_is_refused() {
    a_fresh_mirror_of_a_repository_missing_a_pack_is_refused(Server::S3)
}

#[test]
fn sftp_a_fresh_mirror_of_a_repository_missing_a_pack_is_refused() {
    a_fresh_mirror_of_a_repository_missing_a_pack_is_refused(Server::Sftp)
}
