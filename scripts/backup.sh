#!/usr/bin/env bash
# The main job, run as root (no sudo needed): install cbsnap if it is not installed
# yet (scripts/install.sh: dependencies, build, completions, man pages, the nightly
# timer), start the Docker engine if it is installed but not running, create the
# repository if there is none, and snapshot every volume of the compose project plus
# the host paths of the config (~/.ollama by default). Extra arguments go to
# `cbsnap snapshot --all` (e.g. --exclude '*-cache'); `--install` first reinstalls
# (after updating the source). It never rebuilds otherwise: the nightly run is just
# `cbsnap snapshot --all` (cbsnap.timer or /etc/cron.d/cbsnap).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CBSNAP_PREFIX:-/usr/local}/bin/cbsnap
if [ "${1:-}" = --install ] || [ ! -x "$bin" ]; then
  [ "${1:-}" = --install ] && shift
  scripts/install.sh
fi
scripts/docker-start.sh || echo "cbsnap: warning: no Docker engine; only host paths will be saved" >&2

repo=${CBSNAP_REPO:-}
if [ -z "$repo" ] && [ -r /etc/default/cbsnap ]; then
  repo=$(. /etc/default/cbsnap && echo "${CBSNAP_REPO:-}")
fi
repo=${repo:-${XDG_DATA_HOME:-$HOME/.local/share}/cbsnap/repo}
export CBSNAP_REPO=$repo
if [ ! -e "$repo/config" ]; then
  "$bin" init
fi
status=0
"$bin" snapshot --all "$@" || status=$?
"$bin" snapshots
exit "$status"
