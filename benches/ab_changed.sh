#!/usr/bin/env bash
# Two cbsnap binaries on the *changed* snapshot of the compare corpus, alternating, in
# one run: is B faster than A where a snapshot reads files that changed since its
# parent? The corpus (benches/gen_corpus.py) is snapshotted once by A; the corpus is
# then mutated once (`gen_corpus.py --mutate`: ~1% of the source files, 1% of the
# SQLite rows, four 1 MiB regions of the largest blob); each run copies that
# repository and takes the changed snapshot with A or B, the page cache dropped
# before it. Both must make the same root tree (the same chunks of every file),
# or the script stops.
#
# Usage: benches/ab_changed.sh A_BINARY B_BINARY     stdout: a Markdown table
# Environment: BENCH_DIR=/tmp/cbsnap-bench-abc (work dir; the corpus is made anew in
# $BENCH_DIR/corpus, or in CORPUS, which is removed first), BENCH_RUNS=5,
# BENCH_SEED=1, BENCH_SCALE=1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
a=$(realpath "$1") b=$(realpath "$2")
BENCH_DIR=${BENCH_DIR:-/tmp/cbsnap-bench-abc}
BENCH_RUNS=${BENCH_RUNS:-5}
CORPUS=${CORPUS:-$BENCH_DIR/corpus}
export XDG_CONFIG_HOME=$BENCH_DIR/no-config XDG_CACHE_HOME=$BENCH_DIR/cache
unset CBSNAP_REPO
mkdir -p "$BENCH_DIR"
rm -rf "$BENCH_DIR/parent" "$BENCH_DIR/repo"

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
tree_of() { "$1" --repo "$2" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["tree"])'; }

rm -rf "$CORPUS"
python3 "$ROOT/benches/gen_corpus.py" --out "$CORPUS" --seed "${BENCH_SEED:-1}" \
    --scale "${BENCH_SCALE:-1}" >&2
"$a" --repo "$BENCH_DIR/parent" -q init >/dev/null
# A file written within 100 ms of a snapshot's start proves nothing to the next one
# (racy-git): let the generated files settle, so that the changed snapshots read only
# what the mutation changed.
sleep 1
"$a" --repo "$BENCH_DIR/parent" -q snapshot --path "$CORPUS" --name corpus
python3 "$ROOT/benches/gen_corpus.py" --out "$CORPUS" --seed "${BENCH_SEED:-1}" --mutate >&2

declare -A W U S
want=
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$BENCH_RUNS"); do
    for side in a b; do
        bin=${!side}
        rm -rf "$BENCH_DIR/repo"
        cp -a "$BENCH_DIR/parent" "$BENCH_DIR/repo"
        drop_caches
        /usr/bin/time -f '%e %U %S' -o "$BENCH_DIR/t" \
            "$bin" --repo "$BENCH_DIR/repo" -q snapshot --path "$CORPUS" --name corpus
        read -r wall user sys <"$BENCH_DIR/t"
        W[$side]+="$wall " U[$side]+="$user " S[$side]+="$sys "
        tree=$(tree_of "$bin" "$BENCH_DIR/repo")
        if [[ -z $want ]]; then want=$tree; fi
        if [[ $tree != "$want" ]]; then
            echo "ab_changed: $side ($bin) made tree $tree, not $want: other chunks" >&2
            exit 1
        fi
    done
done

echo "Changed snapshot, $BENCH_RUNS runs each, alternating; $(nproc) CPUs; load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo
echo "| measure (median) | A (s) | B (s) | B / A |"
echo "|---|--:|--:|--:|"
for m in W:wall U:user S:sys; do
    declare -n arr=${m%%:*}
    ma=$(tr ' ' '\n' <<<"${arr[a]}" | grep . | median)
    mb=$(tr ' ' '\n' <<<"${arr[b]}" | grep . | median)
    echo "| ${m#*:} | $ma | $mb | $(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.2f", b / a }') |"
done
echo
echo "Every run: A wall ${W[a]}/ B wall ${W[b]}"
