#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln build end to end: layers, determinism, the layer cache, OCI output read back by skopeo and umoci.
source "$(dirname "$0")/lib.sh"

MiB=$((1024 * 1024))
P=$T_WORK/project
mkdir -p "$P/models" "$P/tokenizer" "$P/.git-not" "$P/data"
make_file "$P/models/a.bin" $((65 * MiB))
make_file "$P/models/b.safetensors" $((70 * MiB))
make_file "$P/tokenizer/vocab.bin" $((11 * MiB))
make_file "$P/tokenizer/merges.bin" $((12 * MiB))
make_file "$P/data/big.py" $((11 * MiB)) # large but code: not a weight under Cog's rule
echo 'print("hi")' >"$P/predict.py"
printf 'secret\n' >"$P/notes.txt"
printf 'notes.txt\n' >"$P/.dockerignore"
mkdir -p "$P/.git" && echo "ref: refs/heads/main" >"$P/.git/HEAD"
cat >"$P/predict.py" <<'PY'
from cog import BasePredictor

class Predictor(BasePredictor):
    def predict(self, text: str) -> str:
        return text
PY
cat >"$P/kiln.yaml" <<'YAML'
build:
  python_version: "3.11"
run: predict.py:Predictor
environment:
  - GREETING=hello
serve:
  prefetch: ["models/b.safetensors"]
  min_instances: 1
YAML

t_case "build reports every large weight file as its own layer, small ones bundled, code gzip"
run_kiln build "$P" -t test/model:v1 --json
expect_rc 0
REPORT=$OUT
kinds=$(echo "$REPORT" | json '" ".join(l["kind"] for l in j["layers"])')
expect_eq "$kinds" "weights weights weights runtime code" "layer kinds"
titles=$(echo "$REPORT" | json '" ".join(l.get("title","") for l in j["layers"])')
expect_eq "$titles" "models/a.bin models/b.safetensors weights-1 runtime code" "layer titles"
media=$(echo "$REPORT" | json '" ".join(l["media_type"].rsplit(".",1)[1] for l in j["layers"])')
expect_eq "$media" "tar tar tar tar+gzip tar+gzip" "media types"
expect_eq "$(echo "$REPORT" | json 'j["layers"][2]["files"]')" "2" "files in the bundle"
hashed=$(echo "$REPORT" | json 'j["bytes_hashed"]')
[ "$hashed" -ge $((158 * MiB)) ] || t_fail "bytes_hashed $hashed: the first build must read every file"
DIGEST1=$(echo "$REPORT" | json 'j["digest"]')
written=$(echo "$REPORT" | json 'j["bytes_written"]')
[ "$written" -lt $((20 * MiB)) ] || t_fail "bytes_written $written: weight bytes must not be copied into the store"
store_kib=$(du -sk "$KILN_HOME" | cut -f1)
[ "$store_kib" -lt $(((12 + $(runtime_mib)) * 1024)) ] || t_fail "the store holds ${store_kib} KiB: weights were copied"
expect_store_consistent

t_case "rebuild with nothing changed reads nothing and gives the same digest"
run_kiln build "$P" -t test/model:v1 --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["digest"]')" "$DIGEST1" "digest"
expect_eq "$(echo "$OUT" | json 'j["bytes_hashed"]')" "0" "bytes hashed"
expect_eq "$(echo "$OUT" | json 'all(l["cached"] for l in j["layers"])')" "True" "all layers cached"

t_case "a fresh store and a copy of the project elsewhere give the same digest"
cp -a "$P" "$T_WORK/copy"
OUT=$(KILN_HOME=$T_WORK/home2 "$KILN" build "$T_WORK/copy" -t test/model:v1 --json 2>/dev/null)
expect_eq "$(echo "$OUT" | json 'j["digest"]')" "$DIGEST1" "digest in another store and directory"

t_case "output oci: is accepted by skopeo and unpacks byte-identical with umoci"
run_kiln build "$P" -t test/model:v1 --output "oci:$T_WORK/layout:v1" --quiet
expect_rc 0
expect_eq "$ERR" "" "stderr with --quiet"
expect_eq "$OUT" "test/model:v1@$DIGEST1" "stdout"
SK=$(skopeo inspect "oci:$T_WORK/layout:v1" 2>&1) || t_fail "skopeo inspect: $SK"
expect_eq "$(echo "$SK" | json 'len(j["Layers"])')" "5" "skopeo layer count"
expect_eq "$(echo "$SK" | json 'j["Labels"]["org.opencontainers.image.created"]')" "1970-01-01T00:00:00Z" "created"
expect_contains "$(echo "$SK" | json 'j["Labels"]["run.cog.config"]')" '"predict.py:Predictor"'
expect_contains "$(echo "$SK" | json 'j["Env"]')" "GREETING=hello"
schema=$(echo "$SK" | json 'json.loads(j["Labels"]["run.cog.openapi_schema"])["components"]["schemas"]["Input"]')
expect_eq "$(echo "$schema" | json 'j["required"]')" '["text"]' "run.cog.openapi_schema Input.required"
expect_eq "$(echo "$schema" | json 'j["properties"]["text"]["type"]')" "string" "run.cog.openapi_schema text type"
U=$(umoci unpack --image "$T_WORK/layout:v1" "$T_WORK/bundle" 2>&1) || t_fail "umoci unpack: $U"
for f in models/a.bin models/b.safetensors tokenizer/vocab.bin tokenizer/merges.bin data/big.py predict.py kiln.yaml; do
	expect_file_same "$P/$f" "$T_WORK/bundle/rootfs/src/$f"
done
[ ! -e "$T_WORK/bundle/rootfs/src/notes.txt" ] || t_fail ".dockerignore'd notes.txt is in the image"
[ ! -e "$T_WORK/bundle/rootfs/src/.git" ] || t_fail ".git is in the image"
C=$(skopeo inspect --config "oci:$T_WORK/layout:v1" 2>&1)
expect_eq "$(echo "$C" | json 'j["config"]["WorkingDir"]')" "/src" "WorkingDir"
expect_eq "$(echo "$C" | json 'list(j["config"]["ExposedPorts"])')" '["5000/tcp"]' "ExposedPorts"
prefetch=$(echo "$C" | json 'json.loads(j["config"]["Labels"]["dev.kiln.serve"])["prefetch"]')
expect_eq "$prefetch" '["/src/models/b.safetensors", "/src/models/a.bin", "/src/tokenizer/merges.bin", "/src/tokenizer/vocab.bin"]' "prefetch order"

t_case "skopeo copies the image to a dir: with every blob matching its digest"
S=$(skopeo copy "oci:$T_WORK/layout:v1" "dir:$T_WORK/dircopy" 2>&1) || t_fail "skopeo copy: $S"
n=$(ls "$T_WORK/dircopy" | grep -c -v -e manifest.json -e version)
expect_eq "$n" "6" "blobs in the dir: copy (5 layers + config)"

t_case "output oci-archive: is accepted by skopeo"
run_kiln build "$P" -t test/model:v1 --output "oci-archive:$T_WORK/image.tar" --quiet
expect_rc 0
SK=$(skopeo inspect "oci-archive:$T_WORK/image.tar:v1" 2>&1) || t_fail "skopeo inspect oci-archive: $SK"
expect_eq "$(echo "$SK" | json 'j["Digest"]')" "$DIGEST1" "digest in the archive"

t_case "a code-only change keeps every weight layer and reads no weight bytes"
echo "# changed" >>"$P/predict.py"
run_kiln build "$P" -t test/model:v1 --json
expect_rc 0
for i in 0 1 2; do
	expect_eq "$(echo "$OUT" | json "j['layers'][$i]['digest']")" "$(echo "$REPORT" | json "j['layers'][$i]['digest']")" "weight layer $i"
	expect_eq "$(echo "$OUT" | json "j['layers'][$i]['cached']")" "True" "weight layer $i cached"
done
expect_ne "$(echo "$OUT" | json 'j["layers"][-1]["digest"]')" "$(echo "$REPORT" | json 'j["layers"][-1]["digest"]')" "code layer"
expect_eq "$(echo "$OUT" | json 'j["layers"][3]["digest"]')" "$(echo "$REPORT" | json 'j["layers"][3]["digest"]')" "runtime layer"
hashed=$(echo "$OUT" | json 'j["bytes_hashed"]')
[ "$hashed" -lt $((12 * MiB)) ] || t_fail "bytes_hashed $hashed after a code-only change: weights were read"
expect_ne "$(echo "$OUT" | json 'j["digest"]')" "$DIGEST1" "image digest"

t_case "a changed weight file changes only its own layer"
make_file "$T_WORK/other" $((65 * MiB))
cp "$T_WORK/other" "$P/models/a.bin"
PREV=$OUT
run_kiln build "$P" -t test/model:v1 --json
expect_rc 0
expect_ne "$(echo "$OUT" | json 'j["layers"][0]["digest"]')" "$(echo "$PREV" | json 'j["layers"][0]["digest"]')" "changed layer"
expect_eq "$(echo "$OUT" | json 'j["layers"][1]["digest"]')" "$(echo "$PREV" | json 'j["layers"][1]["digest"]')" "unchanged layer"
hashed=$(echo "$OUT" | json 'j["bytes_hashed"]')
[ "$hashed" -eq $((65 * MiB)) ] || t_fail "bytes_hashed $hashed, expected exactly the changed file"

t_case "SOURCE_DATE_EPOCH sets the created time and is part of the digest"
OUT=$(SOURCE_DATE_EPOCH=1700000000 "$KILN" build "$P" -t test/model:v2 --output "oci:$T_WORK/layout:v2" --json 2>/dev/null)
SK=$(skopeo inspect "oci:$T_WORK/layout:v2")
expect_eq "$(echo "$SK" | json 'j["Labels"]["org.opencontainers.image.created"]')" "2023-11-14T22:13:20Z" "created"
U=$(umoci unpack --image "$T_WORK/layout:v2" "$T_WORK/bundle2" 2>&1) || t_fail "umoci unpack: $U"
expect_eq "$(stat -c %Y "$T_WORK/bundle2/rootfs/src/predict.py")" "1700000000" "file mtime in the layer"

t_case "Cog's weight rule applies without weights globs; globs override it"
Q=$T_WORK/globs
make_project "$Q" $'weights:\n  - "w/**/*.onnx"' w/one.onnx $((2 * MiB)) w/two.onnx $((3 * MiB)) big.dat $((11 * MiB))
run_kiln build "$Q" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json '" ".join(l["kind"]+":"+l["title"] for l in j["layers"])')" "weights:weights-1 runtime:runtime code:code" "layers"
expect_eq "$(echo "$OUT" | json 'j["reference"]')" "globs:latest" "default reference from the directory"

t_case "inspect shows layers, files, labels and hints"
run_kiln inspect test/model:v1
expect_rc 0
expect_contains "$OUT" "models/b.safetensors"
expect_contains "$OUT" "application/vnd.oci.image.layer.v1.tar+gzip"
expect_contains "$OUT" "min_instances"
run_kiln inspect test/model:v1 --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["layers"][2]["files"]')" '["tokenizer/merges.bin", "tokenizer/vocab.bin"]' "bundle files"
expect_contains "$(echo "$OUT" | json 'j["layers"][-1]["files"]')" "src/predict.py"
expect_contains "$(echo "$OUT" | json 'j["layers"][3]["files"]')" ".kiln/bin/kiln-shim"
expect_eq "$(echo "$OUT" | json 'j["serve"]["min_instances"]')" "1" "min_instances hint"
run_kiln inspect "$Q" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["reference"]')" "globs:latest" "inspect DIR"

t_case "the revision label comes from git, with a dirty marker"
G=$T_WORK/gitproj
cp -a "$Q" "$G"
git -C "$G" init -q && git -C "$G" add -A && git -C "$G" -c user.name=t -c user.email=t@t commit -qm init
rev=$(git -C "$G" rev-parse HEAD)
run_kiln build "$G" --output "oci:$T_WORK/gl:a" --quiet
expect_rc 0
expect_eq "$(skopeo inspect "oci:$T_WORK/gl:a" | json 'j["Labels"]["org.opencontainers.image.revision"]')" "$rev" "revision"
echo "# edit" >>"$G/p.py"
run_kiln build "$G" --output "oci:$T_WORK/gl:b" --quiet
expect_eq "$(skopeo inspect "oci:$T_WORK/gl:b" | json 'j["Labels"]["org.opencontainers.image.revision"]')" "$rev-dirty" "dirty revision"

t_case "a base image from an OCI layout goes under kiln's layers"
B=$T_WORK/baseproj
make_project "$B" "base: oci:$T_WORK/layout:v1"
run_kiln build "$B" -t based:1 --output "oci:$T_WORK/based:1" --json
expect_rc 0
# the base was built by this kiln: its runtime layer is the image's, not added a second time
expect_eq "$(echo "$OUT" | json '" ".join(l["kind"] for l in j["layers"])')" "base base base base base code" "layer kinds"
expect_eq "$(echo "$OUT" | json 'j["runtime"]')" "True" "runtime"
U=$(umoci unpack --image "$T_WORK/based:1" "$T_WORK/bundle3" 2>&1) || t_fail "umoci unpack: $U"
expect_file_same "$P/models/b.safetensors" "$T_WORK/bundle3/rootfs/src/models/b.safetensors"
expect_file_same "$B/p.py" "$T_WORK/bundle3/rootfs/src/p.py"

t_finish
