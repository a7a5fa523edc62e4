"""Run > Export Job... in the window (offscreen): the dialog, the folder written in the background from the open
project's rows and settings, and a refusal shown through the error path."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example
from loradesk.core.formats import read_dataset
from loradesk.core.project import Project
from loradesk.ui import job_export
from loradesk.ui.job_export import ExportJobDialog
from loradesk.ui.main_window import MainWindow


@pytest.fixture
def window(qtbot: QtBot) -> MainWindow:
    """The main window on the sample project; it closes without asking (edits go to the recovery file)."""
    win = MainWindow(Project.new_default(), probe_device=False, count_tokens=False)
    win.show()
    yield win
    assert win.close_keeping_unsaved()
    win.deleteLater()


def test_the_run_menu_action_writes_the_job_from_the_open_project(qtbot: QtBot, window: MainWindow, tmp_path: Path,
                                                                   shown_errors, monkeypatch) -> None:
    dataset = window.project.dataset
    dataset.append(Example("Which model?", "The one on the cluster.", split="validation"))
    window.project.config.training.seed = 11
    window.project.config_changed()
    run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
    assert window.act_export_job in run_menu.actions()

    asked: list[MainWindow] = []
    monkeypatch.setattr(job_export, "ask", lambda w: asked.append(w) or (tmp_path / "job", "Qwen/Qwen2.5-7B-Instruct"))
    window.act_export_job.trigger()
    assert asked == [window]
    qtbot.waitUntil(lambda: not window.jobs.busy("export-job") and (tmp_path / "job" / "launch.sh").is_file(),
                    timeout=30_000)

    rows = read_dataset(tmp_path / "job" / "data.jsonl")
    assert [(r.prompt, r.completion) for r in rows] == [(r.prompt, r.completion) for r in dataset]
    assert rows[-1].split == "validation" and all(r.split in ("train", "validation") for r in rows)
    saved = RunConfig.load(tmp_path / "job" / "run.json")
    assert (saved.model.kind, saved.model.name, saved.training.seed) == ("hub", "Qwen/Qwen2.5-7B-Instruct", 11)
    assert f"Job 'job' written to {tmp_path / 'job'}" in window.statusBar().currentMessage()
    assert shown_errors == []


def test_a_folder_that_is_not_empty_is_refused_through_the_error_path(qtbot: QtBot, window: MainWindow,
                                                                      tmp_path: Path, shown_errors) -> None:
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "keep.txt").write_text("mine", encoding="utf-8")
    job_export.start(window, tmp_path / "job")
    qtbot.waitUntil(lambda: len(shown_errors) == 1, timeout=30_000)
    assert shown_errors[0].title == "Export job failed"
    assert "already exists and is not an empty folder" in shown_errors[0].message
    assert [p.name for p in (tmp_path / "job").iterdir()] == ["keep.txt"]
    qtbot.waitUntil(lambda: not window.jobs.busy("export-job"))
    assert window.statusBar().currentMessage() == ""


def test_the_dialog_suggests_a_folder_and_needs_one(qtbot: QtBot, tmp_path: Path) -> None:
    dialog = ExportJobDialog(tmp_path / "my-job", "the built-in model", 185)
    qtbot.addWidget(dialog)
    assert dialog.choice() == (tmp_path / "my-job", "")
    assert "the built-in model" in dialog.model_edit.placeholderText()
    dialog.model_edit.setText(" Qwen/Qwen2.5-7B-Instruct ")
    assert dialog.choice() == (tmp_path / "my-job", "Qwen/Qwen2.5-7B-Instruct")
    dialog.path_edit.setText("  ")
    assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
