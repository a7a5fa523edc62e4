"""Small helpers for the words in messages (shared by the core and the UI)."""

from __future__ import annotations

import reprlib


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 row"``, ``"1,234 rows"``; ``words`` is the plural when it is not ``word + "s"``.

    A verb can come along: ``plural(n, "row has", "rows have")``.
    """
    return f"{n:,} {plural_word(n, word, words)}"


def plural_word(n: float, word: str, words: str | None = None) -> str:
    """The word alone, agreeing with ``n``: ``plural_word(n, "has", "have")`` after ``"rows 3 and 8"``."""
    return word if n == 1 else (words or word + "s")


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlist, _BRIEF.maxdict = 3, 60, 60, 4, 4


def brief(value: object) -> str:
    """``repr(value)`` kept short for a one-line message: long text and deep or long lists are elided."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**60:
        return f"a number of {len(str(abs(value))):,} digits" if abs(value) < 10**4000 else "a huge number"
    return _BRIEF.repr(value)


def kind(value: object) -> str:
    """What a JSON value is, in words for a message: ``"text"``, ``"a number"``, ``"a list"``, ``"null"``…"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
