"""SIGINT and SIGTERM in the desktop app: stop a running training (its adapter is kept), keep unsaved changes
in the recovery file, then quit with 130 / 143.

Qt's event loop runs in C++, where Python cannot run its signal handlers. :mod:`loradesk.core.interrupts`
writes a byte to a wakeup pipe for every signal; a :class:`QSocketNotifier` watching the pipe wakes the
event loop, and the handlers run as soon as Python has control. The quit itself happens from a zero-delay
timer, outside the handler. A second signal within a few seconds aborts at once (the run is marked
"interrupted").
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from PySide6.QtCore import QObject, QSocketNotifier, QTimer, Slot
from PySide6.QtWidgets import QApplication

from loradesk.core.interrupts import Interrupts, signal_name


class SignalBridge(QObject):
    """Owns the wakeup pipe, its notifier and the installed handlers for one main window."""

    def __init__(self, window: Any, app: QApplication) -> None:
        super().__init__(window)
        self.window = window
        self.app = app
        self.interrupts = Interrupts(None, self._on_signal)
        self._quitting = False
        self._fds: tuple[int, int] | None = None
        self._notifier: QSocketNotifier | None = None
        self._timer: QTimer | None = None
        if os.name == "posix":
            self._fds = os.pipe()
            for fd in self._fds:
                os.set_blocking(fd, False)
            self._notifier = QSocketNotifier(self._fds[0], QSocketNotifier.Type.Read, self)
            self._notifier.activated.connect(self._drain)
        else:  # Windows wants a socket for the wakeup fd: let Python in twice a second instead
            self._timer = QTimer(self)
            self._timer.timeout.connect(lambda: None)
            self._timer.start(500)
        self.interrupts.install(self._fds[1] if self._fds else None)

    @property
    def exit_code(self) -> int | None:
        """130 / 143 once a signal asked the app to quit, else None."""
        return self.interrupts.exit_code

    def close(self) -> None:
        """Put the previous handlers back and close the pipe."""
        self.interrupts.uninstall()
        if self._timer is not None:
            self._timer.stop()
        if self._notifier is not None:
            self._notifier.setEnabled(False)
        for fd in self._fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = None

    @Slot()
    def _drain(self) -> None:
        """The pipe woke the loop; Python has already run the handlers. Empty it so it can wake us again."""
        with contextlib.suppress(OSError):  # BlockingIOError once it is empty
            while self._fds and os.read(self._fds[0], 512):
                pass

    def _on_signal(self, signum: int) -> None:
        if self._quitting:
            return
        self._quitting = True
        tab = self.window.training_tab
        is_running = getattr(tab, "is_running", None)  # a tab that failed to load is a placeholder label
        running = bool(is_running and is_running())
        print(f"{signal_name(signum)}: " + ("stopping the training after this step, then quitting"
                                            if running else "quitting"), file=sys.stderr, flush=True)
        if running:
            tab.running_changed.connect(self._after_training)
            QTimer.singleShot(0, tab.stop)
        else:
            QTimer.singleShot(0, self._quit)

    @Slot(bool)
    def _after_training(self, running: bool) -> None:
        if not running:
            QTimer.singleShot(0, self._quit)

    @Slot()
    def _quit(self) -> None:
        window, code = self.window, self.exit_code or 0
        kept = []
        result = getattr(window.training_tab, "last_result", None)
        if result is not None:
            from loradesk.core import runs

            checkpoint = runs.latest_checkpoint(result.run_dir)
            kept.append(f"the run {result.status} after {result.steps} steps with its adapter in {result.run_dir}"
                        + (f" and {checkpoint.name}" if checkpoint else ""))
        if window.project.dirty:
            kept.append("unsaved changes in the recovery file")
        window.close_keeping_unsaved()
        name = signal_name(self.interrupts.signum or 0)
        print(f"{name}: quit; kept " + ("; ".join(kept) if kept else "everything (nothing was unsaved)"),
              file=sys.stderr, flush=True)
        self.app.exit(code)
