#!/usr/bin/env bash
# Install cbsnap once (as root; no sudo needed): the build dependencies, a release
# build, /usr/local/bin/cbsnap, shell completions (bash, zsh, fish), man pages, and
# the nightly run: the systemd timer cbsnap.timer when systemd runs, else
# /etc/cron.d/cbsnap. The repository of the nightly run is set in
# /etc/default/cbsnap (CBSNAP_REPO, written once, from $CBSNAP_REPO when it is set).
# Run it again after updating the source; the nightly run itself never builds.
#
# CBSNAP_BIN=FILE installs that binary instead of building; CBSNAP_DESTDIR=DIR
# installs under DIR and starts nothing (packaging, tests).
set -euo pipefail
cd "$(dirname "$0")/.."

dest=${CBSNAP_DESTDIR:-}
prefix=${CBSNAP_PREFIX:-/usr/local}
if [ -z "$dest" ] && [ "$(id -u)" -ne 0 ]; then
  echo "cbsnap: run scripts/install.sh as root (\`su -c scripts/install.sh\`, or with sudo where it is installed)" >&2
  exit 1
fi
bin=${CBSNAP_BIN:-}
if [ -z "$bin" ]; then
  scripts/deps.sh
  cargo build --release --locked
  bin=${CARGO_TARGET_DIR:-target}/release/cbsnap
fi

install -D -m 0755 "$bin" "$dest$prefix/bin/cbsnap"
mkdir -p "$dest/usr/share/bash-completion/completions" "$dest/usr/share/zsh/vendor-completions" \
  "$dest/usr/share/fish/vendor_completions.d"
"$bin" completions bash >"$dest/usr/share/bash-completion/completions/cbsnap"
"$bin" completions zsh >"$dest/usr/share/zsh/vendor-completions/_cbsnap"
"$bin" completions fish >"$dest/usr/share/fish/vendor_completions.d/cbsnap.fish"
"$bin" man "$dest$prefix/share/man/man1"

mkdir -p "$dest/etc/default"
if [ ! -e "$dest/etc/default/cbsnap" ]; then
  # Unset, cbsnap takes `repo` of /etc/cbsnap/config.toml, else /root/.local/share/cbsnap/repo.
  line="#CBSNAP_REPO=/srv/backup/cbsnap"
  [ -n "${CBSNAP_REPO:-}" ] && line="CBSNAP_REPO=$CBSNAP_REPO"
  printf '# The repository of the nightly cbsnap run (cbsnap.service, /etc/cron.d/cbsnap).\n%s\n' "$line" \
    >"$dest/etc/default/cbsnap"
fi

systemd_dir=${CBSNAP_SYSTEMD_DIR:-/run/systemd/system}
if [ -d "$systemd_dir" ] && command -v systemctl >/dev/null 2>&1; then
  install -D -m 0644 contrib/systemd/cbsnap.service "$dest/etc/systemd/system/cbsnap.service"
  install -D -m 0644 contrib/systemd/cbsnap.timer "$dest/etc/systemd/system/cbsnap.timer"
  if [ -z "$dest" ]; then
    systemctl daemon-reload
    systemctl enable --now cbsnap.timer
  fi
  echo "cbsnap: installed $dest$prefix/bin/cbsnap; nightly run: cbsnap.timer (systemctl list-timers cbsnap.timer)" >&2
else
  install -D -m 0644 contrib/cron/cbsnap "$dest/etc/cron.d/cbsnap"
  echo "cbsnap: installed $dest$prefix/bin/cbsnap; nightly run: /etc/cron.d/cbsnap (no systemd here)" >&2
fi
