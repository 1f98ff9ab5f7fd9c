# SPDX-License-Identifier: Apache-2.0
"""cog: kiln's bundled, stdlib-only stand-in for Cog's Python package, used when the real one is absent."""

import contextvars
from typing import Any, Dict, Optional

from .exceptions import CancelationException
from .predictor import BaseModel, BasePredictor, BaseRunner
from .types import AsyncConcatenateIterator, ConcatenateIterator, File, Input, Path, Secret

__version__ = "0.0.0+kiln"


class Scope:
    """The running prediction's scope: metrics recorded here are kept with the prediction."""

    def __init__(self) -> None:
        self.metrics: Dict[str, Any] = {}

    def record_metric(self, name: str, value: Any) -> None:
        self.metrics[name] = value


_scope: contextvars.ContextVar = contextvars.ContextVar("cog_scope", default=None)


def current_scope() -> Scope:
    """The scope of the running prediction (a fresh, unattached one outside a prediction)."""
    scope: Optional[Scope] = _scope.get()
    if scope is None:
        scope = Scope()
        _scope.set(scope)
    return scope


def emit_metric(name: str, value: Any) -> None:
    """Deprecated in Cog in favour of current_scope().record_metric(); kept for old predictors."""
    current_scope().record_metric(name, value)


__all__ = [
    "__version__",
    "AsyncConcatenateIterator",
    "BaseModel",
    "BasePredictor",
    "BaseRunner",
    "CancelationException",
    "ConcatenateIterator",
    "File",
    "Input",
    "Path",
    "Secret",
    "current_scope",
    "emit_metric",
]
