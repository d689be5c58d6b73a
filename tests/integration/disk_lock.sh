#!/bin/bash
# Disk ownership: exactly one vmon may write a disk. A second vmon on the
# same disk refuses to start (status 2) and names the holder, for a file
# disk (OFD lock on the image) and an NBD disk (OFD lock on its lease file,
# which names the owner's host and pid). A killed owner leaves the disk
# free (the lock dies with the process). A destination that cannot open the
# disk refuses the migration in its precheck, and the source keeps the
# disk and runs on.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/disk_lib.sh"
require_kvm

IMG="$TMP/disk.img"
truncate -s 8M "$IMG"

# one_shot DISK [guest args]: a blkwriter vmon run to its end; OUT, RC.
one_shot() {
	RC=0; OUT=$(timeout 10 "$VMON" run --guest "$FERRY_GUESTS/blkwriter" --mem 32M \
		--disk "$1" --args "${2:-n=1}" 2>&1) || RC=$?
	echo "   $OUT"
}

echo "== file disk: a second vmon is refused and told who holds it"
start_writer a "$IMG" "n=0"
apid=$SPID
check "the first writer runs" advancing a acked
one_shot "$IMG"
check "the second vmon exits 6, disk in use ($RC)" [ "$RC" = 6 ]
check "it names the holder's pid $apid" grep -q "held by pid $apid (vmon)" <<<"$OUT"
check "the first writer still runs" advancing a acked

echo "== a destination that cannot open the disk refuses; the source keeps it"
start_dest d1
mv "$IMG" "$IMG.moved"
migrate a "$DPORT"
mv "$IMG.moved" "$IMG"
echo "   $(tail -1 <<<"$MOUT")"
check "the migration fails (rc $MRC)" [ "$MRC" -ne 0 ]
check "the reason names the disk" grep -q "disk 0" <<<"$MOUT"
check "it is refused in the precheck, before any page moved" grep -q "precheck" <<<"$MOUT"
exit_status "$DPID" 10
check "the destination exits non-zero ($XRC)" bash -c '[ "$0" != 0 ] && [ "$0" != running ]' "$XRC"
check "the source still owns the disk" [ "$(value a disk0.owned)" = 1 ]
check "the source writes on" advancing a acked

echo "== a killed owner leaves the disk free"
kill -9 "$apid"; wait "$apid" 2>/dev/null || true
one_shot "$IMG" mode=verify
check "a new vmon takes the disk at once and the log verifies ($RC)" [ "$RC" = 0 ]

echo "== NBD disk: the lease file names the owner"
start_nbdkit "$IMG"
LEASE="$TMP/disk.lease"
start_writer n1 "nbd://127.0.0.1:$NBDPORT,lease=$LEASE" "n=0"
npid=$SPID
check "the NBD writer runs" advancing n1 acked
one_shot "nbd://127.0.0.1:$NBDPORT,lease=$LEASE"
check "the second NBD vmon exits 6, disk in use ($RC)" [ "$RC" = 6 ]
check "it names the holder (host and pid $npid)" grep -q "host $(hostname) pid $npid" <<<"$OUT"
one_shot "nbd://127.0.0.1:$NBDPORT"
check "an NBD disk without a lease file is refused ($RC)" [ "$RC" = 2 ]
check "the refusal asks for a lease file" grep -q "lease=PATH" <<<"$OUT"
"$VMON" ctl "$TMP/n1.sock" stop >/dev/null 2>&1 || true
exit_status "$npid" 10
finish
