#!/bin/bash
# A thin image on a file system that fills up: the write that finds no room
# is held, not failed (the guest never sees ENOSPC, which would make a Linux
# guest take its file system read-only), and the VM pauses naming the disk
# and the cause. Migrated so, it lands paused with the write held. A
# resume without room pauses it again; one after room was made retries
# the held write, and nothing acknowledged is lost: the log verifies on
# the image. Twice: through blk_submit, and through the disk's submission
# ring (its entry held). (The guest pauses before a second write fails, so
# one is held here; test_blk_ring moves three.)
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
paused() { status_json "$1" | grep -q '"state": *"paused"'; }

# full_case SRC DST ARGS MIN: blkwriter ARGS as SRC fills the file system,
# MIN writes held or more; it moves to DST paused, and goes on there once
# there is room.
full_case() {
	local s=$1 d=$2 args=$3 min=$4 st a1 a2 a3 a4 n h
	rm -f "$IMG"
	mount -o remount,size=2m "$FS"
	truncate -s 16M "$IMG"
	echo "== a 16 MiB thin image on a 2 MiB file system ($args)"
	start_writer "$s" "$IMG" "$args"
	check "the VM pauses once the file system is full" wait_for "paused $s" 30
	st=$("$VMON" ctl "$TMP/$s.sock" status 2>&1)
	echo "$st" | sed 's/^/   /'
	check "status names the disk and the cause" grep -q \
		"paused because: disk 0 ($IMG): the storage is full (No space left on device); its requests are held: make room" <<<"$st"
	check "the guest got no error ($(value "$s" io_errors))" [ "$(value "$s" io_errors)" = 0 ]
	check "the device says full" [ "$(value "$s" disk0.full)" = 1 ]
	check "and not unreachable" [ "$(value "$s" disk0.unreachable)" = 0 ]
	a1=$(value "$s" acked); sleep 0.5; a2=$(value "$s" acked)
	check "nothing is acknowledged while it is full ($a1 = $a2, > 0)" \
		bash -c '[ "$0" = "$1" ] && [ "$0" -gt 0 ]' "$a1" "$a2"
	h=$(value "$s" disk0.held)
	check "$h writes held (at least $min)" [ "$h" -ge "$min" ]
	# A snapshot carries them too; the offline verifier reads them.
	check "a snapshot of it saves" "$VMON" ctl "$TMP/$s.sock" save "$TMP/$s.snap"
	out=$("$FERRY_BIN/migstream" verify "$TMP/$s.snap" 2>&1) || true
	echo "   ${out##*devices}"
	check "migstream: sound, the guest paused with requests held" grep -q \
		"sound: .*the guest paused (disk 0 ($IMG): the storage is full.*; disk requests held)" <<<"$out"
	check "and the VM is still paused after the save" paused "$s"

	# A VM paused with writes held moves as it is (a host in maintenance
	# must empty): the held writes travel with it, and it lands paused.
	echo "== migrated paused: the held writes go along"
	start_dest "$d" --mem 32M || bad "the destination did not start"
	migrate "$s" "$DPORT"
	echo "$MOUT" | sed -n '1p;/downtime/p' | sed 's/^/   /'
	check "the migration of the paused VM completes ($MRC)" [ "$MRC" = 0 ]
	check "it says the guest stays paused there" grep -q \
		"the guest was paused (disk 0 ($IMG): the storage is full.*) and stays paused at the destination" <<<"$MOUT"
	exit_status "$SPID" 10
	check "the source vmon exits, the guest handed over ($XRC)" [ "$XRC" = 0 ]
	st=$("$VMON" ctl "$TMP/$d.sock" status 2>&1)
	echo "$st" | sed 's/^/   /'
	check "the destination holds it paused, for the same reason" grep -q \
		"paused because: disk 0 ($IMG): the storage is full (No space left on device); its requests are held" <<<"$st"
	check "its device says full" [ "$(value "$d" disk0.full)" = 1 ]
	check "and holds the source's $h writes" [ "$(value "$d" disk0.held)" = "$h" ]
	a3=$(value "$d" acked); sleep 0.5; a4=$(value "$d" acked)
	check "it did not run: nothing more acknowledged ($a1, $a3, $a4)" \
		bash -c '[ "$0" = "$1" ] && [ "$1" = "$2" ]' "$a1" "$a3" "$a4"

	echo "== resume without room: paused again"
	check "resume" "$VMON" ctl "$TMP/$d.sock" resume
	check "the held writes fail for room again: paused" wait_for "paused $d" 10
	check "still full, the guest still without an error" \
		bash -c '[ "$0" = 1 ] && [ "$1" = 0 ]' "$(value "$d" disk0.full)" "$(value "$d" io_errors)"

	echo "== room made: resume retries the held writes"
	mount -o remount,size=32m "$FS"
	check "resume" "$VMON" ctl "$TMP/$d.sock" resume
	check "the guest writes again" advancing "$d" acked
	check "no longer full" [ "$(value "$d" disk0.full)" = 0 ]
	n=$(cat "$TMP/$s.err" "$TMP/$d.err" | grep -c "pausing: disk 0 .*the storage is full" || true)
	# The first, at the source, and the one after the resume without room.
	check "each pause is logged, one line each ($n)" [ "$n" = 2 ]
	check "the guest never saw an error" [ "$(value "$d" io_errors)" = 0 ]
	stop_and_check "$d" "$DPID" "$IMG"
}

full_case f g "n=0" 1
full_case rf rg "n=0 ring=1 qd=8" 1

# vmon --auto-resume-s: no try while the file system has no room for the
# held write; once it has, the VM goes on by itself. The operator's own
# pause is never undone. Here it is started, stopped and given a new period
# with vmon ctl auto-resume on the running vmon, as the cluster agent does
# when disk-auto-resume-s changes.
echo "== auto-resume: it resumes by itself once there is room"
rm -f "$IMG"
mount -o remount,size=2m "$FS"
truncate -s 16M "$IMG"
start_writer a "$IMG" "n=0"
check "the VM pauses once the file system is full" wait_for "paused a" 30
check "ctl auto-resume 1 on the running vmon" "$VMON" ctl "$TMP/a.sock" auto-resume 1
check "status says so" bash -c "'$VMON' ctl '$TMP/a.sock' status | grep -q 'looked at every 1 s'"
check "ctl auto-resume 3601 is refused" bash -c "! '$VMON' ctl '$TMP/a.sock' auto-resume 3601"
a1=$(value a acked); sleep 2.5; a2=$(value a acked); p=no; paused a && p=yes
check "no room: it stays paused ($p), nothing tried ($a1 = $a2)" bash -c \
	'[ "$0" = "$1" ] && [ "$2" = yes ] && ! grep -q "auto-resume: trying" "$3"' "$a1" "$a2" "$p" \
	"$TMP/a.err"
check "ctl auto-resume 0 stops it" "$VMON" ctl "$TMP/a.sock" auto-resume 0
check "status says nothing of it" bash -c "! '$VMON' ctl '$TMP/a.sock' status | grep -q auto-resume"
mount -o remount,size=32m "$FS"
a1=$(value a acked); sleep 2.5; a2=$(value a acked); p=no; paused a && p=yes
check "room made but auto-resume off: still paused ($p, $a1 = $a2)" bash -c \
	'[ "$0" = "$1" ] && [ "$2" = yes ]' "$a1" "$a2" "$p"
# Started anew at 600 s, then re-periodded: the next look is 1 s from then.
check "ctl auto-resume 600, then 1" bash -c "'$VMON' ctl '$TMP/a.sock' auto-resume 600 &&
	'$VMON' ctl '$TMP/a.sock' auto-resume 1"
check "it writes again with no resume asked" advancing a acked
check "its log says auto-resume did it" grep -q \
	"a: auto-resume: trying again (disk 0 ($IMG): the storage is full" "$TMP/a.err"
check "the guest never saw an error" [ "$(value a io_errors)" = 0 ]
check "the operator pauses it" "$VMON" ctl "$TMP/a.sock" pause
a1=$(value a acked); sleep 2.5; a2=$(value a acked); p=no; paused a && p=yes
check "and it stays paused ($p): auto-resume leaves the operator's pause ($a1 = $a2)" \
	bash -c '[ "$0" = "$1" ] && [ "$2" = yes ]' "$a1" "$a2" "$p"
check "resume" "$VMON" ctl "$TMP/a.sock" resume
stop_and_check a "$SPID" "$IMG"
finish
