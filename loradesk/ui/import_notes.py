"""The line above the dataset table that says what the last import skipped or did not use.

An import can succeed and still leave something out: rows labelled as answers not to learn, the rejected
answers of preference pairs, images (see :mod:`loradesk.core.screening`). Those notes stay in view above the
table until the next import, a project is opened, or the user dismisses them: a status bar message alone is
too easy to miss, and they are not errors.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QStyle, QToolButton, QWidget


class ImportNotes(QFrame):
    """A dismissible info line (not an error) listing an import's notes, one per line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("importNotes")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        icon = QLabel()
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_SmallIconSize)
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation).pixmap(size, size))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.label = QLabel()
        self.label.setObjectName("importNotesText")
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # notes quote '<image>' and the like
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.dismiss_button = QToolButton()
        self.dismiss_button.setText("Dismiss")
        self.dismiss_button.setAutoRaise(True)
        self.dismiss_button.clicked.connect(self.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(icon)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.dismiss_button, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    @Slot(str, list)
    def show_notes(self, source: str, notes: Sequence[str]) -> None:
        """Show ``notes`` about the import of ``source`` (none: the line goes away)."""
        if not notes:
            self.clear()
            return
        self.label.setText("\n".join(f"{source}: {note}" for note in notes))
        self.show()

    @Slot()
    def clear(self) -> None:
        self.label.clear()
        self.hide()

    def text(self) -> str:
        """What the line says ("" when hidden)."""
        return self.label.text()
