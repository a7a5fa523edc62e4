"""The conversation editor: one conversation row's system prompt, tools and turns, edited in a small dialog.

Each turn has a role and its text; an assistant turn may call tools (a function name and its arguments as
JSON), a tool turn is a call's result. Turns can be added, deleted and moved. OK (or Ctrl+Enter) checks the
conversation and gives back one new row (:meth:`ConversationEditor.row`); the Dataset tab applies it as one
undo step. A problem is shown as one line under the turns, naming the turn, and the dialog stays open.
"""

from __future__ import annotations

import json

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QFontDatabase, QKeySequence, QShortcut, QUndoStack
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.conversation import ROLES, ToolCall, Turn, tools_text
from loradesk.core.dataset import Dataset, Example
from loradesk.ui import errors
from loradesk.ui.turn_summary import ROLE_NAMES
from loradesk.ui.undo import SetRowsCommand


class TurnProblem(ValueError):
    """What is wrong with a turn, as one line: ``Turn 3 (assistant), call 1: arguments are not JSON …``;
    ``widget`` is the field to fix, when there is one."""

    def __init__(self, message: str, widget: QWidget | None = None) -> None:
        super().__init__(message)
        self.widget = widget


def _text_box(text: str, lines: int, placeholder: str = "", mono: bool = False) -> QPlainTextEdit:
    box = QPlainTextEdit(text)
    box.setTabChangesFocus(True)  # Tab walks the dialog; the turns are text, tabs in them are rare
    box.setPlaceholderText(placeholder)
    if mono:
        box.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    box.setFixedHeight(box.fontMetrics().lineSpacing() * lines + 14)
    return box


def _small_button(text: str, tip: str) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    button.setAutoRaise(True)
    return button


class ToolCallEditor(QWidget):
    """One call of an assistant turn: the function's name and its arguments (JSON)."""

    remove_requested = Signal(object)  # self

    def __init__(self, call: ToolCall | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        call = call or ToolCall("", "{}")
        self.call_id = call.id  # kept as it was: results refer to it
        self.name_edit = QLineEdit(call.name)
        self.name_edit.setPlaceholderText("function name")
        self.name_edit.setAccessibleName("Function name")
        self.arguments_edit = _text_box(call.arguments, 2, '{"arguments": "as JSON"}', mono=True)
        self.arguments_edit.setAccessibleName("Arguments (JSON)")
        remove = _small_button("✕", "Delete this call")
        remove.clicked.connect(lambda: self.remove_requested.emit(self))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Calls"))
        layout.addWidget(self.name_edit, 1)
        layout.addWidget(self.arguments_edit, 2)
        layout.addWidget(remove, 0, Qt.AlignmentFlag.AlignTop)

    def call(self, where: str) -> ToolCall:
        """The call as edited; :class:`TurnProblem` (starting with ``where``) for a missing name or bad JSON."""
        name = self.name_edit.text().strip()
        if not name:
            raise TurnProblem(f"{where}: the function name is empty", self.name_edit)
        arguments = self.arguments_edit.toPlainText().strip() or "{}"
        try:
            json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise TurnProblem(f"{where}: arguments are not JSON ({exc.msg} at line {exc.lineno} column "
                              f"{exc.colno})", self.arguments_edit) from None
        return ToolCall(name, arguments, self.call_id)


class TurnEditor(QFrame):
    """One turn: its role, its text, and for an assistant its tool calls, for a tool the function it answers."""

    move_requested = Signal(object, int)  # self, -1 (up) or +1 (down)
    remove_requested = Signal(object)  # self

    def __init__(self, turn: Turn, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("turnEditor")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.tool_call_id = turn.tool_call_id
        self.number = QLabel()
        font = self.number.font()
        font.setWeight(font.Weight.DemiBold)
        self.number.setFont(font)
        self.role_box = QComboBox()
        for role in ROLES:
            self.role_box.addItem(ROLE_NAMES[role], role)
        self.role_box.setCurrentIndex(max(0, self.role_box.findData(turn.role)))
        self.role_box.setAccessibleName("Role")
        self.name_edit = QLineEdit(turn.name)
        self.name_edit.setPlaceholderText("function it answers")
        self.name_edit.setToolTip("The function whose result this is (optional)")
        self.up_button = _small_button("↑", "Move this turn up (Alt+Up)")
        self.down_button = _small_button("↓", "Move this turn down (Alt+Down)")
        self.delete_button = _small_button("✕", "Delete this turn")
        self.up_button.clicked.connect(lambda: self.move_requested.emit(self, -1))
        self.down_button.clicked.connect(lambda: self.move_requested.emit(self, 1))
        self.delete_button.clicked.connect(lambda: self.remove_requested.emit(self))
        header = QHBoxLayout()
        header.addWidget(self.number)
        header.addWidget(self.role_box)
        header.addWidget(self.name_edit, 1)
        header.addStretch(1)
        for button in (self.up_button, self.down_button, self.delete_button):
            header.addWidget(button)
        self.text_edit = _text_box(turn.content, 3)
        self.text_edit.setAccessibleName("Text")
        self.calls: list[ToolCallEditor] = []
        self._calls_box = QVBoxLayout()
        self._calls_box.setSpacing(4)
        self.add_call_button = QPushButton("Add tool call")
        self.add_call_button.setAutoDefault(False)
        self.add_call_button.clicked.connect(lambda: self.add_call().name_edit.setFocus())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.text_edit)
        layout.addLayout(self._calls_box)
        layout.addWidget(self.add_call_button, 0, Qt.AlignmentFlag.AlignLeft)
        for call in turn.tool_calls:
            self.add_call(call)
        self.role_box.currentIndexChanged.connect(self._update_role)
        for key, step in (("Alt+Up", -1), ("Alt+Down", 1)):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda s=step: self.move_requested.emit(self, s))
        self._update_role()

    @property
    def role(self) -> str:
        return str(self.role_box.currentData())

    def add_call(self, call: ToolCall | None = None) -> ToolCallEditor:
        """Add a tool call (an empty one by default) at the end of the turn's calls."""
        editor = ToolCallEditor(call)
        editor.remove_requested.connect(self._remove_call)
        self.calls.append(editor)
        self._calls_box.addWidget(editor)
        return editor

    def _remove_call(self, editor: ToolCallEditor) -> None:
        self.calls.remove(editor)
        self._calls_box.removeWidget(editor)
        editor.deleteLater()

    @Slot()
    def _update_role(self) -> None:
        role = self.role
        assistant = role == "assistant"
        self.add_call_button.setVisible(assistant)
        for call in self.calls:
            call.setVisible(assistant)
        self.name_edit.setVisible(role == "tool")
        self.text_edit.setPlaceholderText({"user": "What the user says", "assistant": "What the model answers "
                                           "(may be empty when it calls a tool)", "tool": "What the tool returned"
                                           }[role])

    def set_number(self, number: int, count: int) -> None:
        self.number.setText(f"Turn {number}")
        self.up_button.setEnabled(number > 1)
        self.down_button.setEnabled(number < count)

    def turn(self, number: int) -> Turn:
        """The turn as edited (``number`` counts from 1, for the messages); raises :class:`TurnProblem`."""
        role = self.role
        where = f"Turn {number} ({role})"
        calls = tuple(c.call(f"{where}, call {n}") for n, c in enumerate(self.calls, 1)) if role == "assistant" else ()
        name = self.name_edit.text().strip() if role == "tool" else ""
        return Turn(role, self.text_edit.toPlainText(), calls, name, self.tool_call_id if role == "tool" else "")


class ConversationEditor(QDialog):
    """Edits one conversation row. After OK, :meth:`row` is the edited row (same split as before)."""

    def __init__(self, row: Example, title: str = "Edit Conversation", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.original = row
        self.turns: list[TurnEditor] = []
        self._row: Example | None = None
        self.system_edit = _text_box(row.system, 2, "Optional: how the model should behave")
        self.system_edit.setAccessibleName("System prompt")
        self.tools_edit = _text_box(_pretty_tools(row.tools), 2, 'Optional: the tools it may call, a JSON list '
                                    '[{"type": "function", "function": {…}}]', mono=True)
        self.tools_edit.setAccessibleName("Tools (JSON)")
        form = QFormLayout()
        form.addRow("&System", self.system_edit)
        form.addRow("T&ools", self.tools_edit)
        self._turns_box = QVBoxLayout()
        self._turns_box.setSpacing(6)
        body = QWidget()
        column = QVBoxLayout(body)
        column.setContentsMargins(0, 0, 4, 0)
        column.addLayout(self._turns_box)
        column.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidget(body)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.add_button = QPushButton("&Add Turn")
        self.add_button.setToolTip("Add a turn at the end: the other side of the last one")
        self.add_button.setAutoDefault(False)
        self.add_button.clicked.connect(self._add_next_turn)
        self.error_label = QLabel()
        self.error_label.setObjectName("conversationError")
        self.error_label.setStyleSheet("color: #d64545;")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setToolTip("Keep the changes (Ctrl+Enter); Edit ▸ Undo takes them back")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.add_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        for key in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(key), self, activated=self.accept)
        for turn in row.turns:
            self.add_turn(turn)
        self.resize(680, 640)

    # --- turns ---------------------------------------------------------------------------------------------
    def add_turn(self, turn: Turn | None = None, at: int | None = None) -> TurnEditor:
        """Add a turn editor (an empty user turn by default) at position ``at`` (the end by default)."""
        editor = TurnEditor(turn or Turn("user", ""))
        editor.move_requested.connect(self.move_turn)
        editor.remove_requested.connect(self.remove_turn)
        at = len(self.turns) if at is None else at
        self.turns.insert(at, editor)
        self._turns_box.insertWidget(at, editor)
        self._renumber()
        return editor

    @Slot()
    def _add_next_turn(self) -> None:
        last = self.turns[-1].role if self.turns else "assistant"
        editor = self.add_turn(Turn("assistant" if last in ("user", "tool") else "user", ""))
        editor.text_edit.setFocus()
        self.scroll.ensureWidgetVisible(editor)

    def move_turn(self, editor: TurnEditor, step: int) -> None:
        """Move ``editor`` ``step`` places (-1: up, +1: down); focus stays on it."""
        at = self.turns.index(editor)
        to = at + step
        if not 0 <= to < len(self.turns):
            return
        focus = editor.focusWidget()
        self.turns.insert(to, self.turns.pop(at))
        self._turns_box.removeWidget(editor)
        self._turns_box.insertWidget(to, editor)
        self._renumber()
        if focus is not None and not focus.isEnabled():  # the arrow just pressed can be disabled now
            focus = editor.up_button if step > 0 else editor.down_button
        (focus or editor.role_box).setFocus()
        self.scroll.ensureWidgetVisible(editor)

    def remove_turn(self, editor: TurnEditor) -> None:
        at = self.turns.index(editor)
        self.turns.pop(at)
        self._turns_box.removeWidget(editor)
        editor.deleteLater()
        self._renumber()
        if self.turns:
            self.turns[min(at, len(self.turns) - 1)].role_box.setFocus()
        else:
            self.add_button.setFocus()

    def _renumber(self) -> None:
        for n, editor in enumerate(self.turns, 1):
            editor.set_number(n, len(self.turns))

    # --- result --------------------------------------------------------------------------------------------
    def edited_row(self) -> Example:
        """The row as the dialog shows it now; raises :class:`TurnProblem` with one line when it cannot be one."""
        turns = [editor.turn(n) for n, editor in enumerate(self.turns, 1)]
        if not any(t.has_output for t in turns):
            raise TurnProblem("A conversation needs an assistant turn that says or calls something")
        try:
            tools = tools_text(self.tools_edit.toPlainText().strip())
        except ValueError as exc:
            raise TurnProblem(f"Tools: not a JSON list of tools ({exc})", self.tools_edit) from None
        return Example.conversation(turns, self.system_edit.toPlainText(), self.original.split, tools)

    def row(self) -> Example | None:
        """The edited row once OK was accepted (``None`` before, or after Cancel)."""
        return self._row

    def accept(self) -> None:
        try:
            row = self.edited_row()
        except TurnProblem as exc:
            self.error_label.setText(str(exc))
            self.error_label.show()
            if exc.widget is not None:
                self.scroll.ensureWidgetVisible(exc.widget)
                exc.widget.setFocus()
            return
        self._row = row
        super().accept()


def _pretty_tools(tools: str) -> str:
    """A row's tools (compact JSON text) spaced for reading; unchanged when it is not JSON."""
    if not tools.strip():
        return ""
    try:
        return json.dumps(json.loads(tools), ensure_ascii=False)
    except json.JSONDecodeError:
        return tools


def as_conversation(row: Example) -> Example:
    """A pair as a two-turn conversation (its system prompt and split kept); a conversation unchanged."""
    if row.turns:
        return row
    return Example.conversation((Turn("user", row.prompt), Turn("assistant", row.completion)), row.system,
                                row.split)


def open_editor(parent: QWidget, dataset: Dataset, undo_stack: QUndoStack, row: int) -> ConversationEditor:
    """Open the editor on ``row`` (window-modal, not blocking); OK applies the edit as one undo step on
    ``undo_stack``. A pair opens as its two turns and becomes a conversation if the edit changes it."""
    original = dataset[row]
    start = as_conversation(original)
    dialog = ConversationEditor(start, f"Edit Conversation · Row {row + 1}", parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def apply() -> None:
        new = dialog.row()
        # the row moves when rows above it come or go meanwhile (an import finishing): find it by identity
        at = row if row < len(dataset) and dataset[row] is original else next(
            (i for i, r in enumerate(dataset.rows) if r is original), None)
        if new is None or new == start:
            return
        if at is None:
            errors.show_error(parent, "Conversation not changed", "The row was deleted or replaced while the "
                              "editor was open, so the edit was not applied.", note=errors.UNCHANGED)
            return
        undo_stack.push(SetRowsCommand(dataset, [(at, new)], f"Edit conversation in row {at + 1}"))

    dialog.accepted.connect(apply)
    dialog.open()
    return dialog
