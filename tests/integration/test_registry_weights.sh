#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# serve.weights: registry (kiln build --weights registry): the weights stay out of the image's layers, as
# blobs in its repository carried by an artifact whose subject is the image. Pushed to a real registry,
# read back with skopeo and umoci, pulled into fresh stores, and run under bubblewrap: the shim fetches the
# weights into the node's cache before setup (through a fault-injecting proxy too), a warm cache fetches
# nothing, and every kind of bad input gets a clear error.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"

MiB=$((1024 * 1024))
export KILN_HTTP_STALL_SECONDS=3
registry_start plain || exit 1
R=$PLAIN_REGISTRY
debian_base || exit 1

P=$T_WORK/model
mkdir -p "$P/models"
make_file "$P/models/big.bin" $((3 * MiB + 11))
make_file "$P/models/small.bin" 1000
cat >"$P/kiln.yaml" <<EOF
base: oci:$DEBIAN_BASE:bookworm
run: predict.py:Predictor
weights: ["models/*"]
serve:
  weights: registry
EOF
cat >"$P/predict.py" <<'EOF'
import hashlib
from cog import BaseRunner


class Predictor(BaseRunner):
    def setup(self):
        self.files = {n: open(f"models/{n}.bin", "rb").read() for n in ("big", "small")}

    def run(self, name: str = "big") -> str:
        return hashlib.sha256(self.files[name]).hexdigest()
EOF
BIG=$(sha256sum "$P/models/big.bin" | cut -d' ' -f1)
SMALL=$(sha256sum "$P/models/small.bin" | cut -d' ' -f1)
REF=$R/rw/model:1

# ---------------------------------------------------------------- build, push, read back

t_case "a build with serve.weights: registry leaves the weights out of the image's layers"
run_kiln build "$P" -t "$REF" --json
expect_rc 0
echo "$OUT" >"$T_WORK/build.json"
expect_eq "$(json 'j["weights"]' <"$T_WORK/build.json")" "registry" "the report's weights"
expect_eq "$(json '" ".join(sorted(l["digest"][7:] for l in j["layers"] if l["media_type"] == "application/vnd.cncf.model.weight.v1.raw"))' <"$T_WORK/build.json")" \
	"$(printf '%s\n' "$BIG" "$SMALL" | sort | tr '\n' ' ' | sed 's/ $//')" "the raw weight blobs are the files' own digests"
DIGEST=$(json 'j["digest"]' <"$T_WORK/build.json")
run_kiln inspect "$REF" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["weights_mode"]')" "registry" "inspect's weights_mode"
expect_eq "$(echo "$OUT" | json 'j["weights_source"]')" "$R/rw/model" "inspect's weights_source"
expect_eq "$(echo "$OUT" | json '[l["media_type"] for l in j["layers"] if "weight.v1.raw" in l["media_type"]]')" "[]" \
	"raw blobs among the image's layers"
expect_eq "$(echo "$OUT" | json 'sorted(w["path"] for w in j["registry_weights"])')" \
	'["/src/models/big.bin", "/src/models/small.bin"]' "the registry weights"
run_kiln inspect "$REF"
expect_contains "$OUT" "weights  registry: 2 blobs fetched from $R/rw/model at start"

t_case "kiln push uploads the weight blobs and an artifact whose subject is the image, found by its referrers tag"
run_kiln push "$REF" --json
expect_rc 0
for h in "$BIG" "$SMALL"; do
	expect_eq "$(curl -s -o /dev/null -w '%{http_code}' -I "http://$R/v2/rw/model/blobs/sha256:$h")" "200" "blob $h in the registry"
done
curl -sf -H 'Accept: application/vnd.oci.image.index.v1+json' -o "$T_WORK/referrers.json" \
	"http://$R/v2/rw/model/manifests/sha256-${DIGEST#sha256:}" || t_fail "no referrers tag sha256-${DIGEST#sha256:}"
ART=$(json 'j["manifests"][0]["digest"]' <"$T_WORK/referrers.json")
expect_eq "$(json 'j["manifests"][0]["artifactType"]' <"$T_WORK/referrers.json")" "application/vnd.kiln.weights.v1" "artifactType"
skopeo inspect --tls-verify=false --raw "docker://$R/rw/model@$ART" >"$T_WORK/artifact.json" 2>"$T_WORK/skopeo.err" ||
	t_fail "skopeo cannot read the artifact: $(cat "$T_WORK/skopeo.err")"
expect_eq "$(json 'j["subject"]["digest"]' <"$T_WORK/artifact.json")" "$DIGEST" "the artifact's subject"
expect_eq "$(json 'sorted(l["digest"][7:] for l in j["layers"])' <"$T_WORK/artifact.json")" \
	"$(python3 -c 'import json,sys; print(json.dumps(sorted(sys.argv[1:])))' "$BIG" "$SMALL")" "the artifact's blobs"
# a second push finds everything there
run_kiln push "$REF" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'sorted(set(b["action"] for b in j["blobs"]))')" '["exists"]' "actions of a second push"
expect_eq "$(curl -sf -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$R/v2/rw/model/manifests/sha256-${DIGEST#sha256:}" | json 'len(j["manifests"])')" \
	"1" "artifacts listed once"

t_case "skopeo and umoci read the runnable image: small, with links where the weights go"
skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$T_WORK/layout:1" 2>"$T_WORK/skopeo.err" ||
	t_fail "skopeo copy: $(cat "$T_WORK/skopeo.err")"
U=$(umoci unpack --rootless --image "$T_WORK/layout:1" "$T_WORK/bundle" 2>&1) || t_fail "umoci unpack: $U"
expect_eq "$(readlink "$T_WORK/bundle/rootfs/src/models/big.bin")" "/var/lib/kiln/weights/sha256/$BIG" "the link"
expect_eq "$(json 'sorted(w["digest"][7:] for w in j)' <"$T_WORK/bundle/rootfs/.kiln/weights.json")" \
	"$(python3 -c 'import json,sys; print(json.dumps(sorted(sys.argv[1:])))' "$BIG" "$SMALL")" "/.kiln/weights.json"
LAYOUT_BYTES=$(du -sb "$T_WORK/layout/blobs" | cut -f1)
[ "$LAYOUT_BYTES" -lt $((120 * MiB)) ] || t_fail "the runnable image is $LAYOUT_BYTES bytes"

# ---------------------------------------------------------------- pull and run

t_case "kiln pull brings the weight blobs; kiln predict under bubblewrap reads the right bytes"
export KILN_HOME=$T_WORK/home-pull
run_kiln pull "$REF" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["weights"]')" "2" "the pull's weights"
expect_file_same "$P/models/big.bin" "$KILN_HOME/blobs/sha256/$BIG"
run_kiln predict "$REF" --runtime bwrap -i name=big
expect_rc 0
expect_eq "$OUT" "$BIG" "the prediction"
expect_contains "$ERR" "2 of 2 files put in the cache"
expect_file_same "$P/models/big.bin" "$KILN_HOME/weights/sha256/$BIG"
expect_store_consistent

t_case "a cache without the weights and a store without them: the shim fetches them from the registry before setup"
rm -rf "$KILN_HOME/weights" "$KILN_HOME/blobs/sha256/$BIG" "$KILN_HOME/blobs/sha256/$SMALL"
run_kiln predict "$REF" --runtime bwrap -i name=small
expect_rc 0
expect_eq "$OUT" "$SMALL" "the prediction"
expect_contains "$ERR" "weights: 2 files, $((3 * MiB + 11 + 1000)) bytes fetched from $R/rw/model"
expect_file_same "$P/models/big.bin" "$KILN_HOME/weights/sha256/$BIG"
[ -z "$(ls -A "$KILN_HOME/weights/tmp")" ] || t_fail "temporary files left in the cache"

t_case "a warm cache: nothing fetched"
run_kiln predict "$REF" --runtime bwrap -i name=big
expect_rc 0
expect_eq "$OUT" "$BIG" "the prediction"
expect_contains "$ERR" "weights: 2 files, 0 bytes fetched from $R/rw/model"
expect_contains "$ERR" "(2 cached)"

t_case "kiln serve on the pulled image: the health check shows the fetch, then READY, and it answers"
export KILN_HOME=$T_WORK/home-serve
run_kiln pull "$REF"
rm -f "$KILN_HOME/blobs/sha256/$BIG" "$KILN_HOME/blobs/sha256/$SMALL"
SPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$KILN" serve "$REF" --host 127.0.0.1 --port "$SPORT" >"$T_WORK/serve.out" 2>"$T_WORK/serve.err" &
SPID=$!
t_defer "kill $SPID 2>/dev/null"
HC=
for _ in $(seq 200); do
	HC=$(curl -s "http://127.0.0.1:$SPORT/health-check") && [[ $HC == *'"READY"'* ]] && break
	sleep 0.1
done
expect_eq "$(echo "$HC" | json 'j["status"]')" "READY" "the health check"
expect_eq "$(echo "$HC" | json 'j["kiln"]["weights"]["state"]')" "done" "kiln.weights.state"
expect_eq "$(echo "$HC" | json 'j["kiln"]["weights"]["bytes_fetched"]')" "$((3 * MiB + 11 + 1000))" "kiln.weights.bytes_fetched"
expect_eq "$(echo "$HC" | json 'sorted(f["state"] for f in j["kiln"]["weights"]["per_file"])')" '["fetched", "fetched"]' \
	"per_file states"
A=$(curl -s -H 'Content-Type: application/json' -d '{"input": {"name": "small"}}' "http://127.0.0.1:$SPORT/predictions")
expect_eq "$(echo "$A" | json 'j["output"]')" "$SMALL" "the served prediction"
# SIGTERM to kiln reaches the shim inside bubblewrap: it stops, and kiln with it
kill -TERM $SPID
RC=0
timeout 20 tail --pid=$SPID -f /dev/null || t_fail "kiln serve still runs 20 s after SIGTERM"
wait $SPID 2>/dev/null || RC=$?
# (the shim's own status: bubblewrap and its init are left to end with it)
[ "$RC" = 0 ] || t_fail "kiln serve's exit status after SIGTERM: $RC"
sleep 1
pgrep -f "kiln-shim --project=/src --host=127.0.0.1 --port=$SPORT" >/dev/null && t_fail "the shim still runs after SIGTERM"
! curl -s --max-time 2 "http://127.0.0.1:$SPORT/health-check" >/dev/null || t_fail "the shim still answers after SIGTERM"
expect_file_same "$P/models/small.bin" "$KILN_HOME/weights/sha256/$SMALL"

t_case "KILN_WEIGHTS_DIR: a node's cache shared by stores, filled once"
export KILN_WEIGHTS_DIR=$T_WORK/node-cache
export KILN_HOME=$T_WORK/home-node1
run_kiln pull "$REF"
rm -f "$KILN_HOME/blobs/sha256/$BIG" "$KILN_HOME/blobs/sha256/$SMALL"
run_kiln predict "$REF" --runtime bwrap -i name=big
expect_rc 0
expect_eq "$OUT" "$BIG" "the prediction"
expect_contains "$ERR" "bytes fetched from"
export KILN_HOME=$T_WORK/home-node2
run_kiln pull "$REF"
rm -f "$KILN_HOME/blobs/sha256/$BIG" "$KILN_HOME/blobs/sha256/$SMALL"
run_kiln predict "$REF" --runtime bwrap -i name=small
expect_rc 0
expect_eq "$OUT" "$SMALL" "the prediction"
expect_contains "$ERR" "weights: 2 files, 0 bytes fetched"
unset KILN_WEIGHTS_DIR

# ---------------------------------------------------------------- faults

fault_proxy_start >/dev/null || exit 1
F=$FAULTY
# A store that has the image but neither the weights nor a cache: the shim must fetch through $F.
fresh_cold() { # NAME
	export KILN_HOME=$T_WORK/home-$1
	run_kiln pull "$REF" >/dev/null
	rm -f "$KILN_HOME/blobs/sha256/$BIG" "$KILN_HOME/blobs/sha256/$SMALL"
}

t_case "the weights through a proxy that cuts the big blob twice and answers 500 and 429: exact bytes"
fault_proxy_set "drop_mid_response:1000000:2;path=$BIG" "status:500:1;path=$SMALL" "status:429:1:1;path=$BIG" >/dev/null
fresh_cold faults
run_kiln predict "$REF" --runtime bwrap -e "KILN_WEIGHTS_SOURCE=$F/rw/model" -i name=big
expect_rc 0
expect_eq "$OUT" "$BIG" "the prediction"
expect_file_same "$P/models/big.bin" "$KILN_HOME/weights/sha256/$BIG"
expect_eq "$(fault_proxy_state | json '[f["fired"] for f in j["faults"]]')" "[2, 1, 1]" "faults fired"

t_case "a stalled answer and a corrupted blob: the stall is cut and resumed, the bad bytes fetched again"
fault_proxy_set "stall:30:1;path=$BIG" "corrupt:500:1;path=$SMALL" >/dev/null
fresh_cold stallcorrupt
run_kiln predict "$REF" --runtime bwrap -e "KILN_WEIGHTS_SOURCE=$F/rw/model" -e KILN_HTTP_STALL_SECONDS=3 -i name=small
expect_rc 0
expect_eq "$OUT" "$SMALL" "the prediction"
expect_file_same "$P/models/big.bin" "$KILN_HOME/weights/sha256/$BIG"
expect_file_same "$P/models/small.bin" "$KILN_HOME/weights/sha256/$SMALL"
expect_eq "$(fault_proxy_state | json '[f["fired"] for f in j["faults"]]')" "[1, 1]" "faults fired"

t_case "a blob the proxy always cuts: setup fails naming the blob, nothing half-written is used"
fault_proxy_set "drop_mid_response:100000:*;path=$BIG" >/dev/null
fresh_cold giveup
run_kiln predict "$REF" --runtime bwrap -e "KILN_WEIGHTS_SOURCE=$F/rw/model" -i name=big
expect_rc 1
expect_contains "$ERR" "cannot fetch the weights from $F/rw/model"
expect_contains "$ERR" "/src/models/big.bin"
expect_contains "$ERR" "gave up after"
[ ! -e "$KILN_HOME/weights/sha256/$BIG" ] || t_fail "the cut blob has its name in the cache"
[ -z "$(ls -A "$KILN_HOME/weights/tmp")" ] || t_fail "temporary files left in the cache"
fault_proxy_set none >/dev/null
# the rerun completes
run_kiln predict "$REF" --runtime bwrap -e "KILN_WEIGHTS_SOURCE=$F/rw/model" -i name=big
expect_rc 0
expect_eq "$OUT" "$BIG" "the rerun's prediction"

t_case "a full cache disk: setup fails saying so before fetching, nothing is left, and with room it runs"
fresh_cold fulldisk
mkdir -p "$T_WORK/smallcache"
if mount -t tmpfs -o size=2m tmpfs "$T_WORK/smallcache" 2>/dev/null; then
	t_defer "umount '$T_WORK/smallcache'"
	KILN_WEIGHTS_DIR=$T_WORK/smallcache run_kiln predict "$REF" --runtime bwrap -i name=big
	expect_rc 1
	expect_contains "$ERR" "cannot make room for /src/models/big.bin ($((3 * MiB + 11)) bytes)"
	expect_contains "$ERR" "No space left on device"
	[ ! -e "$T_WORK/smallcache/sha256/$BIG" ] || t_fail "the blob has its name in the full cache"
	[ -z "$(ls -A "$T_WORK/smallcache/tmp")" ] || t_fail "temporary files left in the full cache"
	run_kiln predict "$REF" --runtime bwrap -i name=big
	expect_rc 0
	expect_eq "$OUT" "$BIG" "the prediction with room"
else
	t_fail "cannot mount a tmpfs to fill (the tests run as root)"
fi

t_case "a token-auth registry: push, pull and the shim's fetch with credentials, printed nowhere"
registry_start token || exit 1
TR=$TOKEN_REGISTRY
export KILN_HOME=$T_WORK/home
export KILN_REGISTRY_USERNAME=$REGISTRY_USER KILN_REGISTRY_PASSWORD=$TOKEN_REGISTRY_PASSWORD
run_kiln build "$P" -t "$TR/rw/model:1" --push
expect_rc 0
export KILN_HOME=$T_WORK/home-token
run_kiln pull "$TR/rw/model:1"
expect_rc 0
rm -f "$KILN_HOME/blobs/sha256/$BIG" "$KILN_HOME/blobs/sha256/$SMALL"
unset KILN_REGISTRY_USERNAME KILN_REGISTRY_PASSWORD
# without credentials the shim is refused, and says by whom
run_kiln predict "$TR/rw/model:1" --runtime bwrap -i name=big
expect_rc 1
expect_contains "$ERR" "cannot fetch the weights from $TR/rw/model"
run_kiln predict "$TR/rw/model:1" --runtime bwrap -e "KILN_REGISTRY_USERNAME=$REGISTRY_USER" \
	-e "KILN_REGISTRY_PASSWORD=$TOKEN_REGISTRY_PASSWORD" -i name=big
expect_rc 0
expect_eq "$OUT" "$BIG" "the prediction"
expect_not_contains "$OUT$ERR" "$TOKEN_REGISTRY_PASSWORD"

# ---------------------------------------------------------------- bad input

t_case "no source for weights the cache lacks: setup fails and says to set KILN_WEIGHTS_SOURCE"
fresh_cold nosource
run_kiln predict "$REF" --runtime bwrap -e "KILN_WEIGHTS_SOURCE=" -i name=big
expect_rc 1
expect_contains "$ERR" "set KILN_WEIGHTS_SOURCE to the repository that holds them"

t_case "a repository without the weights: setup fails naming the blob and the registry's answer"
fresh_cold wrongrepo
run_kiln predict "$REF" --runtime bwrap -e "KILN_WEIGHTS_SOURCE=$R/other/model" -i name=big
expect_rc 1
expect_contains "$ERR" "cannot fetch the weights from $R/other/model"
expect_contains "$ERR" "/src/models/"

t_case "KILN_WEIGHTS_PARALLEL that is no count from 1 to 64: the shim stops naming it, nothing fetched"
for v in lots 0 65 -1; do
	fresh_cold parallel
	run_kiln predict "$REF" --runtime bwrap -e "KILN_WEIGHTS_SOURCE=$R/rw/model" -e "KILN_WEIGHTS_PARALLEL=$v" -i name=big
	expect_rc 1
	expect_contains "$ERR" "KILN_WEIGHTS_PARALLEL=$v: "
	[ ! -e "$KILN_HOME/weights/sha256/$BIG" ] || t_fail "KILN_WEIGHTS_PARALLEL=$v: the weights were fetched"
done

t_case "an image whose weights label is no valid list: pull and predict refuse it naming the entry"
export KILN_HOME=$T_WORK/home-badlabel
rm -rf "$T_WORK/badlabel"
skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$T_WORK/badlabel:1" >/dev/null || t_fail "skopeo copy"
label=$(skopeo inspect --config "oci:$T_WORK/badlabel:1" | json 'j["config"]["Labels"]["dev.kiln.weights"]')
bad=$(python3 -c 'import json,sys; w=json.loads(sys.argv[1]); w[0]["path"]="../../etc/passwd"; print(json.dumps(w))' "$label")
umoci config --image "$T_WORK/badlabel:1" --tag 2 --config.label "dev.kiln.weights=$bad" || t_fail "umoci config"
skopeo copy -q --dest-tls-verify=false "oci:$T_WORK/badlabel:2" "docker://$R/rw/badlabel:1" >/dev/null || t_fail "skopeo push"
run_kiln pull "$R/rw/badlabel:1"
expect_rc 1
expect_contains "$ERR" "the image's label dev.kiln.weights: entry 0 has no absolute 'path' without '..'"
expect_store_consistent
run_kiln predict "$R/rw/badlabel:1" --runtime bwrap -i name=big
expect_rc 1
expect_contains "$ERR" "entry 0 has no absolute 'path' without '..'"

t_case "--runtime native cannot run registry weights: a clear error"
export KILN_HOME=$T_WORK/home-pull
run_kiln predict "$REF" --runtime native -i name=big
expect_rc 1
expect_contains "$ERR" "runs only under bubblewrap"

t_case "serve.weights and --weights take image or registry only"
mkdir -p "$T_WORK/bad"
cp "$P/predict.py" "$T_WORK/bad/"
printf 'run: predict.py:Predictor\nserve:\n  weights: s3\n' >"$T_WORK/bad/kiln.yaml"
run_kiln build "$T_WORK/bad"
expect_rc 1
expect_contains "$ERR" "kiln.yaml:3:12: serve.weights: expected 'image' or 'registry', got 's3'"
run_kiln build "$P" --weights lfs
expect_rc 2
expect_contains "$ERR" "--weights: expected 'image' or 'registry', got 'lfs'"

t_case "kiln dockerfile says that a Dockerfile puts the weights in the image"
run_kiln dockerfile "$P"
expect_rc 0
expect_contains "$ERR" "kiln.yaml:5:12: serve.weights: a Dockerfile has no registry weights"
expect_contains "$OUT" "models/big.bin"

t_case "--weights image overrides the manifest: the weights are layers again (two small files: one bundle)"
export KILN_HOME=$T_WORK/home
run_kiln build "$P" -t "$R/rw/model:image" --weights image --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["weights"]')" "image" "the report's weights"
expect_eq "$(echo "$OUT" | json 'len([l for l in j["layers"] if l["kind"] == "weights" and l["media_type"] == "application/vnd.oci.image.layer.v1.tar"])')" \
	"1" "weight layers"

t_case "an OCI layout of a registry-weights image holds the weights and their artifact"
run_kiln build "$P" -t "$REF" --output "oci:$T_WORK/out:1"
expect_rc 0
expect_file_same "$P/models/big.bin" "$T_WORK/out/blobs/sha256/$BIG"
expect_eq "$(json '[m.get("artifactType") for m in j["manifests"]]' <"$T_WORK/out/index.json")" \
	'[null, "application/vnd.kiln.weights.v1"]' "the layout's index"

t_case "kiln prune keeps the weight blobs of a tagged image"
export KILN_HOME=$T_WORK/home-pull
run_kiln pull "$REF"
run_kiln prune
expect_rc 0
[ -f "$KILN_HOME/blobs/sha256/$BIG" ] || t_fail "prune removed the weight blob"
expect_store_consistent

t_finish
