#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln-shim over Cog's HTTP API on loopback, against projects made from tests/fixtures/predictors: every
# endpoint and status code, sync/async/SSE predictions, PUT idempotency, cancel, setup failure, worker
# crash, SIGTERM, webhooks, prefetch and hints in /health-check.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT

TS_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}\+00:00$'

# ---- hello.py: the endpoints, sync and async predictions, errors, idempotency, hints, prefetch, warmup
for i in 1 2 3; do make_file "$T_WORK/weights/w$i.bin" $((2 * 1024 * 1024)); done
HELLO=$(project hello hello.py hello.py:Predictor "serve:" "  min_instances: 1" "  max_instances: 4" \
	"  scaledown_window: 300" "  target_concurrency: 2" "  warmup: {name: warm}")
start "$HELLO" KILN_PREFETCH_FILES="$(printf '%s\n' "$T_WORK"/weights/*.bin)"

t_case "GET / and /openapi.json answer as Cog's"
wait_health READY
req GET /
expect_eq "$CODE" 200 "GET / status"
expect_eq "$(field '[j["docs_url"], j["openapi_url"]]')" '["/docs", "/openapi.json"]'
req GET /openapi.json
expect_eq "$CODE" 200
expect_eq "$(field 'j["components"]["schemas"]["Input"]["properties"]["name"]["default"]')" world

t_case "health-check: READY, setup logs with the warmup, hints and prefetch progress"
req GET /health-check
expect_eq "$CODE" 200
expect_eq "$(field 'j["setup"]["status"]')" succeeded
expect_contains "$(field 'j["setup"]["logs"]')" "setting up"
expect_contains "$(field 'j["setup"]["logs"]')" "greeting warm"
[[ $(field 'j["setup"]["completed_at"]') =~ $TS_RE ]] || t_fail "setup.completed_at: $BODY"
expect_eq "$(field 'j["kiln"]["hints"]')" '{"min_instances": 1, "max_instances": 4, "scaledown_window": 300, "target_concurrency": 2}'
expect_eq "$(field 'j["kiln"]["prefetch"]["files"]')" 3
for _ in $(seq 50); do
	req GET /health-check
	[ "$(field 'j["kiln"]["prefetch"]["done"]')" == True ] && break
	sleep 0.1
done
expect_eq "$(field 'j["kiln"]["prefetch"]["bytes_done"]')" $((6 * 1024 * 1024)) "prefetched bytes"
expect_eq "$(field '"count" in j["kiln"]["gpu"]')" True

t_case "a synchronous prediction answers 200 with Cog's response"
post '{"input": {"name": "bob"}}'
expect_eq "$CODE" 200
expect_eq "$(field 'j["status"]')" succeeded
expect_eq "$(field 'j["output"]')" "hello bob"
expect_eq "$(field 'repr(j["logs"])')" "'greeting bob\\n'"
expect_eq "$(field 'j["input"]')" '{"name": "bob"}'
expect_eq "$(field 'j["error"]')" None
expect_eq "$(field 'sorted(j)')" '["completed_at", "created_at", "error", "id", "input", "logs", "metrics", "output", "started_at", "status"]'
expect_eq "$(field 'type(j["metrics"]["predict_time"]).__name__')" float
# seconds with microseconds at most, as the runner measures them; the same figure in the log line
expect_eq "$(field 'j["metrics"]["predict_time"] >= 0 and round(j["metrics"]["predict_time"], 6) == j["metrics"]["predict_time"]')" True "predict_time"
for k in created_at started_at completed_at; do
	[[ $(field "j['$k']") =~ $TS_RE ]] || t_fail "$k is not RFC 3339 with microseconds: $BODY"
done

t_case "defaults fill in; an empty body runs with empty input"
post '{"input": {}}'
expect_eq "$(field 'j["output"]')" "hello world"
req POST /predictions
expect_eq "$CODE" 200
expect_eq "$(field 'j["output"]')" "hello world"

t_case "Prefer: respond-async answers 202 with the pending prediction"
post '{"id": "async-1", "input": {"name": "a"}}' -H 'Prefer: respond-async'
expect_eq "$CODE" 202
expect_eq "$(field 'j["id"]')" async-1
expect_eq "$(field 'j["status"] in ("starting", "processing")')" True
expect_eq "$(field 'j["output"]')" None

t_case "PUT /predictions/ID is idempotent"
req PUT /predictions/put-1 -d '{"input": {"name": "p"}}'
expect_eq "$CODE" 200
first=$(field 'j["created_at"]')
req PUT /predictions/put-1 -d '{"input": {"name": "p"}}'
expect_eq "$(field 'j["created_at"]')" "$first" "the same prediction"
expect_eq "$(field 'j["output"]')" "hello p"
req PUT /predictions/put-1 -d '{"id": "other", "input": {}}'
expect_eq "$CODE" 422
expect_contains "$BODY" "prediction ID must match the ID supplied in the URL"
req PUT /predictions/put-1 -d '{"input": {"name": "q"}}'
expect_eq "$(field 'j["output"]')" "hello q" "a finished ID with another input runs again"

t_case "malformed JSON, a body that is no object, unknown paths, wrong methods, a body too large"
post '{"input": '
expect_eq "$CODE" 422
expect_eq "$(field 'j["detail"][0]["type"]')" value_error.jsondecode
expect_eq "$(field 'j["detail"][0]["loc"][0]')" body
post '[1, 2]'
expect_eq "$CODE" 422
expect_eq "$(field 'j["detail"][0]["type"]')" type_error.dict
post '{"input": 3}'
expect_eq "$CODE" 422
expect_eq "$(field 'j["detail"]')" '[{"loc": ["body", "input", "__root__"], "msg": "3 is not of type \"object\"", "type": "value_error"}]'
req GET /nowhere
expect_eq "$CODE" 404
expect_eq "$BODY" '{"detail":"Not Found"}'
req GET /predictions
expect_eq "$CODE" 405
req DELETE /health-check
expect_eq "$CODE" 405
req POST /predictions/nope/cancel
expect_eq "$CODE" 404
head -c $((100 * 1024 * 1024)) /dev/zero >"$T_WORK/big"
req POST /predictions --data-binary @"$T_WORK/big"
expect_eq "$CODE" 413
expect_eq "$BODY" '{"detail":"Request body too large"}'
# refused on its Content-Length, before the body: curl's "Expect: 100-continue" gets the 413 and sends nothing
SENT=$(curl -s -o /dev/null -w '%{http_code} %{size_upload}' -H 'Content-Type: application/json' \
	--data-binary @"$T_WORK/big" "$URL/predictions")
expect_eq "$SENT" "413 0" "status and bytes uploaded of a 100 MB body"
rm -f "$T_WORK/big"
req GET /health-check
expect_eq "$CODE" 200 "the shim serves on after it"

kill -TERM "$SPID"

# ---- types.py: each kind of invalid input, file inputs
TYPES=$(project types types.py types.py:Predictor)
start "$TYPES"
wait_health READY

t_case "invalid inputs answer 422 with coglet's detail, unknown ones are dropped and named"
check422() {
	post "{\"input\": $1}"
	expect_eq "$CODE" 422 "status for $1"
	expect_contains "$BODY" "$2"
}
IMG='"image": "data:text/plain;base64,aGk="'
check422 "{\"text\": \"hello\"}" '"loc":["body","input","image"],"msg":"Field required","type":"value_error.missing"'
check422 "{$IMG, \"text\": \"hello\", \"steps\": \"x\"}" '"msg":"\"x\" is not of type \"integer\"","type":"value_error"'
check422 "{$IMG, \"text\": \"hello\", \"steps\": \"3\"}" '"msg":"\"3\" is not of type \"integer\""'
check422 "{$IMG, \"text\": \"hello\", \"steps\": 0}" '"msg":"0 is less than the minimum of 1"'
check422 "{$IMG, \"text\": \"hello\", \"steps\": 51}" '"msg":"51 is greater than the maximum of 50"'
check422 "{$IMG, \"text\": \"h\"}" '"msg":"\"h\" is shorter than 2 characters"'
check422 "{$IMG, \"text\": \"abcdefghijklmnopqrstuvwxyz\"}" '"msg":"\"abcdefghijklmnopqrstuvwxyz\" is longer than 20 characters"'
check422 "{$IMG, \"text\": \"ABC\"}" '"msg":"\"ABC\" does not match \"^[a-z ]+$\""'
check422 "{$IMG, \"text\": \"hello\", \"mode\": \"medium\"}" '"loc":["body","input","mode"],"msg":"\"medium\" is not one of [\"fast\",\"slow\"]"'
check422 "{$IMG, \"text\": \"hello\", \"flag\": 1}" '"msg":"1 is not of type \"boolean\""'
post "{\"input\": {$IMG, \"text\": \"hello\", \"guidance_scale\": 7, \"bogus\": 1}}"
expect_eq "$CODE" 200 "unknown inputs are no error, as Cog 0.22 ($BODY)"
expect_eq "$(field 'j["status"]')" succeeded
expect_eq "$(field '"guidance_scale" in j["output"]')" False "the predictor never sees them"
expect_contains "$(field 'j["logs"]')" "warning: ignored inputs 'guidance_scale', 'bogus': not an input of this model"
expect_contains "$(cat "$TYPES.log")" '"message":"ignored unknown inputs","prediction_id":'

t_case "file inputs from data: URIs reach the predictor as Paths"
post "{\"input\": {$IMG, \"text\": \"hello\", \"steps\": 3}}"
expect_eq "$CODE" 200
expect_eq "$(field 'j["status"]')" succeeded "status ($BODY)"
expect_eq "$(field 'j["output"]["image"]')" '["Path", true, "hi"]'
expect_eq "$(field 'j["output"]["steps"]')" 3
post '{"input": {"image": "file:///etc/passwd", "text": "hello"}}'
expect_eq "$CODE" 422
kill -TERM "$SPID"

# ---- slow.py: 409 when busy, cancel, BUSY
SLOW=$(project slow slow.py slow.py:Predictor)
start "$SLOW"
wait_health READY

t_case "409 while the one slot is busy; BUSY in /health-check"
post '{"id": "slow-1", "input": {"seconds": 30}}' -H 'Prefer: respond-async'
expect_eq "$CODE" 202
post '{"input": {"seconds": 1}}'
expect_eq "$CODE" 409
expect_eq "$BODY" '{"error":"At capacity - all prediction slots busy","status":"failed"}'
wait_health BUSY 2

t_case "PUT of a running ID answers 202 with its current state (also with another input)"
req PUT /predictions/slow-1 -d '{"input": {"seconds": 30}}'
expect_eq "$CODE" 202
expect_eq "$(field 'j["status"]')" processing
req PUT /predictions/slow-1 -d '{"input": {"seconds": 5}}'
expect_eq "$CODE" 202
expect_eq "$(field 'j["input"]["seconds"]')" 30.0

t_case "cancel stops the running prediction"
for _ in $(seq 20); do
	req PUT /predictions/slow-1 -d '{"input": {"seconds": 30}}'
	[[ $(field 'j["logs"]') == *sleeping* ]] && break
	sleep 0.1
done
req POST /predictions/slow-1/cancel
expect_eq "$CODE" 200
expect_eq "$BODY" '{}'
for _ in $(seq 50); do
	req PUT /predictions/slow-1 -d '{"input": {"seconds": 30}}'
	[ "$(field 'j["status"]')" == canceled ] && break
	sleep 0.1
done
expect_eq "$(field 'j["status"]')" canceled
wait_health READY 2
req POST /predictions/slow-1/cancel
expect_eq "$CODE" 404 "cancel of a finished prediction"

t_case "webhooks: start and completed, and webhook_events_filter"
hook "$T_WORK/hooks1"
HPORT1=$HPORT
hook "$T_WORK/hooks2"
HPORT2=$HPORT
post "{\"input\": {\"seconds\": 0.2}, \"webhook\": \"http://127.0.0.1:$HPORT1/hook\"}" -H 'Prefer: respond-async'
expect_eq "$CODE" 202
post "{\"input\": {\"seconds\": 0.2}, \"webhook\": \"http://127.0.0.1:$HPORT2/hook\", \"webhook_events_filter\": [\"completed\"]}" -H 'Prefer: respond-async'
expect_eq "$CODE" 409 "one slot"
for _ in $(seq 50); do
	grep -qs succeeded "$T_WORK"/hooks1/*.json && break
	sleep 0.1
done
post "{\"input\": {\"seconds\": 0.2}, \"webhook\": \"http://127.0.0.1:$HPORT2/hook\", \"webhook_events_filter\": [\"completed\"]}" -H 'Prefer: respond-async'
expect_eq "$CODE" 202
for _ in $(seq 50); do
	grep -qs succeeded "$T_WORK"/hooks2/*.json && break
	sleep 0.1
done
statuses() { for f in "$1"/*.json; do json 'j["status"]' <"$f"; done | tr '\n' ' '; }
expect_eq "$(json 'j["status"]' <"$T_WORK/hooks1/001.json")" processing "first webhook (start)"
expect_contains "$(statuses "$T_WORK/hooks1")" succeeded
expect_eq "$(statuses "$T_WORK/hooks2")" "succeeded " "only completed"
expect_eq "$(json 'j["output"]' <"$(ls "$T_WORK"/hooks2/*.json | tail -1)")" "woke up"

t_case "SIGTERM: the prediction in flight completes, then exit 0"
curl -s -m 10 -X POST -d '{"input": {"seconds": 1.5}}' "$URL/predictions" >"$T_WORK/inflight" &
CURL=$!
sleep 0.4
kill -TERM "$SPID"
wait_exit "$SPID" 10
expect_rc 0
wait "$CURL"
expect_eq "$(json 'j["status"]' <"$T_WORK/inflight")" succeeded
expect_eq "$(json 'j["output"]' <"$T_WORK/inflight")" "woke up"

# ---- iterator.py: list outputs and server-sent events; --await-explicit-shutdown
ITER=$(project iter iterator.py iterator.py:Predictor)
start "$ITER" -- --await-explicit-shutdown

t_case "iterator outputs are gathered into a list"
wait_health READY
post '{"input": {"n": 3}}'
expect_eq "$(field 'j["output"]')" '["item-0", "item-1", "item-2"]'
expect_eq "$(field 'repr(j["logs"])')" "'item 0\\nitem 1\\nitem 2\\n'"

t_case "Accept: text/event-stream streams Cog's start, output, log and completed events"
curl -s -N -m 10 -X POST -H 'Accept: text/event-stream' -d '{"input": {"n": 2}}' "$URL/predictions" >"$T_WORK/sse"
expect_eq "$(head -1 "$T_WORK/sse")" "event: start"
expect_contains "$(sed -n 2p "$T_WORK/sse")" '"status":"processing"'
expect_eq "$(grep -c '^event: output' "$T_WORK/sse")" 2
expect_contains "$(cat "$T_WORK/sse")" $'event: output\ndata: {"chunk":"item-0","index":0}'
expect_contains "$(cat "$T_WORK/sse")" $'event: output\ndata: {"chunk":"item-1","index":1}'
expect_contains "$(grep -A1 '^event: log' "$T_WORK/sse")" 'data: {"source":"stdout","data":"item 0\n'
expect_eq "$(tail -3 "$T_WORK/sse" | head -1)" "event: completed"
expect_eq "$(grep '^data: {' "$T_WORK/sse" | tail -1 | cut -c7- | json 'j["status"]')" succeeded

t_case "--await-explicit-shutdown ignores SIGTERM until POST /shutdown"
kill -TERM "$SPID"
sleep 0.3
kill -0 "$SPID" 2>/dev/null || t_fail "the shim exited on SIGTERM"
req POST /shutdown
expect_eq "$CODE" 200
wait_exit "$SPID" 10
expect_rc 0

# ---- failures: setup, a slow setup, a worker crash
t_case "setup failure: SETUP_FAILED with the logs, 503 for predictions"
BAD=$(project bad setup_fails.py setup_fails.py:Predictor)
start "$BAD"
wait_health SETUP_FAILED
req GET /health-check
expect_eq "$(field 'j["setup"]["status"]')" failed
expect_contains "$(field 'j["setup"]["logs"]')" "loading weights"
expect_contains "$(field 'j["setup"]["logs"]')" "weights are missing"
post '{"input": {}}'
expect_eq "$CODE" 503
expect_eq "$BODY" '{"error":"setup failed: see /health-check","status":"failed"}'
kill -TERM "$SPID"

t_case "a slow setup: STARTING and 503, then COG_SETUP_TIMEOUT"
SLEEPY=$(project sleepy slow_setup.py slow_setup.py:Predictor)
start "$SLEEPY" COG_SETUP_TIMEOUT=4 # room for the requests below on a loaded machine
req GET /health-check
expect_eq "$(field 'j["status"]')" STARTING
expect_eq "$(field '[j["setup"]["status"], "completed_at" in j["setup"], "logs" in j["setup"]]')" \
	'["starting", false, false]'
[[ $(field 'j["setup"]["started_at"]') =~ $TS_RE ]] || t_fail "setup.started_at: $BODY"
post '{"input": {}}'
expect_eq "$CODE" 503
expect_eq "$BODY" '{"error":"Setup has not finished yet","status":"failed"}'
wait_health SETUP_FAILED 10
req GET /health-check
expect_contains "$(field 'j["setup"]["logs"]')" "timed out"
kill -TERM "$SPID"

t_case "a worker that dies (os._exit): the prediction fails with Cog's \"Worker crashed\", DEFUNCT, 503"
CRASH=$(project crash crash.py crash.py:Predictor)
start "$CRASH"
wait_health READY
post '{"input": {}}'
expect_eq "$CODE" 200
expect_eq "$(field 'j["status"]')" failed
expect_eq "$(field 'j["error"]')" "Worker crashed"
expect_contains "$(field 'j["logs"]')" "the worker exited with status 3"
wait_health DEFUNCT 2
post '{"input": {}}'
expect_eq "$CODE" 503
expect_contains "$(cat "$CRASH.log")" DEFUNCT
kill -TERM "$SPID"

# ---- async_concurrent.py with concurrency.max 2: two at once, the third gets 409
t_case "concurrency.max: 2 predictions run at once, a third answers 409"
CONC=$(project conc async_concurrent.py async_concurrent.py:Predictor "concurrency:" "  max: 2")
start "$CONC"
wait_health READY
post '{"id": "c1", "input": {"name": "a", "delay": 4}}' -H 'Prefer: respond-async'
expect_eq "$CODE" 202
post '{"id": "c2", "input": {"name": "b", "delay": 4}}' -H 'Prefer: respond-async'
expect_eq "$CODE" 202
wait_health BUSY 2
post '{"input": {"name": "c"}}'
expect_eq "$CODE" 409
req PUT /predictions/c1 -d '{"input": {"name": "a", "delay": 4}}'
# c1's own lines only ("end a" too once its seconds have passed on a loaded machine), never c2's
case "$(field 'j["logs"]')" in "start a" | $'start a\nend a') ;; *) t_fail "logs attributed per prediction: got '$(field 'j["logs"]')'" ;; esac
wait_health READY 15
kill -TERM "$SPID"

# ---- path_output.py: {"$path"} outputs become data: URIs
t_case "a Path output comes back as a data: URI"
PATHS=$(project paths path_output.py path_output.py:Predictor)
start "$PATHS"
wait_health READY
post '{"input": {"text": "hi"}}'
expect_eq "$(field 'j["status"]')" succeeded
expect_eq "$(field 'j["output"]')" "data:text/plain;base64,aGk="
kill -TERM "$SPID"

# ---- runner.py (BaseRunner) on a socket from systemd-style activation, with --idle-exit
t_case "LISTEN_FDS socket activation, BaseRunner.run(), and --idle-exit ends an idle shim with 0"
RUNNER=$(project runner runner.py runner.py:Runner)
python3 -c 'import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[1], sys.argv[1:])' "$SHIM" --project "$RUNNER" --idle-exit 4 >"$T_WORK/activation.port" 2>"$RUNNER.log" &
SPID=$!
t_defer "kill -9 $SPID 2>/dev/null"
for _ in $(seq 50); do
	[ -s "$T_WORK/activation.port" ] && break
	sleep 0.1
done
URL=http://127.0.0.1:$(cat "$T_WORK/activation.port")
wait_health READY
post '{"input": {"x": 5}}'
expect_eq "$(field 'j["output"]')" 15
wait_exit "$SPID" 15
expect_rc 0

# ---- webhooks: a slow receiver, and a failing one
t_case "webhooks: a slow receiver does not hold back another prediction's webhooks"
hook "$T_WORK/hooks-slow" 3
SLOWHOOK=http://127.0.0.1:$HPORT/hook
hook "$T_WORK/hooks-fast"
FASTHOOK=http://127.0.0.1:$HPORT/hook
HOOKS=$(project hooks async_concurrent.py async_concurrent.py:Predictor "concurrency:" "  max: 2")
start "$HOOKS"
wait_health READY
post "{\"id\": \"hook-a\", \"input\": {\"name\": \"a\", \"delay\": 0.2}, \"webhook\": \"$SLOWHOOK\", \"webhook_events_filter\": [\"start\", \"completed\"]}" -H 'Prefer: respond-async'
expect_eq "$CODE" 202
post "{\"id\": \"hook-b\", \"input\": {\"name\": \"b\", \"delay\": 0.2}, \"webhook\": \"$FASTHOOK\"}" -H 'Prefer: respond-async'
expect_eq "$CODE" 202
# arrived FILE: when FILE (a webhook body) was written, in seconds since the epoch.
arrived() { python3 -c 'import os, sys; print(os.path.getmtime(sys.argv[1]))' "$1"; }
# completed_file DIR: the file of DIR's "completed" webhook (status succeeded), if one arrived.
completed_file() { grep -ls '"status": *"succeeded"' "$1"/*.json | tail -1; }
for _ in $(seq 150); do
	[ -n "$(completed_file "$T_WORK/hooks-slow")" ] && [ -n "$(completed_file "$T_WORK/hooks-fast")" ] && break
	sleep 0.1
done
A=$(completed_file "$T_WORK/hooks-slow")
B=$(completed_file "$T_WORK/hooks-fast")
if [ -z "$A" ] || [ -z "$B" ]; then
	t_fail "completed webhooks: slow '$A', fast '$B'"
else
	expect_eq "$(python3 -c 'import sys; print(float(sys.argv[2]) < float(sys.argv[1]) - 1.5)' "$(arrived "$A")" "$(arrived "$B")")" \
		True "B's completed ($(arrived "$B")) 1.5 s before A's ($(arrived "$A"), after A's start took 3 s)"
	expect_eq "$(statuses "$T_WORK/hooks-slow")" "processing succeeded " "A's start, then its completed"
	expect_eq "$(json 'j["id"]' <"$B")" hook-b
	expect_eq "$(json 'j["output"][0] > 0' <"$B")" True "B's output"
fi

t_case "webhooks: a failure is a JSON line of the shim's log, with the prediction, without the URL's query"
hook "$T_WORK/hooks-gone" 0 404
post "{\"id\": \"hook-c\", \"input\": {\"name\": \"c\", \"delay\": 0}, \"webhook\": \"http://127.0.0.1:$HPORT/hook?token=s3cret\", \"webhook_events_filter\": [\"completed\"]}"
expect_eq "$CODE" 200
# hook_failures LOG: the JSON lines of LOG about hook-c's webhook, one a line as "SEVERITY EVENT STATUS".
hook_failures() {
	python3 -c 'import json, sys
for line in open(sys.argv[1]):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if isinstance(j, dict) and j.get("prediction_id") == "hook-c" and "event" in j:
        print(j.get("severity"), j["event"], j.get("status"))' "$1"
}
for _ in $(seq 50); do
	[ -n "$(hook_failures "$HOOKS.log")" ] && break
	sleep 0.1
done
expect_eq "$(hook_failures "$HOOKS.log")" "ERROR completed 404"
expect_not_contains "$(cat "$HOOKS.log")" s3cret
expect_not_contains "$(grep -v '^{' "$HOOKS.log")" webhook
kill -TERM "$SPID"
wait_exit "$SPID" 10
expect_rc 0

t_case "GET /docs and /redoc: the API's pages, pointing at /openapi.json"
DOCS=$(project docs hello.py hello.py:Predictor)
start "$DOCS"
wait_health READY
req GET /docs
expect_eq "$CODE" 200 "GET /docs"
expect_contains "$BODY" "swagger-ui"
expect_contains "$BODY" 'url: "/openapi.json"'
expect_eq "$(curl -s -o /dev/null -w '%{content_type}' "$URL/docs")" "text/html; charset=utf-8" "content type"
req GET /redoc
expect_eq "$CODE" 200 "GET /redoc"
expect_contains "$BODY" 'spec-url="/openapi.json"'
req POST /docs
expect_eq "$CODE" 405 "POST /docs"
kill -TERM "$SPID"

t_case "an event stream of a quiet prediction gets keep-alive comments (KILN_SSE_KEEPALIVE)"
QUIET=$(project quiet slow.py slow.py:Predictor)
start "$QUIET" KILN_SSE_KEEPALIVE=0.5
wait_health READY
curl -s -N -m 10 -X POST -H 'Accept: text/event-stream' -d '{"input": {"seconds": 1.8}}' "$URL/predictions" >"$T_WORK/sse-quiet"
n=$(grep -c '^: keep-alive' "$T_WORK/sse-quiet")
[ "$n" -ge 2 ] || t_fail "keep-alive comments: $n in: $(cat "$T_WORK/sse-quiet")"
expect_eq "$(grep '^data: {' "$T_WORK/sse-quiet" | tail -1 | cut -c7- | json 'j["status"]')" succeeded
kill -TERM "$SPID"

t_case "an async prediction is answered before its file input is fetched; a file that cannot be fetched fails it"
# A file server that answers each request after 2 s: 404 for /missing, else "hi".
cat >"$T_WORK/slowfile.py" <<'PY'
import http.server, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(2)
        if self.path == "/missing":
            self.send_response(404); self.end_headers(); return
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"hi")
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$T_WORK/slowfile.py" >"$T_WORK/slowfile.port" &
t_defer "kill $! 2>/dev/null"
for _ in $(seq 50); do
	FPORT=$(cat "$T_WORK/slowfile.port")
	[ -n "$FPORT" ] && break
	sleep 0.1
done
hook "$T_WORK/hooks-files"
FILES=$(project files types.py types.py:Predictor)
start "$FILES" -- --allow-private-urls # the file server is on loopback
wait_health READY
# async_file PATH: a prediction of FILES whose image is at PATH on the slow server, completed webhook only;
# $SECS: how long the 202 took.
async_file() {
	local t0=$EPOCHREALTIME
	post "{\"input\": {\"image\": \"http://127.0.0.1:$FPORT$1\", \"text\": \"hello\"}, \"webhook\": \"http://127.0.0.1:$HPORT/h\", \"webhook_events_filter\": [\"completed\"]}" -H 'Prefer: respond-async'
	SECS=$(python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$t0" "$EPOCHREALTIME")
}
# completed N: waits (10 s at most) for the Nth webhook; prints its body.
completed() {
	local f=$T_WORK/hooks-files/$(printf '%03d' "$1").json
	for _ in $(seq 100); do
		[ -s "$f" ] && break
		sleep 0.1
	done
	cat "$f" 2>/dev/null
}
async_file /a.txt
expect_eq "$CODE" 202
expect_eq "$(field 'j["status"]')" starting "status in the 202"
expect_eq "$(python3 -c 'import sys; print(float(sys.argv[1]) < 1.5)' "$SECS")" True "the 202 came in $SECS s, before the file"
H1=$(completed 1)
expect_eq "$(echo "$H1" | json 'j["status"]')" succeeded "status ($H1)"
expect_eq "$(echo "$H1" | json 'j["output"]["image"]')" '["Path", true, "hi"]'
async_file /missing
expect_eq "$CODE" 202 "a file that will not be found"
H2=$(completed 2)
expect_eq "$(echo "$H2" | json 'j["status"]')" failed "status ($H2)"
expect_contains "$(echo "$H2" | json 'j["error"]')" "404"
kill -TERM "$SPID"

t_case "logs: JSON lines with Cog's keys; LOG_FORMAT=development: one readable line each"
LOGS=$(project logs hello.py hello.py:Predictor)
start "$LOGS"
wait_health READY
post '{"id": "log-1", "input": {"name": "x"}}'
kill -TERM "$SPID"
wait_exit "$SPID" 5
LINE=$(grep '"prediction succeeded"' "$LOGS.log")
expect_eq "$(echo "$LINE" | json '" ".join(sorted(j))')" "message predict_time prediction_id severity status timestamp" "keys"
expect_eq "$(echo "$LINE" | json 'j["severity"] + " " + j["prediction_id"] + " " + j["status"]')" "INFO log-1 succeeded"
expect_eq "$(echo "$LINE" | json 'type(j["predict_time"]).__name__')" float "predict_time in the log"
[[ $(echo "$LINE" | json 'j["timestamp"]') =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$ ]] ||
	t_fail "timestamp: $LINE"
expect_eq "$(grep -vc '^{' "$LOGS.log")" "0" "lines that are not JSON"
start "$LOGS" LOG_FORMAT=development
wait_health READY
post '{"id": "log-2", "input": {"name": "x"}}'
kill -TERM "$SPID"
wait_exit "$SPID" 5
LINE=$(grep 'prediction succeeded' "$LOGS.log")
[[ $LINE =~ ^[0-9-]+T[0-9:.]+Z\ \[info\ +\]\ prediction\ succeeded\ prediction_id=log-2\ status=succeeded\ predict_time=[0-9.e-]+$ ]] ||
	t_fail "development line: $LINE"
expect_eq "$(grep -c '^{' "$LOGS.log")" "0" "JSON lines in development format"

t_finish
