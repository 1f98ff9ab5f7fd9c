# SPDX-License-Identifier: Apache-2.0
"""kiln_runner: runs a Cog predictor for kiln-shim, speaking the JSON-lines protocol of shim/PROTOCOL.md.

    python3 -u kiln_runner.py --predictor FILE.py:NAME [--concurrency N]     (in the project directory)

Requests come on stdin, events go to the fd named by KILN_RUNNER_FD (default 3), one JSON object a line.
Stdlib only: the predictor's own environment provides everything else.
"""

import argparse
import asyncio
import contextvars
import dataclasses
import datetime
import enum
import importlib.util
import inspect
import io
import json
import os
import pathlib
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Set

HERE = os.path.dirname(os.path.abspath(__file__))
# The runner's directory holds the bundled cog: it must not shadow a real cog installed in site-packages.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

CURRENT_ID: contextvars.ContextVar = contextvars.ContextVar("kiln_prediction_id", default=None)
LOG_LINE_MAX = 64 * 1024


def _load_schema_module() -> Any:
    spec = importlib.util.spec_from_file_location("kiln_schema", os.path.join(HERE, "kiln_schema.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kiln_schema"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


kiln_schema = _load_schema_module()


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
    """Replaces sys.stdout/sys.stderr: each line becomes a log event of the prediction that wrote it."""

    def __init__(self, runner: "Runner", fd: int) -> None:
        super().__init__()
        self.runner = runner
        self.fd = fd
        self.lock = threading.RLock()
        self.pending: Dict[Optional[str], str] = {}
        self.buffer = _BytesLog(self)

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
            self.runner.events.emit({"type": "log", "id": pid, "text": out})
        return len(s)

    def flush(self) -> None:
        self.flush_id(self.runner.current_id())

    def flush_id(self, pid: Optional[str]) -> None:
        with self.lock:
            out = self.pending.pop(pid, "")
        if out:
            self.runner.events.emit({"type": "log", "id": pid, "text": out})


class InputError(Exception):
    pass


def _format_exception(e: BaseException) -> str:
    """The traceback of E without the runner's own frames (and importlib's) at its top."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None and (
            tb.tb_frame.f_code.co_filename in (__file__, os.path.abspath(__file__))
            or tb.tb_frame.f_code.co_filename.startswith("<frozen ")):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(e), e, tb))


def _import_cog() -> Any:
    """The real cog when it is installed, else the bundled one (appended after site-packages)."""
    try:
        import cog  # noqa: PLC0415
        return cog
    except ImportError as e:
        if e.name != "cog":
            print(f"kiln: the installed cog cannot be imported ({e}); using kiln's bundled cog",
                  file=sys.__stderr__, flush=True)
            for name in [m for m in sys.modules if m == "cog" or m.startswith("cog.")]:
                del sys.modules[name]
    sys.path.append(HERE)
    import cog  # noqa: PLC0415
    return cog


def _cancel_classes(cog: Any) -> tuple:
    found: List[type] = []
    for modname in ("cog", "cog.exceptions", "cog.server.exceptions"):
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        cls = getattr(mod, "CancelationException", None)
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    if not found:
        found.append(type("CancelationException", (Exception,), {}))
    return tuple(found)


def _module_name(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    if (not stem.isidentifier() or stem in sys.modules or stem in sys.stdlib_module_names
            or stem in ("cog", "kiln_schema", "kiln_runner")):
        return "_kiln_predictor_" + "".join(c if c.isalnum() else "_" for c in stem)
    return stem


class Runner:
    def __init__(self, ref: str, concurrency: Optional[int], events: Events) -> None:
        self.ref = ref
        self.concurrency = concurrency
        self.events = events
        events.on_emitted = self._deferred_cancel
        self.lock = threading.Lock()
        self.running: Set[str] = set()
        self.queued: Set[str] = set()
        self.cancel_requested: Set[str] = set()
        self.cancelable: Optional[str] = None  # the synchronous prediction SIGUSR1 may interrupt
        self.pending_cancel = False
        self.tasks: Dict[str, asyncio.Task] = {}
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.cog: Any = None
        self.cancel_classes: tuple = ()
        self.fn: Any = None
        self.info: Any = None
        self.is_async = False
        self.stdout: Optional[LogWriter] = None
        self.stderr: Optional[LogWriter] = None

    # ---- logs ----

    def current_id(self) -> Optional[str]:
        pid = CURRENT_ID.get()
        if pid is not None:
            return pid
        with self.lock:
            if len(self.running) == 1:  # a thread the predictor started
                return next(iter(self.running))
        return None

    def flush_logs(self, pid: Optional[str]) -> None:
        for w in (self.stdout, self.stderr):
            if w is not None:
                w.flush_id(pid)

    def log(self, pid: Optional[str], text: str) -> None:
        self.flush_logs(pid)
        if text:
            self.events.emit({"type": "log", "id": pid, "text": text if text.endswith("\n") else text + "\n"})

    # ---- start ----

    def start(self) -> bool:
        """Schema, import, setup(): emits schema then ready, or setup_failed. True when ready."""
        try:
            path, name = kiln_schema.split_ref(self.ref)
            self.info = kiln_schema.analyze(path, name)
        except (ValueError, kiln_schema.SchemaError) as e:
            self.events.emit({"type": "setup_failed", "error": str(e)})
            return False
        self.events.emit({"type": "schema", "schema": kiln_schema.document(self.info)})
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.cog = _import_cog()
            self.cancel_classes = _cancel_classes(self.cog)
            modname = _module_name(path)
            spec = importlib.util.spec_from_file_location(modname, os.path.abspath(path))
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            obj = getattr(module, name)
            if inspect.isclass(obj):
                predictor = obj()
                self._setup(predictor)
                self.fn = getattr(predictor, self.info.method)
            else:
                self.fn = obj
            target = inspect.unwrap(self.fn)
            self.is_async = inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)
        except BaseException as e:  # noqa: BLE001 (setup may raise anything, SystemExit included)
            self.log(None, _format_exception(e))
            last = traceback.format_exception_only(e)[-1].strip()
            self.events.emit({"type": "setup_failed", "error": last})
            return False
        self.flush_logs(None)
        if self.concurrency and self.concurrency > 1 and not self.is_async:
            self.log(None, f"kiln: concurrency {self.concurrency} needs an async {self.info.method}(); "
                           "running one prediction at a time")
        self.events.emit({"type": "ready"})
        return True

    def _setup(self, predictor: Any) -> None:
        setup = getattr(predictor, "setup", None)
        if setup is None:
            return
        kwargs = {}
        try:
            params = inspect.signature(setup).parameters
        except (TypeError, ValueError):
            params = {}
        if "weights" in params:
            kwargs["weights"] = self._weights()
        result = setup(**kwargs)
        if inspect.isawaitable(result):
            self.loop.run_until_complete(result)  # type: ignore[union-attr]

    def _weights(self) -> Any:
        url = os.environ.get("COG_WEIGHTS")
        if url:
            return url
        if os.path.exists("weights"):
            return self.cog.Path("weights")
        return None

    # ---- inputs and outputs ----

    def convert_inputs(self, raw: Dict[str, Any], closers: List[Any]) -> Dict[str, Any]:
        if not isinstance(raw, dict):
            raise InputError("input must be an object")
        for name in raw:
            if name not in self.info.inputs:
                raise InputError(f"unexpected input '{name}'")
        kwargs = {}
        for name, f in self.info.inputs.items():
            if name in raw:
                value = raw[name]
            else:
                try:
                    value = f.value_when_missing()
                except KeyError:
                    raise InputError(f"missing required input '{name}'") from None
            kwargs[name] = self._convert(f.type, value, closers)
        return kwargs

    def _convert(self, ft: Any, value: Any, closers: List[Any]) -> Any:
        if value is None:
            return None
        if ft.repetition in (kiln_schema.REPEATED, kiln_schema.OPTIONAL_REPEATED):
            items = value if isinstance(value, list) else [value]
            return [self._convert_one(ft.primitive, v, closers) for v in items]
        return self._convert_one(ft.primitive, value, closers)

    def _convert_one(self, p: str, v: Any, closers: List[Any]) -> Any:
        if p == kiln_schema.PATH:
            return self.cog.Path(v)
        if p == kiln_schema.FILE:
            f = open(v, "rb")  # noqa: SIM115 (closed after the prediction)
            closers.append(f)
            return f
        if p == kiln_schema.SECRET:
            return self.cog.Secret(v)
        if p == kiln_schema.FLOAT and isinstance(v, int) and not isinstance(v, bool):
            return float(v)
        if p == kiln_schema.INTEGER and isinstance(v, float) and v.is_integer():
            return int(v)
        return v

    def encode(self, v: Any, depth: int = 0) -> Any:
        """An output value as JSON; files become {"$path": "/abs/file"}."""
        if depth > 64:
            raise ValueError("output nests too deeply")
        if v is None or isinstance(v, (bool, int, float, str)):
            if isinstance(v, enum.Enum):
                return self.encode(v.value, depth + 1)
            return v
        if isinstance(v, (pathlib.PurePath, os.PathLike)):
            return {"$path": os.path.abspath(os.fspath(v))}
        if isinstance(v, io.IOBase):
            return {"$path": self._file_output(v)}
        if isinstance(v, dict):
            return {str(k): self.encode(x, depth + 1) for k, x in v.items()}
        if isinstance(v, (list, tuple, set, frozenset)) or inspect.isgenerator(v):
            return [self.encode(x, depth + 1) for x in v]
        if isinstance(v, enum.Enum):
            return self.encode(v.value, depth + 1)
        if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
            return v.isoformat()
        if callable(getattr(v, "get_secret_value", None)):
            return v.get_secret_value()
        if callable(getattr(v, "model_dump", None)):  # pydantic v2 and cog.BaseModel
            return self.encode(v.model_dump(), depth + 1)
        if hasattr(v, "__fields__") and callable(getattr(v, "dict", None)):  # pydantic v1
            return self.encode(v.dict(), depth + 1)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: self.encode(getattr(v, f.name), depth + 1) for f in dataclasses.fields(v)}
        if type(v).__module__.split(".")[0] == "numpy" and callable(getattr(v, "tolist", None)):
            return self.encode(v.tolist(), depth + 1)
        raise TypeError(f"output of type {type(v).__name__} cannot be encoded as JSON")

    def _file_output(self, f: io.IOBase) -> str:
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

    def _emit_output(self, pid: str, item: Any) -> None:
        self.events.emit({"type": "output", "id": pid, "value": self.encode(item)})

    def _finish(self, pid: str, started: float, output: Any, streamed: bool) -> None:
        event: Dict[str, Any] = {"type": "done", "id": pid}
        if not streamed:
            event["output"] = self.encode(output)
        event["predict_time"] = round(time.monotonic() - started, 6)
        self.flush_logs(pid)
        self.events.emit(event)

    def _failed(self, pid: str, e: BaseException) -> None:
        self.log(pid, _format_exception(e))
        self.events.emit({"type": "failed", "id": pid, "error": str(e) or type(e).__name__})

    def _canceled(self, pid: str) -> None:
        self.flush_logs(pid)
        self.events.emit({"type": "canceled", "id": pid})

    # ---- synchronous predictors: one at a time, in the main thread ----

    def _on_sigusr1(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        if self.cancelable is None:
            return
        if self.events.in_emit:  # never cut an event line in half: raise once it is written
            self.pending_cancel = True
            return
        self.cancelable = None
        raise self.cancel_classes[0]()

    def _deferred_cancel(self) -> None:
        if self.pending_cancel and self.cancelable is not None:
            self.pending_cancel = False
            self.cancelable = None
            raise self.cancel_classes[0]()
        self.pending_cancel = False

    def run_sync(self, req: Dict[str, Any]) -> None:
        pid = req["id"]
        with self.lock:
            self.queued.discard(pid)
            if pid in self.cancel_requested:
                self.cancel_requested.discard(pid)
                canceled_early = True
            else:
                canceled_early = False
                self.running.add(pid)
        if canceled_early:
            self._canceled(pid)
            return
        token = CURRENT_ID.set(pid)
        closers: List[Any] = []
        outcome: Any = None
        started = time.monotonic()
        try:
            self.events.emit({"type": "started", "id": pid})
            try:
                kwargs = self.convert_inputs(req.get("input") or {}, closers)
                self.cancelable = pid
                if pid in self.cancel_requested:  # canceled before it began
                    self.cancelable = None
                    raise self.cancel_classes[0]()
                started = time.monotonic()
                result = self.fn(**kwargs)
                streamed = False
                if inspect.isawaitable(result):
                    result = self.loop.run_until_complete(result)  # type: ignore[union-attr]
                if _is_stream(result):
                    streamed = True
                    for item in result:
                        self._emit_output(pid, item)
                self.cancelable = None
                if pid in self.cancel_requested:  # the predictor swallowed the exception
                    raise self.cancel_classes[0]()
                outcome = ("done", result, streamed)
            except self.cancel_classes:
                self.cancelable = None
                outcome = ("canceled",)
            except BaseException as e:  # noqa: BLE001 (SystemExit and KeyboardInterrupt fail it too)
                self.cancelable = None
                outcome = ("failed", e)
        except self.cancel_classes:  # a late signal, between the handlers above
            self.cancelable = None
            outcome = ("canceled",)
        finally:
            self.cancelable = None
            for c in closers:
                try:
                    c.close()
                except Exception:  # noqa: BLE001
                    pass
        try:
            self._report(pid, outcome, started)
        finally:
            with self.lock:
                self.running.discard(pid)
                self.cancel_requested.discard(pid)
            CURRENT_ID.reset(token)

    def _report(self, pid: str, outcome: tuple, started: float) -> None:
        if outcome[0] == "done":
            try:
                self._finish(pid, started, outcome[1], outcome[2])
            except (TypeError, ValueError) as e:  # the output cannot be encoded
                self._failed(pid, e)
        elif outcome[0] == "canceled":
            self._canceled(pid)
        else:
            self._failed(pid, outcome[1])

    def serve_sync(self, requests: "queue.Queue[Dict[str, Any]]") -> None:
        while True:
            req = requests.get()
            if req.get("type") == "shutdown":
                return
            self.run_sync(req)

    def cancel_sync(self, pid: str) -> None:
        """Called by the reader thread."""
        with self.lock:
            if pid in self.running:
                self.cancel_requested.add(pid)
                if self.cancelable == pid:
                    os.kill(os.getpid(), signal.SIGUSR1)
            elif pid in self.queued:
                self.cancel_requested.add(pid)

    # ---- async predictors: concurrently, on the event loop ----

    async def run_async(self, req: Dict[str, Any], sem: Optional[asyncio.Semaphore]) -> None:
        pid = req["id"]
        CURRENT_ID.set(pid)
        outcome: Any = None
        closers: List[Any] = []
        started = time.monotonic()
        try:
            if sem is not None:
                await sem.acquire()
            try:
                with self.lock:
                    self.queued.discard(pid)
                    self.running.add(pid)
                self.events.emit({"type": "started", "id": pid})
                try:
                    kwargs = self.convert_inputs(req.get("input") or {}, closers)
                    started = time.monotonic()
                    result = self.fn(**kwargs)
                    streamed = False
                    if inspect.isawaitable(result):
                        result = await result
                    if inspect.isasyncgen(result) or hasattr(result, "__anext__"):
                        streamed = True
                        async for item in result:
                            self._emit_output(pid, item)
                    elif _is_stream(result):
                        streamed = True
                        for item in result:
                            self._emit_output(pid, item)
                    outcome = ("done", result, streamed)
                except (asyncio.CancelledError, *self.cancel_classes):
                    outcome = ("canceled",)
                except Exception as e:  # noqa: BLE001
                    outcome = ("failed", e)
            finally:
                if sem is not None:
                    sem.release()
        except asyncio.CancelledError:  # canceled while waiting for a slot
            outcome = ("canceled",)
        finally:
            for c in closers:
                try:
                    c.close()
                except Exception:  # noqa: BLE001
                    pass
        try:
            self._report(pid, outcome, started)
        finally:
            with self.lock:
                self.running.discard(pid)
                self.queued.discard(pid)
            self.tasks.pop(pid, None)

    async def serve_async(self, requests: "asyncio.Queue[Dict[str, Any]]") -> None:
        sem = asyncio.Semaphore(self.concurrency) if self.concurrency and self.concurrency > 0 else None
        while True:
            req = await requests.get()
            kind = req.get("type")
            if kind == "shutdown":
                break
            if kind == "cancel":
                task = self.tasks.get(req.get("id"))
                if task is not None:
                    task.cancel()
                continue
            self.tasks[req["id"]] = asyncio.ensure_future(self.run_async(req, sem))
        while self.tasks:
            await asyncio.gather(*list(self.tasks.values()), return_exceptions=True)

    # ---- requests ----

    def read_requests(self, stream: Any, put: Callable[[Dict[str, Any]], None]) -> None:
        """Reader thread: parse request lines; cancel acts at once, the rest go to PUT in order."""
        for line in stream:
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
                if not isinstance(req, dict) or not isinstance(req.get("type"), str):
                    raise ValueError("not an object with a type")
                if req["type"] in ("predict", "cancel") and not isinstance(req.get("id"), str):
                    raise ValueError("no id")
            except ValueError as e:
                print(f"kiln: ignoring a bad request ({e}): {line[:200]!r}", file=sys.__stderr__, flush=True)
                continue
            if req["type"] == "predict":
                with self.lock:
                    self.queued.add(req["id"])
                put(req)
            elif req["type"] == "cancel":
                if self.is_async:
                    put(req)
                else:
                    self.cancel_sync(req["id"])
            elif req["type"] == "shutdown":
                put(req)
                return
            else:
                print(f"kiln: ignoring an unknown request type '{req['type']}'", file=sys.__stderr__, flush=True)
        put({"type": "shutdown"})

    def serve(self, stream: Any) -> None:
        if self.is_async:
            aq: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()

            def put(req: Dict[str, Any]) -> None:
                self.loop.call_soon_threadsafe(aq.put_nowait, req)  # type: ignore[union-attr]

            threading.Thread(target=self.read_requests, args=(stream, put), daemon=True,
                             name="kiln-requests").start()
            self.loop.run_until_complete(self.serve_async(aq))  # type: ignore[union-attr]
        else:
            sq: "queue.Queue[Dict[str, Any]]" = queue.Queue()
            threading.Thread(target=self.read_requests, args=(stream, sq.put), daemon=True,
                             name="kiln-requests").start()
            self.serve_sync(sq)


def _is_stream(result: Any) -> bool:
    if inspect.isgenerator(result):
        return True
    return (hasattr(result, "__next__") and hasattr(result, "__iter__")
            and not isinstance(result, (str, bytes, dict, list, tuple, io.IOBase)))


def _private_fds(events_fd: int) -> tuple:
    """Move the request and event channels to descriptors the predictor's child processes do not
    inherit (an ffmpeg reading stdin would eat requests); stdin becomes /dev/null."""
    ev = os.dup(events_fd)  # dup() makes non-inheritable descriptors
    if events_fd > 2:
        os.close(events_fd)
    req = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    return req, ev


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="kiln_runner.py", description="Run a Cog predictor for kiln-shim.")
    parser.add_argument("--predictor", required=True, metavar="FILE.py:NAME")
    parser.add_argument("--concurrency", type=int, default=None, metavar="N",
                        help="predictions run at once by an async predictor (default: $KILN_CONCURRENCY, "
                             "else as many as the shim sends)")
    args = parser.parse_args(argv)
    concurrency = args.concurrency
    if concurrency is None and os.environ.get("KILN_CONCURRENCY", "").isdigit():
        concurrency = int(os.environ["KILN_CONCURRENCY"])
    fd_text = os.environ.get("KILN_RUNNER_FD", "3")
    try:
        fd = int(fd_text)
        os.fstat(fd)
    except (ValueError, OSError):
        print(f"kiln_runner: KILN_RUNNER_FD={fd_text} is not an open file descriptor", file=sys.stderr)
        return 2
    req_fd, ev_fd = _private_fds(fd)
    events = Events(ev_fd)
    runner = Runner(args.predictor, concurrency, events)
    signal.signal(signal.SIGUSR1, runner._on_sigusr1)  # cancel; ignored when nothing can be canceled
    sys.path.insert(0, os.getcwd())  # the project, as Cog has /src
    runner.stdout = LogWriter(runner, 1)
    runner.stderr = LogWriter(runner, 2)
    sys.stdout, sys.stderr = runner.stdout, runner.stderr
    code = 0
    if runner.start():
        with os.fdopen(req_fd, "r", encoding="utf-8", errors="replace") as stream:
            runner.serve(stream)
    else:
        code = 1
    for w in (runner.stdout, runner.stderr):
        with w.lock:
            ids = list(w.pending)
        for pid in ids:
            w.flush_id(pid)
    # Threads the predictor left running must not keep the process alive.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
