# shellcheck shell=bash
# Helpers for the tests that run vmons and migrate them (migrate_basic.sh,
# migrate_rdma.sh). Source it after lib.sh.

# start_src NAME GUEST MEM VCPUS ARGS [vmon run options...]: sets SPID.
start_src() {
	local name=$1 guest=$2 mem=$3 vcpus=$4 args=$5; shift 5
	"$VMON" run --name "$name" --guest "$FERRY_GUESTS/$guest" --mem "$mem" \
		--vcpus "$vcpus" --control "$TMP/$name.sock" --args "$args" "$@" \
		>"$TMP/$name.out" 2>"$TMP/$name.err" &
	SPID=$!; PIDS="$PIDS $SPID"
	wait_for "[ -S '$TMP/$name.sock' ]" 10
}

value() { # value SOCKNAME VALUE: a guest value from stats -o json (-1 if none)
	"$VMON" ctl "$TMP/$1.sock" stats -o json 2>/dev/null | python3 -c \
		"import json,sys; print(json.load(sys.stdin)['values'].get('$2', -1))" 2>/dev/null ||
		echo -1
}
# vm_diag NAME PID: what a vmon that stopped answering or advancing is
# doing: the end of its log and each thread's state and kernel wait, for a
# failure too rare to rerun with more logging.
vm_diag() {
	local t
	echo "   --- $1 (pid $2): the end of its log"
	tail -5 "$TMP/$1.err" 2>/dev/null | sed 's/^/   /'
	for t in /proc/"$2"/task/*; do
		[ -d "$t" ] || continue
		echo "   thread $(basename "$t") $(cat "$t/comm" 2>/dev/null):" \
			"state $(awk '{print $3}' "$t/stat" 2>/dev/null)," \
			"waiting in $(cat "$t/wchan" 2>/dev/null)"
	done
}
advancing() { # advancing SOCKNAME VALUE: it grows within 10 s
	local v0; v0=$(value "$1" "$2")
	[ "$v0" -ge 0 ] && wait_for "[ \$(value $1 $2) -gt $v0 ]" 10
}

# exit_status PID [seconds]: wait (bounded) for PID, a child of this shell, to
# exit; its status goes to $XRC ("running" if it did not exit in time).
exit_status() {
	XRC=running
	wait_for "! kill -0 $1" "${2:-10}" || return 0
	XRC=0
	wait "$1" || XRC=$?
}

stop_vm() { # stop_vm SOCKNAME PID: ctl stop; the exit status goes to $XRC
	"$VMON" ctl "$TMP/$1.sock" stop >/dev/null 2>&1 || true
	exit_status "$2" 10
}

# continuous FILE...: the counter lines of these consoles, concatenated, are
# exactly 1..N (N > 5); prints N. Other lines are ignored.
continuous() {
	python3 - "$@" <<'PY'
import re, sys
nums = []
for f in sys.argv[1:]:
    for l in open(f):
        m = re.fullmatch(r"counter: (\d+)\n?", l)
        if m:
            nums.append(int(m.group(1)))
exp = list(range(1, len(nums) + 1))
if nums != exp or len(nums) <= 5:
    bad = next((i for i, (a, b) in enumerate(zip(nums, exp)) if a != b), len(nums))
    print("not 1..N: %d values, first difference at index %d: %s" %
          (len(nums), bad, nums[max(0, bad - 3):bad + 3]))
    sys.exit(1)
print(len(nums))
PY
}
console_ok() { # console_ok WHAT FILE...: check that continuous passes
	local what=$1 n; shift
	if n=$(continuous "$@"); then ok "$what is 1..$n"; else bad "$what: $n"; fi
}
