# SPDX-License-Identifier: Apache-2.0
"""cog.scope: the running prediction's scope (current_scope()): its metrics and context, as Cog 0.22 has them.

Values recorded here are merged with Cog's rules (dot-path keys nest, modes replace/incr/append, None deletes)
sent to the shim as they change and with the prediction's end (shim/PROTOCOL.md), next to predict_time."""

import contextvars
import copy
import sys
import threading
from typing import Any, Callable, Dict, Optional

_MODES = {None: "replace", "replace": "replace", "incr": "incr", "increment": "incr", "append": "append"}
_WIRE_MODES = {"replace": "replace", "incr": "increment", "append": "append"}  # coglet's words for them
_TYPES = ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "list"), (dict, "dict"))


def _mode(mode: Optional[str]) -> str:
    if mode in _MODES:
        return _MODES[mode]
    raise TypeError(f"Invalid metric mode: '{mode}'. Expected 'replace', 'incr', or 'append'.")


def _type_name(value: Any) -> str:
    for cls, name in _TYPES:  # bool before int: bool is an int
        if isinstance(value, cls):
            return name
    raise TypeError(f"Unsupported metric value type: {type(value).__name__}. "
                    "Expected bool, int, float, str, list, or dict.")


def _apply(target: Dict[str, Any], key: str, value: Any, mode: str) -> None:
    if mode == "replace":
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    elif mode == "incr":
        old = target.get(key, 0)
        if isinstance(old, (int, float)) and not isinstance(old, bool):
            target[key] = old + value
    else:
        old = target.setdefault(key, [])
        if isinstance(old, list):
            old.append(value)
        else:
            target[key] = [old, value]


class MetricRecorder:
    """scope.metrics: record(key, value, mode="replace"), delete(key), metrics[key] = value, del metrics[key].
    A key keeps the type it was first given until it is deleted."""

    def __init__(self, active: bool,
                 notify: Optional[Callable[[Dict[str, Any], Dict[str, Any]], None]] = None) -> None:
        self._active = active
        self._notify = notify  # the runner's: told the metrics after each change, as they stand, and the change
        self._lock = threading.Lock()
        self._types: Dict[str, str] = {}
        self._values: Dict[str, Any] = {}

    def record(self, key: str, value: Any, mode: Optional[str] = None) -> None:
        self._record(key, value, _mode(mode))

    def _record(self, key: str, value: Any, mode: str) -> None:
        if not self._active:
            return  # outside a prediction: a no-op, as in Cog
        kind = _type_name(value)
        with self._lock:
            old = self._types.get(key)
            if old is not None and old != kind:
                raise TypeError(f"Metric '{key}' has type {old}, cannot set to {kind} without deleting first")
            if mode == "incr" and kind not in ("int", "float"):
                raise TypeError(f"Increment mode requires int or float, got {kind}")
            self._types[key] = kind
            merged = self._merge(key, value, mode)
        if merged:
            self._changed(key, value, mode)

    def delete(self, key: str) -> None:
        if not self._active:
            return
        with self._lock:
            self._types.pop(key, None)
            merged = self._merge(key, None, "replace")
        if merged:
            self._changed(key, None, "replace")

    def _changed(self, key: str, value: Any, mode: str) -> None:
        # the change as Cog's server streams it (a "metric" event): a deletion is a null value, "replace"
        if self._notify is not None:
            change = {"name": key, "value": copy.deepcopy(value), "mode": _WIRE_MODES[mode]}
            self._notify(self._snapshot(), change)

    def __setitem__(self, key: str, value: Any) -> None:
        if value is None:
            self.delete(key)
        else:
            self._record(key, value, "replace")

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def __repr__(self) -> str:
        return f"MetricRecorder(keys={len(self._types)})" if self._active else "MetricRecorder(inactive)"

    def _merge(self, key: str, value: Any, mode: str) -> bool:
        """Merge one change into the values; False when KEY is dropped."""
        parts = key.split(".")
        if not key or "" in parts:  # Cog's server drops these too; kiln says so in the prediction's logs
            print(f"cog: ignoring metric '{key}': empty key or empty dot-path segment", file=sys.stderr)
            return False
        target = self._values
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        _apply(target, parts[-1], value, mode)
        return True

    def _snapshot(self) -> Dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._values)


class Scope:
    """The running prediction's scope: metrics (a MetricRecorder), record_metric() and context (the request's
    "context" object; empty when it had none)."""

    def __init__(self, context: Optional[Dict[str, str]] = None, active: bool = True,
                 notify: Optional[Callable[[Dict[str, Any], Dict[str, Any]], None]] = None) -> None:
        self._metrics = MetricRecorder(active, notify)
        self._context = dict(context or {})

    @property
    def metrics(self) -> MetricRecorder:
        return self._metrics

    @property
    def context(self) -> Dict[str, str]:
        return self._context

    def record_metric(self, key: str, value: Any, mode: Optional[str] = None) -> None:
        self._metrics.record(key, value, mode)

    def __repr__(self) -> str:
        return f"Scope({self._metrics!r})"


_scope: contextvars.ContextVar = contextvars.ContextVar("cog_scope", default=None)
_sync_scope: Optional[Scope] = None  # a synchronous prediction's, seen by the threads it starts too


def current_scope() -> Scope:
    """The running prediction's scope; outside a prediction a no-op one (never None)."""
    scope = _scope.get()
    if scope is None:
        scope = _sync_scope
    return scope if scope is not None else Scope(active=False)


def _enter(context: Optional[Dict[str, str]], sync: bool,
           notify: Optional[Callable[[Dict[str, Any], Dict[str, Any]], None]] = None) -> Any:
    """The runner's: a new scope for a prediction (NOTIFY told its metrics and the change after each change);
    returns what _exit() takes."""
    global _sync_scope
    scope = Scope(context, notify=notify)
    if sync:
        _sync_scope = scope
    return scope, _scope.set(scope), sync


def _exit(entered: Any) -> Dict[str, Any]:
    """The runner's: end the prediction's scope; its metrics, merged."""
    global _sync_scope
    scope, token, sync = entered
    if sync:
        _sync_scope = None
    try:
        _scope.reset(token)
    except ValueError:  # entered in another context (an async task's); it ends with that context
        pass
    return scope.metrics._snapshot()


__all__ = ["MetricRecorder", "Scope", "current_scope"]
