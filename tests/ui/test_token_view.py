"""The token preview (what the model sees of a row) and the token-length histogram, on the tiny model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QFont, QTextCharFormat, QTextCursor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from loradesk.core.config import ModelSettings
from loradesk.core.dataset import Example
from loradesk.core.models import load_tokenizer
from loradesk.core.tokenize import Explained, explain, token_count
from loradesk.ui.jobs import Jobs, TaskState
from loradesk.ui.token_counter import COUNT_CHUNK, count_tokens
from loradesk.ui.token_view import LengthHistogram, TokenPreview, explain_row

ROW = Example("Where  does Tamsin live?\n\tTell me.", "In Vaelmoor,\n  a floating city of maps.", system="Be brief.")
VISIBLE = {"·": " ", "↵": "", "\u2028": "\n", "→": "\t", "◌": ""}  # how the preview shows whitespace


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Any:
    return load_tokenizer(tiny_model_dir)


def shown_tokens(preview: TokenPreview) -> dict[int, tuple[str, QTextCharFormat]]:
    """Each token's displayed text and character format, read back from the browser's document."""
    doc = preview.browser.document()
    cursor = QTextCursor(doc)
    out: dict[int, tuple[str, QTextCharFormat]] = {}
    for pos in range(doc.characterCount() - 1):
        cursor.setPosition(pos)
        cursor.setPosition(pos + 1, QTextCursor.MoveMode.KeepAnchor)
        fmt = cursor.charFormat()
        href = fmt.anchorHref()
        if href.startswith("tok:"):
            index = int(href[4:])
            text = out[index][0] if index in out else ""
            out[index] = (text + cursor.selectedText(), out[index][1] if index in out else fmt)
    return out


def as_text(shown: str) -> str:
    return "".join(VISIBLE.get(ch, ch) for ch in shown)


def test_explain_row_tokenizes_in_the_worker_process_and_keeps_the_tokenizer(
        qtbot: QtBot, tiny_model_dir: Path, tok: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from loradesk.ui import token_view

    monkeypatch.setattr(token_view, "_LOADED", set())  # as in a fresh app (other tests used the tiny model)
    settings = ModelSettings(kind="local", name=str(tiny_model_dir))
    jobs = Jobs()
    results: list[Explained] = []
    messages: list[str] = []

    def job(*, state: TaskState) -> Explained:
        return explain_row(settings, True, False, 20, ROW, state.progress)

    jobs.start(job, state=True, on_result=results.append, on_progress=lambda text, _f: messages.append(text))
    qtbot.waitUntil(lambda: bool(results), timeout=30_000)
    assert jobs.shutdown()
    assert results[0] == explain(tok, ROW, 20, completion_only=False, use_chat_template=True)
    assert "Loading the tokenizer…" in messages
    again: list[str] = []
    assert explain_row(settings, False, True, 256, ROW, lambda text, _f=None: again.append(text)) == \
        explain(tok, ROW, 256, use_chat_template=False)
    assert again == []  # the tokenizer was loaded once and kept for the next row


def test_preview_shows_every_token_with_its_role(qtbot: QtBot, tok: Any) -> None:
    preview = TokenPreview()
    qtbot.addWidget(preview)
    ex = explain(tok, ROW, 256)
    preview.show_explained(ex, 11)
    assert preview.header_text() == (f"Row 12 · {ex.total} tokens: {ex.untrained_tokens} no loss (prompt and "
                                     f"template), {ex.trained_tokens} trained, 0 cut")
    shown = shown_tokens(preview)
    assert sorted(shown) == list(range(ex.total))
    assert [as_text(shown[i][0]) for i in range(ex.total)] == [p.text for p in ex.pieces]
    plain = preview.browser.toPlainText()
    assert "<|im_start|>assistant↵" in plain and "Where· does" in plain and "→Tell" in plain
    backgrounds: dict[bool, set[str]] = {True: set(), False: set()}
    for i, piece in enumerate(ex.pieces):
        fmt = shown[i][1]
        assert not fmt.fontStrikeOut()
        assert (fmt.fontWeight() >= QFont.Weight.Bold) == piece.special, piece
        backgrounds[piece.trained].add(fmt.background().color().name())
    assert backgrounds[True] and backgrounds[False] and not backgrounds[True] & backgrounds[False]
    assert len(backgrounds[False]) == 2  # alternating shades mark the token boundaries
    assert preview.training_text() == "".join(p.text for p in ex.pieces)


def test_cut_tokens_are_struck_out_and_the_lost_end_is_explained(qtbot: QtBot, tok: Any) -> None:
    preview = TokenPreview()
    qtbot.addWidget(preview)
    ex = explain(tok, ROW, 30)
    assert ex.cut > 0
    preview.show_explained(ex, 0)
    header = preview.header_text()
    assert header.startswith(f"Row 1 · {ex.total} tokens: ") and f", {ex.cut} cut" in header
    assert f"{ex.cut} tokens beyond the max length of 30 are not trained on" in header
    assert "does not learn where to stop" in header
    shown = shown_tokens(preview)
    struck = "".join(as_text(text) for i, (text, fmt) in sorted(shown.items()) if fmt.fontStrikeOut())
    kept = "".join(as_text(text) for i, (text, fmt) in sorted(shown.items()) if not fmt.fontStrikeOut())
    assert struck == "".join(p.text for p in ex.pieces[30:])
    assert "maps.<|im_end|>" in struck and "maps" not in kept
    assert "✂ max length 30" in preview.browser.toPlainText()


def test_clicking_a_token_shows_its_id(qtbot: QtBot, tok: Any) -> None:
    preview = TokenPreview()
    qtbot.addWidget(preview)
    preview.resize(420, 400)
    preview.show()
    qtbot.waitExposed(preview)
    ex = explain(tok, ROW, 256)
    preview.show_explained(ex, 3)
    index = next(i for i, p in enumerate(ex.pieces) if "Vael" in p.text)
    doc = preview.browser.document()
    cursor = QTextCursor(doc)
    pos = next(p for p in range(doc.characterCount()) if _href_at(cursor, p) == f"tok:{index}")
    cursor.setPosition(pos + 1)
    rect = preview.browser.cursorRect(cursor)
    QTest.mouseClick(preview.browser.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(rect.x(), rect.center().y()))
    detail = preview.detail.text()
    assert f"id {ex.pieces[index].token_id}" in detail and repr(ex.pieces[index].text) in detail
    assert detail.startswith(f"Token {index + 1} of {ex.total}") and detail.endswith("trained")


def _href_at(cursor: QTextCursor, pos: int) -> str:
    cursor.setPosition(pos)
    cursor.setPosition(pos + 1, QTextCursor.MoveMode.KeepAnchor)
    return cursor.charFormat().anchorHref()


def test_preview_messages_and_busy_state(qtbot: QtBot, tok: Any) -> None:
    preview = TokenPreview()
    qtbot.addWidget(preview)
    assert "Select a row" in preview.browser.toPlainText() and preview.explained() is None
    preview.show_explained(explain(tok, ROW, 256), None)
    assert preview.header_text().startswith(f"{preview.explained().total} tokens: ")  # no row number
    preview.set_busy("Loading the tokenizer…")
    assert preview.header_text() == "Loading the tokenizer…" and not preview.busy_bar.isHidden()
    assert preview.explained() is not None  # the old tokens stay until the new ones come
    preview.show_message("Cannot load the tokenizer: no such folder")
    assert preview.browser.toPlainText() == "Cannot load the tokenizer: no such folder"
    assert preview.busy_bar.isHidden() and preview.header.isHidden() and preview.training_text() == ""


# --- histogram ----------------------------------------------------------------------------------------

def heights(item: Any) -> np.ndarray:
    return np.asarray(item.opts["height"], dtype=float)


def test_histogram_bins_cutoff_and_summary(qtbot: QtBot) -> None:
    hist = LengthHistogram()
    qtbot.addWidget(hist)
    counts = [40] * 5 + [61] * 3 + [300, 310]
    hist.set_counts(counts, 256)
    bins = hist.bins()
    assert sum(n for _, _, n in bins) == len(counts)
    assert all(hi <= 256 or lo > 256 for lo, hi, _ in bins)  # no bar straddles the cutoff
    assert all(sum(1 for c in counts if lo <= c <= hi) == n for lo, hi, n in bins)
    assert heights(hist.bars).sum() == 8 and heights(hist.over_bars).sum() == 2
    assert hist.cutoff.value() == 256 and hist.cutoff.isVisible()
    assert hist.summary_text() == "10 rows · median 50.5 · longest 310 · 2 rows over the max length lose 98 tokens"
    hist.set_counts([40, 50, 61], 256)
    assert hist.summary_text() == "3 rows · median 50 · longest 61 · none over the max length"
    assert heights(hist.over_bars).sum() == 0
    hist.set_counts([7], 4)
    assert hist.summary_text().endswith("1 row over the max length loses 3 tokens")


def test_a_far_cutoff_is_named_at_the_edge_instead_of_squeezing_the_bars(qtbot: QtBot) -> None:
    hist = LengthHistogram()
    qtbot.addWidget(hist)
    hist.set_counts(list(range(10, 60)), 4096)
    assert not hist.cutoff.isVisible() and hist.far_label.toPlainText() == "max length 4,096 →"
    assert hist.plot.getViewBox().viewRange()[0][1] < 100  # the bars keep the width


def test_clicking_a_bar_emits_its_token_range(qtbot: QtBot) -> None:
    hist = LengthHistogram()
    qtbot.addWidget(hist)
    hist.resize(420, 300)
    hist.show()
    qtbot.waitExposed(hist)
    counts = [40] * 5 + [61] * 3 + [300, 310]
    hist.set_counts(counts, 256)
    QApplication.processEvents()
    lo, hi, rows = next(b for b in hist.bins() if b[0] <= 300 <= b[1])
    view_box = hist.plot.getViewBox()
    scene = view_box.mapViewToScene(QPointF((lo - 1 + hi) / 2, rows / 2))
    point = hist.plot_widget.mapFromScene(scene)
    with qtbot.waitSignal(hist.range_clicked, timeout=2000) as blocker:
        QTest.mouseClick(hist.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert blocker.args == [lo, hi] and lo > 256
    empty = hist.plot_widget.mapFromScene(view_box.mapViewToScene(QPointF(150, 0.5)))  # no rows there
    with qtbot.assertNotEmitted(hist.range_clicked):
        QTest.mouseClick(hist.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=empty)


def test_histogram_empty_state_and_a_hundred_thousand_rows(qtbot: QtBot) -> None:
    hist = LengthHistogram()
    qtbot.addWidget(hist)
    assert hist._stack.currentWidget() is hist.placeholder and not hist.bins()
    counts = np.random.default_rng(0).integers(5, 3000, size=100_000)
    hist.set_counts(counts, 2048)
    bins = hist.bins()
    assert sum(n for _, _, n in bins) == 100_000 == heights(hist.bars).sum() + heights(hist.over_bars).sum()
    assert 20 <= len(bins) <= 110 and len({hi - lo for lo, hi, _ in bins}) == 1
    assert int(heights(hist.over_bars).sum()) == int((counts > 2048).sum())
    assert hist._stack.currentWidget() is hist.plot_widget
    hist.clear("No rows match the filter.")
    assert hist.placeholder.text() == "No rows match the filter." and hist.summary.isHidden()
    assert not hist.bins() and not hist.click_at(100)


def test_token_counts_come_from_the_worker_process_chunk_by_chunk(qtbot: QtBot, tiny_model_dir: Path,
                                                                  tok: Any) -> None:
    settings = ModelSettings(kind="local", name=str(tiny_model_dir))
    rows = [Example(f"Question {i}: " + "where is the owl? " * (i % 7), f"Answer {i}.", system="Be brief." * (i % 2))
            for i in range(COUNT_CHUNK + 5)]  # two calls into the process
    jobs = Jobs()
    results: list[dict[tuple[str, str, str], int]] = []
    progress: list[tuple[str, float | None]] = []
    jobs.start(count_tokens, settings, True, rows, state=True, on_result=results.append,
               on_progress=lambda text, fraction: progress.append((text, fraction)))
    qtbot.waitUntil(lambda: bool(results), timeout=60_000)
    assert results[0] == {(r.system, r.prompt, r.completion): token_count(tok, r, True) for r in rows}
    assert progress[-1] == (f"Counting tokens… {len(rows):,} of {len(rows):,}", 1.0)
    assert "Loading the tokenizer…" in [text for text, _ in progress]


def test_a_recount_counts_only_the_rows_the_table_has_no_count_for(qtbot: QtBot, tiny_model_dir: Path,
                                                                      tok: Any) -> None:
    import numpy as np

    settings = ModelSettings(kind="local", name=str(tiny_model_dir))
    rows = [Example(f"Question {i}?", f"Answer {i}.") for i in range(8)]
    rows[7] = rows[2]  # the same texts twice: counted once
    in_order = np.array([5, 6, -1, 7, 8, -1, 9, -1], dtype=np.int64)  # -1: no count yet
    jobs = Jobs()
    results: list[dict[tuple[str, str, str], int]] = []
    jobs.start(count_tokens, settings, False, rows, lambda _row: pytest.fail("looked up"), in_order, state=True,
               on_result=results.append)
    qtbot.waitUntil(lambda: bool(results), timeout=60_000)
    assert results[0] == {(r.system, r.prompt, r.completion): token_count(tok, r, False) for r in (rows[2], rows[5])}


def test_a_token_count_stopped_between_chunks_delivers_no_counts(qtbot: QtBot, tiny_model_dir: Path) -> None:
    settings = ModelSettings(kind="local", name=str(tiny_model_dir))
    rows = [Example(f"Question {i}?", "Answer.") for i in range(COUNT_CHUNK * 3)]
    jobs = Jobs()
    outcome: list[str] = []
    job = jobs.start(count_tokens, settings, False, rows, state=True, on_result=lambda _: outcome.append("result"),
                     on_cancelled=lambda: outcome.append("cancelled"),
                     on_progress=lambda text, _f: jobs.cancel() if text.startswith("Counting") else None)
    qtbot.waitUntil(lambda: bool(outcome), timeout=60_000)
    assert outcome == ["cancelled"] and not job.is_running()


def test_a_conversation_shows_turn_by_turn_which_turns_are_trained(qtbot: QtBot, tok: Any) -> None:
    from loradesk.core.conversation import ToolCall, Turn

    call = ToolCall("get_weather", '{"city": "Oslo"}', "c1")
    row = Example.conversation([Turn("user", "Weather?"), Turn("assistant", "", (call,)),
                                Turn("tool", "sunny"), Turn("assistant", "Sunny.")], system="Be brief.")
    preview = TokenPreview()
    qtbot.addWidget(preview)
    ex = explain(tok, row, 256, assistant_turns="last", tools_as_text=True)
    preview.show_explained(ex, 4)
    assert preview.header_text() == (f"Row 5 · 4 turns, {ex.total} tokens: {ex.untrained_tokens} no loss (user, tool "
                                     f"and system turns, template), {ex.trained_tokens} trained (1 assistant turn), "
                                     "0 cut")
    plain = preview.browser.toPlainText()
    markers = re.findall(r"▸ (.*? · (?:no loss|trained))", plain)
    assert markers == ["system prompt · no loss", "user turn 1 · no loss", "assistant turn 2 · no loss",
                       "tool turn 3 · no loss", "assistant turn 4 · trained"]
    assert "<tool_call>" in plain and preview.training_text() == "".join(p.text for p in ex.pieces)
    shown = shown_tokens(preview)
    assert [as_text(shown[i][0]) for i in range(ex.total)] == [p.text for p in ex.pieces]  # markers are no tokens
    preview.show_explained(explain(tok, row, 256), 4)  # the template leaves the call out: the preview says so
    assert "Note: this model's chat template leaves out tool calls" in preview.header_text()


def test_conversations_are_counted_whole_in_the_worker_process(qtbot: QtBot, tiny_model_dir: Path, tok: Any) -> None:
    from loradesk.core.conversation import ToolCall, Turn
    from loradesk.ui.row_lengths import token_key

    settings = ModelSettings(kind="local", name=str(tiny_model_dir))
    call = ToolCall("get_weather", '{"city": "Oslo"}')
    one = Example.conversation([Turn("user", "Hi"), Turn("assistant", "Hello."), Turn("user", "Who?"),
                                Turn("assistant", "Her.")])
    other = one.with_turns([Turn("user", "Hi"), Turn("assistant", "", (call,)), Turn("tool", "sunny"),
                            Turn("user", "Who?"), Turn("assistant", "Her.")])
    assert (one.prompt, one.completion) == (other.prompt, other.completion)  # the same mirrors, other turns
    jobs = Jobs()
    results: list[dict[Any, int]] = []
    jobs.start(count_tokens, settings, True, [one, other, ROW], None, None, True, state=True,
               on_result=results.append)
    qtbot.waitUntil(lambda: bool(results), timeout=60_000)
    assert results[0] == {token_key(r): token_count(tok, r, True, tools_as_text=True) for r in (one, other, ROW)}
    assert len(results[0]) == 3 and results[0][token_key(other)] > results[0][token_key(one)]
