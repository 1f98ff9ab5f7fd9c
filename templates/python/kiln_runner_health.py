# SPDX-License-Identifier: Apache-2.0
"""kiln_runner_health: the predictor's own healthcheck(), run as Cog 0.22 runs it for GET /health-check: with
a 5 second limit, synchronous ones in a thread of their own, async ones on the predictor's event loop."""

import asyncio
import concurrent.futures
import inspect
import threading
from typing import Any, Optional

TIMEOUT = 5.0


def find(predictor: Any) -> Optional[Any]:
    """The predictor's healthcheck method, or None when it has none."""
    fn = getattr(predictor, "healthcheck", None)
    return fn if callable(fn) else None


def run(fn: Any, loop: Optional[asyncio.AbstractEventLoop]) -> Optional[str]:
    """Call FN (a healthcheck) once: None when healthy, else the error as Cog words it. Only a result that
    is False is unhealthy; anything else it returns is healthy, as in Cog."""
    try:
        if inspect.iscoroutinefunction(fn):
            if loop is None or not loop.is_running():
                result = asyncio.run(asyncio.wait_for(fn(), TIMEOUT))
            else:
                future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(fn(), TIMEOUT), loop)
                result = future.result(TIMEOUT + 1.0)
        else:
            result = _in_thread(fn)
    except (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError):
        return f"Healthcheck failed: user-defined healthcheck timed out after {TIMEOUT:.1f} seconds"
    except BaseException as e:  # noqa: BLE001 (whatever it raises makes it unhealthy)
        return f"Healthcheck failed: {type(e).__name__}: {e}"
    if result is False:
        return "Healthcheck failed: user-defined healthcheck returned False"
    return None


def _in_thread(fn: Any) -> Any:
    box: dict = {}

    def call() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001
            box["error"] = e

    t = threading.Thread(target=call, daemon=True, name="kiln-healthcheck")
    t.start()
    t.join(TIMEOUT)
    if t.is_alive():
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    return box.get("result")
