#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The types Cog 0.22 accepts beyond the primitives, end to end: unions of JSON types, dict / Dict[str, Any] /
# TypedDict / Opaque inputs, TypedDict and BaseModel outputs (a class named Output too), types imported from
# other modules of the project (also relatively, from a package), default=None as Cog reads it,
# Input(accept=...), and the document's envelope and key order as Cog's static schema generator writes them.
# Each through kiln_schema.py, `kiln predict --runtime native` and kiln-shim over HTTP.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/shim_lib.sh"

FIX=$KILN_SOURCE_DIR/tests/fixtures/predictors
PYDIR=$KILN_SOURCE_DIR/templates/python
export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT
cd "$T_WORK" || exit 1

# project NAME SOURCE RUN: a project NAME holding SOURCE (a fixture file or directory, or a path), run as RUN.
project() {
	local dir=$T_WORK/$1 src=$2
	[ -e "$src" ] || src=$FIX/$src
	mkdir -p "$dir"
	if [ -d "$src" ]; then cp -r "$src"/. "$dir/"; else cp "$src" "$dir/"; fi
	echo "run: $3" >"$dir/kiln.yaml"
	echo "$dir"
}
# schema DIR SPEC: kiln_schema.py's document for SPEC, run in DIR as kiln build runs it; stderr in $ERR.
schema() { (cd "$1" && python3 -S -B "$PYDIR/kiln_schema.py" "$2") 2>"$T_WORK/err"; RC=$?; ERR=$(cat "$T_WORK/err"); }
# prop DOC NAME: input NAME's property in DOC, as JSON with sorted keys.
prop() { echo "$1" | json "j['components']['schemas']['Input']['properties']['$2']"; }
# predict DIR ARGS...: kiln predict --runtime native on DIR; the output in $OUT (parsed by `out EXPR`).
predict() { run_kiln predict "$1" "${@:2}" --runtime native; }
out() { echo "$OUT" | json "$1"; }

UNION=$(project union union.py union.py:Predictor)
DICTS=$(project dicts dicts.py dicts.py:Predictor)
IMPORTED=$(project imported imported predict.py:Predictor)
PACKAGE=$(project package imported pkg/predict.py:Predictor)

# ---- unions (Cog's JSON-native union inputs: anyOf of the members, nullable where None is one)

t_case "kiln_schema: a union input is anyOf its members; with None, nullable and still required without a default"
DOC=$( (cd "$UNION" && python3 -S -B "$PYDIR/kiln_schema.py" union.py:Predictor))
expect_eq "$(prop "$DOC" value)" '{"anyOf": [{"type": "string"}, {"type": "number"}], "title": "Value", "x-order": 0}'
expect_eq "$(prop "$DOC" count)" '{"anyOf": [{"type": "integer"}, {"type": "string"}], "default": 3, "title": "Count", "x-order": 1}'
expect_eq "$(prop "$DOC" nums)" \
	'{"anyOf": [{"items": {"type": "integer"}, "type": "array"}, {"items": {"type": "number"}, "type": "array"}], "default": [1, 2], "title": "Nums", "x-order": 2}'
expect_eq "$(prop "$DOC" maybe)" \
	'{"anyOf": [{"type": "string"}, {"type": "integer"}], "default": null, "description": "A string, an int or nothing", "nullable": true, "title": "Maybe", "x-order": 3}'
expect_eq "$(prop "$DOC" either)" '{"anyOf": [{"type": "boolean"}, {"type": "object"}], "default": null, "nullable": true, "title": "Either", "x-order": 4}'
expect_eq "$(prop "$DOC" need)" '{"anyOf": [{"type": "string"}, {"type": "number"}], "nullable": true, "title": "Need", "x-order": 5}'
expect_eq "$(echo "$DOC" | json "j['components']['schemas']['Input']['required']")" '["value", "need"]'

t_case "kiln_schema: a union with a Path, a default of none of its types, a union output: refused"
schema "$UNION" union.py:BadMember
expect_rc 1
expect_eq "$ERR" "union.py:28: unsupported union type 'str | Path' for input 'image': a union's members must be str, int, float, bool, dict, Any or a list of them"
printf 'from cog import BasePredictor, Input\nclass P(BasePredictor):\n    def predict(self, x: int | str = Input(default=1.5)) -> str:\n        return ""\n' >"$T_WORK/baddef.py"
schema "$T_WORK" baddef.py:P
expect_rc 1
expect_eq "$ERR" "baddef.py:3: invalid default for 'x': 1.5 is none of int | str"
printf 'from cog import BaseModel, BasePredictor\nclass O(BaseModel):\n    x: str | int\nclass P(BasePredictor):\n    def predict(self) -> str | int:\n        return ""\nclass Q(BasePredictor):\n    def predict(self) -> O:\n        return O(x="")\n' >"$T_WORK/unionout.py"
schema "$T_WORK" unionout.py:P
expect_rc 1
expect_eq "$ERR" "unionout.py:5: unsupported union type 'str | int' for the output: Cog takes unions in inputs only"
schema "$T_WORK" unionout.py:Q
expect_rc 1
expect_eq "$ERR" "unionout.py:3: unsupported union type 'str | int' for output field 'x': Cog takes unions in inputs only"

t_case "kiln predict: each union value reaches predict() as the member it is (5 an int, 2.5 a float, 5 as a float)"
predict "$UNION" -i value=2.5 -i need=x -i count=7 -i nums=1 -i nums=2.5 -i maybe=abc
expect_rc 0
expect_eq "$(out '[j["value"], j["need"], j["count"], j["nums"], j["maybe"], j["either"]]')" \
	'[["float", 2.5], ["str", "x"], ["int", 7], ["list", [1.0, 2.5]], ["str", "abc"], null]'
predict "$UNION" -i value=hi -i need=3 -i count=seven -i either=true
expect_rc 0
expect_eq "$(out '[j["value"], j["need"], j["count"], j["either"], j["nums"]]')" \
	'[["str", "hi"], ["float", 3.0], ["str", "seven"], ["bool", true], ["list", [1, 2]]]'

t_case "kiln predict: a union value of none of its types is refused before the model starts"
predict "$UNION" --json '{"value": true, "need": "x"}'
expect_rc 1
expect_contains "$ERR" 'invalid input "value"'
predict "$UNION" -i value=x
expect_rc 1
expect_contains "$ERR" 'missing required input "need"'

t_case "kiln-shim: union inputs over HTTP, strictly typed, 422 in jsonschema's one message for the union"
start "$UNION"
wait_health READY
post '{"input": {"value": 5, "need": null, "count": 4, "nums": [1, 2.5], "either": {"k": [1]}, "maybe": 9}}'
expect_eq "$CODE" 200 "status ($BODY)"
expect_eq "$(field '[j["output"][k] for k in ("value", "need", "count", "nums", "either", "maybe")]')" \
	'[["float", 5.0], null, ["int", 4], ["list", [1.0, 2.5]], ["dict", {"k": [1]}], ["int", 9]]'
post '{"input": {"value": true, "need": "x"}}'
expect_eq "$CODE" 422
expect_eq "$(field 'j["detail"]')" \
	"[{\"loc\": [\"body\", \"input\", \"value\"], \"msg\": \"true is not valid under any of the schemas listed in the 'anyOf' keyword\", \"type\": \"value_error\"}]"
post '{"input": {"value": "a", "need": "x", "count": 2.5, "nums": [true]}}'
expect_eq "$CODE" 422
expect_eq "$(field '[(e["loc"][-1], e["type"]) for e in j["detail"]]')" \
	'[["count", "value_error"], ["nums", "value_error"]]'
post '{"input": {"value": "a"}}'
expect_eq "$CODE" 422
expect_eq "$(field 'j["detail"]')" '[{"loc": ["body", "input", "need"], "msg": "Field required", "type": "value_error.missing"}]'
kill -TERM "$SPID"

# ---- dict, Dict[str, Any], TypedDict, Opaque inputs; TypedDict outputs

t_case "kiln_schema: dict, Dict[str, Any], TypedDict and Annotated[dict, Opaque] inputs are objects; a TypedDict output has its fields"
DOC=$( (cd "$DICTS" && python3 -S -B "$PYDIR/kiln_schema.py" dicts.py:Predictor))
for name in plain options; do
	expect_eq "$(prop "$DOC" $name | json 'j["type"]')" object "$name"
done
expect_eq "$(prop "$DOC" typed)" '{"default": {"a": 1}, "title": "Typed", "type": "object", "x-order": 1}'
expect_eq "$(prop "$DOC" blob)" '{"default": {}, "title": "Blob", "type": "object", "x-order": 3}'
expect_eq "$(prop "$DOC" extra)" '{"default": null, "nullable": true, "title": "Extra", "type": "object", "x-order": 4}'
expect_eq "$(echo "$DOC" | json "j['components']['schemas']['Output']")" \
	'{"properties": {"name": {"title": "Name", "type": "string"}, "keys": {"items": {"type": "string"}, "title": "Keys", "type": "array"}, "note": {"title": "Note", "type": "string"}}, "required": ["name", "keys"], "title": "Output", "type": "object"}'

t_case "kiln_schema: a TypedDict in the functional form (TypedDict(\"Route\", {...}), total=False) is read as the class form"
DOC=$( (cd "$DICTS" && python3 -S -B "$PYDIR/kiln_schema.py" dicts.py:Functional))
expect_eq "$(prop "$DOC" route)" '{"title": "Route", "type": "object", "x-order": 0}'
expect_eq "$(echo "$DOC" | json "j['components']['schemas']['Output']")" \
	'{"properties": {"from": {"title": "From", "type": "string"}, "to": {"title": "To", "type": "string"}, "stops": {"items": {"type": "integer"}, "title": "Stops", "type": "array"}}, "required": ["from", "stops"], "title": "Output", "type": "object"}'
printf 'from typing import TypedDict\nfrom cog import BasePredictor\nT = TypedDict("T", {1: int})\nclass P(BasePredictor):\n    def predict(self) -> T:\n        return {}\n' \
	>"$T_WORK/badtd.py"
(cd "$T_WORK" && python3 -S -B "$PYDIR/kiln_schema.py" badtd.py:P) >/dev/null 2>"$T_WORK/badtd.err"
expect_eq "$(cat "$T_WORK/badtd.err")" "badtd.py:3: TypedDict 'T' must have string literal keys"

t_case "kiln predict: dict inputs reach predict() as dicts (-i takes JSON for them); a non-object is refused"
predict "$DICTS" -i 'plain={"x": [1]}' -i 'options={"size": 2, "label": "l"}'
expect_rc 0
expect_eq "$(out 'j')" '{"keys": ["label", "size"], "name": "plain:dict,typed:dict,options:dict,blob:dict,extra:NoneType"}'
predict "$DICTS" -i plain=x -i 'options={}'
expect_rc 1
expect_contains "$ERR" "input 'plain': 'x' is not a JSON object"

t_case "kiln-shim: dict inputs over HTTP; 422 for a non-object; a TypedDict output lacking a field fails"
start "$DICTS"
wait_health READY
post '{"input": {"plain": {"a": {"b": null}}, "options": {"size": 1, "label": "x"}, "blob": {"z": 1}}}'
expect_eq "$CODE" 200 "status ($BODY)"
expect_eq "$(field 'j["output"]')" '{"name": "plain:dict,typed:dict,options:dict,blob:dict,extra:NoneType", "keys": ["label", "size"]}'
expect_eq "$(field 'j["input"]["typed"]')" '{"a": 1}' "the default in the response's input"
post '{"input": {"plain": [1], "options": "x"}}'
expect_eq "$CODE" 422
expect_eq "$(field '[(e["loc"][-1], e["msg"]) for e in j["detail"]]')" \
	'[["plain", "[1] is not of type \"object\""], ["options", "\"x\" is not of type \"object\""]]'
kill -TERM "$SPID"
FUNCTIONAL=$(project functional dicts.py dicts.py:Functional)
start "$FUNCTIONAL"
wait_health READY
post '{"input": {"route": {"from": "a", "to": "b", "stops": [1, 2]}}}'
expect_eq "$(field '[j["status"], j["output"]]')" '["succeeded", {"from": "b", "stops": [2, 1]}]' "a functional TypedDict output"
kill -TERM "$SPID"
MISSING=$(project missing dicts.py dicts.py:Missing)
start "$MISSING"
wait_health READY
post '{"input": {}}'
expect_eq "$(field '[j["status"], j["error"]]')" '["failed", "missing output field: keys"]'
kill -TERM "$SPID"

# ---- types imported from the project's other modules

t_case "kiln_schema: types from another module (from mytypes import ..., import mytypes, import *) and from .types in a package"
DOC=$( (cd "$IMPORTED" && python3 -S -B "$PYDIR/kiln_schema.py" predict.py:Predictor))
expect_eq "$(prop "$DOC" settings)" '{"title": "Settings", "type": "object", "x-order": 1}'
expect_eq "$(prop "$DOC" nums | json 'j["anyOf"]')" '[{"items": {"type": "integer"}, "type": "array"}, {"items": {"type": "number"}, "type": "array"}]'
expect_eq "$(echo "$DOC" | json "j['components']['schemas']['Output']")" \
	'{"properties": {"text": {"title": "Text", "type": "string"}, "total": {"title": "Total", "type": "number"}}, "required": ["text", "total"], "title": "Output", "type": "object"}'
DOC=$( (cd "$PACKAGE" && python3 -S -B "$PYDIR/kiln_schema.py" pkg/predict.py:Predictor))
expect_eq "$(echo "$DOC" | json "j['components']['schemas']['Output']['required']")" '["greeting", "length"]'
printf 'from cog import BasePredictor\nfrom mytypes import *\nclass P(BasePredictor):\n    def predict(self, s: Settings) -> Output:\n        pass\n' >"$IMPORTED/star.py"
DOC=$( (cd "$IMPORTED" && python3 -S -B "$PYDIR/kiln_schema.py" star.py:P))
expect_eq "$(echo "$DOC" | json "[j['components']['schemas']['Input']['properties']['s']['type'], j['components']['schemas']['Output']['required']]")" \
	'["object", ["text", "total"]]' "from mytypes import *"
printf 'from cog import BasePredictor\nfrom elsewhere import Thing\nclass P(BasePredictor):\n    def predict(self, t: Thing) -> str:\n        return ""\n' >"$T_WORK/noimport.py"
schema "$T_WORK" noimport.py:P
expect_rc 1
expect_eq "$ERR" "noimport.py:4: unsupported type annotation 'Thing' for input 't'"

t_case "kiln predict and kiln-shim: predictors whose types come from other modules run"
predict "$IMPORTED" -i nums=1 -i nums=2 -i 'settings={"depth": 3}'
expect_rc 0
expect_eq "$(out 'j')" '{"text": "depth 3", "total": 3.0}'
predict "$PACKAGE" -i name=kiln
expect_rc 0
expect_eq "$(out 'j')" '{"greeting": "hello kiln", "length": 4}'
start "$PACKAGE"
wait_health READY
post '{"input": {"name": "http"}}'
expect_eq "$(field 'j["output"]')" '{"greeting": "hello http", "length": 4}' "output ($BODY)"
kill -TERM "$SPID"

# ---- default=None, accept, the envelope

cat >"$T_WORK/defaults.py" <<'EOF'
from typing import Optional

from cog import BasePredictor, Input, Path, Secret


class Predictor(BasePredictor):
    def predict(
        self,
        seed: int = Input(default=None),
        key: Secret = Input(default=None),
        n: Optional[int] = Input(default=None),
        m: Optional[str] = Input(),
        image: Path = Input(description="A picture", accept="image/*"),
        x: int | None = None,
    ) -> str:
        return f"{seed} {None if key is None else key.get_secret_value()} {n} {m} {x}"
EOF
DEFAULTS=$(project defaults "$T_WORK/defaults.py" defaults.py:Predictor)

t_case "kiln_schema: default=None as Cog reads it; accept= as x-cog-accept"
DOC=$( (cd "$DEFAULTS" && python3 -S -B "$PYDIR/kiln_schema.py" defaults.py:Predictor))
expect_eq "$(prop "$DOC" seed)" '{"title": "Seed", "type": "integer", "x-order": 0}' "seed: int = Input(default=None)"
expect_eq "$(prop "$DOC" key)" \
	'{"default": null, "format": "password", "nullable": true, "title": "Key", "type": "string", "writeOnly": true, "x-cog-secret": true, "x-order": 1}'
expect_eq "$(prop "$DOC" n)" '{"default": null, "nullable": true, "title": "N", "type": "integer", "x-order": 2}'
expect_eq "$(prop "$DOC" m)" '{"nullable": true, "title": "M", "type": "string", "x-order": 3}'
expect_eq "$(prop "$DOC" image)" \
	'{"description": "A picture", "format": "uri", "title": "Image", "type": "string", "x-cog-accept": "image/*", "x-order": 4}'
expect_eq "$(prop "$DOC" x)" '{"default": null, "nullable": true, "title": "X", "type": "integer", "x-order": 5}'
expect_eq "$(echo "$DOC" | json "j['components']['schemas']['Input']['required']")" '["seed", "image"]'
printf 'from cog import BasePredictor, Input, Path\nclass P(BasePredictor):\n    def predict(self, f: Path = Input(accept=["image/png"])) -> str:\n        return ""\n' >"$T_WORK/badaccept.py"
schema "$T_WORK" badaccept.py:P
expect_rc 1
expect_eq "$ERR" "badaccept.py:3: accept of 'f' must be a string of MIME types (\"image/*,.png\")"
printf 'from typing import List\nfrom cog import BasePredictor, File, Input, Path\nclass P(BasePredictor):\n    def predict(self, f: List[Path] = Input(accept=".bin"), g: File = Input(accept="text/*"), name: str = Input(accept="text/plain")) -> str:\n        return ""\n' >"$T_WORK/badaccept.py"
schema "$T_WORK" badaccept.py:P
expect_rc 1
expect_eq "$ERR" "badaccept.py:4: accept is only valid on Path or File inputs (parameter 'name')" "Cog's build error; a list of Path and a File take it"

t_case "kiln_schema: the envelope, paths and key order of Cog's static schema generator"
expect_eq "$(echo "$DOC" | json 'list(j)')" '["components", "info", "openapi", "paths"]'
expect_eq "$(echo "$DOC" | json '[j["openapi"], j["info"]]')" '["3.0.2", {"title": "Cog", "version": "0.1.0"}]'
expect_eq "$(echo "$DOC" | json 'list(j["paths"])')" '["/", "/health-check", "/predictions", "/predictions/{prediction_id}/cancel"]'
expect_eq "$(echo "$DOC" | json 'list(j["components"]["schemas"])')" \
	'["Input", "Output", "PredictionRequest", "PredictionResponse", "Status", "HTTPValidationError", "ValidationError"]'
expect_eq "$(echo "$DOC" | json 'j["components"]["schemas"]["PredictionRequest"]')" \
	'{"properties": {"id": {"title": "Id", "type": "string"}, "input": {"$ref": "#/components/schemas/Input"}}, "title": "PredictionRequest", "type": "object"}'
expect_eq "$(echo "$DOC" | json 'j["components"]["schemas"]["PredictionResponse"]["properties"]["status"]')" '{"title": "Status", "type": "string"}'
expect_eq "$(echo "$DOC" | json 'j["components"]["schemas"]["Status"]')" \
	'{"description": "An enumeration.", "enum": ["starting", "processing", "succeeded", "canceled", "failed"], "title": "Status", "type": "string"}'
expect_eq "$(echo "$DOC" | json 'list(j["components"]["schemas"]["Input"]["properties"])')" '["seed", "key", "n", "m", "image", "x"]' \
	"input properties in declaration order"

t_case "kiln predict and kiln-shim: seed: int = Input(default=None) is required; the Optional ones may be left out"
printf 'hi' >"$T_WORK/pic.png"
predict "$DEFAULTS" -i image=@pic.png
expect_rc 1
expect_contains "$ERR" 'missing required input "seed"'
predict "$DEFAULTS" -i image=@pic.png -i seed=4
expect_rc 0
expect_eq "$OUT" "4 None None None None"
start "$DEFAULTS"
wait_health READY
post '{"input": {"image": "data:image/png;base64,aGk="}}'
expect_eq "$CODE" 422
expect_eq "$(field 'j["detail"]')" '[{"loc": ["body", "input", "seed"], "msg": "Field required", "type": "value_error.missing"}]'
post '{"input": {"image": "data:image/png;base64,aGk=", "seed": 1, "key": "k", "m": null}}'
expect_eq "$CODE" 200 "status ($BODY)"
expect_eq "$(field 'j["output"]')" "1 k None None None"
req GET /openapi.json
expect_eq "$(field 'j["components"]["schemas"]["Input"]["properties"]["image"]["x-cog-accept"]')" "image/*"
kill -TERM "$SPID"

t_finish
