# SPDX-License-Identifier: Apache-2.0
"""kiln_schema_ast: reading a predictor's source without running it: the names a file binds, the literals
of its defaults, and its type annotations resolved to Cog's types."""

import ast
import builtins
import os
from typing import Any, Dict, List, Optional, Tuple

from kiln_schema_model import (ANY, BOOL, CONCAT_ITERATOR, FILE, FLOAT, INTEGER, ITERATOR, JSON_NATIVE,
                               MISSING, OPTIONAL, OPTIONAL_REPEATED, PATH, REPEATED, REQUIRED, SECRET, STRING,
                               UNION, FieldType, SchemaError)

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
_MODEL_BASES = {"cog.BaseModel", "cog.predictor.BaseModel", "pydantic.BaseModel", "pydantic.v1.BaseModel"}
_TYPED_DICTS = {"typing.TypedDict", "typing_extensions.TypedDict"}
_ANNOTATED = {"typing.Annotated", "typing_extensions.Annotated"}
_OPAQUE = {"cog.Opaque", "cog.types.Opaque"}
_FIELD_QUALIFIERS = {"typing.Required", "typing.NotRequired", "typing_extensions.Required",
                     "typing_extensions.NotRequired"}
# What `from cog import *` and `from typing import *` bring in, for annotations that use them bare.
_STAR_EXPORTS = {
    "cog": {"Path", "File", "Secret", "Input", "BaseModel", "ConcatenateIterator",
            "AsyncConcatenateIterator", "BasePredictor", "BaseRunner", "Opaque"},
    "typing": {"Any", "Dict", "List", "Optional", "Union", "Iterator", "AsyncIterator", "TypedDict",
               "Annotated", "Required", "NotRequired"},
}


class SourceModule:
    """One parsed source file: its imports, top-level classes and constants, for resolving names."""

    def __init__(self, path: str, tree: ast.Module, project: Optional[Dict[str, Any]] = None) -> None:
        self.path = path
        # The project's modules read so far (path: SourceModule, or None where one cannot be read), shared by
        # every module of one predictor, for the types a predictor imports from them.
        self.project: Dict[str, Any] = project if project is not None else {}
        self.project[os.path.abspath(path)] = self
        self.aliases: Dict[str, str] = {}
        self.star: List[str] = []
        self.classes: Dict[str, ast.ClassDef] = {}
        self.functions: Dict[str, ast.AST] = {}
        self.assigns: Dict[str, ast.AST] = {}
        self.future_annotations = False  # `from __future__ import annotations`: annotations are strings
        self._collect(tree.body)
        for name, value in list(self.assigns.items()):
            cls = self._functional_typed_dict(name, value)
            if cls is not None:
                self.classes[name] = cls
                del self.assigns[name]

    def _functional_typed_dict(self, name: str, value: ast.AST) -> Optional[ast.ClassDef]:
        """`Name = TypedDict("Name", {"key": T, ...}, total=False)` as the class it makes (`class Name(TypedDict,
        total=False): key: T`), for resolving it as one; None for any other value."""
        if not (isinstance(value, ast.Call) and self.qualify(value.func) in _TYPED_DICTS and len(value.args) == 2
                and isinstance(value.args[1], ast.Dict)):
            return None
        fields = value.args[1]
        if not all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in fields.keys):
            raise self.error(value, f"TypedDict '{name}' must have string literal keys")
        body: List[ast.stmt] = [
            ast.copy_location(ast.AnnAssign(target=ast.Name(id=k.value, ctx=ast.Store()), annotation=v,  # type: ignore[union-attr]
                                            value=None, simple=1), k)
            for k, v in zip(fields.keys, fields.values)]
        cls = ast.ClassDef(name=name, bases=[value.func], keywords=[k for k in value.keywords if k.arg == "total"],
                           body=body or [ast.Pass()], decorator_list=[])
        return ast.copy_location(cls, value)

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
                if node.module == "__future__" and any(a.name == "annotations" for a in node.names):
                    self.future_annotations = True
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
                if mod not in _STAR_EXPORTS and self.imported(f"{mod}.{n}"):  # from mytypes import *
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
            if value is not MISSING:
                return value
        raise self.error(node, f"{what} is not a literal: '{ast.unparse(node)}' "
                               "(kiln reads the predictor without running it)")

    # ---- annotations ----

    def is_none_at_runtime(self, node: ast.AST, _depth: int = 0) -> bool:
        """Whether annotation NODE is the value None when the module runs (`-> None`, or a name bound to
        None), as inspect.getfullargspec() reports it. Never so under `from __future__ import annotations`,
        where every annotation is a string."""
        if self.future_annotations:
            return False
        if isinstance(node, ast.Constant):
            return node.value is None
        q = self.qualify(node)
        if q and q.startswith("assign.") and _depth < 8:
            return self.is_none_at_runtime(self.assigns[q[7:]], _depth + 1)
        return False

    def resolve(self, node: ast.AST, _depth: int = 0) -> tuple:
        """Resolve an annotation to a small tree: ("prim", P) ("none",) ("list", T) ("union", [T...])
        ("iter", kind, T) ("opaque", T), and ("model", ClassDef, SourceModule) or ("typeddict", ClassDef,
        SourceModule) for a class, with the module that defines it."""
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
            if base in _ANNOTATED:  # Annotated[T, Opaque]: T as opaque JSON; other metadata changes nothing
                if any(self.qualify(m) in _OPAQUE for m in args[1:]):
                    return ("opaque", self.resolve(args[0], _depth + 1) if args[0] else ("prim", ANY))
                return self.resolve(args[0], _depth + 1)
            if base in _FIELD_QUALIFIERS and len(args) == 1:  # a TypedDict's Required[T] / NotRequired[T]
                return self.resolve(args[0], _depth + 1)
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
        if q and q.startswith("local."):
            kind = self.class_kind(self.classes[q[6:]])
            if kind:
                return (kind, self.classes[q[6:]], self)
        if q and q.startswith("assign.") and _depth < 8:  # a type alias: Paths = list[Path]
            return self.resolve(self.assigns[q[7:]], _depth + 1)
        found = self.imported(q) if q else None
        if found is not None and _depth < 12:  # from .types import Thing, import mytypes: mytypes.Thing
            other, name = found
            return other.resolve(ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node), _depth + 1)
        raise self.error(node, f"unsupported type annotation '{ast.unparse(node)}'")

    def class_kind(self, cls: ast.ClassDef, _depth: int = 0) -> Optional[str]:
        """"model" for a BaseModel, "typeddict" for a TypedDict (either through classes of the project), else
        None."""
        for b in cls.bases:
            q = self.qualify(b)
            if q in _MODEL_BASES:
                return "model"
            if q in _TYPED_DICTS:
                return "typeddict"
            if _depth >= 8 or not q:
                continue
            if q.startswith("local."):
                kind = self.class_kind(self.classes[q[6:]], _depth + 1)
            else:
                found = self.imported(q)
                kind = None
                if found and found[1] in found[0].classes:
                    kind = found[0].class_kind(found[0].classes[found[1]], _depth + 1)
            if kind:
                return kind
        return None

    def imported(self, q: str) -> Optional[Tuple["SourceModule", str]]:
        """Where the dotted name Q ("mytypes.Thing", ".types.Thing") is defined, when its module is a file of
        the project (beside the predictor, or under the directory kiln runs in): that module and the name in
        it; None when it is not."""
        modname, _, name = q.rpartition(".")
        if not modname or modname in ("local", "assign", "builtins") or not name.isidentifier():
            return None
        level = len(modname) - len(modname.lstrip("."))
        parts = [p for p in modname.lstrip(".").split(".") if p]
        if level:
            base = os.path.dirname(os.path.abspath(self.path))
            for _ in range(level - 1):
                base = os.path.dirname(base)
            roots = [base]
        else:
            roots = [os.path.dirname(os.path.abspath(self.path)), os.getcwd()]
        for root in roots:
            stem = os.path.join(root, *parts) if parts else root
            for cand in (stem + ".py", os.path.join(stem, "__init__.py")):
                other = self._load(cand)
                if other is not None and any(name in d for d in (other.classes, other.assigns,
                                                                 other.aliases)):
                    return other, name
        return None

    def _load(self, path: str) -> Optional["SourceModule"]:
        path = os.path.abspath(path)
        if path not in self.project:
            self.project[path] = None
            try:
                with open(path, "rb") as f:
                    tree = ast.parse(f.read(), filename=path)
            except (OSError, SyntaxError, ValueError):
                return None
            SourceModule(os.path.relpath(path), tree, self.project)
        return self.project[path]

    def field_type(self, node: ast.AST, what: str) -> FieldType:
        """An input's (or an output field's) type: a primitive, Optional, list or Optional[list]."""
        try:
            res = self.resolve(node)
        except SchemaError as e:
            e.message += f" for {what}"
            raise
        optional = False
        if res[0] == "union":
            members = _flatten_union(res)
            optional = any(m[0] == "none" for m in members)
            members = [m for m in members if m[0] != "none"]
            if not members:
                raise self.error(node, f"unsupported union type '{ast.unparse(node)}' for {what}")
            if len(members) > 1:
                return self._union(node, members, optional, what)
            res = members[0]
        if res[0] == "opaque":
            inner = res[1]
            if inner[0] == "union" and any(m[0] == "none" for m in _flatten_union(inner)):
                optional, inner = True, next(m for m in _flatten_union(inner) if m[0] != "none")
            rep = REPEATED if inner[0] == "list" else REQUIRED
            if optional:
                rep = OPTIONAL_REPEATED if rep == REPEATED else OPTIONAL
            return FieldType(ANY, rep)
        if res[0] == "typeddict":
            res = ("prim", ANY)
        if res[0] == "list":
            elem = res[1]
            if elem[0] in ("typeddict", "opaque"):
                elem = ("prim", ANY)
            if elem[0] != "prim":
                raise self.error(node, f"List cannot have nested type '{ast.unparse(node)}' for {what}")
            return FieldType(elem[1], OPTIONAL_REPEATED if optional else REPEATED)
        if res[0] == "prim":
            return FieldType(res[1], OPTIONAL if optional else REQUIRED)
        raise self.error(node, f"unsupported type annotation '{ast.unparse(node)}' for {what}")

    def _union(self, node: ast.AST, members: List[tuple], optional: bool, what: str) -> FieldType:
        """A union input (`str | float`, `Union[int, list[int]]`): its members must be JSON's own types, as
        Cog checks them at the HTTP edge; Path, File, Secret and models in a union are refused, as in Cog."""
        fts = []
        for m in members:
            if m[0] == "typeddict":
                m = ("prim", ANY)
            if m[0] == "list" and m[1][0] in ("prim", "typeddict"):
                p = ANY if m[1][0] == "typeddict" else m[1][1]
                ft = FieldType(p, REPEATED)
            elif m[0] == "prim":
                ft = FieldType(m[1], REQUIRED)
            else:
                ft = None
            if ft is None or ft.primitive not in JSON_NATIVE:
                raise self.error(node, f"unsupported union type '{ast.unparse(node)}' for {what}: a union's "
                                       "members must be str, int, float, bool, dict, Any or a list of them")
            if ft not in fts:
                fts.append(ft)
        if len(fts) == 1:
            ft = fts[0]
            if not optional:
                return ft
            return FieldType(ft.primitive, OPTIONAL_REPEATED if ft.repetition == REPEATED else OPTIONAL)
        return FieldType(UNION, OPTIONAL if optional else REQUIRED, members=fts)


def _flatten_union(res: tuple) -> List[tuple]:
    """The members of union RES, nested unions (`Union[int | str, None]`) opened."""
    out: List[tuple] = []
    for m in res[1]:
        out.extend(_flatten_union(m) if m[0] == "union" else [m])
    return out


_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
           ast.Pow: lambda a, b: a ** b}


def _arith(node: ast.AST, evaluate: Any) -> Any:
    """Constant arithmetic on numbers (and + on strings) in a default; MISSING when it is not that."""
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
                    return MISSING
                return _BINOPS[type(node.op)](a, b)
    except (ArithmeticError, ValueError):
        pass
    except SchemaError:
        pass
    return MISSING
