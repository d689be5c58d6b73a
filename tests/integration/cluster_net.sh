#!/bin/bash
# NICs in the cluster (docs/networking.md) on a 3-node lab: every node has
# a bridge vmbr0 on one VM segment (tools/lab), whose peer 10.99.0.1 pings
# the VMs. A netecho VM with a NIC on vmbr0 answers; migrated by
# clusterctl, it answers from the new host, whose port the segment's
# switch learned the MAC on. A host that loses vmbr0 reports it (the agent
# re-reads its bridges) and is refused as a target, naming the bridge; the
# bridge back, it is a target again.
. "$(dirname "$0")/lab_lib.sh"
GUESTS=${FERRY_GUESTS:-$LAB_SRC/build/guests}
trap 'lab_at_exit' EXIT
IP=10.99.0.20

sw() { ip netns exec "$LAB_NAME-sw" "$@"; }
vm_host() { ctl_json "$1" vm show web 2>/dev/null | json_get 'j["vm"].get("host", "")'; }
vm_mac() { lab_exec host1 clusterctl vm show web | sed -n 's/^net 0: *bridge=vmbr0,mac=//p'; }
# the port of the segment's switch the VM's MAC is learned on (v1, v2, v3)
port_of() { sw bridge fdb show br vmnet | awk -v m="$1" '$1 == m && !/permanent/ { print $3; exit }'; }
answers() { sw ping -c 2 -i 0.2 -W 2 "$IP" >/dev/null; }
bridges_of() { lab_exec host1 clusterctl host show "$1" | sed -n 's/^bridges: *//p'; }
bridges_are() { [ "$(bridges_of "$1")" = "$2" ]; }

lab_up 3

echo "== a VM with a NIC"
for h in host1 host2 host3; do
	check "host show lists $h's vmbr0" bridges_are $h vmbr0
done
check "web (netecho, --net bridge=vmbr0) created" ctl host1 clusterctl vm create web \
	--guest "$GUESTS/netecho" --args "ip=$IP" --mem 16M --net bridge=vmbr0
MAC=$(vm_mac)
check "its MAC was filled in ($MAC)" [ -n "$MAC" ]
check "web started on host1" ctl host1 clusterctl vm start web --host host1
check "it answers ping from the segment" wait_for 30 "web answering" answers
check "the switch learned its MAC on host1's port" [ "$(port_of "$MAC")" = v1 ]

echo "== migrated, it answers from host2"
out=$(lab_exec host3 clusterctl migrate web host2 2>&1) && rc=0 || rc=$?
echo "$out" | tail -2 | sed 's/^/  /'
check "migrate web host2 succeeds" [ "$rc" = 0 ]
check "the switch moved the MAC to host2's port at once ($(port_of "$MAC"))" [ "$(port_of "$MAC")" = v2 ]
check "it answers from host2" answers
check "placed on host2" [ "$(vm_host host1)" = host2 ]

echo "== a host without the bridge"
ip -n "$LAB_NAME-host3" link del vmbr0
check "host3 reports that it has no bridge left" wait_for 15 "host3's bridges" \
	bridges_are host3 "none (no VM with a NIC can run here)"
check "a migration there is refused, naming the bridge" \
	fails host1 "migrate: web: host3 has no bridge vmbr0 for net0" migrate web host3
check "web answers on, from host2" answers
ip -n "$LAB_NAME-host3" link add vmbr0 type bridge
ip -n "$LAB_NAME-host3" link set uplink master vmbr0
ip -n "$LAB_NAME-host3" link set vmbr0 up
check "host3 reports vmbr0 again" wait_for 15 "host3's bridges" bridges_are host3 vmbr0
out=$(lab_exec host1 clusterctl migrate web host3 2>&1) && rc=0 || rc=$?
check "then it may go there" [ "$rc" = 0 ]
check "it answers from host3" answers
check "the MAC is on host3's port ($(port_of "$MAC"))" [ "$(port_of "$MAC")" = v3 ]
check "web stopped" ctl host1 clusterctl vm stop web
finish
