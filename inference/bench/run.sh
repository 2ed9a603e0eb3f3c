#!/usr/bin/env bash
# The inference benchmark of docs/perf.md in one run: the learned
# interpreter on every evaluation set (pass rate, harmful plans, latency,
# RSS, pass rate per category), beside the deleted word-list engine (the
# ablation anchor: the tree at $RULES_COMMIT, built into a worktree) on the
# same sets in the same run.
#
#   inference/bench/run.sh            # from the repository root, after scripts/setup
#   PROFILE=release inference/bench/run.sh   # latency figures for perf.md
#   RULES_TREE=/tmp/oldtree RULES_BIN=/tmp/old-intent-eval inference/bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT_DIR:-/tmp/hearth-inference-bench}
profile=${PROFILE:-dev}
rules_commit=${RULES_COMMIT:-0912e57}
mkdir -p "$out"
dir=debug; flag=()
[ "$profile" = release ] && { dir=release; flag=(--release); }
scripts/train-intent
cargo build "${flag[@]}" -q -p hearth-inference --bin hearth-intent-eval
new=${CARGO_TARGET_DIR:-target}/$dir/hearth-intent-eval
old_tree=${RULES_TREE:-/tmp/hearth-rules-engine}
if [ ! -d "$old_tree" ]; then
    git worktree add -f "$old_tree" "$rules_commit" >/dev/null
fi
# RULES_BIN: an already built evaluation binary of that tree (skips the build).
old=${RULES_BIN:-}
if [ -z "$old" ]; then
    target="$(dirname "$old_tree")/hearth-rules-target"
    (cd "$old_tree" && CARGO_TARGET_DIR="$target" cargo build "${flag[@]}" -q -p hearth-inference --bin hearth-intent-eval)
    old="$target/$dir/hearth-intent-eval"
fi

echo "== $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), profile $profile"
for set in dev holdout probes challenge; do
    for engine in learned rules; do
        # Each engine with the catalog of its own tree (the rules engine's
        # has no [language] sections, no unit and no dns.update_record).
        bin=$new; models=models; catalog=catalog
        [ "$engine" = rules ] && { bin=$old; catalog="$old_tree/playbooks"; }
        report="$out/$set-$engine.json"
        # The evaluation exits 1 when a case fails; the report says which.
        /usr/bin/time -f %M -o "$out/$set-$engine.rss" "$bin" --models "$models" --catalog "$catalog" \
            --cases "inference/eval/$set.jsonl" --report "$report" >/dev/null 2>"$out/$set-$engine.err" || true
    done
done
python3 - "$out" <<'PY'
import json, sys, collections
out = sys.argv[1]
read = {"net.show", "dns.list_records", "pki.list_certificates", "attest.status", "device.list"}
cats = {}
for line in open("inference/eval/challenge.jsonl"):
    line = line.strip()
    if line and not line.startswith("//"):
        c = json.loads(line)
        cats[c["text"]] = c.get("category", "-")
def harmful(case):
    g = case["got"]
    return (not case["pass"]) and g.get("kind") == "plan" and g.get("playbook") not in read
print(f'{"set":10} {"engine":8} {"passed":>12} {"harmful":>8} {"p50 ms":>7} {"p95 ms":>7} {"RSS MB":>7}')
per_cat = collections.defaultdict(dict)
for s in ["dev", "holdout", "probes", "challenge"]:
    for e in ["learned", "rules"]:
        try:
            r = json.load(open(f"{out}/{s}-{e}.json"))
        except FileNotFoundError:
            print(f"{s:10} {e:8} (no report)")
            continue
        m = r["summary"]; n = m["passed"] + m["failed"]
        h = sum(harmful(c) for c in r["cases"])
        rss = int(open(f"{out}/{s}-{e}.rss").read().split()[-1]) / 1024
        print(f'{s:10} {e:8} {m["passed"]:>4}/{n:<4} {100*m["passed"]/n:5.1f}% {h:>4} {m["p50_ms"]:7.1f} {m["p95_ms"]:7.1f} {rss:7.0f}')
        if s == "challenge":
            for c in r["cases"]:
                k = cats.get(c["text"], "-")
                t = per_cat[k].setdefault(e, [0, 0, 0])
                t[0] += c["pass"]; t[1] += 1; t[2] += harmful(c)
print()
print(f'{"category":14} {"learned":>16} {"rules":>16}')
for k in sorted(per_cat):
    l = per_cat[k].get("learned", [0, 0, 0]); r = per_cat[k].get("rules", [0, 0, 0])
    print(f'{k:14} {l[0]:>3}/{l[1]:<3} harm {l[2]:<2}   {r[0]:>3}/{r[1]:<3} harm {r[2]:<2}')
PY
