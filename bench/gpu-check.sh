#!/usr/bin/env bash
# bench/gpu-check.sh: the shim's GPU probe and one GPU-visible prediction on a real NVIDIA driver.
#
#   bash bench/gpu-check.sh prepare DIR   # here: build a `build.gpu: true` image, unpack its root filesystem
#   bash bench/gpu-check.sh run DIR       # on the GPU machine: run the image's Entrypoint from DIR/rootfs
#
# `prepare` needs build/kiln (cmake) and umoci; it writes DIR/rootfs (the image's layers: the runtime layer
# and the project, on `scratch`) and DIR/config.json (the image's config). `run` needs only a python3 with
# PyTorch and the NVIDIA driver: it starts the Entrypoint (the bundled loader, kiln-shim) the way a container
# runtime would, from the unpacked root, polls /health-check until READY, prints it next to `nvidia-smi`,
# sends one prediction that multiplies matrices on the GPU, and stops the shim with SIGTERM. Everything it
# prints goes to standard output (and to $OUT/gpu-check.txt when OUT is set).
set -euo pipefail
mode=${1:-} dir=${2:-}
[[ ($mode == prepare || $mode == run) && -n $dir ]] || { echo "usage: $0 prepare|run DIR" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ $mode == prepare ]]; then
	kiln=${KILN:-$root/build/kiln}
	rm -rf "$dir" && mkdir -p "$dir/project"
	dir=$(cd "$dir" && pwd)
	cat >"$dir/project/predict.py" <<'EOF'
import json

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        import torch

        self.torch = torch
        self.device = torch.device("cuda")
        torch.manual_seed(0)
        self.weights = torch.randn(4096, 4096, device=self.device)
        print("setup: weights on", torch.cuda.get_device_name(0))

    def predict(self, n: int = Input(default=4096, ge=1, le=16384)) -> str:
        t = self.torch
        x = t.ones(n, 4096, device=self.device)
        y = x @ self.weights
        t.cuda.synchronize()
        free, total = t.cuda.mem_get_info()
        return json.dumps({
            "device": t.cuda.get_device_name(0),
            "capability": list(t.cuda.get_device_capability(0)),
            "torch": t.__version__,
            "cuda": t.version.cuda,
            "result_device": str(y.device),
            "result_shape": list(y.shape),
            "checksum": round(float(y.sum().item()), 3),
            "mem_free_gib": round(free / 2**30, 1),
            "mem_total_gib": round(total / 2**30, 1),
        })
EOF
	printf 'build:\n  gpu: true\n  cuda: "12.4"\nrun: predict.py:Predictor\nserve:\n  min_instances: 1\n  max_instances: 4\n  scaledown_window: 600\n' >"$dir/project/kiln.yaml"
	KILN_HOME=$dir/home "$kiln" build "$dir/project" -t gpu-check:1 --output "oci:$dir/image:1" --quiet
	umoci unpack --image "$dir/image:1" "$dir/bundle" >/dev/null
	mv "$dir/bundle/rootfs" "$dir/rootfs"
	mv "$dir/bundle/config.json" "$dir/config.json"
	rm -rf "$dir/bundle" "$dir/home" "$dir/image"
	echo "prepared $dir: $(du -sh "$dir/rootfs" | cut -f1) root filesystem"
	exit 0
fi

dir=$(cd "$dir" && pwd)
exec > >(tee "${OUT:-/tmp}/gpu-check.txt") 2>&1
rootfs=$dir/rootfs
section() { printf '\n== %s\n' "$*"; }
section "machine"
uname -r
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi failed"
python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda available", torch.cuda.is_available())'  || echo "no torch"
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
ldconfig -p | grep -m2 libnvidia-ml || echo "libnvidia-ml is not in the loader's cache"

# The Entrypoint and Env of the image, with / replaced by the unpacked root (no chroot here).
mapfile -t ep < <(python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["process"]["args"]))' "$dir/config.json")
mapfile -t envs < <(python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["process"]["env"]))' "$dir/config.json")
section "image config"
printf 'Entrypoint: %s\n' "${ep[*]}"
printf 'Env: %s\n' "${envs[*]}"
args=()
for a in "${ep[@]}"; do [[ $a == /.kiln/* ]] && args+=("$rootfs$a") || args+=("$a"); done
for e in "${envs[@]}"; do
	case $e in
	KILN_PYTHON_DIR=*) export KILN_PYTHON_DIR="$rootfs${e#*=}" ;;
	PATH=* | HOME=*) ;;
	*) export "${e?}" ;;
	esac
done
port=5000
section "kiln-shim"
t0=$EPOCHREALTIME
(cd "$rootfs/src" && exec "${args[@]}" --project "$rootfs/src" --host 127.0.0.1 --port $port) 2>"$dir/shim.log" &
spid=$!
status=
for _ in $(seq 1200); do
	status=$(curl -s -m 2 "http://127.0.0.1:$port/health-check" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true)
	[[ $status == READY || $status == SETUP_FAILED || $status == DEFUNCT ]] && break
	kill -0 $spid 2>/dev/null || break
	sleep 0.1
done
t1=$EPOCHREALTIME
echo "status $status after $(python3 -c "print(round($t1 - $t0, 2))") s"
section "GET /health-check"
curl -s -m 5 "http://127.0.0.1:$port/health-check" | python3 -m json.tool || true
section "POST /predictions {\"input\":{\"n\":8192}}"
curl -s -m 120 -H 'Content-Type: application/json' -d '{"input":{"n":8192}}' "http://127.0.0.1:$port/predictions" |
	python3 -c 'import json, sys; j = json.load(sys.stdin); o = j.get("output"); j["output"] = json.loads(o) if o else o; print(json.dumps(j, indent=1))' || true
section "GET /openapi.json (Input)"
curl -s -m 5 "http://127.0.0.1:$port/openapi.json" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["components"]["schemas"]["Input"]))' || true
kill -TERM $spid
wait $spid && rc=0 || rc=$?
section "shim exit status $rc after SIGTERM; its log"
cat "$dir/shim.log"

# The loader without its cache (--inhibit-cache): NVML is then found only through the shim's own search of
# LD_LIBRARY_PATH and the driver's usual directories, as on a platform whose image has no ld.so.cache
# entry for the driver.
section "NVML without the loader's cache (ld.so --inhibit-cache), LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
(cd "$rootfs/src" && exec "${args[0]}" --inhibit-cache "${args[@]:1}" --project "$rootfs/src" --host 127.0.0.1 \
	--port $((port + 1))) 2>"$dir/shim2.log" &
spid=$!
for _ in $(seq 100); do
	curl -s -m 2 -o /dev/null "http://127.0.0.1:$((port + 1))/health-check" && break
	sleep 0.1
done
curl -s -m 5 "http://127.0.0.1:$((port + 1))/health-check" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["kiln"]["gpu"]))' || true
kill -TERM $spid
wait $spid || true
head -1 "$dir/shim2.log"
