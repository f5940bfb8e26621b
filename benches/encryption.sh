#!/usr/bin/env bash
# The cost of encryption at rest: the same tree snapshotted and restored into an
# unencrypted and an encrypted repository, alternating, in one run. Reports the
# median wall time of each step (GNU time, including a final sync), the repository
# size, and the cost of one key unlock (Argon2id) on its own (`cbsnap snapshots` of
# an empty encrypted repository).
#
# Usage: benches/encryption.sh            stdout: a Markdown table
# Environment (defaults):
#   BENCH_DIR=/tmp/cbsnap-bench-enc   work dir (removed and recreated)
#   BENCH_MIB=256                     tree size: half random (incompressible), half text
#   BENCH_RUNS=3                      repetitions of each step; the median is shown
#   CBSNAP=target/release/cbsnap
set -euo pipefail

BENCH_DIR=${BENCH_DIR:-/tmp/cbsnap-bench-enc}
BENCH_MIB=${BENCH_MIB:-256}
BENCH_RUNS=${BENCH_RUNS:-3}
CBSNAP=$(realpath "${CBSNAP:-target/release/cbsnap}")
export CBSNAP_PASSWORD=bench-passphrase XDG_CONFIG_HOME=$BENCH_DIR/no-config
unset CBSNAP_REPO

rm -rf "$BENCH_DIR"
"$(dirname "$0")/make_tree.sh" "$BENCH_DIR/tree" "$BENCH_MIB"

timed() { # timed LOG cmd… : wall seconds of cmd and a sync
    /usr/bin/time -f '%e' -o "$1.t" bash -c "\"\${@:2}\" && sync" _ "$@" >/dev/null
    cat "$1.t"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A T
for run in $(seq 1 "$BENCH_RUNS"); do
    for mode in off on; do
        # A new repository each run: every snapshot stores all of its data.
        repo=$BENCH_DIR/repo-$mode
        rm -rf "$repo"
        "$CBSNAP" --repo "$repo" -q init --encryption $mode
        s=$(timed "$BENCH_DIR/log" "$CBSNAP" --repo "$repo" -q snapshot --path "$BENCH_DIR/tree" --name "t$run")
        rm -rf "$BENCH_DIR/out"
        r=$(timed "$BENCH_DIR/log" "$CBSNAP" --repo "$repo" -q restore "t$run@latest" --to "$BENCH_DIR/out")
        diff -r "$BENCH_DIR/tree" "$BENCH_DIR/out" >/dev/null
        T[$mode-snap]+="$s "
        T[$mode-restore]+="$r "
    done
done
"$CBSNAP" --repo "$BENCH_DIR/repo-key" -q init --encryption on
u=$(for i in $(seq 1 "$BENCH_RUNS"); do timed "$BENCH_DIR/log" "$CBSNAP" --repo "$BENCH_DIR/repo-key" -q snapshots; done | median)

echo "Tree: ${BENCH_MIB} MiB ($half MiB random in 16 MiB files, $half MiB text in 256 KiB files);"
echo "$BENCH_RUNS runs, alternating unencrypted and encrypted; median wall seconds (incl. sync)."
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| step | unencrypted (s) | encrypted (s) | cost |"
echo "|---|--:|--:|--:|"
for step in snap restore; do
    a=$(echo ${T[off-$step]} | tr ' ' '\n' | median)
    b=$(echo ${T[on-$step]} | tr ' ' '\n' | median)
    name=$([ $step = snap ] && echo "snapshot (new data)" || echo "restore")
    echo "| $name | $a | $b | $(python3 -c "print(f'{($b-$a)/$a*100:+.0f}%')") |"
done
echo "| unlock (snapshots of an empty repository) | | $u | |"
echo
echo "Repository size: unencrypted $(du -sm "$BENCH_DIR/repo-off/packs" | cut -f1) MiB of packs, encrypted $(du -sm "$BENCH_DIR/repo-on/packs" | cut -f1) MiB."
