#!/bin/bash
# A VM with a disk through the cluster (issues 4 and 5): blkwriter writes
# its log to a raw image on "shared" storage (a directory every lab node
# sees) while clusterctl migrates it host1 -> host2 -> host3 -> host1; a
# second VM on the same disk is refused by its vmon, which names the
# holder, and the cluster says so; afterwards the log on the image
# verifies with every acknowledged block in it.
. "$(dirname "$0")/lab_lib.sh"
GUESTS=${FERRY_GUESTS:-$LAB_SRC/build/guests}
CHECKER="$FERRY_BIN/../tests/blklog_check"
SHARED=$(mktemp -d /tmp/ferry-shared.XXXXXX)
trap 'rc=$?; set +e; if mountpoint -q "$SHARED/full"; then lab_down >/dev/null 2>&1
	umount "$SHARED/full" || umount -l "$SHARED/full"; fi; rm -rf "$SHARED"; (exit $rc); lab_at_exit' EXIT

ctl() { lab_exec "$@" >/dev/null 2>&1; }
ctl_json() { local h=$1; shift; lab_exec "$h" clusterctl -o json "$@" 2>/dev/null; }
host_of() { ctl_json host1 vm show "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["vm"]["host"])'; }
sock_of() { local h; h=$(host_of "$1"); ls "$LAB_DIR/$h/run/$1".sock "$LAB_DIR/$h/run/$1".in.sock 2>/dev/null | head -1; }
acked() {
	"$FERRY_BIN/vmon" ctl "$(sock_of "$1")" stats -o json |
		python3 -c 'import json,sys; print(json.load(sys.stdin).get("values", {}).get("acked", 0))'
}
advancing() { local a b; a=$(acked d1) || return 1; sleep 0.3; b=$(acked d1) || return 1; [ "$b" -gt "$a" ]; }
vm_list_has() { lab_exec "$1" clusterctl vm list 2>/dev/null | grep -q -- "$2"; }
last_error() { ctl_json host1 vm show "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["vm"].get("last_error", ""))'; }

truncate -s 16M "$SHARED/d1.img"
# A small file system for a disk that fills up (below), mounted before the
# lab so that its nodes' mount namespaces have it too.
mkdir -p "$SHARED/full"
FULL_OK=0
mount -t tmpfs -o size=1m tmpfs "$SHARED/full" 2>"$SHARED/mount.err" && FULL_OK=1
lab_up 3

check "vm create d1 with a disk" ctl host1 clusterctl vm create d1 --guest "$GUESTS/blkwriter" \
	--args "rate=500" --mem 32M --disk "$SHARED/d1.img"
check "vm show lists the disk" bash -c "'$LAB_TOOL' exec --name $LAB_NAME host2 clusterctl vm show d1 | grep -q 'disk 0: *$SHARED/d1.img'"
check "d1 starts on host1" ctl host1 clusterctl vm start d1 --host host1
check "d1 writes" wait_for 10 "d1 writing" advancing
for h in host2 host3 host1; do
	out=$(lab_exec host2 clusterctl migrate d1 $h 2>&1) && rc=0 || rc=$?
	echo "  $out"
	check "migrate d1 $h" test "$rc" = 0
	check "d1 writes on $h" wait_for 10 "d1 writing on $h" advancing
done

echo "== a second VM on the same disk"
check "vm create d2 on d1's disk" ctl host1 clusterctl vm create d2 --guest "$GUESTS/blkwriter" \
	--mem 32M --disk "$SHARED/d1.img"
ctl host1 clusterctl vm start d2 --host host2
check "d2's vmon refuses: the cluster marks it stopped" wait_for 15 "d2 stopped" bash -c \
	"[ \"\$('$LAB_TOOL' exec --name $LAB_NAME host3 clusterctl -o json vm show d2 | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"vm\"].get(\"desired\"))')\" = VM_DESIRED_STOPPED ]"
err=$(last_error d2)
echo "  d2: $err"
check "the reason names the disk's holder" grep -qi "held\|holder\|lock" <<<"$err"
check "d1 still writes" advancing

echo "== a disk still held by a previous owner (a fenced vmon on its way out)"
# Another process holds d4's image for 4 s: its vmon exits 6 (disk in use),
# and the agent starts it again, 1, 2, 4 s later, instead of reporting the
# end (which would leave the VM down: an HA recovery after a fence found
# the fenced vmon still holding an NBD disk, session 31). d2 above, whose
# disk another VM of the cluster names, is told at once.
truncate -s 16M "$SHARED/d4.img"
python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "r+"); fcntl.lockf(f, fcntl.LOCK_EX)
open(sys.argv[2], "w").close(); time.sleep(4)' "$SHARED/d4.img" "$SHARED/d4.held" &
holder=$!
wait_for 5 "the holder's lock" test -e "$SHARED/d4.held" || true
check "vm create d4 on its own disk" ctl host1 clusterctl vm create d4 --guest "$GUESTS/blkwriter" \
	--mem 32M --disk "$SHARED/d4.img"
check "vm start d4 on host2 while another process holds its disk" ctl host1 clusterctl vm start d4 \
	--host host2
check "host2's agent starts it again instead of giving up" wait_for 10 "the retry" \
	grep -q "d4: its disk is in use; starting it again in 1 s" "$LAB_DIR/host2/clusterd.log"
wait "$holder" 2>/dev/null || true
check "once the holder is gone, d4 runs" wait_for 20 "d4 running" \
	vm_list_has host1 "^d4 *running "
check "d4 stops" ctl host1 clusterctl vm stop d4

echo "== a VM whose storage is out of reach when it starts (its NBD server is down)"
# Its vmon exits 7; the agent starts it again (1, 2, 4, 8, then every
# 15 s, for 10 minutes), vm list and vm show say why meanwhile, and it
# runs once the server is up. Before, it was reported as a configuration
# error at once: an HA VM restarted while the storage was away stayed down.
if command -v nbdkit >/dev/null; then
	truncate -s 16M "$SHARED/d5.img"
	addr=$("$LAB_TOOL" --name "$LAB_NAME" storage)
	check "vm create d5 on an NBD disk" ctl host1 clusterctl vm create d5 \
		--guest "$GUESTS/blkwriter" --mem 32M --disk "nbd://$addr:10809,lease=$SHARED/d5.lease"
	check "vm start d5 on host3, its server not up" ctl host1 clusterctl vm start d5 --host host3
	check "vm list says it waits for its storage" wait_for 15 "d5 waiting" \
		vm_list_has host2 "^d5 *waiting *host3 .*its disk's storage is out of reach; trying again in"
	lab_exec host2 clusterctl vm list 2>/dev/null | grep '^d5' | sed 's/^/  /'
	check "vm show says why" bash -c "'$LAB_TOOL' exec --name $LAB_NAME host1 clusterctl vm show d5 |
		grep -q 'waiting: *not running: .*Connection refused'"
	"$LAB_TOOL" --name "$LAB_NAME" storage nbdkit -f -i "$addr" -p 10809 file "$SHARED/d5.img" \
		>"$SHARED/nbdkit.log" 2>&1 &
	nbdkit_pid=$!
	check "once the server is up, d5 runs" wait_for 30 "d5 running" \
		vm_list_has host1 "^d5 *running *host3 "
	d5_writes() { [ "$(acked d5 2>/dev/null || echo 0)" -gt 0 ]; }
	check "and writes" wait_for 10 "d5 writing" d5_writes
	d5_writes_more() { local a; a=$(acked d5) || return 1; sleep 0.3; [ "$(acked d5)" -gt "$a" ]; }

	echo "== maintenance while that storage is down: the follow says why d5 has not left"
	# d5 pauses (its disk gone); its move is refused by each destination's
	# precheck, which cannot reach the storage either, and tried again;
	# host maintenance enter says why, once, and ends once the server is
	# back and d5 has left (paused: its held requests go with it). SIGKILL:
	# nbdkit waits for its clients on SIGTERM.
	kill -9 "$nbdkit_pid" 2>/dev/null; wait "$nbdkit_pid" 2>/dev/null || true
	check "d5 pauses, its storage gone" wait_for 15 "d5 paused" \
		vm_list_has host1 "^d5 *paused *host3 .*the storage is unreachable"
	lab_exec host2 clusterctl host maintenance host3 enter >"$SHARED/maint.out" 2>&1 &
	maint_pid=$!
	check "enter says why d5 has not left" wait_for 20 "the refusal said" \
		grep -q "evacuating host3: d5's move to host[12] failed; trying again: .*Connection refused" \
		"$SHARED/maint.out"
	check "and says it once, though tried again every second" \
		bash -c "sleep 3; [ \$(grep -c \"d5's move to\" '$SHARED/maint.out') -le 2 ]"
	grep "d5's move" "$SHARED/maint.out" | head -2 | cut -c1-220 | sed 's/^/  /'
	"$LAB_TOOL" --name "$LAB_NAME" storage nbdkit -f -i "$addr" -p 10809 file "$SHARED/d5.img" \
		>>"$SHARED/nbdkit.log" 2>&1 &
	nbdkit_pid=$!
	rc=0; wait "$maint_pid" || rc=$?
	check "with the server back, host3 empties (enter: $rc)" [ "$rc" = 0 ]
	tail -1 "$SHARED/maint.out" | sed 's/^/  /'
	check "d5 left host3, paused" wait_for 10 "d5 paused elsewhere" \
		vm_list_has host1 "^d5 *paused *host[12] "
	check "vm resume d5 runs it there" ctl host1 clusterctl vm resume d5
	check "and it writes again" wait_for 10 "d5 writing" d5_writes_more
	check "host3 leaves maintenance" ctl host1 clusterctl host maintenance host3 exit
	check "d5 stops" ctl host1 clusterctl vm stop d5
	kill "$nbdkit_pid" 2>/dev/null; wait "$nbdkit_pid" 2>/dev/null || true
else
	echo "SKIP (part): nbdkit is not installed"
fi

echo "== a VM whose disk fills up"
# Its vmon holds the write and pauses the guest (docs/storage.md); the
# cluster says so, with vmon's reason, until room is made and it resumes
# (by itself: disk-auto-resume-s).
vm_show_has() { lab_exec "$1" clusterctl vm show "$2" 2>/dev/null | grep -q -- "$3"; }
if [ $FULL_OK = 0 ]; then
	echo "************************************************************"
	echo "NOT RUN: a disk that fills up: cannot mount a tmpfs: $(cat "$SHARED/mount.err")"
	echo "************************************************************"
else
	truncate -s 16M "$SHARED/full/d3.img"
	# Its vmons resume it themselves once there is room (vmon --auto-resume-s),
	# looking every 60 s, until the setting changes (below).
	check "config set disk-auto-resume-s 60" ctl host1 clusterctl config set disk-auto-resume-s 60
	check "vm create d3, its disk a thin image on a 1 MiB tmpfs" ctl host1 clusterctl vm create d3 \
		--guest "$GUESTS/blkwriter" --mem 32M --disk "$SHARED/full/d3.img"
	check "d3 starts on host3" ctl host1 clusterctl vm start d3 --host host3
	check "vm list on host1 says d3 is paused, and why" wait_for 20 "d3 paused in vm list" \
		vm_list_has host1 "^d3 *paused .*disk 0 ($SHARED/full/d3.img): the storage is full"
	lab_exec host2 clusterctl vm show d3 | grep -E "^(state|paused):" | sed 's/^/  /'
	ar_is() { "$FERRY_BIN/vmon" ctl "$(sock_of d3)" status 2>/dev/null | grep -q "looked at every $1 s"; }
	check "its vmon looks every 60 s (--auto-resume-s 60)" ar_is 60
	check "vm show on host2 too" vm_show_has host2 d3 \
		"^paused: *by its vmon: disk 0 .*No space left on device.*make room"
	out=$(lab_exec host2 clusterctl vm resume d3 2>&1) && rc=0 || rc=$?
	echo "  $out"
	check "vm resume from host2, no room yet: host3's vmon resumed it" \
		bash -c '[ "$0" = 0 ] && grep -q "its vmon on host3 resumed it" <<<"$1"' "$rc" "$out"
	check "...and it pauses again, saying why" wait_for 10 "d3 paused again" \
		vm_list_has host1 "^d3 *paused .*the storage is full"
	check "host3's vmon logged the second pause" test "$(grep -c "pausing: disk 0" \
		"$LAB_DIR/host3/run/d3.log" 2>/dev/null || echo 0)" -ge 2
	# A host in maintenance must empty, its paused VMs too: d3 moves as it
	# is, its held write with it, and lands paused.
	out=$(lab_exec host1 clusterctl host maintenance host3 enter 2>&1) && rc=0 || rc=$?
	echo "$out" | tail -2 | sed 's/^/  /'
	check "host3 enters maintenance, emptied ($rc)" test "$rc" = 0
	d3_host=$(ctl_json host1 vm show d3 | json_get 'j["vm"]["host"]')
	check "d3 moved off host3 (to $d3_host)" bash -c '[ -n "$0" ] && [ "$0" != host3 ]' "$d3_host"
	check "vm list says d3 is paused there, for the same reason" wait_for 10 "d3 paused on $d3_host" \
		vm_list_has host2 "^d3 *paused *$d3_host .*the storage is full"
	check "its vmon there holds the write" test "$("$FERRY_BIN/vmon" ctl "$(sock_of d3)" stats 2>/dev/null |
		sed -n 's/^device disk0.held = //p')" -ge 1
	# The running vmon takes a new setting: else no look for a minute.
	check "config set disk-auto-resume-s 1" ctl host1 clusterctl config set disk-auto-resume-s 1
	check "its running vmon on $d3_host now looks every 1 s" wait_for 10 "auto-resume 1" ar_is 1
	mount -o remount,size=32m "$SHARED/full"
	check "room made: it runs again by itself (disk-auto-resume-s 1)" wait_for 15 "d3 running" \
		vm_list_has host1 "^d3 *running "
	check "its vmon on $d3_host says auto-resume did it" grep -q "d3: auto-resume: trying again" \
		"$LAB_DIR/$d3_host/run/d3.log"
	check "config set disk-auto-resume-s default" ctl host1 clusterctl config set \
		disk-auto-resume-s default
	ar_off() { local o; o=$("$FERRY_BIN/vmon" ctl "$(sock_of d3)" status 2>/dev/null) &&
		! grep -q "auto-resume" <<<"$o"; }
	check "and its vmon no longer auto-resumes" wait_for 10 "auto-resume off" ar_off
	check "host3 leaves maintenance" ctl host1 clusterctl host maintenance host3 exit
	check "vm resume of an unknown VM is refused" fails host1 "vm resume: nope: no such VM" vm resume nope
	check "d3 stops" ctl host1 clusterctl vm stop d3
	check "vm resume of a stopped VM is refused" fails host2 "vm resume: d3: d3 is not running" \
		vm resume d3
fi

echo "== the log"
sock=$(sock_of d1)
"$FERRY_BIN/vmon" ctl "$sock" pause >/dev/null
n=$(acked d1)
check "d1 stops" ctl host1 clusterctl vm stop d1
wait_for 10 "d1's vmon gone" bash -c "! ls '$sock' 2>/dev/null" || true
out=$("$CHECKER" "$SHARED/d1.img" --min-seq "$n" 2>&1) || true
echo "  $out (acked $n)"
check "the log verifies with every acknowledged block ($n)" grep -q '^blklog_check: ok' <<<"$out"
finish
