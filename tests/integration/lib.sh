# Shared helpers for the shell integration tests. Source it; it sets -eu.
set -eu
FERRY_BIN=${FERRY_BIN:?run me from ctest (FERRY_BIN unset)}
FERRY_GUESTS=${FERRY_GUESTS:?run me from ctest (FERRY_GUESTS unset)}
VMON="$FERRY_BIN/vmon"
TMP=$(mktemp -d /tmp/ferry-test.XXXXXX)
PIDS=""
# FERRY_TEST_KEEP=DIR: keep every test's logs (*.err, *.out, *.log) in
# DIR/NAME.XXXXXX, for a failure that is hard to reproduce.
cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
	if [ -n "${FERRY_TEST_KEEP:-}" ]; then
		local keep
		mkdir -p "$FERRY_TEST_KEEP"
		keep=$(mktemp -d "$FERRY_TEST_KEEP/$(basename "$0" .sh).XXXXXX")
		find "$TMP" -maxdepth 1 -type f \( -name '*.err' -o -name '*.out' -o -name '*.log' \) \
			-exec cp {} "$keep/" \; 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

require_kvm() {
	if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
		echo "SKIP: /dev/kvm is not available on this host"
		exit 77
	fi
}

. "$(dirname "${BASH_SOURCE[0]}")/checks.sh"

# wait_for COND-COMMAND [timeout seconds]
wait_for() {
	local i=0 limit=$(( ${2:-10} * 10 ))
	while ! eval "$1" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -ge $limit ] && return 1
		sleep 0.1
	done
}
