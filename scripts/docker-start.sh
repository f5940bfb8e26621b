#!/usr/bin/env bash
# Make sure the Docker engine is running, started the way this machine starts
# services: `systemctl start docker` when systemd runs, else `service docker start`
# when there is an init script, else it says exactly what to run. Exit 0 when the
# engine answers, 1 (with the reason on stderr) when it does not.
# Tests point CBSNAP_SYSTEMD_DIR / CBSNAP_INITD_DIR elsewhere to take either path.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v docker >/dev/null 2>&1; then
  echo "cbsnap: Docker is not installed (apt-get install docker.io); only host paths can be saved" >&2
  exit 1
fi
systemd_dir=${CBSNAP_SYSTEMD_DIR:-/run/systemd/system}
initd_dir=${CBSNAP_INITD_DIR:-/etc/init.d}
if [ -d "$systemd_dir" ] && command -v systemctl >/dev/null 2>&1; then
  how=(systemctl start docker)
elif command -v service >/dev/null 2>&1 && [ -e "$initd_dir/docker" ]; then
  how=(service docker start)
else
  echo "cbsnap: the Docker engine is not running and this machine has no service manager to start it; start it with: dockerd >/var/log/dockerd.log 2>&1 &" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "cbsnap: the Docker engine is not running; start it as root: ${how[*]}" >&2
  exit 1
fi
echo "cbsnap: the Docker engine is not running; starting it: ${how[*]}" >&2
if ! "${how[@]}"; then
  echo "cbsnap: \`${how[*]}\` failed; see \`journalctl -u docker\` or /var/log/docker.log" >&2
  exit 1
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "cbsnap: \`${how[*]}\` ran but the engine does not answer after 60 s; see \`journalctl -u docker\` or /var/log/docker.log" >&2
exit 1
