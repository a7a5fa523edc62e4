"""Conversation rows as training text: the chat template turn by turn, with the loss on assistant turns.

A conversation row (:attr:`Example.turns <loradesk.core.dataset.Example.turns>`) is rendered WHOLE through
the model's chat template and cut into :class:`Segment` s at the message boundaries, each tokenized on its
own (so where the loss starts and stops is exact, as for a pair). The boundaries come from rendering
growing prefixes of the conversation: message ``m`` is ``render(msgs[:m + 1])`` minus ``render(msgs[:m])``;
an assistant message is split once more after its header (``render(msgs[:m], add_generation_prompt=True)``),
so its header carries no loss and its body (the answer or the tool calls, and the end-of-turn marker) does.

Which assistant turns carry loss is a setting (``assistant_turns``: ``"all"`` or ``"last"``); user, tool
and system text never does (unless completion-only loss is off: then everything is trained), nor does an
assistant turn that opens the conversation before any system prompt or user turn (a greeting answers
nothing, and the template gives no header to tell it from its text).

**Templates whose prefixes do not add up.** Some templates render an earlier turn differently once later
turns follow (Qwen3 drops the reasoning of earlier answers). Then the exact per-turn split is impossible,
and the row falls back to its last assistant turn: the text before it (rendered as the template renders it
when that turn is the last) carries no loss and only that turn is trained; :attr:`Rendered.note` says so.
A template that does not even keep that prefix raises :class:`TemplateError`: a row is never trained with
a wrong mask.

**Plain format** (chat template off, or a model without one): the system prompt and a line break, then each
turn in order: a user turn is its text and a line break, an assistant turn its text and the EOS token
(a one-question conversation reads exactly like a pair: ``system\\nprompt\\ncompletion<eos>``), a tool turn
``<tool_response>\\n...\\n</tool_response>`` and a line break. Tool calls and the tools list are written as
text in this format, as below.

**Tool calls as text** (the ``tools_as_text`` setting, and the plain format), in the Hermes form that
Qwen2.5 and many tool-calling models use: each call is ``<tool_call>\\n{"name": ..., "arguments": {...}}
\\n</tool_call>`` in the assistant turn (after its text, one per line), each tool result a user-side turn
``<tool_response>\\n...\\n</tool_response>``, and the tools list goes after the system prompt in a
``<tools></tools>`` block, one JSON object per line. Without it, tool calls, results and the tools list go
to the template (``tools=``), which is right only when the template writes them: see
:func:`supports_tools`; training refuses tool rows for a template that does not.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loradesk.core import system_role
from loradesk.core.conversation import ToolCall, Turn, messages, tools_list
from loradesk.core.dataset import Example

TOOLS_HEADER = ("You can call these tools. To call one, answer with <tool_call>\n"
                '{"name": <tool name>, "arguments": <arguments object>}\n</tool_call>; '
                "each result comes back in <tool_response></tool_response>.\n<tools>\n")
TOOLS_FOOTER = "\n</tools>"

#: The probe conversation of :func:`supports_tools`: names no real data uses.
PROBE_TOOL = "loradesk_probe_tool_4f1d"
PROBE_RESULT = "loradesk_probe_result_9b2e"
TEMPLATE_FALLBACK_NOTE = ("the chat template renders earlier turns differently once later turns follow, so "
                          "only the last assistant turn is trained")


class TemplateError(ValueError):
    """The chat template cannot be split into turns for this row (the message says why)."""


@dataclass(frozen=True)
class Segment:
    """A stretch of a row's training text: ``trained`` when it carries loss.

    ``turn`` is the index of the row's turn it belongs to (-1: the system prompt, or template text before
    the first turn) and ``role`` that turn's role (``"system"`` for the system prompt, ``""`` for text
    that belongs to no single turn).
    """

    text: str
    trained: bool
    turn: int = -1
    role: str = ""


@dataclass
class Rendered:
    """A conversation's segments in order; ``note`` says when the template forced a fallback."""

    segments: list[Segment]
    note: str = ""


def has_tool_parts(row: Example) -> bool:
    """Whether a row has tool calls, tool results or a tools list."""
    return bool(row.tools) or any(t.tool_calls or t.role == "tool" for t in row.turns)


_SUPPORT: dict[int, tuple[Any, bool]] = {}
_SUPPORT_LOCK = threading.Lock()


def supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template writes tool calls and tool results (cached per tokenizer).

    A probe conversation with a uniquely named tool call and a unique result is rendered; both names must
    appear in the text. (SmolLM2's template, for one, prints only each message's content and drops calls.)
    """
    with _SUPPORT_LOCK:
        known = _SUPPORT.get(id(tokenizer))
        if known is not None and known[0] is tokenizer:
            return known[1]
    call = ToolCall(PROBE_TOOL, '{"x": 1}', "call_0")
    turns = (Turn("user", "probe"), Turn("assistant", "", (call,)),
             Turn("tool", PROBE_RESULT, name=PROBE_TOOL, tool_call_id="call_0"), Turn("assistant", "done"))
    schema = [{"type": "function", "function": {"name": PROBE_TOOL, "description": "probe",
                                                "parameters": {"type": "object", "properties": {}}}}]
    try:
        text = tokenizer.apply_chat_template(messages(turns, for_template=True), tools=schema, tokenize=False)
        ok = PROBE_TOOL in text and PROBE_RESULT in text
    except Exception:  # a template that raises on tool messages (jinja errors of all kinds) has no support
        ok = False
    with _SUPPORT_LOCK:
        _SUPPORT[id(tokenizer)] = (tokenizer, ok)
    return ok


# --- tool calls as text ------------------------------------------------------------------------------------
def call_text(call: ToolCall) -> str:
    """One call in the Hermes form: ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``."""
    body = json.dumps({"name": call.name, "arguments": call.arguments_object()}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def assistant_text(turn: Turn) -> str:
    """An assistant turn's text with its calls written out (one per line, after the text)."""
    return "\n".join([*([turn.content] if turn.content else []), *map(call_text, turn.tool_calls)])


def tool_result_text(turn: Turn) -> str:
    """A tool turn's result as the user-side text of the Hermes form."""
    return f"<tool_response>\n{turn.content}\n</tool_response>"


def system_text(system: str, tools: str) -> str:
    """The system prompt with the tools list after it in a ``<tools>`` block (just the prompt without tools)."""
    listed = tools_list(tools) if tools else None
    if not listed:
        return system
    block = TOOLS_HEADER + "\n".join(json.dumps(t, ensure_ascii=False) for t in listed) + TOOLS_FOOTER
    return f"{system}\n\n{block}" if system else block


def text_messages(turns: Sequence[Turn], system: str, tools: str) -> list[dict[str, str]]:
    """The conversation as plain chat messages with calls, results and tools written as text."""
    head = system_text(system, tools)
    out = [{"role": "system", "content": head}] if head else []
    for turn in turns:
        if turn.role == "assistant":
            out.append({"role": "assistant", "content": assistant_text(turn)})
        elif turn.role == "tool":
            out.append({"role": "user", "content": tool_result_text(turn)})
        else:
            out.append({"role": turn.role, "content": turn.content})
    return out


def template_input(tokenizer: Any, row: Example, tools_as_text: bool) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """``(messages, tools)`` to hand the chat template for a conversation row (the system prompt in the first
    user message for a template without a system role: :mod:`loradesk.core.system_role`)."""
    if tools_as_text and has_tool_parts(row):
        msgs, tools = text_messages(row.turns, row.system, row.tools), None
    else:
        msgs, tools = messages(row.turns, row.system, for_template=True), tools_list(row.tools)
    return system_role.template_messages(tokenizer, msgs), tools


# --- segments ------------------------------------------------------------------------------------------------
def trained_turns(turns: Sequence[Turn], completion_only: bool, assistant_turns: str) -> set[int]:
    """The indexes of the turns that carry loss (every one when ``completion_only`` is off)."""
    if not completion_only:
        return set(range(len(turns)))
    answers = [k for k, t in enumerate(turns) if t.has_output]
    return set(answers[-1:] if assistant_turns == "last" else answers)


def segments(tokenizer: Any, row: Example, templated: bool, completion_only: bool = True,
             assistant_turns: str = "all", tools_as_text: bool = False) -> Rendered:
    """A conversation row's training text as segments (see the module docstring for the rules)."""
    trained = trained_turns(row.turns, completion_only, assistant_turns)
    if not templated:
        return Rendered(_plain(tokenizer, row, trained, completion_only))
    msgs, tools = template_input(tokenizer, row, tools_as_text)
    offset = len(msgs) - len(row.turns)  # the system message, when there is one
    eos = tokenizer.eos_token or ""

    def render(n: int, generation: bool = False) -> str:
        try:
            return tokenizer.apply_chat_template(msgs[:n], tools=tools, tokenize=False,
                                                 add_generation_prompt=generation)
        except Exception as exc:  # jinja's errors and the template's own raise_exception() of all kinds
            raise TemplateError(f"the chat template refuses this conversation ({exc})") from None

    out: list[Segment] = []
    done = ""
    try:
        for m in range(len(msgs)):
            k = m - offset
            role = row.turns[k].role if k >= 0 else "system"
            opening = m == 0  # an answer that opens the conversation answers nothing: context, no loss
            if role == "assistant" and not opening:
                head = render(m, generation=True)
                if not head.startswith(done):
                    raise TemplateError("prefix")
                out.append(Segment(head[len(done):], not completion_only, k, role))
                done = head
            upto = render(m + 1)
            if not upto.startswith(done):
                raise TemplateError("prefix")
            out.append(Segment(upto[len(done):], (k in trained and not opening) or not completion_only, k, role))
            done = upto
    except TemplateError:  # a prefix the template renders differently, or refuses: the last answer alone
        return _last_turn_only(row, msgs, render, trained, completion_only, offset, eos)
    last = out[-1]
    if last.trained and last.role == "assistant" and eos and eos not in last.text:
        out[-1] = dataclasses.replace(last, text=last.text + eos)
    return Rendered([s for s in out if s.text])


def _last_turn_only(row: Example, msgs: list[dict[str, Any]], render: Any, trained: set[int],
                    completion_only: bool, offset: int, eos: str) -> Rendered:
    """The fallback for a template whose prefixes do not add up: loss on the last trained assistant turn."""
    full = render(len(msgs))
    if not completion_only:
        return Rendered([Segment(full, True)], TEMPLATE_FALLBACK_NOTE)
    if not trained:
        return Rendered([Segment(full, False)], TEMPLATE_FALLBACK_NOTE)
    k = max(trained)
    m = k + offset
    head = render(m, generation=True) if m else ""
    upto = render(m + 1)
    if not m or not upto.startswith(head) or not full.startswith(upto):
        raise TemplateError("the chat template renders this conversation's turns differently depending on what "
                            "follows them, so its answers cannot be told apart from the rest: turn off "
                            "'Use chat template' or use another model")
    answer = upto[len(head):]
    if eos and m + 1 == len(msgs) and eos not in answer:
        answer += eos
    parts = [Segment(head, False), Segment(answer, True, k, "assistant"), Segment(full[len(upto):], False)]
    return Rendered([s for s in parts if s.text], TEMPLATE_FALLBACK_NOTE)


def _plain(tokenizer: Any, row: Example, trained: set[int], completion_only: bool) -> list[Segment]:
    eos = tokenizer.eos_token or ""
    out: list[Segment] = []
    head = system_text(row.system, row.tools)
    if head:
        out.append(Segment(head + "\n", not completion_only, -1, "system"))
    for k, turn in enumerate(row.turns):
        if turn.role == "assistant":  # an opening answer (nothing before it) is context, as with a template
            out.append(Segment(assistant_text(turn) + eos, (k in trained and (k > 0 or bool(head))) or
                               not completion_only, k, "assistant"))
        elif turn.role == "tool":
            out.append(Segment(tool_result_text(turn) + "\n", k in trained, k, "tool"))
        else:
            out.append(Segment(turn.content + "\n", k in trained, k, turn.role))
    return out


def prompt_text(tokenizer: Any, row: Example, templated: bool, tools_as_text: bool = False) -> str:
    """What the model is given to answer a conversation row: its turns up to (not including) the last
    assistant turn, with the template's generation prompt (in the plain format: the text before that turn)."""
    last = max((k for k, t in enumerate(row.turns) if t.role == "assistant"), default=len(row.turns))
    before = Example.conversation(row.turns[:last], row.system, row.split, row.tools)
    if not templated:
        return "".join(s.text for s in _plain(tokenizer, before, set(), True))
    msgs, tools = template_input(tokenizer, before, tools_as_text)
    if not msgs:
        msgs = [{"role": "user", "content": ""}]
    return tokenizer.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=True)


def question_text(row: Example) -> str:
    """The last user message before a conversation's last assistant turn (what Compare shows as the question)."""
    last = max((k for k, t in enumerate(row.turns) if t.role == "assistant"), default=len(row.turns))
    return next((t.content for t in reversed(row.turns[:last]) if t.role == "user"), row.prompt)


def clip_turns(row: Example, limit: int, fix: Any) -> tuple[Example, bool]:
    """A conversation row with every text cut to ``limit`` characters and ``fix`` applied to each
    (lone surrogates); ``True`` when something was cut. A tools list over the limit is dropped (the row is
    then known only to be longer than the max length, as every cut row)."""
    texts = [row.system, row.tools, *(x for t in row.turns for x in t.texts())]
    clipped = any(len(x) > limit for x in texts)

    def cut(text: str) -> str:
        return fix(text[:limit])

    turns = tuple(dataclasses.replace(t, content=cut(t.content), tool_calls=tuple(
        dataclasses.replace(c, name=cut(c.name), arguments=cut(c.arguments)) for c in t.tool_calls))
        for t in row.turns)
    tools = row.tools if len(row.tools) <= limit else ""
    return Example.conversation(turns, cut(row.system), row.split, fix(tools)), clipped
