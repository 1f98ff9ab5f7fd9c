# SPDX-License-Identifier: Apache-2.0
"""kiln_schema_analyze: a predictor's inputs and output read from its source, checked as Cog checks them
when it loads the predictor."""

import ast
import re
from typing import Any, Dict, List, Optional, Tuple

from kiln_schema_ast import SourceModule
from kiln_schema_model import (ANY, ANY_OUTPUT, BOOL, CONCAT_ITERATOR, FILE, FLOAT, INTEGER, LIST, MISSING,
                               OBJECT, OPTIONAL, OPTIONAL_REPEATED, PATH, REPEATED, SECRET, SINGLE, STRING,
                               UNION, FieldType, InputInfo, OutputInfo, PredictorInfo, SchemaError)

_INPUT_FUNCS = {"cog.Input", "cog.types.Input"}
_INPUT_ARGS = ("default", "description", "ge", "le", "min_length", "max_length", "regex", "choices",
               "deprecated", "accept")


def _normalize(mod: SourceModule, node: ast.AST, name: str, p: str, value: Any) -> Any:
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


def _input_field(mod: SourceModule, order: int, arg: ast.arg, default_node: Optional[ast.AST]) -> InputInfo:
    """Input ORDER of predict(), parameter ARG with default DEFAULT_NODE (a literal, Input(...) or None),
    described and checked."""
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
        if ft.primitive == UNION:
            if not ft.accepts(value):
                raise mod.error(where, f"invalid default for '{name}': {value!r} is none of "
                                       f"{ast.unparse(arg.annotation)}")
            info.default = value
        elif ft.repetition in (REPEATED, OPTIONAL_REPEATED):
            if not isinstance(value, (list, tuple)):
                raise mod.error(where, f"invalid default for '{name}': {value!r} is not a list")
            info.default = [_normalize(mod, where, name, ft.primitive, v) for v in value]
        else:
            info.default = _normalize(mod, where, name, ft.primitive, value)
    elif "default" in kwargs:
        info.default = None
    _check_constraints(mod, default_node, info)
    return info


def _check_constraints(mod: SourceModule, node: ast.AST, info: InputInfo) -> None:
    """Cog's checks of Input() constraints against the type and the default."""
    p, name = info.type.primitive, info.name
    where = f"'{name}' ({info.type.primitive})"
    if info.accept is not None and not isinstance(info.accept, str):
        raise mod.error(node, f"accept of '{name}' must be a string of MIME types (\"image/*,.png\")")
    if info.accept is not None and p not in (PATH, FILE):
        raise mod.error(node, f"accept is only valid on Path or File inputs (parameter '{name}')")
    defaults = []
    if info.default not in (MISSING, None):
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


def _check_return_annotation(mod: SourceModule, fn: ast.AST, fname: str) -> None:
    """Cog's check of the return annotation, made before it looks at the inputs: missing, or None (`-> None`,
    where getfullargspec() gives None as for no annotation at all), it is refused in the same words."""
    ann = fn.returns  # type: ignore[attr-defined]
    if ann is None or mod.is_none_at_runtime(ann):
        raise mod.error(fn if ann is None else ann, f"{fname}() must have a return type annotation")


def _output(mod: SourceModule, fn: ast.AST, fname: str) -> OutputInfo:
    """The output of FN from its return annotation (which _check_return_annotation() accepted)."""
    ann = fn.returns  # type: ignore[attr-defined]
    res = mod.resolve(ann)
    if res[0] == "iter":
        elem = res[2]
        if elem[0] != "prim":
            raise mod.error(ann, "iterator element type must not be Optional or List")
        if res[1] == CONCAT_ITERATOR and elem[1] != STRING:
            raise mod.error(ann, "ConcatenateIterator must have str element")
        return OutputInfo(res[1], elem[1])
    if res[0] in ("model", "typeddict"):
        return _object_output(res)
    q = mod.qualify(ann) if isinstance(ann, (ast.Name, ast.Attribute)) else None
    if q == "typing.Any":
        return OutputInfo(ANY_OUTPUT)
    if res[0] == "none":
        # `-> "None"`, or `-> None` under `from __future__ import annotations`: a string, so Cog's first check
        # passes; typing.get_type_hints() then makes it NoneType, a type Cog has no coder for.
        raise mod.error(ann, "unsupported Cog type NoneType")
    ft = _output_type(mod, ann, "the output")
    if ft.repetition in (OPTIONAL, OPTIONAL_REPEATED):
        raise mod.error(ann, "output must not be Optional")
    return OutputInfo(LIST if ft.repetition == REPEATED else SINGLE, ft.primitive)


def _output_type(mod: SourceModule, ann: ast.AST, what: str) -> FieldType:
    """The type of the output or of one of its fields: an input's types, less unions (Cog has none there)."""
    ft = mod.field_type(ann, what)
    if ft.primitive == UNION:
        raise mod.error(ann, f"unsupported union type '{ast.unparse(ann)}' for {what}: Cog takes unions in "
                             "inputs only")
    return ft


def _object_output(res: tuple) -> OutputInfo:
    """The output of a BaseModel or TypedDict class (res: its kind, ClassDef and module): its fields, with
    those of the classes it derives from in the project first, as Python orders them."""
    kind, cls, mod = res
    fields: Dict[str, FieldType] = {}
    not_required: set = set()
    total = not any(k.arg == "total" and isinstance(k.value, ast.Constant) and k.value.value is False
                    for k in cls.keywords)
    for b in cls.bases:
        q = mod.qualify(b)
        base = None
        if q and q.startswith("local.") and mod.class_kind(mod.classes[q[6:]]) == kind:
            base = (kind, mod.classes[q[6:]], mod)
        elif q and mod.imported(q):
            other, name = mod.imported(q)  # type: ignore[misc]
            if name in other.classes and other.class_kind(other.classes[name]) == kind:
                base = (kind, other.classes[name], other)
        if base is not None:
            inherited = _object_output(base)
            fields.update(inherited.fields)
            not_required |= inherited.not_required
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
            fields[name] = _output_type(mod, stmt.annotation, f"output field '{name}'")
            qual = stmt.annotation.value if isinstance(stmt.annotation, ast.Subscript) else None
            q = mod.qualify(qual) if qual is not None else None
            if kind == "typeddict" and ((not total and not (q or "").endswith(".Required"))
                                        or (q or "").endswith(".NotRequired")):
                not_required.add(name)
            else:
                not_required.discard(name)
    return OutputInfo(OBJECT, fields=fields, is_dict=kind == "typeddict", not_required=not_required)


def _find_method(mod: SourceModule, cls: ast.ClassDef, names: Tuple[str, ...],
                 _depth: int = 0) -> Optional[ast.AST]:
    """The first of the methods NAMES that CLS defines or inherits from a class of the same file, or None."""
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


def analyze(path: str, name: str, methods: Tuple[str, ...] = ("predict", "run")) -> PredictorInfo:
    """Read PATH and describe predictor NAME: its inputs, output and whether it is async. NAME is a class
    with one of METHODS (the first found), or a function; a trainer's METHODS are ("train",)."""
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
    mod = SourceModule(path, tree)
    if name in mod.classes:
        cls = mod.classes[name]
        fn = _find_method(mod, cls, methods)
        if fn is None:
            said = " or ".join(f"{m}()" for m in methods)
            raise mod.error(cls, f"class '{name}' has no {said} method")
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
    _check_return_annotation(mod, fn, fname)
    inputs: Dict[str, InputInfo] = {}
    for i, (arg, d) in enumerate(zip(params, defaults)):
        inputs[arg.arg] = _input_field(mod, i, arg, d)
    output = _output(mod, fn, fname)
    info = PredictorInfo(path=path, name=name, is_class=is_class, method=fname,
                         is_async=isinstance(fn, ast.AsyncFunctionDef), inputs=inputs, output=output,
                         line=fn.lineno,  # type: ignore[attr-defined]
                         streaming=any(_is_streaming(mod, d) for d in fn.decorator_list))  # type: ignore[attr-defined]
    if is_class and "run" in methods:  # Cog renamed predictions runs: the old names still work, with a warning
        cls = mod.classes[name]
        if any(mod.qualify(b) == "cog.BasePredictor" for b in cls.bases):
            info.warnings.append(f"{path}:{cls.lineno}: BasePredictor is deprecated: derive '{name}' from "
                                 f"cog.BaseRunner and name its method run() (Cog renamed predictions runs)")
        elif fname == "predict":
            info.warnings.append(f"{path}:{fn.lineno}: predict() is deprecated: name it run() (Cog renamed "
                                 f"predictions runs)")
    return info


def _is_streaming(mod: SourceModule, decorator: ast.AST) -> bool:
    """Whether DECORATOR is Cog's opt-in to server-sent events: @streaming, @cog.streaming, or either called."""
    if isinstance(decorator, ast.Call):
        decorator = decorator.func
    return mod.qualify(decorator) == "cog.streaming"
