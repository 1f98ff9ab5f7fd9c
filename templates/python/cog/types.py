# SPDX-License-Identifier: Apache-2.0
"""cog.types: Input, Path, File, Secret and the iterator markers of Cog's predictor API, stdlib only."""

import hashlib
import io
import os
import pathlib
import tempfile
import urllib.parse
import urllib.request
from typing import Any, AsyncIterator, Iterator, List, Optional, TypeVar, Union


class FieldInfo:
    """What Input() returns: the default and constraints of one predict() parameter.

    kiln reads these statically (kiln_schema.py); the object only has to exist at run time, as the
    parameter's default value."""

    __slots__ = ("default", "description", "ge", "le", "min_length", "max_length", "regex", "choices",
                 "deprecated", "accept")

    def __init__(self, default: Any = ..., description: Optional[str] = None,
                 ge: Optional[float] = None, le: Optional[float] = None,
                 min_length: Optional[int] = None, max_length: Optional[int] = None,
                 regex: Optional[str] = None, choices: Optional[List[Union[str, int]]] = None,
                 deprecated: Optional[bool] = None, accept: Optional[str] = None) -> None:
        self.default = default
        self.accept = accept
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
          deprecated: Optional[bool] = None, accept: Optional[str] = None) -> Any:
    """Describe a predict() input: its default (none: required), its constraints, and for a file the MIME
    types it takes (accept="image/*", put in the schema as "x-cog-accept")."""
    return FieldInfo(default=default, description=description, ge=ge, le=le, min_length=min_length,
                     max_length=max_length, regex=regex, choices=choices, deprecated=deprecated, accept=accept)


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


class _OpaqueMarker:
    """Typing marker (typing.Annotated[T, Opaque]): T is passed through as a JSON object, as it is."""

    def __repr__(self) -> str:
        return "cog.Opaque"


Opaque = _OpaqueMarker()


class URLPath(os.PathLike):
    """A path to the file at a URL, downloaded (under the temporary directory) the first time it is used."""

    def __init__(self, url: str) -> None:
        self.__url__ = url
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
        name = pathlib.PurePosixPath(urllib.parse.urlparse(url).path).name or digest
        self.__path__ = pathlib.Path(tempfile.gettempdir()) / digest / name

    def __fspath__(self) -> str:
        if not self.__path__.exists():
            self.__path__.parent.mkdir(parents=True, exist_ok=True)
            partial = self.__path__.with_name(self.__path__.name + ".part")
            with urllib.request.urlopen(self.__url__) as resp, open(partial, "wb") as out:  # noqa: S310
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
            os.replace(partial, self.__path__)
        return str(self.__path__)

    def __str__(self) -> str:
        return self.__url__

    def __repr__(self) -> str:
        return f"URLPath({self.__url__!r})"


class URLFile(io.IOBase):
    """A file object reading the body at a URL, opened the first time it is read."""

    def __init__(self, url: str, filename: Optional[str] = None) -> None:
        super().__init__()
        self.__url__ = url
        self.name = filename or pathlib.PurePosixPath(urllib.parse.urlparse(url).path).name or "file"
        self._resp: Any = None

    def _body(self) -> Any:
        if self._resp is None:
            self._resp = urllib.request.urlopen(self.__url__)  # noqa: S310,SIM115 (closed by close())
        return self._resp

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._body().read(None if size is None or size < 0 else size)

    def readinto(self, b: Any) -> int:
        return self._body().readinto(b)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
        super().close()

    def __str__(self) -> str:
        return self.__url__

    def __repr__(self) -> str:
        return f"URLFile({self.__url__!r})"


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


__all__ = ["AsyncConcatenateIterator", "ConcatenateIterator", "FieldInfo", "File", "Input", "Opaque", "Path",
           "Secret", "URLFile", "URLPath"]
