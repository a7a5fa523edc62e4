"""The Dataset tab's row actions (add, duplicate, delete, mark the split, find and replace), each one undoable step."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QPushButton

from loradesk.core.dataset import Example
from loradesk.core.wording import plural
from loradesk.ui.dataset_model import PROMPT
from loradesk.ui.undo import InsertRowsCommand, SetFieldsCommand, SetRowsCommand, row_runs

if TYPE_CHECKING:
    from loradesk.ui.dataset_tab import DatasetTab

SPLIT_WORDING = {"validation": "as validation", "train": "as train", "auto": "to be drawn at random"}


def duplicate_layout(rows: list[int]) -> tuple[list[list[int]], list[int]]:
    """The runs of adjacent ``rows`` (ascending), and where their copies land when each run is copied after itself."""
    runs = [list(range(start, start + count)) for start, count in row_runs(rows)]
    copies: list[int] = []
    shift = 0
    for run in runs:
        first = run[0] + shift
        copies.extend(range(first + len(run), first + 2 * len(run)))
        shift += len(run)
    return runs, copies


class RowActions(QObject):
    """The row actions of ``tab`` as ``QAction``\\ s (the main window also lists them in its Edit menu)."""

    def __init__(self, tab: DatasetTab) -> None:
        super().__init__(tab)
        self.tab = tab
        self.find_dialog: Any = None  # the Find and Replace window, made on first use
        toolbar = tab.toolbar
        self.act_add = self._action("&Add Row", self.add_row, [QKeySequence("Ctrl+Shift+N"), QKeySequence("Insert")],
                                    "Add an empty row below the current one and edit it", toolbar.add_button)
        self.act_duplicate = self._action("D&uplicate Rows", self.duplicate_rows, [QKeySequence("Ctrl+D")],
                                          "Copy the selected rows", toolbar.duplicate_button)
        self.act_delete = self._action("&Delete Rows", self.delete_rows,
                                       [QKeySequence(QKeySequence.StandardKey.Delete)], "Delete the selected rows",
                                       toolbar.delete_button)
        self.act_find = self._action("&Find…", toolbar.focus_filter, [QKeySequence(QKeySequence.StandardKey.Find)],
                                     "Filter the rows by text", local=False)
        keys = self.act_find.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        toolbar.filter_edit.setPlaceholderText(f"Filter rows by their text, every turn included ({keys})")
        self.act_replace = self._action("Find and &Replace…", self.show_find_replace, [QKeySequence("Ctrl+H")],
                                        "Replace text in every row (one undoable step)", local=False)
        separator = QAction(tab)
        separator.setSeparator(True)
        tab.view.addAction(separator)
        self.act_mark_validation = self._action(
            "Mark as &Validation", lambda: self.mark_split("validation"), [QKeySequence("Ctrl+Shift+V")],
            "Hold the selected rows out of training to measure eval loss and to compare answers")
        self.act_mark_train = self._action("Mark as &Train", lambda: self.mark_split("train"),
                                           [QKeySequence("Ctrl+Shift+T")], "Always train on the selected rows")
        self.act_mark_auto = self._action("&Draw Split at Random", lambda: self.mark_split("auto"), [],
                                          "Let the validation share in Settings decide for the selected rows")
        self._conversation_actions(tab)
        tab.view.selectionModel().selectionChanged.connect(self.update_enabled)
        self.update_enabled()

    def _conversation_actions(self, tab: DatasetTab) -> None:
        separator = QAction(tab)
        separator.setSeparator(True)
        tab.view.addAction(separator)
        self.act_edit_conversation = self._action(
            "Edit &Conversation…", self.edit_conversation, [],
            "Edit the current row turn by turn (on a conversation, Enter or a double-click does too); a "
            "prompt/completion row becomes a conversation when its edit is kept")
        self.act_convert = self._action("Con&vert to Conversation", self.convert_to_conversations, [],
                                        "Turn the selected prompt/completion rows into two-turn conversations "
                                        "that can be extended with more turns and tool calls")
        tab.view.conversation_requested.connect(self.edit_conversation)
        self.conversation_editor: Any = None  # the open editor, if any

    def _action(self, text: str, slot: Callable[[], None], keys: list[QKeySequence], tip: str,
                button: QPushButton | None = None, local: bool = True) -> QAction:
        act = QAction(text, self.tab)
        act.setShortcuts(keys)
        act.setStatusTip(tip)
        act.triggered.connect(slot)
        if local:  # keys only act while the table has focus (Delete must still work in text boxes)
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.tab.view.addAction(act)
        else:
            self.tab.addAction(act)
        if button is not None:
            button.clicked.connect(act.trigger)
            button.setToolTip(f"{tip} ({act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})")
        return act

    @Slot()
    def update_enabled(self) -> None:
        has_selection = self.tab.view.selectionModel().hasSelection()
        self.act_duplicate.setEnabled(has_selection)
        self.act_delete.setEnabled(has_selection)
        self.act_convert.setEnabled(has_selection)
        self.act_edit_conversation.setEnabled(has_selection)

    # --- the actions -----------------------------------------------------------------------------------
    @Slot()
    def add_row(self) -> None:
        """Insert an empty row below the current one, select it and start editing its prompt."""
        tab = self.tab
        if tab.proxy.is_filtering():  # the new, empty row must be visible
            tab.toolbar.clear_filter()
        current = tab.view.current_row()
        row = len(tab.project.dataset) if current is None else current + 1
        tab.model.insert_examples(row, [Example("", "")], "Add row")
        tab.view.select_source_rows([row])
        index = tab.proxy.mapFromSource(tab.model.index(row, PROMPT))
        tab.view.setFocus()
        tab.view.edit(index)

    @Slot()
    def duplicate_rows(self) -> None:
        """Put a copy of each selected block of rows right after it."""
        rows = self.tab.view.selected_rows()
        if not rows:
            return
        dataset, stack = self.tab.project.dataset, self.tab.undo_stack
        runs, copies = duplicate_layout(rows)
        stack.beginMacro(f"Duplicate {plural(len(rows), 'row')}")
        for run in reversed(runs):
            block = [dataclasses.replace(dataset[r]) for r in run]
            stack.push(InsertRowsCommand(dataset, run[-1] + 1, block))
        stack.endMacro()
        self.tab.view.select_source_rows(copies)

    @Slot()
    def delete_rows(self) -> None:
        """Delete the selected rows and select the row that took the first one's place."""
        rows = self.tab.view.selected_rows()
        if not rows:
            return
        self.tab.model.remove_examples(rows)
        remaining = len(self.tab.project.dataset)
        if remaining:
            self.tab.view.select_source_rows([min(rows[0], remaining - 1)])

    def mark_split(self, split: str) -> None:
        """Pin the selected rows to ``"train"`` or ``"validation"``, or let the draw decide (``"auto"``)."""
        dataset = self.tab.project.dataset
        changes = [(r, "split", split) for r in self.tab.view.selected_rows() if dataset[r].split != split]
        if changes:
            text = f"Mark {plural(len(changes), 'row')} {SPLIT_WORDING[split]}"
            self.tab.undo_stack.push(SetFieldsCommand(dataset, changes, text))

    @Slot()
    @Slot(int)
    def edit_conversation(self, row: int | None = None) -> None:
        """Open the conversation editor on ``row`` (the current row by default)."""
        from loradesk.ui.conversation_editor import open_editor

        tab = self.tab
        row = tab.view.current_row() if row is None else row
        if row is not None:
            self.conversation_editor = open_editor(tab, tab.project.dataset, tab.undo_stack, row)

    @Slot()
    def convert_to_conversations(self) -> None:
        """Turn the selected pairs into two-turn conversations (one undo step)."""
        from loradesk.ui.conversation_editor import as_conversation

        dataset = self.tab.project.dataset
        changes = [(r, as_conversation(dataset[r])) for r in self.tab.view.selected_rows() if not dataset[r].turns]
        if changes:
            self.tab.undo_stack.push(SetRowsCommand(dataset, changes,
                                                    f"Convert {plural(len(changes), 'row')} to conversations"))
            self.update_enabled()

    @Slot()
    def show_find_replace(self) -> None:
        """Open the Find and Replace window (one per tab; it follows the dataset while open)."""
        from loradesk.ui.find_replace import FindReplaceDialog

        tab = self.tab
        if self.find_dialog is None:
            self.find_dialog = FindReplaceDialog(tab.project.dataset, tab.undo_stack, tab)
            self.find_dialog.show_row.connect(tab.show_row)
        needle = tab.toolbar.filter_edit.text().strip()
        if needle and not self.find_dialog.isVisible():
            self.find_dialog.set_find_text(needle)
        self.find_dialog.show()
        self.find_dialog.raise_()
        self.find_dialog.activateWindow()

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Wait for the Find and Replace window's background work (on close)."""
        if self.find_dialog is not None:
            self.find_dialog.shutdown(timeout_ms)
