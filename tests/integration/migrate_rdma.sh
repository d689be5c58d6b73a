#!/bin/bash
# Live migration over rdma: between two vmon processes on this host, where
# it has an RDMA device with an IPv4 address (FERRY_RDMA_ADDR, or the first
# found in /sys/class/infiniband; tools/rdma-lab up makes a soft-RoCE one).
# Both ends use the same device and address (a NIC loops it back).
# A running 2-vCPU counter whose console stays 1..N, a dirtier with
# --verify over 2 data connections, 6 hops back and forth, a tcp:
# destination and TLS refused in words, a destination killed mid-round and
# a migrate-cancel: the source keeps running. Skips (77) without KVM or
# without a device.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/vm_lib.sh"
require_kvm

rdma_addr() {
	if [ -n "${FERRY_RDMA_ADDR:-}" ]; then echo "$FERRY_RDMA_ADDR"; return 0; fi
	local f nd a
	for f in /sys/class/infiniband/*/ports/1/gid_attrs/ndevs/0; do
		[ -r "$f" ] || continue
		nd=$(cat "$f" 2>/dev/null) || continue
		a=$(ip -4 -o addr show dev "$nd" 2>/dev/null | awk '{sub("/.*", "", $4); print $4; exit}')
		[ -n "$a" ] && { echo "$a"; return 0; }
	done
	return 1
}
if ! ADDR=$(rdma_addr); then
	echo "SKIP: no RDMA device with an IPv4 address on this host" \
		"(tools/rdma-lab up makes a soft-RoCE one)"
	exit 77
fi
echo "RDMA address: $ADDR ($(ls /sys/class/infiniband 2>/dev/null | tr '\n' ' '))"

T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 ))s; }

# start_dest NAME SCHEME [vmon run options...]: sets DPID, DPORT and DURI
# (what to migrate to: always rdma:).
start_dest() {
	local name=$1 scheme=$2; shift 2
	local err="$TMP/$name.err" addr=$ADDR
	rm -f "$err" "$TMP/$name.out"
	"$VMON" run --incoming "$scheme:$addr:0" --incoming-timeout-s 60 \
		--control "$TMP/$name.sock" "$@" >"$TMP/$name.out" 2>"$err" &
	DPID=$!; PIDS="$PIDS $DPID"
	DPORT=""
	wait_for "grep -q 'incoming: listening on $addr:[0-9]' '$err'" 10 || {
		echo "destination $name printed no port:"; cat "$err" 2>/dev/null
		return 1
	}
	DPORT=$(sed -n "s/.*incoming: listening on ${addr//./\\.}:\([0-9][0-9]*\).*/\1/p" "$err" | head -1)
	DURI="rdma:$addr:$DPORT"
	[ -n "$DPORT" ]
}

migrate() { # migrate SOCKNAME URI [options...]: output in $MOUT, status in $MRC
	local name=$1 uri=$2; shift 2
	MRC=0
	MOUT=$(timeout 90 "$VMON" ctl "$TMP/$name.sock" migrate "$uri" "$@" 2>&1) || MRC=$?
}

echo "== 1: counter, 2 vCPUs, migrated over rdma while running"
start_src s1 counter 64M 2 "n=0 interval_ms=20"
check "the source counts" wait_for "[ \$(value s1 count) -gt 5 ]" 10
start_dest d1 rdma
check "the rdma destination prints its port ($DPORT)" [ -n "$DPORT" ]
d1pid=$DPID; s1pid=$SPID
migrate s1 "$DURI" --wait
echo "$MOUT" | tail -3
check "migrate rdma: --wait exits 0 (rc $MRC)" [ "$MRC" -eq 0 ]
exit_status "$s1pid" 10
check "the source vmon exits 0 after the migration ($XRC)" [ "$XRC" = 0 ]
check "the destination's count advances" advancing d1 count
check "vCPU 1 runs on the destination" advancing d1 count.vcpu1
stop_vm d1 "$d1pid"
check "the destination stops with 0 ($XRC)" [ "$XRC" = 0 ]
console_ok "console of source+destination" "$TMP/s1.out" "$TMP/d1.out"
echo "-- $(elapsed)"

echo "== 2: dirtier ws=32M flat out, --verify, 2 data connections"
start_src s2 dirtier 128M 1 "ws=32M"
s2pid=$SPID
check "the dirtier has filled its working set" wait_for "[ \$(value s2 filled) -eq 1 ]" 30
start_dest d2 rdma --log-level info
d2pid=$DPID
migrate s2 "$DURI" --wait --verify --connections 2 -o json
echo "$MOUT" > "$TMP/m2.json"
check "migrate --verify --connections 2 exits 0 (rc $MRC)" [ "$MRC" -eq 0 ]
check "completed, pages > 0" python3 -c "
import json, sys
m = json.load(open('$TMP/m2.json'))['migration']
print('   state %s, rounds %s, downtime %s ms, pages %s, total %s ms: %s' % (m['state'], m['rounds'], m['downtime_ms'], m['pages'], m['total_ms'], m['message']))
sys.exit(0 if m['state'] == 'completed' and m['pages'] > 0 else 1)"
exit_status "$s2pid" 10
check "the source exits 0 ($XRC)" [ "$XRC" = 0 ]
[ "$XRC" = 0 ] || tail -3 "$TMP/s2.err" | sed 's/^/   source: /'
check "the destination's log says RAM verified" grep -q "RAM verified" "$TMP/d2.err"
check "pages_written advances on the destination" advancing d2 pages_written
stop_vm d2 "$d2pid"
echo "-- $(elapsed)"

echo "== 3: 6 hops back and forth over rdma"
start_src h0 counter 64M 1 "n=0 interval_ms=20"
cur=h0; curpid=$SPID; outs="$TMP/h0.out"; hops=0
check "the first vmon counts" wait_for "[ \$(value h0 count) -gt 3 ]" 10
for i in 1 2 3 4 5 6; do
	start_dest "h$i" rdma
	npid=$DPID
	migrate "$cur" "$DURI" --wait
	[ "$MRC" -eq 0 ] || { echo "hop $i: $MOUT"; break; }
	exit_status "$curpid" 10
	[ "$XRC" = 0 ] || { echo "hop $i: the source exited $XRC"; break; }
	cur="h$i"; curpid=$npid; outs="$outs $TMP/h$i.out"; hops=$i
done
check "6 hops completed ($hops)" [ "$hops" -eq 6 ]
check "the last vmon counts" advancing "$cur" count
stop_vm "$cur" "$curpid"
# shellcheck disable=SC2086
console_ok "the console across 7 vmons" $outs
echo "-- $(elapsed)"

echo "== 4: refusals: a tcp: destination, TLS over rdma"
start_src s4 counter 64M 1 "n=0 interval_ms=20"
s4pid=$SPID
start_dest d4 tcp
d4pid=$DPID
t=$(date +%s)
migrate s4 "$DURI" --wait
dt=$(( $(date +%s) - t ))
echo "   $MOUT" | tail -2
check "migrate rdma: to a tcp: destination fails (rc $MRC)" [ "$MRC" -ne 0 ]
check "  ...within 15 s, not at a timeout ($dt s)" [ "$dt" -le 15 ]
check "  ...and says the rendezvous failed" grep -q "rendezvous" <<<"$MOUT"
check "the source still counts" advancing s4 count
grep 'dropped a connection' "$TMP/d4.err" | sed 's/^/   destination: /'
check "the tcp: destination drops it, saying the source migrates over rdma:" \
	grep -q "dropped.*migrates over rdma:" "$TMP/d4.err"
check "  ...and waits on, never having run the guest" \
	bash -c "kill -0 $d4pid && ! grep -q '^counter: ' '$TMP/d4.out'"
kill "$d4pid" 2>/dev/null || true
mkdir -p "$TMP/tls"
migrate s4 "rdma:$ADDR:9" --tls-dir "$TMP/tls" --wait
echo "   $MOUT" | tail -1
check "--tls-dir with rdma: is refused (rc $MRC)" [ "$MRC" -ne 0 ]
check "  ...naming a cause (TLS material or TLS over RDMA)" \
	grep -Eq "TLS over RDMA is not supported|tls: " <<<"$MOUT"
check "the source still counts" advancing s4 count
echo "-- $(elapsed)"

echo "== 5: the rdma destination killed during the rounds"
start_dest d5 rdma
d5pid=$DPID
start_src s5 dirtier 128M 1 "ws=64M"
s5pid=$SPID
check "the dirtier has filled its working set" wait_for "[ \$(value s5 filled) -eq 1 ]" 30
MRC=0
timeout 90 "$VMON" ctl "$TMP/s5.sock" migrate "$DURI" --wait \
	--bandwidth 200 >"$TMP/m5.out" 2>&1 &
mpid=$!
check "the migration reaches its rounds" wait_for \
	"'$VMON' ctl '$TMP/s5.sock' migrate-status 2>/dev/null | grep -q '^migration to $DURI: precopy'" 20
kill -9 "$d5pid"
wait "$mpid" || MRC=$?
tail -2 "$TMP/m5.out" | sed 's/^/   /'
check "the migration fails (rc $MRC)" [ "$MRC" -ne 0 ]
if advancing s5 pages_written; then ok "the source guest keeps running"
else bad "the source guest keeps running"; vm_diag s5 "$s5pid"; fi
stop_vm s4 "$s4pid"
echo "-- $(elapsed)"

# cancel_case NAME STATE: start a migration of s5 with 2 data connections to
# a fresh rdma: destination, cancel it once migrate-status shows STATE
# (handshake: the source may be opening its data connections; precopy: the
# rounds), then check both sides.
cancel_case() {
	local name=$1 state=$2 mpid t dt
	start_dest "$name" rdma
	local dpid=$DPID
	MRC=0
	timeout 90 "$VMON" ctl "$TMP/s5.sock" migrate "$DURI" --wait --connections 2 \
		--bandwidth 200 >"$TMP/$name.mig" 2>&1 &
	mpid=$!
	if [ "$state" = handshake ]; then
		check "$name: the migration starts its handshake" wait_for \
			"'$VMON' ctl '$TMP/s5.sock' migrate-status 2>/dev/null | grep -q '^migration to $DURI: setup.*phase handshake'" 20
	else
		check "$name: the migration reaches its rounds" wait_for \
			"'$VMON' ctl '$TMP/s5.sock' migrate-status 2>/dev/null | grep -q '^migration to $DURI: precopy'" 20
	fi
	check "$name: migrate-cancel succeeds" "$VMON" ctl "$TMP/s5.sock" migrate-cancel
	t=$(date +%s)
	wait "$mpid" || MRC=$?
	dt=$(( $(date +%s) - t ))
	tail -1 "$TMP/$name.mig" | sed 's/^/   /'
	check "$name: migrate --wait fails within 10 s of the cancel ($dt s, rc $MRC)" \
		[ "$MRC" -ne 0 -a "$dt" -le 10 ]
	check "$name:   ...saying it was cancelled" grep -qi cancel "$TMP/$name.mig"
	# vmon --incoming exits 1 for a failed migration: the guest never ran there.
	exit_status "$dpid" 10
	tail -1 "$TMP/$name.err" | sed 's/^/   destination: /'
	check "$name: the destination exits 1 within 10 s, the guest never ran there ($XRC)" \
		[ "$XRC" = 1 ]
	if advancing s5 pages_written; then ok "$name: the source guest keeps running"
	else bad "$name: the source guest keeps running"; vm_diag s5 "$s5pid"; fi
}

echo "== 6: migrate-cancel over rdma (2 data connections), in the handshake and in the rounds"
cancel_case d6a handshake
cancel_case d6b precopy
stop_vm s5 "$s5pid"
check "the source stops cleanly afterwards ($XRC)" [ "$XRC" = 0 ]
echo "-- $(elapsed)"

finish
