#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The runtime layer built once with kiln (kiln-runtime/ in the build tree, share/kiln/runtime installed): a
# fresh store takes that blob when its inputs are unchanged, and builds the layer itself, with the same
# digest, when they are not or when the blob is damaged.
source "$(dirname "$0")/lib.sh"

BUILD=$(cd "$(dirname "$KILN")" && pwd)
REC=$BUILD/kiln-runtime/runtime.json
P=$T_WORK/proj
make_project "$P" ""
runtime_layer() { echo "$1" | json '[l for l in j["layers"] if l["kind"] == "runtime"][0]["'"$2"'"]'; }
# fresh_build KILN [ENV...]: a build of P in a new, empty store; OUT is its report.
fresh_build() {
	local kiln=$1
	shift
	rm -rf "$T_WORK/fresh"
	OUT=$(env "$@" KILN_HOME="$T_WORK/fresh" "$kiln" build "$P" -t pre:1 --json 2>"$T_WORK/stderr")
	RC=$?
	ERR=$(cat "$T_WORK/stderr")
}

t_case "the build of kiln leaves the runtime layer beside it: runtime.json and the blob it names"
[ -f "$REC" ] || t_fail "no $REC"
DIGEST=$(json 'j["digest"]' <"$REC")
BLOB=$BUILD/kiln-runtime/$(json 'j["blob"]' <"$REC")
expect_eq "$(sha256sum "$BLOB" | cut -d' ' -f1)" "${DIGEST#sha256:}" "the blob's content"
expect_eq "$(stat -c %s "$BLOB")" "$(json 'j["size"]' <"$REC")" "the blob's size"
expect_eq "$(ls "$BUILD/kiln-runtime" | grep -c '^sha256-')" "1" "blobs in kiln-runtime/"

t_case "a fresh store takes it: the runtime layer is cached, with the recorded digests"
fresh_build "$KILN"
expect_rc 0
expect_eq "$(runtime_layer "$OUT" cached)" "True" "cached"
expect_eq "$(runtime_layer "$OUT" digest)" "$DIGEST" "digest"
expect_eq "$(runtime_layer "$OUT" diff_id)" "$(json 'j["diff_id"]' <"$REC")" "diff_id"
expect_eq "$(runtime_layer "$OUT" bytes_read)" "0" "bytes read"
expect_store_consistent "$T_WORK/fresh"

t_case "a copy of the runner files with the same content still matches; a changed one gets its own layer"
cp -r "$KILN_SOURCE_DIR/templates/python" "$T_WORK/runner"
rm -rf "$T_WORK/runner/__pycache__" "$T_WORK/runner/cog/__pycache__"
fresh_build "$KILN" KILN_PYTHON_DIR="$T_WORK/runner"
expect_rc 0
expect_eq "$(runtime_layer "$OUT" cached)" "True" "same content: cached"
expect_eq "$(runtime_layer "$OUT" digest)" "$DIGEST" "same content: digest"
echo "# changed" >>"$T_WORK/runner/kiln_runner.py"
fresh_build "$KILN" KILN_PYTHON_DIR="$T_WORK/runner"
expect_rc 0
expect_eq "$(runtime_layer "$OUT" cached)" "False" "changed: built"
expect_ne "$(runtime_layer "$OUT" digest)" "$DIGEST" "changed: digest"
expect_store_consistent "$T_WORK/fresh"

t_case "a damaged prebuilt blob is not taken: the layer is built here, with the same digest"
mkdir -p "$T_WORK/bin"
cp "$KILN" "$BUILD/kiln-shim" "$T_WORK/bin/"
cp -r "$BUILD/kiln-runtime" "$T_WORK/bin/"
DAMAGED=$T_WORK/bin/kiln-runtime/$(basename "$BLOB")
printf 'XXXX' | dd of="$DAMAGED" bs=1 seek=100 conv=notrunc status=none
fresh_build "$T_WORK/bin/kiln"
expect_rc 0
expect_eq "$(runtime_layer "$OUT" cached)" "False" "built"
expect_eq "$(runtime_layer "$OUT" digest)" "$DIGEST" "digest"
expect_store_consistent "$T_WORK/fresh"

t_case "cmake --install puts it in share/kiln/runtime, and the installed kiln takes it"
if [ -f "$BUILD/cmake_install.cmake" ]; then
	cmake --install "$BUILD" --prefix "$T_WORK/prefix" >"$T_WORK/install.log" 2>&1 || t_fail "cmake --install: $(tail -3 "$T_WORK/install.log")"
	expect_eq "$(json 'j["digest"]' <"$T_WORK/prefix/share/kiln/runtime/runtime.json")" "$DIGEST" "installed record"
	fresh_build "$T_WORK/prefix/bin/kiln"
	expect_rc 0
	expect_eq "$(runtime_layer "$OUT" cached)" "True" "installed kiln: cached"
	expect_eq "$(runtime_layer "$OUT" digest)" "$DIGEST" "installed kiln: digest"
	expect_store_consistent "$T_WORK/fresh"
else
	echo "  (skipped: $BUILD is not a CMake build tree)"
fi


# schema_label KILN_HOME [ENV...]: build P (SL_PROJ) with kiln (SL_KILN) into that store and print its run.cog.openapi_schema's Input properties.
schema_label() {
	local home=$1
	shift
	env "$@" KILN_HOME="$home" "${SL_KILN:-$KILN}" build "${SL_PROJ:-$P}" -t pre:1 --output "oci:$T_WORK/img:1" --quiet >/dev/null 2>"$T_WORK/stderr" ||
		t_fail "build: $(cat "$T_WORK/stderr")"
	skopeo inspect --config "oci:$T_WORK/img:1" |
		json 'sorted(json.loads(j["config"]["Labels"]["run.cog.openapi_schema"])["components"]["schemas"]["Input"]["properties"])'
}

t_case "a fresh store takes a predictor's schema from the user's cache: no Python runs"
printf 'from cog import BasePredictor, Input\n\nclass P(BasePredictor):\n    def predict(self, a: str = Input(default="x")) -> str:\n        return a\n' >"$P/p.py"
expect_eq "$(schema_label "$T_WORK/s1")" '["a"]' "first build"
ls "$HOME/.cache/kiln-schema/"*.json >/dev/null 2>&1 || t_fail "nothing in $HOME/.cache/kiln-schema"
expect_eq "$(schema_label "$T_WORK/s2" KILN_PYTHON=/nonexistent)" '["a"]' "fresh store, no Python"
expect_not_contains "$(cat "$T_WORK/stderr")" "openapi_schema"

t_case "the cached schema follows the predictor's content, whatever the store"
sed -i 's/a: str = Input(default="x")/a: str = Input(default="x"), b: int = 1/' "$P/p.py"
expect_eq "$(schema_label "$T_WORK/s2")" '["a", "b"]' "changed predictor, the store that had the old one"
expect_eq "$(schema_label "$T_WORK/s3" KILN_PYTHON=/nonexistent)" '["a", "b"]' "fresh store, no Python"
sed -i 's/, b: int = 1//' "$P/p.py"
expect_eq "$(schema_label "$T_WORK/s3" KILN_PYTHON=/nonexistent)" '["a"]' "back to the first content, no Python"
XDG_CACHE_HOME=$T_WORK/xdg schema_label "$T_WORK/s4" >/dev/null
ls "$T_WORK/xdg/kiln-schema/"*.json >/dev/null 2>&1 || t_fail "XDG_CACHE_HOME not used"

t_case "a copy of the project elsewhere, built by the installed kiln, takes the same cached schema"
cp -r "$P" "$T_WORK/clone"
expect_eq "$(SL_PROJ=$T_WORK/clone schema_label "$T_WORK/s6" KILN_PYTHON=/nonexistent)" '["a"]' "another directory, no Python"
if [ -x "$T_WORK/prefix/bin/kiln" ]; then
	expect_eq "$(SL_KILN=$T_WORK/prefix/bin/kiln SL_PROJ=$T_WORK/clone schema_label "$T_WORK/s7" KILN_PYTHON=/nonexistent)" '["a"]' "installed kiln, no Python"
fi

t_case "a user cache that cannot be written is no error"
mkdir -p "$T_WORK/xdg-file"
echo "not a directory" >"$T_WORK/xdg-file/kiln-schema"
echo "# another" >>"$P/p.py"
expect_eq "$(schema_label "$T_WORK/s5" XDG_CACHE_HOME="$T_WORK/xdg-file")" '["a"]' "kiln-schema is a file"
expect_store_consistent "$T_WORK/s5"

t_finish
