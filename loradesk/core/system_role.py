"""Chat templates without a system role: the system prompt goes at the start of the first user message.

Gemma's (1 and 2) and Mistral's v0.1/v0.2 templates refuse a system message outright (``raise_exception``);
some others drop it without a word. For such a template a row's system prompt is put at the start of its
first user message, followed by a blank line — what Gemma 3's own template does with a system message —
so a dataset with system prompts trains (and is asked) the same on every model, and never loses its
system text. Training and generation both hand the template messages through :func:`template_messages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loradesk.core.dataset import Example
from loradesk.core.wording import plural

#: A system prompt no real data uses: the probe looks for it in the rendered text.
PROBE = "loradesk_system_probe_3c9a"

_KNOWN: dict[str, bool] = {}  # chat template text -> whether it keeps a system message


def has_system_role(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template writes a system message (True without a template: the plain
    format writes the system prompt itself). Cached per template text."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return True
    key = template if isinstance(template, str) else repr(template)
    known = _KNOWN.get(key)
    if known is None:
        probe = [{"role": "system", "content": PROBE}, {"role": "user", "content": "hello"}]
        try:
            known = PROBE in tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        except Exception:  # jinja errors and the template's own raise_exception() of all kinds
            known = False
        _KNOWN[key] = known
    return known


def template_messages(tokenizer: Any, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` as the template takes them: unchanged when the template has a system role or there is
    no system message; else the system message's text put at the start of the first user message."""
    if not messages or messages[0].get("role") != "system" or has_system_role(tokenizer):
        return messages
    system, rest = messages[0].get("content") or "", list(messages[1:])
    if not isinstance(system, str):
        return messages
    for n, message in enumerate(rest):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            rest[n] = {**message, "content": f"{system}\n\n{message['content']}" if message["content"] else system}
            return rest
    return [{"role": "user", "content": system}, *rest]


def folded_note(tokenizer: Any, rows: Sequence[Example], use_chat_template: bool = True) -> str | None:
    """What a run logs when rows have a system prompt that the template has no role for (else None)."""
    if not use_chat_template:
        return None
    with_system = [n for n, row in enumerate(rows) if row.system]
    if not with_system or has_system_role(tokenizer):
        return None
    return (f"This model's chat template has no system role: the system prompt of {plural(len(with_system), 'row')} "
            f"(row {with_system[0] + 1} first) is put at the start of its first user message")
