"""The settings form: generated from :func:`loradesk.core.config.describe_fields`, plus a model picker.

Every change writes a new ``RunConfig`` into the project through an undoable command; the form
re-reads the project's settings whenever they change elsewhere (undo, preset, open). Problems from
:func:`loradesk.core.readiness.can_train` are shown beside their field, and
:attr:`SettingsForm.validity_changed` tells the window whether training can start (and if not, why).
The editors come from :mod:`loradesk.ui.setting_fields`, the model picker is
:class:`~loradesk.ui.model_section.ModelSection`.
"""

from __future__ import annotations

import functools
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.config import PRESETS, FieldInfo, RunConfig, apply_preset, describe_fields
from loradesk.core.project import ConfigChanged, Project, ProjectEvent, ProjectLoaded
from loradesk.core.readiness import Readiness, can_train
from loradesk.ui.model_section import ModelSection
from loradesk.ui.setting_fields import Field, TargetModules, cell, make_field, mark
from loradesk.ui.undo import ConfigCommand

#: Training fields shown first; the rest go to "Advanced".
MAIN_TRAINING = ("epochs", "max_steps", "learning_rate", "scheduler", "warmup_ratio", "batch_size", "grad_accum",
                 "max_length")
#: The label each setting has in the form (and in the reasons it gives), by ``section.name`` path.
FIELD_LABELS = {info.path: info.label for section in RunConfig.SECTIONS for info in describe_fields(section)}
INVALID_STYLE = """
*[invalid="true"] { border: 1px solid #d64545; border-radius: 3px; }
QLabel#fieldMessage { color: #d64545; }
QLabel#modelStatus[error="true"] { color: #d64545; }
"""


class SettingsForm(QWidget):
    """Model, LoRA and training settings of a project."""

    #: (ok, reason): reason lists the invalid fields and why, empty when ok.
    validity_changed = Signal(bool, str)

    def __init__(self, project: Project, undo_stack: QUndoStack | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.undo_stack = undo_stack
        self.fields: dict[str, Field] = {}
        self._loading = False
        self._writing = False
        self._validity: tuple[bool, str] | None = None
        self._build()
        self._unsubscribe = project.subscribe(self._on_project_event)
        self.destroyed.connect(self._unsubscribe)
        self.load_from_config()

    # --- building --------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.setStyleSheet(INVALID_STYLE)
        top = self._build_presets()
        body = self._build_body()
        self._align_labels(body)
        self.scroll = self._build_scroll(body)
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

    def _build_presets(self) -> QHBoxLayout:
        self.preset_combo = QComboBox()
        self.preset_combo.addItem("Custom")
        self.preset_combo.addItems(list(PRESETS))
        self.preset_combo.setToolTip("Start from a tested combination of LoRA and training settings "
                                     "(the model is kept)")
        self.reset_button = QPushButton("Reset to defaults")
        self.reset_button.setToolTip("Put every LoRA and training setting back to its default (the model is kept)")
        self.preset_combo.activated.connect(self._on_preset)
        self.reset_button.clicked.connect(self.reset_to_defaults)
        top = QHBoxLayout()
        top.addWidget(QLabel("Preset:"))
        top.addWidget(self.preset_combo, 1)
        top.addWidget(self.reset_button)
        return top

    def _build_body(self) -> QWidget:
        """The model section and the generated LoRA, Training and Advanced groups, one under the other."""
        training = list(describe_fields("training"))
        groups = [self._group("LoRA adapter", list(describe_fields("lora"))),
                  self._group("Training", [f for f in training if f.name in MAIN_TRAINING]),
                  self._group("Advanced", [f for f in training if f.name not in MAIN_TRAINING])]
        layers = self.fields["lora.target_modules"].widget
        assert isinstance(layers, TargetModules)
        self.target_modules = layers
        self.model_section = ModelSection(self.project, self._write, layers)
        section = self.model_section
        # The model's editors, under the names the window and the tests know them by.
        self.source_combo, self.name_edit, self.name_message = section.source_combo, section.name_edit, \
            section.name_message
        self.revision_edit, self.trust_check = section.revision_edit, section.trust_check
        self.browse_button, self.download_button = section.browse_button, section.download_button
        self.model_status = section.model_status

        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 6, 0)
        body_layout.setSpacing(10)
        for group in (section, *groups):
            body_layout.addWidget(group)
        body_layout.addStretch(1)
        return body

    def _align_labels(self, body: QWidget) -> None:
        """Give every row label the same width, right-aligned, so the editors line up across the groups."""
        labels = [label for label in body.findChildren(QLabel) if label.buddy() is not None]
        labels.append(self.model_section.name_label)
        width = max(label.sizeHint().width() for label in labels)
        for label in [*labels, *self.model_section.plain_labels]:
            label.setMinimumWidth(width)
            label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def _build_scroll(self, body: QWidget) -> QScrollArea:
        scroll = QScrollArea()
        scroll.setWidget(body)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for combo in body.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        bar = scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(body.minimumSizeHint().width() + bar + 4)
        return scroll

    def _group(self, title: str, infos: list[FieldInfo]) -> QGroupBox:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for info in infos:
            field = make_field(info, functools.partial(self._on_field_edited, info), self._problem)
            self.fields[info.path] = field
            widget = cell(field.widget, field.message)
            widget.setToolTip(info.help)
            if isinstance(field.widget, QCheckBox):
                form.addRow("", widget)
            else:
                label = QLabel(info.label + ":")
                label.setToolTip(info.help)
                label.setBuddy(field.widget)
                form.addRow(label, widget)
        return box

    # --- reading and writing the project's settings ----------------------------------------------------
    def _on_field_edited(self, info: FieldInfo, *_args: Any) -> None:
        self._write(info.section, info.name, self.fields[info.path].get(), info.label)

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
            self.model_section.load(config.model)
        finally:
            self._loading = False
        self._after_change()

    def _after_change(self) -> None:
        self.model_section.update_widgets()
        self._update_preset()
        self.revalidate()

    def _on_project_event(self, event: ProjectEvent) -> None:
        if isinstance(event, ConfigChanged | ProjectLoaded) and not self._writing:
            self.load_from_config()

    # --- validation ------------------------------------------------------------------------------------
    def readiness(self) -> Readiness:
        """Whether these settings can train (judged without the rows), from :func:`can_train`."""
        return can_train(self.project.config, None)

    def problems(self) -> list[tuple[str, str]]:
        """``(label, message)`` for each invalid setting."""
        return [(FIELD_LABELS.get(path, path), message) for path, message in self.readiness().settings]

    def is_valid(self) -> bool:
        return self.readiness().ok

    def reason(self) -> str:
        """Why training cannot start with these settings ("" when it can)."""
        return "; ".join(f"{label}: {message}" for label, message in self.problems())

    def _problem(self, path: str) -> str:
        """The problem of the setting at ``path`` ("" when it has none)."""
        return dict(self.readiness().settings).get(path, "")

    def revalidate(self) -> None:
        """Mark the invalid settings and announce a change of validity."""
        problems = dict(self.readiness().settings)
        for path, field in self.fields.items():
            mark(field.widget, field.message, problems.get(path, ""))
        mark(self.name_edit, self.name_message, problems.get("model.name", ""))
        reason = self.reason()
        self.problems_label.setText(f"Fix before training: {reason}" if reason else "")
        self.problems_label.setVisible(bool(reason))
        state = (not problems, reason)
        if state != self._validity:
            self._validity = state
            self.validity_changed.emit(*state)

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

    # --- the model section's actions -------------------------------------------------------------------
    @property
    def trust_box(self) -> QMessageBox | None:
        """The confirmation shown when trust in the model's code is turned on."""
        return self.model_section.trust_box

    def browse_model(self) -> None:
        self.model_section.browse_model()

    def download_model(self) -> None:
        self.model_section.download_model()

    def find_layers(self) -> None:
        self.model_section.find_layers()

    def is_busy(self) -> bool:
        return self.model_section.is_busy()

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Wait for a model download or layer scan in progress (on close)."""
        self.model_section.shutdown(timeout_ms)

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        hint.setWidth(max(hint.width(), 420))
        return hint
