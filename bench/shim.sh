#!/usr/bin/env bash
# bench/shim.sh: kiln-shim against nginx (requests), against nothing (start to READY) and against `cat`
# (prefetch of the weights from a cold page cache), side by side.
#
#   bash bench/shim.sh
#   BENCH_WRK_SECONDS=20 BENCH_FILE_MIB=1024 bash bench/shim.sh
#
# Environment: BENCH_WRK_SECONDS (default 8: each wrk run), BENCH_CONNECTIONS (default 32),
# BENCH_REPS (default 3: wrk runs and prefetch runs per row), BENCH_START_REPS (default 5: starts to READY),
# BENCH_FILES (default 4), BENCH_FILE_MIB (default 512), BENCH_DIR (parent of the work directory, default
# bench/work), KILN_SHIM (the binary, default build/kiln-shim; built with cmake when missing),
# KILN_PYTHON_DIR (the runner's Python files to copy beside it, default templates/python),
# BENCH_NATIVE_LIB (a prebuilt native no-op predictor library; default: tests/fixtures/native/noop.c
# compiled against include/, when both exist). Everything the script starts or makes is removed at the end,
# on failure or interruption too.
#
# Prints a Markdown table on stdout; progress and the raw runs go to stderr. The promises are checked for
# information only: the script exits 0 unless a command fails. Dropping the page cache needs root: without
# it, the prefetch rows are measured with a warm cache and say so.
# The bash -c script below is single-quoted on purpose: it expands its own arguments.
# shellcheck disable=SC2016
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
wrk_secs=${BENCH_WRK_SECONDS:-8}
conns=${BENCH_CONNECTIONS:-32}
reps=${BENCH_REPS:-3}
start_reps=${BENCH_START_REPS:-5}
nfiles=${BENCH_FILES:-4}
mib=${BENCH_FILE_MIB:-512}
shim=${KILN_SHIM:-$root/build/kiln-shim}
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

for v in wrk_secs conns reps start_reps nfiles mib; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (${!v})"
done
[[ -n ${EPOCHREALTIME:-} ]] || die "needs bash 5 (EPOCHREALTIME)"
for tool in openssl python3 curl awk sort cc; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

sudo=; [[ $(id -u) == 0 ]] || sudo=sudo
if ! command -v wrk >/dev/null || [[ ! -x /usr/sbin/nginx ]]; then
    say "installing wrk and nginx-light (apt-get install -y wrk nginx-light)"
    $sudo apt-get install -y wrk nginx-light >&2 ||
        { $sudo apt-get update >&2 && $sudo apt-get install -y wrk nginx-light >&2; }
fi
nginx_bin=/usr/sbin/nginx
[[ -x $nginx_bin ]] || die "$nginx_bin is missing"

need_built KILN_SHIM "$shim" kiln-shim

make_work shim
pids=() # servers started by this script (shims and nginx masters)
cleanup() {
    local p
    for p in "${pids[@]}"; do stop_pid "$p"; done
    # A shim the poller started and could not stop (the poller writes its pid).
    for p in "$work"/*.pid; do [[ -f $p ]] && stop_pid "$(cat "$p")"; done
    rm -rf "$work"
    [[ -z ${shm_tmp:-} ]] || rm -rf "$shm_tmp"
    if ((made_base)); then rmdir "$base" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap_signals

# A private copy of the binary, laid out as an install (bin/ and python/ side by side, where kiln-shim looks
# for kiln_runner.py): a rebuild of build/ or an edit of templates/ during the run changes nothing measured.
mkdir -p "$work/bin"
cp "$shim" "$work/bin/kiln-shim"
cp -r "${KILN_PYTHON_DIR:-$root/templates/python}" "$work/python"
shim=$work/bin/kiln-shim
export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES KILN_PREFETCH COG_SETUP_TIMEOUT PORT KILN_PYTHON_DIR TMPDIR

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- helpers (snap and the rest: bench/lib.sh)
# tree_ticks PID: "TOTAL OWN": CPU ticks (user + system, reaped children included) of PID and all its
# descendants, and of PID alone; from one pass over /proc/*/stat (no need for /proc/PID/task/TID/children,
# which not every kernel has).
tree_ticks() {
    local f s pid
    local -A parent ticks own
    for f in /proc/[0-9]*/stat; do
        { read -r s <"$f"; } 2>/dev/null || continue
        pid=${s%% *}
        s=${s##*) }
        read -r -a s <<<"$s"
        parent[$pid]=${s[1]}
        own[$pid]=$((s[11] + s[12]))
        ticks[$pid]=$((s[11] + s[12] + s[13] + s[14]))
    done
    local t=0 p q
    local todo=("$1")
    while ((${#todo[@]})); do
        p=${todo[0]}
        todo=("${todo[@]:1}")
        t=$((t + ${ticks[$p]:-0}))
        for q in "${!parent[@]}"; do [[ ${parent[$q]} == "$p" ]] && todo+=("$q"); done
    done
    echo "$t ${own[$1]:-0}"
}
T=0 OTHER=0 SRV=0 SRV_OWN=0 TOOL=0
# timeit SERVERPID CMD...: run CMD; T = its wall seconds; TOOL, SRV and SRV_OWN = the share of the machine's
# CPUs (percent) that CMD, the server's process tree (SERVERPID 0: none) and the server's first process
# alone used; OTHER = what everything else used (other processes, softirq and steal time not charged to a
# process included).
timeit() {
    local srv=$1 t0 t1 b0 m0 s0=0 s1=0 o0=0 o1=0
    shift
    snap; b0=$BUSY m0=$MINE
    ((srv)) && read -r s0 o0 < <(tree_ticks "$srv")
    t0=$EPOCHREALTIME
    "$@"
    t1=$EPOCHREALTIME
    ((srv)) && read -r s1 o1 < <(tree_ticks "$srv")
    snap
    T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    local share='function s(x) { p = t > 0 ? 100 * x / hz / t / n : 0; if (p < 0) p = 0; return sprintf("%.0f", p) }'
    OTHER=$(awk -v x="$((BUSY - b0 - (MINE - m0) - (s1 - s0)))" -v hz="$hz" -v t="$T" -v n="$ncpu" "$share BEGIN { print s(x) }")
    TOOL=$(awk -v x="$((MINE - m0))" -v hz="$hz" -v t="$T" -v n="$ncpu" "$share BEGIN { print s(x) }")
    SRV=$(awk -v x="$((s1 - s0))" -v hz="$hz" -v t="$T" -v n="$ncpu" "$share BEGIN { print s(x) }")
    SRV_OWN=$(awk -v x="$((o1 - o0))" -v hz="$hz" -v t="$T" -v n="$ncpu" "$share BEGIN { print s(x) }")
    note_other
}
sumof() { printf '%s\n' "$@" | awk '{ s += $1 } END { print s + 0 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }

# ---------------------------------------------------------------- the projects
# The Python no-op: async, so that concurrency.max 32 lets all 32 connections in (a sync predictor takes
# one prediction at a time and answers 409 to the others). kiln's schema rejects `-> None` ("unsupported
# output type 'None'"), so it is `-> Any` returning None: the response's output is null all the same.
pyproj=$work/py
mkdir -p "$pyproj"
cat >"$pyproj/predict.py" <<'EOF'
from typing import Any

from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        pass

    async def predict(self) -> Any:
        return None
EOF
printf 'run: predict.py:Predictor\nconcurrency:\n  max: %s\n' "$conns" >"$pyproj/kiln.yaml"

# The native no-op, when another part of kiln provides it.
natproj=$work/native
native_why=
native_lib=${BENCH_NATIVE_LIB:-}
if [[ -z $native_lib ]]; then
    if [[ ! -f $root/include/kiln/predictor.h || ! -f $root/tests/fixtures/native/noop.c ]]; then
        native_why="not available yet: include/kiln/predictor.h or tests/fixtures/native/noop.c is missing"
    else
        mkdir -p "$natproj"
        if cc -O2 -shared -fPIC -I"$root/include" -o "$natproj/noop.so" "$root/tests/fixtures/native/noop.c" 2>"$work/native-cc.log"; then
            native_lib=$natproj/noop.so
        else
            native_why="not available yet: tests/fixtures/native/noop.c does not compile ($(head -n 1 "$work/native-cc.log"))"
        fi
    fi
fi
if [[ -z $native_why ]]; then
    mkdir -p "$natproj"
    [[ $native_lib == "$natproj/noop.so" ]] || cp "$native_lib" "$natproj/noop.so"
    printf 'run: native:noop.so\nconcurrency:\n  max: %s\n' "$conns" >"$natproj/kiln.yaml"
fi

# The poller: launches a command, polls GET /health-check every 5 ms until the status is READY (or until
# kiln.prefetch.done), prints the seconds from launch (and the prefetch's own `seconds`), then stops it.
cat >"$work/poll.py" <<'EOF'
import http.client, json, os, signal, subprocess, sys, time
mode, port, pidfile, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
cmd = sys.argv[5:]
with open(log, "ab") as err:
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    with open(pidfile, "w") as f:
        f.write(str(p.pid))
    out, status, deadline = None, "", t0 + 120
    while time.monotonic() < deadline and p.poll() is None:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health-check")
            j = json.loads(c.getresponse().read())
            c.close()
            status = j.get("status", "")
            if mode == "ready" and status == "READY":
                out = "%.4f" % (time.monotonic() - t0)
            elif mode == "prefetch" and ((j.get("kiln") or {}).get("prefetch") or {}).get("done"):
                pf = j["kiln"]["prefetch"]
                out = "%.4f %.4f %d %d" % (time.monotonic() - t0, pf["seconds"], pf["bytes_done"], pf["missing"])
            elif status in ("SETUP_FAILED", "DEFUNCT"):
                break
        except (OSError, http.client.HTTPException, ValueError):
            pass
        if out:
            break
        time.sleep(0.005)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    os.unlink(pidfile)
if not out:
    sys.exit("no %s: last status %r, exit %r" % (mode, status, p.returncode))
print(out)
EOF
# poll MODE PROJECT [ENV=V...]: POLL = the poller's output for one shim launch.
POLL=
poll() {
    local mode=$1 proj=$2 port
    shift 2
    port=$(free_port)
    POLL=$(env "$@" python3 "$work/poll.py" "$mode" "$port" "$work/poll.pid" "$proj.log" \
        "$shim" --project "$proj" --host 127.0.0.1 --port "$port") ||
        { tail -n 5 "$proj.log" >&2; die "kiln-shim did not reach $mode on $proj"; }
}

# ---------------------------------------------------------------- the servers
# wait_up URL: until something answers HTTP there (10 s at most).
wait_up() {
    for _ in $(seq 200); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true)
        [[ -n $code && $code != 000 ]] && return 0
        sleep 0.05
    done
    return 1
}
# start_shim PROJECT [ENV=V...]: URL and SPID of a shim serving PROJECT, READY.
start_shim() {
    local proj=$1 port s
    shift
    port=$(free_port)
    env "$@" "$shim" --project "$proj" --host 127.0.0.1 --port "$port" 2>>"$proj.serve.log" </dev/null &
    SPID=$!
    pids+=("$SPID")
    URL=http://127.0.0.1:$port
    for _ in $(seq 300); do
        s=$(curl -s --max-time 2 "$URL/health-check" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true)
        [[ $s == READY ]] && return 0
        [[ $s == SETUP_FAILED || $s == DEFUNCT ]] && break
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    say "kiln-shim on $proj: status '$s'; $(tail -n 3 "$proj.serve.log")"
    return 1
}

ngx=$work/nginx
mkdir -p "$ngx/tmp" "$ngx/logs"
ngx_port=$(free_port)
# Debian's nginx, as small as it gets: `return 200` on loopback, no access log, one worker per CPU.
cat >"$ngx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $ngx/nginx.pid;
error_log $ngx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $ngx/tmp/body;
    proxy_temp_path $ngx/tmp/proxy;
    fastcgi_temp_path $ngx/tmp/fastcgi;
    uwsgi_temp_path $ngx/tmp/uwsgi;
    scgi_temp_path $ngx/tmp/scgi;
    server {
        listen 127.0.0.1:$ngx_port;
        location / { return 200; }
    }
}
EOF
"$nginx_bin" -p "$ngx/" -c "$ngx/nginx.conf" -e "$ngx/logs/error.log" </dev/null >"$ngx/logs/stdout.log" 2>&1 &
ngx_pid=$!
pids+=("$ngx_pid")
ngx_url=http://127.0.0.1:$ngx_port/
wait_up "$ngx_url" || { cat "$ngx/logs/"* >&2; die "nginx did not start"; }
say "nginx $("$nginx_bin" -v 2>&1 | sed 's/.*nginx\///') on $ngx_url (pid $ngx_pid)"

# Each measured server: its row name, URL, pid and label. The shim rows with `-tmpfs` run with TMPDIR on a
# tmpfs (information): the shim makes and removes a directory for the file inputs of every prediction under
# $TMPDIR (default /tmp; on this kind of machine, the root file system on disk).
declare -A URL_OF PID_OF LABEL_OF
rows=(nginx)
URL_OF[nginx]=$ngx_url PID_OF[nginx]=$ngx_pid LABEL_OF[nginx]="nginx \`return 200\`"
shm_tmp=
if [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]]; then
    shm_tmp=/dev/shm/$(basename "$work")
    mkdir -p "$shm_tmp"
fi
# add_shim ROW PROJECT LABEL [ENV=V...]: start a shim on PROJECT and add it as ROW; 1 if it does not serve.
add_shim() {
    local row=$1 proj=$2 label=$3 code
    shift 3
    start_shim "$proj" "$@" || { stop_pid "$SPID"; return 1; }
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d '{"input":{}}' "$URL/predictions")
    if [[ $code != 2* ]]; then
        say "kiln-shim on $proj: POST /predictions answered $code"
        stop_pid "$SPID"
        return 1
    fi
    rows+=("$row")
    URL_OF[$row]=$URL/predictions PID_OF[$row]=$SPID LABEL_OF[$row]=$label
    say "kiln-shim, $label, on $URL/predictions (pid $SPID)"
}
add_shim python "$pyproj" "Python async no-op (\`concurrency.max: $conns\`)" ||
    die "the Python no-op predictor does not serve"
[[ -z $shm_tmp ]] || add_shim python-tmpfs "$pyproj" "Python async no-op, \`TMPDIR\` on tmpfs (information)" TMPDIR="$shm_tmp" ||
    die "the Python no-op predictor does not serve with TMPDIR=$shm_tmp"
if [[ -z $native_why ]]; then
    if ! add_shim native "$natproj" "native no-op (\`concurrency.max: $conns\`)"; then
        native_why="not available yet: the shim does not serve run: native:noop.so ($(tail -n 1 "$natproj.serve.log" | cut -c1-200))"
    elif [[ -n $shm_tmp ]]; then
        add_shim native-tmpfs "$natproj" "native no-op, \`TMPDIR\` on tmpfs (information)" TMPDIR="$shm_tmp" || true
    fi
fi
[[ -z $native_why ]] || say "native no-op: $native_why"

# ---------------------------------------------------------------- 1. requests per second
cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"input":{}}'
wrk.headers["Content-Type"] = "application/json"
EOF
wrk_threads=$ncpu
# wrk_run NAME URL SERVERPID: one timed wrk run; its figures appended to NAME's arrays.
declare -A RPS P99 NON2XX ERRS REQS SRVCPU SRVOWN WRKCPU OTHCPU
wrk_run() {
    local name=$1 url=$2 srv=$3 out=$work/wrk-$1.txt rps p99 n2 er rq
    timeit "$srv" bash -c 'wrk -t"$1" -c"$2" -d"$3"s --latency -s "$4" "$5" >"$6"' _ \
        "$wrk_threads" "$conns" "$wrk_secs" "$work/post.lua" "$url" "$out"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    # p99 in ms, whatever unit wrk chose.
    p99=$(awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
        m = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1; printf "%.2f", v * m }' "$out")
    n2=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' "$out")
    er=$(awk '/Socket errors/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$out")
    rq=$(awk '/requests in/ { print $1 }' "$out")
    RPS[$name]+=" $rps" P99[$name]+=" $p99" NON2XX[$name]+=" ${n2:-0}" ERRS[$name]+=" ${er:-0}"
    REQS[$name]+=" $rq" SRVCPU[$name]+=" $SRV" SRVOWN[$name]+=" $SRV_OWN" WRKCPU[$name]+=" $TOOL" OTHCPU[$name]+=" $OTHER"
    say "  $name: $rps req/s, p99 $p99 ms, $rq requests, non-2xx ${n2:-0}, socket errors ${er:-0}; CPU: server $SRV % (its first process $SRV_OWN %), wrk $TOOL %, others $OTHER % of $ncpu CPUs"
}

say "warming up each server (wrk, 2 s)"
for name in "${rows[@]}"; do wrk -t"$wrk_threads" -c"$conns" -d2s -s "$work/post.lua" "${URL_OF[$name]}" >/dev/null; done
for ((r = 1; r <= reps; r++)); do
    say "wrk round $r: $wrk_threads threads, $conns connections, $wrk_secs s each"
    for name in "${rows[@]}"; do wrk_run "$name" "${URL_OF[$name]}" "${PID_OF[$name]}"; done
done
for p in "${pids[@]}"; do stop_pid "$p"; done
pids=()

# ---------------------------------------------------------------- 2. start to READY
say "start to READY, $start_reps times each (poll every 5 ms)"
t_ready_py=() t_ready_nat=()
for ((r = 1; r <= start_reps; r++)); do
    poll ready "$pyproj"
    t_ready_py+=("$POLL")
    if [[ -z $native_why ]]; then
        poll ready "$natproj"
        t_ready_nat+=("$POLL")
    fi
    say "  round $r: Python ${t_ready_py[-1]} s${t_ready_nat:+, native ${t_ready_nat[-1]} s}"
done

# ---------------------------------------------------------------- 3. prefetch from a cold page cache
file_bytes=$((mib * 1048576))
weight_bytes=$((nfiles * file_bytes))
need_free_mib $((nfiles * mib + 256))
mkdir -p "$work/weights"
make_weights "$work/weights"
sync
cache=cold
drop() { sync && echo 3 >/proc/sys/vm/drop_caches; }
if ! drop 2>/dev/null; then
    cache=warm
    say "warning: cannot drop the page cache (echo 3 > /proc/sys/vm/drop_caches needs root): measuring with a warm cache"
    cat "${wfiles[@]}" >/dev/null
fi
catfiles() { cat "$@" >/dev/null; }
t_cat=() t_pf=() t_pf_rep=()
for ((r = 1; r <= reps; r++)); do
    [[ $cache == warm ]] || drop
    timeit 0 catfiles "${wfiles[@]}"
    t_cat+=("$T")
    say "prefetch round $r: cat ${T}s ($cache cache; others $OTHER % CPU)"
    [[ $cache == warm ]] || drop
    poll prefetch "$pyproj" KILN_PREFETCH_FILES="$(printf '%s\n' "${wfiles[@]}")"
    read -r pf_wall pf_rep pf_bytes pf_missing <<<"$POLL"
    ((pf_bytes == weight_bytes && pf_missing == 0)) || die "the shim prefetched $pf_bytes bytes ($pf_missing missing), not $weight_bytes"
    t_pf+=("$pf_wall") t_pf_rep+=("$pf_rep")
    say "prefetch round $r: kiln-shim ${pf_wall}s from launch to done (the report's seconds: $pf_rep)"
done
rm -rf "$work/weights"

# ---------------------------------------------------------------- the table
# med / sum "V1 V2 ...": the median / sum of a space-separated list.
med() { local v; read -r -a v <<<"$1"; median "${v[@]}"; }
sum() { local v; read -r -a v <<<"$1"; sumof "${v[@]}"; }
ngx_rps=$(med "${RPS[nginx]}")
# The rows of the table for each server: requests, then errors and CPU.
rps_rows='' err_rows='' runs_rps='' runs_p99=''
for name in "${rows[@]}"; do
    prefix="kiln-shim, "
    [[ $name != nginx ]] || prefix=
    rps_rows+="| $prefix${LABEL_OF[$name]} | $(fmt "$(med "${RPS[$name]}")" 0) req/s, p99 $(fmt "$(med "${P99[$name]}")" 2) ms"
    [[ $name == nginx ]] || rps_rows+=" ($(ratio "$(med "${RPS[$name]}")" "$ngx_rps")x nginx)"
    rps_rows+=" | | |"$'\n'
    srv=$(med "${SRVCPU[$name]}") srv_own=$(med "${SRVOWN[$name]}")
    case $name in
    nginx) split="master and workers" ;;
    python*) split="kiln-shim $srv_own %, Python worker $((srv - srv_own)) %" ;;
    *) split="kiln-shim $srv_own %" ;;
    esac
    err_rows+="| $name: non-2xx, socket errors; CPU (% of $ncpu CPUs, medians) | $(sum "${NON2XX[$name]}") and $(sum "${ERRS[$name]}") of $(sum "${REQS[$name]}") requests; server $srv % ($split), wrk $(med "${WRKCPU[$name]}") %, rest of the machine $(med "${OTHCPU[$name]}") % | | |"$'\n'
    runs_rps+=" | $name${RPS[$name]}" runs_p99+=" | $name${P99[$name]}"
done
if [[ -z $native_why ]]; then
    nat_ratio=$(ratio "$(med "${RPS[native]}")" "$ngx_rps")
    nat_row="| native no-op / nginx (requests/s) | ${nat_ratio}x | >= 0.5x | $(verdict "$nat_ratio" ">=" 0.5) |"
    nat_ready="| start to READY, native, empty setup | $(fmt "$(median "${t_ready_nat[@]}")") s | (information) | |"
else
    rps_rows+="| kiln-shim, native no-op | $native_why | | |"$'\n'
    nat_row="| native no-op / nginx (requests/s) | $native_why | >= 0.5x | — |"
    nat_ready="| start to READY, native, empty setup | $native_why | (information) | |"
fi
m_cat=$(median "${t_cat[@]}")
m_pf=$(median "${t_pf[@]}")
m_pf_rep=$(median "${t_pf_rep[@]}")
pf_ratio=$(ratio "$m_pf" "$m_cat")
pf_ratio_rep=$(ratio "$m_pf_rep" "$m_cat")
if ((${#others[@]})); then
    quiet_line="other processes used $(fmt "$(median "${others[@]}")" 0) % of the CPUs during the median timed run, $(maxof "${others[@]}") % at most"
    (($(maxof "${others[@]}") > 10)) && quiet_line+=": the machine was not quiet, so the timings are noisy"
else
    quiet_line="no timed run lasted 0.25 s"
fi

cat <<EOF

kiln-shim benchmark: wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), $wrk_threads threads, $conns connections, ${wrk_secs} s per run, POST {"input":{}} to every server;
start to READY median of $start_reps; prefetch of $nfiles x $mib MiB, $cache page cache, median of $reps.
machine: $(machine_line)

| figure | measured | promise | |
|---|---|---|---|
${rps_rows}${err_rows}$nat_row
| start to READY, Python, empty setup | $(fmt "$(median "${t_ready_py[@]}")") s | (information) | |
$nat_ready
| \`cat\` of the weights, $cache cache | $(fmt "$m_cat") s ($(gibs "$m_cat") GiB/s) | | |
| kiln-shim prefetch, launch to \`done\` ($cache cache) | $(fmt "$m_pf") s ($(gibs "$m_pf") GiB/s); report's \`seconds\` $(fmt "$m_pf_rep") s | | |
| prefetch / \`cat\` | ${pf_ratio}x (report's \`seconds\`: ${pf_ratio_rep}x) | <= 1.10x | $(verdict "$pf_ratio" "<=" 1.10) |

$quiet_line
runs: req/s${runs_rps}
      p99 ms${runs_p99}
      READY s python ${t_ready_py[*]}${t_ready_nat:+ | native ${t_ready_nat[*]}}
      cat s ${t_cat[*]} | prefetch s ${t_pf[*]} (report ${t_pf_rep[*]})
EOF
