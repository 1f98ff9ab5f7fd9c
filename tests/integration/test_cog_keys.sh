#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every Cog key is honoured or named (#10): kiln build accepts Cog's keys and prints, with the file, line
# and column, each one it does not act on, on stderr and in --json's "warnings".
source "$(dirname "$0")/lib.sh"

P=$T_WORK/p
make_project "$P" 'build:
  fast: true
  sdk_version: "0.16.0"
  cog_runtime: true
concurrency:
  max: 2'

t_case "kiln build names each key it does not act on"
run_kiln build "$P"
expect_rc 0
expect_contains "$ERR" "kiln: warning: $P/kiln.yaml:3:3: build.fast: kiln's layering is always on"
expect_contains "$ERR" "kiln: warning: $P/kiln.yaml:4:3: build.sdk_version: kiln bundles its own cog module"
expect_contains "$ERR" "kiln: warning: $P/kiln.yaml:5:3: build.cog_runtime: kiln's own runtime"

t_case "kiln build --json lists them under warnings"
run_kiln build "$P" --json
expect_rc 0
# the manifest's three, then the base's (lib.sh builds Python predictors on scratch)
expect_eq "$(json 'len([w for w in j["warnings"] if "kiln.yaml:" in w])' <<<"$OUT")" 3 "warnings"
expect_contains "$(json 'j["warnings"][0]' <<<"$OUT")" "kiln.yaml:3:3: build.fast"

t_case "kiln inspect DIR prints them too"
run_kiln inspect "$P"
expect_rc 0
expect_contains "$ERR" "kiln.yaml:4:3: build.sdk_version"

t_case "predict: (Cog's older name of run:) works, with a deprecation warning naming run"
mkdir -p "$T_WORK/old"
printf 'class P:\n    def predict(self) -> str:\n        return "ok"\n' >"$T_WORK/old/p.py"
printf 'build:\n  python_version: "3.11"\npredict: p.py:P\n' >"$T_WORK/old/cog.yaml"
run_kiln build "$T_WORK/old"
expect_rc 0
expect_contains "$ERR" "kiln: warning: $T_WORK/old/cog.yaml:3:1: predict: deprecated: Cog renamed it 'run'"
printf 'run: p.py:P\npredict: p.py:P\n' >"$T_WORK/old/cog.yaml"
run_kiln build "$T_WORK/old"
expect_rc 1
expect_contains "$ERR" "cog.yaml:2:1: 'run' and 'predict' are both set"

t_case "the predictor's deprecated names: BasePredictor, predict(); warned again from the cache"
mkdir -p "$T_WORK/names"
printf 'from cog import BasePredictor\n\n\nclass P(BasePredictor):\n    def predict(self) -> str:\n        return "ok"\n' >"$T_WORK/names/p.py"
printf 'run: p.py:P\n' >"$T_WORK/names/kiln.yaml"
for pass in first cached; do
	run_kiln build "$T_WORK/names"
	expect_rc 0
	expect_contains "$ERR" "kiln: warning: $T_WORK/names/p.py:4: BasePredictor is deprecated: derive 'P' from cog.BaseRunner and name its method run() (Cog renamed predictions runs)"
done
printf 'from cog import BaseRunner\n\n\nclass P(BaseRunner):\n    def predict(self) -> str:\n        return "ok"\n' >"$T_WORK/names/p.py"
run_kiln build "$T_WORK/names" --json
expect_contains "$(json 'j["warnings"]' <<<"$OUT")" "$T_WORK/names/p.py:5: predict() is deprecated: name it run()"
printf 'from cog import BaseRunner\n\n\nclass P(BaseRunner):\n    def run(self) -> str:\n        return "ok"\n' >"$T_WORK/names/p.py"
run_kiln build "$T_WORK/names"
expect_not_contains "$ERR" "deprecated"

t_case "a manifest kiln acts on fully has no warning"
make_project "$T_WORK/q" 'environment: [A=1]'
run_kiln build "$T_WORK/q"
expect_rc 0
expect_not_contains "$ERR" "warning: $T_WORK/q/kiln.yaml"

t_finish
