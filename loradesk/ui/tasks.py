"""Short background calls for the shell (read a file, resolve a model, probe the device).

Each call runs on its own :class:`~loradesk.ui.workers.Job` thread; results, progress and errors come
back as queued signals to slots on the GUI thread. Connect bound methods of QObjects (not lambdas) so a
result that arrives after its widget is gone is simply dropped.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from loradesk.ui.workers import Job, Worker


class Cancelled(Exception):
    """Raised inside a task's progress callback once the task was asked to stop."""


class TaskWorker(Worker):
    """Calls ``fn(*args, **kwargs)``; with ``report_progress`` it also passes ``progress=(text, fraction)``.

    The progress callback is also the cancellation point: after :meth:`request_stop` it raises
    :class:`Cancelled`, which unwinds the call (a download, a conversion) at its next report.
    """

    result = Signal(object)
    progress = Signal(str, object)  # text, fraction in [0, 1] or None

    def __init__(self, fn: Callable[..., Any], *args: Any, report_progress: bool = False, **kwargs: Any) -> None:
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._report_progress = report_progress

    def _progress(self, text: str, fraction: float | None = None) -> None:
        if self.stop_requested:
            raise Cancelled("cancelled")
        self.progress.emit(text, fraction)

    def work(self) -> None:
        kwargs = dict(self._kwargs)
        if self._report_progress:
            kwargs["progress"] = self._progress
        self.result.emit(self._fn(*self._args, **kwargs))


class Tasks(QObject):
    """The background calls owned by one widget; :meth:`shutdown` waits for them (on close)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[Job] = []
        # If the owner goes away first, its threads are stopped and waited for, never left running.
        self.destroyed.connect(functools.partial(_stop_and_wait, self._jobs))

    def run(self, fn: Callable[..., Any], *args: Any, on_result: Callable[[Any], None] | None = None,
            on_error: Callable[[str, str], None] | None = None,
            on_progress: Callable[[str, object], None] | None = None, **kwargs: Any) -> Job:
        """Start ``fn`` on a worker thread. ``on_error(message, traceback)``; unhandled errors go to stderr."""
        worker = TaskWorker(fn, *args, report_progress=on_progress is not None, **kwargs)
        if on_result is not None:
            worker.result.connect(on_result)
        if on_progress is not None:
            worker.progress.connect(on_progress)
        worker.failed.connect(on_error if on_error is not None else self._unhandled)
        job = Job(worker, self)
        job.finished.connect(self._reap)
        self._jobs.append(job)
        job.start()
        return job

    def busy(self) -> bool:
        return any(job.is_running() for job in self._jobs)

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Ask every call to stop and wait for its thread (``-1``: no limit); True when all have ended."""
        ended = [job for job in list(self._jobs) if job.shutdown(timeout_ms)]
        for job in ended:
            self._jobs.remove(job)
        return len(self._jobs) == 0

    @Slot()
    def _reap(self) -> None:
        job = self.sender()
        if isinstance(job, Job) and job in self._jobs:
            self._jobs.remove(job)
            job.deleteLater()

    @Slot(str, str)
    def _unhandled(self, message: str, details: str) -> None:
        print(f"LoRA Desk background task failed: {message}\n{details}", file=sys.stderr)


def _stop_and_wait(jobs: list[Job], *_args: Any) -> None:
    for job in list(jobs):
        with contextlib.suppress(RuntimeError):  # its thread object is already gone (at exit)
            job.shutdown(-1)
    jobs.clear()
