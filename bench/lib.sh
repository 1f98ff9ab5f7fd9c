# SPDX-License-Identifier: Apache-2.0
# bench/lib.sh: the helpers bench/build.sh, bench/push.sh, bench/pull.sh and bench/shim.sh share; sourced, never run.
# shellcheck shell=bash

# me: the script's name for messages, e.g. bench/build.sh.
me=bench/${0##*/}

# say MSG...: print MSG on stderr.
say() { printf '%s\n' "$*" >&2; }
# die MSG...: print "bench/SCRIPT: MSG" on stderr and exit 1.
die() { say "$me: $*"; exit 1; }

# need_posint VALUE NAME: die unless VALUE is a positive integer (message "NAME must be a positive integer").
need_posint() { [[ $1 =~ ^[1-9][0-9]*$ ]] || die "$2 must be a positive integer"; }

# need_gnu_time: install Debian's `time` package when /usr/bin/time is missing (GNU time gives the peak
# RSS, -f %M); progress on stderr.
need_gnu_time() {
    local sudo=
    [[ -x /usr/bin/time ]] && return 0
    say "installing GNU time (apt-get install -y time)"
    [[ $(id -u) == 0 ]] || sudo=sudo
    $sudo apt-get install -y time >&2 || { $sudo apt-get update >&2 && $sudo apt-get install -y time >&2; }
}

# need_built VAR PATH TARGET: die if the environment variable VAR is set but PATH is not an executable;
# build the cmake TARGET into build/ when PATH is missing (progress on stderr). Needs $root.
need_built() {
    local var=$1 path=$2 target=$3
    if [[ -n ${!var:-} && ! -x $path ]]; then
        die "$var=$path is not an executable"
    elif [[ ! -x $path ]]; then
        say "building $target"
        cmake -S "$root" -B "$root/build" >/dev/null
        cmake --build "$root/build" --target "$target" -j"$(nproc)" >&2
    fi
}

# need_kiln: sets kiln_build (KILN_BUILD, else build/) and kiln (KILN, else the build tree's kiln); builds
# kiln, kiln-shim and the runtime layer into build/ when neither is set and build/kiln is missing. Needs $root.
need_kiln() {
    kiln_build=${KILN_BUILD:-$root/build}
    kiln=${KILN:-$kiln_build/kiln}
    if [[ -z ${KILN:-} && -z ${KILN_BUILD:-} && ! -x $kiln ]]; then
        say "building kiln, kiln-shim and the runtime layer"
        cmake -S "$root" -B "$kiln_build" >/dev/null
        cmake --build "$kiln_build" --target kiln kiln-shim kiln-runtime -j"$(nproc)" >&2
    fi
    need_built KILN "$kiln" kiln
}

# private_kiln: the kiln to measure, a private copy in $work (a rebuild of build/ during the run must not
# change what is measured): KILN_BUILD installed with `cmake --install` into $work/prefix, as users get kiln
# (the shim, the runner files, the runtime layer built with kiln); or the binary KILN with the kiln-shim and
# kiln-runtime/ beside it. Sets kiln.
private_kiln() {
    if [[ -z ${KILN:-} ]]; then
        [[ -f $kiln_build/cmake_install.cmake ]] || die "KILN_BUILD=$kiln_build is not a CMake build tree"
        say "installing kiln from $kiln_build (cmake --install --prefix $work/prefix)"
        cmake --install "$kiln_build" --prefix "$work/prefix" >/dev/null
        kiln=$work/prefix/bin/kiln
    else
        local from
        from=$(dirname "$kiln")
        mkdir -p "$work/bin"
        cp "$kiln" "$work/bin/kiln"
        if [[ -x $from/kiln-shim ]]; then cp "$from/kiln-shim" "$work/bin/"; fi
        if [[ -d $from/kiln-runtime ]]; then cp -r "$from/kiln-runtime" "$work/bin/"; fi
        kiln=$work/bin/kiln
    fi
}

# make_work NAME: make the work directory; sets base (BENCH_DIR or bench/work), made_base (1 when this
# call made base, so that cleanup removes it) and work (a fresh base/NAME.XXXXXX). Needs $here.
make_work() {
    base=${BENCH_DIR:-$here/work}
    made_base=0
    [[ -d $base ]] || made_base=1
    mkdir -p "$base"
    work=$(mktemp -d "$base/$1.XXXXXX")
}

# remove_work: remove the work directory, and its parent when make_work made it (an EXIT trap).
remove_work() {
    rm -rf "$work"
    if ((made_base)); then rmdir "$base" 2>/dev/null || true; fi
}

# trap_signals: on HUP, INT and TERM exit with 128 + the signal's number, so that the EXIT trap (cleanup)
# runs on interruption too.
trap_signals() {
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# stop_pid PID: stop a process this script started: TERM, up to 5 s for it to go, then KILL; reaps it.
stop_pid() {
    local p=$1
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

# need_free_mib MIB: die unless more than MIB MiB are free under $work; sets avail_mib.
need_free_mib() {
    avail_mib=$(df -Pm "$work" | awk 'NR == 2 { print $4 }')
    ((avail_mib > $1)) || die "needs ${1} MiB free under $base, has ${avail_mib} MiB"
}

# start_registry: start Debian's docker-registry ($regbin) on a free loopback port, with filesystem storage
# in a fresh directory under BENCH_REGISTRY_DIR (default $work), and wait until it answers /v2/ (a port
# taken meanwhile is tried again, up to 3 times). Sets regroot (that directory: the caller's cleanup removes
# it), regdata (the storage), reglog, regpid (the caller's cleanup stops it: stop_pid), port and reg
# (127.0.0.1:PORT); says so on stderr. Needs openssl, curl and python3.
start_registry() {
    regroot=$(mktemp -d "${BENCH_REGISTRY_DIR:-$work}/registry.XXXXXX")
    regdata=$regroot/data
    reglog=$regroot/registry.log
    mkdir -p "$regdata"
    local try up code
    port=
    for try in 1 2 3; do
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        # Debian's docker-registry (distribution) with filesystem storage and nothing else: no blob descriptor
        # cache (a deleted storage must read as empty), no access log, warnings only.
        cat >"$regroot/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $regdata
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: $(openssl rand -hex 16)
EOF
        # A clean environment: distribution reads REGISTRY_* variables as configuration overrides.
        env -i PATH="$PATH" "$regbin" serve "$regroot/config.yml" >>"$reglog" 2>&1 </dev/null &
        regpid=$!
        up=0
        for _ in $(seq 200); do
            kill -0 "$regpid" 2>/dev/null || break
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/v2/" 2>/dev/null || true)
            if [[ -n $code && $code != 000 ]]; then up=1; break; fi
            sleep 0.1
        done
        ((up)) && break
        kill -KILL "$regpid" 2>/dev/null || true
        wait "$regpid" 2>/dev/null || true
        regpid=
        if ((try < 3)) && grep -q "address already in use" "$reglog"; then continue; fi
        tail -n 20 "$reglog" >&2
        die "docker-registry did not start"
    done
    reg=127.0.0.1:$port
    say "registry: $regbin on $reg (pid $regpid), storage in $regdata"
}

# The benchmarks' projects build on scratch, as the tests do: the weights, the runtime layer and the code are
# what is measured, and Docker Hub (the default Python base, python:<python_version>-slim) may not be reachable.
export KILN_PYTHON_BASE=scratch KILN_ALLOW_NO_PYTHON=1

# write_project DIR: the benchmarks' model project in DIR (kiln.yaml, predict.py, an empty weights/).
write_project() {
    mkdir -p "$1/weights"
    cat >"$1/kiln.yaml" <<'EOF'
build:
  python_version: "3.11"
run: predict.py:Predictor
weights: ["weights/*"]
EOF
    cat >"$1/predict.py" <<'EOF'
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.prefix = "bench"

    def predict(self, text: str = Input(description="text", default="x")) -> str:
        return f"{self.prefix}: {text}"
EOF
}

# make_weights DIR: $nfiles pseudo-random files of $file_bytes bytes in DIR (model-00000.safetensors, ...;
# an AES-128-CTR keystream, the same for every run); says so on stderr; sets the array wfiles.
make_weights() {
    local i f
    say "making $nfiles weight files of $mib MiB (pseudo-random, AES-128-CTR keystream)"
    wfiles=()
    for ((i = 0; i < nfiles; i++)); do
        f=$1/model-$(printf '%05d' "$i").safetensors
        (
            set +o pipefail
            openssl enc -aes-128-ctr -nosalt -pass "pass:kiln-bench-$i" -pbkdf2 -in /dev/zero 2>/dev/null |
                head -c "$file_bytes" >"$f"
        )
        [[ $(stat -c %s "$f") == "$file_bytes" ]] || die "could not write $f"
        wfiles+=("$f")
    done
}

# CPU accounting: ncpu and hz for the timeit functions of each script, `others` collects the share of the
# CPUs other processes used during each timed run of 0.25 s or more.
ncpu=$(nproc)
hz=$(getconf CLK_TCK)
others=()
BUSY=0 MINE=0
# snap: BUSY = CPU ticks the whole machine spent busy (steal included), MINE = ticks this shell and its
# reaped children spent. No process is started, so the snapshot costs nothing.
snap() {
    local u n sy irq sirq st s
    read -r _ u n sy _ _ irq sirq st _ </proc/stat
    BUSY=$((u + n + sy + irq + sirq + st))
    read -r -a s <"/proc/$$/stat"
    MINE=$((s[13] + s[14] + s[15] + s[16]))
}
# note_other: append OTHER to `others` when the run (T seconds) lasted 0.25 s or more: /proc/stat counts in
# clock ticks (10 ms), too coarse for shorter runs.
note_other() {
    if awk -v t="$T" 'BEGIN { exit !(t >= 0.25) }'; then others+=("$OTHER"); fi
}

T=0 OTHER=0
# timeit CMD...: run CMD; T = its wall-clock seconds, OTHER = the share of the machine's CPUs (percent)
# that other processes (or the hypervisor) used meanwhile: a noisy neighbour shows up there. Runs of
# 0.25 s or more are collected in `others` for the summary. Needs snap and note_other above.
timeit() {
    local t0 t1 b0 m0
    snap; b0=$BUSY m0=$MINE
    t0=$EPOCHREALTIME
    "$@"
    t1=$EPOCHREALTIME
    snap
    T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    OTHER=$(awk -v o="$((BUSY - b0 - (MINE - m0)))" -v hz="$hz" -v t="$T" -v n="$ncpu" \
        'BEGIN { p = t > 0 ? 100 * o / hz / t / n : 0; if (p < 0) p = 0; printf "%.0f", p }')
    note_other
}
# median V...: print the median (the mean of the middle two, to 3 decimals, for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# maxof V... / minof V...: print the largest / smallest.
maxof() { printf '%s\n' "$@" | sort -g | tail -n 1; }
minof() { printf '%s\n' "$@" | sort -g | head -n 1; }
# json_num KEY FILE: print the last number with that key (the reports' top-level keys follow their parts).
json_num() { grep -o "\"$1\": *[0-9.eE+-]*" "$2" | tail -n 1 | sed 's/.*: *//'; }
# fmt X [D]: print X with D decimals (default 3).
fmt() { awk -v x="$1" -v d="${2:-3}" 'BEGIN { printf "%.*f", d, x }'; }
# gibs SECONDS: print the GiB/s of reading $weight_bytes in SECONDS (2 decimals; inf for 0).
gibs() { awk -v s="$1" -v b="$weight_bytes" 'BEGIN { if (s > 0) printf "%.2f", b / s / 1073741824; else print "inf" }'; }
# verdict A OP B (OP one of < <= >=): print PASS or MISS.
verdict() {
    if awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
        a += 0; b += 0
        ok = (op == "<") ? a < b : (op == "<=") ? a <= b : (op == ">=") ? a >= b : 0
        exit !ok }'; then echo PASS; else echo MISS; fi
}
# set_quiet_line [NOTE]: sets quiet_line, the summary of `others` under the table (NOTE, when given, goes
# after "% at most"); says the timings are noisy when another process used more than 10 %.
set_quiet_line() {
    if ((${#others[@]})); then
        quiet_line="other processes used $(fmt "$(median "${others[@]}")" 0) % of the CPUs during the median timed run of 0.25 s or more, $(maxof "${others[@]}") % at most${1:+ $1}"
        (($(maxof "${others[@]}") > 10)) && quiet_line+=": the machine was not quiet, so the timings are noisy"
    else
        quiet_line="no timed run lasted 0.25 s, too short to tell whether other processes were busy"
    fi
    return 0
}
# machine_line: print "N CPUs, CPU MODEL, Linux RELEASE, DATE" for the table's header.
machine_line() {
    printf '%s CPUs, %s, Linux %s, %s\n' "$ncpu" "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
        "$(uname -r)" "$(date -u +%Y-%m-%dT%H:%MZ)"
}

# registry_bench NAME TOOL...: what the benchmarks against a local registry (push.sh, pull.sh, coldstart.sh)
# start with: BENCH_FILES/BENCH_FILE_MIB/BENCH_REPS checked (nfiles, mib, reps), bash 5, the TOOLs and
# $regbin there, the installed kiln (need_kiln), a work directory NAME.XXXXXX removed at the end with the
# registry (regpid, regroot) on failure too, a private kiln, and an empty HOME (kiln and skopeo read
# credentials from it: the user's stay out of the way) with KILN_HOME=$work/home.
registry_bench() {
    local name=$1 tool
    shift
    need_posint "$nfiles" BENCH_FILES
    need_posint "$mib" BENCH_FILE_MIB
    need_posint "$reps" BENCH_REPS
    [[ -n ${EPOCHREALTIME:-} ]] || die "needs bash 5 (EPOCHREALTIME)"
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is missing (scripts/deps.sh installs it)"
    done
    [[ -x $regbin ]] || die "$regbin is missing (scripts/deps.sh installs docker-registry)"
    need_kiln
    make_work "$name"
    regpid=
    regroot=
    trap registry_bench_cleanup EXIT
    trap_signals
    private_kiln
    export HOME=$work/userhome KILN_HOME=$work/home
    mkdir -p "$HOME"
}

registry_bench_cleanup() {
    [[ -z $regpid ]] || stop_pid "$regpid"
    [[ -z $regroot ]] || rm -rf "$regroot"
    rm -rf "$work"
    if ((made_base)); then rmdir "$base" 2>/dev/null || true; fi
}

# ---- timings against a registry (push.sh, pull.sh, coldstart.sh; regpid is the registry's process)
REGT=0
# snap_reg: snap (BUSY and MINE), and REGT = ticks the registry (all its threads) spent. No process is started.
snap_reg() {
    local r
    snap
    read -r -a r <"/proc/$regpid/stat"
    REGT=$((r[13] + r[14]))
}
T=0 OTHER=0 CLIENT=0 REGCPU=0
# timeit_reg CMD...: run CMD; T = its wall-clock seconds, CLIENT = CPU seconds of CMD (the tool measured),
# REGCPU = CPU seconds of the registry, OTHER = the share of the machine's CPUs (percent) that anything else
# (other processes, the hypervisor, and interrupts, loopback's softirqs included) used meanwhile: a noisy
# neighbour shows up there. Runs of 0.25 s or more are collected in `others` for the summary.
timeit_reg() {
    local t0 t1 b0 m0 r0
    snap_reg; b0=$BUSY m0=$MINE r0=$REGT
    t0=$EPOCHREALTIME
    "$@"
    t1=$EPOCHREALTIME
    snap_reg
    T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    CLIENT=$(awk -v t="$((MINE - m0))" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }')
    REGCPU=$(awk -v t="$((REGT - r0))" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }')
    OTHER=$(awk -v o="$((BUSY - b0 - (MINE - m0) - (REGT - r0)))" -v hz="$hz" -v t="$T" -v n="$ncpu" \
        'BEGIN { p = t > 0 ? 100 * o / hz / t / n : 0; if (p < 0) p = 0; printf "%.0f", p }')
    note_other
}
# json_first_str KEY FILE: the first string with that key (a report's top-level digest precedes its blobs).
json_first_str() { grep -o "\"$1\": *\"[^\"]*\"" "$2" | head -n 1 | sed 's/.*: *"//; s/"$//'; }
# mibs SECONDS BYTES: MiB a second.
mibs() { awk -v s="$1" -v b="$2" 'BEGIN { if (s > 0) printf "%.0f", b / s / 1048576; else print "inf" }'; }
