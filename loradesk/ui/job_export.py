"""Run > Export Job...: ask for the job folder and the model the cluster trains, then write the folder from the
project's rows and settings in the background (:func:`loradesk.core.job_export.export_job`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QDialog, QFileDialog, QLineEdit, QWidget

from loradesk.core.config import RunConfig
from loradesk.core.job_export import export_job, model_from_spec, model_label
from loradesk.ui.export_dialog import ExportDialog

if TYPE_CHECKING:
    from loradesk.ui.main_window import MainWindow


class ExportJobDialog(ExportDialog):
    """The job folder (new or empty) and, optionally, another model for the cluster (a Hub id or a folder)."""

    def __init__(self, suggested: Path, current_model: str, rows: int, parent: QWidget | None = None) -> None:
        model_edit = QLineEdit()
        model_edit.setPlaceholderText(f"{current_model} (as in the settings)")
        model_edit.setToolTip("A Hugging Face Hub id such as Qwen/Qwen2.5-7B-Instruct, or a model folder the "
                              "training machines can read. Empty: the model in the settings.")
        note = (f"A folder that trains these {rows:,} rows with these settings on many GPUs or machines: "
                "<i>launch.sh</i> (torchrun or accelerate), accelerate configs for DDP, FSDP and DeepSpeed, a SLURM "
                "script and a README with the commands. Bring the run back with File ▸ Open Run….")
        super().__init__("Export Job", note, "Job folder:", suggested, [("Model on the cluster:", model_edit)], 620,
                         parent)
        self.model_edit = model_edit

    def browse(self, current: str) -> str:
        return QFileDialog.getExistingDirectory(self, "Job folder (new or empty)", current)

    def choice(self) -> tuple[Path, str]:
        """``(job folder, model spec)``; the spec is empty for the settings' model."""
        return Path(self.path_edit.text().strip()).expanduser(), self.model_edit.text().strip()


def ask(window: MainWindow) -> tuple[Path, str] | None:
    """Ask for the job folder and the model; None when cancelled."""
    project = window.project
    suggested = (project.path.parent if project.path else Path.home()) / f"{project.name}-job"
    dialog = ExportJobDialog(suggested, model_label(project.config.model), len(project.dataset), window)
    try:
        return dialog.choice() if dialog.exec() == QDialog.DialogCode.Accepted else None
    finally:
        dialog.deleteLater()


def start(window: MainWindow, dest: str | Path | None = None, model: str = "") -> None:
    """Write a job folder from the project's rows and settings (asks where, and which model, when ``dest`` is
    None); the result shows in the status bar, an error through the usual error dialog."""
    if dest is None:
        choice = ask(window)
        if choice is None:
            return
        dest, model = choice
    rows = list(window.project.dataset.rows)  # a snapshot: edits made while it is written do not mix in
    config = RunConfig.from_dict(window.project.config.to_dict())
    writing = f"Writing the job folder {dest}…"
    window.statusBar().showMessage(writing)

    def finished() -> None:
        if window.statusBar().currentMessage() == writing:  # failed: the error dialog says why
            window.statusBar().clearMessage()

    window.jobs.start(export_job, rows, config, Path(dest), model=model_from_spec(model) if model else None,
                      key="export-job", on_result=lambda job: _done(window, job), on_finished=finished,
                      error_title="Export job failed")


def _done(window: MainWindow, job: Any) -> None:
    notes = "".join(f" Note: {note}." for note in job.notes)
    window.statusBar().showMessage(f"{job.summary()}. Run it with: bash launch.sh (see its README).{notes}")
