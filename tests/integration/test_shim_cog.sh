#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Cog 0.22's HTTP answers (#11) over kiln-shim on loopback: server-sent events only for a predictor marked
# @cog.streaming (406 otherwise), a second cancel and a cancel of an unknown or finished prediction,
# sys.exit() and os._exit() in predict(), a worker killed with SIGKILL, GET / and /health-check's shape.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT

# project NAME CLASS [TRAIN]: a project running cog_fixtures.py:CLASS (the predictors below), with train:
# cog_fixtures.py:TRAIN when given.
project() { py_project "$1" cog_fixtures.py "${@:2}"; }

cat >"$T_WORK/cog_fixtures.py" <<'EOF'
import os
import sys
import time
from typing import Iterator

import cog
from cog import BasePredictor, CancelationException, streaming


class Streams(BasePredictor):
    @streaming
    def predict(self, n: int = 2, delay: float = 0) -> Iterator[str]:
        for i in range(n):
            print(f"out {i}")
            print(f"err {i}", file=sys.stderr)
            yield f"t{i}"
            time.sleep(delay)


class Plain(BasePredictor):  # an iterator, but not marked @streaming
    def predict(self, n: int = 2) -> Iterator[str]:
        for i in range(n):
            yield f"t{i}"


class Cleanup(BasePredictor):
    @cog.streaming()
    def predict(self) -> str:
        try:
            time.sleep(30)
        except CancelationException:
            print("cleanup started", flush=True)
            time.sleep(1)  # a second cancel lands here and must not cut the cleanup short
            print("cleanup done", flush=True)
            raise
        return "not canceled"


class Exits(BasePredictor):
    def predict(self, how: str = "exit", pidfile: str = "") -> str:
        print("about to leave", flush=True)
        if how == "exit":
            sys.exit()
        if how == "exit7":
            sys.exit(7)
        if how == "message":
            sys.exit("bye from predict")
        if how == "os_exit":
            os._exit(5)
        if how == "sleep":
            with open(pidfile + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(pidfile + ".tmp", pidfile)
            time.sleep(30)
        return "stayed"


def train(steps: int = 1) -> str:
    return f"trained {steps}"


class ExitsAsync(BasePredictor):
    async def predict(self, how: str = "exit") -> str:
        print("about to leave", flush=True)
        sys.exit(9)
EOF

# ---- (a) streaming only for models that opt in
STREAMS=$(project streams Streams)
start "$STREAMS"
wait_health READY 20

t_case "@streaming: Accept: text/event-stream gets start, output {chunk, index}, log {source, data}, completed"
curl -s -N -m 10 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
	-D "$T_WORK/sse.head" -d '{"id": "s1", "input": {"n": 2}}' "$URL/predictions" >"$T_WORK/sse"
expect_contains "$(cat "$T_WORK/sse.head")" "HTTP/1.1 200"
expect_contains "$(cat "$T_WORK/sse.head")" "text/event-stream"
expect_eq "$(sed -n 1,2p "$T_WORK/sse")" $'event: start\ndata: {"id":"s1","status":"processing"}'
expect_eq "$(grep -A1 '^event: output' "$T_WORK/sse" | grep '^data' | tr '\n' ' ')" \
	'data: {"chunk":"t0","index":0} data: {"chunk":"t1","index":1} '
expect_contains "$(grep -A1 '^event: log' "$T_WORK/sse")" '"source":"stdout","data":"out 0\n'
expect_contains "$(grep -A1 '^event: log' "$T_WORK/sse")" '"source":"stderr","data":"err 0\n'
expect_eq "$(grep -c '^event: completed' "$T_WORK/sse")" 1
expect_eq "$(grep -A1 '^event: completed' "$T_WORK/sse" | tail -1 | cut -c7- | json '[j["status"], j["output"]]')" \
	'["succeeded", ["t0", "t1"]]'

t_case "@streaming: a PUT with the id of a finished prediction answers with a whole stream again"
curl -s -N -m 10 -X PUT -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
	-d '{"input": {"n": 2}}' "$URL/predictions/s1" >"$T_WORK/sse2"
expect_eq "$(head -1 "$T_WORK/sse2")" "event: start"
expect_eq "$(grep -c '^event: output' "$T_WORK/sse2")" 2
expect_eq "$(grep -c '^event: completed' "$T_WORK/sse2")" 1

t_case "@streaming: a PUT with the id of a running prediction streams it, its earlier events replayed"
post '{"id": "r1", "input": {"n": 3, "delay": 0.4}}' -H 'Prefer: respond-async'
expect_eq "$CODE" 202
sleep 0.6 # its first output is out before the stream begins
curl -s -N -m 10 -X PUT -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
	-d '{"input": {"n": 3, "delay": 0.4}}' "$URL/predictions/r1" >"$T_WORK/sse-r1"
expect_eq "$(head -1 "$T_WORK/sse-r1")" "event: start"
expect_eq "$(grep -A1 '^event: output' "$T_WORK/sse-r1" | grep -c '"index":[012]}')" 3
expect_eq "$(grep -A1 '^event: completed' "$T_WORK/sse-r1" | tail -1 | cut -c7- | json 'j["output"]')" \
	'["t0", "t1", "t2"]'

t_case "@streaming: without Accept: text/event-stream the answer is the JSON response"
post '{"input": {"n": 3}}'
expect_eq "$CODE" 200
expect_eq "$(field 'j["output"]')" '["t0", "t1", "t2"]'
stop_shim

PLAIN=$(project plain Plain)
start "$PLAIN"
wait_health READY 20

t_case "no @streaming: Accept: text/event-stream is 406 Not Acceptable, and nothing runs"
post '{"id": "p1", "input": {}}' -H 'Accept: text/event-stream'
expect_eq "$CODE" 406
expect_contains "$(field 'j["detail"]')" "@cog.streaming"
req PUT /predictions/p2 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -d '{"input": {}}'
expect_eq "$CODE" 406 "PUT"
req POST /predictions/p1/cancel
expect_eq "$CODE" 404 "no prediction p1 was made"

t_case "no @streaming: kiln predict's X-Kiln-Stream: always streams it all the same; another value is 400"
curl -s -N -m 10 -H 'Accept: text/event-stream' -H 'X-Kiln-Stream: always' -H 'Content-Type: application/json' \
	-d '{"input": {"n": 1}}' "$URL/predictions" >"$T_WORK/sse3"
expect_eq "$(head -1 "$T_WORK/sse3")" "event: start"
expect_contains "$(cat "$T_WORK/sse3")" $'event: output\ndata: {"chunk":"t0","index":0}'
post '{"input": {}}' -H 'Accept: text/event-stream' -H 'X-Kiln-Stream: yes'
expect_eq "$CODE" 400
expect_eq "$(field 'j["detail"]')" "X-Kiln-Stream: 'yes' is not 'always' (the only value it takes)"

t_case "no @streaming: its iterator output still works in a JSON response"
post '{"input": {"n": 2}}' -H 'Accept: application/json'
expect_eq "$CODE" 200
expect_eq "$(field 'j["output"]')" '["t0", "t1"]'
stop_shim

# ---- (b) cancel twice, cancel of an unknown or finished prediction
CLEANUP=$(project cleanup Cleanup)
start "$CLEANUP"
wait_health READY 20

t_case "a second cancel of a running prediction is 200 {} and does not cut its cleanup short"
post '{"id": "c1", "input": {}}' -H 'Prefer: respond-async'
expect_eq "$CODE" 202
sleep 0.5
req POST /predictions/c1/cancel
expect_eq "$CODE" 200 "first cancel"
expect_eq "$BODY" "{}"
sleep 0.3
req POST /predictions/c1/cancel
expect_eq "$CODE" 200 "second cancel, during the cleanup"
expect_eq "$BODY" "{}"
for _ in $(seq 50); do
	req PUT /predictions/c1 -H 'Content-Type: application/json' -d '{"input": {}}'
	[ "$(field 'j["status"]')" == canceled ] && break
	sleep 0.1
done
expect_eq "$(field 'j["status"]')" canceled
expect_contains "$(field 'j["logs"]')" "cleanup done"

t_case "a cancel of a finished prediction, or of an id never seen, is 404 {}"
req POST /predictions/c1/cancel
expect_eq "$CODE" 404 "finished"
expect_eq "$BODY" "{}"
req POST /predictions/never-seen/cancel
expect_eq "$CODE" 404 "unknown"
expect_eq "$BODY" "{}"
wait_health READY 5
stop_shim

# ---- (c) sys.exit() and os._exit() in predict(): the worker ends, as in Cog
EXITS=$(project exits Exits)

# exit_case DIR HOW TEXT...: on project DIR, a prediction calling HOW fails with "Worker crashed", its logs keep what it printed
# and hold each TEXT (how the worker ended), the shim becomes DEFUNCT and refuses the next prediction, 503.
exit_case() {
	start "$1"
	wait_health READY 20
	post "{\"input\": {\"how\": \"$2\"}}"
	expect_eq "$CODE" 200
	expect_eq "$(field 'j["status"]')" failed
	expect_eq "$(field 'j["error"]')" "Worker crashed"
	expect_contains "$(field 'j["logs"]')" "about to leave"
	for text in "${@:3}"; do expect_contains "$(field 'j["logs"]')" "$text"; done
	wait_health DEFUNCT 5
	post "{\"input\": {\"how\": \"none\"}}"
	expect_eq "$CODE" 503 "after the worker ended"
	expect_eq "$BODY" "{\"error\":\"the predictor's worker has exited: the server is DEFUNCT\",\"status\":\"failed\"}"
	stop_shim
}

t_case "sys.exit() in predict(): the prediction fails, Worker crashed, and the shim is DEFUNCT"
exit_case "$EXITS" exit "the worker exited with status 0"

t_case "sys.exit(7) in predict(): the worker's status is 7"
exit_case "$EXITS" exit7 "the worker exited with status 7"

t_case "sys.exit(\"message\") in predict(): the message is in the logs, status 1"
exit_case "$EXITS" message "bye from predict" "the worker exited with status 1"

t_case "os._exit(5) in predict(): the same, status 5"
exit_case "$EXITS" os_exit "the worker exited with status 5"

t_case "sys.exit(9) in an async predict(): the same, status 9"
exit_case "$(project exits_async ExitsAsync)" exit "the worker exited with status 9"

# ---- (d) a worker killed with SIGKILL
t_case "a worker killed with SIGKILL: the prediction fails, Worker crashed, the signal in its logs, DEFUNCT"
start "$EXITS"
wait_health READY 20
curl -s -m 20 -o "$T_WORK/killed.json" -H 'Content-Type: application/json' \
	-d "{\"input\": {\"how\": \"sleep\", \"pidfile\": \"$T_WORK/worker.pid\"}}" "$URL/predictions" &
CURL=$!
for _ in $(seq 100); do [ -s "$T_WORK/worker.pid" ] && break; sleep 0.1; done
kill -9 "$(cat "$T_WORK/worker.pid")" || t_fail "no worker pid in $T_WORK/worker.pid"
wait "$CURL"
BODY=$(cat "$T_WORK/killed.json")
expect_eq "$(field 'j["status"]')" failed
expect_eq "$(field 'j["error"]')" "Worker crashed"
expect_contains "$(field 'j["logs"]')" "the worker was killed by signal 9"
wait_health DEFUNCT 5
req GET /health-check
expect_eq "$(field 'j["status"]')" DEFUNCT
expect_contains "$(cat "$EXITS.log")" "the shim is DEFUNCT"
stop_shim

# ---- (e) GET / and /health-check
PYTHON_VERSION=$(python3 -c 'import platform; print(platform.python_version())')
PLAIN=$(project plain Plain)
start "$PLAIN"
wait_health READY 20
t_case "GET /: Cog's discovery document, cog_version the bundled cog's"
req GET /
expect_eq "$CODE" 200
expect_eq "$BODY" '{"cog_version":"0.0.0+kiln","docs_url":"/docs","openapi_url":"/openapi.json","shutdown_url":"/shutdown","healthcheck_url":"/health-check","predictions_url":"/predictions","predictions_idempotent_url":"/predictions/{prediction_id}","predictions_cancel_url":"/predictions/{prediction_id}/cancel"}'

t_case "GET /health-check: Cog's version {coglet, cog, python}, setup without logs when it printed none"
req GET /health-check
expect_eq "$(field 'j["version"]')" "{\"coglet\": \"0.0.0+kiln\", \"cog\": \"0.0.0+kiln\", \"python\": \"$PYTHON_VERSION\"}"
expect_eq "$(field 'sorted(j["setup"])')" '["completed_at", "started_at", "status"]'
expect_eq "$(field 'list(j)')" '["status", "setup", "version", "kiln"]' "members, in order"
expect_eq "$(field 'j["kiln"]["version"]')" "$("$KILN" version 2>/dev/null | grep -o '[0-9][0-9.]*[0-9]' | head -1)"
stop_shim

t_case "GET / with train: the trainings' URLs too"
start "$(project trains Plain train)"
wait_health READY 20
req GET /
expect_eq "$(field '[j.get(k) for k in ("trainings_url", "trainings_idempotent_url", "trainings_cancel_url")]')" \
	'["/trainings", "/trainings/{training_id}", "/trainings/{training_id}/cancel"]'
expect_eq "$(field 'len(j)')" 11
stop_shim

t_finish
