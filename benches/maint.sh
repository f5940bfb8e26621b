#!/usr/bin/env bash
# Benchmark prune and check on a repository of a few million chunks; prints a
# Markdown table for docs/BENCHMARKS.md.
#
#   benches/maint.sh                 # ~900 MiB of data, ~3 million chunks
#   DATA_MIB=100 benches/maint.sh    # a quick run
#
# The repository is built cheaply: its chunker is set to FastCDC's smallest sizes
# (min 64, avg 256, max 1024 bytes) by editing the config right after `init`, so a
# few hundred MiB of data make millions of chunks, and the index, trailers and
# referenced set are as large as those of a terabyte repository with the default
# 64 KiB chunks. Data is random (incompressible), laid out as 16 directories of 16
# files. Between the two snapshots, the files of 4 directories are replaced (their
# packs become wholly unused) and the first third of each file of 4 other directories
# is rewritten (their packs become partly unused, to be repacked). The first snapshot
# is then forgotten and the repository pruned.
#
# Environment: CBSNAP (binary; default: build target/release/cbsnap), WORK (scratch
# directory; default: a new temporary one, removed afterwards), DATA_MIB.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
ROOT_DIR=$here
# The chunker of a new repository set to 64/256/1024 bytes with the engine's own code
# (benches/tiny_chunks.rs): the config carries a checksum, so it cannot be edited
# by hand. TINY_CHUNKS is that program; by default the newest one cargo built.
if [[ -z "${TINY_CHUNKS:-}" ]]; then
    (cd "$ROOT_DIR" && cargo bench --quiet --bench tiny_chunks --no-run 2>/dev/null) || true
    TINY_CHUNKS=$(ls -t "${CARGO_TARGET_DIR:-$ROOT_DIR/target}"/release/deps/tiny_chunks-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
fi
[[ -n $TINY_CHUNKS && -x $TINY_CHUNKS ]] || { echo "$(basename "$0"): no tiny_chunks program (cargo bench --bench tiny_chunks --no-run, or set TINY_CHUNKS)" >&2; exit 1; }
data_mib=${DATA_MIB:-900}
if [[ -z "${CBSNAP:-}" ]]; then
    (cd "$here" && cargo build --release --quiet --bin cbsnap)
    CBSNAP="${CARGO_TARGET_DIR:-$here/target}/release/cbsnap"
fi
if [[ -z "${WORK:-}" ]]; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
repo="$WORK/repo"
src="$WORK/src"
results="$WORK/results.tsv"
: > "$results"
export CBSNAP_REPO="$repo" XDG_CONFIG_HOME="$WORK/config-home"

# Time a cbsnap command; record wall seconds and peak RSS.
measure() {
    local label="$1"
    shift
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$CBSNAP" "$@" > "$WORK/out.json"
    read -r secs kib < "$WORK/time"
    printf '%s\t%s\t%s\n' "$label" "$secs" "$kib" >> "$results"
}

json() { jq -r "$2" "$1"; }

# 16 x 16 files of data_mib/256 MiB each.
file_kib=$((data_mib * 1024 / 256))
write_files() { # first and last directory number
    local from=$1 to=$2
    for d in $(seq -f %02g "$from" "$to"); do
        mkdir -p "$src/d$d"
        for f in $(seq -f %02g 0 15); do
            head -c "${file_kib}K" /dev/urandom > "$src/d$d/f$f.bin"
        done
    done
}

"$CBSNAP" -q init
"$TINY_CHUNKS" "$repo"
grep -q '"avg_size": 256' "$repo/config"

write_files 0 15
measure "snapshot (first)" --json snapshot --path "$src" --name bench
write_files 0 3
for d in 04 05 06 07; do
    for f in "$src/d$d"/*.bin; do
        head -c "$((file_kib / 3))K" /dev/urandom | dd of="$f" conv=notrunc status=none
    done
done
measure "snapshot (second)" --json snapshot --path "$src" --name bench
"$CBSNAP" --json stats > "$WORK/stats-before.json"
measure "check" --json check
measure "check --read-data" --json check --read-data
measure "forget --keep-last 1" --json forget --keep-last 1
measure "prune" --json prune
cp "$WORK/out.json" "$WORK/prune.json"
measure "check --read-data (after prune)" --json check --read-data
"$CBSNAP" --json stats > "$WORK/stats-after.json"

mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
blobs_before=$(json "$WORK/stats-before.json" .repository.blobs)
blobs_after=$(json "$WORK/stats-after.json" .repository.blobs)
packs_before=$(json "$WORK/stats-before.json" .repository.packs)
packs_after=$(json "$WORK/stats-after.json" .repository.packs)
bytes_before=$(json "$WORK/stats-before.json" .repository.pack_bytes)
bytes_after=$(json "$WORK/stats-after.json" .repository.pack_bytes)
ref_set=$(json "$WORK/prune.json" .plan.referenced_set_bytes)
referenced=$(json "$WORK/prune.json" .plan.referenced_blobs)
deleted=$(json "$WORK/prune.json" .result.packs_deleted)
repacked=$(json "$WORK/prune.json" .result.packs_repacked)
written=$(json "$WORK/prune.json" .result.packs_written)
copied=$(json "$WORK/prune.json" .result.blobs_copied)
index_mib=$(du -sm "$repo/index" | cut -f1)

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "### Maintenance: prune and check ($(nproc) cores, ${cpu:-unknown CPU})"
echo
echo "Repository: ${blobs_before} chunks in ${packs_before} packs ($(mib "$bytes_before") MiB,"
echo "index ${index_mib} MiB on disk), two snapshots of ${data_mib} MiB; after forgetting"
echo "the first: ${referenced} blobs referenced. Reproduce with \`benches/maint.sh\`"
echo "(\`DATA_MIB=${data_mib}\`)."
echo
echo "| Step | Time (s) | Peak RSS (MiB) |"
echo "|---|---:|---:|"
while IFS=$'\t' read -r label secs kib; do
    printf '| %s | %s | %s |\n' "$label" "$secs" "$(awk -v k="$kib" 'BEGIN { printf "%.0f", k / 1024 }')"
done < "$results"
echo
echo "Prune deleted ${deleted} packs, repacked ${repacked} into ${written} (${copied} blobs"
echo "copied): ${packs_before} packs / $(mib "$bytes_before") MiB / ${blobs_before} chunks before,"
echo "${packs_after} / $(mib "$bytes_after") MiB / ${blobs_after} after. Its referenced set held"
echo "$(awk -v b="$ref_set" 'BEGIN { printf "%.1f", b / 1048576 }') MiB (8 bytes per referenced blob); the index is streamed, never loaded."
