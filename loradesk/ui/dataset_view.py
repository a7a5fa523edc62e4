"""The dataset table widget: how the rows look, how they are fitted to their text, and selection in dataset rows."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QEvent,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from loradesk.ui.dataset_model import (
    COMPLETION,
    PROMPT,
    SPLIT,
    STATUS,
    TOKENS,
    DatasetFilterProxy,
    DatasetTableModel,
    MultiLineDelegate,
    SplitDelegate,
)
from loradesk.ui.undo import row_runs

#: Up to this many rows, every row is fitted to its text on load and when columns resize; in bigger
#: files rows start two lines high and only rows that change are fitted (keeps big files fast).
FIT_ROWS_LIMIT = 300  # fitting costs ~0.2 ms a row on the GUI thread: keep one pass under ~70 ms


class DatasetTableView(QTableView):
    """The table of the Dataset tab over ``proxy`` (which filters ``model``); rows are selected whole.

    A pair's prompt and completion are edited in place. A conversation's are not: double-clicking them,
    F2, or Enter anywhere on the row asks for the conversation editor (:attr:`conversation_requested`).
    """

    #: The dataset row of a conversation the user wants to edit.
    conversation_requested = Signal(int)

    def __init__(self, model: DatasetTableModel, proxy: DatasetFilterProxy, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source_model = model
        self.proxy = proxy
        self.setObjectName("datasetTable")
        self.setModel(proxy)
        self.setItemDelegate(MultiLineDelegate(self))
        self.setItemDelegateForColumn(SPLIT, SplitDelegate(self))
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.setWordWrap(True)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setAlternatingRowColors(True)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.setIconSize(QSize(120, 24))  # room for a conversation's "6 turns · 2 calls" badge (icons keep their size)
        self._build_headers()
        self._fit_timer = QTimer(self)
        self._fit_timer.setSingleShot(True)
        self._fit_timer.setInterval(100)  # coalesces the resizes of a window drag
        self._fit_timer.timeout.connect(self.fit_rows)
        proxy.modelReset.connect(self._fit_timer.start)
        proxy.layoutChanged.connect(self._fit_timer.start)
        proxy.rowsInserted.connect(self._fit_new_rows)
        proxy.dataChanged.connect(self._fit_changed_rows)
        self.horizontalHeader().sectionResized.connect(self._fit_timer.start)
        self._fit_timer.start()

    def _build_headers(self) -> None:
        header = self.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setSectionResizeMode(PROMPT, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(COMPLETION, QHeaderView.ResizeMode.Stretch)
        for column in (SPLIT, TOKENS, STATUS):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Fixed)
        metrics = self.fontMetrics()
        header.resizeSection(PROMPT, metrics.horizontalAdvance("x") * 42)
        header.resizeSection(SPLIT, metrics.horizontalAdvance("Validation") + 28)
        header.resizeSection(TOKENS, metrics.horizontalAdvance("1,234 (−567)") + 16)
        header.resizeSection(STATUS, metrics.horizontalAdvance("Duplicate, Empty") + 36)
        vertical = self.verticalHeader()
        vertical.setDefaultAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        vertical.setMinimumSectionSize(metrics.lineSpacing() + 10)
        vertical.setDefaultSectionSize(metrics.lineSpacing() * 2 + 10)
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)

    # --- selection in dataset rows ---------------------------------------------------------------------
    def selected_rows(self) -> list[int]:
        """Selected dataset rows, in order."""
        rows = {self.proxy.mapToSource(i).row() for i in self.selectionModel().selectedRows()}
        return sorted(r for r in rows if r >= 0)

    def current_row(self) -> int | None:
        """The dataset row of the current cell, if any."""
        index = self.proxy.mapToSource(self.currentIndex())
        return index.row() if index.isValid() else None

    def select_source_rows(self, rows: list[int]) -> None:
        """Select whole rows (dataset numbering), make the first current and scroll to it."""
        model, proxy = self.source_model, self.proxy
        selection = QItemSelection()
        last = model.columnCount() - 1
        if proxy.is_filtering():
            for r in rows:
                top = proxy.mapFromSource(model.index(r, 0))
                if top.isValid():
                    selection.select(top, proxy.mapFromSource(model.index(r, last)))
        else:  # proxy rows are dataset rows: one range per run of rows (thousands of rows stay quick)
            for start, count in row_runs(sorted(set(rows))):
                selection.select(proxy.index(start, 0), proxy.index(start + count - 1, last))
        selection_model = self.selectionModel()
        flags = QItemSelectionModel.SelectionFlag
        selection_model.select(selection, flags.ClearAndSelect | flags.Rows)
        if rows:
            first = proxy.mapFromSource(model.index(rows[0], PROMPT))
            selection_model.setCurrentIndex(first, flags.NoUpdate)
            self.scrollTo(first)

    def shows_row(self, row: int) -> bool:
        """Whether dataset row ``row`` passes the filter (is in the table)."""
        return self.proxy.mapFromSource(self.source_model.index(row, PROMPT)).isValid()

    # --- conversations ---------------------------------------------------------------------------------
    def conversation_at(self, index: QModelIndex | QPersistentModelIndex) -> int | None:
        """The dataset row at view ``index`` when it is a conversation."""
        source = self.proxy.mapToSource(index)
        if not source.isValid():
            return None
        row = source.row()
        return row if self.source_model.dataset[row].turns else None

    def edit(self, index: QModelIndex | QPersistentModelIndex,
             trigger: QAbstractItemView.EditTrigger = QAbstractItemView.EditTrigger.AllEditTriggers,
             event: QEvent | None = None) -> bool:
        """Edit a cell in place, except a conversation's text: that opens the conversation editor."""
        wanted = trigger == QAbstractItemView.EditTrigger.AllEditTriggers or bool(self.editTriggers() & trigger)
        if wanted and index.column() in (PROMPT, COMPLETION):
            row = self.conversation_at(index)
            if row is not None:
                self.conversation_requested.emit(row)
                return True
        return super().edit(index, trigger, event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if (event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.state() != self.State.EditingState
                and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier):
            row = self.conversation_at(self.currentIndex())
            if row is not None:
                self.conversation_requested.emit(row)
                event.accept()
                return
        super().keyPressEvent(event)

    # --- row heights -----------------------------------------------------------------------------------
    @Slot()
    def fit_rows(self) -> None:
        """Fit every row to its text (up to a few lines), unless the file is huge."""
        if self.proxy.rowCount() <= FIT_ROWS_LIMIT:
            self.resizeRowsToContents()

    def _fit_new_rows(self, _parent: QModelIndex, first: int, last: int) -> None:
        for row in range(first, last + 1):
            self.resizeRowToContents(row)

    def _fit_changed_rows(self, top_left: QModelIndex, bottom_right: QModelIndex, *_roles: Any) -> None:
        if top_left.column() > COMPLETION:
            return
        if bottom_right.row() - top_left.row() >= FIT_ROWS_LIMIT:  # a bulk change: one pass (or none) later
            self._fit_timer.start()
            return
        for row in range(top_left.row(), bottom_right.row() + 1):
            self.resizeRowToContents(row)
