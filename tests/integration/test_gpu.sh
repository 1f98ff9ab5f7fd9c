#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# GPU awareness: the shim's NVML probe against a fake libnvidia-ml that behaves like the real one (no GPU
# driver exists here), build.gpu without a GPU (a clear SETUP_FAILED unless KILN_ALLOW_CPU=1), and the
# NVIDIA variables GPU images carry.
source "$(dirname "$0")/lib.sh"

SHIM=$(dirname "$KILN")/kiln-shim
FAKE=$(dirname "$KILN")/libfake_nvml.so
unset KILN_PREFETCH_FILES PORT KILN_ALLOW_CPU KILN_NVML_LIBRARY
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

P=$T_WORK/gpu
mkdir -p "$P"
printf 'from cog import BasePredictor\n\nclass P(BasePredictor):\n    def predict(self) -> str:\n        return "ok"\n' >"$P/p.py"
printf 'build:\n  gpu: true\n  cuda: "12.4"\nrun: p.py:P\n' >"$P/kiln.yaml"

# start ENV...: the shim on project P with ENV; $URL, $SPID; waits for READY or SETUP_FAILED into $STATUS.
start() {
	local port
	port=$(free_port)
	env "$@" "$SHIM" --project "$P" --host 127.0.0.1 --port "$port" 2>"$T_WORK/shim-$port.log" &
	SPID=$!
	t_defer "kill -9 $SPID 2>/dev/null"
	URL=http://127.0.0.1:$port
	STATUS=""
	for _ in $(seq 150); do
		STATUS=$(curl -s -m 2 "$URL/health-check" | json 'j["status"]' 2>/dev/null)
		[ "$STATUS" == "READY" ] || [ "$STATUS" == "SETUP_FAILED" ] && break
		sleep 0.1
	done
	LOG=$T_WORK/shim-$port.log
}

t_case "the probe reports the GPUs NVML sees in /health-check and the start log"
start KILN_NVML_LIBRARY="$FAKE" FAKE_NVML_GPUS=2
expect_eq "$STATUS" "READY" "status"
H=$(curl -s "$URL/health-check")
expect_eq "$(echo "$H" | json 'j["kiln"]["gpu"]["count"]')" "2" "GPU count"
expect_eq "$(echo "$H" | json 'j["kiln"]["gpu"]["gpus"][0]["name"]')" "NVIDIA H100 80GB HBM3" "GPU name"
expect_eq "$(echo "$H" | json 'j["kiln"]["gpu"]["driver"]')" "550.54.15" "driver"
[ "$(echo "$H" | json 'j["kiln"]["gpu"]["gpus"][1]["memory_total"]')" -gt 0 ] || t_fail "no memory reported"
expect_contains "$(grep 'kiln-shim listening' "$LOG")" "NVIDIA H100 80GB HBM3"
kill $SPID

t_case "build.gpu: true without a GPU is a clear setup failure"
start KILN_NVML_LIBRARY=/nonexistent/libnvidia-ml.so.1
expect_eq "$STATUS" "SETUP_FAILED" "status"
H=$(curl -s "$URL/health-check")
expect_contains "$H" "no GPU was found"
expect_contains "$H" "KILN_ALLOW_CPU=1"
R=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{"input":{}}' "$URL/predictions")
expect_eq "$R" "503" "prediction after a setup failure"
kill $SPID

t_case "NVML that fails to initialize: the driver's words are reported"
start KILN_NVML_LIBRARY="$FAKE" FAKE_NVML_FAIL_INIT=1
expect_eq "$STATUS" "SETUP_FAILED" "status"
expect_contains "$(curl -s "$URL/health-check")" "Driver Not Loaded"
kill $SPID

t_case "KILN_ALLOW_CPU=1 runs a GPU model on the CPU"
start KILN_NVML_LIBRARY=/nonexistent/libnvidia-ml.so.1 KILN_ALLOW_CPU=1
expect_eq "$STATUS" "READY" "status"
R=$(curl -s -H 'Content-Type: application/json' -d '{"input":{}}' "$URL/predictions")
expect_eq "$(echo "$R" | json 'j["output"]')" "ok" "output"
kill $SPID

t_case "GPU images carry NVIDIA_VISIBLE_DEVICES and NVIDIA_DRIVER_CAPABILITIES"
run_kiln build "$P" -t gpu:1 --output "oci:$T_WORK/gi:1" --quiet
expect_rc 0
ENV=$(skopeo inspect --config "oci:$T_WORK/gi:1" | json 'j["config"]["Env"]')
expect_contains "$ENV" "NVIDIA_VISIBLE_DEVICES=all"
expect_contains "$ENV" "NVIDIA_DRIVER_CAPABILITIES=compute,utility"

t_finish
