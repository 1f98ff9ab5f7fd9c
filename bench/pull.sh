#!/usr/bin/env bash
# bench/pull.sh: `kiln pull` against `skopeo copy` of the same image from the same local registry, side by side.
#
#   bash bench/pull.sh                      # 4 files x 512 MiB
#   BENCH_FILES=8 BENCH_FILE_MIB=1024 bash bench/pull.sh
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
# The image is built and pushed once; every timed pull then goes into a fresh, empty destination (a new
# KILN_HOME for kiln, a new OCI layout directory for skopeo, a new directory for curl), made after the
# previous one was deleted and the disk synced, with the registry's storage read once just before (page
# cache warm), so that every run fetches every blob from the registry and reads nothing from disk.
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

registry_bench pull openssl curl python3 skopeo du awk sort
need_gnu_time
# kiln's defaults for parts are what is measured (the second kind of run sets KILN_FETCH_PARALLEL=1 itself).
unset KILN_FETCH_PART_SIZE KILN_FETCH_PARALLEL

file_bytes=$((mib * 1048576))
weight_bytes=$((nfiles * file_bytes))
# The weights, the image in the registry, and one pulled copy at a time.
need_free_mib $((3 * nfiles * mib + 512))
avail_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
if ((3 * weight_bytes / 1024 > avail_kib * 8 / 10)); then
    say "warning: the weights, the registry's copy and a pulled copy ($((3 * weight_bytes >> 20)) MiB) do not fit the page cache; figures include disk reads"
fi

# ---------------------------------------------------------------- the registry
start_registry

# ---------------------------------------------------------------- the project, built and pushed once
proj=$work/model
write_project "$proj"

make_weights "$proj/weights"

repo=bench/kiln
kref=$reg/$repo:v1
say "building the image once (kiln build -t $kref) and pushing it once (kiln push)"
"$kiln" build "$proj" -t "$kref" --progress quiet --json >"$work/build.json"
"$kiln" push "$kref" --progress quiet --json >"$work/push.json"

# manifest_digest REPO: the digest the registry gives for REPO:v1.
manifest_digest() {
    curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/$1/manifests/v1" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }'
    true
}

image_digest=$(json_first_str digest "$work/push.json")
[[ -n $image_digest ]] || die "kiln push --json reported no digest"
[[ $(manifest_digest "$repo") == "$image_digest" ]] || die "the registry does not hold $image_digest in $repo"

# The image's blobs (config first, then the layers) from its manifest: digest and size, one a line.
curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/$repo/manifests/v1" \
    >"$work/manifest.json" || die "cannot fetch the manifest of $kref"
python3 - "$work/manifest.json" >"$work/blobs.txt" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for b in [m["config"]] + m["layers"]:
    print(b["digest"], b["size"])
PY
blob_digests=() blob_bytes=0
while read -r d s; do
    blob_digests+=("$d")
    blob_bytes=$((blob_bytes + s))
done <"$work/blobs.txt"
nlayers=$((${#blob_digests[@]} - 1))
((blob_bytes >= weight_bytes)) || die "the pushed image's blobs hold $blob_bytes B, less than the weights"
say "pushed $image_digest: config and $nlayers layers, $blob_bytes B of blobs"

# The weights and the build's store are not read again: only the registry's copy matters from here on.
say "flushing everything to disk (sync)"
sync

# ---------------------------------------------------------------- helpers

dest=$work/dest
# fresh: delete the previous run's destination and sync (no writeback of it pending), make an empty one,
# and read the registry's storage once, so that the next pull finds its blobs in the page cache.
fresh() {
    rm -rf "$dest"
    sync
    mkdir -p "$dest"
    find "$regdata" -type f -exec cat {} + >/dev/null
}
# pull_rss REPORT [VAR=VALUE...]: kiln pull into the empty store $dest/home under GNU time (peak RSS in
# REPORT.rss), with the variables given in its environment.
pull_rss() {
    local report=$1
    shift
    env KILN_HOME="$dest/home" "$@" /usr/bin/time -f %M -o "$report.rss" \
        "$kiln" pull "$kref" --json --progress quiet >"$report"
}
# check_kiln REPORT: the pull in REPORT fetched every layer, the pushed manifest, at least the weights.
check_kiln() {
    local d f l b
    d=$(json_first_str digest "$1")
    [[ $d == "$image_digest" ]] || die "kiln pull reported ${d:-no digest}, not $image_digest ($1)"
    f=$(json_num fetched "$1") l=$(json_num layers "$1") b=$(json_num bytes_received "$1")
    ((l == nlayers && f == l)) || die "kiln pull fetched $f of $l layers, not all $nlayers ($1)"
    ((b >= weight_bytes)) || die "kiln pull received $b B, less than the weights' $weight_bytes B ($1)"
}
# skopeo_copy: the baseline, from the registry into an OCI layout, the same image byte for byte. Without
# --preserve-digests skopeo (1.9) gzips the uncompressed weight layers on the way even into an oci: layout
# (and drops their annotations), which writes a different image and costs the compression.
skopeo_copy() {
    skopeo copy --quiet --preserve-digests --src-tls-verify=false "docker://$kref" "oci:$dest/oci:v1"
}
# check_skopeo: the layout skopeo wrote holds the pushed manifest and at least the weights.
check_skopeo() {
    local d b
    d=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' \
        "$dest/oci/index.json") || die "skopeo copy left no index.json in its layout"
    [[ $d == "$image_digest" ]] || die "skopeo copy --preserve-digests wrote the manifest $d, not $image_digest"
    b=$(du -sb "$dest/oci/blobs" | cut -f1)
    ((b >= weight_bytes)) || die "skopeo copy left $b B of blobs, less than the weights"
}
# curl_blobs: the floor, every blob of the image one after the other over one connection, no checking.
curl_args=()
for d in "${blob_digests[@]}"; do
    curl_args+=(-o "$dest/${d#sha256:}" "http://$reg/v2/$repo/blobs/$d")
done
curl_blobs() { curl -sfS "${curl_args[@]}"; }
check_curl() {
    local b
    b=$(du -sb --apparent-size "$dest" | cut -f1)
    ((b >= blob_bytes)) || die "curl wrote $b B, less than the image's $blob_bytes B of blobs"
}

runs=$work/runs
mkdir -p "$runs"

# ---------------------------------------------------------------- warm-up, then the pulls, interleaved
# One untimed pull with each tool first: the registry's first reads after the push, and skopeo's first run
# in an empty HOME (it makes its blob-info cache there), do not count.
fresh
timeit_reg pull_rss "$runs/warmup.json"
check_kiln "$runs/warmup.json"
say "warm-up: kiln pull ${T}s, untimed (others ${OTHER}% CPU; kiln ${CLIENT}s CPU, registry ${REGCPU}s CPU)"
fresh
timeit_reg skopeo_copy
check_skopeo
say "warm-up: skopeo copy --preserve-digests ${T}s, untimed (others ${OTHER}% CPU; skopeo ${CLIENT}s CPU, registry ${REGCPU}s CPU)"
others=()

t_kiln=() t_kiln_rep=() c_kiln=() r_kiln=() rss=() recv=()
t_one=() c_one=() r_one=() rss_one=()
t_sk=() c_sk=() r_sk=()
t_curl=() c_curl=() r_curl=()
for ((r = 1; r <= reps; r++)); do
    fresh
    timeit_reg pull_rss "$runs/pull$r.json"
    check_kiln "$runs/pull$r.json"
    t_kiln+=("$T") c_kiln+=("$CLIENT") r_kiln+=("$REGCPU")
    t_kiln_rep+=("$(json_num seconds "$runs/pull$r.json")")
    recv+=("$(json_num bytes_received "$runs/pull$r.json")")
    rss+=("$(tail -n 1 "$runs/pull$r.json.rss")")
    if ((r == 1)); then
        # The store's own view of what was pulled: the image tagged REF, with the pushed digest.
        KILN_HOME=$dest/home "$kiln" inspect "$kref" --json >"$runs/inspect.json"
        d=$(json_first_str digest "$runs/inspect.json")
        [[ $d == "$image_digest" ]] || die "kiln inspect $kref shows ${d:-no digest} after the pull, not $image_digest"
    fi
    say "round $r: kiln pull ${T}s (others ${OTHER}% CPU; kiln ${CLIENT}s CPU, registry ${REGCPU}s CPU; report ${t_kiln_rep[-1]}s, ${recv[-1]} B received, ${rss[-1]} KiB max RSS)"

    fresh
    timeit_reg pull_rss "$runs/one$r.json" KILN_FETCH_PARALLEL=1
    check_kiln "$runs/one$r.json"
    t_one+=("$T") c_one+=("$CLIENT") r_one+=("$REGCPU")
    rss_one+=("$(tail -n 1 "$runs/one$r.json.rss")")
    say "round $r: KILN_FETCH_PARALLEL=1 kiln pull ${T}s (others ${OTHER}% CPU; kiln ${CLIENT}s CPU, registry ${REGCPU}s CPU; ${rss_one[-1]} KiB max RSS)"

    fresh
    timeit_reg skopeo_copy
    check_skopeo
    t_sk+=("$T") c_sk+=("$CLIENT") r_sk+=("$REGCPU")
    say "round $r: skopeo copy --preserve-digests ${T}s (others ${OTHER}% CPU; skopeo ${CLIENT}s CPU, registry ${REGCPU}s CPU)"

    fresh
    timeit_reg curl_blobs
    check_curl
    t_curl+=("$T") c_curl+=("$CLIENT") r_curl+=("$REGCPU")
    say "round $r: curl, every blob in turn ${T}s (others ${OTHER}% CPU; curl ${CLIENT}s CPU, registry ${REGCPU}s CPU)"
done
rm -rf "$dest"

image_recv=$(maxof "${recv[@]}")
((image_recv == $(minof "${recv[@]}"))) || die "the pulls received different amounts: ${recv[*]}"

# ---------------------------------------------------------------- the table
m_kiln=$(median "${t_kiln[@]}")
m_kiln_rep=$(median "${t_kiln_rep[@]}")
m_one=$(median "${t_one[@]}")
m_sk=$(median "${t_sk[@]}")
m_curl=$(median "${t_curl[@]}")
m_rss=$(maxof "${rss[@]}")
ratio=$(awk -v k="$m_kiln" -v s="$m_sk" 'BEGIN { printf "%.2f", s / k }')
ratio_one=$(awk -v k="$m_one" -v s="$m_sk" 'BEGIN { printf "%.2f", s / k }')
floor_pct=$(awk -v k="$m_kiln" -v c="$m_curl" 'BEGIN { printf "%.0f", 100 * c / k }')
rss_mib=$(awk -v k="$m_rss" 'BEGIN { printf "%.1f", k / 1024 }')
rss_one_mib=$(awk -v k="$(maxof "${rss_one[@]}")" 'BEGIN { printf "%.1f", k / 1024 }')
set_quiet_line "(the registry and the pulling tool not counted)"
regfs=$(df -PT "$regdata" | awk 'NR == 2 { print $2 }')
destfs=$(df -PT "$work" | awk 'NR == 2 { print $2 }')

cat <<EOF

kiln pull benchmark: $nfiles files x $mib MiB = $((weight_bytes >> 20)) MiB of pseudo-random weights, image of
$nlayers layers and a config, $blob_bytes B of blobs, pulled over loopback from docker-registry $("$regbin" --version 2>/dev/null | awk '{ print $NF; exit }') on the same machine
(storage on $regfs, in the page cache: read once before every pull) into a fresh, empty destination on $destfs
(the previous one deleted and synced); one untimed pull by kiln and by skopeo first; median of $reps runs
(memory: the largest).
machine: $(machine_line)

| figure | measured | promise | |
|---|---|---|---|
| \`kiln pull\`, empty store (wall; 3 layers at once, parts of 32 MiB 4 at once) | $(fmt "$m_kiln") s ($(mibs "$m_kiln" "$blob_bytes") MiB/s); report's \`seconds\` $(fmt "$m_kiln_rep") s, \`bytes_received\` $image_recv B; CPU: kiln $(median "${c_kiln[@]}") s, registry $(median "${r_kiln[@]}") s | | |
| \`KILN_FETCH_PARALLEL=1 kiln pull\` (no parts: each blob one GET; wall) | $(fmt "$m_one") s ($(mibs "$m_one" "$blob_bytes") MiB/s), ${ratio_one}x skopeo's speed; CPU: kiln $(median "${c_one[@]}") s, registry $(median "${r_one[@]}") s; $rss_one_mib MiB max RSS | (information) | |
| baseline: \`skopeo copy --preserve-digests docker:// oci:DIR:v1\` (the same image, digests checked; wall) | $(fmt "$m_sk") s ($(mibs "$m_sk" "$blob_bytes") MiB/s); CPU: skopeo $(median "${c_sk[@]}") s, registry $(median "${r_sk[@]}") s | | |
| kiln pull vs the baseline | ${ratio}x as fast | >= 1.0x | $(verdict "$ratio" ">=" 1.0) |
| floor: \`curl -o\` of every blob in turn (one connection, nothing checked; wall) | $(fmt "$m_curl") s ($(mibs "$m_curl" "$blob_bytes") MiB/s), kiln pull at ${floor_pct} % of its speed; CPU: curl $(median "${c_curl[@]}") s, registry $(median "${r_curl[@]}") s | (information) | |
| peak memory of a pull (max RSS, GNU time \`%M\`) | $rss_mib MiB | < 64 MiB | $(verdict "$m_rss" "<" 65536) |

$quiet_line
kiln pull reported the pushed manifest ($image_digest) every time (and \`kiln inspect\` showed it in the store);
skopeo's OCI layout held the same manifest every time (without \`--preserve-digests\`, skopeo gzips the weight layers).
runs (s): kiln ${t_kiln[*]} | KILN_FETCH_PARALLEL=1 ${t_one[*]} | skopeo ${t_sk[*]} | curl ${t_curl[*]}
EOF
