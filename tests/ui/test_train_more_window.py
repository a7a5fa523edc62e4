"""Train more in the window (offscreen, tiny model): the Runs tab shows a continued run's parent and joined curve,
and its "Train more…" button and the Run menu start a new run on the Train tab through the usual job."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox
from pytestqt.qtbot import QtBot

from loradesk.core import runs, train_more, training
from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.formats import read_dataset
from loradesk.core.paths import default_runs_dir
from loradesk.core.project import Project
from loradesk.ui.main_window import MainWindow
from loradesk.ui.train_more import TrainMoreChoice, TrainMoreDialog

DATA = Path(__file__).resolve().parents[2] / "data" / "sample.json"


@pytest.fixture
def parent(tiny_model_dir: Path) -> Path:
    """A finished 4-step run on 16 rows in this test's runs folder."""
    config = RunConfig(model=ModelSettings(kind="local", name=str(tiny_model_dir)))
    t = config.training
    t.max_steps, t.batch_size, t.logging_steps, t.learning_rate, t.validation_fraction = 4, 4, 1, 5e-3, 0.0
    return training.run(config, read_dataset(DATA)[:16]).run_dir


@pytest.fixture
def window(qtbot: QtBot) -> MainWindow:
    project = Project.new_default()
    win = MainWindow(project, probe_device=False, count_tokens=False)
    win.show()
    yield win
    assert win.close_keeping_unsaved()  # an edited dataset goes to the recovery file: closing must not ask
    win.deleteLater()


def answer_dialog(epochs: float, own_rows: bool, seen: list[TrainMoreDialog]) -> None:
    """Fill in and accept the Train more dialog once it is shown (it runs its own event loop)."""
    def poll() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, TrainMoreDialog):
            QTimer.singleShot(10, poll)
            return
        seen.append(dialog)
        dialog.epochs.setValue(epochs)
        (dialog.own if own_rows else dialog.current).setChecked(True)
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()

    QTimer.singleShot(0, poll)


def loss_steps(plot) -> list[float]:
    plot.flush()
    steps, _ = plot.raw_curve.getData()
    return [] if steps is None else [float(s) for s in steps]


def test_runs_tab_shows_the_lineage_and_train_more_starts_a_run(qtbot: QtBot, window: MainWindow,
                                                                parent: Path) -> None:
    tab, train = window.runs_tab, window.training_tab
    tab.refresh()
    assert tab.select_run(parent)
    assert tab.train_more_button.isEnabled()
    assert "continues" not in tab.detail_label.text() and tab.plot.join_step is None
    seen: list[TrainMoreDialog] = []
    answer_dialog(1.0, True, seen)
    with qtbot.waitSignal(train.run_finished, timeout=120_000) as finished:
        qtbot.mouseClick(tab.train_more_button, Qt.MouseButton.LeftButton)
        assert window.tabs.currentWidget() is train and train.is_running()
        assert loss_steps(train.plot) == [1.0, 2.0, 3.0, 4.0]  # the parent's curve first, then the live one
        assert train.plot.join_step == 4.0
    dialog = seen[0]
    assert "its own data (16 rows" in dialog.own.text().lower()
    child = Path(finished.args[0])
    assert child != parent and child.parent == default_runs_dir()
    assert runs.read_run_file(child)["parent"] == str(parent.resolve())
    assert loss_steps(train.plot) == [float(s) for s in range(1, 9)]  # 16 rows / batch 4: steps 5 to 8
    assert train.progress_bar.minimum() == 4 and train.progress_bar.value() == train.progress_bar.maximum() == 8

    tab.refresh()  # the run finished: the Runs tab lists the child with its parent
    assert tab.select_run(child)
    assert f"continues <b>{parent.name}</b> from step 4" in tab.detail_label.text()
    assert loss_steps(tab.plot) == [float(s) for s in range(1, 9)] and tab.plot.join_step == 4.0
    row = tab.table.selectionModel().selectedRows()[0].row()
    assert tab.model.item(row, 0).toolTip().endswith(f"continues {parent.name}")
    assert tab.train_more_button.isEnabled()  # a child can be continued in turn


def test_run_menu_trains_the_selected_run_more_on_the_current_dataset(qtbot: QtBot, window: MainWindow,
                                                                     parent: Path) -> None:
    rows = read_dataset(DATA)[20:28]
    window.project.dataset.reset(rows)
    window.runs_tab.refresh()
    assert window.runs_tab.select_run(parent)
    assert window.act_train_more in window.menuBar().actions()[2].menu().actions()  # Run menu
    seen: list[TrainMoreDialog] = []
    answer_dialog(2.0, False, seen)
    with qtbot.waitSignal(window.training_tab.run_finished, timeout=120_000) as finished:
        window.act_train_more.trigger()
    assert seen[0].current.text() == "The current dataset (8 rows)"
    child = Path(finished.args[0])
    assert runs.load_dataset_snapshot(child) == rows
    info = runs.read_run(child)
    assert info.config.training.epochs == 2.0 and info.steps == 4 and info.step_offset == 4
    assert [int(m["step"]) for m in train_more.lineage_metrics(child) if "loss" in m] == list(range(1, 9))


def test_a_run_that_cannot_be_continued_is_explained(window: MainWindow, parent: Path, shown_errors) -> None:
    record = runs.read_run_file(parent)
    runs.write_run_file(parent, {**record, "result": {"status": "failed", "error": "boom"}})
    window.runs_tab.refresh()
    assert window.runs_tab.select_run(parent)
    assert not window.runs_tab.train_more_button.isEnabled()
    window.act_train_more.trigger()
    assert [(e.title, e.message) for e in shown_errors] == [
        ("Cannot train this run more", f"{parent.name} failed: only a completed or stopped run can be trained more")]
    assert not window.training_tab.is_running()


def test_the_dialog_offers_the_runs_epochs_and_its_own_rows_first(tmp_path: Path) -> None:
    config = RunConfig()
    config.training.epochs = 2.5
    runs.write_run_file(tmp_path, {"config": config.to_dict(), "result": {"status": "completed", "steps": 7}})
    info = runs.read_run(tmp_path)
    dialog = TrainMoreDialog(info, 0, 0)  # an older run file without row counts; an empty dataset
    assert dialog.epochs.value() == 2.5 and dialog.own.isChecked() and not dialog.current.isEnabled()
    assert dialog.own.text() == "Its own data (as it trained on them)"
    assert dialog.choice() == TrainMoreChoice(2.5, True)
    dialog = TrainMoreDialog(info, 12, 5)
    dialog.current.setChecked(True)
    dialog.epochs.setValue(1.0)
    assert dialog.own.text() == "Its own data (12 rows, as it trained on them)"
    assert dialog.choice() == TrainMoreChoice(1.0, False)
