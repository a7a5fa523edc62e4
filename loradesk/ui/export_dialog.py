"""The shape the export dialogs share: a note, a destination with Browse…, their own rows, Export and Cancel."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)


class ExportDialog(QDialog):
    """Asks where to export (``path_edit``, with a Browse… button that calls :meth:`browse`) and whatever the
    ``rows`` ask; Export is enabled while a destination is given."""

    def __init__(self, title: str, note: str, label: str, suggested: Path, rows: list[tuple[str, QWidget]],
                 width: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.path_edit = QLineEdit(str(suggested))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        text = QLabel(note)
        text.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.path_edit.textChanged.connect(self._update)
        form = QFormLayout(self)
        form.addRow(text)
        form.addRow(label, path_row)
        for row_label, widget in rows:
            form.addRow(row_label, widget)
        form.addRow(self.buttons)
        self.resize(width, self.sizeHint().height())

    def browse(self, current: str) -> str:
        """Ask for the destination starting at ``current``; "" when cancelled."""
        raise NotImplementedError

    def _browse(self) -> None:
        path = self.browse(self.path_edit.text())
        if path:
            self.path_edit.setText(path)

    def _update(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.path_edit.text().strip()))
