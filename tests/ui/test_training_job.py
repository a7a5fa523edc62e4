"""Training as a background job (``ui/training_job.py`` on ``ui/jobs.py``) with the tiny real model: typed events
reach the GUI thread in order, an error is reported with its traceback, the stop flag keeps a usable adapter,
and an out-of-memory run offers its smaller batch before the error."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QThread
from pytestqt.qtbot import QtBot

from loradesk.core import runs
from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.training import RunResult, TrainProgress
from loradesk.ui.jobs import Job, Jobs
from loradesk.ui.training_job import OutOfMemoryOffer, TrainDevice, TrainLog, TrainRequest, TrainStatus, train


def tiny_config(model_dir: Path, steps: int = 4) -> RunConfig:
    config = RunConfig(model=ModelSettings(kind="local", name=str(model_dir)))
    t = config.training
    t.max_steps, t.batch_size, t.logging_steps, t.learning_rate = steps, 4, 1, 5e-3
    return config


class Seen:
    """What a training job delivered, and whether each delivery came on the GUI thread."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.results: list[RunResult | None] = []
        self.errors: list[tuple[str, str]] = []
        self.order: list[str] = []  # "event" / "result" / "error", as delivered
        self.finished = False
        self.off_thread = 0
        self._gui = QThread.currentThread()

    def _note(self) -> None:
        self.off_thread += QThread.currentThread() is not self._gui

    def start(self, jobs: Jobs, request: TrainRequest) -> Job:
        def event(e: object) -> None:
            self._note()
            self.events.append(e)
            self.order.append("event")

        def result(r: RunResult | None) -> None:
            self._note()
            self.results.append(r)
            self.order.append("result")

        def error(message: str, details: str) -> None:
            self._note()
            self.errors.append((message, details))
            self.order.append("error")

        return jobs.start(train, request, key="train", state=True, on_event=event, on_result=result,
                          on_error=error, on_finished=lambda: setattr(self, "finished", True))

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def test_a_run_reports_typed_events_on_the_gui_thread_then_its_result(qtbot: QtBot, tiny_model_dir: Path,
                                                                      project, tmp_path: Path) -> None:
    seen = Seen()
    seen.start(Jobs(), TrainRequest(tiny_config(tiny_model_dir), list(project.dataset), tmp_path))
    qtbot.waitUntil(lambda: seen.finished, timeout=120_000)

    assert seen.off_thread == 0 and seen.errors == []
    (result,) = seen.results
    assert result.status == "completed" and result.steps == 4 and result.run_dir.parent == tmp_path
    assert (result.run_dir / "adapter_model.safetensors").is_file()
    assert seen.events[0] == TrainStatus("Loading model…")
    (device,) = seen.of(TrainDevice)
    assert device.text.startswith("CPU") and device.text == result.device
    assert [p.step for p in seen.of(TrainProgress) if p.loss is not None] == [1, 2, 3, 4]
    assert "Training" in [s.text for s in seen.of(TrainStatus)]
    assert any("Adapter saved" in line.text for line in seen.of(TrainLog))


def test_an_error_is_reported_with_its_traceback_and_writes_no_run(qtbot: QtBot, project, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    seen = Seen()
    config = RunConfig(model=ModelSettings(kind="local", name=str(missing)))
    seen.start(Jobs(), TrainRequest(config, list(project.dataset), tmp_path / "runs"))
    qtbot.waitUntil(lambda: seen.finished, timeout=60_000)

    (message, details), = seen.errors
    assert str(missing) in message and "ModelError" in details and "Traceback" in details
    assert seen.results == [] and seen.of(OutOfMemoryOffer) == []
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_job_stop_flag_stops_the_run_and_keeps_a_usable_adapter(qtbot: QtBot, tiny_model_dir: Path,
                                                                     project, tmp_path: Path) -> None:
    seen = Seen()
    jobs = Jobs()
    job = seen.start(jobs, TrainRequest(tiny_config(tiny_model_dir, steps=500), list(project.dataset), tmp_path))
    qtbot.waitUntil(lambda: len(seen.of(TrainProgress)) >= 2, timeout=60_000)
    job.cancel()
    assert jobs.shutdown(30_000) and job.wait(0)  # the run has returned; its end is still queued
    qtbot.waitUntil(lambda: seen.finished, timeout=5_000)
    (result,) = seen.results
    assert result.status == "stopped" and 2 <= result.steps < 500
    assert (result.run_dir / "adapter_model.safetensors").is_file()
    assert runs.latest_checkpoint(result.run_dir) is not None  # resumable


def test_out_of_memory_offers_the_smaller_batch_before_the_error(qtbot: QtBot, tiny_model_dir: Path, project,
                                                                 tmp_path: Path, small_gpu: list[int]) -> None:
    seen = Seen()
    seen.start(Jobs(), TrainRequest(tiny_config(tiny_model_dir, steps=2), list(project.dataset), tmp_path))
    qtbot.waitUntil(lambda: seen.finished, timeout=60_000)

    (offer,) = seen.of(OutOfMemoryOffer)
    assert (offer.config.training.batch_size, offer.config.training.grad_accum) == (2, 2)
    assert offer.run_dir.parent == tmp_path and offer.run_dir.is_dir()
    (message, _details), = seen.errors
    assert "ran out of memory" in message and seen.results == []
    assert seen.order[-1] == "error" and isinstance(seen.events[-1], OutOfMemoryOffer)
