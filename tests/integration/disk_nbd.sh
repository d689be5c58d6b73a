#!/bin/bash
# The NBD backend (nbdkit on 127.0.0.1): a blkwriter migrated back and forth
# writes on; stopping the server pauses the VM with a reason in vmon ctl
# status (no spinning); resume fails while the server is down and works
# once it is back, and the log continues without loss. While the server is
# down, a migration is refused in its precheck, naming the server.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/disk_lib.sh"
require_kvm

IMG="$TMP/disk.img"
LEASE="$TMP/disk.lease"
truncate -s 16M "$IMG"
start_nbdkit "$IMG"
DISK="nbd://127.0.0.1:$NBDPORT,lease=$LEASE"

echo "== 10 migrations of a writing guest, NBD disk (as disk_migrate does on a file)"
start_writer w "$DISK" "n=0 ring=1"   # through the submission ring: its NBD hand-off too
check "the writer runs on NBD" advancing w acked
hop_many 10 w "$SPID"
check "10 hops completed ($HOPS)" [ "$HOPS" -eq 10 ]
check "the guest still writes after the last hop" advancing "$CUR" acked
check "the lease file names the last owner" grep -q "pid $CURPID" "$LEASE"

echo "== the server stops: the VM pauses with a reason"
kill -9 "$NBDPID"; wait "$NBDPID" 2>/dev/null || true
check "the VM pauses" wait_for "status_json $CUR | grep -q '\"state\": *\"paused\"'" 10
st=$("$VMON" ctl "$TMP/$CUR.sock" status 2>&1)
echo "$st" | sed 's/^/   /'
check "status says why" grep -q "paused because: disk 0 .*unreachable" <<<"$st"
a1=$(value "$CUR" acked); sleep 1; a2=$(value "$CUR" acked)
check "nothing is acknowledged while the storage is away ($a1 = $a2)" [ "$a1" = "$a2" ]
exits1=$(value "$CUR" io_errors)
check "no request failed to the guest ($exits1)" [ "$exits1" = 0 ]
rc=0; out=$("$VMON" ctl "$TMP/$CUR.sock" resume 2>&1) || rc=$?
check "resume fails while the server is down ($rc)" [ "$rc" != 0 ]
check "and the VM stays paused" grep -q paused <<<"$("$VMON" ctl "$TMP/$CUR.sock" status)"
start_dest "$CUR-nonbd" || bad "the destination did not start"
migrate "$CUR" "$DPORT"
echo "   $(tail -1 <<<"$MOUT")"
check "a migration is refused in the precheck ($MRC)" \
	bash -c '[ "$0" != 0 ] && grep -q precheck <<<"$1"' "$MRC" "$MOUT"
check "the refusal names the unreachable server" grep -q "127.0.0.1:$NBDPORT.*refused" <<<"$MOUT"
exit_status "$DPID" 10
check "the destination exits without the VM ($XRC)" \
	bash -c '[ "$0" != 0 ] && [ "$0" != running ]' "$XRC"
check "the source still owns the disk" [ "$(value "$CUR" disk0.owned)" = 1 ]

echo "== the server is back: resume reconnects and the log goes on"
REUSE_PORT=1 start_nbdkit "$IMG"
check "resume succeeds" "$VMON" ctl "$TMP/$CUR.sock" resume
check "the guest writes again" advancing "$CUR" acked
check "one reconnect counted" [ "$(value "$CUR" disk0.reconnects)" -ge 1 ]
stop_and_check "$CUR" "$CURPID" "$IMG"
finish
