#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The shim under load: wrk posting predictions for KILN_LOAD_SECONDS (default 60) over 64 connections to a
# no-op native predictor that takes 64 at once: no socket error, no answer but 200, and the shim's memory
# flat (its RSS at the end within 10 % of its RSS a third of the way in, once the finished predictions it
# keeps have reached --keep-bytes); then it still answers a prediction and stops cleanly on SIGTERM.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

SECONDS_TOTAL=${KILN_LOAD_SECONDS:-60}
command -v wrk >/dev/null || { echo "wrk is not installed (scripts/deps.sh installs it)" >&2; exit 1; }
P=$T_WORK/noop
mkdir -p "$P/lib"
cp "$(dirname "$KILN")/tests-native/libnoop.so" "$P/lib/"
printf 'run: native:lib/libnoop.so\nconcurrency:\n  max: 64\n' >"$P/kiln.yaml"
cat >"$T_WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"input": {}}'
wrk.headers["Content-Type"] = "application/json"
EOF
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$SPID/status"; }

t_case "wrk: $SECONDS_TOTAL s of predictions over 64 connections: all 200, no socket error, RSS flat"
start "$P" -- --keep-bytes 1048576
wait_health READY
wrk -t 2 -c 64 -d "${SECONDS_TOTAL}s" -s "$T_WORK/post.lua" --latency "$URL/predictions" >"$T_WORK/wrk.out" 2>&1 &
WRK=$!
sleep $((SECONDS_TOTAL / 3))
RSS1=$(rss)
wait "$WRK"
RSS2=$(rss)
cat "$T_WORK/wrk.out"
REQS=$(awk '/requests in/ { print $1 }' "$T_WORK/wrk.out")
[ "${REQS:-0}" -gt 1000 ] || t_fail "wrk made only ${REQS:-no} requests: $(cat "$T_WORK/wrk.out")"
expect_not_contains "$(cat "$T_WORK/wrk.out")" "Socket errors"
expect_not_contains "$(cat "$T_WORK/wrk.out")" "Non-2xx or 3xx responses"
echo "# $REQS predictions; RSS ${RSS1} kB at a third, ${RSS2} kB at the end"
[ "$RSS2" -le $((RSS1 + RSS1 / 10)) ] || t_fail "RSS grew from $RSS1 kB to $RSS2 kB (more than 10 %)"
post '{"input": {}}'
expect_eq "$CODE" 200 "a prediction after the load"
expect_eq "$(field 'j["status"]')" succeeded
kill -TERM "$SPID"
wait_exit "$SPID" 10

t_finish
