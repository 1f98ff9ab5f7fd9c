#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The registry fixtures themselves (registry.sh, token_server.py, fault_proxy.py), checked with skopeo and curl.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"

# A small OCI image with one ~300 KB layer, and a skopeo that reads no configuration of the machine's user.
POLICY=$T_WORK/policy.json
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$POLICY"
export REGISTRY_AUTH_FILE=$T_WORK/auth.json XDG_RUNTIME_DIR=$T_WORK/run
mkdir -p "$XDG_RUNTIME_DIR"
sk() { skopeo --policy "$POLICY" "$@"; }
IMG=$T_WORK/layout
make_file "$T_WORK/src/data.bin" 300000
{ umoci init --layout "$IMG" && umoci new --image "$IMG:t" && umoci insert --rootless --image "$IMG:t" "$T_WORK/src" /data; } >"$T_WORK/umoci.log" 2>&1 ||
	{ cat "$T_WORK/umoci.log" >&2; echo "cannot make the test image" >&2; exit 1; }
DIGEST=$(json 'j["manifests"][0]["digest"]' <"$IMG/index.json")

# Run a command, keeping stdout+stderr in $OUT and the status in $RC.
run() { OUT=$("$@" 2>&1); RC=$?; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
# The claims of a JWT, as JSON.
jwt_claims() { python3 -c 'import base64,sys; p=sys.argv[1].split(".")[1]; print(base64.urlsafe_b64decode(p+"="*(-len(p)%4)).decode())' "$1"; }

t_case "plain registry: skopeo pushes and inspects an image; delete is enabled"
registry_start plain || exit 1
expect_eq "$PLAIN_REGISTRY" "$REGISTRY" "PLAIN_REGISTRY"
[[ "$REGISTRY" =~ ^127\.0\.0\.1:[0-9]+$ ]] || t_fail "REGISTRY is '$REGISTRY'"
run sk copy -q --dest-tls-verify=false "oci:$IMG:t" "docker://$REGISTRY/fixtures/plain:v1"
expect_rc 0
run sk inspect --tls-verify=false "docker://$REGISTRY/fixtures/plain:v1"
expect_rc 0
expect_eq "$(json 'j["Digest"]' <<<"$OUT")" "$DIGEST" "digest in the registry"
expect_eq "$(http_code -X DELETE "http://$REGISTRY/v2/fixtures/plain/manifests/$DIGEST")" 202 "DELETE manifest"
expect_eq "$(http_code "http://$REGISTRY/v2/fixtures/plain/manifests/$DIGEST")" 404 "manifest after DELETE"
[ -d "$REGISTRY_DIR/docker/registry/v2/repositories/fixtures/plain" ] || t_fail "storage not under REGISTRY_DIR"

t_case "tls registry: CA, cert dir and credentials work; a wrong password and an unknown CA are refused"
registry_start tls || exit 1
expect_eq "$TLS_REGISTRY" "$REGISTRY" "TLS_REGISTRY"
expect_ne "$TLS_REGISTRY" "$PLAIN_REGISTRY" "two registries"
expect_eq "$REGISTRY_USER" kiln "REGISTRY_USER"
[ "${#REGISTRY_PASSWORD}" -ge 16 ] || t_fail "REGISTRY_PASSWORD is short: '$REGISTRY_PASSWORD'"
[ -f "$REGISTRY_CERT_DIR/ca.crt" ] && cmp -s "$REGISTRY_CERT_DIR/ca.crt" "$REGISTRY_CA" || t_fail "REGISTRY_CERT_DIR has no ca.crt"
run openssl x509 -in "$REGISTRY_DIR/../server.crt" -noout -ext subjectAltName
expect_contains "$OUT" "IP Address:127.0.0.1"
expect_contains "$OUT" "DNS:localhost"
expect_eq "$(http_code --cacert "$REGISTRY_CA" -u "kiln:$REGISTRY_PASSWORD" "https://$REGISTRY/v2/")" 200 "GET /v2/ with credentials"
expect_eq "$(http_code --cacert "$REGISTRY_CA" "https://localhost:${REGISTRY#*:}/v2/")" 401 "GET /v2/ as localhost, anonymous"
run sk copy -q --dest-cert-dir "$REGISTRY_CERT_DIR" --dest-creds "kiln:$REGISTRY_PASSWORD" "oci:$IMG:t" "docker://$REGISTRY/fixtures/tls:v1"
expect_rc 0
run sk inspect --cert-dir "$REGISTRY_CERT_DIR" --creds "kiln:$REGISTRY_PASSWORD" "docker://$REGISTRY/fixtures/tls:v1"
expect_rc 0
expect_eq "$(json 'j["Digest"]' <<<"$OUT")" "$DIGEST" "digest in the TLS registry"
run sk copy -q --dest-cert-dir "$REGISTRY_CERT_DIR" --dest-creds "kiln:wrong" "oci:$IMG:t" "docker://$REGISTRY/fixtures/tls:v2"
expect_ne "$RC" 0 "exit status with a wrong password"
expect_contains "$OUT" "authentication required"
run sk inspect --creds "kiln:$REGISTRY_PASSWORD" "docker://$REGISTRY/fixtures/tls:v1"
expect_ne "$RC" 0 "exit status without the CA"
expect_contains "$OUT" "x509"

t_case "token registry: the writer pushes, the reader pulls but cannot push, a wrong password is refused"
registry_start token || exit 1
expect_eq "$TOKEN_REGISTRY" "$REGISTRY" "TOKEN_REGISTRY"
expect_eq "$TOKEN_TOKEN_SERVER" "$TOKEN_SERVER" "TOKEN_TOKEN_SERVER"
[ -n "${TLS_REGISTRY_PASSWORD:-}" ] && [ -n "${TLS_REGISTRY_CA:-}" ] || t_fail "TLS_ variables lost"
[ -z "${REGISTRY_CA:-}" ] || t_fail "REGISTRY_CA left over from the tls registry"
run curl -si "http://$REGISTRY/v2/"
expect_contains "$OUT" "Bearer realm=\"http://$TOKEN_SERVER/token\",service=\"kiln-test\""
run sk copy -q --dest-tls-verify=false --dest-creds "$REGISTRY_USER:$REGISTRY_PASSWORD" "oci:$IMG:t" "docker://$REGISTRY/fixtures/token:v1"
expect_rc 0
run sk inspect --tls-verify=false --creds "$REGISTRY_READER:$REGISTRY_READER_PASSWORD" "docker://$REGISTRY/fixtures/token:v1"
expect_rc 0
expect_eq "$(json 'j["Digest"]' <<<"$OUT")" "$DIGEST" "digest read by the reader"
run sk copy -q --dest-tls-verify=false --dest-creds "$REGISTRY_READER:$REGISTRY_READER_PASSWORD" "oci:$IMG:t" "docker://$REGISTRY/fixtures/token:v2"
expect_ne "$RC" 0 "exit status of the reader's push"
expect_contains "$OUT" "denied"
run sk copy -q --dest-tls-verify=false --dest-creds "$REGISTRY_USER:wrong" "oci:$IMG:t" "docker://$REGISTRY/fixtures/token:v3"
expect_ne "$RC" 0 "exit status with a wrong password"
expect_contains "$OUT" "unauthorized"
run sk inspect --tls-verify=false "docker://$REGISTRY/fixtures/token:v1"
expect_ne "$RC" 0 "exit status of an anonymous pull"

t_case "token server: grants per user, claims distribution checks, 401 on bad credentials, counts tokens"
STATS=$(curl -s "http://$TOKEN_SERVER/stats")
N0=$(json 'j["tokens"]' <<<"$STATS")
[ "$N0" -ge 3 ] || t_fail "tokens counted after the pushes and pulls: $STATS"
[ "$(json 'j["denied"]' <<<"$STATS")" -ge 1 ] || t_fail "denied not counted: $STATS"
Q="service=kiln-test&scope=repository:fixtures/token:pull,push,delete&scope=registry:catalog:*"
run curl -sf -u "kiln:$REGISTRY_PASSWORD" "http://$TOKEN_SERVER/token?$Q"
expect_rc 0
for k in token access_token expires_in issued_at; do expect_contains "$OUT" "\"$k\""; done
C=$(jwt_claims "$(json 'j["token"]' <<<"$OUT")")
expect_eq "$(json '[j["iss"], j["sub"], j["aud"], j["exp"] - j["iat"]]' <<<"$C")" '["kiln-test-issuer", "kiln", "kiln-test", 300]' "claims"
expect_eq "$(json 'j["access"]' <<<"$C")" '[{"type": "repository", "name": "fixtures/token", "actions": ["pull", "push", "delete"]}]' "writer access"
run curl -sf -u "reader:$REGISTRY_READER_PASSWORD" "http://$TOKEN_SERVER/token?$Q"
C=$(jwt_claims "$(json 'j["token"]' <<<"$OUT")")
expect_eq "$(json 'j["access"]' <<<"$C")" '[{"type": "repository", "name": "fixtures/token", "actions": ["pull"]}]' "reader access"
run curl -sf "http://$TOKEN_SERVER/token?$Q"
C=$(jwt_claims "$(json 'j["token"]' <<<"$OUT")")
expect_eq "$(json 'j["access"]' <<<"$C")" '[]' "anonymous access"
expect_eq "$(http_code -u "kiln:nope" "http://$TOKEN_SERVER/token?$Q")" 401 "bad password"
expect_eq "$(http_code -u "nobody:$REGISTRY_PASSWORD" "http://$TOKEN_SERVER/token?$Q")" 401 "unknown user"
expect_eq "$(http_code -u "kiln:$REGISTRY_PASSWORD" "http://$TOKEN_SERVER/token?service=other&scope=repository:x:pull")" 400 "other service"
run curl -sf -d "grant_type=password&username=kiln&password=$REGISTRY_PASSWORD&service=kiln-test&scope=repository:x:push" "http://$TOKEN_SERVER/token"
expect_contains "$OUT" "access_token"
STATS=$(curl -s "http://$TOKEN_SERVER/stats")
expect_eq "$(json 'j["tokens"]' <<<"$STATS")" "$((N0 + 4))" "tokens after 4 more"
grep -q -- "$REGISTRY_PASSWORD" "$T_WORK"/token-server-*.log && t_fail "the token server logged a password"

t_case "fault proxy: status:500:2 answers 500 twice, then forwards; skopeo pushes through it"
REGISTRY=$PLAIN_REGISTRY
fault_proxy_start 'status:500:2' || exit 1
[[ "$FAULTY" =~ ^127\.0\.0\.1:[0-9]+$ ]] || t_fail "FAULTY is '$FAULTY'"
codes=""
for _ in 1 2 3; do codes+="$(http_code "http://$FAULTY/v2/") "; done
expect_eq "$codes" "500 500 200 " "three GET /v2/"
run curl -s "http://$FAULTY/v2/"
expect_eq "$OUT" "{}" "body through the proxy"
fault_proxy_set 'status:500:2;method=PUT;path=/manifests/' >/dev/null || t_fail "fault_proxy_set"
run sk copy -q --retry-times 3 --dest-tls-verify=false "oci:$IMG:t" "docker://$FAULTY/fixtures/faulty:v1"
if [ "$RC" -ne 0 ]; then
	# skopeo does not retry a 500: the faults are used up, so a second copy goes through.
	expect_contains "$OUT" "500"
	run sk copy -q --dest-tls-verify=false "oci:$IMG:t" "docker://$FAULTY/fixtures/faulty:v1"
	[ "$RC" -eq 0 ] || { run sk copy -q --dest-tls-verify=false "oci:$IMG:t" "docker://$FAULTY/fixtures/faulty:v1"; }
fi
expect_rc 0
run fault_proxy_state
expect_eq "$(json '[f["fired"] for f in j["faults"]]' <<<"$OUT")" "[2]" "500s answered to PUT manifests"
expect_contains "$(json 'j["applied"][-1]' <<<"$OUT")" "/manifests/"
run sk inspect --tls-verify=false "docker://$REGISTRY/fixtures/faulty:v1"
expect_eq "$(json 'j["Digest"]' <<<"$OUT")" "$DIGEST" "digest pushed through the proxy"

t_case "fault proxy: 429 with Retry-After, stall, keep-alive, Location, runtime switches"
fault_proxy_set 'status:429:1:7' >/dev/null
run curl -si "http://$FAULTY/v2/"
expect_contains "$OUT" "HTTP/1.1 429"
expect_contains "$OUT" "Retry-After: 7"
expect_contains "$OUT" "TOOMANYREQUESTS"
fault_proxy_set 'stall:3:1' >/dev/null
run curl -s --max-time 1 "http://$FAULTY/v2/"
expect_eq "$RC" 28 "curl status on a stalled request (timeout)"
expect_eq "$(http_code "http://$FAULTY/v2/")" 200 "after the stall"
fault_proxy_set none >/dev/null
run curl -sv "http://$FAULTY/v2/" "http://$FAULTY/v2/fixtures/plain/tags/list" "http://$FAULTY/v2/fixtures/faulty/tags/list"
expect_contains "$OUT" "Re-using existing connection"
expect_contains "$OUT" '"tags":["v1"]'
run curl -si -X POST "http://$FAULTY/v2/fixtures/loc/blobs/uploads/"
LOC=$(tr -d '\r' <<<"$OUT" | sed -n 's/^Location: //Ip')
[[ "$LOC" == "http://$FAULTY/v2/fixtures/loc/blobs/uploads/"* || "$LOC" == /v2/* ]] || t_fail "Location: '$LOC'"
# HEAD (a Content-Length but no body), then GET, on one connection.
run python3 - "$FAULTY" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], timeout=5)
h = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
c.request("HEAD", "/v2/fixtures/faulty/manifests/v1", headers=h); r = c.getresponse(); r.read()
c.request("GET", "/v2/fixtures/faulty/manifests/v1", headers=h); g = c.getresponse(); body = g.read()
print(r.status, r.getheader("Content-Length"), g.status, len(body))
EOF
L=$(json 'j["manifests"][0]["size"]' <"$IMG/index.json")
expect_eq "$OUT" "200 $L 200 $L" "HEAD then GET on one connection"
expect_eq "$(http_code -X POST -d '["bogus:1"]' "http://$FAULTY/__fault__")" 400 "bad fault spec"

t_case "fault proxy: curl uploads through it: chunked PATCH, then PUT with Expect: 100-continue, keep-alive"
F=$T_WORK/src/data.bin
BD=sha256:$(sha256sum "$F" | cut -d' ' -f1)
LOC=$(curl -si -X POST "http://$FAULTY/v2/fixtures/curl/blobs/uploads/" | tr -d '\r' | sed -n 's/^Location: //Ip')
LOC=$(curl -si -X PATCH -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/octet-stream' \
	--data-binary "@$F" "$LOC" | tr -d '\r' | sed -n 's/^Location: //Ip')
[[ "$LOC" == "http://$FAULTY/"* ]] || t_fail "Location after PATCH: '$LOC'"
run curl -sv -X PUT -H 'Expect: 100-continue' -H 'Content-Type: application/octet-stream' --data-binary "@/dev/null" \
	-o /dev/null -w '%{http_code} ' "$LOC&digest=$BD" --next -s -I -o /dev/null -w '%{http_code}' "http://$FAULTY/v2/fixtures/curl/blobs/$BD"
expect_contains "$OUT" "Re-using existing connection"
expect_contains "$OUT" "201 200"
expect_eq "$(curl -s "http://$REGISTRY/v2/fixtures/curl/blobs/$BD" | sha256sum | cut -d' ' -f1)" "${BD#sha256:}" "uploaded blob"

t_case "fault proxy: drop_mid_body breaks one blob upload; the next push succeeds"
# A layer the registry does not have yet, so that skopeo uploads it.
make_file "$T_WORK/src2/data.bin" 300000
umoci insert --rootless --image "$IMG:t" "$T_WORK/src2" /data2 >>"$T_WORK/umoci.log" 2>&1 || t_fail "umoci insert"
fault_proxy_set 'drop_mid_body:100000' >/dev/null
run sk copy -q --dest-tls-verify=false "oci:$IMG:t" "docker://$FAULTY/fixtures/dropped:v1"
RC1=$RC
run fault_proxy_state
expect_eq "$(json '[f["fired"] for f in j["faults"]]' <<<"$OUT")" "[1]" "drops"
[ "$RC1" -eq 0 ] || { run sk copy -q --dest-tls-verify=false "oci:$IMG:t" "docker://$FAULTY/fixtures/dropped:v1"; expect_rc 0; }
grep -q "dropped after 100000 body bytes" "$FAULTY_LOG" || t_fail "no drop in the proxy's log"
# curl, with a Content-Length body: the connection closes mid-upload.
fault_proxy_set 'drop_mid_body:1000;path=/blobs/uploads/' >/dev/null
LOC=$(curl -si -X POST "http://$FAULTY/v2/fixtures/dropped/blobs/uploads/" | tr -d '\r' | sed -n 's/^Location: //Ip')
run curl -s -X PATCH --data-binary "@$T_WORK/src/data.bin" -H 'Content-Type: application/octet-stream' "$LOC"
# No HTTP reply at all: curl says "empty reply" (52), or "send failure" (55) / "recv failure" (56) when the
# close reaches it while it is still sending, which depends on scheduling.
case "$RC" in 52 | 55 | 56) ;; *) t_fail "curl status for a dropped upload: got '$RC', expected 52, 55 or 56 (no reply)" ;; esac

t_case "fault proxy in front of the TLS registry serves TLS with the registry's certificate"
fault_proxy_start --upstream "$TLS_REGISTRY" 'status:503:1' || exit 1
expect_eq "$FAULTY_SCHEME" https "FAULTY_SCHEME"
expect_eq "$(http_code --cacert "$TLS_REGISTRY_CA" -u "kiln:$TLS_REGISTRY_PASSWORD" "https://$FAULTY/v2/")" 503 "first request"
run sk inspect --cert-dir "$TLS_REGISTRY_CERT_DIR" --creds "kiln:$TLS_REGISTRY_PASSWORD" "docker://$FAULTY/fixtures/tls:v1"
expect_rc 0
expect_eq "$(json 'j["Digest"]' <<<"$OUT")" "$DIGEST" "digest through the TLS proxy"

t_case "registry_stop stops every process"
PORTS="$PLAIN_REGISTRY $TLS_REGISTRY $TOKEN_REGISTRY $TOKEN_SERVER $FAULTY"
registry_stop
for a in $PORTS; do
	expect_eq "$(http_code -k "https://$a/v2/")$(http_code "http://$a/v2/")" 000000 "$a after registry_stop"
done

t_finish
