# SPDX-License-Identifier: Apache-2.0
"""kiln_schema_openapi: the OpenAPI document Cog serves at /openapi.json, for a predictor kiln_schema_analyze
described."""

from typing import Any, Dict, Optional

from kiln_schema_model import JSON_TYPE, Ordered, PredictorInfo, title_case


def _input_schema(info: PredictorInfo) -> Dict[str, Any]:
    """The Input component: one property per input, in order, with its constraints."""
    props: Dict[str, Any] = Ordered()
    required = []
    for name, f in info.inputs.items():
        prop: Dict[str, Any] = {"x-order": f.order}
        if f.choices is not None:
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
        else:
            prop["title"] = title_case(name)
            prop.update(f.type.json_type())
        if f.required:
            required.append(name)
        if f.has_default:
            prop["default"] = f.default
        if f.nullable:
            prop["nullable"] = True
        for key, attr in (("description", "description"), ("minimum", "ge"), ("maximum", "le"),
                          ("minLength", "min_length"), ("maxLength", "max_length"),
                          ("pattern", "regex"), ("deprecated", "deprecated"), ("x-cog-accept", "accept")):
            if getattr(f, attr) is not None:
                prop[key] = getattr(f, attr)
        props[name] = prop
    schema: Dict[str, Any] = {"title": "Input", "type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


def _enum_schemas(info: PredictorInfo) -> Dict[str, Any]:
    """One enumeration component per input with choices, named after the input."""
    enums = {}
    for name, f in info.inputs.items():
        if f.choices is not None:
            enums[name] = {"title": name, "description": "An enumeration.", "enum": f.choices,
                           "type": JSON_TYPE[f.type.primitive]}
    return enums


def _ok(ref: Optional[str] = None) -> Dict[str, Any]:
    return {"description": "Successful Response",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"} if ref else {}}}}


_VALIDATION_ERROR = {"description": "Validation Error", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}


def _go_order(v: Any) -> Any:
    """V with the key order Cog's static schema generator (pkg/schema/openapi.go) writes."""
    if isinstance(v, dict):
        keys = list(v) if isinstance(v, Ordered) else sorted(v)
        return {k: _go_order(v[k]) for k in keys}
    if isinstance(v, list):
        return [_go_order(x) for x in v]
    return v


def document(info: PredictorInfo) -> Dict[str, Any]:
    """The OpenAPI document of INFO, as Cog 0.22's static schema generator writes it: the envelope, paths and
    components it has, in its key order (dicts keep that order, for json.dump)."""
    date_time = {"type": "string", "format": "date-time"}
    schemas: Dict[str, Any] = Ordered()
    schemas["Input"] = _input_schema(info)
    schemas["Output"] = info.output.json_type()
    schemas.update(_enum_schemas(info))
    schemas["PredictionRequest"] = {"title": "PredictionRequest", "type": "object", "properties": {
        "id": {"title": "Id", "type": "string"}, "input": {"$ref": "#/components/schemas/Input"}}}
    schemas["PredictionResponse"] = {"title": "PredictionResponse", "type": "object", "properties": {
        "input": {"$ref": "#/components/schemas/Input"},
        "output": {"$ref": "#/components/schemas/Output"},
        "id": {"title": "Id", "type": "string"},
        "version": {"title": "Version", "type": "string"},
        "created_at": dict(title="Created At", **date_time),
        "started_at": dict(title="Started At", **date_time),
        "completed_at": dict(title="Completed At", **date_time),
        "status": {"title": "Status", "type": "string"},
        "error": {"title": "Error", "type": "string"},
        "logs": {"title": "Logs", "type": "string"},
        "metrics": {"title": "Metrics", "type": "object"}}}
    schemas["Status"] = {"title": "Status", "description": "An enumeration.", "type": "string",
                         "enum": ["starting", "processing", "succeeded", "canceled", "failed"]}
    schemas["HTTPValidationError"] = {"title": "HTTPValidationError", "type": "object", "properties": {
        "detail": {"title": "Detail", "type": "array",
                   "items": {"$ref": "#/components/schemas/ValidationError"}}}}
    schemas["ValidationError"] = {
        "title": "ValidationError", "required": ["loc", "msg", "type"], "type": "object", "properties": {
            "loc": {"title": "Location", "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"title": "Message", "type": "string"},
            "type": {"title": "Error Type", "type": "string"}}}
    paths = Ordered()
    paths["/"] = {"get": {"summary": "Root", "operationId": "root__get", "responses": {"200": _ok()}}}
    paths["/health-check"] = {"get": {"summary": "Healthcheck", "operationId": "healthcheck_health_check_get",
                                      "responses": {"200": _ok()}}}
    paths["/predictions"] = {"post": {
        "summary": "Predict", "description": "Run a single prediction on the model",
        "operationId": "predict_predictions_post",
        "requestBody": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PredictionRequest"}}}},
        "responses": {"200": _ok("PredictionResponse"), "422": _VALIDATION_ERROR}}}
    paths["/predictions/{prediction_id}/cancel"] = {"post": {
        "summary": "Cancel", "operationId": "cancel_predictions__prediction_id__cancel_post",
        "parameters": [{"required": True, "schema": {"title": "Prediction Id", "type": "string"},
                        "name": "prediction_id", "in": "path"}],
        "responses": {"200": _ok(), "422": _VALIDATION_ERROR}}}
    return _go_order({"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": paths,
                      "components": {"schemas": schemas}})


def _retarget(value: Any, refs: Dict[str, str]) -> Any:
    """A copy of VALUE whose "$ref"s to the components named in REFS point at their replacements."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "$ref" and isinstance(v, str) and v.rpartition("/")[2] in refs:
                v = "#/components/schemas/" + refs[v.rpartition("/")[2]]
            out[k] = _retarget(v, refs)
        return out
    if isinstance(value, list):
        return [_retarget(v, refs) for v in value]
    return value


# The prediction's paths, operations and parameters and their training counterparts, as Cog names them.
_TRAINING_WORDS = [("/predictions/{prediction_id}", "/trainings/{training_id}"), ("/predictions", "/trainings"),
                   ("cancel_predictions__prediction_id__cancel_post", "cancel_trainings__training_id__cancel_post"),
                   ("predict_idempotent_predictions__prediction_id__put",
                    "train_idempotent_trainings__training_id__put"),
                   ("predict_predictions_post", "train_trainings_post"), ("Prediction Id", "Training Id"),
                   ("prediction_id", "training_id"), ("Predict Idempotent", "Train Idempotent"),
                   ("Run a single prediction on the model", "Run a single training on the model"),
                   ("Prediction Request", "Training Request")]


def _as_training(value: Any) -> Any:
    """A prediction path's operation rewritten for trainings, with the names Cog's train mode gives it."""
    if isinstance(value, dict):
        return {k: "Train" if k == "summary" and v == "Predict" else _as_training(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_training(v) for v in value]
    if isinstance(value, str):
        for old, new in _TRAINING_WORDS:
            if value == old or (old.startswith("/") and value.startswith(old)):
                return new + value[len(old):]
    return value


def add_training(doc: Dict[str, Any], info: PredictorInfo) -> Dict[str, Any]:
    """DOC (a predictor's document) with the trainer INFO's components (TrainingInput, TrainingOutput,
    TrainingRequest, TrainingResponse) and a /trainings path beside each /predictions one, as Cog serves
    them for a project with train:."""
    schemas = doc["components"]["schemas"]
    refs = {"Input": "TrainingInput", "Output": "TrainingOutput",
            "PredictionRequest": "TrainingRequest", "PredictionResponse": "TrainingResponse"}
    training_input = _go_order(_input_schema(info))
    training_input["title"] = "TrainingInput"
    training_output = _go_order(info.output.json_type())
    training_output["title"] = "TrainingOutput"
    schemas["TrainingInput"] = training_input
    schemas["TrainingOutput"] = training_output
    for old in ("PredictionRequest", "PredictionResponse"):
        component = _retarget(schemas[old], refs)
        component["title"] = refs[old]
        schemas[refs[old]] = component
    for name, enum in _enum_schemas(info).items():
        schemas.setdefault(name, _go_order(enum))  # a predictor's input of the same name keeps its own
    paths = {}
    for path, item in doc["paths"].items():
        paths[path] = item
    for path, item in doc["paths"].items():
        if path.startswith("/predictions"):
            paths[_as_training(path)] = _retarget(_as_training(item), refs)
    doc["paths"] = paths
    return doc
