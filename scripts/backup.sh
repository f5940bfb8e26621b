#!/usr/bin/env bash
# The nightly job: install build dependencies, build and install cbsnap, create the
# repository if needed, and snapshot every volume of the compose project plus the
# host paths of the config (~/.ollama by default). Run as root from cron or a
# systemd timer; extra arguments go to `cbsnap snapshot --all` (e.g. --exclude '*-cache').
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
if ! docker info >/dev/null 2>&1; then
  echo "cbsnap: warning: no Docker engine answers; only host paths will be saved (start it: systemctl start docker)" >&2
fi
cargo build --release
install -m 0755 target/release/cbsnap /usr/local/bin/cbsnap

repo=${CBSNAP_REPO:-${XDG_DATA_HOME:-$HOME/.local/share}/cbsnap/repo}
export CBSNAP_REPO=$repo
if [ ! -e "$repo/config" ]; then
  cbsnap init
fi
status=0
cbsnap snapshot --all "$@" || status=$?
cbsnap snapshots
exit "$status"
