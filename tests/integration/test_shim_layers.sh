#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The shim's files call only downwards (#11, shim/README.md): HTTP above the table of jobs, the table
# above the workers, the log, files and validation at the bottom; checked on its includes.
source "$(dirname "$0")/lib.sh"

CHECK="$KILN_SOURCE_DIR/tests/integration/shim_layers.sh"
# The check on DIR: it exits with RC and prints only MESSAGE (empty: nothing).
expect_check() {
	OUT=$(bash "$CHECK" "$1" 2>&1)
	RC=$?
	expect_rc "$2"
	expect_eq "$OUT" "$3" "the check's output"
}

t_case "no shim file includes a header of a layer above its own"
expect_check "$KILN_SOURCE_DIR/shim" 0 ""

t_case "a worker file that includes the table's header is refused, by name"
cp -r "$KILN_SOURCE_DIR/shim" "$T_WORK/shim"
sed -i '0,/#include "shim\/worker.h"/s||#include "shim/worker.h"\n#include "shim/table.h"|' "$T_WORK/shim/worker.c"
expect_check "$T_WORK/shim" 1 "shim/worker.c: includes shim/table.h: the table layer is above the worker layer"

t_case "the log including the HTTP header is refused"
cp "$KILN_SOURCE_DIR/shim/worker.c" "$T_WORK/shim/worker.c"
printf '#include "shim/http.h"\n' >>"$T_WORK/shim/log.c"
expect_check "$T_WORK/shim" 1 "shim/log.c: includes shim/http.h: the http layer is above the base layer"

t_case "a new file in no layer is named"
cp "$KILN_SOURCE_DIR/shim/log.c" "$T_WORK/shim/log.c"
printf '/* x */\n' >"$T_WORK/shim/trainings.c"
expect_check "$T_WORK/shim" 1 "shim/trainings.c: in no layer (add it to shim_layers.sh and shim/README.md)"

t_finish
