#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# scripts/fuzz.sh: bad arguments are usage errors (exit 2) naming what is wrong, before anything is built;
# every fuzz target has a seed corpus or seed script and parses its dictionary; a target that crashes fails
# the run, naming it and its input. (The runs of kiln's targets are scripts/test.sh's last step.)
source "$(dirname "$0")/lib.sh"

fuzz_sh() {
	OUT=$(bash "$KILN_SOURCE_DIR/scripts/fuzz.sh" "$@" 2>"$T_WORK/stderr")
	RC=$?
	ERR=$(cat "$T_WORK/stderr")
}

t_case "an unknown target is a usage error listing the targets"
fuzz_sh nosuch 5
expect_rc 2
expect_contains "$ERR" "no target 'nosuch'"
expect_contains "$ERR" "manifest"
expect_contains "$ERR" "usage: scripts/fuzz.sh [TARGET|all] [SECONDS]"

t_case "SECONDS that is not a positive whole number is a usage error"
for s in 0 -3 1.5 ten; do
	fuzz_sh all "$s"
	expect_rc 2
	expect_contains "$ERR" "SECONDS must be a positive whole number"
	expect_contains "$ERR" "usage: scripts/fuzz.sh [TARGET|all] [SECONDS]"
done

t_case "a third argument is a usage error"
fuzz_sh manifest 5 extra
expect_rc 2
expect_contains "$ERR" "usage: scripts/fuzz.sh"

t_case "--help prints the usage and exits 0"
fuzz_sh --help
expect_rc 0
expect_contains "$OUT" "usage: scripts/fuzz.sh [TARGET|all] [SECONDS]"

t_case "a target that crashes: exit 1 naming it, the sanitizer's report, the input kept and how to reproduce it"
if command -v clang >/dev/null; then
	# a real libFuzzer target with a real heap overflow on any input starting with '{'
	mkdir -p "$T_WORK/bin"
	cat >"$T_WORK/crash.c" <<'C'
#include <stdint.h>
#include <stdlib.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0 && data[0] == '{') {
		volatile char *p = malloc(4);
		p[4 + size % 3] = 1;
		free((void *)p);
	}
	return 0;
}
C
	clang -g -fsanitize=fuzzer,address "$T_WORK/crash.c" -o "$T_WORK/bin/fuzz_validate" ||
		t_fail "cannot build the crashing target"
	KILN_FUZZ_BIN=$T_WORK/bin fuzz_sh validate 20
	expect_rc 1
	expect_contains "$ERR" "fuzz: fuzz_validate failed (exit 134) on input /" # ASan's abort_on_error
	expect_contains "$ERR" "ERROR: AddressSanitizer: heap-buffer-overflow"
	expect_contains "$ERR" "fuzz: reproduce with: $T_WORK/bin/fuzz_validate /"
	crash=$(echo "$ERR" | sed -n 's/^fuzz: fuzz_validate failed (exit [0-9]*) on input \([^;]*\);.*/\1/p')
	expect_eq "$(head -c1 "$crash" 2>/dev/null)" "{" "the input it crashed on, kept"
	rm -rf "$(dirname "$(dirname "$(dirname "$crash")")")"
else
	t_fail "clang is needed (scripts/deps.sh installs it)"
fi

t_case "every target has seeds, and each dictionary is one quoted token a line"
for src in "$KILN_SOURCE_DIR"/fuzz/fuzz_*.c; do
	t=$(basename "$src" .c)
	t=${t#fuzz_}
	if [ "$t" = extract ]; then
		bash "$KILN_SOURCE_DIR/fuzz/make-seeds.sh" "$T_WORK/seeds"
		n=$(find "$T_WORK/seeds" -name '*.tar*' | wc -l)
	else
		n=$(find "$KILN_SOURCE_DIR/fuzz/corpus/$t" -type f 2>/dev/null | wc -l)
	fi
	[ "$n" -ge 3 ] || t_fail "fuzz_$t has $n seeds"
	dict=$KILN_SOURCE_DIR/fuzz/$t.dict
	[ -f "$dict" ] || t_fail "fuzz_$t has no dictionary"
	bad=$(grep -v -E '^(#.*|"([^"\\]|\\["\\]|\\x[0-9A-Fa-f]{2})*")$' "$dict" | head -1)
	expect_eq "$bad" "" "a line of $t.dict libFuzzer cannot read"
done
python3 - "$T_WORK/seeds" <<'PY' || t_fail "the extract seeds are not the tar layers they should be"
import sys, tarfile, os
d = sys.argv[1]
names = {n: tarfile.open(os.path.join(d, n)).getnames() for n in os.listdir(d) if n.endswith((".tar", ".tar.gz"))}
assert "../escape" in names["dotdot.tar"], names["dotdot.tar"]
assert names["plain.tar"] == names["plain.tar.gz"]
PY

t_finish
