#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Native predictors (include/kiln/predictor.h) served by kiln-shim on loopback: schema, validation, output,
# logs, setup failure, predict errors, cancel, concurrency; `kiln build` and `kiln serve` of such a project.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

LIBS=$(dirname "$KILN")/tests-native
export KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT

# project NAME FIXTURE [YAML...]: a project directory holding lib/libFIXTURE.so and a kiln.yaml running it.
project() {
	local dir=$T_WORK/$1 lib=$2
	shift 2
	mkdir -p "$dir/lib"
	cp "$LIBS/lib$lib.so" "$dir/lib/"
	{
		echo "run: native:lib/lib$lib.so"
		printf '%s\n' "$@"
	} >"$dir/kiln.yaml"
	echo "$dir"
}

# put ID: PUT /predictions/ID with an empty input, answering at once (202 while it runs).
put() { req PUT "/predictions/$1" -H 'Content-Type: application/json' -H 'Prefer: respond-async' -d '{"input": {}}'; }

# wait_status ID STATUS [SECONDS]: until prediction ID (PUT again: its state) has STATUS; its body in $BODY.
wait_status() {
	local s=""
	for _ in $(seq $((${3:-10} * 10))); do
		put "$1"
		s=$(field 'j["status"]' 2>/dev/null)
		[ "$s" == "$2" ] && return 0
		sleep 0.1
	done
	t_fail "prediction $1 is '$s', expected '$2'"
	return 1
}

# ---- echo: schema, validation, output, logs
ECHO=$(project echo echo "serve:" "  warmup: {text: warm}")
start "$ECHO"

t_case "a native predictor becomes READY with its setup logs"
wait_health READY
req GET /health-check
expect_eq "$(field 'j["setup"]["status"]')" succeeded
expect_contains "$(field 'j["setup"]["logs"]')" "echo: setup in $(cd "$ECHO" && pwd -P)"
expect_contains "$(field 'j["setup"]["logs"]')" "echo: reversing 4 bytes 1 times" # serve.warmup

t_case "/openapi.json is Cog's document around the predictor's Input and Output"
req GET /openapi.json
expect_eq "$CODE" 200
expect_eq "$(field 'j["components"]["schemas"]["Input"]["required"]')" '["text"]'
expect_eq "$(field 'j["components"]["schemas"]["Input"]["title"]')" Input
expect_eq "$(field 'j["components"]["schemas"]["Input"]["properties"]["repeat"]')" \
	'{"type": "integer", "title": "Repeat", "default": 1, "minimum": 1, "maximum": 5, "x-order": 1}'
expect_eq "$(field 'j["components"]["schemas"]["Output"]')" '{"type": "string", "title": "Output"}'
expect_eq "$(field 'sorted(j["paths"])')" \
	'["/", "/health-check", "/predictions", "/predictions/{prediction_id}/cancel"]'
# the envelope of Cog 0.22's static generator, as for a Python predictor: its components, in its order
expect_eq "$(field 'list(j["components"]["schemas"])')" \
	'["Input", "Output", "PredictionRequest", "PredictionResponse", "Status", "HTTPValidationError", "ValidationError"]'
expect_eq "$(field 'list(j["components"]["schemas"]["PredictionRequest"]["properties"])')" '["id", "input"]'
expect_eq "$(field 'j["components"]["schemas"]["Status"]["enum"]')" \
	'["starting", "processing", "succeeded", "canceled", "failed"]'

t_case "the shim validates input against the predictor's schema (422)"
post '{"input": {}}'
expect_eq "$CODE" 422 "missing text"
expect_contains "$BODY" '"loc":["body","input","text"],"msg":"Field required","type":"value_error.missing"'
post '{"input": {"text": "abc", "repeat": 9}}'
expect_eq "$CODE" 422 "repeat 9"
expect_contains "$BODY" '"msg":"9 is greater than the maximum of'

t_case "a prediction answers the predictor's output, with its logs and defaults"
post '{"input": {"text": "héllo"}}'
expect_eq "$CODE" 200
expect_eq "$(field 'j["status"]')" succeeded
expect_eq "$(field 'j["output"]')" "olléh"
expect_eq "$(field 'j["input"]["text"], j["input"]["repeat"]')" "('héllo', 1)"
expect_eq "$(field 'repr(j["logs"])')" "'echo: reversing 6 bytes 1 times\\n'"
expect_eq "$(field 'type(j["metrics"]["predict_time"]).__name__')" float
post '{"input": {"text": "ab", "repeat": 3}}'
expect_eq "$(field 'j["output"]')" "bababa"

t_case "a native predictor does not stream: Accept: text/event-stream is 406, but kiln predict's stream works"
post '{"input": {"text": "ab"}}' -H 'Accept: text/event-stream'
expect_eq "$CODE" 406
expect_contains "$(field 'j["detail"]')" "does not stream"
curl -s -N -m 10 -H 'Accept: text/event-stream' -H 'X-Kiln-Stream: always' -H 'Content-Type: application/json' \
	-d '{"input": {"text": "ab"}}' "$URL/predictions" >"$T_WORK/native.sse"
expect_eq "$(head -1 "$T_WORK/native.sse")" "event: start"
expect_contains "$(cat "$T_WORK/native.sse")" $'event: log\ndata: {"source":"stdout","data":"echo: reversing 2 bytes'
expect_eq "$(grep -A1 '^event: completed' "$T_WORK/native.sse" | tail -1 | cut -c7- | json 'j["output"]')" ba

t_case "SIGTERM stops the shim cleanly"
kill -TERM "$SPID"
wait_exit "$SPID" 10
expect_eq "$RC" 0 "exit status"
expect_contains "$(cat "$ECHO.log")" "kiln-shim stopped"

t_case "a serve.warmup input the model does not have fails setup, naming it (requests' unknown inputs are only dropped)"
BADWARM=$(project badwarm echo "serve:" "  warmup: {text: warm, txet: typo}")
start "$BADWARM"
wait_health SETUP_FAILED
req GET /health-check
expect_contains "$(field 'j["setup"]["logs"]')" "invalid serve.warmup input: 'txet' is not an input of this model"
kill -TERM "$SPID"
wait_exit "$SPID" 10

# ---- setup failure, predict failure
FAILS=$(project setup_fails setup_fails)
start "$FAILS"

t_case "setup() failing makes the shim SETUP_FAILED with its message and logs"
wait_health SETUP_FAILED
req GET /health-check
expect_eq "$(field 'j["setup"]["status"]')" failed
expect_contains "$(field 'j["setup"]["logs"]')" "setup_fails: looking for weights"
expect_contains "$(field 'j["setup"]["logs"]')" "cannot load weights: 'model.bin' is missing"
kill -TERM "$SPID"
wait_exit "$SPID" 10

PF=$(project fails fails)
start "$PF"

t_case "predict() failing fails the prediction with its error"
wait_health READY
post '{"input": {"anything": 1}}'
expect_eq "$CODE" 200 "an input the schema does not have is dropped, as Cog 0.22"
expect_contains "$(field 'j["logs"]')" "warning: ignored input 'anything': not an input of this model"
post '{"input": {}}'
expect_eq "$CODE" 200
expect_eq "$(field 'j["status"]')" failed
expect_eq "$(field 'j["error"]')" "bad input"
expect_contains "$(field 'j["logs"]')" "fails: refusing {}"
kill -TERM "$SPID"
wait_exit "$SPID" 10

t_case "a library that is no native predictor fails setup with a reason"
BAD=$T_WORK/bad
mkdir -p "$BAD"
printf 'not an ELF file\n' >"$BAD/model.so"
echo "run: native:model.so" >"$BAD/kiln.yaml"
start "$BAD"
wait_health SETUP_FAILED
req GET /health-check
expect_contains "$(field 'j["setup"]["logs"]')" "cannot load the native predictor"
kill -TERM "$SPID"
wait_exit "$SPID" 10

# ---- slow: concurrency, cancel
SLOW=$(project slow slow "concurrency:" "  max: 2")
start "$SLOW"

t_case "with concurrency.max 2 two predictions overlap and a third answers 409"
wait_health READY
put s1
expect_eq "$CODE" 202 "first"
put s2
expect_eq "$CODE" 202 "second"
post '{"id": "s3", "input": {}}'
expect_eq "$CODE" 409 "third"
expect_contains "$BODY" "At capacity - all prediction slots busy"
wait_status s1 succeeded 10
expect_eq "$(field 'j["output"]')" slept
first_done=$(field 'j["completed_at"]')
wait_status s2 succeeded 10
second_started=$(field 'j["started_at"]')
[[ "$second_started" < "$first_done" ]] || t_fail "s2 started at $second_started, after s1 ended at $first_done"

t_case "cancel cannot stop native code: the prediction is reported canceled when it returns"
put c1
expect_eq "$CODE" 202
sleep 0.3
req POST /predictions/c1/cancel
expect_eq "$CODE" 200 "cancel"
wait_status c1 canceled 10
expect_eq "$(field 'j["output"]')" None
kill -TERM "$SPID"
wait_exit "$SPID" 10
expect_eq "$RC" 0 "exit status"

# ---- kiln build and kiln serve
t_case "kiln build puts the library in the code layer"
run_kiln build "$ECHO" -t test/native:v1 --json
expect_rc 0
run_kiln inspect test/native:v1 --json
expect_rc 0
expect_contains "$(echo "$OUT" | json 'j["layers"][-1]["files"]')" "src/lib/libecho.so"
expect_contains "$(echo "$OUT" | json 'j["layers"][-1]["files"]')" "src/kiln.yaml"

t_case "kiln serve DIR runs the native predictor"
port=$(free_port)
"$KILN" serve "$ECHO" --host 127.0.0.1 --port "$port" 2>"$T_WORK/serve.log" &
SPID=$!
t_defer "kill -9 $SPID 2>/dev/null"
URL=http://127.0.0.1:$port
wait_listen "$T_WORK/serve.log"
wait_health READY
post '{"input": {"text": "kiln"}}'
expect_eq "$(field 'j["output"]')" nlik
kill -TERM "$SPID"
wait_exit "$SPID" 10

t_finish
