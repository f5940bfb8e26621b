#!/usr/bin/env bash
# Snapshot and restore through S3 (moto) and SFTP (sshd) on localhost, beside the local
# path, each unencrypted and encrypted, in one run: the cost of the backend and the
# cost of encryption shown apart. The servers are those of the tests
# (`scripts/test-servers.sh start`, which this script runs when they are not up).
#
# Each step: a new repository, an initial snapshot of the tree, a second snapshot
# after 1% of the text files changed (what a night costs), and a restore from an
# empty cache (a new host: the index is rebuilt from the pack trailers first),
# checked with diff -r. Wall time from GNU time, including a final sync.
#
# Usage: benches/remote.sh              stdout: a Markdown table
# Environment (defaults):
#   BENCH_DIR=/tmp/cbsnap-bench-remote   work dir (removed and recreated)
#   BENCH_MIB=128                        tree size: half random (incompressible), half text
#   CBSNAP=target/release/cbsnap
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR=${BENCH_DIR:-/tmp/cbsnap-bench-remote}
BENCH_MIB=${BENCH_MIB:-128}
CBSNAP=$(realpath "${CBSNAP:-target/release/cbsnap}")
eval "$(scripts/test-servers.sh start)"
export CBSNAP_PASSWORD=bench-passphrase XDG_CONFIG_HOME=$BENCH_DIR/no-config
unset CBSNAP_REPO

rm -rf "$BENCH_DIR"
benches/make_tree.sh "$BENCH_DIR/tree" "$BENCH_MIB"

timed() { # timed cmd… : wall seconds of cmd and a sync
    /usr/bin/time -f '%e %M' -o "$BENCH_DIR/t" bash -c "\"\$@\" && sync" _ "$@" >/dev/null
    cat "$BENCH_DIR/t"
}

tag=$(date +%s)
echo "| backend | encryption | initial (s) | 1% changed (s) | restore, empty cache (s) | peak RSS (MiB) |"
echo "|---|---|--:|--:|--:|--:|"
for backend in path s3 sftp; do
    for enc in off on; do
        case $backend in
            path) repo=$BENCH_DIR/repo-$enc ;;
            s3) repo=$CBSNAP_TEST_S3/bench-$tag-$enc ;;
            sftp) repo=$CBSNAP_TEST_SFTP/bench-$tag-$enc ;;
        esac
        export XDG_CACHE_HOME=$BENCH_DIR/cache-$backend-$enc
        tree=$BENCH_DIR/tree
        "$CBSNAP" --repo "$repo" -q init --encryption $enc
        read -r s1 m1 < <(timed "$CBSNAP" --repo "$repo" -q snapshot --path "$tree" --name t)
        # 1% of the text files change.
        python3 - "$tree/text" <<'PY'
import os, random, sys
d = sys.argv[1]
files = sorted(os.listdir(d))
for f in random.Random(2).sample(files, max(1, len(files) // 100)):
    with open(os.path.join(d, f), "a") as h:
        h.write("// changed\n")
PY
        read -r s2 m2 < <(timed "$CBSNAP" --repo "$repo" -q snapshot --path "$tree" --name t)
        rm -rf "$BENCH_DIR/out"
        export XDG_CACHE_HOME=$BENCH_DIR/cache-new-$backend-$enc
        read -r r m3 < <(timed "$CBSNAP" --repo "$repo" -q restore t@latest --to "$BENCH_DIR/out")
        diff -r "$tree" "$BENCH_DIR/out" >/dev/null
        peak=$(printf '%s\n' "$m1" "$m2" "$m3" | sort -n | tail -1)
        echo "| $backend | $enc | $s1 | $s2 | $r | $((peak / 1024)) |"
    done
done
