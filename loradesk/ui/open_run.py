"""File ▸ Open Run… (or a run folder dropped on the Runs tab): a run trained elsewhere, on another machine or a
cluster, seen through a mounted filesystem or copied here.

The run joins the Runs tab and the Compare tab and is listed again after a restart
(:mod:`loradesk.core.opened_runs`). A run still being written is followed live on the Train tab
(:class:`~loradesk.ui.run_follower.RunFollower`). A run whose base model folder is not on this machine asks
for it (a Hub id or a folder); the answer is kept for that run in the app's data, not in the run's own file.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from loradesk.core import opened_runs, runs
from loradesk.ui import errors
from loradesk.ui.jobs import Jobs

if TYPE_CHECKING:
    from loradesk.ui.main_window import MainWindow


def _is_folder_answer(text: str) -> bool:
    """Whether the answer names a folder (a path) rather than a Hub id such as ``org/model``."""
    return Path(text).expanduser().is_absolute() or text.startswith((".", "~")) or Path(text).is_dir()


class BaseModelDialog(QDialog):
    """Asks for the base model of a run whose recorded model folder is not on this machine."""

    def __init__(self, info: Any, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Base model not found")
        recorded = info.base_model_dir or "(not recorded)"
        intro = QLabel(f"<b>{html.escape(info.name)}</b> was trained on <b>{html.escape(info.model or '?')}</b> "
                       f"from <code>{html.escape(recorded)}</code>, which is not on this machine.<br>"
                       "Choose its base model here: a Hugging Face Hub id (downloaded once) or a model folder. "
                       "It is remembered for this run; the run folder is not changed.")
        intro.setWordWrap(True)
        self.model_edit = QLineEdit(text or (info.model if "/" in info.model and not os.path.isabs(info.model)
                                             else ""))
        self.model_edit.setPlaceholderText("org/model-name or /path/to/model-folder")
        self.model_edit.setMinimumWidth(420)
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.model_edit, 1)
        row.addWidget(browse)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.model_edit.textChanged.connect(self._update_ok)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(row)
        layout.addWidget(self.buttons)
        self._update_ok()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Base model folder")
        if folder:
            self.model_edit.setText(folder)

    def _update_ok(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.choice()))

    def choice(self) -> str:
        """The Hub id or folder typed or chosen."""
        return self.model_edit.text().strip()


class RunOpener(QObject):
    """Opens run folders into the window: Runs tab, live follow on the Train tab, the base model question."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.jobs = Jobs(self)
        self.base_dialog: BaseModelDialog | None = None  # the question on screen, if any
        window.runs_tab.folder_dropped.connect(self.open)
        window.runs_tab.run_selected.connect(self._before_compare)

    def ask(self) -> None:
        """Choose a run folder and open it."""
        folder = QFileDialog.getExistingDirectory(self.window, "Open a run folder")
        if folder:
            self.open(folder)

    def open(self, folder: str | Path) -> bool:
        """Show the run in ``folder`` (one with a ``loradesk_run.json``): followed live on the Train tab while
        it is being written, else selected on the Runs tab. False (with an error shown) when it is no run."""
        path = Path(os.path.abspath(folder))
        try:
            info = runs.read_run(path)
        except (OSError, ValueError, runs.RunError) as exc:
            errors.show_error(self.window, "Cannot open the run", str(exc))
            return False
        opened_runs.remember(path)
        w = self.window
        w.runs_tab.refresh()
        w.runs_tab.select_run(path)
        if info.status == "running" and w.training_tab.follow(path):
            w.tabs.setCurrentWidget(w.training_tab)
        else:
            w.tabs.setCurrentWidget(w.runs_tab)
        w.statusBar().showMessage(f"Opened the run {path}", 5000)
        if runs.base_model_missing(info):
            self.ask_base_model(info)
        return True

    def _before_compare(self, run_dir: str) -> None:
        """"Compare this run" on a run whose base model is not here: ask for it first."""
        try:
            info = runs.read_run(Path(run_dir))
        except (OSError, ValueError, runs.RunError):
            return
        if runs.base_model_missing(info):
            self.ask_base_model(info)

    def ask_base_model(self, info: Any, text: str = "") -> None:
        """Ask (without blocking) for the base model of ``info``'s run; the answer is kept for that run."""
        if self.base_dialog is not None:
            self.base_dialog.close()
        dialog = self.base_dialog = BaseModelDialog(info, text, self.window)
        dialog.accepted.connect(lambda: self._use(info, dialog.choice()))
        dialog.finished.connect(lambda _result: setattr(self, "base_dialog", None))
        dialog.open()

    def _use(self, info: Any, choice: str) -> None:
        from loradesk.core.config import ModelSettings
        from loradesk.core.models import ModelError, check_model_folder, resolve_model

        if _is_folder_answer(choice):
            try:
                folder = check_model_folder(Path(choice).expanduser())
            except ModelError as exc:
                self._failed(info, choice, str(exc))
                return
            self._remember(info.path, folder)
            return
        self.window.statusBar().showMessage(f"Getting the base model {choice}…")
        self.jobs.start(resolve_model, ModelSettings(kind="hub", name=choice), key="base-model",
                        on_result=lambda folder: self._remember(info.path, folder),
                        on_error=lambda message, details: self._failed(info, choice, message, details))

    def _failed(self, info: Any, choice: str, message: str, details: str = "") -> None:
        self.window.statusBar().clearMessage()
        errors.show_error(self.window, "Cannot use this base model", message, details,
                          note="The run is unchanged.", on_retry=lambda: self.ask_base_model(info, choice),
                          retry_text="Choose another…")

    def _remember(self, run_dir: Path, folder: str | Path) -> None:
        opened_runs.set_base_model(run_dir, folder)
        self.window.statusBar().showMessage(f"{run_dir.name} uses the base model {folder}", 8000)
        self.window.runs_tab.refresh()
        self.window.compare_tab.refresh_runs()
