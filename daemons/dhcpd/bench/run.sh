#!/usr/bin/env bash
# DHCP benchmark: hearth-dhcpd and, in the same run, dnsmasq, each serving a
# /16 on a veth link inside network namespaces (nothing leaves them), driven
# by the same bounded client load (daemons/dhcpd/examples/dhcp_load.rs:
# DISCOVER -> OFFER -> REQUEST -> ACK per simulated client, random MACs).
#
#   daemons/dhcpd/bench/run.sh [CLIENTS] [WINDOW]
#
# Two runs per server: WINDOW=1 (one exchange at a time: the latency of one
# DISCOVER->ACK) and WINDOW (default 16) exchanges in flight (leases per
# second). Needs root, dnsmasq (dnsmasq-base), and the dev build of
# hearth-sandbox, hearth-netd, hearth-dnsd, hearth-dhcpd, hearthctl and the
# example (cargo build -p hearth-dhcpd --bins --examples; PROFILE=release for
# release binaries). hearth-dhcpd runs in the sandbox (its domain's bridge,
# learned from hearth-netd over D-Bus); dnsmasq on a plain veth pair, its
# lease file in the run's directory, its lease limit raised (default 1000)
# and with --no-ping (hearth-dhcpd does not
# probe before offering either: decision 080; dnsmasq's probe holds each new
# address for seconds and left most clients of a window unanswered).
# DHCPD_BIN=path runs that hearth-dhcpd (e.g. target/release/hearth-dhcpd)
# with the other binaries from BIN. Prints a Markdown table.
set -euo pipefail
CLIENTS=${1:-1000}
WINDOW=${2:-16}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/${PROFILE:-debug}
LOAD=$BIN/examples/dhcp_load
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 2; }
for b in hearth-sandbox hearth-netd hearth-dnsd hearth-dhcpd hearthctl examples/dhcp_load; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (cargo build -p hearth-dhcpd --bins --examples ...)" >&2; exit 2; }
done
command -v dnsmasq >/dev/null || { echo "dnsmasq missing" >&2; exit 2; }
DIR=$(mktemp -d /tmp/hearth-dhcp-bench.XXXXXX)
TAG=$$
CLI=hdb-cli-$TAG; DMS=hdb-dms-$TAG; DMC=hdb-dmc-$TAG
cleanup() {
  [ -f "$DIR/dnsmasq.pid" ] && kill "$(cat "$DIR/dnsmasq.pid")" 2>/dev/null || true
  for ns in "$CLI" "$DMS" "$DMC"; do ip netns delete "$ns" 2>/dev/null || true; done
  "$BIN/hearth-sandbox" down "$DIR/sb" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT

# hearth-dhcpd: the sandbox's netd makes the domain, dhcpd serves it.
SBBIN=$BIN
if [ -n "${DHCPD_BIN:-}" ]; then
  SBBIN=$DIR/bin; mkdir -p "$SBBIN"
  for f in "$BIN"/hearth-*; do ln -s "$f" "$SBBIN/"; done
  ln -sf "$(realpath "$DHCPD_BIN")" "$SBBIN/hearth-dhcpd"
fi
(cd "$ROOT" && "$BIN/hearth-sandbox" up "$DIR/sb" --bin-dir "$SBBIN" \
  --only hearth-netd,hearth-dnsd,hearth-dhcpd --log warn >/dev/null)
# shellcheck disable=SC1091
. "$DIR/sb/env"
"$BIN/hearthctl" net create bench --subnet 10.78.0.0/16 >/dev/null
for _ in $(seq 50); do
  "$BIN/hearthctl" --json devices pools | grep -q '"bench"' && break
  sleep 0.2
done
ip netns add "$CLI"
ip -n "$CLI" link add eth0 type veth peer name hvbench
ip -n "$CLI" link set hvbench netns "$HEARTH_NETNS"
ip -n "$HEARTH_NETNS" link set hvbench master hb-bench up
ip -n "$CLI" link set eth0 up
dhcpd_pid=$(cat "$DIR/sb/pids/hearth-dhcpd.pid")

# dnsmasq: a veth pair between two namespaces, DHCP only (port=0: no DNS).
ip netns add "$DMS"; ip netns add "$DMC"
ip -n "$DMS" link add s0 type veth peer name eth0
ip -n "$DMS" link set eth0 netns "$DMC"
ip -n "$DMS" addr add 10.79.0.1/16 dev s0
ip -n "$DMS" link set s0 up
ip -n "$DMC" link set eth0 up
ip netns exec "$DMS" dnsmasq --port=0 --interface=s0 --bind-interfaces \
  --dhcp-range=10.79.0.2,10.79.255.254,255.255.0.0,1h --dhcp-authoritative \
  --dhcp-leasefile="$DIR/dnsmasq.leases" --pid-file="$DIR/dnsmasq.pid" \
  --dhcp-option=option:router,10.79.0.1 --dhcp-option=option:dns-server,10.79.0.1 \
  --log-facility="$DIR/dnsmasq.log" --quiet-dhcp --no-ping --dhcp-lease-max=100000
for _ in $(seq 50); do [ -s "$DIR/dnsmasq.pid" ] && break; sleep 0.1; done
dnsmasq_pid=$(cat "$DIR/dnsmasq.pid")

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
run() { # name ns pid window
  local before after out
  before=$(cpu "$3")
  out=$(ip netns exec "$2" "$LOAD" --iface eth0 --clients "$CLIENTS" --window "$4" --timeout-ms 5000)
  after=$(cpu "$3")
  python3 - "$1" "$out" "$before" "$after" "$tck" <<'PY'
import json, sys
name, out, before, after, tck = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
l = out["latency_ms"]
cpu_ms = (after - before) * 1000 / tck
per = cpu_ms / out["acked"] if out["acked"] else 0
print(f"| {name} | {out['window']} | {out['acked']}/{out['clients']} | {out['leases_per_s']:.0f} | {l['p50']} | {l['p90']} | {l['p99']} | {l['max']} | {per:.2f} |")
PY
}
echo "| server | in flight | acked | leases/s | p50 ms | p90 ms | p99 ms | max ms | server CPU ms/lease |"
echo "|---|---|---|---|---|---|---|---|---|"
run hearth-dhcpd "$CLI" "$dhcpd_pid" 1
run dnsmasq "$DMC" "$dnsmasq_pid" 1
run hearth-dhcpd "$CLI" "$dhcpd_pid" "$WINDOW"
run dnsmasq "$DMC" "$dnsmasq_pid" "$WINDOW"
