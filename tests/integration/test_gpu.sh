#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# GPU awareness: the shim's NVML probe against a fake libnvidia-ml that behaves like the real one (no GPU
# driver exists here), build.gpu without a GPU (a clear SETUP_FAILED unless KILN_ALLOW_CPU=1), and the
# NVIDIA variables GPU images carry.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

FAKE=$(dirname "$KILN")/libfake_nvml.so
unset KILN_PREFETCH_FILES PORT KILN_ALLOW_CPU KILN_NVML_LIBRARY

P=$T_WORK/gpu
mkdir -p "$P"
printf 'from cog import BasePredictor\n\nclass P(BasePredictor):\n    def predict(self) -> str:\n        return "ok"\n' >"$P/p.py"
printf 'build:\n  gpu: true\n  cuda: "12.4"\nrun: p.py:P\n' >"$P/kiln.yaml"

# start_gpu ENV...: the shim on project P with ENV, its log in $LOG; $URL, $SPID; waits (15 s at most) for
# READY or SETUP_FAILED into $STATUS.
GPU_STARTS=0
start_gpu() {
	GPU_STARTS=$((GPU_STARTS + 1))
	LOG=$T_WORK/shim-$GPU_STARTS.log
	spawn_shim "$P" "$LOG" "$@"
	STATUS=$(wait_settled "$URL" 15)
}

t_case "the probe reports the GPUs NVML sees in /health-check and the start log"
start_gpu KILN_NVML_LIBRARY="$FAKE" FAKE_NVML_GPUS=2
expect_eq "$STATUS" "READY" "status"
H=$(curl -s "$URL/health-check")
expect_eq "$(echo "$H" | json 'j["kiln"]["gpu"]["count"]')" "2" "GPU count"
expect_eq "$(echo "$H" | json 'j["kiln"]["gpu"]["gpus"][0]["name"]')" "NVIDIA H100 80GB HBM3" "GPU name"
expect_eq "$(echo "$H" | json 'j["kiln"]["gpu"]["driver"]')" "550.54.15" "driver"
[ "$(echo "$H" | json 'j["kiln"]["gpu"]["gpus"][1]["memory_total"]')" -gt 0 ] || t_fail "no memory reported"
expect_contains "$(grep 'kiln-shim listening' "$LOG")" "NVIDIA H100 80GB HBM3"
kill $SPID

t_case "through the bundled loader (--library-path hides LD_LIBRARY_PATH), NVML is found in LD_LIBRARY_PATH"
mkdir -p "$T_WORK/driver"
cp "$FAKE" "$T_WORK/driver/libnvidia-ml.so.1"
# The image's Entrypoint form: the loader with --library-path. /nonexistent: this machine's libraries come
# from the loader's cache, and LD_LIBRARY_PATH is ignored by the loader.
printf '#!/bin/sh\nexec /lib64/ld-linux-x86-64.so.2 --library-path /nonexistent "%s" "$@"\n' "$SHIM" >"$T_WORK/loader-shim"
chmod +x "$T_WORK/loader-shim"
REAL_SHIM=$SHIM
SHIM=$T_WORK/loader-shim
start_gpu LD_LIBRARY_PATH="/nonexistent:$T_WORK/driver" FAKE_NVML_GPUS=1 KILN_PYTHON_DIR="$KILN_SOURCE_DIR/templates/python"
SHIM=$REAL_SHIM
expect_eq "$STATUS" "READY" "status (log: $(tail -2 "$LOG"))"
expect_eq "$(curl -s "$URL/health-check" | json 'j["kiln"]["gpu"]["count"]')" "1" "GPU count"
kill $SPID

t_case "build.gpu: true without a GPU is a clear setup failure"
start_gpu KILN_NVML_LIBRARY=/nonexistent/libnvidia-ml.so.1
expect_eq "$STATUS" "SETUP_FAILED" "status"
H=$(curl -s "$URL/health-check")
expect_contains "$H" "no GPU was found"
expect_contains "$H" "KILN_ALLOW_CPU=1"
R=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{"input":{}}' "$URL/predictions")
expect_eq "$R" "503" "prediction after a setup failure"
kill $SPID

t_case "NVML that fails to initialize: the driver's words are reported"
start_gpu KILN_NVML_LIBRARY="$FAKE" FAKE_NVML_FAIL_INIT=1
expect_eq "$STATUS" "SETUP_FAILED" "status"
expect_contains "$(curl -s "$URL/health-check")" "Driver Not Loaded"
kill $SPID

t_case "KILN_ALLOW_CPU=1 runs a GPU model on the CPU"
start_gpu KILN_NVML_LIBRARY=/nonexistent/libnvidia-ml.so.1 KILN_ALLOW_CPU=1
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
