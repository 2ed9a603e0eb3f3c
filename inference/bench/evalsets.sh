#!/usr/bin/env bash
# Evaluates one models directory (its hearth-intent/ heads, the frozen
# encoder beside them) on the five evaluation sets with one engine: the
# per-set rows of docs/perf.md's inference tables (passes, harmful plans,
# clarifying questions, p50/p95, peak RSS). Release build.
#
#   inference/bench/evalsets.sh MODELS [OUT_DIR] [-- --set NAME=VALUE ...]
#
# Reports go to OUT_DIR (default /tmp/hearth-evalsets)/<set>.json.
# HEARTH_EVAL_SETS names other sets of inference/eval/ instead of the five
# (e.g. "hunt split-negations asides"; docs/perf.md's figures for those).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: $0 MODELS [OUT_DIR] [-- EVAL-ARGS...]" >&2; exit 2; }
models=$1; shift
out=/tmp/hearth-evalsets
if [ $# -ge 1 ] && [ "$1" != "--" ]; then out=$1; shift; fi
[ "${1:-}" = "--" ] && shift
mkdir -p "$out"
cargo build -q --release -p hearth-inference --bin hearth-intent-eval
total=0; harmful=0
sets=${HEARTH_EVAL_SETS:-dev holdout probes challenge outside}
for set in $sets; do
    # Exits non-zero when a case fails; the report is what is read.
    rm -f "$out/$set.json"
    target/release/hearth-intent-eval --models "$models" --catalog catalog \
        --cases "inference/eval/$set.jsonl" --report "$out/$set.json" "$@" >/dev/null 2>&1 || true
    [ -s "$out/$set.json" ] || { echo "$set: no report written" >&2; exit 1; }
    read -r p h line < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); s = r["summary"]
clarify = sum(1 for c in r["cases"] if c["got"].get("kind") == "clarify")
print(s["passed"], s["harmful"], "%s: %d/%d passed, %d harmful, %d clarify, p50 %.1f ms, p95 %.1f ms, peak RSS %.0f MB" % (
    sys.argv[2], s["passed"], s["passed"] + s["failed"], s["harmful"], clarify,
    s["p50_ms"], s["p95_ms"], s["peak_rss_mb"]))
' "$out/$set.json" "$set")
    echo "$line"
    total=$((total + p)); harmful=$((harmful + h))
done
if [ -z "${HEARTH_EVAL_SETS:-}" ]; then
    echo "all five: $total passed, $harmful harmful"
else
    echo "all of $sets: $total passed, $harmful harmful"
fi
