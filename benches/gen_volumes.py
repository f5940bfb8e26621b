#!/usr/bin/env python3
"""Deterministic content for the Docker volumes of benches/docker.sh.

Three directories, each shaped after one kind of volume of the Code Buddy stack:

* qdrant-data: a vector database: four large segment files (64, 48, 32 and
  16 MiB) of float32-like data (random mantissas, eight values of the top
  byte, so zstd saves only ~6%, as on real embeddings), plus small JSON files;
* extensions: 3 000 small text files (0.5-40 KiB, 37 MiB, of JS-like lines
  drawn from a pool) in 120 package directories; zstd stores about 1/6;
* logs: an append-only application log of 24 MiB; zstd stores about 1/4.

About 220 MiB in all. `--mutate N` applies change round N (~1%, ~3 MiB):
append 1 MiB to the log, rewrite two 1 MiB regions at unaligned offsets of
the largest segment, rewrite a few lines in 12 small files and touch the
modification time of 12 others.

Same seed, same bytes and same mtimes: randomness comes from
random.Random seeded with a string (SHA-512 based, stable across Python
versions) and its randbytes()/random()/choices() methods.

Usage:
  gen_volumes.py --qdrant DIR --extensions DIR --logs DIR [--seed N] [--mutate ROUND]
"""

import argparse
import os
import random

MIB = 1 << 20
EPOCH = 1_700_000_000  # fixed mtimes: the same input gives the same tree
SEGMENTS = [("seg-a", 64), ("seg-b", 48), ("seg-c", 32), ("seg-d", 16)]
N_PACKAGES = 120
FILES_PER_PACKAGE = 25


def rng(seed, *what):
    return random.Random("-".join([str(seed), *map(str, what)]))


def float_like(r, n):
    """n bytes that look like little-endian float32 in [-4, 4]: the top byte
    (sign + exponent) takes one of eight values, as in an embedding matrix."""
    b = bytearray(r.randbytes(n))
    exps = bytes([0x3C, 0x3D, 0x3E, 0x3F, 0xBC, 0xBD, 0xBE, 0xBF] * 32)
    b[3::4] = r.randbytes(n // 4).translate(exps)
    return bytes(b)


def vocabulary(seed):
    r = rng(seed, "vocab")
    syll = ["get", "set", "on", "handle", "render", "parse", "load", "state", "node",
            "item", "value", "config", "update", "event", "token", "buffer", "path",
            "module", "export", "request", "result", "error", "promise", "cache"]
    words = ["".join(r.choice(syll).capitalize() if i else r.choice(syll)
                     for i in range(r.randint(1, 3))) for _ in range(600)]
    shapes = [
        "const {0} = require('./{1}');",
        "function {0}({1}, {2}) {{",
        "  if ({0} === undefined) return {1};",
        "  return {0}.{1}({2});",
        "}}",
        "export function {0}({1}) {{ return {2}; }}",
        "  {0}.{1} = {2} || null;",
        "// {0} {1} {2}: see {0}.{1}",
        "  for (const {0} of {1}) {{ {2}({0}); }}",
        "module.exports = {{ {0}, {1}, {2} }};",
    ]
    lines = [r.choice(shapes).format(r.choice(words), r.choice(words), r.choice(words))
             for _ in range(8000)]
    return [line + "\n" for line in lines]


def text(r, lines, size):
    out, n = [], 0
    while n < size:
        chunk = r.choices(lines, k=64)
        out.extend(chunk)
        n += sum(map(len, chunk))
    return "".join(out).encode()[:size]


def log_lines(seed, round_, size):
    r = rng(seed, "log", round_)
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
    msgs = ["request handled", "cache miss", "search completed", "embedding batch done",
            "connection reset by peer", "retrying upstream", "indexed document",
            "tool call finished", "session started", "session closed"]
    out, n, t = [], 0, EPOCH + round_ * 3600
    while n < size:
        t += r.random()
        line = "%.3f %s [%s] %s id=%08x ms=%d\n" % (
            t, r.choice(levels), r.choice(["api", "worker", "indexer"]),
            r.choice(msgs), r.getrandbits(32), r.randint(1, 900))
        out.append(line)
        n += len(line)
    return "".join(out).encode()


def write(path, data, mtime):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (mtime, mtime))


def segment_path(root, name):
    return os.path.join(root, "collections/code/0/segments", name, "vector_storage/chunk_0.mmap")


def ext_path(root, pkg, i):
    return os.path.join(root, "extensions", "pub.ext-%03d-1.%d.0" % (pkg, pkg % 7),
                        "out" if i % 3 else "dist", "m%02d" % (i // 5), "f%02d.js" % i)


def generate(a):
    for name, mib in SEGMENTS:
        r = rng(a.seed, "segment", name)
        p = segment_path(a.qdrant, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            for _ in range(mib):
                f.write(float_like(r, MIB))
        os.utime(p, (EPOCH, EPOCH))
        meta = '{"version": 1, "segment": "%s", "vectors": %d, "dim": 384}\n' % (name, mib * MIB // 1536)
        write(os.path.join(os.path.dirname(os.path.dirname(p)), "segment.json"), meta.encode(), EPOCH)
    write(os.path.join(a.qdrant, "collections/code/config.json"),
          b'{"params": {"vectors": {"size": 384, "distance": "Cosine"}}}\n', EPOCH)

    lines = vocabulary(a.seed)
    r = rng(a.seed, "extensions")
    for pkg in range(N_PACKAGES):
        root = os.path.dirname(os.path.dirname(os.path.dirname(ext_path(a.extensions, pkg, 0))))
        write(os.path.join(root, "package.json"),
              b'{"name": "ext-%03d", "version": "1.%d.0"}\n' % (pkg, pkg % 7), EPOCH)
        for i in range(FILES_PER_PACKAGE):
            # mostly small files, a few larger ones, like node_modules
            size = int(512 + 40 * 1024 * r.random() ** 3)
            write(ext_path(a.extensions, pkg, i), text(r, lines, size), EPOCH)

    write(os.path.join(a.logs, "app.log"), log_lines(a.seed, 0, 24 * MIB), EPOCH)


def mutate(a):
    n, t = a.mutate, EPOCH + a.mutate * 3600
    r = rng(a.seed, "mutate", n)

    p = os.path.join(a.logs, "app.log")
    with open(p, "ab") as f:
        f.write(log_lines(a.seed, n, MIB))
    os.utime(p, (t, t))

    p = segment_path(a.qdrant, SEGMENTS[0][0])
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        for _ in range(2):
            f.seek(r.randrange(0, size - MIB))  # unaligned on purpose
            f.write(float_like(r, MIB))
    os.utime(p, (t, t))

    lines = vocabulary(a.seed)
    picks = r.sample([(pkg, i) for pkg in range(N_PACKAGES) for i in range(FILES_PER_PACKAGE)], 24)
    for k, (pkg, i) in enumerate(picks):
        p = ext_path(a.extensions, pkg, i)
        if k % 2:
            os.utime(p, (t, t))  # touched, content unchanged
        else:
            with open(p, "rb") as f:
                data = f.read()
            at = r.randrange(0, max(1, len(data) - 200))
            write(p, data[:at] + text(r, lines, 200) + data[at + 200:], t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qdrant", required=True)
    ap.add_argument("--extensions", required=True)
    ap.add_argument("--logs", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutate", type=int, metavar="ROUND")
    a = ap.parse_args()
    if a.mutate is None:
        generate(a)
    else:
        mutate(a)


if __name__ == "__main__":
    main()
