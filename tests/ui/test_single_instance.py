"""One window per data folder: a live holder blocks a second start with a clear message; a crashed
holder's lock does not block."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loradesk.ui import single_instance
from loradesk.ui.app import run_gui
from loradesk.ui.single_instance import LOCK_NAME, claim_instance

HOLDER = """
import sys
from PySide6.QtCore import QCoreApplication, QLockFile
app = QCoreApplication([])
lock = QLockFile(sys.argv[1])
lock.setStaleLockTime(0)
print("locked" if lock.tryLock(0) else "busy", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def holder(loradesk_home: Path):
    """Another process holding the lock on the data folder (the first window, as far as the lock goes)."""
    loradesk_home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(loradesk_home / LOCK_NAME)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_second_start_is_refused_while_the_first_runs_then_allowed_after_a_crash(holder, loradesk_home) -> None:
    told: list[str] = []
    assert claim_instance(tell=told.append) is None
    assert len(told) == 1 and f"already running (process {holder.pid})" in told[0]
    assert str(loradesk_home) in told[0]
    holder.send_signal(signal.SIGKILL)  # a crash: the lock file stays behind
    holder.wait()
    assert (loradesk_home / LOCK_NAME).exists()
    lock = claim_instance(tell=told.append)
    assert lock is not None and lock.isLocked()
    assert len(told) == 1
    lock.unlock()


def test_lock_is_released_for_the_next_start(loradesk_home: Path) -> None:
    first = claim_instance(tell=pytest.fail)
    assert first is not None and first.isLocked()
    assert claim_instance(tell=lambda _text: None) is None  # same process, second claim: refused
    first.unlock()
    again = claim_instance(tell=pytest.fail)
    assert again is not None
    again.unlock()


def test_run_gui_says_it_is_running_and_opens_no_window(holder, monkeypatch, capsys) -> None:
    from PySide6.QtWidgets import QApplication

    shown: list[str] = []
    monkeypatch.setattr(single_instance.QMessageBox, "information",
                        staticmethod(lambda _parent, title, text: shown.append(f"{title}: {text}")))
    assert run_gui([]) == 1
    assert len(shown) == 1 and shown[0].startswith("LoRA Desk is already running: ")
    assert "already running" in capsys.readouterr().err
    assert not any(w.isVisible() for w in QApplication.topLevelWidgets())
