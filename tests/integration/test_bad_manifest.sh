#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln build on hostile manifests (#9): alias bombs, encodings, tags and directives, an oversized image
# name, a predictor linked out of the project. Each is exit 1 with the file and position, and nothing
# is written to the store.
source "$(dirname "$0")/lib.sh"

P=$T_WORK/p
project() { # MANIFEST-TEXT: a project whose kiln.yaml is the text (printf format)
	rm -rf "$P"
	mkdir -p "$P"
	printf 'class Predictor:\n    def predict(self) -> str:\n        return "ok"\n' >"$P/predict.py"
	printf "$1" >"$P/kiln.yaml"
}
# expect_refused MESSAGE: the build failed with MESSAGE and left no blob in the store
expect_refused() {
	run_kiln build "$P"
	expect_rc 1
	expect_contains "$ERR" "$1"
	local blobs
	blobs=$(find "$KILN_HOME" -path '*blobs/sha256/*' -type f 2>/dev/null | wc -l)
	expect_eq "$blobs" 0 "blobs in the store"
}

t_case "an alias bomb under environment is refused with the file and position"
project 'build:\n  python_version: "3.11"\nrun: predict.py:Predictor\n'
python3 - "$P/kiln.yaml" <<'PY'
import sys
s = 'e0: &e0 "' + "x" * 60000 + '"\n'
lines = ["build:", '  python_version: "3.11"', "run: predict.py:Predictor", "environment:"]
doc = "\n".join(lines) + "\n"
doc = doc.replace("environment:\n", "environment:\n  - &e0 'A=" + "x" * 60000 + "'\n" + "".join("  - *e0\n" for _ in range(2000)))
open(sys.argv[1], "w").write(doc)
PY
timeout 60 "$KILN" build "$P" >/dev/null 2>"$T_WORK/err"
RC=$?
ERR=$(cat "$T_WORK/err")
expect_rc 1
expect_contains "$ERR" "kiln.yaml:5:"
expect_contains "$ERR" "aliases expand to more than the manifest may hold"

t_case "a UTF-16 manifest is refused, naming the file"
project 'build:\n  python_version: "3.11"\nrun: predict.py:Predictor\n'
iconv -f UTF-8 -t UTF-16 "$P/kiln.yaml" >"$P/k16" && mv "$P/k16" "$P/kiln.yaml"
expect_refused "kiln.yaml:1:1: the file is UTF-16; a manifest must be UTF-8"

t_case "a !!binary tag is refused at its line and column"
project 'build:\n  python_version: "3.11"\nrun: predict.py:Predictor\nimage: !!binary aGVsbG8=\n'
expect_refused "kiln.yaml:4:"

t_case "a %%YAML 1.1 directive is refused"
project '%%YAML 1.1\n---\nbuild:\n  python_version: "3.11"\nrun: predict.py:Predictor\n'
expect_refused "kiln.yaml:1:"

t_case "a 3 MB image name is refused at its position"
project 'build:\n  python_version: "3.11"\nrun: predict.py:Predictor\n'
python3 -c 'import sys; open(sys.argv[1], "a").write("image: r.example/" + "a" * 3000000 + "\n")' "$P/kiln.yaml"
expect_refused "kiln.yaml:4:8: image: invalid reference: longer than 4096 characters"

t_case "a predictor that is a symbolic link out of the project is refused at the run key"
project 'build:\n  python_version: "3.11"\nrun: predict.py:Predictor\n'
cp "$P/predict.py" "$T_WORK/outside.py"
ln -sf "$T_WORK/outside.py" "$P/predict.py"
expect_refused "kiln.yaml:3:6: run: 'predict.py' is a symbolic link to '"
expect_contains "$ERR" "outside the project directory"
ln -sf ../outside.py "$P/predict.py"
expect_refused "outside the project directory"

t_case "a predictor linked within the project still builds"
project 'build:\n  python_version: "3.11"\nrun: predict.py:Predictor\n'
mkdir -p "$P/src"
mv "$P/predict.py" "$P/src/predict.py"
ln -s src/predict.py "$P/predict.py"
run_kiln build "$P"
expect_rc 0

t_finish
