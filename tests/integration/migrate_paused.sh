#!/bin/bash
# A guest the operator paused stays paused wherever it goes. A migration
# pauses it too, and used to resume it at the destination (and at the
# source when the migration failed): an operator who paused a VM to look
# at it, or a host in maintenance emptied of a paused VM, had it run
# again. Now:
#   - a migration that fails after its own pause leaves it paused;
#   - a destination from before this (FERRY_TEST_FAULT=no-keeps-paused)
#     is refused at once, before any page moves, and nothing changes;
#   - a migration lands it paused: the destination took it and shows it
#     paused, the count stands still until vmon ctl resume there, and then
#     goes on from where it stopped, without a gap;
#   - a snapshot of it restores paused (with --control), and runs, with a
#     warning, where nothing could resume it (no --control).
. "$(dirname "$0")/lib.sh"
require_kvm

PROXY="$(dirname "$0")/migproxy.py"

alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; [[ $s != Z* ]]; }
count() { # count SOCK: the guest's count (-1 if none)
	"$VMON" ctl "$1" stats -o json 2>/dev/null | python3 -c \
		"import json,sys; print(json.load(sys.stdin)['values'].get('count', -1))" 2>/dev/null || echo -1
}
state_is() { "$VMON" ctl "$1" status 2>/dev/null | grep -q "^[a-z0-9]*: $2,"; }
still() { # still SOCK: paused, and the count stands still for half a second
	local c1 c2
	state_is "$1" paused || return 1
	c1=$(count "$1"); sleep 0.5; c2=$(count "$1")
	[ "$c1" = "$c2" ] && [ "$c1" -ge 0 ]
}
still_at() { still "$1" && [ "$(count "$1")" = "$2" ]; }
counts() { local c1 c2; c1=$(count "$1"); sleep 0.5; c2=$(count "$1"); [ "$c2" -gt "$c1" ]; }
# The counts a console printed, in order: one after another, no gap, no repeat.
continuous() {
	cat "$@" | sed -n 's/^counter: \([0-9][0-9]*\)$/\1/p' |
		awk 'NR > 1 && $1 != prev + 1 { bad = 1; print "   after " prev ": " $1 } { prev = $1 }
		     END { exit bad }'
}
# start_dst NAME [vmon args]: DPID, DPORT
start_dst() {
	local n=$1; shift
	"$VMON" run --incoming tcp:127.0.0.1:0 --incoming-timeout-s 60 \
		--control "$TMP/$n.sock" "$@" >"$TMP/$n.out" 2>"$TMP/$n.err" &
	DPID=$!; PIDS="$PIDS $DPID"
	wait_for "grep -q 'listening on 127.0.0.1:' '$TMP/$n.err'" 10
	DPORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/$n.err" | head -1)
}
migrate() { # migrate SOCK PORT: MOUT, MRC
	MRC=0
	MOUT=$(timeout 60 "$VMON" ctl "$1" migrate "tcp:127.0.0.1:$2" --wait 2>&1) || MRC=$?
}
exited() { # exited PID: XRC once it is gone
	wait_for "! alive $1" 10 || { XRC=running; return 0; }
	set +e; wait "$1"; XRC=$?; set -e
}

SRC="$TMP/src.sock"
"$VMON" run --name p --guest "$FERRY_GUESTS/counter" --mem 64M --control "$SRC" \
	--args "n=0 interval_ms=20" >"$TMP/src.out" 2>"$TMP/src.err" &
SPID=$!; PIDS="$PIDS $SPID"
check "the guest counts" wait_for "counts '$SRC'" 10
check "vmon ctl pause" "$VMON" ctl "$SRC" pause
check "paused, the count stands still" still "$SRC"
c0=$(count "$SRC")

echo "== the destination dies in the switchover: the guest stays paused here"
start_dst k
python3 "$PROXY" --listen 0 --to "127.0.0.1:$DPORT" --fault kill --at VCPU_STATE \
	--kill-pid "$DPID" >"$TMP/px.out" 2>"$TMP/px.err" &
PXPID=$!; PIDS="$PIDS $PXPID"
check "the proxy listens" wait_for "grep -q 'listening on' '$TMP/px.out'" 10
PXPORT=$(sed -n 's/^migproxy: listening on \([0-9]*\)$/\1/p' "$TMP/px.out")
migrate "$SRC" "$PXPORT"
echo "   $(grep -m1 'error' <<<"$MOUT")"
check "the migration fails in the switchover ($MRC)" \
	bash -c '[ "$0" != 0 ] && grep -q "switchover" <<<"$1"' "$MRC" "$MOUT"
check "the source guest is still paused, its count still $c0" still_at "$SRC" "$c0"
check "its log says why it did not resume" grep -q "p: stays paused: paused by the operator" "$TMP/src.err"

echo "== a destination that would run it: refused before any page moves"
FERRY_TEST_FAULT=no-keeps-paused start_dst old
migrate "$SRC" "$DPORT"
echo "   $(grep -m1 'error' <<<"$MOUT")"
check "refused at the precheck, naming why ($MRC)" bash -c '[ "$0" != 0 ] &&
	grep -q "precheck: the guest is paused (paused by the operator), and destination .* would run it: its vmon predates keeping a paused guest paused" <<<"$1"' \
	"$MRC" "$MOUT"
check "no page moved" bash -c '! grep -q "round 1:" <<<"$0"' "$MOUT"
check "the source is still paused" still "$SRC"
exited "$DPID"
check "the destination exits without the guest ($XRC)" \
	bash -c '[ "$0" != 0 ] && [ "$0" != running ] && [ ! -s "$1" ]' "$XRC" "$TMP/old.out"

echo "== migrated paused: it lands paused"
start_dst d
migrate "$SRC" "$DPORT"
echo "$MOUT" | sed -n '1p;/downtime/p' | sed 's/^/   /'
check "the migration completes ($MRC)" [ "$MRC" = 0 ]
check "it says the guest stays paused there" grep -q \
	"the guest was paused (paused by the operator) and stays paused at the destination" <<<"$MOUT"
exited "$SPID"
check "the source vmon exits, the guest handed over ($XRC)" [ "$XRC" = 0 ]
check "the destination shows it paused" state_is "$TMP/d.sock" paused
check "the count stands still at $c0 there" still_at "$TMP/d.sock" "$c0"
check "the guest printed nothing there" [ ! -s "$TMP/d.out" ]
check "vmon ctl resume" "$VMON" ctl "$TMP/d.sock" resume
check "it counts there" wait_for "counts '$TMP/d.sock'" 10
check "from where it stopped, without a gap or a repeat" continuous "$TMP/src.out" "$TMP/d.out"
echo "   counted to $c0 at the source, on to $(count "$TMP/d.sock") at the destination"

echo "== a snapshot of it restores paused"
check "pause" "$VMON" ctl "$TMP/d.sock" pause
c1=$(count "$TMP/d.sock")
check "save, and stop" "$VMON" ctl "$TMP/d.sock" save "$TMP/p.snap" --stop
exited "$DPID"
"$VMON" run --restore "$TMP/p.snap" --control "$TMP/r.sock" >"$TMP/r.out" 2>"$TMP/r.err" &
RPID=$!; PIDS="$PIDS $RPID"
check "restored paused" wait_for "state_is '$TMP/r.sock' paused" 10
check "the count stands still at $c1" still_at "$TMP/r.sock" "$c1"
check "its log says so" grep -q "paused as it was (paused by the operator): vmon ctl resume runs it" \
	"$TMP/r.err"
check "resume" "$VMON" ctl "$TMP/r.sock" resume
check "it counts" wait_for "counts '$TMP/r.sock'" 10
"$VMON" ctl "$TMP/r.sock" stop >/dev/null
exited "$RPID"
"$VMON" run --restore "$TMP/p.snap" >"$TMP/n.out" 2>"$TMP/n.err" &
NPID=$!; PIDS="$PIDS $NPID"
check "without --control it runs, nothing could resume it" \
	wait_for "grep -q '^counter: $((c1 + 5))\$' '$TMP/n.out'" 10
check "and says so" grep -q "without --control nothing could resume it: it runs" "$TMP/n.err"
kill "$NPID" 2>/dev/null || true
finish
