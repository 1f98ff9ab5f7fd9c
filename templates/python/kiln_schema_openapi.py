# SPDX-License-Identifier: Apache-2.0
"""kiln_schema_openapi: the OpenAPI document Cog serves at /openapi.json, for a predictor kiln_schema_analyze
described."""

from typing import Any, Dict, Optional

from kiln_schema_model import JSON_TYPE, MISSING, PredictorInfo, title_case


def _input_schema(info: PredictorInfo) -> Dict[str, Any]:
    """The Input component: one property per input, in order, with its constraints."""
    props: Dict[str, Any] = {}
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
        elif f.default not in (MISSING, None):
            prop["default"] = f.default
        if f.nullable:
            prop["nullable"] = True
        for key, attr in (("description", "description"), ("minimum", "ge"), ("maximum", "le"),
                          ("minLength", "min_length"), ("maxLength", "max_length"),
                          ("pattern", "regex"), ("deprecated", "deprecated")):
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


def document(info: PredictorInfo) -> Dict[str, Any]:
    """The OpenAPI document Cog serves at /openapi.json for INFO."""
    date_time = {"type": "string", "format": "date-time"}
    schemas: Dict[str, Any] = {
        "HTTPValidationError": {"title": "HTTPValidationError", "type": "object", "properties": {
            "detail": {"title": "Detail", "type": "array",
                       "items": {"$ref": "#/components/schemas/ValidationError"}}}},
        "ValidationError": {"title": "ValidationError", "required": ["loc", "msg", "type"], "type": "object",
                            "properties": {
                                "loc": {"title": "Location", "type": "array",
                                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                                "msg": {"title": "Message", "type": "string"},
                                "type": {"title": "Error Type", "type": "string"}}},
        "PredictionRequest": {"title": "PredictionRequest", "type": "object", "properties": {
            "id": {"title": "Id", "type": "string"},
            "input": {"$ref": "#/components/schemas/Input"},
            "webhook": {"title": "Webhook", "type": "string", "format": "uri", "minLength": 1,
                        "maxLength": 65536},
            "webhook_events_filter": {"title": "Webhook Events Filter", "type": "array",
                                      "items": {"$ref": "#/components/schemas/WebhookEvent"},
                                      "default": ["start", "output", "logs", "completed"]},
            "created_at": dict(title="Created At", **date_time)}},
        "PredictionResponse": {"title": "PredictionResponse", "type": "object", "properties": {
            "input": {"$ref": "#/components/schemas/Input"},
            "output": {"$ref": "#/components/schemas/Output"},
            "id": {"title": "Id", "type": "string"},
            "version": {"title": "Version", "type": "string"},
            "created_at": dict(title="Created At", **date_time),
            "started_at": dict(title="Started At", **date_time),
            "completed_at": dict(title="Completed At", **date_time),
            "logs": {"title": "Logs", "type": "string", "default": ""},
            "error": {"title": "Error", "type": "string"},
            "status": {"$ref": "#/components/schemas/Status"},
            "metrics": {"title": "Metrics", "type": "object"}}},
        "Status": {"title": "Status", "description": "An enumeration.", "type": "string",
                   "enum": ["starting", "processing", "succeeded", "canceled", "failed"]},
        "WebhookEvent": {"title": "WebhookEvent", "description": "An enumeration.", "type": "string",
                         "enum": ["start", "output", "logs", "completed"]},
        "Input": _input_schema(info),
        "Output": info.output.json_type(),
    }
    schemas.update(_enum_schemas(info))
    prediction_id = [{"required": True, "schema": {"title": "Prediction Id", "type": "string"},
                      "name": "prediction_id", "in": "path"}]
    predict_body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictionRequest"}}}}
    prefer = [{"required": False, "schema": {"title": "Prefer", "type": "string"}, "name": "prefer",
               "in": "header"}]
    paths = {
        "/": {"get": {"summary": "Root", "operationId": "root__get", "responses": {"200": _ok()}}},
        "/health-check": {"get": {"summary": "Healthcheck", "operationId": "healthcheck_health_check_get",
                                  "responses": {"200": _ok()}}},
        "/predictions": {"post": {
            "summary": "Predict", "description": "Run a single prediction on the model",
            "operationId": "predict_predictions_post", "parameters": prefer, "requestBody": predict_body,
            "responses": {"200": _ok("PredictionResponse"), "422": _VALIDATION_ERROR}}},
        "/predictions/{prediction_id}": {"put": {
            "summary": "Predict Idempotent", "description": "Run a single prediction on the model (idempotent creation).",
            "operationId": "predict_idempotent_predictions__prediction_id__put",
            "parameters": prediction_id + prefer,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"allOf": [
                {"$ref": "#/components/schemas/PredictionRequest"}], "title": "Prediction Request"}}}},
            "responses": {"200": _ok("PredictionResponse"), "422": _VALIDATION_ERROR}}},
        "/predictions/{prediction_id}/cancel": {"post": {
            "summary": "Cancel", "description": "Cancel a running prediction",
            "operationId": "cancel_predictions__prediction_id__cancel_post", "parameters": prediction_id,
            "responses": {"200": _ok(), "422": _VALIDATION_ERROR}}},
        "/shutdown": {"post": {"summary": "Start Shutdown", "operationId": "start_shutdown_shutdown_post",
                               "responses": {"200": _ok()}}},
    }
    return {"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": paths,
            "components": {"schemas": schemas}}


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


def add_training(doc: Dict[str, Any], info: PredictorInfo) -> Dict[str, Any]:
    """DOC (a predictor's document) with the trainer INFO's components and Cog's /trainings paths added, as
    Cog serves them for a project with train:."""
    schemas = doc["components"]["schemas"]
    refs = {"Input": "TrainingInput", "Output": "TrainingOutput",
            "PredictionRequest": "TrainingRequest", "PredictionResponse": "TrainingResponse"}
    training_input = _input_schema(info)
    training_input["title"] = "TrainingInput"
    training_output = dict(info.output.json_type())
    training_output["title"] = "TrainingOutput"
    schemas["TrainingInput"] = training_input
    schemas["TrainingOutput"] = training_output
    for old in ("PredictionRequest", "PredictionResponse"):
        component = _retarget(schemas[old], refs)
        component["title"] = refs[old]
        schemas[refs[old]] = component
    for name, enum in _enum_schemas(info).items():
        schemas.setdefault(name, enum)  # a predictor's input of the same name keeps its own
    training_id = [{"required": True, "schema": {"title": "Training Id", "type": "string"},
                    "name": "training_id", "in": "path"}]
    prefer = [{"required": False, "schema": {"title": "Prefer", "type": "string"}, "name": "prefer",
               "in": "header"}]
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/TrainingRequest"}}}}
    trainings = {
        "/trainings": {"post": {
            "summary": "Train", "operationId": "train_trainings_post", "parameters": prefer,
            "requestBody": body,
            "responses": {"200": _ok("TrainingResponse"), "422": _VALIDATION_ERROR}}},
        "/trainings/{training_id}": {"put": {
            "summary": "Train Idempotent", "operationId": "train_idempotent_trainings__training_id__put",
            "parameters": training_id + prefer,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"allOf": [
                {"$ref": "#/components/schemas/TrainingRequest"}], "title": "Training Request"}}}},
            "responses": {"200": _ok("TrainingResponse"), "422": _VALIDATION_ERROR}}},
        "/trainings/{training_id}/cancel": {"post": {
            "summary": "Cancel Training", "operationId": "cancel_training_trainings__training_id__cancel_post",
            "parameters": training_id, "responses": {"200": _ok(), "422": _VALIDATION_ERROR}}},
    }
    paths = {}
    for path, item in doc["paths"].items():
        if path == "/shutdown":
            paths.update(trainings)
        paths[path] = item
    for path, item in trainings.items():
        paths.setdefault(path, item)
    doc["paths"] = paths
    return doc
