"""The settings form's model section: where the base model comes from, trusting its code, and getting it.

The section writes its edits through the form's ``write(section, name, value, label)`` (one undo step
each). Download and "Find layers" run :func:`resolve_and_discover` as one background job (latest request
wins); the layer names it finds fill the form's :class:`~loradesk.ui.setting_fields.TargetModules`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QWidget,
)

from loradesk.core.config import ModelSettings, describe_fields
from loradesk.core.project import Project
from loradesk.core.wording import plural
from loradesk.ui.errors import show_error
from loradesk.ui.jobs import Jobs, TaskState, show_fraction
from loradesk.ui.setting_fields import TargetModules, cell, message_label

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
#: The key of the model job: a new download or layer scan replaces the one still running.
MODEL_JOB = "model"

#: ``write(section, name, value, label)``: put one value into the project's settings.
Write = Callable[[str, str, Any, str], None]


def resolve_and_discover(settings: ModelSettings, state: TaskState) -> tuple[Path, list[str]]:
    """Get the model folder (downloading/converting as needed) and its layer names."""
    from loradesk.core import models

    model_dir = models.resolve_model(settings, progress=state.progress)
    state.progress("Reading the model's layers…", None)
    return model_dir, models.discover_target_modules(model_dir, settings.trust_remote_code)


class ModelSection(QGroupBox):
    """Source, name (with Browse/Download), revision and trust of the base model, and its job's status."""

    def __init__(self, project: Project, write: Write, layers: TargetModules, parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        self.project = project
        self._write = write
        self.layers = layers
        self.jobs = Jobs(self)
        self._loading = False
        self._busy = False
        self._job_settings: ModelSettings | None = None  # the model the running job fetches
        self.trust_box: QMessageBox | None = None  # the confirmation shown when trust is turned on
        self._build()
        layers.find_requested.connect(self.find_layers)

    # --- building --------------------------------------------------------------------------------------
    def _build(self) -> None:
        infos = {f.name: f for f in describe_fields("model")}
        self.source_combo = QComboBox()
        for kind, text in MODEL_SOURCES:
            self.source_combo.addItem(text, kind)
        self.source_combo.setToolTip(infos["kind"].help)
        self.revision_edit = QLineEdit()
        self.revision_edit.setPlaceholderText("main")
        self.revision_edit.setToolTip(infos["revision"].help)
        self.trust_check = QCheckBox(infos["trust_remote_code"].label)
        self.trust_check.setToolTip(infos["trust_remote_code"].help)
        self._build_status()

        source_label = QLabel("Source:")
        revision_label = QLabel("Revision:")
        #: Row labels without a buddy, for the form to align with its own.
        self.plain_labels = [source_label, revision_label]
        self.name_label = QLabel("Model:")
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.addRow(source_label, self.source_combo)
        form.addRow(self.name_label, self._build_name_row(infos["name"].help))
        form.addRow(revision_label, self.revision_edit)
        form.addRow("", self.trust_check)
        form.addRow("", self.model_progress)
        form.addRow("", self.model_status)
        self._form = form

        self.source_combo.currentIndexChanged.connect(self._on_source)
        self.name_edit.textEdited.connect(self._on_name)
        self.revision_edit.textEdited.connect(
            lambda text: self._write("model", "revision", text.strip(), "model revision"))
        self.trust_check.toggled.connect(self._on_trust)
        self.browse_button.clicked.connect(self.browse_model)
        self.download_button.clicked.connect(self.download_model)

    def _build_name_row(self, help_text: str) -> QWidget:
        """The name field with Browse and Download beside it and its message line below."""
        self.name_edit = QLineEdit()
        self.name_edit.setToolTip(help_text)
        self.name_edit.setClearButtonEnabled(True)
        self.browse_button = QPushButton("Browse…")
        self.download_button = QPushButton("Download")
        self.download_button.setToolTip("Download the model from the Hugging Face Hub now (training would "
                                        "otherwise download it when it starts)")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.name_edit, 1)
        row.addWidget(self.browse_button)
        row.addWidget(self.download_button)
        name_widget = QWidget()
        name_widget.setLayout(row)
        self.name_message = message_label()
        return cell(name_widget, self.name_message)

    def _build_status(self) -> None:
        self.model_progress = QProgressBar()
        self.model_progress.setTextVisible(False)
        self.model_progress.setMaximumHeight(8)
        self.model_progress.hide()
        self.model_status = QLabel()
        self.model_status.setObjectName("modelStatus")
        self.model_status.setWordWrap(True)
        self.model_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_status.hide()

    # --- showing the project's model ---------------------------------------------------------------------
    def load(self, model: ModelSettings) -> None:
        """Show ``model`` in the editors (without writing anything back)."""
        self._loading = True
        try:
            self.source_combo.setCurrentIndex(max(0, self.source_combo.findData(model.kind)))
            if self.name_edit.text() != model.name:
                self.name_edit.setText(model.name)
            if self.revision_edit.text() != model.revision:
                self.revision_edit.setText(model.revision)
            self.trust_check.setChecked(model.trust_remote_code and self._model_trusted())
        finally:
            self._loading = False

    def update_widgets(self) -> None:
        """Show the rows and buttons that fit the chosen source."""
        model = self.project.config.model
        kind = model.kind
        self.name_edit.setEnabled(kind != "default")
        self.name_edit.setPlaceholderText(NAME_PLACEHOLDERS.get(kind, ""))
        self.name_label.setText({"hub": "Hub id:", "local": "Folder:", "gguf": "File:"}.get(kind, "Model:"))
        self.browse_button.setVisible(kind in ("local", "gguf"))
        self.download_button.setVisible(kind == "hub")
        self.download_button.setEnabled(not self._busy and bool(model.name.strip()))
        self._form.setRowVisible(self.revision_edit, kind == "hub")
        self._form.setRowVisible(self.trust_check, kind != "default")

    @Slot(int)
    def _on_source(self, _index: int) -> None:
        self._write("model", "kind", self.source_combo.currentData(), "model source")
        self.update_widgets()

    @Slot(str)
    def _on_name(self, text: str) -> None:
        self._write("model", "name", text.strip(), "model")

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
            show_error(self, "Get the model first",
                       "LoRA Desk shows which Python files a model would run before you trust it: download or "
                       "choose the model first, then turn on 'Trust remote code'.")
            return
        files = trust.python_files(folder)
        # The question leads the box: window titles are not shown everywhere (macOS sheets have none).
        box = QMessageBox(QMessageBox.Icon.Warning, "Trust this model's code?",
                          f"Trust the Python code of {folder.name}?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setInformativeText(trust.warning_text(folder, files))
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.buttonClicked.connect(lambda button: self._trust_answered(
            folder, box.standardButton(button) == QMessageBox.StandardButton.Yes))
        box.open()
        self.trust_box = box

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

    # --- getting the model and its layers ---------------------------------------------------------------
    @Slot()
    def download_model(self) -> None:
        """Fetch (or convert) the model in the background, then read its layer names."""
        self._start_job("Downloading…")

    @Slot()
    def find_layers(self) -> None:
        """Read the chosen model's layer names for the target-module checkboxes (in the background)."""
        self._start_job("Finding layers…")

    def _start_job(self, text: str) -> None:
        model = self.project.config.model
        if model.problems():
            self._set_status("Choose a model first: " + model.problems()[0][1], error=True)
            return
        settings = ModelSettings.from_dict(model.to_dict())
        if self._busy and settings == self._job_settings:
            return  # this model is being fetched already
        self._busy = True
        self._job_settings = settings
        self.model_progress.setRange(0, 0)
        self.model_progress.show()
        self.layers.find_button.setEnabled(False)
        self.layers.set_status(text)
        self._set_status(text)
        self.update_widgets()
        self.jobs.start(resolve_and_discover, settings, state=True, key=MODEL_JOB,
                        on_result=functools.partial(self._on_ready, settings), on_error=self._on_failed,
                        on_progress=self._on_progress, on_finished=self._on_job_finished)

    def _on_progress(self, text: str, fraction: float | None) -> None:
        self._set_status(text)
        show_fraction(self.model_progress, fraction)

    def _on_ready(self, settings: ModelSettings, result: tuple[Path, list[str]]) -> None:
        model_dir, names = result
        self._set_status(f"Ready: {model_dir}")
        if settings != self.project.config.model:
            return  # the user picked another model meanwhile: these are not its layers
        if names:
            explicit = self.project.config.lora.target_modules
            self.layers.set_names(names, checked=[] if explicit == ["auto"] else explicit)
            self.layers.set_status(f"{plural(len(names), 'layer type')}: {', '.join(names)}")
            if not self.layers.auto.isChecked() and not self.layers.checked_names():
                self.layers.check_all()

    def _on_failed(self, message: str, _details: str) -> None:
        """A model that cannot be fetched or read is said under the model, where it is chosen."""
        self._set_status(message, error=True)
        self.layers.set_status("")

    def _on_job_finished(self) -> None:
        self._busy = False
        self.model_progress.hide()
        self.layers.find_button.setEnabled(True)
        self.update_widgets()

    def _set_status(self, text: str, error: bool = False) -> None:
        self.model_status.setProperty("error", error)
        self.model_status.style().unpolish(self.model_status)
        self.model_status.style().polish(self.model_status)
        self.model_status.setText(text)
        self.model_status.setVisible(bool(text))

    def is_busy(self) -> bool:
        """Whether a download or layer scan is running."""
        return self._busy

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Stop a download or layer scan in progress and wait for it (on close)."""
        self.jobs.shutdown(timeout_ms)
