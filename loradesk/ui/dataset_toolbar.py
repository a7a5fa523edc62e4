"""The strip above the dataset table: row buttons, the filter box, "Problems only" and "Count tokens"."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLineEdit, QPushButton, QWidget


class DatasetToolbar(QWidget):
    """The row buttons and the filter controls; :attr:`filter_edited` follows typing after a short pause."""

    #: The filter text, once typing has paused (or at once through :meth:`apply_filter_now`).
    filter_edited = Signal(str)

    #: Typing pause before the filter is applied (each keystroke is a pass over the rows).
    FILTER_DELAY_MS = 150

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        theme = QIcon.ThemeIcon
        self.add_button = QPushButton(QIcon.fromTheme(theme.ListAdd), "Add row")
        self.duplicate_button = QPushButton(QIcon.fromTheme(theme.EditCopy), "Duplicate")
        self.delete_button = QPushButton(QIcon.fromTheme(theme.EditDelete), "Delete")
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter prompts and completions")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setMinimumWidth(220)
        self.problems_only = QCheckBox("Problems only")
        self.problems_only.setToolTip("Show only rows that are empty, duplicated or too long")
        self.count_button = QPushButton("Count tokens")
        self.count_button.setToolTip("Count each row's tokens with the chosen model's tokenizer and mark "
                                     "rows longer than the max length")
        bar = QHBoxLayout(self)
        bar.setContentsMargins(0, 0, 0, 0)
        bar.setSpacing(6)
        for button in (self.add_button, self.duplicate_button, self.delete_button):
            bar.addWidget(button)
        bar.addSpacing(12)
        bar.addWidget(self.filter_edit, 1)
        bar.addWidget(self.problems_only)
        bar.addSpacing(12)
        bar.addWidget(self.count_button)
        self._filter_timer = QTimer(self)
        self._filter_timer.setSingleShot(True)
        self._filter_timer.setInterval(self.FILTER_DELAY_MS)
        self._filter_timer.timeout.connect(self.apply_filter_now)
        self.filter_edit.textChanged.connect(self._filter_timer.start)

    @Slot()
    def apply_filter_now(self) -> None:
        """Announce the filter text without waiting for typing to pause."""
        self._filter_timer.stop()
        self.filter_edited.emit(self.filter_edit.text())

    def clear_filter(self) -> None:
        """Show every row: empty the filter box and switch "Problems only" off, at once."""
        self.filter_edit.clear()
        self.problems_only.setChecked(False)
        self.apply_filter_now()

    def focus_filter(self) -> None:
        self.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter_edit.selectAll()
