"""Import dialogs: map unrecognised columns (with a preview of the rows) and pick a Hugging Face dataset."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

ROLES = ("prompt", "completion", "system")
#: Column names that suggest a role, best first (matched case-insensitively, then as part of a longer name).
ROLE_NAMES = {
    "prompt": ("prompt", "question", "instruction", "query", "input", "q", "user", "problem", "source", "text",
               "context"),
    "completion": ("completion", "answer", "response", "output", "target", "a", "assistant", "solution",
                   "reply", "label", "summary"),
    "system": ("system", "system_prompt", "persona"),
}
ROLE_COLOURS = {"prompt": QColor(59, 130, 246, 70), "completion": QColor(16, 185, 129, 70),
                "system": QColor(168, 85, 247, 60)}
ROLE_TITLES = {"prompt": "&Prompt:", "completion": "&Completion:", "system": "&System prompt:"}
ROLE_TIPS = {
    "prompt": "The column with what the user asks: the model learns to answer it",
    "completion": "The column with the answer the model should learn to give",
    "system": "Optional: a column with a system prompt for each row (a persona or instructions)",
}
NONE_TEXT = "(none)"
CELL_CHARS = 120
TIP_CHARS = 1500


def guess_mapping(columns: Sequence[str], records: Sequence[Mapping[str, Any]] = ()) -> dict[str, str]:
    """A likely ``{"prompt", "completion"[, "system"]}`` choice: by column name, else the first text columns."""
    chosen: dict[str, str] = {}
    lowered = {c: c.strip().lower() for c in columns}
    texts = [c for c in columns if _mostly_text(c, records)]
    for role in ROLES:
        free = [c for c in columns if c not in chosen.values()]
        exact = (c for name in ROLE_NAMES[role] for c in free if lowered[c] == name)
        partial = (c for name in ROLE_NAMES[role] if len(name) > 3 for c in free if name in lowered[c] and c in texts)
        found = next(exact, None) or next(partial, None)
        if found is not None:
            chosen[role] = found
    for role in ("prompt", "completion"):
        if role not in chosen:
            rest = [c for c in texts if c not in chosen.values()] or [c for c in columns if c not in chosen.values()]
            if rest:
                chosen[role] = rest[0]
    return chosen


def _mostly_text(column: str, records: Sequence[Mapping[str, Any]]) -> bool:
    values = [r.get(column) for r in records if r.get(column) is not None]
    return not values or sum(isinstance(v, str) for v in values) * 2 >= len(values)


def cell_text(value: Any) -> str:
    """A record value as text: strings as they are, nothing as empty, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)


def _sentence(message: str) -> str:
    """A reader's message without the column list the preview already shows, starting with a capital."""
    text = re.sub(r" \(columns found: .*\)(?=;|$)", "", message).strip()
    return text[:1].upper() + text[1:]


def _tooltip(text: str) -> str:
    """Rich text (so Qt wraps it) keeping line breaks; very long text is cut."""
    cut = text[:TIP_CHARS] + ("…" if len(text) > TIP_CHARS else "")
    return f"<p style='white-space:pre-wrap'>{escape(cut, quote=False)}</p>"


def _one_line(text: str, limit: int) -> str:
    flat = " ⏎ ".join(part.strip() for part in text.strip().splitlines())
    return flat if len(flat) <= limit else flat[:limit - 1].rstrip() + "…"


class ColumnMappingDialog(QDialog):
    """Shows the first records and asks which columns hold the prompt, the completion and the system prompt.

    The chosen columns are tinted in the preview as the combos change; OK needs two different columns.
    """

    def __init__(self, name: str, columns: Sequence[str], message: str = "", parent: QWidget | None = None, *,
                 records: Sequence[Mapping[str, Any]] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Choose the columns")
        self.columns = list(columns)
        self.records = [dict(r) for r in records or ()]
        title = QLabel(f"<b>{escape(name)}</b>: which columns hold the prompt and the completion?")
        title.setWordWrap(True)
        detail = QLabel(_sentence(message))
        detail.setTextFormat(Qt.TextFormat.PlainText)
        detail.setObjectName("hintLabel")
        detail.setWordWrap(True)
        detail.setVisible(bool(message))

        self.preview = self._build_preview()
        self.empty_label = QLabel("No rows to preview: the file has only its column names.")
        self.empty_label.setObjectName("hintLabel")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setVisible(not self.records)
        self.preview.setVisible(bool(self.records))
        shown = QLabel(f"The first {len(self.records):,} row{'s' if len(self.records) != 1 else ''} "
                       "(hover a cell for its full text):" if self.records else "")
        shown.setObjectName("hintLabel")

        guess = guess_mapping(self.columns, self.records)
        self.combos: dict[str, QComboBox] = {}
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        for role in ROLES:
            combo = QComboBox()
            combo.setObjectName(f"{role}Combo")
            combo.setToolTip(ROLE_TIPS[role])
            if role == "system":
                combo.addItem(NONE_TEXT, None)
            for column in self.columns:
                combo.addItem(column, column)
            if role in guess:
                combo.setCurrentIndex(combo.findData(guess[role]))
            combo.setMinimumContentsLength(16)
            combo.currentIndexChanged.connect(self._on_choice)
            self.combos[role] = combo
            colour = ROLE_COLOURS[role]
            swatch = QColor(colour)
            swatch.setAlpha(255)
            label = QLabel(f"<span style='color:{swatch.name()}'>■</span> {ROLE_TITLES[role]}")
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setBuddy(combo)
            label.setToolTip(ROLE_TIPS[role])
            form.addRow(label, combo)
        self.prompt, self.completion, self.system = (self.combos[r] for r in ROLES)

        self.problem_label = QLabel()
        self.problem_label.setObjectName("fieldMessage")
        self.problem_label.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Import")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(detail)
        layout.addWidget(shown)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.empty_label, 1)
        layout.addLayout(form)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.buttons)
        self.resize(760, 520)
        self._update()

    def _build_preview(self) -> QTableWidget:
        table = QTableWidget(len(self.records), len(self.columns))
        table.setObjectName("mappingPreview")
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        table.setWordWrap(False)
        table.setTextElideMode(Qt.TextElideMode.ElideRight)
        table.setAlternatingRowColors(True)
        table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 8)
        for row, rec in enumerate(self.records):
            for col, column in enumerate(self.columns):
                text = cell_text(rec.get(column))
                item = QTableWidgetItem(_one_line(text, CELL_CHARS))
                if text:
                    item.setToolTip(_tooltip(text))
                if not isinstance(rec.get(column), str | None):
                    item.setForeground(QBrush(table.palette().placeholderText().color()))
                table.setItem(row, col, item)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col in range(len(self.columns)):
            table.setHorizontalHeaderItem(col, QTableWidgetItem(self.columns[col]))
        table.resizeColumnsToContents()
        for col in range(len(self.columns)):
            table.setColumnWidth(col, min(max(table.columnWidth(col), 60), 260))
        return table

    def role_of(self, column: str) -> str | None:
        """The role the column is chosen for (prompt first), or None."""
        return next((role for role in ROLES if self.combos[role].currentData() == column), None)

    @Slot()
    def _on_choice(self) -> None:
        """Bring the newly chosen column into view, then tint the choice."""
        combo = self.sender()
        column = combo.currentData() if isinstance(combo, QComboBox) else None
        if column is not None and self.records:
            self.preview.scrollToItem(self.preview.item(0, self.columns.index(column)))
        self._update()

    @Slot()
    def _update(self) -> None:
        for col, column in enumerate(self.columns):
            role = self.role_of(column)
            header = self.preview.horizontalHeaderItem(col)
            header.setText(f"{column}\n→ {role}" if role else f"{column}\n")
            font = QFont(header.font())
            font.setBold(role is not None)
            header.setFont(font)
            header.setToolTip(f"Imported as the {role}" if role else "Not imported")
            brush = QBrush(ROLE_COLOURS[role]) if role else QBrush()
            for row in range(self.preview.rowCount()):
                self.preview.item(row, col).setBackground(brush)
        problem = self.problem()
        self.problem_label.setText(problem)
        self.problem_label.setVisible(bool(problem))
        self.ok_button.setEnabled(not problem)

    def problem(self) -> str:
        """Why the choice can't be imported yet ("" when it can)."""
        prompt, completion, system = (self.combos[r].currentData() for r in ROLES)
        if prompt is None or completion is None:
            return "Choose a prompt and a completion column."
        if prompt == completion:
            return "The prompt and the completion must be different columns."
        if system in (prompt, completion):
            return "The system prompt must be a column of its own (or none)."
        return ""

    def mapping(self) -> dict[str, str]:
        """``{"prompt": ..., "completion": ...}`` plus ``"system"`` when a system column is chosen."""
        out = {role: self.combos[role].currentData() for role in ROLES}
        return {role: column for role, column in out.items() if column is not None}


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is switched off by the environment (HF_HUB_OFFLINE)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


class HubImportDialog(QDialog):
    """Asks for a Hugging Face dataset (Hub id or local folder), its configuration, split, revision and a row limit.

    ``values`` pre-fills the fields (as :meth:`values` returns them); ``splits`` offers the split names a
    dataset is known to have and ``error`` says why the last attempt failed.
    """

    DEFAULT_SPLITS = ("train", "validation", "test")

    def __init__(self, parent: QWidget | None = None, *, values: Mapping[str, Any] | None = None,
                 splits: Sequence[str] | None = None, error: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Import from Hugging Face")
        values = dict(values or {})
        intro = QLabel("Rows from a dataset on the Hugging Face Hub, or from a dataset folder on this computer.")
        intro.setWordWrap(True)

        self.source_edit = QLineEdit(str(values.get("source") or ""))
        self.source_edit.setPlaceholderText("tatsu-lab/alpaca or a folder")
        self.source_edit.setToolTip("A Hub dataset id (owner/name), or a local folder or data file "
                                    "(JSON, JSONL, CSV, Parquet) in the Hugging Face datasets layout")
        self.source_edit.setClearButtonEnabled(True)
        self.browse_button = QPushButton("&Browse…")
        self.browse_button.setToolTip("Choose a dataset folder on this computer")
        self.browse_button.clicked.connect(self.browse)
        source_row = QHBoxLayout()
        source_row.setContentsMargins(0, 0, 0, 0)
        source_row.addWidget(self.source_edit, 1)
        source_row.addWidget(self.browse_button)

        self.name_edit = QLineEdit(str(values.get("name") or ""))
        self.name_edit.setPlaceholderText("default")
        self.name_edit.setToolTip("The dataset's configuration (subset), for datasets that have several")
        self.split_combo = QComboBox()
        self.split_combo.setEditable(True)
        self.split_combo.setMinimumContentsLength(14)
        self.split_combo.setToolTip("Which split to import, e.g. train or test")
        self.split_combo.addItems(list(splits or self.DEFAULT_SPLITS))
        split = str(values.get("split") or "")
        if splits and split not in splits:
            split = "train" if "train" in splits else splits[0]
        self.split_combo.setCurrentText(split or "train")
        self.revision_edit = QLineEdit(str(values.get("revision") or ""))
        self.revision_edit.setPlaceholderText("main")
        self.revision_edit.setToolTip("A branch, tag or commit of the Hub dataset (leave empty for the latest)")
        self.limit_spin = QSpinBox()
        self.limit_spin.setRange(0, 100_000_000)
        self.limit_spin.setSingleStep(1000)
        self.limit_spin.setGroupSeparatorShown(True)
        self.limit_spin.setSpecialValueText("All rows")
        for field in (self.split_combo, self.limit_spin):
            field.setMinimumWidth(180)
        self.limit_spin.setValue(int(values.get("limit") or 0))
        self.limit_spin.setToolTip("Import only the first rows (only those are downloaded); 0 imports all")

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        source_label = QLabel("&Dataset:")
        source_label.setBuddy(self.source_edit)
        form.addRow(source_label, source_row)
        form.addRow("&Configuration:", self.name_edit)
        form.addRow("S&plit:", self.split_combo)
        form.addRow("&Revision:", self.revision_edit)
        form.addRow("Row &limit:", self.limit_spin)

        self.error_label = QLabel(error)
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)
        self.error_label.setObjectName("fieldMessage")
        self.error_label.setWordWrap(True)
        self.error_label.setVisible(bool(error))
        hint = ("Gated or private datasets need a login: run <code>huggingface-cli login</code> "
                "or set <code>HF_TOKEN</code>.")
        if hub_offline():
            hint += (" <b>Offline mode is on</b> (HF_HUB_OFFLINE): only local folders and datasets "
                     "downloaded before can be imported.")
        self.hint_label = QLabel(hint)
        self.hint_label.setObjectName("hintLabel")
        self.hint_label.setWordWrap(True)
        self.hint_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Import")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.source_edit.textChanged.connect(self._update)
        self.split_combo.currentTextChanged.connect(self._update)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.error_label)
        layout.addLayout(form)
        layout.addWidget(self.hint_label)
        layout.addStretch(1)
        layout.addWidget(self.buttons)
        self.resize(520, self.sizeHint().height())
        self._update()
        (self.split_combo if error and splits else self.source_edit).setFocus()

    @Slot()
    def browse(self) -> None:
        start = self.source_edit.text().strip()
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder", start if os.path.isdir(start) else "")
        if folder:
            self.source_edit.setText(folder)

    @Slot()
    def _update(self) -> None:
        self.ok_button.setEnabled(bool(self.source_edit.text().strip() and self.split_combo.currentText().strip()))

    def values(self) -> dict[str, Any]:
        """``source``, ``split``, ``name``, ``revision`` and ``limit`` (None when not given), for load_hub_dataset."""
        return {"source": self.source_edit.text().strip(), "split": self.split_combo.currentText().strip(),
                "name": self.name_edit.text().strip() or None, "revision": self.revision_edit.text().strip() or None,
                "limit": self.limit_spin.value() or None}
