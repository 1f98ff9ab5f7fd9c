#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln-shim's worker and output path on loopback, with tests/fixtures/predictors/outputs.py: NULs in outputs
# and logs carried through, raw bytes that are not UTF-8 made U+FFFD, an event it cannot read ends its prediction (never a shim stuck BUSY), output
# data never taken for a file, and file outputs read only when regular and within KILN_MAX_OUTPUT_BYTES.
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

# ---- D3: NULs in outputs and logs
ECHO=$(project Echo)
start "$ECHO"
wait_health READY 20

t_case "an output with NULs (from a data:,%00%00 input) comes back whole, its logs too"
post '{"input": {"data": "data:,%00%00"}}'
expect_eq "$CODE" 200
expect_eq "$(field 'j["status"]')" succeeded
expect_eq "$(field 'j["output"] == "\0\0"')" True "output is two NULs: $BODY"
expect_eq "$(field 'j["logs"] == "read \0\0\nraw\0line\n"')" True "logs keep the NULs: $BODY"
expect_eq "$(field 'j["error"]')" None

t_case "after it the shim is READY and the next prediction succeeds"
wait_health READY 5
post '{"input": {"data": "data:,ab"}}'
expect_eq "$CODE" 200
expect_eq "$(field 'j["output"]')" ab

t_case "an event stream carries the NULs as \\u0000"
curl -s -N -m 10 -X POST -H 'Accept: text/event-stream' -d '{"input": {"data": "data:,%00"}}' \
	"$URL/predictions" >"$T_WORK/sse"
expect_contains "$(grep -a '^event: completed' -A1 "$T_WORK/sse")" '"output":"\u0000"'
expect_contains "$(grep -a '^event: log' -A1 "$T_WORK/sse")" 'data: {"source":"stdout","data":"read \u0000\n'
expect_contains "$(cat "$T_WORK/sse")" "event: completed"

t_case "SIGTERM ends the shim after NUL outputs"
stop_shim

t_case "bytes that are not UTF-8 on fds 1 and 2 become U+FFFD in the logs; the prediction is answered"
RAW=$(project RawBytes)
start "$RAW"
wait_health READY 20
post '{}'
expect_eq "$CODE" 200 "status ($BODY)"
expect_eq "$(field 'j["output"]')" done
expect_eq "$(field 'j["logs"] == "caf\ufffd \ufffd\nbad \ufffd( \ufffd\ufffd\ufffd ok \u00e9\n"')" True "logs: $BODY"
stop_shim

# ---- D3: an event the shim cannot read ends its prediction
BAD=$(project Surrogate)
start "$BAD"
wait_health READY 20

t_case "an output no JSON parser takes (a lone surrogate) fails that prediction with the reason"
post '{"input": {}}'
expect_eq "$CODE" 200
expect_eq "$(field 'j["status"]')" failed
expect_contains "$(field 'j["error"]')" "the worker sent an event that cannot be read"
expect_contains "$(cat "$BAD.log")" "the worker sent an event that cannot be read"

t_case "then the slot is free: READY, the next prediction succeeds, SIGTERM ends the shim"
wait_health READY 5
post '{"input": {"bad": false}}'
expect_eq "$(field 'j["output"]')" fine
stop_shim

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
