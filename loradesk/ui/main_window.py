"""The main window: a thin shell of tabs, menus and a status bar around one :class:`Project`.

The window owns no business logic: the tabs edit the project, the core does the work. Its parts live in
their own modules: imports and exports (:mod:`loradesk.ui.import_controller`), the recovery file
(:mod:`loradesk.ui.autosave`), geometry and recent files (:mod:`loradesk.ui.window_state`), the About
text (:mod:`loradesk.ui.about`). The tabs are the concrete classes; the window calls their public methods
and listens to their signals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QUndoStack
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.config import ModelSettings
from loradesk.core.importing import Mode
from loradesk.core.project import (
    PROJECT_SUFFIX,
    DirtyChanged,
    PathChanged,
    Project,
    ProjectError,
    ProjectEvent,
    ProjectLoaded,
    discard_recovery,
)
from loradesk.core.readiness import can_train
from loradesk.core.wording import plural
from loradesk.ui import open_run, train_more, window_menus, window_state
from loradesk.ui.about import about_html
from loradesk.ui.app import APP_NAME, warm_up_training_stack
from loradesk.ui.autosave import Autosave
from loradesk.ui.compare_tab import CompareTab
from loradesk.ui.dataset_tab import DatasetTab
from loradesk.ui.errors import show_error
from loradesk.ui.import_controller import ImportController, dropped_path
from loradesk.ui.jobs import Jobs, show_fraction
from loradesk.ui.runs_tab import RunsTab
from loradesk.ui.settings_form import SettingsForm
from loradesk.ui.training_tab import TrainingTab

PROJECT_FILTER = f"LoRA Desk projects (*{PROJECT_SUFFIX})"


class MainWindow(QMainWindow):
    """Dataset (with settings), Train, Compare and Runs tabs around one project."""

    # Created by window_menus.add_actions:
    act_new: QAction
    act_open: QAction
    act_open_run: QAction
    run_opener: open_run.RunOpener
    act_save: QAction
    act_save_as: QAction
    act_import: QAction
    act_import_hub: QAction
    act_export: QAction
    act_quit: QAction
    act_undo: QAction
    act_redo: QAction
    act_train: QAction
    act_stop: QAction
    act_resume: QAction
    act_train_more: QAction
    act_about: QAction

    def __init__(self, project: Project, parent: QWidget | None = None, *, probe_device: bool = True,
                 count_tokens: bool = True) -> None:
        """``probe_device``/``count_tokens``: start the device probe and the token count in the background."""
        super().__init__(parent)
        self.project = project
        self._count_tokens = count_tokens
        self._probe_device = probe_device
        self.undo_stack = QUndoStack(self)
        self.jobs = Jobs(self)
        self._device: str | None = None
        self._shown_once = False
        self._ask_on_close = True
        self.setAcceptDrops(True)
        self._build_tabs()
        self.importer = ImportController(self, project, self.dataset_tab.model)
        self.autosaver = Autosave(project, self)
        window_menus.add_actions(self)
        self.recent_menu = window_menus.add_menus(self)
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._build_status_bar()
        self._connect()
        window_state.restore_window(self, self.splitter)
        self._update_title()
        self._update_train_block()

    # --- building --------------------------------------------------------------------------------------
    def _build_tabs(self) -> None:
        self.dataset_tab = DatasetTab(self.project, self.undo_stack)
        self.settings_form = SettingsForm(self.project, self.undo_stack)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("datasetSplitter")
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setHandleWidth(10)
        self.splitter.addWidget(self.dataset_tab)
        self.splitter.addWidget(self.settings_form)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([840, 480])
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(10, 10, 10, 6)
        layout.addWidget(self.splitter)

        self.training_tab = TrainingTab(self.project)
        self.compare_tab = CompareTab(self.project)
        self.runs_tab = RunsTab(self.project)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(page, "Dataset")
        self.tabs.addTab(self.training_tab, "Train")
        self.tabs.addTab(self.compare_tab, "Compare")
        self.tabs.addTab(self.runs_tab, "Runs")
        self.setCentralWidget(self.tabs)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(140)
        self.busy_bar.setMaximumHeight(14)
        self.busy_bar.hide()
        self.rows_label = QLabel()
        self.problems_label = QLabel()
        self.device_label = QLabel("Device: …")
        self.device_label.setToolTip("Where training runs (detected in the background)")
        for widget in (self.busy_bar, self.rows_label, self.problems_label, self.device_label):
            status.addPermanentWidget(widget)
        self._on_stats(len(self.project.dataset), self.dataset_tab.model.problem_row_count())

    def _connect(self) -> None:
        self.settings_form.validity_changed.connect(self._update_train_block)
        self.dataset_tab.stats_changed.connect(self._on_stats)
        self.training_tab.running_changed.connect(self._on_running)
        self.training_tab.run_finished.connect(self._on_run_finished)
        self.runs_tab.run_selected.connect(self.show_run)
        self.runs_tab.resume_requested.connect(self.resume_training)
        self.runs_tab.train_more_requested.connect(lambda run_dir: train_more.start(self, run_dir))
        self.importer.busy.connect(self._set_busy)
        self.importer.progress.connect(self._on_progress)
        self.importer.done.connect(lambda text: self.statusBar().showMessage(text, 6000))
        self.importer.noted.connect(self.dataset_tab.import_notes.show_notes)
        self.importer.importing_changed.connect(self._on_importing)
        self.autosaver.failed.connect(
            lambda message: self.statusBar().showMessage(f"Could not write the recovery file: {message}", 8000))
        unsubscribe = self.project.subscribe(self._on_project_event)
        self.destroyed.connect(unsubscribe)

    # --- project state ---------------------------------------------------------------------------------
    def _on_project_event(self, event: ProjectEvent) -> None:
        if isinstance(event, DirtyChanged | PathChanged | ProjectLoaded):
            self._update_title()

    def _update_title(self) -> None:
        self.setWindowTitle(f"{self.project.name}[*] — {APP_NAME}")
        self.setWindowModified(self.project.dirty)

    @Slot(int, int)
    def _on_stats(self, rows: int, problems: int) -> None:
        self.rows_label.setText(plural(rows, "row"))
        self.problems_label.setText(f"{problems:,} with problems" if problems else "No problems")
        self.problems_label.setStyleSheet("color: #d64545;" if problems else "")
        self._update_train_block()

    def train_blocked_reason(self) -> str:
        """Why training cannot start now ("" when it can): :func:`~loradesk.core.readiness.can_train`'s answer.

        The settings are named with the form's labels. Of the rows, only an empty dataset is judged here:
        rows with an empty field are flagged in the table and the Checks panel as they are edited, and
        ``training.run`` refuses them with the same function's reason (scanning 100,000 rows on every edit
        would hold the GUI thread for tens of milliseconds).
        """
        rows = self.project.dataset
        readiness = can_train(self.project.config, rows if len(rows) == 0 else None)
        if readiness.settings:
            return "Fix the settings first: " + self.settings_form.reason()
        return readiness.data

    def _update_train_block(self, *_args: Any) -> None:
        reason = self.train_blocked_reason()
        self.training_tab.set_blocked(reason or None)
        self.act_train.setToolTip(reason or self.act_train.statusTip())
        self._update_run_actions()

    # --- run menu --------------------------------------------------------------------------------------
    def _update_run_actions(self) -> None:
        running = self.training_tab.is_running()
        self.act_train.setEnabled(not running and not self.train_blocked_reason())
        self.act_stop.setEnabled(running)
        settings_ok = not can_train(self.project.config, None).settings
        self.act_resume.setEnabled(not running and self.training_tab.resume_dir is not None and settings_ok)
        self.act_train_more.setEnabled(not running)

    @Slot()
    def start_training(self) -> None:
        self.tabs.setCurrentWidget(self.training_tab)
        self.training_tab.start()

    @Slot()
    @Slot(str)
    def resume_training(self, run_dir: str = "") -> None:
        """Resume ``run_dir`` (from the Runs tab), or the newest stopped run (Run menu)."""
        self.tabs.setCurrentWidget(self.training_tab)
        self.training_tab.resume(run_dir or None)

    @Slot(bool)
    def _on_running(self, running: bool) -> None:
        self._update_run_actions()
        self.statusBar().showMessage("Training…" if running else "Training ended", 0 if running else 5000)

    @Slot(str)
    def _on_run_finished(self, run_dir: str) -> None:
        self.runs_tab.refresh()
        self.compare_tab.set_run(run_dir)
        self._update_run_actions()

    @Slot(str)
    def show_run(self, run_dir: str) -> None:
        """Compare the given run (from the Runs tab)."""
        self.compare_tab.set_run(run_dir)
        self.tabs.setCurrentWidget(self.compare_tab)

    # --- files -----------------------------------------------------------------------------------------
    def maybe_save(self) -> bool:
        """Offer to save unsaved changes; False when the user cancels."""
        if not self.project.dirty:
            return True
        answer = QMessageBox.question(
            self, "Save changes?", f"Save the changes to “{self.project.name}” first?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save)
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        if answer == QMessageBox.StandardButton.Discard:
            self.autosaver.wait()
            discard_recovery()  # kept once more as a backup, just in case
            return True
        return False

    def _replace_project(self, other: Project) -> None:
        self.project.replace_with(other)
        self.undo_stack.clear()
        self._update_title()

    @Slot()
    def new_project(self) -> None:
        if self.maybe_save():
            self._replace_project(Project())
            self.statusBar().showMessage("New project: add rows or import a dataset", 5000)

    @Slot()
    def open_dialog(self) -> None:
        if not self.maybe_save():
            return
        start = str(self.project.path.parent) if self.project.path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open project", start, f"{PROJECT_FILTER};;All files (*)")
        if path:
            self.open_project(path)

    def open_project(self, path: str | Path) -> bool:
        """Load a project file into this window (unsaved changes must be dealt with first)."""
        try:
            loaded = Project.load(path)
        except ProjectError as exc:
            show_error(self, "Cannot open the project", str(exc))
            return False
        self._replace_project(loaded)
        self.add_recent(Path(path))
        self.statusBar().showMessage(f"Opened {path}", 5000)
        return True

    @Slot()
    def save(self) -> bool:
        if self.project.path is None:
            return self.save_as()
        return self._save_to(self.project.path)

    @Slot()
    def save_as(self) -> bool:
        start = str(self.project.path or Path.home() / f"{self.project.name}{PROJECT_SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(self, "Save project as", start, PROJECT_FILTER)
        if not path:
            return False
        target = Path(path)
        if target.suffix != PROJECT_SUFFIX:
            target = target.with_name(target.name + PROJECT_SUFFIX)
        return self._save_to(target)

    def _save_to(self, path: Path) -> bool:
        self.autosaver.wait()
        try:
            self.project.save(path)
        except OSError as exc:  # a StorageError (disk full, read-only) names the file itself
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            show_error(self, "Cannot save the project", message)
            return False
        self.undo_stack.setClean()
        self.add_recent(path)
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def add_recent(self, path: Path) -> None:
        window_state.add_recent(path)

    @Slot()
    def _fill_recent_menu(self) -> None:
        window_state.fill_recent_menu(self.recent_menu, self._open_recent)

    def _open_recent(self, path: str) -> None:
        if self.maybe_save():
            self.open_project(path)

    # --- import and export (ImportController does the work) ---------------------------------------------
    def import_file(self, path: str | Path, mode: Mode | None = None, mapping: dict[str, str] | None = None) -> None:
        """Read a dataset file in the background, then replace or append (``mode``; None asks)."""
        self.importer.import_file(path, mode, mapping)

    def is_importing(self) -> bool:
        return self.importer.is_importing()

    @Slot(bool)
    def _on_importing(self, importing: bool) -> None:
        self.act_import.setEnabled(not importing)
        self.act_import_hub.setEnabled(not importing)

    @Slot(str, object)
    def _on_progress(self, text: str, fraction: object) -> None:
        self.statusBar().showMessage(text)
        show_fraction(self.busy_bar, float(fraction) if isinstance(fraction, float | int) else None)

    @Slot(str)
    def _set_busy(self, text: str) -> None:
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setVisible(bool(text))
        if text:
            self.statusBar().showMessage(text)
        else:
            self.statusBar().clearMessage()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_path(event.mimeData().urls()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = dropped_path(event.mimeData().urls())
        if path is None:
            return
        event.acceptProposedAction()
        if path.suffix.lower() != PROJECT_SUFFIX:
            self.import_file(path)
        elif self.maybe_save():
            self.open_project(path)

    # --- device and about ------------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            if self._probe_device:  # after the first paint: it imports torch, on a worker thread
                QTimer.singleShot(500, self.probe_device)
            elif self._count_tokens:
                QTimer.singleShot(500, self.dataset_tab.count_tokens)

    @Slot()
    def probe_device(self) -> None:
        model = ModelSettings.from_dict(self.project.config.model.to_dict())  # a copy: edits may follow
        self.jobs.start(warm_up_training_stack, model, key="device", on_result=self._on_device,
                        on_error=self._on_device_failed)

    @Slot(object)
    def _on_device(self, text: str) -> None:
        self._device = str(text)
        self.device_label.setText(f"Device: {self._device}")
        self._start_token_count()

    def _start_token_count(self) -> None:
        """Once the ML stack is warm: count the rows' tokens (and show the current row's) in the background."""
        if self._count_tokens:
            self.dataset_tab.count_tokens()

    @Slot(str, str)
    def _on_device_failed(self, message: str, _details: str) -> None:
        self._device = f"unknown ({message})"
        self.device_label.setText("Device: unknown")
        self.device_label.setToolTip(message)
        self._start_token_count()

    def about_text(self) -> str:
        return about_html(self._device)

    @Slot()
    def show_about(self) -> None:
        QMessageBox.about(self, "About LoRA Desk", self.about_text())

    # --- closing ---------------------------------------------------------------------------------------
    def autosave(self) -> None:
        """Write the recovery file for unsaved changes now (in the background)."""
        self.autosaver.write()

    def wait_for_autosave(self) -> None:
        """Let a recovery write in progress finish."""
        self.autosaver.wait()

    def close_keeping_unsaved(self) -> bool:
        """Close without asking (a signal asked the app to quit): unsaved changes are written to the recovery
        file, offered again at the next start. Stop a running training first (it keeps its adapter)."""
        self._ask_on_close = False
        self.autosaver.wait()
        self.autosaver.write()
        self.autosaver.wait()
        return self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._ask_on_close and self.training_tab.is_running():
            answer = QMessageBox.question(
                self, "Training is running", "Stop training and quit? The adapter trained so far is kept "
                "and the run can be resumed later.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        if self._ask_on_close and not self.maybe_save():
            event.ignore()
            return
        self.autosaver.stop()
        for tab in (self.training_tab, self.compare_tab, self.runs_tab, self.dataset_tab, self.settings_form):
            tab.shutdown()
        self.jobs.shutdown()
        self.importer.jobs.shutdown()
        self.autosaver.wait()
        if not self.project.dirty:
            discard_recovery(keep_backup=False)
        window_state.save_window(self, self.splitter)
        event.accept()
