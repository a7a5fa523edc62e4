"""The whole journey in the real main window with the tiny real model: train, watch, compare, close."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from loradesk.core import runs
from loradesk.core.config import ModelSettings
from loradesk.core.formats import read_dataset
from loradesk.core.project import Project
from loradesk.ui.main_window import MainWindow

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture
def window(qtbot, tiny_model_dir, tmp_path) -> MainWindow:
    project = Project()
    project.dataset.reset(read_dataset(DATA / "sample.json"))
    project.config.model = ModelSettings(kind="local", name=str(tiny_model_dir))
    t = project.config.training
    t.batch_size, t.logging_steps, t.learning_rate, t.max_steps = 4, 1, 5e-3, 8
    project.save(tmp_path / "tamsin.loradesk")  # saved: closing asks nothing
    win = MainWindow(project, probe_device=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def test_train_then_compare_base_and_tuned(qtbot, window):
    train, compare = window.training_tab, window.compare_tab
    window.tabs.setCurrentWidget(train)
    assert train.start_button.isEnabled(), train.blocked_label.text()

    with qtbot.waitSignal(train.run_finished, timeout=120_000) as finished:
        qtbot.mouseClick(train.start_button, Qt.MouseButton.LeftButton)
    run_dir = Path(finished.args[0])
    assert run_dir.parent == runs.default_runs_dir()

    x, y = train.plot.raw_curve.getData()
    assert x is not None and len(x) == 8 and len(y) == 8
    assert train.progress_bar.value() == train.progress_bar.maximum()
    assert "100%" in train.progress_bar.text()

    window.tabs.setCurrentWidget(compare)
    compare.set_run(str(run_dir))
    assert compare.current_run() == run_dir
    qtbot.mouseClick(compare.ask_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(compare.last_answers) and not compare.is_busy(), timeout=120_000)
    assert compare.base_pane.text() and compare.tuned_pane.text()
    assert compare.last_answers["tuned"] and compare.last_answers["tuned"] != compare.last_answers["base"]
    assert compare.tuned_pane.text() != compare.base_pane.text()

    window.tabs.setCurrentWidget(window.runs_tab)
    assert window.runs_tab.selected_run() == run_dir


def test_closing_the_window_while_training_stops_cleanly(qtbot, window, monkeypatch):
    train = window.training_tab
    train.project.config.training.max_steps = 5000
    train.project.save()
    train.start()
    qtbot.waitUntil(lambda: train.plot.point_count() >= 2, timeout=60_000)
    asked: list[str] = []

    def answer_yes(parent, title, text, *args):
        asked.append(title)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", staticmethod(answer_yes))
    window.close()  # how long the stop takes is measured by benchmarks/gui_responsiveness.py
    assert asked == ["Training is running"]
    assert not window.isVisible() and not train.is_running()
    (info,) = runs.list_runs()
    assert info.status == "stopped" and 2 <= info.steps < 5000
    assert (info.path / "adapter_model.safetensors").is_file()
    assert runs.latest_checkpoint(info.path) is not None
