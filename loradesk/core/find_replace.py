"""Find and replace across the whole dataset: one compiled pattern, counted and previewed before anything changes.

:func:`find_matches` never edits the dataset; it returns what a replacement would do, and
:meth:`FindResult.changes` hands the new cell texts to ``Dataset.set_fields`` (through the undo stack).

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

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from loradesk.core.dataset import FIELDS, Example

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
    """One cell with ``count`` matches: its text now (``before``) and after replacing them all."""

    row: int
    field: str
    count: int
    before: str
    after: str


@dataclass
class FindResult:
    """Every match of a search. ``cells`` holds the first ``limit_preview`` matching cells (all by default)."""

    matches: int = 0  # occurrences in all cells
    cells: list[Match] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # rows with at least one match, ascending
    cell_count: int = 0  # matching cells, including those beyond ``cells``
    _changes: list[tuple[int, str, str]] = field(default_factory=list, repr=False)

    @property
    def more(self) -> int:
        """Matching cells not in :attr:`cells`."""
        return self.cell_count - len(self.cells)

    @property
    def change_count(self) -> int:
        """Cells the replacement changes (a match replaced by the same text changes nothing)."""
        return len(self._changes)

    def changes(self) -> list[tuple[int, str, str]]:
        """``(row, field, new text)`` for every cell the replacement changes (for ``Dataset.set_fields``)."""
        return list(self._changes)

    def with_changes(self, changes: list[tuple[int, str, str]]) -> FindResult:
        """This result holding ``changes`` (as :func:`search_records` hands them apart)."""
        self._changes = changes
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


def search_records(records: Sequence[tuple[str, str, str]], spec: FindSpec, limit_preview: int | None = None
                   ) -> tuple[tuple[FindResult, list[list[tuple[str, str]]]], list[tuple[int, str, str]]]:
    """:func:`find_matches` over rows given as ``(system, prompt, completion)`` tuples, as ``((result,
    previews), changes)``: the :func:`preview_segments` of the previewed cells, and the result's changes
    apart from it (every changed cell's new text: the long part; :meth:`FindResult.with_changes` puts them
    back). What the worker process answers a search with."""
    rows = [Example(prompt, completion, system) for system, prompt, completion in records]
    result = find_matches(rows, spec, limit_preview)
    pattern = spec.compile()
    changes, result._changes = result._changes, []
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
