#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The projects in examples/: each made with its own `make` step (nothing downloaded), packaged by kiln build,
# served by kiln serve and from its image under bubblewrap, and asked real predictions over Cog's HTTP API.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

export KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES KILN_PREFETCH COG_SETUP_TIMEOUT PORT

# example NAME: a copy of examples/NAME in the scratch directory, without what an earlier make left there.
# Prints its path.
example() {
	local dir=$T_WORK/$1
	cp -a "$KILN_SOURCE_DIR/examples/$1" "$dir"
	make -s -C "$dir" clean >/dev/null
	echo "$dir"
}

# serve DIR: `kiln serve DIR` in the background on a free port, its stderr in DIR.log; waits until it is READY
# (30 s at most), failing the case if it is not. Sets $SPID and $URL.
serve() {
	local port s
	port=$(free_port)
	"$KILN" serve "$1" --port "$port" --host 127.0.0.1 2>"$1.log" &
	SPID=$!
	t_defer "kill -9 $SPID 2>/dev/null"
	URL=http://127.0.0.1:$port
	s=$(wait_settled "$URL" 30)
	[ "$s" == READY ] || t_fail "kiln serve $1 is '$s', not READY: $(tail -5 "$1.log")"
}

# stop: SIGTERM to $SPID; the case fails unless it exits with 0 within 10 s.
stop() {
	kill -TERM "$SPID"
	wait_exit "$SPID" 10
	expect_eq "$RC" 0 "exit status of kiln serve after SIGTERM"
}

# run_image LAYOUT:TAG [BWRAP ARGS...]: the image unpacked and run as a container would run it (its Entrypoint,
# Env and WorkingDir) under bubblewrap, BWRAP ARGS adding mounts; waits until it is READY (30 s at most).
# Sets $IPID and $URL.
run_image() {
	local image=$1 root=$T_WORK/root-$RANDOM port cfg s u envs=() ep=()
	shift
	u=$(umoci unpack --image "$image" "$root" 2>&1) || t_fail "umoci unpack: $u"
	cfg=$(skopeo inspect --config "oci:$image")
	# Env values may hold newlines (KILN_PREFETCH_FILES): split on NUL.
	while IFS= read -r -d '' e; do envs+=(--setenv "${e%%=*}" "${e#*=}"); done < <(echo "$cfg" |
		python3 -c 'import json,sys; print("".join(e + "\0" for e in json.load(sys.stdin)["config"]["Env"]), end="")')
	mapfile -t ep < <(echo "$cfg" | json '"\n".join(j["config"]["Entrypoint"])')
	port=$(free_port)
	bwrap --bind "$root/rootfs" / --proc /proc --dev /dev --tmpfs /tmp --unshare-pid --die-with-parent "$@" \
		"${envs[@]}" --setenv PORT "$port" --chdir "$(echo "$cfg" | json 'j["config"]["WorkingDir"]')" \
		"${ep[@]}" --host 127.0.0.1 2>"$root.log" &
	IPID=$!
	t_defer "kill -9 $IPID 2>/dev/null"
	URL=http://127.0.0.1:$port
	s=$(wait_settled "$URL" 30)
	[ "$s" == READY ] || t_fail "the image $image is '$s', not READY: $(tail -5 "$root.log")"
}

# layer_kinds: the kinds of the layers in $OUT (kiln build --json), in order.
layer_kinds() { echo "$OUT" | json '" ".join(l["kind"] for l in j["layers"])'; }

# label LAYOUT:TAG NAME: the image's label NAME.
label() { skopeo inspect --config "oci:$1" | json 'j["config"]["Labels"]["'"$2"'"]'; }

# ---- examples/native: a C predictor against include/kiln/predictor.h
N=$(example native)
NATIVE_TEXT='Le café: the cat sat on the mat.\nThe dog saw the cat; it ran!'
NATIVE_OUT='{"bytes": 62, "characters": 61, "words": 15, "lines": 2, "top": [{"item": "the", "count": 4}, {"item": "cat", "count": 2}, {"item": "café", "count": 1}]}'

t_case "examples/native: make builds lib/predictor.so, which exports the ABI's symbols and nothing else"
M=$(make -C "$N" KILN_INCLUDE="$KILN_SOURCE_DIR/include" CFLAGS="-O2 -Werror" 2>&1) || t_fail "make: $M"
expect_eq "$(nm -D --defined-only "$N/lib/predictor.so" 2>&1 | awk '{print $3}' | sort | tr '\n' ' ')" \
	"kiln_predictor_abi_version kiln_predictor_free kiln_predictor_predict kiln_predictor_schema kiln_predictor_setup " \
	"exported symbols"

t_case "examples/native: kiln build makes runtime and code layers, the library in the code layer"
run_kiln build "$N" -t native-example:1 --output "oci:$T_WORK/native-img:1" --json
expect_rc 0
expect_eq "$(layer_kinds)" "runtime code" "layers"
CODE_LAYER=$(echo "$OUT" | json '[l["digest"] for l in j["layers"] if l["kind"] == "code"][0]')
expect_contains "$(tar tzf "$T_WORK/native-img/blobs/sha256/${CODE_LAYER#sha256:}" 2>&1)" "src/lib/predictor.so"

t_case "examples/native: kiln serve validates against the library's schema and answers its exact output"
serve "$N"
req GET /health-check
expect_contains "$(field 'j["setup"]["logs"]')" "textstats: ready in $(cd "$N" && pwd -P)"
expect_contains "$(field 'j["setup"]["logs"]')" "textstats: 7 bytes, top 3 words" # serve.warmup
req GET /openapi.json
expect_eq "$(field 'j["components"]["schemas"]["unit"]["enum"]')" '["word", "letter"]' "unit's choices"
expect_eq "$(field 'j["components"]["schemas"]["Input"]["properties"]["top"]["maximum"]')" 10 "top's maximum"
post "{\"input\": {\"text\": \"$NATIVE_TEXT\", \"top\": 3}}"
expect_eq "$CODE" 200
expect_eq "$(field 'json.dumps(j["output"], ensure_ascii=False)')" "$NATIVE_OUT" "output"
expect_eq "$(field 'j["logs"]')" "textstats: 62 bytes, top 3 words" "logs"
post '{"input": {"text": "Hello, World", "unit": "letter"}}'
expect_eq "$(field 'json.dumps(j["output"]["top"])')" \
	'[{"item": "l", "count": 3}, {"item": "o", "count": 2}, {"item": "d", "count": 1}]' "top letters"
post '{"input": {"text": "x", "top": 11}}'
expect_eq "$CODE" 422 "top 11"
expect_contains "$BODY" '"msg":"11 is greater than the maximum of'
post '{"input": {"text": "x", "unit": "sentence"}}'
expect_eq "$CODE" 422 "unit sentence"
expect_contains "$BODY" '"msg":"\"sentence\" is not one of ['
stop

t_case "examples/native: its image runs on its own under bubblewrap, nothing from this machine mounted in"
run_image "$T_WORK/native-img:1"
post "{\"input\": {\"text\": \"$NATIVE_TEXT\", \"top\": 3}}"
expect_eq "$(field 'json.dumps(j["output"], ensure_ascii=False)')" "$NATIVE_OUT" "output"
kill "$IPID" 2>/dev/null

# ---- examples/digits: a neural network trained on scikit-learn's digits, its weights in weight layers
# The Python that has Debian's numpy, scikit-learn and Pillow (python3 on PATH may be another one).
PY=""
for p in python3 /usr/bin/python3; do
	"$p" -c 'import numpy, sklearn, PIL' 2>/dev/null && PY=$(command -v "$p") && break
done
export KILN_PYTHON=$PY
D=$(example digits)
WEIGHTS="weights/hidden.bias.npy weights/hidden.weight.npy weights/output.bias.npy weights/output.weight.npy"

t_case "examples/digits: make trains the model offline and writes its weights and held-out test images"
if [ -z "$PY" ]; then
	t_fail "no python3 imports numpy, sklearn and PIL (bash scripts/deps.sh installs them)"
else
	M=$(make -C "$D" PYTHON="$PY" 2>&1) || t_fail "make: $M"
	expect_eq "$(cd "$D" && echo weights/*)" "$WEIGHTS" "weight files"
	expect_eq "$(cd "$D" && echo samples/*.png)" "$(printf 'samples/%d.png ' 0 1 2 3 4 5 6 7 8 9 | sed 's/ $//')" "test images"
	ACC=$(echo "$M" | sed -n 's/.* \([0-9.]*\)% right on .*/\1/p')
	python3 -c "import sys; sys.exit(not float(sys.argv[1]) >= 90)" "${ACC:-0}" || t_fail "held-out accuracy '$ACC' %: $M"
fi
# shellcheck disable=SC2086 # WEIGHTS: several paths
WEIGHT_BYTES=$(cd "$D" && cat $WEIGHTS 2>/dev/null | wc -c)

t_case "examples/digits: kiln build puts the weights in a weight layer and lists them for prefetch"
run_kiln build "$D" -t digits-example:1 --output "oci:$T_WORK/digits-img:1" --json
expect_rc 0
expect_eq "$(layer_kinds)" "weights runtime code" "layers"
WL=$(echo "$OUT" | json '[l for l in j["layers"] if l["kind"] == "weights"][0]')
expect_eq "$(echo "$WL" | json 'j["media_type"], j["files"]')" "('application/vnd.oci.image.layer.v1.tar', 4)" "weight layer"
WEIGHTS_LABEL=$(label "$T_WORK/digits-img:1" dev.kiln.weights)
expect_eq "$(echo "$WEIGHTS_LABEL" | json '" ".join(sorted(set(w["layer"] for w in j)))')" "$(echo "$WL" | json 'j["digest"]')" \
	"dev.kiln.weights: the layer of every file"
expect_eq "$(echo "$WEIGHTS_LABEL" | json '" ".join(sorted(w["path"] for w in j))')" "$WEIGHTS" "dev.kiln.weights: paths"
expect_eq "$(echo "$WEIGHTS_LABEL" | json 'sum(w["size"] for w in j)')" "$WEIGHT_BYTES" "dev.kiln.weights: bytes"
PREFETCH=$(label "$T_WORK/digits-img:1" dev.kiln.serve | json 'j["prefetch"]')
expect_eq "$(echo "$PREFETCH" | json 'j[0]')" "/src/weights/hidden.weight.npy" "first prefetched (serve.prefetch)"
expect_eq "$(echo "$PREFETCH" | json '" ".join(sorted(p[5:] for p in j))')" "$WEIGHTS" "prefetched"
CODE_LAYER=$(echo "$OUT" | json '[l["digest"] for l in j["layers"] if l["kind"] == "code"][0]')
CODE_FILES=$(tar tzf "$T_WORK/digits-img/blobs/sha256/${CODE_LAYER#sha256:}" 2>&1)
expect_contains "$CODE_FILES" "src/predict.py"
expect_not_contains "$CODE_FILES" "src/weights/"
expect_not_contains "$CODE_FILES" "src/samples/" # .kilnignore

# predict_image DIGIT: POST samples/DIGIT.png as a data: URI. Sets $CODE and $BODY.
predict_image() { post "{\"input\": {\"image\": \"data:image/png;base64,$(base64 -w0 "$D/samples/$1.png")\"}}"; }

t_case "examples/digits: kiln serve prefetches the weights and reads every held-out test image right"
serve "$D"
req GET /health-check
expect_eq "$(field 'j["kiln"]["prefetch"]["done"], j["kiln"]["prefetch"]["files"]')" "(True, 4)" "prefetch"
expect_eq "$(field 'j["kiln"]["prefetch"]["bytes_done"]')" "$WEIGHT_BYTES" "prefetched bytes"
for d in 0 1 2 3 4 5 6 7 8 9; do
	predict_image "$d"
	expect_eq "$(field 'j["status"], j["output"]["digit"]')" "('succeeded', $d)" "samples/$d.png (body: ${BODY:0:300})"
done
expect_eq "$(field 'len(j["output"]["probabilities"]), round(sum(j["output"]["probabilities"]))')" "(10, 1)" \
	"probabilities"
post "{\"input\": {\"pixels\": $(json 'j["4"]' <"$D/samples/pixels.json")}}"
expect_eq "$(field 'j["output"]["digit"]')" 4 "pixels of the held-out 4"
post '{"input": {}}'
expect_eq "$(field 'j["status"], j["error"]')" "('failed', 'give one of image and pixels')" "no input"
stop

t_case "examples/digits: its image, with this machine's Python mounted in, prefetches KILN_PREFETCH_FILES"
PYREAL=$(readlink -f "${PY:-/nonexistent}")
if [[ "$PYREAL" != /usr/bin/* ]]; then
	echo "  skipped: $PY is not Debian's /usr/bin/python3"
else
	PYLIB=$("$PY" -c 'import sys; print("/usr/lib/python%d.%d" % sys.version_info[:2])')
	binds=(--ro-bind "$PYREAL" /usr/bin/python3 --ro-bind "$PYLIB" "$PYLIB" --ro-bind /usr/lib/python3 /usr/lib/python3
		--ro-bind /usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu --ro-bind /lib/x86_64-linux-gnu /lib/x86_64-linux-gnu
		--ro-bind /lib64 /lib64)
	[ -d /etc/alternatives ] && binds+=(--ro-bind /etc/alternatives /etc/alternatives) # libblas.so.3
	run_image "$T_WORK/digits-img:1" "${binds[@]}"
	req GET /health-check
	expect_eq "$(field 'j["kiln"]["prefetch"]["done"], j["kiln"]["prefetch"]["files"]')" "(True, 4)" "prefetch"
	expect_eq "$(field 'j["kiln"]["prefetch"]["bytes_done"]')" "$WEIGHT_BYTES" "prefetched bytes"
	predict_image 7
	expect_eq "$(field 'j["status"], j["output"]["digit"]')" "('succeeded', 7)" "samples/7.png (body: ${BODY:0:300})"
	kill "$IPID" 2>/dev/null
fi

t_case "examples/digits: on a Debian base with numpy, scikit-learn and Pillow, its image answers on its own under bubblewrap"
if ! debian_base debian-digits python3-numpy python3-sklearn python3-pil; then
	t_fail "cannot make the digits base (mmdebstrap, Debian's registry)"
elif [ ! -f "$D/weights/hidden.weight.npy" ]; then
	t_fail "no weights: make failed above"
else
	KILN_PYTHON_BASE="oci:$DEBIAN_BASE:bookworm" run_kiln build "$D" -t digits-debian:1 --output "oci:$T_WORK/digits-deb:1" --json
	expect_rc 0
	expect_eq "$(echo "$OUT" | json 'j["base"]')" "oci:$DEBIAN_BASE:bookworm (a Python predictor without base:, KILN_PYTHON_BASE)" "base"
	expect_eq "$(layer_kinds)" "base weights runtime code" "layers (requirements.txt satisfied by the base)"
	expect_eq "$(label "$T_WORK/digits-deb:1" dev.kiln.base | json 'j["python"]')" "3.11" "the base's Python"
	run_image "$T_WORK/digits-deb:1" # nothing of this machine mounted in
	req GET /health-check
	expect_eq "$(field 'j["kiln"]["prefetch"]["done"], j["kiln"]["prefetch"]["files"]')" "(True, 4)" "prefetch"
	for d in 0 3 7; do
		predict_image "$d"
		expect_eq "$(field 'j["status"], j["output"]["digit"]')" "('succeeded', $d)" "samples/$d.png (body: ${BODY:0:300})"
	done
	kill "$IPID" 2>/dev/null
	if bwrap --ro-bind / / --unshare-pid --dev /dev true 2>/dev/null; then
		run_kiln predict digits-debian:1 -i image=@"$D/samples/7.png" --runtime bwrap
		expect_rc 0
		expect_eq "$(echo "$OUT" | json 'j["digit"]')" "7" "kiln predict --runtime bwrap, samples/7.png"
	fi
fi

t_case "kiln predict answers with every example"
run_kiln predict "$KILN_SOURCE_DIR/examples/hello" -i name=predict --runtime native
expect_rc 0
expect_eq "$OUT" "hello, predict!" "examples/hello"
# the same input as the HTTP case above, whose text holds JSON escapes: given as JSON
OUT=$(echo "{\"text\": \"$NATIVE_TEXT\"}" | "$KILN" predict "$N" --input-json - -i top=3 --runtime native 2>"$T_WORK/stderr")
RC=$? ERR=$(cat "$T_WORK/stderr")
expect_rc 0
# as cog predict prints an object: its keys in order
expect_eq "$(echo "$OUT" | json 'json.dumps(j, ensure_ascii=False)')" \
	"$(echo "$NATIVE_OUT" | json 'json.dumps(j, ensure_ascii=False, sort_keys=True)')" "examples/native"
expect_contains "$ERR" "textstats: 62 bytes, top 3 words"
run_kiln predict "$N" -i text=x -i top=11 --runtime native
expect_rc 1
expect_contains "$ERR" "top"
run_kiln predict "$D" -i image=@"$D/samples/7.png" --runtime native
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["digit"]')" "7" "examples/digits, samples/7.png"

t_case "kiln predict --runtime native unpacks a weight layer once: a code change links the same files"
echo "# a code change" >>"$D/predict.py"
run_kiln predict "$D" -i image=@"$D/samples/3.png" --runtime native
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["digit"]')" "3" "after the code change"
ROOTS=$(ls -d "$KILN_HOME"/run/*-native 2>/dev/null | while read -r r; do [ -f "$r/src/weights/hidden.weight.npy" ] && echo "$r"; done)
expect_eq "$(echo "$ROOTS" | wc -l)" "2" "roots of the two digits images"
expect_eq "$(for r in $ROOTS; do stat -c %i "$r/src/weights/hidden.weight.npy"; done | sort -u | wc -l)" "1" \
	"one inode for the weight file of both roots"
expect_eq "$(ls "$KILN_HOME/run/layers" | grep -c '^[0-9a-f]\{64\}$')" "1" "weight layers unpacked"

t_finish
