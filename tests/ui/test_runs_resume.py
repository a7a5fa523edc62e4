"""An interrupted run (its training process was killed) in the Runs tab: shown as "interrupted" and resumed
through the Train tab's own Resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from loradesk.core import runs, training
from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.formats import read_dataset
from loradesk.core.paths import default_runs_dir
from loradesk.core.project import Project
from loradesk.ui.main_window import MainWindow
from loradesk.ui.runs_tab import COLUMNS

DATA = Path(__file__).resolve().parents[2] / "data" / "sample.json"


@pytest.fixture
def interrupted_run(tiny_model_dir: Path, stop_at: type) -> Path:
    """A run killed after its step-3 checkpoint: its file still says "running", its process is gone."""
    config = RunConfig(model=ModelSettings(kind="local", name=str(tiny_model_dir)))
    config.training.max_steps, config.training.batch_size = 5, 4
    sink = stop_at(2)
    result = training.run(config, read_dataset(DATA)[:16], sink, sink.stop)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    data = runs.read_run_file(result.run_dir)
    runs.write_run_file(result.run_dir, {**data, "result": {"status": "running"},
                                         "process": {**data["process"], "pid": child.pid}})
    return result.run_dir


def test_an_interrupted_run_is_listed_and_resumed_from_the_runs_tab(qtbot: QtBot, interrupted_run: Path) -> None:
    project = Project.new_default()
    window = MainWindow(project, probe_device=False, count_tokens=False)
    qtbot.addWidget(window)
    window.show()
    tab = window.runs_tab
    tab.refresh()
    assert tab.select_run(interrupted_run)
    row = tab.table.selectionModel().selectedRows()[0].row()
    assert tab.model.item(row, COLUMNS.index("Status")).text() == "interrupted"
    assert tab.model.item(row, COLUMNS.index("Steps")).text() == "3"
    assert tab.resume_button.isEnabled()
    assert "<br>Interrupted: its training process ended" in tab.detail_label.text()  # why, and what Resume does
    assert tab.detail_label.text().endswith("<b>Resume</b> continues it from its checkpoint at step 3.")
    assert window.training_tab.resume_dir == interrupted_run  # the Train tab offers it too

    train = window.training_tab
    with qtbot.waitSignal(train.run_finished, timeout=120_000) as finished:
        qtbot.mouseClick(tab.resume_button, Qt.MouseButton.LeftButton)
        assert window.tabs.currentWidget() is train
    assert Path(finished.args[0]) == interrupted_run
    info = runs.read_run(interrupted_run)
    assert info.status == "completed" and info.steps == 5
    assert interrupted_run.parent == default_runs_dir()
    tab.refresh()
    tab.select_run(interrupted_run)
    assert not tab.resume_button.isEnabled()  # nothing left to resume
    assert "Resume" not in tab.detail_label.text()
    project.save(interrupted_run.parent / "teardown.loradesk")  # closing must not ask
