#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Cog's trainings for a project with train: (tests/fixtures/predictors/trainer.py): the schema at build,
# the shim's POST /trainings, PUT /trainings/{id} and cancel over HTTP, validated against TrainingInput,
# beside predictions; no /trainings without a trainer; and `kiln train` on the command line.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

FIX=$KILN_SOURCE_DIR/tests/fixtures/predictors
export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT
cd "$T_WORK" || exit 1

# trainer_project NAME TRAIN: a project NAME running trainer.py:Predictor with train: TRAIN (none if empty).
trainer_project() {
	mkdir -p "$T_WORK/$1"
	cp "$FIX/trainer.py" "$T_WORK/$1/"
	{
		echo "run: trainer.py:Predictor"
		[ -n "$2" ] && echo "train: $2"
	} >"$T_WORK/$1/kiln.yaml"
}
trainer_project fn trainer.py:train
trainer_project cls trainer.py:Trainer
trainer_project none ""

t_case "kiln build: the schema has Cog's TrainingInput, TrainingOutput and /trainings paths, no warning"
run_kiln build "$T_WORK/fn" --json
expect_rc 0
expect_not_contains "$ERR" "train:"
run_kiln inspect fn:latest --json
label=$(echo "$OUT" | json 'j["labels"]["run.cog.openapi_schema"]')
expect_eq "$(echo "$label" | json '[p for p in j["paths"] if "train" in p]')" \
	'["/trainings", "/trainings/{training_id}/cancel"]'
# Cog's build merges the two documents as Go maps: every key in sorted order, the trainer's output titled Output
expect_eq "$(echo "$label" | json 'list(j["components"]["schemas"]["TrainingInput"]["properties"])')" '["name", "steps"]'
expect_eq "$(echo "$label" | json 'list(j["components"]["schemas"]) == sorted(j["components"]["schemas"]) and list(j) == sorted(j)')" True
expect_eq "$(echo "$label" | json '[j["components"]["schemas"][c]["title"] for c in ("TrainingInput", "TrainingOutput", "TrainingRequest")]')" \
	'["TrainingInput", "Output", "TrainingRequest"]'
expect_eq "$(echo "$label" | json 'j["paths"]["/trainings/{training_id}/cancel"]["post"]["parameters"][0]["schema"]["title"]')" "Training Id"
expect_eq "$(echo "$label" | json 'j["paths"]["/trainings"]["post"]["description"]')" "Run a single training on the model"
expect_eq "$(echo "$label" | json 'j["components"]["schemas"]["TrainingInput"]["properties"]["steps"]["minimum"]')" 1
expect_eq "$(echo "$label" | json 'j["components"]["schemas"]["TrainingOutput"]["format"]')" uri
expect_eq "$(echo "$label" | json 'j["components"]["schemas"]["TrainingResponse"]["properties"]["input"]["$ref"]')" \
	"#/components/schemas/TrainingInput"
expect_eq "$(echo "$label" | json 'list(j["components"]["schemas"]["Input"]["properties"])')" '["text"]' "the predictor's"

t_case "a trainer that cannot be described fails the build, naming its file and line"
trainer_project broken trainer.py:train
printf 'def train(x: int = 1, *rest) -> str:\n    return "x"\n' >"$T_WORK/broken/trainer.py"
printf 'class Predictor:\n    def predict(self) -> str:\n        return "ok"\n' >>"$T_WORK/broken/trainer.py"
run_kiln build "$T_WORK/broken"
expect_rc 1
expect_contains "$ERR" "trainer.py:1: train() must not have *args"

t_case "POST /trainings: a training runs the trainer, answered as Cog's TrainingResponse"
start "$T_WORK/fn"
wait_health READY
post_training() { req POST /trainings -H 'Content-Type: application/json' -d "$1" "${@:2}"; }
post_training '{"input": {"steps": 5}}'
expect_eq "$CODE" 200
expect_eq "$(field 'j["status"]')" succeeded
expect_eq "$(field 'j["input"]')" '{"steps": 5, "name": "run"}' "defaults filled in"
expect_eq "$(field 'j["output"]')" "data:text/plain;base64,$(printf 'run:5' | base64)"
expect_eq "$(field 'repr(j["logs"])')" "'training run for 5 steps\\n'"
expect_eq "$(field 'sorted(j)')" '["completed_at", "created_at", "error", "id", "input", "logs", "metrics", "output", "started_at", "status"]'
expect_contains "$(cat "$T_WORK/fn.log")" '"message":"training succeeded","training_id":'
post '{"input": {"text": "still"}}'
expect_eq "$(field 'j["output"]')" "predicted still" "predictions go on beside it"

t_case "a training's input is checked against TrainingInput (422), not the predictor's Input"
post_training '{"input": {"steps": 0}}'
expect_eq "$CODE" 422
expect_eq "$(field 'j["detail"][0]["loc"]')" '["body", "input", "steps"]'
expect_eq "$(field 'j["detail"][0]["msg"]')" "0 is less than the minimum of 1"
post_training '{"input": {"steps": "many"}}'
expect_eq "$(field 'j["detail"][0]["msg"]')" '"many" is not of type "integer"'
post_training '{"input": 3}'
expect_eq "$CODE" 422 "an input that is no object"

t_case "PUT /trainings/{id} is idempotent; async trainings answer 202; cancel stops one"
req PUT /trainings/t1 -H 'Content-Type: application/json' -d '{"input": {"name": "a"}}'
expect_eq "$CODE" 200
expect_eq "$(field 'j["id"]')" t1
req PUT /trainings/t1 -H 'Content-Type: application/json' -d '{"input": {"name": "a"}}'
expect_eq "$(field 'j["output"]')" "data:text/plain;base64,$(printf 'a:3' | base64)" "the same training again"
req PUT /trainings/t2 -H 'Content-Type: application/json' -H 'Prefer: respond-async' -d '{"input": {"name": "slow"}}'
expect_eq "$CODE" 202
expect_eq "$(field 'j["status"]')" processing
post_training '{"input": {}}'
expect_eq "$CODE" 409 "one slot, shared with predictions"
req POST /predictions/t2/cancel
expect_eq "$CODE" 404 "a training is not canceled under /predictions"
req PUT /predictions/t2 -H 'Content-Type: application/json' -d '{"input": {}}'
expect_eq "$CODE" 409 "a prediction cannot take a training's id"
expect_eq "$(field 'j["detail"]')" "a training has this ID"
req POST /trainings/t2/cancel
expect_eq "$CODE" 200
for _ in $(seq 50); do
	req PUT /trainings/t2 -H 'Content-Type: application/json' -d '{"input": {"name": "slow"}}'
	[ "$(field 'j["status"]')" == canceled ] && break
	sleep 0.1
done
expect_eq "$(field 'j["status"]')" canceled
req POST /trainings/t2/cancel
expect_eq "$CODE" 404 "a finished training"
req POST /trainings/nope/cancel
expect_eq "$CODE" 404 "an unknown id"

t_case "a failing trainer: the training fails with its error, the shim stays READY"
post_training '{"input": {"name": "boom"}}'
expect_eq "$(field 'j["status"]')" failed
expect_eq "$(field 'j["error"]')" "the trainer failed"
wait_health READY
kill "$SPID" 2>/dev/null

t_case "a trainer class: setup() runs at start, train() returns an object with a file"
start "$T_WORK/cls"
wait_health READY
req GET /health-check
expect_contains "$(field 'j["setup"]["logs"]')" "trainer setup"
req POST /trainings -H 'Content-Type: application/json' -d '{"input": {"steps": 4}}'
expect_eq "$(field 'j["output"]["loss"]')" 2.5
expect_eq "$(field 'j["output"]["weights"]')" "data:application/octet-stream;base64,AAAAAA=="
kill "$SPID" 2>/dev/null

t_case "without train:, /trainings does not exist (404), as in Cog"
start "$T_WORK/none"
wait_health READY
req POST /trainings -H 'Content-Type: application/json' -d '{"input": {}}'
expect_eq "$CODE" 404
req GET /openapi.json
expect_eq "$(field '[p for p in j["paths"] if "train" in p]')" "[]"
kill "$SPID" 2>/dev/null

t_case "kiln train: the output written to weights (its extension added), -o, --format json"
rm -rf "$T_WORK/cwd" && mkdir -p "$T_WORK/cwd" && cd "$T_WORK/cwd" || exit 1
run_kiln train "$T_WORK/fn" -i steps=4 --runtime native
expect_rc 0
expect_eq "$(cat weights.txt 2>/dev/null)" "run:4"
expect_contains "$ERR" "Written output to: weights.txt"
expect_contains "$ERR" "training run for 4 steps"
run_kiln train "$T_WORK/fn" -i name=o -o "$T_WORK/cwd/mine.txt" --runtime native
expect_eq "$(cat "$T_WORK/cwd/mine.txt" 2>/dev/null)" "o:3"
run_kiln train "$T_WORK/fn" --format json --runtime native
expect_eq "$(echo "$OUT" | json 'j["status"]')" succeeded
printf 'run: trainer.py:Predictor\ntrain: trainer.py:train\n' >"$T_WORK/none/with-train.yaml"
run_kiln train "$T_WORK/none" -f "$T_WORK/none/with-train.yaml" -i steps=2 -o "$T_WORK/cwd/f.txt" --runtime native
expect_rc 0 "kiln train -f: the project trained with another manifest, as cog train -f"
expect_eq "$(cat "$T_WORK/cwd/f.txt" 2>/dev/null)" "run:2"
cd "$T_WORK" || exit 1

t_case "kiln train refuses bad inputs before the trainer runs, a model without trainer, and reports failure"
run_kiln train "$T_WORK/fn" -i steps=0 --runtime native
expect_rc 1
expect_contains "$ERR" 'invalid input "steps": 0 is less than the minimum of 1'
run_kiln train "$T_WORK/fn" -i text=x --runtime native
expect_rc 1
expect_contains "$ERR" 'unknown input "text"; valid inputs are: name, steps'
run_kiln train "$T_WORK/none" --runtime native
expect_rc 1
expect_contains "$ERR" "the model has no trainer: name one with train: FILE.py:NAME in kiln.yaml"
run_kiln train "$T_WORK/fn" -i name=boom --runtime native
expect_rc 1
expect_contains "$ERR" 'Training failed with status "failed": the trainer failed'

t_finish
