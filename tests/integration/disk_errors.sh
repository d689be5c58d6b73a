#!/bin/bash
# Injected I/O errors (nbdkit's error filter fails 5% of writes with EIO):
# each one reaches the guest as the request's error status (the guest
# writes the block again), is counted in vmon ctl stats, is logged once,
# and nothing acknowledged is lost: the log verifies on the image. A new
# run with resume=1 continues that log, and refuses one broken since.
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

# blkwriter resume=1 (tools/clsoak --disk): a new run checks the log it
# finds and continues it, chained; a log with a block broken ends it.
resume() { "$VMON" run --name r --guest "$FERRY_GUESTS/blkwriter" --mem 32M --disk "$IMG" --args "n=20 resume=1" \
	>"$TMP/r.out" 2>&1; }
last=$("$CHECKER" "$IMG" | sed -n 's/.*last seq \([0-9]*\).*/\1/p')
check "a new run continues the log after block $last" resume
check "the log on the image verifies, 20 blocks longer" \
	"$CHECKER" "$IMG" --min-seq $((last + 20))
slot=$(((last + 10) % ($(stat -c %s "$IMG") / 4096)))
printf '\377' | dd of="$IMG" bs=1 seek=$((slot * 4096 + 100)) conv=notrunc 2>/dev/null
resume && rc=0 || rc=$?
check "a byte flipped in block $((last + 10)): the next run ends, CHECK FAILED (exit $rc)" \
	bash -c "[ $rc = 9 ] && grep -q 'blkwriter: CHECK FAILED: the log to resume: torn block at slot $slot' '$TMP/r.out'"
finish
