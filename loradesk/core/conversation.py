"""Conversations: the turns of a multi-turn row, tool calls, and their plain-data (OpenAI chat) form.

A row of the dataset is either a prompt/completion pair (the simple, common case) or a whole
conversation: a system prompt, an ordered tuple of :class:`Turn` (user, assistant and tool turns) and
the tools the assistant may call. Everything here is immutable and hashable, so a conversation row is
as cheap to snapshot, compare and undo as a pair.

The plain-data form of a conversation is OpenAI's chat format, the one the chat templates of
transformers read: ``{"role": "user" | "assistant" | "tool", "content": str}``, an assistant turn's
``tool_calls`` (``[{"id", "type": "function", "function": {"name", "arguments"}}]``, ``arguments``
as JSON text) and a tool turn's ``tool_call_id``/``name``. :func:`turns_from_messages` reads it back
with a one-line error naming the message and field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROLES = ("user", "assistant", "tool")


class ConversationError(ValueError):
    """A message list could not be read; ``field`` names the message and key (``messages[2].role``)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the assistant makes: ``arguments`` is the arguments object as JSON text."""

    name: str
    arguments: str = "{}"
    id: str = ""

    def arguments_object(self) -> Any:
        """The arguments as data (what chat templates expect); text that is not JSON stays text."""
        try:
            return json.loads(self.arguments) if self.arguments.strip() else {}
        except json.JSONDecodeError:
            return self.arguments


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation.

    ``role`` is ``user``, ``assistant`` or ``tool``. An assistant turn may carry ``tool_calls`` (its
    ``content`` may then be empty); a tool turn is a call's result, with the ``name`` of the function
    and the ``tool_call_id`` it answers when the data has them.
    """

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    name: str = ""
    tool_call_id: str = ""

    @property
    def has_output(self) -> bool:
        """An assistant turn that says or calls something (the turns that can carry loss)."""
        return self.role == "assistant" and bool(self.content.strip() or self.tool_calls)

    def texts(self) -> list[str]:
        """Every piece of text of the turn: its content, then each call's name and arguments."""
        out = [self.content]
        for call in self.tool_calls:
            out += [call.name, call.arguments]
        return out


def first_text(turns: Sequence[Turn], role: str) -> str:
    """The content of the first turn with ``role`` (``""`` when there is none)."""
    return next((t.content for t in turns if t.role == role), "")


def last_text(turns: Sequence[Turn], role: str) -> str:
    """The content of the last turn with ``role`` (``""`` when there is none)."""
    return next((t.content for t in reversed(turns) if t.role == role), "")


def signature(turns: Sequence[Turn], tools: str = "") -> str:
    """One string that differs whenever the conversation's text differs (for duplicate checks and splits);
    ``""`` when no assistant turn says or calls anything (nothing to learn: an "empty" row)."""
    if not any(t.has_output for t in turns):
        return ""
    parts = [tools.strip()]
    for t in turns:
        parts.append("\x1f".join((t.role, t.content.strip(), t.name, t.tool_call_id,
                                  *(f"{c.name}\x1d{c.arguments}\x1d{c.id}" for c in t.tool_calls))))
    return "\x1e".join(parts)


def tool_call_message(call: ToolCall, parse_arguments: bool = False) -> dict[str, Any]:
    """A call in OpenAI's form; ``parse_arguments`` gives the arguments as data (for chat templates)."""
    function: dict[str, Any] = {"name": call.name,
                                "arguments": call.arguments_object() if parse_arguments else call.arguments}
    out: dict[str, Any] = {"type": "function", "function": function}
    if call.id:
        out = {"id": call.id, **out}
    return out


def turn_message(turn: Turn, for_template: bool = False) -> dict[str, Any]:
    """A turn as an OpenAI chat message. ``for_template``: arguments as data, as chat templates read them."""
    msg: dict[str, Any] = {"role": turn.role, "content": turn.content}
    if turn.tool_calls:
        msg["tool_calls"] = [tool_call_message(c, for_template) for c in turn.tool_calls]
    if turn.role == "tool":
        if turn.tool_call_id:
            msg["tool_call_id"] = turn.tool_call_id
        if turn.name:
            msg["name"] = turn.name
    return msg


def messages(turns: Sequence[Turn], system: str = "", for_template: bool = False) -> list[dict[str, Any]]:
    """The conversation as OpenAI chat messages, the system prompt first when there is one."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    out += [turn_message(t, for_template) for t in turns]
    return out


def tools_list(tools: str) -> list[Any] | None:
    """The tools as data (``None`` when there are none); raises ``ValueError`` for text that is not a JSON list."""
    if not tools.strip():
        return None
    value = json.loads(tools)
    if not isinstance(value, list):
        raise ValueError("tools must be a JSON list")
    return value


def tools_text(tools: Any) -> str:
    """A tools list (data, or JSON text of one) as the compact JSON text a row keeps; ``""`` for none."""
    if tools is None or tools == "" or tools == []:
        return ""
    if isinstance(tools, str):
        tools = json.loads(tools)
    if not isinstance(tools, list):
        raise ValueError(f"tools must be a list, got {type(tools).__name__}")
    return json.dumps(tools, ensure_ascii=False, separators=(",", ":")) if tools else ""


def arguments_text(arguments: Any) -> str:
    """Call arguments (an object, or JSON text of one) as JSON text, unchanged when already text."""
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


def _text(value: Any, field: str, optional: bool = False) -> str:
    if isinstance(value, str):
        return value
    if value is None and optional:
        return ""
    raise ConversationError(field, f"must be text, got {type(value).__name__ if value is not None else 'null'}")


def turns_from_messages(msgs: Sequence[Mapping[str, Any]], key: str = "messages") -> tuple[str, tuple[Turn, ...]]:
    """``(system, turns)`` from OpenAI chat messages as :func:`messages` writes them (system messages are
    joined with a blank line); every problem raises :class:`ConversationError` naming ``key[i].field``."""
    systems: list[str] = []
    turns: list[Turn] = []
    for i, msg in enumerate(msgs):
        where = f"{key}[{i}]"
        if not isinstance(msg, Mapping):
            raise ConversationError(where, "must be an object")
        role = _text(msg.get("role"), f"{where}.role")
        if role == "system":
            systems.append(_text(msg.get("content"), f"{where}.content", optional=True))
            continue
        if role not in ROLES:
            raise ConversationError(f"{where}.role", f"{role!r} is not one of system, {', '.join(ROLES)}")
        calls: list[ToolCall] = []
        for j, call in enumerate(msg.get("tool_calls") or ()):
            cwhere = f"{where}.tool_calls[{j}]"
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping):
                raise ConversationError(cwhere, "must be an object with a function")
            calls.append(ToolCall(_text(function.get("name"), f"{cwhere}.function.name"),
                                  arguments_text(function.get("arguments", {})),
                                  _text(call.get("id"), f"{cwhere}.id", optional=True)))
        turns.append(Turn(role, _text(msg.get("content"), f"{where}.content", optional=True), tuple(calls),
                          _text(msg.get("name"), f"{where}.name", optional=True),
                          _text(msg.get("tool_call_id"), f"{where}.tool_call_id", optional=True)))
    return "\n\n".join(s for s in systems if s), tuple(turns)
