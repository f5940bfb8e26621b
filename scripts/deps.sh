#!/usr/bin/env bash
# Install what building and testing cbsnap needs on Debian (as root; a no-op when
# everything is present). Sourced by scripts/test.sh and scripts/backup.sh.
set -euo pipefail

need=()
# tar, libarchive-tools (bsdtar), busybox and python3 build the tar import corpus
# (tests/tar/corpus.sh); attr sets its xattrs; libcap2-bin (setcap) the capability test.
for pkg in librocksdb-dev libclang-dev clang pkg-config docker.io busybox-static rsync attr zstd util-linux fuse3 tar libarchive-tools python3 libcap2-bin; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "cbsnap: missing Debian packages: ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "cbsnap: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cbsnap: cargo not found; install Rust (rustup) first" >&2; exit 1; }
