# Shared helpers for the shell integration tests. Source it; it sets -eu.
set -eu
FERRY_BIN=${FERRY_BIN:?run me from ctest (FERRY_BIN unset)}
FERRY_GUESTS=${FERRY_GUESTS:?run me from ctest (FERRY_GUESTS unset)}
VMON="$FERRY_BIN/vmon"
TMP=$(mktemp -d /tmp/ferry-test.XXXXXX)
PIDS=""
cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
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
