#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln predict: every Cog input type from the command line reaching the predictor exactly, file outputs,
# --format json, the native and bwrap runtimes answering alike (the bwrap one on a Python base image made here),
# and bad input: unknown names, wrong types, missing files, a predictor that raises, a setup that fails, a
# layer that tries to escape the root, Ctrl-C.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"

FIX=$KILN_SOURCE_DIR/tests/fixtures/predictors
export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT
cd "$T_WORK" || exit 1

# fixture NAME FILE [YAML...]: a project NAME with the fixture FILE run as FILE:Predictor.
fixture() {
	local dir=$T_WORK/$1 file=$2
	shift 2
	mkdir -p "$dir"
	cp "$FIX/$file" "$dir/"
	{
		echo "run: $file:Predictor"
		printf '%s\n' "$@"
	} >"$dir/kiln.yaml"
}
# output_of EXPR: EXPR evaluated on the JSON that $OUT holds.
output_of() { echo "$OUT" | json "$1"; }

fixture types types.py
printf 'hi\n' >"$T_WORK/doc.txt"
printf 'one' >"$T_WORK/a.bin"

t_case "every input type from the command line reaches the predictor exactly"
run_kiln predict types -i text=hello -i mode=slow -i size=256 -i steps=7 -i scale=1.5 -i flag=true \
	-i image=@doc.txt -i tags=x -i tags=y -i seed=42 --runtime native
expect_rc 0
expect_eq "$(output_of '[j["text"], j["mode"], j["size"], j["steps"], j["scale"], j["flag"]]')" \
	'["hello", "slow", 256, 7, 1.5, true]' "scalars and choices"
expect_eq "$(output_of 'j["image"]')" '["Path", true, "hi\n"]' "the @FILE input, as a Path with its bytes"
expect_eq "$(output_of 'j["tags"]')" '["x", "y"]' "a list from a repeated -i"
expect_eq "$(output_of '[j["seed"], j["doc"]]')" '[42, null]' "an Optional given, one left out"

t_case "--input-json gives the object, -i adds to it; --format json prints the whole response"
echo '{"text": "from json", "steps": 2, "image": "data:text/plain;base64,aGk="}' >"$T_WORK/in.json"
run_kiln predict types --input-json in.json -i steps=9 --format json --runtime native
expect_rc 0
expect_eq "$(output_of '[j["status"], j["input"]["text"], j["output"]["steps"]]')" '["succeeded", "from json", 9]'
[[ $(output_of 'j["id"]') =~ ^[0-9a-f]{32}$ ]] || t_fail "id: $OUT"
OUT=$(echo '{"text": "stdin", "image": "data:,x"}' | "$KILN" predict types --input-json - --runtime native 2>/dev/null)
expect_eq "$(output_of 'j["text"]')" "stdin" "--input-json -"

t_case "file outputs are written with their extension; -o names them"
fixture paths path_output.py
run_kiln predict paths -i text=hi --runtime native
expect_rc 0
expect_eq "$(cat "$T_WORK/output.txt" 2>/dev/null)" "hi" "output.txt"
expect_contains "$ERR" "Written output to: output.txt"
run_kiln predict paths -i text=there -o "$T_WORK/sub-out.txt" --runtime native
expect_eq "$(cat "$T_WORK/sub-out.txt" 2>/dev/null)" "there" "-o"

t_case "an image reference: taken from the store, or pulled from its registry when the store lacks it"
run_kiln build types -t local/types:1 --quiet
expect_rc 0
run_kiln predict local/types:1 -i text=byref -i image=@doc.txt --runtime native
expect_rc 0
expect_eq "$(output_of 'j["text"]')" "byref" "from the store"
run_kiln predict local/nothing:1 --runtime native
expect_rc 1
expect_contains "$ERR" "cannot pull 'local/nothing:1'"

t_case "a list of file outputs goes to output.N.EXT, or to -o's name with .N"
mkdir -p "$T_WORK/twofiles"
cat >"$T_WORK/twofiles/p.py" <<'EOF'
import tempfile
from typing import List

from cog import BasePredictor, Path


class Predictor(BasePredictor):
    def predict(self, n: int = 2) -> List[Path]:
        out = []
        for i in range(n):
            f = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
            f.write("file %d" % i)
            f.close()
            out.append(Path(f.name))
        return out
EOF
printf 'run: p.py:Predictor\n' >"$T_WORK/twofiles/kiln.yaml"
run_kiln predict twofiles --runtime native
expect_rc 0
expect_eq "$(cat "$T_WORK/output.0.txt" 2>/dev/null) / $(cat "$T_WORK/output.1.txt" 2>/dev/null)" "file 0 / file 1"
run_kiln predict twofiles -i n=3 -o "$T_WORK/res.txt" --runtime native
expect_eq "$(cat "$T_WORK/res.2.txt" 2>/dev/null)" "file 2" "-o res.txt, the third"

t_case "bad input: unknown name, wrong type, missing @FILE: exit 1 before anything runs"
for args in "-i nope=1" "-i text=a -i steps=x" "-i text=a -i image=@missing.png" "-i text=a -i flag=maybe"; do
	# shellcheck disable=SC2086
	run_kiln predict types $args --runtime native
	expect_rc 1
	expect_not_contains "$ERR" "runtime:"
done
run_kiln predict types -i nope=1 --runtime native
expect_contains "$ERR" 'unknown input "nope"; valid inputs are: doc, extra, flag, image, mode, paths, plain, scale, seed, size, steps, tags, text, token'
run_kiln predict types -i text=a -i image=@missing.png --runtime native
expect_contains "$ERR" "input 'image': cannot open 'missing.png'"
run_kiln predict types -i text=BAD -i image=@doc.txt --runtime native
expect_rc 1
expect_contains "$ERR" 'invalid input "text": "BAD" does not match "^[a-z ]+$"'

t_case "a predictor that raises, a setup that fails: exit 1 with the error and the logs"
fixture raises raises.py
run_kiln predict raises --runtime native
expect_rc 1
expect_contains "$ERR" "about to fail"
expect_contains "$ERR" 'Prediction failed with status "failed": bad'
fixture setup setup_fails.py
run_kiln predict setup --runtime native
expect_rc 1
expect_contains "$ERR" "loading weights"
expect_contains "$ERR" "setup failed"
expect_contains "$ERR" "weights are missing"

t_case "--setup-timeout and -e reach the shim"
mkdir -p "$T_WORK/envp"
cat >"$T_WORK/envp/p.py" <<'EOF'
import os, time
from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        time.sleep(float(os.environ.get("SLEEP", "0")))

    def predict(self) -> str:
        return os.environ.get("GREETING", "unset")
EOF
printf 'run: p.py:Predictor\n' >"$T_WORK/envp/kiln.yaml"
run_kiln predict envp -e GREETING=hola --runtime native
expect_eq "$OUT" "hola" "-e"
run_kiln predict envp -e SLEEP=5 --setup-timeout 0.5 --runtime native
expect_rc 1
expect_contains "$ERR" "COG_SETUP_TIMEOUT"

t_case "Ctrl-C cancels the prediction and stops the runtime (exit 130)"
fixture slow slow.py
"$KILN" predict slow -i seconds=30 --runtime native >/dev/null 2>"$T_WORK/slow.err" &
PID=$!
for _ in $(seq 100); do
	grep -q "sleeping" "$T_WORK/slow.err" && break
	sleep 0.1
done
kill -INT "$PID"
wait "$PID"
expect_eq "$?" "130" "exit status"
expect_contains "$(cat "$T_WORK/slow.err")" "interrupted"
sleep 0.5
expect_eq "$(pgrep -f "kiln-shim --project $KILN_HOME/run" | wc -l)" "0" "shims left running"

# oci_layout DIR TAG ROOT: an OCI image layout in DIR whose image TAG has one layer, ROOT's tree (Python's
# tarfile: symlinks kept, owned by root).
oci_layout() {
	python3 - "$@" <<'EOF'
import gzip, hashlib, io, json, os, sys, tarfile
out, tag, root = sys.argv[1:4]
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            path = os.path.join(dirpath, name)
            info = t.gettarinfo(path, os.path.relpath(path, root))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with open(path, "rb") as f:
                    t.addfile(info, f)
            else:
                t.addfile(info)
layer = raw.getvalue()
ld, ls = blob(gzip.compress(layer, mtime=0))
cd, cs = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/bin:/bin"]},
                          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode())
md, ms = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}]}).encode())
with open(out + "/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
with open(out + "/oci-layout", "w") as f:
    f.write('{"imageLayoutVersion": "1.0.0"}')
EOF
}

# A Python base image made here: this machine's Python (Debian's when there is one), its standard library
# and the libraries it loads, so that bwrap runs the model with the image's own Python.
make_python_base() {
	local root=$T_WORK/pyroot py exe stdlib dynload lib
	py=$([ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)
	exe=$(readlink -f "$("$py" -c 'import sys; print(sys.executable)')")
	stdlib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
	dynload=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("DESTSHARED") or "")')
	mkdir -p "$root/usr/bin" "$root$stdlib" "$root/lib64"
	cp "$exe" "$root/usr/bin/python3"
	tar -C "$stdlib" --exclude=./test --exclude=./site-packages --exclude=./dist-packages --exclude=__pycache__ \
		--exclude=./idlelib --exclude=./tkinter --exclude=./ensurepip -cf - . | tar -C "$root$stdlib" -xf - || return 1
	if [ -n "$dynload" ] && [ -d "$dynload" ]; then
		mkdir -p "$root$dynload" && cp -a "$dynload/." "$root$dynload/" || return 1
	fi
	for lib in $( (ldd "$exe"; for so in "$dynload"/*.so; do ldd "$so"; done) 2>/dev/null |
		awk '/=> \// { print $3 }' | sort -u); do
		mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib" || return 1
	done
	cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/" && oci_layout "$T_WORK/pybase" py "$root"
}

t_case "native and bwrap answer the same project identically (bwrap on a Python base image made here)"
if ! bwrap --ro-bind / / --unshare-pid --dev /dev true 2>/dev/null; then
	echo "  (bubblewrap cannot make namespaces here: skipped)" >&2
elif ! make_python_base; then
	t_fail "cannot make the Python base image"
else
	mkdir -p "$T_WORK/onpy"
	cp "$FIX/types.py" "$T_WORK/onpy/"
	printf 'run: types.py:Predictor\nbase: oci:%s:py\n' "$T_WORK/pybase" >"$T_WORK/onpy/kiln.yaml"
	run_kiln predict onpy -i text=same -i steps=3 -i image=@doc.txt --runtime native
	expect_rc 0
	NATIVE=$OUT
	run_kiln predict onpy -i text=same -i steps=3 -i image=@doc.txt --runtime bwrap
	expect_rc 0
	expect_eq "$OUT" "$NATIVE" "bwrap's answer against native's"
	run_kiln predict onpy -i text=same -i steps=3 -i image=@doc.txt
	expect_contains "$ERR" "runtime: bwrap"
	expect_eq "$OUT" "$NATIVE" "auto's answer"

	t_case "--runtime bwrap fetches the layers of a registry base that the build did not need"
	registry_start plain || t_fail "cannot start the registry"
	skopeo copy -q --dest-tls-verify=false "oci:$T_WORK/pybase:py" "docker://$REGISTRY/base/python:1" ||
		t_fail "skopeo copy"
	mkdir -p "$T_WORK/onreg"
	cp "$FIX/types.py" "$T_WORK/onreg/"
	printf 'run: types.py:Predictor\nbase: %s/base/python:1\n' "$REGISTRY" >"$T_WORK/onreg/kiln.yaml"
	# a store of its own: the base's layer is not there from the cases above
	KILN_HOME=$T_WORK/home-reg run_kiln predict onreg -i text=same -i steps=3 -i image=@doc.txt --runtime bwrap
	expect_rc 0
	expect_contains "$ERR" "fetching the base's layer"
	expect_eq "$OUT" "$NATIVE" "the answer on the registry base"

	t_case "a reference the store lacks is pulled from its registry, then answered"
	run_kiln build types -t "$REGISTRY/team/types:1" --push --quiet
	expect_rc 0
	KILN_HOME=$T_WORK/home-pull run_kiln predict "$REGISTRY/team/types:1" -i text=pulled -i image=@doc.txt --runtime native
	expect_rc 0
	expect_eq "$(output_of 'j["text"]')" "pulled" "the pulled image's answer"
fi

t_case "an image whose layer tries to escape the root is refused, and nothing is written outside"
# An OCI layout by hand: one layer whose tar has "../escaped" and a symlink out, as a base.
python3 - "$T_WORK/evil" "$T_WORK" <<'EOF'
import hashlib, io, json, os, sys, tarfile
out, work = sys.argv[1], sys.argv[2]
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(data)
    return "sha256:" + d, len(data)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    for name in ("ok.txt", "../escaped"):
        ti = tarfile.TarInfo(name); ti.size = 2
        t.addfile(ti, io.BytesIO(b"x\n"))
layer = buf.getvalue()
ld, ls = blob(layer)
diff = "sha256:" + hashlib.sha256(layer).hexdigest()
cd, cs = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                          "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode())
md, ms = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}]}).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "evil"}}]},
    open(out + "/index.json", "w"))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion": "1.0.0"}')
EOF
mkdir -p "$T_WORK/onevil"
cp "$FIX/hello.py" "$T_WORK/onevil/"
printf 'run: hello.py:Predictor\nbase: oci:%s:evil\n' "$T_WORK/evil" >"$T_WORK/onevil/kiln.yaml"
run_kiln predict onevil --runtime bwrap
expect_rc 1
expect_contains "$ERR" "escaped"
[ ! -e "$KILN_HOME/run/escaped" ] && [ ! -e "$KILN_HOME/escaped" ] || t_fail "a file escaped the root"
expect_eq "$(ls "$KILN_HOME/run" | grep -c -- '-full$')" "$(ls "$KILN_HOME/run" | grep -c -- '-full$')"
[ -z "$(ls -d "$KILN_HOME"/run/*-full 2>/dev/null | while read -r d; do [ -e "$d/ok.txt" ] && echo "$d"; done)" ] ||
	t_fail "a half-unpacked root was left in place"

t_case "kiln init, then kiln predict on the result"
run_kiln init "$T_WORK/fresh"
expect_rc 0
run_kiln predict "$T_WORK/fresh" --runtime native
expect_rc 0
[ -n "$OUT" ] || t_fail "no output (stderr: $ERR)"

t_finish
