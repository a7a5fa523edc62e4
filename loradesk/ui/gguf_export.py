"""Export GGUF from the Runs tab: the dialog (file and weight type) and the background job around
:func:`loradesk.core.gguf_export.export_gguf`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from loradesk.ui.jobs import Cancelled, TaskState

QUANT_CHOICES = (
    ("f16", "f16: as exact as 16-bit weights get (2 bytes a weight)"),
    ("q8_0", "q8_0: about half the size, answers very close (8-bit weights)"),
)


class GgufExportDialog(QDialog):
    """Where to write the .gguf file, and its weight type."""

    def __init__(self, suggested: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export GGUF")
        self.path_edit = QLineEdit(str(suggested))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        self.quant_box = QComboBox()
        for quant, text in QUANT_CHOICES:
            self.quant_box.addItem(text, quant)
        note = QLabel("The adapter is merged into the base model and written as one file for llama.cpp, "
                      "Ollama or LM Studio, with an Ollama <i>Modelfile</i> beside it.")
        note.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.path_edit.textChanged.connect(self._update)
        form = QFormLayout(self)
        form.addRow(note)
        form.addRow("File:", row)
        form.addRow("Weights:", self.quant_box)
        form.addRow(self.buttons)
        self.resize(560, self.sizeHint().height())

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export GGUF to", self.path_edit.text(), "GGUF files (*.gguf)")
        if path:
            self.path_edit.setText(path)

    def _update(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.path_edit.text().strip()))

    def choice(self) -> tuple[Path, str]:
        """``(gguf file, quant)``: the file gets a ``.gguf`` suffix when it has none."""
        path = Path(self.path_edit.text().strip()).expanduser()
        if path.suffix.lower() != ".gguf":
            path = path.with_name(path.name + ".gguf")
        return path, str(self.quant_box.currentData())


def ask(parent: QWidget, run_dir: Path) -> tuple[Path, str] | None:
    """Ask where to write the selected run's GGUF and with which weights; None when cancelled."""
    dialog = GgufExportDialog(Path.home() / f"{run_dir.name}.gguf", parent)
    try:
        return dialog.choice() if dialog.exec() == QDialog.DialogCode.Accepted else None
    finally:
        dialog.deleteLater()


def export_job(run_dir: Path, dest: Path, quant: str, state: TaskState) -> Any:
    """The job: :func:`export_gguf` with the job's progress and stop flag (a stop ends it as cancelled)."""
    from loradesk.core.gguf_export import ExportStopped, export_gguf

    try:
        return export_gguf(run_dir, dest, quant, progress=state.progress, stop=state.stop)
    except ExportStopped:
        raise Cancelled("cancelled") from None


def describe(result: Any) -> str:
    """The status line for a finished export."""
    notes = "".join(f" Note: {note}." for note in result.notes)
    return (f"GGUF ({result.quant}, {result.size / 1e6:.1f} MB) written to {result.path}; Ollama: "
            f"ollama create NAME -f {result.modelfile}.{notes}")
