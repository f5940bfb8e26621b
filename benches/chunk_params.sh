#!/usr/bin/env bash
# FastCDC parameter sets, end to end: what each costs in chunks (index entries,
# per-chunk overhead) and what it saves when a large file changes in a few places.
#
# For each min/avg/max (KiB) of 8/32/128, 16/64/256 (the default), 32/128/512 and
# 64/256/1024: a fresh repository whose config is rewritten to those parameters
# before its first snapshot, a snapshot of one seeded random blob (BENCH_MIB MiB,
# incompressible, like a model file or database pages), then 100 in-place edits of
# 10 KiB at seeded offsets and a second snapshot. Reports the chunk count, the
# first snapshot's wall time, and the new chunks and bytes of the second one:
# the 1000 KiB actually changed is the floor, the rest is the chunk-size tax.
#
# Usage: benches/chunk_params.sh
#   stdout: a Markdown report; progress goes to stderr.
# Environment (defaults):
#   BENCH_DIR=/tmp/cbsnap-bench-chunk   work dir, cleared at start and at the end
#   BENCH_MIB=256                       blob size
#   BENCH_SEED=1
#   CBSNAP=target/release/cbsnap
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/cbsnap-bench-chunk}
BENCH_MIB=${BENCH_MIB:-256}
BENCH_SEED=${BENCH_SEED:-1}
CBSNAP=${CBSNAP:-target/release/cbsnap}
MARKER=.cbsnap-bench-chunk
SETS=("8 32 128" "16 64 256" "32 128 512" "64 256 1024")
EDITS=100
EDIT_KIB=10

die() { echo "chunk_params.sh: error: $*" >&2; exit 1; }
say() { echo "chunk_params.sh: $*" >&2; }

for arg in "$@"; do
    case $arg in
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

cd "$ROOT"
[[ $CBSNAP = /* ]] || CBSNAP=$ROOT/$CBSNAP
[[ -x $CBSNAP ]] || die "$CBSNAP not found; run \`cargo build --release\` first"
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is needed"

if [[ -e $BENCH_DIR ]]; then
    [[ -f $BENCH_DIR/$MARKER ]] || die "$BENCH_DIR exists and was not made by chunk_params.sh; choose another BENCH_DIR"
    rm -rf "$BENCH_DIR"
fi
mkdir -p "$BENCH_DIR/data" "$BENCH_DIR/logs"
touch "$BENCH_DIR/$MARKER"
trap 'rm -rf "$BENCH_DIR"' EXIT
trap 'exit 130' INT TERM
cp "$CBSNAP" "$BENCH_DIR/cbsnap"   # a build elsewhere must not swap it mid-run
CBSNAP=$BENCH_DIR/cbsnap
LOGS=$BENCH_DIR/logs
BLOB=$BENCH_DIR/data/blob.bin

say "generating a $BENCH_MIB MiB blob (seed $BENCH_SEED)"
python3 - "$BLOB" "$BENCH_MIB" "$BENCH_SEED" <<'EOF'
import random, sys
path, mib, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = random.Random("blob-" + seed)
with open(path, "wb") as f:
    for _ in range(mib):
        f.write(r.randbytes(1 << 20))
EOF

# set_params REPO MIN AVG MAX: rewrite the chunker of a repository that has no
# snapshot yet. The config is a 12-byte header (magic, version) and JSON; from format
# 2 on a BLAKE3 checksum follows, which Python's hashlib cannot make, so the config
# is written in format 1 (no checksum), which cbsnap still reads.
set_params() {
    python3 - "$1/config" "$2" "$3" "$4" <<'EOF'
import json, struct, sys
path, lo, avg, hi = sys.argv[1], *(int(a) * 1024 for a in sys.argv[2:])
buf = open(path, "rb").read()
version = struct.unpack("<I", buf[8:12])[0]
body = buf[12:-32] if version >= 2 else buf[12:]
cfg = json.loads(body)
cfg["chunker"].update(min_size=lo, avg_size=avg, max_size=hi)
cfg["version"] = 1
out = buf[:8] + struct.pack("<I", 1) + json.dumps(cfg, indent=2).encode() + b"\n"
open(path, "wb").write(out)
EOF
}

# stats REPO: the stats of the newest snapshot, as "new_blobs new_bytes_raw new_bytes_stored".
stats() {
    "$CBSNAP" --repo "$1" --json snapshots | python3 -c '
import json, sys
s = max(json.load(sys.stdin), key=lambda s: s["time"])["stats"]
print(s["new_blobs"], s["new_bytes_raw"], s["new_bytes_stored"])'
}

# snap REPO LOGNAME: snapshot the data dir; prints the wall time.
snap() {
    sync
    /usr/bin/time -f '%e' -o "$LOGS/$2.time" \
        "$CBSNAP" --repo "$1" -q snapshot --path "$BENCH_DIR/data" --name blob >"$LOGS/$2.log" 2>&1 ||
        { tail -n 20 "$LOGS/$2.log" >&2; die "snapshot failed (log: $LOGS/$2.log)"; }
    tail -n 1 "$LOGS/$2.time"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
declare -A CHUNKS T1 NEW_BLOBS NEW_RAW NEW_STORED SIZE
for set in "${SETS[@]}"; do
    read -r lo avg hi <<<"$set"
    k=$lo-$avg-$hi
    repo=$BENCH_DIR/repo-$k
    "$CBSNAP" --repo "$repo" -q init >"$LOGS/init-$avg.log" 2>&1 || die "init failed (log: $LOGS/init-$avg.log)"
    set_params "$repo" "$lo" "$avg" "$hi"
    say "$lo/$avg/$hi: first snapshot"
    T1[$k]=$(snap "$repo" "first-$avg")
    read -r blobs _ _ < <(stats "$repo")
    CHUNKS[$k]=$((blobs - 1))   # minus the one tree blob of the directory
done

say "editing: $EDITS x $EDIT_KIB KiB in place"
python3 - "$BLOB" "$EDITS" "$EDIT_KIB" "$BENCH_SEED" <<'EOF'
import os, random, sys
path, n, kib, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r, size = random.Random("edits-" + seed), os.path.getsize(path)
with open(path, "r+b") as f:
    for _ in range(n):
        f.seek(r.randrange(0, size - kib * 1024))
        f.write(r.randbytes(kib * 1024))
EOF

for set in "${SETS[@]}"; do
    read -r lo avg hi <<<"$set"
    k=$lo-$avg-$hi
    repo=$BENCH_DIR/repo-$k
    say "$lo/$avg/$hi: snapshot after the edits"
    snap "$repo" "second-$avg" >/dev/null
    read -r NEW_BLOBS[$k] NEW_RAW[$k] NEW_STORED[$k] < <(stats "$repo")
    SIZE[$k]=$(du -sb "$repo" | cut -f1)
done
ELAPSED=$((SECONDS - T0))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
changed=$((EDITS * EDIT_KIB * 1024))
echo "### FastCDC parameters: chunk count against dedup of small edits"
echo
echo "One seeded random blob of $BENCH_MIB MiB, then $EDITS in-place edits of $EDIT_KIB KiB at"
echo "seeded offsets ($(mib $changed) MiB changed). \"New\" counts the second snapshot's"
echo "blobs and raw bytes (chunks plus one small tree blob)."
echo
echo "| min/avg/max KiB | chunks | mean chunk KiB | 1st snapshot s | new blobs | new MiB | new ÷ changed | repo MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for set in "${SETS[@]}"; do
    read -r lo avg hi <<<"$set"
    k=$lo-$avg-$hi def=""; [[ $avg = 64 ]] && def=" (default)"
    printf '| %s/%s/%s%s | %d | %.1f | %s | %d | %s | %.1f× | %s |\n' "$lo" "$avg" "$hi" "$def" \
        "${CHUNKS[$k]}" "$(awk -v c="${CHUNKS[$k]}" -v m="$BENCH_MIB" 'BEGIN { print m * 1024 / c }')" \
        "${T1[$k]}" "${NEW_BLOBS[$k]}" "$(mib "${NEW_RAW[$k]}")" \
        "$(awk -v n="${NEW_RAW[$k]}" -v c=$changed 'BEGIN { print n / c }')" "$(mib "${SIZE[$k]}")"
done
echo
echo "Command: \`cargo build --release && benches/chunk_params.sh\` (BENCH_MIB=$BENCH_MIB, BENCH_SEED=$BENCH_SEED), ${ELAPSED} s."
echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r),"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); load average (1/5/15 min) $LOAD_START at the start, $LOAD_END at the end."
