#!/bin/bash
# The monitor-level demo (tools/demo.sh is the cluster one): two vmons on
# loopback, no agents. Install dependencies, build, and show a VM move:
#   1. a counter guest starts in a monitor ("node A");
#   2. it is live-migrated to a second monitor ("node B") over TLS 1.3 with
#      mutual certificates, with progress and the statistics of each round;
#   3. and back to node A over plain TCP, with --verify (a digest of all
#      guest RAM is compared on both sides);
#   4. its console shows the count going on without a gap or a repeat.
# Both monitors run on this machine on 127.0.0.1. The cluster agent that
# does this from `clusterctl migrate vm1 host2` is in tools/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
VMON=build/bin/vmon
G=build/guests
RUN=$(mktemp -d /tmp/ferry-demo.XXXXXX)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT

if [ ! -w /dev/kvm ]; then
	echo "demo: /dev/kvm is not available here; nothing to run" >&2
	exit 1
fi
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
port_of() { # the port a --incoming vmon printed on stderr
	for _ in $(seq 100); do
		p=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$1")
		[ -n "$p" ] && { echo "$p"; return; }
		sleep 0.1
	done
	echo "demo: the destination did not start" >&2
	exit 1
}

bash tools/mkcerts.sh "$RUN/certs" nodeA nodeB >/dev/null

step "node A: vmon runs vm1, a counter guest on 2 vCPUs (console in $RUN/console)"
$VMON run --name vm1 --guest $G/counter --mem 256M --vcpus 2 --control "$RUN/a.sock" \
	--args "n=0 interval_ms=100" >>"$RUN/console" &
sleep 1.5
$VMON ctl "$RUN/a.sock" status
tail -n 3 "$RUN/console"

step "node B: a monitor waits for a VM over TLS, with 256 MiB of RAM faulted in"
$VMON run --incoming tcp:127.0.0.1:0 --tls-dir "$RUN/certs/nodeB" --mem 256M \
	--control "$RUN/b.sock" --log-level info >>"$RUN/console" 2>"$RUN/b.err" &
PORT=$(port_of "$RUN/b.err")
echo "node B listens on 127.0.0.1:$PORT"

step "dry run: the precheck and the prediction, nothing moves"
$VMON ctl "$RUN/a.sock" migrate tcp:127.0.0.1:$PORT --tls-dir "$RUN/certs/nodeA" --dry-run

step "vmon ctl migrate: vm1 from node A to node B, while it counts"
$VMON ctl "$RUN/a.sock" migrate tcp:127.0.0.1:$PORT --tls-dir "$RUN/certs/nodeA" --wait
sleep 1
$VMON ctl "$RUN/b.sock" status
tail -n 3 "$RUN/console"

step "node A again: a monitor waits (plain TCP this time)"
$VMON run --incoming tcp:127.0.0.1:0 --mem 256M --control "$RUN/a2.sock" \
	--log-level info >>"$RUN/console" 2>"$RUN/a2.err" &
PORT=$(port_of "$RUN/a2.err")

step "and back, with --verify: both sides compare a digest of all guest RAM"
$VMON ctl "$RUN/b.sock" migrate tcp:127.0.0.1:$PORT --verify --wait
sleep 1
grep -h "arrived" "$RUN/b.err" "$RUN/a2.err" || true
$VMON ctl "$RUN/a2.sock" stats

step "the console across the three monitors: one count, no gap, no repeat"
python3 - "$RUN/console" <<'PY'
import re, sys
n = [int(m.group(1)) for m in (re.fullmatch(r"counter: (\d+)\n", l) for l in open(sys.argv[1])) if m]
ok = n == list(range(1, len(n) + 1))
print("counted 1..%d across two migrations: %s" % (n[-1], "continuous" if ok else "BROKEN"))
sys.exit(0 if ok else 1)
PY
$VMON ctl "$RUN/a2.sock" stop
