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


# The names of a predictor's document and of a trainer's (Cog's generator in train mode).
_MODES = {
    "predict": {"endpoint": "/predictions", "request": "PredictionRequest", "response": "PredictionResponse",
                "cancel": "/predictions/{prediction_id}/cancel", "summary": "Predict",
                "description": "Run a single prediction on the model", "op": "predict_predictions_post",
                "cancel_op": "cancel_predictions__prediction_id__cancel_post", "param": "prediction_id",
                "input": "Input", "output": "Output"},
    "train": {"endpoint": "/trainings", "request": "TrainingRequest", "response": "TrainingResponse",
              "cancel": "/trainings/{training_id}/cancel", "summary": "Train",
              "description": "Run a single training on the model", "op": "train_trainings_post",
              "cancel_op": "cancel_trainings__training_id__cancel_post", "param": "training_id",
              "input": "TrainingInput", "output": "TrainingOutput"},
}


def document(info: PredictorInfo, mode: str = "predict") -> Dict[str, Any]:
    """The OpenAPI document of INFO, as Cog 0.22's static schema generator writes it: the envelope, paths and
    components it has, in its key order (dicts keep that order, for json.dump). MODE "train": a trainer's,
    with its TrainingInput, TrainingOutput and /trainings paths instead."""
    m = _MODES[mode]
    date_time = {"type": "string", "format": "date-time"}
    input_ref = {"$ref": "#/components/schemas/" + m["input"]}
    schemas: Dict[str, Any] = Ordered()
    schemas[m["input"]] = _input_schema(info)
    schemas[m["input"]]["title"] = m["input"]
    schemas[m["output"]] = info.output.json_type()
    schemas.update(_enum_schemas(info))
    schemas[m["request"]] = {"title": m["request"], "type": "object", "properties": {
        "id": {"title": "Id", "type": "string"}, "input": dict(input_ref)}}
    schemas[m["response"]] = {"title": m["response"], "type": "object", "properties": {
        "input": dict(input_ref),
        "output": {"$ref": "#/components/schemas/" + m["output"]},
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
    paths[m["endpoint"]] = {"post": {
        "summary": m["summary"], "description": m["description"], "operationId": m["op"],
        "requestBody": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/" + m["request"]}}}},
        "responses": {"200": _ok(m["response"]), "422": _VALIDATION_ERROR}}}
    paths[m["cancel"]] = {"post": {
        "summary": "Cancel", "operationId": m["cancel_op"],
        "parameters": [{"required": True, "schema": {"title": title_case(m["param"]), "type": "string"},
                        "name": m["param"], "in": "path"}],
        "responses": {"200": _ok(), "422": _VALIDATION_ERROR}}}
    return _go_order({"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": paths,
                      "components": {"schemas": schemas}})


def _sorted(v: Any) -> Any:
    """V with every object's keys in sorted order, as Go writes a map it decoded."""
    if isinstance(v, dict):
        return {k: _sorted(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_sorted(x) for x in v]
    return v


def add_training(doc: Dict[str, Any], info: PredictorInfo) -> Dict[str, Any]:
    """DOC (a predictor's document) merged with the trainer INFO's train-mode document as Cog's build merges
    them for a project with train: (GenerateCombined): the trainer's paths (/trainings and its cancel) and
    components (TrainingInput, TrainingOutput, TrainingRequest, TrainingResponse, its enumerations) that DOC
    lacks are added, a predictor's component of the same name kept; the merged document has every key in
    sorted order, as Cog decodes both into maps and writes the result."""
    train = document(info, "train")
    for path, item in train["paths"].items():
        doc["paths"].setdefault(path, item)
    schemas = doc["components"]["schemas"]
    for name, schema in train["components"]["schemas"].items():
        schemas.setdefault(name, schema)
    return _sorted(doc)
