#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# python_requirements and python_packages: installed by the base's own pip under bubblewrap into
# dependency layers (a big distribution in its own), served by a local index and --find-links.
source "$(dirname "$0")/lib.sh"

command -v bwrap >/dev/null || { echo "skipped: no bwrap"; exit 0; }
FIX=$KILN_SOURCE_DIR/tests/fixtures/pip
CACHE=${KILN_TEST_CACHE:-/var/cache/kiln-test}
BASE=$CACHE/bases/debian-python
[ -f "$BASE/index.json" ] || bash "$KILN_SOURCE_DIR/scripts/debian-base.sh" "$BASE" >/dev/null ||
	{ echo "skipped: no Debian base"; exit 0; }
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE

# Wheels made here: pure Python, a C extension (cp311, the base's Python), and a big one (>= 64 MiB).
W=$T_WORK/wheels
mkdir -p "$W" "$T_WORK/c"
python3 "$FIX/mkwheel.py" kilnpure 1.0.0 py3-none-any "$FIX/kilnpure" "$W" >/dev/null
sed 's/hello/hi/' "$FIX/kilnpure/kilnpure/__init__.py" >"$T_WORK/init2.py"
mkdir -p "$T_WORK/pure2/kilnpure" && cp "$T_WORK/init2.py" "$T_WORK/pure2/kilnpure/__init__.py"
python3 "$FIX/mkwheel.py" kilnpure 1.0.1 py3-none-any "$T_WORK/pure2" "$W" >/dev/null
cc -shared -fPIC -O2 $(python3-config --includes) "$FIX/kilncext/kilncext.c" \
	-o "$T_WORK/c/kilncext.cpython-311-x86_64-linux-gnu.so"
python3 "$FIX/mkwheel.py" kilncext 1.0.0 cp311-cp311-linux_x86_64 "$T_WORK/c" "$W" >/dev/null
BIG=$CACHE/pip/kilnbig-1.0.0-py3-none-any.whl
if [ ! -f "$BIG" ]; then
	mkdir -p "$CACHE/pip" "$T_WORK/big/kilnbig"
	cp "$FIX/kilnbig/kilnbig/__init__.py" "$T_WORK/big/kilnbig/"
	head -c $((65 * 1024 * 1024)) /dev/urandom >"$T_WORK/big/kilnbig/blob.bin"
	python3 "$FIX/mkwheel.py" kilnbig 1.0.0 py3-none-any "$T_WORK/big" "$CACHE/pip" >/dev/null
fi
cp "$BIG" "$W/"
(cd "$FIX/kilnsdist" && python3 setup.py -q sdist -d "$T_WORK/sdist" >/dev/null 2>&1)

# A PEP 503 index on loopback.
IDX=$T_WORK/index
for f in "$W"/*.whl; do
	n=$(basename "$f" | cut -d- -f1)
	mkdir -p "$IDX/simple/$n" && cp "$f" "$IDX/simple/$n/"
done
for d in "$IDX"/simple/*/; do
	(cd "$d" && { echo "<html><body>"; for f in *.whl; do echo "<a href=\"$f#sha256=$(sha256sum "$f" | cut -d' ' -f1)\">$f</a>"; done; echo "</body></html>"; } >index.html)
done
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server -b 127.0.0.1 -d "$IDX" "$PORT" >/dev/null 2>&1 &
t_defer "kill $!"
INDEX=http://127.0.0.1:$PORT/simple
mkdir -p "$IDX/empty"
export PIP_INDEX_URL=http://127.0.0.1:$PORT/empty/ # nothing from the internet; each case names its index
for _ in $(seq 50); do curl -sf "$INDEX/kilnpure/" >/dev/null && break; sleep 0.1; done

P=$T_WORK/project
mkdir -p "$P/wheels"
cp "$W"/kilncext-*.whl "$W"/kilnpure-1.0.0-*.whl "$P/wheels/"
cat >"$P/predict.py" <<'PY'
from cog import BasePredictor
import kilnbig, kilncext, kilnpure


class Predictor(BasePredictor):
    def predict(self, name: str = "x") -> str:
        return "%s %d %d" % (kilnpure.greet(name), kilncext.add(2, 3), kilnbig.SIZE)
PY
cat >"$P/kiln.yaml" <<EOF2
base: oci:$BASE:bookworm
build:
  python_requirements: requirements.txt
predict: predict.py:Predictor
EOF2
printf -- '--find-links wheels\n-r more.txt\nkilncext==1.0.0\n' >"$P/requirements.txt"
printf -- '--extra-index-url %s\nkilnpure==1.0.0\nkilnbig\n' "$INDEX" >"$P/more.txt"

dep_layers() { "$KILN" inspect "$1" --json | json "' '.join(l['digest'] for l in j['layers'] if l['kind']=='dependencies')"; }

t_case "requirements with -r, --find-links and --extra-index-url: the image answers a prediction importing them"
run_kiln build "$P" -t piptest
expect_rc 0
run_kiln predict --runtime bwrap piptest -i name=kiln
expect_rc 0
expect_contains "$OUT" "hello kiln 5 $((65 * 1024 * 1024))"
expect_store_consistent

t_case "the labels: run.cog.pip_freeze and dev.kiln.dependencies; the big distribution is a layer of its own"
LABELS=$("$KILN" inspect piptest --json | json "j['labels']")
expect_eq "$(echo "$LABELS" | json "j['run.cog.pip_freeze']")" "$(printf 'kilnbig==1.0.0\nkilncext==1.0.0\nkilnpure==1.0.0')" freeze
DEPS=$(echo "$LABELS" | json "json.loads(j['dev.kiln.dependencies'])")
expect_eq "$(echo "$DEPS" | json "[d['distributions'] for d in j]")" '[["kilnbig==1.0.0"], ["kilncext==1.0.0", "kilnpure==1.0.0"]]' layers

t_case "skopeo and umoci read the image; the files are where the image's Python looks"
skopeo inspect "oci:$KILN_HOME:piptest:latest" >/dev/null 2>&1 || skopeo inspect "oci:$KILN_HOME:docker.io/library/piptest:latest" >/dev/null || t_fail "skopeo cannot read it"
REF=$(python3 -c "import json,sys; print([m['annotations']['org.opencontainers.image.ref.name'] for m in json.load(open(sys.argv[1]))['manifests'] if 'piptest' in m['annotations']['org.opencontainers.image.ref.name']][0])" "$KILN_HOME/index.json")
umoci unpack --rootless --image "$KILN_HOME:$REF" "$T_WORK/unpacked" >/dev/null 2>&1 || t_fail "umoci cannot unpack it"
ls "$T_WORK"/unpacked/rootfs/usr/local/lib/python3.11/dist-packages/kilnpure/__init__.py >/dev/null || t_fail "kilnpure is not in usr/local"
grep -rqs "$T_WORK" "$T_WORK"/unpacked/rootfs/usr/local/lib/python3.11/dist-packages && t_fail "a host path in the layers"

t_case "a rebuild with nothing changed hashes 0 bytes and runs no pip"
BEFORE=$(dep_layers piptest)
run_kiln build "$P" -t piptest
expect_rc 0
expect_contains "$ERR" "0 B hashed"
expect_not_contains "$ERR" "Successfully installed"
expect_eq "$(dep_layers piptest)" "$BEFORE" layers

t_case "changing one small requirement changes exactly the bundle; the big layer is not reinstalled"
sed -i 's/kilnpure==1.0.0/kilnpure==1.0.1/' "$P/more.txt"
run_kiln build "$P" -t piptest
expect_rc 0
INSTALLED=$(echo "$ERR" | grep "Installing collected packages")
expect_contains "$INSTALLED" kilnpure
expect_not_contains "$INSTALLED" kilnbig
expect_not_contains "$INSTALLED" kilncext # its part of the bundle is copied from the last one
AFTER=$(dep_layers piptest)
expect_eq "${AFTER%% *}" "${BEFORE%% *}" "big layer"
expect_ne "${AFTER##* }" "${BEFORE##* }" "bundle"
run_kiln predict --runtime bwrap piptest -i name=kiln
expect_contains "$OUT" "hi kiln 5"

t_case "the bundle made from the last one's parts is the one a fresh store makes; gzip and tar read it"
KILN_HOME=$T_WORK/fresh-home run_kiln build "$P" -t piptest
expect_rc 0
expect_eq "$(KILN_HOME=$T_WORK/fresh-home dep_layers piptest)" "$AFTER" "dependency layers from a fresh store"
BUNDLE=$KILN_HOME/blobs/sha256/${AFTER##*sha256:}
gzip -t "$BUNDLE" || t_fail "gzip -t refuses the bundle"
expect_eq "$(tar -tzf "$BUNDLE" | grep -c '\.dist-info/RECORD$')" 2 "RECORD files in the bundle"

t_case "a local wheel replaced under the same name: pip's kept hashes follow the file, the new one is installed"
H2=$T_WORK/h2
mkdir -p "$H2/wheels" "$T_WORK/hi-wheel"
cp "$P/predict.py" "$H2/"
sed -i 's/import kilnbig, kilncext, kilnpure/import kilnpure/; s/return .*/return kilnpure.greet(name)/' "$H2/predict.py"
cp "$W/kilnpure-1.0.0-py3-none-any.whl" "$H2/wheels/"
python3 "$FIX/mkwheel.py" kilnpure 1.0.0 py3-none-any "$T_WORK/pure2" "$T_WORK/hi-wheel" >/dev/null
printf -- '--no-index\n--find-links wheels\nkilnpure==1.0.0\n' >"$H2/requirements.txt"
printf 'base: oci:%s:bookworm\nbuild:\n  python_requirements: requirements.txt\npredict: predict.py:Predictor\n' "$BASE" >"$H2/kiln.yaml"
run_kiln build "$H2" -t piphash:1
expect_rc 0
[ -s "$KILN_HOME/pip-cache/kiln-hashes.json" ] || t_fail "no hashes kept in pip-cache/"
run_kiln predict --runtime bwrap piphash:1 -i name=a
expect_contains "$OUT" "hello a"
cp "$T_WORK"/hi-wheel/kilnpure-1.0.0-py3-none-any.whl "$H2/wheels/"
run_kiln build "$H2" -t piphash:2
expect_rc 0
expect_contains "$ERR" "Successfully installed kilnpure-1.0.0"
run_kiln predict --runtime bwrap piphash:2 -i name=b
expect_contains "$OUT" "hi b"

t_case "python_packages, PIP_INDEX_URL and a local wheel path with a --hash pin"
Q=$T_WORK/q
mkdir -p "$Q/w" && cp "$P/predict.py" "$Q/" && cp "$W"/kilncext-*.whl "$Q/w/"
H=$(sha256sum "$Q"/w/kilncext-*.whl | cut -d' ' -f1)
printf 'kilnpure==1.0.0 --hash=sha256:%s\n./w/%s --hash=sha256:%s\nkilnbig==1.0.0 --hash=sha256:%s\n' \
	"$(sha256sum "$W/kilnpure-1.0.0-py3-none-any.whl" | cut -d' ' -f1)" "$(basename "$Q"/w/kilncext-*.whl)" "$H" \
	"$(sha256sum "$BIG" | cut -d' ' -f1)" >"$Q/requirements.txt"
printf 'base: oci:%s:bookworm\nbuild:\n  python_requirements: requirements.txt\npredict: predict.py:Predictor\n' "$BASE" >"$Q/kiln.yaml"
PIP_INDEX_URL=$INDEX run_kiln build "$Q" -t pipq
expect_rc 0
run_kiln predict --runtime bwrap pipq -i name=q
expect_contains "$OUT" "hello q 5"

t_case "a pip.conf names the index"
R=$T_WORK/r
mkdir -p "$R" "$HOME/.config/pip" && cp "$P/predict.py" "$R/"
printf '[global]\nindex-url = %s\nno-index = false\n' "$INDEX" >"$HOME/.config/pip/pip.conf"
printf 'base: oci:%s:bookworm\nbuild:\n  python_packages: [kilnpure==1.0.0, kilncext, kilnbig]\npredict: predict.py:Predictor\n' "$BASE" >"$R/kiln.yaml"
unset PIP_INDEX_URL
run_kiln build "$R" -t pipr
expect_rc 0
export PIP_INDEX_URL=http://127.0.0.1:$PORT/empty/
rm -f "$HOME/.config/pip/pip.conf"

t_case "build.python_overrides: a requirement of the project and a dependency's are both replaced"
# kilndep needs kilnpure<1.0.1, the project pins 1.0.0; the override makes both 1.0.1 (were only one of
# them replaced, pip would find them in conflict)
O=$T_WORK/over
mkdir -p "$O/wheels" "$T_WORK/dep/kilndep"
echo 'from kilnpure import greet' >"$T_WORK/dep/kilndep/__init__.py"
python3 "$FIX/mkwheel.py" kilndep 1.0.0 py3-none-any "$T_WORK/dep" "$O/wheels" 'kilnpure<1.0.1' >/dev/null
cp "$W"/kilnpure-1.0.*-py3-none-any.whl "$O/wheels/"
printf 'from cog import BasePredictor\nimport kilndep\n\n\nclass Predictor(BasePredictor):\n    def predict(self, name: str = "x") -> str:\n        return kilndep.greet(name)\n' >"$O/predict.py"
printf -- '--no-index\n--find-links wheels\nkilndep\nkilnpure==1.0.0\n' >"$O/requirements.txt"
printf '# the fixed release, whatever asks for kilnpure\nkilnpure==1.0.1  # pinned\nkilnbig==9; python_version < "3"\n' >"$O/overrides.txt"
printf 'base: oci:%s:bookworm\nbuild:\n  python_requirements: requirements.txt\n  python_overrides: overrides.txt\npredict: predict.py:Predictor\n' "$BASE" >"$O/kiln.yaml"
run_kiln build "$O" -t pipover
expect_rc 0
expect_not_contains "$ERR" "python_overrides"
run_kiln predict --runtime bwrap pipover -i name=o
expect_rc 0
expect_eq "$OUT" "hi o" "kilnpure 1.0.1's greeting"
expect_eq "$("$KILN" inspect pipover --json | json "j['labels']['run.cog.pip_freeze']")" "$(printf 'kilndep==1.0.0\nkilnpure==1.0.1')" freeze

t_case "build.python_overrides: without it the same requirements conflict; a bad line is named FILE:LINE"
sed -i '/python_overrides/d' "$O/kiln.yaml"
sed -i 's/kilnpure==1.0.0/kilnpure==1.0.1/' "$O/requirements.txt"
run_kiln build "$O" -t pipover:conflict
expect_rc 1
expect_contains "$ERR" "pip cannot resolve the requirements"
printf 'base: oci:%s:bookworm\nbuild:\n  python_requirements: requirements.txt\n  python_overrides: overrides.txt\npredict: predict.py:Predictor\n' "$BASE" >"$O/kiln.yaml"
printf 'kilnpure==1.0.1\nkilnpure=>1\n' >"$O/overrides.txt"
run_kiln build "$O" -t pipover:bad
expect_rc 1
expect_contains "$ERR" "overrides.txt:2: build.python_overrides:"
expect_not_contains "$ERR" "Traceback"
printf 'kilnpure==1.0.1\n-r requirements.txt\n' >"$O/overrides.txt"
run_kiln build "$O" -t pipover:bad
expect_rc 1
expect_contains "$ERR" "overrides.txt:2: build.python_overrides: '-r requirements.txt': an overrides file holds requirements"
expect_store_consistent

t_case "a requirement the index does not have: named, with pip's tail; nothing half-written"
printf 'base: oci:%s:bookworm\nbuild:\n  python_packages: [kiln-no-such-thing]\npredict: predict.py:Predictor\n' "$BASE" >"$R/kiln.yaml"
PIP_INDEX_URL=$INDEX run_kiln build "$R" -t pipbad
expect_rc 1
expect_contains "$ERR" "no distribution of 'kiln-no-such-thing' in the package index"
expect_contains "$ERR" "No matching distribution"
expect_store_consistent

t_case "an sdist with a C extension in a base without a compiler: says to add build-essential"
cp "$T_WORK"/sdist/kilnsdist-*.tar.gz "$R/"
printf 'base: oci:%s:bookworm\nbuild:\n  python_packages: [./%s]\npredict: predict.py:Predictor\n' "$BASE" "$(basename "$T_WORK"/sdist/kilnsdist-*.tar.gz)" >"$R/kiln.yaml"
PIP_NO_BUILD_ISOLATION=off run_kiln build "$R" -t pipcc
expect_rc 1
expect_contains "$ERR" "no C compiler (add build-essential or gcc to system_packages)"
expect_store_consistent

t_case "an sdist with a C extension in a base with a compiler: pip builds it there, and the image runs it"
CCB=$CACHE/bases/debian-build
[ -f "$CCB/index.json" ] || bash "$KILN_SOURCE_DIR/scripts/debian-base.sh" "$CCB" gcc libc6-dev python3-dev >/dev/null
R2=$T_WORK/cc
mkdir -p "$R2"
cp "$T_WORK"/sdist/kilnsdist-*.tar.gz "$R2/"
printf 'from cog import BasePredictor\nimport kilnsdist\n\n\nclass Predictor(BasePredictor):\n    def predict(self, a: int = 1) -> int:\n        return kilnsdist.add(a, 40)\n' >"$R2/predict.py"
printf 'base: oci:%s:bookworm\nbuild:\n  python_packages: [./%s]\npredict: predict.py:Predictor\n' "$CCB" "$(basename "$T_WORK"/sdist/kilnsdist-*.tar.gz)" >"$R2/kiln.yaml"
PIP_NO_BUILD_ISOLATION=off run_kiln --progress plain build "$R2" -t pipccok
expect_rc 0
expect_contains "$ERR" "Building wheel for kilnsdist"
run_kiln predict --runtime bwrap pipccok -i a=2
expect_rc 0
expect_eq "$OUT" "42" "kilnsdist.add(2, 40) in the image"

t_case "a missing -r include: FILE:LINE"
printf 'kilnpure\n-r nothere.txt\n' >"$R/requirements.txt"
printf 'base: oci:%s:bookworm\nbuild:\n  python_requirements: requirements.txt\npredict: predict.py:Predictor\n' "$BASE" >"$R/kiln.yaml"
run_kiln build "$R" -t pipinc
expect_rc 1
expect_contains "$ERR" "requirements.txt:2: cannot open included requirements file 'nothere.txt'"
expect_store_consistent

t_case "a base without pip: says python3-pip"
NOPIP=$T_WORK/nopip
printf 'base: oci:%s:bookworm\nbuild:\n  python_packages: [kilnpure]\n  pre_install: [rm -rf /usr/lib/python3/dist-packages/pip]\npredict: predict.py:Predictor\n' "$BASE" >"$R/kiln.yaml"
run_kiln build "$R" -t pipnopip
expect_rc 1
expect_contains "$ERR" "add python3-pip to system_packages"
expect_store_consistent

t_case "a pip older than 22.2 (no --report): says so"
cat >"$R/kiln.yaml" <<EOF2
base: oci:$BASE:bookworm
build:
  python_packages: [kilnpure]
  pre_install:
    - sed -i 's/^__version__ = .*/__version__ = "21.3"/' /usr/lib/python3/dist-packages/pip/__init__.py
predict: predict.py:Predictor
EOF2
run_kiln build "$R" -t pipold
expect_rc 1
expect_contains "$ERR" "the base's pip is 21.3; kiln needs pip 22.2 or later"
expect_store_consistent

t_finish
