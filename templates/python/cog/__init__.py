# SPDX-License-Identifier: Apache-2.0
"""cog: kiln's bundled, stdlib-only stand-in for Cog's Python package (0.22's names), used when the real one
is absent."""

import inspect as _inspect
import sys as _sys
from typing import Any, Callable, Optional

from .exceptions import CancelationException
from .predictor import BaseModel, BasePredictor, BaseRunner
from .scope import Scope, current_scope
from .types import (AsyncConcatenateIterator, ConcatenateIterator, FieldInfo, File, Input, Opaque, Path, Secret,
                    URLFile, URLPath)

__version__ = "0.0.0+kiln"


def streaming(fn: Optional[Callable] = None) -> Any:
    """Mark a predict handler as streaming its output (@streaming or @streaming())."""
    if fn is None:
        return lambda inner: inner
    return fn


def concurrent(fn: Optional[Callable] = None, *, max: int = 1) -> Any:  # noqa: A002 (Cog's name)
    """Set how many predictions an async handler runs at once (@concurrent or @concurrent(max=N))."""
    if isinstance(max, bool) or not isinstance(max, int):
        raise TypeError("concurrent max must be an integer")
    if max < 1:
        raise ValueError("concurrent max must be at least 1")

    def decorate(inner: Callable) -> Callable:
        if max > 1 and not (_inspect.iscoroutinefunction(inner) or _inspect.isasyncgenfunction(inner)):
            raise TypeError("concurrent max greater than 1 requires an async function")
        inner.__cog_concurrent_max__ = max  # type: ignore[attr-defined]
        return inner

    if fn is None:
        return decorate
    if not callable(fn):
        raise TypeError("concurrent must be used as @concurrent or @concurrent(max=...)")
    return decorate(fn)


class _ExperimentalFeatureWarning(FutureWarning):
    """Deprecated in Cog 0.22 (no longer used); kept so that filterwarnings() calls naming it still work."""


def __getattr__(name: str) -> Any:
    # Cog 0.22 says these two are deprecated, once, on stderr, the first time they are looked up.
    if name == "ExperimentalFeatureWarning":
        print("cog: ExperimentalFeatureWarning is deprecated and will be removed in a future release. "
              "Remove `ExperimentalFeatureWarning` from your imports and any associated "
              "`warnings.filterwarnings(...)` calls.", file=_sys.stderr)
        globals()[name] = _ExperimentalFeatureWarning
        return _ExperimentalFeatureWarning
    if name == "emit_metric":
        print("cog: emit_metric() is deprecated and will be removed in a future release. "
              "Use current_scope().record_metric(name, value) instead.", file=_sys.stderr)

        def emit_metric(name: str, value: Any) -> None:
            current_scope().record_metric(name, value)

        globals()["emit_metric"] = emit_metric
        return emit_metric
    raise AttributeError(f"module 'cog' has no attribute {name!r}")


__all__ = [
    "__version__",
    "BaseRunner",
    "BasePredictor",
    "BaseModel",
    "Opaque",
    "Input",
    "FieldInfo",
    "Path",
    "Secret",
    "File",
    "URLFile",
    "URLPath",
    "ConcatenateIterator",
    "AsyncConcatenateIterator",
    "CancelationException",
    "current_scope",
    "streaming",
    "concurrent",
    "ExperimentalFeatureWarning",
    "emit_metric",
]
