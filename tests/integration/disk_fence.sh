#!/bin/bash
# A fence with the storage cut off along with the host. A blkwriter on an
# NBD disk (nbdkit in a network namespace of its own, behind a veth pair)
# runs with --fence-s 3 and keepalives; then the link goes down and the
# keepalives stop, as when a host is cut off from its cluster and its
# storage network at once. The vmon must still end, fenced, within a few
# seconds, and give the disk's lease up: the restart elsewhere takes it
# (clsoak --disk nbd --ha found it held by a fenced vmon stuck in a write,
# and the HA restart refused, the VM down for good). Then a new owner
# writes on, the link comes back, and nothing the old owner had sent
# reaches the image after that: the log on it verifies, every block the
# new owner acknowledged there. Last, a start with the storage out of
# reach exits 7 (worth trying again: clusterd does), within 5 s where the
# server gives no answer at all, not after TCP's minutes.
if [ -z "${FERRY_NET_NS:-}" ]; then
	# The links and the server's namespace die with this namespace.
	FERRY_NET_NS=1 exec unshare -n bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/disk_lib.sh"
require_kvm
command -v nbdkit >/dev/null || { echo "SKIP: nbdkit is not installed"; exit 77; }
command -v nsenter >/dev/null || { echo "SKIP: nsenter is not installed"; exit 77; }

IMG="$TMP/disk.img"
LEASE="$TMP/disk.lease"
truncate -s 16M "$IMG"
ip link set lo up
# The storage's namespace, held by a sleeping process, one veth away.
unshare -n sleep 600 &
SRV=$!; PIDS="$PIDS $SRV"
sleep 0.2
ip link add vr type veth peer name vn
ip link set vn netns "$SRV"
nsenter -t "$SRV" -n sh -c 'ip link set lo up && ip addr add 10.9.0.2/24 dev vn && ip link set vn up'
ip addr add 10.9.0.1/24 dev vr
ip link set vr up
nsenter -t "$SRV" -n nbdkit -f -i 10.9.0.2 -p 10809 file "$IMG" >"$TMP/nbdkit.log" 2>&1 &
NBDPID=$!; PIDS="$PIDS $NBDPID"
wait_for "python3 -c 'import socket; socket.create_connection((\"10.9.0.2\", 10809), 1).close()'" 10
DISK="nbd://10.9.0.2:10809,lease=$LEASE"

lease_free() { # the OFD lock on the lease file is free (a POSIX lock conflicts with it)
	python3 -c "
import fcntl, sys
f = open('$LEASE', 'r+')
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(1)"
}
lease_held() { ! lease_free; }

echo "== a writer on NBD, fenced at 3 s without keepalives"
start_writer w "$DISK" "n=0" --fence-s 3
WPID=$SPID
(while kill -0 "$SPID" 2>/dev/null; do "$VMON" ctl "$TMP/w.sock" keepalive >/dev/null 2>&1 || true
	sleep 0.5; done) &
KPID=$!; PIDS="$PIDS $KPID"
check "the writer runs on NBD" advancing w acked
check "keepalives keep it past the fence time" sleep 4
check "it still writes" advancing w acked
check "it holds the lease" lease_held

echo "== cut off: the link to the storage and the keepalives at once"
acked=$(value w acked)
kill "$KPID" 2>/dev/null || true
ip link set vr down
t0=$(date +%s%3N)
exit_status "$WPID" 15
t_exit=$(($(date +%s%3N) - t0))
echo "   vmon ended with $XRC after $t_exit ms ($acked blocks acknowledged before the cut)"
check "the vmon ends, fenced (status 5), though a write hangs on the storage" [ "$XRC" = 5 ]
check "within fence-s + 3 s ($t_exit ms)" [ "$t_exit" -lt 6000 ]
check "its log says it was fenced" grep -q "fenced: no keepalive" "$TMP/w.err"
check "the lease is free for a restart elsewhere" lease_free

echo "== a new owner writes on and stops; then the old owner's link comes back"
# The new owner reaches the image another way (as a file here). What the
# old vmon's kernel still held to send must never land: once back, it
# would overwrite a block of the new owner's, which stopped before.
start_writer w2 "$IMG" "n=0 resume=1"
check "the new owner resumes the log and writes" advancing w2 acked
"$VMON" ctl "$TMP/w2.sock" pause >/dev/null 2>&1 || true
acked2=$(value w2 acked)
"$VMON" ctl "$TMP/w2.sock" stop >/dev/null 2>&1 || true
exit_status "$SPID" 10
check "the new owner stops with 0 ($XRC)" [ "$XRC" = 0 ]
ip link set vr up
# A vmon still stuck in its write ends once TCP has resent it (up to a
# backed-off retransmission timeout later): then the write has landed.
wait_for "! kill -0 $WPID" 60 || true
sleep 1
out=$("$CHECKER" "$IMG" --min-seq "$acked2" 2>&1) || true
echo "   $out (acked $acked2)"
check "the log on the image verifies, the new owner's block $acked2 included" \
	grep -q '^blklog_check: ok' <<<"$out"
check "the new owner went past the old one ($acked2 > $acked)" [ "$acked2" -gt "$acked" ]

echo "== a running writer whose server goes silent: paused, not hung"
# The server's end of the link down, its address still known (ARP would
# say "no route to host" after 3 s): SYNs and writes go out and nothing
# answers. Without a bound the write would wait on TCP's retransmissions
# for about 15 minutes; TCP_USER_TIMEOUT (20 s) ends the connection, the
# disk is gone and the VM pauses with the reason; back, a resume goes on.
ip neigh replace 10.9.0.2 lladdr "$(nsenter -t "$SRV" -n ip -o link show vn | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')" \
	dev vr nud permanent
start_writer q "$DISK" "n=0 resume=1"
check "a writer on NBD writes" advancing q acked
nsenter -t "$SRV" -n ip link set vn down
t0=$(date +%s%3N)
wait_for "status_json q | grep -q '\"state\": *\"paused\"'" 40 || true
t_pause=$(($(date +%s%3N) - t0))
st=$("$VMON" ctl "$TMP/q.sock" status 2>&1 || true)
echo "   paused after $t_pause ms: $(grep 'paused because' <<<"$st" | cut -c1-160)"
check "it pauses after the 20 s wait for an acknowledgement ($t_pause ms)" \
	[ "$t_pause" -ge 15000 -a "$t_pause" -lt 32000 ]
check "status says the storage is unreachable" grep -q "paused because: disk 0 .*unreachable" <<<"$st"
nsenter -t "$SRV" -n ip link set vn up
check "with the link back, vmon ctl resume reconnects" wait_for "'$VMON' ctl '$TMP/q.sock' resume >/dev/null 2>&1" 10
check "and it writes on" advancing q acked
acked2=$(value q acked)
"$VMON" ctl "$TMP/q.sock" stop >/dev/null 2>&1 || true
exit_status "$SPID" 10

echo "== a start with its storage out of reach: status 7"
start_at() { # start_at NAME DISK: the writer's exit status in XRC, its time in T_MS
	local t0; t0=$(date +%s%3N)
	start_writer "$1" "$2" "n=0 resume=1"
	exit_status "$SPID" 15
	T_MS=$(($(date +%s%3N) - t0))
	echo "   $1: status $XRC after $T_MS ms: $(tail -1 "$TMP/$1.err")"
}
# Silent again (the neighbour entry above stays): SYNs go unanswered.
nsenter -t "$SRV" -n ip link set vn down
start_at s1 "$DISK"
check "a server that gives no answer: status 7" [ "$XRC" = 7 ]
check "after the 5 s connect wait, not TCP's minutes ($T_MS ms)" \
	[ "$T_MS" -ge 4500 -a "$T_MS" -lt 9000 ]
check "it says so" grep -q "no connection in 5000 ms" "$TMP/s1.err"
check "the lease is free after it" lease_free
nsenter -t "$SRV" -n ip link set vn up
kill "$NBDPID" 2>/dev/null; wait "$NBDPID" 2>/dev/null || true
start_at s2 "$DISK"
check "a server that is down (refused): status 7" [ "$XRC" = 7 ]
check "at once ($T_MS ms)" [ "$T_MS" -lt 2000 ]
check "it says so" grep -q "Connection refused" "$TMP/s2.err"
start_at s3 "nbd://10.9.0.2:10809,lease=$TMP/no/such/dir"
check "a lease file that cannot be made is a configuration error: status 2" [ "$XRC" = 2 ]
nsenter -t "$SRV" -n nbdkit -f -i 10.9.0.2 -p 10809 file "$IMG" >>"$TMP/nbdkit.log" 2>&1 &
NBDPID=$!; PIDS="$PIDS $NBDPID"
wait_for "python3 -c 'import socket; socket.create_connection((\"10.9.0.2\", 10809), 1).close()'" 10
start_writer s4 "$DISK" "n=0 resume=1"
check "with the server back, the same start runs and writes" advancing s4 acked
"$VMON" ctl "$TMP/s4.sock" stop >/dev/null 2>&1 || true
exit_status "$SPID" 10
out=$("$CHECKER" "$IMG" --min-seq "$acked2" 2>&1) || true
check "the log still verifies ($out)" grep -q '^blklog_check: ok' <<<"$out"
finish
