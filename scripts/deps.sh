#!/usr/bin/env bash
# Install what building cbsnap needs on Debian, and with --test what testing it needs
# (as root; a no-op when everything is present). Run by scripts/test.sh and scripts/install.sh.
set -euo pipefail

need=()
# tar, libarchive-tools (bsdtar), busybox and python3 build the tar import corpus
# (tests/tar/corpus.sh); attr sets its xattrs; libcap2-bin (setcap) the capability test;
# with --test also what the test servers need (scripts/test-servers.sh): sshd, ssh,
# python3-venv for moto, procps (pkill).
pkgs=(librocksdb-dev libclang-dev clang pkg-config docker.io busybox-static rsync attr zstd util-linux fuse3 tar libarchive-tools python3 libcap2-bin)
test_deps=false
[ "${1:-}" = --test ] && test_deps=true
$test_deps && pkgs+=(openssh-server openssh-client python3-venv procps)
for pkg in "${pkgs[@]}"; do
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
$test_deps || exit 0
# The S3 test server: moto from PyPI, in its own venv (scripts/test-servers.sh).
venv=${CBSNAP_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cbsnap/moto-venv}
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "cbsnap: installing moto[server] into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'moto[server]'
fi
