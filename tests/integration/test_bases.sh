#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The base a build gets: Cog's python:<python_version>-slim for a Python predictor without base: (offline: an
# error with the way out), KILN_PYTHON_BASE at a loopback registry, python_version against Cog's versions and
# the base's own Python, scratch's warning, build.gpu's variables, kiln inspect's base line, and the README's
# main job (a Debian base made with mmdebstrap, the image answering under bubblewrap).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
source "$(dirname "$0")/shim_lib.sh"

# project DIR YAML: a Python predictor in DIR (p.py, class P predicting "ok") and kiln.yaml = YAML.
project() {
	mkdir -p "$1"
	printf 'class P:\n    def run(self) -> str:\n        return "ok"\n' >"$1/p.py"
	printf '%b' "$2" >"$1/kiln.yaml"
}

# tiny_base LAYOUT TAG [FILE...]: an image of empty files at the root-relative paths FILE (none: one bin/sh).
tiny_base() {
	local layout=$1 tag=$2 root=$T_WORK/root-$RANDOM f
	shift 2
	mkdir -p "$root"
	[ $# -gt 0 ] || set -- bin/sh
	for f in "$@"; do mkdir -p "$root/$(dirname "$f")" && : >"$root/$f"; done
	[ -d "$layout" ] || umoci init --layout "$layout" >/dev/null
	umoci new --image "$layout:$tag" >/dev/null &&
		umoci insert --image "$layout:$tag" "$root" / >/dev/null || t_fail "cannot make the base $layout:$tag"
}

# no_tag REF: the store has no image REF (a failed build tagged nothing).
no_tag() { "$KILN" inspect "$1" >/dev/null 2>&1 && t_fail "'$1' was tagged by a failed build"; return 0; }

P=$T_WORK/p
OFFLINE=(env -u KILN_PYTHON_BASE https_proxy=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9)

t_case "a Python predictor without base: gets Cog's python:<python_version>-slim: offline, the error names it and the way out"
project "$P" 'build:\n  python_version: "3.11"\nrun: p.py:P\n'
OUT=$("${OFFLINE[@]}" "$KILN" build "$P" -t p:1 2>"$T_WORK/stderr")
RC=$? ERR=$(cat "$T_WORK/stderr")
expect_rc 1
expect_contains "$ERR" "base 'python:3.11-slim' (a Python predictor without base:, Cog's default) cannot be fetched"
expect_contains "$ERR" "set base: in the manifest, or KILN_PYTHON_BASE, to an OCI layout, oci:DIR:TAG"
expect_contains "$ERR" "scripts/debian-base.sh"
expect_contains "$ERR" "docker.io"
no_tag p:1
expect_store_consistent

t_case "without python_version the default is Cog's, 3.12"
project "$P" 'run: p.py:P\n'
OUT=$("${OFFLINE[@]}" "$KILN" build "$P" -t p:1 2>"$T_WORK/stderr")
RC=$? ERR=$(cat "$T_WORK/stderr")
expect_rc 1
expect_contains "$ERR" "base 'python:3.12-slim'"

t_case "base: overrides the default: an explicit registry base that cannot be fetched names base: and its way out"
project "$P" 'run: p.py:P\nbase: python:3.11-slim\n'
OUT=$("${OFFLINE[@]}" "$KILN" build "$P" -t p:1 2>"$T_WORK/stderr")
RC=$? ERR=$(cat "$T_WORK/stderr")
expect_rc 1
expect_contains "$ERR" "kiln.yaml:2:7: base 'python:3.11-slim' cannot be fetched"
expect_contains "$ERR" "set base: to an OCI layout, oci:DIR:TAG"
no_tag p:1

t_case "python_version: 3.10 to 3.13 accepted, 3.8 and 3.9 deprecated (a warning), others refused at their position"
for v in 3.10 3.13; do
	project "$P" "build:\n  python_version: \"$v\"\nrun: p.py:P\n"
	run_kiln build "$P" -t "v:$v"
	expect_rc 0
	expect_not_contains "$ERR" "deprecated"
done
project "$P" 'build:\n  python_version: "3.9"\nrun: p.py:P\n'
run_kiln build "$P" -t v:3.9
expect_rc 0
expect_contains "$ERR" "warning: $P/kiln.yaml:2:19: build.python_version: Python 3.9 is deprecated"
for v in 3.7 3.14 3 nope; do
	project "$P" "build:\n  python_version: \"$v\"\nrun: p.py:P\n"
	run_kiln build "$P" -t "bad:1"
	expect_rc 1
	expect_contains "$ERR" "$P/kiln.yaml:2:19: build.python_version: '$v'"
done
expect_contains "$ERR" "must include major and minor version"
project "$P" 'build:\n  python_version: "3.7"\nrun: p.py:P\n'
run_kiln build "$P" -t bad:1
expect_contains "$ERR" "minimum supported Python version is 3.8"
project "$P" 'build:\n  python_version: "3.14"\nrun: p.py:P\n'
run_kiln build "$P" -t bad:1
expect_contains "$ERR" "Python 3.14 is not supported yet (Cog supports 3.10 to 3.13)"
no_tag bad:1
expect_store_consistent

t_case "scratch for a Python predictor: a warning naming the key and kiln predict --runtime native"
project "$P" 'run: p.py:P\nbase: scratch\n'
run_kiln build "$P" -t s:1
expect_rc 0
expect_contains "$ERR" "warning: base: scratch: the image has no Python: it runs only with \`kiln predict --runtime native\`"
project "$P" 'run: p.py:P\n'
run_kiln build "$P" -t s:2
expect_rc 0
expect_contains "$ERR" "warning: KILN_PYTHON_BASE=scratch: the image has no Python"
expect_contains "$ERR" "built s:2 on scratch (a Python predictor without base:, KILN_PYTHON_BASE)"
run_kiln predict "$P" --runtime native
expect_rc 0
expect_eq "$OUT" "ok" "the prediction on this machine's Python"

t_case "a base without Python for a Python predictor: an error naming base: (a warning with KILN_ALLOW_NO_PYTHON=1)"
tiny_base "$T_WORK/bases" sh
project "$P" "build:\n  python_version: \"3.11\"\nrun: p.py:P\nbase: oci:$T_WORK/bases:sh\n"
OUT=$(env -u KILN_ALLOW_NO_PYTHON "$KILN" build "$P" -t nopy:1 2>"$T_WORK/stderr")
RC=$? ERR=$(cat "$T_WORK/stderr")
expect_rc 1
expect_contains "$ERR" "$P/kiln.yaml:4:7: base 'oci:$T_WORK/bases:sh' has no Python (no PYTHON_VERSION in its config, no usr/local/bin/python3.X or usr/bin/python3.X in its layers): a Python predictor needs one"
no_tag nopy:1
expect_store_consistent
run_kiln build "$P" -t nopy:1
expect_rc 0
expect_contains "$ERR" "the base 'oci:$T_WORK/bases:sh' has no Python (KILN_ALLOW_NO_PYTHON=1)"

t_case "python_version against the base's Python read from its layers: a mismatch names the position and both versions"
unset KILN_ALLOW_NO_PYTHON
tiny_base "$T_WORK/bases" py312 usr/bin/python3.12 usr/bin/python3
project "$P" "build:\n  python_version: \"3.11\"\nrun: p.py:P\nbase: oci:$T_WORK/bases:py312\n"
run_kiln build "$P" -t mm:1
expect_rc 1
expect_contains "$ERR" "$P/kiln.yaml:2:19: build.python_version: '3.11', but the base 'oci:$T_WORK/bases:py312' has Python 3.12: set python_version to \"3.12\" or use a base with Python 3.11"
no_tag mm:1
project "$P" "build:\n  python_version: \"3.12\"\nrun: p.py:P\nbase: oci:$T_WORK/bases:py312\n"
run_kiln build "$P" -t mm:1 --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["base"]')" "oci:$T_WORK/bases:py312 (set by base:)" "build --json's base"
project "$P" "run: p.py:P\nbase: oci:$T_WORK/bases:py312\n"
run_kiln build "$P" -t mm:2
expect_rc 0 # without python_version, the base's Python is the one
expect_store_consistent

t_case "kiln inspect says which base was used and why (text and --json), REF and DIR"
run_kiln inspect mm:2
expect_rc 0
expect_contains "$OUT" "  base     oci:$T_WORK/bases:py312 (set by base:), Python 3.12"
run_kiln inspect mm:2 --json
expect_eq "$(echo "$OUT" | json 'j["base"]["name"], j["base"]["reason"], j["base"]["python"]')" \
	"('oci:$T_WORK/bases:py312', 'set by base:', '3.12')" "inspect --json's base"
expect_eq "$(echo "$OUT" | json 'j["base"]["digest"]')" \
	"$(python3 -c 'import json,sys; print([m["digest"] for m in json.load(open(sys.argv[1]))["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "py312"][0])' "$T_WORK/bases/index.json")" \
	"the base's manifest digest"
expect_eq "$(echo "$OUT" | json 'json.loads(j["labels"]["dev.kiln.base"])["reason"]')" "set by base:" "dev.kiln.base label"
cp -a "$P" "$T_WORK/mm"
printf 'image: mm:2\n' >>"$T_WORK/mm/kiln.yaml"
run_kiln inspect "$T_WORK/mm"
expect_contains "$OUT" "  base     oci:$T_WORK/bases:py312 (set by base:), Python 3.12"
run_kiln inspect s:2
expect_contains "$OUT" "  base     scratch (a Python predictor without base:, KILN_PYTHON_BASE)"

t_case "build.gpu keeps the base and adds the NVIDIA container variables; without gpu there are none"
project "$P" 'build:\n  gpu: true\n  python_version: "3.11"\nrun: p.py:P\n'
OUT=$("${OFFLINE[@]}" "$KILN" build "$P" -t g:1 2>"$T_WORK/stderr")
RC=$? ERR=$(cat "$T_WORK/stderr")
expect_rc 1
expect_contains "$ERR" "base 'python:3.11-slim' (a Python predictor without base:, Cog's default)"
run_kiln build "$P" -t g:1 --output "oci:$T_WORK/g:1"
expect_rc 0
ENV=$(skopeo inspect --config "oci:$T_WORK/g:1" | json '" ".join(j["config"]["Env"])')
expect_contains "$ENV" "NVIDIA_VISIBLE_DEVICES=all"
expect_contains "$ENV" "NVIDIA_DRIVER_CAPABILITIES=compute,utility"
project "$P" 'build:\n  python_version: "3.11"\nrun: p.py:P\n'
run_kiln build "$P" -t g:2 --output "oci:$T_WORK/g:2"
expect_rc 0
expect_not_contains "$(skopeo inspect --config "oci:$T_WORK/g:2" | json '" ".join(j["config"]["Env"])')" "NVIDIA_"

t_case "python packages on scratch: built with a warning that they are not installed, no step run"
P=$T_WORK/sp
project "$P" 'base: scratch\nbuild:\n  python_version: "3.11"\n  python_packages: [numpy]\nrun: p.py:P\n'
run_kiln build "$P" -t sp:1
expect_rc 0
expect_contains "$ERR" "python packages are not installed: base 'scratch'"
expect_not_contains "$ERR" "step "
expect_eq "$(ls "$KILN_HOME/roots" 2>/dev/null | wc -l)" 0 "base roots unpacked"

# ---- on the Debian base made with mmdebstrap (cached between runs)
if ! debian_base; then
	t_case "the Debian base is made by scripts/debian-base.sh"
	t_fail "cannot make the Debian base (mmdebstrap, Debian's registry)"
	t_finish
	exit
fi

t_case "KILN_PYTHON_BASE with {python_version} at the loopback registry: built without downloading the base's layers"
registry_start plain || t_fail "cannot start the registry"
skopeo copy -q --dest-tls-verify=false "oci:$DEBIAN_BASE:bookworm" "docker://$REGISTRY/library/python:3.11-slim" ||
	t_fail "skopeo copy"
project "$P" 'build:\n  python_version: "3.11"\nrun: p.py:P\n'
export KILN_HOME=$T_WORK/home-registry
KILN_PYTHON_BASE="$REGISTRY/library/python:{python_version}-slim" run_kiln build "$P" -t reg:1 --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["base"]')" \
	"$REGISTRY/library/python:3.11-slim (a Python predictor without base:, KILN_PYTHON_BASE)" "base"
expect_eq "$(echo "$OUT" | json '" ".join(l["kind"] for l in j["layers"])')" "base runtime code" "layers"
BASE_LAYER=$(echo "$OUT" | json '[l["digest"] for l in j["layers"] if l["kind"] == "base"][0]')
[ ! -e "$KILN_HOME/blobs/sha256/${BASE_LAYER#sha256:}" ] || t_fail "the base's layer was downloaded"
run_kiln inspect reg:1 --json
expect_eq "$(echo "$OUT" | json 'j["base"]["python"]')" "3.11" "the base's Python (its PYTHON_VERSION)"
project "$P" 'build:\n  python_version: "3.12"\nrun: p.py:P\nbase: '"$REGISTRY"'/library/python:3.11-slim\n'
run_kiln build "$P" -t reg:2
expect_rc 1
expect_contains "$ERR" "$P/kiln.yaml:2:19: build.python_version: '3.12', but the base '$REGISTRY/library/python:3.11-slim' has Python 3.11"
export KILN_HOME=$T_WORK/home

t_case "a base without Python whose system_packages install it: checked after the steps, and the image answers"
PLAIN=$KILN_TEST_CACHE/bases/debian-plain
if ! KILN_BASE_PYTHON=0 bash "$KILN_SOURCE_DIR/scripts/debian-base.sh" "$PLAIN" >/dev/null 2>"$T_WORK/plain.err"; then
	t_fail "cannot make the plain Debian base: $(tail -3 "$T_WORK/plain.err")"
else
	P=$T_WORK/plain
	project "$P" "base: oci:$PLAIN:bookworm\nbuild:\n  python_version: \"3.11\"\n  system_packages: [python3]\nrun: p.py:P\n"
	run_kiln build "$P" -t plain:1
	expect_rc 0
	run_kiln inspect plain:1 --json
	expect_eq "$(echo "$OUT" | json 'j["base"]["python"]')" "3.11" "the Python the steps installed"
	run_kiln predict plain:1 --runtime bwrap
	expect_rc 0
	expect_contains "$OUT" "ok"
	t_case "a base without Python whose steps install none: an error naming base:"
	project "$P" "base: oci:$PLAIN:bookworm\nbuild:\n  run: [\"touch /opt/x\"]\nrun: p.py:P\n"
	run_kiln build "$P" -t plain:2
	expect_rc 1
	expect_contains "$ERR" "$P/kiln.yaml:1:7: base 'oci:$PLAIN:bookworm' has no Python, and the build steps installed none"
	expect_store_consistent
	project "$P" "base: oci:$PLAIN:bookworm\nbuild:\n  python_version: \"3.12\"\n  system_packages: [python3]\nrun: p.py:P\n"
	run_kiln build "$P" -t plain:3
	expect_rc 1
	expect_contains "$ERR" "build.python_version: '3.12', but the base 'oci:$PLAIN:bookworm' with the build steps has Python 3.11"
fi

t_case "the README's main job: hello built on the Debian base answers from its image under bubblewrap, then over HTTP"
if ! bwrap --ro-bind / / --unshare-pid --dev /dev true 2>/dev/null; then
	echo "  (bubblewrap cannot make namespaces here: skipped)" >&2
else
	D=$(KILN_DEMO_BASE=$DEBIAN_BASE KILN=$KILN PORT=$(free_port) bash "$KILN_SOURCE_DIR/scripts/demo.sh" 2>"$T_WORK/demo.err")
	RC=$? ERR=$(cat "$T_WORK/demo.err")
	expect_rc 0
	expect_contains "$ERR" "built hello:latest on oci:$DEBIAN_BASE:bookworm (a Python predictor without base:, KILN_PYTHON_BASE)"
	expect_contains "$D" "  base     oci:$DEBIAN_BASE:bookworm (a Python predictor without base:, KILN_PYTHON_BASE), Python 3.11"
	expect_contains "$D" "hello, kiln!"
	expect_contains "$D" "succeeded -> hello, kiln!"
fi

t_finish
