"""The one way to run work off the GUI thread (after Orange3's ``ConcurrentMixin`` and ``TaskState``).

A widget owns a :class:`Jobs` and starts plain functions on it::

    self.jobs = Jobs(self)
    self.jobs.start(core.training.run, config, rows, ..., state=True, key="train",
                    on_event=self._on_progress, on_result=self._on_result, error_title="Training failed")

- ``state=True`` passes a :class:`TaskState` as the ``state`` keyword: ``state.stop`` is the stop flag core
  functions already take, ``state.progress(text, fraction)`` reports progress (throttled), and
  ``state.emit(event)`` hands a partial result (a typed event: a training step, a streamed token) to
  ``on_event`` on the GUI thread, in order.
- ``key``: latest request wins. Starting a job with the key of a running one stops the old one and drops
  everything it still delivers, so a stale answer never reaches the widget. With ``interrupt=False`` the
  old one is not stopped, only dropped: for work the newer request reuses (a tokenizer being loaded).
- Results, events, progress and errors arrive on the GUI thread. An error goes to ``on_error(message,
  details)`` when given, else to :func:`loradesk.ui.errors.show_error` under ``error_title``.
- ``process=True`` runs a picklable top-level core function in the warm worker *process*
  (:func:`process_pool`): pure-Python or GIL-holding work (token statistics, checks, find over a big
  dataset) then never competes with the GUI thread for the interpreter. Such a job cannot report
  progress; stopping it drops its result.
- A thread job that needs progress, or sends many rows, hands its heavy pieces to that process itself:
  ``state.upload(rows, encode, channel=...)`` sends the rows a chunk at a time (only the chunks that changed
  since the channel's last upload) and ``state.in_process(fn, uploaded, ...)`` runs ``fn`` there on them,
  with progress reports and cancellation between the pieces.

Threads are plain Python threads that run at a lower processor priority than the GUI thread where the
system allows it (:func:`lower_this_thread`); :func:`wait_for_jobs` stops and joins the running ones when the event
loop has ended, so no work is cut off half-way and nothing outlives the app.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import itertools
import multiprocessing
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QProgressBar, QWidget

from loradesk.ui import worker_process
from loradesk.ui.worker_process import Uploaded, UploadLost

#: Added to a job thread's niceness on Linux, where a thread has its own (threads it starts inherit it).
#: Not more: while a job thread holds the interpreter lock, the window waits until that thread gets a core.
JOB_NICE = 5


def lower_this_thread(increment: int = JOB_NICE) -> bool:
    """Give the calling thread less processor time than the GUI thread when both want it (Linux only:
    elsewhere a priority is the whole process's). True when it was lowered.

    Why: a training step keeps both cores busy (torch's worker threads inherit this priority from the
    thread that starts them). Every time the GUI thread gives up the interpreter lock in a Qt call (painting
    the plot's axes does that dozens of times), it then had to wait for a core at equal priority to take
    it back: 60-150 ms stalls while training. Lowered, the job's threads yield the core at once.

    Only by :data:`JOB_NICE` (5): the lock goes the other way too. Whenever the GUI thread waits for the lock
    held by a job thread (pure-Python work, or a long C call such as saving a tokenizer), it waits until that
    thread is given a core; next to another busy program a thread at +10 gets about a tenth of one, at +5 a
    third. On one core with a busy program beside it (a probe: the GUI thread paints 3 ms every 10 ms, a job
    thread runs Python): worst lateness 134-136 ms at +10, 55-59 ms at +5, 37-99 ms at +0; with a job that
    computes without the lock instead, +5 is as good as +10 (max 12 vs 15 ms) and +0 worse (23 ms).
    """
    import os
    import sys

    if not sys.platform.startswith("linux") or threading.current_thread() is threading.main_thread():
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError:
        return False
    return True


class Cancelled(Exception):
    """Raised by :meth:`TaskState.progress` / :meth:`TaskState.check` once the job was asked to stop."""


def error_message(exc: BaseException) -> str:
    """A one-line message for the user: the exception text, or its type when it has none.

    A disk-side write failure (full, read-only, no permission) reads ``<file>: no space left on device``.
    """
    from loradesk.core.fileio import storage_error

    text = str(storage_error(exc) or exc).strip()
    return text if text else type(exc).__name__


def show_fraction(bar: QProgressBar, fraction: float | None) -> None:
    """Show a job's progress ``fraction`` on ``bar``: a filled share of it, or a busy bar when None."""
    if fraction is None:
        bar.setRange(0, 0)
    else:
        bar.setRange(0, 1000)
        bar.setValue(round(1000 * fraction))


class TaskState:
    """What a background function sees of the outside world: the stop flag, progress and partial results."""

    #: Progress reports closer together than this are dropped (the last one before the result is kept).
    PROGRESS_INTERVAL_S = 0.05

    def __init__(self, job: Job) -> None:
        self._job = job
        self.stop = threading.Event()
        self._last_progress = 0.0
        self._counting = False  # the last report carried a fraction

    @property
    def stop_requested(self) -> bool:
        return self.stop.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when the job was asked to stop."""
        if self.stop.is_set():
            raise Cancelled("cancelled")

    def progress(self, text: str, fraction: float | None = None) -> None:
        """Report progress (``fraction`` in [0, 1] or None); also a cancellation point."""
        self.check()
        now = time.monotonic()
        # Only a stream of counted steps is thinned out: a new stage (a report without a fraction before it) shows.
        if (fraction is not None and fraction < 1 and self._counting
                and now - self._last_progress < self.PROGRESS_INTERVAL_S):
            return
        self._last_progress = now
        self._counting = fraction is not None
        self._job._deliver("progress", (text, fraction))

    def emit(self, event: Any) -> None:
        """Hand ``event`` (a partial result) to the job's ``on_event`` on the GUI thread."""
        self._job._deliver("event", event)

    def in_process(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` run in the warm worker process; waits for it and returns its result.

        ``fn`` must be a picklable top-level function; an :class:`Uploaded` argument (from :meth:`upload`)
        arrives there as its list of items. Its exceptions are raised here. Once the job is asked to stop
        this raises :class:`Cancelled` without waiting (the call still finishes in the process).
        """
        return self._call(worker_process.call, fn, args, kwargs)

    def in_process_parts(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[Any]]:
        """:meth:`in_process` for an ``fn`` that returns ``(head, items)`` where the items can be many (every
        changed cell of a replacement): they come back :data:`UPLOAD_CHUNK` at a time, each unpickled on its
        own, instead of in one piece that holds the interpreter for tens of milliseconds."""
        park = f"parked-{next(_VERSIONS)}"
        head, total = self._call(worker_process.call_parking, fn, args, kwargs, park)
        items: list[Any] = []
        for start in range(0, total, UPLOAD_CHUNK):
            items.extend(self._wait(process_pool().submit(worker_process.take, park, start, UPLOAD_CHUNK)))
        return head, items

    def _call(self, call: Callable[..., Any], fn: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any], *extra: Any) -> Any:
        one_off = tuple(a.channel for a in (*args, *kwargs.values())
                        if isinstance(a, Uploaded) and a.channel.startswith(_ONE_OFF))
        restarted = resent = False
        while True:
            try:
                return self._wait(process_pool().submit(call, fn, args, kwargs, one_off, *extra))
            except UploadLost as lost:  # the process dropped a chunk (or is a new one): send those again, once
                if resent:
                    raise
                resent = True
                self._resend(lost, [a for a in (*args, *kwargs.values()) if isinstance(a, Uploaded)])
            except concurrent.futures.process.BrokenProcessPool:
                if restarted:  # it died twice: report it (out of memory, say)
                    raise
                restarted = True  # killed or crashed: the next call starts a fresh one

    def upload(self, items: Sequence[Any], encode: Callable[[Any], Any] | None = None, channel: str | None = None,
               chunk: int = 0) -> Uploaded:
        """Send ``items`` (each as ``encode(item)``, e.g. a row as a tuple of strings) to the worker process
        in chunks, each pickled on its own so the GUI thread gets the interpreter in between.

        With a ``channel`` (encode the same way on one channel), a chunk whose items are the very objects
        last sent at that place is not sent again; sent chunks are never overwritten, so jobs may share a
        channel. A cancellation point between chunks.
        """
        chunk = chunk or UPLOAD_CHUNK
        name = channel or f"{_ONE_OFF}{next(_VERSIONS)}"
        pieces: list[tuple[int, int]] = []
        for start in range(0, len(items), chunk):
            self.check()
            part = tuple(items[start:start + chunk])
            with _SENT_LOCK:
                known = _SENT.get((name, start)) if channel else None
            if (known is not None and known[2] == _POOL_GENERATION and len(known[0]) == len(part)
                    and all(a is b for a, b in zip(known[0], part, strict=True))):
                pieces.append((start, known[1]))
                continue
            version = next(_VERSIONS)
            self._wait(process_pool().submit(worker_process.stage, name, start, version, _encoded(part, encode)))
            pieces.append((start, version))
            if channel:
                with _SENT_LOCK:
                    _SENT[(name, start)] = (part, version, _POOL_GENERATION)
        return Uploaded(name, tuple(pieces), len(items), (items, encode))

    def _resend(self, lost: UploadLost, sent: list[Uploaded]) -> None:
        uploaded = next(u for u in sent if u == lost.uploaded)  # the one made here, which knows its items
        items, encode = uploaded.source
        size = max(1, uploaded.chunks[1][0] - uploaded.chunks[0][0]) if len(uploaded.chunks) > 1 else len(items)
        for n in lost.missing:
            self.check()
            start, version = uploaded.chunks[n]
            part = _encoded(tuple(items[start:start + size]), encode)
            self._wait(process_pool().submit(worker_process.stage, uploaded.channel, start, version, part))

    def _wait(self, future: concurrent.futures.Future[Any]) -> Any:
        while True:
            try:
                return future.result(timeout=self.PROCESS_POLL_S)
            except concurrent.futures.TimeoutError:
                if self.stop.is_set():
                    future.cancel()
                    raise Cancelled("cancelled") from None

    #: How often a thread waiting on the worker process looks at the stop flag.
    PROCESS_POLL_S = 0.05


class _Relay(QObject):
    """Lives on the GUI thread; worker threads emit ``delivered`` and the queued slot hands it on."""

    delivered = Signal(object, str, object)  # job, kind, payload

    def __init__(self) -> None:
        super().__init__()
        self.delivered.connect(self._on_delivered)

    @Slot(object, str, object)
    def _on_delivered(self, job: Job, kind: str, payload: Any) -> None:
        if job.orphaned:
            return
        with contextlib.suppress(RuntimeError):  # a widget it reports to was deleted meanwhile
            job._dispatch(kind, payload)


class Job:
    """One started function: :meth:`cancel` asks it to stop; its callbacks run on the GUI thread."""

    _ids = itertools.count(1)

    def __init__(self, owner: Jobs, key: str | None, callbacks: dict[str, Callable[..., Any] | None],
                 error_title: str, interrupt: bool = True) -> None:
        self.id = next(self._ids)
        self.key = key
        #: A newer job with the same key (or :meth:`Jobs.drop`) stops this one, not only drops its results.
        self.interrupt = interrupt
        self.state = TaskState(self)
        self._owner = owner
        self._callbacks = callbacks
        self._error_title = error_title
        self._thread: threading.Thread | None = None
        self._future: concurrent.futures.Future[Any] | None = None
        self._done = threading.Event()
        #: A newer job with the same key started: nothing this one delivers reaches the widget.
        self.superseded = False
        #: Its owner is gone: nothing at all is delivered.
        self.orphaned = False
        self._handled = False  # set on the GUI thread once "done" was dispatched

    # -- control (GUI thread) ------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the function to stop at its next check; a process job's result is dropped."""
        self.state.stop.set()
        if self._future is not None:
            self._future.cancel()

    def is_running(self) -> bool:
        """True until the job's end has been handled on the GUI thread (its result and ``on_finished`` ran)."""
        return not self._handled

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the function has returned (``-1``: no limit); True when it has."""
        return self._done.wait(None if timeout_ms < 0 else max(0, timeout_ms) / 1000)

    # -- worker side ---------------------------------------------------------------------------------
    def _deliver(self, kind: str, payload: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the owner is gone: nobody is listening any more
            _relay().delivered.emit(self, kind, payload)

    def _run_thread(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        lower_this_thread()
        try:
            result = fn(*args, **kwargs)
        except Cancelled:
            self._deliver("cancelled", None)
        except Exception as exc:
            self._deliver("error", (error_message(exc), traceback.format_exc()))
        else:
            self._deliver("result", result)
        finally:
            self._done.set()
            _RUNNING.discard(self)
            self._deliver("done", None)

    def _future_done(self, future: concurrent.futures.Future[Any]) -> None:
        try:
            if future.cancelled():
                self._deliver("cancelled", None)
            elif (exc := future.exception()) is not None:
                details = "".join(traceback.format_exception(exc))
                self._deliver("error", (error_message(exc), details))
            else:
                self._deliver("result", future.result())
        finally:
            self._done.set()
            _RUNNING.discard(self)
            self._deliver("done", None)

    # -- GUI side ------------------------------------------------------------------------------------
    def _dispatch(self, kind: str, payload: Any) -> None:
        if kind == "done":
            self._handled = True
            self._owner._forget(self)
            if not self.superseded:
                self._call("on_finished")
            return
        if self.superseded:
            return
        if kind == "result":
            self._call("on_result", payload)
        elif kind == "event":
            self._call("on_event", payload)
        elif kind == "progress":
            self._call("on_progress", *payload)
        elif kind == "cancelled":
            self._call("on_cancelled")
        elif kind == "error":
            message, details = payload
            handler = self._callbacks.get("on_error")
            if handler is not None:
                handler(message, details)
            else:
                from loradesk.ui.errors import show_error

                parent = self._owner.parent()
                show_error(parent if isinstance(parent, QWidget) else None, self._error_title, message, details)

    def _call(self, name: str, *args: Any) -> None:
        callback = self._callbacks.get(name)
        if callback is not None:
            callback(*args)


class Jobs(QObject):
    """The background jobs owned by one widget; they are stopped and waited for when it goes away."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[Job] = []
        _relay()  # created on the GUI thread, before any worker emits through it
        owner = id(self)
        # If the owner goes away first, its jobs are stopped and waited for, never left running.
        self.destroyed.connect(lambda *_: _stop_and_join(list(_RUNNING_BY_OWNER.pop(owner, set()))))

    def start(self, fn: Callable[..., Any], *args: Any, key: str | None = None, state: bool = False,
              process: bool = False, on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[str, str], None] | None = None, on_event: Callable[[Any], None] | None = None,
              on_progress: Callable[[str, float | None], None] | None = None,
              on_cancelled: Callable[[], None] | None = None, on_finished: Callable[[], None] | None = None,
              error_title: str = "Something went wrong", interrupt: bool = True, **kwargs: Any) -> Job:
        """Run ``fn(*args, **kwargs)`` in the background (see the module docstring for the options)."""
        if key is not None:
            self.drop(key)
        callbacks = {"on_result": on_result, "on_error": on_error, "on_event": on_event,
                     "on_progress": on_progress, "on_cancelled": on_cancelled, "on_finished": on_finished}
        job = Job(self, key, callbacks, error_title, interrupt)
        self._jobs.append(job)
        _RUNNING.add(job)
        _RUNNING_BY_OWNER.setdefault(id(self), set()).add(job)
        if process:
            if state:
                raise ValueError("a process job cannot take a TaskState")
            job._future = process_pool().submit(fn, *args, **kwargs)
            job._future.add_done_callback(job._future_done)
        else:
            if state:
                kwargs["state"] = job.state
            name = getattr(fn, "__name__", "job")
            job._thread = threading.Thread(target=job._run_thread, args=(fn, args, kwargs), name=f"loradesk-{name}")
            job._thread.start()
        return job

    def running(self, key: str | None = None) -> list[Job]:
        """The jobs not yet finished (with ``key``: only those), superseded ones excluded."""
        return [j for j in self._jobs if j.is_running() and not j.superseded and (key is None or j.key == key)]

    def busy(self, key: str | None = None) -> bool:
        return bool(self.running(key))

    def cancel(self, key: str | None = None) -> None:
        """Ask the running jobs (with ``key``: those) to stop; their results still arrive."""
        for job in self.running(key):
            job.cancel()

    def drop(self, key: str) -> None:
        """Drop what the jobs with ``key`` still deliver; stop them (unless started with ``interrupt=False``)."""
        for job in self._jobs:
            if job.key == key and not job.superseded:
                job.superseded = True
                if job.interrupt:
                    job.cancel()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop every job and wait for it (``-1``: no limit); True when all have ended."""
        return _cancel_and_wait(list(self._jobs), None if timeout_ms < 0 else timeout_ms / 1000)

    def _forget(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        _RUNNING_BY_OWNER.get(id(self), set()).discard(job)


# --- the relay and the running set --------------------------------------------------------------------------
_RELAY: _Relay | None = None
#: Every job whose function has not returned yet, so the app can wait for them before it exits.
_RUNNING: set[Job] = set()
_RUNNING_BY_OWNER: dict[int, set[Job]] = {}


def _relay() -> _Relay:
    global _RELAY
    if _RELAY is None:
        _RELAY = _Relay()
    return _RELAY


def _cancel_and_wait(jobs: list[Job], timeout_s: float | None) -> bool:
    """Ask every job to stop, then wait for them, ``timeout_s`` in all (None: no limit); True when all ended."""
    for job in jobs:
        job.cancel()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    return all(job._done.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
               for job in jobs)


def _stop_and_join(jobs: list[Job]) -> None:
    for job in jobs:
        job.orphaned = True
    _cancel_and_wait(jobs, None)


def wait_for_jobs(timeout_ms: int = 120_000) -> bool:
    """Ask every running job to stop and wait for it, ``timeout_ms`` in all; True when all have ended.

    Called when the event loop has ended (a conversion or a recovery write may still be finishing).
    """
    return _cancel_and_wait(list(_RUNNING), timeout_ms / 1000)


# --- the worker process -------------------------------------------------------------------------------------
_POOL: concurrent.futures.ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
#: Items per uploaded chunk: pickling one takes a few milliseconds.
UPLOAD_CHUNK = 5_000
_ONE_OFF = "one-off-"
_VERSIONS = itertools.count(1)
#: (channel, start) -> the items last sent there, their version and the process (generation) that holds them.
_SENT: dict[tuple[str, int], tuple[tuple[Any, ...], int, int]] = {}
_POOL_GENERATION = 0
_SENT_LOCK = threading.Lock()


def _encoded(part: tuple[Any, ...], encode: Callable[[Any], Any] | None) -> list[Any]:
    return list(part) if encode is None else [encode(item) for item in part]


def process_pool() -> concurrent.futures.ProcessPoolExecutor:
    """The one warm worker process (spawned, never forked: the GUI process has threads and Qt state).

    A process that died (killed, out of memory) is replaced by a fresh one on the next call.
    """
    global _POOL, _POOL_GENERATION
    with _POOL_LOCK:
        if _POOL is not None and getattr(_POOL, "_broken", False):
            _POOL.shutdown(wait=False, cancel_futures=True)
            _POOL = None
        if _POOL is None:
            context = multiprocessing.get_context("spawn")
            _POOL = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context,
                                                        initializer=worker_process.init)
            _POOL_GENERATION += 1
            _POOL.submit(worker_process.warm)
        return _POOL


def pool_generation() -> int:
    """Which worker process this is (counts up each time one is started): what it has loaded is lost with it."""
    return _POOL_GENERATION


def shutdown_process_pool() -> None:
    """End the worker process (on quit); queued jobs are dropped."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)

