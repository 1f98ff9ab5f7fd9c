#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The probes kiln deploy's manifests use, over real HTTP: /readyz fails until READY and again when the
# user's healthcheck() fails, setup failed or the worker died; /livez fails only once a restart is what
# helps; neither keeps an idle shim alive. Then scale to zero on one machine: kiln serve REF started by
# systemd-socket-activate answers the request that started it, exits when idle, and a socket unit starts it
# again on the next request without losing one.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT

# probes READY LIVE: /readyz answers READY (a status code) and /livez LIVE. Sets $CODE and $BODY (/readyz's).
probes() {
	req GET /livez
	expect_eq "$CODE" "$2" "/livez ($BODY)"
	req GET /readyz
	expect_eq "$CODE" "$1" "/readyz ($BODY)"
}

t_case "a slow setup: not ready but live while STARTING, then both; HEAD works, POST is 405"
SLEEPY=$(project sleepy slow_setup.py slow_setup.py:Predictor)
start "$SLEEPY" SETUP_SECONDS=3
probes 503 200
expect_eq "$BODY" '{"status":"STARTING"}'
wait_health READY
probes 200 200
expect_eq "$BODY" '{"status":"READY"}'
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' -I "$URL/readyz")" 200 "HEAD /readyz"
req POST /readyz
expect_eq "$CODE" 405
stop_shim

t_case "BUSY is ready; a failing healthcheck() is not, and live; healthy again, ready again"
HC=$(project hc healthcheck.py healthcheck.py:Predictor "concurrency:" "  max: 1")
start "$HC"
wait_health READY
post '{"id": "b1", "input": {"seconds": 3}}' -H 'Prefer: respond-async'
wait_health BUSY 3
probes 200 200
expect_eq "$BODY" '{"status":"BUSY"}'
wait_health READY 10
echo false >"$HC/health"
probes 503 200
expect_eq "$BODY" '{"status":"UNHEALTHY"}'
echo raise >"$HC/health"
probes 503 200
echo ok >"$HC/health"
probes 200 200
stop_shim

t_case "setup failed: neither ready nor live"
BAD=$(project bad setup_fails.py setup_fails.py:Predictor)
start "$BAD"
wait_health SETUP_FAILED
probes 503 503
expect_eq "$BODY" '{"status":"SETUP_FAILED"}'
kill -TERM "$SPID"

t_case "a worker that died: DEFUNCT, neither ready nor live"
CRASH=$(project crash crash.py crash.py:Predictor)
start "$CRASH"
wait_health READY
probes 200 200
post '{"input": {}}'
wait_health DEFUNCT 2
probes 503 503
expect_eq "$BODY" '{"status":"DEFUNCT"}'
kill -TERM "$SPID"

t_case "probes are not requests: an idle shim probed every 0.2 s still exits after --idle-exit"
HELLO=$(project hello hello.py hello.py:Predictor)
start "$HELLO" -- --idle-exit 2
wait_health READY
for _ in $(seq 40); do
	kill -0 "$SPID" 2>/dev/null || break
	curl -s -o /dev/null "$URL/readyz"
	curl -s -o /dev/null "$URL/livez"
	sleep 0.2
done
wait_exit "$SPID" 1
expect_rc 0

t_case "KILN_LISTEN_FD that is not a socket: exit 2 naming it"
KILN_LISTEN_FD=3 "$SHIM" --project "$HELLO" --port 0 3<"$HELLO/kiln.yaml" 2>"$T_WORK/notsock.err"
expect_eq "$?" 2 "exit status"
expect_contains "$(cat "$T_WORK/notsock.err")" "KILN_LISTEN_FD: '3' is not a socket"

t_case "socket-activated, a request held through a setup that fails gets its 503, not a hang"
python3 "$KILN_SOURCE_DIR/tests/integration/socket_unit.py" "$SHIM" --project "$BAD" >"$T_WORK/bad.out" \
	2>"$T_WORK/bad.err" &
UPID=$!
t_defer "kill $UPID 2>/dev/null"
for _ in $(seq 50); do [ -s "$T_WORK/bad.out" ] && break; sleep 0.1; done
URL=http://127.0.0.1:$(head -1 "$T_WORK/bad.out")
post '{"input": {}}' -m 30
expect_eq "$CODE" 503
expect_eq "$BODY" '{"error":"setup failed: see /health-check","status":"failed"}'
kill "$UPID"
wait "$UPID" 2>/dev/null

# ---------------------------------------------------------------- scale to zero on one machine
debian_base || exit 1
IMG=$T_WORK/img
mkdir -p "$IMG"
cp "$FIX/hello.py" "$IMG/"
printf 'base: oci:%s:bookworm\nrun: hello.py:Predictor\n' "$DEBIAN_BASE" >"$IMG/kiln.yaml"
run_kiln build "$IMG" -t probes/hello:1
[ "$RC" -eq 0 ] || { t_fail "build: $ERR"; t_finish; exit 1; }

t_case "systemd-socket-activate starts kiln serve REF: the first request is answered, idle exit ends it"
# (it passes on only the environment named with -E, as a unit's Environment= does)
socket_activate_once "$(free_port)" socket -E KILN_HOME -E HOME -E PATH -E KILN_ALLOW_CPU \
	"$KILN" serve probes/hello:1 --idle-exit 3
expect_contains "$(cat "$T_WORK/activate.err")" '(socket activation)'

t_case "a socket unit starts it again on the next requests: none lost, one start each time"
socket_unit_cycle "$KILN" serve probes/hello:1 --idle-exit 3

t_case "SIGTERM to kiln serve REF with a prediction in flight: answered, then kiln exits 0 after the shim"
SLOWIMG=$T_WORK/slowimg
mkdir -p "$SLOWIMG"
cp "$FIX/slow.py" "$SLOWIMG/"
printf 'base: oci:%s:bookworm\nrun: slow.py:Predictor\n' "$DEBIAN_BASE" >"$SLOWIMG/kiln.yaml"
run_kiln build "$SLOWIMG" -t probes/slow:1
expect_rc 0
SPORT=$(free_port)
"$KILN" serve probes/slow:1 --port "$SPORT" >"$T_WORK/slow.out" 2>"$T_WORK/slow.err" &
SPID=$!
t_defer "kill -9 $SPID 2>/dev/null"
URL=http://127.0.0.1:$SPORT
wait_health READY 60
curl -s -m 60 -o "$T_WORK/slow.body" -w '%{http_code}' -H 'Content-Type: application/json' \
	-d '{"input": {"seconds": 4}}' "$URL/predictions" >"$T_WORK/slow.code" &
CPID=$!
wait_health BUSY 10
kill -TERM "$SPID"
sleep 1
kill -0 "$SPID" 2>/dev/null || t_fail "kiln serve exited while its shim drained ($(tail -3 "$T_WORK/slow.err"))"
wait "$CPID"
expect_eq "$(cat "$T_WORK/slow.code")" 200 "the prediction in flight ($(cat "$T_WORK/slow.body"))"
expect_eq "$(json 'j["output"]' <"$T_WORK/slow.body")" "woke up"
wait_exit "$SPID" 20
expect_rc 0
expect_contains "$(cat "$T_WORK/slow.err")" "stopping on a signal"

t_finish
