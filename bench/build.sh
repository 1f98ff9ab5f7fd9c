#!/usr/bin/env bash
# bench/build.sh: `kiln build` against the fastest way to digest the same weights, side by side.
#
#   bash bench/build.sh                      # 4 files x 512 MiB
#   BENCH_FILES=8 BENCH_FILE_MIB=1024 bash bench/build.sh
#
# Environment: BENCH_FILES (default 4), BENCH_FILE_MIB (default 512), BENCH_REPS (default 3),
# BENCH_DIR (parent of the work directory, default bench/work), KILN_BUILD (a CMake build tree, default
# build/, built with cmake when it has no kiln: installed with `cmake --install` into the work directory,
# and that installed kiln is measured, as users get it), KILN (instead: a binary, copied with the kiln-shim
# and kiln-runtime/ beside it). The work directory is removed at the end.
#
# Prints a Markdown table on stdout; progress and the raw runs go to stderr. The promises are checked for
# information only: the script exits 0 unless a command fails.
# The bash -c scripts below are single-quoted on purpose: they expand their own arguments.
# shellcheck disable=SC2016
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
nfiles=${BENCH_FILES:-4}
mib=${BENCH_FILE_MIB:-512}
reps=${BENCH_REPS:-3}
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

need_posint "$nfiles" BENCH_FILES
need_posint "$mib" BENCH_FILE_MIB
need_posint "$reps" BENCH_REPS
[[ -n ${EPOCHREALTIME:-} ]] || die "needs bash 5 (EPOCHREALTIME)"
for tool in openssl tar xargs du awk sort; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

need_gnu_time
need_kiln

make_work build
trap remove_work EXIT

private_kiln
# kiln's per-user cache (the schema's) in the work directory: the user's own is neither used nor touched.
export XDG_CACHE_HOME=$work/xdg

file_bytes=$((mib * 1048576))
weight_bytes=$((nfiles * file_bytes))
need_free_mib $((nfiles * mib + 256))
avail_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
if ((weight_bytes / 1024 > avail_kib * 8 / 10)); then
    say "warning: the weights ($((weight_bytes >> 20)) MiB) do not fit the page cache; figures include disk reads"
fi

# ---------------------------------------------------------------- the project
proj=$work/model
write_project "$proj"

make_weights "$proj/weights"

# Flush the new files to disk first: background writeback of freshly written gigabytes otherwise runs
# during the first timings and slows them unevenly.
say "flushing the weight files to disk (sync)"
sync "${wfiles[@]}"
say "warming the page cache: reading every weight file once (cat > /dev/null)"
cat "${wfiles[@]}" >/dev/null

# ---------------------------------------------------------------- helpers
pct() { awk -v a="$1" -v b="$weight_bytes" 'BEGIN { printf "%.4f", 100 * a / b }'; }

ref=bench/model:latest
# full_build HOME REPORT [kiln args...]: a kiln build under GNU time (peak RSS in REPORT.rss) inside a
# bash that reads its own /proc/PID/io after reaping kiln (a reaped child's I/O counts are added to the
# parent's), so REPORT.io gets kiln's write_bytes. The two wrappers add a few milliseconds.
full_build() {
    local home=$1 report=$2
    shift 2
    KILN_HOME=$home /usr/bin/time -f %M -o "$report.rss" bash -c '
        report=$1; shift
        "$@" >"$report"; rc=$?
        w=0
        while read -r k v; do [[ $k == write_bytes: ]] && w=$v; done </proc/$$/io
        echo "$w" >"$report.io"
        exit "$rc"' _ "$report" "$kiln" build "$proj" -t "$ref" --json --progress quiet "$@"
}
# rebuild HOME REPORT [kiln args...]: a plain kiln build, nothing around it.
rebuild() {
    local home=$1 report=$2
    shift 2
    KILN_HOME=$home "$kiln" build "$proj" -t "$ref" --json --progress quiet "$@" >"$report"
}

home=$work/home
runs=$work/runs
mkdir -p "$runs"

# One untimed build first, so that the user's cache holds the predictor's schema as it does after a project's
# first build: the rows below on the fixed cost show what that first build costs.
rebuild "$work/h-prime" "$runs/prime.json"
rm -rf "$work/h-prime"

# ---------------------------------------------------------------- full builds and baselines, interleaved
t_kiln=() t_kiln_rep=() t_j1=() t_a=() t_b=() rss=() du_store=() written=() io_write=() hashed=()
for ((r = 1; r <= reps; r++)); do
    rm -rf "$home"
    timeit full_build "$home" "$runs/full$r.json"
    t_kiln+=("$T")
    grep -q '"runtime": true' "$runs/full$r.json" || die "the image has no runtime layer (is kiln-shim installed beside $kiln?)"
    t_kiln_rep+=("$(json_num seconds "$runs/full$r.json")")
    hashed+=("$(json_num bytes_hashed "$runs/full$r.json")")
    written+=("$(json_num bytes_written "$runs/full$r.json")")
    rss+=("$(tail -n 1 "$runs/full$r.json.rss")")
    io_write+=("$(cat "$runs/full$r.json.io")")
    du_store+=("$(du -sb "$home" | cut -f1)")
    say "round $r: kiln build ${T}s (others ${OTHER}% CPU; report ${t_kiln_rep[-1]}s, ${hashed[-1]} B hashed, ${rss[-1]} KiB max RSS, store ${du_store[-1]} B, bytes_written ${written[-1]}, write_bytes ${io_write[-1]})"

    timeit bash -c 'printf "%s\0" "${@:2}" | xargs -0 -n 1 -P "$1" openssl dgst -sha256 >/dev/null' _ "$nfiles" "${wfiles[@]}"
    t_a+=("$T")
    say "round $r: baseline A (openssl dgst -sha256, $nfiles processes) ${T}s (others ${OTHER}% CPU)"

    timeit bash -c 'cd "$1" && tar cf - weights | openssl dgst -sha256 >/dev/null' _ "$proj"
    t_b+=("$T")
    say "round $r: baseline B (tar cf - | openssl dgst -sha256) ${T}s (others ${OTHER}% CPU)"

    rm -rf "$work/home-j1"
    timeit rebuild "$work/home-j1" "$runs/j1-$r.json" -j 1
    t_j1+=("$T")
    say "round $r: kiln build -j 1 ${T}s (others ${OTHER}% CPU)"
done
rm -rf "$work/home-j1"

# ---------------------------------------------------------------- rebuilds (store of the last full build)
t_same=() t_code=() hashed_same=() hashed_code=()
for ((r = 1; r <= reps; r++)); do
    timeit rebuild "$home" "$runs/same$r.json"
    t_same+=("$T")
    hashed_same+=("$(json_num bytes_hashed "$runs/same$r.json")")
    say "rebuild $r, nothing changed: ${T}s (others ${OTHER}% CPU), ${hashed_same[-1]} bytes hashed"
done
for ((r = 1; r <= reps; r++)); do
    echo "# bench change $r" >>"$proj/predict.py"
    timeit rebuild "$home" "$runs/code$r.json"
    t_code+=("$T")
    hashed_code+=("$(json_num bytes_hashed "$runs/code$r.json")")
    say "rebuild $r, predict.py changed: ${T}s (others ${OTHER}% CPU), ${hashed_code[-1]} bytes hashed"
done

# The same code change with the Debian interpreter, when python3 on PATH is another (a pyenv shim, say).
t_code_sys=()
rebuild_sys() { KILN_PYTHON=/usr/bin/python3 rebuild "$@"; }
if [[ -x /usr/bin/python3 && $(command -v python3) != /usr/bin/python3 && -z ${KILN_PYTHON:-} ]]; then
    for ((r = 1; r <= reps; r++)); do
        echo "# bench change, /usr/bin/python3 $r" >>"$proj/predict.py"
        timeit rebuild_sys "$home" "$runs/codesys$r.json"
        t_code_sys+=("$T")
        say "rebuild $r, predict.py changed, KILN_PYTHON=/usr/bin/python3: ${T}s (others ${OTHER}% CPU)"
    done
fi

# ---------------------------------------------------------------- the fixed cost of a first build
# A project with one 1 KiB weight file and the same predict.py, each time in a fresh store: with the user's
# cache as the builds above left it (the predictor described before), with an empty one too (the schema
# generator runs), and without the runtime layer and the schema at all (KILN_SHIM pointing nowhere): the
# floor. The fixed cost is what the first two take above the floor.
small=$work/small
write_project "$small"
head -c 1024 /dev/zero >"$small/weights/w.bin"
small_build() {
    local home=$1 report=$2
    shift 2
    rm -rf "$home"
    env "$@" KILN_HOME="$home" "$kiln" build "$small" -t bench/small:latest --json --progress quiet >"$report" 2>/dev/null
}
small_build "$work/h-small" "$runs/small0.json" # the user's cache gets this predictor's schema
t_fix=() t_cold=() t_floor=()
for ((r = 1; r <= reps; r++)); do
    timeit small_build "$work/h-small" "$runs/small$r.json"
    t_fix+=("$T")
    grep -q '"runtime": true' "$runs/small$r.json" || die "the small image has no runtime layer"
    rm -rf "$work/xdg-cold"
    timeit small_build "$work/h-small" "$runs/cold$r.json" XDG_CACHE_HOME="$work/xdg-cold"
    t_cold+=("$T")
    timeit small_build "$work/h-small" "$runs/floor$r.json" KILN_SHIM=/nonexistent
    t_floor+=("$T")
    say "round $r: small project, fresh store ${t_fix[-1]}s, and an empty user cache ${t_cold[-1]}s, floor (no runtime layer, no schema) ${t_floor[-1]}s"
done
rm -rf "$work/h-small" "$work/xdg-cold"
m_fix=$(median "${t_fix[@]}")
m_cold=$(median "${t_cold[@]}")
m_floor=$(median "${t_floor[@]}")
fixed=$(awk -v a="$m_fix" -v b="$m_floor" 'BEGIN { printf "%.3f", a - b }')
fixed_cold=$(awk -v a="$m_cold" -v b="$m_floor" 'BEGIN { printf "%.3f", a - b }')
python=$(command -v "${KILN_PYTHON:-python3}" || echo "${KILN_PYTHON:-python3}")

# ---------------------------------------------------------------- the table
m_kiln=$(median "${t_kiln[@]}")
m_kiln_rep=$(median "${t_kiln_rep[@]}")
m_j1=$(median "${t_j1[@]}")
m_a=$(median "${t_a[@]}")
m_b=$(median "${t_b[@]}")
m_same=$(median "${t_same[@]}")
m_code=$(median "${t_code[@]}")
m_du=$(maxof "${du_store[@]}")
m_written=$(maxof "${written[@]}")
m_io=$(maxof "${io_write[@]}")
m_rss=$(maxof "${rss[@]}")
r_a=$(awk -v k="$m_kiln" -v a="$m_a" 'BEGIN { printf "%.2f", k / a }')
r_b=$(awk -v k="$m_kiln" -v b="$m_b" 'BEGIN { printf "%.2f", b / k }')
one_pct=$((weight_bytes / 100))
set_quiet_line
rss_mib=$(awk -v k="$m_rss" 'BEGIN { printf "%.1f", k / 1024 }')

cat <<EOF

kiln build benchmark: $nfiles files x $mib MiB = $((weight_bytes >> 20)) MiB of pseudo-random weights,
page cache warmed by reading every file once; median of $reps runs (bytes and memory: the largest of $reps).
machine: $(machine_line)
kiln: $("$kiln" version), $kiln

| figure | measured | promise | |
|---|---|---|---|
| full build, fresh \`KILN_HOME\` (wall) | $(fmt "$m_kiln") s ($(gibs "$m_kiln") GiB/s); report's \`seconds\` $(fmt "$m_kiln_rep") s | | |
| full build, \`-j 1\` (wall) | $(fmt "$m_j1") s ($(gibs "$m_j1") GiB/s) | (information) | |
| baseline A: \`openssl dgst -sha256\`, $nfiles processes at once | $(fmt "$m_a") s ($(gibs "$m_a") GiB/s) | | |
| baseline B: \`tar cf - \| openssl dgst -sha256\` | $(fmt "$m_b") s ($(gibs "$m_b") GiB/s) | | |
| full build / baseline A | ${r_a}x | <= 1.25x | $(verdict "$r_a" "<=" 1.25) |
| baseline B / full build | ${r_b}x faster | >= 2x faster | $(verdict "$r_b" ">=" 2) |
| fixed cost of a first build: runtime layer and schema (fresh store, the predictor described before) | $(fmt "$fixed") s (build $(fmt "$m_fix") s, floor $(fmt "$m_floor") s) | < 0.1 s | $(verdict "$fixed" "<" 0.1) |
| the same with an empty user cache: the schema generator runs (\`$python\`) | $(fmt "$fixed_cold") s (build $(fmt "$m_cold") s) | (information) | |
| rebuild, nothing changed | $(fmt "$m_same") s, $(maxof "${hashed_same[@]}") bytes hashed | < 0.2 s | $(verdict "$m_same" "<" 0.2) |
| rebuild after a code-only change (\`predict.py\`) | $(fmt "$m_code") s, $(maxof "${hashed_code[@]}") bytes hashed | < 0.2 s | $(verdict "$m_code" "<" 0.2) |
$(if ((${#t_code_sys[@]})); then echo "| the same, \`KILN_PYTHON=/usr/bin/python3\` | $(fmt "$(median "${t_code_sys[@]}")") s | (information) | |"; fi)
| store size after a full build (\`du -sb\`) | $m_du B ($(pct "$m_du") % of weights) | < 1 % | $(verdict "$m_du" "<" "$one_pct") |
| report's \`bytes_written\` | $m_written B ($(pct "$m_written") %) | < 1 % | $(verdict "$m_written" "<" "$one_pct") |
| \`write_bytes\` from \`/proc/PID/io\` | $m_io B ($(pct "$m_io") %) | < 1 % | $(verdict "$m_io" "<" "$one_pct") |
| peak memory (max RSS, GNU time \`%M\`) | $rss_mib MiB | < 64 MiB | $(verdict "$m_rss" "<" 65536) |

$quiet_line
runs (s): kiln ${t_kiln[*]} | -j1 ${t_j1[*]} | A ${t_a[*]} | B ${t_b[*]} | rebuild ${t_same[*]} | code change ${t_code[*]} | small ${t_fix[*]} | small, empty user cache ${t_cold[*]} | floor ${t_floor[*]}
EOF
