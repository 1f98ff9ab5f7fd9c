# SPDX-License-Identifier: Apache-2.0
"""kiln_runner_values: a request's input values converted to what predict() takes (Path, File, Secret, ...),
and what predict() returns checked against the output type and encoded as JSON, with the positions of its
files beside it."""

import dataclasses
import datetime
import enum
import inspect
import io
import os
import pathlib
import shutil
import tempfile
from typing import Any, Dict, List, Tuple

from kiln_schema_model import (FILE, FLOAT, INTEGER, OBJECT, OPTIONAL, OPTIONAL_REPEATED, PATH, REPEATED,
                               SECRET, UNION, FieldType)


class InputError(Exception):
    pass


def convert_inputs(info: Any, cog: Any, raw: Dict[str, Any], closers: List[Any]) -> Dict[str, Any]:
    """predict()'s keyword arguments for the request input RAW, as INFO (a kiln_schema PredictorInfo)
    describes them: defaults filled in, values made COG's types. Files opened are appended to CLOSERS,
    for the caller to close after the prediction. InputError when RAW does not fit."""
    if not isinstance(raw, dict):
        raise InputError("input must be an object")
    for name in raw:
        if name not in info.inputs:
            raise InputError(f"unexpected input '{name}'")
    kwargs = {}
    for name, f in info.inputs.items():
        if name in raw:
            value = raw[name]
        else:
            try:
                value = f.value_when_missing()
            except KeyError:
                raise InputError(f"missing required input '{name}'") from None
        kwargs[name] = _convert(cog, f.type, value, closers)
    return kwargs


def _convert(cog: Any, ft: Any, value: Any, closers: List[Any]) -> Any:
    if value is None:
        return None
    if ft.primitive == UNION:
        return _convert(cog, union_member(ft, value), value, closers)
    if ft.repetition in (REPEATED, OPTIONAL_REPEATED):
        items = value if isinstance(value, list) else [value]
        return [_convert_one(cog, ft.primitive, v, closers) for v in items]
    return _convert_one(cog, ft.primitive, value, closers)


def _convert_one(cog: Any, p: str, v: Any, closers: List[Any]) -> Any:
    if p == PATH:
        return cog.Path(v)
    if p == FILE:
        f = open(v, "rb")  # noqa: SIM115 (closed after the prediction)
        closers.append(f)
        return f
    if p == SECRET:
        return cog.Secret(v)
    if p == FLOAT and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if p == INTEGER and isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def union_member(ft: FieldType, value: Any) -> FieldType:
    """The member of union FT that VALUE (not None) is taken as: the first whose JSON type VALUE has exactly
    (5 is an int, 5.0 a float), else the first that accepts it (5 for a float); InputError when none does."""
    for exact in (True, False):
        for m in ft.members or []:
            if m.accepts(value) and (not exact or _exactly(m, value)):
                return m
    raise InputError(f"value {value!r} is none of the union's types")


def _exactly(m: FieldType, value: Any) -> bool:
    items = value if m.repetition in (REPEATED, OPTIONAL_REPEATED) else [value]
    return not (m.primitive == FLOAT and any(not isinstance(v, float) for v in items))


def check_output(output: Any, value: Any) -> None:
    """Cog's check of what predict() returned for OUTPUT (a kiln_schema OutputInfo), as its
    OutputType._transform() makes it: an object output has every field of its model, and None in a field
    only where the field is Optional (a default does not count). ValueError, in Cog's words, when not."""
    if output.kind != OBJECT:
        return
    if output.is_dict:  # a TypedDict: a dict with every key that is not NotRequired
        if not isinstance(value, dict):
            raise ValueError(f"output must be a dict, not {type(value).__name__}")
        for name, ft in output.fields.items():
            if name not in value and name not in output.not_required:
                raise ValueError(f"missing output field: {name}")
        return
    for name, ft in output.fields.items():
        if not hasattr(value, name):
            raise ValueError(f"missing output field: {name}")
        if getattr(value, name) is None and ft.repetition not in (OPTIONAL, OPTIONAL_REPEATED):
            raise ValueError(f"missing value for output field: {name}")


def encode(v: Any) -> Tuple[Any, List[List[Any]]]:
    """An output value as JSON, and where its files are: a list of positions (lists of object keys and
    array indices) of the strings in it that are files' absolute paths, for the event's "files". The files
    are marked there, out of band, so that no data the predictor returns can pass for a file. TypeError
    (or ValueError when it nests too deeply) for a value JSON cannot hold."""
    files: List[List[Any]] = []
    return _encode(v, files, [], 0), files


def _encode(v: Any, files: List[List[Any]], at: List[Any], depth: int) -> Any:
    if depth > 64:
        raise ValueError("output nests too deeply")
    if v is None or isinstance(v, (bool, int, float, str)):
        if isinstance(v, enum.Enum):
            return _encode(v.value, files, at, depth + 1)
        return v
    if isinstance(v, (pathlib.PurePath, os.PathLike)):
        files.append(list(at))
        return os.path.abspath(os.fspath(v))
    if isinstance(v, io.IOBase):
        files.append(list(at))
        return _file_output(v)
    if isinstance(v, dict):
        return {str(k): _encode(x, files, at + [str(k)], depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)) or inspect.isgenerator(v):
        return [_encode(x, files, at + [i], depth + 1) for i, x in enumerate(v)]
    if isinstance(v, enum.Enum):
        return _encode(v.value, files, at, depth + 1)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if callable(getattr(v, "get_secret_value", None)):
        return v.get_secret_value()
    if callable(getattr(v, "model_dump", None)):  # pydantic v2 and cog.BaseModel
        return _encode(v.model_dump(), files, at, depth + 1)
    if hasattr(v, "__fields__") and callable(getattr(v, "dict", None)):  # pydantic v1
        return _encode(v.dict(), files, at, depth + 1)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _encode(getattr(v, f.name), files, at + [f.name], depth + 1)
                for f in dataclasses.fields(v)}
    if type(v).__module__.split(".")[0] == "numpy" and callable(getattr(v, "tolist", None)):
        return _encode(v.tolist(), files, at, depth + 1)
    raise TypeError(f"output of type {type(v).__name__} cannot be encoded as JSON")


def _file_output(f: io.IOBase) -> str:
    """The path of file object F: its own when it names a file, else a copy of its content."""
    name = getattr(f, "name", None)
    if isinstance(name, str) and os.path.isfile(name):
        return os.path.abspath(name)
    base = os.path.basename(name) if isinstance(name, str) and name else "output"
    path = os.path.join(tempfile.mkdtemp(prefix="kiln-output-"), base)
    if hasattr(f, "seek") and f.seekable():
        f.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(f, out)  # type: ignore[misc]
    return path


def is_stream(result: Any) -> bool:
    """Whether RESULT is a generator or iterator whose items are outputs of their own."""
    if inspect.isgenerator(result):
        return True
    return (hasattr(result, "__next__") and hasattr(result, "__iter__")
            and not isinstance(result, (str, bytes, dict, list, tuple, io.IOBase)))
