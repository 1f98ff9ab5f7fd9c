# SPDX-License-Identifier: Apache-2.0
"""kiln_runner_protocol: the runner's side of shim/PROTOCOL.md: request lines parsed, event lines written
whole, the predictor's stdout and stderr turned into log events, and the descriptors they travel on."""

import io
import json
import os
import sys
import threading
from typing import Any, Callable, Dict, Optional, Tuple

LOG_LINE_MAX = 64 * 1024


def parse_request(line: str) -> Dict[str, Any]:
    """One request line as an object with a string "type" (and an "id" for predict, train and cancel);
    ValueError, saying what is wrong, when it is not that."""
    req = json.loads(line)
    if not isinstance(req, dict) or not isinstance(req.get("type"), str):
        raise ValueError("not an object with a type")
    if req["type"] in ("predict", "train", "cancel") and not isinstance(req.get("id"), str):
        raise ValueError("no id")
    return req


class Events:
    """The event channel to the shim: whole JSON lines, written under a lock from any thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.main = threading.main_thread()
        self.in_emit = 0  # main thread inside emit(): a cancel signal waits until the line is written
        self.on_emitted: Optional[Callable[[], None]] = None

    def emit(self, event: Dict[str, Any]) -> None:
        data = (json.dumps(event, allow_nan=False, separators=(",", ":")) + "\n").encode()
        on_main = threading.current_thread() is self.main
        if on_main:
            self.in_emit += 1
        try:
            with self.lock:
                view = memoryview(data)
                while view:
                    try:
                        n = os.write(self.fd, view)
                    except InterruptedError:
                        continue
                    except OSError:  # the shim is gone: nobody to work for
                        os._exit(1)
                    view = view[n:]
        finally:
            if on_main:
                self.in_emit -= 1
                if self.in_emit == 0 and self.on_emitted is not None:
                    self.on_emitted()


class _BytesLog:
    """sys.stdout.buffer for code that writes bytes: decoded and passed to the text writer."""

    def __init__(self, text: "LogWriter") -> None:
        self.text = text

    def write(self, b: bytes) -> int:
        self.text.write(bytes(b).decode("utf-8", "replace"))
        return len(b)

    def flush(self) -> None:
        self.text.flush()

    def fileno(self) -> int:
        return self.text.fileno()


class LogWriter(io.TextIOBase):
    """Replaces sys.stdout/sys.stderr: each line becomes a log event of the prediction that wrote it.
    RUNNER has the Events as .events and says which prediction is writing with .current_id()."""

    def __init__(self, runner: Any, fd: int) -> None:
        super().__init__()
        self.runner = runner
        self.fd = fd
        self.lock = threading.RLock()
        self.pending: Dict[Optional[str], str] = {}
        self.buffer = _BytesLog(self)
        self.source = "stderr" if fd == 2 else "stdout"  # the log events' "source"

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:  # C-level writes go to the pipe the shim reads as logs
        return self.fd

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if not s:
            return 0
        pid = self.runner.current_id()
        with self.lock:
            text = self.pending.pop(pid, "") + s
            cut = text.rfind("\n") + 1
            if cut == 0 and len(text) >= LOG_LINE_MAX:
                cut = len(text)
            if cut:
                self.pending[pid] = text[cut:]
                out = text[:cut]
            else:
                self.pending[pid] = text
                out = ""
            if not self.pending[pid]:
                del self.pending[pid]
        if out:
            self.runner.events.emit({"type": "log", "id": pid, "text": out, "source": self.source})
        return len(s)

    def flush(self) -> None:
        self.flush_id(self.runner.current_id())

    def flush_id(self, pid: Optional[str]) -> None:
        with self.lock:
            out = self.pending.pop(pid, "")
        if out:
            self.runner.events.emit({"type": "log", "id": pid, "text": out, "source": self.source})


def private_fds(events_fd: int) -> Tuple[int, int]:
    """Move the request and event channels to descriptors the predictor's child processes do not
    inherit (an ffmpeg reading stdin would eat requests); stdin becomes /dev/null. Returns the request and
    event descriptors."""
    ev = os.dup(events_fd)  # dup() makes non-inheritable descriptors
    if events_fd > 2:
        os.close(events_fd)
    req = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    return req, ev

