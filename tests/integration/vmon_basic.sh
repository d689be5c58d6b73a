#!/bin/bash
# vmon runs the microguests: console output, exit codes, several vCPUs,
# crashes reported with exit reason, vCPU and RIP, CPU models, dirty modes.
. "$(dirname "$0")/lib.sh"
require_kvm

out=$("$VMON" run --guest "$FERRY_GUESTS/counter" --mem 64M --args "n=5 interval_ms=10")
check "counter prints 1..5 and exits 0" [ "$out" = "$(printf 'counter: %s\n' 1 2 3 4 5)" ]

out=$("$VMON" run --guest "$FERRY_GUESTS/counter" --mem 64M --vcpus 2 --args "n=3 interval_ms=10")
check "two vCPUs run concurrently" grep -qx "counter: 2 vcpus running concurrently" <<<"$out"
check "two vCPUs: counting still reaches 3" grep -qx "counter: 3" <<<"$out"

# On VMX and SVM the guest's exception lands on the monitor's stub
# (core/x86_exc.h) and is reported with its vector, frame and address. A
# host that does not deliver exceptions through the guest's IDT (PVM has
# its own event entry) still ends the guest with a triple fault.
if grep -qwE 'vmx|svm' /proc/cpuinfo; then idt_host=1; else idt_host=0; fi
crash_case() { # MODE MNEMONIC VCPUS CPU
	local mode=$1 mn=$2 vcpus=$3 cpu=$4 rc guest rip
	set +e
	"$VMON" run --guest "$FERRY_GUESTS/crash" --mem 64M --vcpus "$vcpus" \
		--args "mode=$mode cpu=$cpu" >"$TMP/crash.out" 2>"$TMP/crash.err"
	rc=$?
	set -e
	check "crash mode=$mode on vCPU $cpu exits 3 (got $rc)" [ "$rc" -eq 3 ]
	guest=$(sed -n 's/^crash: fault at \(0x[0-9a-f]*\).*/\1/p' "$TMP/crash.out")
	if grep -q "vCPU $cpu: guest exception" "$TMP/crash.err" || [ $idt_host = 1 ]; then
		check "crash mode=$mode: vCPU $cpu's exception is named $mn" \
			grep -q "vCPU $cpu: guest exception $mn (" "$TMP/crash.err"
		rip=$(sed -n 's/.* at RIP \(0x[0-9a-f]*\), CPL 3,.*/\1/p' "$TMP/crash.err")
		check "crash mode=$mode: RIP $rip is where the guest faulted ($guest)" \
			test -n "$rip" -a "$rip" = "$guest"
		if [ "$mode" = pf ]; then
			check "crash mode=pf: a user write to an unmapped page, address 0x10" \
				grep -q "write to an unmapped page, user mode) .*, address 0x10$" "$TMP/crash.err"
		fi
		return
	fi
	echo "   crash mode=$mode: this host ends the guest with a triple fault (no IDT delivery)"
	check "crash mode=$mode names the exit and the vCPU" \
		grep -q "vCPU $cpu: triple fault (KVM_EXIT_SHUTDOWN)" "$TMP/crash.err"
	if grep -q "RIP not known: this host's KVM (AMD SVM) resets" "$TMP/crash.err"; then
		echo "   crash mode=$mode: on this AMD host the RIP is lost (guest said $guest)"
	else
		rip=$(sed -n 's/.*at RIP \(0x[0-9a-f]*\).*/\1/p' "$TMP/crash.err")
		check "crash mode=$mode: RIP $rip is where the guest faulted ($guest)" \
			test -n "$rip" -a "$rip" = "$guest"
	fi
}
crash_case pf '#PF' 1 0
crash_case ud '#UD' 1 0
crash_case gp '#GP' 1 0
crash_case de '#DE' 1 0
# A second vCPU lands on its own stack (its own TSS).
crash_case pf '#PF' 2 1
crash_case ud '#UD' 4 3
# Guest code that uses a landing port itself is refused as an unknown port.
set +e
"$VMON" run --guest "$FERRY_GUESTS/crash" --mem 64M --args "mode=port" \
	>"$TMP/crash.out" 2>"$TMP/crash.err"
rc=$?
set -e
check "an out to a landing port at CPL 3 exits 3 (got $rc)" [ "$rc" -eq 3 ]
check "... and is an unhandled port, not an exception" \
	grep -q "vCPU 0: unhandled port I/O: out to port 0xce" "$TMP/crash.err"

"$VMON" run --guest "$FERRY_GUESTS/counter" --mem 64M --args "n=0 interval_ms=1000" \
	>"$TMP/sig.out" 2>"$TMP/sig.err" &
pid=$!; PIDS="$PIDS $pid"
# Once the guest runs (its first line): a slow host may still be setting up at 0.5 s.
wait_for "[ -s '$TMP/sig.out' ]" 30 || true
kill -TERM "$pid"
set +e; wait "$pid"; rc=$?; set -e
check "SIGTERM stops the VM with status 0 (got $rc)" [ "$rc" -eq 0 ]

# Every model either runs or is refused naming what KVM here lacks (KVM on
# PVM offers little more than x86-64-v1); host and v1 must always run.
for model in host x86-64-v1 x86-64-v2 x86-64-v3 x86-64-v4; do
	set +e
	out=$("$VMON" run --guest "$FERRY_GUESTS/counter" --mem 16M --cpu-model $model \
		--args "n=1 interval_ms=1" 2>"$TMP/model.err")
	rc=$?
	set -e
	if [ $rc -eq 0 ]; then
		check "CPU model $model runs" [ "$out" = "counter: 1" ]
	else
		check "CPU model $model is refused with the missing features" \
			grep -q "CPU model $model needs features this host lacks: [a-z0-9_,]*$" "$TMP/model.err"
		check "host and x86-64-v1 are never refused ($model)" \
			[ "$model" != host ] && [ "$model" != x86-64-v1 ]
		echo "   $(cat "$TMP/model.err")"
	fi
done

set +e
"$VMON" run --guest "$FERRY_GUESTS/counter" --mem 16M --cpu-model x86-64-v1 \
	--cpuid-hide sse2,cmov --args "n=1" >/dev/null 2>"$TMP/model.err"
rc=$?
set -e
check "x86-64-v1 on a host without sse2, cmov is refused (rc $rc)" [ "$rc" -eq 2 ]
check "the refusal names exactly the missing features" \
	grep -q "CPU model x86-64-v1 needs features this host lacks: cmov,sse2$" "$TMP/model.err"

# vmon cpu: what KVM here offers, as the refusals above name it.
cpu=$("$VMON" cpu)
echo "$cpu" | sed 's/^/   /'
check "vmon cpu lists the features KVM offers (sse2 among them)" \
	grep -q "^features: .*\bsse2\b" <<<"$cpu"
check "host and x86-64-v1 run" bash -c 'grep -qx "model host: runs" <<<"$0" &&
	grep -qx "model x86-64-v1: runs" <<<"$0"' "$cpu"
check "every model vmon run refuses, vmon cpu says lacks something" bash -c '
	for m in x86-64-v2 x86-64-v3 x86-64-v4; do
		if ! "$1" run --guest "$2/counter" --mem 16M --cpu-model $m --args "n=1" \
			>/dev/null 2>&1; then grep -q "^model $m: lacks " <<<"$0" || exit 1; fi
	done' "$cpu" "$VMON" "$FERRY_GUESTS"
check "with --cpuid-hide sse2,cmov, x86-64-v1 lacks exactly them" \
	bash -c '"$0" cpu --cpuid-hide sse2,cmov | grep -qx "model x86-64-v1: lacks cmov,sse2"' "$VMON"
set +e
"$VMON" cpu --cpuid-hide warpdrive >/dev/null 2>"$TMP/cpu.err"
rc=$?
set -e
check "an unknown feature is a usage error (rc $rc)" \
	bash -c '[ "$0" -eq 2 ] && grep -q "unknown CPU feature .warpdrive." "$1"' "$rc" "$TMP/cpu.err"

# check=1: the guest reads every page before it writes it again, so a write
# that tracking's re-protection lost would end it with exit code 9.
for mode in bitmap ring; do
	out=$("$VMON" run --guest "$FERRY_GUESTS/dirtier" --mem 64M --dirty-mode $mode \
		--dirty-sample-ms 100 --args "ws=8M secs=1 check=1")
	check "dirtier runs with --dirty-mode $mode, every page as it left it" [ $? -eq 0 ]
done

# That check is no formality: a word changed in guest RAM behind the guest's
# back (through /proc/PID/mem, at the memfd's mapping) is caught.
"$VMON" run --guest "$FERRY_GUESTS/dirtier" --mem 64M --args "ws=4M rate=20000 check=1" \
	>"$TMP/chk.out" 2>"$TMP/chk.err" &
cpid=$!
wait_for "grep -q 'dirtier: filled' '$TMP/chk.out'" 10 || true
heap=$(sed -n 's/^dirtier: ws=.* at \(0x[0-9a-f]*\),.*/\1/p' "$TMP/chk.out")
python3 - "$cpid" "${heap:-0}" <<'PY'
import sys
pid, heap = sys.argv[1], int(sys.argv[2], 16)
base = next(int(l.split("-")[0], 16) for l in open("/proc/%s/maps" % pid) if "ferry-guest-ram" in l)
with open("/proc/%s/mem" % pid, "r+b") as f:
    f.seek(base + heap + 10 * 4096 + 4088)   # page 10's last word: only the fill
    f.write(b"\x01\x02\x03\x04\x05\x06\x07\x08")
PY
set +e
wait_for "! kill -0 $cpid" 10
wait "$cpid"; rc=$?
set -e
check "a word changed behind the checking dirtier's back ends it with 9 (rc $rc)" [ "$rc" -eq 9 ]
check "  ...and it names the word" grep -q "CHECK FAILED: word 0x[0-9a-f]*ff8 holds 0x807060504030201" "$TMP/chk.out"

# Huge pages: reserve 2 MiB pages for a 64 MiB guest, then give them back.
hp=/proc/sys/vm/nr_hugepages
old_hp=$(cat $hp)
if echo $((old_hp + 40)) > $hp 2>/dev/null && [ "$(cat $hp)" -ge $((old_hp + 32)) ]; then
	out=$("$VMON" run --guest "$FERRY_GUESTS/counter" --mem 64M --hugepages --args "n=1" 2>&1)
	check "huge pages: counter runs on 2 MiB pages ($out)" [ "$out" = "counter: 1" ]
	echo "$old_hp" > $hp
	set +e
	"$VMON" run --guest "$FERRY_GUESTS/counter" --mem 64M --hugepages --args "n=1" \
		>/dev/null 2>"$TMP/huge.err"
	rc=$?
	set -e
	if [ "$old_hp" -lt 32 ]; then
		check "no huge pages reserved: refused with a hint (rc $rc)" \
			grep -q "nr_hugepages" "$TMP/huge.err"
	fi
else
	echo "$old_hp" > $hp 2>/dev/null || true
	echo "note: cannot reserve huge pages here; --hugepages not exercised"
fi

finish
