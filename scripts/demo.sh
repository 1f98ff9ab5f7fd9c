#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job, end to end: make a Debian 12 base with Python from Debian's own packages (once, cached:
# Docker Hub, where Cog's python:<version>-slim lives, may not be reachable), package examples/hello on it
# into an image, show it, answer a prediction from that image under bubblewrap (kiln predict --runtime
# bwrap: the image's own Python, nothing of this machine's), then serve the project over Cog's HTTP API with
# kiln serve and answer one over HTTP. Expects kiln built in build/ (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-build/kiln}
PORT=${PORT:-5055}
BASE=${KILN_DEMO_BASE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/bases/debian-python}
[ -f "$BASE/index.json" ] || echo "making the Debian base $BASE (once, about a minute)" >&2
bash scripts/debian-base.sh "$BASE" >/dev/null
# examples/hello has no base: it would get python:3.11-slim; KILN_PYTHON_BASE names the local one instead
KILN_PYTHON_BASE="oci:$BASE:bookworm" "$KILN" build examples/hello -t hello:latest
"$KILN" inspect hello:latest
"$KILN" predict hello:latest -i name=kiln --runtime bwrap
"$KILN" serve examples/hello --port "$PORT" --host 127.0.0.1 2>/tmp/kiln-demo-serve.log &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 100); do
	status=$(curl -s "http://127.0.0.1:$PORT/health-check" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true)
	[ "$status" == "READY" ] && break
	[ "$status" == "SETUP_FAILED" ] && { cat /tmp/kiln-demo-serve.log >&2; exit 1; }
	sleep 0.1
done
echo "POST /predictions {\"input\": {\"name\": \"kiln\"}}"
curl -s -H 'Content-Type: application/json' -d '{"input": {"name": "kiln"}}' "http://127.0.0.1:$PORT/predictions" |
	python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["status"], "->", r["output"]); sys.exit(r["status"] != "succeeded")'
