//! Golden bytes: the encoders write exactly the bytes `docs/FORMAT.md` describes, and
//! the readers read those bytes back. Each file kind is built here twice, once by
//! cbsnap and once by hand from the document's `A || B || C` layouts, and pinned by
//! its BLAKE3, so any change of a byte fails here: a format change must bump the
//! version, update FORMAT.md and keep these bytes readable (move the old pin to a
//! read-only test rather than editing it).

use std::fs::File;

use cbsnap::config::{ChunkerParams, RepoConfig};
use cbsnap::crypto::Crypt;
use cbsnap::pack::{self, BlobKind, Compression, PackWriter};
use cbsnap::snapshot::{Excluded, FileError, RootMeta, Snapshot, SnapshotStats, SourceKind};
use cbsnap::tree::{self, Node, NodeKind, TreeBlob};
use cbsnap::Id;

fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

fn blake3_hex(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

/// `written` (cbsnap's bytes) equals `want` (built by hand from FORMAT.md), shown as
/// text (snapshot, config) or hex (pack, tree) so a failure points at the byte, and
/// `want` has the `pinned` BLAKE3.
fn assert_pinned(what: &str, written: &[u8], want: &[u8], pinned: &str) {
    let show = |b: &[u8]| match what {
        "snapshot" | "config" => String::from_utf8_lossy(b).into_owned(),
        _ => hex(b),
    };
    assert_eq!(
        show(written),
        show(want),
        "the {what} encoder follows FORMAT.md"
    );
    assert_eq!(written, want);
    assert_eq!(blake3_hex(want), pinned, "the pinned {what} changed");
}

/// A fixed zstd frame (of [`golden_zstd_raw`], made by the zstd command), stored as it is: the pinned pack does
/// not depend on the zstd library's output, which may change between versions
/// without changing the format.
const GOLDEN_ZSTD_FRAME: &str = "28b52ffd00586d00003061626364650a010023514b11";

fn golden_zstd_raw() -> Vec<u8> {
    b"abcde\n".repeat(50)
}

/// A pack of three fixed blobs: plain data, a zstd-compressed data blob, a tree blob.
#[test]
fn pack_bytes_are_pinned() {
    let frame = hex::decode(GOLDEN_ZSTD_FRAME).unwrap();
    let zraw = golden_zstd_raw();
    let tree_raw = tree::encode(&[]);
    let blobs: [(&[u8], BlobKind, &[u8], Compression); 3] = [
        (
            b"hello, cbsnap\n",
            BlobKind::Data,
            b"hello, cbsnap\n",
            Compression::None,
        ),
        (&zraw, BlobKind::Data, &frame, Compression::Zstd),
        (&tree_raw, BlobKind::Tree, &tree_raw, Compression::None),
    ];

    let dir = tempfile::tempdir().unwrap();
    let mut w = PackWriter::create(dir.path(), &Crypt::Plain).unwrap();
    for (raw, kind, stored, how) in &blobs {
        w.add(Id::hash(raw), *kind, raw.len() as u32, stored, *how)
            .unwrap();
    }
    let (id, size, entries) = w.seal().unwrap().commit(dir.path()).unwrap();
    let written = std::fs::read(pack::pack_path(dir.path(), &id)).unwrap();

    // By hand, from FORMAT.md "Packs".
    let mut want = b"CBSNAPPK".to_vec();
    want.extend(1u32.to_le_bytes());
    let mut trailer = Vec::new();
    for (raw, kind, stored, how) in &blobs {
        trailer.extend(blake3::hash(raw).as_bytes());
        trailer.extend((want.len() as u64).to_le_bytes());
        trailer.extend((stored.len() as u32).to_le_bytes());
        trailer.extend((raw.len() as u32).to_le_bytes());
        trailer.push(*kind as u8);
        trailer.push(*how as u8);
        trailer.extend(0u16.to_le_bytes());
        want.extend(*stored);
    }
    assert_eq!(trailer.len(), 52 * 3, "an entry is 52 bytes");
    want.extend(&trailer);
    want.extend(3u32.to_le_bytes());
    want.extend(blake3::hash(&trailer).as_bytes());
    want.extend(b"CBSNAPTR");

    assert_pinned(
        "pack",
        &written,
        &want,
        "7dbfbf2d073a2896ff609b4db9869d8f11f4e92f7fa9447d0ddc2d12e121c1e1",
    );
    assert_eq!(
        id.to_hex(),
        blake3_hex(&want),
        "a pack is named by its BLAKE3"
    );
    assert_eq!(size, want.len() as u64);

    // The reader takes these bytes back, blob by blob.
    let path = dir.path().join("golden.pack");
    std::fs::write(&path, &want).unwrap();
    let f = File::open(&path).unwrap();
    let read = pack::read_trailer(&f, want.len() as u64, &Crypt::Plain).unwrap();
    assert_eq!(read, entries);
    for (e, (raw, ..)) in read.iter().zip(&blobs) {
        let stored = pack::read_stored(&f, e.offset, e.stored_len).unwrap();
        assert_eq!(pack::decode_blob(e, &stored, &Crypt::Plain).unwrap(), *raw);
    }
}

/// The two nodes of the pinned tree: a file with every field set (a name that is not
/// UTF-8, owners, device numbers, times, a link group, xattrs, two chunks) and a
/// directory.
fn golden_nodes() -> Vec<Node> {
    let mut f = Node::new(b"caf\xe9.txt".to_vec(), NodeKind::File);
    f.mode = 0o4750;
    f.uid = 1000;
    f.gid = 100;
    f.user = b"ada".to_vec();
    f.group = b"users".to_vec();
    f.mtime = 1_700_000_000;
    f.mtime_nsec = 123_456_789;
    f.size = 7;
    f.rdev_major = 0;
    f.rdev_minor = 0;
    f.inode = 42;
    f.ctime = -5;
    f.ctime_nsec = 9;
    f.link_group = 3;
    f.xattrs = vec![(b"user.a".to_vec(), b"\x00\x01".to_vec())];
    f.content = vec![Id::hash(b"chunk 1"), Id::hash(b"chunk 2")];
    let mut d = Node::new(b"sub".to_vec(), NodeKind::Dir);
    d.mode = 0o755;
    d.content = vec![Id::hash(b"subtree")];
    vec![f, d]
}

fn node_by_hand(n: &Node) -> Vec<u8> {
    let mut b = Vec::new();
    let bytes16 = |b: &mut Vec<u8>, x: &[u8]| {
        b.extend((x.len() as u16).to_le_bytes());
        b.extend(x);
    };
    bytes16(&mut b, &n.name);
    b.push(n.kind as u8);
    b.extend(n.mode.to_le_bytes());
    b.extend(n.uid.to_le_bytes());
    b.extend(n.gid.to_le_bytes());
    b.push(n.user.len() as u8);
    b.extend(&n.user);
    b.push(n.group.len() as u8);
    b.extend(&n.group);
    b.extend(n.mtime.to_le_bytes());
    b.extend(n.mtime_nsec.to_le_bytes());
    b.extend(n.size.to_le_bytes());
    b.extend(n.rdev_major.to_le_bytes());
    b.extend(n.rdev_minor.to_le_bytes());
    b.extend(n.inode.to_le_bytes());
    b.extend(n.ctime.to_le_bytes());
    b.extend(n.ctime_nsec.to_le_bytes());
    b.extend(n.link_group.to_le_bytes());
    bytes16(&mut b, &n.target);
    b.extend((n.xattrs.len() as u16).to_le_bytes());
    for (k, v) in &n.xattrs {
        bytes16(&mut b, k);
        b.extend((v.len() as u32).to_le_bytes());
        b.extend(v);
    }
    b.extend((n.content.len() as u32).to_le_bytes());
    for id in &n.content {
        b.extend(id.as_bytes());
    }
    b
}

#[test]
fn tree_bytes_are_pinned() {
    let nodes = golden_nodes();
    let encoded = tree::encode(&nodes);
    let mut want = vec![1u8];
    want.extend(2u32.to_le_bytes());
    for n in &nodes {
        let one = node_by_hand(n);
        assert_eq!(one.len(), tree::encoded_len(n), "encoded_len of {n:?}");
        want.extend(one);
    }
    assert_pinned(
        "tree",
        &encoded,
        &want,
        "9e62ffa543b7aa23be942020bb7d3e0e52051654b3eed3a4c23071be6660bded",
    );
    assert_eq!(tree::decode(&want).unwrap(), nodes);

    // A split tree (version 2) of two parts.
    let parts = [Id::hash(b"part 1"), Id::hash(b"part 2")];
    let split = tree::encode_split(&parts);
    let mut want = vec![2u8];
    want.extend(2u32.to_le_bytes());
    want.extend(parts[0].as_bytes());
    want.extend(parts[1].as_bytes());
    assert_eq!(hex(&split), hex(&want));
    assert_eq!(
        tree::decode_blob(&want).unwrap(),
        TreeBlob::Split(parts.to_vec())
    );
}

fn golden_snapshot() -> Snapshot {
    Snapshot {
        name: "golden".into(),
        kind: SourceKind::Path,
        origin: serde_json::json!({ "path": "/srv/golden" }),
        hostname: "backup-host".into(),
        time: "2026-11-01T03:15:00Z".parse().unwrap(),
        tags: vec!["before-upgrade".into()],
        parent: Some(Id::hash(b"parent")),
        run_id: Some("20261101T031500Z-abc123".into()),
        run: Some(cbsnap::run::RunPlan {
            project: "code-buddy".into(),
            expected: vec!["golden".into(), "qdrant-data".into()],
            excluded: vec![],
            unlisted: vec![],
        }),
        consistency: Some("paused".into()),
        tree: Id::hash(b"root tree"),
        root: RootMeta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            mtime_nsec: 5,
        },
        stats: SnapshotStats {
            files: 3,
            dirs: 1,
            other: 0,
            bytes: 12345,
            files_unchanged: 1,
            bytes_read: 2345,
            new_blobs: 2,
            new_bytes_raw: 2345,
            new_bytes_stored: 1200,
            duration_secs: 1.5,
        },
        errors: vec![FileError {
            path: "unreadable".into(),
            error: "permission denied".into(),
            stored: false,
        }],
        excluded: vec![],
        cbsnap_version: "0.1.0".into(),
    }
}

/// The JSON of [`golden_snapshot`], as FORMAT.md "Snapshots" lists its fields.
const GOLDEN_SNAPSHOT_JSON: &str = r#"{
  "name": "golden",
  "kind": "path",
  "origin": {
    "path": "/srv/golden"
  },
  "hostname": "backup-host",
  "time": "2026-11-01T03:15:00Z",
  "tags": [
    "before-upgrade"
  ],
  "parent": "PARENT",
  "run_id": "20261101T031500Z-abc123",
  "run": {
    "project": "code-buddy",
    "expected": [
      "golden",
      "qdrant-data"
    ],
    "excluded": [],
    "unlisted": []
  },
  "consistency": "paused",
  "tree": "TREE",
  "root": {
    "mode": 493,
    "uid": 0,
    "gid": 0,
    "mtime": 1700000000,
    "mtime_nsec": 5
  },
  "stats": {
    "files": 3,
    "dirs": 1,
    "other": 0,
    "bytes": 12345,
    "files_unchanged": 1,
    "bytes_read": 2345,
    "new_blobs": 2,
    "new_bytes_raw": 2345,
    "new_bytes_stored": 1200,
    "duration_secs": 1.5
  },
  "errors": [
    {
      "path": "unreadable",
      "error": "permission denied"
    }
  ],
  "cbsnap_version": "0.1.0"
}
"#;

#[test]
fn snapshot_bytes_are_pinned() {
    let snap = golden_snapshot();
    let encoded = snap.encode();
    let json = GOLDEN_SNAPSHOT_JSON
        .replace("PARENT", &Id::hash(b"parent").to_hex())
        .replace("TREE", &Id::hash(b"root tree").to_hex());
    let mut want = b"CBSNAPSN".to_vec();
    want.extend(2u32.to_le_bytes());
    want.extend(json.as_bytes());
    assert_pinned(
        "snapshot",
        &encoded,
        &want,
        "5868061163d57c3c9aa8dba98a6cac8937997a2bd7168c6e4910c1ea7450b8d2",
    );
    assert_eq!(Snapshot::decode(&want).unwrap(), snap);
}

/// `excluded` (entries left out on purpose: the repository inside the source) is
/// written only when there are any, after `errors`, in snapshot version 2: the pinned
/// bytes above stay those of a snapshot that left nothing out, and a build that does
/// not know the field reads such a snapshot as before (FORMAT.md: unknown fields are
/// ignored).
#[test]
fn excluded_entries_are_written_after_the_errors() {
    let mut snap = golden_snapshot();
    snap.excluded = vec![Excluded {
        path: ".local/share/cbsnap/repo".into(),
        why: "it is this snapshot's repository".into(),
    }];
    let json = GOLDEN_SNAPSHOT_JSON
        .replace("PARENT", &Id::hash(b"parent").to_hex())
        .replace("TREE", &Id::hash(b"root tree").to_hex())
        .replace(
            "  \"cbsnap_version\"",
            r#"  "excluded": [
    {
      "path": ".local/share/cbsnap/repo",
      "why": "it is this snapshot's repository"
    }
  ],
  "cbsnap_version""#,
        );
    let mut want = b"CBSNAPSN".to_vec();
    want.extend(2u32.to_le_bytes());
    want.extend(json.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&snap.encode()),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(Snapshot::decode(&want).unwrap(), snap);
}

/// The JSON of the pinned config, as FORMAT.md "config" lists its fields.
const GOLDEN_CONFIG_JSON: &str = r#"{
  "version": 2,
  "id": "ID",
  "chunker": {
    "algorithm": "fastcdc-v2020",
    "min_size": 16384,
    "avg_size": 65536,
    "max_size": 262144
  },
  "zstd_level": 3,
  "pack_target_size": 16777216,
  "created": "2026-11-01T03:15:00+00:00"
}
"#;

#[test]
fn config_bytes_are_pinned() {
    let config = RepoConfig {
        version: 2,
        id: Id::hash(b"repository"),
        chunker: ChunkerParams::default(),
        zstd_level: 3,
        pack_target_size: 16 << 20,
        created: "2026-11-01T03:15:00+00:00".into(),
        encryption: None,
    };
    let encoded = config.encode();
    let mut want = b"CBSNAPCF".to_vec();
    want.extend(2u32.to_le_bytes());
    want.extend(
        GOLDEN_CONFIG_JSON
            .replace("ID", &Id::hash(b"repository").to_hex())
            .as_bytes(),
    );
    let sum = *blake3::hash(&want).as_bytes();
    want.extend(sum);
    assert_pinned(
        "config",
        &encoded,
        &want,
        "382a27cd001690e9bc82f3ea93e7b554ceb4d8387c79b200d5a3616e8ed7b274",
    );
    assert_eq!(RepoConfig::decode(&want).unwrap(), config);
    // The defaults of a new repository are the pinned parameters.
    let fresh = RepoConfig::new();
    assert_eq!(
        (
            fresh.version,
            &fresh.chunker,
            fresh.zstd_level,
            fresh.pack_target_size
        ),
        (2, &config.chunker, 3, 16 << 20)
    );
}
