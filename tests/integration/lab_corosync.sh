#!/bin/bash
# tools/lab with corosync alone: 3 nodes come up quorate; a killed node
# leaves the others' view within seconds; losing a second one loses quorum;
# restarting both brings the cluster back; after the whole cluster was
# down, two nodes wait for the third (wait_for_all) unless the operator
# lets them go on; `lab down` leaves nothing behind.
LAB_NO_KVM=1 # corosync alone: no agents, no guests
. "$(dirname "$0")/lab_lib.sh"

ms() { fmt_ms "$1"; }

# ---- up --------------------------------------------------------------------
t=$(date +%s%3N)
lab_up 3 --no-agents
UP_MS=$(($(date +%s%3N) - t))
echo "timing: lab up (3 nodes, quorate) took $(ms $UP_MS)"
for h in host1 host2 host3; do
	check "$h quorate with 3 members" lab_sees $h 3
done
check "host1's address is SUBNET.11" lab_exec host1 sh -c \
	"ip -4 -o addr show dev eth0 | grep -q ' $LAB_SUBNET.11/24 '"
check "no default route in host1" test -z "$(lab_exec host1 ip route show default)"
check "knet crypto is openssl aes256/sha256" lab_exec host1 sh -c \
	'corosync-cmapctl totem.crypto_model | grep -q "= openssl" &&
	 corosync-cmapctl totem.crypto_cipher | grep -q "= aes256" &&
	 corosync-cmapctl totem.crypto_hash | grep -q "= sha256"'
check "lab up refuses a lab that is up" bash -c "! '$LAB_TOOL' up --name '$LAB_NAME' --nodes 1 --no-agents"
# An IPC client that stays connected (its libqb rings live in /dev/shm).
# lab down must kill it and delete them (a qb-SERVER-CLIENT-N-XXXX directory).
lab_exec host1 sh -c 'sleep 600 | corosync-cmapctl -T runtime.totem' >/dev/null 2>&1 &
CLIENT=$!

# ---- failure detection -----------------------------------------------------
t=$(date +%s%3N)
lab kill host3 --corosync
if wait_for 10 "host1 and host2 still see host3" \
	sh -c "'$LAB_TOOL' exec host1 corosync-quorumtool -l | grep -q host3 && exit 1
	       '$LAB_TOOL' exec host2 corosync-quorumtool -l | grep -q host3 && exit 1; exit 0"; then
	DETECT_MS=$(($(date +%s%3N) - t))
	ok "host1 and host2 saw host3 leave"
	echo "timing: failure detection (SIGKILL of host3's corosync to 2 members) $(ms $DETECT_MS)"
else
	bad "host1 and host2 saw host3 leave within 10 s"
fi
check "host1 quorate with 2 members" lab_sees host1 2
check "host2 quorate with 2 members" lab_sees host2 2

not_quorate() { # HOST: corosync answers and says it is not quorate
	local out rc=0
	out=$(lab_exec "$1" corosync-quorumtool -s 2>&1) || rc=$?
	[ $rc -ne 0 ] && grep -q '^Quorate: *No' <<<"$out" && grep -q 'Activity blocked' <<<"$out"
}
t=$(date +%s%3N)
lab kill host2 --corosync
if wait_for 10 "host1 is still quorate" not_quorate host1; then
	LOSS_MS=$(($(date +%s%3N) - t))
	ok "host1 lost quorum (Activity blocked)"
	echo "timing: quorum loss (SIGKILL of host2's corosync to not quorate) $(ms $LOSS_MS)"
else
	bad "host1 lost quorum within 10 s"
fi

# ---- back ------------------------------------------------------------------
t=$(date +%s%3N)
lab start host2 host3
if wait_for 20 "the 3 nodes are not all quorate with 3 members again" \
	sh -c "for h in host1 host2 host3; do
	         '$LAB_TOOL' exec \$h corosync-quorumtool -s | grep -q '^Total votes: *3' || exit 1
	       done"; then
	BACK_MS=$(($(date +%s%3N) - t))
	ok "all 3 nodes quorate again"
	echo "timing: restart of host2 and host3 to 3 votes $(ms $BACK_MS)"
else
	bad "all 3 nodes quorate again within 20 s"
fi
for h in host1 host2 host3; do check "$h quorate with 3 members" lab_sees $h 3; done
lab status

# ---- the whole cluster down: no majority goes on without the third -------
# wait_for_all: after all were down, two nodes (which may hold an older
# state than the third) stay without quorum until the third is back, or
# until the operator says it is gone for good (corosync-quorumtool -e).
lab kill host1 host2 host3 --corosync
check "lab start of 2 of 3 after a full stop returns" lab start host1 host2
check "host1 sees host2" lab_exec host1 sh -c "corosync-quorumtool -l | grep -q host2"
sleep 2 # well past a membership round (token 1 s): quorum would have come
for h in host1 host2; do
	check "$h is not quorate (waiting for all)" not_quorate $h
done
check "host1 says it waits for all" lab_exec host1 sh -c \
	"corosync-cmapctl -g runtime.votequorum.wait_for_all_status | grep -q '= 1\$'"
lab start host3
# lab start waits for host3 alone; the others may take a moment longer.
for h in host1 host2 host3; do
	check "$h quorate with 3 members after host3 came back" \
		wait_for 5 "$h does not see 3" lab_sees $h 3
done
lab kill host1 host2 host3 --corosync
lab start host1 host2
check "the operator lets 2 go on: corosync-quorumtool -e 2" lab_exec host1 corosync-quorumtool -e 2
for h in host1 host2; do
	check "$h quorate with 2 members" wait_for 5 "$h is not quorate" lab_sees $h 2
done
lab start host3

# ---- down ------------------------------------------------------------------
PIDS=""
for ns in $(ip netns list | awk '{print $1}' | grep -E "^$LAB_NAME-(sw|host[1-9])\$"); do
	PIDS="$PIDS $(ip netns pids "$ns" | tr '\n' ' ')"
done
for f in "$LAB_DIR"/host*/corosync.pid; do PIDS="$PIDS $(cat "$f")"; done
echo "lab processes before down:$PIDS"
t=$(date +%s%3N)
lab_down
echo "timing: lab down $(ms $(($(date +%s%3N) - t)))"
wait "$CLIENT" 2>/dev/null || true
check "no namespace of the lab is left" \
	test -z "$(ip netns list | awk '{print $1}' | grep -E "^$LAB_NAME-" || true)"
alive=""
for p in $PIDS; do
	st=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null || true)
	[ -n "$st" ] && [ "${st%% *}" != Z ] && alive="$alive $p"
done
check "no lab process is left (${alive:-none})" test -z "$alive"
left=""
for p in $PIDS; do
	for f in /dev/shm/qb-*-"$p"-* /dev/shm/qb-"$p"-*; do
		[ -e "$f" ] && left="$left $f"
	done
done
check "no /dev/shm/qb file of the lab is left (${left:-none})" test -z "$left"
check "the lab directory is gone" test ! -e "$LAB_DIR"
check "lab down again is harmless" lab_down

TOTAL_MS=$(lab_elapsed_ms)
echo "timing: up $(ms $UP_MS), detection $(ms ${DETECT_MS:-0}), quorum loss $(ms ${LOSS_MS:-0}), back $(ms ${BACK_MS:-0}), total $(ms $TOTAL_MS)"
check "the test took under 60 s" test "$TOTAL_MS" -lt 60000
finish
