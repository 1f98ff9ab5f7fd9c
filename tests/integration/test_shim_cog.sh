#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Cog 0.22's HTTP answers (#11) over kiln-shim on loopback: server-sent events only for a predictor marked
# @cog.streaming (406 otherwise).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT

# project NAME CLASS: a project running cog_fixtures.py:CLASS (the predictors below).
project() {
	local dir=$T_WORK/$1
	mkdir -p "$dir"
	cp "$T_WORK/cog_fixtures.py" "$dir/cog_fixtures.py"
	echo "run: cog_fixtures.py:$2" >"$dir/kiln.yaml"
	echo "$dir"
}

cat >"$T_WORK/cog_fixtures.py" <<'EOF'
import sys
from typing import Iterator

from cog import BasePredictor, streaming


class Streams(BasePredictor):
    @streaming
    def predict(self, n: int = 2) -> Iterator[str]:
        for i in range(n):
            print(f"out {i}")
            print(f"err {i}", file=sys.stderr)
            yield f"t{i}"


class Plain(BasePredictor):  # an iterator, but not marked @streaming
    def predict(self, n: int = 2) -> Iterator[str]:
        for i in range(n):
            yield f"t{i}"
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

t_finish
