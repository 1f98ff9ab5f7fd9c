#!/usr/bin/env bash
# bench/push.sh: `kiln push` against `skopeo copy` of the same image to the same local registry, side by side.
#
#   bash bench/push.sh                      # 4 files x 512 MiB
#   BENCH_FILES=8 BENCH_FILE_MIB=1024 bash bench/push.sh
#
# Environment: BENCH_FILES (default 4), BENCH_FILE_MIB (default 512), BENCH_REPS (default 3),
# BENCH_DIR (parent of the work directory, default bench/work), BENCH_REGISTRY_DIR (parent of the
# registry's storage, default the work directory; a tmpfs such as /dev/shm takes the disk out),
# KILN_BUILD / KILN as for bench/build.sh (the installed kiln is measured). Everything the script makes (work
# directory, registry storage, the registry process) is removed at the end, on failure too.
#
# Prints a Markdown table on stdout; progress and the raw runs go to stderr. The promises are checked for
# information only: the script exits 0 unless a command fails.
#
# Every timed full push starts from an empty registry: the registry's storage is deleted (and the disk
# synced) before each one, and each tool always pushes to its own repository (bench/kiln, bench/skopeo), so
# neither kiln's store nor skopeo's blob-info cache can point at another repository to mount from.
# The bash -c script below is single-quoted on purpose: it expands its own arguments.
# shellcheck disable=SC2016
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
nfiles=${BENCH_FILES:-4}
mib=${BENCH_FILE_MIB:-512}
reps=${BENCH_REPS:-3}
regbin=${REGISTRY_BIN:-/usr/bin/docker-registry}
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

need_posint "$nfiles" BENCH_FILES
need_posint "$mib" BENCH_FILE_MIB
need_posint "$reps" BENCH_REPS
[[ -n ${EPOCHREALTIME:-} ]] || die "needs bash 5 (EPOCHREALTIME)"
for tool in openssl curl python3 skopeo du awk sort; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/deps.sh installs it)"
done
[[ -x $regbin ]] || die "$regbin is missing (scripts/deps.sh installs docker-registry)"

need_gnu_time
need_kiln

make_work push
regpid=
regroot=
cleanup() {
    [[ -z $regpid ]] || stop_pid "$regpid"
    [[ -z $regroot ]] || rm -rf "$regroot"
    rm -rf "$work"
    if ((made_base)); then rmdir "$base" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap_signals

private_kiln
# kiln and skopeo read credentials from $HOME: an empty one keeps the user's out of the way.
export HOME=$work/userhome KILN_HOME=$work/home
mkdir -p "$HOME"

file_bytes=$((mib * 1048576))
weight_bytes=$((nfiles * file_bytes))
# The weights, the OCI layout skopeo reads (a second copy), and one pushed image in the registry.
need_free_mib $((3 * nfiles * mib + 512))
avail_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
if ((3 * weight_bytes / 1024 > avail_kib * 8 / 10)); then
    say "warning: the weights, their OCI copy and the registry's copy ($((3 * weight_bytes >> 20)) MiB) do not fit the page cache; figures include disk reads"
fi

# ---------------------------------------------------------------- the registry
regroot=$(mktemp -d "${BENCH_REGISTRY_DIR:-$work}/registry.XXXXXX")
regdata=$regroot/data
reglog=$regroot/registry.log
mkdir -p "$regdata"
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

# wipe_registry: delete everything the registry stores (it keeps no cache of it), then sync, so that the
# next push finds nothing and starts with no writeback of the previous one pending.
wipe_registry() {
    rm -rf "${regdata:?}/docker"
    sync
}

# ---------------------------------------------------------------- the project
proj=$work/model
write_project "$proj"

make_weights "$proj/weights"

kref=$reg/bench/kiln:v1
sref=$reg/bench/skopeo:v1
gref=$reg/bench/skopeo-gzip:v1
oci=$work/oci
say "building the image once: kiln build -t $kref, and the same image as an OCI layout for skopeo"
"$kiln" build "$proj" -t "$kref" --progress quiet --json >"$work/build.json"
"$kiln" build "$proj" -t "$kref" --output "oci:$oci:v1" --progress quiet --json >"$work/build-oci.json"

say "flushing the weight files and the OCI layout to disk (sync)"
sync
say "warming the page cache: reading every weight file and every blob of the OCI layout once (cat > /dev/null)"
cat "${wfiles[@]}" "$oci"/blobs/sha256/* >/dev/null

# ---------------------------------------------------------------- helpers
REGT=0
# snap_reg: snap (BUSY and MINE, see bench/lib.sh), and REGT = ticks the registry (all its threads) spent.
# No process is started.
snap_reg() {
    local r
    snap
    read -r -a r <"/proc/$regpid/stat"
    REGT=$((r[13] + r[14]))
}
T=0 OTHER=0 CLIENT=0 REGCPU=0
# timeit CMD...: run CMD; T = its wall-clock seconds, CLIENT = CPU seconds of CMD (the pushing tool),
# REGCPU = CPU seconds of the registry, OTHER = the share of the machine's CPUs (percent) that anything else
# (other processes, the hypervisor, and interrupts, loopback's softirqs included) used meanwhile: a noisy
# neighbour shows up there. Runs of 0.25 s or more are collected in `others` for the summary.
timeit() {
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
# json_first_str KEY FILE: the first string with that key (the report's top-level digest precedes its blobs).
json_first_str() { grep -o "\"$1\": *\"[^\"]*\"" "$2" | head -n 1 | sed 's/.*: *"//; s/"$//'; }
mibs() { awk -v s="$1" -v b="$2" 'BEGIN { if (s > 0) printf "%.0f", b / s / 1048576; else print "inf" }'; }
# manifest_digest REPO: the digest the registry gives for REPO:v1.
manifest_digest() {
    curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/$1/manifests/v1" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }'
    true
}
# stored: bytes under the registry's storage (to check that a push uploaded everything).
stored() { du -sb "$regdata" | cut -f1; }

# push_rss REPORT [kiln args...]: kiln push under GNU time (peak RSS in REPORT.rss).
push_rss() {
    local report=$1
    shift
    /usr/bin/time -f %M -o "$report.rss" "$kiln" push "$kref" --json --progress quiet "$@" >"$report"
}
# push REPORT [kiln args...]: a plain kiln push, nothing around it.
push() {
    local report=$1
    shift
    "$kiln" push "$kref" --json --progress quiet "$@" >"$report"
}
# skopeo_copy: the baseline, the same image byte for byte. Without --preserve-digests skopeo gzips the
# uncompressed weight layers on the way (its docker:// destination asks for compressed layers), which pushes
# a different image; skopeo_gzip measures that, for information.
skopeo_copy() {
    skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$oci:v1" "docker://$sref"
}
skopeo_gzip() {
    skopeo copy --quiet --dest-tls-verify=false "oci:$oci:v1" "docker://$gref"
}

runs=$work/runs
mkdir -p "$runs"
image_digest=$(json_first_str digest "$work/build.json")

# ---------------------------------------------------------------- full pushes and the baseline, interleaved
t_kiln=() t_kiln_rep=() t_sk=() c_kiln=() r_kiln=() c_sk=() r_sk=() rss=() sent=() st_kiln=() st_sk=()
t_gz=() c_gz=() r_gz=() st_gz=()
# One untimed push first: the first push after the registry starts was slower (on a 2-CPU VM, 7.6 s against
# 5.1-5.4 s, the registry using 12.5 s of CPU against 8), and kiln goes first in every round.
wipe_registry
timeit push "$runs/warmup.json"
say "warm-up: kiln push ${T}s, untimed (others ${OTHER}% CPU; kiln ${CLIENT}s CPU, registry ${REGCPU}s CPU)"
others=()
for ((r = 1; r <= reps; r++)); do
    wipe_registry
    timeit push_rss "$runs/full$r.json"
    t_kiln+=("$T") c_kiln+=("$CLIENT") r_kiln+=("$REGCPU")
    t_kiln_rep+=("$(json_num seconds "$runs/full$r.json")")
    sent+=("$(json_num bytes_sent "$runs/full$r.json")")
    rss+=("$(tail -n 1 "$runs/full$r.json.rss")")
    st_kiln+=("$(stored)")
    [[ $(manifest_digest bench/kiln) == "$image_digest" ]] || die "the registry does not hold $image_digest in bench/kiln"
    say "round $r: kiln push ${T}s (others ${OTHER}% CPU; kiln ${CLIENT}s CPU, registry ${REGCPU}s CPU; report ${t_kiln_rep[-1]}s, ${sent[-1]} B sent, ${rss[-1]} KiB max RSS, registry stores ${st_kiln[-1]} B)"

    wipe_registry
    timeit skopeo_copy
    t_sk+=("$T") c_sk+=("$CLIENT") r_sk+=("$REGCPU")
    st_sk+=("$(stored)")
    d=$(manifest_digest bench/skopeo)
    [[ $d == "$image_digest" ]] || die "skopeo copy --preserve-digests left ${d:-no manifest} in bench/skopeo, not $image_digest"
    say "round $r: skopeo copy --preserve-digests ${T}s (others ${OTHER}% CPU; skopeo ${CLIENT}s CPU, registry ${REGCPU}s CPU; registry stores ${st_sk[-1]} B)"

    wipe_registry
    timeit skopeo_gzip
    t_gz+=("$T") c_gz+=("$CLIENT") r_gz+=("$REGCPU")
    st_gz+=("$(stored)")
    gz_digest=$(manifest_digest bench/skopeo-gzip)
    [[ -n $gz_digest ]] || die "skopeo copy left no manifest in bench/skopeo-gzip"
    say "round $r: skopeo copy (gzips the layers) ${T}s (others ${OTHER}% CPU; skopeo ${CLIENT}s CPU, registry ${REGCPU}s CPU; manifest $gz_digest, registry stores ${st_gz[-1]} B)"
done

image_bytes=$(maxof "${sent[@]}")
((image_bytes >= weight_bytes)) || die "kiln push reported ${image_bytes} B sent, less than the weights"
((image_bytes == $(minof "${sent[@]}"))) || die "the full pushes sent different amounts: ${sent[*]}"
for s in "${st_kiln[@]}" "${st_sk[@]}"; do
    ((s >= weight_bytes)) || die "a full push left only $s B in the registry"
done

# ---------------------------------------------------------------- -j, once each (information)
jobs_list=(1 4 8)
t_jobs=() jobs_line=()
for j in "${jobs_list[@]}"; do
    wipe_registry
    timeit push "$runs/j$j.json" -j "$j"
    t_jobs+=("$T")
    jobs_line+=("-j $j: $(fmt "$T") s ($(mibs "$T" "$image_bytes") MiB/s)")
    say "kiln push -j $j: ${T}s (others ${OTHER}% CPU; kiln ${CLIENT}s CPU, registry ${REGCPU}s CPU)"
done

# ---------------------------------------------------------------- re-push after a code-only change
wipe_registry
push "$runs/first.json"
t_re=() t_re_rep=() t_rebuild=() sent_re=() uploaded_re=()
for ((r = 1; r <= reps; r++)); do
    echo "# bench change $r" >>"$proj/predict.py"
    timeit "$kiln" build "$proj" -t "$kref" --progress quiet --json >"$runs/rebuild$r.json"
    t_rebuild+=("$T")
    timeit push "$runs/re$r.json"
    t_re+=("$T")
    t_re_rep+=("$(json_num seconds "$runs/re$r.json")")
    sent_re+=("$(json_num bytes_sent "$runs/re$r.json")")
    uploaded_re+=("$(grep -c '"action": *"uploaded"' "$runs/re$r.json" || true)")
    new_digest=$(json_first_str digest "$runs/re$r.json")
    [[ $(manifest_digest bench/kiln) == "$new_digest" ]] || die "the re-push did not leave $new_digest in bench/kiln"
    say "re-push $r, predict.py changed: rebuild ${t_rebuild[-1]}s, push ${T}s (report ${t_re_rep[-1]}s), ${sent_re[-1]} B sent, ${uploaded_re[-1]} blobs uploaded"
done

# ---------------------------------------------------------------- the table
m_kiln=$(median "${t_kiln[@]}")
m_kiln_rep=$(median "${t_kiln_rep[@]}")
m_sk=$(median "${t_sk[@]}")
m_gz=$(median "${t_gz[@]}")
m_re=$(median "${t_re[@]}")
m_rebuild=$(median "${t_rebuild[@]}")
m_sent_re=$(maxof "${sent_re[@]}")
m_rss=$(maxof "${rss[@]}")
ratio=$(awk -v k="$m_kiln" -v s="$m_sk" 'BEGIN { printf "%.2f", s / k }')
ratio_gz=$(awk -v k="$m_kiln" -v s="$m_gz" 'BEGIN { printf "%.2f", s / k }')
pct_re=$(awk -v a="$m_sent_re" -v b="$image_bytes" 'BEGIN { printf "%.4f", 100 * a / b }')
rss_mib=$(awk -v k="$m_rss" 'BEGIN { printf "%.1f", k / 1024 }')
one_pct=$((image_bytes / 100))
set_quiet_line "(the registry and the pushing tool not counted)"
regfs=$(df -PT "$regdata" | awk 'NR == 2 { print $2 }')

cat <<EOF

kiln push benchmark: $nfiles files x $mib MiB = $((weight_bytes >> 20)) MiB of pseudo-random weights, image $image_bytes B
(blobs and manifest), pushed over loopback to docker-registry $("$regbin" --version 2>/dev/null | awk '{ print $NF; exit }') on the same machine (storage on $regfs, emptied and
synced before every full push); page cache warmed by reading every file once, registry by one untimed push;
median of $reps runs (memory: the largest).
machine: $(machine_line)

| figure | measured | promise | |
|---|---|---|---|
| \`kiln push\`, empty registry (wall) | $(fmt "$m_kiln") s ($(mibs "$m_kiln" "$image_bytes") MiB/s); report's \`seconds\` $(fmt "$m_kiln_rep") s; CPU: kiln $(median "${c_kiln[@]}") s, registry $(median "${r_kiln[@]}") s | | |
| baseline: \`skopeo copy --preserve-digests oci:DIR docker://\` (the same image; wall) | $(fmt "$m_sk") s ($(mibs "$m_sk" "$image_bytes") MiB/s); CPU: skopeo $(median "${c_sk[@]}") s, registry $(median "${r_sk[@]}") s | | |
| kiln push vs the baseline | ${ratio}x faster | >= 1.5x faster | $(verdict "$ratio" ">=" 1.5) |
| plain \`skopeo copy oci:DIR docker://\` (gzips the layers: a different image; wall) | $(fmt "$m_gz") s ($(mibs "$m_gz" "$image_bytes") MiB/s), kiln push ${ratio_gz}x faster; CPU: skopeo $(median "${c_gz[@]}") s, registry $(median "${r_gz[@]}") s | (information) | |
| \`kiln push -j 1 / -j 4 / -j 8\` (one run each) | $(fmt "${t_jobs[0]}") s / $(fmt "${t_jobs[1]}") s / $(fmt "${t_jobs[2]}") s | (information) | |
| re-push after a code-only change (\`predict.py\`) | $(fmt "$m_re") s (report's \`seconds\` $(fmt "$(median "${t_re_rep[@]}")") s); the rebuild before it $(fmt "$m_rebuild") s | < 1 s | $(verdict "$m_re" "<" 1) |
| re-push: report's \`bytes_sent\` | $m_sent_re B ($pct_re % of the image), $(maxof "${uploaded_re[@]}") blobs uploaded | < 1 % | $(verdict "$m_sent_re" "<" "$one_pct") |
| peak memory of a full push (max RSS, GNU time \`%M\`) | $rss_mib MiB | < 64 MiB | $(verdict "$m_rss" "<" 65536) |

$quiet_line
kiln and \`skopeo copy --preserve-digests\` left the same manifest ($image_digest) in the registry every time;
plain \`skopeo copy\` left $gz_digest (gzipped layers, $(median "${st_gz[@]}") B stored).
runs (s): kiln ${t_kiln[*]} | skopeo --preserve-digests ${t_sk[*]} | skopeo ${t_gz[*]} | ${jobs_line[*]} | re-push ${t_re[*]}
EOF
