"""Acceptance: conversation rows on the real built-in model's tokenizer (SmolLM2-135M-Instruct), whose chat
template writes each message's content only: turns split exactly, tool calls detected as unsupported, and
the text form shown instead. Seconds once the model is converted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loradesk.core.conversation import ToolCall, Turn, messages
from loradesk.core.dataset import Example

pytestmark = pytest.mark.slow


def test_the_built_in_template_splits_conversations_exactly_and_has_no_tool_calls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loradesk.core import chat_render, models, tokenize

    monkeypatch.setenv("LORADESK_MODELS", os.environ.get("LORADESK_MODELS") or str(tmp_path / "models"))
    tok = models.load_tokenizer(models.ensure_default_model())
    row = Example.conversation([Turn("user", "Hi"), Turn("assistant", "Hello."), Turn("user", "Who is Tamsin?"),
                                Turn("assistant", "A sky-cartographer.")])
    rendered = tokenize.segments(tok, row)
    assert not rendered.note  # the prefixes add up: every turn's loss is exact
    assert "".join(s.text for s in rendered.segments) == tok.apply_chat_template(
        messages(row.turns, for_template=True), tokenize=False)  # with the template's default system prompt
    assert [s.text for s in rendered.segments if s.trained] == ["Hello.<|im_end|>\n",
                                                                 "A sky-cartographer.<|im_end|>\n"]
    assert not chat_render.supports_tools(tok)
    call = ToolCall("get_weather", '{"city": "Oslo"}')
    tool_row = Example.conversation([Turn("user", "Weather?"), Turn("assistant", "", (call,)), Turn("tool", "sunny"),
                                     Turn("assistant", "Sunny.")])
    assert "leaves out tool calls" in tokenize.explain(tok, tool_row, 256).note
    text = "".join(s.text for s in tokenize.segments(tok, tool_row, tools_as_text=True).segments)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>' in text
