"""How the checks of a big dataset travel to and from the worker process (no Qt here: the process imports it).

Token counts go there as one array (every row's, ``-1``: unknown): pickled as one buffer, not 100,000
numbers one by one. Results come back as a small head and the items of their long tuples (rows, notes,
the rows and cells a fix touches) for :meth:`loradesk.ui.jobs.TaskState.in_process_parts` to fetch a
chunk at a time: a dataset where every row is too long and untidy gives 15 MB of results, whose
unpickling in one piece held the window's interpreter for 100 ms or more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loradesk.core.checks import CheckResult, Fix, check_records
from loradesk.core.dataset import CompactRow

#: A result's head: key, title, severity, message, how many rows and notes, and per fix its label,
#: description, how many rows it removes, cells it changes and rows it rewrites, and its max length.
Head = tuple[str, str, str, str, int, int, tuple[tuple[str, str, int, int, int, int | None], ...]]


def known_counts(in_order: Any) -> list[int | None]:
    """Token counts from an array of every row's (``-1``: unknown) as the checks take them (``None``: unknown)."""
    return [None if n < 0 else n for n in in_order.tolist()]


def split_results(results: Sequence[CheckResult]) -> tuple[list[Head], list[Any]]:
    """``results`` as heads and one flat list of their long tuples' items, in the order :func:`join_results`
    reads them back."""
    heads: list[Head] = []
    items: list[Any] = []
    for result in results:
        fixes = tuple((f.label, f.description, len(f.remove_rows), len(f.changes), len(f.rows), f.max_length)
                      for f in result.fixes)
        heads.append((result.key, result.title, result.severity, result.message, len(result.rows),
                      len(result.notes), fixes))
        items += result.rows
        items += result.notes
        for fix in result.fixes:
            items += fix.remove_rows
            items += fix.changes
            items += fix.rows
    return heads, items


def join_results(heads: Sequence[Head], items: Sequence[Any]) -> list[CheckResult]:
    """The results :func:`split_results` took apart."""
    out: list[CheckResult] = []
    at = 0

    def take(count: int) -> tuple[Any, ...]:
        nonlocal at
        at += count
        return tuple(items[at - count:at])

    for key, title, severity, message, rows, notes, fix_heads in heads:
        row_items, note_items = take(rows), take(notes)
        fixes = tuple(Fix(label, description, take(removed), take(changed), max_length, take(rewritten))
                      for label, description, removed, changed, rewritten, max_length in fix_heads)
        out.append(CheckResult(key, title, severity, message, row_items, fixes, note_items))
    return out


def check_counted_records(records: list[CompactRow], in_order: Any, max_length: int,
                          answer_starts: Mapping[int, int] | None = None) -> tuple[list[Head], list[Any]]:
    """:func:`loradesk.core.checks.check_records` with every row's token count in ``in_order``, split for the
    way back (runs in the worker process)."""
    return split_results(check_records(records, known_counts(in_order), max_length, answer_starts))


def check_records_split(records: list[CompactRow], token_counts: Sequence[int | None] | None,
                        max_length: int | None,
                        answer_starts: Mapping[int, int] | None = None) -> tuple[list[Head], list[Any]]:
    """:func:`loradesk.core.checks.check_records`, split for the way back (runs in the worker process)."""
    return split_results(check_records(records, token_counts, max_length, answer_starts))
