#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln playground (#15) in a real headless Chromium (WebDriver): the form made of a model's schema, every
# input kind, a file uploaded and one dropped, an image output checked by its pixels, a validation error
# next to its field, async with the webhook events the playground's sink received, a streamed iterator
# piece by piece with markup kept as text, cancel, history, a narrow screen and the keyboard; the proxy
# refuses all but its target's Cog API. Screenshots go to $KILN_TEST_ARTIFACTS (default
# /tmp/kiln-test-artifacts).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"
source "$(dirname "$0")/webdriver_lib.sh"

export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
ART=${KILN_TEST_ARTIFACTS:-/tmp/kiln-test-artifacts}
mkdir -p "$ART"

# the models, served by kiln-shim on loopback
MODEL=$(project model playground.py playground.py:Predictor)
start "$MODEL"
MODEL_URL=$URL
STREAM=$(project stream playground.py playground.py:Stream)
start "$STREAM"
STREAM_URL=$URL

# playground TARGET [ARGS...]: kiln playground on a free port; sets $PG (its URL).
playground() {
	local port
	port=$(free_port)
	"$KILN" playground --target "$1" --port "$port" "${@:2}" >"$T_WORK/pg-$port.out" 2>&1 &
	t_defer "kill $! 2>/dev/null"
	PG=http://127.0.0.1:$port
	for _ in $(seq 50); do curl -sf -o /dev/null "$PG/" && return 0; sleep 0.1; done
	t_fail "kiln playground does not listen: $(cat "$T_WORK/pg-$port.out")"
}

t_case "kiln playground: a bad --target is a usage error; the proxy passes on only its target's Cog API"
run_kiln playground --target 'http://127.0.0.1:1/?x=1'
expect_rc 2
expect_contains "$ERR" "--target: 'http://127.0.0.1:1/?x=1' is not an http:// or https:// URL"
run_kiln playground --target ftp://127.0.0.1/
expect_rc 2
run_kiln playground
expect_rc 2
expect_contains "$ERR" "--target URL is required"
playground "$MODEL_URL" --ref playground/model:1
PGM=$PG
expect_contains "$(cat "$T_WORK"/pg-*.out)" "playground: $PGM/ (for $MODEL_URL)"
expect_eq "$(curl -s "$PGM/api/health-check" | json 'j["status"]')" READY "health-check through the proxy"
for path in "http://127.0.0.1:1/x" "shutdown" "predictions/../../etc/passwd" "predictions/a/b" \
	"predictions/..%2F..%2Fshutdown" "docs" "%2e%2e/openapi.json"; do
	code=$(curl -s -o "$T_WORK/refused" -w '%{http_code}' --path-as-is "$PGM/api/$path")
	expect_eq "$code" 403 "/api/$path"
done
expect_contains "$(cat "$T_WORK/refused")" "passes on only Cog's API of its target"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$PGM/api/shutdown")
expect_eq "$code" 403 "POST /api/shutdown"
curl -sf "$MODEL_URL/health-check" >/dev/null || t_fail "the model stopped"
# a target that does not answer: a 502 that says so
playground "http://127.0.0.1:$(free_port)"
code=$(curl -s -o "$T_WORK/gw" -w '%{http_code}' "$PG/api/openapi.json")
expect_eq "$code" 502 "an unreachable target"
expect_contains "$(cat "$T_WORK/gw")" "cannot reach the target"

t_case "kiln serve DIR --playground: the shim and its playground; SIGTERM stops both, exit 0"
SP=$(free_port)
PP=$(free_port)
"$KILN" serve "$MODEL" --host 127.0.0.1 --port "$SP" --playground="$PP" >"$T_WORK/serve.out" 2>"$T_WORK/serve.err" &
KP=$!
t_defer "kill -9 $KP 2>/dev/null"
for _ in $(seq 100); do
	[ "$(curl -s "http://127.0.0.1:$PP/api/health-check" | json 'j["status"]' 2>/dev/null)" == READY ] && break
	sleep 0.1
done
expect_contains "$(cat "$T_WORK/serve.err")" "playground: http://127.0.0.1:$PP/ (for http://127.0.0.1:$SP)"
expect_eq "$(curl -s -X POST "http://127.0.0.1:$PP/api/predictions" -H 'Content-Type: application/json' -d '{"input": {"steps": 1}}' | json 'j["status"]')" succeeded "a prediction through it"
expect_eq "$(curl -s "http://127.0.0.1:$PP/playground/config" | json 'j["ref"]')" "$MODEL" "the page's kiln predict line names the project"
kill -TERM "$KP"
wait "$KP"
expect_eq "$?" 0 "kiln serve's status after SIGTERM"
curl -s -o /dev/null "http://127.0.0.1:$SP/health-check" && t_fail "the shim still answers"
curl -s -o /dev/null "http://127.0.0.1:$PP/" && t_fail "the playground still answers"
run_kiln serve "$MODEL" --port 0 --playground
expect_rc 2
expect_contains "$ERR" "--playground needs the shim's port"

if ! wd_start; then
	t_fail "no headless Chromium: install chromium and chromium-driver (scripts/deps.sh)"
	t_finish
	exit 1
fi

t_case "the page: a form of the schema, a control per input kind in x-order, defaults filled, health shown"
wd_go "$PGM/"
wd_wait 'document.querySelectorAll("#fields .field").length == 9'
expect_eq "$(wd_js 'return Array.from(document.querySelectorAll("#fields .field")).map(f => f.dataset.name + ":" + f.dataset.kind).join(" ")')" \
	"prompt:text steps:slider scale:number color:select loud:bool tags:list note:text token:secret image:file" "fields"
expect_eq "$(wd_js 'return [document.getElementById("in-steps").value, document.getElementById("in-color").selectedOptions[0].textContent, document.getElementById("in-tags").value, document.getElementById("in-prompt").value].join("|")')" \
	"3|red|a|a square" "defaults"
expect_eq "$(wd_js 'return document.querySelector("#fields .field[data-name=steps] input[type=range]").max')" 10 "the slider's maximum"
expect_eq "$(wd_js 'return document.getElementById("in-token").type')" password "a secret's control"
wd_wait 'document.getElementById("health").textContent == "READY"'
expect_eq "$(wd_js 'return document.getElementById("target").textContent')" "$MODEL_URL" "the target shown"

t_case "every input kind and an uploaded file arrive typed; the PNG output is shown, checked by its pixels"
printf 'uploaded-bytes' >"$T_WORK/upload.txt"
wd_clear "#in-prompt" && wd_keys "#in-prompt" "a blue square"
wd_clear "#in-steps" && wd_keys "#in-steps" "2"
wd_clear "#in-scale" && wd_keys "#in-scale" "1.25"
wd_click "#in-color option[value='2']"
wd_click "#in-loud"
wd_clear "#in-tags" && wd_keys "#in-tags" $'x\ny'
wd_keys "#in-note" "hi"
wd_keys "#in-token" "s3cret"
wd_keys "#in-image" "$T_WORK/upload.txt"
wd_click "#run"
wd_wait 'document.getElementById("status").textContent == "succeeded"'
expect_contains "$(wd_js 'return document.getElementById("logs").textContent')" \
	'got {"color": "blue", "image": "uploaded-bytes", "loud": true, "note": "hi", "prompt": "a blue square", "scale": 1.25, "steps": 2, "tags": ["x", "y"], "token": "s3cret"}'
wd_wait 'document.querySelector("#output img") && document.querySelector("#output img").complete'
PIXEL='const i = document.querySelector("#output img"); const c = document.createElement("canvas"); c.width = i.naturalWidth; c.height = i.naturalHeight; const g = c.getContext("2d"); g.drawImage(i, 0, 0); return [i.naturalWidth, i.naturalHeight].concat(Array.from(g.getImageData(3, 3, 1, 1).data)).join(",");'
expect_eq "$(wd_js "$PIXEL")" "16,8,0,0,255,255" "the image's size and a pixel"
expect_contains "$(wd_js 'return document.getElementById("predict-time").textContent')" "predict_time"
wd_js 'window.scrollTo(0, 0); return 1' >/dev/null
wd_shot "$ART/playground.png"

t_case "the curl and kiln predict lines say the same run"
CURL=$(wd_js 'return document.getElementById("curl").textContent')
expect_contains "$CURL" "curl -s -X POST $MODEL_URL/predictions -H 'Content-Type: application/json'"
expect_contains "$CURL" '"prompt":"a blue square"'
expect_contains "$(wd_js 'return document.getElementById("kiln").textContent')" "kiln predict playground/model:1 --json '{\"prompt\":\"a blue square\""

t_case "outputs by kind: images, audio, video, other files, objects and text"
expect_eq "$(wd_js 'return ["data:image/webp;base64,AA", "https://x.example/a.PNG?sig=1", "data:audio/wav;base64,AA", "http://x.example/s.mp3", "data:video/mp4;base64,AA", "https://x.example/v.webm", "https://x.example/weights.safetensors", "data:application/octet-stream;base64,AA", {"a": [1, 2]}, "plain <b>text</b>", 0.5, null].map(v => { const e = renderValue(v); const a = e.querySelector("a"); return e.tagName + (a ? ":" + a.getAttribute("download") : "") + (e.tagName == "PRE" || e.tagName == "P" && !a ? ":" + e.textContent : ""); }).join(" ")')" \
	'IMG IMG AUDIO AUDIO VIDEO VIDEO P:weights.safetensors P:output PRE:{
  "a": [
    1,
    2
  ]
} PRE:plain <b>text</b> PRE:0.5 P:No output' "each value's element"

t_case "a file dropped on the file control is sent"
wd_js 'const d = new DataTransfer(); d.items.add(new File(["dropped-bytes"], "d.txt", {type: "text/plain"})); const z = document.querySelector("#fields .field[data-name=image] .drop"); z.dispatchEvent(new DragEvent("drop", {dataTransfer: d, bubbles: true, cancelable: true})); return 1' >/dev/null
expect_contains "$(wd_js 'return document.querySelector("#fields .field[data-name=image] .chosen").textContent')" "d.txt (13 bytes)"
wd_click "#run"
wd_wait 'document.getElementById("status").textContent == "succeeded" && document.getElementById("logs").textContent.includes("dropped-bytes")'

t_case "a value the model refuses: its message next to the field"
wd_clear "#in-steps" && wd_keys "#in-steps" "99"
wd_click "#run"
wd_wait 'document.getElementById("in-steps-error").textContent != ""'
expect_eq "$(wd_js 'return document.getElementById("in-steps-error").textContent')" "99 is greater than the maximum of 10"
expect_eq "$(wd_js 'return document.querySelector("#fields .field[data-name=steps]").classList.contains("invalid")')" True
wd_clear "#in-steps" && wd_keys "#in-steps" "1"

t_case "async with a webhook: the events the playground's sink received, then the output"
wd_click 'input[name=mode][value=async]'
wd_click "#run"
wd_wait 'document.getElementById("status").textContent == "succeeded"' 20
expect_eq "$(wd_js 'return document.querySelectorAll("#webhooks li").length >= 2')" True "webhook events shown"
expect_contains "$(wd_js 'return Array.from(document.querySelectorAll("#webhooks li .badge")).map(b => b.textContent).join(" ")')" "succeeded"
expect_eq "$(wd_js "$PIXEL")" "8,8,0,0,255,255" "the async run's image"
expect_contains "$(curl -s "$PGM/playground/events?after=0" | json '[e["body"]["status"] for e in j["events"]]')" "succeeded"

t_case "history: each run is listed, and its inputs come back"
expect_eq "$(wd_js 'return document.querySelectorAll("#history li").length')" 4 "runs in the history"
wd_clear "#in-prompt" && wd_keys "#in-prompt" "changed"
wd_click "#history li:nth-child(4) button"
expect_eq "$(wd_js 'return document.getElementById("in-prompt").value')" "a blue square" "the first run's prompt"
expect_eq "$(wd_js 'return document.querySelector("input[name=mode]:checked").value')" sync "the first run's mode"
expect_not_contains "$(wd_js 'return localStorage.getItem("kiln-playground-history")')" "s3cret"
expect_eq "$(wd_js 'return document.getElementById("in-token").value')" "" "a secret is not kept"

t_case "a narrow screen: no sideways scrolling; the keyboard runs the form"
wd_size 420 900
wd_wait 'document.documentElement.scrollWidth <= window.innerWidth'
wd_js 'document.getElementById("run").focus(); return 1' >/dev/null
wd_keys "#run" $'\uE007'
wd_wait 'document.getElementById("status").textContent == "succeeded" && document.querySelectorAll("#history li").length == 5'
wd_shot "$ART/playground-narrow.png"
wd_size 1200 1000

t_case "a streamed iterator: its pieces appear one by one, markup in them stays text"
playground "$STREAM_URL"
PGS=$PG
wd_go "$PGS/"
wd_wait 'document.querySelectorAll("#fields .field").length == 2'
expect_eq "$(wd_js 'return document.querySelector("input[name=mode]:checked").value')" stream "an iterator's mode"
wd_clear "#in-n" && wd_keys "#in-n" "3"
wd_click "#run"
wd_wait 'document.querySelectorAll("#output .piece").length == 2'
expect_ne "$(wd_js 'return document.getElementById("status").textContent')" succeeded "the status while pieces come"
wd_wait 'document.getElementById("status").textContent == "succeeded"'
expect_eq "$(wd_js 'return Array.from(document.querySelectorAll("#output .piece")).map(p => p.textContent).join("|")')" \
	"<script>window.pwned = 1</script>|piece-0 |piece-1 |piece-2 " "the pieces, as text"
expect_eq "$(wd_js 'return [typeof window.pwned, document.querySelectorAll("#output script").length].join(",")')" "undefined,0" "no script ran or was made"
expect_contains "$(wd_js 'return document.getElementById("logs").textContent')" "piece 2"

t_case "cancel: a prediction in flight is canceled"
wd_clear "#in-delay" && wd_keys "#in-delay" "5"
wd_click "#run"
wd_wait 'document.querySelectorAll("#output .piece").length == 1'
wd_click "#cancel"
wd_wait 'document.getElementById("status").textContent == "canceled"' 15
expect_eq "$(wd_js 'return document.getElementById("run").disabled')" False "Run again"
wd_shot "$ART/playground-stream.png"
for f in playground playground-narrow playground-stream; do
	[ "$(head -c 8 "$ART/$f.png" | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ] || t_fail "$f.png is no PNG"
done

t_finish
