# shellcheck shell=bash
# Helpers for integration tests that run a cluster of namespaces with
# tools/lab. Source it; it sets -eu, skips (exit 77) where a lab cannot run,
# and always tears the test's lab down on exit.
#
#   lab_up N [tools/lab up options]   build this test's lab (N nodes)
#   lab_down                          tear it down (also run at exit)
#   lab_exec HOST CMD [ARGS...]       run CMD in HOST's namespace
#   lab COMMAND [ARGS...]             tools/lab for this test's lab
#   wait_for SECONDS MESSAGE CMD...   poll CMD until it succeeds; on timeout
#                                     print MESSAGE and return 1; WAITED_MS
#                                     holds how long it took
#   ok / bad / check / finish         as in lib.sh
#   ctl, ctl_json, json_get, fails    clusterctl in a node, quiet, as JSON,
#                                     or expected to refuse with a message
#   lab_setting, lab_setting_is       a cluster setting as a node has it
#   lab_events_have HOST TEXT         the event log names TEXT
#
# Each test gets its own lab name ("t<pid>"), directory and subnet, so it
# cannot collide with a demo lab (default name "ferry", 10.77.0) or with
# another test.
set -eu

LAB_SRC=${FERRY_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
LAB_TOOL="$LAB_SRC/tools/lab"
export FERRY_BIN=${FERRY_BIN:-$LAB_SRC/build/bin}

lab_skip() {
	echo "************************************************************"
	echo "SKIP: $*"
	echo "************************************************************"
	exit 77
}
[ "$(id -u)" -eq 0 ] || lab_skip "lab tests need root (network namespaces, mount --bind)"
# A lab of corosync alone (LAB_NO_KVM=1 before sourcing) runs no guest.
[ -n "${LAB_NO_KVM:-}" ] || [ -e /dev/kvm ] || lab_skip "/dev/kvm is missing on this host"
command -v ip >/dev/null 2>&1 && ip netns list >/dev/null 2>&1 ||
	lab_skip "'ip netns' is not available here"
command -v corosync >/dev/null 2>&1 || lab_skip "corosync is not installed"

LAB_NAME=${LAB_NAME:-t$$}
# A subnet of its own: 10.(100..199).(0..255) from the pid; 10.77.0 is the
# demo lab's. (Labs are isolated anyway: each has its own bridge namespace.)
LAB_SUBNET=${LAB_SUBNET:-10.$((100 + ($$ / 256) % 100)).$(($$ % 256))}
export FERRY_LAB=$LAB_NAME
export FERRY_LAB_DIR=/tmp/ferry-lab-$LAB_NAME
export LAB_DIR=$FERRY_LAB_DIR

lab() { "$LAB_TOOL" "$@"; }
lab_up() { # N [options]
	local n=$1
	shift
	"$LAB_TOOL" up --name "$LAB_NAME" --nodes "$n" --subnet "$LAB_SUBNET" "$@"
}
lab_down() { "$LAB_TOOL" down --name "$LAB_NAME"; }
lab_exec() { "$LAB_TOOL" exec --name "$LAB_NAME" "$@"; }
# ctl HOST CMD...: CMD in HOST's namespace, quiet (its status says)
ctl() { lab_exec "$@" >/dev/null 2>&1; }
# ctl_json HOST ARGS...: clusterctl -o json on HOST
ctl_json() { local h=$1; shift; lab_exec "$h" clusterctl -o json "$@"; }
# json_get EXPR: evaluate EXPR on the JSON document on stdin (as j)
json_get() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }
# fails HOST EXPECTED-TEXT ARGS...: clusterctl must exit 1 saying EXPECTED-TEXT
fails() {
	local h=$1 want=$2 out rc
	shift 2
	out=$(lab_exec "$h" clusterctl "$@" 2>&1) && rc=0 || rc=$?
	if [ "$rc" -ne 1 ] || ! grep -qF -- "$want" <<<"$out"; then
		echo "  clusterctl $*: exit $rc: $out (wanted exit 1 and '$want')"
		return 1
	fi
	echo "  clusterctl $*: $out"
}
# lab_setting HOST KEY: "VALUE set|default", the cluster setting as HOST's agent has it
lab_setting() {
	lab_exec "$1" clusterctl -o json config show | python3 -c 'import json, sys
print(" ".join("%d %s" % (s["value"], "set" if s["set"] else "default")
               for s in json.load(sys.stdin)["settings"] if s["key"] == sys.argv[1]))' "$2"
}
lab_setting_is() { [ "$(lab_setting "$1" "$2")" = "$3" ]; } # HOST KEY "VALUE set|default"
# mig_phase HOST VM: "over ok|failed" once over, "ready" once the
# destination listens, else "begun"
mig_phase() {
	ctl_json "$1" vm show "$2" | python3 -c '
import json, sys
v = json.load(sys.stdin)["vm"]
m = v.get("migration")
if m is None:
    print("over", "ok" if v.get("last_migration", {}).get("ok") else "failed")
else:
    print("ready" if m.get("incoming_uri") else "begun")'
}
mig_is() { [ "$(mig_phase "$1" "$2")" = "$3" ]; }
# sent_bytes HOST VM: bytes the migration in flight has sent, from its progress
sent_bytes() { ctl_json "$1" vm show "$2" | json_get 'j.get("progress", {}).get("bytes", 0)'; }
# sent_over HOST VM BYTES: the migration in flight has sent more than BYTES
sent_over() { [ "$(sent_bytes "$1" "$2")" -gt "$3" ]; }
lab_events_have() { local out; out=$(lab_exec "$1" clusterctl events) && grep -qF -- "$2" <<<"$out"; }

LAB_T0=$(date +%s%3N)
lab_elapsed_ms() { echo $(($(date +%s%3N) - LAB_T0)); }
lab_at_exit() {
	local rc=$?
	set +e
	lab_down >/dev/null 2>&1 || echo "lab_lib: lab_down failed" >&2
	exit $rc
}
trap lab_at_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WAITED_MS=0
wait_for() { # SECONDS MESSAGE CMD...
	local limit_s=$1 limit_ms=$(($1 * 1000)) msg=$2 t0
	shift 2
	t0=$(date +%s%3N)
	until "$@" >/dev/null 2>&1; do
		WAITED_MS=$(($(date +%s%3N) - t0))
		if [ $WAITED_MS -ge $limit_ms ]; then
			echo "wait_for: timed out after $limit_s s: $msg" >&2
			return 1
		fi
		sleep 0.05
	done
	WAITED_MS=$(($(date +%s%3N) - t0))
}
fmt_ms() { printf '%d.%03d s' $(($1 / 1000)) $(($1 % 1000)); }

. "$(dirname "${BASH_SOURCE[0]}")/checks.sh"

# corosync's view from HOST: "QUORATE MEMBERS" (yes|no|- and a count).
lab_quorum() {
	local q
	q=$(lab_exec "$1" corosync-quorumtool -s 2>/dev/null || true)
	[ -n "$q" ] || { echo "- 0"; return 0; }
	awk '/^Quorate:/ {q = tolower($2)}
		/^Membership information/ {m = 1; next}
		m && $1 ~ /^[0-9]+$/ {n++}
		END {print (q == "" ? "-" : q), n + 0}' <<<"$q"
}
# lab_sees HOST N: quorate, N members
lab_sees() { [ "$(lab_quorum "$1")" = "yes $2" ]; }

# lab_procs ERE: how many processes' command lines (NULs read as spaces)
# match ERE. pgrep would miss a process that is exec'ing (a vmon being
# started): its command line reads empty for that moment. An empty one is
# read again for up to 0.5 s while the process lives, so a "never two
# vmons" check cannot pass because the second was half-started.
lab_procs() {
	python3 - "$1" <<'PY'
import os, re, sys, time
PF_KTHREAD = 0x00200000
rx, n = re.compile(sys.argv[1]), 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue
    end, line = time.monotonic() + 0.5, b""
    while True:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read()
            with open(f"/proc/{pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            break
        # st[0] is the state, st[6] the flags (stat's 3rd and 9th fields)
        if line or st[0] in "ZX" or int(st[6]) & PF_KTHREAD or time.monotonic() > end:
            break
        time.sleep(0.01)
    if rx.search(line.replace(b"\0", b" ").decode(errors="replace")):
        n += 1
print(n)
PY
}
