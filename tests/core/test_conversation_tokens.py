"""Conversation rows as training text: the whole chat through the template, loss exactly on assistant turns,
the last-only setting, tool templates (detected, refused, or written as text), the plain format, a template
whose prefixes do not add up, and the Compare prompt of a conversation."""

from __future__ import annotations

from pathlib import Path

import pytest

from loradesk.core import chat_render, tokenize
from loradesk.core.config import RunConfig
from loradesk.core.conversation import ToolCall, Turn, messages, tools_list
from loradesk.core.dataset import Example
from loradesk.core.models import load_tokenizer
from loradesk.core.tokenize import IGNORE_INDEX, encode, explain, render_prompt

#: A small Qwen2.5-style ChatML template that writes tools, tool calls and tool results.
TOOL_TEMPLATE = (
    "{%- if tools %}{{ '<|im_start|>system\\n' }}{% if messages[0].role == 'system' %}"
    "{{ messages[0].content + '\\n\\n' }}{% endif %}{{ '# Tools\\n<tools>' }}{% for tool in tools %}"
    "{{ '\\n' + (tool | tojson) }}{% endfor %}{{ '\\n</tools><|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}{{ '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}{{ '<|im_start|>assistant' }}"
    "{% if message.content %}{{ '\\n' + message.content }}{% endif %}{% for tc in message.tool_calls %}"
    "{{ '\\n<tool_call>\\n{\"name\": \"' + tc.function.name + '\", \"arguments\": ' + "
    "(tc.function.arguments | tojson) + '}\\n</tool_call>' }}{% endfor %}{{ '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{{ '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: Like Qwen3: an earlier answer loses its reasoning once a later turn follows.
THINKING_TEMPLATE = (
    "{% for message in messages %}{% set content = message['content'] %}"
    "{% if message['role'] == 'assistant' and not loop.last and '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TOOLS = '[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]'


def chat() -> Example:
    return Example.conversation([Turn("user", "Hi"), Turn("assistant", "Hello there."),
                                 Turn("user", "Who is Tamsin?"), Turn("assistant", "A sky-cartographer.")],
                                system="Be brief.")


def tool_chat() -> Example:
    call = ToolCall("get_weather", '{"city": "Oslo"}', "c1")
    return Example.conversation([Turn("user", "Weather in Oslo?"), Turn("assistant", "", (call,)),
                                 Turn("tool", "sunny, 21 C", name="get_weather", tool_call_id="c1"),
                                 Turn("assistant", "It is sunny.")], tools=TOOLS)


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture
def tool_tok(tiny_model_dir: Path):
    tok = load_tokenizer(tiny_model_dir)
    tok.chat_template = TOOL_TEMPLATE
    return tok


def trained_text(tok, enc: tokenize.Encoded) -> str:
    return "".join(tok.decode([t]) for t in enc.labels if t != IGNORE_INDEX)


def test_the_whole_conversation_renders_through_the_template_with_loss_on_every_answer(tok) -> None:
    row = chat()
    rendered = tokenize.segments(tok, row)
    full = tok.apply_chat_template(messages(row.turns, row.system, for_template=True), tokenize=False)
    assert "".join(s.text for s in rendered.segments) == full and not rendered.note
    assert [s.text for s in rendered.segments if s.trained] == ["Hello there.<|im_end|>\n",
                                                                 "A sky-cartographer.<|im_end|>\n"]
    assert all(s.role == "assistant" for s in rendered.segments if s.trained)
    enc = encode(tok, row, 512)
    ids: list[int] = []
    for s in rendered.segments:
        ids += tok(s.text, add_special_tokens=False)["input_ids"]
    assert enc.input_ids == ids  # each segment tokenized on its own: exact boundaries
    assert trained_text(tok, enc) == "Hello there.<|im_end|>\nA sky-cartographer.<|im_end|>\n"


def test_last_only_trains_the_last_answer_and_full_loss_trains_everything(tok) -> None:
    enc = encode(tok, chat(), 512, assistant_turns="last")
    assert trained_text(tok, enc) == "A sky-cartographer.<|im_end|>\n"
    full = encode(tok, chat(), 512, completion_only=False)
    assert full.labels == full.input_ids


def test_explain_matches_encode_and_knows_each_turn(tok) -> None:
    for turns in ("all", "last"):
        enc = encode(tok, chat(), 20, assistant_turns=turns)
        ex = explain(tok, chat(), 20, assistant_turns=turns)
        kept = [p for p in ex.pieces if not p.cut]
        assert [p.token_id for p in kept] == enc.input_ids
        assert [p.token_id if p.trained else IGNORE_INDEX for p in kept] == enc.labels
        assert ex.cut == enc.cut > 0 and ex.conversation
    pieces = explain(tok, chat(), 512).pieces
    assert {(p.turn, p.role) for p in pieces} == {(-1, "system"), (0, "user"), (1, "assistant"), (2, "user"),
                                                  (3, "assistant")}
    assert all(p.role == "assistant" for p in pieces if p.trained)
    assert "".join(p.text for p in pieces if p.turn == 2) == "<|im_start|>user\nWho is Tamsin?<|im_end|>\n"


def test_pairs_tokenize_as_before(tok) -> None:
    row = Example("Who is Tamsin?", "A sky-cartographer.", system="Be brief.")
    prompt, completion = tokenize.render(tok, row)
    enc = encode(tok, row, 512, assistant_turns="last", tools_as_text=True)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tok(completion, add_special_tokens=False)["input_ids"]
    assert enc.input_ids == p_ids + c_ids and enc.labels == [IGNORE_INDEX] * len(p_ids) + c_ids
    assert not explain(tok, row, 512).conversation


def test_tool_turns_carry_no_loss_and_calls_render_through_a_tool_template(tool_tok) -> None:
    assert chat_render.supports_tools(tool_tok)
    row = tool_chat()
    rendered = tokenize.segments(tool_tok, row)
    text = "".join(s.text for s in rendered.segments)
    assert text == tool_tok.apply_chat_template(messages(row.turns, for_template=True), tools=tools_list(row.tools),
                                                tokenize=False)
    assert "get_weather" in text and "<tool_response>\nsunny, 21 C" in text
    trained = [s.text for s in rendered.segments if s.trained]
    assert trained == ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
                       "<|im_end|>\n", "It is sunny.<|im_end|>\n"]
    tool_part = [s for s in rendered.segments if s.role == "tool"]
    assert tool_part and not any(s.trained for s in tool_part)
    enc = encode(tool_tok, row, 512)
    assert "sunny, 21 C" not in trained_text(tool_tok, enc)


def test_a_template_without_tool_support_is_detected_and_the_text_form_is_offered(tok) -> None:
    assert not chat_render.supports_tools(tok)  # the tiny model's plain ChatML template, like SmolLM2's
    assert "leaves out tool calls" in explain(tok, tool_chat(), 512).note
    ex = explain(tok, tool_chat(), 512, tools_as_text=True)
    text = "".join(p.text for p in ex.pieces)
    assert not ex.note
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>' in text
    assert "<|im_start|>user\n<tool_response>\nsunny, 21 C\n</tool_response><|im_end|>" in text
    assert text.startswith("<|im_start|>system\nYou can call these tools.") and "<tools>\n{" in text
    trained = "".join(p.text for p in ex.pieces if p.trained)
    assert "<tool_call>" in trained and "tool_response" not in trained


def test_plain_format_reads_like_pairs(tok) -> None:
    one = Example.conversation([Turn("user", "Who?"), Turn("assistant", "Her.")], system="Be brief.")
    pair = Example("Who?", "Her.", system="Be brief.")
    plain = tokenize.segments(tok, one, use_chat_template=False).segments
    assert "".join(s.text for s in plain) == "".join(tokenize.render(tok, pair, use_chat_template=False))
    assert [s.text for s in plain if s.trained] == ["Her.<|im_end|>"]
    many = tokenize.segments(tok, chat(), use_chat_template=False).segments
    assert "".join(s.text for s in many) == "Be brief.\nHi\nHello there.<|im_end|>Who is Tamsin?\n" \
                                            "A sky-cartographer.<|im_end|>"


def test_a_template_that_rewrites_earlier_turns_falls_back_to_the_last_answer(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(tiny_model_dir)
    tok.chat_template = THINKING_TEMPLATE
    row = Example.conversation([Turn("user", "Hi"), Turn("assistant", "<think>greet</think>Hello."),
                                Turn("user", "Bye"), Turn("assistant", "<think>part</think>Farewell.")])
    enc = encode(tok, row, 512)
    assert enc.note == chat_render.TEMPLATE_FALLBACK_NOTE
    assert trained_text(tok, enc) == "<think>part</think>Farewell.<|im_end|>\n"
    full = tok.apply_chat_template(messages(row.turns, for_template=True), tokenize=False)
    assert tok.decode(enc.input_ids) == full  # the text is the template's, as a whole
    assert explain(tok, row, 512).note == enc.note


def test_the_compare_prompt_is_the_conversation_before_its_last_answer(tok, tool_tok) -> None:
    row = chat()
    assert render_prompt(tok, row) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        "Hello there.<|im_end|>\n<|im_start|>user\nWho is Tamsin?<|im_end|>\n<|im_start|>assistant\n")
    assert render_prompt(tok, row, use_chat_template=False) == "Be brief.\nHi\nHello there.<|im_end|>Who is Tamsin?\n"
    assert chat_render.question_text(row) == "Who is Tamsin?"
    prompt = render_prompt(tool_tok, tool_chat())
    assert prompt.endswith("<tool_response>\nsunny, 21 C\n</tool_response><|im_end|>\n<|im_start|>assistant\n")
    assert "It is sunny" not in prompt


def test_token_count_is_the_encoded_length(tok) -> None:
    for row in (chat(), tool_chat()):
        assert tokenize.token_count(tok, row) == len(encode(tok, row, 100_000).input_ids)
        assert tokenize.token_count(tok, row, tools_as_text=True) == len(
            encode(tok, row, 100_000, tools_as_text=True).input_ids)


def test_assistant_turns_setting_is_validated() -> None:
    cfg = RunConfig()
    assert cfg.training.assistant_turns == "all" and not cfg.training.tools_as_text
    cfg.training.assistant_turns = "first"
    assert [name for name, _ in cfg.problems()] == ["training.assistant_turns"]


def test_rows_whose_answers_lie_beyond_the_max_length_are_reported_by_the_checks(tok) -> None:
    from loradesk.core.checks import run_checks

    long_question = "Who is Tamsin Quillfeather of Vaelmoor? " * 12
    rows = [chat(), Example.conversation([Turn("user", long_question), Turn("assistant", "Her.")]),
            Example(long_question, "Her."), Example("Who?", "Her.")]
    starts = [tokenize.answer_start(tok, row) for row in rows]
    for row, start in zip(rows, starts, strict=True):  # the same answer as training's
        assert (encode(tok, row, 64).trained_tokens == 0) == (start >= 64)
    assert starts[1] >= 64 and starts[2] >= 64 and starts[0] < 64
    found = {r.key: r for r in run_checks(rows, max_length=64, answer_starts=starts)}
    result = found["untrained"]
    assert result.rows == (1, 2) and result.severity == "warning"
    assert result.message.startswith("In rows 2 and 3 every trained token lies beyond the max length of 64 tokens")
    assert result.fixes[0].max_length is not None and result.fixes[0].max_length > max(starts[1:3])
    assert all(encode(tok, row, result.fixes[0].max_length).trained_tokens for row in rows)
    assert "untrained" not in {r.key for r in run_checks(rows, max_length=64)}
    assert tokenize.answer_start(tok, Example.conversation([Turn("user", "Hi")])) == tokenize.NO_ANSWER


def test_a_template_that_refuses_a_conversation_is_named_not_a_crash(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(tiny_model_dir)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'tool' %}{{ raise_exception('no tools here') }}"
                         "{% endif %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(chat_render.TemplateError, match="the chat template refuses this conversation "
                                                        r"\(no tools here\)"):
        encode(tok, tool_chat(), 512)


def test_an_answer_that_opens_the_conversation_is_context(tok) -> None:
    row = Example.conversation([Turn("assistant", "Welcome!"), Turn("user", "Who?"), Turn("assistant", "Her.")])
    for templated in (True, False):
        enc = encode(tok, row, 512, use_chat_template=templated)
        assert trained_text(tok, enc) == ("Her.<|im_end|>\n" if templated else "Her.<|im_end|>")
    with_system = Example.conversation(row.turns, system="Be brief.")
    assert trained_text(tok, encode(tok, with_system, 512)) == "Welcome!<|im_end|>\nHer.<|im_end|>\n"
    alone = Example.conversation([Turn("assistant", "Welcome!"), Turn("user", "Bye")])
    assert encode(tok, alone, 512).trained_tokens == 0  # nothing to train: training skips it
