#!/usr/bin/env bash
# Side-by-side benchmark: cbsnap, restic, rustic and borg on the same generated corpus
# (benches/gen_corpus.py), optionally with the `tar czf` backups cbsnap
# replaces. Steps, one tool after the other with a cold page cache:
# initial snapshot, unchanged snapshot, changed snapshot after a seeded
# mutation, full restore of the latest snapshot verified against the corpus.
# Records wall time and peak RSS (GNU time) and the repository size. With
# cbsnap and `taskset`, the big-file part of the corpus (the random blobs) is
# also snapshotted pinned to one core and to two, warm cache, to show the
# scaling with cores (and the compute limit the same way, with LIMIT), once
# into a repository on the disk and once, when /dev/shm is a tmpfs with room,
# into one in memory: the engine's scaling without the disk's floor.
#
# Usage: benches/compare.sh [--write-docs]
#   stdout: a Markdown report; progress goes to stderr.
#   --write-docs: also put the report into docs/BENCHMARKS.md between
#   <!-- compare:start --> and <!-- compare:end -->, keeping the rest.
# Environment (defaults):
#   BENCH_DIR=/tmp/cbsnap-bench   work dir: corpus, repositories, logs
#   BENCH_SCALE=1                 corpus size, 1 is ~1 GiB
#   BENCH_SEED=1                  corpus seed
#   BENCH_TOOLS="cbsnap restic rustic borg"   add "tar" for the tar czf baseline
#   CBSNAP=target/release/cbsnap  skipped with a note if missing
#   RUSTIC=rustic                 rustic 0.11 (`cargo install rustic-rs
#                                 --no-default-features`); /work/tools/rustic/bin/rustic
#                                 when that exists and rustic is not on PATH
#   LIMIT=                        the compute-limit program of benches/limit.rs
#                                 (cargo bench --bench limit --no-run prints its
#                                 path); with it, the report adds the floors:
#                                 compute limit, stat walk, cp -a + sync
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/cbsnap-bench}
BENCH_SCALE=${BENCH_SCALE:-1}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_TOOLS=${BENCH_TOOLS:-cbsnap restic rustic borg}
CBSNAP=${CBSNAP:-target/release/cbsnap}
if [[ -z ${RUSTIC:-} ]]; then
    RUSTIC=rustic
    if ! command -v rustic >/dev/null && [[ -x /work/tools/rustic/bin/rustic ]]; then
        RUSTIC=/work/tools/rustic/bin/rustic
    fi
fi
LIMIT=${LIMIT:-}
DOCS=$ROOT/docs/BENCHMARKS.md
HOST=cbsnap-bench   # restic picks the parent snapshot by host and paths
MARKER=.cbsnap-bench
STEPS=(initial unchanged changed)

die() { echo "compare.sh: error: $*" >&2; exit 1; }
say() { echo "compare.sh: $*" >&2; }

WRITE_DOCS=0
for arg in "$@"; do
    case $arg in
        --write-docs) WRITE_DOCS=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

# Check the markers now rather than after a long run.
if ((WRITE_DOCS)) && [[ -f $DOCS ]]; then
    starts=$(grep -c -F '<!-- compare:start -->' "$DOCS" || true)
    ends=$(grep -c -F '<!-- compare:end -->' "$DOCS" || true)
    ((starts == ends && starts <= 1)) ||
        die "$DOCS has unbalanced or repeated compare:start / compare:end markers; fix it by hand"
fi
[[ -x /usr/bin/time ]] || die "GNU time is needed at /usr/bin/time (apt-get install time)"
[[ $BENCH_SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || die "BENCH_SCALE must be a positive number, got '$BENCH_SCALE'"

# Resolve CBSNAP before anything changes directory: a path relative to the
# current directory, else to the repository root, else a command on PATH.
if [[ $CBSNAP != /* ]]; then
    if [[ -e $CBSNAP ]]; then CBSNAP=$PWD/$CBSNAP
    elif [[ -e $ROOT/$CBSNAP ]]; then CBSNAP=$ROOT/$CBSNAP
    elif command -v "$CBSNAP" >/dev/null; then CBSNAP=$(command -v "$CBSNAP")
    else CBSNAP=$ROOT/$CBSNAP
    fi
fi

NOTES=()
TOOLS=()
for tool in $BENCH_TOOLS; do
    case $tool in
        cbsnap)
            if [[ -x $CBSNAP ]]; then TOOLS+=(cbsnap)
            else NOTES+=("cbsnap skipped: no binary at \`$CBSNAP\` (run \`cargo build --release\` or set CBSNAP).")
            fi ;;
        restic | borg | tar)
            if command -v "$tool" >/dev/null; then TOOLS+=("$tool")
            else NOTES+=("$tool skipped: not installed.")
            fi ;;
        rustic)
            if command -v "$RUSTIC" >/dev/null; then TOOLS+=(rustic)
            else NOTES+=("rustic skipped: no \`$RUSTIC\` (\`cargo install rustic-rs --no-default-features\` or set RUSTIC).")
            fi ;;
        *) die "unknown tool '$tool' in BENCH_TOOLS (cbsnap, restic, rustic, borg, tar)" ;;
    esac
done
((${#TOOLS[@]})) || die "no tool to run: ${NOTES[*]}"

# Only ever delete inside a work dir this script made.
if [[ -d $BENCH_DIR && ! -e $BENCH_DIR/$MARKER && -n $(ls -A "$BENCH_DIR") ]]; then
    die "BENCH_DIR=$BENCH_DIR is not empty and was not made by compare.sh; refusing to clear it"
fi
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd -P)
touch "$BENCH_DIR/$MARKER"
rm -rf "${BENCH_DIR:?}"/{corpus,repo,restore,logs,home}
mkdir -p "$BENCH_DIR"/{repo,restore,logs,home}
CORPUS=$BENCH_DIR/corpus
LOGS=$BENCH_DIR/logs

export RESTIC_PASSWORD=cbsnap-bench RESTIC_CACHE_DIR=$BENCH_DIR/home/restic-cache
# rustic reads the same password, keeps its cache here and no config profile.
export RUSTIC_PASSWORD=cbsnap-bench RUSTIC_CACHE_DIR=$BENCH_DIR/home/rustic-cache
export XDG_CONFIG_HOME=$BENCH_DIR/home/config
export BORG_BASE_DIR=$BENCH_DIR/home/borg BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes

CAN_DROP=0
if (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then CAN_DROP=1
else NOTES+=("The page cache could not be dropped between steps (not root?): reads may be warm.")
fi
drop_caches() {
    sync
    if ((CAN_DROP)); then echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; fi
}

declare -A WALL RSS SIZE VERIFY
WARM=0   # 1: measure keeps the page cache (the core-scaling runs)

# run_logged TOOL STEP CMD...: an untimed command (repository init), logged.
run_logged() {
    local tool=$1 step=$2; shift 2
    "$@" >"$LOGS/$tool-$step.log" 2>&1 || {
        tail -n 20 "$LOGS/$tool-$step.log" >&2
        die "$tool $step failed: $*"
    }
}

# measure TOOL STEP DIR CMD...: runs CMD in DIR after dropping the page
# cache. The timed command ends with `sync`, so a tool that leaves its writes
# in the page cache is charged for them like one that fsyncs. GNU time's %M
# is the peak RSS of the largest process in the tree, in KiB.
measure() {
    local tool=$1 step=$2 dir=$3; shift 3
    local log=$LOGS/$tool-$step.log tf=$LOGS/$tool-$step.time wall rss
    if ((WARM)); then sync; else drop_caches; fi
    say "$step: $tool"
    if ! (cd "$dir" && /usr/bin/time -f '%e %M' -o "$tf" sh -c '"$@" && sync' sh "$@") >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "$tool $step failed: $* (log: $log)"
    fi
    read -r wall rss < <(tail -n 1 "$tf")
    WALL[$tool:$step]=$wall
    RSS[$tool:$step]=$rss
}

repo_of() { echo "$BENCH_DIR/repo/$1"; }

init_repo() {
    local tool=$1 repo
    repo=$(repo_of "$tool")
    case $tool in
        cbsnap) run_logged "$tool" init "$CBSNAP" --repo "$repo" init ;;
        restic) run_logged "$tool" init restic -r "$repo" init --repository-version 2 ;;
        rustic) run_logged "$tool" init "$RUSTIC" -r "$repo" --no-progress init ;;
        borg) run_logged "$tool" init borg init -e none "$repo" ;;
        tar) mkdir -p "$repo" ;;
    esac
}

snapshot() {
    local tool=$1 step=$2 repo
    repo=$(repo_of "$tool")
    case $tool in
        cbsnap) measure "$tool" "$step" "$BENCH_DIR" "$CBSNAP" --repo "$repo" -q snapshot --path "$CORPUS" --name corpus ;;
        restic) measure "$tool" "$step" "$BENCH_DIR" restic -r "$repo" backup --host "$HOST" "$CORPUS" ;;
        rustic) measure "$tool" "$step" "$BENCH_DIR" "$RUSTIC" -r "$repo" --no-progress backup --host "$HOST" "$CORPUS" ;;
        borg) measure "$tool" "$step" "$BENCH_DIR" borg create --compression zstd,3 "$repo::$step" "$CORPUS" ;;
        tar) measure "$tool" "$step" "$BENCH_DIR" tar czf "$repo/$step.tar.gz" -C "$CORPUS" . ;;
    esac
    SIZE[$tool:$step]=$(du -sb "$repo" | cut -f1)
    if [[ $tool == cbsnap ]]; then
        "$CBSNAP" --repo "$repo" snapshots --json >"$LOGS/$tool-$step.snapshots.json" 2>&1 ||
            die "cbsnap snapshots --json failed after the $step snapshot (see $LOGS/$tool-$step.snapshots.json)"
    fi
}

# restore TOOL DIR: restores the latest snapshot into the empty DIR and sets
# RESTORED to where the corpus root landed: restic recreates the absolute
# source path under the target, borg extracts the stored path (without its
# leading slash) relative to the current directory.
restore() {
    local tool=$1 dir=$2 repo
    repo=$(repo_of "$tool")
    case $tool in
        cbsnap) measure "$tool" restore "$dir" "$CBSNAP" --repo "$repo" -q restore corpus@latest --to "$dir"
            RESTORED=$dir ;;
        restic) measure "$tool" restore "$dir" restic -r "$repo" restore latest --host "$HOST" --target "$dir"
            RESTORED=$dir$CORPUS ;;
        rustic) measure "$tool" restore "$dir" "$RUSTIC" -r "$repo" --no-progress restore "latest:$CORPUS" "$dir"
            RESTORED=$dir ;;
        borg) measure "$tool" restore "$dir" borg extract "$repo::${STEPS[-1]}"
            RESTORED=$dir/${CORPUS#/} ;;
        tar) measure "$tool" restore "$dir" tar xzf "$repo/${STEPS[-1]}.tar.gz" -C "$dir"
            RESTORED=$dir ;;
    esac
}

# Path, type, permissions and link target of everything below $1 (not $1
# itself: its metadata belongs to the restore target for some tools).
listing() { (cd "$1" && find . -mindepth 1 -printf '%P\t%y\t%m\t%l\n' | LC_ALL=C sort); }
mtimes() { (cd "$1" && find . -type f -printf '%P\t%T@\n' | awk -F'\t' '{ printf "%s\t%d\n", $1, $2 }' | LC_ALL=C sort); }

verify() {
    local tool=$1 got=$2 out=$LOGS/$1-verify n
    [[ -d $got ]] || die "$tool: restored corpus not found at $got (log: $LOGS/$tool-restore.log)"
    diff -r --no-dereference "$CORPUS" "$got" >"$out.diff" 2>&1 ||
        die "$tool: RESTORE DIFFERS from the corpus: $(wc -l <"$out.diff") lines in $out.diff"
    diff <(listing "$CORPUS") <(listing "$got") >"$out.meta" ||
        die "$tool: restored types, modes or link targets differ: $out.meta"
    n=$(diff <(mtimes "$CORPUS") <(mtimes "$got") | grep -c '^>' || true)
    if ((n)); then VERIFY[$tool]="ok, $n mtimes differ"; else VERIFY[$tool]=ok; fi
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

START_TIME=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

say "generating corpus (scale $BENCH_SCALE, seed $BENCH_SEED) in $CORPUS"
GEN=$(python3 "$ROOT/benches/gen_corpus.py" --out "$CORPUS" --seed "$BENCH_SEED" --scale "$BENCH_SCALE")
say "$GEN"
DIGEST=${GEN#digest=}; DIGEST=${DIGEST%% *}
TREES=("$CORPUS"/code-server-extensions "$CORPUS"/mcp-github-node_modules "$CORPUS"/mcp-gitlab-node_modules)
SRC_BYTES=$(du -sbc "${TREES[@]}" | tail -n 1 | cut -f1)
SRC_FILES=$(find "${TREES[@]}" -type f | wc -l)
SQL_BYTES=$(du -sb "$CORPUS"/indexer-data | cut -f1)
BLOB_BYTES=$(du -sb "$CORPUS"/ollama/models/blobs | cut -f1)
BLOB_COUNT=$(find "$CORPUS"/ollama/models/blobs -type f | wc -l)
ALL_BYTES=$(du -sb "$CORPUS" | cut -f1)
ALL_FILES=$(find "$CORPUS" -type f | wc -l)

for tool in "${TOOLS[@]}"; do init_repo "$tool"; done
for step in "${STEPS[@]}"; do
    if [[ $step == changed ]]; then
        say "mutating corpus"
        MUT=$(python3 "$ROOT/benches/gen_corpus.py" --out "$CORPUS" --seed "$BENCH_SEED" --mutate)
        say "$MUT"
        MUT_DIGEST=${MUT#digest=}; MUT_DIGEST=${MUT_DIGEST%% *}
    fi
    for tool in "${TOOLS[@]}"; do snapshot "$tool" "$step"; done
done
# The floors each step is compared with, in the same run and the same conditions
# (cold page cache, final sync): the compute limit for an initial snapshot, a
# stat of every entry for an unchanged one, cp -a for a restore.
FLOORS=()
if [[ -n $LIMIT ]]; then
    [[ -x $LIMIT ]] || die "LIMIT=$LIMIT is not an executable (cargo bench --bench limit --no-run)"
    FLOORS=(limit stat cp)
    measure limit floor "$BENCH_DIR" "$LIMIT" "$CORPUS"
    measure stat floor "$BENCH_DIR" find "$CORPUS" -printf '%s %T@ %C@ %i\n'
    rm -rf "$BENCH_DIR/restore/cp"
    measure cp floor "$BENCH_DIR" cp -a "$CORPUS" "$BENCH_DIR/restore/cp"
    rm -rf "$BENCH_DIR/restore/cp"
fi
for tool in "${TOOLS[@]}"; do
    dir=$BENCH_DIR/restore/$tool
    mkdir -p "$dir"
    restore "$tool" "$dir"
    say "verifying $tool restore"
    verify "$tool" "$RESTORED"
    rm -rf "$dir"   # kept on failure (die above) for inspection
done

# Scaling with cores: the random blobs (the big-file part of the corpus) into a
# new repository each run, warm cache, pinned with taskset to one core and to
# two; one, two, one, two, the faster of each kept. The compute limit likewise.
# The same snapshot into a repository on tmpfs (/dev/shm, if it is one and has
# room for two copies of the blobs) is the engine's scaling without the disk.
CORE_SETS=()
BIG=$CORPUS/ollama/models/blobs
SHM_REPO=
if [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]] &&
    (($(df --output=avail -B1 /dev/shm | tail -n 1) > 2 * BLOB_BYTES)); then
    SHM_REPO=/dev/shm/cbsnap-bench-cores.$$
    trap 'rm -rf "$SHM_REPO"' EXIT
fi
if [[ " ${TOOLS[*]} " != *" cbsnap "* ]]; then :
elif ! command -v taskset >/dev/null || (($(nproc) < 2)); then
    NOTES+=("Scaling with cores not measured: it needs \`taskset\` (util-linux) and 2 CPUs.")
else
    CORE_SETS=(0 0,1)
    # big_snapshot WHAT REPO: the blobs into a new repository at REPO, on $cores.
    big_snapshot() {
        rm -rf "$2"
        run_logged cbsnap "init-$1" "$CBSNAP" --repo "$2" init
        measure "$1" "$cores.$round" "$BENCH_DIR" taskset -c "$cores" "$CBSNAP" --repo "$2" -q snapshot --path "$BIG" --name big
        rm -rf "$2"
    }
    cat "$BIG"/* >/dev/null
    WARM=1
    for round in 1 2; do
        for cores in "${CORE_SETS[@]}"; do
            big_snapshot big-cbsnap "$BENCH_DIR/repo/cbsnap-cores"
            if [[ -n $SHM_REPO ]]; then big_snapshot big-tmpfs "$SHM_REPO"; fi
            if [[ -n $LIMIT ]]; then
                measure big-limit "$cores.$round" "$BENCH_DIR" taskset -c "$cores" "$LIMIT" "$BIG"
            fi
            # The same bytes written by cp: what the disk allows a snapshot that stores them.
            rm -rf "$BENCH_DIR/cores-cp"
            measure big-cp "$cores.$round" "$BENCH_DIR" taskset -c "$cores" cp -r "$BIG" "$BENCH_DIR/cores-cp"
            rm -rf "$BENCH_DIR/cores-cp"
        done
    done
    WARM=0
    for what in big-cbsnap big-tmpfs big-limit big-cp; do
        for cores in "${CORE_SETS[@]}"; do
            [[ -n ${WALL[$what:$cores.1]:-} ]] || continue
            WALL[$what:$cores]=$(awk -v a="${WALL[$what:$cores.1]}" -v b="${WALL[$what:$cores.2]}" 'BEGIN { print (a < b ? a : b) }')
        done
    done
fi
RUN_SECONDS=$SECONDS
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

version() {
    case $1 in
        cbsnap) "$CBSNAP" --version 2>/dev/null | head -n 1 || echo "cbsnap (no --version)" ;;
        restic) restic version | cut -d' ' -f1-2 ;;
        rustic) "$RUSTIC" --version | head -n 1 ;;
        borg) borg --version ;;
        tar) echo "$(tar --version | head -n 1), $(gzip --version | head -n 1)" ;;
    esac
}
settings() {
    case $1 in
        cbsnap) echo "defaults" ;;
        restic) echo "repository v2, compression auto (zstd), password set" ;;
        rustic) echo "defaults (repository v2, zstd 3), password set" ;;
        borg) echo "\`init -e none\`, \`create --compression zstd,3\`, default chunker" ;;
        tar) echo "\`tar czf\` per snapshot, as the current backup script" ;;
    esac
}

report() {
    local cmd="benches/compare.sh --write-docs"
    [[ $BENCH_TOOLS == "cbsnap restic rustic borg" ]] || cmd="BENCH_TOOLS=\"$BENCH_TOOLS\" $cmd"
    cmd="BENCH_SCALE=$BENCH_SCALE BENCH_SEED=$BENCH_SEED $cmd"
    echo "## Side by side: ${TOOLS[*]} (\`benches/compare.sh\`)"
    echo
    echo "Run on $START_TIME; reproduce from the repository root with:"
    echo
    echo "    cargo build --release"
    echo "    $cmd"
    echo
    echo "Each tool snapshots the whole corpus directory as one source: an **initial** snapshot,"
    echo "an **unchanged** one (same data again), a **changed** one after \`gen_corpus.py --mutate\`"
    echo "(edits ~1% of the source-tree files, adds and deletes ~0.2%, rewrites 1% of the SQLite"
    echo "rows and adds 0.5%, overwrites four 1 MiB regions of the largest blob), then a full"
    echo "**restore** of the latest snapshot into an empty directory, checked with \`diff -r\`"
    echo "and a comparison of types, modes and link targets. Tools run one after the other;"
    echo "before each step the page cache is dropped. Wall time and peak RSS come from"
    echo "GNU \`time -f '%e %M'\`, wall time includes a final \`sync\`; the repository size is"
    echo "\`du -sb\` after each snapshot."
    echo
    echo "- Machine: $(nproc) CPUs ($(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')),"
    echo "  $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, Linux $(uname -r),"
    echo "  work dir on $(df -T "$BENCH_DIR" | awk 'NR == 2 { print $2 }')."
    for tool in "${TOOLS[@]}"; do
        echo "- $(version "$tool"): $(settings "$tool")."
    done
    echo "- Corpus (scale $BENCH_SCALE, seed $BENCH_SEED): $ALL_FILES files, $(mib "$ALL_BYTES") MiB —"
    echo "  source trees $SRC_FILES files / $(mib "$SRC_BYTES") MiB, SQLite $(mib "$SQL_BYTES") MiB,"
    echo "  $BLOB_COUNT random blobs $(mib "$BLOB_BYTES") MiB. Digest \`${DIGEST:0:16}\`, after mutation"
    echo "  \`${MUT_DIGEST:0:16}\` (python $(python3 -c 'import platform, sqlite3; print(platform.python_version(), "/ sqlite", sqlite3.sqlite_version)'))."
    echo "- Full run: $((RUN_SECONDS / 60)) min $((RUN_SECONDS % 60)) s, including corpus generation and verification."
    echo "- Load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $LOAD_END."
    for note in "${NOTES[@]}"; do echo "- $note"; done
    echo
    echo "| step | tool | wall (s) | peak RSS (MiB) | repository (MiB) | added (MiB) |"
    echo "|---|---|--:|--:|--:|--:|"
    local step tool
    local -A prev
    for step in "${STEPS[@]}" restore; do
        for tool in "${TOOLS[@]}"; do
            if [[ $step == restore ]]; then
                printf '| restore (%s) | %s | %s | %s | | |\n' "${VERIFY[$tool]}" "$tool" \
                    "${WALL[$tool:$step]}" "$(mib $((RSS[$tool:$step] * 1024)))"
                continue
            fi
            printf '| %s | %s | %s | %s | %s | %s |\n' "$step" "$tool" "${WALL[$tool:$step]}" \
                "$(mib $((RSS[$tool:$step] * 1024)))" "$(mib "${SIZE[$tool:$step]}")" \
                "$(mib $((SIZE[$tool:$step] - ${prev[$tool]:-0})))"
            prev[$tool]=${SIZE[$tool:$step]}
        done
    done
    ratios
    cores_table
}

# The core-scaling runs, if any.
cores_table() {
    ((${#CORE_SETS[@]})) || return 0
    echo
    echo "Scaling with cores: a snapshot of the $BLOB_COUNT random blobs ($(mib "$BLOB_BYTES") MiB) into a new"
    echo "repository, warm page cache, pinned with \`taskset -c 0\` (1 core) and \`taskset -c 0,1\`"
    echo "(2 cores); the faster of two runs each, wall seconds including \`sync\`:"
    echo
    echo "| what | 1 core (s) | 2 cores (s) | 2 cores ÷ 1 core speed-up |"
    echo "|---|--:|--:|--:|"
    local what
    for what in big-cbsnap big-tmpfs big-limit big-cp; do
        [[ -n ${WALL[$what:0]:-} ]] || continue
        printf '| %s | %s | %s | %s |\n' "$(core_row "$what")" "${WALL[$what:0]}" "${WALL[$what:0,1]}" \
            "$(ratio "${WALL[$what:0]}" "${WALL[$what:0,1]}")"
    done
    echo
    echo "**cp** is \`cp -r\` of the blobs + \`sync\`: it writes the bytes a snapshot of them stores"
    echo "(they do not compress), so its time is the disk's floor for cbsnap's 2-core run:"
    echo "cbsnap ÷ cp on 2 cores $(ratio "${WALL[big-cbsnap:0,1]}" "${WALL[big-cp:0,1]}")."
    if [[ -n ${WALL[big-tmpfs:0]:-} ]]; then
        echo "**cbsnap, repository on tmpfs** is the same snapshot into a repository in \`/dev/shm\`:"
        echo "no disk writes, so it shows how the engine itself scales."
    fi
}

core_row() {
    case $1 in
        big-tmpfs) echo "cbsnap, repository on tmpfs" ;;
        *) echo "${1#big-}" ;;
    esac
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

# Ratios of wall times measured in this run: how many times faster cbsnap is
# than each peer, and how close it comes to the floors.
ratios() {
    [[ " ${TOOLS[*]} " == *" cbsnap "* ]] || return 0
    local step tool peers=()
    for tool in "${TOOLS[@]}"; do [[ $tool == cbsnap ]] || peers+=("$tool"); done
    echo
    echo "Ratios (wall time of the other ÷ cbsnap's: above 1 means cbsnap is faster):"
    echo
    local head="| step |" rule="|---|"
    for tool in "${peers[@]}"; do head+=" $tool |"; rule+="--:|"; done
    ((${#FLOORS[@]})) && { head+=" floor | cbsnap ÷ floor |"; rule+="---|--:|"; }
    echo "$head"
    echo "$rule"
    for step in "${STEPS[@]}" restore; do
        local row="| $step |"
        for tool in "${peers[@]}"; do row+=" $(ratio "${WALL[$tool:$step]}" "${WALL[cbsnap:$step]}") |"; done
        if ((${#FLOORS[@]})); then
            local floor=""
            case $step in
                initial) floor=limit ;;
                unchanged) floor=stat ;;
                restore) floor=cp ;;
            esac
            if [[ -n $floor ]]; then
                row+=" $floor ${WALL[$floor:floor]} s | $(ratio "${WALL[cbsnap:$step]}" "${WALL[$floor:floor]}") |"
            else
                row+=" | |"
            fi
        fi
        echo "$row"
    done
    if ((${#FLOORS[@]})); then
        echo
        echo "Floors, cold cache, each ending with \`sync\`: **limit** = \`benches/limit.rs\` (read every"
        echo "file, FastCDC, BLAKE3, zstd 3 on all cores, write nothing), **stat** = \`find -printf\`"
        echo "of size, mtime, ctime and inode of every entry, **cp** = \`cp -a\` of the corpus."
    fi
}

REPORT=$LOGS/report.md
report >"$REPORT"
cat "$REPORT"

if ((WRITE_DOCS)); then
    python3 - "$DOCS" "$REPORT" <<'EOF'
import os, sys

path, report = sys.argv[1:]
START, END = "<!-- compare:start -->", "<!-- compare:end -->"
INTRO = """# cbsnap benchmarks

Speed and size of cbsnap, measured by the scripts in `benches/` (see
`benches/README.md`). Each section is written by its script between its own
`<!-- name:start -->` / `<!-- name:end -->` markers and is replaced on the
next run; write anything else outside the markers.
"""
section = START + "\n" + open(report).read().rstrip("\n") + "\n" + END
if os.path.exists(path):
    doc = open(path).read()
    s, e = doc.find(START), doc.find(END)
    if s == -1 and e == -1:
        doc = doc.rstrip("\n") + "\n\n" + section + "\n"
    elif s == -1 or e == -1 or e < s:
        sys.exit(f"compare.sh: error: {path} has unbalanced {START} / {END} markers; fix it by hand")
    else:
        doc = doc[:s] + section + doc[e + len(END):]
else:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = INTRO + "\n" + section + "\n"
with open(path + ".tmp", "w") as f:
    f.write(doc)
os.replace(path + ".tmp", path)
EOF
    say "wrote $DOCS"
fi
say "done in ${RUN_SECONDS}s; corpus, repositories and logs are in $BENCH_DIR"
