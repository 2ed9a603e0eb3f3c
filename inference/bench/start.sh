#!/usr/bin/env bash
# hearth-intentd's start-up of docs/perf.md: from the spawn of the release
# binary to its READY=1 on the notify socket, with both models and the signed
# catalog loaded, on a private system bus (the sandbox's own measurement,
# DIR/ready-ms). Five starts; prints each and the median.
#
#   inference/bench/start.sh          # from the repository root, as root, after scripts/setup
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-5}
cargo build --release -q -p hearth-testbed -p hearth-intentd --bins
scripts/sign-catalog >/dev/null 2>&1
bin=${CARGO_TARGET_DIR:-target}/release
echo "== hearth-intentd start to READY ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
times=()
for i in $(seq "$runs"); do
    dir=$(mktemp -d /tmp/hearth-start.XXXXXX)
    "$bin/hearth-sandbox" up "$dir" --only intentd >/dev/null
    ms=$(awk '$1 == "hearth-intentd" { print $2 }' "$dir/ready-ms")
    grep -h "loaded models\|inference device" "$dir/log/hearth-intentd.log" | tail -1 | sed 's/^/    /' || true
    "$bin/hearth-sandbox" down "$dir" >/dev/null
    echo "start $i: ${ms} ms"
    times+=("$ms")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print "median: " a[int((NR + 1) / 2)] " ms of " NR " starts" }'
