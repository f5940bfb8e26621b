#!/usr/bin/env python3
"""Writes tar_source-4 (about 170 KB gzip, too big to keep in the repository).

One file carries 65 537 distinct SCHILY.xattr.* PAX records. read_tar yields them
all, and tree::encode writes the count as `len() as u16`, which is 1. The tree is
therefore corrupt, yet `cbsnap snapshot --tar` exits 0. A later `cbsnap ls` fails
with "malformed tree: content count ... does not fit".

    python3 regressions/tar_source-4.py > /tmp/tar_source-4
    cargo fuzz run tar_source /tmp/tar_source-4
"""
import gzip
import io
import sys
import tarfile

buf = io.BytesIO()
tf = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
ti = tarfile.TarInfo("f")
ti.pax_headers = {"SCHILY.xattr.k%d" % i: "" for i in range(65537)}
tf.addfile(ti, io.BytesIO(b""))
end = tf.offset
tf.close()
sys.stdout.buffer.write(gzip.compress(buf.getvalue()[: end + 1024], 9))
