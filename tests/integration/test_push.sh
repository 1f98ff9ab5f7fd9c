#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln push, pull and login against Debian's docker-registry on loopback (plain HTTP, TLS + htpasswd, token
# auth), read back with skopeo and umoci; faults injected by a proxy; bad input.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"

MiB=$((1024 * 1024))
export KILN_HTTP_STALL_SECONDS=3
P=$T_WORK/project
mkdir -p "$P/models"
make_file "$P/models/a.bin" $((65 * MiB))
make_file "$P/models/b.bin" $((66 * MiB))
make_file "$P/models/small.bin" $((2 * MiB))
printf 'class Predictor:\n    def predict(self, x: str) -> str:\n        return x\n' >"$P/predict.py"
printf 'run: predict.py:Predictor\nweights: ["models/*"]\n' >"$P/kiln.yaml"

registry_start plain || exit 1
R=$PLAIN_REGISTRY

blob_actions() { echo "$1" | json '" ".join(b["action"] for b in j["blobs"])'; }

t_case "push uploads every blob, and skopeo and umoci read the image back byte-identical"
run_kiln build "$P" -t "$R/team/model:v1" --quiet
expect_rc 0
run_kiln push "$R/team/model:v1" --json
expect_rc 0
PUSH1=$OUT
expect_eq "$(blob_actions "$PUSH1")" "uploaded uploaded uploaded uploaded uploaded uploaded" "actions (3 weights, runtime, code, config)"
DIGEST=$(echo "$PUSH1" | json 'j["digest"]')
SK=$(skopeo inspect --tls-verify=false "docker://$R/team/model:v1" 2>&1) || t_fail "skopeo inspect: $SK"
expect_eq "$(echo "$SK" | json 'j["Digest"]')" "$DIGEST" "digest in the registry"
S=$(skopeo copy --src-tls-verify=false "docker://$R/team/model:v1" "oci:$T_WORK/back:v1" 2>&1) || t_fail "skopeo copy: $S"
U=$(umoci unpack --image "$T_WORK/back:v1" "$T_WORK/bundle" 2>&1) || t_fail "umoci unpack: $U"
for f in models/a.bin models/b.bin models/small.bin predict.py; do
	expect_file_same "$P/$f" "$T_WORK/bundle/rootfs/src/$f"
done

t_case "a second push after a code-only change uploads only the code layer and the config"
echo "# v2" >>"$P/predict.py"
run_kiln build "$P" -t "$R/team/model:v2" --push --json
expect_rc 0
expect_eq "$(echo "$OUT" | json '" ".join(b["action"] for b in j["push"]["blobs"])')" "exists exists exists exists uploaded uploaded" "actions"
sent=$(echo "$OUT" | json 'j["push"]["bytes_sent"]')
[ "$sent" -lt $((MiB)) ] || t_fail "bytes_sent $sent after a code-only change"

t_case "a push to another repository of the same registry mounts instead of uploading"
run_kiln build "$P" -t "$R/other/model:v2" --quiet
run_kiln push "$R/other/model:v2" --json
expect_rc 0
expect_eq "$(blob_actions "$OUT")" "mounted mounted mounted mounted mounted mounted" "actions"
expect_contains "$(echo "$OUT" | json 'j["blobs"][0]["from"]')" "$R/team/model"
expect_eq "$(skopeo inspect --tls-verify=false "docker://$R/other/model:v2" | json 'j["Digest"]')" "$(echo "$OUT" | json 'j["digest"]')" "digest"

t_case "kiln pull fetches an image that skopeo pushed"
mkdir -p "$T_WORK/sk"
umoci init --layout "$T_WORK/sk/l" && umoci new --image "$T_WORK/sk/l:t" &&
	umoci insert --image "$T_WORK/sk/l:t" "$P/predict.py" /app/predict.py >/dev/null || t_fail "umoci could not make an image"
skopeo copy --dest-tls-verify=false "oci:$T_WORK/sk/l:t" "docker://$R/skopeo/img:1" >/dev/null 2>&1 || t_fail "skopeo push"
run_kiln pull "$R/skopeo/img:1" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["digest"]')" "$(skopeo inspect --tls-verify=false "docker://$R/skopeo/img:1" | json 'j["Digest"]')" "digest"
expect_eq "$(echo "$OUT" | json 'j["fetched"]')" "1" "layers fetched"
expect_store_consistent
run_kiln inspect "$R/skopeo/img:1" --json
expect_rc 0

t_case "a registry base is not downloaded to push: its layers are mounted from the base's repository"
B=$T_WORK/based
make_project "$B" "base: $R/skopeo/img:1"
export KILN_HOME=$T_WORK/home-base # a store that never held the base's layers
run_kiln build "$B" -t "$R/app/based:1" --push --json
expect_rc 0
expect_eq "$(echo "$OUT" | json '" ".join(l["kind"] for l in j["layers"])')" "base runtime code" "layer kinds"
expect_eq "$(echo "$OUT" | json '" ".join(b["action"] for b in j["push"]["blobs"])')" "mounted uploaded uploaded uploaded" "actions (base, runtime (this store never pushed it), code, config)"
U=$(skopeo copy --src-tls-verify=false "docker://$R/app/based:1" "oci:$T_WORK/based-copy:1" 2>&1 && umoci unpack --image "$T_WORK/based-copy:1" "$T_WORK/bundle-b" 2>&1) || t_fail "read back: $U"
expect_file_same "$P/predict.py" "$T_WORK/bundle-b/rootfs/app/predict.py"
expect_file_same "$B/p.py" "$T_WORK/bundle-b/rootfs/src/p.py"
run_kiln build "$B" -t based:local --output "oci:$T_WORK/based-out:1" --quiet
expect_rc 0
expect_store_consistent
export KILN_HOME=$T_WORK/home

t_case "a registry base in another registry is copied registry to registry, not through the disk"
SAVED_REGISTRY=$REGISTRY
registry_start plain SECOND || exit 1
R2=$SECOND_REGISTRY
export REGISTRY=$SAVED_REGISTRY
export KILN_HOME=$T_WORK/home-copy
run_kiln build "$B" -t "$R2/app/copied:1" --push --json
expect_rc 0
expect_eq "$(echo "$OUT" | json '" ".join(b["action"] for b in j["push"]["blobs"])')" "copied uploaded uploaded uploaded" "actions (base, runtime, code, config)"
base_layer=$(echo "$OUT" | json 'j["push"]["blobs"][0]["digest"].split(":")[1]')
[ ! -e "$KILN_HOME/blobs/sha256/$base_layer" ] || t_fail "the base layer was downloaded into the store"
U=$(skopeo copy --src-tls-verify=false "docker://$R2/app/copied:1" "oci:$T_WORK/copied:1" 2>&1 && umoci unpack --image "$T_WORK/copied:1" "$T_WORK/bundle-c" 2>&1) || t_fail "read back: $U"
expect_file_same "$P/predict.py" "$T_WORK/bundle-c/rootfs/app/predict.py"
export KILN_HOME=$T_WORK/home

t_case "faults: dropped connections, 500s, 429 with Retry-After and stalls; the push completes"
fault_proxy_start "drop_mid_body:1048576:2" "status:500:2;method=HEAD|POST" "status:429:1:1;method=PUT" "stall:6:1;method=PATCH" >/dev/null || exit 1
F=$FAULTY
run_kiln build "$P" -t "$F/faulty/model:v1" --push --json
expect_rc 0
fired=$(fault_proxy_state | json 'sum(f["fired"] for f in j["faults"])')
[ "$fired" -ge 4 ] || t_fail "only $fired faults fired"
D=$(skopeo inspect --tls-verify=false "docker://$R/faulty/model:v1" | json 'j["Digest"]')
expect_eq "$D" "$(echo "$OUT" | json 'j["digest"]')" "digest in the registry"
S=$(skopeo copy --src-tls-verify=false "docker://$R/faulty/model:v1" "oci:$T_WORK/faulty:v1" 2>&1 && umoci unpack --image "$T_WORK/faulty:v1" "$T_WORK/bundle-f" 2>&1) || t_fail "read back: $S"
expect_file_same "$P/models/a.bin" "$T_WORK/bundle-f/rootfs/src/models/a.bin"
expect_file_same "$P/models/b.bin" "$T_WORK/bundle-f/rootfs/src/models/b.bin"
fault_proxy_set none >/dev/null

t_case "a push killed half-way, run again, uploads only what is missing"
Q=$T_WORK/killed
# d.bin takes two PATCHes (64 MiB chunks); e.bin's first PATCH stalls until the kill
make_project "$Q" 'weights: ["w/*"]' w/d.bin $((65 * MiB)) w/e.bin $((66 * MiB))
run_kiln build "$Q" -t "$F/killed/model:v1" --quiet
fault_proxy_set "stall:60:1;method=PATCH;every=3" >/dev/null
"$KILN" push "$F/killed/model:v1" -j 1 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 300); do
	[ "$(fault_proxy_state | json 'j["faults"][0]["fired"]')" == "1" ] && break
	sleep 0.1
done
kill -KILL $pid
wait $pid 2>/dev/null
fault_proxy_set none >/dev/null
run_kiln push "$F/killed/model:v1" -j 1 --json
expect_rc 0
expect_eq "$(blob_actions "$OUT")" "exists uploaded mounted uploaded uploaded" "actions after the kill (d.bin, e.bin, runtime, code, config)"

t_case "bad input: unknown host, malformed reference, no image to push, garbage and huge manifests"
run_kiln push no-such-host.invalid:5000/x/y:1
expect_rc 1
run_kiln build "$P" -t no-such-host.invalid:5000/x/y:1 --quiet
run_kiln push no-such-host.invalid:5000/x/y:1
expect_rc 1
expect_contains "$ERR" "no-such-host.invalid"
run_kiln push 'UPPER/Case:1'
expect_rc 1
expect_contains "$ERR" "invalid reference 'UPPER/Case:1'"
run_kiln push -C "$P"
expect_rc 2
expect_contains "$ERR" "has no 'image'"
fault_proxy_set "body:garbage:1" >/dev/null
run_kiln pull "$F/team/model:v1"
expect_rc 1
expect_contains "$ERR" "not JSON"
fault_proxy_set "body:huge:1" >/dev/null
run_kiln pull "$F/team/model:v1"
expect_rc 1
expect_contains "$ERR" "too large"
fault_proxy_set none >/dev/null
run_kiln pull "$R/team/nothere:1"
expect_rc 1
expect_contains "$ERR" "team/nothere"

t_case "a weight file changed after the build is refused at push, naming the file"
C=$T_WORK/changed
make_project "$C" 'weights: ["w/*"]' w/m.bin $((65 * MiB))
run_kiln build "$C" -t "$R/changed/model:1" --quiet
expect_rc 0
printf 'x' | dd of="$C/w/m.bin" bs=1 seek=1000 conv=notrunc 2>/dev/null
run_kiln push "$R/changed/model:1"
expect_rc 1
expect_contains "$ERR" "'$C/w/m.bin' changed since the image was built (run 'kiln build' again)"
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://$R/v2/changed/model/manifests/1")" "404" "no manifest pushed"

registry_start tls || exit 1
T=$TLS_REGISTRY

t_case "TLS + htpasswd: login with --password-stdin, push, logout"
OUT=$(echo "wrong" | "$KILN" login "$T" -u kiln --password-stdin --ca-file "$TLS_REGISTRY_CA" 2>&1)
RC=$?
expect_rc 1
expect_contains "$OUT" "authentication failed"
expect_not_contains "$OUT" "wrong"
OUT=$(echo "$TLS_REGISTRY_PASSWORD" | "$KILN" login "$T" -u kiln --password-stdin --ca-file "$TLS_REGISTRY_CA" 2>&1)
RC=$?
expect_rc 0
expect_eq "$(stat -c %a "$HOME/.docker/config.json")" "600" "config.json mode"
run_kiln build "$P" -t "$T/secure/model:v1" --push --ca-file "$TLS_REGISTRY_CA" --json
expect_rc 0
expect_not_contains "$OUT$ERR" "$TLS_REGISTRY_PASSWORD"
SK=$(skopeo inspect --cert-dir "$TLS_REGISTRY_CERT_DIR" --creds "kiln:$TLS_REGISTRY_PASSWORD" "docker://$T/secure/model:v1" 2>&1) || t_fail "skopeo: $SK"
expect_eq "$(echo "$SK" | json 'j["Digest"]')" "$(echo "$OUT" | json 'j["digest"]')" "digest"
run_kiln push "$T/secure/model:v1"
expect_rc 1
expect_contains "$ERR" "certificate"
run_kiln logout "$T"
expect_rc 0
run_kiln push "$T/secure/model:v1" --ca-file "$TLS_REGISTRY_CA"
expect_rc 1
expect_contains "$ERR" "kiln login"

registry_start token || exit 1
K=$TOKEN_REGISTRY

t_case "token auth: credentials from the environment, one token per scope reused, read-only user refused"
run_kiln build "$P" -t "$K/tok/model:v1" --quiet
OUT=$(KILN_REGISTRY_USERNAME=kiln KILN_REGISTRY_PASSWORD=$TOKEN_REGISTRY_PASSWORD "$KILN" push "$K/tok/model:v1" --json 2>"$T_WORK/err")
RC=$?
ERR=$(cat "$T_WORK/err")
expect_rc 0
tokens=$(curl -s "http://$TOKEN_TOKEN_SERVER/stats" | json 'j["tokens"]')
[ "$tokens" -le 3 ] || t_fail "$tokens tokens asked for one push: tokens are not reused"
SK=$(skopeo inspect --tls-verify=false --creds "kiln:$TOKEN_REGISTRY_PASSWORD" "docker://$K/tok/model:v1" 2>&1) || t_fail "skopeo: $SK"
OUT=$(KILN_REGISTRY_USERNAME=reader KILN_REGISTRY_PASSWORD=$TOKEN_REGISTRY_READER_PASSWORD "$KILN" push "$K/tok/model:v1" 2>&1)
RC=$?
expect_rc 1
expect_contains "$OUT" "denied"
expect_not_contains "$OUT" "$TOKEN_REGISTRY_READER_PASSWORD"
OUT=$(KILN_REGISTRY_USERNAME=reader KILN_REGISTRY_PASSWORD=$TOKEN_REGISTRY_READER_PASSWORD KILN_HOME=$T_WORK/h3 "$KILN" pull "$K/tok/model:v1" 2>&1)
RC=$?
expect_rc 0

t_finish
