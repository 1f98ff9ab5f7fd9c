# SPDX-License-Identifier: Apache-2.0
"""kiln_schema_model: what kiln_schema learns of a predictor (its inputs, output and their types), the
JSON schema of each type, and SchemaError, the error for bad input."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

# Primitive types (Cog's PrimitiveType) and how they appear in JSON schema; UNION is an input of several JSON
# types (`str | float`, Cog's union inputs), whose members are in FieldType.members.
BOOL, FLOAT, INTEGER, STRING, PATH, FILE, SECRET, ANY, UNION = (
    "bool", "float", "int", "str", "Path", "File", "Secret", "Any", "union")
JSON_TYPE = {BOOL: "boolean", FLOAT: "number", INTEGER: "integer", STRING: "string", PATH: "string",
             FILE: "string", SECRET: "string", ANY: "object"}
# The primitives a union's member may be (alone or as list[T]): JSON's own types, checked at the HTTP edge.
JSON_NATIVE = (BOOL, FLOAT, INTEGER, STRING, ANY)

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
    members: Optional[List["FieldType"]] = None  # UNION: its members (REQUIRED or REPEATED), in order

    def json_type(self) -> Dict[str, Any]:
        if self.primitive == UNION:
            return {"anyOf": [m.json_type() for m in self.members or []]}
        if self.repetition in (REPEATED, OPTIONAL_REPEATED):
            return {"type": "array", "items": primitive_json(self.primitive)}
        return primitive_json(self.primitive)

    def accepts(self, value: Any) -> bool:
        """Whether the JSON value VALUE has this type, strictly (bool is not a number, an int is a float):
        the check of a union's default, and the runner's choice of a union's member."""
        if value is None:
            return self.repetition in (OPTIONAL, OPTIONAL_REPEATED)
        if self.primitive == UNION:
            return any(m.accepts(value) for m in self.members or [])
        if self.repetition in (REPEATED, OPTIONAL_REPEATED):
            item = FieldType(self.primitive, REQUIRED)
            return isinstance(value, list) and all(item.accepts(v) for v in value)
        return _json_is(self.primitive, value)


def _json_is(p: str, value: Any) -> bool:
    if p == BOOL:
        return isinstance(value, bool)
    if p == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if p == FLOAT:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if p == ANY:
        return isinstance(value, dict)
    return isinstance(value, str)


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
    accept: Optional[str] = None  # Input(accept=...): the MIME types a file input takes ("x-cog-accept")

    # As Cog's static schema generator (pkg/schema/openapi.go) decides them: a default of None on a type that
    # is not Optional is no default at all (`seed: int = Input(default=None)` is required, with no default),
    # except on a Secret, which it makes nullable; an Optional with a default of None shows "default": null;
    # a union with None (`str | float | None`) is required unless it has a default.

    @property
    def nullable(self) -> bool:
        rep = self.type.repetition
        return rep in (OPTIONAL, OPTIONAL_REPEATED) or (
            self.type.primitive == SECRET and rep == REQUIRED and self.default is None)

    @property
    def has_default(self) -> bool:
        """Whether the schema shows a default ("default": null included)."""
        return self.default is not MISSING and (self.default is not None or self.nullable)

    @property
    def required(self) -> bool:
        if self.has_default:
            return False
        return self.type.primitive == UNION or self.type.repetition in (REQUIRED, REPEATED)

    def value_when_missing(self) -> Any:
        """The value predict() gets when the request leaves this input out (KeyError when required)."""
        if self.required:
            raise KeyError(self.name)
        return None if self.default is MISSING else self.default


@dataclass
class OutputInfo:
    kind: str
    primitive: Optional[str] = None
    fields: Dict[str, FieldType] = field(default_factory=dict)
    is_dict: bool = False  # an OBJECT declared as a TypedDict: predict() returns a dict
    not_required: set = field(default_factory=set)  # a TypedDict's fields that may be left out

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
            props: Dict[str, Any] = Ordered()
            required = []
            for name, ft in self.fields.items():
                props[name] = ft.json_type()
                if ft.repetition in (OPTIONAL, OPTIONAL_REPEATED):
                    props[name]["nullable"] = True
                elif name not in self.not_required:
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
    warnings: List[str] = field(default_factory=list)  # "FILE:LINE: message": deprecated names it uses


class Ordered(dict):
    """A JSON object whose keys stay in the order they were set, as Cog's orderedMapAny writes them (input
    and output properties, the components, the paths); every other object of the schema document has its
    keys sorted, as Go's encoding/json writes a map."""


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
