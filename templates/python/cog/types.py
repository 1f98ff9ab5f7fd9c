# SPDX-License-Identifier: Apache-2.0
"""cog.types: Input, Path, File, Secret and the iterator markers of Cog's predictor API, stdlib only."""

import io
import pathlib
from typing import Any, AsyncIterator, Iterator, List, Optional, TypeVar, Union


class FieldInfo:
    """What Input() returns: the default and constraints of one predict() parameter.

    kiln reads these statically (kiln_schema.py); the object only has to exist at run time, as the
    parameter's default value."""

    __slots__ = ("default", "description", "ge", "le", "min_length", "max_length", "regex", "choices",
                 "deprecated")

    def __init__(self, default: Any = ..., description: Optional[str] = None,
                 ge: Optional[float] = None, le: Optional[float] = None,
                 min_length: Optional[int] = None, max_length: Optional[int] = None,
                 regex: Optional[str] = None, choices: Optional[List[Union[str, int]]] = None,
                 deprecated: Optional[bool] = None) -> None:
        self.default = default
        self.description = description
        self.ge = ge
        self.le = le
        self.min_length = min_length
        self.max_length = max_length
        self.regex = regex
        self.choices = choices
        self.deprecated = deprecated

    def __repr__(self) -> str:
        parts = [f"{k}={getattr(self, k)!r}" for k in self.__slots__
                 if getattr(self, k) is not None and getattr(self, k) is not ...]
        return f"Input({', '.join(parts)})"


def Input(default: Any = ..., description: Optional[str] = None,  # noqa: N802 (Cog's name)
          ge: Optional[float] = None, le: Optional[float] = None,
          min_length: Optional[int] = None, max_length: Optional[int] = None,
          regex: Optional[str] = None, choices: Optional[List[Union[str, int]]] = None,
          deprecated: Optional[bool] = None) -> Any:
    """Describe a predict() input: its default (none: required) and its constraints."""
    return FieldInfo(default=default, description=description, ge=ge, le=le, min_length=min_length,
                     max_length=max_length, regex=regex, choices=choices, deprecated=deprecated)


class Path(pathlib.PosixPath):
    """A local file: file inputs arrive as Path, and a Path output is sent back as a file."""

    @classmethod
    def validate(cls, value: Any) -> "Path":
        if isinstance(value, Path):
            return value
        return cls(value)


class File(io.IOBase):
    """Deprecated in Cog (use Path): the input arrives as an open binary file object."""

    @classmethod
    def validate(cls, value: Any) -> io.IOBase:
        if isinstance(value, io.IOBase):
            return value
        return open(value, "rb")  # noqa: SIM115 (the predictor owns it)


class Secret:
    """A string that does not show itself in reprs or logs; get_secret_value() returns it."""

    __slots__ = ("_secret_value",)

    def __init__(self, secret_value: Optional[str] = None) -> None:
        self._secret_value = secret_value

    def get_secret_value(self) -> Optional[str]:
        return self._secret_value

    def __str__(self) -> str:
        return "**********" if self._secret_value else ""

    def __repr__(self) -> str:
        return f"Secret('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._secret_value == self._secret_value

    def __hash__(self) -> int:
        return hash(self._secret_value)

    def __len__(self) -> int:
        return len(self._secret_value or "")


Item = TypeVar("Item")


class ConcatenateIterator(Iterator[Item]):
    """Output marker: an iterator of strings meant to be shown concatenated (tokens of an LLM)."""

    @classmethod
    def validate(cls, value: Any) -> Any:
        return value


class AsyncConcatenateIterator(AsyncIterator[Item]):
    """Output marker for async predictors: an async iterator of strings shown concatenated."""

    @classmethod
    def validate(cls, value: Any) -> Any:
        return value


__all__ = ["AsyncConcatenateIterator", "ConcatenateIterator", "FieldInfo", "File", "Input", "Path",
           "Secret"]
