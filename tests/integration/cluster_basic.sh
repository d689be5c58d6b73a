#!/bin/bash
# The cluster on a 3-node lab (tools/lab): create and start a VM, migrate it
# while it runs (placement updated on every node, the count going on without
# a reset or a gap), CPU-model refusals before any page moves, bad input,
# mutual TLS with a foreign and a revoked certificate, malformed frames.
. "$(dirname "$0")/lab_lib.sh"
GUESTS=${FERRY_GUESTS:-$LAB_SRC/build/guests}
TMPD=$(mktemp -d /tmp/ferry-cluster-test.XXXXXX)
trap 'rc=$?; set +e; rm -rf "$TMPD"; (exit $rc); lab_at_exit' EXIT

ctl() { lab_exec "$@" >/dev/null 2>&1; }
# ctl_json HOST ARGS...: clusterctl -o json on HOST
ctl_json() { local h=$1; shift; lab_exec "$h" clusterctl -o json "$@"; }
# json_get EXPR: evaluate EXPR on the JSON document on stdin (as j)
json_get() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }
# fails HOST EXPECTED-TEXT ARGS...: clusterctl must exit 1 saying EXPECTED-TEXT
fails() {
	local h=$1 want=$2 out rc
	shift 2
	out=$(lab_exec "$h" clusterctl "$@" 2>&1) && rc=0 || rc=$?
	if [ "$rc" -ne 1 ] || ! grep -qF -- "$want" <<<"$out"; then
		echo "  clusterctl $*: exit $rc: $out (wanted exit 1 and '$want')"
		return 1
	fi
	echo "  clusterctl $*: $out"
}
# Complete lines only: a guest may be halfway through a line when we read.
console() {
	python3 -c 'import sys
for f in sys.argv[1:]:
    sys.stdout.write("".join(l + "\n" for l in open(f).read().split("\n")[:-1]))' \
		"$LAB_DIR"/host*/run/vm1.console 2>/dev/null
}
last_count() { console | sed -n 's/^counter: \([0-9][0-9]*\)$/\1/p' | sort -n | tail -1; }
# The counts in the order the nodes printed them: 1, 2, 3, ... with no gap
# and no repeat, whichever node printed each.
counts_continuous() {
	local n
	n=$(console | sed -n 's/^counter: \([0-9][0-9]*\)$/\1/p' | sort -n |
	    awk 'NR != $1 && !bad {bad = 1; at = NR} END {print bad ? "gap at line " at : NR}')
	if [[ "$n" == gap* ]]; then
		echo "  $n of the sorted counts; per node:"
		for f in "$LAB_DIR"/host*/run/vm1.console; do
			echo "  $f: $(sed -n 's/^counter: //p' "$f" | tr '\n' ' ' | tail -c 400)"
		done
		return 1
	fi
	[ "$n" -gt 0 ]
}
count_grows() { local c; c=$(last_count); sleep 0.5; [ "$(last_count)" -gt "$c" ]; }
placement_on_all() { # VM HOST
	for h in host1 host2 host3; do
		[ "$(ctl_json $h vm show "$1" | json_get 'j["vm"]["host"]')" = "$2" ] || return 1
	done
}

# host3 hides two features this CPU has (a Zen 3 and QEMU's TCG CPU have
# no gfni): the first two of these that /proc/cpuinfo names.
HAS=()
for f in clwb gfni adx rdseed movbe; do
	if grep -qw "$f" /proc/cpuinfo; then HAS+=("$f"); fi
done
if [ "${#HAS[@]}" -lt 2 ]; then
	echo "SKIP: this CPU has fewer than two of clwb gfni adx rdseed movbe to hide"; exit 77
fi
H1=${HAS[0]} H2=${HAS[1]}
# fails_lacking HOST TEXT ARGS...: clusterctl exits 1 saying TEXT and naming H1 and H2
fails_lacking() {
	local h=$1 want=$2 out rc
	shift 2
	out=$(lab_exec "$h" clusterctl "$@" 2>&1) && rc=0 || rc=$?
	echo "  clusterctl $*: $out"
	[ "$rc" -eq 1 ] && grep -qF -- "$want" <<<"$out" && grep -qw "$H1" <<<"$out" &&
		grep -qw "$H2" <<<"$out"
}

lab_up 3 --hide "host3=$H1,$H2"

echo "== the cluster"
check "every node sees 3 hosts online" test "$(ctl_json host2 status | json_get 'len(j["online"])')" = 3
base=$(ctl_json host1 cpu baseline | json_get '" ".join(j["cpu"]["features"])')
check "the cluster model lacks what host3 hides ($H1, $H2)" \
	bash -c "! grep -qw $H1 <<<'$base' && ! grep -qw $H2 <<<'$base' && grep -qw sse2 <<<'$base'"

echo "== create and start"
check "vm create" ctl host1 clusterctl vm create vm1 --guest "$GUESTS/counter" \
	--args "n=0 interval_ms=50" --mem 64M --cpu-model host
check "a taken name is refused" fails host2 "vm create: vm1: the name is taken" \
	vm create vm1 --guest "$GUESTS/counter" --mem 64M
check "a bad name is refused" fails host2 "is not valid" \
	vm create "bad name" --guest "$GUESTS/counter" --mem 64M
check "a bad size is refused" fails host2 "not a multiple of 2 MiB" \
	vm create vm9 --guest "$GUESTS/counter" --mem 9M
check "vm start on host1" ctl host2 clusterctl vm start vm1 --host host1
check "vm1 counts on host1" wait_for 10 "vm1 counting" count_grows
check "placement host1 on every node" placement_on_all vm1 host1

echo "== migrate while it runs"
out=$(lab_exec host3 clusterctl migrate vm1 host2 2>&1) && rc=0 || rc=$?
echo "  $out"
check "migrate vm1 host2 succeeds" test "$rc" = 0
check "placement host2 on every node" wait_for 5 "placement" placement_on_all vm1 host2
check "vm1 counts on host2" wait_for 5 "counting on host2" count_grows
check "host1's vmon is gone" wait_for 5 "host1 vmon gone" \
	bash -c "! ls '$LAB_DIR/host1/run/vm1.sock' 2>/dev/null"
check "migrating to where it runs is refused" fails host1 "migrate: vm1: already runs on host2" migrate vm1 host2
check "an unknown host is refused" fails host1 "no such host host7" migrate vm1 host7
check "an unknown VM is refused" fails host1 "migrate: vm7: no such VM" migrate vm7 host1

echo "== CPU models"
check "cpu check names what host3 lacks" \
	fails_lacking host1 "required by vm1's model host" cpu check vm1 host3
check "cpu check says yes for host1" ctl host1 clusterctl cpu check vm1 host1
check "migrate to host3 is refused naming the features" \
	fails_lacking host1 "migrate: vm1: host3 lacks" migrate vm1 host3
check "nothing was started on host3" bash -c "! ls '$LAB_DIR/host3/run/' | grep -q vm1"
check "dry run: precheck and prediction" bash -c \
	"lab_exec() { '$LAB_TOOL' exec --name '$LAB_NAME' \"\$@\"; }; lab_exec host2 clusterctl migrate vm1 host1 --dry-run | grep -q 'precheck passed'"
check "after the dry run vm1 still runs on host2" placement_on_all vm1 host2

echo "== back and forth"
for dest in host1 host2 host1; do
	check "migrate vm1 $dest" ctl host2 clusterctl migrate vm1 $dest
done
check "placement host1 on every node" placement_on_all vm1 host1
check "vm1 counts after 4 migrations" wait_for 5 "counting" count_grows
check "the count never reset, skipped or repeated" counts_continuous
echo "  last count $(last_count)"

echo "== one migration at a time"
# Capped at 1 Mbit/s, the first stays in flight for about a second (64 MiB
# of zero-page markers alone), however fast this host is.
ctl host1 clusterctl migrate vm1 host2 --no-wait --bandwidth 1
check "a second migration of a migrating VM is refused" \
	fails host3 "already in flight" migrate vm1 host2
check "the first one lands" wait_for 20 "placement" placement_on_all vm1 host2
# The cap reached the source's vmon: its stream went at 1 Mbit/s or less.
rate=$(ctl_json host3 vm show vm1 | json_get \
	'"%.3f" % (j["vm"]["last_migration"]["bytes"] * 8 / 1e3 / j["vm"]["last_migration"]["total_ms"])')
echo "  the capped migration: $rate Mbit/s"
check "the capped migration kept to 1 Mbit/s ($rate)" python3 -c "import sys; sys.exit(not 0 < $rate <= 1.05)"
out=$(lab_exec host1 clusterctl migrate vm1 host1 --bandwidth 0 2>&1) && rc=0 || rc=$?
echo "  --bandwidth 0: $(head -1 <<<"$out")"
check "a bad --bandwidth is a usage error ($rc)" \
	bash -c '[ "$0" = 2 ] && grep -q -- "--bandwidth: not 1..10000000" <<<"$1"' "$rc" "$out"

echo "== TLS"
admin="$LAB_DIR/ca/admin"
addr=$(lab_exec host1 sh -c 'ip -4 -o addr show dev eth0' | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p')
check "clusterctl over mutual TLS" ctl host2 clusterctl --connect "$addr" --tls-dir "$admin" status
"$FERRY_BIN/clusterctl" cluster init --dir "$TMPD/other-ca" --name other >/dev/null
out=$(lab_exec host2 clusterctl --connect "$addr" --tls-dir "$TMPD/other-ca/admin" status 2>&1) && rc=0 || rc=$?
echo "  another CA: $out"
check "a server certificate from another CA is refused" test "$rc" = 1
# Our CA to check the agent, a certificate from another CA to show it.
mkdir -p "$TMPD/mixed"
cp "$admin/ca.pem" "$TMPD/mixed/ca.pem"
cp "$TMPD/other-ca/admin/cert.pem" "$TMPD/other-ca/admin/key.pem" "$TMPD/mixed/"
out=$(lab_exec host2 clusterctl --connect "$addr" --tls-dir "$TMPD/mixed" status 2>&1) && rc=0 || rc=$?
echo "  client from another CA: $out"
check "a client certificate from another CA is refused" test "$rc" = 1
"$FERRY_BIN/clusterctl" node add intruder 10.0.0.99 --dir "$LAB_DIR/ca" >/dev/null
check "a node certificate of the cluster is accepted" ctl host2 clusterctl --connect "$addr" \
	--tls-dir "$LAB_DIR/ca/nodes/intruder" status
check "node revoke" ctl host3 clusterctl node revoke intruder --dir "$LAB_DIR/ca"
out=$(lab_exec host2 clusterctl --connect "$addr" --tls-dir "$LAB_DIR/ca/nodes/intruder" status 2>&1) && rc=0 || rc=$?
echo "  revoked: $out"
check "a revoked certificate is refused" bash -c "[ $rc = 1 ] && grep -q revoked <<<'$out'"

echo "== malformed requests"
python3 - "$LAB_DIR/host1/clusterd.sock" <<'PY'
import socket, struct, sys
for payload in (b"\x00\x00\x00\x05hello", b"\xff\xff\xff\xff", b"\x00\x00\x00\x03\x08\x96", b"\x00\x00"):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sys.argv[1])
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    try:
        s.recv(4096)
    except OSError:
        pass
    s.close()
PY
check "the agent survives garbage on its socket" ctl host1 clusterctl status

echo "== stop and delete"
check "delete of a running VM is refused" fails host1 "stop it first" vm delete vm1
check "vm stop" ctl host1 clusterctl vm stop vm1
check "its vmon goes away" wait_for 10 "vmon gone" bash -c "! ls '$LAB_DIR'/host*/run/vm1.sock 2>/dev/null"
check "vm delete" ctl host3 clusterctl vm delete vm1
check "vm1 is gone everywhere" bash -c "for h in host1 host2 host3; do '$LAB_TOOL' exec --name '$LAB_NAME' \$h clusterctl vm show vm1 >/dev/null 2>&1 && exit 1; done; exit 0"
finish
