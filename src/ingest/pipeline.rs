//! The pack stage of the ingest pipeline: compress workers, the writer thread that
//! feeds the one [`Packer`], and the flusher thread that saves its sealed packs
//! ([`packer::save`]); and the source side's way into them ([`Ingest::put_tree`], [`Feed`]).
//!
//! Dedup is decided here, by [`claim`], before a blob is compressed (the packer leaves
//! it to its caller): an id is either indexed or in the `pending` set until its pack
//! is indexed, so two copies of a chunk in flight are stored once. An indexed blob
//! whose copy this run read and found damaged ([`Pending::damaged`]) is no copy: it
//! is stored again, and the index then names the new copy.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::{named, Ingest};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{self, BlobKind, Compression, SealedPack};
use crate::packer::{self, Blob, Packer, PackerStats};
use crate::repo::Repository;

/// The id of chunk `seq` of a file, or why it could not be stored.
pub(super) type ChunkReply = (usize, Result<Id>);

/// Work for the compress workers.
pub(super) enum Job {
    /// A blob the source thread already hashed and claimed (see [`claim`]): compress
    /// it and pass it to the writer.
    Store {
        id: Id,
        kind: BlobKind,
        raw: Vec<u8>,
    },
    /// Chunk `seq` of a file of several chunks: hash it, claim it, compress and store
    /// it if new, and send its id back on `reply`.
    Chunk {
        seq: usize,
        raw: Vec<u8>,
        reply: Sender<ChunkReply>,
    },
}

/// What the dedup check ([`claim`]) knows beside the index, under one lock.
#[derive(Default)]
pub(super) struct Pending {
    /// Ids queued for a pack, or in a pack not indexed yet.
    queued: HashSet<Id>,
    /// Ids the index holds whose indexed copy this run read and found damaged.
    damaged: HashSet<Id>,
}

impl Pending {
    /// Record that the indexed copy of blob `id` is damaged (this run read it): the
    /// next claim of `id` stores it again instead of deduplicating against the
    /// damaged copy. Once its new pack is indexed, the index names the new copy
    /// ([`crate::index::Index::add_pack`] replaces a blob's location), so this and
    /// every later snapshot, `check`, `prune` and restore use it, and the damaged
    /// copy is one `prune` drops as unused.
    pub(super) fn damaged(pending: &Mutex<Pending>, id: Id) {
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        p.damaged.insert(id);
    }
}

/// Whether the blob `id` must be stored: true when neither the repository (by a copy
/// not known to be damaged) nor the queue has it, and it is now in the queue
/// (`pending`). Checked under the lock: the flusher indexes a pack before it removes
/// the pack's ids from `pending`, so an id is always in one or the other.
fn claim(repo: &Repository, pending: &Mutex<Pending>, id: &Id) -> Result<bool> {
    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
    if p.queued.contains(id) {
        return Ok(false);
    }
    // A damaged copy is stored again once: the claim that queues it takes it out.
    if !p.damaged.remove(id) && repo.index().contains(id)? {
        return Ok(false);
    }
    p.queued.insert(*id);
    Ok(true)
}

fn writer_stopped() -> Error {
    Error::PipelineStopped
}

/// Raw bytes of blobs the pipeline may hold between their producer (the source
/// thread, a reader) and the packer, per compress worker, and at least
/// [`IN_FLIGHT_MIN`]: queued for the workers, being compressed, or waiting for the
/// writer. The queues are bounded in jobs (8 per worker each way), which is ~1 MiB
/// of chunks per worker at 64 KiB, but was ~22 MB of a directory's 4 MiB tree parts
/// at the end of a snapshot of a directory of 3.4 million chunk ids, and would be
/// more for the single-node parts of huge files (a 40 GB model file's node is
/// 19 MB). 1 MiB per worker is 4 chunks of FastCDC's largest size (256 KiB) each,
/// and 16 of the average (`docs/BENCHMARKS.md`, "Issue 9, eighth pass").
const IN_FLIGHT_PER_WORKER: usize = 1 << 20;

/// The least of the budget: one 4 MiB tree part (`tree::PART_LIMIT`) in flight.
const IN_FLIGHT_MIN: usize = 4 << 20;

/// The count of raw bytes in flight against its budget (see [`IN_FLIGHT_PER_WORKER`]).
pub(super) struct InFlight {
    limit: usize,
    bytes: Mutex<usize>,
    freed: Condvar,
}

/// Raw bytes of one blob counted in [`InFlight`] until this is dropped: after the
/// packer has taken the blob, or wherever the blob is given up on (a duplicate, an
/// error, a pipeline stopping), so every path out gives them back.
pub(super) struct Held {
    in_flight: Arc<InFlight>,
    bytes: usize,
}

impl InFlight {
    /// The budget of a pipeline of `workers` compress workers.
    pub(super) fn new(workers: usize) -> InFlight {
        InFlight {
            limit: IN_FLIGHT_MIN.max(workers.saturating_mul(IN_FLIGHT_PER_WORKER)),
            bytes: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Count `bytes` as in flight, waiting while they would pass the budget (a blob
    /// larger than that waits until nothing else is in flight). Only the
    /// writer and the workers give bytes back, and neither waits for a producer, so
    /// this ends; it returns [`Error::PipelineStopped`] if the writer stops meanwhile.
    fn hold(self: &Arc<Self>, bytes: usize, stopped: &AtomicBool) -> Result<Held> {
        let mut used = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0 && *used + bytes > self.limit {
            if stopped.load(Ordering::Relaxed) {
                return Err(writer_stopped());
            }
            used = self
                .freed
                .wait_timeout(used, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *used += bytes;
        Ok(Held {
            in_flight: Arc::clone(self),
            bytes,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut used = self
            .in_flight
            .bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *used -= self.bytes;
        drop(used);
        self.in_flight.freed.notify_all();
    }
}

/// Hash (for [`Job::Chunk`]), deduplicate, compress, hand to the writer. A worker
/// keeps draining its jobs after the writer stopped, so that every chunk of a file
/// gets a reply and the source never waits for one that will not come.
pub(super) fn compress_worker(
    repo: &Repository,
    pending: &Mutex<Pending>,
    stopped: &AtomicBool,
    rx: Receiver<(Job, Held)>,
    tx: Sender<(Blob, Held)>,
    level: i32,
) {
    for (job, held) in rx {
        let (id, kind, raw, reply) = match job {
            Job::Store { id, kind, raw } => (id, kind, raw, None),
            Job::Chunk { seq, raw, reply } => {
                let id = repo.blob_id(&raw);
                match claim(repo, pending, &id) {
                    Ok(true) => (id, BlobKind::Data, raw, Some((seq, reply))),
                    Ok(false) => {
                        let _ = reply.send((seq, Ok(id)));
                        continue;
                    }
                    Err(e) => {
                        let _ = reply.send((seq, Err(e)));
                        continue;
                    }
                }
            }
        };
        // Compressed, then sealed (ciphertext does not compress), on this worker.
        let sent = if stopped.load(Ordering::Relaxed) {
            Err(writer_stopped())
        } else {
            packer::compress(repo.crypt(), id, kind, raw, level).and_then(|b| {
                if tx.send((b, held)).is_ok() {
                    Ok(())
                } else {
                    Err(writer_stopped())
                }
            })
        };
        if sent.is_err() {
            stopped.store(true, Ordering::Relaxed);
        }
        if let Some((seq, reply)) = reply {
            let _ = reply.send((seq, sent.map(|_| id)));
        }
    }
}

/// The writer thread: adds every compressed blob to the one [`Packer`]. Full packs go
/// to a flusher thread that saves them (durable, then indexed) while the next pack
/// fills; this returns only after the flusher has finished every pack handed to it.
/// Ids leave the pending set only after they are indexed, so a concurrent dedup
/// check always finds a blob in one of the two. On an error the open pack and the
/// sealed packs not yet saved are dropped, which removes their temporary files.
pub(super) fn write_packs(
    repo: &Repository,
    rx: Receiver<(Blob, Held)>,
    pending: &Mutex<Pending>,
    abort: &AtomicBool,
    stopped: &AtomicBool,
) -> Result<PackerStats> {
    let mut packer = Packer::new(repo);
    // One pack may wait while others are saved: at most 1 + transfers full packs are
    // in flight (a path repository: one fsync at a time; a remote one: `transfers`
    // uploads).
    let transfers = repo.transfers();
    let (seal_tx, seal_rx) = bounded::<SealedPack>(1);
    let flush_failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let result = std::thread::scope(|s| {
        let flushers: Vec<_> = (0..transfers)
            .map(|_| {
                let rx = seal_rx.clone();
                let (failed, first) = (&flush_failed, &first_error);
                named("cbsnap-flusher", s, move || {
                    flush_packs(repo, rx, pending, failed, first)
                })
            })
            .collect();
        drop(seal_rx);
        // A send fails only when the flushers stopped on an error, reported below.
        let hand_over = |sealed: Option<SealedPack>| match sealed.map(|p| seal_tx.send(p)) {
            Some(Err(_)) => Err(writer_stopped()),
            _ => Ok(()),
        };
        let filled = (|| {
            for (b, held) in rx.iter() {
                if abort.load(Ordering::Relaxed) {
                    break;
                }
                let sealed = packer.add_blob(&b)?;
                // In the pack file now: its bytes leave the pipeline's count.
                drop((b, held));
                hand_over(sealed)?;
            }
            if abort.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            hand_over(packer.flush()?)
        })();
        drop(seal_tx);
        for f in flushers {
            if f.join().is_err() {
                record_first(&first_error, Error::Source("pack flusher panicked".into()));
            }
        }
        // A flusher's failure is the first cause of the writer's "stopped".
        match first_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None => filled,
        }
    });
    let stats = packer.stats();
    drop(packer);
    if result.is_err() {
        stopped.store(true, Ordering::Relaxed);
    }
    // Dropping `rx` on error makes the workers' sends fail, which stops the pipeline.
    result.map(|_| stats)
}

/// Keep `e` if it is the first error of the flushers (the cause to report).
fn record_first(first: &Mutex<Option<Error>>, e: Error) {
    let mut slot = first.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(e);
    }
}

/// Save each sealed pack ([`packer::save`]: durable or uploaded, then indexed), then
/// drop its ids from `pending`: the commit order of `docs/FORMAT.md`. Several run at
/// once for a remote repository. On an error (the first is kept in `first`) every
/// flusher stops and the packs still queued are dropped, which removes their
/// temporary files.
fn flush_packs(
    repo: &Repository,
    rx: Receiver<SealedPack>,
    pending: &Mutex<Pending>,
    failed: &AtomicBool,
    first: &Mutex<Option<Error>>,
) {
    for sealed in rx {
        if failed.load(Ordering::SeqCst) {
            return;
        }
        match packer::save(repo, sealed) {
            Ok(saved) => {
                let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                for e in &saved.entries {
                    p.queued.remove(&e.id);
                }
            }
            Err(e) => {
                record_first(first, e);
                failed.store(true, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// The way into the compress workers, for the source thread and the reader threads
/// alike ([`super::read`]): clones share the queue.
#[derive(Clone)]
pub(super) struct Feed<'a> {
    pub(super) repo: &'a Repository,
    pub(super) tx: Sender<(Job, Held)>,
    pub(super) in_flight: Arc<InFlight>,
    pub(super) pending: &'a Mutex<Pending>,
    pub(super) stopped: &'a AtomicBool,
    pub(super) progress: crate::progress::Progress,
}

impl Feed<'_> {
    /// Queue `job` for the compress workers once its raw bytes fit [`InFlight`].
    pub(super) fn send(&self, job: Job) -> Result<()> {
        let bytes = match &job {
            Job::Store { raw, .. } | Job::Chunk { raw, .. } => raw.len(),
        };
        let held = self.in_flight.hold(bytes, self.stopped)?;
        if self.stopped.load(Ordering::Relaxed) || self.tx.send((job, held)).is_err() {
            // The writer stopped (disk full, I/O error); its error is reported by `snapshot`.
            return Err(writer_stopped());
        }
        Ok(())
    }

    /// Queue a blob unless the repository has it or it is already queued.
    /// A blob beyond the format's limit is refused here, before it is claimed
    /// ([`pack::check_blob`]; the packer would refuse it too).
    pub(super) fn put_blob(&self, kind: BlobKind, raw: Vec<u8>) -> Result<Id> {
        let id = self.repo.blob_id(&raw);
        self.put_hashed(id, kind, raw)
    }

    /// [`Feed::put_blob`] of a blob already hashed to `id`.
    pub(super) fn put_hashed(&self, id: Id, kind: BlobKind, raw: Vec<u8>) -> Result<Id> {
        pack::check_blob(&id, raw.len() as u64, 0, Compression::Zstd)?;
        if claim(self.repo, self.pending, &id)? {
            self.send(Job::Store { id, kind, raw })?;
        }
        Ok(id)
    }
}

impl Ingest<'_> {
    /// The source thread's [`Feed`].
    pub(super) fn feed(&self) -> Feed<'_> {
        Feed {
            repo: self.repo,
            tx: self.tx.clone().expect("pipeline is open"),
            in_flight: Arc::clone(&self.in_flight),
            pending: self.pending,
            stopped: self.stopped,
            progress: self.progress.clone(),
        }
    }

    /// [`Feed::put_blob`] of a tree blob from the source thread, without the index lookup when its id is
    /// `indexed`, a tree the index is known to hold (the parent snapshot's tree of
    /// the same directory, read through the index): an unchanged snapshot then checks
    /// no tree, except the parts of a directory too large for one tree blob (over
    /// `tree::PART_LIMIT` bytes of nodes), which are checked as before.
    pub(super) fn put_tree(&mut self, raw: Vec<u8>, indexed: Option<Id>) -> Result<Id> {
        let id = self.repo.blob_id(&raw);
        if indexed == Some(id) {
            return Ok(id);
        }
        self.feed().put_hashed(id, BlobKind::Tree, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hold that would pass the budget waits until bytes are given back; one larger
    /// than the budget goes through alone; a stopped pipeline ends a wait.
    #[test]
    fn in_flight_bytes_wait_for_room() {
        let f = Arc::new(InFlight::new(1));
        let limit = IN_FLIGHT_MIN;
        assert_eq!(f.limit, limit);
        let stopped = AtomicBool::new(false);
        let big = f.hold(limit * 3, &stopped).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let h = f.hold(1, &stopped).unwrap();
                tx.send(h.bytes).unwrap();
            });
            std::thread::sleep(Duration::from_millis(300));
            assert!(rx.try_recv().is_err(), "held past the budget");
            drop(big);
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));
        });
        assert_eq!(*f.bytes.lock().unwrap(), 0);
        let half = f.hold(limit / 2, &stopped).unwrap();
        let _other = f.hold(limit / 2, &stopped).unwrap();
        stopped.store(true, Ordering::Relaxed);
        assert!(matches!(f.hold(1, &stopped), Err(Error::PipelineStopped)));
        drop(half);
        assert_eq!(*f.bytes.lock().unwrap(), limit / 2);
    }
}
