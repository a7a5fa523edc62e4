"""Runs tab > Export GGUF: the dialog, the background export with progress, Cancel, and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialogButtonBox

from loradesk.core import runs
from loradesk.core.config import RunConfig
from loradesk.ui import gguf_export
from loradesk.ui.runs_tab import RunsTab


@pytest.fixture(scope="module")
def runs_dir(lively_adapter: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One completed run on the tiny llama (a non-zero adapter)."""
    model_dir, adapter_dir = lively_adapter
    folder = tmp_path_factory.mktemp("runs")
    run = folder / "20261201-100000-tiny"
    shutil.copytree(adapter_dir, run)
    cfg = RunConfig().to_dict()
    cfg["model"].update(kind="local", name=str(model_dir))
    (run / runs.RUN_FILE).write_text(json.dumps({
        "created": "2026-12-01T10:00:00", "model": "tiny", "base_model_dir": str(model_dir), "config": cfg,
        "result": {"status": "completed", "steps": 1}}), encoding="utf-8")
    return folder


@pytest.fixture
def tab(qtbot, project, runs_dir) -> RunsTab:
    widget = RunsTab(project)
    widget.runs_dir = runs_dir
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    widget.shutdown()


def test_export_gguf_runs_in_the_background_with_progress_and_shows_the_file(qtbot, tab, tmp_path):
    progress: list[tuple[str, float | None]] = []
    original = tab._on_progress
    tab._on_progress = lambda text, fraction: (progress.append((text, fraction)), original(text, fraction))
    dest = tmp_path / "tiny.gguf"
    assert tab.export_gguf_button.isEnabled()
    with qtbot.waitSignal(tab.busy_changed, timeout=60_000, check_params_cb=lambda busy: not busy):
        tab.export_gguf(dest, "q8_0")
        assert tab.cancel_button.isVisible() and not tab.export_gguf_button.isEnabled()
    assert dest.is_file() and (tmp_path / "Modelfile").is_file()
    assert tab.last_export == dest
    assert f"GGUF (q8_0, {dest.stat().st_size / 1e6:.1f} MB) written to {dest}" in tab.status_label.text()
    assert "ollama create NAME -f" in tab.status_label.text()
    assert progress[0] == ("Merging the adapter into the base model…", None)
    fractions = [f for _, f in progress if f is not None]  # reports closer than 50 ms apart are thinned out
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert not tab.cancel_button.isVisible() and tab.export_gguf_button.isEnabled()


def test_cancel_stops_the_export_and_leaves_nothing(qtbot, tab, tmp_path, shown_errors):
    with qtbot.waitSignal(tab.busy_changed, timeout=60_000, check_params_cb=lambda busy: not busy):
        tab.export_gguf(tmp_path / "tiny.gguf")
        tab.cancel_button.click()
    assert list(tmp_path.iterdir()) == []
    assert tab.status_label.text() == "Export cancelled: nothing was written."
    assert shown_errors == []


def test_an_export_error_is_shown_once(qtbot, tab, tmp_path, shown_errors):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    with qtbot.waitSignal(tab.busy_changed, timeout=60_000, check_params_cb=lambda busy: not busy):
        tab.export_gguf(blocker / "tiny.gguf")
    assert [r.title for r in shown_errors] == ["Export failed"]
    assert list(tmp_path.iterdir()) == [blocker]


def test_the_dialog_gives_a_gguf_path_and_the_chosen_weights(qtbot, tmp_path):
    dialog = gguf_export.GgufExportDialog(tmp_path / "suggested.gguf")
    qtbot.addWidget(dialog)
    assert dialog.choice() == (tmp_path / "suggested.gguf", "f16")
    dialog.path_edit.setText(str(tmp_path / "mine"))
    dialog.quant_box.setCurrentIndex(1)
    assert dialog.choice() == (tmp_path / "mine.gguf", "q8_0")
    dialog.path_edit.setText("  ")
    assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
