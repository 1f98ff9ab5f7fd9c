#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The runtime layer: one digest for every image built by one kiln, the shim as the Entrypoint, and the
# layer self-contained: the shim runs from a busybox-based root filesystem under bubblewrap and answers a
# prediction (with a Python from this machine mounted in) over Cog's HTTP API; kiln serve does the same
# on a project directory.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

export KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES PORT

H=$T_WORK/hello
cp -a "$KILN_SOURCE_DIR/examples/hello" "$H"
O=$T_WORK/other
mkdir -p "$O"
printf 'from cog import BasePredictor\n\nclass P(BasePredictor):\n    def predict(self, n: int = 2) -> int:\n        return n * n\n' >"$O/p.py"
printf 'run: p.py:P\n' >"$O/kiln.yaml"
runtime_digest() { echo "$1" | json '[l["digest"] for l in j["layers"] if l["kind"]=="runtime"][0]'; }

t_case "every image built by this kiln has the same runtime layer"
run_kiln build "$H" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["runtime"]')" "True" "runtime layer present"
R1=$(runtime_digest "$OUT")
run_kiln build "$O" --json
R2=$(runtime_digest "$OUT")
OUT=$(SOURCE_DATE_EPOCH=1700000000 KILN_HOME=$T_WORK/h2 "$KILN" build "$O" --json 2>/dev/null)
R3=$(runtime_digest "$OUT")
expect_eq "$R2" "$R1" "runtime layer of another project"
expect_eq "$R3" "$R1" "runtime layer with SOURCE_DATE_EPOCH in a fresh store"

t_case "the image's Entrypoint is the shim through the bundled loader"
run_kiln build "$H" -t hello:rt --output "oci:$T_WORK/hl:rt" --quiet
C=$(skopeo inspect --config "oci:$T_WORK/hl:rt")
expect_eq "$(echo "$C" | json 'j["config"]["Entrypoint"]')" '["/.kiln/lib/ld-linux-x86-64.so.2", "--library-path", "/.kiln/lib", "/.kiln/bin/kiln-shim"]' "Entrypoint"
expect_contains "$(echo "$C" | json 'j["config"]["Env"]')" "KILN_PYTHON_DIR=/.kiln/python"

# A busybox base image made here: busybox-static's binary and a few applet links.
mkdir -p "$T_WORK/bb/bin"
cp /bin/busybox "$T_WORK/bb/bin/busybox"
for a in sh ls cat; do ln -s busybox "$T_WORK/bb/bin/$a"; done
umoci init --layout "$T_WORK/base" && umoci new --image "$T_WORK/base:bb" &&
	umoci insert --image "$T_WORK/base:bb" "$T_WORK/bb/bin" /bin >/dev/null || t_fail "cannot make the busybox base"
B=$T_WORK/onbusybox
cp -a "$H" "$B"
printf 'build:\n  python_version: "3.11"\nrun: predict.py:Predictor\nbase: oci:%s:bb\n' "$T_WORK/base" >"$B/kiln.yaml"

# run_image ROOTFS PORT [BWRAP ARGS...]: the image's Entrypoint, Env and WorkingDir under bubblewrap.
run_image() {
	local rootfs=$1 port=$2 envs=()
	shift 2
	while IFS= read -r e; do envs+=(--setenv "${e%%=*}" "${e#*=}"); done < <(echo "$CFG" | json '"\n".join(j["config"]["Env"])')
	mapfile -t ep < <(echo "$CFG" | json '"\n".join(j["config"]["Entrypoint"])')
	bwrap --bind "$rootfs" / --proc /proc --dev /dev --tmpfs /tmp --unshare-pid --die-with-parent "$@" \
		"${envs[@]}" --setenv PORT "$port" --chdir /src "${ep[@]}" --host 127.0.0.1 2>"$T_WORK/shim-$port.log" &
	IPID=$!
	t_defer "kill -9 $IPID 2>/dev/null"
}

t_case "the runtime layer runs on a busybox root filesystem under bubblewrap (no Python there: a clear setup failure)"
run_kiln build "$B" -t onbb:1 --output "oci:$T_WORK/bbimg:1" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json '" ".join(l["kind"] for l in j["layers"])')" "base runtime code" "layers"
U=$(umoci unpack --image "$T_WORK/bbimg:1" "$T_WORK/bbroot" 2>&1) || t_fail "umoci unpack: $U"
CFG=$(skopeo inspect --config "oci:$T_WORK/bbimg:1")
PORT1=$(free_port)
run_image "$T_WORK/bbroot/rootfs" "$PORT1"
s=$(wait_settled "http://127.0.0.1:$PORT1" 20)
expect_eq "$s" "SETUP_FAILED" "status without Python"
expect_contains "$(curl -s "http://127.0.0.1:$PORT1/health-check")" "python3"
kill $IPID 2>/dev/null

t_case "an image on a base built by kiln gets the runtime layer once, from the base"
D=$T_WORK/derived
cp -a "$O" "$D"
printf 'run: p.py:P\nbase: oci:%s:1\n' "$T_WORK/bbimg" >"$D/kiln.yaml"
run_kiln build "$D" -t derived:1 --output "oci:$T_WORK/derived-img:1" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json '" ".join(l["kind"] for l in j["layers"])')" "base base base code" "layers"
expect_eq "$(echo "$OUT" | json 'len([l for l in j["layers"] if l["digest"] == "'"$R1"'"])')" "1" "runtime layers"
expect_eq "$(echo "$OUT" | json 'j["runtime"]')" "True" "runtime"
DIGESTS=$(skopeo inspect --raw "oci:$T_WORK/derived-img:1" | json '" ".join(l["digest"] for l in j["layers"])')
expect_eq "$(echo "$DIGESTS" | tr ' ' '\n' | sort | uniq -d)" "" "a layer listed twice in the manifest"
DIFFS=$(skopeo inspect --config "oci:$T_WORK/derived-img:1" | json 'len(j["rootfs"]["diff_ids"])')
expect_eq "$DIFFS" "4" "diff_ids"

t_case "the cached schema label follows every file of the generator (kiln_schema*.py)"
cp -r "$KILN_SOURCE_DIR/templates/python" "$T_WORK/runner"
label_marker() {
	OUT=$(KILN_PYTHON_DIR=$T_WORK/runner "$KILN" build "$O" -t marker:1 --output "oci:$T_WORK/marker:1" --quiet 2>&1) ||
		t_fail "build: $OUT"
	skopeo inspect --config "oci:$T_WORK/marker:1" |
		json 'json.loads(j["config"]["Labels"]["run.cog.openapi_schema"]).get("x-test-marker", "none")'
}
expect_eq "$(label_marker)" "none" "before"
# a module of the generator changes (not kiln_schema.py itself): the label must be made again
cat >>"$T_WORK/runner/kiln_schema_openapi.py" <<'PY'

_document = document


def document(info):
    d = _document(info)
    d["x-test-marker"] = "changed"
    return d
PY
expect_eq "$(label_marker)" "changed" "after kiln_schema_openapi.py changed"

t_case "with a Python mounted in, the image answers a prediction over Cog's HTTP API"
PY=$(readlink -f /usr/bin/python3)
PORT2=$(free_port)
run_image "$T_WORK/bbroot/rootfs" "$PORT2" --ro-bind "$PY" /usr/bin/python3 --ro-bind /usr/lib/python3.11 /usr/lib/python3.11 \
	--ro-bind /lib/x86_64-linux-gnu /lib/x86_64-linux-gnu --ro-bind /lib64 /lib64
s=$(wait_settled "http://127.0.0.1:$PORT2" 20)
expect_eq "$s" "READY" "status (log: $(tail -3 "$T_WORK/shim-$PORT2.log"))"
R=$(curl -s -m 10 -H 'Content-Type: application/json' -d '{"input":{"name":"kiln"}}' "http://127.0.0.1:$PORT2/predictions")
expect_eq "$(echo "$R" | json 'j["status"]')" "succeeded" "prediction status"
expect_eq "$(echo "$R" | json 'j["output"]')" "hello, kiln!" "output"
expect_eq "$(curl -s "http://127.0.0.1:$PORT2/openapi.json" | json 'j["components"]["schemas"]["Input"]["properties"]["name"]["default"]')" "world" "schema default"
kill $IPID 2>/dev/null

t_case "kiln serve runs the same shim on a project directory"
PORT3=$(free_port)
"$KILN" serve "$O" --port "$PORT3" --host 127.0.0.1 2>"$T_WORK/serve.log" &
SPID=$!
t_defer "kill -9 $SPID 2>/dev/null"
s=$(wait_settled "http://127.0.0.1:$PORT3" 20)
expect_eq "$s" "READY" "status"
R=$(curl -s -m 10 -H 'Content-Type: application/json' -d '{"input":{"n":7}}' "http://127.0.0.1:$PORT3/predictions")
expect_eq "$(echo "$R" | json 'j["output"]')" "49" "output"
R=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{"input":{"n":"x"}}' "http://127.0.0.1:$PORT3/predictions")
expect_eq "$R" "422" "invalid input"
kill -TERM $SPID
wait $SPID
expect_eq "$?" "0" "exit status after SIGTERM"

t_finish
