#!/usr/bin/env python3
"""Deterministic benchmark corpus for benches/compare.sh.

The corpus imitates the state of the Code Buddy stack (docs in
/work/shared/CODE_BUDDY_VOLUMES.md) in three parts, so that each part stresses
a different path of a snapshot tool:

* source trees: code-server extensions and two MCP node_modules volumes,
  tens of thousands of small, compressible text files in nested directories.
  The two node_modules trees share most packages byte for byte, as real
  ones do, so whole-file deduplication shows up;
* a live-database-like SQLite file (documents, embeddings, an index) that
  the mutation updates in scattered pages;
* incompressible "model" blobs named like Ollama's `blobs/sha256-<hex>`, of
  which the mutation overwrites a few 1 MiB regions in place.

Same --seed and --scale give the same bytes: randomness comes only from
`random.Random.random()` (the one method Python promises to keep stable
across versions) and from SHAKE-256. The SQLite file is byte-identical only
with the same SQLite library version, since its header records that version.
The script prints a digest of the tree (paths, types, contents, link
targets) so runs can be compared.

Usage:
  gen_corpus.py --out DIR [--seed N] [--scale F]    generate (DIR must not exist)
  gen_corpus.py --out DIR --mutate [--round N] ...  apply mutation round N in place
  gen_corpus.py --out DIR --digest                  only print the digest
"""

import argparse
import array
import hashlib
import json
import os
import random
import sqlite3
import sys

KiB = 1 << 10
MiB = 1 << 20

# Sizes at --scale 1 (~1 GiB in total). Everything scales linearly.
PACKAGES = 420          # packages in mcp-github-node_modules
SHARED_FRACTION = 0.7   # of those, also in mcp-gitlab-node_modules
EXTENSIONS = 30         # code-server extensions
DOC_ROWS = 60_000       # SQLite documents (+ one embedding each)
BLOB_SIZES = (300 * MiB, 180 * MiB, 120 * MiB)
EMBED_DIM = 384

# Mutation, per round.
MUTATE_FILES = 0.01     # fraction of source-tree files edited in place
ADD_FILES = 0.002       # fraction added as new files
DELETE_FILES = 0.002    # fraction deleted
UPDATE_ROWS = 0.01      # fraction of documents rewritten
INSERT_ROWS = 0.005     # fraction of new documents
BLOB_REGIONS = 4        # 1 MiB regions overwritten in the largest blob

EPOCH = 1_700_000_000


class Rng:
    """A PRNG stream named by labels, built only on `random()`."""

    def __init__(self, *labels):
        h = hashlib.sha256("\x00".join(map(str, labels)).encode()).digest()
        self.random = random.Random(int.from_bytes(h, "big")).random

    def below(self, n):
        return int(self.random() * n)

    def between(self, lo, hi):
        """Integer in [lo, hi]."""
        return lo + int(self.random() * (hi - lo + 1))

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]

    def log_uniform(self, lo, hi):
        return int(lo * (hi / lo) ** self.random())

    def sample(self, seq, k):
        """k distinct items of seq, in seq order (partial Fisher-Yates)."""
        idx = list(range(len(seq)))
        k = min(k, len(idx))
        for i in range(k):
            j = i + int(self.random() * (len(idx) - i))
            idx[i], idx[j] = idx[j], idx[i]
        return [seq[i] for i in sorted(idx[:k])]


def shake(n, *labels):
    """n pseudo-random bytes named by labels (fast, C speed)."""
    return hashlib.shake_256("\x00".join(map(str, labels)).encode()).digest(n)


# ---------------------------------------------------------------- text ----

SYLLABLES = ("ba be bi bo bu ca ce co cu da de di do du fa fe fi fo ga ge go "
             "ha he hi ho ja jo ka ke ki ko la le li lo lu ma me mi mo mu na "
             "ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te "
             "ti to tu va ve vi vo wa we wi xa yo za ze zo an en in on un ar "
             "er ir or ur al el il ol st tr pl gr ch sh th").split()
KEYWORDS = ("the a of to and in is for on with that this by from as be are "
            "if or not it value options data object string number array "
            "function return callback error result type default config "
            "module export import node buffer stream path file request").split()
TYPES = ("string number boolean void unknown any object Buffer Promise<void> "
         "Record<string, unknown> string[] number[] Error").split()

JS_LINES = (
    "const {a} = require('{m}');",
    "import {{ {a}, {b} }} from '{m}';",
    "'use strict';",
    "",
    "function {a}({b}, {c}) {{",
    "  if ({b} == null) {{",
    "    return {c};",
    "  }}",
    "  const {a} = {b}.{c}({n});",
    "  let {a} = {n};",
    "  for (let i = 0; i < {b}.length; i++) {{",
    "    {a}[i] = {c}({b}[i], {n});",
    "  }}",
    "  return {a};",
    "}}",
    "// {s}",
    "/**",
    " * {s}",
    " * @param {{{t}}} {a} {s}",
    " * @returns {{{t}}}",
    " */",
    "exports.{a} = {a};",
    "module.exports.{a} = {b};",
    "  throw new TypeError('{s}');",
    "  {a}: '{w}',",
    "  {a}: {n},",
    "  {a}.{b} = {c};",
    "  if (typeof {a} !== 'function') {{ {a} = {b}; }}",
    "  return Object.assign({{}}, {a}, {{ {b}: {c} }});",
    "  }} catch (err) {{",
    "    {a}(err);",
    "  }}",
    "  await {a}.{b}({c}, {{ {w}: {n} }});",
)
DTS_LINES = (
    "export declare function {a}({b}: {t}, {c}?: {t}): {t};",
    "export interface {A} {{",
    "  {a}: {t};",
    "  {b}?: {t};",
    "}}",
    "/** {s} */",
    "export type {A} = {t} | {t};",
    "declare const {a}: {A};",
    "export default {a};",
)
MIT = """MIT License

Copyright (c) {year} {author}

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""
# Maps random bytes onto the source-map VLQ alphabet plus separators.
VLQ = bytes(
    (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/,,;")
    [i % 67] for i in range(256))


class Text:
    """Realistic-ish source text from a seeded vocabulary."""

    def __init__(self, seed):
        rng = Rng(seed, "vocab")
        words = set()
        while len(words) < 4000:
            words.add("".join(rng.choice(SYLLABLES)
                              for _ in range(rng.between(1, 4))))
        self.words = sorted(words) + KEYWORDS * 20

    def ident(self, rng, cap=False):
        parts = [rng.choice(self.words) for _ in range(rng.between(1, 3))]
        s = parts[0] + "".join(p.capitalize() for p in parts[1:])
        return s.capitalize() if cap else s

    def sentence(self, rng, lo=4, hi=14):
        r, words, n = rng.random, self.words, len(self.words)
        return " ".join([words[int(r() * n)] for _ in range(rng.between(lo, hi))])

    def code(self, rng, target, templates, idents, mods):
        """Lines from templates until `target` bytes; `idents` is the
        per-package vocabulary, so a file repeats its own names as code does.
        (The hot loop of the generator, hence the local names.)"""
        r, words, ni, nt = rng.random, self.words, len(idents), len(templates)
        out, size = [], 0
        while size < target:
            t = templates[int(r() * nt)]
            line = t.format(
                a=idents[int(r() * ni)], b=idents[int(r() * ni)],
                c=idents[int(r() * ni)], A=idents[int(r() * ni)].capitalize(),
                m=mods[int(r() * len(mods))], n=int(r() * 10_000),
                w=words[int(r() * len(words))], t=TYPES[int(r() * len(TYPES))],
                s=self.sentence(rng) if "{s}" in t else "")
            out.append(line)
            size += len(line) + 1
        return "\n".join(out) + "\n"

    def markdown(self, rng, target, title):
        out, size = [f"# {title}", ""], 0
        while size < target:
            r = rng.random()
            if r < 0.1:
                block = "## " + self.sentence(rng, 2, 5).capitalize()
            elif r < 0.2:
                block = "```js\n" + "\n".join(
                    f"const {self.ident(rng)} = {self.ident(rng)}({rng.below(100)});"
                    for _ in range(rng.between(2, 6))) + "\n```"
            elif r < 0.3:
                block = "\n".join("- " + self.sentence(rng, 3, 9)
                                  for _ in range(rng.between(2, 6)))
            else:
                block = ". ".join(self.sentence(rng).capitalize()
                                  for _ in range(rng.between(2, 6))) + "."
            out += [block, ""]
            size += len(block) + 1
        return "\n".join(out) + "\n"

    def source_map(self, rng, target, name):
        head = json.dumps({"version": 3, "file": name,
                           "sources": [f"../src/{name[:-3]}.ts"],
                           "names": [self.ident(rng) for _ in range(40)]})
        body = shake(max(target - len(head), 64), rng.random()).translate(VLQ)
        return head[:-1] + ',"mappings":"' + body.decode() + '"}\n'


# ------------------------------------------------------------ packages ----

def package_id(text, seed, i):
    rng = Rng(seed, "pkgname", i)
    name = "-".join(rng.choice(text.words) for _ in range(rng.between(1, 2)))
    if rng.random() < 0.15:
        name = f"@{rng.choice(text.words)}/{name}"
    return f"{name}@{rng.between(0, 9)}.{rng.between(0, 30)}.{rng.between(0, 20)}"


def package_files(text, seed, pkg):
    """{relative path: (content, mode)} of one npm package. Depends only on
    (seed, pkg), so a package used in several trees is byte-identical."""
    rng = Rng(seed, "pkg", pkg)
    name, version = pkg.rsplit("@", 1)
    idents = [text.ident(rng) for _ in range(rng.between(20, 80))]
    mods = ["fs", "path", "util", "events", "stream", "crypto"] + \
           [text.ident(rng).lower() for _ in range(6)]
    files = {}
    manifest = {"name": name, "version": version,
                "description": text.sentence(rng), "main": "lib/index.js",
                "license": "MIT", "dependencies": {
                    m: f"^{rng.below(9)}.{rng.below(20)}.0" for m in mods[6:9]}}
    has_bin = rng.random() < 0.1
    if has_bin:
        manifest["bin"] = {name.split("/")[-1]: "bin/cli.js"}
    files["package.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n", 0o644)
    files["LICENSE"] = (MIT.format(year=rng.between(2012, 2024),
                                   author=text.sentence(rng, 2, 3).title()), 0o644)
    files["README.md"] = (text.markdown(rng, rng.log_uniform(KiB, 30 * KiB), name), 0o644)
    if has_bin:
        files["bin/cli.js"] = ("#!/usr/bin/env node\n" + text.code(
            rng, rng.log_uniform(KiB, 8 * KiB), JS_LINES, idents, mods), 0o755)
    dirs = ["lib"] + [f"lib/{text.ident(rng).lower()}" for _ in range(rng.between(0, 3))]
    dirs += [d + "/" + text.ident(rng).lower() for d in dirs[1:] if rng.random() < 0.4]
    for _ in range(rng.between(2, 35)):
        d = rng.choice(dirs)
        base = f"{d}/{text.ident(rng)}"
        r = rng.random()
        if r < 0.65:
            files[base + ".js"] = (text.code(rng, rng.log_uniform(KiB, 50 * KiB),
                                             JS_LINES, idents, mods), 0o644)
        elif r < 0.9:
            files[base + ".d.ts"] = (text.code(rng, rng.log_uniform(KiB, 20 * KiB),
                                               DTS_LINES, idents, mods), 0o644)
        else:
            files[base + ".js.map"] = (text.source_map(
                rng, rng.log_uniform(2 * KiB, 50 * KiB), base.rsplit("/", 1)[1] + ".js"), 0o644)
    files["lib/index.js"] = (text.code(rng, rng.log_uniform(KiB, 10 * KiB),
                                       JS_LINES, idents, mods), 0o644)
    return files


def write_file(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)


def write_node_modules(text, seed, root, pkgs):
    for pkg in pkgs:
        name = pkg.rsplit("@", 1)[0]
        files = package_files(text, seed, pkg)
        for rel, (data, mode) in files.items():
            write_file(os.path.join(root, name, rel), data, mode)
        if "bin/cli.js" in files:
            os.makedirs(os.path.join(root, ".bin"), exist_ok=True)
            link = os.path.join(root, ".bin", name.split("/")[-1])
            if not os.path.lexists(link):
                os.symlink(f"../{name}/bin/cli.js", link)


def gen_source_trees(text, seed, out, scale):
    n = max(6, round(PACKAGES * scale))
    pool = [package_id(text, seed, i) for i in range(n * 2)]
    pool = sorted(set(pool), key=pool.index)  # dedupe names, keep order
    github = pool[:n]
    shared = github[:round(n * SHARED_FRACTION)]
    gitlab = shared + pool[n:n + n - len(shared)]
    write_node_modules(text, seed, os.path.join(out, "mcp-github-node_modules"), github)
    write_node_modules(text, seed, os.path.join(out, "mcp-gitlab-node_modules"), gitlab)

    ext_root = os.path.join(out, "code-server-extensions")
    index = []
    for e in range(max(2, round(EXTENSIONS * scale))):
        rng = Rng(seed, "ext", e)
        ident = f"{rng.choice(text.words)}.{text.ident(rng).lower()}"
        version = f"{rng.between(0, 3)}.{rng.between(0, 40)}.{rng.between(0, 9)}"
        d = os.path.join(ext_root, f"{ident}-{version}")
        index.append({"identifier": {"id": ident}, "version": version,
                      "relativeLocation": f"{ident}-{version}"})
        idents = [text.ident(rng) for _ in range(60)]
        mods = ["vscode", "path", "fs"] + [text.ident(rng).lower() for _ in range(5)]
        write_file(os.path.join(d, "package.json"), json.dumps(
            {"name": ident.split(".")[1], "publisher": ident.split(".")[0],
             "version": version, "engines": {"vscode": "^1.80.0"},
             "main": "./out/extension.js",
             "contributes": {"commands": [{"command": f"{ident}.{w}", "title": w}
                                          for w in idents[:10]]}},
            indent=2, sort_keys=True) + "\n")
        write_file(os.path.join(d, "README.md"), text.markdown(rng, rng.log_uniform(2 * KiB, 40 * KiB), ident))
        write_file(os.path.join(d, "CHANGELOG.md"), text.markdown(rng, rng.log_uniform(KiB, 30 * KiB), "Changelog"))
        subdirs = ["out"] + [f"out/{text.ident(rng).lower()}" for _ in range(rng.between(2, 6))]
        subdirs += [s + "/" + text.ident(rng).lower() for s in subdirs[1:] if rng.random() < 0.5]
        for _ in range(rng.between(20, 120)):
            base = f"{rng.choice(subdirs)}/{text.ident(rng)}"
            write_file(os.path.join(d, base + ".js"),
                       text.code(rng, rng.log_uniform(KiB, 50 * KiB), JS_LINES, idents, mods))
            if rng.random() < 0.3:
                write_file(os.path.join(d, base + ".js.map"),
                           text.source_map(rng, rng.log_uniform(2 * KiB, 50 * KiB), base + ".js"))
        # Extensions bundle some of the same npm packages as the MCP servers.
        write_node_modules(text, seed, os.path.join(d, "node_modules"),
                           rng.sample(pool, rng.between(0, 8)))
    write_file(os.path.join(ext_root, "extensions.json"), json.dumps(index, indent=1) + "\n")


# -------------------------------------------------------------- sqlite ----

SQLITE_REL = "indexer-data/index.sqlite3"


def doc_row(text, seed, i, label="doc"):
    rng = Rng(seed, label, i)
    repo = f"{rng.choice(text.words)}/{rng.choice(text.words)}"
    path = "/".join(text.ident(rng).lower() for _ in range(rng.between(1, 4))) + \
        rng.choice((".py", ".ts", ".js", ".rs", ".go", ".md"))
    body = ". ".join(text.sentence(rng) for _ in range(rng.between(4, 20)))
    vec = array.array("f", (rng.random() * 2 - 1 for _ in range(EMBED_DIM)))
    if sys.byteorder != "little":
        vec.byteswap()
    return (repo, path, path.rsplit(".", 1)[1], body, EPOCH + i * 7), vec.tobytes()


def gen_sqlite(text, seed, out, scale):
    path = os.path.join(out, SQLITE_REL)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript("""
        PRAGMA journal_mode = DELETE;
        PRAGMA page_size = 4096;
        CREATE TABLE documents(id INTEGER PRIMARY KEY, repo TEXT NOT NULL,
            path TEXT NOT NULL, lang TEXT NOT NULL, body TEXT NOT NULL,
            updated_at INTEGER NOT NULL);
        CREATE TABLE embeddings(doc_id INTEGER PRIMARY KEY REFERENCES documents(id),
            model TEXT NOT NULL, vector BLOB NOT NULL);
        -- Created before the inserts, so its pages interleave as in a live DB.
        CREATE INDEX documents_repo_path ON documents(repo, path);
    """)
    db.execute("BEGIN")
    for i in range(1, max(100, round(DOC_ROWS * scale)) + 1):
        row, vec = doc_row(text, seed, i)
        db.execute("INSERT INTO documents VALUES (?,?,?,?,?,?)", (i,) + row)
        db.execute("INSERT INTO embeddings VALUES (?,?,?)", (i, "nomic-embed-text", vec))
    db.execute("COMMIT")
    db.close()


def mutate_sqlite(text, seed, out, rnd):
    db = sqlite3.connect(os.path.join(out, SQLITE_REL), isolation_level=None)
    (n,) = db.execute("SELECT max(id) FROM documents").fetchone()
    rng = Rng(seed, "mutate-sql", rnd)
    db.execute("BEGIN")
    for i in rng.sample(range(1, n + 1), max(1, round(n * UPDATE_ROWS))):
        row, vec = doc_row(text, seed, i, f"doc-update-{rnd}")
        db.execute("UPDATE documents SET body = ?, updated_at = ? WHERE id = ?",
                   (row[3], EPOCH + 10**8 + i, i))
        db.execute("UPDATE embeddings SET vector = ? WHERE doc_id = ?", (vec, i))
    for i in range(n + 1, n + 1 + max(1, round(n * INSERT_ROWS))):
        row, vec = doc_row(text, seed, i, f"doc-insert-{rnd}")
        db.execute("INSERT INTO documents VALUES (?,?,?,?,?,?)", (i,) + row)
        db.execute("INSERT INTO embeddings VALUES (?,?,?)", (i, "nomic-embed-text", vec))
    db.execute("COMMIT")
    db.close()


# --------------------------------------------------------------- blobs ----

def gen_blobs(seed, out, scale):
    models = os.path.join(out, "ollama", "models")
    blobs = os.path.join(models, "blobs")
    os.makedirs(blobs, exist_ok=True)
    for b, full in enumerate(BLOB_SIZES):
        size = max(4 * MiB, round(full * scale))
        tmp = os.path.join(blobs, "partial")
        h = hashlib.sha256()
        with open(tmp, "wb") as f:
            for off in range(0, size, MiB):
                piece = shake(min(MiB, size - off), seed, "blob", b, off)
                h.update(piece)
                f.write(piece)
        digest = h.hexdigest()
        os.rename(tmp, os.path.join(blobs, f"sha256-{digest}"))
        write_file(os.path.join(models, "manifests", "registry.ollama.ai", "library",
                                f"model{b}", "latest"),
                   json.dumps({"schemaVersion": 2, "layers": [
                       {"mediaType": "application/vnd.ollama.image.model",
                        "digest": f"sha256:{digest}", "size": size}]}) + "\n")


def mutate_blob(seed, out, rnd):
    blobs = os.path.join(out, "ollama", "models", "blobs")
    names = sorted(os.listdir(blobs))
    target = max(names, key=lambda n: (os.path.getsize(os.path.join(blobs, n)), n))
    path = os.path.join(blobs, target)
    size = os.path.getsize(path)
    rng = Rng(seed, "mutate-blob", rnd)
    with open(path, "r+b") as f:
        # One region per equal slice of the file, at an unaligned offset.
        for r in range(BLOB_REGIONS):
            lo, hi = r * size // BLOB_REGIONS, (r + 1) * size // BLOB_REGIONS - MiB
            f.seek(lo + rng.below(max(1, hi - lo)))
            f.write(shake(MiB, seed, "blob-mutation", rnd, r))


# ---------------------------------------------------------- mutation -----

SOURCE_TREES = ("code-server-extensions", "mcp-github-node_modules", "mcp-gitlab-node_modules")


def source_files(out):
    files = []
    for tree in SOURCE_TREES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(out, tree)):
            dirnames.sort()
            for name in sorted(filenames):
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    files.append(p)
    return files


def mutate_sources(text, seed, out, rnd):
    files = source_files(out)
    rng = Rng(seed, "mutate-src", rnd)
    idents = [text.ident(rng) for _ in range(40)]
    mods = ["fs", "path"]
    for p in rng.sample(files, max(1, round(len(files) * MUTATE_FILES))):
        with open(p, encoding="utf-8") as f:
            lines = f.read().split("\n")
        # Replace a few lines somewhere in the file and append a few,
        # as an edit or a package update would.
        at = rng.below(len(lines))
        new = text.code(rng, rng.between(80, 2 * KiB), JS_LINES, idents, mods).split("\n")
        lines[at:at + rng.between(0, 10)] = new
        with open(p, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
    for p in rng.sample(files, max(1, round(len(files) * DELETE_FILES))):
        os.unlink(p)
    for k, p in enumerate(rng.sample(files, max(1, round(len(files) * ADD_FILES)))):
        new = os.path.join(os.path.dirname(p), f"added-{rnd}-{k}.js")
        write_file(new, text.code(rng, rng.log_uniform(KiB, 50 * KiB), JS_LINES, idents, mods))


# ------------------------------------------------------------- digest ----

def digest(out):
    """SHA-256 over (path, type, content hash or link target) in path order."""
    h = hashlib.sha256()
    files = total = 0
    for dirpath, dirnames, filenames in os.walk(out):
        dirnames.sort()
        rel = os.path.relpath(dirpath, out)
        h.update(f"d\x00{rel}\x00".encode())
        entries = sorted(filenames) + sorted(d for d in dirnames
                                             if os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(entries):
            p = os.path.join(dirpath, name)
            r = os.path.normpath(os.path.join(rel, name))
            if os.path.islink(p):
                h.update(f"l\x00{r}\x00{os.readlink(p)}\x00".encode())
                continue
            fh = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(MiB):
                    fh.update(chunk)
                    total += len(chunk)
            files += 1
            h.update(f"f\x00{r}\x00{fh.hexdigest()}\x00".encode())
    return h.hexdigest(), files, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="corpus directory")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 is about 1 GiB")
    ap.add_argument("--mutate", action="store_true", help="mutate an existing corpus in place")
    ap.add_argument("--round", type=int, default=1, help="mutation round (default 1)")
    ap.add_argument("--digest", action="store_true", help="only print the digest")
    args = ap.parse_args()
    if args.scale <= 0:
        ap.error("--scale must be positive")

    text = Text(args.seed)
    if args.mutate:
        if not os.path.isdir(args.out):
            ap.error(f"{args.out} does not exist; generate it first")
        mutate_sources(text, args.seed, args.out, args.round)
        mutate_sqlite(text, args.seed, args.out, args.round)
        mutate_blob(args.seed, args.out, args.round)
    elif not args.digest:
        if os.path.exists(args.out):
            ap.error(f"{args.out} exists; remove it first (generation is not incremental)")
        os.makedirs(args.out)
        gen_source_trees(text, args.seed, args.out, args.scale)
        gen_sqlite(text, args.seed, args.out, args.scale)
        gen_blobs(args.seed, args.out, args.scale)
    d, files, total = digest(args.out)
    print(f"digest={d} files={files} bytes={total}")


if __name__ == "__main__":
    main()
