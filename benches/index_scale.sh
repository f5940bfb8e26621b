#!/usr/bin/env bash
# Does a snapshot slow down, or grow in memory, as the index grows? Builds two
# repositories, one of ~10 thousand chunks and one of CHUNKS (default 5 million),
# then times the same snapshot of NEW_MIB of new random data in each and records
# its peak RSS. Prints a Markdown table for docs/BENCHMARKS.md.
#
#   CBSNAP=target/release/cbsnap benches/index_scale.sh
#   CHUNKS=1000000 NEW_MIB=32 benches/index_scale.sh     # quicker
#
# Like benches/maint.sh, the repositories use FastCDC's smallest sizes (min 64,
# avg 256, max 1024 bytes, set in the config right after `init`), so 1 GiB of data
# makes ~4 million chunks: the index is as large as a 250 TiB repository's with
# the default 64 KiB chunks. Every chunk of the measured snapshot is new, so every
# lookup is a miss: the case a bloom filter in front of RocksDB is for.
# Environment: CBSNAP (binary, default target/release/cbsnap), TINY_CHUNKS (the
# program of benches/tiny_chunks.rs; default: built and found by cargo), WORK
# (scratch directory; default a new temporary one, removed afterwards), CHUNKS, NEW_MIB.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CBSNAP=${CBSNAP:-target/release/cbsnap}
# The chunker of a new repository set to 64/256/1024 bytes with the engine's own code
# (benches/tiny_chunks.rs): the config carries a checksum, so it cannot be edited
# by hand. TINY_CHUNKS is that program; by default the newest one cargo built.
if [[ -z "${TINY_CHUNKS:-}" ]]; then
    (cd "$ROOT_DIR" && cargo bench --quiet --bench tiny_chunks --no-run 2>/dev/null) || true
    TINY_CHUNKS=$(ls -t "${CARGO_TARGET_DIR:-$ROOT_DIR/target}"/release/deps/tiny_chunks-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
fi
[[ -n $TINY_CHUNKS && -x $TINY_CHUNKS ]] || { echo "$(basename "$0"): no tiny_chunks program (cargo bench --bench tiny_chunks --no-run, or set TINY_CHUNKS)" >&2; exit 1; }
CHUNKS=${CHUNKS:-5000000}
NEW_MIB=${NEW_MIB:-64}
[[ -x $CBSNAP ]] || { echo "index_scale.sh: no cbsnap binary at $CBSNAP (cargo build --release, or set CBSNAP)" >&2; exit 1; }
if [[ -z "${WORK:-}" ]]; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
export XDG_CONFIG_HOME="$WORK/config-home"

# random_tree DIR MIB: MIB of random data in files of 4 MiB.
random_tree() {
    local dir=$1 mib=$2 i=0
    mkdir -p "$dir"
    while ((mib > 0)); do
        local n=$((mib < 4 ? mib : 4))
        head -c "${n}M" /dev/urandom >"$dir/f$i.bin"
        mib=$((mib - n)); i=$((i + 1))
    done
}

# tiny_repo NAME CHUNKS: a repository holding about CHUNKS chunks.
tiny_repo() {
    local repo=$WORK/$1 mib=$(( ($2 * 256 + 1048575) / 1048576 ))
    "$CBSNAP" --repo "$repo" -q init
    "$TINY_CHUNKS" "$repo"
    grep -q '"avg_size": 256' "$repo/config"
    random_tree "$WORK/fill-$1" "$mib"
    "$CBSNAP" --repo "$repo" -q snapshot --path "$WORK/fill-$1" --name fill
    rm -rf "$WORK/fill-$1"
}

random_tree "$WORK/new" "$NEW_MIB"
echo "| index | chunks in the index | snapshot of $NEW_MIB MiB new data (s) | new chunks | µs per chunk | peak RSS (MiB) |"
echo "|---|--:|--:|--:|--:|--:|"
for spec in small:10000 large:$CHUNKS; do
    name=${spec%%:*} want=${spec#*:}
    tiny_repo "$name" "$want"
    have=$("$CBSNAP" --repo "$WORK/$name" --json stats | jq -r .repository.blobs)
    sync
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$CBSNAP" --repo "$WORK/$name" -q --json \
        snapshot --path "$WORK/new" --name new >"$WORK/out.json"
    read -r secs kib <"$WORK/time"
    new=$(jq -r .stats.new_blobs "$WORK/out.json" 2>/dev/null || echo "?")
    us=$(awk -v s="$secs" -v n="$new" 'BEGIN { if (n > 0) printf "%.1f", s * 1e6 / n; else print "?" }')
    printf '| %s | %s | %s | %s | %s | %.1f |\n' "$name" "$have" "$secs" "$new" "$us" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')"
    rm -rf "${WORK:?}/$name"
done
echo
echo "Load average during the run: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores."
