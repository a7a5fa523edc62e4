"""The Runs tab over real run folders: listing, curves, open, export, compare."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices

from loradesk.core import runs, training
from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.formats import read_dataset
from loradesk.ui import errors
from loradesk.ui.runs_tab import COLUMNS, RunsTab

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def runs_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two finished tiny runs with different settings (trained once for this module)."""
    folder = tmp_path_factory.mktemp("runs")
    rows = read_dataset(DATA / "sample.json")
    for r, steps in ((4, 3), (8, 5)):
        config = RunConfig(model=ModelSettings(kind="local", name=str(tiny_model_dir)))
        config.lora.r = r
        t = config.training
        t.max_steps, t.batch_size, t.logging_steps, t.learning_rate = steps, 4, 1, 2e-3
        training.run(config, rows, runs_dir=folder)
    return folder


@pytest.fixture
def tab(qtbot, project, runs_dir) -> RunsTab:
    widget = RunsTab(project)
    widget.runs_dir = runs_dir
    qtbot.addWidget(widget)
    widget.resize(1000, 700)
    widget.show()
    yield widget
    widget.shutdown()


def cell(tab: RunsTab, row: int, column: str) -> str:
    return tab.model.item(row, COLUMNS.index(column)).text()


def test_lists_runs_newest_first_with_their_settings(tab, runs_dir):
    found = runs.list_runs(runs_dir)
    assert tab.model.rowCount() == 2
    for row, info in enumerate(found):
        assert cell(tab, row, "r / alpha") == f"{info.config.lora.r} / {info.config.lora.alpha}"
        assert cell(tab, row, "Steps") == str(info.steps)
        assert cell(tab, row, "Status") == "completed"
        assert cell(tab, row, "Final loss") == f"{info.final_loss:.4f}"
        assert cell(tab, row, "Model") == Path(info.model).name
        assert cell(tab, row, "Learning rate") == "0.002"
    assert tab.selected_run() == found[0].path


def test_selecting_a_run_shows_its_loss_curve(tab, runs_dir):
    for info in runs.list_runs(runs_dir):
        assert tab.select_run(info.path)
        steps = [m["step"] for m in runs.read_metrics(info.path) if "loss" in m]
        x, _ = tab.plot.raw_curve.getData()
        assert list(x) == steps and len(steps) == info.steps
        assert info.name in tab.detail_label.text()


def test_refresh_shows_a_recorded_score_and_keeps_the_selection(tab, runs_dir):
    older = runs.list_runs(runs_dir)[1].path
    tab.select_run(older)
    runs.record_score(older, 0.75)
    tab.refresh()
    assert tab.selected_run() == older
    row = tab.table.selectionModel().selectedRows()[0].row()
    assert cell(tab, row, "Score") == "75%"


def test_compare_this_run_emits_the_folder(qtbot, tab):
    with qtbot.waitSignal(tab.run_selected) as emitted:
        tab.compare_button.click()
    assert emitted.args == [str(tab.selected_run())]


def test_open_folder_opens_the_run_folder(tab, monkeypatch):
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url) or True))
    tab.open_button.click()
    assert [u.toLocalFile() for u in opened] == [str(tab.selected_run())]


def test_export_adapter_and_merged_model_in_the_background(qtbot, tab, tmp_path):
    busy: list[bool] = []
    tab.busy_changed.connect(busy.append)
    with qtbot.waitSignal(tab.busy_changed, timeout=60_000, check_params_cb=lambda b: not b):
        tab.export_adapter(tmp_path / "adapter")
        assert not tab.export_merged_button.isEnabled() and tab.busy.isVisible()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert tab.last_export == tmp_path / "adapter"

    with qtbot.waitSignal(tab.busy_changed, timeout=120_000, check_params_cb=lambda b: not b):
        tab.export_merged(tmp_path / "merged")
    assert busy == [True, False, True, False]
    assert (tmp_path / "merged" / "config.json").is_file()
    assert list((tmp_path / "merged").glob("*.safetensors"))
    assert not list((tmp_path / "merged").glob("adapter_*"))
    assert "Exported to" in tab.status_label.text() and tab.export_merged_button.isEnabled()


def test_an_export_failure_is_shown(qtbot, tab, tmp_path, shown_errors):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    with qtbot.waitSignal(tab.busy_changed, timeout=60_000, check_params_cb=lambda b: not b):
        tab.export_adapter(blocker / "adapter")
    box = errors.open_box(tab)
    assert box is not None and box.isVisible()
    assert [r.title for r in shown_errors] == ["Export failed"]
    assert "Export failed" in tab.status_label.text()


def test_an_empty_runs_folder(tab, tmp_path):
    tab.runs_dir = tmp_path / "none"
    assert tab.model.rowCount() == 0 and tab.selected_run() is None
    assert "No runs yet" in tab.detail_label.text()
    assert not tab.compare_button.isEnabled() and not tab.open_button.isEnabled()


def test_a_merged_export_that_cannot_be_written_is_one_line_and_leaves_nothing(qtbot, tab, tmp_path,
                                                                               shown_errors):
    """RLIMIT_FSIZE (SIGXFSZ ignored) makes the model file's write fail with EFBIG, as a full disk would."""
    import os
    import resource
    import signal

    dest = tmp_path / "merged"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        with qtbot.waitSignal(tab.busy_changed, timeout=60_000, check_params_cb=lambda b: not b):
            tab.export_merged(dest)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    (report,) = shown_errors
    assert report.message == f"{dest}: file too large (a file size limit was reached)"
    assert errors.open_box(tab).text() == report.message
    assert os.listdir(tmp_path) == []


def test_a_failed_run_says_why(tab, runs_dir, tmp_path):
    """The error a failed run recorded (here a NaN stop, as training words it) shows under its settings and
    on its status, with nothing to resume."""
    import shutil

    failed = tmp_path / "runs" / runs.list_runs(runs_dir)[0].name
    shutil.copytree(runs.list_runs(runs_dir)[0].path, failed)
    data = runs.read_run_file(failed)
    error = "The gradient norm became NaN at step 6 (loss 6.238): the learning rate 1 is probably too high <1>."
    runs.write_run_file(failed, {**data, "result": {"status": "failed", "error": error, "steps": 6}})
    tab.runs_dir = failed.parent
    assert tab.select_run(failed) and cell(tab, 0, "Status") == "failed"
    assert tab.model.item(0, COLUMNS.index("Status")).toolTip() == error
    assert tab.detail_label.text().endswith("<br>Failed: " + error.replace("<1>", "&lt;1&gt;"))
    assert not tab.resume_button.isEnabled()


def test_a_run_whose_process_died_before_a_checkpoint_says_it_cannot_be_resumed(tab, runs_dir, tmp_path):
    import shutil
    import socket

    import psutil

    dead = psutil.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process record for a process that is gone
    died = tmp_path / "runs" / "died"
    shutil.copytree(runs.list_runs(runs_dir)[0].path, died)
    shutil.rmtree(died / "checkpoints", ignore_errors=True)
    data = runs.read_run_file(died)
    runs.write_run_file(died, {**data, "result": {"status": "running"},
                               "process": {"pid": dead.pid, "started": 0.0, "host": socket.gethostname()}})
    tab.runs_dir = died.parent
    assert tab.select_run(died) and cell(tab, 0, "Status") == "interrupted"
    assert tab.detail_label.text().endswith("before its first checkpoint: nothing was kept, and it cannot be "
                                            "resumed.")
    assert not tab.resume_button.isEnabled()
