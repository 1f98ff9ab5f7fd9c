# SPDX-License-Identifier: Apache-2.0
"""kiln_runner: runs a Cog predictor for kiln-shim, speaking the JSON-lines protocol of shim/PROTOCOL.md.

    python3 -u kiln_runner.py --predictor FILE.py:NAME [--concurrency N]     (in the project directory)

Requests come on stdin, events go to the fd named by KILN_RUNNER_FD (default 3), one JSON object a line.
Stdlib only: the predictor's own environment provides everything else. The protocol's plumbing is in
kiln_runner_protocol, the conversion of inputs and outputs in kiln_runner_values, the predictor's
description in kiln_schema.
"""

import argparse
import asyncio
import contextvars
import importlib.util
import inspect
import os
import platform
import queue
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Set

HERE = os.path.dirname(os.path.abspath(__file__))
# kiln's own modules come from the runner's directory; then it leaves sys.path, for it also holds the bundled
# cog, which must not shadow a real cog installed in site-packages.
sys.path.insert(0, HERE)
import kiln_runner_health  # noqa: E402
import kiln_runner_protocol  # noqa: E402
import kiln_runner_values  # noqa: E402
import kiln_schema  # noqa: E402
from kiln_runner_protocol import Events, LogWriter, parse_request, private_fds  # noqa: E402
from kiln_runner_values import check_output, convert_inputs, encode, is_stream  # noqa: E402

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

CURRENT_ID: contextvars.ContextVar = contextvars.ContextVar("kiln_prediction_id", default=None)
# The runner's own source files, whose frames tracebacks shown to the user leave out.
OWN_FILES = {__file__, os.path.abspath(__file__), kiln_runner_protocol.__file__, kiln_runner_values.__file__,
             kiln_runner_health.__file__}


def _format_exception(e: BaseException) -> str:
    """The traceback of E without the runner's own frames (and importlib's) at its top."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None and (
            tb.tb_frame.f_code.co_filename in OWN_FILES
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


def _package_module(path: str) -> Optional[str]:
    """The dotted name ("pkg.predict") of a predictor in a package of the project (a directory below the
    working directory with an __init__.py), for its relative imports; None for any other file."""
    rel = os.path.relpath(os.path.abspath(path), os.getcwd())
    parts = rel[:-3].split(os.sep) if rel.endswith(".py") else []
    if len(parts) < 2 or not all(p.isidentifier() for p in parts) or parts[0] in sys.modules:
        return None
    if not os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(path)), "__init__.py")):
        return None
    return ".".join(parts)


class Runner:
    def __init__(self, ref: str, concurrency: Optional[int], events: Events,
                 train_ref: Optional[str] = None) -> None:
        self.ref = ref
        self.train_ref = train_ref  # train: the trainer, run for "train" requests
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
        self.healthcheck: Any = None
        self.metrics: Dict[str, Dict[str, Any]] = {}  # a finished prediction's, until its end is sent
        self.info: Any = None
        self.train_fn: Any = None
        self.modules: Dict[str, Any] = {}  # imported project files, by absolute path
        self.train_info: Any = None
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

    def flush_all_logs(self) -> None:
        """Emit every prediction's unfinished log line."""
        for w in (self.stdout, self.stderr):
            if w is not None:
                with w.lock:
                    ids = list(w.pending)
                for pid in ids:
                    w.flush_id(pid)

    def log(self, pid: Optional[str], text: str) -> None:
        self.flush_logs(pid)
        if text:
            self.events.emit({"type": "log", "id": pid, "text": text if text.endswith("\n") else text + "\n",
                              "source": "stderr"})

    # ---- start ----

    def start(self) -> bool:
        """Schema, import, setup(): emits schema then ready, or setup_failed. True when ready."""
        try:
            path, name = kiln_schema.split_ref(self.ref)
            self.info = kiln_schema.analyze(path, name)
            doc = kiln_schema.document(self.info)
            if self.train_ref is not None:
                tpath, tname = kiln_schema.split_ref(self.train_ref)
                self.train_info = kiln_schema.analyze(tpath, tname, ("train",))
                doc = kiln_schema.add_training(doc, self.train_info)
        except (ValueError, kiln_schema.SchemaError) as e:
            self.events.emit({"type": "setup_failed", "error": str(e)})
            return False
        self.events.emit({"type": "schema", "schema": doc})
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.cog = _import_cog()
            version = getattr(self.cog, "__version__", None)
            self.events.emit({"type": "versions", "cog": version if isinstance(version, str) else None,
                              "python": platform.python_version()})
            self.cancel_classes = _cancel_classes(self.cog)
            obj = getattr(self._import(path), name)
            if inspect.isclass(obj):
                predictor = obj()
                self._setup(predictor)
                self.fn = getattr(predictor, self.info.method)
                self.healthcheck = kiln_runner_health.find(predictor)
            else:
                self.fn = obj
            if self.train_info is not None:
                tobj = getattr(self._import(self.train_info.path), self.train_info.name)
                if inspect.isclass(tobj):
                    trainer = tobj()
                    self._setup(trainer)
                    tobj = getattr(trainer, self.train_info.method)
                self.train_fn = tobj
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
        self.events.emit({"type": "ready", "healthcheck": self.healthcheck is not None,
                          "streaming": bool(getattr(self.info, "streaming", False))})
        return True

    def _import(self, path: str) -> Any:
        """The module of PATH, imported once (a trainer in the predictor's file shares its module)."""
        full = os.path.abspath(path)
        if full in self.modules:
            return self.modules[full]
        package = _package_module(path)
        if package:  # pkg/predict.py, with its relative imports (from .types import Thing)
            module = importlib.import_module(package)
        else:
            modname = _module_name(path)
            spec = importlib.util.spec_from_file_location(modname, full)
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        self.modules[full] = module
        return module

    def _target(self, req: Dict[str, Any]) -> tuple:
        """The function a request runs and its description: the trainer for a "train" request."""
        if req.get("type") == "train":
            if self.train_fn is None:
                raise ValueError("this model has no trainer (train: in kiln.yaml)")
            return self.train_fn, self.train_info
        return self.fn, self.info

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

    # ---- outcomes ----

    def _emit_output(self, pid: str, item: Any) -> None:
        value, files = encode(item)
        event: Dict[str, Any] = {"type": "output", "id": pid, "value": value}
        if files:
            event["files"] = files
        self.events.emit(event)

    def _finish(self, pid: str, started: float, output: Any, streamed: bool, info: Any) -> None:
        event: Dict[str, Any] = {"type": "done", "id": pid}
        if not streamed:
            check_output(info.output, output)
            event["output"], files = encode(output)
            if files:
                event["files"] = files
        event["predict_time"] = round(time.monotonic() - started, 6)
        self.flush_logs(pid)
        self._end(event)

    def _failed(self, pid: str, e: BaseException) -> None:
        self.log(pid, _format_exception(e))
        self._end({"type": "failed", "id": pid, "error": str(e) or type(e).__name__})

    def _canceled(self, pid: str) -> None:
        self.flush_logs(pid)
        self._end({"type": "canceled", "id": pid})

    def _end(self, event: Dict[str, Any]) -> None:
        """Emit a prediction's last event with the metrics it recorded (none: no "metrics")."""
        metrics = self.metrics.pop(event["id"], None)
        if metrics:
            event["metrics"] = metrics
        self.events.emit(event)

    # ---- the prediction's scope (cog.current_scope()): bundled cog only ----

    def _enter_scope(self, req: Dict[str, Any], sync: bool) -> Any:
        mod = getattr(self.cog, "scope", None)
        if mod is None or not hasattr(mod, "_enter"):
            return None
        ctx = req.get("context")
        pid = req["id"]

        def notify(metrics: Dict[str, Any], change: Dict[str, Any]) -> None:  # live (PROTOCOL.md)
            self.events.emit({"type": "metrics", "id": pid, "metrics": metrics, "change": change})

        return mod._enter(ctx if isinstance(ctx, dict) else None, sync, notify)

    def _exit_scope(self, pid: str, entered: Any) -> None:
        if entered is not None:
            try:
                self.metrics[pid] = self.cog.scope._exit(entered)
            except Exception as e:  # noqa: BLE001 (never lose the prediction's end over its metrics)
                self.log(pid, f"kiln: the prediction's metrics are lost: {e}")

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
        scope = self._enter_scope(req, True)
        closers: List[Any] = []
        outcome: Any = None
        started = time.monotonic()
        try:
            self.events.emit({"type": "started", "id": pid})
            try:
                fn, info = self._target(req)
                kwargs = convert_inputs(info, self.cog, req.get("input") or {}, closers)
                self.cancelable = pid
                if pid in self.cancel_requested:  # canceled before it began
                    self.cancelable = None
                    raise self.cancel_classes[0]()
                started = time.monotonic()
                result = fn(**kwargs)
                streamed = False
                if inspect.isawaitable(result):
                    result = self.loop.run_until_complete(result)  # type: ignore[union-attr]
                if is_stream(result):
                    streamed = True
                    for item in result:
                        self._emit_output(pid, item)
                self.cancelable = None
                if pid in self.cancel_requested:  # the predictor swallowed the exception
                    raise self.cancel_classes[0]()
                outcome = ("done", result, streamed, info)
            except self.cancel_classes:
                self.cancelable = None
                outcome = ("canceled",)
            except SystemExit as e:
                self.cancelable = None
                outcome = ("exit", e)
            except BaseException as e:  # noqa: BLE001 (KeyboardInterrupt fails it too)
                self.cancelable = None
                outcome = ("failed", e)
        except self.cancel_classes:  # a late signal, between the handlers above
            self.cancelable = None
            outcome = ("canceled",)
        finally:
            self.cancelable = None
            self._exit_scope(pid, scope)
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
                self._finish(pid, started, outcome[1], outcome[2], outcome[3])
            except Exception as e:  # noqa: BLE001  # the output is not of its type, or cannot be encoded:
                self._failed(pid, e)  # this prediction fails, the worker goes on
        elif outcome[0] == "canceled":
            self._canceled(pid)
        elif outcome[0] == "exit":
            self._exit_worker(pid, outcome[1])
        else:
            self._failed(pid, outcome[1])

    def _exit_worker(self, pid: str, e: SystemExit) -> None:
        """predict() called sys.exit(): as in Cog, the worker ends there, with its status (the shim then fails
        the prediction, "Worker crashed", and is DEFUNCT). Its logs go first."""
        self.flush_all_logs()
        code = e.code
        if code is not None and not isinstance(code, int):
            self.log(pid, str(code))  # sys.exit("message") prints it and exits with 1, as Python does
            code = 1
        os._exit(code or 0)

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
        scope = self._enter_scope(req, False)
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
                    fn, info = self._target(req)
                    kwargs = convert_inputs(info, self.cog, req.get("input") or {}, closers)
                    started = time.monotonic()
                    result = fn(**kwargs)
                    streamed = False
                    if inspect.isawaitable(result):
                        result = await result
                    if inspect.isasyncgen(result) or hasattr(result, "__anext__"):
                        streamed = True
                        async for item in result:
                            self._emit_output(pid, item)
                    elif is_stream(result):
                        streamed = True
                        for item in result:
                            self._emit_output(pid, item)
                    outcome = ("done", result, streamed, info)
                except (asyncio.CancelledError, *self.cancel_classes):
                    outcome = ("canceled",)
                except SystemExit as e:
                    outcome = ("exit", e)
                except Exception as e:  # noqa: BLE001
                    outcome = ("failed", e)
            finally:
                if sem is not None:
                    sem.release()
        except asyncio.CancelledError:  # canceled while waiting for a slot
            outcome = ("canceled",)
        finally:
            self._exit_scope(pid, scope)
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
                req = parse_request(line)
            except ValueError as e:
                print(f"kiln: ignoring a bad request ({e}): {line[:200]!r}", file=sys.__stderr__, flush=True)
                continue
            if req["type"] in ("predict", "train"):
                with self.lock:
                    self.queued.add(req["id"])
                put(req)
            elif req["type"] == "cancel":
                if self.is_async:
                    put(req)
                else:
                    self.cancel_sync(req["id"])
            elif req["type"] == "healthcheck":
                threading.Thread(target=self.run_healthcheck, args=(req.get("id"),), daemon=True,
                                 name="kiln-healthcheck").start()
            elif req["type"] == "shutdown":
                put(req)
                return
            else:
                print(f"kiln: ignoring an unknown request type '{req['type']}'", file=sys.__stderr__, flush=True)
        put({"type": "shutdown"})

    def run_healthcheck(self, hid: Any) -> None:
        """Run the predictor's healthcheck() (in a thread of its own); answer with healthcheck_result."""
        error = None
        if self.healthcheck is not None:
            loop = self.loop if self.is_async else None
            error = kiln_runner_health.run(self.healthcheck, loop)
        self.events.emit({"type": "healthcheck_result", "id": hid, "error": error})

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


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="kiln_runner.py", description="Run a Cog predictor for kiln-shim.")
    parser.add_argument("--predictor", required=True, metavar="FILE.py:NAME")
    parser.add_argument("--trainer", default=None, metavar="FILE.py:NAME",
                        help="the trainer (train:), run for \"train\" requests")
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
    req_fd, ev_fd = private_fds(fd)
    events = Events(ev_fd)
    runner = Runner(args.predictor, concurrency, events, args.trainer)
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
    runner.flush_all_logs()
    # Threads the predictor left running must not keep the process alive.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
