#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln dockerfile (#10): the Dockerfile equivalent to kiln's build of a project with every kind of key, its
# lines checked and parsed, stable across runs; no manifest and a bad key are clear errors.
source "$(dirname "$0")/lib.sh"

unset KILN_PYTHON_BASE # the test harness's scratch default: here the base kiln build would choose
P=$T_WORK/p
mkdir -p "$P/models" "$P/lib"
printf 'class Predictor:\n    def predict(self) -> str:\n        return "ok"\n' >"$P/predict.py"
printf 'numpy\n' >"$P/requirements.txt"
printf 'x = 1\n' >"$P/lib/util.py"
printf 'secret\n' >"$P/notes.txt"
printf 'notes.txt\n' >"$P/.dockerignore"
make_file "$P/models/big.bin" 1000
cat >"$P/cog.yaml" <<'YAML'
build:
  python_version: "3.11"
  gpu: true
  system_packages: [git, libgl1]
  pre_install: ["echo pre"]
  python_requirements: requirements.txt
  environment: [STAGE=build]
  sdk_version: "0.16.0"
  run:
    - echo one
    - command: cat /run/secrets/tok > /dev/null
      mounts:
        - type: secret
          id: tok
          target: /run/secrets/tok
    - |
      echo two
      echo three
predict: predict.py:Predictor
environment: [MODE=fast]
weights: ["models/*.bin"]
YAML

t_case "the Dockerfile of a project with every kind of key"
run_kiln dockerfile "$P"
expect_rc 0
DF=$OUT
expect_eq "$(head -1 <<<"$DF")" "# syntax=docker/dockerfile:1"
expect_contains "$DF" "ARG KILN_RUNTIME_IMAGE=p:latest"
expect_contains "$DF" 'FROM ${KILN_RUNTIME_IMAGE} AS kiln-runtime'
expect_contains "$DF" "FROM python:3.11-slim"
expect_contains "$DF" 'ENV MODE="fast"'
expect_contains "$DF" 'ARG STAGE="build"'
expect_contains "$DF" 'ENV NVIDIA_VISIBLE_DEVICES="all"'
expect_contains "$DF" "RUN apt-get update -qq && apt-get install -qqy --no-install-recommends 'git' 'libgl1' && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin"
expect_contains "$DF" "RUN echo pre"
expect_contains "$DF" "RUN --mount=type=bind,target=/src cd /src && pip install --no-cache-dir -r 'requirements.txt'"
expect_contains "$DF" "RUN echo one"
expect_contains "$DF" "RUN --mount=type=secret,id=tok,target=/run/secrets/tok cat /run/secrets/tok > /dev/null"
expect_contains "$DF" 'RUN ["/bin/sh", "-c", "echo two\necho three\n"]'
expect_contains "$DF" 'COPY ["models/big.bin", "/src/models/big.bin"]'
expect_contains "$DF" 'COPY --from=kiln-runtime ["/.kiln", "/.kiln"]'
expect_contains "$DF" 'COPY ["lib/util.py", "/src/lib/util.py"]'
expect_not_contains "$DF" "notes.txt"
expect_contains "$DF" "WORKDIR /src"
expect_contains "$DF" "EXPOSE 5000"
expect_contains "$DF" 'LABEL run.cog.config="{\"build\":'
expect_contains "$DF" 'ENTRYPOINT ["/.kiln/lib/ld-linux-x86-64.so.2"'
expect_contains "$ERR" "cog.yaml:8:3: build.sdk_version: kiln bundles its own cog module"
# order: base, steps, weights, runtime, code, then the image's settings
python3 - "$DF" <<'PY' || t_fail "the Dockerfile's structure"
import json, sys
lines = [l for l in sys.argv[1].split("\n") if l and not l.startswith("#")]
known = {"ARG", "FROM", "ENV", "RUN", "COPY", "WORKDIR", "EXPOSE", "LABEL", "ENTRYPOINT"}
for l in lines:
    assert l.split()[0] in known, l
    if l.startswith("COPY") or l.startswith("ENTRYPOINT") or (l.startswith("RUN [")):
        json.loads(l[l.index("["):])
    if l.startswith("LABEL"):
        json.loads(json.loads(l.split("=", 1)[1]))
def at(s): return next(i for i, l in enumerate(lines) if l.startswith(s))
order = [at("FROM python:3.11-slim"), at("RUN apt-get"), at("RUN echo pre"), at("RUN --mount=type=bind,target=/src cd /src && pip"), at("RUN echo one"),
         at('COPY ["models/big.bin"'), at("COPY --from=kiln-runtime"), at('COPY ["predict.py"'),
         at("WORKDIR"), at("ENTRYPOINT")]
assert order == sorted(order), order
PY

t_case "the output is the same on every run"
run_kiln dockerfile "$P"
expect_eq "$OUT" "$DF" "second run"
run_kiln dockerfile -f "$P/cog.yaml" "$P" --runtime-image r.example/kiln:1
expect_rc 0
expect_contains "$OUT" "ARG KILN_RUNTIME_IMAGE=r.example/kiln:1"
KILN_PYTHON_BASE='registry.example/py:{python_version}' run_kiln dockerfile "$P"
expect_contains "$OUT" "FROM registry.example/py:3.11"

t_case "build.python_overrides: the Dockerfile's pip cannot apply them, and kiln dockerfile says so"
O=$T_WORK/over
mkdir -p "$O"
cp "$P/predict.py" "$P/requirements.txt" "$O/"
printf 'numpy==2.0.0\n' >"$O/overrides.txt"
printf 'build:\n  python_requirements: requirements.txt\n  python_overrides: overrides.txt\nrun: predict.py:Predictor\n' >"$O/kiln.yaml"
run_kiln dockerfile "$O"
expect_rc 0
expect_contains "$ERR" "kiln: warning: $O/kiln.yaml:3:21: build.python_overrides: a Dockerfile's pip takes no overrides"
expect_contains "$OUT" "pip install --no-cache-dir -r 'requirements.txt'"

t_case "docker parses the Dockerfile when it is here"
if docker buildx version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
	printf '%s\n' "$DF" >"$T_WORK/Dockerfile"
	docker buildx build --check -f "$T_WORK/Dockerfile" "$P" >/dev/null 2>&1 || t_fail "docker buildx --check"
fi

t_case "a project without a manifest is a clear error"
mkdir -p "$T_WORK/empty"
run_kiln dockerfile "$T_WORK/empty"
expect_rc 1
expect_contains "$ERR" "kiln: error: no kiln.yaml or cog.yaml in '$T_WORK/empty'"
expect_eq "$OUT" "" "stdout"

t_case "a bad key is a clear error"
mkdir -p "$T_WORK/bad"
printf 'class P: pass\n' >"$T_WORK/bad/p.py"
printf 'run: p.py:P\nbuild:\n  sdk: 1\n' >"$T_WORK/bad/kiln.yaml"
run_kiln dockerfile "$T_WORK/bad"
expect_rc 1
expect_contains "$ERR" "kiln.yaml:3:3: unknown key 'sdk' in 'build'"
expect_eq "$OUT" "" "stdout"

t_case "extra arguments are a usage error"
run_kiln dockerfile "$P" "$P"
expect_rc 2

t_finish
