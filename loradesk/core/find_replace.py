"""Find and replace across the whole dataset: one compiled pattern, counted and previewed before anything changes.

:func:`find_matches` never edits the dataset; it returns what a replacement would do, and
:meth:`FindResult.changes` hands the new cell texts to ``Dataset.set_fields`` (through the undo stack),
:meth:`FindResult.row_changes` the new conversation rows to ``Dataset.set_rows``.

In a conversation every turn is searched: "prompt" stands for its user and tool turns, "completion" for its
assistant turns (their text and the arguments of their tool calls), "system" for its system prompt. A
replacement that would turn a call's JSON arguments into text that is not JSON leaves that call as it is.

Behaviour worth knowing:

- Plain text is matched literally and the replacement is literal too (a backslash stays a backslash).
- With ``regex`` the pattern is a Python regular expression (``^``/``$`` match at every line) and the
  replacement may refer to groups: ``\\1``, ``\\g<1>``, ``\\g<name>``.
- ``whole_word`` matches only where the text is not joined to more letters, digits or ``_`` on either
  side: "Tamsin" matches in "Tamsin's" and "(Tamsin)" but not in "Tamsins" or "Tamsin_2".
- ``preserve_case`` gives each replacement the capitalisation of the text it replaces: with "mira",
  "TAMSIN" becomes "MIRA", "Tamsin" "Mira", "tamsin" "mira", and "Tamsin Quill" → "Mira Stone" for "mira stone".
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from loradesk.core.dataset import FIELDS, CompactRow, Example, expand_rows

Progress = Callable[[str, "float | None"], None]

#: Preview segment kinds: unchanged text, the matched text, and what replaces it.
TEXT, OLD, NEW = "text", "old", "new"

_NEVER = re.compile(r"(?!)")  # matches nothing (an empty search)
_WORD_START = re.compile(r"(?<![^\W\d_])[^\W\d_]")  # the first letter of each run of letters


def _apply_case(found: str, new: str) -> str:
    """``new`` with the capitalisation of ``found`` (all caps, all lower, Each Word, First letter)."""
    letters = [c for c in found if c.lower() != c.upper()]  # letters that have a case
    if not letters:
        return new
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return new.upper()
    if all(c.islower() for c in letters):
        return new.lower()
    words = re.findall(r"[^\W\d_]+", found)
    if len(words) > 1 and all(w[0].isupper() and (len(w) == 1 or w[1:].islower()) for w in words):
        return " ".join(_capitalise_first(w) for w in new.split(" "))
    if letters[0].isupper():
        return _capitalise_first(new)
    return new


def _capitalise_first(text: str) -> str:
    m = _WORD_START.search(text)
    return text if m is None else text[:m.start()] + m.group().upper() + text[m.end():]


@dataclass(frozen=True)
class FindSpec:
    """What to look for, what to put instead, and where (``fields``: any of prompt, completion, system)."""

    text: str
    replacement: str = ""
    fields: tuple[str, ...] = FIELDS
    case_sensitive: bool = False
    whole_word: bool = False
    regex: bool = False
    preserve_case: bool = False

    def compile(self) -> re.Pattern[str]:
        """The search pattern; ``ValueError`` names what is wrong with a bad regex or replacement.

        Positions in messages count characters from 1. An empty search text gives a pattern that never matches.
        """
        unknown = [f for f in self.fields if f not in FIELDS]
        if unknown:
            raise ValueError(f"Unknown field {unknown[0]!r}; expected one of {', '.join(FIELDS)}")
        if not self.text:
            return _NEVER
        flags = 0 if self.case_sensitive else re.IGNORECASE
        if self.regex:
            flags |= re.MULTILINE
            try:
                re.compile(self.text, flags)
            except re.error as exc:
                raise ValueError(_error_text("pattern", exc)) from None
            source = self.text
        else:
            source = re.escape(self.text)
        if self.whole_word:
            source = rf"(?<!\w)(?:{source})(?!\w)"
        pattern = re.compile(source, flags)
        if self.regex:
            try:
                pattern.sub(self.replacement, "")  # parses the template (group references) even without a match
            except re.error as exc:
                raise ValueError(_error_text("replacement", exc)) from None
            except IndexError as exc:  # an unknown group name
                raise ValueError(f"Invalid replacement: {exc}") from None
        return pattern

    def replacer(self) -> Callable[[re.Match[str]], str]:
        """The text that replaces one match (group references expanded, capitalisation applied)."""
        replacement = self.replacement
        expand: Callable[[re.Match[str]], str]
        if self.regex:
            def expand(m: re.Match[str]) -> str:
                return m.expand(replacement)
        else:
            def expand(m: re.Match[str]) -> str:
                return replacement
        if not self.preserve_case:
            return expand
        return lambda m: _apply_case(m.group(), expand(m))

    def _sub_arg(self) -> str | Callable[[re.Match[str]], str]:
        """What ``pattern.subn`` takes: a template string when possible (fastest), else :meth:`replacer`."""
        if self.preserve_case:
            return self.replacer()
        return self.replacement if self.regex else self.replacement.replace("\\", "\\\\")


def _error_text(what: str, exc: re.error) -> str:
    where = f" at position {exc.pos + 1}" if exc.pos is not None else ""
    return f"Invalid {what}{where}: {exc.msg}"


@dataclass
class Match:
    """One cell with ``count`` matches: its text now (``before``) and after replacing them all.

    In a conversation, ``turn`` is the turn's index (``None``: the system prompt) and ``call`` the index of
    the tool call whose arguments matched (``None``: the turn's text); ``role`` is the turn's role.
    """

    row: int
    field: str
    count: int
    before: str
    after: str
    turn: int | None = None
    call: int | None = None
    role: str = ""

    @property
    def where(self) -> str:
        """Where the text is, for people: ``Prompt``, ``Turn 3 (assistant)``, ``Turn 2 call 1 (assistant)``."""
        if self.turn is None:
            return self.field.capitalize()
        call = f" call {self.call + 1}" if self.call is not None else ""
        return f"Turn {self.turn + 1}{call} ({self.role})"


@dataclass
class FindResult:
    """Every match of a search. ``cells`` holds the first ``limit_preview`` matching cells (all by default)."""

    matches: int = 0  # occurrences in all cells
    cells: list[Match] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # rows with at least one match, ascending
    cell_count: int = 0  # matching cells, including those beyond ``cells``
    turn_cells_changed: int = 0  # cells of conversations the replacement changes
    _changes: list[tuple[int, str, str]] = field(default_factory=list, repr=False)
    _row_changes: list[tuple[int, Example]] = field(default_factory=list, repr=False)

    @property
    def more(self) -> int:
        """Matching cells not in :attr:`cells`."""
        return self.cell_count - len(self.cells)

    @property
    def change_count(self) -> int:
        """Cells the replacement changes (a match replaced by the same text changes nothing)."""
        return len(self._changes) + self.turn_cells_changed

    def changes(self) -> list[tuple[int, str, str]]:
        """``(row, field, new text)`` for every pair cell the replacement changes (for ``Dataset.set_fields``)."""
        return list(self._changes)

    def row_changes(self) -> list[tuple[int, Example]]:
        """``(row, new row)`` for every conversation the replacement changes (for ``Dataset.set_rows``)."""
        return list(self._row_changes)

    def with_changes(self, changes: Sequence[tuple[int, str, str] | tuple[int, Example]]) -> FindResult:
        """This result holding ``changes``, cell and row changes in one list (as :func:`search_records` hands
        them apart)."""
        self._changes = [c for c in changes if len(c) == 3]  # type: ignore[misc]
        self._row_changes = [c for c in changes if len(c) == 2]  # type: ignore[misc]
        return self


def find_matches(rows: Sequence[Example], spec: FindSpec, limit_preview: int | None = None,
                 progress: Progress | None = None) -> FindResult:
    """Search ``rows`` for ``spec``; ``ValueError`` for a bad pattern. Nothing is changed.

    ``progress(text, fraction)`` is called every few thousand rows (it may raise to stop the search).
    """
    result = FindResult()
    pattern = spec.compile()
    if not spec.text:
        return result
    fields = [f for f in FIELDS if f in spec.fields]
    subn = pattern.subn
    repl = spec._sub_arg()
    total = len(rows)
    for i, row in enumerate(rows):
        if progress is not None and i % 5000 == 0 and i:
            progress(f"Searching… {i:,} of {total:,} rows", i / total)
        if row.turns:
            _find_in_conversation(i, row, fields, subn, repl, result, limit_preview)
            continue
        hit = False
        for name in fields:
            before = getattr(row, name)
            if not before:
                continue
            after, n = subn(repl, before)
            if not n:
                continue
            hit = True
            result.matches += n
            result.cell_count += 1
            if limit_preview is None or len(result.cells) < limit_preview:
                result.cells.append(Match(i, name, n, before, after))
            if after != before:
                result._changes.append((i, name, after))
        if hit:
            result.rows.append(i)
    return result


def _find_in_conversation(i: int, row: Example, fields: Sequence[str], subn: Callable[..., tuple[str, int]],
                          repl: str | Callable[[re.Match[str]], str], result: FindResult,
                          limit_preview: int | None) -> None:
    """:func:`find_matches` for conversation ``row`` (number ``i``): its system prompt and every turn."""
    cells: list[Match] = []
    system = row.system
    if "system" in fields and system:
        after, n = subn(repl, system)
        if n:
            cells.append(Match(i, "system", n, system, after))
            system = after
    turns = list(row.turns)
    for t, turn in enumerate(row.turns):
        name = "completion" if turn.role == "assistant" else "prompt"
        if name not in fields:
            continue
        if turn.content:
            after, n = subn(repl, turn.content)
            if n:
                cells.append(Match(i, name, n, turn.content, after, t, None, turn.role))
                turns[t] = dataclasses.replace(turns[t], content=after)
        calls = list(turn.tool_calls)
        for c, call in enumerate(turn.tool_calls):
            after, n = subn(repl, call.arguments)
            if n:
                if after != call.arguments and not _still_json(call.arguments, after):
                    after = call.arguments  # a replacement must not break the call
                cells.append(Match(i, name, n, call.arguments, after, t, c, turn.role))
                calls[c] = dataclasses.replace(call, arguments=after)
        if calls != list(turn.tool_calls):
            turns[t] = dataclasses.replace(turns[t], tool_calls=tuple(calls))
    if not cells:
        return
    result.rows.append(i)
    for cell in cells:
        result.matches += cell.count
        result.cell_count += 1
        if limit_preview is None or len(result.cells) < limit_preview:
            result.cells.append(cell)
    changed = sum(1 for cell in cells if cell.after != cell.before)
    if changed:
        result.turn_cells_changed += changed
        result._row_changes.append((i, Example.conversation(turns, system, row.split, row.tools)))


def _still_json(before: str, after: str) -> bool:
    """False when ``before`` was JSON and ``after`` is not."""
    try:
        json.loads(after)
    except json.JSONDecodeError:
        try:
            json.loads(before)
        except json.JSONDecodeError:
            return True
        return False
    return True


def apply_cells(row: Example, cells: Sequence[Match]) -> Example:
    """Conversation ``row`` with the replacements of some of its matched ``cells`` (Replace Selected)."""
    system, turns = row.system, list(row.turns)
    for cell in cells:
        if cell.turn is None:
            system = cell.after
        elif cell.call is None:
            turns[cell.turn] = dataclasses.replace(turns[cell.turn], content=cell.after)
        else:
            calls = list(turns[cell.turn].tool_calls)
            calls[cell.call] = dataclasses.replace(calls[cell.call], arguments=cell.after)
            turns[cell.turn] = dataclasses.replace(turns[cell.turn], tool_calls=tuple(calls))
    return Example.conversation(turns, system, row.split, row.tools)


Change = tuple[int, str, str] | tuple[int, Example]


def search_records(records: Sequence[CompactRow], spec: FindSpec, limit_preview: int | None = None
                   ) -> tuple[tuple[FindResult, list[list[tuple[str, str]]]], list[Change]]:
    """:func:`find_matches` over rows in their compact form (:func:`~loradesk.core.dataset.compact_row`), as
    ``((result, previews), changes)``: the :func:`preview_segments` of the previewed cells, and the result's
    cell and row changes apart from it (the long part; :meth:`FindResult.with_changes` puts them back).
    What the worker process answers a search with."""
    result = find_matches(expand_rows(records), spec, limit_preview)
    pattern = spec.compile()
    changes: list[Change] = [*result._changes, *result._row_changes]
    result._changes, result._row_changes = [], []
    return (result, [preview_segments(cell.before, spec, pattern=pattern) for cell in result.cells]), changes


def preview_segments(text: str, spec: FindSpec, context: int = 40, max_chars: int = 200,
                     pattern: re.Pattern[str] | None = None) -> list[tuple[str, str]]:
    """``text`` as ``(kind, piece)`` segments (:data:`TEXT`, :data:`OLD`, :data:`NEW`) to show a replacement.

    A long text is cut to about ``max_chars`` visible characters starting ``context`` characters before
    its first match; cut ends are marked with "…". ``pattern``: ``spec.compile()``, when already at hand.
    """
    pattern = spec.compile() if pattern is None else pattern
    replace = spec.replacer()
    out: list[tuple[str, str]] = []
    budget = max_chars
    pos = None
    for m in pattern.finditer(text):
        if pos is None:
            start = max(0, m.start() - context)
            if start > 0:  # start at a word: a little earlier if one starts near, else a little later
                space = text.rfind(" ", max(0, start - 20), start)
                if space < 0:
                    space = text.find(" ", start, m.start())
                start = space + 1 if space >= 0 else start
                if start > 0:
                    out.append((TEXT, "…"))
            pos = start
        if budget <= 0:
            break
        lead = text[pos:m.start()]
        if len(lead) > budget:
            out.append((TEXT, lead[:budget] + "…"))
            return out
        if lead:
            out.append((TEXT, lead))
        old, new = m.group(), replace(m)
        if old:
            out.append((OLD, old))
        if new != old or not old:
            out.append((NEW, new))
        budget -= len(lead) + len(old) + (len(new) if new != old else 0)
        pos = m.end()
    if pos is None:
        return [(TEXT, text[:max_chars] + ("…" if len(text) > max_chars else ""))] if text else []
    tail = text[pos:]
    if tail:
        cut = max(budget, 0)
        out.append((TEXT, tail[:cut] + "…" if len(tail) > cut else tail))
    merged: list[tuple[str, str]] = []
    for kind, piece in out:
        if merged and merged[-1][0] == kind == TEXT:
            merged[-1] = (TEXT, merged[-1][1] + piece)
        elif piece:
            merged.append((kind, piece))
    return merged
