"""The main window: a thin shell of tabs, menus and a status bar around one :class:`Project`.

The window owns no business logic: the tabs edit the project, the core does the work. The only state
kept here besides the project is window geometry and recent files, in QSettings.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Slot, qVersion
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QDialog,
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

from loradesk import __version__
from loradesk.core.paths import app_home
from loradesk.core.project import (
    PROJECT_SUFFIX,
    ConfigChanged,
    DirtyChanged,
    PathChanged,
    Project,
    ProjectError,
    ProjectEvent,
    ProjectLoaded,
    discard_recovery,
    write_recovery,
)
from loradesk.ui.dataset_tab import DatasetTab
from loradesk.ui.import_dialogs import ColumnMappingDialog, HubImportDialog
from loradesk.ui.settings_form import SettingsForm
from loradesk.ui.tasks import Tasks

#: Imports of at least this many rows take their objects out of the garbage collector's full passes.
FREEZE_ROWS = 10_000
APP_NAME = "LoRA Desk"
PROJECT_FILTER = f"LoRA Desk projects (*{PROJECT_SUFFIX})"
DATASET_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv")
MAX_RECENT = 8
AUTOSAVE_MS = 2000


def window_settings() -> QSettings:
    """Window geometry and recent files (never run settings), kept in the LoRA Desk data folder."""
    return QSettings(str(app_home() / "window.ini"), QSettings.Format.IniFormat)


def recent_projects() -> list[str]:
    value = window_settings().value("recentProjects", [])
    items = [value] if isinstance(value, str) else list(value or [])
    return [str(v) for v in items if v]


def read_dataset_file(path: str, mapping: dict[str, str] | None) -> Any:
    """Read a dataset on a worker thread; a FormatError is returned (not raised) so columns can be mapped."""
    from loradesk.core import formats

    try:
        return formats.read_dataset(path, mapping=mapping)
    except formats.FormatError as exc:
        return exc


def read_hub_rows(source: str, split: str, name: str | None, revision: str | None, limit: int | None,
                  mapping: dict[str, str] | None, progress: Any = None) -> Any:
    """Load a Hugging Face dataset split on a worker thread; a FormatError (columns to map, or a dataset
    that can't be loaded: HubDatasetError) is returned, not raised, like :func:`read_dataset_file`."""
    from loradesk.core import formats, hub_datasets

    try:
        return hub_datasets.load_hub_dataset(source, split, name, revision, mapping, limit, progress)
    except formats.FormatError as exc:
        return exc


@dataclasses.dataclass
class ImportRequest:
    """The import in progress: a file (``path``) or a Hugging Face dataset (``hub``: load_hub_dataset's
    arguments), how its rows go in (``mode``: replace, append, or None to ask) and the column mapping."""

    name: str  # in messages and the undo text
    mode: str | None
    mapping: dict[str, str] | None
    path: str = ""
    hub: dict[str, Any] | None = None


def write_dataset_file(path: str, rows: list[Any], fmt: str) -> str:
    from loradesk.core import formats

    formats.write_dataset(path, rows, fmt)
    return path


def library_versions() -> dict[str, str]:
    """Installed versions of the ML stack, read from package metadata (nothing is imported)."""
    out = {}
    for name in ("torch", "transformers", "peft"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_text() -> str:
    """The training device; on the way, import the training stack (on a worker thread, shortly after start-up)
    so that pressing Train later does not stall the window on multi-second imports holding the GIL."""
    from loradesk.core import models
    from loradesk.core.ml_stack import import_stack

    # The imports create hundreds of thousands of long-lived objects. While they run, the collector's full
    # passes walk the growing heap holding the GIL (measured: six passes of 40-260 ms freezing the window in
    # the first seconds) and find almost nothing to free, so it is paused; afterwards the import-time objects
    # are moved out of its view for good. Otherwise each later full collection (accelerate runs one when
    # training starts, transformers while loading a model) walks them all: ~200-240 ms freezes, ~20 ms after.
    # Only import-time objects are frozen (no model is loaded yet), and those live as long as the process.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        import_stack()  # one thread at a time: a run started meanwhile waits for it
        text = models.device_description()
        gc.freeze()
    finally:
        if was_enabled:
            gc.enable()
    return text


def _placeholder(title: str, error: Exception) -> QWidget:
    print(f"loradesk: the {title} tab could not be loaded: {error}", file=sys.stderr)
    label = QLabel(f"The {title} tab could not be loaded:\n{error}")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    return label


class MainWindow(QMainWindow):
    """Dataset (with settings), Train, Compare and Runs tabs around one project."""

    def __init__(self, project: Project, parent: QWidget | None = None, *, probe_device: bool = True,
                 count_tokens: bool = True) -> None:
        """``probe_device``/``count_tokens``: start the device probe and the token count in the background."""
        super().__init__(parent)
        self.project = project
        self._count_tokens = count_tokens
        self.undo_stack = QUndoStack(self)
        self._tasks = Tasks(self)
        self._probe_device = probe_device
        self._device: str | None = None
        self._shown_once = False
        self._importing = False
        self._import: ImportRequest | None = None
        self._hub_values: dict[str, Any] = {}
        self._settings_ok = True
        self._ask_on_close = True
        self.setAcceptDrops(True)
        self._build_tabs()
        self._build_actions()
        self._build_menus()
        self._build_status_bar()
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(AUTOSAVE_MS)
        self._autosave_timer.timeout.connect(self.autosave)
        self._autosave_tasks = Tasks(self)
        self._unsubscribe = [project.subscribe(self._on_project_event),
                             project.dataset.subscribe(self._on_dataset_event)]
        for unsubscribe in self._unsubscribe:
            self.destroyed.connect(unsubscribe)
        self._restore_window()
        self._update_title()
        self._update_train_block()
        self._update_run_actions()

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

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(page, "Dataset")
        self.training_tab = self._load_tab("training_tab", "TrainingTab", "Train")
        self.compare_tab = self._load_tab("compare_tab", "CompareTab", "Compare")
        self.runs_tab = self._load_tab("runs_tab", "RunsTab", "Runs")
        self.setCentralWidget(self.tabs)

        self.settings_form.validity_changed.connect(self._on_validity)
        self.dataset_tab.stats_changed.connect(self._on_stats)
        if hasattr(self.training_tab, "running_changed"):
            self.training_tab.running_changed.connect(self._on_running)
            self.training_tab.run_finished.connect(self._on_run_finished)
        if hasattr(self.runs_tab, "run_selected"):
            self.runs_tab.run_selected.connect(self.show_run)
            self.runs_tab.resume_requested.connect(self.resume_training)

    def _load_tab(self, module: str, cls: str, title: str) -> QWidget:
        try:
            widget_class = getattr(importlib.import_module(f"loradesk.ui.{module}"), cls)
            widget: QWidget = widget_class(self.project)
        except ImportError as exc:
            widget = _placeholder(title, exc)
        self.tabs.addTab(widget, title)
        return widget

    def _action(self, text: str, slot: Any, keys: Any = None, tip: str = "") -> QAction:
        act = QAction(text, self)
        if keys is not None:
            act.setShortcuts(keys if isinstance(keys, list) else [QKeySequence(keys)])
        if tip:
            act.setStatusTip(tip)
        act.triggered.connect(slot)
        return act

    def _build_actions(self) -> None:
        key = QKeySequence.StandardKey
        self.act_new = self._action("&New", self.new_project, key.New, "Start an empty project")
        self.act_open = self._action("&Open…", self.open_dialog, key.Open, "Open a LoRA Desk project")
        self.act_save = self._action("&Save", self.save, key.Save, "Save the project")
        self.act_save_as = self._action("Save &As…", self.save_as, key.SaveAs, "Save the project to a new file")
        self.act_import = self._action("&Import Dataset…", self.import_dialog, "Ctrl+I",
                                       "Read rows from JSON, JSONL, CSV, Alpaca, ShareGPT or OpenAI chat files")
        self.act_import_hub = self._action("Import from &Hugging Face…", self.import_hub_dialog, "Ctrl+Shift+I",
                                           "Read rows from a dataset on the Hugging Face Hub or a dataset folder")
        self.act_export = self._action("&Export Dataset…", self.export_dialog, "Ctrl+E",
                                       "Write the rows to a dataset file")
        quit_keys = QKeySequence.keyBindings(key.Quit) or [QKeySequence("Ctrl+Q")]
        self.act_quit = self._action("&Quit", self.close, quit_keys, "Close LoRA Desk")
        self.act_quit.setMenuRole(QAction.MenuRole.QuitRole)

        self.act_undo = self.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setShortcuts(QKeySequence.keyBindings(key.Undo))
        self.act_redo = self.undo_stack.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts(QKeySequence.keyBindings(key.Redo))

        self.act_train = self._action("&Train", self.start_training, "F5", "Train an adapter on the dataset")
        self.act_stop = self._action("&Stop", self.stop_training, "Shift+F5",
                                     "Stop after the current step and keep the adapter")
        self.act_resume = self._action("&Resume", self.resume_training, "Ctrl+F5",
                                       "Continue the last stopped run from its checkpoint")
        self.act_about = self._action("&About LoRA Desk", self.show_about)
        self.act_about.setMenuRole(QAction.MenuRole.AboutRole)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.act_new, self.act_open])
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        file_menu.addActions([self.act_save, self.act_save_as])
        file_menu.addSeparator()
        file_menu.addActions([self.act_import, self.act_import_hub, self.act_export])
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)

        edit = bar.addMenu("&Edit")
        edit.addActions([self.act_undo, self.act_redo])
        edit.addSeparator()
        tab = self.dataset_tab
        edit.addActions([tab.act_add, tab.act_duplicate, tab.act_delete])
        edit.addSeparator()
        edit.addActions([tab.act_find, tab.act_replace])
        split = edit.addMenu("S&plit")
        split.addActions([tab.act_mark_validation, tab.act_mark_train, tab.act_mark_auto])

        run = bar.addMenu("&Run")
        run.addActions([self.act_train, self.act_stop, self.act_resume])
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.act_about)

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
        status.addPermanentWidget(self.busy_bar)
        status.addPermanentWidget(self.rows_label)
        status.addPermanentWidget(self.problems_label)
        status.addPermanentWidget(self.device_label)
        self._on_stats(len(self.project.dataset), self.dataset_tab.model.problem_row_count())

    def _restore_window(self) -> None:
        settings = window_settings()
        geometry = settings.value("geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1320, 820)
        state = settings.value("windowState")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        splitter = settings.value("datasetSplitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)

    def _save_window(self) -> None:
        settings = window_settings()
        settings.setValue("geometry", self.saveGeometry())
        settings.setValue("windowState", self.saveState())
        settings.setValue("datasetSplitter", self.splitter.saveState())
        settings.sync()

    # --- project state ---------------------------------------------------------------------------------
    def _on_project_event(self, event: ProjectEvent) -> None:
        if isinstance(event, DirtyChanged | PathChanged | ProjectLoaded):
            self._update_title()
        if isinstance(event, ConfigChanged):
            self._schedule_autosave()

    def _on_dataset_event(self, _event: Any) -> None:
        self._schedule_autosave()

    def _schedule_autosave(self) -> None:
        if not self._autosave_timer.isActive():
            self._autosave_timer.start()

    @Slot()
    def autosave(self) -> None:
        """Write the recovery file for unsaved changes (a crash loses at most a couple of seconds).

        The snapshot is taken here; encoding and writing happen on a worker thread (a 100,000-row project
        is ~30 MB of JSON). A change made while a write runs is picked up by the next one.
        """
        if self._autosave_tasks.busy():
            self._schedule_autosave()
            return
        snapshot = self.project.recovery_snapshot()
        if snapshot is not None:
            self._autosave_tasks.run(write_recovery, snapshot, on_error=self._on_autosave_failed)

    def wait_for_autosave(self) -> None:
        """Let a recovery write in progress finish (before a save or a discard replaces the file)."""
        self._autosave_tasks.shutdown(-1)

    @Slot(str, str)
    def _on_autosave_failed(self, message: str, _details: str) -> None:
        self.statusBar().showMessage(f"Could not write the recovery file: {message}", 8000)

    def _update_title(self) -> None:
        self.setWindowTitle(f"{self.project.name}[*] — {APP_NAME}")
        self.setWindowModified(self.project.dirty)

    @Slot(int, int)
    def _on_stats(self, rows: int, problems: int) -> None:
        self.rows_label.setText(f"{rows:,} row{'s' if rows != 1 else ''}")
        self.problems_label.setText(f"{problems:,} with problems" if problems else "No problems")
        self.problems_label.setStyleSheet("color: #d64545;" if problems else "")
        self._update_train_block()

    @Slot(bool, str)
    def _on_validity(self, ok: bool, _reason: str) -> None:
        self._settings_ok = ok
        self._update_train_block()

    def train_blocked_reason(self) -> str:
        """Why training cannot start now ("" when it can)."""
        if not self.settings_form.is_valid():
            return "Fix the settings first: " + self.settings_form.reason()
        if len(self.project.dataset) == 0:
            return "Add some rows to the dataset first"
        return ""

    def _update_train_block(self) -> None:
        reason = self.train_blocked_reason()
        if hasattr(self.training_tab, "set_blocked"):
            self.training_tab.set_blocked(reason or None)
        self.act_train.setToolTip(reason or self.act_train.statusTip())
        self._update_run_actions()

    # --- run menu --------------------------------------------------------------------------------------
    def _running(self) -> bool:
        return bool(getattr(self.training_tab, "is_running", lambda: False)())

    def _update_run_actions(self, *_args: Any) -> None:
        available = hasattr(self.training_tab, "start")
        running = self._running()
        self.act_train.setEnabled(available and not running and not self.train_blocked_reason())
        self.act_stop.setEnabled(available and running)
        resumable = getattr(self.training_tab, "resume_dir", None) is not None
        self.act_resume.setEnabled(available and not running and resumable and self._settings_ok)

    @Slot()
    def start_training(self) -> None:
        self.tabs.setCurrentWidget(self.training_tab)
        self.training_tab.start()

    @Slot()
    def stop_training(self) -> None:
        self.training_tab.stop()

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
        if hasattr(self.runs_tab, "refresh"):
            self.runs_tab.refresh()
        if hasattr(self.compare_tab, "set_run"):
            self.compare_tab.set_run(run_dir)
        self._update_run_actions()

    @Slot(str)
    def show_run(self, run_dir: str) -> None:
        """Compare the given run (from the Runs tab)."""
        if hasattr(self.compare_tab, "set_run"):
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
            self.wait_for_autosave()
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
            QMessageBox.critical(self, "Cannot open the project", str(exc))
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
        self.wait_for_autosave()
        try:
            self.project.save(path)
        except OSError as exc:  # a StorageError (disk full, read-only) names the file itself
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            QMessageBox.critical(self, "Cannot save the project", message)
            return False
        self.undo_stack.setClean()
        self.add_recent(path)
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def add_recent(self, path: Path) -> None:
        items = [str(path.resolve())] + [p for p in recent_projects() if p != str(path.resolve())]
        window_settings().setValue("recentProjects", items[:MAX_RECENT])

    @Slot()
    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        items = [p for p in recent_projects() if Path(p).is_file()]
        for item in items:
            act = self.recent_menu.addAction(Path(item).name)
            act.setStatusTip(item)
            act.setData(item)
            act.triggered.connect(self._open_recent)
        if not items:
            self.recent_menu.addAction("No recent projects").setEnabled(False)

    @Slot()
    def _open_recent(self) -> None:
        act = self.sender()
        if isinstance(act, QAction) and self.maybe_save():
            self.open_project(str(act.data()))

    # --- import and export -----------------------------------------------------------------------------
    @Slot()
    def import_dialog(self) -> None:
        from loradesk.core.formats import IMPORT_FILTER

        path, _ = QFileDialog.getOpenFileName(self, "Import dataset", str(Path.home()), IMPORT_FILTER)
        if path:
            self.import_file(path)

    def import_file(self, path: str | Path, mode: str | None = None,
                    mapping: dict[str, str] | None = None) -> None:
        """Read a dataset file on a worker thread, then replace or append (``mode``; None asks)."""
        request = ImportRequest(Path(path).name, mode, mapping, path=str(path))
        self._start_import(request, read_dataset_file, str(path), mapping)

    @Slot()
    def import_hub_dialog(self) -> None:
        """Ask for a Hugging Face dataset (the last one asked for is proposed), then import it."""
        self._ask_hub_import(self._hub_values)

    def _ask_hub_import(self, values: dict[str, Any], splits: list[str] | None = None, error: str = "") -> None:
        dialog = HubImportDialog(self, values=values, splits=splits, error=error)
        accepted = dialog.exec() == QDialog.DialogCode.Accepted
        dialog.deleteLater()
        if accepted:
            self._hub_values = dialog.values()
            self.import_hub(**self._hub_values)

    def import_hub(self, source: str, split: str = "train", name: str | None = None, revision: str | None = None,
                   limit: int | None = None, mode: str | None = None, mapping: dict[str, str] | None = None) -> None:
        """Load a Hugging Face dataset split (Hub id or local folder) on a worker thread, then replace or append."""
        from loradesk.core.hub_datasets import source_label

        hub = {"source": source, "split": split, "name": name, "revision": revision, "limit": limit}
        request = ImportRequest(source_label(source, split), mode, mapping, hub=hub)
        self._start_import(request, read_hub_rows, source, split, name, revision, limit, mapping,
                           on_progress=self._on_import_progress)

    def _start_import(self, request: ImportRequest, fn: Any, *args: Any, on_progress: Any = None) -> None:
        if self._importing:
            return
        self._importing = True
        self._import = request
        self.act_import.setEnabled(False)
        self.act_import_hub.setEnabled(False)
        self._set_busy(f"Reading {request.name}…")
        self._tasks.run(fn, *args, on_result=self._on_import_read, on_error=self._on_import_failed,
                        on_progress=on_progress)

    def is_importing(self) -> bool:
        return self._importing

    def _import_done(self) -> ImportRequest:
        request = self._import
        assert request is not None
        self._importing = False
        self._import = None
        self.act_import.setEnabled(True)
        self.act_import_hub.setEnabled(True)
        self._set_busy("")
        return request

    @Slot(str, object)
    def _on_import_progress(self, text: str, fraction: object) -> None:
        if not self._importing:
            return
        self.statusBar().showMessage(text)
        if isinstance(fraction, float | int):
            self.busy_bar.setRange(0, 100)
            self.busy_bar.setValue(round(100 * fraction))
        else:
            self.busy_bar.setRange(0, 0)

    def _retry_import(self, request: ImportRequest, mapping: dict[str, str]) -> None:
        if request.hub is not None:
            self.import_hub(**request.hub, mode=request.mode, mapping=mapping)
        else:
            self.import_file(request.path, request.mode, mapping)

    @Slot(object)
    def _on_import_read(self, result: Any) -> None:
        from loradesk.core.formats import FormatError
        from loradesk.core.hub_datasets import HubDatasetError

        request = self._import_done()
        name = request.name
        if isinstance(result, FormatError):
            if result.columns and request.mapping is None:
                dialog = ColumnMappingDialog(name, result.columns, result.message, self, records=result.preview)
                accepted = dialog.exec() == QDialog.DialogCode.Accepted
                dialog.deleteLater()
                if accepted:
                    self._retry_import(request, dialog.mapping())
                return
            if isinstance(result, HubDatasetError) and request.hub and (result.splits or result.configs):
                self._ask_hub_import(request.hub, result.splits, str(result))  # choose a split or config
                return
            QMessageBox.warning(self, "Cannot import the dataset", str(result))
            return
        rows = list(result)
        mode = request.mode
        if mode is None:
            mode = "replace" if len(self.project.dataset) == 0 else self.ask_import_mode(name, len(rows))
        if mode == "replace":
            self.dataset_tab.model.replace_examples(rows, f"Import {name}")
        elif mode == "append":
            self.dataset_tab.model.insert_examples(len(self.project.dataset), rows, f"Append {name}")
        else:
            return
        if len(rows) >= FREEZE_ROWS:
            # A big file brings hundreds of thousands of long-lived objects (rows, cached texts, keys). Left
            # to the garbage collector, each full collection walks them all while holding the GIL (~50-100 ms
            # at 100,000 rows, on whichever thread triggers it). Rows have no reference cycles, so freezing
            # them out of the collector costs nothing: they are still freed when no longer used.
            gc.freeze()
        self.statusBar().showMessage(f"Imported {len(rows):,} rows from {name}", 6000)

    @Slot(str, str)
    def _on_import_failed(self, message: str, _details: str) -> None:
        self._import_done()
        QMessageBox.warning(self, "Cannot import the dataset", message)

    def ask_import_mode(self, name: str, count: int) -> str | None:
        """Ask whether the imported rows replace the current ones or are added after them."""
        box = QMessageBox(QMessageBox.Icon.Question, "Import dataset",
                          f"{name} has {count:,} rows. Replace the {len(self.project.dataset):,} rows in the "
                          "table, or add the new rows after them?", parent=self)
        replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
        append = box.addButton("Append", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(append)
        box.setInformativeText("Either way, Undo brings the old rows back.")
        box.exec()
        clicked = box.clickedButton()
        return "replace" if clicked is replace else "append" if clicked is append else None

    @Slot()
    def export_dialog(self) -> None:
        from loradesk.core.formats import EXPORT_FILTER, EXPORT_FORMATS

        start = str(Path.home() / f"{self.project.name}.jsonl")
        path, chosen = QFileDialog.getSaveFileName(self, "Export dataset", start, EXPORT_FILTER)
        if not path:
            return
        fmt = EXPORT_FORMATS.get(chosen, "jsonl")
        suffix = chosen[chosen.find("*") + 1:chosen.rfind(")")] if "*" in chosen else ""
        if suffix and not path.endswith(suffix):
            path += suffix
        self.export_file(path, fmt)

    def export_file(self, path: str | Path, fmt: str) -> None:
        """Write a snapshot of the rows on a worker thread."""
        rows = [dataclasses.replace(r) for r in self.project.dataset]
        self._set_busy(f"Writing {Path(path).name}…")
        self._tasks.run(write_dataset_file, str(path), rows, fmt, on_result=self._on_exported,
                        on_error=self._on_export_failed)

    @Slot(object)
    def _on_exported(self, path: str) -> None:
        self._set_busy("")
        self.statusBar().showMessage(f"Exported {len(self.project.dataset):,} rows to {path}", 6000)

    @Slot(str, str)
    def _on_export_failed(self, message: str, _details: str) -> None:
        self._set_busy("")
        QMessageBox.warning(self, "Cannot export the dataset", message)

    def _set_busy(self, text: str) -> None:
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setVisible(bool(text))
        if text:
            self.statusBar().showMessage(text)
        else:
            self.statusBar().clearMessage()

    # --- drag and drop ---------------------------------------------------------------------------------
    @staticmethod
    def _dropped_file(event: QDragEnterEvent | QDropEvent) -> Path | None:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if len(urls) != 1 or not urls[0].isLocalFile():
            return None
        path = Path(urls[0].toLocalFile())
        return path if path.suffix.lower() in (*DATASET_SUFFIXES, PROJECT_SUFFIX) else None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_file(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_file(event)
        if path is None:
            return
        event.acceptProposedAction()
        if path.suffix.lower() == PROJECT_SUFFIX:
            if self.maybe_save():
                self.open_project(path)
        else:
            self.import_file(path)

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
        self._tasks.run(device_text, on_result=self._on_device, on_error=self._on_device_failed)

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
        versions = library_versions()
        rows = [("LoRA Desk", __version__), ("Python", platform.python_version()),
                ("Qt", f"{qVersion()} (PySide6 {pyside_version})"),
                *((name.capitalize() if name != "peft" else "PEFT", v) for name, v in versions.items()),
                ("Device", self._device or "still detecting…"), ("Data folder", str(app_home()))]
        table = "".join(f"<tr><td style='padding-right:12px'><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
        return (f"<h3>LoRA Desk {__version__}</h3><p>Teach a language model a new fact with LoRA "
                f"fine-tuning, point and click.</p><table>{table}</table>")

    @Slot()
    def show_about(self) -> None:
        QMessageBox.about(self, "About LoRA Desk", self.about_text())

    # --- closing ---------------------------------------------------------------------------------------
    def close_keeping_unsaved(self) -> bool:
        """Close without asking (a signal asked the app to quit): unsaved changes are written to the recovery
        file, offered again at the next start. Stop a running training first (it keeps its adapter)."""
        self._ask_on_close = False
        self.wait_for_autosave()
        self.autosave()
        self.wait_for_autosave()
        return self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._ask_on_close and self._running():
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
        self._autosave_timer.stop()
        for tab in (self.training_tab, self.compare_tab, self.runs_tab, self.dataset_tab, self.settings_form):
            if hasattr(tab, "shutdown"):
                tab.shutdown()
        self._tasks.shutdown()
        self.wait_for_autosave()
        if not self.project.dirty:
            discard_recovery(keep_backup=False)
        self._save_window()
        event.accept()

