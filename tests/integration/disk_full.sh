#!/bin/bash
# A thin image on a file system that fills up: the write that finds no room
# is held, not failed (the guest never sees ENOSPC, which would make a Linux
# guest take its file system read-only), and the VM pauses naming the disk
# and the cause. A resume without room pauses it again; one after room was
# made retries the held write, and nothing acknowledged is lost: the log
# verifies on the image.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/disk_lib.sh"
require_kvm

FS="$TMP/fs"
mkdir -p "$FS"
if ! mount -t tmpfs -o size=2m tmpfs "$FS" 2>"$TMP/mount.err"; then
	echo "SKIP: cannot mount a tmpfs for a file system to fill: $(cat "$TMP/mount.err")"
	exit 77
fi
# The vmon holds the image open: kill it before the file system goes.
trap 'set +e; for p in $PIDS; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null
	umount "$FS" 2>/dev/null || umount -l "$FS"; cleanup' EXIT

IMG="$FS/disk.img"
truncate -s 16M "$IMG"
paused() { status_json f | grep -q '"state": *"paused"'; }

echo "== a 16 MiB thin image on a 2 MiB file system"
start_writer f "$IMG" "n=0"
check "the VM pauses once the file system is full" wait_for paused 30
st=$("$VMON" ctl "$TMP/f.sock" status 2>&1)
echo "$st" | sed 's/^/   /'
check "status names the disk and the cause" grep -q \
	"paused because: disk 0 ($IMG): the storage is full (No space left on device); its requests are held: make room" <<<"$st"
check "the guest got no error ($(value f io_errors))" [ "$(value f io_errors)" = 0 ]
check "the device says full" [ "$(value f disk0.full)" = 1 ]
check "and not unreachable" [ "$(value f disk0.unreachable)" = 0 ]
a1=$(value f acked); sleep 0.5; a2=$(value f acked)
check "nothing is acknowledged while it is full ($a1 = $a2, > 0)" \
	bash -c '[ "$0" = "$1" ] && [ "$0" -gt 0 ]' "$a1" "$a2"
start_dest f-dest --mem 32M || bad "the destination did not start"
migrate f "$DPORT"
echo "   $(tail -1 <<<"$MOUT")"
check "a migration is refused while the write is held ($MRC)" \
	bash -c '[ "$0" != 0 ] && grep -q "disk requests are held because their storage is unreachable or full" <<<"$1"' \
	"$MRC" "$MOUT"
exit_status "$DPID" 10
check "the destination exits without the VM ($XRC)" bash -c '[ "$0" != 0 ] && [ "$0" != running ]' "$XRC"
check "and the VM stays paused here" paused

echo "== resume without room: paused again"
check "resume" "$VMON" ctl "$TMP/f.sock" resume
check "the held write fails for room again: paused" wait_for paused 10
check "still full, the guest still without an error" \
	bash -c '[ "$0" = 1 ] && [ "$1" = 0 ]' "$(value f disk0.full)" "$(value f io_errors)"

echo "== room made: resume retries the held write"
mount -o remount,size=32m "$FS"
check "resume" "$VMON" ctl "$TMP/f.sock" resume
check "the guest writes again" advancing f acked
check "no longer full" [ "$(value f disk0.full)" = 0 ]
n=$(grep -c "pausing: disk 0 .*the storage is full" "$TMP/f.err" || true)
# The first, the one after the refused switchover (it resumes what it
# paused, and the held write fails again) and the one after resume.
check "each pause is logged, one line each ($n)" [ "$n" = 3 ]
check "the guest never saw an error" [ "$(value f io_errors)" = 0 ]
stop_and_check f "$SPID" "$IMG"
finish
