#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln init: the files it writes, a project that builds and serves as it is, CI files that are YAML and do
# what they say, and a refusal that writes nothing when any of the files is there already.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

export KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES PORT

FILES=(kiln.yaml predict.py requirements.txt .kilnignore .github/workflows/kiln.yml .gitlab-ci.yml)

# no_temp_files DIR: fails the case if a temporary file of kiln init is left under DIR. Sets nothing.
no_temp_files() {
	local left
	left=$(find "$1" -name '*.tmp-*' | head -3)
	[ -z "$left" ] || t_fail "temporary files left: $left"
}

# code_files IMAGE_JSON: the paths in the code layer of the build report IMAGE_JSON, sorted, one a line.
code_files() {
	local digest
	digest=$(echo "$1" | json '[l["digest"] for l in j["layers"] if l["kind"]=="code"][0]')
	tar -tzf "$KILN_HOME/blobs/sha256/${digest#sha256:}" | grep -v '/$' | sort
}

P=$T_WORK/new/parent/proj

t_case "init into a new directory makes it and writes every file"
run_kiln init "$P"
expect_rc 0
expected=""
for f in "${FILES[@]}"; do
	[ -s "$P/$f" ] || t_fail "'$f' was not written"
	expected+="$P/$f"$'\n'
done
expect_eq "$OUT" "${expected%$'\n'}" "stdout"
expect_contains "$ERR" "kiln serve $P"
expect_eq "$(stat -c %a "$P/predict.py")" "$(printf '%o' $((0666 & ~$(umask))))" "mode of predict.py"
no_temp_files "$P"
expect_contains "$(cat "$P/kiln.yaml")" "run: predict.py:Predictor"
expect_contains "$(cat "$P/kiln.yaml")" "python_version:"
expect_contains "$(cat "$P/kiln.yaml")" "# serve:"
expect_contains "$(cat "$P/kiln.yaml")" "# weights:"

t_case "init without DIR writes into the current directory, paths as they are"
mkdir -p "$T_WORK/here"
OUT=$(cd "$T_WORK/here" && "$KILN" init 2>/dev/null)
expect_eq "$OUT" "$(printf '%s\n' "${FILES[@]}")" "stdout"
for f in "${FILES[@]}"; do cmp -s "$P/$f" "$T_WORK/here/$f" || t_fail "'$f' differs between two inits"; done

t_case "predict.py needs nothing but Python and the cog module"
imports=$(grep -E '^(from|import) ' "$P/predict.py")
expect_eq "$imports" "from cog import BaseRunner, Input" "imports"

t_case "the new project builds, leaving CI files, caches and kiln's store out of the image"
mkdir -p "$P/.kiln-home/blobs" "$P/__pycache__" "$P/.venv/bin"
echo x >"$P/.kiln-home/blobs/x"
echo x >"$P/__pycache__/predict.cpython-311.pyc"
echo x >"$P/.venv/bin/python"
echo SECRET=1 >"$P/.env"
run_kiln build "$P" -t init-test:v1 --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["runtime"]')" "True" "runtime layer present"
expect_eq "$(code_files "$OUT" | tr '\n' ' ')" "src/.kilnignore src/kiln.yaml src/predict.py src/requirements.txt " \
	"code layer"
run_kiln inspect init-test:v1 --json
expect_rc 0
expect_contains "$OUT" "run.cog.openapi_schema"

t_case "kiln serve answers predictions with the new project's predictor"
PORT1=$(free_port)
"$KILN" serve "$P" --port "$PORT1" --host 127.0.0.1 2>"$T_WORK/serve.log" &
SPID=$!
t_defer "kill -9 $SPID 2>/dev/null"
URL=http://127.0.0.1:$PORT1
s=$(wait_settled "$URL" 20)
expect_eq "$s" "READY" "status (log: $(cat "$T_WORK/serve.log"))"
post '{"input":{"name":"kiln"}}'
expect_eq "$CODE" "200" "HTTP status"
expect_eq "$(field 'j["output"]')" "Hello, kiln!" "output"
post '{"input":{"name":"kiln","times":2,"shout":true}}'
expect_eq "$(field 'j["output"]')" "HELLO, KILN! HELLO, KILN!" "output with every input"
post '{"input":{"times":11}}'
expect_eq "$CODE" "422" "HTTP status of an input out of range"
req GET /openapi.json
expect_eq "$(field 'sorted(j["components"]["schemas"]["Input"]["properties"])')" \
	'["name", "shout", "times"]' "inputs in the schema"
kill -TERM "$SPID"
wait "$SPID"
expect_eq "$?" "0" "exit status after SIGTERM"

t_case "the commented-out weights and serve sections are valid once uncommented"
U=$T_WORK/uncommented
mkdir -p "$U"
cp -a "$P/." "$U/"
rm -rf "$U/.kiln-home"
make_file "$U/weights/model.safetensors" 4096
# Uncomment the YAML lines from "# image:" on (image, weights and serve), leaving the prose commented.
awk '/^# image:/ { on = 1 } on && /^# +(- |[a-z_]+:)/ { sub(/^# /, "") } { print }' "$P/kiln.yaml" >"$U/kiln.yaml"
expect_contains "$(cat "$U/kiln.yaml")" $'\nserve:\n'
run_kiln build "$U" -t init-test:weights --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'len([l for l in j["layers"] if l["kind"]=="weights"])')" "1" "weight layers"
run_kiln inspect init-test:weights --json
expect_contains "$OUT" "weights/model.safetensors"
expect_contains "$OUT" '"max_instances": 4'

t_case "the CI files are YAML that log in, build, push and cache KILN_HOME"
if ! python3 -c 'import yaml' 2>/dev/null; then
	t_fail "python3 cannot import yaml (scripts/deps.sh installs python3-yaml)"
else
	# yaml_check FILE EXPR: EXPR, on the YAML document `y` of FILE and its text `t`, is true.
	yaml_check() {
		python3 - "$@" <<'EOF' || t_fail "$1: $2"
import sys, yaml
t = open(sys.argv[1]).read()
y = yaml.safe_load(t)
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
	}
	G=$P/.github/workflows/kiln.yml
	# PyYAML reads YAML 1.1, where a bare "on" key is the boolean true.
	yaml_check "$G" '"push" in y.get("on", y.get(True))'
	yaml_check "$G" 'y["permissions"]["packages"] == "write"'
	yaml_check "$G" 'any(s.get("uses", "").startswith("actions/cache@") and s["with"]["path"] == "${{ env.KILN_HOME }}" and "key" in s["with"] for s in y["jobs"]["build"]["steps"])'
	yaml_check "$G" 'any("KILN_HOME=" in s.get("run", "") and "GITHUB_ENV" in s.get("run", "") for s in y["jobs"]["build"]["steps"])'
	yaml_check "$G" 'any("kiln login ghcr.io" in s.get("run", "") and "--password-stdin" in s.get("run", "") for s in y["jobs"]["build"]["steps"])'
	yaml_check "$G" 'any(" build . --push" in s.get("run", "") and "-t \"ghcr.io/${GITHUB_REPOSITORY,,}" in s.get("run", "") for s in y["jobs"]["build"]["steps"])'
	L=$P/.gitlab-ci.yml
	yaml_check "$L" 'y["variables"]["KILN_HOME"] == "$CI_PROJECT_DIR/.kiln-home"'
	yaml_check "$L" 'y["kiln"]["cache"]["paths"] == [".kiln-home/"] and y["kiln"]["cache"]["key"]'
	yaml_check "$L" 'any("kiln login \"$CI_REGISTRY\" -u \"$CI_REGISTRY_USER\" --password-stdin" in c for c in y["kiln"]["script"])'
	yaml_check "$L" 'any(" build . --push -t \"$CI_REGISTRY_IMAGE:" in c for c in y["kiln"]["script"])'
	yaml_check "$P/kiln.yaml" 'y["run"] == "predict.py:Predictor" and y["build"]["python_version"] == "3.11"'
fi

t_case "one existing file: nothing is written, exit 1 naming it"
E=$T_WORK/existing
mkdir -p "$E"
echo mine >"$E/predict.py"
run_kiln init "$E"
expect_rc 1
expect_contains "$ERR" "'predict.py' exists in '$E'"
expect_not_contains "$ERR" "kiln.yaml"
expect_eq "$OUT" "" "stdout"
expect_eq "$(ls -A "$E")" "predict.py" "files in the directory"
expect_eq "$(cat "$E/predict.py")" "mine" "the existing file"

t_case "every existing file is named, nested ones relative to DIR"
E2=$T_WORK/existing2
mkdir -p "$E2/.github/workflows"
echo mine >"$E2/.github/workflows/kiln.yml"
ln -s nowhere "$E2/.gitlab-ci.yml"
run_kiln init "$E2"
expect_rc 1
expect_contains "$ERR" "'.github/workflows/kiln.yml' exists in '$E2'"
expect_contains "$ERR" "'.gitlab-ci.yml' exists in '$E2'"
expect_eq "$(ls -A "$E2" | tr '\n' ' ')" ".github .gitlab-ci.yml " "files in the directory"
expect_eq "$(cat "$E2/.github/workflows/kiln.yml")" "mine" "the existing file"

t_case "a file where a directory of the CI files goes is refused"
E3=$T_WORK/existing3
mkdir -p "$E3"
echo mine >"$E3/.github"
run_kiln init "$E3"
expect_rc 1
expect_contains "$ERR" "'.github' exists in '$E3' and is not a directory"
expect_eq "$(ls -A "$E3")" ".github" "files in the directory"

t_case "a DIR that is a file is refused"
echo data >"$T_WORK/afile"
run_kiln init "$T_WORK/afile"
expect_rc 1
expect_contains "$ERR" "cannot init '$T_WORK/afile': not a directory"
expect_eq "$(cat "$T_WORK/afile")" "data" "the file"
run_kiln init "$T_WORK/afile/sub"
expect_rc 1
expect_contains "$ERR" "cannot init '$T_WORK/afile/sub'"

t_case "a write that fails removes what was written and made"
# A 16 KiB tmpfs in a mount namespace of its own fills up before the last file (root only).
T=$T_WORK/tiny
mkdir -p "$T"
if unshare -m true 2>/dev/null; then
	OUT=$(unshare -m bash -c 'mount -t tmpfs -o size=16k tmpfs "$1" && "$2" init "$1/p"; echo "rc=$?"; ls -A "$1"' \
		_ "$T" "$KILN" 2>"$T_WORK/stderr")
	ERR=$(cat "$T_WORK/stderr")
	expect_eq "$OUT" "rc=1" "exit status and what is left"
	expect_contains "$ERR" "No space left on device"
else
	echo "  (skipped: no mount namespace for a small tmpfs)" >&2
fi

t_case "--json prints the directory and the files"
J=$T_WORK/json
run_kiln init "$J" --json --quiet
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["dir"]')" "$J" "dir"
expect_eq "$(echo "$OUT" | json 'j["files"]')" "$(printf '%s\n' "${FILES[@]}" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().split()))')" "files"
expect_eq "$ERR" "" "stderr with --quiet"
no_temp_files "$J"

t_case "--quiet prints nothing; usage errors exit 2"
run_kiln init "$T_WORK/quiet" --quiet
expect_rc 0
expect_eq "$OUT" "" "stdout"
expect_eq "$ERR" "" "stderr"
[ -s "$T_WORK/quiet/kiln.yaml" ] || t_fail "kiln.yaml was not written"
run_kiln init a b
expect_rc 2
expect_contains "$ERR" "too many arguments"
run_kiln init --bogus
expect_rc 2
run_kiln init ""
expect_rc 2
expect_contains "$ERR" "the directory name is empty"
run_kiln init --help
expect_rc 0
expect_contains "$OUT" "usage: kiln init [DIR]"

t_finish
