#!/usr/bin/env bash
# Build the tar import corpus in $1: tars written by GNU tar, bsdtar (libarchive-tools),
# busybox tar and Python's tarfile, covering long names and link targets, every GNU
# sparse dialect, PAX xattrs, hard links, repeated paths, and times of any sign and
# precision and large ids. Run by tests/data/tar_import.rs; tools from scripts/deps.sh.
set -euo pipefail
out=$1
mkdir -p "$out"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cd "$src"
long=$(printf 'n%.0s' $(seq 1 150))
mkdir -p "d/$long/deeper" e
printf 'hello\n' > "d/$long/deeper/file-with-a-long-path-$long"
printf 'x%.0s' $(seq 1 3000) > d/text
ln d/text d/hardlink
ln -s "d/$long/deeper/file-with-a-long-path-$long" longlink
ln -s text d/rel
truncate -s 5M sparse
printf 'mid' | dd of=sparse bs=1 seek=2000000 conv=notrunc status=none
printf 'end' | dd of=sparse bs=1 seek=5000000 conv=notrunc status=none
setfattr -n user.note -v "a value" d/text 2>/dev/null || true
touch -d '1969-07-20 20:17:40.5' e/old
touch -d '2038-01-19 03:14:08.123456789' e/future
chown 4000000000:3000000000 e/old 2>/dev/null || true
files=(d e longlink sparse)

tar --format=posix --xattrs --xattrs-include='*' -cf "$out/gnu-posix.tar" "${files[@]}"
tar --format=gnu -cf "$out/gnu-gnu.tar" "${files[@]}"
for v in 0.0 0.1 1.0; do
  tar --sparse --format=posix --sparse-version=$v -cf "$out/gnu-sparse-$v.tar" sparse d/text
done
tar --sparse --format=gnu -cf "$out/gnu-sparse-old.tar" sparse d/text
bsdtar --format=pax -cf "$out/bsdtar-pax.tar" "${files[@]}"
bsdtar --format=gnutar -cf "$out/bsdtar-gnutar.tar" d e longlink
busybox tar -cf "$out/busybox.tar" d e sparse longlink
python3 - "$out/python.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, data=b"", **kw):
        i = tarfile.TarInfo(name)
        for k, v in kw.items():
            setattr(i, k, v)
        if i.type == tarfile.REGTYPE:
            i.size = len(data)
        t.addfile(i, io.BytesIO(data) if data else None)
    add("p/", type=tarfile.DIRTYPE, mode=0o750, mtime=1_700_000_000)
    add("p/a", b"first", mode=0o640, mtime=-86399.25)
    add("p/a", b"second wins", mode=0o600, mtime=1_700_000_000.123456789)
    add("p/big-ids", b"ids", uid=4_000_000_000, gid=3_999_999_999, uname="u" * 40, gname="g" * 40)
    add("p/x", b"xattr", pax_headers={"SCHILY.xattr.user.k": "v1", "SCHILY.xattr.user.other": "v2"})
    add("p/" + "L" * 250, b"long name")
    add("p/sl", type=tarfile.SYMTYPE, linkname="T" * 300)
    add("p/hl", type=tarfile.LNKTYPE, linkname="p/x")
    add("p/special-fifo", type=tarfile.FIFOTYPE)
PY
