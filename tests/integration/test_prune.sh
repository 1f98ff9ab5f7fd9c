#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln prune: what no tag reaches goes (blobs, recipes, run/ roots, their logs, stale tmp/ files), what a tag
# reaches stays and still inspects; --dry-run changes nothing; --json counts; --all; recent blobs are kept.
source "$(dirname "$0")/lib.sh"

export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
MiB=$((1024 * 1024))
A=$T_WORK/a
B=$T_WORK/b
make_project "$A" "" models/a.bin $((11 * MiB))
make_project "$B" "" models/b.bin $((11 * MiB))

# age: make every blob and recipe two hours old (prune keeps unreferenced ones younger than 10 minutes)
age() { find "$KILN_HOME/blobs" "$KILN_HOME/recipes" -type f -exec touch -d '-2 hours' {} +; }
# listing: every path under the store but the lock, with its size
listing() { (cd "$KILN_HOME" && find . -path ./index.lock -prune -o -printf '%p %s\n' | sort); }
# unreachable: the digests in blobs/ and recipes/ that no tag reaches, counted independently of kiln
unreachable() {
	python3 - "$KILN_HOME" <<'PY'
import json, os, sys
home = sys.argv[1]
seen = set()
def walk(d):
    seen.add(d)
    p = os.path.join(home, "blobs/sha256", d.split(":")[1])
    if not os.path.exists(p):
        return
    m = json.load(open(p))
    for x in m.get("manifests", []):
        walk(x["digest"])
    if "config" in m:
        seen.add(m["config"]["digest"])
    for l in m.get("layers", []):
        seen.add(l["digest"])
for d in json.load(open(os.path.join(home, "index.json")))["manifests"]:
    walk(d["digest"])
blobs = [f for f in os.listdir(home + "/blobs/sha256") if "sha256:" + f not in seen]
recipes = [f for f in os.listdir(home + "/recipes/sha256") if "sha256:" + f[:-5] not in seen]
print(len(blobs), len(recipes), " ".join(blobs + recipes))
PY
}

t_case "two images build, and each has a run/ root after kiln predict"
run_kiln build "$A" -t test/a:v1 --json
expect_rc 0
OLD_A=$(echo "$OUT" | json 'j["digest"]')
run_kiln build "$B" -t test/b:v1 --json
expect_rc 0
DIG_B=$(echo "$OUT" | json 'j["digest"]')
run_kiln predict test/a:v1 --runtime native
expect_rc 0
run_kiln predict test/b:v1 --runtime native
expect_rc 0
RUN_A=$KILN_HOME/run/${OLD_A:7:32}-native
RUN_B=$KILN_HOME/run/${DIG_B:7:32}-native
[ -d "$RUN_A" ] || t_fail "no run directory $RUN_A"
[ -d "$RUN_B" ] || t_fail "no run directory $RUN_B"

t_case "rebuilding a tag with changed code and weights leaves the old manifest, config and weights unreachable"
printf '\n# changed\n' >>"$A/p.py"
make_file "$A/models/a.bin" $((12 * MiB))
run_kiln build "$A" -t test/a:v1 --json
expect_rc 0
NEW_A=$(echo "$OUT" | json 'j["digest"]')
expect_ne "$NEW_A" "$OLD_A" "digest of the rebuilt image"
read -r N_BLOBS N_RECIPES GONE <<<"$(unreachable)"
# the old code layer is test/b:v1's too (same p.py and kiln.yaml then): it stays reachable
[ "$N_BLOBS" -ge 2 ] || t_fail "only $N_BLOBS unreachable blobs: expected the old manifest and config"
[ "$N_RECIPES" -ge 1 ] || t_fail "no unreachable recipe: expected the old weight layer's"
# a log a failed predict of the old image kept, its process gone
DEAD=$(sh -c 'echo $$')
echo "setup failed" >"$RUN_A.$DEAD.log"
# a stale temporary file (not named by a process: kiln_store_open removes those of dead processes), and one
# of a running process
echo stale >"$KILN_HOME/tmp/old-stale" && touch -d '-2 hours' "$KILN_HOME/tmp/old-stale"
echo live >"$KILN_HOME/tmp/$$-live" && touch -d '-2 hours' "$KILN_HOME/tmp/$$-live"

t_case "recent unreferenced blobs are kept: a build may still be writing them"
run_kiln prune --dry-run --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["blobs"], j["recipes"]')" "(0, 0)" "blobs and recipes counted"
expect_contains "$ERR" "kept $((N_BLOBS + N_RECIPES)) unreferenced blobs written in the last 10 minutes"

age
t_case "--dry-run says what would go and changes nothing"
BEFORE=$(listing)
run_kiln prune --dry-run
expect_rc 0
expect_contains "$OUT" "would remove $N_BLOBS blobs ("
# run/: the replaced image's root and its weight layer's cache (run/layers/HEX; its weights changed)
expect_contains "$OUT" "2 run directories ("
run_kiln prune --dry-run --json
expect_rc 0
expect_eq "$(echo "$OUT" | json '[j["blobs"], j["recipes"], j["run"], j["logs"], j["tmp"], j["dry_run"]]')" \
	"[$N_BLOBS, $N_RECIPES, 2, 1, 1, true]" "dry-run counts"
DRY_BYTES=$(echo "$OUT" | json 'j["bytes"]')
expect_eq "$(listing)" "$BEFORE" "the store after --dry-run"

t_case "prune removes what no tag reaches, with the run/ root and log of the replaced image"
SIZE=$(for h in $GONE; do stat -c %s "$KILN_HOME/blobs/sha256/$h" "$KILN_HOME/recipes/sha256/$h" 2>/dev/null; done | paste -sd+ | bc)
run_kiln prune --json
expect_rc 0
expect_eq "$(echo "$OUT" | json '[j["blobs"], j["recipes"], j["run"], j["logs"], j["tmp"], j["dry_run"]]')" \
	"[$N_BLOBS, $N_RECIPES, 2, 1, 1, false]" "counts"
expect_eq "$(echo "$OUT" | json 'j["bytes"]')" "$DRY_BYTES" "bytes as --dry-run said"
[ "$DRY_BYTES" -ge "$SIZE" ] || t_fail "bytes $DRY_BYTES: less than the unreachable blobs' $SIZE"
for h in $GONE; do
	[ ! -e "$KILN_HOME/blobs/sha256/$h" ] && [ ! -e "$KILN_HOME/recipes/sha256/$h" ] || t_fail "$h is still there"
done
expect_eq "$(unreachable)" "0 0 " "unreachable blobs left"
[ ! -e "$RUN_A" ] || t_fail "the run directory of the replaced image is still there"
[ ! -e "$RUN_A.$DEAD.log" ] || t_fail "its log is still there"
[ -d "$RUN_B" ] || t_fail "the run directory of a tagged image was removed"
[ ! -e "$KILN_HOME/tmp/old-stale" ] || t_fail "the stale temporary file is still there"
[ -e "$KILN_HOME/tmp/$$-live" ] || t_fail "the temporary file of a running process was removed"
rm -f "$KILN_HOME/tmp/$$-live"
expect_store_consistent

t_case "the tagged images still inspect, read back by skopeo, and predict"
for ref in test/a:v1 test/b:v1; do
	run_kiln inspect "$ref" --json
	expect_rc 0
done
expect_eq "$(echo "$OUT" | json 'j["digest"]')" "$DIG_B" "digest of test/b:v1"
if command -v skopeo >/dev/null; then
	SK=$(skopeo inspect "oci:$KILN_HOME:docker.io/test/a:v1" 2>&1) || t_fail "skopeo inspect: $SK"
	expect_eq "$(echo "$SK" | json 'j["Digest"]')" "$NEW_A" "skopeo's digest"
fi
run_kiln predict test/a:v1 --runtime native
expect_rc 0
expect_contains "$OUT" "ok"

t_case "a second prune finds nothing; --all removes every run/ directory"
run_kiln prune
expect_rc 0
expect_eq "$OUT" "nothing to remove" "stdout"
run_kiln prune --all --json
expect_rc 0
expect_eq "$(echo "$OUT" | json '[j["blobs"], j["recipes"], j["run"]]')" "[0, 0, 4]" "counts with --all (2 roots, 2 weight layers)"
expect_eq "$(ls -A "$KILN_HOME/run" | grep -v '\.log$')" "" "run/ after --all"
run_kiln predict test/b:v1 --runtime native
expect_rc 0
expect_contains "$OUT" "ok"
expect_store_consistent

t_case "an untagged blob of a running build is kept until old enough; --all removes it at once"
printf 'layer in flight' >"$T_WORK/blob"
H=$(sha256sum "$T_WORK/blob" | cut -d' ' -f1)
cp "$T_WORK/blob" "$KILN_HOME/blobs/sha256/$H"
run_kiln prune --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["blobs"]')" "0" "blobs removed"
[ -e "$KILN_HOME/blobs/sha256/$H" ] || t_fail "the recent blob was removed"
touch -d '-11 minutes' "$KILN_HOME/blobs/sha256/$H"
run_kiln prune
expect_rc 0
expect_contains "$OUT" "removed 1 blob (15 B)"
[ ! -e "$KILN_HOME/blobs/sha256/$H" ] || t_fail "the old unreferenced blob is still there"
cp "$T_WORK/blob" "$KILN_HOME/blobs/sha256/$H"
run_kiln prune --all --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["blobs"]')" "1" "blobs removed by --all"
[ ! -e "$KILN_HOME/blobs/sha256/$H" ] || t_fail "--all kept the recent unreferenced blob"

t_case "prune takes no argument; a tag whose manifest is missing stops it"
run_kiln prune extra
expect_rc 2
rm "$KILN_HOME/blobs/sha256/${DIG_B#sha256:}"
BEFORE=$(listing)
run_kiln prune
expect_rc 1
expect_contains "$ERR" "cannot tell what 'docker.io/test/b:v1' reaches"
expect_eq "$(listing)" "$BEFORE" "the store after a failed prune"

t_case "prune waits for the other kiln processes using the store; Ctrl-C stops the wait"
export KILN_HOME=$T_WORK/home-lock # a store of its own: the case above broke its tag on purpose
"$KILN" prune >/dev/null 2>&1 || t_fail "prune of an empty store"
flock -s "$KILN_HOME/gc.lock" sleep 2 &
HOLDER=$!
sleep 0.3
run_kiln prune
expect_rc 0
expect_contains "$ERR" "waiting for the other kiln processes"
kill -0 "$HOLDER" 2>/dev/null && t_fail "prune did not wait for the store to be free"
wait "$HOLDER"
flock -s "$KILN_HOME/gc.lock" sleep 10 &
HOLDER=$!
sleep 0.3
"$KILN" prune 2>"$T_WORK/prune-wait.err" &
PRUNE=$!
sleep 0.5
kill -INT "$PRUNE"
wait "$PRUNE"
expect_eq "$?" "130" "exit status of an interrupted wait"
kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null

t_finish
