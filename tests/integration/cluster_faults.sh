#!/bin/bash
# Failures on a 3-node lab: a node dies (the others see it within seconds
# and keep every bit of state), two die (the last refuses changes for lack
# of quorum, its VMs run on), they come back (the one that missed changes
# gets them), a migration's destination node dies mid-way (the VM runs on
# at the source and every node agrees), an operator changes a migration
# in flight (clusterctl migrate-set: the source's vmon takes it) and
# cancels it (clusterctl migrate-cancel, and Ctrl-C on clusterctl migrate:
# the VM stays, every node agrees), a migration's destination is cut off
# mid-stream (the source cancels within seconds, naming it; the VM
# stays), the destination's agent restarts mid-migration (the new one
# takes over the vmon receiving; the migration goes on), so does the
# source's (the new one follows its vmon; the destination waits, or ends
# it as done once its vmon runs the guest), an agent dies (its VMs run on; the
# restarted agent adopts them), the COMMIT is lost after the ACK (the
# destination's agent starts the guest its vmon holds, also when it was
# down at the time), and a migration's source node dies
# mid-way (the migration is void, the destination runs no copy).
. "$(dirname "$0")/lab_lib.sh"
GUESTS=${FERRY_GUESTS:-$LAB_SRC/build/guests}

ctl() { lab_exec "$@" >/dev/null 2>&1; }
ctl_json() { local h=$1; shift; lab_exec "$h" clusterctl -o json "$@" 2>/dev/null; }
json_get() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }
members() { ctl_json "$1" status | json_get '" ".join(j["node"].get("members", []))'; }
seq_of() { ctl_json "$1" status | json_get 'j["state"]["seq"]'; }
quorate() { [ "$(ctl_json "$1" status | json_get 'j["node"]["quorate"]')" = True ]; }
not_quorate() { ! quorate "$1"; }
sees_only() { [ "$(members "$1")" = "$2" ]; }
synced3() { for h in host1 host2 host3; do [ "$(members $h)" = "host1 host2 host3" ] || return 1; done; }
last_count() { sed -n 's/^counter: \([0-9][0-9]*\)$/\1/p' "$LAB_DIR"/host*/run/vm1.console | sort -n | tail -1; }
count_grows() { local c; c=$(last_count); sleep 0.4; [ "$(last_count)" -gt "$c" ]; }
vm_field() { ctl_json "$1" vm show "$2" | json_get "$3"; }
# Everything of HOST at once, vmons included: the node dies.
node_dies() { ip netns pids "$LAB_NAME-$1" | xargs -r kill -9; lab kill "$1" >/dev/null 2>&1 || true; }

lab_up 3

echo "== setup"
check "vm1 (counter) created" ctl host1 clusterctl vm create vm1 --guest "$GUESTS/counter" \
	--args "n=0 interval_ms=50" --mem 64M
check "vm1 started on host1" ctl host1 clusterctl vm start vm1 --host host1
check "vm1 counts" wait_for 10 "vm1 counting" count_grows
# 768 MiB of data: its first pre-copy round takes long enough to kill into.
check "big (dirtier, 1 GiB) created" ctl host1 clusterctl vm create big --guest "$GUESTS/dirtier" \
	--args "ws=805306368 rate=2000 fill=1" --mem 1G
check "big started on host1" ctl host2 clusterctl vm start big --host host1
check "big filled its memory" wait_for 30 "big's fill" grep -q "filled" "$LAB_DIR/host1/run/big.console"
seq0=$(seq_of host1)

echo "== a node dies"
t0=$(date +%s%3N)
node_dies host3
wait_for 20 "host1 sees host3 gone" sees_only host1 "host1 host2" &&
	ok "host1 sees host3 gone after $(fmt_ms $(($(date +%s%3N) - t0)))" || bad "host3's death went unnoticed"
check "host2 sees it too" test "$(members host2)" = "host1 host2"
check "no state was lost (seq $seq0 on host1 and host2)" \
	bash -c "[ $(seq_of host1) = $seq0 ] && [ $(seq_of host2) = $seq0 ]"
check "two of three still decide: vm2 created" ctl host2 clusterctl vm create vm2 \
	--guest "$GUESTS/counter" --args "n=0" --mem 32M

echo "== quorum lost"
node_dies host2
check "host1 loses quorum" wait_for 20 "host1 not quorate" not_quorate host1
out=$(lab_exec host1 clusterctl vm create vm3 --guest "$GUESTS/counter" --mem 32M 2>&1) && rc=0 || rc=$?
echo "  $out"
check "changes are refused for lack of quorum" bash -c "[ $rc = 1 ] && grep -q 'no quorum' <<<\"$out\""
check "vm1 keeps counting on host1 meanwhile" count_grows

echo "== they come back"
lab start host2 host3 >/dev/null
check "all three see each other" wait_for 20 "3 members everywhere" synced3
check "host3 got the change it missed (vm2)" wait_for 5 "vm2 on host3" ctl host3 clusterctl vm show vm2
check "the same state everywhere" bash -c "[ $(seq_of host1) = $(seq_of host3) ] && [ $(seq_of host2) = $(seq_of host3) ]"

echo "== a migration's destination dies mid-way"
ctl host3 clusterctl migrate big host2 --no-wait
check "the migration is under way" wait_for 20 "big's destination ready" mig_is host1 big ready
sleep 0.3
check "still in its first round" mig_is host1 big ready
node_dies host2
check "the migration ends, failed" wait_for 20 "migration over" mig_is host1 big "over failed"
echo "  $(vm_field host1 big 'j["vm"]["last_migration"]["error"]')"
check "big still runs on host1 (host1's view)" test "$(vm_field host1 big 'j["vm"]["host"]')" = host1
check "host3 agrees" test "$(vm_field host3 big 'j["vm"]["host"]')/$(vm_field host3 big '"migration" in j["vm"]')" = host1/False
check "big's vmon on host1 runs" bash -c "'$FERRY_BIN/vmon' ctl '$LAB_DIR/host1/run/big.sock' status | grep -qi running"
lab start host2 >/dev/null
check "host2 rejoins" wait_for 20 "3 members everywhere" synced3
check "host2 agrees too" wait_for 5 "host2's view" mig_is host2 big "over failed"
check "host2 puts big on host1" test "$(vm_field host2 big 'j["vm"]["host"]')" = host1
check "host2 runs no copy of big" bash -c "sleep 1; ! ls '$LAB_DIR/host2/run/' | grep -q '^big.*sock'"

echo "== an operator cancels a migration"
# mid: 96 MiB of data, capped at 10 Mbit/s, takes over a minute, so the
# cancel lands mid-stream (big's 1 GiB takes too long to set up under
# emulation).
check "mid (dirtier, 128 MiB) created" ctl host1 clusterctl vm create mid \
	--guest "$GUESTS/dirtier" --args "ws=100663296 rate=2000 fill=1" --mem 128M
check "mid started on host1" ctl host1 clusterctl vm start mid --host host1
check "mid filled its memory" wait_for 60 "mid's fill" grep -q "filled" "$LAB_DIR/host1/run/mid.console"
mid_home() { # every node: mid on host1, no migration, no copy of it on host3
	for h in host1 host2 host3; do
		[ "$(vm_field $h mid 'j["vm"]["host"] + "/" + str("migration" in j["vm"])')" = \
			host1/False ] || return 1
	done
	! ls "$LAB_DIR/host3/run/" | grep -q '^mid.*sock'
}
mid_runs() { "$FERRY_BIN/vmon" ctl "$LAB_DIR/host1/run/mid.sock" status | grep -qi running; }
ctl host2 clusterctl migrate mid host3 --bandwidth 10 --no-wait
check "mid's migration to host3 is under way" wait_for 30 "mid's destination ready" \
	mig_is host1 mid ready
check "and sending pages" wait_for 60 "1 MB sent" sent_over host1 mid 1000000
# cap downtime-target timeout, as host1's vmon has them
vmon_settings() { "$FERRY_BIN/vmon" ctl "$LAB_DIR/host1/run/mid.sock" migrate-status -o json |
	json_get '"%d %d %d" % tuple(j["migration"]["settings"][k] for k in
		("bandwidth_cap_mbps", "downtime_target_ms", "timeout_s"))'; }
has_settings() { [ "$(vmon_settings)" = "$1" ]; }
# 128 MiB at 10 Mbit/s is 108 s a pass: vmon's 300 s plus four passes.
check "vmon's limit has room for mid at 10 Mbit/s (732 s, not 300)" has_settings "10 30 732"
# Changed on the way, from another node: the source's vmon takes it.
out=$(lab_exec host2 clusterctl migrate-set mid --bandwidth 20 --downtime-ms 40 2>&1) && rc=0 || rc=$?
echo "  $out"
check "migrate-set from host2 (exit $rc)" bash -c '[ "$0" = 0 ] &&
	grep -q "downtime target 40 ms, bandwidth cap 20 Mbit/s" <<<"$1"' "$rc" "$out"
check "host1's vmon has them in force (a faster cap keeps the limit)" \
	wait_for 10 "mid's vmon changed" has_settings "20 40 732"
progress_cap() { [ "$(ctl_json host3 vm show mid |
	json_get 'j.get("progress", {}).get("bandwidth_cap_mbps", 0)')" = 20 ]; }
check "the progress every node sees shows the new cap" wait_for 10 "progress cap" progress_cap
show_has_cap() { lab_exec host3 clusterctl vm show mid | grep "^progress:" |
	grep -q "at the source: downtime target 40 ms, bandwidth cap 20 Mbit/s"; }
check "  ...and vm show says so" show_has_cap
check "the event log names the change" lab_events_have host3 \
	"vm mid: the migration host1 -> host3 changed: downtime target 40 ms, bandwidth cap 20 Mbit/s"
ctl host1 clusterctl migrate-set mid --bandwidth 5
check "a slower cap (5 Mbit/s) gets a longer limit (1160 s)" \
	wait_for 10 "mid's vmon at 5 Mbit/s" has_settings "5 40 1160"
out=$(lab_exec host2 clusterctl migrate-set mid 2>&1) && rc=0 || rc=$?
check "migrate-set with nothing to change is bad usage (exit $rc)" test "$rc" = 2
out=$(lab_exec host3 clusterctl migrate-cancel mid 2>&1) && rc=0 || rc=$?
echo "  $out"
check "migrate-cancel: mid stays on host1 (exit $rc)" \
	bash -c '[ "$0" = 0 ] && grep -q "cancelled: mid stays on host1" <<<"$1"' "$rc" "$out"
check "it says what had been sent" bash -c 'grep -q "round(s), [1-9][0-9.]* MB sent" <<<"$0"' "$out"
check "every node has it on host1, and host3 no copy" wait_for 10 "mid home" mid_home
check "the result says cancelled" \
	test "$(vm_field host2 mid 'j["vm"]["last_migration"].get("cancelled", False)')" = True
echo "  $(vm_field host2 mid 'j["vm"]["last_migration"]["error"]')"
check "mid's vmon on host1 runs" mid_runs
check "the event log names the cancel" \
	lab_events_have host2 "vm mid: cancel of the migration host1 -> host3 asked"
# The same before the destination listens: nothing has moved yet.
ctl host2 clusterctl migrate mid host3 --bandwidth 10 --no-wait
out=$(lab_exec host1 clusterctl migrate-cancel mid 2>&1) && rc=0 || rc=$?
echo "  at once: $out"
check "cancelled at once (exit $rc)" bash -c '[ "$0" = 0 ] && grep -q "mid stays on host1" <<<"$1"' \
	"$rc" "$out"
check "mid home again" wait_for 10 "mid home" mid_home
echo "== Ctrl-C on clusterctl migrate cancels it"
lab_exec host2 clusterctl migrate mid host3 --bandwidth 10 >"$LAB_DIR/host2/ctrlc.out" 2>&1 &
mpid=$!
check "under way again" wait_for 30 "mid's destination ready" mig_is host1 mid ready
cpid=$(pgrep -f "clusterctl migrate mid host3" | while read -r p; do
	[ "$(cat /proc/$p/comm)" = clusterctl ] && echo "$p"; done | head -1)
kill -INT "$cpid"
wait "$mpid" && rc=0 || rc=$?
echo "  $(tr '\n' ' ' <"$LAB_DIR/host2/ctrlc.out")"
check "clusterctl says it cancels, and exits 1 on the cancelled migration ($rc)" \
	bash -c '[ "$0" = 1 ] && grep -q "cancelling the migration of mid" "$1" &&
		tail -1 "$1" | grep -q "cancelled during"' "$rc" "$LAB_DIR/host2/ctrlc.out"
check "mid home after Ctrl-C" wait_for 10 "mid home" mid_home
check "mid's vmon on host1 still runs" mid_runs

# mid to host3 at 10 Mbit/s (over a minute), until its pages flow
mid_to_host3_streaming() {
	ctl host2 clusterctl migrate mid host3 --bandwidth 10 --no-wait
	check "under way to host3" wait_for 30 "mid's destination ready" mig_is host1 mid ready
	check "  ...sending pages" wait_for 60 "1 MB sent" sent_over host1 mid 1000000
}
echo "== a migration's destination is cut off mid-way"
# The stream then goes nowhere; vmon alone would fail a send only after
# 30 s without progress. The source's agent cancels once host3 has left
# the membership: the VM stays, and the end names the cause.
mid_to_host3_streaming
lab cut host3 >/dev/null
check "the migration ends within 10 s of the cut" wait_for 10 "migration over" \
	mig_is host1 mid "over failed"
echo "  over $(fmt_ms "$WAITED_MS") after the cut"
err=$(vm_field host1 mid 'j["vm"]["last_migration"]["error"]')
echo "  $err"
check "  ...naming the destination that left" \
	grep -q "destination host3 left the cluster during the precopy phase; cancelled" <<<"$err"
check "mid's vmon on host1 runs" mid_runs
lab heal host3 >/dev/null
check "host3 rejoins" wait_for 20 "3 members everywhere" synced3
check "every node has mid on host1, and host3 no copy" wait_for 10 "mid home" mid_home

echo "== the destination's agent restarts mid-migration"
# An upgrade, say: the node stays in the membership, so the migration goes
# on, and its vmon, receiving, has no control socket yet. The new agent
# takes it over (RUN/mid.in.pid) instead of starting a second one, which
# the end made the VM's while the guest ran in the first, unwatched.
mid_to_host3_streaming
lab kill host3 --agent >/dev/null
sleep 1.5   # past CL_DEST_GONE_MS: only the node's leaving cancels
lab start host3 >/dev/null
check "host3's new agent adopts the vmon receiving mid" wait_for 10 "adopted" \
	grep -q "mid: adopted the incoming vmon" "$LAB_DIR/host3/clusterd.log"
in_vmons() { lab_procs "--control $LAB_DIR/host3/run/mid[.]in[.]sock"; }
check "  ...and starts no second one" test "$(in_vmons)" = 1
check "the migration goes on" mig_is host1 mid ready
ctl host1 clusterctl migrate-set mid --bandwidth 0
check "uncapped, it ends well" wait_for 60 "migration over" mig_is host1 mid "over ok"
placed_on() { for h in host1 host2 host3; do [ "$(vm_field $h "$1" 'j["vm"]["host"]')" = "$2" ] ||
	return 1; done; }
check "every node places mid on host3" placed_on mid host3
test_procs_none() { [ "$(lab_procs "$1")" = 0 ]; }
one_vmon() { [ "$(lab_procs "--control $LAB_DIR/host[0-9]/run/$1[.]")" = 1 ]; }
check "exactly one vmon runs mid" wait_for 10 "one vmon of mid" one_vmon mid
check "  ...running the guest" bash -c \
	"'$FERRY_BIN/vmon' ctl '$LAB_DIR/host3/run/mid.in.sock' status | grep -qi running"
check "mid moves back to host1" ctl host2 clusterctl migrate mid host1
check "mid home again" wait_for 10 "mid home" mid_home

echo "== the source's agent restarts mid-migration"
# Its node stays, and so does its vmon, streaming: host3 waits, and the
# new agent follows the migration vmon is on. Before, host3 voided it the
# moment host1's agent left, and stopped the vmon receiving.
mid_to_host3_streaming
lab kill host1 --agent >/dev/null
sleep 1.5
check "host3 waits for host1's agent" mig_is host3 mid ready
lab start host1 >/dev/null
check "host1's new agent follows what its vmon is on" wait_for 10 "following" \
	grep -q "mid: vmon is already on it; following" "$LAB_DIR/host1/clusterd.log"
ctl host2 clusterctl migrate-set mid --bandwidth 0
check "uncapped, it ends well" wait_for 60 "migration over" mig_is host1 mid "over ok"
check "every node places mid on host3" placed_on mid host3
check "exactly one vmon runs mid" wait_for 10 "one vmon of mid" one_vmon mid
# Now the source's agent is down while the migration ends (its cap lifted
# through vmon itself): host1's vmon runs the guest, so host1 ends the
# migration as done without host3's agent.
ctl host2 clusterctl migrate mid host1 --bandwidth 10 --no-wait
check "under way back to host1" wait_for 30 "mid's destination ready" mig_is host3 mid ready
lab kill host3 --agent >/dev/null
"$FERRY_BIN/vmon" ctl "$LAB_DIR/host3/run/mid.in.sock" migrate-set --bandwidth 0 >/dev/null
check "with host3's agent down, host1 ends it as done" wait_for 60 "migration over" \
	mig_is host1 mid "over ok"
echo "  $(vm_field host2 mid 'j["vm"]["last_migration"]')" | cut -c1-200
lab start host3 >/dev/null
check "host3's agent is back" wait_for 20 "3 members everywhere" synced3
check "mid home again" wait_for 10 "mid home" mid_home
check "exactly one vmon runs mid" wait_for 10 "one vmon of mid" one_vmon mid

echo "== an agent dies, its VMs do not"
lab kill host1 --agent >/dev/null
check "vm1 counts without its agent" count_grows
lab start host1 >/dev/null
check "the restarted agent adopts vm1" wait_for 10 "adopted" grep -q "adopted vm1" "$LAB_DIR/host1/clusterd.log"
check "vm1 moves to host3 from the adopted vmon" ctl host2 clusterctl migrate vm1 host3
check "vm1 counts on host3" wait_for 5 "counting" count_grows

echo "== the COMMIT is lost after the ACK"
# The connection breaks just after the destination acknowledged: the
# source has stopped its guest for good, and the destination's vmon holds
# it loaded but not started (FERRY_TEST_FAULT=lose-commit in host2's
# vmons, through its agent's environment). The migration ended well, so
# host2's agent starts it; before, the VM sat placed on host2 and ran
# nowhere, for good.
lab kill host2 --agent >/dev/null
FERRY_TEST_FAULT=lose-commit lab start host2 >/dev/null
check "host2's agent is back" wait_for 20 "3 members everywhere" synced3
out=$(lab_exec host1 clusterctl migrate vm1 host2 2>&1) && rc=0 || rc=$?
sed 's/^/  /' <<<"$out"
check "the migration ends well (exit $rc)" test "$rc" = 0
check "  ...with a note on the lost confirmation" \
	grep -q "^note: committed, but the destination did not confirm" <<<"$out"
check "every node places vm1 on host2" placed_on vm1 host2
check "host2's agent saw the guest held and started it" wait_for 10 "host2 starts vm1" \
	grep -q "vm1: its vmon holds the guest, loaded but never started" "$LAB_DIR/host2/clusterd.log"
show_note() { lab_exec host3 clusterctl vm show vm1 |
	grep -q '^last migration: host3 -> host2: done; committed, but'; }
check "vm show has the note" show_note
check "vm1 counts on host2" wait_for 10 "vm1 counting on host2" bash -c \
	"grep -q '^counter: ' '$LAB_DIR/host2/run/vm1.console'"
counts_on() { sed -n 's/^counter: \([0-9][0-9]*\)$/\1/p' "$LAB_DIR/$1/run/vm1.console"; }
first2=$(counts_on host2 | head -1)
last3=$(counts_on host3 | tail -1)
echo "  the count ends at $last3 on host3 and goes on from $first2 on host2"
check "  ...without a gap or a repeat" test "$first2" = $((last3 + 1))
# host3's agent followed this migration to its end: the record of the
# handover speaks for nothing any more, and goes.
check "host3 drops vm1's handover record" wait_for 5 "no record" \
	test ! -e "$LAB_DIR/host3/run/vm1.handover"
check "exactly one vmon runs vm1" wait_for 10 "one vmon of vm1" one_vmon vm1
lab kill host2 --agent >/dev/null
lab start host2 >/dev/null
check "host2's agent is back, without the fault" wait_for 20 "3 members everywhere" synced3
check "vm1 moves back to host3 from the vmon host2's agent started" \
	ctl host2 clusterctl migrate vm1 host3
check "vm1 counts on host3" wait_for 5 "counting" count_grows

echo "== the COMMIT is lost while the destination's agent is down"
# The migration ends well without host3's agent; its next one finds the
# vmon holding mid (it looks for one before starting a VM placed there)
# and must start the guest, not only take the vmon over.
# host3's agent restarted with its vmons to lose the COMMIT, then mid on
# its way there at 10 Mbit/s.
mid_to_host3_losing_commit() {
	lab kill host3 --agent >/dev/null
	FERRY_TEST_FAULT=lose-commit lab start host3 >/dev/null
	check "host3's agent is back, its vmons to lose the COMMIT" \
		wait_for 20 "3 members everywhere" synced3
	ctl host2 clusterctl migrate mid host3 --bandwidth 10 --no-wait
	check "mid under way to host3" wait_for 30 "mid's destination ready" mig_is host1 mid ready
}
mid_to_host3_losing_commit
lab kill host3 --agent >/dev/null
ctl host2 clusterctl migrate-set mid --bandwidth 0
check "with host3's agent down, the migration ends well" wait_for 60 "migration over" \
	mig_is host1 mid "over ok"
mid_is3() { [ "$("$FERRY_BIN/vmon" ctl "$LAB_DIR/host3/run/mid.in.sock" status 2>/dev/null |
	cut -d' ' -f2)" = "$1," ]; }
check "  ...and host3's vmon holds mid, unstarted" wait_for 10 "mid held" mid_is3 created
lab start host3 >/dev/null
check "host3's new agent starts the guest its vmon holds" wait_for 20 "host3 starts mid" \
	grep -q "mid: its vmon holds the guest, loaded but never started" "$LAB_DIR/host3/clusterd.log"
check "mid runs on host3" wait_for 10 "mid running" mid_is3 running
check "exactly one vmon runs mid" wait_for 10 "one vmon of mid" one_vmon mid
check "mid moves back to host1" ctl host2 clusterctl migrate mid host1
check "mid home again" wait_for 10 "mid home" mid_home

echo "== the COMMIT is lost while the source's agent is down"
# host1's vmon has the ACK and exits (its linger over) while its agent is
# away, and host3's vmon holds mid. Only the record host1's vmon left
# (RUN/mid.handover) tells its next agent that the guest is host3's;
# before, host3 voided the migration, stopped the guest it held, and mid
# started afresh on host1 from its disks.
held_logged() { grep -c "mid: its vmon holds the guest, loaded but never started" \
	"$LAB_DIR/host3/clusterd.log" || true; }
n_held=$(held_logged)
mid_to_host3_losing_commit
lab kill host1 --agent >/dev/null
# Its vmon took mid in by migration: its socket is mid.in.sock.
mid_sock1() { ls "$LAB_DIR"/host1/run/mid*.sock | head -1; }
"$FERRY_BIN/vmon" ctl "$(mid_sock1)" migrate-set --bandwidth 0 >/dev/null
src_gone() { test_procs_none "--control $LAB_DIR/host1/run/mid[.]"; }
check "host1's vmon hands mid over and exits, its agent down" wait_for 60 "host1's vmon gone" src_gone
check "  ...having recorded the ACK" grep -q "^[0-9][0-9]* tcp:" "$LAB_DIR/host1/run/mid.handover"
check "host3's vmon holds mid, unstarted" wait_for 15 "mid held" mid_is3 created
check "host3 waits for host1's agent" mig_is host3 mid ready
lab start host1 >/dev/null
check "host1's next agent tells host3 that its vmon had the ACK" wait_for 20 "host3 told" \
	grep -q "mid: the vmon at the source host1 has exited, recording that it had our ACK" \
	"$LAB_DIR/host3/clusterd.log"
check "the migration ends well" wait_for 20 "migration over" mig_is host2 mid "over ok"
show_settled() { lab_exec host2 clusterctl vm show mid | grep "^last migration:" |
	tee /dev/stderr | grep -q "host1 -> host3: done; the vmon at the source host1 exited after our ACK"; }
check "  ...and vm show says how it was settled" show_settled
check "every node places mid on host3" placed_on mid host3
held_more() { [ "$(held_logged)" -gt "$n_held" ]; }
check "host3's agent starts the guest its vmon holds" wait_for 20 "host3 starts mid" held_more
check "mid runs on host3" wait_for 10 "mid running" mid_is3 running
check "exactly one vmon runs mid" wait_for 10 "one vmon of mid" one_vmon mid
lab kill host3 --agent >/dev/null
lab start host3 >/dev/null
check "host3's agent is back, without the fault" wait_for 20 "3 members everywhere" synced3
check "mid moves back to host1" ctl host2 clusterctl migrate mid host1
check "mid home again" wait_for 10 "mid home" mid_home

echo "== both agents restart mid-migration"
# host1's and host3's agents are killed mid-stream; host3's comes back
# first and finds its vmon receiving while host1's agent is away. It must
# take that vmon over at once: before, it waited for host1's agent
# without looking, and the guest, once moved, ran in a vmon no agent knew.
adoptions() { grep -c 'mid: adopted the incoming vmon' "$LAB_DIR/host3/clusterd.log" || true; }
n_adopt=$(adoptions)
mid_to_host3_streaming
lab kill host1 --agent >/dev/null
lab kill host3 --agent >/dev/null
lab start host3 >/dev/null
adopted_more() { [ "$(adoptions)" -gt "$n_adopt" ]; }
check "host3's new agent adopts the vmon receiving mid, host1's agent away" wait_for 10 "adopted" \
	adopted_more
"$FERRY_BIN/vmon" ctl "$(mid_sock1)" migrate-set --bandwidth 0 >/dev/null
check "host3 ends the migration as done, host1's agent still away" wait_for 60 "migration over" \
	mig_is host3 mid "over ok"
lab start host1 >/dev/null
check "host1's agent is back" wait_for 20 "3 members everywhere" synced3
check "every node places mid on host3" placed_on mid host3
check "exactly one vmon runs mid" wait_for 10 "one vmon of mid" one_vmon mid
check "mid moves back to host1" ctl host2 clusterctl migrate mid host1
check "mid home again" wait_for 10 "mid home" mid_home

echo "== the source's agent stays away and the migration fails under it"
# Cancelled through host1's vmon: host3's vmon ends without the guest.
# host3 voids the migration once host1's agent has been away 15 s
# (CL_SRC_AWAY_VOID_MS); before, it waited for that agent for good.
mid_to_host3_streaming
lab kill host1 --agent >/dev/null
"$FERRY_BIN/vmon" ctl "$(mid_sock1)" migrate-cancel >/dev/null
t0=$(date +%s)
check "host3 voids it, host1's agent away" wait_for 40 "migration over" mig_is host3 mid "over failed"
why=$(vm_field host3 mid 'j["vm"]["last_migration"]["error"]')
echo "  after $(( $(date +%s) - t0 )) s: $why"
check "  ...saying why" grep -q "no vmon here has the guest, and the agent at the source host1 has been away for 15 s" <<<"$why"
mid_runs1() { "$FERRY_BIN/vmon" ctl "$(mid_sock1)" status | grep -qi running; }
check "mid's vmon on host1 still runs it" mid_runs1
lab start host1 >/dev/null
check "host1's agent is back" wait_for 20 "3 members everywhere" synced3
check "mid home again" wait_for 10 "mid home" mid_home
check "exactly one vmon runs mid" wait_for 10 "one vmon of mid" one_vmon mid

echo "== both vmons end while the source's agent is down"
# host1's agent is killed mid-stream, then mid's vmon there: the stream
# breaks and host3's vmon ends without the guest. host1's next agent finds
# no vmon and says so, and host3 has none left either. Before, host3
# waited for good (host1's agent was back, so no time limit ran); now it
# voids the migration, and host1 starts mid afresh from its image.
mid_to_host3_streaming
lab kill host1 --agent >/dev/null
pkill -9 -f -- "--control $LAB_DIR/host1/run/mid[.]" || true
no_in3() { test_procs_none "--control $LAB_DIR/host3/run/mid[.]in[.]sock"; }
check "host3's vmon ends without the guest" wait_for 20 "host3's vmon gone" no_in3
lab start host1 >/dev/null
check "the migration ends, failed" wait_for 20 "migration over" mig_is host2 mid "over failed"
why=$(vm_field host2 mid 'j["vm"]["last_migration"]["error"]')
echo "  $why"
check "  ...saying neither vmon is left" grep -q \
	"the vmon at the source host1 has exited, and the one here had ended without the guest" <<<"$why"
mid_runs_new() { "$FERRY_BIN/vmon" ctl "$LAB_DIR/host1/run/mid.sock" status 2>/dev/null |
	grep -qi running; }
check "host1 starts mid again, from its image" wait_for 30 "mid restarted" mid_runs_new
check "mid home again" wait_for 10 "mid home" mid_home
check "exactly one vmon runs mid" wait_for 10 "one vmon of mid" one_vmon mid

echo "== a migration's source dies mid-way"
# mid again, to host2 at 10 Mbit/s; then host1, mid's vmon with it, dies
# mid-stream. The guest is gone with its host; what must not happen is a
# half-loaded copy running on host2, or a state that places mid there.
ctl host3 clusterctl migrate mid host2 --bandwidth 10 --no-wait
check "mid's migration to host2 is under way" wait_for 30 "mid's destination ready" \
	mig_is host1 mid ready
check "and sending pages" wait_for 60 "1 MB sent" sent_over host1 mid 1000000
node_dies host1
check "the migration ends, failed" wait_for 20 "migration over" mig_is host2 mid "over failed"
err=$(vm_field host2 mid 'j["vm"]["last_migration"]["error"]')
echo "  $err"
check "  ...saying the source left" grep -q "source host1 left the cluster" <<<"$err"
check "host3 agrees: mid on host1, no migration" \
	test "$(vm_field host3 mid 'j["vm"]["host"] + "/" + str("migration" in j["vm"])')" = host1/False
check "host2 stops the copy it was loading" wait_for 10 "no mid on host2" \
	test_procs_none "--control $LAB_DIR/host2/run/mid[.]"
lab start host1 >/dev/null
check "host1 rejoins" wait_for 20 "3 members everywhere" synced3
check "host1 agrees" wait_for 5 "host1's view" mig_is host1 mid "over failed"
# As after any crash of its host: back, host1 starts the VMs placed on it
# afresh (the guest's RAM died with it).
check "host1 starts mid again, from its image" wait_for 20 "mid restarted on host1" mid_runs
check "exactly one vmon runs mid" one_vmon mid
check "vm1 counts on host3 all along" count_grows

echo "== the whole cluster restarts"
seq1=$(seq_of host2)
lab kill host1 host2 host3 >/dev/null
lab start host1 host2 host3 >/dev/null
check "all three are back" wait_for 20 "3 members everywhere" synced3
check "nothing was lost (seq $seq1 everywhere)" bash -c \
	"[ $(seq_of host1) = $seq1 ] && [ $(seq_of host2) = $seq1 ] && [ $(seq_of host3) = $seq1 ]"
check "vm1 is still placed on host3" test "$(vm_field host1 vm1 'j["vm"]["host"]')" = host3
check "and still counts (adopted again)" wait_for 10 "adopted on host3" grep -q "adopted vm1" "$LAB_DIR/host3/clusterd.log"
check "vm1 counts after the restart" count_grows
check "exactly one vmon runs vm1" one_vmon vm1
finish
