#!/bin/bash
# HA admission control (docs/cluster.md, "HA admission control") on a
# 3-node lab whose agents offer 1 GiB each to guests (clusterd --guest-mem).
# With ha-host-failures 1, two 640 MiB HA VMs on two hosts leave room to
# restart either on the third; a third one, or a plain VM that takes the
# room, is refused, naming the host whose loss would strand a VM and the
# memory left; a smaller plain VM goes where it keeps the room. With the
# setting back to none, nothing is checked; set again on a cluster that
# would not survive a loss, starts are refused and moves go on. Two starts
# asked of two agents at once cannot both take the last room, and a host
# whose evacuation would break the room does not go into maintenance; nor
# do two hosts asked at once, where each alone keeps it.
. "$(dirname "$0")/lab_lib.sh"
GUESTS=${FERRY_GUESTS:-$LAB_SRC/build/guests}
trap 'lab_at_exit' EXIT

stopped_vms() { lab_exec host1 clusterctl vm list | awk '$2 == "stopped" {print $1}' | sort | tr '\n' ' '; }
vm_host() { ctl_json host1 vm show "$1" 2>/dev/null | json_get 'j["vm"].get("host", "")'; }
offers() { lab_exec host1 clusterctl host show "$1" 2>/dev/null | grep -q "$2"; }

export FERRY_CLUSTERD_ARGS="--guest-mem 1G"
lab_up 3

echo "== hosts that offer 1 GiB to guests"
lab_exec host1 clusterctl host show host2 | grep "^cpus:" | sed 's/^/  /'
check "host show says 1 GiB for host2" offers host2 "memory 1.0 GiB"
check "ha-host-failures 1" ctl host1 clusterctl config set ha-host-failures 1
for v in h1 h2 h3; do
	check "$v (counter, 640 MiB, --ha) created" ctl host1 clusterctl vm create $v \
		--guest "$GUESTS/counter" --args "n=0 interval_ms=100" --mem 640M --ha
done
check "p1 (counter, 512 MiB) created" ctl host1 clusterctl vm create p1 \
	--guest "$GUESTS/counter" --args "n=0 interval_ms=100" --mem 512M
check "p2 (counter, 256 MiB) created" ctl host1 clusterctl vm create p2 \
	--guest "$GUESTS/counter" --args "n=0 interval_ms=100" --mem 256M

echo "== room kept for one host's loss"
no_admit_warning() { ! lab_exec host3 clusterctl status 2>/dev/null | grep -q "^warning: HA admission"; }
status_has() { lab_exec host3 clusterctl status 2>/dev/null | grep -q -- "$1"; }
check "h1 starts on host1: host2 or host3 could take it" ctl host2 clusterctl vm start h1 --host host1
check "h2 starts on host2: host3 could take either" ctl host3 clusterctl vm start h2 --host host2
check "h3 on host3 is refused: host1 lost, h1 finds 384 MiB at most" fails host1 \
	"vm start: h3: refused by HA admission control (ha-host-failures 1): were host1 lost, HA VM h1 (640 MiB) could not restart: the most memory left on a host would be 384 MiB" \
	vm start h3 --host host3
check "so is a plain VM of 512 MiB, wherever it would go" fails host2 \
	"vm start: p1: refused by HA admission control (ha-host-failures 1)" vm start p1
check "one of 256 MiB is admitted" ctl host1 clusterctl vm start p2
check "on host3, where 768 MiB stay for h1 or h2" test "$(vm_host p2)" = host3
check "clusterctl status has no admission warning" no_admit_warning
lab_exec host3 clusterctl status | grep -E "^(HA admission|room for)" | sed 's/^/  /'
check "status: it holds, and one host's loss is all it survives" status_has \
	"^HA admission control (ha-host-failures 1): holds; the HA VMs would restart after losing any 1 host$"
check "status: the room left for a new VM on each host" status_has \
	"^room for a new VM, keeping it: host1 384.0 MiB, host2 384.0 MiB, host3 128.0 MiB$"
check "h3 and p1 stay stopped ($(stopped_vms))" test "$(stopped_vms)" = "h3 p1 "

# host3 keeps 768 MiB: one more 128 MiB VM leaves 640 for h1, two do not.
# Asked at once of two agents, each judges on the state it holds, before
# the other's start lands; the total order judges again and refuses the
# second. The agents' sockets are files: clusterctl reaches them from here
# without a namespace's start-up between the two.
echo "== two starts at once, on two agents"
check "r1, r2 (counter, 128 MiB) created" ctl host1 sh -c "clusterctl vm create r1 \
	--guest $GUESTS/counter --args 'n=0 interval_ms=100' --mem 128M &&
	clusterctl vm create r2 --guest $GUESTS/counter --args 'n=0 interval_ms=100' --mem 128M"
# at_once AGENT1 ARGS1 AGENT2 ARGS2: clusterctl ARGS1 through AGENT1's
# agent and ARGS2 through AGENT2's (each a string split on spaces), at the
# same moment; their exit codes in rc1 and rc2, what they said in said.
at_once() {
	local o1 o2 p1 p2
	o1=$(mktemp) o2=$(mktemp)
	# shellcheck disable=SC2086
	FERRY_SOCKET=$LAB_DIR/$1/clusterd.sock "$FERRY_BIN/clusterctl" $2 >"$o1" 2>&1 &
	p1=$!
	# shellcheck disable=SC2086
	FERRY_SOCKET=$LAB_DIR/$3/clusterd.sock "$FERRY_BIN/clusterctl" $4 >"$o2" 2>&1 &
	p2=$!
	wait $p1 && rc1=0 || rc1=$?
	wait $p2 && rc2=0 || rc2=$?
	said=$(sed "s/^/  $1: /" "$o1"; sed "s/^/  $3: /" "$o2")
	[ -z "$said" ] || echo "$said"
	rm -f "$o1" "$o2"
}
# start_at_once [ARGS...]: vm start r1 through host1's agent and r2
# through host2's.
start_at_once() { at_once host1 "vm start r1 $*" host2 "vm start r2 $*"; }
stop_r() { for v in r1 r2; do ctl host1 clusterctl vm stop $v || true; done; }
race() {
	local up
	start_at_once --host host3
	up=$(lab_exec host1 clusterctl vm list | awk '$1 ~ /^r[12]$/ && $2 != "stopped"' | wc -l)
	[ $((rc1 + rc2)) = 1 ] && [ "$up" = 1 ] &&
		grep -q "refused by HA admission control (ha-host-failures 1): were host1 lost, HA VM h1 (640 MiB) could not restart: the most memory left on a host would be 512 MiB (host3)" <<<"$said"
	local ok=$?
	stop_r
	return $ok
}
for i in 1 2 3 4 5; do
	check "race $i: one of r1 and r2 starts, the other is refused" race
done
# Placed by the cluster (no --host): both go to host3, the least used; the
# one refused where it is applied is placed again, on host1 or host2.
race_placed() {
	local h1 h2
	start_at_once
	h1=$(vm_host r1) h2=$(vm_host r2)
	echo "  r1 on $h1, r2 on $h2"
	[ "$rc1" = 0 ] && [ "$rc2" = 0 ] && [ "$h1" != "$h2" ] && no_admit_warning
	local ok=$?
	stop_r
	return $ok
}
for i in 1 2 3; do
	check "placed race $i: both start, on two hosts, and the room holds" race_placed
done
check "r1 and r2 deleted" ctl host1 sh -c "clusterctl vm delete r1 && clusterctl vm delete r2"

# With host3 in maintenance only host2 could take h1, and it keeps 384
# MiB: the evacuation would break the room, so it does not start.
echo "== maintenance that would break the room"
host_mode() { lab_exec host1 clusterctl host show "$1" | awk '$1 == "mode:" {print $2}'; }
check "host maintenance host3 enter is refused, naming the plan" fails host2 \
	"host maintenance: host3: refused by HA admission control (ha-host-failures 1): with host3 in maintenance and its VMs moved (p2 -> host" \
	host maintenance host3 enter
check "so is host mode host3 maintenance" fails host1 \
	"host mode: host3: refused by HA admission control (ha-host-failures 1)" \
	host mode host3 maintenance
check "host3 stays active ($(host_mode host3))" test "$(host_mode host3)" = active
check "p2 stays on host3" test "$(vm_host p2)" = host3

echo "== the setting off"
check "ha-host-failures default" ctl host1 clusterctl config set ha-host-failures default
check "p1 starts now (on host3)" ctl host1 clusterctl vm start p1 --host host3
# vm start returns once the cluster placed the VM; its vmon opens its
# socket after faulting its RAM in. A move asked at once waits for it.
check "p4 (counter, 64 MiB) created" ctl host1 clusterctl vm create p4 \
	--guest "$GUESTS/counter" --args "n=0 interval_ms=100" --mem 64M
out=$(lab_exec host1 clusterctl vm start p4 --host host2 2>&1 &&
	lab_exec host1 clusterctl migrate p4 host3 2>&1) && rc=0 || rc=$?
echo "$out" | tail -1 | sed 's/^/  /'
check "p4 started and migrated at once: the move waited for its vmon" test "$rc" = 0
check "p4 is on host3" test "$(vm_host p4)" = host3

# Back on, the cluster would not survive losing host1 (h1 finds 384 MiB):
# no start is admitted, but a move, which takes no memory, goes on.
echo "== a cluster that would not survive a loss already"
check "ha-host-failures 1 again" ctl host1 clusterctl config set ha-host-failures 1
check "p3 (counter, 64 MiB) created" ctl host1 clusterctl vm create p3 \
	--guest "$GUESTS/counter" --args "n=0 interval_ms=100" --mem 64M
check "clusterctl status warns" status_has \
	"^warning: HA admission control (ha-host-failures 1): were host1 lost, HA VM h1 .*VM starts are refused"
check "even a 64 MiB VM is refused" fails host2 \
	"vm start: p3: refused by HA admission control (ha-host-failures 1): were host2 lost, HA VM h2 (640 MiB) could not restart: the most memory left on a host would be 320 MiB (host1)" \
	vm start p3
out=$(lab_exec host2 clusterctl migrate p2 host1 2>&1) && rc=0 || rc=$?
echo "$out" | tail -1 | sed 's/^/  /'
check "a move goes on (migrate p2 host1)" test "$rc" = 0
check "p2 is on host1" test "$(vm_host p2)" = host1
for v in h1 h2 p1 p2 p4; do
	ctl host1 clusterctl vm stop $v || true
done

# h1 alone on host1: either of host2 and host3 may go into maintenance
# (the other takes h1 were host1 lost), not both. Asked at once of their
# agents, each is admitted on the state before the other; the total order
# judges the second again and refuses it.
echo "== two hosts into maintenance at once, on two agents"
check "h1 starts on host1 again" ctl host1 clusterctl vm start h1 --host host1
maint_race() {
	local n h
	at_once host2 "host maintenance host2 enter" host3 "host maintenance host3 enter"
	n=$(for h in host2 host3; do host_mode $h; done | grep -c maintenance)
	[ $((rc1 + rc2)) = 1 ] && [ "$n" = 1 ] &&
		grep -q "host maintenance: host[23]: refused by HA admission control (ha-host-failures 1): with host[23] in maintenance and its VMs moved (none to move), were host1 lost, HA VM h1 (640 MiB) could not restart: no host would be left to take it" <<<"$said"
	local ok=$?
	for h in host2 host3; do ctl host1 clusterctl host maintenance $h exit || true; done
	return $ok
}
for i in 1 2 3 4 5; do
	check "maintenance race $i: one of host2 and host3 goes, the other is refused" maint_race
done
ctl host1 clusterctl vm stop h1 || true
finish
