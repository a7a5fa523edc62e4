"""One window per data folder: a second start says the app is running instead of opening a second
window on the same autosave and runs.

The claim is a :class:`QLockFile` in the data folder. It holds the process id, so a lock left by a
crashed window (its process gone) is taken over at once; it never expires while the window runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QLockFile
from PySide6.QtWidgets import QMessageBox

from loradesk.core.paths import app_home

LOCK_NAME = "loradesk.lock"


def running_message(pid: int, home: Path) -> str:
    """What a second start says."""
    who = f" (process {pid})" if pid > 0 else ""
    return (f"LoRA Desk is already running{who} with the data folder {home}. Switch to its window; a "
            f"second window on the same data could overwrite the first one's unsaved work.")


def _show(text: str) -> None:
    print(f"loradesk: {text}", file=sys.stderr)
    QMessageBox.information(None, "LoRA Desk is already running", text)


def claim_instance(home: Path | None = None, tell: Callable[[str], None] = _show) -> QLockFile | None:
    """Lock the data folder for this window; keep the returned lock alive while the window runs.

    When another live process holds it, ``tell`` gets :func:`running_message` and None is returned.
    A folder where no lock can be written (read-only) is not a reason to refuse to start: the lock is
    returned unheld, and saving will say what is wrong.
    """
    home = home or app_home()
    home.mkdir(parents=True, exist_ok=True)
    lock = QLockFile(str(home / LOCK_NAME))
    lock.setStaleLockTime(0)  # never stale by age (the window may run for days); a dead pid still is
    if lock.tryLock(0) or lock.error() != QLockFile.LockError.LockFailedError:
        return lock
    pid = lock.getLockInfo()[0]
    tell(running_message(pid, home))
    return None
