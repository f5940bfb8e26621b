#!/usr/bin/env python3
"""Write the hostile and odd tars of tests/data/tar_import.rs.

gen.py many N OUT     one directory `big/` holding N empty files (raw ustar headers: fast)
gen.py nested N OUT   N empty files, 100 to a directory, in `n/DDD/DDDD/` (directory entries first)
gen.py deep N OUT     one file below N nested directories `a/a/.../a/f` (a PAX path)
gen.py case NAME OUT  one of the replace/symlink cases below

OUT `-` writes the tar to standard output (many and nested), so a tar of millions
of entries can be piped into `cbsnap snapshot --tar -` without a file on disk.
"""
import contextlib
import io
import sys
import tarfile


def output(out: str):
    """The file to write: `out`, or standard output (not closed) for `-`."""
    if out == "-":
        return contextlib.nullcontext(sys.stdout.buffer)
    return open(out, "wb")


def header(name: bytes, typ: bytes = b"0", size: int = 0) -> bytes:
    mode = b"0000755\0" if typ == b"5" else b"0000644\0"
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = mode
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"14550000000\0"
    h[148:156] = b"        "
    h[156:157] = typ
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def many(n: int, out: str) -> None:
    with output(out) as f:
        f.write(header(b"big/", b"5"))
        for i in range(n):
            f.write(header(b"big/f%07d" % i))
        f.write(b"\0" * 1024)


def nested(n: int, out: str) -> None:
    with output(out) as f:
        f.write(header(b"n/", b"5"))
        for i in range(n):
            if i % 10000 == 0:
                f.write(header(b"n/%03d/" % (i // 10000), b"5"))
            if i % 100 == 0:
                f.write(header(b"n/%03d/%04d/" % (i // 10000, i // 100), b"5"))
            f.write(header(b"n/%03d/%04d/f%07d" % (i // 10000, i // 100, i)))
        f.write(b"\0" * 1024)


def deep(n: int, out: str) -> None:
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        data = b"deep"
        i = tarfile.TarInfo("a/" * n + "f")
        i.size = len(data)
        t.addfile(i, io.BytesIO(data))


CASES = {
    # A directory holding an entry, then a file of its name: tar -x keeps the directory.
    "dir-then-file": [("x/", "d", b""), ("x/kept", "f", b"kept"), ("x", "f", b"file")],
    # An empty directory, then a file of its name: tar -x replaces it.
    "empty-dir-then-file": [("x/", "d", b""), ("x", "f", b"file")],
    # A file, then an entry below its name: tar -x fails on the entry.
    "file-then-below": [("x", "f", b"file"), ("x/y", "f", b"below")],
    # A symlink, then an entry written through it: tar -x writes into the target.
    "symlink-through": [("d/", "d", b""), ("l", "l", b"d"), ("l/f", "f", b"through")],
    # A POSIX ACL, which is not stored: named in the errors.
    "acl": [("a", "f", b"acl")],
    # Through a symlink tar -x does not follow (absolute target).
    "symlink-absolute": [("l", "l", b"/etc"), ("l/f", "f", b"through")],
}


def case(name: str, out: str) -> None:
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        for path, kind, data in CASES[name]:
            i = tarfile.TarInfo(path)
            i.mtime = 1_700_000_000
            if name == "acl":
                i.pax_headers = {"SCHILY.acl.access": "user::rw-,group::r--,mask::r--,other::r--,user:1234:r--"}
            if kind == "d":
                i.type = tarfile.DIRTYPE
                i.mode = 0o755
                t.addfile(i)
            elif kind == "l":
                i.type = tarfile.SYMTYPE
                i.linkname = data.decode()
                t.addfile(i)
            else:
                i.size = len(data)
                t.addfile(i, io.BytesIO(data))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "many":
        many(int(sys.argv[2]), sys.argv[3])
    elif cmd == "nested":
        nested(int(sys.argv[2]), sys.argv[3])
    elif cmd == "deep":
        deep(int(sys.argv[2]), sys.argv[3])
    elif cmd == "case":
        case(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")
