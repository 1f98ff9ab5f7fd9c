#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln pull against hostile and unreliable registries on loopback: image indexes (OCI and Docker lists,
# several platforms) pulled and used as a base, blobs cut off mid-body and resumed with Range, and a registry
# port that ignores the TLS handshake.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"

MiB=$((1024 * 1024))
export KILN_HTTP_STALL_SECONDS=3
registry_start plain || exit 1
R=$PLAIN_REGISTRY

# Make an image with one layer holding FILE at /app/NAME and copy it to docker://DEST; echoes nothing.
make_image() { # DEST FILE NAME
	local l=$T_WORK/layouts/$RANDOM$RANDOM
	mkdir -p "$(dirname "$l")"
	umoci init --layout "$l" && umoci new --image "$l:t" &&
		umoci insert --image "$l:t" "$2" "/app/$3" >/dev/null &&
		skopeo copy -q --dest-tls-verify=false "oci:$l:t" "docker://$1" >/dev/null 2>&1
}

# The digest and size of the manifest REPO:TAG in $R, as "DIGEST SIZE".
manifest_of() { # REPO TAG
	local f=$T_WORK/manifest.$$
	curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' -o "$f" "http://$R/v2/$1/manifests/$2" || return 1
	echo "sha256:$(sha256sum "$f" | cut -d' ' -f1) $(stat -c %s "$f")"
}

# PUT an index of MEDIA_TYPE as REPO:TAG; each entry is "OS/ARCH DIGEST SIZE".
put_index() { # REPO TAG MEDIA_TYPE ENTRY...
	local repo=$1 tag=$2 mt=$3
	shift 3
	local body
	body=$(python3 - "$mt" "$@" <<'EOF'
import json, sys
mt, entries = sys.argv[1], sys.argv[2:]
ms = []
for e in entries:
    plat, digest, size = e.split()
    os_, arch = plat.split("/")
    ms.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": int(size),
               "platform": {"os": os_, "architecture": arch}})
print(json.dumps({"schemaVersion": 2, "mediaType": mt, "manifests": ms}))
EOF
)
	curl -sf -X PUT -H "Content-Type: $mt" --data-binary "$body" "http://$R/v2/$repo/manifests/$tag" >/dev/null
}

OCI_INDEX=application/vnd.oci.image.index.v1+json
DOCKER_LIST=application/vnd.docker.distribution.manifest.list.v2+json
mkdir -p "$T_WORK/files"
echo amd64 >"$T_WORK/files/amd64.txt"
echo arm64 >"$T_WORK/files/arm64.txt"
make_image "$R/multi/img:amd64" "$T_WORK/files/amd64.txt" which.txt || t_fail "could not make the amd64 image"
make_image "$R/multi/img:arm64" "$T_WORK/files/arm64.txt" which.txt || t_fail "could not make the arm64 image"
read -r AMD AMD_SIZE <<<"$(manifest_of multi/img amd64)"
read -r ARM ARM_SIZE <<<"$(manifest_of multi/img arm64)"

t_case "an OCI index with one linux/amd64 entry is pulled: the entry's image, tagged by the index's name"
put_index multi/img oci "$OCI_INDEX" "linux/amd64 $AMD $AMD_SIZE" || t_fail "could not push the index"
run_kiln pull "$R/multi/img:oci" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["digest"]')" "$AMD" "digest pulled"
expect_eq "$(echo "$OUT" | json 'j["fetched"]')" "1" "layers fetched"
expect_store_consistent
run_kiln inspect "$R/multi/img:oci" --json
expect_rc 0

t_case "a Docker manifest list is pulled the same way"
put_index multi/img docker "$DOCKER_LIST" "linux/amd64 $AMD $AMD_SIZE" || t_fail "could not push the list"
run_kiln pull "$R/multi/img:docker" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["digest"]')" "$AMD" "digest pulled"

t_case "an index of several platforms: linux/amd64 (not the first entry) by default, --platform picks another"
put_index multi/img several "$OCI_INDEX" "linux/arm64 $ARM $ARM_SIZE" "linux/amd64 $AMD $AMD_SIZE" ||
	t_fail "could not push the index"
run_kiln pull "$R/multi/img:several" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["digest"]')" "$AMD" "digest pulled by default"
run_kiln pull "$R/multi/img:several" --platform linux/arm64 --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["digest"]')" "$ARM" "digest pulled for linux/arm64"
run_kiln pull "$R/multi/img:several" --platform linux/s390x
expect_rc 1
expect_contains "$ERR" "has no image for linux/s390x"

t_case "a build whose base: names an index takes the linux/amd64 image's layer"
B=$T_WORK/based
make_project "$B" "base: $R/multi/img:several"
KILN_HOME=$T_WORK/home-base run_kiln build "$B" -t based:1 --output "oci:$T_WORK/based-out:1" --json
expect_rc 0
expect_eq "$(echo "$OUT" | json '" ".join(l["kind"] for l in j["layers"])')" "base runtime code" "layer kinds"
U=$(umoci unpack --image "$T_WORK/based-out:1" "$T_WORK/bundle-based" 2>&1) || t_fail "umoci unpack: $U"
expect_file_same "$T_WORK/files/amd64.txt" "$T_WORK/bundle-based/rootfs/app/which.txt"

# ---------------------------------------------------------------- blobs cut off mid-body

make_file "$T_WORK/files/big.bin" $((3 * MiB))
make_image "$R/cut/img:1" "$T_WORK/files/big.bin" big.bin || t_fail "could not make the image with a large layer"
LAYER=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$R/v2/cut/img/manifests/1" |
	json 'j["layers"][0]["digest"]')
LHEX=${LAYER#sha256:}
curl -sf -o "$T_WORK/layer.want" "http://$R/v2/cut/img/blobs/$LAYER" || t_fail "could not read the layer back"
fault_proxy_start >/dev/null || exit 1
F=$FAULTY

# Pull $F/cut/img:1 into a fresh store named NAME; sets OUT, ERR, RC (KILN_HOME is that store afterwards).
pull_fresh() { # NAME
	export KILN_HOME=$T_WORK/home-$1
	run_kiln pull "$F/cut/img:1" --json
}

# The Range headers the proxy saw on GETs of the layer, space-separated.
layer_ranges() {
	fault_proxy_state | json '" ".join(r["range"] for r in j["ranges"] if "'"$LHEX"'" in r["path"] and r["method"] == "GET")'
}

# The store holds the layer whole, named by its digest, and nothing half-written.
expect_layer_stored() {
	expect_store_consistent
	expect_file_same "$T_WORK/layer.want" "$KILN_HOME/blobs/sha256/$LHEX"
}

t_case "a layer cut off mid-body twice is resumed with Range from the bytes already written"
fault_proxy_set "drop_mid_response:1000000:2;path=$LHEX" >/dev/null
pull_fresh resume
expect_rc 0
expect_eq "$(fault_proxy_state | json 'j["faults"][0]["fired"]')" "2" "cuts"
expect_eq "$(layer_ranges)" "bytes=1000000- bytes=2000000-" "Range headers sent"
expect_layer_stored

t_case "a registry that answers a Range request with the whole blob (200): the bytes already written are not doubled"
fault_proxy_set "drop_mid_response:1000000:1;path=$LHEX" "strip_range:1" >/dev/null
pull_fresh whole
expect_rc 0
expect_eq "$(fault_proxy_state | json '[f["fired"] for f in j["faults"]]')" "[1, 1]" "faults fired"
expect_eq "$(layer_ranges)" "bytes=1000000-" "Range headers sent"
expect_layer_stored

t_case "a registry that answers a Range request with 416: the blob is fetched whole again"
fault_proxy_set "drop_mid_response:1000000:1;path=$LHEX" "status:416:1;path=$LHEX" >/dev/null
pull_fresh range416
expect_rc 0
expect_eq "$(fault_proxy_state | json '[f["fired"] for f in j["faults"]]')" "[1, 1]" "faults fired"
expect_eq "$(layer_ranges)" "bytes=1000000-" "Range headers sent (none after the 416)"
expect_layer_stored

# ---------------------------------------------------------------- large blobs in ranged parts

LSIZE=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$R/v2/cut/img/manifests/1" |
	json 'j["layers"][0]["size"]')
# The ranges of 1 MiB parts of the layer, sorted, as the proxy records them.
part_ranges() {
	python3 -c 'import sys
size, part = int(sys.argv[1]), 1 << 20
print(" ".join(sorted("bytes=%d-%d" % (a, min(a + part, size) - 1) for a in range(0, size, part))))' "$LSIZE"
}
sorted_ranges() { layer_ranges | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//'; }

t_case "a layer larger than KILN_FETCH_PART_SIZE comes in ranged parts, several at once, and is stored whole"
fault_proxy_set none >/dev/null
KILN_FETCH_PART_SIZE=1048576 KILN_FETCH_PARALLEL=3 pull_fresh parts
expect_rc 0
[ "$LSIZE" -gt $((3 * MiB)) ] || t_fail "the layer is $LSIZE bytes, not more than three parts"
expect_eq "$(sorted_ranges)" "$(part_ranges)" "Range headers sent"
expect_layer_stored

t_case "a part cut off mid-body goes on from the bytes it has, within its own range"
fault_proxy_set "drop_mid_response:300000:1;path=$LHEX" >/dev/null
KILN_FETCH_PART_SIZE=1048576 pull_fresh partcut
expect_rc 0
expect_eq "$(fault_proxy_state | json 'j["faults"][0]["fired"]')" "1" "cuts"
# one part was asked for again from 300000 bytes in, up to its own end
RESUMED=$(layer_ranges | tr ' ' '\n' | python3 -c 'import sys
size, part = int(sys.argv[1]), 1 << 20
for r in sys.stdin.read().split():
    a, b = map(int, r[6:].split("-"))
    if a % part == 300000 and b == min(a - 300000 + part, size) - 1:
        print("yes")' "$LSIZE")
expect_eq "$RESUMED" "yes" "a part resumed at 300000 bytes in"
expect_layer_stored

t_case "a registry that ignores Range for a part (a 200 with the whole): the layer comes in one GET instead"
fault_proxy_set "strip_range:1;path=$LHEX" >/dev/null
KILN_FETCH_PART_SIZE=1048576 KILN_FETCH_PARALLEL=2 pull_fresh norange
expect_rc 0
expect_eq "$(fault_proxy_state | json 'j["faults"][0]["fired"]')" "1" "Range stripped"
expect_layer_stored
fault_proxy_set none >/dev/null

t_case "KILN_FETCH_PART_SIZE and KILN_FETCH_PARALLEL that are not whole numbers are errors naming them"
KILN_FETCH_PART_SIZE=32M pull_fresh badpart
expect_rc 1
expect_contains "$ERR" "KILN_FETCH_PART_SIZE=32M: not a positive whole number"
[ ! -e "$KILN_HOME/blobs/sha256/$LHEX" ] || t_fail "the layer is in the store"
expect_store_consistent
KILN_FETCH_PARALLEL=0 pull_fresh badpar
expect_rc 1
expect_contains "$ERR" "KILN_FETCH_PARALLEL=0: not a positive whole number"
KILN_FETCH_PARALLEL=1000 pull_fresh bigpar
expect_rc 1
expect_contains "$ERR" "KILN_FETCH_PARALLEL=1000: at most 64"

t_case "every third blob GET cut off: pulls into fresh stores all succeed"
fault_proxy_set "drop_mid_response:300000;every=3" >/dev/null
for i in 1 2 3 4; do
	pull_fresh "every$i"
	expect_rc 0
	expect_layer_stored
done
[ "$(fault_proxy_state | json 'j["faults"][0]["fired"]')" -ge 2 ] || t_fail "the fault fired less than twice"

t_case "a layer cut off every time: the pull gives up after its retries, names the blob, keeps nothing partial"
fault_proxy_set "drop_mid_response:100000:*;path=$LHEX" >/dev/null
pull_fresh giveup
expect_rc 1
expect_contains "$ERR" "gave up after 5 retries"
expect_contains "$ERR" "$LAYER"
expect_eq "$(layer_ranges)" "bytes=100000- bytes=200000- bytes=300000- bytes=400000- bytes=500000-" "Range headers sent"
[ ! -e "$KILN_HOME/blobs/sha256/$LHEX" ] || t_fail "the layer is in the store under its digest"
expect_store_consistent
fault_proxy_set none >/dev/null
export KILN_HOME=$T_WORK/home

# ---------------------------------------------------------------- a port that ignores the TLS handshake

t_case "a loopback registry that ignores the TLS handshake: push falls back to plain HTTP in seconds, not 30"
# The old 30 s handshake timeout would run past this case's own bound (timeout 25) for the push alone.
fault_proxy_set "tls_silent:*" >/dev/null
S=$T_WORK/silent
make_project "$S" ""
run_kiln build "$S" -t "$F/silent/model:1" --quiet
expect_rc 0
OUT=$(env -u KILN_HTTP_STALL_SECONDS timeout 25 "$KILN" push "$F/silent/model:1" --json 2>"$T_WORK/stderr")
RC=$?
ERR=$(cat "$T_WORK/stderr")
expect_rc 0
[ "$(fault_proxy_state | json 'j["faults"][0]["fired"]')" -ge 1 ] || t_fail "kiln did not try TLS first"
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	"http://$R/v2/silent/model/manifests/1")" "200" "manifest pushed"
fault_proxy_set none >/dev/null

t_case "an HTTPS registry too slow to finish its handshake: plain HTTP's 400 is explained, not just shown"
# a port that never answers a TLS ClientHello and answers plain HTTP as an HTTPS server does (Go's 400)
cat >"$T_WORK/slowtls.py" <<'EOF'
import socket, threading
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
def serve(c):
    if c.recv(1) == b"\x16":  # a TLS handshake: silence until the client gives up
        while c.recv(65536):
            pass
    else:
        c.recv(65536)
        c.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                  b"Client sent an HTTP request to an HTTPS server.\n")
    c.close()
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
EOF
python3 "$T_WORK/slowtls.py" >"$T_WORK/slowtls.port" &
t_defer "kill $! 2>/dev/null"
for _ in $(seq 50); do [ -s "$T_WORK/slowtls.port" ] && break; sleep 0.1; done
SLOW=127.0.0.1:$(cat "$T_WORK/slowtls.port")
export KILN_HOME=$T_WORK/home-slowtls
OUT=$(timeout 25 "$KILN" pull "$SLOW/any/model:1" 2>"$T_WORK/stderr")
RC=$?
ERR=$(cat "$T_WORK/stderr")
expect_rc 1
expect_contains "$ERR" "$SLOW answered HTTP 400 to plain HTTP, which kiln used because a TLS handshake did not complete within 5 s"
export KILN_HOME=$T_WORK/home

t_finish
