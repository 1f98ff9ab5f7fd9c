#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln-shim under hostile clients on loopback: idle and slow-loris connections (the connection bound and
# deadlines), the memory kept for finished predictions, prediction ids, webhook schemes, file inputs from
# private addresses and the upstream error bodies they answer with.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

FIX=$KILN_SOURCE_DIR/tests/fixtures/predictors
export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT KILN_ALLOW_PRIVATE_URLS KILN_SHIM_MAX_CONNECTIONS \
	KILN_SHIM_CONNECTION_TIMEOUT KILN_SHIM_REQUEST_TIMEOUT KILN_SHIM_KEEP_BYTES

# project NAME FIXTURE: a project directory with the fixture predictor FIXTURE.py as its run.
project() {
	local dir=$T_WORK/$1
	mkdir -p "$dir"
	cp "$FIX/$2.py" "$dir/"
	echo "run: $2.py:Predictor" >"$dir/kiln.yaml"
	echo "$dir"
}

# ---- connections: the bound, the idle deadline, the request deadline; long answers are not cut
SLOW=$(project slow slow)
start "$SLOW" -- --connection-timeout 2 --request-timeout 2
wait_health READY

t_case "1,100 silent sockets and 120 slow-loris requests: a new request is answered at once, then all are closed"
cat >"$T_WORK/flood.py" <<'PY'
import resource, select, socket, sys, time
port = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s
silent = [connect() for _ in range(1100)]
# slow-loris: 100 with headers that never end, 20 with a Content-Length and no body
loris = []
for i in range(120):
    s = connect()
    if i < 100:
        s.sendall(b"POST /predictions HTTP/1.1\r\nHost: x\r\n")
    else:
        s.sendall(b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    loris.append(s)
time.sleep(0.3)
def request(raw):
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=20)  # unfixed, the flood held requests 60-90 s
    s.sendall(raw)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.split(b"\r\n", 1)[0].decode(), time.monotonic() - t0
line, secs = request(b"GET /health-check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print("health", line, "%.2f" % secs)
body = b'{"input": {"seconds": 0.1}}'
line, secs = request(b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
print("predict", line, "%.2f" % secs)
# the slow-loris ones keep trickling (so that only the request deadline can end them); count the sockets
# the server closes (a bounded wait, well past the short timeouts the shim runs with here)
open_ = {s.fileno(): s for s in silent + loris}
closed = 0
deadline = time.monotonic() + 30
next_drip = 0
while open_ and time.monotonic() < deadline:
    if time.monotonic() >= next_drip:
        for s in loris:
            if s.fileno() in open_:
                try:
                    s.send(b"X" if loris.index(s) < 100 else b" ")
                except OSError:
                    pass
        next_drip = time.monotonic() + 0.5
    poller = select.poll()
    for fd in open_:
        poller.register(fd, select.POLLIN)
    ready = poller.poll(200)
    for fd, _ in ready:
        s = open_[fd]
        s.setblocking(False)
        try:
            if s.recv(4096) == b"":
                raise ConnectionResetError
        except BlockingIOError:
            continue
        except OSError:
            pass
        del open_[fd]
        s.close()
        closed += 1
print("closed", closed, "of", len(silent) + len(loris))
PY
python3 "$T_WORK/flood.py" "${URL##*:}" >"$T_WORK/flood.out" 2>&1
OUT=$(cat "$T_WORK/flood.out")
expect_contains "$OUT" "health HTTP/1.1 200"
expect_contains "$OUT" "predict HTTP/1.1 200"
expect_contains "$OUT" "closed 1220 of 1220"
req GET /health-check
expect_eq "$CODE" 200 "health after the flood"

t_case "a synchronous prediction and an event stream longer than the connection timeout are not cut"
post '{"input": {"seconds": 3.5}}'
expect_eq "$CODE" 200 "sync status ($BODY)"
expect_eq "$(field 'j["output"]')" "woke up"
curl -s -N -m 10 -H 'Accept: text/event-stream' -d '{"input": {"seconds": 3.5}}' "$URL/predictions" >"$T_WORK/sse"
expect_eq "$(grep '^data: {' "$T_WORK/sse" | tail -1 | cut -c7- | json 'j["status"]')" succeeded "stream: $(cat "$T_WORK/sse")"

t_case "a keep-alive connection is served again, and closed once idle past the timeout"
python3 - "${URL##*:}" >"$T_WORK/keepalive.out" <<'PY'
import http.client, socket, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
for _ in range(2):
    c.request("GET", "/health-check")
    r = c.getresponse(); r.read()
    print("status", r.status)
    time.sleep(1)
t0 = time.monotonic()
c.sock.settimeout(10)
print("eof", c.sock.recv(1) == b"", "%.1f" % (time.monotonic() - t0))
PY
expect_eq "$(grep -c 'status 200' "$T_WORK/keepalive.out")" 2 "answers on one connection: $(cat "$T_WORK/keepalive.out")"
expect_contains "$(cat "$T_WORK/keepalive.out")" "eof True"
kill -TERM "$SPID"
wait_exit "$SPID" 10

t_case "options and variables for the limits: a bad value is a usage error"
"$SHIM" --project "$SLOW" --connection-timeout 0 2>"$T_WORK/bad.err"
expect_eq "$?" 2 "--connection-timeout 0"
expect_contains "$(cat "$T_WORK/bad.err")" "--connection-timeout: '0' is not a positive number of seconds"
KILN_SHIM_MAX_CONNECTIONS=x "$SHIM" --project "$SLOW" 2>"$T_WORK/bad.err"
expect_eq "$?" 2 "KILN_SHIM_MAX_CONNECTIONS=x"
expect_contains "$(cat "$T_WORK/bad.err")" "KILN_SHIM_MAX_CONNECTIONS: 'x' is not a positive integer"

# ---- memory kept for finished predictions
t_case "finished predictions are kept up to a number of bytes: 24 of 4 MB keep the shim's RSS small"
HELLO=$(project hello hello)
start "$HELLO"
wait_health READY
python3 - "$URL" "$SPID" >"$T_WORK/rss.out" <<'PY'
import json, sys, urllib.request
url, pid = sys.argv[1], sys.argv[2]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
print("before", rss())
name = "x" * (4 << 20)
for i in range(24):
    body = json.dumps({"id": f"big-{i}", "input": {"name": name}}).encode()
    r = urllib.request.urlopen(urllib.request.Request(url + "/predictions", body, {"Content-Type": "application/json"}), timeout=60)
    assert json.load(r)["status"] == "succeeded"
print("after", rss())
PY
RSS=$(awk '$1 == "after" {print $2}' "$T_WORK/rss.out")
# each holds its body, input, output and logs: about 16 MB; kept by number, 24 of them held ~400 MB
[ -n "$RSS" ] && [ "$RSS" -lt 200 ] || t_fail "RSS after 24 predictions of 4 MB: ${RSS:-?} MB ($(cat "$T_WORK/rss.out"))"
kill -TERM "$SPID"
wait_exit "$SPID" 10

t_case "a finished prediction dropped for room runs again on PUT; one kept answers as it was"
start "$HELLO" -- --keep-bytes 200000
wait_health READY
BIG=$(python3 -c 'print("y" * 300000)')
printf '{"input": {"name": "%s"}}' "$BIG" >"$T_WORK/big.json"
req PUT /predictions/big-1 -H 'Content-Type: application/json' --data-binary @"$T_WORK/big.json"
expect_eq "$CODE" 200
FIRST=$(field 'j["created_at"]')
req PUT /predictions/small-1 -H 'Content-Type: application/json' -d '{"input": {"name": "s"}}'
SMALL=$(field 'j["created_at"]')
req PUT /predictions/big-1 -H 'Content-Type: application/json' --data-binary @"$T_WORK/big.json"
expect_eq "$CODE" 200 "the dropped one again"
expect_eq "$(field 'j["status"]')" succeeded
[ "$(field 'j["created_at"]')" != "$FIRST" ] || t_fail "the dropped prediction was answered from memory"
req PUT /predictions/small-1 -H 'Content-Type: application/json' -d '{"input": {"name": "s"}}'
expect_eq "$(field 'j["created_at"]')" "$SMALL" "the kept one"

kill -TERM "$SPID"
wait_exit "$SPID" 10

# ---- prediction ids and webhooks
t_case "prediction ids: bytes that are not Cog's charset, an escaped NUL, in the URL or the body, are refused"
start "$HELLO"
wait_health READY
req PUT /predictions/%ff%fe -H 'Content-Type: application/json' -d '{}'
expect_eq "$CODE" 400 "%ff%fe"
expect_contains "$(field 'j["detail"]')" "invalid prediction ID"
req PUT /predictions/a%00b -H 'Content-Type: application/json' -d '{}'
expect_eq "$CODE" 400 "a%00b"
expect_contains "$(field 'j["detail"]')" "NUL"
req POST /predictions/%ff/cancel
expect_eq "$CODE" 400 "cancel %ff"
post '{"id": "a\u0000b", "input": {}}'
expect_eq "$CODE" 422 "a NUL in the body's id"
post '{"id": "a b", "input": {}}'
expect_eq "$CODE" 422 "a space in the body's id"
expect_eq "$(field 'j["detail"][0]["loc"]')" '["body", "id"]'
post '{"id": "caf\u00e9", "input": {}}'
expect_eq "$CODE" 422 "a letter outside ASCII"
post "{\"id\": \"$(printf 'x%.0s' $(seq 129))\", \"input\": {}}"
expect_eq "$CODE" 422 "129 characters"
req PUT /predictions/Job-1_a.b~c -H 'Content-Type: application/json' -d '{"input": {"name": "ok"}}'
expect_eq "$CODE" 200 "a valid id"
expect_eq "$(field 'j["id"]')" "Job-1_a.b~c"

t_case "webhooks: only http and https URLs"
post '{"input": {}, "webhook": "ftp://127.0.0.1/hook"}' -H 'Prefer: respond-async'
expect_eq "$CODE" 422 "ftp ($BODY)"
expect_eq "$(field 'j["detail"][0]["loc"]')" '["body", "webhook"]'
expect_eq "$(field 'j["detail"][0]["msg"]')" "URL scheme not permitted"
post '{"input": {}, "webhook": "file:///etc/passwd"}'
expect_eq "$CODE" 422 "file"
post '{"input": {}, "webhook": 7}'
expect_eq "$CODE" 422 "a number"
post '{"input": {}, "webhook": "HTTPS://127.0.0.1:1/hook"}' -H 'Prefer: respond-async'
expect_eq "$CODE" 202 "https"
kill -TERM "$SPID"
wait_exit "$SPID" 10

# ---- file inputs from private addresses; upstream error bodies
t_case "file inputs: private addresses refused unless allowed; an upstream error body is not echoed"
cat >"$T_WORK/files.py" <<'PY'
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/secret":
            body = b"SECRET-UPSTREAM-BODY\n"
            self.send_response(500)
        elif self.path == "/redirect":
            self.send_response(302); self.send_header("Location", "http://127.0.0.1:%d/a.txt" % self.server.server_address[1])
            self.send_header("Content-Length", "0"); self.end_headers(); return
        else:
            body = b"hi"
            self.send_response(200)
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$T_WORK/files.py" >"$T_WORK/files.port" &
t_defer "kill $! 2>/dev/null"
for _ in $(seq 50); do
	FPORT=$(cat "$T_WORK/files.port")
	[ -n "$FPORT" ] && break
	sleep 0.1
done
TYPES=$(project types types)
start "$TYPES"
wait_health READY
for u in "http://127.0.0.1:$FPORT/a.txt" "http://localhost:$FPORT/a.txt" "http://[::ffff:127.0.0.1]:$FPORT/a.txt" \
	"http://0.0.0.0:$FPORT/a.txt" "http://169.254.169.254/latest/meta-data/"; do
	post "{\"input\": {\"image\": \"$u\", \"text\": \"hello\"}}"
	expect_eq "$CODE" 422 "$u ($BODY)"
	expect_contains "$(field 'j["detail"][0]["msg"]')" "private, loopback or link-local"
done
kill -TERM "$SPID"
wait_exit "$SPID" 10
start "$TYPES" -- --allow-private-urls
wait_health READY
post "{\"input\": {\"image\": \"http://127.0.0.1:$FPORT/redirect\", \"text\": \"hello\"}}"
expect_eq "$CODE" 200 "allowed ($BODY)"
expect_eq "$(field 'j["output"]["image"]')" '["Path", true, "hi"]'
post "{\"input\": {\"image\": \"http://127.0.0.1:$FPORT/secret\", \"text\": \"hello\"}}"
expect_eq "$CODE" 422
expect_contains "$(field 'j["detail"][0]["msg"]')" "HTTP 500"
expect_not_contains "$BODY" "SECRET-UPSTREAM-BODY"
kill -TERM "$SPID"
wait_exit "$SPID" 10
start "$TYPES" KILN_ALLOW_PRIVATE_URLS=1
wait_health READY
post "{\"input\": {\"image\": \"http://127.0.0.1:$FPORT/a.txt\", \"text\": \"hello\"}}"
expect_eq "$CODE" 200 "KILN_ALLOW_PRIVATE_URLS=1 ($BODY)"
kill -TERM "$SPID"
wait_exit "$SPID" 10

t_finish
