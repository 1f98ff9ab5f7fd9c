# SPDX-License-Identifier: Apache-2.0
# lib.sh: the small harness integration tests share: a scratch directory and store per test file,
# checks that report what differed, and the closing "N passed, N failed" line.
set -uo pipefail

KILN=${KILN:?set KILN to the kiln binary}
KILN_SOURCE_DIR=${KILN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
T_WORK=$(mktemp -d /tmp/kiln-it.XXXXXX)
export KILN_HOME=$T_WORK/home
export HOME=$T_WORK/userhome
mkdir -p "$HOME"
unset SOURCE_DATE_EPOCH
# Docker Hub cannot be reached from here: a Python predictor without base: builds on scratch (with kiln's
# warning) and runs with `kiln predict --runtime native`, and a base without Python is a warning, not an
# error. Tests of the real default (python:<python_version>-slim) and its checks unset these.
export KILN_PYTHON_BASE=scratch KILN_ALLOW_NO_PYTHON=1
KILN_TEST_CACHE=${KILN_TEST_CACHE:-/var/cache/kiln-test}
T_PASSED=0
T_FAILED=0
T_CURRENT=""
T_CURRENT_FAILED=0
T_CLEANUPS=()

t_cleanup() {
	for c in "${T_CLEANUPS[@]}"; do eval "$c" || true; done
	rm -rf "$T_WORK"
}
trap t_cleanup EXIT

# Register a command to run when the test file ends.
t_defer() { T_CLEANUPS+=("$1"); }

t_end_current() {
	[ -n "$T_CURRENT" ] || return 0
	if [ "$T_CURRENT_FAILED" -eq 0 ]; then
		T_PASSED=$((T_PASSED + 1))
		echo "ok - $T_CURRENT"
	else
		T_FAILED=$((T_FAILED + 1))
		echo "FAILED - $T_CURRENT"
	fi
	T_CURRENT=""
}

# Start a test case.
t_case() {
	t_end_current
	T_CURRENT=$1
	T_CURRENT_FAILED=0
}

t_fail() {
	echo "  check failed in '$T_CURRENT': $*" >&2
	T_CURRENT_FAILED=1
}

# Run kiln, keeping stdout, stderr and the exit status in $OUT, $ERR, $RC.
run_kiln() {
	OUT=$("$KILN" "$@" 2>"$T_WORK/stderr")
	RC=$?
	ERR=$(cat "$T_WORK/stderr")
}

expect_rc() { [ "$RC" -eq "$1" ] || t_fail "exit status $RC, expected $1 (stderr: $ERR)"; }
expect_eq() { [ "$1" == "$2" ] || t_fail "${3:-value}: got '$1', expected '$2'"; }
expect_ne() { [ "$1" != "$2" ] || t_fail "${3:-value}: got '$1' both times"; }
expect_contains() { [[ "$1" == *"$2"* ]] || t_fail "expected '$2' in: $1"; }
expect_not_contains() { [[ "$1" != *"$2"* ]] || t_fail "did not expect '$2' in: $1"; }
expect_file_same() { cmp -s "$1" "$2" || t_fail "'$2' differs from '$1'"; }

# jq-like access without jq: python3 reads JSON from stdin and evaluates an expression on `j`.
json() { python3 -c "import json,sys; j=json.load(sys.stdin); r=($1); print(json.dumps(r) if isinstance(r,(dict,list)) else r)"; }

# runtime_mib: the size of the runtime layer kiln was built with, in whole MiB rounded up (about 8; about 30
# for a sanitizer build, whose shim carries its runtime libraries).
runtime_mib() {
	local kib
	kib=$(du -sk "$(dirname "$KILN")/kiln-runtime" 2>/dev/null | cut -f1)
	echo $(((${kib:-10240} + 1023) / 1024))
}

# expect_blobs_named [HOME]: every blob of the store is named by its digest (status 1 when one is not).
expect_blobs_named() {
	local home=${1:-$KILN_HOME} bad=0 f
	for f in "$home"/blobs/sha256/*; do
		[ -e "$f" ] || continue
		[ "$(sha256sum "$f" | cut -d' ' -f1)" == "$(basename "$f")" ] || { t_fail "blob $f does not match its name"; bad=1; }
	done
	return $bad
}

# expect_store_tmp_empty [HOME]: nothing is left in the store's tmp/.
expect_store_tmp_empty() {
	local left
	left=$(ls -A "${1:-$KILN_HOME}/tmp" 2>/dev/null | head -5)
	[ -z "$left" ] || t_fail "temporary files left in the store: $left"
}

# expect_store_consistent [HOME]: every blob named by its digest, no temporary file left over, index.json
# readable.
expect_store_consistent() {
	local home=${1:-$KILN_HOME} bad=0
	expect_blobs_named "$home" || bad=1
	expect_store_tmp_empty "$home"
	if [ -f "$home/index.json" ]; then
		python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$home/index.json" || t_fail "index.json is not JSON"
	fi
	return $bad
}

# A file of SIZE bytes of repeatable pseudo-random content (seeded by NAME), written fast.
make_file() {
	local path=$1 size=$2
	mkdir -p "$(dirname "$path")"
	openssl enc -aes-128-ctr -nosalt -pass "pass:$path" -pbkdf2 -in /dev/zero 2>/dev/null | head -c "$size" >"$path"
}

# Usage: make_project DIR YAML [PATH SIZE]...
# A small model project in DIR: a weight file of SIZE bytes at each PATH under DIR (made by make_file, so its
# content depends on DIR/PATH), p.py whose class P predicts "ok", and kiln.yaml: "run: p.py:P", then YAML's
# lines. Sets no variables.
make_project() {
	local dir=$1 yaml=$2
	shift 2
	mkdir -p "$dir"
	while [ $# -gt 0 ]; do
		make_file "$dir/$1" "${2:?make_project: no size for $1}"
		shift 2
	done
	printf 'class P:\n    def run(self) -> str:\n        return "ok"\n' >"$dir/p.py"
	printf 'run: p.py:P\n%s\n' "$yaml" >"$dir/kiln.yaml"
}

# debian_base [NAME [PACKAGE...]]: a Debian 12 base with Python (and PACKAGEs) as an OCI layout, made by
# scripts/debian-base.sh from Debian's registry (~70 s) once per test cache: $KILN_TEST_CACHE/bases/NAME
# (NAME: debian-python). Sets DEBIAN_BASE (the layout; use as oci:$DEBIAN_BASE:bookworm). Returns non-zero,
# printing the tail of the script's output, when it cannot be made.
debian_base() {
	local name=${1:-debian-python}
	shift || true
	DEBIAN_BASE=$KILN_TEST_CACHE/bases/$name
	mkdir -p "$KILN_TEST_CACHE/bases" || return 1
	# one maker at a time: test files may run at once
	if ! flock "$KILN_TEST_CACHE/bases/.$name.lock" bash "$KILN_SOURCE_DIR/scripts/debian-base.sh" "$DEBIAN_BASE" "$@" \
		>"$T_WORK/debian-base.log" 2>&1; then
		echo "cannot make the Debian base $DEBIAN_BASE:" >&2
		tail -20 "$T_WORK/debian-base.log" >&2
		return 1
	fi
}

t_finish() {
	t_end_current
	echo "$T_PASSED passed, $T_FAILED failed"
	[ "$T_FAILED" -eq 0 ]
}
