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
