#!/bin/bash
# Injected I/O errors (nbdkit's error filter fails 5% of writes with EIO):
# each one reaches the guest as the request's error status (the guest
# writes the block again), is counted in vmon ctl stats, is logged once,
# and nothing acknowledged is lost: the log verifies on the image.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/disk_lib.sh"
require_kvm

IMG="$TMP/disk.img"
truncate -s 8M "$IMG"
start_nbdkit_filtered "$IMG" --filter=error file "$IMG" error=EIO error-pwrite-rate=5%
DISK="nbd://127.0.0.1:$NBDPORT,lease=$TMP/disk.lease"

start_writer e "$DISK" "n=0"
check "the writer runs through the errors" advancing e acked
wait_for "[ \$(value e io_errors) -gt 20 ]" 20 || true
gerr=$(value e io_errors); derr=$(value e disk0.io_errors)
echo "   guest saw $gerr errors, the device counted $derr"
check "the guest got error statuses ($gerr > 20)" [ "$gerr" -gt 20 ]
check "the device counted them ($derr >= $gerr)" [ "$derr" -ge "$gerr" ]
check "the VM kept running (errors do not pause it)" \
	grep -q running <<<"$("$VMON" ctl "$TMP/e.sock" status)"
n=$(grep -c "I/O error" "$TMP/e.err" || true)
check "the error is logged once ($n)" [ "$n" = 1 ]
hop_many 2 e "$SPID"
check "2 migrations through the errors ($HOPS)" [ "$HOPS" -eq 2 ]
stop_and_check "$CUR" "$CURPID" "$IMG"
finish
