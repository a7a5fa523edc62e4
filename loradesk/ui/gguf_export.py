"""Export GGUF from the Runs tab: the dialog (file and weight type) and the background job around
:func:`loradesk.core.gguf_export.export_gguf`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QComboBox, QDialog, QFileDialog, QWidget

from loradesk.ui.export_dialog import ExportDialog
from loradesk.ui.jobs import Cancelled, TaskState

QUANT_CHOICES = (
    ("f16", "f16: as exact as 16-bit weights get (2 bytes a weight)"),
    ("q8_0", "q8_0: about half the size, answers very close (8-bit weights)"),
)


class GgufExportDialog(ExportDialog):
    """Where to write the .gguf file, and its weight type."""

    def __init__(self, suggested: Path, parent: QWidget | None = None) -> None:
        quant_box = QComboBox()
        for quant, text in QUANT_CHOICES:
            quant_box.addItem(text, quant)
        super().__init__("Export GGUF", "The adapter is merged into the base model and written as one file for "
                         "llama.cpp, Ollama or LM Studio, with an Ollama <i>Modelfile</i> beside it.", "File:",
                         suggested, [("Weights:", quant_box)], 560, parent)
        self.quant_box = quant_box

    def browse(self, current: str) -> str:
        return QFileDialog.getSaveFileName(self, "Export GGUF to", current, "GGUF files (*.gguf)")[0]

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
