#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Cog 0.22's event streams over kiln-shim on loopback (#11): a "metric" event for each change the predictor
# makes to its metrics, in order with its logs and outputs; a PUT attaching to a running prediction replays
# its history (COG_STREAM_HISTORY_CAPACITY), or says in one "error" event that it cannot; no stream for
# /trainings (406).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT COG_STREAM_HISTORY_CAPACITY PORT

# project NAME CLASS [TRAIN]: a project running sse_fixtures.py:CLASS (the predictors below), with train:
# sse_fixtures.py:TRAIN when given.
project() { py_project "$1" sse_fixtures.py "${@:2}"; }

cat >"$T_WORK/sse_fixtures.py" <<'EOF'
import os
import time
from typing import Iterator

from cog import BasePredictor, current_scope, streaming


class Metrics(BasePredictor):
    @streaming
    def predict(self) -> Iterator[str]:
        scope = current_scope()
        print("first", flush=True)
        scope.record_metric("temperature", 0.7)
        yield "a"
        scope.record_metric("token_count", 1, mode="incr")
        scope.record_metric("token_count", 2, mode="incr")
        self.record_metric("tags", "fast", mode="append")
        scope.metrics["gone"] = 1
        del scope.metrics["gone"]
        scope.record_metric("timing.preprocess", 0.1)
        scope.record_metric("bad..name", 1)  # dropped: no event for it
        yield "b"


class Gated(BasePredictor):  # N outputs, GO + ".ready" written, then one more once GO exists
    @streaming
    def predict(self, go: str = "", n: int = 3) -> Iterator[str]:
        for i in range(n):
            yield f"t{i}"
        if go:
            open(go + ".ready", "w").close()
            while not os.path.exists(go):
                time.sleep(0.05)
        yield f"t{n}"


def train(steps: int = 1) -> str:
    return f"trained {steps}"
EOF

# events FILE: the names of FILE's events, one line, space-separated. Sets nothing.
events() { grep '^event: ' "$1" | cut -c8- | tr '\n' ' '; }
# data FILE N: the data of FILE's Nth event (1-based). Sets nothing.
data() { grep '^data: ' "$1" | sed -n "${2}p" | cut -c7-; }

# ---- (a) metric events
METRICS=$(project metrics Metrics)
start "$METRICS"
wait_health READY 20

t_case "a metric event {name, value, mode} for each change, in order with logs and outputs"
curl -s -N -m 10 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
	-d '{"id": "m1", "input": {}}' "$URL/predictions" >"$T_WORK/m1"
expect_eq "$(events "$T_WORK/m1" | sed 's/log //2g')" \
	"start log metric output metric metric metric metric metric metric output completed " "events"
expect_eq "$(grep -A1 '^event: metric' "$T_WORK/m1" | grep '^data' | cut -c7- | tr '\n' ' ')" \
	'{"name":"temperature","value":0.7,"mode":"replace"} {"name":"token_count","value":1,"mode":"increment"} {"name":"token_count","value":2,"mode":"increment"} {"name":"tags","value":"fast","mode":"append"} {"name":"gone","value":1,"mode":"replace"} {"name":"gone","value":null,"mode":"replace"} {"name":"timing.preprocess","value":0.1,"mode":"replace"} '
expect_eq "$(data "$T_WORK/m1" 2)" '{"source":"stdout","data":"first\n"}' "the log before the first metric"
expect_contains "$(cat "$T_WORK/m1")" "ignoring metric 'bad..name'"
expect_eq "$(grep -A1 '^event: completed' "$T_WORK/m1" | tail -1 | cut -c7- |
	json '{k: v for k, v in j["metrics"].items() if k != "predict_time"}')" \
	'{"temperature": 0.7, "token_count": 3, "tags": ["fast"], "timing": {"preprocess": 0.1}}'

t_case "a PUT attaching to a finished prediction replays its metric events too"
curl -s -N -m 10 -X PUT -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
	-d '{"input": {}}' "$URL/predictions/m1" >"$T_WORK/m1-again"
expect_eq "$(grep -c '^event: metric' "$T_WORK/m1-again")" 7
stop_shim

# ---- (b) attaching to a running prediction: replay history
GATED=$(project gated Gated)

# attach ID OUT: POST prediction ID (Prefer: respond-async) that yields 3 outputs and waits for $T_WORK/ID
# to exist, then a PUT with its id and Accept: text/event-stream, its stream in OUT (in the background:
# $ATTACH is its pid). Sets $ATTACH.
attach() {
	post "{\"id\": \"$1\", \"input\": {\"go\": \"$T_WORK/$1\"}}" -H 'Prefer: respond-async'
	expect_eq "$CODE" 202 "POST $1"
	for _ in $(seq 100); do [ -e "$T_WORK/$1.ready" ] && break; sleep 0.1; done
	sleep 0.3 # its third output reached the shim
	curl -s -N -m 10 -X PUT -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
		-d "{\"input\": {\"go\": \"$T_WORK/$1\"}}" "$URL/predictions/$1" >"$2" &
	ATTACH=$!
	sleep 0.5
}

# replay ID BEFORE AFTER: attach ID, its stream's events BEFORE (names, as `events` prints them) while ID
# waits, then AFTER once it went on and ended. Sets nothing.
replay() {
	attach "$1" "$T_WORK/$1.sse"
	expect_eq "$(events "$T_WORK/$1.sse")" "$2" "before it goes on"
	touch "$T_WORK/$1"
	wait "$ATTACH"
	expect_eq "$(events "$T_WORK/$1.sse")" "$3" "once it ended"
}

start "$GATED" KILN_SHIM_MAX_CONNECTIONS=1100 # room for the 1025 streams below
wait_health READY 20
t_case "default history (1024): a stream attaching to a running prediction gets all its events, then the rest"
replay d1 "start output output output " "start output output output output completed "
expect_eq "$(data "$T_WORK/d1.sse" 5)" '{"chunk":"t3","index":3}'

t_case "1024 event streams of one prediction at once, as coglet allows; one more is 429 Too many stream subscribers"
post "{\"id\": \"many\", \"input\": {\"go\": \"$T_WORK/many\"}}" -H 'Prefer: respond-async'
expect_eq "$CODE" 202
for _ in $(seq 100); do [ -e "$T_WORK/many.ready" ] && break; sleep 0.1; done
# 1024 streams held open (each answered 200), then a PUT more with curl, then all closed
python3 - "$URL" "$T_WORK/many" >"$T_WORK/many.out" 2>&1 <<'PY' &
import socket, sys, time, urllib.parse
url, go = urllib.parse.urlsplit(sys.argv[1]), sys.argv[2]
body = ('{"input": {"go": "%s"}}' % go).encode()
req = (b"PUT /predictions/many HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
       b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
socks = []
for _ in range(1024):
    s = socket.create_connection((url.hostname, url.port))
    s.sendall(req)
    socks.append(s)
ok = 0
for s in socks:
    s.settimeout(20)
    if s.recv(64).startswith(b"HTTP/1.1 200"):
        ok += 1
print("open", ok, flush=True)
time.sleep(3)
for s in socks:
    s.close()
PY
HOLD=$!
for _ in $(seq 200); do grep -q open "$T_WORK/many.out" 2>/dev/null && break; sleep 0.1; done
expect_eq "$(cat "$T_WORK/many.out")" "open 1024" "streams answered 200"
req PUT /predictions/many -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
	-d "{\"input\": {\"go\": \"$T_WORK/many\"}}"
expect_eq "$CODE" 429 "the 1025th"
expect_eq "$BODY" '{"error":"Too many stream subscribers"}'
wait "$HOLD"
touch "$T_WORK/many"
wait_health READY
curl -s -N -m 10 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
	-d '{"input": {"n": 1}}' "$URL/predictions" >"$T_WORK/after"
expect_eq "$(events "$T_WORK/after")" "start output output completed " "a new prediction's stream once they closed"
stop_shim

start "$GATED" COG_STREAM_HISTORY_CAPACITY=2
wait_health READY 20
t_case "COG_STREAM_HISTORY_CAPACITY=2: events dropped from the history end the stream with one error event"
attach h1 "$T_WORK/h1.sse"
expect_eq "$(kill -0 "$ATTACH" 2>/dev/null && echo open || echo closed)" closed "the stream"
expect_eq "$(cat "$T_WORK/h1.sse")" \
	$'event: error\ndata: {"error":"SSE stream replay truncated; events were dropped","skipped":2}'
req GET /health-check
expect_eq "$(field 'j["status"]')" BUSY "the prediction runs on"
touch "$T_WORK/h1"
wait_health READY

t_case "COG_STREAM_HISTORY_CAPACITY=2: the stream of a new prediction is whole all the same"
curl -s -N -m 10 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
	-d '{"input": {"n": 5}}' "$URL/predictions" >"$T_WORK/h2"
expect_eq "$(events "$T_WORK/h2")" "start output output output output output output completed "
stop_shim

start "$GATED" COG_STREAM_HISTORY_CAPACITY=0
wait_health READY 20
t_case "COG_STREAM_HISTORY_CAPACITY=0: an attaching stream gets no history, only what happens next"
replay z1 "" "output completed "
expect_eq "$(data "$T_WORK/z1.sse" 1)" '{"chunk":"t3","index":3}'
expect_eq "$(data "$T_WORK/z1.sse" 2 | json '[j["status"], j["output"]]')" '["succeeded", ["t0", "t1", "t2", "t3"]]'
stop_shim

for bad in lots -1 12x; do
	t_case "COG_STREAM_HISTORY_CAPACITY=$bad: a warning naming it, and the default"
	start "$GATED" COG_STREAM_HISTORY_CAPACITY=$bad
	wait_health READY 20
	expect_contains "$(cat "$GATED.log")" "COG_STREAM_HISTORY_CAPACITY='$bad' is not a number of events: using the default"
	expect_contains "$(cat "$GATED.log")" '"default":1024'
	replay "w$bad" "start output output output " "start output output output output completed "
	stop_shim
done

# ---- (c) no streams for trainings
TRAINS=$(project trains Gated train)
start "$TRAINS"
wait_health READY 20
t_case "/trainings with Accept: text/event-stream is 406, even for a @cog.streaming predictor, and nothing runs"
req POST /trainings -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -d '{"id": "t1", "input": {}}'
expect_eq "$CODE" 406
expect_eq "$(field 'j["detail"]')" \
	"training endpoints do not stream: POST /trainings and PUT /trainings/{id} answer in JSON only"
req PUT /trainings/t2 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -d '{"input": {}}'
expect_eq "$CODE" 406 "PUT"
req POST /trainings/t1/cancel
expect_eq "$CODE" 404 "no training t1 was made"
curl -s -N -m 10 -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
	-d '{"input": {"n": 1}}' "$URL/predictions" >"$T_WORK/p-sse"
expect_eq "$(events "$T_WORK/p-sse")" "start output output completed " "its predictions do stream"

t_case "/trainings: kiln train's X-Kiln-Stream: always streams it"
curl -s -N -m 10 -H 'Accept: text/event-stream' -H 'X-Kiln-Stream: always' -H 'Content-Type: application/json' \
	-d '{"input": {"steps": 4}}' "$URL/trainings" >"$T_WORK/t-sse"
expect_eq "$(events "$T_WORK/t-sse")" "start completed "
expect_eq "$(data "$T_WORK/t-sse" 2 | json 'j["output"]')" "trained 4"
stop_shim

t_finish
