#!/bin/bash
# A blkwriter guest writes its log continuously to a file disk while it is
# migrated 10 times between vmons on this host; afterwards the log verifies
# (no gap, duplicate or torn block, on the image and from a guest) and every
# write acknowledged to the guest is on the image. A snapshot/restore of a
# VM with a disk too.
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
finish
