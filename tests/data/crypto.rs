//! Encryption at rest, through the real binary: an encrypted repository restores every
//! entry kind, holds no plaintext of a known file and no plain content id, refuses a
//! wrong or missing passphrase with exit code 4, keeps working across `key add`,
//! `key remove` and `key passwd`, reports a flipped pack byte as an authentication
//! failure naming the pack, and is mirrored without its key.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

/// Exit code of a wrong or missing passphrase (README, "Exit codes").
const EXIT_PASSPHRASE: i32 = 4;

/// The `CBSNAP_*PASSWORD*` variables the caller's environment might hold.
const PASSWORD_VARS: [&str; 6] = [
    "CBSNAP_PASSWORD",
    "CBSNAP_PASSWORD_FILE",
    "CBSNAP_PASSWORD_COMMAND",
    "CBSNAP_NEW_PASSWORD",
    "CBSNAP_NEW_PASSWORD_FILE",
    "CBSNAP_NEW_PASSWORD_COMMAND",
];

/// `cbsnap --repo REPO -q` with no passphrase in its environment and stdin not a
/// terminal (so it is never prompted).
fn cmd(repo: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--repo").arg(repo).arg("-q");
    c.env_remove("CBSNAP_REPO");
    for v in PASSWORD_VARS {
        c.env_remove(v);
    }
    c.env("XDG_CONFIG_HOME", repo.with_extension("no-config"));
    c.stdin(std::process::Stdio::null());
    c
}

fn run_pw(repo: &Path, pass: &str, args: &[&str]) -> Output {
    cmd(repo)
        .env("CBSNAP_PASSWORD", pass)
        .args(args)
        .output()
        .unwrap()
}

fn must(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed with {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn ok_pw(repo: &Path, pass: &str, args: &[&str]) -> String {
    must(run_pw(repo, pass, args), &format!("cbsnap {args:?}"))
}

/// A new encrypted repository under `dir`, passphrase `pass`.
fn init_encrypted(dir: &Path, pass: &str) -> PathBuf {
    let repo = dir.join("repo");
    ok_pw(&repo, pass, &["init", "--encryption", "on"]);
    repo
}

/// Every regular file under `p`.
fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// The only pack file of a repository.
fn only_pack(repo: &Path) -> PathBuf {
    let packs: Vec<PathBuf> = files_under(&repo.join("packs"));
    assert_eq!(packs.len(), 1, "{packs:?}");
    packs.into_iter().next().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn encrypted_repository_round_trips_every_entry_kind() {
    let d = tempfile::tempdir().unwrap();
    let repo = init_encrypted(d.path(), "correct horse");
    // The config stays readable without the key and says what it is.
    let config = fs::read(repo.join("config")).unwrap();
    let text = String::from_utf8_lossy(&config);
    assert!(
        text.contains("\"cipher\": \"xchacha20-poly1305\""),
        "{text}"
    );
    assert!(text.contains("\"keys\": \"keys/\""), "{text}");
    assert_eq!(&config[8..12], &3u32.to_le_bytes(), "format version 3");
    assert_eq!(files_under(&repo.join("keys")).len(), 1);

    let src = d.path().join("src");
    fs::create_dir(&src).unwrap();
    build_every_kind(&src);
    ok_pw(
        &repo,
        "correct horse",
        &[
            "snapshot",
            "--path",
            src.to_str().unwrap(),
            "--name",
            "every",
        ],
    );
    let to = d.path().join("restored");
    ok_pw(
        &repo,
        "correct horse",
        &["restore", "every@latest", "--to", to.to_str().unwrap()],
    );
    compare_trees(&src, &to);
    ok_pw(&repo, "correct horse", &["check", "--read-data"]);
    // A second snapshot of the same tree stores no new data: keyed ids deduplicate.
    let before = dir_size(&repo.join("packs"));
    ok_pw(
        &repo,
        "correct horse",
        &[
            "snapshot",
            "--path",
            src.to_str().unwrap(),
            "--name",
            "every",
        ],
    );
    let added = dir_size(&repo.join("packs")) - before;
    assert!(added < 64 * 1024, "a repeated snapshot added {added} bytes");
    // Snapshot files are sealed envelopes.
    for f in files_under(&repo.join("snapshots")) {
        assert_eq!(&fs::read(&f).unwrap()[..8], b"CBSNAPSE", "{}", f.display());
    }
}

/// A recognisable 1 MiB file: random (so a plain repository stores it uncompressed,
/// byte for byte) with an ASCII marker every 4 KiB.
fn known_file() -> Vec<u8> {
    let mut v = random_bytes(1 << 20, 77);
    for (i, block) in v.chunks_mut(4096).enumerate() {
        let m = format!("CBSNAP-PLAINTEXT-MARKER-{i:05}");
        block[..m.len()].copy_from_slice(m.as_bytes());
    }
    v
}

/// Files under `repo` (the RocksDB index included) that contain `needle`.
fn files_containing(repo: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(repo)
        .into_iter()
        .filter(|f| {
            fs::read(f)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

/// The plain BLAKE3 ids of the known file's chunks, as the repository's chunker cuts it.
fn plain_chunk_ids(data: &[u8]) -> Vec<[u8; 32]> {
    let mut ids = Vec::new();
    let p = cbsnap::config::ChunkerParams::default();
    cbsnap::chunker::chunk_stream(
        data,
        &p,
        |c: Vec<u8>| {
            ids.push(*blake3::hash(&c).as_bytes());
            Ok::<(), std::io::Error>(())
        },
        |e| e,
    )
    .unwrap();
    ids
}

#[test]
fn no_plaintext_or_plain_id_of_a_known_file_is_in_an_encrypted_repository() {
    let d = tempfile::tempdir().unwrap();
    let data = known_file();
    let src = d.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("known.bin"), &data).unwrap();
    let ids = plain_chunk_ids(&data);
    assert!(ids.len() >= 4, "{} chunks", ids.len());
    // Needles: the marker, 32-byte pieces of random content from every chunk, and
    // every chunk's plain id.
    let mut needles: Vec<Vec<u8>> = vec![b"CBSNAP-PLAINTEXT-MARKER".to_vec()];
    needles.extend((0..16).map(|i| data[i * 65_536 + 1000..i * 65_536 + 1032].to_vec()));
    needles.extend(ids.iter().map(|id| id.to_vec()));

    // Control: an unencrypted repository holds them, so the search can fail.
    let plain = Repo::new();
    plain.snapshot_dir(&src, "known");
    let found = files_containing(&plain.path(), b"CBSNAP-PLAINTEXT-MARKER");
    assert!(!found.is_empty(), "the control repository lacks the marker");
    assert!(!files_containing(&plain.path(), &ids[1]).is_empty());
    // `grep`, as an operator would check a bucket or a directory.
    let grep = Command::new("grep")
        .args(["-r", "-a", "-l", "-F", "CBSNAP-PLAINTEXT-MARKER"])
        .arg(plain.path())
        .output()
        .unwrap();
    assert_eq!(
        grep.status.code(),
        Some(0),
        "grep finds the control's marker"
    );

    let repo = init_encrypted(d.path(), "pw");
    ok_pw(
        &repo,
        "pw",
        &[
            "snapshot",
            "--path",
            src.to_str().unwrap(),
            "--name",
            "known",
        ],
    );
    for n in &needles {
        let hits = files_containing(&repo, n);
        assert!(hits.is_empty(), "plaintext {:?}… in {hits:?}", &n[..8]);
    }
    let grep = Command::new("grep")
        .args(["-r", "-a", "-l", "-F", "CBSNAP-PLAINTEXT-MARKER"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(
        grep.status.code(),
        Some(1),
        "grep found the marker in {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    // And it still restores byte for byte.
    let to = d.path().join("back");
    ok_pw(
        &repo,
        "pw",
        &["restore", "known@latest", "--to", to.to_str().unwrap()],
    );
    assert!(fs::read(to.join("known.bin")).unwrap() == data);
}

#[test]
fn a_wrong_or_missing_passphrase_exits_4_and_says_what_to_set() {
    let d = tempfile::tempdir().unwrap();
    let repo = init_encrypted(d.path(), "right");
    let src = d.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();

    let o = run_pw(
        &repo,
        "wrong",
        &["snapshot", "--path", src.to_str().unwrap(), "--name", "s"],
    );
    assert_eq!(o.status.code(), Some(EXIT_PASSPHRASE), "{}", stderr(&o));
    assert!(stderr(&o).contains("wrong passphrase"), "{}", stderr(&o));
    assert!(files_under(&repo.join("snapshots")).is_empty());

    let o = cmd(&repo).arg("snapshots").output().unwrap();
    assert_eq!(o.status.code(), Some(EXIT_PASSPHRASE), "{}", stderr(&o));
    for v in [
        "CBSNAP_PASSWORD",
        "CBSNAP_PASSWORD_FILE",
        "CBSNAP_PASSWORD_COMMAND",
    ] {
        assert!(stderr(&o).contains(v), "{v} not named: {}", stderr(&o));
    }

    // The file and command sources.
    let pwfile = d.path().join("pw");
    fs::write(&pwfile, "right\n").unwrap();
    let o = cmd(&repo)
        .env("CBSNAP_PASSWORD_FILE", &pwfile)
        .args(["snapshot", "--path", src.to_str().unwrap(), "--name", "s"])
        .output()
        .unwrap();
    must(o, "snapshot with CBSNAP_PASSWORD_FILE");
    let o = cmd(&repo)
        .env("CBSNAP_PASSWORD_COMMAND", "echo right")
        .args(["--json", "snapshots"])
        .output()
        .unwrap();
    let out = must(o, "snapshots with CBSNAP_PASSWORD_COMMAND");
    assert!(out.contains("\"name\": \"s\""), "{out}");
    let o = cmd(&repo)
        .env("CBSNAP_PASSWORD_COMMAND", "echo wrong")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(EXIT_PASSPHRASE), "{}", stderr(&o));
    let o = cmd(&repo)
        .env("CBSNAP_PASSWORD_COMMAND", "exit 7")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("CBSNAP_PASSWORD_COMMAND"),
        "{}",
        stderr(&o)
    );

    // An unencrypted repository never asks.
    let plain = Repo::new();
    let o = cmd(&plain.path()).arg("snapshots").output().unwrap();
    must(
        o,
        "snapshots of an unencrypted repository without a passphrase",
    );
}

/// The key id of each key file, sorted by creation (`key list --json`).
fn key_ids(repo: &Path, pass: &str) -> Vec<String> {
    let out = ok_pw(repo, pass, &["--json", "key", "list"]);
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let mut keys: Vec<(String, String)> = v
        .iter()
        .map(|k| {
            (
                k["created"].as_str().unwrap().to_string(),
                k["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, id)| id).collect()
}

#[test]
fn key_add_then_remove_the_first_keeps_the_repository_readable_with_the_second() {
    let d = tempfile::tempdir().unwrap();
    let repo = init_encrypted(d.path(), "first");
    let src = d.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), text_bytes(300_000, 9)).unwrap();
    ok_pw(
        &repo,
        "first",
        &["snapshot", "--path", src.to_str().unwrap(), "--name", "s"],
    );
    let first = key_ids(&repo, "first");
    assert_eq!(first.len(), 1);

    // key add: the current passphrase, then the new one.
    let o = cmd(&repo)
        .env("CBSNAP_PASSWORD", "first")
        .env("CBSNAP_NEW_PASSWORD", "second")
        .args(["key", "add"])
        .output()
        .unwrap();
    must(o, "key add");
    let both = key_ids(&repo, "first");
    assert_eq!(both.len(), 2);
    let second = both.iter().find(|k| **k != first[0]).unwrap().clone();
    // Without a new passphrase source: a clear error, nothing added.
    let o = run_pw(&repo, "first", &["key", "add"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("CBSNAP_NEW_PASSWORD"), "{}", stderr(&o));
    assert_eq!(key_ids(&repo, "first").len(), 2);

    // The key in use is not removed; another key's passphrase removes it.
    let o = run_pw(&repo, "first", &["key", "remove", &first[0][..8]]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("key passwd"), "{}", stderr(&o));
    ok_pw(&repo, "second", &["key", "remove", &first[0][..8]]);
    assert_eq!(key_ids(&repo, "second"), vec![second.clone()]);

    let to = d.path().join("back");
    ok_pw(
        &repo,
        "second",
        &["restore", "s@latest", "--to", to.to_str().unwrap()],
    );
    assert!(fs::read(to.join("f")).unwrap() == fs::read(src.join("f")).unwrap());
    let o = run_pw(&repo, "first", &["snapshots"]);
    assert_eq!(o.status.code(), Some(EXIT_PASSPHRASE), "{}", stderr(&o));

    // The last key stays (asked with a passphrase of its own: refused as in use; the
    // library's own test covers the last-key refusal on its own).
    let o = run_pw(&repo, "second", &["key", "remove", &second]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(key_ids(&repo, "second").len(), 1);

    // passwd: the new key works, the old passphrase no longer does.
    let pwfile = d.path().join("third");
    fs::write(&pwfile, "third\n").unwrap();
    let o = cmd(&repo)
        .env("CBSNAP_PASSWORD", "second")
        .args(["key", "passwd", "--new-password-file"])
        .arg(&pwfile)
        .output()
        .unwrap();
    must(o, "key passwd");
    assert_eq!(key_ids(&repo, "third").len(), 1);
    ok_pw(&repo, "third", &["check", "--read-data"]);
    let o = run_pw(&repo, "second", &["snapshots"]);
    assert_eq!(o.status.code(), Some(EXIT_PASSPHRASE), "{}", stderr(&o));
}

#[test]
fn a_flipped_pack_byte_is_an_authentication_failure_naming_the_pack() {
    let d = tempfile::tempdir().unwrap();
    let repo = init_encrypted(d.path(), "pw");
    let src = d.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("data.bin"), random_bytes(200_000, 5)).unwrap();
    ok_pw(
        &repo,
        "pw",
        &["snapshot", "--path", src.to_str().unwrap(), "--name", "s"],
    );
    let pack = only_pack(&repo);
    let pack_id = pack.file_name().unwrap().to_str().unwrap().to_string();
    // The first blob is the first data chunk (trees are sealed after their files);
    // byte 100 lies in its ciphertext, past the 12-byte header and 24-byte nonce.
    let mut bytes = fs::read(&pack).unwrap();
    bytes[100] ^= 0x01;
    fs::write(&pack, &bytes).unwrap();

    let o = run_pw(&repo, "pw", &["check", "--read-data"]);
    let report = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{report}");
    assert!(report.contains(&pack_id[..8]), "pack not named: {report}");
    assert!(report.contains("authentication failed"), "{report}");

    let to = d.path().join("back");
    let o = run_pw(
        &repo,
        "pw",
        &["restore", "s@latest", "--to", to.to_str().unwrap()],
    );
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(err.contains(&pack_id), "pack not named: {err}");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(err.contains(", blob "), "blob not named: {err}");
}

#[test]
fn mirror_needs_no_key_and_the_copy_restores_with_it() {
    let d = tempfile::tempdir().unwrap();
    let repo = init_encrypted(d.path(), "pw");
    let src = d.path().join("src");
    fs::create_dir(&src).unwrap();
    build_every_kind(&src);
    ok_pw(
        &repo,
        "pw",
        &["snapshot", "--path", src.to_str().unwrap(), "--name", "s"],
    );
    let dest = d.path().join("mirror");
    let o = cmd(&repo)
        .args(["mirror", dest.to_str().unwrap()])
        .output()
        .unwrap();
    must(o, "mirror without a passphrase");
    assert_eq!(files_under(&dest.join("keys")).len(), 1);
    let o = cmd(&dest).arg("snapshots").output().unwrap();
    assert_eq!(o.status.code(), Some(EXIT_PASSPHRASE), "{}", stderr(&o));
    let to = d.path().join("back");
    ok_pw(
        &dest,
        "pw",
        &["restore", "s@latest", "--to", to.to_str().unwrap()],
    );
    compare_trees(&src, &to);
}
