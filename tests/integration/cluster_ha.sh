#!/bin/bash
# HA on a 3-node lab (docs/cluster.md, "HA"): host2, running an HA VM and
# a plain one, is cut off from the others. Its HA vmon stops itself once
# ha-fence-s passes without a keepalive; only then does the leader restart
# the HA VM on a host that is up, as a new run; the plain VM runs on where
# it was. When host2 is back, the VM runs once, where the cluster put it.
# Then the agent of the host running the HA VM dies: the same, while its
# corosync stays up. The HA VM has a disk: each restart takes the disk's
# lock, which only a fenced (gone) vmon gives up. Last, HA is turned on
# for a running VM (its host's agent arms the fence; a cut then recovers
# it), and off again (the fence is disarmed). Then an HA VM's migration
# source is cut off mid-stream: void, fenced, recovered once.
. "$(dirname "$0")/lab_lib.sh"
GUESTS=${FERRY_GUESTS:-$LAB_SRC/build/guests}
FENCE_S=5
SHARED=$(mktemp -d /tmp/ferry-shared.XXXXXX)
trap 'rc=$?; set +e; rm -rf "$SHARED"; (exit $rc); lab_at_exit' EXIT
truncate -s 16M "$SHARED/ha1.img"

members() { ctl_json "$1" status 2>/dev/null | json_get '" ".join(j["node"].get("members", []))'; }
sees() { [ "$(members "$1")" = "$2" ]; }
vm_field() { ctl_json "$1" vm show "$2" 2>/dev/null | json_get "$3"; }
vm_host() { vm_field "$1" "$2" 'j["vm"].get("host", "")'; }
vm_gen() { vm_field "$1" "$2" 'j["vm"].get("generation", 0)'; }
# vmon processes of VM (by its --name) on HOST (by its control socket)
vmons_of() { lab_procs "vmon run --name $2 .*--control $LAB_DIR/$1/run/"; }
test_one_vmon() { [ "$(vmons_everywhere "$1")" = 1 ]; }
vmons_everywhere() { echo $(($(vmons_of host1 "$1") + $(vmons_of host2 "$1") + $(vmons_of host3 "$1"))); }
no_vmon() { [ "$(vmons_of "$1" "$2")" = 0 ]; }
last_count() { sed -n 's/^counter: \([0-9][0-9]*\)$/\1/p' "$LAB_DIR/$1/run/$2.console" 2>/dev/null | tail -1; }
counts_on() { local c; c=$(last_count "$1" "$2"); [ -n "$c" ] || return 1; sleep 0.5
	[ "$(last_count "$1" "$2")" -gt "$c" ]; }
shows_ha() { lab_exec host1 clusterctl vm show ha1 2>/dev/null | grep -q '^ha: *yes'; }
fenced_vmon() { [ "$(lab_procs "vmon run --name $2 .*--fence-s $FENCE_S .*--control $LAB_DIR/$1/run/")" -gt 0 ]; }
cut_off() { if [ "$2" = down ]; then lab cut "$1"; else lab heal "$1"; fi >/dev/null; }

lab_up 3

echo "== setup"
check "ha-fence-s set to $FENCE_S" ctl host1 clusterctl config set ha-fence-s $FENCE_S
check "ha1 (counter, --ha) created" ctl host1 clusterctl vm create ha1 --guest "$GUESTS/counter" \
	--args "n=0 interval_ms=50" --mem 64M --ha --disk "$SHARED/ha1.img"
check "plain (counter) created" ctl host1 clusterctl vm create plain --guest "$GUESTS/counter" \
	--args "n=0 interval_ms=50" --mem 64M
check "vm show says ha" shows_ha
check "ha1 started on host2" ctl host1 clusterctl vm start ha1 --host host2
check "plain started on host2" ctl host1 clusterctl vm start plain --host host2
check "ha1 counts on host2" wait_for 30 "ha1 counting" counts_on host2 ha1
check "plain counts on host2" wait_for 30 "plain counting" counts_on host2 plain
check "ha1's vmon runs with --fence-s $FENCE_S" fenced_vmon host2 ha1
check "ha-fence-s cannot change while ha1 runs" fails host1 "HA VM ha1 runs" config set ha-fence-s 20
sleep $((FENCE_S + 2))
check "keepalives keep ha1 running past the fence time" counts_on host2 ha1
gen0=$(vm_gen host1 ha1)

echo "== host2 is cut off from the others"
t0=$(date +%s%3N)
cut_off host2 down
check "host1 sees host2 gone" wait_for 30 "host2's loss" sees host1 "host1 host3"
check "plain runs on in the minority" counts_on host2 plain
check "ha1's vmon on host2 fenced itself" wait_for $((FENCE_S + 30)) "the fence" no_vmon host2 ha1
t_fence=$(($(date +%s%3N) - t0))
check "its log says why" grep -q "fenced: no keepalive from the node agent for $FENCE_S s" \
	"$LAB_DIR/host2/run/ha1.log"
new_host() { local h; h=$(vm_host host1 ha1); [ "$h" = host1 ] || [ "$h" = host3 ]; }
check "the leader restarted ha1 on a host that is up" wait_for 60 "ha1's recovery" new_host
t_recover=$(($(date +%s%3N) - t0))
nh=$(vm_host host1 ha1)
echo "  fenced $t_fence ms after the cut, recovered on $nh after $t_recover ms"
check "the fence came before the recovery" test "$t_fence" -lt "$t_recover"
check "as a new run (generation $gen0 -> $((gen0 + 1)))" test "$(vm_gen host1 ha1)" = $((gen0 + 1))
check "ha1 counts on $nh" wait_for 30 "ha1 on $nh" counts_on "$nh" ha1
check "one ha1 vmon in the whole lab" test "$(vmons_everywhere ha1)" = 1
disk_owner() { lab_exec host1 clusterctl vm show ha1 2>/dev/null | grep -q "disk 0: *$SHARED/ha1.img, owned by $1"; }
check "its disk is $nh's now" disk_owner "$nh"
check "plain stays placed on host2" test "$(vm_host host1 plain)" = host2
check "the event log says so" lab_events_have host1 "vm ha1: recovered on $nh: host host2 was lost for"

echo "== host2 comes back"
cut_off host2 up
check "host2 is back in the cluster" wait_for 60 "host2's return" sees host2 "host1 host2 host3"
sleep 3
check "host2 started no ha1" no_vmon host2 ha1
check "still one ha1 vmon in the lab" test "$(vmons_everywhere ha1)" = 1
check "ha1 counts on $nh" counts_on "$nh" ha1
check "plain counts on host2" counts_on host2 plain

echo "== the agent of $nh dies (its corosync stays)"
gen1=$(vm_gen host2 ha1)
lab kill "$nh" --agent >/dev/null
check "ha1's vmon on $nh fenced itself" wait_for $((FENCE_S + 30)) "the fence" no_vmon "$nh" ha1
moved() { local h; h=$(vm_host host2 ha1); [ -n "$h" ] && [ "$h" != "$nh" ]; }
check "restarted elsewhere" wait_for 60 "ha1's recovery" moved
nh2=$(vm_host host2 ha1)
check "on $nh2, as run $((gen1 + 1))" test "$(vm_gen host2 ha1)" = $((gen1 + 1))
check "ha1 counts on $nh2" wait_for 30 "ha1 on $nh2" counts_on "$nh2" ha1
lab start "$nh" >/dev/null
check "$nh's agent is back" wait_for 60 "$nh's agent" sees "$nh" "host1 host2 host3"
sleep 3
check "one ha1 vmon in the lab" test "$(vmons_everywhere ha1)" = 1

# Back before the recovery time, an HA VM whose vmon fenced is restarted in
# place, but only after its host reported the end to the cluster (a new
# generation): a recovery the leader might be deciding at that moment is
# then stale, and never a second copy. Under emulation the rejoin may take
# past the recovery time: then it was recovered elsewhere, also a new run.
echo "== $nh2 is cut off until its HA vmon fences, then comes back"
q=host1; [ "$nh2" = host1 ] && q=host2
gen2=$(vm_gen $q ha1)
t0=$(date +%s%3N)
cut_off "$nh2" down
check "ha1's vmon on $nh2 fenced itself" wait_for $((FENCE_S + 30)) "the fence" no_vmon "$nh2" ha1
cut_off "$nh2" up
check "$nh2 is back in the cluster" wait_for 60 "$nh2's return" sees "$nh2" "host1 host2 host3"
echo "  back $(fmt_ms $(($(date +%s%3N) - t0))) after the cut"
next_run() { [ "$(vm_gen $q ha1)" = $((gen2 + 1)) ]; }
check "ha1 runs again, as run $((gen2 + 1))" wait_for 60 "ha1's new run" next_run
nh3=$(vm_host $q ha1)
echo "  ha1 now on $nh3 ($([ "$nh3" = "$nh2" ] && echo "restarted in place" || echo "recovered elsewhere"))"
check "ha1 counts on $nh3" wait_for 30 "ha1 on $nh3" counts_on "$nh3" ha1
sleep 3
check "one ha1 vmon in the lab" test "$(vmons_everywhere ha1)" = 1
check "still run $((gen2 + 1))" next_run

# HA changed while a VM runs: on, it protects the VM once the host's agent
# armed its vmon's fence (and the cluster knows); off, the fence goes.
echo "== HA turned on and off while a VM runs"
r=host1; [ "$nh3" = host1 ] && r=host2
fence_of() { "$FERRY_BIN/vmon" ctl "$LAB_DIR/$1/run/late.sock" status -o json 2>/dev/null |
	json_get 'j["status"].get("fence_s", 0)'; }
fence_is() { [ "$(fence_of "$1")" = "$2" ]; }
armed() { lab_exec $r clusterctl vm show late 2>/dev/null | grep -q '^ha: *yes: restarted'; }
check "late (counter, no HA) created" ctl $r clusterctl vm create late --guest "$GUESTS/counter" \
	--args "n=0 interval_ms=50" --mem 32M
check "late started on $nh3" ctl $r clusterctl vm start late --host "$nh3"
check "late counts on $nh3" wait_for 30 "late counting" counts_on "$nh3" late
check "its vmon has no fence" fence_is "$nh3" 0
check "vm set late --ha on while it runs" ctl $r clusterctl vm set late --ha on
check "its host's agent armed the fence, and the cluster knows" wait_for 20 "late armed" armed
check "late's vmon now fences at $FENCE_S s" fence_is "$nh3" $FENCE_S
check "the event log says so" lab_events_have $r "vm late: HA armed"
sleep $((FENCE_S + 2))
check "keepalives keep late running past the fence time" counts_on "$nh3" late
gen3=$(vm_gen $r late)
cut_off "$nh3" down
check "cut off, late's vmon on $nh3 fenced itself" wait_for $((FENCE_S + 30)) "the fence" \
	no_vmon "$nh3" late
late_moved() { local h; h=$(vm_host $r late); [ -n "$h" ] && [ "$h" != "$nh3" ]; }
check "and the leader restarted it elsewhere" wait_for 60 "late's recovery" late_moved
nh4=$(vm_host $r late)
check "on $nh4, as run $((gen3 + 1))" test "$(vm_gen $r late)" = $((gen3 + 1))
check "late counts on $nh4" wait_for 30 "late on $nh4" counts_on "$nh4" late
cut_off "$nh3" up
check "$nh3 is back" wait_for 60 "$nh3's return" sees "$nh3" "host1 host2 host3"
check "late's new vmon took the fence at start" fence_is "$nh4" $FENCE_S
check "vm set late --ha off while it runs" ctl $r clusterctl vm set late --ha off
check "its fence is disarmed" wait_for 10 "late disarmed" fence_is "$nh4" 0
sleep $((FENCE_S + 2))
check "late runs on without keepalives" counts_on "$nh4" late
check "one late vmon in the lab" test "$(vmons_everywhere late)" = 1

# An HA VM whose migration's source is cut off mid-stream: the migration is
# void (its destination keeps no copy), the source's vmon fences, and the
# VM is recovered as from any lost host: one run of it, never two.
echo "== an HA VM's migration source is cut off mid-way"
check "mover (dirtier, 64 MiB, --ha) created" ctl host3 clusterctl vm create mover \
	--guest "$GUESTS/dirtier" --args "ws=33554432 rate=2000 fill=1" --mem 64M --ha
check "mover started on host1" ctl host3 clusterctl vm start mover --host host1
check "mover filled its memory" wait_for 60 "mover's fill" \
	grep -q "filled" "$LAB_DIR/host1/run/mover.console"
gen4=$(vm_gen host3 mover)
ctl host3 clusterctl migrate mover host2 --bandwidth 10 --no-wait
check "its migration to host2 is under way" wait_for 30 "mover's destination ready" \
	mig_is host3 mover ready
check "and sending pages" wait_for 60 "1 MB sent" sent_over host1 mover 1000000
t0=$(date +%s%3N)
cut_off host1 down
check "the migration ends, void" wait_for 30 "the migration's end" mig_is host3 mover "over failed"
echo "  $(vm_field host3 mover 'j["vm"]["last_migration"]["error"]')"
check "host2 keeps no copy" wait_for 10 "no mover on host2" no_vmon host2 mover
check "mover's vmon on host1 fenced itself" wait_for $((FENCE_S + 30)) "the fence" no_vmon host1 mover
mover_back() { [ "$(vm_gen host3 mover)" = $((gen4 + 1)) ] && [ "$(vm_host host3 mover)" != host1 ]; }
check "the leader restarted it on a host that is up, as run $((gen4 + 1))" \
	wait_for 60 "mover's recovery" mover_back
nh5=$(vm_host host3 mover)
echo "  recovered on $nh5 $(fmt_ms $(($(date +%s%3N) - t0))) after the cut"
check "one mover vmon in the lab" test "$(vmons_everywhere mover)" = 1
cut_off host1 up
check "host1 is back" wait_for 60 "host1's return" sees host1 "host1 host2 host3"
sleep 3
check "host1 started no mover; still one in the lab" test "$(vmons_everywhere mover)" = 1

# A fence is the host's doing, not a crash of the guest: it must not count
# towards crash-restarts. Before, the fourth fence in place stopped the VM
# for good (a soak found it). With crash-restarts 1, a counted fence would
# leave the second one stopped: two cuts prove it as four did at 3.
echo "== fenced twice in a row on host2 (crash-restarts 1): restarted each time"
check "crash-restarts set to 1" ctl host1 clusterctl config set crash-restarts 1
check "flap (counter, --ha) created" ctl host1 clusterctl vm create flap --guest "$GUESTS/counter" \
	--args "n=0 interval_ms=50" --mem 32M --ha
check "flap started on host2" ctl host1 clusterctl vm start flap --host host2
check "flap counts on host2" wait_for 30 "flap counting" counts_on host2 flap
for i in 1 2; do
	g=$(vm_gen host1 flap)
	cut_off host2 down
	check "cut $i: flap's vmon fenced itself" wait_for $((FENCE_S + 30)) "the fence" no_vmon host2 flap
	cut_off host2 up
	check "cut $i: host2 is back" wait_for 60 "host2's return" sees host2 "host1 host2 host3"
	newer() { [ "$(vm_gen host1 flap)" -gt "$g" ]; }
	check "cut $i: flap runs again, a new run" wait_for 30 "flap's new run" newer
	echo "  cut $i: flap on $(vm_host host1 flap), run $(vm_gen host1 flap)"
	check "cut $i: one flap vmon in the lab" wait_for 20 "one flap vmon" \
		test_one_vmon flap
done

finish
