#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln doctor: a clean project passes (exit 0, says so, in text and JSON) and builds nothing; one project
# per kind of finding (the manifest, the predictor, python_version and the base, the requirements, the
# weights, the ignore file, the tools), each with its line, its severity and its fix; exit 1 on an error.
source "$(dirname "$0")/lib.sh"

# The real default base (python:3.12-slim, a registry base: doctor does not fetch it).
unset KILN_PYTHON_BASE KILN_ALLOW_NO_PYTHON
PREDICT='from cog import BaseRunner


class Predictor(BaseRunner):
    def run(self, text: str = "x") -> str:
        return text
'
# project NAME YAML: a project DIR ($T_WORK/NAME) with predict.py and kiln.yaml "YAML" (run: line added).
project() {
	D=$T_WORK/$1
	mkdir -p "$D"
	printf '%s' "$PREDICT" >"$D/predict.py"
	printf '%srun: predict.py:Predictor\n' "$2" >"$D/kiln.yaml"
}
doctor() { run_kiln doctor "$@"; }
# doctor_path DIR ARGS...: kiln doctor with PATH=DIR (run_kiln's tools would not be there): OUT, RC
doctor_path() {
	local path=$1
	shift
	OUT=$(PATH=$path "$KILN" doctor "$@" 2>/dev/null)
	RC=$?
}

t_case "a clean project: exit 0, 'no problems found', nothing built or written"
project clean ""
doctor "$D"
expect_rc 0
expect_eq "$OUT" "no problems found in '$D'" "output"
expect_eq "$ERR" "" "stderr"
[ -e "$KILN_HOME/index.json" ] && t_fail "doctor wrote an image to the store"
expect_eq "$(ls -A "$D" | tr '\n' ' ')" "kiln.yaml predict.py " "the project's files"
doctor "$D" --format json
expect_rc 0
expect_eq "$(echo "$OUT" | json '[j["project"], j["ok"], j["errors"], j["warnings"], j["findings"]]')" "[\"$D\", true, 0, 0, []]" "JSON"
OUT=$(cd "$D" && "$KILN" doctor)
expect_eq "$OUT" "no problems found in '.'" "the current directory"

t_case "the manifest: an error at its line and column, exit 1; the JSON has them apart"
project badkey 'build:
  python_version: "3.11"
  pyhton_packages: [x]
'
doctor "$D"
expect_rc 1
expect_contains "$OUT" "error: manifest: $D/kiln.yaml:3:3: unknown key 'pyhton_packages' in 'build' (fix: correct the manifest where the message says (see kiln.yaml(5)); the other checks need it)"
expect_contains "$OUT" "1 error, 0 warnings in '$D'"
doctor "$D" --json
expect_rc 1
expect_eq "$(echo "$OUT" | json '[(f["severity"], f["check"], f["file"], f["line"], f["column"]) for f in j["findings"]]')" "[[\"error\", \"manifest\", \"$D/kiln.yaml\", 3, 3]]" "JSON finding"
expect_eq "$(echo "$OUT" | json 'j["findings"][0]["message"]')" "unknown key 'pyhton_packages' in 'build'" "JSON message"
doctor "$T_WORK/nothing"
expect_rc 1
expect_contains "$OUT" "error: manifest: no kiln.yaml or cog.yaml in '$T_WORK/nothing' (fix: write one with 'kiln init', or give the project's directory)"
project nofile 'build:
  python_requirements: requirements.txt
'
doctor "$D"
expect_rc 1
expect_contains "$OUT" "error: manifest: $D/kiln.yaml:2:24: build.python_requirements: file 'requirements.txt' does not exist"

t_case "the manifest's warnings (a key kiln does not act on) are warnings: exit 0"
project sdk 'build:
  sdk_version: "0.16.0"
'
doctor "$D"
expect_rc 0
expect_contains "$OUT" "warning: manifest: $D/kiln.yaml:2:3: build.sdk_version:"
expect_contains "$OUT" "(fix: kiln builds the project anyway, as the message says; remove the key to silence it)"
expect_contains "$OUT" "0 errors, 1 warning in '$D'"

t_case "the predictor and the trainer: a type kiln cannot describe, a syntax error, a class that is not there"
project badtype ""
printf 'from cog import BasePredictor\n\n\nclass Predictor(BasePredictor):\n    def predict(self, x: complex) -> str:\n        return "x"\n' >"$D/predict.py"
doctor "$D"
expect_rc 1
expect_contains "$OUT" "error: predictor: $D/predict.py:5: unsupported type annotation 'complex' for input 'x' (fix: make 'predict.py:Predictor' (run:) importable, with inputs and outputs of Cog's types; kiln build fails on it)"
printf 'class Predictor(\n' >"$D/predict.py"
doctor "$D"
expect_rc 1
expect_contains "$OUT" "error: predictor: $D/predict.py:1: syntax error"
printf 'class Other:\n    pass\n' >"$D/predict.py"
doctor "$D"
expect_rc 1
expect_contains "$OUT" "error: predictor: $D/predict.py: no class or function named 'Predictor'"
project trainer 'train: train.py:Trainer
'
printf 'class Trainer:\n    def setup(self) -> None:\n        pass\n\n    def train(self, steps: int = 1) -> str:\n        return "w"\n' >"$D/train.py"
doctor "$D"
expect_rc 0
expect_eq "$OUT" "no problems found in '$D'" "a trainer class (train: with train())"
printf 'class Trainer:\n    def train(self, steps: complex) -> str:\n        return "w"\n' >"$D/train.py"
doctor "$D"
expect_rc 1
expect_contains "$OUT" "error: predictor: $D/train.py:2: unsupported type annotation 'complex' for input 'steps' (fix: make 'train.py:Trainer' (train:) importable"

t_case "the predictor's deprecated names (BasePredictor, predict()) are warnings: exit 0"
project oldnames ""
printf 'from cog import BasePredictor\n\n\nclass Predictor(BasePredictor):\n    def predict(self) -> str:\n        return "x"\n' >"$D/predict.py"
doctor "$D"
expect_rc 0
expect_contains "$OUT" "warning: predictor: $D/predict.py:4: BasePredictor is deprecated: derive 'Predictor' from cog.BaseRunner and name its method run()"

t_case "python_version: unsupported (error), deprecated (warning)"
project py37 'build:
  python_version: "3.7"
'
doctor "$D"
expect_rc 1
expect_contains "$OUT" "error: python: $D/kiln.yaml:2:19: python_version: '3.7': minimum supported Python version is 3.8"
expect_contains "$OUT" "(fix: give a python_version from 3.8 to 3.13)"
project py39 'build:
  python_version: "3.9"
'
doctor "$D"
expect_rc 0
expect_contains "$OUT" "warning: python: $D/kiln.yaml:2:19: python_version: 3.9 is deprecated in Cog (fix: move to Python 3.10 or later)"

t_case "python_version against a base on this machine: another Python (error), none (warning)"
debian_base || t_fail "no Debian base"
project base311 "base: oci:$DEBIAN_BASE:bookworm
build:
  python_version: \"3.11\"
"
doctor "$D"
expect_rc 0
expect_eq "$OUT" "no problems found in '$D'" "the base's own Python"
project base312 "base: oci:$DEBIAN_BASE:bookworm
build:
  python_version: \"3.12\"
"
doctor "$D"
expect_rc 1
expect_contains "$OUT" "error: python: $D/kiln.yaml:3:19: build.python_version: '3.12', but the base 'oci:$DEBIAN_BASE:bookworm' has Python 3.11"
expect_contains "$OUT" "(fix: give python_version the base's Python, or another base:)"
project onscratch 'base: scratch
'
doctor "$D"
expect_rc 0
expect_contains "$OUT" "warning: python: base: scratch: the image has no Python"

t_case "the requirements: an include that is not there, at its line"
project reqs 'build:
  python_requirements: requirements.txt
'
printf 'numpy==1.26.4\n-r more.txt\n' >"$D/requirements.txt"
doctor "$D"
expect_rc 1
expect_contains "$OUT" "error: requirements: $D/requirements.txt:2: cannot open included requirements file 'more.txt'"
expect_contains "$OUT" "(fix: correct the requirements where the message says (pip's requirements format))"
printf 'numpy==1.26.4\n' >"$T_WORK/reqs/more.txt"
doctor "$D"
expect_rc 0

t_case "the weights: a glob that matches no file"
project weights 'weights:
  - models/*.bin
'
doctor "$D"
expect_rc 1
expect_contains "$OUT" "error: weights: $D/kiln.yaml:2:5: weights[0]: 'models/*.bin' matches no file (fix: correct weights: (globs relative to the project) or put the files there)"
make_file "$D/models/a.bin" 1024
doctor "$D"
expect_rc 0
expect_eq "$OUT" "no problems found in '$D'" "weights found"
make_file "$D/data/big.pt" $((11 * 1024 * 1024))
doctor "$D"
expect_rc 0
expect_contains "$OUT" "warning: weights: 'data/big.pt' (11.0 MiB) goes into the code layer: no weights glob matches it (fix: add it to weights: (its own layer, pushed once) or to .kilnignore)"
project cogsize ""
make_file "$D/data/big.pt" $((11 * 1024 * 1024))
doctor "$D"
expect_eq "$OUT" "no problems found in '$D'" "without weights: globs, Cog's size rule takes it"

t_case "the ignore file: .dockerignore unread beside .kilnignore; directories the code layer would hold"
project ignore ""
mkdir -p "$D/__pycache__" "$D/.venv/lib"
touch "$D/.dockerignore"
doctor "$D"
expect_rc 0
expect_contains "$OUT" "warning: ignore: '__pycache__/' goes into the image's code layer (fix: add '__pycache__/' to .dockerignore)"
expect_contains "$OUT" "warning: ignore: '.venv/' goes into the image's code layer"
touch "$D/.kilnignore"
doctor "$D"
expect_contains "$OUT" "warning: ignore: .dockerignore is not read: .kilnignore is (fix: put the rules of .dockerignore that kiln should follow in .kilnignore)"
expect_contains "$OUT" "(fix: add '__pycache__/' to .kilnignore)"
printf '__pycache__\n.venv/\n' >"$D/.kilnignore"
rm "$D/.dockerignore"
doctor "$D"
expect_rc 0
expect_eq "$OUT" "no problems found in '$D'" "ignored directories"

t_case "the tools: no bubblewrap (an error when the build needs it), no python3, no shim"
mkdir -p "$T_WORK/bin" "$T_WORK/empty"
ln -s /usr/bin/python3 "$T_WORK/bin/python3"
project tools ""
doctor_path "$T_WORK/bin" "$D"
expect_rc 0
expect_contains "$OUT" "warning: tools: bubblewrap ('bwrap') is not installed"
expect_contains "$OUT" "(fix: install bubblewrap for --runtime bwrap; kiln predict and exec run natively meanwhile)"
project toolsteps 'build:
  system_packages: [curl]
'
doctor_path "$T_WORK/bin" "$D"
expect_rc 1
expect_contains "$OUT" "error: tools: bubblewrap ('bwrap') is not installed"
expect_contains "$OUT" "kiln build runs system_packages, build.run and pip under it)"
doctor_path "$T_WORK/empty" "$T_WORK/tools"
expect_contains "$OUT" "warning: tools: no python3 on this machine's PATH"
expect_contains "$OUT" "warning: predictor: cannot run 'python3' to describe the predictor"
KILN_SHIM=$T_WORK/no-shim run_kiln doctor "$T_WORK/tools"
expect_rc 1
expect_contains "$OUT" "error: tools: cannot find the predictor shim '$T_WORK/no-shim'"

t_case "--fix migrates the starter project's predict.py:Predictor to run.py:Runner, as cog doctor --fix does"
D=$T_WORK/migrate
mkdir -p "$D"
printf 'build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n' >"$D/cog.yaml"
printf 'from cog import BasePredictor, Input\n\n\nclass Predictor(BasePredictor):\n    def setup(self) -> None:\n        self.predictor_count = 1\n\n    def predict(self, text: str = Input(default="a")) -> str:\n        return "said " + text\n' >"$D/predict.py"
run_kiln doctor "$D"
expect_contains "$OUT" "kiln doctor --fix does it for predict.py:Predictor"
[ -f "$D/predict.py" ] && [ ! -e "$D/run.py" ] || t_fail "doctor without --fix changed the project"
run_kiln doctor "$D" --fix
expect_rc 0
expect_contains "$OUT" "fixed: predict-to-run: migrated predict.py:Predictor to run.py:Runner (BaseRunner, run()), and $D/cog.yaml's predict: to run:"
expect_not_contains "$OUT" "deprecated"
[ ! -e "$D/predict.py" ] || t_fail "predict.py is still there"
expect_eq "$(cat "$D/run.py")" "$(printf 'from cog import BaseRunner, Input\n\n\nclass Runner(BaseRunner):\n    def setup(self) -> None:\n        self.predictor_count = 1\n\n    def run(self, text: str = Input(default="a")) -> str:\n        return "said " + text')"
expect_eq "$(cat "$D/cog.yaml")" "$(printf 'build:\n  python_version: "3.11"\nrun: "run.py:Runner"')"
KILN_PYTHON_BASE=scratch run_kiln predict "$D" -i text=b --runtime native
expect_eq "$OUT" "said b" "the migrated project runs"
run_kiln doctor "$D" --fix --format json
expect_eq "$(echo "$OUT" | json 'j["fixed"]')" "[]" "nothing more to fix"
# what it cannot migrate: an error naming why, nothing changed
D=$T_WORK/nomigrate
mkdir -p "$D"
printf 'predict: predict.py:Predictor\n' >"$D/kiln.yaml"
printf 'from cog import BasePredictor\n\n\nclass Predictor(BasePredictor):\n    def predict(self) -> str:\n        return "x"\n\n    def predict_more(self) -> str:\n        return "y"\n\n\ndef predict(x):\n    return x\n' >"$D/predict.py"
cp "$D/predict.py" "$T_WORK/nomigrate.py"
run_kiln doctor "$D" --fix
expect_rc 1
expect_contains "$OUT" "error: predict-to-run: Manual migration required: automatic migration only supports a single Predictor class with a single predict method (fix: migrate by hand"
cmp -s "$D/predict.py" "$T_WORK/nomigrate.py" && [ ! -e "$D/run.py" ] || t_fail "a refused migration changed files"
printf 'from cog import BasePredictor\n\n\nclass Predictor(BasePredictor):\n    def predict(self) -> str:\n        return "x"\n' >"$D/predict.py"
echo 'print("mine")' >"$D/run.py"
run_kiln doctor "$D" --fix
expect_rc 1
expect_contains "$OUT" "error: predict-to-run: cannot migrate predict.py to run.py because run.py already exists"
expect_eq "$(cat "$D/run.py")" 'print("mine")'
expect_eq "$(cat "$D/kiln.yaml")" "predict: predict.py:Predictor"
ls -A "$D" | grep "\.tmp-" >/dev/null && t_fail "a temporary file was left"

t_case "from cog.types import ExperimentalFeatureWarning (gone since Cog 0.17) is an error; --fix removes it and its uses"
D=$T_WORK/efw
mkdir -p "$D"
printf 'run: run.py:Runner\n' >"$D/kiln.yaml"
cat >"$D/run.py" <<'PY'
import os
import warnings

from cog import BaseRunner
from cog.types import Path, ExperimentalFeatureWarning as EFW

warnings.filterwarnings(
    "ignore",
    category=EFW,
)


class Runner(BaseRunner):
    def run(self) -> str:
        return os.sep
PY
run_kiln doctor "$D"
expect_rc 1
expect_contains "$OUT" "error: python-deprecated-imports: $D/run.py:5: ExperimentalFeatureWarning was removed in cog 0.17; current_scope().record_metric() is no longer experimental (fix: Remove the import of ExperimentalFeatureWarning from cog.types (kiln doctor --fix does it))"
run_kiln doctor "$D" --fix --format json
expect_rc 0
expect_eq "$(echo "$OUT" | json '[j["ok"], j["fixed"]]')" \
	"[true, [{\"check\": \"python-deprecated-imports\", \"message\": \"removed the import of ExperimentalFeatureWarning from cog.types and its uses in $D/run.py\"}]]"
expect_eq "$(cat "$D/run.py")" "$(printf 'import os\n\nfrom cog import BaseRunner\nfrom cog.types import Path\n\n\n\nclass Runner(BaseRunner):\n    def run(self) -> str:\n        return os.sep')" \
	"the import, the statement using it and 'import warnings' (used only there) gone; 'import os' kept"
# used inside a function: refused, the file unchanged
printf 'from cog import BaseRunner\nfrom cog.types import ExperimentalFeatureWarning\n\n\nclass Runner(BaseRunner):\n    def run(self) -> str:\n        return ExperimentalFeatureWarning.__name__\n' >"$D/run.py"
cp "$D/run.py" "$T_WORK/efw.py"
run_kiln doctor "$D" --fix
expect_rc 1
expect_contains "$OUT" "error: python-deprecated-imports: $D/run.py:7: ExperimentalFeatureWarning is used here, not only imported: remove it by hand"
cmp -s "$D/run.py" "$T_WORK/efw.py" || t_fail "a refused fix changed run.py"

t_case "bad command lines"
run_kiln doctor "$T_WORK/clean" --format xml
expect_rc 2
expect_contains "$ERR" "kiln doctor: --format: 'xml' is not json or text"
run_kiln doctor "$T_WORK/clean" "$T_WORK/tools"
expect_rc 2
expect_contains "$ERR" "kiln doctor: too many arguments ('$T_WORK/tools')"
run_kiln doctor --fixes
expect_rc 2
expect_contains "$ERR" "kiln doctor: unknown option '--fixes'"
run_kiln doctor --help
expect_rc 0
expect_contains "$OUT" "usage: kiln doctor [DIR] [-f FILE] [--fix] [--format text|json]"
run_kiln doctor -f "$T_WORK/badkey/kiln.yaml" "$T_WORK/clean"
expect_rc 1
expect_contains "$OUT" "$T_WORK/badkey/kiln.yaml:3:3"

t_finish
