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
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot


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
