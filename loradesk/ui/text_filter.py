"""What the filter box searches: every row's text casefolded once, and the rows each recent filter matched.

Typing a word narrows: the rows matching ``"lan"`` are searched for ``"lant"`` instead of every row, and
erasing it again finds each shorter filter's rows remembered. So a keystroke in a 100,000-row table
searches the whole text only when the filter starts afresh.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence

from loradesk.core.dataset import Example

#: Remembered filters (each costs 4 bytes a matching row): a typed word and its prefixes, and the previous one.
MEMO_SIZE = 16
#: Rows whose text is cached at once when they change; a bigger change is cached lazily (see :meth:`fill`).
EAGER_LIMIT = 1000


def row_text(row: Example) -> str:
    """What the filter searches in a row, casefolded: its prompt and completion, or for a conversation every
    text it has (system prompt, tools, each turn and tool call)."""
    if row.turns:
        return "\0".join(row.texts()).casefold()
    return f"{row.prompt}\0{row.completion}".casefold()


class TextFilter:
    """The casefolded text of rows ``0..n-1`` (``text_of(row)``) and the rows recent filters matched.

    Follow the rows with :meth:`reset`, :meth:`inserted`, :meth:`removed` and :meth:`changed`.
    """

    def __init__(self, text_of: Callable[[int], str]) -> None:
        self._text_of = text_of
        self._hay: list[str | None] = []
        self._missing = 0  # how many entries of _hay are None
        self._memo: dict[str, array[int]] = {}

    def __len__(self) -> int:
        return len(self._hay)

    # --- following the rows ----------------------------------------------------------------------------
    def reset(self, count: int) -> None:
        """Every row changed; ``count`` rows now (their text is read again when first needed)."""
        self._hay = [None] * count
        self._missing = count
        self._memo.clear()

    def inserted(self, first: int, count: int) -> None:
        self._memo.clear()
        if count <= EAGER_LIMIT:
            self._hay[first:first] = [self._text_of(i) for i in range(first, first + count)]
        else:
            self._hay[first:first] = [None] * count
            self._missing += count

    def removed(self, first: int, count: int) -> None:
        self._memo.clear()
        gone = self._hay[first:first + count]
        self._missing -= sum(1 for h in gone if h is None) if self._missing else 0
        del self._hay[first:first + count]

    def changed(self, first: int, last: int) -> None:
        """The text of rows ``first..last`` changed."""
        self._memo.clear()
        count = last - first + 1
        if count <= EAGER_LIMIT:
            was = self._hay[first:last + 1]
            self._missing -= sum(1 for h in was if h is None) if self._missing else 0
            self._hay[first:last + 1] = [self._text_of(i) for i in range(first, last + 1)]
        else:
            self.reset(len(self._hay))  # a bulk change: read again when needed

    def fill(self, start: int, stop: int) -> int:
        """Read the missing texts of rows ``start..stop-1`` (a slice of idle time); returns where it stopped."""
        if not self._missing:
            return len(self._hay)
        hay, text_of = self._hay, self._text_of
        stop = min(stop, len(hay))
        for i in range(start, stop):
            if hay[i] is None:
                hay[i] = text_of(i)
                self._missing -= 1
        return stop

    # --- searching ---------------------------------------------------------------------------------------
    def contains(self, row: int, needle: str) -> bool:
        """Whether row ``row``'s text contains ``needle`` (casefolded)."""
        text = self._hay[row]
        if text is None:
            text = self._hay[row] = self._text_of(row)
            self._missing -= 1
        return needle in text

    def matches(self, needle: str, candidates: Iterable[int] | None = None) -> Sequence[int]:
        """The rows (ascending) whose text contains ``needle``: of ``candidates`` when given, else of all rows.

        Matches over all rows are remembered until the rows change; a longer filter searches only the rows
        a remembered part of it matched.
        """
        if candidates is not None:
            return [i for i in candidates if self.contains(i, needle)]
        found = self._memo.get(needle)
        if found is not None:
            self._memo[needle] = self._memo.pop(needle)  # most recently used last
            return found
        hay = self._texts()
        narrower = [rows for part, rows in self._memo.items() if part in needle]
        base: Sequence[int] = min(narrower, key=len) if narrower else range(len(hay))
        rows = array("i", [i for i in base if needle in hay[i]])  # type: ignore[operator]
        self._memo[needle] = rows
        if len(self._memo) > MEMO_SIZE:
            del self._memo[next(iter(self._memo))]
        return rows

    def _texts(self) -> list[str | None]:
        if self._missing:
            self.fill(0, len(self._hay))
        return self._hay
