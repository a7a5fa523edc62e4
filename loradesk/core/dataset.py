"""Rows (prompt/completion pairs or whole conversations) and an in-memory dataset that tells listeners what changed.

The :class:`Dataset` is the single source of truth; the Qt table model only adapts it. Every mutation
goes through a method here and emits one :class:`DatasetEvent`, so any view (or undo stack) can follow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from loradesk.core.conversation import (
    ConversationError,
    Turn,
    first_text,
    last_text,
    messages,
    signature,
    tools_list,
    tools_text,
    turns_from_messages,
)

FIELDS = ("prompt", "completion", "system")
SPLITS = ("auto", "train", "validation")


@dataclass(frozen=True, slots=True)
class Example:
    """One training row: a prompt/completion pair, or a whole conversation.

    ``system`` is an optional system prompt; ``split`` pins the row to a split. A *conversation* has
    ``turns`` (user, assistant and tool :class:`~loradesk.core.conversation.Turn`, in order) and may list
    the ``tools`` the assistant can call (JSON text of the list); its ``prompt`` and ``completion`` then
    mirror its first user message and its last assistant message (what the table shows and Compare asks),
    kept so by :meth:`conversation` and :meth:`with_field`. A pair has no turns and costs nothing extra.

    Rows are immutable: an edit puts a new :class:`Example` in the dataset, so a snapshot (for undo, a
    training run or a background check) is just a list of the same objects, cheap even for 100,000 rows.
    """

    prompt: str
    completion: str
    system: str = ""
    split: str = "auto"
    turns: tuple[Turn, ...] = ()
    tools: str = ""

    @classmethod
    def conversation(cls, turns: tuple[Turn, ...] | list[Turn], system: str = "", split: str = "auto",
                     tools: str = "") -> Example:
        """A conversation row; ``prompt``/``completion`` are derived from the turns."""
        turns = tuple(turns)
        return cls(first_text(turns, "user"), last_text(turns, "assistant"), system, split, turns, tools)

    @property
    def is_conversation(self) -> bool:
        return bool(self.turns)

    def with_turns(self, turns: tuple[Turn, ...] | list[Turn], tools: str | None = None) -> Example:
        """The same row with other turns (and tools), the mirrored prompt/completion updated."""
        return Example.conversation(turns, self.system, self.split, self.tools if tools is None else tools)

    def with_field(self, field: str, value: str) -> Example:
        """The row with one field set. On a conversation, ``prompt`` sets its first user message and
        ``completion`` its last assistant message (a turn of that role is added when there is none)."""
        if not self.turns or field not in ("prompt", "completion"):
            return dataclasses.replace(self, **{field: value})
        role = "user" if field == "prompt" else "assistant"
        turns = list(self.turns)
        order = range(len(turns)) if role == "user" else range(len(turns) - 1, -1, -1)
        index = next((i for i in order if turns[i].role == role), None)
        if index is None:
            turns.insert(0, Turn(role, value)) if role == "user" else turns.append(Turn(role, value))
        else:
            turns[index] = dataclasses.replace(turns[index], content=value)
        return self.with_turns(turns)

    def texts(self) -> list[str]:
        """All the row's text: system, then prompt and completion, or every turn's texts (for searches)."""
        if not self.turns:
            return [self.system, self.prompt, self.completion]
        out = [self.system, self.tools]
        for turn in self.turns:
            out += turn.texts()
        return out

    def to_record(self) -> dict[str, Any]:
        """The row as plain data: prompt and completion (or a conversation's OpenAI ``messages`` and
        ``tools``) always, system/split only when set."""
        if self.turns:
            rec: dict[str, Any] = {"messages": messages(self.turns)}
            tools = tools_list(self.tools)
            if tools is not None:
                rec["tools"] = tools
        else:
            rec = {"prompt": self.prompt, "completion": self.completion}
        if self.system:
            rec["system"] = self.system
        if self.split != "auto":
            rec["split"] = self.split
        return rec


RECORD_KEYS = ("prompt", "completion", "system", "split", "messages", "tools")


class RecordError(ValueError):
    """A stored row (:meth:`Example.to_record`'s form) could not be read; ``field`` names the key."""

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def row_from_record(rec: Any) -> Example:
    """The row a record of :meth:`Example.to_record` describes (the inverse; raises :class:`RecordError`)."""
    if not isinstance(rec, dict):
        raise RecordError(None, "expected an object with prompt and completion, or messages")
    for key in rec:
        if key not in RECORD_KEYS:
            raise RecordError(key, "unknown field")
    for key in ("system", "split", "prompt", "completion"):
        if key in rec and not isinstance(rec[key], str):
            raise RecordError(key, f"expected text, got {type(rec[key]).__name__}")
    split = rec.get("split", "auto")
    if split not in SPLITS:
        raise RecordError("split", f"must be one of {', '.join(SPLITS)}")
    if "messages" in rec:
        msgs = rec["messages"]
        if not isinstance(msgs, list):
            raise RecordError("messages", f"expected a list, got {type(msgs).__name__}")
        try:
            system, turns = turns_from_messages(msgs)
            tools = tools_text(rec.get("tools"))
        except ConversationError as exc:
            raise RecordError(exc.field, exc.message) from None
        except ValueError as exc:
            raise RecordError("tools", str(exc)) from None
        return Example.conversation(turns, rec.get("system", system), split, tools)
    for key in ("prompt", "completion"):
        if key not in rec:
            raise RecordError(key, "missing")
    return Example(rec["prompt"], rec["completion"], rec.get("system", ""), split)


#: A row as it travels to the worker process: a pair as ``(system, prompt, completion)`` (cheap to pickle),
#: a conversation as the :class:`Example` itself.
CompactRow = tuple[str, str, str] | Example


def compact_row(row: Example) -> CompactRow:
    """``row`` in its :data:`CompactRow` form (:func:`expand_row` reads it back)."""
    return row if row.turns else (row.system, row.prompt, row.completion)


def expand_rows(items: Iterable[CompactRow]) -> list[Example]:
    """The rows :func:`compact_row` gave as ``items`` (a pair costs one tuple unpacking, as before)."""
    return [Example(item[1], item[2], item[0]) if type(item) is tuple else item  # type: ignore[misc]
            for item in items]


@dataclass(frozen=True)
class DatasetEvent:
    """What changed, as one of the subclasses below: rows ``[start, start + count)``, or everything."""

    start: int = 0
    count: int = 0


@dataclass(frozen=True)
class RowsInserted(DatasetEvent):
    """``count`` new rows now sit at ``start``."""


@dataclass(frozen=True)
class RowsRemoved(DatasetEvent):
    """The ``count`` rows that were at ``start`` are gone."""


@dataclass(frozen=True)
class RowsChanged(DatasetEvent):
    """Cells of rows ``[start, start + count)`` changed: only ``field`` when it is set, else any field."""

    field: str | None = None


@dataclass(frozen=True)
class DatasetReset(DatasetEvent):
    """Every row was replaced; ``count`` is the new length."""


@dataclass(frozen=True)
class RowProblem:
    """A validation finding for one row (0-based ``row``)."""

    row: int
    field: str
    kind: str  # "empty" | "duplicate" | "too_long"
    message: str


Listener = Callable[[DatasetEvent], None]


def _check_cell(field: str, value: str) -> None:
    """Raise ``KeyError`` for an unknown field and ``ValueError`` for a split that is not one of ``SPLITS``."""
    if field not in (*FIELDS, "split"):
        raise KeyError(f"unknown field {field!r}")
    if field == "split" and value not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}")


class Dataset:
    """An ordered, observable list of :class:`Example` rows."""

    def __init__(self, rows: Iterable[Example] = ()) -> None:
        self._rows: list[Example] = list(rows)
        self._listeners: list[Listener] = []

    # --- observation -------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after every change; returns a function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: DatasetEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    # --- reading -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Example:
        return self._rows[index]

    def __iter__(self) -> Iterator[Example]:
        return iter(self._rows)

    @property
    def rows(self) -> Sequence[Example]:
        """A read-only view of the rows (mutate through the methods)."""
        return tuple(self._rows)

    def records(self) -> list[dict[str, str]]:
        return [r.to_record() for r in self._rows]

    # --- mutation ----------------------------------------------------------------------------------
    def insert(self, index: int, rows: Sequence[Example]) -> None:
        """Insert ``rows`` before ``index`` (``len(self)`` appends)."""
        if not rows:
            return
        index = max(0, min(index, len(self._rows)))
        self._rows[index:index] = list(rows)
        self._emit(RowsInserted(index, len(rows)))

    def append(self, row: Example) -> None:
        self.insert(len(self._rows), [row])

    def remove(self, index: int, count: int = 1) -> list[Example]:
        """Remove ``count`` rows from ``index``; returns them (for undo)."""
        removed = self._rows[index:index + count]
        if not removed:
            return []
        del self._rows[index:index + len(removed)]
        self._emit(RowsRemoved(index, len(removed)))
        return removed

    def set_field(self, index: int, field: str, value: str) -> str:
        """Set one field of one row; returns the previous value (for undo)."""
        _check_cell(field, value)
        row = self._rows[index]
        old = getattr(row, field)
        if old != value:
            self._rows[index] = row.with_field(field, value)
            self._emit(RowsChanged(index, 1, field))
        return old

    def set_fields(self, changes: Sequence[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
        """Set many ``(row, field, value)`` at once with one "changed" event; returns the old values (for undo).

        Used by bulk edits (find and replace, fixes), so a change to 100,000 rows costs one notification.
        """
        old: list[tuple[int, str, str]] = []
        for index, field, value in changes:
            _check_cell(field, value)
            row = self._rows[index]
            old.append((index, field, getattr(row, field)))
        for index, field, value in changes:
            self._rows[index] = self._rows[index].with_field(field, value)
        if changes:
            first = min(i for i, _, _ in changes)
            last = max(i for i, _, _ in changes)
            fields = {f for _, f, _ in changes}
            self._emit(RowsChanged(first, last - first + 1, fields.pop() if len(fields) == 1 else None))
        return old

    def set_rows(self, changes: Sequence[tuple[int, Example]]) -> list[tuple[int, Example]]:
        """Replace whole rows (a conversation's turns, a find and replace across turns) with one "changed"
        event; returns the old rows (for undo)."""
        old = [(index, self._rows[index]) for index, _ in changes]
        for index, row in changes:
            _check_cell("split", row.split)
            self._rows[index] = row
        if changes:
            first = min(i for i, _ in changes)
            last = max(i for i, _ in changes)
            self._emit(RowsChanged(first, last - first + 1))
        return old

    def reset(self, rows: Iterable[Example]) -> None:
        """Replace all rows at once (open/import)."""
        self._rows = list(rows)
        self._emit(DatasetReset(0, len(self._rows)))

    def copy(self) -> Dataset:
        """An independent copy without listeners (e.g. a snapshot for a training run)."""
        return Dataset(self._rows)

    # --- validation --------------------------------------------------------------------------------
    def problems(self, count_tokens: Callable[[Example], int] | None = None,
                 max_tokens: int | None = None) -> list[RowProblem]:
        """Empty prompts/completions, exact duplicate pairs, and (given a counter) rows over ``max_tokens``."""
        out: list[RowProblem] = []
        seen: dict[tuple[str, str, str], int] = {}
        for i, row in enumerate(self._rows):
            key = _row_key(row)
            for name, text in (("prompt", key[1]), ("completion", key[2])):
                if not text:
                    out.append(RowProblem(i, name, "empty", f"row {i + 1}: {name} is empty"))
            if key in seen and (key[1] or key[2]):
                out.append(RowProblem(i, "prompt", "duplicate",
                                      f"row {i + 1}: same prompt and completion as row {seen[key] + 1}"))
            else:
                seen.setdefault(key, i)
            if count_tokens is not None and max_tokens is not None:
                n = count_tokens(row)
                if n > max_tokens:
                    out.append(RowProblem(i, "completion", "too_long",
                                          f"row {i + 1}: {n} tokens, over the max length of {max_tokens} "
                                          f"({n - max_tokens} cut)"))
        return out


RowKey = tuple[str, str, str]


def _row_key(row: Example) -> RowKey:
    """What makes two rows the same: system, prompt and completion; for a conversation its first user
    message and the :func:`~loradesk.core.conversation.signature` of all its turns (``""``: nothing said)."""
    if row.turns:
        return (row.system.strip(), row.prompt.strip() or "\x00", signature(row.turns, row.tools))
    return (row.system.strip(), row.prompt.strip(), row.completion.strip())


def _key_is_empty(key: RowKey) -> bool:
    return not key[1] or not key[2]


def _weight(key: RowKey, count: int) -> int:
    """How many of ``count`` rows with this key have a problem: all if empty, else all but the first."""
    if count <= 0:
        return 0
    return count if _key_is_empty(key) else count - 1


class ProblemIndex:
    """The empty and duplicate checks of :meth:`Dataset.problems`, kept current event by event.

    A full :meth:`Dataset.problems` pass costs ~100 ms on 100,000 rows; this index updates in time
    proportional to the rows an event touches, so a table can show each row's status after every edit.
    Call :meth:`apply` with each :class:`DatasetEvent` (after the dataset changed).
    """

    def __init__(self, dataset: Dataset) -> None:
        self._dataset = dataset
        self._keys: list[RowKey] = []
        self._hashes: list[int] = []  # hash of each row's key (a tuple's hash is not cached: a pass rehashes)
        self._counts: Counter[RowKey] = Counter()
        self._first: dict[RowKey, int] = {}  # first row of a duplicated key, looked up on demand
        self._flagged: set[RowKey] = set()  # keys of rows with a problem: empty, or on more than one row
        self._rows_cache: list[int] | None = None  # problem_rows(), until the next change
        self._problem_rows = 0
        self.rebuild()

    def rebuild(self) -> None:
        # _row_key inlined: one pass over 100,000 rows on every open, without a call per row
        self._keys = [_row_key(r) if r.turns else (r.system.strip(), r.prompt.strip(), r.completion.strip())
                      for r in self._dataset.rows]
        self._hashes = list(map(hash, self._keys))
        self._counts = Counter(self._keys)
        self._first = {}
        self._rows_cache = None
        self._flagged = {key for key, count in self._counts.items() if count > 1 or _key_is_empty(key)}
        self._problem_rows = sum(_weight(key, self._counts[key]) for key in self._flagged)

    def _bump(self, key: RowKey, delta: int) -> None:
        before = self._counts[key]
        after = before + delta
        self._problem_rows += _weight(key, after) - _weight(key, before)
        if after > 0:
            self._counts[key] = after
        else:
            del self._counts[key]
        if after > 1 or (after and _key_is_empty(key)):
            self._flagged.add(key)
        else:
            self._flagged.discard(key)

    def apply(self, event: DatasetEvent) -> set[RowKey]:
        """Follow one change; returns the keys shared with *other* rows whose status may have changed."""
        self._rows_cache = None
        if not isinstance(event, RowsChanged):
            self._first = {}  # rows moved (or all changed)
        if isinstance(event, DatasetReset):
            self.rebuild()
            return set()
        added: list[RowKey] = []
        removed: list[RowKey] = []
        if isinstance(event, RowsInserted):
            added = [_row_key(self._dataset[i]) for i in range(event.start, event.start + event.count)]
            self._keys[event.start:event.start] = added
            self._hashes[event.start:event.start] = map(hash, added)
        elif isinstance(event, RowsRemoved):
            removed = self._keys[event.start:event.start + event.count]
            del self._keys[event.start:event.start + event.count]
            del self._hashes[event.start:event.start + event.count]
        else:
            for i in range(event.start, event.start + event.count):
                old, new_key = self._keys[i], _row_key(self._dataset[i])
                if old != new_key:
                    self._keys[i] = new_key
                    self._hashes[i] = hash(new_key)
                    removed.append(old)
                    added.append(new_key)
        for key in removed:
            self._bump(key, -1)
            self._first.pop(key, None)
        for key in added:
            self._bump(key, 1)
            self._first.pop(key, None)
        shared = set()
        for key in removed:  # rows left with this text may have stopped (or started) being the duplicate
            if self._counts[key] > 0 and (key[1] or key[2]):
                shared.add(key)
        for key in added:  # rows that already had this text: the first of them may have changed
            if self._counts[key] > 1 and (key[1] or key[2]):
                shared.add(key)
        return shared

    def _rows_among(self, keys: set[RowKey]) -> list[int]:
        """The rows whose key is one of ``keys``, ascending (a pass over the rows' hashes, in C)."""
        if not keys:
            return []
        hashes = {hash(key) for key in keys}
        maybe = itertools.compress(itertools.count(), map(hashes.__contains__, self._hashes))
        return [i for i in maybe if self._keys[i] in keys]  # a hash shared by another key is rare

    def rows_with(self, keys: set[RowKey]) -> list[int]:
        """The rows whose key is one of ``keys`` (to repaint them)."""
        return self._rows_among(keys)

    def row_problems(self, row: int) -> list[RowProblem]:
        """Empty and duplicate findings of one row, worded as :meth:`Dataset.problems` words them."""
        key = self._keys[row]
        out = [RowProblem(row, name, "empty", f"row {row + 1}: {name} is empty")
               for name, text in (("prompt", key[1]), ("completion", key[2])) if not text]
        if self._counts[key] > 1 and (key[1] or key[2]):
            original = self._first.get(key)
            if original is None:  # a scan in C, only for duplicated rows that are looked at
                original = self._first[key] = self._keys.index(key)
            if original != row:
                out.append(RowProblem(row, "prompt", "duplicate",
                                      f"row {row + 1}: same prompt and completion as row {original + 1}"))
        return out

    def has_problem(self, row: int) -> bool:
        key = self._keys[row]
        if _key_is_empty(key):
            return True
        return self._counts[key] > 1 and bool(self.row_problems(row))

    def problem_rows(self) -> list[int]:
        """The rows that are empty or a later copy of another row, ascending (kept until the next change)."""
        if self._rows_cache is None:
            out: list[int] = []
            seen: set[RowKey] = set()
            keys = self._keys
            for i in self._rows_among(self._flagged):
                key = keys[i]
                if _key_is_empty(key) or key in seen:
                    out.append(i)
                else:
                    seen.add(key)
            self._rows_cache = out
        return list(self._rows_cache)

    def problem_row_count(self) -> int:
        """How many rows are empty or a later copy of another row (kept up to date, no pass over the rows)."""
        return self._problem_rows


# --- train/validation split ------------------------------------------------------------------------------
def draw_split(row: Example, fraction: float, seed: int) -> str:
    """``"train"`` or ``"validation"``: a pinned row keeps its split; ``fraction`` of the others is drawn.

    The draw depends only on the seed and the row's text (not its position), so adding, removing or moving
    rows never reshuffles the others, and the table, the trainer and the Compare tab always agree.
    """
    if row.split in ("train", "validation"):
        return row.split
    if fraction <= 0:
        return "train"
    body = signature(row.turns, row.tools) if row.turns else row.completion
    key = f"{seed}\x00{row.system}\x00{row.prompt}\x00{body}".encode()
    draw = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64  # uniform in [0, 1)
    return "validation" if draw < fraction else "train"


def split_rows(rows: Iterable[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Train and validation rows under :func:`draw_split`, in their original order."""
    train: list[Example] = []
    val: list[Example] = []
    for row in rows:
        (val if draw_split(row, fraction, seed) == "validation" else train).append(row)
    return train, val
