#!/usr/bin/env bash
# Load benchmark: dnsperf against hearth-dnsd and, in the same run, against
# dnsmasq serving the same records, both on loopback, each for a bounded time.
#
#   daemons/dnsd/bench/run.sh [SECONDS] [CLIENTS]
#
# Needs: dnsperf, dnsmasq (dnsmasq-base), dbus-daemon, dig; builds hearth-dnsd
# in release mode (CARGO_TARGET_DIR respected; PROFILE=dev uses the dev build,
# whose dependencies are optimized too, when a release build is too costly). Traffic goes to 127.0.0.1 only.
# Prints a Markdown table and leaves the raw dnsperf outputs in $OUT_DIR
# (default: a temporary directory, removed unless KEEP=1).
#
# After the throughput runs, a latency run per server (same clients and
# outstanding queries, dnsperf -v, LAT_SECONDS each, default 5) gives the
# p50/p99 of every answered query; it is separate because printing each
# answer costs dnsperf CPU that the throughput runs should not pay.
# LAT_SECONDS=0 skips it.
#
# "server CPU" is the user+system time the server process used during its
# throughput run (/proc/PID/stat), "CPU per query" that over the queries
# sent: on a shared machine it moves less with the load than qps does.
#
# PERF_DATA=/path/perf.data records `perf record -g` (DWARF call graphs) of
# hearth-dnsd during its throughput run (needs linux-perf).
set -euo pipefail

SECONDS_EACH=${1:-10}
CLIENTS=${2:-4}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/hearth-dnsd-bench.XXXXXX)
OUT_DIR=${OUT_DIR:-$WORK/out}
mkdir -p "$OUT_DIR"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket
s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_answer() { # port name
    for _ in $(seq 1 100); do
        if dig @127.0.0.1 -p "$1" +time=1 +tries=1 +short "$2" A 2>/dev/null | grep -q .; then
            return 0
        fi
        sleep 0.1
    done
    echo "no answer for $2 on port $1" >&2
    return 1
}

PROFILE=${PROFILE:-release}
echo "building hearth-dnsd ($PROFILE)..." >&2
(cd "$ROOT" && cargo build --profile "$PROFILE" -p hearth-dnsd --bin hearth-dnsd >&2)
if [[ $PROFILE == dev ]]; then DNSD=$TARGET/debug/hearth-dnsd; else DNSD=$TARGET/$PROFILE/hearth-dnsd; fi

# The same records for both servers: 200 hosts with an A record, 50 also
# with AAAA, 50 aliases.
HOSTS=$WORK/hosts
STATE=$WORK/state
mkdir -p "$STATE"
python3 - "$HOSTS" "$STATE/zones.json" "$WORK/queries" <<'PY'
import json, sys
hosts_path, state_path, queries_path = sys.argv[1:4]
names = {}
hosts = []
queries = []
for i in range(200):
    n = f"host{i}.home.arpa"
    v4 = f"192.168.{i // 250 + 10}.{i % 250 + 1}"
    addrs = [v4]
    hosts.append(f"{v4} {n}")
    if i < 50:
        v6 = f"fd00::{i + 1:x}"
        addrs.append(v6)
        hosts.append(f"{v6} {n}")
        queries.append(f"{n} AAAA")
    names[n] = {"addresses": addrs}
    queries.append(f"{n} A")
for i in range(50):
    names[f"alias{i}.home.arpa"] = {"alias": f"host{i}.home.arpa"}
# dnsmasq has no CNAME to a hosts-file name in this mode; query aliases only
# against hearth-dnsd would make the mixes differ, so the shared query mix
# holds A/AAAA hits and NXDOMAIN misses.
for i in range(50):
    queries.append(f"missing{i}.home.arpa A")
json.dump({"version": 1, "zones": {"home.arpa": {"serial": 1}}, "names": names},
          open(state_path, "w"), indent=1)
open(hosts_path, "w").write("\n".join(hosts) + "\n")
open(queries_path, "w").write("\n".join(queries) + "\n")
PY

# A private bus for the daemon skeleton (it serves org.hearth.Dns1 there).
dbus-daemon --session --nofork --address="unix:path=$WORK/bus.sock" 2>/dev/null &
PIDS+=($!)
for _ in $(seq 1 50); do [[ -S $WORK/bus.sock ]] && break; sleep 0.1; done
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$WORK/bus.sock"

DNSD_PORT=$(free_port)
cat > "$WORK/dnsd.toml" <<EOF
listen = ["127.0.0.1:$DNSD_PORT"]

[[zone]]
name = "home.arpa"
ns_addresses = ["127.0.0.1"]
EOF
"$DNSD" --config "$WORK/dnsd.toml" --state-dir "$STATE" 2>"$OUT_DIR/hearth-dnsd.log" &
DNSD_PID=$!
PIDS+=($DNSD_PID)
wait_answer "$DNSD_PORT" host1.home.arpa

DNSMASQ_PORT=$(free_port)
dnsmasq --no-daemon --conf-file=/dev/null --port="$DNSMASQ_PORT" \
    --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
    --addn-hosts="$HOSTS" --local=/home.arpa/ --cache-size=1000 \
    --log-facility=- 2>"$OUT_DIR/dnsmasq.log" &
DNSMASQ_PID=$!
PIDS+=($DNSMASQ_PID)
wait_answer "$DNSMASQ_PORT" host1.home.arpa

cpu_ticks() { # pid -> user+system clock ticks so far (all threads)
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
run_one() { # label port pid
    local before after
    before=$(cpu_ticks "$3")
    dnsperf -s 127.0.0.1 -p "$2" -d "$WORK/queries" -l "$SECONDS_EACH" \
        -c "$CLIENTS" -q 100 -t 2 >"$OUT_DIR/$1.txt" 2>&1
    after=$(cpu_ticks "$3")
    echo $((after - before)) >"$OUT_DIR/$1.cpu"
}
LAT_SECONDS=${LAT_SECONDS:-5}
run_latency() { # label port
    dnsperf -s 127.0.0.1 -p "$2" -d "$WORK/queries" -l "$LAT_SECONDS" \
        -c "$CLIENTS" -q 100 -t 2 -v 2>&1 |
        awk '$1 == ">" { print $NF }' | sort -g >"$OUT_DIR/$1.latency"
}
percentile() { # file fraction -> milliseconds
    awk -v p="$2" '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        i = int(NR * p + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
        printf "%.3f", v[i] * 1000 }' "$1"
}
field() { # file label
    grep -m1 "$2" "$1" | sed 's/.*: *//' | awk '{print $1}'
}

echo "dnsperf ${SECONDS_EACH}s each, ${CLIENTS} clients, 100 outstanding, $(wc -l <"$WORK/queries") query mix" >&2
if [[ -n ${PERF_DATA:-} ]]; then
    perf record -g --call-graph dwarf,16384 -F 999 -p "$DNSD_PID" -o "$PERF_DATA" \
        -- sleep "$SECONDS_EACH" >"$OUT_DIR/perf.log" 2>&1 &
    PERF_PID=$!
fi
run_one hearth-dnsd "$DNSD_PORT" "$DNSD_PID"
if [[ -n ${PERF_DATA:-} ]]; then wait "$PERF_PID" || true; fi
run_one dnsmasq "$DNSMASQ_PORT" "$DNSMASQ_PID"
if [[ $LAT_SECONDS != 0 ]]; then
    run_latency hearth-dnsd "$DNSD_PORT"
    run_latency dnsmasq "$DNSMASQ_PORT"
fi

echo "| server | queries sent | completed | lost | qps | avg latency (ms) | min (ms) | max (ms) | rcodes | server CPU (s) | CPU per query (µs) | latency run: answers, p50 (ms), p99 (ms) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for s in hearth-dnsd dnsmasq; do
    f=$OUT_DIR/$s.txt
    sent=$(field "$f" "Queries sent:")
    done_=$(grep -m1 "Queries completed:" "$f" | sed 's/.*: *//')
    lost=$(grep -m1 "Queries lost:" "$f" | sed 's/.*: *//')
    qps=$(field "$f" "Queries per second:")
    avg=$(field "$f" "Average Latency (s):")
    lat_min=$(grep -m1 "Average Latency (s):" "$f" | sed -n 's/.*min \([0-9.]*\).*/\1/p')
    lat_max=$(grep -m1 "Average Latency (s):" "$f" | sed -n 's/.*max \([0-9.]*\).*/\1/p')
    rc=$(grep -m1 "Response codes:" "$f" | sed 's/.*: *//')
    ms() { awk -v s="$1" 'BEGIN { printf "%.3f", s * 1000 }'; }
    lat="-"
    if [[ -s $OUT_DIR/$s.latency ]]; then
        lat="$(wc -l <"$OUT_DIR/$s.latency"), $(percentile "$OUT_DIR/$s.latency" 0.5), $(percentile "$OUT_DIR/$s.latency" 0.99)"
    fi
    hz=$(getconf CLK_TCK)
    ticks=$(cat "$OUT_DIR/$s.cpu")
    cpu=$(awk -v t="$ticks" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }')
    per=$(awk -v t="$ticks" -v hz="$hz" -v n="$sent" 'BEGIN { printf "%.2f", n ? t / hz / n * 1e6 : 0 }')
    echo "| $s | $sent | $done_ | $lost | $qps | $(ms "$avg") | $(ms "$lat_min") | $(ms "$lat_max") | $rc | $cpu | $per | $lat |"
done
