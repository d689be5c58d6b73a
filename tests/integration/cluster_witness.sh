#!/bin/bash
# A lab of three witnesses (clusterd --witness): agents that need no KVM
# and run no VM, so this runs on any Linux with corosync. What it shows is
# the cluster without guests: witnesses take no VM and say so; the
# cluster-wide settings (clusterctl config) are replicated, checked all or
# none, logged, and survive an agent's restart; a host that is down and
# empty can be removed (and joins again when it comes back); mutual TLS
# refuses a foreign or revoked certificate; garbage on the socket harms
# nothing.
LAB_NO_KVM=1 # witnesses only: no guest runs here
. "$(dirname "$0")/lab_lib.sh"
TMPD=$(mktemp -d /tmp/ferry-witness-test.XXXXXX)
FULL_MOUNTED=0
# host2's directory may be a tmpfs of this test's (a full disk, below): the
# lab's teardown kills the processes, which lets it go.
trap 'rc=$?; set +e; if [ $FULL_MOUNTED = 1 ]; then lab_down >/dev/null 2>&1
	umount "$LAB_DIR/host2"; fi; rm -rf "$TMPD"; (exit $rc); lab_at_exit' EXIT

# ctl, ctl_json, json_get, fails: lab_lib.sh
seq_of() { ctl_json "$1" status | json_get 'j["state"]["seq"]'; }

lab_up 3 --witness host1 --witness host2 --witness host3

echo "== witnesses"
check "every node sees 3 witnesses" bash -c "[ \"\$('$LAB_TOOL' exec --name '$LAB_NAME' host2 \
	clusterctl host list | grep -c ' online  witness ')\" = 3 ]"
check "host show says it runs no VMs" bash -c "'$LAB_TOOL' exec --name '$LAB_NAME' host1 \
	clusterctl host show host3 | grep -q 'witness (runs no VMs)'"
# Only the state holds it: a witness never runs it, so any file will do.
check "vm create" ctl host1 clusterctl vm create vm1 --guest /bin/true --mem 64M
check "vm start on a witness is refused, named" \
	fails host2 "vm start: vm1: host host1 is a witness: it runs no VMs" vm start vm1 --host host1
check "vm start with no host finds none, saying why" \
	fails host3 "vm start: vm1: no host can run it: host host1 is a witness" vm start vm1
ha_is() { lab_exec "$1" clusterctl vm show vm1 2>/dev/null | grep -q "^ha: *$2"; }
check "vm set vm1 --ha on (stopped)" ctl host1 clusterctl vm set vm1 --ha on
check "host2 sees it HA" ha_is host2 yes
check "host3 sees it HA" ha_is host3 yes
check "the event log says so" lab_events_have host3 "vm vm1: ha on"
set_usage() { local out rc; out=$(lab_exec host2 clusterctl vm set vm1 2>&1) && rc=0 || rc=$?
	echo "  clusterctl vm set vm1: exit $rc: $out" | head -1; [ "$rc" = 2 ] &&
	grep -q "vm set: expected NAME \[--ha on|off\]" <<<"$out"; }
check "vm set with nothing to set: a usage error (exit 2)" set_usage
check "vm set on an unknown VM is refused" fails host2 "vm set: nope: no such VM" vm set nope --ha on
check "vm set vm1 --ha off" ctl host2 clusterctl vm set vm1 --ha off
check "and it is off" ha_is host1 no
prio_is() { lab_exec "$1" clusterctl vm show vm1 2>/dev/null | grep -q "^priority: *$2"; }
check "a new VM's priority is medium" prio_is host2 medium
check "vm set vm1 --priority high" ctl host3 clusterctl vm set vm1 --priority high
check "host1 sees it high" prio_is host1 high
check "the event log says so" lab_events_have host2 "vm vm1: priority high"
prio_usage() { local out rc; out=$(lab_exec host2 clusterctl vm set vm1 --priority urgent 2>&1) &&
	rc=0 || rc=$?; [ "$rc" = 2 ] && grep -q "vm set: expected NAME \[--ha on|off\]" <<<"$out"; }
check "--priority urgent: a usage error (exit 2)" prio_usage

echo "== migrate-cancel without a migration"
check "cancel on a VM that is not migrating is refused" \
	fails host1 "migrate-cancel: vm1: no migration in flight" migrate-cancel vm1
check "cancel on an unknown VM is refused" fails host2 "migrate-cancel: nope: no such VM" \
	migrate-cancel nope
cancel_usage() { local out rc; out=$(lab_exec host2 clusterctl migrate-cancel 2>&1) && rc=0 ||
	rc=$?; [ "$rc" = 2 ] && grep -q "migrate-cancel: expected VM" <<<"$out"; }
check "migrate-cancel without a VM: a usage error (exit 2)" cancel_usage

echo "== NICs in the state"
check "vm create with a NIC" ctl host1 clusterctl vm create web --guest /bin/true --mem 64M \
	--net bridge=vmbr0
net_is() { lab_exec "$1" clusterctl vm show web 2>/dev/null | grep -q "^net 0: *bridge=vmbr0,mac=02:fe:"; }
check "host3 sees its NIC, the MAC filled in" net_is host3
mac=$(lab_exec host2 clusterctl vm show web | sed -n 's/^net 0: *bridge=vmbr0,mac=//p')
check "a second VM may not take that MAC ($mac)" \
	fails host2 "vm create: web2: net0: MAC $mac is taken by web's net0" \
	vm create web2 --guest /bin/true --mem 64M --net "bridge=br1,mac=$mac"
net_usage() { local out rc; out=$(lab_exec host2 clusterctl vm create w3 --guest /bin/true \
	--mem 64M --net vmbr0 2>&1) && rc=0 || rc=$?
	echo "  clusterctl vm create --net vmbr0: exit $rc: $out" | head -1; [ "$rc" = 2 ] &&
	grep -q "is not KEY=VALUE" <<<"$out"; }
check "--net without bridge=: a usage error (exit 2)" net_usage
check "a witness says it has no bridge" bash -c "'$LAB_TOOL' exec --name '$LAB_NAME' host1 \
	clusterctl host show host2 | grep -q '^bridges: *none'"
check "vm delete web" ctl host3 clusterctl vm delete web

echo "== cluster settings"
check "config set on host2" ctl host2 clusterctl config set migration-bandwidth-mbps 2000 \
	max-migrations-per-host 1
for h in host1 host3; do
	check "$h has the cap" wait_for 5 "the cap on $h" lab_setting_is $h migration-bandwidth-mbps "2000 set"
	check "$h has the concurrency" wait_for 5 "the limit on $h" lab_setting_is $h max-migrations-per-host "1 set"
done
seq=$(seq_of host1)
check "a value out of range is refused, named" \
	fails host1 "config: max-migrations: 5000 is not in 1..1024" config set link-mbps 900 max-migrations 5000
check "an unknown setting is refused" fails host3 "no such setting 'bandwidth'" config set bandwidth 5
check "a key set twice is refused" fails host2 "link-mbps is set twice" config set link-mbps 1 link-mbps 2
check "and none changed anything" lab_setting_is host3 link-mbps "25000 default"
check "nor the state's seq" test "$(seq_of host2)" = "$seq"
out=$(lab_exec host1 clusterctl config set link-mbps 0 2>&1) && rc=0 || rc=$?
check "config set KEY 0 is a usage error ($rc)" bash -c '[ "$0" = 2 ] && grep -q "default" <<<"$1"' "$rc" "$out"
out=$(lab_exec host1 clusterctl config set link-mbps 2>&1) && rc=0 || rc=$?
check "config set KEY with no value is a usage error ($rc)" test "$rc" = 2
check "the events name the change" \
	lab_events_have host3 "config: migration-bandwidth-mbps set to 2000 Mbit/s; max-migrations-per-host set to 1"
check "text output marks it set" bash -c "'$LAB_TOOL' exec --name '$LAB_NAME' host1 clusterctl config show |
	grep -q '^migration-bandwidth-mbps *2000 Mbit/s *(set)'"

echo "== an agent restarted keeps them"
lab kill host3 --agent
check "host3's agent is back" lab start host3
check "host3 still has the cap" wait_for 10 "the cap on host3" lab_setting_is host3 migration-bandwidth-mbps "2000 set"
check "config set back to the default" ctl host3 clusterctl config set migration-bandwidth-mbps default
check "host1 has no cap again" wait_for 5 "no cap on host1" lab_setting_is host1 migration-bandwidth-mbps "0 default"
check "and the event says so" lab_events_have host2 "config: migration-bandwidth-mbps back to its default (none)"

echo "== a host that left for good"
host_down() { lab_exec "$1" clusterctl host list | grep -q "^$2 *down "; }
hosts_are() { [ "$(ctl_json "$1" host list | json_get 'len(j["state"]["hosts"])')" = "$2" ]; }
check "removing an online host is refused" fails host1 "host remove: host2 is online" host remove host2
check "removing the agent's own host is refused" fails host1 "host remove: host1 is online" host remove host1
check "removing an unknown host is refused" fails host1 "no such host host7" host remove host7
lab kill host3
check "host1 sees host3 down" wait_for 10 "host3 down" host_down host1 host3
check "host remove host3" ctl host1 clusterctl host remove host3
check "host2 has 2 hosts left" wait_for 5 "2 hosts" hosts_are host2 2
check "the event names it" lab_events_have host2 "host host3 removed"
check "host3 started again" lab start host3
check "and joins again (as docs/cluster.md says)" wait_for 20 "3 hosts" hosts_are host1 3
check "still a witness (lab start keeps --witness)" bash -c "'$LAB_TOOL' exec --name '$LAB_NAME' host1 \
	clusterctl host list | grep -q '^host3 .* witness '"

echo "== TLS"
admin="$LAB_DIR/ca/admin"
addr=$(lab_exec host1 sh -c 'ip -4 -o addr show dev eth0' | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p')
check "clusterctl over mutual TLS" ctl host2 clusterctl --connect "$addr" --tls-dir "$admin" status
check "config show over mutual TLS" ctl host2 clusterctl --connect "$addr" --tls-dir "$admin" config show
"$FERRY_BIN/clusterctl" cluster init --dir "$TMPD/other-ca" --name other >/dev/null
out=$(lab_exec host2 clusterctl --connect "$addr" --tls-dir "$TMPD/other-ca/admin" status 2>&1) && rc=0 || rc=$?
echo "  another CA: $out"
check "a server certificate from another CA is refused" test "$rc" = 1
# Our CA to check the agent, a certificate from another CA to show it.
mkdir -p "$TMPD/mixed"
cp "$admin/ca.pem" "$TMPD/mixed/ca.pem"
cp "$TMPD/other-ca/admin/cert.pem" "$TMPD/other-ca/admin/key.pem" "$TMPD/mixed/"
out=$(lab_exec host2 clusterctl --connect "$addr" --tls-dir "$TMPD/mixed" config set link-mbps 1 2>&1) && rc=0 || rc=$?
echo "  client from another CA: $out"
check "a client certificate from another CA is refused" test "$rc" = 1
check "and changed nothing" lab_setting_is host1 link-mbps "25000 default"
"$FERRY_BIN/clusterctl" node add intruder 10.0.0.99 --dir "$LAB_DIR/ca" >/dev/null
check "a node certificate of the cluster is accepted" ctl host2 clusterctl --connect "$addr" \
	--tls-dir "$LAB_DIR/ca/nodes/intruder" status
check "node revoke" ctl host3 clusterctl node revoke intruder --dir "$LAB_DIR/ca"
out=$(lab_exec host2 clusterctl --connect "$addr" --tls-dir "$LAB_DIR/ca/nodes/intruder" status 2>&1) && rc=0 || rc=$?
echo "  revoked: $out"
check "a revoked certificate is refused" bash -c "[ $rc = 1 ] && grep -q revoked <<<'$out'"

echo "== a full disk"
# host2's agent directory moves onto a small tmpfs, which then fills up: its
# agent cannot save the state. The cluster goes on (the others save it, and
# host2 holds it in memory); clusterctl warns, naming the cause; the file on
# host2 stays as it was; once there is room, the agent saves it unprompted
# (corosync keeps its files where they were: only the agent restarts).
host_show_has() { lab_exec "$1" clusterctl host show "$2" 2>/dev/null | grep -q -- "$3"; }
status_warns() { lab_exec "$1" clusterctl status 2>/dev/null | grep -q -- "$2"; }
seq_same() { [ "$(seq_of "$1")" = "$(seq_of "$2")" ]; }
no_warning() { ! lab_exec "$1" clusterctl status 2>/dev/null | grep -q '^warning: host2'; }
no_not_saved() { ! lab_exec "$1" clusterctl host show host2 2>/dev/null | grep -q 'NOT SAVED'; }
lab kill host2 --agent
mkdir -p "$TMPD/host2.save"
cp -a "$LAB_DIR/host2/." "$TMPD/host2.save/"
if ! mount -t tmpfs -o size=4m tmpfs "$LAB_DIR/host2" 2>"$TMPD/mount.err"; then
	echo "************************************************************"
	echo "NOT RUN: a full disk: cannot mount a tmpfs: $(cat "$TMPD/mount.err")"
	echo "************************************************************"
	check "host2's agent is back" lab start host2
else
	FULL_MOUNTED=1
	cp -a "$TMPD/host2.save/." "$LAB_DIR/host2/"
	check "host2's agent is back, its directory on a 4 MiB tmpfs" lab start host2
	check "host2 synced" wait_for 10 "host2 at host1's seq" seq_same host2 host1
	cksum_before=$(cksum <"$LAB_DIR/host2/state.pb")
	dd if=/dev/zero of="$LAB_DIR/host2/filler" bs=64k 2>/dev/null || true
	echo "  host2's directory: $(df -h --output=avail "$LAB_DIR/host2" | tail -1 | tr -d ' ') free"
	check "a change goes through with host2's disk full" \
		ctl host1 clusterctl config set link-mbps 40000
	check "host2 applied it" wait_for 5 "host2 has it" lab_setting_is host2 link-mbps "40000 set"
	check "host show on host3 says host2's state is not saved, and why" wait_for 10 \
		"NOT SAVED on host3" host_show_has host3 host2 "NOT SAVED for .*No space left on device"
	lab_exec host1 clusterctl status 2>/dev/null | grep "^warning:" | sed 's/^/  /'
	check "clusterctl status warns on host1" status_warns host1 \
		"^warning: host2 has not saved the cluster state .*No space left on device"
	check "host2's state file is as it was" test "$(cksum <"$LAB_DIR/host2/state.pb")" = "$cksum_before"
	check "and no half-written file is left" test ! -e "$LAB_DIR/host2/state.pb.tmp"
	rm -f "$LAB_DIR/host2/filler"
	check "room again: host2 saves the state unprompted" wait_for 10 "warning gone" \
		no_warning host1
	check "host show says nothing any more" no_not_saved host3
	check "host2's file now has the change" test "$(cksum <"$LAB_DIR/host2/state.pb")" != "$cksum_before"
	seq=$(seq_of host2)
	lab kill host2 --agent
	check "host2's agent restarts" lab start host2
	check "from its file, at seq $seq" grep -q "loaded the cluster state at seq $seq\$" \
		"$LAB_DIR/host2/clusterd.log"
	check "with the change" lab_setting_is host2 link-mbps "40000 set"
	# The revocation list alone cannot be written (a directory where its
	# temporary file goes): the same warning, naming it.
	mkdir "$LAB_DIR/host2/tls/revoked.tmp"
	check "config set back" ctl host1 clusterctl config set link-mbps default
	check "host show says host2's revocation list is not written" wait_for 10 \
		"NOT SAVED (revoked) on host3" host_show_has host3 host2 \
		"NOT SAVED for .*revocation list .*tls/revoked: write: Is a directory"
	# host3 fails too, from the next change on: two of the three online
	# hosts then cannot save, and a change to what the cluster keeps would
	# be on one disk at most. It is refused, saying why, until one saves.
	mkdir "$LAB_DIR/host3/tls/revoked.tmp"
	check "a change with one host unsaved goes through" \
		ctl host2 clusterctl config set link-mbps 30000
	check "host3 cannot save it either" wait_for 10 "NOT SAVED (host3) on host1" \
		host_show_has host1 host3 "NOT SAVED for .*revocation list"
	check "config set is refused now, naming both" fails host1 \
		"refused: the cluster state cannot be saved on 2 of the 3 online hosts: host2 (" \
		config set link-mbps 20000
	check "clusterctl status says so" status_warns host2 \
		"^warning: 2 of the 3 online hosts cannot save the cluster state: changes .* are refused"
	check "so is vm create" fails host3 "were the whole cluster to restart, this change would be lost" \
		vm create vm9 --guest /bin/true --mem 64M
	check "vm9 was not created" fails host1 "no such VM" vm show vm9
	check "the setting is as it was" lab_setting_is host2 link-mbps "30000 set"
	rmdir "$LAB_DIR/host3/tls/revoked.tmp"
	check "host3 saves again: the change goes through" wait_for 15 "config set accepted" \
		ctl host1 clusterctl config set link-mbps default
	rmdir "$LAB_DIR/host2/tls/revoked.tmp"
	check "written once it can be" wait_for 10 "warning gone" no_warning host1
fi

echo "== malformed requests"
python3 - "$LAB_DIR/host1/clusterd.sock" <<'PY'
import socket, struct, sys
for payload in (b"\x00\x00\x00\x05hello", b"\xff\xff\xff\xff", b"\x00\x00\x00\x03\x08\x96", b"\x00\x00",
                # config_set with one item whose key is not a name
                b"\x00\x00\x00\x0a\xba\x01\x07\x0a\x05\x0a\x03a;b"):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sys.argv[1])
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    try:
        s.recv(4096)
    except OSError:
        pass
    s.close()
PY
check "the agent survives garbage on its socket" ctl host1 clusterctl status
check "and the settings are as they were" lab_setting_is host1 max-migrations-per-host "1 set"
finish
