#!/usr/bin/env bash
# Runs a command on a machine whose L1 data cache reads as SIZE with WAYS
# ways: in a mount namespace of its own, every CPU's
# /sys/devices/system/cpu/cpu*/cache/index0/{size,ways_of_associativity}
# is bind-mounted over with those values. gemm (candle's CPU product) sizes
# its blocks from these files, so this shows what another CPU would compute
# (docs/perf.md, "the same weights on every CPU"; inference/tests/any_cpu.rs).
# Needs root and util-linux's unshare.
#
#   inference/bench/with-l1.sh 32K 8 target/release/hearth-intent-train --models M --catalog catalog
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 SIZE WAYS COMMAND [ARGS...]" >&2; exit 2; }
size=$1 ways=$2; shift 2
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
printf '%s\n' "$size" > "$fake/size"
printf '%s\n' "$ways" > "$fake/ways"
# Not exec: the trap removes the files once the command is done.
unshare --mount --propagation private bash -c '
set -e
for c in /sys/devices/system/cpu/cpu[0-9]*/cache/index0; do
  mount --bind "$1/size" "$c/size"
  mount --bind "$1/ways" "$c/ways_of_associativity"
done
[ "$(cat /sys/devices/system/cpu/cpu0/cache/index0/size)" = "$2" ] || {
  echo "with-l1.sh: the L1 still reads $(cat /sys/devices/system/cpu/cpu0/cache/index0/size)" >&2; exit 1; }
shift 2
exec "$@"' with-l1 "$fake" "$size" "$@"
