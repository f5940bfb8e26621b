//! Trees: the metadata of one directory, stored as a blob of kind `Tree` in packs like
//! file content, so an unchanged directory costs nothing in a new snapshot.
//!
//! A tree is the list of a directory's entries sorted by name. Each [`Node`] holds the
//! metadata every source can give (a directory walk or a tar stream) and, for a regular
//! file, the ids of its chunks in order; for a directory, the id of its own tree.
//! Byte layout in `docs/FORMAT.md` ("Tree blobs").
//!
//! A directory whose node list would not fit one blob is written as a *split tree*
//! (version 2): a list of part ids, each part an ordinary version-1 tree holding a
//! run of the sorted entries. Small directories keep the version-1 form, so their ids
//! are the same as before split trees existed. [`write`] is the only encoder callers
//! use; [`decode_blob`] reads either form (`crate::walk` loads a whole directory).

use crate::codec::{DecodeError, Reader, Writer};
use crate::id::Id;
use crate::pack::MAX_BLOB;

/// Version of a tree that holds its nodes (every tree before split trees existed).
pub const TREE_VERSION: u8 = 1;
/// Version of a split tree: a list of version-1 parts.
pub const SPLIT_TREE_VERSION: u8 = 2;
/// Upper bound on entries per tree accepted by the decoder (guards allocations).
const MAX_ENTRIES: u32 = 50_000_000;
/// A directory whose encoded node list is larger than this many bytes is written as a
/// split tree with parts of at most this size (a single larger node gets a part of its
/// own). Well below [`MAX_BLOB`], so readers hold little per part.
pub const PART_LIMIT: usize = 4 << 20;
/// The largest encoded node: it must fit a version-1 part (header 5 bytes) within the
/// blob limit readers enforce.
pub const MAX_NODE: usize = MAX_BLOB as usize - 5;
/// Longest owner or group name the format stores (a u8 length).
pub const MAX_OWNER_NAME: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    CharDev = 5,
    BlockDev = 6,
    Socket = 7,
}

impl NodeKind {
    pub fn from_u8(v: u8) -> Option<NodeKind> {
        Some(match v {
            1 => NodeKind::File,
            2 => NodeKind::Dir,
            3 => NodeKind::Symlink,
            4 => NodeKind::Fifo,
            5 => NodeKind::CharDev,
            6 => NodeKind::BlockDev,
            7 => NodeKind::Socket,
            _ => return None,
        })
    }

    pub fn letter(self) -> char {
        match self {
            NodeKind::File => '-',
            NodeKind::Dir => 'd',
            NodeKind::Symlink => 'l',
            NodeKind::Fifo => 'p',
            NodeKind::CharDev => 'c',
            NodeKind::BlockDev => 'b',
            NodeKind::Socket => 's',
        }
    }
}

/// Extended attributes as a node records them: (name, value) pairs sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// One path component, never empty, `.`, `..`, nor containing `/` or NUL. Not
    /// necessarily UTF-8.
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: Vec<u8>,
    pub group: Vec<u8>,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Length of a regular file's content; 0 for other kinds.
    pub size: u64,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// Inode number and ctime as seen by a directory walk, used only to tell whether a
    /// file changed since the parent snapshot; 0 when the source has none (tar).
    pub inode: u64,
    pub ctime: i64,
    pub ctime_nsec: u32,
    /// Entries of one snapshot with the same non-zero group are hard links of one file.
    pub link_group: u64,
    /// Symlink target.
    pub target: Vec<u8>,
    /// Extended attributes, sorted by name.
    pub xattrs: Xattrs,
    /// File: chunk ids in order. Directory: exactly one id, its tree. Others: empty.
    pub content: Vec<Id>,
}

impl Node {
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: if kind == NodeKind::Dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            user: Vec::new(),
            group: Vec::new(),
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            rdev_major: 0,
            rdev_minor: 0,
            inode: 0,
            ctime: 0,
            ctime_nsec: 0,
            link_group: 0,
            target: Vec::new(),
            xattrs: Vec::new(),
            content: Vec::new(),
        }
    }

    pub fn subtree(&self) -> Option<Id> {
        if self.kind == NodeKind::Dir {
            self.content.first().copied()
        } else {
            None
        }
    }

    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// Whether `name` can be a single path component on restore.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
        && name.len() <= u16::MAX as usize
}

/// A node field beyond what the tree format (and the blob limit readers enforce) can
/// hold. Each variant names the field and its size, so the entry can be reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    #[error("the name of {0} bytes is too long (at most 65535)")]
    Name(usize),
    #[error("the symlink target of {0} bytes is too long (at most 65535)")]
    Target(usize),
    #[error("{0} extended attributes are too many (at most 65535)")]
    XattrCount(usize),
    #[error("an extended attribute name of {0} bytes is too long (at most 65535)")]
    XattrName(usize),
    #[error(
        "its metadata and chunk list take {0} bytes, more than one tree blob holds ({MAX_NODE})"
    )]
    NodeSize(usize),
}

/// Whether a node fits the tree format; `Err` says which field does not. Sources and
/// the ingest check this before a node reaches [`write`] (a hostile tar stream can
/// carry fields far beyond what a filesystem allows). Owner and group names longer
/// than [`MAX_OWNER_NAME`] are not an error here: see [`truncate_owner_names`].
pub fn fits(n: &Node) -> Result<(), FitError> {
    if n.name.len() > u16::MAX as usize {
        return Err(FitError::Name(n.name.len()));
    }
    if n.target.len() > u16::MAX as usize {
        return Err(FitError::Target(n.target.len()));
    }
    if n.xattrs.len() > u16::MAX as usize {
        return Err(FitError::XattrCount(n.xattrs.len()));
    }
    if let Some((k, _)) = n.xattrs.iter().find(|(k, _)| k.len() > u16::MAX as usize) {
        return Err(FitError::XattrName(k.len()));
    }
    let len = encoded_len(n);
    if len > MAX_NODE {
        return Err(FitError::NodeSize(len));
    }
    Ok(())
}

/// Cut owner and group names to the [`MAX_OWNER_NAME`] bytes the format stores;
/// returns whether anything was cut (the caller records it).
pub fn truncate_owner_names(n: &mut Node) -> bool {
    let long = n.user.len() > MAX_OWNER_NAME || n.group.len() > MAX_OWNER_NAME;
    n.user.truncate(MAX_OWNER_NAME);
    n.group.truncate(MAX_OWNER_NAME);
    long
}

/// Bytes `n` takes in a tree blob.
pub fn encoded_len(n: &Node) -> usize {
    2 + n.name.len()
        + 1
        + 12
        + 1
        + n.user.len().min(MAX_OWNER_NAME)
        + 1
        + n.group.len().min(MAX_OWNER_NAME)
        + 12
        + 8
        + 8
        + 8
        + 12
        + 8
        + 2
        + n.target.len()
        + 2
        + n.xattrs
            .iter()
            .map(|(k, v)| 6 + k.len() + v.len())
            .sum::<usize>()
        + 4
        + 32 * n.content.len()
}

/// Write the tree of one directory: `nodes` sorted by name, each of which [`fits`].
/// `put` stores one tree blob and returns its id. A node list that encodes to at
/// most [`PART_LIMIT`] bytes is one version-1 tree; a larger one is stored as
/// version-1 parts and a split tree listing them, which `put` receives last.
pub fn write<E>(nodes: &[Node], mut put: impl FnMut(Vec<u8>) -> Result<Id, E>) -> Result<Id, E> {
    let mut w = TreeWriter::new();
    for n in nodes {
        w.push(n, &mut put)?;
    }
    w.finish(&mut put)
}

/// [`write`] for nodes that arrive one at a time, in name order: it holds at most one
/// part's encoded nodes ([`PART_LIMIT`] bytes), so a directory of millions of entries
/// (a tar import's) is written without its node list in memory. The blobs and the
/// resulting id are those [`write`] makes of the same nodes.
pub struct TreeWriter {
    /// The part being filled: its 5-byte header (the count is written when the part
    /// is taken), then its encoded nodes; empty before its first node. Taken as it
    /// is, so a 4 MiB part is never copied to be stored.
    part: Vec<u8>,
    count: u32,
    /// Ids of the parts already stored.
    parts: Vec<Id>,
}

impl Default for TreeWriter {
    fn default() -> Self {
        TreeWriter::new()
    }
}

impl TreeWriter {
    pub fn new() -> TreeWriter {
        TreeWriter {
            part: Vec::new(),
            count: 0,
            parts: Vec::new(),
        }
    }

    /// Add the next node (its name after every earlier one's; it [`fits`]).
    pub fn push<E>(
        &mut self,
        n: &Node,
        put: &mut impl FnMut(Vec<u8>) -> Result<Id, E>,
    ) -> Result<(), E> {
        self.make_room(encoded_len(n), put)?;
        self.start_part();
        let mut w = Writer {
            buf: std::mem::take(&mut self.part),
        };
        encode_node(&mut w, n);
        self.part = w.buf;
        self.count += 1;
        Ok(())
    }

    /// Add the next node given in its tree encoding ([`encode_node`]'s bytes).
    pub fn push_encoded<E>(
        &mut self,
        node: &[u8],
        put: &mut impl FnMut(Vec<u8>) -> Result<Id, E>,
    ) -> Result<(), E> {
        self.make_room(node.len(), put)?;
        self.start_part();
        self.part.extend_from_slice(node);
        self.count += 1;
        Ok(())
    }

    /// Store the part being filled if a node of `len` bytes would take it past
    /// [`PART_LIMIT`] (a part is never empty: a larger node gets one of its own).
    fn make_room<E>(
        &mut self,
        len: usize,
        put: &mut impl FnMut(Vec<u8>) -> Result<Id, E>,
    ) -> Result<(), E> {
        if self.count > 0 && self.part.len() + len > PART_LIMIT {
            let blob = self.take_part();
            self.parts.push(put(blob)?);
        }
        Ok(())
    }

    /// Give an empty part its header.
    fn start_part(&mut self) {
        if self.part.is_empty() {
            self.part.extend_from_slice(&[TREE_VERSION, 0, 0, 0, 0]);
        }
    }

    /// The part as a version-1 tree blob (`version u8 || count u32 || nodes`).
    fn take_part(&mut self) -> Vec<u8> {
        self.start_part();
        self.part[1..5].copy_from_slice(&self.count.to_le_bytes());
        self.count = 0;
        std::mem::take(&mut self.part)
    }

    /// Store the last part (or the whole tree, when it fits one blob) and return the
    /// directory's tree id.
    pub fn finish<E>(mut self, put: &mut impl FnMut(Vec<u8>) -> Result<Id, E>) -> Result<Id, E> {
        let whole = self.parts.is_empty() && self.part.len().max(5) <= PART_LIMIT;
        let last = self.take_part();
        if whole {
            return put(last);
        }
        self.parts.push(put(last)?);
        put(encode_split(&self.parts))
    }
}

/// A split tree: `version u8 (=2) || count u32 || part id[32] * count`.
pub fn encode_split(parts: &[Id]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(SPLIT_TREE_VERSION);
    w.u32(parts.len() as u32);
    for p in parts {
        w.id(p);
    }
    w.buf
}

/// A decoded tree blob: the nodes themselves, or the parts that hold them.
#[derive(Debug, PartialEq, Eq)]
pub enum TreeBlob {
    Nodes(Vec<Node>),
    Split(Vec<Id>),
}

/// Decode a tree blob of either version.
pub fn decode_blob(buf: &[u8]) -> Result<TreeBlob, DecodeError> {
    if buf.first() != Some(&SPLIT_TREE_VERSION) {
        return decode(buf).map(TreeBlob::Nodes);
    }
    let mut r = Reader::new(buf, "tree");
    r.u8()?;
    let count = r.u32()?;
    if count == 0 || count as usize != r.remaining() / 32 {
        return Err(r.err(format!("split tree part count {count} does not fit")));
    }
    let mut parts = Vec::with_capacity(count as usize);
    for _ in 0..count {
        parts.push(r.id()?);
    }
    r.finish()?;
    Ok(TreeBlob::Split(parts))
}

/// Check that `next`, the nodes of the part after the one ending in `last`, continue
/// the sort order.
pub fn check_part_order(last: Option<&Node>, next: &[Node]) -> Result<(), DecodeError> {
    match (last, next.first()) {
        (Some(a), Some(b)) if a.name >= b.name => Err(DecodeError {
            what: "tree",
            detail: "parts of a split tree not sorted by name or overlapping".into(),
        }),
        (_, None) => Err(DecodeError {
            what: "tree",
            detail: "empty part in a split tree".into(),
        }),
        _ => Ok(()),
    }
}

/// Encode a version-1 tree. Callers store trees through [`write`], which splits a
/// list too large for one blob.
pub fn encode(nodes: &[Node]) -> Vec<u8> {
    let mut w = Writer::with_capacity(5 + nodes.iter().map(encoded_len).sum::<usize>());
    w.u8(TREE_VERSION);
    w.u32(nodes.len() as u32);
    for n in nodes {
        encode_node(&mut w, n);
    }
    w.buf
}

/// Append one node's tree encoding (`docs/FORMAT.md`, "Tree blobs"): the bytes a
/// version-1 tree holds per entry, [`encoded_len`] of them.
pub fn encode_node(w: &mut Writer, n: &Node) {
    w.bytes16(&n.name);
    w.u8(n.kind as u8);
    w.u32(n.mode);
    w.u32(n.uid);
    w.u32(n.gid);
    w.bytes8(&n.user[..n.user.len().min(MAX_OWNER_NAME)]);
    w.bytes8(&n.group[..n.group.len().min(MAX_OWNER_NAME)]);
    w.i64(n.mtime);
    w.u32(n.mtime_nsec);
    w.u64(n.size);
    w.u32(n.rdev_major);
    w.u32(n.rdev_minor);
    w.u64(n.inode);
    w.i64(n.ctime);
    w.u32(n.ctime_nsec);
    w.u64(n.link_group);
    w.bytes16(&n.target);
    w.u16(n.xattrs.len() as u16);
    for (k, v) in &n.xattrs {
        w.bytes16(k);
        w.bytes32(v);
    }
    w.u32(n.content.len() as u32);
    for id in &n.content {
        w.id(id);
    }
}

/// Decode a version-1 tree (a split tree's part). See [`decode_blob`] for both.
pub fn decode(buf: &[u8]) -> Result<Vec<Node>, DecodeError> {
    let mut r = Reader::new(buf, "tree");
    let v = r.u8()?;
    if v != TREE_VERSION {
        return Err(r.err(format!("tree version {v} is not supported")));
    }
    let count = r.u32()?;
    if count > MAX_ENTRIES || count as usize > r.remaining() / 8 {
        return Err(r.err(format!("entry count {count} does not fit")));
    }
    let mut out: Vec<Node> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name = r.bytes16()?.to_vec();
        if !valid_name(&name) {
            return Err(r.err(format!(
                "invalid entry name {:?}",
                String::from_utf8_lossy(&name)
            )));
        }
        if let Some(prev) = out.last() {
            if prev.name >= name {
                return Err(r.err("entries not sorted by name or duplicated"));
            }
        }
        let k = r.u8()?;
        let kind = NodeKind::from_u8(k).ok_or_else(|| r.err(format!("node kind {k}")))?;
        let mut n = Node::new(name, kind);
        n.mode = r.u32()?;
        n.uid = r.u32()?;
        n.gid = r.u32()?;
        n.user = r.bytes8()?.to_vec();
        n.group = r.bytes8()?.to_vec();
        n.mtime = r.i64()?;
        n.mtime_nsec = r.u32()?;
        n.size = r.u64()?;
        n.rdev_major = r.u32()?;
        n.rdev_minor = r.u32()?;
        n.inode = r.u64()?;
        n.ctime = r.i64()?;
        n.ctime_nsec = r.u32()?;
        n.link_group = r.u64()?;
        n.target = r.bytes16()?.to_vec();
        let nx = r.u16()?;
        for _ in 0..nx {
            let k = r.bytes16()?.to_vec();
            let v = r.bytes32()?.to_vec();
            n.xattrs.push((k, v));
        }
        let nc = r.u32()?;
        if nc as usize > r.remaining() / 32 {
            return Err(r.err(format!("content count {nc} does not fit")));
        }
        for _ in 0..nc {
            n.content.push(r.id()?);
        }
        if kind == NodeKind::Dir && n.content.len() != 1 {
            return Err(r.err("directory without exactly one subtree"));
        }
        out.push(n);
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_node() -> impl Strategy<Value = Node> {
        (
            proptest::collection::vec(1u8..=255, 1..40),
            1u8..=7,
            any::<u32>(),
            any::<(u32, u32, i64, u32, u64, u64)>(),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..20),
                    proptest::collection::vec(any::<u8>(), 0..50),
                ),
                0..3,
            ),
            proptest::collection::vec(any::<[u8; 32]>(), 0..4),
        )
            .prop_map(
                |(name, k, mode, (uid, gid, mtime, nsec, size, grp), xattrs, content)| {
                    let mut name: Vec<u8> = name
                        .into_iter()
                        .map(|b| if b == b'/' { b'_' } else { b })
                        .collect();
                    if name == b"." || name == b".." {
                        name.push(b'x');
                    }
                    let kind = NodeKind::from_u8(k).unwrap();
                    let mut n = Node::new(name, kind);
                    n.mode = mode;
                    n.uid = uid;
                    n.gid = gid;
                    n.mtime = mtime;
                    n.mtime_nsec = nsec;
                    n.size = size;
                    n.link_group = grp;
                    n.xattrs = xattrs;
                    n.content = content.into_iter().map(Id).collect();
                    if kind == NodeKind::Dir {
                        n.content = vec![Id([1; 32])];
                    }
                    n
                },
            )
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(mut nodes in proptest::collection::vec(arb_node(), 0..20)) {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            nodes.dedup_by(|a, b| a.name == b.name);
            let bytes = encode(&nodes);
            prop_assert_eq!(decode(&bytes).unwrap(), nodes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = decode(&bytes);
        }
    }

    fn many(n: usize) -> Vec<Node> {
        (0..n)
            .map(|i| Node::new(format!("f{i:08}").into_bytes(), NodeKind::File))
            .collect()
    }

    /// Stores blobs in a map, as a repository would.
    fn store(
        blobs: &std::cell::RefCell<std::collections::HashMap<Id, Vec<u8>>>,
        raw: Vec<u8>,
    ) -> Id {
        let id = Id::hash(&raw);
        blobs.borrow_mut().insert(id, raw);
        id
    }

    #[test]
    fn small_directories_keep_the_version_1_form() {
        let nodes = many(1000);
        let blobs = Default::default();
        let id = write(&nodes, |raw| Ok::<_, ()>(store(&blobs, raw))).unwrap();
        assert_eq!(blobs.borrow().len(), 1);
        assert_eq!(blobs.borrow()[&id], encode(&nodes));
        let empty = write(&[], |raw| Ok::<_, ()>(store(&blobs, raw))).unwrap();
        assert_eq!(blobs.borrow()[&empty], encode(&[]));
    }

    #[test]
    fn large_directories_are_split_into_parts_that_load_back() {
        let nodes = many(100_000);
        let blobs = Default::default();
        let id = write(&nodes, |raw| Ok::<_, ()>(store(&blobs, raw))).unwrap();
        let b = blobs.borrow();
        let TreeBlob::Split(parts) = decode_blob(&b[&id]).unwrap() else {
            panic!(
                "a tree of {} bytes was not split",
                5 + nodes.iter().map(encoded_len).sum::<usize>()
            );
        };
        assert!(parts.len() >= 2);
        assert!(parts.iter().all(|p| b[p].len() <= PART_LIMIT));
        // Each part but the last is as full as it can be: the next node did not fit
        // (the split points, and so the tree ids, are the format's).
        for w in parts.windows(2) {
            let next = decode(&b[&w[1]]).unwrap();
            assert!(b[&w[0]].len() + encoded_len(&next[0]) > PART_LIMIT);
        }
        let mut back: Vec<Node> = Vec::new();
        for p in &parts {
            let n = decode(&b[p]).unwrap();
            check_part_order(back.last(), &n).unwrap();
            back.extend(n);
        }
        assert_eq!(back, nodes);
        // Parts out of order are damage, not a directory (`walk::Listing` reads so).
        let first = decode(&b[&parts[0]]).unwrap();
        let second = decode(&b[&parts[1]]).unwrap();
        assert!(check_part_order(second.last(), &first).is_err());
    }

    /// A part takes nodes up to exactly [`PART_LIMIT`] bytes, its header included:
    /// the split points decide the tree ids, so they must not move between versions.
    #[test]
    fn a_part_is_filled_to_the_byte() {
        // 4 MiB - 5 = 1769 * 2371: nodes of 1769 bytes fill a part exactly.
        let base = encoded_len(&Node::new(Vec::new(), NodeKind::File));
        let nodes: Vec<Node> = (0..5000)
            .map(|i| {
                let mut name = format!("f{i:08}").into_bytes();
                name.resize(1769 - base, b'x');
                Node::new(name, NodeKind::File)
            })
            .collect();
        assert!(nodes.iter().all(|n| encoded_len(n) == 1769));
        let blobs = Default::default();
        let id = write(&nodes, |raw| Ok::<_, ()>(store(&blobs, raw))).unwrap();
        let b = blobs.borrow();
        let TreeBlob::Split(parts) = decode_blob(&b[&id]).unwrap() else {
            panic!("not split");
        };
        let counts: Vec<usize> = parts.iter().map(|p| decode(&b[p]).unwrap().len()).collect();
        assert_eq!(counts, [2371, 2371, 258]);
        assert_eq!(b[&parts[0]].len(), PART_LIMIT);
        assert_eq!(b[&parts[0]], encode(&nodes[..2371]));
    }

    #[test]
    fn encoded_len_is_exact() {
        let mut n = Node::new(b"name".to_vec(), NodeKind::File);
        n.user = b"root".to_vec();
        n.target = b"t".to_vec();
        n.xattrs = vec![(b"user.a".to_vec(), b"vvv".to_vec())];
        n.content = vec![Id([7; 32]); 3];
        assert_eq!(encode(std::slice::from_ref(&n)).len(), 5 + encoded_len(&n));
    }

    #[test]
    fn oversized_nodes_do_not_fit() {
        let mut n = Node::new(b"huge".to_vec(), NodeKind::File);
        n.content = vec![Id([0; 32]); MAX_NODE / 32 + 1];
        assert!(matches!(fits(&n), Err(FitError::NodeSize(_))));
        n.content.clear();
        n.target = vec![b'x'; 70_000];
        assert!(matches!(fits(&n), Err(FitError::Target(70_000))));
    }

    #[test]
    fn hostile_names_are_rejected() {
        let mut n = Node::new(b"ok".to_vec(), NodeKind::File);
        for bad in [&b".."[..], b".", b"a/b", b""] {
            n.name = bad.to_vec();
            assert!(
                decode(&encode(std::slice::from_ref(&n))).is_err(),
                "{bad:?}"
            );
        }
    }
}
