//! Pack files: immutable containers of compressed blobs.
//!
//! A pack is written once, front to back, to a temporary file, then renamed to the
//! BLAKE3 of its bytes under `packs/<2 hex>/`. It carries a trailer that lists every
//! blob it holds, so the index can always be rebuilt from packs alone (restic's
//! design, `doc/design.rst`, "Pack Format"). Layout (see `docs/FORMAT.md`):
//!
//! ```text
//! "CBSNAPPK" || u32 version || blob_0 || … || blob_n-1 || trailer || footer
//! trailer = n × (id[32] || offset u64 || stored_len u32 || raw_len u32 || kind u8 || compression u8 || 0u16)
//! footer  = n u32 || blake3(trailer)[32] || "CBSNAPTR"
//! ```
//!
//! A pack of an encrypted repository is version 2: each blob's stored bytes and the
//! trailer are sealed ([`crate::crypto`]: `nonce[24] || ciphertext || tag[16]`), and
//! the footer's checksum covers the sealed trailer. The header and footer stay in the
//! clear, so a pack is still recognised and its trailer found without the key.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::codec::{self, DecodeError, Reader, Writer};
use crate::crypto::{AuthError, Crypt, Purpose};
use crate::fsutil;
use crate::id::Id;

pub const MAGIC: &[u8; 8] = b"CBSNAPPK";
pub const TRAILER_MAGIC: &[u8; 8] = b"CBSNAPTR";
/// The version of a pack of an unencrypted repository.
pub const VERSION: u32 = 1;
/// The version of a pack of an encrypted repository (sealed blobs and trailer).
pub const SEALED_VERSION: u32 = 2;
pub const ENTRY_LEN: usize = 52;
pub const FOOTER_LEN: usize = 4 + 32 + 8;
/// Blobs larger than this are refused by readers (the chunker's max is far smaller;
/// the limit only guards against corrupt lengths).
pub const MAX_BLOB: u32 = 64 * 1024 * 1024;
/// The largest stored length: a blob of [`MAX_BLOB`] bytes, sealed.
pub const MAX_STORED: u32 = MAX_BLOB + crate::crypto::OVERHEAD as u32;
/// The most blobs one pack can list: the footer counts them in a `u32`.
pub const MAX_PACK_ENTRIES: usize = u32::MAX as usize;

/// A blob a pack writer refuses because a reader would reject it. Always a cbsnap
/// bug: the chunker, the tree writer and the repacker stay far inside these limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobRejected {
    /// Raw or stored length above [`MAX_BLOB`].
    #[error("blob {id} of {raw_len} bytes ({stored_len} stored) exceeds the {MAX_BLOB}-byte blob limit (a cbsnap bug: please report it)")]
    TooLarge {
        id: Id,
        raw_len: u64,
        stored_len: u64,
    },
    /// Stored without compression, so its stored and raw lengths must be equal.
    #[error("blob {id} is stored uncompressed in {stored_len} bytes but records {raw_len} raw bytes (a cbsnap bug: please report it)")]
    LengthMismatch {
        id: Id,
        raw_len: u32,
        stored_len: u64,
    },
    /// The pack already lists [`MAX_PACK_ENTRIES`] blobs.
    #[error("a pack lists at most {MAX_PACK_ENTRIES} blobs (a cbsnap bug: please report it)")]
    PackFull,
}

/// Check one blob against every limit a reader enforces ([`read_trailer`],
/// [`BlobEntry::decode_location`], [`decode_blob`]): raw and stored length at most
/// [`MAX_BLOB`], and equal lengths for a blob stored uncompressed. `raw_len` is a
/// `u64` so that a caller can check a length before it narrows it. `stored_len` is
/// the length before sealing (an encrypted repository adds
/// [`crate::crypto::OVERHEAD`] bytes on disk, up to [`MAX_STORED`]).
pub fn check_blob(
    id: &Id,
    raw_len: u64,
    stored_len: u64,
    compression: Compression,
) -> Result<(), BlobRejected> {
    if raw_len > MAX_BLOB as u64 || stored_len > MAX_BLOB as u64 {
        return Err(BlobRejected::TooLarge {
            id: *id,
            raw_len,
            stored_len,
        });
    }
    if compression == Compression::None && stored_len != raw_len {
        return Err(BlobRejected::LengthMismatch {
            id: *id,
            raw_len: raw_len as u32,
            stored_len,
        });
    }
    Ok(())
}

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlobKind {
    Data = 0,
    Tree = 1,
}

impl BlobKind {
    pub fn from_u8(v: u8) -> Option<BlobKind> {
        match v {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// How a blob's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

impl Compression {
    pub fn from_u8(v: u8) -> Option<Compression> {
        match v {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// One trailer entry: where a blob is in its pack and how to read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    pub id: Id,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub kind: BlobKind,
    pub compression: Compression,
}

impl BlobEntry {
    /// Trailer entry: `id || location fields || reserved u16`.
    pub fn encode(&self, w: &mut Writer) {
        w.id(&self.id);
        self.encode_location(w);
        w.u16(0);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<BlobEntry, DecodeError> {
        let id = r.id()?;
        let e = BlobEntry::decode_location(id, r)?;
        let _reserved = r.u16()?;
        Ok(e)
    }

    /// The location fields, shared by the pack trailer and the index:
    /// `offset u64 || stored_len u32 || raw_len u32 || kind u8 || compression u8`.
    pub fn encode_location(&self, w: &mut Writer) {
        w.u64(self.offset);
        w.u32(self.stored_len);
        w.u32(self.raw_len);
        w.u8(self.kind as u8);
        w.u8(self.compression as u8);
    }

    pub fn decode_location(id: Id, r: &mut Reader<'_>) -> Result<BlobEntry, DecodeError> {
        let offset = r.u64()?;
        let stored_len = r.u32()?;
        let raw_len = r.u32()?;
        let kind = r.u8()?;
        let comp = r.u8()?;
        let kind = BlobKind::from_u8(kind).ok_or_else(|| r.err(format!("blob kind {kind}")))?;
        let compression =
            Compression::from_u8(comp).ok_or_else(|| r.err(format!("compression {comp}")))?;
        if stored_len > MAX_STORED || raw_len > MAX_BLOB {
            return Err(r.err(format!("blob length {stored_len}/{raw_len} too large")));
        }
        Ok(BlobEntry {
            id,
            offset,
            stored_len,
            raw_len,
            kind,
            compression,
        })
    }
}

thread_local! {
    // A zstd context costs more to create (allocate and initialise its tables) than
    // compressing or decompressing one small blob: each thread keeps one of each.
    // Reusing a context does not change the output for the same level.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// zstd of `raw` at `level` with this thread's context.
fn zstd_compress(raw: &[u8], level: i32) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, c) = slot.as_mut().expect("compressor was just created");
        c.compress(raw)
    })
}

/// Decompress a zstd frame of at most `capacity` bytes with this thread's context.
fn zstd_decompress(stored: &[u8], capacity: usize) -> io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        let d = slot.as_mut().expect("decompressor was just created");
        d.decompress(stored, capacity)
    })
}

/// Compress a blob if that makes it smaller; returns the stored bytes and how.
pub fn compress(raw: &[u8], level: i32) -> (Vec<u8>, Compression) {
    match zstd_compress(raw, level) {
        Ok(c) if c.len() < raw.len() => (c, Compression::Zstd),
        _ => (raw.to_vec(), Compression::None),
    }
}

/// [`compress`] of an owned blob: an incompressible blob (model weights, media,
/// archives) is stored as it is, without a copy.
pub fn compress_vec(raw: Vec<u8>, level: i32) -> (Vec<u8>, Compression) {
    match zstd_compress(&raw, level) {
        Ok(c) if c.len() < raw.len() => (c, Compression::Zstd),
        _ => (raw, Compression::None),
    }
}

/// Why the stored bytes of a blob are not the blob its entry names: the blob is
/// damaged.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// zstd refused the bytes.
    #[error("zstd: {0}")]
    Zstd(#[source] io::Error),
    /// The raw length (bytes) is not the entry's `raw_len`.
    #[error("length {got} where the index says {want}")]
    Length { got: usize, want: u32 },
    /// Encrypted repository: the sealed bytes fail authentication (changed on disk,
    /// or not sealed with this repository's key).
    #[error(transparent)]
    Authentication(#[from] AuthError),
    /// The raw bytes do not hash to the entry's id.
    #[error("content does not match its BLAKE3 id")]
    Hash,
}

/// Why a pack, or a blob in it, could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackReadError {
    /// Opening the pack file failed.
    #[error("cannot open: {0}")]
    Open(#[source] io::Error),
    /// Reading its bytes failed.
    #[error("cannot read: {0}")]
    Read(#[source] io::Error),
    /// The trailer is damaged.
    #[error(transparent)]
    Trailer(#[from] DecodeError),
    /// A blob of the pack is damaged.
    #[error("blob {id}: {source}")]
    Blob {
        id: Id,
        #[source]
        source: BlobError,
    },
}

/// Turn stored bytes back into the raw blob (open them when `crypt` seals,
/// decompress) and verify its id with `crypt`'s id function.
///
/// Errors: [`BlobError`]; every one means the blob is damaged.
pub fn decode_blob(entry: &BlobEntry, stored: &[u8], crypt: &Crypt) -> Result<Vec<u8>, BlobError> {
    let opened;
    let plain = if crypt.is_encrypted() {
        opened = crypt.open(Purpose::Blob, stored.to_vec())?;
        &opened[..]
    } else {
        stored
    };
    let raw = match entry.compression {
        Compression::None => plain.to_vec(),
        Compression::Zstd => {
            zstd_decompress(plain, entry.raw_len as usize).map_err(BlobError::Zstd)?
        }
    };
    if raw.len() != entry.raw_len as usize {
        return Err(BlobError::Length {
            got: raw.len(),
            want: entry.raw_len,
        });
    }
    if crypt.id(&raw) != entry.id {
        return Err(BlobError::Hash);
    }
    Ok(raw)
}

/// Writes one pack to a temporary file in `dir` (a `NamedTempFile`: removed if the
/// writer is dropped before it is sealed and committed); use [`crate::packer::Packer`],
/// which also seals at the target size and indexes, rather than this directly.
pub struct PackWriter {
    crypt: Crypt,
    out: BufWriter<NamedTempFile>,
    hasher: blake3::Hasher,
    pos: u64,
    entries: Vec<BlobEntry>,
}

impl PackWriter {
    /// Start a pack in `dir` for a repository that protects its data with `crypt`
    /// (a sealed trailer and version [`SEALED_VERSION`] when it encrypts). Blobs are
    /// given to [`PackWriter::add`] already sealed ([`crate::packer::compress`]).
    pub fn create(dir: &Path, crypt: &Crypt) -> io::Result<PackWriter> {
        let f = fsutil::temp_file(dir)?;
        let mut w = PackWriter {
            crypt: crypt.clone(),
            out: BufWriter::with_capacity(1 << 20, f),
            hasher: blake3::Hasher::new(),
            pos: 0,
            entries: Vec::new(),
        };
        let version = if crypt.is_encrypted() {
            SEALED_VERSION
        } else {
            VERSION
        };
        w.write(&codec::header(MAGIC, version))?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.hasher.update(b);
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Append one blob as stored (`stored` is `raw_len` bytes compressed as
    /// `compression` says). Refuses, before writing anything, a blob a reader would
    /// reject ([`check_blob`]) and a blob past [`MAX_PACK_ENTRIES`]; the error is an
    /// `InvalidInput` I/O error carrying the [`BlobRejected`].
    pub fn add(
        &mut self,
        id: Id,
        kind: BlobKind,
        raw_len: u32,
        stored: &[u8],
        compression: Compression,
    ) -> io::Result<()> {
        // The one place every blob passes: never write what a reader would reject.
        let plain_len = (stored.len() as u64).saturating_sub(self.crypt.overhead() as u64);
        let rejected = if self.entries.len() >= MAX_PACK_ENTRIES {
            Err(BlobRejected::PackFull)
        } else {
            check_blob(&id, raw_len as u64, plain_len, compression)
        };
        rejected.map_err(|r| io::Error::new(io::ErrorKind::InvalidInput, r))?;
        let entry = BlobEntry {
            id,
            offset: self.pos,
            stored_len: stored.len() as u32,
            raw_len,
            kind,
            compression,
        };
        self.write(stored)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Bytes written so far (header and blobs).
    pub fn size(&self) -> u64 {
        self.pos
    }

    /// Blobs added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Write the trailer and footer and hand the complete (not yet durable) pack
    /// over, so that its fsync can run on another thread while the next pack fills
    /// (the ingest pipeline's flusher). On error the temporary file is removed.
    pub fn seal(mut self) -> io::Result<SealedPack> {
        let mut t = Writer::new();
        for e in &self.entries {
            e.encode(&mut t);
        }
        let trailer = self
            .crypt
            .seal(Purpose::Trailer, t.buf)
            .map_err(io::Error::other)?;
        let trailer_hash = blake3::hash(&trailer);
        let mut footer = Writer::new();
        footer.u32(self.entries.len() as u32);
        footer.raw(trailer_hash.as_bytes());
        footer.raw(TRAILER_MAGIC);
        self.write(&trailer)?;
        self.write(&footer.buf)?;
        let PackWriter {
            crypt: _,
            out,
            hasher,
            pos,
            entries,
        } = self;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        Ok(SealedPack {
            file,
            id: Id::from(hasher.finalize()),
            size: pos,
            entries,
        })
    }
}

/// A pack whose bytes are all written to its temporary file but not yet durable.
/// Dropping it without [`SealedPack::commit`] removes the temporary file.
#[derive(Debug)]
pub struct SealedPack {
    file: NamedTempFile,
    id: Id,
    size: u64,
    entries: Vec<BlobEntry>,
}

impl SealedPack {
    /// The pack's id (BLAKE3 of its bytes).
    pub fn id(&self) -> Id {
        self.id
    }

    /// Fsync the pack, rename it to `packs_dir/<2 hex>/<id>` and fsync the
    /// directory. Only after this returns `Ok` is the pack durable and may its blobs
    /// be indexed; returns (pack id, size in bytes, trailer entries). Call it through
    /// [`crate::packer::save`], the one place a pack becomes a repository file.
    pub fn commit(self, packs_dir: &Path) -> io::Result<(Id, u64, Vec<BlobEntry>)> {
        let final_path = pack_path(packs_dir, &self.id);
        let sub = final_path.parent().expect("pack path has a parent");
        if !sub.exists() {
            fsutil::create_private_dir_all(sub)?;
            fsutil::fsync_dir(packs_dir)?;
        }
        fsutil::persist(self.file, &final_path)?;
        Ok((self.id, self.size, self.entries))
    }
}

impl SealedPack {
    /// The temporary file holding the complete pack (flushed, not fsynced): what a
    /// remote repository uploads before [`SealedPack::into_parts`].
    pub fn temp_path(&self) -> &Path {
        self.file.path()
    }

    /// (pack id, size in bytes, trailer entries), removing the temporary file: for a
    /// pack that was stored elsewhere (uploaded) from [`SealedPack::temp_path`].
    pub fn into_parts(self) -> (Id, u64, Vec<BlobEntry>) {
        (self.id, self.size, self.entries)
    }
}

/// Where a pack lives: `packs/<first 2 hex digits>/<64 hex digits>`.
pub fn pack_path(packs_dir: &Path, id: &Id) -> PathBuf {
    let hex = id.to_hex();
    packs_dir.join(&hex[..2]).join(hex)
}

/// Read and verify a pack's trailer from an open file of length `len`, opening it
/// with `crypt` (which must match the pack's version: an encrypted repository holds
/// only sealed packs, an unencrypted one only plain packs).
pub fn read_trailer(f: &File, len: u64, crypt: &Crypt) -> Result<Vec<BlobEntry>, DecodeError> {
    read_trailer_at(len, crypt, &mut |offset, buf| f.read_exact_at(buf, offset))
}

/// Read and verify the trailer of a pack of length `len` whose bytes `read_at(offset,
/// buf)` fills in (a file's `pread`, or ranged reads of a remote object: three of
/// them, the header, the footer and the trailer), opening it with `crypt` as
/// [`read_trailer`] does.
pub fn read_trailer_at(
    len: u64,
    crypt: &Crypt,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> Result<Vec<BlobEntry>, DecodeError> {
    let err = |d: String| DecodeError {
        what: "pack",
        detail: d,
    };
    if len < (codec::HEADER_LEN + FOOTER_LEN) as u64 {
        return Err(err(format!("only {len} bytes long")));
    }
    let mut head = [0u8; codec::HEADER_LEN];
    read_at(0, &mut head).map_err(|e| err(format!("read: {e}")))?;
    let v = codec::check_header(&head, MAGIC, "pack")?;
    match (v, crypt.is_encrypted()) {
        (VERSION, false) | (SEALED_VERSION, true) => {}
        (VERSION, true) => {
            return Err(err(
                "an unencrypted pack in an encrypted repository (not written by this repository's cbsnap)".into(),
            ))
        }
        (SEALED_VERSION, false) => {
            return Err(err(
                "an encrypted pack in a repository whose config says it is not encrypted".into(),
            ))
        }
        _ => {
            return Err(err(format!(
                "pack version {v} is not supported; upgrade cbsnap"
            )))
        }
    }
    let mut footer = [0u8; FOOTER_LEN];
    read_at(len - FOOTER_LEN as u64, &mut footer).map_err(|e| err(format!("read: {e}")))?;
    if &footer[36..] != TRAILER_MAGIC {
        return Err(err("trailer magic missing (truncated pack?)".into()));
    }
    let n = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]) as u64;
    let tlen = n * ENTRY_LEN as u64 + crypt.overhead() as u64;
    if tlen + (codec::HEADER_LEN + FOOTER_LEN) as u64 > len {
        return Err(err(format!("trailer of {n} entries does not fit")));
    }
    let mut trailer = vec![0u8; tlen as usize];
    read_at(len - FOOTER_LEN as u64 - tlen, &mut trailer).map_err(|e| err(format!("read: {e}")))?;
    if blake3::hash(&trailer).as_bytes() != &footer[4..36] {
        return Err(err("trailer checksum mismatch".into()));
    }
    let trailer = crypt
        .open(Purpose::Trailer, trailer)
        .map_err(|e| err(format!("trailer: {e}")))?;
    let data_end = len - FOOTER_LEN as u64 - tlen;
    let mut r = Reader::new(&trailer, "pack trailer");
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let e = BlobEntry::decode(&mut r)?;
        let end = e.offset.checked_add(e.stored_len as u64);
        if e.offset < codec::HEADER_LEN as u64 || end.is_none_or(|end| end > data_end) {
            return Err(err(format!("blob {} lies outside the data area", e.id)));
        }
        out.push(e);
    }
    Ok(out)
}

/// Read the stored bytes of one blob.
pub fn read_stored(f: &File, offset: u64, len: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// An open pack and its verified trailer: the one way to read a pack. The index is
/// rebuilt from [`PackFile::entries`] alone; `check --read-data` and prune's repack
/// read the whole pack once with [`PackFile::read_all`].
pub struct PackFile {
    source: Source,
    size: u64,
    entries: Vec<BlobEntry>,
}

/// Ranged reads of a pack kept elsewhere than in a local file (a remote object of a
/// storage backend). Failures are `io::Error`s whose source is the backend's error.
pub trait RangedRead: Send + Sync {
    /// Fill `buf` with the bytes at `offset`; fewer bytes than asked is an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// The whole object.
    fn read_all(&self) -> io::Result<Vec<u8>>;
}

/// Where a [`PackFile`]'s bytes come from.
enum Source {
    File(File),
    Ranged(Box<dyn RangedRead>),
}

impl PackFile {
    /// Open the pack at `path`, `size` bytes long (as listed), and read and verify its
    /// trailer ([`read_trailer`]): every entry then lies inside the data area.
    /// The trailer is opened with `crypt`, the repository's ([`read_trailer`]).
    pub fn open(path: &Path, size: u64, crypt: &Crypt) -> Result<PackFile, PackReadError> {
        let file = File::open(path).map_err(PackReadError::Open)?;
        let entries = read_trailer(&file, size, crypt)?;
        Ok(PackFile {
            source: Source::File(file),
            size,
            entries,
        })
    }

    /// Open a pack of `size` bytes read through `reader` (a remote object): its
    /// trailer is read and verified with three ranged reads ([`read_trailer_at`]).
    pub fn open_ranged(
        reader: Box<dyn RangedRead>,
        size: u64,
        crypt: &Crypt,
    ) -> Result<PackFile, PackReadError> {
        let entries = read_trailer_at(size, crypt, &mut |offset, buf| reader.read_at(offset, buf))?;
        Ok(PackFile {
            source: Source::Ranged(reader),
            size,
            entries,
        })
    }

    /// The trailer's entries, in pack order.
    pub fn entries(&self) -> &[BlobEntry] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<BlobEntry> {
        self.entries
    }

    /// The whole pack's bytes: mapped, or read when mapping fails or the file's
    /// length is no longer the listed one.
    pub fn read_all(&self) -> Result<PackBytes, PackReadError> {
        // SAFETY: a mapped file that shrinks under us raises SIGBUS. Packs are
        // immutable once renamed into place and only `prune` deletes them, under the
        // exclusive lock; every reader of a whole pack holds a lock (check a shared
        // one, prune's repack the exclusive one), so no cbsnap process truncates or
        // removes this pack while it is mapped (and deleting a mapped file keeps its
        // pages valid).
        let file = match &self.source {
            Source::File(f) => f,
            Source::Ranged(r) => {
                let v = r.read_all().map_err(PackReadError::Read)?;
                if v.len() as u64 != self.size {
                    return Err(PackReadError::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} bytes where the listing says {}", v.len(), self.size),
                    )));
                }
                return Ok(PackBytes::Read(v));
            }
        };
        match unsafe { memmap2::Mmap::map(file) } {
            Ok(m) if m.len() as u64 == self.size => Ok(PackBytes::Mapped(m)),
            _ => {
                let mut v = vec![0u8; self.size as usize];
                file.read_exact_at(&mut v, 0).map_err(PackReadError::Read)?;
                Ok(PackBytes::Read(v))
            }
        }
    }
}

/// A whole pack's bytes (see [`PackFile::read_all`]).
pub enum PackBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl PackBytes {
    /// The stored bytes of `e`, an entry of this pack's verified trailer.
    pub fn stored(&self, e: &BlobEntry) -> &[u8] {
        &self[e.offset as usize..(e.offset + e.stored_len as u64) as usize]
    }
}

impl std::ops::Deref for PackBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            PackBytes::Mapped(m) => m,
            PackBytes::Read(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_and_name_is_hash() {
        let d = tempfile::tempdir().unwrap();
        let mut w = PackWriter::create(d.path(), &Crypt::Plain).unwrap();
        let blobs: Vec<Vec<u8>> = vec![b"hello".to_vec(), vec![7u8; 100_000], vec![]];
        for b in &blobs {
            let (s, c) = compress(b, 3);
            w.add(Id::hash(b), BlobKind::Data, b.len() as u32, &s, c)
                .unwrap();
        }
        let (id, size, entries) = w.seal().unwrap().commit(d.path()).unwrap();
        let p = pack_path(d.path(), &id);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(Id::hash(&bytes), id);
        let f = File::open(&p).unwrap();
        let t = read_trailer(&f, size, &Crypt::Plain).unwrap();
        assert_eq!(t, entries);
        for (e, b) in t.iter().zip(&blobs) {
            let stored = read_stored(&f, e.offset, e.stored_len).unwrap();
            assert_eq!(&decode_blob(e, &stored, &Crypt::Plain).unwrap(), b);
        }
        assert_eq!(t[1].compression, Compression::Zstd);
    }

    /// The thread's reused zstd context writes the same bytes as a fresh one (so
    /// repositories stay identical), at every level, and switches level on demand.
    #[test]
    fn reused_zstd_context_matches_a_fresh_one() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} of {}\n", i % 977, i % 13).into_bytes())
            .collect();
        for level in [3, 1, 3, 9, 3] {
            for part in [&text[..70_000], &text[1000..], &text[..10]] {
                let fresh = zstd::bulk::compress(part, level).unwrap();
                let (ours, how) = compress(part, level);
                if fresh.len() < part.len() {
                    assert_eq!(how, Compression::Zstd);
                    assert_eq!(ours, fresh, "level {level}");
                } else {
                    assert_eq!((how, &ours[..]), (Compression::None, part));
                }
                let e = BlobEntry {
                    id: Id::hash(part),
                    offset: 0,
                    stored_len: ours.len() as u32,
                    raw_len: part.len() as u32,
                    kind: BlobKind::Data,
                    compression: how,
                };
                assert_eq!(decode_blob(&e, &ours, &Crypt::Plain).unwrap(), part);
            }
        }
        let mut random = vec![0u8; 65_536];
        rand::RngCore::fill_bytes(
            &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5),
            &mut random,
        );
        let (stored, how) = compress_vec(random.clone(), 3);
        assert_eq!((how, stored), (Compression::None, random));
    }

    #[test]
    fn corrupt_trailer_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let mut w = PackWriter::create(d.path(), &Crypt::Plain).unwrap();
        w.add(Id::hash(b"x"), BlobKind::Data, 1, b"x", Compression::None)
            .unwrap();
        let (id, size, _) = w.seal().unwrap().commit(d.path()).unwrap();
        let p = pack_path(d.path(), &id);
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - FOOTER_LEN - 10] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let f = File::open(&p).unwrap();
        assert!(read_trailer(&f, size, &Crypt::Plain).is_err());
    }
}

#[cfg(test)]
mod sealed_tests {
    use super::*;
    use crate::crypto::MasterKey;

    /// A sealed pack: version 2, no plaintext in it, blobs and trailer read back with
    /// the key, a flipped blob byte is an authentication failure, and the pack is
    /// refused by a reader without the key.
    #[test]
    fn sealed_pack_round_trip_and_tamper() {
        let d = tempfile::tempdir().unwrap();
        let crypt = Crypt::Sealed(std::sync::Arc::new(MasterKey::generate().unwrap()));
        let blob = b"a recognisable plaintext blob, twice: a recognisable plaintext blob".to_vec();
        let mut w = PackWriter::create(d.path(), &crypt).unwrap();
        let (stored, how) = compress(&blob, 3);
        let sealed = crypt.seal(Purpose::Blob, stored).unwrap();
        w.add(
            crypt.id(&blob),
            BlobKind::Data,
            blob.len() as u32,
            &sealed,
            how,
        )
        .unwrap();
        let (id, size, entries) = w.seal().unwrap().commit(d.path()).unwrap();
        let p = pack_path(d.path(), &id);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(Id::hash(&bytes), id);
        assert_eq!(&bytes[8..12], &SEALED_VERSION.to_le_bytes());
        assert!(!bytes.windows(12).any(|w| w == b"recognisable"));
        assert!(!bytes.windows(32).any(|w| w == crypt.id(&blob).0));
        let f = File::open(&p).unwrap();
        let t = read_trailer(&f, size, &crypt).unwrap();
        assert_eq!(t, entries);
        let e = &t[0];
        let got = read_stored(&f, e.offset, e.stored_len).unwrap();
        assert_eq!(decode_blob(e, &got, &crypt).unwrap(), blob);
        let mut bad = got.clone();
        bad[30] ^= 0x10;
        assert!(matches!(
            decode_blob(e, &bad, &crypt),
            Err(BlobError::Authentication(AuthError))
        ));
        assert!(read_trailer(&f, size, &Crypt::Plain).is_err());
    }
}
