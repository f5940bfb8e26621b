//! Round trips: what goes in comes out, through restore and through dump | tar -x.

use std::process::{Command, Stdio};

use crate::util::*;

#[test]
fn every_entry_kind_survives_restore() {
    let src = tempfile::tempdir().unwrap();
    build_every_kind(src.path());
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "kinds");
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("restored");
    repo.restore("kinds@latest", &target);
    compare_trees(src.path(), &target);
    diff_r(src.path(), &target);
    // Sparse files stay sparse: far fewer blocks than the 8 MiB length.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(target.join("sparse.img")).unwrap();
    assert_eq!(md.len(), 8 << 20);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "sparse file restored dense: {} blocks",
        md.blocks()
    );
}

#[test]
fn every_entry_kind_survives_dump_through_gnu_tar() {
    let src = tempfile::tempdir().unwrap();
    build_every_kind(src.path());
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "kinds");
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("x");
    std::fs::create_dir(&target).unwrap();
    let mut dump = repo
        .cmd()
        .args(["dump", "kinds@latest"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let tar = Command::new("tar")
        .args([
            "-x",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-p",
            "-C",
        ])
        .arg(&target)
        .stdin(dump.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(tar.status.success(), "tar -x failed: {}", stderr(&tar));
    assert!(dump.wait().unwrap().success(), "cbsnap dump failed");
    compare_trees(src.path(), &target);
    diff_r(src.path(), &target);
}

#[test]
fn tar_import_of_old_tar_czf_backup_round_trips() {
    // The previous procedure: `tar czf VOLUME.tar.gz -C /data .`
    let src = tempfile::tempdir().unwrap();
    build_every_kind(src.path());
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new();
    for (flag, file) in [("-z", "v.tar.gz"), ("--zstd", "v.tar.zst"), ("", "v.tar")] {
        let archive = work.path().join(file);
        let mut c = Command::new("tar");
        c.arg("-c");
        if !flag.is_empty() {
            c.arg(flag);
        }
        let o = c
            .args(["--xattrs", "--xattrs-include=*", "-f"])
            .arg(&archive)
            .arg("-C")
            .arg(src.path())
            .arg(".")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let name = format!("vol-{}", file.replace('.', "-"));
        repo.ok(&[
            "snapshot",
            "--tar",
            archive.to_str().unwrap(),
            "--name",
            &name,
        ]);
        let target = work.path().join(format!("restored-{file}"));
        repo.restore(&format!("{name}@latest"), &target);
        compare_trees(src.path(), &target);
    }
    // stdin works too, and identical content dedups to nothing new.
    let before = repo.size();
    let f = std::fs::File::open(work.path().join("v.tar.gz")).unwrap();
    let o = repo
        .cmd()
        .args(["snapshot", "--tar", "-", "--name", "stdin"])
        .stdin(f)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        repo.size() - before < 64 * 1024,
        "re-import added {} bytes",
        repo.size() - before
    );
}

#[test]
fn ls_and_dump_of_a_subpath() {
    let src = tempfile::tempdir().unwrap();
    build_every_kind(src.path());
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "kinds");
    let ls = repo.ok(&["ls", "kinds@latest", "dir/sub"]);
    assert!(ls.contains("dir/sub/code.rs"), "{ls}");
    assert!(!ls.contains("hello.txt"), "{ls}");
    let o = repo
        .cmd()
        .args(["dump", "kinds@latest", "dir/sub/code.rs"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut ar = tar::Archive::new(&o.stdout[..]);
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        names.push(e.path().unwrap().to_string_lossy().into_owned());
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        assert_eq!(
            data,
            std::fs::read(src.path().join("dir/sub/code.rs")).unwrap()
        );
    }
    assert_eq!(names, ["dir/sub/code.rs"]);
}

/// `dump` names a socket it leaves out (tar cannot carry one; it was left out without
/// a word), and exits 0 as GNU tar does: a socket holds no data, and a database's
/// socket must not fail every nightly dump. An owner name past the header's 32 bytes
/// goes in a PAX record (it was dropped without a word).
#[test]
fn dump_names_what_tar_cannot_carry_and_keeps_long_owner_names() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("file"), b"data").unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(src.path().join("sock")).unwrap();
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "s");
    let o = repo.cmd().args(["dump", "s@latest"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("sock"), "{}", stderr(&o));
    assert!(stderr(&o).contains("socket"), "{}", stderr(&o));
    let mut names = Vec::new();
    for e in tar::Archive::new(&o.stdout[..]).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert!(names.iter().any(|n| n == "file"), "{names:?}");

    let work = tempfile::tempdir().unwrap();
    let t = work.path().join("long.tar");
    let long = "u".repeat(40);
    let status = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import tarfile,io\nt=tarfile.open({t:?},'w',format=tarfile.PAX_FORMAT)\ni=tarfile.TarInfo('f'); i.size=1; i.uname={long:?}; i.gname={long:?}\nt.addfile(i,io.BytesIO(b'x'))\nt.close()\n"
        ))
        .status()
        .unwrap();
    assert!(status.success());
    repo.ok(&["snapshot", "--tar", t.to_str().unwrap(), "--name", "long"]);
    let o = repo.cmd().args(["dump", "long@latest"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // GNU tar reads the PAX records back as the owner names.
    let mut tv = Command::new("tar")
        .args(["-tvf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(tv.stdin.as_mut().unwrap(), &o.stdout).unwrap();
    let tv = tv.wait_with_output().unwrap();
    assert!(tv.status.success(), "{}", stderr(&tv));
    let listing = stdout(&tv);
    assert!(listing.contains(&format!("{long}/{long}")), "{listing}");
}
