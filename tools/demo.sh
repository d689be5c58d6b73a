#!/bin/bash
# Install dependencies, build, and show a Ferry cluster moving a running VM:
#   1. tools/lab builds 3 nodes on this machine, each in its own network
#      namespace with corosync and clusterd, joined into one cluster with
#      its own CA (mutual TLS everywhere);
#   2. clusterctl creates vm1, a counter guest, and starts it on host1;
#   3. a dry run shows the precheck and the prediction;
#   4. vm1 is live-migrated to host2, then to host3, with progress, while
#      it counts; every node's view of the placement follows;
#   5. a migration to a host without the VM's CPU features is refused
#      before any page moves, naming the features;
#   6. the console, across the three nodes, shows one count with no gap and
#      no repeat.
# Everything is torn down at the end. Root only (namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
export FERRY_BIN=$PWD/build/bin FERRY_LAB=demo
G=$PWD/build/guests
LAB=tools/lab
LABDIR=/tmp/ferry-lab-demo

if [ ! -w /dev/kvm ]; then
	echo "demo: /dev/kvm is not available here; nothing to run" >&2
	exit 1
fi
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
on() { local h=$1; shift; echo "[$h]\$ clusterctl $*"; $LAB exec "$h" clusterctl "$@"; }
$LAB down >/dev/null 2>&1 || true
trap '$LAB down >/dev/null 2>&1 || true' EXIT

HIDE=$($LAB hideable 2)   # two features this CPU has (gfni and clwb where it has them)
step "tools/lab: 3 nodes, host3 pretending to lack $HIDE"
$LAB up --nodes 3 --hide "host3=$HIDE"

step "the cluster, as host2 sees it"
on host2 status

step "create vm1 (a counter guest, CPU model host) and start it on host1"
on host1 vm create vm1 --guest "$G/counter" --args "n=0 interval_ms=100" --mem 128M --cpu-model host
on host1 vm start vm1 --host host1
sleep 1.5
tail -n 2 "$LABDIR/host1/run/vm1.console"

step "dry run: the precheck and vmon's prediction; nothing moves"
on host3 migrate vm1 host2 --dry-run

step "migrate vm1 to host2 while it counts (asked on host3: any node will do)"
on host3 migrate vm1 host2
sleep 1
on host1 vm show vm1
tail -n 2 "$LABDIR/host2/run/vm1.console"

step "host3 lacks features of vm1's model: refused before any page moves"
on host1 cpu check vm1 host3 || true
on host1 migrate vm1 host3 || true

step "vm1 back to host1 (its second migration), still counting"
on host2 migrate vm1 host1
sleep 1
on host3 vm list

step "the console across the nodes: one count, no gap, no repeat"
python3 - "$LABDIR"/host*/run/vm1.console <<'PY'
import re, sys
n = sorted(int(m.group(1)) for f in sys.argv[1:] for l in open(f)
           if (m := re.fullmatch(r"counter: (\d+)\n", l)))
ok = n == list(range(1, len(n) + 1))
print("counted 1..%d on host1, host2 and host1 again: %s" % (n[-1], "continuous" if ok else "BROKEN"))
sys.exit(0 if ok else 1)
PY
on host1 vm stop vm1
