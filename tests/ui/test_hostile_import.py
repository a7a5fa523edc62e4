"""Hostile files through the window's own import: rows with control characters arrive flagged in the Checks
panel (one undoable fix), and a file that fails leaves the open dataset exactly as it was."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hostile_files import dataset_files
from hypothesis import HealthCheck, given, settings
from PySide6.QtWidgets import QDialog
from pytestqt.qtbot import QtBot

from loradesk.core.dataset import Dataset, Example
from loradesk.core.formats import FormatError, read_dataset
from loradesk.core.project import Project
from loradesk.ui import errors
from loradesk.ui.errors import ErrorReport
from loradesk.ui.import_dialogs import ColumnMappingDialog
from loradesk.ui.main_window import MainWindow

START = (Example("Open row?", "Kept."), Example("Second?", "Also kept."))


def make_window(qtbot: QtBot) -> MainWindow:
    project = Project(Dataset(list(START)))
    window = MainWindow(project, probe_device=False, count_tokens=False)
    qtbot.addWidget(window, before_close_func=lambda w: w.project.dirty and w.project.save(
        Path(tempfile.mkdtemp()) / "teardown.loradesk"))
    window.show()
    return window


def test_nul_rows_import_flagged_and_one_fix_removes_them(qtbot: QtBot, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    window = make_window(qtbot)
    path = tmp_path / "nul.csv"
    path.write_bytes(b"prompt,completion\r\nN\x00UL?,Bell\x07 ok\r\n")
    window.import_file(path, mode="append")
    qtbot.waitUntil(lambda: len(window.project.dataset) == 3, timeout=60_000)
    assert window.project.dataset[2] == Example("N\x00UL?", "Bell\x07 ok")
    panel = window.dataset_tab.checks
    qtbot.waitUntil(lambda: panel.is_current() and panel.card("control") is not None, timeout=60_000)
    (fix,) = next(r for r in panel.results() if r.key == "control").fixes
    panel._apply(fix)
    assert window.undo_stack.undoText() == "Remove control characters from 1 row"
    assert window.project.dataset[2] == Example("NUL?", "Bell ok")
    window.undo_stack.undo()
    assert window.project.dataset[2] == Example("N\x00UL?", "Bell\x07 ok")


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          deadline=None)
@given(case=dataset_files())
def test_failed_import_leaves_the_open_dataset_unchanged(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch,
                                                        shown_errors: list[ErrorReport],
                                                        case: tuple[str, bytes]) -> None:
    name, content = case
    shown_errors.clear()  # the fixture is shared by the examples
    monkeypatch.setattr(ColumnMappingDialog, "exec", lambda self: QDialog.DialogCode.Rejected)
    folder = Path(tempfile.mkdtemp())
    path = folder / name
    path.write_bytes(content)
    try:
        expected: list[Example] | None = read_dataset(path)
    except FormatError:
        expected = None
    window = make_window(qtbot)
    window.import_file(path, mode="append")
    qtbot.waitUntil(lambda: not window.is_importing(), timeout=60_000)
    rows = window.project.dataset.rows
    if expected is None:
        assert rows == START and not window.project.dirty
        assert all(e.message.startswith(name) for e in shown_errors)  # a rejected mapping offer shows none
    else:
        assert rows == START + tuple(expected) and shown_errors == []
        window.project.save(folder / "kept.loradesk")  # so closing does not ask
    window.close()
    errors.close_all()
