#!/usr/bin/env bash
# A test tree of MIB MiB for the encryption and remote benchmarks: half incompressible
# "model" files of 16 MiB (random), half text files of 256 KiB (seeded, so two runs
# make the same text).
#
# Usage: benches/make_tree.sh DIR MIB      (DIR/random and DIR/text are created)
set -euo pipefail
dir=$1 mib=$2
mkdir -p "$dir/text" "$dir/random"
half=$((mib / 2))
for i in $(seq 1 $((half / 16))); do
    head -c $((16 << 20)) /dev/urandom >"$dir/random/blob$i"
done
python3 - "$dir/text" "$half" <<'PY'
import random, sys, os
d, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
words = "fn let mut impl struct return self match Some None Vec String usize".split()
for i in range(mib * 4):
    with open(os.path.join(d, f"f{i:05}.rs"), "w") as f:
        n = 0
        while n < 256 * 1024:
            line = " ".join(rng.choice(words) for _ in range(12)) + f" // {rng.randrange(10**9)}\n"
            f.write(line)
            n += len(line)
PY
