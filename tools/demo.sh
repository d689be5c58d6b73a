#!/bin/bash
# Install dependencies, build, and show Ferry's monitor at work: a counter
# guest on 2 vCPUs and a memory-dirtying guest under vmon, steered through
# the control socket (status, stats with the dirty rate, pause, resume,
# stop). The two-node migration demo comes with live migration (issue 3)
# and the cluster lab (issue 4).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
VMON=build/bin/vmon
G=build/guests
RUN=$(mktemp -d /tmp/ferry-demo.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$RUN"' EXIT

if [ ! -w /dev/kvm ]; then
	echo "demo: /dev/kvm is not available here; nothing to run" >&2
	exit 1
fi
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "vmon run: counter guest, 2 vCPUs, control socket $RUN/vm1.sock"
$VMON run --name vm1 --guest $G/counter --mem 256M --vcpus 2 \
	--control "$RUN/vm1.sock" --args "n=0 interval_ms=200" &
sleep 1.2
step "vmon ctl status"
$VMON ctl "$RUN/vm1.sock" status
step "vmon ctl pause (the console stops for 1 s)"
$VMON ctl "$RUN/vm1.sock" pause
$VMON ctl "$RUN/vm1.sock" status
sleep 1
step "vmon ctl resume (counting continues where it stopped)"
$VMON ctl "$RUN/vm1.sock" resume
sleep 1
step "vmon ctl stats (the guest saw the pause as its largest stall)"
$VMON ctl "$RUN/vm1.sock" stats
step "vmon ctl stop"
$VMON ctl "$RUN/vm1.sock" stop
wait

step "vmon run: dirtier guest writing 20000 pages/s over 64 MiB"
$VMON run --name vm2 --guest $G/dirtier --mem 256M --dirty-sample-ms 500 \
	--control "$RUN/vm2.sock" --args "ws=64M rate=20000" &
sleep 2.5
step "vmon ctl stats -o json (dirty rate measured by the monitor)"
$VMON ctl "$RUN/vm2.sock" stats -o json
$VMON ctl "$RUN/vm2.sock" stop
wait

step "a guest that crashes is reported with the exit, vCPU and RIP"
$VMON run --guest $G/crash --mem 64M || echo "(vmon exit status $?)"
