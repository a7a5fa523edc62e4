"""Start the desktop app: QApplication, the project to open, the main window, and the process tuning.

Nothing here imports torch: the window is on screen before the ML stack loads (it loads on worker
threads when first needed). The interpreter's tuning for a responsive window lives here too: the thread
switch interval, and when the garbage collector is paused or told to leave long-lived objects alone.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from loradesk import __version__
from loradesk.core.config import ModelSettings
from loradesk.core.dataset import Dataset
from loradesk.core.importing import is_dataset_file
from loradesk.core.project import (
    Project,
    ProjectError,
    RecoveryInfo,
    discard_recovery,
    find_recovery,
    recover,
    recovery_path,
)
from loradesk.core.wording import plural
from loradesk.ui.errors import show_error
from loradesk.ui.jobs import shutdown_process_pool, wait_for_jobs
from loradesk.ui.signal_bridge import SignalBridge
from loradesk.ui.single_instance import claim_instance
from loradesk.ui.style import apply_style
from loradesk.ui.window_state import recent_projects

if TYPE_CHECKING:
    from loradesk.ui.main_window import MainWindow

APP_NAME = "LoRA Desk"
#: How often a thread holding the GIL hands it over to a waiting one (Python's default: 5 ms).
SWITCH_INTERVAL_S = 0.001
#: Imports of at least this many rows take their objects out of the garbage collector's full passes.
FREEZE_ROWS = 10_000


def create_app(argv: Sequence[str] = ()) -> QApplication:
    """The QApplication (created once), named and styled."""
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0], *argv])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("loradesk")
    apply_style(app)
    # Qt calls back into Python for every cell it paints, and each callback must win the GIL back from a
    # busy worker thread (checks, token counts, a recovery write). At the default 5 ms switch interval a
    # repaint of the table during such work waited up to 5 ms per callback (undo of an edit: ~0.3-0.5 s on
    # 100,000 rows); at 1 ms the wait is short and workers lose a few per cent.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return app


def warm_up_training_stack(model: ModelSettings | None = None) -> str:
    """The training device; on the way, import the training stack (on a worker thread, shortly after start-up)
    so that pressing Train later does not stall the window on multi-second imports holding the GIL.

    With ``model`` already on this machine (nothing is downloaded or converted here), its tokenizer is loaded
    into the process's shared copy too: a Rust tokenizer load holds the GIL for ~120 ms, which pressing Train
    would otherwise pay (the Dataset tab tokenizes in the worker process, so nothing else loads it here). Its
    longest vocabulary entry (the bound for cutting long rows) is found here as well: 49k Python steps that,
    right after Train on one busy core, made the window's painting wait 107-154 ms for the lock."""
    from loradesk.core import models
    from loradesk.core.ml_stack import import_stack
    from loradesk.core.tokenize import longest_token_chars

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
        import loradesk.core.preflight  # noqa: F401  (and with it the training module: what Start imports)

        text = models.device_description()
        folder = models.local_model_folder(model) if model is not None else None
        if folder is not None:
            with contextlib.suppress(Exception):  # a broken folder is reported when it is used, not here
                tokenizer, _lock = models.shared_tokenizer(folder, model.trust_remote_code)
                longest_token_chars(tokenizer)  # a walk over the vocabulary, which Start would do (cached)
                _import_model_code(folder)
        gc.freeze()
    finally:
        if was_enabled:
            gc.enable()
    return text


def _import_model_code(folder: Path) -> None:
    """Import the transformers modelling module of the model in ``folder`` (imported lazily on first load:
    ~0.1 s of Python holding the GIL, in the seconds after Train is pressed otherwise)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    config = AutoConfig.from_pretrained(folder)  # a local folder's config.json: no remote code runs here
    MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]  # the lazy mapping imports the module


def settle_imported_rows(count: int) -> None:
    """After ``count`` rows came in: a big import's objects leave the garbage collector's full passes.

    A big file brings hundreds of thousands of long-lived objects (rows, cached texts, keys). Left to the
    garbage collector, each full collection walks them all while holding the GIL (~50-100 ms at 100,000 rows,
    on whichever thread triggers it). Rows have no reference cycles, so freezing them out of the collector
    costs nothing: they are still freed when no longer used.
    """
    if count >= FREEZE_ROWS:
        gc.freeze()


def ask_restore(info: RecoveryInfo, parent: QWidget | None = None) -> bool:
    """Offer the unsaved work a previous session left behind (or its backup, when the project won't open)."""
    source = info.source.name if info.source else "an untitled project"
    when = info.saved.replace("T", " ")[:16] if info.saved else "an earlier session"
    backup = recovery_path(backup=True)
    if info.path == backup:
        text = (f"The last autosaved copy of changes to {source} ({plural(info.rows, 'row')}, saved {when}) is kept in "
                f"{backup.name}.\n\nOpen it? (If not, it stays there and the sample dataset opens.)")
    else:
        text = (f"LoRA Desk did not close normally. Unsaved changes to {source} ({plural(info.rows, 'row')}, saved "
                f"{when}) can be restored.\n\nRestore them? (If not, they are kept in {backup.name}.)")
    answer = QMessageBox.question(
        parent, "Restore unsaved work?", text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes)
    return answer == QMessageBox.StandardButton.Yes


def startup_project(paths: Sequence[str], restore: Callable[[RecoveryInfo], bool] = ask_restore
                    ) -> tuple[Project, str]:
    """The project to open and a status message: the file given (a project, or a dataset to start from),
    else the unsaved work of a crashed session, else the last project, else the sample dataset."""
    info = find_recovery()
    if paths:
        path = Path(paths[0])
        if info is not None:
            discard_recovery()  # kept as .bak: opening a file never overwrites unsaved work
        if is_dataset_file(path):
            from loradesk.core.formats import FormatError, read_dataset
            from loradesk.ui.window_state import import_conversations

            try:
                notes: list[str] = []
                project = Project(Dataset(read_dataset(path, notes=notes, conversations=import_conversations())))
                project.mark_dirty()  # new rows, no project file yet
                return project, "; ".join([f"Imported {plural(len(project.dataset), 'row')} from {path.name}",
                                           *notes])
            except (FormatError, OSError) as exc:
                show_error(None, "Cannot import the dataset", str(exc))
        else:
            try:
                return Project.load(path), f"Opened {path}"
            except ProjectError as exc:
                show_error(None, "Cannot open the project", str(exc))
    elif info is not None:
        if restore(info):
            try:
                return recover(), "Restored unsaved work"
            except ProjectError as exc:
                show_error(None, "Cannot restore the unsaved work", str(exc))
        discard_recovery()
    for recent in recent_projects()[:1]:
        if Path(recent).is_file():
            try:
                return Project.load(recent), f"Opened {recent}"
            except ProjectError as exc:
                restored = _broken_last_project(Path(recent), exc, restore)
                if restored is not None:
                    return restored, "Restored the autosaved copy"
    return _sample_project()


def _broken_last_project(path: Path, error: ProjectError, restore: Callable[[RecoveryInfo], bool]
                         ) -> Project | None:
    """Say why the last project did not open (the file is left as it is) and offer the autosaved copy of
    its unsaved work, if one is kept; returns the restored project, or ``None`` to go on with the sample."""
    # Shown before the main window exists: the text says what happened, since not every desktop shows a title.
    show_error(None, "Cannot open the last project",
               f"LoRA Desk could not open the last project, {path.name}.\n\n{error}\n\n"
               "The file is left as it is; LoRA Desk opens the sample dataset instead.")
    backup = find_recovery(backup=True)
    if backup is None or backup.source is None or backup.source.resolve() != path.resolve() \
            or not restore(backup):
        return None
    try:
        return recover(backup=True)
    except ProjectError as exc:
        show_error(None, "Cannot restore the unsaved work", str(exc))
        return None


def _sample_project() -> tuple[Project, str]:
    try:
        return Project.new_default(), "A sample dataset to start with: press Train, or edit the rows"
    except (FileNotFoundError, ProjectError):
        return Project(), ""


def build_window(argv: Sequence[str] = (), restore: Callable[[RecoveryInfo], bool] = ask_restore) -> MainWindow:
    """Create the app and its main window (shown), without entering the event loop."""
    from loradesk.ui.main_window import MainWindow  # the window's own modules import this one's tuning

    app = create_app(argv)
    project, message = startup_project([a for a in app.arguments()[1:] if not a.startswith("-")], restore)
    window = MainWindow(project)
    if project.path is not None:
        window.add_recent(project.path)
    window.show()
    if message:
        window.statusBar().showMessage(message, 8000)
    return window


def run_gui(argv: Sequence[str] | None = None) -> int:
    """Run the desktop app; ``argv`` are the arguments after the program name (a project file, Qt options)."""
    args = sys.argv[1:] if argv is None else list(argv)
    create_app(args)
    instance_lock = claim_instance()  # before the autosave is read: one window per data folder
    if instance_lock is None:
        return 1
    window = build_window(args)
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    signals = SignalBridge(window, app)  # SIGINT/SIGTERM: stop training, keep unsaved work, quit 130/143
    code = app.exec()
    code = signals.exit_code or code
    signals.close()
    shutdown_process_pool()
    if not wait_for_jobs():  # e.g. the one-time model conversion still writing: let it finish
        # A thread that would not stop in time (a download cannot be cancelled): end without destroying it
        # under its feet, which would abort the process. Everything the user has was saved by the close.
        print("loradesk: a background task did not finish in time; quitting without it", file=sys.stderr,
              flush=True)
        instance_lock.unlock()
        os._exit(code)
    del window
    instance_lock.unlock()
    return code
