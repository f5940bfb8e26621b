#!/usr/bin/env bash
# Run every cargo-fuzz target of fuzz/ for SECONDS each (default 20, the CI run of
# scripts/test.sh), after replaying its regressions. For long runs:
#
#   scripts/fuzz.sh 3600             # one hour per target
#   JOBS=2 scripts/fuzz.sh 14400     # four hours per target, two libFuzzer jobs
#
# and record the run in docs/FUZZING.md. The corpus grows in fuzz/corpus/<target>,
# crashes land in fuzz/artifacts/<target>/ and make this script fail.
# Needs nightly flags: RUSTC_BOOTSTRAP=1 on stable, as fuzz/README.md explains.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-20}
jobs=${JOBS:-1}
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi
cargo fuzz build
for t in $(cargo fuzz list); do
  # Regressions first: each once broke a property and must pass now. (`*.py` are
  # generators of inputs too large to commit.)
  for r in regressions/"$t"-*; do
    [ -f "$r" ] || continue
    case $r in *.py) continue ;; esac
    cargo fuzz run "$t" "$r" -- -runs=1 >/dev/null 2>&1 || { echo "fuzz: regression $r fails" >&2; exit 1; }
  done
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${secs}s" >&2
  par=()
  [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
  cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" "${par[@]}" \
    -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|==|SUMMARY|Done)" || true
  if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz: $t found crashes: fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
