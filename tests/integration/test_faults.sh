#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The fault matrix: kiln push, kiln pull and the shim's file downloads through a fault-injecting proxy
# (tests/fixtures/registry/fault_proxy.py) in front of Debian's docker-registry on loopback. For each fault (a
# connection dropped mid-body, 500s, 429 with Retry-After, a stall past the stall limit, a truncated answer),
# each either completes with exact bytes, checked by digest against the registry's content, or, when the
# fault does not stop, fails with a message naming what failed; then a rerun without the fault completes.
# Also: a layer whose bytes do not match its digest, a full disk, and credentials through retries.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
source "$(dirname "$0")/shim_lib.sh"

MiB=$((1024 * 1024))
export KILN_HTTP_STALL_SECONDS=2 # kiln and the shim give up on a connection silent this long
registry_start plain || exit 1
R=$PLAIN_REGISTRY
fault_proxy_start >/dev/null || exit 1
F=$FAULTY
N=0

# fired: how many times the proxy's faults fired since they were last set.
fired() { fault_proxy_state | json 'sum(f["fired"] for f in j["faults"])'; }

# expect_fired: the faults fired at least once (else the case tried nothing).
expect_fired() { [ "$(fired)" -ge 1 ] || t_fail "the fault never fired"; }

# ---------------------------------------------------------------- kiln push

# push_through FAULT...: a new project (3 MiB of weights, so an upload takes several reads) built and pushed
# through the proxy with FAULT set. Sets OUT, ERR, RC and $TAG (the pushed reference in $R).
push_through() {
	N=$((N + 1))
	local p=$T_WORK/push$N
	make_project "$p" 'weights: ["w/*"]' w/a.bin $((3 * MiB))
	run_kiln build "$p" -t "$F/faults/push:$N" --quiet
	expect_rc 0
	TAG=$R/faults/push:$N
	fault_proxy_set "$@" >/dev/null
	run_kiln push "$F/faults/push:$N" --json
}

# expect_pushed: the push succeeded, the registry's manifest is the one kiln pushed, and skopeo copies the
# image out of the registry, checking every blob against its digest.
expect_pushed() {
	expect_rc 0
	local want got
	want=$(echo "$OUT" | json 'j["digest"]')
	got=$(skopeo inspect --tls-verify=false "docker://$TAG" | json 'j["Digest"]')
	expect_eq "$got" "$want" "manifest digest in the registry"
	skopeo copy -q --src-tls-verify=false "docker://$TAG" "oci:$T_WORK/copy$N:x" >/dev/null 2>&1 ||
		t_fail "skopeo cannot copy $TAG"
}

t_case "push: a connection dropped mid-upload is retried; the image in the registry is whole"
push_through "drop_mid_body:1048576:1"
expect_fired
expect_pushed

t_case "push: 500 twice on uploads, then it completes"
push_through "status:500:2;method=POST|PATCH|PUT"
expect_fired
expect_pushed

t_case "push: 429 with Retry-After on the manifest, then it completes"
push_through "status:429:1:1;method=PUT;path=/manifests/"
expect_fired
expect_pushed

t_case "push: a stall past the stall limit on an upload, then it completes"
push_through "stall:8:1;method=PATCH|PUT;path=/blobs/uploads/"
expect_fired
expect_pushed

t_case "push: 503 on every blob upload fails naming the blob, and a rerun completes"
push_through "status:503:*:0;method=PATCH|PUT;path=/blobs/uploads/"
expect_rc 1
expect_contains "$ERR" "gave up after 5 retries"
expect_contains "$ERR" "503"
expect_contains "$ERR" "sha256:"
fault_proxy_set none >/dev/null
run_kiln push "$F/faults/push:$N" --json
expect_pushed

# ---------------------------------------------------------------- kiln pull

# The image pulled: the first one pushed above, its manifest and its weight layer as the registry has them.
IMG=faults/push:1
MAN=$(skopeo inspect --raw --tls-verify=false "docker://$R/$IMG")
MDIGEST=sha256:$(printf '%s' "$MAN" | sha256sum | cut -d' ' -f1)
LAYER=$(echo "$MAN" | json 'max(j["layers"], key=lambda l: l["size"])["digest"]')

# pull_through FAULT...: kiln pull $IMG through the proxy with FAULT set, into a fresh store. Sets OUT, ERR, RC.
pull_through() {
	N=$((N + 1))
	export KILN_HOME=$T_WORK/home-pull$N
	fault_proxy_set "$@" >/dev/null
	run_kiln pull "$F/$IMG" --json
}

# expect_pulled: the pull succeeded with the registry's manifest digest, the store holds every blob under its
# digest and the weight layer is there.
expect_pulled() {
	expect_rc 0
	expect_eq "$(echo "$OUT" | json 'j["digest"]')" "$MDIGEST" "digest pulled"
	expect_store_consistent
	[ -f "$KILN_HOME/blobs/sha256/${LAYER#sha256:}" ] || t_fail "the weight layer is not in the store"
}

t_case "pull: a layer cut off mid-body is resumed; the store holds it whole"
pull_through "drop_mid_response:1000000:1;path=${LAYER#sha256:}"
expect_fired
expect_pulled

t_case "pull: 500 on the manifest and twice on blobs, then it completes"
pull_through "status:500:1;method=GET;path=/manifests/" "status:500:2;method=GET;path=/blobs/"
expect_fired
expect_pulled

t_case "pull: 429 with Retry-After on a blob, then it completes"
pull_through "status:429:1:1;method=GET;path=/blobs/"
expect_fired
expect_pulled

t_case "pull: a stall past the stall limit on a blob, then it completes"
pull_through "stall:8:1;method=GET;path=/blobs/"
expect_fired
expect_pulled

t_case "pull: 503 on the weight layer every time fails naming the blob, keeps nothing partial; a rerun completes"
pull_through "status:503:*:0;method=GET;path=${LAYER#sha256:}"
expect_rc 1
expect_contains "$ERR" "gave up after 5 retries"
expect_contains "$ERR" "$LAYER"
expect_store_consistent
[ ! -e "$KILN_HOME/blobs/sha256/${LAYER#sha256:}" ] || t_fail "the layer is in the store"
fault_proxy_set none >/dev/null
run_kiln pull "$F/$IMG" --json
expect_pulled

t_case "pull onto a full disk: a clear error, a consistent store, kiln prune recovers the space, then it completes"
FULL=$T_WORK/full
mkdir -p "$FULL"
# room for the runtime layer and 2 MiB more: the 3 MiB weight layer does not fit
if mount -t tmpfs -o size=$(($(runtime_mib) + 2))m tmpfs "$FULL" 2>/dev/null; then
	t_defer "umount '$FULL'"
	export KILN_HOME=$FULL/home
	fault_proxy_set none >/dev/null
	run_kiln pull "$F/$IMG"
	expect_rc 1
	expect_contains "$ERR" "No space left on device"
	expect_store_consistent
	expect_store_tmp_empty
	used=$(df -k --output=used "$FULL" | tail -1)
	run_kiln prune --all # a failed pull's blobs are recent
	expect_rc 0
	after=$(df -k --output=used "$FULL" | tail -1)
	[ "$after" -lt $((used - 1024)) ] || t_fail "kiln prune left ${after} KiB used of ${used} KiB"
	expect_store_consistent
	mount -o remount,size=$(($(runtime_mib) + 16))m "$FULL" || t_fail "cannot grow the tmpfs"
	run_kiln pull "$F/$IMG" --json
	expect_pulled
else
	t_fail "cannot mount a tmpfs to fill (the tests run as root)"
fi
export KILN_HOME=$T_WORK/home

t_case "a layer whose bytes do not match its digest: pull and predict refuse it, naming it, and keep nothing"
export KILN_HOME=$T_WORK/home-corrupt
fault_proxy_set "corrupt:1000:*;path=${LAYER#sha256:}" >/dev/null
run_kiln pull "$F/$IMG"
expect_rc 1
expect_contains "$ERR" "cannot get blob ${LAYER:0:19}"
expect_contains "$ERR" "the registry sent content with digest sha256:"
expect_fired
[ ! -e "$KILN_HOME/blobs/sha256/${LAYER#sha256:}" ] || t_fail "the layer is in the store"
expect_store_consistent
expect_store_tmp_empty
run_kiln predict "$F/$IMG" --runtime native
expect_rc 1
expect_contains "$ERR" "the registry sent content with digest sha256:"
[ ! -e "$KILN_HOME/blobs/sha256/${LAYER#sha256:}" ] || t_fail "the layer is in the store after predict"
expect_store_consistent
fault_proxy_set none >/dev/null
run_kiln predict "$F/$IMG" --runtime native
expect_rc 0
expect_contains "$OUT" "ok"
export KILN_HOME=$T_WORK/home

# ---------------------------------------------------------------- the shim's file downloads

t_case "the shim's file downloads: faults on the way, the file arrives whole or the prediction fails naming it"
cat >"$T_WORK/digest.py" <<'EOF'
import hashlib

from cog import BasePredictor, Path


class Predictor(BasePredictor):
    def predict(self, f: Path) -> str:
        return "sha256:" + hashlib.sha256(open(f, "rb").read()).hexdigest()
EOF
DIGEST_P=$(py_project digest digest.py Predictor)
start "$DIGEST_P" -- --allow-private-urls # the proxy is on loopback
wait_health READY
BLOB_URL=http://$F/v2/faults/push/blobs/$LAYER

# download_through FAULT...: a prediction whose file input is the weight layer's URL, through the proxy with
# FAULT set. Sets CODE and BODY.
download_through() {
	fault_proxy_set "$@" >/dev/null
	post "{\"input\": {\"f\": \"$BLOB_URL\"}}" -m 60
}

# expect_downloaded: the prediction succeeded on the file's exact bytes.
expect_downloaded() {
	expect_eq "$CODE" 200 "status ($BODY)"
	expect_eq "$(field 'j["status"]')" succeeded "prediction ($BODY)"
	expect_eq "$(field 'j["output"]')" "$LAYER" "digest of the file the predictor read"
}

for fault in "drop_mid_response:1000000:1" "status:500:2;method=GET" "status:429:1:1;method=GET" \
	"stall:8:1;method=GET" "drop_mid_response:0:2"; do
	download_through "$fault"
	expect_fired
	expect_downloaded
done

t_case "the shim's file downloads: 503 or a stall every time is refused naming the input and the URL; then it completes"
# (the shim refuses an input it cannot fetch as invalid: 422, the reason in the detail's msg)
download_through "status:503:*:0;method=GET"
expect_eq "$CODE" 422 "status ($BODY)"
expect_eq "$(field 'j["detail"][0]["msg"]')" "input 'f': cannot download '$BLOB_URL': HTTP 503 (gave up after 4 retries)"
download_through "stall:8:*;method=GET"
expect_eq "$CODE" 422 "status ($BODY)"
expect_contains "$(field 'j["detail"][0]["msg"]')" "input 'f': cannot download '$BLOB_URL': Operation too slow"
expect_contains "$(field 'j["detail"][0]["msg"]')" "(gave up after 4 retries)"
download_through none
expect_downloaded

# ---------------------------------------------------------------- credentials

t_case "credentials through faults: push and pull retry with them, and print them nowhere (--json, errors)"
registry_start tls || exit 1
fault_proxy_start --upstream "$TLS_REGISTRY" >/dev/null || exit 1
S=$FAULTY
PW=$TLS_REGISTRY_PASSWORD
BASIC=$(printf 'kiln:%s' "$PW" | base64 -w0)
# every way a secret could show: the password, the Basic header's value, and the password's first half
secrets_absent() { # TEXT
	expect_not_contains "$1" "$PW"
	expect_not_contains "$1" "$BASIC"
	expect_not_contains "$1" "${PW:0:$((${#PW} / 2))}"
}
export KILN_REGISTRY_USERNAME=kiln KILN_REGISTRY_PASSWORD=$PW
make_project "$T_WORK/secret" 'weights: ["w/*"]' w/a.bin $((3 * MiB))
run_kiln build "$T_WORK/secret" -t "$S/sec/model:1" --quiet
fault_proxy_set "status:500:2;method=POST|PATCH|PUT" "drop_mid_body:1048576:1" "status:429:1:0;method=HEAD" >/dev/null
run_kiln push "$S/sec/model:1" --ca-file "$TLS_REGISTRY_CA" --json
expect_rc 0
expect_fired
secrets_absent "$OUT$ERR"
export KILN_HOME=$T_WORK/home-sec
fault_proxy_set "status:503:*:0;method=GET;path=/blobs/" >/dev/null
run_kiln pull "$S/sec/model:1" --ca-file "$TLS_REGISTRY_CA" --json
expect_rc 1
expect_contains "$ERR" "gave up after 5 retries"
secrets_absent "$OUT$ERR"
fault_proxy_set none >/dev/null
run_kiln pull "$S/sec/model:1" --ca-file "$TLS_REGISTRY_CA" --json
expect_rc 0
secrets_absent "$OUT$ERR"
export KILN_REGISTRY_PASSWORD=not-the-password
run_kiln pull "$S/sec/model:1" --ca-file "$TLS_REGISTRY_CA"
expect_rc 1
expect_contains "$ERR" "authentication failed"
expect_not_contains "$ERR" "not-the-password"
unset KILN_REGISTRY_USERNAME KILN_REGISTRY_PASSWORD
export KILN_HOME=$T_WORK/home

t_finish
