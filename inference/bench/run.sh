#!/usr/bin/env bash
# The inference benchmark of docs/perf.md in one run: the ablation (default,
# retrieval, llm) on the development and hold-out sets, then the instruct
# model's tokens per second beside llama.cpp on the same GGUF and threads.
#
#   inference/bench/run.sh            # from the repository root, after scripts/setup
#
# llama.cpp comes from llama-cpp-python (PyPI), which compiles llama.cpp: it
# is installed into $LLAMA_VENV (default .build-venv/llama) on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=2
out=${OUT_DIR:-/tmp/hearth-inference-bench}
mkdir -p "$out"
cargo build --release -q -p hearth-inference --bin hearth-intent-eval --bin hearth-llm-bench
bin=${CARGO_TARGET_DIR:-target}/release

echo "== ablation ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
for mode in default retrieval llm; do
    for set in dev holdout; do
        report="$out/$set-$mode.json"
        # The evaluation exits 1 when a case fails; the report says which.
        /usr/bin/time -f %M -o "$out/$set-$mode.rss" "$bin/hearth-intent-eval" \
            --cases "inference/eval/$set.jsonl" --report "$report" --mode "$mode" \
            >/dev/null 2>"$out/$set-$mode.err" || true
        python3 - "$report" "$mode" "$set" "$(tail -1 "$out/$set-$mode.rss")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["summary"]
n = r["passed"] + r["failed"]
print(f'{sys.argv[2]:9} {sys.argv[3]:8} {r["passed"]}/{n} passed ({100*r["passed"]/n:.1f}%)  '
      f'p50 {r["p50_ms"]:.0f} ms  p95 {r["p95_ms"]:.0f} ms  '
      f'peak RSS {r["peak_rss_mb"]:.0f} MB ({int(sys.argv[4]) / 1024:.0f} by time)')
PY
        grep -h "loaded models" "$out/$set-$mode.err" | sed 's/^/          /'
    done
done

echo "== tokens per second, ${threads} threads"
gguf=models/SmolLM2-135M-Instruct.Q4_1.gguf
"$bin/hearth-llm-bench" "$gguf" --prompt-tokens 145 --gen 20 2>/dev/null
venv=${LLAMA_VENV:-.build-venv/llama}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q numpy llama-cpp-python==0.3.36
fi
"$venv/bin/python" inference/bench/llama_cpp_bench.py "$gguf" 145 20 "$threads"
