# Helpers for the disk tests (issue 5): vmons with disks, migrations, the
# log checks. Source it after lib.sh.
CHECKER="$FERRY_BIN/../tests/blklog_check"

# start_dest NAME [options...]: an incoming vmon on a free port; DPID, DPORT.
start_dest() {
	local name=$1; shift
	local err="$TMP/$name.err"
	rm -f "$err" "$TMP/$name.out"
	"$VMON" run --incoming "tcp:127.0.0.1:0" --incoming-timeout-s 60 \
		--control "$TMP/$name.sock" "$@" >"$TMP/$name.out" 2>"$err" &
	DPID=$!; PIDS="$PIDS $DPID"
	DPORT=""
	wait_for "grep -q 'incoming: listening on 127.0.0.1:[0-9]' '$err'" 10 || return 1
	DPORT=$(sed -n 's/.*incoming: listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$err" | head -1)
	[ -n "$DPORT" ]
}

# start_writer NAME DISK ARGS [options...]: blkwriter on DISK; SPID.
start_writer() {
	local name=$1 disk=$2 args=$3; shift 3
	"$VMON" run --name "$name" --guest "$FERRY_GUESTS/blkwriter" --mem 32M \
		--disk "$disk" --control "$TMP/$name.sock" --args "$args" "$@" \
		>"$TMP/$name.out" 2>"$TMP/$name.err" &
	SPID=$!; PIDS="$PIDS $SPID"
	wait_for "[ -S '$TMP/$name.sock' ] || ! kill -0 $SPID" 10
}

value() { # value SOCKNAME VALUE: a guest or device value from stats (-1 if none)
	"$VMON" ctl "$TMP/$1.sock" stats -o json 2>/dev/null | python3 -c "
import json,sys
j=json.load(sys.stdin)
v=j.get('values',{}).get('$2', j.get('devices',{}).get('$2', -1))
print(v)" 2>/dev/null || echo -1
}
status_json() { "$VMON" ctl "$TMP/$1.sock" status -o json 2>/dev/null || true; }
advancing() { # advancing SOCKNAME VALUE: it grows within 10 s
	local v0; v0=$(value "$1" "$2")
	[ "$v0" -ge 0 ] && wait_for "[ \$(value $1 $2) -gt $v0 ]" 10
}
exit_status() { # exit_status PID [seconds]: status in XRC
	XRC=running
	wait_for "! kill -0 $1" "${2:-10}" || return 0
	XRC=0
	wait "$1" || XRC=$?
}
migrate() { # migrate SOCKNAME PORT [options...]: output in MOUT, status in MRC
	local name=$1 port=$2; shift 2
	MRC=0
	MOUT=$(timeout 60 "$VMON" ctl "$TMP/$name.sock" migrate "tcp:127.0.0.1:$port" --wait "$@" 2>&1) || MRC=$?
}

# hop_many N FIRSTNAME FIRSTPID: migrate N times between fresh vmons; sets
# CUR/CURPID to the last one, HOPS to the hops that worked.
hop_many() {
	local n=$1 i rc
	CUR=$2; CURPID=$3; HOPS=0
	for i in $(seq 1 "$n"); do
		start_dest "$CUR-h$i" || { bad "hop $i: destination did not start"; return 1; }
		local newpid=$DPID
		sleep 0.2
		migrate "$CUR" "$DPORT"
		exit_status "$CURPID" 10; rc=$XRC
		if [ "$MRC" -ne 0 ] || [ "$rc" != 0 ]; then
			bad "hop $i ($CUR): migrate rc $MRC, old source exit $rc"
			echo "$MOUT" | tail -5; cat "$TMP/$CUR-h$i.err" | tail -5
			return 1
		fi
		HOPS=$i
		CUR="$CUR-h$i"; CURPID=$newpid
	done
}

# stop_and_check NAME PID IMAGE: pause (drains), read acked, stop; then the
# log on IMAGE verifies and holds every acknowledged block.
stop_and_check() {
	local name=$1 pid=$2 img=$3 acked out
	"$VMON" ctl "$TMP/$name.sock" pause >/dev/null 2>&1 || true
	acked=$(value "$name" acked)
	"$VMON" ctl "$TMP/$name.sock" stop >/dev/null 2>&1 || true
	exit_status "$pid" 10
	check "the writer stops with 0 ($XRC)" [ "$XRC" = 0 ]
	out=$("$CHECKER" "$img" --min-seq "$acked" 2>&1) || true
	echo "   $out (acked $acked)"
	check "the log on the image verifies, acked block $acked included" \
		grep -q '^blklog_check: ok' <<<"$out"
	check "the guest acknowledged writes (acked $acked > 0)" [ "$acked" -gt 0 ]
	ACKED=$acked
}

# guest_verify DISK: a fresh guest reads the log back and checks it.
guest_verify() {
	local out
	out=$(timeout 30 "$VMON" run --guest "$FERRY_GUESTS/blkwriter" --mem 32M \
		--disk "$1" --args "mode=verify" 2>&1) || true
	echo "   $out"
	check "the guest's own verify passes" grep -q 'blkwriter: verify: ok' <<<"$out"
}

# start_nbdkit IMG [nbdkit args after the plugin...]: nbdkit serving IMG on
# 127.0.0.1, a free port (NBDPORT, or the one already in NBDPORT when
# REUSE_PORT=1); NBDPID. Skips (77) without nbdkit.
start_nbdkit() {
	local img=$1; shift
	command -v nbdkit >/dev/null || { echo "SKIP: nbdkit is not installed"; exit 77; }
	if [ "${REUSE_PORT:-0}" != 1 ]; then
		NBDPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	fi
	nbdkit -f -i 127.0.0.1 -p "$NBDPORT" "$@" file "$img" >"$TMP/nbdkit.log" 2>&1 &
	NBDPID=$!; PIDS="$PIDS $NBDPID"
	wait_for "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\",$NBDPORT)).close()'" 10
}
start_nbdkit_filtered() { # start_nbdkit_filtered IMG FILTER-ARGS...: filters go before the plugin
	local img=$1; shift
	command -v nbdkit >/dev/null || { echo "SKIP: nbdkit is not installed"; exit 77; }
	NBDPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	nbdkit -f -i 127.0.0.1 -p "$NBDPORT" "$@" >"$TMP/nbdkit.log" 2>&1 &
	NBDPID=$!; PIDS="$PIDS $NBDPID"
	wait_for "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\",$NBDPORT)).close()'" 10
}
