//! Micro-benchmarks of the CPU stages of a snapshot, one core, on 64 MiB of seeded
//! input: FastCDC chunking ([`cbsnap::chunker::chunk_stream`]), BLAKE3 ids
//! ([`cbsnap::id::Id::hash`]) and zstd ([`cbsnap::pack::compress`]), apart and
//! chained. Two inputs bracket real data: random bytes (model blobs, encrypted or
//! already compressed files: zstd gives up and stores them raw) and text-like bytes
//! (lines of words from a skewed vocabulary: zstd level 3 on 64 KiB chunks keeps
//! about 46%; real source trees compress further, so zstd runs faster on them).
//!
//! The `chunk_params` group compares FastCDC parameter sets in throughput; their
//! effect on deduplication is measured end to end by `benches/chunk_params.sh`.
//!
//! Run: `cargo bench --bench pipeline` (about three minutes on two cores); a filter
//! selects groups, e.g. `cargo bench --bench pipeline -- chunk_params`. Sample counts
//! are kept small on purpose: each iteration already processes 64 MiB.

use std::time::Duration;

use cbsnap::chunker::chunk_stream;
use cbsnap::config::ChunkerParams;
use cbsnap::id::Id;
use cbsnap::pack::compress;
use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LEN: usize = 64 << 20;
const KIB: u32 = 1024;
/// The repository default (`ChunkerParams::default()`) is the second one.
const PARAM_SETS: [(u32, u32, u32); 4] =
    [(8, 32, 128), (16, 64, 256), (32, 128, 512), (64, 256, 1024)];

fn params(min: u32, avg: u32, max: u32) -> ChunkerParams {
    ChunkerParams {
        min_size: min * KIB,
        avg_size: avg * KIB,
        max_size: max * KIB,
        ..ChunkerParams::default()
    }
}

fn random_input(seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; LEN];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Lines of words drawn from a fixed vocabulary with a skewed distribution, like
/// source code and logs, but with fewer repeats: zstd level 3 keeps about 46%.
fn text_input(seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let vocab: Vec<Vec<u8>> = (0..4000)
        .map(|_| {
            let n = rng.gen_range(2..12);
            (0..n).map(|_| rng.gen_range(b'a'..=b'z')).collect()
        })
        .collect();
    let punct = [&b" = "[..], b"(", b");", b", ", b" ", b" ", b" ", b"."];
    let mut v = Vec::with_capacity(LEN + 256);
    while v.len() < LEN {
        let indent: i32 = rng.gen_range(0..4);
        v.resize(v.len() + indent as usize, b' ');
        for _ in 0..rng.gen_range(3..14) {
            // squaring the uniform draw favours the first words, as in real text
            let r: f64 = rng.gen();
            v.extend_from_slice(&vocab[(r * r * vocab.len() as f64) as usize]);
            v.extend_from_slice(punct[rng.gen_range(0..punct.len())]);
        }
        v.push(b'\n');
    }
    v.truncate(LEN);
    v
}

fn chunks(data: &[u8], p: &ChunkerParams) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let sink = |c| {
        out.push(c);
        Ok::<_, std::io::Error>(())
    };
    chunk_stream(data, p, sink, |e| e).expect("in-memory read");
    out
}

/// Chunk and drop: the sink still receives an owned `Vec` per chunk, as in the engine.
fn chunk_only(data: &[u8], p: &ChunkerParams) -> u64 {
    let mut n = 0u64;
    let sink = |c: Vec<u8>| {
        n += black_box(c).len() as u64;
        Ok::<_, std::io::Error>(())
    };
    chunk_stream(data, p, sink, |e| e).expect("in-memory read")
}

fn bench_chunk(c: &mut Criterion, inputs: &[(&str, Vec<u8>)]) {
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Bytes(LEN as u64));
    let p = ChunkerParams::default();
    for (name, data) in inputs {
        g.bench_function(*name, |b| b.iter(|| chunk_only(data, &p)));
    }
    g.finish();
}

fn bench_chunk_params(c: &mut Criterion, inputs: &[(&str, Vec<u8>)]) {
    let mut g = c.benchmark_group("chunk_params");
    g.throughput(Throughput::Bytes(LEN as u64));
    for (min, avg, max) in PARAM_SETS {
        let p = params(min, avg, max);
        for (name, data) in inputs {
            let id = BenchmarkId::new(format!("{min}-{avg}-{max}"), name);
            g.bench_with_input(id, data, |b, data| b.iter(|| chunk_only(data, &p)));
        }
    }
    g.finish();
}

fn bench_hash(c: &mut Criterion, chunked: &[(&str, Vec<Vec<u8>>)]) {
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Bytes(LEN as u64));
    // Content does not matter to BLAKE3; one input is enough.
    let (_, cs) = &chunked[0];
    g.bench_function("blake3_per_chunk", |b| {
        b.iter(|| {
            cs.iter()
                .map(|c| black_box(Id::hash(c)).0[0] as u64)
                .sum::<u64>()
        })
    });
    g.finish();
}

fn bench_compress(c: &mut Criterion, chunked: &[(&str, Vec<Vec<u8>>)]) {
    let mut g = c.benchmark_group("compress");
    g.throughput(Throughput::Bytes(LEN as u64));
    for (name, cs) in chunked {
        // Level 3 is the repository default; 1 and 9 on compressible input only,
        // since random chunks cost the same at every level (zstd gives up).
        let levels: &[i32] = if *name == "text" { &[1, 3, 9] } else { &[3] };
        for &level in levels {
            let id = BenchmarkId::new(format!("zstd{level}"), name);
            g.bench_with_input(id, cs, |b, cs| {
                b.iter(|| cs.iter().map(|c| compress(c, level).0.len()).sum::<usize>())
            });
        }
    }
    g.finish();
}

/// All three stages on one core, chunk by chunk: the upper bound of what one
/// rayon worker can feed into the pack writer.
fn bench_serial(c: &mut Criterion, inputs: &[(&str, Vec<u8>)]) {
    let mut g = c.benchmark_group("chunk_hash_compress");
    g.throughput(Throughput::Bytes(LEN as u64));
    let p = ChunkerParams::default();
    for (name, data) in inputs {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut stored = 0usize;
                chunk_stream(
                    &data[..],
                    &p,
                    |c| {
                        black_box(Id::hash(&c));
                        stored += compress(&c, 3).0.len();
                        Ok::<_, std::io::Error>(())
                    },
                    |e| e,
                )
                .expect("in-memory read");
                stored
            })
        });
    }
    g.finish();
}

fn main() {
    let inputs = [("random", random_input(1)), ("text", text_input(2))];
    let chunked: Vec<(&str, Vec<Vec<u8>>)> = inputs
        .iter()
        .map(|(n, d)| (*n, chunks(d, &ChunkerParams::default())))
        .collect();

    // Context for reading the numbers: chunk counts and compression ratios.
    for (name, data) in &inputs {
        let counts: Vec<String> = PARAM_SETS
            .iter()
            .map(|&(a, b, c)| format!("{a}-{b}-{c}: {}", chunks(data, &params(a, b, c)).len()))
            .collect();
        eprintln!(
            "input {name}: {} MiB; chunks per parameter set: {}",
            LEN >> 20,
            counts.join(", ")
        );
    }
    for (name, cs) in &chunked {
        let stored: usize = cs.iter().map(|c| compress(c, 3).0.len()).sum();
        eprintln!(
            "input {name}: zstd level 3 stores {:.1}% of the bytes",
            100.0 * stored as f64 / LEN as f64
        );
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_chunk(&mut c, &inputs);
    bench_chunk_params(&mut c, &inputs);
    bench_hash(&mut c, &chunked);
    bench_compress(&mut c, &chunked);
    bench_serial(&mut c, &inputs);
    c.final_summary();
}
