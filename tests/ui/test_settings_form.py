"""The settings form: generated fields, undoable edits, refused values, inline problems, presets, layers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QApplication, QCheckBox, QComboBox
from pytestqt.qtbot import QtBot

from loradesk.core.config import PRESETS, ModelSettings, RunConfig, describe_fields
from loradesk.core.project import Project
from loradesk.core.readiness import can_train
from loradesk.ui import model_section
from loradesk.ui.jobs import TaskState
from loradesk.ui.setting_fields import SciSpinBox, SpinBox
from loradesk.ui.settings_form import SettingsForm


def make_form(qtbot: QtBot, project: Project | None = None) -> SettingsForm:
    form = SettingsForm(project or Project(), QUndoStack())
    qtbot.addWidget(form)
    form.resize(480, 900)
    form.show()
    return form


def test_form_has_an_editor_with_help_for_every_setting(qtbot: QtBot) -> None:
    form = make_form(qtbot)
    for section in ("lora", "training"):
        for info in describe_fields(section):
            field = form.fields[info.path]
            assert field.widget.toolTip() == info.help
            assert field.get() == info.default
    assert isinstance(form.fields["training.scheduler"].widget, QComboBox)
    assert isinstance(form.fields["lora.use_dora"].widget, QCheckBox)
    rank = form.fields["lora.r"].widget
    assert isinstance(rank, SpinBox) and (rank.minimum(), rank.maximum()) == (1, 1024)
    assert form.fields["training.max_steps"].widget.text() == "Off (use epochs)"


def test_edits_write_project_settings_and_undo(qtbot: QtBot) -> None:
    form = make_form(qtbot)
    project, stack = form.project, form.undo_stack
    rank = form.fields["lora.r"].widget
    rank.selectAll()
    qtbot.keyClicks(rank, "16")
    assert project.config.lora.r == 16 and project.dirty
    assert stack.count() == 1  # typing "1" then "6" is one step
    form.fields["training.scheduler"].widget.setCurrentText("cosine")
    assert project.config.training.scheduler == "cosine"
    stack.undo()
    stack.undo()
    assert project.config.lora.r == 8 and project.config.training.scheduler == "linear"
    assert rank.value() == 8 and form.fields["training.scheduler"].widget.currentText() == "linear"


def test_learning_rate_accepts_scientific_notation(qtbot: QtBot) -> None:
    form = make_form(qtbot)
    rate = form.fields["training.learning_rate"].widget
    assert isinstance(rate, SciSpinBox)
    rate.selectAll()
    qtbot.keyClicks(rate, "2e-4")
    qtbot.keyClick(rate, Qt.Key.Key_Return)
    assert form.project.config.training.learning_rate == 2e-4
    rate.stepBy(1)
    assert form.project.config.training.learning_rate == 5e-4
    assert rate.text() == "0.0005"


def test_out_of_range_value_is_refused_with_reason(qtbot: QtBot) -> None:
    form = make_form(qtbot)
    rank = form.fields["lora.r"].widget
    message = form.fields["lora.r"].message
    rank.selectAll()
    qtbot.keyClicks(rank, "0")
    assert form.project.config.lora.r == 8  # not taken
    assert message.isVisible() and message.text() == "Not accepted: must be at least 1"
    rate = form.fields["training.learning_rate"].widget
    rate.selectAll()
    qtbot.keyClicks(rate, "3")
    assert form.project.config.training.learning_rate == 1e-3
    assert form.fields["training.learning_rate"].message.text() == "Not accepted: must be at most 1"


def test_invalid_settings_are_marked_and_reported(qtbot: QtBot) -> None:
    form = make_form(qtbot)
    reports: list[tuple[bool, str]] = []
    form.validity_changed.connect(lambda ok, reason: reports.append((ok, reason)))
    assert form.is_valid()

    form.source_combo.setCurrentIndex(form.source_combo.findData("hub"))
    assert form.project.config.model.kind == "hub"
    assert reports[-1] == (False, "Model: a hub model needs a name or path")
    assert form.name_edit.property("invalid") is True
    assert form.name_message.isVisible() and "needs a name" in form.name_message.text()
    assert form.download_button.isVisible() and not form.download_button.isEnabled()

    qtbot.keyClicks(form.name_edit, "HuggingFaceTB/SmolLM2-360M-Instruct")
    assert reports[-1] == (True, "") and form.name_edit.property("invalid") is False
    assert form.download_button.isEnabled()

    form.source_combo.setCurrentIndex(form.source_combo.findData("gguf"))
    assert reports[-1] == (False, "Model: a GGUF model must be a .gguf file")
    form.undo_stack.undo()
    assert form.source_combo.currentData() == "hub" and reports[-1] == (True, "")

    form.target_modules.auto.setChecked(False)  # no layer picked: invalid until some are
    assert not form.is_valid() and "Target modules" in form.reason()
    assert form.fields["lora.target_modules"].message.isVisible()


def test_presets_and_reset(qtbot: QtBot) -> None:
    form = make_form(qtbot)
    form.project.config.model.kind = "local"
    form.project.config.model.name = "/models/mine"
    form.project.config_changed()
    form.preset_combo.setCurrentText("Thorough")
    form.preset_combo.activated.emit(form.preset_combo.currentIndex())
    config = form.project.config
    assert config.lora.r == PRESETS["Thorough"]["lora"]["r"] == 32
    assert config.training.validation_fraction == 0.1 and config.model.name == "/models/mine"
    assert form.fields["lora.r"].widget.value() == 32
    assert form.fields["training.epochs"].widget.value() == 6.0
    assert form.preset_combo.currentText() == "Thorough"
    form.fields["lora.r"].widget.setValue(20)
    assert form.preset_combo.currentText() == "Custom"

    form.reset_to_defaults()
    defaults = RunConfig()
    assert form.project.config.lora == defaults.lora and form.project.config.training == defaults.training
    assert form.project.config.model.name == "/models/mine"
    form.undo_stack.undo()
    assert form.project.config.lora.r == 20


def test_form_follows_a_project_that_changes_elsewhere(qtbot: QtBot, tmp_path: Path) -> None:
    form = make_form(qtbot)
    other = RunConfig()
    other.lora.r = 64
    other.training.use_chat_template = False
    Project(config=other).save(tmp_path / "o.loradesk")
    form.project.replace_with(Project.load(tmp_path / "o.loradesk"))
    assert form.fields["lora.r"].widget.value() == 64
    assert form.fields["training.use_chat_template"].widget.isChecked() is False


def test_layers_are_found_in_the_model(qtbot: QtBot, tiny_model_dir: Path) -> None:
    form = make_form(qtbot)
    form.source_combo.setCurrentIndex(form.source_combo.findData("local"))
    form.name_edit.setText(str(tiny_model_dir))
    form.name_edit.textEdited.emit(str(tiny_model_dir))
    assert form.browse_button.isVisible() and not form.download_button.isVisible()
    form.target_modules.auto.setChecked(False)  # asks the model for its layers, on a worker thread
    qtbot.waitUntil(lambda: not form.is_busy() and bool(form.target_modules.names()), timeout=60_000)
    names = form.target_modules.names()
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(names)
    assert form.project.config.lora.target_modules == names and form.is_valid()
    form.target_modules._boxes["k_proj"].setChecked(False)
    assert "k_proj" not in form.project.config.lora.target_modules
    assert form.model_status.text().startswith("Ready:")


def test_model_errors_show_inline(qtbot: QtBot, tmp_path: Path) -> None:
    form = make_form(qtbot)
    form.source_combo.setCurrentIndex(form.source_combo.findData("local"))
    form.name_edit.setText(str(tmp_path))
    form.name_edit.textEdited.emit(str(tmp_path))
    form.find_layers()
    qtbot.waitUntil(lambda: not form.is_busy(), timeout=30_000)
    assert form.model_status.property("error") is True
    assert "has no config.json" in form.model_status.text()


def test_settings_that_cannot_train_are_explained_as_can_train_says(qtbot: QtBot) -> None:
    form = make_form(qtbot)
    form.project.config.lora.r = 0  # changed elsewhere (a hand-edited project file)
    form.project.config_changed()
    readiness = can_train(form.project.config, None)
    assert not readiness.ok and not form.is_valid()
    assert readiness.settings == (("lora.r", "must be at least 1 (got 0)"),)
    assert form.reason() == "Rank (r): must be at least 1 (got 0)"
    assert form.fields["lora.r"].message.text() == "must be at least 1 (got 0)"
    assert form.problems_label.text() == "Fix before training: " + form.reason()


def _fake_model_job(monkeypatch: pytest.MonkeyPatch, layers: dict[str, list[str]]
                    ) -> tuple[list[str], dict[str, threading.Event], dict[str, bool]]:
    """Replace the model download/scan with one that waits for its gate and returns ``layers[name]``."""
    calls: list[str] = []
    gates = {name: threading.Event() for name in layers}
    stopped: dict[str, bool] = {}

    def fetch(settings: ModelSettings, state: TaskState) -> tuple[Path, list[str]]:
        calls.append(settings.name)
        gates[settings.name].wait(30)
        stopped[settings.name] = state.stop_requested
        return Path(settings.name), layers[settings.name]

    monkeypatch.setattr(model_section, "resolve_and_discover", fetch)
    return calls, gates, stopped


def _scans_alive() -> bool:
    return any(thread.name == "loradesk-fetch" for thread in threading.enumerate())


def _choose_folder(form: SettingsForm, name: str) -> None:
    form.source_combo.setCurrentIndex(form.source_combo.findData("local"))
    form.name_edit.setText(name)
    form.name_edit.textEdited.emit(name)


def test_a_layer_scan_for_another_model_replaces_the_running_one(qtbot: QtBot,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls, gates, stopped = _fake_model_job(monkeypatch, {"/m/a": ["a_proj"], "/m/b": ["b_proj", "c_proj"]})
    form = make_form(qtbot)
    _choose_folder(form, "/m/a")
    form.find_layers()
    form.find_layers()  # the same model again while it runs: nothing new starts
    qtbot.waitUntil(lambda: calls == ["/m/a"])
    _choose_folder(form, "/m/b")
    form.find_layers()
    qtbot.waitUntil(lambda: calls == ["/m/a", "/m/b"])
    assert form.is_busy()
    gates["/m/b"].set()
    gates["/m/a"].set()
    qtbot.waitUntil(lambda: not form.is_busy() and not _scans_alive())
    QApplication.processEvents()  # whatever the replaced scan still delivered is handled now
    assert stopped == {"/m/a": True, "/m/b": False}  # the replaced scan was asked to stop
    assert form.target_modules.names() == ["b_proj", "c_proj"]
    assert form.target_modules.status.text() == "2 layer types: b_proj, c_proj"
    assert form.model_status.text() == "Ready: /m/b"


def test_layers_found_for_a_model_no_longer_chosen_are_not_offered(qtbot: QtBot,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls, gates, _stopped = _fake_model_job(monkeypatch, {"/m/a": ["a_proj"]})
    form = make_form(qtbot)
    _choose_folder(form, "/m/a")
    form.find_layers()
    qtbot.waitUntil(lambda: calls == ["/m/a"])
    _choose_folder(form, "/m/other")
    gates["/m/a"].set()
    qtbot.waitUntil(lambda: not form.is_busy())
    assert form.model_status.text() == "Ready: /m/a"
    assert form.target_modules.names() == [] and form.target_modules.find_button.isEnabled()


def test_the_stop_when_learned_settings_show_with_labels_and_write_the_config(qtbot: QtBot) -> None:
    form = make_form(qtbot)
    box = form.fields["training.stop_when_learned"].widget
    assert isinstance(box, QCheckBox) and box.isChecked() and box.text() == "Stop when learned"
    every = form.fields["training.learned_check_steps"].widget
    assert isinstance(every, SpinBox) and every.value() == 8
    labels = {label.text().rstrip(":") for label in form.findChildren(type(form.model_section.name_label))}
    assert {"Check learned every", "Learned at share", "Patience (checks)"} <= labels
    box.setChecked(False)
    assert form.project.config.training.stop_when_learned is False
    form.undo_stack.undo()
    assert form.project.config.training.stop_when_learned is True
