#!/usr/bin/env bash
# The crash harness (tests/safety/crash.rs, crash_harness_kills_mid_run) for longer:
#
#   scripts/crash.sh [KILLS] [SEED]      default 500 kills, a random seed
#
# Every kill lands while snapshot, prune, restore or check runs (kills after the
# command finished are not counted); each is followed by check --read-data, byte-exact
# restores of every snapshot and a successful rerun. Record runs in docs/CRASH.md.
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-500}
seed=${2:-$RANDOM}
echo "crash harness: $kills kills, seed $seed" >&2
CBSNAP_CRASH_KILLS=$kills CBSNAP_CRASH_SEED=$seed \
  cargo test --test tests -- safety::crash::crash_harness_kills_mid_run --exact --nocapture 2>&1 |
  grep -E "crash harness|panicked|test result|assert"
