#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Interruptions: kiln build, push, pull and prune killed (SIGKILL) or interrupted (SIGINT) at points spread
# over their run, then the store checked (every blob named by its digest, every tagged image's manifest,
# config and layers there, kiln prune --dry-run and kiln inspect working) and the command run again to the
# end. After SIGINT kiln exits 130 and leaves no temporary file. The registry gets whole images only.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"

MiB=$((1024 * 1024))
N=${KILN_INTERRUPT_POINTS:-20}
P=$T_WORK/proj
make_project "$P" 'weights: ["models/*"]' models/a.bin $((24 * MiB)) models/b.bin $((12 * MiB)) \
	models/c.bin $((3 * MiB)) models/d.bin $((1 * MiB))
export KILN_PYTHON_BASE=scratch

# store_ok [HOME]: the store is whole after an interruption (temporary files may be left by SIGKILL).
store_ok() {
	local home=${1:-$KILN_HOME} bad
	expect_blobs_named "$home"
	[ -f "$home/index.json" ] || return 0
	bad=$(python3 - "$home" <<'EOF'
import json, os, sys
home = sys.argv[1]
hexd = lambda d: d.split(":")[1]
have = lambda d: (os.path.exists(os.path.join(home, "blobs", "sha256", hexd(d)))
                  or os.path.exists(os.path.join(home, "recipes", "sha256", hexd(d) + ".json")))
for m in json.load(open(os.path.join(home, "index.json")))["manifests"]:
    name = os.path.join(home, "blobs", "sha256", m["digest"].split(":")[1])
    if not os.path.exists(name):
        print("missing manifest", m["digest"]); continue
    man = json.load(open(name))
    for d in [man["config"]] + man["layers"]:
        if not have(d["digest"]):
            print("missing blob", d["digest"], "of", m["annotations"].get("org.opencontainers.image.ref.name"))
EOF
	) || t_fail "index.json cannot be read"
	[ -z "$bad" ] || t_fail "the index names what the store lacks: $bad"
	KILN_HOME=$home "$KILN" prune --dry-run >/dev/null 2>&1 || t_fail "kiln prune --dry-run fails after an interruption"
}

# duration CMD...: how long CMD takes, in seconds (a decimal).
duration() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1
	t1=$(date +%s.%N)
	awk "BEGIN { print $t1 - $t0 }"
}

# interrupt I TOTAL CMD...: run CMD, and send it SIGKILL (I even) or SIGINT (I odd) at the I-th of N points
# spread over TOTAL seconds; RC is its exit status.
interrupt() {
	local i=$1 total=$2 sig=KILL pid
	shift 2
	[ $((i % 2)) -eq 1 ] && sig=INT
	"$@" >"$T_WORK/int.out" 2>"$T_WORK/int.err" &
	pid=$!
	sleep "$(awk "BEGIN { print $total * ($i + 0.5) / $N }")"
	kill -s "$sig" "$pid" 2>/dev/null
	wait "$pid"
	RC=$?
	SIG=$sig
	[ "$RC" -ne 0 ] && HIT=$((HIT + 1))
}

# hit_enough WHAT: most of the N runs were stopped before their end (else the points missed the work).
hit_enough() {
	echo "# $1: $HIT of $N runs interrupted before their end"
	[ "$HIT" -ge $((N / 2)) ] || t_fail "$1: only $HIT of $N runs were interrupted before their end"
	HIT=0
}
HIT=0

# after_sigint: kiln, interrupted, exited 130 and cleaned up (or had finished: 0).
after_sigint() {
	[ "$SIG" == INT ] || return 0
	[ "$RC" -eq 130 ] || [ "$RC" -eq 0 ] || t_fail "after SIGINT: exit status $RC, expected 130 ($(tail -2 "$T_WORK/int.err"))"
	expect_store_tmp_empty
}

t_case "kiln build interrupted at $N points, a file of the project changed each time: the store stays whole"
export KILN_HOME=$T_WORK/home-build
TOTAL=$(duration "$KILN" build "$P" -t m:base)
for i in $(seq 0 $((N - 1))); do
	make_file "$P/models/b.bin" $((12 * MiB)) # a new b.bin each time: a layer to hash and write
	printf '%s\n' "$i$RANDOM" >>"$P/models/b.bin"
	echo "# $i" >>"$P/p.py"
	interrupt "$i" "$TOTAL" "$KILN" build "$P" -t "m:$i"
	after_sigint
	store_ok
done
hit_enough "kiln build"
run_kiln build "$P" -t m:last
expect_rc 0
store_ok
expect_store_tmp_empty
run_kiln inspect m:last
expect_rc 0
run_kiln predict m:last --runtime native
expect_eq "$OUT" "ok" "the image built after the interruptions runs"

t_case "kiln prune interrupted at $N points: the store stays whole, the tagged images keep working"
mkdir -p "$P/many"
for f in $(seq 1 3000); do echo "$f" >"$P/many/$f.txt"; done
# something to remove each time: untagged images (the tag moves) and the roots kiln predict unpacked
garbage() {
	echo "# prune $1" >>"$P/p.py"
	"$KILN" build "$P" -t m:moving >/dev/null 2>&1 || t_fail "build before prune $1"
	"$KILN" predict m:moving --runtime native >/dev/null 2>&1 || t_fail "predict before prune $1"
}
"$KILN" prune --all >/dev/null 2>&1 # what the build case left, so that each prune below has the same work
TIMES=
for k in 1 2 3; do # the shortest of three: a prune's time varies with what the page cache holds
	garbage "t$k"
	TIMES="$TIMES $(duration "$KILN" prune --all)"
done
# shellcheck disable=SC2086
TOTAL=$(printf '%s\n' $TIMES | sort -g | head -1)
TOTAL=$(awk "BEGIN { print $TOTAL * 0.4 }") # a prune ends well before its shortest measured run as often as not
for i in $(seq 0 $((N - 1))); do
	garbage "$i"
	interrupt "$i" "$TOTAL" "$KILN" prune --all
	after_sigint
	store_ok
done
hit_enough "kiln prune"
run_kiln prune --all
expect_rc 0
store_ok
expect_store_tmp_empty
run_kiln predict m:last --runtime native
expect_eq "$OUT" "ok" "a tagged image after the interrupted prunes"

registry_start plain || exit 1
R=$PLAIN_REGISTRY

t_case "kiln push interrupted at $N points: each rerun completes, and the registry has the exact image"
"$KILN" build "$P" -t "$R/int/model:v0" >/dev/null 2>&1
TOTAL=$(duration "$KILN" push "$R/int/model:v0")
for i in $(seq 0 $((N - 1))); do
	# a new image each time, so that each push has layers to send
	make_file "$P/models/a.bin" $((24 * MiB))
	printf '%s\n' "push$i$RANDOM" >>"$P/models/a.bin"
	"$KILN" build "$P" -t "$R/int/model:p$i" >/dev/null 2>&1 || t_fail "build for push $i"
	interrupt "$i" "$TOTAL" "$KILN" push "$R/int/model:p$i" -j 2
	after_sigint
	store_ok
	run_kiln push "$R/int/model:p$i" --json
	expect_rc 0 "push p$i after the interruption"
	DIGEST=$(echo "$OUT" | json 'j["digest"]')
	SK=$(skopeo inspect --tls-verify=false --raw "docker://$R/int/model:p$i" | sha256sum | cut -d' ' -f1)
	expect_eq "sha256:$SK" "$DIGEST" "the registry's manifest of p$i"
done
hit_enough "kiln push"
S=$(skopeo copy -q --src-tls-verify=false "docker://$R/int/model:p$((N - 1))" "oci:$T_WORK/back:last" 2>&1) ||
	t_fail "skopeo copy of the last image (every blob checked by digest): $S"

t_case "kiln pull interrupted at $N points into a fresh store: each rerun completes with the same image"
export KILN_HOME=$T_WORK/home-pull
TOTAL=$(duration "$KILN" pull "$R/int/model:p0")
rm -rf "$KILN_HOME"
for i in $(seq 0 $((N - 1))); do
	interrupt "$i" "$TOTAL" "$KILN" pull "$R/int/model:p$i"
	after_sigint
	store_ok
	run_kiln pull "$R/int/model:p$i" --json
	expect_rc 0 "pull p$i after the interruption"
	WANT=$(skopeo inspect --tls-verify=false --raw "docker://$R/int/model:p$i" | sha256sum | cut -d' ' -f1)
	expect_eq "$(echo "$OUT" | json 'j["digest"]')" "sha256:$WANT" "the pulled p$i"
	rm -rf "$KILN_HOME" # a fresh store for the next, so that it downloads again
done
hit_enough "kiln pull"
run_kiln pull "$R/int/model:p0"
expect_rc 0
store_ok
expect_store_tmp_empty
run_kiln predict "$R/int/model:p0" --runtime native
expect_eq "$OUT" "ok" "a pulled image runs"

t_finish
