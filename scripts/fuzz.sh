#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build the libFuzzer targets of fuzz/ with clang (ASan + UBSan + LeakSanitizer, in build-fuzz) and run
# TARGET (or all) for SECONDS each on a scratch copy of its seed corpus; exit 1 when one crashes.
set -euo pipefail
usage="usage: scripts/fuzz.sh [TARGET|all] [SECONDS]"
case "${1:-}" in -h | --help) echo "$usage"; exit 0 ;; esac
target=${1:-all}
seconds=${2:-30}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ] || [ $# -gt 2 ]; then
	echo "fuzz: SECONDS must be a positive whole number" >&2
	echo "$usage" >&2
	exit 2
fi
cd "$(dirname "$0")/.."
src=$PWD
targets=()
for f in fuzz/fuzz_*.c; do
	t=${f#fuzz/fuzz_}
	targets+=("${t%.c}")
done
if [ "$target" != all ]; then
	t=${target#fuzz_}
	if [ ! -f "fuzz/fuzz_$t.c" ]; then
		echo "fuzz: no target '$target' (targets: ${targets[*]})" >&2
		echo "$usage" >&2
		exit 2
	fi
	targets=("$t")
fi
if ! command -v clang >/dev/null; then
	echo "fuzz: clang is needed (apt-get install clang)" >&2
	exit 1
fi
# KILN_FUZZ_BIN=DIR: run DIR/fuzz_TARGET, built elsewhere, instead of building build-fuzz
bin=${KILN_FUZZ_BIN:-$src/build-fuzz/fuzz}
if [ -z "${KILN_FUZZ_BIN:-}" ]; then
	CC=clang cmake -S . -B build-fuzz -DKILN_FUZZ=ON -DKILN_TESTS=OFF -DKILN_WERROR=ON \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	build_targets=()
	for t in "${targets[@]}"; do build_targets+=(--target "fuzz_$t"); done
	cmake --build build-fuzz -j"$(nproc)" "${build_targets[@]}" >/dev/null
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-fuzz.XXXXXX")
echo "fuzz: corpora, logs and crashes under $work"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
for t in "${targets[@]}"; do
	dir=$work/$t
	mkdir -p "$dir/corpus" "$dir/crashes" "$dir/tmp"
	if [ -d "fuzz/corpus/$t" ]; then
		cp fuzz/corpus/"$t"/* "$dir/corpus/"
	fi
	if [ "$t" = extract ]; then
		bash fuzz/make-seeds.sh "$dir/corpus"
	fi
	dict=()
	if [ -f "fuzz/$t.dict" ]; then dict=(-dict="$src/fuzz/$t.dict"); fi
	rc=0
	# (in a subshell whose stderr is the log: bash's own "Aborted" line goes there too)
	(TMPDIR=$dir/tmp "$bin/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/crashes/" "${dict[@]}" \
		"$dir/corpus") >"$dir/log" 2>&1 || rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
	inputs=$(find "$dir/corpus" -type f | wc -l)
	found=$(find "$dir/crashes" -type f | head -1)
	if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
		failed=1
		echo "fuzz: fuzz_$t failed (exit $rc) on input ${found:-(none written)}; its log: $dir/log" >&2
		grep -m1 -E "ERROR: |runtime error|SUMMARY" "$dir/log" >&2 || tail -5 "$dir/log" >&2
		echo "fuzz: reproduce with: ${bin#"$src"/}/fuzz_$t ${found:-}" >&2
	else
		echo "fuzz_$t: ${runs:-?} executions in $seconds s, corpus of $inputs inputs, no crash"
	fi
done
exit "$failed"
