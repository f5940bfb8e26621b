#!/usr/bin/env bash
# Cold restores of the corpus, alternating cbsnap, rustic and `cp -a`, from the
# repositories a `benches/compare.sh` run left in its BENCH_DIR: one restore in a
# compare run is at the mercy of the shared host; several rounds, alternating,
# give medians to compare (issue 9: restore ahead of every peer, within 1.1× of
# `cp -a` + `sync`).
#
# Usage: benches/ab_restore.sh      (as root: it drops the page cache)
#   stdout: one line per restore (tool, wall, user, system seconds), then the
#   medians.
# Environment (defaults):
#   BENCH_DIR=/tmp/cbsnap-bench     compare.sh's work dir (corpus and repo/)
#   BENCH_RUNS=6                    rounds
#   CBSNAP=target/release/cbsnap
#   RUSTIC=rustic                   /work/tools/rustic/bin/rustic when that
#                                   exists and rustic is not on PATH
# Every restore is compared with the corpus (`diff -r`); a difference stops the
# script.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/cbsnap-bench}
BENCH_RUNS=${BENCH_RUNS:-6}
CBSNAP=${CBSNAP:-$ROOT/target/release/cbsnap}
RUSTIC=${RUSTIC:-rustic}
if ! command -v "$RUSTIC" >/dev/null && [[ -x /work/tools/rustic/bin/rustic ]]; then
    RUSTIC=/work/tools/rustic/bin/rustic
fi
CORPUS=$BENCH_DIR/corpus

die() { echo "ab_restore: $*" >&2; exit 1; }
((EUID == 0)) || die "run as root: the page cache is dropped before every restore"
[[ -x $CBSNAP ]] || die "$CBSNAP not found; run \`cargo build --release\` first"
command -v "$RUSTIC" >/dev/null || die "rustic not found; set RUSTIC"
[[ -d $CORPUS && -d $BENCH_DIR/repo/cbsnap && -d $BENCH_DIR/repo/rustic ]] ||
    die "no corpus and repositories in $BENCH_DIR; run benches/compare.sh first"

# As compare.sh runs them.
export RUSTIC_PASSWORD=cbsnap-bench RUSTIC_CACHE_DIR=$BENCH_DIR/home/rustic-cache
export XDG_CONFIG_HOME=$BENCH_DIR/home/config
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

for ((run = 1; run <= BENCH_RUNS; run++)); do
    for tool in cbsnap rustic cp; do
        dir=$OUT/$tool
        rm -rf "$dir"
        case $tool in
            cbsnap) cmd=("$CBSNAP" --repo "$BENCH_DIR/repo/cbsnap" -q restore corpus@latest --to "$dir") ;;
            rustic) mkdir -p "$dir"
                cmd=("$RUSTIC" -r "$BENCH_DIR/repo/rustic" --no-progress restore "latest:$CORPUS" "$dir") ;;
            cp) cmd=(cp -a "$CORPUS" "$dir") ;;
        esac
        sync
        echo 3 >/proc/sys/vm/drop_caches
        if ! /usr/bin/time -f "$tool %e %U %S" -o "$OUT/time" \
            sh -c '"$@" >/dev/null 2>"$0" && sync' "$OUT/log" "${cmd[@]}"; then
            tail -n 20 "$OUT/log" >&2
            die "$tool failed: ${cmd[*]}"
        fi
        cat "$OUT/time"
        diff -r "$CORPUS" "$dir" >/dev/null || die "$tool restored something other than the corpus"
        rm -rf "$dir"
    done
done | tee "$OUT/runs"

echo
echo "Medians of $BENCH_RUNS rounds ($(nproc) CPUs; load average now $(cut -d' ' -f1-3 /proc/loadavg)):"
for tool in cbsnap rustic cp; do
    awk -v t="$tool" '$1 == t { print $2 }' "$OUT/runs" | sort -n |
        awk -v t="$tool" '{ a[NR] = $1 } END { printf "%s %.2f s\n", t, a[int((NR + 1) / 2)] }'
done
