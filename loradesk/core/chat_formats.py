"""Conversations in dataset files: ShareGPT and OpenAI chat records to rows, and rows back to those records.

Reading (:func:`chat_rows`) gives one conversation row per record by default (``conversations="whole"``):
every user, assistant and tool message in order, consecutive messages of one role kept as separate turns,
the system prompt (a record's top-level ``system``, then its system messages, joined with a blank line)
and the ``tools`` list (a list, or JSON text of one as LLaMA-Factory writes it). A record that is just one
user message and one assistant reply (no tools) is a plain prompt/completion pair: the same thing, cheaper.

* ShareGPT (``conversations``, messages ``{"from", "value"}``): ``system``; ``human``/``user``;
  ``gpt``/``assistant``/``chatgpt``; ``function_call`` (the value is JSON text of ``{"name", "arguments"}``
  or of a list of them: an assistant turn making those calls); ``observation``/``tool`` (a tool result).
* OpenAI (``messages``, ``{"role", "content"}``): ``system``/``developer``; ``user``; ``assistant`` (with
  ``tool_calls``, or the older ``function_call``); ``tool`` (``tool_call_id``, ``name``) and the older
  ``function``. ``content`` may be a list of parts: text parts (``{"type": "text", "text" | "value"}``, or
  plain strings) are joined; other parts (images, audio) are left out.

A record whose assistant never says or calls anything is an error. ``conversations="pairs"`` cuts a record
into prompt/completion pairs instead: each user message and the assistant reply after it (runs of one side
joined with a blank line; earlier turns not folded in; the system prompt on every pair). A conversation
with tool calls or tool results is refused in that mode: its replies rest on tool results a pair cannot hold.

Writing (:func:`chat_record`) is the inverse: OpenAI messages (arguments as JSON text, ``tools`` a list), or
ShareGPT with the system prompt as a first ``system`` message, calls as ``function_call`` JSON text
(arguments as an object, a call's ``id`` kept) and ``tools`` as JSON text, like LLaMA-Factory.

Problems raise :class:`~loradesk.core.conversation.ConversationError` naming the field
(``conversations[2].value``); the file reader adds the file and record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from loradesk.core.conversation import (
    ConversationError,
    ToolCall,
    Turn,
    arguments_text,
    messages,
    tools_list,
    tools_text,
)
from loradesk.core.dataset import Example
from loradesk.core.jsonsafe import JSONLimitError, loads, syntax_error
from loradesk.core.wording import brief, kind

Conversations = Literal["whole", "pairs"]
#: How conversation records become rows: one row each, or cut into prompt/completion pairs.
CONVERSATIONS: tuple[Conversations, ...] = ("whole", "pairs")
#: The key holding a record's messages, by record shape.
CHAT_KEYS = {"sharegpt": "conversations", "openai": "messages"}

SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "function_call": "call",
                  "observation": "tool", "tool": "tool"}
OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
                "tool": "tool", "function": "tool"}


def check_mode(conversations: str) -> None:
    """Raise ``ValueError`` unless ``conversations`` is one of :data:`CONVERSATIONS`."""
    if conversations not in CONVERSATIONS:
        raise ValueError(f"conversations must be one of {', '.join(CONVERSATIONS)}, not {conversations!r}")


def record_shape(rec: Mapping[str, Any]) -> str | None:
    """``sharegpt`` or ``openai`` when the record's keys say so (its messages key), else None."""
    keys = {str(k).strip().lower() for k in rec}
    return next((shape for shape, key in CHAT_KEYS.items() if key in keys), None)


def chat_rows(rec: Mapping[str, Any], shape: str, split: str = "auto",
              conversations: Conversations = "whole") -> list[Example]:
    """The row (or, with ``conversations="pairs"``, the rows) of one ShareGPT or OpenAI record."""
    key = _key(rec, CHAT_KEYS[shape])
    system, turns, indices = _turns(rec, key, shape)
    tools = _tools(rec)
    if conversations == "pairs":
        return _pair_rows(key, system, turns, indices, split, tools)
    if not any(t.has_output for t in turns):
        raise ConversationError(key, f"field {brief(key)} has no assistant message that says or calls anything")
    if not tools and len(turns) == 2 and turns[0].role == "user" and turns[1].role == "assistant" \
            and not turns[1].tool_calls:
        return [Example(turns[0].content, turns[1].content, system, split)]  # one exchange: a plain pair
    return [Example.conversation(turns, system, split, tools)]


def chat_record(row: Example, fmt: str) -> dict[str, Any]:
    """A conversation row as an ``openai`` or ``sharegpt`` record (the inverse of :func:`chat_rows`)."""
    if fmt == "openai":
        rec: dict[str, Any] = {"messages": messages(row.turns, row.system)}
        tools = tools_list(row.tools)
        if tools is not None:
            rec["tools"] = tools
        return rec
    conv = [{"from": "system", "value": row.system}] if row.system else []
    for turn in row.turns:
        if turn.role == "user":
            conv.append({"from": "human", "value": turn.content})
        elif turn.role == "tool":
            conv.append({"from": "observation", "value": turn.content})
        else:
            if turn.content or not turn.tool_calls:
                conv.append({"from": "gpt", "value": turn.content})
            if turn.tool_calls:
                conv.append({"from": "function_call", "value": _calls_text(turn.tool_calls)})
    rec = {"conversations": conv}
    if row.tools:  # JSON text with json.dumps' usual spacing, as LLaMA-Factory's files (and most tools) write it
        rec["tools"] = json.dumps(tools_list(row.tools), ensure_ascii=False)
    return rec


# --- reading ---------------------------------------------------------------------------------------------
def _key(rec: Mapping[str, Any], name: str) -> str:
    """The record's key called ``name``: exactly, else the one matching case-insensitively."""
    if name in rec:
        return name
    return next((k for k in rec if isinstance(k, str) and k.strip().lower() == name), name)


def _text(msg: Mapping[str, Any], key: str, field: str, optional: bool = False) -> str:
    value = msg.get(key)
    if isinstance(value, str):
        return value
    if value is None and optional:
        return ""
    if key not in msg:
        raise ConversationError(field, f"missing field {brief(field)}")
    raise ConversationError(field, f"field {brief(field)} must be text, got {kind(value)}")


def _turns(rec: Mapping[str, Any], key: str, shape: str) -> tuple[str, tuple[Turn, ...], list[int]]:
    """The system prompt, the turns and each turn's message index."""
    msgs = rec.get(key)
    if key not in rec:
        raise ConversationError(key, f"missing field {brief(key)}")
    if not isinstance(msgs, list):
        raise ConversationError(key, f"field {brief(key)} must be a list of messages, got {kind(msgs)}")
    systems = [_text(rec, "system", "system", optional=True)]
    turns: list[Turn] = []
    indices: list[int] = []
    roles = SHAREGPT_ROLES if shape == "sharegpt" else OPENAI_ROLES
    for i, msg in enumerate(msgs):
        where = f"{key}[{i}]"
        if not isinstance(msg, Mapping):
            raise ConversationError(where, f"field {brief(where)} must be an object, got {kind(msg)}")
        role_key, text_key = ("from", "value") if shape == "sharegpt" else ("role", "content")
        if role_key not in msg and "role" in msg:  # ShareGPT written with OpenAI-style keys
            role_key, text_key = "role", "content"
        role = _text(msg, role_key, f"{where}.{role_key}")
        side = roles.get(role.strip().lower())
        if side is None:
            raise ConversationError(f"{where}.{role_key}", f"field '{where}.{role_key}' is {brief(role)}; "
                                                           f"expected one of {', '.join(roles)}")
        field = f"{where}.{text_key}"
        if side == "system":
            systems.append(_content(msg, text_key, field))
            continue
        if side == "call":
            turn = Turn("assistant", "", _sharegpt_calls(_text(msg, text_key, field), field))
        elif shape == "sharegpt":
            turn = Turn(side, _text(msg, text_key, field))
        else:
            turn = _openai_turn(msg, side, role.strip().lower(), where, field)
        turns.append(turn)
        indices.append(i)
    return "\n\n".join(s for s in systems if s), tuple(turns), indices


def _openai_turn(msg: Mapping[str, Any], side: str, role: str, where: str, field: str) -> Turn:
    if side == "assistant":
        calls = _openai_calls(msg, where)
        content = _content(msg, "content", field, optional=bool(calls))
        return Turn("assistant", content, calls)
    content = _content(msg, "content", field)
    if side == "tool":
        return Turn("tool", content, name=_text(msg, "name", f"{where}.name", optional=True),
                    tool_call_id="" if role == "function" else
                    _text(msg, "tool_call_id", f"{where}.tool_call_id", optional=True))
    return Turn(side, content)


def _content(msg: Mapping[str, Any], key: str, field: str, optional: bool = False) -> str:
    """A message's text: a string, or the text of a list of content parts (other parts are left out)."""
    value = msg.get(key)
    if not isinstance(value, list):
        return _text(msg, key, field, optional)
    texts: list[str] = []
    for j, part in enumerate(value):
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            raise ConversationError(f"{field}[{j}]", f"field '{field}[{j}]' must be a content part (an object), "
                                                     f"got {kind(part)}")
        if part.get("type") == "text":
            text_key = "text" if "text" in part or "value" not in part else "value"
            texts.append(_text(part, text_key, f"{field}[{j}].{text_key}"))
    return "".join(texts)


def _openai_calls(msg: Mapping[str, Any], where: str) -> tuple[ToolCall, ...]:
    calls = msg.get("tool_calls")
    if calls is None and isinstance(msg.get("function_call"), Mapping):  # the older single-call form
        return (_call(msg["function_call"], f"{where}.function_call"),)
    if calls is None:
        return ()
    if not isinstance(calls, list):
        raise ConversationError(f"{where}.tool_calls", f"field '{where}.tool_calls' must be a list, got {kind(calls)}")
    out: list[ToolCall] = []
    for j, call in enumerate(calls):
        cwhere = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            raise ConversationError(f"{cwhere}.function", f"field '{cwhere}.function' must be an object with "
                                                          "name and arguments")
        out.append(_call(function, f"{cwhere}.function", _text(call, "id", f"{cwhere}.id", optional=True)))
    return tuple(out)


def _call(function: Mapping[str, Any], where: str, call_id: str = "") -> ToolCall:
    """A call from ``{"name", "arguments"}`` (arguments an object or JSON text; missing: none)."""
    name = _text(function, "name", f"{where}.name")
    arguments = function.get("arguments")
    call_id = call_id or _text(function, "id", f"{where}.id", optional=True)
    return ToolCall(name, "{}" if arguments is None else arguments_text(arguments), call_id)


def _sharegpt_calls(value: str, field: str) -> tuple[ToolCall, ...]:
    """The calls of a ShareGPT ``function_call`` value: JSON text of one call or of a list of calls."""
    try:
        data = loads(value)
    except json.JSONDecodeError as exc:
        raise ConversationError(field, f"field {brief(field)} is not valid JSON ({syntax_error(exc)} at column "
                                       f"{exc.colno}); expected {{\"name\": ..., \"arguments\": ...}}") from None
    except JSONLimitError as exc:
        raise ConversationError(field, f"field {brief(field)} is {exc}") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ConversationError(field, f"field {brief(field)} is an empty list of calls")
    calls: list[ToolCall] = []
    for j, item in enumerate(items):
        where = f"{field}[{j}]" if isinstance(data, list) else field
        if not isinstance(item, Mapping):
            raise ConversationError(where, f"field {brief(where)} must be a call {{\"name\", \"arguments\"}}, "
                                           f"got {kind(item)}")
        calls.append(_call(item, where))
    return tuple(calls)


def _tools(rec: Mapping[str, Any]) -> str:
    """The record's ``tools`` as the compact JSON text a row keeps (``""`` for none)."""
    value = rec.get("tools")
    if isinstance(value, str) and value.strip():
        try:
            value = loads(value)
        except json.JSONDecodeError as exc:
            raise ConversationError("tools", f"field 'tools' is not valid JSON ({syntax_error(exc)} at column "
                                             f"{exc.colno})") from None
        except JSONLimitError as exc:
            raise ConversationError("tools", f"field 'tools' is {exc}") from None
    if value is None or value == "":
        return ""
    if not isinstance(value, list):
        raise ConversationError("tools", f"field 'tools' must be a list of tools (or JSON text of one), "
                                         f"got {kind(value)}")
    return tools_text(value)


# --- pairs -----------------------------------------------------------------------------------------------
def _pair_rows(key: str, system: str, turns: Sequence[Turn], indices: Sequence[int], split: str,
               tools: str) -> list[Example]:
    for turn, i in zip(turns, indices, strict=True):
        if turn.role == "tool" or turn.tool_calls:
            what = "a tool result" if turn.role == "tool" else "a tool call"
            raise ConversationError(f"{key}[{i}]", f"field '{key}[{i}]' is {what}: a conversation with tool calls "
                                                   "cannot be split into pairs (its replies rest on the tool "
                                                   "results); import it whole")
    if tools:
        raise ConversationError("tools", "field 'tools' lists tools: a conversation with tools cannot be split "
                                         "into pairs; import it whole")
    rows = [Example(prompt, completion, system, split) for prompt, completion in _pairs(turns)]
    if not rows:
        raise ConversationError(key, f"field {brief(key)} has no user message followed by an assistant reply")
    return rows


def _pairs(turns: Sequence[Turn]) -> Iterator[tuple[str, str]]:
    """User→assistant pairs; runs of one side are joined with a blank line (see the module docstring)."""
    users: list[str] = []
    replies: list[str] = []
    for turn in turns:
        if turn.role == "user":
            if replies:
                if users:
                    yield "\n\n".join(users), "\n\n".join(replies)
                users, replies = [], []
            users.append(turn.content)
        else:
            replies.append(turn.content)
    if users and replies:
        yield "\n\n".join(users), "\n\n".join(replies)


# --- writing ---------------------------------------------------------------------------------------------
def _calls_text(calls: Sequence[ToolCall]) -> str:
    """ShareGPT's ``function_call`` value: JSON text of the call (a list when there are several)."""
    items = [{"name": c.name, "arguments": c.arguments_object(), **({"id": c.id} if c.id else {})} for c in calls]
    return json.dumps(items[0] if len(items) == 1 else items, ensure_ascii=False)
