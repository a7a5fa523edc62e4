"""The main window's actions (``window.act_*``) and its menu bar: File, Edit, Run, Help."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

from loradesk.ui import job_export, open_run, train_more, window_state

if TYPE_CHECKING:
    from loradesk.ui.main_window import MainWindow


def _action(window: MainWindow, text: str, slot: Callable[..., Any], keys: Any = None, tip: str = "") -> QAction:
    act = QAction(text, window)
    if keys is not None:
        act.setShortcuts(keys if isinstance(keys, list) else [QKeySequence(keys)])
    if tip:
        act.setStatusTip(tip)
    act.triggered.connect(slot)
    return act


def add_actions(window: MainWindow) -> None:
    """Create the window's actions as ``window.act_*``, with their shortcuts and status tips."""
    key = QKeySequence.StandardKey
    w = window
    w.act_new = _action(w, "&New", w.new_project, key.New, "Start an empty project")
    w.act_open = _action(w, "&Open…", w.open_dialog, key.Open, "Open a LoRA Desk project")
    w.run_opener = open_run.RunOpener(w)
    w.act_open_run = _action(w, "Open R&un…", w.run_opener.ask, "Ctrl+Shift+O",
                             "Open a run folder trained elsewhere (another machine, a cluster job) and follow it "
                             "live while it trains")
    w.act_save = _action(w, "&Save", w.save, key.Save, "Save the project")
    w.act_save_as = _action(w, "Save &As…", w.save_as, key.SaveAs, "Save the project to a new file")
    w.act_import = _action(w, "&Import Dataset…", w.importer.import_dialog, "Ctrl+I",
                           "Read rows from JSON, JSONL, CSV, Alpaca, ShareGPT or OpenAI chat files")
    w.act_import_hub = _action(w, "Import from &Hugging Face…", w.importer.hub_dialog, "Ctrl+Shift+I",
                               "Read rows from a dataset on the Hugging Face Hub or a dataset folder")
    w.act_split_pairs = _action(w, "Split Conversations into &Pairs", w.importer.set_split_pairs, None,
                                "Import each conversation of a ShareGPT or OpenAI chat file as prompt/completion "
                                "pairs instead of one multi-turn row")
    w.act_split_pairs.setCheckable(True)
    w.act_split_pairs.setChecked(window_state.import_conversations() == "pairs")
    w.act_export = _action(w, "&Export Dataset…", w.importer.export_dialog, "Ctrl+E",
                           "Write the rows to a dataset file")
    quit_keys = QKeySequence.keyBindings(key.Quit) or [QKeySequence("Ctrl+Q")]
    w.act_quit = _action(w, "&Quit", w.close, quit_keys, "Close LoRA Desk")
    w.act_quit.setMenuRole(QAction.MenuRole.QuitRole)

    w.act_undo = w.undo_stack.createUndoAction(w, "&Undo")
    w.act_undo.setShortcuts(QKeySequence.keyBindings(key.Undo))
    w.act_redo = w.undo_stack.createRedoAction(w, "&Redo")
    w.act_redo.setShortcuts(QKeySequence.keyBindings(key.Redo))

    w.act_train = _action(w, "&Train", w.start_training, "F5", "Train an adapter on the dataset")
    w.act_stop = _action(w, "&Stop", w.training_tab.stop, "Shift+F5",
                         "Stop after the current step and keep the adapter")
    w.act_resume = _action(w, "&Resume", w.resume_training, "Ctrl+F5",
                           "Continue the last stopped run from its checkpoint")
    w.act_train_more = _action(w, "Train &More…", lambda: train_more.start(w), None,
                               "Continue the selected (or last) completed run for more epochs, as a new run")
    w.act_export_job = _action(w, "Export &Job…", lambda: job_export.start(w), None,
                               "Write a folder that trains these rows with these settings on many GPUs or machines "
                               "(torchrun, accelerate, SLURM)")
    w.act_about = _action(w, "&About LoRA Desk", w.show_about)
    w.act_about.setMenuRole(QAction.MenuRole.AboutRole)


def add_menus(window: MainWindow) -> QMenu:
    """Fill the window's menu bar with its actions and the Dataset tab's; returns the (empty) Open Recent menu."""
    w = window
    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    file_menu.addActions([w.act_new, w.act_open])
    recent_menu = file_menu.addMenu("Open &Recent")
    file_menu.addAction(w.act_open_run)
    file_menu.addSeparator()
    file_menu.addActions([w.act_save, w.act_save_as])
    file_menu.addSeparator()
    file_menu.addActions([w.act_import, w.act_import_hub, w.act_split_pairs, w.act_export])
    file_menu.addSeparator()
    file_menu.addAction(w.act_quit)

    edit = bar.addMenu("&Edit")
    edit.addActions([w.act_undo, w.act_redo])
    edit.addSeparator()
    tab = w.dataset_tab
    edit.addActions([tab.act_add, tab.act_duplicate, tab.act_delete])
    edit.addActions([tab.row_actions.act_edit_conversation, tab.row_actions.act_convert])
    edit.addSeparator()
    edit.addActions([tab.act_find, tab.act_replace])
    split = edit.addMenu("S&plit")
    split.addActions([tab.act_mark_validation, tab.act_mark_train, tab.act_mark_auto])

    run_menu = bar.addMenu("&Run")
    run_menu.addActions([w.act_train, w.act_stop, w.act_resume, w.act_train_more])
    run_menu.addSeparator()
    run_menu.addAction(w.act_export_job)
    bar.addMenu("&Help").addAction(w.act_about)
    return recent_menu
