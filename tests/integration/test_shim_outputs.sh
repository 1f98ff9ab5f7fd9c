#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln-shim's output path on loopback, with tests/fixtures/predictors/outputs.py: output data never taken
# for a file, and file outputs read only when regular and within KILN_MAX_OUTPUT_BYTES.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

FIX=$KILN_SOURCE_DIR/tests/fixtures/predictors
export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT KILN_MAX_OUTPUT_BYTES

# project CLASS: a project directory running outputs.py:CLASS.
project() {
	local dir=$T_WORK/$1
	mkdir -p "$dir"
	cp "$FIX/outputs.py" "$dir/"
	echo "run: outputs.py:$1" >"$dir/kiln.yaml"
	echo "$dir"
}

# stop_shim: SIGTERM, then the shim must be gone within 10 s with status 0.
stop_shim() {
	kill -TERM "$SPID"
	wait_exit "$SPID" 10
	expect_eq "$RC" 0 "exit status"
}

# ---- D5: output data is not a file
DATA=$(project Data)
start "$DATA"
wait_health READY 20

t_case "a {\"\$path\": \"/etc/passwd\"} object in output data comes back as data, the file unread"
post '{"input": {"doc": "{\"$path\": \"/etc/passwd\", \"x\": [{\"$path\": \"/proc/self/environ\"}]}"}}'
expect_eq "$(field 'j["status"]')" succeeded
expect_eq "$(field 'j["output"]')" '{"$path": "/etc/passwd", "x": [{"$path": "/proc/self/environ"}]}'
post '{"input": {"doc": "{\"$path\": \"/etc/passwd\"}"}}'
expect_eq "$(field 'j["output"]')" '{"$path": "/etc/passwd"}'
expect_not_contains "$BODY" "data:"
expect_not_contains "$BODY" "cm9vd" # "root" in base64
stop_shim

# ---- D5: file outputs
FILE=$(project File)
start "$FILE" KILN_MAX_OUTPUT_BYTES=1000
wait_health READY 20

t_case "a file output (cog.Path) still becomes a data: URI"
post '{"input": {"size": 2}}'
expect_eq "$(field 'j["status"]')" succeeded
expect_eq "$(field 'j["output"]')" "data:text/plain;base64,eHg="

t_case "a file output larger than KILN_MAX_OUTPUT_BYTES fails its prediction, then the next works"
post '{"input": {"size": 2000}}'
expect_eq "$(field 'j["status"]')" failed
expect_contains "$(field 'j["error"]')" "has 2000 bytes, more than the 1000 a data: URI may hold (KILN_MAX_OUTPUT_BYTES"
expect_eq "$(field 'j["output"]')" None
wait_health READY 5
post '{"input": {"size": 1000}}'
expect_eq "$(field 'j["status"]')" succeeded

t_case "a file output that is a symbolic link (to /etc/passwd) or a device is refused"
post '{"input": {"link": "/etc/passwd"}}'
expect_eq "$(field 'j["status"]')" failed
expect_contains "$(field 'j["error"]')" "is a symbolic link"
expect_not_contains "$BODY" "cm9vd"
post '{"input": {"link": "/dev/zero"}}'
expect_eq "$(field 'j["status"]')" failed
stop_shim

t_finish
