"""Turning on 'Trust remote code' asks first, naming the model's Python files, and records the trust."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from loradesk.core import trust
from loradesk.core.config import RunConfig
from loradesk.core.project import Project
from loradesk.ui import errors
from loradesk.ui.errors import ErrorReport
from loradesk.ui.settings_form import SettingsForm


def _form(qtbot: QtBot, folder: Path | str, kind: str = "local") -> SettingsForm:
    config = RunConfig()
    config.model.kind, config.model.name = kind, str(folder)
    form = SettingsForm(Project(config=config), QUndoStack())
    qtbot.addWidget(form)
    return form


def _model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "modeling_custom.py").write_text("print('hello')\n")
    return folder


def test_trusting_asks_naming_the_files_and_records_it(qtbot: QtBot, tmp_path: Path) -> None:
    folder = _model(tmp_path)
    form = _form(qtbot, folder)
    form.trust_check.click()
    box = form.trust_box
    assert box is not None and box.isVisible()
    assert box.text() == "Trust the Python code of model?" and "modeling_custom.py" in box.informativeText()
    assert not form.trust_check.isChecked() and not trust.is_trusted(folder)  # nothing before the answer
    box.button(QMessageBox.StandardButton.Yes).click()
    assert form.trust_check.isChecked()
    assert form.project.config.model.trust_remote_code
    assert trust.remote_code_allowed(folder, form.project.config.model.trust_remote_code)


def test_declining_leaves_it_off(qtbot: QtBot, tmp_path: Path) -> None:
    folder = _model(tmp_path)
    form = _form(qtbot, folder)
    form.trust_check.click()
    form.trust_box.button(QMessageBox.StandardButton.No).click()
    assert not form.trust_check.isChecked()
    assert not form.project.config.model.trust_remote_code
    assert not trust.is_trusted(folder)


def test_a_model_not_on_this_machine_cannot_be_trusted_yet(qtbot: QtBot,
                                                            shown_errors: list[ErrorReport]) -> None:
    form = _form(qtbot, "someone/not-downloaded-model", kind="hub")
    form.trust_check.click()
    assert [report.title for report in shown_errors] == ["Get the model first"]
    assert "download" in shown_errors[0].message and form.trust_box is None  # said, not asked
    box = errors.open_box(form.model_section)
    assert box is not None and box.text() == shown_errors[0].message
    box.button(QMessageBox.StandardButton.Ok).click()
    assert not form.trust_check.isChecked() and not form.project.config.model.trust_remote_code


def test_a_project_saying_trust_shows_it_off_until_the_user_trusts_the_model(qtbot: QtBot, tmp_path: Path) -> None:
    folder = _model(tmp_path)
    config = RunConfig()
    config.model.kind, config.model.name, config.model.trust_remote_code = "local", str(folder), True
    form = SettingsForm(Project(config=config), QUndoStack())
    qtbot.addWidget(form)
    assert not form.trust_check.isChecked()  # the file's say-so is not trust
    trust.trust_model(folder)
    form.load_from_config()
    assert form.trust_check.isChecked()
