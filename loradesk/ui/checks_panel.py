"""The Checks panel: what is wrong with the dataset, which rows, and a one-click fix for each.

Checks (:func:`loradesk.core.checks.run_checks`) run in the background a moment after the last edit, on a
snapshot of the row list: in the worker process for a big dataset (its rows sent in chunks, only the
changed ones again), on a thread for a small one. Every dataset or setting change drops the run in
flight (latest request wins) and a fresh run follows. Row lists and fixes are only offered while the
results match the dataset. Each fix is one undo step named after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRect, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLayoutItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QStyleOptionFocusRect,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.checks import CheckResult, Fix, run_checks
from loradesk.core.config import RunConfig
from loradesk.core.dataset import DatasetEvent, Example, compact_row
from loradesk.core.project import ConfigChanged, Project, ProjectEvent, ProjectLoaded
from loradesk.core.wording import plural
from loradesk.ui.answer_starts import AnswerStarts
from loradesk.ui.check_transfer import check_counted_records, check_records_split, join_results, known_counts
from loradesk.ui.jobs import Jobs, TaskState
from loradesk.ui.undo import ConfigCommand, RemoveRowsCommand, push_edits
from loradesk.ui.worker_process import ROWS_CHANNEL

TokenLookup = Callable[[Example], int | None]
#: Every row's token count in row order (-1: unknown), or None when that is not ready (then ``lookup`` serves).
CountsInOrder = Callable[[], "np.ndarray | None"]

COLOURS = {"error": "#d64545", "warning": "#d08a16", "info": "#3b7dd8", "ok": "#2e9d58"}
#: Rows listed on a card; "Select rows" reaches the rest.
PREVIEW_ROWS = 5
DEBOUNCE_MS = 300
#: From this many rows the checks run in the worker process (below, a thread is quicker: no transfer).
PROCESS_ROWS = 2_000
#: Token counts are looked up this many rows at a time (a cancellation point in between).
LOOKUP_CHUNK = 5_000


def check_job(rows: Sequence[Example], lookup: TokenLookup | None, max_length: int, in_process: bool,
              in_order: np.ndarray | None = None, answers: tuple[AnswerStarts, RunConfig] | None = None, *,
              state: TaskState) -> list[CheckResult]:
    """The checks of ``rows`` (a job), the checks run in the worker process when ``in_process`` (their results
    come back a chunk at a time). Token counts are ``in_order`` (every row's, -1: unknown) when given, else
    looked up here with ``lookup``. With ``answers``, the rows longer than ``max_length`` are also asked
    where their first trained token lies (the "nothing left to train" check)."""
    if in_order is not None and lookup is not None:  # no pass over the rows in the window's process
        starts = answers[0].of_rows(rows, np.flatnonzero(in_order > max_length).tolist(), answers[1],
                                    state=state) if answers else None
        if not in_process:
            return run_checks(rows, known_counts(in_order), max_length, starts)
        uploaded = state.upload(rows, compact_row, channel=ROWS_CHANNEL)
        return join_results(*state.in_process_parts(check_counted_records, uploaded, in_order, max_length, starts))
    counts: list[int | None] | None = None
    starts = None
    if lookup is not None:
        counts = []
        for start in range(0, len(rows), LOOKUP_CHUNK):
            state.check()
            counts.extend(lookup(row) for row in rows[start:start + LOOKUP_CHUNK])
        if answers:
            long_rows = [i for i, count in enumerate(counts) if count is not None and count > max_length]
            starts = answers[0].of_rows(rows, long_rows, answers[1], state=state)
    if not in_process:
        return run_checks(rows, counts, max_length if counts is not None else None, starts)
    uploaded = state.upload(rows, compact_row, channel=ROWS_CHANNEL)
    return join_results(*state.in_process_parts(check_records_split, uploaded, counts,
                                                 max_length if counts is not None else None, starts))


def severity_pixmap(kind: str, size: int = 18, ratio: float = 1.0) -> QPixmap:
    """A round badge in the severity colour: "!" for errors and warnings, "i" for notes, a tick for "ok"."""
    pixmap = QPixmap(round(size * ratio), round(size * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(COLOURS[kind]))
    painter.drawEllipse(QRect(0, 0, size, size))
    pen = QPen(QColor("white"), max(1.6, size / 9), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
               Qt.PenJoinStyle.RoundJoin)
    painter.setPen(pen)
    s = float(size)
    if kind == "ok":
        path = QPainterPath(QPointF(s * 0.28, s * 0.52))
        path.lineTo(QPointF(s * 0.44, s * 0.68))
        path.lineTo(QPointF(s * 0.72, s * 0.34))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(path)
    elif kind == "info":
        painter.drawLine(QPointF(s / 2, s * 0.46), QPointF(s / 2, s * 0.72))
        painter.drawPoint(QPointF(s / 2, s * 0.29))
    else:
        painter.drawLine(QPointF(s / 2, s * 0.26), QPointF(s / 2, s * 0.54))
        painter.drawPoint(QPointF(s / 2, s * 0.73))
    painter.end()
    return pixmap


class FlowLayout(QLayout):
    """Lays widgets out left to right and wraps to a new line when the width runs out (for button rows)."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._gap = spacing
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # type: ignore[override]
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # type: ignore[override]
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:
        return self.minimumSize()

    def minimumSize(self) -> QSize:
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        return size

    def _arrange(self, rect: QRect, move: bool) -> int:
        x, y, line = rect.x(), rect.y(), 0
        for item in self._items:
            if item.widget() is not None and item.widget().isHidden():
                continue
            hint = item.sizeHint()
            if line and x + hint.width() > rect.right() + 1:
                x, y, line = rect.x(), y + line + self._gap, 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self._gap
            line = max(line, hint.height())
        return y + line - rect.y()


class RowLink(QWidget):
    """One listed row: "Row 12", its prompt (elided to fit) and a short note; click or Enter shows it."""

    clicked = Signal(int)

    def __init__(self, row: int, prompt: str, note: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.row = row
        flat = " ".join(prompt[:400].split())
        self.prompt = flat or "(empty prompt)"
        self.note = note
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setAttribute(Qt.WidgetAttribute.WA_Hover)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        tip = f"Row {row + 1}: {self.prompt[:300]}"
        self.setToolTip(f"{tip}\n{note}\nClick to show it in the table" if note else f"{tip}\nClick to show it")
        self.setAccessibleName(f"Row {row + 1}")

    def sizeHint(self) -> QSize:
        return QSize(200, self.fontMetrics().height() + 6)

    def minimumSizeHint(self) -> QSize:
        return QSize(80, self.fontMetrics().height() + 6)

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        palette = self.palette()
        rect = self.rect()
        if self.underMouse() and self.isEnabled():
            painter.fillRect(rect, palette.color(QPalette.ColorRole.AlternateBase))
        inner = rect.adjusted(4, 0, -4, 0)
        group = QPalette.ColorGroup.Active if self.isEnabled() else QPalette.ColorGroup.Disabled
        link = QFont(self.font())
        link.setWeight(QFont.Weight.DemiBold)
        label = f"Row {self.row + 1:,}"
        label_width = QFontMetrics(link).horizontalAdvance("Row 00000") + 6
        painter.setFont(link)
        painter.setPen(palette.color(group, QPalette.ColorRole.Link))
        painter.drawText(inner, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, label)
        metrics = self.fontMetrics()
        painter.setFont(self.font())
        left = inner.x() + max(label_width, QFontMetrics(link).horizontalAdvance(label) + 8)
        right = inner.right()
        if self.note:
            note = metrics.elidedText(self.note, Qt.TextElideMode.ElideRight, int(inner.width() * 0.42))
            note_width = metrics.horizontalAdvance(note)
            painter.setPen(palette.color(group, QPalette.ColorRole.PlaceholderText))
            painter.drawText(QRect(right - note_width, inner.y(), note_width, inner.height()),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, note)
            right -= note_width + 10
        text = metrics.elidedText(self.prompt, Qt.TextElideMode.ElideRight, max(0, right - left))
        painter.setPen(palette.color(group, QPalette.ColorRole.WindowText))
        painter.drawText(QRect(left, inner.y(), max(0, right - left), inner.height()),
                         Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
        if self.hasFocus():
            option = QStyleOptionFocusRect()
            option.initFrom(self)
            self.style().drawPrimitive(QStyle.PrimitiveElement.PE_FrameFocusRect, option, painter, self)
        painter.end()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.rect().contains(event.position().toPoint()):
            self.clicked.emit(self.row)
        else:
            super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            self.clicked.emit(self.row)
        else:
            super().keyPressEvent(event)


class CheckCard(QFrame):
    """One check's result: badge, title and row count, message, the first rows, and its buttons."""

    row_clicked = Signal(int)
    rows_requested = Signal(list)
    fix_requested = Signal(object)  # Fix

    def __init__(self, result: CheckResult, prompts: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = result
        self.setObjectName(f"check_{result.key}")
        colour = COLOURS.get(result.severity, COLOURS["info"])
        self.setStyleSheet(f"QFrame#check_{result.key} {{ background: palette(base); border: 1px solid "
                           f"palette(midlight); border-left: 4px solid {colour}; border-radius: 5px; }}")
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

        icon = QLabel()
        icon.setPixmap(severity_pixmap(result.severity, 16, self.devicePixelRatioF()))
        icon.setToolTip(result.severity.capitalize() if result.severity != "info" else "Note")
        title = QLabel(result.title)
        font = QFont(title.font())
        font.setWeight(QFont.Weight.DemiBold)
        title.setFont(font)
        count = QLabel(plural(len(result.rows), "row"))
        count.setObjectName("hintLabel")
        header = QHBoxLayout()
        header.setSpacing(6)
        header.addWidget(icon)
        header.addWidget(title)
        header.addStretch(1)
        header.addWidget(count)

        message = QLabel(result.message)
        message.setWordWrap(True)
        message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 10)
        layout.setSpacing(6)
        layout.addLayout(header)
        layout.addWidget(message)

        self.row_links: list[RowLink] = []
        rows = QVBoxLayout()
        rows.setSpacing(0)
        for n, (row, prompt) in enumerate(zip(result.rows[:PREVIEW_ROWS], prompts, strict=False)):
            link = RowLink(row, prompt, result.notes[n] if n < len(result.notes) else "")
            link.clicked.connect(self.row_clicked)
            self.row_links.append(link)
            rows.addWidget(link)
        layout.addLayout(rows)
        if len(result.rows) > PREVIEW_ROWS:
            more = QLabel(f"… and {len(result.rows) - PREVIEW_ROWS:,} more")
            more.setObjectName("hintLabel")
            more.setContentsMargins(4, 0, 0, 0)
            layout.addWidget(more)

        self.select_button = QPushButton("Select rows" if len(result.rows) != 1 else "Select row")
        self.select_button.setToolTip(f"Select the {plural(len(result.rows), 'row')} in the table")
        self.select_button.clicked.connect(self._on_select)
        self.fix_buttons: list[QPushButton] = []
        buttons = FlowLayout(spacing=6)
        buttons.addWidget(self.select_button)
        for fix in result.fixes:
            button = QPushButton(fix.label)
            button.setToolTip(f"{fix.description}\nOne step: Edit ▸ Undo takes it back.")
            button.clicked.connect(lambda _checked=False, f=fix: self.fix_requested.emit(f))
            self.fix_buttons.append(button)
            buttons.addWidget(button)
        for button in (self.select_button, *self.fix_buttons):
            button.setAutoDefault(False)
        layout.addSpacing(2)
        layout.addLayout(buttons)

    @Slot()
    def _on_select(self) -> None:
        self.rows_requested.emit(list(self.result.rows))

    def set_current(self, current: bool) -> None:
        """Rows and fixes work only while the result matches the dataset."""
        for widget in (self.select_button, *self.fix_buttons, *self.row_links):
            widget.setEnabled(current)


class ChecksPanel(QWidget):
    """Lists the dataset's problems as cards with row links, "Select rows" and one button per fix."""

    show_row = Signal(int)  # a 0-based row the user clicked
    select_rows = Signal(list)  # 0-based rows to select in the table
    checked = Signal()  # a run finished and its results are shown (and current)
    JOB = "checks"

    def __init__(self, project: Project, undo_stack: QUndoStack, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.undo_stack = undo_stack
        self._jobs = Jobs(self)
        self._token_counts: TokenLookup | None = None
        self._counts_in_order: CountsInOrder | None = None
        self._results: list[CheckResult] = []
        self._current = False  # the shown results match the rows and the max length
        self._max_length = project.config.training.max_length
        self._answers = AnswerStarts()  # where long rows' first trained tokens lie (kept across runs)
        self._loss_setup = self._loss_settings()
        self.cards: dict[str, CheckCard] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._start_run)
        self._build()
        for unsubscribe in (project.dataset.subscribe(self._on_dataset_event),
                            project.subscribe(self._on_project_event)):
            self.destroyed.connect(unsubscribe)
        self._changed()

    # --- layout --------------------------------------------------------------------------------------------
    def _build(self) -> None:
        title = QLabel("Checks")
        font = QFont(title.font())
        font.setWeight(QFont.Weight.DemiBold)
        font.setPointSizeF(font.pointSizeF() * 1.1)
        title.setFont(font)
        self.summary_label = QLabel()
        self.summary_label.setObjectName("summaryLabel")
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setTextVisible(False)
        self.busy.setFixedSize(56, 6)
        self.busy.setToolTip("Checking the rows…")
        self.busy.hide()
        header = QHBoxLayout()
        header.setSpacing(8)
        header.addWidget(title)
        header.addWidget(self.summary_label, 1)
        header.addWidget(self.busy)

        self.empty_icon = QLabel()
        self.empty_icon.setPixmap(severity_pixmap("ok", 40, self.devicePixelRatioF()))
        self.empty_icon.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.empty_label = QLabel()
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.empty_label.setWordWrap(True)
        self.empty_hint = QLabel()
        self.empty_hint.setObjectName("hintLabel")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.empty_hint.setWordWrap(True)
        self.empty_state = QWidget()
        empty = QVBoxLayout(self.empty_state)
        empty.setContentsMargins(16, 28, 16, 16)
        empty.setSpacing(8)
        empty.addWidget(self.empty_icon)
        empty.addWidget(self.empty_label)
        empty.addWidget(self.empty_hint)
        self.empty_state.hide()

        self._cards_box = QVBoxLayout()
        self._cards_box.setSpacing(8)
        body = QWidget()
        body.setObjectName("checksBody")
        column = QVBoxLayout(body)
        column.setContentsMargins(0, 0, 4, 0)
        column.addWidget(self.empty_state)
        column.addLayout(self._cards_box)
        column.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidget(body)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addLayout(header)
        layout.addWidget(self.scroll, 1)
        self.summary_label.setText("Checking…")

    # --- public --------------------------------------------------------------------------------------------
    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Wait for a check run in progress (on close)."""
        self._jobs.shutdown(timeout_ms)

    def results(self) -> list[CheckResult]:
        """The results shown now (of the last completed run)."""
        return list(self._results)

    def is_current(self) -> bool:
        """True when the shown results match the dataset and settings as they are now."""
        return self._current

    def set_token_counts(self, lookup: TokenLookup | None, in_order: CountsInOrder | None = None) -> None:
        """Check lengths with ``lookup(row)`` (tokens, or ``None`` when unknown); re-checks.

        The lookup runs on a background thread: it should only read (e.g. ``dict.get`` on a cache).
        ``in_order()``, when given, answers for every row at once (an array kept by the table, copied on the
        GUI thread as a run starts), so no pass over the rows competes with the window for the interpreter.
        Call again whenever new counts are known.
        """
        self._token_counts = lookup
        self._counts_in_order = in_order if lookup is not None else None
        self._changed()

    def card(self, key: str) -> CheckCard | None:
        """The card of check ``key`` ("empty", "duplicate", …), if it found something."""
        return self.cards.get(key)

    # --- change tracking -----------------------------------------------------------------------------------
    def _on_dataset_event(self, _event: DatasetEvent) -> None:
        self._changed()

    def _on_project_event(self, event: ProjectEvent) -> None:
        if isinstance(event, ProjectLoaded) or (isinstance(event, ConfigChanged) and (
                self.project.config.training.max_length != self._max_length
                or self._loss_settings() != self._loss_setup)):
            self._changed()

    def _loss_settings(self) -> tuple[object, ...]:
        """The settings that decide which tokens carry loss (the "nothing left to train" check follows them)."""
        t = self.project.config.training
        return t.completion_only_loss, t.assistant_turns, t.use_chat_template, t.tools_as_text

    def _changed(self) -> None:
        """Rows or settings changed: shown results are stale until the next run (after a short pause)."""
        if self._current:
            for card in self.cards.values():
                card.set_current(False)
        self._current = False
        self._jobs.drop(self.JOB)  # whatever a run in flight still delivers is stale
        self._max_length = self.project.config.training.max_length
        self._loss_setup = self._loss_settings()
        self.busy.show()
        self._timer.start()

    @Slot()
    def _start_run(self) -> None:
        # The tuple copy is all the GUI thread pays (about a millisecond for 100,000 rows). A change after
        # this point drops the run, so results that missed an edit never show.
        rows = self.project.dataset.rows
        counts = self._counts_in_order() if self._counts_in_order is not None else None
        in_order = counts.copy() if counts is not None and len(counts) == len(rows) else None
        self.busy.show()
        answers = (self._answers, RunConfig.from_dict(self.project.config.to_dict())) if self._token_counts else None
        self._jobs.start(check_job, rows, self._token_counts, self._max_length, len(rows) >= PROCESS_ROWS,
                         in_order, answers, key=self.JOB, state=True, on_result=self._on_results,
                         on_error=self._on_failed)

    def _on_results(self, results: list[CheckResult]) -> None:
        self._results = results
        self._current = True
        self._show_results()
        self.busy.hide()
        self.checked.emit()

    def _on_failed(self, message: str, _details: str) -> None:
        self.busy.hide()
        self.summary_label.setText(f"Checks failed: {message}")

    # --- showing -------------------------------------------------------------------------------------------
    def _show_results(self) -> None:
        for card in self.cards.values():
            self._cards_box.removeWidget(card)
            card.deleteLater()
        self.cards = {}
        dataset = self.project.dataset
        total = len(dataset)
        if not self._results:
            self.summary_label.setText(plural(total, "row"))
            if total:
                self.empty_label.setText(f"No problems found in {plural(total, 'row')}")
                lengths = ("Token lengths are checked too." if self._token_counts is not None else
                           "Token lengths are checked once tokens are counted.")
                self.empty_hint.setText("No empty fields, duplicates, control characters, stray whitespace or "
                                        f"overused answers. {lengths}")
            else:
                self.empty_label.setText("No rows to check yet")
                self.empty_hint.setText("Add or import rows; problems show up here as you edit.")
            self.empty_state.show()
            return
        self.empty_state.hide()
        counts = {s: sum(1 for r in self._results if r.severity == s) for s in ("error", "warning", "info")}
        words = {"error": "error", "warning": "warning", "info": "note"}
        parts = [plural(n, words[s]) for s, n in counts.items() if n]
        self.summary_label.setText(f"{' · '.join(parts)} in {plural(total, 'row')}")
        for result in self._results:
            prompts = [dataset[r].prompt for r in result.rows[:PREVIEW_ROWS]]
            card = CheckCard(result, prompts)
            card.row_clicked.connect(self.show_row)
            card.rows_requested.connect(self.select_rows)
            card.fix_requested.connect(self._apply)
            self.cards[result.key] = card
            self._cards_box.addWidget(card)
            card.show()  # now, not at the layout's next pass, so results() and the cards always agree

    # --- fixing --------------------------------------------------------------------------------------------
    @Slot(object)
    def _apply(self, fix: Fix) -> None:
        """Apply ``fix`` as one undo step named after it (only while the results are current)."""
        if not self.is_current():
            return
        project, dataset = self.project, self.project.dataset
        self.undo_stack.beginMacro(fix.label)
        try:
            push_edits(self.undo_stack, dataset, fix.changes, fix.rows, fix.label)
            if fix.remove_rows:
                self.undo_stack.push(RemoveRowsCommand(dataset, fix.remove_rows))
            if fix.max_length is not None:
                data = project.config.to_dict()
                data["training"]["max_length"] = fix.max_length
                self.undo_stack.push(ConfigCommand(project, data, fix.label))
        finally:
            self.undo_stack.endMacro()
