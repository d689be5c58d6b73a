#!/bin/bash
# Install dependencies, build, and run the whole test suite:
#   1. the normal build (-Werror): unit and integration tests (real KVM);
#   2. an ASan+UBSan build: the unit tests again;
#   3. a clang libFuzzer build: every fuzz target for a bounded time.
# Integration tests that need /dev/kvm skip (ctest reports them as skipped)
# where it is missing. Set FERRY_FUZZ_SECONDS to change the fuzzing time.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
FUZZ_SECONDS=${FERRY_FUZZ_SECONDS:-10}

bash tools/install-deps.sh

echo "== build (gcc, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$JOBS"

echo "== build (gcc, ASan+UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$JOBS"

echo "== build (clang, libFuzzer)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DFERRY_FUZZ=ON \
	-DFERRY_FUZZ_SECONDS="$FUZZ_SECONDS" >/dev/null
cmake --build build-fuzz -j "$JOBS"

status=0
# Unit tests own no ports, names or namespaces: they run side by side, one
# per core. Integration tests share the lab's names and time their guests,
# so they run one at a time.
echo "== unit tests under ASan+UBSan, $JOBS at a time"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest -L unit -j "$JOBS" --output-on-failure) ||
	status=1
# Each fuzzer is one process on its own scratch corpus: run them side by
# side, one per core, so that the suite keeps its time as targets are added.
echo "== fuzz targets, ${FUZZ_SECONDS} s each, $JOBS at a time"
(cd build-fuzz && ctest -L fuzz -j "$JOBS" --output-on-failure) || status=1
echo "== unit tests, $JOBS at a time"
(cd build && ctest -L unit -j "$JOBS" --output-on-failure) || status=1
# Integration tests that build a lab of their own mostly wait on corosync
# and fences: two at a time. The others time their guests: one at a time.
echo "== integration tests on labs of their own, 2 at a time"
(cd build && ctest -L lab -j 2 --output-on-failure) || status=1
# The disks' tests own their ports and namespaces and time little: two
# at a time.
echo "== integration tests of disks, 2 at a time"
(cd build && ctest -L pair -j 2 --output-on-failure) || status=1
echo "== integration tests, one at a time"
(cd build && ctest -L integration -LE 'lab|pair' --output-on-failure) || status=1
exit $status
