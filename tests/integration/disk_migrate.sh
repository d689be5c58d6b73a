#!/bin/bash
# A blkwriter guest writes its log continuously to a file disk while it is
# migrated 10 times between vmons on this host; afterwards the log verifies
# (no gap, duplicate or torn block, on the image and from a guest) and every
# write acknowledged to the guest is on the image. Then 5 more with the
# guest's requests through the submission ring. A source killed
# mid-migration too.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/disk_lib.sh"
require_kvm

IMG="$TMP/disk.img"
truncate -s 16M "$IMG"
echo "== 10 migrations of a writing guest, file disk"
start_writer w "$IMG" "n=0"
check "the writer runs and acknowledges writes" advancing w acked
hop_many 10 w "$SPID"
check "10 hops completed ($HOPS)" [ "$HOPS" -eq 10 ]
check "the guest still writes after the last hop" advancing "$CUR" acked
check "the disk is owned by the last vmon only" [ "$(value "$CUR" disk0.owned)" = 1 ]
ios=$(value "$CUR" io_errors)
check "no I/O errors ($ios)" [ "$ios" = 0 ]
stop_and_check "$CUR" "$CURPID" "$IMG"
guest_verify "$IMG"

# The same through the disk's submission ring: the ring (its head, its
# entries in flight) moves with the RAM and the device state, and the
# destination's poller takes over from the source's.
echo "== 5 migrations of a writer using the submission ring"
IMGR="$TMP/disk-ring.img"
truncate -s 16M "$IMGR"
start_writer r "$IMGR" "n=0 ring=1"
check "the ring writer runs and acknowledges writes" advancing r acked
check "its requests go through the ring" [ "$(value r disk0.ring_taken)" -gt 0 ]
hop_many 5 r "$SPID"
check "5 hops completed ($HOPS)" [ "$HOPS" -eq 5 ]
check "the guest still writes after the last hop" advancing "$CUR" acked
taken=$(value "$CUR" disk0.ring_taken)
check "the last destination serves the ring ($taken taken)" [ "$taken" -gt 0 ]
check "no ring faults" [ "$(value "$CUR" disk0.ring_errors)" = 0 ]
stop_and_check "$CUR" "$CURPID" "$IMGR"
guest_verify "$IMGR"

# A source killed during a migration (whatever the phase the kill lands
# in): its lock dies with it, the guest runs in one place at most, and
# wherever it goes on, the log stays whole.
echo "== a source killed mid-migration"
IMG2="$TMP/disk2.img"
truncate -s 16M "$IMG2"
start_writer k "$IMG2" "n=0"
kpid=$SPID
check "the writer runs" advancing k acked
start_dest kd
( timeout 30 "$VMON" ctl "$TMP/k.sock" migrate "tcp:127.0.0.1:$DPORT" --wait >/dev/null 2>&1 || true ) &
sleep 0.0$((RANDOM % 9 + 1))
kill -9 "$kpid"; wait "$kpid" 2>/dev/null || true
exit_status "$DPID" 3
if [ "$XRC" = running ] && [ ! -S "$TMP/kd.sock" ]; then
	# Killed before it connected: the destination still waits, with no VM.
	kill "$DPID"; exit_status "$DPID" 5
	XRC="no VM ($XRC)"
fi
echo "   destination after the kill: ${XRC}, $(status_json kd | tr -d '\n' | cut -c1-120)"
if [ "$XRC" = running ]; then
	# Awaiting the commit that never came, or running already: go on there.
	"$VMON" ctl "$TMP/kd.sock" resume >/dev/null 2>&1 || true
	check "the destination runs the guest on its own disk lock" advancing kd acked
	stop_and_check kd "$DPID" "$IMG2"
else
	check "the destination never ran the guest ($XRC)" [ "$XRC" != 0 ]
	# A new vmon must get the lock at once (else exit 2) and find the log whole.
	guest_verify "$IMG2"
fi
finish
