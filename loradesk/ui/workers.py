"""Long jobs off the GUI thread: QObject workers moved to their own QThread.

A worker calls core functions and only emits signals; it never touches a widget. Every exception
becomes a ``failed(message, traceback)`` signal, and ``done`` is always the last thing a worker emits.
A :class:`Job` owns the worker's thread: the thread quits as soon as the worker is done, and
:meth:`Job.shutdown` asks the worker to stop and waits for the thread, so no thread outlives its owner.

Heavy modules (torch, transformers, our ``core.training`` and ``core.generation``) are imported inside
the ``work`` methods, on the worker thread, so the window appears before the ML stack loads.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot

from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.dataset import Dataset, Example


def error_message(exc: BaseException) -> str:
    """A one-line message for the user: the exception text, or its type when it has none.

    A disk-side write failure (full, read-only, no permission) reads ``<file>: no space left on device``.
    """
    from loradesk.core.fileio import storage_error

    text = str(storage_error(exc) or exc).strip()
    return text if text else type(exc).__name__


class Worker(QObject):
    """Base worker: subclasses implement :meth:`work`; :meth:`run` turns exceptions into ``failed``."""

    failed = Signal(str, str)  # message, traceback
    done = Signal()  # always emitted last, success or not

    def __init__(self) -> None:
        super().__init__()
        self.stop_event = threading.Event()

    def request_stop(self) -> None:
        """Ask the work to stop at its next check (safe to call from any thread)."""
        self.stop_event.set()

    @property
    def stop_requested(self) -> bool:
        return self.stop_event.is_set()

    @Slot()
    def run(self) -> None:
        try:
            self.work()
        except Exception as exc:
            with contextlib.suppress(RuntimeError):  # the C++ side is gone (interpreter shutting down)
                self.failed.emit(error_message(exc), traceback.format_exc())
        finally:
            with contextlib.suppress(RuntimeError):
                # Hand the object back to the GUI thread so it is deleted there once the job is dropped.
                app = QCoreApplication.instance()
                if app is not None:
                    self.moveToThread(app.thread())
                self.done.emit()

    def work(self) -> None:
        raise NotImplementedError


#: Every job whose thread is running, so the app can wait for them before it exits (see :func:`wait_for_jobs`).
_RUNNING: set[Job] = set()


def wait_for_jobs(timeout_ms: int = 120_000) -> bool:
    """Ask every running job to stop and wait for its thread, ``timeout_ms`` in all; True when all have ended.

    Called when the event loop has ended: a QThread destroyed while it runs aborts the process (a model
    conversion or a recovery write may still be finishing after the window closed).
    """
    deadline = time.monotonic() + timeout_ms / 1000
    for job in list(_RUNNING):
        job.stop()
    for job in list(_RUNNING):
        if not job.wait(max(0, int((deadline - time.monotonic()) * 1000))):
            return False
        _RUNNING.discard(job)
    return True


class Job(QObject):
    """One worker on its own QThread. ``finished`` fires on the GUI thread once the thread has ended."""

    finished = Signal()

    def __init__(self, worker: Worker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName(type(worker).__name__)
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.run)
        # Direct: quit from the worker thread itself, so a GUI thread blocked in wait() still sees it end.
        worker.done.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)
        self.thread.finished.connect(self.finished)
        self.thread.finished.connect(self._forget)

    def start(self) -> None:
        _RUNNING.add(self)
        self.thread.start()

    @Slot()
    def _forget(self) -> None:
        _RUNNING.discard(self)

    def stop(self) -> None:
        self.worker.request_stop()

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the thread has ended (``-1``: no limit); True when it has."""
        if not self.thread.isRunning():
            return True
        return self.thread.wait() if timeout_ms < 0 else self.thread.wait(max(0, int(timeout_ms)))

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop the worker and wait for its thread; True when the thread has ended."""
        self.stop()
        return self.wait(timeout_ms)


# --- training --------------------------------------------------------------------------------------------
class SignalSink:
    """The ``core.training.Sink`` of a :class:`TrainWorker`: every report becomes a signal."""

    def __init__(self, worker: TrainWorker) -> None:
        self._worker = worker

    def status(self, text: str) -> None:
        self._worker.status.emit(text)

    def progress(self, p: Any) -> None:
        self._worker.progress.emit(p)

    def log(self, text: str) -> None:
        self._worker.log.emit(text)


class TrainWorker(Worker):
    """Runs ``core.training.run`` on a dataset snapshot; stop keeps a usable adapter."""

    status = Signal(str)
    progress = Signal(object)  # core.training.TrainProgress
    log = Signal(str)
    device = Signal(str)
    finished = Signal(object)  # core.training.RunResult
    out_of_memory = Signal(object, str)  # the smaller-batch RunConfig to retry with, the failed run folder

    def __init__(self, config: RunConfig, dataset: Dataset | Sequence[Example], runs_dir: Path | None = None,
                 resume_from: Path | None = None, retry_of: Path | None = None) -> None:
        """``retry_of``: a run that ran out of memory; its rows are trained again with ``config``."""
        super().__init__()
        self.config = config
        self.dataset = dataset
        self.runs_dir = runs_dir
        self.resume_from = resume_from
        self.retry_of = retry_of

    def work(self) -> None:
        self.status.emit("Loading model…")
        from loradesk.core.ml_stack import import_stack

        import_stack()  # waits for the start-up import on another thread, if it is still running
        from loradesk.core import models, training

        self.device.emit(models.device_description())
        try:
            if self.retry_of is not None:
                result = training.retry_smaller(self.config, self.retry_of, SignalSink(self), self.stop_event,
                                                self.runs_dir)
            else:
                result = training.run(self.config, self.dataset, SignalSink(self), self.stop_event,
                                      self.runs_dir, self.resume_from)
        except training.TrainingStopped as exc:  # stopped while the model loaded: not a failure
            self.status.emit(str(exc))
            return
        except training.OutOfMemory as exc:  # announced before ``failed``, which the base class emits
            if exc.retry_config is not None:
                self.out_of_memory.emit(exc.retry_config, str(exc.run_dir))
            raise
        self.finished.emit(result)


# --- generation ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationRequest:
    """What to answer with: a run folder (its base model + adapter), or a base model alone."""

    run_dir: Path | None = None
    model: ModelSettings | None = None  # used when there is no run: the base model only
    use_chat_template: bool = True  # likewise (a run brings its own setting)
    settings: Any = None  # core.generation.GenerationSettings; None: its defaults


class AnswererCache:
    """Keeps one loaded ``Answerer``, keyed on ``(model_dir, adapter_dir)``, across requests.

    Only worker threads use it; a lock makes sure one request at a time holds the model.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, ...] | None = None
        self._answerer: Any = None
        self.loads = 0  # how many times a model was actually loaded

    @property
    def key(self) -> tuple[str, ...] | None:
        return self._key

    @contextlib.contextmanager
    def get(self, request: GenerationRequest, status: Callable[[str], None] | None = None) -> Iterator[Any]:
        """Yield the ``Answerer`` for the request, loading a model only when the key changed."""
        def report(text: str, fraction: float | None = None) -> None:
            if status is not None:
                status(text if fraction is None else f"{text} {fraction:.0%}")

        with self._lock:
            key, load = self._plan(request, report)
            if key != self._key or self._answerer is None:
                self._answerer, self._key = None, None  # free the old model before loading the next
                report("Loading model…")
                self._answerer = load()
                self._key = key
                self.loads += 1
            yield self._answerer

    @staticmethod
    def _plan(request: GenerationRequest,
              report: Callable[[str, float | None], None]) -> tuple[tuple[str, ...], Callable[[], Any]]:
        """The cache key for ``request`` and a function that loads its Answerer."""
        from loradesk.core.ml_stack import import_stack

        import_stack()
        from loradesk.core.generation import Answerer

        if request.run_dir is not None:
            from loradesk.core.runs import read_run

            run_dir = Path(request.run_dir)
            info = read_run(run_dir)
            adapter = run_dir / "adapter_model.safetensors"
            stamp = str(adapter.stat().st_mtime_ns) if adapter.is_file() else ""
            key = (str(Path(info.base_model_dir).resolve()), str(run_dir.resolve()), stamp)  # resume rewrites it
            return key, functools.partial(Answerer.from_run, run_dir)
        from loradesk.core.models import resolve_model

        model = request.model or ModelSettings()
        model_dir = Path(resolve_model(model, report))
        key = (str(model_dir.resolve()), "", str(request.use_chat_template))
        return key, functools.partial(Answerer, model_dir, None, use_chat_template=request.use_chat_template,
                                      trust_remote_code=model.trust_remote_code)

    def clear(self) -> None:
        with self._lock:
            self._answerer, self._key = None, None


def _settings(request: GenerationRequest) -> Any:
    from loradesk.core.generation import GenerationSettings

    return request.settings if request.settings is not None else GenerationSettings()


class GenerateWorker(Worker):
    """Answers one prompt with the base model, then with the tuned one, streaming the text."""

    status = Signal(str)
    token = Signal(str, str)  # side ("base" | "tuned"), text piece
    answered = Signal(str, str)  # side, whole answer
    finished = Signal(object)  # {"base": str, "tuned": str | None, "stopped": bool, "seconds": float}

    def __init__(self, cache: AnswererCache, request: GenerationRequest, prompt: str) -> None:
        super().__init__()
        self.cache = cache
        self.request = request
        self.prompt = prompt

    def work(self) -> None:
        started = time.perf_counter()
        settings = _settings(self.request)
        answers: dict[str, str | None] = {"base": None, "tuned": None}
        with self.cache.get(self.request, self.status.emit) as answerer:
            sides = ["base", "tuned"] if answerer.has_adapter else ["base"]
            for side in sides:
                if self.stop_requested:
                    break
                self.status.emit(f"Answering ({side})…")
                text = answerer.answer(self.prompt, tuned=side == "tuned", settings=settings,
                                       on_text=_Emitter(self.token, side), stop=self.stop_event)
                answers[side] = text
                self.answered.emit(side, text)
        self.finished.emit({**answers, "stopped": self.stop_requested,
                            "seconds": time.perf_counter() - started})


class _Emitter:
    """``on_text`` callback that emits ``signal(side, piece)``."""

    def __init__(self, signal: Any, side: str) -> None:
        self._signal = signal
        self._side = side

    def __call__(self, piece: str) -> None:
        if piece:
            self._signal.emit(self._side, piece)


@dataclass
class RowResult:
    """One held-out question answered by both models."""

    index: int
    prompt: str
    expected: str
    base: str
    tuned: str | None
    base_ok: bool
    tuned_ok: bool | None


@dataclass
class CompareSummary:
    total: int
    answered: int
    base_correct: int
    tuned_correct: int | None
    stopped: bool
    seconds: float

    def text(self) -> str:
        """``tuned 14/16 vs base 0/16`` (or just the base score without an adapter)."""
        base = f"base {self.base_correct}/{self.answered}"
        if self.tuned_correct is None:
            return base
        return f"tuned {self.tuned_correct}/{self.answered} vs {base}"


class CompareAllWorker(Worker):
    """Runs held-out ``(prompt, expected)`` pairs through base and tuned, emitting a row per question.

    ``items`` is either the pairs themselves or a held-out file to read (errors name file and row).
    """

    status = Signal(str)
    row = Signal(object)  # RowResult
    progress = Signal(int, int)  # answered, total
    finished = Signal(object)  # CompareSummary

    def __init__(self, cache: AnswererCache, request: GenerationRequest,
                 items: Sequence[tuple[str, str]] | Path, batch_size: int = 8) -> None:
        super().__init__()
        self.cache = cache
        self.request = request
        self.items = items
        self.batch_size = max(1, batch_size)

    def work(self) -> None:
        from loradesk.core.generation import contains_phrase

        started = time.perf_counter()
        if isinstance(self.items, Path):
            from loradesk.core.formats import read_heldout

            pairs = read_heldout(self.items)
        else:
            pairs = list(self.items)
        settings = _settings(self.request)
        total = len(pairs)
        base_ok = 0
        tuned_ok: int | None = None
        answered = 0
        self.progress.emit(0, total)
        with self.cache.get(self.request, self.status.emit) as answerer:
            tuned_ok = 0 if answerer.has_adapter else None
            for start in range(0, total, self.batch_size):
                if self.stop_requested:
                    break
                chunk = pairs[start:start + self.batch_size]
                prompts = [p for p, _ in chunk]
                self.status.emit(f"Answering {start + 1}–{start + len(chunk)} of {total}…")
                base = answerer.answer_many(prompts, tuned=False, settings=settings)
                tuned = answerer.answer_many(prompts, tuned=True, settings=settings) \
                    if answerer.has_adapter else [None] * len(chunk)
                for offset, ((prompt, expected), b, t) in enumerate(zip(chunk, base, tuned, strict=True)):
                    b_ok = contains_phrase(b, expected)
                    t_ok = contains_phrase(t, expected) if t is not None else None
                    base_ok += b_ok
                    if t_ok is not None and tuned_ok is not None:
                        tuned_ok += t_ok
                    self.row.emit(RowResult(start + offset, prompt, expected, b, t, b_ok, t_ok))
                answered += len(chunk)
                self.progress.emit(answered, total)
        self.finished.emit(CompareSummary(total, answered, base_ok, tuned_ok, self.stop_requested,
                                          time.perf_counter() - started))


# --- anything else ---------------------------------------------------------------------------------------
class CallWorker(Worker):
    """Calls ``fn(*args)`` (an export, a scan) and emits its return value as ``finished(result)``."""

    finished = Signal(object)

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._fn = fn
        self._args = args
        self._kwargs = kwargs

    def work(self) -> None:
        self.finished.emit(self._fn(*self._args, **self._kwargs))
