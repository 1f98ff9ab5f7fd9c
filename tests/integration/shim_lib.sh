# SPDX-License-Identifier: Apache-2.0
# shim_lib.sh: helpers for integration tests that talk to kiln-shim over HTTP on loopback (source after lib.sh).

SHIM=$(dirname "$KILN")/kiln-shim
FIX=$KILN_SOURCE_DIR/tests/fixtures/predictors

# project NAME FILE RUN [YAML...]: a project directory with FILE (a fixture name or a path) and a kiln.yaml.
project() {
	local dir=$T_WORK/$1 file=$2 run=$3
	shift 3
	mkdir -p "$dir"
	if [ -f "$file" ]; then cp "$file" "$dir/"; else cp "$FIX/$file" "$dir/"; fi
	{
		echo "run: $run"
		printf '%s\n' "$@"
	} >"$dir/kiln.yaml"
	echo "$dir"
}

# free_port: prints a TCP port on 127.0.0.1 that is free now. Sets nothing.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# spawn_shim DIR LOG [ENV=V...] [-- SHIM ARGS...]: runs kiln-shim on project DIR in the background on a free
# port, with ENV in its environment and SHIM ARGS after its own, its stderr in LOG; does not wait for it.
# Sets $SPID (killed when the test file ends) and $URL.
spawn_shim() {
	local dir=$1 log=$2 envs=() args=()
	shift 2
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
	[ "${1:-}" == "--" ] && shift && args=("$@")
	local port
	port=$(free_port)
	env "${envs[@]}" "$SHIM" --project "$dir" --host 127.0.0.1 --port "$port" "${args[@]}" 2>"$log" &
	SPID=$!
	t_defer "kill -9 $SPID 2>/dev/null"
	URL=http://127.0.0.1:$port
}

# wait_listen LOG: until something answers on $URL (5 s at most); fails the case with LOG's text if not. Sets nothing.
wait_listen() {
	for _ in $(seq 50); do curl -s -o /dev/null "$URL/health-check" && return 0; sleep 0.1; done
	t_fail "nothing listens on $URL: $(cat "$1" 2>/dev/null)"
}

# start DIR [ENV=V...] [-- SHIM ARGS...]: spawn_shim with its log in DIR.log, then wait_listen.
# Sets $SPID and $URL.
start() {
	spawn_shim "$1" "$1.log" "${@:2}"
	wait_listen "$1.log"
}

# req METHOD PATH [CURL ARGS...]: one request to $URL (10 s at most). Sets $CODE (the HTTP status) and $BODY.
req() {
	local method=$1 path=$2
	shift 2
	rm -f "$T_WORK/body" # a failed request leaves no earlier body behind
	CODE=$(curl -s -m 10 -o "$T_WORK/body" -w '%{http_code}' -X "$method" "$@" "$URL$path")
	BODY=$(cat "$T_WORK/body" 2>/dev/null)
}

# post JSON [CURL ARGS...]: req POST /predictions with JSON as the body. Sets $CODE and $BODY.
post() { req POST /predictions -H 'Content-Type: application/json' -d "$1" "${@:2}"; }

# field EXPR: prints EXPR evaluated on $BODY parsed as JSON (`j`, as in json). Sets nothing.
field() { echo "$BODY" | json "$1"; }

# wait_health STATUS [SECONDS]: until $URL/health-check says STATUS (10 s by default); fails the case and
# returns 1 if it does not. Sets nothing.
wait_health() {
	local s=""
	for _ in $(seq $((${2:-10} * 10))); do
		s=$(curl -s -m 2 "$URL/health-check" | json 'j["status"]' 2>/dev/null)
		[ "$s" == "$1" ] && return 0
		sleep 0.1
	done
	t_fail "health is '$s', expected '$1'"
	return 1
}

# wait_settled URL SECONDS: until URL/health-check says READY or SETUP_FAILED (SECONDS at most); prints the
# last status seen (empty if none). Sets nothing.
wait_settled() {
	local s=""
	for _ in $(seq $(($2 * 10))); do
		s=$(curl -s -m 2 "$1/health-check" | json 'j["status"]' 2>/dev/null)
		[ "$s" == "READY" ] || [ "$s" == "SETUP_FAILED" ] && break
		sleep 0.1
	done
	echo "$s"
}

# stop_shim: SIGTERM, then the shim ($SPID) must be gone within 10 s with status 0. Sets $RC.
stop_shim() {
	kill -TERM "$SPID"
	wait_exit "$SPID" 10
	expect_eq "$RC" 0 "exit status"
}

# wait_exit PID SECONDS: until PID (a child of this shell) ends; fails the case if it still runs after SECONDS.
# Sets $RC to its exit status (255 if it still runs).
wait_exit() {
	for _ in $(seq $(($2 * 10))); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2>/dev/null; then
		t_fail "process $1 still runs after $2 s"
		RC=255
		return
	fi
	wait "$1"
	RC=$?
}

# hook DIR [DELAY [STATUS]]: a webhook receiver on loopback, one request at a time, writing each POST body to
# DIR/NNN.json as it arrives, then answering STATUS (200) after DELAY seconds (0); its port in $HPORT
# (killed when the test file ends).
hook() {
	[ -f "$T_WORK/hook.py" ] || cat >"$T_WORK/hook.py" <<'EOF'
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    n = 0
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        H.n += 1
        with open(f"{sys.argv[1]}/{H.n:03d}.json", "wb") as f:
            f.write(body)
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
        self.send_response(int(sys.argv[3]) if len(sys.argv) > 3 else 200); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
	mkdir -p "$1"
	python3 "$T_WORK/hook.py" "$@" >"$1.port" &
	t_defer "kill $! 2>/dev/null"
	for _ in $(seq 50); do
		HPORT=$(cat "$1.port")
		[ -n "$HPORT" ] && return 0
		sleep 0.1
	done
	t_fail "the webhook receiver did not start"
}

# py_project NAME FILE CLASS [TRAIN]: $T_WORK/NAME, a project running $T_WORK/FILE's CLASS (with train:
# FILE:TRAIN when given); prints its directory.
py_project() {
	local dir=$T_WORK/$1
	mkdir -p "$dir"
	cp "$T_WORK/$2" "$dir/$2"
	echo "run: $2:$3" >"$dir/kiln.yaml"
	[ -n "${4:-}" ] && echo "train: $2:$4" >>"$dir/kiln.yaml"
	echo "$dir"
}

# first_hook DIR: the first body the receiver of hook DIR got (waiting 5 s at most; empty if none came).
first_hook() {
	for _ in $(seq 50); do [ -f "$1/001.json" ] && break; sleep 0.1; done
	cat "$1/001.json" 2>/dev/null
}

# socket_activate_once PORT NAME ARG...: systemd-socket-activate -l 127.0.0.1:PORT ARG... (its -E options,
# then the command: kiln serve of the hello.py image); the request that starts it is answered "hello NAME",
# then the command exits idle with 0. Fails the current case otherwise; its stderr is $T_WORK/activate.err.
socket_activate_once() {
	local port=$1 name=$2
	shift 2
	systemd-socket-activate -l "127.0.0.1:$port" "$@" >"$T_WORK/activate.out" 2>"$T_WORK/activate.err" &
	local spid=$!
	t_defer "kill -9 $spid 2>/dev/null"
	# the socket is there before the model: the request waits in its backlog through the start
	for _ in $(seq 50); do ss -ltn | grep -q ":$port " && break; sleep 0.1; done
	local code
	code=$(curl -s -m 120 -o "$T_WORK/body" -w '%{http_code}' -H 'Content-Type: application/json' \
		-d "{\"input\": {\"name\": \"$name\"}}" "http://127.0.0.1:$port/predictions")
	BODY=$(cat "$T_WORK/body" 2>/dev/null)
	expect_eq "$code" 200 "the first request ($BODY, $(tail -5 "$T_WORK/activate.err"))"
	expect_eq "$(field 'j["output"]')" "hello $name"
	wait_exit "$spid" 30
	expect_rc 0
	expect_contains "$(cat "$T_WORK/activate.err")" "idle: exiting"
}

# socket_unit_cycle COMMAND [ARG...]: COMMAND (kiln serve REF --idle-exit 3 of the hello.py image, or what a
# unit's ExecStart says) under tests/integration/socket_unit.py, systemd's socket unit stand-in: three
# requests at once into the stopped service are each answered, the service exits idle, the next three
# start it again and are answered; two starts in all. Fails the current case otherwise. Sets $URL.
socket_unit_cycle() {
	python3 "$KILN_SOURCE_DIR/tests/integration/socket_unit.py" "$@" >"$T_WORK/unit.out" 2>"$T_WORK/unit.err" &
	local upid=$!
	t_defer "kill $upid 2>/dev/null"
	for _ in $(seq 50); do [ -s "$T_WORK/unit.out" ] && break; sleep 0.1; done
	URL=http://127.0.0.1:$(head -1 "$T_WORK/unit.out")
	_socket_wave 1
	for _ in $(seq 300); do grep -q '^exit 1 ' "$T_WORK/unit.out" && break; sleep 0.1; done
	expect_eq "$(grep '^exit 1 ' "$T_WORK/unit.out")" "exit 1 0" "the service's first run ended idle"
	_socket_wave 2
	expect_eq "$(grep -c '^start' "$T_WORK/unit.out")" 2 "starts"
	kill "$upid"
	wait "$upid" 2>/dev/null
}

# _socket_wave N: three requests at once to $URL, each must be answered "hello wN.I".
_socket_wave() {
	local pids=() i
	for i in 1 2 3; do
		curl -s -m 120 -o "$T_WORK/wave$1.$i" -w '%{http_code}' -H 'Content-Type: application/json' \
			-d "{\"input\": {\"name\": \"w$1.$i\"}}" "$URL/predictions" >"$T_WORK/wave$1.$i.code" &
		pids+=($!)
	done
	wait "${pids[@]}"
	for i in 1 2 3; do
		expect_eq "$(cat "$T_WORK/wave$1.$i.code")" 200 "wave $1 request $i ($(tail -3 "$T_WORK/unit.err"))"
		expect_eq "$(json 'j["output"]' <"$T_WORK/wave$1.$i")" "hello w$1.$i"
	done
}
