"""Find and Replace: a tool window that counts and previews a replacement across the dataset, then applies it
as one undoable step.

Searching waits for a short pause in typing; a big dataset is searched in the worker process (its rows sent
in chunks, only the changed ones again), and the latest search wins: starting one, or any change to the
fields or the data, drops whatever an older one still delivers.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QFont,
    QFontMetrics,
    QKeySequence,
    QPalette,
    QTextDocument,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.dataset import FIELDS, Dataset, DatasetEvent, Example, compact_row
from loradesk.core.find_replace import (
    NEW,
    OLD,
    FindResult,
    FindSpec,
    Match,
    apply_cells,
    find_matches,
    preview_segments,
    search_records,
)
from loradesk.core.wording import plural
from loradesk.ui.jobs import Jobs, TaskState
from loradesk.ui.undo import push_edits
from loradesk.ui.worker_process import ROWS_CHANNEL

Index = QModelIndex | QPersistentModelIndex

#: How many affected cells the preview lists.
PREVIEW_LIMIT = 500

_OLD_STYLE = "background-color:#fbd9d6; color:#8f1d14; text-decoration:line-through;"
_FIND_STYLE = "background-color:#fbe7a1; color:#4d3b00;"  # a match the replacement leaves as it is
_NEW_STYLE = "background-color:#cdeecb; color:#12501a; font-weight:600;"
_ERROR_STYLE = "color:#d64545;"



FIELD_TIPS = {"prompt": "Find and replace in the prompt column, and in the user and tool turns of conversations",
              "completion": "Find and replace in the completion column, and in the assistant turns of "
                            "conversations (their text and tool-call arguments)",
              "system": "Find and replace in the system prompts"}


def _quote(text: str, limit: int = 30) -> str:
    text = re.sub(r"\s+", " ", text)  # one line, but leading and trailing spaces stay visible
    return f"“{text if len(text) <= limit else text[:limit - 1] + '…'}”"


@dataclass
class SearchOutcome:
    """One finished search: the spec it ran, what it found and the preview segments of ``result.cells``."""

    spec: FindSpec
    result: FindResult
    previews: list[list[tuple[str, str]]] = field(default_factory=list)


def search(rows: Sequence[Example], spec: FindSpec, limit: int = PREVIEW_LIMIT) -> SearchOutcome:
    """Find ``spec`` in ``rows`` and prepare the preview (on the GUI thread: small datasets)."""
    result = find_matches(rows, spec, limit)
    pattern = spec.compile()
    return SearchOutcome(spec, result, [preview_segments(cell.before, spec, pattern=pattern) for cell in result.cells])


def search_in_process(rows: Sequence[Example], spec: FindSpec, limit: int = PREVIEW_LIMIT, *,
                      state: TaskState) -> SearchOutcome:
    """:func:`search` in the worker process (a job: the rows go over in chunks, the changed ones only)."""
    uploaded = state.upload(rows, compact_row, channel=ROWS_CHANNEL)
    (result, previews), changes = state.in_process_parts(search_records, uploaded, spec, limit)
    return SearchOutcome(spec, result.with_changes(changes), previews)


def segments_html(segments: Sequence[tuple[str, str]]) -> str:
    """Preview segments as rich text: removed text struck through in red, new text in green."""
    replaces = any(kind == NEW for kind, _ in segments)
    parts = []
    for kind, piece in segments:
        text = html.escape(piece).replace("\n", "<span style='color:#8a8a8a'>↵</span> ")
        if kind == OLD:
            parts.append(f"<span style='{_OLD_STYLE if replaces else _FIND_STYLE}'>{text}</span>")
        elif kind == NEW:
            parts.append(f"<span style='{_NEW_STYLE}'>{text}</span>")
        else:
            parts.append(text)
    return "".join(parts)


class _Subscription:
    """The dialog's dataset subscription, cancellable from ``destroyed`` (after the dialog's Python side)."""

    def __init__(self) -> None:
        self._cancel: Callable[[], None] | None = None

    @property
    def active(self) -> bool:
        return self._cancel is not None

    def start(self, dataset: Dataset, listener: Callable[[DatasetEvent], None]) -> None:
        if self._cancel is None:
            self._cancel = dataset.subscribe(listener)

    def cancel(self, *_args: Any) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None


_DISPLAY = int(Qt.ItemDataRole.DisplayRole)
_ALIGN = int(Qt.ItemDataRole.TextAlignmentRole)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
_HTML = int(Qt.ItemDataRole.UserRole) + 1
_ROLES = frozenset((_DISPLAY, _ALIGN, _TOOLTIP, _HTML))
_ALIGN_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
_ALIGN_LEFT = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)


class PreviewModel(QAbstractTableModel):
    """The affected cells: Row (1-based), Field, and Before → After as rich text (``HTML_ROLE``)."""

    ROW, FIELD, CHANGE = range(3)
    HTML_ROLE = _HTML
    HEADERS = ("Row", "Field", "Before → After")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cells: list[Match] = []
        self._html: list[str] = []
        self._plain: list[str] = []

    def set_cells(self, cells: Sequence[Match], previews: Sequence[Sequence[tuple[str, str]]]) -> None:
        self.beginResetModel()
        self._cells = list(cells)
        self._html = [segments_html(p) for p in previews]
        self._plain = [_plain_text(p) for p in previews]
        self.endResetModel()

    def cell(self, row: int) -> Match:
        return self._cells[row]

    def plain_text(self, row: int) -> str:
        """Row ``row``'s change as plain text (what the Before → After column shows as rich text)."""
        return self._plain[row]

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._cells)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else 3

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: Index, role: int = _DISPLAY) -> Any:
        if role not in _ROLES or not index.isValid():  # views ask for many roles: answer the rest quickly
            return None
        row, column = index.row(), index.column()
        if role == _DISPLAY:
            cell = self._cells[row]
            if column == self.ROW:
                return str(cell.row + 1)
            return cell.where if column == self.FIELD else self._plain[row]
        if role == _HTML:
            return self._html[row] if column == self.CHANGE else None
        if role == _ALIGN:
            return _ALIGN_RIGHT if column == self.ROW else _ALIGN_LEFT
        return _tooltip(self._cells[row])


def _plain_text(segments: Sequence[tuple[str, str]]) -> str:
    """The preview as plain text, each match in brackets: ``[old→new]`` (``[old]`` when it stays)."""
    out = []
    kinds = [kind for kind, _ in segments] + [""]
    for i, (kind, piece) in enumerate(segments):
        if kind == OLD:
            out.append(f"[{piece}" + ("" if kinds[i + 1] == NEW else "]"))
        elif kind == NEW:
            out.append(f"{'' if i and kinds[i - 1] == OLD else '['}→{piece}]")
        else:
            out.append(piece)
    return "".join(out)


def _tooltip(cell: Match, limit: int = 600) -> str:
    def cut(text: str) -> str:
        return html.escape(text if len(text) <= limit else text[:limit] + "…").replace("\n", "<br>")

    matches = plural(cell.count, "match", "matches")
    where = cell.where if cell.turn is not None else cell.field
    return (f"<b>Row {cell.row + 1}, {where}</b> · {matches}<br><br><b>Before</b><br>{cut(cell.before)}"
            f"<br><br><b>After</b><br>{cut(cell.after)}<br><br><i>Double-click to show the row</i>")


class RichTextDelegate(QStyledItemDelegate):
    """Paints a column's ``PreviewModel.HTML_ROLE`` rich text, wrapped to the column width.

    A row's height (:meth:`row_height`) is measured on its plain text in the bold font (the widest the rich
    text gets), wrapped the same way: laying out 500 rich-text documents to size the rows took 200-300 ms of
    the GUI thread after each search. Heights are remembered per row and width; :meth:`clear` forgets them.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._heights: dict[tuple[int, int], int] = {}

    @Slot()
    def clear(self) -> None:
        self._heights.clear()

    MARGIN = 3

    def _document(self, option: QStyleOptionViewItem, index: Index, width: int) -> QTextDocument:
        doc = QTextDocument()
        doc.setDocumentMargin(self.MARGIN)
        doc.setDefaultFont(option.font)
        doc.setHtml(index.data(PreviewModel.HTML_ROLE) or "")
        doc.setTextWidth(max(40, width))
        return doc

    def paint(self, painter: Any, option: QStyleOptionViewItem, index: Index) -> None:
        if index.data(PreviewModel.HTML_ROLE) is None:
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        doc = self._document(opt, index, opt.rect.width())
        context = QAbstractTextDocumentLayout.PaintContext()
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        context.palette.setColor(QPalette.ColorRole.Text, opt.palette.color(role))
        painter.save()
        painter.translate(opt.rect.topLeft())
        painter.setClipRect(opt.rect.translated(-opt.rect.topLeft()))
        doc.documentLayout().draw(painter, context)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        if index.data(PreviewModel.HTML_ROLE) is None:
            return super().sizeHint(option, index)
        width = option.rect.width()
        view = option.widget
        if isinstance(view, QTableView):
            width = view.columnWidth(index.column())
        width = width if width > 0 else 300
        return QSize(width, self.row_height(index.row(), str(index.data() or ""), option.font, width))

    def row_height(self, row: int, text: str, font: QFont, width: int) -> int:
        """The height that holds row ``row``'s preview (plain ``text``) at column ``width``."""
        key = (row, width)
        if key not in self._heights:
            bold = QFont(font)
            bold.setWeight(QFont.Weight.DemiBold)
            inner = max(40, width) - 2 * self.MARGIN
            box = QFontMetrics(bold).boundingRect(QRect(0, 0, inner, 1_000_000), int(Qt.TextFlag.TextWordWrap),
                                                  text.replace("\n", "↵ "))
            self._heights[key] = box.height() + 2 * self.MARGIN + 2
        return self._heights[key]


def _empty_text(spec: FindSpec, error: bool) -> str:
    """What the empty preview says: how to read it, or why nothing was found."""
    if error:
        return ("Fix the pattern to see the matches, or turn off Regular expression to find the text as typed."
                if spec.regex else "")
    if not spec.text or not spec.fields:
        return ("Every cell that contains the text is listed here, with the change marked: "
                "removed text in red, new text in green.")
    hints = []
    strict = [name for name, on in (("Match case", spec.case_sensitive), ("Whole words", spec.whole_word)) if on]
    if strict:
        hints.append(f"Try without {' or '.join(strict)}.")
    if len(spec.fields) < len(FIELDS):
        hints.append(f"Only {' and '.join(f.capitalize() for f in spec.fields)} "
                     f"{'is' if len(spec.fields) == 1 else 'are'} searched.")
    return " ".join([f"No cell contains {_quote(spec.text)}.", *hints])


class FindReplaceDialog(QDialog):
    """Find and replace across the dataset (non-modal). ``show_row(row)`` asks to show a 0-based dataset row."""

    show_row = Signal(int)
    #: The count shown after each search: matches, rows.
    searched = Signal(int, int)

    #: Up to this many rows a search runs right away on the GUI thread (it takes a few milliseconds).
    SYNC_ROWS = 5000
    JOB = "find"
    DEBOUNCE_MS = 200

    def __init__(self, dataset: Dataset, undo_stack: QUndoStack, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dataset = dataset
        self.undo_stack = undo_stack
        self.setWindowTitle("Find and Replace")
        self.setModal(False)  # a window of its own next to the table; with a parent it stays above it
        self._outcome: SearchOutcome | None = None  # the shown search, while it matches the fields and data
        self._jobs = Jobs(self)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.DEBOUNCE_MS)
        self._timer.timeout.connect(self.search_now)
        self._subscription = _Subscription()
        self.destroyed.connect(self._subscription.cancel)
        self._build()
        self.resize(480, 560)

    # --- layout ----------------------------------------------------------------------------------------
    def _build(self) -> None:
        form, options, fields = self._build_search_fields()
        self._build_preview()
        buttons = self._build_buttons()
        layout = QVBoxLayout(self)
        layout.setSpacing(8)
        layout.addLayout(form)
        layout.addLayout(options)
        layout.addLayout(fields)
        layout.addSpacing(2)
        layout.addWidget(self.count_label)
        layout.addWidget(self.preview_stack, 1)
        layout.addWidget(self.more_label)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)

        # Ctrl+Z / Ctrl+Shift+Z here too, so a replacement can be taken back without leaving the dialog
        # (a focused text field keeps the keys for its own text).
        self.undo_action = self.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcuts(QKeySequence.keyBindings(QKeySequence.StandardKey.Undo))
        self.redo_action = self.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts(QKeySequence.keyBindings(QKeySequence.StandardKey.Redo))
        self.addActions([self.undo_action, self.redo_action])

        for edit in (self.find_edit, self.replace_edit):
            edit.textChanged.connect(self._on_spec_changed)
            edit.returnPressed.connect(self.search_now)
        for box in (self.case_box, self.word_box, self.regex_box, self.keep_case_box, *self.field_boxes.values()):
            box.toggled.connect(self._on_spec_changed)
        self.replace_button.clicked.connect(self.replace_selected)
        self.replace_all_button.clicked.connect(self.replace_all)
        self.close_button.clicked.connect(self.close)
        self._show_message("Type the text to find", hint=True)
        self._update_buttons()

    def _build_search_fields(self) -> tuple[QFormLayout, QGridLayout, QHBoxLayout]:
        """Find and Replace fields, the match options and the columns to search."""
        self.find_edit = QLineEdit()
        self.find_edit.setPlaceholderText("Text to find, e.g. a name")
        self.find_edit.setClearButtonEnabled(True)
        self.replace_edit = QLineEdit()
        self.replace_edit.setPlaceholderText("Replace with (empty removes the matches)")
        self.replace_edit.setClearButtonEnabled(True)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Fi&nd:", self.find_edit)
        form.addRow("Re&place:", self.replace_edit)

        self.case_box = QCheckBox("Match &case")
        self.case_box.setToolTip("Only find text with exactly this capitalisation")
        self.word_box = QCheckBox("&Whole words")
        self.word_box.setToolTip("Skip matches joined to more letters or digits: “Tamsin” finds “Tamsin's” "
                                 "but not “Tamsins”")
        self.regex_box = QCheckBox("Regular e&xpression")
        self.regex_box.setToolTip("Find a Python regular expression (^ and $ match at every line); the "
                                  "replacement can use groups: \\1 or \\g<name>")
        self.keep_case_box = QCheckBox("&Keep capitalisation")
        self.keep_case_box.setToolTip("Give each replacement the capitalisation of the text it replaces: "
                                      "TAMSIN → MIRA, Tamsin → Mira, tamsin → mira")
        options = QGridLayout()
        options.setHorizontalSpacing(16)
        options.addWidget(self.case_box, 0, 0)
        options.addWidget(self.word_box, 0, 1)
        options.addWidget(self.regex_box, 1, 0)
        options.addWidget(self.keep_case_box, 1, 1)
        options.setColumnStretch(2, 1)

        self.field_boxes: dict[str, QCheckBox] = {}
        fields = QHBoxLayout()
        fields.setSpacing(12)
        fields.addWidget(QLabel("Search in:"))
        for name in FIELDS:
            box = QCheckBox(name.capitalize())
            box.setChecked(True)
            box.setToolTip(FIELD_TIPS[name])
            self.field_boxes[name] = box
            fields.addWidget(box)
        fields.addStretch(1)
        return form, options, fields

    def _build_preview(self) -> None:
        """The count, the table of affected cells (or a hint when there are none) and the notes below it."""
        self.count_label = QLabel()
        self.count_label.setObjectName("findCount")
        font = QFont(self.count_label.font())
        font.setWeight(QFont.Weight.DemiBold)
        self.count_label.setFont(font)
        self.count_label.setWordWrap(True)
        self.count_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.model = PreviewModel(self)
        self.preview = QTableView()
        self.preview.setObjectName("findPreview")
        self.preview.setModel(self.model)
        self._delegate = RichTextDelegate(self.preview)
        self.preview.setItemDelegateForColumn(PreviewModel.CHANGE, self._delegate)
        self.model.modelAboutToBeReset.connect(self._delegate.clear)
        self.preview.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.preview.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.preview.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.preview.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.preview.setAlternatingRowColors(True)
        self.preview.setShowGrid(False)
        self.preview.setWordWrap(True)
        self.preview.verticalHeader().hide()
        # Row heights are set by _fit_row_heights: ResizeToContents asked every cell of 500 rows for its size
        # hint through Python after each search (~100 ms more of the GUI thread).
        self.preview.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self._heights_timer = QTimer(self)
        self._heights_timer.setSingleShot(True)
        self._heights_timer.setInterval(0)
        self._heights_timer.timeout.connect(self._fit_row_heights)
        header = self.preview.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        # Fixed widths (measuring 500 rows after every search would be slow); Row follows the largest number.
        header.setSectionResizeMode(PreviewModel.ROW, QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(PreviewModel.FIELD, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(PreviewModel.FIELD, self.preview.fontMetrics().horizontalAdvance("Completion") + 16)
        self._fit_row_column(1)
        header.setSectionResizeMode(PreviewModel.CHANGE, QHeaderView.ResizeMode.Stretch)
        header.sectionResized.connect(lambda column, *_: column == PreviewModel.CHANGE and self._heights_timer.start())
        self.preview.activated.connect(self._on_activated)
        self.preview.selectionModel().selectionChanged.connect(self._update_buttons)

        self.empty_label = QLabel()
        self.empty_label.setObjectName("hintLabel")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setMargin(24)
        self.empty_label.setFrameShape(QFrame.Shape.StyledPanel)
        self.preview_stack = QStackedWidget()
        self.preview_stack.addWidget(self.preview)
        self.preview_stack.addWidget(self.empty_label)

        self.more_label = QLabel()
        self.more_label.setObjectName("hintLabel")
        self.more_label.hide()
        self.status_label = QLabel()
        self.status_label.setObjectName("hintLabel")
        self.status_label.setWordWrap(True)
        self.status_label.hide()

    def _build_buttons(self) -> QHBoxLayout:
        self.replace_button = QPushButton("Replace &Selected")
        self.replace_button.setToolTip("Replace only in the cells selected in the preview")
        self.replace_all_button = QPushButton("Replace &All")
        self.replace_all_button.setToolTip("Replace every match in one step (Edit ▸ Undo takes it back)")
        self.close_button = QPushButton("Close")
        for button in (self.replace_button, self.replace_all_button, self.close_button):
            button.setAutoDefault(False)
            button.setDefault(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.replace_button)
        buttons.addStretch(1)
        buttons.addWidget(self.replace_all_button)
        buttons.addWidget(self.close_button)
        return buttons

    # --- public ----------------------------------------------------------------------------------------
    def spec(self) -> FindSpec:
        """What the dialog's fields and options ask for."""
        return FindSpec(
            text=self.find_edit.text(), replacement=self.replace_edit.text(),
            fields=tuple(name for name, box in self.field_boxes.items() if box.isChecked()),
            case_sensitive=self.case_box.isChecked(), whole_word=self.word_box.isChecked(),
            regex=self.regex_box.isChecked(), preserve_case=self.keep_case_box.isChecked())

    def set_find_text(self, text: str) -> None:
        """Put ``text`` (e.g. the table's selected text) in the Find field, selected, and focus it."""
        self.find_edit.setText(text)
        self.find_edit.selectAll()
        self.find_edit.setFocus()

    def is_searching(self) -> bool:
        """True while a search is waiting for a pause in typing or running in the background."""
        return self._timer.isActive() or self._jobs.busy(self.JOB)

    @Slot()
    def search_now(self) -> None:
        """Search right away with the current fields (the debounce timer calls this)."""
        self._timer.stop()
        if self._outcome is not None or self._jobs.busy(self.JOB):
            return  # the shown result is current, or the search for exactly this is running
        spec = self.spec()
        if not spec.text:
            self._finish(SearchOutcome(spec, FindResult()), "Type the text to find", hint=True)
            return
        if not spec.fields:
            self._finish(SearchOutcome(spec, FindResult()),
                         "Tick at least one of Prompt, Completion or System to search in", hint=True)
            return
        try:
            spec.compile()
        except ValueError as exc:
            self._finish(SearchOutcome(spec, FindResult()), str(exc), error=True)
            return
        rows = self.dataset.rows  # a snapshot: a later edit drops this search and starts a newer one
        if len(rows) <= self.SYNC_ROWS:
            self._show(search(rows, spec))
            return
        self._show_message(f"Searching {len(rows):,} rows…", hint=True)
        self._jobs.start(search_in_process, rows, spec, key=self.JOB, state=True, on_result=self._show,
                         on_error=self._on_error)

    @Slot()
    def replace_all(self) -> None:
        """Replace every match as one undoable step."""
        outcome = self._current()
        if outcome is None:
            return
        changes, row_changes = outcome.result.changes(), outcome.result.row_changes()
        if not changes and not row_changes:
            return
        spec, result = outcome.spec, outcome.result
        push_edits(self.undo_stack, self.dataset, changes, row_changes, f"{self._action(spec)} ({result.matches:,})")
        rows = len({row for row, _, _ in changes}) + len(row_changes)
        self._show_status(f"Replaced {plural(result.matches, 'match', 'matches')} in {plural(rows, 'row')}. "
                          "Undo (Ctrl+Z) brings them back.")

    @Slot()
    def replace_selected(self) -> None:
        """Replace the matches in the cells selected in the preview (one undoable step)."""
        outcome = self._current()
        if outcome is None:
            return
        cells = [self.model.cell(i.row()) for i in self.preview.selectionModel().selectedRows()]
        cells = [c for c in cells if c.after != c.before]
        if not cells:
            return
        cells.sort(key=lambda c: (c.row, FIELDS.index(c.field)))
        where = f"in row {cells[0].row + 1}" if len(cells) == 1 else f"in {len(cells)} cells"
        matches = sum(c.count for c in cells)
        in_turns: dict[int, list[Match]] = {}
        for c in cells:
            if self.dataset[c.row].turns:
                in_turns.setdefault(c.row, []).append(c)
        push_edits(self.undo_stack, self.dataset, [(c.row, c.field, c.after) for c in cells if c.row not in in_turns],
                   [(row, apply_cells(self.dataset[row], found)) for row, found in in_turns.items()],
                   f"{self._action(outcome.spec)} {where} ({matches:,})")
        self._show_status(f"Replaced {plural(matches, 'match', 'matches')} {where}.")

    # --- events ----------------------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._subscription.active:
            self._subscription.start(self.dataset, self._on_dataset_event)
            self._invalidate(delay_ms=0)  # the data may have changed while the dialog was hidden

    def hideEvent(self, event: Any) -> None:
        super().hideEvent(event)
        self._subscription.cancel()
        self._timer.stop()
        self._jobs.drop(self.JOB)
        self._outcome = None

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop a running search and wait for it (on quit)."""
        self._subscription.cancel()
        self._jobs.drop(self.JOB)
        return self._jobs.shutdown(timeout_ms)

    # --- searching -------------------------------------------------------------------------------------
    def _on_dataset_event(self, _event: DatasetEvent) -> None:
        self._invalidate()

    @Slot()
    def _on_spec_changed(self) -> None:
        self.status_label.hide()
        self._invalidate()

    def _invalidate(self, delay_ms: int | None = None) -> None:
        """The shown result no longer matches the fields or the data: search again after a pause."""
        self._outcome = None
        self._jobs.drop(self.JOB)  # whatever a running search still delivers is stale
        self._update_buttons()
        self._timer.start(self.DEBOUNCE_MS if delay_ms is None else delay_ms)

    def _current(self) -> SearchOutcome | None:
        return self._outcome

    def _on_error(self, message: str, _details: str) -> None:
        self._finish(SearchOutcome(self.spec(), FindResult()), f"Search failed: {message}", error=True)

    # --- showing ---------------------------------------------------------------------------------------
    def _show(self, outcome: SearchOutcome) -> None:
        result = outcome.result
        if result.matches == 0:
            text = "No matches"
        else:
            text = f"{plural(result.matches, 'match', 'matches')} in {plural(len(result.rows), 'row')}"
            if not result.change_count:
                text += " · the replacement changes nothing"
        self._finish(outcome, text, hint=result.matches == 0)

    def _finish(self, outcome: SearchOutcome, message: str, hint: bool = False, error: bool = False) -> None:
        self._outcome = outcome
        self.model.set_cells(outcome.result.cells, outcome.previews)
        self._fit_row_heights()
        more = outcome.result.more
        self.more_label.setText(f"and {plural(more, 'more cell')} (Replace All changes them too)")
        self.more_label.setVisible(more > 0)
        self._show_message(message, hint=hint, error=error)
        self._fit_row_column(outcome.result.cells[-1].row + 1 if outcome.result.cells else 1)
        widest = "Turn 10 (assistant)" if any(c.turn is not None for c in outcome.result.cells) else "Completion"
        self.preview.horizontalHeader().resizeSection(
            PreviewModel.FIELD, self.preview.fontMetrics().horizontalAdvance(widest) + 16)
        self.empty_label.setText(_empty_text(outcome.spec, error))
        self.preview_stack.setCurrentWidget(self.preview if outcome.result.cells else self.empty_label)
        self._update_buttons()
        self.searched.emit(outcome.result.matches, len(outcome.result.rows))

    def _show_message(self, text: str, hint: bool = False, error: bool = False) -> None:
        self.count_label.setText(text)
        self.count_label.setStyleSheet(_ERROR_STYLE if error else "color: palette(placeholder-text);" if hint else "")

    def _show_status(self, text: str) -> None:
        self.status_label.setText(text)
        self.status_label.show()

    @Slot()
    def _fit_row_heights(self) -> None:
        """Each preview row as tall as its text wrapped in the Before → After column."""
        width = self.preview.columnWidth(PreviewModel.CHANGE)
        width = width if width > 0 else 300
        font, model, delegate = self.preview.font(), self.model, self._delegate
        for row in range(model.rowCount()):
            self.preview.setRowHeight(row, delegate.row_height(row, model.plain_text(row), font, width))

    def _fit_row_column(self, largest: int) -> None:
        metrics = self.preview.fontMetrics()
        width = max(metrics.horizontalAdvance("Row"), metrics.horizontalAdvance(str(largest))) + 16
        self.preview.horizontalHeader().resizeSection(PreviewModel.ROW, width)

    @Slot()
    def _update_buttons(self) -> None:
        outcome = self._current()
        changes = outcome is not None and outcome.result.change_count > 0
        self.replace_all_button.setEnabled(changes)
        selected = self.preview.selectionModel().selectedRows() if outcome is not None else []
        self.replace_button.setEnabled(any(self.model.cell(i.row()).after != self.model.cell(i.row()).before
                                           for i in selected))

    @Slot(QModelIndex)
    def _on_activated(self, index: QModelIndex) -> None:
        if index.isValid():
            self.show_row.emit(self.model.cell(index.row()).row)

    @staticmethod
    def _action(spec: FindSpec) -> str:
        if not spec.replacement:
            return f"Remove {_quote(spec.text)}"
        return f"Replace {_quote(spec.text)} with {_quote(spec.replacement)}"
