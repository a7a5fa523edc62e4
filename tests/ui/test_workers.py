"""Workers on their threads: signals arrive on the GUI thread, errors become ``failed``, threads end."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QThread, Slot

from loradesk.core import runs, training
from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.formats import read_dataset
from loradesk.ui.workers import CallWorker, Job


def tiny_config(model_dir: Path, steps: int = 4, lr: float = 5e-3) -> RunConfig:
    config = RunConfig(model=ModelSettings(kind="local", name=str(model_dir)))
    t = config.training
    t.max_steps, t.batch_size, t.logging_steps, t.learning_rate = steps, 4, 1, lr
    return config


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the tiny model on the sample data (trained once for this module)."""
    rows = read_dataset(Path(__file__).resolve().parents[2] / "data" / "sample.json")
    result = training.run(tiny_config(tiny_model_dir, steps=8), rows,
                          runs_dir=tmp_path_factory.mktemp("runs"))
    return result.run_dir


class Recorder(QObject):
    """Collects signal arguments in slots, noting whether each arrived on the GUI thread."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, list[tuple]] = {}
        self.off_thread: list[str] = []

    def _note(self, name: str, *args: object) -> None:
        if QThread.currentThread() is not self.thread():
            self.off_thread.append(name)
        self.calls.setdefault(name, []).append(args)

    @Slot(str)
    def status(self, text: str) -> None:
        self._note("status", text)

    @Slot(object)
    def progress(self, p: object) -> None:
        self._note("progress", p)

    @Slot(str)
    def log(self, text: str) -> None:
        self._note("log", text)

    @Slot(object)
    def finished(self, result: object) -> None:
        self._note("finished", result)

    @Slot(str, str)
    def failed(self, message: str, details: str) -> None:
        self._note("failed", message, details)

    @Slot(str, str)
    def token(self, side: str, text: str) -> None:
        self._note("token", side, text)

    @Slot(object)
    def row(self, row: object) -> None:
        self._note("row", row)

    def get(self, name: str) -> list[tuple]:
        return self.calls.get(name, [])


def connect_all(worker: QObject, rec: Recorder) -> None:
    for name in ("status", "progress", "log", "finished", "failed", "token", "row"):
        signal = getattr(worker, name, None)
        if signal is not None and hasattr(signal, "connect"):
            signal.connect(getattr(rec, name))


def run_job(qtbot, worker, timeout: int = 120_000) -> Recorder:
    rec = Recorder()
    connect_all(worker, rec)
    job = Job(worker)
    with qtbot.waitSignal(job.finished, timeout=timeout):
        job.start()
    assert not job.is_running()
    assert job.thread.isFinished()
    return rec


def test_call_worker_returns_the_value(qtbot, trained_run, tmp_path):
    rec = run_job(qtbot, CallWorker(runs.export_adapter, trained_run, tmp_path / "out"))
    (path,), = rec.get("finished")
    assert path == tmp_path / "out" and (path / "adapter_model.safetensors").is_file()


def test_job_wait_does_not_deadlock_when_gui_thread_blocks(qtbot):
    gate = threading.Event()

    def slow() -> str:
        gate.wait(5)
        return "ok"

    job = Job(CallWorker(slow))
    job.start()
    qtbot.waitUntil(job.is_running, timeout=5_000)
    gate.set()
    # the GUI thread blocks here without running its event loop: the thread must still end
    assert job.wait(5_000)
    assert job.thread.isFinished()
