"""Files that are not plain SFT data: feedback labels, preference pairs and images, screened before reading.

Every row LoRA Desk reads is an answer to learn. Some data sets hold more than that, and reading them as
plain prompt/completion data would teach the model the answers it should avoid. :func:`screen` looks at the
parsed records before the column rules of :mod:`loradesk.core.formats` read them, and returns the records to
read (in a shape those rules know) with one-line notes for the user:

* **Feedback labels** (KTO style: ``prompt``/``completion`` and a ``label``, ``kto_tag``, ``kto_label`` or
  ``desirable`` column): only the rows labelled good are read; the note says how many were skipped. A label
  is true/false, 1/0, yes/no, good/bad or desirable/undesirable; any other value is an error naming the row
  and field. A file whose every row is labelled bad is refused. Without an answer column (nor a mapping)
  the labels wait: the column rules ask for a mapping first.
* **Preference pairs** (DPO style: ``chosen``/``rejected``): the chosen answers become the completions and the
  rejected ones are not used. The prompt is a ``prompt``, ``question``, ``instruction`` (with ``input``) or
  ``query`` column, or the conversation before the answer: ``chosen`` may be text, one message or a list of
  chat messages (UltraFeedback), with the prompt as text, a message list or ShareGPT ``conversations``;
  Anthropic HH's ``"\\n\\nHuman: ... \\n\\nAssistant: ..."`` text (in ``chosen`` or in the prompt) is
  split into turns. A file with ``rejected`` answers but no ``chosen`` ones is refused; text answers without
  a prompt column are left to the column rules, which ask for a mapping.
* **Images** (an ``images``/``image`` field, ``<image>`` tags in the text, or chat content parts of type
  ``image``/``image_url``): the text is read as it is (tags stay), image parts are left out of the message,
  and a note says the images are not used.

A file without any of this costs a look at the first records (their columns, and whether one of the first
:data:`IMAGE_SNIFF` references an image): no pass over its rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loradesk.core.conversation import ConversationError, turns_from_messages
from loradesk.core.wording import brief, plural

Records = list[tuple[int, Mapping[str, Any]]]
#: ``error(record number or None, message, field)``: the exception to raise, naming the source.
ErrorFactory = Callable[[int | None, str, str | None], Exception]

LABEL_NAMES = ("label", "kto_tag", "kto_label", "desirable")
GOOD_LABELS = frozenset({"true", "1", "yes", "good", "desirable", "positive", "chosen"})
BAD_LABELS = frozenset({"false", "0", "no", "bad", "undesirable", "negative", "rejected"})
PROMPT_NAMES = ("prompt", "question", "instruction", "query", "conversations", "messages")
#: Columns that hold answers (as the column rules of :mod:`loradesk.core.formats` and preference pairs name them).
ANSWER_NAMES = ("completion", "answer", "output", "response", "target", "chosen", "conversations", "messages")
IMAGE_FIELDS = ("images", "image")
IMAGE_TAG = "<image>"
IMAGE_PARTS = frozenset({"image", "image_url", "input_image"})
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "system": "system"}
#: How Anthropic HH text starts (a prompt column in this form is split into turns too).
HH_START = "\n\nHuman:"
_TRANSCRIPT = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")
#: How many of the first records decide whether a file references images at all.
IMAGE_SNIFF = 1_000


@dataclass
class Screened:
    """What :func:`screen` leaves to read: the records, their columns (None: unchanged) and the notes."""

    records: Records
    columns: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def screen(records: Records, columns: Sequence[str], mapping: Mapping[str, str] | None, error: ErrorFactory,
           *, reshape: bool = True) -> Screened:
    """Screen parsed ``records`` (``columns``: those of the first records) for labels, preferences and images.

    ``mapping`` (the user's column choice) keeps its columns from being taken for labels and turns the
    preference rule off; so does ``reshape=False`` (a record shape the caller forced). Raises ``error(...)``
    for a bad label, a bad preference record, or a file with nothing to learn from.
    """
    out = Screened(records)
    mapped = {c.lower() for c in (mapping or {}).values()}
    # without an answer column the column rules ask for a mapping first; the labels are screened after it
    label = _column(columns, LABEL_NAMES, mapped) if mapping or _column(columns, ANSWER_NAMES) else None
    if label is not None:
        out.records = _good_rows(out.records, label, error, out.notes)
    _images(out, columns)
    if reshape and not mapping:
        _preferences(out, columns, error)
        if label is not None and out.columns is None:
            _chat_pairs(out, columns, error)
    return out


@dataclass(frozen=True)
class Needed:
    """The columns :func:`screen` reads; ``complete``: they are all the columns the read needs (preferences)."""

    columns: list[str]
    complete: bool = False


def columns_needed(columns: Sequence[str], mapping: Mapping[str, str] | None) -> Needed:
    """The columns :func:`screen` reads besides the usual ones (a Hub import keeps them when it slims a split)."""
    names = [*LABEL_NAMES, *IMAGE_FIELDS]
    complete = not mapping and _column(columns, ("chosen",)) is not None
    if complete:
        names += [*PROMPT_NAMES, "input", "chosen", "rejected", "system", "split"]
    return Needed([c for c in columns if c.strip().lower() in names], complete)


# --- feedback labels -------------------------------------------------------------------------------------
def _column(columns: Sequence[str], names: Sequence[str], exclude: set[str] | frozenset[str] = frozenset()
            ) -> str | None:
    """The first column (case-insensitively) named one of ``names``, in the order of ``names``."""
    lowered = {c.strip().lower(): c for c in reversed(columns) if c.strip().lower() not in exclude}
    return next((lowered[n] for n in names if n in lowered), None)


def _good_rows(records: Records, label: str, error: ErrorFactory, notes: list[str]) -> Records:
    good: Records = []
    for number, rec in records:
        if _is_good(rec.get(label), label, number, error):
            good.append((number, rec))
    skipped = len(records) - len(good)
    if records and not good:
        raise error(None, f"all {plural(len(records), 'row')} are labelled as answers not to learn "
                          f"(field '{label}'); there is nothing to learn from", label)
    if skipped:
        notes.append(f"Skipped {skipped:,} of {plural(len(records), 'row')} whose label marks an answer "
                     f"not to learn (field '{label}')")
    return good


def _is_good(value: Any, label: str, number: int, error: ErrorFactory) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int | float) else None
    if text is not None and text.endswith(".0"):
        text = text[:-2]
    if text in GOOD_LABELS:
        return True
    if text in BAD_LABELS:
        return False
    raise error(number, f"field '{label}' is {brief(value)}; expected a label such as true or false "
                        "(good/bad, 1/0)", label)


# --- preference pairs ------------------------------------------------------------------------------------
def _preferences(out: Screened, columns: Sequence[str], error: ErrorFactory) -> None:
    chosen, rejected = _column(columns, ("chosen",)), _column(columns, ("rejected",))
    if chosen is None:
        if rejected is not None:
            raise error(None, f"the file holds only rejected answers (field '{rejected}'), no chosen ones; "
                              "LoRA Desk trains on answers to learn", rejected)
        return
    first = out.records[0][1].get(chosen) if out.records else None
    if not _column(columns, PROMPT_NAMES, {chosen.lower()}) and isinstance(first, str) and not _transcript(first):
        return  # text answers and no prompt column: the column rules ask which column holds the prompt
    _reshape(out, columns, chosen, error)
    note = f"Imported the chosen answers of {plural(len(out.records), 'pair')}"
    if rejected is not None:
        note += "; the rejected answers are not used (LoRA Desk trains on answers to learn, not preferences)"
    out.notes.append(note)


def _chat_pairs(out: Screened, columns: Sequence[str], error: ErrorFactory) -> None:
    """Labelled rows whose prompt and completion are message lists (conversational KTO) → chat records."""
    answer = _column(columns, ("completion",))
    first = out.records[0][1] if out.records else {}
    if answer is not None and isinstance(first.get(answer), list):
        _reshape(out, columns, answer, error)


def _reshape(out: Screened, columns: Sequence[str], answer: str, error: ErrorFactory) -> None:
    """Records of (prompt, ``answer``) → prompt/completion records, or chat records when any is a conversation."""
    prompt = _column(columns, PROMPT_NAMES, {answer.lower()})
    extra = _column(columns, ("input",)) if prompt and prompt.lower() == "instruction" else None
    system, split = _column(columns, ("system",)), _column(columns, ("split",))
    read: list[tuple[int, dict[str, Any], list[dict[str, Any]] | None]] = []
    for number, rec in out.records:
        question = rec.get(prompt) if prompt else None
        if extra and isinstance(question, str) and isinstance(rec.get(extra), str) and rec[extra].strip():
            question = f"{question}\n\n{rec[extra]}"
        base = {k: rec[c] for k, c in (("system", system), ("split", split)) if c and rec.get(c) is not None}
        value = rec.get(answer)
        if isinstance(value, str) and isinstance(question, str) and not question.startswith(HH_START):
            read.append((number, {"prompt": question, "completion": value, **base}, None))
        else:
            read.append((number, base, _conversation(number, question, prompt, value, answer, error)))
    chats = any(msgs is not None for _, _, msgs in read)
    records: Records = []
    for number, rec, msgs in read:
        if not chats:
            records.append((number, rec))
            continue
        if msgs is None:
            msgs = [{"role": "user", "content": rec.pop("prompt")},
                    {"role": "assistant", "content": rec.pop("completion")}]
        if isinstance(rec.get("system"), str) and rec["system"]:
            msgs = [{"role": "system", "content": rec["system"]}, *msgs]
        records.append((number, {"messages": msgs, **({"split": rec["split"]} if "split" in rec else {})}))
    out.records = records
    out.columns = ["messages", "split"] if chats else ["prompt", "completion", "system", "split"]


def _conversation(number: int, question: Any, prompt: str | None, value: Any, answer: str,
                  error: ErrorFactory) -> list[dict[str, Any]]:
    """The OpenAI messages of the prompt and the answer (checked: a user turn, then an assistant answer)."""
    if isinstance(value, str) and question is None:
        msgs = _transcript(value)
        if msgs is None:
            raise error(number, f"field '{answer}' has no prompt: no prompt column or value, and the text is "
                                "not a 'Human: ... Assistant: ...' conversation", answer)
    elif isinstance(value, str | Mapping | list):
        msgs = _messages(number, [value] if isinstance(value, Mapping) else value, answer, error)
    else:
        raise error(number, f"field '{answer}' must be text or a list of messages, got {_kind(value)}", answer)
    if not any(m["role"] == "assistant" for m in msgs):
        raise error(number, f"field '{answer}' has no assistant answer", answer)
    if not any(m["role"] == "user" for m in msgs):
        if question is None or prompt is None:
            raise error(number, f"field '{answer}' has no user message and there is no prompt column", answer)
        if isinstance(question, str):
            before = _transcript(question) if question.startswith(HH_START) else None
            before = [m for m in before or [{"role": "user", "content": question}] if m["content"]]
        else:
            before = _messages(number, question, prompt, error)
        msgs = [*before, *msgs]
    return msgs


def _messages(number: int, value: Any, key: str, error: ErrorFactory) -> list[dict[str, Any]]:
    """A message list (OpenAI or ShareGPT keys; text is one assistant message) in OpenAI form, checked."""
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if not isinstance(value, list):
        raise error(number, f"field '{key}' must be text or a list of messages, got {_kind(value)}", key)
    msgs = [_openai(m) for m in value]
    try:
        turns_from_messages(_plain(msgs), key)
    except ConversationError as exc:
        raise error(number, f"field {brief(exc.field)} {exc.message}", exc.field) from None
    return msgs


def _plain(msgs: list[Any]) -> list[Any]:
    """Messages with content part lists as their text (only to check them: the records keep their parts)."""
    return [{**m, "content": "".join(p.get("text") or "" for p in m["content"] if isinstance(p, Mapping))}
            if isinstance(m, Mapping) and isinstance(m.get("content"), list) else m for m in msgs]


def _openai(msg: Any) -> Any:
    """A ShareGPT message (``from``/``value``) in OpenAI form; anything else as it is."""
    if isinstance(msg, Mapping) and "from" in msg and "role" not in msg:
        role = msg.get("from")
        return {"role": _SHAREGPT_ROLES.get(role.strip().lower(), role) if isinstance(role, str) else role,
                "content": msg.get("value")}
    return msg


def _transcript(text: str) -> list[dict[str, Any]] | None:
    """Anthropic HH text (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as messages; None when it is not one."""
    pieces = _TRANSCRIPT.split(text)
    if len(pieces) < 3 or pieces[0].strip():
        return None
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[who], "content": said.strip()} for who, said in zip(pieces[1::2], pieces[2::2],
                                                                               strict=True)]


def _kind(value: Any) -> str:
    return "a number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__


# --- images ----------------------------------------------------------------------------------------------
def _images(out: Screened, columns: Sequence[str]) -> None:
    """Note the records that reference images; leave image parts out of chat messages.

    The first :data:`IMAGE_SNIFF` records decide whether the file references images at all (so a plain file
    pays for no pass over its rows); when one does, every record is looked at and counted.
    """
    fields = {*IMAGE_FIELDS, *(c for c in columns if c.strip().lower() in IMAGE_FIELDS)}
    if not any(_references(rec, fields) for _, rec in out.records[:IMAGE_SNIFF]):
        return
    counts: dict[str, int] = {}
    records: Records = []
    rows = 0
    for number, rec in out.records:
        found = _references(rec, fields)
        if found:
            rows += 1
            for where in found:
                counts[where] = counts.get(where, 0) + 1
            if any(w.startswith("image parts") for w in found):
                rec = {k: _without_images(v) if isinstance(v, list) else v for k, v in rec.items()}
        records.append((number, rec))
    out.records = records
    where = ", ".join(sorted(counts, key=lambda w: (-counts[w], w)))
    out.notes.append(f"{plural(rows, 'row references', 'rows reference')} images ({where}); LoRA Desk trains on "
                     "text only, the images are not used")


def _references(rec: Mapping[str, Any], fields: set[str]) -> set[str]:
    """How ``rec`` references images: ``field 'images'``, ``'<image>' tags``, ``image parts in 'messages'``."""
    found = {f"field '{key}'" for key in fields if _present(rec.get(key))}
    for key, value in rec.items():
        if isinstance(value, str):
            if IMAGE_TAG in value:
                found.add(f"'{IMAGE_TAG}' tags")
        elif isinstance(value, list | Mapping) and key not in fields:
            _scan(value, key, found)
    return found


def _present(value: Any) -> bool:
    """Whether an image field holds something (a path, a list of them, an image object)."""
    if value is None or value is False:
        return False
    return not (isinstance(value, str | list | Mapping) and not value)


def _scan(value: Any, key: str, found: set[str]) -> None:
    """Image references inside a record's lists and objects (messages and their content parts)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if IMAGE_TAG in item:
                found.add(f"'{IMAGE_TAG}' tags")
        elif isinstance(item, Mapping):
            if item.get("type") in IMAGE_PARTS:
                found.add(f"image parts in '{key}'")
            else:
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _without_images(value: Any) -> Any:
    """Messages (or a list of them) with their image content parts left out; other values as they are."""
    if not isinstance(value, list):
        return value
    out = []
    for msg in value:
        content = msg.get("content") if isinstance(msg, Mapping) else None
        if isinstance(content, list):
            parts = [p for p in content if not (isinstance(p, Mapping) and p.get("type") in IMAGE_PARTS)]
            if len(parts) != len(content):
                msg = {**msg, "content": parts or ""}
        out.append(msg)
    return out
