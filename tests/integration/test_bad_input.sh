#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln build on bad input: a clear message naming the file, line or field, exit 1, and a store that stays
# consistent (disk full, SIGINT, SIGKILL included) so the next build succeeds.
source "$(dirname "$0")/lib.sh"

MiB=$((1024 * 1024))
# A valid project to break in different ways.
good_project() {
	local d=$1
	rm -rf "$d"
	mkdir -p "$d"
	printf 'class Predictor:\n    def predict(self) -> str:\n        return \"ok\"\n' >"$d/predict.py"
	printf 'build:\n  python_version: "3.11"\nrun: predict.py:Predictor\n' >"$d/kiln.yaml"
}
P=$T_WORK/p

t_case "missing manifest"
mkdir -p "$T_WORK/empty"
run_kiln build "$T_WORK/empty"
expect_rc 1
expect_contains "$ERR" "no kiln.yaml or cog.yaml in '$T_WORK/empty'"

t_case "YAML syntax error names file, line and column"
good_project "$P"
printf 'build:\n  gpu: true\n run: x\n' >"$P/kiln.yaml"
run_kiln build "$P"
expect_rc 1
expect_contains "$ERR" "$P/kiln.yaml:3:"

t_case "unknown key"
good_project "$P"
printf 'build:\n  gpuu: true\nrun: predict.py:Predictor\n' >"$P/kiln.yaml"
run_kiln build "$P"
expect_rc 1
expect_contains "$ERR" "$P/kiln.yaml:2:3: unknown key 'gpuu'"

t_case "wrong type"
good_project "$P"
printf 'build:\n  gpu: maybe\nrun: predict.py:Predictor\n' >"$P/kiln.yaml"
run_kiln build "$P"
expect_rc 1
expect_contains "$ERR" "$P/kiln.yaml:2:8: build.gpu"

t_case "missing predictor file"
good_project "$P"
rm "$P/predict.py"
run_kiln build "$P"
expect_rc 1
expect_contains "$ERR" "$P/kiln.yaml:3:6:"
expect_contains "$ERR" "predict.py"

t_case "a predictor that cannot be described (no such class)"
good_project "$P"
printf 'build:\n  python_version: "3.11"\nrun: predict.py:Missing\n' >"$P/kiln.yaml"
run_kiln build "$P"
expect_rc 1
expect_contains "$ERR" "$P/kiln.yaml:3:6: run: cannot describe the predictor: predict.py: no class or function named 'Missing'"

t_case "weights glob matching nothing"
good_project "$P"
printf 'weights:\n  - "models/*.bin"\n' >>"$P/kiln.yaml"
run_kiln build "$P"
expect_rc 1
expect_contains "$ERR" "$P/kiln.yaml:5:5: weights[0]: 'models/*.bin' matches no file"

t_case "symlink pointing outside the project"
good_project "$P"
ln -s /etc/passwd "$P/passwd"
run_kiln build "$P"
expect_rc 1
expect_contains "$ERR" "symlink 'passwd' points outside the project"

t_case "unreadable file (as an unprivileged user)"
good_project "$P"
echo data >"$P/private.txt"
chmod 600 "$P/private.txt"
chmod 755 "$T_WORK" "$P"
mkdir -p "$T_WORK/nobodyhome" && chown nobody "$T_WORK/nobodyhome"
OUT=$(setpriv --reuid=nobody --regid=nogroup --clear-groups env KILN_HOME="$T_WORK/nobodyhome" "$KILN" build "$P" 2>&1)
RC=$?
expect_rc 1
expect_contains "$OUT" "cannot read 'private.txt': Permission denied"

t_case "bad reference and bad options"
good_project "$P"
run_kiln build "$P" -t 'Bad Name'
expect_rc 1
expect_contains "$ERR" "invalid reference 'Bad Name'"
run_kiln build "$P" --output tarball:/x
expect_rc 2
expect_contains "$ERR" "expected 'oci:DIR[:TAG]' or 'oci-archive:FILE[:TAG]'"
run_kiln build "$P" --nope
expect_rc 2
expect_contains "$ERR" "unknown option '--nope'"
OUT=$(SOURCE_DATE_EPOCH=yesterday "$KILN" build "$P" 2>&1)
expect_contains "$OUT" "SOURCE_DATE_EPOCH: 'yesterday' is not a number of seconds"

t_case "disk full: a clear error, nothing half-written, and the next build succeeds"
good_project "$P"
room=$(($(runtime_mib) + 8)) # MiB: room for the runtime layer
make_file "$P/blob.py" $(((room + 8) * MiB)) # code (a .py is never a weight), incompressible: does not fit
mkdir -p "$T_WORK/small"
if mount -t tmpfs -o size=${room}m tmpfs "$T_WORK/small" 2>/dev/null; then
	t_defer "umount '$T_WORK/small'"
	OUT=$(KILN_HOME="$T_WORK/small/home" "$KILN" build "$P" 2>&1)
	RC=$?
	expect_rc 1
	expect_contains "$OUT" "No space left on device"
	expect_store_consistent "$T_WORK/small/home"
	rm "$P/blob.py"
	OUT=$(KILN_HOME="$T_WORK/small/home" "$KILN" build "$P" -t small:1 2>&1)
	RC=$?
	expect_rc 0
	expect_store_consistent "$T_WORK/small/home"
else
	t_fail "cannot mount a tmpfs to fill (the tests run as root)"
fi

# A project large enough that a build takes a while: sparse files read fast but still need hashing.
big_project() {
	good_project "$P"
	printf 'weights:\n  - "w/*"\n' >>"$P/kiln.yaml"
	mkdir -p "$P/w"
	for i in 1 2 3 4 5 6 7 8; do truncate -s 1G "$P/w/shard$i"; done
}

t_case "SIGINT in the middle of a build: exit 130, consistent store, next build succeeds"
big_project
export KILN_HOME=$T_WORK/sigint
"$KILN" build "$P" -t big:1 >/dev/null 2>"$T_WORK/err" &
pid=$!
sleep 0.5
kill -INT $pid
wait $pid
RC=$?
expect_rc 130
expect_contains "$(cat "$T_WORK/err")" "interrupted"
expect_store_consistent
run_kiln build "$P" -t big:1 --json
expect_rc 0
expect_store_consistent

t_case "SIGKILL in the middle of a build: the next build succeeds and cleans up"
export KILN_HOME=$T_WORK/sigkill
make_file "$P/code.dat" $((8 * MiB)) # a gzip layer being written when killed
"$KILN" build "$P" -t big:1 >/dev/null 2>&1 &
pid=$!
sleep 0.5
kill -KILL $pid
wait $pid 2>/dev/null
run_kiln build "$P" -t big:1 --json
expect_rc 0
expect_store_consistent
run_kiln inspect big:1
expect_rc 0

t_finish
