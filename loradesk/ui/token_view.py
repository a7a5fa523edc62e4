"""What the model sees of a row, token by token, and the token lengths of all rows against the max length.

:class:`TokenPreview` shows one row's exact training text (after the chat template) with the tokens that
carry no loss, those that are trained and those cut by the max length in different colours.
:class:`LengthHistogram` shows every row's token count with the cutoff drawn on it. :func:`explain_row`
is the background half of the preview.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QPointF, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QColor, QCursor, QGuiApplication, QPalette, QTextDocumentFragment
from PySide6.QtWidgets import (
    QLabel,
    QProgressBar,
    QStackedLayout,
    QTextBrowser,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.config import ModelSettings
from loradesk.core.dataset import Example
from loradesk.core.tokenize import Explained, TokenPiece
from loradesk.core.wording import plural
from loradesk.ui.plots import SMOOTH_COLOR

PROMPT_HUE = "#6f8fb3"  # no loss: prompt and template (grey-blue)
TRAINED_HUE = "#3f9c4f"  # trained: the completion and its EOS (green)
CUT_HUE = "#d64545"  # beyond the max length (red, as the field error messages)
BAR_COLOR = SMOOTH_COLOR
OVER_COLOR = CUT_HUE
MAX_KEPT_SHOWN = 5000  # a preview of more tokens than this gets slow to lay out; the rest is summarised
MAX_CUT_SHOWN = 1000
TARGET_BINS = 48  # at most about this many bars over the rows' own range ...
MIN_BIN_SHARE = 1 / 100  # ... and no bar narrower than this share of the visible axis


#: (model folder, worker process) pairs whose tokenizer the worker process has loaded.
_LOADED: set[tuple[str, int]] = set()


def explain_row(settings: ModelSettings, use_chat_template: bool, completion_only: bool, max_length: int,
                example: Example, progress: Callable[[str, float | None], None], assistant_turns: str = "all",
                tools_as_text: bool = False) -> Explained:
    """One row token by token under the current settings (on a background thread; the tokenizing runs in the
    worker process, which keeps the tokenizer loaded, so the window never loads the ML stack for it). The row
    goes there as it is (a frozen dataclass: a conversation's turns travel with it)."""
    from loradesk.core import models
    from loradesk.core.tokenize import explain_record
    from loradesk.ui import jobs

    model_dir = str(models.resolve_model(settings, progress=progress))  # the first time: a conversion
    pool = jobs.process_pool()
    key = (model_dir, jobs.pool_generation())
    if key not in _LOADED:
        progress("Loading the tokenizer…", None)
    result = pool.submit(explain_record, model_dir, settings.trust_remote_code, example, max_length,
                         completion_only=completion_only, use_chat_template=use_chat_template,
                         assistant_turns=assistant_turns, tools_as_text=tools_as_text).result()
    _LOADED.add(key)
    return result


def _mix(base: QColor, hue: str, amount: float) -> QColor:
    """``base`` moved ``amount`` (0..1) of the way towards ``hue``."""
    tint = QColor(hue)
    return QColor.fromRgbF(*(b + (t - b) * amount for b, t in ((base.redF(), tint.redF()),
                                                                (base.greenF(), tint.greenF()),
                                                                (base.blueF(), tint.blueF()))))



def _visible(text: str, dim: str) -> str:
    """HTML for a token's text with its whitespace made visible: a new line as ↵ and a real line break, a
    tab as →, spaces as a light · (except the one space that starts a word token: its shade shows it)."""
    if not text:  # a later byte of a character split over several tokens
        return f'<span style="color:{dim}">◌</span>'
    out = []
    for i, ch in enumerate(text):
        if ch == "\n":
            out.append(f'<span style="color:{dim}">↵</span><br/>')
        elif ch == "\t":
            out.append(f'<span style="color:{dim}">→</span>')
        elif ch == "\r":
            out.append(f'<span style="color:{dim}">␍</span>')
        elif ch == " " and not (i == 0 and len(text) > 1 and not text[1].isspace()):
            out.append(f'<span style="color:{dim}">·</span>')
        else:
            out.append(html.escape(ch))
    return "".join(out)


def turn_name(piece: TokenPiece) -> str:
    """Which part of a conversation a token belongs to: ``"user turn 1"``, ``"system prompt"``, ``"template"``."""
    if piece.turn >= 0:
        return f"{piece.role} turn {piece.turn + 1}"
    return "system prompt" if piece.role == "system" else "template"


def describe_piece(piece: TokenPiece, index: int, total: int, conversation: bool = False) -> str:
    """One line about a token: its position, id, exact text and role (and its turn, in a conversation)."""
    role = "cut by the max length" if piece.cut else "trained" if piece.trained else "no loss"
    kind = "special token, " if piece.special else ""
    text = repr(piece.text) if piece.text else "part of the character before"
    where = f" · {turn_name(piece)}" if conversation else ""
    return f"Token {index + 1:,} of {total:,} · id {piece.token_id} · {text}{where} · {kind}{role}"


class TokenPreview(QWidget):
    """A row's training text as the model sees it: no-loss, trained and cut tokens in their own colours."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._explained: Explained | None = None
        self._row: int | None = None
        self._clicked: int | None = None

        self.header = QLabel()
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setTextVisible(False)
        self.busy_bar.setMaximumHeight(4)
        self.busy_bar.hide()
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.browser = QTextBrowser()
        self.browser.setOpenLinks(False)
        self.browser.setReadOnly(True)
        self.browser.setMinimumHeight(120)
        self.browser.setToolTip("")
        self.browser.anchorClicked.connect(self._on_anchor_clicked)
        self.browser.highlighted.connect(self._on_highlighted)
        self.browser.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.browser.customContextMenuRequested.connect(self._context_menu)
        self.detail = QLabel()
        self.detail.setObjectName("hintLabel")
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.header)
        layout.addWidget(self.busy_bar)
        layout.addWidget(self.legend)
        layout.addWidget(self.browser, 1)
        layout.addWidget(self.detail)
        self._update_colors()
        self.show_message("Select a row to see the text the model is trained on.")

    # --- colours -------------------------------------------------------------------------------------
    def _update_colors(self) -> None:
        palette = self.palette()
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        dark = base.lightness() < 128
        near, far = (0.28, 0.48) if dark else (0.13, 0.32)
        self._shades = {
            "prompt": (_mix(base, PROMPT_HUE, near).name(), _mix(base, PROMPT_HUE, far).name()),
            "trained": (_mix(base, TRAINED_HUE, near).name(), _mix(base, TRAINED_HUE, far).name()),
            "cut": (_mix(base, CUT_HUE, near).name(), _mix(base, CUT_HUE, far).name()),
        }
        self._text = text.name()
        self._cut_text = _mix(text, CUT_HUE, 0.45).name()
        self._dim = _mix(text, base.name(), 0.55).name()
        self.legend.setText(self._legend_html())
        if self._explained is not None:
            self.show_explained(self._explained, self._row)

    def changeEvent(self, event: Any) -> None:
        super().changeEvent(event)
        if event.type() == event.Type.PaletteChange:
            self._update_colors()

    def _chip(self, label: str, role: str, struck: bool = False) -> str:
        deco = "line-through" if struck else "none"
        color = self._cut_text if role == "cut" else self._text
        return (f'<span style="background-color:{self._shades[role][0]}; color:{color}; '
                f'text-decoration:{deco}">&nbsp;{label}&nbsp;</span>'
                f'<span style="background-color:{self._shades[role][1]}">&nbsp;</span>')

    def _legend_html(self) -> str:
        dim = self._dim
        return (f'<span style="font-size:small">{self._chip("no loss", "prompt")}&nbsp;&nbsp;'
                f'{self._chip("trained", "trained")}&nbsp;&nbsp;{self._chip("cut", "cut", struck=True)}'
                f'&nbsp;&nbsp; <b style="font-family:monospace">special</b> &nbsp;'
                f'<span style="color:{dim}">·</span> space &nbsp;<span style="color:{dim}">↵</span> new line'
                f'</span>')

    # --- states --------------------------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        """An empty or error state: ``text`` in place of the tokens ("Select a row…")."""
        self._explained, self._row, self._clicked = None, None, None
        self.busy_bar.hide()
        self.header.setText("")
        self.header.hide()
        self.detail.setText("")
        self.browser.setHtml(f'<p style="color:{self._dim}; margin-top:12px" align="center">'
                             f"{html.escape(text)}</p>")

    def set_busy(self, text: str) -> None:
        """Work in progress ("Loading the tokenizer…"): said above the tokens, which stay until replaced."""
        self.busy_bar.show()
        self.header.show()
        self.header.setText(f'<span style="color:{self._dim}">{html.escape(text)}</span>')

    def header_text(self) -> str:
        """The header line as plain text (for tests and the status bar)."""
        return QTextDocumentFragment.fromHtml(self.header.text()).toPlainText()

    def explained(self) -> Explained | None:
        return self._explained

    def show_explained(self, explained: Explained, row: int | None) -> None:
        """Show a row's tokens; ``row`` is its 0-based index in the dataset (shown 1-based), or None."""
        self._explained, self._row, self._clicked = explained, row, None
        self.busy_bar.hide()
        self.header.show()
        self.header.setText(self._header_html(explained, row))
        self.detail.setText("Point at a token to see its id; right-click to copy the exact text.")
        self.browser.setHtml(self._tokens_html(explained))

    def _header_html(self, ex: Explained, row: int | None) -> str:
        where = f"<b>Row {row + 1:,}</b> · " if row is not None else ""
        if ex.clipped:  # tokenized only as far as needed to know it does not fit
            return (f"{where}over {plural(ex.max_length, 'token')}: too long to count whole<br/>"
                    f'<span style="color:{CUT_HUE}">Everything beyond the max length of {ex.max_length:,} is '
                    "not trained on; the end of the answer is lost.</span>")
        if ex.conversation:
            turns = len({p.turn for p in ex.pieces if p.turn >= 0})
            answers = len({p.turn for p in ex.pieces if p.trained and p.turn >= 0 and p.role == "assistant"})
            head = (f"{where}{plural(turns, 'turn')}, {plural(ex.total, 'token')}: {ex.untrained_tokens:,} no loss "
                    f"(user, tool and system turns, template), {ex.trained_tokens:,} trained "
                    f"({plural(answers, 'assistant turn')}), {ex.cut:,} cut")
            if ex.trained_tokens == 0 and any(p.trained for p in ex.pieces):
                head += (f'<br/><span style="color:{CUT_HUE}">Every trained token lies beyond the max length: '
                         "training skips this row.</span>")
        else:
            head = (f"{where}{plural(ex.total, 'token')}: {ex.untrained_tokens:,} no loss (prompt and template), "
                    f"{ex.trained_tokens:,} trained, {ex.cut:,} cut")
        if ex.note:
            head += f'<br/><span style="color:{CUT_HUE}">Note: {html.escape(ex.note)}.</span>'
        if not ex.cut:
            return head
        warn = (f"{plural(ex.cut, 'token')} beyond the max length of {ex.max_length:,} "
                f"{'is' if ex.cut == 1 else 'are'} not trained on")
        end = next((p for p in reversed(ex.pieces) if p.special), None)  # the completion's end of turn / EOS
        if end is not None and end.cut:
            warn += "; the end of the answer is lost, so the model does not learn where to stop"
        return f'{head}<br/><span style="color:{CUT_HUE}">{html.escape(warn)}.</span>'

    def _tokens_html(self, ex: Explained) -> str:
        parts = ['<p style="white-space:pre-wrap; line-height:150%">']
        kept = [p for p in ex.pieces if not p.cut]
        shown_kept = min(len(kept), MAX_KEPT_SHOWN)
        trained_turns = {p.turn for p in ex.pieces if p.trained} if ex.conversation else set()
        for i, piece in enumerate(kept[:shown_kept]):
            if ex.conversation and (i == 0 or (piece.turn, piece.role) != (kept[i - 1].turn, kept[i - 1].role)):
                parts.append(self._turn_marker(piece, piece.turn in trained_turns))
            parts.append(self._piece_html(piece, i))
        if shown_kept < len(kept):
            parts.append(f'<span style="color:{self._dim}"> … {len(kept) - shown_kept:,} more tokens '
                         f"(not shown)</span>")
        if ex.cut:
            parts.append(f'<span style="color:{CUT_HUE}"><b> ✂ max length {ex.max_length:,} </b></span>')
            start = len(kept)
            shown_cut = min(ex.cut, MAX_CUT_SHOWN)
            for i in range(start, start + shown_cut):
                parts.append(self._piece_html(ex.pieces[i], i))
            if ex.clipped:
                parts.append(f'<span style="color:{CUT_HUE}"> … and the rest of the row, all cut</span>')
            elif shown_cut < ex.cut:
                parts.append(f'<span style="color:{CUT_HUE}"> … {ex.cut - shown_cut:,} more cut tokens</span>')
        parts.append("</p>")
        return "".join(parts)

    def _turn_marker(self, piece: TokenPiece, trained: bool) -> str:
        """The label at the start of a conversation turn: its role and number, and whether it is trained."""
        colour = TRAINED_HUE if trained else self._dim
        state = "trained" if trained else "no loss"
        return (f'<span style="color:{colour}; font-size:small; font-weight:bold">'
                f"▸ {html.escape(turn_name(piece))} · {state}&nbsp;</span>")

    def _piece_html(self, piece: TokenPiece, index: int) -> str:
        role = "cut" if piece.cut else "trained" if piece.trained else "prompt"
        style = [f"background-color:{self._shades[role][index % 2]}", "text-decoration:none",
                 f"color:{self._cut_text if piece.cut else self._text}"]
        if piece.cut:
            style[1] = "text-decoration:line-through"
        if piece.special:
            style.append("font-weight:bold; font-family:monospace")
        return f'<a href="tok:{index}" style="{"; ".join(style)}">{_visible(piece.text, self._dim)}</a>'

    # --- token details -------------------------------------------------------------------------------
    def _piece_of(self, url: QUrl) -> int | None:
        if self._explained is None or url.scheme() != "tok":
            return None
        try:
            index = int(url.path())
        except ValueError:
            return None
        return index if 0 <= index < len(self._explained.pieces) else None

    def _describe(self, index: int) -> str:
        assert self._explained is not None
        return describe_piece(self._explained.pieces[index], index, self._explained.total,
                              self._explained.conversation)

    @Slot(QUrl)
    def _on_anchor_clicked(self, url: QUrl) -> None:
        index = self._piece_of(url)
        if index is not None:
            self._clicked = index
            self.detail.setText(self._describe(index))

    @Slot(QUrl)
    def _on_highlighted(self, url: QUrl) -> None:
        index = self._piece_of(url)
        if index is None:
            QToolTip.hideText()
            if self._clicked is not None:
                self.detail.setText(self._describe(self._clicked))
            return
        text = self._describe(index)
        self.detail.setText(text)
        QToolTip.showText(QCursor.pos(), text.replace(" · ", "\n", 1), self.browser)

    def training_text(self) -> str:
        """The exact text of the row's tokens, cut ones included (what the context menu copies)."""
        return "".join(p.text for p in self._explained.pieces) if self._explained else ""

    @Slot(QPoint)
    def _context_menu(self, pos: QPoint) -> None:
        menu = self.browser.createStandardContextMenu(pos)
        action = menu.addAction("Copy the exact training text")
        action.setEnabled(self._explained is not None)
        action.triggered.connect(self._copy_training_text)
        menu.exec(self.browser.viewport().mapToGlobal(pos))
        menu.deleteLater()

    @Slot()
    def _copy_training_text(self) -> None:
        QGuiApplication.clipboard().setText(self.training_text())


def _nice_width(raw: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 25, 50, 100, ... that is at least ``raw``."""
    if raw <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        width = m * magnitude
        if width >= raw and float(width).is_integer():
            return int(width)
    return int(10 * magnitude)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


class LengthHistogram(QWidget):
    """Rows per token count, with the max length drawn as a line and the rows beyond it in red.

    Bins are whole token counts and never straddle the cutoff, so a bar is either all within the max
    length or all over it. Clicking a bar emits :attr:`range_clicked` with its counts (inclusive).
    """

    range_clicked = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)
        self._lo = np.zeros(0, dtype=np.int64)
        self._heights = np.zeros(0, dtype=np.int64)
        self._max_length = 0
        self._width = 1

        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setWordWrap(True)
        self.plot_widget = pg.PlotWidget(background=background)
        self.plot_widget.setMinimumHeight(150)
        self.plot: pg.PlotItem = self.plot_widget.getPlotItem()
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.getViewBox().setMouseEnabled(x=False, y=False)
        self.plot.showGrid(x=False, y=True, alpha=0.12)
        for name in ("left", "bottom"):
            axis = self.plot.getAxis(name)
            axis.setTextPen(pg.mkPen(foreground))
            axis.setPen(pg.mkPen(QColor(foreground).lighter(160) if foreground.lightness() < 128
                                 else QColor(foreground).darker(160)))
            axis.enableAutoSIPrefix(False)
        self.plot.setLabel("bottom", "tokens")
        self.plot.setLabel("left", "rows")
        edge = pg.mkPen(background, width=1)
        self.bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush=pg.mkBrush(BAR_COLOR), pen=edge)
        self.over_bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush=pg.mkBrush(OVER_COLOR), pen=edge)
        self.cutoff = pg.InfiniteLine(angle=90, movable=False,
                                      pen=pg.mkPen(OVER_COLOR, width=1.5, style=Qt.PenStyle.DashLine),
                                      label="max length", labelOpts={"position": 0.93, "color": OVER_COLOR,
                                                                     "anchors": [(1.05, 0.5), (1.05, 0.5)]})
        self.cutoff.setZValue(5)
        self.far_label = pg.TextItem("", color=OVER_COLOR, anchor=(1, 0))
        for item in (self.bars, self.over_bars, self.cutoff, self.far_label):
            self.plot.addItem(item)
        scene = self.plot_widget.scene()
        scene.sigMouseClicked.connect(self._on_scene_clicked)
        scene.sigMouseMoved.connect(self._on_scene_moved)

        self.placeholder = QLabel()
        self.placeholder.setObjectName("hintLabel")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setMinimumHeight(150)
        self._stack = QStackedLayout()
        self._stack.addWidget(self.plot_widget)
        self._stack.addWidget(self.placeholder)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.summary)
        layout.addLayout(self._stack, 1)
        self.clear()

    # --- data --------------------------------------------------------------------------------------
    def clear(self, message: str = "Count the tokens to see how long the rows are.") -> None:
        """The empty state: no bars, ``message`` in their place."""
        self._lo = np.zeros(0, dtype=np.int64)
        self._heights = np.zeros(0, dtype=np.int64)
        self.bars.setOpts(x0=[], x1=[], height=[])
        self.over_bars.setOpts(x0=[], x1=[], height=[])
        self.summary.setText("")
        self.summary.hide()
        self.placeholder.setText(message)
        self._stack.setCurrentWidget(self.placeholder)

    def set_counts(self, counts: Sequence[int] | np.ndarray, max_length: int) -> None:
        """Show the token counts of the rows (those that have one) against ``max_length``."""
        values = np.asarray(counts, dtype=np.int64).ravel()
        if values.size == 0:
            self.clear("No rows to show.")
            return
        self._max_length = max_length
        lo, hi = int(values.min()), int(values.max())
        near = max_length <= 4 * max(hi, 1)  # the cutoff is worth showing to scale
        view_hi = max(hi, max_length) if near else hi
        view_lo = 0 if lo <= 0.4 * view_hi else lo
        width = _nice_width(max((hi - lo + 1) / TARGET_BINS, (view_hi - view_lo) * MIN_BIN_SHARE))
        # Bins [origin + k*width, origin + (k+1)*width - 1] with a bin starting at max_length + 1.
        origin = max_length + 1 + ((lo - max_length - 1) // width) * width
        heights = np.bincount((values - origin) // width)
        self._lo = origin + width * np.arange(heights.size, dtype=np.int64)
        self._heights = heights
        self._width = width
        # A bar for counts a..b is drawn over (a - 1, b], so the cutoff line at max_length is a bar edge.
        filled = heights > 0
        over = self._lo > max_length
        for item, mask in ((self.bars, filled & ~over), (self.over_bars, filled & over)):
            x0 = (self._lo[mask] - 1).astype(float)
            item.setOpts(x0=x0, x1=x0 + width, height=heights[mask].astype(float))
        self.cutoff.setValue(max_length)
        self.cutoff.label.setFormat(f"max length {max_length:,}")
        self.cutoff.setVisible(near)

        x_lo = float(min(self._lo[0] - 1, max_length if near else hi))
        x_hi = float(max(self._lo[-1] + width - 1, max_length if near else 0))
        margin = max(1.0, 0.04 * (x_hi - x_lo))
        x_lo, x_hi = (0.0 if view_lo == 0 else x_lo - margin), x_hi + margin
        y_hi = float(heights.max()) * 1.15
        # The line's label sits left of it, or right of it when the line is near the left edge.
        right = near and max_length - x_lo < 0.3 * (x_hi - x_lo)
        self.cutoff.label.anchors = [(-0.05, 0.5)] * 2 if right else [(1.05, 0.5)] * 2
        self.cutoff.label.updatePosition()
        self.plot.setXRange(x_lo, x_hi, padding=0)
        self.plot.setYRange(0, y_hi, padding=0)
        self.far_label.setText("" if near else f"max length {max_length:,} →")
        self.far_label.setPos(x_hi, y_hi)

        self.summary.setText(self._summary_html(values, max_length))
        self.summary.show()
        self._stack.setCurrentWidget(self.plot_widget)

    def _summary_html(self, values: np.ndarray, max_length: int) -> str:
        over = values[values > max_length]
        text = (f"{plural(values.size, 'row')} · median {_number(float(np.median(values)))} · "
                f"longest {int(values.max()):,} · ")
        if not over.size:
            return text + "none over the max length"
        lost = int((over - max_length).sum())
        verb = "loses" if over.size == 1 else "lose"
        return (text + f'<span style="color:{OVER_COLOR}">{plural(int(over.size), "row")} over the max length '
                f"{verb} {plural(lost, 'token')}</span>")

    def bins(self) -> list[tuple[int, int, int]]:
        """``(lowest count, highest count, rows)`` of every bin, empty ones included."""
        return [(int(a), int(a) + self._width - 1, int(n)) for a, n in zip(self._lo, self._heights, strict=True)]

    def summary_text(self) -> str:
        """The summary line as plain text."""
        return QTextDocumentFragment.fromHtml(self.summary.text()).toPlainText()

    # --- mouse -------------------------------------------------------------------------------------
    def bin_at(self, x: float) -> tuple[int, int, int] | None:
        """The non-empty bin drawn at view coordinate ``x``: ``(lo, hi, rows)``, or None."""
        if not self._heights.size:
            return None
        k = int((x - (self._lo[0] - 1)) // self._width) if x > self._lo[0] - 1 else -1
        if not 0 <= k < self._heights.size or not self._heights[k]:
            return None
        lo = int(self._lo[k])
        return lo, lo + self._width - 1, int(self._heights[k])

    def click_at(self, x: float) -> bool:
        """Act as a click at view coordinate ``x``: emit :attr:`range_clicked` for the bar there, if any."""
        found = self.bin_at(x)
        if found is not None:
            self.range_clicked.emit(found[0], found[1])
        return found is not None

    def _view_x(self, scene_pos: QPointF) -> float | None:
        view_box = self.plot.getViewBox()
        if not view_box.sceneBoundingRect().contains(scene_pos):
            return None
        return float(view_box.mapSceneToView(scene_pos).x())

    def _on_scene_clicked(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        x = self._view_x(event.scenePos())
        if x is not None and self.click_at(x):
            event.accept()

    def _on_scene_moved(self, scene_pos: QPointF) -> None:
        x = self._view_x(scene_pos)
        found = self.bin_at(x) if x is not None else None
        if found is None:
            self.plot_widget.setToolTip("")
            QToolTip.hideText()
            return
        lo, hi, rows = found
        span = f"{lo:,} tokens" if lo == hi else f"{lo:,}–{hi:,} tokens"
        tip = f"{span}: {plural(rows, 'row')}{' over the max length' if lo > self._max_length else ''}\n" \
              "Click to select them."
        self.plot_widget.setToolTip(tip)
        QToolTip.showText(QCursor.pos(), tip, self.plot_widget)
