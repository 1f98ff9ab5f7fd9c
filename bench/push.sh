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

registry_bench push openssl curl python3 skopeo du awk sort
need_gnu_time

file_bytes=$((mib * 1048576))
weight_bytes=$((nfiles * file_bytes))
# The weights, the OCI layout skopeo reads (a second copy), and one pushed image in the registry.
need_free_mib $((3 * nfiles * mib + 512))
avail_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
if ((3 * weight_bytes / 1024 > avail_kib * 8 / 10)); then
    say "warning: the weights, their OCI copy and the registry's copy ($((3 * weight_bytes >> 20)) MiB) do not fit the page cache; figures include disk reads"
fi

# ---------------------------------------------------------------- the registry
start_registry

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
timeit_reg push "$runs/warmup.json"
say "warm-up: kiln push ${T}s, untimed (others ${OTHER}% CPU; kiln ${CLIENT}s CPU, registry ${REGCPU}s CPU)"
others=()
for ((r = 1; r <= reps; r++)); do
    wipe_registry
    timeit_reg push_rss "$runs/full$r.json"
    t_kiln+=("$T") c_kiln+=("$CLIENT") r_kiln+=("$REGCPU")
    t_kiln_rep+=("$(json_num seconds "$runs/full$r.json")")
    sent+=("$(json_num bytes_sent "$runs/full$r.json")")
    rss+=("$(tail -n 1 "$runs/full$r.json.rss")")
    st_kiln+=("$(stored)")
    [[ $(manifest_digest bench/kiln) == "$image_digest" ]] || die "the registry does not hold $image_digest in bench/kiln"
    say "round $r: kiln push ${T}s (others ${OTHER}% CPU; kiln ${CLIENT}s CPU, registry ${REGCPU}s CPU; report ${t_kiln_rep[-1]}s, ${sent[-1]} B sent, ${rss[-1]} KiB max RSS, registry stores ${st_kiln[-1]} B)"

    wipe_registry
    timeit_reg skopeo_copy
    t_sk+=("$T") c_sk+=("$CLIENT") r_sk+=("$REGCPU")
    st_sk+=("$(stored)")
    d=$(manifest_digest bench/skopeo)
    [[ $d == "$image_digest" ]] || die "skopeo copy --preserve-digests left ${d:-no manifest} in bench/skopeo, not $image_digest"
    say "round $r: skopeo copy --preserve-digests ${T}s (others ${OTHER}% CPU; skopeo ${CLIENT}s CPU, registry ${REGCPU}s CPU; registry stores ${st_sk[-1]} B)"

    wipe_registry
    timeit_reg skopeo_gzip
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
    timeit_reg push "$runs/j$j.json" -j "$j"
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
    timeit_reg "$kiln" build "$proj" -t "$kref" --progress quiet --json >"$runs/rebuild$r.json"
    t_rebuild+=("$T")
    timeit_reg push "$runs/re$r.json"
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
