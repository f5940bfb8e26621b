#!/usr/bin/env bash
# Two cbsnap binaries on the same tree, alternating, in one run: is B slower than A?
# Steps per run: a new repository, an initial snapshot, an unchanged snapshot, a
# restore into an empty directory (checked with diff -r), `check`; wall time from GNU
# time (restore includes a final sync). Prints the median of each step per binary
# and B/A.
#
# Usage: benches/ab.sh A_BINARY B_BINARY TREE     stdout: a Markdown table
# Environment: BENCH_DIR=/tmp/cbsnap-bench-ab (work dir), BENCH_RUNS=3
set -euo pipefail
a=$(realpath "$1") b=$(realpath "$2") tree=$(realpath "$3")
BENCH_DIR=${BENCH_DIR:-/tmp/cbsnap-bench-ab}
BENCH_RUNS=${BENCH_RUNS:-3}
export XDG_CONFIG_HOME=$BENCH_DIR/no-config XDG_CACHE_HOME=$BENCH_DIR/cache
unset CBSNAP_REPO
rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"

timed() { # timed cmd… : wall seconds
    /usr/bin/time -f '%e' -o "$BENCH_DIR/t" "$@" >/dev/null
    cat "$BENCH_DIR/t"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A T
for run in $(seq 1 "$BENCH_RUNS"); do
    for side in a b; do
        bin=${!side}
        repo=$BENCH_DIR/repo-$side
        rm -rf "$repo" "$BENCH_DIR/out"
        "$bin" --repo "$repo" -q init >/dev/null
        T[$side,initial]+="$(timed "$bin" --repo "$repo" -q snapshot --path "$tree" --name t) "
        T[$side,unchanged]+="$(timed "$bin" --repo "$repo" -q snapshot --path "$tree" --name t) "
        T[$side,restore]+="$(timed bash -c "\"$bin\" --repo \"$repo\" -q restore t@latest --to \"$BENCH_DIR/out\" && sync") "
        T[$side,check]+="$(timed "$bin" --repo "$repo" -q check) "
        diff -r "$tree" "$BENCH_DIR/out" >/dev/null
    done
done
echo "| step | A (s) | B (s) | B / A |"
echo "|---|--:|--:|--:|"
for step in initial unchanged restore check; do
    ma=$(tr ' ' '\n' <<<"${T[a,$step]}" | grep . | median)
    mb=$(tr ' ' '\n' <<<"${T[b,$step]}" | grep . | median)
    echo "| $step | $ma | $mb | $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.2f", (a > 0 ? b / a : 0)}') |"
done
