#!/bin/bash
# A VM's NIC follows it (docs/networking.md). In a network namespace of its
# own (a bridge br0 with the peer's address on it), a netecho guest answers
# ping and UDP echo on its tap; a peer sends a UDP datagram every 2 ms while
# the VM migrates 6 times between vmons. Afterwards: every hop worked, the
# echoes came back after each one, the bridge sends the VM's MAC to the
# last vmon's tap only (learned from the announce, before the guest said a
# word), the old taps are gone, and the longest echo gap is printed. Then a
# destination without the VM's bridge refuses it before a page moves, and
# the VM goes on at the source; a snapshot restores with its NIC.
if [ -z "${FERRY_NET_NS:-}" ]; then
	# Everything below, taps and bridge included, dies with this namespace.
	FERRY_NET_NS=1 exec unshare -n bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/disk_lib.sh"
require_kvm

CLIENT="$(dirname "$0")/udp_echo_client.py"
MAC=02:fe:00:00:00:02
ip link set lo up
# No address set on purpose: br0 takes its lowest tap's MAC and changes it
# as vmons come and go, flushing the host's neighbours mid-migration (the
# worst case; docs/networking.md asks operators to fix it).
ip link add br0 type bridge
ip link set br0 up
ip addr add 10.77.0.1/24 dev br0

fdb_dev() { # the bridge port the VM's MAC is learned on, or nothing
	bridge fdb show br br0 | awk -v m="$MAC" '$1 == m && !/permanent/ { print $3; exit }'
}
# sysfs shows the namespace it was mounted in, not ours: ask netlink.
taps() { ip -o link show | grep -c '^[0-9]*: fy' || true; }

echo "== a netecho guest on br0"
"$VMON" run --name n --guest "$FERRY_GUESTS/netecho" --mem 16M --args "ip=10.77.0.2" \
	--net "bridge=br0,mac=$MAC" --control "$TMP/n.sock" >"$TMP/n.out" 2>"$TMP/n.err" &
SPID=$!; PIDS="$PIDS $SPID"
wait_for "[ -S '$TMP/n.sock' ]" 10
check "the guest says its address and MAC" wait_for "grep -q 'netecho: 10.77.0.2 on NIC 0, MAC $MAC' '$TMP/n.out'" 10
check "the bridge learned the MAC from the announce" wait_for "[ -n \"\$(fdb_dev)\" ]" 5
check "it answers ping" ping -c 3 -i 0.2 -W 2 10.77.0.2
check "ARP and ICMP went through the guest" [ "$(value n icmp)" -ge 3 -a "$(value n arp)" -ge 1 ]
check "its NIC counted the frames" [ "$(value n net0.rx_frames)" -ge 4 ]

echo "== 6 migrations under a UDP echo stream (a datagram every 2 ms)"
python3 "$CLIENT" 10.77.0.2 7 --interval-ms 2 >"$TMP/udp.json" &
UPID=$!; PIDS="$PIDS $UPID"
sleep 1
hop_many 6 n "$SPID"
check "6 hops completed ($HOPS)" [ "$HOPS" -eq 6 ]
sleep 1
kill -TERM "$UPID"; wait "$UPID" || true
echo "   udp echo: $(cat "$TMP/udp.json")"
read -r sent recv gap after <<<"$(python3 -c "
import json; j = json.load(open('$TMP/udp.json'))
print(j['sent'], j['received'], j['max_gap_ms'], j['lost_after_last'])")"
# A few datagrams per hop fall in the downtime; an ARP request lost there
# cost a second (500 datagrams), one never answered again all the rest.
check "echoes came back through all of it ($recv of $sent)" [ "$recv" -ge $((sent - 150)) ]
check "the echoes went on after the last hop (lost after it: $after)" [ "$after" -le 5 ]
check "the guest on the last vmon answers" [ "$(value "$CUR" udp)" -gt 0 ]
check "no hop cut the echoes for long (longest gap ${gap} ms)" \
	python3 -c "import sys; sys.exit(not 0 < $gap < 500)"
check "one tap is left ($(taps))" [ "$(taps)" -eq 1 ]
dev=$(fdb_dev)
check "the bridge sends the MAC to that tap ($dev)" bash -c "ip -o link show master br0 | grep -q ': $dev:'"

echo "== the announce alone moves the MAC (no traffic)"
before=$(fdb_dev)
start_dest q
migrate "$CUR" "$DPORT"
check "a quiet migration works" [ "$MRC" -eq 0 ]
after=$(fdb_dev)
check "the MAC moved from $before to $after at once" [ -n "$after" -a "$after" != "$before" ]
check "the new vmon announced ($(value q net0.announces))" [ "$(value q net0.announces)" -ge 1 ]
CUR=q; CURPID=$DPID
check "it answers ping after the move" ping -c 2 -i 0.2 -W 2 10.77.0.2

echo "== a destination without the bridge refuses"
ip link add br1 type bridge
ip link set br1 up
"$VMON" run --name m --guest "$FERRY_GUESTS/netecho" --mem 16M --args "ip=10.78.0.2" \
	--net bridge=br1 --control "$TMP/m.sock" >"$TMP/m.out" 2>"$TMP/m.err" &
MPID=$!; PIDS="$PIDS $MPID"
wait_for "[ -S '$TMP/m.sock' ]" 10
ip link del br1
start_dest m2
migrate m "$DPORT"
echo "   $MOUT" | tail -2
check "the migration is refused" [ "$MRC" -ne 0 ]
check "... naming the bridge" grep -q "bridge br1 does not exist on this host" <<<"$MOUT"
exit_status "$DPID" 10
check "the destination never ran the guest (exit $XRC)" [ "$XRC" = 2 ]
check "the VM runs on at the source" [ "$(status_json m | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["state"])')" = running ]
"$VMON" ctl "$TMP/m.sock" stop >/dev/null 2>&1 || true
exit_status "$MPID" 10

echo "== a snapshot keeps its NIC"
"$VMON" ctl "$TMP/$CUR.sock" save "$TMP/snap" --stop >/dev/null
exit_status "$CURPID" 10
"$VMON" run --restore "$TMP/snap" --control "$TMP/r.sock" >"$TMP/r.out" 2>"$TMP/r.err" &
RPID=$!; PIDS="$PIDS $RPID"
wait_for "[ -S '$TMP/r.sock' ]" 10
check "the restored VM answers ping" ping -c 2 -i 0.2 -W 2 10.77.0.2
check "on a new tap, announced" [ -n "$(fdb_dev)" -a "$(value r net0.announces)" -ge 1 ]
"$VMON" ctl "$TMP/r.sock" stop >/dev/null 2>&1 || true
exit_status "$RPID" 10
finish
