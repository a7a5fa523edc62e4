"""SIGINT, SIGTERM and SIGHUP as a normal way to end a run, for the CLI and the GUI alike (no Qt here).

:class:`Interrupts` installs handlers that turn the first signal into a stop request (the training's stop
flag is set: the current step finishes, a checkpoint and the adapter are saved, the run says "stopped")
and a second one within :data:`ABORT_WINDOW_S` seconds into an abort: every run this process is training is
marked "interrupted" on disk and the process exits at once. The exit status is 128 + the signal number
(130 for SIGINT, 143 for SIGTERM).

Python runs signal handlers on the main thread, between bytecodes. The CLI's main thread waits in
``Thread.join`` (interruptible); the GUI's sits in Qt's event loop, so it hands :meth:`Interrupts.install`
a wakeup file descriptor that a Qt socket notifier watches (see ``loradesk.ui.signal_bridge``).

Training registers the run folder it writes with :func:`register_run`; :func:`abort` marks those runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

#: SIGHUP (the terminal was closed, a logout) is a stop too, where the platform has it: exit 129.
SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
#: A second signal within this many seconds of the previous one aborts instead of waiting for the stop.
ABORT_WINDOW_S = 5.0

_active_lock = threading.RLock()
_active: set[Path] = set()


def exit_code(signum: int) -> int:
    """The shell's exit status for a process ended by ``signum``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Interrupts:
    """First SIGINT/SIGTERM: set ``stop`` (if given) and call ``on_stop(signum)``; a repeat within ``window_s``:
    ``on_abort(signum)`` (default :func:`abort`). A repeat after the window counts as a first signal again
    (``on_stop`` is called again), so ``on_stop`` must be safe to call twice."""

    def __init__(self, stop: threading.Event | None, on_stop: Callable[[int], None] | None = None,
                 on_abort: Callable[[int], None] | None = None, window_s: float = ABORT_WINDOW_S) -> None:
        self.stop = stop
        self.on_stop = on_stop or (lambda _signum: None)
        self.on_abort = on_abort or (lambda signum: abort(exit_code(signum), f"{signal_name(signum)} again: "
                                                                               "aborting now."))
        self.window_s = window_s
        self.signum: int | None = None  # the first signal received
        self._last: float | None = None
        self._previous: dict[int, Any] = {}
        self._previous_fd: int | None = None

    @property
    def exit_code(self) -> int | None:
        """128 + the first signal's number, or None while no signal arrived."""
        return exit_code(self.signum) if self.signum is not None else None

    def install(self, wakeup_fd: int | None = None) -> None:
        """Install the handlers; ``wakeup_fd`` gets a byte per signal (for event loops). Python only lets the
        main thread handle signals: called from another thread (an embedding app), this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        if wakeup_fd is not None:
            self._previous_fd = signal.set_wakeup_fd(wakeup_fd, warn_on_full_buffer=False)

    def uninstall(self) -> None:
        """Put back the handlers (and wakeup fd) that were there before :meth:`install`."""
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._previous_fd = None
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        now = time.monotonic()
        repeat = self._last is not None and now - self._last <= self.window_s
        self._last = now
        if repeat:
            self.on_abort(signum)
            return
        if self.signum is None:
            self.signum = signum
        if self.stop is not None:
            self.stop.set()
        self.on_stop(signum)


def register_run(run_dir: Path) -> None:
    """Note that this process is training ``run_dir`` (its file says "running") until :func:`finishing`."""
    with _active_lock:
        _active.add(Path(run_dir))


@contextlib.contextmanager
def finishing(run_dir: Path) -> Iterator[None]:
    """Hold off :func:`abort` while the run writes its final record (so "stopped" is never overwritten by
    "interrupted"), then forget the run."""
    with _active_lock:
        try:
            yield
        finally:
            _active.discard(Path(run_dir))


def abort(code: int, message: str = "") -> NoReturn:
    """Mark every run this process is training "interrupted", print ``message`` and exit now with ``code``.

    Nothing else runs: not the training thread's cleanup, not atexit handlers (a thread inside torch cannot
    be stopped half-way, and interpreter shutdown around it crashes).
    """
    from loradesk.core import runs

    with _active_lock:  # held until the exit: no run can write a final record in between
        marked = []
        for run_dir in sorted(_active):
            with contextlib.suppress(Exception):  # exit anyway; the run's dead pid still says "interrupted"
                runs.mark_interrupted(run_dir)
                marked.append(run_dir)
        lines = [message] if message else []
        for run_dir in marked:
            kept = runs.latest_checkpoint(run_dir)
            lines.append(f"Aborted: {run_dir} is marked interrupted; "
                         + (f"resume from {kept.name} with: {runs.resume_command(run_dir)}" if kept
                            else "it had no checkpoint yet"))
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            if lines:
                sys.stderr.write("\n" + "\n".join(lines) + "\n")
            sys.stderr.flush()
        os._exit(code)
