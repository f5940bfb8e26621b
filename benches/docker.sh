#!/usr/bin/env bash
# Docker volumes: cbsnap `snapshot --all --via mount`, cbsnap `--via archive`, and
# the procedure cbsnap replaces, one `docker run ... tar czf` per volume.
#
# Creates three volumes of the compose project cbsnap-bench (qdrant-data,
# extensions, logs; ~220 MiB of deterministic content from gen_volumes.py),
# then five runs; before runs 2-4 a seeded ~1% change (log append, two 1 MiB
# rewrites in a segment, a few small files edited or touched), and none before
# run 5 (the unchanged case issue 9's `--via mount` target is about). In each run the
# three methods go one after the other, each with a cold page cache when root.
# Records wall time and peak RSS (GNU time) and the bytes stored so far: `du -sb`
# of the repository, or the sum of all tar.gz files written so far (the old
# procedure keeps a full copy per run). Each run also measures the two floors
# issue 9 compares with: a bare `docker cp` of every volume to /dev/null (the
# archive API `--via archive` reads through, from containers made beforehand) and
# a `find` stat walk of the volumes' directories (what an unchanged `--via mount`
# run must at least do), and reports archive ÷ docker cp and mount ÷ stat walk.
#
# Usage: benches/docker.sh
#   stdout: a Markdown report; progress goes to stderr. Needs root (the mount
#   path and the generator write to the volumes' directories) and a Docker engine.
# Environment (defaults):
#   BENCH_DIR=/tmp/cbsnap-bench-docker  work dir: repositories, tar files, logs
#   BENCH_SEED=1                        content seed
#   BENCH_KEEP=0                        1 keeps BENCH_DIR and the volumes
#   CBSNAP=target/release/cbsnap
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/cbsnap-bench-docker}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_KEEP=${BENCH_KEEP:-0}
CBSNAP=${CBSNAP:-target/release/cbsnap}
PROJECT=cbsnap-bench
VOLUMES=(qdrant-data extensions logs)
IMAGE=cbsnap-bench-busybox:1
LABEL=cbsnap-bench=1     # on everything this script creates, for the cleanup
MARKER=.cbsnap-bench-docker
RUNS=5
CHANGED_RUNS=(2 3 4)
METHODS=(mount archive tar cp stat)

die() { echo "docker.sh: error: $*" >&2; exit 1; }
say() { echo "docker.sh: $*" >&2; }

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
((EUID == 0)) || die "run as root: --via mount and the generator use the volumes' directories"
docker info >/dev/null 2>&1 || die "no Docker engine answers; start dockerd"
for v in "${VOLUMES[@]}"; do
    ! docker volume inspect "${PROJECT}_$v" >/dev/null 2>&1 ||
        die "volume ${PROJECT}_$v exists already; remove it (docker volume rm) or rerun after a clean exit"
done

# Only ever delete a BENCH_DIR this script made.
if [[ -e $BENCH_DIR ]]; then
    [[ -f $BENCH_DIR/$MARKER ]] || die "$BENCH_DIR exists and was not made by docker.sh; choose another BENCH_DIR"
    rm -rf "$BENCH_DIR"
fi
mkdir -p "$BENCH_DIR/logs" "$BENCH_DIR/tar"
touch "$BENCH_DIR/$MARKER"
LOGS=$BENCH_DIR/logs
# A private copy: a `cargo build` elsewhere must not swap the binary mid-run.
cp "$CBSNAP" "$BENCH_DIR/cbsnap"
# What the binary was built from cannot be told; say what the tree is now.
CBSNAP_VERSION="$("$CBSNAP" --version), built $(date -u -r "$CBSNAP" '+%Y-%m-%d %H:%M UTC'); source tree at run time: commit $(
    git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(
    git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' with uncommitted changes in src/')"
CBSNAP=$BENCH_DIR/cbsnap

cleanup() {
    local rc=$?
    docker ps -aq --filter "label=$LABEL" | xargs -r docker rm -f >/dev/null 2>&1 || true
    if [[ $BENCH_KEEP != 1 ]]; then
        for v in "${VOLUMES[@]}"; do docker volume rm -f "${PROJECT}_$v" >/dev/null 2>&1 || true; done
        docker image rm "$IMAGE" >/dev/null 2>&1 || true
        rm -rf "$BENCH_DIR"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A busybox image without a registry: Debian's static busybox plus the two
# applet links `tar czf` needs (busybox tar execs `gzip` for -z).
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    [[ -x /bin/busybox ]] && file -L /bin/busybox | grep -q 'statically linked' ||
        die "a static /bin/busybox is needed for the image (apt-get install busybox-static)"
    img=$BENCH_DIR/image
    mkdir -p "$img/bin"
    cp /bin/busybox "$img/bin/busybox"
    for a in sh tar gzip; do ln -s busybox "$img/bin/$a"; done
    tar -C "$img" -cf - . | docker import -c "LABEL $LABEL" - "$IMAGE" >/dev/null
    rm -rf "$img"
fi

declare -A MP
for v in "${VOLUMES[@]}"; do
    docker volume create --label "com.docker.compose.project=$PROJECT" \
        --label "com.docker.compose.volume=$v" --label "$LABEL" "${PROJECT}_$v" >/dev/null
    MP[$v]=$(docker volume inspect -f '{{.Mountpoint}}' "${PROJECT}_$v")
done
GEN=(python3 "$ROOT/benches/gen_volumes.py" --seed "$BENCH_SEED"
    --qdrant "${MP[qdrant-data]}" --extensions "${MP[extensions]}" --logs "${MP[logs]}")
say "generating the volumes (seed $BENCH_SEED)"
"${GEN[@]}"
DATA_BYTES=$(du -sbc "${MP[@]}" | tail -n 1 | cut -f1)
DATA_FILES=$(find "${MP[@]}" -type f | wc -l)
EXT_FILES=$(find "${MP[extensions]}" -type f -name '*.js' | wc -l)

# An explicit, empty config: --all must take exactly our volumes, no host paths.
CFG=$BENCH_DIR/config.toml
printf 'project = "%s"\npaths = []\n' "$PROJECT" >"$CFG"
for m in mount archive; do
    "$CBSNAP" --config "$CFG" --repo "$BENCH_DIR/repo-$m" -q init >"$LOGS/init-$m.log" 2>&1 ||
        die "cbsnap init failed (log: $LOGS/init-$m.log)"
done

CAN_DROP=0
if (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then CAN_DROP=1; fi

# The old procedure: one throwaway container per volume writing VOL.tar.gz.
# tar_backup DEST VOLUME...
tar_backup() {
    local dest=$1 v
    shift
    mkdir -p "$dest"
    for v in "$@"; do
        docker run --rm --label "$LABEL" -v "$v:/data:ro" -v "$dest:/backup" \
            "$IMAGE" tar czf "/backup/$v.tar.gz" -C /data .
    done
}
export -f tar_backup
export IMAGE LABEL

# The docker cp floor reads each volume from a container made once, before the runs.
declare -A CP_FROM
for v in "${VOLUMES[@]}"; do
    CP_FROM[$v]=$(docker create --label "$LABEL" -v "${PROJECT}_$v:/data:ro" "$IMAGE" true)
done
# cp_floor: every volume's files through the archive API, to /dev/null.
cp_floor() {
    local c
    for c in "$@"; do docker cp "$c:/data" - >/dev/null; done
}
export -f cp_floor

declare -A WALL RSS STORED
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
for ((run = 1; run <= RUNS; run++)); do
    if [[ " ${CHANGED_RUNS[*]} " = *" $run "* ]]; then
        say "change round $((run - 1))"
        "${GEN[@]}" --mutate $((run - 1))
    fi
    for m in "${METHODS[@]}"; do
        case $m in
            mount | archive)
                cmd=("$CBSNAP" --config "$CFG" --repo "$BENCH_DIR/repo-$m" -q snapshot --all
                    --project "$PROJECT" --via "$m")
                where=$BENCH_DIR/repo-$m ;;
            tar)
                cmd=(tar_backup "$BENCH_DIR/tar/run$run" "${VOLUMES[@]/#/${PROJECT}_}")
                where=$BENCH_DIR/tar ;;
            cp) cmd=(cp_floor "${CP_FROM[@]}") ;;
            stat) cmd=(find "${MP[@]}" -printf '%s %T@ %C@ %i\n') ;;
        esac
        sync
        if ((CAN_DROP)); then echo 3 >/proc/sys/vm/drop_caches; fi
        say "run $run: $m"
        log=$LOGS/$m-$run.log tf=$LOGS/$m-$run.time
        if ! /usr/bin/time -f '%e %M' -o "$tf" bash -c '"$@" && sync' bash "${cmd[@]}" >"$log" 2>&1; then
            tail -n 20 "$log" >&2
            die "run $run, $m failed (log: $log)"
        fi
        read -r wall rss < <(tail -n 1 "$tf")
        WALL[$m:$run]=$wall RSS[$m:$run]=$rss
        if [[ $m = cp || $m = stat ]]; then
            STORED[$m:$run]=
        elif [[ $m = tar ]]; then
            STORED[$m:$run]=$(find "$where" -name '*.tar.gz' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
        else
            STORED[$m:$run]=$(du -sb "$where" | cut -f1)
        fi
    done
done
ELAPSED=$((SECONDS - T0))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# Cross-check: snapshots per cbsnap repository, and how each volume was read.
for m in mount archive; do
    "$CBSNAP" --config "$CFG" --repo "$BENCH_DIR/repo-$m" --json snapshots >"$LOGS/snapshots-$m.json"
    python3 - "$LOGS/snapshots-$m.json" "$m" $((RUNS * ${#VOLUMES[@]})) <<'EOF' || die "unexpected snapshots in the $m repository"
import json, sys
snaps, via, want = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
assert len(snaps) == want, f"{len(snaps)} snapshots, expected {want}"
assert all(s["origin"]["via"] == via for s in snaps), "a volume was not read via " + via
EOF
done

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
label() {
    case $1 in
        mount) echo 'cbsnap `--via mount`' ;;
        archive) echo 'cbsnap `--via archive`' ;;
        tar) echo '`docker run … tar czf` per volume' ;;
        cp) echo 'floor: `docker cp` of each volume to /dev/null' ;;
        stat) echo 'floor: `find` stat walk of the volumes' ;;
    esac
}

echo "### Docker volumes: cbsnap beside \`docker run … tar czf\`"
echo
echo "Three volumes of the compose project \`$PROJECT\`, $(mib "$DATA_BYTES") MiB in $DATA_FILES files"
echo "(\`benches/gen_volumes.py --seed $BENCH_SEED\`): qdrant-data (four float32-like segment files,"
echo "64/48/32/16 MiB), extensions ($EXT_FILES small JS-like files), logs (one 24 MiB log)."
echo "Before runs ${CHANGED_RUNS[0]}–${CHANGED_RUNS[-1]}, a ~1% change: 1 MiB appended to the log, two 1 MiB regions of the"
echo "64 MiB segment rewritten, 12 small files edited and 12 touched; before run $RUNS, no change."
echo "Wall time includes a final \`sync\`; page cache dropped before every step: $( ((CAN_DROP)) && echo yes || echo no)."
echo
echo "| run | method | wall s | peak RSS MiB | stored so far MiB | added by this run MiB |"
echo "|---|---|---:|---:|---:|---:|"
for ((run = 1; run <= RUNS; run++)); do
    for m in "${METHODS[@]}"; do
        if [[ -z ${STORED[$m:$run]} ]]; then
            printf '| %d | %s | %s | %s | | |\n' "$run" "$(label "$m")" "${WALL[$m:$run]}" \
                "$(mib $((RSS[$m:$run] * 1024)))"
            continue
        fi
        prev=0
        ((run == 1)) || prev=${STORED[$m:$((run - 1))]}
        printf '| %d | %s | %s | %s | %s | %s |\n' "$run" "$(label "$m")" "${WALL[$m:$run]}" \
            "$(mib $((RSS[$m:$run] * 1024)))" "$(mib "${STORED[$m:$run]}")" \
            "$(mib $((STORED[$m:$run] - prev)))"
    done
done
echo
echo "Against the floors of issue 9 (same run, same cold cache): \`--via archive\` ÷ \`docker cp\`"
echo "(target ≤ 1.5), \`--via mount\` ÷ the stat walk (target ≤ 2 on the unchanged run $RUNS; runs"
echo "${CHANGED_RUNS[0]}–${CHANGED_RUNS[-1]} read the changed files, a 64 MiB segment among them):"
echo
echo "| run | archive ÷ docker cp | mount ÷ stat walk |"
echo "|---|--:|--:|"
for ((run = 1; run <= RUNS; run++)); do
    printf '| %d | %s | %s |\n' "$run" \
        "$(awk -v a="${WALL[archive:$run]}" -v b="${WALL[cp:$run]}" 'BEGIN { printf "%.2f", a / b }')" \
        "$(awk -v a="${WALL[mount:$run]}" -v b="${WALL[stat:$run]}" 'BEGIN { printf "%.2f", a / b }')"
done
echo
echo "Peak RSS is that of the measured process tree on the host: cbsnap itself, or the"
echo "\`docker\` client for the tar procedure. The work done inside dockerd (the archive"
echo "API for \`--via archive\`) and inside the tar containers is not counted."
echo "The cbsnap repository size includes its RocksDB index and metadata."
echo
echo "Command: \`cargo build --release && benches/docker.sh\` (BENCH_SEED=$BENCH_SEED), ${ELAPSED} s for the runs."
echo "Binary: $CBSNAP_VERSION."
echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)),"
echo "$(free -g | awk '/^Mem:/ {print $2}') GiB RAM, Linux $(uname -r), Docker $(docker version -f '{{.Server.Version}}') ($(docker info -f '{{.Driver}}')),"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); load average (1/5/15 min) $LOAD_START at the start, $LOAD_END at the end."
