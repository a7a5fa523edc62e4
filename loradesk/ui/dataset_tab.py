"""The Dataset tab: the editable prompt/completion table, its filter box and row actions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QModelIndex, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QIcon, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.config import ModelSettings
from loradesk.core.dataset import Example
from loradesk.core.project import ConfigChanged, Project, ProjectEvent, ProjectLoaded
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
    row_runs,
)
from loradesk.ui.tasks import Tasks
from loradesk.ui.token_counter import TokenCounter
from loradesk.ui.undo import InsertRowsCommand, SetFieldsCommand

#: Up to this many rows, every row is fitted to its text on load and when columns resize; in bigger
#: files rows start two lines high and only rows that change are fitted (keeps big files fast).
FIT_ROWS_LIMIT = 300  # fitting costs ~0.2 ms a row on the GUI thread: keep one pass under ~70 ms


def explain_current(seq: int, row: int, settings: ModelSettings, use_chat_template: bool, completion_only: bool,
                    max_length: int, example: Example,
                    progress: Callable[[str, float | None], None]) -> tuple[int, int, Any]:
    """:func:`~loradesk.ui.token_view.explain_row`, tagged with the request it answers (worker thread)."""
    from loradesk.ui.token_view import explain_row

    return seq, row, explain_row(settings, use_chat_template, completion_only, max_length, example, progress)


class DatasetTab(QWidget):
    """Shows and edits the project's dataset; every change is an undoable command."""

    #: rows, rows with problems
    stats_changed = Signal(int, int)

    def __init__(self, project: Project, undo_stack: QUndoStack, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.undo_stack = undo_stack
        self._tokens_wanted = False  # token work (counts, preview) was started: keep it current
        self._rows_changed_since_count = False  # rows were added or edited after the last count started
        self._preview_seq = 0
        self._find_dialog: Any = None
        self.model = DatasetTableModel(project.dataset, undo_stack, self)
        self.proxy = DatasetFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.token_counter = TokenCounter(self)
        self._preview_tasks = Tasks(self)
        self._token_setup: str | None = None  # the model/template the known counts belong to
        self._build()
        self._make_actions()
        # Many changes can arrive in one go (a filter, a bulk fix): the footer is updated once, afterwards.
        self._summary_timer = QTimer(self)
        self._summary_timer.setSingleShot(True)
        self._summary_timer.setInterval(0)
        self._summary_timer.timeout.connect(self._update_summary)
        for signal in (self.model.summary_changed, self.proxy.rowsInserted, self.proxy.rowsRemoved,
                       self.proxy.modelReset, self.proxy.layoutChanged):
            signal.connect(self._summary_timer.start)
        self.proxy.modelReset.connect(self._fit_timer.start)
        self.proxy.layoutChanged.connect(self._fit_timer.start)
        self.proxy.rowsInserted.connect(self._fit_new_rows)
        self.proxy.dataChanged.connect(self._fit_changed_rows)
        self.view.horizontalHeader().sectionResized.connect(self._fit_timer.start)
        self._unsubscribe = project.subscribe(self._on_project_event)
        self.destroyed.connect(self._unsubscribe)
        self.model.set_max_length(project.config.training.max_length)
        self.model.set_split_policy(project.config.training.validation_fraction, project.config.training.seed)
        self._fit_timer.start()
        self._update_summary()
        self._request_preview()

    # --- layout ----------------------------------------------------------------------------------------
    def _build(self) -> None:
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

        bar = QHBoxLayout()
        bar.setSpacing(6)
        for button in (self.add_button, self.duplicate_button, self.delete_button):
            bar.addWidget(button)
        bar.addSpacing(12)
        bar.addWidget(self.filter_edit, 1)
        bar.addWidget(self.problems_only)
        bar.addSpacing(12)
        bar.addWidget(self.count_button)

        self.view = QTableView()
        self.view.setObjectName("datasetTable")
        self.view.setModel(self.proxy)
        self.view.setItemDelegate(MultiLineDelegate(self.view))
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                  | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.view.setWordWrap(True)
        self.view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.view.setAlternatingRowColors(True)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        header = self.view.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setSectionResizeMode(PROMPT, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(COMPLETION, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(TOKENS, QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(STATUS, QHeaderView.ResizeMode.Fixed)
        metrics = self.fontMetrics()
        header.resizeSection(PROMPT, metrics.horizontalAdvance("x") * 42)
        header.resizeSection(TOKENS, metrics.horizontalAdvance("1,234 (−567)") + 16)
        header.resizeSection(STATUS, metrics.horizontalAdvance("Duplicate, Empty") + 36)
        vertical = self.view.verticalHeader()
        vertical.setDefaultAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        vertical.setMinimumSectionSize(metrics.lineSpacing() + 10)
        vertical.setDefaultSectionSize(metrics.lineSpacing() * 2 + 10)
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self._fit_timer = QTimer(self)
        self._fit_timer.setSingleShot(True)
        self._fit_timer.setInterval(100)  # coalesces the resizes of a window drag
        self._fit_timer.timeout.connect(self._fit_rows)

        self.summary_label = QLabel()
        self.summary_label.setObjectName("summaryLabel")
        self.token_label = QLabel()
        self.token_label.setObjectName("hintLabel")
        self.token_progress = QProgressBar()
        self.token_progress.setMaximumWidth(160)
        self.token_progress.setTextVisible(False)
        self.token_progress.hide()
        footer = QHBoxLayout()
        footer.addWidget(self.summary_label)
        footer.addStretch(1)
        footer.addWidget(self.token_label)
        footer.addWidget(self.token_progress)

        self.view.setItemDelegateForColumn(SPLIT, SplitDelegate(self.view))
        header.setSectionResizeMode(SPLIT, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(SPLIT, metrics.horizontalAdvance("Validation") + 28)

        table = QWidget()
        table_layout = QVBoxLayout(table)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.setSpacing(6)
        table_layout.addLayout(bar)
        table_layout.addWidget(self.view, 1)
        table_layout.addLayout(footer)
        self._build_inspector()
        # The panel sits below the table: token text reads best in long lines, and the settings dock
        # already takes the right-hand side of the window.
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("datasetSplitter")
        self.splitter.addWidget(table)
        self.splitter.addWidget(self.inspector)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setCollapsible(0, False)
        self.splitter.setSizes([500, metrics.lineSpacing() * 20])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        self._filter_timer = QTimer(self)
        self._filter_timer.setSingleShot(True)
        self._filter_timer.setInterval(150)
        self._filter_timer.timeout.connect(self._apply_filter)
        self.filter_edit.textChanged.connect(self._filter_timer.start)
        self.problems_only.toggled.connect(self.proxy.set_problems_only)
        self.count_button.clicked.connect(self.count_tokens)
        self._recount_timer = QTimer(self)
        self._recount_timer.setSingleShot(True)
        self._recount_timer.setInterval(1500)
        self._recount_timer.timeout.connect(self._recount_missing)
        self.view.selectionModel().selectionChanged.connect(self._update_actions)
        self.view.selectionModel().currentRowChanged.connect(self._preview_timer.start)
        self.model.dataChanged.connect(self._on_rows_changed)
        for signal in (self.model.rowsInserted, self.model.modelReset):
            signal.connect(self._mark_rows_changed)

    def _build_inspector(self) -> None:
        """The side panel: the current row token by token, the token lengths, and the checks."""
        from loradesk.ui.checks_panel import ChecksPanel
        from loradesk.ui.token_view import LengthHistogram, TokenPreview

        self.token_preview = TokenPreview()
        self.length_histogram = LengthHistogram()
        self.checks = ChecksPanel(self.project, self.undo_stack)
        self.inspector = QTabWidget()
        self.inspector.setObjectName("datasetInspector")
        self.inspector.setDocumentMode(True)
        self.inspector.addTab(self.token_preview, "Tokens")
        self.inspector.setTabToolTip(0, "The selected row exactly as the model is trained on it")
        self.inspector.addTab(self.length_histogram, "Lengths")
        self.inspector.setTabToolTip(1, "How many tokens the rows take, against the max length")
        self.inspector.addTab(self.checks, "Checks")
        self.inspector.setTabToolTip(2, "Empty, duplicated, untidy or too long rows, with fixes")
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(120)  # arrow keys through the table: only the row you stop on
        self._preview_timer.timeout.connect(self._request_preview)
        self.checks.select_rows.connect(self.select_source_rows)
        self.checks.show_row.connect(self.show_row)
        self.checks.checked.connect(self._update_checks_title)
        self.length_histogram.range_clicked.connect(self.select_length_range)

    def _make_actions(self) -> None:
        """Row actions (the main window also lists them in its Edit menu)."""
        def action(text: str, slot: Callable[[], None], keys: list[QKeySequence], tip: str,
                   button: QPushButton | None = None, local: bool = True) -> QAction:
            act = QAction(text, self)
            act.setShortcuts(keys)
            act.setStatusTip(tip)
            act.triggered.connect(slot)
            if local:  # keys only act while the table has focus (Delete must still work in text boxes)
                act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                self.view.addAction(act)
            else:
                self.addAction(act)
            if button is not None:
                button.clicked.connect(act.trigger)
                button.setToolTip(f"{tip} ({act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})")
            return act

        self.act_add = action("&Add Row", self.add_row, [QKeySequence("Ctrl+Shift+N"), QKeySequence("Insert")],
                              "Add an empty row below the current one and edit it", self.add_button)
        self.act_duplicate = action("D&uplicate Rows", self.duplicate_rows, [QKeySequence("Ctrl+D")],
                                    "Copy the selected rows", self.duplicate_button)
        self.act_delete = action("&Delete Rows", self.delete_rows, [QKeySequence(QKeySequence.StandardKey.Delete)],
                                 "Delete the selected rows", self.delete_button)
        self.act_find = action("&Find…", self.focus_filter, [QKeySequence(QKeySequence.StandardKey.Find)],
                               "Filter the rows by text", local=False)
        keys = self.act_find.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        self.filter_edit.setPlaceholderText(f"Filter prompts and completions ({keys})")
        self.act_replace = action("Find and &Replace…", self.show_find_replace, [QKeySequence("Ctrl+H")],
                                  "Replace text in every row (one undoable step)", local=False)
        separator = QAction(self)
        separator.setSeparator(True)
        self.view.addAction(separator)
        self.act_mark_validation = action("Mark as &Validation", lambda: self.mark_split("validation"),
                                          [QKeySequence("Ctrl+Shift+V")],
                                          "Hold the selected rows out of training to measure eval loss and "
                                          "to compare answers")
        self.act_mark_train = action("Mark as &Train", lambda: self.mark_split("train"),
                                     [QKeySequence("Ctrl+Shift+T")], "Always train on the selected rows")
        self.act_mark_auto = action("&Draw Split at Random", lambda: self.mark_split("auto"), [],
                                    "Let the validation share in Settings decide for the selected rows")
        self._update_actions()

    # --- row actions -----------------------------------------------------------------------------------
    def selected_rows(self) -> list[int]:
        """Selected dataset rows, in order."""
        rows = {self.proxy.mapToSource(i).row() for i in self.view.selectionModel().selectedRows()}
        return sorted(r for r in rows if r >= 0)

    def current_row(self) -> int | None:
        index = self.proxy.mapToSource(self.view.currentIndex())
        return index.row() if index.isValid() else None

    @Slot()
    def add_row(self) -> None:
        """Insert an empty row below the current one, select it and start editing its prompt."""
        if self.proxy.is_filtering():  # the new, empty row must be visible
            self.filter_edit.clear()
            self.problems_only.setChecked(False)
            self._apply_filter()
        current = self.current_row()
        row = len(self.project.dataset) if current is None else current + 1
        self.model.insert_examples(row, [Example("", "")], "Add row")
        self.select_source_rows([row])
        index = self.proxy.mapFromSource(self.model.index(row, PROMPT))
        self.view.setFocus()
        self.view.edit(index)

    @Slot()
    def duplicate_rows(self) -> None:
        """Put a copy of each selected block of rows right after it."""
        rows = self.selected_rows()
        if not rows:
            return
        dataset = self.project.dataset
        runs: list[list[int]] = []
        for r in rows:
            if runs and runs[-1][-1] == r - 1:
                runs[-1].append(r)
            else:
                runs.append([r])
        copies: list[int] = []
        shift = 0
        for run in runs:
            first = run[0] + shift
            copies.extend(range(first + len(run), first + 2 * len(run)))
            shift += len(run)
        self.undo_stack.beginMacro(f"Duplicate {len(rows)} row" + ("s" if len(rows) != 1 else ""))
        for run in reversed(runs):
            block = [dataclasses.replace(dataset[r]) for r in run]
            self.undo_stack.push(InsertRowsCommand(dataset, run[-1] + 1, block))
        self.undo_stack.endMacro()
        self.select_source_rows(copies)

    @Slot()
    def delete_rows(self) -> None:
        rows = self.selected_rows()
        if not rows:
            return
        self.model.remove_examples(rows)
        remaining = len(self.project.dataset)
        if remaining:
            self.select_source_rows([min(rows[0], remaining - 1)])

    @Slot()
    def focus_filter(self) -> None:
        self.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter_edit.selectAll()

    def select_source_rows(self, rows: list[int]) -> None:
        """Select whole rows (dataset numbering), make the first current and scroll to it."""
        selection = QItemSelection()
        last = self.model.columnCount() - 1
        if self.proxy.is_filtering():
            for r in rows:
                top = self.proxy.mapFromSource(self.model.index(r, 0))
                if top.isValid():
                    selection.select(top, self.proxy.mapFromSource(self.model.index(r, last)))
        else:  # proxy rows are dataset rows: one range per run of rows (thousands of rows stay quick)
            for start, count in row_runs(sorted(set(rows))):
                selection.select(self.proxy.index(start, 0), self.proxy.index(start + count - 1, last))
        model = self.view.selectionModel()
        flags = QItemSelectionModel.SelectionFlag
        model.select(selection, flags.ClearAndSelect | flags.Rows)
        if rows:
            first = self.proxy.mapFromSource(self.model.index(rows[0], PROMPT))
            model.setCurrentIndex(first, flags.NoUpdate)
            self.view.scrollTo(first)

    # --- token counts ----------------------------------------------------------------------------------
    def _token_setup_key(self) -> str:
        config = self.project.config
        return repr((sorted(config.model.to_dict().items()), config.training.use_chat_template))

    @Slot()
    def count_tokens(self) -> None:
        """Count the tokens of rows whose count is unknown, in the worker process."""
        self.token_counter.start()

    @Slot()
    def _recount_missing(self) -> None:
        if self._token_setup is not None and self._token_setup == self._token_setup_key():
            self.count_tokens()

    def _update_token_label(self) -> None:
        if not self.model.has_token_counts():
            self.token_label.setText("")
            return
        too_long = len(self.model.too_long_rows())
        limit = self.project.config.training.max_length
        self.token_label.setText(f"{too_long} row{'s' if too_long != 1 else ''} over the max length of "
                                 f"{limit:,} tokens" if too_long else f"All rows fit in {limit:,} tokens")
        self.token_label.setToolTip("")

    def _on_project_event(self, event: ProjectEvent) -> None:
        if isinstance(event, ConfigChanged | ProjectLoaded):
            training = self.project.config.training
            lengths_changed = self.model.set_max_length(training.max_length)
            self.model.set_split_policy(training.validation_fraction, training.seed)
            if self._token_setup is not None and self._token_setup != self._token_setup_key():
                self.model.clear_token_counts()  # another model or template: old counts are wrong
                self._token_setup = None
                lengths_changed = True
                if self._tokens_wanted:
                    self._recount_timer.start()
            self._update_token_label()
            # not on every other setting (a pass over every row)
            if lengths_changed or isinstance(event, ProjectLoaded):
                self._update_lengths()
            self._preview_timer.start()
        if isinstance(event, ProjectLoaded):
            self.filter_edit.clear()

    def _update_lengths(self) -> None:
        """Redraw the histogram from the known counts; hand the counts to the checks."""
        self.checks.set_token_counts(self.model.token_count if self.model.has_token_counts() else None)
        if not self.model.has_token_counts():
            self.length_histogram.clear()
            return
        counts = [n for n in self.model.counts_in_order() if n is not None]
        self.length_histogram.set_counts(counts, self.project.config.training.max_length)

    @Slot(int, int)
    def select_length_range(self, low: int, high: int) -> None:
        """Select the rows whose token count is in ``low..high`` (a bar of the histogram)."""
        count = self.model.token_count
        rows = [i for i, row in enumerate(self.project.dataset) if low <= (count(row) or -1) <= high]
        self.select_source_rows(rows)
        span = f"{low:,} tokens" if low == high else f"{low:,}–{high:,} tokens"
        self.token_label.setText(f"Selected {len(rows):,} row{'s' if len(rows) != 1 else ''} of {span}")

    @Slot()
    def _update_checks_title(self) -> None:
        found = sum(1 for r in self.checks.results() if r.severity != "info")
        index = self.inspector.indexOf(self.checks)
        self.inspector.setTabText(index, f"Checks ({found})" if found else "Checks")

    # --- what the model sees ---------------------------------------------------------------------------
    @Slot()
    def _request_preview(self) -> None:
        """Show the current row token by token (tokenized on a worker thread; the latest request wins)."""
        self._preview_timer.stop()
        self._preview_seq += 1
        row = self.current_row()
        if row is None or row >= len(self.project.dataset):
            self.token_preview.show_message("Select a row to see exactly what the model is trained on: "
                                            "the text after the chat template, token by token.")
            return
        if not self._tokens_wanted:
            self.token_preview.show_message("Click “Count tokens” to load the model's tokenizer and see "
                                            "this row token by token.")
            return
        config = self.project.config
        training = config.training
        settings = ModelSettings.from_dict(config.model.to_dict())
        self._preview_tasks.run(explain_current, self._preview_seq, row, settings, training.use_chat_template,
                                training.completion_only_loss, training.max_length, self.project.dataset[row],
                                on_result=self._on_preview, on_error=self._on_preview_failed,
                                on_progress=self._on_preview_progress)

    @Slot(object)
    def _on_preview(self, result: tuple[int, int, Any]) -> None:
        seq, row, explained = result
        if seq == self._preview_seq:
            self.token_preview.show_explained(explained, row)

    @Slot(str, str)
    def _on_preview_failed(self, message: str, _details: str) -> None:
        self.token_preview.show_message(f"Cannot show the tokens: {message}")

    @Slot(str, object)
    def _on_preview_progress(self, text: str, _fraction: object) -> None:
        self.token_preview.set_busy(text)

    def _mark_rows_changed(self, *_args: Any) -> None:
        self._rows_changed_since_count = True

    def _on_rows_changed(self, top_left: QModelIndex, bottom_right: QModelIndex, *_roles: Any) -> None:
        if top_left.column() <= COMPLETION:
            self._rows_changed_since_count = True
        row = self.current_row()
        if row is not None and top_left.row() <= row <= bottom_right.row() and top_left.column() <= SPLIT:
            self._preview_timer.start()

    # --- split, find and replace -----------------------------------------------------------------------
    def mark_split(self, split: str) -> None:
        """Pin the selected rows to ``"train"`` or ``"validation"``, or let the draw decide (``"auto"``)."""
        dataset = self.project.dataset
        changes = [(r, "split", split) for r in self.selected_rows() if dataset[r].split != split]
        if not changes:
            return
        n = len(changes)
        what = {"validation": "as validation", "train": "as train", "auto": "to be drawn at random"}[split]
        self.undo_stack.push(SetFieldsCommand(dataset, changes, f"Mark {n:,} row{'s' if n != 1 else ''} {what}"))

    @Slot()
    def show_find_replace(self) -> None:
        """Open the Find and Replace window (one per tab; it follows the dataset while open)."""
        from loradesk.ui.find_replace import FindReplaceDialog

        if self._find_dialog is None:
            self._find_dialog = FindReplaceDialog(self.project.dataset, self.undo_stack, self)
            self._find_dialog.show_row.connect(self.show_row)
        needle = self.filter_edit.text().strip()
        if needle and not self._find_dialog.isVisible():
            self._find_dialog.set_find_text(needle)
        self._find_dialog.show()
        self._find_dialog.raise_()
        self._find_dialog.activateWindow()

    @Slot(int)
    def show_row(self, row: int) -> None:
        """Select dataset row ``row`` and scroll to it (clearing a filter that hides it)."""
        if not 0 <= row < len(self.project.dataset):
            return
        if not self.proxy.mapFromSource(self.model.index(row, PROMPT)).isValid():
            self.filter_edit.clear()
            self.problems_only.setChecked(False)
            self._apply_filter()
        self.select_source_rows([row])
        self.view.setFocus()

    # --- housekeeping ----------------------------------------------------------------------------------
    @Slot()
    def _apply_filter(self) -> None:
        self._filter_timer.stop()
        self.proxy.set_filter_text(self.filter_edit.text())

    @Slot()
    def _fit_rows(self) -> None:
        """Fit every row to its text (up to a few lines), unless the file is huge."""
        if self.proxy.rowCount() <= FIT_ROWS_LIMIT:
            self.view.resizeRowsToContents()

    def _fit_new_rows(self, _parent: QModelIndex, first: int, last: int) -> None:
        for row in range(first, last + 1):
            self.view.resizeRowToContents(row)

    def _fit_changed_rows(self, top_left: QModelIndex, bottom_right: QModelIndex, *_roles: Any) -> None:
        if top_left.column() <= COMPLETION:
            for row in range(top_left.row(), bottom_right.row() + 1):
                self.view.resizeRowToContents(row)

    @Slot()
    def _update_actions(self) -> None:
        has_selection = self.view.selectionModel().hasSelection()
        self.act_duplicate.setEnabled(has_selection)
        self.act_delete.setEnabled(has_selection)

    @Slot()
    def _update_summary(self, *_args: Any) -> None:
        rows = self.model.rowCount()
        problems = self.model.problem_row_count()
        parts = [f"{rows:,} row{'s' if rows != 1 else ''}"]
        if self.proxy.is_filtering():
            parts = [f"Showing {self.proxy.rowCount():,} of {rows:,} rows"]
        if problems:
            parts.append(f"<span style='color:#d64545'>{problems:,} row{'s' if problems != 1 else ''} "
                         f"with problems</span>")
        self.summary_label.setText(" · ".join(parts))
        self._update_actions()
        if self._token_setup is not None and self._rows_changed_since_count:
            self._recount_timer.start()
        self.stats_changed.emit(rows, problems)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Wait for the background jobs of the tab (on close)."""
        if self._find_dialog is not None:
            self._find_dialog.shutdown(timeout_ms)
        self._preview_tasks.shutdown(timeout_ms)
        self.checks.shutdown(timeout_ms)
        self.token_counter.shutdown(timeout_ms)

    def current_source_index(self) -> QModelIndex:
        return self.proxy.mapToSource(self.view.currentIndex())
