# shellcheck shell=bash
# The pass/fail bookkeeping every shell integration test shares.
FAILS=0
PASSES=0
ok()   { PASSES=$((PASSES + 1)); echo "ok: $*"; }
bad()  { FAILS=$((FAILS + 1)); echo "FAIL: $*"; }
check() { # check DESCRIPTION COMMAND...
	local what=$1; shift
	if "$@"; then ok "$what"; else bad "$what"; fi
}
finish() {
	echo "$PASSES passed, $FAILS failed"
	[ "$FAILS" -eq 0 ]
}
