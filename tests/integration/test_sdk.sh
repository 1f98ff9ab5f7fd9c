#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The bundled cog module against Cog 0.22's Python SDK, through kiln-shim over HTTP and kiln predict: every
# SDK name importable, user metrics (modes, dot paths, deletion, threads, async) in the response's metrics and
# its webhook next to predict_time, refused metric calls by Cog's message, current_scope().context from the
# request, and the predictor's healthcheck() (sync and async) turning /health-check UNHEALTHY.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

FIX=$KILN_SOURCE_DIR/tests/fixtures/predictors
export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT
cd "$T_WORK" || exit 1

# project NAME FILE [YAML...]: a project directory with the fixture FILE run as FILE:Predictor.
project() {
	local dir=$T_WORK/$1 file=$2
	shift 2
	mkdir -p "$dir"
	cp "$FIX/$file" "$dir/"
	{
		echo "run: $file:Predictor"
		printf '%s\n' "$@"
	} >"$dir/kiln.yaml"
	echo "$dir"
}

# ---- sdk_names.py: every name of Cog 0.22's SDK
t_case "every name of Cog 0.22's cog module imports; the deprecated ones say so once, as Cog does"
NAMES=$(project names sdk_names.py)
run_kiln predict "$NAMES" --runtime native
expect_rc 0
expect_eq "$OUT" "AsyncConcatenateIterator BaseModel BasePredictor BaseRunner CancelationException ConcatenateIterator ExperimentalFeatureWarning FieldInfo File Input Opaque Path Secret URLFile URLPath __version__ concurrent current_scope emit_metric streaming"
expect_contains "$ERR" "cog: ExperimentalFeatureWarning is deprecated and will be removed in a future release."
expect_contains "$ERR" "cog: emit_metric() is deprecated and will be removed in a future release. Use current_scope().record_metric(name, value) instead."

# ---- metrics.py over HTTP
METRICS=$(project metrics metrics.py)
start "$METRICS"
t_case "metrics: recorded values are in the response's metrics, merged as Cog merges them, predict_time the runtime's"
wait_health READY
post '{"input": {}, "context": {"user": "ada", "team": "ml"}}'
expect_eq "$CODE" 200
expect_eq "$(field 'j["status"]')" succeeded
expect_eq "$(field 'j["output"]')" "[('team', 'ml'), ('user', 'ada')]" "current_scope().context"
expect_eq "$(field '{k: v for k, v in j["metrics"].items() if k != "predict_time"}')" \
	'{"temperature": 0.7, "tokens": 3, "steps": ["pre", "infer"], "timing": {"preprocess": 0.12, "inference": 0.85}, "from_thread": true}'
expect_eq "$(field 'list(j["metrics"])[-1]')" predict_time "predict_time comes last"
expect_eq "$(field 'j["metrics"]["predict_time"] < 99')" True "the runtime's predict_time wins"
expect_contains "$(field 'j["logs"]')" "cog: ignoring metric 'a..b': empty key or empty dot-path segment"

t_case "metrics: a prediction without context has an empty one; each prediction starts with no metrics"
post '{"input": {}}'
expect_eq "$(field 'j["output"]')" "[]"
expect_eq "$(field 'j["metrics"]["tokens"]')" 3 "tokens counted again from 0"

t_case "metrics: bad calls fail the prediction with Cog's TypeError message"
for m in "bad-mode|Invalid metric mode: 'sum'. Expected 'replace', 'incr', or 'append'." \
	"bad-type|Unsupported metric value type: object. Expected bool, int, float, str, list, or dict." \
	"type-change|Metric 'n' has type int, cannot set to str without deleting first" \
	"incr-str|Increment mode requires int or float, got str"; do
	post "{\"input\": {\"mode\": \"${m%%|*}\"}}"
	expect_eq "$(field 'j["status"]')" failed "${m%%|*}"
	expect_eq "$(field 'j["error"]')" "${m#*|}" "${m%%|*}"
	expect_contains "$(field 'j["logs"]')" "TypeError: ${m#*|}"
	expect_eq "$(field 'j["metrics"].get("n")')" "$([ "${m%%|*}" == type-change ] && echo 1 || echo None)" \
		"what was recorded before the error is kept (${m%%|*})"
done

t_case "metrics: the completed webhook carries them"
hook "$T_WORK/hooks"
post "{\"input\": {}, \"webhook\": \"http://127.0.0.1:$HPORT/h\", \"webhook_events_filter\": [\"completed\"]}" \
	-H 'Prefer: respond-async'
expect_eq "$CODE" 202
HOOK=$(first_hook "$T_WORK/hooks")
expect_eq "$(echo "$HOOK" | json 'j["status"]')" succeeded
expect_eq "$(echo "$HOOK" | json '[j["metrics"]["tokens"], j["metrics"]["timing"]["inference"]]')" '[3, 0.85]'

t_case "metrics while it runs: in its processing webhook and its state, as the predictor records them"
hook "$T_WORK/live"
post "{\"id\": \"live\", \"input\": {\"mode\": \"live\"}, \"webhook\": \"http://127.0.0.1:$HPORT/h\", \"webhook_events_filter\": [\"logs\", \"completed\"]}" \
	-H 'Prefer: respond-async'
expect_eq "$CODE" 202
HOOK=$(first_hook "$T_WORK/live")
expect_eq "$(echo "$HOOK" | json '[j["status"], j["logs"], j["metrics"]["stage"]]')" '["processing", "loaded\n", "loaded"]' \
	"the logs webhook"
req PUT /predictions/live -H 'Content-Type: application/json' -d '{"input": {"mode": "live"}}'
expect_eq "$(field '[j["status"], j["metrics"]["stage"]]')" '["processing", "loaded"]' "a PUT joining it"
for _ in $(seq 50); do grep -qs succeeded "$T_WORK"/live/*.json && break; sleep 0.1; done
expect_eq "$(json 'j["metrics"]["stage"]' <"$(ls "$T_WORK"/live/*.json | tail -1)")" done "the completed webhook"
kill "$SPID"

t_case "metrics: kiln predict --format json shows them too"
run_kiln predict "$METRICS" --format json --runtime native
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["metrics"]["steps"]')" '["pre", "infer"]'

t_case "metrics: concurrent async predictions keep their own"
ASYNC=$(project metrics_async metrics_async.py "concurrency:" "  max: 2")
start "$ASYNC"
wait_health READY
post '{"id": "m3", "input": {"n": 3}}' -H 'Prefer: respond-async'
post '{"id": "m5", "input": {"n": 5}}'
expect_eq "$(field 'j["metrics"]["count"]')" 5
sleep 0.3
req PUT /predictions/m3 -H 'Content-Type: application/json' -d '{"id": "m3", "input": {"n": 3}}'
expect_eq "$(field '[j["status"], j["metrics"]["count"]]')" '["succeeded", 3]' "the finished m3, as PUT answers it"
kill "$SPID"

# ---- healthcheck.py / healthcheck_async.py
# health_is STATUS [ERROR]: one GET /health-check says STATUS, with user_healthcheck_error ERROR (or none).
health_is() {
	req GET /health-check
	expect_eq "$CODE" 200
	expect_eq "$(field 'j["status"]')" "$1" "status"
	expect_eq "$(field 'j.get("user_healthcheck_error")')" "${2:-None}" "user_healthcheck_error"
}
for kind in sync async; do
	t_case "healthcheck ($kind): READY while it passes, UNHEALTHY with Cog's words when it fails, raises or times out"
	file=healthcheck.py raised="RuntimeError: the model lost its GPU"
	[ $kind == async ] && file=healthcheck_async.py raised="ValueError: cache unreachable"
	HC=$(project "hc_$kind" "$file")
	start "$HC"
	wait_health READY
	health_is READY
	echo false >"$HC/health"
	health_is UNHEALTHY "Healthcheck failed: user-defined healthcheck returned False"
	echo raise >"$HC/health"
	health_is UNHEALTHY "Healthcheck failed: $raised"
	echo slow >"$HC/health"
	health_is UNHEALTHY "Healthcheck failed: user-defined healthcheck timed out after 5.0 seconds"
	echo ok >"$HC/health"
	health_is READY
	post '{"input": {}}'
	expect_eq "$(field 'j["status"]')" succeeded "a prediction after the checks"

	t_case "healthcheck ($kind): not run while busy (BUSY, as Cog)"
	echo false >"$HC/health"
	post '{"id": "busy", "input": {"seconds": 2}}' -H 'Prefer: respond-async'
	health_is BUSY
	kill "$SPID"
done

t_case "healthcheck returning None is healthy, as in Cog"
HC=$T_WORK/hc_sync
echo none >"$HC/health"
start "$HC"
wait_health READY
health_is READY
kill "$SPID"

t_case "a predictor without healthcheck() is READY and never asked"
start "$NAMES"
wait_health READY
health_is READY
kill "$SPID"

t_finish
