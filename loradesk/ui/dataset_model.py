"""The dataset table: a Qt model over the core :class:`~loradesk.core.dataset.Dataset`.

The core list is the source of truth. The model never stores rows; it follows the dataset's events.
Because the dataset reports a change *after* making it, the model briefly presents the old layout while
it announces the change (``beginInsertRows`` and friends): during that window :meth:`_source_row` maps
the old row numbers onto the new list, so views, proxies and the model tester see a consistent model.

Edits from the view go through a ``QUndoStack`` (:mod:`loradesk.ui.undo`), so everything can be undone.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractProxyModel,
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QModelRoleData,
    QModelRoleDataSpan,
    QObject,
    QPersistentModelIndex,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QKeyEvent, QPainter, QPixmap, QUndoStack
from PySide6.QtWidgets import QComboBox, QPlainTextEdit, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from loradesk.core.dataset import (
    SPLITS,
    Dataset,
    DatasetEvent,
    DatasetReset,
    Example,
    ProblemIndex,
    RowProblem,
    RowsInserted,
    RowsRemoved,
    draw_split,
)
from loradesk.core.tokenize import count_text
from loradesk.ui.row_lengths import RowLengths, token_key
from loradesk.ui.text_filter import TextFilter, row_text
from loradesk.ui.turn_summary import conversation_cell
from loradesk.ui.undo import EditCellCommand, InsertRowsCommand, RemoveRowsCommand, ReplaceAllCommand, row_runs

PROMPT, COMPLETION, SPLIT, TOKENS, STATUS = range(5)
HEADERS = ("Prompt", "Completion", "Split", "Tokens", "Status")
SPLIT_TEXT = {"train": "Train", "validation": "Validation"}
FIELD_OF_COLUMN = {PROMPT: "prompt", COMPLETION: "completion"}
STATUS_TEXT = {"empty": "Empty", "duplicate": "Duplicate", "too_long": "Too long"}
STATUS_COLOURS = {"ok": "#2e9d58", "empty": "#d64545", "duplicate": "#d08a16", "too_long": "#d08a16"}
TOOLTIP_LIMIT = 1500
_READ_ONLY = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren
_EDITABLE = _READ_ONLY | Qt.ItemFlag.ItemIsEditable
#: Rows whose problems are kept between paints (each status cell asks several times per paint).
_PROBLEM_CACHE_ROWS = 4096

Index = QModelIndex | QPersistentModelIndex
#: A row's key in the token counts: :func:`~loradesk.ui.row_lengths.token_key`.
TokenKey = Hashable


def _dot(colour: str) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(colour))
    painter.drawEllipse(1, 1, 10, 10)
    painter.end()
    return QIcon(pixmap)


class DatasetTableModel(QAbstractTableModel):
    """Columns Prompt, Completion (editable), Tokens (when known) and Status (validation)."""

    #: The per-row problems were recomputed (row count or problem count may have changed).
    summary_changed = Signal()
    #: Every row's token count was read again after the counts changed (new counts, or all rows replaced):
    #: the lengths histogram and the over-long row count can be redrawn.
    lengths_changed = Signal()

    def __init__(self, dataset: Dataset, undo_stack: QUndoStack | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._dataset = dataset
        self.undo_stack = undo_stack
        self._count = len(dataset)
        self._pending: tuple[str, int, int] | None = None  # (kind, start, count) while announcing a change
        self._index = ProblemIndex(dataset)  # empty and duplicate rows, updated per event
        self._tokens: dict[TokenKey, int] = {}
        self._lengths = RowLengths(dataset, self._tokens)  # each row's count and the rows over the max length
        self._fill_timer = QTimer(self)  # reads every row's count again a slice at a time (after new counts)
        self._fill_timer.setInterval(0)
        self._fill_timer.timeout.connect(self._continue_fill)
        self._max_length: int | None = None
        self._split_policy = (0.0, 42)  # validation fraction, seed
        self._icons: dict[str, QIcon] = {}
        self._problem_cache: dict[int, list[RowProblem]] = {}  # row_problems() of rows painted since a change
        self._unsubscribe = dataset.subscribe(self._on_event)
        self.destroyed.connect(self._unsubscribe)

    @property
    def dataset(self) -> Dataset:
        return self._dataset

    # --- mapping while a change is announced ----------------------------------------------------------
    def _source_row(self, row: int) -> int | None:
        """The dataset row shown at model ``row`` (``None`` for a row that is already gone)."""
        if self._pending is None:
            return row
        kind, start, count = self._pending
        if row < start:
            return row
        if kind == "inserted":
            return row + count
        return None if row < start + count else row - count

    def _on_event(self, event: DatasetEvent) -> None:
        shared = self._index.apply(event)
        self._lengths.apply(event)
        self._problem_cache.clear()
        root = QModelIndex()
        if isinstance(event, RowsInserted):
            self._pending = ("inserted", event.start, event.count)
            self.beginInsertRows(root, event.start, event.start + event.count - 1)
            self._pending = None
            self._count = len(self._dataset)
            self.endInsertRows()
        elif isinstance(event, RowsRemoved):
            self._pending = ("removed", event.start, event.count)
            self.beginRemoveRows(root, event.start, event.start + event.count - 1)
            self._pending = None
            self._count = len(self._dataset)
            self.endRemoveRows()
        elif isinstance(event, DatasetReset):
            self.beginResetModel()
            self._count = len(self._dataset)
            self.endResetModel()
        else:
            last = event.start + event.count - 1
            self.dataChanged.emit(self.index(event.start, PROMPT), self.index(last, STATUS))
        if shared:  # duplicates can appear or vanish elsewhere: repaint the other rows with the same text
            rows = self._index.rows_with(shared)
            for start, count in row_runs(rows):
                self.dataChanged.emit(self.index(start, PROMPT), self.index(start + count - 1, STATUS))
        if self._lengths.filling() and not self._fill_timer.isActive():
            self._continue_fill()
        self.summary_changed.emit()

    # --- Qt model API ----------------------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else self._count

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
                   ) -> Any:
        if role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal and section == SPLIT:
            return ("Where a row goes when training. Bold: marked by hand. Grey: drawn at random by the "
                    "validation share in Settings (stable: it follows the row's text and the seed).")
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return HEADERS[section] if 0 <= section < len(HEADERS) else None
        return str(section + 1)

    def flags(self, index: Index) -> Qt.ItemFlag:
        return self.column_flags(index.column()) if index.isValid() else Qt.ItemFlag.NoItemFlags

    @staticmethod
    def column_flags(column: int) -> Qt.ItemFlag:
        """The flags of every cell in ``column``."""
        return _EDITABLE if column in FIELD_OF_COLUMN or column == SPLIT else _READ_ONLY

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        return self.cell(index.row(), index.column(), role) if index.isValid() else None

    def multiData(self, index: Index, roles: QModelRoleDataSpan | QModelRoleData) -> None:
        if index.isValid():
            self.fill_roles(index.row(), index.column(), roles)

    def fill_roles(self, row: int, column: int, roles: QModelRoleDataSpan | QModelRoleData) -> None:
        """Every role a view asks of one cell, in one call from Qt (a paint asks ~7 roles of each cell).

        Each call from Qt into Python takes the GIL; while a worker thread runs, each may wait for it.
        """
        for role_data in [roles] if isinstance(roles, QModelRoleData) else roles:
            role_data.setData(self.cell(row, column, role_data.role()))

    def cell(self, row: int, column: int, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """:meth:`data` of model row ``row`` (the filter proxy asks here directly, without making an index)."""
        if not 0 <= row < self._count:
            return None
        src = self._source_row(row)
        if src is None or src >= len(self._dataset):
            return None
        example = self._dataset[src]
        if column in FIELD_OF_COLUMN:
            return self._text_data(example, FIELD_OF_COLUMN[column], role)
        if column == SPLIT:
            return self._split_data(example, role)
        if column == TOKENS:
            return self._token_data(example, role)
        if column == STATUS:
            return self._status_data(src, role)
        return None

    @staticmethod
    def _text_data(example: Example, field: str, role: int) -> Any:
        if example.turns:
            return conversation_cell(example, field, role)
        text: str = getattr(example, field)
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return text
        if role == Qt.ItemDataRole.ToolTipRole and text:
            return text if len(text) <= TOOLTIP_LIMIT else text[:TOOLTIP_LIMIT] + "…"
        if role == Qt.ItemDataRole.BackgroundRole and not text.strip():  # the field's "empty" problem
            return QBrush(QColor(214, 69, 69, 40))
        return None

    def split_of(self, example: Example) -> str:
        """``"train"`` or ``"validation"``: the row's pinned split, or the seeded draw."""
        fraction, seed = self._split_policy
        return draw_split(example, fraction, seed)

    def _split_data(self, example: Example, role: int) -> Any:
        if role == Qt.ItemDataRole.EditRole:
            return example.split
        pinned = example.split != "auto"
        if role == Qt.ItemDataRole.DisplayRole:
            return SPLIT_TEXT[self.split_of(example)]
        if role == Qt.ItemDataRole.FontRole and pinned:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ForegroundRole and not pinned:
            return QBrush(QColor(128, 128, 128))
        if role == Qt.ItemDataRole.ToolTipRole:
            if pinned:
                return f"Marked as {SPLIT_TEXT[example.split].lower()} by hand"
            fraction, seed = self._split_policy
            if fraction <= 0:
                return "Trained on (no validation share is set in Settings)"
            return f"Drawn at random: {fraction:.0%} of unmarked rows are held out for validation (seed {seed})"
        return None

    def set_split_policy(self, fraction: float, seed: int) -> None:
        """The validation share and seed of the draw (from the training settings)."""
        if (fraction, seed) != self._split_policy:
            self._split_policy = (fraction, seed)
            if self._count:
                self.dataChanged.emit(self.index(0, SPLIT), self.index(self._count - 1, SPLIT))

    def _token_data(self, example: Example, role: int) -> Any:
        count = self._tokens.get(token_key(example))
        if count is None:
            return None
        over = self._max_length is not None and count > self._max_length
        if role == Qt.ItemDataRole.DisplayRole:  # an over-long row says how many tokens it loses
            return (f"{count_text(count)} (−{count_text(count, self._max_length)})" if over and self._max_length
                    else count_text(count))
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        if role == Qt.ItemDataRole.ForegroundRole and over:
            return QBrush(QColor(STATUS_COLOURS["empty"]))
        if role == Qt.ItemDataRole.ToolTipRole:
            limit = f" (max length {self._max_length:,})" if self._max_length else ""
            cut = f": {count_text(count, self._max_length)} will be cut" if over and self._max_length else ""
            return f"{count_text(count)} tokens{limit}{cut}"
        return None

    def _status_data(self, src: int, role: int) -> Any:
        problems = self._problem_cache.get(src)
        if problems is None:
            if len(self._problem_cache) >= _PROBLEM_CACHE_ROWS:
                self._problem_cache.clear()
            problems = self._problem_cache[src] = self.row_problems(src)
        kind = problems[0].kind if problems else "ok"
        if role == Qt.ItemDataRole.DisplayRole:
            if not problems:
                return "OK"
            return ", ".join(dict.fromkeys(STATUS_TEXT.get(p.kind, p.kind) for p in problems))
        if role == Qt.ItemDataRole.DecorationRole:
            if kind not in self._icons:
                self._icons[kind] = _dot(STATUS_COLOURS.get(kind, STATUS_COLOURS["empty"]))
            return self._icons[kind]
        if role == Qt.ItemDataRole.ToolTipRole:
            return "\n".join(p.message for p in problems) if problems else "No problems found"
        if role == Qt.ItemDataRole.UserRole:
            return kind
        return None

    def setData(self, index: Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        if index.column() == SPLIT:
            if value not in SPLITS:
                return False
            field = "split"
        elif index.column() in FIELD_OF_COLUMN:
            field = FIELD_OF_COLUMN[index.column()]
        else:
            return False
        row = index.row()
        value = "" if value is None else str(value)
        if getattr(self._dataset[row], field) == value:
            return True
        self._push(EditCellCommand(self._dataset, row, field, value))
        return True

    # --- row operations (undoable when there is an undo stack) -----------------------------------------
    def _push(self, command: Any) -> None:
        if self.undo_stack is not None:
            self.undo_stack.push(command)
        else:
            command.redo()

    def insert_examples(self, index: int, rows: Sequence[Example], text: str | None = None) -> None:
        if rows:
            self._push(InsertRowsCommand(self._dataset, index, rows, text))

    def remove_examples(self, indices: Sequence[int]) -> None:
        if indices:
            self._push(RemoveRowsCommand(self._dataset, indices))

    def replace_examples(self, rows: Sequence[Example], text: str = "Replace all rows") -> None:
        self._push(ReplaceAllCommand(self._dataset, rows, text))

    # --- validation and token counts ---------------------------------------------------------------------
    def token_count(self, example: Example) -> int | None:
        """The known token count of a row (``None`` until counted). Safe to call from a worker thread."""
        return self._tokens.get(token_key(example))

    def counts_in_row_order(self) -> np.ndarray | None:
        """Every row's token count in row order (-1: unknown); ``None`` while new counts are being read in."""
        return None if self._lengths.filling() else self._lengths.counts()

    def known_counts(self) -> np.ndarray:
        """The token counts of the rows that have one, in row order."""
        return self._lengths.known()

    def rows_with_counts_between(self, low: int, high: int) -> list[int]:
        """Dataset rows whose known token count is in ``low..high``, ascending."""
        return self._lengths.rows_between(low, high)

    def too_long_rows(self) -> list[int]:
        """Dataset rows whose known token count is over the max length."""
        return self._lengths.too_long().tolist()

    def row_problems(self, row: int) -> list[RowProblem]:
        """The problems of dataset row ``row`` (empty when it is fine)."""
        problems = self._index.row_problems(row)
        if self._max_length is not None and self._tokens:
            n = self._tokens.get(token_key(self._dataset[row]), 0)
            if n > self._max_length:
                problems.append(RowProblem(row, "completion", "too_long",
                                           f"row {row + 1}: {count_text(n)} tokens, over the max length of "
                                           f"{self._max_length} ({count_text(n, self._max_length)} cut)"))
        return problems

    def has_problem(self, row: int) -> bool:
        return self._lengths.is_too_long(row) or self._index.has_problem(row)

    def problem_rows(self) -> list[int]:
        """Every row with at least one problem, ascending."""
        rows = self._index.problem_rows()
        too_long = self._lengths.too_long()
        return np.union1d(np.asarray(rows, dtype=np.int64), too_long).tolist() if too_long.size else rows

    def problem_row_count(self) -> int:
        """How many rows have at least one problem (no pass over the rows)."""
        too_long = self._lengths.too_long()
        if too_long.size > 1000:  # many: one set difference in C
            extra = int(np.setdiff1d(too_long, np.asarray(self._index.problem_rows(), dtype=np.int64)).size)
        else:
            extra = sum(1 for row in too_long.tolist() if not self._index.has_problem(row))
        return self._index.problem_row_count() + extra

    def set_max_length(self, max_length: int | None) -> bool:
        """The cutoff that marks rows "Too long" once their token counts are known; True when it changed."""
        if max_length == self._max_length:
            return False
        self._max_length = max_length
        self._lengths.set_limit(max_length)
        self._refresh_tokens()
        return True

    def set_token_counts(self, counts: Mapping[TokenKey, int]) -> None:
        """Add known token counts (keyed by :func:`token_key`)."""
        self._tokens.update(counts)
        self._lengths.refill()
        self._refresh_tokens()
        self._continue_fill()

    def clear_token_counts(self) -> None:
        """Forget every count (the model or the chat template changed)."""
        if self._tokens:
            self._tokens.clear()
            self._lengths.refill()
            self._refresh_tokens()

    def has_token_counts(self) -> bool:
        return bool(self._tokens)

    def rows_without_token_count(self) -> list[Example]:
        """Distinct rows whose token count is not known yet."""
        tokens = self._tokens
        missing = {key: r for r in self._dataset.rows
                   if (key := (r.system, r.prompt, r.completion) if not r.turns else token_key(r)) not in tokens}
        return list(missing.values())

    @Slot()
    def _continue_fill(self) -> None:
        """Read the next slice of every row's count (the first at once: a small table is done in one go)."""
        if not self._lengths.fill():
            self._fill_timer.start()
            return
        self._fill_timer.stop()
        self.summary_changed.emit()
        self.lengths_changed.emit()

    def _refresh_tokens(self) -> None:
        self._problem_cache.clear()
        if self._count:
            self.dataChanged.emit(self.index(0, TOKENS), self.index(self._count - 1, STATUS))
        self.summary_changed.emit()


class DatasetFilterProxy(QAbstractProxyModel):
    """Keeps rows whose prompt or completion contains the filter text (case-insensitive), or problem rows.

    Built for 100,000 rows. A ``QSortFilterProxyModel`` asks a Python ``filterAcceptsRow`` about every row
    and rebuilds its mapping on each filter change (~90-130 ms a keystroke here); this proxy keeps the
    shown source rows as one sorted list instead. Each row's searchable text is casefolded once and
    cached, a new filter is one pass over the cache, and the view hears a single ``layoutChanged`` with
    the selection carried over. Rows inserted while filtering are shown when they match; an edited row
    that starts to match appears, and one that stops matching stays until the filter changes, so a row
    never vanishes under the user's cursor.
    """

    #: Re-check edited rows against the filter only for changes up to this many rows (not a bulk replace).
    RECHECK_LIMIT = 1000
    PREFILL_SLICE = 5000

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._needle = ""
        self._problems_only = False
        self._rows: list[int] | None = None  # shown source rows, ascending; None: all of them
        self._text = TextFilter(self._text_of)  # casefolded "prompt\0completion" per source row, recent matches
        self._prefill_from = 0
        self._prefill_timer = QTimer(self)  # fills the text cache in small slices while the app is idle
        self._prefill_timer.setInterval(0)
        self._prefill_timer.timeout.connect(self._prefill)
        self._connections: list[tuple[Any, Any]] = []
        self._model: DatasetTableModel | None = None  # the source model, when it is a dataset table
        self._removing = (0, 0)  # the shown rows a removal in progress takes away

    # --- source ----------------------------------------------------------------------------------------
    def setSourceModel(self, model: QAbstractItemModel) -> None:
        self.beginResetModel()
        for signal, slot in self._connections:
            signal.disconnect(slot)
        super().setSourceModel(model)
        self._model = model if isinstance(model, DatasetTableModel) else None
        self._connections = [
            (model.dataChanged, self._on_data_changed), (model.headerDataChanged, self.headerDataChanged),
            (model.rowsAboutToBeInserted, self._on_rows_about_to_be_inserted),
            (model.rowsInserted, self._on_rows_inserted),
            (model.rowsAboutToBeRemoved, self._on_rows_about_to_be_removed),
            (model.rowsRemoved, self._on_rows_removed),
            (model.modelAboutToBeReset, self.beginResetModel), (model.modelReset, self._on_model_reset),
        ]
        for signal, slot in self._connections:
            signal.connect(slot)
        self._reset_cache()
        self._rows = self._matching_rows() if self.is_filtering() else None
        self.endResetModel()

    def _dataset_model(self) -> DatasetTableModel | None:
        return self._model

    # --- the Qt proxy API --------------------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        if parent.isValid():
            return 0
        if self._rows is not None:
            return len(self._rows)
        model = self.sourceModel()
        return model.rowCount() if model is not None else 0

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        model = self.sourceModel()
        return 0 if parent.isValid() or model is None else model.columnCount()

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        if parent.isValid() or not (0 <= row < self.rowCount() and 0 <= column < self.columnCount()):
            return QModelIndex()
        return self.createIndex(row, column)

    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        return QModelIndex()

    def sibling(self, row: int, column: int, index: Index) -> QModelIndex:
        return self.index(row, column)

    def hasChildren(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and self.rowCount() > 0

    def mapToSource(self, proxy_index: Index) -> QModelIndex:
        model = self.sourceModel()
        if model is None or not proxy_index.isValid():
            return QModelIndex()
        row = proxy_index.row()
        if self._rows is not None:
            if row >= len(self._rows):
                return QModelIndex()
            row = self._rows[row]
        return model.index(row, proxy_index.column())

    def mapFromSource(self, source_index: Index) -> QModelIndex:
        if not source_index.isValid():
            return QModelIndex()
        row = source_index.row()
        if self._rows is not None:
            at = bisect.bisect_left(self._rows, row)
            if at >= len(self._rows) or self._rows[at] != row:
                return QModelIndex()
            row = at
        return self.index(row, source_index.column())

    # The table model answers for the source row straight away: no source index is made per cell.
    def _source_row_of(self, index: Index) -> int:
        """The source row of a valid ``index`` (-1 when there is none)."""
        row = index.row()
        if self._rows is not None:
            return self._rows[row] if row < len(self._rows) else -1
        return row

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        model = self._dataset_model()
        if model is None or not index.isValid():
            return super().data(index, role)
        return model.cell(self._source_row_of(index), index.column(), role)

    def multiData(self, index: Index, roles: QModelRoleDataSpan | QModelRoleData) -> None:
        model = self._dataset_model()
        if model is None or not index.isValid():
            super().multiData(index, roles)
        else:
            model.fill_roles(self._source_row_of(index), index.column(), roles)

    def flags(self, index: Index) -> Qt.ItemFlag:
        model = self._dataset_model()
        if model is None or not index.isValid():
            return super().flags(index)
        return model.column_flags(index.column())

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
                   ) -> Any:
        model = self.sourceModel()
        if model is None:
            return None
        if orientation == Qt.Orientation.Vertical and self._rows is not None:  # the row's own number
            if not 0 <= section < len(self._rows):
                return None
            section = self._rows[section]
        return model.headerData(section, orientation, role)

    # --- filtering ---------------------------------------------------------------------------------------
    def set_filter_text(self, text: str) -> None:
        needle = text.strip().casefold()
        if needle != self._needle:
            self._needle = needle
            self._refilter()

    def set_problems_only(self, on: bool) -> None:
        if on != self._problems_only:
            self._problems_only = on
            self._refilter()

    def is_filtering(self) -> bool:
        return bool(self._needle) or self._problems_only

    def _text_of(self, row: int) -> str:
        model = self._dataset_model()
        return row_text(model.dataset[row]) if model is not None else ""

    def _accepts(self, model: DatasetTableModel, row: int) -> bool:
        if self._problems_only and not model.has_problem(row):
            return False
        return not self._needle or self._text.contains(row, self._needle)

    def _matching_rows(self) -> list[int]:
        """The source rows the current filter shows, ascending."""
        model = self._dataset_model()
        if model is None:
            return []
        if len(self._text) != len(model.dataset):  # out of step (cannot happen with the signals connected)
            self._text.reset(len(model.dataset))
        if not self._needle:
            return model.problem_rows() if self._problems_only else list(range(len(model.dataset)))
        if self._problems_only:  # few rows: search them (a keystroke's narrowing pays off on all rows)
            return list(self._text.matches(self._needle, model.problem_rows()))
        return list(self._text.matches(self._needle))

    def _refilter(self) -> None:
        """Apply a new filter as one layout change; selected and current rows keep their place if shown."""
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        sources = [self.mapToSource(index) for index in persistent]
        self._rows = self._matching_rows() if self.is_filtering() else None
        self.changePersistentIndexList(persistent, [self.mapFromSource(src) for src in sources])
        self.layoutChanged.emit()

    # --- following the source ----------------------------------------------------------------------------
    def _on_data_changed(self, top_left: QModelIndex, bottom_right: QModelIndex, roles: Any = ()) -> None:
        first, last = top_left.row(), bottom_right.row()
        if top_left.column() <= COMPLETION:
            self._text.changed(first, last)
        model = self._dataset_model()
        if self._rows is not None and model is not None and last - first < self.RECHECK_LIMIT:
            for row in range(first, last + 1):  # an edited row that now matches joins the view
                at = bisect.bisect_left(self._rows, row)
                shown = at < len(self._rows) and self._rows[at] == row
                if not shown and self._accepts(model, row):
                    self.beginInsertRows(QModelIndex(), at, at)
                    self._rows.insert(at, row)
                    self.endInsertRows()
        if self._rows is None:
            self.dataChanged.emit(self.index(first, top_left.column()), self.index(last, bottom_right.column()),
                                  roles)
            return
        low = bisect.bisect_left(self._rows, first)
        high = bisect.bisect_right(self._rows, last) - 1
        if low <= high:
            self.dataChanged.emit(self.index(low, top_left.column()), self.index(high, bottom_right.column()),
                                  roles)

    def _on_rows_about_to_be_inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        if self._rows is None:
            self.beginInsertRows(QModelIndex(), first, last)

    def _on_rows_inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        count = last - first + 1
        self._text.inserted(first, count)
        if self._rows is None:
            self.endInsertRows()
            return
        model = self._dataset_model()
        at = bisect.bisect_left(self._rows, first)
        # Renumber the shown rows first (the source already holds the new rows; nothing moves in the view),
        # then insert the new rows that match.
        self._rows[at:] = [r + count for r in self._rows[at:]]
        new = [r for r in range(first, last + 1) if model is not None and self._accepts(model, r)]
        if new:
            self.beginInsertRows(QModelIndex(), at, at + len(new) - 1)
            self._rows[at:at] = new
            self.endInsertRows()

    def _on_rows_about_to_be_removed(self, _parent: QModelIndex, first: int, last: int) -> None:
        if self._rows is None:
            self.beginRemoveRows(QModelIndex(), first, last)
            return
        low = bisect.bisect_left(self._rows, first)
        high = bisect.bisect_right(self._rows, last)
        self._removing = (low, high)
        if high > low:
            self.beginRemoveRows(QModelIndex(), low, high - 1)

    def _on_rows_removed(self, _parent: QModelIndex, first: int, last: int) -> None:
        count = last - first + 1
        self._text.removed(first, count)
        if self._rows is None:
            self.endRemoveRows()
            return
        low, high = self._removing
        self._rows[low:] = [r - count for r in self._rows[high:]]
        if high > low:
            self.endRemoveRows()

    def _on_model_reset(self) -> None:
        self._reset_cache()
        self._rows = self._matching_rows() if self.is_filtering() else None
        self.endResetModel()

    # --- the text cache ------------------------------------------------------------------------------------
    def _reset_cache(self) -> None:
        model = self.sourceModel()
        self._text.reset(model.rowCount() if model is not None else 0)
        self._prefill_from = 0
        if len(self._text) > self.PREFILL_SLICE:  # big file: have the cache ready before the first keystroke
            self._prefill_timer.start()

    @Slot()
    def _prefill(self) -> None:
        model = self._dataset_model()
        if model is None or self._prefill_from >= len(self._text) or len(self._text) != len(model.dataset):
            self._prefill_timer.stop()
            return
        self._prefill_from = self._text.fill(self._prefill_from, self._prefill_from + self.PREFILL_SLICE)


class SplitDelegate(QStyledItemDelegate):
    """Edits the Split column with a list: drawn automatically, or pinned to train or validation."""

    CHOICES = (("auto", "Auto (drawn)"), ("train", "Train"), ("validation", "Validation"))

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem, index: Index) -> QWidget:
        editor = QComboBox(parent)
        for value, label in self.CHOICES:
            editor.addItem(label, value)
        editor.activated.connect(lambda _i, e=editor: self._commit(e))
        return editor

    def _commit(self, editor: QComboBox) -> None:
        self.commitData.emit(editor)
        self.closeEditor.emit(editor, QStyledItemDelegate.EndEditHint.NoHint)

    def setEditorData(self, editor: QWidget, index: Index) -> None:
        if isinstance(editor, QComboBox):
            editor.setCurrentIndex(max(0, editor.findData(index.data(Qt.ItemDataRole.EditRole))))

    def setModelData(self, editor: QWidget, model: QAbstractItemModel, index: Index) -> None:
        if isinstance(editor, QComboBox):
            model.setData(index, editor.currentData(), Qt.ItemDataRole.EditRole)


class MultiLineDelegate(QStyledItemDelegate):
    """Edits prompt/completion cells in a multi-line box: Enter adds a line, Ctrl+Enter (or leaving) commits.

    Row heights follow the text but stop at :attr:`max_lines` lines; the full text is in the tooltip.
    """

    max_lines = 4
    editor_lines = 7

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem, index: Index) -> QWidget:
        editor = QPlainTextEdit(parent)
        editor.setTabChangesFocus(True)
        editor.setObjectName("cellEditor")
        editor.setToolTip("Ctrl+Enter to finish, Esc to cancel")
        return editor

    def setEditorData(self, editor: QWidget, index: Index) -> None:
        if isinstance(editor, QPlainTextEdit):
            editor.setPlainText(index.data(Qt.ItemDataRole.EditRole) or "")
            editor.moveCursor(editor.textCursor().MoveOperation.End)
        else:
            super().setEditorData(editor, index)

    def setModelData(self, editor: QWidget, model: QAbstractItemModel, index: Index) -> None:
        if isinstance(editor, QPlainTextEdit):
            model.setData(index, editor.toPlainText(), Qt.ItemDataRole.EditRole)
        else:
            super().setModelData(editor, model, index)

    def updateEditorGeometry(self, editor: QWidget, option: QStyleOptionViewItem, index: Index) -> None:
        rect = option.rect
        line = option.fontMetrics.lineSpacing()
        rect.setHeight(max(rect.height(), line * self.editor_lines + 10))
        editor.setGeometry(rect)

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        hint = super().sizeHint(option, index)
        line = option.fontMetrics.lineSpacing()
        return QSize(hint.width(), min(hint.height(), line * self.max_lines + 8))

    def eventFilter(self, editor: QObject, event: QEvent) -> bool:
        if (isinstance(editor, QPlainTextEdit) and event.type() == QEvent.Type.KeyPress
                and isinstance(event, QKeyEvent)
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
                and event.modifiers() & Qt.KeyboardModifier.ControlModifier):
            self.commitData.emit(editor)
            self.closeEditor.emit(editor, QStyledItemDelegate.EndEditHint.NoHint)
            return True
        return super().eventFilter(editor, event)
