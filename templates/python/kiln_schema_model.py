# SPDX-License-Identifier: Apache-2.0
"""kiln_schema_model: what kiln_schema learns of a predictor (its inputs, output and their types), the
JSON schema of each type, and SchemaError, the error for bad input."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

# Primitive types (Cog's PrimitiveType) and how they appear in JSON schema.
BOOL, FLOAT, INTEGER, STRING, PATH, FILE, SECRET, ANY = (
    "bool", "float", "int", "str", "Path", "File", "Secret", "Any")
JSON_TYPE = {BOOL: "boolean", FLOAT: "number", INTEGER: "integer", STRING: "string", PATH: "string",
             FILE: "string", SECRET: "string", ANY: "object"}

# Repetitions (Cog's Repetition): T, Optional[T], list[T], Optional[list[T]].
REQUIRED, OPTIONAL, REPEATED, OPTIONAL_REPEATED = "required", "optional", "repeated", "optional_repeated"

# Output kinds (Cog's OutputKind), plus "any" for `-> Any`.
SINGLE, LIST, ITERATOR, CONCAT_ITERATOR, OBJECT, ANY_OUTPUT = (
    "single", "list", "iterator", "concatenate", "object", "any")

MISSING = object()  # InputInfo.default when none is given


class SchemaError(Exception):
    """Bad input: str() is "FILE:LINE: message" (or "FILE: message" where no line applies)."""

    def __init__(self, path: str, line: Optional[int], message: str) -> None:
        super().__init__(message)
        self.path, self.line, self.message = path, line, message

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}: {self.message}"
        return f"{self.path}: {self.message}"


@dataclass
class FieldType:
    primitive: str
    repetition: str

    def json_type(self) -> Dict[str, Any]:
        if self.repetition in (REPEATED, OPTIONAL_REPEATED):
            return {"type": "array", "items": primitive_json(self.primitive)}
        return primitive_json(self.primitive)


@dataclass
class InputInfo:
    name: str
    order: int
    type: FieldType
    line: int
    default: Any = MISSING  # MISSING: none given (or Input() without default)
    description: Optional[str] = None
    ge: Any = None
    le: Any = None
    min_length: Optional[int] = None
    max_length: Optional[int] = None
    regex: Optional[str] = None
    choices: Optional[list] = None
    deprecated: Optional[bool] = None

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.type.repetition in (REQUIRED, REPEATED)

    @property
    def nullable(self) -> bool:
        return self.type.repetition in (OPTIONAL, OPTIONAL_REPEATED) or (
            self.default is None and self.type.repetition in (REQUIRED, REPEATED))

    def value_when_missing(self) -> Any:
        """The value predict() gets when the request leaves this input out (KeyError when required)."""
        if self.default is not MISSING:
            return self.default
        if self.required:
            raise KeyError(self.name)
        return None


@dataclass
class OutputInfo:
    kind: str
    primitive: Optional[str] = None
    fields: Dict[str, FieldType] = field(default_factory=dict)

    def json_type(self) -> Dict[str, Any]:
        jt: Dict[str, Any] = {"title": "Output"}
        if self.kind == SINGLE:
            jt.update(primitive_json(self.primitive))
        elif self.kind == LIST:
            jt.update({"type": "array", "items": primitive_json(self.primitive)})
        elif self.kind in (ITERATOR, CONCAT_ITERATOR):
            jt.update({"type": "array", "items": primitive_json(self.primitive),
                       "x-cog-array-type": "iterator"})
            if self.kind == CONCAT_ITERATOR:
                jt["x-cog-array-display"] = "concatenate"
        elif self.kind == OBJECT:
            # As Cog's OutputType.json_type(): an Optional field (Optional[T], T | None, Optional[list[T]]) is
            # nullable and left out of "required"; a default alone changes nothing and is not shown.
            props: Dict[str, Any] = {}
            required = []
            for name, ft in self.fields.items():
                props[name] = ft.json_type()
                if ft.repetition in (OPTIONAL, OPTIONAL_REPEATED):
                    props[name]["nullable"] = True
                else:
                    required.append(name)
                props[name]["title"] = title_case(name)
            jt.update({"type": "object", "properties": props})
            if required:
                jt["required"] = required
        return jt


@dataclass
class PredictorInfo:
    path: str
    name: str
    is_class: bool  # a class (method `method`) or a module-level function
    method: str  # "predict", "run", or the function's name
    is_async: bool
    inputs: Dict[str, InputInfo]
    output: OutputInfo
    line: int
    streaming: bool = False  # marked @cog.streaming: it may answer Accept: text/event-stream


def primitive_json(p: Optional[str]) -> Dict[str, Any]:
    """The JSON schema of primitive P ({"type": "string", "format": "uri"} for a Path)."""
    jt: Dict[str, Any] = {"type": JSON_TYPE[p]}
    if p in (PATH, FILE):
        jt["format"] = "uri"
    elif p == SECRET:
        jt.update({"format": "password", "writeOnly": True, "x-cog-secret": True})
    return jt


def title_case(name: str) -> str:
    """A property's title as pydantic makes it: "max_tokens" -> "Max Tokens"."""
    return name.replace("_", " ").title()
