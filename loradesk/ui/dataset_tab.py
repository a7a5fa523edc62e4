"""The Dataset tab: the editable prompt/completion table, its filter box and row actions.

The tab puts together named parts: :class:`~loradesk.ui.dataset_toolbar.DatasetToolbar` (buttons and the
filter), :class:`~loradesk.ui.dataset_view.DatasetTableView` (the table and its selection),
:class:`~loradesk.ui.row_actions.RowActions` (add, duplicate, delete, split, find and replace) and
:class:`~loradesk.ui.row_preview.RowPreview` (the current row token by token), with the lengths histogram
and the checks beside the preview.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.project import ConfigChanged, Project, ProjectEvent, ProjectLoaded
from loradesk.core.wording import plural
from loradesk.ui.dataset_model import COMPLETION, SPLIT, DatasetFilterProxy, DatasetTableModel
from loradesk.ui.dataset_toolbar import DatasetToolbar
from loradesk.ui.dataset_view import DatasetTableView
from loradesk.ui.import_notes import ImportNotes
from loradesk.ui.row_actions import RowActions
from loradesk.ui.row_preview import RowPreview
from loradesk.ui.token_counter import TokenCounter


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
        self.model = DatasetTableModel(project.dataset, undo_stack, self)
        self.proxy = DatasetFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.token_counter = TokenCounter(self)
        self._token_setup: str | None = None  # the model/template the known counts belong to
        self._build()
        self.row_actions = actions = RowActions(self)
        self.act_add, self.act_duplicate, self.act_delete = actions.act_add, actions.act_duplicate, actions.act_delete
        self.act_find, self.act_replace = actions.act_find, actions.act_replace
        self.act_mark_validation, self.act_mark_train = actions.act_mark_validation, actions.act_mark_train
        self.act_mark_auto = actions.act_mark_auto
        self.preview = RowPreview(project, self.token_preview, self.current_row,
                                  lambda: self._tokens_wanted, self)
        self._connect()
        self._unsubscribe = project.subscribe(self._on_project_event)
        self.destroyed.connect(self._unsubscribe)
        self.model.set_max_length(project.config.training.max_length)
        self.model.set_split_policy(project.config.training.validation_fraction, project.config.training.seed)
        self._update_summary()
        self._request_preview()

    # --- layout ----------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.toolbar = DatasetToolbar()
        self.view = DatasetTableView(self.model, self.proxy)
        self.import_notes = ImportNotes()  # what the last import skipped or did not use
        table = QWidget()
        table_layout = QVBoxLayout(table)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.setSpacing(6)
        table_layout.addWidget(self.import_notes)
        table_layout.addWidget(self.toolbar)
        table_layout.addWidget(self.view, 1)
        table_layout.addLayout(self._build_footer())
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
        self.splitter.setSizes([500, self.fontMetrics().lineSpacing() * 20])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

    def _build_footer(self) -> QHBoxLayout:
        """The row summary on the left, the token statistics' label and progress bar on the right."""
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
        return footer

    def _build_inspector(self) -> None:
        """The panel under the table: the current row token by token, the token lengths, and the checks."""
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

    def _connect(self) -> None:
        """Wire the parts: filter, footer, recount, preview and the inspector's links back to the table."""
        self.toolbar.filter_edited.connect(self.proxy.set_filter_text)
        self.toolbar.problems_only.toggled.connect(self.proxy.set_problems_only)
        self.count_button.clicked.connect(self.count_tokens)
        # Many changes can arrive in one go (a filter, a bulk fix): the footer is updated once, afterwards.
        self._summary_timer = self._single_shot(0, self._update_summary)
        for signal in (self.model.summary_changed, self.proxy.rowsInserted, self.proxy.rowsRemoved,
                       self.proxy.modelReset, self.proxy.layoutChanged):
            signal.connect(self._summary_timer.start)
        self._recount_timer = self._single_shot(1500, self._recount_missing)
        self.view.selectionModel().currentRowChanged.connect(self.preview.request)
        self.model.dataChanged.connect(self._on_rows_changed)
        self.model.lengths_changed.connect(self._on_lengths_changed)
        for signal in (self.model.rowsInserted, self.model.modelReset):
            signal.connect(self._mark_rows_changed)
        self.checks.select_rows.connect(self.select_source_rows)
        self.checks.show_row.connect(self.show_row)
        self.checks.checked.connect(self._update_checks_title)
        self.length_histogram.range_clicked.connect(self.select_length_range)

    def _single_shot(self, interval_ms: int, slot: Callable[[], None]) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(interval_ms)
        timer.timeout.connect(slot)
        return timer

    # --- the parts, as the window, the checks and the tests reach them ------------------------------------
    @property
    def filter_edit(self) -> QLineEdit:
        return self.toolbar.filter_edit

    @property
    def problems_only(self) -> QCheckBox:
        return self.toolbar.problems_only

    @property
    def count_button(self) -> QPushButton:
        return self.toolbar.count_button

    def selected_rows(self) -> list[int]:
        """Selected dataset rows, in order."""
        return self.view.selected_rows()

    def current_row(self) -> int | None:
        """The dataset row of the current cell, if any."""
        return self.view.current_row()

    def select_source_rows(self, rows: list[int]) -> None:
        """Select whole rows (dataset numbering), make the first current and scroll to it."""
        self.view.select_source_rows(rows)

    @Slot(int)
    def show_row(self, row: int) -> None:
        """Select dataset row ``row`` and scroll to it (clearing a filter that hides it)."""
        if not 0 <= row < len(self.project.dataset):
            return
        if not self.view.shows_row(row):
            self.toolbar.clear_filter()
        self.select_source_rows([row])
        self.view.setFocus()

    @Slot()
    def focus_filter(self) -> None:
        self.toolbar.focus_filter()

    @Slot()
    def _apply_filter(self) -> None:
        """Apply the filter box's text now, without waiting for typing to pause."""
        self.toolbar.apply_filter_now()

    # the row actions (the main window lists the actions in its Edit menu)
    def add_row(self) -> None:
        self.row_actions.add_row()

    def duplicate_rows(self) -> None:
        self.row_actions.duplicate_rows()

    def delete_rows(self) -> None:
        self.row_actions.delete_rows()

    def mark_split(self, split: str) -> None:
        self.row_actions.mark_split(split)

    def show_find_replace(self) -> None:
        self.row_actions.show_find_replace()


    # --- token counts ----------------------------------------------------------------------------------
    def _token_setup_key(self) -> str:
        config = self.project.config
        return repr((sorted(config.model.to_dict().items()), config.training.use_chat_template,
                     config.training.tools_as_text))

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
        self.token_label.setText(f"{plural(too_long, 'row')} over the max length of {limit:,} tokens" if too_long
                                 else f"All rows fit in {limit:,} tokens")
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
            self.preview.request()
        if isinstance(event, ProjectLoaded):
            self.filter_edit.clear()
            self.import_notes.clear()

    def _update_lengths(self) -> None:
        """Redraw the histogram from the known counts; hand the counts to the checks."""
        self.checks.set_token_counts(self.model.token_count if self.model.has_token_counts() else None,
                                     self.model.counts_in_row_order)
        if not self.model.has_token_counts():
            self.length_histogram.clear()
            return
        self.length_histogram.set_counts(self.model.known_counts(), self.project.config.training.max_length)

    @Slot()
    def _on_lengths_changed(self) -> None:
        """Every row's count is known again (new counts arrived, or the rows were replaced)."""
        self._update_lengths()
        self._update_token_label()

    @Slot(int, int)
    def select_length_range(self, low: int, high: int) -> None:
        """Select the rows whose token count is in ``low..high`` (a bar of the histogram)."""
        rows = self.model.rows_with_counts_between(low, high)
        self.select_source_rows(rows)
        span = plural(low, "token") if low == high else f"{low:,}–{high:,} tokens"
        self.token_label.setText(f"Selected {plural(len(rows), 'row')} of {span}")

    @Slot()
    def _update_checks_title(self) -> None:
        found = sum(1 for r in self.checks.results() if r.severity != "info")
        index = self.inspector.indexOf(self.checks)
        self.inspector.setTabText(index, f"Checks ({found})" if found else "Checks")

    # --- what the model sees ---------------------------------------------------------------------------
    @Slot()
    def _request_preview(self) -> None:
        """Show the current row token by token now (see :class:`~loradesk.ui.row_preview.RowPreview`)."""
        self.preview.refresh()

    def _mark_rows_changed(self, *_args: Any) -> None:
        self._rows_changed_since_count = True

    def _on_rows_changed(self, top_left: QModelIndex, bottom_right: QModelIndex, *_roles: Any) -> None:
        if top_left.column() <= COMPLETION:
            self._rows_changed_since_count = True
        row = self.current_row()
        if row is not None and top_left.row() <= row <= bottom_right.row() and top_left.column() <= SPLIT:
            self.preview.request()

    # --- housekeeping ----------------------------------------------------------------------------------
    @Slot()
    def _update_summary(self, *_args: Any) -> None:
        rows = self.model.rowCount()
        problems = self.model.problem_row_count()
        parts = [plural(rows, "row")]
        if self.proxy.is_filtering():
            parts = [f"Showing {self.proxy.rowCount():,} of {plural(rows, 'row')}"]
        if problems:
            parts.append(f"<span style='color:#d64545'>{plural(problems, 'row')} with problems</span>")
        self.summary_label.setText(" · ".join(parts))
        self.row_actions.update_enabled()
        if self._token_setup is not None and self._rows_changed_since_count:
            self._recount_timer.start()
        self.stats_changed.emit(rows, problems)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Wait for the background jobs of the tab (on close)."""
        self.row_actions.shutdown(timeout_ms)
        self.preview.shutdown(timeout_ms)
        self.checks.shutdown(timeout_ms)
        self.token_counter.shutdown(timeout_ms)
