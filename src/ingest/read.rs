//! Reading file content into chunks: a stream is cut by FastCDC and its chunks go to
//! the workers; a file of a live tree is read under `fstat` checks so that a file
//! changing while read is read again or named in the snapshot's errors.
//!
//! **Several files at once.** Reading and cutting one file is serial work (about a
//! third of the CPU of a big-file snapshot), so the files of a directory walk are read
//! by a few reader threads ([`ReadAhead`]), each reading and cutting a whole file and
//! sending its chunks to the compress workers. The source thread goes on walking; what
//! it yields waits in a queue *in walk order* (entries, directory ends, warnings) and
//! is applied to the tree builder from the front as each file's read finishes, so the
//! trees, the stats and the snapshot's error list are the ones a single reader makes.
//! Memory stays bounded: at most [`MAX_FILES_AHEAD`] files are read ahead and
//! [`MAX_QUEUED`] entries wait; a reader streams its file (one chunk at a time into
//! the workers' bounded queue), so the bytes in flight are at most one FastCDC buffer
//! per reader plus that queue, whatever the files' sizes. Hard links, tar streams and
//! files whose directory descriptor cannot be duplicated are read on the source
//! thread, after the queue is drained (a link's content is that of the first name).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use super::parent::{FromParent, OldChunks};
use super::pipeline::{ChunkReply, Feed, Job};
use super::{named, Ingest};
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::BlobKind;
use crate::source::dir::{DetachedFile, FileStat, OpenError};
use crate::source::{Content, Entry, Sink};
use crate::tree::{Node, NodeKind, Xattrs};

/// Files read ahead of the one the tree builder waits for, at most.
pub(super) const MAX_FILES_AHEAD: usize = 64;
/// Entries, directory ends and warnings waiting in walk order, at most.
pub(super) const MAX_QUEUED: usize = 4096;

/// Reader threads for a snapshot on this machine: one per core, at least two (a
/// read waiting on the disk leaves the core to another), at most eight.
pub(super) fn default_readers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

/// Where a regular file's content comes from when it is applied to the tree.
pub(super) enum Body<'a> {
    /// From the source, now (read on the source thread if needed).
    Source(Content<'a>),
    /// Read by a reader thread.
    Read(LiveRead),
    /// Unchanged since the parent snapshot: its chunk ids.
    Reused(Vec<Id>),
}

/// What reading a live file gave.
pub(super) struct LiveRead {
    /// Chunk ids, bytes and the `stat` at open of the read that is stored; `None`
    /// when nothing is stored.
    stored: Option<(Vec<Id>, u64, FileStat)>,
    /// Why it is not stored, or why what is stored may be mixed.
    warning: Option<String>,
    /// Bytes read, every attempt counted.
    bytes_read: u64,
    /// Chunks taken at the parent's cuts, every attempt counted.
    known: usize,
}

/// A file for a reader thread; its result goes back on `reply`.
struct ReadJob {
    path: Vec<u8>,
    file: DetachedFile,
    /// Its chunks in the parent snapshot, if it changed since.
    old: Option<Guidance>,
    reply: Sender<Result<LiveRead>>,
}

/// Bytes of old chunk ids the queued read jobs may hold, at most: past this a changed
/// file is read without its parent's cuts (a 40 GB model file's list is 19 MB), unless
/// no other list is held.
const GUIDANCE_BUDGET: usize = 8 << 20;

/// A changed file's [`OldChunks`], counted in the budget the jobs share until the
/// read that uses them is done.
struct Guidance {
    old: OldChunks,
    held: Arc<AtomicUsize>,
}

impl Guidance {
    /// `old`, if it fits in the budget `held` counts.
    fn hold(old: OldChunks, held: &Arc<AtomicUsize>) -> Option<Guidance> {
        let bytes = old.ids.len() * std::mem::size_of::<Id>();
        let before = held.fetch_add(bytes, Ordering::Relaxed);
        let g = Guidance {
            old,
            held: Arc::clone(held),
        };
        // One file's list is always taken when no other is held.
        (before == 0 || before + bytes <= GUIDANCE_BUDGET).then_some(g)
    }
}

impl Drop for Guidance {
    fn drop(&mut self) {
        let bytes = self.old.ids.len() * std::mem::size_of::<Id>();
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// What the source yielded, waiting to be applied in walk order.
enum Op {
    /// An entry whose content, if any, is known.
    Entry(Entry, Body<'static>),
    /// A file being read by a reader thread.
    File(Entry, Receiver<Result<LiveRead>>),
    DirDone(Vec<u8>),
    /// [`Sink::warn`] (`false`) or [`Sink::stored_inexactly`] (`true`).
    Warn(Vec<u8>, String, bool),
}

/// The reader threads' queue and the entries waiting for them, in walk order.
pub(super) struct ReadAhead {
    /// `None` with no reader threads: every file is read on the source thread.
    jobs: Option<Sender<ReadJob>>,
    queue: VecDeque<Op>,
    files: usize,
    /// Set while queued entries are applied: their warnings are not queued again.
    applying: bool,
    /// Bytes of old chunk ids held by queued jobs ([`GUIDANCE_BUDGET`]).
    guidance: Arc<AtomicUsize>,
}

impl ReadAhead {
    /// Start `readers` reader threads in `s` (none: files are read on the source
    /// thread). They stop when [`ReadAhead::stop`] is called and their jobs are done;
    /// after `abort` is set they skip the jobs left.
    pub(super) fn start<'scope>(
        s: &'scope std::thread::Scope<'scope, '_>,
        readers: usize,
        feed: &Feed<'scope>,
        abort: &'scope AtomicBool,
    ) -> ReadAhead {
        let jobs = (readers > 0).then(|| {
            let (tx, rx) = unbounded::<ReadJob>();
            for _ in 0..readers {
                let (rx, feed) = (rx.clone(), feed.clone());
                named("cbsnap-reader", s, move || {
                    for job in rx {
                        if abort.load(Ordering::Relaxed) {
                            continue;
                        }
                        let old = job.old.as_ref().map(|g| &g.old);
                        let r = read_live(&feed, &job.path, &|| job.file.open(), old);
                        let _ = job.reply.send(r);
                    }
                });
            }
            tx
        });
        ReadAhead {
            jobs,
            queue: VecDeque::new(),
            files: 0,
            applying: false,
            guidance: Arc::default(),
        }
    }

    /// Let the reader threads end once their jobs are done.
    pub(super) fn stop(&mut self) {
        self.jobs = None;
    }

    /// Whether what the source yields now must wait behind queued entries.
    fn behind(&self) -> bool {
        !self.applying && !self.queue.is_empty()
    }
}

impl Ingest<'_> {
    /// Record an entry not stored exactly ([`Ingest::apply_warn`]), in walk order:
    /// queued behind the entries still being read.
    fn record(&mut self, path: &[u8], error: String, stored: bool) {
        if self.ahead.behind() {
            self.ahead
                .queue
                .push_back(Op::Warn(path.to_vec(), error, stored));
        } else {
            self.apply_warn(path, error, stored);
        }
    }
}

impl Sink for Ingest<'_> {
    fn entry(&mut self, e: Entry, content: Content<'_>) -> Result<()> {
        self.apply_ready(false)?;
        match content {
            Content::File(f)
                if self.ahead.jobs.is_some()
                    && e.node.kind == NodeKind::File
                    && e.link_key.is_none()
                    && e.hardlink_to.is_none() =>
            {
                self.progress.set_path(&e.path);
                let old = match self.parent_says(&e)? {
                    FromParent::Unchanged(ids) => {
                        return self.queue(Op::Entry(e, Body::Reused(ids)))
                    }
                    FromParent::Changed(old) => Guidance::hold(old, &self.ahead.guidance),
                    FromParent::Nothing => None,
                };
                let Ok(file) = f.detach() else {
                    self.apply_ready(true)?;
                    return self.apply_entry(e, Body::Source(content));
                };
                let (reply, rx) = bounded(1);
                let job = ReadJob {
                    path: e.path.clone(),
                    file,
                    old,
                    reply,
                };
                let jobs = self.ahead.jobs.as_ref().expect("readers are running");
                if jobs.send(job).is_err() {
                    return Err(Error::Source("the file readers stopped".into()));
                }
                self.ahead.files += 1;
                self.queue(Op::File(e, rx))
            }
            Content::None if self.ahead.behind() => {
                self.queue(Op::Entry(e, Body::Source(Content::None)))
            }
            content => {
                // Read now, on this thread: everything before it must be in the tree.
                self.apply_ready(true)?;
                self.apply_entry(e, Body::Source(content))
            }
        }
    }

    fn dir_done(&mut self, path: &[u8]) -> Result<()> {
        if self.ahead.behind() {
            return self.queue(Op::DirDone(path.to_vec()));
        }
        self.apply_dir_done(path)
    }

    fn warn(&mut self, path: &[u8], error: String) {
        self.record(path, error, false);
    }

    fn stored_inexactly(&mut self, path: &[u8], why: String) {
        self.record(path, why, true);
    }

    fn left_out(&mut self, path: &[u8], why: String) {
        self.apply_left_out(path, why);
    }

    fn unchanged_xattrs(&mut self, path: &[u8], node: &Node) -> Option<Xattrs> {
        self.unchanged_xattrs_in_parent(path, node)
    }
}

impl Ingest<'_> {
    /// Queue `op` behind the entries still waiting, then wait for the oldest files
    /// while more than the limits are in flight.
    fn queue(&mut self, op: Op) -> Result<()> {
        self.ahead.queue.push_back(op);
        while self.ahead.files > MAX_FILES_AHEAD || self.ahead.queue.len() > MAX_QUEUED {
            self.apply_front(true)?;
        }
        Ok(())
    }

    /// Apply queued entries from the front: those whose files are read, or with
    /// `all`, every one (waiting for their reads).
    pub(super) fn apply_ready(&mut self, all: bool) -> Result<()> {
        while !self.ahead.queue.is_empty() {
            if !self.apply_front(all)? {
                break;
            }
        }
        Ok(())
    }

    /// Apply the oldest queued entry; with `wait`, wait for its read. Returns whether
    /// one was applied.
    fn apply_front(&mut self, wait: bool) -> Result<bool> {
        let read = match self.ahead.queue.front() {
            None => return Ok(false),
            Some(Op::File(_, rx)) => {
                let r = if wait {
                    rx.recv().ok()
                } else {
                    match rx.try_recv() {
                        Ok(r) => Some(r),
                        Err(crossbeam_channel::TryRecvError::Empty) => return Ok(false),
                        Err(crossbeam_channel::TryRecvError::Disconnected) => None,
                    }
                };
                Some(r.ok_or_else(|| Error::Source("a file reader stopped".into()))??)
            }
            Some(_) => None,
        };
        let op = self.ahead.queue.pop_front().expect("the queue has a front");
        self.ahead.applying = true;
        let applied = match (op, read) {
            (Op::File(e, _), Some(r)) => {
                self.ahead.files -= 1;
                self.apply_entry(e, Body::Read(r))
            }
            (Op::Entry(e, body), _) => self.apply_entry(e, body),
            (Op::DirDone(path), _) => self.apply_dir_done(&path),
            (Op::Warn(path, error, stored), _) => {
                self.apply_warn(&path, error, stored);
                Ok(())
            }
            (Op::File(..), None) => unreachable!("a file is applied with its read"),
        };
        self.ahead.applying = false;
        applied.map(|_| true)
    }

    pub(super) fn file_content(
        &mut self,
        e: &mut Entry,
        content: Body<'_>,
    ) -> Result<Option<(Vec<Id>, u64)>> {
        let read = match content {
            Body::Source(Content::None) => return Ok(Some((Vec::new(), 0))),
            Body::Source(Content::Stream(r)) => {
                let (ids, n, _) = store_stream(&self.feed(), r, &e.path, None)?;
                self.stats.bytes_read += n;
                return Ok(Some((ids, n)));
            }
            Body::Reused(ids) => {
                self.stats.files_unchanged += 1;
                self.progress.inc(e.node.size);
                return Ok(Some((ids, e.node.size)));
            }
            Body::Source(Content::File(f)) => {
                let old = match self.parent_says(e)? {
                    FromParent::Unchanged(ids) => return self.file_content(e, Body::Reused(ids)),
                    FromParent::Changed(old) => Some(old),
                    FromParent::Nothing => None,
                };
                read_live(&self.feed(), &e.path, &|| f.open(), old.as_ref())?
            }
            Body::Read(r) => r,
        };
        self.stats.bytes_read += read.bytes_read;
        self.known_chunks += read.known;
        if let Some(w) = read.warning {
            // A file that changed while read twice is stored as read.
            if read.stored.is_some() {
                self.stored_inexactly(&e.path, w);
            } else {
                self.warn(&e.path, w);
            }
        }
        Ok(read.stored.map(|(ids, n, before)| {
            // What is stored is described by the `stat` taken when it was read; but
            // the ctime stays the walk's, whose stat came before the xattrs were
            // listed: had it moved by the read (an xattr set in between), a node with
            // the later ctime would pass its older xattrs off as current to the next
            // snapshot. A ctime older than the file's makes that one read it again.
            e.node.mtime = before.mtime;
            e.node.mtime_nsec = before.mtime_nsec;
            (ids, n)
        }))
    }
}

/// Chunk a file's bytes and store the chunks; returns their ids in file order, the
/// number of bytes read and how many chunks were taken at `old`'s cuts. The first
/// chunk is held back: if it is the only one it is hashed here
/// ([`Feed::put_blob`]); once a second one arrives, every chunk goes to the workers to
/// be hashed in parallel, and this waits for their ids at the end of the file.
///
/// With `old`, the file's chunks in the parent snapshot, a cut the parent made where
/// this read stands is tried first ([`Chunker::next_known`]): its bytes are hashed
/// here and, if they are that chunk, it is referenced (it is in the index) without the
/// gear hash, a worker or a dedup check. A file overwritten in place is so cut at its
/// old cuts up to the first change, by FastCDC from there until a cut falls on an old
/// one again, then at old cuts again: the chunks FastCDC alone makes. Bytes hashed in
/// vain are not hashed again when FastCDC then cuts them at the same place (a file
/// rewritten within every chunk): their id goes with them. Errors: [`Error::Io`] when
/// reading fails; the index's (the dedup check of such a chunk) and the pipeline's
/// errors.
fn store_stream(
    feed: &Feed<'_>,
    r: &mut dyn Read,
    path: &[u8],
    old: Option<&OldChunks>,
) -> Result<(Vec<Id>, u64, usize)> {
    let mut cdc = Chunker::new(r, &feed.repo.config.chunker);
    let mut guide = old.map(Guide::new);
    let io = |e| Error::io(format!("read {}", String::from_utf8_lossy(path)), e);
    let mut first: Option<Vec<u8>> = None;
    let (reply_tx, reply_rx) = unbounded::<ChunkReply>();
    let (mut count, mut known) = (0usize, 0usize);
    // The chunk ids by position, taken from the workers' replies as they come in, while
    // the file is still being cut: left in the channel until the end, the replies of a
    // 40 GB model file (640,000 chunks of 64 KiB) would hold some 30 MiB.
    let mut ids = Replies::default();
    let send = |seq, raw| {
        let reply = reply_tx.clone();
        feed.send(Job::Chunk { seq, raw, reply })
    };
    loop {
        let (len, next) = match next_chunk(&mut cdc, guide.as_mut(), feed).map_err(io)? {
            Some(next) => next,
            None => break,
        };
        let id = match next {
            Next::Known(id) => {
                known += 1;
                Some(id)
            }
            Next::Hashed(id, raw) => Some(feed.put_hashed(id, BlobKind::Data, raw)?),
            Next::Cut(c) => {
                match (count, first.take()) {
                    (0, _) => first = Some(c),
                    (_, Some(head)) => send(0, head).and_then(|_| send(count, c))?,
                    (_, None) => send(count, c)?,
                }
                None
            }
        };
        if let Some(id) = id {
            if let Some(head) = first.take() {
                send(0, head)?;
            }
            ids.take(std::iter::once((count, Ok(id))))?;
        }
        count += 1;
        feed.progress.inc(len as u64);
        ids.take(reply_rx.try_iter())?;
    }
    drop(reply_tx);
    let n = cdc.offset();
    if let Some(only) = first {
        return Ok((vec![feed.put_blob(BlobKind::Data, only)?], n, known));
    }
    // Ends when every job of this file has been answered (their senders dropped).
    ids.take(reply_rx.iter())?;
    Ok((ids.all(count)?, n, known))
}

/// The next chunk of a file, and whether its id is known here.
enum Next {
    /// Taken at an old cut: the parent's chunk, in the repository.
    Known(Id),
    /// Cut by FastCDC where its bytes had been hashed in vain: stored under that id.
    Hashed(Id, Vec<u8>),
    /// Cut by FastCDC: a compress worker hashes it.
    Cut(Vec<u8>),
}

/// The length and the [`Next`] of the chunk after the bytes already taken from
/// `cdc`; `None` at the end. An old cut where the read stands is tried first: a file
/// rewritten within every chunk (scattered page writes) keeps its cuts, and the
/// chunk then cut there is the bytes just hashed. Errors: the reader's.
fn next_chunk<R: Read>(
    cdc: &mut Chunker<R>,
    guide: Option<&mut Guide<'_>>,
    feed: &Feed<'_>,
) -> std::io::Result<Option<(usize, Next)>> {
    let at = cdc.offset();
    let mut hashed = None;
    if let Some((id, len)) = guide.and_then(|g| g.at(at, feed.repo)) {
        let same = |b: &[u8]| {
            let got = feed.repo.blob_id(b);
            hashed = Some((len, got));
            got == id
        };
        if cdc.next_known(len, same)? {
            return Ok(Some((len, Next::Known(id))));
        }
    }
    Ok(cdc.next_chunk()?.map(|c| {
        let next = match hashed {
            Some((len, id)) if len == c.len() => Next::Hashed(id, c.to_vec()),
            _ => Next::Cut(c.to_vec()),
        };
        (c.len(), next)
    }))
}

/// Where a changed file's parent chunks were cut, walked along a read of it.
struct Guide<'o> {
    old: &'o OldChunks,
    /// The old chunk that starts at `at`, and its length once looked up.
    next: usize,
    at: u64,
    len: Option<u32>,
    /// An old chunk was not in the index, or the index could not be read: no cut is
    /// tried after it.
    lost: bool,
}

impl<'o> Guide<'o> {
    fn new(old: &'o OldChunks) -> Guide<'o> {
        Guide {
            old,
            next: 0,
            at: 0,
            len: None,
            lost: false,
        }
    }

    /// The id and length of the old chunk that starts at byte `pos` of the file, if
    /// one does and more than `max` bytes of the old file followed its start (the
    /// condition of [`Chunker::next_known`]). `pos` never goes back. Old chunks are
    /// looked up in the index (their raw length) as the read passes them; one that is
    /// not there, or an index that cannot be read, ends the guidance (it only spares
    /// work: the compress workers meet an index error themselves).
    fn at(&mut self, pos: u64, repo: &crate::repo::Repository) -> Option<(Id, usize)> {
        let max = repo.config.chunker.max_size;
        while !self.lost && self.next < self.old.ids.len() && self.at <= pos {
            let len = match self.len {
                Some(len) => len,
                None => match repo.index().get(&self.old.ids[self.next]) {
                    Ok(Some(loc)) => *self.len.insert(loc.entry.raw_len),
                    Ok(None) | Err(_) => {
                        self.lost = true;
                        break;
                    }
                },
            };
            if self.at == pos {
                let after = self.old.size.saturating_sub(pos);
                return (after > u64::from(max)).then(|| (self.old.ids[self.next], len as usize));
            }
            self.at += u64::from(len);
            self.next += 1;
            self.len = None;
        }
        None
    }
}

/// The chunk ids of one file, put in place as the workers' replies arrive (in any
/// order, each position once).
#[derive(Default)]
struct Replies {
    ids: Vec<Id>,
    /// One bit per position: answered.
    answered: Vec<u64>,
    taken: usize,
}

impl Replies {
    /// Put each reply's id at its position.
    ///
    /// Errors: the first reply that carries one (a worker failed to store the chunk),
    /// and a second reply for one position (which could hide a missing one).
    fn take(&mut self, replies: impl Iterator<Item = ChunkReply>) -> Result<()> {
        for (seq, id) in replies {
            if self.ids.len() <= seq {
                self.ids.resize(seq + 1, Id::default());
                self.answered.resize(seq / 64 + 1, 0);
            }
            let bit = 1u64 << (seq % 64);
            if self.answered[seq / 64] & bit != 0 {
                return Err(Error::Source(format!("chunk {seq} was answered twice")));
            }
            self.answered[seq / 64] |= bit;
            self.ids[seq] = id?;
            self.taken += 1;
        }
        Ok(())
    }

    /// The ids of a file of `count` chunks, in order, using no more memory than they
    /// need while the file waits for its turn to be applied.
    ///
    /// Errors: a reply is missing (a worker stopped without answering), or one came
    /// for a position past `count`.
    fn all(mut self, count: usize) -> Result<Vec<Id>> {
        // Each position answered at most once: `count` answers below `count` are all.
        if self.taken != count || self.ids.len() != count {
            return Err(Error::Source("a compress worker stopped".into()));
        }
        self.ids.shrink_to_fit();
        Ok(self.ids)
    }
}

/// Read a file of a live tree, opened by `open`. Its `fstat` at open and after
/// reading must agree (device, inode, type, size, mtime, ctime) and match the bytes
/// read; a file that changed is read once more, and if it changed again it is stored
/// as read and named in the snapshot's errors, as GNU tar and restic do. A name that
/// no longer is the file the walk listed (swapped for a symlink, say) is never read.
/// Runs on the source thread or a reader thread.
fn read_live(
    feed: &Feed<'_>,
    path: &[u8],
    open: &dyn Fn() -> std::result::Result<(File, FileStat), OpenError>,
    old: Option<&OldChunks>,
) -> Result<LiveRead> {
    let mut last = None;
    let (mut bytes_read, mut known) = (0, 0);
    let not_stored = |warning: String, bytes_read, known| LiveRead {
        stored: None,
        warning: Some(warning),
        bytes_read,
        known,
    };
    for _ in 0..2 {
        let (mut file, before) = match open() {
            Ok(x) => x,
            Err(OpenError::Replaced) if last.is_none() => continue,
            Err(err) => return Ok(not_stored(err.to_string(), bytes_read, known)),
        };
        let (ids, n, k) = match store_stream(feed, &mut file, path, old) {
            Ok(r) => r,
            Err(Error::Io { source, .. }) => {
                return Ok(not_stored(
                    format!("read failed: {source}"),
                    bytes_read,
                    known,
                ))
            }
            Err(other) => return Err(other),
        };
        bytes_read += n;
        known += k;
        let after = FileStat::of(&file)
            .map_err(|err| Error::io(format!("stat {}", String::from_utf8_lossy(path)), err))?;
        if before.unchanged(&after) && n == before.size {
            return Ok(LiveRead {
                stored: Some((ids, n, before)),
                warning: None,
                bytes_read,
                known,
            });
        }
        last = Some((ids, n, before));
    }
    Ok(match last {
        Some(read) => LiveRead {
            stored: Some(read),
            warning: Some(
                "changed while read (twice); stored as read, which may mix old and new content"
                    .into(),
            ),
            bytes_read,
            known,
        },
        None => not_stored(OpenError::Replaced.to_string(), bytes_read, known),
    })
}

#[cfg(test)]
mod replies {
    use super::Replies;
    use crate::error::Error;
    use crate::id::Id;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    #[test]
    fn replies_in_any_order_and_in_several_takes_give_the_ids_in_order() {
        let mut r = Replies::default();
        r.take([(2, Ok(id(2))), (0, Ok(id(0)))].into_iter())
            .unwrap();
        r.take([(1, Ok(id(1))), (3, Ok(id(3)))].into_iter())
            .unwrap();
        assert_eq!(r.all(4).unwrap(), vec![id(0), id(1), id(2), id(3)]);
    }

    #[test]
    fn a_missing_or_failed_reply_is_an_error_not_a_hole() {
        // The last reply missing, and one in the middle missing.
        for seqs in [&[0usize, 1][..], &[0, 2]] {
            let mut r = Replies::default();
            r.take(seqs.iter().map(|&s| (s, Ok(id(s as u8))))).unwrap();
            assert!(r.all(3).is_err(), "replies {seqs:?} of 3");
        }
        // A position past the file's chunks, with as many answers as chunks.
        let mut r = Replies::default();
        r.take([(0, Ok(id(0))), (5, Ok(id(5)))].into_iter())
            .unwrap();
        assert!(r.all(2).is_err());
        // A position answered twice, with another missing.
        let mut r = Replies::default();
        let twice = r.take([(0, Ok(id(0))), (0, Ok(id(0))), (2, Ok(id(2)))].into_iter());
        assert!(twice.unwrap_err().to_string().contains("twice"));
        let mut r = Replies::default();
        let failed =
            r.take([(0, Ok(id(0))), (1, Err(Error::Index("disk full".into())))].into_iter());
        assert!(failed.unwrap_err().to_string().contains("disk full"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{snapshot_with_readers, SnapshotSpec};
    use crate::progress::Progress;
    use crate::repo::{Access, Repository};
    use crate::snapshot::{Snapshot, SourceKind};
    use rand::{RngCore, SeedableRng};
    use std::path::Path;

    fn seeded(len: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
        v
    }

    /// Nested directories of small, empty, identical and multi-chunk files, symlinks
    /// and a hard link pair: everything whose order the tree builder depends on.
    fn build(root: &Path) {
        for d in ["a", "a/b", "a/b/c", "d", "e/f"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for i in 0..240u64 {
            let dir = ["", "a", "a/b", "a/b/c", "d", "e/f"][i as usize % 6];
            let data = match i % 7 {
                0 => Vec::new(),
                1 => b"same everywhere".to_vec(),
                _ => seeded(100 + (i as usize * 997) % 20_000, i),
            };
            std::fs::write(root.join(dir).join(format!("f{i:03}")), data).unwrap();
        }
        for (i, dir) in ["a", "d", "e"].iter().enumerate() {
            let big = seeded((3 << 20) + i * 4096, 1000 + i as u64);
            std::fs::write(root.join(dir).join("big"), big).unwrap();
        }
        std::os::unix::fs::symlink("../f001", root.join("a/link")).unwrap();
        std::fs::hard_link(root.join("a/big"), root.join("e/f/hard")).unwrap();
    }

    fn take(
        repo: &Repository,
        root: &Path,
        readers: usize,
        parent: Option<(crate::id::Id, Snapshot)>,
    ) -> (crate::id::Id, Snapshot) {
        let (id, snap, _) = take_counted(repo, root, readers, parent);
        (id, snap)
    }

    fn take_counted(
        repo: &Repository,
        root: &Path,
        readers: usize,
        parent: Option<(crate::id::Id, Snapshot)>,
    ) -> (crate::id::Id, Snapshot, super::super::Counts) {
        let spec = SnapshotSpec {
            parent,
            ..SnapshotSpec::new("t", SourceKind::Path)
        };
        let progress = Progress::new(true, "test");
        snapshot_with_readers(repo, spec, &progress, readers, |sink| {
            crate::source::dir::walk(root, &Default::default(), sink)
        })
        .unwrap()
    }

    fn new_repo(at: &Path) -> Repository {
        Repository::init(at).unwrap();
        Repository::open(at, Access::Append).unwrap()
    }

    /// Files read by several reader threads at once give the snapshot that one
    /// reader on the source thread gives: the same root tree (every tree below it,
    /// every file's chunk list), the same stats and errors, the same new blobs; and
    /// so does a second run against that parent, where most files are reused and one
    /// changed file is read again.
    #[test]
    fn several_readers_make_the_snapshot_one_reader_makes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        build(&src);
        super::super::parent::settle();
        let (one, many) = (
            new_repo(&d.path().join("one")),
            new_repo(&d.path().join("many")),
        );

        let (id1, s1) = take(&one, &src, 0, None);
        let (idn, sn) = take(&many, &src, 4, None);
        assert_eq!(s1.tree, sn.tree, "root tree differs with 4 readers");
        assert_eq!(s1.stats.files, 243 + 1);
        assert_eq!(
            (s1.stats.files, s1.stats.dirs, s1.stats.bytes),
            (sn.stats.files, sn.stats.dirs, sn.stats.bytes)
        );
        assert_eq!(s1.stats.new_blobs, sn.stats.new_blobs);
        assert_eq!(s1.stats.bytes_read, sn.stats.bytes_read);
        assert!(
            s1.errors.is_empty() && sn.errors.is_empty(),
            "{:?} {:?}",
            s1.errors,
            sn.errors
        );

        std::fs::write(src.join("a/b/f002"), b"changed").unwrap();
        let (_, r1) = take(&one, &src, 0, Some((id1, s1.clone())));
        let (_, rn) = take(&many, &src, 4, Some((idn, sn)));
        assert_ne!(r1.tree, s1.tree);
        assert_eq!(
            r1.tree, rn.tree,
            "second run's root tree differs with 4 readers"
        );
        // All but the changed file and the second name of the hard link (which takes
        // the first name's content).
        assert_eq!(r1.stats.files_unchanged, s1.stats.files - 2);
        assert_eq!(rn.stats.files_unchanged, r1.stats.files_unchanged);
        assert_eq!(rn.stats.bytes_read, r1.stats.bytes_read);
    }

    /// The chunks' ends of `data` as FastCDC alone cuts it (default parameters).
    fn cuts(data: &[u8]) -> Vec<usize> {
        let mut ends = Vec::new();
        crate::chunker::chunk_stream(
            data,
            &crate::config::ChunkerParams::default(),
            |c| {
                ends.push(ends.last().copied().unwrap_or(0) + c.len());
                Ok::<(), std::io::Error>(())
            },
            |e| e,
        )
        .unwrap();
        ends
    }

    /// A big file changed in place (bytes overwritten, among them the byte that decided
    /// a cut, a stretch of zeros that FastCDC cuts at its largest size, bytes appended),
    /// or changed by an insertion that moves every later byte, is cut exactly as
    /// FastCDC alone cuts it when its parent's cuts are tried first, by the reader
    /// threads and on the source thread: the snapshot's tree is that of a snapshot
    /// without a parent in another repository. And the parent's cuts were taken: most
    /// chunks of the file changed in place (fails if none are tried or if they are
    /// taken where FastCDC would not cut).
    #[test]
    fn a_changed_file_is_cut_at_its_parents_cuts_where_fastcdc_cuts_it() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let mut data = seeded(8 << 20, 77);
        data[(5 << 20)..(5 << 20) + (1 << 20)].fill(0);
        std::fs::write(src.join("small"), b"small").unwrap();
        std::fs::write(src.join("big"), &data).unwrap();
        let old_cuts = cuts(&data);
        super::super::parent::settle();
        let repo = new_repo(&d.path().join("repo"));
        let parent = take(&repo, &src, 2, None);

        // In place: 1 KiB at 1 MiB, the first byte of the 20th chunk (it decided the
        // 19th chunk's cut), a byte in the zeros, and 100 KiB appended.
        let mut edited = data.clone();
        edited[(1 << 20)..(1 << 20) + 1024].copy_from_slice(&seeded(1024, 78));
        edited[old_cuts[18]] ^= 0x5a;
        edited[(5 << 20) + 4000] = 1;
        edited.extend_from_slice(&seeded(100 << 10, 79));
        // An insertion of 3 bytes at 2 MiB into that.
        let mut inserted = edited.clone();
        inserted.splice(2 << 20..2 << 20, *b"ins");
        // A byte changed in the middle of every chunk: every old cut is tried in vain,
        // and most of those bytes are then cut at the same place (their id reused).
        let mut everywhere = data.clone();
        let mut start = 0;
        for &end in &old_cuts {
            everywhere[(start + end) / 2] ^= 0x33;
            start = end;
        }
        for (what, content) in [
            ("in place", &edited),
            ("inserted", &inserted),
            ("everywhere", &everywhere),
        ] {
            std::fs::write(src.join("big"), content).unwrap();
            super::super::parent::settle();
            let alone = new_repo(&d.path().join(format!("alone {what}")));
            let (_, want) = take(&alone, &src, 2, None);
            for readers in [0, 4] {
                let (_, got, counts) = take_counted(&repo, &src, readers, Some(parent.clone()));
                assert_eq!(
                    got.tree, want.tree,
                    "{what}, {readers} readers: other chunks"
                );
                assert!(got.errors.is_empty(), "{:?}", got.errors);
                if what == "in place" {
                    // 8 MiB in ~130 chunks, a few of them around each change cut anew.
                    assert!(
                        counts.known_chunks + 12 >= old_cuts.len(),
                        "{readers} readers: {} of {} chunks taken at old cuts",
                        counts.known_chunks,
                        old_cuts.len()
                    );
                } else if what == "inserted" {
                    // Up to the insertion, at old cuts; after it, no cut is where it was.
                    assert!(counts.known_chunks >= 10, "{counts:?}");
                } else {
                    assert_eq!(counts.known_chunks, 0, "{counts:?}");
                }
            }
        }
    }
}
