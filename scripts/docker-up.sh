#!/usr/bin/env bash
# Make sure a Docker engine answers. When none does and we are root, start dockerd in
# the background (no bridge, no iptables: enough for volumes, containers and the
# archive API) and print its pid, so the caller can stop what it started.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "cbsnap: no Docker engine answers and we are not root to start one" >&2
  exit 1
fi
log=${DOCKERD_LOG:-/tmp/cbsnap-dockerd.log}
dockerd --bridge=none --iptables=false --ip6tables=false >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    echo "$pid"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
echo "cbsnap: dockerd did not come up; its log ($log) ends with:" >&2
tail -20 "$log" >&2
exit 1
