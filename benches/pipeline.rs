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
//! The `chunk_guided` group reads a file changed in place (four 1 MiB regions of the
//! 64 MiB overwritten) again with its parent's cuts and ids
//! ([`cbsnap::chunker::Chunker::next_known`], as a changed file of a snapshot with a
//! parent is read), against FastCDC alone followed by BLAKE3 of every chunk: both
//! give every chunk's id, and the same ids.
//!
//! The later stages, each alone: `pack` (appending the compressed chunks to a
//! [`cbsnap::pack::PackWriter`] and sealing it, into the page cache, no fsync),
//! `index_lookup` (dedup checks against a RocksDB index of 200,000 chunks: hits,
//! misses, and one batched multi-get), `tree` (encoding and decoding a directory of
//! 10,000 file nodes) and `restore_write` (decoding and verifying each stored chunk
//! and writing it at its offset with `pwrite`, all-zero chunks left as holes, as
//! `restore::dir` does).
//!
//! Run: `cargo bench --bench pipeline` (about three minutes on two cores); a filter
//! selects groups, e.g. `cargo bench --bench pipeline -- chunk_params`. Sample counts
//! are kept small on purpose: each iteration already processes 64 MiB.

use std::time::Duration;

use std::os::unix::fs::FileExt;

use cbsnap::chunker::{chunk_stream, Chunker};
use cbsnap::config::ChunkerParams;
use cbsnap::crypto::Crypt;
use cbsnap::id::Id;
use cbsnap::index::Index;
use cbsnap::pack::{compress, decode_blob, BlobEntry, BlobKind, PackWriter};
use cbsnap::tree::{Node, NodeKind};
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

/// `data` with four 1 MiB regions overwritten (seeded), like what `gen_corpus.py --mutate`
/// does to the largest model blob of the compare corpus.
fn edited(data: &[u8], seed: u64) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for k in 0..4 {
        let at = k * LEN / 4 + (1 << 20);
        rng.fill_bytes(&mut out[at..at + (1 << 20)]);
    }
    out
}

/// The ids of `data`'s chunks, cut by FastCDC alone ([`chunk_stream`], an owned copy
/// of each chunk as the engine sends to the workers) and hashed one by one: what a
/// changed file costs the reader and the workers without its parent's cuts.
fn fastcdc_ids(data: &[u8], p: &ChunkerParams) -> Vec<Id> {
    let mut ids = Vec::new();
    let sink = |c: Vec<u8>| {
        ids.push(Id::hash(&c));
        Ok::<_, std::io::Error>(())
    };
    chunk_stream(data, p, sink, |e| e).expect("in-memory read");
    ids
}

/// The ids of `data`'s chunks, cut at the parent's cuts where FastCDC cuts too
/// ([`Chunker::next_known`], as `ingest::read` walks them): an old chunk that starts
/// where the read stands, with more than `max` bytes of the old file after it, is
/// tried first; FastCDC cuts the rest. `old` is the parent's chunks: id and length.
/// Returns the ids and how many chunks were taken at the parent's cuts.
fn guided_ids(data: &[u8], old: &[(Id, usize)], p: &ChunkerParams) -> (Vec<Id>, usize) {
    let old_len: usize = old.iter().map(|&(_, len)| len).sum();
    let (mut next, mut old_at) = (0, 0);
    let (mut ids, mut taken) = (Vec::new(), 0);
    let mut cdc = Chunker::new(data, p);
    loop {
        let at = cdc.offset() as usize;
        while next < old.len() && old_at < at {
            old_at += old[next].1;
            next += 1;
        }
        if next < old.len() && old_at == at && old_len.saturating_sub(at) > p.max_size as usize {
            let (id, len) = old[next];
            if cdc
                .next_known(len, |b| Id::hash(b) == id)
                .expect("in-memory read")
            {
                ids.push(id);
                taken += 1;
                continue;
            }
        }
        match cdc.next_chunk().expect("in-memory read") {
            // An owned copy, as the engine sends a chunk FastCDC cut to the workers.
            Some(c) => ids.push(Id::hash(&black_box(c.to_vec()))),
            None => return (ids, taken),
        }
    }
}

/// A file changed in place (four 1 MiB regions of 64 MiB overwritten) read again
/// with its parent's cuts, against FastCDC alone; both give every chunk's id, and
/// the same ids (checked before measuring).
fn bench_guided(c: &mut Criterion, inputs: &[(&str, Vec<u8>)]) {
    let mut g = c.benchmark_group("chunk_guided");
    g.throughput(Throughput::Bytes(LEN as u64));
    let p = ChunkerParams::default();
    for (name, data) in inputs {
        let old: Vec<(Id, usize)> = chunks(data, &p)
            .iter()
            .map(|c| (Id::hash(c), c.len()))
            .collect();
        let new = edited(data, 3);
        let (ids, taken) = guided_ids(&new, &old, &p);
        assert_eq!(
            ids,
            fastcdc_ids(&new, &p),
            "{name}: the parent's cuts gave other chunks than FastCDC alone"
        );
        eprintln!(
            "input {name}: {taken} of {} chunks taken at the parent's cuts",
            ids.len()
        );
        assert!(
            taken * 100 >= ids.len() * 85,
            "{name}: only {taken} of {} chunks taken at the parent's cuts",
            ids.len()
        );
        g.bench_with_input(BenchmarkId::new("fastcdc_then_hash", name), &new, |b, d| {
            b.iter(|| fastcdc_ids(d, &p))
        });
        g.bench_with_input(BenchmarkId::new("parent_cuts", name), &new, |b, d| {
            b.iter(|| guided_ids(d, &old, &p))
        });
    }
    g.finish();
}

/// A stored chunk: its id, raw length and bytes as compressed.
struct Stored {
    id: Id,
    raw_len: u32,
    bytes: Vec<u8>,
    compression: cbsnap::pack::Compression,
}

fn stored(cs: &[Vec<u8>]) -> Vec<Stored> {
    cs.iter()
        .map(|c| {
            let (bytes, compression) = compress(c, 3);
            Stored {
                id: Id::hash(c),
                raw_len: c.len() as u32,
                bytes,
                compression,
            }
        })
        .collect()
}

/// Appending compressed chunks to a pack and sealing it (the writer thread's work,
/// fsync left out).
fn bench_pack(c: &mut Criterion, stored: &[(&str, Vec<Stored>)]) {
    let mut g = c.benchmark_group("pack");
    g.throughput(Throughput::Bytes(LEN as u64));
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, cs) in stored {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut w = PackWriter::create(dir.path(), &Crypt::Plain).expect("create pack");
                for s in cs {
                    w.add(s.id, BlobKind::Data, s.raw_len, &s.bytes, s.compression)
                        .expect("add blob");
                }
                black_box(w.seal().expect("seal pack").id())
            })
        });
    }
    g.finish();
}

/// The dedup check: `contains` of 10,000 ids that are in an index of 200,000
/// chunks, of 10,000 that are not, and one `contains_all` of the 10,000 present.
fn bench_index_lookup(c: &mut Criterion) {
    const CHUNKS: u64 = 200_000;
    const LOOKUPS: u64 = 10_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let index = Index::open(&dir.path().join("index")).expect("open index");
    let id = |i: u64| Id::hash(&i.to_le_bytes());
    for pack in 0..CHUNKS / 10_000 {
        let entries: Vec<BlobEntry> = (pack * 10_000..(pack + 1) * 10_000)
            .map(|i| BlobEntry {
                id: id(i),
                offset: (i % 10_000) * 65_536,
                stored_len: 65_536,
                raw_len: 65_536,
                kind: BlobKind::Data,
                compression: cbsnap::pack::Compression::Zstd,
            })
            .collect();
        index
            .add_pack(&id(u64::MAX - pack), 10_000 * 65_536, &entries)
            .expect("add pack");
    }
    index.flush().expect("flush index");
    let hits: Vec<Id> = (0..LOOKUPS).map(|i| id(i * (CHUNKS / LOOKUPS))).collect();
    let misses: Vec<Id> = (0..LOOKUPS).map(|i| id(CHUNKS + i)).collect();
    let mut g = c.benchmark_group("index_lookup");
    g.throughput(Throughput::Elements(LOOKUPS));
    g.bench_function("contains_hit", |b| {
        b.iter(|| {
            hits.iter()
                .filter(|i| index.contains(i).expect("lookup"))
                .count()
        })
    });
    g.bench_function("contains_miss", |b| {
        b.iter(|| {
            misses
                .iter()
                .filter(|i| index.contains(i).expect("lookup"))
                .count()
        })
    });
    g.bench_function("contains_all_hit", |b| {
        b.iter(|| index.contains_all(&hits).expect("multi-get"))
    });
    g.finish();
}

/// Encoding and decoding one directory of 10,000 files of four chunks each.
fn bench_tree(c: &mut Criterion) {
    const NODES: u64 = 10_000;
    let nodes: Vec<Node> = (0..NODES)
        .map(|i| {
            let mut n = Node::new(format!("file-{i:06}.rs").into_bytes(), NodeKind::File);
            n.mode = 0o644;
            n.size = 4 * 65_536;
            n.mtime = 1_700_000_000 + i as i64;
            n.user = b"root".to_vec();
            n.group = b"root".to_vec();
            n.content = (0..4)
                .map(|k| Id::hash(&(i * 4 + k).to_le_bytes()))
                .collect();
            n
        })
        .collect();
    let encoded = cbsnap::tree::encode(&nodes);
    let mut g = c.benchmark_group("tree");
    g.throughput(Throughput::Elements(NODES));
    g.bench_function("encode", |b| {
        b.iter(|| cbsnap::tree::encode(black_box(&nodes)).len())
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            cbsnap::tree::decode(black_box(&encoded))
                .expect("decode")
                .len()
        })
    });
    g.finish();
}

/// Decode, verify and write each chunk at its offset; an all-zero chunk is skipped
/// (a hole), as `restore::dir::write_file` does.
fn bench_restore_write(c: &mut Criterion, stored: &[(&str, Vec<Stored>)]) {
    let mut g = c.benchmark_group("restore_write");
    g.throughput(Throughput::Bytes(LEN as u64));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("out");
    for (name, cs) in stored {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let f = std::fs::File::create(&path).expect("create");
                let mut off = 0u64;
                for s in cs {
                    let entry = BlobEntry {
                        id: s.id,
                        offset: 0,
                        stored_len: s.bytes.len() as u32,
                        raw_len: s.raw_len,
                        kind: BlobKind::Data,
                        compression: s.compression,
                    };
                    let data = decode_blob(&entry, &s.bytes, &Crypt::Plain).expect("decode");
                    if !data.iter().all(|&b| b == 0) {
                        f.write_all_at(&data, off).expect("write");
                    }
                    off += data.len() as u64;
                }
                f.set_len(off).expect("truncate");
                off
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
    bench_guided(&mut c, &inputs);
    let stored: Vec<(&str, Vec<Stored>)> = chunked.iter().map(|(n, cs)| (*n, stored(cs))).collect();
    bench_pack(&mut c, &stored);
    bench_index_lookup(&mut c);
    bench_tree(&mut c);
    bench_restore_write(&mut c, &stored);
    c.final_summary();
}
