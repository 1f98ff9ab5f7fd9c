#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The command-line contract: help, version, exit statuses, usage errors.
source "$(dirname "$0")/lib.sh"

t_case "kiln with no command is a usage error"
run_kiln
expect_rc 2
expect_contains "$ERR" "usage: kiln"

t_case "--help lists the commands"
run_kiln --help
expect_rc 0
for c in build inspect version help; do expect_contains "$OUT" "  $c "; done

t_case "each command's --help and 'kiln help COMMAND' print its synopsis"
for c in build inspect version; do
	run_kiln "$c" --help
	expect_rc 0
	expect_contains "$OUT" "usage: kiln $c"
	A=$OUT
	run_kiln help "$c"
	expect_eq "$OUT" "$A" "kiln help $c"
done

t_case "unknown command and unknown option exit 2"
run_kiln frobnicate
expect_rc 2
expect_contains "$ERR" "'frobnicate' is not a kiln command"
run_kiln inspect --bogus
expect_rc 2
expect_contains "$ERR" "unknown option '--bogus'"
run_kiln build --progress sideways
expect_rc 2
expect_contains "$ERR" "--progress: 'sideways'"

t_case "version, plain and JSON"
run_kiln version
expect_rc 0
[[ "$OUT" =~ ^kiln\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || t_fail "version line: $OUT"
run_kiln version --json
expect_rc 0
expect_contains "$(echo "$OUT" | json 'j["libraries"]["libarchive"]')" "libarchive"

t_case "inspect of an image that is not there fails with its name"
run_kiln inspect nothere:1
expect_rc 1
expect_contains "$ERR" "no image 'docker.io/library/nothere:1' in the store"

t_case "plain progress prints one line per layer on stderr"
P=$T_WORK/p
mkdir -p "$P"
printf 'class P:\n    def predict(self) -> str:\n        return \"ok\"\n' >"$P/p.py"
printf 'run: p.py:P\n' >"$P/kiln.yaml"
run_kiln build "$P" --progress plain
expect_rc 0
expect_contains "$ERR" "code"
expect_contains "$ERR" "built p:latest"
expect_contains "$OUT" "p:latest@sha256:"
run_kiln --quiet build "$P"
expect_eq "$ERR" "" "stderr with --quiet"

t_finish
