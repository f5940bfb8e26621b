//! Content-defined chunking with FastCDC (Xia et al., USENIX ATC 2016; the 2020
//! variant of the `fastcdc` crate). Boundaries depend only on content, so an insertion
//! early in a file moves one or two boundaries, not all the ones after it.
//!
//! The parameters are recorded in the repository's `config` and must never change for
//! a repository: a golden test pins the boundaries of a seeded input.
//!
//! [`Chunker`] cuts with the crate's own `cut_gear`, the function its `StreamCDC` calls,
//! on the same bytes, so the boundaries are the crate's (a test compares them cut for
//! cut); it reads into a buffer of several chunks where `StreamCDC` moves the rest of
//! its one-chunk buffer and zero-fills it after every chunk. It can also *take* a cut
//! it is told about ([`Chunker::next_known`]): a file changed in place is cut where its
//! parent snapshot's chunks were, chunk by chunk, as long as each one's content is
//! the same, without the gear hash over its bytes. This is close to RapidCDC's
//! fast-forward with its rolling-window and fingerprint tests (Ni and Jiang,
//! "RapidCDC: Leveraging Duplicate Locality to Accelerate Chunking in CDC-based
//! Deduplication Systems", SoCC 2019). Here the hints are the parent's chunks of the
//! same file, and one is taken only where sequential FastCDC cuts too (the conditions
//! are on [`Chunker::next_known`]), so the chunks are the ones a read without hints
//! makes.

use std::io::Read;

use fastcdc::v2020::{cut_gear, get_gear_with_seed, logarithm2, Normalization, MASKS};

use crate::config::ChunkerParams;

/// Bytes the buffer holds at least: four chunks of the default largest size. A refill
/// moves at most one largest chunk's bytes to the front. It is never zeroed (a file
/// of a few bytes costs no megabyte of `memset`): bytes are read into its spare
/// capacity.
const BUFFER_MIN: usize = 1 << 20;

/// A FastCDC 2020 chunker over a stream, with normalization level 1 and the crate's
/// gear table (seed 0), as `fastcdc::v2020::StreamCDC::new` cuts.
///
/// The cut of FastCDC 2020 from a chunk's start `0`, with `remaining` bytes left in
/// the stream: the gear hash `h = (h << 1) + GEAR[byte]` starts at 0 at byte
/// `2 ⌊min/2⌋`; the first byte `i` below `2 ⌊r/2⌋` (`r` = `remaining` capped at
/// `max`) where `h & mask == 0` ends the chunk at `i` (the byte that matched starts
/// the next one), with the stricter mask below `2 ⌊center/2⌋` (`center` = `avg`, or
/// `remaining` when that is less); without a match the chunk is `r` bytes.
pub struct Chunker<R> {
    reader: R,
    /// `buf[start..]` is read and not yet cut; its capacity is the buffer's size.
    buf: Vec<u8>,
    start: usize,
    /// Bytes of the stream before `buf[start]`: those of the chunks handed out.
    offset: u64,
    eof: bool,
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl<R: Read> Chunker<R> {
    /// A chunker of `reader` with `params` (checked by [`ChunkerParams::validate`]
    /// when the repository's config is read).
    pub fn new(reader: R, params: &ChunkerParams) -> Self {
        let bits = logarithm2(params.avg_size);
        let level = Normalization::Level1.bits();
        let (gear, gear_ls) = get_gear_with_seed(0);
        let max = params.max_size as usize;
        Chunker {
            reader,
            buf: Vec::with_capacity(BUFFER_MIN.max(2 * max + 2)),
            start: 0,
            offset: 0,
            eof: false,
            min: params.min_size as usize,
            avg: params.avg_size as usize,
            max,
            mask_s: MASKS[(bits + level) as usize],
            mask_l: MASKS[(bits - level) as usize],
            gear,
            gear_ls,
        }
    }

    /// Read until more than `max` bytes are buffered past the cut, or the stream ends.
    fn fill(&mut self) -> std::io::Result<()> {
        if self.eof || self.buf.len() - self.start > self.max {
            return Ok(());
        }
        self.buf.drain(..self.start);
        self.start = 0;
        // `read_to_end` reads into the spare capacity without zeroing it, and the
        // limit keeps it from growing the buffer: fewer bytes than asked is the end.
        let want = self.buf.capacity() - self.buf.len();
        let got = (&mut self.reader)
            .take(want as u64)
            .read_to_end(&mut self.buf)?;
        self.eof = got < want;
        Ok(())
    }

    /// The next chunk, cut by FastCDC; `None` at the end of the stream. The slice
    /// lives until the next call. Errors: the reader's.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.fill()?;
        let left = &self.buf[self.start..];
        if left.is_empty() {
            return Ok(None);
        }
        let (_, len) = cut_gear(
            left,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        let at = self.start;
        self.consume(len);
        Ok(Some(&self.buf[at..at + len]))
    }

    /// Take the next `len` bytes as the next chunk if FastCDC cuts them there, given
    /// that they are the content of a chunk FastCDC cut at `len` in another stream
    /// where more than `max` bytes followed its start: `same(bytes)` must say whether
    /// they are (the caller compares their id with that chunk's). Then no cut lies
    /// before `len` here either, and only the byte that decided the cut remains to be
    /// checked: the gear hash of the 64 bytes that end at it (or, without a match,
    /// `len` is `max`). Returns whether the chunk was taken; when not, nothing was
    /// consumed (a stream with `max` bytes or fewer left, a cut that moved, other
    /// bytes). Errors: the reader's.
    pub fn next_known(
        &mut self,
        len: usize,
        same: impl FnOnce(&[u8]) -> bool,
    ) -> std::io::Result<bool> {
        self.fill()?;
        let left = &self.buf[self.start..];
        if left.len() <= self.max || len == 0 || len > self.max {
            return Ok(false);
        }
        if len < self.max && !self.matches_at(left, len) {
            return Ok(false);
        }
        if !same(&left[..len]) {
            return Ok(false);
        }
        self.consume(len);
        Ok(true)
    }

    /// The stream's bytes handed out in chunks so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn consume(&mut self, len: usize) {
        self.start += len;
        self.offset += len as u64;
    }

    /// Whether the gear hash at byte `i` of `chunk` (more than `max` bytes long) meets
    /// the mask FastCDC applies there.
    fn matches_at(&self, chunk: &[u8], i: usize) -> bool {
        let first = self.min / 2 * 2;
        if i < first || i >= self.max / 2 * 2 {
            return false;
        }
        // Bytes more than 63 before `i` have been shifted out of the hash.
        let from = first.max(i.saturating_sub(63));
        let h = chunk[from..=i]
            .iter()
            .fold(0u64, |h, &b| (h << 1).wrapping_add(self.gear[b as usize]));
        let mask = if i < self.avg / 2 * 2 {
            self.mask_s
        } else {
            self.mask_l
        };
        h & mask == 0
    }
}

/// Split `reader` into chunks and hand each one to `sink` in order.
/// Returns the number of bytes read.
pub fn chunk_stream<R: Read, E>(
    reader: R,
    params: &ChunkerParams,
    mut sink: impl FnMut(Vec<u8>) -> Result<(), E>,
    io_err: impl Fn(std::io::Error) -> E,
) -> Result<u64, E> {
    let mut cdc = Chunker::new(reader, params);
    while let Some(c) = cdc.next_chunk().map_err(&io_err)? {
        sink(c.to_vec())?;
    }
    Ok(cdc.offset())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    fn seeded(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut v = vec![0u8; len];
        rng.fill_bytes(&mut v);
        v
    }

    fn lengths(data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        chunk_stream(
            data,
            &ChunkerParams::default(),
            |c| {
                out.push(c.len());
                Ok::<(), std::io::Error>(())
            },
            |e| e,
        )
        .unwrap();
        out
    }

    /// Golden test: the boundaries of a seeded 2 MiB input with the default
    /// parameters. If this fails, the chunker changed, and every existing repository
    /// would stop deduplicating against new snapshots. Do not update the numbers;
    /// fix the chunker (or bump the format version with a new chunker id).
    #[test]
    fn golden_chunk_boundaries() {
        let data = seeded(2 << 20, 42);
        let lens = lengths(&data);
        let digest = blake3::hash(
            &lens
                .iter()
                .flat_map(|l| (*l as u64).to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        assert_eq!(lens.iter().sum::<usize>(), data.len());
        assert_eq!(lens.len(), GOLDEN_COUNT, "lengths: {lens:?}");
        assert_eq!(&lens[..4], &GOLDEN_FIRST, "lengths: {lens:?}");
        assert_eq!(digest.to_hex().as_str(), GOLDEN_DIGEST, "lengths: {lens:?}");
    }

    const GOLDEN_COUNT: usize = 26;
    const GOLDEN_FIRST: [usize; 4] = [85614, 103036, 48828, 30214];
    const GOLDEN_DIGEST: &str = "6033fb9c8f74fbf8fb0b538a117991daec3ce92606aa54d4fcecc92e22f37acd";

    #[test]
    fn insertion_moves_few_boundaries() {
        let data = seeded(4 << 20, 7);
        let mut edited = data.clone();
        edited.splice(1_000_000..1_000_000, b"inserted bytes".iter().copied());
        let a: std::collections::HashSet<Vec<u8>> = {
            let mut v = Vec::new();
            chunk_stream(
                &data[..],
                &ChunkerParams::default(),
                |c| {
                    v.push(c);
                    Ok::<(), std::io::Error>(())
                },
                |e| e,
            )
            .unwrap();
            v.into_iter().collect()
        };
        let mut changed = 0;
        chunk_stream(
            &edited[..],
            &ChunkerParams::default(),
            |c| {
                if !a.contains(&c) {
                    changed += 1;
                }
                Ok::<(), std::io::Error>(())
            },
            |e| e,
        )
        .unwrap();
        assert!(changed <= 2, "{changed} chunks changed");
    }

    proptest::proptest! {
        #[test]
        fn chunks_concatenate_to_input(len in 0usize..600_000, seed in 0u64..1000) {
            let data = seeded(len, seed);
            let mut joined = Vec::new();
            let p = ChunkerParams::default();
            chunk_stream(&data[..], &p, |c| {
                proptest::prop_assert!(c.len() <= p.max_size as usize);
                joined.extend_from_slice(&c);
                Ok(())
            }, |e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(joined, data);
        }
    }

    /// A reader that hands out at most `step` bytes a call, as a pipe or a slow disk.
    struct Dribble<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Random bytes with runs of zeros (cut at the largest size) and of text.
    fn mixed(len: usize, seed: u64) -> Vec<u8> {
        let mut v = seeded(len, seed);
        let mut at = (seed as usize * 7919) % (len / 3 + 1);
        while at < len {
            let run = (at % 300_000).min(len - at);
            if at.is_multiple_of(2) {
                v[at..at + run].fill(0);
            } else {
                v[at..at + run].iter_mut().for_each(|b| *b = b'a' + *b % 4);
            }
            at += run + 400_000;
        }
        v
    }

    fn params(set: usize) -> ChunkerParams {
        let (min_size, avg_size, max_size) = [
            (16 * 1024, 64 * 1024, 256 * 1024),
            (64, 256, 1024),
            (1000, 3001, 7001),
            (2048, 8192, 32768),
        ][set];
        ChunkerParams {
            min_size,
            avg_size,
            max_size,
            ..ChunkerParams::default()
        }
    }

    /// The cuts of the `fastcdc` crate's `StreamCDC`, the chunker every repository was
    /// cut with before [`Chunker`].
    fn stream_cdc_lengths(data: &[u8], p: &ChunkerParams) -> Vec<usize> {
        fastcdc::v2020::StreamCDC::new(data, p.min_size, p.avg_size, p.max_size)
            .map(|c| c.unwrap().length)
            .collect()
    }

    fn chunker_lengths(r: impl Read, p: &ChunkerParams) -> Vec<usize> {
        let mut cdc = Chunker::new(r, p);
        let mut out = Vec::new();
        while let Some(c) = cdc.next_chunk().unwrap() {
            out.push(c.len());
        }
        out
    }

    /// Cut `data` taking `old`'s chunks (lengths, BLAKE3 of their bytes) wherever one
    /// starts with more than `max` bytes of `old_len` after it, as the ingest does;
    /// returns the lengths and how many were taken.
    fn guided_lengths(
        data: &[u8],
        p: &ChunkerParams,
        old: &[(usize, blake3::Hash)],
        old_len: usize,
    ) -> (Vec<usize>, usize) {
        let mut starts = std::collections::HashMap::new();
        let mut at = 0;
        for &(len, hash) in old {
            if old_len - at > p.max_size as usize {
                starts.insert(at, (len, hash));
            }
            at += len;
        }
        let mut cdc = Chunker::new(
            Dribble {
                data,
                step: 100_000,
            },
            p,
        );
        let (mut out, mut taken) = (Vec::new(), 0);
        loop {
            if let Some(&(len, hash)) = starts.get(&(cdc.offset() as usize)) {
                if cdc.next_known(len, |b| blake3::hash(b) == hash).unwrap() {
                    out.push(len);
                    taken += 1;
                    continue;
                }
            }
            let Some(c) = cdc.next_chunk().unwrap() else {
                break;
            };
            out.push(c.len());
        }
        assert_eq!(cdc.offset(), data.len() as u64);
        (out, taken)
    }

    /// Edits of `data` at `spots`: a byte flipped at each (the spots include bytes
    /// that decided a cut), one insertion, a cut tail or an appended one.
    fn edit(data: &[u8], spots: &[usize], kind: usize) -> Vec<u8> {
        let mut v = data.to_vec();
        for &s in spots {
            let s = s % v.len();
            v[s] ^= 0x81;
        }
        match kind {
            0 => {}
            1 => {
                let at = spots[0] % v.len();
                v.splice(at..at, *b"inserted");
            }
            2 => v.truncate(v.len() - v.len() / 7),
            _ => v.extend_from_slice(&seeded(5000, 3)),
        }
        v
    }

    #[test]
    fn an_edited_copy_is_cut_alike_with_and_without_the_old_cuts() {
        for set in 0..4 {
            let p = params(set);
            let data = mixed(3 << 20, set as u64 + 11);
            let lens = chunker_lengths(&data[..], &p);
            let old: Vec<(usize, blake3::Hash)> = {
                let mut at = 0;
                lens.iter()
                    .map(|&l| {
                        at += l;
                        (l, blake3::hash(&data[at - l..at]))
                    })
                    .collect()
            };
            // Bytes that decided cuts: the first byte of chunks 3, 10 and the middle one.
            let ends: Vec<usize> = lens
                .iter()
                .scan(0, |a, l| {
                    *a += l;
                    Some(*a)
                })
                .collect();
            let spots = [ends[2], ends[9], ends[ends.len() / 2], 1 << 20, 12345];
            for kind in 0..4 {
                let edited = edit(&data, &spots, kind);
                let want = chunker_lengths(&edited[..], &p);
                let (got, taken) = guided_lengths(&edited, &p, &old, data.len());
                assert_eq!(got, want, "params {set}, edit {kind}");
                // After an insertion no old cut is at its offset; otherwise most are.
                let least = if kind == 1 { 1 } else { want.len() / 2 };
                assert!(
                    taken >= least,
                    "params {set}, edit {kind}: {taken} of {} taken",
                    want.len()
                );
            }
            // Unedited: every chunk but those within `max` of the end is taken.
            let (got, taken) = guided_lengths(&data, &p, &old, data.len());
            assert_eq!(got, lens);
            let tail = ends
                .iter()
                .filter(|&&e| data.len() - e <= p.max_size as usize)
                .count();
            assert!(
                taken + tail + 1 >= lens.len(),
                "params {set}: {taken} of {}",
                lens.len()
            );
        }
    }

    #[test]
    fn a_cut_is_not_taken_where_fastcdc_does_not_cut() {
        let p = ChunkerParams::default();
        let data = mixed(2 << 20, 5);
        let lens = chunker_lengths(&data[..], &p);
        // The first chunk's bytes, one byte short and one byte long: never taken,
        // whatever `same` says; the real length is.
        for (len, taken) in [(lens[0] - 1, false), (lens[0] + 1, false), (lens[0], true)] {
            let mut cdc = Chunker::new(&data[..], &p);
            assert_eq!(
                cdc.next_known(len, |_| true).unwrap(),
                taken,
                "length {len}"
            );
            let next = cdc.next_chunk().unwrap().unwrap().len();
            assert_eq!(next, if taken { lens[1] } else { lens[0] });
        }
        // Other bytes (`same` says no): not taken, nothing consumed.
        let mut cdc = Chunker::new(&data[..], &p);
        assert!(!cdc.next_known(lens[0], |_| false).unwrap());
        assert_eq!(cdc.next_chunk().unwrap().unwrap().len(), lens[0]);
        // With `max` bytes or fewer left, nothing is taken.
        let short = &data[..p.max_size as usize];
        let mut cdc = Chunker::new(short, &p);
        let first = chunker_lengths(short, &p)[0];
        assert!(!cdc.next_known(first, |_| true).unwrap());
    }

    /// The gear hash of 64 bytes at a chunk's end is the crate's running hash there:
    /// every cut FastCDC makes below `max` (with more than `max` bytes after the
    /// chunk's start) meets the mask at its end, and no byte before it does.
    #[test]
    fn the_deciding_bytes_hash_is_the_crates() {
        for set in 0..4 {
            let p = params(set);
            let data = mixed(2 << 20, 40 + set as u64);
            let cdc = Chunker::new(&data[..], &p);
            let (mut at, mut checked) = (0, 0);
            for len in chunker_lengths(&data[..], &p) {
                let chunk = &data[at..];
                if chunk.len() > p.max_size as usize && len < p.max_size as usize {
                    assert!(
                        cdc.matches_at(chunk, len),
                        "params {set}: cut at {at}+{len}"
                    );
                    for i in (0..len).step_by(7) {
                        assert!(!cdc.matches_at(chunk, i), "params {set}: {at}+{i} < {len}");
                    }
                    checked += 1;
                }
                at += len;
            }
            assert!(checked > 5, "params {set}: {checked} cuts checked");
        }
    }

    proptest::proptest! {
        #[test]
        fn cuts_as_the_crates_stream_cdc_does(
            len in 0usize..1_500_000,
            seed in 0u64..1000,
            set in 0usize..4,
            step in 1usize..300_000,
        ) {
            let data = mixed(len, seed);
            let p = params(set);
            let want = stream_cdc_lengths(&data, &p);
            proptest::prop_assert_eq!(chunker_lengths(Dribble { data: &data, step }, &p), want);
        }
    }
}
