#!/bin/bash
# The control socket: status, pause/resume (the guest really stops and its
# count continues without a gap), stats with guest values and the dirty
# rate, stop; bad requests and a busy socket path; the fence armed and
# disarmed at run time.
. "$(dirname "$0")/lib.sh"
require_kvm

SOCK="$TMP/vm1.sock"
"$VMON" run --name vm1 --guest "$FERRY_GUESTS/counter" --mem 64M --vcpus 2 \
	--control "$SOCK" --args "n=0 interval_ms=20" >"$TMP/console" 2>"$TMP/vmon.err" &
pid=$!; PIDS="$PIDS $pid"
check "control socket appears" wait_for "[ -S '$SOCK' ]" 10

value() { # value NAME: a guest value from stats -o json
	"$VMON" ctl "$SOCK" stats -o json | python3 -c \
		"import json,sys; print(json.load(sys.stdin)['values'].get('$1', -1))"
}

out=$("$VMON" ctl "$SOCK" status)
check "status says running: $out" grep -q "^vm1: running, 2 vCPUs, 64.0 MiB, model host" <<<"$out"
"$VMON" ctl "$SOCK" status -o json > "$TMP/status.json"
check "status -o json is JSON with state running" python3 -c \
	"import json; d=json.load(open('$TMP/status.json')); assert d['ok'] and d['status']['state']=='running' and d['status']['vcpus']==2"

check "the guest publishes its count" wait_for "[ \$(value count) -gt 3 ]" 10
check "pause succeeds" "$VMON" ctl "$SOCK" pause
out=$("$VMON" ctl "$SOCK" status)
check "status says paused" grep -q "^vm1: paused" <<<"$out"
c1=$(value count); v1=$(value count.vcpu1)
sleep 0.5
c2=$(value count); v2=$(value count.vcpu1)
check "paused: count stays at $c1 ($c2)" [ "$c1" = "$c2" ]
check "paused: vCPU 1's spin counter stays at $v1 ($v2)" [ "$v1" = "$v2" ]
lines_paused=$(wc -l <"$TMP/console")
sleep 0.3
check "paused: no console output" [ "$(wc -l <"$TMP/console")" -eq "$lines_paused" ]
check "pause twice is harmless" "$VMON" ctl "$SOCK" pause
check "resume succeeds" "$VMON" ctl "$SOCK" resume
check "count advances after resume" wait_for "[ \$(value count) -gt $c1 ]" 10
check "vCPU 1 advances after resume" wait_for "[ \$(value count.vcpu1) -gt $v1 ]" 10
stall=$(value max_stall_ns)
check "the guest saw the pause as a stall (${stall} ns >= 400 ms)" [ "$stall" -ge 400000000 ]

"$VMON" ctl "$SOCK" stats > "$TMP/stats.txt"
check "stats text has per-vCPU exits" grep -q "^vcpu1: exits [0-9]*" "$TMP/stats.txt"
check "stats text has guest values" grep -q "^guest count = [0-9]* (live)" "$TMP/stats.txt"
check "stats text has the dirty rate" grep -q "^dirty: ring\|^dirty: bitmap" "$TMP/stats.txt"

# A second monitor may not take over a live socket.
set +e
"$VMON" run --guest "$FERRY_GUESTS/counter" --mem 16M --control "$SOCK" --args n=1 \
	>/dev/null 2>"$TMP/busy.err"
rc=$?
set -e
check "a second vmon on the same socket is refused (rc $rc)" [ "$rc" -eq 2 ]
check "  ...saying why" grep -q "in use by a running monitor" "$TMP/busy.err"

# Malformed and truncated frames get an error or a closed door, never a crash.
python3 - "$SOCK" <<'PY'
import socket, struct, sys
path = sys.argv[1]
def talk(payload, read=True):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    data = s.recv(4096) if read else b""
    s.close()
    return data
r = talk(struct.pack(">I", 5) + b"\xff\xff\xff\xff\xff")   # not protobuf
assert len(r) > 4, r
r = talk(struct.pack(">I", 100) + b"abc")                   # truncated frame
assert r == b"", r
r = talk(struct.pack(">I", 1 << 30))                        # absurd length
assert r == b"", r
r = talk(struct.pack(">I", 2) + b"\x08\x01")                # unknown field only
assert len(r) > 4, r
PY
check "malformed requests are answered or dropped" [ $? -eq 0 ]
check "the monitor is still alive" kill -0 "$pid"

# Clients that hang up before the answer (an agent's call that timed out,
# a killed agent): the answer goes nowhere, and that is all. SIGPIPE's
# default action used to end vmon, and the guest with it (exit 141).
python3 - "$SOCK" <<'PY'
import socket, struct, sys
for _ in range(20):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.sendall(struct.pack(">I", 2) + b"\x08\x01")     # answered, never read
    s.close()
PY
check "20 clients hung up before their answers: the monitor lives" \
	bash -c "sleep 0.5; kill -0 $pid"
out=$("$VMON" ctl "$SOCK" status)
check "...and still answers" grep -q "^vm1: running" <<<"$out"

# The console shows an unbroken count: no value skipped or repeated.
check "stop succeeds" "$VMON" ctl "$SOCK" stop
set +e; wait "$pid"; rc=$?; set -e
check "vmon exits 0 after stop (rc $rc)" [ "$rc" -eq 0 ]
check "the socket is removed" [ ! -e "$SOCK" ]
python3 - "$TMP/console" <<'PY'
import re, sys
nums = [int(m.group(1)) for m in (re.fullmatch(r"counter: (\d+)\n", l) for l in open(sys.argv[1])) if m]
assert nums == list(range(1, len(nums) + 1)), nums[:50]
assert len(nums) > 5
PY
check "console count is 1..N without gaps across pause/resume" [ $? -eq 0 ]

# A dirtying guest shows a dirty rate.
"$VMON" run --guest "$FERRY_GUESTS/dirtier" --mem 64M --control "$SOCK" \
	--dirty-sample-ms 200 --args "ws=16M rate=5000" >/dev/null 2>&1 &
pid=$!; PIDS="$PIDS $pid"
wait_for "[ -S '$SOCK' ]" 10
rate_ok() {
	"$VMON" ctl "$SOCK" stats -o json | python3 -c \
		"import json,sys; d=json.load(sys.stdin)['dirty']; sys.exit(0 if 2000 < d['pages_per_s'] < 20000 else 1)"
}
check "stats report a dirty rate near the guest's 5000 pages/s" wait_for rate_ok 10
"$VMON" ctl "$SOCK" stats | grep '^dirty' || true
"$VMON" ctl "$SOCK" stop >/dev/null
# Gone, and its socket with it, before the next vmon binds the same path:
# otherwise the wait below may find the old socket and ask a dying vmon.
wait "$pid" 2>/dev/null || true

# The fence armed at run time (HA turned on for a running VM): a
# keepalive holds it off, fence 0 disarms it, and unrenewed it stops the
# VM for good with status 5, as --fence-s does.
"$VMON" run --name fv --guest "$FERRY_GUESTS/counter" --mem 16M --control "$SOCK" \
	--args "n=0 interval_ms=50" >/dev/null 2>"$TMP/fence.err" &
pid=$!; PIDS="$PIDS $pid"
wait_for "[ -S '$SOCK' ]" 10
fence_s() { "$VMON" ctl "$SOCK" status -o json | python3 -c \
	"import json,sys; print(json.load(sys.stdin)['status'].get('fence_s', 0))"; }
check "no fence without --fence-s" [ "$(fence_s)" = 0 ]
set +e; out=$("$VMON" ctl "$SOCK" keepalive 2>&1); rc=$?; set -e
check "a keepalive without a fence is refused (rc $rc)" \
	bash -c '[ "$0" = 1 ] && grep -q "runs without --fence-s" <<<"$1"' "$rc" "$out"
check "fence 5 arms it" "$VMON" ctl "$SOCK" fence 5
check "status shows it" [ "$(fence_s)" = 5 ]
for i in 1 2 3 4 5 6 7 8; do "$VMON" ctl "$SOCK" keepalive >/dev/null 2>&1 || break; sleep 1; done
check "keepalives hold it off past 5 s" kill -0 "$pid"
check "fence 0 disarms it" "$VMON" ctl "$SOCK" fence 0
sleep 3
check "disarmed, it runs on without keepalives" kill -0 "$pid"
check "fence 1 arms it again" "$VMON" ctl "$SOCK" fence 1
set +e; timeout 10 tail --pid="$pid" -f /dev/null; wait "$pid"; rc=$?; set -e
check "unrenewed, it stops the VM with status 5 (rc $rc)" [ "$rc" -eq 5 ]
check "  ...saying why" grep -q "fenced: no keepalive from the node agent for 1 s" "$TMP/fence.err"

set +e
"$VMON" ctl "$TMP/nothing.sock" status 2>"$TMP/ctl.err"
rc=$?
set -e
check "ctl to a missing socket fails with 1 (rc $rc)" [ "$rc" -eq 1 ]
check "  ...saying so in one line" [ "$(wc -l <"$TMP/ctl.err")" -eq 1 ]

finish
