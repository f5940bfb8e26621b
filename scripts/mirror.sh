#!/bin/sh
# Mirror a cbsnap repository with rsync, by hand: what `cbsnap mirror --delete` does.
# Run it under the repository lock, which keeps prune away and sets $CBSNAP_REPO:
#
#   cbsnap --repo /srv/backup/cbsnap with-lock -- sh scripts/mirror.sh MIRROR [RSYNC_ARGS...]
#
# MIRROR is a directory or rsync's host:path. See docs/MIRROR.md for why the order of
# the steps matters; interrupted anywhere, the mirror holds at most orphans. Unlike
# `cbsnap mirror`, this script does not check the repository first: run `cbsnap check`
# before it, and never run it with --delete semantics on a damaged repository.
set -eu
REPO="${CBSNAP_REPO:?run this under: cbsnap --repo REPO with-lock -- sh $0 MIRROR}"
MIRROR="${1:?usage: cbsnap with-lock -- sh $0 MIRROR [RSYNC_ARGS...]}"
shift
LIST=$(mktemp)
trap 'rm -f "$LIST"' EXIT

# 1. The snapshots that exist now: every pack they reference exists now too.
ls "$REPO/snapshots" | sed -n 's|^\([0-9a-f]\{64\}\)$|snapshots/\1|p' > "$LIST"

# 2. Snapshots the repository forgot leave the mirror before any pack does.
rsync -r --delete --existing --ignore-existing \
  --include=/snapshots/ --include='/snapshots/*' --exclude='*' "$@" "$REPO/" "$MIRROR/"

# 3. The packs: only those the mirror lacks, never over one it has (a local pack
# that differs is a damaged one); pruned packs go.
rsync -a --ignore-existing --delete --exclude='.tmp-*' --include='/packs/***' \
  --exclude='*' "$@" "$REPO/" "$MIRROR/"

# 3b. Everything else but the snapshots: config, README.md, keys/.
rsync -a --delete --exclude=/snapshots/ --exclude=/packs/ --exclude='/locks/*' \
  --exclude='.tmp-*' --exclude=/index/ "$@" "$REPO/" "$MIRROR/"

# 4. Exactly the snapshots listed in 1, whose packs are all in the mirror now.
rsync -a --ignore-existing --files-from="$LIST" "$@" "$REPO/" "$MIRROR/"
