#!/usr/bin/env bash
# Trains the intent heads of a tree at several seeds and evaluates each
# training on the five evaluation sets: the "seeds per variant" tables of
# docs/perf.md and decision 070 (passes and harmful plans per set). One
# training takes about 9 minutes on 2 cores.
#
#   inference/bench/seeds.sh 20261203 20261303 20261403
#   TREE=/tmp/recipe6 inference/bench/seeds.sh 20261203   # another commit's
#       recipe: a worktree of it (git worktree add /tmp/recipe6 6b784ad)
#
# Each seed's weights and reports go to $OUT_DIR/<seed>/ (default
# /tmp/hearth-seeds); one line per set is printed and appended to
# $OUT_DIR/results.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tree=${TREE:-$root}
out=${OUT_DIR:-/tmp/hearth-seeds}
[ $# -ge 1 ] || { echo "usage: $0 SEED..." >&2; exit 2; }
mkdir -p "$out"
(cd "$tree" && cargo build -q -p hearth-inference --bin hearth-intent-train --bin hearth-intent-eval)
bin=$tree/${CARGO_TARGET_DIR:-target}/debug
catalog=$tree/catalog
[ -d "$catalog" ] || catalog=$tree/playbooks   # trees before the rename
for seed in "$@"; do
    d=$out/$seed
    mkdir -p "$d"
    ln -sfn "$root/models/all-MiniLM-L6-v2" "$d/all-MiniLM-L6-v2"
    "$bin/hearth-intent-train" --models "$d" --catalog "$catalog" --force --seed "$seed" \
        >"$d/train.log" 2>&1
    for set in dev holdout probes challenge outside; do
        HEARTH_MODELS_DIR=$d HEARTH_PLAYBOOKS_DIR=$catalog "$bin/hearth-intent-eval" \
            --cases "$root/inference/eval/$set.jsonl" --report "$d/$set.json" >/dev/null
        python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print("seed %s %s: %d passed, %d failed, %d harmful" % (sys.argv[2], sys.argv[3], s["passed"], s["failed"], s["harmful"]))
' "$d/$set.json" "$seed" "$set" | tee -a "$out/results.txt"
    done
done
