#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite: install dependencies, build with -Werror, run unit and integration tests (CTest),
# then the fuzz targets briefly (KILN_SANITIZE_UNIT=1: the unit tests again on the sanitizer build).
# The integration tests start the servers they need on loopback and stop them.
#   scripts/test.sh [--sanitize] [CTEST-ARGS...]
# The sanitizer build (build-sanitize/, -DKILN_SANITIZE=ON): AddressSanitizer, UndefinedBehaviorSanitizer and
# LeakSanitizer in kiln, kiln-shim (and so in the runtime layer of every image it builds), the test binaries
# and the native fixtures. Each report is written to a file; the run fails when there is one. With
# --sanitize the whole CTest suite runs on it instead of the plain build (about twice as long:
# docs/RELIABILITY.md); KILN_SANITIZE_UNIT=1 adds its unit tests to a plain run (about three minutes with
# the build, left out of CI's 30 minutes by default).
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize_all=0
if [ "${1:-}" = --sanitize ]; then
	sanitize_all=1
	shift
fi
bash scripts/deps.sh
cmake -S . -B build -DKILN_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
sanitize_unit=${KILN_SANITIZE_UNIT:-0}
if [ $sanitize_all = 1 ] || [ "$sanitize_unit" = 1 ]; then
	cmake -S . -B build-sanitize -DKILN_WERROR=ON -DKILN_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
if [ $sanitize_all = 1 ]; then
	cmake --build build-sanitize -j"$(nproc)"
elif [ "$sanitize_unit" = 1 ]; then
	cmake --build build-sanitize -j"$(nproc)" --target all_unit_tests
fi
# the Debian bases the integration tests build on (mmdebstrap through Debian's registry, ~70 s each on a
# fresh machine), made once here, outside the tests' time limits, and cached under the test cache
cache=${KILN_TEST_CACHE:-/var/cache/kiln-test}/bases
mkdir -p "$cache"
flock "$cache/.debian-python.lock" bash scripts/debian-base.sh "$cache/debian-python" >/dev/null
flock "$cache/.debian-digits.lock" bash scripts/debian-base.sh "$cache/debian-digits" \
	python3-numpy python3-sklearn python3-pil >/dev/null
flock "$cache/.debian-build.lock" bash scripts/debian-base.sh "$cache/debian-build" \
	gcc libc6-dev python3-dev >/dev/null
KILN_BASE_PYTHON=0 flock "$cache/.debian-plain.lock" bash scripts/debian-base.sh "$cache/debian-plain" >/dev/null

# sanitized TEST-DIR CTEST-ARGS...: CTest on the sanitizer build, every report written under
# build-sanitize/reports (whatever a test did with the process's stderr; a process in a sandbox, whose
# environment kiln clears, reports on its stderr and exits 1); fails when a test failed or anything was reported.
sanitized() {
	local reports=$PWD/build-sanitize/reports rc=0
	rm -rf "$reports"
	mkdir -p "$reports"
	# (a small quarantine keeps the RSS checks meaningful; tests/lsan.supp: OpenSSL's own state, see there,
	# which needs whole stacks of allocations made through OpenSSL and libcurl: slower, so only with
	# --sanitize, where the integration tests make TLS connections, or KILN_SANITIZE_STACKS=1)
	local unwind=
	[ $sanitize_all = 1 ] || [ "${KILN_SANITIZE_STACKS:-0}" = 1 ] && unwind=:fast_unwind_on_malloc=0
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:quarantine_size_mb=16$unwind:log_path=$reports/asan \
		LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan \
		ctest --test-dir build-sanitize --output-on-failure -j"$(nproc)" "$@" || rc=$?
	if [ -n "$(ls -A "$reports")" ]; then
		echo "test: the sanitizers reported $(ls "$reports" | wc -l) time(s), in $reports:" >&2
		for f in "$reports"/*; do
			echo "--- $f" >&2
			head -n 60 "$f" >&2
		done
		return 1
	fi
	echo "test: no sanitizer reports"
	return $rc
}

# the test files are independent (each its own store, servers on free loopback ports): run them side by side
if [ $sanitize_all = 1 ]; then
	sanitized "$@"
else
	ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
	if [ "$sanitize_unit" = 1 ]; then
		sanitized -R '^unit_'
	fi
fi
# every fuzz target (fuzz/, scripts/fuzz.sh: ASan, UBSan, LeakSanitizer) for KILN_FUZZ_SECONDS each (default
# 12, about 3 minutes in all with the build; 0 skips them: CI's 30 minutes also hold the headless browser)
fuzz_seconds=${KILN_FUZZ_SECONDS:-12}
if [ "$fuzz_seconds" != 0 ]; then
	bash scripts/fuzz.sh all "$fuzz_seconds"
fi
