"""Dataset files in and out of the window: the core's import pipeline, the dialogs it asks for, background jobs.

:func:`loradesk.core.importing.read_import` runs on a :class:`~loradesk.ui.jobs.Jobs` thread; its typed answer
comes back here: the rows go into the table as one undoable step, a :class:`NeedsMapping` opens the column
dialog and reads again, a :class:`ChooseSplit` asks for the Hugging Face dataset again with its splits.
Failures go through :func:`loradesk.ui.errors.show_error`; the open dataset is never touched by a failed read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox, QWidget

from loradesk.core import formats
from loradesk.core.dataset import Example
from loradesk.core.importing import (
    DATASET_SUFFIXES,
    ChooseSplit,
    ImportAnswer,
    Imported,
    ImportRequest,
    Mode,
    NeedsMapping,
    import_mode,
    read_import,
)
from loradesk.core.project import PROJECT_SUFFIX, Project
from loradesk.ui import errors, window_state
from loradesk.ui.app import settle_imported_rows
from loradesk.ui.dataset_model import DatasetTableModel
from loradesk.ui.import_dialogs import ColumnMappingDialog, HubImportDialog
from loradesk.ui.jobs import Jobs, TaskState

IMPORT_TITLE = "Cannot import the dataset"
EXPORT_TITLE = "Cannot export the dataset"


def read_in_background(request: ImportRequest, state: TaskState) -> ImportAnswer:
    """:func:`read_import` with the job's progress (a Hub download reports it, and stops at a cancel)."""
    return read_import(request, state.progress)


def dropped_path(urls: list[QUrl]) -> Path | None:
    """The one local dataset or project file among dropped ``urls``, else None."""
    if len(urls) != 1 or not urls[0].isLocalFile():
        return None
    path = Path(urls[0].toLocalFile())
    return path if path.suffix.lower() in (*DATASET_SUFFIXES, PROJECT_SUFFIX) else None


class ImportController(QObject):
    """Imports into and exports from one window's dataset; one import at a time."""

    #: What is being read or written ("" when nothing is).
    busy = Signal(str)
    #: Download progress of a Hub import: text, fraction in [0, 1] or None.
    progress = Signal(str, object)
    #: Whether an import is running (the import actions wait for it).
    importing_changed = Signal(bool)
    #: A finished import or export, for the status bar.
    done = Signal(str)
    #: After an import: its name and the notes about what it skipped or did not use (empty: nothing).
    noted = Signal(str, list)

    def __init__(self, window: QWidget, project: Project, model: DatasetTableModel) -> None:
        super().__init__(window)
        self._window = window
        self._project = project
        self._model = model
        self.jobs = Jobs(window)  # errors without a handler open over the window
        self._request: ImportRequest | None = None
        self._hub_values: dict[str, Any] = {}

    # --- starting ----------------------------------------------------------------------------------------
    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self._window, "Import dataset", str(Path.home()), formats.IMPORT_FILTER)
        if path:
            self.import_file(path)

    def import_file(self, path: str | Path, mode: Mode | None = None, mapping: dict[str, str] | None = None) -> None:
        """Read a dataset file in the background, then replace or append (``mode``; None asks)."""
        self.start(ImportRequest.file(path, mode, mapping, window_state.import_conversations()))

    def hub_dialog(self) -> None:
        """Ask for a Hugging Face dataset (the last one asked for is proposed), then import it."""
        self._ask_hub(self._hub_values)

    def import_hub(self, source: str, split: str = "train", name: str | None = None, revision: str | None = None,
                   limit: int | None = None, mode: Mode | None = None, mapping: dict[str, str] | None = None) -> None:
        """Load a Hugging Face dataset split (Hub id or local folder) in the background, then replace or append."""
        self.start(ImportRequest.hub_split(source, split, name, revision, limit, mode, mapping,
                                           window_state.import_conversations()))

    def start(self, request: ImportRequest) -> None:
        """Read ``request`` in the background (ignored while another import runs)."""
        if self._request is not None:
            return
        self._request = request
        self.importing_changed.emit(True)
        self.busy.emit(f"Reading {request.name}…")
        self.jobs.start(read_in_background, request, state=True, on_result=self._on_read,
                        on_progress=self._on_progress, on_error=self._on_failed,
                        on_finished=lambda: self._finish(request))

    def set_split_pairs(self, split: bool) -> None:
        """Whether the next imports split conversations into prompt/completion pairs (remembered)."""
        window_state.set_import_conversations("pairs" if split else "whole")

    def is_importing(self) -> bool:
        return self._request is not None

    def _finish(self, request: ImportRequest) -> None:
        if self._request is request:
            self._request = None
            self.busy.emit("")
            self.importing_changed.emit(False)

    # --- answers -----------------------------------------------------------------------------------------
    def _on_progress(self, text: str, fraction: float | None) -> None:
        if self._request is not None:
            self.progress.emit(text, fraction)

    def _on_failed(self, message: str, details: str) -> None:
        if self._request is not None:
            self._finish(self._request)
        errors.show_error(self._window, IMPORT_TITLE, message, details, note=errors.UNCHANGED)

    def _on_read(self, answer: ImportAnswer) -> None:
        self._finish(answer.request)  # before any question: the next import may start from it
        if isinstance(answer, NeedsMapping):
            self._ask_mapping(answer)
        elif isinstance(answer, ChooseSplit):
            self._ask_hub(answer.request.hub or {}, answer.splits, answer.message)
        elif isinstance(answer, Imported):
            self._put_rows(answer.request, answer.rows, answer.notes)

    def _ask_mapping(self, answer: NeedsMapping) -> None:
        dialog = ColumnMappingDialog(answer.request.name, answer.columns, answer.message, self._window,
                                     records=answer.preview)
        accepted = dialog.exec() == QDialog.DialogCode.Accepted
        mapping = dialog.mapping()
        dialog.deleteLater()
        if accepted:
            self.start(answer.request.with_mapping(mapping))

    def _ask_hub(self, values: dict[str, Any], splits: list[str] | None = None, error: str = "") -> None:
        dialog = HubImportDialog(self._window, values=values, splits=splits, error=error)
        accepted = dialog.exec() == QDialog.DialogCode.Accepted
        chosen = dialog.values()
        dialog.deleteLater()
        if accepted:
            self._hub_values = chosen
            self.import_hub(**chosen)

    def _put_rows(self, request: ImportRequest, rows: list[Example], notes: tuple[str, ...] = ()) -> None:
        mode = import_mode(request, len(self._project.dataset)) or self.ask_mode(request.name, len(rows))
        if mode == "replace":
            self._model.replace_examples(rows, f"Import {request.name}")
        elif mode == "append":
            self._model.insert_examples(len(self._project.dataset), rows, f"Append {request.name}")
        else:
            return
        settle_imported_rows(len(rows))
        self.noted.emit(request.name, list(notes))
        self.done.emit(f"Imported {len(rows):,} rows from {request.name}" + (" (see the note above the table)"
                                                                            if notes else ""))

    def ask_mode(self, name: str, count: int) -> Mode | None:
        """Ask whether the imported rows replace the current ones or are added after them."""
        box = QMessageBox(QMessageBox.Icon.Question, "Import dataset",
                          f"{name} has {count:,} rows. Replace the {len(self._project.dataset):,} rows in the "
                          "table, or add the new rows after them?", parent=self._window)
        replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
        append = box.addButton("Append", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(append)
        box.setInformativeText("Either way, Undo brings the old rows back.")
        box.exec()
        clicked = box.clickedButton()
        return "replace" if clicked is replace else "append" if clicked is append else None

    # --- export ------------------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        start = str(Path.home() / f"{self._project.name}.jsonl")
        path, chosen = QFileDialog.getSaveFileName(self._window, "Export dataset", start, formats.EXPORT_FILTER)
        if not path:
            return
        fmt = formats.EXPORT_FORMATS.get(chosen, "jsonl")
        suffix = chosen[chosen.find("*") + 1:chosen.rfind(")")] if "*" in chosen else ""
        if suffix and not path.endswith(suffix):
            path += suffix
        self.export_file(path, fmt)

    def export_file(self, path: str | Path, fmt: str) -> None:
        """Write a snapshot of the rows in the background."""
        rows = list(self._project.dataset.rows)  # rows are replaced, never changed in place: a snapshot
        self.busy.emit(f"Writing {Path(path).name}…")
        self.jobs.start(formats.write_dataset, str(path), rows, fmt,
                        on_result=lambda _none: self._exported(f"Exported {len(rows):,} rows to {path}"),
                        on_error=self._export_failed)

    def _exported(self, message: str) -> None:
        self.busy.emit("")
        self.done.emit(message)

    def _export_failed(self, message: str, details: str) -> None:
        self.busy.emit("")
        errors.show_error(self._window, EXPORT_TITLE, message, details)
