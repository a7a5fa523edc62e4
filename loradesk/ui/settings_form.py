"""The settings form: generated from :func:`loradesk.core.config.describe_fields`, plus a model picker.

Every change writes a new ``RunConfig`` into the project through an undoable command; the form
re-reads the project's settings whenever they change elsewhere (undo, preset, open). Problems from
``RunConfig.problems()`` are shown beside their field, and :attr:`SettingsForm.validity_changed` tells
the window whether training can start (and if not, why).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QUndoStack, QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.config import PRESETS, FieldInfo, ModelSettings, RunConfig, apply_preset, describe_fields
from loradesk.core.project import ConfigChanged, Project, ProjectEvent, ProjectLoaded
from loradesk.ui.tasks import Tasks
from loradesk.ui.undo import ConfigCommand

MODEL_SOURCES = (
    ("default", "Built-in default (SmolLM2-135M-Instruct)"),
    ("hub", "Hugging Face Hub id"),
    ("local", "Local folder"),
    ("gguf", "GGUF file"),
)
NAME_PLACEHOLDERS = {
    "default": "Ships with LoRA Desk, works offline",
    "hub": "e.g. HuggingFaceTB/SmolLM2-360M-Instruct",
    "local": "A folder with config.json and safetensors",
    "gguf": "A .gguf model file",
}
#: Training fields shown first; the rest go to "Advanced".
MAIN_TRAINING = ("epochs", "max_steps", "learning_rate", "scheduler", "warmup_ratio", "batch_size", "grad_accum",
                 "max_length")
#: What 0 means for fields where it is a switch rather than a number.
ZERO_MEANS = {"training.max_steps": "Off (use epochs)", "training.eval_steps": "Each epoch",
              "training.save_steps": "Each epoch", "training.save_minutes": "Off", "training.threads": "Auto",
              "training.validation_fraction": "None"}
INVALID_STYLE = """
*[invalid="true"] { border: 1px solid #d64545; border-radius: 3px; }
QLabel#fieldMessage { color: #d64545; }
QLabel#modelStatus[error="true"] { color: #d64545; }
"""


def _range_message(value: float, minimum: float, maximum: float) -> str:
    if value < minimum:
        return f"must be at least {minimum:g}"
    if value > maximum:
        return f"must be at most {maximum:g}"
    return ""


class SpinBox(QSpinBox):
    """A QSpinBox that says why a typed value is refused (``range_hint``) instead of silently ignoring it."""

    range_hint = Signal(str)

    def validate(self, text: str, pos: int) -> object:
        result = super().validate(text, pos)
        value, ok = self.locale().toInt(text.strip().replace(self.locale().groupSeparator(), ""))
        self.range_hint.emit(_range_message(value, self.minimum(), self.maximum()) if ok else "")
        return result


class DoubleSpinBox(QDoubleSpinBox):
    """A QDoubleSpinBox with ``range_hint`` like :class:`SpinBox`."""

    range_hint = Signal(str)

    def validate(self, text: str, pos: int) -> object:
        result = super().validate(text, pos)
        value, ok = self.locale().toDouble(text.strip())
        self.range_hint.emit(_range_message(value, self.minimum(), self.maximum()) if ok else "")
        return result


class SciSpinBox(QDoubleSpinBox):
    """A spin box for small rates: shows ``0.0002`` or ``1e-05``, accepts ``2e-4``, steps 1-2-5 per decade."""

    range_hint = Signal(str)
    _LADDER = (1.0, 2.0, 5.0)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(12)

    def textFromValue(self, value: float) -> str:
        return f"{value:.4g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> object:
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            self.range_hint.emit("")
            ok = re.fullmatch(r"[0-9.eE+-]*", stripped) is not None
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid, text, pos)
        message = _range_message(value, self.minimum(), self.maximum())
        self.range_hint.emit(message)
        return (QValidator.State.Intermediate if message else QValidator.State.Acceptable, text, pos)

    def fixup(self, text: str) -> str:
        return self.textFromValue(self.value())

    def stepBy(self, steps: int) -> None:
        value = self.value()
        if value <= 0:
            self.setValue(self.minimum())
            return
        decade = math.floor(math.log10(value) + 1e-9)
        mantissa = value / 10**decade
        position = min(range(3), key=lambda i: abs(self._LADDER[i] - mantissa)) + 3 * decade + steps
        self.setValue(self._LADDER[position % 3] * 10 ** (position // 3))


@dataclass
class _Field:
    """One generated editor: how to read it, how to set it, and where its problems go."""

    info: FieldInfo
    widget: QWidget
    message: QLabel
    get: Callable[[], Any]
    set: Callable[[Any], None]


class TargetModules(QWidget):
    """Which layers get an adapter: "auto" (all) or the checked layer names found in the model."""

    changed = Signal()
    find_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.auto = QCheckBox("All linear layers (auto)")
        self.find_button = QPushButton("Find layers")
        self.find_button.setToolTip("Read the model's layer names so you can pick some")
        self.status = QLabel()
        self.status.setObjectName("hintLabel")
        self.status.setWordWrap(True)
        self._grid = QGridLayout()
        self._grid.setContentsMargins(18, 0, 0, 0)
        self._grid.setHorizontalSpacing(12)
        self._boxes: dict[str, QCheckBox] = {}
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.auto)
        top.addStretch(1)
        top.addWidget(self.find_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addLayout(self._grid)
        layout.addWidget(self.status)
        self.status.hide()
        self.auto.toggled.connect(self._on_auto)
        self.find_button.clicked.connect(self.find_requested)

    def names(self) -> list[str]:
        return list(self._boxes)

    def set_names(self, names: list[str], checked: list[str] | None = None) -> None:
        """Show a checkbox per layer name (keeping current checks unless ``checked`` is given)."""
        keep = set(self.checked_names() if checked is None else checked)
        for box in self._boxes.values():
            self._grid.removeWidget(box)
            box.deleteLater()
        self._boxes = {}
        for i, name in enumerate(dict.fromkeys(names)):
            box = QCheckBox(name)
            box.setChecked(name in keep)
            box.setEnabled(not self.auto.isChecked())
            box.toggled.connect(self.changed)
            self._grid.addWidget(box, i // 3, i % 3)
            self._boxes[name] = box

    def checked_names(self) -> list[str]:
        return [name for name, box in self._boxes.items() if box.isChecked()]

    def value(self) -> list[str]:
        return ["auto"] if self.auto.isChecked() else self.checked_names()

    def set_value(self, value: list[str]) -> None:
        auto = value == ["auto"] or "auto" in value
        self.auto.blockSignals(True)
        self.auto.setChecked(auto)
        self.auto.blockSignals(False)
        explicit = [] if auto else list(value)
        self.set_names(self.names() + [n for n in explicit if n not in self._boxes],
                       checked=explicit if not auto else self.checked_names())
        self._enable_boxes()

    def check_all(self) -> None:
        for box in self._boxes.values():
            box.blockSignals(True)
            box.setChecked(True)
            box.blockSignals(False)
        self.changed.emit()

    def set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def _enable_boxes(self) -> None:
        for box in self._boxes.values():
            box.setEnabled(not self.auto.isChecked())

    @Slot(bool)
    def _on_auto(self, on: bool) -> None:
        self._enable_boxes()
        self.changed.emit()
        if not on and not self._boxes:
            self.find_requested.emit()


def resolve_and_discover(settings: ModelSettings, discover: bool,
                         progress: Callable[[str, float | None], None]) -> tuple[Path, list[str]]:
    """Get the model folder (downloading/converting as needed) and, if asked, its layer names."""
    from loradesk.core import models

    model_dir = models.resolve_model(settings, progress=progress)
    if not discover:
        return model_dir, []
    progress("Reading the model's layers…", None)
    return model_dir, models.discover_target_modules(model_dir, settings.trust_remote_code)


class SettingsForm(QWidget):
    """Model, LoRA and training settings of a project."""

    #: (ok, reason): reason lists the invalid fields and why, empty when ok.
    validity_changed = Signal(bool, str)

    def __init__(self, project: Project, undo_stack: QUndoStack | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.undo_stack = undo_stack
        self.fields: dict[str, _Field] = {}
        self._loading = False
        self._writing = False
        self._validity: tuple[bool, str] | None = None
        self._tasks = Tasks(self)
        self._busy_model = False
        self._layers_for: str | None = None  # the model settings the layer checkboxes were read from
        self._job_key: str | None = None
        self.trust_box: QMessageBox | None = None  # the confirmation shown when trust is turned on
        self._build()
        self._unsubscribe = project.subscribe(self._on_project_event)
        self.destroyed.connect(self._unsubscribe)
        self.load_from_config()

    # --- building --------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.setStyleSheet(INVALID_STYLE)
        self.preset_combo = QComboBox()
        self.preset_combo.addItem("Custom")
        self.preset_combo.addItems(list(PRESETS))
        self.preset_combo.setToolTip("Start from a tested combination of LoRA and training settings "
                                     "(the model is kept)")
        self.reset_button = QPushButton("Reset to defaults")
        self.reset_button.setToolTip("Put every LoRA and training setting back to its default (the model is kept)")
        top = QHBoxLayout()
        top.addWidget(QLabel("Preset:"))
        top.addWidget(self.preset_combo, 1)
        top.addWidget(self.reset_button)

        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 6, 0)
        body_layout.setSpacing(10)
        body_layout.addWidget(self._build_model_group())
        lora = list(describe_fields("lora"))
        training = list(describe_fields("training"))
        body_layout.addWidget(self._group("LoRA adapter", lora))
        body_layout.addWidget(self._group("Training", [f for f in training if f.name in MAIN_TRAINING]))
        body_layout.addWidget(self._group("Advanced", [f for f in training if f.name not in MAIN_TRAINING]))
        body_layout.addStretch(1)
        labels = [label for label in body.findChildren(QLabel) if label.buddy() is not None] + [self.name_label]
        width = max(label.sizeHint().width() for label in labels)
        for label in [*labels, *self._plain_labels]:
            label.setMinimumWidth(width)
            label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        self.scroll = QScrollArea()
        self.scroll.setWidget(body)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for combo in body.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        bar = self.scroll.verticalScrollBar().sizeHint().width()
        self.scroll.setMinimumWidth(body.minimumSizeHint().width() + bar + 4)
        self.problems_label = QLabel()
        self.problems_label.setObjectName("fieldMessage")
        self.problems_label.setWordWrap(True)
        self.problems_label.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 0, 0, 0)
        layout.setSpacing(8)
        layout.addLayout(top)
        layout.addWidget(self.problems_label)
        layout.addWidget(self.scroll, 1)
        self.setMinimumWidth(360)

        self.preset_combo.activated.connect(self._on_preset)
        self.reset_button.clicked.connect(self.reset_to_defaults)

    def _message_label(self) -> QLabel:
        label = QLabel()
        label.setObjectName("fieldMessage")
        label.setWordWrap(True)
        label.hide()
        return label

    def _cell(self, editor: QWidget, message: QLabel) -> QWidget:
        cell = QWidget()
        layout = QVBoxLayout(cell)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(editor)
        layout.addWidget(message)
        return cell

    def _group(self, title: str, infos: list[FieldInfo]) -> QGroupBox:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for info in infos:
            field = self._make_field(info)
            self.fields[info.path] = field
            cell = self._cell(field.widget, field.message)
            cell.setToolTip(info.help)
            if isinstance(field.widget, QCheckBox):
                form.addRow("", cell)
            else:
                label = QLabel(info.label + ":")
                label.setToolTip(info.help)
                label.setBuddy(field.widget)
                form.addRow(label, cell)
        return box

    def _make_field(self, info: FieldInfo) -> _Field:
        message = self._message_label()
        default = info.default
        changed = self._writer(info)
        widget: Any
        if isinstance(default, bool):
            widget = QCheckBox(info.label)
            widget.toggled.connect(changed)
            get, put = widget.isChecked, widget.setChecked
        elif info.choices:
            widget = QComboBox()
            widget.addItems(list(info.choices))
            widget.currentTextChanged.connect(changed)
            get, put = widget.currentText, widget.setCurrentText
        elif isinstance(default, list):
            widget = TargetModules()
            widget.changed.connect(changed)
            widget.find_requested.connect(self.find_layers)
            get, put = widget.value, widget.set_value
            self.target_modules = widget
        elif isinstance(default, int):
            widget = SpinBox()
            widget.setRange(int(info.minimum if info.minimum is not None else 0),
                            int(info.maximum if info.maximum is not None else 2**31 - 1))
            widget.setGroupSeparatorShown(info.maximum is not None and info.maximum >= 100_000)
            widget.valueChanged.connect(changed)
            get, put = widget.value, widget.setValue
        elif isinstance(default, float):
            if info.decimals and info.decimals > 4:
                widget = SciSpinBox()
            else:
                widget = DoubleSpinBox()
                widget.setDecimals(info.decimals or 2)
            widget.setRange(info.minimum if info.minimum is not None else 0.0,
                            info.maximum if info.maximum is not None else 1e9)
            if info.step:
                widget.setSingleStep(info.step)
            widget.valueChanged.connect(changed)
            get, put = widget.value, widget.setValue
        else:
            widget = QLineEdit()
            widget.textEdited.connect(changed)
            get, put = widget.text, widget.setText
        if isinstance(widget, SpinBox | DoubleSpinBox | SciSpinBox):
            widget.setKeyboardTracking(True)
            widget.setAccelerated(True)
            widget.setMaximumWidth(180)
            widget.range_hint.connect(lambda text, m=message: self._show_hint(m, text))
            widget.editingFinished.connect(lambda m=message, p=info.path: self._clear_hint(m, p))
            if info.path in ZERO_MEANS and widget.minimum() == 0:
                widget.setSpecialValueText(ZERO_MEANS[info.path])
        if isinstance(widget, QComboBox):
            widget.setMaximumWidth(220)
        widget.setToolTip(info.help)
        return _Field(info, widget, message, get, put)

    def _build_model_group(self) -> QGroupBox:
        box = QGroupBox("Model")
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        infos = {f.name: f for f in describe_fields("model")}

        self.source_combo = QComboBox()
        for kind, text in MODEL_SOURCES:
            self.source_combo.addItem(text, kind)
        self.source_combo.setToolTip(infos["kind"].help)
        self.name_edit = QLineEdit()
        self.name_edit.setToolTip(infos["name"].help)
        self.name_edit.setClearButtonEnabled(True)
        self.browse_button = QPushButton("Browse…")
        self.download_button = QPushButton("Download")
        self.download_button.setToolTip("Download the model from the Hugging Face Hub now (training would "
                                        "otherwise download it when it starts)")
        name_row = QHBoxLayout()
        name_row.setContentsMargins(0, 0, 0, 0)
        name_row.addWidget(self.name_edit, 1)
        name_row.addWidget(self.browse_button)
        name_row.addWidget(self.download_button)
        name_widget = QWidget()
        name_widget.setLayout(name_row)
        self.name_message = self._message_label()
        self.revision_edit = QLineEdit()
        self.revision_edit.setPlaceholderText("main")
        self.revision_edit.setToolTip(infos["revision"].help)
        self.trust_check = QCheckBox(infos["trust_remote_code"].label)
        self.trust_check.setToolTip(infos["trust_remote_code"].help)
        self.model_progress = QProgressBar()
        self.model_progress.setTextVisible(False)
        self.model_progress.setMaximumHeight(8)
        self.model_progress.hide()
        self.model_status = QLabel()
        self.model_status.setObjectName("modelStatus")
        self.model_status.setWordWrap(True)
        self.model_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_status.hide()

        source_label = QLabel("Source:")
        revision_label = QLabel("Revision:")
        self._plain_labels = [source_label, revision_label]
        form.addRow(source_label, self.source_combo)
        self.name_label = QLabel("Model:")
        form.addRow(self.name_label, self._cell(name_widget, self.name_message))
        form.addRow(revision_label, self.revision_edit)
        form.addRow("", self.trust_check)
        form.addRow("", self.model_progress)
        form.addRow("", self.model_status)
        self._model_form = form

        self.source_combo.currentIndexChanged.connect(self._on_source)
        self.name_edit.textEdited.connect(self._on_name)
        self.revision_edit.textEdited.connect(
            lambda text: self._write("model", "revision", text.strip(), "model revision"))
        self.trust_check.toggled.connect(self._on_trust)
        self.browse_button.clicked.connect(self.browse_model)
        self.download_button.clicked.connect(self.download_model)
        return box

    # --- trusting the model's own code ------------------------------------------------------------------
    @Slot(bool)
    def _on_trust(self, on: bool) -> None:
        """Turning trust on asks first, naming the model's Python files, and records the trust in the store."""
        if self._loading:
            return
        if not on:
            self._write("model", "trust_remote_code", False, "trust remote code")
            return
        from loradesk.core import models, trust

        self._set_trust_check(False)  # until the user confirms
        folder = models.local_model_folder(self.project.config.model)
        if folder is None:
            self.trust_box = self._message_box(
                QMessageBox.Icon.Information, "Get the model first",
                "LoRA Desk shows which Python files a model would run before you trust it: download or "
                "choose the model first, then turn on 'Trust remote code'.", QMessageBox.StandardButton.Ok)
            return
        files = trust.python_files(folder)
        # The question leads the box: window titles are not shown everywhere (macOS sheets have none).
        box = self._message_box(QMessageBox.Icon.Warning, "Trust this model's code?",
                                f"Trust the Python code of {folder.name}?",
                                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                trust.warning_text(folder, files))
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.buttonClicked.connect(lambda button: self._trust_answered(
            folder, box.standardButton(button) == QMessageBox.StandardButton.Yes))
        self.trust_box = box

    def _message_box(self, icon: QMessageBox.Icon, title: str, text: str,
                     buttons: QMessageBox.StandardButton, details: str = "") -> QMessageBox:
        box = QMessageBox(icon, title, text, buttons, self)
        box.setInformativeText(details)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        return box

    def _trust_answered(self, folder: Path, yes: bool) -> None:
        if not yes:
            return
        from loradesk.core import trust

        trust.trust_model(folder, self.project.config.model.name)
        self._set_trust_check(True)
        self._write("model", "trust_remote_code", True, "trust remote code")

    def _model_trusted(self) -> bool:
        """Whether the user trusted the chosen model's code (a project file saying so is not enough)."""
        from loradesk.core import models, trust

        folder = models.local_model_folder(self.project.config.model)
        return folder is not None and trust.is_trusted(folder)

    def _set_trust_check(self, on: bool) -> None:
        self.trust_check.blockSignals(True)
        self.trust_check.setChecked(on)
        self.trust_check.blockSignals(False)

    # --- reading and writing the project's settings ----------------------------------------------------
    def _writer(self, info: FieldInfo) -> Callable[..., None]:
        def changed(*_args: Any) -> None:
            self._write(info.section, info.name, self.fields[info.path].get(), info.label)
        return changed

    def _write(self, section: str, name: str, value: Any, label: str) -> None:
        """Put one value into the project's settings (one undo step per run of edits to the same field)."""
        if self._loading:
            return
        data = self.project.config.to_dict()
        if data[section][name] == value:
            return
        data[section][name] = value
        self._apply(data, f"Change {label}", f"{section}.{name}")

    def _apply(self, data: dict[str, Any], text: str, merge_key: str | None = None) -> None:
        self._writing = True
        try:
            if self.undo_stack is not None:
                self.undo_stack.push(ConfigCommand(self.project, data, text, merge_key))
            else:
                self.project.config = RunConfig.from_dict(data)
        finally:
            self._writing = False
        if merge_key is None:  # a preset or reset: many fields changed
            self.load_from_config()
        else:
            self._after_change()

    def load_from_config(self) -> None:
        """Show the project's current settings in every editor."""
        config = self.project.config
        self._loading = True
        try:
            for path, field in self.fields.items():
                section, name = path.split(".")
                field.widget.blockSignals(True)
                field.set(getattr(getattr(config, section), name))
                field.widget.blockSignals(False)
            model = config.model
            index = max(0, self.source_combo.findData(model.kind))
            self.source_combo.setCurrentIndex(index)
            if self.name_edit.text() != model.name:
                self.name_edit.setText(model.name)
            if self.revision_edit.text() != model.revision:
                self.revision_edit.setText(model.revision)
            self.trust_check.setChecked(model.trust_remote_code and self._model_trusted())
        finally:
            self._loading = False
        self._after_change()

    def _after_change(self) -> None:
        self._update_model_widgets()
        self._update_preset()
        if self._layers_for is not None and self._layers_for != self._model_key():
            self._layers_for = None  # a different model: its layers are unknown
        self.revalidate()

    def _on_project_event(self, event: ProjectEvent) -> None:
        if isinstance(event, ConfigChanged | ProjectLoaded) and not self._writing:
            self.load_from_config()

    # --- validation ------------------------------------------------------------------------------------
    def problems(self) -> list[tuple[str, str]]:
        """``(label, message)`` for each invalid setting."""
        out = []
        for path, message in self.project.config.problems():
            field = self.fields.get(path)
            label = field.info.label if field else {"model.name": "Model", "model.kind": "Source"}.get(path, path)
            out.append((label, message))
        return out

    def is_valid(self) -> bool:
        return not self.project.config.problems()

    def reason(self) -> str:
        """Why training cannot start with these settings ("" when it can)."""
        return "; ".join(f"{label}: {message}" for label, message in self.problems())

    def revalidate(self) -> None:
        problems = dict(self.project.config.problems())
        for path, field in self.fields.items():
            self._mark(field.widget, field.message, problems.get(path, ""))
        self._mark(self.name_edit, self.name_message, problems.get("model.name", ""))
        reason = self.reason()
        self.problems_label.setText(f"Fix before training: {reason}" if reason else "")
        self.problems_label.setVisible(bool(reason))
        state = (not problems, reason)
        if state != self._validity:
            self._validity = state
            self.validity_changed.emit(*state)

    def _mark(self, widget: QWidget, message: QLabel, text: str) -> None:
        if bool(widget.property("invalid")) != bool(text):
            widget.setProperty("invalid", bool(text))
            widget.style().unpolish(widget)
            widget.style().polish(widget)
        message.setText(text)
        message.setVisible(bool(text))

    def _show_hint(self, message: QLabel, text: str) -> None:
        """A typed value outside the allowed range: say why it is not taken."""
        if text:
            message.setText(f"Not accepted: {text}")
            message.setVisible(True)

    def _clear_hint(self, message: QLabel, path: str) -> None:
        problems = dict(self.project.config.problems())
        message.setText(problems.get(path, ""))
        message.setVisible(bool(problems.get(path)))

    # --- presets ---------------------------------------------------------------------------------------
    @Slot(int)
    def _on_preset(self, index: int) -> None:
        if index > 0:
            self.apply_preset(self.preset_combo.itemText(index))

    def apply_preset(self, name: str) -> None:
        self._apply(apply_preset(self.project.config, name).to_dict(), f"Apply preset {name}")

    @Slot()
    def reset_to_defaults(self) -> None:
        data = RunConfig().to_dict()
        data["model"] = self.project.config.model.to_dict()
        data["name"] = self.project.config.name
        self._apply(data, "Reset settings to defaults")

    def _update_preset(self) -> None:
        data = self.project.config.to_dict()
        match = next((name for name, values in PRESETS.items()
                      if all(data[s][k] == v for s, part in values.items() for k, v in part.items())), None)
        self.preset_combo.setCurrentIndex(self.preset_combo.findText(match) if match else 0)

    # --- model source ----------------------------------------------------------------------------------
    def _model_key(self) -> str:
        return repr(sorted(self.project.config.model.to_dict().items()))

    @Slot(int)
    def _on_source(self, _index: int) -> None:
        self._write("model", "kind", self.source_combo.currentData(), "model source")
        self._update_model_widgets()

    @Slot(str)
    def _on_name(self, text: str) -> None:
        self._write("model", "name", text.strip(), "model")

    def _update_model_widgets(self) -> None:
        kind = self.project.config.model.kind
        self.name_edit.setEnabled(kind != "default")
        self.name_edit.setPlaceholderText(NAME_PLACEHOLDERS.get(kind, ""))
        self.name_label.setText({"hub": "Hub id:", "local": "Folder:", "gguf": "File:"}.get(kind, "Model:"))
        self.browse_button.setVisible(kind in ("local", "gguf"))
        self.download_button.setVisible(kind == "hub")
        self.download_button.setEnabled(not self._busy_model and bool(self.project.config.model.name.strip()))
        self._model_form.setRowVisible(self.revision_edit, kind == "hub")
        self._model_form.setRowVisible(self.trust_check, kind != "default")

    @Slot()
    def browse_model(self) -> None:
        kind = self.project.config.model.kind
        start = self.name_edit.text() or str(Path.home())
        if kind == "local":
            path = QFileDialog.getExistingDirectory(self, "Choose a model folder", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", start, "GGUF models (*.gguf)")
        if path:
            self.name_edit.setText(path)
            self._write("model", "name", path, "model")

    @Slot()
    def download_model(self) -> None:
        """Fetch (or convert) the model on a worker thread, then read its layer names."""
        self._start_model_job(discover=True, text="Downloading…")

    @Slot()
    def find_layers(self) -> None:
        """Read the chosen model's layer names for the target-module checkboxes (on a worker thread)."""
        self._start_model_job(discover=True, text="Finding layers…")

    def _start_model_job(self, discover: bool, text: str) -> None:
        if self._busy_model:
            return
        config = self.project.config
        if config.model.problems():
            self._set_model_status("Choose a model first: " + config.model.problems()[0][1], error=True)
            return
        settings = ModelSettings.from_dict(config.model.to_dict())
        self._busy_model = True
        self._job_key = self._model_key()
        self.model_progress.setRange(0, 0)
        self.model_progress.show()
        self.target_modules.find_button.setEnabled(False)
        self.target_modules.set_status(text)
        self._set_model_status(text)
        self._update_model_widgets()
        self._tasks.run(resolve_and_discover, settings, discover, on_result=self._on_model_ready,
                        on_error=self._on_model_failed, on_progress=self._on_model_progress)

    @Slot(str, object)
    def _on_model_progress(self, text: str, fraction: object) -> None:
        self._set_model_status(text)
        if isinstance(fraction, float):
            self.model_progress.setRange(0, 1000)
            self.model_progress.setValue(int(fraction * 1000))
        else:
            self.model_progress.setRange(0, 0)

    @Slot(object)
    def _on_model_ready(self, result: tuple[Path, list[str]]) -> None:
        model_dir, names = result
        self._model_job_done()
        self._set_model_status(f"Ready: {model_dir}")
        if self._job_key != self._model_key():
            return  # the user picked another model meanwhile
        if names:
            self._layers_for = self._job_key
            explicit = self.project.config.lora.target_modules
            self.target_modules.set_names(names, checked=[] if explicit == ["auto"] else explicit)
            self.target_modules.set_status(f"{len(names)} layer types: {', '.join(names)}")
            if not self.target_modules.auto.isChecked() and not self.target_modules.checked_names():
                self.target_modules.check_all()

    @Slot(str, str)
    def _on_model_failed(self, message: str, _details: str) -> None:
        self._model_job_done()
        self._set_model_status(message, error=True)
        self.target_modules.set_status("")

    def _model_job_done(self) -> None:
        self._busy_model = False
        self.model_progress.hide()
        self.target_modules.find_button.setEnabled(True)
        self._update_model_widgets()

    def _set_model_status(self, text: str, error: bool = False) -> None:
        self.model_status.setProperty("error", error)
        self.model_status.style().unpolish(self.model_status)
        self.model_status.style().polish(self.model_status)
        self.model_status.setText(text)
        self.model_status.setVisible(bool(text))

    def is_busy(self) -> bool:
        return self._busy_model

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Wait for a model download or layer scan in progress (on close)."""
        self._tasks.shutdown(timeout_ms)

    def sizeHint(self) -> Any:
        hint = super().sizeHint()
        hint.setWidth(max(hint.width(), 420))
        return hint

