"""Run health in the GUI, with the tiny real model: the Train tab's warning banner, the Runs tab's status,
and the out-of-memory question box whose Retry trains again with half the batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from loradesk.core import runs
from loradesk.core.config import ModelSettings
from loradesk.ui.runs_tab import COLUMNS, RunsTab
from loradesk.ui.training_tab import TrainingTab


@pytest.fixture
def tab(qtbot, project, tmp_path) -> TrainingTab:
    widget = TrainingTab(project)
    widget.runs_dir = tmp_path / "runs"
    qtbot.addWidget(widget)
    widget.resize(900, 700)
    widget.show()
    yield widget
    widget.shutdown()


def use_tiny_model(project, model_dir: Path, steps: int, lr: float = 5e-3, batch_size: int = 4) -> None:
    project.config.model = ModelSettings(kind="local", name=str(model_dir))
    t = project.config.training
    t.max_steps, t.batch_size, t.logging_steps, t.learning_rate, t.warmup_ratio = steps, batch_size, 1, lr, 0.0


def test_a_run_that_does_not_learn_shows_a_banner_and_a_status(qtbot, tab, project, tiny_model_dir):
    use_tiny_model(project, tiny_model_dir, steps=20, lr=1.0)
    project.config.lora.r, project.config.lora.alpha, project.config.lora.use_rslora = 1, 4096, True
    assert tab.warning_banner.isHidden()
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        tab.start()
    run_dir = Path(finished.args[0])

    assert tab.last_result.warnings and tab.warning_banner.isVisible()
    banner = tab.warning_banner.text()
    assert "not learning" in banner and "alpha = 2 x rank (2)" in banner
    assert tab.phase_label.text() == "Completed with warnings"
    assert "WARNING: The model is not learning" in tab.log_view.toPlainText()

    runs_tab = RunsTab(project)
    qtbot.addWidget(runs_tab)
    runs_tab.runs_dir = tab.runs_dir
    status = runs_tab.model.item(0, COLUMNS.index("Status"))
    assert status.text() == "completed with warnings" and "not learning" in status.toolTip()

    again = TrainingTab(project)  # after a restart the last run still says so
    qtbot.addWidget(again)
    again.runs_dir = tab.runs_dir
    again.show()
    assert again.warning_banner.isVisible() and "not learning" in again.warning_banner.text()
    assert again.phase_label.text() == "Last run: completed with warnings"

    project.config.lora.r, project.config.lora.alpha, project.config.lora.use_rslora = 8, 16, False
    use_tiny_model(project, tiny_model_dir, steps=2)
    with qtbot.waitSignal(tab.run_finished, timeout=120_000):
        tab.start()
        assert tab.warning_banner.isHidden()  # a new run starts without the old warning
    assert tab.last_result.warnings == [] and tab.warning_banner.isHidden()
    assert tab.phase_label.text() == "Completed"
    assert runs.read_run(run_dir).status_label == "completed with warnings"


@pytest.fixture
def small_gpu(monkeypatch):
    """Batches of more than 2 rows raise a real torch.OutOfMemoryError (injected: there is no GPU here)."""
    from transformers import Trainer

    original = Trainer.training_step
    seen: list[int] = []

    def training_step(self, model, inputs, *args, **kwargs):
        seen.append(int(inputs["input_ids"].shape[0]))
        if seen[-1] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", training_step)
    return seen


def test_out_of_memory_asks_and_retry_trains_with_half_the_batch(qtbot, tab, project, tiny_model_dir,
                                                                  small_gpu):
    use_tiny_model(project, tiny_model_dir, steps=3, batch_size=4)
    with qtbot.waitSignal(tab.running_changed, timeout=60_000, check_params_cb=lambda running: not running):
        tab.start()
    box = tab.error_box
    assert box is not None and box.isVisible() and box.windowTitle() == "Out of memory"
    assert "ran out of memory" in box.text() and "batch size 2 and gradient accumulation 2" in box.text()
    assert tab.phase_label.text() == "Failed"
    retry = box.button(QMessageBox.StandardButton.Retry)
    assert retry is not None and retry.text() == "Retry with batch size 2"
    assert project.config.training.batch_size == 4  # the user's settings are not changed behind their back

    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        qtbot.mouseClick(retry, Qt.MouseButton.LeftButton)
    result = tab.last_result
    assert result.status == "completed" and result.steps == 3
    t = runs.read_run(Path(finished.args[0])).config.training
    assert (t.batch_size, t.grad_accum) == (2, 2)
    assert small_gpu[-6:] == [2] * 6
    assert len(runs.list_runs(tab.runs_dir)) == 2  # the failed run is kept next to the retry
