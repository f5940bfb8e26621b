//! Content-defined chunking with FastCDC (Xia et al., USENIX ATC 2016; the 2020
//! variant of the `fastcdc` crate). Boundaries depend only on content, so an insertion
//! early in a file moves one or two boundaries, not all the ones after it.
//!
//! The parameters are recorded in the repository's `config` and must never change for
//! a repository: a golden test pins the boundaries of a seeded input.

use std::io::Read;

use fastcdc::v2020::StreamCDC;

use crate::config::ChunkerParams;

/// Split `reader` into chunks and hand each one to `sink` in order.
/// Returns the number of bytes read.
pub fn chunk_stream<R: Read, E>(
    reader: R,
    params: &ChunkerParams,
    mut sink: impl FnMut(Vec<u8>) -> Result<(), E>,
    io_err: impl Fn(std::io::Error) -> E,
) -> Result<u64, E> {
    let mut total = 0u64;
    let cdc = StreamCDC::new(reader, params.min_size, params.avg_size, params.max_size);
    for chunk in cdc {
        match chunk {
            Ok(c) => {
                total += c.data.len() as u64;
                sink(c.data)?;
            }
            Err(fastcdc::v2020::Error::IoError(e)) => return Err(io_err(e)),
            Err(e) => return Err(io_err(std::io::Error::other(e.to_string()))),
        }
    }
    Ok(total)
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
}
