//! Reading file content into chunks: a stream is cut by FastCDC and its chunks go to
//! the workers; a file of a live tree is read under `fstat` checks so that a file
//! changing while read is read again or named in the snapshot's errors.

use std::io::Read;

use crossbeam_channel::unbounded;

use super::pipeline::{ChunkReply, Job};
use super::Ingest;
use crate::chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::BlobKind;
use crate::source::dir::{FileStat, LiveFile, OpenError};
use crate::source::{Content, Entry, Sink};

impl Ingest<'_> {
    /// Chunk a file's bytes and store the chunks; returns their ids in file order and
    /// the number of bytes read. The first chunk is held back: if it is the only one
    /// it is hashed here ([`Ingest::put_blob`]); once a second one arrives, every
    /// chunk goes to the workers to be hashed in parallel, and this waits for their
    /// ids at the end of the file.
    fn store_stream(&mut self, r: &mut dyn Read, path: &[u8]) -> Result<(Vec<Id>, u64)> {
        let params = self.repo.config.chunker.clone();
        let mut first: Option<Vec<u8>> = None;
        let (reply_tx, reply_rx) = unbounded::<ChunkReply>();
        let mut count = 0usize;
        let mut failed: Option<Error> = None;
        let n = chunker::chunk_stream(
            r,
            &params,
            |c| {
                let len = c.len() as u64;
                let sent = match count {
                    0 => {
                        first = Some(c);
                        Ok(())
                    }
                    _ => {
                        let send = |seq, raw| {
                            let reply = reply_tx.clone();
                            self.send(Job::Chunk { seq, raw, reply })
                        };
                        match first.take() {
                            Some(head) => send(0, head).and_then(|_| send(count, c)),
                            None => send(count, c),
                        }
                    }
                };
                match sent {
                    Ok(()) => {
                        count += 1;
                        self.stats.bytes_read += len;
                        self.progress.inc(len);
                        Ok(())
                    }
                    Err(e) => {
                        failed = Some(e);
                        Err(None)
                    }
                }
            },
            Some,
        );
        drop(reply_tx);
        if let Some(e) = failed {
            return Err(e);
        }
        let n = match n {
            Ok(n) => n,
            Err(Some(io)) => {
                return Err(Error::io(
                    format!("read {}", String::from_utf8_lossy(path)),
                    io,
                ))
            }
            Err(None) => unreachable!("pipeline errors are returned above"),
        };
        if let Some(only) = first {
            return Ok((vec![self.put_blob(BlobKind::Data, only)?], n));
        }
        let mut ids: Vec<Option<Id>> = vec![None; count];
        // Ends when every job of this file has been answered (their senders dropped).
        for (seq, id) in reply_rx.iter() {
            ids[seq] = Some(id?);
        }
        let ids = ids
            .into_iter()
            .collect::<Option<Vec<Id>>>()
            .ok_or_else(|| Error::Source("a compress worker stopped".into()))?;
        Ok((ids, n))
    }

    pub(super) fn file_content(
        &mut self,
        e: &mut Entry,
        content: Content<'_>,
    ) -> Result<Option<(Vec<Id>, u64)>> {
        match content {
            Content::None => Ok(Some((Vec::new(), 0))),
            Content::Stream(r) => self.store_stream(r, &e.path).map(Some),
            Content::File(f) => {
                if let Some(ids) = self.unchanged_in_parent(e)? {
                    self.stats.files_unchanged += 1;
                    self.progress.inc(e.node.size);
                    return Ok(Some((ids, e.node.size)));
                }
                self.read_live(e, f)
            }
        }
    }

    /// Read a file of a live tree. Its `fstat` at open and after reading must agree
    /// (device, inode, type, size, mtime, ctime) and match the bytes read; a file
    /// that changed is read once more, and if it changed again it is stored as read
    /// and named in the snapshot's errors, as GNU tar and restic do. A name that no
    /// longer is the file the walk listed (swapped for a symlink, say) is never read.
    fn read_live(&mut self, e: &mut Entry, f: &LiveFile<'_>) -> Result<Option<(Vec<Id>, u64)>> {
        let mut last = None;
        for _ in 0..2 {
            let (mut file, before) = match f.open() {
                Ok(x) => x,
                Err(OpenError::Replaced) if last.is_none() => continue,
                Err(err) => {
                    self.warn(&e.path, err.to_string());
                    return Ok(None);
                }
            };
            let (ids, n) = match self.store_stream(&mut file, &e.path) {
                Ok(r) => r,
                Err(Error::Io { source, .. }) => {
                    self.warn(&e.path, format!("read failed: {source}"));
                    return Ok(None);
                }
                Err(other) => return Err(other),
            };
            let after = FileStat::of(&file).map_err(|err| {
                Error::io(format!("stat {}", String::from_utf8_lossy(&e.path)), err)
            })?;
            // What is stored is described by the `stat` taken when it was read.
            e.node.mtime = before.mtime;
            e.node.mtime_nsec = before.mtime_nsec;
            e.node.ctime = before.ctime;
            e.node.ctime_nsec = before.ctime_nsec;
            if before.unchanged(&after) && n == before.size {
                return Ok(Some((ids, n)));
            }
            last = Some((ids, n));
        }
        match last {
            Some(read) => {
                self.warn(
                    &e.path,
                    "changed while read (twice); stored as read, which may mix old and new content"
                        .into(),
                );
                Ok(Some(read))
            }
            None => {
                self.warn(&e.path, OpenError::Replaced.to_string());
                Ok(None)
            }
        }
    }
}
