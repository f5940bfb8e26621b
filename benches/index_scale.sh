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
# Environment: CBSNAP (binary, default target/release/cbsnap), WORK (scratch
# directory; default a new temporary one, removed afterwards), CHUNKS, NEW_MIB.
set -euo pipefail

CBSNAP=${CBSNAP:-target/release/cbsnap}
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
    sed -i -e 's/"min_size": [0-9]*/"min_size": 64/' -e 's/"avg_size": [0-9]*/"avg_size": 256/' \
        -e 's/"max_size": [0-9]*/"max_size": 1024/' "$repo/config"
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
