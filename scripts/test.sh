#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite: install dependencies, build with -Werror, run unit and integration tests (CTest),
# then the fuzz targets briefly.
# The integration tests start the servers they need on loopback and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DKILN_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
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
# the test files are independent (each its own store, servers on free loopback ports): run them side by side
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
# every fuzz target (fuzz/, scripts/fuzz.sh: ASan, UBSan, LeakSanitizer) for KILN_FUZZ_SECONDS each (default
# 30, about 4 minutes in all with the build; 0 skips them)
fuzz_seconds=${KILN_FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" != 0 ]; then
	bash scripts/fuzz.sh all "$fuzz_seconds"
fi
