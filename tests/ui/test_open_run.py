"""File ▸ Open Run…: a run folder written by another process, followed live; a run whose base model is elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot
from test_training_job import tiny_config

from loradesk.core import opened_runs, runs, training
from loradesk.core.formats import read_dataset
from loradesk.core.project import Project
from loradesk.ui.compare_tab import DEFAULT_PROBE
from loradesk.ui.main_window import MainWindow
from loradesk.ui.runs_tab import COLUMNS, RunsTab

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"

#: Plays the training process on another machine: writes the run file, then the metrics a line at a time (the
#: line after the first ``first`` only half, until the test says go), then the final run file.
WRITER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from loradesk.core import liveness, runs

    run, source, final, first = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    lines = source.read_bytes().splitlines(keepends=True)
    record = {**json.loads(final.read_text()), "process": liveness.process_record()}
    runs.write_run_file(run, {**record, "result": {"status": "running"}})
    go, deadline = run.parent / "go", time.monotonic() + 120
    with open(run / runs.METRICS_FILE, "ab", buffering=0) as fh:
        for line in lines[:first]:
            fh.write(line)
            time.sleep(0.05)
        half = len(lines[first]) // 2
        fh.write(lines[first][:half])
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        fh.write(lines[first][half:])
        for line in lines[first + 1:]:
            time.sleep(0.05)
            fh.write(line)
    runs.write_run_file(run, record)
""")


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run (trained once for this module): the run "elsewhere" is a copy of it."""
    folder = tmp_path_factory.mktemp("runs-elsewhere")
    return training.run(tiny_config(tiny_model_dir, 8), read_dataset(DATA / "sample.json"), runs_dir=folder).run_dir


def foreign_copy(trained: Path, dest: Path, **record: str) -> tuple[Path, Path, Path]:
    """A copy of ``trained`` as if on a mounted filesystem: the run folder (without metrics), its metrics and
    its finished run file kept aside, with ``record``'s keys changed."""
    run = dest / "mnt" / "cluster" / trained.name
    shutil.copytree(trained, run)
    aside = dest / "aside"
    aside.mkdir()
    shutil.move(run / runs.METRICS_FILE, aside / runs.METRICS_FILE)
    final = {**runs.read_run_file(trained), **record}
    final.pop("process", None)
    (aside / "final.json").write_text(json.dumps(final), encoding="utf-8")
    return run, aside / runs.METRICS_FILE, aside / "final.json"


def make_window(qtbot: QtBot) -> MainWindow:
    window = MainWindow(Project.new_default(), probe_device=False, count_tokens=False)
    qtbot.addWidget(window)
    window.resize(1280, 820)
    window.show()
    return window


def runs_cell(tab: RunsTab, run: Path, column: str) -> str:
    row = next(r for r in range(tab.model.rowCount()) if tab.model.item(r, 0).data(Qt.ItemDataRole.UserRole + 1)
               == str(run))
    return tab.model.item(row, COLUMNS.index(column)).text()


def test_a_run_written_by_another_process_is_followed_live_until_it_ends(qtbot, trained, tiny_model_dir,
                                                                          tmp_path, shown_errors):
    run, metrics, final = foreign_copy(trained, tmp_path, base_model_dir=str(tiny_model_dir))
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
    losses = [r["step"] for r in rows if "loss" in r]
    first = 3
    runs.write_run_file(run, {**json.loads(final.read_text(encoding="utf-8")), "result": {"status": "running"}})
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run), str(metrics), str(final), str(first)],
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        window = make_window(qtbot)
        assert window.run_opener.open(run)
        tab = window.training_tab
        assert window.tabs.currentWidget() is tab
        assert tab.follower.run_dir == run
        assert runs_cell(window.runs_tab, run, "Status") == "running"

        # the first lines, not the half-written one after them
        qtbot.waitUntil(lambda: tab.plot.point_count() == len([s for s in losses if s <= rows[first - 1]["step"]]),
                        timeout=20_000)
        assert tab.phase_label.text().startswith(f"Following {run.name}")
        assert tab.progress_bar.value() == rows[first - 1]["step"]
        assert tab.follower.run_dir == run  # still following: the run file says "running"

        (run.parent / "go").touch()
        qtbot.waitUntil(lambda: tab.follower.run_dir is None, timeout=30_000)
        assert writer.wait(30) == 0
    finally:
        writer.kill()
        writer.wait()

    x, _ = tab.plot.raw_curve.getData()
    assert list(x) == losses  # every step once, in order
    info = runs.read_run(run)
    assert tab.phase_label.text() == f"Followed run: {info.status_label}"
    assert tab.progress_bar.value() == tab.progress_bar.maximum() == info.steps
    assert runs_cell(window.runs_tab, run, "Status") == info.status_label
    assert window.compare_tab.current_run() == run  # Compare works on it as on a run trained here
    assert shown_errors == []


def test_a_missing_base_model_is_asked_for_and_remembered_for_that_run(qtbot, trained, tiny_model_dir, tmp_path,
                                                                       reference_answer, shown_errors):
    run, metrics, final = foreign_copy(trained, tmp_path, base_model_dir="/cluster/hf-cache/tiny-llama",
                                       model="example-org/tiny-llama")
    shutil.copyfile(metrics, run / runs.METRICS_FILE)
    shutil.copyfile(final, run / runs.RUN_FILE)
    run_file = (run / runs.RUN_FILE).read_bytes()
    window = make_window(qtbot)

    assert window.run_opener.open(run)
    assert window.tabs.currentWidget() is window.runs_tab and window.runs_tab.selected_run() == run
    assert f"opened from {run.parent}" in window.runs_tab.detail_label.text()
    dialog = window.run_opener.base_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.choice() == "example-org/tiny-llama"  # the recorded model name, as a Hub id to start from

    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    dialog.model_edit.setText(str(not_a_model))
    dialog.accept()
    assert [e.title for e in shown_errors] == ["Cannot use this base model"]
    assert str(not_a_model) in shown_errors[0].message
    assert runs.read_run(run).base_model_dir == "/cluster/hf-cache/tiny-llama"

    assert window.run_opener.base_dialog is None
    window.runs_tab.compare_selected()  # "Compare this run" asks again while the base model is missing
    assert window.run_opener.base_dialog is not None
    window.run_opener.base_dialog.model_edit.setText(str(tiny_model_dir))
    window.run_opener.base_dialog.accept()
    assert runs.read_run(run).base_model_dir == str(tiny_model_dir)
    assert (run / runs.RUN_FILE).read_bytes() == run_file  # the run's own file is not rewritten
    assert opened_runs.remembered() == [run]

    restarted = RunsTab(Project.new_default())  # after a restart the opened run is listed again
    qtbot.addWidget(restarted)
    assert restarted.select_run(run)

    compare = window.compare_tab
    compare.max_tokens.setValue(16)
    window.runs_tab.compare_selected()
    assert window.tabs.currentWidget() is compare and compare.current_run() == run
    assert window.run_opener.base_dialog is None  # its base model is known now: nothing to ask
    with qtbot.waitSignal(compare.busy_changed, timeout=60_000, check_params_cb=lambda busy: not busy):
        compare.ask()
    assert compare.last_answers["tuned"] == reference_answer(tiny_model_dir, DEFAULT_PROBE, 16, adapter_dir=run)
    assert len(shown_errors) == 1


def test_a_folder_that_is_no_run_says_so(qtbot, tmp_path, shown_errors, monkeypatch):
    window = make_window(qtbot)
    file_menu = window.menuBar().actions()[0].menu()
    assert window.act_open_run in file_menu.actions()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(tmp_path))
    window.act_open_run.trigger()
    assert [e.title for e in shown_errors] == ["Cannot open the run"]
    assert str(tmp_path) in shown_errors[0].message and runs.RUN_FILE in shown_errors[0].message
    assert opened_runs.remembered() == []


def test_a_run_folder_dropped_on_the_runs_tab_opens(qtbot, trained, tiny_model_dir, tmp_path):
    run, _metrics, final = foreign_copy(trained, tmp_path, base_model_dir=str(tiny_model_dir))
    shutil.copyfile(final, run / runs.RUN_FILE)
    window = make_window(qtbot)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(run))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.runs_tab.dropEvent(event)
    assert event.isAccepted()
    assert window.runs_tab.selected_run() == run and opened_runs.remembered() == [run]
    assert window.run_opener.base_dialog is None  # its base model is here


def test_a_long_backlog_is_drawn_in_pieces_every_step_once(qtbot, tmp_path, tiny_model_dir, monkeypatch):
    from loradesk.core.config import RunConfig
    from loradesk.ui import run_follower

    monkeypatch.setattr(run_follower, "CHUNK_BYTES", 40_000)  # pieces of about 500 lines
    pieces: list[int] = []
    monkeypatch.setattr(run_follower.RunView, "show_steps",
                        lambda view, steps, show=run_follower.RunView.show_steps: pieces.append(len(steps))
                        or show(view, steps))
    run = tmp_path / "run"
    run.mkdir()
    record = {"created": "2026-12-01T04:00:00", "model": "m", "base_model_dir": str(tiny_model_dir),
              "config": RunConfig().to_dict()}
    runs.write_run_file(run, {**record, "result": {"status": "running"}})  # no process: it may be anywhere
    total = 2000
    with open(run / runs.METRICS_FILE, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"step": s, "max_steps": total, "epoch": s / total, "loss": 2 - s / total}) + "\n"
                      for s in range(1, total + 1))
    assert (run / runs.METRICS_FILE).stat().st_size > 3 * run_follower.CHUNK_BYTES
    window = make_window(qtbot)
    window.run_opener.open(run)
    tab = window.training_tab
    qtbot.waitUntil(lambda: tab.plot.point_count() == total, timeout=60_000)
    assert tab.follower.run_dir == run and len(pieces) > 3 and sum(pieces) == total
    runs.write_run_file(run, {**record, "result": {"status": "completed", "steps": total, "final_loss": 1.0}})
    qtbot.waitUntil(lambda: tab.follower.run_dir is None, timeout=20_000)
    x, _ = tab.plot.raw_curve.getData()
    assert list(x) == list(range(1, total + 1))
