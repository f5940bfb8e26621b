#!/usr/bin/env bash
# Run every test of cbsnap on a fresh Debian machine: installs the build and test
# dependencies (as root), starts a Docker engine if none answers (and stops it
# again) and the S3 (moto) and SFTP (sshd) test servers on 127.0.0.1, then runs the
# format check, clippy and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh --test
started=$(scripts/docker-up.sh)
cleanup() {
  if [ -n "${started:-}" ]; then
    kill "$started" 2>/dev/null || true
    wait "$started" 2>/dev/null || true
  fi
  scripts/test-servers.sh down || true
}
trap cleanup EXIT
# The S3 (moto) and SFTP (sshd) servers of the backend tests, on 127.0.0.1; their
# locations reach the tests as CBSNAP_TEST_S3 / CBSNAP_TEST_SFTP and AWS_*.
eval "$(scripts/test-servers.sh start)"

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
# A short run of every fuzz target (~20 s each, after a one-time fuzz build); long
# runs: scripts/fuzz.sh SECONDS, recorded in docs/FUZZING.md.
scripts/fuzz.sh 20
