# SPDX-License-Identifier: Apache-2.0
"""kiln_schema: Cog's OpenAPI document for a predictor, read from its source with ast (nothing is imported).

    python3 kiln_schema.py FILE.py:NAME      prints the document; exit 1 with "FILE:LINE: message" on bad input

NAME is a class with predict() (BasePredictor) or run() (BaseRunner), or a module-level function. As a
module: schema_for(path, name) -> dict, and analyze(path, name) -> PredictorInfo for the runner.
"""

import ast
import builtins
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

# Primitive types (Cog's PrimitiveType) and how they appear in JSON schema.
BOOL, FLOAT, INTEGER, STRING, PATH, FILE, SECRET, ANY = (
    "bool", "float", "int", "str", "Path", "File", "Secret", "Any")
_JSON_TYPE = {BOOL: "boolean", FLOAT: "number", INTEGER: "integer", STRING: "string", PATH: "string",
              FILE: "string", SECRET: "string", ANY: "object"}

# Repetitions (Cog's Repetition): T, Optional[T], list[T], Optional[list[T]].
REQUIRED, OPTIONAL, REPEATED, OPTIONAL_REPEATED = "required", "optional", "repeated", "optional_repeated"

# Output kinds (Cog's OutputKind), plus "any" for `-> Any`.
SINGLE, LIST, ITERATOR, CONCAT_ITERATOR, OBJECT, ANY_OUTPUT = (
    "single", "list", "iterator", "concatenate", "object", "any")

# Fully qualified names kiln understands in annotations.
_PRIMITIVES = {
    "builtins.str": STRING, "builtins.int": INTEGER, "builtins.float": FLOAT, "builtins.bool": BOOL,
    "cog.Path": PATH, "cog.types.Path": PATH, "pathlib.Path": PATH, "pathlib.PosixPath": PATH,
    "os.PathLike": PATH, "cog.File": FILE, "cog.types.File": FILE, "cog.Secret": SECRET,
    "cog.types.Secret": SECRET, "builtins.dict": ANY, "typing.Dict": ANY,
}
_LISTS = {"builtins.list", "typing.List"}
_OPTIONALS = {"typing.Optional"}
_UNIONS = {"typing.Union"}
_ITERATORS = {"typing.Iterator", "collections.abc.Iterator", "typing.AsyncIterator",
              "collections.abc.AsyncIterator"}
_CONCAT_ITERATORS = {"cog.ConcatenateIterator", "cog.types.ConcatenateIterator",
                     "cog.AsyncConcatenateIterator", "cog.types.AsyncConcatenateIterator"}
_MODEL_BASES = {"cog.BaseModel", "cog.predictor.BaseModel", "pydantic.BaseModel"}
_INPUT_FUNCS = {"cog.Input", "cog.types.Input"}
_INPUT_ARGS = ("default", "description", "ge", "le", "min_length", "max_length", "regex", "choices",
               "deprecated")
# What `from cog import *` and `from typing import *` bring in, for annotations that use them bare.
_STAR_EXPORTS = {
    "cog": {"Path", "File", "Secret", "Input", "BaseModel", "ConcatenateIterator",
            "AsyncConcatenateIterator", "BasePredictor", "BaseRunner"},
    "typing": {"Any", "Dict", "List", "Optional", "Union", "Iterator", "AsyncIterator"},
}
_MISSING = object()


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
            return {"type": "array", "items": _primitive_json(self.primitive)}
        return _primitive_json(self.primitive)


@dataclass
class InputInfo:
    name: str
    order: int
    type: FieldType
    line: int
    default: Any = _MISSING  # _MISSING: none given (or Input() without default)
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
        return self.default is _MISSING and self.type.repetition in (REQUIRED, REPEATED)

    @property
    def nullable(self) -> bool:
        return self.type.repetition in (OPTIONAL, OPTIONAL_REPEATED) or (
            self.default is None and self.type.repetition in (REQUIRED, REPEATED))

    def value_when_missing(self) -> Any:
        """The value predict() gets when the request leaves this input out (KeyError when required)."""
        if self.default is not _MISSING:
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
            jt.update(_primitive_json(self.primitive))
        elif self.kind == LIST:
            jt.update({"type": "array", "items": _primitive_json(self.primitive)})
        elif self.kind in (ITERATOR, CONCAT_ITERATOR):
            jt.update({"type": "array", "items": _primitive_json(self.primitive),
                       "x-cog-array-type": "iterator"})
            if self.kind == CONCAT_ITERATOR:
                jt["x-cog-array-display"] = "concatenate"
        elif self.kind == OBJECT:
            props = {}
            for name, ft in self.fields.items():
                props[name] = ft.json_type()
                props[name]["title"] = _title(name)
            jt.update({"type": "object", "properties": props, "required": list(self.fields)})
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


def _primitive_json(p: Optional[str]) -> Dict[str, Any]:
    jt: Dict[str, Any] = {"type": _JSON_TYPE[p]}
    if p in (PATH, FILE):
        jt["format"] = "uri"
    elif p == SECRET:
        jt.update({"format": "password", "writeOnly": True, "x-cog-secret": True})
    return jt


def _title(name: str) -> str:
    return name.replace("_", " ").title()


class _Module:
    """One parsed source file: its imports, top-level classes and constants, for resolving names."""

    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path = path
        self.aliases: Dict[str, str] = {}
        self.star: List[str] = []
        self.classes: Dict[str, ast.ClassDef] = {}
        self.functions: Dict[str, ast.AST] = {}
        self.assigns: Dict[str, ast.AST] = {}
        self._collect(tree.body)

    def _collect(self, body: list) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom):
                mod = "." * node.level + (node.module or "")
                for a in node.names:
                    if a.name == "*":
                        self.star.append(mod)
                    else:
                        self.aliases[a.asname or a.name] = f"{mod}.{a.name}"
            elif isinstance(node, ast.ClassDef):
                self.classes[node.name] = node
                self.aliases.pop(node.name, None)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions[node.name] = node
                self.aliases.pop(node.name, None)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        self.assigns[t.id] = node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
                self.assigns[node.target.id] = node.value
            elif isinstance(node, ast.If):  # if TYPE_CHECKING: / version checks
                self._collect(node.body)
                self._collect(node.orelse)
            elif isinstance(node, ast.Try):  # try: import x / except ImportError:
                self._collect(node.body)
                for h in node.handlers:
                    self._collect(h.body)
                self._collect(node.orelse)
                self._collect(node.finalbody)

    def error(self, node: Optional[ast.AST], message: str) -> SchemaError:
        return SchemaError(self.path, getattr(node, "lineno", None), message)

    def qualify(self, node: ast.AST) -> Optional[str]:
        """The dotted name NODE refers to ("cog.Path", "builtins.str", "local.Output"), or None."""
        if isinstance(node, ast.Name):
            n = node.id
            if n in self.aliases:
                return self.aliases[n]
            if n in self.classes:
                return "local." + n
            if n in self.assigns:
                return "assign." + n
            for mod in self.star:
                if n in _STAR_EXPORTS.get(mod, ()):
                    return f"{mod}.{n}"
            if hasattr(builtins, n):
                return "builtins." + n
            return None
        if isinstance(node, ast.Attribute):
            base = self.qualify(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def literal(self, node: ast.AST, what: str, _depth: int = 0) -> Any:
        """Evaluate NODE as a literal; a name bound at module level to a literal counts too."""
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
        if isinstance(node, ast.Name) and node.id in self.assigns and _depth < 8:
            return self.literal(self.assigns[node.id], what, _depth + 1)
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.literal(e, what, _depth + 1) for e in node.elts]
        if isinstance(node, (ast.BinOp, ast.UnaryOp)) and _depth < 32:  # 2**32 - 1, 1 / 3, "a" + "b"
            value = _arith(node, lambda n: self.literal(n, what, _depth + 1))
            if value is not _MISSING:
                return value
        raise self.error(node, f"{what} is not a literal: '{ast.unparse(node)}' "
                               "(kiln reads the predictor without running it)")

    # ---- annotations ----

    def resolve(self, node: ast.AST, _depth: int = 0) -> tuple:
        """Resolve an annotation to a small tree: ("prim", P) ("none",) ("list", T) ("union", [T...])
        ("iter", kind, T) ("model", ClassDef)."""
        if _depth > 16:
            raise self.error(node, "annotation nests too deeply")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # "Path", forward refs
            try:
                inner = ast.parse(node.value.strip(), mode="eval").body
            except SyntaxError:
                raise self.error(node, f"unsupported type annotation '{node.value}'") from None
            ast.copy_location(inner, node)
            for n in ast.walk(inner):
                n.lineno = node.lineno  # type: ignore[attr-defined]
            return self.resolve(inner, _depth + 1)
        if isinstance(node, ast.Constant) and node.value is None:
            return ("none",)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return ("union", [self.resolve(node.left, _depth + 1), self.resolve(node.right, _depth + 1)])
        if isinstance(node, ast.Subscript):
            base = self.qualify(node.value)
            args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if base in _LISTS:
                if len(args) != 1:
                    raise self.error(node, "List must have one type argument")
                return ("list", self.resolve(args[0], _depth + 1))
            if base in _OPTIONALS:
                return ("union", [self.resolve(args[0], _depth + 1), ("none",)])
            if base in _UNIONS:
                return ("union", [self.resolve(a, _depth + 1) for a in args])
            if base in _ITERATORS or base in _CONCAT_ITERATORS:
                if len(args) != 1:
                    raise self.error(node, "iterator type must have a type argument")
                kind = CONCAT_ITERATOR if base in _CONCAT_ITERATORS else ITERATOR
                return ("iter", kind, self.resolve(args[0], _depth + 1))
            if base in ("builtins.dict", "typing.Dict"):
                return ("prim", ANY)
            raise self.error(node, f"unsupported type annotation '{ast.unparse(node)}'")
        q = self.qualify(node)
        if q in _PRIMITIVES:
            return ("prim", _PRIMITIVES[q])
        if q == "typing.Any":
            return ("prim", ANY)
        if q in _LISTS:
            return ("list", ("prim", ANY))
        if q in _CONCAT_ITERATORS:
            return ("iter", CONCAT_ITERATOR, ("prim", STRING))
        if q == "builtins.None":
            return ("none",)
        if q and q.startswith("local.") and self._is_model(self.classes[q[6:]]):
            return ("model", self.classes[q[6:]])
        if q and q.startswith("assign.") and _depth < 8:  # a type alias: Paths = list[Path]
            return self.resolve(self.assigns[q[7:]], _depth + 1)
        raise self.error(node, f"unsupported type annotation '{ast.unparse(node)}'")

    def _is_model(self, cls: ast.ClassDef, _depth: int = 0) -> bool:
        for b in cls.bases:
            q = self.qualify(b)
            if q in _MODEL_BASES:
                return True
            if q and q.startswith("local.") and _depth < 8 and self._is_model(self.classes[q[6:]], _depth + 1):
                return True
        return False

    def field_type(self, node: ast.AST, what: str) -> FieldType:
        """An input's (or an output field's) type: a primitive, Optional, list or Optional[list]."""
        try:
            res = self.resolve(node)
        except SchemaError as e:
            e.message += f" for {what}"
            raise
        optional = False
        if res[0] == "union":
            members = [m for m in res[1] if m[0] != "none"]
            if len(members) != 1 or len(members) == len(res[1]):
                raise self.error(node, f"unsupported union type '{ast.unparse(node)}' for {what}")
            optional, res = True, members[0]
        if res[0] == "list":
            elem = res[1]
            if elem[0] != "prim":
                raise self.error(node, f"List cannot have nested type '{ast.unparse(node)}' for {what}")
            return FieldType(elem[1], OPTIONAL_REPEATED if optional else REPEATED)
        if res[0] == "prim":
            return FieldType(res[1], OPTIONAL if optional else REQUIRED)
        raise self.error(node, f"unsupported type annotation '{ast.unparse(node)}' for {what}")


_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
           ast.Pow: lambda a, b: a ** b}


def _arith(node: ast.AST, evaluate: Any) -> Any:
    """Constant arithmetic on numbers (and + on strings) in a default; _MISSING when it is not that."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    try:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = evaluate(node.operand)
            if number(v):
                return -v if isinstance(node.op, ast.USub) else v
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = evaluate(node.left), evaluate(node.right)
            if isinstance(node.op, ast.Add) and isinstance(a, str) and isinstance(b, str):
                return a + b
            if number(a) and number(b):
                if isinstance(node.op, ast.Pow) and (abs(b) > 256 or abs(a) > 2**64):
                    return _MISSING
                return _BINOPS[type(node.op)](a, b)
    except (ArithmeticError, ValueError):
        pass
    except SchemaError:
        pass
    return _MISSING


def _normalize(mod: _Module, node: ast.AST, name: str, p: str, value: Any) -> Any:
    """Check one default (or choice) VALUE against primitive P, as Cog's normalize() does."""
    bad = mod.error(node, f"invalid default for '{name}': {value!r} is not a valid {p}")
    if p == ANY:
        return value
    if p in (STRING, PATH, FILE, SECRET):
        if not isinstance(value, str):
            raise bad
        return value
    if p == BOOL:
        if isinstance(value, bool):
            return value
        if value in (0, 1) and not isinstance(value, str):
            return bool(value)
        raise bad
    try:
        v = int(value) if p == INTEGER else float(value)
    except (TypeError, ValueError):
        raise bad from None
    if v != value and not isinstance(value, str) and not (isinstance(value, int) and p == FLOAT):
        raise bad
    return v


def _input_field(mod: _Module, order: int, arg: ast.arg, default_node: Optional[ast.AST]) -> InputInfo:
    name = arg.arg
    if arg.annotation is None:
        raise mod.error(arg, f"missing type annotation for input '{name}'")
    ft = mod.field_type(arg.annotation, f"input '{name}'")
    info = InputInfo(name=name, order=order, type=ft, line=arg.lineno)
    if default_node is None:
        return info
    kwargs: Dict[str, Tuple[ast.AST, Any]] = {}
    if isinstance(default_node, ast.Call) and mod.qualify(default_node.func) in _INPUT_FUNCS:
        call = default_node
        if len(call.args) > len(_INPUT_ARGS):
            raise mod.error(call, f"Input() takes at most {len(_INPUT_ARGS)} positional arguments")
        for key, node in zip(_INPUT_ARGS, call.args):  # Input(default, description, ge, ...)
            if isinstance(node, ast.Starred):
                raise mod.error(node, "Input(*args) is not supported")
            kwargs[key] = (node, mod.literal(node, f"{key} of '{name}'"))
        for kw in call.keywords:
            if kw.arg is None:
                raise mod.error(kw.value, "Input(**kwargs) is not supported")
            if kw.arg not in _INPUT_ARGS:
                raise mod.error(kw.value, f"unknown Input() argument '{kw.arg}' for '{name}'")
            kwargs[kw.arg] = (kw.value, mod.literal(kw.value, f"{kw.arg} of '{name}'"))
        if "default" in kwargs and kwargs["default"][1] is Ellipsis:
            del kwargs["default"]
    else:
        kwargs["default"] = (default_node, mod.literal(default_node, f"default of '{name}'"))
    for key, (_, value) in kwargs.items():
        if key != "default":
            setattr(info, key, value)
    where = kwargs.get("default", (default_node, None))[0]
    if "default" in kwargs and kwargs["default"][1] is not None:
        value = kwargs["default"][1]
        if ft.repetition in (REPEATED, OPTIONAL_REPEATED):
            if not isinstance(value, (list, tuple)):
                raise mod.error(where, f"invalid default for '{name}': {value!r} is not a list")
            info.default = [_normalize(mod, where, name, ft.primitive, v) for v in value]
        else:
            info.default = _normalize(mod, where, name, ft.primitive, value)
    elif "default" in kwargs:
        info.default = None
    _check_constraints(mod, default_node, info)
    return info


def _check_constraints(mod: _Module, node: ast.AST, info: InputInfo) -> None:
    """Cog's checks of Input() constraints against the type and the default."""
    p, name = info.type.primitive, info.name
    where = f"'{name}' ({info.type.primitive})"
    defaults = []
    if info.default not in (_MISSING, None):
        defaults = list(info.default) if isinstance(info.default, list) else [info.default]
    if info.ge is not None or info.le is not None:
        if p not in (INTEGER, FLOAT):
            raise mod.error(node, f"ge/le need an int or float input: {where}")
        for bound in (info.ge, info.le):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))):
                raise mod.error(node, f"ge/le of '{name}' must be numbers")
        if info.ge is not None and any(d < info.ge for d in defaults):
            raise mod.error(node, f"invalid default for '{name}': must be at minimum {info.ge}")
        if info.le is not None and any(d > info.le for d in defaults):
            raise mod.error(node, f"invalid default for '{name}': must be at maximum {info.le}")
    if info.min_length is not None or info.max_length is not None:
        if p != STRING:
            raise mod.error(node, f"min_length/max_length need a str input: {where}")
        if info.min_length is not None and any(len(d) < info.min_length for d in defaults):
            raise mod.error(node, f"default of '{name}' is shorter than min_length={info.min_length}")
        if info.max_length is not None and any(len(d) > info.max_length for d in defaults):
            raise mod.error(node, f"default of '{name}' is longer than max_length={info.max_length}")
    if info.regex is not None:
        if p != STRING:
            raise mod.error(node, f"regex needs a str input: {where}")
        try:
            rx = re.compile(info.regex)
        except re.error as e:
            raise mod.error(node, f"invalid regex for '{name}': {e}") from None
        if not all(rx.match(d) for d in defaults):
            raise mod.error(node, f"default of '{name}' does not match regex {info.regex!r}")
    if info.choices is not None:
        if p not in (INTEGER, STRING):
            raise mod.error(node, f"choices need an int or str input: {where}")
        if not isinstance(info.choices, (list, tuple)) or len(info.choices) < 2:
            raise mod.error(node, f"choices of '{name}' must be a list of at least 2 elements")
        if info.ge is not None or info.le is not None:
            raise mod.error(node, f"choices and ge/le are mutually exclusive: {where}")
        if info.min_length is not None or info.max_length is not None:
            raise mod.error(node, f"choices and min_length/max_length are mutually exclusive: {where}")
        want = int if p == INTEGER else str
        if not all(type(c) is want for c in info.choices):
            raise mod.error(node, f"not all choices of '{name}' have the input's type ({p})")
        info.choices = list(info.choices)


def _output(mod: _Module, fn: ast.AST, fname: str) -> OutputInfo:
    ann = fn.returns  # type: ignore[attr-defined]
    if ann is None:
        raise mod.error(fn, f"{fname}() must have a return type annotation")
    res = mod.resolve(ann)
    if res[0] == "iter":
        elem = res[2]
        if elem[0] != "prim":
            raise mod.error(ann, "iterator element type must not be Optional or List")
        if res[1] == CONCAT_ITERATOR and elem[1] != STRING:
            raise mod.error(ann, "ConcatenateIterator must have str element")
        return OutputInfo(res[1], elem[1])
    if res[0] == "model":
        fields: Dict[str, FieldType] = {}
        for stmt in res[1].body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                fields[stmt.target.id] = mod.field_type(stmt.annotation, f"output field '{stmt.target.id}'")
        return OutputInfo(OBJECT, fields=fields)
    q = mod.qualify(ann) if isinstance(ann, (ast.Name, ast.Attribute)) else None
    if q == "typing.Any":
        return OutputInfo(ANY_OUTPUT)
    if res[0] == "none":
        raise mod.error(ann, f"unsupported output type 'None' for {fname}()")
    ft = mod.field_type(ann, "the output")
    if ft.repetition in (OPTIONAL, OPTIONAL_REPEATED):
        raise mod.error(ann, "output must not be Optional")
    return OutputInfo(LIST if ft.repetition == REPEATED else SINGLE, ft.primitive)


def _find_method(mod: _Module, cls: ast.ClassDef, names: Tuple[str, ...], _depth: int = 0) -> Optional[ast.AST]:
    for want in names:
        for stmt in cls.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == want:
                return stmt
    if _depth < 8:
        for b in cls.bases:  # inherited from a class of the same file
            q = mod.qualify(b)
            if q and q.startswith("local."):
                found = _find_method(mod, mod.classes[q[6:]], names, _depth + 1)
                if found is not None:
                    return found
    return None


def analyze(path: str, name: str) -> PredictorInfo:
    """Read PATH and describe predictor NAME: its inputs, output and whether it is async."""
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        raise SchemaError(path, None, f"cannot open: {e.strerror}") from None
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as e:
        raise SchemaError(path, e.lineno, f"syntax error: {e.msg}") from None
    except ValueError as e:  # null bytes
        raise SchemaError(path, None, f"cannot parse: {e}") from None
    mod = _Module(path, tree)
    if name in mod.classes:
        cls = mod.classes[name]
        fn = _find_method(mod, cls, ("predict", "run"))
        if fn is None:
            raise mod.error(cls, f"class '{name}' has no predict() or run() method")
        fname, is_class = fn.name, True  # type: ignore[attr-defined]
    elif name in mod.functions:
        fn, fname, is_class = mod.functions[name], name, False
    else:
        raise SchemaError(path, None, f"no class or function named '{name}'")
    a = fn.args  # type: ignore[attr-defined]
    params = list(a.posonlyargs) + list(a.args)
    if a.vararg is not None:
        raise mod.error(a.vararg, f"{fname}() must not have *args")
    if a.kwarg is not None:
        raise mod.error(a.kwarg, f"{fname}() must not have **kwargs")
    if a.kwonlyargs:
        raise mod.error(a.kwonlyargs[0], f"{fname}() must not have keyword-only arguments")
    defaults: List[Optional[ast.AST]] = [None] * (len(params) - len(a.defaults)) + list(a.defaults)
    if is_class:
        is_static = any(mod.qualify(d) == "builtins.staticmethod" for d in fn.decorator_list)  # type: ignore[attr-defined]
        if not is_static:
            if not params:
                raise mod.error(fn, f"{fname}() must have 'self' as first argument")
            params, defaults = params[1:], defaults[1:]
    inputs: Dict[str, InputInfo] = {}
    for i, (arg, d) in enumerate(zip(params, defaults)):
        inputs[arg.arg] = _input_field(mod, i, arg, d)
    output = _output(mod, fn, fname)
    return PredictorInfo(path=path, name=name, is_class=is_class, method=fname,
                         is_async=isinstance(fn, ast.AsyncFunctionDef), inputs=inputs, output=output,
                         line=fn.lineno)  # type: ignore[attr-defined]


def _input_schema(info: PredictorInfo) -> Dict[str, Any]:
    props: Dict[str, Any] = {}
    required = []
    for name, f in info.inputs.items():
        prop: Dict[str, Any] = {"x-order": f.order}
        if f.choices is not None:
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
        else:
            prop["title"] = _title(name)
            prop.update(f.type.json_type())
        if f.required:
            required.append(name)
        elif f.default not in (_MISSING, None):
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
    enums = {}
    for name, f in info.inputs.items():
        if f.choices is not None:
            enums[name] = {"title": name, "description": "An enumeration.", "enum": f.choices,
                           "type": _JSON_TYPE[f.type.primitive]}
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


def split_ref(ref: str) -> Tuple[str, str]:
    """Split "FILE.py:NAME" (ValueError when it is not of that form)."""
    path, sep, name = ref.rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise ValueError(f"expected FILE.py:NAME, got '{ref}'")
    return path, name


def schema_for(path: str, name: str) -> Dict[str, Any]:
    """The OpenAPI document of predictor NAME in PATH (SchemaError on bad input)."""
    return document(analyze(path, name))


def main(argv: List[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: kiln_schema.py FILE.py:NAME", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    try:
        path, name = split_ref(argv[0])
    except ValueError as e:
        print(f"kiln_schema: {e}", file=sys.stderr)
        return 2
    try:
        doc = schema_for(path, name)
    except SchemaError as e:
        print(e, file=sys.stderr)
        return 1
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
