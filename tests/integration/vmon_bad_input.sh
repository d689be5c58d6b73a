#!/bin/bash
# Bad input: one line on stderr that says what is wrong, exit status 2,
# nothing started. Every case is refused before /dev/kvm is opened, so
# this runs on hosts without KVM too.
. "$(dirname "$0")/lib.sh"

G="$FERRY_GUESTS/counter"
printf 'this is not an ELF file\n' > "$TMP/text"
head -c 100 "$G" > "$TMP/truncated"
: > "$TMP/empty"

expect_usage_error() { # DESCRIPTION PATTERN ARGS...
	local what=$1 pattern=$2 rc lines; shift 2
	set +e
	"$VMON" "$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	set -e
	lines=$(wc -l <"$TMP/err")
	if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && grep -q -- "$pattern" "$TMP/err" \
	   && [ ! -s "$TMP/out" ]; then
		ok "$what: $(cat "$TMP/err")"
	else
		bad "$what: rc=$rc lines=$lines stderr=[$(cat "$TMP/err")] stdout=[$(head -c 200 "$TMP/out")]"
	fi
}

expect_usage_error "no command" "missing command"
expect_usage_error "unknown command" "unknown command 'fly'" fly
expect_usage_error "missing --guest" "needs --guest" run --mem 64M
expect_usage_error "missing --mem" "needs --mem" run --guest "$G"
expect_usage_error "missing file" "No such file or directory" run --guest "$TMP/nope" --mem 64M
expect_usage_error "directory as guest" "not a regular file" run --guest "$TMP" --mem 64M
expect_usage_error "non-ELF guest" "guest $TMP/text: " run --guest "$TMP/text" --mem 64M
expect_usage_error "empty guest" "guest $TMP/empty: " run --guest "$TMP/empty" --mem 64M
expect_usage_error "truncated ELF" "guest $TMP/truncated: " run --guest "$TMP/truncated" --mem 64M
expect_usage_error "--mem 0" "memory size 0 B is outside" run --guest "$G" --mem 0
expect_usage_error "--mem absurd" "outside" run --guest "$G" --mem 100T
expect_usage_error "--mem above host RAM" "exceeds this host's memory" run --guest "$G" --mem 120G
expect_usage_error "--mem overflow" "not a size" run --guest "$G" --mem 99999999999999999999G
expect_usage_error "--mem not a size" "not a size" run --guest "$G" --mem lots
expect_usage_error "--mem not 2 MiB aligned" "not a multiple of 2 MiB" run --guest "$G" --mem 9M
expect_usage_error "--vcpus 0" "not a number in 1..32" run --guest "$G" --mem 64M --vcpus 0
expect_usage_error "--vcpus 33" "not a number in 1..32" run --guest "$G" --mem 64M --vcpus 33
expect_usage_error "--vcpus garbage" "not a number" run --guest "$G" --mem 64M --vcpus two
expect_usage_error "unknown CPU model" "unknown CPU model 'pentium'" run --guest "$G" --mem 64M --cpu-model pentium
expect_usage_error "unknown hidden feature" "cpuid-hide" run --guest "$G" --mem 64M --cpuid-hide warpdrive
expect_usage_error "bad dirty mode" "not ring, bitmap or auto" run --guest "$G" --mem 64M --dirty-mode log
expect_usage_error "unknown option" "unknown option" run --guest "$G" --mem 64M --turbo
expect_usage_error "unknown short option" "unknown option '-x'" run --guest "$G" --mem 64M -x
expect_usage_error "option without value" "needs a value" run --guest "$G" --mem
# Named right whatever the option's place in the table (--args was once
# reported as --fence-s, and --disk as --help).
expect_usage_error "--args without value" "option --args needs a value" run --guest "$G" --mem 64M --args
expect_usage_error "--disk without value" "option --disk needs a value" run --guest "$G" --mem 64M --disk
expect_usage_error "--net without value" "option --net needs a value" run --guest "$G" --mem 64M --net
expect_usage_error "stray argument" "unexpected argument" run --guest "$G" --mem 64M extra
expect_usage_error "guest args too long" "longer than 1023" run --guest "$G" --mem 64M --args "$(head -c 2000 /dev/zero | tr '\0' x)"
expect_usage_error "--disk relative, missing" "disk nope.img: No such file or directory" run --guest "$G" --mem 64M --disk nope.img
expect_usage_error "--disk NBD, relative lease" "lease=l.lease: the path must be absolute" run --guest "$G" --mem 64M --disk "nbd://127.0.0.1:1/e,lease=l.lease"
expect_usage_error "--disk NBD without a lease" "needs ,lease=PATH" run --guest "$G" --mem 64M --disk "nbd://127.0.0.1:1/e"
expect_usage_error "--fence-s not a number" "fence-s: 'soon' is not a number of seconds" run --guest "$G" --mem 64M --fence-s soon
expect_usage_error "--net without a bridge" "names no bridge" run --guest "$G" --mem 64M --net mac=02:00:00:00:00:01
expect_usage_error "--net multicast MAC" "not a unicast MAC address" run --guest "$G" --mem 64M --net bridge=br0,mac=01:00:5e:00:00:01
expect_usage_error "--net unknown key" "unknown key 'vlan'" run --guest "$G" --mem 64M --net bridge=br0,vlan=3
expect_usage_error "--net missing bridge" "bridge ferry-nobr does not exist on this host" run --guest "$G" --mem 64M --net bridge=ferry-nobr
expect_usage_error "--net on a non-bridge" "lo is not a Linux bridge" run --guest "$G" --mem 64M --net bridge=lo
expect_usage_error "--net with --incoming" "takes the NICs from the source; drop --net" run --incoming tcp:127.0.0.1:0 --net bridge=lo
expect_usage_error "--fence-s 0" "fence-s: '0' is not a number of seconds (1..86400)" run --guest "$G" --mem 64M --fence-s 0
expect_usage_error "ctl without command" "needs SOCKET" ctl /tmp/x
expect_usage_error "ctl unknown command" "unknown ctl command" ctl /tmp/x explode
expect_usage_error "ctl fence without seconds" "ctl fence needs SECONDS" ctl /tmp/x fence
expect_usage_error "ctl fence not a number" "ctl fence needs SECONDS (0..86400; 0 disarms)" ctl /tmp/x fence soon

finish
