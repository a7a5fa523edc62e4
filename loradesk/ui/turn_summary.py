"""How a conversation row reads in one table cell: a "6 turns" badge, and its turns listed in a tooltip.

A pair row never comes here: the table asks only when ``row.turns`` is set.
"""

from __future__ import annotations

from functools import lru_cache

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QGuiApplication, QIcon, QPainter, QPixmap

from loradesk.core.conversation import ToolCall, Turn
from loradesk.core.dataset import Example
from loradesk.core.wording import plural

#: Characters of each turn the tooltip shows.
LINE_LIMIT = 90
#: Turns the tooltip lists before "… and N more".
TOOLTIP_TURNS = 12
ROLE_NAMES = {"user": "User", "assistant": "Assistant", "tool": "Tool"}


def _one_line(text: str, limit: int = LINE_LIMIT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1].rstrip() + "…"


def call_text(call: ToolCall, limit: int = LINE_LIMIT) -> str:
    """A tool call in one line: ``get_weather({"city": "Oslo"})``."""
    return _one_line(f"{call.name}({call.arguments.strip()})", limit)


def turn_line(turn: Turn, limit: int = LINE_LIMIT) -> str:
    """One turn in one line: its role, then its text or its calls (``Assistant → get_weather({…})``)."""
    role = ROLE_NAMES.get(turn.role, turn.role)
    if turn.role == "tool" and turn.name:
        role += f" ({turn.name})"
    if turn.tool_calls:
        calls = "; ".join(call_text(c, limit) for c in turn.tool_calls)
        said = f"{_one_line(turn.content, limit)} " if turn.content.strip() else ""
        return f"{role}: {said}→ {calls}"
    return f"{role}: {_one_line(turn.content, limit) or '(empty)'}"


def call_count(row: Example) -> int:
    return sum(len(t.tool_calls) for t in row.turns)


def badge_text(row: Example) -> str:
    """``"6 turns"``, ``"4 turns · 1 call"``."""
    calls = call_count(row)
    text = plural(len(row.turns), "turn")
    return f"{text} · {plural(calls, 'call')}" if calls else text


def turns_tooltip(row: Example) -> str:
    """The conversation turn by turn (plain text), for the prompt cell's tooltip."""
    lines = [f"Conversation: {badge_text(row)}"]
    if row.system.strip():
        lines.append(f"System: {_one_line(row.system)}")
    lines += [f"{n}. {turn_line(t)}" for n, t in enumerate(row.turns[:TOOLTIP_TURNS], 1)]
    if len(row.turns) > TOOLTIP_TURNS:
        lines.append(f"… and {plural(len(row.turns) - TOOLTIP_TURNS, 'more turn')}")
    lines.append("Double-click or press Enter to edit the conversation")
    return "\n".join(lines)


def last_output_text(row: Example) -> str:
    """What the completion cell of a conversation shows: its last assistant message, or the calls of its
    last assistant turn when that one only calls tools."""
    last = next((t for t in reversed(row.turns) if t.role == "assistant"), None)
    if last is None or last.content.strip() or not last.tool_calls:
        return row.completion
    return "→ " + "; ".join(call_text(c) for c in last.tool_calls)


def has_output(row: Example) -> bool:
    """Whether any assistant turn says or calls something (a conversation that can be trained on)."""
    return any(t.has_output for t in row.turns)


def _badge_pixmap(text: str, ratio: float, fill: QColor, ink: QColor) -> QPixmap:
    font = QFont(QGuiApplication.font())
    font.setPointSizeF(max(6.0, font.pointSizeF() * 0.82))
    font.setWeight(QFont.Weight.DemiBold)
    metrics = QFontMetrics(font)
    width, height = metrics.horizontalAdvance(text) + 12, metrics.height() + 4
    pixmap = QPixmap(round(width * ratio), round(height * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(fill)
    rect = QRectF(0.5, 0.5, width - 1, height - 1)
    painter.drawRoundedRect(rect, height / 2, height / 2)
    painter.setFont(font)
    painter.setPen(ink)
    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
    painter.end()
    return pixmap


@lru_cache(maxsize=256)
def _badge(text: str, ratio: float) -> QIcon:
    icon = QIcon(_badge_pixmap(text, ratio, QColor(59, 125, 216, 46), QColor("#2a5fa8")))
    # on a selected row's highlight: light ink, so the badge stays readable
    icon.addPixmap(_badge_pixmap(text, ratio, QColor(255, 255, 255, 60), QColor("white")), QIcon.Mode.Selected)
    return icon


def badge(row: Example) -> QIcon:
    """The "6 turns · 1 call" badge of a conversation row (made once per text)."""
    app = QGuiApplication.instance()
    ratio = app.devicePixelRatio() if isinstance(app, QGuiApplication) else 1.0
    return _badge(badge_text(row), ratio)


def conversation_cell(row: Example, field: str, role: int) -> object:
    """A conversation's prompt or completion cell: its first user / last assistant message, the badge and
    the turn list beside the prompt, and the red "empty" tint on the completion only when no assistant turn
    says or calls anything (what the Status column calls empty)."""
    if role == Qt.ItemDataRole.DisplayRole:
        return row.prompt if field == "prompt" else last_output_text(row)
    if role == Qt.ItemDataRole.EditRole:
        return getattr(row, field)
    if field == "prompt":
        if role == Qt.ItemDataRole.DecorationRole:
            return badge(row)
        return turns_tooltip(row) if role == Qt.ItemDataRole.ToolTipRole else None
    if role == Qt.ItemDataRole.ToolTipRole:
        return f"The last assistant turn of {badge_text(row)}: {last_output_text(row)[:LINE_LIMIT * 8]}"
    if role == Qt.ItemDataRole.ForegroundRole and not row.completion.strip() and has_output(row):
        return QBrush(QColor("#2a5fa8"))  # a tool call, not text
    if role == Qt.ItemDataRole.BackgroundRole and not has_output(row):
        return QBrush(QColor(214, 69, 69, 40))
    return None
