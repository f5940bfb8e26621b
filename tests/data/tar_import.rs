//! Tar import stores what `tar -x` into an empty directory produces, or names each
//! difference in the snapshot's errors with exit 3 (issue 7, cases 1, 4 and 15).
//!
//! The corpus comes from GNU tar, bsdtar, busybox tar and Python's tarfile
//! (`tests/tar/corpus.sh`); the odd and hostile tars from `tests/tar/gen.py`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{compare_trees, diff_r, stderr, Repo};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tar")
        .join(name)
}

fn gen(args: &[&str], out: &Path) {
    let st = Command::new("python3")
        .arg(script("gen.py"))
        .args(args)
        .arg(out)
        .status()
        .expect("python3 runs (scripts/deps.sh installs it)");
    assert!(st.success(), "gen.py {args:?} failed");
}

/// `tar -x` (GNU tar, keeping owners, modes and xattrs) of `tar` into a new `to`.
fn tar_x(tar: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    // Exit status 2 is expected for the cases where tar -x itself fails on an entry.
    Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--same-owner", "-xpf"])
        .arg(tar)
        .arg("-C")
        .arg(to)
        .stderr(Stdio::null())
        .status()
        .expect("GNU tar runs");
}

/// Directories the archive does not list get the time of extraction from `tar -x`
/// and time 0 from cbsnap; set those (and only those) to one time on both sides.
fn even_out_implicit_dir_times(ours: &Path, tars: &Path, started: i64) {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(tars.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                let m = e.metadata().unwrap();
                if m.mtime() >= started && ours.join(&r).is_dir() {
                    for side in [ours, tars] {
                        filetime::set_file_mtime(side.join(&r), filetime::FileTime::zero())
                            .unwrap();
                    }
                }
                stack.push(r);
            }
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Import `tar` as `name` and restore it; returns the import's exit code and the
/// restored directory.
fn import(repo: &Repo, tar: &Path, name: &str, work: &Path) -> (i32, PathBuf) {
    let o = repo.run(&["snapshot", "--tar", tar.to_str().unwrap(), "--name", name]);
    let code = o.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 3,
        "{name}: import failed: {}",
        stderr(&o)
    );
    let ours = work.join(format!("{name}.restored"));
    repo.restore(&format!("{name}@latest"), &ours);
    (code, ours)
}

/// `ours` (a restore) equals what `tar -x` of `tar` makes. Directory times that
/// `tar -x` itself did not take from the archive (it stamps implicit directories,
/// and ones it re-entered, with the time of extraction) are set to one value on both
/// sides first, so this changes `ours`.
fn matches_tar_x(ours: &Path, tar: &Path) {
    let theirs = ours.with_extension("tar-x");
    let started = now() - 1;
    tar_x(tar, &theirs);
    even_out_implicit_dir_times(ours, &theirs, started);
    // The restore target's own mode comes from the archive's `./` entry, if any.
    let root_mode = fs::metadata(ours).unwrap().mode();
    fs::set_permissions(&theirs, fs::Permissions::from_mode(root_mode)).unwrap();
    compare_trees(ours, &theirs);
    diff_r(ours, &theirs);
}

#[test]
fn tar_corpus_imports_like_tar_x_and_dump_reimports_the_same() {
    let work = tempfile::tempdir().unwrap();
    let corpus = work.path().join("corpus");
    let st = Command::new("bash")
        .arg(script("corpus.sh"))
        .arg(&corpus)
        .status()
        .unwrap();
    assert!(st.success(), "tests/tar/corpus.sh failed");
    let repo = Repo::new();
    let mut tars: Vec<PathBuf> = fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tars.sort();
    // Every tool and every sparse dialect is there: a corpus that silently shrank
    // would test nothing.
    let names: Vec<String> = tars
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "gnu-posix",
        "gnu-gnu",
        "gnu-sparse-0.0",
        "gnu-sparse-0.1",
        "gnu-sparse-1.0",
        "gnu-sparse-old",
        "bsdtar-pax",
        "bsdtar-gnutar",
        "busybox",
        "python",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "corpus lacks {want}: {names:?}"
        );
    }
    for (tar, name) in tars.iter().zip(&names) {
        let (code, ours) = import(&repo, tar, name, work.path());
        assert_eq!(code, 0, "{name}: import reported differences");
        let ls = repo.ok(&["ls", &format!("{name}@latest")]);
        assert!(!ls.contains("GNUSparseFile"), "{name}: {ls}");
        // dump, then import the dump: the same tree again.
        let dumped = work.path().join(format!("{name}.dump.tar"));
        let o = repo
            .cmd()
            .args(["dump", &format!("{name}@latest")])
            .stdout(fs::File::create(&dumped).unwrap())
            .status()
            .unwrap();
        assert!(o.success(), "{name}: dump failed");
        let again = format!("{name}-again");
        let (code, back) = import(&repo, &dumped, &again, work.path());
        assert_eq!(code, 0, "{again}: import reported differences");
        compare_trees(&ours, &back);
        matches_tar_x(&ours, tar);
    }
    // The sparse file really is the file, not the packed payload.
    let sparse = work.path().join("gnu-sparse-1.0.restored/sparse");
    let bytes = fs::read(&sparse).unwrap();
    assert_eq!(bytes.len(), 5 * 1024 * 1024);
    assert_eq!(&bytes[2_000_000..2_000_003], b"mid");
    assert_eq!(&bytes[5_000_000..5_000_003], b"end");
}

fn case(name: &str) -> (Repo, tempfile::TempDir, i32, PathBuf, String) {
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join(format!("{name}.tar"));
    gen(&["case", name], &tar);
    let repo = Repo::new();
    let (code, ours) = import(&repo, &tar, name, work.path());
    matches_tar_x(&ours, &tar);
    let errors = repo.snapshots_json()[0]["errors"].to_string();
    (repo, work, code, ours, errors)
}

#[test]
fn tar_file_after_a_directory_with_entries_keeps_the_directory_and_says_so() {
    let (_r, _w, code, ours, errors) = case("dir-then-file");
    assert_eq!(code, 3);
    assert_eq!(fs::read(ours.join("x/kept")).unwrap(), b"kept");
    assert!(errors.contains("\"x\""), "{errors}");
    assert!(errors.contains("File exists"), "{errors}");
}

#[test]
fn tar_file_after_an_empty_directory_replaces_it() {
    let (_r, _w, code, ours, _) = case("empty-dir-then-file");
    assert_eq!(code, 0);
    assert_eq!(fs::read(ours.join("x")).unwrap(), b"file");
}

#[test]
fn tar_entry_below_a_file_is_named_not_stored() {
    let (_r, _w, code, ours, errors) = case("file-then-below");
    assert_eq!(code, 3);
    assert_eq!(fs::read(ours.join("x")).unwrap(), b"file");
    assert!(
        errors.contains("x/y") && errors.contains("Not a directory"),
        "{errors}"
    );
}

#[test]
fn tar_entry_through_a_symlink_lands_in_its_target_and_keeps_the_symlink() {
    let (_r, _w, code, ours, _) = case("symlink-through");
    assert_eq!(code, 0);
    assert_eq!(fs::read_link(ours.join("l")).unwrap(), Path::new("d"));
    assert_eq!(fs::read(ours.join("d/f")).unwrap(), b"through");
}

#[test]
fn tar_entry_through_an_absolute_symlink_is_named_not_stored() {
    let (_r, _w, code, ours, errors) = case("symlink-absolute");
    assert_eq!(code, 3);
    assert_eq!(fs::read_link(ours.join("l")).unwrap(), Path::new("/etc"));
    assert!(errors.contains("l/f"), "{errors}");
}

#[test]
fn tar_acl_records_that_are_not_stored_are_named() {
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("acl.tar");
    gen(&["case", "acl"], &tar);
    let repo = Repo::new();
    let (code, ours) = import(&repo, &tar, "acl", work.path());
    assert_eq!(code, 3);
    assert_eq!(fs::read(ours.join("a")).unwrap(), b"acl");
    let errors = repo.snapshots_json()[0]["errors"].to_string();
    assert!(errors.contains("SCHILY.acl.access"), "{errors}");
}

/// The exit-3 summary told every recorded entry "could not be read and is not in
/// snapshot …", also the ones stored (ACLs left out, an owner name cut). Now entries
/// left out and entries stored inexactly are counted and named apart, each under
/// words that are true of it.
#[test]
fn the_summary_tells_entries_left_out_from_entries_stored_inexactly() {
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("mixed.tar");
    let script = r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, data, **kw):
        i = tarfile.TarInfo(name)
        i.size = len(data)
        for k, v in kw.items():
            setattr(i, k, v)
        t.addfile(i, io.BytesIO(data))
    add("acl", b"acl", pax_headers={"SCHILY.acl.access": "user::rw-,group::r--,other::r--"})
    add("long-owner", b"owner", uname="u" * 300)
    add("../escape", b"out")
    add("ok", b"fine")
"#;
    let st = Command::new("python3")
        .args(["-c", script])
        .arg(&tar)
        .status()
        .unwrap();
    assert!(st.success());
    let repo = Repo::new();
    let o = repo.run(&[
        "snapshot",
        "--tar",
        tar.to_str().unwrap(),
        "--name",
        "mixed",
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    let id = repo.snapshots_json()[0]["id"].as_str().unwrap()[..8].to_string();
    let left_out = format!("cbsnap: 1 entries could not be read and are not in snapshot {id}, or only in part (exit code 3):\n  ../escape: ");
    assert!(e.contains(&left_out), "{e}");
    let inexact = format!(
        "cbsnap: 2 entries are in snapshot {id}, but not exactly as the source has them (exit code 3):\n  acl: PAX records SCHILY.acl.access"
    );
    assert!(e.contains(&inexact), "{e}");
    assert!(
        e.contains("\n  long-owner: owner or group name longer"),
        "{e}"
    );
    // What the summary says is stored is stored.
    let to = work.path().join("r");
    repo.restore("mixed@latest", &to);
    assert_eq!(fs::read(to.join("acl")).unwrap(), b"acl");
    assert_eq!(fs::read(to.join("long-owner")).unwrap(), b"owner");
    assert!(!work.path().join("escape").exists());
}

/// Issue 7 case 1: 600,000 entries in one directory make a node list larger than the
/// 64 MiB blob limit; it is stored as a split tree that restore and check read.
#[test]
fn tar_directory_of_600k_entries_is_stored_as_a_split_tree() {
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("big.tar");
    gen(&["many", "600000"], &tar);
    let repo = Repo::new();
    repo.ok(&["snapshot", "--tar", tar.to_str().unwrap(), "--name", "big"]);
    let report: serde_json::Value =
        serde_json::from_str(&repo.ok(&["--json", "check", "--read-data"])).unwrap();
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    // The root tree, `big/`'s split tree and its parts: 600,000 nodes of about 90
    // bytes in parts of at most 4 MiB.
    assert!(report["trees"].as_u64().unwrap() >= 2 + 12, "{report}");
    let mut dump = repo
        .cmd()
        .args(["dump", "big@latest"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Command::new("tar")
        .arg("-t")
        .stdin(dump.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(dump.wait().unwrap().success(), "dump failed");
    let names = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        names.lines().filter(|l| l.starts_with("big/f")).count(),
        600_000
    );
    assert!(names.contains("big/f0599999\n"));
    let one = repo.ok(&["ls", "big@latest", "big/f0345678"]);
    assert!(one.contains("big/f0345678"), "{one}");
}

/// Run `cbsnap` with a 1 MiB main-thread stack, stdout discarded: recursion over a
/// deep tree would overflow it.
fn small_stack(repo: &Repo, args: &[&str]) -> std::process::ExitStatus {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -s 1024 && exec \"$@\"")
        .arg("sh")
        .arg(crate::util::BIN)
        .arg("--repo")
        .arg(repo.path())
        .arg("-q")
        .args(args)
        .env("XDG_CONFIG_HOME", repo.dir.path().join("no-config"))
        .stdout(Stdio::null());
    c.status().unwrap()
}

/// Issue 7 case 15: untrusted depth never overflows the stack. 100,000 nested
/// directories go through ingest, check, stats and prune; ls, dump and diff (whose
/// output grows with depth squared) walk 5,000.
#[test]
fn tar_nesting_100k_directories_never_overflows_the_stack() {
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new();
    for (name, depth) in [("deep", "100000"), ("mid", "5000")] {
        let tar = work.path().join(format!("{name}.tar"));
        gen(&["deep", depth], &tar);
        let st = small_stack(
            &repo,
            &["snapshot", "--tar", tar.to_str().unwrap(), "--name", name],
        );
        assert!(st.success(), "snapshot of {name}: {st:?}");
    }
    for args in [
        &["check"][..],
        &["stats"],
        &["ls", "mid@latest"],
        &["dump", "mid@latest"],
        &["diff", "mid@latest", "deep@latest"],
        &["forget", "--keep-last", "1", "--prune"],
    ] {
        let st = small_stack(&repo, args);
        assert!(st.success(), "{args:?}: {st:?}");
    }
}

/// Numbers a tar header can hold but an entry cannot keep are named, not bent into
/// other values: a device major in GNU base-256 was stored as device 0:1, and an
/// owner id past 32 bits would wrap into another owner. Both entries are skipped
/// (exit 3); the others are stored.
#[test]
fn tar_numbers_that_do_not_fit_are_named_not_wrapped() {
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("numbers.tar");
    let status = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import tarfile,io\nt=tarfile.open({tar:?},'w',format=tarfile.GNU_FORMAT)\ni=tarfile.TarInfo('dev'); i.type=tarfile.CHRTYPE; i.devmajor=2097152; i.devminor=1; t.addfile(i)\ni=tarfile.TarInfo('big-uid'); i.size=1; i.uid=2**32+5; t.addfile(i,io.BytesIO(b'x'))\ni=tarfile.TarInfo('ok'); i.size=2; t.addfile(i,io.BytesIO(b'ok'))\nt.close()\n"
        ))
        .status()
        .expect("python3");
    assert!(status.success());
    let repo = Repo::new();
    let o = repo.run(&["snapshot", "--tar", tar.to_str().unwrap(), "--name", "n"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let errors = repo.snapshots_json()[0]["errors"].to_string();
    assert!(errors.contains("\"dev\""), "{errors}");
    assert!(errors.contains("big-uid"), "{errors}");
    let ls = repo.ok(&["ls", "n@latest"]);
    assert!(ls.contains("ok"), "{ls}");
    assert!(!ls.contains("dev") && !ls.contains("big-uid"), "{ls}");
}
