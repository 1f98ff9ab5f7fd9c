#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Cog's command lines, unchanged: `cog predict --json INPUT` (text, @FILE, @-, "@PATH" members), -o for
# every kind of output with "Written output to: PATH", "No output generated", inputs refused before the
# model starts in Cog's words, `kiln run` as predict's other name, and `kiln serve` passing the shim's
# options (--upload-url), floats printed as Python prints them. Every bad line has its message checked.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

FIX=$KILN_SOURCE_DIR/tests/fixtures/predictors
export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT
cd "$T_WORK" || exit 1

# kind CLASS: a project kCLASS running kinds.py:CLASS.
kind() {
	mkdir -p "$T_WORK/k$1"
	cp "$FIX/kinds.py" "$T_WORK/k$1/"
	echo "run: kinds.py:$1" >"$T_WORK/k$1/kiln.yaml"
}
for c in Text Number Reals Numbers Mapping Stream File Files Nothing; do kind "$c"; done
mkdir -p "$T_WORK/types" "$T_WORK/raises"
cp "$FIX/types.py" "$T_WORK/types/" && echo 'run: types.py:Predictor' >"$T_WORK/types/kiln.yaml"
cp "$FIX/raises.py" "$T_WORK/raises/" && echo 'run: raises.py:Predictor' >"$T_WORK/raises/kiln.yaml"
printf 'hi\n' >"$T_WORK/doc.txt"
# predict PROJECT ARGS...: run_kiln predict $T_WORK/PROJECT ARGS... --runtime native, in a fresh directory
# $T_WORK/cwd.
predict() {
	local project=$T_WORK/$1
	shift
	rm -rf "$T_WORK/cwd" && mkdir -p "$T_WORK/cwd" && cd "$T_WORK/cwd" || return 1
	run_kiln predict "$project" "$@" --runtime native
	cd "$T_WORK" || return 1
}

t_case "-f FILE: the manifest a project is built with (cog predict -f / cog train -f); refused for an image"
mkdir -p "$T_WORK/other"
cp "$FIX/kinds.py" "$T_WORK/other/"
echo 'run: kinds.py:Text' >"$T_WORK/other/alt.yaml"
predict other -f "$T_WORK/other/alt.yaml" -i text=abc
expect_rc 0
expect_eq "$OUT" "said: abc"
expect_contains "$ERR" "built other:latest"
run_kiln predict other:latest -i text=img --runtime native
expect_rc 0
expect_eq "$OUT" "said: img" "the image carries the -f manifest as its kiln.yaml"
run_kiln build "$T_WORK/other" -f "$T_WORK/other/alt.yaml" -t other:built
expect_rc 0
run_kiln predict other:built -i text=b --runtime native
expect_eq "$OUT" "said: b" "kiln build -f: the same"
mkdir -p "$T_WORK/kText/deep/er"
cd "$T_WORK/kText/deep/er" || exit 1
run_kiln predict -i text=up --runtime native
cd "$T_WORK" || exit 1
expect_eq "$OUT" "said: up" "kiln predict without DIR in a subdirectory: the project above it"
predict other --file "$T_WORK/other/nope.yaml"
expect_rc 1
expect_contains "$ERR" "nope.yaml"
predict other
expect_rc 1 "without -f: no kiln.yaml or cog.yaml there"
run_kiln predict other:latest -f "$T_WORK/other/alt.yaml" --runtime native
expect_rc 1
expect_contains "$ERR" "-f $T_WORK/other/alt.yaml: a manifest is for building a project directory, and 'other:latest' is no directory"

t_case "--json INPUT: a JSON object as text, @FILE, @- and -; its \"@PATH\" members are read as files"
predict types --json '{"text": "from text", "image": "@../doc.txt", "steps": 4}'
expect_rc 0
expect_eq "$(echo "$OUT" | json '[sorted(j), j["status"], j["error"]]')" '[["error", "output", "status"], "succeeded", ""]'
expect_eq "$(echo "$OUT" | json '[j["output"]["text"], j["output"]["steps"], j["output"]["image"]]')" \
	'["from text", 4, ["Path", true, "hi\n"]]'
echo '{"text": "from file", "image": "@../doc.txt"}' >"$T_WORK/in.json"
predict types --json "@$T_WORK/in.json"
expect_eq "$(echo "$OUT" | json 'j["output"]["text"]')" "from file" "@FILE"
for spell in @- -; do
	rm -rf "$T_WORK/cwd" && mkdir -p "$T_WORK/cwd" && cd "$T_WORK/cwd" || exit 1
	OUT=$(echo '{"text": "from stdin", "image": "@../doc.txt"}' | "$KILN" predict types --json "$spell" --runtime native 2>/dev/null)
	cd "$T_WORK" || exit 1
	expect_eq "$(echo "$OUT" | json 'j["output"]["text"]')" "from stdin" "--json $spell"
done

t_case "--json INPUT: file outputs are written beside output.json (or -o) and named by their path"
predict kFile --json '{"text": "json file"}'
expect_rc 0
expect_eq "$(cat "$T_WORK/cwd/output.txt" 2>/dev/null)" "json file" "output.txt"
expect_eq "$(echo "$OUT" | json 'j["output"]')" "output.txt" "the output, its path"
expect_contains "$ERR" "Written output to: output.txt"
predict kFiles --json '{}' -o "$T_WORK/cwd-res.json"
expect_eq "$OUT" "" "stdout with -o"
expect_eq "$(json 'j["output"]' <"$T_WORK/cwd-res.json")" "[\"$T_WORK/cwd-res.0.txt\", \"$T_WORK/cwd-res.1.txt\"]"
expect_eq "$(cat "$T_WORK/cwd-res.1.txt")" "file 1" "the second file"
expect_contains "$ERR" "Written output to: $T_WORK/cwd-res.json"
predict kText --json '{"text": "x"}' -o "$T_WORK/res.txt"
expect_contains "$ERR" "--output value does not have a .json suffix: res.txt"
expect_eq "$(json 'j["output"]' <"$T_WORK/res.txt")" "said: x" "the JSON written to a .txt"

t_case "--json INPUT: a failed prediction is printed as Cog's JSON and exits 1"
predict raises --json '{}'
expect_rc 1
expect_eq "$(echo "$OUT" | json '[j["status"], j["output"], j["error"]]')" '["failed", null, "bad"]'

t_case "bad --json: not an object, @FILE or @- (naming --format json), missing INPUT, bad JSON, with -i"
for bad in 'hello' '@' 'types'; do
	run_kiln predict types --json "$bad" --runtime native
	expect_rc 2
	expect_contains "$ERR" "--json '$bad': give a JSON object, @FILE or @-"
	expect_contains "$ERR" "give --format json"
done
run_kiln predict types --json
expect_rc 2
expect_contains "$ERR" "--json needs INPUT"
expect_contains "$ERR" "--format json"
run_kiln predict types --json -i text=a
expect_rc 2
expect_contains "$ERR" "--json '-i'"
run_kiln predict types --json '{"text": ' --runtime native
expect_rc 1
expect_contains "$ERR" "Failed to parse JSON: "
for json in '[1, 2]' '5' '"text"'; do # JSON, not an object: Cog's JSON error, not kiln's usage
	run_kiln predict types --json "$json" --runtime native
	expect_rc 1
	expect_contains "$ERR" "Failed to parse JSON: the inputs must be a JSON object of names"
done
run_kiln predict types --json @missing.json --runtime native
expect_rc 1
expect_contains "$ERR" 'Failed to read JSON from file "missing.json": No such file or directory'
run_kiln predict types --json '{"text": "a"}' -i text=b --runtime native
expect_rc 1
expect_contains "$ERR" "Must use one of --json or --input to provide model inputs"
run_kiln predict types --json '{}' --input-json in.json --runtime native
expect_rc 2
expect_contains "$ERR" "--json and --input-json both give the input object"
run_kiln predict types --json '{"text": "abc", "image": "@nothere.txt"}' --runtime native
expect_rc 1
expect_contains "$ERR" "Failed to read file \"nothere.txt\": cannot open 'nothere.txt'"

t_case "-o for every kind of output, \"Written output to: PATH\" on stderr, nothing on stdout"
# kind ARGS EXPECTED-FILE-TEXT
check_o() {
	local class=$1 want=$2
	predict "k$class" -o "$T_WORK/o-$class.out" "${@:3}"
	expect_rc 0
	expect_eq "$OUT" "" "$class: stdout"
	expect_contains "$ERR" "Written output to: $T_WORK/o-$class.out"
	expect_eq "$(cat "$T_WORK/o-$class.out" 2>/dev/null)" "$want" "$class: the file"
}
check_o Text "said: hi" -i text=hi
expect_eq "$(wc -c <"$T_WORK/o-Text.out")" "8" "a string written as it is, no newline"
check_o Number "4.5" -i n=3
check_o Numbers $'[\n  0,\n  1\n]' -i n=2
check_o Mapping $'{\n  "a": [\n    1,\n    "x"\n  ],\n  "b": 2\n}'
check_o Stream $'[\n  "item-0",\n  "item-1"\n]'
predict kFile -i text=to-file -o "$T_WORK/f.txt"
expect_eq "$(cat "$T_WORK/f.txt")" "to-file" "a Path to -o"
expect_contains "$ERR" "Written output to: $T_WORK/f.txt"
predict kFile -o "$T_WORK/noext"
expect_eq "$(cat "$T_WORK/noext.txt")" "hi" "a Path to -o without an extension gets its MIME type's"
predict kFiles -i n=2 -o "$T_WORK/many.dat"
expect_eq "$(cat "$T_WORK/many.0.dat") / $(cat "$T_WORK/many.1.dat")" "file 0 / file 1" "a list of Paths to -o"
mkdir -p "$T_WORK/outdir"
predict kFile -o "$T_WORK/outdir"
expect_eq "$(cat "$T_WORK/outdir/output.txt")" "hi" "-o DIR: DIR/output.EXT"

t_case "without -o: strings printed with a newline, the rest as JSON (keys in order), files to output.EXT"
predict kText -i text=yo
expect_eq "$OUT" "said: yo"
predict kMapping
expect_eq "$OUT" $'{\n  "a": [\n    1,\n    "x"\n  ],\n  "b": 2\n}'
predict kStream -i n=3
expect_eq "$(echo "$OUT" | json 'j')" '["item-0", "item-1", "item-2"]' "an iterator's items, as a list"
predict kFiles
expect_eq "$(cat "$T_WORK/cwd/output.0.txt")" "file 0" "output.0.txt"
expect_contains "$ERR" "Written output to: output.1.txt"

t_case "floats as Python prints them: through kiln predict, the shim's replies and its schema"
predict kReals -i x=0.1
expect_rc 0
# Python's own text for the same list, 2 spaces as kiln predict lays it out
want=$(python3 -c 'import json; print(json.dumps([0.1, 0.1 + 0.2, 1.0, 1e-07, 1e16, 2.0 / 3.0], indent=2))')
expect_eq "$OUT" "$want" "kiln predict"
start "$T_WORK/kReals"
wait_health READY
post '{"input": {"x": 0.95}}'
expect_contains "$BODY" '"output":[0.95,0.30000000000000004,1.0,1e-07,1e+16,0.6666666666666666]' "HTTP"
expect_contains "$BODY" '"input":{"x":0.95}' "the input echoed"
req GET /openapi.json
expect_contains "$BODY" '"default":0.95' "the schema's default"
kill "$SPID" 2>/dev/null

t_case "No output generated: on stderr, nothing on stdout, exit 0 (and nothing written for -o)"
predict kNothing -o "$T_WORK/none.out"
expect_rc 0
expect_eq "$OUT" ""
expect_contains "$ERR" "No output generated"
[ ! -e "$T_WORK/none.out" ] || t_fail "-o was written for no output"

t_case "an output path that cannot be written is refused before anything runs"
predict kText -i text=a -o /nonexistent/dir/out
expect_rc 1
expect_contains "$ERR" "Output path is not writable: Output directory is not writable: /nonexistent/dir"
expect_not_contains "$ERR" "runtime:"
mkdir -p "$T_WORK/cwd-clash" && cd "$T_WORK/cwd-clash" && mkdir -p output
run_kiln predict "$T_WORK/kText" -i text=a --runtime native
cd "$T_WORK" || exit 1
expect_rc 1
expect_contains "$ERR" 'Default output name "output" conflicts with directory, provide --output'

t_case "inputs refused before the model starts, in Cog's words"
# refused MESSAGE ARGS...: predict ARGS... exits 1 with MESSAGE and no runtime started
refused() {
	predict "${@:2}"
	expect_rc 1
	expect_contains "$ERR" "$1"
	expect_not_contains "$ERR" "runtime:"
}
refused 'unknown input "nope"; valid inputs are: n' kNumber -i nope=1
refused 'unknown inputs "a", "b"; valid inputs are: n' kNumber -i b=1 -i a=2
refused 'unknown input "x"; model does not accept inputs' kMapping --json '{"x": 1}'
refused 'unknown input "typo"; valid inputs are: doc, extra' types --json '{"typo": "@nothere.txt"}'
refused 'missing required input "text"' kText
refused $'input validation failed:\n- missing required input "text"\n- missing required input "image"' types
refused 'invalid input "n": expected integer, got string' kNumber --json '{"n": "three"}'
refused 'invalid input "n": must not be null (omit the input to use its default)' kNumber --json '{"n": null}'
refused 'invalid input "mode": must be one of: fast, slow' types -i text=abc -i image=@../doc.txt -i mode=medium
refused 'invalid input "steps": 99 is greater than the maximum of 50' types -i text=abc -i image=@../doc.txt -i steps=99

t_case "-i NAME=\"VALUE\" loses its quotes, as in Cog; a failed prediction in Cog's words"
predict kText -i 'text="quoted words"'
expect_eq "$OUT" "said: quoted words"
predict raises
expect_rc 1
expect_contains "$ERR" 'Prediction failed with status "failed": bad'
run_kiln predict text=hello
expect_rc 1
expect_contains "$ERR" "Invalid image name 'text=hello'. Did you forget \`-i\`?"

t_case "--format json: kiln's whole response; other values and -o with it refused"
predict kText -i text=fmt --format json
expect_rc 0
expect_eq "$(echo "$OUT" | json '[j["status"], j["output"], j["input"]]')" '["succeeded", "said: fmt", {"text": "fmt"}]'
run_kiln predict kText --format yaml
expect_rc 2
expect_contains "$ERR" "--format: 'yaml' is not json or text"
run_kiln predict kText --format json -o x
expect_rc 2
expect_contains "$ERR" "-o: --format json prints the whole response"

t_case "kiln run is predict (Cog 0.20's name)"
rm -rf "$T_WORK/cwd" && mkdir -p "$T_WORK/cwd" && cd "$T_WORK/cwd" && run_kiln run "$T_WORK/kText" -i text=ran --runtime native
cd "$T_WORK" || exit 1
expect_rc 0
expect_eq "$OUT" "said: ran"
run_kiln help run
expect_contains "$OUT" "usage: kiln run [DIR | REF]"
expect_contains "$OUT" "--json INPUT"
# a command, as the older `cog run COMMAND` took it: kiln exec, with Cog's warning
cd "$T_WORK/kText" || exit 1
for line in "echo hello world" "python3 -c print(7)" "--runtime native printf %s sh"; do
	# shellcheck disable=SC2086
	run_kiln run $line
	expect_rc 0 "kiln run $line"
	expect_contains "$ERR" '"kiln run <command>" is deprecated, use "kiln exec <command>"'
done
expect_eq "$OUT" "sh"
run_kiln run -i text=here --runtime native
expect_eq "$OUT" "said: here" "options of predict's alone: a prediction"
expect_not_contains "$ERR" "deprecated, use"
run_kiln run -p 8888 true
expect_rc 0
expect_contains "$ERR" '"kiln run <command>" is deprecated' "an option predict does not take: a command"
cd "$T_WORK" || exit 1

t_case "kiln serve passes the shim's options: --upload-url gets the file outputs, --idle-exit ends it"
mkdir -p "$T_WORK/uploads"
python3 - "$T_WORK/uploads" "$T_WORK/up.port" <<'EOF' 2>"$T_WORK/up.log" &
import http.server, os, sys
d, portfile = sys.argv[1:3]
class H(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        with open(os.path.join(d, os.path.basename(self.path)), "wb") as f:
            f.write(data)
        self.send_response(201)
        self.end_headers()
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(portfile, "w").write(str(s.server_port))
s.serve_forever()
EOF
UPID=$!
t_defer "kill $UPID 2>/dev/null"
for _ in $(seq 50); do [ -s "$T_WORK/up.port" ] && break; sleep 0.1; done
UP=http://127.0.0.1:$(cat "$T_WORK/up.port")/files/
PORT_S=$(free_port)
URL=http://127.0.0.1:$PORT_S
"$KILN" serve "$T_WORK/kFile" --host 127.0.0.1 --port "$PORT_S" --upload-url "$UP" --idle-exit 3 \
	--await-explicit-shutdown false --max-connections 50 2>"$T_WORK/serve.log" &
SERVE=$!
t_defer "kill -9 $SERVE 2>/dev/null"
wait_listen "$T_WORK/serve.log"
wait_health READY 30
post '{"input": {"text": "uploaded"}}'
expect_eq "$CODE" "200"
expect_eq "$(field 'j["output"]')" "${UP}out.txt" "the output's URL"
expect_eq "$(cat "$T_WORK/uploads/out.txt" 2>/dev/null)" "uploaded" "the uploaded file"
for _ in $(seq 100); do kill -0 "$SERVE" 2>/dev/null || break; sleep 0.1; done
wait "$SERVE"
expect_eq "$?" "0" "kiln serve --idle-exit 3: its exit status"

t_case "kiln serve: the shim's values checked by the shim; --version and --project with DIR refused"
run_kiln serve "$T_WORK/kFile" --idle-exit soon --port 0
expect_rc 1
expect_contains "$ERR" "--idle-exit: expected seconds or 'auto'"
run_kiln serve "$T_WORK/kFile" --version
expect_rc 2
expect_contains "$ERR" "--version: kiln serve runs the shim of this kiln; see 'kiln version'"
run_kiln serve "$T_WORK/kFile" --project "$T_WORK/kText"
expect_rc 2
expect_contains "$ERR" "--project '$T_WORK/kText' and DIR '$T_WORK/kFile': give one"
run_kiln serve --bogus
expect_rc 2
expect_contains "$ERR" "unknown option '--bogus'"

t_case "kiln serve -f FILE: the project served with that manifest, as cog serve -f"
PORT_S=$(free_port)
URL=http://127.0.0.1:$PORT_S
"$KILN" serve "$T_WORK/other" -f "$T_WORK/other/alt.yaml" --host 127.0.0.1 --port "$PORT_S" --idle-exit 3 \
	2>"$T_WORK/serve-f.log" &
SERVE=$!
t_defer "kill -9 $SERVE 2>/dev/null"
wait_listen "$T_WORK/serve-f.log"
wait_health READY 30
post '{"input": {"text": "served"}}'
expect_eq "$(field '[j["status"], j["output"]]')" '["succeeded", "said: served"]'
kill -TERM "$SERVE" 2>/dev/null
run_kiln serve "$T_WORK/other" -f "$T_WORK/other/nope.yaml"
expect_rc 1
expect_contains "$ERR" "nope.yaml"

t_finish
