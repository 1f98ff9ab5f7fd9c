# SPDX-License-Identifier: Apache-2.0
# webdriver_lib.sh: a real headless Chromium driven over WebDriver (Debian's chromium and chromium-driver;
# source after lib.sh). wd_start starts ChromeDriver on a free loopback port and opens a session; the
# other helpers are the W3C WebDriver protocol's endpoints, with curl.

# wd_start: sets $WD (the session's URL). Returns non-zero when Chromium or ChromeDriver is missing.
wd_start() {
	command -v chromedriver >/dev/null && command -v chromium >/dev/null || return 1
	local port
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	chromedriver --port="$port" --allowed-ips=127.0.0.1 >"$T_WORK/chromedriver.log" 2>&1 &
	t_defer "kill $! 2>/dev/null"
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/status" >/dev/null && break; sleep 0.1; done
	local caps sid
	caps=$(python3 -c 'import json,sys; print(json.dumps({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1000", "--user-data-dir=" + sys.argv[1]]}}}}))' "$T_WORK/chromium")
	sid=$(curl -s -X POST "http://127.0.0.1:$port/session" -H 'Content-Type: application/json' -d "$caps" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["value"]["sessionId"])') || return 1
	WD=http://127.0.0.1:$port/session/$sid
	t_defer "curl -s -X DELETE '$WD' >/dev/null"
}

# wd METHOD PATH [JSON]: one request to the session; prints the answer's "value" as JSON.
wd() {
	curl -s -X "$1" "$WD$2" -H 'Content-Type: application/json' ${3:+-d "$3"} |
		python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin).get("value")))'
}

# wd_js SCRIPT [ARG...]: runs SCRIPT in the page (arguments[i] are the ARGs, as strings); prints its value
# (JSON for objects, Python's form for the rest: True, None, text).
wd_js() {
	local body
	body=$(python3 -c 'import json,sys; print(json.dumps({"script": sys.argv[1], "args": sys.argv[2:]}))' "$@")
	curl -s -X POST "$WD/execute/sync" -H 'Content-Type: application/json' -d "$body" |
		python3 -c 'import json,sys; v=json.load(sys.stdin).get("value"); print(json.dumps(v) if isinstance(v,(dict,list)) else v)'
}

# wd_el CSS: the element's id (empty when there is none).
wd_el() {
	curl -s -X POST "$WD/element" -H 'Content-Type: application/json' \
		-d "$(python3 -c 'import json,sys; print(json.dumps({"using": "css selector", "value": sys.argv[1]}))' "$1")" |
		python3 -c 'import json,sys; v=json.load(sys.stdin)["value"]; print(next(iter(v.values())) if isinstance(v, dict) and "error" not in v else "")'
}

# wd_click CSS, wd_keys CSS TEXT (typed into the element, as a user types; a file path for a file input),
# wd_clear CSS.
wd_click() { wd POST "/element/$(wd_el "$1")/click" '{}' >/dev/null; }
wd_keys() {
	wd POST "/element/$(wd_el "$1")/value" "$(python3 -c 'import json,sys; print(json.dumps({"text": sys.argv[1]}))' "$2")" >/dev/null
}
wd_clear() { wd POST "/element/$(wd_el "$1")/clear" '{}' >/dev/null; }

# wd_go URL; wd_size WIDTH HEIGHT (the window's).
wd_go() { wd POST /url "$(python3 -c 'import json,sys; print(json.dumps({"url": sys.argv[1]}))' "$1")" >/dev/null; }
wd_size() { wd POST /window/rect "{\"width\": $1, \"height\": $2}" >/dev/null; }

# wd_wait JS [SECONDS]: until the expression JS is true in the page (10 s by default); fails the case with
# JS when it is not.
wd_wait() {
	local i
	for i in $(seq $((${2:-10} * 10))); do
		[ "$(wd_js "return !!($1)")" == True ] && return 0
		sleep 0.1
	done
	t_fail "never true in the page: $1"
	return 1
}

# wd_shot FILE: a screenshot of the page, as PNG.
wd_shot() {
	curl -s "$WD/screenshot" | python3 -c 'import base64,json,sys; open(sys.argv[1], "wb").write(base64.b64decode(json.load(sys.stdin)["value"]))' "$1"
}
