# SPDX-License-Identifier: Apache-2.0
"""cog.predictor: the base classes a predictor derives from (BasePredictor.predict, BaseRunner.run)."""

from typing import Any, Optional

from .scope import Scope, current_scope


class _Metrics:
    """self.record_metric() and self.scope, as Cog 0.22's base classes have them (no-ops outside a prediction)."""

    @property
    def scope(self) -> Scope:
        return current_scope()

    def record_metric(self, key: str, value: Any, mode: Optional[str] = None) -> None:
        current_scope().record_metric(key, value, mode)


class BasePredictor(_Metrics):
    """Derive from this and define predict(); setup() runs once before the first prediction."""

    def setup(self, weights: Optional[Any] = None) -> None:  # noqa: ARG002 (Cog's signature)
        """Load the model (optional)."""
        return None

    def predict(self, **kwargs: Any) -> Any:
        """Run one prediction."""
        raise NotImplementedError("predict has not been implemented by the predictor")


class BaseRunner(_Metrics):
    """Cog's newer name for a predictor: define run() instead of predict()."""

    def setup(self, weights: Optional[Any] = None) -> None:  # noqa: ARG002 (Cog's signature)
        """Load the model (optional)."""
        return None

    def run(self, **kwargs: Any) -> Any:
        """Run one prediction."""
        raise NotImplementedError("run has not been implemented by the runner")


class BaseModel:
    """A structured output: annotate fields on a subclass, construct it with keyword arguments.

    Stands in for pydantic.BaseModel (which Cog re-exports); dict() and model_dump() give the fields."""

    def __init__(self, **kwargs: Any) -> None:
        names = _fields(type(self))
        for name in names:
            if name in kwargs:
                setattr(self, name, kwargs.pop(name))
            elif hasattr(type(self), name):
                setattr(self, name, getattr(type(self), name))
            else:
                raise TypeError(f"{type(self).__name__}: missing field '{name}'")
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected field '{next(iter(kwargs))}'")

    def model_dump(self) -> dict:
        return {name: getattr(self, name) for name in _fields(type(self))}

    def dict(self) -> dict:
        return self.model_dump()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.model_dump().items())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.model_dump() == self.model_dump()


def _fields(cls: type) -> list:
    names: list = []
    for klass in reversed(cls.__mro__):
        for name in getattr(klass, "__annotations__", {}):
            if not name.startswith("_") and name not in names:
                names.append(name)
    return names


__all__ = ["BaseModel", "BasePredictor", "BaseRunner"]
