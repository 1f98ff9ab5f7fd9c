#!/usr/bin/env bash
# bench/coldstart.sh: from nothing on the node to a model's first answer, its weights in the registry
# (`serve.weights: registry`) against the same weights as image layers, side by side.
#
#   bash bench/coldstart.sh                      # 4 files x 512 MiB
#   BENCH_FILES=8 BENCH_FILE_MIB=1024 bash bench/coldstart.sh
#
# Environment: BENCH_FILES (default 4), BENCH_FILE_MIB (default 512), BENCH_REPS (default 3),
# BENCH_DIR (parent of the work directory, default bench/work), BENCH_REGISTRY_DIR (parent of the
# registry's storage, default the work directory; a tmpfs such as /dev/shm takes the disk out),
# BENCH_BASE (an OCI layout tagged "bookworm" with python3, default one made by scripts/debian-base.sh
# under ${KILN_TEST_CACHE:-/var/cache/kiln-test}/bases/debian-python), KILN_BUILD / KILN as for
# bench/build.sh (the installed kiln is measured). Everything the script makes (work directory, registry
# storage, the registry process) is removed at the end, on failure too.
#
# Prints a Markdown table on stdout; progress and the raw runs go to stderr. The goals are checked for
# information only: the script exits 0 unless a command fails.
#
# One model, built twice from the same project: with its weights as layers (--weights image) and with
# them as raw blobs the shim fetches at start (--weights registry), both pushed once to a loopback
# docker-registry. Its setup() reads every weight file and its prediction is the sha256 of their
# concatenation, checked against sha256sum every time. Every timed step starts with the disk synced (no
# writeback of an earlier step pending) and, when it reads from the registry, with the registry's storage
# read once (page cache warm), into a fresh destination.
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

registry_bench coldstart openssl curl python3 skopeo umoci bwrap sha256sum du awk sort
bwrap --ro-bind / / --unshare-pid true 2>/dev/null ||
    die "bubblewrap cannot make namespaces here (kiln predict --runtime bwrap needs them)"
# kiln's and the shim's defaults are what is measured; the weights cache is each store's own weights/.
unset KILN_FETCH_PART_SIZE KILN_FETCH_PARALLEL KILN_WEIGHTS_DIR KILN_WEIGHTS_SOURCE KILN_WEIGHTS_PARALLEL

file_bytes=$((mib * 1048576))
weight_bytes=$((nfiles * file_bytes))
# The weights; the build's store (layers and raw blobs); the registry (the same); the baseline's store
# (its layers) and root, one skopeo layout and one unpacked bundle; one cache, one pulled store, curl's copy.
need_free_mib $((11 * nfiles * mib + 2048))
avail_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
if ((4 * weight_bytes / 1024 > avail_kib * 8 / 10)); then
    say "warning: the registry's two copies of the weights and a node's copy ($((4 * weight_bytes >> 20)) MiB) do not fit the page cache; figures include disk reads"
fi

# ---------------------------------------------------------------- the base
if [[ -n ${BENCH_BASE:-} ]]; then
    base_dir=$BENCH_BASE
else
    base_dir=${KILN_TEST_CACHE:-/var/cache/kiln-test}/bases/debian-python
    say "the Debian base: bash scripts/debian-base.sh $base_dir (made once)"
    bash "$root/scripts/debian-base.sh" "$base_dir" >&2
fi
[[ -f $base_dir/index.json ]] || die "BENCH_BASE=$base_dir is not an OCI layout"

# ---------------------------------------------------------------- the registry
start_registry

# ---------------------------------------------------------------- the project, built and pushed twice
proj=$work/model
mkdir -p "$proj/weights"
cat >"$proj/kiln.yaml" <<EOF
base: oci:$base_dir:bookworm
run: predict.py:Predictor
weights: ["weights/*"]
EOF
cat >"$proj/predict.py" <<'EOF'
import glob
import hashlib

from cog import BaseRunner


class Predictor(BaseRunner):
    def setup(self) -> None:
        # every weight file read once, in name order: the digest of their concatenation
        h = hashlib.sha256()
        buf = bytearray(8 << 20)
        view = memoryview(buf)
        for path in sorted(glob.glob("weights/*")):
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
        self.digest = h.hexdigest()

    def run(self) -> str:
        return self.digest
EOF

make_weights "$proj/weights"
expected=$(cat "${wfiles[@]}" | sha256sum | cut -d' ' -f1)
# The raw weight blobs are the files themselves: their digests.
weight_hex=()
for f in "${wfiles[@]}"; do
    weight_hex+=("$(sha256sum "$f" | cut -d' ' -f1)")
done

# manifest_digest REPO: the digest the registry gives for REPO:v1.
manifest_digest() {
    curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/$1/manifests/v1" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }'
    true
}
# image_bytes REPO: the bytes of REPO:v1's config and layers, from its manifest (a registry-weights image's
# weight blobs are not among its layers): sets nlayers and nbytes.
image_bytes() {
    curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/$1/manifests/v1" \
        >"$work/manifest.json" || die "cannot fetch the manifest of $reg/$1:v1"
    read -r nlayers nbytes < <(python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))
print(len(m["layers"]), m["config"]["size"] + sum(l["size"] for l in m["layers"]))' "$work/manifest.json")
}

irepo=bench/img
rrepo=bench/reg
iref=$reg/$irepo:v1
rref=$reg/$rrepo:v1
say "building the image twice, kiln build --weights image -t $iref and --weights registry -t $rref, and pushing each once"
"$kiln" build "$proj" --weights image -t "$iref" --progress quiet --json >"$work/build-img.json"
"$kiln" build "$proj" --weights registry -t "$rref" --progress quiet --json >"$work/build-reg.json"
[[ $(json_first_str weights "$work/build-img.json") == image ]] || die "kiln build --weights image did not report \"weights\": \"image\""
[[ $(json_first_str weights "$work/build-reg.json") == registry ]] || die "kiln build --weights registry did not report \"weights\": \"registry\""
"$kiln" push "$iref" --progress quiet --json >"$work/push-img.json"
"$kiln" push "$rref" --progress quiet --json >"$work/push-reg.json"

img_digest=$(json_first_str digest "$work/push-img.json")
reg_digest=$(json_first_str digest "$work/push-reg.json")
[[ -n $img_digest && -n $reg_digest ]] || die "kiln push --json reported no digest"
[[ $(manifest_digest "$irepo") == "$img_digest" ]] || die "the registry does not hold $img_digest in $irepo"
[[ $(manifest_digest "$rrepo") == "$reg_digest" ]] || die "the registry does not hold $reg_digest in $rrepo"
image_bytes "$irepo"
img_bytes=$nbytes img_layers=$nlayers
image_bytes "$rrepo"
reg_bytes=$nbytes reg_layers=$nlayers
((img_bytes >= weight_bytes)) || die "the image-weights image holds $img_bytes B of blobs, less than the weights"
((img_bytes - reg_bytes >= weight_bytes)) ||
    die "the registry-weights image holds $reg_bytes B of blobs, the other $img_bytes B: the weights are in its layers"
for h in "${weight_hex[@]}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -I "http://$reg/v2/$rrepo/blobs/sha256:$h")
    [[ $code == 200 ]] || die "the registry answers $code for the weight blob sha256:$h in $rrepo"
    [[ -f $KILN_HOME/blobs/sha256/$h ]] || die "the build's store lacks the weight blob sha256:$h"
done
say "pushed $img_digest ($img_layers layers, $img_bytes B) and $reg_digest ($reg_layers layers, $reg_bytes B, and $nfiles weight blobs)"

say "flushing everything to disk (sync)"
sync

# ---------------------------------------------------------------- helpers
# The shim runs in bubblewrap's PID namespace, which dies when kiln stops it: its processes are reaped
# there, not by kiln, so their CPU time shows as other processes' (measured: all of it, with a subreaper
# above kiln too). timeit_ns CMD...: timeit_reg CMD, whose OTHER then includes the shim's CPU and is left out of
# the summary of `others`.
timeit_ns() {
    local kept=("${others[@]}")
    timeit_reg "$@"
    others=("${kept[@]}")
}
# cpu_line / cpu_line_ns: "others N% CPU; tool Cs CPU, registry Rs CPU" of the last timeit_reg / timeit_ns.
cpu_line() { echo "others ${OTHER}% CPU; tool ${CLIENT}s CPU, registry ${REGCPU}s CPU"; }
cpu_line_ns() { echo "others, the shim included, ${OTHER}% CPU; kiln ${CLIENT}s CPU, registry ${REGCPU}s CPU"; }
# sum V...: print the sum (3 decimals).
sum() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.3f\n", s }'; }

# warm_registry: read the registry's storage once, so that the next step finds its blobs in the page cache.
warm_registry() { find "$regdata" -type f -exec cat {} + >/dev/null; }
# quiet_disk: sync, so that no writeback of an earlier step is pending when the next one starts.
quiet_disk() { sync; }

# logged LOG CMD...: run CMD with its stderr in LOG; on failure print LOG's tail and fail.
logged() {
    local log=$1
    shift
    "$@" 2>"$log" || { tail -n 20 "$log" >&2; return 1; }
}
# check_answer OUT WHAT: the prediction printed in OUT is the sha256 of the weights.
check_answer() {
    local got
    got=$(tr -d '\n' <"$1")
    [[ $got == "$expected" ]] || die "$2: the prediction is '$got', not the sha256 of the weights ($expected)"
}
# fetch_line LOG: sets F_FILES, F_BYTES, F_SRC, F_SEC, F_CACHED from the shim's setup line in LOG:
# "weights: N files, B bytes fetched from SRC in S s (C cached)".
fetch_re='weights: ([0-9]+) files, ([0-9]+) bytes fetched from ([^ ]+) in ([0-9.]+)s \(([0-9]+) cached\)'
fetch_line() {
    local line
    line=$(grep -m 1 ' bytes fetched from ' "$1" || true)
    [[ $line =~ $fetch_re ]] || die "kiln predict printed no weights line (\"weights: N files, B bytes fetched from ...\") in $1"
    F_FILES=${BASH_REMATCH[1]} F_BYTES=${BASH_REMATCH[2]} F_SRC=${BASH_REMATCH[3]} F_SEC=${BASH_REMATCH[4]}
    F_CACHED=${BASH_REMATCH[5]}
    [[ $F_SRC == "$reg/$rrepo" ]] || die "the shim fetched from $F_SRC, not $reg/$rrepo ($1)"
    ((F_FILES == nfiles)) || die "the shim counted $F_FILES weight files, not $nfiles ($1)"
}

runs=$work/runs
dest=$work/dest
mkdir -p "$runs"

# (a) the baseline: skopeo copy and umoci unpack into $dest, then the shim run by kiln predict under
# bubblewrap from that very root: the store $ahome holds the image (pulled once: its manifest and config),
# and its root, run/HEX-full, is replaced by umoci's rootfs before each prediction, so kiln unpacks nothing.
ahome=$work/node-a
img_hex=${img_digest#sha256:}
aroot=$ahome/run/${img_hex:0:32}-full
say "the baseline's store: kiln pull $iref into $ahome (once, untimed)"
KILN_HOME=$ahome "$kiln" pull "$iref" --progress quiet --json >"$runs/pull-a.json"
mkdir -m 700 "$ahome/run"

skopeo_copy() {
    skopeo copy --quiet --preserve-digests --src-tls-verify=false "docker://$iref" "oci:$dest/oci:v1"
}
umoci_unpack() { logged "$dest/umoci.log" umoci unpack --rootless --image "$dest/oci:v1" "$dest/bundle" >/dev/null; }
# predict_in HOME REF LOG OUT: one prediction with the image REF of the store HOME under bubblewrap.
predict_in() { KILN_HOME=$1 logged "$3" "$kiln" predict "$2" --runtime bwrap >"$4"; }
# node_pull HOME REF REPORT: kiln pull of REF into the store HOME.
node_pull() { KILN_HOME=$1 "$kiln" pull "$2" --progress quiet --json >"$3"; }
# curl_blobs: the floor, one curl per weight blob, all at once, nothing checked.
curl_blobs() {
    local h pids=() p rc=0
    for h in "${weight_hex[@]}"; do
        curl -sfS -o "$dest/$h" "http://$reg/v2/$rrepo/blobs/sha256:$h" &
        pids+=("$!")
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    return "$rc"
}

t_a=() t_sk=() t_um=() t_ap=()
t_b=() t_bpull=() t_bp=() f_b=()
t_c=() f_c=()
t_d=()
t_e=() t_epull=() t_ep=()
t_f=() t_fpull=() t_fp=()
# round N: one of each, in turn; N 0 is the untimed warm-up (the registry's first reads, skopeo's first run
# in an empty HOME, the first unpack of the base), whose figures the caller drops.
round() {
    local n=$1 h tag
    tag="round $n"
    ((n)) || tag=warm-up

    # (a) skopeo copy + umoci unpack + kiln predict on that root
    rm -rf "$dest" "$aroot"
    mkdir -p "$dest"
    quiet_disk
    warm_registry
    timeit_reg skopeo_copy
    t_sk+=("$T")
    say "$tag: (a) skopeo copy --preserve-digests ${T}s ($(cpu_line))"
    quiet_disk
    timeit_reg umoci_unpack
    t_um+=("$T")
    say "$tag: (a) umoci unpack --rootless ${T}s ($(cpu_line))"
    mv "$dest/bundle/rootfs" "$aroot"
    quiet_disk
    timeit_ns predict_in "$ahome" "$iref" "$runs/a$n.err" "$runs/a$n.out"
    check_answer "$runs/a$n.out" "(a) kiln predict on umoci's root"
    t_ap+=("$T")
    t_a+=("$(sum "${t_sk[-1]}" "${t_um[-1]}" "$T")")
    say "$tag: (a) kiln predict --runtime bwrap on that root ${T}s ($(cpu_line_ns)); (a) in all ${t_a[-1]}s"
    rm -rf "$dest"

    # (f) information: kiln alone, weights in the image: kiln pull into a new store + kiln predict (kiln
    # unpacks the whole root, weights included)
    local fhome=$work/node-f
    rm -rf "$fhome"
    quiet_disk
    warm_registry
    timeit_reg node_pull "$fhome" "$iref" "$runs/f$n.json"
    [[ $(json_first_str digest "$runs/f$n.json") == "$img_digest" ]] || die "(f) kiln pull did not report $img_digest"
    t_fpull+=("$T")
    say "$tag: (f) kiln pull of the image-weights image ${T}s ($(cpu_line))"
    quiet_disk
    timeit_ns predict_in "$fhome" "$iref" "$runs/f$n.err" "$runs/f$n.out"
    check_answer "$runs/f$n.out" "(f) kiln predict, weights in the image"
    t_fp+=("$T")
    t_f+=("$(sum "${t_fpull[-1]}" "$T")")
    say "$tag: (f) kiln predict, kiln unpacking the whole root ${T}s ($(cpu_line_ns)); (f) in all ${t_f[-1]}s"
    rm -rf "$fhome"

    # (b) registry weights, cold cache: kiln pull of the small image, then kiln predict (the shim fetches)
    local bhome=$work/node-b
    rm -rf "$bhome"
    mkdir -p "$bhome/blobs/sha256"
    # kiln pull brings a registry-weights image's weight blobs too; put in the new store beforehand (hard
    # links to the build's, untimed), they are not fetched, so the pull takes what a node's runtime would:
    # the image alone. Removed after it, so neither the store nor the cache has them.
    for h in "${weight_hex[@]}"; do ln "$KILN_HOME/blobs/sha256/$h" "$bhome/blobs/sha256/$h"; done
    quiet_disk
    warm_registry
    timeit_reg node_pull "$bhome" "$rref" "$runs/b$n.json"
    [[ $(json_first_str digest "$runs/b$n.json") == "$reg_digest" ]] || die "(b) kiln pull did not report $reg_digest"
    (($(json_num fetched "$runs/b$n.json") == reg_layers)) ||
        die "(b) kiln pull fetched $(json_num fetched "$runs/b$n.json") blobs, not the image's $reg_layers layers"
    t_bpull+=("$T")
    say "$tag: (b) kiln pull (the image alone, $(json_num bytes_received "$runs/b$n.json") B) ${T}s ($(cpu_line))"
    for h in "${weight_hex[@]}"; do rm -f "$bhome/blobs/sha256/$h"; done
    [[ ! -e $bhome/weights ]] || die "(b) the new store has a weights cache before its first prediction"
    quiet_disk
    warm_registry
    timeit_ns predict_in "$bhome" "$rref" "$runs/b$n.err" "$runs/b$n.out"
    check_answer "$runs/b$n.out" "(b) kiln predict, cold cache"
    fetch_line "$runs/b$n.err"
    ((F_BYTES == weight_bytes && F_CACHED == 0)) ||
        die "(b) the shim fetched $F_BYTES B ($F_CACHED cached), not all $weight_bytes B of the weights"
    for h in "${weight_hex[@]}"; do
        [[ $(stat -c %s "$bhome/weights/sha256/$h") == "$file_bytes" ]] || die "(b) the cache lacks sha256:$h"
    done
    t_bp+=("$T") f_b+=("$F_SEC")
    t_b+=("$(sum "${t_bpull[-1]}" "$T")")
    say "$tag: (b) kiln predict, cold cache ${T}s ($(cpu_line_ns)); the shim fetched $F_BYTES B in ${F_SEC}s; (b) in all ${t_b[-1]}s"

    # (c) the same store again, its cache full
    quiet_disk
    timeit_ns predict_in "$bhome" "$rref" "$runs/c$n.err" "$runs/c$n.out"
    check_answer "$runs/c$n.out" "(c) kiln predict, warm cache"
    fetch_line "$runs/c$n.err"
    ((F_BYTES == 0 && F_CACHED == nfiles)) || die "(c) the shim fetched $F_BYTES B with a warm cache ($F_CACHED cached)"
    t_c+=("$T") f_c+=("$F_SEC")
    say "$tag: (c) kiln predict, warm cache ${T}s ($(cpu_line_ns)); the shim's fetch part ${F_SEC}s"
    rm -rf "$bhome"

    # (e) information: kiln pull with the weight blobs, then kiln predict (kiln links them into the cache)
    local ehome=$work/node-e
    rm -rf "$ehome"
    quiet_disk
    warm_registry
    timeit_reg node_pull "$ehome" "$rref" "$runs/e$n.json"
    (($(json_num fetched "$runs/e$n.json") == reg_layers + nfiles)) ||
        die "(e) kiln pull fetched $(json_num fetched "$runs/e$n.json") blobs, not $reg_layers layers and $nfiles weight blobs"
    (($(json_num bytes_received "$runs/e$n.json") >= weight_bytes)) || die "(e) kiln pull received less than the weights"
    t_epull+=("$T")
    say "$tag: (e) kiln pull with the weight blobs ${T}s ($(cpu_line))"
    quiet_disk
    timeit_ns predict_in "$ehome" "$rref" "$runs/e$n.err" "$runs/e$n.out"
    check_answer "$runs/e$n.out" "(e) kiln predict after a full pull"
    fetch_line "$runs/e$n.err"
    ((F_BYTES == 0)) || die "(e) the shim fetched $F_BYTES B although the store held the weights"
    grep -q "$nfiles of $nfiles files put in the cache" "$runs/e$n.err" ||
        die "(e) kiln predict did not put the store's $nfiles weight blobs in the cache"
    t_ep+=("$T")
    t_e+=("$(sum "${t_epull[-1]}" "$T")")
    say "$tag: (e) kiln predict, the store's blobs linked into the cache ${T}s ($(cpu_line_ns)); (e) in all ${t_e[-1]}s"
    rm -rf "$ehome"

    # (d) the floor: curl, one per weight blob, all at once
    rm -rf "$dest"
    mkdir -p "$dest"
    quiet_disk
    warm_registry
    timeit_reg curl_blobs
    for h in "${weight_hex[@]}"; do
        [[ $(stat -c %s "$dest/$h") == "$file_bytes" ]] || die "(d) curl wrote $(stat -c %s "$dest/$h") B of sha256:$h"
    done
    t_d+=("$T")
    say "$tag: (d) curl, $nfiles blobs at once ${T}s ($(cpu_line))"
    rm -rf "$dest"
}

# ---------------------------------------------------------------- warm-up, then the rounds
round 0
others=()
t_a=() t_sk=() t_um=() t_ap=()
t_b=() t_bpull=() t_bp=() f_b=()
t_c=() f_c=()
t_d=()
t_e=() t_epull=() t_ep=()
t_f=() t_fpull=() t_fp=()
for ((r = 1; r <= reps; r++)); do
    round "$r"
done

# ---------------------------------------------------------------- the table
m_a=$(median "${t_a[@]}")
m_b=$(median "${t_b[@]}")
m_fb=$(median "${f_b[@]}")
m_c=$(median "${t_c[@]}")
m_fc=$(median "${f_c[@]}")
m_d=$(median "${t_d[@]}")
m_e=$(median "${t_e[@]}")
m_f=$(median "${t_f[@]}")
ratio_ba=$(awk -v b="$m_b" -v a="$m_a" 'BEGIN { printf "%.2f", b / a }')
ratio_fd=$(awk -v f="$m_fb" -v d="$m_d" 'BEGIN { printf "%.2f", (d > 0) ? f / d : 0 }')
ratio_bf=$(awk -v b="$m_b" -v f="$m_f" 'BEGIN { printf "%.2f", b / f }')
set_quiet_line "(the registry and the tool measured not counted; the predictions left out: the shim's CPU counts there)"
regfs=$(df -PT "$regdata" | awk 'NR == 2 { print $2 }')
workfs=$(df -PT "$work" | awk 'NR == 2 { print $2 }')

cat <<EOF

cold start benchmark: $nfiles files x $mib MiB = $((weight_bytes >> 20)) MiB of pseudo-random weights; one model whose setup() reads
every file (sha256 of their concatenation, which every prediction returned, checked against sha256sum),
built with \`--weights image\` ($img_layers layers, $img_bytes B) and \`--weights registry\` ($reg_layers layers, $reg_bytes B, and
$nfiles raw weight blobs), on base oci:$base_dir:bookworm; served over loopback by docker-registry
$("$regbin" --version 2>/dev/null | awk '{ print $NF; exit }') on the same machine (storage on $regfs, read once before every step that fetches); the nodes' stores
on $workfs, synced before every step; one untimed round first; median of $reps rounds.
machine: $(machine_line)

| figure | measured | goal | |
|---|---|---|---|
| (a) baseline, weights in the image: \`skopeo copy --preserve-digests docker:// oci:DIR:v1\` + \`umoci unpack --rootless\` + \`kiln predict --runtime bwrap\` run on that root (kiln unpacks nothing) | $(fmt "$m_a") s: skopeo $(fmt "$(median "${t_sk[@]}")") s, umoci $(fmt "$(median "${t_um[@]}")") s, predict (bwrap, Python, setup reading the weights, one prediction) $(fmt "$(median "${t_ap[@]}")") s | | |
| (f) information: kiln alone, weights in the image: \`kiln pull\` into a new store + \`kiln predict --runtime bwrap\` (kiln unpacks the whole root, weights included) | $(fmt "$m_f") s: pull $(fmt "$(median "${t_fpull[@]}")") s, predict $(fmt "$(median "${t_fp[@]}")") s | (information) | |
| (b) registry weights, cold cache: \`kiln pull\` of the image alone into a new store + \`kiln predict --runtime bwrap\` (kiln unpacks the image's root, the shim fetches every weight blob, setup, one prediction) | $(fmt "$m_b") s: pull $(fmt "$(median "${t_bpull[@]}")") s, predict $(fmt "$(median "${t_bp[@]}")") s, of which the shim's fetch $(fmt "$m_fb" 2) s ($(gibs "$m_fb") GiB/s) | | |
| (b) against (a) | ${ratio_ba}x (a)'s time | <= 0.5x | $(verdict "$ratio_ba" "<=" 0.5) |
| (b) against (f) | ${ratio_bf}x (f)'s time | (information) | |
| (c) registry weights, warm cache: \`kiln predict --runtime bwrap\` again in (b)'s store | $(fmt "$m_c") s, of which the shim's fetch part (nothing fetched, $nfiles cached) $(fmt "$m_fc" 2) s | fetch part < 0.5 s | $(verdict "$m_fc" "<" 0.5) |
| (d) floor: \`curl -o\`, one per weight blob, all at once (nothing checked) | $(fmt "$m_d") s ($(gibs "$m_d") GiB/s) | | |
| (b)'s fetch against (d) | ${ratio_fd}x (d)'s time | <= 1.2x | $(verdict "$ratio_fd" "<=" 1.2) |
| (e) information: \`kiln pull\` with the weight blobs (it fetches them too) + \`kiln predict --runtime bwrap\` (kiln links them into the cache, the shim fetches nothing) | $(fmt "$m_e") s: pull $(fmt "$(median "${t_epull[@]}")") s, predict $(fmt "$(median "${t_ep[@]}")") s | (information) | |

$quiet_line
(b)'s pull has the weight blobs hard-linked into the new store beforehand (kiln pull would fetch them too,
as (e) does) and removed after it, untimed: it fetches what a node's container runtime would, the image alone.
The shim's fetch seconds are its own, from the setup line \`weights: N files, B bytes fetched from SRC in S s\`.
runs (s): (a) ${t_a[*]} | (f) ${t_f[*]} | (b) ${t_b[*]} (fetch ${f_b[*]}) | (c) ${t_c[*]} (fetch ${f_c[*]}) | (d) ${t_d[*]} | (e) ${t_e[*]}
EOF
