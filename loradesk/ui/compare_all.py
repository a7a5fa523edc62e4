"""The lower half of the Compare tab: which held-out questions to ask, and the scored answers as a table.

The questions come from the project's held-out file, the dataset's validation rows or any file; the
table holds one :class:`~loradesk.core.generation.ScoredRow` per line and exports to CSV.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStyle,
    QTableView,
    QVBoxLayout,
    QWidget,
)

COLUMNS = ("Prompt", "Expected", "Base", "Tuned", "Base ✓", "Tuned ✓")
OK_COLOR = QColor("#1e7b34")
BAD_COLOR = QColor("#b3261e")
EMPTY_ANSWER = "(empty answer: the model produced no text)"
SOURCE_HELDOUT, SOURCE_VALIDATION, SOURCE_FILE = "heldout", "validation", "file"


class CompareAllBox(QGroupBox):
    """The question source, the Compare all button, the score and the table of answers."""

    def __init__(self, project: Any, parent: QWidget | None = None) -> None:
        super().__init__("Compare all held-out questions", parent)
        self.project = project
        self._loaded_file: Path | None = None
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_source_row())
        layout.addWidget(self._build_table(), 1)
        self.fill_sources()

    # --- layout ------------------------------------------------------------------------------------
    def _build_source_row(self) -> QHBoxLayout:
        style = self.style()
        self.source_combo = QComboBox()
        self.source_combo.setToolTip("Questions with an expected phrase; an answer counts as right when it "
                                     "contains the phrase (ignoring case)")
        self.open_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton), "Open…")
        self.open_button.setToolTip("Load held-out questions from a JSON, JSONL or CSV file (prompt + expected)")
        self.open_button.clicked.connect(self._choose_file)
        self.compare_button = QPushButton("Compare all")
        self.compare_button.setToolTip("Ask every held-out question to both models and score the answers")
        self.export_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton),
                                         "Export CSV…")
        self.summary_label = QLabel()
        summary_font = self.summary_label.font()
        summary_font.setBold(True)
        summary_font.setPointSizeF(summary_font.pointSizeF() * 1.1)
        self.summary_label.setFont(summary_font)
        row = QHBoxLayout()
        row.addWidget(QLabel("Questions:"))
        row.addWidget(self.source_combo, 1)
        row.addWidget(self.open_button)
        row.addWidget(self.compare_button)
        row.addSpacing(12)
        row.addWidget(self.summary_label)
        row.addStretch(0)
        row.addWidget(self.export_button)
        return row

    def _build_table(self) -> QTableView:
        self.results = QStandardItemModel(0, len(COLUMNS), self)
        self.results.setHorizontalHeaderLabels(list(COLUMNS))
        self.table = QTableView()
        self.table.setModel(self.results)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        header = self.table.horizontalHeader()
        for col in range(4):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
        for col in (4, 5):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        return self.table

    # --- sources -------------------------------------------------------------------------------------
    def heldout_file(self) -> Path | None:
        """The project's held-out file, else the shipped sample's."""
        path = getattr(self.project, "heldout_path", None)
        if path:
            return Path(path)
        from loradesk.core.paths import sample_data_dir

        try:
            return sample_data_dir() / "sample_heldout.json"
        except FileNotFoundError:
            return None

    def fill_sources(self) -> None:
        """List the question sources again (the validation count changes with the dataset)."""
        previous = self.source_combo.currentData()
        combo = self.source_combo
        combo.blockSignals(True)
        combo.clear()
        heldout = self.heldout_file()
        if heldout is not None:
            combo.addItem(f"Held-out file: {heldout.name}", SOURCE_HELDOUT)
            combo.setItemData(0, str(heldout), Qt.ItemDataRole.ToolTipRole)
        combo.addItem(f"Validation rows of the dataset ({len(self._validation_rows()):,})", SOURCE_VALIDATION)
        combo.setItemData(combo.count() - 1, "The rows the Split column shows as Validation: marked by hand, or "
                          "drawn by the validation share in Settings", Qt.ItemDataRole.ToolTipRole)
        if self._loaded_file is not None:
            combo.addItem(f"File: {self._loaded_file.name}", SOURCE_FILE)
            combo.setItemData(combo.count() - 1, str(self._loaded_file), Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(max(combo.findData(previous), 0))
        combo.blockSignals(False)

    def _validation_rows(self) -> list[Any]:
        """The dataset's validation rows, exactly as training splits them (pinned rows and the seeded draw)."""
        from loradesk.core.dataset import split_rows

        training = self.project.config.training
        return split_rows(self.project.dataset, training.validation_fraction, training.seed)[1]

    def load_questions_file(self, path: str | Path) -> None:
        """Use ``path`` (prompt + expected rows) for Compare all."""
        self._loaded_file = Path(path)
        self.fill_sources()
        self.source_combo.setCurrentIndex(self.source_combo.findData(SOURCE_FILE))

    def _choose_file(self) -> None:
        from loradesk.core.formats import IMPORT_FILTER

        path, _ = QFileDialog.getOpenFileName(self, "Open held-out questions", "", IMPORT_FILTER)
        if path:
            self.load_questions_file(path)

    def questions(self) -> list[tuple[Any, str]] | Path | None:
        """The chosen questions: ``(prompt or conversation row, expected)`` (validation rows), a file for the
        job to read, or None."""
        source = self.source_combo.currentData()
        if source == SOURCE_VALIDATION:
            # a conversation goes whole: it is asked up to its last assistant turn
            return [(row if row.turns else row.prompt, row.completion) for row in self._validation_rows()]
        if source == SOURCE_FILE:
            return self._loaded_file
        return self.heldout_file()

    # --- results -------------------------------------------------------------------------------------
    def clear_results(self) -> None:
        self.results.removeRows(0, self.results.rowCount())
        self.summary_label.clear()

    def add_row(self, row: Any) -> None:
        """Append one scored row (a ``core.generation.ScoredRow``)."""
        self.results.appendRow([_cell(row.prompt), _cell(row.expected), _cell(row.base), _cell(row.tuned),
                                _mark(row.base_ok), _mark(row.tuned_ok)])

    def table_rows(self) -> list[list[str]]:
        """The comparison table as text rows (without the header)."""
        return [[self.results.item(r, c).text() for c in range(len(COLUMNS))]
                for r in range(self.results.rowCount())]

    def raw_rows(self) -> list[list[Any]]:
        """The table's values as scored: the answers' own text (None: no answer) and the marks (bool/None)."""
        return [[self.results.item(r, c).data(Qt.ItemDataRole.UserRole) for c in range(len(COLUMNS))]
                for r in range(self.results.rowCount())]

    def export_csv(self, path: str | Path) -> Path:
        """Write the comparison table to a CSV file (raw answers, ``true``/``false`` marks)."""
        from loradesk.core.fileio import atomic_write_text

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["prompt", "expected", "base", "tuned", "base_ok", "tuned_ok"])
        for values in self.raw_rows():
            texts = ["" if v is None else v for v in values[:4]]
            oks = ["" if v is None else str(bool(v)).lower() for v in values[4:]]
            writer.writerow([*texts, *oks])
        path = Path(path)
        atomic_write_text(path, buffer.getvalue())
        return path

    def set_busy(self, busy: bool) -> None:
        for widget in (self.compare_button, self.source_combo, self.open_button):
            widget.setEnabled(not busy)
        self.export_button.setEnabled(not busy and self.results.rowCount() > 0)


def _cell(text: str | None) -> QStandardItem:
    shown = "—" if text is None else (text or EMPTY_ANSWER)
    item = QStandardItem(" ".join(shown.split()))
    item.setToolTip(shown)
    item.setData(text, Qt.ItemDataRole.UserRole)  # the raw answer, for export
    return item


def _mark(ok: bool | None) -> QStandardItem:
    item = QStandardItem("—" if ok is None else ("✓" if ok else "✗"))
    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
    if ok is not None:
        item.setForeground(QBrush(OK_COLOR if ok else BAD_COLOR))
        font = QFont(item.font())
        font.setBold(True)
        item.setFont(font)
    item.setData(ok, Qt.ItemDataRole.UserRole)
    return item
