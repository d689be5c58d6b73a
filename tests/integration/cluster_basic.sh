#!/bin/bash
# The cluster on a 3-node lab (tools/lab): create and start a VM, migrate it
# while it runs (placement updated on every node, the count going on without
# a reset or a gap), CPU-model refusals before any page moves, bad input,
# the cluster's bandwidth cap reaching vmon. What needs no guest (settings'
# checks, mutual TLS, malformed frames) is cluster_witness.sh's.
. "$(dirname "$0")/lab_lib.sh"
GUESTS=${FERRY_GUESTS:-$LAB_SRC/build/guests}
TMPD=$(mktemp -d /tmp/ferry-cluster-test.XXXXXX)
trap 'rc=$?; set +e; rm -rf "$TMPD"; (exit $rc); lab_at_exit' EXIT

# ctl, ctl_json, json_get, fails: lab_lib.sh
# Complete lines only: a guest may be halfway through a line when we read.
console() {
	python3 -c 'import sys
for f in sys.argv[1:]:
    sys.stdout.write("".join(l + "\n" for l in open(f).read().split("\n")[:-1]))' \
		"$LAB_DIR"/host*/run/vm1.console 2>/dev/null
}
last_count() { console | sed -n 's/^counter: \([0-9][0-9]*\)$/\1/p' | sort -n | tail -1; }
# The counts in the order the nodes printed them: 1, 2, 3, ... with no gap
# and no repeat, whichever node printed each.
counts_continuous() {
	local n
	n=$(console | sed -n 's/^counter: \([0-9][0-9]*\)$/\1/p' | sort -n |
	    awk 'NR != $1 && !bad {bad = 1; at = NR} END {print bad ? "gap at line " at : NR}')
	if [[ "$n" == gap* ]]; then
		echo "  $n of the sorted counts; per node:"
		for f in "$LAB_DIR"/host*/run/vm1.console; do
			echo "  $f: $(sed -n 's/^counter: //p' "$f" | tr '\n' ' ' | tail -c 400)"
		done
		return 1
	fi
	[ "$n" -gt 0 ]
}
count_grows() { local c; c=$(last_count); sleep 0.5; [ "$(last_count)" -gt "$c" ]; }
placement_on_all() { # VM HOST
	for h in host1 host2 host3; do
		[ "$(ctl_json $h vm show "$1" | json_get 'j["vm"]["host"]')" = "$2" ] || return 1
	done
}

# host3 hides two features this CPU has (tools/lab hideable).
HIDE=$("$LAB_TOOL" hideable 2) || { echo "SKIP: this CPU has fewer than two features to hide"; exit 77; }
H1=${HIDE%,*} H2=${HIDE#*,}
# fails_lacking HOST TEXT ARGS...: clusterctl exits 1 saying TEXT and naming H1 and H2
fails_lacking() {
	local h=$1 want=$2 out rc
	shift 2
	out=$(lab_exec "$h" clusterctl "$@" 2>&1) && rc=0 || rc=$?
	echo "  clusterctl $*: $out"
	[ "$rc" -eq 1 ] && grep -qF -- "$want" <<<"$out" && grep -qw "$H1" <<<"$out" &&
		grep -qw "$H2" <<<"$out"
}

lab_up 3 --hide "host3=$H1,$H2"

echo "== the cluster"
check "every node sees 3 hosts online" test "$(ctl_json host2 status | json_get 'len(j["online"])')" = 3
base=$(ctl_json host1 cpu baseline | json_get '" ".join(j["cpu"]["features"])')
check "the cluster model lacks what host3 hides ($H1, $H2)" \
	bash -c "! grep -qw $H1 <<<'$base' && ! grep -qw $H2 <<<'$base' && grep -qw sse2 <<<'$base'"

echo "== create and start"
check "vm create" ctl host1 clusterctl vm create vm1 --guest "$GUESTS/counter" \
	--args "n=0 interval_ms=50" --mem 64M --cpu-model host
check "a taken name is refused" fails host2 "vm create: vm1: the name is taken" \
	vm create vm1 --guest "$GUESTS/counter" --mem 64M
check "a bad name is refused" fails host2 "is not valid" \
	vm create "bad name" --guest "$GUESTS/counter" --mem 64M
check "a bad size is refused" fails host2 "not a multiple of 2 MiB" \
	vm create vm9 --guest "$GUESTS/counter" --mem 9M
check "vm start on host1" ctl host2 clusterctl vm start vm1 --host host1
check "vm1 counts on host1" wait_for 10 "vm1 counting" count_grows
check "placement host1 on every node" placement_on_all vm1 host1

echo "== migrate while it runs"
out=$(lab_exec host3 clusterctl migrate vm1 host2 2>&1) && rc=0 || rc=$?
echo "  $out"
check "migrate vm1 host2 succeeds" test "$rc" = 0
check "placement host2 on every node" wait_for 5 "placement" placement_on_all vm1 host2
check "vm1 counts on host2" wait_for 5 "counting on host2" count_grows
check "host1's vmon is gone" wait_for 5 "host1 vmon gone" \
	bash -c "! ls '$LAB_DIR/host1/run/vm1.sock' 2>/dev/null"
check "migrating to where it runs is refused" fails host1 "migrate: vm1: already runs on host2" migrate vm1 host2
check "an unknown host is refused" fails host1 "no such host host7" migrate vm1 host7
check "an unknown VM is refused" fails host1 "migrate: vm7: no such VM" migrate vm7 host1

echo "== CPU models"
check "cpu check names what host3 lacks" \
	fails_lacking host1 "required by vm1's model host" cpu check vm1 host3
check "cpu check says yes for host1" ctl host1 clusterctl cpu check vm1 host1
check "migrate to host3 is refused naming the features" \
	fails_lacking host1 "migrate: vm1: host3 lacks" migrate vm1 host3
check "nothing was started on host3" bash -c "! ls '$LAB_DIR/host3/run/' | grep -q vm1"
check "dry run: precheck and prediction" bash -c \
	"lab_exec() { '$LAB_TOOL' exec --name '$LAB_NAME' \"\$@\"; }; lab_exec host2 clusterctl migrate vm1 host1 --dry-run | grep -q 'precheck passed'"
check "after the dry run vm1 still runs on host2" placement_on_all vm1 host2

echo "== back and forth"
for dest in host1 host2 host1; do
	check "migrate vm1 $dest" ctl host2 clusterctl migrate vm1 $dest
done
check "placement host1 on every node" placement_on_all vm1 host1
check "vm1 counts after 4 migrations" wait_for 5 "counting" count_grows
check "the count never reset, skipped or repeated" counts_continuous
echo "  last count $(last_count)"

# The operator's pause holds through a migration (vmon carries it in the
# stream): the VM lands paused, shows so everywhere, and counts on from
# where it stopped after vm resume.
echo "== vm pause: it stays paused, migrated too"
count_still() { local c; c=$(last_count); sleep 0.5; [ "$(last_count)" = "$c" ]; }
vm_list_has() { lab_exec "$1" clusterctl vm list 2>/dev/null | grep -q -- "$2"; }
out=$(lab_exec host3 clusterctl vm pause vm1 2>&1) && rc=0 || rc=$?
echo "  $out"
check "vm pause from host3: host1's vmon paused it ($rc)" \
	bash -c '[ "$0" = 0 ] && grep -q "vm pause: vm1: its vmon on host1 paused it" <<<"$1"' "$rc" "$out"
check "its count stands still" count_still
check "vm list on host2 says paused by the operator" wait_for 10 "vm1 paused in vm list" \
	vm_list_has host2 "^vm1 *paused *host1 .*paused by the operator: vm resume runs it"
check "migrate vm1 host2" ctl host1 clusterctl migrate vm1 host2
check "placement host2 on every node" placement_on_all vm1 host2
check "it landed paused: the count still stands" count_still
check "vm list says paused on host2" wait_for 10 "vm1 paused on host2" \
	vm_list_has host1 "^vm1 *paused *host2 .*paused by the operator"
check "vm show says by whom" bash -c "'$LAB_TOOL' exec --name '$LAB_NAME' host3 clusterctl vm show vm1 |
	grep -q '^paused: *by the operator (vm pause): vm resume runs it'"
check "vm resume from host1" ctl host1 clusterctl vm resume vm1
check "vm1 counts again" wait_for 5 "counting" count_grows
check "vm list says running" wait_for 10 "vm1 running" vm_list_has host3 "^vm1 *running *host2"
check "the count never reset, skipped or repeated" counts_continuous
check "vm pause of an unknown VM is refused" fails host2 "vm pause: vm7: no such VM" vm pause vm7
check "migrate vm1 host1" ctl host2 clusterctl migrate vm1 host1

echo "== cluster settings"
check "config set on host2" ctl host2 clusterctl config set migration-bandwidth-mbps 1
for h in host1 host3; do
	check "$h has the cap" wait_for 5 "the cap on $h" lab_setting_is $h migration-bandwidth-mbps "1 set"
done

echo "== one migration at a time"
# The cluster's cap of 1 Mbit/s keeps the first in flight for about a
# second (64 MiB of zero-page markers alone), however fast this host is.
# The second is asked in the same shell as the first, at once: under TCG a
# lab_exec alone can take longer than the capped migration.
out=$(lab_exec host1 sh -c 'clusterctl migrate vm1 host2 --no-wait >/dev/null &&
	exec clusterctl migrate vm1 host2' 2>&1) && rc=0 || rc=$?
echo "  the second: $out"
check "a second migration of a migrating VM is refused ($rc)" \
	bash -c '[ "$0" = 1 ] && grep -qF "already in flight" <<<"$1"' "$rc" "$out"
check "the first one lands" wait_for 20 "placement" placement_on_all vm1 host2
# The cap reached the source's vmon: its stream went at about 1 Mbit/s.
# vmon paces after each record, so the last record and the vCPU state go
# at once: over a migration of a second or so (~150 KB) that tail adds up
# to 15 % (1.148 Mbit/s seen under TCG). Uncapped, even TCG moves it at
# hundreds of Mbit/s.
rate=$(ctl_json host3 vm show vm1 | json_get \
	'"%.3f" % (j["vm"]["last_migration"]["bytes"] * 8 / 1e3 / j["vm"]["last_migration"]["total_ms"])')
echo "  the migration under the cluster's cap: $rate Mbit/s"
check "the capped migration kept to about 1 Mbit/s ($rate)" python3 -c "import sys; sys.exit(not 0 < $rate <= 1.5)"
check "config set back to the default" ctl host3 clusterctl config set migration-bandwidth-mbps default
check "host1 has no cap again" wait_for 5 "no cap on host1" \
	lab_setting_is host1 migration-bandwidth-mbps "0 default"
out=$(lab_exec host1 clusterctl migrate vm1 host1 --bandwidth 0 2>&1) && rc=0 || rc=$?
echo "  --bandwidth 0: $(head -1 <<<"$out")"
check "a bad --bandwidth is a usage error ($rc)" \
	bash -c '[ "$0" = 2 ] && grep -q -- "--bandwidth: not 1..10000000" <<<"$1"' "$rc" "$out"

# A guest that crashes is restarted in place unless crash-restarts of its
# crashes came within crash-window-s (vSphere HA's VM monitoring counts
# resets the same way). The guest crashes 2.5 s into each run: with a 2 s
# window no two crashes count together and it runs on; with 60 s the
# third within the window stops it.
echo "== a guest that keeps crashing"
crash_field() { ctl_json host1 vm show crasher 2>/dev/null | json_get "$1"; }
crash_restarts() { crash_field 'j["vm"].get("restarts", 0)'; }
restarted_past() { [ "$(crash_restarts)" -ge "$1" ]; }
crash_desired() { crash_field 'j["vm"].get("desired", "")'; }
crash_stopped() { [ "$(crash_desired)" = VM_DESIRED_STOPPED ]; }
crash_runs() { [ "$(crash_desired)" = VM_DESIRED_RUNNING ]; }
check "crash-restarts 2, crash-window-s 2" ctl host1 clusterctl config set crash-restarts 2 \
	crash-window-s 2
check "crasher (crash after 2.5 s) created" ctl host1 clusterctl vm create crasher \
	--guest "$GUESTS/crash" --args "after_ms=2500" --mem 32M
check "crasher started on host2" ctl host1 clusterctl vm start crasher --host host2
check "crashes 2.5 s apart, 2 s window: restarted past crash-restarts" \
	wait_for 40 "a third restart" restarted_past 3
check "and it still runs" crash_runs
check "vm show counts its crashes" bash -c \
	"lab_exec() { '$LAB_TOOL' exec --name '$LAB_NAME' \"\$@\"; }; lab_exec host3 clusterctl vm show crasher | grep -q 'guest crashes kept: [12], the last'"
check "crash-window-s 60" ctl host3 clusterctl config set crash-window-s 60
check "the third crash within 60 s stops it" wait_for 40 "crasher stopped" crash_stopped
err=$(crash_field 'j["vm"].get("last_error", "")')
echo "  last_error: ${err:0:240}"
check "last_error says why it was not restarted" grep -qF \
	"not restarted: it crashed 2 times in the 60 s before (crash-restarts 2, crash-window-s 60)" <<<"$err"
check "no vmon of crasher left" wait_for 10 "crasher's vmon gone" \
	bash -c "! ls '$LAB_DIR'/host*/run/crasher.sock 2>/dev/null"
check "vm start begins the count anew" ctl host1 clusterctl vm start crasher --host host2
check "restarts back to 0" test "$(crash_restarts)" = 0
check "vm stop crasher" ctl host1 clusterctl vm stop crasher
check "crash settings back to the defaults" ctl host1 clusterctl config set crash-restarts default \
	crash-window-s default

echo "== stop and delete"
check "delete of a running VM is refused" fails host1 "stop it first" vm delete vm1
check "vm stop" ctl host1 clusterctl vm stop vm1
check "its vmon goes away" wait_for 10 "vmon gone" bash -c "! ls '$LAB_DIR'/host*/run/vm1.sock 2>/dev/null"
check "vm delete" ctl host3 clusterctl vm delete vm1
check "vm1 is gone everywhere" bash -c "for h in host1 host2 host3; do '$LAB_TOOL' exec --name '$LAB_NAME' \$h clusterctl vm show vm1 >/dev/null 2>&1 && exit 1; done; exit 0"
finish
