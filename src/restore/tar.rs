//! Restore to a tar stream (`cbsnap dump`, and the upload body of the Docker archive
//! path). Entries come in name order, directories before their contents; the first
//! member of a hard-link group carries the content and later ones are `Link` entries.
//! xattrs and sub-second mtimes travel as PAX records (`SCHILY.xattr.*`, `mtime`),
//! which GNU tar and Docker both read.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ::tar::{Builder, EntryType, Header};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::restore::ChunkReader;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind};
use crate::walk::{lookup, Entries};

fn tar_err(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::Interrupted
    } else {
        Error::io("write tar stream", e)
    }
}

/// What a tar stream could not carry of one entry: `path: what`, for the operator.
pub type Inexact = String;

/// Write the snapshot (or the subtree at `subpath`) as a tar stream to `out`.
/// Returns the entries the stream carries inexactly (device numbers past the
/// header's range), each named once; the caller shows them and exits 3, as a restore
/// that was not exact does. A socket, which tar has no type for and which holds no
/// data, is left out with a warning only.
pub fn dump(
    repo: &Repository,
    snap: &Snapshot,
    subpath: Option<&str>,
    out: impl Write,
) -> Result<Vec<Inexact>> {
    let mut b = Builder::new(out);
    b.follow_symlinks(false);
    let mut links = Links {
        first: std::collections::HashMap::new(),
        inexact: Vec::new(),
    };
    match subpath.filter(|p| !p.trim_matches('/').is_empty()) {
        None => {
            let root = snap.root_node();
            append(&mut b, repo, Path::new("."), &root, &mut links)?;
            write_tree(&mut b, repo, &snap.tree, Path::new(""), &mut links)?;
        }
        Some(p) => {
            let node = lookup(repo, &snap.tree, p)?
                .ok_or_else(|| Error::Usage(format!("no such path in the snapshot: {p}")))?;
            let path = PathBuf::from(p.trim_matches('/'));
            append(&mut b, repo, &path, &node, &mut links)?;
            if let Some(sub) = node.subtree() {
                write_tree(&mut b, repo, &sub, &path, &mut links)?;
            }
        }
    }
    b.into_inner().map_err(tar_err)?.flush().map_err(tar_err)?;
    Ok(links.inexact)
}

/// What [`append`] keeps across entries: the first path of each hard-link group,
/// and what could not be written exactly.
struct Links {
    first: std::collections::HashMap<u64, PathBuf>,
    inexact: Vec<Inexact>,
}

fn write_tree(
    b: &mut Builder<impl Write>,
    repo: &Repository,
    tree: &Id,
    prefix: &Path,
    links: &mut Links,
) -> Result<()> {
    for e in Entries::new(repo, tree, prefix.as_os_str().as_bytes())? {
        let (path, node) = e?;
        append(b, repo, Path::new(OsStr::from_bytes(&path)), &node, links)?;
    }
    Ok(())
}

/// A PAX time: the decimal value of `secs + nsec / 10⁹`, so 1.5 s before the epoch
/// (secs -2, nsec 500000000) is `-1.500000000`.
fn pax_time(secs: i64, nsec: u32) -> String {
    if secs < 0 && nsec > 0 {
        // secs + nsec/1e9 = -((-secs - 1) + (1e9 - nsec)/1e9)
        format!("-{}.{:09}", -(secs + 1), 1_000_000_000 - nsec)
    } else {
        format!("{secs}.{nsec:09}")
    }
}

fn append(
    b: &mut Builder<impl Write>,
    repo: &Repository,
    path: &Path,
    n: &Node,
    links: &mut Links,
) -> Result<()> {
    if n.kind == NodeKind::Socket {
        // Tar has no type for a socket, and a socket holds no data: the service that
        // owns it makes it again. Named, as GNU tar names it ("socket ignored"), and
        // not counted against the stream, so a database's socket does not fail every
        // nightly dump.
        crate::warn::emit(crate::warn::Warning::SocketLeftOut {
            path: path.to_path_buf(),
        });
        return Ok(());
    }
    let mut h = Header::new_gnu();
    h.set_mode(n.mode);
    h.set_uid(n.uid as u64);
    h.set_gid(n.gid as u64);
    h.set_mtime(n.mtime.max(0) as u64);
    h.set_size(0);
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    // Names longer than the header's 32 bytes go in PAX records (POSIX.1-2001).
    if h.set_username(&String::from_utf8_lossy(&n.user)).is_err() {
        pax.push(("uname".into(), n.user.clone()));
    }
    if h.set_groupname(&String::from_utf8_lossy(&n.group)).is_err() {
        pax.push(("gname".into(), n.group.clone()));
    }
    for (k, v) in &n.xattrs {
        pax.push((
            format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
            v.clone(),
        ));
    }
    if n.mtime_nsec != 0 || n.mtime < 0 {
        pax.push(("mtime".into(), pax_time(n.mtime, n.mtime_nsec).into_bytes()));
    }
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(tar_err)?;
    }
    match n.kind {
        NodeKind::Dir => {
            h.set_entry_type(EntryType::Directory);
            let mut p = path.as_os_str().as_bytes().to_vec();
            if !p.ends_with(b"/") {
                p.push(b'/');
            }
            b.append_data(&mut h, Path::new(OsStr::from_bytes(&p)), std::io::empty())
                .map_err(tar_err)
        }
        NodeKind::File => {
            if n.link_group != 0 {
                if let Some(first) = links.first.get(&n.link_group) {
                    h.set_entry_type(EntryType::Link);
                    return b.append_link(&mut h, path, first).map_err(tar_err);
                }
                links.first.insert(n.link_group, path.to_path_buf());
            }
            h.set_entry_type(EntryType::Regular);
            h.set_size(n.size);
            b.append_data(&mut h, path, ChunkReader::new(repo, n))
                .map_err(tar_err)
        }
        NodeKind::Symlink => {
            h.set_entry_type(EntryType::Symlink);
            b.append_link(&mut h, path, Path::new(OsStr::from_bytes(&n.target)))
                .map_err(tar_err)
        }
        NodeKind::Fifo | NodeKind::CharDev | NodeKind::BlockDev => {
            h.set_entry_type(match n.kind {
                NodeKind::Fifo => EntryType::Fifo,
                NodeKind::CharDev => EntryType::Char,
                _ => EntryType::Block,
            });
            if h.set_device_major(n.rdev_major).is_err()
                || h.set_device_minor(n.rdev_minor).is_err()
            {
                links.inexact.push(format!(
                    "{}: device {}:{} does not fit a tar header; written without its numbers",
                    path.display(),
                    n.rdev_major,
                    n.rdev_minor
                ));
            }
            b.append_data(&mut h, path, std::io::empty())
                .map_err(tar_err)
        }
        NodeKind::Socket => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Progress;
    use crate::repo::Access;
    use crate::snapshot::SourceKind;
    use crate::source::{Content, Entry};
    use crate::warn::{Level, Warning};

    #[test]
    fn pax_times_before_the_epoch() {
        assert_eq!(pax_time(-2, 500_000_000), "-1.500000000");
        assert_eq!(pax_time(-1, 750_000_000), "-0.250000000");
        assert_eq!(pax_time(-3, 0), "-3.000000000");
        assert_eq!(pax_time(5, 1), "5.000000001");
    }

    /// A socket is left out of the stream with its own warning, which names it and
    /// is a warning (`-q` shows it), not an inexact entry: the dump still exits 0.
    /// It was a ready-made line that a caller could only show as it was.
    #[test]
    fn a_socket_is_left_out_with_its_own_warning() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("repo");
        Repository::init(&root).unwrap();
        let repo = Repository::open(&root, Access::Append).unwrap();
        let progress = Progress::new(true, "test");
        let spec = crate::ingest::SnapshotSpec::new("s", SourceKind::Path);
        let (_, snap) = crate::ingest::snapshot(&repo, spec, &progress, |sink| {
            let mut f = Node::new(Vec::new(), NodeKind::File);
            f.size = 4;
            sink.entry(
                Entry::new(b"f".to_vec(), f),
                Content::Stream(&mut &b"data"[..]),
            )?;
            let sock = Node::new(Vec::new(), NodeKind::Socket);
            sink.entry(Entry::new(b"db.sock".to_vec(), sock), Content::None)
        })
        .unwrap();
        let mut out = Vec::new();
        let (inexact, warnings) = crate::warn::capture(|| dump(&repo, &snap, None, &mut out));
        assert_eq!(inexact.unwrap(), Vec::<Inexact>::new());
        assert_eq!(
            warnings,
            [Warning::SocketLeftOut {
                path: PathBuf::from("db.sock")
            }]
        );
        assert_eq!(warnings[0].level(), Level::Warning);
        assert_eq!(
            warnings[0].to_string(),
            "cbsnap: warning: db.sock: a socket, which a tar stream cannot carry; left out"
        );
        let names: Vec<String> = ::tar::Archive::new(&out[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["./", "f"]);
    }
}
