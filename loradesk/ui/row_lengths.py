"""Every row's token count in table order, and the rows over the max length, kept current event by event.

The footer ("12 rows over the max length"), the lengths histogram, the Status column's "Too long" and the
"Problems only" filter all ask which rows are too long. Answering by a pass over 100,000 rows (a dictionary
look-up per row, in Python) after every edit or recount froze the window for 50-200 ms on a slow core.
Here the counts are one ``numpy`` array that follows the dataset's events: an edit looks up only the rows
it touched, and the questions above are answered in C. Only a change of every row (new counts arrive, the
dataset is replaced) reads all rows again, :data:`FILL_SLICE` rows at a time, so the caller can spread it
over the event loop.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping

import numpy as np

from loradesk.core.dataset import (
    Dataset,
    DatasetEvent,
    DatasetReset,
    Example,
    RowsChanged,
    RowsInserted,
    RowsRemoved,
)

#: Rows read per :meth:`RowLengths.fill` call when every row is read again (a few milliseconds).
FILL_SLICE = 5_000
#: The count of a row whose tokens are not counted yet.
UNKNOWN = -1


def token_key(example: Example) -> Hashable:
    """What a row's token count depends on (besides the tokenizer): a pair's texts, a conversation's
    system prompt, tools and turns (two conversations that share their first and last message differ)."""
    if example.turns:
        return (example.system, example.tools, example.turns)
    return (example.system, example.prompt, example.completion)


class RowLengths:
    """The token count of each row of ``dataset`` as ``tokens`` knows it (keyed by
    :func:`token_key`; :data:`UNKNOWN` for a row it does not know).

    Follow the rows with :meth:`apply`; after :meth:`refill` (the counts changed for any row) call
    :meth:`fill` until it returns True. While a refill is under way, rows not read yet count as unknown.
    """

    def __init__(self, dataset: Dataset, tokens: Mapping[Hashable, int]) -> None:
        self._dataset = dataset
        self._tokens = tokens  # read, never changed here: the owner changes it and calls refill()
        self._counts = np.full(len(dataset), UNKNOWN, dtype=np.int64)
        self._fill_from: int | None = None  # next row a refill reads; None: none under way
        self._limit: int | None = None
        self._too_long: np.ndarray | None = None  # rows over the limit, ascending (cached until a change)

    def __len__(self) -> int:
        return len(self._counts)

    # --- following the rows --------------------------------------------------------------------------------
    def apply(self, event: DatasetEvent) -> None:
        """Follow one change of the rows (after it was made)."""
        self._too_long = None
        if isinstance(event, DatasetReset):
            self._counts = np.full(len(self._dataset), UNKNOWN, dtype=np.int64)
            self._fill_from = 0 if self._tokens else None
            return
        start, count = event.start, event.count
        if isinstance(event, RowsInserted):
            self._counts = np.insert(self._counts, start, self._read(start, start + count))
            if self._fill_from is not None and self._fill_from > start:
                self._fill_from += count
        elif isinstance(event, RowsRemoved):
            self._counts = np.delete(self._counts, np.s_[start:start + count])
            if self._fill_from is not None and self._fill_from > start:
                self._fill_from = max(start, self._fill_from - count)
        elif isinstance(event, RowsChanged):
            if event.field == "split":  # a row's split does not change its count
                return
            self._counts[start:start + count] = self._read(start, start + count)

    def refill(self) -> None:
        """The counts changed for any number of rows (new counts, or all forgotten): read every row again."""
        self._too_long = None
        if self._tokens:
            self._fill_from = 0
        else:  # every count forgotten: nothing to read
            self._counts.fill(UNKNOWN)
            self._fill_from = None

    def filling(self) -> bool:
        """True while a refill has rows left to read."""
        return self._fill_from is not None

    def fill(self, rows: int | None = None) -> bool:
        """Read the next ``rows`` (:data:`FILL_SLICE`) rows of a refill; True once it is complete (or none was
        under way)."""
        if self._fill_from is None:
            return True
        start = self._fill_from
        stop = min(len(self._counts), start + (rows or FILL_SLICE))
        self._counts[start:stop] = self._read(start, stop)
        self._too_long = None
        self._fill_from = None if stop >= len(self._counts) else stop
        return self._fill_from is None

    def _read(self, start: int, stop: int) -> list[int]:
        get, dataset = self._tokens.get, self._dataset
        rows = ([dataset[i] for i in range(start, stop)] if stop - start < 100  # an edit: no walk to the row
                else itertools.islice(iter(dataset), start, stop))
        return [get((r.system, r.prompt, r.completion) if not r.turns else token_key(r), UNKNOWN) for r in rows]

    # --- answers -------------------------------------------------------------------------------------------
    def counts(self) -> np.ndarray:
        """Every row's count in order (:data:`UNKNOWN` for a row without one); do not modify it."""
        return self._counts

    def known(self) -> np.ndarray:
        """The counts of the rows that have one, in row order."""
        return self._counts[self._counts != UNKNOWN]

    def count(self, row: int) -> int | None:
        n = int(self._counts[row])
        return None if n == UNKNOWN else n

    def set_limit(self, limit: int | None) -> None:
        """The max length: rows with more tokens are too long (``None``: none is)."""
        if limit != self._limit:
            self._limit = limit
            self._too_long = None

    def too_long(self) -> np.ndarray:
        """The rows whose count is over the max length, ascending."""
        if self._too_long is None:
            self._too_long = (np.empty(0, dtype=np.int64) if self._limit is None
                              else np.flatnonzero(self._counts > self._limit))
        return self._too_long

    def is_too_long(self, row: int) -> bool:
        return self._limit is not None and bool(self._counts[row] > self._limit)

    def rows_between(self, low: int, high: int) -> list[int]:
        """The rows whose count is in ``low..high``, ascending."""
        counts = self._counts
        return np.flatnonzero((counts >= low) & (counts <= high)).tolist()
