#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Python runner (templates/python/kiln_runner.py) driven directly over its JSON-lines protocol
# (shim/PROTOCOL.md), and kiln_schema.py's OpenAPI output, with each python3 there is; then kiln-shim on
# predictors the runner refuses or whose outputs it checks.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

PYDIR=$KILN_SOURCE_DIR/templates/python
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the source tree
FIX=$KILN_SOURCE_DIR/tests/fixtures/predictors

# The interpreters to test: python3 from PATH, and Debian's /usr/bin/python3 when it is another one.
PYTHONS=()
for p in python3 /usr/bin/python3; do
	exe=$(command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; print(sys.executable)' 2>/dev/null) || continue
	exe=$(readlink -f "$exe")
	[[ " ${PYTHONS[*]} " == *" $exe "* ]] || PYTHONS+=("$exe")
done

# ev FILE EXPR: evaluate EXPR over the events of FILE (the list `e`); JSON for lists and dicts. EXPR may use
# of(TYPE[, ID]) (the events of that type, of prediction ID), out([ID]) (the output of the first done event)
# and component(NAME) (a schema of the schema event's document: "Input", "Output").
ev() {
	python3 -c 'import json, sys
e = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def of(t, i=None): return [x for x in e if x["type"] == t and (i is None or x.get("id") == i)]
def out(i=None): return of("done", i)[0]["output"]
def component(name): return e[0]["schema"]["components"]["schemas"][name]
r = eval(sys.argv[2])
print(json.dumps(r) if isinstance(r, (dict, list)) else r)' "$1" "$2"
}
expect_ev() { expect_eq "$(ev "$EV" "$1")" "$2" "$1"; }

# requests REQUEST...: each REQUEST as a line: ID=INPUT for {"type": "predict", "id": ID, "input": INPUT},
# else as it is (JSON).
requests() {
	local r
	for r; do
		if [[ $r == "{"* ]]; then echo "$r"; else echo "{\"type\": \"predict\", \"id\": \"${r%%=*}\", \"input\": ${r#*=}}"; fi
	done
}

# run_batch NAME PREDICTOR REQUEST...: run the runner on these requests (stdin then EOF) in the fixtures
# directory; events in $EV, exit status in $RC, stdout/stderr in $T_WORK/NAME.{out,err}.
run_batch() {
	local name=$1 pred=$2
	shift 2
	EV=$T_WORK/$name.jsonl
	(cd "$FIX" && requests "$@" | timeout 20 "$PY" -u "$PYDIR/kiln_runner.py" --predictor "$pred" \
		3>"$EV" >"$T_WORK/$name.out" 2>"$T_WORK/$name.err")
	RC=$?
}

# start_runner NAME PREDICTOR [ARGS...]: a runner reading requests from a FIFO we hold open as $W;
# events in $EV, its pid in $RPID (killed when the test file ends, whatever happens).
start_runner() {
	local name=$1 pred=$2
	shift 2
	EV=$T_WORK/$name.jsonl
	rm -f "$T_WORK/$name.in" && mkfifo "$T_WORK/$name.in"
	: >"$EV"
	(cd "$FIX" && exec "$PY" -u "$PYDIR/kiln_runner.py" --predictor "$pred" "$@" <"$T_WORK/$name.in" \
		3>"$EV" >"$T_WORK/$name.out" 2>"$T_WORK/$name.err") &
	RPID=$!
	t_defer "kill -9 $RPID 2>/dev/null"
	exec {W}>"$T_WORK/$name.in"
}
# send REQUEST...: requests to the runner start_runner began.
send() { requests "$@" >&"$W"; }

# wait_for EXPR SECONDS: poll the events until EXPR is true; false after SECONDS.
wait_for() {
	local end=$((${EPOCHREALTIME//[.,]/} + $2 * 1000000))
	until [ "$(ev "$EV" "$1" 2>/dev/null)" == "True" ]; do
		[ "${EPOCHREALTIME//[.,]/}" -lt "$end" ] || return 1
		sleep 0.05
	done
}

# wait_ev TYPE ID SECONDS: wait_for an event TYPE of prediction ID (any, if empty); fails the case if none comes.
wait_ev() { wait_for "bool(of('$1', '$2' or None))" "$3" || t_fail "no '$1' event${2:+ of $2} within $3 s"; }

# stop_runner: shutdown, close stdin, and wait_exit (5 s at most); its status in $RC.
stop_runner() {
	send '{"type": "shutdown"}'
	exec {W}>&-
	wait_exit "$RPID" 5
}

# schema SPEC: kiln_schema.py on SPEC (FILE.py:NAME, relative to the fixtures). output_schema SPEC: the
# Output component of its document.
schema() { (cd "$FIX" && "$PY" "$PYDIR/kiln_schema.py" "$@"); }
output_schema() { schema "$1" | json "j['components']['schemas']['Output']"; }

# schema_run SPEC [FILE]: schema with its document in FILE (default: dropped), exit status in $RC, stderr in $ERR.
# expect_refused SPEC MESSAGE [WHAT]: it exits 1 on SPEC, MESSAGE all its stderr; expect_refused_with SPEC
# TEXT: the same, with TEXT in its stderr.
schema_run() { schema "$1" >"${2:-/dev/null}" 2>"$T_WORK/err"; RC=$?; ERR=$(cat "$T_WORK/err"); }
expect_refused() { schema_run "$1"; expect_rc 1; expect_eq "$ERR" "$2" "${3:-stderr of kiln_schema.py $1}"; }
expect_refused_with() { schema_run "$1"; expect_rc 1; expect_contains "$ERR" "$2"; }

# write_predictor FILE DEF [BODY]: FILE holds `class Predictor(BasePredictor)` (line 3) with one method, DEF
# (line 4), whose body is BODY (default: return ""); line 1 imports BasePredictor and Input from cog.
write_predictor() {
	printf 'from cog import BasePredictor, Input\n\nclass Predictor(BasePredictor):\n    %s\n        %s\n' \
		"$2" "${3:-return \"\"}" >"$1"
}

# write_optional_output FILE: a predictor whose output object has Optional fields with and without defaults,
# all None when predict() gets empty=True; unset=NAME sets field NAME to None after the object is made and
# drop=NAME deletes it. OPTIONAL_OUTPUT_SCHEMA is its Output component as Cog makes it.
write_optional_output() {
	cat >"$1" <<'EOF'
import tempfile
from typing import List, Optional, Union

from cog import BaseModel, BasePredictor, Path

class Output(BaseModel):
    text: str
    score: Optional[float]
    label: Union[None, int]
    file: Optional[Path] = None
    tags: Optional[List[str]] = None
    count: int = 3

class Predictor(BasePredictor):
    def predict(self, empty: bool = True, unset: str = "", drop: str = "") -> Output:
        if empty:
            out = Output(text="t", score=None, label=None)
        else:
            path = Path(tempfile.mkdtemp()) / "f.txt"
            path.write_text("f")
            out = Output(text="t", score=0.5, label=2, file=path, tags=["a"], count=1)
        if unset:
            setattr(out, unset, None)
        if drop:
            delattr(out, drop)
        return out
EOF
}
OPTIONAL_OUTPUT_SCHEMA='{"properties": {"text": {"title": "Text", "type": "string"}, "score": {"nullable": true, "title": "Score", "type": "number"}, "label": {"nullable": true, "title": "Label", "type": "integer"}, "file": {"format": "uri", "nullable": true, "title": "File", "type": "string"}, "tags": {"items": {"type": "string"}, "nullable": true, "title": "Tags", "type": "array"}, "count": {"title": "Count", "type": "integer"}}, "required": ["text", "count"], "title": "Output", "type": "object"}'

# shim_project NAME: a new project $T_WORK/NAME whose kiln.yaml runs predict.py:Predictor (the caller writes
# predict.py); prints its path. stop_shim: SIGTERM to the kiln-shim `start` began, and wait_exit (10 s).
shim_project() { mkdir -p "$T_WORK/$1" && echo 'run: predict.py:Predictor' >"$T_WORK/$1/kiln.yaml" && echo "$T_WORK/$1"; }
stop_shim() { kill -TERM "$SPID"; wait_exit "$SPID" 10; }

suite() {
	local P
	P="[$PY $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')]"

	t_case "$P hello: schema first, versions, setup logs, ready, outputs, logs of each prediction"
	run_batch hello hello.py:Predictor p1='{"name": "kiln"}' p2='{}' '{"type": "shutdown"}'
	expect_rc 0
	expect_ev "e[0]['type']" schema
	expect_ev "e[0]['schema']['openapi']" 3.0.2
	expect_ev "[x['type'] for x in e[1:]]" \
		'["versions", "log", "ready", "started", "log", "done", "started", "log", "done"]'
	expect_ev "[e[1]['cog'], e[1]['python']]" \
		"[\"0.0.0+kiln\", \"$("$PY" -c 'import platform; print(platform.python_version())')\"]"
	expect_ev "of('log')" \
		'[{"type": "log", "id": null, "text": "setting up\n", "source": "stdout"}, {"type": "log", "id": "p1", "text": "greeting kiln\n", "source": "stdout"}, {"type": "log", "id": "p2", "text": "greeting world\n", "source": "stdout"}]'
	expect_ev "[(x['id'], x['output']) for x in of('done')]" '[["p1", "hello kiln"], ["p2", "hello world"]]'
	expect_ev "all(isinstance(x['predict_time'], float) and x['predict_time'] >= 0 for x in of('done'))" True
	expect_eq "$(cat "$T_WORK/hello.out")" "" "the runner's stdout (prints go to log events)"

	t_case "$P types: each Cog input type arrives converted, defaults filled in"
	local img=$T_WORK/img.txt doc=$T_WORK/doc.txt
	printf 'image data' >"$img"
	printf 'doc data' >"$doc"
	run_batch types types.py:Predictor \
		"t1={\"text\": \"ab c\", \"mode\": \"slow\", \"size\": 256, \"steps\": 50, \"scale\": 2, \"flag\": true, \"image\": \"$img\", \"doc\": \"$doc\", \"token\": \"s3cret\", \"tags\": [\"x\"], \"paths\": [\"$img\", \"$doc\"], \"seed\": 7, \"extra\": 3, \"plain\": 1.5}" \
		"t2={\"text\": \"ab\", \"image\": \"$img\"}" "t3={\"image\": \"$img\"}" \
		"t4={\"text\": \"ab\", \"image\": \"$img\", \"bogus\": 1}"
	expect_rc 0
	expect_ev "out('t1')" \
		'{"text": "ab c", "mode": "slow", "size": 256, "steps": 50, "scale": 2.0, "scale_type": "float", "flag": true, "image": ["Path", true, "image data"], "doc": "doc data", "token": ["Secret('"'**********'"')", "s3cret"], "tags": ["x"], "paths": ["Path", "Path"], "seed": 7, "extra": 3, "plain": 1.5}'
	expect_ev "out('t2')" \
		'{"text": "ab", "mode": "fast", "size": 512, "steps": 10, "scale": 1.0, "scale_type": "float", "flag": false, "image": ["Path", true, "image data"], "doc": null, "token": null, "tags": ["a", "b"], "paths": null, "seed": null, "extra": null, "plain": 0.25}'
	expect_ev "[x['error'] for x in of('failed')]" "[\"missing required input 'text'\", \"unexpected input 'bogus'\"]"

	t_case "$P iterators: Iterator[str] and ConcatenateIterator[str] items in order, done without output"
	run_batch iter iterator.py:Predictor i1='{"n": 4}'
	expect_rc 0
	expect_ev "[x['value'] for x in of('output', 'i1')]" '["item-0", "item-1", "item-2", "item-3"]'
	expect_ev "[x['type'] for x in e if x['type'] in ('output', 'log')][:4]" '["log", "output", "log", "output"]'
	expect_ev "(lambda d: d.keys() >= {'id', 'predict_time'} and 'output' not in d)(of('done')[0])" True
	run_batch tokens iterator.py:Tokens c1='{"text": "a b c"}'
	expect_ev "[x['value'] for x in of('output')]" '["a ", "b ", "c "]'
	expect_ev "component('Output')" \
		'{"items": {"type": "string"}, "title": "Output", "type": "array", "x-cog-array-display": "concatenate", "x-cog-array-type": "iterator"}'

	t_case "$P BaseRunner.run() and a module-level function"
	run_batch runner runner.py:Runner r1='{"x": 5}' r2='{}'
	expect_ev "[x['output'] for x in of('done')]" '[15, 6]'
	run_batch function function.py:predict f1='{"a": 1}'
	expect_ev "[x['output'] for x in of('done')]" '[1.5]'
	expect_ev "component('Input')['required']" '["a"]'

	t_case "$P setup() raising: logs, then setup_failed with the traceback's last line, exit 1"
	run_batch setup_fails setup_fails.py:Predictor x='{}'
	expect_rc 1
	expect_ev "[x['type'] for x in e]" '["schema", "versions", "log", "log", "setup_failed"]'
	expect_ev "e[2]" '{"type": "log", "id": null, "text": "loading weights\n", "source": "stdout"}'
	expect_ev "e[3]['text'].startswith('Traceback') and 'setup_fails.py' in e[3]['text']" True
	expect_ev "e[-1]['error']" "RuntimeError: weights are missing"

	t_case "$P predict() raising: failed with the message, traceback in its logs, next prediction fine"
	run_batch raises raises.py:Predictor b1='{}' b2='{"fail": false}'
	expect_rc 0
	expect_ev "of('failed')" '[{"type": "failed", "id": "b1", "error": "bad"}]'
	expect_ev "of('log', 'b1')[0]['text'] == 'about to fail\\n'" True
	expect_ev "'ValueError: bad' in of('log', 'b1')[1]['text']" True
	expect_ev "[x['output'] for x in of('done')]" '["fine"]'

	t_case "$P a top-level import that fails: the schema still comes first, then setup_failed"
	run_batch heavy heavy_import.py:Predictor
	expect_rc 1
	expect_ev "e[0]['type']" schema
	expect_ev "component('Input')['required']" '["prompt"]'
	expect_ev "component('Output')" '{"format": "uri", "title": "Output", "type": "string"}'
	expect_ev "e[-1]" "{\"type\": \"setup_failed\", \"error\": \"ModuleNotFoundError: No module named 'kiln_no_such_module_torch'\"}"

	t_case "$P Path outputs become absolute paths named in \"files\", in lists and objects too"
	run_batch path path_output.py:Predictor o1='{"text": "written"}'
	local out
	out=$(ev "$EV" "out()")
	expect_ev "of('done')[0]['files']" '[[]]'
	expect_eq "${out:0:1}" "/" "path is absolute"
	expect_eq "$(cat "$out" 2>/dev/null)" "written" "content of $out"
	run_batch many path_output.py:Many o2='{"n": 2}'
	expect_ev "[open(p).read() for p in out()]" '["0", "1"]'
	expect_ev "of('done')[0]['files']" '[[0], [1]]'
	run_batch structured path_output.py:Structured o3='{}'
	expect_ev "(lambda o: [sorted(o), o['caption'], open(o['file']).read()])(out())" \
		'[["caption", "file"], "a caption", "caption"]'
	expect_ev "of('done')[0]['files']" '[["file"]]'

	t_case "$P cancel of a running synchronous prediction: canceled within 2 s, the runner goes on"
	start_runner slow slow.py:Predictor
	send s1='{}' s2='{"seconds": 0.1}' s3='{"seconds": 0.1}'
	wait_ev log s1 10
	send '{"type": "cancel", "id": "s3"}' '{"type": "cancel", "id": "s1"}'
	wait_ev canceled s1 2
	wait_ev "done" s2 5
	wait_ev canceled s3 5 # canceled while queued
	expect_ev "[(x['type'], x.get('id')) for x in e if x['type'] in ('started', 'canceled', 'done', 'failed')]" \
		'[["started", "s1"], ["canceled", "s1"], ["started", "s2"], ["done", "s2"], ["canceled", "s3"]]'
	# The shim may also signal the runner itself.
	send s4='{}'
	wait_ev log s4 10
	kill -USR1 "$RPID"
	wait_ev canceled s4 2
	kill -USR1 "$RPID" # idle: ignored
	send s5='{"seconds": 0}'
	wait_ev "done" s5 5
	stop_runner
	expect_rc 0

	t_case "$P async predict with --concurrency 2: predictions overlap, logs go to the right id, cancel"
	start_runner async async_concurrent.py:Predictor --concurrency 2
	wait_ev ready "" 10
	send a1='{"name": "one", "delay": 0.5}' a2='{"name": "two", "delay": 0.5}' a3='{"name": "three", "delay": 0.1}'
	wait_for "len(of('done')) == 3" 10 || t_fail "three predictions did not finish"
	# a2 started before a1 ended; a3 waited for a free slot.
	expect_ev "(lambda o: o['a2'][0] < o['a1'][1] and o['a3'][0] >= min(o['a1'][1], o['a2'][1]) - 0.05)({x['id']: x['output'] for x in of('done')})" True
	# each prediction's lines, in order, under its own id (across ids the order depends on the scheduler)
	expect_ev "{i: [x['text'] for x in of('log', i)] for i in ('a1', 'a2', 'a3')}" \
		'{"a1": ["start one\n", "end one\n"], "a2": ["start two\n", "end two\n"], "a3": ["start three\n", "end three\n"]}'
	send a4='{"name": "four", "delay": 30}'
	wait_ev started a4 5
	send '{"type": "cancel", "id": "a4"}'
	wait_ev canceled a4 2
	stop_runner
	expect_rc 0

	t_case "$P async iterators: AsyncIterator[int] and AsyncConcatenateIterator[str]"
	run_batch astream async_concurrent.py:Stream x='{"n": 3}'
	expect_ev "[x['value'] for x in of('output')]" '[0, 1, 2]'
	run_batch awords async_concurrent.py:Words x='{"text": "p q"}'
	expect_ev "[x['value'] for x in of('output')]" '["p", "q"]'
	expect_ev "component('Output')['x-cog-array-display']" concatenate

	t_case "$P the bundled cog is used only when no cog is installed, placed after site-packages"
	run_batch bundled which_cog.py:Predictor w='{}'
	expect_ev "out()" "{\"file\": \"$PYDIR/cog/__init__.py\", \"marker\": null, \"last_path\": \"$PYDIR\"}"
	rm -rf "$T_WORK/site" && mkdir -p "$T_WORK/site" && cp -r "$PYDIR/cog" "$T_WORK/site/cog"
	echo 'MARKER = "installed"' >>"$T_WORK/site/cog/__init__.py"
	PYTHONPATH=$T_WORK/site run_batch installed which_cog.py:Predictor w='{}'
	expect_ev "out()['file']" "$T_WORK/site/cog/__init__.py"
	expect_ev "out()['marker']" installed

	t_case "$P ready says whether predict() is marked @cog.streaming (and logs say their stream)"
	run_batch streams iterator.py:Predictor s='{"n": 1}' '{"type": "shutdown"}'
	expect_rc 0
	expect_ev "[x['streaming'] for x in e if x['type'] == 'ready']" '[true]'
	expect_ev "[x['source'] for x in e if x['type'] == 'log']" '["stdout"]'
	run_batch tokens iterator.py:Tokens '{"type": "shutdown"}'
	expect_rc 0
	expect_ev "[x['streaming'] for x in e if x['type'] == 'ready']" '[false]'

	t_case "$P KILN_RUNNER_FD names the event descriptor; every event line is JSON"
	EV=$T_WORK/fd5.jsonl
	(cd "$FIX" && requests k='{}' |
		KILN_RUNNER_FD=5 timeout 20 "$PY" -u "$PYDIR/kiln_runner.py" --predictor runner.py:Runner 5>"$EV")
	RC=$?
	expect_rc 0
	expect_ev "[x['type'] for x in e]" '["schema", "versions", "ready", "started", "done"]'

	t_case "$P kiln_schema.py for types.py: Cog's shape, field by field"
	schema_run types.py:Predictor "$T_WORK/types.schema.json"
	expect_rc 0
	local diffs
	diffs=$(python3 - "$T_WORK/types.schema.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
s = doc["components"]["schemas"]
inp = s["Input"]
secret = {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True}
want = {
    "text": {"x-order": 0, "title": "Text", "type": "string", "description": "Some text", "minLength": 2, "maxLength": 20, "pattern": "^[a-z ]+$"},
    "mode": {"x-order": 1, "allOf": [{"$ref": "#/components/schemas/mode"}], "default": "fast", "description": "A mode"},
    "size": {"x-order": 2, "allOf": [{"$ref": "#/components/schemas/size"}], "default": 512},
    "steps": {"x-order": 3, "title": "Steps", "type": "integer", "default": 10, "description": "Steps", "minimum": 1, "maximum": 50},
    "scale": {"x-order": 4, "title": "Scale", "type": "number", "default": 1.0, "minimum": 0.5, "maximum": 2},
    "flag": {"x-order": 5, "title": "Flag", "type": "boolean", "default": False},
    "image": {"x-order": 6, "title": "Image", "type": "string", "format": "uri", "description": "An image"},
    "doc": {"x-order": 7, "title": "Doc", "type": "string", "format": "uri", "description": "A file (deprecated type)", "nullable": True, "default": None},
    "token": dict({"x-order": 8, "title": "Token", "description": "An API token", "nullable": True, "default": None}, **secret),
    "tags": {"x-order": 9, "title": "Tags", "type": "array", "items": {"type": "string"}, "default": ["a", "b"], "description": "Tags"},
    "paths": {"x-order": 10, "title": "Paths", "type": "array", "items": {"type": "string", "format": "uri"}, "description": "More files", "nullable": True, "default": None},
    "seed": {"x-order": 11, "title": "Seed", "type": "integer", "description": "Seed", "nullable": True, "default": None},
    "extra": {"x-order": 12, "title": "Extra", "type": "integer", "nullable": True, "default": None},
    "plain": {"x-order": 13, "title": "Plain", "type": "number", "default": 0.25},
}
bad = []
def check(where, got, exp):
    if got != exp or type(got) is not type(exp):
        bad.append(f"{where}: got {json.dumps(got)}, expected {json.dumps(exp)}")
check("openapi", doc.get("openapi"), "3.0.2")
check("Input.title/type", [inp.get("title"), inp.get("type")], ["Input", "object"])
check("Input.required", inp.get("required"), ["text", "image"])
check("Input property names in order", list(inp["properties"]), list(want))
for name, exp in want.items():
    got = inp["properties"].get(name, {})
    for key in sorted(set(exp) | set(got)):
        check(f"Input.{name}.{key}", got.get(key), exp.get(key))
check("mode enum", s.get("mode"), {"title": "mode", "description": "An enumeration.", "enum": ["fast", "slow"], "type": "string"})
check("size enum", s.get("size"), {"title": "size", "description": "An enumeration.", "enum": [256, 512], "type": "integer"})
check("Output", s.get("Output"), {"title": "Output", "type": "object"})
check("Status", s.get("Status", {}).get("enum"), ["starting", "processing", "succeeded", "canceled", "failed"])
for name in ("PredictionRequest", "PredictionResponse", "HTTPValidationError", "ValidationError"):
    check(name + ".title", s.get(name, {}).get("title"), name)
check("PredictionRequest.input", s["PredictionRequest"]["properties"].get("input"), {"$ref": "#/components/schemas/Input"})
check("PredictionResponse.output", s["PredictionResponse"]["properties"].get("output"), {"$ref": "#/components/schemas/Output"})
check("PredictionResponse.status", s["PredictionResponse"]["properties"].get("status"), {"title": "Status", "type": "string"})
check("paths", list(doc["paths"]), ["/", "/health-check", "/predictions", "/predictions/{prediction_id}/cancel"])
check("document keys", list(doc), ["components", "info", "openapi", "paths"])
check("components", list(s), ["Input", "Output", "mode", "size", "PredictionRequest", "PredictionResponse", "Status", "HTTPValidationError", "ValidationError"])
check("info", doc.get("info"), {"title": "Cog", "version": "0.1.0"})
check("POST /predictions body", doc["paths"]["/predictions"]["post"]["requestBody"]["content"]["application/json"]["schema"], {"$ref": "#/components/schemas/PredictionRequest"})
print("\n".join(bad))
EOF
)
	expect_eq "$diffs" "" "schema differences"

	t_case "$P kiln_schema outputs: str int float bool Path list Iterator ConcatenateIterator object"
	local spec expected
	while IFS='|' read -r spec expected; do
		expect_eq "$(output_schema "$spec")" "$expected" "Output of $spec"
	done <<'EOF'
hello.py:Predictor|{"title": "Output", "type": "string"}
runner.py:Runner|{"title": "Output", "type": "integer"}
function.py:predict|{"title": "Output", "type": "number"}
path_output.py:Predictor|{"format": "uri", "title": "Output", "type": "string"}
path_output.py:Many|{"items": {"format": "uri", "type": "string"}, "title": "Output", "type": "array"}
iterator.py:Predictor|{"items": {"type": "string"}, "title": "Output", "type": "array", "x-cog-array-type": "iterator"}
iterator.py:Tokens|{"items": {"type": "string"}, "title": "Output", "type": "array", "x-cog-array-display": "concatenate", "x-cog-array-type": "iterator"}
path_output.py:Structured|{"properties": {"file": {"format": "uri", "title": "File", "type": "string"}, "caption": {"title": "Caption", "type": "string"}}, "required": ["file", "caption"], "title": "Output", "type": "object"}
EOF
	write_predictor "$T_WORK/b.py" 'def predict(self, on: bool = True) -> bool:' 'return on'
	expect_eq "$(output_schema "$T_WORK/b.py:Predictor")" '{"title": "Output", "type": "boolean"}'

	# Cog (python/cog/_adt.py, OutputType.json_type) makes an Optional field of an output object nullable and
	# leaves it out of "required"; a default alone changes neither and is not shown. The field may be None.
	t_case "$P an output object's Optional fields: nullable, not required, and None in a prediction"
	local opt=$T_WORK/optional_output.py
	write_optional_output "$opt"
	expect_eq "$(output_schema "$opt:Predictor")" "$OPTIONAL_OUTPUT_SCHEMA" "Output of optional_output.py"
	cat >"$T_WORK/pipe_none.py" <<'EOF'
from cog import BaseModel, BasePredictor, Path

class Output(BaseModel):
    caption: str | None
    files: list[Path] | None = None
    seed: None | int = 7

class Predictor(BasePredictor):
    def predict(self) -> Output:
        return Output(caption=None)
EOF
	expect_eq "$(output_schema "$T_WORK/pipe_none.py:Predictor")" \
		'{"properties": {"caption": {"nullable": true, "title": "Caption", "type": "string"}, "files": {"items": {"format": "uri", "type": "string"}, "nullable": true, "title": "Files", "type": "array"}, "seed": {"nullable": true, "title": "Seed", "type": "integer"}}, "title": "Output", "type": "object"}' \
		"Output of pipe_none.py (no field required: no \"required\")"
	run_batch optional_output "$opt:Predictor" n='{}' v='{"empty": false}'
	expect_rc 0
	expect_ev "[(x['type'], x['id']) for x in e if x['type'] in ('done', 'failed')]" '[["done", "n"], ["done", "v"]]'
	expect_ev "out('n')" '{"text": "t", "score": null, "label": null, "file": null, "tags": null, "count": 3}'
	expect_ev "(lambda o: [o['score'], o['label'], open(o['file']).read(), o['tags'], o['count']])(out('v'))" \
		'[0.5, 2, "f", ["a"], 1]'
	if "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then # X | None at run time
		run_batch pipe_none "$T_WORK/pipe_none.py:Predictor" p='{}'
		expect_ev "[x.get('output') for x in e if x['type'] in ('done', 'failed')]" \
			'[{"caption": null, "files": null, "seed": 7}]'
	fi

	# Cog (python/cog/_adt.py, OutputType._transform) fails a prediction whose object lacks a field of the
	# output model, or holds None in one that is not Optional, whatever its default.
	t_case "$P an output object's field missing, or None but not Optional: the prediction fails in Cog's words"
	run_batch none_field "$opt:Predictor" text='{"unset": "text"}' count='{"empty": false, "unset": "count"}' \
		drop='{"drop": "text"}' tags='{"empty": false, "unset": "tags"}'
	expect_rc 0
	expect_ev "[(x['id'], x['error']) for x in of('failed')]" \
		'[["text", "missing value for output field: text"], ["count", "missing value for output field: count"], ["drop", "missing output field: text"]]'
	expect_ev "'ValueError: missing value for output field: text' in of('log', 'text')[-1]['text']" True
	expect_ev "[(x['id'], x['output']['tags']) for x in of('done')]" '[["tags", null]]'

	t_case "$P kiln_schema as a module, with the predictor's imports absent"
	expect_eq "$(cd "$T_WORK" && "$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import kiln_schema, json
d = kiln_schema.schema_for(sys.argv[2], "Predictor")
print(json.dumps(d["components"]["schemas"]["Input"]["properties"]["steps"]))' "$PYDIR" "$FIX/heavy_import.py")" \
		'{"default": 4, "minimum": 1, "title": "Steps", "type": "integer", "x-order": 1}'

	t_case "$P kiln_schema on bad input: FILE:LINE: message, exit 1"
	local B=$T_WORK/bad.py
	expect_refused "$T_WORK/missing.py:Predictor" "$T_WORK/missing.py: cannot open: No such file or directory"
	printf 'from cog import BasePredictor\n\nclass Other(BasePredictor):\n    def setup(self):\n        pass\n' >"$B"
	expect_refused "$B:Predictor" "$B: no class or function named 'Predictor'"
	expect_refused "$B:Other" "$B:3: class 'Other' has no predict() or run() method"
	printf 'import torch\nfrom cog import BasePredictor, Input\n\nclass Predictor(BasePredictor):\n    def predict(self,\n            x: set[int]) -> str:\n        return ""\n' >"$B"
	expect_refused "$B:Predictor" "$B:6: unsupported type annotation 'set[int]' for input 'x'"
	write_predictor "$B" 'def predict(self, n: int = Input(default=compute())) -> str:'
	expect_refused_with "$B:Predictor" "$B:4: default of 'n' is not a literal: 'compute()'"
	write_predictor "$B" 'def predict(self, n: int = Input(default=0, ge=1)) -> str:'
	expect_refused "$B:Predictor" "$B:4: invalid default for 'n': must be at minimum 1"
	write_predictor "$B" 'def predict(self) -> str'
	expect_refused_with "$B:Predictor" "$B:4: syntax error"
	run_batch badref "$B:Predictor"
	expect_rc 1
	expect_ev "[x['type'] for x in e]" '["setup_failed"]'
	expect_ev "e[0]['error'].startswith('$B:4: syntax error')" True

	# Cog (python/cog/_inspector.py, _validate_predict) refuses a return annotation that is None at run time
	# as it refuses none at all, before it looks at the inputs; a string "None" gets past that check and
	# becomes NoneType, which it has no type for.
	t_case "$P a return annotation of None, or none: refused in Cog's words, by the schema and the runner"
	local src want
	while IFS='|' read -r src want; do
		printf "from cog import BasePredictor\\n\\nNothing = None\\n$src\\n        pass\\n" >"$B"
		expect_refused "$B:Predictor" "${want//@B/$B}" "the schema of: $src"
	done <<'EOF'
class Predictor(BasePredictor):\n    def predict(self, n: int) -> None:|@B:5: predict() must have a return type annotation
class Predictor(BasePredictor):\n    def predict(self, n: int):|@B:5: predict() must have a return type annotation
class Predictor(BasePredictor):\n    async def predict(self, n) -> None:|@B:5: predict() must have a return type annotation
class Predictor(BasePredictor):\n    def predict(self) -> Nothing:|@B:5: predict() must have a return type annotation
class Predictor(BasePredictor):\n    def predict(self) -> "None":|@B:5: unsupported Cog type NoneType
EOF
	printf 'from cog import BasePredictor\n\ndef run_it(n: int) -> None:\n    pass\n' >"$B"
	expect_refused "$B:run_it" "$B:3: run_it() must have a return type annotation"
	printf 'from __future__ import annotations\nfrom cog import BasePredictor\n\nclass Predictor(BasePredictor):\n    def predict(self) -> None:\n        pass\n' >"$B"
	expect_refused "$B:Predictor" "$B:5: unsupported Cog type NoneType"
	write_predictor "$B" 'def predict(self) -> None:' pass
	run_batch none_output "$B:Predictor" n='{}'
	expect_rc 1
	expect_ev "e" "[{\"type\": \"setup_failed\", \"error\": \"$B:4: predict() must have a return type annotation\"}]"
}

if [ ${#PYTHONS[@]} -eq 0 ]; then
	t_case "a python3 to run the runner with"
	t_fail "no python3 found"
fi
for PY in "${PYTHONS[@]}"; do
	suite
done

t_case "kiln-shim on a predict() annotated -> None: SETUP_FAILED with Cog's message, 503 for predictions"
DIR=$(shim_project none_project)
write_predictor "$DIR/predict.py" 'def predict(self) -> None:' pass
start "$DIR" KILN_ALLOW_CPU=1
if wait_health SETUP_FAILED; then
	req GET /health-check
	expect_eq "$(field 'j["setup"]["logs"]')" "predict.py:4: predict() must have a return type annotation"
	post '{"input": {}}'
	expect_eq "$CODE" 503
fi
stop_shim

t_case "kiln-shim on an output object: Optional fields nullable in /openapi.json and null in the response; None elsewhere fails"
DIR=$(shim_project optional_project)
write_optional_output "$DIR/predict.py"
start "$DIR" KILN_ALLOW_CPU=1
if wait_health READY; then
	req GET /openapi.json
	expect_eq "$CODE" 200
	expect_eq "$(field 'j["components"]["schemas"]["Output"]')" "$OPTIONAL_OUTPUT_SCHEMA"
	post '{"input": {}}'
	expect_eq "$CODE" 200
	expect_eq "$(field '[j["status"], j["error"]]')" '["succeeded", null]'
	expect_eq "$(field 'j["output"]')" '{"text": "t", "score": null, "label": null, "file": null, "tags": null, "count": 3}'
	post '{"input": {"empty": false}}'
	expect_eq "$(field '[j["status"], j["output"]["score"], j["output"]["tags"], j["output"]["file"] is not None]')" \
		'["succeeded", 0.5, ["a"], true]'
	post '{"input": {"unset": "text"}}'
	expect_eq "$CODE" 200
	expect_eq "$(field '[j["status"], j["error"], j["output"]]')" '["failed", "missing value for output field: text", null]'
fi
stop_shim
t_case "kiln-shim: an output that raises while it is checked fails its prediction; the worker goes on"
DIR=$(shim_project raising_output)
cat >"$DIR/predict.py" <<'EOF'
from cog import BaseModel, BasePredictor


class Output(BaseModel):
    text: str


class Weird(Output):
    def __init__(self):  # no field set: reading "text" runs the property
        pass

    @property
    def text(self):
        raise RuntimeError("boom while reading text")


class Predictor(BasePredictor):
    def predict(self, weird: bool = True) -> Output:
        return Weird() if weird else Output(text="fine")
EOF
start "$DIR" KILN_ALLOW_CPU=1
if wait_health READY; then
	post '{"input": {}}'
	expect_eq "$(field '[j["status"], j["error"]]')" '["failed", "boom while reading text"]'
	post '{"input": {"weird": false}}'
	expect_eq "$(field '[j["status"], j["output"]]')" '["succeeded", {"text": "fine"}]' "the next prediction"
	req GET /health-check
	expect_eq "$(field 'j["status"]')" READY
fi
stop_shim
t_finish
